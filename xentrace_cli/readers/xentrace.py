"""Reader of xentrace binary files: the event table, lost records, the run-state timeline.

The records are found by :mod:`.xentrace_records` (every window walked at once, no Python step
per record, in bounded spans); this module turns them into the tables of the contract
(``docs/ARCHITECTURE.md``, "The xentrace tables") and answers run-state questions.

Public: :func:`read_xentrace` → :class:`XenTrace`, and the run-state helpers
:func:`state_at`, :func:`state_durations`, :func:`cpu_runs`, :func:`running_on`,
:func:`who_ran`.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import warnings
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import TruncatedInput, check_readable
from ..xen_events import (
    DOMID_IDLE,
    EVENT_MASK,
    EXTRA_MASK,
    EXTRA_SHIFT,
    HYPERCALL_GRANT_TABLE_OP,
    HYPERCALL_OP_MASK,
    MAX_EXTRA,
    RUNSTATES,
    TRC_HW_IRQ_HANDLED,
    TRC_LOST_RECORDS,
    TRC_MEM_PAGE_GRANT_MAP,
    TRC_MEM_PAGE_GRANT_TRANSFER,
    TRC_MEM_PAGE_GRANT_UNMAP,
    TRC_PV_HYPERCALL_V2,
    TRC_SCHED_BLOCK,
    TRC_SCHED_CONTINUE_RUNNING,
    TRC_SCHED_SLEEP,
    TRC_SCHED_SWITCH,
    TRC_SCHED_SWITCH_INFNEXT,
    TRC_SCHED_SWITCH_INFPREV,
    TRC_SCHED_WAKE,
    TRC_SCHED_YIELD,
    event_name,
    is_runstate_change,
)
from .xentrace_records import Batch, Clock, Keep, Part, read_batches, walk_windows

ProgressCallback = Callable[[int, int], None]

#: Words of file per span of windows read at once (32 MiB): bounds the walk's working memory.
CHUNK_WORDS = 1 << 23
#: Run-state categories, in state-number order.
RUNSTATE_DTYPE = pd.CategoricalDtype(list(RUNSTATES))
_WORD_COLUMNS = tuple(f"w{k}" for k in range(MAX_EXTRA))


@dataclasses.dataclass
class XenTrace:
    """A xentrace file read into tables (``docs/ARCHITECTURE.md``, "The xentrace tables")."""

    path: Path
    events: pd.DataFrame
    """One row per record Xen wrote, merged by ``tsc`` (stable: a CPU's records keep their
    order as long as its TSC does not go back). Columns of the contract, plus ``ran_ns``
    (SWITCH_INFPREV), ``wait_ns`` (SWITCH_INFNEXT), ``timestamped`` (the record has its own
    TSC) and ``offset`` (byte offset of the record in the file)."""
    lost: pd.DataFrame
    """Lost-records records: ``cpu, dropped, domid, vcpu, tsc_first, tsc`` (blind spots)."""
    runstates: pd.DataFrame
    """Run-state intervals per ``(domid, vcpu)`` sorted by start: ``state, start_tsc,
    end_tsc`` (NA: open), ``cpu`` (of the record that opened it), ``from_trace_start`` (the
    state before the vCPU's first change, from the first TSC), ``consistent`` (False when the
    closing record's old state disagrees: records were lost between)."""
    switches: pd.DataFrame
    """SWITCH records: ``cpu, tsc, prev_domid, prev_vcpu, next_domid, next_vcpu``."""
    records: int
    """Records Xen wrote (wrap and lost-records included; not the CPU-change records)."""
    windows: int
    """CPU-change records (windows) read."""
    cpu_ids: tuple[int, ...]
    """Physical CPUs that have a window."""
    truncated: bool
    """The file ended inside a window or record (the whole records before were kept)."""
    first_tsc: int | None
    """Smallest TSC of a timestamped record (None when no record has one)."""
    last_tsc: int | None
    """Largest TSC of a timestamped record."""
    event_counts: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame({"cpu": np.empty(0, np.int16),
                                              "event": np.empty(0, np.uint32),
                                              "records": np.empty(0, np.int64)}))
    """Records per physical CPU and event id, every record counted (those ``events=`` left
    out of the event table too): ``cpu, event, records``, sorted by cpu and event."""
    cpu_first_tsc: dict[int, int] = dataclasses.field(default_factory=dict)
    """First own TSC of each physical CPU that has one."""
    cpu_last_tsc: dict[int, int] = dataclasses.field(default_factory=dict)
    """TSC of each physical CPU's last record (its own, or carried from the one before)."""

    @property
    def cpus(self) -> int:
        """Number of physical CPUs that have a window."""
        return len(self.cpu_ids)

    @cached_property
    def cpu_runs(self) -> pd.DataFrame:
        """Who ran on each physical CPU when (see :func:`cpu_runs`)."""
        return cpu_runs(self.switches, self.first_tsc)


