"""The explorer page (/ui/explorer.html) in headless Chromium against a 4-node devnet.

The page checks a block's commit certificate itself (WebCrypto Ed25519 over the COMMIT votes,
against the validator set of the block's height) and says what it checked; when one byte of one
signature is changed in the node's answer (intercepted with Playwright's `page.route`) it says
NOT verified and names the validator, and when another validator's node answers another set for
that height it says so. Blocks and a block's transactions come in pages; the
newest block's "next" does not end in an error; an unknown block is refused in plain words;
institutions are named; a patient's transaction stays withheld. At 390 and 1280 px the page does
not scroll sideways and axe-core finds no serious or critical violation. The browser's
certificate check, header hash and msgpack decoding are compared with the Python implementation.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install -e '.[test]')")

if shutil.which("chromium") is None:
    pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)", allow_module_level=True)

import msgpack  # noqa: E402

from consensus.certificate import CommitCertificate, verify_certificate  # noqa: E402
from consensus.validators import ValidatorSet  # noqa: E402
from node.client import ApiError, HealthClient  # noqa: E402
from node.core.crypto import Ed25519Verifier, Identity  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from tests.browser.a11y import DESKTOP, PHONE, overflow, serious_violations  # noqa: E402
from tests.browser.story import Story, launch_chromium, populate  # noqa: E402

pytestmark = pytest.mark.slow
WAIT_MS = 60_000
BUSY_TXS = 130  # one block with more transactions than a page (50) shows


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Story, int]]:
    root = tmp_path_factory.mktemp("explorer")
    with Cluster.create(root / "net", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        story = populate(cluster, root)
        client = HealthClient(story.urls[0])
        busy = busy_block(client)
        grow(client, 45)  # more than two pages of the block list
        yield cluster, story, busy


def grow(client: HealthClient, height: int) -> None:
    """Commit one registration after another until the chain is `height` blocks long."""
    while client.status()["height"] < height:
        out = client.register(Identity.generate(), "patient")
        assert out["status"] == "committed", out


def busy_block(client: HealthClient) -> int:
    """The height of a block of more than two pages of transactions (registrations sent at once)."""
    txs = [client.make_tx(Identity.generate(), "identity.register", {"role": "patient"}, nonce=1) for _ in range(BUSY_TXS)]
    client.submit_many(txs)
    last = client.wait(txs[-1].hash_hex, 30)
    assert last["status"] == "committed", last
    heights = {client.tx(t.hash_hex)["height"] for t in txs}
    best = max(heights, key=lambda h: client.block(h)["tx_count"])
    assert client.block(best)["tx_count"] > 50, "the registrations were spread over too many blocks"
    return best


def open_page(browser: Any, viewport: dict[str, int]) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(WAIT_MS)
    return context, pg, errors


@pytest.fixture(params=[PHONE, DESKTOP], ids=["phone", "desktop"])
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context, pg, errors = open_page(browser, request.param)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def desktop(browser: Any) -> Iterator[Any]:
    context, pg, errors = open_page(browser, DESKTOP)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def python_verdict(block: dict[str, Any], validators: list[dict[str, Any]], chain_id: str) -> bool:
    """What `medledger audit verify` concludes of a block answer's certificate, given a validator set."""
    cert = CommitCertificate.decode(bytes.fromhex(block["certificate"]))
    ids = tuple(bytes.fromhex(v["id"]) for v in validators)
    return cert.digest.hex() == block["hash"] and cert.height == block["height"] and verify_certificate(
        cert, chain_id=chain_id, validators=ValidatorSet(validators=ids), verifier=Ed25519Verifier())


def verdict_at(client: HealthClient, height: int) -> bool:
    return python_verdict(client.block(height), client.validators(height=height)["validators"], client.status()["chain_id"])


