// A peer from another libp2p implementation (js-libp2p 3, peer.mjs) against real Remembrancer
// nodes of the debug build: it dials node 1 over TCP, joins the federation's topic, hears
// checkpoints, countersignatures and receipts, and checks a checkpoint's signed note with the
// registry key in JavaScript and a receipt against that note's root; the garbage it publishes
// is refused and counted by the nodes while the federation keeps finalizing.
//
// Three members are set up and two run (quorum 2): while a member is missing, members
// broadcast everything by gossip, which an outsider hears. (With every member connected, the
// kinds every commit makes go on members' own streams instead; registry updates, evidence and
// epoch anchors stay on gossip.)
import './polyfill.mjs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPeer, dial, topicOf, decodeFrame, registryKeys, checkCheckpointNote } from './peer.mjs';

const BIN = process.env.REMEMBRANCER_BIN;
assert.ok(BIN, 'REMEMBRANCER_BIN names the remembrancer binary (scripts/interop-test sets it)');
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'remembrancer-interop-'));
const nodes = [];
let peer;
let appending;
/** Everything the peer heard, decoded: { type, sender, content }. */
const heard = [];
let undecodable = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, condition, seconds = 60) {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function cli(i, ...args) {
  const { stdout } = await run(BIN, [...args, '--data-dir', join(dir, `node${i}`, 'data')]);
  return stdout;
}

const status = async (i) => JSON.parse(await cli(i, 'federation', 'status', '--json'));

async function finalSize(i, namespace) {
  const entry = (await status(i)).namespaces.find((n) => n.namespace === namespace);
  return entry ? entry.final_size : 0;
}

before(async () => {
  await run(BIN, ['devnet', '--setup', '--dir', dir, '--nodes', '3']);
  for (const i of [1, 2]) {
    const log = openSync(join(dir, `node${i}`, 'node.log'), 'a');
    const child = spawn(BIN, ['node', 'run', '--config', join(dir, `node${i}`, 'node.toml')], {
      env: { ...process.env, RUST_LOG: 'info' },
      stdio: ['ignore', 'ignore', log],
    });
    nodes.push(child);
    await waitFor(`node ${i} starts`, () => existsSync(join(dir, `node${i}`, 'data', 'api.json')));
  }
  await waitFor('nodes 1 and 2 connected', async () => (await status(1)).connected_peers >= 1);
  // Steady appends to both namespaces, so that checkpoints keep coming.
  appending = setInterval(() => {
    for (const i of [1, 2]) {
      cli(i, 'record', 'append', '--namespace', `dev:node${i}`, `interop ${Date.now()}`).catch(() => {});
    }
  }, 400);
});

after(async () => {
  clearInterval(appending);
  if (peer) await peer.stop();
  for (const child of nodes) {
    child.kill('SIGTERM');
  }
  await sleep(500);
  if (process.env.KEEP_INTEROP_DIR) {
    console.log(`interop: nodes' folders kept in ${dir}`);
  } else {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a js-libp2p peer joins the topic and checks the checkpoints and receipts it hears', async () => {
  const node1 = await status(1);
  const address = `${node1.listen[0]}/p2p/${node1.peer_id}`;
  peer = await startPeer('devnet');
  // CAPTURE_FRAMES=DIR keeps up to 4 frames of each kind as heard (fuzz/seeds/peer_message
  // and envelope_readers come from such a run).
  const captured = new Map();
  peer.services.pubsub.addEventListener('message', (event) => {
    try {
      const messages = decodeFrame(event.detail.data);
      heard.push(...messages);
      const kind = [...new Set(messages.map((m) => m.type))].join('+');
      const count = captured.get(kind) ?? 0;
      if (process.env.CAPTURE_FRAMES && count < 4) {
        captured.set(kind, count + 1);
        writeFileSync(join(process.env.CAPTURE_FRAMES, `devnet-${kind}-${count}.bin`), event.detail.data);
      }
    } catch {
      undecodable += 1;
    }
  });
  await dial(peer, address);
  await waitFor('node 1 subscribed to the topic, as the js peer sees it', () =>
    peer.services.pubsub.getSubscribers(topicOf('devnet')).some((p) => p.toString() === node1.peer_id),
  );
  await waitFor('a checkpoint, a countersignature and a receipt', () =>
    ['anchor', 'countersign', 'receipt'].every((type) => heard.some((m) => m.type === type)),
  );
  assert.equal(undecodable, 0, 'every frame decodes');

  // Every anchor's note carries its owner's signature, checked with the registry key.
  const keys = registryKeys(readFileSync(join(dir, 'registry.yaml'), 'utf8'));
  const roots = new Map();
  const anchors = heard.filter((m) => m.type === 'anchor');
  for (const anchor of anchors) {
    const namespace = anchor.sender.replace('did:vm:node:dev', 'dev:node');
    const note = checkCheckpointNote(anchor.content.checkpoint, anchor.sender, keys.get(anchor.sender));
    assert.equal(note.origin, `devnet/${namespace}`);
    roots.set(`${namespace} ${note.size}`, note.root);
  }
  // A note with one byte changed does not check.
  const tampered = anchors[0].content.checkpoint.replace(/\n(\d+)\n/, (_, n) => `\n${Number(n) + 1}\n`);
  assert.throws(() => checkCheckpointNote(tampered, anchors[0].sender, keys.get(anchors[0].sender)), /verify/);

  // Receipts: final under quorum 2, their root the one of the owner's note at that size.
  await waitFor('a receipt whose checkpoint the js peer heard', () =>
    heard.some((m) => m.type === 'receipt' && roots.has(`${m.content.receipt.namespace} ${m.content.receipt.tree_size}`)),
  );
  const receipts = heard.filter((m) => m.type === 'receipt').map((m) => m.content.receipt);
  for (const receipt of receipts) {
    assert.equal(receipt.federation_id, 'devnet');
    assert.equal(receipt.quorum_met, true);
    assert.ok(receipt.signatures.length >= 2, `${receipt.signatures.length} signatures`);
    const root = roots.get(`${receipt.namespace} ${receipt.tree_size}`);
    if (root) assert.equal(receipt.anchor.batch_root, `sha256:${root}`);
  }
  console.log(
    `interop: heard ${heard.length} messages (${anchors.length} checkpoints checked, ${receipts.length} receipts)`,
  );
});

test('garbage the js peer publishes is refused and counted, and the federation keeps finalizing', async () => {
  const peerId = peer.peerId.toString();
  const garbageBefore = (await status(1)).garbage_messages;
  const sent = 5;
  for (let k = 0; k < sent; k += 1) {
    const bytes = new Uint8Array(300).map((_, i) => (i * 31 + k * 7) % 251);
    await peer.services.pubsub.publish(topicOf('devnet'), bytes);
    await sleep(100);
  }
  await waitFor('node 1 counts the garbage', async () => {
    const s = await status(1);
    return s.garbage_messages >= garbageBefore + 1;
  });
  const node1 = await status(1);
  const entry = node1.refused_from.find((e) => e.peer_id === peerId);
  assert.ok(entry && entry.refused >= 1, `node 1 counts what the js peer sent: ${JSON.stringify(node1.refused_from)}`);
  assert.ok(entry.gossip_score === null || entry.gossip_score < 0, `gossipsub penalises it: ${JSON.stringify(entry)}`);
  for (const member of node1.peers) {
    assert.equal(member.honesty_refusals, 0, `no member is blamed: ${JSON.stringify(member)}`);
  }
  console.log(
    `interop: node 1 counted ${node1.garbage_messages - garbageBefore} of ${sent} garbage messages (gossip score ${entry.gossip_score}, score disconnects ${node1.score_disconnects})`,
  );

  // Still finalizing on both nodes after the garbage.
  for (const i of [1, 2]) {
    const namespace = `dev:node${i}`;
    const before = await finalSize(i, namespace);
    await waitFor(`${namespace} final beyond ${before} on both nodes`, async () =>
      (await finalSize(1, namespace)) > before && (await finalSize(2, namespace)) > before,
    );
  }
});
