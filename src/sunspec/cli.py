"""Command-line programs: ``sunspec-recv`` (also ``python -m sunspec``), ``sunspec-sim`` and
``sunspec-replay``.

Each program is assembled here from parts that know nothing of each other: the receiver, the
consumers that read its ring (live view, snapshots, archive) and one
:class:`~sunspec.status.StatusBoard` that composes their status. Every option is checked by
its parser (a mistake ends with one usage line and exit status 2), optional extras are
checked before anything starts, and CLI defaults are read from the constructors they feed.

``sunspec-recv`` watches the composed health while it runs: a part that fails is logged at
ERROR (repeated at most once a minute while it lasts) and, unless ``--no-exit-on-failure``,
ends the program with status 1 so that a supervisor (systemd ``Restart=on-failure``)
restarts it.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, NoReturn

import zmq

from ._log import RateLimitedLog
from .endpoint import check_endpoint
from .kernels import Product
from .receiver import Receiver
from .status import StatusBoard, overall_health

__all__ = ["format_status", "recv_main", "replay_main", "sim_main"]

log = logging.getLogger("sunspec")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: exit status of sunspec-recv when a part has failed (``--exit-on-failure``)
EXIT_FAILED = 1
#: seconds between health checks of a running program
HEALTH_CHECK_S = 1.0
#: a failed part's ERROR line is repeated at most this often (s)
FAILED_REPEAT_S = 60.0


# --- option types: each rejects a bad value with a message argparse turns into exit 2 -------
def _number(kind: Callable[[str], Any], test: Callable[[Any], bool], what: str
            ) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or not test(value):  # NaN fails every test
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


_positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
_count = _number(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number > 0")
_seconds_or_off = _number(float, lambda v: 0 <= v < float("inf"), "a number of seconds >= 0")
_port = _number(int, lambda v: 1 <= v <= 65535, "a port in 1-65535")
_bind_port = _number(int, lambda v: 0 <= v <= 65535, "a port in 0-65535 (0: any free port)")
_elevation = _number(float, lambda v: -90 <= v <= 90, "degrees in -90..90")

def _endpoint(text: str) -> str:
    """A ZeroMQ endpoint to connect to (:func:`sunspec.endpoint.check_endpoint`; nothing is
    resolved here)."""
    try:
        return check_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bind_endpoint(text: str) -> str:
    """A ZeroMQ endpoint to bind (host ``*`` and port ``*`` or 0 allowed)."""
    try:
        return check_endpoint(text, bind=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _origin(text: str) -> str:
    if text != "*" and not re.fullmatch(r"https?://[^\s/]+", text):
        raise argparse.ArgumentTypeError(
            f"expected an origin such as https://host:port, or *, got {text!r}")
    return text


def _product(text: str) -> Product | int:
    try:
        return Product(text)
    except ValueError:
        pass
    try:
        index = int(text)
    except ValueError:
        index = -1
    if index < 0:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(p.value for p in Product)} or a pol index >= 0, "
            f"got {text!r}")
    return index


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(LOG_LEVELS)} (any case), got {text!r}")
    return level


# --- shared plumbing ------------------------------------------------------------------------
def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _stop_event_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so the program can end cleanly with status 0
    (handlers can only be installed from the main thread: elsewhere, e.g. a program run from
    a test's thread, the event is only set by the caller)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop

    def handler(signum: int, _frame: object) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _add_reporting_arguments(p: argparse.ArgumentParser) -> None:
    """--status-interval and --log-level, the same in every program."""
    p.add_argument("--status-interval", type=_seconds_or_off, default=10.0,
                   help="log a one-line status every N seconds, 0 = never "
                   "(default: %(default)s)")
    p.add_argument("--log-level", type=_log_level, default="INFO",
                   help=f"logging level: {', '.join(LOG_LEVELS)} (default: %(default)s)")


def _defaults(cls: Callable[..., Any]) -> dict[str, Any]:
    """Default values of a constructor's parameters: CLI defaults are the same."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


#: optional extra -> the modules it brings
_EXTRAS = {"web": ("aiohttp",), "snapshot": ("matplotlib",), "archive": ("h5py", "astropy")}


def _require_extra(parser: argparse.ArgumentParser, extra: str, flag: str) -> None:
    """End with a usage message naming the install command unless ``extra`` is installed."""
    for module in _EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            parser.error(f"{flag} needs sunspec[{extra}] ({module} is missing): "
                         f"pip install 'sunspec[{extra}]', or in a checkout "
                         f"pip install '.[{extra}]'")


