// Compliance page, a workbench for an institution's compliance officer, who opens the institution
// key file here. The break-glass accesses awaiting review and the accounting of disclosures are
// signed reads (medledger-request-v2) that only that institution's key may make; a break-glass
// access is reviewed with a `breakglass.review` transaction signed in this page
// (workbench-review.js). Disclosures are narrowed by period (UTC days), patient pseudonym,
// practitioner and outcome, and exported as CSV or as a FHIR AuditEvent Bundle.

import { $, el, header, replace, short, showError } from "./common.js";
import { signInForm } from "./signin.js";
import { download, narrowBundle, toCsv } from "./workbench-export.js";
import { institutionName, loadInstitutions, person, pseudonym, resolve } from "./workbench-names.js";
import { openReview, purposeText, reasonText, reviewOutcome } from "./workbench-review.js";
import { DAY_MS, localText, periodText, readPeriod, timeCell, utcText, windowText } from "./workbench-time.js";

let signer = null;
let pending = [];
let period = null; // {sinceMs, untilMs} of the disclosures loaded
let disclosures = [];
const reviews = new Map(); // break-glass request tx -> its access decision (review_outcome, reviewed_ms...)
const MAX_REVIEW_LOOKUPS = 200; // break-glass rows of a period whose review state is looked up
const LOOKUPS_AT_ONCE = 6;

/** A table that stacks into labelled blocks on a phone (compliance.css): rows of {attrs, cells}. */
function stackTable(head, rows, attrs = {}) {
  const body = rows.length ? rows.map(({ attrs: a, cells }) => el("tr", a,
    cells.map((c, i) => el("td", { "data-label": head[i] }, c))))
    : [el("tr", {}, el("td", { colspan: head.length, class: "empty" }, "none"))];
  return el("table", { ...attrs, class: "wb-stack" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, body));
}

function personCell(id, institutionHint) {
  const p = person(id, institutionHint);
  return el("span", { class: "wb-person", title: id }, el("span", { class: "wb-name" }, p.name),
    p.institutionName ? el("span", { class: "wb-sub" }, p.institutionName) : null);
}

function patientCell(id) {
  return id ? el("span", { class: "id", title: id }, pseudonym(id)) : "";
}

// -- break-glass queue ----------------------------------------------------------------------

async function loadBreakglass() {
  const doc = await signer.get(`/v1/institutions/${signer.id}/breakglass`);
  pending = doc.pending;
  await resolve(pending.flatMap((g) => [g.requester, g.requester_institution, g.via]));
  drawBreakglass();
}

function drawBreakglass() {
  const head = ["when", "requester", "patient", "record", "purpose and reason", "access window", "review"];
  replace("#breakglass", stackTable(head, pending.map((g) => ({
    attrs: { dataset: { request: g.request_tx } },
    cells: [timeCell(g.time_ms), personCell(g.requester, g.requester_institution), patientCell(g.patient),
      `${g.resource_type} ${short(g.record)}`, [purposeText(g.purpose), el("br"), reasonText(g.reason)],
      windowText(g.expires_ms),
      el("button", { type: "button", class: "wb-review-open", dataset: { request: g.request_tx },
        "aria-label": `Review the access by ${person(g.requester).name} at ${utcText(g.time_ms)}`,
        "aria-controls": "review-panel", onclick: () => startReview(g) }, "Review")],
  })), { id: "breakglass-table" }));
}

function closeReview() {
  const panel = $("#review-panel");
  panel.hidden = true;
  replace(panel);
}

function startReview(g) {
  replace("#breakglass-outcome");
  openReview($("#review-panel"), signer, g, {
    onCancel: closeReview,
    onDone: async (out) => {
      closeReview();
      replace("#breakglass-outcome", reviewOutcome(out));
      $("#review-outcome").focus();
      try {
        await Promise.all([loadBreakglass(), loadDisclosures()]);
      } catch (exc) {
        showError("#breakglass", exc);
      }
    },
  });
}

// -- disclosures ------------------------------------------------------------------------------

const OUTCOMES = { "access.granted": "granted", "access.breakglass": "breakglass", "research.released": "research" };
const OUTCOME_WORDS = { granted: "granted", breakglass: "break-glass", research: "research release" };

function outcomeOf(d) { return OUTCOMES[d.event] || d.event; }

function recordText(d) {
  if (d.record) return `${d.resource_type || "record"} ${short(d.record)}`;
  if (d.study) return `study ${d.study}${d.patients ? ` (${d.patients} patients)` : ""}`;
  return "";
}

