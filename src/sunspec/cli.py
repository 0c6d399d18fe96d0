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
import datetime
import importlib
import inspect
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import zmq

from ._log import RateLimitedLog
from .endpoint import check_endpoint
from .kernels import Product
from .receiver import Receiver
from .status import StatusBoard, overall_health

__all__ = ["detect_main", "format_status", "recv_main", "relay_main", "replay_main", "sim_main"]

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
_finite = _number(float, lambda v: abs(v) < float("inf"), "a finite number")
_gigabytes = _number(float, lambda v: 0 <= v < float("inf"), "a number of GB >= 0")
_elevation = _number(float, lambda v: -90 <= v <= 90, "degrees in -90..90")

def _endpoint(text: str) -> str:
    """A ZeroMQ endpoint to connect to (:func:`sunspec.endpoint.check_endpoint`; nothing is
    resolved here)."""
    try:
        return check_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: a stream's name: it names status sections and files, so a plain file-name token
_STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _stream(text: str) -> tuple[str, str]:
    """``NAME=ENDPOINT``: one stream of ``sunspec-recv --stream``."""
    name, sep, endpoint = text.partition("=")
    if not sep or not _STREAM_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"expected NAME=ENDPOINT with NAME of letters, digits, '_', '.', '-' (at most 64, "
            f"starting with a letter or digit), got {text!r}")
    return name, _endpoint(endpoint)


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


def _utc(text: str) -> datetime.datetime:
    try:
        t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    return t.replace(tzinfo=datetime.timezone.utc) if t.tzinfo is None else t


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
               exit_on_failure: bool,
               describe: Callable[[dict[str, Any]], str] | None = None) -> int:
    """Until ``stop`` is set: check the composed status ``read()`` every second, log a
    failed part at ERROR (at most once a minute each), a change of degraded health at
    WARNING, and the status line ``describe(status)`` (default :func:`format_status`) every
    ``interval`` s (0: never). Returns
    :data:`EXIT_FAILED` as soon as a part has failed if ``exit_on_failure``, else 0."""
    errors = RateLimitedLog(log, FAILED_REPEAT_S)
    step = min(HEALTH_CHECK_S, interval) if interval else HEALTH_CHECK_S
    next_report = time.monotonic() + interval
    last: tuple[str, ...] = ()  # the parts not ok, last time
    while not stop.wait(step):
        try:  # e.g. no file descriptor free for a moment: report later, never end here
            status = read()
            health = overall_health(status)
            line = (describe or format_status)(status)
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
    from .detect import DEFAULT_EVENTS_ENDPOINT
    from .snapshot import SnapshotWriter

    d = _defaults(Receiver)
    ds = _defaults(SnapshotWriter)
    p = argparse.ArgumentParser(
        prog="sunspec-recv",
        description="Receive a sunspec / OVRO-LWA spectrum stream into a ring buffer and "
        "report its status.",
    )
    p.add_argument("--addr", default=None,
                   help=f"address of the sender's PUB socket (default: {d['addr']})")
    p.add_argument("--port", type=_port, default=None,
                   help=f"port of the sender (default: {d['port']}; deployed recorders use "
                   "30000 + beam)")
    p.add_argument("--endpoint", type=_endpoint, default=None,
                   help="full ZeroMQ endpoint, e.g. tcp://host:port; overrides --addr/--port")
    p.add_argument("--stream", type=_stream, action="append", default=None,
                   metavar="NAME=ENDPOINT",
                   help="follow several streams (beams, instruments) in one process: repeat "
                   "for each, e.g. --stream beam1=tcp://127.0.0.1:30001 --stream "
                   "beam2=tcp://127.0.0.1:30002; each has its own ring, status section "
                   "stream:NAME, snapshots NAME_*.png, archive directory ARCHIVE_DIR/NAME, "
                   "events directory EVENTS_DIR/NAME and events port (+ i for the i-th "
                   "stream); instead of --addr/--port/--endpoint/--demo")
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
                   help="average this many adjacent channels (default: 2 for streams on "
                   "the recorder's channel grid, 1 for an explicit frequency axis)")
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
    keys = p.add_argument_group("CURVE: an encrypted, authenticated stream from a relay "
                                "(docs/DEPLOYMENT.md)")
    keys.add_argument("--curve-key", default=None, metavar="FILE",
                      help="this receiver's secret key file (NAME.key_secret)")
    keys.add_argument("--curve-server-key", default=None, metavar="FILE",
                      help="the relay's public key file (NAME.key); goes with --curve-key")
    det = p.add_argument_group("burst detection")
    det.add_argument("--detect", action="store_true",
                     help="run the burst detector on the stream: events in the status, "
                     "/api/events, the page, a JSON-lines log and a PUB socket")
    det.add_argument("--events-dir", default=None, metavar="DIR",
                     help="write events here, one JSON-lines file per UTC day (default: "
                     "--archive-dir when given)")
    det.add_argument("--events-endpoint", type=_bind_endpoint,
                     default=DEFAULT_EVENTS_ENDPOINT,
                     help="publish events and heartbeats here (default: %(default)s)")
    det.add_argument("--no-events-endpoint", dest="events_endpoint", action="store_const",
                     const=None, help="publish no events on a socket")
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
    arch.add_argument("--archive-keep-days", type=_positive_float, default=None,
                      metavar="DAYS",
                      help="delete archive files written more than DAYS days ago")
    arch.add_argument("--archive-min-free", type=_gigabytes, default=None,
                      metavar="GB",
                      help="delete the oldest archive files while the disk has less than GB "
                      "(1e9 bytes) free")
    return p


