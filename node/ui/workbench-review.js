// Reviewing a break-glass access on the compliance page: every field the officer needs to decide,
// the finding (justified / unjustified, optionally suspending the practitioner), and a note that
// never goes on the chain: only its commitment, SHA-256 of a random 16-byte salt and the UTF-8
// text (as node/app/notes.py), is sent as note_hash; the note and its salt are the officer's to
// save (a download). The `breakglass.review` transaction is built and signed in this page
// (keys.js), the same as `medledger audit review`, whose exact command is shown beside the form.

import { bytesToHex, el, hexToBytes, replace, sha256, short } from "./common.js";
import { submitAndWait } from "./keys.js";
import { download } from "./workbench-export.js";
import { person, pseudonym } from "./workbench-names.js";
import { timeCell, windowText } from "./workbench-time.js";

// node/app/access.py BREAKGLASS_REASONS: why consent could not be asked, never what is wrong
export const BREAKGLASS_REASONS = {
  unconscious: "the patient is unconscious or unresponsive",
  life_threatening: "a life- or limb-threatening condition needs treatment now",
  lacks_capacity: "the patient is conscious but lacks the capacity to consent",
  guardian_unreachable: "the patient's guardian or representative cannot be reached in time",
  imminent_harm: "there is an imminent risk of serious harm to the patient or others",
};
// node/app/fields.py PURPOSE_CODES, in words
export const PURPOSES = {
  treatment: "treatment (HL7 TREAT)", payment: "payment (HL7 HPAYMT)", operations: "operations (HL7 HOPERAT)",
  research: "research (HL7 HRESCH)", emergency: "emergency treatment (HL7 ETREAT)",
};
const SUSPENSION_DAYS = 30; // node/app/access.py BREAKGLASS_SUSPENSION_MS
const SALT_SIZE = 16;

export function reasonText(code) {
  if (!code) return "no reason given";
  return BREAKGLASS_REASONS[code] ? `${code}: ${BREAKGLASS_REASONS[code]}` : code;
}

export function purposeText(code) { return PURPOSES[code] || code || ""; }

/** The decision's fields as [term, description] pairs, in the order an officer reads them. */
export function decisionFields(g) {
  const who = person(g.requester, g.requester_institution);
  const fields = [
    ["Requester", `${who.name}${who.role ? ` (${who.role})` : ""}`],
    ["Requester's institution", who.institutionName || "not recorded"],
    ["Patient (pseudonym)", el("span", { class: "id", title: g.patient }, pseudonym(g.patient))],
    ["Record", `${g.resource_type || "record"} · ${short(g.record)}`],
    ["Purpose", purposeText(g.purpose)],
    ["Coded reason", reasonText(g.reason)],
    ["Requester's account of the emergency", g.note_hash
      ? `committed on the chain as note_hash ${short(g.note_hash)} (the text stays with the requester's institution)`
      : "none committed (no note_hash)"],
    ["When", timeCell(g.time_ms)],
    ["Access window", windowText(g.expires_ms)],
    ["Request", el("a", { href: `explorer.html#tx=${g.request_tx}` }, `transaction ${short(g.request_tx)}, block ${g.height}`)],
  ];
  if (g.via) fields.splice(2, 0, ["Signed for the requester by", person(g.via).name]);
  return fields;
}

function cliCommand(g, outcome, suspend, hasNote) {
  return ["medledger audit review --key <your institution.key>", `--node ${location.origin}`, `--access ${g.request_tx}`,
    `--outcome ${outcome || "<justified|unjustified>"}`, suspend ? "--suspend" : null, hasNote ? "--note \"<your note>\"" : null]
    .filter(Boolean).join(" \\\n    ");
}

/** Commitment to `text`: {salt, noteHash} (Uint8Arrays), as node/app/notes.py commit_note. */
export async function commitNote(text) {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_SIZE));
  const data = new TextEncoder().encode(text);
  const joined = new Uint8Array(salt.length + data.length);
  joined.set(salt);
  joined.set(data, salt.length);
  return { salt, noteHash: await sha256(joined) };
}

