"""JSON Web Tokens signed with Ed25519 (JWS compact serialisation, `alg` "EdDSA", RFC 7515/8037).

Only what a SMART Backend Services client assertion needs: `parse` splits a compact JWS into its
header, claims and signature, refusing anything that is not three base64url parts of bounded
size whose first two are JSON objects; `verify_eddsa` checks the signature with the signer's
Ed25519 public key (PyNaCl, through node/core/crypto.py); `encode` builds one (client side,
node/fhir/client_assertion.py). No other algorithm is accepted: `none`, the HMAC ones (`HS*`)
and every RSA/EC one are refused before any key is looked at, so a token cannot choose how it
is checked.

Refusals are `JwtError`s with a stable code (node/core/advice.py); the token endpoint turns them
into RFC 6749 `invalid_client` answers.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from node.core.crypto import Identity, verify
from node.core.errors import CodedError

ALG = "EdDSA"
MAX_JWT_CHARS = 4096  # a client assertion is a few hundred characters
SIGNATURE_SIZE = 64
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_CRITICAL_OK: frozenset[str] = frozenset()  # no JWS extension is understood, so none may be critical


class JwtError(CodedError):
    """A JWT refused: `code` is malformed_jwt, unsupported_alg or bad_jwt_signature (401)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 401)


@dataclass(frozen=True, slots=True)
class Jws:
    """A parsed compact JWS (its signature not yet checked): the header and claims as JSON
    objects, the signing input (`header.payload` as sent) and the raw signature bytes."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515, section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """The bytes of unpadded base64url `text` (JwtError malformed_jwt otherwise)."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JwtError("malformed_jwt", f"the JWT's {what} is not base64url (unpadded)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JwtError("malformed_jwt", f"the JWT's {what} is not base64url (unpadded)") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise JwtError("malformed_jwt", f"the JWT's {what} names {key!r} twice")
            out[key] = value
        return out

    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JwtError("malformed_jwt", f"the JWT's {what} is not JSON (UTF-8)") from None
    if not isinstance(value, dict):
        raise JwtError("malformed_jwt", f"the JWT's {what} must be a JSON object")
    return value


def parse(token: str) -> Jws:
    """Split and decode a compact JWS; checks its form and its `alg`, not its signature."""
    if not isinstance(token, str) or not token:
        raise JwtError("malformed_jwt", "the client assertion is empty; send a signed JWT")
    if len(token) > MAX_JWT_CHARS:
        raise JwtError("malformed_jwt", f"the JWT is longer than {MAX_JWT_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("malformed_jwt", "a JWT is three base64url parts joined by '.' (header.payload.signature)")
    header = _json_object(b64url_decode(parts[0], "header"), "header")
    alg = header.get("alg")
    if alg != ALG:
        shown = repr(alg)[:32]
        raise JwtError("unsupported_alg", f"the JWT's alg is {shown}; only {ALG} (Ed25519, RFC 8037) is accepted")
    crit = header.get("crit")
    if crit is not None and (not isinstance(crit, list) or set(map(str, crit)) - _CRITICAL_OK):
        raise JwtError("malformed_jwt", "the JWT's header marks extensions critical ('crit') that this node does not know")
    claims = _json_object(b64url_decode(parts[1], "payload"), "payload")
    signature = b64url_decode(parts[2], "signature")
    if len(signature) != SIGNATURE_SIZE:
        raise JwtError("malformed_jwt", f"an EdDSA signature is {SIGNATURE_SIZE} bytes")
    return Jws(header=header, claims=claims, signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
               signature=signature)


def verify_eddsa(jws: Jws, public_key: bytes) -> None:
    """Refuse (bad_jwt_signature) unless `public_key` signed the JWS."""
    if not verify(public_key, jws.signing_input, jws.signature):
        raise JwtError("bad_jwt_signature", "the JWT's signature does not verify with the key of the identity it names "
                                            "(iss); sign it with that identity's Ed25519 key")


def encode(identity: Identity, claims: dict[str, Any], *, kid: str | None = None) -> str:
    """A compact JWS of `claims` signed by `identity` (EdDSA); for clients and tests."""
    header: dict[str, Any] = {"alg": ALG, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    head = b64url_encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    signature = identity.sign(f"{head}.{body}".encode("ascii"))
    return f"{head}.{body}.{b64url_encode(signature)}"
