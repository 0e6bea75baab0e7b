"""Start-up failures as one clear sentence: what could not start, where, and why.

``loomgate serve`` and ``loomgate demo`` print it on one line and exit 1, never a traceback.  The checks
here run before anything starts, for what would otherwise surface later as a retry loop: an embedded
store that another process holds, or a data directory that is a file.  Store outages of a remote store
(``http://``) are not start-up failures: records spool until it is back.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from gateway.config import Config


class StartupError(Exception):
    """The gateway cannot start; the message is the whole explanation."""


def describe(exc: BaseException) -> str:
    """An exception as a short phrase, without the exception's class noise."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _directory_problem(path: Path, key: str) -> str | None:
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                return f"{key}: {path} cannot be a directory: {p} is a file"
            if p == path and not os.access(p, os.W_OK | os.X_OK):
                return f"{key}: directory {p} is not writable"
            return None
    return None


def _lock_holder(store_dir: Path) -> str | None:
    """Who holds the embedded store's lock (ClickHouse flocks ``status`` in its data directory), or None."""
    status = store_dir / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None  # no store yet, or nothing to lock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                return None
            with contextlib.suppress(OSError):
                first = status.read_text(encoding="utf-8", errors="replace").splitlines()
                if first and first[0].startswith("PID:"):
                    return f"process {first[0][4:].strip()}"
            return "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _driver_problem(config: Config, dsn: str) -> str | None:
    """chDB is the optional ``embedded`` extra: without it a chdb:// store would only ever retry."""
    from collectors.store import StoreError, require_driver

    try:
        require_driver(dsn)
    except StoreError as exc:
        return f"{config.source}: telemetry.store: {exc}"
    return None


def preflight(config: Config) -> None:
    """Raise ``StartupError`` for what would keep telemetry from ever working."""
    t = config.telemetry
    if not t.enabled:
        return
    problem = _directory_problem(Path(t.data_dir), f"{config.source}: telemetry.data_dir")
    if problem is None and t.spool.dir:
        problem = _directory_problem(Path(t.spool.dir), f"{config.source}: telemetry.spool.dir")
    dsn = config.store_dsn
    if problem is None and dsn.startswith("chdb://"):
        problem = _driver_problem(config, dsn)
    if problem is None and t.write_store and dsn.startswith("chdb://"):
        store_dir = Path(dsn[len("chdb://") :])
        problem = _directory_problem(store_dir, f"{config.source}: telemetry.store")
        holder = _lock_holder(store_dir) if problem is None else None
        if holder is not None:
            problem = (
                f"{config.source}: telemetry.store: the embedded store {store_dir} is in use by {holder} "
                "(one process at a time; stop it or query through its admin API)"
            )
    if problem is not None:
        raise StartupError(problem)
