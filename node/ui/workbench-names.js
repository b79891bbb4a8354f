// Names for the compliance workbench: institutions by name and kind (GET /v1/institutions,
// public and paged) and practitioners by their registered label and institution
// (GET /v1/identities/{id}), resolved before a table is drawn so filters and exports use them.
// Patients are shown by pseudonym only: the start of their ledger id.

import { short } from "./common.js";
import { fetchInstitutions } from "./institutions.js";
import { lookup } from "./names.js";

let institutions = new Map();

/** Load the network's institutions (id -> {name, kind}); a failure leaves ids shown as ids. */
export async function loadInstitutions() {
  try {
    const { items } = await fetchInstitutions();
    institutions = new Map(items.map((i) => [i.id, i]));
  } catch (exc) {
    institutions = new Map();
  }
}

const identities = new Map();

/** Resolve the identities of `ids` (once each) so `person` can name them. */
export async function resolve(ids) {
  const wanted = [...new Set(ids.filter((id) => typeof id === "string" && /^[0-9a-f]{64}$/.test(id) && !identities.has(id)))];
  const found = await Promise.all(wanted.map((id) => lookup(id)));
  wanted.forEach((id, i) => identities.set(id, found[i]));
}

/** An institution's name ("" when unknown). */
export function institutionName(id) {
  if (!id) return "";
  const inst = institutions.get(id);
  return inst && inst.name ? inst.name : `institution ${short(id)}`;
}

export function institutionKind(id) {
  const inst = institutions.get(id);
  return inst ? inst.kind : "";
}

/** {name, role, institution (id), institutionName} of an identity resolved earlier. */
export function person(id, institutionHint = null) {
  const found = identities.get(id) || null;
  const inst = institutionHint || (found && found.institution) || null;
  if (found && found.role === "institution") {
    return { name: institutionName(id), role: "institution", institution: id, institutionName: institutionName(id) };
  }
  return {
    name: found && found.label ? found.label : `${found ? found.role : "identity"} ${short(id)}`,
    role: found ? found.role : "",
    institution: inst,
    institutionName: inst ? institutionName(inst) : "",
  };
}

/** A patient's pseudonym: the first 12 hex digits of the ledger id. */
export function pseudonym(id) {
  return typeof id === "string" ? id.slice(0, 12) : "";
}
