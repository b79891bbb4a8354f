"""Trial invitations on the patient portal (issue 21), in headless Chromium against a 4-node devnet.

The hospital (node0) is a site of a trial the research centre (node2) sponsors; two screened
patients match its criteria and are invited. Each signs in on the hospital's patient page and
finds the invitation at the top, opened in the page with its own key (the summary is sealed to
it). One takes part: the page derives the same pseudonym as node/client.py, signs its consent
to the current protocol version, and the ledger shows that pseudonym's consent. The other says
no: the site marks the invitation declined and no pseudonym of theirs is on the ledger. At 390
px nothing scrolls sideways and axe finds no serious or critical violation.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")
pytest.importorskip("axe_playwright_python", reason="axe-playwright-python is not installed (pip install -e '.[test]')")

if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)", allow_module_level=True)

from node.app.trial_criteria import SYSTEMS, canonical  # noqa: E402
from node.client import ApiError, HealthClient, trial_pseudonym  # noqa: E402
from node.core.crypto import Identity, sha256  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from node.home.keys import load_key_file, write_key_file  # noqa: E402
from tests.browser.a11y import PHONE, overflow, serious_violations  # noqa: E402
from tests.browser.story import launch_chromium, sign_in  # noqa: E402

pytestmark = pytest.mark.slow
T = "HBA1C-2027"
SUMMARY = "Twelve months, four visits: does a new metformin schedule lower HbA1c?"
CRITERIA = {"version": 1, "include": [{"resource": "Condition", "system": SYSTEMS["snomed"], "codes": ["44054006"]}]}
WAIT_MS = 60_000


def committed(out: dict[str, Any]) -> None:
    assert out.get("status") == "committed", out


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("trial-ui")
    with Cluster.create(root / "net", 4, kinds=["hospital", "clinic", "research", "insurer"]) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        url = [n.api_url for n in cluster.nodes]
        hospital, sponsor = load_key_file(cluster.nodes[0].home / "institution.key"), load_key_file(cluster.nodes[2].home / "institution.key")
        client = HealthClient(url[0])
        doctor = Identity.generate()
        committed(client.register(doctor, "practitioner", institution=hospital, profession="physician"))
        patients = {}
        for name in ("taker", "decliner"):
            p = Identity.generate()
            committed(client.register(p, "patient", institution=hospital))
            committed(client.nominate(p, "screening", hospital.id))
            condition = {"resourceType": "Condition", "subject": {"reference": f"Patient/{p.id}"},
                         "code": {"coding": [{"system": SYSTEMS["snomed"], "code": "44054006"}]}}
            committed(client.put_record(doctor, p.id, json.dumps(condition).encode()))
            key = root / f"{name}.key"
            write_key_file(key, p)
            patients[name] = (p, key)
        committed(HealthClient(url[2]).transact(sponsor, "trial.register", {
            "trial": T, "registry_id": "NCT07654321", "ethics_ref": "IRB-2026-201", "protocol_hash": sha256(b"v1"),
            "sites": [hospital.public_key], "criteria": canonical(CRITERIA).decode(), "until_ms": int(time.time() * 1000) + 10**10}))
        cluster.wait_for_height(max(h for h in cluster.heights() if h is not None), 30)
        invited = HealthClient(url[0]).site_invite(sponsor, T, SUMMARY)
        assert invited["invited"] == 2, invited
        yield dict(cluster=cluster, url=url, patients=patients, chain_id=client.chain_id)


def open_portal(browser: Any, trial: dict[str, Any], name: str) -> Any:
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(WAIT_MS)
    sign_in(page, f"{trial['url'][0]}/ui/patient.html", trial["patients"][name][1])
    page.wait_for_selector(f"[data-pending='trial'][data-trial='{T}']")
    return page


def test_a_patient_reads_its_invitation_and_takes_part_under_its_pseudonym(browser: Any, trial: dict[str, Any]) -> None:
    page = open_portal(browser, trial, "taker")
    item = page.locator(f"[data-pending='trial'][data-trial='{T}']")
    assert "NCT07654321" in item.inner_text() and SUMMARY in item.inner_text()  # opened in the page
    assert overflow(page) == 0
    assert serious_violations(page) == []
    page.click("[data-action='trial-accept']")
    outcome = page.wait_for_selector("#trial-outcome")
    patient = trial["patients"]["taker"][0]
    expected = trial_pseudonym(patient, trial["chain_id"], T).id
    assert outcome.get_attribute("data-status") == "accepted" and outcome.get_attribute("data-pseudonym") == expected
    participant = HealthClient(trial["url"][3]).trial_participant(T, expected)
    assert participant["versions"] == [1]
    assert patient.id not in json.dumps(participant)  # the ledger knows the pseudonym, never the patient
    page.close()


def test_a_patient_says_no_and_nothing_leaves_the_site(browser: Any, trial: dict[str, Any]) -> None:
    page = open_portal(browser, trial, "decliner")
    page.click("[data-action='trial-decline']")
    outcome = page.wait_for_selector("#trial-outcome")
    assert outcome.get_attribute("data-status") == "declined"
    patient = trial["patients"]["decliner"][0]
    listed = HealthClient(trial["url"][0]).invitations(patient)["invitations"]
    assert [(i["trial"], i["status"]) for i in listed] == [(T, "declined")]
    with pytest.raises(ApiError):
        HealthClient(trial["url"][0]).trial_participant(T, trial_pseudonym(patient, trial["chain_id"], T).id)
    page.reload()  # the answered invitation is no longer waiting
    sign_in(page, f"{trial['url'][0]}/ui/patient.html", trial["patients"]["decliner"][1])
    page.wait_for_selector("#pending-empty, #pending-list")
    assert page.locator("[data-pending='trial']").count() == 0
    page.close()


def test_after_an_amendment_asking_for_it_the_patient_consents_again_from_the_page(browser: Any, trial: dict[str, Any]) -> None:
    sponsor = load_key_file(trial["cluster"].nodes[2].home / "institution.key")
    committed(HealthClient(trial["url"][2]).transact(sponsor, "trial.amend", {
        "trial": T, "version": 2, "protocol_hash": sha256(b"v2"), "reconsent": True}))
    cluster = trial["cluster"]
    cluster.wait_for_height(max(h for h in cluster.heights() if h is not None), 30)
    page = browser.new_page(viewport=PHONE)
    page.set_default_timeout(WAIT_MS)
    sign_in(page, f"{trial['url'][0]}/ui/patient.html", trial["patients"]["taker"][1])
    page.wait_for_selector(f"[data-pending='trial-reconsent'][data-trial='{T}']")
    assert serious_violations(page) == []
    page.click("[data-action='trial-reconsent']")
    outcome = page.wait_for_selector("#trial-outcome")
    assert outcome.get_attribute("data-status") == "accepted"
    pseud = trial_pseudonym(trial["patients"]["taker"][0], trial["chain_id"], T).id
    assert HealthClient(trial["url"][3]).trial_participant(T, pseud)["versions"] == [1, 2]
    page.close()