#: composed-status section of stream NAME when ``sunspec-recv`` follows several (--stream)
STREAM_SECTION = "stream:"


def format_status(st: dict[str, Any]) -> str:
    """One line of a composed status: the state and the overall health, the receiver's
    counters (each stream's, from its ``stream:NAME`` section, when there are several),
    then the other sections'."""
    health = overall_health(st)
    why = f" ({health['health_reason']})" if health["health_reason"] else ""
    streams = {name[len(STREAM_SECTION):]: section for name, section in st.items()
               if name.startswith(STREAM_SECTION) and isinstance(section, dict)}
    if "frames_received" in st:  # one receiver, its status at the top
        line = (f"{st.get('state', '-')}, health {health['health']}{why}; "
                f"{_counters(st)} rss {_num(st['rss_mb'], '.0f')}MiB")
    else:
        states = sorted({s.get("state", "-") for s in streams.values()})
        line = (f"{len(streams)} streams {'/'.join(states) or '-'}, health "
                f"{health['health']}{why}; ")
        line += "; ".join(f"{name}: {s.get('state', '-')} {_counters(s)}"
                          for name, s in streams.items())
        rss = next((s["rss_mb"] for s in streams.values() if "rss_mb" in s), None)
        line += f"; rss {_num(rss, '.0f')}MiB"
    for name, section in st.items():  # sections carry a health; counters (dicts) do not
        if isinstance(section, dict) and "health" in section and \
                not name.startswith(STREAM_SECTION):
            summary = _SECTION_SUMMARY.get(name.partition(":")[0])
            line += f" | {name} {summary(section) if summary else ''}".rstrip()
    return line


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _counters(st: dict[str, Any]) -> str:
    """A receiver's counters in the status line."""
    if "frames_received" not in st:  # an unreadable section: it says why
        return str(st.get("error", "-"))
    rejected = ",".join(f"{k}={v}" for k, v in st["rejected"].items() if v) or "0"
    return (f"frames {st['frames_received']} held {st['frames_held']}/{st['buffer_shape'][0]} "
            f"rate {st['frame_rate']:.2f}/s delay {_num(st['delay_s'], '.3f')}s "
            f"age {_num(st['data_age_s'], '.3f')}s lost {st['lost']} rejected {rejected} "
            f"restarts {st['restarts']} mean {_num(st['latest_mean'], '.4g')}")


