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
from .physics import MS, REC_WIDTH, US, Sim, runstate_event
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


def _noise(sim: Sim, rnd: random.Random, rec: np.ndarray) -> np.ndarray:
    """Timer ticks, another device's interrupts, guest records, wrap padding (REC_WIDTH + 3
    columns: the last three are the extra words 4..6 only wrap records use)."""
    rows: list[list[int]] = []
    span = sim.t_end - sim.t_begin
    ticks = []
    for pc in range(N_PCPUS):   # scheduler timer ticks on every pCPU
        tt = np.arange(sim.t_begin + (pc + 1) * 997 * US, sim.t_end, TIMER_PERIOD_NS,
                       dtype=np.int64)
        tick = np.zeros((len(tt), REC_WIDTH + 3), dtype=np.int64)
        tick[:, 0], tick[:, 1], tick[:, 2], tick[:, 3] = pc, tt, TRC_SCHED_S_TIMER_FN, 1
        ticks.append(tick)
    for _ in range(max(1, int(span / (5 * MS)))):   # a disk on the background pCPU
        rows.append([BACKGROUND_PCPU, sim.t_begin + rnd.randrange(span), TRC_HW_IRQ_HANDLED,
                     1, 3, DISK_IRQ, rnd.randrange(800, 4000), 0])
    on_guest = rec[rec[:, 0] == sim.guest.pcpu, 1]
    # guest-inserted records (no timestamp) right after some guest-pCPU records
    for i in rnd.sample(range(len(on_guest)), min(len(on_guest), max(2, len(on_guest) // 50))):
        n = rnd.randrange(0, 4)
        rows.append([sim.guest.pcpu, int(on_guest[i]), TRC_GUEST | rnd.randrange(1, 16), 0, n,
                     *(rnd.getrandbits(32) for _ in range(n))])
    # wrap padding: one short (no timestamp), one long (timestamped), garbage words
    for pc, n, with_ts in ((0, 5, 0), (BACKGROUND_PCPU, 7, 1)):
        rows.append([pc, sim.t_begin + span // 3 + pc * MS, TRC_TRACE_WRAP_BUFFER, with_ts, n,
                     *(rnd.getrandbits(32) for _ in range(n))])
    out = np.zeros((len(rows), REC_WIDTH + 3), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return np.concatenate([*ticks, out])


def build_records(sim: Sim, rnd: random.Random, *, tsc_at_t0: int, cpu_hz: float,
                  blind_spots: list[tuple[int, int, int]]) -> tuple[TraceRecords,
                                                                    list[dict[str, int]]]:
    """All records, sorted per CPU, in TSC; ``blind_spots`` = (cpu, start_ns, end_ns).

    Returns the records and one description per blind spot (records dropped, first dropped).
    """
    add_background(sim, rnd)
    # the bulk (joined segments, else this run's records) stays where it is; what follows it
    # in write order (this run's own records after a join, then noise) is small
    own = np.frombuffer(sim.trace, dtype=np.int64).reshape(-1, REC_WIDTH)
    path = sim.joined_trace
    if not len(path):
        path, own = own, own[:0]
    own = np.concatenate([own, np.zeros((len(own), 3), dtype=np.int64)], axis=1)
    noise = _noise(sim, rnd, np.concatenate([path[:, :2], own[:, :2]]) if len(own) else path)
    noise = np.concatenate([own, noise])
    cpu_a = np.concatenate([path[:, 0], noise[:, 0]])
    t_a = np.concatenate([path[:, 1], noise[:, 1]])
    # blind spots: drop the CPU's records there, one lost-records record at the end
    spots = []
    keep = np.ones(len(cpu_a), dtype=bool)
    lost_rows = []
    for pc, start, end in blind_spots:
        gone = (cpu_a == pc) & (t_a >= start) & (t_a < end)
        if not gone.any():
            continue
        first = int(t_a[gone].min())
        keep &= ~gone
        dropped = int(gone.sum())
        first_tsc = tsc_at_t0 + round((first - sim.t_begin) * cpu_hz / 1e9)
        lost_rows.append([pc, end, TRC_LOST_RECORDS, 1, 4, dropped,
                          sim.domid | (sim.guest.vcpu << 16), first_tsc & 0xFFFFFFFF,
                          first_tsc >> 32, 0, 0, 0])
        spots.append(dict(cpu=pc, start_ns=first, end_ns=end, dropped=dropped))
    lost = np.array(lost_rows, dtype=np.int64).reshape(-1, REC_WIDTH + 3)
    cpu_a = np.concatenate([cpu_a, lost[:, 0]])
    t_a = np.concatenate([t_a, lost[:, 1]])
    keep = np.concatenate([keep, np.ones(len(lost), dtype=bool)])
    # one sort key: cpu in the high bits, time since the start below (stable: Xen's order);
    # dropped records sort last and are cut off
    key = (cpu_a << 44) | (t_a - sim.t_begin)
    key[~keep] = np.iinfo(np.int64).max
    order = np.argsort(key, kind="stable")[:int(keep.sum())]

    # gather each column in sorted order: from the path records (the bulk) in one take, then
    # the few noise and lost records over it
    tail = np.concatenate([noise, lost])
    n_path = len(path)
    from_tail = np.flatnonzero(order >= n_path)
    tail_rows = order[from_tail] - n_path
    path_rows = np.minimum(order, max(n_path - 1, 0))

    def column(j: int) -> np.ndarray:
        if j < REC_WIDTH and n_path:
            out = path[:, j].take(path_rows)
        else:
            out = np.zeros(len(order), dtype=np.int64)
        out[from_tail] = tail[tail_rows, j]
        return out

    t_sorted = t_a[order]
    tsc = tsc_at_t0 + np.round((t_sorted - sim.t_begin) * (cpu_hz / 1e9)).astype(np.int64)
    event = column(2).astype(np.uint32)
    extra = np.empty((len(order), REC_WIDTH + 3 - 5), dtype=np.uint32)
    irq = np.flatnonzero(event == TRC_HW_IRQ_HANDLED)
    for k, j in enumerate(range(5, REC_WIDTH + 3)):
        col = column(j)
        if k == 1:
            # HW_IRQ_HANDLED: TSC low bits at handler entry and exit (word 1 held the
            # duration in ns)
            entry = tsc_at_t0 + np.round((t_sorted[irq] - col[irq] - sim.t_begin)
                                         * (cpu_hz / 1e9)).astype(np.int64)
            col[irq] = entry & 0xFFFFFFFF
        elif k == 2:
            col[irq] = tsc[irq] & 0xFFFFFFFF
        np.copyto(extra[:, k], col, casting="unsafe")
    return TraceRecords(cpu=cpu_a[order], t_ns=t_sorted, tsc=tsc.astype(np.uint64),
                        event=event, extra=extra, n_extra=column(4),
                        has_ts=column(3).astype(bool)), spots


def write_trace(path: str | os.PathLike[str], rec: TraceRecords, cpu_hz: float) -> None:
    """Write the records as xentrace windows (100 ms per CPU per round)."""
    write_xentrace(path, rec.cpu, rec.tsc, rec.event, rec.extra, rec.n_extra, rec.has_ts,
                   window_cycles=int(WINDOW_NS * cpu_hz / 1e9))
