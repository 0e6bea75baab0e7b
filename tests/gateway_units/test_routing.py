"""Path normalisation, route matching and upstream URL building."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway import errors
from gateway.config import Route
from gateway.routing import (
    RouteMatch,
    RouteTable,
    build_upstream_url,
    normalize_path,
    render_upstream_path,
    route_template_params,
)

# ------------------------------------------------------------------------------------------ normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/v1/artisans/42", "/v1/artisans/42"),
        ("/v1/../admin", "/admin"),
        ("/v1/a/../b", "/v1/b"),
        ("/v1/%2e%2e/x", "/x"),
        ("/v1/%2E%2e/x", "/x"),
        ("/v1/.%2e/x", "/x"),
        ("/v1/%2e/x", "/v1/x"),
        ("//v1//x", "/v1/x"),
        ("///", "/"),
        ("/v1/./x", "/v1/x"),
        ("/v1/x/", "/v1/x/"),
        ("/v1/x//", "/v1/x/"),
        ("/v1/x/.", "/v1/x/"),
        ("/v1/x/y/..", "/v1/x/"),
        ("/v1/..", "/"),
        ("/v1/%7e%41%62", "/v1/~Ab"),
        ("/v1/%3b%3B", "/v1/%3B%3B"),
        ("/v1/%c3%a9", "/v1/%C3%A9"),
        ("/v1/caf\u00e9", "/v1/caf%C3%A9"),
        ("/v1/a b", "/v1/a%20b"),
        ('/v1/"x"', "/v1/%22x%22"),
        ("/v1/a%20b", "/v1/a%20b"),
        ("/v1/%25", "/v1/%25"),
        ("/v1/%252F", "/v1/%252F"),
        ("/v1/a;b=c", "/v1/a;b=c"),
        ("/v1/user@host:1", "/v1/user@host:1"),
        ("/v1/...", "/v1/..."),
        ("/v1/.x/..y", "/v1/.x/..y"),
    ],
)
def test_normalize_accepts(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "v1/x",
        "*",
        "/..",
        "/../x",
        "/v1/../../admin",
        "/%2e%2e/x",
        "/v1/%2e%2e/%2E%2E/x",
        "//..//x",
        "/v1/a%2Fb",
        "/v1/a%2fb",
        "/v1/a%5Cb",
        "/v1/a%5cb",
        "/v1/a\\b",
        "/v1/..\\admin",
        "/v1/a%00b",
        "/v1/a\x00b",
        "/v1/a%0Ab",
        "/v1/a\nb",
        "/v1/a\tb",
        "/v1/a%7Fb",
        "/v1/a%",
        "/v1/a%2",
        "/v1/a%zz",
        "/v1/a%g1",
        "/v1/%c3%28",
        "/v1/%ff",
        "/v1/\udcff",
        "/v1/..;/admin",
        "/v1/.;x/admin",
        "/v1/%2e%2e;x/admin",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(errors.BadPath):
        normalize_path(raw)


def test_bad_path_is_a_400() -> None:
    with pytest.raises(errors.BadPath) as info:
        normalize_path("/a%2Fb")
    assert info.value.status == 400


_SEGMENT_CHARS = st.sampled_from(
    [
        *"abcXYZ019-._~!$&'()*+,;=:@ \"<>{}%/\\?#",
        *("%2e", "%2E", "%2f", "%41", "%7e", "%3b", "%c3%a9", "%00", "%zz", "..", ".", "\u00e9", "\x01"),
    ]
)
_PATHS = st.lists(_SEGMENT_CHARS, max_size=30).map(lambda xs: "/" + "".join(xs))


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


@settings(max_examples=400, deadline=None)
@given(_PATHS)
def test_normalize_properties(raw: str) -> None:
    try:
        out = normalize_path(raw)
    except errors.BadPath:
        return
    assert out.startswith("/")
    assert "//" not in out
    segs = _segments(out)
    assert ".." not in segs and "." not in segs
    assert "\\" not in out
    assert not re.search(r"%(2F|5C|0[0-9A-F]|1[0-9A-F]|7F)", out)
    assert not re.search(r"%[0-9A-F]?[a-f]", out)  # escapes are uppercase
    assert normalize_path(out) == out  # idempotent


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_normalize_arbitrary_text_only_raises_bad_path(text: str) -> None:
    try:
        out = normalize_path("/" + text)
    except errors.BadPath:
        return
    assert out.isascii()
    assert normalize_path(out) == out
    # What is matched is exactly what goes upstream: yarl keeps the encoded path as is.
    assert URL.build(scheme="http", host="h", path=out, encoded=True).raw_path == out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abc./%2eE", max_size=6), max_size=8))
def test_normalize_never_climbs_above_root(segs: list[str]) -> None:
    raw = "/" + "/".join(segs)
    try:
        out = normalize_path(raw)
    except errors.BadPath:
        return
    # Resolving the output again under a prefix never escapes the prefix.
    assert normalize_path("/jail" + out).startswith("/jail")


# ------------------------------------------------------------------------------------------- templates


def test_template_params() -> None:
    assert route_template_params("/v1/artisans/{artisan_id}/listings/{listing_id}/inventory") == (
        "artisan_id",
        "listing_id",
    )
    assert route_template_params("/v1/health") == ()
    assert route_template_params("/") == ()


@pytest.mark.parametrize(
    "template",
    [
        "v1/x",
        "/v1//x",
        "/v1/{a}/{a}",
        "/v1/x{a}",
        "/v1/{a}.json",
        "/v1/{1a}",
        "/v1/{}",
        "/v1/../x",
        "/v1/./x",
        "/v1/a%2Fb",
        "/v1/x?y",
        "/v1/a\\b",
    ],
)
def test_invalid_templates(template: str) -> None:
    with pytest.raises(ValueError):
        route_template_params(template)


# -------------------------------------------------------------------------------------------- matching


def R(name: str, path: str, *methods: str, upstream_path: str | None = None) -> Route:
    methods = methods or ("GET",)
    return Route(name=name, path=path, methods=methods, upstream="up", upstream_path=upstream_path)


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(
        [
            R("inventory", "/v1/artisans/{artisan_id}/listings/{listing_id}/inventory", "GET", "PUT"),
            R("listings", "/v1/artisans/{artisan_id}/listings", "GET", "POST"),
            R("my_listings", "/v1/artisans/me/listings", "GET"),
            R("artisan", "/v1/artisans/{artisan_id}", "GET", "delete"),
            R("orders", "/v1/orders", "GET", "POST"),
            R("order_slash", "/v1/orders/", "PATCH"),
            R("root", "/", "GET"),
            R("a_lit_b_param", "/x/lit/{p}", "GET"),
            R("a_param_b_lit", "/x/{q}/end", "GET"),
        ]
    )


def test_match_params_decoded(table: RouteTable) -> None:
    m = table.match("GET", "/v1/artisans/a%20b/listings/L%C3%A9/inventory")
    assert m.route.name == "inventory"
    assert m.params == {"artisan_id": "a b", "listing_id": "L\u00e9"}
    assert m.raw_params == {"artisan_id": "a%20b", "listing_id": "L%C3%A9"}


def test_literal_beats_param(table: RouteTable) -> None:
    assert table.match("GET", "/v1/artisans/me/listings").route.name == "my_listings"
    assert table.match("GET", "/v1/artisans/you/listings").route.name == "listings"


def test_less_specific_template_serves_other_methods(table: RouteTable) -> None:
    # POST is not on the literal template, but the parameter template allows it.
    m = table.match("POST", "/v1/artisans/me/listings")
    assert m.route.name == "listings"
    assert m.params == {"artisan_id": "me"}


def test_leftmost_difference_decides_and_backtracks(table: RouteTable) -> None:
    assert table.match("GET", "/x/lit/end").route.name == "a_lit_b_param"
    # The literal branch dead-ends at the last segment, so matching falls back to the parameter.
    m = table.match("GET", "/x/other/end")
    assert m.route.name == "a_param_b_lit"
    assert m.params == {"q": "other"}


def test_backtracking_after_literal_dead_end() -> None:
    t = RouteTable([R("lit", "/a/b/c"), R("param", "/a/{x}/d")])
    assert t.match("GET", "/a/b/d").params == {"x": "b"}
    assert t.match("GET", "/a/b/c").route.name == "lit"


def test_not_found(table: RouteTable) -> None:
    for path in ["/v2/orders", "/v1/artisans", "/v1/artisans/1/listings/2", "/v1/orders/x", "/nope"]:
        with pytest.raises(errors.NotFound):
            table.match("GET", path)


def test_param_never_matches_empty_segment(table: RouteTable) -> None:
    with pytest.raises(errors.NotFound):
        table.match("GET", "/v1/artisans/")


def test_trailing_slash_is_distinct(table: RouteTable) -> None:
    assert table.match("GET", "/v1/orders").route.name == "orders"
    assert table.match("PATCH", "/v1/orders/").route.name == "order_slash"
    with pytest.raises(errors.MethodNotAllowed) as info:
        table.match("PATCH", "/v1/orders")
    assert info.value.allow == ["GET", "HEAD", "POST"]


def test_root_route(table: RouteTable) -> None:
    assert table.match("GET", "/").route.name == "root"


def test_method_not_allowed_lists_all_matching_templates(table: RouteTable) -> None:
    with pytest.raises(errors.MethodNotAllowed) as info:
        table.match("PUT", "/v1/artisans/me/listings")
    # union of my_listings (GET) and listings (GET, POST), plus HEAD wherever GET is
    assert info.value.allow == ["GET", "HEAD", "POST"]
    assert info.value.headers["Allow"] == "GET, HEAD, POST"
    assert info.value.status == 405


def test_methods_are_case_insensitive(table: RouteTable) -> None:
    assert table.match("delete", "/v1/artisans/7").route.name == "artisan"
    assert table.match("DELETE", "/v1/artisans/7").route.name == "artisan"
    with pytest.raises(errors.MethodNotAllowed) as info:
        table.match("POST", "/v1/artisans/7")
    assert info.value.allow == ["DELETE", "GET", "HEAD"]


def test_head_allowed_where_get_is(table: RouteTable) -> None:
    assert table.match("HEAD", "/v1/orders").route.name == "orders"
    assert table.match("HEAD", "/v1/artisans/1/listings/2/inventory").route.name == "inventory"
    with pytest.raises(errors.MethodNotAllowed) as info:
        table.match("HEAD", "/v1/orders/")
    assert info.value.allow == ["PATCH"]


def test_explicit_head_route_wins_over_implicit() -> None:
    t = RouteTable([R("get", "/a", "GET"), R("head", "/a", "HEAD")])
    assert t.match("HEAD", "/a").route.name == "head"
    assert t.match("GET", "/a").route.name == "get"


def test_literal_match_uses_canonical_form() -> None:
    t = RouteTable([R("cafe", "/caf\u00e9/{x}"), R("tilde", "/%7euser")])
    assert t.match("GET", normalize_path("/caf%c3%a9/1")).route.name == "cafe"
    assert t.match("GET", normalize_path("/~user")).route.name == "tilde"


def test_conflicting_routes_rejected() -> None:
    with pytest.raises(ValueError, match="both handle GET"):
        RouteTable([R("a", "/v1/{x}", "GET"), R("b", "/v1/{y}", "GET", "POST")])
    # Same shape, disjoint methods: fine.
    t = RouteTable([R("a", "/v1/{x}", "GET"), R("b", "/v1/{y}", "POST")])
    assert t.match("POST", "/v1/1").params == {"y": "1"}
    assert t.match("GET", "/v1/1").params == {"x": "1"}


def test_rewrite_with_unknown_param_rejected() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        RouteTable([R("a", "/v1/{x}", upstream_path="/api/{y}")])


def test_traversal_cannot_reach_other_route() -> None:
    t = RouteTable([R("public", "/v1/public/{x}"), R("admin", "/admin/{x}")])
    for raw in ["/v1/public/../../admin/x", "/v1/public/%2e%2e/%2e%2e/admin/x"]:
        assert t.match("GET", normalize_path(raw)).route.name == "admin"  # resolved, not smuggled
    with pytest.raises(errors.BadPath):
        normalize_path("/v1/public/a%2F..%2F..%2Fadmin")
    m = t.match("GET", normalize_path("/v1/public/..%252F..%252Fadmin"))
    assert m.route.name == "public"
    assert m.params == {"x": "..%2F..%2Fadmin"}  # a literal value, no slash


@settings(max_examples=300, deadline=None)
@given(_PATHS)
def test_match_params_never_contain_slash(raw: str) -> None:
    t = RouteTable([R("a", "/{x}"), R("b", "/{x}/{y}"), R("c", "/lit/{z}")])
    try:
        m = t.match("GET", normalize_path(raw))
    except (errors.BadPath, errors.NotFound):
        return
    assert all("/" not in v and v for v in m.params.values())


# ----------------------------------------------------------------------------------------- upstream URL


def _url(base: str, route: Route, path: str, query: str, params: dict[str, str] | None = None) -> str:
    m = RouteMatch(route, params or {}, {})
    return str(build_upstream_url(URL(base), route, m, path, query))


def test_upstream_url_plain_path() -> None:
    r = R("a", "/v1/orders")
    assert _url("http://127.0.0.1:9001", r, "/v1/orders", "") == "http://127.0.0.1:9001/v1/orders"
    assert _url("http://127.0.0.1:9001/", r, "/v1/orders", "") == "http://127.0.0.1:9001/v1/orders"


def test_upstream_url_base_prefix() -> None:
    r = R("a", "/v1/orders")
    assert _url("http://h:1/api", r, "/v1/orders", "") == "http://h:1/api/v1/orders"
    assert _url("http://h:1/api/", r, "/v1/orders", "") == "http://h:1/api/v1/orders"
    assert _url("http://h:1/api/", r, "/", "") == "http://h:1/api/"


@pytest.mark.parametrize(
    "query",
    ["a=1&a=2&b=%20+x&c", "x=%zz&y=%2F&z=a%2fb", "q=caf%C3%A9&q=caf%c3%a9", "=&&=", "a=;b", "k=v/w?x"],
)
def test_query_string_byte_for_byte(query: str) -> None:
    u = build_upstream_url(URL("http://h:1"), R("a", "/x"), RouteMatch(R("a", "/x"), {}, {}), "/x", query)
    assert u.raw_query_string == query
    assert u.raw_path_qs == "/x?" + query


def test_percent_encoded_path_forwarded_unchanged() -> None:
    r = R("a", "/v1/{x}")
    path = normalize_path("/v1/a%20b%3B")
    assert str(build_upstream_url(URL("http://h:1/p"), r, RouteTable([r]).match("GET", path), path, "")) == (
        "http://h:1/p/v1/a%20b%3B"
    )


def test_upstream_rewrite_uses_raw_params() -> None:
    r = R("a", "/v1/artisans/{aid}/items/{iid}", upstream_path="/internal/items/{iid}/of/{aid}/")
    t = RouteTable([r])
    path = normalize_path("/v1/artisans/a%20b/items/%3Bx")
    m = t.match("GET", path)
    u = build_upstream_url(URL("http://h:1/base"), r, m, path, "q=1")
    assert u.raw_path == "/base/internal/items/%3Bx/of/a%20b/"
    assert u.raw_query_string == "q=1"


def test_rewrite_encodes_decoded_params_when_raw_missing() -> None:
    r = R("a", "/v1/{x}", upstream_path="/u/{x}")
    m = RouteMatch(r, {"x": "a/b c"}, {})
    assert render_upstream_path("/u/{x}", m) == "/u/a%2Fb%20c"
    assert build_upstream_url(URL("http://h:1"), r, m, "/v1/ignored", "").raw_path == "/u/a%2Fb%20c"


def test_upstream_url_keeps_scheme_host_port_userinfo() -> None:
    r = R("a", "/x")
    u = build_upstream_url(URL("https://u:p@[::1]:8443/pre"), r, RouteMatch(r, {}, {}), "/x", "")
    assert (u.scheme, u.raw_host, u.port, u.raw_user, u.raw_password) == ("https", "::1", 8443, "u", "p")
    assert u.raw_path == "/pre/x"


# ------------------------------------------------------------------------------ reference-model check

_SEG = st.sampled_from(["a", "b", "{p}"])
_SHAPES = st.lists(_SEG, min_size=1, max_size=3).map(tuple)
_METHODS = st.sets(st.sampled_from(["GET", "POST", "HEAD"]), min_size=1, max_size=2)


def _reference(routes: list[Route], method: str, path: str) -> str | tuple[str, ...]:
    """Brute force: the route name, or the sorted Allow list, or '404'."""
    segs = path.split("/")[1:]
    matching: list[tuple[tuple[int, ...], Route]] = []
    for r in routes:
        tpl = r.path.split("/")[1:]
        if len(tpl) == len(segs) and all(
            t == s or (t.startswith("{") and s) for t, s in zip(tpl, segs, strict=True)
        ):
            matching.append((tuple(0 if t.startswith("{") else 1 for t in tpl), r))
    if not matching:
        return "404"

    def allowed(shape: tuple[int, ...], r: Route) -> set[str]:
        same_shape = [o for s, o in matching if s == shape and o.path == r.path]
        ms = set(r.methods)
        if "GET" in ms and not any("HEAD" in o.methods for o in same_shape):
            ms.add("HEAD")
        return ms

    best = [(shape, r) for shape, r in matching if method in allowed(shape, r)]
    if best:
        return max(best, key=lambda x: x[0])[1].name
    return tuple(sorted({m for shape, r in matching for m in allowed(shape, r)}))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_SHAPES, _METHODS), min_size=1, max_size=6),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
    st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
)
def test_matches_reference_model(
    specs: list[tuple[tuple[str, ...], set[str]]], path_segs: list[str], method: str
) -> None:
    routes: list[Route] = []
    taken: set[tuple[tuple[str, ...], str]] = set()
    for i, (shape, methods) in enumerate(specs):
        canon = tuple("{}" if s.startswith("{") else s for s in shape)
        ms = tuple(sorted(m for m in methods if (canon, m) not in taken))
        if not ms:
            continue
        taken |= {(canon, m) for m in ms}
        named = [f"{{p{j}}}" if seg.startswith("{") else seg for j, seg in enumerate(shape)]
        routes.append(R(f"r{i}", "/" + "/".join(named), *ms))
    table = RouteTable(routes)
    path = "/" + "/".join(path_segs)
    expected = _reference(routes, method, path)
    try:
        got: str | tuple[str, ...] = table.match(method, path).route.name
    except errors.NotFound:
        got = "404"
    except errors.MethodNotAllowed as exc:
        got = tuple(exc.allow)
    assert got == expected
