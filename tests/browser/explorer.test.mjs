// The public explorer in a real browser (Debian's chromium, driven by playwright-core), against
// a three-node devnet of the debug build: every view answers 200 with its heading, shows what
// its JSON twin says, logs no console error, asks nothing of any host but the node, and has no
// accessibility violation (axe-core) in the light and the dark scheme. A screenshot of each
// view in each scheme goes to $SCREENSHOT_DIR. Live values come over server-sent events, one
// stream per browser shared by its tabs. Run by scripts/browser-test.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';

const BIN = process.env.REMEMBRANCER_BIN;
const SHOTS = process.env.SCREENSHOT_DIR || join(tmpdir(), 'explorer-screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const AXE = readFileSync(new URL('./node_modules/axe-core/axe.min.js', import.meta.url), 'utf8');
// As the machine's probe starts it: no background connections to Google's hosts.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let devnet;
let dir;
let base;
let browser;
let output = '';

async function waitFor(what, check, ms = 60_000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`${what}: not within ${ms} ms\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function twin(path) {
  const response = await fetch(base + path);
  assert.equal(response.status, 200, path);
  assert.equal(response.headers.get('content-type'), 'application/json', path);
  return response.json();
}

before(async () => {
  assert.ok(BIN, 'REMEMBRANCER_BIN names the remembrancer binary (scripts/browser-test sets it)');
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'remembrancer-browser-'));
  devnet = spawn(BIN, ['devnet', '--dir', join(dir, 'devnet'), '--nodes', '3', '--seconds', '900'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  devnet.stdout.on('data', (data) => { output += data; });
  devnet.stderr.on('data', (data) => { output += data; });
  await waitFor('the devnet prints its explorers', () => /explorer of dev:node3: /.test(output));
  base = output.match(/explorer of dev:node1: (http:\/\/[^/\s]+)\//)[1];
  await waitFor('every namespace is final', async () => {
    const namespaces = await twin('/api/v1/namespaces');
    return namespaces.length === 3 && namespaces.every((n) => n.final_size > 0);
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  await browser?.close();
  if (devnet && devnet.exitCode === null) {
    devnet.kill('SIGINT');
    await once(devnet, 'exit');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Pages a test opened, closed after it whatever its outcome: a page left open by a failed
// test would keep its live stream and skew the next test's count of streams.
const opened = new Set();
afterEach(async () => {
  for (const page of opened) await page.close().catch(() => {});
  opened.clear();
});

/** Opens `path` in a fresh page, watching its console and its requests. */
async function open(path) {
  const page = await browser.newPage();
  opened.add(page);
  const errors = [];
  const outside = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('request', (request) => {
    if (new URL(request.url()).hostname !== '127.0.0.1') outside.push(request.url());
  });
  const response = await page.goto(base + path);
  return { page, response, errors, outside };
}

/** axe-core's violations on the page as it is now ("id: selectors"). The script is evaluated
 * through the devtools protocol, which the page's Content-Security-Policy does not govern. */
async function violations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() => globalThis.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
  }));
  return result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

const cellTexts = (page, column) => page.locator(`tbody tr td:nth-child(${column})`).allTextContents();

const VIEWS = [
  {
    name: 'overview', path: '/', heading: 'Overview', json: '/api/v1/overview',
    async check(page, o) {
      const text = await page.locator('main').textContent();
      assert.ok(text.includes(`${o.quorum} of ${o.members} members`), text);
      assert.ok(text.includes(o.node.did) && text.includes(o.node.peer_id), text);
      assert.ok(text.includes(`${o.registry_version}`), text);
    },
  },
  {
    name: 'members', path: '/members', heading: 'Members', json: '/api/v1/members',
    async check(page, members) {
      const dids = (await cellTexts(page, 1)).map((t) => t.replace(' (this node)', ''));
      assert.deepEqual(dids, members.map((m) => m.did));
      const states = (await cellTexts(page, 2)).map((t) => t.trim().split(' ').pop());
      assert.deepEqual(states, members.map((m) => m.status));
    },
  },
  {
    name: 'member', path: '/members/did:vm:node:dev2', heading: 'did:vm:node:dev2',
    json: '/api/v1/members/did:vm:node:dev2',
    async check(page, member) {
      const text = await page.locator('main').textContent();
      assert.ok(text.includes(member.status) && text.includes(member.peer_id), text);
      for (const namespace of member.namespaces) assert.ok(text.includes(namespace), text);
    },
  },
  {
    name: 'namespaces', path: '/namespaces', heading: 'Namespaces', json: '/api/v1/namespaces',
    async check(page, namespaces) {
      assert.deepEqual(await cellTexts(page, 1), namespaces.map((n) => n.namespace));
      assert.deepEqual(await cellTexts(page, 2), namespaces.map((n) => n.owner ?? '–'));
    },
  },
  {
    name: 'namespace', path: '/namespaces/dev:node2', heading: 'dev:node2', json: '/api/v1/namespaces/dev:node2',
    async check(page, namespace) {
      const text = await page.locator('main').textContent();
      assert.ok(text.includes(namespace.owner), text);
      const signers = await page.locator('main ol li').allTextContents();
      assert.ok(signers.length >= 2 && signers[0] === namespace.owner, signers.join(', '));
    },
  },
  {
    name: 'record', path: '/namespaces/dev:node1/records/0', heading: 'dev:node1 record 0',
    json: '/api/v1/namespaces/dev:node1/records/0',
    async check(page, newest) {
      assert.equal(newest.bundle_type, 'remembrancer.proof-bundle/v1');
      // The tree may have grown since the page was drawn: its twin at the page's own size.
      const size = (await page.locator('main dl').textContent()).match(/Under the final checkpoint of size(\d+)/)[1];
      const bundle = await twin(`/api/v1/namespaces/dev:node1/records/0?size=${size}`);
      const text = await page.locator('main').textContent();
      assert.ok(text.includes(bundle.proof.leaf), text);
      const path = await page.locator('ol.path li').count();
      assert.equal(path, bundle.proof.path.length);
      assert.ok(text.includes(bundle.checkpoint.split('\n')[0]), 'the signed note, verbatim');
    },
  },
  {
    name: 'tree', path: '/namespaces/dev:node1/tree', heading: 'dev:node1 tree', json: '/api/v1/namespaces/dev:node1',
    async check(page) {
      const size = Number((await page.locator('main h2').first().textContent()).match(/Final: (\d+) records/)[1]);
      const ones = size.toString(2).split('').filter((b) => b === '1').length;
      assert.equal(await page.locator('main ol').first().locator('li').count(), ones, `${size} is ${ones} perfect subtrees`);
    },
  },
  {
    name: 'witnesses', path: '/witnesses', heading: 'Witnesses', json: '/api/v1/witnesses',
    async check(page, w) {
      const rows = await page.locator('.grid tbody tr').count();
      assert.equal(rows, w.rows.length);
      // The page's own columns (the twin may be a snapshot later): one owner in each.
      const columns = (await page.locator('.grid thead th').count()) - 3;
      const owners = await page.locator('.grid td.cell-owner').count();
      assert.ok(columns >= 1 && owners === columns, `an owner in every receipt: ${owners} of ${columns}`);
      assert.equal(await page.locator('svg.chart title').first().textContent(), "Commit to final, this node's own receipts");
    },
  },
  {
    name: 'audit', path: '/audit', heading: 'Audit trail', json: '/api/v1/audit',
    async check(page, audit) {
      const text = await page.locator('main').textContent();
      assert.ok(audit.length === 0 ? text.includes('refused no message') : text.includes(audit[0].what), text);
    },
  },
  {
    name: 'search', path: '/search?q=dev', heading: 'Search', json: '/api/v1/overview',
    async check(page) {
      assert.ok((await page.locator('main li').count()) >= 6, 'three members and three namespaces match');
    },
  },
  {
    name: 'evidence', path: '/evidence', heading: 'Evidence', json: '/api/v1/evidence',
    async check(page, evidence) {
      assert.deepEqual(evidence, []);
      assert.ok((await page.locator('main').textContent()).includes('No evidence'));
    },
  },
];

for (const view of VIEWS) {
  test(`${view.path}: heading, its JSON twin's data, no console error, no request elsewhere, no axe violation`, async () => {
    const { page, response, errors, outside } = await open(view.path);
    assert.equal(response.status(), 200);
    assert.equal(await page.locator('h1').textContent(), view.heading);
    assert.equal(await page.locator('link[rel=alternate]').getAttribute('href'), view.json);
    await view.check(page, await twin(view.json));
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      assert.deepEqual(await violations(page), [], `${view.path} in the ${scheme} scheme`);
      await page.screenshot({ path: join(SHOTS, `${view.name}-${scheme}.png`), fullPage: true });
    }
    assert.deepEqual(errors, []);
    assert.deepEqual(outside, []);
    await page.close();
  });
}

