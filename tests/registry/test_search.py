"""Template search: tenant and capability filters, BM25 ranking, the optional embeddings."""

from __future__ import annotations

import pytest

from agentgate.errors import Invalid
from agentgate.registry.search import (
    BM25,
    SearchDoc,
    SearchIndex,
    embeddings_available,
    tokenize,
)

DOCS = [
    SearchDoc("summarizer@1.0.0", "acme", "Summarises long documents into abstracts", ("text",)),
    SearchDoc("translator@2.1.0", "acme", "Translates documents between languages", ("text",)),
    SearchDoc("ocr@0.3.0", "acme", "Reads text from scanned images", ("vision", "text")),
    SearchDoc("coder@1.0.0", "acme", "Writes and reviews code in many languages", ("code",)),
    SearchDoc("summarizer@9.9.9", "other", "Summarises everything, other tenant", ("text",)),
]


def index(backend: str = "bm25") -> SearchIndex:
    idx = SearchIndex(backend)  # type: ignore[arg-type]
    for d in DOCS:
        idx.add(d)
    return idx


def test_tokenize() -> None:
    assert tokenize("Summarises long Documents; class") == [
        "summarise",
        "long",
        "document",
        "class",
    ]


def test_bm25_ranks_the_relevant_template_first() -> None:
    hits = index().search("acme", "summarize long documents")
    assert hits[0].key == "summarizer@1.0.0"
    assert hits[0].score > hits[1].score > 0
    assert {h.key for h in hits} == {"summarizer@1.0.0", "translator@2.1.0"}


def test_tenant_isolation() -> None:
    keys = {h.key for h in index().search("acme", "summarises")}
    assert "summarizer@9.9.9" not in keys
    assert [h.key for h in index().search("other", "summarises")] == ["summarizer@9.9.9"]
    assert index().search("nobody", "summarises") == []


def test_capability_filter() -> None:
    idx = index()
    assert [h.key for h in idx.search("acme", "text", capabilities=["vision"])] == ["ocr@0.3.0"]
    listed = idx.search("acme", capabilities=["text"])
    assert [h.key for h in listed] == ["ocr@0.3.0", "summarizer@1.0.0", "translator@2.1.0"]
    assert idx.search("acme", "languages", capabilities=["code"])[0].key == "coder@1.0.0"


def test_rare_terms_weigh_more_and_remove_works() -> None:
    idx = index()
    # "languages" occurs in two docs, "code" in one: a doc with the rare term wins.
    hits = idx.search("acme", "languages code")
    assert hits[0].key == "coder@1.0.0"
    idx.remove("acme", "coder@1.0.0")
    assert [h.key for h in idx.search("acme", "languages code")] == ["translator@2.1.0"]
    idx.remove("acme", "missing")  # no error
    assert len(idx) == len(DOCS) - 1


def test_bm25_reindex_replaces() -> None:
    bm = BM25()
    bm.add(SearchDoc("a", "t", "alpha"))
    bm.add(SearchDoc("a", "t", "beta"))
    assert bm.scores("alpha", ["a"]) == {}
    assert bm.scores("beta", ["a"])["a"] > 0


def test_unknown_backend() -> None:
    with pytest.raises(Invalid) as info:
        SearchIndex("fuzzy")  # type: ignore[arg-type]
    assert info.value.path == "$.search.backend"


@pytest.mark.skipif(embeddings_available(), reason="the embeddings extra is installed")
def test_embeddings_backend_without_extra_is_a_clear_error() -> None:
    with pytest.raises(Invalid, match=r"agentgate\[embeddings\]"):
        SearchIndex("embeddings")


@pytest.mark.skipif(not embeddings_available(), reason="agentgate[embeddings] not installed")
def test_embeddings_backend_finds_paraphrases() -> None:
    idx = index("embeddings")
    hits = idx.search("acme", "condense a lengthy report into a brief overview")
    assert hits[0].key == "summarizer@1.0.0"
    assert all(h.key != "summarizer@9.9.9" for h in hits)
