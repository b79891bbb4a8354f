"""`identity.register`: an identity announces its role on the ledger.

Roles: patient, practitioner, researcher, institution. For now any role may self-register (the
healthcare-ledger issue adds who may register whom). A patient's registration carries no label:
patients are pseudonymous keys, and nothing that names a person belongs on the chain.
"""

from __future__ import annotations

from typing import Any

from node.core.encoding import canonical
from node.tx import Transaction, TxRejected

from ..registry import ExecContext, ExecFailed, TxType, register, require_fields

ROLES = ("patient", "practitioner", "researcher", "institution")
MAX_LABEL = 64
PREFIX = b"identity/"


def identity_key(public_key: bytes) -> bytes:
    return PREFIX + public_key


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"role": str}, {"label": str})
    if body["role"] not in ROLES:
        raise TxRejected("invalid_role", f"role must be one of {', '.join(ROLES)}")
    label = body.get("label", "")
    if len(label) > MAX_LABEL:
        raise TxRejected("invalid_body", f"label longer than {MAX_LABEL} characters")
    if label and body["role"] == "patient":
        raise TxRejected("invalid_body", "patients are pseudonymous: a patient registration takes no label")


def _execute(ctx: ExecContext) -> None:
    key = identity_key(ctx.tx.sender)
    if ctx.state.get(key) is not None:
        raise ExecFailed("already_registered", "this identity is already registered")
    record = {"role": ctx.tx.body["role"], "label": ctx.tx.body.get("label", ""), "height": ctx.height}
    ctx.state.put(key, canonical(record))


IDENTITY_REGISTER = register(
    TxType(name="identity.register", summary="announce an identity's role", check_body=_check, execute=_execute)
)
