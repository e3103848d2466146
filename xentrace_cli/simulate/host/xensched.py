"""Scheduler events → the records Xen writes around them (credit2, as in corpus/xentrace).

The event loop logs one row per wake, switch and block (:class:`.engine.SchedKind`); this
module expands every row into the record sequence a credit2 host writes, in one vectorized
pass per record kind. The sequences and word layouts follow xen/common/sched/credit2.c and
xen/common/sched/core.c, checked against ``corpus/xentrace`` (8 pCPUs, credit2):

- a wake (``vcpu_wake``): WAKE, RUNSTATE blocked→runnable, then ``csched2_unit_wake``'s
  update_load, update_runq_load, update_vcpu_load, runq_pos (``runq_insert``), tickle_new and
  tickle (``runq_tickle``);
- a switch (``csched2_schedule`` then the context switch): schedule, credit_burn (not for the
  idle vCPU), runq_cand_check, runq_candidate, [update_load, update_runq_load when going
  idle], SWITCH_INFPREV, SWITCH_INFNEXT, SWITCH, the previous vCPU's RUNSTATE_CHANGE, the next
  one's; then ``csched2_context_saved``: update_load, update_runq_load, update_vcpu_load for a
  vCPU that blocked, runq_pos and tickle_new for one that was preempted. The idle vCPU's run
  states are traced too, as on the real host.

The record that stands for a checkpoint keeps the loop's exact time: a WAKE at its time, the
non-idle vCPU's RUNSTATE_CHANGE of a switch at the switch's time; the others are placed a few
hundred ns before or after, in Xen's order (the spacing of the corpus trace).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...xen_events import (
    DOMID_IDLE,
    RUNSTATE_BLOCKED,
    RUNSTATE_RUNNABLE,
    RUNSTATE_RUNNING,
    TRC_HVM_VMENTRY,
    TRC_HVM_VMEXIT64,
    TRC_SCHED_BLOCK,
    TRC_SCHED_CLASS,
    TRC_SCHED_RUNSTATE_CHANGE,
    TRC_SCHED_SWITCH,
    TRC_SCHED_SWITCH_INFNEXT,
    TRC_SCHED_SWITCH_INFPREV,
    TRC_SCHED_WAKE,
)
from .engine import RAW_WIDTH, U32, SchedKind


def csched2(n: int) -> int:
    """credit2's event ``n`` (``TRC_SCHED_CLASS_EVT(CSCHED2, n)``)."""
    return TRC_SCHED_CLASS | (1 << 9) | n


RUNQ_POS, CREDIT_BURN, TICKLE, UPDATE_LOAD = csched2(2), csched2(3), csched2(6), csched2(9)
UPDATE_VCPU_LOAD, UPDATE_RUNQ_LOAD, TICKLE_NEW = csched2(11), csched2(12), csched2(13)
RUNQ_CANDIDATE, SCHEDULE, RUNQ_CAND_CHECK = csched2(20), csched2(21), csched2(23)
#: credit2's load-average precision (LOADAVG_PRECISION_SHIFT) and idle credit
#: (CSCHED2_CREDIT_MIN - 1 = -10 ms - 1).
LOAD_SHIFT = 18
IDLE_CREDIT = (-10_000_001) & U32
#: VMX exit reasons (Intel SDM): external interrupt, HLT.
EXIT_INTR, EXIT_HLT = 1, 12
TRC_HVM_HLT = 0x00082013
#: credit_burn's budget word for a domain without a cap (INT_MIN).
NO_BUDGET = 0x80000000
SLICE_NONE = U32


def runstate(old: int, new: int) -> int:
    return TRC_SCHED_RUNSTATE_CHANGE | old << 8 | new << 4


