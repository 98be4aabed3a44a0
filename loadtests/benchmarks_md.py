"""Writes one generated section of BENCHMARKS.md, leaving the rest of the file as it is."""

from __future__ import annotations

import re
from pathlib import Path

BENCH_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def replace_section(key: str, heading: str, body: str, intro: str = "") -> None:
    """Replaces the `<!-- key:begin -->…<!-- key:end -->` block with `body`; a file or block
    that is missing is created, the block under `## heading` (and `intro`) at the end."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{body}\n{end}"
    text = BENCH_MD.read_text() if BENCH_MD.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        lead = f"{intro}\n\n" if intro else ""
        text = f"{text.rstrip()}\n\n## {heading}\n\n{lead}{block}\n"
    BENCH_MD.write_text(text)
