"""Command-line programs: ``sunspec-recv`` (also ``python -m sunspec``) and ``sunspec-sim``."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from .kernels import PRODUCTS
from .receiver import Receiver

__all__ = ["format_status", "recv_main"]

log = logging.getLogger("sunspec")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _stop_event_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so the program can end cleanly with status 0."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _product(text: str) -> str | int:
    if text in PRODUCTS:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(PRODUCTS)} or a pol index, got {text!r}") from None


def recv_parser() -> argparse.ArgumentParser:
    d = Receiver.__init__.__kwdefaults__  # CLI defaults are the constructor's
    p = argparse.ArgumentParser(
        prog="sunspec-recv",
        description="Receive a sunspec / OVRO-LWA spectrum stream into a ring buffer and "
        "report its status.",
    )
    p.add_argument("--addr", default=Receiver.__init__.__defaults__[0],
                   help="address of the sender's PUB socket (default: %(default)s)")
    p.add_argument("--port", type=int, default=Receiver.__init__.__defaults__[1],
                   help="port of the sender (default: %(default)s; deployed recorders use "
                   "30000 + beam)")
    p.add_argument("--endpoint", default=None,
                   help="full ZeroMQ endpoint, e.g. tcp://host:port; overrides --addr/--port")
    p.add_argument("--buffer-length", type=int, default=d["buffer_length"],
                   help="frames kept in the ring (default: %(default)s, ~10 min at 2/s)")
    p.add_argument("--gc-interval", type=int, default=d["gc_interval"],
                   help="collect garbage every N frames, 0 = never (default: %(default)s)")
    p.add_argument("--product", type=_product, default=d["product"],
                   help="product kept per row: XX, YY, XY_real, XY_imag, I = (XX+YY)/2, "
                   "V = XY_imag, or a pol index (default: %(default)s)")
    p.add_argument("--pol", type=int, default=None,
                   help="pol index to keep; same as --product INDEX")
    p.add_argument("--factor", type=int, default=d["factor"],
                   help="average this many adjacent channels (default: %(default)s)")
    p.add_argument("--beam", type=int, default=d["beam"],
                   help="beam index within the frame (default: %(default)s)")
    p.add_argument("--chan0", type=int, default=d["chan0"],
                   help="first recorder channel, for frequencies of version 1 streams "
                   "(the field's receivers assumed 600)")
    p.add_argument("--status-interval", type=float, default=10.0,
                   help="log a one-line status every N seconds, 0 = never "
                   "(default: %(default)s)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="INFO",
                   help="logging level (default: %(default)s)")
    return p


def format_status(st: dict[str, Any]) -> str:
    """One line of the receiver's status for logs and terminals."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rejected = ",".join(f"{k}={v}" for k, v in st["rejected"].items() if v) or "0"
    return (
        f"frames {st['frames_received']} held {st['frames_held']}/{st['buffer_shape'][0]} "
        f"rate {st['frame_rate']:.2f}/s delay {num(st['delay_s'], '.3f')}s "
        f"age {num(st['data_age_s'], '.3f')}s lost {st['lost']} rejected {rejected} "
        f"restarts {st['restarts']} mean {num(st['latest_mean'], '.4g')} "
        f"rss {st['rss_mb']:.0f}MiB"
    )


def recv_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-recv``."""
    args = recv_parser().parse_args(argv)
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    receiver = Receiver(
        args.addr, args.port, endpoint=args.endpoint, buffer_length=args.buffer_length,
        product=args.product, pol=args.pol, factor=args.factor, beam=args.beam,
        gc_interval=args.gc_interval, chan0=args.chan0,
    )
    with receiver:
        while not stop.wait(args.status_interval or None):
            log.info("status: %s", format_status(receiver.get_buffer_status()))
    log.info("final status: %s", format_status(receiver.get_buffer_status()))
    return 0
