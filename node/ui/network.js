// Network page: this node's status, every validator's height/view/peers read from the API
// address it publishes, a live chart of committed transactions per second, the institutions by
// kind and the data-sharing agreements in force (institutions.js).

import { el, fetchJSON, header, idCell, replace, showError, table } from "./common.js";
import { agreementsView, fetchAgreements, fetchInstitutions, institutionsView } from "./institutions.js";

const WINDOW_S = 60;       // seconds shown on the chart
const HISTORY_BLOCKS = 400; // blocks read back on load
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
  replace("#stats",
    stat("height", s.height, "height"), stat("view", s.view, "view"), stat("peers", s.peers.length, "peer-count"),
    stat("mempool", s.mempool_size, "mempool"), stat("validators", s.validators, "validator-count"),
    stat("state", s.syncing ? "syncing" : "in sync", "syncing"));
  const names = new Map(s.validator_set.map((v) => [v.id, v.name]));
  replace("#peers", table(["peer", "validator"], s.peers.map((p) => el("tr", {}, el("td", {}, idCell(p, names.get(p))),
    el("td", {}, names.has(p) ? "yes" : "no")))));
  return s;
}

async function validatorRow(v, self) {
  let s = null, error = null;
  if (v.id === self.node_id) s = self;
  else if (v.api) {
    try { s = await fetchJSON(`${v.api.replace(/\/$/, "")}/v1/status`, { timeoutMs: 2500 }); } catch (exc) { error = exc.message; }
  } else error = "no API address published";
  const state = s ? el("span", { class: "badge" }, s.syncing ? "syncing" : "up") : el("span", { class: "badge down", title: error || "" }, "unknown");
  return el("tr", { dataset: { validator: v.id } },
    el("td", {}, v.name || ""), el("td", {}, idCell(v.id)), el("td", { class: "mono" }, v.api || "—"),
    el("td", { class: "v-height" }, s ? s.height : "—"), el("td", {}, s ? s.view : "—"),
    el("td", {}, s ? s.peers.length : "—"), el("td", {}, state));
}

async function refreshValidators(self) {
  const rows = await Promise.all(self.validator_set.map((v) => validatorRow(v, self)));
  replace("#validators", table(["name", "id", "API", "height", "view", "peers", "state"], rows, { id: "validator-table" }));
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

async function pollCommits() {
  const doc = await fetchJSON(`/v1/commits?since=${nextHeight}&limit=1000`, { timeoutMs: 5000 });
  for (const b of doc.blocks) {
    blocks.set(b.height, { t: b.timestamp_ms, n: b.txs.length });
    nextHeight = Math.max(nextHeight, b.height + 1);
  }
  const oldest = nextHeight - HISTORY_BLOCKS;
  for (const h of blocks.keys()) if (h < oldest) blocks.delete(h);
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
  document.getElementById("tps-note").textContent =
    `${last10.toFixed(1)} tx/s over the last 10 s · ${blocksInWindow} blocks in the last ${WINDOW_S} s (block time)`;
  canvas.dataset.blocks = String(blocks.size);
}

async function main() {
  header("index.html");
  let self = await refreshStatus();
  if (self) nextHeight = Math.max(1, self.height - HISTORY_BLOCKS + 1);
  let tick = 0;
  const loop = async () => {
    try {
      if (tick > 0) self = (await refreshStatus()) || self;
      if (self) {
        if (nextHeight === null) nextHeight = Math.max(1, self.height - HISTORY_BLOCKS + 1);
        await pollCommits();
        if (tick % 2 === 0) await refreshValidators(self);
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
