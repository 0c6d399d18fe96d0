"""Command-line programs: ``sunspec-recv`` (also ``python -m sunspec``) and ``sunspec-sim``."""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import logging
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from .kernels import PRODUCTS
from .receiver import Receiver

__all__ = ["format_status", "recv_main", "sim_main"]

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


def _add_reporting_arguments(p: argparse.ArgumentParser) -> None:
    """--status-interval and --log-level, the same in every program."""
    p.add_argument("--status-interval", type=float, default=10.0,
                   help="log a one-line status every N seconds, 0 = never "
                   "(default: %(default)s)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="INFO",
                   help="logging level (default: %(default)s)")


def _defaults(cls: type) -> dict[str, Any]:
    """Default values of a class's constructor parameters: CLI defaults are the same."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


def recv_parser() -> argparse.ArgumentParser:
    d = _defaults(Receiver)
    p = argparse.ArgumentParser(
        prog="sunspec-recv",
        description="Receive a sunspec / OVRO-LWA spectrum stream into a ring buffer and "
        "report its status.",
    )
    p.add_argument("--addr", default=d["addr"],
                   help="address of the sender's PUB socket (default: %(default)s)")
    p.add_argument("--port", type=int, default=d["port"],
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
    _add_reporting_arguments(p)
    p.add_argument("--demo", action="store_true",
                   help="also run the simulator in this process, on a free loopback port, "
                   "and receive from it (ignores --addr/--port/--endpoint)")
    web = p.add_argument_group("live view (needs sunspec[web])")
    web.add_argument("--web", action="store_true",
                     help="serve the live waterfall page and its read-only API")
    web.add_argument("--web-host", default="127.0.0.1",
                     help="address the page is served on (default: %(default)s; 0.0.0.0 "
                     "serves every interface)")
    web.add_argument("--web-port", type=int, default=9527,
                     help="port of the page (default: %(default)s)")
    snap = p.add_argument_group("PNG snapshots (needs sunspec[snapshot])")
    snap.add_argument("--snapshot-dir", default=None,
                      help="write a two-panel PNG (spectrum, waterfall) here periodically")
    snap.add_argument("--snapshot-interval", type=float, default=10.0,
                      help="seconds between snapshots (default: %(default)s)")
    snap.add_argument("--snapshot-keep", type=int, default=100,
                      help="snapshots kept; older ones are deleted (default: %(default)s)")
    arch = p.add_argument_group("archive (needs sunspec[archive])")
    arch.add_argument("--archive-dir", default=None,
                      help="write every received frame to files here")
    arch.add_argument("--archive-format", choices=("hdf5", "fits"), default="hdf5",
                      help="hdf5: the OVRO-LWA power-beam layout; fits: the e-CALLISTO "
                      "layout (default: %(default)s)")
    arch.add_argument("--archive-span", type=int, default=900,
                      help="seconds of UTC per file, aligned to the clock (default: "
                      "%(default)s)")
    arch.add_argument("--archive-sun-above", type=float, default=None, metavar="DEG",
                      help="archive only while the Sun is above DEG degrees elevation at OVRO")
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


def _optional(module: str, extra: str, flag: str):
    """Import an optional part of sunspec, or end with a message naming the extra it needs."""
    try:
        return importlib.import_module(module, __package__)
    except ImportError as exc:
        raise SystemExit(f"{flag} needs sunspec[{extra}]: pip install 'sunspec[{extra}]' "
                         f"({exc})") from None


def _start_consumers(args: argparse.Namespace, receiver: Receiver, running: ExitStack) -> None:
    """Start what reads the ring from its own thread: live view, snapshots, archive."""
    if args.web:
        server = _optional(".web", "web", "--web").serve(receiver, host=args.web_host,
                                                           port=args.web_port)
        running.callback(server.stop)
        log.info("live view on %s", server.url)
    if args.snapshot_dir:
        snapshot = _optional(".snapshot", "snapshot", "--snapshot-dir")
        running.enter_context(snapshot.SnapshotWriter(receiver, args.snapshot_dir,
                                                      interval=args.snapshot_interval,
                                                      keep=args.snapshot_keep))
    if args.archive_dir:
        archive = _optional(".archive", "archive", "--archive-dir")
        writer = archive.start_archive(receiver, args.archive_dir, fmt=args.archive_format,
                                       span=args.archive_span, sun_above=args.archive_sun_above)
        running.callback(writer.stop)


def recv_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-recv``."""
    args = recv_parser().parse_args(argv)
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    with ExitStack() as running:
        endpoint = args.endpoint
        if args.demo:
            from .sim import SimulatedStream

            demo = running.enter_context(SimulatedStream(port=0, wait_subscribers=1))
            endpoint = demo.endpoint
            log.info("demo: simulated recorder publishing on %s", endpoint)
        receiver = Receiver(
            args.addr, args.port, endpoint=endpoint, buffer_length=args.buffer_length,
            product=args.product, pol=args.pol, factor=args.factor, beam=args.beam,
            gc_interval=args.gc_interval, chan0=args.chan0,
        )
        # consumers first, so that at exit the receiver stops first and they drain its ring
        _start_consumers(args, receiver, running)
        running.enter_context(receiver)
        while not stop.wait(args.status_interval or None):
            log.info("status: %s", format_status(receiver.get_buffer_status()))
    log.info("final status: %s", format_status(receiver.get_buffer_status()))
    return 0


def _utc(text: str) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return t.replace(tzinfo=datetime.timezone.utc) if t.tzinfo is None else t


def _config_arguments(p: argparse.ArgumentParser) -> None:
    """One option per :class:`sunspec.sim.SimConfig` field (``--field-name``)."""
    import dataclasses

    from .sim import ACTIVITY, SimConfig

    g = p.add_argument_group("simulated sky (sunspec.sim.SimConfig; unset rates come from "
                             "--activity)")
    for f in dataclasses.fields(SimConfig):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"]
        if f.name == "activity":
            g.add_argument(flag, choices=list(ACTIVITY), default=f.default,
                           help=f"{text} (default: %(default)s)")
        elif f.default is None:
            g.add_argument(flag, type=float, default=None,
                           help=f"{text} (default: from --activity)")
        else:
            g.add_argument(flag, type=type(f.default), default=f.default,
                           help=f"{text} (default: %(default)s)")


def sim_parser() -> argparse.ArgumentParser:
    from .sim import DEFAULT_CHAN0, SimulatedStream, Simulator

    d = _defaults(Simulator)
    ds = _defaults(SimulatedStream)
    p = argparse.ArgumentParser(
        prog="sunspec-sim",
        description="Stream synthetic OVRO-LWA power-beam spectra (quiet Sun, type II/III/IV "
        "bursts, spikes, RFI, drifts) through the recorder's averaging and publishing path, "
        "and optionally write the ground truth of every event.",
    )
    p.add_argument("--addr", default=ds["addr"],
                   help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=ds["port"],
                   help="port to bind, 0 = any free one (default: %(default)s)")
    p.add_argument("--endpoint", default=None,
                   help="full ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:30001; overrides "
                   "--addr/--port")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=ds["speed"],
                       help="data seconds per wall-clock second (default: %(default)s, real "
                       "time)")
    speed.add_argument("--fast", action="store_true", help="run as fast as possible")
    p.add_argument("--duration", type=float, default=ds["duration"],
                   help="seconds of data to stream, then stop (default: until interrupted)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="random seed; the same seed gives the same data (default: %(default)s)")
    p.add_argument("--nbeam", type=int, default=d["nbeam"], help="beams (default: %(default)s)")
    p.add_argument("--nchan", type=int, default=d["nchan"],
                   help="channels (default: %(default)s)")
    p.add_argument("--chan0", type=int, default=DEFAULT_CHAN0,
                   help="first recorder channel (default: %(default)s, 14.4-87.8 MHz for "
                   "3072 channels)")
    p.add_argument("--ntime-gulp", type=int, default=d["ntime_gulp"],
                   help="spectra per recorder gulp (default: %(default)s)")
    p.add_argument("--navg", type=int, default=d["navg"],
                   help="raw spectra integrated per recorder spectrum (default: %(default)s)")
    frame = p.add_mutually_exclusive_group()
    frame.add_argument("--nint", type=int, default=None,
                       help="spectra averaged per frame (default: half a gulp, as deployed)")
    frame.add_argument("--interval", type=float, default=None,
                       help="seconds of data per frame (instead of --nint)")
    p.add_argument("--frame-level", action="store_true",
                   help="draw averaged frames directly (same statistics, ~1000x cheaper) "
                   "instead of simulating every recorder spectrum")
    p.add_argument("--no-noise", action="store_true",
                   help="send expected values, without radiometer noise")
    p.add_argument("--beam", type=int, default=ds["beam"],
                   help="beam number to put in headers (default: none)")
    p.add_argument("--sndhwm", type=int, default=ds["sndhwm"],
                   help="messages queued per subscriber before it loses some "
                   "(default: %(default)s)")
    p.add_argument("--wait-subscribers", type=int, default=ds["wait_subscribers"],
                   help="wait up to 10 s for this many subscribers before the first frame "
                   "(default: %(default)s)")
    p.add_argument("--start", type=_utc, default=None, metavar="UTC",
                   help="UTC of the first spectrum, ISO 8601, e.g. 2024-05-14T17:00:00 "
                   "(default: now); the same seed and start give the same data and truth")
    p.add_argument("--truth", default=None, metavar="FILE",
                   help="write the ground truth (JSON lines, one record per event) here")
    p.add_argument("--truth-only", action="store_true",
                   help="write --truth for --duration and exit without making spectra")
    _config_arguments(p)
    _add_reporting_arguments(p)
    return p


def _start_tag(start: datetime.datetime, navg: int) -> int:
    """The time tag of ``start`` on a spectrum boundary."""
    from .clock import datetime_to_tag, ticks_per_spectrum

    tps = ticks_per_spectrum(navg)
    return datetime_to_tag(start) // tps * tps


def sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-sim``."""
    import dataclasses

    from .sim import SimConfig, SimulatedStream, write_truth

    parser = sim_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    if args.truth_only and (args.truth is None or args.duration is None):
        parser.error("--truth-only needs --truth FILE and --duration")
    try:
        config = SimConfig(**{f.name: getattr(args, f.name)
                              for f in dataclasses.fields(SimConfig)})
        stream = SimulatedStream(
            args.addr, args.port, endpoint=args.endpoint,
            speed=None if args.fast else args.speed, duration=args.duration, nint=args.nint,
            interval=args.interval, sndhwm=args.sndhwm, beam=args.beam,
            wait_subscribers=args.wait_subscribers, frame_level=args.frame_level,
            nbeam=args.nbeam, nchan=args.nchan, chan0=args.chan0, ntime_gulp=args.ntime_gulp,
            navg=args.navg, seed=args.seed, config=config, noise=not args.no_noise,
            start_tag=None if args.start is None else _start_tag(args.start, args.navg))
    except ValueError as exc:
        parser.error(str(exc))

    def truth(duration: float) -> None:
        write_truth(args.truth, stream.sim.truth(duration, stream.nint))
        log.info("truth for %.1f s of data written to %s", duration, args.truth)

    if args.truth and args.duration is not None:
        truth(args.duration)
    if args.truth_only:
        return 0
    stop = _stop_event_on_signals()
    with stream:
        log.info("sunspec-sim publishing on %s", stream.endpoint)
        last = time.monotonic()
        while stream.running and not stop.wait(0.2):
            if args.status_interval and time.monotonic() - last >= args.status_interval:
                last = time.monotonic()
                log.info("status: %s", format_sim_status(stream.stats()))
    log.info("final status: %s", format_sim_status(stream.stats()))
    if args.truth and args.duration is None:
        truth(stream.frames_done * stream.nint * stream.sim.spectrum_seconds)
    return 1 if stream.error is not None else 0


def format_sim_status(st: dict[str, Any]) -> str:
    """One line of a simulated stream's counters."""
    return (f"gulps {st['gulps']} frames {st['frames']} sent {st.get('sent', 0)} dropped "
            f"{st.get('dropped', 0)} seq {st.get('seq', 0)} subscriptions "
            f"{st.get('subscriptions', 0)} late {st['late_s']:.3f}s")
