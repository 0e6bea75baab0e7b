"""Whether telemetry is being written, for ``/readyz`` and the status page.

The gateway keeps serving while the store is down (records wait in the spool), so "the store answers" is
not enough: records spooled longer than ``telemetry.unwritten_alert_after`` with nothing reaching the store
mean the tables are falling behind.  One check, shown by both (the page's banner: ``status.html``).
"""

from __future__ import annotations

from gateway.services import Services


async def telemetry_unwritten(services: Services) -> str | None:
    """Why telemetry is not being written, or None (also None when telemetry is off)."""
    telemetry = services.telemetry
    if telemetry is None:
        return None
    try:
        problem: str | None = await telemetry.unwritten()
    except Exception as exc:  # the writer is gone or does not answer: nothing is being written either
        return f"telemetry writer status unavailable: {type(exc).__name__}"
    return problem

