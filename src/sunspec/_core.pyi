from typing import Final

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
