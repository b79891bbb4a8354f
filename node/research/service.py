"""Research extracts across custodians: the node side of `medledger research extract`.

1. The researcher signs an `ExtractRequest` (study, types, k, the coordinator it chose, time,
   nonce) and sends it to that institution's node: the coordinator. The coordinator must be the
   study's institution or a custodian of records of the study's consenting patients.
2. The coordinator checks the study and the researcher on the ledger, finds the patients whose
   research consent to the study is in force and the custodians holding their records, and asks
   each custodian (itself included) to PREPARE, countersigning the request. A custodian answers
   only the coordinator the researcher named, only if that coordinator may coordinate the study,
   only for a fresh request (at most two minutes old, not from the future) and once.
3. Each custodian decrypts its records of those patients that the request's types and each
   patient's consent scope allow, de-identifies them by HIPAA Safe Harbor with the study's
   pseudonym key (derived from the research secret the custodians share, never the researcher),
   and answers with its release.
4. The coordinator merges the releases and applies k-anonymity across all of them, with k the
   larger of the researcher's and the study's minimum (`min_k`, fixed at registration, never
   below the network floor `K_FLOOR`). If fewer than k patients remain nothing is released.
   Otherwise each custodian RECORDS its part on the ledger (`research.release`: the included
   patients, the number of resources, the hash of the extract), which puts the release in every
   included patient's audit trail; then the coordinator answers the researcher with the NDJSON
   files and the report. A custodian records only what it prepared for this very request: the
   patients it released and the count of their resources come from its own prepared release,
   not from the coordinator, and a request is recorded once.

A delegated request (`via` set) is signed not by the researcher but by the institution the
researcher is registered under, whose node acts for the researcher (the FHIR Bulk Data export,
node/fhir/bulk.py, where the researcher authenticates with a SMART token and the node holds no
researcher key): `ResearchService.extract_on_behalf`. Every step accepts it only when `via` is a
registered institution, the researcher is registered under it (`check_delegation`) and `via` is
the coordinator itself, so the institution that vouches for the request is the node that
receives the data. It is otherwise treated exactly as the researcher's own (same k, same
checks) and each `research.release` names the researcher and `via`. A delegated request is
never accepted from outside (`POST /v1/research/extract`): only the institution's own node makes one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import aiohttp

from collections import OrderedDict

from node.app import keys as state_keys
from node.app import queries
from node.app.studies import K_MAX, study_min_k
from node.core.crypto import KEY_SIZE, SIGNATURE_SIZE, Identity, sha256, verify
from node.core.encoding import canonical
from node.records.custodian import CustodianRefusal, load_entry
from node.records.envelope import EnvelopeError, decrypt, unwrap_key
from node.records.protocol import ProtocolError
from node.research.extract import assemble_extract
from node.research.pseudonyms import KeyedPseudonyms, derive_study_key
from node.research.release import CustodianRelease, HeldRecord, ReleaseInvalid, deidentify_for_study, linked_patient
from node.research.replay import StepGuard
from node.chain.tx import Transaction

log = logging.getLogger("medledger.research")
MAX_TYPES = 32
MAX_PREPARED = 256  # prepared releases awaiting their record step (the oldest is forgotten first)
_FIELDS = ("chain_id", "study", "types", "k", "researcher", "coordinator", "timestamp_ms", "nonce", "via")
DELEGATED_DOMAIN = "medledger-extract-delegated-v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractRequest:
    chain_id: str
    study: str
    types: tuple[str, ...]
    k: int
    researcher: bytes
    coordinator: bytes  # the institution whose node the researcher chose to coordinate
    timestamp_ms: int
    nonce: bytes
    signature: bytes = b""
    via: bytes | None = None  # a delegated request: the researcher's institution signed it for them

    @property
    def signer(self) -> bytes:
        """Whose key signs the request: the researcher's, or for a delegated one its institution's."""
        return self.researcher if self.via is None else self.via

    def signing_bytes(self) -> bytes:
        if self.via is not None:
            return canonical([DELEGATED_DOMAIN, self.chain_id, self.study, list(self.types), self.k, self.researcher,
                              self.via, self.coordinator, self.timestamp_ms, self.nonce])
        return canonical(["medledger-extract-v2", self.chain_id, self.study, list(self.types), self.k,
                          self.researcher, self.coordinator, self.timestamp_ms, self.nonce])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"study": self.study, "types": list(self.types), "k": self.k, "researcher": self.researcher,
                               "coordinator": self.coordinator, "timestamp_ms": self.timestamp_ms, "nonce": self.nonce,
                               "signature": self.signature}
        if self.via is not None:
            out["via"] = self.via
        return out

    @classmethod
    def create(cls, researcher: Identity, *, chain_id: str, study: str, types: list[str], k: int, coordinator: bytes,
               timestamp_ms: int) -> "ExtractRequest":
        unsigned = cls(chain_id=chain_id, study=study, types=tuple(types), k=k, researcher=researcher.public_key,
                       coordinator=coordinator, timestamp_ms=timestamp_ms, nonce=os.urandom(16))
        return cls(**{**{f: getattr(unsigned, f) for f in _FIELDS}, "signature": researcher.sign(unsigned.signing_bytes())})

    @classmethod
    def create_delegated(cls, institution: Identity, *, researcher: bytes, chain_id: str, study: str, types: list[str],
                         k: int, timestamp_ms: int) -> "ExtractRequest":
        """A request the researcher's institution signs for them; its own node coordinates it."""
        unsigned = cls(chain_id=chain_id, study=study, types=tuple(types), k=k, researcher=researcher,
                       coordinator=institution.public_key, timestamp_ms=timestamp_ms, nonce=os.urandom(16),
                       via=institution.public_key)
        return cls(**{**{f: getattr(unsigned, f) for f in _FIELDS}, "signature": institution.sign(unsigned.signing_bytes())})

    @classmethod
    def from_dict(cls, doc: Any, chain_id: str) -> "ExtractRequest":
        if not isinstance(doc, dict):
            raise ProtocolError("malformed_request", "an extract request is a map")
        study, types, k = doc.get("study"), doc.get("types"), doc.get("k")
        researcher, ts, nonce, sig = doc.get("researcher"), doc.get("timestamp_ms"), doc.get("nonce"), doc.get("signature")
        coordinator, via = doc.get("coordinator"), doc.get("via")
        if via is not None and not (isinstance(via, bytes) and len(via) == KEY_SIZE):
            raise ProtocolError("malformed_request", "via, when given, is the 32-byte id of the institution that signed "
                                                     "for the researcher")
        if not (isinstance(study, str) and 0 < len(study) <= 64 and isinstance(types, list) and 0 < len(types) <= MAX_TYPES
                and all(isinstance(t, str) and 0 < len(t) <= 64 for t in types)
                and isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= K_MAX
                and isinstance(researcher, bytes) and len(researcher) == KEY_SIZE
                and isinstance(coordinator, bytes) and len(coordinator) == KEY_SIZE
                and isinstance(ts, int) and not isinstance(ts, bool)
                and isinstance(nonce, bytes) and len(nonce) == 16 and isinstance(sig, bytes) and len(sig) == SIGNATURE_SIZE):
            raise ProtocolError("malformed_request", "study, types (1-32), k (1-1000), researcher, coordinator, timestamp_ms, "
                                                     "nonce and signature are required")
        req = cls(chain_id=chain_id, study=study, types=tuple(types), k=k, researcher=researcher, coordinator=coordinator,
                  timestamp_ms=ts, nonce=nonce, signature=sig, via=via)
        if not verify(req.signer, req.signing_bytes(), sig):
            raise ProtocolError("bad_signature", "the extract request is not signed by the researcher" if via is None
                                else "the delegated extract request is not signed by the institution it names (via)")
        return req


