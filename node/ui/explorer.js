// Explorer page: the chain's blocks (paged, newest first), a block with its transactions (paged)
// and its commit certificate checked here, and a transaction with its Merkle inclusion proof
// checked here against the block's tx_root and that block's certificate.
//
// The certificate check is the one `medledger audit verify` makes (consensus/certificate.py):
// the header is hashed in the page (canonical msgpack, SHA-256), the certificate must be for
// that digest and height, and a quorum of distinct members of the validator set of that height
// (GET /v1/validators?height=H) must each have signed, with Ed25519 (WebCrypto), the COMMIT vote
// [DOMAIN, 3, chain id, height, view, voter, digest] in canonical msgpack (consensus/encoding.py).
// Deep links: explorer.html#block=<height>, #block=<height>&txs=<offset>, #tx=<hash>.

import {
  ago, bytesToHex, el, fetchJSON, header, hexToBytes, idCell, nodeStatus, plainError, replace, sha256, showError, table, timeEl,
} from "./common.js";
import { verifyInclusion, verifyInclusionOfHash } from "./merkle.js";
import { canonical, decode } from "./msgpack.js";
import { party } from "./names.js";

const BLOCKS_PAGE = 20; // blocks a page of the block list
const TX_PAGE = 50; // transactions a page of a block
const CONSENSUS_DOMAIN = "medledger/consensus/v1";
const KIND_COMMIT = 3;
const BLOCK_DOMAIN = "medledger-block-v1";
const BASE_VERSION = 1;

function resultBadge(result) {
  if (result === null || result === undefined) return el("span", { class: "badge pending" }, "pending");
  return el("span", { class: result === "ok" ? "badge" : "badge bad" }, result);
}

// ---- the commit certificate, checked in this browser ----------------------------------------

/** The header's canonical fields, as node/chain/block.py Header.fields() lists them. */
export function headerFields(h) {
  const fields = [BLOCK_DOMAIN, h.chain_id, h.height, hexToBytes(h.prev_hash), h.timestamp_ms, hexToBytes(h.proposer),
    hexToBytes(h.tx_root), hexToBytes(h.results_root), hexToBytes(h.state_root), hexToBytes(h.prev_certificate)];
  return h.version === BASE_VERSION || h.version === undefined ? fields : [...fields, h.version];
}

/** The bytes a validator signs for its COMMIT vote (consensus/encoding.py vote_signing_bytes). */
export function commitSigningBytes(chainId, height, view, voter, digest) {
  return canonical([CONSENSUS_DOMAIN, KIND_COMMIT, chainId, height, view, voter, digest]);
}

/** Quorum of a set of n validators (consensus/validators.py): floor((n + f) / 2) + 1, f = floor((n - 1) / 3). */
export function quorumOf(n) {
  const f = Math.floor((n - 1) / 3);
  return Math.floor((n + f) / 2) + 1;
}

async function ed25519Verify(publicKey, signature, message) {
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch (exc) {
    return false; // a key or signature of the wrong size: it does not verify
  }
}

const isBytes = (v, n) => v instanceof Uint8Array && (n === undefined || v.length === n);
const isInt = (v) => Number.isSafeInteger(v) && v >= 0;

/** Check `block` (a GET /v1/blocks answer)'s certificate against `validators` (the set of its
 * height: [{id, name}]) for `chainId`. Returns {verified, summary, votes: [{id, name, status}],
 * signed, n, quorum}; `summary` says exactly what was checked, or what failed. */
