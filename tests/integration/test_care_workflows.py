"""Care across institutions on six real node processes, driven through `medledger care` and
`medledger record` as the staff of each institution would (issue 19, point 3): an e-prescription
seen by the nominated pharmacy and dispensed once, a claim whose insurer sees only what it
lists, a referral the clinic reads only once accepted and only while it lasts, a lab order and
its result back to the orderer. Each refusal the workflows imply is checked on the ledger.

The institutions: hospital (node0), clinic, pharmacy, insurer, lab, and a second pharmacy the
patient did not nominate. The CLI runs in this process (click's runner) against the nodes' APIs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from node.client import HealthClient
from node.devtools.cluster import Cluster
from tests.helpers import ROOT, cli_here, cli_here_ok, wait_until

pytestmark = pytest.mark.slow
KINDS = ["hospital", "clinic", "pharmacy", "insurer", "lab", "pharmacy"]
HOSPITAL, CLINIC, PHARMACY, INSURER, LAB, OTHER_PHARMACY = range(6)
EXAMPLES = ROOT / "docs" / "examples"
SUBJECT = ("--subject", "Patient/example")


run, ok = cli_here, cli_here_ok


class Net:
    """The cluster, the institutions' ids and keys, and one key per person."""

    def __init__(self, cluster: Cluster, tmp: Path) -> None:
        self.c, self.tmp = cluster, tmp
        self.url = [n.api_url for n in cluster.nodes]
        self.inst_key = [str(n.home / "institution.key") for n in cluster.nodes]
        self.inst = [n.node_id for n in cluster.nodes]
        self.keys: dict[str, str] = {}

    def person(self, name: str, role: str, at: int, profession: str | None = None) -> str:
        path = str(self.tmp / f"{name}.key")
        ok("keys", "new", "--out", path)
        args = ["identity", "register", "--key", path, "--role", role, "--institution-key", self.inst_key[at],
                "--node", self.url[at]]
        ok(*args, *(["--profession", profession] if profession else []))
        self.keys[name] = path
        return ok("keys", "show", path)["id"]

    def put(self, who: str, at: int, *args: str) -> tuple[int, Any]:
        return run(*args, "--key", self.keys[who], *SUBJECT, "--node", self.url[at])

    def read(self, who: str, at: int, record: str, purpose: str = "treatment", under: str | None = None) -> tuple[int, Any]:
        out = str(self.tmp / f"read-{who}.json")
        extra = ["--under", under] if under else []
        return run("record", "get", "--key", self.keys[who], "--record", record, "--purpose", purpose, "--out", out,
                   *extra, "--node", self.url[at])

    def decision(self, answer: Any) -> tuple[str, str, list[str]]:
        found = answer.get("decision") or {}
        return found.get("decision", answer.get("status")), found.get("rule", ""), found.get("policies", [])

    def patient_audit(self) -> list[dict[str, Any]]:
        return ok("audit", "--key", self.keys["pat"], "--node", self.url[HOSPITAL])["entries"]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("care")
    with Cluster.create(tmp / "net", 6, kinds=KINDS) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        n = Net(cluster, tmp)
        n.pat = n.person("pat", "patient", HOSPITAL)
        for name, at, profession in (("doc", HOSPITAL, "physician"), ("doc2", HOSPITAL, "physician"),
                                     ("clin", CLINIC, "physician"), ("pharm", PHARMACY, "pharmacist"),
                                     ("pharm2", OTHER_PHARMACY, "pharmacist"), ("officer", INSURER, "claims-officer"),
                                     ("tech", LAB, "lab-technician")):
            n.person(name, "practitioner", at, profession)
        yield n


def example(name: str) -> str:
    return str(EXAMPLES / name)


