"""Template validation (errors name the JSON path), digests and parameter checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentgate.errors import Invalid
from agentgate.registry.digest import digest
from agentgate.registry.template import json_path, parse_template


def doc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "summarizer",
        "version": "1.2.0",
        "description": "Summarises long documents into short abstracts",
        "capabilities": ["summarize", "text"],
        "spec": {
            "kind": "http",
            "endpoints": [{"url": "http://127.0.0.1:9001"}, {"url": "http://127.0.0.1:9002"}],
            "timeouts": {"connect": "500ms", "first_byte": "5s"},
            "retries": {"attempts": 1},
            "max_concurrency": 64,
        },
        "resources": {"cpu": "250m", "memory": "256MiB"},
        "scaling": {"min_replicas": 1, "max_replicas": 4},
        "routes": [{"match": {"path_prefix": "/summarize"}, "priority": "high"}],
        "limits": {"rate_limit": {"rate": "100/s", "burst": 20}},
        "params_schema": {
            "type": "object",
            "required": ["model", "max_words"],
            "properties": {
                "model": {"type": "string", "enum": ["small", "large"]},
                "max_words": {"type": "integer", "minimum": 10},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        },
    }
    base.update(over)
    return base


def test_parse_valid_template() -> None:
    t = parse_template(doc())
    assert t.name == "summarizer" and str(t.version) == "1.2.0" and t.ref == "summarizer@1.2.0"
    assert t.model.resources.cpu == 0.25
    assert t.model.resources.memory == 256 * 1024 * 1024
    assert t.model.spec.timeouts.connect == 0.5
    assert t.model.limits.rate_limit is not None and t.model.limits.rate_limit.rate == 100
    assert t.digest == digest(doc())
    assert "summarize" in t.search_text


def test_digest_is_over_the_document_as_published() -> None:
    a = parse_template(doc())
    reordered = dict(reversed(list(doc().items())))
    assert parse_template(reordered).digest == a.digest
    # Spelling a default explicitly is a different document, hence a different digest.
    assert parse_template(doc(labels={})).digest != a.digest


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d.update(name="Bad Name"), "$.name", "name must be"),
        (lambda d: d.update(version="1.2"), "$.version", "invalid semantic version"),
        (
            lambda d: d["spec"]["endpoints"][1].update(url="ftp://x"),
            "$.spec.endpoints[1].url",
            "http",
        ),
        (lambda d: d["spec"].update(kind="lambda"), "$.spec.kind", "http"),
        (lambda d: d["spec"].update(endpoints=[]), "$.spec.endpoints", "at least one"),
        (lambda d: d["spec"]["timeouts"].update(connect="soon"), "$.spec.timeouts.connect", ""),
        (lambda d: d.update(capabilities=["a", "a"]), "$.capabilities", "unique"),
        (lambda d: d.update(capabilities=["Has Space"]), "$.capabilities", "capability"),
        (lambda d: d["resources"].update(cpu="lots"), "$.resources.cpu", "millicores"),
        (
            lambda d: d.update(scaling={"min_replicas": 5, "max_replicas": 2}),
            "$.scaling",
            "exceeds",
        ),
        (
            lambda d: d["routes"][0].update(match={"path_prefix": "x"}),
            "$.routes[0].match.path_prefix",
            "/",
        ),
        (lambda d: d.update(params_schema={"type": 5}), "$.params_schema", "JSON Schema"),
        (lambda d: d.update(params_schema={"type": "string"}), "$.params_schema", "object"),
        (lambda d: d.update(surprise=1), "$.surprise", "Extra inputs"),
        (lambda d: d.pop("spec"), "$.spec", "required"),
    ],
)
def test_invalid_templates_name_the_path(mutate: Any, path: str, words: str) -> None:
    d = copy.deepcopy(doc())
    mutate(d)
    with pytest.raises(Invalid) as info:
        parse_template(d)
    assert info.value.path == path, info.value.detail
    assert words in info.value.detail
    assert info.value.detail.startswith(path)


@pytest.mark.parametrize("bad", [[], "x", None, {"name": float("nan")}])
def test_non_objects_and_uncanonical_documents(bad: object) -> None:
    with pytest.raises(Invalid):
        parse_template(bad)


def test_validate_params_ok() -> None:
    t = parse_template(doc())
    t.validate_params({"model": "small", "max_words": 100, "tags": ["a"]})


@pytest.mark.parametrize(
    ("params", "path", "words"),
    [
        ({"model": "huge", "max_words": 100}, "$.params.model", "is not one of"),
        ({"model": "small", "max_words": 3}, "$.params.max_words", "minimum"),
        ({"model": "small", "max_words": 30, "tags": ["a", 7]}, "$.params.tags[1]", "string"),
        ({"model": "small"}, "$.params", "'max_words' is a required property"),
        ({"model": "small", "max_words": 30, "x": 1}, "$.params", "Additional properties"),
        ("not an object", "$.params", "object"),
    ],
)
def test_validate_params_errors_name_the_path(params: object, path: str, words: str) -> None:
    t = parse_template(doc())
    with pytest.raises(Invalid) as info:
        t.validate_params(params)
    assert info.value.path == path
    assert words in info.value.detail


def test_json_path_quotes_odd_keys() -> None:
    assert json_path(["a", 0, "b c"]) == '$.a[0]["b c"]'
    assert json_path([], "$.params") == "$.params"
