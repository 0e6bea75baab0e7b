"""`loomgate check-config` refuses a weak admin token on listeners other machines can reach."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config_loader import EXAMPLE_ADMIN_TOKENS, MIN_ADMIN_TOKEN_LEN

REPO = Path(__file__).resolve().parents[3]

_DOC = """\
listeners:
  partner: {{host: "{partner}", port: 0}}
  admin:
    host: "{admin}"
    port: 0
    token: {token}
upstreams:
  - name: inventory
    url: http://127.0.0.1:9
routes:
  - name: stock
    path: /v1/stock
    methods: [GET]
    upstream: inventory
partners:
  - id: shopsync
    api_keys: ["{digest}"]
"""


def _check(tmp_path: Path, *, partner: str, admin: str, token: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(_DOC.format(partner=partner, admin=admin, token=token, digest="a" * 64), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("short-token", "is shorter than 16 characters"),
        ("change-me", "is a published example value"),
        ("demo-admin-token", "is a published example value"),
    ],
)
def test_weak_token_on_a_public_listener_is_rejected(tmp_path: Path, token: str, reason: str) -> None:
    result = _check(tmp_path, partner="0.0.0.0", admin="127.0.0.1", token=token)
    assert result.returncode == 2 and result.stdout == ""
    where = f"{tmp_path / 'gateway.yaml'}:6: listeners.admin.token"
    assert result.stderr.startswith(f"{where}: the admin token {reason}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert token not in result.stderr  # the secret itself is never echoed


def test_weak_token_is_rejected_when_only_the_admin_listener_is_public(tmp_path: Path) -> None:
    result = _check(tmp_path, partner="127.0.0.1", admin="0.0.0.0", token="change-me")
    assert result.returncode == 2 and "listeners.admin.token" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_weak_token_is_accepted_when_both_listeners_are_loopback(tmp_path: Path, host: str) -> None:
    result = _check(tmp_path, partner=host, admin=host, token="change-me")
    assert (result.returncode, result.stderr) == (0, "")


def test_strong_token_on_public_listeners_is_accepted(tmp_path: Path) -> None:
    result = _check(tmp_path, partner="0.0.0.0", admin="0.0.0.0", token="x" * MIN_ADMIN_TOKEN_LEN)
    assert (result.returncode, result.stderr) == (0, "")


def test_every_example_token_literal_is_known_to_be_public() -> None:
    """Each literal admin token (or ``${VAR:-default}``) in the shipped examples is on the refused list."""
    literals: set[str] = set()
    for path in [*(REPO / "config").glob("*.yaml"), REPO / "docker-compose.yml"]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("#"):
                continue
            m = re.search(r"(?:\btoken|LOOMGATE_ADMIN_TOKEN):\s*(\S+)", line.split(" #", 1)[0])
            if m is None:
                continue
            value = m.group(1)
            default = re.fullmatch(r"\$\{\w+:-([^}]*)\}", value)
            if default:
                literals.add(default.group(1))
            elif not value.startswith("${"):
                literals.add(value)
    assert literals, "the examples name no admin token at all"
    assert literals <= EXAMPLE_ADMIN_TOKENS
