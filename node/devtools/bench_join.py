"""`medledger bench --join`: how long a new institution takes to join the loaded network, by a
full replay from the genesis and from the newest snapshot.

After the load (node/devtools/bench_run.py), two new institutions are admitted by the
validators' vote (governance, the same for both ways, so not timed) and the chain is driven with
a few registrations to the next multiple of the validators' snapshot interval, so that a
snapshot of the tip exists; the bench waits until every validator has written and signed it.
Then, one after the other (never both at once: they share the cores):

- replay: a home made from the genesis (`add_node_home`, as `devnet add` makes one without a
  snapshot) and its node started; it fetches every block by block sync and checks each as a
  real joiner does (certificate, parent, execution, roots);
- snapshot: `join_network` (`medledger node init --join`: the listing, the other validators'
  attestations, every chunk fetched and checked, the state written) and its node started.

Each is timed from before its home is made until its API reports the network's tip (measured
when it starts), and must then hold that block with the network's hash and state root. The
joiners take no snapshots of their own (storage.snapshot_interval 0), so the replay's time is
the replay's alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.client import ApiError, ClientError, HealthClient
from node.core.crypto import Identity
from node.chain.genesis import Genesis
from node.devtools.bench import BenchError, commit_setup, prepare
from node.devtools.cluster import Cluster, ClusterError, ClusterNode, free_ports, http_json
from node.devtools.grow import GrowError, _admitted, _vote, _voters
from node.home.keys import write_key_file
from node.home.layout import JoinError, add_node_home, join_network
from storage.snapshots import snapshot_bytes

DEFAULT_INTERVAL = 50  # blocks between the validators' snapshots during a --join run
FILL_TXS = 5  # registrations per block that drives the chain to the snapshot height
JOIN_TIMEOUT_S = 3600.0  # the longest a joiner may take to reach the tip


def interval_env(interval: int) -> dict[str, str]:
    """The validators' environment for a --join run: a snapshot every `interval` blocks."""
    return {"MEDLEDGER_STORAGE_SNAPSHOT_INTERVAL": str(interval)}


def committed_txs(url: str, first: int, last: int) -> int:
    """How many transactions the blocks `first`..`last` at the node `url` hold."""
    count, since = 0, first
    while since <= last:
        blocks = http_json(f"{url}/v1/commits?since={since}&limit=1000", timeout=30)["blocks"]
        if not blocks:
            break
        count += sum(len(b["txs"]) for b in blocks if b["height"] <= last)
        since = blocks[-1]["height"] + 1
    return count


def _height(url: str) -> int:
    return int(http_json(url + "/v1/status", timeout=10)["height"])


def _wait(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout:g} s")
        time.sleep(every)  # polling a process's state, with a deadline
    return value


def _identity(seed: bytes, name: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(seed + b"join-" + name.encode()).digest())


def admit(cluster: Cluster, joiners: list[tuple[Identity, str]]) -> None:
    """Have the cluster's validators admit each joiner as an institution (may fetch snapshots, may link)."""
    client = HealthClient(cluster.nodes[0].api_url, timeout=30.0)
    try:
        voters = _voters(cluster, client)
        for identity, name in joiners:
            _vote(client, voters, "governance.admit_institution", {"institution": identity.public_key, "name": name},
                  _admitted(client, identity), f"admitting {name}")
    except (GrowError, ApiError, ClientError) as exc:
        raise BenchError(f"the joiners could not be admitted: {exc}") from None