def test_a_block_certificate_is_verified_in_the_browser(devnet, page):
    cluster, story, _ = devnet
    client = HealthClient(story.urls[0])
    height = client.tx(story.consent_id)["height"]
    assert verdict_at(client, height)
    page.goto(f"{story.urls[0]}/ui/explorer.html#block={height}")
    page.wait_for_selector("#certificate[data-verified]")
    assert page.get_attribute("#certificate", "data-verified") == "true"
    text = page.text_content("#certificate-result")
    assert re.fullmatch(rf"[34] of 4 validators of height {height} signed this block: quorum 3 reached; "
                        r"signatures checked in this browser\.", text), text
    assert page.locator("#certificate-votes tr[data-status=valid]").count() >= 3
    # the validators are named (the devnet's institutions are named by kind)
    page.wait_for_function("() => document.querySelectorAll('#certificate-votes .named').length >= 3")
    assert "hospital" in " ".join(page.locator("#certificate-votes .named").all_text_contents())
    page.wait_for_function("() => document.querySelector('#block-header .named') !== null")  # the proposer
    # the set of that height, as this node gives it, is the one the other three validators' nodes give
    cross = page.text_content("#certificate-set")
    assert cross.startswith(f"The validator set of height {height} is this node's answer; the nodes of ") and \
        cross.endswith("answer the same set."), cross
    assert overflow(page) == 0
    assert serious_violations(page) == []