test('a page for what is not there is a 404 with its heading, and passes axe too', async () => {
  const { page, response, errors } = await open('/namespaces/none:such');
  assert.equal(response.status(), 404);
  assert.equal(await page.locator('h1').textContent(), 'Not found');
  assert.deepEqual(await violations(page), []);
  // The browser reports the page's own status; nothing else fails.
  assert.deepEqual(errors, ['Failed to load resource: the server responded with a status of 404 (Not Found)']);
  await page.close();
});

test('the lookup form of a namespace leads to a record and its proof', async () => {
  const { page, errors } = await open('/namespaces/dev:node1');
  await page.getByLabel('Record index').fill('3');
  await Promise.all([page.waitForURL(/\/records\/3$/), page.getByRole('button', { name: 'Show its proof' }).click()]);
  assert.equal(await page.locator('h1').textContent(), 'dev:node1 record 3');
  const download = await page.locator('a[download]').getAttribute('href');
  const bundle = await (await fetch(base + download)).json();
  assert.equal(bundle.proof.leaf_index, 3);
  assert.deepEqual(errors, []);
  await page.close();
});

/** The value the JSON twin gives for dev:node1's final size. */
async function finalSize() {
  const namespaces = await twin('/api/v1/namespaces');
  return namespaces.find((n) => n.namespace === 'dev:node1').final_size;
}

