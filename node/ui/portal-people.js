// Who is behind an id, in the patient portal's words: a practitioner's label, profession and
// institution's name, an institution's name and kind. From the public reads GET /v1/institutions
// (every institution: id, name, kind) and GET /v1/identities/{id} (role, label, institution,
// profession), through names.js's cache. `resolve(ids)` fetches what is not known yet; then
// `person(id)` answers at once.

import { short } from "./common.js";
import { lookup } from "./names.js";
import { fetchInstitutions } from "./institutions.js";

const PROFESSION_WORDS = {
  physician: "physician", nurse: "nurse", pharmacist: "pharmacist", "claims-officer": "claims officer",
  "lab-technician": "lab technician", administrator: "administrator",
};
const known = new Map(); // id -> identity document (or null: unknown)
let institutions = null; // [{id, name, kind}]
let selfId = null;

export function setSelfId(id) { selfId = id; }

/** Every institution of the ledger ({id, name, kind}), read once per page. */
export async function allInstitutions() {
  if (!institutions) {
    const { items } = await fetchInstitutions();
    institutions = items;
    for (const i of items) if (!known.has(i.id)) known.set(i.id, { id: i.id, role: "institution", label: i.name, kind: i.kind });
  }
  return institutions;
}

const isId = (id) => typeof id === "string" && /^[0-9a-f]{64}$/.test(id);

/** Look up every id not known yet (and the institutions of practitioners among them). */
export async function resolve(ids) {
  const wanted = [...new Set(ids.filter((id) => isId(id) && id !== selfId && !known.has(id)))];
  await Promise.all(wanted.map(async (id) => { known.set(id, await lookup(id)); }));
  const insts = [...new Set(wanted.map((id) => known.get(id)?.institution).filter((i) => isId(i) && !known.has(i)))];
  await Promise.all(insts.map(async (id) => { known.set(id, await lookup(id)); }));
}

/** An institution's name for a sentence: "the hospital" when the name is only its kind. */
export function institutionName(id) {
  const found = known.get(id);
  if (!found) return `institution ${short(id)}`;
  const name = found.label || `institution ${short(id)}`;
  return found.kind && name === found.kind ? `the ${name}` : name;
}

/** {name, detail, role, kind, institution} for an id; `name` is "you" for the signed-in patient. */
export function person(id) {
  if (id === selfId) return { name: "you", detail: "", role: "patient", self: true };
  const found = known.get(id);
  if (!isId(id)) return { name: String(id ?? "someone"), detail: "", role: "" };
  if (!found) return { name: `an unknown identity (${short(id)})`, detail: "", role: "unknown" };
  if (found.role === "institution") {
    const name = found.label || `institution ${short(id)}`;
    return { name: institutionName(id), detail: found.kind && found.kind !== name && found.kind !== "unspecified" ? found.kind : "",
      role: "institution", kind: found.kind };
  }
  if (found.role === "practitioner" || found.role === "researcher") {
    const job = found.role === "researcher" ? "researcher"
      : (PROFESSION_WORDS[found.profession] || "practitioner");
    const at = found.institution ? ` at ${institutionName(found.institution)}` : "";
    return { name: found.label || `a ${job}`, detail: `${job}${at}`, role: found.role, institution: found.institution };
  }
  if (found.role === "patient") return { name: found.label || `patient ${short(id)}`, detail: "patient", role: "patient" };
  return { name: found.label || short(id), detail: found.role || "", role: found.role };
}

/** "Dr Shepherd (physician at the clinic)", "the hospital", "you". */
export function personText(id) {
  const p = person(id);
  return p.detail ? `${p.name} (${p.detail})` : p.name;
}

/** The practitioners among the ids seen so far (for the consent form's list), by name. */
export function knownPractitioners() {
  return [...known.entries()].filter(([, v]) => v && v.role === "practitioner")
    .map(([id]) => ({ id, text: personText(id) })).sort((a, b) => a.text.localeCompare(b.text));
}

/** The identity document of `id`, fetched if needed (null when unknown). */
export async function identityOf(id) {
  await resolve([id]);
  return known.get(id) || null;
}
