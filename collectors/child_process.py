"""Start a Loomgate process (the telemetry writer, a gateway worker) with a pipe to it.

The child runs ``python -m MODULE --fd N ...`` with the same interpreter (the wire format relies on it) and
this tree first on ``PYTHONPATH``, so it runs the same code as its parent whatever the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection, Pipe
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)


def spawn_module(module: str, *args: str) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start ``module`` with one end of a duplex pipe (its descriptor as ``--fd``); returns the other end."""
    parent, child = Pipe(duplex=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--fd", str(child.fileno()), *args],
            pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
        )
    finally:
        child.close()
    return proc, parent