# --- tables --------------------------------------------------------------------------------------

def _nullable(values: np.ndarray, valid: np.ndarray, dtype: str) -> pd.arrays.IntegerArray:
    """A pandas nullable integer array from values and a validity mask (no copy of NA)."""
    np_dtype = np.dtype(dtype.lower())
    return pd.arrays.IntegerArray(values.astype(np_dtype, copy=False), ~valid)


#: Columns :func:`_decode` adds (it needs every extra word).
_DECODED = ("domid", "vcpu", "old_state", "new_state", "next_domid", "next_vcpu", "ran_ns",
            "wait_ns", "irq", "hypercall", "gnttab_cmd", "count")


# Kinds of events the decoder treats alike (index into _KIND_OF, per distinct event id).
_K_OTHER, _K_UNIT, _K_RUNSTATE, _K_PAIR, _K_SWITCH, _K_INFPREV, _K_INFNEXT, _K_LOST, \
    _K_GRANT, _K_IRQ, _K_HCALL = range(11)


def _kind(event: int) -> int:
    if is_runstate_change(event):
        return _K_RUNSTATE
    return {
        TRC_SCHED_CONTINUE_RUNNING: _K_UNIT,
        TRC_SCHED_WAKE: _K_PAIR, TRC_SCHED_BLOCK: _K_PAIR, TRC_SCHED_SLEEP: _K_PAIR,
        TRC_SCHED_YIELD: _K_PAIR,
        TRC_SCHED_SWITCH: _K_SWITCH,
        TRC_SCHED_SWITCH_INFPREV: _K_INFPREV,
        TRC_SCHED_SWITCH_INFNEXT: _K_INFNEXT,
        TRC_LOST_RECORDS: _K_LOST,
        TRC_MEM_PAGE_GRANT_MAP: _K_GRANT, TRC_MEM_PAGE_GRANT_UNMAP: _K_GRANT,
        TRC_MEM_PAGE_GRANT_TRANSFER: _K_GRANT,
        TRC_HW_IRQ_HANDLED: _K_IRQ,
        TRC_PV_HYPERCALL_V2: _K_HCALL,
    }.get(event, _K_OTHER)


