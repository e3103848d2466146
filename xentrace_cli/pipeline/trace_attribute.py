"""What a xentrace adds to the table: its clock on dom0's, and each packet's trace checkpoints.

:func:`attribute_trace` is the sequence of named steps; each is a function below or in
:mod:`trace_path`:

1. :func:`.align.nic_clock` — find the NIC's IRQ (its interrupts line up with the dom0
   capture's frame bursts) and put the TSC on dom0's clock (:func:`.clock.fit_tsc`);
2. :func:`guest_domain` — the guest's domain id (given, from ``vifD.N``, or the busiest);
3. :func:`lone_copies`, :func:`.align.refit_with_copies` — received frames with only one grant
   copy between their backend and guest captures bound the TSC offset from the other side;
4. :func:`place_copies` — on that clock, netback's grant copies: another guest's set aside,
   the transmit copies, then FIFO for the received frames;
5. :func:`rx_dom0_runs` — the interrupt that delivered each received frame and when its dom0
   vCPU ran (it needs no copy: in a worker thread beside steps 4 and 6);
6. :func:`rx_guest_runs` — the guest vCPU each copy's notification woke, and its run;
7. :func:`tx_dom0_runs` — when the dom0 vCPU that copied each sent frame ran.

The result (:class:`TraceAttribution`) holds checkpoints on dom0's clock (int64 ns, ``NA_NS``
where not found) and, per row, the vCPUs the causes are read from (:mod:`causes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .. import xen_events as xe
from ..allocator import give_back_memory
from ..background import Background
from ..groups import unique
from ..sources.xentrace import XenTrace, cpu_runs
from . import align, trace_path
from .clock import BURST_GAP_NS, TscFit
from .timelines import NO_TSC, Timelines, TraceRecords

#: "Not measured" in an int64 ns checkpoint column (the same value as ``NO_TSC``).
NA_NS = np.iinfo(np.int64).min
#: An interrupt delivered a frame's burst only if dom0 handled it at most this many p99
#: irq→frame delays (or the fit's uncertainty, or IRQ_BOUND_MIN_NS) before the burst.
IRQ_BOUND_K = 4.0
IRQ_BOUND_MIN_NS = 100_000
#: Tolerance of the copy placement while the TSC is bounded from one side only (ns).
ONE_SIDED_TOLERANCE_NS = 20_000
#: A guest reacts to a copy when its vCPU changes run state within this after it (ns) …
NEAR_COPY_NS = 50_000
#: … the chosen guest is questioned when it reacts to fewer than QUIET_SHARE of the copies
#: and another domain to at least REACT_SHARE.
QUIET_SHARE, REACT_SHARE = 0.05, 0.3
#: Event ids the analysis reads from the trace's event table (besides the lost, run-state
#: and switch tables): NIC interrupts, wakes, grant-copy hypercalls.
TRACE_EVENTS: tuple[int, ...] = (xe.TRC_HW_IRQ_HANDLED, xe.TRC_SCHED_WAKE,
                                  xe.TRC_PV_HYPERCALL_V2)
#: Columns of the event table the analysis reads.
TRACE_COLUMNS: tuple[str, ...] = ("cpu", "tsc", "event", "w1", "w2", "domid", "vcpu", "irq",
                                  "hypercall", "gnttab_cmd", "count")


@dataclasses.dataclass(frozen=True)
class Dom0Frames:
    """dom0 capture times (ns, sorted) of every frame to and from the guest, pure ACKs
    included (netback copies them all): what interrupts and copies are lined up with."""

    arrivals: np.ndarray
    """Received frames where dom0 first saw them (the physical NIC, else the backend)."""
    to_guest: np.ndarray
    """Received frames at the backend (else at the NIC)."""
    from_guest: np.ndarray
    """Sent frames at the backend (else at the NIC)."""
    point: str
    """The capture ``arrivals`` come from: ``phys`` or ``backend``."""


@dataclasses.dataclass
class RowPaths:
    """Per table row, the grant copy its path crossed (row of ``TraceRecords.copies``; -1
    none)."""

    copy: np.ndarray


@dataclasses.dataclass
class TraceAttribution:
    """What the trace adds: checkpoints on dom0's clock, the TSC fit, and whose run states
    explain each row's stages."""

    checkpoints: dict[str, np.ndarray]
    alignment: dict[str, Any]
    notes: list[str]
    uncertainty_us: float
    trace: XenTrace | None = None
    fit: TscFit | None = None
    domid: int | None = None
    dom0_vcpu: np.ndarray | None = None
    """Per row: the dom0 vCPU of its dom0 stages (receive: the one the NIC interrupt went to;
    transmit: the one that copied it), -1 unknown."""
    copy_vcpu: np.ndarray | None = None
    """Per row: the dom0 vCPU that issued its grant copy (netback's thread), -1 unknown."""
    guest_vcpu: np.ndarray | None = None
    """Per row: the guest vCPU (receive: the one the copy's notification reached; transmit:
    the one that ran the application), -1 unknown."""

    def ns_to_tsc(self, t_ns: np.ndarray) -> np.ndarray:
        """dom0 ns → TSC (the inverse of the fit)."""
        assert self.fit is not None, "no TSC fit: the trace is not on dom0's clock"
        return fit_tsc_of(self.fit, t_ns)


