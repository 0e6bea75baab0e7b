"""Helpers for the config loader tests: write YAML to a temporary file, load it, and name expected
problems by a piece of text on the line they must point at (so the expected line is computed from the
YAML shown in the test, not typed by hand)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.config_loader import ConfigError, load_config

DIGEST_A = "49482788a9c5f002e1c76e607262ea1354b34fa582dcbcc5284ebf833a4abbac"
DIGEST_B = "8a04861484fa4f016d154d105260c71a8e023c682d3f7212922001b600a334bc"

LISTENERS = """\
listeners:
  partner: {port: 0}
  admin: {port: 0, token: s3cret}
"""
UPSTREAMS = """\
upstreams:
  - name: inventory
    url: http://127.0.0.1:9001
  - name: orders
    url: http://127.0.0.1:9002
"""
ROUTES = """\
routes:
  - name: stock
    path: /v1/artisans/{artisan_id}/stock
    methods: [GET]
    upstream: inventory
    artisan: {from: path, name: artisan_id}
"""
PARTNERS = f"""\
partners:
  - id: shopsync
    api_keys: [{DIGEST_A}]
"""


class ConfigCase:
    """One YAML file under test."""

    DIGEST_A = DIGEST_A
    DIGEST_B = DIGEST_B

    def __init__(self, directory: Path) -> None:
        self.path = directory / "gateway.yaml"
        self.text = ""

    def doc(self, *, upstreams: str = "", routes: str = "", partners: str = "", tail: str = "") -> str:
        """The minimal valid config with extra list entries (indented as list items) and extra sections."""
        return LISTENERS + UPSTREAMS + upstreams + ROUTES + routes + PARTNERS + partners + tail

    def load(self, text: str, env: Mapping[str, str] | None = None) -> Config:
        self.text = text
        self.path.write_text(text, encoding="utf-8")
        return load_config(self.path, env={} if env is None else env)

    def problems(self, text: str, env: Mapping[str, str] | None = None) -> list[str]:
        with pytest.raises(ConfigError) as info:
            self.load(text, env)
        assert str(info.value) == "\n".join(info.value.problems)
        return info.value.problems

    def line(self, needle: str, occurrence: int = 1) -> int:
        """1-based line of the ``occurrence``-th line containing ``needle`` in the last text."""
        hits = [i + 1 for i, line in enumerate(self.text.splitlines()) if needle in line]
        assert len(hits) >= occurrence, f"{needle!r} occurs {len(hits)} times"
        return hits[occurrence - 1]

    def at(self, needle: str, message: str, occurrence: int = 1) -> str:
        """The expected problem text for a mistake on the line containing ``needle``."""
        return f"{self.path}:{self.line(needle, occurrence)}: {message}"


@pytest.fixture
def case(tmp_path: Path) -> ConfigCase:
    return ConfigCase(tmp_path)
