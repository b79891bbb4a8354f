// The patient portal's plain words: what the ledger's codes (FHIR resource types, purposes of
// use, break-glass reasons, access rules, audit events) mean to the patient, and times in the
// patient's own time zone. No DOM and no network here: every function maps codes to text.

// FHIR R4 resource types a patient meets, in words; any other type is split into words
// ("NutritionOrder" -> "nutrition order"). The consent form offers the first ones (GRANTABLE).
export const TYPE_WORDS = {
  Observation: "test result or measurement",
  Condition: "diagnosis or health problem",
  MedicationRequest: "prescription",
  MedicationDispense: "medicine handed out by a pharmacy",
  MedicationStatement: "medicine you take",
  AllergyIntolerance: "allergy",
  Immunization: "vaccination",
  Procedure: "procedure or operation",
  DiagnosticReport: "test report",
  Encounter: "visit or stay",
  ServiceRequest: "referral or test order",
  ImagingStudy: "scan or X-ray",
  DocumentReference: "document",
  CarePlan: "care plan",
  FamilyMemberHistory: "family history",
  Claim: "insurance claim",
  ClaimResponse: "insurer's answer to a claim",
  Coverage: "insurance cover",
  Appointment: "appointment",
  Composition: "clinical letter or summary",
  QuestionnaireResponse: "questionnaire answers",
  Specimen: "sample",
  Patient: "personal details",
};

/** The types offered in the consent form, in this order (each one a checkbox). */
export const GRANTABLE = ["Observation", "DiagnosticReport", "Condition", "MedicationRequest", "MedicationDispense",
  "AllergyIntolerance", "Immunization", "Procedure", "Encounter", "ImagingStudy", "DocumentReference", "CarePlan",
  "ServiceRequest", "Claim"];

/** A resource type in words ("*": every kind of record). */
export function typeWords(type) {
  if (type === "*") return "records of every kind";
  if (TYPE_WORDS[type]) return TYPE_WORDS[type];
  return String(type ?? "record").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
}

/** Plural of typeWords for a list ("test results or measurements"). */
export function typesPlural(type) {
  if (type === "*") return "records of every kind";
  const w = typeWords(type);
  const special = { "test result or measurement": "test results and measurements", "diagnosis or health problem": "diagnoses and health problems",
    "medicine handed out by a pharmacy": "medicines handed out by a pharmacy", "medicine you take": "medicines you take",
    "procedure or operation": "procedures and operations", "visit or stay": "visits and stays", "referral or test order": "referrals and test orders",
    "scan or X-ray": "scans and X-rays", "family history": "family history", "insurer's answer to a claim": "insurers' answers to claims",
    "insurance cover": "insurance cover", "clinical letter or summary": "clinical letters and summaries", "questionnaire answers": "questionnaire answers",
    "personal details": "personal details" };
  return special[w] || (w.endsWith("y") && !/[aeiou]y$/.test(w) ? `${w.slice(0, -1)}ies` : `${w}s`);
}

/** "a, b and c"; "a and b, and c" when an item has an "and" of its own. */
export function listWords(items) {
  const xs = items.filter(Boolean);
  if (xs.length <= 1) return xs.join("");
  const comma = xs.some((x) => x.includes(" and ")) ? "," : "";
  return `${xs.slice(0, -1).join(", ")}${comma} and ${xs[xs.length - 1]}`;
}

