// A proof bundle checked in the browser, as `remembrancer verify proof` checks it: the signed
// checkpoint's signatures (its owner's Ed25519 note signature and the witnesses'
// cosignature/v1) against the registry's keys, a quorum of distinct active signers, then the
// record's leaf hash and its RFC 9162 inclusion under the checkpoint's root, the directions
// computed from the index and the size (the bundle's `position` fields are not read).
//
// Ed25519 is verified here, in JavaScript, under the project's rule (cofactored:
// [8][s]B = [8]R + [8][k]A, s < l, R and A canonical and not of small order), so a browser
// and the node agree on every signature. SHA-256 and SHA-512 are the browser's own
// (WebCrypto) where the page is a secure context, and this file's otherwise (plain HTTP to a
// host other than loopback has no crypto.subtle). Runs in browsers and in Node (its tests
// pass the project's public vectors through it).

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

const mod = (a, m = P) => ((a % m) + m) % m;
function pow(base, exponent, m = P) {
  let result = 1n;
  let b = mod(base, m);
  let e = exponent;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}
const inv = (a) => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);
const IDENTITY = [0n, 1n, 1n, 0n];

// Extended coordinates (X, Y, Z, T), RFC 8032 §5.1.4 (a = -1).
function add([X1, Y1, Z1, T1], [X2, Y2, Z2, T2]) {
  const A = mod((Y1 - X1) * (Y2 - X2));
  const B = mod((Y1 + X1) * (Y2 + X2));
  const C = mod(T1 * 2n * D * T2);
  const DD = mod(Z1 * 2n * Z2);
  const E = B - A;
  const F = DD - C;
  const G = DD + C;
  const H = B + A;
  return [mod(E * F), mod(G * H), mod(F * G), mod(E * H)];
}

function multiply(scalar, point) {
  let result = IDENTITY;
  let addend = point;
  let s = scalar;
  while (s > 0n) {
    if (s & 1n) result = add(result, addend);
    addend = add(addend, addend);
    s >>= 1n;
  }
  return result;
}

const same = ([X1, Y1, Z1], [X2, Y2, Z2]) => mod(X1 * Z2) === mod(X2 * Z1) && mod(Y1 * Z2) === mod(Y2 * Z1);
const littleEndian = (bytes) => bytes.reduceRight((n, byte) => (n << 8n) | BigInt(byte), 0n);

