"""sunspec: real-time streaming of radio power spectra from the OVRO-LWA data recorder."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .kernels import Product
from .protocol import FrameHeader, ProtocolError, Reject
from .receiver import Receiver, StreamReceiver
from .ring import RingBuffer, Rows
from .sender import Averager, Frame, Publisher, SequenceInfo
from .sim import SimulatedStream, Simulator
from .source import StreamSource
from .status import StatusBoard

try:
    __version__ = version("sunspec")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "Averager",
    "Frame",
    "FrameHeader",
    "Product",
    "ProtocolError",
    "Publisher",
    "Receiver",
    "Reject",
    "RingBuffer",
    "Rows",
    "SequenceInfo",
    "SimulatedStream",
    "Simulator",
    "StatusBoard",
    "StreamReceiver",
    "StreamSource",
    "__version__",
]
