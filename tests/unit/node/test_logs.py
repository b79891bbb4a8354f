"""The log filter: secrets, long hex/base64, bytes reprs and FHIR text never reach a log line;
each event is one line, and the JSON format is one parseable object per line."""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest

from node.core.crypto import Identity
from node.home.logs import clear_secrets, make_handler, redact, register_secret, setup_logging


@pytest.fixture(autouse=True)
def _fresh_secrets():
    clear_secrets()
    yield
    clear_secrets()


def emit(fmt: str, msg: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    logger = logging.Logger(f"test.logs.{fmt}", logging.DEBUG)  # outside the hierarchy: only our handler
    handler = make_handler(fmt, stream)
    logger.addHandler(handler)
    try:
        if exc is not None:
            try:
                raise exc
            except BaseException:
                logger.exception(msg, *args)
        else:
            logger.info(msg, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_registered_secret_is_redacted_in_every_encoding():
    seed = Identity.from_seed(b"\x42" * 32).seed
    register_secret(seed)
    for form in (seed.hex(), seed.hex().upper(), base64.b64encode(seed).decode(),
                 base64.urlsafe_b64encode(seed).decode().rstrip("=")):
        out = redact(f"key={form}!")
        assert form not in out and "[redacted" in out, out


def test_short_registered_secret_within_text_is_redacted():
    secret = bytes(range(8, 24))  # 16 bytes: shorter than the generic hex rule
    register_secret(secret)
    assert secret.hex() not in redact(f"secret {secret.hex()} end")


def test_long_hex_and_base64_are_redacted_but_short_ids_and_paths_stay():
    sig = bytes(range(64))
    assert sig.hex() not in redact(f"sig {sig.hex()}")
    assert "[redacted hex:128]" in redact(f"sig {sig.hex()}")
    b64 = base64.b64encode(bytes(range(100, 160))).decode()
    assert b64 not in redact(f"blob {b64}")
    assert redact("peer 0123456789abcdef connected") == "peer 0123456789abcdef connected"
    path = "/var/lib/medledger/node0/data/chain/some_long_directory_name_here"
    assert redact(f"cannot open {path}") == f"cannot open {path}"


def test_bytes_repr_and_fhir_text_are_redacted():
    rendered = repr(bytes(range(200, 240)))
    assert "\\x" not in redact(f"evidence {rendered}")
    fhir = json.dumps({"resourceType": "Observation", "note": [{"text": "MARKER-123"}]})
    out = redact(f"bad record {fhir}")
    assert "MARKER-123" not in out and "Observation" not in out


def test_messages_are_bounded():
    assert len(redact("x " * 10_000)) < 4100


def test_text_format_is_one_line_even_with_a_traceback():
    out = emit("text", "failed on %s\nsecond line", "req")
    assert out.count("\n") == 1 and "failed on req\\nsecond line" in out and " INFO " in out
    out = emit("text", "boom", exc=ValueError("line one\nline two"))
    assert out.count("\n") == 1 and "ValueError" in out and "ERROR" in out


def test_json_format_one_object_per_line_with_redacted_args_and_traceback():
    seed = Identity.from_seed(b"\x07" * 32).seed
    register_secret(seed)
    out = emit("json", "loaded %s", seed.hex(), exc=RuntimeError(f"seed was {seed.hex()}"))
    lines = out.splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert set(doc) == {"ts", "level", "logger", "msg", "exc"}
    assert doc["level"] == "error" and doc["logger"] == "test.logs.json"
    assert seed.hex() not in out and "RuntimeError" in doc["exc"]


def test_unformattable_arguments_do_not_lose_the_event():
    out = emit("json", "two %s %s", "only-one")
    assert json.loads(out)["msg"].startswith("'two %s %s'")


def test_setup_logging_refuses_unknown_values():
    with pytest.raises(ValueError, match="log format"):
        make_handler("xml")
    with pytest.raises(ValueError, match="log level"):
        setup_logging("loud", "text")


def test_a_process_logs_only_json_lines_even_for_warnings_and_crashes():
    import subprocess
    import sys
    from pathlib import Path

    seed = Identity.from_seed(b"\x09" * 32).seed
    program = (
        "import logging, warnings\n"
        "from node.home.logs import setup_logging, register_secret\n"
        "setup_logging('debug', 'json')\n"
        f"register_secret(bytes.fromhex('{seed.hex()}'))\n"
        "warnings.warn('a python warning')\n"
        "logging.getLogger('medledger.test').debug('hello %d', 5)\n"
        f"raise RuntimeError('crashed holding {seed.hex()}')\n"
    )
    r = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                       cwd=str(Path(__file__).resolve().parents[3]))
    assert r.returncode == 1 and r.stdout == ""
    docs = [json.loads(line) for line in r.stderr.splitlines()]
    assert [d["logger"] for d in docs] == ["py.warnings", "medledger.test", "medledger"]
    assert docs[-1]["level"] == "critical" and "RuntimeError" in docs[-1]["exc"]
    assert seed.hex() not in r.stderr
