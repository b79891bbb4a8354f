// Merkle inclusion proofs (RFC 6962), checked in the browser exactly as node/core/merkle.py
// verify_inclusion does: leaves hashed as SHA-256(0x00 || leaf), nodes as SHA-256(0x01 || l || r).

import { bytesToHex, sha256 } from "./common.js";

async function nodeHash(prefix, ...parts) {
  const total = parts.reduce((n, p) => n + p.length, 1);
  const buf = new Uint8Array(total);
  buf[0] = prefix;
  let off = 1;
  for (const p of parts) { buf.set(p, off); off += p.length; }
  return sha256(buf);
}

/** Whether `path` proves `leaf` is leaf `index` of `size` in the tree with `root` (Uint8Arrays). */
export async function verifyInclusion(leaf, index, size, path, root) {
  if (!(index >= 0 && index < size)) return false;
  return verifyInclusionOfHash(await nodeHash(0, leaf), index, size, path, root);
}

/** The same check from the leaf's hash SHA-256(0x00 || leaf): what the public proof gives (the
 * node shows the leaf of a transaction that concerns a patient only to its parties). */
export async function verifyInclusionOfHash(leafHash, index, size, path, root) {
  if (!(index >= 0 && index < size)) return false;
  let fn = index, sn = size - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(1, p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await nodeHash(1, r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesToHex(r) === bytesToHex(root);
}