def attribute_trace(trace: XenTrace, *, checkpoints: dict[str, np.ndarray], rx: np.ndarray,
                    frames: Dom0Frames | None, domid: int | None, cpu_hz: float | None,
                    nic_irq: int | None, records: TraceRecords | None = None,
                    timelines: Timelines | None = None) -> TraceAttribution:
    """The trace's checkpoints for each row (see the module docstring for the steps).

    ``checkpoints``: the rows' capture checkpoints on dom0's clock (``phys``, ``backend``,
    ``guest``); ``rx``: received rows; ``frames``: every frame in dom0's captures;
    ``records``: :func:`trace_records` of the trace, when the caller took them already (to
    let the event table go before the steps' own arrays are made); ``timelines``: the
    trace's run-state timelines, idem (:func:`ready_trace`).
    """
    n = rx.size
    result = TraceAttribution({}, {}, [], float("inf"), trace=trace)
    if frames is None or frames.arrivals.size == 0:
        result.notes.append("xentrace without a dom0 capture: the trace cannot be put on a "
                            "packet clock, so its checkpoints are left empty.")
        return result
    if records is None:
        records = trace_records(trace)
    if timelines is None:
        timelines = Timelines(trace.runstates)
    timelines.build_all()  # (none built while worker threads below read them)
    nic = align.nic_clock(records, frames.arrivals, frames.point, cpu_hz, nic_irq)
    result.notes.extend(nic.notes)
    if nic.fit is None:
        if nic.report is not None:
            result.alignment["tsc->dom0"] = nic.report
        return result
    nic_rows, fit = nic.rows, nic.fit
    domid = result.domid = guest_domain(records, domid, result.notes)
    window = int(trace_path.NOTIFY_NS * fit.cpu_hz / 1e9)
    foreign = trace_path.classify_copies(records, domid, window)
    alone = lone_copies(records, fit, foreign, checkpoints, rx)
    fit = align.refit_with_copies(records, nic_rows, frames.arrivals, fit, alone.copy,
                                  checkpoints, rx)
    out = {name: np.full(n, NA_NS, dtype=np.int64)
           for name in ("irq", "dom0_run", "copy", "guest_wake", "guest_run")}
    result.dom0_vcpu = np.full(n, -1, dtype=np.int64)
    result.guest_vcpu = np.full(n, -1, dtype=np.int64)
    # step 5 needs no copies: in a worker thread beside steps 4 and 6 (it fills the received
    # rows' irq, dom0_run and dom0 vCPU, which they do not touch; step 7 the sent rows')
    rx_dom0 = Background(lambda: rx_dom0_runs(records, timelines, nic_rows, fit, frames,
                                              checkpoints, rx, out, result))
    paths = place_copies(records, timelines, fit, foreign, frames, checkpoints, rx, domid)
    _note_copies(result.notes, records, foreign, paths, rx)
    result.fit, result.uncertainty_us = fit, float(fit.uncertainty_ns) / 1e3
    result.alignment["tsc->dom0"] = {**align.tsc_report(fit),
                                     "from": f"irq {nic.number} ↔ {frames.point}"}
    result.notes.append(f"xentrace clock: {fit.detail}")
    has_copy = paths.copy >= 0
    out["copy"][has_copy] = fit.to_ns(records.copies.tsc[paths.copy[has_copy]])
    result.copy_vcpu = np.where(has_copy, records.copies.issuer[np.maximum(paths.copy, 0)], -1)
    # step 7 fills the sent rows' dom0_run and dom0 vCPU (step 5 the received rows', step 6
    # none of them): in a worker thread beside step 6
    tx_dom0 = Background(lambda: tx_dom0_runs(records, timelines, paths, fit, checkpoints, rx,
                                              out, result))
    if domid is not None:
        rx_guest_runs(records, timelines, paths, fit, domid, window, rx, out, result)
        _quiet_note(result, timelines, records, paths, rx)
    rx_dom0.result()
    tx_dom0.result()
    result.checkpoints = out
    return result


