"""SMART scopes: parsing the v1 and v2 syntax into `Scope`, and what each role may be granted.

Accepted syntax (SMART App Launch 2.x, section "Scopes for requesting clinical data"):

    context/Type.perms     context: patient | user | system
                           Type:    a FHIR R4 resource type, or *
                           perms:   v1 `read` (= rs), `write` (= cud), `*` (= cruds), or
                                    v2 a non-empty subset of `cruds` in that order (`rs`, `cruds`, `r`)

Anything else is refused (`invalid_scope`, naming the scope): a v2 granular scope with a query
(`patient/Observation.rs?category=laboratory`), launch and identity scopes (`launch`, `openid`,
`fhirUser`, `offline_access`) and misspelt types: this server has no launch context and does not
silently grant less than a client meant to ask for.

What a role may hold (`ROLE_POLICY`); the scopes granted are the requested ones intersected with
it (a request for nothing the role may have is refused):

| role         | contexts      | permissions                                   |
| ------------ | ------------- | --------------------------------------------- |
| patient      | patient/      | read, search on every type; create, update, delete on Consent (its own consents) |
| practitioner | user/, system/| create, read, update, search on every type    |
| institution  | system/       | read, search                                  |
| researcher   | system/       | read, search (bulk export of its study's de-identified extract) |

Nobody but a patient deletes: deleting clinical data is the patient's erasure. A per-type entry
only ever adds permissions to the role's own (a wildcard scope `*` covers every type, so a
narrower per-type entry could not be kept). The FHIR routes still decide every access on the
ledger (a practitioner's Consent create is refused there: the patient grants consents); a scope
only narrows what a token may try.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from node.app.fhir_types import is_resource_type, unknown_type_message
from node.core.errors import CodedError
from node.fhir.principal import Scope

CONTEXTS = ("patient", "user", "system")
PERMS = "cruds"
V1_PERMS: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}
MAX_SCOPES = 32
MAX_SCOPE_CHARS = 2048
_SCOPE = re.compile(r"(?P<context>[a-z]+)/(?P<type>[A-Za-z]+|\*)\.(?P<perms>[a-z]+|\*)")


class ScopeError(CodedError):
    """A scope string refused: `invalid_scope` (RFC 6749), the message names the scope."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 400)


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """What one role may be granted: its contexts, its permissions on every type, and the types
    it may do more on (`per_type`: a superset of `perms` each)."""

    contexts: frozenset[str]
    perms: frozenset[str]
    per_type: tuple[tuple[str, frozenset[str]], ...] = ()

    def __post_init__(self) -> None:
        if any(not perms >= self.perms for _, perms in self.per_type):
            raise ValueError("a per-type entry may only add permissions to the role's own")

    def perms_on(self, resource_type: str) -> frozenset[str]:
        for name, perms in self.per_type:
            if name == resource_type:
                return perms
        return self.perms


ROLE_POLICY: dict[str, RolePolicy] = {
    "patient": RolePolicy(contexts=frozenset({"patient"}), perms=frozenset("rs"),
                          per_type=(("Consent", frozenset("cruds")),)),
    "practitioner": RolePolicy(contexts=frozenset({"user", "system"}), perms=frozenset("crus")),
    "institution": RolePolicy(contexts=frozenset({"system"}), perms=frozenset("rs")),
    "researcher": RolePolicy(contexts=frozenset({"system"}), perms=frozenset("rs")),
}


def perms_text(perms: Iterable[str]) -> str:
    """The v2 spelling of a permission set (`cruds` order)."""
    given = set(perms)
    return "".join(p for p in PERMS if p in given)


def scope_text(scope: Scope) -> str:
    """The v2 spelling of a scope: `patient/Observation.rs`."""
    return f"{scope.context}/{scope.resource_type}.{perms_text(scope.perms)}"


def parse_scope(text: str) -> Scope:
    """One scope, v1 or v2 syntax (see the module's docstring); ScopeError otherwise."""
    shown = repr(text[:80])
    found = _SCOPE.fullmatch(text)
    if found is None:
        raise ScopeError("invalid_scope", f"{shown} is not a SMART resource scope (context/Type.perms, e.g. "
                                          "system/Observation.rs or patient/*.read); launch, identity and granular "
                                          "(?query) scopes are not supported")
    context, resource_type, perms = found["context"], found["type"], found["perms"]
    if context not in CONTEXTS:
        raise ScopeError("invalid_scope", f"{shown}: the context must be one of {', '.join(CONTEXTS)}")
    if resource_type != "*" and not is_resource_type(resource_type):
        raise ScopeError("invalid_scope", f"{shown}: {unknown_type_message(resource_type)}")
    letters = V1_PERMS.get(perms, perms)
    if not letters or any(p not in PERMS for p in letters) or perms_text(letters) != letters:
        raise ScopeError("invalid_scope", f"{shown}: the permissions are v1 read, write or *, or v2 letters of "
                                          "'cruds' in that order, each once (e.g. rs)")
    return Scope(context=context, resource_type=resource_type, perms=frozenset(letters))


def parse_scopes(text: str) -> list[tuple[str, Scope]]:
    """The space-separated scopes of a token request, each with the text it was asked as."""
    if len(text) > MAX_SCOPE_CHARS:
        raise ScopeError("invalid_scope", f"the scope parameter is longer than {MAX_SCOPE_CHARS} characters")
    items = text.split()
    if not items:
        raise ScopeError("invalid_scope", "ask for at least one scope (e.g. scope=system/Observation.rs)")
    if len(items) > MAX_SCOPES:
        raise ScopeError("invalid_scope", f"at most {MAX_SCOPES} scopes in one token request")
    return [(item, parse_scope(item)) for item in dict.fromkeys(items)]


def grant(role: str, requested: Iterable[tuple[str, Scope]]) -> list[tuple[str, Scope]]:
    """The requested scopes intersected with what `role` may hold (`ROLE_POLICY`), each with the
    text to report it by: the requested text when granted whole, the v2 spelling when narrowed.
    A wildcard type is narrowed per type: `patient/*.cruds` for a patient is `patient/*.rs` and
    `patient/Consent.cruds`. Empty when nothing may be granted (or the role holds no scope)."""
    policy = ROLE_POLICY.get(role)
    if policy is None:
        return []
    out: dict[Scope, str] = {}

    def add(asked: str, scope: Scope, resource_type: str, perms: frozenset[str]) -> None:
        if perms:
            given = Scope(scope.context, resource_type, perms)
            out.setdefault(given, asked if given == scope else scope_text(given))

    for asked, scope in requested:
        if scope.context not in policy.contexts:
            continue
        if scope.resource_type != "*":
            add(asked, scope, scope.resource_type, scope.perms & policy.perms_on(scope.resource_type))
            continue
        add(asked, scope, "*", scope.perms & policy.perms)
        for name, perms in policy.per_type:
            extra = scope.perms & perms
            if extra - policy.perms:
                add(asked, scope, name, extra)
    return [(text, scope) for scope, text in out.items()]