export async function checkCertificate(block, chainId, validators) {
  const H = block.height;
  const fail = (why, extra = {}) => ({ verified: false, summary: `NOT verified: ${why}`, votes: [], ...extra });
  if (!block.certificate) return { verified: false, absent: true, votes: [], summary: "No commit certificate is stored for this block yet: nothing was checked." };
  const h = block.header;
  if (h.chain_id !== chainId) return fail(`the block is of chain "${h.chain_id}", this node's chain is "${chainId}".`);
  if (h.height !== H) return fail(`the header says height ${h.height}, the node answered it for height ${H}.`);
  const digest = await sha256(canonical(headerFields(h)));
  if (bytesToHex(digest) !== block.hash) return fail("the header does not hash to the block hash the node gave.");
  let cert;
  try {
    cert = decode(hexToBytes(block.certificate));
  } catch (exc) {
    return fail(`the certificate is not well formed (${exc.message}).`);
  }
  if (!Array.isArray(cert) || cert.length !== 4 || !isInt(cert[0]) || !isInt(cert[1]) || !isBytes(cert[2], 32) || !Array.isArray(cert[3])
      || !cert[3].every((v) => Array.isArray(v) && v.length === 2 && isBytes(v[0], 32) && isBytes(v[1]))) {
    return fail("the certificate is not [height, view, digest, votes].");
  }
  const [certHeight, view, certDigest, votes] = cert;
  if (certHeight !== H) return fail(`the certificate is for height ${certHeight}, not ${H}.`);
  if (bytesToHex(certDigest) !== block.hash) return fail("the certificate is for another block (its digest is not this header's hash).");
  const members = new Map(validators.map((v) => [v.id, v]));
  const n = members.size, quorum = quorumOf(n);
  const seen = new Set();
  const checked = [];
  for (const [voter, signature] of votes) {
    const id = bytesToHex(voter);
    const name = members.get(id)?.name || "";
    let status;
    if (!members.has(id)) status = "not a validator of this height";
    else if (seen.has(id)) status = "counted twice";
    else status = (await ed25519Verify(voter, signature, commitSigningBytes(chainId, H, view, voter, certDigest))) ? "valid" : "does not match";
    seen.add(id);
    checked.push({ id, name, status });
  }
  const signed = checked.filter((v) => v.status === "valid").length;
  const bad = checked.find((v) => v.status !== "valid");
  const base = { votes: checked, signed, n, quorum, view };
  if (bad) {
    const who = bad.name ? `${bad.name} (${bad.id.slice(0, 8)}…)` : `${bad.id.slice(0, 8)}…`;
    const what = bad.status === "does not match" ? `signature of validator ${who} does not match`
      : bad.status === "counted twice" ? `validator ${who} is counted twice` : `${who} is not a validator of height ${H}`;
    return { verified: false, ...base, summary: `NOT verified: ${what}.` };
  }
  if (signed < quorum) {
    return { verified: false, ...base, summary: `NOT verified: ${signed} of ${n} validators of height ${H} signed this block; a quorum is ${quorum}.` };
  }
  return { verified: true, ...base,
    summary: `${signed} of ${n} validators of height ${H} signed this block: quorum ${quorum} reached; signatures checked in this browser.` };
}

const setKey = (validators) => validators.map((v) => v.id).sort().join();

/** The other validators' nodes asked for the set of `height` (each at the API address it
 * publishes; /v1/validators is readable from any origin): {same: [names], differ: [names],
 * silent: count}. A node that does not answer, or does not know that height yet, is silent. */
async function crossCheckSet(status, height, validators) {
  const others = status.validator_set.filter((v) => v.id !== status.node_id && v.api);
  const answers = await Promise.all(others.map((v) =>
    fetchJSON(`${v.api.replace(/\/$/, "")}/v1/validators?height=${height}`, { timeoutMs: 2500 })
      .then((doc) => ({ v, key: setKey(doc.validators) })).catch(() => ({ v, key: null }))));
  const mine = setKey(validators);
  const name = (v) => v.name || `${v.id.slice(0, 8)}…`;
  return { same: answers.filter((a) => a.key === mine).map((a) => name(a.v)),
    differ: answers.filter((a) => a.key !== null && a.key !== mine).map((a) => name(a.v)),
    silent: answers.filter((a) => a.key === null).length };
}

