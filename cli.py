"""`medledger`: the command-line interface of MedLedger.

Thin by design: this file holds the root group and adds the command groups of node/commands/
to it; each command there parses its options, calls into `node/` (the client library, the
daemon, the home initialiser) and prints the result, as text or, with --json, as one JSON
document. Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from node.client import ClientError
from node.commands import (audit, bench, care, chaos, consent, demo, devnet, fuzz, governance, keys, ledger, node, policy,
                           records, research, sim, trial, validator)
from node.commands.options import CONTEXT
from node.commands.output import EXIT_REFUSED, EXIT_UNREACHABLE, fail
from node.home.logs import setup_logging


class MedLedgerGroup(click.Group):
    """The root group: whatever a command did not foresee still ends as one line, never a
    traceback (MEDLEDGER_DEBUG=1 shows it, for a bug report)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except ClientError as exc:
            fail(str(exc), EXIT_UNREACHABLE)
        except Exception as exc:  # our own bug: say so in one line
            if os.environ.get("MEDLEDGER_DEBUG"):
                raise
            detail = " ".join(str(exc).split())[:200]
            fail(f"unexpected {type(exc).__name__}: {detail} (a bug: please report it; MEDLEDGER_DEBUG=1 shows the traceback)",
                 EXIT_REFUSED)


@click.group(cls=MedLedgerGroup, context_settings=CONTEXT)
@click.version_option(package_name="medledger", prog_name="medledger")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]), help="Log verbosity (to stderr).")
@click.option("--ca", "ca_file", default=None, type=click.Path(dir_okay=False, exists=True), envvar="MEDLEDGER_CA",
              help="CA certificate to trust for https nodes (env MEDLEDGER_CA), e.g. devnet/ca.pem after `devnet init --tls`.")
def main(log_level: str, ca_file: str | None) -> None:
    """MedLedger: a permissioned blockchain for healthcare.

    \b
    Start a local network, then talk to it:
      medledger devnet up
      medledger keys new --out alice.key
      medledger identity register --key alice.key --role patient
      medledger status
      medledger --ca devnet/ca.pem status --node https://127.0.0.1:8700
    """
    if ca_file:
        os.environ["MEDLEDGER_CA"] = str(Path(ca_file).resolve())  # every Client of this command trusts it
    setup_logging(log_level, "text")


main.add_command(keys.keys)
main.add_command(node.node)
main.add_command(ledger.status)
main.add_command(ledger.identity)
main.add_command(ledger.tx)
main.add_command(ledger.block)
main.add_command(records.record)
main.add_command(care.care)
main.add_command(consent.consent)
main.add_command(audit.audit)
main.add_command(consent.patient)
main.add_command(governance.institution)
main.add_command(validator.validator)
main.add_command(validator.validators)
main.add_command(research.demo_data)
main.add_command(research.study)
main.add_command(research.research)
main.add_command(trial.trial)
main.add_command(devnet.devnet)
main.add_command(demo.demo)
main.add_command(sim.sim)
main.add_command(chaos.chaos)
main.add_command(bench.bench)
main.add_command(fuzz.fuzz)
main.add_command(policy.policy)


if __name__ == "__main__":
    main(prog_name="medledger")
