"""Care workflows on the ledger: prescriptions, dispensing, claims, referrals, lab orders, results.

A record may carry workflow metadata beside its type (optional `record.add` fields; the chain
gets ids, codes and times only, never the resource's content):

    based_on    the order a record fulfils (BASED_ON: which type fulfils which):
                  MedicationDispense on a MedicationRequest: by the patient's nominated pharmacy
                    (the patient's standing permission, node/app/standing.py), once: the
                    prescription is then completed and a second dispense is "already_dispensed";
                  ClaimResponse on a Claim: by the Claim's payer, once ("already_completed");
                  DiagnosticReport or Observation on a lab order: by the lab the order is
                    addressed to, after the patient accepted it; the first DiagnosticReport
                    completes the order.
    recipient   on a ServiceRequest: the institution it is addressed to, a lab (a lab order) or
                a clinic or hospital (a referral). It takes effect when the patient accepts it
                (`request.accept`): only then do the recipient's staff see it (policy
                `recipient`, below) and may its physicians add to the chart ("referral" basis).
    until_ms    on a referral: the end of its period (required; block time, inclusive; at most
                MAX_REFERRAL_MS after the block that registers it).
    payer       on a Claim: the insurer it is submitted to (an institution of kind insurer).
    lists       on a Claim, the records it covers (what the insurer may see with it); on a
                referral, the summary sent with it: at most MAX_LISTED ids of records of the same
                patient at the same custodian, none erased.

The workflow's state is kept apart from the record's metadata (`keys.WORKFLOW`): status
"active" or "completed" (and by which record, when), and for a request to an institution when
the patient accepted it. What is addressed to an institution is listed in its inbox
(`keys.INBOX`, `queries.inbox`): a Claim to its payer, an accepted referral or lab order to its
recipient, a prescription to the pharmacy the patient nominated when it was written, a result
or a dispense back to the institution that ordered it.
"""

from __future__ import annotations

from typing import Any

from node.chain.tx import TxRejected
from node.core.encoding import decode_stored

from node.app import keys
from node.app.fields import UNSPECIFIED, check_id, check_time, check_unique_list
from node.app.registry import ExecContext, ExecFailed
from node.app.roles import INSTITUTION, identity_of
from node.app.state import StateReader
from node.app.stored import read, write

MAX_LISTED = 32
MAX_REFERRAL_MS = 366 * 24 * 60 * 60 * 1000  # a referral lasts at most a year: a longer one is a new referral
WORKFLOW_FIELDS = {"based_on": bytes, "recipient": bytes, "until_ms": int, "payer": bytes, "lists": list}

# which record type may be based on which order, and whether one fulfilment completes it for good
BASED_ON = {
    "MedicationDispense": ("MedicationRequest",),
    "ClaimResponse": ("Claim",),
    "DiagnosticReport": ("ServiceRequest",),
    "Observation": ("ServiceRequest",),
}
ORDER_TYPES = ("MedicationRequest", "ServiceRequest", "Claim")  # the records with a workflow status
SINGLE_FULFILMENT = {"MedicationRequest": "already_dispensed", "Claim": "already_completed"}
COMPLETES = {"MedicationDispense", "ClaimResponse", "DiagnosticReport"}
REFERRAL_KINDS = ("clinic", "hospital")
ORDER_KINDS = ("lab",)
ACTIVE, COMPLETED = "active", "completed"


def check_fields(body: dict[str, Any]) -> None:
    """Stateless checks of a `record.add` body's workflow fields ("invalid_workflow")."""
    rtype = body["resource_type"]
    for name in ("based_on", "recipient", "payer"):
        if name in body:
            check_id(body, name)
    if "until_ms" in body:
        check_time(body, "until_ms")
    if "lists" in body:
        listed = check_unique_list(body, "lists", limit=MAX_LISTED)
        if not listed or not all(isinstance(r, bytes) and len(r) == 32 for r in listed):
            raise TxRejected("invalid_workflow", f"lists names 1 to {MAX_LISTED} record ids (32 bytes each)")
    if "based_on" in body and rtype not in BASED_ON:
        raise TxRejected("invalid_workflow", f"only a {', '.join(BASED_ON)} is based on an order, not a {rtype}")
    if "recipient" in body and rtype != "ServiceRequest":
        raise TxRejected("invalid_workflow", "only a ServiceRequest (a referral or a lab order) has a recipient")
    if "until_ms" in body and "recipient" not in body:
        raise TxRejected("invalid_workflow", "until_ms is a referral's end: it goes with a recipient")
    if "payer" in body and rtype != "Claim":
        raise TxRejected("invalid_workflow", "only a Claim has a payer")
    if "lists" in body and not ({"payer", "recipient"} & body.keys()):
        raise TxRejected("invalid_workflow", "lists goes with a Claim's payer or a referral's recipient")