const liveCell = (page) => page.locator('td[data-namespace="dev:node1"][data-field="final_size"]');

test('a value fed by server-sent events changes within a second of the node, without a reload', async () => {
  const { page, errors } = await open('/namespaces');
  await page.evaluate(() => { globalThis.loadedOnce = true; });
  await waitFor('the page is live', async () => (await page.locator('#live').textContent()) === 'live', 10_000);
  const before = Number(await liveCell(page).textContent());
  // The devnet appends every 1.5 s: watch the JSON twin and the page side by side.
  let nodeAt = null;
  let pageAt = null;
  let newer = null;
  const until = Date.now() + 15_000;
  while ((nodeAt === null || pageAt === null) && Date.now() < until) {
    if (nodeAt === null) {
      const size = await finalSize();
      if (size > before) { nodeAt = Date.now(); newer = size; }
    }
    if (pageAt === null && Number(await liveCell(page).textContent()) > before) pageAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(nodeAt !== null && pageAt !== null, `the size grew on the node (${newer}) and on the page`);
  assert.ok(pageAt - nodeAt <= 1000, `the page followed the node within 1 s: ${pageAt - nodeAt} ms`);
  assert.equal(await page.evaluate(() => globalThis.loadedOnce), true, 'no reload');
  assert.deepEqual(errors, []);
  await page.close();
});

test('eight tabs load and stay live on one event stream', async () => {
  const context = await browser.newContext();
  opened.add(context);
  const pages = [];
  for (let tab = 0; tab < 8; tab += 1) {
    const page = await context.newPage();
    const response = await page.goto(`${base}/namespaces`);
    assert.equal(response.status(), 200);
    pages.push(page);
  }
  for (const page of pages) {
    await waitFor('every tab is live', async () => (await page.locator('#live').textContent()) === 'live', 10_000);
  }
  const first = await Promise.all(pages.map(async (page) => Number(await liveCell(page).textContent())));
  await waitFor('every tab shows a newer size', async () => {
    const now = await Promise.all(pages.map(async (page) => Number(await liveCell(page).textContent())));
    return now.every((size, tab) => size > first[tab]);
  }, 15_000);
  // A stream of an earlier test's closed page ends when the server next writes to it (within
  // a second): the count settles at the eight tabs' one.
  let streams = null;
  await waitFor('one event stream for the eight tabs', async () => {
    const metrics = await (await fetch(`${base}/metrics`)).text();
    streams = Number(metrics.match(/^remembrancer_explorer_event_streams (\d+)$/m)[1]);
    return streams === 1;
  }, 10_000).catch(() => {});
  assert.equal(streams, 1, 'the eight tabs share one stream');
  await context.close();
});

/** Clicks "Verify in this browser" and waits for the verdict: 'valid' or 'invalid'. */
async function verdict(page) {
  await page.getByRole('button', { name: 'Verify in this browser' }).click();
  await waitFor('a verdict', async () => Boolean(await page.locator('#summary').getAttribute('data-verdict')), 30_000);
  return page.locator('#summary').getAttribute('data-verdict');
}

async function verifyGoodAndMutated(page, expectedSource, shot) {
  await waitFor('the bundle is loaded', async () => (await page.locator('#bundle').getAttribute('data-loaded')) === 'true', 10_000);
  assert.equal(await verdict(page), 'valid', await page.locator('#checks').textContent());
  if (shot) await page.screenshot({ path: join(SHOTS, shot), fullPage: true });
  assert.ok((await page.locator('#summary').textContent()).includes(expectedSource), await page.locator('#summary').textContent());
  const good = await page.locator('#bundle').inputValue();
  const mutations = {
    'a byte of the record': /"record": "./,
    'a byte of a path hash': /"hash": "sha256:[0-9a-f]{10}/,
    'a byte of a signature': /\u2014 did:vm:node:dev1 [A-Za-z0-9+/]{20}/,
  };
  for (const [what, pattern] of Object.entries(mutations)) {
    const match = good.match(pattern);
    assert.ok(match, what);
    const at = good.indexOf(match[0]) + match[0].length - 1;
    const c = good[at];
    const changed = good.slice(0, at) + (c === 'a' ? 'b' : c === 'A' ? 'B' : c === '0' ? '1' : 'a') + good.slice(at + 1);
    await page.locator('#bundle').fill(changed);
    assert.equal(await verdict(page), 'invalid', what);
  }
}

test('verify in this browser on 127.0.0.1 (a secure context: WebCrypto hashes): a good bundle passes, a one-byte change fails', async () => {
  const { page, errors, outside } = await open('/verify?namespace=dev:node1&index=2');
  assert.equal(await page.evaluate(() => globalThis.isSecureContext), true);
  await verifyGoodAndMutated(page, 'WebCrypto', 'verify-light.png');
  assert.deepEqual(await violations(page), []);
  assert.deepEqual(errors, []);
  assert.deepEqual(outside, []);
  await page.close();
});

test('verify in this browser under a host name that is not a secure context (its own JavaScript hashes)', async () => {
  const port = new URL(base).port;
  const other = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, '--host-resolver-rules=MAP explorer.test 127.0.0.1'] });
  try {
    const page = await other.newPage();
    const errors = [];
    page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
    page.on('pageerror', (error) => errors.push(String(error)));
    const response = await page.goto(`http://explorer.test:${port}/verify?namespace=dev:node1&index=2`);
    assert.equal(response.status(), 200);
    assert.equal(await page.evaluate(() => globalThis.isSecureContext), false);
    assert.equal(await page.evaluate(() => typeof (globalThis.crypto && globalThis.crypto.subtle)), 'undefined');
    await verifyGoodAndMutated(page, 'own JavaScript');
    assert.deepEqual(errors, []);
  } finally {
    await other.close();
  }
});

