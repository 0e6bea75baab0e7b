"""Admin endpoints never answer 500 to a bad parameter: out-of-range windows and times, bad numbers and odd
text get 400 with the gateway's JSON error.  Hypothesis drives every admin endpoint that takes parameters,
the named queries included, against one gateway whose telemetry owns a real embedded ClickHouse store."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors import querylib
from gateway.config import TelemetryConfig
from gateway.server import RunningGateway, run_gateway
from gateway.testing import RecordingUpstream, standard_config

TOKEN = "admin-params-token-0123456789abcdef"


class _Admin:
    """A gateway with telemetry on its own loop in a thread; ``get`` is a plain blocking HTTP GET."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._cm: Any = None
        self._up = RecordingUpstream()
        self.gw: RunningGateway | None = None

    def _call(self, coro: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        await self._up.start()
        cfg = standard_config(
            self._up.url,
            telemetry=TelemetryConfig(data_dir=str(self._data_dir), batch_window=0.05, ttl_days=0),
        )
        cfg = dataclasses.replace(cfg, admin_listener=dataclasses.replace(cfg.admin_listener, token=TOKEN))
        self._cm = run_gateway(cfg)
        self.gw = await self._cm.__aenter__()

    async def _stop(self) -> None:
        try:
            await self._cm.__aexit__(None, None, None)
        finally:
            await self._up.close()

    def __enter__(self) -> _Admin:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def get(self, path: str, params: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
        assert self.gw is not None
        url = self.gw.admin_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Admin]:
    with _Admin(tmp_path_factory.mktemp("admin-params")) as a:
        yield a


def _assert_answer(status: int, headers: dict[str, str], body: bytes, what: str) -> None:
    assert status < 500 or status == 503, (what, status, body[:300])  # 503: the store is away
    if status >= 400:
        err = json.loads(body)["error"]
        assert err["code"] and err["message"] and err["request_id"], (what, body[:300])
        assert {"X-Request-Id": err["request_id"]}.items() <= headers.items(), what


# Values that reach parsers: durations, times, numbers and text, at and far past their ranges.
_UNITS = st.sampled_from(["s", "m", "h", "d", "w", "", "y"])
_NUMBER = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-0", "1e308", "-1e308", "nan", "inf", "1e-320", "99999999999", "4294967296"]),
)
_DURATION = st.builds(lambda sign, n, u: f"{sign}{n}{u}", st.sampled_from(["", "-", "+", "now-", "now+"]),
                      st.sampled_from(["0", "1", "99999999", "99999999999", "1e9", "0.5"]), _UNITS)
_TIME = st.one_of(
    _DURATION,
    st.sampled_from(["now", "today", "0001-01-01", "9999-12-31T23:59:59", "1899-12-31", "2300-01-01",
                     "1970-01-01T00:00:00Z", "2026-13-45", "-1", "1e20", "253402300800"]),
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat()),
)
_TEXT = st.text(max_size=40)
_VALUE = st.one_of(_NUMBER, _DURATION, _TIME, _TEXT, st.lists(_NUMBER, max_size=4).map(",".join),
                   st.lists(_TIME, max_size=3).map(",".join))

_QUERIES = {q.name: list(q.params) for q in querylib.list_queries()}
_ENDPOINTS = {
    "/api/sla": ["window"],
    "/api/incidents": ["window", "upstream"],
    "/api/checks": ["limit", "upstream"],
    "/status": ["window"],
    "/insights": ["start", "end", "window_days"],
    **{f"/api/queries/{name}": params for name, params in _QUERIES.items()},
}


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    path = draw(st.sampled_from(sorted(_ENDPOINTS)))
    names = _ENDPOINTS[path] + ["unknown", ""]
    keys = draw(st.lists(st.sampled_from(names), max_size=3))
    return path, [(k, draw(_VALUE)) for k in keys]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/sla", [("window", "99999999999d")]),
        ("/api/incidents", [("window", "99999999999d")]),
        ("/status", [("window", "99999999999d")]),
        ("/api/queries/sla_report", [("start", "-99999999d")]),
        ("/insights", [("start", "yesterday-ish")]),
        ("/insights", [("start", "-99999999d")]),
        ("/insights", [("end", "0001-01-01")]),
    ],
)
def test_out_of_range_parameters_get_400(admin: _Admin, path: str, params: list[tuple[str, str]]) -> None:
    status, headers, body = admin.get(path, params)
    assert status == 400, (status, body[:300])
    _assert_answer(status, headers, body, path)
    assert json.loads(body)["error"]["source"] == "gateway"


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=_requests())
def test_admin_parameters_never_get_500(admin: _Admin, request: tuple[str, list[tuple[str, str]]]) -> None:
    path, params = request
    status, headers, body = admin.get(path, params)
    _assert_answer(status, headers, body, f"{path} {params!r}")
