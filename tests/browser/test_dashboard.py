"""The web dashboard (/ui) in headless Chromium against a 4-node devnet.

The network page shows heights rising on every validator; the explorer opens a block and
verifies a transaction's Merkle proof; a patient signs in with their key file (plain and
passphrase-protected), sees their records' metadata, consents and audit trail through signed
reads, and revokes a consent with a transaction built in the browser, which the Python client
then finds committed and in force. The browser's request signatures and transaction bytes are
checked in Python against the contract (docs/api.md) and node/chain/tx.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

import shutil  # noqa: E402

if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)", allow_module_level=True)

import nacl.exceptions  # noqa: E402
import nacl.signing  # noqa: E402

from node.client import HealthClient  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from node.core.crypto import Identity  # noqa: E402
from node.core.encoding import canonical  # noqa: E402
from node.home.keys import load_key_file, write_key_file  # noqa: E402
from node.app.agreements import check_stored_policy  # noqa: E402
from node.chain.tx import Transaction  # noqa: E402
from tests.browser.story import NOMINATION_POLICY, Story, agreement_in_force, launch_chromium, populate, sign_in  # noqa: E402

pytestmark = pytest.mark.slow
WAIT_MS = 60_000
SIGNED_HEADERS = ("x-medledger-signer", "x-medledger-timestamp", "x-medledger-nonce", "x-medledger-signature")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Story]]:
    root = tmp_path_factory.mktemp("dashboard")
    with Cluster.create(root / "net", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        yield cluster, populate(cluster, root)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(WAIT_MS)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


NODE = "22" * 32  # the node a request is signed for (medledger-request-v2 names it)
VECTOR_NODE = "11" * 32  # the node of the test vector in docs/api.md


def contract_message(chain_id: str, node_id: str, method: str, path_and_query: str, timestamp: str, nonce: str,
                     body: bytes) -> bytes:
    """The signed-request message of docs/api.md, rebuilt independently of the browser."""
    lines = ["medledger-request-v2", chain_id, node_id, method, path_and_query, timestamp, nonce,
             hashlib.sha256(body).hexdigest()]
    return "\n".join(lines).encode()


def check_signed(headers: dict[str, str], chain_id: str, node_id: str, method: str, path_and_query: str,
                 body: bytes = b"") -> str:
    """Verify a signed request's headers against the contract; return the signer's id."""
    signer, timestamp = headers["x-medledger-signer"], headers["x-medledger-timestamp"]
    nonce, signature = headers["x-medledger-nonce"], headers["x-medledger-signature"]
    assert len(signer) == 64 and len(nonce) == 32 and len(signature) == 128
    assert abs(int(timestamp) - time.time() * 1000) < 120_000
    message = contract_message(chain_id, node_id, method, path_and_query, timestamp, nonce, body)
    nacl.signing.VerifyKey(bytes.fromhex(signer)).verify(message, bytes.fromhex(signature))
    return signer


def test_ui_is_served_and_the_network_page_shows_heights_rising(devnet, page):
    cluster, story = devnet
    page.goto(story.urls[0] + "/ui")
    assert urlsplit(page.url).path == "/ui/"
    page.wait_for_function("() => /^\\d+$/.test(document.querySelector('#height')?.textContent || '')")
    before = int(page.text_content("#height"))
    # an idle network makes no blocks: commit a transaction, then watch every validator's height pass it
    out = HealthClient(story.urls[1]).register(Identity.generate(), "patient")
    assert out["status"] == "committed" and out["height"] > before
    page.wait_for_function("h => Number(document.querySelector('#height').textContent) >= h", arg=out["height"])
    page.wait_for_function(
        "h => { const cells = [...document.querySelectorAll('#validator-table td.v-height')];"
        " return cells.length === 4 && cells.every(c => Number(c.textContent) >= h); }", arg=out["height"])
    assert page.locator("#validator-table .badge.down").count() == 0
    assert page.text_content("#peer-count") == "3"
    assert page.text_content("#validator-count") == "4"  # /v1/status `validators` is the number
    page.wait_for_function("() => Number(document.querySelector('#chart').dataset.blocks) >= 1")
    assert "tx/s" in page.text_content("#tps-note")


def test_network_page_shows_institutions_by_kind_and_the_agreements_in_force(devnet, page):
    cluster, story = devnet
    page.goto(story.urls[0] + "/ui/")
    page.wait_for_selector("#institutions .kind-group")
    # the devnet's four institutions, one per kind, each a validator (the next test admits a lab)
    kinds = page.eval_on_selector_all("#institutions .kind-group", "gs => gs.map(g => g.dataset.kind)")
    assert kinds[:4] == ["hospital", "clinic", "pharmacy", "insurer"] and set(kinds[4:]) <= {"lab"}
    ids = [load_key_file(n.home / "institution.key").id for n in cluster.nodes]
    for node_id, kind in zip(ids, kinds[:4]):
        row = page.locator(f"#institutions .kind-group[data-kind='{kind}'] tr[data-institution='{node_id}']")
        assert row.locator(".inst-name").text_content() == kind  # the devnet names them by kind
        assert row.locator(".inst-validator").text_content() == "validator"
    # an agreement between the hospital and the pharmacy, proposed and co-signed by the Python client
    hospital, pharmacy = (load_key_file(cluster.nodes[i].home / "institution.key") for i in (0, 2))
    agreement = "nomination-1"
    page.wait_for_selector("#agreements #agreements-empty")  # the module's devnet has none before this test
    assert page.text_content("#agreements") == "No data-sharing agreements in force."
    signed = agreement_in_force(cluster, agreement)
    digest = check_stored_policy(NOMINATION_POLICY)
    page.reload()  # the page reads the listings on load, then every 10 s
    row = page.wait_for_selector(f"#agreement-table tr[data-agreement='{agreement}'][data-version='1']")
    parties = row.query_selector_all(".party")
    assert [(p.get_attribute("data-party"), p.get_attribute("data-kind")) for p in parties] == sorted(
        [(hospital.id, "hospital"), (pharmacy.id, "pharmacy")])
    assert all(p.text_content().startswith(p.get_attribute("data-kind")) for p in parties)  # "pharmacy pharmacy 1a2b…"
    assert row.query_selector(".agreement-purposes").text_content() == "treatment"
    assert int(row.query_selector(".agreement-since").text_content()) == signed["height"]
    assert row.query_selector(".agreement-digest").get_attribute("title") == digest.hex()
    for kind in ("hospital", "pharmacy"):
        count = page.locator(f"#institutions .kind-group[data-kind='{kind}'] .inst-agreements").text_content()
        assert int(count) >= 1
    # the policy opens as text: the canonical form, pretty-printed, in a <pre> with no markup inside
    row.query_selector("details.policy-details summary").click()  # the page was just loaded: no refresh before 10 s
    pre = row.wait_for_selector("pre.policy:not(:text-is('loading…'))")
    assert json.loads(pre.text_content()) == json.loads(NOMINATION_POLICY)
    assert pre.evaluate("p => p.children.length") == 0


def test_an_admitted_institution_shows_under_its_kind_named_as_text(devnet, page):
    """An institution voted in (not a validator) joins its kind's table; its name, whatever it
    holds, is shown as text, never as markup."""
    cluster, story = devnet
    lab = Identity.generate()
    name = '<img src=x data-bad="1">Lab & Co'
    body = {"institution": lab.public_key, "name": name, "kind": "lab"}
    for node in cluster.nodes[:3]:  # the quorum of four validators
        out = HealthClient(node.api_url).transact(load_key_file(node.home / "institution.key"),
                                                  "governance.admit_institution", body)
        assert out["status"] == "committed" and out["result"] == "ok", out
    page.goto(story.urls[0] + "/ui/")
    row = page.wait_for_selector(f"#institutions .kind-group[data-kind='lab'] tr[data-institution='{lab.id}']")
    assert row.query_selector(".inst-name").text_content() == name
    assert row.query_selector(".inst-validator").text_content() == "no"
    assert row.query_selector(".inst-agreements").text_content() == "0"
    assert page.locator("#institutions img, [data-bad]").count() == 0
    assert "Laboratories" in page.text_content("#institutions .kind-group[data-kind='lab'] h3")


def test_explorer_opens_a_block_and_verifies_a_merkle_proof(devnet, page):
    _, story = devnet
    status = HealthClient(story.urls[0]).tx(story.consent_id)
    page.goto(story.urls[0] + "/ui/explorer.html")
    page.wait_for_selector(f"#latest-blocks a.block-link:text-is('{status['height']}')")
    page.locator(f"#latest-blocks a.block-link:text-is('{status['height']}')").click()  # the list refreshes itself
    page.wait_for_selector(f"#block-txs tr[data-tx='{story.consent_id}']")
    row = page.locator(f"#block-txs tr[data-tx='{story.consent_id}']")
    # a patient's transaction: the public explorer shows its hash and result, not its type or sender
    assert "withheld" in row.text_content() and "consent.grant" not in row.text_content() and "ok" in row.text_content()
    row.locator("a.tx-link").click()
    page.wait_for_selector("#proof-result.ok")
    assert f"block {status['height']}" in page.text_content("#proof-result")


def test_patient_signs_in_and_revokes_a_consent(devnet, page):
    cluster, story = devnet
    chain_id, node_id = HealthClient(story.urls[0]).chain_id, HealthClient(story.urls[0]).node_id
    requests: list[Any] = []
    page.on("request", lambda r: requests.append(r))
    sign_in(page, story.urls[0] + "/ui/patient.html", story.patient_key)
    page.wait_for_selector(f"#record-table tr[data-record='{story.record_id}']")
    assert "Observation" in page.text_content("#record-table")
    page.wait_for_selector(f"#consent-table tr[data-consent='{story.consent_id}'][data-status='active']")
    assert page.locator("#audit-table tr[data-event='access.breakglass']").count() == 1

    consent_row = page.locator(f"#consent-table tr[data-consent='{story.consent_id}']")
    consent_row.locator("button[data-action=revoke]").click()
    consent_row.locator("button[data-action=confirm-revoke]").click()
    outcome = page.wait_for_selector("#revoke-outcome")
    assert outcome.get_attribute("data-result") == "ok", outcome.text_content()
    page.wait_for_selector(f"#consent-table tr[data-consent='{story.consent_id}'][data-status='revoked']")
    page.wait_for_selector("#audit-table tr[data-event='consent.revoked']")

    # the Python client finds the browser's transaction committed, and the revocation in force
    tx_hash = outcome.get_attribute("data-tx")
    client = HealthClient(story.urls[2])
    status = client.tx(tx_hash, wait_s=10)
    assert status["status"] == "committed" and status["result"] == "ok"
    tx = client.block(status["height"], signer=story.patient)["txs"][status["index"]]  # the patient reads it whole
    assert tx["type"] == "consent.revoke" and tx["sender"] == story.patient.id
    assert tx["body"] == {"consent": story.consent_id}
    denied = HealthClient(story.urls[1]).request_access(story.reader, story.record_id, "treatment")
    assert denied["height"] and denied["result"] == "denied" and denied["decision"]["rule"] == "consent_revoked", denied

    # every read of the patient's data was a signed request that verifies under the contract; the
    # only content asked for is the patient's own record (what it is about: portal-content.js),
    # by a fetch the patient signed, and nothing was uploaded
    reads = [r for r in requests if "/v1/patients/" in r.url]
    assert len(reads) >= 5  # records, consents, audit; consents and audit again after the revocation
    for r in reads:
        parts = urlsplit(r.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        assert check_signed(r.headers, chain_id, node_id, r.method, path) == story.patient.id
    assert not [r.url for r in requests if r.method == "POST" and r.url.endswith("/v1/records")]
    from node.core.encoding import decode
    from node.records.protocol import Fetch

    fetches = [r for r in requests if "/fetch" in r.url]
    for r in fetches:
        assert urlsplit(r.url).path == f"/v1/records/{story.record_id}/fetch", r.url
        signed = Fetch.from_wire(decode(r.post_data_buffer, max_bytes=4096), chain_id)  # the signature holds
        assert signed.requester.hex() == story.patient.id


def test_patient_key_file_with_a_passphrase(devnet, page, tmp_path):
    _, story = devnet
    patient = Identity.generate()
    assert HealthClient(story.urls[0]).register(patient, "patient")["status"] == "committed"
    key_file = tmp_path / "locked.key"
    write_key_file(key_file, patient, passphrase="correct horse battery staple")
    sign_in(page, story.urls[0] + "/ui/patient.html", key_file, "wrong passphrase")
    page.wait_for_selector("#signin-error .error:has-text('wrong passphrase')")
    assert page.is_hidden("#patient")
    page.set_input_files("#keyfile", str(key_file))
    page.fill("#passphrase", "correct horse battery staple")
    page.click("#signin-form button")
    page.wait_for_selector("#consent-table")
    assert patient.id in page.text_content("#who")


def test_sign_in_refuses_what_is_not_a_registered_patients_key(devnet, page, tmp_path):
    _, story = devnet
    junk = tmp_path / "notes.txt"
    junk.write_text("not a key")
    stranger = tmp_path / "stranger.key"
    write_key_file(stranger, Identity.generate())
    swapped = tmp_path / "swapped.key"  # another identity's seed under the patient's id
    swapped.write_text(json.dumps({**json.loads(story.patient_key.read_text()), "seed": "11" * 32}))
    for key_file, message in ((junk, "not a MedLedger key file"), (stranger, "not registered on the ledger"),
                              (swapped, "does not match its id")):
        sign_in(page, story.urls[0] + "/ui/patient.html", key_file)
        page.wait_for_selector(f"#signin-error .error:has-text('{message}')")
        assert page.is_hidden("#patient")


def test_compliance_page_needs_the_institutions_key(devnet, page):
    _, story = devnet
    sign_in(page, story.urls[0] + "/ui/compliance.html", story.patient_key)
    page.wait_for_selector("#signin-error .error:has-text('belongs to a patient')")
    assert page.is_hidden("#operator")
    page.set_input_files("#keyfile", str(story.institution_key))
    page.click("#signin-form button")
    page.wait_for_selector(f"#breakglass-table tr[data-request='{story.breakglass_tx}']")
    assert "unconscious" in page.text_content("#breakglass-table")  # the coded reason
    page.wait_for_selector("#disclosure-table tr[data-event='access.granted']")
    assert page.locator("#disclosure-table tr[data-event='access.breakglass']").count() == 1


# -- the browser's cryptography against the Python side ------------------------------------
SEED = bytes(range(32))


def _js_value(value: Any) -> Any:
    """A JSON description of a value for the page: bytes and big integers tagged."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"$int": str(value)}
    if isinstance(value, list):
        return [_js_value(v) for v in value]
    if isinstance(value, dict):
        return {"$map": [[k, _js_value(v)] for k, v in value.items()]}
    return value


