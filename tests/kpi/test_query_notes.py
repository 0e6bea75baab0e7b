"""An empty query window says where the data is, in `loomgate query` and in the admin API's JSON."""

from __future__ import annotations

from typing import Any

import pytest

from collectors import querylib
from collectors.rows import insert_calls
from collectors.store import Store, ThreadStore
from gateway.testing import ADMIN_TOKEN, client_session, standard_config
from tests.telemetry_schema.conftest import make_records  # calls over 2026-01-01 00:00-00:10 UTC

WINDOW = ["-p", "start=2026-02-01T00:00:00Z", "-p", "end=2026-02-08T00:00:00Z"]
NOTE = ("no rows between 2026-02-01 00:00 and 2026-02-08 00:00 (UTC); "
        "the store has data from 2026-01-01 00:00 to 2026-01-01 00:09 (UTC)")


def _cli(store: Store, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    assert querylib.cli_main(["integration_health", "--dsn", store.dsn, "--database", store.database,
                              *args]) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_cli_names_the_data_range_for_an_empty_window(kpi_store: Store,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _cli(kpi_store, capsys, *WINDOW)
    assert "(0 rows)" in out and "the store holds no calls yet" in out
    insert_calls(kpi_store, make_records(200), service_name="loomgate", resource={})
    out, _ = _cli(kpi_store, capsys, *WINDOW)
    assert out.rstrip().endswith(NOTE)
    out, err = _cli(kpi_store, capsys, *WINDOW, "--format", "json")
    assert out.strip() == "[]" and NOTE in err
    out, _ = _cli(kpi_store, capsys, "-p", "start=2026-01-01T00:00:00Z", "-p", "end=2026-01-02T00:00:00Z")
    assert "no rows between" not in out and "(0 rows)" not in out


async def test_admin_api_carries_the_note(kpi_store: Store, gateway: Any, upstream_server: Any) -> None:
    insert_calls(kpi_store, make_records(50), service_name="loomgate", resource={})
    up = await upstream_server()
    gw = await gateway(standard_config(up.url))
    gw.services.store = ThreadStore(kpi_store)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with client_session() as s:
        q = {"start": "2026-02-01T00:00:00Z", "end": "2026-02-08T00:00:00Z"}
        async with s.get(gw.admin_url + "/api/queries/integration_health", params=q, headers=auth) as r:
            body = await r.json()
        assert r.status == 200 and body["rows"] == [] and body["note"] == NOTE
        q = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
        async with s.get(gw.admin_url + "/api/queries/integration_health", params=q, headers=auth) as r:
            body = await r.json()
        assert body["rows"] and "note" not in body
