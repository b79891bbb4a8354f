"""Put a demo-data folder on a running devnet: `medledger demo-data --load`.

`medledger demo-data` writes synthetic FHIR R4 files per site (`institution-<n>/`, the same n
as the devnet's `node<n>`) and `persons.json` (which local patient ids are one person). This
module makes that data live on the ledger, as the sites themselves would:

- one practitioner per site, its key in `<demo>/keys/practitioner-<n>.key`, registered under
  the site's institution (attested with `devnet/node<n>/institution.key`);
- one patient identity per person, its key in `<demo>/keys/<person>.key`, registered;
- each site's records written by its practitioner at its own node: validated, encrypted on this
  side, stored at the custodian, announced on the ledger (`record.add`). A record names its
  patient by ledger id (`Patient/<id>`), as a practitioner's system would; the local ids of the
  files are replaced by it;
- with `consent_study`, each patient's consent to that study for the loaded types.

Transactions go in batches (one sender's nonces rising within a batch) and are waited for
together, so a few hundred records load in seconds. Key files that exist are reused and
identities already registered are not registered again (records, though, are written anew).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.client import ApiError, HealthClient, RecordError
from node.core.crypto import Identity, sha256
from node.home.keys import load_key_file, write_key_file

BATCH = 200  # transactions per request: well under api.max_txs_per_request
UPLOAD_CHUNK = 50  # uploads announced at a time: well under api.max_pending_uploads (100 per author)
WAIT_S = 120.0


class DemoLoadError(Exception):
    """The demo folder or the devnet is not what the loader needs; the message says what to do."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    patients: int
    records: int
    records_per_site: dict[str, int]
    consents: int
    keys_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.patients, "records": self.records, "records_per_site": self.records_per_site,
                "consents": self.consents, "keys": self.keys_dir}


def _key(path: Path) -> Identity:
    """The identity in `path`, created (mode 0600) if the file does not exist yet."""
    if path.exists():
        return load_key_file(path)
    identity = Identity.generate()
    write_key_file(path, identity)
    return identity


def _registered(client: HealthClient, ident: Identity) -> bool:
    try:  # signed by the identity itself, which may always see its own registration
        client.get(f"/v1/identities/{ident.id}", signer=ident)
    except ApiError as exc:
        if exc.code in ("unknown_identity", "not_found"):
            return False
        raise
    return True


def _send_batches(client: HealthClient, txs: list[Any], what: str, *, fine: tuple[str, ...] = ("ok",)) -> None:
    """Submit in batches, wait for every commit, and fail on any result not in `fine`."""
    for start in range(0, len(txs), BATCH):
        chunk = txs[start:start + BATCH]
        client.submit_many(chunk)
        for tx in chunk:
            status = client.wait(tx.hash_hex, WAIT_S)
            result = status.get("result", status.get("status"))
            if status.get("status") != "committed" or result not in fine:
                raise DemoLoadError(f"{what}: the ledger answered {result} for tx {tx.hash_hex}")


