"""Protocol upgrades over the API and the CLI, on a one-validator node: `node upgrade-schedule`
schedules version 2 (one approval is the quorum), GET /v1/upgrades and /v1/status show it, and
`node upgrade-check` passes only for a binary that supports it."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner

from cli import main
from node.app.upgrades import UPGRADE_NOTICE
from node.commands.node import upgrade_verdict
from node.core.crypto import Identity
from node.home.keys import write_key_file


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


async def test_schedule_show_and_check(api, tmp_path, monkeypatch):
    client, node = api
    url = str(client.make_url("")).rstrip("/")
    key = tmp_path / "validator.key"
    write_key_file(key, Identity.from_seed(b"\x07" * 32))
    resp = await client.get("/v1/upgrades")
    assert await resp.json() == {"height": node.store.height, "supported_versions": [1], "protocol_version": 1,
                                 "scheduled": [], "pending": []}
    at = node.store.height + UPGRADE_NOTICE + 50
    r = await asyncio.to_thread(run, "node", "upgrade-schedule", "--key", str(key), "--version", "2",
                                "--height", str(at), "--node", url)
    assert r.exit_code == 0 and f"version 2 is scheduled from height {at}" in r.output
    doc = await (await client.get("/v1/upgrades")).json()
    assert doc["protocol_version"] == 1 and doc["pending"] == []
    assert [(u["height"], u["version"]) for u in doc["scheduled"]] == [(at, 2)]
    assert (await (await client.get("/v1/status")).json())["protocol_version"] == 1
    r = await asyncio.to_thread(run, "node", "upgrade-check", "--node", url)
    [line] = [line for line in r.stderr.splitlines() if "aiohttp.access" not in line]  # the server logs there too
    assert r.exit_code == 1 and r.stdout == "" and line.startswith(f"error: protocol version 2 is scheduled at height {at}")
    r = await asyncio.to_thread(run, "node", "upgrade-schedule", "--key", str(key), "--version", "2",
                                "--height", str(at), "--node", url)
    assert r.exit_code == 1 and "already_scheduled" in r.output
    monkeypatch.setattr("node.chain.block.SUPPORTED_VERSIONS", (1, 2))
    r = await asyncio.to_thread(run, "node", "upgrade-check", "--node", url, "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and out["ok"] and out["scheduled"][0]["supported"] and out["reason"] is None


def test_the_verdict_looks_at_the_next_height_and_what_is_ahead():
    info = {"height": 100, "protocol_version": 2, "pending": [],
            "scheduled": [{"height": 50, "version": 2, "scheduled_height": 10},
                          {"height": 200, "version": 3, "scheduled_height": 90}]}
    assert upgrade_verdict(info, (1, 2, 3)) is None
    assert "version 3 is scheduled at height 200 (100 blocks ahead)" in (upgrade_verdict(info, (1, 2)) or "")
    assert "follows protocol version 2 from height 101" in (upgrade_verdict(info, (1,)) or "")
