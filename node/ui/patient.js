// Patient portal: the patient opens their key file here; every read is a signed request
// (medledger-request-v2) for their own records' metadata, consents and audit trail, repeated
// every few seconds so new events appear without signing in again. The trail is told in plain
// words (portal-events.js), times in the patient's zone; break-glass reads not yet reviewed are
// at the top; a consent is given (portal-grant.js) and revoked by transactions signed in this
// page; the page signs out after a spell without activity (portal-session.js).

import { $, el, header, hexToBytes, replace, short, showError } from "./common.js";
import { submitAndWait } from "./keys.js";
import { setSelf } from "./names.js";
import { signInForm } from "./signin.js";
import { grantForm } from "./portal-grant.js";
import { idsOf, granteeText, sentence, unreviewed } from "./portal-events.js";
import { institutionName, personText, resolve, setSelfId } from "./portal-people.js";
import { idleTimer, poller, sessionSettings } from "./portal-session.js";
import { answer, invitationItem, readInvitations } from "./portal-trials.js";
import { labelFor, loadLabels } from "./portal-content.js";
import { capitalise, formOrder, listWords, localDay, localTime, purposeWords, timeZone, typesPlural, typeWords, utcTime } from "./portal-words.js";

const IDLE_HASH = "#signed-out-idle";
const STATUS_WORDS = { active: "in force", revoked: "withdrawn", expired: "ended", not_yet_valid: "not started yet" };
const STATUS_EVERY_MS = 60000; // consents and records are read again at least this often
const RELOAD_ON = /^(record|consent|standing|request|access\.revoked|breakglass)/;

const settings = sessionSettings();
let signer = null;
let session = null; // {poll, idle}
let grant = null;
const trail = { entries: [], keys: new Set(), lastMs: 0 };
let consents = [];
let records = [];
let invitations = []; // trial invitations kept at this node for the patient (portal-trials.js)

const entryKey = (e) => [e.tx, e.event, e.record || "", e.request || "", e.consent || ""].join("|");

function when(ms) {
  if (typeof ms !== "number") return "";
  return el("time", { datetime: new Date(ms).toISOString(), title: utcTime(ms) }, localTime(ms));
}

const durationWords = (ms) => (ms >= 60000 ? `${Math.round(ms / 60000)} minutes` : `${Math.round(ms / 1000)} seconds`);

function badge(text, kind) { return el("span", { class: `badge ${kind}` }, text); }

/** A table that stacks into labelled blocks on narrow screens; roles keep its semantics then. */
function stackTable(head, rows, attrs) {
  for (const tr of rows) {
    tr.setAttribute("role", "row");
    [...tr.children].forEach((td, i) => { td.setAttribute("role", "cell"); if (head[i]) td.dataset.label = head[i]; });
  }
  const body = rows.length ? rows
    : [el("tr", { role: "row" }, el("td", { role: "cell", colspan: head.length, class: "empty" }, "none yet"))];
  return el("table", { ...attrs, class: "stack", role: "table" },
    el("thead", { role: "rowgroup" }, el("tr", { role: "row" }, head.map((h) => el("th", { role: "columnheader", scope: "col" }, h)))),
    el("tbody", { role: "rowgroup" }, body));
}

// -- reads ------------------------------------------------------------------------------------

let readAt = 0;

async function readConsentsAndRecords() {
  readAt = Date.now();
  const [c, r, inv] = await Promise.all([signer.get(`/v1/patients/${signer.id}/consents`), signer.get(`/v1/patients/${signer.id}/records`),
    readInvitations(signer).catch(() => invitations)]);
  const changed = JSON.stringify([c.consents, r.records, inv]) !== JSON.stringify([consents, records, invitations]);
  consents = c.consents;
  records = r.records;
  invitations = inv;
  return changed;
}

/** The trail's entries since the newest one known (block times never go back); the new ones. */
async function readTrail() {
  const since = trail.lastMs ? `?since_ms=${trail.lastMs}` : "";
  const doc = await signer.get(`/v1/patients/${signer.id}/audit${since}`);
  const fresh = doc.entries.filter((e) => !trail.keys.has(entryKey(e)));
  for (const e of fresh) {
    trail.keys.add(entryKey(e));
    trail.entries.push(e);
    trail.lastMs = Math.max(trail.lastMs, e.time_ms);
  }
  return fresh;
}

async function resolveNames() {
  await resolve([...idsOf(trail.entries), ...consents.map((c) => c.grantee), ...records.flatMap((r) => [r.custodian, r.author, r.recipient])]);
}

// -- views ------------------------------------------------------------------------------------

