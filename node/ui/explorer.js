// Explorer page: latest blocks, a block with its transactions and their results, and a
// transaction with its Merkle inclusion proof, checked here against the block's tx_root.
// Deep links: explorer.html#block=<height>, explorer.html#tx=<hash>.

import { bytesToHex, el, fetchJSON, fmtTime, header, hexToBytes, idCell, replace, sha256, showError, table } from "./common.js";
import { verifyInclusion, verifyInclusionOfHash } from "./merkle.js";

const LATEST = 20;

function resultBadge(result) {
  if (result === null || result === undefined) return el("span", { class: "badge pending" }, "pending");
  return el("span", { class: result === "ok" ? "badge" : "badge bad" }, result);
}

async function refreshLatest() {
  const status = await fetchJSON("/v1/status", { timeoutMs: 5000 });
  const since = Math.max(1, status.height - LATEST + 1);
  const doc = await fetchJSON(`/v1/commits?since=${since}&limit=${LATEST}`, { timeoutMs: 5000 });
  const rows = doc.blocks.slice().reverse().map((b) => el("tr", {},
    el("td", {}, el("a", { href: `#block=${b.height}`, class: "block-link" }, String(b.height))),
    el("td", {}, fmtTime(b.timestamp_ms)), el("td", {}, b.txs.length), el("td", {}, idCell(b.hash))));
  replace("#blocks", table(["height", "time (UTC)", "transactions", "hash"], rows, { id: "latest-blocks" }));
}

async function showBlock(height) {
  const b = await fetchJSON(`/v1/blocks/${encodeURIComponent(height)}`);
  const h = b.header;
  const rows = b.txs.map((tx) => el("tr", { dataset: { tx: tx.hash } },
    el("td", {}, tx.index), el("td", {}, el("a", { href: `#tx=${tx.hash}`, class: "tx-link" }, idCell(tx.hash))),
    el("td", {}, tx.type ?? "withheld"), el("td", {}, tx.sender ? idCell(tx.sender) : "withheld"),
    el("td", {}, resultBadge(tx.result))));
  const detail = replace("#detail",
    el("h2", {}, `Block ${b.height}`),
    table(["field", "value"], [
      ["hash", b.hash], ["time (UTC)", fmtTime(h.timestamp_ms)], ["proposer", h.proposer], ["previous hash", h.prev_hash],
      ["tx root", h.tx_root], ["results root", h.results_root], ["state root", h.state_root],
      ["commit certificate", b.certificate ? `${b.certificate.length / 2} bytes` : "not yet stored"],
    ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, v)))),
    el("h2", {}, `Transactions (${b.txs.length})`),
    table(["#", "hash", "type", "sender", "result"], rows, { id: "block-txs" }),
    el("p", {}, b.height > 1 ? el("a", { href: `#block=${b.height - 1}` }, "← previous block") : null, " ",
      el("a", { href: `#block=${b.height + 1}` }, "next block →")));
  detail.hidden = false;
  detail.dataset.height = String(b.height);
}

async function showTx(hash) {
  const status = await fetchJSON(`/v1/txs/${encodeURIComponent(hash)}`);
  const parts = [el("h2", {}, "Transaction"), el("p", { class: "mono" }, hash)];
  if (status.status !== "committed") {
    parts.push(el("p", {}, el("span", { class: "badge pending" }, status.status), " not committed yet"));
  } else {
    const block = await fetchJSON(`/v1/blocks/${status.height}`);
    const tx = block.txs[status.index];
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
        ["block", el("a", { href: `#block=${status.height}` }, String(status.height))], ["index", status.index],
        ["sender", el("span", { class: "mono" }, tx.sender ?? "withheld")], ["nonce", tx.nonce ?? "withheld"],
      ].map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
      el("h2", {}, "Body"), withheld ?? el("pre", {}, JSON.stringify(tx.body, null, 2)),
      el("h2", {}, "Merkle inclusion proof"),
      el("p", { id: "proof-result", class: ok ? "ok" : "error" }, ok
        ? `Verified in this browser: leaf ${proof.index} of ${proof.size} hashes up to the tx root of block ${proof.height}.`
        : "The proof does NOT verify against the block's tx root."),
      table(["step", "sibling hash"], proof.path.map((p, i) => el("tr", {}, el("td", {}, i + 1), el("td", { class: "mono" }, p)))),
      el("p", { class: "note" }, `tx root ${proof.tx_root}; leaf hash ${proof.leaf_hash}; ${proof.leaf_hash_is}`));
  }
  const detail = replace("#detail", parts);
  detail.hidden = false;
}

async function route() {
  const m = /^#(block|tx)=([0-9a-fA-F]+|latest)$/.exec(location.hash);
  const detail = document.getElementById("detail");
  if (!m) { detail.hidden = true; return; }
  try {
    if (m[1] === "block") await showBlock(m[2]);
    else await showTx(m[2].toLowerCase());
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
  else replace("#search-error", el("div", { class: "error" }, "enter a block height or a 64-character transaction hash"));
}

async function main() {
  header("explorer.html");
  document.getElementById("search").addEventListener("submit", search);
  window.addEventListener("hashchange", route);
  route();
  const loop = async () => {
    try { await refreshLatest(); } catch (exc) { showError("#blocks", exc); }
    setTimeout(loop, 2000);
  };
  loop();
}

main();
