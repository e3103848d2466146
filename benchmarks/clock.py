"""Benchmark of clock alignment: ``fit_offset_drift`` on a million packet pairs, ``fit_tsc``
on a minute of a busy link.

Run by hand: ``python benchmarks/clock.py [N]``. Prints the time per fit and how far the fit
is from the model it was built from.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from xentrace_cli.pipeline.clock import fit_offset_drift, fit_tsc

T0_NS = 1_700_000_000_000_000_000


def main(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    offset_ns, drift = 1_234_567_890, 50e-6
    span_ns = 600_000_000_000                      # ten minutes

    def to_ref(other: np.ndarray) -> np.ndarray:
        return other + np.rint(offset_ns + drift * (other - T0_NS)).astype(np.int64)

    def to_other(ref: np.ndarray) -> np.ndarray:
        return T0_NS + np.rint((ref - T0_NS - offset_ns) / (1 + drift)).astype(np.int64)

    def delay(k: int) -> np.ndarray:
        return 20_000 + rng.lognormal(np.log(60e3), 0.8, k).astype(np.int64)

    half = n // 2
    send_ref = to_ref(T0_NS + np.sort(rng.integers(0, span_ns, half)))
    recv_other = to_other(send_ref + delay(half))
    send_other = T0_NS + np.sort(rng.integers(0, span_ns, n - half))
    recv_ref = to_ref(send_other) + delay(n - half)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fit = fit_offset_drift(send_ref, recv_other, send_other, recv_ref)
        times.append(time.perf_counter() - start)
    grid = np.linspace(send_other.min(), send_other.max(), 1001).astype(np.int64)
    err_us = np.abs(fit.to_ref(grid) - to_ref(grid)).max() / 1e3
    print(f"fit_offset_drift: {n:,} pairs ({half:,} each way) over {span_ns / 1e9:.0f} s: "
          f"best {min(times) * 1e3:.0f} ms, median {sorted(times)[2] * 1e3:.0f} ms")
    print(f"  quality {fit.quality}, drift {fit.drift_ppm:+.3f} ppm (true +50), "
          f"reported ±{fit.uncertainty_us:.1f} µs, actual worst error {err_us:.2f} µs")
    # shuffled input (no time order) costs the sort
    perm = rng.permutation(half)
    start = time.perf_counter()
    fit_offset_drift(send_ref[perm], recv_other[perm], send_other, recv_ref)
    print(f"  with the forward pairs shuffled: {(time.perf_counter() - start) * 1e3:.0f} ms")


def tsc_benchmark() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_clock import NicModel  # the tests' hand-written NIC model

    for rate_hz, span_s in ((5_000, 60.0), (20_000, 30.0)):
        nic = NicModel(1, span_s=span_s, rate_hz=rate_hz)
        for hz in (2.9e9, None):
            start = time.perf_counter()
            fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=hz)
            took = time.perf_counter() - start
            err = nic.error_ns(fit) / 1e3
            print(f"fit_tsc: {nic.irq_tsc.size:,} interrupts, {nic.phys_ns.size:,} frames over "
                  f"{span_s:.0f} s, cpu_hz {'given' if hz else 'estimated'}: {took * 1e3:.0f} ms;"
                  f" error {err.min():+.1f}..{err.max():+.1f} µs (true minimum delay 5 µs), "
                  f"Hz off by {abs(fit.cpu_hz / 2.9e9 - 1) * 1e6:.3f} ppm, "
                  f"matched {fit.matched_fraction:.0%}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    tsc_benchmark()
