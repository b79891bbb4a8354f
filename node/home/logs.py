"""Logging of a node: one event per line, human-readable (`text`) or JSON (`json`), redacted.

`setup_logging(level, fmt)` replaces the root logger's handlers with one stderr handler whose
filter renders each event's message (and traceback) once and passes it through `redact`:

- the exact hex and base64 forms of every secret registered with `register_secret` (the node's
  seed, the research secret) become ``[redacted secret]``;
- any run of 64 or more hex digits (a seed, a signature, an encoded transaction or request)
  becomes ``[redacted hex:N]`` (ids and hashes are logged by their 16-digit prefix);
- any run of 40 or more base64 characters mixing upper case, lower case and digits becomes
  ``[redacted base64:N]``;
- a `bytes` repr longer than 32 characters becomes ``[redacted bytes]``;
- a message that looks like a FHIR resource (it names ``resourceType``) is dropped whole;
- every message is cut at `MAX_MESSAGE_CHARS`.

The text format escapes newlines so that a traceback stays on its event's line; the JSON format
writes one object per line with the fields ``ts``, ``level``, ``logger``, ``msg`` and, for an
exception, ``exc``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import time
from types import TracebackType
from typing import TextIO

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_MESSAGE_CHARS = 4000
MAX_EXC_CHARS = 16000
MAX_SECRETS = 64

_secret_forms: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None

_HEX = re.compile(r"[0-9a-fA-F]{64,}")
_B64 = re.compile(r"[A-Za-z0-9+/_-]{40,}={0,2}")
_BYTES_REPR = re.compile(r"""b(?:'(?:[^'\\]|\\.){32,}'|"(?:[^"\\]|\\.){32,}")""")
_FHIR = re.compile(r"resourceType", re.IGNORECASE)


def _secret_forms_of(raw: bytes) -> set[str]:
    forms = {raw.hex(), raw.hex().upper()}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        text = enc(raw).decode()
        forms.update({text, text.rstrip("=")})
    return {f for f in forms if len(f) >= 16}


def register_secret(raw: bytes) -> None:
    """Never log `raw` (at least 8 bytes) in hex or base64, whatever the pattern rules say."""
    global _secret_pattern
    if len(raw) < 8 or len(_secret_forms) >= MAX_SECRETS * 6:
        return
    _secret_forms.update(_secret_forms_of(raw))
    ordered = sorted(_secret_forms, key=len, reverse=True)
    _secret_pattern = re.compile("|".join(re.escape(f) for f in ordered))


def clear_secrets() -> None:
    """Forget the registered secrets (tests)."""
    global _secret_pattern
    _secret_forms.clear()
    _secret_pattern = None


def _b64_replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    if any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text):
        return f"[redacted base64:{len(text)}]"
    return text


def redact(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` without secrets, long hex or base64, bytes reprs or FHIR resources, cut at `limit`."""
    if _FHIR.search(text):
        return "[redacted: the message looked like a health record]"
    if _secret_pattern is not None:
        text = _secret_pattern.sub("[redacted secret]", text)
    text = _BYTES_REPR.sub("[redacted bytes]", text)
    text = _HEX.sub(lambda m: f"[redacted hex:{len(m.group(0))}]", text)
    text = _B64.sub(_b64_replacement, text)
    if len(text) > limit:
        text = text[:limit] + f"... [cut at {limit} characters]"
    return text


class RedactFilter(logging.Filter):
    """Renders each record's message and traceback once, redacted, so no formatter sees raw args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_medledger_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string in a log call must not lose the event
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, MAX_EXC_CHARS)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info, MAX_EXC_CHARS)
        record._medledger_redacted = True
        return True


def _timestamp(record: logging.LogRecord) -> str:
    ms = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{ms:03d}Z"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO    medledger.node: message`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_text:
            line += f" | {record.exc_text}"
        if record.stack_info:
            line += f" | {record.stack_info}"
        return _one_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, str] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time of the event (it may be replaced)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def make_handler(fmt: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing redacted events as `fmt` ("text" or "json") to `stream` (default stderr)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler: logging.Handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler._medledger = True  # type: ignore[attr-defined]  # a mark on a stdlib handler: setup_logging removes only ours
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def setup_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every logger (and Python warnings, and uncaught exceptions) through one redacting handler."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_medledger", False):  # ours from an earlier call (others, e.g. pytest's, stay)
            root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        logging.getLogger("medledger").critical("uncaught exception", exc_info=(kind, exc, tb))

    sys.excepthook = excepthook
