"""The clinical-trial transactions (node/app/trials.py has the stored forms and the messages).

    trial.register     the sponsor institution: trial id, registry id (e.g. NCT01234567), ethics
                       reference, protocol SHA-256 (version 1), sites, investigators (practitioners
                       of the sites), eligibility criteria (canonical JSON, node/app/trial_criteria.py),
                       the small-count threshold (default 10), the end
    trial.amend        the sponsor: protocol version + 1 with its SHA-256; `reconsent` asks every
                       participant to consent again before more data is collected from them
    trial.feasibility  the sponsor: a feasibility query (32 random bytes naming it)
    trial.count        a site: its answer to a query, a count at or above the threshold, or
                       `fewer_than` (the count itself never goes on the chain)
    trial.invited      a site: how many of its patients it invited (the sponsor learns no more)
    trial.consent      a site relays a participant's consent to a protocol version, signed by the
                       participant's pseudonym (`consent_message`): the pseudonym is now known
    trial.enrol        a site (or one of its investigators): enrols a consented pseudonym
    trial.withdraw     anyone relays a participant's withdrawal, signed by its pseudonym
    trial.submit       a site (or its investigator): anchors a data submission of an enrolled
                       participant — refused after withdrawal ("participant_withdrawn"), without
                       consent to the version the protocol requires ("reconsent_required"), or
                       after the lock ("trial_locked")
    trial.lock         the sponsor: freezes the data set, storing the Merkle root of every
                       submission and their count at this height

No transaction names a patient: consents and withdrawals are the pseudonym's signatures, and the
patient's ledger identity never appears in a trial's keys or bodies.
"""

from __future__ import annotations

import re
from typing import Any

from node.chain.tx import Transaction, TxRejected
from node.core.crypto import verify
from node.core.merkle import merkle_root

from node.app import keys, trials
from node.app.fields import ID_SIZE, check_id, check_resource_type, check_study_id, check_time, check_unique_list
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import INSTITUTION, PRACTITIONER, identity_of, sender_as
from node.app.stored import read, write
from node.app.trial_criteria import CriteriaInvalid, canonical, parse

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")  # registry ids, ethics references: codes, no prose


def _code(body: dict[str, Any], name: str) -> None:
    if not isinstance(body.get(name), str) or not _CODE.fullmatch(body[name]):
        raise TxRejected("invalid_body", f"{name} is a reference code (1-64 letters, digits, . _ : / -), not free text")


def _criteria(text: Any) -> None:
    import json

    try:
        doc = json.loads(text)
        parse(doc)
    except (ValueError, TypeError) as exc:
        raise TxRejected("invalid_criteria", str(exc) if isinstance(exc, CriteriaInvalid) else
                         "the criteria are JSON (docs/trials.md)") from None
    if canonical(doc).decode("ascii") != text:
        raise TxRejected("invalid_criteria", "the criteria go on the chain in canonical form (sorted keys, no spaces)")


def _ids(body: dict[str, Any], name: str, limit: int, *, required: bool) -> list[bytes]:
    listed = check_unique_list(body, name, limit=limit)
    if (required and not listed) or not all(isinstance(x, bytes) and len(x) == ID_SIZE for x in listed):
        raise TxRejected("invalid_body", f"{name} lists {'1' if required else '0'} to {limit} ids")
    return listed


