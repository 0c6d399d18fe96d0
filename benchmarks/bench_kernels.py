"""Kernels vs numpy on the recorder's real shapes, measured in the same run.

Targets (issue: foundation): time average <= 1.1x numpy's float32 mean; frame reduction
<= 2 us per frame and >= 20x the numpy line; chronological read-out <= 1.5x np.copyto.
Run: python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import numpy as np
from _timing import best_times, verdict

from sunspec import _core, kernels


def main() -> None:
    rng = np.random.default_rng(0)
    gulp = rng.random((1024, 1, 3072, 4), dtype=np.float32)
    half = gulp[:512]
    out = np.empty((1, 3072, 4), np.float32)
    scratch = np.zeros((1, 3072, 4), np.float64)

    t = best_times({
        "sunspec": lambda: kernels.time_average(half, 0, 512, out, scratch),
        "numpy_f32": lambda: half.mean(0),
        "numpy_f64": lambda: half.mean(0, dtype=np.float64),
    }, repeat=30)
    exact = np.array_equal(kernels.time_average(half), half.astype(np.float64).mean(0)
                           .astype(np.float32))
    r32, r64 = t["sunspec"] / t["numpy_f32"], t["sunspec"] / t["numpy_f64"]
    print("time average of (512, 1, 3072, 4) float32, float64 accumulation")
    print(f"  sunspec {t['sunspec'] * 1e3:.3f} ms | numpy mean(0) f32 {t['numpy_f32'] * 1e3:.3f} ms"
          f" | numpy mean(0, float64) {t['numpy_f64'] * 1e3:.3f} ms")
    print(f"  ratio vs f32 mean {r32:.2f}x (target <= 1.1x) {verdict(r32 <= 1.1)}; "
          f"vs f64 mean {r64:.2f}x; equals float64 mean bit for bit: {exact}")

    ring = np.zeros((1201, 1536), np.float32)
    frame = gulp[0]
    reducer = _core.FrameReducer(frame, 0, 0, 2, ring)

    def numpy_line() -> None:
        ring[7] = frame.reshape(3072, 4)[:, 0].reshape(1536, 2).mean(1)

    t = best_times({
        "bound": lambda: reducer.reduce(7),
        "checked": lambda: kernels.reduce_frame(frame, ring, 7),
        "numpy": numpy_line,
    }, repeat=200, number=50)
    speedup = t["numpy"] / t["bound"]
    print("frame reduction (1, 3072, 4) -> ring row of 1536 (pol XX, 2:1)")
    print(f"  FrameReducer (receiver path) {t['bound'] * 1e6:.2f} us | checked reduce_frame "
          f"{t['checked'] * 1e6:.2f} us | numpy line {t['numpy'] * 1e6:.2f} us")
    print(f"  {speedup:.1f}x faster than numpy (target >= 20x, <= 2 us) "
          f"{verdict(speedup >= 20 and t['bound'] <= 2e-6)}")

    src = rng.random((1201, 1536), dtype=np.float32)
    dst = np.empty((1200, 1536), np.float32)
    t = best_times({
        "sunspec": lambda: kernels.read_rows(src, 700, 1200, dst),
        "copyto": lambda: np.copyto(dst, src[:1200]),
    }, repeat=100)
    ratio = t["sunspec"] / t["copyto"]
    print("chronological read-out of 1200 x 1536 float32 (wrapping)")
    print(f"  sunspec {t['sunspec'] * 1e6:.0f} us | np.copyto {t['copyto'] * 1e6:.0f} us | "
          f"ratio {ratio:.2f}x (target <= 1.5x) {verdict(ratio <= 1.5)}")


if __name__ == "__main__":
    main()
