"""FHIR Bulk Data export of a study's release (node/fhir/bulk.py) through the HTTP API of an
in-process node, and the delegated extract request behind it (node/research/service.py).

The ledger is real (a one-validator chain whose genesis has two institutions: the node's and
another): researchers, studies and tokens are checked on it. The release itself comes from a
stand-in extractor that assembles a real extract (Safe Harbor at three custodians, k-anonymity
across them) from synthetic data with the k it is given, so the files are what a release
holds; the whole path across custodians is tests/integration/test_bulk_export.py. Covered: the
job's lifecycle (kick-off, polling, manifest, files), every NDJSON line valid FHIR R4 and the
Patients k-anonymous; `_type`; refusals (no token, a practitioner, a researcher of another
study, another institution's researcher, bad parameters); files and status to the owner only;
cancel; expiry with an injected clock; the bounds; a refused release; and the delegated
request's signature, its refusal from outside, its coordinator rule and the ledger's `via` rules.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.core.crypto import Identity
from node.core.encoding import canonical
from node.fhir.bulk import EXPORT_TYPES, JOBS_KEY, BulkJobs, BulkLimits, install_bulk
from node.fhir.client_assertion import make_assertion, token_form
from node.fhir.smart import TOKEN_PATH, install_smart
from node.home.config import build_config
from node.records.custodian import CustodianRefusal
from node.research.extract import assemble_extract
from node.research.pseudonyms import KeyedPseudonyms
from node.research.release import CustodianRelease, deidentify_for_study
from node.research.service import ExtractRequest, ResearchService
from node.research.synthetic import generate
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import MemoryStore
from storage.offchain import OffchainStore

from tests.helpers import CHAIN, TxPoster
from tests.unit.research.support import assert_valid_r4, held_records

INSTITUTION = Identity.from_seed(b"\x07" * 32)  # the node's own key: validator and institution
OTHER_INSTITUTION = Identity.from_seed(b"\x08" * 32)  # in the genesis, runs no node here
RESEARCHER = Identity.from_seed(b"\x61" * 32)  # under INSTITUTION, on STUDY
COLLEAGUE = Identity.from_seed(b"\x62" * 32)  # under INSTITUTION, on STUDY too
OTHER_STUDY = Identity.from_seed(b"\x63" * 32)  # under INSTITUTION, on STUDY2 only
FOREIGN = Identity.from_seed(b"\x64" * 32)  # under OTHER_INSTITUTION, on STUDY
DOCTOR = Identity.from_seed(b"\x65" * 32)  # a practitioner under INSTITUTION
STUDY, STUDY2 = "DIAB-2027", "CARD-2027"
SECRET = b"\x33" * 32
YEAR = 2024
PREFER = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


# -- a real release from synthetic data, standing in for the custodians ------------------------
def synthetic_releases() -> list[CustodianRelease]:
    data = generate(60, seed=5, institutions=3)
    consenting = set(random.Random(3).sample(sorted(data.persons), 56))
    releases = []
    for index, resources in sorted(data.institutions.items()):
        persons = {pid: person for person, places in data.persons.items() if person in consenting
                   for institution, pid in places.items() if institution == index}
        releases.append(deidentify_for_study(held_records(resources, persons), study=STUDY, study_key=b"k" * 32,
                                             custodian=f"hospital-{index + 1}", reference_year=YEAR))
    return releases


RELEASES = synthetic_releases()


class StandIn:
    """The extractor a job runs: records each call, waits for `gate`, then answers an extract
    assembled with the k it was given (or raises `fail`)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str, tuple[str, ...], int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.cancelled = 0
        self.fail: Exception | None = None

    async def __call__(self, researcher: bytes, study: str, types: tuple[str, ...], k: int) -> Mapping[str, Any]:
        self.calls.append((researcher, study, types, k))
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail is not None:
            raise self.fail
        releases = [CustodianRelease(study=r.study, custodian=r.custodian, withheld=r.withheld,
                                     resources=tuple(x for x in r.resources if x["resourceType"] in types))
                    for r in RELEASES]
        extract = assemble_extract(releases, study=study, k=k, reference_year=YEAR)
        assert extract.refusal is None, extract.refusal
        report = {**extract.report, "k_requested": k, "k_applied": k, "ledger_transactions": ["ab" * 32]}
        return {"report": report, "files": {name: data.decode() for name, data in extract.files.items()}}


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