class _Column:
    """A nullable integer column filled at a few rows (values and an NA mask)."""

    def __init__(self, n: int, dtype: type) -> None:
        self.values = np.zeros(n, dtype=dtype)
        self.na = np.ones(n, dtype=bool)

    def put(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.values[rows] = values
        self.na[rows] = False

    def array(self) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(self.values, self.na)


def _decode(columns: dict[str, object], event: np.ndarray, codes: np.ndarray,
            uniques: np.ndarray, n_extra: np.ndarray, w: list[np.ndarray]) -> None:
    """Add the decoded columns (domid, vcpu, states, switch target, irq, hypercall …).

    Only the rows of the events concerned are touched: rows are grouped by kind once.
    """
    n = len(event)
    kind_of = np.array([_kind(int(e)) for e in uniques], dtype=np.int8)
    kind = kind_of[codes] if n else np.zeros(0, dtype=np.int8)
    order = np.argsort(kind, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(kind, minlength=11))]

    def rows(k: int, min_extra: int = 0, exact: int | None = None) -> np.ndarray:
        r = order[bounds[k]:bounds[k + 1]]
        if exact is not None:
            return r[n_extra[r] == exact]
        return r[n_extra[r] >= min_extra]

    domid, vcpu = _Column(n, np.int32), _Column(n, np.int32)
    old_state, new_state = _Column(n, np.int8), _Column(n, np.int8)
    next_domid, next_vcpu = _Column(n, np.int32), _Column(n, np.int32)
    ran_ns, wait_ns = _Column(n, np.int64), _Column(n, np.int64)
    irq, hypercall = _Column(n, np.int32), _Column(n, np.int32)
    gnttab_cmd, count = _Column(n, np.int32), _Column(n, np.int64)

    for k in (_K_UNIT, _K_RUNSTATE):  # w0: vcpu in bits 0-15, domid in bits 16-31
        r = rows(k, 1)
        domid.put(r, w[0][r] >> 16)
        vcpu.put(r, w[0][r] & 0xFFFF)
    r = rows(_K_RUNSTATE, 1)
    old_state.put(r, (event[r] >> 8) & 0xF)
    new_state.put(r, (event[r] >> 4) & 0xF)
    r = rows(_K_PAIR, 2)  # [domid, vcpu]
    domid.put(r, w[0][r])
    vcpu.put(r, w[1][r])
    r = rows(_K_SWITCH, 4)  # [prev domid, prev vcpu, next domid, next vcpu]
    domid.put(r, w[0][r])
    vcpu.put(r, w[1][r])
    next_domid.put(r, w[2][r])
    next_vcpu.put(r, w[3][r])
    # SWITCH_INFPREV: [domid, vcpu, ran_ns]; Xen <= 4.7: [domid, ran_ns].
    # SWITCH_INFNEXT: [domid, vcpu, wait_ns, slice]; Xen <= 4.7: [domid, wait_ns, slice].
    # The old layout is told by its exact word count; the new one has a word more.
    for k, ns, old_words in ((_K_INFPREV, ran_ns, 2), (_K_INFNEXT, wait_ns, 3)):
        r = rows(k, exact=old_words)
        domid.put(r, w[0][r])
        ns.put(r, w[1][r])
        r = rows(k, old_words + 1)
        domid.put(r, w[0][r])
        vcpu.put(r, w[1][r])
        ns.put(r, w[2][r])
    r = rows(_K_LOST, 2)  # w1: domid in bits 0-15, vcpu in bits 16-31
    domid.put(r, w[1][r] & 0xFFFF)
    vcpu.put(r, w[1][r] >> 16)
    r = rows(_K_GRANT, 1)
    domid.put(r, w[0][r])
    r = rows(_K_IRQ, 1)
    irq.put(r, w[0][r])
    # PV_HYPERCALL_V2: w0 = op | 2 presence bits per argument from bit 20 (1: one 32-bit word,
    # 2: a 64-bit value in two words), then the present arguments in order.
    r = rows(_K_HCALL, 1)
    op = w[0][r] & HYPERCALL_OP_MASK
    hypercall.put(r, op)
    r = r[op == HYPERCALL_GRANT_TABLE_OP]
    flags = w[0][r].astype(np.int64)
    a0, a1, a2 = (flags >> 20) & 3, (flags >> 22) & 3, (flags >> 24) & 3
    ne = n_extra[r].astype(np.int64)
    ok = (a0 != 0) & (ne >= 2)
    gnttab_cmd.put(r[ok], w[1][r[ok]])
    at = 1 + a0 + a1  # word index of argument 2 (the count)
    ok = (a2 != 0) & (at < ne)
    extra = np.stack([w[k][r[ok]] for k in range(MAX_EXTRA)]) if ok.any() else None
    if extra is not None:
        count.put(r[ok], extra[at[ok], np.arange(int(ok.sum()))])

    for name, col in (("domid", domid), ("vcpu", vcpu), ("old_state", old_state),
                      ("new_state", new_state), ("next_domid", next_domid),
                      ("next_vcpu", next_vcpu), ("ran_ns", ran_ns), ("wait_ns", wait_ns),
                      ("irq", irq), ("hypercall", hypercall), ("gnttab_cmd", gnttab_cmd),
                      ("count", count)):
        columns[name] = col.array()


def _names(codes: np.ndarray, uniques: np.ndarray) -> pd.Categorical:
    """Event names as a categorical (one name lookup per distinct id)."""
    names = [event_name(int(i)) for i in uniques]
    categories = sorted(set(names))
    code_of = {name: k for k, name in enumerate(categories)}
    name_code = np.array([code_of[x] for x in names], dtype=np.int32)
    return pd.Categorical.from_codes(name_code[codes] if len(codes) else codes.astype(np.int32),
                                     categories=categories)


class _Merge:
    """Batches' columns concatenated and put in TSC order through one reused scratch buffer.

    Each column is built once in its final order; the scratch (8 bytes per record) is the only
    other memory touched, and each batch column is dropped once merged.
    """

    def __init__(self, batches: list[Batch], order: np.ndarray) -> None:
        self.batches = batches
        self.order = order
        self.scratch = np.empty(len(order) * 8, dtype=np.uint8)

    def column(self, parts: list[np.ndarray], dtype: type | str) -> np.ndarray:
        buf = self.scratch[: len(self.order) * np.dtype(dtype).itemsize].view(dtype)
        if parts:
            np.concatenate(parts, out=buf)
        return buf.take(self.order)

    def take(self, name: str, dtype: type | str) -> np.ndarray:
        parts = [getattr(b, name) for b in self.batches]
        for b in self.batches:
            setattr(b, name, None)  # merged: let it go
        return self.column(parts, dtype)