/** The certificate section of a block (or of a transaction's block): the verdict, then each vote. */
async function certificateView(block) {
  const out = el("div", { id: "certificate" });
  let result, cross = null;
  try {
    const [status, set] = await Promise.all([nodeStatus(), fetchJSON(`/v1/validators?height=${block.height}`)]);
    [result, cross] = await Promise.all([checkCertificate(block, status.chain_id, set.validators),
      crossCheckSet(status, block.height, set.validators)]);
    if (cross.differ.length) {
      result = { ...result, verified: false,
        summary: `NOT verified: the nodes of ${cross.differ.join(", ")} answer another validator set for height ${block.height} than this node does.` };
    }
  } catch (exc) {
    result = { verified: false, votes: [], summary: `NOT verified: the validator set of height ${block.height} could not be read (${plainError(exc)})` };
  }
  out.dataset.verified = String(result.verified);
  out.append(el("p", { id: "certificate-result", class: result.verified ? "ok" : result.absent ? "note" : "error", role: "status" }, result.summary));
  if (cross) {
    const parts = [`The validator set of height ${block.height} is this node's answer`];
    if (cross.same.length) parts.push(`; the nodes of ${cross.same.join(", ")} answer the same set`);
    if (cross.silent) parts.push(`; ${cross.silent} other validator node${cross.silent > 1 ? "s" : ""} did not answer`);
    out.append(el("p", { class: "note", id: "certificate-set" }, parts.join(""), "."));
  }
  if (result.votes.length) {
    out.append(table(["validator", "signature (Ed25519, COMMIT vote)"], result.votes.map((v) => el("tr", { dataset: { voter: v.id, status: v.status } },
      el("td", {}, party(v.id)),
      el("td", {}, el("span", { class: v.status === "valid" ? "badge" : "badge bad" }, v.status)))), { id: "certificate-votes", "aria-label": "certificate votes" }));
  }
  out.append(el("p", { class: "note" }, `Checked in this page: the header's SHA-256 (canonical msgpack) is the block hash and the certified digest; `,
    `each vote is a distinct member of the validator set of height ${block.height}, and its Ed25519 signature of `,
    el("code", {}, `[${CONSENSUS_DOMAIN}, ${KIND_COMMIT}, chain id, height, view, voter, digest]`), ` verifies. `,
    `The validator set of that height (GET /v1/validators?height=${block.height}) changes only by the validators' vote; it is asked of this node and of every other validator's node.`));
  return out;
}

// ---- the block list -------------------------------------------------------------------------

let listTop = null; // the highest block of the page shown; null: follow the newest

function pager(label, buttons) {
  return el("nav", { class: "pager", "aria-label": label }, buttons);
}

async function refreshBlocks() {
  const status = await fetchJSON("/v1/status", { timeoutMs: 5000 });
  const head = status.height;
  const top = listTop === null ? head : Math.min(listTop, head);
  const since = Math.max(1, top - BLOCKS_PAGE + 1);
  const doc = top >= 1 ? await fetchJSON(`/v1/commits?since=${since}&limit=${top - since + 1}&hashes=0`, { timeoutMs: 5000 }) : { blocks: [] };
  const rows = doc.blocks.slice().reverse().map((b) => el("tr", { dataset: { height: String(b.height) } },
    el("td", {}, el("a", { href: `#block=${b.height}`, class: "block-link" }, String(b.height))),
    el("td", {}, timeEl(b.timestamp_ms), el("div", { class: "note" }, ago(b.timestamp_ms))),
    el("td", {}, String(b.tx_count)), el("td", {}, party(b.proposer)), el("td", {}, idCell(b.hash))));
  const go = (to) => () => { listTop = to; refreshBlocks().catch((exc) => showError("#blocks", exc)); };
  const t = table(["height", "time (UTC)", "transactions", "proposer", "hash"], rows, { id: "latest-blocks", "aria-label": "blocks" });
  t.querySelector("table").dataset.from = String(since);
  t.querySelector("table").dataset.to = String(top);
  replace("#blocks",
    el("p", { class: "note", id: "blocks-range" }, top >= 1 ? `Blocks ${since} to ${top} of ${head}${listTop === null ? " (newest first, following the chain)" : ""}.` : "No block yet."),
    t,
    pager("block pages", [
      el("button", { type: "button", class: "secondary", id: "blocks-newest", disabled: listTop === null, onclick: go(null) }, "Newest"),
      el("button", { type: "button", class: "secondary", id: "blocks-newer", disabled: listTop === null || top >= head,
        onclick: go(top + BLOCKS_PAGE >= head ? null : top + BLOCKS_PAGE) }, "← Newer"),
      el("button", { type: "button", class: "secondary", id: "blocks-older", disabled: since <= 1, onclick: go(since - 1) }, "Older →"),
    ]));
}

// ---- a block ----------------------------------------------------------------------------------

