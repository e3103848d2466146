"""Each step of following packets through the trace, alone, against the simulator's truth.

:func:`~xentrace_cli.pipeline.trace_attribute.attribute_trace` runs these steps in order; here
each is called by itself on a realistic-host set (several dom0 vCPUs, the NIC interrupt
moving, netback's receive and transmit copies and another guest's, ``docs/simulator.md``),
with the inputs the analysis gives it (the analysis' own first steps: read, match, orient,
align, socket log), and its output is compared with ``truth.csv`` and ``scenario.json`` —
written by the simulator, which knows when each record happened on the true clock:

1. :func:`.align.nic_clock` — the NIC's IRQ and the TSC on dom0's clock;
2. :func:`.trace_attribute.guest_domain` — the guest's domain;
3. :func:`.trace_attribute.lone_copies` then :func:`.align.refit_with_copies` — copies that
   need no choice, and the clock they bound;
4. :func:`.trace_attribute.place_copies` — every row's grant copy;
5. :func:`.trace_attribute.rx_dom0_runs` — ``irq`` and ``dom0_run`` of received rows;
6. :func:`.trace_attribute.rx_guest_runs` — ``guest_wake`` and ``guest_run``;
7. :func:`.trace_attribute.tx_dom0_runs` — ``dom0_run`` of sent rows.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import align, trace_path
from xentrace_cli.pipeline import analyze as pipeline
from xentrace_cli.pipeline import trace_attribute as ta
from xentrace_cli.pipeline.timelines import Timelines, TraceRecords
from xentrace_cli.simulate.score import join_truth, read_truth
from xentrace_cli.sources.manifest import read_manifest

REQUESTS = 120
#: Timestamps are whole µs in the pcap files and the truth's floats: an error this small
#: is no error (µs).
QUANTUM_US = 2.0
#: Share of the rows whose step output must be within its tolerance of the truth.
SHARE = 0.98
NA = ta.NA_NS


@dataclasses.dataclass
class Prepared:
    """A set's trace and what the analysis hands attribute_trace, beside the truth."""

    meta: dict[str, Any]
    records: TraceRecords
    timelines: Timelines
    frames: ta.Dom0Frames
    checkpoints: dict[str, np.ndarray]
    rx: np.ndarray
    truth: pd.DataFrame
    """Per table row (``row``), the truth's times as int64 ns (NA where it has none)."""
    guest_uncertainty_us: float
    """The guest capture's clock on dom0's: a checkpoint taken from it (a vCPU already
    running) carries this uncertainty too, as the table's ``uncertainty_us`` says."""

    def true_ns(self, tsc: np.ndarray) -> np.ndarray:
        """A TSC on the true clock, by the simulator's own formula (scenario.json)."""
        m = self.meta
        return m["t0_ns"] + np.rint((np.asarray(tsc, float) - m["tsc_at_t0"]) * 1e9
                                    / m["cpu_hz"]).astype(np.int64)

    def truth_of(self, point: str) -> np.ndarray:
        """The truth's ``t_<point>`` of every row, int64 ns (NA_NS where the truth has none
        or the row has no truth row)."""
        out = np.full(self.rx.size, NA, dtype=np.int64)
        t = self.truth[f"t_{point}"].to_numpy(float)
        ok = np.isfinite(t)
        out[self.truth["row"].to_numpy()[ok]] = np.rint(t[ok] * 1e9).astype(np.int64)
        return out


@pytest.fixture(scope="module")
def prepared(simulated_set) -> Prepared:
    directory = simulated_set("healthy", seed=1, requests=REQUESTS, host="realistic")
    sources = read_manifest(directory).sources
    run = pipeline._Run(sources, pipeline.AnalyzeOptions(), pipeline._Progress(sources, None),
                        set(sources.present))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in (pipeline.read_sources, pipeline.match_captures, pipeline.orient,
                     pipeline.align_clocks, pipeline.place_socket_log):
            step(run)
    assert run.trace is not None and run.anchor is not None
    frames = pipeline.dom0_frames(run.packets, run.local)
    assert frames is not None
    rows = run.anchor.assign(row=np.arange(run.n), t_guest_ns=run.checkpoints["guest"])
    truth = join_truth(rows, read_truth(directory))
    assert len(truth) == run.n  # every row has its truth row
    # the records and timelines made in the trace reader's worker (its event table let go)
    ready = run.trace_ready
    assert ready is not None and ready.records is not None
    return Prepared(json.loads((Path(directory) / "scenario.json").read_text()),
                    ready.records, ready.timelines, frames, dict(run.checkpoints), run.rx,
                    truth, run.uncertainty["guest"])


@pytest.fixture(scope="module")
def clock(prepared: Prepared) -> tuple[align.NicClock, ta.TscFit]:
    """Steps 1 and 3: the NIC's clock, then refitted with the copies needing no choice."""
    p = prepared
    nic = align.nic_clock(p.records, p.frames.arrivals, p.frames.point, None, None)
    assert nic.fit is not None
    window = int(trace_path.NOTIFY_NS * nic.fit.cpu_hz / 1e9)
    foreign = trace_path.classify_copies(p.records, p.meta["domid"], window)
    alone = ta.lone_copies(p.records, nic.fit, foreign, p.checkpoints, p.rx)
    refit = align.refit_with_copies(p.records, nic.rows, p.frames.arrivals, nic.fit,
                                    alone.copy, p.checkpoints, p.rx)
    return nic, refit


