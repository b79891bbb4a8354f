"""Test switches of a node run with `--unsafe-test-switches`: a partition and a crash point.

None of this is in a production node: the daemon knows only its `NodeHook` protocol, and
`hook_from_env` (node/devtools/byzantine.py), which `medledger node run` calls, builds a
`TestSwitchesHook` only with that flag. The hook

- filters the node's peer traffic through a `Partition` (a `p2p.interfaces.FrameFilter`), which
  `POST /v1/test/partition {"groups": [[hex node id, ...], ...]}` sets and `{"groups": []}`
  heals (node/devtools/cluster.py drives it); frames across the cut vanish both ways while the
  links stay up, so healing restores traffic at once;
- sets the chain store's crash point from `MEDLEDGER_TEST_CRASH_AT` (one of
  `storage.chain.CRASH_POINTS`, where the process exits on the spot: the durability tests);
- and carries a Byzantine hook when the environment names a mode (node/devtools/byzantine.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from p2p.limits import P2PLimits
from p2p.network import short_id

from node.api.common import json_response
from node.runtime.runtime import Node

if TYPE_CHECKING:
    from node.devtools.byzantine import ByzantineHook, ByzantineTransport

log = logging.getLogger("medledger.switches")

ENV_CRASH_AT = "MEDLEDGER_TEST_CRASH_AT"  # with --unsafe-test-switches: exit at this point (storage.chain.CRASH_POINTS)
PARTITION_PATH = "/v1/test/partition"


class Partition:
    """A frame filter that lets through only the peers of this node's group (everyone when healed)."""

    def __init__(self, node_id: bytes) -> None:
        self._node_id = node_id
        self._reach: frozenset[bytes] | None = None  # None: no partition

    def passes(self, peer_id: bytes) -> bool:
        """True if traffic to and from `peer_id` goes through."""
        return self._reach is None or peer_id in self._reach

    def set(self, groups: Sequence[Collection[bytes]]) -> None:
        """Drop traffic to and from peers outside our group, both ways. A node in no group is cut
        off from everyone; a node in two groups is a ValueError."""
        mine: frozenset[bytes] | None = None
        for group in groups:
            members = frozenset(group)
            if self._node_id in members:
                if mine is not None:
                    raise ValueError("a node may be in only one partition group")
                mine = members
        self._reach = mine if mine is not None else frozenset({self._node_id})
        log.warning("TEST SWITCH: partition set on %s: reaching %d peer(s)", short_id(self._node_id),
                    len(self._reach) - 1)

    def heal(self) -> None:
        """Remove the partition set by `set`."""
        self._reach = None
        log.warning("TEST SWITCH: partition healed on %s", short_id(self._node_id))


def partition_routes(partition: Partition) -> list[web.RouteDef]:
    """The API route that sets and heals `partition`."""

    async def post_test_partition(request: web.Request) -> web.Response:
        """Test-only (node run --unsafe-test-switches): cut links to peers outside our group."""
        doc = await request.json()
        groups = [[bytes.fromhex(x) for x in g] for g in doc.get("groups", [])]
        if groups:
            partition.set(groups)
        else:
            partition.heal()
        return json_response({"ok": True, "groups": doc.get("groups", [])})

    return [web.post(PARTITION_PATH, post_test_partition)]


class TestSwitchesHook:
    """The daemon's hook (node.daemon.NodeHook) of a node run with `--unsafe-test-switches`."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, *, crash_at: str | None = None, byzantine: ByzantineHook | None = None) -> None:
        self.crash_at = crash_at
        self.byzantine = byzantine
        self.partition: Partition | None = None

    def _partition(self, node: Node) -> Partition:
        if self.partition is None:
            self.partition = Partition(node.identity.public_key)
        return self.partition

    def p2p_limits(self, limits: P2PLimits) -> P2PLimits:
        return self.byzantine.p2p_limits(limits) if self.byzantine is not None else limits

    def frame_filter(self, node: Node) -> Partition:
        return self._partition(node)

    def routes(self, node: Node) -> list[web.RouteDef]:
        return partition_routes(self._partition(node))

    def install(self, node: Node, network: Any) -> ByzantineTransport | None:
        node.store.crash_at = self.crash_at
        return self.byzantine.install(node, network) if self.byzantine is not None else None


def crash_point_from_env(env: dict[str, str]) -> str | None:
    """The crash point the environment names (None: none)."""
    return env.get(ENV_CRASH_AT) or None
