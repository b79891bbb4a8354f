"""The systemd unit rendered by `medledger node systemd-unit`: restart on failure, non-root
user, the home as its only writable place, hardening; systemd itself accepts it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cli import main
from node.home.systemd import UnitError, render_unit


def test_unit_for_a_home_under_var_lib():
    unit = render_unit("/var/lib/medledger/hospital-a", user="medledger", executable="/opt/medledger/bin/medledger")
    lines = set(unit.splitlines())
    for expected in (
        "User=medledger", "Group=medledger", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
        "ProtectHome=yes", "StateDirectory=medledger/hospital-a", "ReadWritePaths=/var/lib/medledger/hospital-a",
        "ExecStart=/opt/medledger/bin/medledger node run --home /var/lib/medledger/hospital-a --log-format json",
    ):
        assert expected in lines, expected
    assert "@" not in unit.replace("multi-user", "")  # every placeholder filled


def test_unit_with_an_encrypted_key_and_a_home_elsewhere():
    unit = render_unit("/home/ops/node", user="ops", group="staff", executable="/usr/bin/medledger",
                       passphrase_env="NODE_PASS", environment_file="/etc/medledger/node.env")
    assert "EnvironmentFile=/etc/medledger/node.env" in unit
    assert "--passphrase-env NODE_PASS" in unit and "Group=staff" in unit
    assert "ProtectHome=read-only" in unit and "StateDirectory" not in unit


@pytest.mark.parametrize("kwargs, message", [
    ({"home": "relative/home", "user": "medledger"}, "absolute"),
    ({"home": "/var/lib/medledger", "user": "root"}, "non-root"),
    ({"home": "/var/lib/medledger", "user": "Bad User"}, "--user"),
    ({"home": "/var/lib/my node", "user": "medledger"}, "without spaces"),
    ({"home": "/var/lib/medledger", "user": "medledger", "passphrase_env": "PW"}, "--environment-file"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(UnitError, match=message):
        render_unit(executable="/usr/bin/medledger", **kwargs)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_unit(tmp_path):
    unit = tmp_path / "medledger.service"
    unit.write_text(render_unit("/var/lib/medledger", user="medledger", executable=sys.executable))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "medledger.service" not in r.stderr, r.stderr


def test_cli_prints_the_unit():
    r = CliRunner().invoke(main, ["node", "systemd-unit", "--home", "/var/lib/medledger", "--user", "medledger",
                                  "--executable", "/usr/local/bin/medledger"])
    assert r.exit_code == 0 and "User=medledger" in r.output and r.output.endswith("\n")
    r = CliRunner().invoke(main, ["node", "systemd-unit", "--home", "/var/lib/medledger", "--user", "root",
                                  "--executable", "/usr/local/bin/medledger"])
    assert r.exit_code == 2 and "non-root" in r.output