def _in_use(parser: argparse.ArgumentParser, option: str, value: object,
            exc: BaseException) -> NoReturn:
    parser.error(f"{option} {value}: cannot bind ({exc}); is another program using it? "
                 f"Choose another {option}.")


def _supervise(stop: threading.Event, interval: float, read: Callable[[], dict[str, Any]],
               exit_on_failure: bool) -> int:
    """Until ``stop`` is set: check the composed status ``read()`` every second, log a
    failed part at ERROR (at most once a minute each), a change of degraded health at
    WARNING, and the status line every ``interval`` s (0: never). Returns
    :data:`EXIT_FAILED` as soon as a part has failed if ``exit_on_failure``, else 0."""
    errors = RateLimitedLog(log, FAILED_REPEAT_S)
    step = min(HEALTH_CHECK_S, interval) if interval else HEALTH_CHECK_S
    next_report = time.monotonic() + interval
    last: tuple[str, ...] = ()  # the parts not ok, last time
    while not stop.wait(step):
        try:  # e.g. no file descriptor free for a moment: report later, never end here
            status = read()
            health = overall_health(status)
            line = format_status(status)
        except Exception as exc:
            errors.log(logging.WARNING, "unreadable", "status unreadable: %r", exc)
            continue
        if health["health"] == "failed":
            for name, part in health["sections"].items():
                if part["health"] == "failed":
                    errors.log(logging.ERROR, name, "%s failed: %s", name, part["health_reason"])
            if exit_on_failure:
                log.error("exiting with status %d so that a supervisor restarts the program "
                          "(--no-exit-on-failure keeps it running)", EXIT_FAILED)
                return EXIT_FAILED
        not_ok = tuple(name for name, part in health["sections"].items()
                       if part["health"] != "ok")
        if not_ok != last and health["health"] == "degraded":
            log.warning("health degraded: %s", health["health_reason"])
        elif not_ok != last and not not_ok:
            log.info("health ok again")
        last = not_ok
        if interval and time.monotonic() >= next_report:
            next_report = time.monotonic() + interval
            log.info("status: %s", line)
    return 0


