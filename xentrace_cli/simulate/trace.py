"""The hypervisor trace of a simulated run: the path's records plus background, in TSC.

Adds what a real trace holds besides the packet path — other domains time-sharing pCPU 3 with
30 ms slices, scheduler timer ticks, other interrupts, guest-inserted records and wrap padding
(both partly without timestamps) — then converts true time to TSC, cuts the blind spots of
lost records, and hands the records to :func:`writers.write_xentrace`.
"""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np

from ..xen_events import (
    MAX_EXTRA,
    RUNSTATE_BLOCKED,
    RUNSTATE_RUNNABLE,
    TRC_GUEST,
    TRC_HW_IRQ_HANDLED,
    TRC_LOST_RECORDS,
    TRC_SCHED_BLOCK,
    TRC_SCHED_S_TIMER_FN,
    TRC_SCHED_WAKE,
    TRC_TRACE_WRAP_BUFFER,
)
from .physics import MS, US, Sim, runstate_event
from .writers import write_xentrace

N_PCPUS = 4
BACKGROUND_PCPU = 3
#: Domains time-sharing the background pCPU.
BACKGROUND_VCPUS = ((9, 0), (9, 1), (7, 2))
TIMER_PERIOD_NS = 10 * MS
#: xentrace's default poll period: one window per CPU per period.
WINDOW_NS = 100 * MS
DISK_IRQ = 30


@dataclasses.dataclass
class TraceRecords:
    """Columns of every record, in per-CPU write order."""

    cpu: np.ndarray
    t_ns: np.ndarray
    tsc: np.ndarray
    event: np.ndarray
    extra: np.ndarray
    n_extra: np.ndarray
    has_ts: np.ndarray


def add_background(sim: Sim, rnd: random.Random) -> None:
    """Other domains on pCPU 3 (slices up to 30 ms, blocking), as switch records on ``sim``."""
    pc, end = BACKGROUND_PCPU, sim.t_end
    state = {v: RUNSTATE_BLOCKED for v in BACKGROUND_VCPUS}
    since = {v: sim.t_begin for v in BACKGROUND_VCPUS}
    t = sim.t_begin + 1 * MS
    k = 0

    def wake(v: tuple[int, int], at: int) -> None:
        sim.rec(pc, at, TRC_SCHED_WAKE, v)
        sim.rec(pc, at, runstate_event(RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE), (v[1] | v[0] << 16,))
        state[v], since[v] = RUNSTATE_RUNNABLE, at

    cur: tuple[int, int] | None = None
    idle_since = t
    while t < end:
        if cur is None:   # the pCPU was idle: someone wakes
            cur = BACKGROUND_VCPUS[k % len(BACKGROUND_VCPUS)]
            k += 1
            wake(cur, t - int(rnd.uniform(2, 40) * US))
            sim.switch(pc, t, None, RUNSTATE_BLOCKED, cur, t - idle_since, t - since[cur])
            state[cur], since[cur] = 0, t
        t += int(rnd.uniform(3, 30) * MS)
        nxt = BACKGROUND_VCPUS[k % len(BACKGROUND_VCPUS)]
        k += 1
        if rnd.random() < 0.5 and nxt != cur:   # slice over, another one waits: preempted
            if state[nxt] == RUNSTATE_BLOCKED:
                wake(nxt, t - int(rnd.uniform(2, 400) * US))
            sim.switch(pc, t, cur, RUNSTATE_RUNNABLE, nxt, t - since[cur], t - since[nxt])
            state[cur], since[cur] = RUNSTATE_RUNNABLE, t
            state[nxt], since[nxt] = 0, t
            cur = nxt
            continue
        sim.rec(pc, t, TRC_SCHED_BLOCK, cur)
        waiting = [v for v in BACKGROUND_VCPUS if state[v] == RUNSTATE_RUNNABLE]
        if waiting:
            sim.switch(pc, t, cur, RUNSTATE_BLOCKED, waiting[0], t - since[cur],
                       t - since[waiting[0]])
            state[cur], since[cur] = RUNSTATE_BLOCKED, t
            cur = waiting[0]
            state[cur], since[cur] = 0, t
        else:
            sim.switch(pc, t, cur, RUNSTATE_BLOCKED, None, t - since[cur], 0)
            state[cur], since[cur] = RUNSTATE_BLOCKED, t
            cur, idle_since = None, t
            t += int(rnd.uniform(1, 20) * MS)