class _Out:
    """Blocks of records, described as they are added and written into one matrix (n,
    RAW_WIDTH) at the end (no intermediate copies)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[Any, ...]] = []

    def add(self, cpu: np.ndarray, t: np.ndarray, event: int | np.ndarray,
            *words: np.ndarray | int, ts: bool = True) -> None:
        if len(t):
            self.blocks.append((cpu, t, event, words, ts))

    def stack(self, head: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """The records, after the rows ``head`` (already in the matrix layout)."""
        n = sum(len(h) for h in head) + sum(len(b[1]) for b in self.blocks)
        m = np.zeros((n, RAW_WIDTH), dtype=np.int64)
        at = 0
        for h in head:
            m[at:at + len(h)] = h
            at += len(h)
        for cpu, t, event, words, ts in self.blocks:
            rows = m[at:at + len(t)]
            rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4] = cpu, t, event, ts, \
                len(words)
            for k, w in enumerate(words):
                rows[:, 5 + k] = w
            at += len(t)
        return m


def _loads(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Plausible runqueue and vCPU load averages (Q18 fixed point), instantaneous loads."""
    rq = rng.integers(60_000, 420_000, n)
    vl = rng.integers(1_500, 9_000, n)
    load = rng.integers(1, 7, n)
    return rq, vl, load


def _wakes(out: _Out, r: np.ndarray, rng: np.random.Generator) -> None:
    cpu, t, d, v, target = r[:, 1], r[:, 2], r[:, 3], r[:, 4], r[:, 5]
    unit = v | d << 16
    rq, vl, load = _loads(rng, len(t))
    credit = rng.integers(1_000_000, 10_500_000, len(t))
    out.add(cpu, t, TRC_SCHED_WAKE, d, v)
    out.add(cpu, t + 150, runstate(RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE), unit)
    out.add(cpu, t + 400, UPDATE_LOAD)
    out.add(cpu, t + 550, UPDATE_RUNQ_LOAD, rq, 0, rq, 0, load | LOAD_SHIFT << 24, 0)
    out.add(cpu, t + 750, UPDATE_VCPU_LOAD, vl, 0, unit, LOAD_SHIFT)
    out.add(cpu, t + 950, RUNQ_POS, unit, 0)
    out.add(cpu, t + 1150, TICKLE_NEW, unit, target, credit)
    out.add(cpu, t + 1400, TICKLE, target)


def _idle(cpu: np.ndarray) -> np.ndarray:
    return DOMID_IDLE << 16 | cpu


def _switches(out: _Out, r: np.ndarray, rng: np.random.Generator) -> None:
    cpu, t, prev, state, nxt, ran, waited = (r[:, k] for k in range(1, 8))
    prev_idle, next_idle = prev < 0, nxt < 0
    prev = np.where(prev_idle, _idle(cpu), prev)
    nxt = np.where(next_idle, _idle(cpu), nxt)
    credit = rng.integers(1_000_000, 10_500_000, len(t))
    # the anchor at t: the non-idle vCPU's RUNSTATE_CHANGE (going idle: the previous one's)
    a = t
    flags = np.where(prev_idle, 1 << 8 | 1 << 24, 0)       # idle, tickled
    out.add(cpu, a - 2600, SCHEDULE, cpu, flags)
    busy = ~prev_idle
    out.add(cpu[busy], (a - 2200)[busy], CREDIT_BURN, prev[busy], credit[busy], NO_BUDGET,
            np.minimum(ran[busy], 0x7FFFFFFF))
    go = ~next_idle
    out.add(cpu[go], (a - 1900)[go], RUNQ_CAND_CHECK, nxt[go])
    cand_credit = np.where(next_idle, IDLE_CREDIT, credit)
    out.add(cpu, a - 1600, RUNQ_CANDIDATE, nxt, np.where(next_idle, U32, cpu), cand_credit)
    rq, vl, load = _loads(rng, len(t))
    out.add(cpu[next_idle], (a - 1400)[next_idle], UPDATE_LOAD)
    out.add(cpu[next_idle], (a - 1200)[next_idle], UPDATE_RUNQ_LOAD, rq[next_idle], 0,
            rq[next_idle], 0, load[next_idle] | LOAD_SHIFT << 24, 0)
    out.add(cpu, a - 1000, TRC_SCHED_SWITCH_INFPREV, prev >> 16, prev & 0xFFFF,
            np.clip(ran, 0, U32))
    out.add(cpu, a - 800, TRC_SCHED_SWITCH_INFNEXT, nxt >> 16, nxt & 0xFFFF,
            np.clip(waited, 0, U32), np.where(next_idle, SLICE_NONE, credit))
    out.add(cpu, a - 600, TRC_SCHED_SWITCH, prev >> 16, prev & 0xFFFF, nxt >> 16, nxt & 0xFFFF)
    prev_new = np.where(prev_idle, RUNSTATE_RUNNABLE, state)
    prev_ev = TRC_SCHED_RUNSTATE_CHANGE | RUNSTATE_RUNNING << 8 | prev_new << 4
    # going idle: prev's change is the anchor, idle's follows; else prev's just before
    out.add(cpu, np.where(next_idle, a, a - 300), prev_ev, prev)
    out.add(cpu, np.where(next_idle, a + 300, a),
            runstate(RUNSTATE_RUNNABLE, RUNSTATE_RUNNING), nxt)
    _context_saved(out, cpu, a, prev, prev_idle, state, credit, rng)


