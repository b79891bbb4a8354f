// Compliance page: an institution's operator opens the institution key file here; the
// break-glass accesses awaiting review and the disclosures for a period are signed reads
// (medledger-request-v2) that only that institution's key may make.

import { $, el, fmtTime, header, replace, showError, table } from "./common.js";
import { who } from "./names.js";
import { signInForm } from "./signin.js";

let signer = null;
const DAY_MS = 86400000;

async function loadBreakglass() {
  const doc = await signer.get(`/v1/institutions/${signer.id}/breakglass`);
  replace("#breakglass", table(["when (UTC)", "requester", "patient", "record", "reason", "expires (UTC)", "request"],
    doc.pending.map((g) => el("tr", { dataset: { request: g.request_tx } },
      el("td", {}, fmtTime(g.time_ms)), el("td", {}, who(g.requester)), el("td", {}, who(g.patient)),
      el("td", {}, `${g.resource_type} ${g.record.slice(0, 8)}`), el("td", {}, g.reason || ""), el("td", {}, fmtTime(g.expires_ms)),
      el("td", {}, el("a", { href: `explorer.html#tx=${g.request_tx}` }, g.request_tx.slice(0, 12))))),
    { id: "breakglass-table" }));
}

function dayStartMs(value) { return value ? Date.parse(`${value}T00:00:00Z`) : null; }

async function loadDisclosures() {
  const since = dayStartMs($("#since").value) ?? 0;
  const untilDay = dayStartMs($("#until").value);
  const query = `since_ms=${since}` + (untilDay !== null ? `&until_ms=${untilDay + DAY_MS - 1}` : "");
  const doc = await signer.get(`/v1/institutions/${signer.id}/disclosures?${query}`);
  replace("#disclosures", table(["when (UTC)", "event", "to", "patient", "record", "purpose", "rule", "block"],
    doc.disclosures.map((d) => el("tr", { dataset: { event: d.event } },
      el("td", {}, fmtTime(d.time_ms)), el("td", {}, d.event), el("td", {}, who(d.actor)), el("td", {}, who(d.patient)),
      el("td", {}, d.record ? `${d.resource_type || ""} ${d.record.slice(0, 8)}` : d.study ? `study ${d.study}` : ""),
      el("td", {}, d.purpose || ""), el("td", {}, d.rule || ""),
      el("td", {}, el("a", { href: `explorer.html#tx=${d.tx}` }, String(d.height))))),
    { id: "disclosure-table" }),
    el("p", { class: "note" }, `${doc.disclosures.length} disclosures from ${fmtTime(doc.since_ms)} to ${fmtTime(doc.until_ms)} (block time).`));
}

async function signedIn(s, identity) {
  signer = s;
  replace("#who", identity.label ? `${identity.label} ` : "", el("span", { class: "id", title: s.id }, s.id));
  const today = new Date().toISOString().slice(0, 10);
  $("#until").value = today;
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
