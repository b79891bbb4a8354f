"""Running a node from its home directory until SIGINT/SIGTERM.

Opens the store, loads key and genesis, starts the runtime and the HTTP API, and on a signal
stops accepting requests, cancels timers and closes LevelDB cleanly. A SIGKILL at any moment
loses nothing committed: every block is written in one synced batch.

With `[api]` tls_cert/tls_key the API serves https only; with `[p2p]` tls_cert/tls_key peers
connect over TLS (wss) and this node dials them over TLS, verifying `[p2p] tls_ca`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import ssl
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from p2p.interfaces import FrameFilter
from p2p.limits import P2PLimits

from storage.chain import ChainStore
from storage.kv import LevelDBStore
from storage.offchain import OffchainStore

from node.api.routes_trials import install_trials
from node.api.app import SERVER_OPTIONS, make_app
from node.api.common import CLIENT_SSL_KEY, CUSTODIAN_KEY, NODE_KEY
from node.api.middleware import QuietClientErrors
from node.fhir.bulk import install_bulk
from node.fhir.routes import DELEGATE_KEY, install_fhir
from node.fhir.smart import install_smart
from node.records.custodian import Custodian
from node.records.node_delegate import NodeDelegate
from node.research.service import ResearchService
from node.home.config import NodeConfig, NodeHome, TlsFiles
from node.core.crypto import parse_id
from node.app.roles import INSTITUTION, role_of
from node.app.state import StateReader
from node.chain.genesis import Genesis
from node.home.keys import load_key_file
from node.home.logs import register_secret
from node.runtime.blocks import UpgradeRequired
from node.runtime.runtime import Node
from node.home.tls import client_context, server_context

log = logging.getLogger("medledger.node")


def with_tls_files(config: NodeConfig, cert: Path | None, key: Path | None) -> NodeConfig:
    """`node run --tls-cert --tls-key`: serve the API and the peer links with these files."""
    if cert is None and key is None:
        return config
    if cert is None or key is None:
        from node.home.config import ConfigError

        raise ConfigError("--tls-cert and --tls-key go together")
    files: TlsFiles = {"tls_cert": str(cert.resolve()), "tls_key": str(key.resolve())}
    return dataclasses.replace(config, api=dataclasses.replace(config.api, **files),
                               p2p=dataclasses.replace(config.p2p, **files))


def ssl_contexts(nh: NodeHome, config: NodeConfig) -> dict[str, ssl.SSLContext | None]:
    """The SSL contexts a node needs: API server, API client (to other nodes' APIs), p2p server
    and p2p client; None where TLS is off. Raises TlsError for unusable files."""
    def path(text: str) -> Path | None:
        return nh.path(text) if text else None

    api, p2p = config.api, config.p2p
    return {
        "api_server": server_context(nh.path(api.tls_cert), nh.path(api.tls_key)) if api.tls_cert else None,
        "api_client": client_context(path(api.tls_ca)) if (api.tls_ca or api.tls_cert) else None,
        "p2p_server": server_context(nh.path(p2p.tls_cert), nh.path(p2p.tls_key)) if p2p.tls_cert else None,
        "p2p_client": client_context(path(p2p.tls_ca)) if p2p.tls_cert else None,
    }


def p2p_limits(config: NodeConfig) -> P2PLimits:
    """The transport's limits, with the per-peer frame rate from `[p2p]`."""
    return P2PLimits(reconnect_cap=5.0, inbound_frames_per_second=float(config.p2p.max_frames_per_s),
                     inbound_frames_burst=config.p2p.frames_burst)


def open_node(home: Path, *, passphrase: str | None = None, config: NodeConfig | None = None) -> Node:
    """Build a Node from a home directory (raises ConfigError, GenesisError, KeyFileError, StorageError)."""
    nh = NodeHome(home)
    config = config or nh.load_config()
    genesis = Genesis.load(nh.path(config.node.genesis_file))
    identity = load_key_file(nh.path(config.node.key_file), passphrase)
    register_secret(identity.seed)
    register_secret(identity.seed + identity.public_key)  # the 64-byte form of the signing key
    data_dir = nh.path(config.node.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = ChainStore(LevelDBStore(data_dir / "chain"))
    try:
        return Node(config=config, genesis=genesis, identity=identity, store=store, store_dir=data_dir, home_dir=home)
    except BaseException:
        store.close()
        raise


def peer_map(node: Node) -> dict[bytes, str]:
    """Whom this node dials: every other validator (of the genesis, and of the set the ledger
    now records), plus configured extra peers."""
    peers = {vid: address for vid, address in node.membership.addresses().items() if vid != node.identity.public_key}
    for item in filter(None, (p.strip() for p in node.config.p2p.peers.split(","))):
        ident, _, address = item.partition("@")
        peers[parse_id(ident)] = address
    return peers


def allowed_peers(node: Node) -> set[bytes]:
    """The keys named as peers: validators (every key that was, is or will be in a validator
    set), configured observers, and configured peers (admitted institutions: `peer_allowed`)."""
    allowed = node.membership.known_ids()
    allowed.update(parse_id(x.strip()) for x in node.config.p2p.observers.split(",") if x.strip())
    allowed.update(peer_map(node))
    allowed.discard(node.identity.public_key)
    return allowed


def admits_peer(peer_id: bytes, *, named: set[bytes], state: StateReader, own_id: bytes) -> bool:
    """Whether `peer_id` may link: a named peer (`allowed_peers`), or any key the committed
    `state` registers with the role institution (an admitted institution may follow the chain
    as an observer without every validator listing it). Patients, staff and unknown keys may not."""
    if peer_id == own_id:
        return False
    return peer_id in named or role_of(state, peer_id) == INSTITUTION


def peer_allowed(node: Node, peer_id: bytes) -> bool:
    """The handshake's check (`serve`), read again at each handshake from the node's committed
    state and configuration: a validator voted in or an institution admitted links without a restart."""
    return admits_peer(peer_id, named=allowed_peers(node), state=node.state_reader(), own_id=node.identity.public_key)


def api_mounts(config: NodeConfig) -> list[Callable[[web.Application], None]]:
    """What the API serves beside its own routes: a clinical trial site's (node/api/routes_trials.py),
    and the FHIR server's (node/fhir/, docs/fhir.md: SMART authorisation, Bulk Data export, the
    REST routes) unless `[fhir] enabled = false`.
    The order matters: the REST routes answer every other path under /fhir/R4."""
    fhir = [install_smart, install_bulk, install_fhir_records] if config.fhir.enabled else []
    return [install_trials, *fhir]


def install_fhir_records(app: web.Application) -> None:
    """The FHIR REST routes acting through this node's records service: a NodeDelegate over the
    app's custodian, calling other custodians with the app's client TLS context."""
    app[DELEGATE_KEY] = NodeDelegate(app[NODE_KEY], app[CUSTODIAN_KEY], client_ssl=app.get(CLIENT_SSL_KEY))
    install_fhir(app)


class Service(Protocol):
    """Something a hook installs: started after the peer network, stopped before it."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class NodeHook(Protocol):
    """Test wiring around a node, given by the command layer (never built here): the test switches
    and Byzantine modes of node/devtools/switches.py and byzantine.py."""

    def p2p_limits(self, limits: P2PLimits) -> P2PLimits:
        """The peer limits to use instead of `limits`."""
        ...

    def frame_filter(self, node: Node) -> FrameFilter | None:
        """Which peers' traffic passes (None: all), asked before the peer network is built."""
        ...

    def install(self, node: Node, network: Any) -> Service | None:
        """Wire into the built node and network; what it returns starts after the network."""
        ...

    def routes(self, node: Node) -> Sequence[web.AbstractRouteDef]:
        """API routes to add to the node's application."""
        ...


async def serve(
    node: Node,
    *,
    ready: "asyncio.Future[str] | None" = None,
    stop: asyncio.Event | None = None,
    hook: NodeHook | None = None,
) -> None:
    """Run `node`, its peer network and its API until `stop` is set or SIGINT/SIGTERM arrives.

    `hook` (tests only: node/devtools/switches.py) may change the peer limits, filter the peer
    traffic, wrap the network and add API routes; what it installs starts after the network and
    stops before it."""
    from node.net.gossip import NetworkService

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    contexts = ssl_contexts(NodeHome(node.home_dir or Path(".")), node.config)
    limits = p2p_limits(node.config)
    network = NetworkService(
        node, host=node.config.p2p.host, port=node.config.p2p.port, peers=peer_map(node),
        allowed=lambda peer_id: peer_allowed(node, peer_id),
        frame_filter=hook.frame_filter(node) if hook is not None else None,
        limits=hook.p2p_limits(limits) if hook is not None else limits,
        ssl_server=contexts["p2p_server"], ssl_client=contexts["p2p_client"],
    )
    installed = hook.install(node, network) if hook is not None else None
    if node.store_dir is None:
        raise ValueError("serve() needs a node opened from a home (open_node): it keeps its records beside the chain")
    offchain = OffchainStore(LevelDBStore(node.store_dir / "records"))
    custodian = Custodian(node, offchain)
    node.add_commit_hook(custodian.on_block_committed)
    custodian.reconcile()
    secret_path = NodeHome(node.home_dir or Path(".")).path(node.config.node.research_secret_file)
    secret = bytes.fromhex(secret_path.read_text().strip()) if secret_path.exists() else None
    if secret is not None:
        register_secret(secret)
    research = ResearchService(node, offchain, secret, client_ssl=contexts["api_client"])
    app = make_app(node, custodian=custodian, research=research, client_ssl=contexts["api_client"],
                   extra_routes=hook.routes(node) if hook is not None else (),
                   mounts=api_mounts(node.config))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietClientErrors) for f in server_log.filters):
        server_log.addFilter(QuietClientErrors())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **SERVER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, node.config.api.host, node.config.api.port, reuse_address=True,
                       ssl_context=contexts["api_server"])
    network_started = False
    try:
        await network.start()
        network_started = True
        if installed is not None:
            installed.start()
        if not node.admission.start_verifiers():
            log.warning("the signature-verifying processes cannot start: this node verifies on its own thread")
        await site.start()
        node.on_halt = lambda _reason: stop.set()  # before a height this binary cannot follow
        node.start()
        custodian.start()  # uploads never announced are deleted after api.upload_ttl_ms
        scheme = "https" if contexts["api_server"] is not None else "http"
        url = f"{scheme}://{node.config.api.host}:{node.config.api.port}"
        log.info("API listening on %s", url)
        if ready is not None and not ready.done():
            ready.set_result(url)
        await stop.wait()
        log.info("stopping")
    finally:
        custodian.stop()
        node.stop()
        if installed is not None:
            await installed.stop()
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


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop where it is installed (a libuv event loop: less CPU per socket read
    and write than asyncio's own), else on asyncio's. MEDLEDGER_EVENT_LOOP=asyncio forces the
    latter (to compare, or to rule the loop out when chasing a bug)."""
    if os.environ.get("MEDLEDGER_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def run_node(home: Path, *, passphrase: str | None = None, test_switches: bool = False,
             tls_cert: Path | None = None, tls_key: Path | None = None, hook: NodeHook | None = None) -> None:
    """Blocking entry point of `medledger node run` (`hook`: test wiring, see `serve`, which
    `test_switches` must allow)."""
    if hook is not None and not test_switches:
        raise ValueError("test wiring needs --unsafe-test-switches")
    config = with_tls_files(NodeHome(home).load_config(), tls_cert, tls_key)
    ssl_contexts(NodeHome(home), config)  # refuse unusable certificate files before opening the store
    node = open_node(home, passphrase=passphrase, config=config)
    run_event_loop(serve(node, hook=hook))
    if node.halted is not None:
        raise UpgradeRequired(node.halted)
    log.info("stopped cleanly (pid %d)", os.getpid())
