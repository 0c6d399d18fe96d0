"""Live view of a receiver's ring in the browser (``sunspec[web]``: needs aiohttp).

:func:`serve` starts it in its own thread; the page, its script and styles are package data
under ``static/``.
"""

from __future__ import annotations

from .server import WebServer, serve

__all__ = ["WebServer", "serve"]
