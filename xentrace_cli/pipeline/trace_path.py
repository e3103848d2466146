"""Each packet's path through the hypervisor trace: which records are its checkpoints.

A checkpoint is taken from the record that belongs to this packet's path, found by following
the chain of cause (DESIGN.md), never from "the next record" of some kind:

* receive — the NIC interrupt whose NAPI poll carried the frame (:func:`pick_interrupts`)
  → the dom0 vCPU that interrupt was forwarded to: the one it woke inside the handler, else
  the one serving that IRQ (:func:`interrupt_runs`) → when that vCPU ran (``dom0_run``)
  → the receive grant copy that carried the frame's data (:func:`assign_rx_copies`: FIFO over
  netback's receive copies, the transmit copies and other guests' copies set aside by
  :func:`classify_copies`) → the guest vCPU the copy's notification woke, and its run
  (:func:`guest_runs`);
* transmit — the transmit grant copy that took the frame out of the guest (the last copy
  before netback handed it to dom0's stack, :func:`assign_tx_copies`) → the dom0 vCPU that
  issued it, and when it ran after the guest queued the frame (``dom0_run``).

Every step works on sorted numpy arrays (:mod:`timelines`); times are TSC cycles until the
last step turns them into dom0-clock ns with the trace's clock fit. Where the evidence gives
no choice the checkpoint stays empty; :mod:`path_order` then checks what was chosen.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..groups import unique
from .timelines import BLOCKED, NO_TSC, RUNNABLE, RUNNING, Copies, Timelines, TraceRecords

#: A notification's wake follows its grant copy on the same CPU within this (ns).
NOTIFY_NS = 30_000
#: An interrupt's poll cannot have carried a frame when dom0 ran to handle it more than this
#: after the frame was captured (ns), beyond the clock's uncertainty.
RUN_AFTER_FRAME_NS = 2_000
#: netfront takes a copied frame off the ring before its vCPU has run this long (ns).
REMAP_RUN_MAX_NS = 1_000_000
#: Interrupts walked back from the last one before a frame, looking for the one whose poll
#: carried it.
MAX_IRQ_STEPS = 3
DOMID_IDLE = 0x7FFF


def _neighbours(values: np.ndarray, times: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Per position of ``values`` (-1 = unknown): whether it is known, the known neighbours
    before and after it, and whether the one after is nearer in time (None: none known)."""
    has = values >= 0
    known = np.flatnonzero(has)
    if known.size == 0:
        return None
    # per position, the known ones before it (what searching ``known`` for it would give)
    k = np.cumsum(has, dtype=np.int64)
    k[has] -= 1
    before = known[np.maximum(k - 1, 0)]
    after = known[np.minimum(k, known.size - 1)]
    use_after = np.abs(times[after] - times) < np.abs(times - times[before])
    return has, before, after, use_after


