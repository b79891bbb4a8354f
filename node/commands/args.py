"""Reading the values a command is given: key files (with their passphrase), identity, record
and transaction ids, days and instants, lists and FHIR resource types. A value that cannot be
right is refused here, before anything is signed, with a line that says how to fix it."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from node.commands.output import EXIT_USAGE, fail
from node.core.crypto import Identity
from node.home.keys import KeyFileError, is_encrypted, load_key_file


def read_passphrase(env_var: str | None, *, confirm: bool = False) -> str | None:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            fail(f"environment variable {env_var} is not set or empty", EXIT_USAGE)
        return value
    return None


def passphrase_for(path: str | os.PathLike[str], passphrase_env: str | None, *, missing_ok: bool = False) -> str | None:
    """The passphrase of key file `path`: from --passphrase-env, else prompted if it is encrypted
    (with `missing_ok`, a file that is not there is left for the caller to report)."""
    passphrase = read_passphrase(passphrase_env)
    if passphrase is None and (not missing_ok or os.path.exists(path)) and is_encrypted(path):
        if not sys.stdin.isatty():
            fail(f"{path} is encrypted: pass --passphrase-env VAR", EXIT_USAGE)
        passphrase = click.prompt(f"Passphrase for {path}", hide_input=True)
    return passphrase


def load_identity(path: str, passphrase_env: str | None) -> Identity:
    try:
        return load_key_file(path, passphrase_for(path, passphrase_env))
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)


def reader_identity(key_file: str | None, passphrase_env: str | None) -> Identity | None:
    return load_identity(key_file, passphrase_env) if key_file else None


def patient_reader(key_file: str, patient: str | None, passphrase_env: str | None) -> tuple[Identity, str]:
    """The reader's identity and the patient whose data it reads: --patient, else the key's own."""
    if patient:
        identity_arg(patient, "--patient")
    reader = load_identity(key_file, passphrase_env)
    return reader, patient or reader.id


def identity_arg(text: str, option: str) -> bytes:
    """An identity id given on the command line: 64 hex characters that are an Ed25519 public key
    (a mistyped character almost always makes it no curve point at all)."""
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    raw = hex32(text)
    if raw is None or not crypto_core_ed25519_is_valid_point(raw):
        fail(f"{option}: {text[:80]!r} is not a MedLedger identity id (64 hex characters, as `medledger keys show KEY` "
             "prints); check it for a mistyped character", EXIT_USAGE)
    return raw


def record_arg(text: str, option: str = "--record") -> bytes:
    """A record id given on the command line (64 hex characters, printed by `record put`)."""
    raw = hex32(text)
    if raw is None:
        fail(f"{option}: {text[:80]!r} is not a record id (64 hex characters, as `medledger record put` prints and "
             "`medledger record list` shows)", EXIT_USAGE)
    return raw


def tx_hash_arg(text: str, option: str) -> bytes:
    """A transaction hash (or consent id) given on the command line."""
    raw = hex32(text)
    if raw is None:
        fail(f"{option}: {text[:80]!r} is not a transaction hash (64 hex characters)", EXIT_USAGE)
    return raw


def hex32(text: str) -> bytes | None:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def date_ms(text: str, option: str, *, end_of_day: bool = False) -> int:
    """A day (YYYY-MM-DD, UTC; its end with end_of_day) or an ISO 8601 instant, in ms since the epoch."""
    import datetime as _dt

    try:
        if "T" in text:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.timezone.utc)
        else:
            day = _dt.date.fromisoformat(text)
            moment = _dt.datetime.combine(day, _dt.time.max if end_of_day else _dt.time.min, tzinfo=_dt.timezone.utc)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date like 2027-12-31 or an instant like 2027-12-31T08:00:00Z",
                                 param_hint=option) from None
    return int(moment.timestamp() * 1000)


def split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def check_types(text: str, option: str, *, allow_any: bool) -> None:
    """Refuse a resource type that is not a FHIR R4 name before anything is signed, with the
    closest name (the ledger refuses it too, but a typo should not cost a round trip)."""
    from node.app.fhir_types import is_resource_type, unknown_type_message

    for name in split_list(text):
        if not (allow_any and name == "*") and not is_resource_type(name):
            fail(f"{option}: {unknown_type_message(name)}", EXIT_USAGE)


