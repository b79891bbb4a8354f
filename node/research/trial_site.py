"""A clinical trial's site: feasibility counts, invitations, acceptances and trial data, at the
institution that keeps the patients' records.

Everything that touches a patient stays here. The site evaluates a trial's criteria over the
decrypted records it keeps of the patients who let it screen them (the standing permission
"screening"), and tells the sponsor only numbers: a feasibility count (or "fewer than" the
trial's threshold) and how many it invited, both recorded on the ledger by this node
(`trial.count`, `trial.invited`). An invitation is sealed to the patient's own key and kept here;
the patient lists its invitations with a signed read and answers with a signed request. Only on
acceptance does anything leave: the patient's trial pseudonym and its consent signature, which
this site relays to the ledger (`trial.consent`). The link between the patient and its pseudonym
is kept here, sealed to this node's key; nothing of it is on the chain.

The site also keeps the trial data its investigators submit (ciphertext with its data key
wrapped for the site and for the sponsor; the ledger anchors each submission's salted hash,
`trial.submit`) and hands the sponsor its export.

Off-chain items (storage/offchain.py, trial items), every value sealed or ciphertext:

    i/<patient><trial>        an invitation (a JSON letter) sealed to the patient, and its status (open,
                              accepted, declined)
    p/<trial><pseudonym>      the patient behind a pseudonym, sealed to this node
    s/<trial><submission>     a submission: the pseudonym, its ciphertext and wrapped keys
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from node.app import queries, trials
from node.app.keys import study_part
from node.app.trial_criteria import CriteriaInvalid, matches, parse
from node.chain.tx import Transaction
from node.core.crypto import KEY_SIZE, SIGNATURE_SIZE, verify
from node.core.encoding import DecodeError, canonical, decode
from node.records.custodian import CustodianRefusal, load_entry
from node.records.envelope import EnvelopeError, decrypt, encrypt, new_data_key, unwrap_key, wrap_key

log = logging.getLogger("medledger.trials")
MAX_SUMMARY = 2048  # an invitation's summary, in characters (it stays off the chain, sealed)
MAX_SUBMISSION_BYTES = 256 * 1024
MAX_LISTED = 10_000


def _refuse(status: int, code: str, message: str) -> CustodianRefusal:
    return CustodianRefusal(status, code, message)


class TrialSite:
    def __init__(self, node: Any, store: Any) -> None:
        self.node = node
        self.store = store

    # -- what the ledger says --------------------------------------------------------------------
    @property
    def me(self) -> bytes:
        return bytes(self.node.identity.public_key)

    def trial(self, trial_id: str) -> dict[str, Any]:
        found = trials.load_trial(self.node.state_reader(), trial_id)
        if found is None:
            raise _refuse(404, "unknown_trial", "no trial with this id on the ledger")
        return found

    def _as_site(self, trial_id: str) -> dict[str, Any]:
        found = self.trial(trial_id)
        if self.me not in found["sites"]:
            raise _refuse(404, "not_a_site", "this node's institution is not a site of that trial")
        return found

    def _sponsor_asks(self, trial_id: str, signer: bytes) -> dict[str, Any]:
        found = self._as_site(trial_id)
        if signer != found["sponsor"]:
            raise _refuse(403, "not_the_sponsor", "only the trial's sponsor asks a site this")
        return found

    # -- screening -------------------------------------------------------------------------------
    def _open(self, record_id: bytes) -> dict[str, Any] | None:
        entry = load_entry(self.store, record_id)
        if entry is None:
            return None
        try:
            doc = json.loads(decrypt(entry["ciphertext"], unwrap_key(entry["wrapped"]["custodian"], self.node.identity)))
        except (EnvelopeError, ValueError, KeyError):
            log.error("record %s cannot be opened by its custodian", record_id.hex()[:16])
            return None
        return doc if isinstance(doc, dict) else None

    def matching(self, found: dict[str, Any], on: dt.date) -> list[bytes]:
        """The patients who let this site screen them and whose records here meet the criteria on `on`."""
        try:
            criteria = parse(json.loads(found["criteria"]))
        except (CriteriaInvalid, ValueError):  # the ledger checked them: this is a bug, refuse loudly
            raise _refuse(500, "invalid_criteria", "the trial's criteria do not parse") from None
        state = self.node.state_reader()
        me = self.me.hex()
        chosen = []
        for patient in queries.screened_patients(state, self.me):
            resources = []
            for rec in queries.patient_records(state, patient):
                if rec.get("custodian") == me and not rec.get("erased"):
                    doc = self._open(bytes.fromhex(rec["id"]))
                    if doc is not None:
                        resources.append(doc)
            if matches(criteria, resources, on):
                chosen.append(patient)
        return chosen

    async def count(self, trial_id: str, query: bytes, signer: bytes) -> dict[str, Any]:
        """This site's answer to the sponsor's feasibility query, recorded on the ledger."""
        found = self._sponsor_asks(trial_id, signer)
        asked = queries.trial_query(self.node.state_reader(), trial_id, query)
        if asked is None:
            raise _refuse(404, "unknown_query", "the sponsor asked no such query on the ledger")
        if self.me.hex() in asked["counts"]:
            return {"site": self.me.hex(), **asked["counts"][self.me.hex()], "tx": None}
        on = dt.datetime.fromtimestamp(asked["time_ms"] / 1000, dt.timezone.utc).date()
        n = len(self.matching(found, on))
        threshold = int(found["threshold"])
        body: dict[str, Any] = {"trial": trial_id, "query": query}
        body.update({"count": n} if n >= threshold else {"fewer_than": True})
        tx = await self._submit("trial.count", body)
        return {"site": self.me.hex(), **({"count": n} if n >= threshold else {"fewer_than": threshold}), "tx": tx}

    # -- invitations ------------------------------------------------------------------------------
    def _invitation_key(self, patient: bytes, trial_id: str) -> bytes:
        return b"i/" + patient + study_part(trial_id)

    async def invite(self, trial_id: str, summary: str, signer: bytes) -> dict[str, Any]:
        """Invite every matching patient not invited yet: an invitation sealed to each; the ledger
        learns how many (`trial.invited`)."""
        found = self._sponsor_asks(trial_id, signer)
        if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
            raise _refuse(400, "malformed_request", f"summary is text of at most {MAX_SUMMARY} characters")
        today = dt.datetime.fromtimestamp(self.node.clock_ms() / 1000, dt.timezone.utc).date()
        version = trials.current_version(found)
        invited = 0
        for patient in self.matching(found, today):
            key = self._invitation_key(patient, trial_id)
            if self.store.trial_item(key) is not None:
                continue
            letter = json.dumps({"trial": trial_id, "registry_id": found["registry_id"], "ethics_ref": found["ethics_ref"],
                                 "protocol_version": version, "protocol_hash": found["versions"][-1]["protocol_hash"].hex(),
                                 "site": self.me.hex(), "sponsor": found["sponsor"].hex(), "summary": summary,
                                 "invited_ms": self.node.clock_ms()}, sort_keys=True).encode("utf-8")
            data_key = new_data_key()
            self.store.put_trial_item(key, canonical({"ciphertext": encrypt(letter, data_key),
                                                      "wrapped": wrap_key(data_key, patient), "status": "open"}))
            invited += 1
        tx = await self._submit("trial.invited", {"trial": trial_id, "count": invited}) if invited else None
        return {"site": self.me.hex(), "invited": invited, "tx": tx}

    def invitations(self, patient: bytes) -> list[dict[str, Any]]:
        """The patient's invitations kept here (sealed to the patient: it decrypts them)."""
        out = []
        for key, raw in self.store.trial_items(b"i/" + patient, MAX_LISTED):
            part = key[2 + KEY_SIZE:]
            item = decode(raw, max_bytes=64 * 1024)
            out.append({"trial": part[1:1 + part[0]].decode("ascii"), "site": self.me.hex(), "status": item["status"],
                        "ciphertext": item["ciphertext"], "wrapped": item["wrapped"]})
        return out

    async def respond(self, trial_id: str, patient: bytes, doc: Any) -> dict[str, Any]:
        """The patient's answer to its invitation. Declined: nothing leaves. Accepted: its
        pseudonym's consent to the current version is relayed to the ledger, and the link kept
        here, sealed. An accepted patient answers again to re-consent after an amendment."""
        found = self._as_site(trial_id)
        key = self._invitation_key(patient, trial_id)
        raw = self.store.trial_item(key)
        if raw is None:
            raise _refuse(404, "not_invited", "this site has no invitation of yours to that trial")
        item = decode(raw, max_bytes=64 * 1024)
        if not isinstance(doc, dict) or not isinstance(doc.get("accept"), bool):
            raise _refuse(400, "malformed_request", "the answer is {accept: true|false, pseudonym, version, signature}")
        if not doc["accept"]:
            if item["status"] == "accepted":
                raise _refuse(409, "already_accepted", "you accepted; to leave the trial, withdraw (trial withdraw)")
            item["status"] = "declined"
            self.store.put_trial_item(key, canonical(item))
            return {"status": "declined", "tx": None}
        pseudonym, version, signature = doc.get("pseudonym"), doc.get("version"), doc.get("signature")
        if not (isinstance(pseudonym, bytes) and len(pseudonym) == KEY_SIZE and isinstance(version, int)
                and isinstance(signature, bytes) and len(signature) == SIGNATURE_SIZE):
            raise _refuse(400, "malformed_request", "an acceptance carries the pseudonym, the version and its signature")
        if not verify(pseudonym, trials.consent_message(self.node.chain_id, trial_id, version, pseudonym), signature):
            raise _refuse(400, "bad_signature", "the pseudonym did not sign this consent")
        link_key = b"p/" + study_part(trial_id) + pseudonym
        if item["status"] == "accepted" and self.store.trial_item(link_key) is None:
            raise _refuse(409, "another_pseudonym", "you accepted this trial under another pseudonym")
        tx = await self._submit("trial.consent", {"trial": trial_id, "version": version, "pseudonym": pseudonym,
                                                  "signature": signature})
        data_key = new_data_key()
        self.store.put_trial_item(link_key, canonical({"ciphertext": encrypt(patient, data_key),
                                                       "wrapped": wrap_key(data_key, self.me)}))
        item["status"] = "accepted"
        self.store.put_trial_item(key, canonical(item))
        return {"status": "accepted", "tx": tx, "version": version, "protocol_version": trials.current_version(found)}

    async def relay_withdrawal(self, trial_id: str, doc: Any) -> dict[str, Any]:
        """Relay a participant's withdrawal (signed by its pseudonym) to the ledger."""
        self.trial(trial_id)
        pseudonym, signature = (doc.get("pseudonym"), doc.get("signature")) if isinstance(doc, dict) else (None, None)
        if not (isinstance(pseudonym, bytes) and len(pseudonym) == KEY_SIZE and isinstance(signature, bytes)
                and len(signature) == SIGNATURE_SIZE):
            raise _refuse(400, "malformed_request", "a withdrawal carries the pseudonym and its signature")
        tx = await self._submit("trial.withdraw", {"trial": trial_id, "pseudonym": pseudonym, "signature": signature})
        return {"status": "withdrawn", "tx": tx}

    # -- trial data -------------------------------------------------------------------------------
    def accept_submission(self, trial_id: str, signer: bytes, doc: Any) -> dict[str, Any]:
        """Keep a submission's ciphertext (its data key wrapped for this site and the sponsor),
        from an investigator of this site, for an enrolled participant of it."""
        found = self._as_site(trial_id)
        person = queries.identity(self.node.state_reader(), signer)
        if signer not in found["investigators"] or not person or person.get("institution") != self.me.hex():
            raise _refuse(403, "not_an_investigator", "only an investigator of this site submits its trial data")
        if not isinstance(doc, dict):
            raise _refuse(400, "malformed_request", "a submission is {submission, pseudonym, ciphertext, wrapped}")
        submission, pseudonym, ciphertext, wrapped = (doc.get(k) for k in ("submission", "pseudonym", "ciphertext", "wrapped"))
        if not (isinstance(submission, bytes) and len(submission) == 32 and isinstance(pseudonym, bytes)
                and len(pseudonym) == KEY_SIZE and isinstance(ciphertext, bytes) and len(ciphertext) <= MAX_SUBMISSION_BYTES
                and isinstance(wrapped, dict) and set(wrapped) == {"custodian", "sponsor"}
                and all(isinstance(v, bytes) and len(v) <= 128 for v in wrapped.values())):
            raise _refuse(400, "malformed_request", f"a submission is {{submission, pseudonym, ciphertext (<= "
                                                    f"{MAX_SUBMISSION_BYTES} bytes), wrapped: {{custodian, sponsor}}}}")
        participant = trials.load_participant(self.node.state_reader(), trial_id, pseudonym)
        if participant is None or participant["site"] != self.me or "enrolled_ms" not in participant:
            raise _refuse(409, "not_enrolled", "that pseudonym is not enrolled at this site")
        if "withdrawn_ms" in participant:  # the ledger would refuse the anchor: keep nothing
            raise _refuse(409, "participant_withdrawn", "the participant withdrew: nothing more is collected")
        if max(participant["versions"]) < trials.consent_needed(found):
            raise _refuse(409, "reconsent_required", "the participant has not consented to the protocol version "
                                                     "that asks for re-consent")
        if "lock" in found:
            raise _refuse(409, "trial_locked", "the trial's data set is locked")
        key = b"s/" + study_part(trial_id) + submission
        if self.store.trial_item(key) is not None:
            raise _refuse(409, "submission_exists", "a submission with this id is kept already")
        self.store.put_trial_item(key, canonical({"pseudonym": pseudonym, "ciphertext": ciphertext, "wrapped": wrapped}))
        return {"submission": submission.hex(), "kept": True}

    def export(self, trial_id: str, signer: bytes) -> list[dict[str, Any]]:
        """The sponsor's copy of this site's submissions anchored on the ledger: ciphertext and
        the key wrapped for it; none of a participant who withdrew (no further release)."""
        self._sponsor_asks(trial_id, signer)
        prefix = b"s/" + study_part(trial_id)
        state = self.node.state_reader()
        anchored = {s["submission"] for s in trials.submissions(state, trial_id) if s["site"] == self.me}
        out = []
        for key, raw in self.store.trial_items(prefix, MAX_LISTED):
            if key[len(prefix):] not in anchored:  # kept, but its anchor never made it on the ledger
                continue
            try:
                item = decode(raw, max_bytes=MAX_SUBMISSION_BYTES * 2)
            except DecodeError:
                continue
            participant = trials.load_participant(state, trial_id, item["pseudonym"])
            if participant is None or "withdrawn_ms" in participant:  # a withdrawal stops every further release
                continue
            out.append({"submission": key[len(prefix):], "pseudonym": item["pseudonym"], "ciphertext": item["ciphertext"],
                        "wrapped": item["wrapped"]["sponsor"]})
        return out

    # -- this node's own transactions ----------------------------------------------------------------
    async def _submit(self, tx_type: str, body: dict[str, Any]) -> str:
        """Sign with this node's institution key, admit, wait for the commit; the tx hash."""
        with self.node.own_nonces.lock:
            [nonce] = self.node.own_nonces.take(1)
            tx = Transaction.create(self.node.identity, chain_id=self.node.chain_id, type=tx_type, nonce=nonce, body=body)
            [admission] = self.node.admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])
        if admission.error is not None:
            raise _refuse(409, admission.error, admission.message or f"the ledger refused {tx_type}")
        if not await self.node.wait_committed(tx.hash, 30):
            raise _refuse(504, "not_committed", f"{tx_type} was not committed in time")
        result = self.node.tx_status(tx.hash).get("result")
        if result != "ok":
            raise _refuse(409, str(result), f"the ledger refused {tx_type}: {result}")
        return str(tx.hash_hex)