def kind_of(state: StateReader, institution: bytes) -> str | None:
    """An institution's kind (UNSPECIFIED when recorded without one), None if it is no institution."""
    found = identity_of(state, institution)
    if found is None or found.get("role") != INSTITUTION:
        return None
    return str(found.get("kind", UNSPECIFIED))


def workflow(state: StateReader, record_id: bytes) -> dict[str, Any] | None:
    value = read(state, keys.WORKFLOW + record_id)
    return value if isinstance(value, dict) else None


def standing_of(state: StateReader, patient: bytes) -> dict[str, Any]:
    """The patient's standing permissions: {"pharmacy": {...}, "insurer": {...}} (absent: none)."""
    value = read(state, keys.STANDING + patient)
    return value if isinstance(value, dict) else {}


def nominated(state: StateReader, patient: bytes, permission: str) -> bytes | None:
    entry = standing_of(state, patient).get(permission)
    return entry["institution"] if isinstance(entry, dict) else None


def to_inbox(ctx: ExecContext, institution: bytes, record_id: bytes) -> None:
    ctx.state.put(keys.INBOX + institution + ctx.position, record_id)


def _listed(ctx: ExecContext, body: dict[str, Any]) -> None:
    for listed in body.get("lists", ()):
        found = read(ctx.state, keys.record(listed))
        if found is None or found["patient"] != body["patient"] or found["custodian"] != body["custodian"] \
                or "erased_ms" in found:
            raise ExecFailed("invalid_listed_record", "lists may name only existing records of the same patient "
                             "kept by the same custodian, none erased")


