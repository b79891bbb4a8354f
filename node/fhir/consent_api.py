"""Consent through FHIR: read and search the ledger's consents; create and revoke them with the
patient's own signed transaction.

The server holds no patient key, so a patient's Consent is made by the patient's signature:
`POST /fhir/R4/Consent` carries the Consent and, in the header `X-MedLedger-Transaction`, the
base64 of a `consent.grant` transaction (its msgpack encoding, node/chain/tx.py) signed by the
patient the token was issued to, whose body is exactly `consent_map.grant_body(the Consent)`.
The server checks that, admits the transaction, waits for its commit and answers 201 with the
Consent as the ledger now holds it (`Location: <base>/Consent/<id>`, the id being the
transaction's hash). `DELETE /fhir/R4/Consent/<id>` revokes alike, with a `consent.revoke`
whose body is `{"consent": <id>}`.

Read and search (`patient`, `_id`): a patient its own consents; a practitioner or an
institution the consents of a patient that name it (or its institution) as grantee.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from aiohttp import web

from node.api.common import NODE_KEY
from node.app import queries
from node.app.fhir_export import consent_resource
from node.app.state import StateReader
from node.chain.tx import MAX_TX_BYTES, Transaction, TxRejected, decode_tx, jsonable
from node.core.encoding import decode
from node.fhir.answer import JSON, base_url, fhir_response
from node.fhir.catalog import LEDGER_TYPES
from node.fhir.consent_map import grant_body
from node.fhir.ledger import ledger_id, not_found
from node.fhir.outcome import FhirError
from node.fhir.principal import Principal
from node.fhir.search import parse_plain, patient_id, searchset
from node.records.fhir import FhirInvalid, validate_resource

TX_HEADER = "X-MedLedger-Transaction"
COMMIT_WAIT_S = 15.0
ADMISSION_STATUS = {"nonce_replayed": 409, "already_committed": 409, "mempool_full": 503, "sender_limit": 429,
                    "not_registered": 403, "bad_signature": 400}


def api_consent(answer: JSON) -> JSON:
    """A `queries.consent` answer as this server serves it: fhir_export's Consent, the patient a reference."""
    out = consent_resource(answer)
    out["patient"] = {"reference": f"Patient/{answer['patient']}"}
    return out


def visible(principal: Principal, answer: JSON) -> bool:
    """The patient sees its consents; staff those naming it or its institution as grantee."""
    if answer["patient"] == principal.identity.hex():
        return True
    mine = {principal.identity.hex(), *([principal.institution.hex()] if principal.institution else [])}
    return principal.role != "patient" and answer["grantee_kind"] != "study" and answer["grantee"] in mine


def read(state: StateReader, principal: Principal, fid: str, now_ms: int) -> JSON:
    key = ledger_id(fid)
    answer = queries.consent(state, key, now_ms) if key is not None else None
    if answer is None or not visible(principal, answer):
        raise not_found("Consent", fid)
    return api_consent(answer)


def search(state: StateReader, principal: Principal, query: Sequence[tuple[str, str]], base: str, now_ms: int, *,
           strict: bool) -> JSON:
    found, values = parse_plain(query, LEDGER_TYPES["Consent"], now_ms, strict=strict)
    patients = {patient_id(v, bare=True) for v in values.get("patient", [])}
    if principal.role == "patient":
        patients = patients or {principal.identity.hex()}
    if not patients:
        raise FhirError(400, "search_patient_required", "name the patient (patient=Patient/<id>)")
    ids = None
    for value in values.get("_id", []):
        given = {v.strip().lower() for v in value.split(",") if v.strip()}
        ids = given if ids is None else ids & given
    answers: list[JSON] = []
    if len(patients) == 1:
        key = ledger_id(next(iter(patients)))
        if key is not None:
            answers = [a for a in queries.patient_consents(state, key, now_ms)
                       if visible(principal, a) and (ids is None or a["id"] in ids)]
    page = answers[found.offset:found.offset + found.count]
    return searchset(base, found, [(f"{base}/{a['id']}", api_consent(a)) for a in page], candidates=len(answers))


