"""The snapshot routes through the API (a one-validator node on LevelDB) and `node init --join`'s
work (node.home.layout.join_network) against it over real HTTP: only an admitted institution
may fetch snapshots; once admitted, the new home holds the verified state at the snapshot's
height and opens as an observer whose integrity check accepts it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from node.api.auth import sign_headers
from node.core.crypto import Identity
from node.home.config import NodeHome
from node.home.layout import JoinError, join_network
from node.runtime.snapshots import Snapshotter
from storage.snapshots import chunk_hash
from tests.helpers import CHAIN, TxPoster


def inline(job: Callable[[], None]) -> None:
    job()


def signed(who: Identity, node_id: str, path: str) -> dict[str, str]:
    return sign_headers(who, chain_id=CHAIN, node_id=node_id, method="GET", path_qs=path,
                        timestamp_ms=time.time_ns() // 1_000_000)


@pytest.fixture
def snapshotting(api, tmp_path: Path):
    client, node = api
    node.snapshots = Snapshotter(store=node.store, chain_id=node.chain_id, identity=node.identity,
                                 directory=tmp_path / "snaps", interval=1, run=inline)
    return client, node


async def test_snapshots_are_served_to_admitted_institutions_only(snapshotting):
    client, node = snapshotting
    poster = TxPoster(client)
    patient = Identity.from_seed(b"p" * 32)
    assert (await poster.tx(patient, "identity.register", {"role": "patient"}))["status"] == "committed"
    resp = await client.get("/v1/genesis")
    assert resp.status == 200 and await resp.json() == node.genesis.to_json()
    assert (await client.get("/v1/snapshots")).status == 401
    resp = await client.get("/v1/snapshots", headers=signed(patient, node.identity.id, "/v1/snapshots"))
    assert resp.status == 403  # a patient's key, not an institution's
    resp = await client.get("/v1/snapshots", headers=signed(node.identity, node.identity.id, "/v1/snapshots"))
    listing = await resp.json()
    newest = listing["snapshots"][0]
    assert resp.status == 200 and newest["height"] == node.store.height and newest["chunks"] == 1
    assert [a["validator"] for a in newest["attestations"]] == [node.identity.public_key.hex()]
    path = f"/v1/snapshots/{newest['height']}/chunks/0"
    resp = await client.get(path, headers=signed(node.identity, node.identity.id, path))
    assert resp.status == 200 and chunk_hash(await resp.read()).hex() == newest["chunk_hashes"][0]
    path = f"/v1/snapshots/{newest['height']}/chunks/7"
    resp = await client.get(path, headers=signed(node.identity, node.identity.id, path))
    assert resp.status == 404 and (await resp.json())["error"] == "unknown_snapshot"


async def test_join_refused_until_admitted_then_a_verified_home(snapshotting, tmp_path: Path):
    client, node = snapshotting
    poster = TxPoster(client)
    url = str(client.make_url("")).rstrip("/")
    home = tmp_path / "joiner"
    with pytest.raises(JoinError, match="only an admitted institution"):
        await asyncio.to_thread(join_network, home, url, name="new-hospital")
    assert not (home / "config.toml").exists() and (home / "institution.key").exists()
    new_id = NodeHome(home).path("institution.key")
    from node.home.keys import load_key_file

    joiner = load_key_file(new_id)
    done = await poster.tx(node.identity, "governance.admit_institution",
                           {"institution": joiner.public_key, "name": "new-hospital"})
    assert done["status"] == "committed" and done["result"] == "ok"
    joined = await asyncio.to_thread(join_network, home, url, name="new-hospital", api_port=8799, p2p_port=8899)
    assert joined.node_id == joiner.id and joined.height == node.store.height and joined.attestations == 1
    cfg = NodeHome(home).load_config()
    assert cfg.node.observer and cfg.api.port == 8799 and node.identity.public_key.hex() in cfg.p2p.peers

    from node.daemon import open_node

    opened = open_node(home)  # runs the start-up integrity check on a store that begins at the snapshot
    try:
        assert (opened.store.height, opened.store.base_height) == (joined.height, joined.height)
        assert opened.store.state_root == node.store.state_root and not opened.is_validator
        assert list(opened.store.state_items(b"")) == list(node.store.state_items(b""))
    finally:
        opened.store.close()


async def test_no_one_but_an_institution_reads_a_snapshot_chunk(snapshotting):
    """A researcher (attested by this institution), a patient and a key the ledger does not know
    are each refused the listing and the chunk bytes (the state holds patient-linkable metadata)."""
    from node.app.types.identity import attest

    client, node = snapshotting
    poster = TxPoster(client)
    patient = Identity.from_seed(b"q" * 32)
    researcher = Identity.from_seed(b"r" * 32)
    stranger = Identity.from_seed(b"s" * 32)
    assert (await poster.tx(patient, "identity.register", {"role": "patient"}))["status"] == "committed"
    body = {"role": "researcher", "institution": node.identity.public_key,
            "attestation": attest(node.identity, chain_id=CHAIN, registrant=researcher.public_key, role="researcher")}
    assert (await poster.tx(researcher, "identity.register", body))["status"] == "committed"
    own = await client.get("/v1/snapshots", headers=signed(node.identity, node.identity.id, "/v1/snapshots"))
    height = (await own.json())["snapshots"][0]["height"]
    chunk = f"/v1/snapshots/{height}/chunks/0"
    for who in (researcher, patient, stranger):
        for path in ("/v1/snapshots", chunk):
            resp = await client.get(path, headers=signed(who, node.identity.id, path))
            assert resp.status in (401, 403), (who.id, path, resp.status)
