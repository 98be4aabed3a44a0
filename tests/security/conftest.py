"""Security fixtures: the leak check on every test here, a KEK, a secret service on each backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from leakcheck import new_secret, no_leaks

from agentgate.security.keys import LocalKek, MasterKey
from agentgate.security.secrets import SecretService
from agentgate.store import Store

__all__ = ["no_leaks"]


@pytest.fixture
def master_hex() -> str:
    """A raw 32-byte master key as hex (tracked: it must never be printed either)."""
    from leakcheck import track

    return track(os.urandom(32).hex())


@pytest.fixture
def kek(master_hex: str) -> LocalKek:
    """A local key ring on a random master key."""
    return LocalKek(MasterKey.parse(master_hex), b"salt-for-tests!!")


@pytest_asyncio.fixture
async def secrets_svc(store: Store, kek: LocalKek) -> AsyncIterator[SecretService]:
    """A secret service on the parametrized store backend."""
    yield SecretService(store, kek)


@pytest.fixture
def secret_value() -> object:
    """Factory of fresh tracked secret values."""
    return new_secret


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real S3 server (moto's, from PyPI) on a free port, once per session."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"moto[server] required in CI: {e}", pytrace=False)
        pytest.skip(f"moto[server] not installed: {e}")
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        srv.stop()


@pytest.fixture
def s3_bucket(moto_url: str) -> Iterator[tuple[str, str]]:
    """A fresh bucket on the moto server: (endpoint url, bucket name)."""
    import uuid

    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    name = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=name)
    yield moto_url, name
