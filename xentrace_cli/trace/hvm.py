"""HVM guests in a trace: VM exits by reason with their cycles, injected interrupts, I/O ports.

A record belongs to the vCPU running on its physical CPU at that moment (from the run-state
timeline). An exit's cycles run, as xenalyze counts them, from its VMEXIT record to the same
vCPU's next VMENTRY, or to the moment that vCPU became runnable first (a HLT exit lasts until
the vCPU is woken; a preempted exit stops counting when the vCPU is queued). An exit followed
by another exit of the same vCPU with no entry between (records lost) has no cycles and is
counted apart (``unclosed``). The I/O port records after an exit take its cycles.

VMX exit reasons are the basic reason (bits 0-15); AMD's SVM exit codes are told apart by the
record id (``0x00081003``, newer Xen) or, for older Xen, by the codes themselves (SVM's common
exits are >= 0x60, which VMX reasons do not reach in practice).

Tables are dicts of numpy columns, as in :mod:`.trace_sched`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..groups import group_quantiles, sorted_codes
from ..sources.xentrace_scan import TraceScan
from ..xen_events import (
    EVENT_MASK,
    SVM_EXIT_CODES,
    TRC_HVM_INJ_VIRQ,
    TRC_HVM_NESTEDFLAG,
    TRC_HVM_VMENTRY,
    TRC_HVM_VMEXIT,
    TRC_HVM_VMEXIT64,
    VMX_EXIT_REASONS,
)
from .sched import QUANTILES, RUNNABLE, Table, occupants

TRC_HVM_SVM_EXIT = 0x00081003
EXIT_IDS = (TRC_HVM_VMEXIT, TRC_HVM_VMEXIT64, TRC_HVM_VMEXIT | TRC_HVM_NESTEDFLAG,
            TRC_HVM_VMEXIT64 | TRC_HVM_NESTEDFLAG, TRC_HVM_SVM_EXIT)
ENTRY_IDS = (TRC_HVM_VMENTRY, TRC_HVM_VMENTRY | TRC_HVM_NESTEDFLAG)
#: I/O port records and their direction.
IOPORT_IDS = {0x00082016: "read", 0x00082216: "write"}
#: The HVM record ids the summary keeps (exits, entries, I/O ports, injected interrupts);
#: every other record is only counted.
HVM_EVENT_IDS: tuple[int, ...] = tuple(sorted({*EXIT_IDS, *ENTRY_IDS, *IOPORT_IDS,
                                               TRC_HVM_INJ_VIRQ}))
#: Extra words of those records the views read (exit reason, port, vector).
HVM_WORDS = 1

_EXIT, _ENTRY, _CLOSE, _IO = range(4)


@dataclasses.dataclass
class HvmViews:
    """The HVM tables (empty for a trace without HVM records)."""

    mode: str | None
    """``vmx``, ``svm``, or None without exits."""
    exits: Table
    """Per vCPU and exit reason: ``key, reason, name, count, cycles, unclosed`` and the cycles
    of one exit (``p50, p90, p99, max``)."""
    interrupts: Table
    """Injected virtual interrupts per vCPU and vector: ``key, vector, count``."""
    io_ports: Table
    """Port I/O per vCPU, port and direction: ``key, port, direction, count, cycles`` (the
    cycles of the exits that did it)."""


def _sequence(kept: Table, iv: Table, runs: Table) -> Table:
    """Exits, entries, I/O records and the vCPUs' becoming runnable, per vCPU in time order."""
    event = kept["header"] & EVENT_MASK
    kind = np.full(len(event), -1, dtype=np.int8)
    kind[np.isin(event, EXIT_IDS)] = _EXIT
    kind[np.isin(event, ENTRY_IDS)] = _ENTRY
    kind[np.isin(event, list(IOPORT_IDS))] = _IO
    rows = np.flatnonzero(kind >= 0)
    key = occupants(runs, kept["cpu"][rows], kept["tsc"][rows])
    became = np.flatnonzero((iv["state"] == RUNNABLE) & ~iv["lead"])
    seq = {"key": np.r_[key, iv["key"][became]],
           "tsc": np.r_[kept["tsc"][rows], iv["start"][became]],
           "kind": np.r_[kind[rows], np.full(len(became), _CLOSE, dtype=np.int8)],
           "row": np.r_[rows, np.full(len(became), -1)]}
    good = np.flatnonzero(seq["key"] >= 0)
    order = good[np.lexsort((seq["tsc"][good], seq["key"][good]))]  # stable on ties
    return {name: column[order] for name, column in seq.items()}


