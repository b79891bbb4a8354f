"""A paused peer (SIGSTOP) is noticed by the heartbeat and relinked once it resumes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.signing import NaclSigner

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
HEARTBEAT = 0.4  # pong due within 0.2 s: a pause is noticed in well under a second


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
async def test_a_paused_peer_is_dropped_and_relinked_after_it_resumes(make_net, keys, fast_limits, pulse):
    limits = dataclasses.replace(fast_limits, heartbeat_interval=HEARTBEAT, connect_timeout=0.5, handshake_timeout=0.5)
    node, rec = await make_net(keys(0), limits=limits)
    key_byte = 99  # the child's signing key is bytes([99]) * 32
    child_id = NaclSigner.from_byte(key_byte).public_key
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "peer_process.py"),
        str(key_byte),
        "medledger-it",
        (b"\x42" * 32).hex(),
        str(HEARTBEAT),
        node.node_id.hex(),
        f"127.0.0.1:{node.port}",
        cwd=str(REPO_ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 20)
        assert line.startswith(b"READY "), line
        node.add_peer(child_id, f"127.0.0.1:{int(line.split()[1])}")
        await pulse.until(lambda: node.connected_peers() == [child_id], "the link to the child", timeout=10)
        assert await node.request(child_id, 1, b"before", timeout=2) == b"echo:before"

        child.send_signal(signal.SIGSTOP)
        await pulse.until(lambda: rec.disconnected, "the heartbeat to notice the pause", timeout=5)
        assert rec.disconnected[0] == (child_id, "heartbeat timeout (no pong)")
        # stay paused through failed redials (the kernel accepts, the upgrade never comes)
        await pulse.until(
            lambda: node.stats()["peers"][child_id.hex()]["dial_failures"] >= 2, "redials into the pause"
        )

        child.send_signal(signal.SIGCONT)
        await pulse.until(lambda: node.connected_peers() == [child_id], "the link after the resume", timeout=10)
        assert await node.request(child_id, 1, b"after", timeout=2) == b"echo:after"
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGCONT)
            child.terminate()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
    assert child.returncode == 0, "the child did not stop cleanly on SIGTERM"