async function showBlock(heightText, offsetText) {
  const offset = Math.max(0, Number(offsetText || 0));
  const b = await fetchJSON(`/v1/blocks/${encodeURIComponent(heightText)}?tx_offset=${offset}&tx_limit=${TX_PAGE}`);
  const h = b.header;
  const rows = b.txs.map((tx) => el("tr", { dataset: { tx: tx.hash } },
    el("td", {}, String(tx.index)), el("td", {}, el("a", { href: `#tx=${tx.hash}`, class: "tx-link" }, idCell(tx.hash))),
    el("td", {}, tx.type ?? "withheld"), el("td", {}, tx.sender ? party(tx.sender) : "withheld"),
    el("td", {}, resultBadge(tx.result))));
  const last = b.tx_offset + b.txs.length;
  const txLink = (o, text, id) => el("a", { href: `#block=${b.height}&txs=${o}`, id, class: "button-link" }, text);
  const txPager = b.tx_count > TX_PAGE ? pager("transaction pages", [
    b.tx_offset > 0 ? txLink(Math.max(0, b.tx_offset - TX_PAGE), `← previous ${TX_PAGE}`, "txs-previous") : null,
    last < b.tx_count ? txLink(last, `next ${Math.min(TX_PAGE, b.tx_count - last)} →`, "txs-next") : null,
  ]) : null;
  const newest = b.height >= b.committed_height;
  const detail = replace("#detail",
    el("h2", {}, `Block ${b.height}`),
    table(["field", "value"], [
      ["hash", el("span", { class: "mono" }, b.hash)],
      ["time (UTC)", [timeEl(h.timestamp_ms), " ", el("span", { class: "note" }, ago(h.timestamp_ms))]],
      ["proposer", [party(h.proposer), el("div", { class: "mono" }, h.proposer)]],
      ["previous hash", el("span", { class: "mono" }, h.prev_hash)], ["tx root", el("span", { class: "mono" }, h.tx_root)],
      ["results root", el("span", { class: "mono" }, h.results_root)], ["state root", el("span", { class: "mono" }, h.state_root)],
      ["protocol version", String(h.version)],
      ["commit certificate", b.certificate ? `${b.certificate.length / 2} bytes` : "not yet stored"],
    ].map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v))), { id: "block-header", "aria-label": "block header" }),
    el("h2", {}, "Commit certificate"),
    el("div", { id: "certificate-slot" }, el("p", { class: "note" }, "checking the validators' signatures…")),
    el("h2", {}, `Transactions (${b.tx_count})`),
    b.tx_count > TX_PAGE ? el("p", { class: "note", id: "txs-range" }, `Transactions ${b.tx_offset + 1} to ${last} of ${b.tx_count}.`) : null,
    table(["#", "hash", "type", "sender", "result"], rows, { id: "block-txs", "aria-label": "transactions of the block" }),
    txPager,
    el("p", { class: "block-nav" },
      b.height > 1 ? el("a", { href: `#block=${b.height - 1}`, id: "block-previous" }, "← previous block") : null, " ",
      newest ? el("span", { class: "note", id: "block-next-none" }, "this is the newest block: the next one is not committed yet")
        : el("a", { href: `#block=${b.height + 1}`, id: "block-next" }, "next block →")));
  detail.hidden = false;
  detail.dataset.height = String(b.height);
  const cert = await certificateView(b);
  if (detail.dataset.height === String(b.height)) replace("#certificate-slot", cert);
}

// ---- a transaction ------------------------------------------------------------------------------

