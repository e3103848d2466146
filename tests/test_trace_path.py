"""Each step of following a packet's path through the trace (trace_path, path_order), on
records written by hand: a few interrupts, wakes, copies and run states whose right answer
is worked out in the comments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import path_order, trace_path
from xentrace_cli.pipeline.timelines import (
    NO_TSC,
    RUNNING,
    Copies,
    Interrupts,
    Timelines,
    TraceRecords,
    Wakes,
)
from xentrace_cli.sources.xentrace import RUNSTATE_DTYPE

NA = np.iinfo(np.int64).min


def records(interrupts=(), wakes=(), copies=()) -> TraceRecords:
    """``interrupts``: (tsc, entry_tsc, cpu, irq); ``wakes``: (tsc, cpu, domid, vcpu);
    ``copies``: (tsc, cpu, count, issuer)."""
    def cols(rows, n):
        a = np.array(sorted(rows), dtype=np.int64).reshape(-1, n)
        return [a[:, i] for i in range(n)]
    return TraceRecords(Interrupts(*cols(interrupts, 4)), Wakes(*cols(wakes, 4)),
                        Copies(*cols(copies, 4)))


def timelines(*intervals: tuple[int, int, str, int, int, int]) -> Timelines:
    """Run-state intervals (domid, vcpu, state, cpu, start, end)."""
    frame = pd.DataFrame(intervals, columns=["domid", "vcpu", "state", "cpu", "start_tsc",
                                             "end_tsc"])
    frame["state"] = pd.Categorical(frame["state"], dtype=RUNSTATE_DTYPE)
    frame.attrs["last_tsc"] = 10_000
    return Timelines(frame)


def test_running_clamp_is_the_sequential_recurrence() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(1, 200))
        low = rng.integers(-50, 50, n)
        high = low + rng.integers(0, 30, n)
        t, want = -(10**18), []
        for lo, hi in zip(low, high, strict=True):
            t = min(hi, max(lo, t))
            want.append(t)
        assert trace_path.running_clamp(low, high).tolist() == want


def test_fifo_assign_by_hand() -> None:
    # batches of 2, 2 and 5 frames; 6 frames, each possible from its first batch on
    first = np.array([0, 0, 0, 1, 2, 2])
    last = np.full(6, 2)
    # frames 0,1 fill batch 0; 2,3 batch 1 (frame 2 could have gone in 0: full); 4,5 batch 2
    assert trace_path.fifo_assign(first, last, np.array([2, 2, 5])).tolist() == \
        [0, 0, 1, 1, 2, 2]


def test_fifo_assign_resyncs_after_a_batch_that_was_not_this_queues() -> None:
    # batch 1 (count 3) was another queue's, but counts as ours: frames 2-3 would be put in
    # it and frames 4-5 pushed to batch 3. Their deadlines (last) say batch 2 at the latest:
    # the shift comes back down, and only the frames the bound cannot place move
    first = np.array([0, 0, 1, 1, 2, 2])
    last = np.array([0, 0, 2, 2, 2, 2])
    got = trace_path.fifo_assign(first, last, np.array([2, 3, 2, 9]))
    assert got.tolist()[4:] == [2, 2]
    assert all(f <= g <= lst for f, g, lst in zip(first, got, last, strict=True) if g >= 0)


def test_the_interrupt_goes_to_the_vcpu_serving_it_not_to_who_runs_on_its_cpu() -> None:
    # NIC IRQ 58 lands on pCPU 4 (the guest's). d0v1 (pCPU 1) serves it.
    #  irq A at 1000: the handler wakes d0v1 (WAKE on CPU 4 at 995, inside [990, 1000]);
    #                 d0v1 runs at 1040 → dom0_run 1040.
    #  irq B at 3000: no wake; d0v1 is running (2000-3500) → dom0_run = the irq, 3000.
    #  irq C at 5000: no wake; d0v1 runnable (4500-5600), runs at 5600 → dom0_run 5600.
    # Meanwhile d0v3 runs on CPU 4 at 4900-5100: the old rule ("dom0 runs on the interrupt's
    # CPU: dom0_run = the interrupt") would have answered 5000 for C.
    rec = records(interrupts=[(1000, 990, 4, 58), (3000, 2990, 4, 58), (5000, 4990, 4, 58)],
                  wakes=[(995, 4, 0, 1)])
    lines = timelines((0, 1, "blocked", 1, 0, 995), (0, 1, "runnable", 1, 995, 1040),
                      (0, 1, "running", 1, 1040, 1200), (0, 1, "blocked", 1, 1200, 2000),
                      (0, 1, "running", 1, 2000, 3500), (0, 1, "blocked", 1, 3500, 4500),
                      (0, 1, "runnable", 1, 4500, 5600), (0, 1, "running", 1, 5600, 6000),
                      (0, 3, "running", 4, 4900, 5100))
    runs = trace_path.interrupt_runs(rec, lines, np.arange(3))
    assert runs.vcpu.tolist() == [1, 1, 1]
    assert runs.run_tsc.tolist() == [1040, 3000, 5600]
    assert runs.woken.tolist() == [True, False, False]


def test_a_blocked_serving_vcpu_without_a_wake_breaks_the_chain() -> None:
    # irq at 1000 woke d0v2; irq at 3000 woke nobody while d0v2 was blocked: no choice
    rec = records(interrupts=[(1000, 990, 0, 58), (3000, 2990, 0, 58)], wakes=[(995, 0, 0, 2)])
    lines = timelines((0, 2, "runnable", 2, 995, 1010), (0, 2, "running", 2, 1010, 1100),
                      (0, 2, "blocked", 2, 1100, 6000))
    runs = trace_path.interrupt_runs(rec, lines, np.arange(2))
    assert runs.run_tsc.tolist() == [1010, NO_TSC]


def test_irqbalance_moved_the_binding_to_a_running_vcpu() -> None:
    # irq at 1000 woke d0v3 (the binding). irqbalance then binds the IRQ to d0v0, which is
    # running (2000-4000) when irqs come at 3000 and 3300: no wake, and d0v3, the nearest
    # woken vCPU, is blocked — not the binding any more. The irq at 5000 woke d0v0: the
    # vCPU woken on the other side in time; it was running at 3000 and 3300 → dom0_run = the
    # interrupts themselves.
    rec = records(interrupts=[(1000, 990, 4, 58), (3000, 2990, 4, 58), (3300, 3290, 4, 58),
                              (5000, 4990, 4, 58)],
                  wakes=[(995, 4, 0, 3), (4995, 4, 0, 0)])
    lines = timelines((0, 3, "runnable", 3, 995, 1010), (0, 3, "running", 3, 1010, 1100),
                      (0, 3, "blocked", 3, 1100, 9000),
                      (0, 0, "running", 0, 2000, 4000), (0, 0, "blocked", 0, 4000, 4995),
                      (0, 0, "runnable", 0, 4995, 5020), (0, 0, "running", 0, 5020, 6000))
    runs = trace_path.interrupt_runs(rec, lines, np.arange(4))
    assert runs.vcpu.tolist() == [3, 0, 0, 0]
    assert runs.run_tsc.tolist() == [1010, 3000, 3300, 5020]


def test_a_poll_that_ran_after_the_frame_did_not_carry_it() -> None:
    # interrupts at 100 (dom0 ran 110) and 200 (dom0 ran 260); a frame captured at 230 came
    # in the first poll: the second one's dom0 vCPU ran only after it
    irq = np.array([100, 200])
    run = np.array([110, 260])
    arrive = np.array([150, 230, 270, NA])
    assert trace_path.pick_interrupts(irq, run, arrive, tolerance_ns=5).tolist() == \
        [0, 0, 1, -1]


def test_interrupts_waiting_for_one_run_share_the_first_ones_poll() -> None:
    # d0v1 starved: interrupts at 100, 200, 300 all wait for its run at 900; the poll that
    # run carries out was scheduled by the first. An interrupt at 1000 finds d0v1 running.
    irq = np.array([100, 200, 300, 1000])
    run = np.array([900, 900, 900, 1000])
    vcpu = np.array([1, 1, 1, 1])
    assert trace_path.first_of_run(run, vcpu).tolist() == [0, 0, 0, 3]
    arrive = np.array([905, 950, 1010])
    assert trace_path.pick_interrupts(irq, run, arrive, 5, vcpu).tolist() == [0, 0, 3]


def test_another_guests_copy_is_set_aside() -> None:
    # copies on CPU 1 at 100 (then d5 woken at 103) and 200 (then d7 woken at 204), and at
    # 300 with d7's wake only after the next copy at 310
    rec = records(copies=[(100, 1, 1, 1), (200, 1, 1, 1), (300, 1, 1, 1), (310, 1, 1, 1)],
                  wakes=[(103, 1, 5, 0), (204, 1, 7, 0), (315, 1, 7, 0)])
    assert trace_path.classify_copies(rec, 5, window_cycles=30).tolist() == \
        [False, True, False, True]


def test_the_transmit_copy_is_the_notified_vcpus_last_before_the_frame() -> None:
    # d0v2 copies at 1000 (2 frames) and hands them to dom0's stack at 1004 and 1006; d0v1's
    # receive copy at 1003 falls between, and within the clocks' ±5: it is not theirs.
    # d0v2's own receive copy at 1010 comes after (its softirq had finished)
    copy_ns = np.array([1000, 1003, 1010])
    issuer = np.array([2, 1, 2])
    frames = np.array([1004, 1006])
    got = trace_path.assign_tx_copies(copy_ns, np.ones(3, bool), issuer, frames,
                                      np.array([2, 2]), np.full(2, NA), tolerance_ns=2)
    assert got.tolist() == [0, 0]
    # without knowing the vCPU, the last copy before the frames is d0v1's
    unknown = trace_path.assign_tx_copies(copy_ns, np.ones(3, bool), issuer, frames,
                                          np.array([-1, -1]), np.full(2, NA), tolerance_ns=2)
    assert unknown.tolist() == [1, 1]
    # a copy before the frame's guest capture cannot have taken it out of the guest
    late_guest = trace_path.assign_tx_copies(copy_ns, np.ones(3, bool), issuer, frames,
                                             np.array([2, 2]), np.array([1002, 1002]),
                                             tolerance_ns=1)
    assert late_guest.tolist() == [-1, -1]


def test_the_guest_vcpu_the_copy_woke_and_its_run() -> None:
    # copy at 100 on CPU 1 wakes d5v1 at 104 (runs at 130); copy at 500: no wake, d5v1 is
    # running → guest_run = the copy; copy at 800: no wake, d5v1 runnable until 900
    rec = records(copies=[(100, 1, 1, 1), (500, 1, 1, 1), (800, 1, 1, 1)],
                  wakes=[(104, 1, 5, 1)])
    lines = timelines((5, 1, "blocked", 3, 0, 104), (5, 1, "runnable", 3, 104, 130),
                      (5, 1, "running", 3, 130, 700), (5, 1, "runnable", 3, 700, 900),
                      (5, 1, "running", 3, 900, 1000), (5, 0, "running", 2, 0, 1000))
    runs = trace_path.guest_runs(rec, lines, np.arange(3), 5, window_cycles=30)
    assert runs.vcpu.tolist() == [1, 1, 1]
    assert runs.wake_tsc.tolist() == [104, NO_TSC, NO_TSC]
    assert runs.run_tsc.tolist() == [130, 500, 900]


def test_path_order_empties_the_chosen_checkpoint_never_a_measured_one() -> None:
    # row 0 in order; row 1: its copy (chosen) precedes the backend capture by 10 µs, beyond
    # the trace's ±2 µs; row 2 (tx): dom0_run before the guest capture beyond ±2+3 µs
    us = 1_000
    cps = {"backend": [100, 100, 300], "copy": [105, 90, 290], "guest_run": [110, 95, -1],
           "guest": [120, 120, 280], "dom0_run": [-1, -1, 270]}   # µs; -1: not measured
    cps = {k: np.where(np.array(v) < 0, NA, np.array(v) * us) for k, v in cps.items()}
    clock = {"backend": "dom0", "copy": "tsc", "guest_run": "tsc", "guest": "guest",
             "dom0_run": "tsc"}
    rx = np.array([True, True, False])
    out, why = path_order.enforce_path_order(cps, {"rx": rx, "tx": ~rx},
                                             {"dom0": 0, "tsc": 2 * us, "guest": 3 * us},
                                             clock)
    assert out["copy"].tolist() == [105 * us, NA, 290 * us]  # tx: the copy is in order
    assert out["guest_run"].tolist()[:2] == [110 * us, NA]   # rests on the copy
    assert out["backend"].tolist() == cps["backend"].tolist()  # measured: kept
    assert out["dom0_run"][2] == NA
    assert why.counts[("rx", "copy", "backend")] == 1
    assert sum(why.counts.values()) == 2


@pytest.mark.parametrize(("value", "unc", "bad"), [(-0.5, 0.0, False), (-1.5, 0.0, True),
                                                   (-3.0, 2.5, False), (-4.0, 2.5, True)])
def test_guard_intervals(value: float, unc: float, bad: bool) -> None:
    assert path_order.guard_intervals(np.array([value]), np.array([unc]))[0] == bad


def _switches(rows: list[tuple[int, int, int, int, int, int]]) -> pd.DataFrame:
    """SWITCH records (cpu, tsc, prev_domid, prev_vcpu, next_domid, next_vcpu), as the
    reader's table has them."""
    a = np.array(rows, dtype=np.int64).reshape(-1, 6)
    return pd.DataFrame({"cpu": a[:, 0].astype(np.int16), "tsc": a[:, 1],
                         **{name: a[:, k + 2].astype(np.int32) for k, name in enumerate(
                             ("prev_domid", "prev_vcpu", "next_domid", "next_vcpu"))}})


