"""RFC 8785 canonicalisation (the RFC's own examples) and content digests."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentgate.errors import Invalid
from agentgate.registry.digest import canonical_json, digest, digest_hex, parse_digest

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical ECMAScript form.
NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), NUMBERS)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000"])
def test_rfc8785_nan_and_infinity_refused(bits: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(Invalid, match="RFC 8785"):
        canonical_json(value)


def test_rfc8785_section_3_2_2_example() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode()


def test_rfc8785_section_3_2_3_utf16_key_order() -> None:
    source = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet'
        ' With Dagesh", "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080":'
        ' "Control", "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    values = [v for v in json.loads(canonical_json(json.loads(source))).values()]
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_integers_a_double_holds_exactly_are_numbers() -> None:
    assert (
        canonical_json([2**53, -(2**53), 10**21]) == b"[9007199254740992,-9007199254740992,1e+21]"
    )
    assert digest({"n": 2**53}) == digest({"n": float(2**53)})


def test_digest_format_and_value() -> None:
    doc = {"b": 1, "a": [True, None, "x"]}
    canon = b'{"a":[true,null,"x"],"b":1}'
    assert canonical_json(doc) == canon
    assert digest(doc) == "sha256:" + hashlib.sha256(canon).hexdigest()
    assert parse_digest(digest(doc)) == digest_hex(doc)


def test_digest_ignores_member_order_and_number_spelling() -> None:
    a = json.loads('{"x": 1.0, "y": {"q": 2, "p": 1E2}}')
    b = json.loads('{"y": {"p": 100, "q": 2.00}, "x": 1}')
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "x": 2})


@pytest.mark.parametrize(
    "bad",
    [{"n": 2**53 + 1}, {"n": 10**400}, {"s": "\ud800"}, {1: "non-string key"}, {"o": object()}],
    ids=["inexact-int", "huge-int", "lone-surrogate", "int-key", "object"],
)
def test_uncanonicalisable_documents_are_invalid(bad: object) -> None:
    with pytest.raises(Invalid):
        digest(bad)


@pytest.mark.parametrize("bad", ["sha256:ABC", "sha512:" + "0" * 64, "0" * 64, 42])
def test_parse_digest_rejects(bad: object) -> None:
    with pytest.raises(Invalid) as info:
        parse_digest(bad, "$.parent")  # type: ignore[arg-type]
    assert info.value.path == "$.parent"


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=["Cs"])), children)
    ),
    max_leaves=12,
)


@given(_json)
def test_canonical_form_is_a_fixed_point(doc: object) -> None:
    canon = canonical_json(doc)
    assert canonical_json(json.loads(canon)) == canon
