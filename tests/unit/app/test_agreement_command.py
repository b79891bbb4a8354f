"""`medledger policy propose|sign|revoke|show`, against the real ledger rules: the node client is
replaced by one that executes the signed transactions in the in-memory ledger of the app tests
(tests/unit/app/harness.py) and answers reads as GET /v1/agreements/{id} does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli import main
from node import client as client_module
from node.app import queries
from node.app.registry import check_tx_body
from node.chain.tx import TxRejected
from node.core.crypto import Identity
from node.home.keys import write_key_file

from tests.unit.app.harness import Ledger, ident

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "policies"
A, B = ident("A"), ident("B")


class LedgerClient:
    """What the commands use of HealthClient, on the in-memory ledger."""

    ledger: Ledger

    def __init__(self, url: str) -> None:
        self.url = url

    def transact(self, who: Identity, tx_type: str, body: dict[str, Any]) -> dict[str, Any]:
        tx = self.ledger.tx(who, tx_type, body)
        try:
            check_tx_body(tx)
        except TxRejected as exc:
            return {"tx_hash": tx.hash_hex, "status": exc.code, "result": exc.code, "message": exc.message}
        result = self.ledger.block(tx, verify=True)[0]
        return {"tx_hash": tx.hash_hex, "status": "committed" if result == "ok" else result, "result": result,
                "height": self.ledger.store.height}

    def get(self, path: str, **_: Any) -> Any:
        assert path.startswith("/v1/agreements/")
        name, _, query = path[len("/v1/agreements/"):].partition("?version=")
        found = queries.agreement(self.ledger.state, name, int(query) if query else None)
        if found is None:
            raise client_module.ApiError(404, "unknown_agreement", "no agreement with this id and version")
        return found


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    LedgerClient.ledger = Ledger()
    monkeypatch.setattr(client_module, "HealthClient", LedgerClient)
    paths = []
    for name, who in (("a", A), ("b", B)):
        path = tmp_path / f"{name}.key"
        write_key_file(path, who)
        paths.append(str(path))
    return paths[0], paths[1]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["policy", *args])


def test_propose_sign_show_revoke(keys: tuple[str, str], tmp_path: Path) -> None:
    key_a, key_b = keys
    nomination = str(EXAMPLES / "pharmacy-nomination.cedar")
    result = run("propose", "--key", key_a, "--id", "pharm-1", "--parties", B.public_key.hex(), "--purpose", "treatment",
                 "--file", nomination, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["version"] == 1
    shown = json.loads(run("show", "--id", "pharm-1", "--json").output)
    assert shown["status"] == "proposed" and shown["parties"] == sorted([A.public_key.hex(), B.public_key.hex()])
    other = str(EXAMPLES / "referral.cedar")
    result = run("sign", "--key", key_b, "--id", "pharm-1", "--version", "1", "--file", other)
    assert result.exit_code == 1 and "digest_mismatch" in result.output  # not the text it would sign
    result = run("sign", "--key", key_b, "--id", "pharm-1", "--version", "1", "--file", nomination)
    assert result.exit_code == 0 and "status in_force" in result.output, result.output
    text = run("show", "--id", "pharm-1").output
    assert "in_force" in text and "not signed" not in text
    result = run("propose", "--key", key_b, "--id", "pharm-1", "--parties", A.public_key.hex(), "--purpose", "treatment",
                 "--file", other, "--json")
    assert result.exit_code == 0 and json.loads(result.output)["version"] == 2, result.output  # latest + 1
    assert run("sign", "--key", key_a, "--id", "pharm-1", "--version", "2").exit_code == 0
    assert json.loads(run("show", "--id", "pharm-1", "--version", "1", "--json").output)["status"] == "superseded"
    assert run("revoke", "--key", key_a, "--id", "pharm-1", "--version", "2").exit_code == 0
    assert json.loads(run("show", "--id", "pharm-1", "--json").output)["status"] == "revoked"
    result = run("revoke", "--key", key_a, "--id", "pharm-1", "--version", "2")
    assert result.exit_code == 1 and "agreement_revoked" in result.output
    missing = run("show", "--id", "nothing")
    assert missing.exit_code == 1 and "unknown_agreement" in missing.output


def test_propose_refuses_a_bad_policy_or_id_before_signing(keys: tuple[str, str], tmp_path: Path) -> None:
    key_a, _ = keys
    bad = tmp_path / "bad.cedar"
    bad.write_text('permit(principal, action, resource) when { principal.professon == "nurse" };\n')
    result = run("propose", "--key", key_a, "--id", "x", "--parties", B.public_key.hex(), "--purpose", "treatment",
                 "--file", str(bad))
    assert result.exit_code == 1 and "policy_type_error" in result.output
    result = run("propose", "--key", key_a, "--id", "bad id", "--parties", B.public_key.hex(), "--purpose", "treatment",
                 "--file", str(bad))
    assert result.exit_code == 2 and "invalid_agreement_id" in result.output
    assert LedgerClient.ledger.store.height == 0
