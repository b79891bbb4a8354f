// The patient's audit trail in sentences: one plain sentence per entry of
// GET /v1/patients/{id}/audit (node/app/audit.py AUDIT_EVENTS), saying who (name, role,
// institution), what (the kind of record in words, and what it is about when the page could read
// it: portal-content.js), why (purpose, reason) — the time is shown
// beside it. Names must be resolved first (portal-people.js `resolve(idsOf(entries))`).

import { capitalise, denialWords, formOrder, grantedBecause, listWords, localDay, purposeWords, reasonWords, STANDING_WORDS, typesPlural, typeWords }
  from "./portal-words.js";
import { institutionName, personText } from "./portal-people.js";
import { labelFor } from "./portal-content.js";

/** Every id an entry names that a sentence may show by name. */
export function idsOf(entries) {
  const out = [];
  for (const e of entries) {
    for (const k of ["actor", "custodian", "grantee", "guardian", "practitioner", "researcher", "via"]) if (e[k]) out.push(e[k]);
  }
  return out;
}

/** The consent's scope in words ("test results and measurements"), when the page knows the consent. */
function consentScope(consent) {
  if (!consent) return "your records";
  const parts = formOrder(consent.resource_types).map(typesPlural);
  if (consent.record_ids.length) parts.push(consent.record_ids.length === 1 ? "one chosen record" : `${consent.record_ids.length} chosen records`);
  let s = parts.length ? `your ${listWords(parts)}` : "your records";
  if (consent.deny_types.length) s += `, except ${listWords(formOrder(consent.deny_types).map(typesPlural))}`;
  return s;
}

/** Whom a consent names: a practitioner or institution by name, or a study. */
export function granteeText(kind, grantee) {
  return kind === "study" ? `the research study "${grantee}"` : personText(grantee);
}

const by = (e) => {
  const actor = personText(e.actor);
  return e.on_behalf && actor !== "you" ? `your guardian ${actor}` : actor;
};

/**
 * {text, tone} for an audit entry: tone "attention" (an emergency access, a refusal to look at),
 * "good" or "" (neutral). `consents` maps consent ids to the consents the page read.
 */
export function sentence(e, consents = new Map()) {
  const who = by(e);
  const label = e.record ? labelFor(e.record) : "";
  const what = label ? `${typeWords(e.resource_type)} "${label}"` : typeWords(e.resource_type);
  const at = e.custodian ? ` (kept by ${institutionName(e.custodian)})` : "";
  switch (e.event) {
    case "record.added":
      return { text: `${capitalise(who)} added a ${what} to your records${at}.`, tone: "" };
    case "record.erased":
      return { text: `${capitalise(who)} erased your ${what}${at}.`, tone: "" };
    case "record.contested":
      return { text: `${capitalise(who)} contested your ${what}${at}: ${({ not_my_record: "it is about someone else", no_treatment: "its author never treated you", inaccurate: "its content is wrong" })[e.reason] || e.reason}.`, tone: "" };
    case "consent.granted": {
      const c = consents.get(e.consent);
      const until = e.valid_until ? `, until ${localDay(e.valid_until)}` : "";
      return { text: `${capitalise(who)} allowed ${granteeText(e.grantee_kind, e.grantee)} to read ${consentScope(c)}, for ${listWords((e.purposes || []).map(purposeWords))}${until}.`, tone: "good" };
    }
    case "consent.revoked":
      return { text: `${capitalise(who)} withdrew the consent given to ${granteeText(e.grantee_kind, e.grantee)}: no more reads under it.`, tone: "" };
    case "breakglass.opted_out":
      return { text: `${capitalise(who)} chose that no one may open your records in an emergency without your consent.`, tone: "" };
    case "breakglass.opted_in":
      return { text: `${capitalise(who)} allowed emergency access to your records again.`, tone: "" };
    case "access.granted":
      return { text: `${capitalise(who)} read your ${what}${at} for ${purposeWords(e.purpose)}, ${grantedBecause(e)}.`, tone: "" };
    case "access.denied":
      return { text: `${capitalise(who)} asked to read your ${what}${at} for ${purposeWords(e.purpose)} and was refused: ${denialWords(e.rule)}.`, tone: "" };
    case "access.breakglass":
      return { text: `${capitalise(who)} opened your ${what}${at} in an emergency, without your consent: ${reasonWords(e.reason)}.`, tone: "attention" };
    case "breakglass.reviewed":
      return { text: `${capitalise(who)} reviewed an emergency opening of your records and found it ${e.outcome === "justified" ? "justified" : "not justified"}${e.suspended ? "; the practitioner's emergency access is suspended" : ""}.`,
        tone: e.outcome === "justified" ? "good" : "attention" };
    case "breakglass.suspended":
      return { text: `${capitalise(personText(e.practitioner))} may not use emergency access${e.until_ms ? ` until ${localDay(e.until_ms)}` : ""}.`, tone: "" };
    case "access.revoked":
      return { text: `${capitalise(who)} withdrew an emergency access to your ${what || "record"}${at} after its review.`, tone: "" };
    case "research.released":
      return { text: `${capitalise(institutionName(e.custodian))} released de-identified data about you to the research study "${e.study}", under your consent.`, tone: "" };
    case "guardian.set":
      return { text: `${capitalise(personText(e.guardian))} became your guardian: they may act for you.`, tone: "" };
    case "guardian.cleared":
      return { text: `${capitalise(personText(e.guardian))} is no longer your guardian.`, tone: "" };
    case "standing.granted": {
      const s = STANDING_WORDS[e.permission];
      return { text: `${capitalise(who)} chose ${institutionName(e.grantee)} as ${s ? s.as : e.permission}${s ? `: ${s.allows}` : ""}.`, tone: "good" };
    }
    case "standing.revoked": {
      const s = STANDING_WORDS[e.permission];
      return { text: `${capitalise(who)} stopped having ${institutionName(e.grantee)} as ${s ? s.as : e.permission}.`, tone: "" };
    }
    case "request.accepted": {
      const until = e.until_ms ? `, until ${localDay(e.until_ms)}` : "";
      return { text: `${capitalise(who)} accepted a ${e.resource_type === "ServiceRequest" ? "referral or test order" : what} to ${institutionName(e.grantee)}: it may now see it${until}.`, tone: "good" };
    }
    default:
      return { text: `${capitalise(who)}: ${e.event}${e.resource_type ? ` (${what})` : ""}.`, tone: "" };
  }
}

/** The break-glass accesses no one has reviewed yet: access.breakglass entries whose request
 *  (their tx) no breakglass.reviewed entry names, newest first. */
export function unreviewed(entries) {
  const reviewed = new Set(entries.filter((e) => e.event === "breakglass.reviewed").map((e) => e.request));
  return entries.filter((e) => e.event === "access.breakglass" && !reviewed.has(e.tx)).reverse();
}