def _extra_matrix(words: list[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
    n = len(words)
    m = np.zeros((n, MAX_EXTRA), dtype=np.uint32)
    n_extra = np.fromiter((len(w) for w in words), dtype=np.int64, count=n)
    flat = np.fromiter((x & 0xFFFFFFFF for w in words for x in w), dtype=np.uint32,
                       count=int(n_extra.sum()))
    rows = np.repeat(np.arange(n), n_extra)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(n_extra) - n_extra, n_extra)
    m[rows, cols] = flat
    return m, n_extra


def build_records(sim: Sim, rnd: random.Random, *, tsc_at_t0: int, cpu_hz: float,
                  blind_spots: list[tuple[int, int, int]]) -> tuple[TraceRecords,
                                                                    list[dict[str, int]]]:
    """All records, sorted per CPU, in TSC; ``blind_spots`` = (cpu, start_ns, end_ns).

    Returns the records and one description per blind spot (records dropped, first dropped).
    """
    add_background(sim, rnd)
    cpu = list(sim.tr_cpu)
    t = list(sim.tr_t)
    ev = list(sim.tr_ev)
    words = list(sim.tr_w)
    ts = list(sim.tr_ts)
    span = sim.t_end - sim.t_begin
    # scheduler timer ticks on every pCPU
    for pc in range(N_PCPUS):
        ticks = range(sim.t_begin + (pc + 1) * 997 * US, sim.t_end, TIMER_PERIOD_NS)
        cpu += [pc] * len(ticks)
        t += list(ticks)
        ev += [TRC_SCHED_S_TIMER_FN] * len(ticks)
        words += [()] * len(ticks)
        ts += [True] * len(ticks)
    # another device's interrupts on the background pCPU
    n_disk = max(1, int(span / (5 * MS)))
    for _ in range(n_disk):
        tt = sim.t_begin + rnd.randrange(span)
        cpu.append(BACKGROUND_PCPU)
        t.append(tt)
        ev.append(TRC_HW_IRQ_HANDLED)
        words.append((DISK_IRQ, 0, 0))
        ts.append(True)
    # guest-inserted records (no timestamp) after some guest-pCPU records
    on_guest = [i for i in range(len(sim.tr_cpu)) if sim.tr_cpu[i] == sim.guest.pcpu]
    for i in rnd.sample(on_guest, min(len(on_guest), max(2, len(on_guest) // 50))):
        cpu.append(sim.guest.pcpu)
        t.append(sim.tr_t[i])
        ev.append(TRC_GUEST | rnd.randrange(1, 16))
        words.append(tuple(rnd.getrandbits(32) for _ in range(rnd.randrange(0, 4))))
        ts.append(False)
    # wrap padding: one short (no timestamp), one long (timestamped), garbage words
    for pc, n_words, with_ts in ((0, 5, False), (BACKGROUND_PCPU, 7, True)):
        cpu.append(pc)
        t.append(sim.t_begin + span // 3 + pc * MS)
        ev.append(TRC_TRACE_WRAP_BUFFER)
        words.append(tuple(rnd.getrandbits(32) for _ in range(n_words)))
        ts.append(with_ts)

    cpu_a = np.array(cpu, dtype=np.int64)
    t_a = np.array(t, dtype=np.int64)
    ev_a = np.array(ev, dtype=np.uint32)
    ts_a = np.array(ts, dtype=bool)
    extra, n_extra = _extra_matrix(words)
    # blind spots: drop the CPU's records there, one lost-records record at the end
    spots = []
    keep = np.ones(len(cpu_a), dtype=bool)
    add_rows = []
    for pc, start, end in blind_spots:
        gone = (cpu_a == pc) & (t_a >= start) & (t_a < end)
        if not gone.any():
            continue
        first = int(t_a[gone].min())
        keep &= ~gone
        dropped = int(gone.sum())
        first_tsc = tsc_at_t0 + round((first - sim.t_begin) * cpu_hz / 1e9)
        add_rows.append((pc, end, (dropped, sim.domid | (sim.guest.vcpu << 16),
                                   first_tsc & 0xFFFFFFFF, first_tsc >> 32)))
        spots.append(dict(cpu=pc, start_ns=first, end_ns=end, dropped=dropped))
    cpu_a, t_a, ev_a, ts_a = cpu_a[keep], t_a[keep], ev_a[keep], ts_a[keep]
    extra, n_extra = extra[keep], n_extra[keep]
    if add_rows:
        m, ne = _extra_matrix([w for _, _, w in add_rows])
        cpu_a = np.concatenate([cpu_a, [pc for pc, _, _ in add_rows]])
        t_a = np.concatenate([t_a, [e for _, e, _ in add_rows]])
        ev_a = np.concatenate([ev_a, np.full(len(add_rows), TRC_LOST_RECORDS, np.uint32)])
        ts_a = np.concatenate([ts_a, np.ones(len(add_rows), bool)])
        extra = np.concatenate([extra, m])
        n_extra = np.concatenate([n_extra, ne])
    order = np.lexsort((np.arange(len(cpu_a)), t_a, cpu_a))
    cpu_a, t_a, ev_a, ts_a = cpu_a[order], t_a[order], ev_a[order], ts_a[order]
    extra, n_extra = extra[order], n_extra[order]
    tsc = tsc_at_t0 + np.round((t_a - sim.t_begin) * (cpu_hz / 1e9)).astype(np.int64)
    return TraceRecords(cpu=cpu_a, t_ns=t_a, tsc=tsc.astype(np.uint64), event=ev_a,
                        extra=extra, n_extra=n_extra, has_ts=ts_a), spots


def write_trace(path: str | os.PathLike[str], rec: TraceRecords, cpu_hz: float) -> None:
    """Write the records as xentrace windows (100 ms per CPU per round)."""
    write_xentrace(path, rec.cpu, rec.tsc, rec.event, rec.extra, rec.n_extra, rec.has_ts,
                   window_cycles=int(WINDOW_NS * cpu_hz / 1e9))