# --- sunspec-recv ---------------------------------------------------------------------------
def recv_parser() -> argparse.ArgumentParser:
    from . import archive  # its defaults only: ArchiveWriter would need the archive extra
    from . import web as dw
    from .snapshot import SnapshotWriter

    d = _defaults(Receiver)
    ds = _defaults(SnapshotWriter)
    p = argparse.ArgumentParser(
        prog="sunspec-recv",
        description="Receive a sunspec / OVRO-LWA spectrum stream into a ring buffer and "
        "report its status.",
    )
    p.add_argument("--addr", default=d["addr"],
                   help="address of the sender's PUB socket (default: %(default)s)")
    p.add_argument("--port", type=_port, default=d["port"],
                   help="port of the sender (default: %(default)s; deployed recorders use "
                   "30000 + beam)")
    p.add_argument("--endpoint", type=_endpoint, default=None,
                   help="full ZeroMQ endpoint, e.g. tcp://host:port; overrides --addr/--port")
    p.add_argument("--buffer-length", type=_positive_int, default=d["buffer_length"],
                   help="frames kept in the ring (default: %(default)s, ~10 min at 2/s)")
    p.add_argument("--gc-interval", type=_count, default=d["gc_interval"],
                   help="collect garbage every N frames, 0 = never (default: %(default)s)")
    p.add_argument("--product", type=_product, default=d["product"],
                   help="product kept per row: XX, YY, XY_real, XY_imag, I = (XX+YY)/2, "
                   "V = XY_imag, or a pol index (default: %(default)s)")
    p.add_argument("--pol", type=_count, default=None,
                   help="pol index to keep; same as --product INDEX")
    p.add_argument("--factor", type=_positive_int, default=d["factor"],
                   help="average this many adjacent channels (default: %(default)s)")
    p.add_argument("--beam-index", type=_count, default=d["beam_index"],
                   help="which beam of a multi-beam frame to keep, counted from 0 within the "
                   "frame (not the recorder's beam number; default: %(default)s)")
    p.add_argument("--chan0", type=_count, default=d["chan0"],
                   help="first recorder channel, for frequencies of version 1 streams "
                   "(the field's receivers assumed 600)")
    p.add_argument("--stall-timeout", type=_positive_float, default=d["stall_timeout"],
                   metavar="S", help="warn, and report the stream 'stalled' (health "
                   "degraded), when no frame arrived for S seconds (default: %(default)s)")
    _add_reporting_arguments(p)
    p.add_argument("--exit-on-failure", action=argparse.BooleanOptionalAction, default=True,
                   help=f"end with status {EXIT_FAILED} when a part (receiving thread, live "
                   "view, snapshots, archive, demo) has failed, so that a supervisor restarts "
                   "the program (default: %(default)s)")
    p.add_argument("--demo", action="store_true",
                   help="also run the simulator in this process, on a free loopback port, "
                   "and receive from it (ignores --addr/--port/--endpoint)")
    web = p.add_argument_group("live view (needs sunspec[web])")
    web.add_argument("--web", action="store_true",
                     help="serve the live waterfall page and its read-only API")
    web.add_argument("--web-host", default=dw.DEFAULT_HOST,
                     help="address the page is served on (default: %(default)s; 0.0.0.0 "
                     "serves every interface)")
    web.add_argument("--web-port", type=_bind_port, default=dw.DEFAULT_PORT,
                     help="port of the page (default: %(default)s)")
    web.add_argument("--web-max-connections", type=_positive_int,
                     default=dw.DEFAULT_MAX_CONNECTIONS, metavar="N",
                     help="open connections at most; more are answered 503 (default: "
                     "%(default)s, lowered to fit ulimit -n)")
    web.add_argument("--web-max-viewers", type=_positive_int, default=dw.DEFAULT_MAX_VIEWERS,
                     metavar="N", help="live viewers at most; more are answered 503 "
                     "(default: %(default)s)")
    web.add_argument("--web-request-timeout", type=_positive_float,
                     default=dw.DEFAULT_REQUEST_TIMEOUT, metavar="S",
                     help="close a connection that sent no whole request for S seconds "
                     "(default: %(default)s)")
    web.add_argument("--web-allow-origin", type=_origin, action="append", default=[],
                     metavar="ORIGIN", help="let pages of ORIGIN (e.g. https://host:port; * = "
                     "any) use the WebSocket and API; repeatable (default: same origin only)")
    snap = p.add_argument_group("PNG snapshots (needs sunspec[snapshot])")
    snap.add_argument("--snapshot-dir", default=None,
                      help="write a two-panel PNG (spectrum, waterfall) here periodically")
    snap.add_argument("--snapshot-interval", type=_positive_float, default=ds["interval"],
                      help="seconds between snapshots (default: %(default)s)")
    snap.add_argument("--snapshot-keep", type=_positive_int, default=ds["keep"],
                      help="snapshots kept; older ones are deleted (default: %(default)s)")
    arch = p.add_argument_group("archive (needs sunspec[archive])")
    arch.add_argument("--archive-dir", default=None,
                      help="write every received frame to files here")
    arch.add_argument("--archive-format", choices=archive.ARCHIVE_FORMATS,
                      default=archive.DEFAULT_FORMAT,
                      help="hdf5: the OVRO-LWA power-beam layout; fits: the e-CALLISTO "
                      "layout (default: %(default)s)")
    arch.add_argument("--archive-span", type=_positive_int, default=archive.DEFAULT_SPAN,
                      help="seconds of UTC per file, aligned to the clock (default: "
                      "%(default)s)")
    arch.add_argument("--archive-sun-above", type=_elevation, default=None, metavar="DEG",
                      help="archive only while the Sun is above DEG degrees elevation at OVRO")
    return p


