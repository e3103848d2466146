"""Tests of clock alignment (``pipeline.clock``): causal offset/drift fits and TSC fits.

Ground truth is a hand-written clock model in each test: an other clock that runs at
``1 + drift`` against the reference and starts ``offset`` away, packets crossing with
lognormal one-way delays above a known minimum.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import clock
from xentrace_cli.pipeline.clock import ClockFit, fit_offset_drift

T0_NS = 1_700_000_000_000_000_000  # an epoch instant on the other clock (2023-11)


class TwoClocks:
    """Reference time = other + offset + drift·(other - T0); ``to_other`` is its inverse."""

    def __init__(self, offset_ns: float, drift_ppm: float) -> None:
        self.offset_ns = offset_ns
        self.d = drift_ppm * 1e-6

    def to_ref(self, other_ns: np.ndarray) -> np.ndarray:
        rel = (other_ns - T0_NS).astype(float)
        return other_ns + np.rint(self.offset_ns + self.d * rel).astype(np.int64)

    def to_other(self, ref_ns: np.ndarray) -> np.ndarray:
        rel = (ref_ns - T0_NS).astype(float)
        return T0_NS + np.rint((rel - self.offset_ns) / (1 + self.d)).astype(np.int64)


def delays(rng: np.random.Generator, n: int, min_ns: int) -> np.ndarray:
    """One-way delays: a floor plus a lognormal tail (median ~ floor + 60 µs)."""
    return min_ns + rng.lognormal(np.log(60e3), 0.8, n).astype(np.int64)


def exchange(clocks: TwoClocks, rng: np.random.Generator, n: int, span_ns: int,
             min_ns: int) -> tuple[np.ndarray, ...]:
    """Packets both ways over ``span_ns``: (send_ref, recv_other, send_other, recv_ref)."""
    send_ref = clocks.to_ref(T0_NS + np.sort(rng.integers(0, span_ns, n)))
    recv_other = clocks.to_other(send_ref + delays(rng, n, min_ns))
    send_other = T0_NS + np.sort(rng.integers(0, span_ns, n))
    recv_ref = clocks.to_ref(send_other) + delays(rng, n, min_ns)
    return send_ref, recv_other, send_other, recv_ref


def worst_error_ns(fit: ClockFit, clocks: TwoClocks, other_ns: np.ndarray) -> float:
    """Largest |fitted - true| reference time over a grid spanning the data."""
    grid = np.linspace(other_ns.min(), other_ns.max(), 201).astype(np.int64)
    return float(np.abs(fit.to_ref(grid) - clocks.to_ref(grid)).max())


# --- both directions: bounded ----------------------------------------------------------------

@pytest.mark.parametrize("offset_ns", [3_000, 2_000_000, -1_500_000_000, 40_000_000_000])
@pytest.mark.parametrize("drift_ppm", [0.0, 50.0, -50.0])
@pytest.mark.parametrize("min_delay_ns", [5_000, 50_000])
def test_recovers_offset_and_drift_within_reported_bound(offset_ns, drift_ppm, min_delay_ns):
    rng = np.random.default_rng(abs(offset_ns) % 1000 + int(drift_ppm) + min_delay_ns)
    clocks = TwoClocks(offset_ns, drift_ppm)
    data = exchange(clocks, rng, 20_000, 60_000_000_000, min_delay_ns)
    fit = fit_offset_drift(*data)
    assert fit.quality == "bounded"
    assert fit.n_forward == fit.n_backward == 20_000
    # the true line lies inside the reported band (+1 ns for rounding to integer ns)
    other = np.concatenate([data[1], data[2]])
    assert worst_error_ns(fit, clocks, other) <= fit.uncertainty_ns + 1
    # and the band is as narrow as the fastest packets allow: both minima plus a little
    assert fit.uncertainty_ns <= min_delay_ns + 15_000
    assert fit.drift_range_ppm[0] <= drift_ppm <= fit.drift_range_ppm[1]
    assert abs(fit.drift_ppm - drift_ppm) < 2.0
    assert not fit.drift_fixed


def test_known_min_delay_narrows_the_band_and_keeps_the_truth():
    rng = np.random.default_rng(7)
    clocks = TwoClocks(250_000, 20.0)
    data = exchange(clocks, rng, 5_000, 10_000_000_000, 30_000)
    loose = fit_offset_drift(*data)
    tight = fit_offset_drift(*data, min_delay_ns=30_000)
    assert tight.uncertainty_ns < loose.uncertainty_ns - 25_000
    other = np.concatenate([data[1], data[2]])
    assert worst_error_ns(tight, clocks, other) <= tight.uncertainty_ns + 1


def test_one_pair_each_way_is_hand_checkable():
    # forward: sent 1000 (ref), received 1500 (other) -> offset >= -500
    # backward: sent 2000 (other), received 2600 (ref) -> offset <= 600
    fit = fit_offset_drift([1000], [1500], [2000], [2600])
    assert fit.quality == "bounded"
    assert fit.drift_ppm == 0 and fit.drift_fixed
    assert fit.offset_ns == pytest.approx(50.0)            # middle of [-500, 600]
    # ref is the middle (1750); the worst feasible line at the end u = -250 has drift -500 ppm
    # and meets the backward constraint at u = +250: 600 + 500e-6 * 500 = 600.25, 550.25 away
    assert fit.uncertainty_ns == pytest.approx(600 + 500e-6 * 500 - 50)
    assert fit.to_ref(np.array([1750]))[0] == 1800
    assert "cannot tell the drift" in fit.detail


def test_short_span_fixes_drift_and_still_bounds_the_truth():
    rng = np.random.default_rng(3)
    clocks = TwoClocks(-80_000, 50.0)
    data = exchange(clocks, rng, 200, 2_000_000, 10_000)      # 2 ms of data
    fit = fit_offset_drift(*data)
    assert fit.quality == "bounded"
    assert fit.drift_fixed and fit.drift_ppm == 0
    assert "cannot tell the drift" in fit.detail
    other = np.concatenate([data[1], data[2]])
    assert worst_error_ns(fit, clocks, other) <= fit.uncertainty_ns + 1


def test_fixed_drift_by_caller():
    rng = np.random.default_rng(4)
    clocks = TwoClocks(1_000_000, 50.0)
    data = exchange(clocks, rng, 2_000, 30_000_000_000, 20_000)
    fit = fit_offset_drift(*data, fix_drift_ppm=50.0)
    assert fit.quality == "bounded" and fit.drift_ppm == 50.0 and fit.drift_fixed
    other = np.concatenate([data[1], data[2]])
    assert worst_error_ns(fit, clocks, other) <= fit.uncertainty_ns + 1
    # fixing a drift the data exclude is inconsistent, not silently fitted
    wrong = fit_offset_drift(*data, fix_drift_ppm=0.0)
    assert wrong.quality == "inconsistent" and math.isinf(wrong.uncertainty_ns)


def test_from_ref_inverts_to_ref():
    fit = ClockFit(1.5e9, 37.0, T0_NS, "bounded", 10.0, 1, 1)
    t = T0_NS + np.array([-30_000_000_000, 0, 12_345_678_901, 60_000_000_000])
    assert np.abs(fit.from_ref(fit.to_ref(t)) - t).max() <= 1
    # hand check: 10 s after ref the clocks differ by offset + 37 ppm of 10 s = 370 µs
    assert fit.to_ref(np.array([T0_NS + 10_000_000_000]))[0] == (
        T0_NS + 10_000_000_000 + 1_500_000_000 + 370_000)


# --- one direction: one-sided ----------------------------------------------------------------

@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_one_direction_is_one_sided(direction):
    rng = np.random.default_rng(5)
    clocks = TwoClocks(5_000_000, 30.0)
    send_ref, recv_other, send_other, recv_ref = exchange(clocks, rng, 5_000,
                                                          20_000_000_000, 25_000)
    if direction == "forward":
        fit = fit_offset_drift(send_ref, recv_other, None, None)
        mid = np.array([recv_other.min() + (recv_other.max() - recv_other.min()) // 2])
    else:
        fit = fit_offset_drift(None, None, send_other, recv_ref)
        mid = np.array([send_other.min() + (send_other.max() - send_other.min()) // 2])
    assert fit.quality == "one-sided"
    assert math.isinf(fit.uncertainty_ns)
    assert fit.detail.startswith("one-sided")
    assert fit.to_dict()["uncertainty_us"] is None
    json.dumps(fit.to_dict(), allow_nan=False)
    # the estimate assumes the fastest packet took 0: it errs by about the minimum delay, on
    # the side the direction says (forward: true offset larger; backward: smaller)
    err = int(clocks.to_ref(mid)[0] - fit.to_ref(mid)[0])
    signed = err if direction == "forward" else -err
    assert 20_000 <= signed <= 30_000


# --- inconsistent ----------------------------------------------------------------------------

def test_mismatched_packet_is_inconsistent_with_hand_computed_overlap():
    # drift 0, every forward packet takes exactly 20 µs, every backward one 30 µs, except one
    # backward packet "received" 100 µs before it was sent (a wrong match). The forward
    # constraints say offset >= true - 20 µs, that packet says offset <= true - 100 µs, and a
    # slope only makes it worse: the constraints cross by exactly 80 µs.
    off = 7_000_000
    t = T0_NS + np.arange(0, 10_000_000_000, 10_000_000)        # 1000 instants, 10 ms apart
    send_ref, recv_other = t + off, t + 20_000
    send_other, recv_ref = t, t + off + 30_000
    recv_ref = recv_ref.copy()
    recv_ref[321] = send_other[321] + off - 100_000
    fit = fit_offset_drift(send_ref, recv_other, send_other, recv_ref)
    assert fit.quality == "inconsistent"
    assert math.isinf(fit.uncertainty_ns)
    assert fit.overlap_ns == pytest.approx(80_000, abs=1)
    assert "cross by 80 µs" in fit.detail
    # the least-violating offset splits the difference: true - 60 µs
    assert fit.offset_ns == pytest.approx(off - 60_000, abs=1)
    assert fit.to_dict()["overlap_us"] == pytest.approx(80.0, abs=0.01)


def test_clock_step_is_inconsistent():
    rng = np.random.default_rng(6)
    clocks = TwoClocks(1_000_000, 0.0)
    send_ref, recv_other, send_other, recv_ref = exchange(clocks, rng, 2_000,
                                                          10_000_000_000, 20_000)
    # halfway through, the other clock steps 1 ms forward (an NTP step)
    recv_other = np.where(recv_other > T0_NS + 5_000_000_000, recv_other + 1_000_000,
                          recv_other)
    send_other = np.where(send_other > T0_NS + 5_000_000_000, send_other + 1_000_000,
                          send_other)
    fit = fit_offset_drift(send_ref, recv_other, send_other, recv_ref)
    assert fit.quality == "inconsistent"
    assert fit.overlap_ns > 500_000
    assert "inconsistent" in fit.detail


# --- degenerate inputs -----------------------------------------------------------------------

def test_no_pairs():
    empty = np.empty(0, np.int64)
    for fit in (fit_offset_drift(empty, empty, empty, empty),
                fit_offset_drift(None, None, None, None)):
        assert fit.quality == "none"
        assert math.isinf(fit.uncertainty_ns)
        assert fit.to_ref(np.array([123]))[0] == 123
        json.dumps(fit.to_dict(), allow_nan=False)


def test_one_pair_one_way():
    fit = fit_offset_drift([1000], [1500], [], [])
    assert fit.quality == "one-sided" and fit.n_forward == 1 and fit.n_backward == 0
    assert fit.offset_ns == -500 and fit.drift_ppm == 0


def test_all_pairs_at_one_instant():
    n = 50
    fit = fit_offset_drift(np.full(n, 1000), np.full(n, 1500), np.full(n, 1500),
                           np.full(n, 2100))
    assert fit.quality == "bounded" and fit.span_ns == 0 and fit.drift_fixed
    assert fit.offset_ns == pytest.approx(50.0)
    assert fit.uncertainty_ns == pytest.approx(550.0)
    assert "one instant" in fit.detail


def test_missing_values_are_dropped():
    send = pd.array([1000, None, 3000], dtype="Int64")
    recv = pd.array([1500, 2500, None], dtype="Int64")
    fit = fit_offset_drift(send, recv, np.array([2000.0, np.nan]), np.array([2600.0, 5.0]))
    assert fit.n_forward == 1 and fit.n_backward == 1
    assert fit.offset_ns == pytest.approx(50.0)


def test_unequal_pair_columns_are_a_programming_error():
    with pytest.raises(ValueError, match="differ in length"):
        fit_offset_drift([1, 2], [3], None, None)


def test_identity():
    fit = ClockFit.identity()
    assert fit.quality == "identity" and fit.uncertainty_ns == 0
    assert fit.to_ref(np.array([5]))[0] == 5


# --- TSC → dom0 time -------------------------------------------------------------------------

from xentrace_cli.pipeline.clock import TscFit, fit_tsc  # noqa: E402

TSC_AT_T0 = 123_456_789_012_345    # the trace's TSC at T0_NS (dom0 clock)


class NicModel:
    """Receive traffic on dom0's clock and the NIC interrupts Xen traced for it.

    Bursts of 1–4 frames (1–3 µs apart) arrive as a Poisson process with occasional idle
    periods; Xen handles the interrupt 5–40 µs before each burst's first frame is captured.
    A burst within 60 µs of the previous one was delivered by the same interrupt (coalescing);
    a fraction of interrupts is lost and stray ones are added at random times. Each frame is
    then captured on the backend 10–20 µs later, grant-copied 10–30 µs after that and captured
    in the guest 20–60 µs after the copy.
    """

    def __init__(self, seed: int, hz: float = 2.9e9, span_s: float = 10.0,
                 rate_hz: float = 800.0, missing: float = 0.03, stray: float = 0.05) -> None:
        rng = np.random.default_rng(seed)
        self.hz = hz
        n = int(rate_hz * span_s)
        gaps = rng.exponential(1e9 / rate_hz, n)
        gaps[rng.random(n) < 0.02] *= 30                      # idle periods
        first = T0_NS + np.cumsum(gaps).astype(np.int64)
        irq_ns = first - rng.integers(5_000, 40_001, n)
        irq_ns = irq_ns[np.r_[True, np.diff(first) >= 60_000]]   # coalesced bursts: no irq
        irq_ns = irq_ns[rng.random(irq_ns.size) >= missing]
        strays = rng.integers(first[0], first[-1], int(stray * irq_ns.size))
        self.irq_ns = np.sort(np.r_[irq_ns, strays])
        self.irq_tsc = self.tsc(self.irq_ns)
        sizes = rng.integers(1, 5, n)
        frames = [first + k * rng.integers(1_000, 3_001, n) for k in range(4)]
        self.phys_ns = np.sort(np.concatenate([f[sizes > k] for k, f in enumerate(frames)]))
        m = self.phys_ns.size
        self.backend_ns = self.phys_ns + rng.integers(10_000, 20_001, m)
        copy_ns = self.backend_ns + rng.integers(10_000, 30_001, m)
        self.copy_tsc = self.tsc(copy_ns)
        self.guest_ns = copy_ns + rng.integers(20_000, 60_001, m)

    def tsc(self, ns: np.ndarray) -> np.ndarray:
        return TSC_AT_T0 + np.rint((ns - T0_NS) * self.hz / 1e9).astype(np.int64)

    def true_ns(self, tsc: np.ndarray) -> np.ndarray:
        return T0_NS + np.rint((tsc - TSC_AT_T0) * 1e9 / self.hz).astype(np.int64)

    def error_ns(self, fit: TscFit) -> np.ndarray:
        """fitted - true dom0 time over the trace."""
        grid = np.linspace(self.irq_tsc.min(), self.irq_tsc.max(), 101).astype(np.int64)
        return fit.to_ns(grid) - self.true_ns(grid)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tsc_offset_with_given_frequency(seed):
    nic = NicModel(seed)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9)
    assert fit.quality == "one-sided" and math.isinf(fit.uncertainty_ns)
    assert fit.cpu_hz == 2.9e9 and not fit.cpu_hz_estimated
    # assuming the fastest interrupt took 0, the trace reads later than the truth by the true
    # minimum delay (5 µs), the same across the trace
    err = nic.error_ns(fit)
    assert np.all(np.abs(err - 5_000) <= 500)
    # delays 5–40 µs uniform, seen 5 µs short: median 17.5 µs, p99 about 34.7 µs
    assert 16.0 <= fit.residual_us[0] <= 19.0
    assert 33.5 <= fit.residual_us[1] <= 35.5
    assert fit.matched_fraction > 0.9
    # telling it the minimum delay removes the bias
    fit5 = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9, min_irq_delay_ns=5_000)
    assert np.all(np.abs(nic.error_ns(fit5)) <= 500)


@pytest.mark.parametrize("rate_hz, missing, stray", [(5_000, 0.10, 0.10), (20_000, 0.03, 0.05)])
def test_tsc_busy_link_mismatches_do_not_bias_the_bound(rate_hz, missing, stray):
    # at thousands of bursts a second a burst whose interrupt was lost sits next to another
    # burst's interrupt; such mismatches must not pull the one-sided bound (5 µs) away
    nic = NicModel(8, span_s=3.0, rate_hz=rate_hz, missing=missing, stray=stray)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9)
    assert fit.quality == "one-sided"
    assert np.all(np.abs(nic.error_ns(fit) - 5_000) <= 1_000)


@pytest.mark.parametrize("hz", [2.9e9, 2_093_417_000.0, 3.6e9])
def test_tsc_frequency_estimated(hz):
    nic = NicModel(int(hz) % 97, hz=hz)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns)
    assert fit.cpu_hz_estimated
    assert fit.quality == "one-sided"
    err_ppm = abs(fit.cpu_hz / hz - 1) * 1e6
    assert err_ppm <= fit.hz_uncertainty_ppm + 0.05
    assert fit.hz_uncertainty_ppm < 1.0
    assert np.all(np.abs(nic.error_ns(fit) - 5_000) <= 600)
    assert fit.matched_fraction > 0.9
    assert "estimated" in fit.detail
    json.dumps(fit.to_dict(), allow_nan=False)


def test_tsc_copies_bound_the_other_side():
    nic = NicModel(4)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9, copy_tsc=nic.copy_tsc,
                  copy_after_ns=nic.backend_ns, copy_before_ns=nic.guest_ns)
    assert fit.quality == "bounded"
    # irq ≥ 5 µs before its frame, copy ≥ 10 µs after the backend capture: a ~15 µs band
    assert fit.uncertainty_ns <= 9_000
    assert np.all(np.abs(nic.error_ns(fit)) <= fit.uncertainty_ns + 1)
    assert fit.to_dict()["uncertainty_us"] == pytest.approx(fit.uncertainty_ns / 1e3)


def test_tsc_copies_with_missing_times_and_estimated_frequency():
    nic = NicModel(5, hz=2.4e9)
    after = pd.array(nic.backend_ns, dtype="Int64")
    after[::3] = pd.NA                       # the backend capture missed some packets
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, copy_tsc=nic.copy_tsc, copy_after_ns=after)
    assert fit.quality == "bounded" and fit.cpu_hz_estimated
    assert np.all(np.abs(nic.error_ns(fit)) <= fit.uncertainty_ns + 1)
    assert abs(fit.cpu_hz / 2.4e9 - 1) * 1e6 < 1.0


@pytest.mark.parametrize("off_ppm", [10.0, -345.0, 900.0])
def test_tsc_given_frequency_slightly_off_is_refined(off_ppm):
    # xl info gives MHz: a given 2.901 GHz for a 2.9 GHz TSC (-345 ppm) must not lose the trace
    true_hz = 2.9e9 * (1 + off_ppm * 1e-6)
    nic = NicModel(6, hz=true_hz)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9)
    assert fit.quality == "one-sided" and fit.cpu_hz_estimated and fit.cpu_hz_given == 2.9e9
    assert abs(fit.cpu_hz / true_hz - 1) * 1e6 <= fit.hz_uncertainty_ppm + 0.05
    ppm = re.escape(f"({off_ppm:+.1f} ppm)")
    assert re.search(rf"TSC given 2\.9 GHz, fitted 2\.\d{{6}} GHz {ppm}", fit.detail), fit.detail
    assert np.all(np.abs(nic.error_ns(fit) - 5_000) <= 600)
    right = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=true_hz)
    assert "fitted" not in right.detail and right.cpu_hz == true_hz


def test_tsc_given_frequency_far_off_says_so():
    nic = NicModel(6)
    fit = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=3.2e9)   # 10 % off: not a rounding
    assert fit.quality == "none"
    assert fit.detail.startswith("the given --cpu-hz 3.2 GHz does not fit the interrupts")
    assert "without it the interrupts line up at 2.900000 GHz" in fit.detail


def test_tsc_unrelated_interrupts_do_not_line_up():
    nic = NicModel(7)
    rng = np.random.default_rng(70)
    unrelated = np.sort(rng.integers(nic.irq_tsc.min(), nic.irq_tsc.max(), nic.irq_tsc.size))
    fit = fit_tsc(unrelated, nic.phys_ns, cpu_hz=2.9e9)
    real = fit_tsc(nic.irq_tsc, nic.phys_ns, cpu_hz=2.9e9)
    assert fit.quality == "none" or fit.matched_fraction < 0.3
    assert real.matched_fraction > fit.matched_fraction + 0.5
    # a 1 kHz timer interrupt lines up with nothing, whatever frequency is tried
    timer = TSC_AT_T0 + np.arange(10_000, dtype=np.int64) * 2_900_000
    for hz in (2.9e9, None):
        fit = fit_tsc(timer, nic.phys_ns, cpu_hz=hz)
        assert fit.quality == "none"
        assert "line" in fit.detail


@pytest.mark.parametrize("irq, arrivals", [
    ([], [1, 2, 3]),
    ([5, 6, 7], []),
    ([5], [1_000_000]),
    ([5, 5, 5], [1_000_000, 1_000_000]),
])
def test_tsc_degenerate_inputs(irq, arrivals):
    fit = fit_tsc(np.array(irq, np.int64), np.array(arrivals, np.int64), cpu_hz=2.9e9)
    assert fit.quality == "none"
    assert math.isinf(fit.uncertainty_ns)
    assert fit.detail
    json.dumps(fit.to_dict(), allow_nan=False)
    with pytest.raises(ValueError, match="no TSC mapping"):
        fit.to_ns([1])


# --- against the simulator's truth -----------------------------------------------------------

@pytest.fixture(scope="module")
def simulated(simulated_set):
    """The clock-skew scenario (guest clock 7.3 ms ahead, 40 ppm fast), written once."""
    out = simulated_set("clock-skew")
    return out, json.loads((out / "scenario.json").read_text())


def _tcp(path):
    from xentrace_cli.sources.packets import read_packets

    key = ["src", "dst", "sport", "dport", "tcp_seq", "tcp_ack", "payload_len", "tcp_flags"]
    p = read_packets(path)
    p = p[p["proto"] == 6][key + ["ts_ns"]].copy()
    for col in key:
        p[col] = p[col].astype(str) if col in ("src", "dst") else p[col].astype("int64")
    return p.drop_duplicates(key, keep=False), key


def test_simulated_guest_clock_recovered(simulated):
    out, meta = simulated
    backend, key = _tcp(out / meta["files"]["backend"])
    guest, _ = _tcp(out / meta["files"]["guest"])
    both = backend.merge(guest, on=key, suffixes=("_dom0", "_guest"))
    rx = (both["dst"] == meta["guest_ip"]).to_numpy()
    dom0, gst = both["ts_ns_dom0"].to_numpy(), both["ts_ns_guest"].to_numpy()
    fit = fit_offset_drift(dom0[rx], gst[rx], gst[~rx], dom0[~rx], names=("dom0", "guest"))
    assert fit.quality == "bounded"
    # the simulator's formula, inverted: guest = true + offset + drift·(true - t0)
    clock, t0 = meta["guest_clock"], meta["t0_ns"]
    grid = np.linspace(gst.min(), gst.max(), 101).astype(np.int64)
    true = t0 + np.rint((grid - t0 - clock["offset_ns"])
                        / (1 + clock["drift_ppm"] * 1e-6)).astype(np.int64)
    assert np.abs(fit.to_ref(grid) - true).max() <= fit.uncertainty_ns + 1
    assert fit.drift_range_ppm[0] <= -clock["drift_ppm"] / (1 + clock["drift_ppm"] * 1e-6) \
        <= fit.drift_range_ppm[1]
    assert fit.uncertainty_ns < 20_000


@pytest.mark.parametrize("given", [True, False])
def test_simulated_tsc_recovered(simulated, given):
    from xentrace_cli.sources.xentrace import read_xentrace
    from xentrace_cli.xen_events import TRC_HW_IRQ_HANDLED

    out, meta = simulated
    ev = read_xentrace(out / meta["files"]["xentrace"]).events
    nic = ((ev["event"].to_numpy() == TRC_HW_IRQ_HANDLED)
           & (ev["irq"].to_numpy(dtype=np.int64, na_value=-1) == meta["nic_irq"]))
    irq_tsc = ev["tsc"].to_numpy(np.int64)[nic]
    phys, _ = _tcp(out / meta["files"]["phys"])
    arrivals = np.sort(phys.loc[phys["dst"] == meta["guest_ip"], "ts_ns"].to_numpy(np.int64))
    fit = fit_tsc(irq_tsc, arrivals, cpu_hz=meta["cpu_hz"] if given else None)
    assert fit.quality == "one-sided"
    assert fit.matched_fraction > 0.9
    hz_err_ppm = abs(fit.cpu_hz / meta["cpu_hz"] - 1) * 1e6
    assert hz_err_ppm <= fit.hz_uncertainty_ppm + (0 if given else 0.05)
    # tsc = tsc_at_t0 + (t - t0)·cpu_hz/1e9; the fit reads late by the fastest irq→frame delay,
    # no more than the fastest the truth table shows for a data segment (float seconds: ±0.5 µs)
    truth = pd.read_csv(out / meta["files"]["truth"])
    fastest_ns = float(((truth["t_phys"] - truth["t_irq"]).min()) * 1e9)
    grid = np.linspace(irq_tsc.min(), irq_tsc.max(), 101).astype(np.int64)
    true = meta["t0_ns"] + np.rint((grid - meta["tsc_at_t0"]) * 1e9
                                   / meta["cpu_hz"]).astype(np.int64)
    err = fit.to_ns(grid) - true
    assert err.min() >= -1_000
    assert err.max() <= fastest_ns + 1_500


def _every_pair_scale(px: np.ndarray, pa: np.ndarray, pgx: np.ndarray, pga: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference for ``clock._pair_scales``: every pair of gap pairs tested, the full
    matrix scanned row by row (what ``_coarse_align`` did before)."""
    dx = px[None, :] - px[:, None]
    da = pa[None, :] - pa[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = da / dx
        valid = (dx > 0) & (da > 0)
        valid &= (sc >= 1e9 / clock.MAX_CPU_HZ) & (sc <= 1e9 / clock.MIN_CPU_HZ)
        valid &= np.abs(sc * pgx[:, None] - pga[:, None]) < clock.GAP_JITTER_NS
        valid &= np.abs(sc * pgx[None, :] - pga[None, :]) < clock.GAP_JITTER_NS
    p, q = np.nonzero(valid)
    return sc[p, q], da[p, q], p


@pytest.mark.parametrize("seed", range(6))
def test_pair_scales_are_those_of_every_pair(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_pair_scales`` tests only the gap pairs whose windows of scales meet: the same
    scales, baselines and rows, in the same order, as testing every pair (the reference
    above), on gaps that follow one line with jitter, strays and equal gap lengths, in
    integer and float arrays, in blocks of any size."""
    rng = np.random.default_rng(seed)
    k = rng.uniform(0.2, 1.5)  # ns per cycle
    n = int(rng.integers(50, 600))
    px = np.sort(rng.integers(0, 10**12, n))
    pgx = rng.integers(1, 10**9 if seed % 2 else 10**6, n)
    pa = (px * k).astype(np.int64) + rng.normal(0, 50_000, n).astype(np.int64)
    pa[rng.random(n) < 0.3] += rng.integers(-10**9, 10**9)  # strays
    pga = (pgx * k).astype(np.int64) + rng.integers(-150_000, 150_000, n)
    if seed == 4:
        pga[:] = int(pga.mean())  # every window alike: every pair meets
    arrays = (px, pa, pgx, pga) if seed % 3 else tuple(v.astype(float) for v in
                                                       (px, pa, pgx, pga))
    expected = _every_pair_scale(*arrays)
    assert expected[0].size > 0
    for block in (2_000_000, 1_000, 7):
        monkeypatch.setattr(clock, "PAIR_BLOCK", block)
        got = clock._pair_scales(*arrays)
        for g, e in zip(got, expected, strict=True):
            assert g.dtype == e.dtype
            assert np.array_equal(g, e)


def test_sorted_distinct_is_np_unique_sorted_or_not() -> None:
    """The TSC fit's inputs sorted only when they are not already (they come in time order):
    the same sorted distinct values as ``np.unique``, and the same sorted copy as
    ``np.sort``, never the caller's array itself."""
    rng = np.random.default_rng(4)
    for n in (0, 1, 2, 3, 50, 1000):
        for values in (rng.integers(0, 40, n), np.sort(rng.integers(0, 40, n)),
                       np.sort(rng.integers(0, 40, n))[::-1].copy()):
            assert clock._sorted_distinct(values).tolist() == np.unique(values).tolist()
            ordered = clock._sorted(values)
            assert ordered.tolist() == np.sort(values).tolist()
            assert not np.shares_memory(ordered, values) or ordered.size == 0
