"""`medledger policy check FILE [--json]`: "ok" and exit 0 for a policy the ledger would accept,
each error with the Cedar engine's message and exit 1 otherwise."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policies"


def test_a_valid_policy_prints_ok():
    result = CliRunner().invoke(main, ["policy", "check", str(EXAMPLES / "payer-minimum-necessary.cedar")])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ") and "(2 statements)" in result.output


def test_a_policy_with_a_type_error_prints_the_engines_message_and_exits_1(tmp_path):
    bad = tmp_path / "bad.cedar"
    bad.write_text('permit(principal, action == Action::"read", resource) when { principal.professon == "nurse" };\n')
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "policy_type_error" in result.output and "attribute `professon`" in result.output
    result = CliRunner().invoke(main, ["policy", "check", str(bad), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["errors"][0]["code"] == "policy_type_error"
    assert data["errors"][0]["statement"] == "policy0"


def test_a_file_that_does_not_parse_or_is_not_text_is_refused(tmp_path):
    broken = tmp_path / "broken.cedar"
    broken.write_text("permit(principal, action, resource) when {")
    data = json.loads(CliRunner().invoke(main, ["policy", "check", str(broken), "--json"]).output)
    assert data["errors"][0]["code"] == "invalid_policy" and "unexpected end of input" in data["errors"][0]["message"]
    binary = tmp_path / "binary.cedar"
    binary.write_bytes(b"\xff\xfe permit")
    result = CliRunner().invoke(main, ["policy", "check", str(binary)])
    assert result.exit_code == 1 and "not UTF-8" in result.output
    big = tmp_path / "big.cedar"
    big.write_text("forbid(principal, action, resource);\n" * 1000)
    result = CliRunner().invoke(main, ["policy", "check", str(big), "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["errors"][0]["code"] == "policy_too_large"


def test_the_schema_command_prints_the_schema_the_check_uses():
    result = CliRunner().invoke(main, ["policy", "schema"])
    assert result.exit_code == 0 and "entity Practitioner in [Institution]" in result.output
    assert "medledger policy check" in CliRunner().invoke(main, ["policy", "check", "--help"]).output


def test_check_refuses_what_an_agreement_would_refuse(tmp_path):
    """`policy check` answers as `agreement.propose` will: a widening permit, a named record, free text."""
    for name, text, code in (
            ("wide", "permit (principal, action, resource);", "policy_widens"),
            ("record", 'permit (principal, action, resource == Record::"ab12");', "policy_names_patient"),
            ("prose", 'forbid (principal, action, resource) when { principal.profession == "Dr Jane Doe" };', "policy_free_text")):
        path = tmp_path / f"{name}.cedar"
        path.write_text(text)
        result = CliRunner().invoke(main, ["policy", "check", str(path), "--json"])
        assert result.exit_code == 1, name
        assert json.loads(result.output)["errors"][0]["code"] == code, name
    for standing in ("pharmacy-nomination", "insurer", "referral", "lab-order"):  # the protocol's texts pass too
        assert CliRunner().invoke(main, ["policy", "check", str(EXAMPLES / f"{standing}.cedar")]).exit_code == 0, standing
