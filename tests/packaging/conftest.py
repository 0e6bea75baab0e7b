"""The Docker build as files: Dockerfile instructions per stage, the .dockerignore rules, and the wheel built
from exactly what the Dockerfile's build stage copies, installed non-editable into a fresh venv."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    stage: str  # the stage's name (``AS name``), or its index for an unnamed stage
    keyword: str  # upper case: FROM, COPY, RUN, ...
    args: str  # the rest of the (joined) line

    def json_args(self) -> list[str]:
        """The exec form (``["a", "b"]``) of CMD / ENTRYPOINT / HEALTHCHECK ... CMD."""
        text = self.args.split(" CMD ", 1)[1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(v) for v in value]


@dataclass(frozen=True)
class CopyStep:
    stage: str
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None


class Dockerfile:
    def __init__(self, path: Path) -> None:
        self.instructions: list[Instruction] = []
        stage = ""
        count = 0
        for line in _logical_lines(path.read_text(encoding="utf-8")):
            keyword, _, args = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                parts = args.split()
                stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(count)
                count += 1
            self.instructions.append(Instruction(stage, keyword, args.strip()))
        self.stages = [i.stage for i in self.instructions if i.keyword == "FROM"]
        self.final = self.stages[-1]

    def of(self, keyword: str, stage: str | None = None) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword and (stage is None or i.stage == stage)]

    def last(self, keyword: str) -> Instruction:
        found = self.of(keyword, self.final)
        assert found, f"the final stage has no {keyword}"
        return found[-1]

    def copies(self) -> list[CopyStep]:
        steps = []
        for ins in self.of("COPY"):
            words = ins.args.split()
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            steps.append(CopyStep(ins.stage, tuple(paths[:-1]), paths[-1], from_stage))
        return steps


def _logical_lines(text: str) -> Iterator[str]:
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        yield (buf + line).strip()
        buf = ""
    if buf:
        yield buf.strip()


class DockerIgnore:
    """The .dockerignore rules (Go filepath.Match patterns, ``**`` for any number of directories)."""

    def __init__(self, path: Path) -> None:
        self.patterns = [ln.strip().strip("/") for ln in path.read_text(encoding="utf-8").splitlines()
                         if ln.strip() and not ln.lstrip().startswith("#")]
        assert not any(p.startswith("!") for p in self.patterns), "re-inclusion rules are not checked here"

    def excluded(self, rel: str) -> bool:
        parts = PurePosixPath(rel).parts
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        for pattern in self.patterns:
            if pattern.startswith("**/"):
                tail = pattern[3:]
                if any(fnmatch.fnmatchcase(part, tail) for part in parts):
                    return True
            elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
                return True
        return False

    def context_files(self, src: str) -> list[str]:
        """The files under ``src`` (a file or directory of the repo) that the build context holds."""
        base = ROOT / src
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        rels = [p.relative_to(ROOT).as_posix() for p in files]
        return sorted(r for r in rels if not self.excluded(r))


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def dockerignore() -> DockerIgnore:
    return DockerIgnore(ROOT / ".dockerignore")


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path
    env: dict[str, str]  # PATH starts at the venv's bin; no PYTHONPATH pointing into the checkout

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


def _build_context(dockerfile: Dockerfile, dockerignore: DockerIgnore, dest: Path) -> None:
    """What the build stage's COPY steps put in its WORKDIR (``./x`` destinations), from the context."""
    build_stage = dockerfile.stages[0]
    for step in dockerfile.copies():
        if step.stage != build_stage or step.from_stage:
            continue
        target = dest / step.dest
        for src in step.sources:
            for rel in dockerignore.context_files(src):
                path = PurePosixPath(rel)
                out = target / (path.relative_to(src) if (ROOT / src).is_dir() else path.name)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, out)


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory, dockerfile: Dockerfile,
                    dockerignore: DockerIgnore) -> InstalledWheel:
    """The wheel built (no build isolation: nothing downloaded) from the Docker build stage's files, installed
    with ``pip install --no-deps`` into a new venv that sees this interpreter's site-packages for the
    dependencies only (a ``.pth`` path line: the editable install's own hooks there are not run)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    _build_context(dockerfile, dockerignore, src)
    _run(base, sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(base / "dist"), str(src))
    (wheel,) = (base / "dist").glob("loomgate-*.whl")
    venv = new_venv(base / "venv")
    vpython = str(venv / "bin" / "python")
    _run(base, sys.executable, "-m", "pip", "--python", vpython, "install", "-q", "--no-deps", str(wheel))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "/usr/bin:/bin")])
    return InstalledWheel(wheel, venv, env)


def new_venv(venv: Path) -> Path:
    """A new venv without loomgate that sees this interpreter's site-packages for the dependencies only
    (a ``.pth`` path line: the editable install's own hooks there are not run)."""
    _run(venv.parent, sys.executable, "-m", "venv", "--without-pip", str(venv))
    vpython = str(venv / "bin" / "python")
    purelib = _run(venv.parent, vpython, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(purelib.strip(), "_loomgate_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


@pytest.fixture
def make_venv() -> Callable[[Path], Path]:
    """``venv = make_venv(path)``: ``new_venv`` for test modules (they cannot import this conftest)."""
    return new_venv


def _run(cwd: Path, *argv: str) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout
