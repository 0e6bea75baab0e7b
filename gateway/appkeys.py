"""Typed application state shared between the gateway's partner and admin applications."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.services import Services

CONFIG_KEY = web.AppKey("loomgate.config", Config)
SERVICES_KEY = web.AppKey("loomgate.services", Services)