@dataclasses.dataclass
class _Tables:
    events: pd.DataFrame
    lost: pd.DataFrame
    runstates: pd.DataFrame
    switches: pd.DataFrame
    first_tsc: int | None
    last_tsc: int | None


def _tables(batches: list[Batch], keep_ids: np.ndarray | None,
            keep_columns: tuple[str, ...] | None = None) -> _Tables:
    """Concatenate the batches, merge by TSC (stable), build the derived tables, decode.

    With ``keep_ids`` the event table holds only those ids (the batches also hold the
    lost-records records, dropped once the lost table is built).
    """
    lows = [b.stamped_min for b in batches if b.stamped_min is not None]
    highs = [b.stamped_max for b in batches if b.stamped_max is not None]
    first_tsc = min(lows) if lows else None
    last_tsc = max(highs) if highs else None
    runstate = _merged_part([b.runstate for b in batches])
    runstates = _runstates_table(runstate, first_tsc, last_tsc)
    del runstate
    switches = _switches_table(_merged_part([b.switch for b in batches]))
    for b in batches:
        b.runstate = b.switch = None
    parts = [b.tsc for b in batches]
    tsc = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    del parts
    order = np.argsort(tsc, kind="stable")
    tsc = tsc.take(order)
    merge = _Merge(batches, order)
    header = merge.take("header", np.uint32)
    cpu = merge.take("cpu", np.int16)
    w = []
    for k in range(batches[0].extra.shape[0] if batches else MAX_EXTRA):
        w.append(merge.column([b.extra[k] for b in batches], np.uint32))
    for b in batches:
        b.extra = None
    offset = merge.take("offset", np.int64)
    del merge, order
    event = header & EVENT_MASK
    n_extra = ((header >> EXTRA_SHIFT) & EXTRA_MASK).astype(np.uint8)
    lost = _lost_table(event, n_extra, cpu, tsc, w)
    if keep_ids is not None:
        wanted = np.isin(event, keep_ids)
        if not wanted.all():  # lost-records records kept for the lost table only
            sel = np.flatnonzero(wanted)
            header, cpu, tsc, offset, event, n_extra = (x.take(sel) for x in (
                header, cpu, tsc, offset, event, n_extra))
            w = [x.take(sel) for x in w]
    stamped = (header >> 31).astype(bool)
    del header
    codes, uniques = pd.factorize(event, sort=False)
    columns: dict[str, object] = {
        "cpu": cpu,
        "tsc": tsc,
        "event": event,
        "name": _names(codes, uniques),
        "n_extra": n_extra,
    }
    for col, values in zip(_WORD_COLUMNS, w, strict=False):
        columns[col] = values
    if keep_columns is None or set(keep_columns) & set(_DECODED):
        _decode(columns, event, codes, uniques, n_extra, w)
    columns["timestamped"] = stamped
    columns["offset"] = offset
    if keep_columns is not None:
        columns = {name: columns[name] for name in keep_columns}
    events = pd.DataFrame(columns, copy=False)
    return _Tables(events, lost, runstates, switches, first_tsc, last_tsc)


def _merged_part(parts: list[Part]) -> dict[str, np.ndarray]:
    """The parts' columns concatenated and put in TSC order (stable: file order on ties)."""
    names = list(parts[0].columns) if parts else []
    tsc = np.concatenate([p.columns["tsc"] for p in parts]) if parts else \
        np.empty(0, dtype=np.int64)
    order = np.argsort(tsc, kind="stable")
    out = {"tsc": tsc.take(order)}
    del tsc
    for name in names:
        if name != "tsc":
            out[name] = np.concatenate([p.columns[name] for p in parts]).take(order)
    return out


def _lost_table(event: np.ndarray, n_extra: np.ndarray, cpu: np.ndarray, tsc: np.ndarray,
                w: list[np.ndarray]) -> pd.DataFrame:
    """Lost-records records: how many were dropped, and the span nothing was seen."""
    r = np.flatnonzero((event == TRC_LOST_RECORDS) & (n_extra >= 4))
    w1 = w[1][r]
    tsc_first = (w[2][r].astype(np.uint64) | (w[3][r].astype(np.uint64) << np.uint64(32)))
    valid = np.ones(len(r), dtype=bool)
    return pd.DataFrame({
        "cpu": cpu[r],
        "dropped": w[0][r].astype(np.int64),
        "domid": _nullable(w1 & 0xFFFF, valid, "Int32"),  # w1: domid bits 0-15, vcpu 16-31
        "vcpu": _nullable(w1 >> 16, valid, "Int32"),
        "tsc_first": tsc_first.view(np.int64),
        "tsc": tsc[r],
    })


