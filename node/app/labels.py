"""What the node's metrics count of a committed block, as the ledger names it.

The runtime counts every transaction by (type, result); the outcomes worth a label of their own
are the application's to say. Today that is access decisions: "granted", "breakglass" (granted
under the break-glass rule, read back from the decision in the state) or "denied".
"""

from __future__ import annotations

from collections.abc import Sequence

from node.app import keys
from node.app.state import StateReader
from node.app.types.access_request import ACCESS_REQUEST, RESULT_DENIED
from node.chain.tx import Transaction
from node.core.encoding import decode


def access_decisions(txs: Sequence[Transaction], results: Sequence[str], state: StateReader) -> list[str]:
    """The access-decision labels of a committed block's transactions, in block order."""
    out: list[str] = []
    for tx, result in zip(txs, results, strict=True):
        if tx.type != ACCESS_REQUEST.name or result not in ("ok", RESULT_DENIED):
            continue
        if result == RESULT_DENIED:
            out.append("denied")
            continue
        raw = state.get(keys.access(tx.hash))
        rule = decode(raw).get("rule") if raw is not None else None
        out.append("breakglass" if rule == "breakglass" else "granted")
    return out
