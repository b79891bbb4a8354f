"""First use, as a new user would try it (issue 15): mistakes get one clear line that names the
option and says what to do, never a traceback; consents show what they cover; one key used by
several commands at once does not lose transactions to nonce collisions.

Commands run in-process through click's CliRunner against a real one-validator node process."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from node.client import HealthClient
from node.devtools.cluster import Cluster
from node.home.keys import load_key_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "http://127.0.0.1:9"


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def ok(*args: str) -> dict:
    r = run(*args, "--json")
    assert r.exit_code == 0, (args, r.output)
    return json.loads(r.output)


def refused(r, *needles: str) -> str:
    """A refusal: non-zero exit, no traceback, one `error:` line carrying every needle."""
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert lines or "Usage:" in r.output, r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)
    return r.output


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-use")
    with Cluster.create(root / "net", 1) as cluster:
        cluster.start()
        cluster.wait_ready(60)
        node = cluster.nodes[0]
        keys = {"inst": str(node.home / "institution.key")}
        for name in ("alice", "dr"):
            keys[name] = str(root / f"{name}.key")
            ok("keys", "new", "--out", keys[name])
        ok("identity", "register", "--key", keys["alice"], "--role", "patient", "--institution-key", keys["inst"],
           "--node", node.api_url)  # registered where she is treated: the institution's practitioner may add records
        ok("identity", "register", "--key", keys["dr"], "--role", "practitioner", "--institution-key", keys["inst"],
           "--node", node.api_url)
        alice = ok("keys", "show", keys["alice"])["id"]
        obs = root / "obs.json"
        obs.write_text((ROOT / "docs" / "examples" / "observation.json").read_text().replace("PATIENT_ID", alice))
        rid = ok("record", "put", "--key", keys["dr"], "--patient", alice, "--file", str(obs), "--node", node.api_url)["record_id"]
        yield {"url": node.api_url, "keys": keys, "alice": alice, "rid": rid, "root": root,
               "inst_id": node.node_id, "dr_id": ok("keys", "show", keys["dr"])["id"]}


def one_char_changed(ident: str) -> str:
    """The id with one hex digit changed so that it is no Ed25519 point (most such changes are not)."""
    from nacl.bindings import crypto_core_ed25519_is_valid_point

    for i in range(len(ident)):
        for c in "0123456789abcdef":
            cand = ident[:i] + c + ident[i + 1:]
            if cand != ident and not crypto_core_ed25519_is_valid_point(bytes.fromhex(cand)):
                return cand
    raise AssertionError("no such change")


# -- 13: consent types and what consent list shows -------------------------------------------------
def test_cli_refuses_misspelt_consent_types_with_the_closest_name(net):
    k, url = net["keys"], net["url"]
    out = refused(run("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "Observaton",
                      "--purpose", "treatment", "--until", "2099-12-31", "--node", url), "--types", "did you mean Observation?")
    assert out.count("\n") == 1
    refused(run("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "*", "--deny-types", "Conditon",
                "--purpose", "treatment", "--until", "2099-12-31", "--node", url), "--deny-types", "did you mean Condition?")


def test_consent_list_shows_scope_purpose_and_expiry(net):
    k, url = net["keys"], net["url"]
    ok("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "*", "--deny-types", "Condition",
       "--purpose", "treatment,payment", "--until", "2099-12-31", "--node", url)
    r = run("consent", "list", "--key", k["alice"], "--node", url)
    assert r.exit_code == 0, r.output
    assert "types *" in r.output and "except Condition" in r.output
    assert "treatment,payment" in r.output and "2099-12-31" in r.output


# -- 14: mistyped ids and other bad input ---------------------------------------------------------
def test_mistyped_record_id_is_one_line_naming_the_option_not_an_identity(net):
    k, url = net["keys"], net["url"]
    for args in (("record", "get", "--key", k["dr"], "--record", "deadbeef", "--purpose", "treatment",
                  "--out", str(net["root"] / "x.json"), "--node", url),
                 ("record", "erase", "--key", k["alice"], "--record", "deadbeef", "--node", url)):
        out = refused(run(*args), "--record", "is not a record id")
        assert "identity id" not in out and out.count("\n") == 1


def test_patient_id_with_one_character_changed_is_not_a_medledger_identity(net):
    k, url = net["keys"], net["url"]
    bad = one_char_changed(net["alice"])
    out = refused(run("record", "put", "--key", k["dr"], "--patient", bad, "--file", str(net["root"] / "obs.json"),
                      "--node", url), "--patient", "is not a MedLedger identity id")
    assert "nacl" not in out and out.count("\n") == 1


def bad_inputs(net) -> list[tuple[str, ...]]:
    """Every command given a mistake: mistyped ids, missing or wrong files, bad dates, no node."""
    k, url, root = net["keys"], net["url"], net["root"]
    bad_id, short = one_char_changed(net["alice"]), "deadbeef"
    missing = str(root / "missing.key")
    not_a_key = str(root / "obs.json")
    out = str(root / "out.json")
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    return [
        ("keys", "show", missing), ("keys", "show", not_a_key), ("keys", "new", "--out", k["alice"]),
        ("node", "config", "--home", str(root / "nowhere")), ("node", "run", "--home", str(empty)),
        ("node", "init", "--home", str(root / "net" / "node0")), ("node", "systemd-unit", "--home", "relative", "--user", "x", "--executable", "/bin/true"),
        ("status", "--node", UNREACHABLE), ("status", "--node", "not a url"),
        ("identity", "register", "--key", k["alice"], "--role", "patient", "--node", UNREACHABLE),
        ("identity", "register", "--key", not_a_key, "--role", "patient", "--node", url),
        ("identity", "register", "--key", k["dr"], "--role", "practitioner", "--institution-key", missing, "--node", url),
        ("tx", "show", short, "--node", url), ("tx", "show", "0" * 64, "--node", UNREACHABLE),
        ("block", "show", "nope", "--node", url), ("block", "show", "999999", "--node", url),
        ("record", "put", "--key", k["dr"], "--patient", short, "--file", not_a_key, "--node", url),
        ("record", "put", "--key", k["dr"], "--patient", net["alice"], "--file", missing, "--node", url),
        ("record", "put", "--key", k["dr"], "--patient", net["alice"], "--file", k["alice"], "--node", url),
        ("record", "put", "--key", k["dr"], "--patient", net["alice"], "--file", not_a_key, "--node", UNREACHABLE),
        ("record", "get", "--key", k["dr"], "--record", "0" * 64, "--purpose", "treatment", "--out", out, "--node", url),
        ("record", "get", "--key", k["dr"], "--record", net["rid"], "--purpose", "treatment", "--out", str(root / "no" / "dir" / "x"),
         "--node", UNREACHABLE),
        ("record", "list", "--key", k["alice"], "--patient", bad_id, "--node", url),
        ("record", "list", "--key", k["alice"], "--node", UNREACHABLE),
        ("record", "erase", "--key", k["alice"], "--record", net["rid"], "--for", short, "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", bad_id, "--types", "*", "--purpose", "treatment", "--until", "2099-12-31", "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "*", "--purpose", "treatment", "--until", "31/12/2099", "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "*", "--purpose", "treatment", "--until", "2020-01-01", "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--records", short, "--purpose", "treatment", "--until", "2099-12-31", "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", net["alice"], "--types", "*", "--purpose", "treatment", "--until", "2099-12-31", "--node", url),
        ("consent", "grant", "--key", k["alice"], "--to", "study:NOPE", "--types", "*", "--purpose", "research", "--until", "2099-12-31", "--node", url),
        ("consent", "revoke", "--key", k["alice"], "--consent", short, "--node", url),
        ("consent", "revoke", "--key", k["alice"], "--consent", "0" * 64, "--node", url),
        ("consent", "list", "--key", k["alice"], "--patient", short, "--node", url),
        ("audit", "--key", k["alice"], "--patient", bad_id, "--node", url), ("audit", "--node", url),
        ("audit", "disclosures", "--key", k["alice"], "--since", "yesterday", "--node", url),
        ("audit", "disclosures", "--key", k["inst"], "--since", "2026-01-01", "--node", UNREACHABLE),
        ("audit", "verify", "--tx", short, "--node", url), ("audit", "verify", "--tx", "0" * 64, "--node", url),
        ("audit", "breakglass", "--key", k["inst"], "--node", UNREACHABLE),
        ("audit", "review", "--key", k["inst"], "--access", short, "--outcome", "justified", "--node", url),
        ("audit", "review", "--key", k["inst"], "--access", "0" * 64, "--outcome", "justified", "--node", url),
        ("patient", "guardian", "--key", k["alice"], "--guardian", bad_id, "--node", url),
        ("patient", "breakglass", "--key", k["alice"], "--opt-out", "--for", bad_id, "--node", url),
        ("institution", "admit", "--key", k["inst"], "--institution", short, "--name", "X", "--node", url),
        ("demo-data", "--patients", "2", "--out", k["alice"]),
        ("study", "register", "--key", k["inst"], "--id", "bad id!", "--title", "t", "--approval", "a", "--until", "2099-12-31", "--node", url),
        ("study", "register", "--key", k["inst"], "--id", "S1", "--title", "t", "--approval", "a", "--until", "someday", "--node", url),
        ("study", "add-researcher", "--key", k["inst"], "--study", "S1", "--researcher", short, "--node", url),
        ("research", "extract", "--key", k["dr"], "--study", "NOPE", "--types", "Patient", "--out", str(root / "ex"), "--node", UNREACHABLE),
        ("devnet", "init", "--dir", str(root / "net")),
        ("devnet", "stop", "--node", "7", "--dir", str(root / "net")), ("devnet", "stop", "--node", "0", "--dir", str(empty)),
        ("demo-data", "--patients", "2", "--out", str(root / "demo-x"), "--load", "--devnet", str(empty)),
        ("demo-data", "--patients", "2", "--out", str(root / "demo-y"), "--consent-to", "study:S"),
        ("demo-data", "--patients", "2", "--out", str(root / "demo-z"), "--load", "--types", "Observaton", "--devnet", str(root / "net")),
        ("sim", "--seeds", "x"), ("bench", "--txs", "1"), ("chaos", "--nodes", "0"),
        ("fuzz", "--target", UNREACHABLE, "--cases", "1"),
    ]


def test_no_cli_command_ends_in_a_traceback_on_bad_input(net):
    seen = set()
    for args in bad_inputs(net):
        r = run(*args)
        refused(r)
        seen.add(" ".join(a for a in args[:2] if not a.startswith("-")))
    # every command group the tour uses was driven
    for group in ("keys", "status", "identity", "tx", "block", "record", "consent", "audit", "patient", "institution", "study",
                  "research", "demo-data", "devnet", "node"):
        assert any(s.split()[0] == group for s in seen), group


# -- 15: refusals say what to do; disclosures need an institution; parallel nonces -----------------
def test_refusal_is_printed_with_a_sentence_saying_what_to_do(net):
    k, url = net["keys"], net["url"]
    import datetime as dt

    soon = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = refused(run("consent", "grant", "--key", k["alice"], "--to", net["inst_id"], "--types", "*",
                      "--purpose", "treatment", "--until", soon, "--node", url), "invalid_period", "Give an --until date in the future")
    assert out.count("\n") == 1
    refused(run("record", "put", "--key", k["alice"], "--patient", net["alice"], "--file", str(net["root"] / "obs.json"),
                "--node", url), "not_a_practitioner", "register the key with --role practitioner")
    refused(run("consent", "grant", "--key", k["dr"], "--to", net["inst_id"], "--types", "*", "--purpose", "treatment",
                "--until", "2099-12-31", "--node", url), "role_not_allowed", "use the key of the right identity")


def test_disclosures_with_a_patients_key_is_refused_not_reported_empty(net):
    k, url = net["keys"], net["url"]
    refused(run("audit", "disclosures", "--key", k["alice"], "--since", "2026-01-01", "--node", url),
            "--key", "not an institution's")
    r = run("audit", "disclosures", "--key", k["inst"], "--since", "2026-01-01", "--node", url)
    assert r.exit_code == 0, r.output


def test_one_key_used_by_two_clients_at_once_does_not_lose_a_transaction_to_a_nonce(net):
    """Two clients (two processes, each with its own nonce counter) sign with one key; the
    second's transaction, with the higher nonce, reaches the ledger first."""
    url, alice = net["url"], load_key_file(net["keys"]["alice"])
    first, second = HealthClient(url), HealthClient(url)
    plain_submit = first.submit
    raced = {"done": False}

    def submit_after_the_other(tx):
        if not raced["done"]:
            raced["done"] = True
            other = second.make_tx(alice, "consent.breakglass", {"opt_out": False}, nonce=tx.nonce + 1000)
            second.submit(other)
            second.wait(other.hash_hex, 30)
        return plain_submit(tx)

    first.submit = submit_after_the_other  # type: ignore[method-assign]  # this one client races the other
    result = first.transact(alice, "consent.breakglass", {"opt_out": False})
    assert raced["done"] and result["status"] == "committed", result


def test_parallel_cli_calls_with_one_key_all_commit(net):
    key, url = net["keys"]["alice"], net["url"]

    def one(i: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli", "patient", "breakglass", "--key", key,
                               "--opt-out" if i % 2 else "--opt-in", "--node", url],
                              capture_output=True, text=True, timeout=120, cwd=str(ROOT))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]


def test_client_library_refuses_a_patient_id_that_is_no_identity_with_a_record_error(net):
    from node.client import RecordError

    dr = load_key_file(net["keys"]["dr"])
    with pytest.raises(RecordError) as err:
        HealthClient(net["url"]).put_record(dr, one_char_changed(net["alice"]), b'{"resourceType": "Observation", '
                                            b'"status": "final", "code": {"text": "x"}}')
    assert err.value.code == "bad_id" and "not a MedLedger identity id" in err.value.message
