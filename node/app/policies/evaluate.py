"""`evaluate`: the decision of a set of policies on one request, as a pure function.

The same policies, request and entities give the same `Decision` on every validator, whatever
order they come in: policies are sorted by id and their statements renamed `<policy id>#<n>`
(n: the statement's place in its document), entities are sorted by uid, and the engine reads
JSON dumped with sorted keys. Cedar's own semantics decide: the answer is allow when at least
one `permit` statement matches and no `forbid` does (deny by default; a forbid always wins).
Cedar has no loops, no floats in our schema, no clock and no randomness, so the answer depends
on the inputs only; the bounds (node/app/policies/bounds.py) cap the work before it starts.

A statement whose evaluation errs (Cedar skips it) is named in `errors`; `combine` fails closed
on it. The engine's version is checked first (node/app/policies/engine.py).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cedarpy

from node.app.policies import bounds
from node.app.policies.check import PolicyRefused, statements_of
from node.app.policies.engine import check_engine
from node.app.policies.inputs import Entity, Ref, Request
from node.app.policies.schema import SCHEMA

_POLICY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_IN_MESSAGE = re.compile(r"policy `([^`]+)`")


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy document in force: its id (an agreement's id and version, e.g. `<hex>@2`) and its
    text, in Cedar or in its canonical form (node/app/policies/check.py, `canonical_form`)."""

    id: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the policies say of one request. `permits` and `forbids` are the statements
    (`<policy id>#<n>`) that matched, `errors` those whose evaluation erred; all sorted.
    `routes` says whether the set has any permit statement at all (a set of forbids only
    narrows and never routes)."""

    allowed: bool
    routes: bool = False
    permits: tuple[str, ...] = ()
    forbids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def permitting_policies(self) -> tuple[str, ...]:
        """The policy documents (ids, without the statement part) whose permit matched."""
        return tuple(sorted({s.rpartition("#")[0] for s in self.permits}))

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "routes": self.routes, "permits": list(self.permits), "forbids": list(self.forbids),
                "errors": list(self.errors)}


def _refuse(message: str) -> PolicyRefused:
    return PolicyRefused("policy_input_invalid", message)


def _canonical_policies(policies: Iterable[Policy]) -> tuple[Policy, ...]:
    listed = list(policies)
    if len(listed) > bounds.MAX_POLICIES:
        raise PolicyRefused("too_many_policies", f"{len(listed)} policies, over the limit of {bounds.MAX_POLICIES}")
    ids = [p.id for p in listed]
    for pid in ids:
        if not isinstance(pid, str) or not _POLICY_ID.fullmatch(pid):
            raise _refuse(f"policy id {pid!r} must be 1 to 128 letters, digits or ._:@-")
    if len(set(ids)) != len(ids):
        raise _refuse("two policies share an id")
    return tuple(sorted(listed, key=lambda p: p.id))


@functools.lru_cache(maxsize=256)
def _policy_set(policies: tuple[Policy, ...]) -> tuple[cedarpy.PolicySet, frozenset[str], frozenset[str]]:
    """The engine's policy set for `policies` (sorted), with the ids of its permit and forbid
    statements. A pure function of its argument, so caching it changes no answer."""
    statements: dict[str, Any] = {}
    for policy in policies:
        parsed = statements_of(policy.text)
        for n, name in enumerate(sorted(parsed, key=lambda k: int(k.removeprefix("policy")))):
            statements[f"{policy.id}#{n}"] = parsed[name]
    document = {"staticPolicies": statements, "templates": {}, "templateLinks": []}
    policy_set = cedarpy.PolicySet.from_json_str(json.dumps(document, sort_keys=True))
    permits = frozenset(k for k, s in statements.items() if s["effect"] == "permit")
    return policy_set, permits, frozenset(statements) - permits


def _entities_json(entities: Iterable[Entity], request: Request) -> str:
    listed = list(entities)
    if len(listed) > bounds.MAX_ENTITIES:
        raise PolicyRefused("too_many_entities", f"{len(listed)} entities, over the limit of {bounds.MAX_ENTITIES}")
    by_uid: dict[Ref, Entity] = {}
    for entity in listed:
        if not isinstance(entity, Entity):
            raise _refuse("entities must be built with node.app.policies.inputs")
        if entity.uid in by_uid and by_uid[entity.uid] != entity:
            raise _refuse(f"two different entities share the uid {entity.uid.type}::{entity.uid.id}")
        by_uid[entity.uid] = entity
    missing = [r for r in request.referenced() if r not in by_uid]
    if missing:
        raise _refuse(f"the request names {missing[0].type}::{missing[0].id}, which is not among the entities")
    return json.dumps([by_uid[uid].to_json() for uid in sorted(by_uid)], sort_keys=True, separators=(",", ":"))


def evaluate(policies: Iterable[Policy], request: Request, entities: Iterable[Entity]) -> Decision:
    """The decision of `policies` on `request` over `entities`; `PolicyRefused` when an input is
    invalid or over a bound (never a partial answer)."""
    check_engine()
    policy_set, permit_ids, forbid_ids = _policy_set(_canonical_policies(policies))
    try:
        handle = cedarpy.Entities.from_json_str(_entities_json(entities, request), SCHEMA)
    except ValueError as exc:
        raise _refuse(f"the entities do not fit the schema: {exc}") from None
    result = cedarpy.is_authorized(request.to_json(), policy_set, handle, schema=SCHEMA)
    if result.decision == cedarpy.Decision.NoDecision:
        raise _refuse("; ".join(result.diagnostics.errors) or "the engine could not build the request")
    reasons = set(result.diagnostics.reasons)
    erred = {m.group(1) for e in result.diagnostics.errors for m in _IN_MESSAGE.finditer(e)}
    erred &= permit_ids | forbid_ids
    return Decision(allowed=result.decision == cedarpy.Decision.Allow, routes=bool(permit_ids),
                    permits=tuple(sorted(reasons & permit_ids)), forbids=tuple(sorted(reasons & forbid_ids)),
                    errors=tuple(sorted(erred)))
