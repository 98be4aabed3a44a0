"""No secret value in any log line, error body or CLI output of the security tests.

Every value a test creates through the `secret_value` fixture is tracked; a handler on the root
logger (DEBUG, propagating records of every logger) and the API client's response hook collect
what the suite produced. After each test, everything collected so far is searched for every
value tracked so far, so a value created in one test and leaked in a later one is caught too.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
from collections.abc import Iterator

import pytest

VALUES: set[str] = set()
CORPUS: list[tuple[str, str]] = []  # (where, text)


class _Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a broken record is still searched by its raw parts
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        CORPUS.append((f"log:{record.name}", text))


def track(value: str) -> str:
    """Remember a secret value; returns it."""
    VALUES.add(value)
    return value


def collect(where: str, text: str) -> None:
    """Add output to search (an HTTP error body, /api/config, CLI stderr …)."""
    CORPUS.append((where, text))


def new_secret(prefix: str = "sv") -> str:
    """A fresh, tracked, unguessable value."""
    return track(f"{prefix}-{pysecrets.token_hex(16)}")


def find_leaks() -> list[tuple[str, str]]:
    """(where, value) for every tracked value found in the collected output."""
    return [(w, v) for w, text in CORPUS for v in VALUES if v in text]


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Collect log records during the test, then check the whole corpus for tracked values."""
    h = _Collect(level=logging.DEBUG)
    h.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root, ours = logging.getLogger(), logging.getLogger("agentgate")
    old = root.level, ours.level
    root.addHandler(h)
    # every record of ours, and INFO and up of libraries (botocore's DEBUG is per byte sent)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(h)
        root.setLevel(old[0])
        ours.setLevel(old[1])
    leaks = find_leaks()
    assert not leaks, f"secret values leaked into: {sorted({w for w, _ in leaks})}"
