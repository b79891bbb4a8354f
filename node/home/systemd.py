"""The systemd unit of a node home: `medledger node systemd-unit` renders the template shipped in
`node/deploy/medledger.service` for one home, one dedicated user and one `medledger` executable.

The unit restarts the node on failure, runs it as a non-root user, lets it write only to its
home (created by systemd as a state directory when the home is under /var/lib) and applies
systemd's sandboxing options. Logs go to the journal as JSON lines.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path, PurePosixPath

TEMPLATE = "medledger.service"
_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOME_DIRS = ("/home", "/root", "/run/user")


class UnitError(ValueError):
    """An argument the unit cannot be rendered with (the message says which and why)."""


def template() -> str:
    return (resources.files("node") / "deploy" / TEMPLATE).read_text()


def _quote(path: str) -> str:
    if any(c in path for c in " \t\n\"'\\%$"):
        raise UnitError(f"{path!r}: use a path without spaces, quotes, backslashes, % or $")
    return path


def render_unit(home: Path | str, *, user: str, executable: str, group: str | None = None,
                passphrase_env: str | None = None, environment_file: str | None = None) -> str:
    """The unit text for node home `home` (absolute), run as `user` with `executable`."""
    home_path = PurePosixPath(str(home))
    if not home_path.is_absolute():
        raise UnitError(f"--home {home}: give an absolute path (systemd needs one)")
    for label, name in (("--user", user), ("--group", group or user)):
        if not _NAME.match(name):
            raise UnitError(f"{label} {name!r}: expected a system user/group name (lower case letters, digits, _ and -)")
        if name == "root":
            raise UnitError(f"{label} root: run the node as a dedicated non-root user (for example `medledger`)")
    if passphrase_env is not None and not _ENV_VAR.match(passphrase_env):
        raise UnitError(f"--passphrase-env {passphrase_env!r}: expected an environment variable name")
    if passphrase_env is not None and environment_file is None:
        raise UnitError("--passphrase-env needs --environment-file FILE (root-only, mode 0600) that sets the variable")
    home_text = _quote(str(home_path))
    state = ""
    if home_path.parts[:3] == ("/", "var", "lib") and len(home_path.parts) > 3:
        state = f"StateDirectory={'/'.join(home_path.parts[3:])}\nStateDirectoryMode=0700\n"
    under_home = any(home_text == d or home_text.startswith(d + "/") for d in _HOME_DIRS)
    values = {
        "@HOME@": home_text,
        "@USER@": user,
        "@GROUP@": group or user,
        "@EXECUTABLE@": _quote(executable),
        "@PASSPHRASE@": f" --passphrase-env {passphrase_env}" if passphrase_env else "",
        "@ENVIRONMENT_FILE@": f"EnvironmentFile={_quote(environment_file)}\n" if environment_file else "",
        "@STATE_DIRECTORY@": state,
        "@PROTECT_HOME@": "read-only" if under_home else "yes",
    }
    body = template()
    body = body[body.index("[Unit]"):]  # the template's own header says how to render it
    for key, value in values.items():
        body = body.replace(key, value)
    return f"# MedLedger node {home_text} (rendered by `medledger node systemd-unit`; see docs/operations.md)\n" + body
