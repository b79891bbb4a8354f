"""The dashboard's static files as the node serves them (no browser needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from node.api.routes_ui import UI_DIR
from node.app import queries
from node.app.agreements import check_stored_policy, load_agreement
from node.app.policies.check import canonical_form
from tests.unit.app.harness import Ledger, ident

PAGES = ("index.html", "explorer.html", "compliance.html", "patient.html")


async def test_ui_redirects_and_serves_its_pages(api):
    client, _ = api
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/ui/"
    resp = await client.get("/ui/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "<title>MedLedger · Network</title>" in await resp.text()
    for page in PAGES[1:]:
        resp = await client.get(f"/ui/{page}")
        assert resp.status == 200 and resp.content_type == "text/html", page
    resp = await client.get("/ui/keys.js")
    assert resp.status == 200 and resp.content_type in ("text/javascript", "application/javascript")


async def test_ui_refuses_what_is_not_its_files(api):
    client, _ = api
    for path in ("/ui/nothing.js", "/ui/../api.py", "/ui/%2e%2e/api.py", "/ui/vendor/../../api.py",
                 "/ui/../api/app.py", "/ui/%2e%2e/api/app.py", "/ui/vendor/../../api/app.py"):
        resp = await client.get(path)
        assert resp.status in (403, 404), path
        assert "def make_app" not in await resp.text()


async def test_status_may_be_read_by_the_dashboard_of_another_node(api):
    client, _ = api
    resp = await client.get("/v1/status")
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await client.get("/v1/health")
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_every_page_loads_only_its_own_files_under_a_strict_policy():
    for page in PAGES:
        html = (UI_DIR / page).read_text()
        assert "default-src 'self'" in html and "<script>" not in html and not re.search(r"\son[a-z]+=", html)
        for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert ref.startswith("data:") or (UI_DIR / ref).is_file(), (page, ref)
    assert (UI_DIR / "vendor" / "LICENSE.libsodium").is_file()


def test_no_page_writes_markup_from_strings():
    """Every page builds its DOM with common.js `el` (text nodes only): nothing a transaction, an
    institution's name or an agreement's policy carries can run as markup."""
    for script in UI_DIR.glob("*.js"):
        code = re.sub(r"//[^\n]*", "", script.read_text())  # comments may name what is never done
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", code), script.name


def test_network_page_has_the_institutions_and_agreements_cards():
    html = (UI_DIR / "index.html").read_text()
    assert 'id="institutions"' in html and 'id="agreements"' in html
    script = (UI_DIR / "institutions.js").read_text()
    assert "No data-sharing agreements in force." in script  # the empty state, worded plainly
    assert '"/v1/institutions"' in script and '"/v1/agreements?in_force=1"' in script
    assert 'from "./institutions.js"' in (UI_DIR / "network.js").read_text()


def fields_read(script: str, variable: str) -> set[str]:
    """The members institutions.js reads of its one-letter `variable` (i: an institution, a: an
    agreement, p: a party)."""
    return set(re.findall(rf"\b{variable}\.([a-z_]+)", script))


async def test_every_field_the_network_page_reads_is_in_the_listings(api):
    """institutions.js reads only fields the listings answer (docs/api.md): an institution's from
    GET /v1/institutions, an agreement's and its parties' from the summary GET /v1/agreements serves."""
    client, _ = api
    script = (UI_DIR / "institutions.js").read_text()
    doc = await (await client.get("/v1/institutions")).json()
    (institution,) = doc["institutions"]  # the fixture's one validator
    assert fields_read(script, "i") <= set(institution) and institution["validator"] is True and doc["next"] is None
    empty = await (await client.get("/v1/agreements?in_force=1")).json()
    assert empty["agreements"] == [] and empty["next"] is None
    ledger = Ledger()  # an agreement in force, summarised as the route summarises it
    a, b = ident("A"), ident("B")
    policy = canonical_form((Path(__file__).resolve().parents[2] / "docs/examples/policies/referral.cedar").read_text())
    body = {"agreement": "referral", "version": 1, "parties": sorted([a.public_key, b.public_key]),
            "purposes": ["treatment"], "policy": policy}
    assert ledger.send(a, "agreement.propose", body) == "ok"
    assert ledger.send(b, "agreement.sign", {"agreement": "referral", "version": 1,
                                             "digest": check_stored_policy(policy)}) == "ok"
    (summary,), _ = queries.agreements_in_force(ledger.state, ledger.now)
    assert fields_read(script, "a") <= set(summary)
    assert all(fields_read(script, "p") <= set(party) for party in summary["parties"])
    stored = load_agreement(ledger.state, "referral", 1)
    assert stored is not None and summary["digest"] == stored["digest"].hex()


@pytest.mark.slow
def test_a_wheel_carries_the_ui(tmp_path):
    """A non-editable install serves the dashboard too: every UI file is in the wheel."""
    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "cli.py"):
        shutil.copy(root / name, src / name)
    for package in ("node", "consensus", "storage", "p2p"):
        if (root / package).is_dir():
            shutil.copytree(root / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("medledger-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"node/ui/{p.relative_to(UI_DIR).as_posix()}" for p in UI_DIR.rglob("*") if p.is_file()}
    assert expected and expected <= names, sorted(expected - names)
