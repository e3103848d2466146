"""The realistic host's hypervisor trace: records in TSC, blind spots cut, xentrace windows.

The records come complete from the segments (:meth:`.sim.HostSim.finish`); this module adds
the few records xentrace itself causes (wrap padding), cuts the blind spots of lost records
(one lost-records record at the end of each), turns true time into TSC and word 1 of every
HW_IRQ_HANDLED (the handler's duration until here) into the TSC's low bits at handler entry,
as Xen writes it.
"""

from __future__ import annotations

import random

import numpy as np

from ...xen_events import TRC_HW_IRQ_HANDLED, TRC_LOST_RECORDS, TRC_TRACE_WRAP_BUFFER
from ..trace import TraceRecords
from .engine import MS, RAW_WIDTH


def _wraps(sim: object, rnd: random.Random, n_pcpus: int) -> np.ndarray:
    """Wrap padding: a short one (no timestamp) and a long one (timestamped) now and then."""
    span = sim.t_end - sim.t_begin
    rows = []
    for k in range(max(1, span // (400 * MS))):
        pc = rnd.randrange(n_pcpus)
        n, with_ts = (5, 0) if k % 2 == 0 else (7, 1)
        rows.append([pc, sim.t_begin + rnd.randrange(max(1, span)), TRC_TRACE_WRAP_BUFFER,
                     with_ts, n, *(rnd.getrandbits(32) for _ in range(n))])
    out = np.zeros((len(rows), RAW_WIDTH), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _blind(rec: np.ndarray, blind_spots: list[tuple[int, int, int]], sim: object,
           tsc_at_t0: int, cpu_hz: float) -> tuple[np.ndarray, list[dict[str, int]]]:
    """Drop each blind spot's records; a lost-records record at its end instead."""
    keep = np.ones(len(rec), dtype=bool)
    lost, spots = [], []
    for pc, start, end in blind_spots:
        gone = (rec[:, 0] == pc) & (rec[:, 1] >= start) & (rec[:, 1] < end)
        if not gone.any():
            continue
        first = int(rec[gone, 1].min())
        keep &= ~gone
        dropped = int(gone.sum())
        first_tsc = tsc_at_t0 + round((first - sim.t_begin) * cpu_hz / 1e9)
        lost.append([pc, end, TRC_LOST_RECORDS, 1, 4, dropped,
                     sim.domid | (sim.guest.vcpu << 16), first_tsc & 0xFFFFFFFF,
                     first_tsc >> 32, 0, 0, 0])
        spots.append(dict(cpu=pc, start_ns=first, end_ns=end, dropped=dropped))
    extra = np.array(lost, dtype=np.int64).reshape(-1, RAW_WIDTH)
    return np.concatenate([rec[keep], extra]), spots


def build_records(sim: object, rnd: random.Random, *, tsc_at_t0: int, cpu_hz: float,
                  blind_spots: list[tuple[int, int, int]]) -> tuple[TraceRecords,
                                                                    list[dict[str, int]]]:
    """All records, sorted per CPU (by time; ties in write order), in TSC."""
    rec = np.concatenate([sim.trace_records(), _wraps(sim, rnd, sim.shape.n_pcpus)])
    rec, spots = _blind(rec, blind_spots, sim, tsc_at_t0, cpu_hz)
    key = (rec[:, 0] << 44) | (rec[:, 1] - sim.t_begin)
    rec = rec[np.argsort(key, kind="stable")]
    t = rec[:, 1]
    tsc = tsc_at_t0 + np.round((t - sim.t_begin) * (cpu_hz / 1e9)).astype(np.int64)
    event = rec[:, 2].astype(np.uint32)
    irq = np.flatnonzero(event == TRC_HW_IRQ_HANDLED)
    w = rec[:, 5:12].copy()
    entry = tsc_at_t0 + np.round((t[irq] - w[irq, 1] - sim.t_begin)
                                 * (cpu_hz / 1e9)).astype(np.int64)
    w[irq, 1] = entry & 0xFFFFFFFF
    w[irq, 2] = tsc[irq] & 0xFFFFFFFF
    extra = (w & 0xFFFFFFFF).astype(np.uint32)
    return TraceRecords(cpu=rec[:, 0], t_ns=t, tsc=tsc.astype(np.uint64), event=event,
                        extra=extra, n_extra=rec[:, 4], has_ts=rec[:, 3].astype(bool)), spots
