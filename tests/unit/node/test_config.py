"""Configuration: every option is documented with its default, environment variables override
the file, and invalid values are refused with the option's name and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.home.config import ConfigError, NodeConfig, build_config, dump_toml

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def rendered_default(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def test_every_option_is_documented_with_its_default():
    rows = dict(re.findall(r"^\| `([a-z_0-9]+\.[a-z_0-9]+)` \| `([^`]*)` \|", DOCS.read_text(), re.M))
    options = {f"{sec}.{key}": rendered_default(v) for sec, values in NodeConfig().to_dict().items() for key, v in values.items()}
    assert set(rows) == set(options), (set(options) ^ set(rows))
    for name, default in options.items():
        assert rows[name] == default, name


def test_environment_overrides_file_for_every_kind():
    doc = {"api": {"port": 1000}, "node": {"observer": False, "log_format": "text"}}
    env = {"MEDLEDGER_API_PORT": "2000", "MEDLEDGER_NODE_OBSERVER": "yes", "MEDLEDGER_NODE_LOG_FORMAT": "json",
           "MEDLEDGER_P2P_PEERS": "abc@10.0.0.2:8800"}
    cfg = build_config(doc, env)
    assert (cfg.api.port, cfg.node.observer, cfg.node.log_format, cfg.p2p.peers) == (2000, True, "json", "abc@10.0.0.2:8800")
    assert build_config(doc, {}).api.port == 1000


@pytest.mark.parametrize("doc, env, expected", [
    ({"api": {"port": 70000}}, {}, r"api\.port: 70000 is outside the allowed range 0\.\.65535"),
    ({}, {"MEDLEDGER_MEMPOOL_MAX_TXS": "many"}, r"mempool\.max_txs: expected an integer"),
    ({"node": {"observer": "maybe"}}, {}, r"node\.observer: expected true or false"),
    ({"node": {"log_format": "xml"}}, {}, r"node\.log_format: 'xml' is not allowed \(one of: text, json\)"),
    ({}, {"MEDLEDGER_NODE_LOG_LEVEL": "loud"}, r"node\.log_level: 'loud' is not allowed \(one of: debug, info, warning, error\)"),
    ({"api": {"hostname": "x"}}, {}, r"api\.hostname: unknown option \(known: host, port"),
    ({"metrics": {}}, {}, r"\[metrics\]: unknown section"),
    ({"api": {"host": 5}}, {}, r"api\.host: expected a string"),
    ({"consensus": {"base_timeout_ms": 5000, "max_timeout_ms": 1000}}, {}, r"consensus\.max_timeout_ms must be at least"),
])
def test_invalid_values_name_the_option_and_what_is_allowed(doc, env, expected):
    with pytest.raises(ConfigError, match=expected):
        build_config(doc, env)


def test_dump_round_trips():
    import tomllib

    cfg = build_config({"node": {"name": 'a "quoted" name', "log_format": "json"}, "api": {"port": 1}}, {})
    assert build_config(tomllib.loads(dump_toml(cfg)), {}) == cfg


def test_node_run_refuses_an_invalid_value_at_start(tmp_path):
    from click.testing import CliRunner

    from cli import main

    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["node", "init", "--home", str(home)]).exit_code == 0
    r = CliRunner().invoke(main, ["node", "run", "--home", str(home)], env={"MEDLEDGER_NODE_LOG_FORMAT": "xml"})
    assert r.exit_code == 2 and "node.log_format" in r.output and "text, json" in r.output
    r = CliRunner().invoke(main, ["node", "config", "--home", str(home), "--json"], env={"MEDLEDGER_NODE_LOG_LEVEL": "debug"})
    assert r.exit_code == 0 and '"log_level": "debug"' in r.output
