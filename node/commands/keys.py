"""`medledger keys`: create identity key files and read the id a key file holds."""

from __future__ import annotations

import click

from node.commands.args import read_passphrase
from node.commands.options import CONTEXT, command_group, json_option, passphrase_env_option
from node.commands.output import EXIT_USAGE, emit, fail
from node.core.crypto import Identity
from node.home.keys import KeyFileError, is_encrypted, key_file_id, write_key_file


keys = command_group("keys", "Create and inspect identity key files.")


@keys.command("new", context_settings=CONTEXT)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="File to create (mode 0600; never overwritten).")
@click.option("--encrypt", is_flag=True, help="Encrypt the key with a passphrase (prompted twice).")
@passphrase_env_option
@json_option
def keys_new(out: str, encrypt: bool, passphrase_env: str | None, as_json: bool) -> None:
    """Create a new Ed25519 identity key and print its id.

    \b
    Examples:
      medledger keys new --out alice.key
      medledger keys new --out alice.key --encrypt
      MY_PASS=... medledger keys new --out alice.key --passphrase-env MY_PASS
    """
    passphrase = read_passphrase(passphrase_env)
    if encrypt and passphrase is None:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
    identity = Identity.generate()
    try:
        write_key_file(out, identity, passphrase)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"id": identity.id, "file": out, "encrypted": bool(passphrase)}, identity.id)


@keys.command("show", context_settings=CONTEXT)
@click.argument("file", type=click.Path(dir_okay=False))
@json_option
def keys_show(file: str, as_json: bool) -> None:
    """Print the identity id held in FILE (no passphrase needed).

    \b
    Example:
      medledger keys show alice.key
    """
    try:
        ident_id = key_file_id(file)
        encrypted = is_encrypted(file)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"id": ident_id, "file": file, "encrypted": encrypted}, ident_id)