/** The review state of a break-glass disclosure: "justified", "unjustified", "awaiting" or "" (unknown). */
function reviewState(d) {
  if (d.rule !== "breakglass") return "";
  const found = reviews.get(d.tx);
  if (!found) return "";
  return found.review_outcome || "awaiting";
}

function ruleCell(d) {
  if (d.rule !== "breakglass") return d.rule || "";
  const state = reviewState(d);
  const found = reviews.get(d.tx);
  const words = state === "awaiting" ? "awaiting review" : state ? `reviewed: ${state}` : "review state not read";
  return [`break-glass · ${reasonText(d.reason)}`, el("br"),
    el("span", { class: `badge ${state === "unjustified" ? "bad" : state === "awaiting" ? "pending" : ""}` }, words),
    found && found.reviewed_ms ? el("span", { class: "wb-sub" }, ` ${utcText(found.reviewed_ms)}`) : null];
}

/** Read the access decision of each break-glass disclosure (signed: the custodian may), a few at a time. */
async function loadReviews(rows) {
  const wanted = rows.filter((d) => d.rule === "breakglass").slice(-MAX_REVIEW_LOOKUPS).map((d) => d.tx);
  let next = 0;
  const worker = async () => {
    while (next < wanted.length) {
      const tx = wanted[next++];
      try {
        reviews.set(tx, await signer.get(`/v1/access/${tx}`));
      } catch (exc) {
        reviews.delete(tx);
      }
    }
  };
  await Promise.all(Array.from({ length: LOOKUPS_AT_ONCE }, worker));
}

async function loadDisclosures() {
  const read = readPeriod($("#since").value, $("#until").value);
  replace("#period-error");
  if (read.error) {
    replace("#period-error", el("p", { class: "error", role: "alert", id: "period-problem" }, read.error));
    $("#since").setAttribute("aria-invalid", "true");
    period = null;
    disclosures = [];
    replace("#period-text");
    replace("#filter-note");
    replace("#disclosures", el("p", { class: "empty" }, "Nothing shown until the period is valid."));
    return;
  }
  $("#since").removeAttribute("aria-invalid");
  const query = `since_ms=${read.sinceMs}&until_ms=${read.untilMs}`;
  const doc = await signer.get(`/v1/institutions/${signer.id}/disclosures?${query}`);
  period = read;
  disclosures = doc.disclosures;
  await Promise.all([resolve(disclosures.flatMap((d) => [d.actor, d.requester_institution, d.via])), loadReviews(disclosures)]);
  replace("#period-text", periodText(read.sinceMs, read.untilMs));
  fillPractitioners();
  drawDisclosures();
}

function fillPractitioners() {
  const select = $("#filter-practitioner");
  const chosen = select.value;
  const actors = [...new Set(disclosures.map((d) => d.actor))].map((id) => ({ id, p: person(id) }))
    .sort((a, b) => a.p.name.localeCompare(b.p.name) || a.id.localeCompare(b.id));
  replace(select, el("option", { value: "" }, "anyone"), actors.map(({ id, p }) =>
    el("option", { value: id }, `${p.name}${p.institutionName ? `, ${p.institutionName}` : ""}`)));
  select.value = actors.some((a) => a.id === chosen) ? chosen : "";
}

function filtered() {
  const patient = $("#filter-patient").value.trim().toLowerCase();
  const practitioner = $("#filter-practitioner").value;
  const outcome = $("#filter-outcome").value;
  return disclosures.filter((d) => (!patient || (d.patient || "").startsWith(patient))
    && (!practitioner || d.actor === practitioner) && (!outcome || outcomeOf(d) === outcome));
}

function drawDisclosures() {
  const rows = filtered();
  const head = ["when", "outcome", "to (requester)", "patient", "record", "purpose", "rule", "block"];
  replace("#disclosures", stackTable(head, rows.map((d) => ({
    attrs: { dataset: { event: d.event, tx: d.tx, ...(reviewState(d) ? { review: reviewState(d) } : {}) } },
    cells: [timeCell(d.time_ms), el("span", { class: `badge ${outcomeOf(d)}` }, OUTCOME_WORDS[outcomeOf(d)] || d.event),
      personCell(d.actor, d.requester_institution), patientCell(d.patient), recordText(d), purposeText(d.purpose),
      ruleCell(d), el("a", { href: `explorer.html#tx=${d.tx}`, "aria-label": `block ${d.height}, transaction ${short(d.tx)}` },
        String(d.height))],
  })), { id: "disclosure-table" }));
  const notes = [`Showing ${rows.length} of ${disclosures.length} disclosures in the period.`];
  if ($("#filter-outcome").value === "denied") {
    notes.push(" Denied requests disclosed nothing, so they are not in the accounting of disclosures: each is in"
      + " the patient's audit trail (access.denied).");
  }
  replace("#filter-note", notes);
}