function renderWho(identity) {
  const full = el("code", { class: "full-id", id: "my-id" }, signer.id);
  const copy = el("button", { type: "button", class: "secondary", id: "copy-id" }, "Copy id");
  const copied = el("span", { class: "note", role: "status" });
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(signer.id);
      copied.textContent = "Copied.";
    } catch (exc) { // no clipboard (an insecure origin): select the id for the patient to copy
      const range = document.createRange();
      range.selectNodeContents(full);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copied.textContent = "Selected: copy it with your keyboard or menu.";
    }
  });
  replace("#who",
    el("p", { class: "my-id" }, "Your MedLedger id: ", el("code", { title: signer.id }, short(signer.id)), " ", copy, " ", copied),
    el("details", { class: "id-details" }, el("summary", {}, "Show the whole id"), full),
    el("p", { class: "note" }, "The ledger knows you by this id, never by your name. Give it to a practitioner or institution that asks for it: it lets no one read your records.",
      identity.label ? ` (Label: ${identity.label}.)` : ""));
  replace("#session-note", `Times are in your time zone (${timeZone()}); point at a time to see it in UTC. New events appear by themselves. `,
    `For your safety you are signed out after ${durationWords(settings.idleMs)} without activity.`);
}

let pendingShown = null;

function renderPending() {
  const items = [];
  for (const e of unreviewed(trail.entries)) {
    items.push(el("li", { class: "pending-item attention", dataset: { pending: "breakglass", request: e.tx } },
      el("p", {}, sentence(e).text), el("p", { class: "note" }, when(e.time_ms),
        ` · Not reviewed yet: ${institutionName(e.custodian)}, which keeps the record, must check that it was justified. The review will appear in your trail.`)));
  }
  const now = Date.now();
  for (const r of records) {
    const wf = r.workflow || {};
    if (r.resource_type !== "ServiceRequest" || !r.recipient || r.erased || wf.accepted_ms || wf.status === "completed") continue;
    if (typeof r.until_ms === "number" && r.until_ms < now) continue;
    const kind = wf.kind === "referral" ? "A referral" : wf.kind === "order" ? "A test order" : "A request";
    const accept = el("button", { type: "button", dataset: { action: "accept", record: r.id } }, "Accept");
    const li = el("li", { class: "pending-item", dataset: { pending: "request", record: r.id } },
      el("p", {}, `${kind} from ${personText(r.author)} to ${institutionName(r.recipient)} waits for your answer`,
        typeof r.until_ms === "number" ? ` (it would last until ${localDay(r.until_ms)})` : "", "."),
      el("p", { class: "note" }, `Accepting lets ${institutionName(r.recipient)} see it and what it lists. `, accept));
    accept.addEventListener("click", () => acceptRequest(r, li));
    items.push(li);
  }
  for (const inv of invitations) {
    if (inv.status !== "open" && inv.status !== "reconsent") continue;
    const li = invitationItem(inv, (accept) => answerInvitation(inv, li, accept));
    items.push(li);
  }
  // The list is rebuilt only when what it says changes: a poll that finds the same items leaves
  // the buttons (and the keyboard focus on them) where the patient is about to press them.
  const shown = items.map((li) => li.outerHTML).join("");
  if (shown === pendingShown && $("#pending").childElementCount) return;
  pendingShown = shown;
  replace("#pending", items.length ? el("ul", { class: "pending-list", id: "pending-list" }, items)
    : el("p", { class: "empty", id: "pending-empty" }, "Nothing needs your attention."));
}

function trailRow(e, byId, fresh) {
  const { text, tone } = sentence(e, byId);
  return el("tr", { class: [tone, fresh ? "new" : ""].filter(Boolean).join(" ") || null, dataset: { event: e.event, tx: e.tx } },
    el("td", { class: "when" }, when(e.time_ms)),
    el("td", { class: "what" }, text),
    el("td", { class: "proof" }, el("a", { href: `explorer.html#tx=${e.tx}`, "aria-label": `block ${e.height} in the explorer` }, `block ${e.height}`)));
}

const TRAIL_HEAD = ["When", "What happened", "On the ledger"];

/** The whole trail, newest first; with `fresh` entries only, those are added at the top (so the
 *  rows below, and the keyboard focus in them, stay as they were). */
function renderTrail(fresh = null) {
  const byId = new Map(consents.map((c) => [c.id, c]));
  const body = $("#audit-table tbody");
  if (fresh && body) {
    for (const row of body.querySelectorAll("tr.new")) row.classList.remove("new");
    for (const row of body.querySelectorAll("td.empty")) row.parentElement.remove();
    const rows = stackTable(TRAIL_HEAD, fresh.slice().reverse().map((e) => trailRow(e, byId, true)), {}).querySelectorAll("tbody tr");
    body.prepend(...rows);
    return;
  }
  replace("#audit-zone", `Newest first. Times in ${timeZone()}.`);
  replace("#audit", stackTable(TRAIL_HEAD, trail.entries.slice().reverse().map((e) => trailRow(e, byId, false)), { id: "audit-table" }));
}

