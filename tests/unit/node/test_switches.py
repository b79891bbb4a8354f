"""The test switches (node/devtools/switches.py): only with --unsafe-test-switches, wired by a hook."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

import node.daemon
from node.api.app import make_app
from node.devtools.byzantine import ENV_MODE, ByzantineConfigError, ByzantineHook, hook_from_env
from node.devtools.switches import ENV_CRASH_AT, Partition, TestSwitchesHook, partition_routes
from tests.helpers import make_node

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


def test_no_switches_without_the_flag_whatever_the_environment():
    assert hook_from_env(False, {}) is None
    assert hook_from_env(False, {ENV_CRASH_AT: "commit-before-write"}) is None
    with pytest.raises(ByzantineConfigError, match="unsafe-test-switches"):
        hook_from_env(False, {ENV_MODE: "withhold"})


def test_the_flag_gives_the_partition_and_the_crash_point_and_a_named_byzantine_mode():
    honest = hook_from_env(True, {})
    assert isinstance(honest, TestSwitchesHook) and honest.crash_at is None and honest.byzantine is None
    crashing = hook_from_env(True, {ENV_CRASH_AT: "commit-after-write"})
    assert crashing is not None and crashing.crash_at == "commit-after-write"
    byzantine = hook_from_env(True, {ENV_MODE: "garbage"})
    assert byzantine is not None and isinstance(byzantine.byzantine, ByzantineHook)
    assert byzantine.byzantine.mode == "garbage"


def test_the_daemon_holds_no_test_switch():
    source = inspect.getsource(node.daemon)
    assert "MEDLEDGER_TEST" not in source and "/v1/test/" not in source and "crash_at" not in source


def test_a_partition_passes_only_its_group_until_healed():
    part = Partition(A)
    assert part.passes(B) and part.passes(C)
    part.set([{A, B}, {C}])
    assert part.passes(B) and not part.passes(C)
    part.set([{B, C}])  # in no group: cut off from everyone
    assert not part.passes(B) and not part.passes(C)
    with pytest.raises(ValueError, match="only one partition group"):
        part.set([{A}, {A, B}])
    part.heal()
    assert part.passes(B) and part.passes(C)


def test_the_hook_sets_the_crash_point_and_shares_one_partition(tmp_path: Path):
    ledger = make_node(tmp_path / "db")
    try:
        hook = TestSwitchesHook(crash_at="wal-after-append")
        assert hook.frame_filter(ledger) is hook.partition
        assert [r.path for r in hook.routes(ledger)] == ["/v1/test/partition"]
        assert hook.install(ledger, network=None) is None
        assert ledger.store.crash_at == "wal-after-append"
    finally:
        ledger.store.close()


async def test_the_partition_route_sets_and_heals_and_exists_only_when_given(tmp_path: Path):
    ledger = make_node(tmp_path / "db")
    part = Partition(ledger.identity.public_key)
    me = ledger.identity.public_key.hex()
    with_switch = TestClient(TestServer(make_app(ledger, extra_routes=partition_routes(part))))
    without = TestClient(TestServer(make_app(ledger)))
    await with_switch.start_server()
    await without.start_server()
    try:
        body = {"groups": [[me, B.hex()], [C.hex()]]}
        resp = await with_switch.post("/v1/test/partition", json=body)
        assert resp.status == 200
        assert await resp.text() == json.dumps({"ok": True, **body}, separators=(",", ":"))
        assert part.passes(B) and not part.passes(C)
        resp = await with_switch.post("/v1/test/partition", json={"groups": []})
        assert resp.status == 200 and await resp.json() == {"ok": True, "groups": []}
        assert part.passes(C)
        resp = await without.post("/v1/test/partition", json=body)
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    finally:
        await with_switch.close()
        await without.close()
        ledger.store.close()
