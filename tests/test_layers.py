"""The layers as a test: each folder imports only what lies below it (docs/architecture.md).

The rules, read from every module's imports (relative ones resolved):

| module            | may not import                                                              |
| ----------------- | --------------------------------------------------------------------------- |
| consensus/        | anything but itself, the standard library and msgpack (its canonical bytes)  |
| storage/          | node, consensus, p2p, cli: it holds bytes                                     |
| p2p/              | node, storage, consensus, cli: a thin transport                               |
| node/core/        | the rest of node, storage, p2p, consensus                                     |
| node/chain/       | everything in node but core; storage, p2p: the domain types                   |
| node/app/         | home, runtime, net, api, records, research, client, daemon, devtools,         |
|                   | storage, p2p: ledger rules on core and the chain types only                   |
| node/runtime/     | net, api, records, research, daemon, devtools                                 |
| node/net/         | api, records, research, daemon, devtools                                      |
| node/api/         | daemon, devtools                                                              |
| node/devtools/    | node/commands, cli: the tools serve the commands, never the other way         |
| node/commands/    | cli: the command groups sit below the root group; they may import all of node |
|                   | (the tools only inside a command function, so loading the CLI loads no tools) |
| node/ (the rest)  | node/devtools, node/commands, cli: only the commands and tests import tools   |

`test_each_rule_fails_on_a_forbidden_import` shows that each rule bites.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("consensus", "storage", "p2p", "node")
ALLOWED_IN_CONSENSUS = {"consensus", "msgpack", *sys.stdlib_module_names}

# (importer prefix, forbidden import prefixes, importers exempt, why)
RULES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("storage", ("node", "consensus", "p2p", "cli"), (), "storage/ holds bytes only"),
    ("p2p", ("node", "storage", "consensus", "cli"), (), "p2p/ is a thin transport"),
    ("node.core", ("node.chain", "node.app", "node.home", "node.runtime", "node.net", "node.api", "node.fhir", "node.records",
                   "node.research", "node.client", "node.daemon", "node.devtools", "storage", "p2p", "consensus", "cli"),
     (), "node/core/ imports nothing above it"),
    ("node.chain", ("node.app", "node.home", "node.runtime", "node.net", "node.api", "node.fhir", "node.records", "node.research",
                    "node.client", "node.daemon", "node.devtools", "storage", "p2p", "cli"),
     (), "node/chain/ holds the domain types: core only"),
    ("node.app", ("node.home", "node.runtime", "node.net", "node.api", "node.fhir", "node.records", "node.research", "node.client",
                  "node.daemon", "node.devtools", "storage", "p2p", "cli"),
     (), "node/app/ holds the ledger rules: core and the chain types only"),
    ("node.runtime", ("node.api", "node.fhir", "node.net", "node.records", "node.research", "node.daemon", "node.devtools", "cli"),
     (), "node/runtime/ runs the ledger; the API and the networks sit above it"),
    ("node.net", ("node.api", "node.fhir", "node.records", "node.research", "node.daemon", "node.devtools", "cli"),
     (), "node/net/ carries the runtime's messages; the API sits above it"),
    ("node.api", ("node.daemon", "node.devtools", "node.fhir", "cli"), (), "node/api/ serves the runtime; the daemon composes it"),
    ("node.fhir", ("node.daemon", "node.devtools", "cli"), (), "node/fhir/ serves FHIR over the services; the daemon composes it"),
    ("node.devtools", ("node.commands", "cli"), (), "node/devtools/ serves the commands, not the other way"),
    ("node.commands", ("cli",), (), "node/commands/ sits below the root group of cli.py"),
    ("node", ("node.devtools", "node.commands", "cli"), ("node.devtools", "node.commands"),
     "only the commands and tests import the tools"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(module: str, source: str, *, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                out.add(target)
                if not node.module:  # `from . import x` imports the module x
                    out.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                out.add(node.module)
    return out


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The layer rules `source` (the text of `module`) breaks, one line each."""
    found = imports(module, source, is_package=is_package)
    out: list[str] = []
    if _under(module, "consensus"):
        out += [f"{module} imports {t}: consensus/ uses only itself, the standard library and msgpack"
                for t in sorted(found) if t.split(".")[0] not in ALLOWED_IN_CONSENSUS]
    for prefix, forbidden, exempt, why in RULES:
        if not _under(module, prefix) or any(_under(module, e) for e in exempt):
            continue
        out += [f"{module} imports {t}: {why}" for t in sorted(found) if any(_under(t, f) for f in forbidden)]
    return out


def sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 100, "the layer test found too few files to be looking at the project"
    return files


def test_every_module_keeps_to_its_layer() -> None:
    broken = [v for p in sources() for v in violations(module_name(p), p.read_text(), is_package=p.name == "__init__.py")]
    assert broken == []


@pytest.mark.parametrize(("module", "line"), [
    ("storage.chain", "from node.core.encoding import canonical"),
    ("storage.kv", "import consensus.messages"),
    ("p2p.network", "from node.runtime.runtime import Node"),
    ("node.core.crypto", "from ..app import queries"),
    ("node.app.access", "from node.runtime.runtime import Node"),
    ("node.app.types.record_add", "from ...api import make_app"),
    ("node.app.queries", "from node.devtools import bench"),
    ("node.daemon", "from .devtools.byzantine import install"),
    ("node.runtime.runtime", "import node.devtools.chaos"),
    ("node.chain.tx", "from node.app import registry"),
    ("node.runtime.runtime", "from node.api.app import make_app"),
    ("node.net.gossip", "from node.api import auth"),
    ("node.api.app", "import node.daemon"),
    ("node.api.app", "from node.fhir import routes"),
    ("node.fhir.routes", "from node.daemon import run_node"),
    ("node.daemon", "from node.commands.node import node"),
    ("node.devtools.cluster", "from node.commands.output import fail"),
    ("node.commands.bench", "import cli"),
    ("consensus.engine", "import aiohttp"),
    ("consensus.engine", "from node.core.crypto import Identity"),
])
def test_each_rule_fails_on_a_forbidden_import(module: str, line: str) -> None:
    assert violations(module, line), f"{line!r} in {module} should break a layer rule"


@pytest.mark.parametrize(("module", "line"), [
    ("consensus.engine", "import msgpack"),
    ("consensus.engine", "from .messages import Commit"),
    ("node.app.access", "from node.core.encoding import canonical"),
    ("node.app.access", "from node.chain.tx import Transaction"),
    ("node.devtools.chaos", "from .cluster import Cluster"),
    ("node.runtime.runtime", "from storage.kv import LevelDBStore"),
    ("node.commands.bench", "from node.devtools.bench_run import run_benchmark"),
    ("node.commands.node", "from node.daemon import run_node"),
])
def test_allowed_imports_pass(module: str, line: str) -> None:
    assert violations(module, line) == []


def tools_loaded_by(imports: str) -> str:
    """The tools' modules, and their extra's libraries, that importing `imports` loads (in a fresh process)."""
    import subprocess

    code = (f"import sys, {imports}\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hypothesis', 'matplotlib')"
            " or m.startswith('node.devtools'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_daemon_runs_without_the_tools() -> None:
    # Importing what `medledger node run` needs loads neither the tools nor their extra's libraries.
    assert tools_loaded_by("node.daemon, node.runtime.runtime, node.api.app, node.net.gossip") == ""


def test_the_cli_loads_no_tools_until_a_command_needs_them() -> None:
    # The commands import node/devtools inside their functions: `medledger --help` (and every
    # node and ledger command) runs without the tools or their extra's libraries.
    assert tools_loaded_by("cli") == ""


@pytest.mark.parametrize(("args", "missing"), [
    (["fuzz", "--target", "http://127.0.0.1:1", "--cases", "1"], "hypothesis"),
    (["bench", "--nodes", "4", "--sweep"], "matplotlib"),
])
def test_a_tool_without_its_extra_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                              missing: str) -> None:
    import importlib.util

    from click.testing import CliRunner

    import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2, result.output
    assert f"needs {missing}" in result.output and "medledger[tools]" in result.output
