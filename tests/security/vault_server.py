"""A small HTTP server implementing the Vault transit endpoints agentgate uses, as documented.

Vault cannot run in this sandbox, so the client is tested against this server: a real aiohttp
listener on port 0 with a real AES-256-GCM key ring per key name. It checks `X-Vault-Token`,
answers errors as Vault does (`{"errors": [...]}`), refuses decryption below
`min_decryption_version`, and formats ciphertexts as `vault:v<n>:<base64(nonce|ct)>`.
"""

from __future__ import annotations

import base64
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@dataclass
class _Key:
    versions: dict[int, bytes] = field(default_factory=dict)
    created: dict[int, int] = field(default_factory=dict)
    min_decryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def add(self) -> None:
        v = len(self.versions) + 1
        self.versions[v] = AESGCM.generate_key(bit_length=256)
        self.created[v] = int(time.time())


class TransitServer:
    """The fake-free transit engine: real crypto, real HTTP, the documented request shapes."""

    def __init__(self, token: str, mount: str = "transit") -> None:
        self.token = token
        self.mount = mount
        self.keys: dict[str, _Key] = {}
        self.calls: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _err(self, status: int, msg: str) -> web.Response:
        return web.json_response({"errors": [msg]}, status=status)

    def _key(self, name: str, create: bool = False) -> _Key | None:
        k = self.keys.get(name)
        if k is None and create:
            k = self.keys[name] = _Key()
            k.add()
        return k

    def _encrypt(self, k: _Key, plaintext: bytes) -> str:
        nonce = os.urandom(12)
        ct = AESGCM(k.versions[k.latest]).encrypt(nonce, plaintext, None)
        return f"vault:v{k.latest}:{base64.b64encode(nonce + ct).decode()}"

    def _decrypt(self, k: _Key, ciphertext: str) -> bytes:
        m = re.match(r"^vault:v(\d+):(.+)$", ciphertext)
        if m is None:
            raise ValueError("invalid ciphertext: no prefix")
        v = int(m.group(1))
        if v < k.min_decryption_version:
            raise ValueError("cannot decrypt: ciphertext version is disallowed by policy (too old)")
        if v not in k.versions:
            raise ValueError("invalid key version")
        raw = base64.b64decode(m.group(2))
        try:
            return AESGCM(k.versions[v]).decrypt(raw[:12], raw[12:], None)
        except InvalidTag:
            raise ValueError("cipher: message authentication failed") from None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("X-Vault-Token") != self.token:
            return self._err(403, "permission denied")
        tail = request.match_info["tail"]
        self.calls.append(f"{request.method} {tail}")
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        parts = tail.split("/")
        try:
            if request.method == "POST" and parts[0] == "encrypt":
                k = self._key(parts[1], create=True)
                assert k is not None
                ct = self._encrypt(k, base64.b64decode(body["plaintext"]))
                return web.json_response({"data": {"ciphertext": ct, "key_version": k.latest}})
            k = self._key(parts[1])
            if k is None:
                return self._err(400 if parts[0] != "keys" else 404, "encryption key not found")
            if request.method == "POST" and parts[0] == "decrypt":
                pt = self._decrypt(k, body["ciphertext"])
                return web.json_response({"data": {"plaintext": base64.b64encode(pt).decode()}})
            if request.method == "POST" and parts[0] == "rewrap":
                ct = self._encrypt(k, self._decrypt(k, body["ciphertext"]))
                return web.json_response({"data": {"ciphertext": ct, "key_version": k.latest}})
            if parts[0] == "keys" and len(parts) == 3 and parts[2] == "rotate":
                k.add()
                return web.Response(status=204)
            if parts[0] == "keys" and len(parts) == 3 and parts[2] == "config":
                mdv = int(body["min_decryption_version"])
                if not 1 <= mdv <= k.latest:
                    return self._err(400, "min decryption version out of range")
                k.min_decryption_version = mdv
                return web.Response(status=204)
            if request.method == "GET" and parts[0] == "keys" and len(parts) == 2:
                return web.json_response(
                    {
                        "data": {
                            "name": parts[1],
                            "type": "aes256-gcm96",
                            "latest_version": k.latest,
                            "min_decryption_version": k.min_decryption_version,
                            "min_encryption_version": 0,
                            "keys": {str(v): t for v, t in k.created.items()},
                        }
                    }
                )
        except (ValueError, KeyError) as e:
            return self._err(400, str(e))
        return self._err(405, "unsupported path")

    async def start(self) -> str:
        """Listen on 127.0.0.1, port 0; returns the address (VAULT_ADDR)."""
        app = web.Application()
        app.router.add_route("*", f"/v1/{self.mount}/{{tail:.*}}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Close the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
