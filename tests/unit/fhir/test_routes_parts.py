"""Parts of the FHIR routes without a node: the Provenance of a record's metadata (with the
institution that signed for its author), the CapabilityStatement's shape, and the mount's
checks of what must be on the app."""

from __future__ import annotations

import pytest
from aiohttp import web

from node.app.fhir_export import SYS_IDENTITY, SYS_TX
from node.fhir.capability import OAUTH_URIS, capability_statement
from node.fhir.catalog import INTERACTIONS, RESULT_PARAMS, type_params
from node.fhir.provenance import provenance_resource
from node.fhir.routes import install_fhir

from tests.unit.fhir.routes_world import assert_valid

META = {"id": "11" * 32, "patient": "aa" * 32, "resource_type": "Observation", "custodian": "cc" * 32,
        "author": "dd" * 32, "tx": "ee" * 32, "time_ms": 1_709_632_800_000, "erased": False}


def test_the_provenance_of_a_version_names_author_institution_custodian_and_transaction() -> None:
    first = assert_valid(provenance_resource(META))
    assert first["target"] == [{"reference": f"Observation/{'11' * 32}/_history/1"}]
    assert first["recorded"] == "2024-03-05T10:00:00.000Z" and first["activity"]["coding"][0]["code"] == "CREATE"
    assert [a["who"]["identifier"] for a in first["agent"]] == [
        {"system": SYS_IDENTITY, "value": "dd" * 32}, {"system": SYS_IDENTITY, "value": "cc" * 32}]
    assert "onBehalfOf" not in first["agent"][0]
    assert first["entity"] == [{"role": "source", "what": {"identifier": {"system": SYS_TX, "value": "ee" * 32},
                                                           "display": "the ledger transaction that registered this version"}}]
    later = assert_valid(provenance_resource({**META, "id": "22" * 32, "version_of": "11" * 32, "version": 2,
                                              "via": "cc" * 32}))
    assert later["id"] == "22" * 32 and later["target"] == [{"reference": f"Observation/{'11' * 32}/_history/2"}]
    assert later["agent"][0]["onBehalfOf"] == {"identifier": {"system": SYS_IDENTITY, "value": "cc" * 32},
                                               "type": "Organization"}
    assert later["activity"]["coding"][0]["code"] == "UPDATE"


def test_the_capability_statement_is_built_from_the_catalog() -> None:
    cap = assert_valid(capability_statement("https://node.example/fhir/R4", "https://node.example/fhir/R4/auth/token",
                                            software_version="0.1.0"))
    [rest] = cap["rest"]
    assert rest["security"]["extension"] == [{"url": OAUTH_URIS, "extension": [
        {"url": "token", "valueUri": "https://node.example/fhir/R4/auth/token"}]}]
    for resource in rest["resource"]:
        assert tuple(i["code"] for i in resource["interaction"]) == INTERACTIONS[resource["type"]]
        if "searchParam" in resource:
            assert tuple(p["name"] for p in resource["searchParam"]) == (*type_params(resource["type"]), *RESULT_PARAMS)


def test_the_routes_are_mounted_only_on_an_app_holding_what_they_need() -> None:
    with pytest.raises(RuntimeError, match="NODE_KEY.*DELEGATE_KEY.*TOKENS_KEY"):
        install_fhir(web.Application())
