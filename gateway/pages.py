"""HTML pages of the admin listener, rendered from Jinja2 templates with autoescaping.

Every admin page extends ``templates/base.html`` (navigation, favicon, viewport, stylesheet).  Values are
escaped by the template engine; the only markup passed in unescaped is SVG from ``gateway.charts``, whose
helpers escape every label they write, and it is marked with ``markupsafe.Markup`` where it is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

# Links shown on every page, in this order: (path, label).
NAV_LINKS = (("/status", "Status"), ("/insights", "Insights"), ("/", "API"))

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt variable is an error in tests, not an empty cell
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(name: str, **context: Any) -> str:
    """One page as text; ``current`` names the nav entry to mark as the page being shown."""
    context.setdefault("current", "")
    context.setdefault("signed_in", True)
    return _ENV.get_template(name).render(nav_links=NAV_LINKS, **context)


def response(name: str, *, status: int = 200, **context: Any) -> web.Response:
    return web.Response(text=render(name, **context), content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store"})


def svg(text: str) -> Markup:
    """SVG built by ``gateway.charts`` (labels escaped there) for a template."""
    return Markup(text)
