"""The Cedar engine the policies are evaluated with, pinned: part of the protocol.

Every validator must reach the same decision on the same policies and state, so the engine is
not a free dependency: pyproject.toml pins `cedarpy` exactly, and `ENGINE_VERSION` names the
version this binary's protocol versions were built for. A node with another engine installed
refuses to evaluate (`check_engine`) instead of deciding differently from the others. A new
engine version ships with a new protocol version, scheduled by the validators
(docs/operations.md, "Upgrading the protocol"; docs/policies.md, "Version pinning").
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from node.core.errors import CodedError

ENGINE = "cedarpy"
ENGINE_VERSION = "4.12.2"  # cedarpy 4.12.2 embeds the Cedar engine (cedar-policy crate) 4.12.0
LANGUAGE = "cedar-4.12"  # the policy language as stored with a policy on the chain


class EngineMismatch(CodedError):
    status = 500


@functools.cache  # reading the package metadata costs ~0.7 ms; the installed engine does not change under a process
def installed_version() -> str | None:
    try:
        return version(ENGINE)
    except PackageNotFoundError:
        return None


def check_engine() -> None:
    """Refuse to evaluate with any engine but the pinned one (a divergent decision would fork)."""
    found = installed_version()
    if found != ENGINE_VERSION:
        raise EngineMismatch("policy_engine_mismatch",
                             f"{ENGINE} {ENGINE_VERSION} is required to evaluate policies, found {found or 'none'}")
