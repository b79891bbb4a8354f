// The network's institutions grouped by kind, and the data-sharing agreements in force, for the
// network page. Both are public reads (GET /v1/institutions, GET /v1/agreements?in_force=1,
// docs/api.md), paged by the node; an agreement's policy is fetched only when its row is opened
// (GET /v1/agreements/{id}?version=N) and shown as text, never as markup.

import { el, fetchJSON, short, table } from "./common.js";

// the ledger's kinds (node/chain/vocabulary.py) in the order the page shows them
export const KINDS = [
  ["hospital", "Hospitals"], ["clinic", "Clinics"], ["pharmacy", "Pharmacies"], ["insurer", "Insurers"],
  ["lab", "Laboratories"], ["research", "Research centres"], ["unspecified", "Kind not recorded"],
];
const MAX_PAGES = 20; // 100 a page: up to 2,000 of each shown

/** Every page of a paged listing (`next` chaining `after=`), at most MAX_PAGES of them. */
async function allPages(path, field) {
  const items = [];
  let after = null;
  for (let i = 0; i < MAX_PAGES; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const doc = await fetchJSON(after === null ? path : `${path}${sep}after=${encodeURIComponent(after)}`, { timeoutMs: 5000 });
    items.push(...doc[field]);
    if (doc.next === null || doc.next === undefined) return { items, truncated: false };
    after = doc.next;
  }
  return { items, truncated: true };
}

export const fetchInstitutions = () => allPages("/v1/institutions", "institutions");
export const fetchAgreements = () => allPages("/v1/agreements?in_force=1", "agreements");

function kindTitle(kind) {
  const found = KINDS.find(([k]) => k === kind);
  return found ? found[1] : kind;
}

/** The institutions, one table per kind present (in KINDS order, then any other kind), by name. */
export function institutionsView({ items, truncated }) {
  if (!items.length) return [el("p", { class: "empty", id: "institutions-empty" }, "No institutions on the ledger.")];
  const groups = new Map();
  for (const inst of items) {
    if (!groups.has(inst.kind)) groups.set(inst.kind, []);
    groups.get(inst.kind).push(inst);
  }
  const order = [...KINDS.map(([k]) => k).filter((k) => groups.has(k)),
    ...[...groups.keys()].filter((k) => !KINDS.some(([known]) => known === k)).sort()];
  const out = order.map((kind) => {
    const members = groups.get(kind).sort((x, y) => x.name.localeCompare(y.name) || x.id.localeCompare(y.id));
    const rows = members.map((i) => el("tr", { dataset: { institution: i.id, kind: i.kind } },
      el("td", { class: "inst-name" }, i.name || "(no name)"),
      el("td", {}, el("span", { class: "id", title: i.id }, short(i.id))),
      el("td", { class: "inst-validator" }, i.validator ? el("span", { class: "badge" }, "validator") : "no"),
      el("td", { class: "inst-agreements" }, String(i.agreements_in_force))));
    return el("div", { class: "kind-group", dataset: { kind } },
      el("h3", {}, kindTitle(kind), " ", el("span", { class: "note" }, `(${members.length})`)),
      table(["name", "id", "validator", "agreements in force"], rows));
  });
  if (truncated) out.push(el("p", { class: "note" }, `Only the first ${items.length} institutions are shown.`));
  return out;
}

function partyCell(p) {
  return el("div", { class: "party", dataset: { party: p.id, kind: p.kind }, title: p.id },
    p.name || "(no name)", " ", el("span", { class: "badge" }, p.kind), " ", el("span", { class: "id" }, short(p.id)));
}

/** The policy's canonical form, pretty-printed when it is JSON (it always is), as text. */
function policyText(policy) {
  try { return JSON.stringify(JSON.parse(policy), null, 2); } catch (exc) { return String(policy); }
}

function policyView(a) {
  const path = `/v1/agreements/${encodeURIComponent(a.id)}?version=${a.version}`;
  const pre = el("pre", { class: "policy" }, "loading…");
  const details = el("details", { class: "policy-details" },
    el("summary", {}, `policy (${a.policy_bytes} bytes)`), pre,
    el("p", { class: "note" }, "The canonical form the parties signed; its SHA-256 is the digest. ",
      el("a", { href: path, target: "_blank", rel: "noopener" }, "The whole version as JSON")));
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    try {
      const full = await fetchJSON(path, { timeoutMs: 5000 });
      pre.textContent = policyText(full.policy);
      if (full.digest !== a.digest) pre.textContent += `\n\n(this version's digest is now ${full.digest})`;
    } catch (exc) {
      loaded = false;
      pre.textContent = `could not read the policy: ${exc.message}`;
    }
  });
  return details;
}

/** The agreements in force, one row each: parties by name and kind, purposes, version, since, digest, policy. */
export function agreementsView({ items, truncated }) {
  if (!items.length) return [el("p", { class: "empty", id: "agreements-empty" }, "No data-sharing agreements in force.")];
  const rows = items.map((a) => el("tr", { dataset: { agreement: a.id, version: String(a.version) } },
    el("td", {}, el("span", { class: "mono agreement-id" }, a.id), el("div", { class: "note" }, `version ${a.version}`)),
    el("td", { class: "agreement-parties" }, a.parties.map(partyCell)),
    el("td", { class: "agreement-purposes" }, a.purposes.join(", ")),
    el("td", { class: "agreement-since" }, a.in_force_height === null ? "—" : String(a.in_force_height),
      a.valid_until_ms ? el("div", { class: "note" }, `until ${new Date(a.valid_until_ms).toISOString().slice(0, 10)}`) : null),
    el("td", {}, el("span", { class: "id agreement-digest", title: a.digest }, short(a.digest))),
    el("td", {}, policyView(a))));
  const out = [table(["agreement", "parties", "purposes", "since height", "digest (SHA-256)", "policy"], rows,
    { id: "agreement-table" })];
  if (truncated) out.push(el("p", { class: "note" }, `Only the first ${items.length} agreements are shown.`));
  return out;
}
