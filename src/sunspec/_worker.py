"""Worker: the start/stop life cycle shared by sunspec's background threads, and their health."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any, TypeVar

__all__ = ["WakePipe", "Worker"]

log = logging.getLogger(__name__)

W = TypeVar("W", bound="Worker")


class WakePipe:
    """A pipe a thread's poll watches (``fd``), written to by :meth:`wake`: a thread waiting
    with a long timeout still ends at once when it is stopped."""

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already full of unread wake-ups
            os.write(self._write_fd, b"\0")

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write_fd)


class Worker:
    """Runs :meth:`_run` in one daemon thread from :meth:`start` until :meth:`stop`.

    Subclasses implement ``_run(*args)``, which must return soon after ``self._stop`` is set,
    and may override ``_prepare()``: it runs in the caller's thread before the thread starts
    (bind sockets, make directories; its exceptions reach the caller) and returns the
    arguments of ``_run``. ``stop_timeout`` is how long :meth:`stop` waits by default.

    An exception that ends ``_run`` is caught, logged and kept in :attr:`failure`: the worker
    is then ``"failed"`` (see :meth:`health`) until it is started again.

    A ``_run`` that waits on file descriptors may also watch the one of :meth:`_wake_pipe`
    (made in ``_prepare``): :meth:`stop` writes to it after setting ``self._stop``.
    """

    stop_timeout: float = 5.0

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._wakeup: WakePipe | None = None

    def _wake_pipe(self) -> WakePipe:
        """A new wake pipe for the thread about to start (the previous one, whose thread has
        ended, is closed). It lives until :meth:`stop` has seen the thread end."""
        if self._wakeup is not None:
            self._wakeup.close()
        self._wakeup = WakePipe()
        return self._wakeup

    def _thread_name(self) -> str:
        return f"sunspec-{type(self).__name__}"

    def _prepare(self) -> tuple[Any, ...]:
        return ()

    def _run(self, *args: Any) -> None:
        raise NotImplementedError

    def _main(self, *args: Any) -> None:
        """The thread: ``_run``, with the exception that ends it recorded and logged."""
        try:
            self._run(*args)
        except BaseException as exc:  # a worker's death must be visible, not silent
            self._failure = exc
            log.error("%s failed: %r", threading.current_thread().name, exc, exc_info=True)

    def start(self: W) -> W:
        """Start the thread (no-op if it is running); returns self.

        Raises RuntimeError if a thread told to stop has still not ended after
        ``stop_timeout``: two threads never run at once.
        """
        thread = self._thread
        if thread is not None and thread.is_alive():
            if not self._stop.is_set():
                return self
            thread.join(self.stop_timeout)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} has not stopped yet; start() refused")
        self._stop.clear()
        args = self._prepare()
        self._failure = None
        self._thread = threading.Thread(target=self._main, args=args, daemon=True,
                                        name=self._thread_name())
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end and wait for it (idempotent). If it has not ended within the
        timeout, it is logged and kept: :meth:`start` refuses until it has ended."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        if self._wakeup is not None:
            self._wakeup.wake()
        thread.join(self.stop_timeout if timeout is None else timeout)
        if thread.is_alive():
            log.error("%s did not stop within %.1f s", thread.name,
                      self.stop_timeout if timeout is None else timeout)
        else:
            self._thread = None
            if self._wakeup is not None:
                self._wakeup.close()
                self._wakeup = None

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def failure(self) -> BaseException | None:
        """The exception that ended the thread, if one did (cleared by :meth:`start`)."""
        return self._failure

    def health(self) -> dict[str, Any]:
        """``{"health": "failed", "health_reason": ...}`` if the thread died of an exception,
        else ``{"health": "ok", "health_reason": None}`` (subclasses refine it)."""
        if self._failure is not None:
            return {"health": "failed",
                    "health_reason": f"thread ended by {type(self._failure).__name__}: "
                                     f"{self._failure}"}
        return {"health": "ok", "health_reason": None}

    def __enter__(self: W) -> W:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