def snapshot_at_tip(urls: tuple[str, ...], chain_id: str, interval: int, seed: bytes, reader: Identity,
                    timeout: float) -> int:
    """Drive the chain to the next multiple of `interval` (a few registrations a block) and wait
    until every validator lists its snapshot; returns the snapshot's height."""
    target = -(-_height(urls[0]) // interval) * interval
    step = 0
    while (height := _height(urls[0])) < target:
        step += 1
        fill = prepare(chain_id, FILL_TXS, seed=hashlib.sha256(seed + b"fill" + step.to_bytes(4, "big")).digest()[:16])
        asyncio.run(commit_setup(urls[:1], [fill], timeout_s=timeout))
        if step > 4 * interval:
            raise BenchError(f"the chain did not reach the snapshot height {target} (at {height})")

    def everywhere() -> bool:
        for url in urls:
            listing = HealthClient(url, timeout=10.0).snapshots(reader).get("snapshots") or []
            if not any(s.get("height") == target for s in listing):
                return False
        return True

    _wait(everywhere, timeout, f"not every validator wrote the snapshot at height {target}", every=0.2)
    return target


def _follow(node: ClusterNode, tip: int, timeout: float, what: str) -> None:
    def reached() -> bool:
        status = node.status(timeout=5.0)
        return status is not None and int(status["height"]) >= tip

    _wait(reached, timeout, f"the {what} joiner did not reach height {tip} (see {node.home / 'node.log'})")


def _same_block(node: ClusterNode, url: str, height: int, what: str) -> str:
    mine = http_json(f"{node.api_url}/v1/blocks/{height}", timeout=30)
    theirs = http_json(f"{url}/v1/blocks/{height}", timeout=30)
    if (mine["hash"], mine["header"]["state_root"]) != (theirs["hash"], theirs["header"]["state_root"]):
        raise BenchError(f"the {what} joiner holds another block {height} than the network: {mine['hash']} "
                         f"(state root {mine['header']['state_root']}), not {theirs['hash']}")
    return str(mine["header"]["state_root"])


def _run_joiner(root: Path, home: Path, identity: Identity, url: str, make_home: Callable[[int, int], str],
                what: str, timeout: float) -> dict[str, Any]:
    """Time one joiner: its home made (`make_home(api_port, p2p_port)` gives its API URL), its
    node started, until it holds the tip measured now; then stop it."""
    tip = _height(url)
    api_port, p2p_port = free_ports(2)
    started = time.perf_counter()
    api_url = make_home(api_port, p2p_port)
    made = time.perf_counter()
    alone = Cluster(root, [ClusterNode(0, home, api_url, identity.id)], extra_env=interval_env(0))  # a cluster of its own
    try:
        alone.start()
        _follow(alone.nodes[0], tip, timeout, what)
        seconds = time.perf_counter() - started
        root_hex = _same_block(alone.nodes[0], url, tip, what)
    except ClusterError as exc:
        raise BenchError(str(exc)) from None
    finally:
        alone.stop_all()
    return {"tip": tip, "s": round(seconds, 2), "home_s": round(made - started, 2), "state_root": root_hex}


def measure_join(cluster: Cluster, *, interval: int, seed: bytes, timeout: float = JOIN_TIMEOUT_S,
                 say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Admit two institutions, make a snapshot of the tip, and time a replay join and a snapshot
    join (module docstring); returns the join_* fields of the bench result."""
    urls = tuple(n.api_url for n in cluster.nodes)
    chain_id = str(http_json(urls[0] + "/v1/status")["chain_id"])
    genesis = Genesis.from_json(http_json(urls[0] + "/v1/genesis", timeout=10))
    replay_id, snap_id = _identity(seed, "replay"), _identity(seed, "snapshot")
    say("join: admitting two new institutions")
    admit(cluster, [(replay_id, "joiner-replay"), (snap_id, "joiner-snapshot")])
    say(f"join: driving the chain to the next snapshot (every {interval} blocks)")
    snap_height = snapshot_at_tip(urls, chain_id, interval, seed, snap_id, timeout=max(300.0, timeout / 10))
    peers = ",".join(f"{v['id']}@{v['address']}" for v in http_json(urls[0] + "/v1/validators")["validators"]
                     if v.get("address"))
    root = cluster.root
    replay_home, snap_home = root / "joiner-replay", root / "joiner-snapshot"
    for home, identity in ((replay_home, replay_id), (snap_home, snap_id)):
        home.mkdir(mode=0o700)
        write_key_file(home / "institution.key", identity)  # the admitted key (join_identity keeps it)

    def genesis_home(api_port: int, p2p_port: int) -> str:
        return add_node_home(replay_home, genesis=genesis, name="joiner-replay", api_port=api_port, p2p_port=p2p_port,
                             peers=peers).api_url

    def snapshot_home(api_port: int, p2p_port: int) -> str:
        try:
            return join_network(snap_home, urls[0], api_port=api_port, p2p_port=p2p_port, name="joiner-snapshot",
                                observer=False).api_url
        except JoinError as exc:
            raise BenchError(f"the snapshot joiner could not join: {exc}") from None

    say("join: a new institution replays the chain from the genesis")
    replay = _run_joiner(root, replay_home, replay_id, urls[0], genesis_home, "replay", timeout)
    say(f"join: replay reached height {replay['tip']} in {replay['s']} s; now one joins from the snapshot")
    snap = _run_joiner(root, snap_home, snap_id, urls[0], snapshot_home, "snapshot", timeout)
    node0_snapshots = cluster.nodes[0].home / "snapshots"
    listing = HealthClient(urls[0], timeout=10.0).snapshots(snap_id).get("snapshots") or []
    used: dict[str, Any] = next((s for s in listing if s.get("height") == snap_height), {})
    return {
        "join_tip_height": replay["tip"],
        "join_chain_txs": committed_txs(urls[0], 1, replay["tip"]),
        "join_snapshot_interval": interval,
        "join_snapshot_height": snap_height,
        "join_snapshot_bytes": snapshot_bytes(node0_snapshots, snap_height),
        "join_snapshot_chunks": int(used.get("chunks", 0)),
        "join_snapshot_entries": int(used.get("entries", 0)),
        "join_replay_s": replay["s"],
        "join_replay_state_root": replay["state_root"],
        "join_snapshot_tip_height": snap["tip"],
        "join_snapshot_s": snap["s"],
        "join_snapshot_init_s": snap["home_s"],  # of join_snapshot_s: fetching, checking and writing the state
        "join_snapshot_state_root": snap["state_root"],
        "join_time_ratio": round(snap["s"] / replay["s"], 4) if replay["s"] > 0 else 0.0,
    }
