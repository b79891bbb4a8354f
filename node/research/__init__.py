"""Research sharing, the pure data-processing core: no network, no ledger, no clock.

- ``safe_harbor``: de-identifies FHIR R4 resources by HIPAA Safe Harbor, at the custodian.
- ``pseudonyms``: the study pseudonyms that replace ids and references.
- ``release``: a custodian's de-identified release of its consenting patients' records.
- ``kanon``: quasi-identifiers, generalisation and k-anonymity over the merged patients.
- ``extract``: merges the custodians' releases into a FHIR Bulk Data extract and its report.
- ``synthetic``: realistic synthetic FHIR data for tests and demos.

docs/research.md explains how a release works and what each rule does.
"""
