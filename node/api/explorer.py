"""What the explorer shows of blocks, transactions and identities, and to whom.

The chain is replicated to every validator, but its HTTP explorer is open to anyone. A patient's
transactions (their registration, consents, guardian, break-glass choice, the records written for
them, every access request on those records, reviews of those accesses, research releases that
include them) tell that patient's story, and the patient's one key links it across institutions.
So the public answer of the explorer carries, per transaction, only what proves the chain and
tells nobody's story: its hash, its position, its result, and — for transactions that concern no
patient (governance, study registration, staff registration) — its type, sender and body.
The Merkle proof is public too, but as the leaf's hash, not the leaf: the proof needs nothing else.

A signed request (`medledger-request-v1`, node/api/auth.py) sees a transaction whole when the signer
is entitled to it (`entitled`): its sender, the patient it concerns or that patient's guardian,
or this node's own institution key (its operator, who runs a validator that executes the
transaction anyway). A research release lists several patients; only its custodian (the sender)
and the node's operator read it whole — each patient sees their own entry in their audit trail.

Identities follow the same rule: anyone may learn that a key is a patient's, never who their
guardian is, whether they opted out of break-glass, which institution attested them, whose
guardian a practitioner is, or a patient's last nonce; the patient, their guardian and the
node's operator may.

Everything here is a pure function of the committed state and the transaction.
"""

from __future__ import annotations

from typing import Any

from node.app import queries
from node.app.roles import PATIENT, guardian_of
from node.app.state import StateReader
from node.chain.tx import Transaction

# Types whose body concerns no patient: governance and the registration of studies, researchers
# on studies and staff. Any other type (and any type added later) is private by default.
PUBLIC_TYPES = frozenset({"governance.admit_institution", "governance.schedule_upgrade", "study.register",
                          "study.add_researcher", "validator.add", "validator.remove", "validator.rotate"})
# Transactions listing several patients: a listed patient is not entitled to see the others.
MULTI_PATIENT_TYPES = frozenset({"research.release"})
WITHHELD = "withheld: this transaction concerns a patient; sign the request as one of its parties to read it"


def is_public(tx: Transaction) -> bool:
    """Whether a transaction concerns no patient, so that its body may be shown to anyone."""
    if tx.type in PUBLIC_TYPES:
        return True
    if tx.type == "identity.register":
        role = tx.body.get("role")
        return isinstance(role, str) and role != PATIENT
    return False


def _as_key(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) and len(value) == 32 else None


def _hex_key(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


STAFF_DELEGATED_TYPES = ("record.add", "access.request")  # on_behalf_of names a practitioner there


def concerned_patients(state: StateReader, tx: Transaction) -> set[bytes]:
    """The patients a transaction is about (read through the committed state where the body
    names a record or an access request rather than the patient)."""
    body = tx.body
    out: set[bytes] = set()
    if tx.type == "identity.register":
        if body.get("role") == PATIENT:
            out.add(tx.sender)
    elif tx.type in ("consent.grant", "consent.revoke", "consent.breakglass", "patient.set_guardian", "record.erase",
                     "standing.grant", "standing.revoke", "request.accept"):
        out.add(_as_key(body.get("on_behalf_of")) or tx.sender)
    elif tx.type == "record.add":
        patient = _as_key(body.get("patient"))
        if patient:
            out.add(patient)
    elif tx.type == "research.release":
        patients = body.get("patients")
        if isinstance(patients, list):
            out.update(p for p in patients if _as_key(p))
    if tx.type in ("record.erase", "access.request", "request.accept"):
        record = _as_key(body.get("record"))
        found = queries.record(state, record) if record else None
        patient = _hex_key(found.get("patient")) if found else None
        if patient:
            out.add(patient)
    if tx.type == "breakglass.review":
        access = _as_key(body.get("access"))
        found = queries.access_grant(state, access) if access else None
        patient = _hex_key(found.get("patient")) if found else None
        if patient:
            out.add(patient)
    return out


def entitled(state: StateReader, signer: bytes | None, tx: Transaction, node_key: bytes) -> bool:
    """Whether `signer` (None: an unsigned caller) may read the whole transaction."""
    if is_public(tx):
        return True
    if signer is None:
        return False
    if signer in (tx.sender, node_key):
        return True
    if tx.type in STAFF_DELEGATED_TYPES and signer == _as_key(tx.body.get("on_behalf_of")):
        return True  # the practitioner its institution acted for
    if tx.type in MULTI_PATIENT_TYPES:
        return False
    if tx.type == "patient.set_guardian" and signer == _as_key(tx.body.get("guardian")):
        return True
    for patient in concerned_patients(state, tx):
        if signer == patient or signer == guardian_of(state, patient):
            return True
    return False


def tx_view(tx: Transaction, *, index: int, result: str | None, whole: bool) -> dict[str, Any]:
    """A block's transaction as the explorer shows it: whole, or only its hash, place and result.

    The withheld form keeps the field names `type` and `sender` (null) so that a client reading
    them does not break; `withheld` says why they are empty.
    """
    if whole:
        return {**tx.to_json(), "index": index, "result": result}
    return {"hash": tx.hash.hex(), "index": index, "result": result, "type": None, "sender": None, "withheld": WITHHELD}


def identity_view(state: StateReader, ident: bytes, signer: bytes | None, node_key: bytes) -> dict[str, Any] | None:
    """An identity as `signer` may see it (None: unsigned): a patient's guardian, break-glass
    choice, attesting institution and registration height, and anyone's wards, only to the
    patient, their guardian or this node's operator."""
    found = queries.identity(state, ident)
    if found is None:
        return None
    if signer is not None and signer in (ident, node_key):
        return found
    if found.get("role") == PATIENT:
        if signer is not None and signer == guardian_of(state, ident):
            return found
        return {"id": found["id"], "role": PATIENT, "label": found.get("label", "")}
    return {k: v for k, v in found.items() if k != "guardian_of"}


def account_identity_view(identity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The identity record shown beside an account's nonce to an unsigned caller: a patient's
    attesting institution and registration height are left out."""
    if identity is None or identity.get("role") != PATIENT:
        return identity
    return {"role": PATIENT, "label": identity.get("label", "")}


def nonce_is_private(identity: dict[str, Any] | None) -> bool:
    """A patient's account nonce is shown only to the patient, its guardian and the node's
    operator: our clients take nonces from the clock, so the last one tells when the patient
    last signed a transaction, which a block's time would then tie to that transaction."""
    return identity is not None and identity.get("role") == PATIENT