def signed_transaction(request: web.Request, principal: Principal, tx_type: str) -> tuple[Transaction, bytes]:
    """The patient's transaction from the request's header: decoded, of `tx_type`, sent by the token's patient."""
    if principal.role != "patient":
        raise FhirError(403, "patient_only", "only the patient grants and revokes its consents (with its own signature)")
    text = request.headers.get(TX_HEADER)
    if not text:
        raise FhirError(400, "transaction_required", f"send the patient-signed {tx_type} transaction, base64 of its "
                                                     f"encoding, in the header {TX_HEADER}")
    if len(text) > MAX_TX_BYTES * 4 // 3 + 8:
        raise FhirError(413, "too_large", f"the transaction in {TX_HEADER} is over {MAX_TX_BYTES} bytes")
    cleaned = text.strip().replace("-", "+").replace("_", "/")  # URL-safe base64 too, padding optional
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FhirError(400, "malformed_transaction", f"{TX_HEADER} must be base64 (standard or URL-safe)") from None
    node = request.app[NODE_KEY]
    try:
        tx = decode_tx(raw, chain_id=node.chain_id)
    except TxRejected as exc:
        raise FhirError(400, exc.code, exc.message) from None
    if tx.type != tx_type:
        raise FhirError(422, "transaction_mismatch", f"the transaction is a {tx.type[:64]}, not a {tx_type}")
    if tx.sender != principal.identity:
        raise FhirError(403, "signer_mismatch", "the transaction must be signed by the patient the token was issued to")
    return tx, raw


async def submit(request: web.Request, tx: Transaction, raw: bytes) -> None:
    """Admit the transaction and wait for its commit; refused with its code when admission or execution fails."""
    node = request.app[NODE_KEY]
    [admitted] = node.admit([decode(raw, max_bytes=MAX_TX_BYTES)])
    if admitted.error is not None:
        raise FhirError(ADMISSION_STATUS.get(admitted.error, 400), admitted.error, admitted.message or admitted.error)
    if not await node.wait_committed(tx.hash, COMMIT_WAIT_S):
        raise FhirError(503, "not_committed", f"the transaction {tx.hash_hex} is not committed after {COMMIT_WAIT_S:.0f} s; "
                                              "read the Consent again shortly")
    result = node.tx_status(tx.hash).get("result")
    if result != "ok":
        raise FhirError(422, str(result), f"the ledger refused the transaction {tx.hash_hex}: {result}")


async def create(request: web.Request, principal: Principal, consent: JSON) -> web.StreamResponse:
    """POST /fhir/R4/Consent (see the module's docstring)."""
    tx, raw = signed_transaction(request, principal, "consent.grant")
    patient = consent.get("patient")
    named = patient.get("reference") if isinstance(patient, dict) else None
    if named != f"Patient/{principal.identity.hex()}":
        raise FhirError(422, "patient_mismatch", "Consent.patient must be Patient/<your ledger id>")
    try:
        validate_resource(consent)
    except FhirInvalid as exc:
        raise FhirError(422, exc.code, str(exc)) from None
    body = grant_body(consent)
    if tx.body != body:
        raise FhirError(422, "transaction_mismatch", "the transaction's body is not the Consent's consent.grant: sign "
                                                     f"exactly {jsonable(body)}")
    await submit(request, tx, raw)
    node = request.app[NODE_KEY]
    answer = queries.consent(node.state_reader(), tx.hash, node.now_ms())
    if answer is None:
        raise FhirError(503, "not_committed", "the consent is committed but not readable yet; read it again shortly")
    served = api_consent(answer)
    return fhir_response(served, 201, {"Location": f"{base_url(request)}/Consent/{served['id']}"})


async def revoke(request: web.Request, principal: Principal, fid: str) -> web.StreamResponse:
    """DELETE /fhir/R4/Consent/<id> (see the module's docstring)."""
    tx, raw = signed_transaction(request, principal, "consent.revoke")
    node = request.app[NODE_KEY]
    key = ledger_id(fid)
    answer = queries.consent(node.state_reader(), key, node.now_ms()) if key is not None else None
    if answer is None or answer["patient"] != principal.identity.hex():
        raise not_found("Consent", fid)
    if tx.body != {"consent": key}:
        raise FhirError(422, "transaction_mismatch", f"the transaction's body must be exactly {{'consent': {fid.lower()}}}")
    await submit(request, tx, raw)
    answer = queries.consent(node.state_reader(), key, node.now_ms()) or answer  # type: ignore[arg-type]
    return fhir_response(api_consent(answer), 200)
