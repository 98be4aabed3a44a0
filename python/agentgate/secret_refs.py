"""`${secret:NAME}` references in config values (upstream headers, agent environments).

Neutral module: the config loader validates references with it and the control plane's
`security.secrets` resolves them; it imports nothing of either plane. `$${` writes a literal
`${`. A secret name is 1-128 characters of letters, digits and `_ . - /`, starting with a
letter or digit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["NAME_PATTERN", "check_template", "references", "substitute"]

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}"
_REF = re.compile(r"\$\$\{|\$\{secret:(" + NAME_PATTERN + r")\}|\$\{")


def check_template(text: str) -> list[str]:
    """The secret names `text` refers to; ValueError for a malformed `${…}`."""
    names: list[str] = []
    for m in _REF.finditer(text):
        tok = m.group(0)
        if tok == "$${":
            continue
        if m.group(1) is None:
            end = text.find("}", m.start())
            bad = text[m.start() : end + 1] if end >= 0 else text[m.start() :]
            raise ValueError(
                f"malformed reference {bad[:60]!r}: use ${{secret:NAME}} (NAME: letters, digits, "
                "_ . - /) or $${ for a literal"
            )
        names.append(m.group(1))
    return names


def references(text: str) -> list[str]:
    """The secret names `text` refers to (empty when it has none or is malformed)."""
    try:
        return check_template(text)
    except ValueError:
        return []


def substitute(text: str, value_of: Callable[[str], str]) -> str:
    """`text` with each `${secret:NAME}` replaced by `value_of(NAME)` and `$${` by `${`."""
    check_template(text)

    def repl(m: re.Match[str]) -> str:
        return "${" if m.group(0) == "$${" else value_of(m.group(1))

    return _REF.sub(repl, text)
