"""The CapabilityStatement of `GET /fhir/R4/metadata`: exactly what this server serves.

Built from the catalog (node/fhir/catalog.py), the table the routes are mounted from: each
type with its interactions (`INTERACTIONS`) and its search parameters (`type_params`), the
system interactions (transaction, batch, search across types with `SYSTEM_PARAMS`), and the
SMART security service with the token endpoint (the `oauth-uris` extension). A pure function
of the base URL and the node's version: no clock (its `date` is the software's release date).
"""

from __future__ import annotations

from typing import Any

from node.fhir.catalog import FHIR_JSON, INTERACTIONS, PARAM_DOCS, PARAM_TYPES, RESULT_PARAMS, SYSTEM_PARAMS, type_params

JSON = dict[str, Any]
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
RELEASE_DATE = "2026-12-01"
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system")
RESULT_DOCS = {"_count": "the page size (at most 100; the default 20)",
               "_offset": "where the page starts in the result (the page links carry it)"}
RESULT_TYPES = {"_count": "number", "_offset": "number"}


def _param(name: str) -> JSON:
    if name in RESULT_PARAMS:
        return {"name": name, "type": RESULT_TYPES[name], "documentation": RESULT_DOCS[name]}
    return {"name": name, "type": PARAM_TYPES[name], "documentation": PARAM_DOCS[name]}


def capability_statement(base: str, token_url: str, *, software_version: str) -> JSON:
    """The statement for a server whose FHIR base is `base` and whose token endpoint is `token_url`."""
    resources = []
    for name, interactions in INTERACTIONS.items():
        entry: JSON = {"type": name, "interaction": [{"code": code} for code in interactions]}
        if any(i in ("read", "vread") for i in interactions):
            entry["versioning"] = "versioned" if "vread" in interactions else "no-version"
            entry["readHistory"] = "vread" in interactions
        if "update" in interactions:
            entry["updateCreate"] = False
        if "create" in interactions:
            entry["conditionalCreate"] = False
        if "search-type" in interactions:
            entry["searchParam"] = [_param(p) for p in (*type_params(name), *RESULT_PARAMS)]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": RELEASE_DATE,
        "publisher": "MedLedger",
        "kind": "instance",
        "software": {"name": "MedLedger", "version": software_version},
        "implementation": {"description": "MedLedger node: FHIR R4 on a permissioned healthcare ledger", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", FHIR_JSON],
        "rest": [{
            "mode": "server",
            "documentation": "Every read is decided by the patient's consent on the ledger and audited there.",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                             "text": "SMART Backend Services (client_credentials, private_key_jwt with EdDSA)"}],
                "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}],
            },
            "resource": resources,
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "searchParam": [_param(p) for p in (*SYSTEM_PARAMS, *RESULT_PARAMS)],
        }],
    }