def _context_saved(out: _Out, cpu: np.ndarray, a: np.ndarray, prev: np.ndarray,
                   prev_idle: np.ndarray, state: np.ndarray, credit: np.ndarray,
                   rng: np.random.Generator) -> None:
    """csched2_context_saved for the vCPU switched out (nothing for the idle vCPU)."""
    blocked = ~prev_idle & (state == RUNSTATE_BLOCKED)
    rq, vl, load = _loads(rng, len(a))
    s = np.flatnonzero(blocked)
    out.add(cpu[s], a[s] + 3000, UPDATE_LOAD)
    out.add(cpu[s], a[s] + 3300, UPDATE_RUNQ_LOAD, rq[s], 0, rq[s], 0,
            load[s] | LOAD_SHIFT << 24, 0)
    out.add(cpu[s], a[s] + 3600, UPDATE_VCPU_LOAD, vl[s], 0, prev[s], LOAD_SHIFT)
    p = np.flatnonzero(~prev_idle & (state == RUNSTATE_RUNNABLE))
    out.add(cpu[p], a[p] + 3000, RUNQ_POS, prev[p], 0)
    out.add(cpu[p], a[p] + 3200, TICKLE_NEW, prev[p], cpu[p], credit[p])


def _hvm(out: _Out, r: np.ndarray, hvm: tuple[int, ...], rng: np.random.Generator) -> None:
    """An HVM vCPU enters the guest after its switch in (VMENTRY); it left it before its
    switch out: for a HLT (VMEXIT64 reason 12, then HVM_HLT, then BLOCK) or for the
    interrupt that preempted it (VMEXIT64 reason 1)."""
    cpu, t, prev, state, nxt = (r[:, k] for k in range(1, 6))
    guest = np.array(hvm, dtype=np.int64)
    entry = np.flatnonzero((nxt >= 0) & np.isin(nxt >> 16, guest))
    out.add(cpu[entry], t[entry] + 400, TRC_HVM_VMENTRY)
    left = (prev >= 0) & np.isin(prev >> 16, guest)
    rip = rng.integers(0x1000, 0xFFFFF000, len(t))     # a kernel address: high word all ones
    hlt = np.flatnonzero(left & (state == RUNSTATE_BLOCKED))
    out.add(cpu[hlt], t[hlt] - 4400, TRC_HVM_VMEXIT64, EXIT_HLT, rip[hlt], U32)
    out.add(cpu[hlt], t[hlt] - 4300, TRC_HVM_HLT, 0, ts=False)
    irq = np.flatnonzero(left & (state == RUNSTATE_RUNNABLE))
    out.add(cpu[irq], t[irq] - 2800, TRC_HVM_VMEXIT64, EXIT_INTR, rip[irq], U32)


def expand(rows: np.ndarray, seed: int, hvm: tuple[int, ...] = (),
           head: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """All records of the scheduler events ``rows`` (n, SCHED_WIDTH), unsorted, after the
    records ``head``; ``hvm``: the domains whose vCPUs are HVM (VM entries and exits around
    their switches)."""
    rng = np.random.default_rng(seed)
    out = _Out()
    kind = rows[:, 0]
    _wakes(out, rows[kind == SchedKind.WAKE], rng)
    _switches(out, rows[kind == SchedKind.SWITCH], rng)
    if hvm:
        _hvm(out, rows[kind == SchedKind.SWITCH], hvm, rng)
    b = rows[kind == SchedKind.BLOCK]
    out.add(b[:, 1], b[:, 2], TRC_SCHED_BLOCK, b[:, 3], b[:, 4])
    return out.stack(head)
