"""Read-only questions about the ledger's state, as JSON-friendly answers (ids in hex).

Every function takes a StateReader with ordered scans (`FuncReader(store.state_get,
store.state_items)` over the committed store) and ids as raw bytes, and is a pure function of
that state (and of `now_ms` where the answer depends on time: the caller's clock, e.g. the
custodian's, since queries run outside the state machine). Unknown things give None or [].
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any

from node.core.encoding import decode
from node.chain.tx import jsonable

from node.app import agreements as _agreements
from node.app import care as _care
from node.app import keys
from node.app.consents import load_consent
from node.app.fields import UNSPECIFIED
from node.app.roles import INSTITUTION, PRACTITIONER, guardian_of, identity_of
from node.app.state import StateReader
from node.app.stored import read
from node.app.studies import load_study, study_active
from node.app.studies import researcher_studies as _researcher_studies
from node.app.types.governance import quorum, validators

JSON = dict[str, Any]


def _hex(value: bytes) -> str:
    return value.hex()


def _index_ids(state: StateReader, prefix: bytes) -> list[bytes]:
    return [value for _, value in state.items(prefix)]


def _indexed(state: StateReader, prefix: bytes, lookup: Callable[[bytes], JSON | None]) -> list[JSON]:
    """`lookup` of each id the index under `prefix` lists, in index order (ids it finds nothing for left out)."""
    return [found for found in map(lookup, _index_ids(state, prefix)) if found is not None]


def identity(state: StateReader, ident: bytes) -> JSON | None:
    """An identity's role and label, its institution (staff) or attesting institution (patient);
    an institution's kind and a practitioner's profession ("unspecified" when recorded without);
    for a patient its guardian and break-glass choice; for anyone the patients it is guardian of."""
    found = identity_of(state, ident)
    if found is None:
        return None
    out: JSON = {"id": _hex(ident), **jsonable(found)}
    if found["role"] == INSTITUTION:
        out["kind"] = found.get("kind", UNSPECIFIED)
    elif found["role"] == PRACTITIONER:
        out["profession"] = found.get("profession", UNSPECIFIED)
    if found["role"] == "patient":
        guardian = guardian_of(state, ident)
        out["guardian"] = _hex(guardian) if guardian else None
        out["breakglass_opt_out"] = state.get(keys.OPTOUT + ident) is not None
    prefix = keys.GUARDIAN_OF + ident
    wards = [_hex(k[len(prefix):]) for k, _ in state.items(prefix)]
    if wards:
        out["guardian_of"] = wards
    return out


def record(state: StateReader, record_id: bytes) -> JSON | None:
    """A record's metadata: patient, resource type, ciphertext hash, custodian, author, erasure,
    and whether the patient contested it."""
    value = read(state, keys.record(record_id))
    if value is None:
        return None
    out = {"id": _hex(record_id), "erased": "erased_ms" in value, "contested": "contested_ms" in value, **jsonable(value)}
    state_of = _care.workflow(state, record_id)
    if state_of is None and value["resource_type"] == "MedicationRequest":
        state_of = {"status": _care.ACTIVE}  # a prescription is active until dispensed (nothing stored)
    if state_of is not None:
        out["workflow"] = jsonable(state_of)
    return out


def record_versions(state: StateReader, record_id: bytes) -> list[JSON]:
    """Every version of the logical record `record_id` belongs to (any of its versions' ids),
    oldest first, erased ones included (marked); [] for an unknown record."""
    value = read(state, keys.record(record_id))
    if value is None:
        return []
    first = value.get("version_of", record_id)
    head = record(state, first)
    return ([head] if head is not None else []) + _indexed(state, keys.VERSION + first, lambda r: record(state, r))


def latest_version(state: StateReader, record_id: bytes) -> JSON | None:
    """The latest version of the logical record `record_id` belongs to, or None if unknown."""
    value = read(state, keys.record(record_id))
    if value is None:
        return None
    first = value.get("version_of", record_id)
    return record(state, state.get(keys.VERSION_LATEST + first) or first)


def patient_records(state: StateReader, patient: bytes) -> list[JSON]:
    """A patient's records in the order they were added (erased ones included, marked)."""
    return _indexed(state, keys.PATIENT_RECORD + patient, lambda record_id: record(state, record_id))


INBOX_LIMIT = 500


def inbox(state: StateReader, institution: bytes, *, after_height: int = 0, limit: int = INBOX_LIMIT) -> list[JSON]:
    """What is addressed to `institution` (node/app/care.py), oldest first, from blocks after
    `after_height`, at most `limit` (default and cap INBOX_LIMIT): each record's metadata with
    its workflow state, as `record` answers it."""
    out: list[JSON] = []
    prefix = keys.INBOX + institution
    start = prefix + keys.position(after_height + 1, 0) if after_height > 0 else prefix
    for key, record_id in state.items(prefix):
        if key < start:
            continue
        found = record(state, record_id)
        if found is not None:
            out.append(found)
        if len(out) >= min(limit, INBOX_LIMIT):
            break
    return out


def screened_patients(state: StateReader, institution: bytes, limit: int = 100_000) -> list[bytes]:
    """The patients who let `institution` screen them for clinical trials (standing permission
    "screening"), in id order, at most `limit`."""
    prefix = keys.SCREENING + institution
    found = []
    for key, _ in state.items(prefix):
        found.append(key[len(prefix):])
        if len(found) >= limit:
            break
    return found


def trial(state: StateReader, trial_id: str) -> JSON | None:
    """A clinical trial as answered: its registration, versions, counts of invitations and
    submissions, and its lock (node/app/trials.py)."""
    from node.app.trials import load_trial

    found = load_trial(state, trial_id)
    return None if found is None else {"trial": trial_id, **jsonable(found)}


def trial_submissions(state: StateReader, trial_id: str) -> list[JSON]:
    from node.app.trials import submissions

    return [jsonable(s) for s in submissions(state, trial_id)]


def trial_participant(state: StateReader, trial_id: str, pseudonym: bytes) -> JSON | None:
    from node.app.trials import load_participant

    found = load_participant(state, trial_id, pseudonym)
    return None if found is None else jsonable(found)


def trial_query(state: StateReader, trial_id: str, query: bytes) -> JSON | None:
    from node.app.trials import query_key

    found = read(state, query_key(trial_id, query))
    return None if found is None else jsonable(found)


def standing(state: StateReader, patient: bytes) -> JSON:
    """The patient's standing permissions: {permission: {institution, height, time_ms}}."""
    return {name: jsonable(entry) for name, entry in sorted(_care.standing_of(state, patient).items())}


def consent_status(value: dict[str, Any], now_ms: int | None) -> str:
    """revoked, not_yet_valid, expired or active (at `now_ms`; without it, active unless revoked)."""
    if "revoked_ms" in value:
        return "revoked"
    if now_ms is None:
        return "active"
    if now_ms < value["valid_from"]:
        return "not_yet_valid"
    if now_ms > value["valid_until"]:
        return "expired"
    return "active"


def consent(state: StateReader, consent_id: bytes, now_ms: int | None = None) -> JSON | None:
    """A consent rule with its status."""
    value = load_consent(state, consent_id)
    if value is None:
        return None
    return {"id": _hex(consent_id), "status": consent_status(value, now_ms), **jsonable(value)}


def patient_consents(state: StateReader, patient: bytes, now_ms: int | None = None) -> list[JSON]:
    """Every consent a patient gave, oldest first, with its status at `now_ms`."""
    return _indexed(state, keys.PATIENT_CONSENT + patient, lambda consent_id: consent(state, consent_id, now_ms))


def patient_audit(state: StateReader, patient: bytes, *, since_ms: int = 0, until_ms: int | None = None) -> list[JSON]:
    """A patient's audit trail in block order: every event touching the patient."""
    out = []
    for _, raw in state.items(keys.AUDIT + patient):
        entry = decode(raw)
        if entry["time_ms"] < since_ms:
            continue
        if until_ms is not None and entry["time_ms"] > until_ms:
            break
        out.append(jsonable(entry))
    return out


def disclosures(state: StateReader, institution: bytes, since_ms: int, until_ms: int) -> list[JSON]:
    """An institution's accounting of disclosures for [since_ms, until_ms] (block time): every
    granted access to a record it holds, and every research release it made."""
    out = []
    for _, raw in state.items(keys.DISCLOSURE + institution):
        entry = decode(raw)
        if entry["time_ms"] < since_ms:
            continue
        if entry["time_ms"] > until_ms:
            break  # entries are in block order, and block times never go back
        out.append(jsonable(entry))
    return out


def access_grant(state: StateReader, request_tx: bytes) -> JSON | None:
    """The decision recorded for an `access.request` transaction (granted or denied)."""
    value = read(state, keys.access(request_tx))
    if value is None:
        return None
    return {"request_tx": _hex(request_tx), **jsonable(value)}


def breakglass_pending(state: StateReader, institution: bytes) -> list[JSON]:
    """Break-glass grants on records `institution` holds that it has not reviewed yet, oldest first."""
    return _indexed(state, keys.BREAKGLASS_PENDING + institution, lambda request_tx: access_grant(state, request_tx))


def active_grant(state: StateReader, requester: bytes, record_id: bytes, now_ms: int) -> JSON | None:
    """What a custodian checks before serving `record_id` to `requester` at its time `now_ms`.

    None unless the record exists, is not erased, and either the requester is the record's
    patient or its guardian ("rule": "patient"/"guardian", no request needed), or a committed
    `access.request` of the requester for this record was granted, has not expired
    (now_ms <= expires_ms), was not revoked (an `unjustified` break-glass review revokes), was
    not made to a researcher (research data leaves only as a de-identified extract; grants a
    researcher got before that rule are void), if it rests on a consent, that consent is not
    revoked, and if it rests on a nomination (a standing permission), the patient has not
    withdrawn or replaced it. Of several such grants, the one that expires last (then the newest) is returned.
    """
    stored = read(state, keys.record(record_id))
    if stored is None or "erased_ms" in stored:
        return None
    base = {"requester": _hex(requester), "record": _hex(record_id), "patient": _hex(stored["patient"]),
            "custodian": _hex(stored["custodian"])}
    if requester == stored["patient"]:
        return {**base, "rule": "patient"}
    if guardian_of(state, stored["patient"]) == requester:
        return {**base, "rule": "guardian"}
    best: tuple[int, bytes] | None = None
    chosen: dict[str, Any] | None = None
    for key, request_tx in state.items(keys.GRANT + requester + record_id):
        value = read(state, keys.access(request_tx))
        if value is None or value["decision"] != "granted" or now_ms > value["expires_ms"]:
            continue
        if "revoked_ms" in value or value.get("requester_role") == "researcher":
            continue
        if value["rule"] == "consent":
            rule = load_consent(state, value["consent"])
            if rule is None or "revoked_ms" in rule:
                continue
        if isinstance(value.get("standing"), dict):  # a nomination's grant lasts as long as the nomination
            entry = _care.standing_of(state, stored["patient"]).get(value["standing"]["permission"])
            if not isinstance(entry, dict) or entry["height"] != value["standing"]["height"]:
                continue
        rank = (value["expires_ms"], key)
        if best is None or rank > best:
            best, chosen = rank, {"request_tx": _hex(request_tx), **jsonable(value)}
    return chosen


def erasures(state: StateReader, custodian: bytes, since_ms: int = 0) -> list[JSON]:
    """Records held by `custodian` that were erased at or after `since_ms` (block time), in
    order: the custodian's list of ciphertexts to delete."""
    out = []
    for _, record_id in state.items(keys.ERASURE + custodian):
        found = record(state, record_id)
        if found is not None and found["erased_ms"] >= since_ms:
            out.append(found)
    return out


def study(state: StateReader, study_id: str, now_ms: int | None = None) -> JSON | None:
    """A study, its researchers, and (with `now_ms`) whether it is active."""
    value = load_study(state, study_id)
    if value is None:
        return None
    prefix = keys.STUDY_RESEARCHER + keys.study_part(study_id)
    out: JSON = {"id": study_id, **jsonable(value),
                 "researchers": [_hex(k[len(prefix):]) for k, _ in state.items(prefix)]}
    if now_ms is not None:
        out["active"] = study_active(value, now_ms)
    return out


def release(state: StateReader, release_tx: bytes) -> JSON | None:
    """A research release: study, custodian, researcher, counts and the hash of the extract."""
    value = read(state, keys.RELEASE + release_tx)
    return None if value is None else {"release_tx": _hex(release_tx), **jsonable(value)}


def researcher_studies(state: StateReader, researcher: bytes) -> list[str]:
    """The ids of the studies a researcher was added to."""
    return _researcher_studies(state, researcher)


def study_consenting_patients(state: StateReader, study_id: str, now_ms: int) -> list[JSON]:
    """The patients whose consent to `study_id` for research holds at `now_ms` (not revoked,
    within its period, the study active), one entry per patient (its oldest such consent) with
    the consent's scope, which the extract must respect; sorted by patient id."""
    found = load_study(state, study_id)
    if found is None or not study_active(found, now_ms):
        return []
    chosen: dict[bytes, JSON] = {}
    for consent_id in _index_ids(state, keys.STUDY_CONSENT + keys.study_part(study_id)):
        value = load_consent(state, consent_id)
        if value is None or value["patient"] in chosen or consent_status(value, now_ms) != "active":
            continue
        chosen[value["patient"]] = {
            "patient": _hex(value["patient"]), "consent": _hex(consent_id),
            "resource_types": value["resource_types"], "record_ids": [_hex(r) for r in value["record_ids"]],
            "deny_types": value["deny_types"], "valid_until": min(value["valid_until"], found["until_ms"]),
        }
    return [chosen[p] for p in sorted(chosen)]


def admission(state: StateReader, candidate: bytes) -> JSON | None:
    """A governance admission of `candidate`: its name and kind ("unspecified" when proposed
    without), the approving validators, the quorum needed, and the height it was admitted at
    (absent while pending)."""
    value = read(state, keys.ADMISSION + candidate)
    if value is None:
        return None
    voters = validators(state)
    return {"institution": _hex(candidate), "kind": UNSPECIFIED, **jsonable(value), "quorum": quorum(voters) if voters else None}


def _agreement_view(state: StateReader, value: dict[str, Any], now_ms: int | None) -> JSON:
    """A version as answered: its fields, its status, its policy id, and the parties whose
    signature it still awaits (`awaiting`: it takes effect only when that list is empty)."""
    signed = set(value.get("signatures", ()))
    return {**jsonable(value), "status": _agreements.status_of(state, value, now_ms),
            "policy_id": _agreements.policy_id(value),
            "awaiting": [_hex(p) for p in value.get("parties", ()) if p not in signed]}


def agreement(state: StateReader, agreement_id: str, version: int | None = None, now_ms: int | None = None) -> JSON | None:
    """A data-sharing agreement's version (the latest proposed when `version` is None) with its
    status (proposed, in_force, revoked, superseded; expired with `now_ms` past its end), parties,
    signatures, policy and digest, the height it was proposed at, and `in_force_version` (the
    agreement's version in force, or None). None for an unknown id or version."""
    if version is None:
        version = _agreements.latest_version(state, agreement_id)
        if version is None:
            return None
    value = _agreements.load_agreement(state, agreement_id, version)
    if value is None:
        return None
    return {**_agreement_view(state, value, now_ms), "in_force_version": _agreements.current_version(state, agreement_id)}


def agreements_of(state: StateReader, institution: bytes, now_ms: int | None = None) -> list[JSON]:
    """The agreement versions in force naming `institution`, by agreement id (at most
    `agreements.MAX_IN_FORCE`); with `now_ms`, ended ones left out."""
    return [_agreement_view(state, v, now_ms) for v in _agreements.in_force_of(state, institution, now_ms)]


# -- the network's institutions and the agreements in force (the dashboard's network page) -------

MAX_PAGE = 100  # institutions or agreements in one answer of `institutions` / `agreements_in_force`


def institution_ids(state: StateReader, genesis_ids: Iterable[bytes]) -> list[bytes]:
    """Every institution of the ledger, sorted by id: those of the genesis (`genesis_ids`: its
    institutions and validators, which the genesis registers as institutions) and those admitted
    by a governance vote (`admission/` entries with an `admitted_height`; pending ones left out).
    These are the only two ways an identity becomes an institution."""
    found = {i for i in genesis_ids if (identity_of(state, i) or {}).get("role") == INSTITUTION}
    for key, _ in state.items(keys.ADMISSION):
        candidate = key[len(keys.ADMISSION):]
        value = read(state, key)
        if isinstance(value, dict) and "admitted_height" in value:
            found.add(candidate)
    return sorted(found)


def _in_force_versions(state: StateReader, institution: bytes, now_ms: int | None,
                       cache: dict[tuple[str, int], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """`agreements.in_force_of`, each stored version loaded once per `cache` (one answer's)."""
    found = []
    prefix = keys.AGREEMENT_IN_FORCE + institution
    for key, raw in state.items(prefix):
        part = key[len(prefix):]
        ref = (part[1:1 + part[0]].decode("ascii"), int.from_bytes(raw, "big"))
        if ref not in cache:
            cache[ref] = _agreements.load_agreement(state, *ref)
        value = cache[ref]
        if value is not None and _agreements.status_of(state, value, now_ms) == _agreements.IN_FORCE:
            found.append(value)
    return found


def party(state: StateReader, ident: bytes) -> JSON:
    """An institution as an agreement's party is shown: id, name (its label) and kind."""
    found = identity_of(state, ident) or {}
    return {"id": _hex(ident), "name": found.get("label", ""), "kind": found.get("kind", UNSPECIFIED)}


def institutions(state: StateReader, genesis_ids: Iterable[bytes], validator_ids: Collection[bytes],
                 now_ms: int | None = None, *, after: bytes | None = None,
                 limit: int = MAX_PAGE) -> tuple[list[JSON], bytes | None]:
    """A page of the ledger's institutions (`institution_ids`) sorted by id, from the first id
    above `after`: each one's id, name, kind ("unspecified" when recorded without), whether it
    is in `validator_ids` (the set deciding the next block), and how many agreement versions in
    force name it at `now_ms` (at most `agreements.MAX_IN_FORCE`). With the page, the id to pass
    as `after` for the next one (None: this was the last). At most `MAX_PAGE` a page."""
    size = max(1, min(limit, MAX_PAGE))
    ids = [i for i in institution_ids(state, genesis_ids) if after is None or i > after]
    page, rest = ids[:size], ids[size:]
    cache: dict[tuple[str, int], dict[str, Any] | None] = {}
    out = [{**party(state, i), "validator": i in validator_ids,
            "agreements_in_force": len(_in_force_versions(state, i, now_ms, cache))} for i in page]
    return out, (page[-1] if page and rest else None)


def agreement_summary(state: StateReader, value: dict[str, Any], now_ms: int | None,
                      parties: dict[bytes, JSON] | None = None) -> JSON:
    """A stored agreement version as a listing shows it, without its policy text (GET
    /v1/agreements/{id}?version=N has it): id, version, policy_id, status, the parties with
    their names and kinds, proposer, purposes, signatures, digest, the size of the policy's
    canonical form, and the heights and times it was proposed at and came into force (None while
    not), `valid_until_ms` (None: no end). `parties` caches the party views across a listing."""
    cache = {} if parties is None else parties
    for p in value["parties"]:
        if p not in cache:
            cache[p] = party(state, p)
    return {
        "id": value["agreement"], "version": value["version"], "policy_id": _agreements.policy_id(value),
        "status": _agreements.status_of(state, value, now_ms), "parties": [cache[p] for p in value["parties"]],
        "proposer": _hex(value["proposer"]), "purposes": list(value["purposes"]),
        "signatures": [_hex(s) for s in value["signatures"]], "digest": _hex(value["digest"]),
        "policy_bytes": len(value["policy"].encode("utf-8")),
        "height": value["height"], "time_ms": value["time_ms"],
        "in_force_height": value.get("in_force_height"), "in_force_ms": value.get("in_force_ms"),
        "valid_until_ms": value.get("valid_until_ms"),
    }


def agreements_in_force(state: StateReader, now_ms: int | None = None, *, after: str | None = None,
                        limit: int = MAX_PAGE) -> tuple[list[JSON], str | None]:
    """A page of the agreements in force at `now_ms` (one version each: the one in force;
    with `now_ms`, those past their `valid_until_ms` left out) as `agreement_summary` shows them,
    in the ledger's key order (shorter ids first, then by id), from the first after the
    agreement id `after`. With the page, the id to pass as `after` for the next (None: the last).
    At most `MAX_PAGE` a page; the scan is bounded as the agreements in force are (at most
    `agreements.MAX_IN_FORCE` per institution)."""
    size = max(1, min(limit, MAX_PAGE))
    start = None if after is None else keys.AGREEMENT_CURRENT + keys.study_part(after)
    parties: dict[bytes, JSON] = {}
    out: list[JSON] = []
    for key, raw in state.items(keys.AGREEMENT_CURRENT):
        if start is not None and key <= start:
            continue
        part = key[len(keys.AGREEMENT_CURRENT):]
        value = _agreements.load_agreement(state, part[1:1 + part[0]].decode("ascii"), int.from_bytes(raw, "big"))
        if value is None or _agreements.status_of(state, value, now_ms) != _agreements.IN_FORCE:
            continue
        if len(out) == size:
            return out, (out[-1]["id"] if out else None)
        out.append(agreement_summary(state, value, now_ms, parties))
    return out, None
