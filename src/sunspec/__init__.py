"""sunspec: real-time streaming of radio power spectra from the OVRO-LWA data recorder."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .protocol import FrameHeader, ProtocolError
from .receiver import Receiver, StreamReceiver
from .ring import RingBuffer, Rows
from .sender import Averager, Frame, Publisher, SequenceInfo
from .sim import SimulatedStream, Simulator

try:
    __version__ = version("sunspec")
except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
    __version__ = "0+unknown"

__all__ = [
    "Averager",
    "Frame",
    "FrameHeader",
    "ProtocolError",
    "Publisher",
    "Receiver",
    "RingBuffer",
    "Rows",
    "SequenceInfo",
    "SimulatedStream",
    "Simulator",
    "StreamReceiver",
    "__version__",
]
