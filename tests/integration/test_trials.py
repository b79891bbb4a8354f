"""A clinical trial on four real institutions with 240 generated patients (issue 21), driven
through `medledger trial` as the sponsor, the sites, the patients and an auditor would.

Sites: the hospital (node0) and the clinic (node1) keep the patients' records; the research
centre (node2) sponsors. The generator's ground truth says who matches (diabetes, HbA1c 7-10 %,
age 40-75) and who let their site screen them. Feasibility returns the right count per site, the
clinic's small count hidden; invitations reach exactly the matching, screened patients; nothing
the sponsor receives names a patient or a pseudonym before acceptance; acceptance, amendment
with re-consent, refusal of data without it, withdrawal and the lock behave; an export with one
changed value fails `trial verify` at that submission.
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from node.app.trial_criteria import SYSTEMS, matches, parse
from node.app.types.identity import attest
from node.client import HealthClient, trial_pseudonym
from node.core.crypto import Identity, sha256
from node.devtools.cluster import Cluster
from node.home.keys import load_key_file, write_key_file
from node.records.envelope import seal_record
from node.records.protocol import Upload

from tests.helpers import cli_here, cli_here_ok

pytestmark = pytest.mark.slow
T = "DIAB-RX-2027"
CRITERIA = {"version": 1, "age": {"min": 40, "max": 75},
            "include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["44054006"]},
                        {"resource": "Observation", "system": SYSTEMS["loinc"], "codes": ["4548-4"],
                         "value": {"min": "7.0", "max": "10", "unit": "%"}}]}
PER_SITE = 120
DIABETES_SHARE = {0: 0.45, 1: 0.04}  # the clinic's share is small: its count stays under the threshold


run, ok = cli_here, cli_here_ok


def person(rng: random.Random, site: int, pid: str) -> list[dict[str, Any]]:
    """One generated patient's resources (a Patient, perhaps a diabetes Condition, an HbA1c)."""
    diabetic = rng.random() < DIABETES_SHARE[site]
    subject = {"reference": f"Patient/{pid}"}
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "identifier": [{"system": "urn:medledger:identity", "value": pid}],
                                  "gender": rng.choice(["female", "male"]),
                                  "birthDate": f"{rng.randint(1940, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"}]
    code = "44054006" if diabetic else "38341003"  # type 2 diabetes, or hypertension
    out.append({"resourceType": "Condition", "subject": subject,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"coding": [{"system": SYSTEMS["snomed"], "code": code}]}})
    value = round(rng.uniform(6.5, 10.5) if diabetic else rng.uniform(4.8, 6.2), 1)
    out.append({"resourceType": "Observation", "status": "final", "subject": subject,
                "code": {"coding": [{"system": SYSTEMS["loinc"], "code": "4548-4"}]},
                "valueQuantity": {"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
    return out


def send_all(client: HealthClient, txs: list[Any]) -> None:
    for start in range(0, len(txs), 200):
        chunk = txs[start:start + 200]
        client.submit_many(chunk)
        for tx in chunk:
            status = client.wait(tx.hash_hex, 120)
            assert status.get("status") == "committed" and status.get("result") == "ok", status


def load_site(client: HealthClient, site: Identity, doctor: Identity, patients: list[tuple[Identity, list[dict[str, Any]]]],
              screened: set[bytes]) -> None:
    send_all(client, [client.make_tx(p, "identity.register", {
        "role": "patient", "institution": site.public_key,
        "attestation": attest(site, chain_id=client.chain_id, registrant=p.public_key, role="patient")}, nonce=1)
        for p, _ in patients])
    send_all(client, [client.make_tx(p, "standing.grant", {"permission": "screening", "institution": site.public_key}, nonce=2)
                      for p, _ in patients if p.public_key in screened])
    items = []
    for patient, resources in patients:
        for resource in resources:
            raw = json.dumps(resource).encode()
            rid = os.urandom(32)
            ciphertext, wrapped = seal_record(raw, {"patient": patient.public_key, "custodian": site.public_key})
            upload = Upload.create(doctor, chain_id=client.chain_id, record_id=rid, patient=patient.public_key,
                                   resource_type=resource["resourceType"], ciphertext=ciphertext, wrapped=wrapped,
                                   timestamp_ms=time.time_ns() // 1_000_000)
            client._post_msgpack("/v1/records", upload.to_wire())
            items.append({"record": rid, "patient": patient.public_key, "resource_type": resource["resourceType"],
                          "hash": sha256(ciphertext), "custodian": site.public_key})
        if len(items) >= 45:
            first = client.next_nonce(doctor)
            send_all(client, [client.make_tx(doctor, "record.add", b, nonce=first + i) for i, b in enumerate(items)])
            items = []
    if items:
        first = client.next_nonce(doctor)
        send_all(client, [client.make_tx(doctor, "record.add", b, nonce=first + i) for i, b in enumerate(items)])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("trial")
    with Cluster.create(tmp / "net", 4, kinds=["hospital", "clinic", "research", "insurer"]) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        url = [n.api_url for n in cluster.nodes]
        inst = [load_key_file(n.home / "institution.key") for n in cluster.nodes]
        rng = random.Random(2027)
        truth: dict[int, set[bytes]] = {}
        everyone: dict[bytes, Identity] = {}
        screened: set[bytes] = set()
        doctors = {}
        criteria = parse(CRITERIA)
        for site in (0, 1):
            client = HealthClient(url[site])
            doctor = Identity.generate()
            assert client.register(doctor, "practitioner", institution=inst[site], profession="physician")["status"] == "committed"
            doctors[site] = doctor
            patients = []
            for _ in range(PER_SITE):
                p = Identity.generate()
                patients.append((p, person(rng, site, p.id)))
                everyone[p.public_key] = p
                if rng.random() < 0.8:
                    screened.add(p.public_key)
            load_site(client, inst[site], doctor, patients, screened)
            today = date.today()
            truth[site] = {p.public_key for p, res in patients if p.public_key in screened and matches(criteria, res, today)}
        keys = {}
        for name, ident in (("sponsor", inst[2]), ("investigator", doctors[0])):
            keys[name] = str(tmp / f"{name}.key")
            write_key_file(Path(keys[name]), ident)
        (tmp / "criteria.json").write_text(json.dumps(CRITERIA))
        (tmp / "protocol-v1.txt").write_text("protocol version 1")
        (tmp / "protocol-v2.txt").write_text("protocol version 2: an extra visit")
        yield dict(cluster=cluster, url=url, inst=inst, truth=truth, everyone=everyone, screened=screened, keys=keys, tmp=tmp,
                   doctors=doctors)


def hospital_invitees_first(truth: dict[int, set[bytes]]) -> str:
    return sorted(truth[0])[0].hex()


def patient_key(world: Any, patient: Identity) -> str:
    path = world["tmp"] / f"patient-{patient.id[:12]}.key"
    if not path.exists():
        write_key_file(path, patient)
    return str(path)


def test_a_trial_from_feasibility_to_a_verified_lock(world: Any) -> None:
    url, inst, truth, tmp = world["url"], world["inst"], world["truth"], world["tmp"]
    sponsor_answers: list[Any] = []  # every answer the sponsor got, inspected at the end
    assert len(truth[0]) >= 10 > len(truth[1]) > 0, {k: len(v) for k, v in truth.items()}
    sites = f"{inst[0].id},{inst[1].id}"
    sponsor_answers.append(ok("trial", "register", "--key", world["keys"]["sponsor"], "--id", T, "--registry-id",
                              "NCT01234567", "--ethics", "IRB-2026-114", "--protocol", str(tmp / "protocol-v1.txt"),
                              "--sites", sites, "--investigators", world["doctors"][0].id,
                              "--criteria", str(tmp / "criteria.json"), "--until", "2030-12-31", "--node", url[2]))

    # feasibility: the hospital's exact count, the clinic's hidden
    feasibility = ok("trial", "feasibility", "--key", world["keys"]["sponsor"], "--id", T, "--node", url[2])
    sponsor_answers.append(feasibility)
    by_site = {a["site"]: a for a in feasibility["sites"]}
    assert by_site[inst[0].id]["count"] == len(truth[0])
    assert by_site[inst[1].id] == {"site": inst[1].id, "fewer_than": 10, "tx": by_site[inst[1].id]["tx"]}
    on_chain = HealthClient(url[3]).trial_query(T, feasibility["query"])["counts"]
    assert on_chain == {inst[0].id: {"count": len(truth[0])}, inst[1].id: {"fewer_than": 10}}

    # invitations reach exactly the matching, screened patients
    invited = ok("trial", "invite", "--key", world["keys"]["sponsor"], "--id", T, "--summary",
                 "A 12-month study of a new metformin schedule; four visits.", "--node", url[2])
    sponsor_answers.append(invited)
    assert {a["site"]: a["invited"] for a in invited["sites"]} == {inst[0].id: len(truth[0]), inst[1].id: len(truth[1])}
    everyone = world["everyone"]
    for site in (0, 1):
        site_client = HealthClient(url[site])
        for pid, patient in everyone.items():
            listed = site_client.invitations(patient)["invitations"]
            assert (len(listed) == 1) == (pid in truth[site]), patient.id
    hospital_invitees = sorted(truth[0])
    # the screening opt-in as a patient gives it (the bulk ones above are the same transaction)
    newcomer = Identity.generate()
    assert HealthClient(url[0]).register(newcomer, "patient", institution=inst[0])["status"] == "committed"
    ok("care", "nominate", "--key", patient_key(world, newcomer), "--screening", inst[0].id, "--node", url[0])
    assert ok("care", "standing", "--key", patient_key(world, newcomer), "--node", url[0])["standing"]["screening"][
        "institution"] == inst[0].id
    accepter, decliner, leaver = (everyone[p] for p in hospital_invitees[:3])
    shown = ok("trial", "invitations", "--key", patient_key(world, accepter), "--node", url[0])["invitations"]
    assert [(i["trial"], i["registry_id"], i["status"]) for i in shown] == [(T, "NCT01234567", "open")]
    assert "metformin" in shown[0]["summary"]

    # who else might call a site's trial routes: each is refused
    from node.client import ApiError

    def refused(call: Any) -> int:
        with pytest.raises(ApiError) as answer:
            call()
        return answer.value.status

    site = HealthClient(url[0])
    stranger = Identity.generate()  # no identity on the ledger
    assert refused(lambda: site.site_count(inst[0], T, feasibility["query"])) == 403  # a site, not the sponsor
    assert refused(lambda: site.site_count(stranger, T, feasibility["query"])) == 403
    assert refused(lambda: site.site_invite(inst[3], T, "")) == 403  # another institution
    assert refused(lambda: site._request("POST", f"/v1/trials/{T}/invite", b"\x80", "application/msgpack")) == 401
    assert refused(lambda: site.trial_export(inst[1], T)) == 403  # another site
    someone = everyone[sorted(truth[1])[0]]  # invited at the clinic, not at the hospital
    assert refused(lambda: site.trial_respond(someone, T, accept=True)) == 404
    assert refused(lambda: site.get(f"/v1/patients/{hospital_invitees_first(truth)}/invitations", signer=someone)) == 403
    assert refused(lambda: site._signed_post(world["doctors"][1], f"/v1/trials/{T}/submissions", {})) == 403

    # nothing the sponsor received names a patient or a pseudonym yet
    chain_id = HealthClient(url[2]).chain_id
    secrets = {p.id for p in everyone.values()} | {trial_pseudonym(p, chain_id, T).id for p in everyone.values()}
    dumped = json.dumps(sponsor_answers)
    assert not any(s in dumped for s in secrets)

    # acceptance (under the pseudonym), a decline (nothing leaves), enrolment, data
    answer = ok("trial", "respond", "--key", patient_key(world, accepter), "--id", T, "--accept", "--node", url[0])
    pseud = answer["pseudonym"]
    assert pseud == trial_pseudonym(accepter, chain_id, T).id
    assert ok("trial", "respond", "--key", patient_key(world, decliner), "--id", T, "--decline", "--node", url[0])["status"] \
        == "declined"
    assert run("trial", "respond", "--key", patient_key(world, leaver), "--id", T, "--accept", "--node", url[0])[0] == 0
    sponsor_view = HealthClient(url[2])
    assert sponsor_view.trial_participant(T, pseud)["versions"] == [1]
    with pytest.raises(Exception):
        sponsor_view.trial_participant(T, trial_pseudonym(decliner, chain_id, T).id)
    leaver_pseud = trial_pseudonym(leaver, chain_id, T).id
    for p in (pseud, leaver_pseud):
        ok("trial", "enrol", "--key", world["keys"]["investigator"], "--id", T, "--pseudonym", p, "--node", url[0])
    obs = tmp / "visit.json"
    obs.write_text(json.dumps({"resourceType": "Observation", "status": "final",
                               "code": {"coding": [{"system": SYSTEMS["loinc"], "code": "4548-4"}]},
                               "valueQuantity": {"value": 7.2, "unit": "%", "code": "%"}}))
    inv = world["keys"]["investigator"]
    ok("trial", "submit", "--key", inv, "--id", T, "--pseudonym", pseud, "--file", str(obs), "--node", url[0])
    ok("trial", "submit", "--key", inv, "--id", T, "--pseudonym", leaver_pseud, "--file", str(obs), "--node", url[0])

    # an amendment asking for re-consent: data without it is refused; after it, accepted
    ok("trial", "amend", "--key", world["keys"]["sponsor"], "--id", T, "--protocol", str(tmp / "protocol-v2.txt"),
       "--reconsent", "--node", url[2])
    code, refused = run("trial", "submit", "--key", inv, "--id", T, "--pseudonym", pseud, "--file", str(obs), "--node", url[0])
    assert code == 1 and "reconsent_required" in str(refused), refused  # the site keeps nothing either
    asked = ok("trial", "invitations", "--key", patient_key(world, accepter), "--node", url[0])["invitations"]
    assert [i["status"] for i in asked] == ["reconsent_needed"]  # the patient is asked again
    assert ok("trial", "respond", "--key", patient_key(world, accepter), "--id", T, "--accept", "--node", url[0])["version"] == 2
    assert [i["status"] for i in ok("trial", "invitations", "--key", patient_key(world, accepter), "--node", url[0])[
        "invitations"]] == ["accepted"]
    ok("trial", "submit", "--key", inv, "--id", T, "--pseudonym", pseud, "--file", str(obs), "--node", url[0])

    # withdrawal, relayed by any node: nothing more is collected
    ok("trial", "withdraw", "--key", patient_key(world, leaver), "--id", T, "--node", url[3])
    assert "withdrawn_ms" in sponsor_view.trial_participant(T, leaver_pseud)
    code, refused = run("trial", "submit", "--key", inv, "--id", T, "--pseudonym", leaver_pseud, "--file", str(obs),
                        "--node", url[0])
    assert code == 1 and "participant_withdrawn" in str(refused), refused

    # lock, export, verify; one changed value fails at that submission
    lock = ok("trial", "lock", "--key", world["keys"]["sponsor"], "--id", T, "--node", url[2])["lock"]
    assert lock["count"] == 3
    export = tmp / "dataset"
    # the leaver's submission is no longer released; its anchor still counts in the root
    assert ok("trial", "export", "--key", world["keys"]["sponsor"], "--id", T, "--out", str(export), "--node", url[2])[
        "submissions"] == 2
    verified = ok("trial", "verify", "--id", T, "--export", str(export), "--node", url[3])
    assert verified["ok"] is True and verified["checked"] == 2 and len(verified["withheld"]) == 1
    victim = sorted(export.glob("*.json"))[0]
    doc = json.loads(victim.read_text())
    doc["resource"]["valueQuantity"]["value"] = 6.1
    victim.write_text(json.dumps(doc))
    code, report = run("trial", "verify", "--id", T, "--export", str(export), "--node", url[3])
    assert code == 1 and report["ok"] is False
    assert [p["submission"] for p in report["problems"]] == [doc["submission"]]