def test_dom0_occupant_by_hand() -> None:
    from xentrace_cli.pipeline.timelines import dom0_occupant

    switches = _switches([
        (0, 100, 0, 1, 5, 0),     # CPU 0: d0v1 since the trace began, then d5v0
        (1, 150, 0x7FFF, 1, 0, 2),  # CPU 1: idle, then d0v2 …
        (0, 200, 5, 0, 0, 3),     # CPU 0: d0v3 from 200
        (1, 200, 0, 2, 0, 0),     # … and at 200 twice: d0v0 for no time, then d0v1
        (1, 200, 0, 0, 0, 1),
    ])
    cpu = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    tsc = np.array([40, 99, 150, 200, 149, 199, 200, 500])
    # from 50 (the trace's first TSC): 40 is before it, unknown; 99 d0v1 (before CPU 0's
    # first switch); 150 d5v0 (not dom0); 200 d0v3; CPU 1 at 149 idle, at 199 d0v2, at 200
    # the last of the switches at 200 (d0v1); CPU 2 has no switches
    want = [-1, 1, -1, 3, -1, 2, 1, -1]
    assert dom0_occupant(switches, 50, cpu, tsc).tolist() == want
    # without the trace's first TSC, the first switch's: before CPU 0's first, none known
    assert dom0_occupant(switches, None, cpu, tsc).tolist() == [-1, -1, -1, 3, -1, 2, 1, -1]


