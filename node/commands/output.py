"""How a command ends: one line on stderr and an exit status for an error, text or one JSON
document for a result, and the outcome of a transaction (committed, or refused with advice
from node/core/advice.py on what to do)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from node.client import ApiError, ClientError
from node.core.advice import explain

if TYPE_CHECKING:
    from node.core.crypto import Identity

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def emit(as_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        click.echo(text() if callable(text) else text)


def require_extra(module: str, what: str) -> None:
    """Refuse `what` with the extra to install when the optional `module` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        fail(f"{what} needs {module}, which comes with the tools extra: pip install 'medledger[tools]' "
             "(from a clone: pip install -e '.[tools]')", EXIT_USAGE)


def run_client(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiError as exc:
        fail(explain(exc.code, exc.message), EXIT_REFUSED)
    except ClientError as exc:
        fail(str(exc), EXIT_UNREACHABLE)


def refusal_message(result: dict[str, Any], height_label: str) -> str:
    """What the ledger said when it did not commit a transaction: its message, else where it was recorded."""
    return result.get("message") or (f"the ledger refused it (tx {result.get('tx_hash')}, {height_label}{result['height']})"
                                     if result.get("height") else f"tx {result.get('tx_hash')}")


def report_tx(result: dict[str, Any], as_json: bool, ok_text: str, *, refuse_on: tuple[str, ...] = ()) -> None:
    st = result.get("status")
    if st == "committed" and st not in refuse_on:
        emit(as_json, result, ok_text)
        return
    if as_json:
        emit(True, result, "")
        sys.exit(EXIT_REFUSED)
    rule = (result.get("decision") or {}).get("rule")
    if st == "denied" and rule:
        fail(f"denied: {explain(rule)}", EXIT_REFUSED)
    fail(explain(str(st), refusal_message(result, "height ")), EXIT_REFUSED)


def transact(node_url: str, ident: Identity, tx_type: str, body: dict[str, Any], for_patient: str | None = None) -> dict[str, Any]:
    """Sign, submit and wait for one healthcare transaction (on a patient's behalf with --for)."""
    from node.client import HealthClient

    from node.commands.args import identity_arg

    if for_patient:
        body["on_behalf_of"] = identity_arg(for_patient, "--for")
    return run_client(lambda: HealthClient(node_url).transact(ident, tx_type, body))
