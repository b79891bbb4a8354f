"""FHIR Bulk Data export of a study's research release (Bulk Data Access IG 2.0, Group level).

    GET    /fhir/R4/Group/<study>/$export             kick-off (Prefer: respond-async): 202, Content-Location
    GET    /fhir/R4/$export-status/<job>              202 + X-Progress while running; 200 + the manifest when done
    DELETE /fhir/R4/$export-status/<job>              cancel the job and drop its files: 202
    GET    /fhir/R4/$export-file/<job>/<Type>.ndjson  one file of the manifest (application/fhir+ndjson)

The export is the release `medledger research extract` makes (node/research/service.py): the
study's consenting patients' records, de-identified by Safe Harbor at each custodian and made
k-anonymous across them, every custodian's part recorded on the ledger (`research.release`)
before anything is served. The researcher authenticates with a SMART token (role researcher,
purpose research from HRESCH, scopes covering the exported types); this node holds no key of
theirs, so its institution signs a delegated extract request for them
(`ResearchService.extract_on_behalf`), allowed only for a researcher registered under this
institution and on the study, the study active. Every refusal is an OperationOutcome.

Kick-off parameters: `_type` (comma-separated; each a type a release can hold, `EXPORT_TYPES`;
default: every such type the token's scopes read), `_outputFormat` (NDJSON only) and `k` (a
MedLedger extension: the k-anonymity asked for; the study's minimum applies if larger). Patient
is always extracted (k-anonymity is computed on it) but only served if asked for. `_since` is
refused (`since_not_supported`: a release is the consenting patients' records as they are now,
not changes since a time), and so is any other parameter (`unsupported_parameter`).

Jobs live in memory only (`BulkJobs`), never on disk: at most `max_jobs` in all and
`max_jobs_per_identity` per researcher (running or finished and not yet expired), at most
`max_running` extracts running at once, the files of
all jobs together at most `max_bytes`; a finished job and its files are dropped `ttl_ms` after
it finished, or at once on DELETE. A job's status and files are served only to the identity that
started it (any other token gets 404, as for a job that does not exist); the URLs hold a random
128-bit job id.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from node.api.common import NODE_KEY, RESEARCH_KEY
from node.app.fhir_export import instant
from node.app.fields import check_study_id
from node.app.roles import RESEARCHER
from node.app.studies import K_FLOOR, K_MAX
from node.chain.tx import TxRejected
from node.core.errors import CodedError
from node.fhir.bearer import require_principal, require_scope
from node.fhir.catalog import BASE_PATH, FHIR_JSON, TYPES
from node.fhir.outcome import FhirError, operation_outcome, outcome_of
from node.fhir.principal import Principal
from node.fhir.smart import public_base
from node.research.deid_rules import RELEASED_TYPES

log = logging.getLogger("medledger.fhir.bulk")

EXPORT_PATH = BASE_PATH + "/Group/{study}/$export"
STATUS_PATH = BASE_PATH + "/$export-status/{job}"
FILE_PATH = BASE_PATH + "/$export-file/{job}/{name}"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
EXPORT_TYPES: tuple[str, ...] = tuple(sorted(RELEASED_TYPES | set(TYPES)))
"""The types a release can hold: those with a Safe Harbor rule of their own and the record types
this server holds (the others go through the default rule, and are withheld if that leaves them
invalid)."""
KICKOFF_PARAMS = ("_type", "_outputFormat", "k")
MAX_TYPES = 32
RETRY_AFTER_S = 2

Extractor = Callable[[bytes, str, tuple[str, ...], int], Awaitable[Mapping[str, Any]]]
"""Runs a release: (researcher, study, types, k) -> {"report": ..., "files": {"<Type>.ndjson": text}}."""
Clock = Callable[[], int]


@dataclass(frozen=True, slots=True)
class BulkLimits:
    """The bounds of the export jobs this node keeps in memory."""

    max_jobs: int = 32  # held: running, or finished and not expired
    max_jobs_per_identity: int = 2
    max_running: int = 4  # extracts coordinated at once (each asks every custodian)
    max_bytes: int = 256 << 20
    ttl_ms: int = 3_600_000

    def __post_init__(self) -> None:
        if min(self.max_jobs, self.max_jobs_per_identity, self.max_running, self.max_bytes, self.ttl_ms) < 1:
            raise ValueError("the bulk export bounds must be at least 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    """A checked kick-off: who asked, for which study, the types to serve and the k asked for."""

    owner: bytes
    study: str
    types: tuple[str, ...]  # served; the extract also takes Patient
    k: int
    request_url: str
    base_url: str  # where this node's FHIR paths are, as the client reached it

    @property
    def extract_types(self) -> tuple[str, ...]:
        return tuple(sorted({"Patient", *self.types}))


@dataclass(slots=True, kw_only=True)
class Job:
    """One export: running, then done (its files) or failed (its refusal), until it expires."""

    id: str
    request: ExportRequest
    started_ms: int
    state: str = "running"  # running | done | failed
    finished_ms: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    error: CodedError | None = None
    task: "asyncio.Task[None] | None" = None

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    def manifest(self) -> dict[str, Any]:
        """The Bulk Data completion manifest."""
        base = self.request.base_url + BASE_PATH + f"/$export-file/{self.id}/"
        report = dict(self.report)
        return {
            "transactionTime": instant(self.started_ms),
            "request": self.request.request_url,
            "requiresAccessToken": True,
            "output": [{"type": name[:-len(".ndjson")], "url": base + name, "count": self.counts[name]}
                       for name in sorted(self.files)],
            "error": [],
            "extension": {"medledger": {
                "study": self.request.study, "k_requested": report.get("k_requested"),
                "k_applied": report.get("k_applied"), "k_reached": report.get("k_reached"),
                "patients_included": report.get("patients_included"),
                "ledger_transactions": report.get("ledger_transactions", []),
                "released_sha256": report.get("released_sha256"), "report": report}},
        }


class BulkJobs:
    """The export jobs of this node, in memory and bounded (see the module's docstring).
    `clock` gives milliseconds (the node's clock; a test's own); `extract`, when given, runs
    the releases instead of the research service (a test's)."""

    def __init__(self, limits: BulkLimits, clock: Clock, extract: Extractor | None = None) -> None:
        self.limits = limits
        self.clock = clock
        self.extract = extract  # None: the node's research service runs each release
        self._jobs: dict[str, Job] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def bytes_held(self) -> int:
        return sum(job.size for job in self._jobs.values())

    def sweep(self) -> int:
        """Drop the finished jobs whose time is up; how many were dropped."""
        now = self.clock()
        expired = [job.id for job in self._jobs.values()
                   if job.finished_ms is not None and now >= job.finished_ms + self.limits.ttl_ms]
        for job_id in expired:
            self._drop(job_id)
        return len(expired)

    def start(self, request: ExportRequest, extract: Extractor) -> Job:
        """A new running job of `request` (FhirError 429 when a bound is reached)."""
        self.sweep()
        held = sum(1 for job in self._jobs.values() if job.request.owner == request.owner)
        if held >= self.limits.max_jobs_per_identity:
            raise FhirError(429, "too_many_exports", f"you hold {held} export jobs (at most "
                            f"{self.limits.max_jobs_per_identity}): fetch their files and DELETE their status URLs, "
                            "or wait until they expire", issue="throttled")
        running = sum(1 for job in self._jobs.values() if job.state == "running")
        if len(self._jobs) >= self.limits.max_jobs or running >= self.limits.max_running:
            raise FhirError(429, "export_capacity", "this node holds or runs as many export jobs as it may; retry later",
                            issue="throttled")
        job = Job(id=secrets.token_hex(16), request=request, started_ms=self.clock())
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job, extract))
        return job

    async def _run(self, job: Job, extract: Extractor) -> None:
        req = job.request
        try:
            doc = await extract(req.owner, req.study, req.extract_types, req.k)
            files, counts = _served_files(doc, req.types)
            room = self.limits.max_bytes - self.bytes_held
            size = sum(len(data) for data in files.values())
            if size > room:
                raise FhirError(413, "export_too_large", f"the export is {size} bytes, more than this node keeps in "
                                f"memory now ({max(room, 0)} bytes free of {self.limits.max_bytes}); ask for fewer "
                                "types or retry when other exports are fetched", issue="too-costly")
            job.files, job.counts, job.report = files, counts, doc.get("report") or {}
            job.state = "done"
        except asyncio.CancelledError:
            raise
        except CodedError as exc:
            job.error, job.state = exc, "failed"
        except Exception:  # our own bug: the job fails, the node goes on
            log.exception("export job %s failed", job.id[:8])
            job.error, job.state = FhirError(500, "export_failed", "the export failed on this node; see its log"), "failed"
        finally:
            if job.state != "running":
                job.finished_ms = self.clock()
            job.task = None

    def get(self, job_id: str, identity: bytes) -> Job:
        """The job, if `identity` started it (404 otherwise, as for a job that does not exist)."""
        self.sweep()
        job = self._jobs.get(job_id)
        if job is None or job.request.owner != identity:
            raise FhirError(404, "unknown_export", "no such export job (it may have expired or been deleted)")
        return job

    def cancel(self, job_id: str, identity: bytes) -> None:
        """Cancel a running job or drop a finished one, and its files."""
        self.get(job_id, identity)
        self._drop(job_id)

    def _drop(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        if job.task is not None:
            job.task.cancel()
        job.files.clear()

    async def close(self) -> None:
        """Cancel every running job and drop every job (the node stops)."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for job_id in list(self._jobs):
            self._drop(job_id)
        await asyncio.gather(*tasks, return_exceptions=True)


def _served_files(doc: Mapping[str, Any], types: tuple[str, ...]) -> tuple[dict[str, bytes], dict[str, int]]:
    """The files of an extract's answer that were asked for, as bytes, and their line counts."""
    files = doc.get("files")
    if not isinstance(files, Mapping):
        raise FhirError(502, "export_failed", "the extract answered without files")
    out: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    for name, text in files.items():
        if not (isinstance(name, str) and name.endswith(".ndjson") and isinstance(text, str)):
            raise FhirError(502, "export_failed", "the extract answered with an unexpected file")
        if name[:-len(".ndjson")] in types:
            out[name] = text.encode("utf-8")
            counts[name] = out[name].count(b"\n")
    return out, counts


# -- the kick-off --------------------------------------------------------------------------------
def _prefers_async(header: str) -> bool:
    return any(part.split(";")[0].strip().lower() == "respond-async" for part in header.split(","))


def _accepts_json(header: str | None) -> bool:
    if header is None:
        return True
    kinds = [part.split(";")[0].strip().lower() for part in header.split(",")]
    return any(kind in ("*/*", "application/*", "application/json", FHIR_JSON) for kind in kinds)


def parse_kickoff(request: web.Request, principal: Principal) -> tuple[str, tuple[str, ...], int]:
    """The study, the types to serve and the k of a kick-off (FhirError 400/403 otherwise)."""
    if not _prefers_async(request.headers.get("Prefer", "")):
        raise FhirError(400, "respond_async_required", "a bulk export kick-off needs the header 'Prefer: respond-async'")
    if not _accepts_json(request.headers.get("Accept")):
        raise FhirError(400, "unsupported_accept", f"kick-off answers are {FHIR_JSON}: send 'Accept: {FHIR_JSON}'")
    study = request.match_info["study"]
    try:
        check_study_id(study)
    except TxRejected as exc:
        raise FhirError(400, "invalid_study_id", f"Group/<study>: {exc.message}") from None
    query = request.query
    if "_since" in query:
        raise FhirError(400, "since_not_supported", "_since is not supported: a release holds the consenting patients' "
                                                    "records as they are now, de-identified to the year; export again "
                                                    "without _since")
    unknown = sorted(name for name in query if name not in KICKOFF_PARAMS)
    if unknown:
        raise FhirError(400, "unsupported_parameter", f"unsupported parameter {unknown[0][:40]!r}: a kick-off takes "
                                                      f"{', '.join(KICKOFF_PARAMS)} (and no _typeFilter, _elements, "
                                                      "patient or includeAssociatedData)", issue="not-supported")
    for name in ("_outputFormat", "k"):
        if len(query.getall(name, [])) > 1:
            raise FhirError(400, "unsupported_parameter", f"{name} is given more than once")
    output_format = query.get("_outputFormat", NDJSON)
    if output_format not in OUTPUT_FORMATS:
        raise FhirError(400, "unsupported_output_format", f"_outputFormat must be one of {', '.join(OUTPUT_FORMATS)}")
    k_text = query.get("k", str(K_FLOOR))
    if not (k_text.isascii() and k_text.isdigit() and 1 <= int(k_text) <= K_MAX):
        raise FhirError(400, "invalid_k", f"k must be a whole number from 1 to {K_MAX} (the study's minimum applies "
                                          "if larger)")
    asked = [t.strip() for value in query.getall("_type", []) for t in value.split(",") if t.strip()]
    if len(asked) > MAX_TYPES:
        raise FhirError(400, "type_not_exportable", f"_type lists at most {MAX_TYPES} types")
    for name in asked:
        if name not in EXPORT_TYPES:
            raise FhirError(400, "type_not_exportable", f"{name[:40]!r} is not a type a research release holds: "
                                                        f"one of {', '.join(EXPORT_TYPES)}")
        require_scope(principal, name, "r")
    types = tuple(sorted(set(asked))) if asked else tuple(t for t in EXPORT_TYPES if principal.may(t, "r"))
    if not types:
        require_scope(principal, "Patient", "r")  # refuses: the token reads none of them
    return study, types, int(k_text)


def check_requester(principal: Principal) -> None:
    """Only a researcher's token with purpose research starts an export (403 otherwise)."""
    if principal.role != RESEARCHER:
        raise FhirError(403, "not_a_researcher", "a bulk export of a study is for the study's researchers: "
                                                 "use a researcher's token")
    if principal.purpose != "research":
        raise FhirError(403, "purpose_not_research", "a study's export is for research: ask for the token with "
                                                     "purpose_of_use=HRESCH")


# -- the routes ----------------------------------------------------------------------------------
JOBS_KEY = web.AppKey("fhir_bulk_jobs", BulkJobs)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def outcome_response(err: CodedError) -> web.Response:
    response = web.json_response(outcome_of(err), status=err.status, content_type=FHIR_JSON)
    if err.status == 429:
        response.headers["Retry-After"] = "60"
    return response


def fhir_errors(handler: Handler) -> Handler:
    """Every CodedError of a handler as an OperationOutcome with its status (the bearer check's
    refusals are HTTPExceptions that carry theirs already)."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CodedError as exc:
            return outcome_response(exc)
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _service_extractor(request: web.Request) -> Extractor:
    found = request.app[JOBS_KEY].extract
    if found is not None:
        return found
    service = request.app.get(RESEARCH_KEY)
    if service is None:
        raise FhirError(503, "research_disabled", "this node runs no research service")

    async def run(researcher: bytes, study: str, types: tuple[str, ...], k: int) -> Mapping[str, Any]:
        return await service.extract_on_behalf(researcher, study=study, types=list(types), k=k)

    return run


def _check_delegable(request: web.Request, principal: Principal, study: str) -> None:
    """The ledger's word, before any job: this node's institution may ask for the researcher."""
    node = request.app[NODE_KEY]
    if principal.institution != node.identity.public_key:
        raise FhirError(403, "researcher_of_another_institution",
                        "this node exports only for researchers registered under its own institution: ask your "
                        "institution's node")
    service = request.app.get(RESEARCH_KEY)
    if service is None:
        raise FhirError(503, "research_disabled", "this node runs no research service")
    service.delegable(principal.identity, study)  # CustodianRefusal: not on the study, study ended...


def outcome_of_info(code: str, message: str) -> dict[str, Any]:
    """An OperationOutcome that only informs (the body of a 202)."""
    return operation_outcome(code, message, issue="informational", severity="information")


@fhir_errors
async def get_export(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/Group/<study>/$export: start an export job (202, Content-Location)."""
    principal = require_principal(request)
    check_requester(principal)
    study, types, k = parse_kickoff(request, principal)
    _check_delegable(request, principal, study)
    node = request.app[NODE_KEY]
    base = public_base(request, node.config)
    export = ExportRequest(owner=principal.identity, study=study, types=types, k=k,
                           request_url=base + request.path_qs, base_url=base)
    job = request.app[JOBS_KEY].start(export, _service_extractor(request))
    log.info("export job %s of study %s started for researcher %s", job.id[:8], study, principal.identity.hex()[:16])
    status_url = base + BASE_PATH + f"/$export-status/{job.id}"
    return web.json_response(outcome_of_info("export_started", "the export runs; poll the Content-Location URL"),
                             status=202, content_type=FHIR_JSON, headers={"Content-Location": status_url})


@fhir_errors
async def get_status(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/$export-status/<job>: 202 while running, the manifest when done, the refusal if it failed."""
    principal = require_principal(request)
    jobs = request.app[JOBS_KEY]
    job = jobs.get(request.match_info["job"], principal.identity)
    if job.state == "running":
        seconds = max(0, jobs.clock() - job.started_ms) // 1000
        return web.Response(status=202, headers={"X-Progress": f"extracting from the custodians ({seconds} s)",
                                                 "Retry-After": str(RETRY_AFTER_S)})
    if job.error is not None:
        return outcome_response(job.error)
    assert job.finished_ms is not None
    expires = formatdate((job.finished_ms + jobs.limits.ttl_ms) / 1000, usegmt=True)
    return web.json_response(job.manifest(), headers={"Expires": expires})


@fhir_errors
async def delete_status(request: web.Request) -> web.StreamResponse:
    """DELETE /fhir/R4/$export-status/<job>: cancel the job, drop its files (202)."""
    principal = require_principal(request)
    request.app[JOBS_KEY].cancel(request.match_info["job"], principal.identity)
    return web.json_response(outcome_of_info("export_deleted", "the export job and its files are gone"), status=202,
                             content_type=FHIR_JSON)


@fhir_errors
async def get_file(request: web.Request) -> web.StreamResponse:
    """GET /fhir/R4/$export-file/<job>/<Type>.ndjson: one output file, to the job's owner only."""
    principal = require_principal(request)
    job = request.app[JOBS_KEY].get(request.match_info["job"], principal.identity)
    data = job.files.get(request.match_info["name"])
    if data is None:
        raise FhirError(404, "unknown_export_file", "no such file in this export (see the manifest's output)")
    return web.Response(body=data, content_type=NDJSON, charset="utf-8", headers={"Cache-Control": "no-store"})


def bulk_routes() -> list[web.RouteDef]:
    return [web.get(EXPORT_PATH, get_export), web.get(STATUS_PATH, get_status), web.delete(STATUS_PATH, delete_status),
            web.get(FILE_PATH, get_file)]


def install_bulk(app: web.Application, *, limits: BulkLimits | None = None, clock: Clock | None = None,
                 extract: Extractor | None = None) -> None:
    """Put the export jobs and the routes on the API's `app` (the node under NODE_KEY; its
    research service under RESEARCH_KEY runs the extracts unless `extract` is given, a test's);
    `make_app(..., mounts=[install_smart, install_bulk])`. Finished jobs are swept every minute
    as well as at every request, and every job is dropped when the app stops."""
    node = app[NODE_KEY]
    jobs = BulkJobs(limits or BulkLimits(), clock or node.clock_ms, extract)
    app[JOBS_KEY] = jobs

    async def sweeper(_: web.Application) -> Any:
        async def loop() -> None:
            while True:
                await asyncio.sleep(60)
                jobs.sweep()

        task = asyncio.get_running_loop().create_task(loop())
        yield
        task.cancel()
        await jobs.close()

    app.cleanup_ctx.append(sweeper)
    app.router.add_routes(bulk_routes())
