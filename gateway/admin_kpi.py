"""Admin routes of this feature (registered by gateway.admin)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Register this feature's admin routes (none yet)."""
