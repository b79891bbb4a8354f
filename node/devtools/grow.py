"""Growing a running local devnet by one institution (`medledger devnet add`).

`add_node` makes the home root/node<N> after the last one (the next API and peer ports), has
the validators of the current set approve the newcomer's admission with their institution keys
(root/node<i>/institution.key), and starts its node. An admitted institution's key may link to
every node as an observer (node/daemon.py `peer_allowed`), so no validator is reconfigured or
restarted. The new home is made from the newest verified snapshot when the network has one
(`node init --join`), else from the genesis, and the node follows by block sync. With
`validator=True` the validators then vote it into the validator set (`validator.add`),
effective two blocks after the approval that reaches the quorum.

Who starts the node: a running `devnet up` of that directory (it starts any home that appears
after its last one, and then restarts and stops it like the others), else this call, as a
process of its own (its pid in the home's node.pid, its log in node.log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.client import ApiError, ClientError, HealthClient as Client
from node.core.crypto import Identity
from node.chain.genesis import Genesis
from node.chain.vocabulary import devnet_kinds, devnet_names
from node.devtools.cluster import Cluster, ClusterError, ClusterNode, home_config, running_pid, running_supervisor
from node.home.keys import load_key_file
from node.home.layout import add_node_home, join_identity, join_network


class GrowError(Exception):
    """The devnet cannot grow now (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class AddedNode:
    index: int
    home: Path
    node_id: str
    name: str
    kind: str  # node/chain/vocabulary.py INSTITUTION_KINDS
    api_url: str
    address: str  # the peer address HOST:PORT
    started_by: str  # "devnet up" (the running supervisor) or "its own process"
    pid: int | None
    snapshot_height: int | None  # the snapshot the home was made from (None: from the genesis)
    effective_height: int | None  # with validator=True: the height it votes from

    def as_json(self) -> dict[str, Any]:
        return {"node": f"node{self.index}", "home": str(self.home), "node_id": self.node_id, "name": self.name,
                "kind": self.kind, "api_url": self.api_url, "address": self.address, "started_by": self.started_by, "pid": self.pid,
                "snapshot_height": self.snapshot_height, "validator": self.effective_height is not None,
                "effective_height": self.effective_height}


def _ports(cluster: Cluster) -> tuple[int, int]:
    """The next API and peer ports after the existing nodes' ones (skipping any taken now)."""
    apis, p2ps = [], []
    for n in cluster.nodes:
        cfg = home_config(n.home) or {}
        apis.append(int(cfg.get("api", {}).get("port", 8700)))
        p2ps.append(int(cfg.get("p2p", {}).get("port", 8800)))
    used = set(apis) | set(p2ps)

    def next_free(start: int) -> int:
        port = start
        while port in used or not _bindable(port):
            port += 1
        used.add(port)
        return port

    return next_free(max(apis) + 1), next_free(max(p2ps) + 1)


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _voters(cluster: Cluster, client: Client) -> list[Identity]:
    """The keys of the current set's validators that this devnet holds."""
    ids = [str(v["id"]) for v in client.validators()["validators"]]
    out = []
    for n in cluster.nodes:
        if n.node_id in ids:
            key = (home_config(n.home) or {}).get("node", {}).get("key_file", "institution.key")
            out.append(load_key_file(n.home / key))
    return out


def _vote(client: Client, voters: list[Identity], tx_type: str, body: dict[str, Any],
          done: Callable[[], bool], what: str) -> None:
    """One approval per validator, all sent to one node (so `done`, asked there after each
    committed approval, sees them all), until `done` says the vote passed."""
    for ident in voters:
        try:
            if done():
                return
            result = client.transact(ident, tx_type, body)
        except (ApiError, ClientError) as exc:
            raise GrowError(f"{what}: {client.base_url} refused the approval of {ident.id[:16]}...: {exc}") from None
        if result["status"] not in ("committed", "already_approved"):
            raise GrowError(f"{what}: the approval of {ident.id[:16]}... ended as {result['status']}: "
                            f"{result.get('message') or ''}".rstrip(": "))
    if not done():
        raise GrowError(f"{what}: the devnet's validators approved, but not enough of them to reach the quorum "
                        f"(this devnet holds the keys of {len(voters)})")


def _admitted(client: Client, identity: Identity) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return client.get(f"/v1/identities/{identity.id}").get("role") == "institution"
        except ApiError:
            return False
    return check


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise GrowError(f"{what} within {timeout:g} s")
        time.sleep(0.1)  # polling a process's state, with a deadline
    return value


def add_node(root: Path, *, name: str | None = None, kind: str | None = None, validator: bool = False, timeout: float = 60.0,
             say: Callable[[str], None] = lambda _m: None, starter: Callable[[Path], None] | None = None) -> AddedNode:
    """Make, admit and start one more institution's node in the devnet at `root` (module
    docstring); `say` hears the progress. `starter(home)`, when given, starts the new node
    instead (a caller that owns the devnet's processes, as `medledger chaos`). Without `kind` and
    `name`, the next ones of the devnet's order (`vocabulary.devnet_names`: the fifth node is
    the research centre). Raises GrowError."""
    try:
        cluster = Cluster.open(root)
    except ClusterError:
        raise GrowError(f"no devnet at {root} (no {root / 'node0' / 'config.toml'}; make one with "
                        f"`medledger devnet up --dir {root}`)") from None
    if cluster.ca_file is not None or any(n.api_url.startswith("https:") for n in cluster.nodes):
        raise GrowError(f"{root} is a TLS devnet: `devnet add` cannot make a certificate for a new node (the devnet's CA "
                        "key is never kept); grow a devnet made without --tls, or add the node by hand "
                        "(docs/operations.md, \"Joining from a snapshot\")")
    up = [n for n in cluster.nodes if n.status(timeout=1.0) is not None]
    if not up:
        raise GrowError(f"the devnet at {root} is not running (no node answers); start it with "
                        f"`medledger devnet up --dir {root}`")
    client = Client(up[0].api_url, timeout=10.0)
    try:
        voters = _voters(cluster, client)
        genesis = Genesis.from_json(client.genesis())
    except (ApiError, ClientError) as exc:
        raise GrowError(f"cannot read the validator set from {up[0].api_url}: {exc}") from None
    if not voters:
        raise GrowError(f"none of the validators' keys is under {root}: the devnet's own validators must approve")
    index = len(cluster.nodes)
    home = root / f"node{index}"
    kind = kind or devnet_kinds(index + 1)[index]
    name = name or devnet_names(index + 1)[index]
    api_port, p2p_port = _ports(cluster)
    identity = join_identity(home)
    say(f"node{index}: institution {identity.id[:16]}... ({name}, {kind}); asking {len(voters)} validators to admit it")
    _vote(client, voters, "governance.admit_institution", {"institution": identity.public_key, "name": name, "kind": kind},
          _admitted(client, identity), "admission")
    try:
        snapshots = client.snapshots(identity).get("snapshots") or []
    except (ApiError, ClientError):
        snapshots = []
    secret_file = cluster.nodes[0].home / "research.secret"
    secret = secret_file.read_text() if secret_file.exists() else None
    snapshot_height = None
    if snapshots:
        from node.home.layout import JoinError

        try:
            joined = join_network(home, client.base_url, api_port=api_port, p2p_port=p2p_port, name=name, observer=False)
        except JoinError as exc:
            raise GrowError(str(exc)) from None
        snapshot_height = joined.height
        if secret is not None:
            (home / "research.secret").write_text(secret)
            (home / "research.secret").chmod(0o600)
        api_url = joined.api_url
        say(f"node{index}: home made from the snapshot at height {joined.height}")
    else:
        peers = ",".join(f"{v['id']}@{v['address']}" for v in client.validators()["validators"] if v.get("address"))
        made = add_node_home(home, genesis=genesis, name=name, api_port=api_port, p2p_port=p2p_port, peers=peers,
                             research_secret=secret)
        api_url = made.api_url
        say(f"node{index}: home made from the genesis (it follows the chain by block sync)")
    node = ClusterNode(index, home, api_url, identity.id)
    supervisor = running_supervisor(root)
    pid: int | None
    if starter is not None:
        started_by = "the caller"
        starter(home)
        pid = running_pid(home)
    elif supervisor is not None:
        started_by = "devnet up"
        pid = _wait(lambda: running_pid(home), timeout, f"the running devnet up (pid {supervisor}) did not start node{index}")
    else:
        started_by = "its own process"
        alone = Cluster(root, [node])
        alone.start()
        pid = alone.nodes[0].process.pid if alone.nodes[0].process is not None else None
    _wait(lambda: node.status(timeout=1.0), timeout, f"node{index} did not answer (see {home / 'node.log'})")
    say(f"node{index}: running at {api_url} (started by {started_by}, pid {pid})")
    effective = None
    if validator:
        head = int((up[0].status() or {}).get("height", 0))
        _wait(lambda: int((node.status(timeout=1.0) or {}).get("height", -1)) >= head, timeout,
              f"node{index} did not catch up to height {head}")
        body = {"candidate": identity.public_key, "address": f"127.0.0.1:{p2p_port}", "api": api_url}
        reached: dict[str, int] = {}

        def voted_in() -> bool:
            try:
                proposal = client.validator_proposal("add", identity.id)
            except ApiError:
                return False
            if "effective_height" in proposal:
                reached["height"] = int(proposal["effective_height"])
            return "height" in reached

        _vote(client, voters, "validator.add", body, voted_in, "validator.add")
        effective = reached["height"]
    return AddedNode(index=index, home=home, node_id=identity.id, name=name, kind=kind, api_url=api_url,
                     address=f"127.0.0.1:{p2p_port}", started_by=started_by, pid=pid,
                     snapshot_height=snapshot_height, effective_height=effective)