def check_delegation(state: Any, *, researcher: bytes, institution: bytes) -> None:
    """Refuse (CustodianRefusal 403) unless `institution` is a registered institution and
    `researcher` a researcher registered under it: only then may it sign an extract for them."""
    found = queries.identity(state, institution)
    if not found or found.get("role") != "institution":
        raise CustodianRefusal(403, "delegate_not_institution",
                               "only a registered institution may sign an extract request for a researcher")
    person = queries.identity(state, researcher)
    if not person or person.get("role") != "researcher":
        raise CustodianRefusal(403, "not_a_researcher", "the identity is not a registered researcher")
    if person.get("institution") != institution.hex():
        raise CustodianRefusal(403, "researcher_of_another_institution",
                               "the researcher is registered under another institution: only their own institution's "
                               "node may ask for an extract on their behalf")


def custodian_api(node: Any, custodian_hex: str) -> str | None:
    """The API URL a custodian (a validator, present or past) publishes: its validator record in
    the state (an added validator's address and API are there), else the genesis file's."""
    api = node.membership.describe(bytes.fromhex(custodian_hex)).get("api")
    return api if isinstance(api, str) and api else None


class ResearchService:
    """Coordinates extracts and prepares/records this custodian's part of them."""

    def __init__(self, node: Any, offchain: Any, secret: bytes | None, *, client_ssl: Any = None) -> None:
        self.node = node
        self.client_ssl = client_ssl  # an ssl.SSLContext when the other nodes' APIs speak https
        self.offchain = offchain
        self.secret = secret
        self.guard = StepGuard()
        # (researcher + nonce) -> (expiry ms, {patient pseudonym: resources released besides the Patient})
        self._prepared: OrderedDict[bytes, tuple[int, dict[str, int]]] = OrderedDict()

    # -- checks shared by both roles ---------------------------------------------------------
    def _study_for(self, req: ExtractRequest) -> dict[str, Any]:
        if self.secret is None:
            raise CustodianRefusal(503, "research_disabled", "this node has no research secret (research.secret in its home)")
        if "Patient" not in req.types:
            raise CustodianRefusal(400, "patient_required", "types must include Patient: k-anonymity is computed on it")
        now = self.node.now_ms()
        study = queries.study(self.node.state_reader(), req.study, now)
        if study is None:
            raise CustodianRefusal(404, "unknown_study", f"no study {req.study!r} on the ledger")
        if not study.get("active"):
            raise CustodianRefusal(403, "study_ended", "the study has ended: nothing more is released")
        if req.researcher.hex() not in study.get("researchers", []):
            raise CustodianRefusal(403, "researcher_not_on_study", "the researcher is not on this study")
        return study

    def _may_coordinate(self, req: ExtractRequest, study: dict[str, Any], coordinator: bytes) -> None:
        """The study's own institution, or a custodian of records of one of its consenting
        patients, may coordinate its extracts; no other institution."""
        if coordinator.hex() == study.get("institution"):
            return
        state = self.node.state_reader()
        for consent in self._consenting(req):
            if state.get(state_keys.PATIENT_CUSTODIAN + bytes.fromhex(consent["patient"]) + coordinator) is not None:
                return
        raise CustodianRefusal(403, "not_study_institution",
                               "only the study's institution or a custodian of its patients' records coordinates its extracts; "
                               "send the request to the study institution's node")

    def _authorise_step(self, step: str, req: ExtractRequest, coordinator: bytes) -> dict[str, Any]:
        """Every step: the coordinator is the one the researcher named and may coordinate the
        study, the researcher is on it; then (only then) freshness and replay."""
        if req.coordinator != coordinator:
            raise CustodianRefusal(403, "coordinator_not_named",
                                   "the researcher named another coordinator in this request; nothing is prepared")
        if req.via is not None:
            if req.via != coordinator:
                raise CustodianRefusal(403, "delegate_not_coordinator",
                                       "a delegated request is coordinated by the institution that signed it, no other")
            check_delegation(self.node.state_reader(), researcher=req.researcher, institution=req.via)
        study = self._study_for(req)
        self._may_coordinate(req, study, coordinator)
        try:
            self.guard.check(coordinator, step.encode() + b"\0" + req.researcher + req.nonce, req.timestamp_ms,
                             self.node.clock_ms())
        except ProtocolError as exc:
            raise CustodianRefusal(429 if exc.code == "busy" else 401, exc.code, exc.message) from None
        return study

    def _remember_prepared(self, req: ExtractRequest, counts: dict[str, int]) -> None:
        now = self.node.clock_ms()
        while self._prepared and (next(iter(self._prepared.values()))[0] < now or len(self._prepared) >= MAX_PREPARED):
            self._prepared.popitem(last=False)  # expired, or the oldest when full: its record step will fail, safely
        self._prepared[req.researcher + req.nonce] = (now + self.guard.window_ms + self.guard.future_ms, counts)

    def _study_key(self, study: str) -> bytes:
        assert self.secret is not None
        return derive_study_key(self.secret, study)

    @staticmethod
    def _reference_year(study: dict[str, Any]) -> int:
        return dt.datetime.fromtimestamp(int(study.get("time_ms", 0)) / 1000, tz=dt.timezone.utc).year

    def _consenting(self, req: ExtractRequest) -> list[dict[str, Any]]:
        return queries.study_consenting_patients(self.node.state_reader(), req.study, self.node.now_ms())

    # -- custodian: prepare ----------------------------------------------------------------------
    def prepare(self, req: ExtractRequest, coordinator: bytes) -> dict[str, Any]:
        """This custodian's de-identified release of its consenting patients' records, for a
        fresh request the researcher addressed to `coordinator`, who countersigned it."""
        study = self._authorise_step("prepare", req, coordinator)
        me = self.node.identity.public_key.hex()
        state = self.node.state_reader()
        records: list[HeldRecord] = []
        for consent in self._consenting(req):
            patient = bytes.fromhex(consent["patient"])
            allowed, denied = set(consent["resource_types"]), set(consent["deny_types"])
            listed = set(consent["record_ids"])
            for rec in queries.patient_records(state, patient):
                rtype = rec.get("resource_type")
                if rec.get("erased") or rec.get("custodian") != me or rtype not in req.types or rtype in denied:
                    continue
                if not ("*" in allowed or rtype in allowed or rec["id"] in listed):
                    continue
                doc = self._open(bytes.fromhex(rec["id"]))
                if doc is None:
                    continue
                # the ledger's record.add names the patient: that link decides, not the resource's ids
                records.append(HeldRecord(patient=consent["patient"], resource=doc, record_id=rec["id"]))
        release = deidentify_for_study(records, study=req.study, study_key=self._study_key(req.study), custodian=me,
                                       reference_year=self._reference_year(study))
        counts: dict[str, int] = {}
        for resource in release.resources:
            owner = linked_patient(resource)
            if owner is not None:
                counts[owner] = counts.get(owner, 0) + (resource.get("resourceType") != "Patient")
        self._remember_prepared(req, counts)
        return release.to_dict()

    def _open(self, record_id: bytes) -> dict[str, Any] | None:
        entry = load_entry(self.offchain, record_id)
        if entry is None:
            return None
        try:
            plaintext = decrypt(entry["ciphertext"], unwrap_key(entry["wrapped"]["custodian"], self.node.identity))
            doc = json.loads(plaintext)
        except (EnvelopeError, ValueError, KeyError):
            log.error("record %s cannot be opened by its custodian", record_id.hex()[:16])
            return None
        return doc if isinstance(doc, dict) else None

    # -- custodian: record -------------------------------------------------------------------
    async def record(self, req: ExtractRequest, coordinator: bytes, included: list[str], release_hash: bytes) -> str | None:
        """Put this custodian's part of a release on the ledger; returns the tx hash. Only what
        this custodian prepared for this request is recorded: of the included patients those it
        released, with the count of resources it released for them."""
        self._authorise_step("record", req, coordinator)
        entry = self._prepared.pop(req.researcher + req.nonce, None)
        if entry is None or entry[0] < self.node.clock_ms():
            raise CustodianRefusal(409, "not_prepared", "this custodian prepared no release for this request (or it expired); "
                                                        "nothing is recorded")
        prepared = entry[1]
        pseudonyms = KeyedPseudonyms(self._study_key(req.study))
        wanted = set(included) & set(prepared)
        resources = sum(prepared[p] for p in wanted)
        me = self.node.identity.public_key.hex()
        state = self.node.state_reader()
        patients = sorted(
            bytes.fromhex(c["patient"]) for c in self._consenting(req)
            if pseudonyms.person(c["patient"]) in wanted
            and any(r.get("custodian") == me for r in queries.patient_records(state, bytes.fromhex(c["patient"])))
        )
        if not patients:
            return None
        body: dict[str, Any] = {"study": req.study, "custodian": self.node.identity.public_key, "researcher": req.researcher,
                                "patients": patients, "resources": max(1, resources), "release_hash": release_hash}
        if req.via is not None:
            body["via"] = req.via  # the audit names the institution that asked for the researcher
        # the node's own nonces (node/runtime/own_nonces.py): other services sign with this key too
        with self.node.own_nonces.lock:
            [nonce] = self.node.own_nonces.take(1)
            tx = Transaction.create(self.node.identity, chain_id=self.node.chain_id, type="research.release", nonce=nonce,
                                    body=body)
            [admission] = self.node.admit([[tx.chain_id, tx.type, tx.sender, tx.nonce, tx.body, tx.signature]])
        if admission.error is not None:
            raise CustodianRefusal(409, "release_refused", f"the release record was refused: {admission.error}: {admission.message}")
        if not await self.node.wait_committed(tx.hash, 30):
            raise CustodianRefusal(504, "release_not_recorded", "the release was not committed in time; nothing is released")
        result = self.node.tx_status(tx.hash).get("result")
        if result != "ok":
            raise CustodianRefusal(409, f"release_refused:{result}", f"the ledger refused the release record: {result}")
        return tx.hash_hex

    # -- coordinator -----------------------------------------------------------------------------
    async def coordinate(self, req: ExtractRequest) -> dict[str, Any]:
        """Run an extract for the researcher: prepare at every custodian, k-anonymity across
        them, record every part on the ledger, and only then answer with the data. A delegated
        request is refused here: only this node's own `extract_on_behalf` makes and runs one."""
        if req.via is not None:
            raise CustodianRefusal(403, "delegated_request_not_accepted",
                                   "a delegated extract request is run only by the node of the institution that signs it")
        return await self._coordinate(req)

    def delegable(self, researcher: bytes, study_id: str) -> dict[str, Any]:
        """The study, if this node's institution may ask for an extract of it on `researcher`'s
        behalf: the researcher is registered under this institution and on the study, the study
        is active and this node has the research secret (CustodianRefusal otherwise)."""
        me = self.node.identity.public_key
        check_delegation(self.node.state_reader(), researcher=researcher, institution=me)
        probe = ExtractRequest(chain_id=self.node.chain_id, study=study_id, types=("Patient",), k=1, researcher=researcher,
                               coordinator=me, timestamp_ms=0, nonce=b"\0" * 16, via=me)
        study = self._study_for(probe)
        self._may_coordinate(probe, study, me)
        return study

    async def extract_on_behalf(self, researcher: bytes, *, study: str, types: list[str], k: int) -> dict[str, Any]:
        """Run an extract for a researcher of this institution who has no key here (a SMART
        token's identity): this node signs a delegated request (`via` itself) and coordinates it."""
        me = self.node.identity
        check_delegation(self.node.state_reader(), researcher=researcher, institution=me.public_key)
        req = ExtractRequest.create_delegated(me, researcher=researcher, chain_id=self.node.chain_id, study=study,
                                              types=types, k=k, timestamp_ms=self.node.clock_ms())
        return await self._coordinate(req)

    async def _coordinate(self, req: ExtractRequest) -> dict[str, Any]:
        me = self.node.identity.public_key
        if req.coordinator != me:
            raise CustodianRefusal(403, "coordinator_not_named",
                                   "the request names another institution as coordinator; send it to that institution's node")
        study = self._authorise_step("extract", req, me)
        k = max(req.k, study_min_k(study))  # the researcher may raise the study's minimum, never lower it
        consenting = self._consenting(req)
        if len(consenting) < k:
            raise CustodianRefusal(409, "too_few_patients",
                                   f"only {len(consenting)} patient(s) consent to {req.study}: fewer than k={k} "
                                   f"(the study's minimum is {study_min_k(study)}), nothing is released")
        state = self.node.state_reader()
        custodians: set[str] = set()
        for c in consenting:
            for rec in queries.patient_records(state, bytes.fromhex(c["patient"])):
                if not rec.get("erased"):
                    custodians.add(rec["custodian"])
        releases: list[CustodianRelease] = []
        for custodian in sorted(custodians):
            doc = await self._call(custodian, "prepare", {"request": req.to_dict()})
            if doc is None:
                continue
            try:
                releases.append(CustodianRelease.from_dict(doc))
            except ReleaseInvalid as exc:
                log.warning("custodian %s sent an invalid release: %s", custodian[:16], exc)
        pseudonyms = KeyedPseudonyms(self._study_key(req.study))
        eligible = {pseudonyms.person(c["patient"]) for c in consenting}
        extract = assemble_extract(releases, study=req.study, k=k, reference_year=self._reference_year(study),
                                   custodians_asked=sorted(custodians), eligible=eligible)
        if extract.refusal:
            raise CustodianRefusal(409, "k_anonymity", extract.refusal)
        included = sorted(json.loads(line)["id"] for line in extract.files.get("Patient.ndjson", b"").splitlines() if line)
        release_hash = bytes.fromhex(extract.report["released_sha256"])
        txs = []
        for part in extract.report["custodians"]:
            if not part.get("accepted") or not part.get("patients_included"):
                continue
            doc = await self._call(part["custodian"], "record", {
                "request": req.to_dict(), "included": included, "resources": part.get("resources_released", 0) or 1,
                "release_hash": release_hash})  # `resources` is informative: the custodian counts its own
            if doc is None or not doc.get("tx"):
                raise CustodianRefusal(502, "release_not_recorded", f"custodian {part['custodian'][:16]} did not record its release; nothing is released")
            txs.append(doc["tx"])
        report = dict(extract.report)
        report.update(k_requested=req.k, k_applied=k, k_min_study=study_min_k(study), ledger_transactions=txs)
        return {"report": report, "files": {name: data.decode("utf-8") for name, data in extract.files.items()}}

    async def _call(self, custodian_hex: str, step: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Run a step at a custodian: locally when it is us, else over its API (countersigned)."""
        if custodian_hex == self.node.identity.id:
            me = self.node.identity.public_key
            req = ExtractRequest.from_dict(payload["request"], self.node.chain_id)
            if step == "prepare":
                try:
                    return self.prepare(req, me)
                except CustodianRefusal as exc:
                    log.warning("this node refused to prepare: %s: %s", exc.code, exc.message)
                    return None
            tx = await self.record(req, me, payload["included"], payload["release_hash"])
            return {"tx": tx}
        api = custodian_api(self.node, custodian_hex)
        if api is None:
            log.warning("custodian %s publishes no API address", custodian_hex[:16])
            return None
        body = canonical(payload)
        envelope = canonical({"payload": body, "coordinator": self.node.identity.public_key,
                              "signature": self.node.identity.sign(sha256(b"medledger-coordinate-v1" + body))})
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                async with session.post(f"{api}/v1/research/{step}", data=envelope, ssl=self.client_ssl or True,
                                        headers={"Content-Type": "application/msgpack"}) as resp:
                    doc = await resp.json(content_type=None)
                    if resp.status != 200:
                        if step == "record":
                            raise CustodianRefusal(502, "release_not_recorded", f"custodian {custodian_hex[:16]}: {doc.get('message')}")
                        error = doc if isinstance(doc, dict) else {}
                        log.warning("custodian %s refused to prepare: %s: %s", custodian_hex[:16],
                                    error.get("error", resp.status), error.get("message", ""))
                        return None
                    return doc if isinstance(doc, dict) else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            if step == "record":
                raise CustodianRefusal(502, "release_not_recorded", f"custodian {custodian_hex[:16]} unreachable: {exc}") from None
            log.warning("custodian %s unreachable: %s", custodian_hex[:16], exc)
            return None

    def check_coordinator(self, envelope: Any) -> tuple[dict[str, Any], bytes]:
        """Unwrap a countersigned step: the payload and the coordinator who signed it (an
        institution; whether it may coordinate this study each step checks)."""
        from node.core.encoding import DecodeError, decode

        if not isinstance(envelope, dict):
            raise CustodianRefusal(400, "malformed_request", "expected a countersigned request")
        body, coord, sig = envelope.get("payload"), envelope.get("coordinator"), envelope.get("signature")
        if not (isinstance(body, bytes) and isinstance(coord, bytes) and isinstance(sig, bytes)):
            raise CustodianRefusal(400, "malformed_request", "payload, coordinator and signature are required")
        if not verify(coord, sha256(b"medledger-coordinate-v1" + body), sig):
            raise CustodianRefusal(401, "bad_signature", "the coordinator's countersignature does not verify")
        found = queries.identity(self.node.state_reader(), coord)
        if not found or found.get("role") != "institution":
            raise CustodianRefusal(403, "not_an_institution", "only an institution's node may coordinate an extract")
        try:
            payload = decode(body, max_bytes=1 << 20)
        except DecodeError as exc:
            raise CustodianRefusal(400, "malformed_msgpack", str(exc)) from None
        if not isinstance(payload, dict):
            raise CustodianRefusal(400, "malformed_request", "payload must be a map")
        return payload, coord