def test_e_prescription_nominated_pharmacy_single_dispense(net: Net) -> None:
    ok("care", "nominate", "--key", net.keys["pat"], "--pharmacy", net.inst[PHARMACY], "--node", net.url[HOSPITAL])
    assert ok("care", "standing", "--key", net.keys["pat"], "--node", net.url[HOSPITAL])["standing"]["pharmacy"][
        "institution"] == net.inst[PHARMACY]
    code, rx = net.put("doc", HOSPITAL, "care", "prescribe", "--patient", net.pat, "--file", example("medicationrequest.json"))
    assert code == 0, rx
    rid = rx["record_id"]
    inbox = ok("care", "inbox", "--key", net.keys["pharm"], "--node", net.url[PHARMACY])
    assert [e["id"] for e in inbox["entries"]] == [rid]
    # the nominated pharmacy reads it without a consent (the patient's standing permission)
    code, seen = net.read("pharm", PHARMACY, rid)
    assert code == 0 and net.decision(seen) == ("granted", "standing_permission", ["standing.nominated-pharmacy@1#0"])
    written = json.loads((EXAMPLES / "medicationrequest.json").read_text())
    assert json.loads((net.tmp / "read-pharm.json").read_text())["medicationCodeableConcept"] == \
        written["medicationCodeableConcept"]
    # another pharmacy neither reads nor dispenses it
    code, other = net.read("pharm2", OTHER_PHARMACY, rid)
    assert code == 1 and net.decision(other)[:2] == ("denied", "no_consent")
    code, refused = net.put("pharm2", OTHER_PHARMACY, "care", "dispense", "--prescription", rid, "--patient", net.pat,
                            "--file", example("medicationdispense.json"))
    assert code == 1 and refused["status"] == "not_nominated_pharmacy"
    # the nominated one dispenses; the prescription is completed; a second dispense is refused
    code, dispensed = net.put("pharm", PHARMACY, "care", "dispense", "--prescription", rid,
                              "--file", example("medicationdispense.json"))
    assert code == 0, dispensed
    status = ok("care", "status", "--key", net.keys["doc"], "--record", rid, "--node", net.url[HOSPITAL])
    assert (status["status"], status["completed_by"]) == ("completed", dispensed["record_id"])
    code, again = net.put("pharm", PHARMACY, "care", "dispense", "--prescription", rid,
                          "--file", example("medicationdispense.json"))
    assert code == 1 and again["status"] == "already_dispensed"
    # the prescriber reads the dispense back
    code, back = net.read("doc", HOSPITAL, dispensed["record_id"])
    assert code == 0 and net.decision(back)[1] == "standing_permission"
    events = [(e["event"], e.get("rule")) for e in net.patient_audit()]
    assert ("standing.granted", None) in events and ("access.granted", "standing_permission") in events
    assert ("access.denied", "no_consent") in events


def test_claim_minimum_necessary(net: Net) -> None:
    recs = {}
    for name in ("encounter", "procedure", "condition"):
        code, answer = net.put("doc", HOSPITAL, "record", "put", "--patient", net.pat, "--file", example(f"{name}.json"))
        assert code == 0, answer
        recs[name] = answer["record_id"]
    ok("care", "nominate", "--key", net.keys["pat"], "--insurer", net.inst[INSURER], "--node", net.url[HOSPITAL])
    code, claim = net.put("doc", HOSPITAL, "care", "claim", "--patient", net.pat, "--insurer", net.inst[INSURER],
                          "--covers", f"{recs['encounter']},{recs['procedure']}", "--file", example("claim.json"))
    assert code == 0, claim
    cid = claim["record_id"]
    assert [e["id"] for e in ok("care", "inbox", "--key", net.keys["officer"], "--node", net.url[INSURER])["entries"]] == [cid]
    code, seen = net.read("officer", INSURER, cid, "payment")
    assert code == 0 and net.decision(seen) == ("granted", "standing_permission", ["standing.insurer@1#0"])
    for listed in ("encounter", "procedure"):
        code, seen = net.read("officer", INSURER, recs[listed], "payment", under=cid)
        assert code == 0 and net.decision(seen)[2] == ["standing.insurer@1#1"], seen
    # outside the claim: the Condition it does not list, a listed record read without the claim
    code, outside = net.read("officer", INSURER, recs["condition"], "payment", under=cid)
    assert code == 1 and net.decision(outside)[:2] == ("denied", "no_consent")
    code, bare = net.read("officer", INSURER, recs["encounter"], "payment")
    assert code == 1 and net.decision(bare)[:2] == ("denied", "no_consent")
    # the insurer pays the claim, once
    code, paid = net.put("officer", INSURER, "care", "pay", "--claim", cid, "--file", example("claimresponse.json"))
    assert code == 0, paid
    assert ok("care", "status", "--key", net.keys["doc"], "--record", cid, "--node", net.url[HOSPITAL])["status"] == "completed"
    code, twice = net.put("officer", INSURER, "care", "pay", "--claim", cid, "--file", example("claimresponse.json"))
    assert code == 1 and twice["status"] == "already_completed"


