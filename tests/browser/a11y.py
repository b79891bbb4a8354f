"""Accessibility and layout checks the browser tests share.

`serious_violations(page)` runs axe-core (the copy bundled with axe-playwright-python, a library
we did not write) on the page as it is and returns the violations of impact "serious" or
"critical" (WCAG 2.1 A and AA rules, contrast and names among them), each as {id, impact, help,
nodes: [target selectors]}. `overflow(page)` is how many CSS pixels the page is wider than its
viewport (0 when nothing scrolls sideways).
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
BLOCKING = ("serious", "critical")
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

_AXE = Axe()


def serious_violations(page: Any) -> list[dict[str, Any]]:
    results = _AXE.run(page, options=WCAG_AA)
    found = results.response.get("violations", [])
    return [{"id": v["id"], "impact": v.get("impact"), "help": v.get("help"),
             "nodes": [n.get("target") for n in v.get("nodes", [])][:5]}
            for v in found if v.get("impact") in BLOCKING]


def overflow(page: Any) -> int:
    """CSS pixels of sideways scroll: the document's width beyond the viewport's."""
    return int(page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                             " - document.documentElement.clientWidth"))
