"""The compliance workbench (/ui/compliance.html) in headless Chromium against a 4-node devnet.

The custodian's compliance officer signs in with the institution key of node 0, where the story
(tests/browser/story.py) left a break-glass access awaiting review. At phone and desktop widths
nothing scrolls sideways and axe-core finds no serious or critical violation; the officer sees
every field needed to decide (names, institutions, the coded reason in words, the access window
in local time and UTC), reviews the access from the page with a note that stays off the chain
(its salted SHA-256 is the review's note_hash, checked here through the API); filters narrow the
disclosures; a start date after the end is explained; the CSV and FHIR AuditEvent exports
download and parse (the Bundle validated with fhir.resources R4B).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

import shutil  # noqa: E402

if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)", allow_module_level=True)

from node.client import HealthClient  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from node.core.crypto import Identity  # noqa: E402
from node.home.keys import load_key_file  # noqa: E402
from tests.browser.a11y import DESKTOP, PHONE, overflow, serious_violations  # noqa: E402
from tests.browser.story import Story, launch_chromium, populate, sign_in  # noqa: E402

pytestmark = pytest.mark.slow
WAIT_MS = 60_000
ZONE = "America/Sao_Paulo"  # UTC-3 all year (no daylight saving since 2019): local and UTC times differ
NOTE = "Seen on the ER board: patient brought in unconscious, 02:10. — checked by J. Doe"


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Story]]:
    root = tmp_path_factory.mktemp("compliance")
    with Cluster.create(root / "net", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        yield cluster, populate(cluster, root)


def open_page(browser: Any, viewport: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport, timezone_id=ZONE, locale="en-GB", accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(WAIT_MS)
    return context, pg, errors


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context, pg, errors = open_page(browser, DESKTOP)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def officer(page: Any, story: Story) -> None:
    """Sign in as node 0's institution (the record's custodian) and wait for both tables."""
    sign_in(page, story.urls[0] + "/ui/compliance.html", story.institution_key)
    page.wait_for_selector("#operator:not([hidden]) #breakglass-table")
    page.wait_for_selector("#disclosure-table tr[data-event]")


def rows(page: Any) -> list[str]:
    return page.eval_on_selector_all("#disclosure-table tbody tr[data-event]", "rs => rs.map(r => r.dataset.event)")


def sideways(page: Any) -> int:
    return overflow(page)


def violations(page: Any) -> list[dict[str, Any]]:
    return serious_violations(page)


def too_wide(page: Any) -> list[str]:
    """The innermost elements reaching past the viewport's right edge (for a failure's message)."""
    return page.evaluate("""() => { const w = document.documentElement.clientWidth;
      return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1
        && ![...e.children].some(c => c.getBoundingClientRect().right > w + 1))
        .slice(0, 8).map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}px`); }""")


def saved(page: Any, button: str) -> tuple[str, bytes]:
    """Click an export button; the downloaded file's suggested name and bytes."""
    with page.expect_download() as info:
        page.click(button)
    download = info.value
    path = download.path()
    assert path is not None, download.failure()
    with open(path, "rb") as f:
        return download.suggested_filename, f.read()


NARROW = {"width": 360, "height": 740}  # the narrowest phone the page is made for


@pytest.mark.parametrize("viewport", [NARROW, PHONE, DESKTOP], ids=["360px", "390px", "1280px"])
def test_layout_and_accessibility_signed_in(devnet, browser, viewport):
    _, story = devnet
    context, page, errors = open_page(browser, viewport)
    try:
        officer(page, story)
        assert sideways(page) == 0, f"the page scrolls sideways by {overflow(page)} px: {too_wide(page)}"
        page.click(f"#breakglass-table button[data-request='{story.breakglass_tx}']")
        page.wait_for_selector("#review-panel:not([hidden]) #review-fields")
        assert sideways(page) == 0, f"with the review form open, the page scrolls sideways by {overflow(page)} px: {too_wide(page)}"
        found = violations(page)
        assert found == [], found
        page.fill("#since", "2099-01-02")
        page.fill("#until", "2099-01-01")
        page.click("#period button[type=submit]")
        page.wait_for_selector("#period-problem")
        assert sideways(page) == 0, too_wide(page)
        found = violations(page)
        assert found == [], found
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_a_start_after_the_end_is_explained_and_periods_are_shown_in_utc_and_local(devnet, page):
    _, story = devnet
    officer(page, story)
    text = page.text_content("#period-text")
    assert "UTC" in text and ZONE in text  # the period in both
    when = page.text_content("#disclosure-table tbody tr td")
    assert " UTC" in when and "local:" in when and ("GMT-3" in when or "BRT" in when), when
    page.fill("#since", "2026-03-10")
    page.fill("#until", "2026-03-09")
    problem = page.wait_for_selector("#period-problem")  # said as soon as the date changes
    page.click("#period button[type=submit]")
    problem = page.wait_for_selector("#period-problem")
    assert "after the end date" in problem.text_content() and "2026-03-10" in problem.text_content()
    assert problem.get_attribute("role") == "alert"
    assert page.locator("#disclosure-table").count() == 0  # nothing silently empty
    assert page.get_attribute("#since", "aria-invalid") == "true"
    # a period that holds the story's disclosures again: today (UTC) as both ends
    today = datetime.now(timezone.utc).date().isoformat()
    page.fill("#since", today)
    page.fill("#until", today)
    page.click("#period button[type=submit]")
    page.wait_for_selector("#disclosure-table tr[data-event]")
    assert page.locator("#period-problem").count() == 0
    assert f"From {today} 00:00:00 UTC to {today} 23:59:59 UTC" in page.text_content("#period-text")
    # a period before the story holds nothing
    past = (datetime.now(timezone.utc) - timedelta(days=3)).date().isoformat()
    page.fill("#since", past)
    page.fill("#until", past)
    page.click("#period button[type=submit]")
    page.wait_for_selector("#disclosure-table td.empty")


def test_filters_narrow_the_disclosures(devnet, page):
    _, story = devnet
    officer(page, story)
    assert sorted(rows(page)) == ["access.breakglass", "access.granted"]
    # the requester by name and institution (the devnet names institutions by kind)
    granted = page.locator("#disclosure-table tr[data-event='access.granted']")
    assert "Dr Shepherd" in granted.text_content() and "clinic" in granted.text_content()
    glass = page.locator("#disclosure-table tr[data-event='access.breakglass']")
    assert "Dr Bailey" in glass.text_content() and "pharmacy" in glass.text_content()
    assert "the patient is unconscious or unresponsive" in glass.text_content()
    assert glass.get_attribute("data-review") in ("awaiting", "justified")  # the review test may have run

    page.select_option("#filter-outcome", "breakglass")
    assert rows(page) == ["access.breakglass"]
    page.select_option("#filter-outcome", "denied")
    assert rows(page) == []
    assert "not in the accounting of disclosures" in page.text_content("#filter-note")
    page.select_option("#filter-outcome", "")

    page.select_option("#filter-practitioner", story.reader.id)
    assert rows(page) == ["access.granted"]
    assert "Showing 1 of 2" in page.text_content("#filter-note")
    page.select_option("#filter-practitioner", "")

    page.fill("#filter-patient", story.patient.id[:6])
    assert len(rows(page)) == 2
    other = ("0" if story.patient.id[0] != "0" else "1") + story.patient.id[1:6]
    page.fill("#filter-patient", other)
    assert rows(page) == []
    page.fill("#filter-patient", "")
    assert len(rows(page)) == 2


def test_csv_and_fhir_exports_download_and_parse(devnet, page):
    from fhir.resources.R4B.bundle import Bundle

    _, story = devnet
    officer(page, story)
    name, data = saved(page, "#export-csv")
    assert name.endswith(".csv")
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    assert sorted(r["event"] for r in table) == ["access.breakglass", "access.granted"]
    glass = next(r for r in table if r["event"] == "access.breakglass")
    assert glass["patient"] == story.patient.id and glass["record"] == story.record_id
    assert glass["requester_name"] == "Dr Bailey" and glass["requester_institution"] == "pharmacy"
    assert glass["reason"] == "unconscious" and glass["outcome"] == "breakglass"
    assert glass["review"] in ("awaiting", "justified")
    assert datetime.fromisoformat(glass["time_utc"].replace("Z", "+00:00")).tzinfo is not None

    name, data = saved(page, "#export-fhir")
    assert name.endswith(".fhir.json")
    bundle = Bundle.model_validate(json.loads(data))
    assert bundle.type == "collection" and len(bundle.entry) == 2
    assert {e.resource.get_resource_type() for e in bundle.entry} == {"AuditEvent"}

    # the exports follow the filters
    page.select_option("#filter-outcome", "breakglass")
    _, data = saved(page, "#export-fhir")
    narrowed = Bundle.model_validate(json.loads(data))
    assert len(narrowed.entry) == 1
    txs = [e.what.identifier.value for e in narrowed.entry[0].resource.entity if e.what.identifier.system == "urn:medledger:tx"]
    assert txs == [story.breakglass_tx]
    _, data = saved(page, "#export-csv")
    assert [r["event"] for r in csv.DictReader(io.StringIO(data.decode("utf-8")))] == ["access.breakglass"]


def test_officer_reviews_the_breakglass_access_on_the_page(devnet, page):
    cluster, story = devnet
    inst = load_key_file(story.institution_key)
    officer(page, story)
    row = page.locator(f"#breakglass-table tr[data-request='{story.breakglass_tx}']")
    assert "Dr Bailey" in row.text_content() and "pharmacy" in row.text_content()
    assert "access window ends" in row.text_content()
    row.locator("button.wb-review-open").click()
    fields = page.wait_for_selector("#review-panel:not([hidden]) #review-fields")
    described = fields.text_content()
    for expected in ("Dr Bailey (practitioner)", "pharmacy", story.patient.id[:12], "Observation",
                     "emergency treatment", "unconscious: the patient is unconscious or unresponsive",
                     "none committed (no note_hash)", "access window ends", " UTC"):
        assert expected in described, (expected, described)
    # suspension goes only with an unjustified finding; the CLI command follows the form
    assert page.is_disabled("#review-suspend")
    page.check("#review-form input[value=unjustified]")
    assert page.is_enabled("#review-suspend")
    page.check("#review-form input[value=justified]")
    assert page.is_disabled("#review-suspend")
    page.fill("#review-note", NOTE)
    cli = page.text_content("#review-cli")
    assert f"--access {story.breakglass_tx}" in cli and "--outcome justified" in cli and "--note" in cli
    assert NOTE not in cli

    page.click("#review-submit")
    outcome = page.wait_for_selector("#review-outcome")
    assert outcome.get_attribute("data-result") == "ok", outcome.text_content()
    page.wait_for_selector(f"#breakglass-table tr[data-request='{story.breakglass_tx}']", state="detached")
    _, data = saved(page, "#note-download")
    kept = json.loads(data)
    assert kept["note"] == NOTE and kept["access"] == story.breakglass_tx and kept["outcome"] == "justified"

    # the ledger has the review; its note_hash is SHA-256(salt + note), and the note is not on the chain
    client = HealthClient(story.urls[1])
    decision = client.access_decision(inst, story.breakglass_tx)
    assert decision["review_outcome"] == "justified"
    commitment = hashlib.sha256(bytes.fromhex(kept["salt"]) + NOTE.encode()).hexdigest()
    assert decision["review_note_hash"] == commitment == kept["note_hash"]
    status = client.tx(outcome.get_attribute("data-tx"), wait_s=10)
    assert status["status"] == "committed" and status["result"] == "ok"
    tx = client.block(status["height"], signer=inst)["txs"][status["index"]]
    assert tx["type"] == "breakglass.review" and tx["sender"] == inst.id
    assert tx["body"] == {"access": story.breakglass_tx, "outcome": "justified", "note_hash": commitment}
    assert NOTE not in json.dumps(tx)
    assert client.breakglass_pending(inst)["pending"] == []
    assert page.locator("#breakglass-table td.empty").count() == 1
    # the disclosure now says it was reviewed, in the table and in the CSV
    page.wait_for_selector(f"#disclosure-table tr[data-tx='{story.breakglass_tx}'][data-review='justified']")
    _, data = saved(page, "#export-csv")
    glass = next(r for r in csv.DictReader(io.StringIO(data.decode("utf-8"))) if r["tx"] == story.breakglass_tx)
    assert glass["review"] == "justified" and glass["reviewed_utc"].endswith("Z")


def test_an_unjustified_finding_can_suspend_the_practitioner(devnet, page):
    cluster, story = devnet
    inst = load_key_file(story.institution_key)
    clinic = load_key_file(cluster.nodes[1].home / "institution.key")
    karev = Identity.generate()
    at_clinic = HealthClient(story.urls[1])
    assert at_clinic.register(karev, "practitioner", institution=clinic, label="Dr Karev")["status"] == "committed"
    glass = at_clinic.request_access(karev, story.record_id, "emergency", "imminent_harm")
    assert glass["status"] == "committed" and glass["decision"]["rule"] == "breakglass", glass
    officer(page, story)
    page.wait_for_selector(f"#breakglass-table tr[data-request='{glass['tx_hash']}']")
    row = page.locator(f"#breakglass-table tr[data-request='{glass['tx_hash']}']")
    assert "Dr Karev" in row.text_content() and "clinic" in row.text_content()
    row.locator("button.wb-review-open").click()
    described = page.wait_for_selector("#review-fields").text_content()
    assert "imminent_harm: there is an imminent risk of serious harm" in described
    page.check("#review-form input[value=unjustified]")
    page.check("#review-suspend")
    cli = page.text_content("#review-cli")
    assert "--outcome unjustified" in cli and "--suspend" in cli and "--note" not in cli
    page.click("#review-submit")
    outcome = page.wait_for_selector("#review-outcome")
    assert outcome.get_attribute("data-result") == "ok", outcome.text_content()
    assert "practitioner suspended" in outcome.text_content()
    assert page.locator("#note-download").count() == 0  # no note, nothing to keep

    decision = HealthClient(story.urls[0]).access_decision(inst, glass["tx_hash"])
    assert decision["review_outcome"] == "unjustified" and "revoked_ms" in decision and "review_note_hash" not in decision
    again = at_clinic.request_access(karev, story.record_id, "emergency", "unconscious")
    assert again["result"] == "denied" and again["decision"]["rule"] == "breakglass_suspended", again


def test_the_pages_vocabularies_are_the_ledgers():
    """workbench-review.js repeats the coded reasons and purposes in words: the same codes and
    texts as node/app/access.py and node/app/fields.py."""
    import re
    from pathlib import Path

    from node.app.access import BREAKGLASS_REASONS, BREAKGLASS_SUSPENSION_MS
    from node.app.fields import PURPOSE_CODES

    js = (Path(__file__).resolve().parents[2] / "node/ui/workbench-review.js").read_text()
    reasons = dict(re.findall(r'^\s+(\w+): "([^"]+)",$', js.split("export const BREAKGLASS_REASONS")[1].split("};")[0], re.M))
    assert reasons == BREAKGLASS_REASONS
    purposes = dict(re.findall(r'(\w+): "[^"]*\(HL7 (\w+)\)"', js.split("export const PURPOSES")[1].split("};")[0]))
    assert purposes == PURPOSE_CODES
    days = int(re.search(r"const SUSPENSION_DAYS = (\d+);", js).group(1))
    assert days * 86_400_000 == BREAKGLASS_SUSPENSION_MS