def test_dom0_occupant_is_who_cpu_runs_says_ran() -> None:
    """Against ``running_on`` over ``cpu_runs`` (the intervals it saves building), on random
    switches: CPUs whose TSC goes back, ties, times before the first switch."""
    from xentrace_cli.pipeline.timelines import dom0_occupant
    from xentrace_cli.sources.xentrace import cpu_runs, running_on

    rng = np.random.default_rng(7)
    for _ in range(30):
        n = int(rng.integers(1, 300))
        rows = [(int(rng.integers(0, 4)), int(rng.integers(0, 1000)), int(rng.integers(0, 3)),
                 int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.integers(0, 3)))
                for _ in range(n)]
        rows.sort(key=lambda r: r[1] + int(rng.integers(0, 50)))  # nearly in time order
        switches = _switches(rows)
        cpu = rng.integers(0, 5, 500)
        tsc = rng.integers(-50, 1100, 500)
        for first in (None, int(rng.integers(-20, 100))):
            who = running_on(cpu_runs(switches, first), cpu, tsc)
            dom0 = who["domid"].to_numpy(dtype=np.int64, na_value=-1) == 0
            want = np.where(dom0, who["vcpu"].to_numpy(dtype=np.int64, na_value=-1), -1)
            assert dom0_occupant(switches, first, cpu, tsc).tolist() == want.tolist()