def within(got: np.ndarray, want: np.ndarray, tolerance_us: float) -> tuple[int, float]:
    """(rows both measure, share of them within ``tolerance_us``)."""
    both = (got != NA) & (want != NA)
    if not both.any():
        return 0, 0.0
    err_us = np.abs(got[both] - want[both]) / 1e3
    return int(both.sum()), float((err_us <= tolerance_us).mean())


def tolerance_us(fit: ta.TscFit) -> float:
    """The fit's stated uncertainty (one-sided: the placement's tolerance) and a quantum."""
    unc = fit.uncertainty_ns if np.isfinite(fit.uncertainty_ns) else ta.ONE_SIDED_TOLERANCE_NS
    return unc / 1e3 + QUANTUM_US


def test_nic_clock_finds_the_nic_irq_and_puts_the_tsc_on_the_true_clock(
        prepared: Prepared, clock: tuple[align.NicClock, ta.TscFit]) -> None:
    nic, _ = clock
    assert nic.number == prepared.meta["nic_irq"]
    assert nic.fit is not None and nic.fit.quality in ("bounded", "one-sided")
    assert abs(nic.fit.cpu_hz / prepared.meta["cpu_hz"] - 1) < 1e-6  # 1 ppm
    tsc = prepared.records.interrupts.tsc[nic.rows]
    err_us = np.abs(nic.fit.to_ns(tsc) - prepared.true_ns(tsc)) / 1e3
    assert err_us.max() <= tolerance_us(nic.fit)


def test_a_wrong_nic_irq_given_finds_no_clock(prepared: Prepared) -> None:
    """An IRQ with no interrupt in the trace: no fit, and a report saying so."""
    wrong = int(prepared.records.interrupts.number.max()) + 1000
    nic = align.nic_clock(prepared.records, prepared.frames.arrivals, prepared.frames.point,
                          None, wrong)
    assert nic.fit is None and nic.report is not None and nic.report["quality"] == "none"


def test_guest_domain_is_the_scenarios(prepared: Prepared) -> None:
    notes: list[str] = []
    assert ta.guest_domain(prepared.records, None, notes) == prepared.meta["domid"]
    assert ta.guest_domain(prepared.records, 7, notes) == 7  # as given, never second-guessed


def test_lone_copies_are_the_truths_copies(prepared: Prepared,
                                           clock: tuple[align.NicClock, ta.TscFit]) -> None:
    """A copy chosen because it is the only one between the backend and guest captures is
    the one the truth says carried the frame (its true time is the truth's ``t_copy``)."""
    nic, _ = clock
    p = prepared
    window = int(trace_path.NOTIFY_NS * nic.fit.cpu_hz / 1e9)
    foreign = trace_path.classify_copies(p.records, p.meta["domid"], window)
    alone = ta.lone_copies(p.records, nic.fit, foreign, p.checkpoints, p.rx)
    have = alone.copy >= 0
    assert have.sum() >= 0.2 * p.rx.sum() and not (have & ~p.rx).any()  # received rows only
    got = np.full(p.rx.size, NA, dtype=np.int64)
    got[have] = p.true_ns(p.records.copies.tsc[alone.copy[have]])
    n, share = within(got, p.truth_of("copy"), QUANTUM_US)
    assert n == have.sum() and share >= SHARE


def test_refit_with_copies_keeps_the_clock_true(
        prepared: Prepared, clock: tuple[align.NicClock, ta.TscFit]) -> None:
    """The refit is no worse a fit than the interrupts' and still puts every copy on the
    true clock within its own stated uncertainty."""
    nic, refit = clock
    assert align.fit_rank(refit)[0] <= align.fit_rank(nic.fit)[0]
    tsc = prepared.records.copies.tsc
    err_us = np.abs(refit.to_ns(tsc) - prepared.true_ns(tsc)) / 1e3
    assert err_us.max() <= tolerance_us(refit)


def _placed(prepared: Prepared, fit: ta.TscFit) -> ta.RowPaths:
    p = prepared
    window = int(trace_path.NOTIFY_NS * fit.cpu_hz / 1e9)
    foreign = trace_path.classify_copies(p.records, p.meta["domid"], window)
    return ta.place_copies(p.records, p.timelines, fit, foreign, p.frames, p.checkpoints,
                           p.rx, p.meta["domid"])


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_place_copies_gives_each_row_its_truths_copy(
        prepared: Prepared, clock: tuple[align.NicClock, ta.TscFit], direction: str) -> None:
    p, (_, fit) = prepared, clock
    paths = _placed(p, fit)
    mine = p.rx if direction == "rx" else ~p.rx
    got = np.full(p.rx.size, NA, dtype=np.int64)
    have = (paths.copy >= 0) & mine
    got[have] = fit.to_ns(p.records.copies.tsc[paths.copy[have]])
    want = np.where(mine, p.truth_of("copy"), NA)
    n, share = within(got, want, tolerance_us(fit))
    assert n >= SHARE * (want != NA).sum() and share >= SHARE


