"""Docker cannot run here: the Dockerfile and docker-compose.yml are checked as files.  Every COPY source is
in the build context, the image runs the console script the wheel test runs, and the compose file refers
only to services, volumes, ports and config files that exist; each config it mounts into a Loomgate service
passes ``loomgate check-config`` with the environment compose gives that service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "Zq3vT8xLw2Rk9NpB4sYd7HfJ"  # 24 random characters, as the README has users generate
COMPOSE_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class ComposeVariableError(ValueError):
    """A ``${VAR:?message}`` reference whose variable is unset: compose refuses to start."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?err}``, ``${VAR?err}``,
    ``$$``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        present = name in env and (env[name] != "" or (op or "").startswith(("-", "?")))
        if op in (":-", "-"):
            return env[name] if present else arg
        if op in (":?", "?"):
            if not present:
                raise ComposeVariableError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return COMPOSE_VAR.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data["services"]
    return data


def _ours(service: dict[str, Any]) -> bool:
    """Built from this repository's Dockerfile."""
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    return context == "."


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts (sources starting with . or /)."""
    out = []
    for vol in service.get("volumes", []):
        src, dst = (vol["source"], vol["target"]) if isinstance(vol, dict) else vol.split(":")[:2]
        if src.startswith((".", "/")):
            out.append((src, dst))
    return out


# ---------------------------------------------------------------------------------------------- Dockerfile


def test_every_copied_path_is_in_the_build_context(dockerfile: Any, dockerignore: Any) -> None:
    copies = dockerfile.copies()
    assert copies
    for step in copies:
        if step.from_stage:
            assert step.from_stage in dockerfile.stages[: dockerfile.stages.index(step.stage)], step
            continue
        for src in step.sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            assert not dockerignore.excluded(src), f"COPY {src}: excluded by .dockerignore"
            assert dockerignore.context_files(src), f"COPY {src}: nothing of it reaches the build context"


def test_the_build_stage_copies_everything_the_wheel_needs(dockerfile: Any) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    folders = setuptools.get("package-dir", {})  # packages shipped under another name than their folder's
    needed = {"pyproject.toml", project["project"]["readme"], *project["project"]["license-files"],
              *(folders.get(p, p.replace(".", "/")) for p in setuptools["packages"])}
    build_stage = dockerfile.stages[0]
    copied = {src for step in dockerfile.copies() if step.stage == build_stage and not step.from_stage
              for src in step.sources}
    assert needed <= copied, needed - copied
    assert len(dockerfile.stages) >= 2, "the wheel is built in its own stage"
    assert any("pip wheel" in i.args for i in dockerfile.of("RUN", build_stage))
    runtime = " ".join(i.args for i in dockerfile.of("RUN", dockerfile.final))
    assert "pip install" in runtime and "/tmp/dist/loomgate-" in runtime and "pip install ." not in runtime


def test_the_image_runs_the_console_script_as_a_non_root_user(dockerfile: Any) -> None:
    user = dockerfile.last("USER").args.split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(i.args for i in dockerfile.of("RUN", dockerfile.final))
    assert re.search(rf"useradd\b[^&]*\b{re.escape(user)}\b", runs), "the user is created in the image"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = dockerfile.last("ENTRYPOINT").json_args()
    assert entrypoint == ["loomgate"] and scripts["loomgate"] == "gateway.cli:main"
    cmd = dockerfile.last("CMD").json_args()
    assert cmd[0] in COMMANDS and cmd[:2] == ["serve", "--config"]
    runtime = " ".join(i.args for i in dockerfile.of("RUN", dockerfile.final))
    assert f"loomgate example-config {Path(cmd[2]).name} > {cmd[2]}" in runtime  # the default config exists


def _docker_gateway(env: dict[str, str]) -> Any:
    from gateway.config_loader import load_config

    return load_config(ROOT / "config" / "docker-gateway.yaml", env=env)


def test_healthcheck_probes_the_admin_listeners_healthz(dockerfile: Any) -> None:
    check = dockerfile.last("HEALTHCHECK")
    assert re.search(r"--interval=\S+", check.args) and re.search(r"--timeout=\S+", check.args)
    argv = check.json_args()
    assert argv[0] == "python" and "/healthz" in argv[-1] and "127.0.0.1:" in argv[-1]
    env_line = " ".join(i.args for i in dockerfile.of("ENV", dockerfile.final))
    port = re.search(r"LOOMGATE_ADMIN_PORT=(\d+)", env_line)
    assert port, "the image sets the admin port the check and the config share"
    assert "os.environ.get('LOOMGATE_ADMIN_PORT', '" + port.group(1) + "')" in argv[-1]
    cfg = _docker_gateway({"LOOMGATE_ADMIN_TOKEN": TOKEN, "LOOMGATE_ADMIN_PORT": port.group(1)})
    assert cfg.admin_listener.port == int(port.group(1))
    default = _docker_gateway({"LOOMGATE_ADMIN_TOKEN": TOKEN})
    assert default.admin_listener.port == int(port.group(1))  # the config's own default agrees
    exposed = {int(p) for i in dockerfile.of("EXPOSE", dockerfile.final) for p in i.args.split()}
    assert exposed == {default.partner_listener.port, default.admin_listener.port}


# ------------------------------------------------------------------------------------------------ compose


def test_compose_refers_only_to_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if _ours(svc):
            assert (ROOT / "Dockerfile").is_file()
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            src = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (ROOT / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in named_volumes, f"{name} uses undeclared volume {src}"
        for port in svc.get("ports", []):
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+(/tcp|/udp)?", str(port)), port
    published = [str(p).rsplit(":", 2) for svc in services.values() for p in svc.get("ports", [])]
    assert len({tuple(p[:-1]) for p in published}) == len(published), "a host port published twice"


def test_loomgate_services_run_commands_the_wheel_has(compose: dict[str, Any]) -> None:
    ours = {n: s for n, s in compose["services"].items() if _ours(s)}
    assert {"gateway", "migrate"} <= set(ours)
    for name, svc in ours.items():
        if "entrypoint" in svc:
            argv = svc["entrypoint"]
            assert argv[:2] == ["python", "-m"] and argv[2].split(".")[0] == "gateway", name
            assert (ROOT / (argv[2].replace(".", "/") + ".py")).is_file(), name
        else:
            assert svc["command"][0] in COMMANDS, name
    assert ours["gateway"]["command"][:2] == ["serve", "--config"]


def test_gateway_ports_are_loopback_only(compose: dict[str, Any]) -> None:
    for port in compose["services"]["gateway"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port


def _service_env(svc: dict[str, Any], host_env: dict[str, str]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(str(v), host_env) for k, v in env.items()}


def test_mounted_configs_pass_check_config_with_the_compose_environment(compose: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    host_env = {"LOOMGATE_ADMIN_TOKEN": TOKEN}  # what the README tells users to export
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("LOOMGATE_", "CLICKHOUSE_")) and k != "PYTHONPATH"}
    checked = []
    for name, svc in compose["services"].items():
        if not _ours(svc):
            continue
        argv = svc.get("command") or []
        config_in_container = argv[argv.index("--config") + 1] if "--config" in argv else None
        for src, dst in _bind_mounts(svc):
            if dst != config_in_container:
                continue
            env = dict(base, **_service_env(svc, host_env), PYTHONPATH=str(ROOT))
            done = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", str(ROOT / src)],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert (done.returncode, done.stderr) == (0, ""), f"{name}: {src}"
            assert ": OK — " in done.stdout
            checked.append(name)
    assert {"gateway", "migrate"} <= set(checked)


def test_compose_refuses_to_start_without_the_admin_token(compose: dict[str, Any]) -> None:
    with pytest.raises(ComposeVariableError, match="LOOMGATE_ADMIN_TOKEN"):
        _service_env(compose["services"]["gateway"], {})
    env = _service_env(compose["services"]["gateway"], {"LOOMGATE_ADMIN_TOKEN": "x"})
    assert env["LOOMGATE_ADMIN_TOKEN"] == "x"


def test_interpolation_follows_compose() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET}-${UNSET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}-$${SET}", env) == "v--d-d--${SET}"
    with pytest.raises(ComposeVariableError):
        interpolate("${EMPTY:?needed}", env)
