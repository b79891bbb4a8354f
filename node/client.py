"""A small synchronous client for the MedLedger HTTP API (standard library only).

It is what the CLI uses and what an EHR integration can import:

    from node.client import Client
    from node.home.keys import load_key_file
    c = Client("http://127.0.0.1:8700")
    me = load_key_file("alice.key")
    outcome = c.submit_and_wait(me, "identity.register", {"role": "patient"})
    print(outcome["status"], outcome["height"])

Errors from the node raise `ApiError` with the node's error code; an unreachable node raises
`NodeUnreachable`.

Reads of health data (a patient's records, consents and audit trail, a record's metadata, an
access decision, an institution's disclosures) are signed with the caller's identity: pass
`signer=` to `get`, or use the HealthClient's read methods. For a node serving https with a
private CA (a devnet made with `devnet init --tls`), pass `ca_file=` or set MEDLEDGER_CA.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from node.api.auth import sign_headers
from node.core.crypto import Identity
from node.core.encoding import canonical
from node.chain.tx import Transaction


NONCE_RETRIES = 5


class ClientError(Exception):
    """Base of the client's errors."""


class NodeUnreachable(ClientError):
    """No answer from the node at that URL."""


class ApiError(ClientError):
    """The node answered with an error: `status` (HTTP), `code`, `message`."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}
        self.retry_after = retry_after  # seconds, from the answer's Retry-After (429, 503)


def _seconds(value: str | None) -> float | None:
    """A Retry-After of delta-seconds (an HTTP date is not used by the nodes), bounded."""
    try:
        return min(60.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


class Client:
    """Talk to one node's HTTP API."""

    def __init__(self, base_url: str, *, timeout: float = 40.0, ca_file: str | os.PathLike[str] | None = None) -> None:
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        ca = ca_file if ca_file is not None else os.environ.get("MEDLEDGER_CA") or None
        try:
            self._ssl = ssl.create_default_context(cafile=str(ca) if ca else None) if self.base_url.startswith("https:") else None
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(f"cannot read the CA file {ca}: {exc}") from None
        self._learned: tuple[str, str] | None = None  # (chain id, node id), asked once
        self._nonces: dict[bytes, int] = {}
        self._nonce_lock = threading.Lock()

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 *, signer: Identity | None = None) -> Any:
        return json.loads(self._request_raw(method, path, body, content_type, signer=signer) or b"null")

    def _request_raw(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                     *, signer: Identity | None = None) -> bytes:
        """One HTTP exchange (signed by `signer` if given); a node's error becomes ApiError, no
        answer NodeUnreachable."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        req.add_header("Accept", "application/json")
        if signer is not None:
            sent_path = urllib.parse.urlsplit(self.base_url).path + path  # as the server sees it
            headers = sign_headers(signer, chain_id=self.chain_id, node_id=self.node_id, method=method, path_qs=sent_path,
                                   body=body or b"", timestamp_ms=time.time_ns() // 1_000_000)
            for name, value in headers.items():
                req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {}
            if not isinstance(doc, dict):
                doc = {}
            raise ApiError(exc.code, str(doc.get("error", f"http_{exc.code}")), str(doc.get("message", exc.reason)), doc,
                           _seconds(exc.headers.get("Retry-After"))) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {reason}") from None

    def get(self, path: str, *, signer: Identity | None = None) -> Any:
        """GET a path (e.g. "/v1/status"); reads of health data need `signer`, the caller's identity."""
        return self._request("GET", path, signer=signer)

    # -- reads ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self.get("/v1/status")

    def upgrades(self) -> dict[str, Any]:
        """The protocol upgrades scheduled and pending, and the versions the node supports (GET /v1/upgrades)."""
        return self.get("/v1/upgrades")

    @property
    def chain_id(self) -> str:
        return self._learn_node()[0]

    @property
    def node_id(self) -> str:
        """The id of the node this client talks to: signed reads name it (medledger-request-v2)."""
        return self._learn_node()[1]

    def _learn_node(self) -> tuple[str, str]:
        if self._learned is None:
            status = self.status()
            self._learned = (str(status["chain_id"]), str(status["node_id"]))
        return self._learned

    def account(self, identity_id: str, *, signer: Identity | None = None) -> dict[str, Any]:
        """An account's nonce and identity; a patient's nonce only to a signed read by the patient
        (or its guardian, or the node's institution)."""
        return self.get(f"/v1/accounts/{identity_id}", signer=signer)

    def tx(self, tx_hash: str, *, wait_s: int | None = None) -> dict[str, Any]:
        q = f"?wait={wait_s}" if wait_s else ""
        return self.get(f"/v1/txs/{tx_hash}{q}")

    def tx_proof(self, tx_hash: str, *, signer: Identity | None = None) -> dict[str, Any]:
        """The Merkle proof; the leaf (the encoded transaction) only when `signer` is one of its parties."""
        return self.get(f"/v1/txs/{tx_hash}/proof", signer=signer)

    def validators(self, height: int | None = None, *, proofs: bool = False) -> dict[str, Any]:
        """The validator set, the sets scheduled, the pending proposals and the history of sets
        (GET /v1/validators); with `proofs`, the evidence of each change (`changes`); with
        `height`, the set of that height (?height=H)."""
        if height is not None:
            return self.get(f"/v1/validators?height={int(height)}")
        return self.get("/v1/validators?proofs=1" if proofs else "/v1/validators")

    def validator_proposal(self, kind: str, target_id: str) -> dict[str, Any]:
        """A validator.add or validator.remove proposal (`kind` add or remove) about `target_id`."""
        return self.get(f"/v1/validators/proposals/{kind}/{target_id}")

    def block(self, height: int | str, *, signer: Identity | None = None) -> dict[str, Any]:
        """A block; transactions concerning a patient are whole only when `signer` is one of their parties."""
        return self.get(f"/v1/blocks/{height}", signer=signer)

    # -- writes ---------------------------------------------------------------------------
    def genesis(self) -> dict[str, Any]:
        """The network's genesis document (GET /v1/genesis)."""
        return self.get("/v1/genesis")

    def snapshots(self, signer: Identity) -> dict[str, Any]:
        """The node's state snapshots, newest first (an admitted institution's signed read)."""
        return self.get("/v1/snapshots", signer=signer)

    def snapshot_chunk(self, height: int, index: int, signer: Identity) -> bytes:
        """The bytes of chunk `index` of the snapshot at `height`."""
        return self._request_raw("GET", f"/v1/snapshots/{height}/chunks/{index}", signer=signer)

    def next_nonce(self, identity: Identity) -> int:
        """A nonce above every one this identity used: the ledger's last, the clock in ms, and the
        last this client handed out (so two transactions in one millisecond still differ)."""
        last = int(self.account(identity.id, signer=identity)["nonce"] or 0)
        with self._nonce_lock:
            nonce = max(last + 1, time.time_ns() // 1_000_000, self._nonces.get(identity.public_key, 0) + 1)
            self._nonces[identity.public_key] = nonce
        return nonce

    def make_tx(self, identity: Identity, tx_type: str, body: dict[str, Any], *, nonce: int | None = None) -> Transaction:
        return Transaction.create(
            identity, chain_id=self.chain_id, type=tx_type, nonce=nonce or self.next_nonce(identity), body=body
        )

    def submit(self, tx: Transaction) -> dict[str, Any]:
        """Submit one transaction; return {"hash", "status": "pending"} or raise ApiError."""
        return self._request("POST", "/v1/txs", tx.encoded, "application/msgpack")

    def submit_many(self, txs: list[Transaction], *, overload_timeout: float = 60.0) -> dict[str, Any]:
        """Submit a batch; when the node's mempool is full (503 with Retry-After) wait as it asks
        and send the refused ones again, until `overload_timeout` passes. The answer has one
        result per transaction, in order."""
        deadline = time.monotonic() + overload_timeout
        results: list[dict[str, Any] | None] = [None] * len(txs)
        todo = list(range(len(txs)))
        wait = 1.0
        while True:
            payload = canonical([_value_of(txs[i]) for i in todo])
            try:
                doc = self._request("POST", "/v1/txs", payload, "application/msgpack")
                full = False
            except ApiError as exc:
                if exc.status != 503 or "results" not in exc.body:
                    raise
                doc, full, wait = exc.body, True, exc.retry_after or 1.0
            for i, r in zip(todo, doc["results"], strict=True):
                results[i] = r
            todo = [i for i in todo if (results[i] or {}).get("error") == "mempool_full"]
            if not full or not todo or time.monotonic() >= deadline:
                break
            time.sleep(min(max(0.05, wait), max(0.05, deadline - time.monotonic())))  # as the node asked
        done = [r or {} for r in results]
        accepted = sum(1 for r in done if "error" not in r)
        return {"accepted": accepted, "rejected": len(done) - accepted, "results": done}

    def wait(self, tx_hash: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the transaction is committed (or the timeout passes); return its status."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            status = self.tx(tx_hash, wait_s=max(1, min(int(left), 30)))
            if status.get("status") == "committed" or time.monotonic() >= deadline:
                return status

    def send(self, identity: Identity, tx_type: str, body: dict[str, Any], *, wait: bool = True,
             timeout: float = 30.0) -> dict[str, Any]:
        """Sign, submit and (with `wait`) wait for the commit; a refusal becomes {"status": code,
        "message"}. The ledger takes a sender's transactions only in rising nonce order, so two
        processes using one key at once (each picking its own nonce) may see one of theirs
        refused or committed as `nonce_replayed`: such a transaction had no effect, so it is
        signed again with a fresh nonce, up to NONCE_RETRIES times. Two such calls with the same
        body in the same millisecond sign the same bytes; the one refused as `already_committed`
        reports the other's commit, which is its own transaction."""
        for attempt in range(NONCE_RETRIES + 1):
            tx = self.make_tx(identity, tx_type, body)
            try:
                self.submit(tx)
            except ApiError as exc:
                if exc.code == "nonce_replayed" and attempt < NONCE_RETRIES:
                    continue
                if exc.code == "already_committed" and wait:
                    # the very same bytes (same key, body and nonce: a parallel call in the same
                    # millisecond) are on the chain already: that commit is this call's outcome
                    return outcome(tx.hash_hex, self.wait(tx.hash_hex, timeout))
                return {"tx_hash": exc.body.get("hash", tx.hash_hex), "status": exc.code, "result": exc.code,
                        "message": exc.message, "height": None}
            if not wait:
                return outcome(tx.hash_hex, {"status": "pending"})
            result = outcome(tx.hash_hex, self.wait(tx.hash_hex, timeout))
            if result["status"] == "nonce_replayed" and attempt < NONCE_RETRIES:
                continue
            return result
        raise AssertionError("unreachable")  # the last attempt always returns

    def submit_and_wait(self, identity: Identity, tx_type: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Sign, submit and wait for the commit: {"tx_hash", "status", "height", "result"}."""
        tx = self.make_tx(identity, tx_type, body)
        self.submit(tx)
        status = self.wait(tx.hash_hex, timeout)
        return outcome(tx.hash_hex, status)


def outcome(tx_hash: str, status: dict[str, Any]) -> dict[str, Any]:
    """The CLI's JSON for a submitted transaction: status is committed, pending or an error code."""
    if status.get("status") == "committed":
        result = status.get("result", "ok")
        return {"tx_hash": tx_hash, "status": "committed" if result == "ok" else result,
                "result": result, "height": status.get("height"), "index": status.get("index")}
    return {"tx_hash": tx_hash, "status": status.get("status", "pending"), "result": None, "height": None}


def _value_of(tx: Transaction) -> list[Any]:
    return [tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]


# -- the healthcare ledger ---------------------------------------------------------------------
class RecordError(ClientError):
    """A record could not be written or read (invalid FHIR, a refusal, a hash mismatch...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HealthClient(Client):
    """Client-side flows of the healthcare ledger: everything sensitive happens in this process
    (FHIR validation, encryption, decryption); the node sees only ciphertext and signatures."""

    def _post_msgpack(self, path: str, payload: bytes) -> bytes:
        return self._request_raw("POST", path, payload, "application/msgpack")

    # signed reads
    def patient_records(self, reader: Identity, patient_id: str) -> dict[str, Any]:
        return self.get(f"/v1/patients/{patient_id}/records", signer=reader)

    def consents(self, reader: Identity, patient_id: str, *, fhir: bool = False) -> dict[str, Any]:
        return self.get(f"/v1/patients/{patient_id}/consents" + ("?format=fhir" if fhir else ""), signer=reader)

    def audit(self, reader: Identity, patient_id: str, *, fhir: bool = False) -> dict[str, Any]:
        return self.get(f"/v1/patients/{patient_id}/audit" + ("?format=fhir" if fhir else ""), signer=reader)

    def record_meta(self, reader: Identity, record_id: str) -> dict[str, Any]:
        return self.get(f"/v1/records/{record_id}", signer=reader)

    def access_decision(self, reader: Identity, request_tx: str) -> dict[str, Any]:
        return self.get(f"/v1/access/{request_tx}", signer=reader)

    def disclosures(self, institution: Identity, *, since_ms: int = 0, until_ms: int | None = None,
                    fhir: bool = False) -> dict[str, Any]:
        q = f"?since_ms={since_ms}" + (f"&until_ms={until_ms}" if until_ms is not None else "") + ("&format=fhir" if fhir else "")
        return self.get(f"/v1/institutions/{institution.id}/disclosures{q}", signer=institution)

    def breakglass_pending(self, institution: Identity) -> dict[str, Any]:
        return self.get(f"/v1/institutions/{institution.id}/breakglass", signer=institution)

    def transact(self, identity: Identity, tx_type: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        """Sign, submit and wait; a refusal at admission becomes {"status": code, "message"}
        (a nonce taken by a parallel use of the same key is retried, see `send`)."""
        return self.send(identity, tx_type, body, timeout=timeout)

    # identities
    def register(self, identity: Identity, role: str, *, institution: Identity | None = None, label: str = "",
                 profession: str | None = None) -> dict[str, Any]:
        from node.app.types.identity import attest

        body: dict[str, Any] = {"role": role}
        if label:
            body["label"] = label
        if profession is not None:
            body["profession"] = profession
        if institution is not None:
            body["institution"] = institution.public_key
            body["attestation"] = attest(institution, chain_id=self.chain_id, registrant=identity.public_key, role=role,
                                         profession=profession)
        return self.transact(identity, "identity.register", body)

    # records
    def put_record(self, author: Identity, patient_id: str, resource_json: bytes, *,
                   subject: str | None = None, workflow: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate, check that the resource is the patient's (`subject`: a local reference the
        writer says is this patient, see node/records/subject.py), encrypt, store at the custodian
        (this node's institution), announce on the ledger. `workflow`: the record's workflow
        fields (node/app/care.py: based_on, recipient, payer and lists as hex ids, until_ms)."""
        import os as _os

        from node.core.crypto import parse_id, sha256
        from node.records.envelope import seal_record
        from node.records.fhir import FhirInvalid, parse_resource
        from node.records.protocol import Upload
        from node.records.subject import SubjectMismatch, check_subject

        try:
            resource = parse_resource(resource_json)
        except FhirInvalid as exc:  # invalid_fhir, or too_large for the size limit
            raise RecordError(exc.code, str(exc)) from None
        from nacl.bindings import crypto_core_ed25519_is_valid_point

        try:
            patient = parse_id(patient_id)
        except ValueError as exc:
            raise RecordError("bad_id", f"the patient id is not an identity id: {exc}") from None
        if not crypto_core_ed25519_is_valid_point(patient):
            # a mistyped id is (almost always) no curve point: wrapping a key for it would fail deep in libsodium
            raise RecordError("bad_id", f"{patient_id[:16]}... is not a MedLedger identity id (not an Ed25519 public key)")
        try:
            check_subject(resource, patient.hex(), alias=subject)
        except SubjectMismatch as exc:
            raise RecordError("wrong_patient", str(exc)) from None
        custodian = parse_id(self.status()["node_id"])
        record_id = _os.urandom(32)
        ciphertext, wrapped = seal_record(resource_json, {"patient": patient, "custodian": custodian})
        upload = Upload.create(author, chain_id=self.chain_id, record_id=record_id, patient=patient,
                               resource_type=resource["resourceType"], ciphertext=ciphertext, wrapped=wrapped,
                               timestamp_ms=time.time_ns() // 1_000_000)
        fields = workflow_fields(workflow or {})
        self._post_msgpack("/v1/records", upload.to_wire())
        out = self.transact(author, "record.add", {"record": record_id, "patient": patient, "resource_type": resource["resourceType"],
                                                    "hash": sha256(ciphertext), "custodian": custodian, **fields})
        out["record_id"] = record_id.hex()
        out["resource_type"] = resource["resourceType"]
        return out

    def request_access(self, identity: Identity, record_id: str, purpose: str, reason: str = "",
                       note_hash: bytes | None = None, under: str | None = None) -> dict[str, Any]:
        """`reason`: a break-glass reason code; `note_hash`: the commitment to an off-chain note;
        `under`: the Claim or referral (record id) the read is made under."""
        from node.core.crypto import parse_id

        body: dict[str, Any] = {"record": parse_id(record_id), "purpose": purpose}
        if under:
            body["under"] = parse_id(under)
        if reason:
            body["reason"] = reason
        if note_hash is not None:
            body["note_hash"] = note_hash
        out = self.transact(identity, "access.request", body)
        if out.get("height"):
            try:
                out["decision"] = self.access_decision(identity, out["tx_hash"])
            except ApiError:
                out["decision"] = None
        return out

    # care workflows (node/app/care.py)
    def nominate(self, patient: Identity, permission: str, institution_id: str, *,
                 on_behalf_of: str | None = None) -> dict[str, Any]:
        """A patient names its pharmacy or insurer (`standing.grant`)."""
        from node.core.crypto import parse_id

        body: dict[str, Any] = {"permission": permission, "institution": parse_id(institution_id)}
        if on_behalf_of:
            body["on_behalf_of"] = parse_id(on_behalf_of)
        return self.transact(patient, "standing.grant", body)

    def withdraw_nomination(self, patient: Identity, permission: str, *, on_behalf_of: str | None = None) -> dict[str, Any]:
        from node.core.crypto import parse_id

        body: dict[str, Any] = {"permission": permission}
        if on_behalf_of:
            body["on_behalf_of"] = parse_id(on_behalf_of)
        return self.transact(patient, "standing.revoke", body)

    def accept_request(self, patient: Identity, record_id: str, *, on_behalf_of: str | None = None) -> dict[str, Any]:
        """A patient accepts a referral or a lab order addressed to an institution (`request.accept`)."""
        from node.core.crypto import parse_id

        body: dict[str, Any] = {"record": parse_id(record_id)}
        if on_behalf_of:
            body["on_behalf_of"] = parse_id(on_behalf_of)
        return self.transact(patient, "request.accept", body)

    def inbox(self, reader: Identity, institution_id: str, *, after_height: int = 0) -> dict[str, Any]:
        return self.get(f"/v1/institutions/{institution_id}/inbox?after_height={after_height}", signer=reader)

    def standing(self, reader: Identity, patient_id: str) -> dict[str, Any]:
        return self.get(f"/v1/patients/{patient_id}/standing", signer=reader)

    # clinical trials (node/api/routes_trials.py)
    def trial(self, trial_id: str) -> dict[str, Any]:
        return self.get(f"/v1/trials/{trial_id}")

    def trial_submissions(self, trial_id: str) -> dict[str, Any]:
        return self.get(f"/v1/trials/{trial_id}/submissions")

    def trial_query(self, trial_id: str, query: str) -> dict[str, Any]:
        return self.get(f"/v1/trials/{trial_id}/queries/{query}")

    def trial_participant(self, trial_id: str, pseudonym: str) -> dict[str, Any]:
        return self.get(f"/v1/trials/{trial_id}/participants/{pseudonym}")

    def _signed_post(self, signer: Identity, path: str, doc: dict[str, Any]) -> Any:
        from node.core.encoding import canonical

        return self._request("POST", path, canonical(doc), "application/msgpack", signer=signer)

    def site_count(self, sponsor: Identity, trial_id: str, query: str) -> dict[str, Any]:
        """Ask this node (a site) to count its matching patients for the sponsor's query."""
        return self._signed_post(sponsor, f"/v1/trials/{trial_id}/count?query={query}", {})

    def site_invite(self, sponsor: Identity, trial_id: str, summary: str = "") -> dict[str, Any]:
        return self._signed_post(sponsor, f"/v1/trials/{trial_id}/invite", {"summary": summary})

    def invitations(self, patient: Identity) -> dict[str, Any]:
        return self.get(f"/v1/patients/{patient.id}/invitations", signer=patient)

    def trial_respond(self, patient: Identity, trial_id: str, *, accept: bool, version: int | None = None) -> dict[str, Any]:
        """Answer an invitation kept at this node. Accepting sends the patient's trial pseudonym
        (derived from its key for this trial alone: `trial_pseudonym`) and its consent signature."""
        from node.app.trials import consent_message

        doc: dict[str, Any] = {"accept": accept}
        if accept:
            if version is None:
                version = int(self.trial(trial_id)["versions"][-1]["version"])
            pseudonym = trial_pseudonym(patient, self.chain_id, trial_id)
            doc.update(pseudonym=pseudonym.public_key, version=version,
                       signature=pseudonym.sign(consent_message(self.chain_id, trial_id, version, pseudonym.public_key)))
        return self._signed_post(patient, f"/v1/trials/{trial_id}/respond", doc)

    def trial_withdraw(self, patient: Identity, trial_id: str) -> dict[str, Any]:
        from node.app.trials import withdraw_message

        pseudonym = trial_pseudonym(patient, self.chain_id, trial_id)
        doc = {"pseudonym": pseudonym.public_key,
               "signature": pseudonym.sign(withdraw_message(self.chain_id, trial_id, pseudonym.public_key))}
        return self._signed_post(patient, f"/v1/trials/{trial_id}/withdraw", doc)

    def trial_submit(self, investigator: Identity, trial_id: str, pseudonym: str, resource: dict[str, Any]) -> dict[str, Any]:
        """Encrypt a trial resource for this site and the sponsor, keep it at this site, anchor its
        salted hash on the ledger (`trial.submit`)."""
        from node.app.trials import submission_hash
        from node.core.crypto import parse_id
        from node.core.encoding import canonical
        from node.records.envelope import seal_record

        trial = self.trial(trial_id)
        salt, submission = os.urandom(16), os.urandom(32)
        body = resource_bytes(resource)
        ciphertext, wrapped = seal_record(canonical({"salt": salt, "resource": body}),
                                          {"custodian": parse_id(self.status()["node_id"]),
                                           "sponsor": bytes.fromhex(trial["sponsor"])})
        self._signed_post(investigator, f"/v1/trials/{trial_id}/submissions",
                          {"submission": submission, "pseudonym": parse_id(pseudonym), "ciphertext": ciphertext,
                           "wrapped": wrapped})
        out = self.transact(investigator, "trial.submit", {
            "trial": trial_id, "pseudonym": parse_id(pseudonym), "submission": submission,
            "hash": submission_hash(salt, body), "resource_type": str(resource.get("resourceType", ""))})
        out["submission"] = submission.hex()
        return out

    def trial_export(self, sponsor: Identity, trial_id: str) -> list[dict[str, Any]]:
        """This site's submissions of the trial, decrypted with the sponsor's key: each
        {submission, pseudonym, salt, resource} (hex ids; the resource as JSON)."""
        from node.core.encoding import decode
        from node.records.envelope import decrypt, unwrap_key

        doc = self.get(f"/v1/trials/{trial_id}/export", signer=sponsor)
        out = []
        for entry in doc["submissions"]:
            inner = decode(decrypt(bytes.fromhex(entry["ciphertext"]), unwrap_key(bytes.fromhex(entry["wrapped"]), sponsor)),
                           max_bytes=1024 * 1024)
            out.append({"submission": entry["submission"], "pseudonym": entry["pseudonym"], "salt": inner["salt"].hex(),
                        "resource": json.loads(inner["resource"])})
        return out

    def fetch_record(self, identity: Identity, record_id: str) -> bytes:
        """Fetch, check against the ledger and decrypt a record this identity holds a grant for."""
        from node.records.envelope import EnvelopeError, decrypt, unwrap_key

        release = self.fetch_release(identity, record_id)
        try:
            return decrypt(release.ciphertext, unwrap_key(release.wrapped_key, identity))
        except EnvelopeError as exc:
            raise RecordError("cannot_decrypt", str(exc)) from None

    def fetch_release(self, identity: Identity, record_id: str) -> Any:
        """The custodian's signed answer, checked against the ledger (not yet decrypted)."""
        from node.core.crypto import parse_id, sha256
        from node.core.encoding import DecodeError, decode
        from node.records.protocol import Fetch, ProtocolError, Release

        rid = parse_id(record_id)
        meta = self.record_meta(identity, record_id)
        fetch = Fetch.create(identity, chain_id=self.chain_id, record_id=rid, timestamp_ms=time.time_ns() // 1_000_000)
        raw = self._post_msgpack(f"/v1/records/{record_id}/fetch", fetch.to_wire())
        try:
            release = Release.from_wire(decode(raw, max_bytes=8 * 1024 * 1024), self.chain_id)
        except (DecodeError, ProtocolError) as exc:
            raise RecordError("bad_answer", f"the custodian's answer is not valid: {exc}") from None
        if release.custodian.hex() != meta["custodian"] or release.nonce != fetch.nonce or release.requester != identity.public_key:
            raise RecordError("bad_answer", "the answer is not from the record's custodian or not for this request")
        if sha256(release.ciphertext).hex() != meta["hash"]:
            raise RecordError("hash_mismatch", "the ciphertext does not match the hash on the ledger; not decrypting")
        return release


def workflow_fields(workflow: dict[str, Any]) -> dict[str, Any]:
    """A record's workflow fields for `record.add`, from hex ids (node/app/care.py)."""
    from node.core.crypto import parse_id

    out: dict[str, Any] = {}
    for name in ("based_on", "recipient", "payer"):
        if workflow.get(name):
            out[name] = parse_id(workflow[name])
    if workflow.get("until_ms") is not None:
        out["until_ms"] = int(workflow["until_ms"])
    if workflow.get("lists"):
        out["lists"] = [parse_id(r) for r in workflow["lists"]]
    unknown = set(workflow) - {"based_on", "recipient", "payer", "until_ms", "lists"}
    if unknown:
        raise ValueError(f"unknown workflow field {sorted(unknown)[0]!r}")
    return out


PSEUDONYM_DOMAIN = b"medledger-trial-pseudonym-v1"


def trial_pseudonym(patient: Identity, chain_id: str, trial_id: str) -> Identity:
    """The patient's pseudonym in one trial: an Ed25519 key derived from the patient's key and
    the trial, so the patient can always derive it again and no two trials share one. Nobody
    without the patient's key can link it to the patient."""
    import hashlib
    import hmac

    seed = hmac.new(patient.seed, PSEUDONYM_DOMAIN + b"/" + chain_id.encode() + b"/" + trial_id.encode(),
                    hashlib.sha256).digest()
    return Identity.from_seed(seed)


def resource_bytes(resource: dict[str, Any]) -> bytes:
    """The bytes of a trial resource its hash is taken over: canonical JSON (sorted keys, no
    spaces), so an auditor recomputes it from the exported JSON."""
    return json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
