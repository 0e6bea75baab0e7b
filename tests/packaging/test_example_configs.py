"""The shipped example configs: the documented one binds loopback and takes its admin token from the
environment; no config listens on every interface with a token written in the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ANY_HOST = ("0.0.0.0", "::", "")
ENV_ONLY = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*\}$")  # ${VAR} with no default


def _gateway_configs() -> list[Path]:
    return [p for p in sorted((ROOT / "config").glob("*.yaml"))
            if isinstance(yaml.safe_load(p.read_text(encoding="utf-8")), dict)
            and "listeners" in yaml.safe_load(p.read_text(encoding="utf-8"))]


def _listeners(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["listeners"]  # raw text, before substitution


def test_the_gateway_configs_are_found() -> None:
    assert {p.name for p in _gateway_configs()} == {"gateway.yaml", "demo.yaml", "docker-gateway.yaml"}


@pytest.mark.parametrize("path", _gateway_configs(), ids=lambda p: p.name)
def test_no_public_listener_with_a_token_in_the_file(path: Path) -> None:
    listeners = _listeners(path)
    public = [name for name, lst in listeners.items() if str(lst.get("host", "")) in ANY_HOST]
    if public:
        token = str(listeners["admin"]["token"])
        assert ENV_ONLY.match(token), f"{path.name}: listens on {public} with admin token {token!r}"


def test_documented_example_binds_loopback_and_reads_the_token_from_the_environment() -> None:
    listeners = _listeners(ROOT / "config" / "gateway.yaml")
    assert listeners["partner"]["host"] == listeners["admin"]["host"] == "127.0.0.1"
    assert listeners["admin"]["token"] == "${LOOMGATE_ADMIN_TOKEN}"


def test_documented_example_without_the_token_is_a_config_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOOMGATE_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "gateway.cli", "check-config", str(ROOT / "config" / "gateway.yaml")]
    missing = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    line = next(n for n, t in enumerate((ROOT / "config" / "gateway.yaml").read_text().splitlines(), 1)
                if "${LOOMGATE_ADMIN_TOKEN}" in t)
    assert (missing.returncode, missing.stdout) == (2, "")
    expected = (f"gateway.yaml:{line}: listeners.admin.token: "
                "environment variable LOOMGATE_ADMIN_TOKEN is not set")
    assert expected in missing.stderr
    ok = subprocess.run(cmd, cwd=tmp_path, env=dict(env, LOOMGATE_ADMIN_TOKEN="s3cret-from-env"),
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.endswith("OK — 3 upstreams, 5 routes, 4 partners, 2 SLAs, "
                                                     "2 maintenance windows, 2 webhooks\n")
