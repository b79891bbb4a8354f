"""Commitments to free text that stays off the chain.

A break-glass request's account of the emergency, or a reviewer's note, is the writer's to keep
(in its institution's own notes). The chain may carry a commitment to it: SHA-256 of a random
16-byte salt followed by the UTF-8 text. The salt makes the commitment unguessable (a short note
such as "x" cannot be found by hashing candidates), and showing the text and salt later proves it
is the note committed to at the time. Client side only: nothing here runs in the ledger.
"""

from __future__ import annotations

import os

from node.core.crypto import sha256

SALT_SIZE = 16


def commit_note(text: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    """(salt, commitment) for `text`; a fresh random salt unless one is given."""
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    return salt, sha256(salt + text.encode("utf-8"))


def check_note(text: str, salt: bytes, commitment: bytes) -> bool:
    """Whether `text` with `salt` is what `commitment` committed to."""
    return commit_note(text, salt)[1] == commitment
