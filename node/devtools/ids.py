"""`medledger devnet ids`: every institution of a local network, with its name, kind and id.

Read from the devnet directory first: each home root/node<i> (its config's name, its key's id,
its API URL) and the shared genesis (the kinds it names, the genesis validators). Then, when one
of the nodes answers, from the ledger: each home's identity (`GET /v1/identities/{id}`: an
institution admitted since the genesis, `devnet add`, and its kind) and the current validator
set (`GET /v1/validators`). `source` says which: "ledger" or "files" (no node answered, so an
institution admitted after the genesis shows as not admitted, its kind unspecified).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.chain.genesis import Genesis, GenesisError
from node.chain.vocabulary import UNSPECIFIED
from node.client import ApiError, Client, ClientError
from node.devtools.cluster import Cluster, ClusterError, ClusterNode, home_config

ASK_TIMEOUT_S = 2.0  # per request to a local node: a devnet that is down answers at once or never


class IdsError(Exception):
    """The directory holds no devnet (the message says what was expected)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstitutionRow:
    node: str  # the home's directory name (node0 ...)
    name: str
    kind: str
    id: str
    api: str
    validator: bool
    admitted: bool  # an institution on the ledger (the genesis, or voted in)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "id": self.id, "api": self.api, "validator": self.validator,
                "node": self.node, "admitted": self.admitted}


@dataclass(frozen=True, slots=True, kw_only=True)
class DevnetIds:
    root: Path
    source: str  # "ledger" (a node answered) or "files"
    asked: str | None  # the API URL that answered
    institutions: tuple[InstitutionRow, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dir": str(self.root), "source": self.source, "asked": self.asked,
                "institutions": [row.to_json() for row in self.institutions]}


def _ledger(nodes: list[ClusterNode], ca_file: Path | None) -> tuple[Client, set[str]] | None:
    """A client of the first node that answers, and the ids of the current validator set."""
    for node in nodes:
        client = Client(node.api_url, timeout=ASK_TIMEOUT_S, ca_file=ca_file)
        try:
            current = client.validators()
        except (ApiError, ClientError):
            continue
        ids = {str(v.get("id")) for v in current.get("validators", []) if isinstance(v, dict)}
        return client, ids
    return None


def devnet_ids(root: Path, *, ask: bool = True) -> DevnetIds:
    """The institutions of the devnet at `root` (module docstring); `ask=False` reads the files only."""
    try:
        cluster = Cluster.open(root)
    except ClusterError as exc:
        raise IdsError(f"{exc}; make one with `medledger devnet init --dir {root}`") from None
    try:
        genesis = Genesis.load(cluster.nodes[0].home / "genesis.json")
    except GenesisError as exc:
        raise IdsError(str(exc)) from None
    kinds = {inst.id.hex(): inst.kind for inst in genesis.institutions}
    admitted = set(kinds) | {v.id.hex() for v in genesis.validators}
    validators = {v.id.hex() for v in genesis.validators}
    answered = _ledger(cluster.nodes, cluster.ca_file) if ask else None
    if answered is not None:
        validators = answered[1]
    rows = []
    for node in cluster.nodes:
        cfg = home_config(node.home) or {}
        name = str(cfg.get("node", {}).get("name") or node.home.name)
        kind, on_ledger = kinds.get(node.node_id, UNSPECIFIED), node.node_id in admitted
        if answered is not None:
            try:
                found = answered[0].get(f"/v1/identities/{node.node_id}")
            except ApiError:
                found = None  # 404: not (yet) on the ledger
            except ClientError:
                found = {"role": "institution", "kind": kind} if on_ledger else None  # it stopped answering: the files
            on_ledger = isinstance(found, dict) and found.get("role") == "institution"
            if on_ledger and isinstance(found, dict):
                kind = str(found.get("kind", UNSPECIFIED))
                name = str(found.get("label") or name)
        rows.append(InstitutionRow(node=node.home.name, name=name, kind=kind, id=node.node_id, api=node.api_url,
                                   validator=node.node_id in validators, admitted=on_ledger))
    return DevnetIds(root=root, source="ledger" if answered else "files",
                     asked=answered[0].base_url if answered else None, institutions=tuple(rows))
