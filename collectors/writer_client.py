"""Telemetry of a gateway worker: batches go to a writer someone else started and supervises.

With ``loomgate serve --workers N`` the supervisor starts the one writer that owns the store and restarts it
if it dies; each worker connects to it (``collectors.writer_links``) instead of starting its own.  Everything
else is ``collectors.exporter.Telemetry`` unchanged: batches are held until acknowledged, spilled to the
shared spool when the writer falls behind or goes away, and the writer replays them.  When the connection
is lost, a worker spills its unacknowledged batches and reconnects (with backoff) once the supervisor's new
writer listens; it never starts a writer itself, so a writer crash is one restart, not N.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from multiprocessing.connection import Client, Connection
from typing import Any

from collectors.exporter import CLOSE_TIMEOUT, Telemetry, writer_settings
from collectors.spool import Spool
from gateway.config import Config

log = logging.getLogger("loomgate.telemetry")

RECONNECT_DELAY_INITIAL = 0.1
RECONNECT_DELAY_MAX = 2.0  # the supervisor restarts the writer within a few seconds


class LinkedTelemetry(Telemetry):
    """A ``Telemetry`` connected to a running writer's socket rather than owning a writer process."""

    def __init__(self, config: Config, spool: Spool, address: str, authkey: bytes) -> None:
        super().__init__(config.telemetry, writer_settings(config), spool)
        self._address = address
        self._authkey = authkey
        self.reconnects = 0

    def local_counters(self) -> dict[str, int]:
        """What this process counted itself (the writer's counters are shared by every worker)."""
        with self._lock:
            local = dict(self._local)
        local["queued"] += len(self.sink)
        return local

    async def _start(self) -> None:
        await super()._start()
        if not self._alive:  # the writer is restarting right now: keep trying in the background
            self._writer_lost()

    def _spawn(self) -> tuple[subprocess.Popen[bytes] | None, Connection]:
        conn = Client(self._address, family="AF_UNIX", authkey=self._authkey)
        return None, conn

    async def _launch(self) -> tuple[bool, str, bool]:
        try:
            return await super()._launch()
        except (OSError, EOFError) as exc:  # not listening (yet): restarting, or gone
            return False, f"cannot connect to the telemetry writer: {exc}", False
        except Exception as exc:  # the challenge failed: a stale socket of another writer
            return False, f"telemetry writer refused the connection: {type(exc).__name__}: {exc}", False

    async def _restart(self) -> None:
        delay = RECONNECT_DELAY_INITIAL
        while not self._closed:
            # Unacknowledged batches are on disk before anything new is sent (the writer replays them).
            await asyncio.to_thread(self._orphans_spilled.wait, CLOSE_TIMEOUT)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_DELAY_MAX)
            if self._closed:
                return
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            ok, error, fatal = await self._launch()
            if self._alive and not fatal:
                self.reconnects += 1
                log.info("reconnected to the telemetry writer (reconnect %d)", self.reconnects)
                if not ok:
                    log.warning("telemetry writer cannot reach the store yet (%s)", error)
                return
            log.debug("telemetry writer not reachable yet: %s", error)


async def start_linked_telemetry(config: Config, address: str, authkey: bytes) -> LinkedTelemetry:
    """Connect to the writer listening on ``address`` and return the pipeline handle."""
    settings = writer_settings(config)
    spool = await asyncio.to_thread(Spool, settings.spool_dir, config.telemetry.spool.max_bytes)
    telemetry = LinkedTelemetry(config, spool, address, authkey)
    await telemetry._start()
    return telemetry


def describe_link(telemetry: Any) -> dict[str, Any]:
    """This worker's side of telemetry, for the supervisor's statistics."""
    if not isinstance(telemetry, LinkedTelemetry):
        return {}
    return {"local": telemetry.local_counters(), "connected": telemetry.writer_alive,
            "reconnects": telemetry.reconnects}
