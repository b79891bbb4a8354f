"""The API locked down: reads of health data are signed, fresh, not replayed and by someone the
ledger lets read them; clients and signers beyond their rate get 429 with Retry-After; a TLS
devnet commits over https and wss and refuses plain http."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from node.api.app import make_app
from node.app.types.identity import attest
from node.api.auth import sign_headers
from node.client import ApiError, Client, HealthClient, NodeUnreachable
from node.devtools.cluster import Cluster
from node.home.config import build_config
from node.core.crypto import Identity
from node.home.keys import load_key_file
from node.runtime.runtime import Node
from node.chain.tx import Transaction

from tests.helpers import CHAIN, make_node

MSGPACK = {"Content-Type": "application/msgpack"}
OBS = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
                  "valueQuantity": {"value": 72, "unit": "beats/min"}}).encode()
PATIENT = Identity.from_seed(b"\x11" * 32)
GUARDIAN = Identity.from_seed(b"\x12" * 32)
STRANGER = Identity.from_seed(b"\x13" * 32)
DOCTOR = Identity.from_seed(b"\x14" * 32)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


NODE_ID = Identity.from_seed(b"\x07" * 32).id  # the key of tests.helpers.make_node


def signed(who: Identity, path: str, *, ts: int | None = None, nonce: bytes | None = None,
           method: str = "GET", body: bytes = b"", node_id: str = NODE_ID) -> dict[str, str]:
    return sign_headers(who, chain_id=CHAIN, node_id=node_id, method=method, path_qs=path, body=body,
                        timestamp_ms=now_ms() if ts is None else ts, nonce=nonce)


async def commit(client: TestClient, who: Identity, nonce: int, type_: str, body: dict) -> None:
    tx = Transaction.create(who, chain_id=CHAIN, type=type_, nonce=nonce, body=body)
    resp = await client.post("/v1/txs?wait=20", data=tx.encoded, headers=MSGPACK)
    got = await resp.json()
    assert resp.status == 200 and got["status"] == "committed" and got["result"] == "ok", got


async def serve(tmp_path: Path, api: dict | None = None) -> tuple[TestClient, Node]:
    cfg = build_config({"consensus": {"empty_block_interval_ms": 50}, **({"api": api} if api else {})}, env={})
    node = make_node(tmp_path / "db", config=cfg)
    client = TestClient(TestServer(make_app(node)))
    await client.start_server()
    node.start()
    return client, node


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Node]]:
    """A one-validator node with a patient, its guardian, a stranger and a practitioner."""
    client, node = await serve(tmp_path, {"rate_per_signer": 5, "burst_per_signer": 8})
    try:
        await commit(client, PATIENT, 1, "identity.register", {"role": "patient"})
        await commit(client, GUARDIAN, 1, "identity.register", {"role": "patient"})
        await commit(client, STRANGER, 1, "identity.register", {"role": "patient"})
        await commit(client, PATIENT, 2, "patient.set_guardian", {"guardian": GUARDIAN.public_key})
        await commit(client, DOCTOR, 1, "identity.register", {
            "role": "practitioner", "institution": node.identity.public_key,
            "attestation": attest(node.identity, chain_id=CHAIN, registrant=DOCTOR.public_key, role="practitioner")})
        yield client, node
    finally:
        node.stop()
        await client.close()
        node.store.close()


AUDIT = f"/v1/patients/{PATIENT.id}/audit"


async def answer(client: TestClient, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    resp = await client.get(path, headers=headers or {})
    return resp.status, await resp.json()


async def test_unsigned_reads_of_health_data_are_refused_and_public_reads_stay_open(world):
    client, node = world
    inst = node.identity.id
    for path in (AUDIT, f"/v1/patients/{PATIENT.id}/records", f"/v1/patients/{PATIENT.id}/consents?format=fhir",
                 f"/v1/records/{'ab' * 32}", f"/v1/access/{'ab' * 32}", f"/v1/institutions/{inst}/disclosures",
                 f"/v1/institutions/{inst}/breakglass"):
        status, body = await answer(client, path)
        assert (status, body["error"]) == (401, "signature_required"), path
        assert "X-MedLedger-Signature" in body["message"]
    for path in ("/v1/status", "/v1/health", "/v1/blocks/1", f"/v1/accounts/{PATIENT.id}",
                 f"/v1/identities/{PATIENT.id}", "/v1/commits"):
        status, _ = await answer(client, path)
        assert status == 200, path


async def test_the_patient_and_its_guardian_read_and_a_stranger_is_forbidden(world):
    client, node = world
    status, body = await answer(client, AUDIT, signed(PATIENT, AUDIT))
    assert status == 200 and body["patient"] == PATIENT.id
    assert [e["event"] for e in body["entries"]]  # the guardian was set: an audited event
    status, body = await answer(client, AUDIT + "?format=fhir", signed(GUARDIAN, AUDIT + "?format=fhir"))
    assert status == 200 and body["resourceType"] == "Bundle"
    for who in (STRANGER, DOCTOR, node.identity):  # no record here: the institution is no custodian yet
        status, body = await answer(client, AUDIT, signed(who, AUDIT))
        assert (status, body["error"]) == (403, "forbidden"), who.id
    disclosures = f"/v1/institutions/{node.identity.id}/disclosures?since_ms=0"
    status, _ = await answer(client, disclosures, signed(node.identity, disclosures))
    assert status == 200
    status, body = await answer(client, disclosures, signed(DOCTOR, disclosures))
    assert (status, body["error"]) == (403, "forbidden")


async def test_a_forged_request_is_bad_signature(world):
    client, _ = world
    forged = signed(STRANGER, AUDIT)
    forged["X-MedLedger-Signer"] = PATIENT.id  # claims to be the patient
    status, body = await answer(client, AUDIT, forged)
    assert (status, body["error"]) == (401, "bad_signature")
    # signed for another path, or with a garbled signature
    status, body = await answer(client, AUDIT, signed(PATIENT, AUDIT + "?format=fhir"))
    assert (status, body["error"]) == (401, "bad_signature")
    garbled = signed(PATIENT, AUDIT)
    garbled["X-MedLedger-Signature"] = "zz" * 64
    status, body = await answer(client, AUDIT, garbled)
    assert (status, body["error"]) == (401, "bad_signature")


async def test_a_replayed_request_is_refused(world):
    client, _ = world
    once = signed(PATIENT, AUDIT)
    assert (await answer(client, AUDIT, once))[0] == 200
    status, body = await answer(client, AUDIT, once)
    assert (status, body["error"]) == (401, "replayed_request")
    # the same nonce from another signer is that signer's own
    status, _ = await answer(client, AUDIT, signed(GUARDIAN, AUDIT, nonce=bytes.fromhex(once["X-MedLedger-Nonce"])))
    assert status == 200


async def test_a_stale_request_is_refused(world):
    client, _ = world
    for skew, code in ((-121_000, "stale_request"), (121_000, "future_request")):
        status, body = await answer(client, AUDIT, signed(PATIENT, AUDIT, ts=now_ms() + skew))
        assert (status, body["error"]) == (401, code)
    assert (await answer(client, AUDIT, signed(PATIENT, AUDIT, ts=now_ms() - 60_000)))[0] == 200


async def test_a_signer_beyond_its_rate_gets_429_with_retry_after(world):
    client, _ = world
    statuses = []
    for _ in range(40):  # burst 8, then 5 a second: requests faster than that are refused
        resp = await client.get(AUDIT, headers=signed(PATIENT, AUDIT))
        statuses.append(resp.status)
        if resp.status == 429:
            body = await resp.json()
            assert body["error"] == "rate_limited" and "signer" in body["message"]
            assert int(resp.headers["Retry-After"]) >= 1
            break
    assert statuses[:8] == [200] * 8 and statuses[-1] == 429
    # another signer is not held back by this one
    assert (await answer(client, AUDIT, signed(GUARDIAN, AUDIT)))[0] == 200


async def test_a_client_address_beyond_its_rate_gets_429_on_every_route(tmp_path):
    client, node = await serve(tmp_path, {"rate_per_ip": 1, "burst_per_ip": 3})
    try:
        codes = [(await client.get("/v1/status")).status for _ in range(3)]
        assert codes == [200, 200, 200]
        for _ in range(20):  # one a second after the burst: back-to-back requests are refused
            resp = await client.get("/v1/status")
            if resp.status == 429:
                break
        body = await resp.json()
        assert resp.status == 429 and body["error"] == "rate_limited" and "address" in body["message"]
        assert resp.headers["Retry-After"] == "1"
        for _ in range(20):  # every route, even before the body is looked at
            resp = await client.post("/v1/txs", data=b"\x90", headers=MSGPACK)
            if resp.status == 429:
                break
        assert resp.status == 429
    finally:
        node.stop()
        await client.close()
        node.store.close()


@pytest.mark.slow
def test_a_tls_devnet_commits_over_https_and_wss_and_refuses_plain_http(tmp_path):
    with Cluster.create(tmp_path / "net", 3, tls=True) as c:
        assert c.ca_file is not None and c.ca_file.exists()
        assert all(n.api_url.startswith("https://") for n in c.nodes)
        c.start()
        c.wait_ready(60)
        hc = HealthClient(c.nodes[0].api_url, ca_file=c.ca_file)
        patient = Identity.generate()
        institution = load_key_file(c.nodes[0].home / "institution.key")
        done = hc.register(patient, "patient", institution=institution)  # at node0, whose doctor writes its record
        assert done["status"] == "committed", done
        c.wait_for_height(done["height"], 60)  # every node got the block: over TLS peer links only
        deadline = time.monotonic() + 60
        while True:  # every node links to both others (over wss), soon if not already
            peers = [len(Client(n.api_url, ca_file=c.ca_file).status()["peers"]) for n in c.nodes]
            if peers == [2, 2, 2]:
                break
            assert time.monotonic() < deadline, f"peer links per node: {peers}"
            time.sleep(0.1)
        assert c.check_consistency() >= done["height"]
        # a record written at node0 and read by its patient through node1, which relays the fetch
        # to the custodian's https API (trusting the devnet CA)
        doctor = Identity.generate()
        assert hc.register(doctor, "practitioner", institution=institution)["status"] == "committed"
        put = hc.put_record(doctor, patient.id, OBS)
        assert put["status"] == "committed", put
        relay = HealthClient(c.nodes[1].api_url, ca_file=c.ca_file)
        c.wait_for_height(put["height"], 60)
        assert json.loads(relay.fetch_record(patient, put["record_id"])) == json.loads(OBS)
        # a signed read over https, at another node
        audit = HealthClient(c.nodes[2].api_url, ca_file=c.ca_file).audit(patient, patient.id)
        assert [e["event"] for e in audit["entries"]] == ["record.added"]
        # plain http to an https node gets no answer; https without the CA fails verification
        with pytest.raises(NodeUnreachable):
            Client(c.nodes[0].api_url.replace("https://", "http://")).status()
        with pytest.raises(NodeUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            Client(c.nodes[0].api_url, ca_file=None).status()
        # the CLI trusts the CA with --ca (or MEDLEDGER_CA), and cannot reach the node without it
        import subprocess
        import sys

        root = Path(__file__).resolve().parents[2]
        env = {k: v for k, v in os.environ.items() if k != "MEDLEDGER_CA"}
        cmd = [sys.executable, "-m", "cli"]
        ok = subprocess.run(cmd + ["--ca", str(c.ca_file), "status", "--node", c.nodes[1].api_url, "--json"],
                            capture_output=True, text=True, cwd=root, env=env, timeout=60)
        assert ok.returncode == 0 and json.loads(ok.stdout)["height"] >= done["height"], ok.stderr
        no_ca = subprocess.run(cmd + ["status", "--node", c.nodes[1].api_url], capture_output=True, text=True,
                               cwd=root, env=env, timeout=60)
        assert no_ca.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in no_ca.stderr
        with pytest.raises(ApiError) as err:  # and a stranger still may not read the patient's audit
            HealthClient(c.nodes[1].api_url, ca_file=c.ca_file).audit(Identity.generate(), patient.id)
        assert err.value.status == 403 and err.value.code == "forbidden"


@pytest.mark.slow
def test_node_run_with_tls_flags_serves_https_only(tmp_path):
    import signal
    import subprocess
    import sys

    from node.devtools.cluster import free_ports
    from node.home.tls import issue_certificate, make_local_ca

    root = Path(__file__).resolve().parents[2]
    api_port, p2p_port = free_ports(2)
    home = tmp_path / "home"
    init = subprocess.run([sys.executable, "-m", "cli", "node", "init", "--home", str(home), "--api-port", str(api_port),
                           "--p2p-port", str(p2p_port)], capture_output=True, text=True, cwd=root, timeout=60)
    assert init.returncode == 0, init.stderr
    ca = make_local_ca()
    cert, key = issue_certificate(ca, "institution-0", ["127.0.0.1"])
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    (tmp_path / "node.crt").write_bytes(cert)
    (tmp_path / "node.key").write_bytes(key)
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "node", "run", "--home", str(home), "--tls-cert",
                             str(tmp_path / "node.crt"), "--tls-key", str(tmp_path / "node.key")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        secure = Client(f"https://127.0.0.1:{api_port}", ca_file=tmp_path / "ca.pem")
        deadline = time.monotonic() + 60
        while True:
            try:
                status = secure.status()
                break
            except NodeUnreachable:
                assert proc.poll() is None, (tmp_path / "node.log").read_text()
                assert time.monotonic() < deadline, "the node did not answer over https"
                time.sleep(0.1)
        assert status["chain_id"] == "medledger-local"
        with pytest.raises(NodeUnreachable):
            Client(f"http://127.0.0.1:{api_port}").status()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