test('the search box leads to what it names', async () => {
  const { page, errors } = await open('/');
  await page.getByLabel('Search').fill('did:vm:node:dev3');
  await Promise.all([page.waitForURL(/\/members\/did:vm:node:dev3$/), page.getByLabel('Search').press('Enter')]);
  assert.equal(await page.locator('h1').textContent(), 'did:vm:node:dev3');
  assert.deepEqual(errors, []);
  await page.close();
});


test('evidence pasted into the verifier: two notes of one size signed by a member hold, one root twice does not', async () => {
  const crypto = await import('node:crypto');
  const key = JSON.parse(readFileSync(join(dir, 'devnet', 'node1', 'node.key'), 'utf8'));
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(key.secret_key, 'hex')]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = crypto.createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(12);
  const did = 'did:vm:node:dev1';
  const keyId = crypto.createHash('sha256').update(Buffer.concat([Buffer.from(did), Buffer.from([0x0a, 0x01]), publicKey])).digest().subarray(0, 4);
  const note = (root) => {
    const body = `devnet/dev:node1\n3\n${Buffer.alloc(32, root).toString('base64')}\nremembrancer/anchor/v1 hash=sha256 target=local tx=- block=- anchored=1 signed=1 registry=1\n`;
    const signature = crypto.sign(null, Buffer.from(body), privateKey);
    return `${body}\n\u2014 ${did} ${Buffer.concat([keyId, signature]).toString('base64')}\n`;
  };
  const file = (a, b) => JSON.stringify({ format: 'remembrancer-evidence/v1', signer: did, namespace: 'dev:node1', size: 3, first: note(a), second: note(b) });
  const { page, errors } = await open('/verify');
  await page.locator('#bundle').fill(file(1, 2));
  assert.equal(await verdict(page), 'valid', await page.locator('#checks').textContent());
  await page.locator('#bundle').fill(file(1, 1));
  assert.equal(await verdict(page), 'invalid');
  assert.ok((await page.locator('#summary').textContent()).includes('does not prove an equivocation'));
  assert.deepEqual(errors, []);
  await page.close();
});
