"""What the browser tests share: Debian's chromium through Playwright, one per test module."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                                                                       "(pip install -e '.[test]')")
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not on PATH (.ci/run installs it: apt-get install -y chromium)")
    from tests.browser.story import launch_chromium

    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()
