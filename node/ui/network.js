// Network page: this node's status, every validator's height/view/peers read from the API
// address it publishes, a live chart of committed transactions per second, the institutions by
// kind and the data-sharing agreements in force (institutions.js).
//
// The chart keeps every block whose time falls in its window, whatever the block rate: it reads
// the commit feed without transaction hashes (GET /v1/commits?hashes=0: height, time and count of
// each block) and sums the counts per second of block time. On load it reads back, a page of
// 1,000 blocks at a time, until it has the whole window.

import { el, fetchJSON, header, idCell, plainError, replace, showError, table } from "./common.js";
import { agreementsView, fetchAgreements, fetchInstitutions, institutionsView } from "./institutions.js";

const WINDOW_S = 60;       // seconds shown on the chart
const KEEP_MS = (WINDOW_S + 5) * 1000; // blocks older than this (block time against the clock) are dropped
const FEED_PAGE = 1000;    // blocks one commit-feed answer carries at most
const MAX_BACKFILL_PAGES = 30; // at most 30,000 blocks read back on load (500 blocks a second)
const blocks = new Map();   // height -> {t: timestamp_ms, n: tx count}
let nextHeight = null;

function stat(label, value, id) {
  return el("div", { class: "stat" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

async function refreshStatus() {
  let s;
  try {
    s = await fetchJSON("/v1/status", { timeoutMs: 5000 });
  } catch (exc) {
    showError("#stats", exc);
    return null;
  }
  updateSelfRow(s); // in the same frame as the tiles: the row of this node never lags them
  replace("#stats",
    stat("height", s.height, "height"), stat("view", s.view, "view"), stat("peers", s.peers.length, "peer-count"),
    stat("mempool", s.mempool_size, "mempool"), stat("validators", s.validators, "validator-count"),
    stat("state", s.syncing ? "syncing" : "in sync", "syncing"));
  const names = new Map(s.validator_set.map((v) => [v.id, v.name]));
  replace("#peers", table(["peer", "validator"], s.peers.map((p) => el("tr", {}, el("td", {}, idCell(p, names.get(p))),
    el("td", {}, names.has(p) ? "yes" : "no")))));
  return s;
}

function stateBadge(s, error) {
  return s ? el("span", { class: "badge" }, s.syncing ? "syncing" : "up")
    : el("span", { class: "badge down", title: error || "" }, "unknown");
}

function fillRow(row, s, error) {
  row.querySelector(".v-height").textContent = s ? String(s.height) : "—";
  row.querySelector(".v-view").textContent = s ? String(s.view) : "—";
  row.querySelector(".v-peers").textContent = s ? String(s.peers.length) : "—";
  row.querySelector(".v-state").replaceChildren(stateBadge(s, error));
}

let tableOf = ""; // the validator set the table was built for (ids joined)

function validatorTable(self) {
  const rows = self.validator_set.map((v) => el("tr", { dataset: { validator: v.id, self: v.id === self.node_id ? "1" : null } },
    el("td", {}, v.name || ""), el("td", {}, idCell(v.id)), el("td", { class: "mono" }, v.api || "—"),
    el("td", { class: "v-height" }, "—"), el("td", { class: "v-view" }, "—"),
    el("td", { class: "v-peers" }, "—"), el("td", { class: "v-state" }, stateBadge(null, "not read yet"))));
  replace("#validators", table(["name", "id", "API", "height", "view", "peers", "state"], rows,
    { id: "validator-table", "aria-label": "validators" }));
  tableOf = self.validator_set.map((v) => v.id).join();
}

function updateSelfRow(self) {
  if (tableOf !== self.validator_set.map((v) => v.id).join()) validatorTable(self);
  const row = document.querySelector(`#validator-table tr[data-validator="${self.node_id}"]`);
  if (row) fillRow(row, self, null);
}

const inFlight = new Set(); // validators whose status is being read: a slow one is not asked twice
/** Every other validator's row, each filled when its own answer comes (none waits for another). */
function refreshValidators(self) {
  for (const v of self.validator_set) {
    if (v.id === self.node_id || inFlight.has(v.id)) continue;
    const row = () => document.querySelector(`#validator-table tr[data-validator="${v.id}"]`);
    if (!v.api) { if (row()) fillRow(row(), null, "no API address published"); continue; }
    inFlight.add(v.id);
    fetchJSON(`${v.api.replace(/\/$/, "")}/v1/status`, { timeoutMs: 2500 })
      .then((s) => { if (row()) fillRow(row(), s, null); })
      .catch((exc) => { if (row()) fillRow(row(), null, plainError(exc)); })
      .finally(() => inFlight.delete(v.id));
  }
}

// the last answers shown, so that a refresh with nothing new keeps an opened policy open
const shown = { institutions: null, agreements: null };

async function refreshListing(key, target, fetchAll, view) {
  let found;
  try {
    found = await fetchAll();
  } catch (exc) {
    shown[key] = null;
    showError(target, exc);
    return;
  }
  const text = JSON.stringify(found);
  if (text === shown[key]) return;
  shown[key] = text;
  replace(target, view(found));
}

let listingsInFlight = false;
async function refreshLedgerParties() {
  if (listingsInFlight) return;
  listingsInFlight = true;
  try {
    await Promise.all([refreshListing("institutions", "#institutions", fetchInstitutions, institutionsView),
      refreshListing("agreements", "#agreements", fetchAgreements, agreementsView)]);
  } finally {
    listingsInFlight = false;
  }
}

const feed = (since) => fetchJSON(`/v1/commits?since=${since}&limit=${FEED_PAGE}&hashes=0`, { timeoutMs: 5000 });

function keep(doc) {
  for (const b of doc.blocks) blocks.set(b.height, { t: b.timestamp_ms, n: b.tx_count });
}

function prune() {
  const oldest = Date.now() - KEEP_MS;
  for (const [h, b] of blocks) if (b.t < oldest) blocks.delete(h);
}

/** On load: the blocks of the whole window, read back from `head` a page at a time. */
async function backfill(head) {
  const since0 = Math.max(1, head - FEED_PAGE + 1);
  nextHeight = head + 1;
  for (let i = 0, since = since0; i < MAX_BACKFILL_PAGES; i++, since = Math.max(1, since - FEED_PAGE)) {
    const doc = await feed(since);
    keep(doc);
    const first = doc.blocks[0];
    if (since === 1 || !first || first.timestamp_ms < Date.now() - KEEP_MS) break;
  }
  prune();
}

/** Every block committed since the last poll (as many pages as it takes). */
async function pollCommits() {
  for (let i = 0; i < MAX_BACKFILL_PAGES; i++) {
    const doc = await feed(nextHeight);
    keep(doc);
    for (const b of doc.blocks) nextHeight = Math.max(nextHeight, b.height + 1);
    if (doc.blocks.length < FEED_PAGE) break;
  }
  prune();
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const nowS = Math.floor(Date.now() / 1000);
  const buckets = new Array(WINDOW_S).fill(0);
  let blocksInWindow = 0;
  for (const { t, n } of blocks.values()) {
    const age = nowS - Math.floor(t / 1000);
    if (age >= 0 && age < WINDOW_S) { buckets[WINDOW_S - 1 - age] += n; blocksInWindow += 1; }
  }
  const max = Math.ceil(Math.max(4, ...buckets) / 4) * 4; // four gridlines at whole numbers
  const left = 40, bottom = h - 22, top = 10, right = w - 10;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#66727f";
  ctx.strokeStyle = "#d9e0e7";
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(right, y); ctx.stroke();
    ctx.fillText(String(Math.round((max * i) / 4)), 4, y + 4);
  }
  ctx.fillText(`-${WINDOW_S}s`, left, h - 6);
  ctx.fillText("now", right - 22, h - 6);
  const bw = (right - left) / WINDOW_S;
  ctx.fillStyle = "#136f63";
  buckets.forEach((n, i) => {
    const bh = ((bottom - top) * n) / max;
    ctx.fillRect(left + i * bw + 1, bottom - bh, Math.max(1, bw - 2), bh);
  });
  const last10 = buckets.slice(-10).reduce((a, b) => a + b, 0) / 10;
  const total = buckets.reduce((a, b) => a + b, 0);
  document.getElementById("tps-note").textContent =
    `${last10.toFixed(1)} tx/s over the last 10 s · ${total} transactions in ${blocksInWindow} blocks in the last ${WINDOW_S} s (block time)`;
  canvas.dataset.blocks = String(blocks.size);
  // what the chart holds, for a test to compare with the API: the window is whole seconds of
  // block time from `fromS` to `toS` (inclusive), `total` the transactions of its blocks
  Object.assign(canvas.dataset, { total: String(total), blocksInWindow: String(blocksInWindow),
    fromS: String(nowS - WINDOW_S + 1), toS: String(nowS), height: String(nextHeight - 1) });
  canvas.setAttribute("aria-label", `committed transactions per second over the last ${WINDOW_S} seconds: ${total} in all, ${last10.toFixed(1)} a second over the last 10 seconds`);
}

async function main() {
  header("index.html");
  let self = await refreshStatus();
  let tick = 0;
  const loop = async () => {
    try {
      if (tick > 0) self = (await refreshStatus()) || self;
      if (self) {
        refreshValidators(self); // not awaited: each row fills when its validator answers
        if (nextHeight === null) await backfill(self.height);
        else await pollCommits();
      }
      if (tick % 10 === 0) refreshLedgerParties(); // not awaited: the chart keeps its pace
    } catch (exc) {
      console.warn(exc);
    }
    drawChart();
    tick += 1;
    setTimeout(loop, 1000);
  };
  loop();
}

main();