def trace_records(trace: XenTrace) -> TraceRecords:
    """The interrupts, wakes and grant copies a packet's path crosses, from the trace's event
    table (the copies' issuers from its switch records)."""
    return TraceRecords.from_events(trace.events, trace.switches, trace.first_tsc)


@dataclasses.dataclass(frozen=True)
class TraceReady:
    """What the path's steps and the causes read of the trace alone (:func:`ready_trace`)."""

    records: TraceRecords | None
    """:func:`trace_records` (None: not asked for, without a dom0 capture to line them up
    with)."""
    timelines: Timelines
    """The run states' per-vCPU index, every vCPU's timeline built."""
    cpu_runs: Callable[[], pd.DataFrame] | None
    """``XenTrace.cpu_runs``, made in a thread of its own: its ``result`` (None without
    ``records``)."""


def ready_trace(trace: XenTrace, records: bool) -> TraceReady:
    """Everything of :func:`attribute_trace` and the causes that needs the trace alone (no
    frame, no clock): the records (with ``records``), the CPU occupants (idem: in a worker
    thread of their own, which the caller need not wait for; only the causes read them) and
    the run-state timelines. The event and switch tables are let go as soon as they are read
    (memory; copied: an empty slice would be a view holding every column): nothing after
    reads them. The timelines are built in a thread beside the records.

    For a caller that has the trace before the captures' steps are done (``xenlat
    analyze`` reads it in a worker thread: this is done there, off the main thread's path;
    when the main thread waits for the trace, as on the realistic set, the occupants are
    still made beside its steps, as they were before)."""
    timelines = Timelines(trace.runstates)
    built = Background(timelines.build_all)  # beside the records (when a core is free)
    taken = trace_records(trace) if records else None
    trace.events = trace.events.iloc[:0].copy()  # each table let go once read (memory)
    occupants = None
    if records:
        switches, first_tsc = trace.switches, trace.first_tsc
        occupants = Background(lambda: cpu_runs(switches, first_tsc)).result
    trace.switches = trace.switches.iloc[:0].copy()  # (the occupants' thread holds them)
    give_back_memory()
    built.result()
    return TraceReady(taken, timelines, occupants)


# --- step 2: the guest ----------------------------------------------------------------------

def guest_domain(records: TraceRecords, domid: int | None, notes: list[str]) -> int | None:
    """The guest's domain id: as given, else the guest domain woken most often."""
    if domid is not None:
        return domid
    d = records.wakes.domid
    woken = pd.Series(d[(d > 0) & (d < 0x7FF0)]).value_counts()
    if not len(woken):
        return None
    domid = int(woken.index[0])
    notes.append(f"guest domain: d{domid} (the busiest guest in the trace; give --domid to "
                 "override).")
    return domid


# --- step 3: the copies ---------------------------------------------------------------------

