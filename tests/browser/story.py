"""A devnet with a small healthcare story, for the dashboard's browser tests and screenshots.

`populate` registers a patient, three practitioners at three institutions, writes one
encrypted record, grants a consent, reads the record under it (a disclosure) and opens it by
break-glass (awaiting review at the custodian): every page of the dashboard then has something
to show. `agreement_in_force` has the hospital and the pharmacy (nodes 0 and 2) agree on the
pharmacy nomination policy, for the network page's agreements. `launch_chromium` starts Debian's
chromium through Playwright.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.app.agreements import check_stored_policy
from node.app.policies.check import canonical_form
from node.client import HealthClient
from node.devtools.cluster import Cluster
from node.core.crypto import Identity
from node.home.keys import load_key_file, write_key_file

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
               "valueQuantity": {"value": 72, "unit": "beats/min"}}
UNTIL_2099_MS = 4_070_908_800_000  # 2099-01-01T00:00:00Z
NOMINATION_POLICY = canonical_form((Path(__file__).resolve().parents[2] / "docs/examples/policies/pharmacy-nomination.cedar")
                                   .read_text())


@dataclass(frozen=True)
class Story:
    urls: list[str]
    patient: Identity
    patient_key: Path
    reader: Identity  # the practitioner the consent names (reads at node1)
    institution_key: Path  # the custodian's (node0) key file
    consent_id: str
    record_id: str
    breakglass_tx: str


def committed(out: dict[str, Any]) -> dict[str, Any]:
    if out.get("status") != "committed":
        raise AssertionError(f"transaction not committed: {out}")
    return out


def populate(cluster: Cluster, workdir: Path) -> Story:
    urls = [n.api_url for n in cluster.nodes]
    inst = [load_key_file(n.home / "institution.key") for n in cluster.nodes[:3]]
    client = HealthClient(urls[0])
    patient, doctor, er_doc, night_doc = (Identity.generate() for _ in range(4))
    patient_key = workdir / "patient.key"
    write_key_file(patient_key, patient)
    committed(client.register(patient, "patient", institution=inst[0]))  # at institution 0, where Dr Grey writes
    committed(client.register(doctor, "practitioner", institution=inst[0], label="Dr Grey"))
    committed(HealthClient(urls[1]).register(er_doc, "practitioner", institution=inst[1], label="Dr Shepherd"))
    committed(HealthClient(urls[2]).register(night_doc, "practitioner", institution=inst[2], label="Dr Bailey"))
    patient_ref = {**OBSERVATION, "subject": {"reference": f"Patient/{patient.id}"}}
    record_id = committed(client.put_record(doctor, patient.id, json.dumps(patient_ref).encode()))["record_id"]
    consent_id = committed(client.transact(patient, "consent.grant", {
        "grantee_kind": "practitioner", "grantee": er_doc.public_key, "purposes": ["treatment"],
        "resource_types": ["Observation"], "valid_until": UNTIL_2099_MS}))["tx_hash"]
    read = committed(HealthClient(urls[1]).request_access(er_doc, record_id, "treatment"))
    if read["decision"]["decision"] != "granted":
        raise AssertionError(f"the consented read was not granted: {read}")
    glass = committed(HealthClient(urls[2]).request_access(night_doc, record_id, "emergency", "unconscious"))
    return Story(urls=urls, patient=patient, patient_key=patient_key, reader=er_doc, institution_key=cluster.nodes[0].home / "institution.key",
                 consent_id=consent_id, record_id=record_id, breakglass_tx=glass["tx_hash"])


def agreement_in_force(cluster: Cluster, agreement: str) -> dict[str, Any]:
    """Version 1 of `agreement` (the pharmacy nomination policy, for treatment) proposed by node
    0's institution (the devnet's hospital) and co-signed by node 2's (the pharmacy); the
    signature's commit (its `height` is the one the agreement came into force at)."""
    hospital, pharmacy = (load_key_file(cluster.nodes[i].home / "institution.key") for i in (0, 2))
    body = {"agreement": agreement, "version": 1, "parties": sorted([hospital.public_key, pharmacy.public_key]),
            "purposes": ["treatment"], "policy": NOMINATION_POLICY}
    committed(HealthClient(cluster.nodes[0].api_url).transact(hospital, "agreement.propose", body))
    sign = {"agreement": agreement, "version": 1, "digest": check_stored_policy(NOMINATION_POLICY)}
    return committed(HealthClient(cluster.nodes[2].api_url).transact(pharmacy, "agreement.sign", sign))


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless (Playwright's own browser downloads are not used)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not on PATH (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


def sign_in(page: Any, url: str, key_file: Path, passphrase: str = "") -> None:
    """Open a dashboard page (patient or compliance) and sign in with a key file."""
    page.goto(url)
    page.set_input_files("#keyfile", str(key_file))
    if passphrase:
        page.fill("#passphrase", passphrase)
    page.click("#signin-form button")
