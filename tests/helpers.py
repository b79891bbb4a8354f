"""Helpers shared by the tests: a one-validator genesis and an in-process node."""

from __future__ import annotations

import time
from pathlib import Path

from node.home.config import NodeConfig, build_config
from node.core.crypto import Identity
from node.chain.genesis import Genesis, InstitutionInfo, ValidatorInfo
from node.runtime.runtime import Node
from storage.chain import ChainStore
from storage.kv import LevelDBStore, MemoryStore

CHAIN = "test-chain"
NODE_ID = Identity.from_seed(b"\x07" * 32).id  # the id of the node `make_node` builds by default


def one_validator_genesis(ident: Identity) -> Genesis:
    return Genesis(
        chain_id=CHAIN, genesis_time_ms=1_700_000_000_000,
        validators=(ValidatorInfo(id=ident.public_key, name="v0", address="127.0.0.1:0"),),
        institutions=(InstitutionInfo(id=ident.public_key, name="v0"),),
    )


def make_node(store_path: Path | None = None, *, config: NodeConfig | None = None, seed: bytes = b"\x07" * 32) -> Node:
    ident = Identity.from_seed(seed)
    kv = LevelDBStore(store_path) if store_path else MemoryStore()
    cfg = config or build_config({"consensus": {"empty_block_interval_ms": 50}}, env={})
    return Node(config=cfg, genesis=one_validator_genesis(ident), identity=ident, store=ChainStore(kv))


def deadline(seconds: float) -> float:
    return time.monotonic() + seconds
