"""ZeroMQ endpoint syntax, checked before any socket is made.

A receiver's or sender's endpoint is ``tcp://HOST:PORT``, ``ipc://PATH`` or ``inproc://NAME``.
HOST is an IPv4 address, a bracketed IPv6 address, a host (or interface) name, or ``*`` (bind
only); PORT is 1-65535 (bind also ``0`` or ``*``: any free port). Nothing is resolved here,
so a check never waits on DNS.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["check_endpoint"]

_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]*\]|[^:/\[\]]*):(?P<port>[^:]*)$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_OTHER = re.compile(r"^(ipc|inproc)://\S+$")


def _host_problem(host: str, bind: bool) -> str | None:
    if host == "*":
        return None if bind else "'*' can only be bound, not connected to"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"{host} is not an IPv6 address"
        return None
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host!r} is not an IPv4 address"
        return None
    if not host or len(host) > 253 or not all(_LABEL.match(p) for p in host.split(".")):
        return f"{host!r} is not a host name"
    return None


def check_endpoint(endpoint: str, *, bind: bool = False) -> str:
    """Return ``endpoint`` if its syntax is possible, else raise ValueError saying why."""
    if not isinstance(endpoint, str):
        raise ValueError(f"endpoint must be a string, got {type(endpoint).__name__}")
    if _OTHER.match(endpoint):
        return endpoint
    m = _TCP.match(endpoint)
    if not m:
        raise ValueError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or "
                         "inproc://NAME")
    problem = _host_problem(m["host"], bind)
    port = m["port"]
    lowest = 0 if bind else 1
    if problem is None and not (bind and port == "*") and not (
            port.isdigit() and lowest <= int(port) <= 65535):
        problem = f"port {port!r} is not in {lowest}-65535"
    if problem is not None:
        raise ValueError(f"endpoint {endpoint!r}: {problem}")
    return endpoint
