"""`medledger bench --fhir N`: how fast FHIR transaction Bundles load through the nodes' FHIR API.

Setup (not timed): the N patients are spread over the network's institutions; at each, `loaders`
practitioners and its share of the patients are registered (so its staff have the treatment
relationship `record.add` needs), and each loader gets a SMART access token at its node's token
endpoint (node/fhir/smart.py) with its own key. The bundles are Synthea-shaped
(node/devtools/synthea_like.py, seeded), cut down to the types this server holds, each Patient
carrying the `urn:medledger:identity` identifier that links it to its ledger patient;
`per_bundle` patients go in one transaction Bundle.

Timed: every node's loaders POST their bundles to its `/fhir/R4` at once, each loader one at a
time; a transaction answers once every entry is validated, encrypted, stored by the custodian
and registered by a committed `record.add`, so `resources_per_s` counts resources on the
ledger. Afterwards a sample of each node's created resources is read back (`GET
/fhir/R4/<type>/<id>`) and compared with what was sent, the references aside (the server
rewrites them to its own ids).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from node.app.types.identity import attest
from node.chain.tx import Transaction
from node.core.crypto import Identity
from node.devtools.synthea_like import HELD_TYPES, generate
from node.fhir.client_assertion import make_assertion, token_form

IDENTITY_SYSTEM = "urn:medledger:identity"
SAMPLE = 20  # resources read back after the load
REQUEST_TIMEOUT_S = 600.0


class FhirBenchError(Exception):
    """The load could not be set up, a bundle was refused, or what was read back differs."""


def _key(seed: bytes, name: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(seed + b"fhir-bench-" + name.encode()).digest())


def setup_txs(chain_id: str, institution: Identity, loaders: Sequence[Identity],
              patients: Sequence[Identity]) -> list[Transaction]:
    """The registrations the load needs: the loaders as practitioners of `institution`, the
    patients registered at it."""
    txs = []
    for ident in loaders:
        txs.append(Transaction.create(ident, chain_id=chain_id, type="identity.register", nonce=1, body={
            "role": "practitioner", "institution": institution.public_key,
            "attestation": attest(institution, chain_id=chain_id, registrant=ident.public_key, role="practitioner")}))
    for ident in patients:
        txs.append(Transaction.create(ident, chain_id=chain_id, type="identity.register", nonce=1, body={
            "role": "patient", "institution": institution.public_key,
            "attestation": attest(institution, chain_id=chain_id, registrant=ident.public_key, role="patient")}))
    return txs


def held_bundle(entries: list[dict[str, Any]], patient_id: str) -> list[dict[str, Any]]:
    """A generated patient's entries of the held types, its Patient linked to `patient_id`."""
    out = []
    for entry in entries:
        resource = entry["resource"]
        if resource["resourceType"] not in HELD_TYPES:
            continue
        if resource["resourceType"] == "Patient":
            resource = {**resource, "identifier": [*resource.get("identifier", []),
                                                   {"system": IDENTITY_SYSTEM, "value": patient_id}]}
        out.append({**entry, "resource": resource})
    return out


def make_bundles(patients: Sequence[Identity], *, seed: int, per_bundle: int) -> list[dict[str, Any]]:
    """Transaction Bundles of `per_bundle` patients each (the last may hold fewer)."""
    made = generate(len(patients), seed=seed)
    bundles = []
    for start in range(0, len(made), per_bundle):
        entries: list[dict[str, Any]] = []
        for p, ident in zip(made[start:start + per_bundle], patients[start:start + per_bundle], strict=True):
            entries.extend(held_bundle(p.bundle["entry"], ident.id))
        bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return bundles


