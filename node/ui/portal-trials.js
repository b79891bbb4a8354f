// Trial invitations on the patient portal (docs/trials.md): the invitations this node (the
// patient's site) keeps for the patient are read by a signed request, opened in this page with
// the patient's own key (they are sealed to it), and answered here. Accepting derives the
// patient's pseudonym for that trial alone (keys.js TrialKeys, as node/client.py does), signs its
// consent to the trial's current protocol version and sends it to the site, which relays it to
// the ledger; declining sends nothing but the answer, and nothing leaves the site.

import { el, fetchJSON, hexToBytes } from "./common.js";
import { signedPost } from "./keys.js";
import { canonical } from "./msgpack.js";
import { institutionName } from "./portal-people.js";

const CONSENT_DOMAIN = "medledger-trial-consent-v1";

/** The patient's invitations at this node, opened: [{trial, status, letter}] (letter: null when
 *  it does not open with this key). */
export async function readInvitations(signer) {
  if (!signer.trials) return [];
  const doc = await signer.get(`/v1/patients/${signer.id}/invitations`);
  const out = [];
  for (const item of doc.invitations) {
    let letter = null;
    try {
      letter = JSON.parse(new TextDecoder().decode(signer.trials.open(item.ciphertext, item.wrapped)));
    } catch (exc) { /* not sealed to this key: shown as unreadable */ }
    let status = item.status;
    if (status === "accepted" && (await reconsentDue(signer, item.trial))) status = "reconsent";
    out.push({ trial: item.trial, status, site: item.site, letter });
  }
  return out;
}

/** The protocol version an amendment asks the patient to consent to again, or 0 when none. */
async function reconsentDue(signer, trial) {
  const { chain_id: chainId } = await fetchJSON("/v1/status");
  const found = await fetchJSON(`/v1/trials/${encodeURIComponent(trial)}`);
  const needed = Math.max(1, ...found.versions.filter((v) => v.reconsent).map((v) => v.version));
  const { id } = await signer.trials.pseudonym(chainId, trial);
  try {
    const mine = await fetchJSON(`/v1/trials/${encodeURIComponent(trial)}/participants/${id}`);
    return !mine.withdrawn_ms && Math.max(...mine.versions) < needed ? needed : 0;
  } catch (exc) {
    return 0;
  }
}

/** Answer an invitation: accept (consent under the trial pseudonym) or decline. */
export async function answer(signer, trial, accept) {
  const path = `/v1/trials/${encodeURIComponent(trial)}/respond`;
  if (!accept) return signedPost(signer, path, canonical({ accept: false }));
  const { chain_id: chainId } = await fetchJSON("/v1/status");
  const found = await fetchJSON(`/v1/trials/${encodeURIComponent(trial)}`);
  const version = found.versions[found.versions.length - 1].version;
  const pseudonym = await signer.trials.pseudonym(chainId, trial);
  const message = canonical([CONSENT_DOMAIN, chainId, trial, version, hexToBytes(pseudonym.id)]);
  const signature = await pseudonym.signer.sign(message);
  const out = await signedPost(signer, path, canonical({ accept: true, pseudonym: hexToBytes(pseudonym.id), version, signature }));
  return { ...out, pseudonym: pseudonym.id };
}

/** A pending item for an open invitation, with its two buttons; `onAnswer(accept)` answers it. */
export function invitationItem(inv, onAnswer) {
  const l = inv.letter;
  const accept = el("button", { type: "button", dataset: { action: "trial-accept", trial: inv.trial } }, "Take part");
  const decline = el("button", { type: "button", class: "secondary", dataset: { action: "trial-decline", trial: inv.trial } }, "No, thank you");
  accept.addEventListener("click", () => onAnswer(true));
  decline.addEventListener("click", () => onAnswer(false));
  if (inv.status === "reconsent") {
    const again = el("button", { type: "button", dataset: { action: "trial-reconsent", trial: inv.trial } }, "Consent again");
    again.addEventListener("click", () => onAnswer(true));
    return el("li", { class: "pending-item attention", dataset: { pending: "trial-reconsent", trial: inv.trial } },
      el("p", {}, `The protocol of the clinical trial ${l ? l.registry_id : inv.trial} was changed and asks for your consent again. `
        + "Until you consent, no more of your data is collected for it."),
      el("p", { class: "note" }, "To leave the trial instead, withdraw (medledger trial withdraw). ", again));
  }
  if (!l) {
    return el("li", { class: "pending-item", dataset: { pending: "trial", trial: inv.trial } },
      el("p", {}, `An invitation to the clinical trial ${inv.trial} could not be opened with your key.`));
  }
  return el("li", { class: "pending-item", dataset: { pending: "trial", trial: inv.trial } },
    el("p", {}, `${institutionName(l.site)} invites you to a clinical trial: ${l.registry_id} (ethics approval ${l.ethics_ref}, protocol version ${l.protocol_version}).`),
    el("p", { class: "trial-summary" }, l.summary || "No summary was given."),
    el("p", { class: "note" }, "Taking part gives the sponsor a pseudonym made for this trial only; it never learns your name or your id. "
      + "Saying no sends nothing anywhere. ", accept, " ", decline));
}
