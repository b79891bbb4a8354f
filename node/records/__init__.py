"""Health records off the chain: FHIR validation, envelope encryption on the writer's side, and
the signed messages between clients and the custodian institution's node."""
