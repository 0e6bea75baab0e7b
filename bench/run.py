"""Loomgate benchmark: the same load, in one run, against

  (a) the upstream directly           (bench/fast_upstream.py: the ceiling of this setup)
  (b) the minimal baseline proxy      (bench/minimal_proxy.py)
  (c) the gateway, auth + rate limit on, telemetry off
  (d) the gateway with full telemetry into the embedded store

Each server is its own process; the server under test is pinned to one core, the upstream and the load
generator share the other (when the machine has two).  Load: ``wrk`` when installed (a Lua script adds the
API key), else ``bench/loadgen.py``.  Reports req/s and p50/p99 at 32 connections, p50/p99 at one
connection, CPU per request of the server process and of the telemetry writer process, the gateway's
event-loop lag, ratios against the baseline with their targets, the gateway's (and writer's) RSS under
1,000 concurrent connections and the machine's load average during each run, as markdown on stdout (and
``--out FILE``).

    python bench/run.py [--duration 8] [--rounds 2] [--out bench-results.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
from run_report import PATH, TARGETS, Load, Results, render
from threads import difference, snapshot

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
API_KEY = "bench-partner-key-0001"  # benchmark-only key; its SHA-256 is all the gateway is given

WRK_SCRIPT = """
wrk.headers["X-Api-Key"] = "%s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LGJSON {\\"requests\\":%%d,\\"duration_us\\":%%d,\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d," ..
    "\\"status\\":%%d,\\"timeout\\":%%d,\\"p50_us\\":%%d,\\"p99_us\\":%%d,\\"mean_us\\":%%.1f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    lag_file: Path | None = None  # the gateway's event-loop lag samples (bench/serve_gateway.py --loop-lag)

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)



# -------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[set[int] | None, set[int] | None]:
    """(server core, load core): the first two CPUs this process may use; None when there is one."""
    avail = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(avail) < 2:
        return None, None
    return {avail[0]}, {avail[1]}


def spawn(name: str, argv: Sequence[str], url: str, core: set[int] | None, logdir: Path,
          lag_file: Path | None = None) -> Server:
    log = logdir / f"{name}.log"

    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, core)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as fh:
        proc = subprocess.Popen(list(argv), stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                preexec_fn=pin)
    return Server(name, proc, url, log, lag_file)


