"""Creating node homes: a one-validator network (`node init`) or one home per institution of a
local multi-node network (`devnet init`; with `tls=True`, a local CA and a certificate per node,
see node/home/tls.py)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from node.home.config import ApiSection, NodeConfig, NodeHome, NodeSection, P2PSection, TlsFiles, dump_toml
from node.core.crypto import Identity
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.chain.vocabulary import UNSPECIFIED
from node.home.keys import write_key_file


class HomeExists(Exception):
    """The directory already holds a node home; we never overwrite keys or data."""


@dataclass(frozen=True, slots=True)
class InitializedNode:
    home: Path
    node_id: str
    api_url: str


def _check_empty(root: Path) -> None:
    if (root / "config.toml").exists() or (root / "institution.key").exists():
        raise HomeExists(f"{root} already holds a node home; choose another directory or remove it")


def init_network(
    dirs: list[Path],
    *,
    chain_id: str,
    names: list[str],
    kinds: Sequence[str] | None = None,
    api_host: str = "127.0.0.1",
    api_ports: list[int],
    p2p_ports: list[int],
    observer: bool = False,
    observer_dirs: Sequence[Path] = (),
    observer_api_ports: Sequence[int] = (),
    observer_p2p_ports: Sequence[int] = (),
    hosts: list[str] | None = None,
    tls: bool = False,
) -> list[InitializedNode]:
    """Write keys, configs and one shared genesis for the given node homes (and observers).

    Every validator listens on `api_host`, or with `hosts` on its own address (one per
    directory: institutions on separate hosts), and the genesis lists that address. `kinds`
    (one per directory, node/chain/vocabulary.py) are the institutions' kinds in the genesis;
    without them every kind is "unspecified".

    With `tls`, the parent directory of the first home gets `ca.pem` (a fresh CA whose key is
    never written), and every home gets `tls.crt`, `tls.key` and `ca.pem`: its API serves https
    and its peer links use TLS verified against that CA."""
    for d in [*dirs, *observer_dirs]:
        _check_empty(d)
    hosts = list(hosts) if hosts is not None else [api_host] * len(dirs)
    if len(hosts) != len(dirs):
        raise ValueError("give one host per validator directory")
    kinds = list(kinds) if kinds is not None else [UNSPECIFIED] * len(dirs)
    if len(kinds) != len(dirs):
        raise ValueError("give one kind per validator directory")
    scheme = "https" if tls else "http"
    ca = None
    if tls:
        from node.home.tls import make_local_ca

        ca = make_local_ca()
        root = dirs[0].parent if dirs else observer_dirs[0].parent
        root.mkdir(parents=True, exist_ok=True)
        (root / "ca.pem").write_bytes(ca.pem)

    def tls_files(d: Path, name: str, host: str) -> TlsFiles:
        if ca is None:
            return {}
        from node.home.tls import issue_certificate, write_private

        cert, key = issue_certificate(ca, name, sorted({host, api_host, "127.0.0.1", "localhost"}))
        (d / "tls.crt").write_bytes(cert)
        write_private(d / "tls.key", key)
        (d / "ca.pem").write_bytes(ca.pem)
        return {"tls_cert": "tls.crt", "tls_key": "tls.key", "tls_ca": "ca.pem"}
    observer_ids = [Identity.generate() for _ in observer_dirs]
    # the institutions of one local network share the research secret (study pseudonym keys)
    research_secret = os.urandom(32).hex()
    identities = [Identity.generate() for _ in dirs]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=time.time_ns() // 1_000_000,
        validators=tuple(
            ValidatorInfo(id=ident.public_key, name=name, address=f"{host}:{p2p}", api=f"{scheme}://{host}:{api}")
            for ident, name, host, api, p2p in zip(identities, names, hosts, api_ports, p2p_ports, strict=True)
        ),
        institutions=tuple(InstitutionInfo(id=ident.public_key, name=name, kind=kind)
                           for ident, name, kind in zip(identities, names, kinds, strict=True)),
    )
    out = []
    for d, ident, name, host, api, p2p in zip(dirs, identities, names, hosts, api_ports, p2p_ports, strict=True):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        write_key_file(d / "institution.key", ident)
        genesis.save(d / "genesis.json")
        secret_fd = os.open(d / "research.secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(secret_fd, "w") as fh:
            fh.write(research_secret + "\n")
        files = tls_files(d, name, host)
        cfg = NodeConfig(
            node=NodeSection(name=name, observer=observer),
            api=dataclasses.replace(ApiSection(), host=host, port=api, **files),
            p2p=dataclasses.replace(P2PSection(), host=host, port=p2p, observers=",".join(o.id for o in observer_ids),
                                    **files),
        )
        NodeHome(d).config_path.write_text(dump_toml(cfg))
        out.append(InitializedNode(home=d, node_id=ident.id, api_url=f"{scheme}://{host}:{api}"))
    peers = ",".join(f"{v.id.hex()}@{v.address}" for v in genesis.validators)
    for i, (d, ident, api, p2p) in enumerate(zip(observer_dirs, observer_ids, observer_api_ports, observer_p2p_ports, strict=True)):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        write_key_file(d / "institution.key", ident)
        genesis.save(d / "genesis.json")
        files = tls_files(d, f"observer-{i}", api_host)
        cfg = NodeConfig(
            node=NodeSection(name=f"observer-{i}", observer=True),
            api=dataclasses.replace(ApiSection(), host=api_host, port=api, **files),
            p2p=dataclasses.replace(P2PSection(), host=api_host, port=p2p, peers=peers, **files),
        )
        NodeHome(d).config_path.write_text(dump_toml(cfg))
        out.append(InitializedNode(home=d, node_id=ident.id, api_url=f"{scheme}://{api_host}:{api}"))
    return out


def write_config(root: Path, cfg: NodeConfig) -> None:
    """Write the home's config.toml in one step (a reader never sees half of it): a directory
    becomes a node home when its configuration appears."""
    path = NodeHome(root).config_path
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump_toml(cfg))
    os.replace(tmp, path)


class JoinError(Exception):
    """Joining from a snapshot failed (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class JoinedNode:
    home: Path
    node_id: str
    api_url: str
    height: int  # the snapshot's height: the node follows blocks from height + 1
    genesis_hash: str
    attestations: int  # validators' attestations of the snapshot found (f + 1 valid ones were required)


def join_identity(root: Path) -> Identity:
    """The new institution's key: the one a previous, refused attempt left, or a fresh one."""
    from node.home.keys import load_key_file

    if (root / "config.toml").exists():
        raise HomeExists(f"{root} already holds a node home; choose another directory or remove it")
    key_path = root / "institution.key"
    if key_path.exists():
        return load_key_file(key_path)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    identity = Identity.generate()
    write_key_file(key_path, identity)
    return identity


SNAPSHOT_PREFETCH = 4  # snapshot chunks fetched ahead of the one being checked and written (each at most a few MiB)


def prefetched(fetch: Callable[[int], bytes], count: int, depth: int = SNAPSHOT_PREFETCH) -> Iterator[bytes]:
    """`fetch(0)`, ..., `fetch(count - 1)` in order, up to `depth` of them under way ahead on two
    threads: the network and the serving node work while this thread checks and writes the chunk
    before. At most `depth` chunks are held; a consumer that stops early waits only for those."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="snapshot-fetch") as pool:
        window = deque(pool.submit(fetch, i) for i in range(min(depth, count)))
        following = len(window)
        try:
            while window:
                data = window.popleft().result()
                if following < count:
                    window.append(pool.submit(fetch, following))
                    following += 1
                yield data
        finally:
            for waiting in window:
                waiting.cancel()


def join_network(root: Path, url: str, *, api_host: str = "127.0.0.1", api_port: int = 8700,
                 p2p_port: int = 8800, name: str = "institution", ca_file: str | None = None,
                 observer: bool = True) -> JoinedNode:
    """Create a home for a new institution from the network at `url`: its genesis, and the
    state of its newest snapshot, checked (node/runtime/snapshots.py: the block's commit
    certificate, f + 1 validators' attestations, every chunk) before it is written. The home
    is an observer's (with `observer=False`, one that votes once the validators vote its key in);
    `node run` follows blocks from the snapshot on. Raises JoinError."""
    import shutil

    from node.client import ApiError, Client, ClientError
    from node.runtime.snapshots import SetChange, start_from_snapshot
    from storage.chain import ChainStore
    from storage.kv import LOAD_WRITE_BUFFER_BYTES, LevelDBStore
    from storage.snapshots import SnapshotInfo, SnapshotInvalid

    identity = join_identity(root)
    client = Client(url, ca_file=ca_file)
    try:
        genesis = Genesis.from_json(client.genesis())
        listing = client.snapshots(identity)
        overview = client.validators(proofs=True)
        changes = [SetChange.from_json(c) for c in overview.get("changes", [])]
        apis = [v.api for v in genesis.validators] + [str(v.get("api") or "") for v in overview.get("validators", [])]
    except ApiError as exc:
        if exc.status in (401, 403):
            raise JoinError(f"{url} refused to serve its snapshots to institution {identity.id}: only an admitted "
                            f"institution may fetch them. Ask the validators to admit it (governance.admit_institution), "
                            f"then run the same command again (the key in {root} is kept)") from None
        raise JoinError(f"{url} refused: {exc.code}: {exc.message}") from None
    except (ClientError, KeyError, TypeError, ValueError) as exc:
        raise JoinError(f"cannot fetch the genesis, the validator-set changes and the snapshots from {url}: {exc}") from None
    if not listing.get("snapshots"):
        raise JoinError(f"{url} holds no snapshot yet (one is taken every storage.snapshot_interval blocks)")
    newest = listing["snapshots"][0]

    def parse(doc: dict[str, object]) -> tuple[SnapshotInfo, list[tuple[bytes, bytes]]]:
        def h(field: str) -> bytes:
            return bytes.fromhex(str(doc[field]))

        info = SnapshotInfo(chain_id=str(doc["chain_id"]), height=int(str(doc["height"])), block_hash=h("block_hash"),
                            state_root=h("state_root"), block=h("block"), certificate=h("certificate"),
                            chunk_hashes=tuple(bytes.fromhex(c) for c in doc["chunk_hashes"]),  # type: ignore[attr-defined]
                            entries=int(str(doc["entries"])), entries_hash=h("entries_hash"), state_sum=h("state_sum"))
        signed = [(bytes.fromhex(a["validator"]), bytes.fromhex(a["signature"])) for a in doc["attestations"]]  # type: ignore[attr-defined]
        return info, signed

    try:
        info, signed = parse(newest)
    except (KeyError, TypeError, ValueError) as exc:
        raise JoinError(f"{url} answered a snapshot listing that does not parse: {exc}") from None
    # the other validators' attestations of the same snapshot (each signs the one it wrote): the
    # genesis ones and the current ones (an added validator's API is in its record); the
    # attestations count only for validators of the verified set of the snapshot's height
    for api in dict.fromkeys(apis):
        if not api or api.rstrip("/") == client.base_url:
            continue
        try:
            for doc in Client(api, ca_file=ca_file, timeout=10.0).snapshots(identity).get("snapshots", []):
                if doc.get("height") == info.height:
                    signed += parse(doc)[1]
        except (ClientError, KeyError, TypeError, ValueError):
            continue  # an unreachable validator; the count below says whether enough were found
    data_dir = root / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    store = ChainStore(LevelDBStore(data_dir / "chain", write_buffer_bytes=LOAD_WRITE_BUFFER_BYTES))
    try:
        chunks = prefetched(lambda i: client.snapshot_chunk(info.height, i, identity), len(info.chunk_hashes))
        start_from_snapshot(store, genesis=genesis, info=info, chunks=chunks, attestations=signed, changes=changes)
    except (SnapshotInvalid, ClientError) as exc:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise JoinError(f"the snapshot at height {info.height} from {url} was refused: {exc}") from None
    store.close()
    genesis.save(root / "genesis.json")
    if ca_file:  # the CA the network's APIs are verified against, for this node's calls to them
        shutil.copyfile(ca_file, root / "ca.pem")
    # the current validators (an added one is only in its record), then the genesis ones whose
    # address no current validator holds (a rotated-out key's address is its new key's)
    known = {str(v["id"]): str(v["address"]) for v in overview.get("validators", [])
             if isinstance(v, dict) and v.get("id") and v.get("address")}
    known.update({v.id.hex(): v.address for v in genesis.validators if v.address not in known.values()})
    peers = ",".join(f"{vid}@{address}" for vid, address in known.items() if address)
    cfg = NodeConfig(
        node=NodeSection(name=name, observer=observer),
        api=dataclasses.replace(ApiSection(), host=api_host, port=api_port, tls_ca="ca.pem" if ca_file else ""),
        p2p=dataclasses.replace(P2PSection(), host=api_host, port=p2p_port, peers=peers),
    )
    write_config(root, cfg)
    return JoinedNode(home=root, node_id=identity.id, api_url=f"http://{api_host}:{api_port}", height=info.height,
                      genesis_hash=genesis.hash().hex(), attestations=len({s for s, _ in signed}))


def add_node_home(root: Path, *, genesis: Genesis, name: str, api_port: int, p2p_port: int, peers: str,
                  research_secret: str | None = None, api_host: str = "127.0.0.1") -> InitializedNode:
    """One more institution's home beside a local network's (`devnet add`): its key (the one
    `join_identity` left, or a fresh one), the network's genesis and research secret, and a
    configuration that dials `peers` (id@host:port,...). Not an observer: it follows the chain
    until the validators vote its key in, then votes. The configuration is written last, so a
    directory without it is not yet a home."""
    identity = join_identity(root)
    genesis.save(root / "genesis.json")
    if research_secret is not None:
        secret_fd = os.open(root / "research.secret", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(secret_fd, "w") as fh:
            fh.write(research_secret.strip() + "\n")
    cfg = NodeConfig(
        node=NodeSection(name=name),
        api=dataclasses.replace(ApiSection(), host=api_host, port=api_port),
        p2p=dataclasses.replace(P2PSection(), host=api_host, port=p2p_port, peers=peers),
    )
    write_config(root, cfg)
    return InitializedNode(home=root, node_id=identity.id, api_url=f"http://{api_host}:{api_port}")