def _check_register(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"trial": str, "registry_id": str, "ethics_ref": str, "protocol_hash": bytes, "sites": list,
                          "criteria": str, "until_ms": int}, {"investigators": list, "threshold": int})
    check_study_id(body["trial"])
    _code(body, "registry_id")
    _code(body, "ethics_ref")
    check_id(body, "protocol_hash")
    _ids(body, "sites", trials.MAX_SITES, required=True)
    _ids(body, "investigators", trials.MAX_INVESTIGATORS, required=False)
    threshold = body.get("threshold", trials.DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not trials.MIN_THRESHOLD <= threshold <= trials.MAX_THRESHOLD:
        raise TxRejected("invalid_threshold", f"the small-count threshold is {trials.MIN_THRESHOLD} to {trials.MAX_THRESHOLD}")
    check_time(body, "until_ms")
    _criteria(body["criteria"])


def _sponsor_trial(ctx: ExecContext) -> dict[str, Any]:
    sender_as(ctx, INSTITUTION)
    found = trials.load_trial(ctx.state, ctx.tx.body["trial"])
    if found is None:
        raise ExecFailed("unknown_trial", "no trial with this id")
    if found["sponsor"] != ctx.tx.sender:
        raise ExecFailed("not_the_sponsor", "only the trial's sponsor does this")
    return found


def _register(ctx: ExecContext) -> None:
    body = ctx.tx.body
    sender_as(ctx, INSTITUTION)
    if trials.load_trial(ctx.state, body["trial"]) is not None:
        raise ExecFailed("trial_exists", "a trial with this id is already registered")
    if body["until_ms"] <= ctx.timestamp_ms:
        raise ExecFailed("invalid_period", "the trial would already have ended")
    for site in body["sites"]:
        found = identity_of(ctx.state, site)
        if found is None or found.get("role") != INSTITUTION:
            raise ExecFailed("unknown_institution", "every site is a registered institution")
    for person in body.get("investigators", ()):
        found = identity_of(ctx.state, person)
        if found is None or found.get("role") != PRACTITIONER or found.get("institution") not in body["sites"]:
            raise ExecFailed("investigator_not_at_site", "every investigator is a practitioner of one of the sites")
    write(ctx, trials.trial_key(body["trial"]), {
        "sponsor": ctx.tx.sender, "registry_id": body["registry_id"], "ethics_ref": body["ethics_ref"],
        "sites": sorted(body["sites"]), "investigators": sorted(body.get("investigators", ())),
        "criteria": body["criteria"], "threshold": body.get("threshold", trials.DEFAULT_THRESHOLD),
        "until_ms": body["until_ms"], "tx": ctx.tx.hash, "height": ctx.height, "time_ms": ctx.timestamp_ms,
        "versions": [{"version": 1, "protocol_hash": body["protocol_hash"], "reconsent": False, "height": ctx.height}],
        "submissions": 0,
    })


def _check_amend(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"trial": str, "version": int, "protocol_hash": bytes, "reconsent": bool}, {"criteria": str})
    check_study_id(body["trial"])
    check_id(body, "protocol_hash")
    if isinstance(body["version"], bool) or not 2 <= body["version"] <= trials.MAX_VERSIONS:
        raise TxRejected("invalid_version", f"an amendment is protocol version 2 to {trials.MAX_VERSIONS}")
    if "criteria" in body:
        _criteria(body["criteria"])


def _amend(ctx: ExecContext) -> None:
    body = ctx.tx.body
    found = _sponsor_trial(ctx)
    if "lock" in found:
        raise ExecFailed("trial_locked", "the trial's data set is locked")
    if body["version"] != trials.current_version(found) + 1:
        raise ExecFailed("wrong_version", f"the next protocol version is {trials.current_version(found) + 1}")
    found["versions"].append({"version": body["version"], "protocol_hash": body["protocol_hash"],
                              "reconsent": body["reconsent"], "height": ctx.height})
    if "criteria" in body:
        found["criteria"] = body["criteria"]
    write(ctx, trials.trial_key(body["trial"]), found)


def _site_of(ctx: ExecContext, found: dict[str, Any]) -> bytes:
    """The site a site's transaction acts for: the sending institution, or the institution of the
    sending investigator; it must be one of the trial's sites."""
    sender = identity_of(ctx.state, ctx.tx.sender)
    if sender is None:
        raise ExecFailed("not_registered", "the sender has no registered identity")
    if sender.get("role") == INSTITUTION:
        site = ctx.tx.sender
    elif sender.get("role") == PRACTITIONER and ctx.tx.sender in found["investigators"]:
        site = sender["institution"]
    else:
        raise ExecFailed("not_a_site", "a site of the trial (or one of its investigators) sends this")
    if site not in found["sites"]:
        raise ExecFailed("not_a_site", "the sender's institution is not a site of this trial")
    return site


def _open_trial(ctx: ExecContext) -> dict[str, Any]:
    found = trials.load_trial(ctx.state, ctx.tx.body["trial"])
    if found is None:
        raise ExecFailed("unknown_trial", "no trial with this id")
    return found


def _check_query(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str, "query": bytes})
    check_study_id(tx.body["trial"])
    check_id(tx.body, "query")


def _feasibility(ctx: ExecContext) -> None:
    body = ctx.tx.body
    found = _sponsor_trial(ctx)
    key = trials.query_key(body["trial"], body["query"])
    if ctx.state.get(key) is not None:
        raise ExecFailed("query_exists", "this query was asked already; use a fresh query id")
    # counts of many queries could be differenced to learn about one patient: a trial asks few,
    # each on the chain for everyone to see
    if found.get("queries", 0) >= trials.MAX_QUERIES:
        raise ExecFailed("too_many_queries", f"a trial asks at most {trials.MAX_QUERIES} feasibility queries")
    found["queries"] = found.get("queries", 0) + 1
    write(ctx, trials.trial_key(body["trial"]), found)
    write(ctx, key, {"height": ctx.height, "time_ms": ctx.timestamp_ms, "threshold": found["threshold"], "counts": {}})


