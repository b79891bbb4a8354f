"""Every refusal code the ledger, the API, the custodians and the client can return has a
sentence saying what to do (node/core/advice.py), so the CLI never prints a bare code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from node.core.advice import ADVICE, FALLBACK, advice, explain

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# calls whose first string argument is a code: exceptions and verdicts named by what they carry
CARRIERS = ("Error", "Rejected", "Failed", "Refusal", "Refused", "Admission")


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def codes_in_sources() -> dict[str, str]:
    """code -> file, for every literal code passed to an error or verdict, and every decision rule."""
    found: dict[str, str] = {}
    files = [*sorted((ROOT / "node").rglob("*.py")), ROOT / "cli.py"]
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            values: list[ast.expr] = []
            if name.endswith(CARRIERS) and name not in ("ValueError", "TypeError", "KeyError", "RuntimeError", "OSError"):
                values = [a for a in node.args[:2]]
            values += [k.value for k in node.keywords if k.arg in ("code", "rule", "error")]
            for value in values:
                text = value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None
                if text is None and isinstance(value, ast.JoinedStr) and value.values and isinstance(value.values[0], ast.Constant):
                    text = str(value.values[0].value).split(":", 1)[0]  # f"release_refused:{result}"
                if text and CODE.fullmatch(text) and "_" in text or text in ("busy", "forbidden", "erased", "denied"):
                    found.setdefault(text, str(path.relative_to(ROOT)))
    return found


def test_every_refusal_code_in_the_sources_has_advice():
    found = codes_in_sources()
    assert len(found) > 60  # the scan itself works
    missing = {code: where for code, where in found.items() if advice(code) == FALLBACK}
    assert missing == {}, f"codes without advice in node/core/advice.py: {missing}"


def test_every_access_denial_rule_has_advice():
    from node.app.access import DENIED_RULES

    assert [r for r in DENIED_RULES if r not in ADVICE] == []


def test_refusal_is_printed_with_what_to_do():
    line = explain("invalid_period", "the consent would already have expired")
    assert line.startswith("invalid_period: the consent would already have expired.")
    assert "--until" in line and "\n" not in line
    assert explain("invalid_resource_type", "did you mean Observation?").startswith(
        "invalid_resource_type: did you mean Observation? Use")
    assert explain("busy", "busy") == f"busy. {ADVICE['busy']}"
    assert advice("bad_height") != FALLBACK and advice("release_refused:unknown_study") == ADVICE["release_refused"]
