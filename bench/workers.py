"""``loomgate serve --workers 2`` against ``--workers 1`` in one run, on one machine.

Starts ``bench/fast_upstream.py``, then for each worker count a real ``loomgate serve`` (auth, shared rate
limit, full telemetry into an embedded store under a temporary directory), drives it with
``bench/loadgen.py`` (``-c`` keep-alive connections for ``-d`` seconds) and reads the CPU time every process
of the gateway (supervisor, workers, telemetry writer), the upstream and the load generator used, from
``/proc``.  Everything runs on this machine, so the load generator competes with the gateway for the same
cores: the table says how much CPU each side took, which bounds what a second worker can add.

``--limiter`` also measures the per-request cost of the shared rate-limit bucket against the in-process one.

    python bench/workers.py [-d 8] [-c 32] [--workers 1,2] [--limiter]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.auth import hash_key  # noqa: E402

KEY = "bench-workers-key"
SERVING = re.compile(r"serving partners on (?:http://)?([\d.]+):(\d+)")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    workers: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    gateway_cpu_s: float
    per_process: list[tuple[str, float]]
    loadgen_cpu_s: float
    upstream_cpu_s: float
    seconds: float


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *descendants(child)]
    return out


def name_of(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(c.decode(errors="replace") for c in cmd)
    for module, label in (("gateway.worker", "worker"), ("collectors.writer", "writer")):
        if module in text:
            return label
    return "gateway" if "serve" in text else "other"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_yaml(data: Path, upstream_port: int) -> str:
    return f"""\
listeners:
  partner: {{host: 127.0.0.1, port: 0}}
  admin: {{host: 127.0.0.1, port: {free_port()}, token: bench-admin-token}}
upstreams:
  - name: api
    url: http://127.0.0.1:{upstream_port}
routes:
  - name: listings
    path: /v1/artisans/{{artisan_id}}/listings
    methods: [GET]
    upstream: api
    artisan: {{from: path, name: artisan_id}}
partners:
  - id: bench
    api_keys: [{hash_key(KEY)}]
    artisans: "*"
    rate_limit: {{rps: 1000000, burst: 1000000}}
telemetry:
  store: chdb://{data}/clickhouse
  data_dir: {data}
  ttl: 0
"""


def run_one(workers: int, upstream: subprocess.Popen[bytes], upstream_port: int, connections: int,
            duration: float) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        cfg = Path(tmp) / "gateway.yaml"
        cfg.write_text(config_yaml(Path(tmp) / "data", upstream_port))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg),
                               "--workers", str(workers), "--log-level", "INFO"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
        try:
            assert gw.stderr is not None
            port = 0
            deadline = time.monotonic() + 120
            while not port and time.monotonic() < deadline:
                line = gw.stderr.readline().decode(errors="replace")
                if not line:
                    raise SystemExit(f"gateway exited with {gw.wait()}")
                if (m := SERVING.search(line)) is not None:
                    port = int(m.group(2))
            if workers == 1 and not port:
                raise SystemExit("gateway did not start")
            time.sleep(1.0)  # workers settle (GC tuning, first connections)
            pids = [gw.pid, *descendants(gw.pid)]
            before = {p: cpu_seconds(p) for p in pids}
            up_before = cpu_seconds(upstream.pid)
            children_before = os.times()
            started = time.monotonic()
            out = subprocess.run(
                [sys.executable, str(ROOT / "bench" / "loadgen.py"), "--url",
                 f"http://127.0.0.1:{port}/v1/artisans/a1/listings", "-c", str(connections),
                 "-d", str(duration), "-H", f"Authorization: Bearer {KEY}"],
                capture_output=True, check=True, text=True).stdout
            seconds = time.monotonic() - started
            children_after = os.times()
            per = [(f"{name_of(p)} {p}", cpu_seconds(p) - before[p]) for p in pids]
            up = cpu_seconds(upstream.pid) - up_before
            load = json.loads(out.split("LGJSON ", 1)[1])
            loadgen_cpu = ((children_after.children_user - children_before.children_user)
                           + (children_after.children_system - children_before.children_system))
            return Result(workers, load["requests"] / (load["duration_us"] / 1e6), load["p50_us"] / 1000,
                          load["p99_us"] / 1000, int(load["status"] + load["read"] + load["timeout"]),
                          sum(c for _, c in per), per, loadgen_cpu, up, seconds)
        finally:
            gw.send_signal(signal.SIGTERM)
            try:
                gw.wait(timeout=120)
            except subprocess.TimeoutExpired:
                gw.kill()


def limiter_cost(n: int = 200_000) -> tuple[float, float]:
    """Microseconds per check: the in-process bucket, the shared one."""
    from gateway.config import Partner, RateLimit
    from gateway.ratelimit import RateLimiter
    from gateway.shared_limits import SharedRateLimiter, create_buckets

    partners = [Partner(id="p", api_key_sha256=("0" * 64,), rate_limit=RateLimit(rps=1e9, burst=10**9))]
    local = RateLimiter(partners)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "buckets")
        create_buckets(path, partners)
        shared = SharedRateLimiter(partners, path)
        out = []
        for limiter in (local, shared):
            t0 = time.perf_counter()
            for _ in range(n):
                limiter.check("p")
            out.append((time.perf_counter() - t0) / n * 1e6)
        shared.close()
    return out[0], out[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=float, default=8.0, help="seconds of load per worker count")
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("--workers", default="1,2", help="worker counts to compare, first is the baseline")
    p.add_argument("--limiter", action="store_true", help="also time the shared rate-limit bucket")
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "fast_upstream.py"), "--port",
                                 str(upstream_port)], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        results = [run_one(n, upstream, upstream_port, args.connections, min(args.duration, 60.0))
                   for n in counts]
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    base = results[0]
    cores = os.cpu_count() or 1
    print(f"\n{cores} cores, loadavg {os.getloadavg()[0]:.1f}, -c {args.connections}, "
          f"-d {args.duration:g} s\n")
    print("| workers | req/s | vs first | p50 ms | p99 ms | errors | gateway CPU µs/req | gateway cores busy "
          "| loadgen cores busy | upstream cores busy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        reqs = r.rps * r.seconds
        print(f"| {r.workers} | {r.rps:,.0f} | {r.rps / base.rps:.2f}x | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.errors} | {r.gateway_cpu_s / reqs * 1e6:.0f} | {r.gateway_cpu_s / r.seconds:.2f} | "
              f"{r.loadgen_cpu_s / r.seconds:.2f} | {r.upstream_cpu_s / r.seconds:.2f} |")
    print("\n| workers | process | CPU s | cores busy |\n|---|---|---|---|")
    for r in results:
        for name, cpu in r.per_process:
            print(f"| {r.workers} | {name} | {cpu:.2f} | {cpu / r.seconds:.2f} |")
    if args.limiter:
        local, shared = limiter_cost()
        print(f"\n| rate-limit check | µs/check |\n|---|---|\n| in-process bucket | {local:.2f} |\n"
              f"| shared bucket (mmap + fcntl record lock) | {shared:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
