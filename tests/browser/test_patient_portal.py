"""The patient portal (/ui/patient.html) in headless Chromium against a 4-node devnet.

At a phone's width (390 px) and a desktop's (1280 px): nothing scrolls sideways and axe-core
finds no serious or critical WCAG 2.1 AA violation; the trail is told in plain words (who with
their institution, what kind of record, why, when in the patient's time zone with UTC on hover),
an unreviewed break-glass read is at the top. The patient gives a consent from the page (the
transaction's bytes are those node/chain/tx.py signs, and the Python client finds the consent
on the ledger), then withdraws it, told what that does. Events made from Python appear without
signing in again, and the page signs the patient out after a short idle time (`?idle=`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")
pytest.importorskip("axe_playwright_python", reason="axe-playwright-python is not installed (pip install -e '.[test]')")

if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)", allow_module_level=True)

from node.app.access import BREAKGLASS_REASONS, DENIED_RULES  # noqa: E402
from node.app.audit import AUDIT_EVENTS  # noqa: E402
from node.app.fields import PURPOSES  # noqa: E402
from node.app.types.standing import PERMISSIONS  # noqa: E402
from node.chain.tx import Transaction, check_signature, decode_tx  # noqa: E402
from node.client import HealthClient  # noqa: E402
from node.core.crypto import Identity  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from node.home.keys import load_key_file  # noqa: E402
from tests.browser.a11y import DESKTOP, PHONE, overflow, serious_violations  # noqa: E402
from tests.browser.story import Story, committed, launch_chromium, populate, sign_in  # noqa: E402

pytestmark = pytest.mark.slow
WAIT_MS = 30_000
REFERRAL = json.loads((Path(__file__).resolve().parents[2] / "docs/examples/servicerequest-referral.json").read_text())
ZONE = "Asia/Tokyo"  # UTC+9, no summer time: a local time that cannot pass for UTC


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Story]]:
    root = tmp_path_factory.mktemp("portal")
    with Cluster.create(root / "net", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        yield cluster, populate(cluster, root)


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[dict[str, int]], Any]]:
    """A page at a viewport, in the ZONE time zone and US English; no JavaScript error allowed."""
    contexts: list[Any] = []
    errors: list[str] = []

    def make(viewport: dict[str, int]) -> Any:
        context = browser.new_context(viewport=viewport, timezone_id=ZONE, locale="en-US")
        contexts.append(context)
        pg = context.new_page()
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.set_default_timeout(WAIT_MS)
        return pg

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def institution(cluster: Cluster, index: int) -> Identity:
    return load_key_file(cluster.nodes[index].home / "institution.key")


def signed_in(page: Any, story: Story, query: str = "") -> None:
    sign_in(page, story.urls[0] + "/ui/patient.html" + query, story.patient_key)
    page.wait_for_selector("#patient:not([hidden]) #audit-table")
    # what the record is about: read from the custodian, opened in the page with the patient's key
    page.wait_for_selector("#record-table .record-label")


def trail_text(page: Any) -> str:
    return " ".join(page.locator("#audit-table td.what").all_text_contents())


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390px", "1280px"])
def test_the_portal_speaks_plainly_fits_the_screen_and_passes_axe(devnet: tuple[Cluster, Story], open_page: Callable[[dict[str, int]], Any],
                                                                  viewport: dict[str, int]) -> None:
    cluster, story = devnet
    page = open_page(viewport)
    signed_in(page, story)
    # who, what, why: names with role and institution, the kind of record in words, the reason
    text = trail_text(page)
    assert ("Dr Bailey (practitioner at the pharmacy) opened your test result or measurement \"Heart rate\" (kept by the "
            "hospital) in an emergency, without your consent: you were unconscious or unresponsive.") in text
    assert ("Dr Shepherd (practitioner at the clinic) read your test result or measurement \"Heart rate\" (kept by the "
            "hospital) for your care, under your consent.") in text
    assert "You allowed Dr Shepherd (practitioner at the clinic) to read your test results and measurements, for your care" in text
    assert "Dr Grey (practitioner at the hospital) added a test result or measurement \"Heart rate\" to your records" in text
    assert "Heart rate" in page.text_content("#record-table")
    for code in ("access.breakglass", "Observation", "rule ", "to practitioner"):
        assert code not in text
    # the unreviewed break-glass read is at the top, before the trail
    pending = page.locator(f"#pending-list li[data-pending='breakglass'][data-request='{story.breakglass_tx}']")
    assert "Not reviewed yet: the hospital" in pending.text_content()
    assert page.evaluate("() => document.querySelector('#pending-section').compareDocumentPosition("
                         "document.querySelector('#audit-table')) & Node.DOCUMENT_POSITION_FOLLOWING") != 0
    # whom a consent names, and the patient's own id explained
    row = page.locator(f"#consent-table tr[data-consent='{story.consent_id}']")
    assert row.locator("td").first.text_content() == "Dr Shepherd (practitioner at the clinic)"
    who = page.text_content("#who")
    assert "Your MedLedger id: " in who and story.patient.id in who and "never by your name" in who
    # when: the patient's time zone, UTC on hover
    breakglass = HealthClient(story.urls[0]).tx(story.breakglass_tx)
    entry = next(e for e in HealthClient(story.urls[0]).audit(story.patient, story.patient.id)["entries"]
                 if e["tx"] == story.breakglass_tx)
    assert breakglass["status"] == "committed"
    when = page.locator(f"#audit-table tr[data-tx='{story.breakglass_tx}'] time")
    local = datetime.fromtimestamp(entry["time_ms"] / 1000, ZoneInfo(ZONE))
    utc = datetime.fromtimestamp(entry["time_ms"] / 1000, timezone.utc)
    assert f"{local.hour % 12 or 12}:{local.minute:02d}" in when.text_content()
    assert when.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert ZONE in page.text_content("#session-note")
    # fits the screen and passes axe, signed in (and with the revoke confirmation open)
    assert overflow(page) == 0, f"{overflow(page)} px of sideways scroll at {viewport['width']} px"
    row.locator("button[data-action=revoke]").click()
    assert "stays with the reader" in row.text_content()
    assert overflow(page) == 0
    assert serious_violations(page) == []
    row.locator("button:has-text('Keep it')").click()


def test_patient_gives_a_consent_from_the_page_then_withdraws_it(devnet: tuple[Cluster, Story], open_page: Callable[[dict[str, int]], Any]) -> None:
    cluster, story = devnet
    page = open_page(PHONE)
    clinic = institution(cluster, 1)
    posted: list[bytes] = []
    page.on("request", lambda r: posted.append(r.post_data_buffer) if r.method == "POST" and r.url.endswith("/v1/txs") else None)
    signed_in(page, story)

    # a pasted id is resolved to its name
    page.select_option("#grant-to", "other")
    page.fill("#grant-other-id", story.reader.id)
    page.wait_for_selector("#grant-other-name:has-text('This is Dr Shepherd (practitioner at the clinic).')")
    # the clinic, chosen by name: test results and prescriptions, for care, until 30 June 2027
    page.select_option("#grant-to", label="clinic — the whole institution")
    assert page.input_value("#grant-to") == f"institution:{clinic.id}"
    assert page.is_checked("#grant-type-Observation") and page.is_checked("#grant-purpose-treatment")
    page.check("#grant-type-MedicationRequest")
    page.fill("#grant-until", "2027-06-30")
    page.click("#grant-review")
    preview = page.text_content("#grant-preview-text")
    assert preview == ("The clinic will be able to read your test results and measurements, and prescriptions, for your care,"
                       " from now until the end of June 30, 2027. Anyone working for the clinic may use it.")
    note = page.text_content("#grant-preview-note")
    assert "what was already read stays with the reader" in note and "may also add new records to your file" in note
    assert overflow(page) == 0
    assert serious_violations(page) == []  # the form and its preview
    page.click("#grant-confirm")
    outcome = page.wait_for_selector("#grant-outcome")
    assert outcome.get_attribute("data-result") == "ok", outcome.text_content()
    consent_id = outcome.get_attribute("data-tx")

    # the browser's bytes are the transaction node/chain/tx.py signs (Ed25519 is deterministic)
    client = HealthClient(story.urls[2])
    tx = decode_tx(posted[-1], chain_id=client.chain_id)
    check_signature(tx)
    until_ms = int(datetime(2027, 6, 30, 23, 59, 59, 999_000, ZoneInfo(ZONE)).timestamp() * 1000)
    body = {"grantee_kind": "institution", "grantee": bytes.fromhex(clinic.id), "purposes": ["treatment"],
            "resource_types": ["Observation", "MedicationRequest"], "valid_until": until_ms}
    expected = Transaction.create(story.patient, chain_id=client.chain_id, type="consent.grant", nonce=tx.nonce, body=body)
    assert tx.encoded == expected.encoded and tx.hash_hex == consent_id
    # the ledger has it, in force, and the page lists it by name
    found = {c["id"]: c for c in client.consents(story.patient, story.patient.id)["consents"]}
    assert found[consent_id]["status"] == "active" and found[consent_id]["grantee"] == clinic.id
    assert found[consent_id]["resource_types"] == ["MedicationRequest", "Observation"]
    assert found[consent_id]["valid_until"] == until_ms
    page.wait_for_selector(f"#consent-table tr[data-consent='{consent_id}'][data-status='active']")
    row = page.locator(f"#consent-table tr[data-consent='{consent_id}']")
    assert row.locator("td").first.text_content() == "The clinic"
    page.wait_for_selector(f"#audit-table tr[data-tx='{consent_id}'][data-event='consent.granted']")
    assert "You allowed the clinic to read your test results and measurements, and prescriptions, for your care," \
           " until June 30, 2027." in trail_text(page)

    # withdrawn from the page, told what that does; the ledger shows it revoked
    row.locator("button[data-action=revoke]").click()
    effect = row.locator(".revoke-effect").text_content()
    assert "the clinic can no longer read your records under it" in effect and "What was already read stays with the reader" in effect
    row.locator("button[data-action=confirm-revoke]").click()
    revoked = page.wait_for_selector("#revoke-outcome")
    assert revoked.get_attribute("data-result") == "ok", revoked.text_content()
    status = client.tx(revoked.get_attribute("data-tx"), wait_s=10)
    assert status["status"] == "committed" and status["result"] == "ok"
    found = {c["id"]: c for c in client.consents(story.patient, story.patient.id)["consents"]}
    assert found[consent_id]["status"] == "revoked"
    page.wait_for_selector(f"#consent-table tr[data-consent='{consent_id}'][data-status='revoked']")
    assert "You withdrew the consent given to the clinic: no more reads under it." in trail_text(page)


def test_new_events_appear_without_signing_in_again(devnet: tuple[Cluster, Story], open_page: Callable[[dict[str, int]], Any]) -> None:
    cluster, story = devnet
    page = open_page(DESKTOP)
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    signed_in(page, story, "?poll=1")
    hospital, clinic, pharmacy = (institution(cluster, i) for i in range(3))
    # a new physician at the clinic opens the record in an emergency
    dr_yang = Identity.generate()
    committed(HealthClient(story.urls[1]).register(dr_yang, "practitioner", institution=clinic, label="Dr Yang",
                                                   profession="physician"))
    glass = committed(HealthClient(story.urls[1]).request_access(dr_yang, story.record_id, "emergency", "life_threatening"))
    item = page.wait_for_selector(f"#pending-list li[data-request='{glass['tx_hash']}']")
    assert item.text_content().startswith("Dr Yang (physician at the clinic) opened your test result or measurement"
                                          " \"Heart rate\" (kept by the hospital) in an emergency, without your consent: a life- or"
                                          " limb-threatening condition needed treatment at once.")
    assert "new event" in page.text_content("#live-status")
    # the hospital reviews it (justified): it leaves the pending items, the review is in the trail
    committed(HealthClient(story.urls[0]).transact(hospital, "breakglass.review",
                                                   {"access": bytes.fromhex(glass["tx_hash"]), "outcome": "justified"}))
    page.wait_for_selector(f"#pending-list li[data-request='{glass['tx_hash']}']", state="detached")
    assert page.locator(f"#pending-list li[data-request='{story.breakglass_tx}']").count() == 1  # still unreviewed
    page.wait_for_selector("#audit-table tr[data-event='breakglass.reviewed']")
    assert "The hospital reviewed an emergency opening of your records and found it justified." in trail_text(page)
    # a care event: the patient nominates the pharmacy (from the CLI's client)
    committed(HealthClient(story.urls[0]).nominate(story.patient, "pharmacy", pharmacy.id))
    page.wait_for_selector("#audit-table tr[data-event='standing.granted']")
    assert ("You chose the pharmacy as your pharmacy: its pharmacists may read the prescriptions written for you,"
            " to dispense them.") in trail_text(page)
    # a referral from the hospital to the clinic waits for the patient's answer, accepted on the page
    dr_kim = Identity.generate()
    committed(HealthClient(story.urls[0]).register(dr_kim, "practitioner", institution=hospital, label="Dr Kim",
                                                   profession="physician"))
    until_ms = int(time.time() * 1000) + 30 * 24 * 3600 * 1000
    referral = {**REFERRAL, "subject": {"reference": f"Patient/{story.patient.id}"}}
    record_id = committed(HealthClient(story.urls[0]).put_record(dr_kim, story.patient.id, json.dumps(referral).encode(),
                                                                 workflow={"recipient": clinic.id, "until_ms": until_ms}))["record_id"]
    page.wait_for_selector(f"#pending-list li[data-pending='request'][data-record='{record_id}']")
    item = page.locator(f"#pending-list li[data-pending='request'][data-record='{record_id}']")  # found again at each use
    assert item.text_content().startswith("A referral from Dr Kim (physician at the hospital) to the clinic waits for your answer")
    item.locator("button[data-action=accept]").click()
    accepted = page.wait_for_selector("#accept-outcome")
    assert accepted.get_attribute("data-result") == "ok", accepted.text_content()
    page.wait_for_selector(f"#pending-list li[data-record='{record_id}']", state="detached")
    meta = HealthClient(story.urls[0]).record_meta(story.patient, record_id)
    assert meta["workflow"]["accepted_ms"] > 0
    page.wait_for_selector("#audit-table tr[data-event='request.accepted']")
    assert "You accepted a referral or test order to the clinic: it may now see it, until" in trail_text(page)
    assert page.is_hidden("#signin")
    # the polls were signed reads of what is new (since the newest entry's time); the only content
    # read is the patient's own records (what each is about), by fetches the patient signed
    polls = [r for r in requests if "/audit?since_ms=" in r.url]
    assert len(polls) >= 3
    assert all(r.headers.get("x-medledger-signer") == story.patient.id and len(r.headers.get("x-medledger-signature", "")) == 128
               for r in polls)
    own = {r["id"] for r in HealthClient(story.urls[0]).patient_records(story.patient, story.patient.id)["records"]}
    fetched = [r.url.split("/v1/records/")[1].split("/")[0] for r in requests if "/fetch" in r.url]
    assert fetched and set(fetched) <= own


def test_the_page_signs_out_after_a_spell_without_activity(devnet: tuple[Cluster, Story], open_page: Callable[[dict[str, int]], Any]) -> None:
    _, story = devnet
    page = open_page(PHONE)
    signed_in(page, story, "?idle=6")
    assert "signed out after 6 seconds without activity" in page.text_content("#session-note")
    page.wait_for_selector("#idle-warning")  # the last third of the spell
    page.wait_for_selector("#signed-out-idle")  # after the reload that dropped the key
    assert page.is_hidden("#patient") and page.is_visible("#signin")
    assert page.locator("#audit-table").count() == 0
    assert page.evaluate("() => window.medledgerPortal === undefined")


def test_every_code_the_ledger_writes_has_words(devnet: tuple[Cluster, Story], open_page: Callable[[dict[str, int]], Any]) -> None:
    """Each audit event, purpose, break-glass reason, refusal and nomination the ledger knows has
    its own words in the portal (a new one would otherwise be shown as its code)."""
    _, story = devnet
    page = open_page(DESKTOP)
    page.goto(story.urls[0] + "/ui/patient.html")
    got = page.evaluate("""async () => {
        const w = await import('/ui/portal-words.js');
        const ev = await import('/ui/portal-events.js');
        return { purposes: Object.keys(w.PURPOSE_WORDS), reasons: Object.keys(w.REASON_WORDS),
                 denials: Object.keys(w.DENIAL_WORDS), standing: Object.keys(w.STANDING_WORDS),
                 sentences: Object.fromEntries(%s.map((e) => [e, ev.sentence({ event: e, actor: 'ab'.repeat(32) }).text])) };
    }""" % json.dumps(list(AUDIT_EVENTS)))
    assert set(got["purposes"]) >= set(PURPOSES)
    assert set(got["reasons"]) >= set(BREAKGLASS_REASONS)
    assert set(got["denials"]) >= set(DENIED_RULES)
    assert set(got["standing"]) >= set(PERMISSIONS)
    for event, text in got["sentences"].items():
        assert event not in text, f"{event} has no sentence: {text}"