def _run_steps(prepared: Prepared, fit: ta.TscFit) -> dict[str, np.ndarray]:
    """Steps 5-7 on the placed copies, as attribute_trace calls them."""
    p, n = prepared, prepared.rx.size
    nic = align.nic_clock(p.records, p.frames.arrivals, p.frames.point, None, None)
    paths = _placed(p, fit)
    result = ta.TraceAttribution({}, {}, [], fit.uncertainty_ns / 1e3, fit=fit,
                                 domid=p.meta["domid"])
    result.dom0_vcpu = np.full(n, -1, dtype=np.int64)
    result.guest_vcpu = np.full(n, -1, dtype=np.int64)
    out = {name: np.full(n, NA, dtype=np.int64)
           for name in ("irq", "dom0_run", "copy", "guest_wake", "guest_run")}
    window = int(trace_path.NOTIFY_NS * fit.cpu_hz / 1e9)
    ta.rx_dom0_runs(p.records, p.timelines, nic.rows, fit, p.frames, p.checkpoints, p.rx, out,
                    result)
    ta.rx_guest_runs(p.records, p.timelines, paths, fit, p.meta["domid"], window, p.rx, out,
                     result)
    ta.tx_dom0_runs(p.records, p.timelines, paths, fit, p.checkpoints, p.rx, out, result)
    return out


@pytest.mark.parametrize(("direction", "point"), [
    ("rx", "irq"), ("rx", "dom0_run"), ("rx", "guest_wake"), ("rx", "guest_run"),
    ("tx", "dom0_run")])
def test_each_run_step_gives_the_truths_checkpoint(
        prepared: Prepared, clock: tuple[align.NicClock, ta.TscFit], direction: str,
        point: str) -> None:
    """Each row's checkpoint from rx_dom0_runs, rx_guest_runs, tx_dom0_runs is the truth's
    within the clock's uncertainty, for nearly every row the truth has it on."""
    p, (_, fit) = prepared, clock
    got = _run_steps(p, fit)[point]
    mine = p.rx if direction == "rx" else ~p.rx
    want = np.where(mine, p.truth_of(point), NA)
    assert (want != NA).sum() >= 20  # the scenario exercises this step
    # a row crossing the trace's and the guest's clocks: the larger uncertainty, as the
    # analysis states it (uncertainty_us)
    tolerance = max(tolerance_us(fit), p.guest_uncertainty_us + QUANTUM_US)
    n, share = within(np.where(mine, got, NA), want, tolerance)
    assert n >= SHARE * (want != NA).sum() and share >= SHARE


def test_timelines_group_vcpus_and_find_each_domains_next_change() -> None:
    """``Timelines`` on a table not grouped by vCPU (the reader's is): each vCPU's rows, the
    domains, and per time the first run-state change of any vCPU of a domain at or after it;
    by hand."""
    runstates = pd.DataFrame({
        "domid": np.array([7, 0, 5, 7, 0x7FFF, 5, 7, 5], dtype=np.int32),
        "vcpu": np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=np.int32),
        "state": pd.Categorical(["running"] * 8, categories=["running", "runnable",
                                                            "blocked", "offline"]),
        "start_tsc": np.array([30, 1, 20, 10, 2, 40, 50, 5], dtype=np.int64),
        "end_tsc": pd.array([50, None, 30, 60, None, 70, None, 20], dtype="Int64"),
        "cpu": np.array([1, 0, 2, 3, 0, 1, 1, 2], dtype=np.int16)})
    runstates.attrs["last_tsc"] = 100
    grouped = runstates.sort_values(["domid", "vcpu", "start_tsc"], ignore_index=True)
    grouped.attrs["last_tsc"] = 100  # as the reader gives them: each vCPU's rows one slice
    for lines in (Timelines(runstates), Timelines(grouped)):
        _check_timelines(lines)


def _check_timelines(lines: Timelines) -> None:
    assert lines.domains() == [0, 5, 7, 0x7FFF]
    assert lines.vcpus(5) == [0, 1] and lines.vcpus(7) == [0, 1] and lines.vcpus(3) == []
    assert lines[(7, 1)].start.tolist() == [30, 50]
    assert lines[(7, 1)].end.tolist() == [50, 100]  # open: until the trace's last TSC
    assert lines[(5, 0)].cpu.tolist() == [2, 2]
    # domain 5 changes at 5, 20 (vCPU 0) and 40 (vCPU 1); domain 7 at 10 (v0), 30, 50 (v1)
    at = np.array([0, 5, 6, 21, 41])
    assert lines.next_change(5, at).tolist() == [5, 5, 20, 40, ta.NA_NS]
    assert lines.next_change(7, at).tolist() == [10, 10, 10, 30, 50]
    assert lines.next_change(3, at).tolist() == [ta.NA_NS] * 5