def _plain_path_order(checkpoints: dict[str, np.ndarray], rx: np.ndarray,
                      tolerance_ns: dict[str, float], clock_of: dict[str, str]
                      ) -> tuple[dict[str, np.ndarray], dict[tuple[str, str, str], int]]:
    """enforce_path_order as first written: every pair's test whole (both measured, the
    difference compared as floats), on copies of the direction's rows."""
    out = {k: v.copy() for k, v in checkpoints.items()}
    counts: dict[tuple[str, str, str], int] = {}
    for way, order in path_order.ORDER.items():
        rows = np.flatnonzero(rx if way == "rx" else ~rx)
        mine = {p: out[p][rows] for p in order if p in out}
        present = list(mine)
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                allowed = path_order._allowed(a, b, tolerance_ns, clock_of)
                if not (a in path_order.CHOSEN or b in path_order.CHOSEN) \
                        or not np.isfinite(allowed):
                    continue
                ta, tb = mine[a], mine[b]
                with np.errstate(over="ignore"):
                    bad = (ta != NA) & (tb != NA) & ((ta - tb).astype(float) > allowed)
                if not bad.any():
                    continue
                first = a if a in path_order.CHOSEN else b
                emptied = {first}
                if (a in path_order.CHOSEN) == (b in path_order.CHOSEN):
                    emptied.add(b)
                for point in emptied:
                    for name in (point, *path_order.TOGETHER[way].get(point, ())):
                        if name in mine:
                            mine[name][bad] = NA
                key = (way, "/".join(sorted(emptied)), b if a in path_order.CHOSEN else a)
                counts[key] = counts.get(key, 0) + int(bad.sum())
        for p, values in mine.items():
            out[p][rows] = values
    return out, counts


