"""Secrets: write-only values, encrypted at rest, injected only where they are used.

    svc = SecretService(store, kek)
    await svc.put(tenant_id, "openai", "sk-…", cls="api_key")
    env = await svc.resolve_env(tenant_id, {"OPENAI_API_KEY": "${secret:openai}"})
    headers = await svc.resolve_headers(tenant_id, {"Authorization": "Bearer ${secret:openai}"})

Values leave this module only through `resolve_env` / `resolve_headers` / `valid_values`
(the runtime starting an agent process, the data plane building an upstream request, a verifier
checking a presented token). The API returns metadata only. Errors name the secret, never a
value. Each value version is sealed under its own data key with associated data
(tenant, name, version), see `security.envelope`.
"""

from __future__ import annotations

import builtins
import re
import secrets as pysecrets
from collections.abc import Mapping
from dataclasses import dataclass

from agentgate.errors import Invalid, NotFound
from agentgate.secret_refs import NAME_PATTERN, check_template, substitute
from agentgate.security.envelope import Sealed, aad, open_sealed, seal
from agentgate.security.keys import Kek
from agentgate.store import Store
from agentgate.store.secrets import SecretRecord, SecretRepo

__all__ = [
    "DEFAULT_CLASSES",
    "MAX_VALUE",
    "SecretClass",
    "SecretService",
    "resolve_env",
    "resolve_headers",
]

DAY = 86400.0
MAX_VALUE = 64 * 1024
_NAME = re.compile(f"^{NAME_PATTERN}$")


@dataclass(frozen=True, slots=True)
class SecretClass:
    """A rotation schedule: every `rotate_every` seconds (None: never), old value valid for
    `overlap`; `generate` makes agentgate produce the next value itself (else a reminder)."""

    rotate_every: float | None = None
    overlap: float = 0.0
    generate: bool = False


DEFAULT_CLASSES: dict[str, SecretClass] = {
    "generic": SecretClass(),
    # upstream provider keys: due every 30 days, the operator supplies the new value
    "api_key": SecretClass(rotate_every=30 * DAY, overlap=DAY),
    # tokens agentgate may mint itself (shared secrets between agents and their callers)
    "token": SecretClass(rotate_every=30 * DAY, overlap=DAY, generate=True),
}


def _ad(tenant_id: str, name: str, version: int) -> bytes:
    return aad("secret", tenant_id, name, str(version))


def check_name(name: str) -> str:
    """The name if valid, else Invalid."""
    if not _NAME.match(name):
        raise Invalid(
            "secret name: 1-128 of letters, digits, _ . - /, starting with a letter or digit",
            "$.name",
        )
    return name


