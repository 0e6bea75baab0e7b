"""`loomgate serve` and `loomgate demo` that cannot start say why in one line and exit non-zero, never with
a traceback: a port in use, a data directory that is a file, an embedded store another process holds.
Real subprocesses; the store is held by a real running gateway."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.testing import ADMIN_TOKEN, GatewayProcess, cli_config_yaml, start_gateway_process

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _assert_one_clear_line(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    assert all(p in last for p in phrases), result.stderr
    assert sum(1 for line in lines if " ERROR " in line or "Error" in line) <= 1, result.stderr


def _serve_config(tmp_path: Path, store_dir: Path, partner_port: int = 0) -> Path:
    text = cli_config_yaml(admin_port=0, admin_token=ADMIN_TOKEN, store_dir=store_dir)
    partner = f"partner: {{host: 127.0.0.1, port: {partner_port}}}"
    text = text.replace("partner: {host: 127.0.0.1, port: 0}", partner)
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def holder(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    """A running gateway that owns the embedded store under tmp_path/held/clickhouse."""
    (tmp_path / "held").mkdir()
    store = tmp_path / "held" / "clickhouse"
    cfg = _serve_config(tmp_path / "held", store)
    gp = await start_gateway_process(str(cfg))
    try:
        for _ in range(200):  # the writer opens the store just after the listeners start
            if (store / "status").exists():
                break
            await asyncio.sleep(0.1)
        yield gp
    finally:
        await gp.stop()


def test_serve_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = _run("serve", "--config", str(_serve_config(tmp_path, tmp_path / "store", taken_port)))
    _assert_one_clear_line(result, "listeners.partner", f"127.0.0.1:{taken_port}", "address already in use")


def test_serve_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    result = _run("serve", "--config", str(_serve_config(tmp_path, tmp_path / "file" / "clickhouse")))
    _assert_one_clear_line(result, "telemetry", "is a file")


async def test_serve_store_held_by_another_process(tmp_path: Path, holder: GatewayProcess) -> None:
    cfg = _serve_config(tmp_path, tmp_path / "held" / "clickhouse")
    result = await asyncio.to_thread(_run, "serve", "--config", str(cfg))
    _assert_one_clear_line(result, "telemetry.store", "in use by")


def test_demo_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = _run("demo", "--duration", "5", "--no-kpi", "--data-dir", str(tmp_path / "demo"),
                  "--port", str(taken_port), "--admin-port", "0")
    _assert_one_clear_line(result, "loomgate demo", f"127.0.0.1:{taken_port}", "address already in use")


def test_demo_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory", encoding="utf-8")
    result = _run("demo", "--duration", "5", "--no-kpi", "--data-dir", str(tmp_path / "file"),
                  "--port", "0", "--admin-port", "0")
    _assert_one_clear_line(result, "loomgate demo", "is a file")


async def test_demo_store_held_by_another_process(tmp_path: Path, holder: GatewayProcess) -> None:
    result = await asyncio.to_thread(_run, "demo", "--duration", "5", "--no-kpi", "--data-dir",
                                     str(tmp_path / "held"), "--port", "0", "--admin-port", "0")
    _assert_one_clear_line(result, "loomgate demo", "in use by")
