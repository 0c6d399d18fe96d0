"""Live view of a stream's ring in the browser (``sunspec[web]``: needs aiohttp).

:func:`serve` starts it in its own thread; the page, its script and styles are package data
under ``static/``. Importing this package needs no aiohttp (the CLI reads the defaults);
``WebServer`` and ``serve`` import the server on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import WebServer, serve

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_VIEWERS", "DEFAULT_PORT",
           "DEFAULT_REQUEST_TIMEOUT", "WebServer", "serve"]

#: the page is served on loopback unless told otherwise
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9527
#: open connections at most (lowered to fit the file-descriptor limit)
DEFAULT_MAX_CONNECTIONS = 512
#: WebSocket viewers at most
DEFAULT_MAX_VIEWERS = 100
#: seconds a connection may take to send a whole request (or stay idle between requests)
DEFAULT_REQUEST_TIMEOUT = 20.0


def __getattr__(name: str) -> Any:
    if name in ("WebServer", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
