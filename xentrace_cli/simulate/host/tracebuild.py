"""The realistic host's hypervisor trace: records in TSC, blind spots cut, xentrace windows.

The records come complete from the segments (:meth:`.sim.HostSim.finish`); this module adds
the few records xentrace itself causes (wrap padding), cuts the blind spots of lost records
(one lost-records record at the end of each), turns true time into TSC and word 1 of every
HW_IRQ_HANDLED (the handler's duration until here) into the TSC's low bits at handler entry,
as Xen writes it.

A long run's segments each write their part of the trace in their own time (in parallel);
:func:`concat_parts` joins them, moving every TSC of a part by its segment's shift — a whole
number of cycles, as segment shifts are whole milliseconds.
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


# ---------------------------------------------------------------- long runs: one part a segment

#: A segment's time shift is a whole number of these, so that its TSC shift is a whole number
#: of cycles (for any rate in whole kHz) and each part's TSCs can be shifted exactly.
SHIFT_QUANTUM_NS = 1_000_000


def blind_spots_of(sim: Any) -> list[tuple[int, int, int]]:
    """The blind spots around the stalls of lost-records faults, on the guest's pCPU."""
    return [(sim.guest.pcpu.id, f["start_ns"] - sim.lat(400_000), f["end_ns"] + sim.lat(300_000))
            for f in sim.fault_log if f["cause"] == "lost_records"]


def write_windows(path: str | os.PathLike[str], rec: TraceRecords, window_cycles: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Write records (sorted per CPU by time) as xentrace windows; return the word positions
    of every 64-bit TSC (timestamps, the lost-records' first TSC) and of every 32-bit TSC low
    word (HW_IRQ_HANDLED's entry and exit), so the part's times can be shifted in place."""
    words, length = xentrace_record_words(rec.event, rec.tsc, rec.has_ts, rec.n_extra, rec.extra)
    n = len(length)
    if n == 0:
        open(path, "wb").close()
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tsc = rec.tsc.astype(np.int64)
    cpu = np.asarray(rec.cpu, dtype=np.int64)
    period = (tsc - tsc.min()) // window_cycles
    key = period * (int(cpu.max()) + 1) + cpu
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    word_start = np.cumsum(length) - length
    lo = word_start[starts]
    hi = np.r_[lo[1:], word_start[-1] + length[-1]]
    order = np.argsort(key[starts], kind="stable")
    out_start = np.empty(len(starts), dtype=np.int64)
    out_start[order] = np.cumsum(3 + (hi - lo)[order]) - (3 + (hi - lo)[order])
    flat = words[np.arange(words.shape[1])[None, :] < length[:, None]]
    head = np.zeros((len(starts), 3), dtype=np.uint32)
    head[:, 0], head[:, 1], head[:, 2] = CPU_CHANGE_HEADER, cpu[starts], (hi - lo) * 4
    with open(path, "wb") as f:
        for r in order.tolist():
            f.write(head[r].astype("<u4").tobytes())
            f.write(flat[lo[r]:hi[r]].astype("<u4", copy=False).tobytes())
    run = np.searchsorted(starts, np.arange(n), side="right") - 1
    pos = out_start[run] + 3 + (word_start - lo[run])
    ts = np.asarray(rec.has_ts, dtype=bool)
    lost = rec.event == TRC_LOST_RECORDS
    irq = (rec.event == TRC_HW_IRQ_HANDLED) & ts
    pos64 = np.sort(np.concatenate([pos[ts] + 1, pos[lost] + 5]))
    pos32 = np.sort(np.concatenate([pos[irq] + 4, pos[irq] + 5]))
    return pos64, pos32


def write_part(sim: Any, directory: str, k: int, *, tsc_at_t0: int, cpu_hz: float,
               window_cycles: int) -> dict[str, Any]:
    """A segment's trace, in its own time, as a part file (see :func:`concat_parts`)."""
    rnd = random.Random(sim.seed ^ 0x7AACE)
    records, spots = build_records(sim, rnd, tsc_at_t0=tsc_at_t0, cpu_hz=cpu_hz,
                                   blind_spots=blind_spots_of(sim))
    path = os.path.join(directory, f"part-{k}.bin")
    pos64, pos32 = write_windows(path, records, window_cycles)
    np.save(os.path.join(directory, f"part-{k}-pos64.npy"), pos64)
    np.save(os.path.join(directory, f"part-{k}-pos32.npy"), pos32)
    return {"path": path, "spots": spots}


def concat_parts(parts: list[dict[str, Any]], out: str | os.PathLike[str],
                 cpu_hz: float) -> None:
    """xentrace.bin from the segments' parts, each one's TSCs moved by its time shift."""
    with open(out, "wb") as f:
        for part in parts:
            delta = part["shift"] * cpu_hz / 1e9
            if delta != int(delta):
                raise ValueError(f"shift {part['shift']} ns is no whole number of cycles")
            words = np.fromfile(part["path"], dtype="<u4")
            stem = part["path"][:-len(".bin")]
            pos64 = np.load(f"{stem}-pos64.npy")
            pos32 = np.load(f"{stem}-pos32.npy")
            d = np.uint64(int(delta))
            v = (words[pos64].astype(np.uint64) | (words[pos64 + 1].astype(np.uint64)
                                                   << np.uint64(32))) + d
            words[pos64] = (v & np.uint64(0xFFFFFFFF)).astype(np.uint32)
            words[pos64 + 1] = (v >> np.uint64(32)).astype(np.uint32)
            words[pos32] = ((words[pos32].astype(np.uint64) + d)
                            & np.uint64(0xFFFFFFFF)).astype(np.uint32)
            words.tofile(f)