@pytest.mark.parametrize("seed", range(40))
def test_path_order_is_the_plain_pairwise_one(seed: int) -> None:
    # the integer comparison against floor(allowed) and the checkpoints' held masks kept up
    # to date as rows are emptied give the plain float comparison's checkpoints and counts
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    points = [p for p in dict.fromkeys(path_order.ORDER["rx"] + path_order.ORDER["tx"])
              if rng.random() < 0.8]
    base = rng.integers(0, 2**40) if seed % 2 else 1_700_000_000 * 10**9
    cps = {}
    for p in points:
        # coarse steps, a nanosecond apart: differences land on and next to the allowance
        t = base + rng.integers(-40, 40, n) * 250 + rng.integers(0, 2, n)
        if seed % 5 == 0:  # far apart: differences beyond 2**53 in the mix
            t[rng.random(n) < 0.1] = rng.integers(-2**62, 2**62)
        t[rng.random(n) < 0.2] = NA
        cps[p] = t.astype(np.int64)
    clocks = ("dom0", "tsc", "guest", "socket")
    clock_of = {p: clocks[int(rng.integers(0, 4))] for p in points}
    tolerance = {c: float(rng.choice([0.0, 1500.5, 2_000.0, 7_777.25, np.inf]))
                 for c in clocks}
    rx = rng.random(n) < 0.5
    given = {k: v.copy() for k, v in cps.items()}
    # (the directions apart: the transmit one checked in a worker thread)
    got, why = path_order.enforce_path_order(cps, {"rx": rx, "tx": ~rx}, tolerance, clock_of)
    want, counts = _plain_path_order(cps, rx, tolerance, clock_of)
    assert {k: v.tolist() for k, v in got.items()} == {k: v.tolist() for k, v in want.items()}
    assert why.counts == counts
    # the checkpoints given are left as they were (the measured ones are shared, not copied)
    assert {k: v.tolist() for k, v in cps.items()} == {k: v.tolist() for k, v in given.items()}