def _switches_table(part: dict[str, np.ndarray]) -> pd.DataFrame:
    """SWITCH records: which scheduling unit left and which took each physical CPU."""
    columns = {"cpu": part.get("cpu", np.empty(0, np.int16)),
               "tsc": part.get("tsc", np.empty(0, np.int64))}
    for k, name in enumerate(("prev_domid", "prev_vcpu", "next_domid", "next_vcpu")):
        columns[name] = part.get(f"w{k}", np.empty(0, np.uint32)).astype(np.int32)
    return pd.DataFrame(columns)


def _intervals(key: np.ndarray, tsc: np.ndarray, before: np.ndarray, after: np.ndarray,
               origin: int) -> dict[str, np.ndarray]:
    """Intervals from change points sorted by (key, tsc): each change closes one, opens one.

    The first change of a key also yields the interval before it (state ``before``), from
    ``origin`` (the trace's first TSC). Returns arrays keyed ``row`` (source change for the
    opening), ``state``, ``start``, ``end`` (-1: open), ``from_origin``, ``consistent``.
    """
    n = len(key)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return {"row": empty, "state": empty, "start": empty, "end": empty,
                "from_origin": np.empty(0, dtype=bool), "consistent": np.empty(0, dtype=bool)}
    same_next = np.zeros(n, dtype=bool)
    np.equal(key[1:], key[:-1], out=same_next[:-1])
    end = np.full(n, -1, dtype=np.int64)
    np.copyto(end[:-1], tsc[1:], where=same_next[:-1])
    consistent = np.ones(n, dtype=bool)
    consistent[:-1] = ~same_next[:-1] | (before[1:] == after[:-1])
    firsts = np.r_[0, np.flatnonzero(~same_next[:-1]) + 1]
    lead = firsts[tsc[firsts] > origin]
    # Each lead interval goes just before its key's first change (no sort needed).
    lead_values = {"row": lead, "state": before[lead], "start": np.full(len(lead), origin),
                   "end": tsc[lead], "from_origin": np.ones(len(lead), dtype=bool),
                   "consistent": np.ones(len(lead), dtype=bool)}
    values = {"row": np.arange(n), "state": after, "start": tsc, "end": end,
              "from_origin": np.zeros(n, dtype=bool), "consistent": consistent}
    return {name: _interleave(values[name], lead, lead_values[name]) for name in values}


def _interleave(values: np.ndarray, at: np.ndarray, inserted: np.ndarray) -> np.ndarray:
    """``values`` with ``inserted[k]`` put just before ``values[at[k]]`` (``at`` sorted)."""
    m = len(at)
    out = np.empty(len(values) + m, dtype=np.result_type(values, inserted))
    if m > 256:  # many keys: scatter
        where = at + np.arange(m)
        rest = np.ones(len(out), dtype=bool)
        rest[where] = False
        out[where] = inserted
        out[rest] = values
        return out
    prev = 0
    for k, i in enumerate(at.tolist()):  # few keys (CPUs, vCPUs): copy the runs between
        out[prev + k:i + k] = values[prev:i]
        out[i + k] = inserted[k]
        prev = i
    out[prev + m:] = values[prev:]
    return out


def _group_order(key: np.ndarray) -> np.ndarray:
    """Stable order grouping equal keys, groups by key value (radix sort on few keys)."""
    codes, uniques = pd.factorize(key, sort=True)
    if len(uniques) < np.iinfo(np.int16).max:
        return np.argsort(codes.astype(np.int16), kind="stable")
    return np.argsort(key, kind="stable")