async def get_token(session: aiohttp.ClientSession, base: str, ident: Identity) -> str:
    url = f"{base}/fhir/R4/auth/token"
    form = token_form(make_assertion(ident, url, time.time_ns() // 1_000_000), "user/*.crus", "TREAT")
    async with session.post(url, data=form) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200 or "access_token" not in body:
            raise FhirBenchError(f"the token endpoint refused loader {ident.id[:16]}: {resp.status} {body}")
        return str(body["access_token"])


def _outcome_text(body: Any) -> str:
    try:
        issue = body["issue"][0]
        codes = [c.get("code") for c in issue.get("details", {}).get("coding", [])]
        return f"{'/'.join(str(c) for c in codes)}: {issue.get('diagnostics', '')}"
    except (KeyError, IndexError, TypeError, AttributeError):
        return str(body)[:300]


async def post_bundle(session: aiohttp.ClientSession, base: str, token: str, bundle: dict[str, Any]) -> list[str]:
    """POST one transaction; the created resources' `Type/id` in entry order."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    async with session.post(f"{base}/fhir/R4", data=json.dumps(bundle, separators=(",", ":")), headers=headers,
                            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise FhirBenchError(f"a transaction of {len(bundle['entry'])} entries was refused: {resp.status} "
                                 f"{_outcome_text(body)}")
    out = []
    for entry in body.get("entry", []):
        response = entry.get("response", {})
        if not str(response.get("status", "")).startswith("201"):
            raise FhirBenchError(f"an entry was not created: {response}")
        location = str(response.get("location", ""))
        parts = location.split("/_history/")[0].split("/")
        out.append("/".join(parts[-2:]))
    return out


def _without_refs(value: Any) -> Any:
    """`value` with every reference, id and meta left out: what the server keeps as written."""
    if isinstance(value, dict):
        return {k: _without_refs(v) for k, v in value.items() if k not in ("reference", "id", "meta")}
    if isinstance(value, list):
        return [_without_refs(v) for v in value]
    return value


async def read_back(session: aiohttp.ClientSession, base: str, token: str, sent: list[tuple[str, dict[str, Any]]],
                    rng: random.Random) -> int:
    """Read a sample of the created resources and compare them with what was sent."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    checked = 0
    for ref, resource in rng.sample(sent, min(SAMPLE, len(sent))):
        async with session.get(f"{base}/fhir/R4/{ref}", headers=headers) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise FhirBenchError(f"reading back {ref} failed: {resp.status} {_outcome_text(body)}")
        if resource["resourceType"] == "Patient":
            # the server adds the ledger identity to a Patient's identifiers: compare the rest
            body = {**body, "identifier": [i for i in body.get("identifier", []) if i.get("system") != IDENTITY_SYSTEM]}
            resource = {**resource, "identifier": [i for i in resource["identifier"] if i.get("system") != IDENTITY_SYSTEM]}
        if _without_refs(body) != _without_refs(resource):
            raise FhirBenchError(f"{ref} read back differs from what was sent")
        checked += 1
    return checked


async def _load_one(session: aiohttp.ClientSession, base: str, tokens: list[str], bundles: list[dict[str, Any]],
                    sent: list[tuple[str, str, dict[str, Any]]], latencies: list[float]) -> None:
    """One node's loaders, round robin over its bundles, each loader one request at a time."""
    queues = [bundles[i::len(tokens)] for i in range(len(tokens))]

    async def loader(i: int) -> None:
        for bundle in queues[i]:
            t0 = time.perf_counter()
            refs = await post_bundle(session, base, tokens[i], bundle)
            latencies.append(time.perf_counter() - t0)
            if i == 0:
                sent.extend((base, ref, e["resource"]) for ref, e in zip(refs, bundle["entry"], strict=True))

    await asyncio.gather(*(loader(i) for i in range(len(tokens))))


async def run_load(targets: Sequence[tuple[str, Sequence[Identity], list[dict[str, Any]]]], *, seed: int) -> dict[str, Any]:
    """Load each target's bundles through its loaders, all targets at once; the result.

    `targets`: (API URL of a node, loaders who are practitioners of its institution, bundles of
    patients registered at it)."""
    async with aiohttp.ClientSession() as session:
        tokens = [[await get_token(session, base, ident) for ident in loaders] for base, loaders, _ in targets]
        sent: list[tuple[str, str, dict[str, Any]]] = []
        latencies: list[float] = []
        started = time.perf_counter()
        await asyncio.gather(*(_load_one(session, base, toks, bundles, sent, latencies)
                               for (base, _, bundles), toks in zip(targets, tokens, strict=True)))
        seconds = time.perf_counter() - started
        checked = 0
        rng = random.Random(seed)
        for (base, _, _), toks in zip(targets, tokens, strict=True):
            mine = [(ref, res) for b, ref, res in sent if b == base]
            checked += await read_back(session, base, toks[0], mine, rng) if mine else 0
    resources = sum(len(b["entry"]) for _, _, bundles in targets for b in bundles)
    latencies.sort()
    return {
        "fhir_resources": resources,
        "fhir_bundles": sum(len(bundles) for _, _, bundles in targets),
        "fhir_loaders": sum(len(loaders) for _, loaders, _ in targets),
        "fhir_seconds": round(seconds, 3),
        "resources_per_s": round(resources / seconds, 1) if seconds > 0 else 0.0,
        "fhir_bundle_latency_s_p50": round(latencies[len(latencies) // 2], 3) if latencies else 0.0,
        "fhir_bundle_latency_s_max": round(latencies[-1], 3) if latencies else 0.0,
        "fhir_read_back": checked,
    }


def plan_load(chain_id: str, institutions: Sequence[Identity], *, patients: int, loaders: int, per_bundle: int,
              seed: bytes) -> tuple[list[Transaction], list[tuple[int, list[Identity], list[dict[str, Any]]]]]:
    """The setup transactions and, for each node (by index), its loaders and bundles: the
    `patients` spread over the institutions, `loaders` practitioners at each."""
    setup: list[Transaction] = []
    plan: list[tuple[int, list[Identity], list[dict[str, Any]]]] = []
    bundle_seed = int.from_bytes(hashlib.sha256(seed + b"fhir-bundles").digest()[:4], "big")
    for n, institution in enumerate(institutions):
        mine = patients // len(institutions) + (1 if n < patients % len(institutions) else 0)
        if mine == 0:
            continue
        staff = [_key(seed, f"loader-{n}-{i}") for i in range(loaders)]
        people = [_key(seed, f"patient-{n}-{i}") for i in range(mine)]
        setup.extend(setup_txs(chain_id, institution, staff, people))
        plan.append((n, staff, make_bundles(people, seed=bundle_seed + n, per_bundle=per_bundle)))
    return setup, plan


def measure_fhir(cluster: Any, *, patients: int, loaders: int, per_bundle: int, seed: bytes,
                 timeout: float) -> dict[str, Any]:
    """Set up and time the FHIR bulk load on a running local network (every node's institution
    takes its share of the patients); the result's `fhir_*` and `resources_per_s` fields."""
    from node.devtools.bench import chain_status, commit_setup
    from node.home.keys import load_key_file

    urls = [n.api_url for n in cluster.nodes]
    chain_id = asyncio.run(chain_status(urls[0]))["chain_id"]
    institutions = [load_key_file(n.home / "institution.key") for n in cluster.nodes]
    setup, plan = plan_load(chain_id, institutions, patients=patients, loaders=loaders, per_bundle=per_bundle, seed=seed)
    asyncio.run(commit_setup(urls, [setup], timeout_s=max(timeout, 300.0)))
    targets = [(urls[n], staff, bundles) for n, staff, bundles in plan]
    return asyncio.run(run_load(targets, seed=int.from_bytes(seed[:4], "big")))