/** Resource types in the consent form's order (the others after them, by name). */
export function formOrder(types) {
  const rank = (t) => (t === "*" ? -1 : GRANTABLE.includes(t) ? GRANTABLE.indexOf(t) : GRANTABLE.length);
  return types.slice().sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

// purposes of use (node/app/fields.py PURPOSE_CODES)
export const PURPOSE_WORDS = {
  treatment: "your care",
  payment: "payment (billing and insurance)",
  operations: "running the service (quality checks, audits)",
  research: "research",
  emergency: "emergency care",
};
export const purposeWords = (p) => PURPOSE_WORDS[p] || String(p);

// break-glass reasons (node/app/access.py BREAKGLASS_REASONS), said to the patient
export const REASON_WORDS = {
  unconscious: "you were unconscious or unresponsive",
  life_threatening: "a life- or limb-threatening condition needed treatment at once",
  lacks_capacity: "you were conscious but not able to consent",
  guardian_unreachable: "your guardian or representative could not be reached in time",
  imminent_harm: "there was an imminent risk of serious harm to you or others",
};
export const reasonWords = (r) => REASON_WORDS[r] || (r ? String(r).replace(/_/g, " ") : "no reason recorded");

// why a read was refused (node/app/access.py DENIED_RULES)
export const DENIAL_WORDS = {
  erased: "the record was erased",
  no_consent: "you have given them no consent",
  out_of_scope: "your consent does not cover this record",
  type_excluded: "your consent leaves out this kind of record",
  purpose_not_consented: "your consent is not for this purpose",
  consent_not_yet_valid: "your consent had not started yet",
  consent_expired: "your consent had ended",
  consent_revoked: "you had withdrawn your consent",
  breakglass_not_allowed: "emergency access was not allowed for this request",
  reason_required: "no emergency reason was given",
  breakglass_opted_out: "you chose to allow no emergency access",
  breakglass_suspended: "their emergency access is suspended",
  breakglass_limit_practitioner: "they had reached their limit of emergency accesses",
  breakglass_limit_patient: "your records had reached the daily limit of emergency accesses",
  policy_error: "an agreement between the institutions could not be checked",
  policy_forbids: "an agreement between the institutions forbids it",
  policy_not_permitted: "no agreement between the institutions allows it",
};
export const denialWords = (rule) => DENIAL_WORDS[rule] || String(rule ?? "refused").replace(/_/g, " ");

// standing permissions (node/app/types/standing.py): what a nomination lets the institution do
export const STANDING_WORDS = {
  pharmacy: { as: "your pharmacy", allows: "its pharmacists may read the prescriptions written for you, to dispense them" },
  insurer: { as: "your insurer", allows: "its claims officers may read the claims sent to it for you, and the records each claim lists" },
  screening: { as: "the institution that screens you for clinical trials", allows: "it may check the records it keeps of you against trials' criteria, count you, and invite you; the sponsors learn only numbers" },
};

/** Why a granted read was allowed, from the audit entry's rule, standing and policies. */
export function grantedBecause(e) {
  if (e.rule === "author") return "they wrote it";
  if (e.rule === "consent") return "under your consent";
  if (e.rule === "standing_permission") {
    if (e.standing && STANDING_WORDS[e.standing]) return `because you chose their institution as ${STANDING_WORDS[e.standing].as}`;
    const policies = (e.policies || []).join(" ");
    if (policies.includes("referral")) return "under a referral you accepted";
    if (policies.includes("lab-order")) return "under a test order you accepted";
    return "under a permission you chose";
  }
  return e.rule ? `by rule ${e.rule}` : "";
}

// -- time -------------------------------------------------------------------------------------

/** The patient's time zone as the browser knows it ("Europe/Paris"). */
export function timeZone() {
  try { return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time"; } catch { return "local time"; }
}

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const LOCAL_DAY = new Intl.DateTimeFormat(undefined, { dateStyle: "long" });

/** A time in the patient's zone ("3 Dec 2026, 10:38"). */
export const localTime = (ms) => (typeof ms === "number" ? LOCAL.format(new Date(ms)) : "");
/** A day in the patient's zone ("3 December 2027"). */
export const localDay = (ms) => (typeof ms === "number" ? LOCAL_DAY.format(new Date(ms)) : "");
/** The same instant in UTC, for the hover text ("2026-12-03 15:38:38 UTC"). */
export const utcTime = (ms) => (typeof ms === "number" ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "");

/** The last millisecond of a local calendar day given as "YYYY-MM-DD" (a date input's value). */
export function endOfLocalDay(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value || ""));
  if (!m) return null;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 23, 59, 59, 999).getTime();
}

/** "YYYY-MM-DD" of a local day `days` after today. */
export function localDateInput(days = 0, from = Date.now()) {
  const d = new Date(from);
  d.setDate(d.getDate() + days);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export const capitalise = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
