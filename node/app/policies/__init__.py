"""Data-sharing policies in Cedar: the schema of MedLedger's entities, the check a policy passes
before it goes on the chain, the deterministic evaluation, and the rule that a policy only
narrows or routes what the patient's consent allows.

One module per role: `engine` (the pinned Cedar engine and its version), `schema` (our entity
types and actions), `bounds` (the size limits), `check` (`check_policy`: parse and type-check),
`inputs` (canonical requests and entities), `evaluate` (`evaluate`: a pure decision over a
policy set), `combine` (`combine`: the policy decision ANDed with consent, the only widening a
standing permission the patient opted in to). docs/policies.md explains the choice of Cedar and
shows example policies. Nothing here reads the ledger or the clock.
"""
