"""Request-path normalisation, route matching and upstream URL building (pure functions, no I/O).

Normal form
-----------
``normalize_path`` returns the path still percent-encoded, in one canonical spelling:

* escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) are decoded, every other escape is kept with
  uppercase hex; characters that may not appear raw in a path segment (space, quotes, ``{}``, non-ASCII, ...)
  are encoded as UTF-8 bytes;
* empty segments (``//`` runs) are collapsed, ``.`` segments dropped and ``..`` segments resolved — after
  decoding, so ``%2e%2e`` is ``..``; a ``..`` that would climb above the root is refused;
* a trailing slash is kept (it is significant to many upstreams): ``/a/b/`` and ``/a/b`` are different paths.

Refused with ``BadPath``: paths not starting with ``/``, encoded ``/`` or ``\\`` (``%2F``, ``%5C``), raw
backslashes, control characters raw or encoded, malformed escapes, escapes that do not decode to UTF-8, and
dot segments carrying a ``;`` parameter (``..;``), which some upstream servers treat as ``..``.

The route is matched on this form and the same string is forwarded upstream, so what the upstream receives
is exactly what was authorised and matched.

Templates and precedence
------------------------
A template is a ``/``-separated path whose segments are literals or whole-segment parameters ``{name}``.
Among the templates that match a path and allow the method, the most specific wins: comparing segment by
segment from the left, the first place where they differ decides, and a literal beats a parameter.  If some
templates match the path but none allows the method, the answer is 405 listing the methods of all of them.
HEAD is allowed wherever GET is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

from yarl import URL

from gateway import errors
from gateway.config import Route

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters that may appear raw in a path segment besides unreserved ones (RFC 3986 pchar).
_SUB_DELIMS_ETC = frozenset("!$&'()*+,;=:@")
_RAW_OK = _UNRESERVED | _SUB_DELIMS_ETC
_HEX = frozenset("0123456789abcdefABCDEF")

# Paths already in normal form take this path: allowed raw characters only, no escapes, no empty
# segments, no '.'/'..' segments, no ';' (which could make a dot segment with parameters).  Most real
# requests look like this.
_FAST_OK = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)*/?")

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A parameter value may use unreserved characters raw; everything else is encoded when re-rendered.
_PARAM_SAFE = "-._~"


# --------------------------------------------------------------------------------------- normalisation


def _canonical_segment(seg: str) -> str:
    """One path segment in canonical percent-encoding; raises BadPath for forbidden content."""
    out: list[str] = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "%":
            h = seg[i + 1 : i + 3]
            if len(h) != 2 or h[0] not in _HEX or h[1] not in _HEX:
                raise errors.BadPath("malformed percent escape in path")
            b = int(h, 16)
            if b in (0x2F, 0x5C):
                raise errors.BadPath("encoded slash or backslash in path")
            if b < 0x20 or b == 0x7F:
                raise errors.BadPath("control character in path")
            ch = chr(b)
            out.append(ch if ch in _UNRESERVED else "%" + h.upper())
            i += 3
            continue
        if c in _RAW_OK:
            out.append(c)
        elif c == "\\":
            raise errors.BadPath("backslash in path")
        elif c < " " or c == "\x7f":
            raise errors.BadPath("control character in path")
        else:
            try:
                data = c.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogate from undecodable bytes
                raise errors.BadPath("path is not valid UTF-8") from None
            out.append("".join(f"%{b:02X}" for b in data))
        i += 1
    canon = "".join(out)
    if "%" in canon:
        try:
            unquote_to_bytes(canon).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.BadPath("path is not valid UTF-8") from None
    if canon.startswith((".;", "..;")):
        raise errors.BadPath("dot segment with parameters in path")
    return canon


def normalize_path(raw_path: str) -> str:
    """Canonical, percent-encoded form of a raw request path (no query); raises ``errors.BadPath``."""
    if not raw_path.startswith("/"):
        raise errors.BadPath("path must start with '/'")
    if _FAST_OK.fullmatch(raw_path):
        return raw_path
    parts = raw_path.split("/")[1:]
    stack: list[str] = []
    trailing = False
    last = len(parts) - 1
    for i, part in enumerate(parts):
        seg = _canonical_segment(part) if part else ""
        if seg in ("", "."):
            trailing = i == last
            continue
        if seg == "..":
            if not stack:
                raise errors.BadPath("path climbs above the root")
            stack.pop()
            trailing = i == last
            continue
        stack.append(seg)
        trailing = False
    if not stack:
        return "/"
    return "/" + "/".join(stack) + ("/" if trailing else "")


# --------------------------------------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class _Template:
    """A parsed template: per segment either a canonical literal or None for a parameter."""

    segments: tuple[str | None, ...]
    params: tuple[tuple[int, str], ...]  # (segment index, parameter name)


@lru_cache(maxsize=1024)
def _parse_template(template: str) -> _Template:
    if not template.startswith("/"):
        raise ValueError(f"template {template!r} must start with '/'")
    if "?" in template or "#" in template:
        raise ValueError(f"template {template!r} must not contain '?' or '#'")
    raw = template.split("/")[1:]
    if raw == [""]:  # the root template "/"
        return _Template(segments=("",), params=())
    segments: list[str | None] = []
    params: list[tuple[int, str]] = []
    for i, part in enumerate(raw):
        if part == "":
            if i != len(raw) - 1:
                raise ValueError(f"template {template!r} has an empty segment ('//')")
            segments.append("")  # trailing slash
            continue
        m = _PARAM.fullmatch(part)
        if m:
            name = m.group(1)
            if any(name == p for _, p in params):
                raise ValueError(f"template {template!r} repeats parameter {{{name}}}")
            params.append((i, name))
            segments.append(None)
            continue
        if "{" in part or "}" in part:
            raise ValueError(
                f"template {template!r}: segment {part!r} must be a literal or a whole {{name}} parameter"
            )
        try:
            lit = _canonical_segment(part)
        except errors.BadPath as exc:
            raise ValueError(f"template {template!r} can never match: {exc.message}") from None
        if lit in (".", ".."):
            raise ValueError(f"template {template!r} can never match: it has a {lit!r} segment")
        segments.append(lit)
    return _Template(segments=tuple(segments), params=tuple(params))


def route_template_params(template: str) -> tuple[str, ...]:
    """Parameter names of a template, in order; raises ValueError if the template is invalid."""
    return tuple(name for _, name in _parse_template(template).params)


# ----------------------------------------------------------------------------------------------- matching


_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


class RouteMatch(NamedTuple):
    """The matched route and its parameters (a tuple: built on every request, cheaper than a dataclass)."""

    route: Route
    params: Mapping[str, str]  # percent-decoded values
    raw_params: Mapping[str, str] = _NO_PARAMS  # as they appear in the normalised path


_Entry = tuple[Route, tuple[tuple[int, str], ...]]


class _Node:
    __slots__ = ("literals", "methods", "param")

    def __init__(self) -> None:
        self.literals: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.methods: dict[str, _Entry] | None = None  # set on nodes where a template ends


def _first(node: _Node, segs: list[str], i: int, n: int, method: str) -> _Entry | None:
    """The most specific template matching ``segs`` that allows ``method`` (depth-first, literals first)."""
    if i == n:
        return node.methods.get(method) if node.methods is not None else None
    seg = segs[i]
    child = node.literals.get(seg)
    if child is not None:
        found = _first(child, segs, i + 1, n, method)
        if found is not None:
            return found
    if node.param is not None and seg:  # a parameter never matches an empty segment
        return _first(node.param, segs, i + 1, n, method)
    return None


class RouteTable:
    """Routes compiled into a segment trie; ``match`` walks it without regular expressions.

    Raises ValueError for invalid templates, rewrite templates naming unknown parameters, and two routes
    handling the same method on the same template shape.
    """

    def __init__(self, routes: Sequence[Route]) -> None:
        self._root = _Node()
        self.routes = tuple(routes)
        for route in self.routes:
            self._add(route)
        self._add_implicit_head(self._root)
        # All-literal templates are the most specific match for their path: one dict lookup finds them.
        self._static: dict[str, dict[str, _Entry]] = {}
        for route in self.routes:
            tpl = _parse_template(route.path)
            if not tpl.params:
                node = self._find(tpl.segments)
                if node is not None and node.methods is not None:
                    self._static["/" + "/".join(s for s in tpl.segments if s is not None)] = node.methods

    def _find(self, segments: tuple[str | None, ...]) -> _Node | None:
        node: _Node | None = self._root
        for seg in segments:
            if node is None:
                return None
            node = node.param if seg is None else node.literals.get(seg)
        return node

    def _add(self, route: Route) -> None:
        tpl = _parse_template(route.path)
        if route.upstream_path is not None:
            rewrite = _parse_template(route.upstream_path)
            names = {n for _, n in tpl.params}
            unknown = [n for _, n in rewrite.params if n not in names]
            if unknown:
                raise ValueError(
                    f"route {route.name!r}: upstream_path uses unknown parameter(s) {', '.join(unknown)}"
                )
        node = self._root
        for seg in tpl.segments:
            if seg is None:
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.literals.setdefault(seg, _Node())
        if node.methods is None:
            node.methods = {}
        for method in route.methods:
            key = method.upper()
            if key in node.methods:
                other = node.methods[key][0]
                raise ValueError(f"routes {other.name!r} and {route.name!r} both handle {key} {route.path}")
            node.methods[key] = (route, tpl.params)

    def _add_implicit_head(self, node: _Node) -> None:
        if node.methods is not None and "GET" in node.methods and "HEAD" not in node.methods:
            node.methods["HEAD"] = node.methods["GET"]
        for child in node.literals.values():
            self._add_implicit_head(child)
        if node.param is not None:
            self._add_implicit_head(node.param)

    def match(self, method: str, path: str) -> RouteMatch:
        """Route for a normalised path; raises ``errors.NotFound`` or ``errors.MethodNotAllowed``."""
        key = method.upper()
        static = self._static.get(path)
        if static is not None:
            entry = static.get(key)
            if entry is not None:
                return RouteMatch(entry[0], _NO_PARAMS, _NO_PARAMS)
        segs = path.split("/")[1:]
        entry = _first(self._root, segs, 0, len(segs), key)
        if entry is not None:
            return self._result(entry, segs)
        allow = sorted({m for methods in self._terminals(self._root, segs, 0) for m in methods})
        if not allow:
            raise errors.NotFound(f"no route for {path}")
        raise errors.MethodNotAllowed(f"{key} is not allowed for {path}", allow=allow)

    def _terminals(self, node: _Node, segs: list[str], i: int) -> Iterator[dict[str, _Entry]]:
        """Method tables of every template matching ``segs``, most specific first (for 405 answers)."""
        if i == len(segs):
            if node.methods is not None:
                yield node.methods
            return
        seg = segs[i]
        child = node.literals.get(seg)
        if child is not None:
            yield from self._terminals(child, segs, i + 1)
        if node.param is not None and seg:  # a parameter never matches an empty segment
            yield from self._terminals(node.param, segs, i + 1)

    @staticmethod
    def _result(entry: _Entry, segs: list[str]) -> RouteMatch:
        route, positions = entry
        raw: dict[str, str] = {}
        params: dict[str, str] = {}
        for i, name in positions:  # plain loop: cheaper than comprehensions for the usual 1-2 parameters
            value = segs[i]
            raw[name] = value
            params[name] = unquote(value) if "%" in value else value
        return RouteMatch(route, params, raw)


# ------------------------------------------------------------------------------------------ upstream URL


@lru_cache(maxsize=256)
def _base_parts(base: URL) -> tuple[str, str, str]:
    return base.scheme, base.raw_authority, base.raw_path.rstrip("/")


def render_upstream_path(template: str, m: RouteMatch) -> str:
    """A rewrite template with the match's parameters substituted (percent-encoded)."""
    tpl = _parse_template(template)
    out: list[str] = []
    names = dict(tpl.params)
    for i, seg in enumerate(tpl.segments):
        if seg is not None:
            out.append(seg)
            continue
        name = names[i]
        raw = m.raw_params.get(name)
        out.append(raw if raw is not None else quote(m.params[name], safe=_PARAM_SAFE))
    return "/" + "/".join(out)


def build_upstream_url(base: URL, route: Route, m: RouteMatch, path: str, raw_query: str) -> URL:
    """Upstream URL: base path prefix + (rewritten or normalised request path); query kept byte for byte."""
    scheme, authority, prefix = _base_parts(base)
    tail = render_upstream_path(route.upstream_path, m) if route.upstream_path is not None else path
    return URL.build(
        scheme=scheme, authority=authority, path=prefix + tail, query_string=raw_query, encoded=True
    )
