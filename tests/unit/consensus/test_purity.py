"""The consensus package does no IO: no asyncio, sockets, disk, clock, threads or other layers.

Clock, network, disk and randomness belong to the runtime (or, in the simulator, to a seeded
`random.Random` and a mock clock); this test keeps it that way by reading the imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import consensus

PACKAGE = Path(consensus.__file__).parent
FORBIDDEN = {"asyncio", "aiohttp", "plyvel", "time", "datetime", "socket", "threading", "multiprocessing",
             "concurrent", "subprocess", "os", "io", "selectors", "signal", "secrets", "uuid", "nacl",
             "node", "storage", "p2p", "cli", "click", "rich"}
# The engine proper draws no randomness at all; the simulator only through random.Random(seed).
ENGINE_ONLY_FORBIDDEN = {"random"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8, "the purity test found too few files to be looking at the package"
    return files


def test_no_module_of_the_consensus_package_imports_io_or_clock() -> None:
    offenders = {str(p.relative_to(PACKAGE)): sorted(imported_roots(p) & FORBIDDEN) for p in sources()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_engine_draws_no_randomness() -> None:
    engine_files = [p for p in sources() if "simulation" not in p.parts]
    offenders = {str(p.relative_to(PACKAGE)): sorted(imported_roots(p) & ENGINE_ONLY_FORBIDDEN) for p in engine_files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_simulator_uses_only_seeded_random_instances() -> None:
    for path in PACKAGE.joinpath("simulation").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
                assert node.attr == "Random", f"{path.name} uses random.{node.attr}; use a seeded random.Random"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom time import monotonic\nfrom . import sibling\n")
    assert imported_roots(bad) & FORBIDDEN == {"asyncio", "time"}
