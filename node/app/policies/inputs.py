"""The canonical inputs of a policy decision: entities and a request, as frozen values.

Two validators must hand the engine the same bytes for the same state, whatever order they
gathered the facts in: attributes are kept sorted by name, parents and set members sorted,
entities sorted by uid (node/app/policies/evaluate.py), and every JSON document the engine
reads is dumped with sorted keys. Values are only what the schema speaks of and what is exact:
strings (codes and hex ids, never free text), integers within Cedar's 64-bit Long, booleans,
references to entities and sets of them. A float, a nested map or an oversized value is refused
(`PolicyRefused("policy_input_invalid")`), never rounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from node.app.policies import bounds
from node.app.policies.check import PolicyRefused
from node.app.policies.schema import ACTIONS, ENTITY_TYPES

LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
MAX_STRING = 256
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")  # hex ids, codes; never a quote or a backtick


def _refuse(message: str) -> PolicyRefused:
    return PolicyRefused("policy_input_invalid", message)


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """An entity's uid: its type (one of the schema's) and its id (a ledger id in hex)."""

    type: str
    id: str

    def __post_init__(self) -> None:
        if self.type not in ENTITY_TYPES:
            raise _refuse(f"unknown entity type {self.type!r}; the schema has {', '.join(ENTITY_TYPES)}")
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise _refuse(f"entity id {self.id!r} must be 1 to 128 letters, digits or ._:@-")

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id}


Value = Union[str, int, bool, Ref, tuple["Value", ...]]


def canonical_value(value: Any, where: str) -> Value:
    """`value` as a canonical attribute value (sets as sorted tuples), or `policy_input_invalid`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not LONG_MIN <= value <= LONG_MAX:
            raise _refuse(f"{where}: {value} is outside Cedar's 64-bit Long")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise _refuse(f"{where}: a string attribute is limited to {MAX_STRING} characters")
        return value
    if isinstance(value, Ref):
        return value
    if isinstance(value, (set, frozenset, list, tuple)):
        if len(value) > bounds.MAX_SET:
            raise _refuse(f"{where}: a set is limited to {bounds.MAX_SET} members")
        members = {canonical_value(v, where) for v in value}
        if any(isinstance(m, tuple) for m in members) or len({type(m) for m in members}) > 1:
            raise _refuse(f"{where}: a set holds values of one type, and no sets")
        return tuple(sorted(members, key=_sort_key))
    raise _refuse(f"{where}: {type(value).__name__} is not an allowed attribute value (no floats, no maps)")


def _sort_key(value: Value) -> tuple[int, Any]:
    if isinstance(value, Ref):
        return (3, (value.type, value.id))
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, int):
        return (1, value)
    return (2, value)


def value_json(value: Value) -> Any:
    if isinstance(value, Ref):
        return {"__entity": value.to_json()}
    if isinstance(value, tuple):
        return [value_json(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity the policies may look at: its uid, attributes (sorted by name) and parents
    (sorted). Build with `Entity.of`, which puts them in canonical form."""

    uid: Ref
    attrs: tuple[tuple[str, Value], ...] = ()
    parents: tuple[Ref, ...] = ()

    @classmethod
    def of(cls, uid: Ref, attrs: Mapping[str, Any] | None = None, parents: Iterable[Ref] = ()) -> "Entity":
        attrs = dict(attrs or {})
        for name in attrs:
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", name):
                raise _refuse(f"attribute name {name!r} is not an identifier")
        canonical = tuple(sorted((n, canonical_value(v, f"{uid.type}.{n}")) for n, v in attrs.items() if v is not None))
        parent_set = set(parents)
        if not all(isinstance(p, Ref) for p in parent_set):
            raise _refuse("parents must be entity references")
        return cls(uid=uid, attrs=canonical, parents=tuple(sorted(parent_set)))

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid.to_json(), "attrs": {n: value_json(v) for n, v in self.attrs},
                "parents": [p.to_json() for p in self.parents]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One access to decide: who (a practitioner), which action, on which record, why (a purpose
    of use), at which block time, and the Claim (a payment read) or the referral (a read by the
    clinic referred to) it is made under."""

    principal: Ref
    action: str
    resource: Ref
    purpose: str
    now_ms: int
    claim: Ref | None = None
    referral: Ref | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise _refuse(f"unknown action {self.action!r}; the schema has {', '.join(ACTIONS)}")
        if self.principal.type != "Practitioner" or self.resource.type != "Record":
            raise _refuse("a request is made by a Practitioner on a Record")
        if any(r is not None and r.type != "Record" for r in (self.claim, self.referral)):
            raise _refuse("the claim or referral of a request is a Record")
        if not isinstance(self.purpose, str) or not _ID.fullmatch(self.purpose):
            raise _refuse(f"purpose {self.purpose!r} is not a code")
        canonical_value(self.now_ms, "now_ms")

    def referenced(self) -> tuple[Ref, ...]:
        """The entities the request names: they must be in the entity set."""
        return (self.principal, self.resource) + tuple(r for r in (self.claim, self.referral) if r is not None)

    def to_json(self) -> dict[str, Any]:
        context: dict[str, Any] = {"purpose": self.purpose, "now_ms": self.now_ms}
        if self.claim is not None:
            context["claim"] = {"__entity": self.claim.to_json()}
        if self.referral is not None:
            context["referral"] = {"__entity": self.referral.to_json()}
        return {"principal": self.principal.to_json(), "action": {"type": "Action", "id": self.action},
                "resource": self.resource.to_json(), "context": context}


# -- the entities of MedLedger, built the one way the schema expects ----------------------------------

def institution(id: str, kind: str) -> Entity:
    return Entity.of(Ref("Institution", id), {"kind": kind})


def practitioner(id: str, profession: str, institution_id: str) -> Entity:
    home = Ref("Institution", institution_id)
    return Entity.of(Ref("Practitioner", id), {"profession": profession, "institution": home}, parents=[home])


def patient(id: str, *, nominated_pharmacy: str | None = None, insurer: str | None = None) -> Entity:
    return Entity.of(Ref("Patient", id), {
        "nominated_pharmacy": Ref("Institution", nominated_pharmacy) if nominated_pharmacy else None,
        "insurer": Ref("Institution", insurer) if insurer else None,
    })


def record(id: str, resource_type: str, patient_id: str, custodian: str, *, payer: str | None = None,
           recipient: str | None = None, until_ms: int | None = None, lists: Iterable[str] = (),
           author: str | None = None, based_on: str | None = None) -> Entity:
    return Entity.of(Ref("Record", id), {
        "resource_type": resource_type, "patient": Ref("Patient", patient_id), "custodian": Ref("Institution", custodian),
        "payer": Ref("Institution", payer) if payer else None,
        "recipient": Ref("Institution", recipient) if recipient else None, "until_ms": until_ms,
        "lists": frozenset(Ref("Record", r) for r in lists),
        "author": Ref("Practitioner", author) if author else None,
        "based_on": Ref("Record", based_on) if based_on else None,
    })
