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
import os
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..allocator import give_back_memory
from ..background import Background
from ..groups import factorize
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
from .xentrace_scan import TraceScan, occupancy, runstate_intervals, scan_xentrace

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
                                              "records": np.empty(0, np.int64),
                                              "bytes": np.empty(0, np.int64)}))
    """Records per physical CPU and event id, every record counted (those ``events=`` left
    out of the event table too): ``cpu, event, records, bytes`` (the records' length, header
    and TSC included), sorted by cpu and event. Empty unless read with ``tallies=True``."""
    cpu_first_tsc: dict[int, int] = dataclasses.field(default_factory=dict)
    """First own TSC of each physical CPU that has one."""
    cpu_last_tsc: dict[int, int] = dataclasses.field(default_factory=dict)
    """TSC of each physical CPU's last record (its own, or carried from the one before)."""
    cpu_longest_gap: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """Longest stretch without a record on each physical CPU: the TSCs of the records
    before and after it (a CPU that later stops has a longer silence than any of these).
    Empty unless read with ``tallies=True``."""

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


#: Columns :func:`_decode` adds (it needs every extra word), with their dtypes.
_DECODED_TYPES: dict[str, type] = {
    "domid": np.int32, "vcpu": np.int32, "old_state": np.int8, "new_state": np.int8,
    "next_domid": np.int32, "next_vcpu": np.int32, "ran_ns": np.int64, "wait_ns": np.int64,
    "irq": np.int32, "hypercall": np.int32, "gnttab_cmd": np.int32, "count": np.int64}
