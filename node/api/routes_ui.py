"""Routes of the dashboard (docs/dashboard.md): static files under /ui/, no build step."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).resolve().parent.parent / "ui"


async def get_ui_root(request: web.Request) -> web.StreamResponse:
    """The dashboard's page (`/ui` redirects to `/ui/`)."""
    if request.path == "/ui":
        raise web.HTTPFound("/ui/")
    return web.FileResponse(UI_DIR / "index.html")