def wait_ready(server: Server, timeout: float = 90.0) -> None:
    """Poll the benchmark URL until it answers 200 (the telemetry store takes a few seconds to open)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: see {server.log}\n{server.log.read_text()[-2000:]}")
        req = urllib.request.Request(server.url + PATH, headers={"X-Api-Key": API_KEY})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {timeout:.0f} s ({last}); see {server.log}")


def stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------------ load
def load_command(url: str, connections: int, duration: float, script: Path | None) -> list[str]:
    if script is not None:
        seconds = max(1, round(duration))  # wrk takes whole seconds
        return ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url]
    return [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "-c", str(connections),
            "-d", str(duration), "-H", f"X-Api-Key: {API_KEY}"]


def cpu_seconds(server: Server) -> tuple[float, float]:
    """(process + children, children only) CPU seconds, user + system."""
    own = server.ps.cpu_times()
    children = 0.0
    for child in server.ps.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            children += t.user + t.system
    return own.user + own.system + children, children


def _pinned(core: set[int] | None) -> Callable[[], None]:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, core)

    return pin


def _parse_load(stdout: str, cpu: float, child_cpu: float) -> Load:
    line = next((x for x in stdout.splitlines() if x.startswith("LGJSON ")), None)
    if line is None:
        raise RuntimeError(f"load generator printed no result: {stdout[-800:]}")
    data = json.loads(line[len("LGJSON "):])
    n = int(data["requests"])
    per = 1e6 / n if n else 0.0
    return Load(requests=n, seconds=float(data["duration_us"]) / 1e6,
                errors=sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout")),
                p50_ms=float(data["p50_us"]) / 1000, p99_ms=float(data["p99_us"]) / 1000,
                cpu_us_per_req=cpu * per, child_cpu_us_per_req=child_cpu * per)


def loop_lag(server: Server) -> list[float]:
    """Ask the gateway for its event-loop lag samples (ms) since the previous call (SIGUSR1)."""
    if server.lag_file is None:
        return []
    before = server.lag_file.stat().st_mtime_ns if server.lag_file.exists() else 0
    server.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if server.lag_file.exists() and server.lag_file.stat().st_mtime_ns != before:
            with contextlib.suppress(ValueError):
                return [float(x) for x in json.loads(server.lag_file.read_text())]
        time.sleep(0.02)
    return []


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def drive(server: Server, connections: int, duration: float, load_core: set[int] | None,
          script: Path | None) -> Load:
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; the end of its log:\n"
                           f"{server.log.read_text(errors='replace')[-3000:]}")
    cmd = load_command(server.url + PATH, connections, duration, script)
    loop_lag(server)  # discard what was recorded between runs
    cpu0, child0 = cpu_seconds(server)
    threads0 = snapshot(_processes(server))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                         preexec_fn=_pinned(load_core), check=False)
    cpu1, child1 = cpu_seconds(server)
    threads = difference(threads0, snapshot(_processes(server)))
    lag = loop_lag(server)
    load = _parse_load(out.stdout + out.stderr[-800:], cpu1 - cpu0, child1 - child0)
    return replace(load, load_avg=os.getloadavg()[0], lag_p99_ms=_percentile(lag, 0.99),
                   lag_max_ms=max(lag) if lag else float("nan"), threads=threads)


def _processes(server: Server) -> dict[str, list[int]]:
    with contextlib.suppress(psutil.Error):
        return {"gateway": [server.proc.pid], "writer": [c.pid for c in server.ps.children(recursive=True)]}
    return {}


def _rss_mb(server: Server) -> tuple[float, float]:
    """(server process, sum of its children) resident memory in MB."""
    kids = 0.0
    for child in server.ps.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            kids += child.memory_info().rss / 2**20
    return server.ps.memory_info().rss / 2**20, kids


def rss_under_connections(server: Server, connections: int, duration: float, load_core: set[int] | None,
                          script: Path | None) -> dict[str, float]:
    """Idle and peak RSS (MB) of the gateway process and of its children while N connections hammer it."""
    idle, _ = _rss_mb(server)
    peak, child_peak = idle, 0.0
    cmd = load_command(server.url + PATH, connections, duration, script)
    cpu0, child0 = cpu_seconds(server)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=_pinned(load_core)) as proc:
        deadline = time.monotonic() + duration + 60
        while proc.poll() is None and time.monotonic() < deadline:
            own, kids = _rss_mb(server)
            peak, child_peak = max(peak, own), max(child_peak, kids)
            time.sleep(0.1)
        stdout, stderr = proc.communicate(timeout=60)
    cpu1, child1 = cpu_seconds(server)
    load = _parse_load(stdout + stderr[-800:], cpu1 - cpu0, child1 - child0)
    return {"idle": idle, "peak": peak, "child": child_peak, "requests": load.requests,
            "errors": load.errors, "p99": load.p99_ms}


# ----------------------------------------------------------------------------------------------- setup
def repin_children(server: Server, core: set[int]) -> None:
    """Move the gateway's child processes (the telemetry writer), every thread of them, to ``core``.

    Linux keeps CPU affinity per thread: setting it on a pid moves only the main thread, and the embedded
    ClickHouse's pools (background merges among them) started with the gateway's core would stay there.
    """
    for child in server.ps.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            for thread in child.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, core)


def gateway_available() -> bool:
    try:
        import gateway.server as server_module
    except ImportError:
        return False
    return hasattr(server_module, "run_gateway")


@contextlib.contextmanager
def servers(workdir: Path, targets: Sequence[str], server_core: set[int] | None,
            load_core: set[int] | None, writer_core: set[int] | None,
            gateway_flags: Sequence[str] = ()) -> Iterator[dict[str, Server]]:
    py = sys.executable
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    started: dict[str, Server] = {}
    try:
        argv = [py, str(BENCH / "fast_upstream.py"), "--port", str(up_port)]
        started["upstream"] = spawn("upstream", argv, upstream_url, load_core, workdir)
        if "baseline" in targets:
            port = free_port()
            argv = [py, str(BENCH / "minimal_proxy.py"), "--port", str(port), "--upstream", upstream_url]
            started["baseline"] = spawn("baseline", argv, f"http://127.0.0.1:{port}", server_core, workdir)
        for name, telemetry in (("gateway", False), ("telemetry", True)):
            if name not in targets:
                continue
            port = free_port()
            lag_file = workdir / f"{name}-loop-lag.json"
            argv = [py, str(BENCH / "serve_gateway.py"), "--port", str(port),
                    "--admin-port", str(free_port()), "--upstream", upstream_url, "--key", API_KEY,
                    "--data-dir", str(workdir / f"{name}-data"), "--loop-lag", str(lag_file),
                    *gateway_flags]
            started[name] = spawn(name, [*argv, "--telemetry"] if telemetry else argv,
                                  f"http://127.0.0.1:{port}", server_core, workdir, lag_file)
        for server in started.values():
            wait_ready(server)
        if writer_core is not None and "telemetry" in started:
            repin_children(started["telemetry"], writer_core)
        yield started
    finally:
        for server in reversed(list(started.values())):
            stop(server)


# ------------------------------------------------------------------------------------------------ main
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per 32-connection run (1 conn: half)")
    p.add_argument("--rounds", type=int, default=2, help="rounds over all targets; medians are reported")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list from: " + ",".join(TARGETS))
    p.add_argument("--rss-connections", type=int, default=1000)
    p.add_argument("--rss-seconds", type=float, default=5.0)
    p.add_argument("--python-load", action="store_true", help="use bench/loadgen.py even if wrk exists")
    p.add_argument("--writer-core", choices=("other", "same", "any"), default="other",
                   help="core of the telemetry writer process: the load generator's ('other', default: "
                        "the gateway process alone has its core) or the gateway's ('same')")
    p.add_argument("--gateway-default-gc", action="store_true",
                   help="run the gateway with CPython's garbage-collector defaults (no gateway.gctune)")
    p.add_argument("--insert-max-wait", type=float,
                   help="the telemetry writer's insert_max_wait in seconds (default: the config default)")
    p.add_argument("--writer-priority", choices=("idle", "low", "normal"),
                   help="the telemetry writer's CPU priority (default: the config default)")
    p.add_argument("--out", help="also write the markdown report to this file")
    args = p.parse_args(argv)
    args.argv = argv
    args.duration = min(max(args.duration, 1.0), 30.0)  # keep the whole run bounded (< 5 min)
    args.rounds = min(max(args.rounds, 1), 5)
    args.c1_duration = float(max(1, round(args.duration / 2)))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    targets = [t for t in args.targets.split(",") if t in TARGETS]
    res = Results()
    if not gateway_available():
        targets = [t for t in targets if t not in ("gateway", "telemetry")]
        res.notes.append("gateway.server.run_gateway is not importable: gateway targets skipped")
    server_core, load_core = cores()
    wrk = shutil.which("wrk") if not args.python_load else None
    loader = "wrk -t1 (Lua script adds X-Api-Key)" if wrk else "bench/loadgen.py (aiohttp)"
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="loomgate-bench-") as tmp:
        workdir = Path(tmp)
        script = None
        if wrk:
            script = workdir / "key.lua"
            script.write_text(WRK_SCRIPT % API_KEY)
        # "same": the writer inherits the gateway's core; "any": its threads may run on both cores
        both = (server_core | load_core) if server_core and load_core else None
        writer_core = {"other": load_core, "same": None, "any": both}[args.writer_core]
        flags = ["--default-gc"] if args.gateway_default_gc else []
        if args.insert_max_wait is not None:
            flags += ["--insert-max-wait", str(args.insert_max_wait)]
        if args.writer_priority is not None:
            flags += ["--writer-priority", args.writer_priority]
        with servers(workdir, targets, server_core, load_core, writer_core, flags) as procs:
            for name in targets:  # warm-up: pools filled, code paths hot, store tables created
                drive(procs[name], 32, 1.0, load_core, script)
            for rnd in range(args.rounds):
                for name in targets:
                    c32 = drive(procs[name], 32, args.duration, load_core, script)
                    c1 = drive(procs[name], 1, args.c1_duration, load_core, script)
                    res.c32.setdefault(name, []).append(c32)
                    res.c1.setdefault(name, []).append(c1)
                    print(f"round {rnd + 1}/{args.rounds} {name}: {res.c32[name][-1].rps:,.0f} req/s",
                          file=sys.stderr, flush=True)
            rss_target = "telemetry" if "telemetry" in procs else ("gateway" if "gateway" in procs else "")
            if rss_target and args.rss_connections > 0:
                res.rss = rss_under_connections(procs[rss_target], args.rss_connections,
                                                args.rss_seconds, load_core, script)
                res.rss_target = rss_target
    loads = [x.load_avg for runs in (*res.c32.values(), *res.c1.values()) for x in runs]
    res.notes.append(f"whole run took {time.monotonic() - started:.0f} s; 1-min load average "
                     f"{load_before:.2f} before, {min(loads, default=0):.2f} to {max(loads, default=0):.2f} "
                     f"during, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs; other work on the "
                     "machine skews absolute numbers: compare ratios and CPU per request from the same run)")
    report = render(res, args, loader, server_core is not None)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