JS_DECODE = """
  const hex = (h) => Uint8Array.from(h.match(/../g) || [], (b) => parseInt(b, 16));
  const conv = (v) => {
    if (Array.isArray(v)) return v.map(conv);
    if (v && typeof v === 'object') {
      if ('$bytes' in v) return hex(v.$bytes);
      if ('$int' in v) { const b = BigInt(v.$int); return (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER)) ? Number(b) : b; }
      if ('$map' in v) { const o = {}; for (const [k, x] of v.$map) o[k] = conv(x); return o; }
    }
    return v;
  };
  const toHex = (a) => Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
"""

CANONICAL_CASES: list[Any] = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**63, 2**64 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
    "", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "a" * 65535, "a" * 65536, "é✓😀",
    b"", b"\x00", b"x" * 255, b"x" * 256, b"y" * 65536,
    True, False, None, list(range(15)), list(range(16)),
    {f"k{i:02d}": i for i in reversed(range(15))}, {f"k{i:02d}": i for i in reversed(range(16))},
    {"b": 1, "a": 2, "B": 3, "é": 4, "😀": 5, "ｚ": 6, "": 7},  # code point order, not UTF-16 order
    ["medledger-tx-v1", "chain", "consent.revoke", b"\x01" * 32, 1_764_000_000_000, {"consent": b"\x02" * 32, "on_behalf_of": b"\x03" * 32}],
]


