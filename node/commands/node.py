"""`medledger node`: initialise a node home, run the node in the foreground, print its effective
configuration or a systemd unit for it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from node.chain.genesis import GenesisError
from node.commands.args import passphrase_for
from node.commands.options import CONTEXT, command_group, json_option, passphrase_env_option
from node.commands.output import EXIT_USAGE, emit, fail
from node.home.config import ConfigError, NodeHome, dump_toml
from node.home.keys import KeyFileError
from node.home.layout import HomeExists, init_network
from node.home.logs import LOG_FORMATS, LOG_LEVELS, setup_logging


node = command_group("node", "Initialise and run a node.")


@node.command("init", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Directory for the node home (created).")
@click.option("--api-port", default=8700, show_default=True, type=click.IntRange(1, 65535), help="Port of the HTTP API.")
@click.option("--p2p-port", default=8800, show_default=True, type=click.IntRange(1, 65535), help="Port of the peer endpoint.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--chain-id", default="medledger-local", show_default=True, help="Name of the new network.")
@click.option("--name", default="institution-0", show_default=True, help="Name of this institution.")
@click.option("--observer", is_flag=True, help="Follow the chain without voting (replace genesis.json with the network's).")
@click.option("--join", "join_url", metavar="URL", default=None,
              help="Join the network of the node at URL from its newest verified state snapshot (an observer until voted in).")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="With --join over https: the CA the network's API certificates chain to.")
@json_option
def node_init(home: str, api_port: int, p2p_port: int, host: str, chain_id: str, name: str, observer: bool,
              join_url: str | None, ca_file: str | None, as_json: bool) -> None:
    """Create a one-validator network in HOME: key, config and genesis; with --join, a home
    for a new institution of an existing network, started from its newest snapshot.

    \b
    Examples:
      medledger node init --home ./node-home
      medledger node run --home ./node-home
      medledger node init --home ./new-home --join https://node0.example:8700 --ca ca.pem
    """
    if join_url is not None:
        _join(home, join_url, api_port=api_port, p2p_port=p2p_port, host=host, name=name, ca_file=ca_file,
              as_json=as_json)
        return
    try:
        [made] = init_network([Path(home)], chain_id=chain_id, names=[name], api_host=host,
                              api_ports=[api_port], p2p_ports=[p2p_port], observer=observer)
    except (HomeExists, KeyFileError) as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"home": str(made.home), "node_id": made.node_id, "api_url": made.api_url},
         lambda: f"node home: {made.home}\nnode id:   {made.node_id}\nAPI URL:   {made.api_url}\n"
                 f"run it with: medledger node run --home {made.home}")


def _join(home: str, url: str, *, api_port: int, p2p_port: int, host: str, name: str, ca_file: str | None,
          as_json: bool) -> None:
    from node.home.layout import JoinError, join_network

    try:
        joined = join_network(Path(home), url, api_host=host, api_port=api_port, p2p_port=p2p_port, name=name,
                              ca_file=ca_file)
    except (HomeExists, KeyFileError, JoinError) as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, {"home": str(joined.home), "node_id": joined.node_id, "api_url": joined.api_url,
                   "height": joined.height, "genesis_hash": joined.genesis_hash, "attestations": joined.attestations},
         lambda: f"node home:    {joined.home}\nnode id:      {joined.node_id}\nAPI URL:      {joined.api_url}\n"
                 f"snapshot at:  height {joined.height} (verified; {joined.attestations} validator attestations)\n"
                 f"genesis hash: {joined.genesis_hash} (compare it with the consortium's)\n"
                 f"next: the validators add {joined.node_id} to [p2p] observers, then run: medledger node run --home {joined.home}")


@node.command("run", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True), help="The node home.")
@passphrase_env_option
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="Log lines as text (default) or one JSON object per line (overrides node.log_format).")
@click.option("--log-level", "run_log_level", type=click.Choice(LOG_LEVELS),
              help="Log verbosity (overrides node.log_level).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate: serve the API over https and the peer links over TLS (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None, help="PEM private key of --tls-cert.")
@click.option("--unsafe-test-switches", is_flag=True, hidden=True, help="Test harness only: enable partition switches.")
@click.pass_context
def node_run(ctx: click.Context, home: str, passphrase_env: str | None, log_format: str | None,
             run_log_level: str | None, tls_cert: str | None, tls_key: str | None, unsafe_test_switches: bool) -> None:
    """Run the node in the foreground until Ctrl-C or SIGTERM.

    Logs go to stderr, one event per line (see node.log_format and node.log_level in
    docs/configuration.md); metrics are served at /metrics on the API port.

    \b
    Examples:
      medledger node run --home ./node-home
      medledger node run --home ./node-home --log-format json --log-level debug
      medledger node run --home ./node-home --tls-cert node.crt --tls-key node.key
    """
    from click.core import ParameterSource

    from node.devtools.byzantine import ByzantineConfigError, hook_from_env
    from node.home.tls import TlsError

    from node.daemon import run_node
    from storage.chain import StoreCorrupted
    from storage.kv import StorageError

    try:
        cfg = NodeHome(Path(home)).load_config()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    # precedence: `node run --log-level`, then `medledger --log-level` if given, then the config
    given_above = ctx.parent is not None and ctx.parent.get_parameter_source("log_level") == ParameterSource.COMMANDLINE
    level = run_log_level or (ctx.parent.params["log_level"] if given_above and ctx.parent else cfg.node.log_level)
    setup_logging(level, log_format or cfg.node.log_format)
    log = logging.getLogger("medledger.node")

    def refuse(message: str) -> NoReturn:
        if (log_format or cfg.node.log_format) == "json":
            log.error("cannot start: %s", message)
            sys.exit(EXIT_USAGE)
        fail(message, EXIT_USAGE)

    try:
        key_path = NodeHome(Path(home)).path(cfg.node.key_file)
        passphrase = passphrase_for(key_path, passphrase_env, missing_ok=True)
        # a Byzantine test node is wired from the tools, never by the daemon itself
        hook = hook_from_env(unsafe_test_switches)
        run_node(Path(home), passphrase=passphrase, test_switches=unsafe_test_switches,
                 tls_cert=Path(tls_cert) if tls_cert else None, tls_key=Path(tls_key) if tls_key else None,
                 hook=hook)
    except (ConfigError, GenesisError, KeyFileError, StorageError, StoreCorrupted, TlsError, ByzantineConfigError) as exc:
        refuse(str(exc))
    except OSError as exc:
        refuse(f"cannot start: {exc.strerror or exc}")


@node.command("config", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True), help="The node home.")
@json_option
def node_config(home: str, as_json: bool) -> None:
    """Print the effective configuration (file plus MEDLEDGER_* environment overrides).

    \b
    Example:
      MEDLEDGER_API_PORT=8080 medledger node config --home ./node-home
    """
    try:
        cfg = NodeHome(Path(home)).load_config()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    emit(as_json, cfg.to_dict(), lambda: dump_toml(cfg).rstrip())


@node.command("systemd-unit", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False), help="The node home on the target host (absolute).")
@click.option("--user", required=True, help="Dedicated non-root user the node runs as.")
@click.option("--group", help="Its group (default: the user's name).")
@click.option("--executable", help="Path of the `medledger` program (default: the one on PATH).")
@click.option("--passphrase-env", metavar="VAR", help="For an encrypted key: the variable holding its passphrase.")
@click.option("--environment-file", metavar="FILE", help="File (root-only, mode 0600) that sets VAR for the unit.")
def node_systemd_unit(home: str, user: str, group: str | None, executable: str | None,
                      passphrase_env: str | None, environment_file: str | None) -> None:
    """Print a systemd unit that runs the node of HOME as USER (restart on failure, hardened).

    \b
    Example:
      medledger node systemd-unit --home /var/lib/medledger --user medledger \\
        > /etc/systemd/system/medledger.service
      systemctl daemon-reload && systemctl enable --now medledger
    """
    import shutil

    from node.home.systemd import UnitError, render_unit

    program = executable or shutil.which("medledger")
    if not program:
        fail("no `medledger` program on PATH; pass --executable PATH", EXIT_USAGE)
    try:
        click.echo(render_unit(home, user=user, group=group, executable=str(program),
                               passphrase_env=passphrase_env, environment_file=environment_file), nl=False)
    except UnitError as exc:
        fail(str(exc), EXIT_USAGE)
