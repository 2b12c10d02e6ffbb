// The explorer's in-browser verifier (bin/remembrancer/src/node/explorer/assets/verifier.mjs)
// on the project's public vectors, both with the platform's WebCrypto hashes and with its own
// JavaScript ones: every RFC 9162 inclusion vector (the wantErr ones refused), the C2SP
// signed-note example, and the Sigsum checkpoint with its log signature and eight
// cosignature/v1 witness cosignatures; one flipped byte of each signed thing is refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import {
  concat, ed25519Verify, fromBase64, hashes, inclusionRoot, keyId, parseNote, sha256Js, sha512Js, utf8, verifyEquivocation,
} from '../../bin/remembrancer/src/node/explorer/assets/verifier.mjs';

const VECTORS = process.env.REMEMBRANCER_VECTORS
  || new URL('../../../shared/vectors', import.meta.url).pathname;
const fromHex = (hex) => Uint8Array.from(hex.match(/../g), (b) => parseInt(b, 16));
const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
const flip = (bytes, at) => { const copy = Uint8Array.from(bytes); copy[at] ^= 1; return copy; };

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test('the JavaScript hashes agree with Node\'s on lengths across block boundaries', () => {
  for (const length of [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000]) {
    const data = Uint8Array.from({ length }, (_, i) => (i * 7 + 3) & 0xff);
    assert.ok(equal(sha256Js(data), createHash('sha256').update(data).digest()), `sha256 of ${length} bytes`);
    assert.ok(equal(sha512Js(data), createHash('sha512').update(data).digest()), `sha512 of ${length} bytes`);
  }
});

for (const own of [false, true]) {
  const hash = hashes(own);
  test(`every RFC 9162 inclusion vector, hashed by ${hash.source}`, async () => {
    const vectors = files(join(VECTORS, 'merkle/inclusion')).filter((p) => p.endsWith('.json'));
    assert.ok(vectors.length > 50, `${vectors.length} vectors`);
    for (const path of vectors) {
      const v = JSON.parse(readFileSync(path, 'utf8'));
      const leaf = fromBase64(v.leafHash);
      const proof = (v.proof || []).map(fromBase64);
      const root = fromBase64(v.root);
      const computed = leaf && root && proof.every(Boolean) && v.treeSize > 0
        ? await inclusionRoot(v.leafIdx, v.treeSize, leaf, proof, hash) : null;
      const ok = Boolean(computed && leaf.length === 32 && root.length === 32 && equal(computed, root));
      assert.equal(ok, !v.wantErr, `${path}: ${v.desc}`);
    }
  });

  test(`the C2SP signed-note example, hashed by ${hash.source}`, async () => {
    const text = readFileSync(join(VECTORS, 'c2sp/signed-note-example.txt'), 'utf8');
    const [name, id, key] = readFileSync(join(VECTORS, 'c2sp/signed-note-example.vkey'), 'utf8').trim().split('+');
    const vkey = fromBase64(key);
    assert.equal(vkey[0], 0x01);
    const publicKey = vkey.subarray(1);
    const note = parseNote(text);
    assert.equal(note.signatures.length, 1);
    const [signature] = note.signatures;
    assert.equal(signature.name, name);
    assert.ok(equal(signature.keyId, fromHex(id)));
    assert.ok(equal(await keyId(name, 0x01, publicKey, hash), fromHex(id)), 'the key ID is computed as C2SP says');
    assert.ok(await ed25519Verify(publicKey, utf8(note.body), signature.payload, hash));
    assert.ok(!(await ed25519Verify(publicKey, utf8(`${note.body} `), signature.payload, hash)), 'another text');
    assert.ok(!(await ed25519Verify(publicKey, utf8(note.body), flip(signature.payload, 5), hash)), 'a flipped bit');
  });

  test(`the Sigsum checkpoint: its log signature and eight cosignatures, hashed by ${hash.source}`, async () => {
    const proof = readFileSync(join(VECTORS, 'sigsum/proof.txt'), 'utf8').split('\n');
    const value = (key) => proof.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
    const policy = readFileSync(join(VECTORS, 'sigsum/sigsum-test-2025-3.policy'), 'utf8').split('\n');
    const keys = policy.filter((l) => /^(log|witness) /.test(l)).map((l) => fromHex(l.split(/\s+/)[l.startsWith('log') ? 1 : 2]));
    const byHash = new Map(keys.map((k) => [createHash('sha256').update(k).digest('hex'), k]));
    const logHash = value('log')[0];
    const root = Buffer.from(value('root_hash')[0], 'hex').toString('base64');
    const body = utf8(`sigsum.org/v1/tree/${logHash}\n${value('size')[0]}\n${root}\n`);
    const logKey = byHash.get(logHash);
    const logSignature = fromHex(value('signature')[0]);
    assert.ok(await ed25519Verify(logKey, body, logSignature, hash), 'the log signature');
    assert.ok(!(await ed25519Verify(logKey, flip(body, 20), logSignature, hash)), 'a flipped body byte');
    const cosignatures = value('cosignature');
    assert.equal(cosignatures.length, 8);
    for (const line of cosignatures) {
      const [keyHash, time, signature] = line.split(' ');
      const key = byHash.get(keyHash);
      const message = concat(utf8(`cosignature/v1\ntime ${time}\n`), body);
      assert.ok(await ed25519Verify(key, message, fromHex(signature), hash), `cosignature by ${keyHash}`);
      assert.ok(!(await ed25519Verify(key, message, flip(fromHex(signature), 40), hash)), `a flipped bit of ${keyHash}'s`);
    }
  });
}