def format_status(st: dict[str, Any]) -> str:
    """One line of a composed status: the stream's state and the overall health, the
    receiver's counters, then its consumers'."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    health = overall_health(st)
    why = f" ({health['health_reason']})" if health["health_reason"] else ""
    rejected = ",".join(f"{k}={v}" for k, v in st["rejected"].items() if v) or "0"
    line = (
        f"{st.get('state', '-')}, health {health['health']}{why}; "
        f"frames {st['frames_received']} held {st['frames_held']}/{st['buffer_shape'][0]} "
        f"rate {st['frame_rate']:.2f}/s delay {num(st['delay_s'], '.3f')}s "
        f"age {num(st['data_age_s'], '.3f')}s lost {st['lost']} rejected {rejected} "
        f"restarts {st['restarts']} mean {num(st['latest_mean'], '.4g')} "
        f"rss {num(st['rss_mb'], '.0f')}MiB"
    )
    for name, section in st.items():
        if isinstance(section, dict) and name != "rejected":
            summary = _SECTION_SUMMARY.get(name)
            line += f" | {name} {summary(section) if summary else ''}".rstrip()
    return line


_SECTION_SUMMARY: dict[str, Callable[[dict[str, Any]], str]] = {
    "web": lambda s: f"viewers {s.get('viewers', '-')}",
    "snapshots": lambda s: f"written {s.get('written', '-')} failed {s.get('failed', '-')}",
    "archive": lambda s: f"rows {s.get('rows_written', '-')} files "
                         f"{s.get('files_written', '-')}",
    "demo": lambda s: f"sent {s.get('sent', '-')}",
}


def _start_consumers(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     receiver: Receiver, board: StatusBoard, running: ExitStack) -> None:
    """Start what reads the ring from its own thread (live view, snapshots, archive) and
    compose their status sections on ``board``."""
    if args.web:
        from .web import serve

        try:
            server = serve(receiver, host=args.web_host, port=args.web_port,
                           status=receiver.get_buffer_status,
                           max_connections=args.web_max_connections,
                           max_viewers=args.web_max_viewers,
                           request_timeout=args.web_request_timeout,
                           allow_origins=args.web_allow_origin)
        except OSError as exc:
            _in_use(parser, "--web-port", args.web_port, exc)
        running.callback(server.stop)
        board.add("web", server.status)
    if args.snapshot_dir:
        from .snapshot import SnapshotWriter

        snapshots = running.enter_context(SnapshotWriter(
            receiver, args.snapshot_dir, interval=args.snapshot_interval,
            keep=args.snapshot_keep))
        board.add("snapshots", snapshots.status)
    if args.archive_dir:
        from .archive import ArchiveWriter

        writer = running.enter_context(ArchiveWriter(
            receiver, args.archive_dir, fmt=args.archive_format, span=args.archive_span,
            sun_above=args.archive_sun_above))
        board.add("archive", writer.status)


def recv_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-recv``."""
    parser = recv_parser()
    args = parser.parse_args(argv)
    for flag, extra, wanted in (("--web", "web", args.web),
                                ("--snapshot-dir", "snapshot", args.snapshot_dir),
                                ("--archive-dir", "archive", args.archive_dir)):
        if wanted:
            _require_extra(parser, extra, flag)
    if not args.demo and args.endpoint is None:
        try:
            check_endpoint(f"tcp://{args.addr}:{args.port}")
        except ValueError as exc:
            parser.error(f"--addr {args.addr}: {exc}")
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    board = StatusBoard()
    with ExitStack() as running:
        endpoint = args.endpoint
        if args.demo:
            from .sim import SimulatedStream

            demo = running.enter_context(SimulatedStream(port=0, wait_subscribers=1))
            endpoint = demo.endpoint
            log.info("demo: simulated recorder publishing on %s", endpoint)
            board.add("demo", lambda: _demo_status(demo, stop))
        receiver = Receiver(
            args.addr, args.port, endpoint=endpoint, buffer_length=args.buffer_length,
            product=args.product, pol=args.pol, factor=args.factor, beam_index=args.beam_index,
            gc_interval=args.gc_interval, chan0=args.chan0, status_board=board,
            stall_timeout=args.stall_timeout,
        )
        # consumers first, so that at exit the receiver stops first and they drain its ring
        _start_consumers(parser, args, receiver, board, running)
        running.enter_context(receiver)
        code = _supervise(stop, args.status_interval, receiver.get_buffer_status,
                          args.exit_on_failure)
        stop.set()  # the parts stop now: not a failure
    try:
        log.info("final status: %s", format_status(receiver.get_buffer_status()))
    except Exception as exc:  # pragma: no cover - e.g. no file descriptor free
        log.warning("final status unreadable: %r", exc)
    return code


def _demo_status(demo: Any, stopping: threading.Event) -> dict[str, Any]:
    """The ``--demo`` simulator's section: its counters and health."""
    st = demo.stats()
    if demo.error is not None:
        st.update(health="failed", health_reason=f"simulator ended by "
                  f"{type(demo.error).__name__}: {demo.error}")
    elif not demo.running and not stopping.is_set():
        st.update(health="failed", health_reason="the simulator thread ended")
    else:
        st.update(health="ok", health_reason=None)
    return st


