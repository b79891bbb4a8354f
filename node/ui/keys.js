// Identity key files in the browser, signed reads and signed transactions.
//
// A key file (node/home/keys.py) holds an Ed25519 seed, in the clear or sealed with a passphrase
// (Argon2id + XSalsa20-Poly1305, opened with the vendored libsodium). The seed becomes a
// non-extractable WebCrypto Ed25519 key and is then wiped; it never leaves this page, is never
// stored, and is gone when the page is closed or reloaded.
//
// Reads of health metadata are signed requests (scheme medledger-request-v2, docs/api.md),
// each naming the node it is sent to, so no other node accepts it;
// transactions are the canonical msgpack envelope of node/chain/tx.py.

import { ApiError, bytesToHex, fetchJSON, hexToBytes, nodeStatus, sha256 } from "./common.js";
import { canonical } from "./msgpack.js";

export const KEY_FILE_FORMAT = "medledger-ed25519";
export const REQUEST_SCHEME = "medledger-request-v2";
export const TX_DOMAIN = "medledger-tx-v1";
const PKCS8_ED25519_PREFIX = hexToBytes("302e020100300506032b657004220420");
const MAX_KEY_FILE_BYTES = 16 * 1024;

export class KeyFileError extends Error {}

let sodiumPromise = null;
/** Load the vendored libsodium (only needed for passphrase-protected key files). */
function loadSodium() {
  if (sodiumPromise) return sodiumPromise;
  const add = (src) => new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new KeyFileError(`cannot load ${src}`));
    document.head.append(s);
  });
  sodiumPromise = add("vendor/libsodium-sumo.js").then(() => add("vendor/libsodium-wrappers.js"))
    .then(() => window.sodium.ready).then(() => window.sodium)
    .catch((exc) => { sodiumPromise = null; throw exc; });
  return sodiumPromise;
}

/** The seed (32 bytes) and id (hex) in a key file's text; `passphrase` when it is encrypted. */
export async function readKeyFile(text, passphrase) {
  if (typeof text !== "string" || text.length > MAX_KEY_FILE_BYTES) throw new KeyFileError("this is not a MedLedger key file");
  let doc;
  try { doc = JSON.parse(text); } catch { throw new KeyFileError("this is not a MedLedger key file (not JSON)"); }
  if (!doc || doc.format !== KEY_FILE_FORMAT || typeof doc.id !== "string" || !/^[0-9a-f]{64}$/.test(doc.id)) {
    throw new KeyFileError("this is not a MedLedger key file");
  }
  let seed;
  try {
    if (doc.encryption) {
      if (!passphrase) throw new KeyFileError("this key file is encrypted: enter its passphrase");
      const enc = doc.encryption;
      if (enc.kdf !== "argon2id" || enc.cipher !== "xsalsa20-poly1305") throw new KeyFileError("unsupported key file encryption");
      const sodium = await loadSodium();
      // bounded by libsodium's "sensitive" level: a damaged file must not exhaust the browser
      if (!(Number(enc.opslimit) >= 1 && Number(enc.opslimit) <= sodium.crypto_pwhash_OPSLIMIT_SENSITIVE &&
            Number(enc.memlimit) >= 8192 && Number(enc.memlimit) <= sodium.crypto_pwhash_MEMLIMIT_SENSITIVE)) {
        throw new KeyFileError("this key file's passphrase parameters are out of range");
      }
      const key = sodium.crypto_pwhash(sodium.crypto_secretbox_KEYBYTES, passphrase, hexToBytes(enc.salt),
        Number(enc.opslimit), Number(enc.memlimit), sodium.crypto_pwhash_ALG_ARGON2ID13);
      const box = hexToBytes(enc.ciphertext); // PyNaCl SecretBox: nonce (24 bytes) || MAC || ciphertext
      const nonce = box.subarray(0, sodium.crypto_secretbox_NONCEBYTES);
      try {
        seed = sodium.crypto_secretbox_open_easy(box.subarray(sodium.crypto_secretbox_NONCEBYTES), nonce, key);
      } catch {
        throw new KeyFileError("wrong passphrase for this key file");
      } finally {
        key.fill(0);
      }
    } else {
      seed = hexToBytes(String(doc.seed));
    }
  } catch (exc) {
    if (exc instanceof KeyFileError) throw exc;
    throw new KeyFileError("this key file is damaged");
  }
  if (seed.length !== 32) throw new KeyFileError("this key file is damaged");
  return { id: doc.id, seed };
}