def _runstates_table(part: dict[str, np.ndarray], first_tsc: int | None,
                     last_tsc: int | None) -> pd.DataFrame:
    """Run-state intervals from RUNSTATE_CHANGE records (vectorized, no loop per vCPU)."""
    ev = part.get("event", np.empty(0, np.uint32))
    # w0: vcpu in bits 0-15, domid in bits 16-31; the states in the event id
    key = part.get("w0", np.empty(0, np.uint32)).astype(np.int64)
    order = _group_order(key)  # stable: the part is in TSC order, so each vCPU stays so
    key = key[order]
    before = ((ev >> 8) & 0xF).astype(np.int64)[order]
    after = ((ev >> 4) & 0xF).astype(np.int64)[order]
    del ev
    tsc = part.get("tsc", np.empty(0, np.int64))[order]
    cpu = part.get("cpu", np.empty(0, np.int16))[order]
    origin = first_tsc if first_tsc is not None else 0
    iv = _intervals(key, tsc, before, after, origin)
    rows = iv["row"]
    known = iv["state"] < len(RUNSTATES)
    codes = np.where(known, iv["state"], -1).astype(np.int8)
    frame = pd.DataFrame({
        "domid": (key[rows] >> 16).astype(np.int32),
        "vcpu": (key[rows] & 0xFFFF).astype(np.int32),
        "state": pd.Categorical.from_codes(codes, dtype=RUNSTATE_DTYPE),
        "start_tsc": iv["start"],
        "end_tsc": _nullable(iv["end"], iv["end"] >= 0, "Int64"),
        "cpu": cpu[rows],
        "from_trace_start": iv["from_origin"],
        "consistent": iv["consistent"],
    })
    frame.attrs["first_tsc"] = first_tsc
    frame.attrs["last_tsc"] = last_tsc
    return frame


def _keep(events: Iterable[int] | None, columns: Iterable[str] | None) -> Keep:
    """Which records the batches keep in full, and how many of their words."""
    ids = None if events is None else np.unique(np.asarray(list(events), dtype=np.uint32))
    words = MAX_EXTRA
    if columns is not None and not set(columns) & set(_DECODED):
        words = max((k + 1 for k, name in enumerate(_WORD_COLUMNS) if name in columns),
                    default=0)
    return Keep(ids, words)


def _settle_pending(batches: list[Batch], clock: Clock) -> None:
    """Records before their CPU's first TSC take that first TSC (else the trace's first)."""
    starts = [b.stamped_min for b in batches if b.stamped_min is not None]
    origin = min(starts) if starts else 0
    for b in batches:
        for tsc, cpu, pending in ((b.tsc, b.cpu, b.pending),
                                  *((p.columns["tsc"], p.columns["cpu"], p.pending)
                                    for p in (b.runstate, b.switch))):
            if len(pending):
                tsc[pending] = [clock.first.get(c, origin) for c in cpu[pending].tolist()]


def _event_counts(batches: list[Batch]) -> pd.DataFrame:
    """Records per (cpu, event) summed over the batches."""
    cpu, event, n = (np.concatenate([b.counts[k] for b in batches]) if batches else
                     np.empty(0, dtype=t) for k, t in enumerate((np.int16, np.uint32, np.int64)))
    frame = pd.DataFrame({"cpu": cpu.astype(np.int16), "event": event.astype(np.uint32),
                          "records": n.astype(np.int64)})
    return frame.groupby(["cpu", "event"], as_index=False, sort=True)["records"].sum()


def read_xentrace(path: str | os.PathLike[str],
                  on_progress: ProgressCallback | None = None,
                  events: Iterable[int] | None = None,
                  columns: Iterable[str] | None = None) -> XenTrace:
    """Read a xentrace file into an event table, lost records and the run-state timeline.

    ``events``: keep only records of these event ids in the event table (the lost-records,
    run-state and switch tables are still whole; ``records`` and ``event_counts`` still count
    every record). The analyzer needs a few ids of millions of records: the others never get
    columns. ``columns``: keep only these columns of the event table (memory).
    Raises ``InputError`` for input that is not a usable trace; warns ``TruncatedInput`` when
    the file ends inside a window (the whole records before are kept).
    """
    path = Path(path)
    keep = _keep(events, columns)
    check_readable(path)
    size = path.stat().st_size
    clock = Clock()
    batches: list[Batch] = []
    with open(path, "rb") as handle:
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            win = walk_windows(path, mm, size)
        truncated_at = win.truncated_at
        for batch, cut in read_batches(path, handle, win, size, CHUNK_WORDS, clock, keep,
                                       on_progress):
            batches.append(batch)
            if cut is not None:
                truncated_at = cut
    if truncated_at is not None:
        _warn_truncated(path, win.cpu, win.declared_end, size, truncated_at)
    _settle_pending(batches, clock)
    records = sum(b.records for b in batches)
    counts = _event_counts(batches)
    tables = _tables(batches, keep.ids, None if columns is None else tuple(columns))
    del batches
    return XenTrace(
        path=path,
        events=tables.events,
        lost=tables.lost,
        runstates=tables.runstates,
        switches=tables.switches,
        records=records,
        windows=len(win.start),
        cpu_ids=tuple(sorted(set(win.cpu.tolist()))),
        truncated=truncated_at is not None,
        first_tsc=tables.first_tsc,
        last_tsc=tables.last_tsc,
        event_counts=counts,
        cpu_first_tsc=dict(sorted(clock.first.items())),
        cpu_last_tsc=dict(sorted(clock.last.items())),
    )


