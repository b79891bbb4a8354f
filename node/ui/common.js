// Helpers shared by the dashboard pages: DOM building (text only, never innerHTML, so nothing
// a transaction carries can run as markup), API calls with the node's JSON errors, hex and time.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status; this.code = code; this.detail = message;
  }
}

// What the page says for the refusals a visitor meets most, in plain words; any other refusal
// shows the node's own sentence (its code stays in the element's title, for a bug report).
const PLAIN = {
  unreachable: () => "The node did not answer. Check that it is running and reachable, then try again.",
  rate_limited: () => "The node is receiving too many requests from this address. Wait a few seconds and try again.",
  busy: () => "The node is busy. Try again in a few seconds.",
  unknown_block: (d) => `There is no such block yet${/current height (\d+)/.test(d) ? `: the chain is at height ${/current height (\d+)/.exec(d)[1]}` : ""}.`,
  unknown_tx: () => "This node knows no transaction with that hash (it may not have been submitted, or not to this network).",
  not_found: () => "Nothing was found at that address.",
};

/** A refusal (ApiError or Error) as a sentence for people. */
export function plainError(exc) {
  if (exc instanceof ApiError) {
    const plain = PLAIN[exc.code];
    if (plain) return plain(exc.detail || "");
    const text = String(exc.detail || "").trim();
    if (!text) return `The node refused the request (HTTP ${exc.status}).`;
    return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  }
  return String((exc && exc.message) || exc);
}

/** Create an element: el("td", {class: "x", onclick: f}, "text", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function replace(target, ...children) {
  const node = typeof target === "string" ? $(target) : target;
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** fetch + JSON, turning the node's {error, message} answers into ApiError. */
export async function fetchJSON(url, init = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), init.timeoutMs || 40000);
  let resp;
  try {
    resp = await fetch(url, { ...init, signal: controller.signal, headers: { Accept: "application/json", ...(init.headers || {}) } });
  } catch (exc) {
    throw new ApiError(0, "unreachable", `no answer from ${url}`);
  } finally {
    clearTimeout(timer);
  }
  const doc = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new ApiError(resp.status, (doc && doc.error) || `http_${resp.status}`, (doc && doc.message) || resp.statusText);
  }
  return doc;
}

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 || /[^0-9a-fA-F]/.test(hex)) throw new Error("not a hex string");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

export const short = (hex) => (typeof hex === "string" && hex.length > 16 ? `${hex.slice(0, 8)}…${hex.slice(-6)}` : String(hex ?? ""));

export function fmtTime(ms) {
  if (typeof ms !== "number") return "";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A <time> element: UTC as fmtTime writes it, the browser's local time in its title (hover). */
export function timeEl(ms) {
  if (typeof ms !== "number") return el("span", {}, "");
  const d = new Date(ms);
  return el("time", { datetime: d.toISOString(), title: `${d.toLocaleString()} (your time)` }, fmtTime(ms));
}

/** "12 s ago", "3 min ago", "2 h ago", "5 days ago" (from the browser's clock). */
export function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

/** A hex id shown short, full in its title (hover) and copyable. */
export function idCell(hex, label) {
  return el("span", { class: "id", title: hex }, label ? `${label} (${short(hex)})` : short(hex));
}

let statusPromise = null;
/** This node's /v1/status, fetched once per page load (chain id, validators...). */
export function nodeStatus() {
  if (!statusPromise) statusPromise = fetchJSON("/v1/status").catch((e) => { statusPromise = null; throw e; });
  return statusPromise;
}

export function showError(target, exc) {
  replace(target, el("div", { class: "error", role: "alert", title: exc instanceof ApiError ? exc.code : null,
    dataset: exc instanceof ApiError ? { code: exc.code } : {} }, plainError(exc)));
}

const PAGES = [
  ["index.html", "Network"],
  ["explorer.html", "Explorer"],
  ["compliance.html", "Compliance"],
  ["patient.html", "Patient"],
];

/** The header with the page links and the chain id; a "skip to content" link first, for
 * keyboard users (it moves the focus to the page's <main>). */
export async function header(active) {
  const main = document.querySelector("main");
  if (main && !main.id) main.id = "content";
  if (main) main.setAttribute("tabindex", "-1");
  const skip = el("a", { class: "skip", href: `#${main ? main.id : ""}`, onclick: (e) => {
    if (!main) return;
    e.preventDefault(); // the explorer's routes live in the hash: leave it alone
    main.focus();
  } }, "Skip to content");
  const nav = el("nav", { "aria-label": "Dashboard pages" }, PAGES.map(([href, name]) =>
    el("a", { href, class: href === active ? "active" : null, "aria-current": href === active ? "page" : null }, name)));
  const chain = el("span", { class: "chain", id: "chain-id" }, "");
  replace("header", skip, el("span", { class: "brand" }, "MedLedger"), nav, chain);
  try {
    const s = await nodeStatus();
    chain.textContent = `${s.chain_id} · ${s.name || short(s.node_id)}`;
  } catch (exc) {
    chain.textContent = "node unreachable";
  }
}

/** A table from rows of cells; `head` is the list of column titles. */
export function table(head, rows, attrs = {}) {
  const t = el("table", attrs, el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: head.length, class: "empty" }, "none"))]));
  // a wide table scrolls inside its card, not the page (style.css .table-scroll); while it does,
  // the wrapper is a focusable, named region so that a keyboard user can scroll it too
  const box = el("div", { class: "table-scroll", dataset: { label: attrs["aria-label"] || head.join(", ") } }, t);
  if (scrollWatch) { scrollWatch.observe(box); scrollWatch.observe(t); }
  return box;
}

/** Make a table's wrapper a tab stop (a named region) only while its table is wider than it. */
function markScrollable(box) {
  if (!box || !box.classList || !box.classList.contains("table-scroll")) return;
  if (box.scrollWidth > box.clientWidth + 1) {
    box.setAttribute("tabindex", "0");
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", box.dataset.label);
  } else {
    for (const a of ["tabindex", "role", "aria-label"]) box.removeAttribute(a);
  }
}

const scrollWatch = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
  for (const e of entries) markScrollable(e.target.classList.contains("table-scroll") ? e.target : e.target.parentElement);
}) : null;