// -- exports ----------------------------------------------------------------------------------

const CSV_HEAD = ["time_utc", "time_local", "event", "outcome", "requester_id", "requester_name", "requester_role",
  "requester_institution_id", "requester_institution", "patient", "record", "resource_type", "study", "purpose", "rule",
  "reason", "reason_text", "expires_utc", "review", "reviewed_utc", "block", "tx"];

function csvRow(d) {
  const p = person(d.actor, d.requester_institution);
  return [new Date(d.time_ms).toISOString(), localText(d.time_ms), d.event, outcomeOf(d), d.actor, p.name, p.role,
    d.requester_institution || "", d.requester_institution ? institutionName(d.requester_institution) : "",
    d.patient || "", d.record || "", d.resource_type || "", d.study || "", d.purpose || "", d.rule || "", d.reason || "",
    d.reason ? reasonText(d.reason) : "", d.expires_ms ? new Date(d.expires_ms).toISOString() : "", reviewState(d),
    reviews.get(d.tx)?.reviewed_ms ? new Date(reviews.get(d.tx).reviewed_ms).toISOString() : "", d.height, d.tx];
}

function exportName(ext) {
  const day = (ms) => new Date(ms).toISOString().slice(0, 10);
  return `disclosures-${signer.id.slice(0, 8)}-${period.sinceMs ? day(period.sinceMs) : "start"}-${day(period.untilMs)}.${ext}`;
}

function exportCsv() {
  const rows = filtered();
  download(exportName("csv"), toCsv(CSV_HEAD, rows.map(csvRow)), "text/csv;charset=utf-8");
  replace("#export-status", `CSV of ${rows.length} disclosures saved.`);
}

async function exportFhir() {
  const rows = filtered();
  replace("#export-status", "Asking the node for the period's AuditEvents…");
  const bundle = await signer.get(
    `/v1/institutions/${signer.id}/disclosures?since_ms=${period.sinceMs}&until_ms=${period.untilMs}&format=fhir`);
  const narrowed = narrowBundle(bundle, new Set(rows.map((d) => d.tx)));
  download(exportName("fhir.json"), JSON.stringify(narrowed, null, 2) + "\n", "application/fhir+json");
  replace("#export-status", `FHIR Bundle of ${narrowed.entry.length} AuditEvents saved.`);
}

// -- sign-in ----------------------------------------------------------------------------------

async function signedIn(s, identity) {
  signer = s;
  await loadInstitutions();
  const name = institutionName(s.id);
  replace("#who", name || identity.label);
  replace("#who-id", s.id);
  $("#until").value = new Date().toISOString().slice(0, 10);
  $("#since").value = new Date(Date.now() - 30 * DAY_MS).toISOString().slice(0, 10);
  await Promise.all([loadBreakglass(), loadDisclosures()]);
  $("#signin").hidden = true;
  $("#operator").hidden = false;
}

header("compliance.html");
signInForm(["institution"], signedIn);
$("#signout").addEventListener("click", () => location.reload());
$("#period").addEventListener("submit", (event) => {
  event.preventDefault();
  loadDisclosures().catch((exc) => showError("#disclosures", exc));
});
for (const id of ["#since", "#until"]) {
  // a period that cannot be is said at once; a valid one is read when "Show period" is pressed,
  // or at once when it replaces a refused one
  $(id).addEventListener("change", () => {
    const refused = $("#period-problem") !== null;
    if (readPeriod($("#since").value, $("#until").value).error || refused) {
      loadDisclosures().catch((exc) => showError("#disclosures", exc));
    }
  });
}
$("#filters").addEventListener("submit", (event) => event.preventDefault());
for (const id of ["#filter-patient", "#filter-practitioner", "#filter-outcome"]) {
  $(id).addEventListener("input", () => { if (period) drawDisclosures(); });
}
$("#export-csv").addEventListener("click", () => { if (period) exportCsv(); });
$("#export-fhir").addEventListener("click", () => {
  if (period) exportFhir().catch((exc) => showError("#export-status", exc));
});
