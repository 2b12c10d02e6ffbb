// The /verify page: a proof bundle (fetched from this explorer when the page names a record,
// or pasted), or an evidence file (fetched when the page names evidence, or pasted), checked
// in this browser against the registry this node serves, each check shown with a word and a
// shape. The checks themselves are verifier.mjs's.
import { hashes, verifyBundle, verifyEquivocation } from '/assets/verifier.mjs';

const text = document.getElementById('bundle');
const button = document.getElementById('verify');
const list = document.getElementById('checks');
const summary = document.getElementById('summary');

async function registry() {
  const [overview, members] = await Promise.all(
    ['/api/v1/overview', '/api/v1/members'].map(async (path) => (await fetch(path)).json()),
  );
  return { name: overview.federation, version: overview.registry_version, quorum: overview.quorum, members };
}

let evidence = false;

function show(checks, source) {
  list.replaceChildren(...checks.map(({ check, ok, detail }) => {
    const item = document.createElement('li');
    item.className = ok ? 'check-ok' : 'check-fail';
    const mark = document.createElement('span');
    mark.setAttribute('aria-hidden', 'true');
    mark.textContent = ok ? '\u2713 ' : '\u2717 ';
    const word = document.createElement('strong');
    word.textContent = ok ? 'ok' : 'FAIL';
    item.append(mark, word, ` ${check}: ${detail}`);
    return item;
  }));
  const failed = checks.filter((c) => !c.ok).length;
  const what = evidence ? 'this evidence does not prove an equivocation' : 'this bundle does not prove its record';
  summary.textContent = failed === 0
    ? `All ${checks.length} checks pass (hashes by ${source}; Ed25519 by this page's JavaScript).`
    : `${failed} of ${checks.length} checks fail: ${what}.`;
  summary.dataset.verdict = failed === 0 ? 'valid' : 'invalid';
}

button.addEventListener('click', async () => {
  summary.textContent = 'Checking ...';
  delete summary.dataset.verdict;
  let bundle;
  try {
    bundle = JSON.parse(text.value);
  } catch (error) {
    show([{ check: 'format', ok: false, detail: `not JSON: ${error.message}` }], '-');
    return;
  }
  const hash = hashes();
  evidence = Boolean(bundle && bundle.format === 'remembrancer-evidence/v1');
  const checks = evidence ? await verifyEquivocation(bundle, await registry(), hash) : await verifyBundle(bundle, await registry(), hash);
  show(checks, hash.source);
});

const wanted = new URLSearchParams(location.search);
const source = wanted.get('evidence')
  ? `/api/v1/evidence/${encodeURIComponent(wanted.get('evidence'))}`
  : wanted.get('namespace') && wanted.get('index')
    ? `/api/v1/namespaces/${encodeURIComponent(wanted.get('namespace'))}/records/${encodeURIComponent(wanted.get('index'))}`
    : null;
if (source) {
  const path = source;
  fetch(path).then(async (response) => {
    text.value = await response.text();
    text.dataset.loaded = 'true';
  });
}
