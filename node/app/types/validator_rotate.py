"""`validator.rotate`: a validator replaces its key with a new one.

Sent by the validator itself, signed with its old key (the sender); `proof` is the new key's
signature over `rotation_message` (a domain-separated message naming the chain, the old id and
the new id), so both keys sign the change. No other approval is needed: the validator decides
about its own key. Refused if the sender is not in the validator set (nor still in the last
scheduled one), or the new key is already registered. The new key takes the old one's place in
the set from the block's height + 2; it gets the old key's identity (same role and label, with
`rotated_from`) so it can send transactions (and approvals) as that institution, and its record
continues the old one's. From the switch height on, votes and proposals signed by the old key
are refused by every node (they are checked against the set of their height).
"""

from __future__ import annotations

from node.chain.tx import Transaction, TxRejected
from node.core.crypto import verify
from node.core.encoding import canonical

from node.app import keys
from node.app.fields import check_id
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import identity_of
from node.app.stored import write
from node.app.validator_sets import latest_ids, record, record_key, schedule_change, validator_ids_at

ROTATION_DOMAIN = "medledger-validator-rotate-v1"
SIGNATURE_SIZE = 64


def rotation_message(chain_id: str, old_id: bytes, new_id: bytes) -> bytes:
    """What the new key signs: the chain, the old id and the new id, under this domain."""
    return canonical([ROTATION_DOMAIN, chain_id, old_id, new_id])


def _check(tx: Transaction) -> None:
    require_fields(tx.body, {"new_key": bytes, "proof": bytes})
    check_id(tx.body, "new_key")
    new_key, proof = tx.body["new_key"], tx.body["proof"]
    if new_key == tx.sender:
        raise TxRejected("invalid_body", "the new key must differ from the old one")
    if len(proof) != SIGNATURE_SIZE or not verify(new_key, rotation_message(tx.chain_id, tx.sender, new_key), proof):
        raise TxRejected("bad_rotation_proof", "the proof is not the new key's signature of this rotation")


def _execute(ctx: ExecContext) -> None:
    old, new = ctx.tx.sender, ctx.tx.body["new_key"]
    latest = latest_ids(ctx.state)
    if old not in validator_ids_at(ctx.state, ctx.height) or old not in latest:
        raise ExecFailed("not_a_validator", "only a validator in the set rotates its key")
    if identity_of(ctx.state, new) is not None:
        raise ExecFailed("already_registered", "the new key is already registered; generate a fresh key")
    effective = schedule_change(ctx, [new if v == old else v for v in latest])
    mine = identity_of(ctx.state, old) or {}
    write(ctx, keys.identity(new), {**mine, "height": ctx.height, "rotated_from": old})
    known = record(ctx.state, old) or {}
    write(ctx, record_key(new), {**{k: v for k, v in known.items() if k != "rotated_from"},
                                 "since": effective, "rotated_from": old})
    write(ctx, record_key(old), {**known, "until": effective, "rotated_to": new})


VALIDATOR_ROTATE = register(
    TxType(name="validator.rotate", summary="a validator replaces its key (signed with the old and the new key)",
           check_body=_check, execute=_execute)
)
