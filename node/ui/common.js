// Helpers shared by the dashboard pages: DOM building (text only, never innerHTML, so nothing
// a transaction carries can run as markup), API calls with the node's JSON errors, hex and time.

export class ApiError extends Error {
  constructor(status, code, message) { super(`${code}: ${message}`); this.status = status; this.code = code; }
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
  replace(target, el("div", { class: "error", role: "alert" }, exc instanceof ApiError ? exc.message : String(exc.message || exc)));
}

const PAGES = [
  ["index.html", "Network"],
  ["explorer.html", "Explorer"],
  ["compliance.html", "Compliance"],
  ["patient.html", "Patient"],
];

/** The header with the page links and the chain id. */
export async function header(active) {
  const nav = el("nav", {}, PAGES.map(([href, name]) => el("a", { href, class: href === active ? "active" : null }, name)));
  const chain = el("span", { class: "chain", id: "chain-id" }, "");
  replace("header", el("span", { class: "brand" }, "MedLedger"), nav, chain);
  try {
    const s = await nodeStatus();
    chain.textContent = `${s.chain_id} · ${s.name || short(s.node_id)}`;
  } catch (exc) {
    chain.textContent = "node unreachable";
  }
}

/** A table from rows of cells; `head` is the list of column titles. */
export function table(head, rows, attrs = {}) {
  return el("table", attrs, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: head.length, class: "empty" }, "none"))]));
}