test('a non-canonical s (s + l) and a small-order key are refused under the project\'s rule', async () => {
  const text = readFileSync(join(VECTORS, 'c2sp/signed-note-example.txt'), 'utf8');
  const key = fromBase64(readFileSync(join(VECTORS, 'c2sp/signed-note-example.vkey'), 'utf8').trim().split('+')[2]).subarray(1);
  const note = parseNote(text);
  const signature = Uint8Array.from(note.signatures[0].payload);
  // s + l: the same point equation, a scalar out of range.
  const l = (1n << 252n) + 27742317777372353535851937790883648493n;
  let s = signature.subarray(32).reduceRight((n, b) => (n << 8n) | BigInt(b), 0n) + l;
  const bumped = Uint8Array.from(signature);
  for (let i = 32; i < 64; i += 1) { bumped[i] = Number(s & 0xffn); s >>= 8n; }
  assert.ok(!(await ed25519Verify(key, utf8(note.body), bumped)));
  // The identity point as a key (small order).
  const identity = new Uint8Array(32);
  identity[0] = 1;
  assert.ok(!(await ed25519Verify(identity, utf8(note.body), signature)));
});

/** A member's key pair from a 32-byte seed, as node:crypto keys: (public key bytes, sign). */
function keyPair(seed) {
  const { createPrivateKey, createPublicKey, sign } = globalThis.nodeCrypto;
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  const publicKey = new Uint8Array(createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(12));
  return { publicKey, sign: (bytes) => new Uint8Array(sign(null, Buffer.from(bytes), privateKey)) };
}

/** A checkpoint note of `namespace` at `size` with `root`, signed as an anchor by `did`. */
async function signedCheckpoint(did, pair, namespace, size, root) {
  const body = `fed/${namespace}\n${size}\n${Buffer.from(root).toString('base64')}\nremembrancer/anchor/v1 hash=sha256 target=local tx=- block=- anchored=1 signed=1 registry=1\n`;
  const id = await keyId(did, 0x01, pair.publicKey);
  const line = Buffer.from(concat(id, pair.sign(utf8(body)))).toString('base64');
  return `${body}\n\u2014 ${did} ${line}\n`;
}

test('evidence of an equivocation holds only with two signed notes of one size and two roots', async () => {
  globalThis.nodeCrypto = await import('node:crypto');
  const did = 'did:vm:node:accused';
  const pair = keyPair(new Uint8Array(32).fill(7));
  const other = keyPair(new Uint8Array(32).fill(9));
  const registry = { name: 'fed', version: 1, quorum: 1, members: [{ did, key: Buffer.from(pair.publicKey).toString('base64'), status: 'active' }] };
  const file = (first, second, size = 5) => ({ format: 'remembrancer-evidence/v1', signer: did, namespace: 'ns:a', size, first, second });
  const rootA = new Uint8Array(32).fill(1);
  const rootB = new Uint8Array(32).fill(2);
  const good = file(await signedCheckpoint(did, pair, 'ns:a', 5, rootA), await signedCheckpoint(did, pair, 'ns:a', 5, rootB));
  const verdict = async (f) => (await verifyEquivocation(f, registry)).filter((c) => !c.ok).map((c) => c.check);
  assert.deepEqual(await verdict(good), []);
  const same = file(good.first, await signedCheckpoint(did, pair, 'ns:a', 5, rootA));
  assert.deepEqual(await verdict(same), ['roots differ']);
  const sizes = file(good.first, await signedCheckpoint(did, pair, 'ns:a', 6, rootB));
  assert.deepEqual(await verdict(sizes), ['same checkpoint']);
  const forged = file(good.first, await signedCheckpoint(did, other, 'ns:a', 5, rootB));
  assert.deepEqual(await verdict(forged), ['second note']);
  assert.deepEqual(await verdict({ ...good, signer: 'did:vm:node:nobody' }), ['signer']);
});