def _check_count(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str, "query": bytes}, {"count": int, "fewer_than": bool})
    check_study_id(tx.body["trial"])
    check_id(tx.body, "query")
    if ("count" in tx.body) == ("fewer_than" in tx.body) or tx.body.get("fewer_than") is False:
        raise TxRejected("invalid_body", "a site answers with its count, or with fewer_than: true when it is small")


def _count(ctx: ExecContext) -> None:
    body = ctx.tx.body
    found = _open_trial(ctx)
    site = _site_of(ctx, found)
    key = trials.query_key(body["trial"], body["query"])
    query = read(ctx.state, key)
    if query is None:
        raise ExecFailed("unknown_query", "the sponsor asked no such query")
    if site.hex() in query["counts"]:
        raise ExecFailed("already_answered", "this site answered the query already")
    if "count" in body and not query["threshold"] <= body["count"] <= 10_000_000:
        raise ExecFailed("count_below_threshold", f"a count under {query['threshold']} is reported as fewer_than, never exactly")
    query["counts"][site.hex()] = {"count": body["count"]} if "count" in body else {"fewer_than": query["threshold"]}
    write(ctx, key, query)


def _check_invited(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str, "count": int})
    check_study_id(tx.body["trial"])
    if isinstance(tx.body["count"], bool) or not 0 <= tx.body["count"] <= 10_000_000:
        raise TxRejected("invalid_body", "count is how many patients the site invited")


def _invited(ctx: ExecContext) -> None:
    found = _open_trial(ctx)
    site = _site_of(ctx, found)
    invited = dict(found.get("invited", {}))
    invited[site.hex()] = invited.get(site.hex(), 0) + ctx.tx.body["count"]
    found["invited"] = invited
    write(ctx, trials.trial_key(ctx.tx.body["trial"]), found)


def _check_signed(tx: Transaction, *, with_version: bool) -> None:
    spec: dict[str, type] = {"trial": str, "pseudonym": bytes, "signature": bytes}
    if with_version:
        spec["version"] = int
    require_fields(tx.body, spec)
    check_study_id(tx.body["trial"])
    check_id(tx.body, "pseudonym")
    if len(tx.body["signature"]) != 64:
        raise TxRejected("invalid_body", "signature is an Ed25519 signature (64 bytes)")
    body = tx.body
    message = trials.consent_message(tx.chain_id, body["trial"], body["version"], body["pseudonym"]) if with_version \
        else trials.withdraw_message(tx.chain_id, body["trial"], body["pseudonym"])
    if not verify(body["pseudonym"], message, body["signature"]):
        raise TxRejected("bad_signature", "the participant's pseudonym did not sign this")


def _consent(ctx: ExecContext) -> None:
    body = ctx.tx.body
    found = _open_trial(ctx)
    site = _site_of(ctx, found)
    if "lock" in found:
        raise ExecFailed("trial_locked", "the trial's data set is locked")
    if body["version"] != trials.current_version(found):
        raise ExecFailed("wrong_version", f"consent goes to the current protocol version, {trials.current_version(found)}")
    key = trials.participant_key(body["trial"], body["pseudonym"])
    participant = trials.load_participant(ctx.state, body["trial"], body["pseudonym"])
    if participant is None:
        participant = {"site": site, "versions": [], "height": ctx.height}
    elif participant["site"] != site:
        raise ExecFailed("not_your_participant", "this pseudonym takes part through another site")
    if "withdrawn_ms" in participant:
        raise ExecFailed("participant_withdrawn", "this participant withdrew from the trial")
    if body["version"] in participant["versions"]:
        raise ExecFailed("already_consented", "this participant consented to this version already")
    participant["versions"] = sorted([*participant["versions"], body["version"]])
    write(ctx, key, participant)


def _check_enrol(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str, "pseudonym": bytes})
    check_study_id(tx.body["trial"])
    check_id(tx.body, "pseudonym")


def _participant_at(ctx: ExecContext, found: dict[str, Any], site: bytes) -> dict[str, Any]:
    participant = trials.load_participant(ctx.state, ctx.tx.body["trial"], ctx.tx.body["pseudonym"])
    if participant is None:
        raise ExecFailed("not_consented", "this pseudonym has not consented to the trial")
    if participant["site"] != site:
        raise ExecFailed("not_your_participant", "this pseudonym takes part through another site")
    if "withdrawn_ms" in participant:
        raise ExecFailed("participant_withdrawn", "this participant withdrew from the trial")
    return participant


