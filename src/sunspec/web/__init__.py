"""Live view of a stream's ring in the browser (``sunspec[web]``: needs aiohttp).

:func:`serve` starts it in its own thread; the page, its script and styles are package data
under ``static/``. Importing this package needs no aiohttp (the CLI reads the defaults);
``WebServer`` and ``serve`` import the server on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import WebServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "WebServer", "serve"]

#: the page is served on loopback unless told otherwise
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9527


def __getattr__(name: str) -> Any:
    if name in ("WebServer", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
