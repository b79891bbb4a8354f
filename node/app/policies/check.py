"""`check_policy`: whether a policy document may go on the chain, and if not, why.

A policy document is Cedar text of one or more `permit`/`forbid` statements. It passes when it
is within the size limits (node/app/policies/bounds.py), parses, has no template slots
(`?principal`: a template grants nothing until linked, and linking is not part of the ledger),
and type-checks against MedLedger's schema (node/app/policies/schema.py) in Cedar's strict
mode. Each error carries the engine's own message, so the author sees what Cedar said.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import cedarpy

from node.core.errors import CodedError
from node.app.policies import bounds
from node.app.policies.engine import ENGINE, ENGINE_VERSION, installed_version
from node.app.policies.schema import SCHEMA


class PolicyRefused(CodedError):
    """A policy document that may not be stored or evaluated."""


@dataclass(frozen=True, slots=True)
class PolicyError:
    """One reason a policy is refused: a stable code, the statement it concerns (Cedar's
    positional id, `policy0` for the first) when known, and the message."""

    code: str
    message: str
    statement: str = ""

    def __str__(self) -> str:
        return f"[{self.statement}] {self.message}" if self.statement else self.message

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "statement": self.statement}


def parse_statements(text: Any) -> tuple[dict[str, Any], list[PolicyError]]:
    """The statements of `text` in Cedar's JSON form, by Cedar's positional id, or the errors
    that stop it being parsed (size, syntax, templates, no statement or too many)."""
    if not isinstance(text, str):
        return {}, [PolicyError("invalid_policy", "a policy must be text")]
    size = len(text.encode("utf-8"))
    if size > bounds.MAX_POLICY_BYTES:
        return {}, [PolicyError("policy_too_large", f"the policy is {size} bytes, over the limit of {bounds.MAX_POLICY_BYTES}")]
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        return {}, [PolicyError("invalid_policy", str(exc).strip() or "the policy does not parse")]
    if parsed.get("templates"):
        return {}, [PolicyError("policy_template", "template slots (?principal, ?resource) are not supported: "
                                                   "name the principal and resource in the conditions")]
    statements: dict[str, Any] = parsed.get("staticPolicies", {})
    if not statements:
        return {}, [PolicyError("invalid_policy", "the policy has no permit or forbid statement")]
    if len(statements) > bounds.MAX_STATEMENTS:
        return {}, [PolicyError("too_many_statements",
                                f"the policy has {len(statements)} statements, over the limit of {bounds.MAX_STATEMENTS}")]
    return statements, []


def check_policy(text: Any) -> list[PolicyError]:
    """Every error that refuses `text`; an empty list when it may be stored and evaluated."""
    found_engine = installed_version()
    if found_engine != ENGINE_VERSION:  # another engine may judge differently from the ledger's
        return [PolicyError("policy_engine_mismatch",
                            f"{ENGINE} {ENGINE_VERSION} is required to check policies, found {found_engine or 'none'}")]
    _statements, errors = parse_statements(text)
    if errors:
        return errors
    result = cedarpy.validate_policies(text, SCHEMA)
    if result.validation_passed:
        return []
    found = [PolicyError("policy_type_error", e.error, e.policy_id) for e in result.errors]
    return found or [PolicyError("policy_type_error", "the policy does not type-check against the schema")]


def require_valid(text: Any) -> dict[str, Any]:
    """The statements of `text` (as `parse_statements`), or `PolicyRefused` with the first error."""
    errors = check_policy(text)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise PolicyRefused(first.code, f"{first}{more}")
    return parse_statements(text)[0]


def canonical_form(text: Any) -> str:
    """The form of a valid policy to store and hash: its statements in Cedar's JSON form, in
    order, with sorted keys and without comments or annotations (free text stays off the chain).
    Two texts that differ only in layout, comments or annotations have the same form."""
    statements = require_valid(text)
    ordered = [statements[k] for k in sorted(statements, key=lambda k: int(k.removeprefix("policy")))]
    for statement in ordered:
        statement.pop("annotations", None)
    return json.dumps({"statements": ordered}, sort_keys=True, separators=(",", ":"))


def policy_digest(text: Any) -> bytes:
    """SHA-256 of `canonical_form(text)`: what an agreement's co-signatures and a patient's
    standing opt-in can name."""
    return hashlib.sha256(canonical_form(text).encode("utf-8")).digest()


def statements_of(policy: Any) -> dict[str, Any]:
    """The statements of a policy given as Cedar text or as its canonical form, checked either
    way (`PolicyRefused` when invalid): what the evaluation reads."""
    if isinstance(policy, str) and policy.startswith('{"statements":'):
        try:
            ordered = json.loads(policy)["statements"]
            document = {"staticPolicies": {f"policy{n}": s for n, s in enumerate(ordered)}, "templates": {},
                        "templateLinks": []}
            policy = cedarpy.policies_from_json_str(json.dumps(document, sort_keys=True))
        except (ValueError, KeyError, TypeError) as exc:
            raise PolicyRefused("invalid_policy", f"the canonical form does not decode: {exc}") from None
    return require_valid(policy)