_DECODED = tuple(_DECODED_TYPES)


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
        self.values: np.ndarray = np.zeros(n, dtype=dtype)
        self.na: np.ndarray = np.ones(n, dtype=bool)

    def put(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.values[rows] = values
        self.na[rows] = False

    def array(self) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(self.values, self.na)


class _Unwanted(_Column):
    """A decoded column the caller did not ask for: its values are dropped."""

    def __init__(self) -> None:
        pass

    def put(self, rows: np.ndarray, values: np.ndarray) -> None:
        pass


class _Kinds:
    """The rows of each kind of event (one pass per kind present, found when first asked)."""

    def __init__(self, codes: np.ndarray, uniques: np.ndarray, n_extra: np.ndarray) -> None:
        kind_of = np.array([_kind(int(e)) for e in uniques], dtype=np.int8)
        self.kind = kind_of[codes] if len(codes) else np.zeros(0, dtype=np.int8)
        self.present = set(kind_of.tolist())
        self.found: dict[int, np.ndarray] = {}
        self.n_extra = n_extra

    @classmethod
    def of_ids(cls, event: np.ndarray, ids: Iterable[int], n_extra: np.ndarray) -> _Kinds:
        """The kinds of a table whose events are among a few ``ids``: a comparison per id
        (no factorization of the column: the analyzer's table has three ids)."""
        masks: dict[int, np.ndarray] = {}
        for e in sorted(set(ids)):
            mask = event == np.uint32(e)
            k = _kind(e)
            if k in masks:
                masks[k] |= mask
            else:
                masks[k] = mask
        kinds = cls(np.zeros(0, dtype=np.int64), np.empty(0, dtype=np.uint32), n_extra)
        kinds.found = {k: np.flatnonzero(mask) for k, mask in masks.items()}
        kinds.present = set(kinds.found)
        return kinds

    def rows(self, k: int, min_extra: int = 0, exact: int | None = None) -> np.ndarray:
        """Rows of kind ``k`` (ascending) with at least ``min_extra`` extra words (or
        ``exact``)."""
        r = self.found.get(k)
        if r is None:
            r = np.flatnonzero(self.kind == k) if k in self.present else \
                np.empty(0, dtype=np.int64)
            self.found[k] = r
        if exact is not None:
            return r[self.n_extra[r] == exact]
        return r[self.n_extra[r] >= min_extra]


_Decoded = dict[str, _Column]


def _decode(columns: dict[str, object], event: np.ndarray, kinds: _Kinds,
            n_extra: np.ndarray, w: list[np.ndarray], wanted: Iterable[str] = _DECODED) -> None:
    """Add the decoded columns (domid, vcpu, states, switch target, irq, hypercall …) that
    are ``wanted``.

    Only the rows of the events concerned are touched: rows are grouped by kind once.
    """
    wanted = set(wanted)
    out = {name: _Column(len(event), dtype) if name in wanted else _Unwanted()
           for name, dtype in _DECODED_TYPES.items()}
    _decode_units(out, kinds, event, w)
    _decode_switches(out, kinds, w)
    _decode_lost_grant_irq(out, kinds, w)
    _decode_hypercalls(out, kinds, n_extra, w)
    for name in _DECODED:
        if name in wanted:
            columns[name] = out[name].array()


def _decode_units(out: _Decoded, kinds: _Kinds, event: np.ndarray, w: list[np.ndarray]
                  ) -> None:
    """Run-state changes and continue_running (w0: vcpu in bits 0-15, domid in bits
    16-31; the states in the event id), wake/block/sleep/yield ([domid, vcpu])."""
    for k in (_K_UNIT, _K_RUNSTATE):
        r = kinds.rows(k, 1)
        out["domid"].put(r, w[0][r] >> 16)
        out["vcpu"].put(r, w[0][r] & 0xFFFF)
    r = kinds.rows(_K_RUNSTATE, 1)
    out["old_state"].put(r, (event[r] >> 8) & 0xF)
    out["new_state"].put(r, (event[r] >> 4) & 0xF)
    r = kinds.rows(_K_PAIR, 2)
    out["domid"].put(r, w[0][r])
    out["vcpu"].put(r, w[1][r])


def _decode_switches(out: _Decoded, kinds: _Kinds, w: list[np.ndarray]) -> None:
    """SWITCH ([prev domid, prev vcpu, next domid, next vcpu]) and its INFPREV/INFNEXT."""
    r = kinds.rows(_K_SWITCH, 4)
    out["domid"].put(r, w[0][r])
    out["vcpu"].put(r, w[1][r])
    out["next_domid"].put(r, w[2][r])
    out["next_vcpu"].put(r, w[3][r])
    # SWITCH_INFPREV: [domid, vcpu, ran_ns]; Xen <= 4.7: [domid, ran_ns].
    # SWITCH_INFNEXT: [domid, vcpu, wait_ns, slice]; Xen <= 4.7: [domid, wait_ns, slice].
    # The old layout is told by its exact word count; the new one has a word more.
    for k, ns, old_words in ((_K_INFPREV, out["ran_ns"], 2), (_K_INFNEXT, out["wait_ns"], 3)):
        r = kinds.rows(k, exact=old_words)
        out["domid"].put(r, w[0][r])
        ns.put(r, w[1][r])
        r = kinds.rows(k, old_words + 1)
        out["domid"].put(r, w[0][r])
        out["vcpu"].put(r, w[1][r])
        ns.put(r, w[2][r])


def _decode_lost_grant_irq(out: _Decoded, kinds: _Kinds, w: list[np.ndarray]) -> None:
    """Lost records (w1: domid in bits 0-15, vcpu in bits 16-31), grant map/unmap/transfer
    (w0: domid), handled IRQs (w0: irq)."""
    r = kinds.rows(_K_LOST, 2)
    out["domid"].put(r, w[1][r] & 0xFFFF)
    out["vcpu"].put(r, w[1][r] >> 16)
    r = kinds.rows(_K_GRANT, 1)
    out["domid"].put(r, w[0][r])
    r = kinds.rows(_K_IRQ, 1)
    out["irq"].put(r, w[0][r])


def _decode_hypercalls(out: _Decoded, kinds: _Kinds, n_extra: np.ndarray,
                       w: list[np.ndarray]) -> None:
    """PV_HYPERCALL_V2: w0 = op | 2 presence bits per argument from bit 20 (1: one 32-bit
    word, 2: a 64-bit value in two words), then the present arguments in order; for the
    grant-table op its command (argument 0) and count (argument 2)."""
    r = kinds.rows(_K_HCALL, 1)
    op = w[0][r] & HYPERCALL_OP_MASK
    out["hypercall"].put(r, op)
    r = r[op == HYPERCALL_GRANT_TABLE_OP]
    flags = w[0][r]  # uint32 arithmetic throughout: small values, a quarter of int64's bytes
    a0, a1, a2 = (flags >> 20) & 3, (flags >> 22) & 3, (flags >> 24) & 3
    ne = n_extra[r]
    ok = (a0 != 0) & (ne >= 2)
    out["gnttab_cmd"].put(r[ok], w[1][r[ok]])
    at = a0 + a1
    at += 1  # word index of argument 2 (the count)
    ok = (a2 != 0) & (at < ne)
    r, at = r[ok], at[ok]
    count = np.zeros(len(r), dtype=np.uint32)
    for k in range(1, MAX_EXTRA):  # the count's word: a gather per position it takes
        sel = np.flatnonzero(at == k)
        if len(sel):
            count[sel] = w[k][r[sel]]
    out["count"].put(r, count)


def _names(codes: np.ndarray, uniques: np.ndarray) -> pd.Categorical:
    """Event names as a categorical (one name lookup per distinct id)."""
    names = [event_name(int(i)) for i in uniques]
    categories = sorted(set(names))
    code_of = {name: k for k, name in enumerate(categories)}
    name_code = np.array([code_of[x] for x in names], dtype=np.int32)
    return pd.Categorical.from_codes(name_code[codes] if len(codes) else codes.astype(np.int32),
                                     categories=categories)


#: Up to this many event ids kept, the decoder finds each kind's rows by comparing the ids
#: (beyond, or with names: one factorization of the event column).
_FEW_IDS = 16


def _events_table(kept: dict[str, np.ndarray], keep_columns: tuple[str, ...] | None,
                  ids: tuple[int, ...] | None = None) -> pd.DataFrame:
    """The event table of the contract from the scan's kept records (of the events ``ids``:
    None, any): names and decoded columns (only those asked for are made)."""
    wanted = set(keep_columns) if keep_columns is not None else None

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    header = kept["header"]
    event = header & EVENT_MASK
    n_extra = ((header >> EXTRA_SHIFT) & EXTRA_MASK).astype(np.uint8)
    w = [kept[name] for name in _WORD_COLUMNS if name in kept]
    columns: dict[str, object] = {"cpu": kept["cpu"], "tsc": kept["tsc"], "event": event}
    coded = None
    if want("name") or ids is None or len(ids) > _FEW_IDS:
        coded = factorize(event)
        if want("name"):
            columns["name"] = _names(*coded)
    columns["n_extra"] = n_extra
    for col, values in zip(_WORD_COLUMNS, w, strict=False):
        columns[col] = values
    decoded = [name for name in _DECODED if want(name)]
    if decoded:
        kinds = _Kinds(*coded, n_extra) if coded is not None else \
            _Kinds.of_ids(event, ids or (), n_extra)
        _decode(columns, event, kinds, n_extra, w, decoded)
    if want("timestamped"):
        columns["timestamped"] = (header >> 31).astype(bool)
    if "offset" in kept:
        columns["offset"] = kept["offset"]
    if keep_columns is not None:
        columns = {name: columns[name] for name in keep_columns}
    return pd.DataFrame(columns, copy=False)


def _lost_table(lost: dict[str, np.ndarray]) -> pd.DataFrame:
    """Lost-records records: how many were dropped, and the span nothing was seen."""
    valid = np.ones(len(lost["cpu"]), dtype=bool)
    return pd.DataFrame({
        "cpu": lost["cpu"],
        "dropped": lost["dropped"],
        "domid": _nullable(lost["domid"], valid, "Int32"),  # w1: domid bits 0-15, vcpu 16-31
        "vcpu": _nullable(lost["vcpu"], valid, "Int32"),
        "tsc_first": lost["tsc_first"],
        "tsc": lost["tsc"],
    })


def _switches_table(part: dict[str, np.ndarray]) -> pd.DataFrame:
    """SWITCH records: which scheduling unit left and which took each physical CPU (the scan
    merged them by TSC)."""
    columns = {"cpu": part.get("cpu", np.empty(0, np.int16)),
               "tsc": part.get("tsc", np.empty(0, np.int64))}
    for k, name in enumerate(("prev_domid", "prev_vcpu", "next_domid", "next_vcpu")):
        # the words as int32 (what astype gives, without the copy)
        columns[name] = part.get(f"w{k}", np.empty(0, np.uint32)).view(np.int32)
    return pd.DataFrame(columns, copy=False)


def _runstates_table(scan: TraceScan) -> pd.DataFrame:
    """Run-state intervals from RUNSTATE_CHANGE records (vectorized, no loop per vCPU; each
    interval column let go once it is the table's)."""
    iv = runstate_intervals(scan)
    key = iv.pop("key")
    columns: dict[str, object] = {"domid": (key >> 16).astype(np.int32),
                                  "vcpu": (key & 0xFFFF).astype(np.int32)}
    del key
    state = iv.pop("state")
    codes = np.where(state < len(RUNSTATES), state, np.int8(-1)).astype(np.int8, copy=False)
    del state
    columns["state"] = pd.Categorical.from_codes(codes, dtype=RUNSTATE_DTYPE)
    columns["start_tsc"] = iv.pop("start")
    end = iv.pop("end")
    columns["end_tsc"] = _nullable(end, end >= 0, "Int64")
    columns["cpu"] = iv.pop("cpu")
    columns["from_trace_start"] = iv.pop("from_origin")
    columns["consistent"] = iv.pop("consistent")
    frame = pd.DataFrame(columns, copy=False)  # not consolidated into blocks: no copy
    frame.attrs["first_tsc"] = scan.first_tsc
    frame.attrs["last_tsc"] = scan.last_tsc
    return frame


def _words(columns: Iterable[str] | None) -> int:
    """Extra words the scan keeps per record for these event-table columns."""
    if columns is None or set(columns) & set(_DECODED):
        return MAX_EXTRA
    return max((k + 1 for k, name in enumerate(_WORD_COLUMNS) if name in columns), default=0)


def read_xentrace(path: str | os.PathLike[str],
                  on_progress: ProgressCallback | None = None,
                  events: Iterable[int] | None = None,
                  columns: Iterable[str] | None = None,
                  idle_runstates: bool = True,
                  tallies: bool = False) -> XenTrace:
    """Read a xentrace file into an event table, lost records and the run-state timeline.

    ``events``: keep only records of these event ids in the event table (the lost-records,
    run-state and switch tables are still whole; ``records`` still counts every record, and
    so does ``event_counts`` with ``tallies``). The analyzer needs a few ids of millions of
    records: the others never get columns. ``columns``: keep only these columns of the event
    table (memory).
    ``idle_runstates``: False leaves the idle domain's vCPUs out of ``runstates`` (the
    analyzer never asks about them, and on a busy host they are a third of the intervals);
    ``switches`` and ``cpu_runs`` still name them. ``tallies``: also fill ``event_counts`` and
    ``cpu_longest_gap`` (every record's TSC read for them; nothing in the analysis asks).
    Raises ``InputError`` for input that is not a usable trace; warns ``TruncatedInput`` when
    the file ends inside a window (the whole records before are kept).
    """
    columns = None if columns is None else tuple(columns)
    events = None if events is None else tuple(events)
    scan = scan_xentrace(path, on_progress, events, _words(columns), CHUNK_WORDS,
                         idle_runstates=idle_runstates, tallies=tallies,
                         offsets=columns is None or "offset" in columns)
    give_back_memory()  # the spans' temporaries: freed, but resident until given back
    # the run states (sorts, the longest step) in a thread while the other tables are made
    runstates_aside = Background(lambda: _runstates_table(scan))
    switches = _switches_table(scan.switch)
    scan.switch = {}
    table = _events_table(scan.kept, columns, events)
    scan.kept = {}
    runstates = runstates_aside.result()
    give_back_memory()
    return XenTrace(
        path=scan.path,
        events=table,
        lost=_lost_table(scan.lost),
        runstates=runstates,
        switches=switches,
        records=scan.records,
        windows=scan.windows,
        cpu_ids=scan.cpu_ids,
        truncated=scan.truncated,
        first_tsc=scan.first_tsc,
        last_tsc=scan.last_tsc,
        event_counts=pd.DataFrame(scan.counts),
        cpu_first_tsc=scan.cpu_first_tsc,
        cpu_last_tsc=scan.cpu_last_tsc,
        cpu_longest_gap=scan.cpu_longest_gap,
    )


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
    def unit(domid: str, vcpu: str) -> np.ndarray:
        return ((switches[domid].to_numpy().astype(np.int64) << 16)
                | switches[vcpu].to_numpy().astype(np.int64))

    iv = occupancy(switches["cpu"].to_numpy(), switches["tsc"].to_numpy(),
                   unit("prev_domid", "prev_vcpu"), unit("next_domid", "next_vcpu"), first_tsc)
    return pd.DataFrame({
        "cpu": iv["cpu"],
        "domid": (iv["key"] >> 16).astype(np.int32),
        "vcpu": (iv["key"] & 0xFFFF).astype(np.int32),
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
