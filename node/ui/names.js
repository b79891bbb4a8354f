// Who is behind an id: the label and role an identity registered on the ledger (public),
// looked up once per id and page.

import { el, fetchJSON, short } from "./common.js";

const cache = new Map();
let selfId = null;

/** The signed-in identity, shown as "you". */
export function setSelf(id) { selfId = id; }
const MAX_CACHED = 500;

export function lookup(id) {
  if (!cache.has(id)) {
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(id, fetchJSON(`/v1/identities/${id}`).catch(() => null));
  }
  return cache.get(id);
}

/** A span showing `id` short, then its role and label once known. */
export function who(id) {
  if (typeof id !== "string" || !/^[0-9a-f]{64}$/.test(id)) return el("span", {}, String(id ?? ""));
  if (id === selfId) return el("span", { class: "id", title: id }, "you");
  const span = el("span", { class: "id", title: id }, short(id));
  lookup(id).then((found) => {
    if (found) span.textContent = found.label ? `${found.label} (${found.role}, ${short(id)})` : `${found.role} ${short(id)}`;
  });
  return span;
}
