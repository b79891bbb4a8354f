// What a patient's own records are about, for the portal's sentences ("your test result
// "Heart rate""): the page fetches each record the patient owns from its custodian (through this
// node, which forwards the fetch: node/api/routes_records.py), checks the custodian's answer
// against the ledger, opens it with the patient's key and keeps only the display text of its code
// (Observation.code, Condition.code, MedicationRequest.medicationCodeableConcept ...). Nothing is
// stored; the labels go with the page. A patient always may read its own records
// (queries.active_grant: rule "patient"), so no access request is made and nothing is audited.

import { bytesToHex, hexToBytes, nodeStatus, sha256 } from "./common.js";
import { canonical } from "./msgpack.js";

const FETCH_DOMAIN = "medledger-fetch-v1";
const MAX_LABELS = 100; // records read for labels, at most, per sign-in
const MAX_LABEL = 80;
const labels = new Map(); // record id -> display text
const tried = new Set();

/** The display text known for a record, or "". */
export function labelFor(recordId) {
  return labels.get(recordId) || "";
}

// -- a small msgpack reader (the answer of a fetch) --------------------------------------------
function readMsgpack(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const take = (n) => { if (at + n > bytes.length) throw new Error("truncated msgpack"); const out = bytes.subarray(at, at + n); at += n; return out; };
  const u8 = () => take(1)[0];
  const u16 = () => { const v = view.getUint16(at); take(2); return v; };
  const u32 = () => { const v = view.getUint32(at); take(4); return v; };
  const text = (n) => new TextDecoder().decode(take(n));
  function value(depth) {
    if (depth > 16) throw new Error("msgpack too deep");
    const b = u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return map(b & 0x0f, depth);
    if ((b & 0xf0) === 0x90) return list(b & 0x0f, depth);
    if ((b & 0xe0) === 0xa0) return text(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return take(u8()).slice();
      case 0xc5: return take(u16()).slice();
      case 0xc6: return take(u32()).slice();
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: { const hi = u32(); const lo = u32(); return hi * 2 ** 32 + lo; }
      case 0xd9: return text(u8());
      case 0xda: return text(u16());
      case 0xdb: return text(u32());
      case 0xdc: return list(u16(), depth);
      case 0xdd: return list(u32(), depth);
      case 0xde: return map(u16(), depth);
      case 0xdf: return map(u32(), depth);
      default: throw new Error(`msgpack type 0x${b.toString(16)} is not expected here`);
    }
  }
  function list(n, depth) { const out = []; for (let i = 0; i < n; i++) out.push(value(depth + 1)); return out; }
  function map(n, depth) { const out = {}; for (let i = 0; i < n; i++) { const k = value(depth + 1); out[k] = value(depth + 1); } return out; }
  return value(0);
}

/** The display text of a resource's code, in the order FHIR's types carry it. */
export function displayOf(resource) {
  for (const field of ["code", "medicationCodeableConcept", "type", "vaccineCode"]) {
    let concept = resource && resource[field];
    if (Array.isArray(concept)) concept = concept[0];
    if (!concept || typeof concept !== "object") continue;
    const coded = (concept.coding || []).find((c) => c && typeof c.display === "string" && c.display.trim());
    const words = (typeof concept.text === "string" && concept.text.trim()) || (coded && coded.display.trim());
    if (words) return words.length > MAX_LABEL ? `${words.slice(0, MAX_LABEL - 1)}…` : words;
  }
  return "";
}

async function fetchOwn(signer, record) {
  const { chain_id: chainId } = await nodeStatus();
  const rid = hexToBytes(record.id);
  const requester = hexToBytes(signer.id);
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const timestamp = Date.now();
  const signature = await signer.sign(canonical([FETCH_DOMAIN, chainId, rid, requester, timestamp, nonce]));
  const body = canonical({ record_id: rid, requester, timestamp_ms: timestamp, nonce, signature });
  const resp = await fetch(`/v1/records/${record.id}/fetch`, { method: "POST", headers: { "Content-Type": "application/msgpack" }, body });
  if (!resp.ok) return null;
  const release = readMsgpack(new Uint8Array(await resp.arrayBuffer()));
  // the answer must be for this request, from the record's custodian, and hold the ciphertext the ledger names
  if (!release || bytesToHex(release.nonce || new Uint8Array()) !== bytesToHex(nonce)) return null;
  if (bytesToHex(release.custodian || new Uint8Array()) !== record.custodian) return null;
  if (bytesToHex(await sha256(release.ciphertext)) !== record.hash) return null;
  const plain = signer.trials.openBytes(release.ciphertext, release.wrapped_key);
  return JSON.parse(new TextDecoder().decode(plain));
}

/** Read the labels of the patient's records not tried yet (a few at a time); true when some
 *  label is new. Erased records and any that do not open are skipped. */
export async function loadLabels(signer, records) {
  if (!signer || !signer.trials) return false;
  const todo = records.filter((r) => !r.erased && !tried.has(r.id)).slice(0, Math.max(0, MAX_LABELS - tried.size));
  let found = false;
  for (let i = 0; i < todo.length; i += 4) {
    await Promise.all(todo.slice(i, i + 4).map(async (r) => {
      tried.add(r.id);
      try {
        const words = displayOf(await fetchOwn(signer, r));
        if (words) { labels.set(r.id, words); found = true; }
      } catch (exc) { /* a record that does not open gets no label */ }
    }));
  }
  return found;
}
