"""The click options and context settings that many commands share, as decorators.

Each decorator adds its options in the order the commands have always listed them, so a
command's `--help` reads the same whether it spells an option out or takes it from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
READER_KEY_HELP = ("Your key: the read is signed with it (the patient's, its guardian's, or a custodian's or "
                   "grant holder's); the patient's by default.")
PATIENT_HELP = "The patient's identity id (default: the key's)."


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def node_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--node", "node_url", default="http://127.0.0.1:8700", show_default=True, envvar="MEDLEDGER_NODE",
        help="Base URL of a node's API (env MEDLEDGER_NODE).",
    )(f)


def passphrase_env_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--passphrase-env", metavar="VAR",
        help="Read the key's passphrase from environment variable VAR (otherwise prompted if the key is encrypted).",
    )(f)


def client_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--node, --passphrase-env and --json: the tail of every command that signs a request."""
    return node_option(passphrase_env_option(json_option(f)))


def for_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--for", "for_patient", default=None, help="Act for this patient (as their guardian).")(f)


def patient_client_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--for and the client options: a patient's transaction, signed by the patient or a guardian."""
    return for_option(client_options(f))


def key_option(help: str, *, required: bool = True) -> Decorator:
    """--key: the key file a command signs with."""
    return click.option("--key", "key_file", required=required, type=click.Path(dir_okay=False, exists=True), help=help)


def patient_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--patient", default=None, help=PATIENT_HELP)(f)


def fhir_option(resource: str) -> Decorator:
    """--fhir: print FHIR R4 resources of kind `resource` instead of MedLedger's JSON."""
    return click.option("--fhir", "as_fhir", is_flag=True, help=f"Print FHIR R4 {resource} resources.")


def reader_key_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """--key for explorer reads: the node shows a transaction that concerns a patient whole only
    to a signed request by one of its parties (docs/security-compliance.md)."""
    f = click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False, exists=True),
                     help="Sign the read with this key: transactions you are a party to are shown whole.")(f)
    return passphrase_env_option(f)


def explorer_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The optional reader's --key (with --passphrase-env), --node and --json of the explorer reads."""
    return reader_key_option(node_option(json_option(f)))


def command_group(name: str, help: str) -> click.Group:
    """A command group that only holds its subcommands, with the CLI's context settings."""
    return click.Group(name, help=help, context_settings=CONTEXT)


def signed_command(group: click.Group, name: str, key_help: str) -> Decorator:
    """A subcommand of `group` that signs with --key (its first option, described by `key_help`)."""
    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        return group.command(name, context_settings=CONTEXT)(key_option(key_help)(f))
    return decorate
