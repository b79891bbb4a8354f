"""Running a node from its home directory until SIGINT/SIGTERM.

Opens the store, loads key and genesis, starts the runtime and the HTTP API, and on a signal
stops accepting requests, cancels timers and closes LevelDB cleanly. A SIGKILL at any moment
loses nothing committed: every block is written in one synced batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from storage.chain import ChainStore
from storage.kv import LevelDBStore
from storage.offchain import OffchainStore

from p2p.limits import P2PLimits

from .api import make_app
from .byzantine import ENV_SEED, mode_from_env
from .byzantine import install as install_byzantine
from .custodian import Custodian
from .research_service import ResearchService
from .config import NodeHome
from .core.crypto import parse_id
from .genesis import Genesis
from .keys import load_key_file
from .runtime import Node

log = logging.getLogger("medledger.node")

ENV_CRASH_AT = "MEDLEDGER_TEST_CRASH_AT"  # with --unsafe-test-switches: exit at this point (storage.chain.CRASH_POINTS)


def open_node(home: Path, *, passphrase: str | None = None) -> Node:
    """Build a Node from a home directory (raises ConfigError, GenesisError, KeyFileError, StorageError)."""
    nh = NodeHome(home)
    config = nh.load_config()
    genesis = Genesis.load(nh.path(config.node.genesis_file))
    identity = load_key_file(nh.path(config.node.key_file), passphrase)
    data_dir = nh.path(config.node.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = ChainStore(LevelDBStore(data_dir / "chain"))
    try:
        node = Node(config=config, genesis=genesis, identity=identity, store=store)
        node.store_dir = data_dir
        node.home_dir = home
        return node
    except BaseException:
        store.close()
        raise


def peer_map(node: Node) -> dict[bytes, str]:
    """Whom this node dials: every other validator, plus configured extra peers."""
    peers = {v.id: v.address for v in node.genesis.validators if v.id != node.identity.public_key and v.address}
    for item in filter(None, (p.strip() for p in node.config.p2p.peers.split(","))):
        ident, _, address = item.partition("@")
        peers[parse_id(ident)] = address
    return peers


def allowed_peers(node: Node) -> set[bytes]:
    """Who may connect: validators, configured observers, and configured peers."""
    allowed = {v.id for v in node.genesis.validators}
    allowed.update(parse_id(x.strip()) for x in node.config.p2p.observers.split(",") if x.strip())
    allowed.update(peer_map(node))
    allowed.discard(node.identity.public_key)
    return allowed


async def serve(
    node: Node,
    *,
    ready: "asyncio.Future[str] | None" = None,
    stop: asyncio.Event | None = None,
    test_switches: bool = False,
) -> None:
    """Run `node`, its peer network and its API until `stop` is set or SIGINT/SIGTERM arrives."""
    from .network import NetworkService

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    allowed = allowed_peers(node)
    byzantine_mode = mode_from_env(test_switches)
    network = NetworkService(
        node, host=node.config.p2p.host, port=node.config.p2p.port, peers=peer_map(node),
        allowed=allowed.__contains__, test_switches=test_switches,
        # a garbage-sending test node may send frames over the limit its honest peers enforce
        limits=P2PLimits(reconnect_cap=5.0, max_frame_bytes=8 * 1024 * 1024) if byzantine_mode == "garbage" else None,
    )
    byzantine = None
    if byzantine_mode is not None:
        seed = int(os.environ.get(ENV_SEED, "0") or 0)
        byzantine = install_byzantine(node, network, byzantine_mode, seed)
    offchain = OffchainStore(LevelDBStore(node.store_dir / "records"))
    custodian = Custodian(node, offchain)
    node.commit_hooks.append(custodian.on_block_committed)
    custodian.reconcile()
    secret_path = NodeHome(node.home_dir or Path(".")).path(node.config.node.research_secret_file)
    secret = bytes.fromhex(secret_path.read_text().strip()) if secret_path.exists() else None
    research = ResearchService(node, offchain, secret)
    app = make_app(node, network=network if test_switches else None, custodian=custodian, research=research)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, node.config.api.host, node.config.api.port, reuse_address=True)
    network_started = False
    try:
        await network.start()
        network_started = True
        if byzantine is not None:
            byzantine.start()
        await site.start()
        node.start()
        url = f"http://{node.config.api.host}:{node.config.api.port}"
        log.info("API listening on %s", url)
        if ready is not None and not ready.done():
            ready.set_result(url)
        await stop.wait()
        log.info("stopping")
    finally:
        node.stop()
        if byzantine is not None:
            await byzantine.stop()
        if network_started:
            await network.stop()
        await runner.cleanup()
        node.store.close()
        offchain.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass


def run_node(home: Path, *, passphrase: str | None = None, test_switches: bool = False) -> None:
    """Blocking entry point of `medledger node run`."""
    mode_from_env(test_switches)  # refuse a Byzantine mode without test switches before opening anything
    node = open_node(home, passphrase=passphrase)
    if test_switches:
        node.store.crash_at = os.environ.get(ENV_CRASH_AT) or None
    asyncio.run(serve(node, test_switches=test_switches))
    log.info("stopped cleanly (pid %d)", os.getpid())
