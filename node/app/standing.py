"""The protocol's standing policies: what a patient's opt-in lets an institution's staff read
without a consent per record.

A patient opts in by naming an institution (`standing.grant`: its pharmacy, its insurer) or by
accepting a request addressed to one (`request.accept`: a referral, a lab order). Each opt-in
switches on one policy below, written in Cedar like the agreements and evaluated the same way
(node/app/policies/evaluate.py); `combine` lets a permit of theirs grant where consent did not,
while the agreements' forbids still apply (node/app/policies/combine.py). The texts are part of
the protocol: a change is a new version (`@2`), and the audit trail names the one that decided.

    nominated-pharmacy@1  the pharmacists of the patient's nominated pharmacy read the
                          prescriptions written for the patient, for treatment
    insurer@1             the claims officers of the patient's insurer read a Claim submitted to
                          it and, under that Claim, the records it lists, for payment
    referral@1            the physicians of the clinic a referral is addressed to read it and
                          the summary it lists, for treatment, from the patient's acceptance to
                          the referral's end
    lab-order@1           the technicians of the lab an order is addressed to read it once the
                          patient accepted; whoever ordered reads what was posted back on it

Which apply is a function of the state (the patient's nominations; an accepted request among the
entities), so every validator evaluates the same set.
"""

from __future__ import annotations

from node.app.policies.evaluate import Policy

NOMINATED_PHARMACY = Policy("standing.nominated-pharmacy@1", """
permit (principal, action == Action::"read", resource)
when { context.purpose == "treatment" && principal.profession == "pharmacist" &&
       resource.resource_type == "MedicationRequest" &&
       resource.patient has nominated_pharmacy && principal.institution == resource.patient.nominated_pharmacy };
""")

INSURER = Policy("standing.insurer@1", """
permit (principal, action == Action::"read", resource)
when { context.purpose == "payment" && principal.profession == "claims-officer" &&
       resource.patient has insurer && principal.institution == resource.patient.insurer &&
       resource.resource_type == "Claim" && resource has payer && resource.payer == principal.institution };
permit (principal, action == Action::"read", resource)
when { context.purpose == "payment" && principal.profession == "claims-officer" &&
       resource.patient has insurer && principal.institution == resource.patient.insurer &&
       context has claim && context.claim.patient == resource.patient &&
       context.claim has payer && context.claim.payer == principal.institution &&
       context.claim.lists.contains(resource) };
""")

REFERRAL = Policy("standing.referral@1", """
permit (principal, action == Action::"read", resource)
when { context.purpose == "treatment" && principal.profession == "physician" &&
       context has referral && context.referral has recipient && context.referral has until_ms &&
       principal.institution == context.referral.recipient && context.now_ms <= context.referral.until_ms &&
       context.referral.patient == resource.patient &&
       (resource == context.referral || context.referral.lists.contains(resource)) };
""")

LAB_ORDER = Policy("standing.lab-order@1", """
permit (principal, action == Action::"read", resource)
when { context.purpose == "treatment" && principal.profession == "lab-technician" &&
       principal.institution.kind == "lab" && resource.resource_type == "ServiceRequest" &&
       resource has recipient && principal.institution == resource.recipient };
permit (principal, action == Action::"read", resource)
when { context.purpose == "treatment" && resource has based_on && resource.based_on has author &&
       resource.based_on.author == principal };
""")

STANDING_POLICIES = (NOMINATED_PHARMACY, INSURER, REFERRAL, LAB_ORDER)
BY_PERMISSION = {"pharmacy": NOMINATED_PHARMACY, "insurer": INSURER}


def opted_in(permissions: set[str], *, accepted_request: bool, fulfils_order: bool) -> list[Policy]:
    """The standing policies a request is evaluated under: those of the patient's nominations
    (`permissions`), the referral and lab-order ones when an accepted request is among the
    entities, and the lab-order one for a record posted back on an order."""
    chosen = [BY_PERMISSION[p] for p in sorted(permissions) if p in BY_PERMISSION]
    if accepted_request:
        chosen += [REFERRAL, LAB_ORDER]
    elif fulfils_order:
        chosen.append(LAB_ORDER)
    return chosen
