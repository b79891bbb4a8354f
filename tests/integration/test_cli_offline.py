"""CLI commands that need no running node: keys, node init, config, and error handling."""

from __future__ import annotations

import json
import os
import stat

from click.testing import CliRunner

from cli import main


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_keys_new_and_show(tmp_path):
    out = tmp_path / "alice.key"
    r = run("keys", "new", "--out", str(out))
    assert r.exit_code == 0
    ident = r.output.strip()
    assert len(ident) == 64 and stat.S_IMODE(os.stat(out).st_mode) == 0o600
    r = run("keys", "show", str(out), "--json")
    assert json.loads(r.output) == {"id": ident, "file": str(out), "encrypted": False}
    r = run("keys", "new", "--out", str(out))
    assert r.exit_code == 2 and "refusing to overwrite" in r.output


def test_keys_encrypted_with_env_passphrase(tmp_path):
    out = tmp_path / "bob.key"
    r = run("keys", "new", "--out", str(out), "--passphrase-env", "PW", "--json", env={"PW": "s3cret"})
    assert r.exit_code == 0 and json.loads(r.output)["encrypted"] is True
    r = run("keys", "new", "--out", str(tmp_path / "c.key"), "--passphrase-env", "MISSING_VAR")
    assert r.exit_code == 2 and "MISSING_VAR" in r.output


def test_node_init_and_config(tmp_path):
    home = tmp_path / "home"
    r = run("node", "init", "--home", str(home), "--api-port", "18700", "--json")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["api_url"] == "http://127.0.0.1:18700"
    for name in ("config.toml", "genesis.json", "institution.key"):
        assert (home / name).exists()
    genesis = json.loads((home / "genesis.json").read_text())
    assert genesis["validators"][0]["id"] == info["node_id"]
    r = run("node", "init", "--home", str(home))
    assert r.exit_code == 2 and "already holds a node home" in r.output
    r = run("node", "config", "--home", str(home), "--json", env={"MEDLEDGER_API_PORT": "19000"})
    assert json.loads(r.output)["api"]["port"] == 19000
    r = run("node", "config", "--home", str(home), env={"MEDLEDGER_API_PORT": "99999"})
    assert r.exit_code == 2 and "api.port" in r.output and "0..65535" in r.output


def test_unreachable_node_is_one_clear_line(tmp_path):
    r = run("status", "--node", "http://127.0.0.1:9")
    assert r.exit_code == 3
    assert r.output.startswith("error: cannot reach the node") and r.output.count("\n") == 1


def test_every_command_has_help_with_examples():
    import click

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path

    paths = list(walk(main, []))
    assert len(paths) > 30
    for args in paths:
        r = run(*args, "--help")
        assert r.exit_code == 0 and "Example" in r.output, args