function consentWhat(c) {
  const parts = formOrder(c.resource_types).map(typesPlural);
  if (c.record_ids.length) parts.push(c.record_ids.length === 1 ? "one chosen record" : `${c.record_ids.length} chosen records`);
  const except = c.deny_types.length ? ` except ${listWords(formOrder(c.deny_types).map(typesPlural))}` : "";
  return `${capitalise(listWords(parts))}${except}`;
}

function revokeCell(c) {
  const cell = el("td", { class: "row-actions" });
  if (c.status === "revoked" || c.status === "expired") return cell;
  const name = granteeText(c.grantee_kind, c.grantee);
  const start = el("button", { class: "danger", type: "button", dataset: { action: "revoke" }, "aria-label": `Withdraw the consent given to ${name}` }, "Withdraw");
  start.addEventListener("click", () => {
    const confirm = el("button", { class: "danger", type: "button", dataset: { action: "confirm-revoke" } }, "Yes, withdraw it");
    const cancel = el("button", { class: "secondary", type: "button" }, "Keep it");
    cancel.addEventListener("click", () => {
      replace(cell, start);
      if (consentsStale) renderConsents();
      else start.focus();
    });
    confirm.addEventListener("click", () => revoke(c, cell));
    const text = el("p", { class: "revoke-effect", id: `revoke-effect-${c.id.slice(0, 12)}` },
      `Withdraw this consent? From the next block on, ${name} can no longer read your records under it. `,
      "What was already read stays with the reader: withdrawing does not take back copies.");
    replace(cell, el("div", { class: "confirm", role: "group", "aria-labelledby": text.id }, text, el("div", { class: "row-actions" }, confirm, cancel)));
    confirm.focus();
  });
  cell.append(start);
  return cell;
}

let consentsStale = false;

function renderConsents() {
  // a poll must not close the confirmation the patient is reading: render when it closes
  consentsStale = Boolean($("#consent-table .confirm"));
  if (consentsStale) return;
  replace("#consents", stackTable(["Who may read", "What", "For", "Until", "Status", ""],
    consents.slice().reverse().map((c) => el("tr", { dataset: { consent: c.id, status: c.status } },
      el("td", {}, capitalise(granteeText(c.grantee_kind, c.grantee))),
      el("td", {}, consentWhat(c)),
      el("td", {}, capitalise(listWords(c.purposes.map(purposeWords)))),
      el("td", {}, el("time", { datetime: new Date(c.valid_until).toISOString(), title: utcTime(c.valid_until) }, localDay(c.valid_until))),
      el("td", {}, badge(STATUS_WORDS[c.status] || c.status, c.status)),
      revokeCell(c))),
    { id: "consent-table" }));
}

function renderRecords() {
  replace("#records", stackTable(["Kind of record", "Kept by", "Written by", "Added", "State"],
    records.slice().reverse().map((r) => el("tr", { dataset: { record: r.id } },
      el("td", {}, capitalise(typeWords(r.resource_type)), labelFor(r.id) ? el("span", { class: "record-label" }, `: ${labelFor(r.id)}`) : "",
        " ", el("span", { class: "note" }, `(${r.resource_type})`)),
      el("td", {}, capitalise(institutionName(r.custodian))),
      el("td", {}, capitalise(personText(r.author))),
      el("td", {}, when(r.time_ms)),
      el("td", {}, r.erased ? badge("erased", "bad") : r.contested ? badge("contested", "warn") : badge("kept", "")))),
    { id: "record-table" }));
}

function renderAll(fresh = null) {
  renderPending();
  renderTrail(fresh);
  renderConsents();
  renderRecords();
}

// -- actions ----------------------------------------------------------------------------------

async function refresh() {
  const fresh = await readTrail();
  const stale = Date.now() - readAt >= STATUS_EVERY_MS; // a consent ends, a referral's period passes
  if (!fresh.length && !stale) return;
  const changed = (stale || fresh.some((e) => RELOAD_ON.test(e.event))) && await readConsentsAndRecords();
  if (changed) loadLabels(signer, records).then((found) => { if (found && signer) renderAll(); }).catch(() => {});
  await resolveNames();
  if (!signer) return; // signed out meanwhile
  if (!fresh.length) {
    if (changed) { renderPending(); renderConsents(); renderRecords(); }
    return;
  }
  renderAll(fresh);
  if (grant) await grant.refresh();
  replace("#live-status", fresh.length === 1 ? "1 new event in your trail." : `${fresh.length} new events in your trail.`);
}

async function afterTransaction() {
  await readConsentsAndRecords();
  await readTrail();
  await resolveNames();
  renderAll();
}