def _order_for(ctx: ExecContext, body: dict[str, Any], author_institution: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The order `body` is based on and its workflow state, checked for this fulfilment."""
    order = read(ctx.state, keys.record(body["based_on"]))
    if order is None:
        raise ExecFailed("unknown_record", "based_on names no record on the chain")
    if order["patient"] != body["patient"]:
        raise ExecFailed("workflow_mismatch", "based_on names another patient's record")
    if order["resource_type"] not in BASED_ON[body["resource_type"]]:
        raise ExecFailed("workflow_mismatch", f"a {body['resource_type']} is based on a "
                         f"{' or '.join(BASED_ON[body['resource_type']])}, not a {order['resource_type']}")
    if "erased_ms" in order:
        raise ExecFailed("erased", "the order was erased at the patient's request")
    state = workflow(ctx.state, body["based_on"])
    if state is None and order["resource_type"] == "MedicationRequest":
        state = {"status": ACTIVE}  # never dispensed yet
    if state is None:
        raise ExecFailed("workflow_mismatch", "based_on names a record that is no order of a workflow "
                         "(a ServiceRequest without a recipient, or a Claim without a payer)")
    otype = order["resource_type"]
    if otype == "MedicationRequest":
        if nominated(ctx.state, order["patient"], "pharmacy") != author_institution:
            raise ExecFailed("not_nominated_pharmacy", "only the pharmacy the patient nominated dispenses their prescriptions")
    elif otype == "Claim":
        if order.get("payer") != author_institution:
            raise ExecFailed("not_the_payer", "only the insurer the Claim was submitted to answers it")
    else:
        if order.get("recipient") != author_institution:
            raise ExecFailed("not_the_recipient", "only the institution the order is addressed to posts its results")
        if "accepted_ms" not in state:
            raise ExecFailed("order_not_accepted", "the patient has not accepted this order yet")
    if state["status"] == COMPLETED and otype in SINGLE_FULFILMENT:
        raise ExecFailed(SINGLE_FULFILMENT[otype], "this order was already fulfilled (by record "
                         f"{state['completed_by'].hex()[:16]}...); it is fulfilled once")
    return order, state


def fulfilment_basis(ctx: ExecContext, body: dict[str, Any], author_institution: bytes) -> str | None:
    """The basis of a record fulfilling an order (the order's type, lower case), checked; None
    when the record fulfils nothing."""
    if "based_on" not in body:
        return None
    order, _ = _order_for(ctx, body, author_institution)
    return {"MedicationRequest": "prescription", "Claim": "claim"}.get(order["resource_type"], "order")


def apply_add(ctx: ExecContext, body: dict[str, Any], record_id: bytes) -> dict[str, Any]:
    """Check and apply the workflow side of a record being added; the metadata to store with it."""
    meta: dict[str, Any] = {}
    rtype, patient = body["resource_type"], body["patient"]
    if "payer" in body:
        if kind_of(ctx.state, body["payer"]) != "insurer":
            raise ExecFailed("not_an_insurer", "a Claim's payer must be an institution of kind insurer")
        _listed(ctx, body)
        meta.update(payer=body["payer"], lists=list(body.get("lists", ())))
        write(ctx, keys.WORKFLOW + record_id, {"status": ACTIVE})
        to_inbox(ctx, body["payer"], record_id)
    if "recipient" in body:
        kind = kind_of(ctx.state, body["recipient"])
        if body["recipient"] == body["custodian"] or kind not in REFERRAL_KINDS + ORDER_KINDS:
            raise ExecFailed("invalid_recipient", "a referral goes to another clinic or hospital, a lab order to a lab")
        if kind in REFERRAL_KINDS and "until_ms" not in body:
            raise ExecFailed("referral_needs_until", "a referral needs its end (until_ms)")
        if "until_ms" in body and body["until_ms"] < ctx.timestamp_ms:
            raise ExecFailed("referral_ended", "the referral's end is already past")
        if "until_ms" in body and body["until_ms"] - ctx.timestamp_ms > MAX_REFERRAL_MS:
            raise ExecFailed("referral_too_long", "a referral lasts at most a year; refer again when it ends")
        _listed(ctx, body)
        meta.update(recipient=body["recipient"], lists=list(body.get("lists", ())))
        if "until_ms" in body:
            meta["until_ms"] = body["until_ms"]
        write(ctx, keys.WORKFLOW + record_id, {"status": ACTIVE, "kind": "order" if kind in ORDER_KINDS else "referral"})
    if rtype == "MedicationRequest":
        # a prescription is active until dispensed: its state is written only then, so a
        # MedicationRequest added as before workflows writes what it always wrote (old chains
        # replay to the same roots); only a nomination (new) adds an inbox entry
        pharmacy = nominated(ctx.state, patient, "pharmacy")
        if pharmacy is not None:
            to_inbox(ctx, pharmacy, record_id)
    if "based_on" in body:
        order_id = body["based_on"]
        order = read(ctx.state, keys.record(order_id))
        assert order is not None  # checked by fulfilment_basis
        state = workflow(ctx.state, order_id) or {"status": ACTIVE}
        if rtype in COMPLETES and state["status"] == ACTIVE:
            state.update(status=COMPLETED, completed_by=record_id, completed_ms=ctx.timestamp_ms,
                         completed_height=ctx.height)
            write(ctx, keys.WORKFLOW + order_id, state)
        meta["based_on"] = order_id
        to_inbox(ctx, order["custodian"], record_id)
    return meta


def accept(ctx: ExecContext, patient: bytes, record_id: bytes) -> dict[str, Any]:
    """The patient accepts a referral or a lab order addressed to an institution (`request.accept`)."""
    found = read(ctx.state, keys.record(record_id))
    if found is None:
        raise ExecFailed("unknown_record", "no record with this id")
    if found["patient"] != patient:
        raise ExecFailed("not_your_record", "this record belongs to another patient")
    state = workflow(ctx.state, record_id)
    if found["resource_type"] != "ServiceRequest" or "recipient" not in found or state is None:
        raise ExecFailed("not_a_request", "only a referral or a lab order addressed to an institution is accepted")
    if "erased_ms" in found:
        raise ExecFailed("erased", "the request was erased at the patient's request")
    if "accepted_ms" in state:
        raise ExecFailed("already_accepted", "you accepted this request already")
    if "until_ms" in found and found["until_ms"] < ctx.timestamp_ms:
        raise ExecFailed("referral_ended", "the referral's period is over")
    state.update(accepted_ms=ctx.timestamp_ms, accepted_height=ctx.height)
    write(ctx, keys.WORKFLOW + record_id, state)
    to_inbox(ctx, found["recipient"], record_id)
    if state.get("kind") == "referral":
        # the recipient's physicians treat the patient for the referral's period (relationships.py)
        write(ctx, keys.REFERRAL_TO + found["recipient"] + patient + record_id, {"until_ms": found["until_ms"]})
    return found


def referred(state: StateReader, institution: bytes, patient: bytes, now_ms: int) -> bool:
    """Whether `patient` accepted a referral to `institution` whose period includes `now_ms`."""
    for _, raw in state.items(keys.REFERRAL_TO + institution + patient):
        if decode_stored(raw)["until_ms"] >= now_ms:
            return True
    return False
