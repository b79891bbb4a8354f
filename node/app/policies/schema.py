"""MedLedger's entities and actions as a Cedar schema: what a policy may speak of.

Every policy is type-checked against `SCHEMA` when it is submitted (node/app/policies/check.py),
so a misspelt attribute or a string compared with a number is refused then, not silently
skipped at evaluation. Entity ids are the ledger's ids in hex; no health data and no free text
is an entity attribute, only codes (kinds, professions, resource types, purposes) and ids.

    Institution   kind (hospital, clinic, pharmacy, insurer, lab, research)
    Practitioner  profession (physician, nurse, pharmacist, claims-officer...), institution;
                  a member of its institution (`principal in Institution::"..."`)
    Patient       nominated_pharmacy?, insurer? (institutions the patient named)
    Record        resource_type (FHIR), patient, custodian; payer? (the insurer a Claim is
                  submitted to), recipient? (the institution a referral or an order is addressed
                  to, once the patient accepted it), until_ms? (the end of a referral's period),
                  lists (the records a Claim or a referral lists), author? (the practitioner
                  who wrote it), based_on? (the order it fulfils: a prescription, a lab order,
                  a Claim)
    actions       read, write; context: purpose (a purpose of use), now_ms (block time),
                  claim? (the Claim a payment read is made under), referral? (the referral a
                  treatment read is made under)
"""

from __future__ import annotations

import cedarpy

INSTITUTION_KINDS = ("hospital", "clinic", "pharmacy", "insurer", "lab", "research")
ACTIONS = ("read", "write")

SCHEMA_TEXT = """
entity Institution = {
  kind: String,
};
entity Practitioner in [Institution] = {
  profession: String,
  institution: Institution,
};
entity Patient = {
  nominated_pharmacy?: Institution,
  insurer?: Institution,
};
entity Record = {
  resource_type: String,
  patient: Patient,
  custodian: Institution,
  payer?: Institution,
  recipient?: Institution,
  until_ms?: Long,
  lists: Set<Record>,
  author?: Practitioner,
  based_on?: Record,
};
action read, write appliesTo {
  principal: [Practitioner],
  resource: [Record],
  context: {
    purpose: String,
    now_ms: Long,
    claim?: Record,
    referral?: Record,
  },
};
"""

ENTITY_TYPES = ("Institution", "Practitioner", "Patient", "Record")

SCHEMA = cedarpy.Schema.from_str(SCHEMA_TEXT)  # parsed once; the handle is immutable