/** An Ed25519 identity held as a non-extractable WebCrypto key. */
export class Signer {
  constructor(id, privateKey) { this.id = id; this.privateKey = privateKey; }

  /** Import `seed`, check it matches `id` (a signature checked with the public key), wipe it. */
  static async fromSeed(id, seed) {
    const pkcs8 = new Uint8Array(PKCS8_ED25519_PREFIX.length + 32);
    pkcs8.set(PKCS8_ED25519_PREFIX);
    pkcs8.set(seed, PKCS8_ED25519_PREFIX.length);
    let privateKey;
    try {
      privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
    } finally {
      pkcs8.fill(0);
      seed.fill(0);
    }
    const publicKey = await crypto.subtle.importKey("raw", hexToBytes(id), { name: "Ed25519" }, false, ["verify"]);
    const probe = crypto.getRandomValues(new Uint8Array(32));
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, probe);
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, publicKey, sig, probe))) {
      throw new KeyFileError("this key file is damaged: its seed does not match its id");
    }
    return new Signer(id, privateKey);
  }

  static async fromKeyFile(text, passphrase, { withTrialKeys = false } = {}) {
    const { id, seed } = await readKeyFile(text, passphrase);
    const trials = withTrialKeys ? await TrialKeys.fromSeed(seed.slice()) : null;
    const signer = await Signer.fromSeed(id, seed);
    signer.trials = trials;
    return signer;
  }

  async sign(bytes) {
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, this.privateKey, bytes));
  }

  /** The four headers of a signed request to node `nodeId` (contract medledger-request-v2).
   *  `fixed` gives the timestamp and nonce for a test vector; by default they are the clock and
   *  16 random bytes. */
  async requestHeaders(chainId, nodeId, method, pathAndQuery, body = new Uint8Array(0), fixed = {}) {
    const timestamp = String(fixed.timestamp ?? Date.now());
    const nonce = fixed.nonce ?? bytesToHex(crypto.getRandomValues(new Uint8Array(16)));
    const bodyHash = bytesToHex(await sha256(body));
    const message = [REQUEST_SCHEME, chainId, nodeId.toLowerCase(), method.toUpperCase(), pathAndQuery, timestamp, nonce,
      bodyHash].join("\n");
    const signature = bytesToHex(await this.sign(new TextEncoder().encode(message)));
    return {
      "X-MedLedger-Signer": this.id,
      "X-MedLedger-Timestamp": timestamp,
      "X-MedLedger-Nonce": nonce,
      "X-MedLedger-Signature": signature,
    };
  }

  /** A signed GET of `pathAndQuery` on this node, as JSON. */
  async get(pathAndQuery) {
    const { chain_id: chainId, node_id: nodeId } = await nodeStatus();
    return fetchJSON(pathAndQuery, { headers: await this.requestHeaders(chainId, nodeId, "GET", pathAndQuery) });
  }
}

/** What a patient needs of its key besides signing, kept while it is signed in: an HMAC key
 *  (non-extractable) deriving its pseudonym in each clinical trial, as node/client.py
 *  trial_pseudonym does (docs/trials.md), and its X25519 key opening what is sealed to it: trial
 *  invitations, and its own records as their custodian releases them (portal-content.js). */
export class TrialKeys {
  constructor(hmacKey, boxPublic, boxSecret, sodium) {
    this.hmacKey = hmacKey; this.boxPublic = boxPublic; this.boxSecret = boxSecret; this.sodium = sodium;
  }

