"""Per-thread CPU time and scheduling policy of the processes under test, read from /proc/PID/task/*/stat.

Where a telemetry cost or a latency tail comes from is a question about threads: the gateway's event loop,
its telemetry sender/receiver/spill threads, the writer's Python thread and the embedded ClickHouse's pools
(inserts' view pipelines, merges, the background schedule pool).  ``bench/run.py`` samples every thread of
the gateway process and of its children before and after each load run and reports the difference per
thread group (thread name without its trailing number, scheduling policy), in µs per request.  The policy
column is how to check that every writer thread runs at ``writer_priority`` (``idle`` = SCHED_IDLE), threads
started after the writer lowered its priority included.

    python bench/threads.py PID [PID ...]     # one snapshot: CPU seconds so far per thread group
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_POLICIES = {0: "normal", 1: "fifo", 2: "rr", 3: "batch", 5: "idle", 6: "deadline"}
_NUMBERED = re.compile(r"[-_ ]?\d+$")


@dataclass(frozen=True, slots=True)
class GroupKey:
    process: str  # "gateway" or "writer"
    thread: str  # thread name without its trailing number
    policy: str  # scheduling policy: normal, batch, idle, ...


@dataclass(frozen=True, slots=True)
class ThreadUse:
    cpu_s: float  # user + system CPU seconds
    threads: int


def _stat(path: str) -> tuple[str, int, float] | None:
    """(name, policy, CPU seconds) of one thread; None when it exited meanwhile."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is /proc's field 3 (state): utime, stime are fields 14, 15 and policy is field 41
    return name, int(fields[38]), (int(fields[11]) + int(fields[12])) / _TICK


def snapshot(processes: Mapping[str, Iterable[int]]) -> dict[GroupKey, ThreadUse]:
    """CPU so far per thread group of every pid, e.g. ``{"gateway": [pid], "writer": [child pids]}``."""
    out: dict[GroupKey, ThreadUse] = {}
    for label, pids in processes.items():
        for pid in pids:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                st = _stat(f"/proc/{pid}/task/{tid}/stat")
                if st is None:
                    continue
                name, policy, cpu = st
                key = GroupKey(label, _NUMBERED.sub("", name) or name, _POLICIES.get(policy, str(policy)))
                prev = out.get(key, ThreadUse(0.0, 0))
                out[key] = ThreadUse(prev.cpu_s + cpu, prev.threads + 1)
    return out


def difference(before: Mapping[GroupKey, ThreadUse],
               after: Mapping[GroupKey, ThreadUse]) -> dict[GroupKey, ThreadUse]:
    """CPU used between two snapshots per group (threads counted as in ``after``)."""
    return {k: ThreadUse(max(0.0, v.cpu_s - before.get(k, ThreadUse(0.0, 0)).cpu_s), v.threads)
            for k, v in after.items()}


def add(total: dict[GroupKey, ThreadUse], more: Mapping[GroupKey, ThreadUse]) -> None:
    for k, v in more.items():
        prev = total.get(k, ThreadUse(0.0, 0))
        total[k] = ThreadUse(prev.cpu_s + v.cpu_s, max(prev.threads, v.threads))


def table(title: str, use: Mapping[GroupKey, ThreadUse], requests: int, min_us: float = 0.05) -> list[str]:
    """Markdown rows, largest first: µs of CPU per request per thread group (groups under ``min_us``
    folded into one row per process, so the policy census stays complete)."""
    lines = [f"| {title}: process | thread | policy | threads | CPU µs/req |", "|---|---|---|---:|---:|"]
    small: dict[str, list[tuple[GroupKey, ThreadUse]]] = {}
    for key, u in sorted(use.items(), key=lambda kv: -kv[1].cpu_s):
        per = u.cpu_s / requests * 1e6 if requests else 0.0
        if per < min_us:
            small.setdefault(key.process, []).append((key, u))
            continue
        lines.append(f"| {key.process} | {key.thread} | {key.policy} | {u.threads} | {per:.2f} |")
    for process, rest in small.items():
        policies = ", ".join(sorted({k.policy for k, _ in rest}))
        n = sum(u.threads for _, u in rest)
        lines.append(f"| {process} | {len(rest)} other groups | {policies} | {n} | < {min_us} each |")
    return [*lines, ""]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    use = snapshot({f"pid {p}": [int(p)] for p in argv})
    for key, u in sorted(use.items(), key=lambda kv: -kv[1].cpu_s):
        print(f"{key.process}\t{key.thread}\t{key.policy}\t{u.threads} threads\t{u.cpu_s:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