async function revoke(c, cell) {
  replace(cell, el("span", { class: "note", role: "status" }, "signing and waiting for the ledger…"));
  try {
    const out = await submitAndWait(signer, "consent.revoke", { consent: hexToBytes(c.id) });
    const done = out.status === "committed" && out.result === "ok";
    replace("#action", el("p", { id: "revoke-outcome", class: done ? "ok" : "error", role: "status", dataset: { tx: out.hash, result: out.result || out.status } },
      done ? `Consent to ${granteeText(c.grantee_kind, c.grantee)} withdrawn in block ${out.height}: no more reads under it. What was already read stays with the reader.`
        : `The consent was not withdrawn: ${out.result || out.status}.`));
  } catch (exc) {
    showError("#action", exc);
  }
  await afterTransaction().catch((exc) => showError("#action", exc));
}

async function acceptRequest(r, li) {
  replace(li, el("p", { class: "note", role: "status" }, "signing and waiting for the ledger…"));
  try {
    const out = await submitAndWait(signer, "request.accept", { record: hexToBytes(r.id) });
    const done = out.status === "committed" && out.result === "ok";
    replace("#action", el("p", { id: "accept-outcome", class: done ? "ok" : "error", role: "status", dataset: { tx: out.hash, result: out.result || out.status } },
      done ? `Accepted in block ${out.height}: ${institutionName(r.recipient)} now sees the request.` : `Not accepted: ${out.result || out.status}.`));
  } catch (exc) {
    showError("#action", exc);
  }
  pendingShown = null; // the item shows its progress now: the next render puts the list back as it is
  await afterTransaction().catch((exc) => showError("#action", exc));
}

async function answerInvitation(inv, li, accept) {
  replace(li, el("p", { class: "note", role: "status" }, accept ? "signing your consent and sending it to your site…" : "sending your answer…"));
  try {
    const out = await answer(signer, inv.trial, accept);
    replace("#action", el("p", { id: "trial-outcome", class: "ok", role: "status", dataset: { trial: inv.trial, status: out.status, pseudonym: out.pseudonym || "" } },
      accept ? `You take part in ${inv.letter ? inv.letter.registry_id : inv.trial} under the pseudonym ${short(out.pseudonym)}, for protocol version ${out.version}. `
        + "You can withdraw at any time (medledger trial withdraw)."
        : `You said no to ${inv.letter ? inv.letter.registry_id : inv.trial}. Nothing was sent to the sponsor.`));
  } catch (exc) {
    showError("#action", exc);
  }
  pendingShown = null; // the item shows its progress now: the next render puts the list back as it is
  await afterTransaction().catch((exc) => showError("#action", exc));
}

function signOut(idle) {
  if (signer && signer.trials) signer.trials.wipe();
  signer = null;
  if (session) { session.poll.stop(); session.idle.stop(); }
  // a reload drops the key and everything read with it; the hash tells the next load why
  if (idle) location.hash = IDLE_HASH;
  else history.replaceState(null, "", location.pathname + location.search);
  location.reload();
}

async function signedIn(s, identity) {
  signer = s;
  setSelf(s.id);
  setSelfId(s.id);
  trail.entries = []; trail.keys = new Set(); trail.lastMs = 0;
  await Promise.all([readConsentsAndRecords(), readTrail()]);
  await resolveNames();
  renderWho(identity);
  renderAll();
  grant = grantForm({ getSigner: () => signer, onGranted: afterTransaction });
  await grant.refresh();
  // what the records are about: read in the background, the sentences told again when it is known
  loadLabels(signer, records).then((found) => { if (found && signer) renderAll(); }).catch(() => {});
  replace("#signin-note");
  $("#signin").hidden = true;
  $("#patient").hidden = false;
  const poll = poller(refresh, { everyMs: settings.pollMs,
    onError: (exc) => replace("#live-status", `Could not check for new events (${exc.message}); trying again shortly.`) });
  const idle = idleTimer({ idleMs: settings.idleMs, onIdle: () => signOut(true),
    onWarn: (s) => replace("#live-status", el("span", { class: "warn-text", id: "idle-warning" }, `You will be signed out in ${s} s unless you use the page.`)),
    onActive: () => replace("#live-status") });
  session = { poll, idle };
  // a hook for tests and for the page's own use: read now instead of at the next tick
  window.medledgerPortal = { refresh: () => poll.now(), settings };
}

header("patient.html");
if (location.hash === IDLE_HASH) {
  replace("#signin-note", el("p", { class: "warn-text", id: "signed-out-idle" },
    "You were signed out because the page was not used for a while. Sign in again to continue."));
  history.replaceState(null, "", location.pathname + location.search);
}
signInForm(["patient"], signedIn, { withTrialKeys: true });
$("#signout").addEventListener("click", () => signOut(false));
