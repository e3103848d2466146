"""A xentrace file as numpy arrays: counts, the kept records, run-state and CPU intervals.

The layer under :mod:`.xentrace` (which makes the pandas tables of the contract from it) and
what ``xenlat trace`` computes its views from without importing pandas: a small trace is
summarized before pandas would have finished loading. Everything here is vectorized; loops
run per window, per CPU or per vCPU, never per record.

:func:`scan_xentrace` → :class:`TraceScan`; :func:`runstate_intervals` and
:func:`occupancy` turn its change records into intervals.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import InputError, TruncatedInput, XenlatWarning, check_readable, warn
from ..groups import factorize, unique
from ..xen_events import EVENT_MASK, EXTRA_MASK, EXTRA_SHIFT, MAX_EXTRA, TRC_LOST_RECORDS
from .xentrace_records import Batch, Clock, Keep, Part, read_batches, walk_windows

ProgressCallback = Callable[[int, int], None]
#: gzip's magic (``capture.GZIP_MAGIC``; not imported from there: the capture readers are not
#: what ``xenlat trace`` loads at start-up).
_GZIP_MAGIC = b"\x1f\x8b"
Columns = dict[str, np.ndarray]
#: What a batch holds in place of columns once they are merged (their memory let go).
_NO_PART = Part({}, np.empty(0, dtype=np.int64))
_NO_EXTRA = np.empty((0, 0), dtype=np.uint32)


@dataclasses.dataclass
class TraceScan:
    """A xentrace file read into arrays (every record counted, some kept in full)."""

    path: Path
    records: int
    """Records Xen wrote (wrap and lost-records included; not the CPU-change records)."""
    windows: int
    cpu_ids: tuple[int, ...]
    truncated: bool
    first_tsc: int | None
    """Smallest TSC of a timestamped record (None when no record has one)."""
    last_tsc: int | None
    counts: Columns
    """Per (cpu, event), sorted: ``cpu`` int16, ``event`` uint32, ``records``, ``bytes`` (empty
    when not tallied)."""
    kept: Columns
    """The kept records merged by TSC (stable; in file order when not ``merged``): ``offset``
    (when asked), ``cpu, header, tsc`` and ``w0`` … (zero beyond a record's words)."""
    lost: Columns
    """Lost-records records: ``cpu, dropped, domid, vcpu, tsc_first, tsc``."""
    runstate: Columns
    """RUNSTATE_CHANGE records in file order (:func:`runstate_intervals` sorts them by unit and
    TSC, the same order as from a merge): ``tsc, cpu, event, w0``."""
    switch: Columns
    """SWITCH records (merged by TSC, or in file order): ``tsc, cpu, w0 .. w3``."""
    cpu_first_tsc: dict[int, int]
    cpu_last_tsc: dict[int, int]
    cpu_longest_gap: dict[int, tuple[int, int]]


def _refuse_compressed(path: Path) -> None:
    """A gzip-compressed trace is named as such (the reader maps the file: it must be
    uncompressed), rather than reported as a file without a CPU-change record."""
    with open(path, "rb") as fh:
        if fh.read(2) == _GZIP_MAGIC:
            raise InputError(path, "gzip-compressed xentrace file: decompress it first "
                                   "(gunzip -k FILE); xenlat maps traces uncompressed", offset=0)


def scan_xentrace(path: str | os.PathLike[str], on_progress: ProgressCallback | None = None,
                  events: Iterable[int] | None = None, words: int = MAX_EXTRA,
                  chunk_words: int = 1 << 23, merged: bool = True,
                  idle_runstates: bool = True, tallies: bool = True, offsets: bool = True
                  ) -> TraceScan:
    """Read a xentrace file: count every record, keep those of ``events`` (all: None) with
    ``words`` of their extra words, and the run-state changes, switches and lost records.
    ``merged``: put the kept records and switches in TSC order (the event table needs it; the
    intervals sort per unit or CPU themselves, so the views skip it; the run-state changes
    stay in file order either way). ``idle_runstates``: False leaves the idle domain's
    run-state changes out of ``runstate``. ``tallies``: False leaves ``counts`` and
    ``cpu_longest_gap`` empty (only the kept records' TSCs are looked up, not every
    record's). ``offsets``: False leaves ``offset`` out of ``kept``.

    Raises ``InputError`` for input that is not a usable trace; warns ``TruncatedInput`` when
    the file ends inside a window (the whole records before are kept).
    """
    path = Path(path)
    ids = None if events is None else unique(np.asarray(list(events), dtype=np.uint32))
    check_readable(path)
    _refuse_compressed(path)
    size = path.stat().st_size
    clock = Clock()
    batches: list[Batch] = []
    with open(path, "rb") as handle:
        win = walk_windows(path, handle, size)
        truncated_at = win.truncated_at
        for batch, cut, _ in read_batches(path, handle, win, size, chunk_words, clock,
                                          Keep(ids, words, idle_runstates, tallies, offsets),
                                          on_progress):
            batches.append(batch)
            if cut is not None:
                truncated_at = cut
    if truncated_at is not None:
        _warn_truncated(path, win.cpu, win.declared_end, size, truncated_at)
    _settle_pending(batches, clock)
    if clock.damaged:
        warn(XenlatWarning(
            f"{path}: {clock.damaged} records carry a time beyond 2**63 TSC cycles (a century "
            "at 3 GHz): damaged; they are put at the trace's end"), stacklevel=2)
    lows = [b.stamped_min for b in batches if b.stamped_min is not None]
    highs = [b.stamped_max for b in batches if b.stamped_max is not None]
    counts = _counts(batches)
    runstate = _merged_part([b.runstate for b in batches], False)  # sorted by unit later
    switch = _merged_part([b.switch for b in batches], merged)
    for b in batches:
        b.runstate = b.switch = _NO_PART  # merged: let them go
    kept, lost = _merged_records(batches, ids, merged)
    return TraceScan(
        path=path, records=sum(b.records for b in batches), windows=len(win.start),
        cpu_ids=tuple(sorted(set(win.cpu.tolist()))), truncated=truncated_at is not None,
        first_tsc=min(lows) if lows else None, last_tsc=max(highs) if highs else None,
        counts=counts, kept=kept, lost=lost, runstate=runstate, switch=switch,
        cpu_first_tsc=dict(sorted(clock.first.items())),
        cpu_last_tsc=dict(sorted(clock.last.items())),
        cpu_longest_gap=dict(sorted(clock.gap.items())) if tallies else {})


def _warn_truncated(path: Path, cpu: np.ndarray, declared_end: int, size: int,
                    truncated_at: int) -> None:
    """The one warning of a file cut short: where, and what was kept."""
    if declared_end > size:
        what = (f"file ends inside a window of CPU {int(cpu[-1])} (the file has {size} "
                f"bytes, the window needs {declared_end})")
    else:
        what = (f"file ends inside a CPU-change record ({size - declared_end} bytes "
                "after the last whole window)")
    warn(TruncatedInput(f"{path}: offset {truncated_at}: {what}; kept the whole "
                                 "records before"), stacklevel=4)


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


def _counts(batches: list[Batch]) -> Columns:
    """Records and bytes per (cpu, event), summed over the batches (counted per header)."""
    counted = [b.counts for b in batches if b.counts is not None]
    cpu, header, n = (np.concatenate([c[k] for c in counted]).astype(t) if counted else
                      np.empty(0, dtype=t) for k, t in enumerate((np.int64, np.uint32, np.int64)))
    words = 1 + ((header >> EXTRA_SHIFT) & EXTRA_MASK) + 2 * (header >> 31)
    event = (header & EVENT_MASK).astype(np.int64)
    codes, uniques = factorize((cpu << 32) | event)
    order = np.argsort(uniques)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    codes = rank[codes]
    uniques = uniques[order]
    return {"cpu": (uniques >> 32).astype(np.int16),
            "event": (uniques & 0xFFFFFFFF).astype(np.uint32),
            "records": np.bincount(codes, weights=n, minlength=len(uniques)).astype(np.int64),
            "bytes": np.bincount(codes, weights=n * 4 * words.astype(np.int64),
                                 minlength=len(uniques)).astype(np.int64)}


def _merged_part(parts: list[Part], merged: bool = True) -> Columns:
    """The parts' columns concatenated and put in TSC order (stable: file order on ties), or
    left in file order."""
    names = list(parts[0].columns) if parts else []
    tsc = np.concatenate([p.columns["tsc"] for p in parts]) if parts else \
        np.empty(0, dtype=np.int64)
    if not merged:
        return {"tsc": tsc, **{name: np.concatenate([p.columns[name] for p in parts])
                               for name in names if name != "tsc"}}
    order = np.argsort(tsc, kind="stable")
    out = {"tsc": tsc.take(order)}
    del tsc
    merge = _Merge([], order)  # each column gathered through one scratch buffer
    for name in names:
        if name != "tsc":
            out[name] = merge.column([p.columns[name] for p in parts],
                                     parts[0].columns[name].dtype)
    return out


class _Merge:
    """Batches' columns concatenated and put in TSC order through one reused scratch buffer.

    Each column is built once in its final order; the scratch (8 bytes per record) is the only
    other memory touched, and each batch column is dropped once merged.
    """

    def __init__(self, batches: list[Batch], order: np.ndarray) -> None:
        self.batches = batches
        self.order = order
        self.scratch = np.empty(len(order) * 8, dtype=np.uint8)

    def column(self, parts: list[np.ndarray], dtype: type | str | np.dtype) -> np.ndarray:
        buf = self.scratch[: len(self.order) * np.dtype(dtype).itemsize].view(dtype)
        if parts:
            np.concatenate(parts, out=buf)
        return buf.take(self.order)

    def take(self, name: str, dtype: type | str) -> np.ndarray:
        parts = [getattr(b, name) for b in self.batches]
        for b in self.batches:
            setattr(b, name, None)  # merged: let it go
        return self.column(parts, dtype)


def _merged_records(batches: list[Batch], ids: np.ndarray | None, merged: bool = True
                    ) -> tuple[Columns, Columns]:
    """The kept records merged by TSC (stable; or in file order), and the lost-records table
    (the batches also hold the lost-records records when ``ids`` leaves them out: dropped
    once read)."""
    parts = [b.tsc for b in batches]
    tsc = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    del parts
    order = np.argsort(tsc, kind="stable") if merged else np.arange(len(tsc))
    merge = _Merge(batches, order)
    kept: Columns = {"tsc": tsc.take(order)}
    del tsc
    kept["header"] = merge.take("header", np.uint32)
    kept["cpu"] = merge.take("cpu", np.int16)
    n_words = batches[0].extra.shape[0] if batches else MAX_EXTRA
    has = max((b.extra_words for b in batches), default=0)
    for k in range(n_words):  # a word no record has: zeros (allocated, never touched)
        kept[f"w{k}"] = merge.column([b.extra[k] for b in batches], np.uint32) if k < has \
            else np.zeros(len(order), dtype=np.uint32)
    for b in batches:
        b.extra = _NO_EXTRA  # merged: let them go
    if batches and batches[0].offset is not None:
        kept["offset"] = merge.take("offset", np.int64)
    del merge, order
    is_lost = (kept["header"] & np.uint32(EVENT_MASK)) == np.uint32(TRC_LOST_RECORDS)
    lost = _lost(kept, is_lost)
    # the batches kept the records of ``ids`` and the lost-records ones: those are left out
    # when ``ids`` does not name them (kept for the lost table only)
    if ids is not None and TRC_LOST_RECORDS not in ids.tolist() and is_lost.any():
        sel = np.flatnonzero(~is_lost)
        kept = {name: column.take(sel) for name, column in kept.items()}
    return kept, lost


def _lost(kept: Columns, is_lost: np.ndarray) -> Columns:
    """Lost-records records: how many were dropped, and the span nothing was seen."""
    r = np.flatnonzero(is_lost)
    n_extra = (kept["header"][r] >> EXTRA_SHIFT) & EXTRA_MASK
    r = r[n_extra >= 4]
    w1 = kept["w1"][r]
    tsc_first = kept["w2"][r].astype(np.uint64) | (kept["w3"][r].astype(np.uint64)
                                                    << np.uint64(32))
    return {"cpu": kept["cpu"][r], "dropped": kept["w0"][r].astype(np.int64),
            "domid": (w1 & 0xFFFF).astype(np.int32),  # w1: domid bits 0-15, vcpu 16-31
            "vcpu": (w1 >> 16).astype(np.int32),
            "tsc_first": tsc_first.view(np.int64), "tsc": kept["tsc"][r]}


# --- intervals from change records -----------------------------------------------------------

def key_time_order(key: np.ndarray, tsc: np.ndarray) -> np.ndarray:
    """The order by key, then TSC (stable: the given order on ties): a radix sort on the few
    keys, then each key's records by TSC (already nearly in order: a CPU's records, or the
    records of a vCPU across the CPUs' windows, come in time order but for the windows'
    overlap, so these sorts mostly find runs)."""
    return _key_time_sorted(key, tsc)[0]


def _key_time_sorted(key: np.ndarray, tsc: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`key_time_order`, and the keys (as int64) and TSCs in that order (made on the
    way: the keys from the distinct ones and their counts, no gather)."""
    order, keys, counts = _key_groups(key)
    tsc = tsc[order]
    ordered = np.repeat(keys.astype(np.int64), counts)
    bounds = np.r_[0, np.cumsum(counts)]
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        seg = tsc[lo:hi]
        if hi - lo > 1 and (seg[1:] < seg[:-1]).any():
            within = np.argsort(seg, kind="stable")
            order[lo:hi] = order[lo:hi][within]
            tsc[lo:hi] = seg[within]
    return order, ordered, tsc


def _key_groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stable order grouping equal keys, groups by key value (a radix sort on few keys),
    the distinct keys ascending and how many of each. The keys' ranks
    are sorted as int8 when fewer than 128 (one radix pass; int16: two). Keys that fit in
    16 bits (:func:`_small_codes`: CPUs, run-state units of small ids) are counted and
    ranked through a table instead of hashed."""
    small = _small_codes(key)
    if small is not None:
        return _small_key_groups(key, small)
    codes, uniques = factorize(key)
    counts = np.bincount(codes, minlength=len(uniques))
    by_value = np.argsort(uniques)
    if len(uniques) >= np.iinfo(np.int16).max:
        return np.argsort(key, kind="stable"), uniques[by_value], counts[by_value]
    narrow = np.int8 if len(uniques) <= np.iinfo(np.int8).max else np.int16
    rank = np.empty(len(uniques), dtype=narrow)
    rank[by_value] = np.arange(len(uniques), dtype=narrow)
    return np.argsort(rank[codes], kind="stable"), uniques[by_value], counts[by_value]


#: Bits of a 32-bit run-state unit (``domid << 16 | vcpu``) above each id's low byte.
_HIGH_BYTES = 0xFF00FF00


def _small_codes(key: np.ndarray) -> np.ndarray | None:
    """The keys as uint16 codes in the same order (one key's code below another's exactly
    when the key is below it), when they fit; None otherwise. Keys of 16 bits or less that
    are not negative are their own codes; 32-bit keys whose values all leave bits 8-15 and
    24-31 clear (run-state units, ``domid << 16 | vcpu``, of ids below 256) lose those bits
    (bits clear in every value: taking them out keeps the order)."""
    if not len(key) or key.dtype.kind not in "iu" or key.dtype.itemsize > 4:
        return None
    if key.dtype.kind == "i" and int(key.min()) < 0:
        return None
    if key.dtype.itemsize <= 2:
        return key.astype(np.uint16, copy=False)
    word = key.view(np.uint32)
    used = int(np.bitwise_or.reduce(word))
    if used < 1 << 16:
        return word.astype(np.uint16)
    if used & _HIGH_BYTES:
        return None
    code = word >> np.uint32(8)
    code &= np.uint32(0xFF00)
    code |= word & np.uint32(0xFF)
    return code.astype(np.uint16)


def _small_key_groups(key: np.ndarray, code: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_key_groups` of keys with order-keeping uint16 ``code`` s: counted by a
    bincount, the codes sorted as uint8 when below 256, else ranked through a table as int8
    (fewer than 128 distinct) and sorted (one radix pass), else sorted as uint16 (two)."""
    per_code = np.bincount(code)
    present = np.flatnonzero(per_code)
    counts = per_code[present]
    if len(per_code) <= 1 << 8:
        order = np.argsort(code.astype(np.uint8), kind="stable")
    elif len(present) <= np.iinfo(np.int8).max:
        rank = np.zeros(len(per_code), dtype=np.int8)
        rank[present] = np.arange(len(present), dtype=np.int8)
        order = np.argsort(rank[code], kind="stable")
    else:
        order = np.argsort(code, kind="stable")
    firsts = np.cumsum(counts) - counts  # each group's first position in the order
    return order, key[order[firsts]], counts


def intervals(changes: Columns, origin: int, carry: tuple[str, ...]) -> Columns:
    """Intervals from change points sorted by (key, tsc): each change closes one, opens one.

    ``changes``: ``key, tsc, before, after`` (the states around each change) and the
    ``carry`` columns (``key`` may be one), one value per change; taken (left empty: each
    column is let go once its intervals are built, so the changes and the intervals are not
    all held at once). The first change of a key also yields the interval before it (state
    ``before``), from ``origin`` (the trace's first TSC). Returns ``state``, ``start``,
    ``end`` (-1: open), ``from_origin``, ``consistent`` and the ``carry`` columns (the
    interval before a first change takes that change's values).
    """
    key, tsc = changes["key"], changes.pop("tsc")
    n = len(key)
    same_next = np.zeros(n, dtype=bool)
    np.equal(key[1:], key[:-1], out=same_next[:-1])
    del key
    if "key" not in carry:
        del changes["key"]
    end = np.full(n, -1, dtype=np.int64)
    np.copyto(end[:-1], tsc[1:], where=same_next[:-1])
    before, after = changes.pop("before"), changes.pop("after")
    consistent = np.ones(n, dtype=bool)
    consistent[:-1] = ~same_next[:-1] | (before[1:] == after[:-1])
    firsts = np.r_[0, np.flatnonzero(~same_next[:-1]) + 1] if n else np.zeros(0, np.int64)
    del same_next
    lead = firsts[tsc[firsts] > origin]
    # Each lead interval goes just before its key's first change (no sort needed).
    m = len(lead)
    out = {"state": _interleave(after, lead, before[lead])}
    del before, after
    out["start"] = _interleave(tsc, lead, np.full(m, origin))
    out["end"] = _interleave(end, lead, tsc[lead])
    del tsc, end
    out["from_origin"] = _interleave(np.zeros(n, dtype=bool), lead, np.ones(m, dtype=bool))
    out["consistent"] = _interleave(consistent, lead, np.ones(m, dtype=bool))
    del consistent
    for name in carry:
        column = changes.pop(name)
        out[name] = _interleave(column, lead, column[lead])
        del column
    return out


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


def runstate_intervals(scan: TraceScan) -> Columns:
    """Run-state intervals per unit (``domid << 16 | vcpu``), sorted by unit then start:
    ``key, state`` (int8: 0..3; other values as written), ``start, end`` (-1: open), ``cpu``
    (of the record that opened it), ``from_origin``, ``consistent``.

    Takes ``scan.runstate`` (left empty: each change column is let go once sorted, so the
    changes and the intervals are not all held at once). The changes may come in TSC or in
    file order: sorted by unit, then TSC, ties in file order, either gives the same."""
    part, scan.runstate = scan.runstate, {}
    ev = part.pop("event", np.empty(0, np.uint32))
    # w0: vcpu in bits 0-15, domid in bits 16-31; the states in the event id
    unit = part.pop("w0", np.empty(0, np.uint32))
    order, key, tsc = _key_time_sorted(unit, part.pop("tsc", np.empty(0, np.int64)))
    del unit
    # bits 4-11 of the event id, a byte: the new state in its low nibble, the old one above
    states = (ev[order] >> np.uint32(4)).astype(np.uint8)
    del ev
    before = (states >> np.uint8(4)).view(np.int8)
    states &= np.uint8(0xF)
    after = states.view(np.int8)
    del states
    changes = {"key": key, "before": before, "after": after, "tsc": tsc}
    del key, before, after, tsc
    changes["cpu"] = part.pop("cpu", np.empty(0, np.int16))[order]
    del order, part
    return intervals(changes, scan.first_tsc or 0, ("key", "cpu"))


def occupancy(cpu: np.ndarray, tsc: np.ndarray, prev: np.ndarray, nxt: np.ndarray,
              first_tsc: int | None) -> Columns:
    """Who held each physical CPU when, from SWITCH records (``prev``/``nxt`` unit keys):
    ``cpu, key, start, end`` (-1: open), ``from_origin`` (before the CPU's first switch)."""
    # a CPU's switches in time order; the CPUs and TSCs in that order made on the way
    order, key, tsc = _key_time_sorted(cpu.astype(np.int16, copy=False), tsc)
    cpu = key.astype(np.int16)
    origin = first_tsc if first_tsc is not None else (int(tsc.min()) if len(tsc) else 0)
    iv = intervals({"key": key, "tsc": tsc, "before": prev[order],
                    "after": nxt[order], "cpu": cpu}, origin, ("cpu",))
    return {"cpu": iv["cpu"], "key": iv["state"], "start": iv["start"], "end": iv["end"],
            "from_origin": iv["from_origin"]}