/** Fill `panel` with the review form for pending access `g`; `done(out)` after the commit. */
export function openReview(panel, signer, g, { onDone, onCancel }) {
  const who = person(g.requester, g.requester_institution);
  const radio = (value, text) => el("label", { class: "wb-choice" },
    el("input", { type: "radio", name: "outcome", value, required: true }), " ", text);
  const suspend = el("input", { type: "checkbox", id: "review-suspend", disabled: true });
  const note = el("textarea", { id: "review-note", rows: 3, maxlength: 4000 });
  const cli = el("pre", { id: "review-cli", class: "wb-cli" }, cliCommand(g, null, false, false));
  const status = el("div", { id: "review-status", "aria-live": "polite" });
  const submit = el("button", { type: "submit", id: "review-submit" }, "Sign and record the review");
  const cancel = el("button", { type: "button", class: "secondary" }, "Cancel");
  const form = el("form", { id: "review-form", class: "wb-review-form", dataset: { request: g.request_tx } },
    el("fieldset", {}, el("legend", {}, "Finding"),
      radio("justified", "Justified: the emergency warranted the access"),
      radio("unjustified", "Unjustified: revokes this grant and the practitioner's other open break-glass grants on this patient here")),
    el("label", { class: "wb-choice", for: "review-suspend" }, suspend,
      ` Also suspend ${who.name} from break-glass for ${SUSPENSION_DAYS} days (revokes every open break-glass grant they hold; only with an unjustified finding)`),
    el("label", { for: "review-note", class: "wb-label" }, "Your note (optional)"),
    note,
    el("p", { class: "note", id: "review-note-help" },
      "The note never goes on the chain. Only its salted SHA-256 is sent (note_hash); you download the note with its salt to keep in your files, which later proves what you wrote."),
    el("div", { class: "row-actions" }, submit, cancel),
    status,
    el("details", { class: "wb-cli-details" }, el("summary", {}, "The same review with the command line"), cli));
  note.setAttribute("aria-describedby", "review-note-help");
  const update = () => {
    const outcome = form.elements.outcome.value;
    suspend.disabled = outcome !== "unjustified";
    if (suspend.disabled) suspend.checked = false;
    cli.textContent = cliCommand(g, outcome, suspend.checked, note.value.trim() !== "");
  };
  form.addEventListener("change", update);
  note.addEventListener("input", update);
  cancel.addEventListener("click", onCancel);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = form.elements.outcome.value;
    if (!outcome) { replace(status, el("p", { class: "error", role: "alert" }, "Choose a finding first.")); return; }
    submit.disabled = true;
    replace(status, el("p", { class: "note" }, "Signing and waiting for the commit…"));
    const text = note.value.trim();
    const body = { access: hexToBytes(g.request_tx), outcome };
    let committed = null;
    if (text) {
      committed = await commitNote(text);
      body.note_hash = committed.noteHash;
    }
    if (suspend.checked) body.suspend = true;
    try {
      const out = await submitAndWait(signer, "breakglass.review", body);
      const ok = out.status === "committed" && out.result === "ok";
      const keep = committed && ok ? {
        format: "medledger-review-note", access: g.request_tx, outcome, suspend: Boolean(body.suspend), note: text,
        salt: bytesToHex(committed.salt), note_hash: bytesToHex(committed.noteHash), review_tx: out.hash,
        height: out.height, reviewer: signer.id,
      } : null;
      onDone({ ...out, ok, outcome, suspend: Boolean(body.suspend), keep, request: g.request_tx });
    } catch (exc) {
      submit.disabled = false;
      replace(status, el("p", { class: "error", role: "alert" }, `The review was not recorded: ${exc.message}`));
    }
  });
  replace(panel,
    el("h3", { id: "review-title", tabindex: "-1" }, `Review the break-glass access by ${who.name}`),
    el("dl", { class: "wb-fields", id: "review-fields" },
      decisionFields(g).flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)])),
    form);
  panel.hidden = false;
  panel.querySelector("#review-title").focus();
}

/** The outcome of a committed review, with the note's download when there is one. */
export function reviewOutcome(out) {
  const text = out.ok
    ? `Review recorded: ${out.outcome}${out.suspend ? " (practitioner suspended)" : ""}, block ${out.height}, transaction ${short(out.hash)}.`
    : `The review was not applied: ${out.result || out.status}.`;
  const items = [el("p", { id: "review-outcome", tabindex: "-1", class: out.ok ? "ok" : "error", role: out.ok ? "status" : "alert",
    dataset: { tx: out.hash, result: out.result || out.status, request: out.request } }, text)];
  if (out.keep) {
    const name = `review-note-${out.request.slice(0, 12)}.json`;
    const save = () => download(name, JSON.stringify(out.keep, null, 2) + "\n", "application/json");
    items.push(el("p", {}, el("button", { type: "button", id: "note-download", onclick: save }, "Download the note and its salt"),
      " ", el("span", { class: "note" }, "Keep this file: it is the only copy of your note.")));
  }
  return items;
}
