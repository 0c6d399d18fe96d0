"""The receiving thread's socket calls in one compiled step (:class:`MessagePoller`).

pyzmq's Python-level calls (a poll, a receive and an option read per part) cost the receiver
more than everything else it does per message. The compiled poller makes the same libzmq
calls, through the functions of the very library pyzmq loaded: looked up once, by name, in
pyzmq's own extension module (whose dependencies include libzmq).
"""

from __future__ import annotations

import ctypes
from functools import cache

import zmq
from zmq.backend.cython import _zmq

from . import _core

__all__ = ["WAIT_MESSAGE", "WAIT_MONITOR", "WAIT_NOTHING", "MessagePoller", "message_poller"]

MessagePoller = _core.MessagePoller

WAIT_NOTHING: int = _core.WAIT_NOTHING
WAIT_MESSAGE: int = _core.WAIT_MESSAGE
WAIT_MONITOR: int = _core.WAIT_MONITOR


@cache
def _libzmq_functions() -> tuple[int, int, int]:
    """Addresses of zmq_poll, zmq_recv and zmq_getsockopt in the libzmq pyzmq uses."""
    if not issubclass(zmq.Socket, _zmq.Socket):  # another backend may load another libzmq
        raise RuntimeError("sunspec's receiver needs pyzmq's Cython backend, not "
                           f"{zmq.Socket.__mro__[1].__module__}")
    lib = ctypes.CDLL(_zmq.__file__)
    return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0  # type: ignore
                 for name in ("zmq_poll", "zmq_recv", "zmq_getsockopt"))


def message_poller(sock: zmq.Socket, monitor: zmq.Socket, wake_fd: int, topic: bytearray,
                   header: bytearray, payload: memoryview) -> MessagePoller:
    """A poller of ``sock``, its ``monitor`` and ``wake_fd`` (-1: none) receiving into the
    three buffers."""
    return _core.MessagePoller(_libzmq_functions(), (zmq.RCVMORE, zmq.POLLIN, zmq.DONTWAIT),
                               zmq.ZMQError, sock, sock.underlying, monitor, monitor.underlying,
                               wake_fd, topic, header, payload)
