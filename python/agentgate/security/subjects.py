"""Personal data of data subjects: pseudonyms and per-subject encryption (crypto-shredding).

- `ref(tenant, subject)`: the subject's pseudonym, HMAC-SHA256 under an installation key kept
  wrapped by the KEK. Stores and logs carry the pseudonym, never the subject id.
- `protect(tenant, subject, value)`: the value encrypted under the subject's own AES-256-GCM
  data key, as a JSON object to put into audit details or any other record:
  `{"pii": 1, "subject": <ref>, "ct": <base64 nonce|ciphertext>}`.
- `erase(tenant, subject)` (through `security.privacy`) deletes the subject key: every protected
  value of the subject becomes unreadable for good, while the records holding them (hash-chained
  audit entries) stay byte-for-byte the same, so the chain still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentgate.security.envelope import aad
from agentgate.security.keys import Kek
from agentgate.store import Store
from agentgate.store.privacy import PrivacyRepo

__all__ = ["ERASED", "SubjectVault", "find_protected"]

ERASED = "[erased]"
"""What `reveal` returns for a value whose subject key was destroyed."""

_PSEUDONYM_KEY = "pseudonym"


def find_protected(obj: Any) -> list[dict[str, Any]]:
    """Every protected value object inside a JSON document (depth-first)."""
    out: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        if obj.get("pii") == 1 and isinstance(obj.get("subject"), str) and "ct" in obj:
            out.append(obj)
        else:
            for v in obj.values():
                out.extend(find_protected(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_protected(v))
    return out


class SubjectVault:
    """Pseudonyms and per-subject keys of one store, under one KEK."""

    def __init__(self, store: Store, kek: Kek) -> None:
        self.store = store
        self.kek = kek
        self.repo = PrivacyRepo(store.db, store.clock)
        self._pseudonym: bytes | None = None

    async def _pkey(self) -> bytes:
        if self._pseudonym is None:
            ad = aad("installation-key", _PSEUDONYM_KEY)

            async def make() -> str:
                return await self.kek.wrap(os.urandom(32), ad)

            wrapped = await self.repo.security_key(_PSEUDONYM_KEY, make)
            self._pseudonym = await self.kek.unwrap(wrapped, ad)
        return self._pseudonym

    async def ref(self, tenant_id: str, subject: str) -> str:
        """The subject's pseudonym in this tenant (32 hex digits)."""
        key = await self._pkey()
        msg = aad("subject", tenant_id, subject)
        return hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]

    async def _key(self, tenant_id: str, ref: str, *, create: bool) -> bytes | None:
        ad = aad("subject-key", tenant_id, ref)
        wrapped = await self.repo.subject_key(tenant_id, ref)
        if wrapped is None:
            if not create:
                return None
            wrapped = await self.repo.add_subject_key(
                tenant_id, ref, await self.kek.wrap(AESGCM.generate_key(bit_length=256), ad)
            )
        return await self.kek.unwrap(wrapped, ad)

    async def protect(self, tenant_id: str, subject: str, value: Any) -> dict[str, Any]:
        """`value` (any JSON) encrypted under the subject's key, tagged with its pseudonym."""
        ref = await self.ref(tenant_id, subject)
        key = await self._key(tenant_id, ref, create=True)
        assert key is not None
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, orjson.dumps(value), aad("pii", tenant_id, ref))
        return {"pii": 1, "subject": ref, "ct": base64.b64encode(nonce + ct).decode()}

    async def reveal(self, tenant_id: str, obj: dict[str, Any]) -> Any:
        """The protected value, or `ERASED` once the subject's key is gone."""
        ref = str(obj["subject"])
        key = await self._key(tenant_id, ref, create=False)
        if key is None:
            return ERASED
        raw = base64.b64decode(obj["ct"])
        try:
            return orjson.loads(AESGCM(key).decrypt(raw[:12], raw[12:], aad("pii", tenant_id, ref)))
        except InvalidTag:
            return ERASED

    async def reveal_all(self, tenant_id: str, doc: Any) -> Any:
        """A copy of a JSON document with every protected value revealed."""
        if isinstance(doc, dict):
            if doc.get("pii") == 1 and "ct" in doc:
                return await self.reveal(tenant_id, doc)
            return {k: await self.reveal_all(tenant_id, v) for k, v in doc.items()}
        if isinstance(doc, list):
            return [await self.reveal_all(tenant_id, v) for v in doc]
        return doc