def hvm_views(scan: TraceScan, iv: Table, runs: Table) -> HvmViews:
    """The HVM tables of a trace scanned with (at least) ``HVM_EVENT_IDS``; ``iv`` its run
    states, ``runs`` who held each CPU (:func:`.trace_sched.cpu_runs`)."""
    kept = scan.kept
    seq = _sequence(kept, iv, runs)
    key, tsc, kind, row = seq["key"], seq["tsc"], seq["kind"], seq["row"]
    exits = np.flatnonzero(kind == _EXIT)
    event = kept["header"] & EVENT_MASK
    raw = kept["w0"][row[exits]].astype(np.int64)
    svm = bool(len(exits)) and (bool((event[row[exits]] == TRC_HVM_SVM_EXIT).any())
                                or float(np.mean(raw >= 0x60)) > 0.5)
    reason = raw if svm else raw & 0xFFFF
    # An exit closes at the same vCPU's next entry or becoming runnable (I/O records between
    # belong to it); another exit first means it never closed in the trace.
    marks = np.flatnonzero(kind != _IO)
    nxt = np.full(len(key), 0, dtype=np.int64)
    nxt[marks[:-1]] = marks[1:]
    after = nxt[exits]
    closed = (after > exits) & (key[after] == key[exits]) & np.isin(kind[after], (_ENTRY, _CLOSE))
    cycles = np.where(closed, tsc[after] - tsc[exits], 0)
    return HvmViews(
        mode=None if not len(exits) else ("svm" if svm else "vmx"),
        exits=_exit_stats(key[exits], reason, closed, cycles, svm),
        interrupts=_interrupts(kept, event, runs),
        io_ports=_io_ports(seq, kept, exits, np.where(closed, cycles, 0)),
    )


def _exit_stats(key: np.ndarray, reason: np.ndarray, closed: np.ndarray, cycles: np.ndarray,
                svm: bool) -> Table:
    codes, pairs = sorted_codes((key << 20) | reason)
    n = len(pairs)
    count = np.bincount(codes[closed], minlength=n)
    quant = group_quantiles(codes[closed], cycles[closed], n, (*QUANTILES, 1.0))  # 1: max
    names = SVM_EXIT_CODES if svm else VMX_EXIT_REASONS
    reasons = pairs & 0xFFFFF
    out: Table = {
        "key": pairs >> 20, "reason": reasons,
        "name": np.array([names.get(int(r), f"0x{int(r):x}") for r in reasons], dtype=object),
        "count": count.astype(np.int64),
        "cycles": np.bincount(codes[closed], weights=cycles[closed].astype(float),
                              minlength=n).astype(np.int64),
        "unclosed": np.bincount(codes[~closed], minlength=n).astype(np.int64)}
    for k, q in enumerate(QUANTILES):
        out[f"p{round(q * 100)}"] = quant[:, k]
    out["max"] = np.where(count > 0, quant[:, -1], 0).astype(np.int64)
    return out


def _interrupts(kept: Table, event: np.ndarray, runs: Table) -> Table:
    inj = np.flatnonzero(event == TRC_HVM_INJ_VIRQ)
    key = occupants(runs, kept["cpu"][inj], kept["tsc"][inj])
    ok = key >= 0
    codes, pairs = sorted_codes((key[ok] << 20) | kept["w0"][inj[ok]].astype(np.int64))
    return {"key": pairs >> 20, "vector": pairs & 0xFFFFF,
            "count": np.bincount(codes, minlength=len(pairs)).astype(np.int64)}


def _io_ports(seq: Table, kept: Table, exits: np.ndarray, cycles: np.ndarray) -> Table:
    """Each I/O record takes the cycles of the exit before it (same vCPU, no entry between)."""
    key, kind, row = seq["key"], seq["kind"], seq["row"]
    io = np.flatnonzero(kind == _IO)
    boundary = (kind != _IO) | np.r_[True, key[1:] != key[:-1]] if len(key) else kind != _IO
    last = np.maximum.accumulate(np.where(boundary, np.arange(len(key)), 0))[io]
    at = np.searchsorted(exits, last)
    ok = (kind[last] == _EXIT) & (key[last] == key[io])
    io, at = io[ok], at[ok]
    event = kept["header"][row[io]] & EVENT_MASK
    write = (event == 0x00082216).astype(np.int64)
    port = kept["w0"][row[io]].astype(np.int64) & 0xFFFF
    codes, combos = sorted_codes((key[io] << 20) | (port << 1) | write)
    return {"key": combos >> 20, "port": (combos >> 1) & 0xFFFF,
            "direction": np.array(["read", "write"], dtype=object)[combos & 1],
            "count": np.bincount(codes, minlength=len(combos)).astype(np.int64),
            "cycles": np.bincount(codes, weights=cycles[at].astype(float),
                                  minlength=len(combos)).astype(np.int64)}
