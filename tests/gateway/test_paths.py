"""Path normalisation end to end (issue 8.11): dot-segments and encoded slashes cannot walk
around a route's auth, and `http.merge_slashes` / `http.encoded_slash` do what they say.

Two routes go to one upstream that resolves paths as nginx does: `/public` (no auth) and
`/private` (a key required). Requests are written byte for byte on a socket, because HTTP
client libraries normalise URLs before sending them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from gateway_process import (
    API_KEY,
    API_KEY_HASH,
    Gateway,
    get,
    http_settings,
    raw_request,
    running_gateway,
)
from upstreams import SECRET, Upstream

KEY = f"Authorization: Bearer {API_KEY}"


def config(site: Upstream, echo: Upstream, http: str = "") -> str:
    """Public and private routes to the normalising upstream, `/files` to an echoing one."""
    return f"""
{http}
agents:
  site: {{endpoints: [{{url: "{site.url}"}}], retries: {{attempts: 0}}}}
  echo: {{endpoints: [{{url: "{echo.url}"}}], retries: {{attempts: 0}}}}
routes:
  - {{id: public, match: {{path_prefix: /public}}, agent: site}}
  - {{id: private, match: {{path_prefix: /private}}, agent: site, auth: required}}
  - {{id: files, match: {{path_prefix: /files}}, agent: echo}}
auth:
  api_keys: [{{id: k1, hash: "{API_KEY_HASH}", tenant: acme}}]
"""


@pytest.fixture(scope="module")
def site() -> Iterator[Upstream]:
    up = Upstream("site", normalise=True).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gw(
    site: Upstream, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with running_gateway(config(site, upstream), tmp_path_factory.mktemp("paths")) as g:
        yield g


@pytest.fixture
def config_with(site: Upstream, upstream: Upstream) -> Callable[[str], str]:
    """The module's config with an extra top-level section."""
    return lambda section: config(site, upstream, section)


async def test_the_upstream_serves_the_secret_only_behind_auth(gw: Gateway) -> None:
    r = await raw_request(gw.url, get("/private/echo"))
    assert r.status == 401
    r = await raw_request(gw.url, get("/private/echo", KEY))
    assert r.status == 200 and r.json()["secret"] == SECRET
    r = await raw_request(gw.url, get("/public/echo"))
    assert r.status == 200 and "secret" not in r.json()


BYPASSES = [
    "/public/../private/echo",
    "/public/%2e%2e/private/echo",
    "/public/%2E%2E/private/echo",
    "/public/.%2e/private/echo",
    "/public/./../private/echo",
    "//private/echo",
    "/public%2F..%2Fprivate/echo",
    "/public/..%2Fprivate/echo",
    "/%70ublic/../private/echo",
]


@pytest.mark.parametrize("path", BYPASSES)
async def test_dot_segments_and_encoded_slashes_do_not_bypass_auth(
    gw: Gateway, site: Upstream, path: str
) -> None:
    # straight to the upstream, the path is the private resource: a gateway that matched
    # routes on the raw path would have handed out the secret
    r = await raw_request(site.url, get(path))
    assert r.json()["secret"] == SECRET
    r = await raw_request(gw.url, get(path))
    assert r.status == 401, r.body
    assert r.headers["content-type"] == "application/problem+json"
    assert SECRET.encode() not in r.body
    # with the key, the same path is the private resource, and that is what went upstream
    r = await raw_request(gw.url, get(path, KEY))
    assert r.status == 200
    assert r.json() == {"secret": SECRET, "path": "/private/echo"}


async def test_normalised_path_is_forwarded(gw: Gateway) -> None:
    r = await raw_request(gw.url, get("/files/a/./b/../c//d%2Fe%7Ef?q=%2F..%2F"))
    assert r.status == 200
    echo = r.json()
    # the query is not a path: it goes as it came
    assert echo["raw_path"] == "/files/a/c/d/e~f?q=%2F..%2F"


async def test_dot_segments_never_climb_above_the_root(gw: Gateway) -> None:
    r = await raw_request(gw.url, get("/../../files/x"))
    assert r.status == 200
    assert r.json()["raw_path"] == "/files/x"


async def test_malformed_percent_encoding_is_refused(gw: Gateway) -> None:
    r = await raw_request(gw.url, get("/files/%zz"))
    assert r.status == 400
    assert r.json()["type"] == "urn:agentgate:problem:bad_path"


async def test_encoded_slash_keep_forwards_it_encoded(
    gw: Gateway, config_with: Callable[[str], str]
) -> None:
    async with http_settings(gw, config_with, encoded_slash="keep"):
        r = await raw_request(gw.url, get("/files/a%2Fb"))
        assert r.status == 200
        assert r.json()["raw_path"] == "/files/a%2Fb"
        # kept encoded, `%2F` is no separator: `public%2F..%2Fprivate` is one segment, no route
        r = await raw_request(gw.url, get("/public%2F..%2Fprivate/echo"))
        assert r.status == 404
        # dot-segments are still removed
        r = await raw_request(gw.url, get("/public/../private/echo"))
        assert r.status == 401


async def test_slashes_merged_by_default(gw: Gateway) -> None:
    r = await raw_request(gw.url, get("/files//a///b"))
    assert r.json()["raw_path"] == "/files/a/b"


async def test_merge_slashes_false_keeps_double_slashes(
    gw: Gateway, config_with: Callable[[str], str]
) -> None:
    async with http_settings(gw, config_with, merge_slashes=False):
        r = await raw_request(gw.url, get("/files//a///b"))
        assert r.status == 200
        assert r.json()["raw_path"] == "/files//a///b"
        r = await raw_request(gw.url, get("/files/a/./b/../c"))
        assert r.json()["raw_path"] == "/files/a/c"


async def test_encoded_slash_reject_answers_400(
    gw: Gateway, config_with: Callable[[str], str]
) -> None:
    async with http_settings(gw, config_with, encoded_slash="reject"):
        for path in ("/files/a%2Fb", "/files/a%2fb", "/public%2F..%2Fprivate/echo"):
            r = await raw_request(gw.url, get(path))
            assert r.status == 400
            assert r.headers["content-type"] == "application/problem+json"
            body = r.json()
            assert body["type"] == "urn:agentgate:problem:bad_path"
            assert "%2F" in body["detail"]
        r = await raw_request(gw.url, get("/files/a/b"))
        assert r.status == 200
