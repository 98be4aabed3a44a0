"""HashiCorp Vault transit engine as the KEK provider (`AGENTGATE_KMS=vault`).

Written against Vault's documented transit HTTP API (`/v1/<mount>/…`, `X-Vault-Token`):

| call | endpoint |
|---|---|
| wrap | `POST encrypt/:name` `{plaintext}` → `data.ciphertext` (`vault:v<n>:…`) |
| unwrap | `POST decrypt/:name` `{ciphertext}` → `data.plaintext` |
| rewrap | `POST rewrap/:name` `{ciphertext}` → `data.ciphertext` under the latest version |
| rotate | `POST keys/:name/rotate` |
| status | `GET keys/:name` → `data.latest_version`, `data.min_decryption_version` |
| retire | `POST keys/:name/config` `{min_decryption_version}` |

Data keys travel base64-encoded as Vault requires; the associated data of our envelope already
binds each value to its row, so the wrap itself uses none (transit's `associated_data` is not
accepted by `rewrap`). Configuration: `VAULT_ADDR`, `VAULT_TOKEN`, optional `VAULT_NAMESPACE`,
`AGENTGATE_VAULT_TRANSIT_MOUNT` (default `transit`), `AGENTGATE_VAULT_TRANSIT_KEY` (default
`agentgate`). Vault cannot run in this project's sandbox: the tests run this client against a
small HTTP server that implements these documented endpoints.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from agentgate.security.keys import KekError, KekStatus

__all__ = ["VaultTransitKek"]

_VERSION = re.compile(r"^vault:v([0-9]+):")


class VaultTransitKek:
    """A `Kek` backed by one named transit key."""

    provider = "vault"

    def __init__(
        self,
        addr: str,
        token: str,
        *,
        key: str = "agentgate",
        mount: str = "transit",
        namespace: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._base = f"{addr.rstrip('/')}/v1/{mount.strip('/')}"
        self._key = key
        self._headers = {"X-Vault-Token": token}
        if namespace:
            self._headers["X-Vault-Namespace"] = namespace
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"VaultTransitKek({self._base}, key={self._key})"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> VaultTransitKek:
        """Configured from `VAULT_ADDR`, `VAULT_TOKEN` and the `AGENTGATE_VAULT_*` variables."""
        addr, token = env.get("VAULT_ADDR"), env.get("VAULT_TOKEN")
        if not addr or not token:
            raise KekError("AGENTGATE_KMS=vault needs VAULT_ADDR and VAULT_TOKEN")
        return cls(
            addr,
            token,
            key=env.get("AGENTGATE_VAULT_TRANSIT_KEY", "agentgate"),
            mount=env.get("AGENTGATE_VAULT_TRANSIT_MOUNT", "transit"),
            namespace=env.get("VAULT_NAMESPACE"),
        )

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        url = f"{self._base}/{path}"
        try:
            async with self._session.request(method, url, json=body) as r:
                if r.status == 204:
                    return {}
                data = await r.json(content_type=None)
                if r.status >= 400:
                    errs = data.get("errors") if isinstance(data, dict) else None
                    # Vault's error strings name the key and the problem, never the payload
                    raise KekError(f"vault {path.split('/')[0]}: HTTP {r.status}: {errs}")
                return data
        except aiohttp.ClientError as e:
            raise KekError(f"vault unreachable at {self._base}: {type(e).__name__}") from None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def wrap(self, dek: bytes, aad: bytes) -> str:
        """`encrypt/:name` under the latest key version."""
        d = await self._call(
            "POST", f"encrypt/{self._key}", {"plaintext": base64.b64encode(dek).decode()}
        )
        return str(d["data"]["ciphertext"])

    async def unwrap(self, token: str, aad: bytes) -> bytes:
        """`decrypt/:name`; Vault refuses versions below `min_decryption_version`."""
        d = await self._call("POST", f"decrypt/{self._key}", {"ciphertext": token})
        return base64.b64decode(d["data"]["plaintext"])

    async def rewrap(self, token: str, aad: bytes) -> str:
        """`rewrap/:name`: the data key never leaves Vault."""
        d = await self._call("POST", f"rewrap/{self._key}", {"ciphertext": token})
        return str(d["data"]["ciphertext"])

    def version_of(self, token: str) -> int:
        """The `vN` of a `vault:vN:` ciphertext."""
        m = _VERSION.match(token)
        if m is None:
            raise KekError("not a vault transit ciphertext")
        return int(m.group(1))

    async def rotate(self) -> KekStatus:
        """`keys/:name/rotate`."""
        await self._call("POST", f"keys/{self._key}/rotate")
        return await self.status()

    async def set_min_decryption_version(self, version: int) -> KekStatus:
        """`keys/:name/config` with `min_decryption_version`."""
        await self._call("POST", f"keys/{self._key}/config", {"min_decryption_version": version})
        return await self.status()

    async def status(self) -> KekStatus:
        """`GET keys/:name`."""
        d = (await self._call("GET", f"keys/{self._key}"))["data"]
        return KekStatus("vault", int(d["latest_version"]), int(d["min_decryption_version"]))
