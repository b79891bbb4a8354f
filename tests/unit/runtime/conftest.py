"""Fixtures of the runtime tests: a started 4-validator cluster on the harness (tests/harness)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.cluster import Cluster


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(4)
    c.start()
    try:
        yield c
    finally:
        c.stop()