def tampered(block: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The block answer with one byte of the first vote's signature changed; that voter's id."""
    height, view, digest, votes = msgpack.unpackb(bytes.fromhex(block["certificate"]), raw=False)
    voter, signature = votes[0]
    signature = bytes([signature[0] ^ 0x01]) + signature[1:]
    votes = [[voter, signature], *votes[1:]]
    doc = {**block, "certificate": msgpack.packb([height, view, digest, votes], use_bin_type=True).hex()}
    return doc, voter.hex()


def test_a_changed_signature_byte_is_not_verified(devnet, page):
    cluster, story, _ = devnet
    client = HealthClient(story.urls[0])
    height = client.tx(story.consent_id)["height"]
    seen: list[str] = []

    def handle(route: Any) -> None:
        response = route.fetch()
        doc, voter = tampered(response.json())
        seen.append(voter)
        route.fulfill(response=response, body=json.dumps(doc), headers={**response.headers, "content-type": "application/json"})

    page.route(re.compile(rf"/v1/blocks/{height}\?"), handle)
    page.goto(f"{story.urls[0]}/ui/explorer.html#block={height}")
    page.wait_for_selector("#certificate[data-verified]")
    assert seen, "the block answer was not intercepted"
    assert page.get_attribute("#certificate", "data-verified") == "false"
    text = page.text_content("#certificate-result")
    assert text.startswith("NOT verified: signature of validator ") and text.endswith(" does not match."), text
    names = {v["id"]: v["name"] for v in client.validators(height=height)["validators"]}
    assert names[seen[0]] in text and seen[0][:8] in text
    assert page.get_attribute(f"#certificate-votes tr[data-voter='{seen[0]}']", "data-status") == "does not match"
    assert page.locator("#certificate-result.error").count() == 1
    # a transaction's view checks its block's certificate too, and fails it the same way
    page.goto(f"{story.urls[0]}/ui/explorer.html#tx={story.consent_id}")
    page.wait_for_selector("#proof-result.ok")
    page.wait_for_selector("#certificate[data-verified=false]")
    assert "does not match" in page.text_content("#certificate-result")


def test_a_validator_node_answering_another_set_is_not_verified(devnet, desktop):
    cluster, story, _ = devnet
    page = desktop
    client = HealthClient(story.urls[0])
    height = client.tx(story.consent_id)["height"]
    other = story.urls[1]
    name = HealthClient(other).status()["name"]

    def another_set(route: Any) -> None:
        response = route.fetch()
        doc = response.json()
        doc["validators"] = [{"id": Identity.generate().id, "name": "stranger"}, *doc["validators"][1:]]
        route.fulfill(response=response, body=json.dumps(doc))

    page.route(re.compile(re.escape(other) + r"/v1/validators\?height="), another_set)
    page.goto(f"{story.urls[0]}/ui/explorer.html#block={height}")
    page.wait_for_selector("#certificate[data-verified]")
    assert page.get_attribute("#certificate", "data-verified") == "false"
    assert page.text_content("#certificate-result") == (
        f"NOT verified: the nodes of {name} answer another validator set for height {height} than this node does.")


def test_blocks_and_a_blocks_transactions_are_paged(devnet, desktop):
    cluster, story, busy = devnet
    page = desktop
    client = HealthClient(story.urls[0])
    count = client.block(busy)["tx_count"]
    page.goto(f"{story.urls[0]}/ui/explorer.html#block={busy}")
    page.wait_for_selector("#block-txs tbody tr")
    assert page.locator("#block-txs tbody tr").count() == 50  # not every row at once
    assert page.text_content("#txs-range") == f"Transactions 1 to 50 of {count}."
    shown = page.eval_on_selector_all("#block-txs tbody tr", "rs => rs.map(r => r.dataset.tx)")
    while page.locator("#txs-next").count():
        first = len(shown)
        page.click("#txs-next")
        page.wait_for_function("f => document.querySelector('#block-txs tbody tr td')?.textContent === String(f)", arg=first)
        assert page.text_content("#txs-range") == f"Transactions {first + 1} to {min(first + 50, count)} of {count}."
        rows = page.eval_on_selector_all("#block-txs tbody tr", "rs => rs.map(r => r.dataset.tx)")
        assert 0 < len(rows) <= 50
        shown += rows
    assert page.locator("#txs-previous").count() == 1
    # the pages together are the block's transactions, in order; the API's page is what it says
    assert shown == [t["hash"] for t in client.block(busy)["txs"]]
    api = client.get(f"/v1/blocks/{busy}?tx_offset=50&tx_limit=20")
    assert [t["index"] for t in api["txs"]] == list(range(50, min(70, count)))
    assert api["tx_count"] == count and api["tx_offset"] == 50
    assert client.get(f"/v1/blocks/{busy}?tx_offset={count}")["txs"] == []
    for bad in ("tx_offset=-1", "tx_limit=x"):
        with pytest.raises(ApiError) as refused:
            client.get(f"/v1/blocks/{busy}?{bad}")
        assert refused.value.code == f"bad_{bad.split('=')[0]}"
    # the commit feed without hashes: heights, times, proposers and counts
    feed = client.get(f"/v1/commits?since={busy}&limit=1&hashes=0")["blocks"][0]
    assert set(feed) == {"height", "hash", "timestamp_ms", "proposer", "tx_count"} and feed["tx_count"] == count
    # the block list pages back from the newest block
    page.wait_for_selector("#latest-blocks tbody tr")
    head = int(page.get_attribute("#latest-blocks", "data-to"))
    assert page.locator("#latest-blocks tbody tr").count() == min(20, head)
    page.click("#blocks-older")
    page.wait_for_function("h => Number(document.querySelector('#latest-blocks').dataset.to) === h - 20", arg=head)
    heights = page.eval_on_selector_all("#latest-blocks tbody tr", "rs => rs.map(r => Number(r.dataset.height))")
    assert heights == list(range(head - 20, max(0, head - 40), -1))
    assert page.locator("#blocks-older").is_enabled() == (head - 40 > 0)
    page.click("#blocks-newest")
    page.wait_for_function("h => Number(document.querySelector('#latest-blocks').dataset.to) >= h", arg=head)
    # each block has a time and a named proposer
    first = page.locator("#latest-blocks tbody tr").first
    assert first.locator("time").count() == 1
    page.wait_for_function("() => document.querySelector('#latest-blocks tbody tr .named') !== null")


def test_newest_block_unknown_block_and_a_patients_transaction(devnet, desktop):
    cluster, story, _ = devnet
    page = desktop
    client = HealthClient(story.urls[0])
    head = client.status()["height"]
    page.goto(f"{story.urls[0]}/ui/explorer.html#block=latest")
    page.wait_for_selector("#block-next-none")
    assert page.locator("#detail .error").count() == 0 and page.locator("#block-next").count() == 0
    assert int(page.get_attribute("#detail", "data-height")) >= head
    # a height past the chain: a plain sentence, not "unknown_block: ..."
    page.goto(f"{story.urls[0]}/ui/explorer.html#block={head + 1000}")
    page.wait_for_selector("#detail .error")
    text = page.text_content("#detail .error")
    assert text.startswith("There is no such block yet: the chain is at height ") and "unknown_block" not in text, text
    page.fill("#query", "not a hash")
    page.click("#search button")
    assert "Enter a block height" in page.text_content("#search-error")
    # the consent of the story is a patient's: its type, sender and body stay withheld
    page.goto(f"{story.urls[0]}/ui/explorer.html#tx={story.consent_id}")
    page.wait_for_selector("#proof-result.ok")
    fields = page.text_content("#tx-fields")
    assert "consent.grant" not in fields and "withheld" in fields and story.patient.id not in page.content()
    assert page.locator("#tx-fields time").count() == 1  # the transaction's time is its block's
    page.wait_for_selector("#certificate[data-verified=true]")


def test_browser_certificate_check_agrees_with_python(devnet, desktop):
    cluster, story, busy = devnet
    page = desktop
    client = HealthClient(story.urls[0])
    chain_id = client.status()["chain_id"]
    heights = sorted({1, 2, busy, client.status()["height"] - 1})
    page.goto(f"{story.urls[0]}/ui/explorer.html")
    cases = []
    for h in heights:
        block = client.get(f"/v1/blocks/{h}?tx_limit=1")
        validators = client.validators(height=h)["validators"]
        bad, _ = tampered(block)
        other = client.get(f"/v1/blocks/{h + 1}?tx_limit=1")  # the certificate of another block
        stranger = [{"id": Identity.generate().id, "name": "stranger"}, *validators[1:]]  # a set not of this height
        cases += [(block, validators), (bad, validators), ({**block, "certificate": other["certificate"]}, validators),
                  (block, stranger), (block, validators[:3])]
    got = page.evaluate("""async ([cases, chainId]) => {
        const { checkCertificate } = await import('/ui/explorer.js');
        const out = [];
        for (const [block, validators] of cases) out.push((await checkCertificate(block, chainId, validators)).verified);
        return out;
    }""", [cases, chain_id])
    expected = [python_verdict(block, validators, chain_id) for block, validators in cases]
    assert got == expected
    assert expected[0::5] == [True] * len(heights) and expected[1::5] == [False] * len(heights)
    assert expected[2::5] == [False] * len(heights)


def test_browser_header_hash_and_msgpack_decoding_agree_with_python(devnet, desktop):
    cluster, story, busy = devnet
    page = desktop
    client = HealthClient(story.urls[0])
    headers = [client.get(f"/v1/blocks/{h}?tx_limit=1") for h in (1, busy)]
    rng = random.Random(20)
    values: list[Any] = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, -1, -32, -33, -128, -129,
                         -32768, -32769, -(2**31), "", "é" * 40, "x" * 300, b"", b"\x00" * 300, [], [1, [2, [3]]], None,
                         True, False, {"b": 1, "a": [b"\x01"]}, [rng.randbytes(64) for _ in range(20)]]
    page.goto(f"{story.urls[0]}/ui/explorer.html")
    got = page.evaluate("""async ([blocks, packed]) => {
        const { headerFields } = await import('/ui/explorer.js');
        const { canonical, decode } = await import('/ui/msgpack.js');
        const { bytesToHex, hexToBytes, sha256 } = await import('/ui/common.js');
        const hashes = [];
        for (const b of blocks) hashes.push(bytesToHex(await sha256(canonical(headerFields(b.header)))));
        const norm = (v) => v instanceof Uint8Array ? { bytes: bytesToHex(v) } : Array.isArray(v) ? v.map(norm)
          : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)])) : v;
        const decoded = packed.map((p) => norm(decode(hexToBytes(p))));
        const refused = [];
        for (const bad of ['cb0000000000000000', '9201', 'c0c0', 'c1']) {
          try { decode(hexToBytes(bad)); refused.push(false); } catch (e) { refused.push(true); }
        }
        return { hashes, decoded, refused };
    }""", [headers, [msgpack.packb(v, use_bin_type=True).hex() for v in values]])
    assert got["hashes"] == [b["hash"] for b in headers]

    def norm(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"bytes": v.hex()}
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    assert got["decoded"] == [norm(v) for v in values]
    assert got["refused"] == [True, True, True, True]  # a float, a short array, trailing bytes, a reserved type
