from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

PRODUCT_I: Final[int]

def accumulate(x: NDArray[np.float32], t0: int, t1: int, acc: NDArray[np.float64]) -> None: ...
def finalize_mean(acc: NDArray[np.float64], n: int, out: NDArray[np.float32]) -> None: ...
def reduce_frame(
    frame: NDArray[np.float32],
    beam: int,
    product: int,
    factor: int,
    ring: NDArray[np.float32],
    row: int,
) -> int: ...
def copy_rows(src: NDArray[np.uint8], head: int, n: int, out: NDArray[np.uint8]) -> None: ...

class FrameReducer:
    def __init__(
        self,
        frame: NDArray[np.float32],
        beam: int,
        product: int,
        factor: int,
        ring: NDArray[np.float32],
    ) -> None: ...
    def reduce(self, row: int) -> int:
        """Raises IndexError unless 0 <= row < ring rows."""

class RowStamps:
    def __init__(
        self,
        end_tag: NDArray[np.int64],
        end_unix: NDArray[np.float64],
        seq: NDArray[np.int64],
        arrival: NDArray[np.float64],
    ) -> None: ...
    def write(self, row: int, end_tag: int, end_unix: float, seq: int, arrival: float) -> None:
        """Raises IndexError unless 0 <= row < rows."""

class HeaderReader:
    repeated: Final[bool]
    kept: Final[bool]
    digest: Final[int]
    def __init__(
        self,
        buf: bytearray,
        limit: int,
        scan_limit: int,
        parse: Callable[[int], Any],
        cls: type,
        slots: tuple[int, ...],
        ticks_per_second: int,
    ) -> None: ...
    def read(self, n: int) -> Any: ...

# --- burst detection (sunspec.detect) ---
def detect_bin_rows(
    x_db: NDArray[np.float32],
    bg: NDArray[np.float32],
    inv_sigma: NDArray[np.float32],
    chan_bin: NDArray[np.int32],
    z_norm: NDArray[np.float32],
    db_norm: NDArray[np.float32],
    zclip: float,
    out_z: NDArray[np.float32],
    out_db: NDArray[np.float32],
) -> None: ...
def detect_curve_sums(
    hist: NDArray[np.float32],
    newest: int,
    lags: NDArray[np.int32],
    bin_group: NDArray[np.int32],
    out: NDArray[np.float32],
) -> None: ...
def detect_line_sums(
    hist: NDArray[np.float32],
    newest: int,
    offsets: NDArray[np.int32],
    weight: NDArray[np.float32],
    width: int,
    out_sum: NDArray[np.float32],
    out_n: NDArray[np.float32],
) -> None: ...

# --- receiving messages (sunspec._poller) ---
WAIT_NOTHING: Final[int]
WAIT_MESSAGE: Final[int]
WAIT_MONITOR: Final[int]

class MessagePoller:
    parts: Final[int]
    more: Final[bool]
    ntopic: Final[int]
    nheader: Final[int]
    npayload: Final[int]
    arrival: Final[float]
    def __init__(
        self,
        functions: tuple[int, int, int],
        constants: tuple[int, int, int],
        error: Callable[[int], Exception],
        sock: Any,
        sock_handle: int,
        monitor: Any,
        monitor_handle: int,
        wake_fd: int,
        topic: bytearray,
        header: bytearray,
        payload: memoryview,
    ) -> None: ...
    def wait(self, timeout_ms: int) -> int:
        """Raises ``error(errno)`` if libzmq fails."""
