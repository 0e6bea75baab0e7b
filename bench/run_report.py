"""The benchmark's result types and its markdown report (``bench/run.py`` measures, this renders)."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass, field

from threads import GroupKey, ThreadUse, add, table

PATH = "/v1/artisans/a1/listings"
TARGETS = ("upstream", "baseline", "gateway", "telemetry")
LABELS = {
    "upstream": "upstream directly",
    "baseline": "minimal aiohttp proxy (baseline)",
    "gateway": "gateway: auth + rate limit, telemetry off",
    "telemetry": "gateway: auth + rate limit + full telemetry (embedded store)",
}


# ----------------------------------------------------------------------------------------------- types
@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float  # server process (and its children), user + system
    child_cpu_us_per_req: float  # children only (the telemetry writer process)
    load_avg: float = float("nan")  # 1-minute load average at the end of the run
    lag_p99_ms: float = float("nan")  # event-loop lag during the run (gateway targets only)
    lag_max_ms: float = float("nan")
    threads: dict[GroupKey, ThreadUse] = field(default_factory=dict)  # CPU per thread group during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def own_cpu_us_per_req(self) -> float:
        return self.cpu_us_per_req - self.child_cpu_us_per_req


@dataclass
class Results:
    c32: dict[str, list[Load]] = field(default_factory=dict)
    c1: dict[str, list[Load]] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    rss_target: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- report
def _med(loads: list[Load], attr: str) -> float:
    return statistics.median(getattr(x, attr) for x in loads) if loads else float("nan")


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _header(args: argparse.Namespace, loader: str, pinned: bool) -> list[str]:
    placement = ("server under test pinned to one core; upstream + load generator on the other"
                 if pinned else "no pinning (one CPU)")
    if pinned:
        placement += {"same": "; telemetry writer process on the gateway's core",
                      "other": "; telemetry writer process on the load generator's core",
                      "any": "; telemetry writer process free to use both cores"}[args.writer_core]
    gc_note = ("CPython defaults (--gateway-default-gc)" if args.gateway_default_gc
               else "gateway.gctune applied after start-up")
    return [
        "## Loomgate benchmark",
        "",
        f"- command: `{' '.join(['python bench/run.py', *args.argv])}`",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load generator: {loader}",
        f"- placement: {placement}; gateway garbage collector: {gc_note}",
        f"- per target: {args.duration:g} s at 32 connections, {args.c1_duration:g} s at 1 connection, "
        f"{args.rounds} round(s), medians shown; request `GET {PATH}` with `X-Api-Key`",
        "- CPU µs/req: user + system CPU time of the process during the run ÷ requests answered (less "
        "sensitive to other work on the machine than req/s); the writer column is the telemetry writer "
        "child process",
        "- loop lag: how late a 10 ms ticker on the gateway's event loop fired during the run (p99 / max)",
        "",
    ]


def _lag(loads: list[Load]) -> str:
    p99, worst = _med(loads, "lag_p99_ms"), max((x.lag_max_ms for x in loads), default=float("nan"))
    return "n/a" if p99 != p99 else f"{p99:.2f} / {worst:.2f}"


def _table(res: Results) -> list[str]:
    lines = ["| target | req/s (32 conn) | p50 ms | p99 ms | p50 ms (1 conn) | p99 ms (1 conn) "
             "| server CPU µs/req | writer CPU µs/req | loop lag ms 32 conn | loop lag ms 1 conn "
             "| load avg | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in TARGETS:
        if name not in res.c32:
            continue
        c32, c1 = res.c32[name], res.c1[name]
        errors = sum(x.errors for x in c32 + c1)
        writer = f"{_med(c32, 'child_cpu_us_per_req'):.0f}" if name == "telemetry" else "n/a"
        lines.append(f"| {LABELS[name]} | {_med(c32, 'rps'):,.0f} | {_med(c32, 'p50_ms'):.2f} "
                     f"| {_med(c32, 'p99_ms'):.2f} | {_med(c1, 'p50_ms'):.3f} | {_med(c1, 'p99_ms'):.3f} "
                     f"| {_med(c32, 'own_cpu_us_per_req'):.0f} | {writer} | {_lag(c32)} | {_lag(c1)} "
                     f"| {_med(c32 + c1, 'load_avg'):.1f} | {errors} |")
    return [*lines, ""]


def _row(label: str, value: str, target: str = "", ok: bool | None = None) -> str:
    return f"| {label} | {value} | {target} | {'' if ok is None else _verdict(ok)} |"


def _comparisons(res: Results) -> list[str]:
    if "baseline" not in res.c32:
        return []
    base, base1 = res.c32["baseline"], res.c1["baseline"]
    base_cpu = _med(base, "own_cpu_us_per_req")
    lines = ["| comparison with the baseline (same run) | value | target | verdict |", "|---|---:|---:|---|"]
    if "gateway" in res.c32:
        g, g1 = res.c32["gateway"], res.c1["gateway"]
        ratio = _med(g, "rps") / _med(base, "rps")
        added1 = (_med(g1, "p50_ms") - _med(base1, "p50_ms")) * 1000
        added32 = (_med(g, "p50_ms") - _med(base, "p50_ms")) * 1000
        g_cpu = _med(g, "own_cpu_us_per_req")
        lines += [
            _row("gateway / baseline req/s (32 conn)", f"{ratio:.3f}", "≥ 0.92", ratio >= 0.92),
            _row("gateway p50 added latency (1 conn)", f"{added1:.0f} µs", "≤ 300 µs", added1 <= 300),
            _row("gateway p50 added latency (32 conn)", f"{added32:.0f} µs"),
            _row("gateway CPU over baseline", f"{g_cpu - base_cpu:.0f} µs/req"),
            _row("gateway / baseline by CPU per request (capacity of one dedicated core)",
                 f"{base_cpu / g_cpu:.3f}", "(≥ 0.92)"),
        ]
    if "telemetry" in res.c32:
        t, t1 = res.c32["telemetry"], res.c1["telemetry"]
        ratio = _med(t, "rps") / _med(base, "rps")
        p99 = _med(t1, "p99_ms")
        own, writer = _med(t, "own_cpu_us_per_req"), _med(t, "child_cpu_us_per_req")
        lines += [
            _row("full telemetry / baseline req/s (32 conn)", f"{ratio:.3f}", "≥ 0.85", ratio >= 0.85),
            _row("full telemetry p99 (1 conn)", f"{p99:.3f} ms", "≤ 1 ms", p99 <= 1.0),
            _row("full telemetry / baseline by gateway-process CPU per request", f"{base_cpu / own:.3f}",
                 "(≥ 0.85)"),
        ]
        if "gateway" in res.c32:
            extra = own - _med(res.c32["gateway"], "own_cpu_us_per_req")
            lines.append(_row("telemetry CPU in the gateway process (vs gateway without telemetry)",
                              f"{extra:.1f} µs/req"))
        lines += [
            _row("telemetry CPU in the writer process", f"{writer:.1f} µs/req"),
            _row("event-loop lag with telemetry, p99 / max (1 conn)", f"{_lag(t1)} ms"),
        ]
        if "gateway" in res.c32:
            g, g1 = res.c32["gateway"], res.c1["gateway"]
            tail = _med(t1, "p99_ms") / _med(g1, "p99_ms")
            added = own - _med(g, "own_cpu_us_per_req") + writer
            lines += [
                _row("p99 (1 conn): telemetry on / telemetry off", f"{tail:.2f}x", "≤ 1.5x", tail <= 1.5),
                _row("telemetry CPU, gateway process + writer", f"{added:.1f} µs/req", "≤ 10 µs/req",
                     added <= 10),
                _row("full telemetry / baseline req/s (32 conn), this placement", f"{ratio:.3f}", "≥ 0.90",
                     ratio >= 0.90),
            ]
    return [*lines, ""]


def _threads(res: Results) -> list[str]:
    """Where the telemetry target's CPU went, per thread group, over all rounds of each connection count."""
    lines: list[str] = []
    for label, runs in (("1 conn", res.c1.get("telemetry", [])), ("32 conn", res.c32.get("telemetry", []))):
        total: dict[GroupKey, ThreadUse] = {}
        for run in runs:
            add(total, run.threads)
        if total:
            lines += table(f"telemetry target, {label}", total, sum(x.requests for x in runs))
    return lines


def _rss(res: Results, args: argparse.Namespace) -> list[str]:
    if not res.rss:
        return []
    r = res.rss
    return [f"RSS under {args.rss_connections:,} concurrent connections for {args.rss_seconds:g} s "
            f"({LABELS[res.rss_target]}): gateway process {r['idle']:.0f} MB idle, {r['peak']:.0f} MB peak; "
            f"its child processes (telemetry writer) {r['child']:.0f} MB peak; "
            f"{r['requests']:,.0f} requests, "
            f"{r['errors']:,.0f} errors, p99 {r['p99']:.1f} ms.", ""]


def render(res: Results, args: argparse.Namespace, loader: str, pinned: bool) -> str:
    lines = _header(args, loader, pinned) + _table(res) + _comparisons(res) + _threads(res) + _rss(res, args)
    lines += [f"- {n}" for n in res.notes]
    return "\n".join(lines).rstrip() + "\n"
