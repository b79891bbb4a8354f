"""The treatment relationship a practitioner needs to add a record to a patient's chart.

A practitioner P of institution I treats patient X, at block time t, when one of these holds
(checked in this order; the first that holds is the basis recorded with the record):

- "registered": X registered with I's attestation (I vouched for X as its patient);
- "consent": X (or X's guardian) gave a consent naming P or I, for the purpose treatment or
  emergency, in force at t (not revoked, valid_from <= t <= valid_until);
- "referral": X accepted a referral to I whose period includes t (node/app/care.py);
- "breakglass": P holds a break-glass grant on one of X's records, open at t and not revoked
  (the emergency documentation of the care it gave).

Otherwise `record.add` fails with "no_treatment_relationship": a stranger cannot put a record in
a chart, nor make itself the author of one and so gain access to the patient's file.
"""

from __future__ import annotations

from node.core.encoding import decode_stored

from node.app import keys
from node.app.care import referred
from node.app.consents import candidate_consents
from node.app.registry import ExecContext
from node.app.roles import identity_of
from node.app.stored import read

TREATING_PURPOSES = frozenset({"treatment", "emergency"})


def treatment_basis(ctx: ExecContext, practitioner: bytes, institution: bytes, patient: bytes) -> str | None:
    """Why `practitioner` (of `institution`) treats `patient` at the block's time, or None."""
    now = ctx.timestamp_ms
    found = identity_of(ctx.state, patient)
    if found is not None and found.get("attested_by") == institution:
        return "registered"
    grantees = [("institution", institution), ("practitioner", practitioner)]
    for consent in candidate_consents(ctx.state, patient, sorted(grantees, key=lambda g: keys.grantee_part(*g))):
        if consent.revoked or not consent.valid_from <= now <= consent.valid_until:
            continue
        if consent.purposes & TREATING_PURPOSES:
            return "consent"
    if referred(ctx.state, institution, patient, now):
        return "referral"
    for _, raw in ctx.state.items(keys.BREAKGLASS_BY + practitioner):
        entry = decode_stored(raw)
        if entry["patient"] != patient or entry["expires_ms"] < now:
            continue
        decision = read(ctx.state, keys.access(entry["request"]))
        if decision is not None and "revoked_ms" not in decision:
            return "breakglass"
    return None