def _neighbour_fills(values: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (-1 = unknown) filled from the nearest known neighbour in time, and from
    the known neighbour on the other side (the same where only one side has one)."""
    found = _neighbours(values, times)
    if found is None:
        return values.copy(), values.copy()
    has, before, after, use_after = found
    nearest = np.where(use_after, after, before)
    other = np.where(use_after, before, after)
    return np.where(has, values, values[nearest]), np.where(has, values, values[other])


def _nearest_fill(values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``values`` (-1 = unknown) filled from the nearest known neighbour in time (the first
    of :func:`_neighbour_fills`, without the other)."""
    found = _neighbours(values, times)
    if found is None:
        return values.copy()
    has, before, after, use_after = found
    return np.where(has, values, values[np.where(use_after, after, before)])


def woken_in_handler(records: TraceRecords, rows: np.ndarray, domid: int = 0) -> np.ndarray:
    """Per interrupt (indexes into ``records.interrupts``): the vCPU of ``domid`` the handler
    woke — a WAKE on the interrupt's CPU between the handler's entry and its record — or -1."""
    irq, wakes = records.interrupts, records.wakes
    out = np.full(rows.size, -1, dtype=np.int64)
    mine = wakes.domid == domid
    for cpu in unique(irq.cpu[rows]):
        pick = np.flatnonzero(irq.cpu[rows] == cpu)
        on = np.flatnonzero(mine & (wakes.cpu == cpu))
        if on.size == 0:
            continue
        t = wakes.tsc[on]
        k = np.searchsorted(t, irq.tsc[rows[pick]], side="right") - 1
        ok = (k >= 0) & (t[np.maximum(k, 0)] >= irq.entry_tsc[rows[pick]] - 1)
        out[pick[ok]] = wakes.vcpu[on[k[ok]]]
    return out


@dataclasses.dataclass(frozen=True)
class InterruptRuns:
    """Per NIC interrupt: the dom0 vCPU it went to and when that vCPU ran."""

    vcpu: np.ndarray
    """dom0 vCPU (-1 unknown)."""
    run_tsc: np.ndarray
    """``dom0_run``: the interrupt itself when the vCPU was running, else its next run
    (``NO_TSC`` where the chain breaks: the vCPU was blocked and nothing woke it)."""
    woken: np.ndarray
    """True where the handler woke the vCPU (the strongest evidence)."""


def interrupt_runs(records: TraceRecords, timelines: Timelines, rows: np.ndarray
                   ) -> InterruptRuns:
    """Follow each NIC interrupt (``rows`` of ``records.interrupts``) to its dom0 vCPU's run.

    The handler forwards the interrupt to the dom0 vCPU its event channel is bound to: if that
    vCPU was blocked the handler wakes it (a WAKE record inside the handler names it); if it
    was running or runnable there is no wake, and the vCPU is the one the nearest interrupts
    woke (the binding changes rarely: irqbalance). Found blocked with no wake, that vCPU is
    not the binding: irqbalance moved it, and the vCPU woken on the other side in time is
    tried. Its run state at the interrupt then gives ``dom0_run`` (DESIGN.md's
    conventions); a vCPU that fits neither leaves the interrupt without a run.
    """
    tsc = records.interrupts.tsc[rows]
    woken = woken_in_handler(records, rows)
    nearest, other = _neighbour_fills(woken, tsc)
    vcpu = nearest.copy()
    run = np.full(rows.size, NO_TSC, dtype=np.int64)
    todo = np.ones(rows.size, dtype=bool)
    for guess in (nearest, other):
        for v in unique(guess[todo & (guess >= 0)]):
            pick = np.flatnonzero(todo & (guess == v))
            line = timelines[(0, int(v))]
            state = line.state_at(tsc[pick])
            # blocked without a wake: not this vCPU's interrupt (another took the binding)
            ok = (woken[pick] >= 0) | (state == RUNNING) | (state == RUNNABLE)
            run[pick[ok]] = line.next_run(tsc[pick[ok]], state[ok])
            vcpu[pick[ok]] = v
            todo[pick[ok]] = False
    return InterruptRuns(vcpu, run, woken >= 0)


def first_of_run(run_ns: np.ndarray, vcpu: np.ndarray) -> np.ndarray:
    """Per interrupt (in time order): the first of the consecutive interrupts that waited for
    the same run of the same dom0 vCPU — the one whose poll that run carried out (the later
    ones found the poll already scheduled)."""
    idx = np.arange(run_ns.size)
    same = np.r_[False, (run_ns[1:] == run_ns[:-1]) & (vcpu[1:] == vcpu[:-1])
                 & (run_ns[1:] != np.iinfo(np.int64).min)]
    return np.maximum.accumulate(np.where(same, 0, idx))


def pick_interrupts(irq_ns: np.ndarray, run_ns: np.ndarray, arrive_ns: np.ndarray,
                    tolerance_ns: float, vcpu: np.ndarray | None = None) -> np.ndarray:
    """Per frame, the NIC interrupt whose poll carried it (index into ``irq_ns``; -1 none).

    The last interrupt at or before the frame's capture in dom0 — unless dom0 ran to handle
    it only after the frame was captured (beyond ``tolerance_ns``): that poll cannot have
    carried the frame, an earlier one did (at most :data:`MAX_IRQ_STEPS` back). Interrupts
    that waited for the same run of their dom0 vCPU (``vcpu``) share one poll: the first of
    them (:func:`first_of_run`). ``arrive_ns`` holds ``NA`` (int64 min) where the frame was
    not seen in dom0.
    """
    out = np.full(arrive_ns.size, -1, dtype=np.int64)
    if irq_ns.size == 0:
        return out
    seen = arrive_ns != np.iinfo(np.int64).min
    k = np.searchsorted(irq_ns, arrive_ns, side="right") - 1
    todo = np.flatnonzero(seen & (k >= 0))
    for _ in range(MAX_IRQ_STEPS):
        if todo.size == 0:
            break
        kk = k[todo]
        ran = run_ns[kk]
        fits = (ran != np.iinfo(np.int64).min) & (ran <= arrive_ns[todo] + tolerance_ns)
        out[todo[fits]] = kk[fits]
        todo = todo[~fits & (kk > 0)]
        k[todo] -= 1
    if vcpu is not None:
        first = first_of_run(run_ns, vcpu)
        out = np.where(out >= 0, first[np.maximum(out, 0)], -1)
    return out


def classify_copies(records: TraceRecords, domid: int | None, window_cycles: int
                    ) -> np.ndarray:
    """Per grant copy: True when its notification woke another guest (not ``domid``).

    netback notifies the guest a batch was for once it is copied; a blocked guest vCPU is
    woken then, by a WAKE on the copy's CPU. A copy followed there (within
    ``window_cycles``, before the next copy on that CPU) by the wake of another guest
    domain was that guest's: it carried none of this guest's frames.
    """
    copies, wakes = records.copies, records.wakes
    foreign = np.zeros(copies.tsc.size, dtype=bool)
    if domid is None or copies.tsc.size == 0:
        return foreign
    guest = (wakes.domid > 0) & (wakes.domid < DOMID_IDLE)
    for cpu in unique(copies.cpu):
        mine = np.flatnonzero(copies.cpu == cpu)
        on = np.flatnonzero(guest & (wakes.cpu == cpu))
        if on.size == 0:
            continue
        c = copies.tsc[mine]
        k = np.searchsorted(wakes.tsc[on], c, side="left")
        ok = k < on.size
        w = on[np.minimum(k, on.size - 1)]
        nxt = np.r_[c[1:], np.iinfo(np.int64).max]
        # within the window, before this CPU's next copy, and not our guest's wake
        near = ok & (wakes.tsc[w] - c <= window_cycles) & (wakes.tsc[w] < nxt)
        foreign[mine[near & (wakes.domid[w] != domid)]] = True
    return foreign


def notified_dom0_vcpus(records: TraceRecords, timelines: Timelines, tsc: np.ndarray,
                        domid: int, before: int, after: int) -> np.ndarray:
    """Per time the guest queued a frame to send: the dom0 vCPU its notification woke (-1:
    none woken, it was running or runnable already).

    The guest's event-channel send wakes the dom0 vCPU bound to it on the guest vCPU's own
    CPU: a WAKE of a dom0 vCPU there within [t - ``before``, t + ``after``] cycles.
    """
    out = np.full(tsc.size, -1, dtype=np.int64)
    cpu = np.full(tsc.size, -1, dtype=np.int64)
    for v in timelines.vcpus(domid):
        state, on_cpu = timelines[(domid, v)].state_cpu_at(tsc)
        running = state == RUNNING
        cpu[running] = on_cpu[running]
    wakes = records.wakes
    dom0 = wakes.domid == 0
    for c in unique(cpu[cpu >= 0]):
        pick = np.flatnonzero(cpu == c)
        on = np.flatnonzero(dom0 & (wakes.cpu == c))
        if on.size == 0:
            continue
        k = np.searchsorted(wakes.tsc[on], tsc[pick] - before, side="left")
        ok = k < on.size
        w = on[np.minimum(k, on.size - 1)]
        ok &= wakes.tsc[w] <= tsc[pick] + after
        out[pick[ok]] = wakes.vcpu[w[ok]]
    return out


def running_clamp(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``t[m] = min(high[m], max(low[m], t[m-1]))`` with ``t[-1] = -inf``, vectorized.

    Each step is a clamp, and clamps compose into clamps (``[f(L_a), f(H_a)]`` for
    ``f ∘ clamp_a``), so the prefix compositions come from a doubling scan in log2(n)
    passes; ``t[m]`` is the lower bound of the composition up to ``m``. The passes stop once
    every composition not yet whole has equal bounds (its clamp a constant, which no further
    composition changes): after 5 of 20 passes on the toy set's 550,000 received frames.
    """
    lo, hi = low.astype(np.int64).copy(), np.maximum(high, low).astype(np.int64)
    # each pass written into a second pair of arrays (then swapped): no copy of the previous
    # bounds, no new arrays per pass
    lo2, hi2, step = lo.copy(), hi.copy(), np.empty_like(lo)
    d = 1
    while d < lo.size:
        part = step[d:]
        np.minimum(hi[d:], np.maximum(lo[d:], lo[:-d], out=part), out=lo2[d:])
        np.minimum(hi[d:], np.maximum(lo[d:], hi[:-d], out=part), out=hi2[d:])
        lo2[:d], hi2[:d] = lo[:d], hi[:d]
        lo, lo2, hi, hi2 = lo2, lo, hi2, hi
        d *= 2
        # every composition from d on a constant (a clamp with equal bounds): the later
        # passes would change nothing (min(c, max(c, x)) = c; those before d are whole)
        if np.array_equal(lo[d:], hi[d:]):
            break
    return lo


def fifo_assign(first: np.ndarray, last: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Batch of each frame (frames in queue order): FIFO, batch ``j`` taking ``count[j]``
    frames, frame ``m`` in a batch between ``first[m]`` and ``last[m]`` (indexes; -1 where
    no batch fits).

    Frames fill batches in order: frame ``m`` takes slot ``m + t[m]`` of the batches'
    cumulative slots, where the shift ``t`` carries over from frame to frame and is pushed up
    when the frame cannot be in a batch before ``first`` (the earlier batches were full) and
    down when it must be in one by ``last`` (a batch of the trace was not this queue's, or a
    frame of the queue was not captured): :func:`running_clamp`.
    """
    if first.size == 0 or count.size == 0:
        return np.full(first.size, -1, dtype=np.int64)
    cum = np.cumsum(np.maximum(count, 1))
    before = np.r_[0, cum[:-1]]
    m = np.arange(first.size)
    ok = (first <= last) & (first < cum.size) & (last >= 0)
    f = np.clip(first, 0, cum.size - 1)
    g = np.clip(last, 0, cum.size - 1)
    t = running_clamp(before[f] - m, cum[g] - 1 - m)
    j = np.searchsorted(cum, m + t, side="right")
    ok &= (j >= first) & (j <= last) & (j < cum.size)
    return np.where(ok, j, -1)


def assign_batches(frame_ns: np.ndarray, batch_ns: np.ndarray, count: np.ndarray
                   ) -> np.ndarray:
    """Batch of each frame (both sorted by time): FIFO, each batch copying ``count`` frames,
    a frame in the first batch after it arrived unless earlier frames filled it (-1 for
    frames after the last batch)."""
    first = np.searchsorted(batch_ns, frame_ns, side="left")
    return fifo_assign(first, np.full(frame_ns.size, batch_ns.size - 1), count)


def assign_rx_copies(copy_ns: np.ndarray, count: np.ndarray, usable: np.ndarray,
                     frames_ns: np.ndarray, deadline_ns: np.ndarray, floor_ns: np.ndarray,
                     tolerance_ns: float) -> np.ndarray:
    """Per received frame (dom0 times at the backend, sorted): the receive copy that carried
    it (index into ``copy_ns``; -1 none).

    FIFO over the usable copies (not another guest's, not a transmit copy), each taking at
    most ``count`` frames; a frame's copy comes after its backend capture and after
    ``floor_ns`` (:func:`remap_floor`), and before ``deadline_ns`` (its guest capture on
    dom0's clock), each within the clocks' ``tolerance_ns`` (``NA``: unknown).
    """
    idx = np.flatnonzero(usable)
    if not idx.size:   # no usable copy (a trace cut short, say): no frame has one
        return np.full(frames_ns.size, -1, dtype=np.int64)
    c = copy_ns[idx]
    na = np.iinfo(np.int64).min
    start = np.where(floor_ns != na, np.maximum(frames_ns, floor_ns), frames_ns)
    first = np.searchsorted(c, start - tolerance_ns, side="left")
    known = deadline_ns != np.iinfo(np.int64).min
    last = np.where(known, np.searchsorted(c, deadline_ns + tolerance_ns, side="right") - 1,
                    c.size - 1)
    j = fifo_assign(first, last, count[idx])
    return np.where(j >= 0, idx[np.maximum(j, 0)], -1)


def assign_tx_copies(copy_ns: np.ndarray, usable: np.ndarray, issuer: np.ndarray,
                     frames_ns: np.ndarray, frame_vcpu: np.ndarray, earliest_ns: np.ndarray,
                     tolerance_ns: float) -> np.ndarray:
    """Per transmitted frame (dom0 times at the backend, sorted): the transmit copy that took
    it out of the guest (index into ``copy_ns``; -1 none).

    netback's transmit path copies a batch, then hands each frame to dom0's stack at once on
    the same vCPU (where the backend capture sees it), all in one softirq run: no other copy
    of that vCPU comes between. A frame's copy is therefore the last usable copy (not another
    guest's) of the dom0 vCPU that took the guest's notification (``frame_vcpu``; -1
    unknown: any vCPU) before the frame's capture (within the clocks' ``tolerance_ns``), and
    after ``earliest_ns`` (the frame's guest capture on dom0's clock; ``NA`` unknown).
    """
    out = np.full(frames_ns.size, -1, dtype=np.int64)
    groups = [(frame_vcpu < 0, usable)]
    groups += [(frame_vcpu == v, usable & (issuer == v)) for v in unique(frame_vcpu)
               if v >= 0]
    na = np.iinfo(np.int64).min
    for frames_sel, copies_sel in groups:
        idx = np.flatnonzero(copies_sel)
        rows = np.flatnonzero(frames_sel)
        if idx.size == 0 or rows.size == 0:
            continue
        c = copy_ns[idx]
        last = np.searchsorted(c, frames_ns[rows] + tolerance_ns, side="right") - 1
        early = earliest_ns[rows]
        floor = np.searchsorted(c, early - tolerance_ns, side="left")
        ok = (last >= 0) & ((early == na) | (last >= floor))
        out[rows[ok]] = idx[last[ok]]
    return out


def remap_floor(timelines: Timelines, domid: int, guest_tsc: np.ndarray, run_cycles: int
                ) -> np.ndarray:
    """Per received frame's guest capture (TSC): the earliest its copy can be (TSC;
    ``NO_TSC``: no bound).

    Once a copy is done netback notifies the guest, and netfront takes the frames off the
    ring as soon as the vCPU runs: a copy after which the guest's vCPUs all ran longer than
    ``run_cycles`` before the capture did not carry the frame (it belongs to another queue;
    the frame still waited for ring slots then, as when the ring is full).
    """
    out = np.full(guest_tsc.size, NO_TSC, dtype=np.int64)
    for i, v in enumerate(timelines.vcpus(domid)):
        since = timelines[(domid, v)].ran_since(guest_tsc, run_cycles)
        out = since if i == 0 else np.minimum(out, since)
    return out


@dataclasses.dataclass(frozen=True)
class GuestRuns:
    """Per copy: the guest vCPU its notification reached, its wake and its run (TSC)."""

    vcpu: np.ndarray
    wake_tsc: np.ndarray
    run_tsc: np.ndarray


def guest_runs(records: TraceRecords, timelines: Timelines, copy_rows: np.ndarray,
               domid: int, window_cycles: int) -> GuestRuns:
    """Follow each copy (``rows`` of ``records.copies``) to the guest vCPU it notified.

    A blocked vCPU is woken by the notification on the copy's CPU (within ``window_cycles``,
    :data:`NOTIFY_NS`): ``guest_wake`` is that wake, ``guest_run`` its next run. Without a
    wake the notification went to the vCPU the nearest woken copies reached, which was
    running (``guest_run`` = the notification, taken as the copy) or runnable (its next run).
    """
    copies, wakes = records.copies, records.wakes
    tsc, cpu = copies.tsc[copy_rows], copies.cpu[copy_rows]
    vcpu = np.full(copy_rows.size, -1, dtype=np.int64)
    wake = np.full(copy_rows.size, NO_TSC, dtype=np.int64)
    mine = wakes.domid == domid
    window = window_cycles
    for c in unique(cpu):
        pick = np.flatnonzero(cpu == c)
        on = np.flatnonzero(mine & (wakes.cpu == c))
        if on.size == 0:
            continue
        k = np.searchsorted(wakes.tsc[on], tsc[pick], side="left")
        ok = k < on.size
        w = on[np.minimum(k, on.size - 1)]
        ok &= wakes.tsc[w] - tsc[pick] <= window
        vcpu[pick[ok]], wake[pick[ok]] = wakes.vcpu[w[ok]], wakes.tsc[w[ok]]
    order = np.argsort(tsc, kind="stable")
    filled = np.empty_like(vcpu)
    filled[order] = _nearest_fill(vcpu[order], tsc[order])
    if (filled < 0).all():
        known = timelines.vcpus(domid)
        filled[:] = known[0] if known else -1
    run = np.full(copy_rows.size, NO_TSC, dtype=np.int64)
    for v in unique(filled[filled >= 0]):
        pick = np.flatnonzero(filled == v)
        line = timelines[(domid, int(v))]
        woke = wake[pick] != NO_TSC
        start = np.where(woke, wake[pick], tsc[pick])
        state = line.state_at(start)
        ok = woke | (state == RUNNING) | (state == RUNNABLE)
        run[pick[ok]] = line.next_run(start, state)[ok]
        state_blocked = ~woke & (state == BLOCKED)
        run[pick[state_blocked]] = NO_TSC
    return GuestRuns(filled, wake, run)


def issuer_runs(timelines: Timelines, copies: Copies, copy_rows: np.ndarray,
                since_tsc: np.ndarray) -> np.ndarray:
    """Transmit ``dom0_run``: when the dom0 vCPU that issued each copy ran at or after
    ``since_tsc`` (the guest queued the frame): ``since`` itself when it was running."""
    out = np.full(copy_rows.size, NO_TSC, dtype=np.int64)
    issuer = copies.issuer[copy_rows]
    for v in unique(issuer[issuer >= 0]):
        pick = np.flatnonzero(issuer == v)
        out[pick] = timelines[(0, int(v))].next_run(since_tsc[pick])
    return out