# --- sunspec-replay -------------------------------------------------------------------------
def replay_parser() -> argparse.ArgumentParser:
    from .replay import Replayer

    d = _defaults(Replayer)
    p = argparse.ArgumentParser(
        prog="sunspec-replay",
        description="Replay archive files as a live stream with their original times "
        "(needs sunspec[archive]).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="archive files (.h5, .fit)")
    p.add_argument("--addr", default="127.0.0.1",
                   help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=_bind_port, default=9798,
                   help="port to bind, 0 = any free one (default: %(default)s)")
    p.add_argument("--endpoint", type=_bind_endpoint, default=None,
                   help="full ZeroMQ endpoint to bind; overrides --addr/--port")
    p.add_argument("--speed", type=_seconds_or_off, default=d["speed"],
                   help="data seconds per wall-clock second, 0 = as fast as receivers take "
                   "them (default: %(default)s)")
    p.add_argument("--max-gap", type=_positive_float, default=d["max_gap"],
                   help="data gaps longer than this (s) are skipped, not waited out "
                   "(default: %(default)s)")
    p.add_argument("--wait", type=_seconds_or_off, default=0.0,
                   help="wait up to this many seconds for a receiver before sending "
                   "(default: %(default)s)")
    _add_reporting_arguments(p)
    return p


def replay_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-replay``."""
    parser = replay_parser()
    args = parser.parse_args(argv)
    _require_extra(parser, "archive", "sunspec-replay")
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    from .replay import Replayer

    endpoint = args.endpoint or f"tcp://{args.addr}:{args.port}"
    try:
        check_endpoint(endpoint, bind=True)
    except ValueError as exc:
        parser.error(f"--addr {args.addr}: {exc}")
    try:
        replayer = Replayer(args.files, endpoint, speed=args.speed, max_gap=args.max_gap)
    except OSError as exc:
        parser.error(f"cannot read {exc.filename or 'a file'}: {exc.strerror or exc}")
    except ValueError as exc:
        parser.error(str(exc))
    except zmq.ZMQError as exc:
        _in_use(parser, "--port", args.port, exc)
    with replayer:
        nrows = sum(len(a) for a in replayer.archives)
        log.info("replaying %d rows from %d files on %s", nrows, len(replayer.archives),
                 replayer.endpoint)
        if args.wait and not replayer.wait_subscriber(args.wait):
            log.warning("no receiver subscribed within %.1f s; sending anyway", args.wait)
        sent = replayer.run(stop)
        log.info("sent %d messages", sent)
    return 0


# --- sunspec-sim ----------------------------------------------------------------------------
def sim_parser() -> argparse.ArgumentParser:
    from .sim import DEFAULT_CHAN0, SimulatedStream, Simulator

    d = _defaults(Simulator)
    ds = _defaults(SimulatedStream)
    p = argparse.ArgumentParser(
        prog="sunspec-sim",
        description="Stream synthetic OVRO-LWA power-beam spectra (quiet Sun, type II/III "
        "bursts, RFI) through the recorder's averaging and publishing path.",
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
    p.add_argument("--beam", type=int, default=ds["beam"],
                   help="beam number to put in headers (default: none)")
    p.add_argument("--sndhwm", type=int, default=ds["sndhwm"],
                   help="messages queued per subscriber before it loses some "
                   "(default: %(default)s)")
    p.add_argument("--type3-per-min", type=float, default=2.0,
                   help="mean rate of type III bursts (default: %(default)s; 0 = none)")
    p.add_argument("--type2-per-hour", type=float, default=4.0,
                   help="mean rate of type II bursts (default: %(default)s; 0 = none)")
    p.add_argument("--spike-rate", type=float, default=d["spike_rate"],
                   help="impulsive broadband spikes per second (default: %(default)s)")
    _add_reporting_arguments(p)
    return p


def sim_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-sim``."""
    from .sim import SimulatedStream, random_bursts

    args = sim_parser().parse_args(argv)
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    bursts = random_bursts(args.seed, args.duration or 86400.0,
                           type3_per_min=args.type3_per_min,
                           type2_per_hour=args.type2_per_hour)
    stream = SimulatedStream(
        args.addr, args.port, endpoint=args.endpoint, speed=None if args.fast else args.speed,
        duration=args.duration, nint=args.nint, interval=args.interval, sndhwm=args.sndhwm,
        beam=args.beam, nbeam=args.nbeam, nchan=args.nchan, chan0=args.chan0,
        ntime_gulp=args.ntime_gulp, navg=args.navg, seed=args.seed, bursts=bursts,
        spike_rate=args.spike_rate,
    )
    with stream:
        log.info("sunspec-sim publishing on %s", stream.endpoint)
        last = time.monotonic()
        while stream.running and not stop.wait(0.2):
            if args.status_interval and time.monotonic() - last >= args.status_interval:
                last = time.monotonic()
                log.info("status: %s", format_sim_status(stream.stats()))
    log.info("final status: %s", format_sim_status(stream.stats()))
    return 1 if stream.error is not None else 0


def format_sim_status(st: dict[str, Any]) -> str:
    """One line of a simulated stream's counters."""
    return (f"gulps {st['gulps']} frames sent {st.get('sent', 0)} dropped "
            f"{st.get('dropped', 0)} seq {st.get('seq', 0)} subscriptions "
            f"{st.get('subscriptions', 0)} late {st['late_s']:.3f}s")
