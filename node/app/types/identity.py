"""`identity.register`: an identity announces its role on the ledger.

Roles and who decides them:
- patient: self-registers with a pseudonymous key; may carry an institution's attestation
  (`institution` + `attestation`), recorded as `attested_by`. A patient's registration carries no
  label: nothing that names a person belongs on the chain.
- practitioner, researcher: need `institution` and `attestation`, the institution's Ed25519
  signature over `attestation_message(chain_id, registrant, role, institution, profession)`. The
  signature is verified at admission (once per node); at execution the institution must be
  registered.
- a practitioner may carry a `profession` (one of `fields.PROFESSIONS`), which the institution
  attests too: with one, the message is the v2 one (domain "medledger-attest-v2", the profession
  last), so an attestation given without a profession cannot be reused with one. Without one
  (clients older than professions) the v1 message, and the ledger shows "unspecified". Only a
  practitioner takes a profession ("invalid_body" otherwise).
- institution: never through this type ("role_not_allowed"); only the genesis file or
  `governance.admit_institution`.

Admission (`check_body`) checks the shape and verifies the attestation signature; who may hold
which role is a ledger rule, checked at execution in this order: "already_registered",
"role_not_allowed", "attestation_required", "unknown_institution".
"""

from __future__ import annotations

from typing import Any

from node.core.crypto import SIGNATURE_SIZE, Identity, verify
from node.core.encoding import canonical
from node.chain.tx import Transaction, TxRejected

from node.app import keys
from node.app.fields import check_id, check_profession
from node.app.registry import ExecContext, ExecFailed, TxType, register, require_fields
from node.app.roles import (
    INSTITUTION,
    PATIENT,
    PRACTITIONER,
    RESEARCHER,
    ROLES,
    identity_of,
    require_institution,
)
from node.app.stored import write

ATTEST_DOMAIN = "medledger-attest-v1"
ATTEST_DOMAIN_V2 = "medledger-attest-v2"  # the attestation that names the practitioner's profession
MAX_LABEL = 64
PREFIX = keys.IDENTITY
SELF_REGISTERED = (PATIENT, PRACTITIONER, RESEARCHER)
STAFF = (PRACTITIONER, RESEARCHER)


def identity_key(public_key: bytes) -> bytes:
    return keys.identity(public_key)


def attestation_message(chain_id: str, registrant: bytes, role: str, institution: bytes,
                        profession: str | None = None) -> bytes:
    """What an institution signs to vouch for a registrant in a role (and, for a practitioner,
    a profession) on one chain."""
    if profession is None:
        return canonical([ATTEST_DOMAIN, chain_id, registrant, role, institution])
    return canonical([ATTEST_DOMAIN_V2, chain_id, registrant, role, institution, profession])


def attest(institution: Identity, *, chain_id: str, registrant: bytes, role: str, profession: str | None = None) -> bytes:
    """The attestation signature `institution` gives `registrant` for `role` (and `profession`;
    client side)."""
    return institution.sign(attestation_message(chain_id, registrant, role, institution.public_key, profession))


def _check(tx: Transaction) -> None:
    body = tx.body
    require_fields(body, {"role": str}, {"label": str, "institution": bytes, "attestation": bytes, "profession": str})
    role = body["role"]
    if role not in ROLES:
        raise TxRejected("invalid_role", f"role must be one of {', '.join(SELF_REGISTERED)}")
    label = body.get("label", "")
    if len(label) > MAX_LABEL:
        raise TxRejected("invalid_body", f"label longer than {MAX_LABEL} characters")
    if label and role == PATIENT:
        raise TxRejected("invalid_body", "patients are pseudonymous: a patient registration takes no label")
    profession = body.get("profession")
    if profession is not None:
        if role != PRACTITIONER:
            raise TxRejected("invalid_body", "only a practitioner registers with a profession")
        check_profession(profession)
        if "institution" not in body:
            raise TxRejected("invalid_body", "a profession is attested by the practitioner's institution")
    if ("institution" in body) != ("attestation" in body):
        raise TxRejected("invalid_body", "institution and attestation go together")
    if "institution" in body:
        check_id(body, "institution")
        sig = body["attestation"]
        message = attestation_message(tx.chain_id, tx.sender, role, body["institution"], profession)
        if len(sig) != SIGNATURE_SIZE or not verify(body["institution"], message, sig):
            raise TxRejected("bad_attestation", "the attestation is not the institution's signature for this registrant and role"
                             + (" and profession" if profession is not None else ""))


def _execute(ctx: ExecContext) -> None:
    body = ctx.tx.body
    if identity_of(ctx.state, ctx.tx.sender) is not None:
        raise ExecFailed("already_registered", "this identity is already registered")
    role = body["role"]
    if role == INSTITUTION:
        raise ExecFailed("role_not_allowed", "institutions come from the genesis file or a governance vote")
    institution = body.get("institution")
    if role in STAFF and institution is None:
        raise ExecFailed("attestation_required", f"a {role} registers with its institution's attestation")
    record: dict[str, Any] = {"role": role, "label": body.get("label", ""), "height": ctx.height}
    if institution is not None:
        require_institution(ctx.state, institution)
        record["institution" if role in STAFF else "attested_by"] = institution
    if "profession" in body:
        record["profession"] = body["profession"]
    write(ctx, keys.identity(ctx.tx.sender), record)


IDENTITY_REGISTER = register(
    TxType(name="identity.register", summary="announce an identity's role", check_body=_check, execute=_execute)
)
