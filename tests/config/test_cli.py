"""`loomgate check-config FILE`: exit 0 with one summary line, or exit 2 with every problem on stderr."""

# ruff: noqa: E501

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main

REPO = Path(__file__).parent.parent.parent
LOOMGATE = Path(sys.executable).parent / "loomgate"


def test_valid_file_prints_one_summary_line(case: Any, capsys: pytest.CaptureFixture[str]) -> None:
    case.load(case.doc(tail="slas:\n  - {name: s, upstream: orders}\n"))
    assert main(["check-config", str(case.path)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"{case.path}: OK — 2 upstreams, 1 route, 1 partner, 1 SLA, 0 maintenance windows, 0 webhooks\n"
    )
    assert err == ""


def test_invalid_file_lists_every_problem_and_exits_2(case: Any, capsys: pytest.CaptureFixture[str]) -> None:
    text = case.doc(routes="  - name: r\n    path: /r\n    methods: [GTE]\n    upstream: inventry\n")
    problems = case.problems(text)
    assert len(problems) == 2
    assert main(["check-config", str(case.path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == problems


def test_missing_file_and_syntax_error_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["check-config", str(missing)]) == 2
    assert capsys.readouterr().err == f"{missing}:1: cannot read the file: No such file or directory\n"
    broken = tmp_path / "broken.yaml"
    broken.write_text("listeners:\n  partner: {port: 0\n", encoding="utf-8")
    assert main(["check-config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{broken}:3: YAML syntax error: ") and err.count("\n") == 1


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 2
    assert "usage: loomgate check-config" in capsys.readouterr().err
    assert main(["check-config", "--help"]) == 0
    assert "FILE:LINE: key.path" in capsys.readouterr().out


def test_console_script_checks_the_example_and_a_broken_file(tmp_path: Path) -> None:
    # PYTHONPATH: the console script runs this tree's code, whatever the environment has installed.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LOOMGATE_ADMIN_TOKEN": "k" * 32}
    ok = subprocess.run(
        [str(LOOMGATE), "check-config", "config/gateway.yaml"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout == (
        "config/gateway.yaml: OK — 3 upstreams, 5 routes, 4 partners, 2 SLAs, 2 maintenance windows, 2 webhooks\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: {}\nroutes: []\nbogus: 1\n", encoding="utf-8")
    result = subprocess.run(
        [str(LOOMGATE), "check-config", str(bad)], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}:1: upstreams: missing required key",
        f"{bad}:1: partners: missing required key",
        f"{bad}:1: listeners.partner: missing required key",
        f"{bad}:1: listeners.admin: missing required key",
        f"{bad}:2: routes: needs at least one entry",
        f"{bad}:3: bogus: unknown key 'bogus' (known: listeners, limits, upstreams, routes, partners, telemetry, "
        "slas, maintenance, alerts)",
    ]
