"""Data-sharing agreements on the ledger: their stored form, their status, and the policies in force.

An agreement is a Cedar policy (node/app/policies) that 2 to 8 institutions (its parties) propose,
co-sign and may revoke (node/app/types/agreement.py). Each version is stored apart under
`keys.agreement(id, version)`; the version in force, if any, is `agreement_current/<id>`, and
each party of it has an `agreement_in_force/<party><id>` entry, so what governs an institution
is read without scanning history. What is stored is the policy's canonical form
(`canonical_form`: Cedar's JSON form, no comments, no annotations) and its SHA-256 `digest`,
which every party's signature names.

Status of a version: `proposed` (awaiting signatures), `in_force` (every party signed),
`revoked` (a party revoked it, proposed or in force), `superseded` (a later version came into
force; a proposal below the latest proposal is shown superseded too: only the latest version can
be signed, so it can never come into force). With `now_ms`, an in-force version past its `valid_until_ms` is `expired`.

Nothing here reads the clock; the bounds keep every read and every evaluation small: an
institution is party to at most `MAX_IN_FORCE` agreements in force, and `policies_in_force`
takes at most `MAX_INSTITUTIONS` institutions, so it returns at most
`bounds.MAX_POLICIES` policies.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from node.chain.tx import TxRejected

from node.app import keys
from node.app.policies import bounds
from node.app.policies.check import PolicyRefused, statements_of
from node.app.policies.evaluate import Policy
from node.app.state import StateReader
from node.app.stored import read

MIN_PARTIES = 2
MAX_PARTIES = 8
MAX_VERSION = (1 << 31) - 1
MAX_CANONICAL_BYTES = 32 * 1024  # a policy's canonical form (about twice its Cedar text, at most 8 KiB)
MAX_IN_FORCE = 16  # agreements in force naming one institution
MAX_INSTITUTIONS = bounds.MAX_POLICIES // MAX_IN_FORCE  # institutions one `policies_in_force` call covers

PROPOSED, IN_FORCE, REVOKED, SUPERSEDED, EXPIRED = "proposed", "in_force", "revoked", "superseded", "expired"

_AGREEMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LITERAL = re.compile(r"[A-Za-z0-9._:@-]{0,128}")  # codes and ids: no spaces, no quotes, no free text
# a literal value, a `like` pattern's text, an entity's id, an attribute named (`has`, `.`); and
# the keys of a record literal (`{"k": 1}`), which Cedar lets a condition build from any string
_LITERAL_KEYS = ("Value", "Literal", "id", "attr")


class AgreementRefused(PolicyRefused):
    """A policy that may not be stored as an agreement's (not canonical, or carrying text)."""


def check_agreement_id(value: Any) -> None:
    if not isinstance(value, str) or not _AGREEMENT_ID.fullmatch(value):
        raise TxRejected("invalid_agreement_id",
                         "an agreement id is 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)")