class SecretService:
    """Create, rotate, delete and resolve secrets of any tenant on one store and KEK."""

    def __init__(
        self, store: Store, kek: Kek, classes: Mapping[str, SecretClass] | None = None
    ) -> None:
        self.store = store
        self.kek = kek
        self.classes = dict(DEFAULT_CLASSES if classes is None else classes)

    def repo(self, tenant_id: str) -> SecretRepo:
        """The tenant's secret repository."""
        return SecretRepo(self.store.db, tenant_id, self.store.clock)

    def secret_class(self, cls: str) -> SecretClass:
        """The rotation schedule of a class (Invalid when unknown)."""
        c = self.classes.get(cls)
        if c is None:
            raise Invalid(
                f"unknown secret class {cls!r} (known: {sorted(self.classes)})", "$.class"
            )
        return c

    @staticmethod
    def _value(value: str) -> bytes:
        raw = value.encode()
        if not raw:
            raise Invalid("value must not be empty", "$.value")
        if len(raw) > MAX_VALUE:
            raise Invalid(f"value larger than {MAX_VALUE} bytes", "$.value")
        return raw

    async def put(
        self,
        tenant_id: str,
        name: str,
        value: str,
        *,
        cls: str = "generic",
        description: str = "",
        rotate_every: float | None = None,
        overlap: float | None = None,
    ) -> SecretRecord:
        """Create a secret (Conflict when the name exists: rotate it instead)."""
        check_name(name)
        c = self.secret_class(cls)
        s = await seal(self.kek, self._value(value), _ad(tenant_id, name, 1))
        return await self.repo(tenant_id).create(
            name,
            cls=cls,
            description=description,
            rotate_every=c.rotate_every if rotate_every is None else rotate_every,
            overlap=c.overlap if overlap is None else overlap,
            wrapped_key=s.wrapped_key,
            kek_version=s.kek_version,
            nonce=s.nonce,
            ciphertext=s.ciphertext,
        )

    async def rotate(self, tenant_id: str, name: str, value: str | None = None) -> SecretRecord:
        """A new version (given, or generated for classes that generate); the old one stays
        valid for the secret's overlap window."""
        repo = self.repo(tenant_id)
        cur = await repo.get(name)
        if value is None:
            if not self.secret_class(cur.cls).generate:
                raise Invalid(
                    f"secrets of class {cur.cls!r} are not generated: give the new value", "$.value"
                )
            value = pysecrets.token_urlsafe(32)
        s = await seal(self.kek, self._value(value), _ad(tenant_id, name, cur.version + 1))
        return await repo.add_version(
            name,
            expected_version=cur.version,
            wrapped_key=s.wrapped_key,
            kek_version=s.kek_version,
            nonce=s.nonce,
            ciphertext=s.ciphertext,
        )

    async def get(self, tenant_id: str, name: str) -> SecretRecord:
        """Metadata of one secret."""
        return await self.repo(tenant_id).get(name)

    async def list(self, tenant_id: str) -> builtins.list[SecretRecord]:
        """Metadata of the tenant's secrets."""
        return await self.repo(tenant_id).list()

    async def delete(self, tenant_id: str, name: str) -> None:
        """Delete a secret with all its versions."""
        await self.repo(tenant_id).delete(name)

    async def valid_values(self, tenant_id: str, name: str) -> builtins.list[str]:
        """Every value valid now, current first (verifiers accept any during an overlap)."""
        rows = await self.repo(tenant_id).versions(name, self.store.clock())
        out = []
        for r in rows:
            sealed = Sealed(r.wrapped_key, r.kek_version, r.nonce, r.ciphertext)
            out.append(
                (await open_sealed(self.kek, sealed, _ad(tenant_id, name, r.version))).decode()
            )
        return out

    async def value(self, tenant_id: str, name: str) -> str:
        """The current value (for injection only: never return it from an API)."""
        rows = await self.repo(tenant_id).versions(name, self.store.clock())
        r = rows[0]
        sealed = Sealed(r.wrapped_key, r.kek_version, r.nonce, r.ciphertext)
        return (await open_sealed(self.kek, sealed, _ad(tenant_id, name, r.version))).decode()

    async def _resolve(
        self, tenant_id: str, mapping: Mapping[str, str], what: str
    ) -> dict[str, str]:
        names: dict[str, list[str]] = {}
        for key, text in mapping.items():
            try:
                for n in check_template(text):
                    names.setdefault(n, []).append(key)
            except ValueError as e:
                raise Invalid(f"{what} {key}: {e}", f"$.{key}") from None
        values: dict[str, str] = {}
        for n, users in names.items():
            try:
                values[n] = await self.value(tenant_id, n)
            except NotFound:
                raise NotFound(
                    f"secret {n!r} (used by {what} {', '.join(users)}) not found"
                ) from None
        return {k: substitute(v, values.__getitem__) for k, v in mapping.items()}

    async def resolve_env(self, tenant_id: str, mapping: Mapping[str, str]) -> dict[str, str]:
        """Environment for an agent process: each `${secret:NAME}` replaced by its value."""
        return await self._resolve(tenant_id, mapping, "environment variable")

    async def resolve_headers(self, tenant_id: str, headers: Mapping[str, str]) -> dict[str, str]:
        """Upstream request headers with `${secret:NAME}` replaced (the data plane's hook)."""
        return await self._resolve(tenant_id, headers, "header")


async def resolve_env(
    service: SecretService, tenant_id: str, mapping: Mapping[str, str]
) -> dict[str, str]:
    """`service.resolve_env` as a function (what the runtime calls at agent start)."""
    return await service.resolve_env(tenant_id, mapping)


async def resolve_headers(
    service: SecretService, tenant_id: str, headers: Mapping[str, str]
) -> dict[str, str]:
    """`service.resolve_headers` as a function (what the data plane calls per snapshot)."""
    return await service.resolve_headers(tenant_id, headers)
