"""Consent types are FHIR R4 resource type names: a typo is refused by the ledger itself, with
the closest name, so a misspelt deny type can never leave a patient believing a type withheld."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from node.app.fhir_types import RESOURCE_TYPES, closest_resource_type
from node.app.registry import check_tx_body
from node.chain.tx import TxRejected

from tests.unit.app.harness import DAY, Ledger


@pytest.fixture
def world():
    ledger = Ledger()
    return ledger, ledger.patient("pat"), ledger.staff("doc-b", "B")


def grant(ledger, pat, doc, **scope):
    return {"grantee_kind": "practitioner", "grantee": doc.public_key, "purposes": ["treatment"],
            "valid_until": ledger.now + DAY, **scope}


def refusal(ledger, pat, body) -> TxRejected:
    with pytest.raises(TxRejected) as err:
        check_tx_body(ledger.tx(pat, "consent.grant", body, nonce=1))
    return err.value


def test_consent_with_misspelt_type_is_refused_with_the_closest_name(world):
    ledger, pat, doc = world
    err = refusal(ledger, pat, grant(ledger, pat, doc, resource_types=["Observaton"]))
    assert err.code == "invalid_resource_type" and "did you mean Observation?" in err.message


def test_consent_with_misspelt_deny_type_is_refused_so_nothing_stays_readable_by_mistake(world):
    ledger, pat, doc = world
    err = refusal(ledger, pat, grant(ledger, pat, doc, resource_types=["*"], deny_types=["Conditon"]))
    assert err.code == "invalid_resource_type" and "did you mean Condition?" in err.message
    # and through block execution (a proposer that skipped admission is caught the same way)
    tx = ledger.tx(pat, "consent.grant", grant(ledger, pat, doc, resource_types=["*"], deny_types=["Conditon"]))
    with pytest.raises(Exception):
        ledger.block(tx, verify=True)


def test_consent_with_real_types_is_accepted(world):
    ledger, pat, doc = world
    assert ledger.send(pat, "consent.grant", grant(ledger, pat, doc, resource_types=["*"], deny_types=["Condition"])) == "ok"
    assert ledger.send(pat, "consent.grant", grant(ledger, pat, doc, resource_types=["Observation", "MedicationRequest"])) == "ok"


def test_closest_name_is_deterministic_and_case_folded():
    assert closest_resource_type("observation") == "Observation"
    assert closest_resource_type("Medicationrequest") == "MedicationRequest"
    assert closest_resource_type("Zzzzzz") is None
    assert [closest_resource_type("Conditon") for _ in range(3)] == ["Condition"] * 3


def test_constant_list_matches_the_fhir_r4_models():
    import fhir.resources.R4B as r4b
    from fhir.resources.R4B.resource import Resource

    names = set()
    for info in pkgutil.iter_modules(r4b.__path__):
        module = importlib.import_module(f"fhir.resources.R4B.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, Resource) and value.__module__ == module.__name__:
                names.add(name)
    assert set(RESOURCE_TYPES) == names - {"Resource", "DomainResource"}
    assert list(RESOURCE_TYPES) == sorted(RESOURCE_TYPES)
