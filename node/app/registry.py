"""The transaction-type registry.

A `TxType` names a type, checks a transaction without the ledger (`check_body`, at admission:
the body's shape, and anything verifiable from the envelope alone such as an attestation
signature) and applies it to the state (`execute`, at execution). `register()` is called by each
module in `node/app/types/`; `load_types()` imports them.

Outcomes of `execute`:
- it returns None: result "ok", its writes are kept;
- it returns a result code (e.g. "denied"): the code is recorded AND its writes are kept, so a
  refused access request still leaves its decision and audit entry on the ledger;
- it raises `ExecFailed(code)`: the code is recorded and its writes are discarded.
Result codes are stable strings: clients and the CLI match on them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from node.core.errors import CodedError
from node.chain.tx import Transaction, TxRejected

from node.app.keys import position
from node.app.state import Overlay


class ExecFailed(CodedError):
    """A transaction is valid on the wire but the ledger refuses it; recorded with `code` (a
    plain CodedError: its status is never an answer, the block records the code)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecContext:
    """What a transaction may see while it executes: the block's height and time, the state."""

    height: int
    timestamp_ms: int
    state: Overlay
    tx: Transaction
    index: int

    @property
    def position(self) -> bytes:
        """The transaction's place in the chain as 12 ordered bytes (height:8, index:4)."""
        return position(self.height, self.index)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxType:
    """`check_admission`, when given, holds rules a node applies to a new submission on top of
    `check_body`, but not to a block it validates: guards that tell a client early that what it
    sends is pointless or confusing (an agreement's permit that reads as widening access), which
    a block holding such a transaction does no harm by carrying, and which a chain written before
    the rule must still replay past."""

    name: str
    summary: str
    check_body: Callable[[Transaction], None]
    execute: Callable[[ExecContext], str | None]
    check_admission: Callable[[Transaction], None] | None = None


_REGISTRY: dict[str, TxType] = {}
_LOADED = False


def register(tx_type: TxType) -> TxType:
    if tx_type.name in _REGISTRY:
        raise RuntimeError(f"transaction type {tx_type.name!r} registered twice")
    _REGISTRY[tx_type.name] = tx_type
    return tx_type


def load_types() -> dict[str, TxType]:
    """Import every module of node.app.types (each registers its types) and return the registry."""
    global _LOADED
    from node.app import types as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{pkg.__name__}.{info.name}")
    _LOADED = True
    return dict(_REGISTRY)


def get_type(name: str) -> TxType | None:
    # not "if the registry is empty": importing one type module (as the API does for its key
    # helpers) must not hide the others
    if not _LOADED:
        load_types()
    return _REGISTRY.get(name)


def known_type(tx: Transaction) -> TxType:
    """The transaction's type; TxRejected("unknown_type") if there is none such."""
    tx_type = get_type(tx.type)
    if tx_type is None:
        raise TxRejected("unknown_type", f"unknown transaction type {tx.type[:64]!r}")
    return tx_type


def check_tx_body(tx: Transaction) -> TxType:
    """Stateless check of a transaction's type and body; raise TxRejected if invalid."""
    tx_type = known_type(tx)
    tx_type.check_body(tx)
    return tx_type


def check_admission(tx: Transaction) -> TxType:
    """`check_tx_body` and the type's admission-only rules: what a node asks of a new submission."""
    tx_type = check_tx_body(tx)
    if tx_type.check_admission is not None:
        tx_type.check_admission(tx)
    return tx_type


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):  # a bool is an int to Python, never to a body
        return bool in kinds
    return isinstance(value, kinds)


def require_fields(body: dict[str, Any], spec: Mapping[str, type | tuple[type, ...]], optional: Mapping[str, type | tuple[type, ...]] | None = None) -> None:
    """Shape check for a body: required and optional fields with their types, nothing else."""
    optional = optional or {}
    for name, kind in spec.items():
        if name not in body:
            raise TxRejected("invalid_body", f"body needs field {name!r}")
        if not _is(body[name], kind):
            raise TxRejected("invalid_body", f"body field {name!r} has the wrong type")
    for name, value in body.items():
        if name in spec:
            continue
        if name not in optional:
            raise TxRejected("invalid_body", f"unknown body field {str(name)[:32]!r}")
        if not _is(value, optional[name]):
            raise TxRejected("invalid_body", f"body field {name!r} has the wrong type")