def test_browser_canonical_msgpack_is_byte_identical(devnet, page):
    _, story = devnet
    page.goto(story.urls[0] + "/ui/")
    got = page.evaluate("async (cases) => {" + JS_DECODE + """
        const { canonical } = await import('/ui/msgpack.js');
        return cases.map((c) => toHex(canonical(conv(c))));
    }""", [_js_value(c) for c in CANONICAL_CASES])
    for case, js_hex in zip(CANONICAL_CASES, got, strict=True):
        assert js_hex == canonical(case).hex(), repr(case)[:80]
    refused = page.evaluate("""async () => { const { canonical } = await import('/ui/msgpack.js');
        try { canonical({x: 1.5}); return 'encoded'; } catch (e) { return e.constructor.name; } }""")
    assert refused == "EncodeError"


def test_browser_transaction_and_request_signatures_match_python(devnet, page):
    _, story = devnet
    ident = Identity.from_seed(SEED)
    consent = bytes.fromhex(story.consent_id)
    page.goto(story.urls[0] + "/ui/")
    got = page.evaluate("async ([seed, id, consent]) => {" + JS_DECODE + f"const NODE = '{NODE}'; const VECTOR_NODE = '{VECTOR_NODE}';" + """
        const { Signer, buildTx } = await import('/ui/keys.js');
        const signer = await Signer.fromSeed(id, hex(seed));
        const tx = await buildTx(signer, { chainId: 'medledger-devnet', type: 'consent.revoke', nonce: 1764000000000,
                                           body: { consent: hex(consent) } });
        const path = `/v1/patients/${id}/audit?limit=50`;
        const get = await signer.requestHeaders('medledger-devnet', NODE, 'GET', path);
        const again = await signer.requestHeaders('medledger-devnet', NODE, 'GET', path);
        const body = new TextEncoder().encode('{"a":1}');
        const post = await signer.requestHeaders('medledger-devnet', NODE, 'post', '/v1/example', body);
        const vectorPath = `/v1/patients/${id}/audit`;
        const vector = await signer.requestHeaders('test-chain', VECTOR_NODE, 'GET', vectorPath, undefined,
                                                   { timestamp: 1767225600000, nonce: '000102030405060708090a0b0c0d0e0f' });
        let mismatch = 'accepted';
        try { await Signer.fromSeed('00'.repeat(32), hex(seed)); } catch (e) { mismatch = e.message; }
        return { tx: toHex(tx.encoded), hash: tx.hash, path, get, again, post, vector, mismatch };
    }""", [SEED.hex(), ident.id, consent.hex()])
    expected = Transaction.create(ident, chain_id="medledger-devnet", type="consent.revoke", nonce=1764000000000,
                                  body={"consent": consent})
    assert got["tx"] == expected.encoded.hex() and got["hash"] == expected.hash_hex
    lower = lambda h: {k.lower(): v for k, v in h.items()}  # noqa: E731
    assert check_signed(lower(got["get"]), "medledger-devnet", NODE, "GET", got["path"]) == ident.id
    assert check_signed(lower(got["post"]), "medledger-devnet", NODE, "POST", "/v1/example", b'{"a":1}') == ident.id
    assert got["get"]["X-MedLedger-Nonce"] != got["again"]["X-MedLedger-Nonce"]
    with pytest.raises(nacl.exceptions.BadSignatureError):  # the check can fail: another path, another message
        check_signed(lower(got["get"]), "medledger-devnet", NODE, "GET", got["path"].replace("limit=50", "limit=51"))
    with pytest.raises(nacl.exceptions.BadSignatureError):
        check_signed(lower(got["get"]), "another-chain", NODE, "GET", got["path"])
    with pytest.raises(nacl.exceptions.BadSignatureError):  # signed for one node, checked as if sent to another
        check_signed(lower(got["get"]), "medledger-devnet", VECTOR_NODE, "GET", got["path"])
    assert "does not match its id" in got["mismatch"]
    # the test vector of docs/api.md (signed requests)
    assert ident.id == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert got["vector"]["X-MedLedger-Signature"] == (
        "92380fe6c913109d99cbbe89639b3461ad44073c9ef6ae74fa3b3c50d85b86e376fe309e"
        "0287c116104139093a53cf4e35038e1d3131926d5c82756a6fea4102")