// RFC 8032 §5.1.3, refusing a non-canonical y and x = 0 with the sign bit set.
function decodePoint(bytes) {
  if (bytes.length !== 32) return null;
  const copy = Uint8Array.from(bytes);
  const sign = BigInt(copy[31] >> 7);
  copy[31] &= 0x7f;
  const y = littleEndian(copy);
  if (y >= P) return null;
  const y2 = mod(y * y);
  const x2 = mod((y2 - 1n) * inv(D * y2 + 1n));
  let x = pow(x2, (P + 3n) / 8n);
  if (mod(x * x) !== x2) x = mod(x * SQRT_M1);
  if (mod(x * x) !== x2) return null;
  if (x === 0n && sign === 1n) return null;
  if ((x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

const BASE = (() => {
  const y = mod(4n * inv(5n));
  const bytes = new Uint8Array(32);
  let v = y;
  for (let i = 0; i < 32; i += 1) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return decodePoint(bytes);
})();

const smallOrder = (point) => same(multiply(8n, point), IDENTITY);

// ---- hashes -----------------------------------------------------------------------------

const K256 = Uint32Array.from([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

function padded(bytes, blockBytes, lengthBytes) {
  const total = Math.ceil((bytes.length + 1 + lengthBytes) / blockBytes) * blockBytes;
  const out = new Uint8Array(total);
  out.set(bytes);
  out[bytes.length] = 0x80;
  const bits = BigInt(bytes.length) * 8n;
  for (let i = 0; i < 8; i += 1) out[total - 1 - i] = Number((bits >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** SHA-256 in JavaScript (FIPS 180-4). */
export function sha256Js(bytes) {
  const h = Uint32Array.from([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const data = padded(bytes, 64, 8);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < data.length; offset += 64) {
    for (let i = 0; i < 16; i += 1) {
      const j = offset + 4 * i;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i += 1) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i += 1) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i += 1) {
    out[4 * i] = h[i] >>> 24; out[4 * i + 1] = (h[i] >>> 16) & 0xff; out[4 * i + 2] = (h[i] >>> 8) & 0xff; out[4 * i + 3] = h[i] & 0xff;
  }
  return out;
}

const MASK64 = (1n << 64n) - 1n;
const K512 = [
  '428a2f98d728ae22', '7137449123ef65cd', 'b5c0fbcfec4d3b2f', 'e9b5dba58189dbbc', '3956c25bf348b538', '59f111f1b605d019',
  '923f82a4af194f9b', 'ab1c5ed5da6d8118', 'd807aa98a3030242', '12835b0145706fbe', '243185be4ee4b28c', '550c7dc3d5ffb4e2',
  '72be5d74f27b896f', '80deb1fe3b1696b1', '9bdc06a725c71235', 'c19bf174cf692694', 'e49b69c19ef14ad2', 'efbe4786384f25e3',
  '0fc19dc68b8cd5b5', '240ca1cc77ac9c65', '2de92c6f592b0275', '4a7484aa6ea6e483', '5cb0a9dcbd41fbd4', '76f988da831153b5',
  '983e5152ee66dfab', 'a831c66d2db43210', 'b00327c898fb213f', 'bf597fc7beef0ee4', 'c6e00bf33da88fc2', 'd5a79147930aa725',
  '06ca6351e003826f', '142929670a0e6e70', '27b70a8546d22ffc', '2e1b21385c26c926', '4d2c6dfc5ac42aed', '53380d139d95b3df',
  '650a73548baf63de', '766a0abb3c77b2a8', '81c2c92e47edaee6', '92722c851482353b', 'a2bfe8a14cf10364', 'a81a664bbc423001',
  'c24b8b70d0f89791', 'c76c51a30654be30', 'd192e819d6ef5218', 'd69906245565a910', 'f40e35855771202a', '106aa07032bbd1b8',
  '19a4c116b8d2d0c8', '1e376c085141ab53', '2748774cdf8eeb99', '34b0bcb5e19b48a8', '391c0cb3c5c95a63', '4ed8aa4ae3418acb',
  '5b9cca4f7763e373', '682e6ff3d6b2b8a3', '748f82ee5defb2fc', '78a5636f43172f60', '84c87814a1f0ab72', '8cc702081a6439ec',
  '90befffa23631e28', 'a4506cebde82bde9', 'bef9a3f7b2c67915', 'c67178f2e372532b', 'ca273eceea26619c', 'd186b8c721c0c207',
  'eada7dd6cde0eb1e', 'f57d4f7fee6ed178', '06f067aa72176fba', '0a637dc5a2c898a6', '113f9804bef90dae', '1b710b35131c471b',
  '28db77f523047d84', '32caab7b40c72493', '3c9ebe0a15c9bebc', '431d67c49c100d4c', '4cc5d4becb3e42b6', '597f299cfc657e2a',
  '5fcb6fab3ad6faec', '6c44198c4a475817',
].map((hex) => BigInt(`0x${hex}`));

/** SHA-512 in JavaScript (FIPS 180-4), on 64-bit BigInt words. */
export function sha512Js(bytes) {
  const h = ['6a09e667f3bcc908', 'bb67ae8584caa73b', '3c6ef372fe94f82b', 'a54ff53a5f1d36f1', '510e527fade682d1',
    '9b05688c2b3e6c1f', '1f83d9abfb41bd6b', '5be0cd19137e2179'].map((hex) => BigInt(`0x${hex}`));
  const data = padded(bytes, 128, 16);
  const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & MASK64;
  const w = new Array(80);
  for (let offset = 0; offset < data.length; offset += 128) {
    for (let i = 0; i < 16; i += 1) {
      let word = 0n;
      for (let j = 0; j < 8; j += 1) word = (word << 8n) | BigInt(data[offset + 8 * i + j]);
      w[i] = word;
    }
    for (let i = 16; i < 80; i += 1) {
      const s0 = rotr(w[i - 15], 1n) ^ rotr(w[i - 15], 8n) ^ (w[i - 15] >> 7n);
      const s1 = rotr(w[i - 2], 19n) ^ rotr(w[i - 2], 61n) ^ (w[i - 2] >> 6n);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & MASK64;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 80; i += 1) {
      const t1 = (hh + (rotr(e, 14n) ^ rotr(e, 18n) ^ rotr(e, 41n)) + ((e & f) ^ (~e & MASK64 & g)) + K512[i] + w[i]) & MASK64;
      const t2 = ((rotr(a, 28n) ^ rotr(a, 34n) ^ rotr(a, 39n)) + ((a & b) ^ (a & c) ^ (b & c))) & MASK64;
      hh = g; g = f; f = e; e = (d + t1) & MASK64; d = c; c = b; b = a; a = (t1 + t2) & MASK64;
    }
    [a, b, c, d, e, f, g, hh].forEach((v, i) => { h[i] = (h[i] + v) & MASK64; });
  }
  const out = new Uint8Array(64);
  h.forEach((word, i) => {
    for (let j = 0; j < 8; j += 1) out[8 * i + j] = Number((word >> BigInt(8 * (7 - j))) & 0xffn);
  });
  return out;
}

/** The hashes a verification uses: WebCrypto's where there is one (unless `own`), else ours. */
export function hashes(own = false) {
  const subtle = !own && globalThis.crypto && globalThis.crypto.subtle;
  if (subtle) {
    return {
      source: "the browser's WebCrypto",
      sha256: async (bytes) => new Uint8Array(await subtle.digest('SHA-256', bytes)),
      sha512: async (bytes) => new Uint8Array(await subtle.digest('SHA-512', bytes)),
    };
  }
  return { source: "this page's own JavaScript", sha256: async (b) => sha256Js(b), sha512: async (b) => sha512Js(b) };
}

/** Ed25519 under the project's rule (see the top of this file). */
export async function ed25519Verify(publicKey, message, signature, hash = hashes()) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const A = decodePoint(publicKey);
  const R = decodePoint(signature.subarray(0, 32));
  if (!A || !R || smallOrder(A) || smallOrder(R)) return false;
  const s = littleEndian(signature.subarray(32));
  if (s >= L) return false;
  const digest = await hash.sha512(concat(signature.subarray(0, 32), publicKey, message));
  const k = mod(littleEndian(digest), L);
  return same(multiply(8n, multiply(s, BASE)), multiply(8n, add(R, multiply(k, A))));
}

// ---- bytes ------------------------------------------------------------------------------

export const utf8 = (text) => new TextEncoder().encode(text);
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}
export function fromBase64(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
const fromHex = (hex) => (/^([0-9a-f]{2})*$/.test(hex) ? Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16)) : null);
const equalBytes = (a, b) => a && b && a.length === b.length && a.every((v, i) => v === b[i]);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

// ---- Merkle (RFC 9162 §2.1.3.2) ---------------------------------------------------------

/** The root an inclusion proof leads to from `leaf` at `index` in a tree of `size`, or null
 * when the proof cannot be for that index and size (its length is wrong). */
export async function inclusionRoot(index, size, leaf, proof, hash = hashes()) {
  if (index >= size) return null;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if ((fn & 1) === 1 || fn === sn) {
      r = await hash.sha256(concat([1], p, r));
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) { fn >>= 1; sn >>= 1; }
      }
    } else {
      r = await hash.sha256(concat([1], r, p));
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 ? r : null;
}

// ---- notes and bundles ------------------------------------------------------------------

/** A C2SP signed note: its body (signed text) and signature lines, or null. */
export function parseNote(text) {
  if (typeof text !== 'string' || !text.endsWith('\n')) return null;
  const split = text.indexOf('\n\n');
  if (split < 0) return null;
  const body = text.slice(0, split + 1);
  const signatures = [];
  for (const line of text.slice(split + 2).split('\n').filter((l) => l !== '')) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    const bytes = match && fromBase64(match[2]);
    if (!bytes || bytes.length < 5) return null;
    signatures.push({ name: match[1], keyId: bytes.subarray(0, 4), payload: bytes.subarray(4) });
  }
  return { body, signatures };
}

/** A key's 4-byte note key ID: SHA-256(name || 0x0A || type || key)[:4]. */
export async function keyId(name, type, key, hash = hashes()) {
  return (await hash.sha256(concat(utf8(name), [0x0a, type], key))).subarray(0, 4);
}

/** Checks `bundle` (a parsed proof bundle) against `registry` ({name, version, quorum,
 * members: [{did, key (base64), status}]}): a list of {check, ok, detail}. */
export async function verifyBundle(bundle, registry, hash = hashes()) {
  const checks = [];
  const push = (check, ok, detail) => { checks.push({ check, ok, detail }); return ok; };
  if (!bundle || bundle.bundle_type !== 'remembrancer.proof-bundle/v1') {
    push('format', false, 'not a remembrancer.proof-bundle/v1');
    return checks;
  }
  const note = parseNote(bundle.checkpoint);
  const lines = note ? note.body.split('\n') : [];
  const origin = /^([^/\s]+)\/(\S+)$/.exec(lines[0] || '');
  const size = /^[0-9]+$/.test(lines[1] || '') ? Number(lines[1]) : NaN;
  const root = fromBase64(lines[2] || '');
  const extension = /^remembrancer\/anchor\/v1 hash=(\S+) .* registry=([0-9]+)$/.exec(lines[3] || '');
  if (!push('format', Boolean(note && origin && Number.isSafeInteger(size) && root && root.length === 32 && extension && lines.length === 5),
    note ? `checkpoint ${lines[0]} at size ${lines[1]}` : 'the checkpoint is not a signed note')) return checks;
  push('federation', origin[1] === registry.name, `origin belongs to ${origin[1]}; the registry is ${registry.name}`);
  push('registry', Number(extension[2]) === registry.version,
    `the checkpoint was counted under registry version ${extension[2]}; this node serves version ${registry.version}`);
  const signers = new Set();
  let anchors = 0;
  for (const signature of note.signatures) {
    const member = registry.members.find((m) => m.did === signature.name);
    const key = member && fromBase64(member.key);
    if (!key) { push(`signature ${signature.name}`, false, 'not a member of the registry'); continue; }
    let ok = false;
    let role = '';
    if (equalBytes(signature.keyId, await keyId(member.did, 0x01, key, hash)) && signature.payload.length === 64) {
      role = 'anchor';
      ok = await ed25519Verify(key, utf8(note.body), signature.payload, hash);
      if (ok) anchors += 1;
    } else if (equalBytes(signature.keyId, await keyId(member.did, 0x04, key, hash)) && signature.payload.length === 72) {
      role = 'witness';
      const time = signature.payload.subarray(0, 8).reduce((n, b) => n * 256n + BigInt(b), 0n);
      ok = await ed25519Verify(key, concat(utf8(`cosignature/v1\ntime ${time}\n`), utf8(note.body)), signature.payload.subarray(8), hash);
    }
    push(`signature ${signature.name}${role ? ` (${role})` : ''}`, ok, ok ? 'valid' : 'does not verify');
    if (ok && member.status === 'active') signers.add(member.did);
  }
  push('anchor', anchors === 1, `${anchors} anchor signatures, exactly one needed`);
  push('quorum', signers.size >= registry.quorum, `${signers.size} distinct active signers, registry ${registry.name} requires ${registry.quorum}`);
  if (extension[1] !== 'sha256') {
    push('record', false, `the tree hashes with ${extension[1]}: check it with remembrancer verify proof`);
    return checks;
  }
  const record = fromBase64(bundle.record);
  const proof = bundle.proof || {};
  const leafOf = (tagged) => (typeof tagged === 'string' && tagged.startsWith('sha256:') ? fromHex(tagged.slice(7)) : null);
  const leaf = record && (await hash.sha256(concat([0], record)));
  push('record', Boolean(leaf && equalBytes(leaf, leafOf(proof.leaf))),
    leaf ? `${record.length} bytes hash to leaf sha256:${hex(leaf)}` : 'the record is not base64');
  push('proof target', proof.tree_size === size && equalBytes(leafOf(proof.root), root), `proof is against size ${proof.tree_size}, the checkpoint is size ${size}`);
  const path = Array.isArray(proof.path) ? proof.path.map((step) => leafOf(step && step.hash)) : [];
  const computed = leaf && path.every(Boolean) && Number.isSafeInteger(proof.leaf_index)
    ? await inclusionRoot(proof.leaf_index, size, leaf, path, hash) : null;
  push('inclusion', Boolean(computed && equalBytes(computed, root)),
    computed && equalBytes(computed, root) ? `leaf ${proof.leaf_index} is in the tree` : 'the path does not lead to the checkpoint\'s root');
  return checks;
}

/** The parts of a remembrancer checkpoint note's body: origin's federation and namespace,
 * size, root (bytes), or null. */
function checkpointParts(body) {
  const lines = body.split('\n');
  const origin = /^([^/\s]+)\/(\S+)$/.exec(lines[0] || '');
  const size = /^[0-9]+$/.test(lines[1] || '') ? Number(lines[1]) : NaN;
  const root = fromBase64(lines[2] || '');
  if (!origin || !Number.isSafeInteger(size) || !root || root.length !== 32) return null;
  return { federation: origin[1], namespace: origin[2], size, root };
}

/** Checks an evidence file (`remembrancer-evidence/v1`, what `federation evidence export`
 * writes): two checkpoint notes of one namespace and size with different roots, each signed
 * by the accused member's key as an anchor. A list of {check, ok, detail}; every check must
 * hold for the evidence to prove an equivocation. */
export async function verifyEquivocation(file, registry, hash = hashes()) {
  const checks = [];
  const push = (check, ok, detail) => { checks.push({ check, ok, detail }); return ok; };
  if (!push('format', Boolean(file && file.format === 'remembrancer-evidence/v1'), 'remembrancer-evidence/v1')) return checks;
  const member = registry.members.find((m) => m.did === file.signer);
  const key = member && fromBase64(member.key);
  if (!push('signer', Boolean(key), key ? `${file.signer} is a member` : `${file.signer} is not a member of the registry`)) return checks;
  const anchorId = await keyId(member.did, 0x01, key, hash);
  const parts = [];
  for (const [which, text] of [['first', file.first], ['second', file.second]]) {
    const note = parseNote(text);
    const part = note && checkpointParts(note.body);
    let signed = false;
    for (const signature of note ? note.signatures : []) {
      if (signature.name === member.did && equalBytes(signature.keyId, anchorId) && signature.payload.length === 64) {
        signed = signed || (await ed25519Verify(key, utf8(note.body), signature.payload, hash));
      }
    }
    push(`${which} note`, Boolean(part && signed), part ? (signed ? `signed by ${member.did}` : `not signed by ${member.did}`) : 'not a checkpoint note');
    parts.push(part);
  }
  const [a, b] = parts;
  if (!a || !b) return checks;
  push('federation', a.federation === registry.name && b.federation === registry.name, `both of ${registry.name}`);
  push('same checkpoint', a.namespace === b.namespace && a.size === b.size && a.namespace === file.namespace && a.size === file.size,
    `${a.namespace} at ${a.size} and ${b.namespace} at ${b.size}`);
  push('roots differ', !equalBytes(a.root, b.root), equalBytes(a.root, b.root) ? 'the same root: no conflict' : 'two roots for one size');
  return checks;
}