def _txs(client: HealthClient, sender: Identity, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """One sender's transactions with rising nonces from its next free one."""
    first = client.next_nonce(sender)
    txs = [client.make_tx(sender, tx_type, body, nonce=first + i) for i, (tx_type, body) in enumerate(items)]
    with client._nonce_lock:  # later transactions of this client go above these
        client._nonces[sender.public_key] = max(client._nonces.get(sender.public_key, 0), first + len(items))
    return txs


def load_demo(demo: Path, devnet: Path, *, types: list[str] | None = None, consent_study: str | None = None,
              consent_until_ms: int | None = None, progress: Callable[[str], None] = lambda _: None) -> LoadReport:
    """Register the demo's people and write their records on the devnet in `devnet`."""
    from node.devtools.cluster import Cluster, ClusterError
    from node.records.envelope import seal_record
    from node.records.fhir import FhirInvalid, parse_resource
    from node.records.protocol import Upload
    from node.research.release import linked_patient

    try:
        persons: dict[str, dict[str, str]] = json.loads((demo / "persons.json").read_text())
    except (OSError, ValueError) as exc:
        raise DemoLoadError(f"{demo} has no readable persons.json ({exc}); make it with `medledger demo-data --out {demo}`") from None
    try:
        cluster = Cluster.open(devnet)
    except ClusterError as exc:
        raise DemoLoadError(str(exc)) from None
    sites = sorted({site for places in persons.values() for site in places})
    nodes = {}
    for site in sites:
        index = int(site.rsplit("-", 1)[-1])
        if index >= len(cluster.nodes):
            raise DemoLoadError(f"{site} has no node in {devnet} (it has node0..node{len(cluster.nodes) - 1}); "
                                f"make the demo data with --institutions {len(cluster.nodes)} or fewer")
        nodes[site] = cluster.nodes[index]
    ca = cluster.ca_file
    keys_dir = demo / "keys"
    keys_dir.mkdir(exist_ok=True)
    home = HealthClient(cluster.nodes[0].api_url, ca_file=ca)

    # identities: a practitioner per site, a patient per person
    doctors: dict[str, Identity] = {}
    for site in sites:
        node = nodes[site]
        client = HealthClient(node.api_url, ca_file=ca)
        doctor = doctors[site] = _key(keys_dir / f"practitioner-{site.rsplit('-', 1)[-1]}.key")
        if not _registered(client, doctor):
            out = client.register(doctor, "practitioner", institution=load_key_file(node.home / "institution.key"),
                                  label=f"Demo practitioner at {site}")
            if out["status"] != "committed":
                raise DemoLoadError(f"registering the practitioner of {site}: {out['status']}: {out.get('message', '')}")
    patients = {person: _key(keys_dir / f"{person}.key") for person in sorted(persons)}
    new = [ident for ident in patients.values() if not _registered(home, ident)]
    _send_batches(home, [home.make_tx(ident, "identity.register", {"role": "patient"}, nonce=home.next_nonce(ident))
                         for ident in new], "registering patients", fine=("ok", "already_registered"))
    progress(f"{len(patients)} patients registered ({len(new)} new)")

    # treatment consents: each patient consents to treatment at every site that holds records of
    # theirs, so the site's practitioner may add them (a record needs a treatment relationship)
    treatment: list[Any] = []
    for person, places in sorted(persons.items()):
        ident = patients[person]
        for site in sorted(places):
            if site in nodes:
                body = {"grantee_kind": "institution", "grantee": bytes.fromhex(nodes[site].node_id),
                        "purposes": ["treatment"], "resource_types": ["*"], "valid_until": 4_102_444_800_000}
                treatment.append(home.make_tx(ident, "consent.grant", body, nonce=home.next_nonce(ident)))
    _send_batches(home, treatment, "consenting to treatment at the sites")

    # records, site by site, written by the site's practitioner at the site's node
    wanted = set(types) if types else None
    per_site: dict[str, int] = {}
    for site in sites:
        node, doctor = nodes[site], doctors[site]
        client = HealthClient(node.api_url, ca_file=ca)
        custodian = bytes.fromhex(node.node_id)
        local_to_person = {places[site]: person for person, places in persons.items() if site in places}
        items: list[tuple[str, dict[str, Any]]] = []
        announced = 0
        for path in sorted((demo / site).glob("*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if wanted is not None and resource.get("resourceType") not in wanted:
                continue
            local = linked_patient(resource)
            if local not in local_to_person:
                continue  # not a patient's resource (a Medication, say)
            patient = patients[local_to_person[local]]
            raw = path.read_text(encoding="utf-8").replace(local, patient.id).encode()
            try:
                parsed = parse_resource(raw)
            except FhirInvalid as exc:
                raise DemoLoadError(f"{path}: {exc}") from None
            record_id = os.urandom(32)
            ciphertext, wrapped = seal_record(raw, {"patient": patient.public_key, "custodian": custodian})
            upload = Upload.create(doctor, chain_id=client.chain_id, record_id=record_id, patient=patient.public_key,
                                   resource_type=parsed["resourceType"], ciphertext=ciphertext, wrapped=wrapped,
                                   timestamp_ms=time.time_ns() // 1_000_000)
            try:
                client._post_msgpack("/v1/records", upload.to_wire())
            except ApiError as exc:
                raise RecordError(exc.code, f"{path}: {exc.message}") from None
            items.append(("record.add", {"record": record_id, "patient": patient.public_key,
                                         "resource_type": parsed["resourceType"], "hash": sha256(ciphertext),
                                         "custodian": custodian}))
            if len(items) - announced >= UPLOAD_CHUNK:  # the custodian bounds uploads waiting for record.add
                _send_batches(client, _txs(client, doctor, items[announced:]), f"writing the records of {site}")
                announced = len(items)
        _send_batches(client, _txs(client, doctor, items[announced:]), f"writing the records of {site}")
        per_site[site] = len(items)
        progress(f"{site}: {len(items)} records written at {node.api_url}")

    consents = 0
    if consent_study:
        until = consent_until_ms if consent_until_ms is not None else 4_102_444_800_000
        body = {"grantee_kind": "study", "grantee": consent_study, "purposes": ["research"],
                "resource_types": sorted(wanted) if wanted else ["*"], "valid_until": until}
        txs = [home.make_tx(ident, "consent.grant", dict(body), nonce=home.next_nonce(ident)) for ident in patients.values()]
        _send_batches(home, txs, f"consenting to study {consent_study}")
        consents = len(txs)
        progress(f"{consents} patients consented to study {consent_study}")
    return LoadReport(patients=len(patients), records=sum(per_site.values()), records_per_site=per_site,
                      consents=consents, keys_dir=str(keys_dir))
