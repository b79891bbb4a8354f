"""MedLedger as a FHIR R4 server (`/fhir/R4`), authorised by SMART Backend Services.

A layer above the API's common parts, the records and research services and the runtime; the
daemon mounts its routes. Every read is decided on the ledger for the token's identity and
purpose and audited there; health data is decrypted only at the node of the requester's own
institution (docs/fhir.md).

- principal.py: who a request acts for (the bearer token's identity, scopes and purpose), the token store
- outcome.py: refusals as OperationOutcome (FhirError)
- smart.py: SMART Backend Services: discovery, the token endpoint, `install_smart` (mounting)
- jwt.py: EdDSA-signed JWTs (the client assertion); client_assertion.py: building one (client side)
- scopes.py: SMART v1/v2 scope syntax and what each role may be granted
- bearer.py: the bearer check (`require_principal`, `require_scope`), 401/403 OperationOutcomes
- catalog.py: the resource types served and their search parameters; search.py: parsing and matching
  searches, searchset Bundles with paging; resources.py: a ledger record as a FHIR resource (ids,
  meta, patient references rewritten to the ledger patient)
"""
