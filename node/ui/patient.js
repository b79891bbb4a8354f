// Patient page: the patient opens their key file here; every read is a signed request
// (medledger-request-v2) for their own records' metadata, consents and audit trail, and a
// consent is revoked by a `consent.revoke` transaction signed in this page.

import { $, el, fmtTime, header, hexToBytes, replace, showError, table } from "./common.js";
import { submitAndWait } from "./keys.js";
import { setSelf, who } from "./names.js";
import { signInForm } from "./signin.js";

let signer = null;

function badge(text, kind) { return el("span", { class: `badge ${kind || text}` }, text); }

async function loadRecords() {
  const doc = await signer.get(`/v1/patients/${signer.id}/records`);
  replace("#records", table(["record", "type", "held by", "written by", "added (UTC)", "state"],
    doc.records.map((r) => el("tr", { dataset: { record: r.id } },
      el("td", { class: "mono", title: r.id }, r.id.slice(0, 12)), el("td", {}, r.resource_type), el("td", {}, who(r.custodian)),
      el("td", {}, who(r.author)), el("td", {}, fmtTime(r.time_ms)), el("td", {}, r.erased ? badge("erased", "bad") : badge("stored", "")))),
    { id: "record-table" }));
}

function revokeCell(c) {
  if (c.status === "revoked" || c.status === "expired") return el("td", {});
  const cell = el("td", { class: "row-actions" });
  const start = el("button", { class: "danger", type: "button", dataset: { action: "revoke" } }, "Revoke");
  start.addEventListener("click", () => {
    const confirm = el("button", { class: "danger", type: "button", dataset: { action: "confirm-revoke" } }, "Confirm revoke");
    const cancel = el("button", { class: "secondary", type: "button" }, "Cancel");
    cancel.addEventListener("click", () => replace(cell, start));
    confirm.addEventListener("click", () => revoke(c.id, cell));
    replace(cell, confirm, cancel);
  });
  cell.append(start);
  return cell;
}

async function revoke(consentId, cell) {
  replace(cell, el("span", { class: "note" }, "signing and waiting for the commit…"));
  try {
    const out = await submitAndWait(signer, "consent.revoke", { consent: hexToBytes(consentId) });
    const done = out.status === "committed" && out.result === "ok";
    replace("#action", el("p", { id: "revoke-outcome", class: done ? "ok" : "error", dataset: { tx: out.hash, result: out.result || out.status } },
      done ? `Consent revoked in block ${out.height} (transaction ${out.hash.slice(0, 16)}…).`
        : `The revocation was not applied: ${out.result || out.status}.`));
  } catch (exc) {
    showError("#action", exc);
  }
  await Promise.all([loadConsents(), loadAudit()]).catch((exc) => showError("#action", exc));
}

async function loadConsents() {
  const doc = await signer.get(`/v1/patients/${signer.id}/consents`);
  replace("#consents", table(["consent", "to", "purposes", "covers", "valid until (UTC)", "status", ""],
    doc.consents.map((c) => el("tr", { dataset: { consent: c.id, status: c.status } },
      el("td", { class: "mono", title: c.id }, c.id.slice(0, 12)),
      el("td", {}, c.grantee_kind === "study" ? `study ${c.grantee}` : who(c.grantee)),
      el("td", {}, c.purposes.join(", ")),
      el("td", {}, [...c.resource_types, ...c.record_ids.map((r) => `record ${r.slice(0, 8)}`)].join(", ") +
        (c.deny_types.length ? ` except ${c.deny_types.join(", ")}` : "")),
      el("td", {}, fmtTime(c.valid_until)), el("td", {}, badge(c.status)), revokeCell(c))),
    { id: "consent-table" }));
}

function auditDetail(e) {
  const parts = [];
  if (e.resource_type) parts.push(e.resource_type);
  if (e.purpose) parts.push(`purpose ${e.purpose}`);
  if (e.rule) parts.push(`rule ${e.rule}`);
  if (e.reason) parts.push(`reason: ${e.reason}`);
  if (e.grantee_kind) parts.push(`to ${e.grantee_kind}`);
  if (e.outcome) parts.push(`review: ${e.outcome}`);
  return parts.join(" · ");
}

async function loadAudit() {
  const doc = await signer.get(`/v1/patients/${signer.id}/audit`);
  replace("#audit", table(["when (UTC)", "event", "by", "details", "block"],
    doc.entries.slice().reverse().map((e) => el("tr", { dataset: { event: e.event } },
      el("td", {}, fmtTime(e.time_ms)), el("td", {}, badge(e.event, e.event.split(".")[1])), el("td", {}, who(e.actor)),
      el("td", {}, auditDetail(e)), el("td", {}, el("a", { href: `explorer.html#tx=${e.tx}` }, String(e.height))))),
    { id: "audit-table" }));
}

async function signedIn(s, identity) {
  signer = s;
  setSelf(s.id);
  replace("#who", identity.label ? `${identity.label} ` : "", el("span", { class: "id", title: s.id }, s.id));
  await Promise.all([loadRecords(), loadConsents(), loadAudit()]);
  $("#signin").hidden = true;
  $("#patient").hidden = false;
}

header("patient.html");
signInForm(["patient"], signedIn);
$("#signout").addEventListener("click", () => location.reload());