def test_referral_accepted_and_ended(net: Net) -> None:
    code, cond = net.put("doc", HOSPITAL, "record", "put", "--patient", net.pat, "--file", example("condition.json"))
    assert code == 0, cond
    until_ms = int(time.time() * 1000) + 8_000
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(until_ms / 1000)) + f".{until_ms % 1000:03d}Z"
    code, ref = net.put("doc", HOSPITAL, "care", "refer", "--patient", net.pat, "--to", net.inst[CLINIC], "--until", until,
                        "--summary", cond["record_id"], "--file", example("servicerequest-referral.json"))
    assert code == 0, ref
    rid = ref["record_id"]
    code, early = net.read("clin", CLINIC, rid)  # not accepted yet
    assert code == 1 and net.decision(early)[:2] == ("denied", "no_consent")
    ok("care", "accept", "--key", net.keys["pat"], "--request", rid, "--node", net.url[HOSPITAL])
    code, seen = net.read("clin", CLINIC, rid)
    assert code == 0 and net.decision(seen)[2] == ["standing.referral@1#0"]
    code, summary = net.read("clin", CLINIC, cond["record_id"], under=rid)
    assert code == 0 and net.decision(summary)[1] == "standing_permission"
    # once the referral's end is past in block time, the clinic reads nothing more under it
    wait_until(lambda: time.time() * 1000 > until_ms + 1000, 60, "the referral's end to pass")
    code, late = net.read("clin", CLINIC, cond["record_id"], under=rid)
    assert code == 1 and net.decision(late)[:2] == ("denied", "no_consent")
    assert late["decision"]["time_ms"] > until_ms  # decided in a block after the end


def test_lab_order_and_result_to_the_orderer(net: Net) -> None:
    code, order = net.put("doc", HOSPITAL, "care", "order", "--patient", net.pat, "--lab", net.inst[LAB],
                          "--file", example("servicerequest-lab.json"))
    assert code == 0, order
    oid = order["record_id"]
    code, early = net.put("tech", LAB, "care", "result", "--order", oid, "--patient", net.pat,
                          "--file", example("diagnosticreport.json"))
    assert code == 1 and early["status"] == "order_not_accepted"
    ok("care", "accept", "--key", net.keys["pat"], "--request", oid, "--node", net.url[HOSPITAL])
    code, seen = net.read("tech", LAB, oid)
    assert code == 0 and net.decision(seen)[2] == ["standing.lab-order@1#0"]
    code, report = net.put("tech", LAB, "care", "result", "--order", oid, "--file", example("diagnosticreport.json"))
    assert code == 0, report
    inbox = ok("care", "inbox", "--key", net.keys["doc"], "--node", net.url[HOSPITAL])
    assert report["record_id"] in [e["id"] for e in inbox["entries"]]
    code, back = net.read("doc", HOSPITAL, report["record_id"])
    assert code == 0 and net.decision(back) == ("granted", "standing_permission", ["standing.lab-order@1#1"])
    got = json.loads((net.tmp / "read-doc.json").read_text())
    assert got["conclusion"] == json.loads((EXAMPLES / "diagnosticreport.json").read_text())["conclusion"]
    code, other = net.read("doc2", HOSPITAL, report["record_id"])  # a colleague who did not order it
    assert code == 1 and net.decision(other)[:2] == ("denied", "no_consent")


def test_strangers_are_refused_and_anonymous_readers_see_no_nomination(net: Net) -> None:
    """Who else could call the new reads: another pharmacy's staff, the patient, a physician, an
    anonymous reader. Each is refused; a nomination's body stays withheld in the public explorer."""
    from node.client import ApiError
    from node.home.keys import load_key_file

    def key(name: str) -> Any:
        return load_key_file(Path(net.keys[name]))

    pharmacy = HealthClient(net.url[PHARMACY])
    for reader in ("pharm2", "pat", "doc"):  # not staff of the pharmacy
        with pytest.raises(ApiError) as refused:
            pharmacy.inbox(key(reader), net.inst[PHARMACY])
        assert refused.value.status == 403, reader
    with pytest.raises(ApiError) as unsigned:
        pharmacy.get(f"/v1/institutions/{net.inst[PHARMACY]}/inbox")
    assert unsigned.value.status == 401
    with pytest.raises(ApiError) as refused:
        HealthClient(net.url[HOSPITAL]).standing(key("doc"), net.pat)
    assert refused.value.status == 403
    # the patient's nomination on the chain: its body is the patient's, withheld from anyone else
    nominated = ok("care", "nominate", "--key", net.keys["pat"], "--pharmacy", net.inst[PHARMACY], "--node", net.url[HOSPITAL])
    public = HealthClient(net.url[CLINIC]).block(nominated["height"])
    tx = next(t for t in public["txs"] if t["hash"] == nominated["tx_hash"])
    assert "body" not in tx and net.inst[PHARMACY] not in json.dumps(tx)
    other = HealthClient(net.url[CLINIC]).block(nominated["height"], signer=key("pharm2"))
    assert "body" not in next(t for t in other["txs"] if t["hash"] == nominated["tx_hash"])
    mine = HealthClient(net.url[CLINIC]).block(nominated["height"], signer=key("pat"))
    assert next(t for t in mine["txs"] if t["hash"] == nominated["tx_hash"])["body"]["permission"] == "pharmacy"
