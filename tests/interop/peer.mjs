// A js-libp2p peer of a Remembrancer federation, written from the wire format alone
// (proto/peer-message.cddl, C2SP signed-note): TCP, noise, yamux, identify and gossipsub on
// the federation's topic, with the settings the Rust nodes use (no gossipsub signatures: each
// peer message carries its own; message ids are the SHA-256 of the data). It decodes the
// gossip frames it hears and checks the owners' checkpoint notes against the registry's keys.
import './polyfill.mjs';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { createLibp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { gossipsub } from '@libp2p/gossipsub';
import { multiaddr } from '@multiformats/multiaddr';
import * as cborg from 'cborg';

/** The federation's gossipsub topic (`remembrancer_net::federation_topic`). */
export const topicOf = (federation) => `remembrancer/${federation}/v1`;

/** A started js-libp2p node subscribed to the federation's topic. */
export async function startPeer(federation) {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: 'StrictNoSign',
        msgIdFn: (message) => new Uint8Array(createHash('sha256').update(message.data).digest()),
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
      }),
    },
  });
  node.services.pubsub.subscribe(topicOf(federation));
  return node;
}

export async function dial(node, address) {
  return node.dial(multiaddr(address));
}

/**
 * The peer messages of one gossip frame: one CBOR map, or a CBOR array of 2 to 256 byte
 * strings each holding one; `content` is decoded too (its CBOR is the byte string's).
 */
export function decodeFrame(data) {
  const top = cborg.decode(data);
  const encoded = Array.isArray(top) ? top.map((bytes) => cborg.decode(bytes)) : [top];
  return encoded.map((message) => ({ ...message, content: cborg.decode(message.content) }));
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58(text) {
  let value = 0n;
  for (const char of text) {
    const digit = BASE58.indexOf(char);
    if (digit < 0) throw new Error(`not base58: ${char}`);
    value = value * 58n + BigInt(digit);
  }
  const bytes = [];
  for (; value > 0n; value >>= 8n) bytes.unshift(Number(value & 0xffn));
  for (const char of text) {
    if (char !== '1') break;
    bytes.unshift(0);
  }
  return Buffer.from(bytes);
}

/** The members' raw Ed25519 keys by DID, from the registry YAML (`did:` then `pubkey: z6Mk...`). */
export function registryKeys(yaml) {
  const keys = new Map();
  let did = null;
  for (const line of yaml.split('\n')) {
    const didLine = line.match(/^\s*-?\s*did:\s*(\S+)\s*$/);
    if (didLine) did = didLine[1];
    const keyLine = line.match(/^\s*pubkey:\s*z(\S+)\s*$/);
    if (keyLine && did) {
      const multicodec = base58(keyLine[1]);
      if (multicodec[0] !== 0xed || multicodec[1] !== 0x01 || multicodec.length !== 34) {
        throw new Error(`${did}: not an Ed25519 multikey`);
      }
      keys.set(did, multicodec.subarray(2));
      did = null;
    }
  }
  return keys;
}

/**
 * A checkpoint's signed note (C2SP signed-note, tlog-checkpoint): its origin, size, root and
 * the signature of `signer`, checked with that member's registry key (the key hash too).
 * Throws when anything does not hold.
 */
export function checkCheckpointNote(note, signer, key) {
  const split = note.indexOf('\n\n');
  if (split < 0) throw new Error('no blank line between body and signatures');
  const body = note.slice(0, split + 1);
  const [origin, size, root] = body.split('\n');
  if (!/^[0-9]+$/.test(size)) throw new Error(`size ${size}`);
  const rootBytes = Buffer.from(root, 'base64');
  if (rootBytes.length !== 32) throw new Error('root is not 32 bytes');
  const lines = note.slice(split + 2).split('\n').filter((line) => line.length > 0);
  const line = lines.find((l) => l.startsWith(`\u2014 ${signer} `));
  if (!line) throw new Error(`no signature line of ${signer}`);
  const blob = Buffer.from(line.slice(`\u2014 ${signer} `.length), 'base64');
  if (blob.length !== 68) throw new Error(`signature of ${blob.length} bytes`);
  const keyHash = createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${signer}\n`), Buffer.from([0x01]), key]))
    .digest()
    .subarray(0, 4);
  if (!keyHash.equals(blob.subarray(0, 4))) throw new Error('key hash differs');
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), key]);
  const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  if (!verify(null, Buffer.from(body), publicKey, blob.subarray(4))) {
    throw new Error('the Ed25519 signature does not verify');
  }
  return { origin, size: Number(size), root: rootBytes.toString('hex') };
}