def _warn_truncated(path: Path, cpu: np.ndarray, declared_end: int, size: int,
                    truncated_at: int) -> None:
    """The one warning of a file cut short: where, and what was kept."""
    if declared_end > size:
        what = (f"file ends inside a window of CPU {int(cpu[-1])} (the file has {size} "
                f"bytes, the window needs {declared_end})")
    else:
        what = (f"file ends inside a CPU-change record ({size - declared_end} bytes "
                "after the last whole window)")
    warnings.warn(TruncatedInput(f"{path}: offset {truncated_at}: {what}; kept the whole "
                                 "records before"), stacklevel=3)


# --- run-state and CPU-occupancy queries ----------------------------------------------------------

def _rows_of(runstates: pd.DataFrame, domid: int, vcpu: int) -> pd.DataFrame:
    mask = (runstates["domid"].to_numpy() == domid) & (runstates["vcpu"].to_numpy() == vcpu)
    return runstates[mask]


def _ends(rows: pd.DataFrame, open_end: int) -> np.ndarray:
    return rows["end_tsc"].to_numpy(dtype=np.int64, na_value=open_end)


def state_at(runstates: pd.DataFrame, domid: int, vcpu: int,
             tsc: np.ndarray | list[int]) -> pd.Categorical:
    """Run state of vCPU ``domid.vcpu`` at each TSC (NA before its first known state).

    An open last interval counts until ``runstates.attrs["last_tsc"]`` (after that: NA).
    """
    tsc = np.asarray(tsc, dtype=np.int64)
    rows = _rows_of(runstates, domid, vcpu)
    start = rows["start_tsc"].to_numpy(np.int64)
    end = _ends(rows, _open_end(runstates))
    out = np.full(len(tsc), -1, dtype=np.int8)
    if len(start):
        idx = np.searchsorted(start, tsc, side="right") - 1
        safe = np.maximum(idx, 0)
        inside = (idx >= 0) & (tsc < end[safe])
        codes = rows["state"].cat.codes.to_numpy()
        out = np.where(inside, codes[safe], -1).astype(np.int8)
    return pd.Categorical.from_codes(out, dtype=RUNSTATE_DTYPE)


def _open_end(runstates: pd.DataFrame) -> int:
    last = runstates.attrs.get("last_tsc")
    if last is None:
        return int(runstates["start_tsc"].max()) if len(runstates) else 0
    return int(last)


def state_durations(runstates: pd.DataFrame, domid: int, vcpu: int,
                    start_tsc: np.ndarray | list[int],
                    end_tsc: np.ndarray | list[int]) -> pd.DataFrame:
    """Cycles vCPU ``domid.vcpu`` spent in each state within each ``[start, end)`` interval.

    One row per interval: ``running``, ``runnable``, ``blocked``, ``offline`` and ``unknown``
    (no state known: before the trace shows one, after the trace). Vectorized over intervals.
    """
    start = np.asarray(start_tsc, dtype=np.int64)
    end = np.maximum(np.asarray(end_tsc, dtype=np.int64), start)
    rows = _rows_of(runstates, domid, vcpu)
    s = rows["start_tsc"].to_numpy(np.int64)
    e = _ends(rows, _open_end(runstates))
    e = np.maximum(e, s)
    codes = rows["state"].cat.codes.to_numpy()
    out: dict[str, np.ndarray] = {}
    known = np.zeros(len(start), dtype=np.int64)
    for code, name in enumerate(RUNSTATES):
        dur = np.where(codes == code, e - s, 0)
        before = np.r_[0, np.cumsum(dur)[:-1]] if len(dur) else dur

        def spent(t: np.ndarray, code: int = code, before: np.ndarray = before) -> np.ndarray:
            # Cycles in state `code` before time t: whole intervals before, part of this one.
            i = np.searchsorted(s, t, side="right") - 1
            ok = i >= 0
            j = np.maximum(i, 0)
            if not len(s):
                return np.zeros(len(t), dtype=np.int64)
            part = np.where(codes[j] == code, np.minimum(t, e[j]) - s[j], 0)
            return np.where(ok, before[j] + part, 0)

        out[name] = spent(end) - spent(start)
        known += out[name]
    out["unknown"] = (end - start) - known
    return pd.DataFrame(out)