def _enrol(ctx: ExecContext) -> None:
    found = _open_trial(ctx)
    site = _site_of(ctx, found)
    participant = _participant_at(ctx, found, site)
    if "enrolled_ms" in participant:
        raise ExecFailed("already_enrolled", "this participant is enrolled already")
    participant.update(enrolled_ms=ctx.timestamp_ms, enrolled_height=ctx.height)
    write(ctx, trials.participant_key(ctx.tx.body["trial"], ctx.tx.body["pseudonym"]), participant)


def _withdraw(ctx: ExecContext) -> None:
    body = ctx.tx.body
    _open_trial(ctx)
    participant = trials.load_participant(ctx.state, body["trial"], body["pseudonym"])
    if participant is None:
        raise ExecFailed("not_consented", "this pseudonym has not consented to the trial")
    if "withdrawn_ms" in participant:
        raise ExecFailed("participant_withdrawn", "this participant withdrew already")
    participant.update(withdrawn_ms=ctx.timestamp_ms, withdrawn_height=ctx.height)
    write(ctx, trials.participant_key(body["trial"], body["pseudonym"]), participant)


def _check_submit(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str, "pseudonym": bytes, "submission": bytes, "hash": bytes, "resource_type": str})
    check_study_id(tx.body["trial"])
    for name in ("pseudonym", "submission", "hash"):
        check_id(tx.body, name)
    check_resource_type(tx.body["resource_type"])


def _submit(ctx: ExecContext) -> None:
    body = ctx.tx.body
    found = _open_trial(ctx)
    site = _site_of(ctx, found)
    if "lock" in found:
        raise ExecFailed("trial_locked", "the trial's data set is locked")
    participant = _participant_at(ctx, found, site)
    if "enrolled_ms" not in participant:
        raise ExecFailed("not_enrolled", "the participant is not enrolled")
    if max(participant["versions"]) < trials.consent_needed(found):
        raise ExecFailed("reconsent_required", f"protocol version {trials.consent_needed(found)} asks for re-consent; "
                         "this participant has not consented to it")
    if found["submissions"] >= trials.MAX_SUBMISSIONS:
        raise ExecFailed("too_many_submissions", f"a trial holds at most {trials.MAX_SUBMISSIONS} submissions")
    write(ctx, trials.submissions_prefix(body["trial"]) + ctx.position, {
        "pseudonym": body["pseudonym"], "submission": body["submission"], "hash": body["hash"],
        "resource_type": body["resource_type"], "site": site, "version": max(participant["versions"]),
        "height": ctx.height, "time_ms": ctx.timestamp_ms, "tx": ctx.tx.hash})
    found["submissions"] += 1
    write(ctx, trials.trial_key(body["trial"]), found)


def _check_lock(tx: Transaction) -> None:
    require_fields(tx.body, {"trial": str})
    check_study_id(tx.body["trial"])


def _lock(ctx: ExecContext) -> None:
    found = _sponsor_trial(ctx)
    if "lock" in found:
        raise ExecFailed("trial_locked", "the trial's data set is locked already")
    listed = trials.submissions(ctx.state, ctx.tx.body["trial"])
    leaves = [trials.submission_leaf(s["submission"], s["hash"]) for s in listed]
    found["lock"] = {"root": merkle_root(leaves), "count": len(leaves), "height": ctx.height, "time_ms": ctx.timestamp_ms}
    write(ctx, trials.trial_key(ctx.tx.body["trial"]), found)


for _name, _summary, _check, _execute in (
        ("trial.register", "a sponsor registers a clinical trial", _check_register, _register),
        ("trial.amend", "a sponsor amends a trial's protocol (a new version)", _check_amend, _amend),
        ("trial.feasibility", "a sponsor asks the sites how many patients match", _check_query, _feasibility),
        ("trial.count", "a site answers a feasibility query", _check_count, _count),
        ("trial.invited", "a site says how many patients it invited", _check_invited, _invited),
        ("trial.consent", "a participant's pseudonym consents to a protocol version",
         lambda tx: _check_signed(tx, with_version=True), _consent),
        ("trial.enrol", "a site enrols a consented participant", _check_enrol, _enrol),
        ("trial.withdraw", "a participant's pseudonym withdraws", lambda tx: _check_signed(tx, with_version=False), _withdraw),
        ("trial.submit", "a site anchors a participant's data submission", _check_submit, _submit),
        ("trial.lock", "a sponsor locks the trial's data set", _check_lock, _lock)):
    register(TxType(name=_name, summary=_summary, check_body=_check, execute=_execute))