  /** From the key file's seed (a copy: the caller wipes its own). */
  static async fromSeed(seed) {
    const sodium = await loadSodium();
    const hmacKey = await crypto.subtle.importKey("raw", seed, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const pair = sodium.crypto_sign_seed_keypair(seed);
    const boxSecret = sodium.crypto_sign_ed25519_sk_to_curve25519(pair.privateKey);
    const boxPublic = sodium.crypto_sign_ed25519_pk_to_curve25519(pair.publicKey);
    pair.privateKey.fill(0);
    seed.fill(0);
    return new TrialKeys(hmacKey, boxPublic, boxSecret, sodium);
  }

  /** The pseudonym of this patient in `trial`: {id (hex), signer}. */
  async pseudonym(chainId, trial) {
    const label = new TextEncoder().encode(`medledger-trial-pseudonym-v1/${chainId}/${trial}`);
    const seed = new Uint8Array(await crypto.subtle.sign("HMAC", this.hmacKey, label));
    const id = bytesToHex(this.sodium.crypto_sign_seed_keypair(seed).publicKey);
    return { id, signer: await Signer.fromSeed(id, seed) };
  }

  /** Open a letter sealed to this patient (node/research/trial_site.py): PyNaCl's SealedBox for
   *  the data key, SecretBox (nonce || box) for the text. */
  open(ciphertextHex, wrappedHex) {
    return this.openBytes(hexToBytes(ciphertextHex), hexToBytes(wrappedHex));
  }

  /** The same on bytes: a record's ciphertext and its data key wrapped for this patient
   *  (node/records/envelope.py), as a custodian releases them to the patient. */
  openBytes(box, wrapped) {
    const key = this.sodium.crypto_box_seal_open(wrapped, this.boxPublic, this.boxSecret);
    const n = this.sodium.crypto_secretbox_NONCEBYTES;
    try {
      return this.sodium.crypto_secretbox_open_easy(box.subarray(n), box.subarray(0, n), key);
    } finally {
      key.fill(0);
    }
  }

  wipe() { this.boxSecret.fill(0); }
}

/** A signed POST of msgpack `bytes` to `pathAndQuery` on this node, as JSON. */
export async function signedPost(signer, pathAndQuery, bytes) {
  const { chain_id: chainId, node_id: nodeId } = await nodeStatus();
  const headers = await signer.requestHeaders(chainId, nodeId, "POST", pathAndQuery, bytes);
  return fetchJSON(pathAndQuery, { method: "POST", headers: { ...headers, "Content-Type": "application/msgpack" }, body: bytes });
}

/** Sign a transaction: {encoded (wire bytes), hash (hex)}, as node/chain/tx.py Transaction.create. */
export async function buildTx(signer, { chainId, type, nonce, body }) {
  const sender = hexToBytes(signer.id);
  const signature = await signer.sign(canonical([TX_DOMAIN, chainId, type, sender, nonce, body]));
  const encoded = canonical([chainId, type, sender, nonce, body, signature]);
  return { encoded, hash: bytesToHex(await sha256(encoded)) };
}

let lastNonce = 0;
/** A nonce above the ledger's last for this identity and the clock in ms (as node/client.py).
 *  The read is signed: the node shows a patient's nonce to the patient only. */
export async function nextNonce(signer) {
  const account = await signer.get(`/v1/accounts/${signer.id}`);
  lastNonce = Math.max(Number(account.nonce ?? 0) + 1, Date.now(), lastNonce + 1);
  return lastNonce;
}

/** Sign, submit and wait for the commit (deadline `timeoutMs`); the node's final status. */
export async function submitAndWait(signer, type, body, { timeoutMs = 60000 } = {}) {
  const { chain_id: chainId } = await nodeStatus();
  const tx = await buildTx(signer, { chainId, type, nonce: await nextNonce(signer), body });
  await fetchJSON("/v1/txs", { method: "POST", headers: { "Content-Type": "application/msgpack" }, body: tx.encoded });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = Math.max(1, Math.min(10, Math.floor((deadline - Date.now()) / 1000)));
    let status;
    try {
      status = await fetchJSON(`/v1/txs/${tx.hash}?wait=${left}`);
    } catch (exc) {
      if (!(exc instanceof ApiError && exc.code === "unknown_tx")) throw exc;
      status = { status: "unknown" };
    }
    if (status.status === "committed" || Date.now() >= deadline) return { hash: tx.hash, ...status };
  }
}