class World(TxPoster):
    def __init__(self, client: TestClient, node: Node, service: ResearchService, extractor: StandIn, clock: Clock) -> None:
        super().__init__(client)
        self.node, self.service, self.extractor, self.clock = node, service, extractor, clock
        self.jobs: BulkJobs = client.server.app[JOBS_KEY]
        self.tokens: dict[bytes, str] = {}

    async def setup(self) -> None:
        for who, role, institution in ((RESEARCHER, "researcher", INSTITUTION), (COLLEAGUE, "researcher", INSTITUTION),
                                       (OTHER_STUDY, "researcher", INSTITUTION), (FOREIGN, "researcher", OTHER_INSTITUTION),
                                       (DOCTOR, "practitioner", INSTITUTION)):
            body = {"role": role, "institution": institution.public_key,
                    "attestation": attest(institution, chain_id=CHAIN, registrant=who.public_key, role=role)}
            assert (await self.tx(who, "identity.register", body))["result"] == "ok"
        for study in (STUDY, STUDY2):
            got = await self.tx(INSTITUTION, "study.register", {"study": study, "title": "t", "ethics_ref": "IRB-1",
                                                                "until_ms": 4_000_000_000_000, "min_k": 5})
            assert got["result"] == "ok", got
        for who, study in ((RESEARCHER, STUDY), (COLLEAGUE, STUDY), (FOREIGN, STUDY), (OTHER_STUDY, STUDY2)):
            got = await self.tx(INSTITUTION, "study.add_researcher", {"study": study, "researcher": who.public_key})
            assert got["result"] == "ok", got

    async def token(self, who: Identity, scope: str = "system/*.read", purpose: str = "HRESCH") -> str:
        url = str(self.client.make_url(TOKEN_PATH))
        form = token_form(make_assertion(who, url, self.node.clock_ms()), scope, purpose)
        resp = await self.client.post(TOKEN_PATH, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])

    async def auth(self, who: Identity) -> dict[str, str]:
        if who.public_key not in self.tokens:
            self.tokens[who.public_key] = await self.token(who)
        return {"Authorization": f"Bearer {self.tokens[who.public_key]}"}

    async def kickoff(self, who: Identity, query: str = "", study: str = STUDY,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        resp = await self.client.get(f"/fhir/R4/Group/{study}/$export{query}",
                                     headers={**PREFER, **(headers if headers is not None else {}), **await self.auth(who)})
        return resp.status, json.loads(await resp.text() or "null"), resp.headers

    async def get(self, who: Identity, url: str) -> tuple[int, bytes, Any]:
        resp = await self.client.get(self.path(url), headers=await self.auth(who))
        return resp.status, await resp.read(), resp.headers

    async def delete(self, who: Identity, url: str) -> int:
        resp = await self.client.delete(self.path(url), headers=await self.auth(who))
        return resp.status

    def path(self, url: str) -> str:
        base = str(self.client.make_url(""))
        assert url.startswith(base.rstrip("/")), (url, base)  # the URLs the server gives are absolute
        return url[len(base.rstrip("/")):]

    async def started(self, who: Identity = RESEARCHER, query: str = "") -> str:
        status, body, headers = await self.kickoff(who, query)
        assert status == 202, body
        return str(headers["Content-Location"])

    async def finished(self, status_url: str) -> None:
        """Wait (at most 10 s) until the job behind `status_url` is no longer running."""
        job = self.jobs._jobs[status_url.rsplit("/", 1)[1]]
        if job.task is not None:
            await asyncio.wait_for(asyncio.shield(job.task), 10)
        assert job.state != "running"


@asynccontextmanager
async def running(tmp_path: Path, limits: BulkLimits | None = None) -> AsyncIterator[World]:
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    genesis = Genesis(chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
                      validators=(ValidatorInfo(id=INSTITUTION.public_key, name="v0", address="127.0.0.1:0"),),
                      institutions=(InstitutionInfo(id=INSTITUTION.public_key, name="v0"),
                                    InstitutionInfo(id=OTHER_INSTITUTION.public_key, name="other")))
    node = Node(config=cfg, genesis=genesis, identity=INSTITUTION, store=ChainStore(MemoryStore()))
    service = ResearchService(node, OffchainStore(MemoryStore()), SECRET)
    extractor, clock = StandIn(), Clock()
    app = make_app(node, research=service,
                   mounts=[install_smart, partial(install_bulk, limits=limits, clock=clock, extract=extractor)])
    client = TestClient(TestServer(app))
    await client.start_server()
    node.start()
    try:
        world = World(client, node, service, extractor, clock)
        await world.setup()
        yield world
    finally:
        node.stop()
        await client.close()
        node.store.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running(tmp_path) as w:
        yield w


def is_outcome(status: int, body: Any, want: int, code: str) -> bool:
    assert status == want, body
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"][0]["details"]["coding"][0]["code"] == code, body
    return True


def k_anonymous(patients: list[dict[str, Any]], k: int) -> bool:
    groups = Counter(json.dumps({n: v for n, v in p.items() if n != "id"}, sort_keys=True) for p in patients)
    assert groups and min(groups.values()) >= k, groups
    return True


# -- the lifecycle --------------------------------------------------------------------------------
async def test_kickoff_poll_manifest_and_files(world):
    world.extractor.gate.clear()
    status_url = await world.started(query="?_type=Patient,Observation,Condition&k=6")
    assert "/fhir/R4/$export-status/" in status_url
    status, body, headers = await world.get(RESEARCHER, status_url)
    assert status == 202 and headers["X-Progress"] and headers["Retry-After"] == "2", body
    world.extractor.gate.set()
    await world.finished(status_url)
    assert world.extractor.calls == [(RESEARCHER.public_key, STUDY, ("Condition", "Observation", "Patient"), 6)]

    status, raw, headers = await world.get(RESEARCHER, status_url)
    assert status == 200 and headers["Content-Type"].startswith("application/json") and "Expires" in headers
    manifest = json.loads(raw)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"].endswith(f"/fhir/R4/Group/{STUDY}/$export?_type=Patient,Observation,Condition&k=6")
    assert manifest["transactionTime"] == "1970-01-01T00:16:40.000Z"  # the injected clock at kick-off
    assert manifest["extension"]["medledger"]["k_applied"] == 6
    assert sorted(o["type"] for o in manifest["output"]) == ["Condition", "Observation", "Patient"]
    for output in manifest["output"]:
        status, data, headers = await world.get(RESEARCHER, output["url"])
        assert status == 200 and headers["Content-Type"] == "application/fhir+ndjson; charset=utf-8"
        lines = [json.loads(line) for line in data.decode().splitlines()]
        assert len(lines) == output["count"] > 0
        for resource in lines:
            assert resource["resourceType"] == output["type"]
            assert_valid_r4(resource)  # fhir.resources
        if output["type"] == "Patient":
            assert k_anonymous(lines, 6)
    assert world.jobs.bytes_held > 0


async def test_type_filters_what_is_served_while_patient_is_always_extracted(world):
    status_url = await world.started(query="?_type=Observation")
    await world.finished(status_url)
    assert world.extractor.calls[0][2] == ("Observation", "Patient")
    manifest = json.loads((await world.get(RESEARCHER, status_url))[1])
    assert [o["type"] for o in manifest["output"]] == ["Observation"]
    patient_url = manifest["output"][0]["url"].replace("Observation.ndjson", "Patient.ndjson")
    status, body, _ = await world.get(RESEARCHER, patient_url)
    assert is_outcome(status, json.loads(body), 404, "unknown_export_file")


async def test_without_type_every_exportable_type_the_token_reads(world):
    status_url = await world.started()
    await world.finished(status_url)
    assert world.extractor.calls[0][2] == EXPORT_TYPES and world.extractor.calls[0][3] == 5  # k: the network floor


async def test_a_refused_release_is_the_status_answer(world):
    world.extractor.fail = CustodianRefusal(409, "k_anonymity", "only 3 of 9 eligible patient(s) would remain")
    status_url = await world.started()
    await world.finished(status_url)
    status, body, headers = await world.get(RESEARCHER, status_url)
    assert is_outcome(status, json.loads(body), 409, "k_anonymity")
    assert headers["Content-Type"].startswith("application/fhir+json")


# -- who may start, who may read -------------------------------------------------------------------
async def test_refusals_of_who_asks(world):
    resp = await world.client.get(f"/fhir/R4/Group/{STUDY}/$export", headers=PREFER)
    assert is_outcome(resp.status, json.loads(await resp.text()), 401, "token_required")
    doctor = await world.token(DOCTOR, "system/*.read", "TREAT")
    resp = await world.client.get(f"/fhir/R4/Group/{STUDY}/$export", headers={**PREFER, "Authorization": f"Bearer {doctor}"})
    assert is_outcome(resp.status, json.loads(await resp.text()), 403, "not_a_researcher")
    assert is_outcome(*(await world.kickoff(OTHER_STUDY))[:2], 403, "researcher_not_on_study")
    assert is_outcome(*(await world.kickoff(FOREIGN))[:2], 403, "researcher_of_another_institution")
    assert is_outcome(*(await world.kickoff(RESEARCHER, study="NOPE-1"))[:2], 404, "unknown_study")
    narrow = await world.token(RESEARCHER, "system/Observation.rs")
    resp = await world.client.get(f"/fhir/R4/Group/{STUDY}/$export?_type=Condition",
                                  headers={**PREFER, "Authorization": f"Bearer {narrow}"})
    assert is_outcome(resp.status, json.loads(await resp.text()), 403, "insufficient_scope")
    assert world.extractor.calls == [] and len(world.jobs) == 0


async def test_the_ledger_refuses_another_institutions_researcher_even_with_a_forged_principal(world):
    with pytest.raises(CustodianRefusal) as refused:
        world.service.delegable(FOREIGN.public_key, STUDY)
    assert refused.value.code == "researcher_of_another_institution"
    with pytest.raises(CustodianRefusal) as refused:
        world.service.delegable(DOCTOR.public_key, STUDY)
    assert refused.value.code == "not_a_researcher"
    assert world.service.delegable(RESEARCHER.public_key, STUDY)["id"] == STUDY


@pytest.mark.parametrize("query, headers, status, code", [
    ("", {"Prefer": ""}, 400, "respond_async_required"),
    ("", {"Accept": "application/fhir+xml"}, 400, "unsupported_accept"),
    ("?_since=2024-01-01T00:00:00Z", None, 400, "since_not_supported"),
    ("?_typeFilter=Observation%3Fcode%3D1", None, 400, "unsupported_parameter"),
    ("?patient=Patient/1", None, 400, "unsupported_parameter"),
    ("?_type=Practitioner", None, 400, "type_not_exportable"),
    ("?_type=Medication", None, 400, "type_not_exportable"),
    ("?_outputFormat=application/fhir+json", None, 400, "unsupported_output_format"),
    ("?k=0", None, 400, "invalid_k"),
    ("?k=1&k=9", None, 400, "unsupported_parameter"),
])
async def test_refused_parameters(world, query, headers, status, code):
    got, body, _ = await world.kickoff(RESEARCHER, query, headers=headers)
    assert is_outcome(got, body, status, code)
    assert len(world.jobs) == 0


async def test_status_and_files_only_to_the_identity_that_started_the_job(world):
    status_url = await world.started()
    await world.finished(status_url)
    manifest = json.loads((await world.get(RESEARCHER, status_url))[1])
    file_url = manifest["output"][0]["url"]
    for url in (status_url, file_url):
        status, body, _ = await world.get(COLLEAGUE, url)
        assert is_outcome(status, json.loads(body), 404, "unknown_export")
    assert await world.delete(COLLEAGUE, status_url) == 404
    resp = await world.client.get(world.path(file_url))
    assert resp.status == 401
    # a new token of the same identity reads it
    fresh = await world.token(RESEARCHER)
    resp = await world.client.get(world.path(file_url), headers={"Authorization": f"Bearer {fresh}"})
    assert resp.status == 200


async def test_delete_cancels_a_running_job_and_removes_it(world):
    world.extractor.gate.clear()
    status_url = await world.started()
    job = world.jobs._jobs[status_url.rsplit("/", 1)[1]]
    task = job.task
    assert task is not None
    assert await world.delete(RESEARCHER, status_url) == 202
    await asyncio.wait([task], timeout=5)
    assert task.cancelled() and world.extractor.cancelled == 1
    assert (await world.get(RESEARCHER, status_url))[0] == 404 and len(world.jobs) == 0


async def test_delete_drops_a_finished_jobs_files(world):
    status_url = await world.started()
    await world.finished(status_url)
    manifest = json.loads((await world.get(RESEARCHER, status_url))[1])
    assert await world.delete(RESEARCHER, status_url) == 202
    assert (await world.get(RESEARCHER, manifest["output"][0]["url"]))[0] == 404
    assert world.jobs.bytes_held == 0 and len(world.jobs) == 0


async def test_a_finished_job_expires_after_its_ttl(tmp_path):
    async with running(tmp_path, BulkLimits(ttl_ms=60_000)) as world:
        status_url = await world.started()
        await world.finished(status_url)
        world.clock.ms += 59_999
        assert (await world.get(RESEARCHER, status_url))[0] == 200
        world.clock.ms += 1
        assert world.jobs.sweep() == 1
        assert (await world.get(RESEARCHER, status_url))[0] == 404
        assert len(world.jobs) == 0 and world.jobs.bytes_held == 0


# -- bounds -----------------------------------------------------------------------------------------
async def test_jobs_are_bounded_per_researcher_and_in_total(tmp_path):
    async with running(tmp_path, BulkLimits(max_jobs=3, max_jobs_per_identity=2)) as world:
        world.extractor.gate.clear()
        first = await world.started()
        await world.started()
        assert is_outcome(*(await world.kickoff(RESEARCHER))[:2], 429, "too_many_exports")
        await world.started(COLLEAGUE)
        assert is_outcome(*(await world.kickoff(COLLEAGUE))[:2], 429, "export_capacity")
        assert await world.delete(RESEARCHER, first) == 202  # a slot is free again
        await world.started(COLLEAGUE)
        world.extractor.gate.set()


async def test_extracts_running_at_once_are_bounded(tmp_path):
    async with running(tmp_path, BulkLimits(max_running=1)) as world:
        world.extractor.gate.clear()
        first = await world.started()
        assert is_outcome(*(await world.kickoff(COLLEAGUE))[:2], 429, "export_capacity")
        world.extractor.gate.set()
        await world.finished(first)
        await world.started(COLLEAGUE)  # finished jobs do not count as running


async def test_files_are_bounded_in_bytes(tmp_path):
    async with running(tmp_path, BulkLimits(max_bytes=10_000)) as world:
        status_url = await world.started()
        await world.finished(status_url)
        status, body, _ = await world.get(RESEARCHER, status_url)
        assert is_outcome(status, json.loads(body), 413, "export_too_large")
        assert world.jobs.bytes_held == 0


# -- the delegated request ---------------------------------------------------------------------------
def delegated(**kw: Any) -> ExtractRequest:
    args: dict[str, Any] = dict(researcher=RESEARCHER.public_key, chain_id=CHAIN, study=STUDY, types=["Patient"], k=5,
                                timestamp_ms=1_700_000_000_000)
    args.update(kw)
    return ExtractRequest.create_delegated(INSTITUTION, **args)


def test_a_delegated_request_is_signed_by_the_institution_and_round_trips():
    req = delegated()
    assert req.via == req.coordinator == INSTITUTION.public_key and req.signer == INSTITUTION.public_key
    assert ExtractRequest.from_dict(req.to_dict(), CHAIN) == req
    for name, value in (("researcher", COLLEAGUE.public_key), ("via", OTHER_INSTITUTION.public_key), ("k", 6)):
        with pytest.raises(Exception) as refused:
            ExtractRequest.from_dict({**req.to_dict(), name: value}, CHAIN)
        assert getattr(refused.value, "code", None) == "bad_signature", name
    without_via = {n: v for n, v in req.to_dict().items() if n != "via"}  # as the researcher's own: not their signature
    with pytest.raises(Exception) as refused:
        ExtractRequest.from_dict(without_via, CHAIN)
    assert getattr(refused.value, "code", None) == "bad_signature"


def test_the_researchers_own_request_is_unchanged():
    own = ExtractRequest.create(RESEARCHER, chain_id=CHAIN, study=STUDY, types=["Patient"], k=5,
                                coordinator=INSTITUTION.public_key, timestamp_ms=1)
    assert "via" not in own.to_dict() and own.signer == RESEARCHER.public_key
    assert own.signing_bytes() == canonical(["medledger-extract-v2", CHAIN, STUDY, ["Patient"], 5, RESEARCHER.public_key,
                                             INSTITUTION.public_key, 1, own.nonce])
    assert ExtractRequest.from_dict(own.to_dict(), CHAIN) == own


async def test_a_delegated_request_is_not_accepted_from_outside(world):
    with pytest.raises(CustodianRefusal) as refused:
        await world.service.coordinate(delegated(timestamp_ms=world.node.clock_ms()))
    assert refused.value.code == "delegated_request_not_accepted"


async def test_a_custodian_accepts_a_delegated_request_only_from_the_institution_that_signed_it(world):
    now = world.node.clock_ms()
    req = delegated(timestamp_ms=now)
    # coordinated by someone else than `via`: refused before anything is prepared
    forged = ExtractRequest.from_dict({**req.to_dict(), "coordinator": OTHER_INSTITUTION.public_key,
                                       "signature": INSTITUTION.sign(ExtractRequest(**{
                                           **{f: getattr(req, f) for f in ("chain_id", "study", "types", "k", "researcher",
                                                                           "timestamp_ms", "nonce", "via")},
                                           "coordinator": OTHER_INSTITUTION.public_key}).signing_bytes())}, CHAIN)
    with pytest.raises(CustodianRefusal) as refused:
        world.service.prepare(forged, OTHER_INSTITUTION.public_key)
    assert refused.value.code == "delegate_not_coordinator"
    # for a researcher of another institution: refused
    foreign = delegated(researcher=FOREIGN.public_key, timestamp_ms=now)
    with pytest.raises(CustodianRefusal) as refused:
        world.service.prepare(foreign, INSTITUTION.public_key)
    assert refused.value.code == "researcher_of_another_institution"
    # the institution's own researcher: prepared like the researcher's own request (no records here)
    release = world.service.prepare(req, INSTITUTION.public_key)
    assert release["study"] == STUDY and release["resources"] == []


async def test_the_ledger_checks_via_on_a_release(world):
    body = {"study": STUDY, "custodian": INSTITUTION.public_key, "researcher": FOREIGN.public_key,
            "patients": [b"\x01" * 32], "resources": 1, "release_hash": b"\x02" * 32, "via": INSTITUTION.public_key}
    got = await world.tx(INSTITUTION, "research.release", body)
    assert got["result"] == "researcher_not_delegated", got
    got = await world.tx(INSTITUTION, "research.release", {**body, "researcher": RESEARCHER.public_key,
                                                           "via": DOCTOR.public_key})
    assert got["result"] == "via_not_institution", got
    got = await world.tx(INSTITUTION, "research.release", {**body, "researcher": RESEARCHER.public_key})
    assert got["result"] == "patient_not_held", got  # past the via checks: the usual rules follow