def check_version(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise TxRejected("invalid_version", f"an agreement version is a whole number from 1 to {MAX_VERSION}")


def _literals(node: Any, key: str = "") -> Iterable[str]:
    """Every string a policy's JSON form holds as a literal, a pattern, an entity id, an
    attribute name or a record literal's key."""
    if isinstance(node, dict):
        if key == "Record":
            yield from node
        for k, v in node.items():
            yield from _literals(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _literals(v, key)
    elif isinstance(node, str) and key in _LITERAL_KEYS:
        yield node


PATIENT_LINKED_TYPES = ("Patient", "Record")  # an agreement speaks of kinds of data and staff, never of one patient


def _entity_types(node: Any) -> Iterable[str]:
    """The type of every entity a policy's JSON form names (`{"type": ..., "id": ...}`)."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str) and isinstance(node.get("id"), str):
            yield node["type"]
        for v in node.values():
            yield from _entity_types(v)
    elif isinstance(node, list):
        for v in node:
            yield from _entity_types(v)


def canonical_statements(text: str) -> str:
    """The canonical form of statements given in canonical form: what `canonical_form` gives."""
    statements = statements_of(text)
    ordered = [statements[k] for k in sorted(statements, key=lambda k: int(k.removeprefix("policy")))]
    for statement in ordered:
        statement.pop("annotations", None)
    return json.dumps({"statements": ordered}, sort_keys=True, separators=(",", ":"))


def check_stored_policy(policy: Any) -> bytes:
    """The digest of `policy`, which must be a valid policy in its canonical form within
    `MAX_CANONICAL_BYTES` whose string literals are codes or ids; else `PolicyRefused` with the
    engine's message (`invalid_policy`, `policy_type_error`...) or `AgreementRefused`."""
    if not isinstance(policy, str):
        raise AgreementRefused("invalid_policy", "an agreement's policy is text in its canonical form")
    raw = policy.encode("utf-8")
    if len(raw) > MAX_CANONICAL_BYTES:
        raise AgreementRefused("policy_too_large", f"the canonical form is {len(raw)} bytes, over the limit of {MAX_CANONICAL_BYTES}")
    if not policy.startswith('{"statements":'):
        raise AgreementRefused("policy_not_canonical", "an agreement stores a policy in its canonical form (canonical_form)")
    if canonical_statements(policy) != policy:
        raise AgreementRefused("policy_not_canonical", "the policy is not in its canonical form (canonical_form)")
    doc = json.loads(policy)
    named = sorted(set(_entity_types(doc)) & set(PATIENT_LINKED_TYPES))
    if named:
        raise AgreementRefused("policy_names_patient", f"the policy names a {named[0]}: an agreement is public and "
                                                       "speaks of kinds of staff and data, never of one patient or record")
    for literal in _literals(doc):
        if not _LITERAL.fullmatch(literal):
            raise AgreementRefused("policy_free_text", f"string {literal[:32]!r} is not a code or an id: an agreement's "
                                                       "strings are codes and ids only (A-Z a-z 0-9 . _ : @ -)")
    return hashlib.sha256(raw).digest()


# the purposes whose reads go by their own controlled path, which no agreement may open: an
# emergency read is break-glass (flagged, limited, reviewed), research data leaves only as a
# de-identified extract
CLOSED_PURPOSES = ("emergency", "research")


def check_new_agreement(agreement_id: str, policy: str, purposes: Iterable[str]) -> None:
    """The rules a node applies to a new proposal on top of the body's checks (the admission of
    `agreement.propose`; node/app/registry.py `check_admission`): no id of the protocol's
    standing policies, no permit that reads as widening access, no purpose that has its own path.
    `AgreementRefused` otherwise."""
    if agreement_id.startswith("standing."):  # the protocol's standing policies are named so (node/app/standing.py)
        raise AgreementRefused("invalid_agreement_id", "agreement ids starting with 'standing.' are reserved for the "
                               "protocol's standing policies")
    for purpose in purposes:
        if purpose in CLOSED_PURPOSES:
            raise AgreementRefused("policy_widens", f"an agreement governs treatment, payment or operations, not "
                                   f"{purpose}: an emergency read is break-glass, research data leaves only as a "
                                   "de-identified extract")
    check_not_widening(json.loads(policy)["statements"])


def check_not_widening(statements: list[dict[str, Any]]) -> None:
    """Refuse ("policy_widens") the permits that read as opening access beyond the patient's
    consent: one with no scope and no condition ("everyone may read everything"), and one about
    an emergency or research read. An agreement cannot grant without consent in any case
    (node/app/policies/combine.py); the refusal tells its authors so before it is signed."""
    for n, statement in enumerate(statements):
        if statement.get("effect") != "permit":
            continue
        unscoped = all(statement.get(part, {}).get("op") == "All" for part in ("principal", "resource"))
        if unscoped and not statement.get("conditions"):
            raise AgreementRefused("policy_widens", f"statement {n} permits every read to everyone: an agreement never "
                                   "grants beyond the patient's consent, it routes it; say which staff (profession, "
                                   "institution kind) may use a consent for which data, or narrow with a forbid")
        closed = sorted(set(_literals(statement)) & set(CLOSED_PURPOSES))
        if closed:
            raise AgreementRefused("policy_widens", f"statement {n} permits {closed[0]} reads: an emergency read is "
                                   "break-glass and research data leaves only as a de-identified extract; no agreement "
                                   "opens either")


def _version_at(state: StateReader, key: bytes) -> int | None:
    raw = state.get(key)
    return None if raw is None else int.from_bytes(raw, "big")


def latest_version(state: StateReader, agreement_id: str) -> int | None:
    return _version_at(state, keys.AGREEMENT_LATEST + keys.study_part(agreement_id))


def current_version(state: StateReader, agreement_id: str) -> int | None:
    """The version in force of `agreement_id` (None: none in force)."""
    return _version_at(state, keys.AGREEMENT_CURRENT + keys.study_part(agreement_id))


def load_agreement(state: StateReader, agreement_id: str, version: int) -> dict[str, Any] | None:
    value = read(state, keys.agreement(agreement_id, version))
    return value if isinstance(value, dict) else None


def status_of(state: StateReader, value: dict[str, Any], now_ms: int | None = None) -> str:
    """The status of a stored version (module docstring)."""
    status: str = value["status"]
    if status == PROPOSED:
        latest = latest_version(state, value["agreement"])
        if latest is not None and latest > value["version"]:
            return SUPERSEDED
    if status == IN_FORCE and now_ms is not None and "valid_until_ms" in value and now_ms > value["valid_until_ms"]:
        return EXPIRED
    return status


def in_force_of(state: StateReader, institution: bytes, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The agreement versions in force naming `institution`, by agreement id (at most
    `MAX_IN_FORCE`); with `now_ms`, those past their `valid_until_ms` left out."""
    found = []
    prefix = keys.AGREEMENT_IN_FORCE + institution
    for key, raw in state.items(prefix):
        part = key[len(prefix):]
        value = load_agreement(state, part[1:1 + part[0]].decode("ascii"), int.from_bytes(raw, "big"))
        if value is not None and status_of(state, value, now_ms) == IN_FORCE:
            found.append(value)
    return found


def policy_id(value: dict[str, Any]) -> str:
    """The id a version's policy is evaluated and audited under: `<agreement id>@<version>`."""
    return f"{value['agreement']}@{value['version']}"


def policies_in_force(state: StateReader, institutions: Iterable[bytes], *, now_ms: int,
                      purpose: str | None = None) -> list[Policy]:
    """The policies of the agreements in force at `now_ms` naming any of `institutions` (for
    `purpose`, when given), sorted by policy id, each once: what `evaluate` takes for the
    agreements governing a request. At most `MAX_INSTITUTIONS` institutions (else
    `too_many_policies`), so never more than `bounds.MAX_POLICIES` policies."""
    wanted = sorted(set(institutions))
    if len(wanted) > MAX_INSTITUTIONS:
        raise PolicyRefused("too_many_policies", f"policies in force are read for at most {MAX_INSTITUTIONS} institutions")
    found: dict[str, Policy] = {}
    for institution in wanted:
        for value in in_force_of(state, institution, now_ms):
            if purpose is None or purpose in value["purposes"]:
                found[policy_id(value)] = Policy(id=policy_id(value), text=value["policy"])
    return [found[k] for k in sorted(found)]