_SECTION_SUMMARY: dict[str, Callable[[dict[str, Any]], str]] = {
    "web": lambda s: f"viewers {s.get('viewers', '-')}",
    "snapshots": lambda s: f"written {s.get('written', '-')} failed {s.get('failed', '-')}",
    "archive": lambda s: f"rows {s.get('rows_written', '-')} files "
                         f"{s.get('files_written', '-')}",
    "detector": lambda s: f"events {s.get('events', '-')}",
    "demo": lambda s: f"sent {s.get('sent', '-')}",
}


def _nth_endpoint(parser: argparse.ArgumentParser, endpoint: str, i: int, name: str) -> str:
    """The events endpoint of the ``i``-th stream: a TCP port + ``i`` (any free port stays
    any free port), an ipc/inproc name + ``-NAME``."""
    if i == 0:
        return endpoint
    if not endpoint.startswith("tcp://"):
        return f"{endpoint}-{name}"
    base, _, port = endpoint.rpartition(":")
    if port in ("*", "0"):
        return endpoint
    if int(port) + i > 65535:
        parser.error(f"--events-endpoint {endpoint}: no port {int(port) + i} for stream "
                     f"{name} (the i-th stream publishes on the port + i)")
    return f"{base}:{int(port) + i}"


def _start_consumers(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     receivers: Sequence[Receiver], board: StatusBoard,
                     running: ExitStack) -> None:
    """Start what reads the rings from its own thread (burst detector, live view, snapshots,
    archive) and compose their status sections on ``board``. The detectors start first: the
    live view and the snapshots are handed their events (they import nothing of them). With
    ``--stream`` each stream gets its own detector, snapshots and archive, in sections
    ``KIND:NAME`` and files named by the stream; without, the one receiver's are ``KIND``."""
    named = bool(args.stream)
    status = board.read if named else receivers[0].get_buffer_status
    detectors: dict[str, Any] = {}
    if args.detect:
        from .detect import DetectorWorker

        for i, receiver in enumerate(receivers):
            log_dir = args.events_dir or args.archive_dir
            if named and log_dir is not None:
                log_dir = Path(log_dir) / receiver.name
            endpoint = args.events_endpoint
            if named and endpoint is not None:
                endpoint = _nth_endpoint(parser, endpoint, i, receiver.name)
            try:
                detector = running.enter_context(DetectorWorker(
                    receiver, log_dir=log_dir, events_endpoint=endpoint))
            except zmq.ZMQError as exc:
                _in_use(parser, "--events-endpoint", endpoint, exc)
            detectors[receiver.name] = detector
            board.add("detector" + (f":{receiver.name}" if named else ""), detector.status)
            log.info("burst detection on %s; events published on %s", receiver.name,
                     detector.endpoint)
    if args.web:
        from .web import serve

        one = len(receivers) == 1
        sources: Any = receivers[0] if one else receivers
        hooks: dict[str, Any] = {}
        if detectors:
            hooks["events"] = next(iter(detectors.values())).get_events if one else {
                name: d.get_events for name, d in detectors.items()}
            hooks["excess_db"] = next(iter(detectors.values())).excess_db if one else {
                name: d.excess_db for name, d in detectors.items()}
        try:
            server = serve(sources, host=args.web_host, port=args.web_port, status=status,
                           max_connections=args.web_max_connections,
                           max_viewers=args.web_max_viewers,
                           request_timeout=args.web_request_timeout,
                           allow_origins=args.web_allow_origin, **hooks)
        except OSError as exc:
            _in_use(parser, "--web-port", args.web_port, exc)
        running.callback(server.stop)
        board.add("web", server.status)
    for receiver in receivers:
        suffix = f":{receiver.name}" if named else ""  # of the section names
        found = detectors.get(receiver.name)
        if args.snapshot_dir:
            from .snapshot import SnapshotWriter

            prefix = {"prefix": receiver.name} if named else {}
            snapshots = running.enter_context(SnapshotWriter(
                receiver, args.snapshot_dir, interval=args.snapshot_interval,
                keep=args.snapshot_keep, events=found.get_events if found else None,
                **prefix))
            board.add("snapshots" + suffix, snapshots.status)
        if args.archive_dir:
            from .archive import ArchiveWriter

            directory = Path(args.archive_dir) / receiver.name if named else args.archive_dir
            writer = running.enter_context(ArchiveWriter(
                receiver, directory, fmt=args.archive_format, span=args.archive_span,
                sun_above=args.archive_sun_above, keep_days=args.archive_keep_days,
                min_free_gb=args.archive_min_free))
            board.add("archive" + suffix, writer.status)


