"""`agreement.propose`, `agreement.sign`, `agreement.revoke`: institutions' data-sharing agreements.

An agreement (node/app/agreements.py) is a Cedar policy its parties (2 to 8 institutions) agree
to. `agreement.propose` (by a party) stores a version: the id, the version (1 for a new id,
exactly the latest + 1 after, proposed by a party of the latest), the sorted parties, the
purposes, the policy in canonical form (checked like `medledger policy check`, and with string
literals restricted to codes and ids) and an optional `valid_until_ms`. The proposal counts as
the proposer's signature. Each other party sends `agreement.sign` naming the id, the version and
the policy's digest, so it signs exactly that text (only the latest version may be signed: a
newer proposal supersedes an older one still awaiting signatures); once every party signed, the version is in
force and supersedes the version in force before it (kept, marked superseded). Any party
revokes a version proposed or in force with `agreement.revoke` (kept, marked revoked).

Everything is decided from the transaction and the state; time is the block's.
"""

from __future__ import annotations

import hashlib
from typing import Any

from node.chain.tx import Transaction, TxRejected

from node.app import agreements as ag
from node.app import keys
from node.app.fields import ID_SIZE, PURPOSES, check_purpose, check_time, check_unique_list
from node.app.policies.check import PolicyRefused
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, require_institution, sender_as
from node.app.stored import write

DIGEST_SIZE = 32


def _version_bytes(version: int) -> bytes:
    return version.to_bytes(4, "big")


def _check_ref(body: dict[str, Any]) -> None:
    ag.check_agreement_id(body["agreement"])
    ag.check_version(body["version"])


def _check_propose(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"agreement": str, "version": int, "parties": list, "purposes": list, "policy": str},
                   {"valid_until_ms": int})
    _check_ref(body)
    parties = check_unique_list(body, "parties", limit=ag.MAX_PARTIES)
    if len(parties) < ag.MIN_PARTIES or any(not isinstance(p, bytes) or len(p) != ID_SIZE for p in parties):
        raise TxRejected("invalid_parties", f"an agreement names {ag.MIN_PARTIES} to {ag.MAX_PARTIES} institution ids")
    if parties != sorted(parties):
        raise TxRejected("invalid_parties", "an agreement lists its parties sorted by id")
    if tx.sender not in parties:
        raise TxRejected("invalid_parties", "the proposer is one of the parties")
    purposes = check_unique_list(body, "purposes")
    if not purposes:
        raise TxRejected("invalid_purpose", "an agreement names at least one purpose")
    for p in purposes:
        check_purpose(p)
    if "valid_until_ms" in body:
        check_time(body, "valid_until_ms")
    try:
        ag.check_stored_policy(body["policy"])
    except PolicyRefused as exc:
        raise TxRejected(exc.code, exc.message) from None


def _load(ctx: ExecContext) -> dict[str, Any]:
    """The version the body names, whose party the sender must be."""
    body = ctx.tx.body
    value = ag.load_agreement(ctx.state, body["agreement"], body["version"])
    if value is None:
        raise ExecFailed("unknown_agreement", "no agreement with this id and version")
    if ctx.tx.sender not in value["parties"]:
        raise ExecFailed("not_a_party", "only a party to the agreement may sign or revoke it")
    return value


def _execute_propose(ctx: ExecContext) -> None:
    body = ctx.tx.body
    sender_as(ctx, INSTITUTION)
    agreement_id, version = body["agreement"], body["version"]
    for party in body["parties"]:
        require_institution(ctx.state, party)
    latest = ag.latest_version(ctx.state, agreement_id)
    expected = 1 if latest is None else latest + 1
    if version != expected:
        raise ExecFailed("wrong_agreement_version", f"the next version of {agreement_id!r} is {expected}")
    if latest is not None:
        previous = ag.load_agreement(ctx.state, agreement_id, latest)
        if previous is None or ctx.tx.sender not in previous["parties"]:
            raise ExecFailed("not_a_party", "a new version is proposed by a party of the latest one")
    if "valid_until_ms" in body and body["valid_until_ms"] <= ctx.timestamp_ms:
        raise ExecFailed("invalid_period", "the agreement would already have ended")
    value: dict[str, Any] = {
        "agreement": agreement_id, "version": version, "proposer": ctx.tx.sender, "parties": body["parties"],
        "purposes": sorted(body["purposes"], key=PURPOSES.index), "policy": body["policy"],
        "digest": hashlib.sha256(body["policy"].encode("utf-8")).digest(),  # the policy: checked by check_body
        "signatures": [ctx.tx.sender], "status": ag.PROPOSED,
        "height": ctx.height, "time_ms": ctx.timestamp_ms,
    }
    if "valid_until_ms" in body:
        value["valid_until_ms"] = body["valid_until_ms"]
    write(ctx, keys.agreement(agreement_id, version), value)
    ctx.state.put(keys.AGREEMENT_LATEST + keys.study_part(agreement_id), _version_bytes(version))


