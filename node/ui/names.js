// Who is behind an id: an institution's name and kind (GET /v1/institutions, public, read once
// per page), else the label and role an identity registered on the ledger (public), looked up
// once per id and page.

import { el, fetchJSON, short } from "./common.js";
import { fetchInstitutions } from "./institutions.js";

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

let institutions = null;
/** id -> {id, name, kind, validator} of every institution of the ledger (read once per page). */
export function institutionMap() {
  if (!institutions) {
    institutions = fetchInstitutions()
      .then(({ items }) => new Map(items.map((i) => [i.id, i])))
      .catch(() => { institutions = null; return new Map(); });
  }
  return institutions;
}

/** A span naming `id`: "St Mary's (hospital)" for an institution, else as `who` does; the full id
 * is in its title, the short id stays after the name. */
export function party(id) {
  if (typeof id !== "string" || !/^[0-9a-f]{64}$/.test(id)) return el("span", {}, String(id ?? ""));
  if (id === selfId) return el("span", { class: "id", title: id }, "you");
  const span = el("span", { class: "id", title: id }, short(id));
  institutionMap().then(async (known) => {
    const inst = known.get(id);
    if (inst) {
      const name = inst.name || "(no name)";
      span.replaceChildren(name === inst.kind ? `${name} ` : `${name} (${inst.kind}) `, el("span", { class: "note" }, short(id)));
      span.classList.add("named");
      return;
    }
    const found = await lookup(id);
    if (found) span.textContent = found.label ? `${found.label} (${found.role}, ${short(id)})` : `${found.role} ${short(id)}`;
  });
  return span;
}