async function showTx(hash) {
  const status = await fetchJSON(`/v1/txs/${encodeURIComponent(hash)}`);
  const parts = [el("h2", {}, "Transaction"), el("p", { class: "mono" }, hash)];
  let block = null;
  if (status.status !== "committed") {
    parts.push(el("p", {}, el("span", { class: "badge pending" }, status.status), " not committed yet"));
  } else {
    block = await fetchJSON(`/v1/blocks/${status.height}?tx_offset=${status.index}&tx_limit=1`);
    const tx = block.txs[0];
    // The public proof gives the leaf's hash; the leaf itself (the encoded transaction, whose
    // SHA-256 is the tx hash) only a signed request by one of the transaction's parties gets.
    const proof = await fetchJSON(`/v1/txs/${hash}/proof`);
    const withLeaf = typeof proof.leaf === "string";
    const leafIsTx = withLeaf && bytesToHex(await sha256(hexToBytes(proof.leaf))) === hash;
    const ok = (!withLeaf || leafIsTx) && tx.hash === hash && proof.tx_root === block.header.tx_root &&
      (withLeaf
        ? await verifyInclusion(hexToBytes(proof.leaf), proof.index, proof.size, proof.path.map(hexToBytes), hexToBytes(proof.tx_root))
        : await verifyInclusionOfHash(hexToBytes(proof.leaf_hash), proof.index, proof.size, proof.path.map(hexToBytes), hexToBytes(proof.tx_root)));
    const withheld = tx.withheld ? el("p", { class: "note" }, tx.withheld) : null;
    parts.push(
      table(["field", "value"], [
        ["type", tx.type ?? "withheld"], ["result", resultBadge(status.result)],
        ["block", el("a", { href: `#block=${status.height}` }, String(status.height))], ["index", String(status.index)],
        ["time (UTC)", [timeEl(block.header.timestamp_ms), " ", el("span", { class: "note" }, "(its block's time)")]],
        ["sender", tx.sender ? [party(tx.sender), el("div", { class: "mono" }, tx.sender)] : "withheld"], ["nonce", tx.nonce ?? "withheld"],
      ].map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v))), { id: "tx-fields", "aria-label": "transaction" }),
      el("h2", {}, "Body"), withheld ?? el("pre", { tabindex: "0" }, JSON.stringify(tx.body, null, 2)),
      el("h2", {}, "Merkle inclusion proof"),
      el("p", { id: "proof-result", class: ok ? "ok" : "error" }, ok
        ? `Verified in this browser: leaf ${proof.index} of ${proof.size} hashes up to the tx root of block ${proof.height}.`
        : "NOT verified: the proof does not lead to the block's tx root."),
      table(["step", "sibling hash"], proof.path.map((p, i) => el("tr", {}, el("td", {}, String(i + 1)), el("td", { class: "mono" }, p))),
        { "aria-label": "proof steps" }),
      el("p", { class: "note" }, `tx root ${proof.tx_root}; leaf hash ${proof.leaf_hash}; ${proof.leaf_hash_is}`),
      el("h2", {}, `Commit certificate of block ${status.height}`),
      el("div", { id: "certificate-slot" }, el("p", { class: "note" }, "checking the validators' signatures…")));
  }
  const detail = replace("#detail", parts);
  detail.hidden = false;
  detail.dataset.height = block ? String(block.height) : "";
  if (block) {
    const cert = await certificateView(block);
    if (detail.dataset.height === String(block.height)) replace("#certificate-slot", cert);
  }
}

// ---- routing and search ---------------------------------------------------------------------------

async function route() {
  const m = /^#(?:block=(\d+|latest)(?:&txs=(\d+))?|tx=([0-9a-fA-F]{64}))$/.exec(location.hash);
  const detail = document.getElementById("detail");
  if (!m) {
    if (location.hash.length > 1) { showError(detail, new Error("That link is not a block height or a transaction hash.")); detail.hidden = false; }
    else detail.hidden = true;
    return;
  }
  try {
    if (m[1] !== undefined) await showBlock(m[1], m[2]);
    else await showTx(m[3].toLowerCase());
    detail.focus({ preventScroll: false });
  } catch (exc) {
    showError(detail, exc);
    detail.hidden = false;
  }
}

function search(event) {
  event.preventDefault();
  const q = document.getElementById("query").value.trim();
  replace("#search-error");
  if (/^\d+$/.test(q)) location.hash = `#block=${q}`;
  else if (/^[0-9a-fA-F]{64}$/.test(q)) location.hash = `#tx=${q.toLowerCase()}`;
  else replace("#search-error", el("div", { class: "error", role: "alert" }, "Enter a block height (a whole number) or a transaction hash (64 hexadecimal characters)."));
}

async function main() {
  if (!document.getElementById("search")) return; // imported by a test, not the explorer page
  header("explorer.html");
  document.getElementById("search").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  route();
  const loop = async () => {
    try { if (listTop === null) await refreshBlocks(); } catch (exc) { showError("#blocks", exc); }
    setTimeout(loop, 2000);
  };
  loop();
}

main();
