"""Semantic Versioning 2.0.0 versions and npm-style ranges.

Versions are parsed strictly (the semver.org grammar, no leading ``v``). Ranges follow
node-semver's default (non-loose, no ``includePrerelease``) semantics: ``^1.2``, ``~1.4.2``,
``>=1 <2``, ``1.x``, ``*``, hyphen ranges ``1.2 - 2.3`` and ``||`` alternatives. A prerelease
version only satisfies a comparator set when some comparator in that set names a prerelease of
the same ``major.minor.patch``, so ``^1.2.3`` never picks ``1.3.0-beta`` by accident.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import total_ordering

__all__ = [
    "InvalidRange",
    "InvalidVersion",
    "Range",
    "Version",
    "compare",
    "max_satisfying",
    "satisfies",
]


class InvalidVersion(ValueError):
    """A string is not a SemVer 2.0.0 version."""


class InvalidRange(ValueError):
    """A string is not a valid version range."""


_MAX_LENGTH = 256

_NUM = r"0|[1-9][0-9]*"
_NONNUM = r"[0-9]*[a-zA-Z-][a-zA-Z0-9-]*"
_PRE_ID = rf"(?:{_NONNUM}|{_NUM})"
_PRE = rf"(?:-({_PRE_ID}(?:\.{_PRE_ID})*))"
_BUILD_ID = r"[a-zA-Z0-9-]+"
_BUILD = rf"(?:\+({_BUILD_ID}(?:\.{_BUILD_ID})*))"
_MAIN = rf"({_NUM})\.({_NUM})\.({_NUM})"
_STRICT = re.compile(rf"^{_MAIN}{_PRE}?{_BUILD}?$", re.ASCII)
# node-semver accepts an optional "v" before a comparator's version.
_FULLPLAIN = rf"v?{_MAIN}{_PRE}?{_BUILD}?"
_GTLT = r"((?:<|>)?=?)"
_XR_ID = rf"{_NUM}|x|X|\*"
_XR_PLAIN = rf"[v=\s]*({_XR_ID})(?:\.({_XR_ID})(?:\.({_XR_ID}){_PRE}?{_BUILD}?)?)?"
_XRANGE = re.compile(rf"^{_GTLT}\s*{_XR_PLAIN}$", re.ASCII)
_TILDE = re.compile(rf"^(?:~>?){_XR_PLAIN}$", re.ASCII)
_CARET = re.compile(rf"^\^{_XR_PLAIN}$", re.ASCII)
_COMPARATOR = re.compile(rf"^{_GTLT}\s*({_FULLPLAIN})$|^$", re.ASCII)
_HYPHEN = re.compile(rf"^\s*({_XR_PLAIN})\s+-\s+({_XR_PLAIN})\s*$", re.ASCII)
_COMPARATOR_TRIM = re.compile(rf"(\s*){_GTLT}\s*({_FULLPLAIN}|{_XR_PLAIN})", re.ASCII)
_TILDE_TRIM = re.compile(r"(\s*)(?:~>?)\s+")
_CARET_TRIM = re.compile(r"(\s*)\^\s+")
_STAR = re.compile(r"(<|>)?=?\s*\*")
_GTE0 = re.compile(r"^\s*>=\s*0\.0\.0\s*$")


def _cmp_ident(a: int | str, b: int | str) -> int:
    # Spec item 11.4: numeric identifiers sort numerically and below alphanumeric ones.
    if isinstance(a, int) and isinstance(b, int):
        return (a > b) - (a < b)
    if isinstance(a, int):
        return -1
    if isinstance(b, int):
        return 1
    return (a > b) - (a < b)


@total_ordering
@dataclass(frozen=True, slots=True, eq=False)
class Version:
    """A SemVer 2.0.0 version; ordering is precedence (build metadata is ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parses a strict SemVer 2.0.0 string, raising `InvalidVersion` naming the input."""
        if not isinstance(text, str):
            raise InvalidVersion(f"version must be a string, got {type(text).__name__}")
        if len(text) > _MAX_LENGTH:
            raise InvalidVersion(f"version is longer than {_MAX_LENGTH} characters")
        m = _STRICT.match(text)
        if m is None:
            raise InvalidVersion(f"invalid semantic version {text!r}")
        return cls._from_groups(m.group(1), m.group(2), m.group(3), m.group(4), m.group(5))

    @classmethod
    def _from_groups(
        cls, major: str, minor: str, patch: str, pre: str | None, build: str | None
    ) -> Version:
        prerelease: tuple[int | str, ...] = ()
        if pre:
            prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split("."))
        return cls(
            int(major),
            int(minor),
            int(patch),
            prerelease,
            tuple(build.split(".")) if build else (),
        )

    def __str__(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            s += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            s += "+" + ".".join(self.build)
        return s

    def __repr__(self) -> str:
        return f"Version({str(self)!r})"

    def compare(self, other: Version) -> int:
        """-1, 0 or 1 by SemVer precedence."""
        a = (self.major, self.minor, self.patch)
        b = (other.major, other.minor, other.patch)
        if a != b:
            return -1 if a < b else 1
        # Spec item 11.3: a version without prerelease outranks any prerelease of it.
        if not self.prerelease or not other.prerelease:
            return (not self.prerelease) - (not other.prerelease)
        for x, y in zip(self.prerelease, other.prerelease, strict=False):
            c = _cmp_ident(x, y)
            if c:
                return c
        la, lb = len(self.prerelease), len(other.prerelease)
        return (la > lb) - (la < lb)

    @property
    def core(self) -> tuple[int, int, int]:
        """The (major, minor, patch) tuple."""
        return (self.major, self.minor, self.patch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self.compare(other) == 0

    def __lt__(self, other: Version) -> bool:
        return self.compare(other) < 0

    def __hash__(self) -> int:
        return hash((self.major, self.minor, self.patch, self.prerelease))


def compare(a: str | Version, b: str | Version) -> int:
    """-1, 0 or 1 comparing two versions by SemVer precedence."""
    va = a if isinstance(a, Version) else Version.parse(a)
    vb = b if isinstance(b, Version) else Version.parse(b)
    return va.compare(vb)


def _is_x(ident: str | None) -> bool:
    return not ident or ident.lower() == "x" or ident == "*"


@dataclass(frozen=True, slots=True)
class _Comparator:
    op: str  # "", "<", "<=", ">", ">="; "" with version None means "any"
    version: Version | None

    def test(self, v: Version) -> bool:
        if self.version is None:
            return True
        c = v.compare(self.version)
        if self.op == "":
            return c == 0
        if self.op == "<":
            return c < 0
        if self.op == "<=":
            return c <= 0
        if self.op == ">":
            return c > 0
        return c >= 0

    def is_null_set(self) -> bool:
        return self.op == "<" and self.version == _NULL_VERSION

    def __str__(self) -> str:
        return "" if self.version is None else f"{self.op}{self.version}"


_NULL_VERSION = Version(0, 0, 0, (0,))


def _hyphen_replace(m: re.Match[str]) -> str:
    frm, f_major, f_minor, f_patch = m.group(1, 2, 3, 4)
    to, t_major, t_minor, t_patch, t_pre = m.group(7, 8, 9, 10, 11)
    if _is_x(f_major):
        lo = ""
    elif _is_x(f_minor):
        lo = f">={f_major}.0.0"
    elif _is_x(f_patch):
        lo = f">={f_major}.{f_minor}.0"
    else:
        lo = f">={frm}"
    if _is_x(t_major):
        hi = ""
    elif _is_x(t_minor):
        hi = f"<{int(t_major) + 1}.0.0-0"
    elif _is_x(t_patch):
        hi = f"<{t_major}.{int(t_minor) + 1}.0-0"
    elif t_pre:
        hi = f"<={t_major}.{t_minor}.{t_patch}-{t_pre}"
    else:
        hi = f"<={to}"
    return f"{lo} {hi}".strip()


def _replace_caret(comp: str) -> str:
    m = _CARET.match(comp)
    if m is None:
        return comp
    major, minor, patch, pre = m.group(1, 2, 3, 4)
    if _is_x(major):
        return ""
    M = int(major)
    if _is_x(minor):
        return f">={M}.0.0 <{M + 1}.0.0-0"
    n = int(minor)
    if _is_x(patch):
        if M == 0:
            return f">={M}.{n}.0 <{M}.{n + 1}.0-0"
        return f">={M}.{n}.0 <{M + 1}.0.0-0"
    p = int(patch)
    lo = f">={M}.{n}.{p}-{pre}" if pre else f">={M}.{n}.{p}"
    if M == 0:
        if n == 0:
            return f"{lo} <{M}.{n}.{p + 1}-0"
        return f"{lo} <{M}.{n + 1}.0-0"
    return f"{lo} <{M + 1}.0.0-0"


def _replace_tilde(comp: str) -> str:
    m = _TILDE.match(comp)
    if m is None:
        return comp
    major, minor, patch, pre = m.group(1, 2, 3, 4)
    if _is_x(major):
        return ""
    M = int(major)
    if _is_x(minor):
        return f">={M}.0.0 <{M + 1}.0.0-0"
    n = int(minor)
    if _is_x(patch):
        return f">={M}.{n}.0 <{M}.{n + 1}.0-0"
    lo = f">={M}.{n}.{patch}-{pre}" if pre else f">={M}.{n}.{patch}"
    return f"{lo} <{M}.{n + 1}.0-0"


def _replace_xrange(comp: str) -> str:
    comp = comp.strip()
    m = _XRANGE.match(comp)
    if m is None:
        return comp
    gtlt, major, minor, patch = m.group(1, 2, 3, 4)
    x_major = _is_x(major)
    x_minor = x_major or _is_x(minor)
    any_x = x_minor or _is_x(patch)
    if gtlt == "=" and any_x:
        gtlt = ""
    if x_major:
        return "<0.0.0-0" if gtlt in (">", "<") else "*"
    if gtlt and any_x:
        M = int(major)
        n = 0 if x_minor else int(minor)
        p = 0
        if gtlt == ">":
            gtlt = ">="
            if x_minor:
                M, n = M + 1, 0
            else:
                n += 1
        elif gtlt == "<=":
            gtlt = "<"
            if x_minor:
                M += 1
            else:
                n += 1
        pr = "-0" if gtlt == "<" else ""
        return f"{gtlt}{M}.{n}.{p}{pr}"
    if x_minor:
        return f">={major}.0.0 <{int(major) + 1}.0.0-0"
    if any_x:
        return f">={major}.{minor}.0 <{major}.{int(minor) + 1}.0-0"
    return comp


def _each(comp: str, fn: Callable[[str], str]) -> str:
    return " ".join(fn(c) for c in comp.strip().split())


def _parse_comparator(text: str, whole: str) -> _Comparator:
    m = _COMPARATOR.match(text)
    if m is None:
        raise InvalidRange(f"invalid comparator {text!r} in range {whole!r}")
    if not m.group(2):
        return _Comparator("", None)
    op = m.group(1) or ""
    if op == "=":
        op = ""
    version = Version._from_groups(m.group(3), m.group(4), m.group(5), m.group(6), m.group(7))
    return _Comparator(op, version)


def _parse_set(text: str, whole: str) -> list[_Comparator]:
    text = _HYPHEN.sub(_hyphen_replace, text)
    text = _COMPARATOR_TRIM.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}", text)
    text = _TILDE_TRIM.sub(lambda m: f"{m.group(1)}~", text)
    text = _CARET_TRIM.sub(lambda m: f"{m.group(1)}^", text)
    parts: list[str] = []
    for token in text.split(" "):
        c = _each(token, _replace_caret)
        c = _each(c, _replace_tilde)
        c = _each(c, _replace_xrange)
        c = _STAR.sub("", c.strip(), count=1)
        parts.append(c)
    comps: dict[str, _Comparator] = {}
    for c in re.split(r"\s+", " ".join(parts)):
        c = _GTE0.sub("", c.strip())
        comp = _parse_comparator(c, whole)
        if comp.is_null_set():
            return [comp]
        comps.setdefault(str(comp), comp)
    if len(comps) > 1:
        comps.pop("", None)
    return list(comps.values())


def _test_set(comps: list[_Comparator], v: Version) -> bool:
    if not all(c.test(v) for c in comps):
        return False
    if v.prerelease:
        # node-semver default: a prerelease only matches when the set names the same tuple.
        return any(
            c.version is not None and c.version.prerelease and c.version.core == v.core
            for c in comps
        )
    return True


class Range:
    """An npm-style version range, parsed once and tested many times."""

    __slots__ = ("_sets", "raw")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidRange(f"range must be a string, got {type(text).__name__}")
        if len(text) > _MAX_LENGTH * 4:
            raise InvalidRange(f"range is longer than {_MAX_LENGTH * 4} characters")
        self.raw = " ".join(text.strip().split())
        sets = [_parse_set(part.strip(), text) for part in self.raw.split("||")]
        sets = [s for s in sets if s]
        if not sets:
            raise InvalidRange(f"invalid range {text!r}")
        if len(sets) > 1:
            non_null = [s for s in sets if not (len(s) == 1 and s[0].is_null_set())]
            sets = non_null or sets[:1]
            for s in sets:
                if len(s) == 1 and s[0].version is None:
                    sets = [s]
                    break
        self._sets: tuple[tuple[_Comparator, ...], ...] = tuple(tuple(s) for s in sets)

    def __repr__(self) -> str:
        return f"Range({self.raw!r})"

    def __str__(self) -> str:
        return "||".join(" ".join(str(c) for c in s) or "*" for s in self._sets)

    def test(self, version: str | Version) -> bool:
        """True when `version` satisfies the range; a non-version string never does."""
        if isinstance(version, str):
            try:
                version = Version.parse(version)
            except InvalidVersion:
                return False
        return any(_test_set(list(s), version) for s in self._sets)

    def __contains__(self, version: object) -> bool:
        return isinstance(version, str | Version) and self.test(version)

    def is_exact(self) -> Version | None:
        """The version when the range is a single exact version (`1.2.3`, `=1.2.3`), else None."""
        if len(self._sets) == 1 and len(self._sets[0]) == 1:
            c = self._sets[0][0]
            if c.op == "" and c.version is not None:
                return c.version
        return None


def satisfies(version: str | Version, range_: str | Range) -> bool:
    """True when `version` is in `range_`; an invalid range raises `InvalidRange`."""
    r = range_ if isinstance(range_, Range) else Range(range_)
    return r.test(version)


def max_satisfying(versions: Iterable[str | Version], range_: str | Range) -> Version | None:
    """The highest version in `versions` that satisfies `range_`, or None."""
    r = range_ if isinstance(range_, Range) else Range(range_)
    best: Version | None = None
    for item in versions:
        if isinstance(item, str):
            try:
                v = Version.parse(item)
            except InvalidVersion:
                continue
        else:
            v = item
        if r.test(v) and (best is None or v > best):
            best = v
    return best