def _locate(frames_ns: np.ndarray, row_ns: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Position of each row's capture time in ``frames_ns`` (-1: not there)."""
    out = np.full(rows.size, -1, dtype=np.int64)
    if row_ns is None or frames_ns.size == 0:
        return out
    asked = np.flatnonzero(rows & (row_ns != NA_NS))  # searched for these rows only
    t = row_ns[asked]
    pos = np.searchsorted(frames_ns, t, side="left")
    ok = pos < frames_ns.size
    pos = np.minimum(pos, frames_ns.size - 1)
    ok &= frames_ns[pos] == t
    out[asked[ok]] = pos[ok]
    return out


def place_copies(records: TraceRecords, timelines: Timelines, fit: TscFit,
                 foreign: np.ndarray, frames: Dom0Frames, checkpoints: dict[str, np.ndarray],
                 rx: np.ndarray, domid: int | None) -> RowPaths:
    """Per row, the grant copy that carried it.

    Transmitted frames first: each one's copy is the last copy (not another guest's) of the
    dom0 vCPU the guest's notification went to, before the backend saw the frame. The rest,
    not another guest's either, are the receive copies; the received frames go into them
    FIFO.
    """
    n = rx.size
    copy_ns = fit.to_ns(records.copies.tsc)
    tolerance = _tolerance_ns(fit)
    dom0 = checkpoints.get("backend", checkpoints.get("phys"))
    guest = checkpoints.get("guest")
    usable = ~foreign
    # the received frames' floors need no other step: in a worker thread beside the sent ones'
    floor = Background(lambda: _remap_floor(timelines, fit, guest, rx, domid))
    rx_pos = _locate(frames.to_guest, dom0, rx)
    tx_pos = _locate(frames.from_guest, dom0, ~rx)
    frame_vcpu = _tx_frame_vcpus(records, timelines, fit, frames, checkpoints, rx, domid)
    tx_of_frame = trace_path.assign_tx_copies(
        copy_ns, usable, records.copies.issuer, frames.from_guest, frame_vcpu,
        _per_frame(guest, tx_pos, frames.from_guest.size), tolerance)
    is_tx = np.zeros(copy_ns.size, dtype=bool)
    is_tx[tx_of_frame[tx_of_frame >= 0]] = True
    rx_of_frame = trace_path.assign_rx_copies(
        copy_ns, records.copies.count, usable & ~is_tx, frames.to_guest,
        _per_frame(guest, rx_pos, frames.to_guest.size),
        _per_frame(floor.result(), rx_pos, frames.to_guest.size), tolerance)
    copy = np.full(n, -1, dtype=np.int64)
    for pos, of_frame in ((rx_pos, rx_of_frame), (tx_pos, tx_of_frame)):
        have = pos >= 0
        copy[have] = of_frame[pos[have]]
    return RowPaths(copy=copy)


def _remap_floor(timelines: Timelines, fit: TscFit, guest: np.ndarray | None,
                 rx: np.ndarray, domid: int | None) -> np.ndarray | None:
    """Per received row: the earliest its copy can be by the guest's run states (dom0 ns;
    ``NA_NS`` none): :func:`trace_path.remap_floor`."""
    if guest is None or domid is None:
        return None
    rows = np.flatnonzero(rx & (guest != NA_NS))
    out = np.full(rx.size, NA_NS, dtype=np.int64)
    floor = trace_path.remap_floor(timelines, domid, fit_tsc_of(fit, guest[rows]),
                                   int(trace_path.REMAP_RUN_MAX_NS * fit.cpu_hz / 1e9))
    ok = floor != NO_TSC
    out[rows[ok]] = fit.to_ns(floor[ok])
    return out


def _per_frame(row_ns: np.ndarray | None, pos: np.ndarray, size: int) -> np.ndarray:
    """A row checkpoint put on the frames the rows were located at (``NA_NS`` elsewhere)."""
    out = np.full(size, NA_NS, dtype=np.int64)
    if row_ns is not None:
        have = pos >= 0
        out[pos[have]] = row_ns[have]
    return out


def _tx_frame_vcpus(records: TraceRecords, timelines: Timelines, fit: TscFit,
                    frames: Dom0Frames, checkpoints: dict[str, np.ndarray], rx: np.ndarray,
                    domid: int | None) -> np.ndarray:
    """Per sent frame at the backend: the dom0 vCPU the guest's notification went to (-1
    unknown), from the sent rows the guest capture timed, the nearest one in time for the
    frames without (pure ACKs)."""
    out = np.full(frames.from_guest.size, -1, dtype=np.int64)
    guest, dom0 = checkpoints.get("guest"), checkpoints.get("backend", checkpoints.get("phys"))
    if domid is None or guest is None or dom0 is None or out.size == 0:
        return out
    rows = np.flatnonzero(~rx & (guest != NA_NS) & (dom0 != NA_NS))
    if rows.size == 0:
        return out
    slack = int((_tolerance_ns(fit) + trace_path.RUN_AFTER_FRAME_NS) * fit.cpu_hz / 1e9)
    after = slack + int(trace_path.NOTIFY_NS * fit.cpu_hz / 1e9)
    at = fit_tsc_of(fit, guest[rows])
    woke = trace_path.notified_dom0_vcpus(records, timelines, at, domid, slack, after)
    order = np.argsort(dom0[rows], kind="stable")
    known_t, known_v = dom0[rows][order], trace_path._nearest_fill(woke[order],
                                                                   dom0[rows][order])
    if (known_v < 0).all():
        return out
    k = np.clip(np.searchsorted(known_t, frames.from_guest), 1, known_t.size) - 1
    nxt = np.minimum(k + 1, known_t.size - 1)
    closer = np.abs(known_t[nxt] - frames.from_guest) < np.abs(frames.from_guest - known_t[k])
    return known_v[np.where(closer, nxt, k)]


def fit_tsc_of(fit: TscFit, t_ns: np.ndarray) -> np.ndarray:
    """dom0 ns → TSC (the inverse of ``fit.to_ns``)."""
    return (fit.tsc_at_ref + np.rint((t_ns.astype(np.float64) - fit.ref_ns)
                                     * fit.cpu_hz / 1e9)).astype(np.int64)


def _tolerance_ns(fit: TscFit) -> float:
    """How far a trace time may lie on the wrong side of a capture time by the clocks alone."""
    if np.isfinite(fit.uncertainty_ns):
        return float(fit.uncertainty_ns)
    return float(ONE_SIDED_TOLERANCE_NS)


# --- step 4: the clock again, bounded by the copies -----------------------------------------

def lone_copies(records: TraceRecords, fit: TscFit, foreign: np.ndarray,
                checkpoints: dict[str, np.ndarray], rx: np.ndarray) -> RowPaths:
    """Per received row, its copy where no choice is needed: the only copy (not another
    guest's) between its backend and guest captures, widened by the interrupts' one-sided
    clock (:data:`ONE_SIDED_TOLERANCE_NS`, trace times are late by an unknown few µs).

    These bound the TSC from the other side before the full placement (which needs a
    bounded clock to tell a transmit copy from a receive one).
    """
    n = rx.size
    copy = np.full(n, -1, dtype=np.int64)
    back, guest = checkpoints.get("backend"), checkpoints.get("guest")
    usable = np.flatnonzero(~foreign)
    if back is None or guest is None or usable.size == 0:
        return RowPaths(copy=copy)
    copy_ns = fit.to_ns(records.copies.tsc[usable])
    rows = np.flatnonzero(rx & (back != NA_NS) & (guest != NA_NS) & (guest >= back))
    lo = np.searchsorted(copy_ns, back[rows], side="left")
    hi = np.searchsorted(copy_ns, guest[rows] + ONE_SIDED_TOLERANCE_NS, side="right")
    one = hi - lo == 1
    copy[rows[one]] = usable[lo[one]]
    return RowPaths(copy=copy)


def _note_copies(notes: list[str], records: TraceRecords, foreign: np.ndarray,
                 paths: RowPaths, rx: np.ndarray) -> None:
    issuers = unique(records.copies.issuer[paths.copy[paths.copy >= 0]])
    where = ", ".join(f"d0v{v}" for v in issuers if v >= 0) or "unknown dom0 vCPUs"
    notes.append(f"netback's grant copies: {records.copies.tsc.size} in the trace "
                 f"({int(foreign.sum())} another guest's); {int((paths.copy[rx] >= 0).sum())} "
                 f"received and {int((paths.copy[~rx] >= 0).sum())} sent segments placed in "
                 f"their copy, issued on {where}.")


# --- step 5: receive, the interrupt and dom0's run ------------------------------------------

def rx_dom0_runs(records: TraceRecords, timelines: Timelines, nic_rows: np.ndarray,
                 fit: TscFit, frames: Dom0Frames, checkpoints: dict[str, np.ndarray],
                 rx: np.ndarray, out: dict[str, np.ndarray], result: TraceAttribution) -> None:
    """``irq`` and ``dom0_run`` of each received row, and the dom0 vCPU they name."""
    assert result.dom0_vcpu is not None  # attribute_trace sets it before this step
    arrive = checkpoints.get("phys", checkpoints.get("backend"))
    if arrive is None or nic_rows.size == 0:
        return
    runs = trace_path.interrupt_runs(records, timelines, nic_rows)
    irq_ns = fit.to_ns(records.interrupts.tsc[nic_rows])
    run_ns = np.full(irq_ns.size, NA_NS, dtype=np.int64)
    ran = runs.run_tsc != NO_TSC
    run_ns[ran] = fit.to_ns(runs.run_tsc[ran])
    last_ns = fit.to_ns(np.array([timelines.last_tsc]))[0]
    tolerance = _tolerance_ns(fit) + trace_path.RUN_AFTER_FRAME_NS
    arrive_rx = np.where(rx & (arrive <= last_ns), arrive, NA_NS)
    k = trace_path.pick_interrupts(irq_ns, run_ns, arrive_rx, tolerance, runs.vcpu)
    handled = np.where(ran, run_ns, irq_ns)
    k = bound_interrupts(k, handled, frames.arrivals, arrive, _irq_bound_ns(fit))
    have = k >= 0
    out["irq"][have] = irq_ns[k[have]]
    ok = have & (run_ns[np.maximum(k, 0)] != NA_NS)
    out["dom0_run"][ok] = run_ns[k[ok]]
    result.dom0_vcpu[have] = runs.vcpu[k[have]]


def _irq_bound_ns(fit: TscFit) -> int:
    return int(max(IRQ_BOUND_K * float(np.nan_to_num(fit.residual_us[1])) * 1e3,
                   fit.uncertainty_ns if np.isfinite(fit.uncertainty_ns) else 0.0,
                   float(IRQ_BOUND_MIN_NS)))


def bound_interrupts(irq_row: np.ndarray, handled_ns: np.ndarray, frames_ns: np.ndarray,
                     arrive_ns: np.ndarray, bound_ns: int) -> np.ndarray:
    """``irq_row`` with -1 where the interrupt cannot have delivered the frame.

    ``irq_row``: per packet, the interrupt chosen for it (-1 none); ``handled_ns``: per
    interrupt, when dom0 ran to handle it (its ``dom0_run``, else the interrupt itself);
    ``frames_ns``: sorted dom0 arrival times of all frames towards the guest. A frame comes
    shortly after dom0 handled the interrupt that delivered its burst (frames closer than
    ``BURST_GAP_NS``); when the burst starts more than ``bound_ns`` after that, its own
    interrupt is missing from the trace and the earlier one is not it.
    """
    out = irq_row.copy()
    have = np.flatnonzero((out >= 0) & (arrive_ns != NA_NS))
    if have.size == 0 or frames_ns.size == 0:
        return out
    starts = frames_ns[np.r_[True, np.diff(frames_ns) > BURST_GAP_NS]]
    b = np.searchsorted(starts, arrive_ns[have], side="right") - 1
    burst_start = np.where(b >= 0, starts[np.maximum(b, 0)], arrive_ns[have])
    late = burst_start - handled_ns[out[have]] > bound_ns
    out[have[late]] = -1
    return out


# --- step 6: receive, the guest's wake and run ----------------------------------------------

def rx_guest_runs(records: TraceRecords, timelines: Timelines, paths: RowPaths, fit: TscFit,
                  domid: int, window: int, rx: np.ndarray, out: dict[str, np.ndarray],
                  result: TraceAttribution) -> None:
    """``guest_wake`` and ``guest_run`` of each received row with a copy."""
    assert result.guest_vcpu is not None  # attribute_trace sets it before this step
    rows = np.flatnonzero(rx & (paths.copy >= 0))
    if rows.size == 0:
        return
    runs = trace_path.guest_runs(records, timelines, paths.copy[rows], domid, window)
    woke = runs.wake_tsc != NO_TSC
    out["guest_wake"][rows[woke]] = fit.to_ns(runs.wake_tsc[woke])
    ran = runs.run_tsc != NO_TSC
    out["guest_run"][rows[ran]] = fit.to_ns(runs.run_tsc[ran])
    result.guest_vcpu[rows] = runs.vcpu


def _quiet_note(result: TraceAttribution, timelines: Timelines, records: TraceRecords,
                paths: RowPaths, rx: np.ndarray) -> None:
    """A note when the guest does not react to netback's copies while another domain does
    (a wrong ``--domid``: its run states explain nothing)."""
    domid = result.domid
    assert result.fit is not None  # a note on a trace placed on dom0's clock
    copy_tsc = records.copies.tsc[paths.copy[rx & (paths.copy >= 0)]]
    if domid is None or copy_tsc.size == 0:
        return
    near = int(NEAR_COPY_NS * result.fit.cpu_hz / 1e9)
    c = np.sort(copy_tsc)

    def share(d: int) -> float:  # of the copies, those after which d's vCPUs changed state
        nxt = timelines.next_change(d, c)
        return float(((nxt != NO_TSC) & (nxt - c <= near)).mean())

    def guest(d: int) -> bool:  # not dom0, not the idle domain
        return 0 < d < 0x7FF0

    mine = share(int(domid)) if guest(int(domid)) else 0.0
    if mine >= QUIET_SHARE:  # the guest reacts: no other domain needs looking at
        return
    shares = {d: mine if d == domid else share(d) for d in timelines.domains() if guest(d)}
    best = max(shares, key=lambda d: shares[d]) if shares else None
    if best is None or best == domid or shares[best] < REACT_SHARE:
        return
    result.notes.append(
        f"guest domain d{domid} reacts to {mine:.0%} of netback's copies (a wake or run within "
        f"{NEAR_COPY_NS // 1000} µs), d{best} to {shares[best]:.0%}: is the domain id right? "
        f"The causes below are read from d{domid}'s run states.")


# --- step 7: transmit, dom0's run -----------------------------------------------------------

def tx_dom0_runs(records: TraceRecords, timelines: Timelines, paths: RowPaths, fit: TscFit,
                 checkpoints: dict[str, np.ndarray], rx: np.ndarray,
                 out: dict[str, np.ndarray], result: TraceAttribution) -> None:
    """``dom0_run`` of each sent row with a copy: when the copy's issuer ran after the guest
    queued the frame (the guest capture; without it, the copy itself)."""
    assert result.dom0_vcpu is not None  # attribute_trace sets it before this step
    rows = np.flatnonzero(~rx & (paths.copy >= 0))
    if rows.size == 0:
        return
    copy_rows = paths.copy[rows]
    guest = checkpoints.get("guest")
    since = records.copies.tsc[copy_rows]
    if guest is not None:
        g = guest[rows]
        known = g != NA_NS
        since = np.where(known, result.ns_to_tsc(g), since)
    run = trace_path.issuer_runs(timelines, records.copies, copy_rows, since)
    ok = run != NO_TSC
    out["dom0_run"][rows[ok]] = fit.to_ns(run[ok])
    result.dom0_vcpu[rows] = records.copies.issuer[copy_rows]