def test_browser_merkle_check_agrees_with_python(devnet, page):
    from node.core.merkle import inclusion_proof, merkle_root

    _, story = devnet
    cases = []
    for size in range(1, 18):
        leaves = [f"tx-{size}-{i}".encode() for i in range(size)]
        root = merkle_root(leaves)
        for index in range(size):
            path = inclusion_proof(leaves, index)
            cases.append([leaves[index].hex(), index, size, [p.hex() for p in path], root.hex(), True])
            if path:  # a changed sibling, or a claim about the wrong position, must fail
                cases.append([leaves[index].hex(), index, size, [p.hex() for p in path[:-1]] + ["00" * 32], root.hex(), False])
            if size > 1:
                cases.append([leaves[index].hex(), (index + 1) % size, size, [p.hex() for p in path], root.hex(), False])
    page.goto(story.urls[0] + "/ui/explorer.html")
    got = page.evaluate("""async (cases) => {
        const { hexToBytes } = await import('/ui/common.js');
        const { verifyInclusion } = await import('/ui/merkle.js');
        const out = [];
        for (const [leaf, index, size, path, root] of cases)
          out.push(await verifyInclusion(hexToBytes(leaf), index, size, path.map(hexToBytes), hexToBytes(root)));
        return out;
    }""", cases)
    assert got == [c[5] for c in cases]
