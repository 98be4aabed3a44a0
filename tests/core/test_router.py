"""Router through the real extension: matching, priority, params, errors, atomic replace."""

from __future__ import annotations

import threading

import pytest

from agentgate.routing import RouteMatch, Router, RouterError


def ids(router: Router, method: str, path: str, host: str = "", **headers: str) -> str | None:
    m = router.lookup(method, path, host=host, headers=headers or None)
    return None if m is None else m.id


def test_prefix_segment_boundary_and_remainder() -> None:
    r = Router([{"id": "echo", "path_prefix": "/agents/echo"}])
    m = r.lookup("GET", "/agents/echo/run/1")
    assert isinstance(m, RouteMatch)
    assert (m.id, m.index, m.remainder, m.prefix_len) == ("echo", 0, "/run/1", 12)
    assert m.params == {}
    assert ids(r, "GET", "/agents/echo") == "echo"
    assert ids(r, "GET", "/agents/echoes") is None
    assert r.lookup("GET", "/agents/echo").remainder == ""  # type: ignore[union-attr]


def test_template_params_are_raw() -> None:
    r = Router(
        [
            {"id": "user", "path_template": "/users/{id}/posts/{post}"},
            {"id": "files", "path_template": "/files/{*rest}"},
        ]
    )
    m = r.lookup("GET", "/users/a%2Fb/posts/7")
    assert m is not None and m.id == "user"
    assert m.params == {"id": "a%2Fb", "post": "7"}
    assert m.remainder == "/users/a%2Fb/posts/7"
    m = r.lookup("GET", "/files/x/y.txt")
    assert m is not None and m.params == {"rest": "x/y.txt"}


def test_priority() -> None:
    r = Router(
        [
            {"id": "root", "path_prefix": "/"},
            {"id": "users", "path_prefix": "/users"},
            {"id": "user", "path_template": "/users/{id}"},
            {"id": "me-post", "path_template": "/users/me", "methods": ["POST"]},
            {"id": "me", "path": "/users/me", "headers": {"X-Beta": "1"}},
            {"id": "api-host", "path_prefix": "/", "host": "api.example.com"},
            {"id": "wild-host", "path_prefix": "/", "host": "*.example.com"},
        ]
    )
    assert ids(r, "GET", "/other") == "root"
    assert ids(r, "GET", "/users") == "users"
    assert ids(r, "GET", "/users/7/x") == "users"
    assert ids(r, "GET", "/users/7") == "user"
    assert ids(r, "POST", "/users/me") == "me-post"
    assert ids(r, "GET", "/users/me") == "user"
    assert ids(r, "GET", "/users/me", **{"x-beta": "1"}) == "me"
    assert ids(r, "GET", "/users/me", **{"X-BETA": "2"}) == "user"
    assert ids(r, "GET", "/users/me", host="API.example.com:443") == "api-host"
    assert ids(r, "GET", "/users/me", host="eu.example.com") == "wild-host"
    assert ids(r, "GET", "/users/me", host="example.org") == "user"
    assert r.lookup("GET", "no-leading-slash") is None


@pytest.mark.parametrize(
    ("routes", "index", "field"),
    [
        ([{"id": "a", "path": "x"}], 0, "path"),
        ([{"id": "a", "path": "/"}, {"id": "a", "path": "/b"}], 1, "id"),
        ([{"path": "/"}], 0, "id"),
        ([{"id": "a"}], 0, "path"),
        ([{"id": "a", "path": "/", "path_prefix": "/"}], 0, "path"),
        ([{"id": "a", "path_template": "/u/{id"}], 0, "path"),
        ([{"id": "a", "path": "/", "methods": "GET"}], 0, "methods"),
        ([{"id": "a", "path": "/", "headers": ["x"]}], 0, "headers"),
        ([{"id": "a", "path": "/", "host": "a.*.com"}], 0, "host"),
        ([{"id": "ok", "path": "/"}, {"id": "a", "path": "/", "extra": 1}], 1, "extra"),
        (["nope"], 0, "route"),
    ],
)
def test_errors_name_route_and_field(routes: list[object], index: int, field: str) -> None:
    with pytest.raises(RouterError) as e:
        Router(routes)  # type: ignore[arg-type]
    assert (e.value.index, e.value.field) == (index, field), str(e.value)
    assert str(e.value).startswith(f"route #{index} ")
    assert isinstance(e.value, ValueError)


def test_error_carries_the_route_id() -> None:
    with pytest.raises(RouterError) as e:
        Router([{"id": "users", "path": "/u", "methods": "GET"}])
    assert e.value.id == "users"


def test_routes_of_the_wrong_type() -> None:
    with pytest.raises(TypeError):
        Router("not a list")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Router([{"id": "a", "path": "/", "methods": [object()]}])  # type: ignore[list-item]


def test_replace_is_atomic_and_keeps_table_on_error() -> None:
    r = Router([{"id": "old", "path_prefix": "/"}])
    with pytest.raises(ValueError):
        r.replace([{"id": "bad", "path": ""}])
    assert ids(r, "GET", "/x") == "old"
    r.replace([{"id": "new", "path_prefix": "/"}, {"id": "x", "path": "/x"}])
    assert ids(r, "GET", "/x") == "x"
    assert len(r) == 2


def test_lookups_during_replace_see_whole_tables() -> None:
    def table(k: int) -> list[dict[str, str]]:
        return [{"id": f"a-{k}", "path_prefix": "/a"}, {"id": f"b-{k}", "path_prefix": "/b"}]

    r = Router(table(0))
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        last = 0
        while not stop.is_set():
            m = r.lookup("GET", "/a/1")
            assert m is not None
            gen = int(m.id.split("-")[1])
            if gen < last:
                errors.append(f"went back from {last} to {gen}")
            last = gen

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for k in range(1, 200):
        r.replace(table(k))
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert ids(r, "GET", "/b") == "b-199"
