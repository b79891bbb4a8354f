"""Regenerate the dashboard screenshots in docs/screenshots/ from a fresh local devnet.

    python tests/browser/screenshots.py            # writes docs/screenshots/*.png
    python tests/browser/screenshots.py --out DIR  # somewhere else

Starts a 4-node devnet in a temporary directory, plays the story of tests/browser/story.py,
puts a data-sharing agreement in force (the network page lists it, its policy opened), commits a
few batches of registrations so the throughput chart has something to draw, and photographs each
page in Debian's headless chromium at two widths: 1280 px (`<name>.png`) and 390 px, a phone
(`<name>-phone.png`). Nothing here is needed at run time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from node.client import HealthClient  # noqa: E402
from node.devtools.cluster import Cluster  # noqa: E402
from node.core.crypto import Identity  # noqa: E402
from tests.browser.story import agreement_in_force, launch_chromium, populate, sign_in  # noqa: E402

WAIT_MS = 60_000
WIDTHS = (("", {"width": 1280, "height": 900}), ("-phone", {"width": 390, "height": 844}))


def load(client: HealthClient, rounds: int = 8, per_round: int = 25) -> None:
    """Commit `rounds` batches of patient registrations, each waited for (paced by commits)."""
    for _ in range(rounds):
        txs = [client.make_tx(Identity.generate(), "identity.register", {"role": "patient"}, nonce=1) for _ in range(per_round)]
        client.submit_many(txs)
        status = client.wait(txs[-1].hash_hex, 30)
        if status.get("status") != "committed":
            raise SystemExit(f"the load did not commit: {status}")


def shoot(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="medledger-shots-") as tmp, Cluster.create(Path(tmp) / "net", 4) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        story = populate(cluster, Path(tmp))
        agreement_in_force(cluster, "pharmacy-nomination")
        base = story.urls[0] + "/ui"
        grant = HealthClient(story.urls[0]).tx(story.consent_id)
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)

            def snap(name: str) -> None:
                """The page as it is, at each width (the desktop one last: the flow goes on there)."""
                for suffix, viewport in (*WIDTHS[1:], WIDTHS[0]):
                    page.set_viewport_size(viewport)
                    # relaid out, and the chart (if any) redrawn at the new width
                    page.wait_for_function("""() => new Promise((done) => requestAnimationFrame(() => {
                        const c = document.querySelector('canvas');
                        done(!c || c.width === Math.round(c.clientWidth * (window.devicePixelRatio || 1)));
                    }))""")
                    path = out / f"{name}{suffix}.png"
                    page.screenshot(path=str(path), full_page=True)
                    shots.append(path)

            page.goto(base + "/")
            page.wait_for_selector("#validator-table")
            load(HealthClient(story.urls[1]))
            height = HealthClient(story.urls[0]).status()["height"]
            page.wait_for_function(
                "h => [...document.querySelectorAll('#validator-table td.v-height')].every(c => Number(c.textContent) >= h)", arg=height)
            page.click("#agreement-table details.policy-details summary")
            page.wait_for_selector("#agreement-table pre.policy:not(:text-is('loading…'))")
            snap("network")
            page.goto(f"{base}/explorer.html")
            page.wait_for_selector("#latest-blocks tbody tr")
            snap("explorer")
            page.goto(f"{base}/explorer.html#block={grant['height']}")
            page.wait_for_selector("#block-txs")
            page.wait_for_selector("#certificate[data-verified]")
            snap("explorer-block")
            busy = HealthClient(story.urls[0]).block(height)["txs"]
            page.goto(f"{base}/explorer.html#tx={busy[len(busy) // 3]['hash']}")  # a proof with a few steps
            page.wait_for_selector("#proof-result")
            page.wait_for_selector("#certificate[data-verified]")
            snap("explorer-proof")
            sign_in(page, base + "/patient.html", story.patient_key)
            page.wait_for_selector("#audit-table")
            page.click("button[data-action=revoke]")
            snap("patient")
            page.click("button[data-action=confirm-revoke]")
            page.wait_for_selector("#consent-table tr[data-status=revoked]")
            page.wait_for_selector("#audit-table tr[data-event='consent.revoked']")
            snap("patient-revoked")
            sign_in(page, base + "/compliance.html", story.institution_key)
            page.wait_for_selector("#disclosure-table")
            snap("compliance")
            browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where to write the PNG files")
    args = parser.parse_args()
    for path in shoot(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
