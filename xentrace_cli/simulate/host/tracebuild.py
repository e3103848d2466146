"""The realistic host's hypervisor trace: records in TSC, blind spots cut, xentrace windows.

The records come complete from the segments (:meth:`.sim.HostSim.finish`); this module adds
the few records xentrace itself causes (wrap padding), cuts the blind spots of lost records
(one lost-records record at the end of each), turns true time into TSC and word 1 of every
HW_IRQ_HANDLED (the handler's duration until here) into the TSC's low bits at handler entry,
as Xen writes it.

A long run's segments each write their part of the trace in their own time (in parallel),
with the position and true time of every word that holds a TSC; :func:`concat_parts` joins
them, recomputing those words from the part's shifted times — the same formula, evaluated the
same way, as for a trace built in one piece.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np

from ...xen_events import (
    CPU_CHANGE_HEADER,
    TRC_HW_IRQ_HANDLED,
    TRC_LOST_RECORDS,
    TRC_TRACE_WRAP_BUFFER,
)
from ..trace import TraceRecords
from ..writers import xentrace_record_words
from .engine import MS, RAW_WIDTH


def wrap_records(sim: Any, rnd: random.Random) -> np.ndarray:
    """Wrap padding: a short one (no timestamp) and a long one (timestamped) now and then."""
    n_pcpus = sim.shape.n_pcpus
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


def _blind(rec: np.ndarray, blind_spots: list[tuple[int, int, int]], sim: Any,
           tsc_at_t0: int, cpu_hz: float) -> tuple[np.ndarray, list[dict[str, int]]]:
    """Drop each blind spot's records; a lost-records record at its end instead (its last
    column, never written, keeps the first dropped record's time for :func:`_stamps`)."""
    if not blind_spots:
        return rec, []
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
                     first_tsc >> 32, 0, 0, first])
        spots.append(dict(cpu=pc, start_ns=first, end_ns=end, dropped=dropped))
    extra = np.array(lost, dtype=np.int64).reshape(-1, RAW_WIDTH)
    return np.concatenate([rec[keep], extra]), spots


def _order(rec: np.ndarray, t_begin: int) -> np.ndarray:
    """Per CPU by time, ties in write order (Xen's order on one CPU)."""
    return np.argsort((rec[:, 0] << 44) | (rec[:, 1] - t_begin), kind="stable")


def _tsc(t: np.ndarray, t_begin: int, tsc_at_t0: int, cpu_hz: float) -> np.ndarray:
    """TSC at true time ``t`` (scenario.json's formula, evaluated the same way everywhere)."""
    return tsc_at_t0 + np.round((t - t_begin) * (cpu_hz / 1e9)).astype(np.int64)


def _to_records(rec: np.ndarray, t_begin: int, tsc_at_t0: int, cpu_hz: float
                ) -> TraceRecords:
    t = rec[:, 1]
    tsc = _tsc(t, t_begin, tsc_at_t0, cpu_hz)
    event = rec[:, 2].astype(np.uint32)
    irq = np.flatnonzero(event == TRC_HW_IRQ_HANDLED)
    extra = rec[:, 5:12].astype(np.uint32)       # words wrap to 32 bits, as Xen writes them
    extra[irq, 1] = _tsc(t[irq] - rec[irq, 6], t_begin, tsc_at_t0, cpu_hz) & 0xFFFFFFFF
    extra[irq, 2] = tsc[irq] & 0xFFFFFFFF
    return TraceRecords(cpu=rec[:, 0], t_ns=t, tsc=tsc.astype(np.uint64), event=event,
                        extra=extra, n_extra=rec[:, 4], has_ts=rec[:, 3].astype(bool))


def build_records(sim: Any, rnd: random.Random, *, tsc_at_t0: int, cpu_hz: float,
                  blind_spots: list[tuple[int, int, int]]) -> tuple[TraceRecords,
                                                                    list[dict[str, int]]]:
    """All records, sorted per CPU (by time; ties in write order), in TSC."""
    rec, spots = _blind(sim.trace_records(), blind_spots, sim, tsc_at_t0, cpu_hz)
    return _to_records(rec[_order(rec, sim.t_begin)], sim.t_begin, tsc_at_t0, cpu_hz), spots


# ---------------------------------------------------------------- long runs: one part a segment

def blind_spots_of(sim: Any) -> list[tuple[int, int, int]]:
    """The blind spots around the stalls of lost-records faults, on the guest's pCPU."""
    return [(sim.guest.pcpu.id, f["start_ns"] - sim.lat(400_000), f["end_ns"] + sim.lat(300_000))
            for f in sim.fault_log if f["cause"] == "lost_records"]