def _check_sign(tx: Transaction) -> None:
    require_fields(tx.body, {"agreement": str, "version": int, "digest": bytes})
    _check_ref(tx.body)
    if len(tx.body["digest"]) != DIGEST_SIZE:
        raise TxRejected("invalid_body", f"body field 'digest' must be {DIGEST_SIZE} bytes (SHA-256)")


def _refuse_closed(ctx: ExecContext, value: dict[str, Any]) -> None:
    status = ag.status_of(ctx.state, value)
    if status == ag.REVOKED:
        raise ExecFailed("agreement_revoked", "this version of the agreement was revoked")
    if status == ag.SUPERSEDED:
        raise ExecFailed("agreement_superseded", "a later version of the agreement is in force")


def _enter_in_force(ctx: ExecContext, value: dict[str, Any]) -> None:
    agreement_id, part = value["agreement"], keys.study_part(value["agreement"])
    for party in value["parties"]:
        held = [k for k, _ in ctx.state.items(keys.AGREEMENT_IN_FORCE + party)
                if k != keys.AGREEMENT_IN_FORCE + party + part]
        if len(held) >= ag.MAX_IN_FORCE:
            raise ExecFailed("too_many_agreements",
                             f"a party is already in {ag.MAX_IN_FORCE} agreements in force; revoke one first")
    previous_version = ag.current_version(ctx.state, agreement_id)
    if previous_version is not None:
        previous = ag.load_agreement(ctx.state, agreement_id, previous_version)
        assert previous is not None
        previous.update(status=ag.SUPERSEDED, superseded_by=value["version"], superseded_height=ctx.height)
        write(ctx, keys.agreement(agreement_id, previous_version), previous)
        for party in previous["parties"]:
            ctx.state.delete(keys.AGREEMENT_IN_FORCE + party + part)
    value.update(status=ag.IN_FORCE, in_force_height=ctx.height, in_force_ms=ctx.timestamp_ms)
    ctx.state.put(keys.AGREEMENT_CURRENT + part, _version_bytes(value["version"]))
    for party in value["parties"]:
        ctx.state.put(keys.AGREEMENT_IN_FORCE + party + part, _version_bytes(value["version"]))


def _execute_sign(ctx: ExecContext) -> None:
    value = _load(ctx)
    _refuse_closed(ctx, value)
    if value["status"] == ag.IN_FORCE or ctx.tx.sender in value["signatures"]:
        raise ExecFailed("already_signed", "this party already signed this version")
    if ctx.tx.body["digest"] != value["digest"]:
        raise ExecFailed("digest_mismatch", "the digest is not that of this version's policy")
    if "valid_until_ms" in value and value["valid_until_ms"] < ctx.timestamp_ms:
        raise ExecFailed("agreement_expired", "the agreement's period has ended")
    value["signatures"] = sorted([*value["signatures"], ctx.tx.sender])
    if set(value["signatures"]) == set(value["parties"]):
        _enter_in_force(ctx, value)
    write(ctx, keys.agreement(value["agreement"], value["version"]), value)


def _check_revoke(tx: Transaction) -> None:
    require_fields(tx.body, {"agreement": str, "version": int})
    _check_ref(tx.body)


def _execute_revoke(ctx: ExecContext) -> None:
    value = _load(ctx)
    _refuse_closed(ctx, value)
    agreement_id, part = value["agreement"], keys.study_part(value["agreement"])
    if value["status"] == ag.IN_FORCE:
        ctx.state.delete(keys.AGREEMENT_CURRENT + part)
        for party in value["parties"]:
            ctx.state.delete(keys.AGREEMENT_IN_FORCE + party + part)
    value.update(status=ag.REVOKED, revoked_by=ctx.tx.sender, revoked_height=ctx.height, revoked_ms=ctx.timestamp_ms)
    write(ctx, keys.agreement(agreement_id, value["version"]), value)


def _admit_propose(tx: Transaction) -> None:
    """What a node asks of a new proposal besides its body (registry.check_admission)."""
    try:
        ag.check_new_agreement(tx.body["agreement"], tx.body["policy"], tx.body["purposes"])
    except PolicyRefused as exc:
        raise TxRejected(exc.code, exc.message) from None


AGREEMENT_PROPOSE = register(
    TxType(name="agreement.propose", summary="an institution proposes a data-sharing agreement (a Cedar policy)",
           check_admission=_admit_propose,
           check_body=_check_propose, execute=_execute_propose)
)
AGREEMENT_SIGN = register(
    TxType(name="agreement.sign", summary="a party co-signs an agreement's version by its policy digest",
           check_body=_check_sign, execute=_execute_sign)
)
AGREEMENT_REVOKE = register(
    TxType(name="agreement.revoke", summary="a party revokes an agreement's version, proposed or in force",
           check_body=_check_revoke, execute=_execute_revoke)
)
