"""Who a FHIR request acts for: the identity a SMART access token was issued to.

A token is issued (node/fhir/smart.py) to a ledger identity that proved its key with a signed
JWT assertion; it carries the SMART scopes granted and the purpose of use asked for. The FHIR
routes read the request's `Principal` and decide every data access on the ledger for that
identity and purpose, exactly as a signed fetch is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

# HL7 v3 PurposeOfUse codes a token may carry, and the ledger purpose each maps to.
PURPOSES: dict[str, str] = {
    "TREAT": "treatment",
    "ETREAT": "emergency",  # break-glass: needs a coded reason
    "HPAYMT": "payment",
    "HOPERAT": "operations",
    "HRESCH": "research",
}


@dataclass(frozen=True, slots=True)
class Scope:
    """One SMART v2 scope, `context/Type.perms` (v1 `.read`/`.write` parsed into perms).

    context: "system", "user" or "patient"; resource_type: a FHIR type or "*";
    perms: a subset of "cruds" (create, read, update, delete, search)."""

    context: str
    resource_type: str
    perms: frozenset[str]

    def allows(self, resource_type: str, perm: str) -> bool:
        return self.resource_type in ("*", resource_type) and perm in self.perms


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity behind a valid access token, with what the token lets it do.

    identity: the ledger identity id (32 bytes); role: its role on the ledger at issue time
    ("practitioner", "patient", "institution", "researcher"); institution: the institution it is
    registered under (None for a patient); purpose: the ledger purpose (a value of PURPOSES);
    reason: the break-glass reason code (purpose "emergency" only); expires_ms: the token's end."""

    identity: bytes
    role: str
    institution: bytes | None
    scopes: tuple[Scope, ...]
    purpose: str
    reason: str | None
    expires_ms: int
    token_id: str

    def may(self, resource_type: str, perm: str) -> bool:
        """Whether some scope of the token allows `perm` ("c", "r", "u", "d", "s") on the type."""
        return any(s.allows(resource_type, perm) for s in self.scopes)


class TokenStore:
    """The access tokens this node issued: opaque random strings, each bound to one Principal,
    kept in memory (a restart ends every token), at most `max_tokens` (the oldest go first) and at
    most `max_per_identity` of one identity (its oldest go first, so one client asking again and
    again cannot push everyone else's tokens out).

    `lookup` answers None for an unknown or expired token; nothing is learnt from a refused one.
    `issue` with `now_ms` first drops the expired tokens at the front (tokens are issued with one
    lifetime, so the oldest expire first)."""

    def __init__(self, max_tokens: int = 10_000, max_per_identity: int = 16) -> None:
        from collections import OrderedDict

        if max_tokens < 1 or max_per_identity < 1:
            raise ValueError("the token bounds must be at least 1")
        self.max_tokens = max_tokens
        self.max_per_identity = max_per_identity
        self._tokens: OrderedDict[str, Principal] = OrderedDict()
        self._held: dict[bytes, list[str]] = {}  # identity -> its tokens, oldest first

    def issue(self, principal: Principal, now_ms: int | None = None) -> str:
        import secrets

        if now_ms is not None:
            while self._tokens:
                token, first = next(iter(self._tokens.items()))
                if now_ms < first.expires_ms:
                    break
                self._drop(token)
        held = self._held.get(principal.identity, [])
        while len(held) >= self.max_per_identity:
            self._drop(held[0])
        token = secrets.token_urlsafe(32)
        self._tokens[token] = principal
        self._held.setdefault(principal.identity, []).append(token)
        while len(self._tokens) > self.max_tokens:
            self._drop(next(iter(self._tokens)))
        return token

    def lookup(self, token: str, now_ms: int) -> Principal | None:
        found = self._tokens.get(token)
        if found is None:
            return None
        if now_ms >= found.expires_ms:
            self._drop(token)
            return None
        return found

    def revoke_identity(self, identity: bytes) -> int:
        """End every token of `identity` (its key rotated, its registration withdrawn)."""
        gone = list(self._held.get(identity, ()))
        for token in gone:
            self._drop(token)
        return len(gone)

    def held_by(self, identity: bytes) -> int:
        """How many tokens of `identity` the store holds (expired ones not yet dropped included)."""
        return len(self._held.get(identity, ()))

    def _drop(self, token: str) -> None:
        principal = self._tokens.pop(token)
        held = self._held[principal.identity]
        held.remove(token)
        if not held:
            del self._held[principal.identity]

    def __len__(self) -> int:
        return len(self._tokens)