def _stamps(rec: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Every word that holds a TSC: its position in the part (32-bit words) and its true
    time; the first ``wide`` ones are 64-bit (the timestamps, then the lost-records' first
    TSC), the rest the 32-bit low words of HW_IRQ_HANDLED's entry and exit."""
    ts = np.flatnonzero(rec[:, 3] != 0)
    lost = np.flatnonzero(rec[:, 2] == TRC_LOST_RECORDS)
    irq = np.flatnonzero((rec[:, 2] == TRC_HW_IRQ_HANDLED) & (rec[:, 3] != 0))
    t = rec[:, 1]
    at = np.concatenate([pos[ts] + 1, pos[lost] + 5, pos[irq] + 4, pos[irq] + 5])
    when = np.concatenate([t[ts], rec[lost, 11], t[irq] - rec[irq, 6], t[irq]])
    return at.astype(np.uint32), when, len(ts) + len(lost)


def write_windows(path: str | os.PathLike[str], rec: TraceRecords, window_cycles: int,
                  order: np.ndarray) -> np.ndarray:
    """Write records as xentrace windows, in ``order`` (per CPU by time); return the position
    of each record's first word in the file (in 32-bit words), in that order."""
    words, length = xentrace_record_words(rec.event, rec.tsc, rec.has_ts, rec.n_extra, rec.extra)
    n = len(length)
    if n == 0:
        open(path, "wb").close()
        return np.zeros(0, np.int64)
    words, length = words[order], length[order]      # 40 bytes a row, not the 96 of rec
    tsc = rec.tsc.astype(np.int64)[order]
    cpu = np.asarray(rec.cpu, dtype=np.int64)[order]
    period = (tsc - tsc.min()) // window_cycles
    key = period * (int(cpu.max()) + 1) + cpu
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    word_start = np.cumsum(length) - length
    lo = word_start[starts]
    hi = np.r_[lo[1:], word_start[-1] + length[-1]]
    order = np.argsort(key[starts], kind="stable")
    size = 3 + (hi - lo)[order]
    out_start = np.empty(len(starts), dtype=np.int64)
    out_start[order] = np.cumsum(size) - size
    run = np.searchsorted(starts, np.arange(n), side="right") - 1
    pos = out_start[run] + 3 + (word_start - lo[run])
    out = np.empty(int(size.sum()), dtype="<u4")
    heads = out_start[:, None] + np.arange(3)
    out[heads[:, 0]], out[heads[:, 1]], out[heads[:, 2]] = (CPU_CHANGE_HEADER, cpu[starts],
                                                            (hi - lo) * 4)
    for j in range(words.shape[1]):      # word j of every record that has one
        has = np.flatnonzero(length > j)
        out[pos[has] + j] = words[has, j]
    out.tofile(path)
    return pos


def write_part(sim: Any, directory: str, k: int, *, tsc_at_t0: int, cpu_hz: float,
               window_cycles: int) -> dict[str, Any]:
    """A segment's trace, in its own time, as a part file, with every TSC word's position
    and true time beside it (see :func:`concat_parts`)."""
    rec, spots = _blind(sim.trace_records(), blind_spots_of(sim), sim, tsc_at_t0, cpu_hz)
    path = os.path.join(directory, f"part-{k}.bin")
    order = _order(rec, sim.t_begin)
    pos = np.empty(len(rec), dtype=np.int64)
    pos[order] = write_windows(path, _to_records(rec, sim.t_begin, tsc_at_t0, cpu_hz),
                               window_cycles, order)
    at, when, wide = _stamps(rec, pos)
    np.save(os.path.join(directory, f"part-{k}-at.npy"), at)
    np.save(os.path.join(directory, f"part-{k}-when.npy"), when)
    return {"path": path, "spots": spots, "t_begin": sim.t_begin, "wide": wide}


def concat_parts(parts: list[dict[str, Any]], out: str | os.PathLike[str], *, tsc_at_t0: int,
                 cpu_hz: float) -> None:
    """xentrace.bin from the segments' parts: every TSC word recomputed from its true time
    plus the part's shift, by the same formula as a one-piece trace."""
    with open(out, "wb") as f:
        for part in parts:
            words = np.fromfile(part["path"], dtype="<u4")
            stem = part["path"][:-len(".bin")]
            at = np.load(f"{stem}-at.npy").astype(np.int64)
            tsc = _tsc(np.load(f"{stem}-when.npy") + part["shift"], part["t_begin"],
                       tsc_at_t0, cpu_hz)
            words[at] = tsc & 0xFFFFFFFF
            wide = part["wide"]
            words[at[:wide] + 1] = tsc[:wide] >> 32
            words.tofile(f)
