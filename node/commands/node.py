"""`medledger node`: initialise a node home, run the node in the foreground, print its effective
configuration or a systemd unit for it, and check or approve protocol upgrades."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from node.chain.genesis import GenesisError
from node.chain.vocabulary import INSTITUTION_KINDS
from node.commands.args import load_identity, passphrase_for
from node.commands.options import (
    CONTEXT, client_options, command_group, json_option, key_option, node_option, passphrase_env_option,
)
from node.commands.output import EXIT_REFUSED, EXIT_USAGE, emit, fail, report_tx, run_client
from node.home.config import ConfigError, NodeHome, dump_toml
from node.home.keys import KeyFileError
from node.home.layout import HomeExists, init_network
from node.home.logs import LOG_FORMATS, LOG_LEVELS, setup_logging


EXIT_UPGRADE_REQUIRED = 4  # `node run` stopped before a height whose protocol version it does not support

node = command_group("node", "Initialise and run a node.")


@node.command("init", context_settings=CONTEXT)
@click.option("--home", required=True, type=click.Path(file_okay=False), help="Directory for the node home (created).")
@click.option("--api-port", default=8700, show_default=True, type=click.IntRange(1, 65535), help="Port of the HTTP API.")
@click.option("--p2p-port", default=8800, show_default=True, type=click.IntRange(1, 65535), help="Port of the peer endpoint.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--chain-id", default="medledger-local", show_default=True, help="Name of the new network.")
@click.option("--name", default="institution-0", show_default=True, help="Name of this institution.")
@click.option("--kind", type=click.Choice(INSTITUTION_KINDS), default=None,
              help="What this institution is, in the new genesis (without it: 'unspecified').")
@click.option("--observer", is_flag=True, help="Follow the chain without voting (replace genesis.json with the network's).")
@click.option("--join", "join_url", metavar="URL", default=None,
              help="Join the network of the node at URL from its newest verified state snapshot (an observer until voted in).")
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="With --join over https: the CA the network's API certificates chain to.")
@json_option
def node_init(home: str, api_port: int, p2p_port: int, host: str, chain_id: str, name: str, kind: str | None, observer: bool,
              join_url: str | None, ca_file: str | None, as_json: bool) -> None:
    """Create a one-validator network in HOME: key, config and genesis; with --join, a home
    for a new institution of an existing network, started from its newest snapshot.

    \b
    Examples:
      medledger node init --home ./node-home
      medledger node init --home ./st-marys --name st-marys --kind hospital
      medledger node run --home ./node-home
      medledger node init --home ./new-home --join https://node0.example:8700 --ca ca.pem
    """
    if join_url is not None:
        _join(home, join_url, api_port=api_port, p2p_port=p2p_port, host=host, name=name, ca_file=ca_file,
              as_json=as_json)
        return
    try:
        [made] = init_network([Path(home)], chain_id=chain_id, names=[name], kinds=[kind] if kind else None, api_host=host,
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
    from node.runtime.blocks import UpgradeRequired
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

    def refuse(message: str, code: int = EXIT_USAGE) -> NoReturn:
        if (log_format or cfg.node.log_format) == "json":
            log.error("cannot start: %s", message)
            sys.exit(code)
        fail(message, code)

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
    except UpgradeRequired as exc:  # logged when the node stopped; the exit status says it
        refuse(str(exc), EXIT_UPGRADE_REQUIRED)


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


def upgrade_verdict(info: dict[str, Any], supported: tuple[int, ...]) -> str | None:
    """Why a binary supporting `supported` cannot follow the chain that GET /v1/upgrades
    described in `info` (None: it can): the version of the next height, or one scheduled ahead."""
    height, versions = info["height"], ", ".join(map(str, supported))
    if info["protocol_version"] not in supported:
        return (f"the chain follows protocol version {info['protocol_version']} from height {height + 1} and this "
                f"binary supports only version(s) {versions}: install a release that supports it")
    for upgrade in info["scheduled"]:
        if upgrade["height"] > height and upgrade["version"] not in supported:
            return (f"protocol version {upgrade['version']} is scheduled at height {upgrade['height']} "
                    f"({upgrade['height'] - height} blocks ahead) and this binary supports only version(s) "
                    f"{versions}: install a release that supports it before then")
    return None


@node.command("upgrade-check", context_settings=CONTEXT)
@node_option
@json_option
def node_upgrade_check(node_url: str, as_json: bool) -> None:
    """Tell whether this binary supports the protocol upgrades the network scheduled.

    Exits 0 when it supports the version of the next height and every version scheduled ahead;
    otherwise 1, with the reason on one line. A node that does not support a version stops
    before its height (docs/operations.md, "Upgrading the protocol").

    \b
    Example:
      medledger node upgrade-check --node http://127.0.0.1:8700
    """
    from node import client as api
    from node.chain import block

    info = run_client(lambda: api.Client(node_url).upgrades())
    supported = tuple(block.SUPPORTED_VERSIONS)
    reason = upgrade_verdict(info, supported)
    ahead = [u for u in info["scheduled"] if u["height"] > info["height"]]
    doc = {"ok": reason is None, "reason": reason, "height": info["height"], "protocol_version": info["protocol_version"],
           "supported_versions": list(supported),
           "scheduled": [{**u, "supported": u["version"] in supported} for u in info["scheduled"]],
           "pending": info["pending"]}
    if as_json:
        emit(True, doc, "")
        if reason is not None:
            sys.exit(EXIT_REFUSED)
        return
    if reason is not None:
        fail(reason, EXIT_REFUSED)
    plan = "".join(f"\n  version {u['version']} from height {u['height']}" for u in ahead) or " none"
    click.echo(f"ok: this binary supports protocol version(s) {', '.join(map(str, supported))}; the chain is at "
               f"height {info['height']} (version {info['protocol_version']}); upgrades ahead:{plan}")


@node.command("upgrade-schedule", context_settings=CONTEXT)
@key_option("A validator's institution key.")
@click.option("--version", "version", required=True, type=click.IntRange(2), help="The protocol version to switch to.")
@click.option("--height", required=True, type=click.IntRange(1), help="The first height that follows it.")
@client_options
def node_upgrade_schedule(key_file: str, version: int, height: int, node_url: str, passphrase_env: str | None,
                          as_json: bool) -> None:
    """Approve switching the network to protocol VERSION from HEIGHT on; it is scheduled once a
    quorum of validators approved (each runs this with its own key, same version and height).

    \b
    Example (run by enough validators):
      medledger node upgrade-schedule --key devnet/node0/institution.key --version 2 --height 5000
    """
    from node.client import HealthClient

    ident = load_identity(key_file, passphrase_env)
    client = HealthClient(node_url)
    result = run_client(lambda: client.transact(ident, "governance.schedule_upgrade",
                                                {"version": version, "height": height}))
    if result.get("status") == "committed":
        info = run_client(lambda: client.upgrades())
        result["scheduled"] = any(u["height"] == height and u["version"] == version for u in info["scheduled"])
    report_tx(result, as_json, f"approval recorded (tx {result.get('tx_hash')})" +
              (f"; version {version} is scheduled from height {height}" if result.get("scheduled")
               else "; more approvals needed"))