def _curve_keys(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The CURVE client keys of ``--curve-key``/``--curve-server-key`` (None without)."""
    if (args.curve_key is None) != (args.curve_server_key is None):
        parser.error("--curve-key and --curve-server-key go together")
    if args.curve_key is None:
        return None
    from .curve import ClientKeys

    try:
        return ClientKeys.load(args.curve_key, args.curve_server_key)
    except (OSError, ValueError, RuntimeError) as exc:
        parser.error(f"CURVE keys: {exc}")


def recv_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-recv``."""
    parser = recv_parser()
    args = parser.parse_args(argv)
    for flag, extra, wanted in (("--web", "web", args.web),
                                ("--snapshot-dir", "snapshot", args.snapshot_dir),
                                ("--archive-dir", "archive", args.archive_dir)):
        if wanted:
            _require_extra(parser, extra, flag)
    d = _defaults(Receiver)
    if args.stream:
        given = [flag for flag, v in (("--addr", args.addr), ("--port", args.port),
                                      ("--endpoint", args.endpoint),
                                      ("--demo", args.demo or None)) if v is not None]
        if given:
            parser.error(f"--stream names every stream: it cannot go with {', '.join(given)}")
        names = [name for name, _ in args.stream]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            parser.error(f"--stream: each stream needs its own name; {', '.join(twice)} "
                         "given more than once")
    args.addr = d["addr"] if args.addr is None else args.addr
    args.port = d["port"] if args.port is None else args.port
    if not args.demo and args.endpoint is None and not args.stream:
        try:
            check_endpoint(f"tcp://{args.addr}:{args.port}")
        except ValueError as exc:
            parser.error(f"--addr {args.addr}: {exc}")
    curve = _curve_keys(parser, args)
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    board = StatusBoard()
    with ExitStack() as running:
        options = dict(buffer_length=args.buffer_length, product=args.product, pol=args.pol,
                       factor=args.factor, beam_index=args.beam_index,
                       gc_interval=args.gc_interval, chan0=args.chan0, status_board=board,
                       stall_timeout=args.stall_timeout, curve=curve)
        if args.stream:  # one receiver per stream, one ZeroMQ context, a section each
            context: zmq.Context[Any] = zmq.Context.instance()
            receivers = [Receiver(endpoint=endpoint, name=name, context=context, **options)
                         for name, endpoint in args.stream]
            for receiver in receivers:
                board.add(STREAM_SECTION + receiver.name, receiver.status)
            read: Callable[[], dict[str, Any]] = board.read
        else:
            endpoint = args.endpoint
            if args.demo:
                from .sim import SimulatedStream

                demo = running.enter_context(SimulatedStream(port=0, wait_subscribers=1))
                endpoint = demo.endpoint
                log.info("demo: simulated recorder publishing on %s", endpoint)
                board.add("demo", lambda: _demo_status(demo, stop))
            receivers = [Receiver(args.addr, args.port, endpoint=endpoint, **options)]
            read = receivers[0].get_buffer_status
        # consumers first, so that at exit the receivers stop first and they drain the rings
        _start_consumers(parser, args, receivers, board, running)
        for receiver in receivers:
            running.enter_context(receiver)
        code = _supervise(stop, args.status_interval, read, args.exit_on_failure)
        stop.set()  # the parts stop now: not a failure
    try:
        log.info("final status: %s", format_status(read()))
    except Exception as exc:  # pragma: no cover - e.g. no file descriptor free
        log.warning("final status unreadable: %r", exc)
    return code


def _demo_status(demo: Any, stopping: threading.Event) -> dict[str, Any]:
    """The ``--demo`` simulator's section: its counters and health."""
    st = demo.status()
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
    from .replay import DEFAULT_INTERVAL, FINE_S, Replayer

    d = _defaults(Replayer)
    p = argparse.ArgumentParser(
        prog="sunspec-replay",
        description="Replay archive files as a live stream with their original times "
        "(needs sunspec[archive]).",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="spectrum files, recognised by content: sunspec archives (HDF5, FITS), "
                   "OVRO-LWA recorder power-beam HDF5, e-CALLISTO FITS (.fit, .fit.gz)")
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
    p.add_argument("--interval", type=_positive_float, default=None,
                   help="average recorder spectra into frames of this many seconds (default: "
                   f"{DEFAULT_INTERVAL} s for files finer than {FINE_S} s, else a row per frame)")
    p.add_argument("--loop", action="store_true", help="play the files again and again")
    p.add_argument("--start", type=_utc, default=None, metavar="UTC",
                   help="replay rows whose window ends after this time (ISO 8601)")
    p.add_argument("--stop", type=_utc, default=None, metavar="UTC",
                   help="replay rows whose window ends at or before this time (ISO 8601)")
    p.add_argument("--db-per-digit", type=_positive_float, default=None,
                   help="dB per digit of e-CALLISTO files (default: the reader's)")
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
        options = {} if args.db_per_digit is None else {"db_per_digit": args.db_per_digit}
        replayer = Replayer(args.files, endpoint, speed=args.speed, max_gap=args.max_gap,
                            interval=args.interval, loop=args.loop, start=args.start,
                            stop=args.stop, **options)
    except OSError as exc:
        parser.error(f"cannot read {exc.filename or 'a file'}: {exc.strerror or exc}")
    except ValueError as exc:
        parser.error(str(exc))
    except zmq.ZMQError as exc:
        _in_use(parser, "--port", args.port, exc)
    with replayer:
        nrows = sum(r.nrows for r in replayer.readers)
        log.info("replaying %d rows from %d files on %s", nrows, len(replayer.readers),
                 replayer.endpoint)
        if args.wait and not replayer.wait_subscriber(args.wait):
            log.warning("no receiver subscribed within %.1f s; sending anyway", args.wait)
        sent = replayer.run(stop)
        log.info("sent %d messages", sent)
    return 0


# --- sunspec-sim ----------------------------------------------------------------------------
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
            g.add_argument(flag, type=_finite, default=None,
                           help=f"{text} (default: from --activity)")
        else:
            kind = _finite if isinstance(f.default, float) else type(f.default)
            g.add_argument(flag, type=kind, default=f.default,
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
    p.add_argument("--port", type=_bind_port, default=ds["port"],
                   help="port to bind, 0 = any free one (default: %(default)s)")
    p.add_argument("--endpoint", type=_endpoint, default=None,
                   help="full ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:30001; overrides "
                   "--addr/--port")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=_positive_float, default=ds["speed"],
                       help="data seconds per wall-clock second (default: %(default)s, real "
                       "time)")
    speed.add_argument("--fast", action="store_true", help="run as fast as possible")
    p.add_argument("--duration", type=_positive_float, default=ds["duration"],
                   help="seconds of data to stream, then stop (default: until interrupted)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="random seed; the same seed gives the same data (default: %(default)s)")
    p.add_argument("--nbeam", type=_positive_int, default=d["nbeam"],
                   help="beams (default: %(default)s)")
    p.add_argument("--nchan", type=_positive_int, default=d["nchan"],
                   help="channels (default: %(default)s)")
    p.add_argument("--chan0", type=_count, default=DEFAULT_CHAN0,
                   help="first recorder channel (default: %(default)s, 14.4-87.8 MHz for "
                   "3072 channels)")
    p.add_argument("--ntime-gulp", type=_positive_int, default=d["ntime_gulp"],
                   help="spectra per recorder gulp (default: %(default)s)")
    p.add_argument("--navg", type=_positive_int, default=d["navg"],
                   help="raw spectra integrated per recorder spectrum (default: %(default)s)")
    frame = p.add_mutually_exclusive_group()
    frame.add_argument("--nint", type=_positive_int, default=None,
                       help="spectra averaged per frame (default: half a gulp, as deployed)")
    frame.add_argument("--interval", type=_positive_float, default=None,
                       help="seconds of data per frame (instead of --nint)")
    p.add_argument("--frame-level", action="store_true",
                   help="draw averaged frames directly (same statistics, ~1000x cheaper) "
                   "instead of simulating every recorder spectrum")
    p.add_argument("--no-noise", action="store_true",
                   help="send expected values, without radiometer noise")
    p.add_argument("--beam", type=_count, default=ds["beam"],
                   help="beam number to put in headers (default: none)")
    p.add_argument("--sndhwm", type=_positive_int, default=ds["sndhwm"],
                   help="messages queued per subscriber before it loses some "
                   "(default: %(default)s)")
    p.add_argument("--wait-subscribers", type=_count, default=ds["wait_subscribers"],
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
    try:
        stream.start()
    except zmq.ZMQError as exc:
        _in_use(parser, "--port", args.endpoint or args.port, exc)
    with stream:
        log.info("sunspec-sim publishing on %s", stream.endpoint)
        last = time.monotonic()
        while stream.running and not stop.wait(0.2):
            if args.status_interval and time.monotonic() - last >= args.status_interval:
                last = time.monotonic()
                log.info("status: %s", format_sim_status(stream.status()))
    log.info("final status: %s", format_sim_status(stream.status()))
    if args.truth and args.duration is None:
        truth(stream.frames_done * stream.nint * stream.sim.spectrum_seconds)
    return 1 if stream.error is not None else 0


def format_sim_status(st: dict[str, Any]) -> str:
    """One line of a simulated stream's counters."""
    return (f"gulps {st['gulps']} frames {st['frames']} sent {st.get('sent', 0)} dropped "
            f"{st.get('dropped', 0)} seq {st.get('seq', 0)} subscriptions "
            f"{st.get('subscriptions', 0)} late {st['late_s']:.3f}s")


# --- sunspec-relay --------------------------------------------------------------------------
def _relay_output(text: str) -> Any:
    """``[ENCODING=]ENDPOINT``: a public base endpoint and its payload encoding."""
    from .encodings import ENCODINGS
    from .relay import Output

    encoding, sep, endpoint = text.partition("=")
    if not sep:
        encoding, endpoint = "raw", text
    if encoding not in ENCODINGS:
        raise argparse.ArgumentTypeError(
            f"expected [ENCODING=]ENDPOINT with ENCODING one of {', '.join(ENCODINGS)}, "
            f"got {text!r}")
    return Output(_bind_endpoint(endpoint), encoding)


def relay_parser() -> argparse.ArgumentParser:
    from .encodings import ENCODINGS
    from .relay import Relay

    d = _defaults(Relay)
    p = argparse.ArgumentParser(
        prog="sunspec-relay",
        description="Republish sender streams (e.g. the recorder's loopback ports) on public "
        "endpoints: one port per stream, a last-value cache for new subscribers, optional "
        "CURVE authentication and payload encodings.",
    )
    p.add_argument("--upstream", type=_endpoint, action="append", required=True,
                   metavar="ENDPOINT",
                   help="a sender to follow, e.g. tcp://127.0.0.1:30001; repeat for more "
                   "streams (stream i is published on each --bind port + i)")
    p.add_argument("--bind", type=_relay_output, action="append", required=True,
                   metavar="[ENCODING=]ENDPOINT",
                   help="a public base endpoint, e.g. tcp://192.0.2.10:31001 (raw) or "
                   f"log8=tcp://192.0.2.10:32001; encodings: {', '.join(ENCODINGS)}; repeat "
                   "for more")
    p.add_argument("--curve-secret", metavar="FILE", default=None,
                   help="the relay's CURVE key pair (NAME.key_secret from "
                   "zmq.auth.create_certificates): every public endpoint encrypts and "
                   "authenticates (needs --curve-clients)")
    p.add_argument("--curve-clients", metavar="DIR", default=None,
                   help="directory of the client public keys (*.key) allowed to subscribe")
    p.add_argument("--sndhwm", type=_positive_int, default=d["sndhwm"],
                   help="messages queued per subscriber before it alone loses some "
                   "(default: %(default)s)")
    p.add_argument("--max-inbound-bytes", type=_positive_int, default=d["max_inbound_bytes"],
                   help="largest message a public peer may send; a peer sending more is "
                   "disconnected (default: %(default)s)")
    p.add_argument("--heartbeat", type=_seconds_or_off, default=d["heartbeat"],
                   help="seconds between heartbeats to public peers, 0 = off; a peer silent "
                   "for 3 intervals is dropped (default: %(default)s)")
    p.add_argument("--stale-after", type=_positive_float, default=d["stale_after"],
                   help="health is degraded when a stream is silent this long (default: "
                   "%(default)s s)")
    _add_reporting_arguments(p)
    return p


def format_relay_status(st: dict[str, Any]) -> str:
    """One line of a relay's status."""
    line = (f"health {st['health']} streams {len(st['streams'])} forwarded {st['forwarded']} "
            f"dropped {st['dropped']} lost {st['lost']} subscribers {st['subscribers']} "
            f"connections {st['connections']} disconnects {st['disconnects']} "
            f"auth_failures {st['auth_failures']} refused {st['refused_subscriptions']}")
    return line + (f" ({st['health_reason']})" if st["health_reason"] else "")


def relay_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-relay``."""
    from .curve import ServerKeys
    from .relay import Relay

    parser = relay_parser()
    args = parser.parse_args(argv)
    if (args.curve_secret is None) != (args.curve_clients is None):
        parser.error("--curve-secret and --curve-clients go together")
    curve = None
    if args.curve_secret is not None:
        try:
            curve = ServerKeys.load(args.curve_secret, args.curve_clients)
        except (OSError, ValueError, RuntimeError) as exc:
            parser.error(f"CURVE keys: {exc}")
    try:
        relay = Relay(args.upstream, args.bind, curve=curve, sndhwm=args.sndhwm,
                      max_inbound_bytes=args.max_inbound_bytes, heartbeat=args.heartbeat,
                      stale_after=args.stale_after)
    except ValueError as exc:
        parser.error(str(exc))
    _configure_logging(args.log_level)
    stop = _stop_event_on_signals()
    try:
        relay.start()
    except zmq.ZMQError as exc:
        _in_use(parser, "--bind", " ".join(o.endpoint for o in relay.outputs), exc)
    with relay:
        code = _supervise(stop, args.status_interval, relay.status, True,
                          format_relay_status)
        stop.set()
    log.info("final status: %s", format_relay_status(relay.status()))
    return code


# --- sunspec-detect -------------------------------------------------------------------------
#: columns of ``sunspec-detect --csv`` (the event record's scalar fields)
DETECT_CSV_FIELDS = ("id", "revision", "final", "type", "start_utc", "end_utc", "f_high_mhz",
                     "f_low_mhz", "drift_mhz_s", "drift_ref_mhz", "snr", "excess_db",
                     "stream", "beam")


def detect_parser() -> argparse.ArgumentParser:
    from .detect import DetectorConfig

    d = _defaults(DetectorConfig)
    p = argparse.ArgumentParser(
        prog="sunspec-detect",
        description="Find type III and type II solar radio bursts in spectrum files (sunspec "
        "archives, OVRO-LWA recorder HDF5, e-CALLISTO FITS; recognised by content) and print "
        "one JSON object per event (its final revision) on stdout (needs sunspec[archive]). "
        "Files of one geometry are searched as one sequence, in time order. Exit status: 0 "
        "when every file was searched; 2 (with a usage line) when no file could be read; 1 "
        "when some files could not be read or searched (each named on stderr) and the "
        "others were.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="spectrum files")
    p.add_argument("--csv", action="store_true", help="print CSV rows instead of JSON lines")
    p.add_argument("--all-revisions", action="store_true",
                   help="print every revision of each event, as it is published live")
    p.add_argument("--product", metavar="NAME",
                   help="product of files holding several (e.g. XX, YY of recorder files; "
                   "default: each file's first)")
    p.add_argument("--threshold", type=_positive_float, default=d["threshold"],
                   help="type III significance (default: %(default)s)")
    p.add_argument("--type2-threshold", type=_positive_float, default=d["type2_threshold"],
                   help="type II significance (default: %(default)s)")
    p.add_argument("--log-level", type=_log_level, default="WARNING",
                   help=f"logging level: {', '.join(LOG_LEVELS)} (default: %(default)s)")
    return p


def _file_rows(paths: list[str], product: str, current: list[str]) -> Any:
    """The rows of ``paths`` one after the other (``current[0]``: the file being read)."""
    from .detect import reader_rows
    from .readers import open_spectra

    for path in paths:
        current[0] = path
        with open_spectra(path) as r:
            yield from reader_rows(r, product)[2]


def detect_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sunspec-detect``: the live detector over spectrum files."""
    import csv
    import json
    import sys

    parser = detect_parser()
    args = parser.parse_args(argv)
    _require_extra(parser, "archive", "sunspec-detect")
    _configure_logging(args.log_level)
    import numpy as np

    from .detect import DetectorConfig, detect_chunks, reader_rows, stream_name
    from .readers import UnsupportedFile, open_spectra

    config = DetectorConfig(threshold=args.threshold, type2_threshold=args.type2_threshold)
    failed: list[str] = []

    def fail(path: str, why: str) -> None:
        failed.append(f"cannot read {path}: {why}")

    # look at every file first: its facts decide its group; files are reopened to search
    found: list[tuple[int, tuple[Any, ...], str]] = []
    for path in args.files:
        try:
            with open_spectra(path) as r:
                unit, step, _ = reader_rows(r, args.product)
                first = next(iter(r.chunks(1)), None)
                if first is None:  # no rows: nothing to search
                    continue
                freqs = None if r.freqs_hz is None else tuple(r.freqs_hz.tolist())
                key = (r.nchan, freqs, unit, step, args.product or r.pols[0],
                       stream_name(r), getattr(r.meta, "beam", None) or getattr(r, "beam", None))
                found.append((int(first.end_tag[0]), key, path))
        except OSError as exc:
            fail(path, exc.strerror or str(exc))
        except (UnsupportedFile, ValueError) as exc:
            fail(path, str(exc).removeprefix(f"{path}: "))
    if not found and failed:
        parser.error("; ".join(failed))
    found.sort(key=lambda f: f[0])
    # consecutive files (in time) of one geometry are one sequence for one detector
    groups: list[tuple[tuple[Any, ...], list[str]]] = []
    for _, key, path in found:
        if groups and groups[-1][0] == key:
            groups[-1][1].append(path)
        else:
            groups.append((key, [path]))

    writer = csv.DictWriter(sys.stdout, DETECT_CSV_FIELDS, extrasaction="ignore") \
        if args.csv else None
    if writer is not None:
        writer.writeheader()
    for key, paths in groups:
        _, freqs, unit, step, product, stream, beam = key
        current = [paths[0]]
        mhz = None if freqs is None else np.asarray(freqs) / 1e6
        try:
            for rec in detect_chunks(_file_rows(paths, product, current), freqs_mhz=mhz,
                                     unit=unit, dt_s=step,
                                     config=config, stream=stream, beam=beam,
                                     final_only=not args.all_revisions):
                if writer is not None:
                    writer.writerow(rec)
                else:
                    print(json.dumps(rec, separators=(",", ":")))
                sys.stdout.flush()
        except (OSError, UnsupportedFile, ValueError) as exc:
            failed.append(f"cannot search {current[0]}: {exc}")
    for line in failed:
        print(f"sunspec-detect: {line}", file=sys.stderr)
    return 1 if failed else 0
