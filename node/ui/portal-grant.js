// The portal's "Give a consent" form: whom (an institution from GET /v1/institutions, a
// practitioner met in the patient's records, or a pasted id resolved to its name), which kinds of
// record, what for, until when; a preview in plain words; then a `consent.grant` transaction
// (body of node/app/types/consent_grant.py) built, signed and submitted in this page (keys.js).

import { $, el, hexToBytes, replace, showError } from "./common.js";
import { submitAndWait } from "./keys.js";
import { allInstitutions, identityOf, knownPractitioners, personText } from "./portal-people.js";
import { endOfLocalDay, formOrder, GRANTABLE, listWords, localDateInput, localDay, PURPOSE_WORDS, purposeWords, typesPlural } from "./portal-words.js";

const OTHER = "other";
const GRANT_PURPOSES = ["treatment", "payment", "operations", "research"];
const DEFAULT_DAYS = 365;

function checkbox(name, value, text, checked = false) {
  const id = `${name}-${value === "*" ? "all" : value}`;
  return el("div", { class: "choice" },
    el("input", { type: "checkbox", id, name, value, checked }), el("label", { for: id }, text));
}

/** Fill the form's lists; call `refresh()` again when new practitioners may be known. */
export function grantForm({ getSigner, onGranted }) {
  const select = $("#grant-to");
  replace("#grant-type-list", checkbox("grant-type", "*", "Everything in your records"),
    GRANTABLE.map((t) => checkbox("grant-type", t, `${typesPlural(t)[0].toUpperCase()}${typesPlural(t).slice(1)}`, t === "Observation")));
  replace("#grant-purpose-list", GRANT_PURPOSES.map((p) => checkbox("grant-purpose", p, `${PURPOSE_WORDS[p][0].toUpperCase()}${PURPOSE_WORDS[p].slice(1)}`, p === "treatment")));
  const until = $("#grant-until");
  until.value = localDateInput(DEFAULT_DAYS);
  until.min = localDateInput(1);
  // "everything" and single kinds exclude each other
  $("#grant-type-list").addEventListener("change", (event) => {
    if (event.target.value === "*" && event.target.checked) {
      for (const box of document.querySelectorAll("input[name=grant-type]")) if (box.value !== "*") box.checked = false;
    } else if (event.target.checked) {
      $("#grant-type-all").checked = false;
    }
  });

  async function refresh() {
    const keep = select.value;
    let insts = [];
    try { insts = await allInstitutions(); } catch (exc) { /* the list stays empty; a pasted id still works */ }
    const institutions = insts.slice().sort((a, b) => a.name.localeCompare(b.name))
      .map((i) => el("option", { value: `institution:${i.id}` }, `${i.name}${i.kind && i.kind !== i.name && i.kind !== "unspecified" ? ` (${i.kind})` : ""} — the whole institution`));
    const people = knownPractitioners().map((p) => el("option", { value: `practitioner:${p.id}` }, p.text));
    replace(select, el("option", { value: "" }, "Choose…"),
      people.length ? el("optgroup", { label: "Practitioners in your records" }, people) : null,
      el("optgroup", { label: "Institutions" }, institutions),
      el("option", { value: OTHER }, "Another practitioner (paste their MedLedger id)"));
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  const otherId = $("#grant-other-id");
  select.addEventListener("change", () => {
    $("#grant-other").hidden = select.value !== OTHER;
    replace("#grant-preview");
  });
  let resolving = 0;
  otherId.addEventListener("input", async () => {
    const id = otherId.value.trim().toLowerCase();
    const mine = ++resolving;
    if (!/^[0-9a-f]{64}$/.test(id)) { replace("#grant-other-name", id ? "An id is 64 characters, 0-9 and a-f." : ""); return; }
    const found = await identityOf(id);
    if (mine !== resolving) return;
    replace("#grant-other-name", !found ? "No one on the ledger has this id."
      : ["practitioner", "institution"].includes(found.role) ? `This is ${personText(id)}.` : `This id is a ${found.role}: a consent names a practitioner or an institution.`);
  });

  /** The grantee chosen: {kind, id} or an error message. */
  async function grantee() {
    const v = select.value;
    if (!v) return { error: "Choose who may read." };
    if (v !== OTHER) { const [kind, id] = v.split(":"); return { kind, id }; }
    const id = otherId.value.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(id)) return { error: "Paste their MedLedger id (64 characters, 0-9 and a-f)." };
    const found = await identityOf(id);
    if (!found || !["practitioner", "institution"].includes(found.role)) return { error: "This id is no practitioner or institution on the ledger." };
    return { kind: found.role, id };
  }

  async function review(event) {
    event.preventDefault();
    replace("#grant-error");
    replace("#grant-preview");
    const who = await grantee();
    const types = [...document.querySelectorAll("input[name=grant-type]:checked")].map((b) => b.value);
    const purposes = GRANT_PURPOSES.filter((p) => $(`#grant-purpose-${p}`).checked);
    const validUntil = endOfLocalDay(until.value);
    const problems = [];
    if (who.error) problems.push(who.error);
    if (!types.length) problems.push("Choose at least one kind of record.");
    if (!purposes.length) problems.push("Choose at least one purpose.");
    if (validUntil === null || validUntil <= Date.now()) problems.push("Choose an end date after today.");
    if (problems.length) { replace("#grant-error", el("p", { class: "error" }, problems.join(" "))); return; }
    const body = { grantee_kind: who.kind, grantee: hexToBytes(who.id), purposes, resource_types: types, valid_until: validUntil };
    const name = personText(who.id);
    const what = types.includes("*") ? "every kind of record you have" : `your ${listWords(formOrder(types).map(typesPlural))}`;
    const whole = who.kind === "institution" ? ` Anyone working for ${name} may use it.` : "";
    const preview = el("div", { class: "preview", id: "grant-preview-box", tabindex: "-1" },
      el("h3", {}, "What this consent allows"),
      el("p", { id: "grant-preview-text" },
        `${name[0].toUpperCase()}${name.slice(1)} will be able to read ${what}, for ${listWords(purposes.map(purposeWords))}, from now until the end of ${localDay(validUntil)}.${whole}`),
      el("p", { class: "note", id: "grant-preview-note" }, "They may read these records, not change or erase them. ",
        purposes.includes("treatment") ? "Because it is for your care, they may also add new records to your file while it is in force. " : "",
        "Every read is in your trail above. You can withdraw the consent at any time: reads stop from then on, but what was already read stays with the reader."),
      el("div", { class: "row-actions" },
        el("button", { type: "button", id: "grant-confirm" }, "Sign and give this consent"),
        el("button", { type: "button", class: "secondary", id: "grant-cancel" }, "Change")));
    replace("#grant-preview", preview);
    preview.focus();
    $("#grant-cancel").addEventListener("click", () => { replace("#grant-preview"); select.focus(); });
    $("#grant-confirm").addEventListener("click", () => submit(body, name));
  }

  async function submit(body, name) {
    replace("#grant-preview", el("p", { class: "note", role: "status" }, "Signing and waiting for the ledger…"));
    try {
      const out = await submitAndWait(getSigner(), "consent.grant", body);
      const done = out.status === "committed" && out.result === "ok";
      replace("#grant-preview", el("p", { id: "grant-outcome", class: done ? "ok" : "error", role: "status",
        dataset: { tx: out.hash, result: out.result || out.status } },
        done ? `Consent given to ${name} (block ${out.height}). It is listed under "Your consents".`
          : `The consent was not given: ${out.result || out.status}.`));
      if (done) await onGranted(out);
    } catch (exc) {
      showError("#grant-preview", exc);
    }
  }

  $("#grant-form").addEventListener("submit", review);
  return { refresh };
}