@pytest.mark.parametrize("width", [0, 30, 10**6])
def test_running_clamp_stops_early_only_when_nothing_would_change(width: int) -> None:
    """The passes stop once every composition still open is a constant: the same as the
    sequential recurrence whether the bounds collapse at once (width 0), after a few passes
    (30) or stay apart over long stretches (unbounded above, as a frame without a guest
    capture is), at every length around the powers of two."""
    rng = np.random.default_rng(width + 7)
    for n in [*range(1, 40), 63, 64, 65, 127, 128, 129, 500, 1025]:
        low = rng.integers(-50, 50, n) * (1 + width // 30)
        high = low + rng.integers(0, width + 1, n)
        open_above = rng.random(n) < (0.5 if width > 100 else 0.05)
        high = np.where(open_above, np.iinfo(np.int64).max // 4, high)
        t, want = -(10**18), []
        for lo, hi in zip(low.tolist(), high.tolist(), strict=True):
            t = min(hi, max(lo, t))
            want.append(t)
        assert trace_path.running_clamp(low, high).tolist() == want


def test_neighbour_fills_are_the_search_of_the_known_ones() -> None:
    """The known neighbours before each position counted by a running sum give the fills
    that searching the known positions for each position gives."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        values = np.where(rng.random(n) < rng.random(), rng.integers(0, 4, n), -1)
        times = np.sort(rng.integers(0, 1000, n))
        known = np.flatnonzero(values >= 0)
        got = trace_path._neighbour_fills(values, times)
        assert trace_path._nearest_fill(values, times).tolist() == got[0].tolist()
        if known.size == 0:
            assert all((g == values).all() for g in got)
            continue
        k = np.searchsorted(known, np.arange(n))
        before = known[np.maximum(k - 1, 0)]
        after = known[np.minimum(k, known.size - 1)]
        use_after = np.abs(times[after] - times) < np.abs(times - times[before])
        nearest, other = np.where(use_after, after, before), np.where(use_after, before, after)
        assert got[0].tolist() == np.where(values >= 0, values, values[nearest]).tolist()
        assert got[1].tolist() == np.where(values >= 0, values, values[other]).tolist()


def test_timeline_questions_answered_together_are_the_single_ones() -> None:
    """``state_cpu_at`` is ``state_at`` and ``cpu_at``; ``next_run`` given the states is
    ``next_run`` finding them; ``ran_since`` (its running intervals' sums made once per
    timeline) is the same sums made per call, on random timelines."""
    rng = np.random.default_rng(11)
    states = ["running", "runnable", "blocked"]
    for _ in range(60):
        n = int(rng.integers(1, 12))
        edges = np.cumsum(rng.integers(1, 50, n + 1))
        rows = [(1, 0, states[int(rng.integers(0, 3))], int(rng.integers(0, 4)),
                 int(edges[i]), int(edges[i + 1])) for i in range(n)]
        line = timelines(*rows)[(1, 0)]
        tsc = rng.integers(0, int(edges[-1]) + 60, 40)
        state, cpu = line.state_cpu_at(tsc)
        assert state.tolist() == line.state_at(tsc).tolist()
        assert cpu.tolist() == line.cpu_at(tsc).tolist()
        assert line.next_run(tsc, state).tolist() == line.next_run(tsc).tolist()
        run = line.state == RUNNING  # the running intervals summed as before, per call
        s, e = line.start[run], line.end[run]
        for amount in (1, 10, 60):
            want = np.full(tsc.size, NO_TSC)
            if s.size:
                done = np.cumsum(e - s)
                k = np.searchsorted(s, tsc, side="right") - 1
                j = np.maximum(k, 0)
                ran = np.where(k >= 0, done[j] - (e[j] - np.minimum(tsc, e[j])), 0)
                target = ran - amount
                ok = (k >= 0) & (target >= 0)
                m = np.minimum(np.searchsorted(done, target, side="left"), s.size - 1)
                want[ok] = (s[m] + (target - (done[m] - (e[m] - s[m]))))[ok]
            assert line.ran_since(tsc, amount).tolist() == want.tolist()