def cpu_runs(switches: pd.DataFrame, first_tsc: int | None = None) -> pd.DataFrame:
    """Intervals of each physical CPU's occupant from SWITCH records.

    Columns ``cpu, domid, vcpu, start_tsc, end_tsc`` (NA: still running at the end); before a
    CPU's first switch its previous occupant ran since ``first_tsc`` (``from_trace_start``).
    """
    cpu = switches["cpu"].to_numpy()
    order = np.argsort(cpu.astype(np.int16), kind="stable")  # radix sort: few CPUs
    key = cpu.astype(np.int64)[order]
    tsc = switches["tsc"].to_numpy()[order]
    prev = ((switches["prev_domid"].to_numpy().astype(np.int64) << 16)
            | switches["prev_vcpu"].to_numpy().astype(np.int64))[order]
    nxt = ((switches["next_domid"].to_numpy().astype(np.int64) << 16)
           | switches["next_vcpu"].to_numpy().astype(np.int64))[order]
    origin = first_tsc if first_tsc is not None else (int(tsc.min()) if len(tsc) else 0)
    iv = _intervals(key, tsc, prev, nxt, origin)
    unit = iv["state"]
    return pd.DataFrame({
        "cpu": key[iv["row"]].astype(np.int16),
        "domid": (unit >> 16).astype(np.int32),
        "vcpu": (unit & 0xFFFF).astype(np.int32),
        "start_tsc": iv["start"],
        "end_tsc": _nullable(iv["end"], iv["end"] >= 0, "Int64"),
        "from_trace_start": iv["from_origin"],
    })


def running_on(runs: pd.DataFrame, cpu: np.ndarray | list[int],
               tsc: np.ndarray | list[int]) -> pd.DataFrame:
    """Who ran on physical CPU ``cpu[i]`` at ``tsc[i]``: ``domid``, ``vcpu`` (NA: unknown)."""
    cpu = np.asarray(cpu, dtype=np.int64)
    tsc = np.asarray(tsc, dtype=np.int64)
    domid = np.zeros(len(tsc), dtype=np.int64)
    vcpu = np.zeros(len(tsc), dtype=np.int64)
    found = np.zeros(len(tsc), dtype=bool)
    big = np.iinfo(np.int64).max
    for c in np.unique(cpu):  # one step per physical CPU, vectorized within it
        rows = runs[runs["cpu"].to_numpy() == c]
        if not len(rows):
            continue
        pick = np.flatnonzero(cpu == c)
        start = rows["start_tsc"].to_numpy(np.int64)
        end = rows["end_tsc"].to_numpy(dtype=np.int64, na_value=big)
        i = np.searchsorted(start, tsc[pick], side="right") - 1
        j = np.maximum(i, 0)
        ok = (i >= 0) & (tsc[pick] < end[j])
        domid[pick] = rows["domid"].to_numpy()[j]
        vcpu[pick] = rows["vcpu"].to_numpy()[j]
        found[pick] = ok
    return pd.DataFrame({"domid": _nullable(domid, found, "Int32"),
                         "vcpu": _nullable(vcpu, found, "Int32")})


def who_ran(runs: pd.DataFrame, cpu: int, start_tsc: int, end_tsc: int) -> pd.DataFrame:
    """Occupants of physical CPU ``cpu`` during ``[start_tsc, end_tsc)``, clipped to it.

    Columns ``domid, vcpu, start_tsc, end_tsc, cycles``; the idle domain is ``0x7fff``. Answers
    "runnable, but who had the CPU?".
    """
    rows = runs[runs["cpu"].to_numpy() == cpu]
    end = rows["end_tsc"].to_numpy(dtype=np.int64, na_value=np.iinfo(np.int64).max)
    start = rows["start_tsc"].to_numpy(np.int64)
    hit = (start < end_tsc) & (end > start_tsc)
    s = np.maximum(start[hit], start_tsc)
    e = np.minimum(end[hit], end_tsc)
    return pd.DataFrame({
        "domid": rows["domid"].to_numpy()[hit],
        "vcpu": rows["vcpu"].to_numpy()[hit],
        "start_tsc": s,
        "end_tsc": e,
        "cycles": e - s,
        "idle": rows["domid"].to_numpy()[hit] == DOMID_IDLE,
    })
