"""The records of a xentrace file, found without a Python step per record, in bounded chunks.

Layout (``docs/xentrace-format.md``): windows, each a CPU-change record (``0x2001f003``,
``int32 cpu``, ``uint32 window_size``) and ``window_size`` bytes of whole records of that CPU.
A record is a header word (event id, ``N`` extra words, ``C`` timestamp flag), an optional
64-bit TSC and ``N`` words, so its length is in its first word::

    record:  | hdr | tsc_lo tsc_hi (if C) | w0 .. w(N-1) |      length = 1 + 2C + N words

Only a walk from a window's start tells where its records begin (an extra word may look like
any header). The windows are walked together, one record of every window per step: each step
is a few numpy operations over all windows, so the Python loop runs as many times as the
longest window has records (a few thousand), not once per record, and the work is one gather
per record rather than per word. The window list comes first (one step per window, the
CPU-change records chain by their sizes); windows are then read in spans of at most
``chunk_words`` words (a bigger window alone), so memory is bounded by the span.

Public to the reader package: :func:`walk_windows`, :func:`read_batches` (spans → :class:`Batch`
of columns, file order) and :class:`Clock` (records without a TSC take their CPU's last).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..background import Background
from ..errors import InputError
from ..groups import factorize, unique
from ..xen_events import (
    CPU_CHANGE_HEADER,
    CYCLES_FLAG,
    DOMID_IDLE,
    EVENT_MASK,
    EXTRA_MASK,
    EXTRA_SHIFT,
    MAX_CPU,
    MAX_EXTRA,
    RUNSTATE_CHANGE_MASK,
    TRC_LOST_RECORDS,
    TRC_SCHED_RUNSTATE_CHANGE,
    TRC_SCHED_SWITCH,
)

ProgressCallback = Callable[[int, int], None]

#: The CPU-change record: header, int32 cpu, uint32 window_size (little-endian).
_CPU_CHANGE = struct.Struct("<IiI")
_CPU_CHANGE_WORDS = _CPU_CHANGE.size // 4
#: Record length in words by the header's top nibble ``C << 3 | N``: ``1 + 2C + N``.
_LENGTH = np.array([1 + 2 * (nib >> 3) + (nib & EXTRA_MASK) for nib in range(16)],
                   dtype=np.int64)


@dataclasses.dataclass
class Windows:
    """The CPU-change records, followed from offset 0 by their sizes."""

    start: np.ndarray
    """Word index of each CPU-change record (int64)."""
    end: np.ndarray
    """Word index where each window's records end (the last may lie past the file's end)."""
    cpu: np.ndarray
    """Physical CPU of each window (int16)."""
    declared_end: int
    """Byte offset where the last window claims to end."""
    truncated_at: int | None
    """Byte offset where whole data ends, when the file is cut short."""
    problem: InputError | None
    """A bad CPU-change record after the good ones (raised once the windows before it were
    read: a record running past its window is the likelier cause)."""


def walk_windows(path: Path, handle: io.BufferedReader, size: int) -> Windows:
    """Follow the CPU-change records (one Python step per window, not per record). Each is
    read on its own (``os.pread``): mapping the file would count every page touched, one or
    two per window, in the process's peak memory. The step does only the read and one test
    of the record (a bad one is told apart after the loop)."""
    fd = handle.fileno()
    if size < _CPU_CHANGE.size:
        raise InputError(path, f"not a xentrace file: {size} bytes, shorter than a CPU-change "
                         "record", offset=0)
    offsets: list[int] = []
    sizes: list[int] = []
    cpus: list[int] = []
    pread, unpack, record = os.pread, _CPU_CHANGE.unpack, _CPU_CHANGE.size
    last = size - record  # a CPU-change record from here on is whole
    off = 0
    truncated_at = None
    problem = None
    while off <= last:
        header, cpu, window_size = unpack(pread(fd, record, off))
        if (header != CPU_CHANGE_HEADER or not 0 <= cpu <= MAX_CPU or window_size % 4
                or window_size > size):
            problem = _window_problem(path, off, header, cpu, window_size, size)
            break
        offsets.append(off)
        sizes.append(window_size)
        cpus.append(cpu)
        off += record + window_size
    else:
        if off > size:  # the last window runs past the file's end
            truncated_at = size - size % 4
        elif off < size:  # a CPU-change record cut short
            truncated_at = off
    start = np.asarray(offsets, dtype=np.int64) // 4
    return Windows(start, start + _CPU_CHANGE_WORDS + np.asarray(sizes, dtype=np.int64) // 4,
                   np.asarray(cpus, dtype=np.int16), off, truncated_at, problem)


def _window_problem(path: Path, off: int, header: int, cpu: int, window_size: int,
                    size: int) -> InputError:
    """What is wrong with the CPU-change record at ``off`` (raised at once when it is the
    first: then the file is not a trace)."""
    if header != CPU_CHANGE_HEADER:
        if off == 0:
            raise InputError(path, f"not a xentrace file: no CPU-change record at offset 0 "
                             f"(header 0x{header:08x}, expected 0x{CPU_CHANGE_HEADER:08x}); "
                             "it might be Xen <= 3.1 fixed-size records, or not a trace",
                             offset=0)
        return InputError(path, f"expected a CPU-change record (0x{CPU_CHANGE_HEADER:08x}) "
                          f"after the previous window, found header 0x{header:08x}", offset=off)
    if not 0 <= cpu <= MAX_CPU:
        return InputError(path, f"CPU-change record names CPU {cpu}, out of range "
                          f"0..{MAX_CPU}", offset=off + 4)
    if window_size % 4:
        return InputError(path, f"window size {window_size} is not a multiple of 4 bytes",
                          offset=off + 8)
    return InputError(path, f"window size {window_size} bytes is larger than the file "
                      f"({size} bytes): a corrupt CPU-change record, or a file cut far too "
                      "short", offset=off + 8)


# --- one span of windows: where the records start ----------------------------------------------

def _spans(win: Windows, limit: int) -> Iterator[tuple[int, int]]:
    """Consecutive windows ``[first, stop)`` of at most ``limit`` words (a bigger one alone)."""
    first, n = 0, len(win.start)
    ends = win.end.tolist()
    starts = win.start.tolist()
    while first < n:
        stop = first + 1
        while stop < n and ends[stop] - starts[first] <= limit:
            stop += 1
        yield first, stop
        first = stop


#: When this few windows are left in the step-per-record walk, each is finished alone by
#: pointer doubling (the walk's per-step cost would otherwise be paid per record of the
#: longest window: a small trace has few windows, some long).
_FEW_LANES = 8
#: Doubling levels of that walk: its Python loop advances 2**_LEVELS records per step.
_LEVELS = 5


#: A header's shift to its length nibble, as the headers' type.
_SHIFT = np.uint32(EXTRA_SHIFT)

#: Steps of the walk between two compactions of its windows (a finished window waits at its
#: end meanwhile: a few wasted steps instead of a test and a compaction every step).
_BURST = 4


def _walk_span(padded: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               marks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Start of every record of each window, all windows a record per step.

    ``starts``/``ends``: each window's first record and end (word positions in ``padded``,
    ends clipped to the words present; ``padded`` goes on past the last end). ``marks``: a
    bool buffer to mark the starts in, reused from span to span when large enough (a fresh
    one per span costs a page fault per 4 KiB of the span's words: more than clearing it).
    Returns the record starts, sorted, and per window the start of a record that runs past
    the window's end (-1: none; that record is not kept).
    """
    size = int(ends.max()) + 1 if len(ends) else 1
    if marks is not None and len(marks) >= size:
        mark = marks[:size]
        mark.fill(False)
    else:
        mark = np.zeros(size, dtype=bool)
    lanes = np.flatnonzero(starts < ends)
    pos, end = starts[lanes].copy(), ends[lanes]
    while len(lanes) > _FEW_LANES:
        for _ in range(_BURST):
            mark[pos] = True
            # take: no index conversion; the shift by a uint32 (a Python int costs numpy a
            # value-based promotion per call: a third of this line's time)
            pos += _LENGTH.take(padded.take(pos) >> _SHIFT)
            np.minimum(pos, end, out=pos)  # a finished window (or an overrun) waits at its end
        going = pos < end
        if not going.all():
            lanes, pos, end = lanes[going], pos[going], end[going]
    for lo, hi in zip(pos.tolist(), end.tolist(), strict=True):
        mark[_chain(padded, lo, hi)] = True
    mark[ends] = False  # where finished windows waited: the next CPU-change record, not one
    nodes = np.flatnonzero(mark)
    # A window's last record must end at the window's end; else it runs past it.
    overrun = np.full(len(starts), -1, dtype=np.int64)
    has = np.flatnonzero(starts < ends)
    last = nodes[np.searchsorted(nodes, ends[has]) - 1]
    past = last + _LENGTH[padded[last] >> EXTRA_SHIFT] != ends[has]
    overrun[has[past]] = last[past]
    if past.any():
        nodes = nodes[~np.isin(nodes, last[past])]
    return nodes, overrun


def _chain(words: np.ndarray, start: int, end: int) -> np.ndarray:
    """The record starts of one window's ``words[start:end]`` by pointer doubling: every
    word's would-be successor, successors of successors (2, 4 … 2**_LEVELS records on), a
    Python step per 2**_LEVELS records, then the levels expand the steps back to every record
    (a last record running past ``end`` included: the caller checks it)."""
    seg = words[start:end]
    n = len(seg)
    nxt = np.empty(n + 1, dtype=np.int64)
    np.minimum(np.arange(n) + _LENGTH[seg >> EXTRA_SHIFT], n, out=nxt[:n])
    nxt[n] = n
    levels = [nxt]
    for _ in range(_LEVELS):
        levels.append(levels[-1][levels[-1]])
    top = levels[-1].tolist()
    steps = []
    at = 0
    while at < n:
        steps.append(at)
        at = top[at]
    nodes = np.asarray(steps, dtype=np.int64)
    for level in reversed(levels[:-1]):  # between two steps 2**(k+1) apart: the one 2**k on
        both = np.empty(2 * len(nodes), dtype=np.int64)
        both[0::2] = nodes
        both[1::2] = level[nodes]
        nodes = both[: np.searchsorted(both, n)]
    return nodes + start


# --- columns of a span's records ----------------------------------------------------------------

@dataclasses.dataclass
class Part:
    """Narrow columns of the records of one kind (those the derived tables are built from)."""

    columns: dict[str, np.ndarray]
    pending: np.ndarray
    """Rows before their CPU's first TSC (their ``tsc`` is fixed once the file is read)."""


@dataclasses.dataclass
class Batch:
    """Records of one span, in file order: every record counted, the kept ones in columns."""

    offset: np.ndarray | None  # byte offset, int64 (None: not kept)
    cpu: np.ndarray  # int16
    header: np.ndarray  # uint32
    tsc: np.ndarray  # int64: own TSC, else the CPU's last (pending rows: fixed at the end)
    extra: np.ndarray  # (words, n) uint32, zero beyond N (one row per word: contiguous columns)
    extra_words: int  # rows of ``extra`` that may hold a non-zero word (the largest N kept)
    pending: np.ndarray  # rows before their CPU's first TSC
    records: int  # records of the span, kept or not
    stamped_min: int | None  # smallest / largest own TSC among all the span's records
    stamped_max: int | None
    runstate: Part  # RUNSTATE_CHANGE records (N >= 1): tsc, cpu, event, w0
    switch: Part  # SWITCH records (N >= 4): tsc, cpu, w0 .. w3
    counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (cpu, header, records) of the
    # span (None: not counted)


#: Where a damaged TSC (beyond 2**63) is put: past any real trace, far enough below 2**63
#: that a float of it converts back to int64.
DAMAGED_TSC = 1 << 62


class Clock:
    """Per-CPU TSC carried across windows and spans (records without one take the last)."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}
        """Last TSC seen on each CPU (at the end of the file: its last record's)."""
        self.first: dict[int, int] = {}
        """First own TSC of each CPU."""
        self.gap: dict[int, tuple[int, int]] = {}
        """Longest stretch without a record on each CPU: TSCs of the records around it."""
        self.damaged = 0
        """Records whose own TSC is beyond 2**63 cycles (:func:`_own_tscs`)."""

    def carry(self, seg_cpu: np.ndarray, leads: _Leads, gaps: bool = True
              ) -> tuple[np.ndarray, list[int]]:
        """Give each window's unstamped first record its CPU's TSC from before the window.

        Returns the TSC of each window's first record (its own, the carried one, or when the
        CPU has had none yet whatever its words held) and the windows whose first record has
        no TSC yet (the CPU has had none). ``gaps``: also notes the stretch between a CPU's
        previous window and this one, a Python step per window on plain ints; else
        :meth:`_carry_per_cpu` gives the same, vectorized.
        """
        if not len(seg_cpu):
            return np.empty(0, dtype=np.int64), []
        if not gaps:
            return self._carry_per_cpu(seg_cpu, leads)
        value = leads.first.copy()
        first = leads.first.tolist()
        second = leads.second.tolist()
        last = leads.last.tolist()
        single = leads.single.tolist()
        unresolved: list[int] = []
        carried: list[int] = []
        carried_values: list[int] = []
        for k, (cpu, stamped) in enumerate(zip(seg_cpu.tolist(), leads.stamped.tolist(),
                                               strict=True)):
            before = self.last.get(cpu)
            now, end = first[k], last[k]
            if not stamped:
                if before is None:
                    unresolved.append(k)
                    if single[k]:
                        continue  # nothing stamped in this window either
                    now = second[k]
                else:
                    now = before
                    carried.append(k)
                    carried_values.append(before)
                    if single[k]:
                        end = before
            if cpu not in self.first:
                self.first[cpu] = now
            if before is not None:
                self.note_gap(cpu, before, now)
            self.last[cpu] = end
        if carried:
            value[carried] = carried_values
        return value, unresolved

    def _carry_per_cpu(self, seg_cpu: np.ndarray, leads: _Leads
                       ) -> tuple[np.ndarray, list[int]]:
        """:meth:`carry` without the stretches: a step per CPU, its windows at once. A
        window's end TSC is its last stamped record's, or (no record stamped but maybe the
        first, which is not) the end carried from the CPU's window before: forward-filled
        from the windows that have one. The TSC before a window is the end of the one
        before; a window without any TSC, before the CPU has had one, is left out."""
        value = leads.first.copy()
        unresolved = []
        own_end = leads.stamped | ~leads.single
        cpus, slot = unique(seg_cpu, return_inverse=True)
        for j, cpu in enumerate(cpus.tolist()):
            mine = np.flatnonzero(slot == j)
            prior = self.last.get(cpu)
            at = np.where(own_end[mine], np.arange(len(mine)), -1)
            np.maximum.accumulate(at, out=at)  # each window's last with an end of its own
            end = leads.last[mine][np.maximum(at, 0)]
            if prior is not None:
                end[at < 0] = prior
            has_end = (at >= 0) | (prior is not None)
            before = np.r_[prior if prior is not None else 0, end[:-1]]
            has_before = np.r_[prior is not None, has_end[:-1]]
            stamped = leads.stamped[mine]
            carried = ~stamped & has_before
            value[mine[carried]] = before[carried]
            lone = ~stamped & ~has_before
            unresolved.append(mine[lone])
            if cpu not in self.first:
                now = np.where(stamped, leads.first[mine], leads.second[mine])
                now[carried] = before[carried]
                counted = np.flatnonzero(~(lone & leads.single[mine]))
                if len(counted):
                    self.first[cpu] = int(now[counted[0]])
            if has_end[-1]:
                self.last[cpu] = int(end[-1])
        return value, np.sort(np.concatenate(unresolved)).tolist()

    def note_gap(self, cpu: int, start: int, end: int) -> None:
        """Keep ``start..end`` as the CPU's longest stretch without records if it is."""
        known = self.gap.get(cpu)
        if known is None or end - start > known[1] - known[0]:
            self.gap[cpu] = (start, end)

    def inner_gaps(self, lead: np.ndarray, seg_cpu: np.ndarray, value: np.ndarray,
                   unresolved: list[int]) -> None:
        """Note each window's longest stretch between two of its records (vectorized: one
        difference and one ``maximum.reduceat`` over the anchors, then a step per CPU: its
        first window with the widest stretch, kept if wider than the CPU's known one, as a
        step per window in order would keep)."""
        if len(value) < 2:
            return
        step = np.empty(len(value), dtype=np.int64)
        np.subtract(value[1:], value[:-1], out=step[:-1])
        step[-1] = -1
        step[lead[1:] - 1] = -1  # from one window's last anchor to the next window's first
        step[lead[unresolved]] = -1  # an unresolved first record has no TSC
        widest = np.maximum.reduceat(step, lead)
        cpus, slot = unique(seg_cpu, return_inverse=True)
        for j, cpu in enumerate(cpus.tolist()):
            mine = np.flatnonzero(slot == j)
            k = int(mine[np.argmax(widest[mine])])
            wide = int(widest[k])
            known = self.gap.get(cpu)
            if wide > 0 and (known is None or wide > known[1] - known[0]):
                end = int(lead[k + 1]) if k + 1 < len(lead) else len(value)
                at = int(lead[k]) + int(np.argmax(step[lead[k]:end]))
                self.gap[cpu] = (int(value[at]), int(value[at + 1]))


@dataclasses.dataclass
class Keep:
    """Which records get full columns: all (``ids`` None) or those ids and lost records."""

    ids: np.ndarray | None = None
    words: int = MAX_EXTRA
    """Extra words to keep per record (the others are never read)."""
    idle_runstates: bool = True
    """The idle domain's run-state changes go to the run-state part too."""
    tallies: bool = True
    """Count the records per CPU and header and note each CPU's longest stretch without
    records (every record's TSC read for it); else only what the kept records need."""
    offsets: bool = True
    """Keep each kept record's byte offset in the file."""


def _tsc_view(padded: np.ndarray) -> np.ndarray:
    """The 64-bit TSC that would follow a header at each word of ``padded`` (little-endian
    uint32 words): an int64 view starting at the second word with a stride of one word, so
    that ``_tsc_view(padded)[at]`` is the TSC of the records at ``at`` in one gather (the two
    words overlap from one element to the next; low word first, as the file has them)::

        padded:  | hdr | tsc_lo | tsc_hi | w0 | ...
        view[0]:         <--- int64 --->
        view[1]:                  <--- int64 --->
    """
    return np.ndarray(shape=(max(len(padded) - 2, 0),), dtype="<i8", buffer=padded,
                      offset=4, strides=(4,))


@dataclasses.dataclass
class _Leads:
    """What the clock needs of each window of a span (its first record and its stamped
    records)."""

    first: np.ndarray
    """TSC read at the window's first record (its own when it has one)."""
    stamped: np.ndarray
    """The first record has its own TSC."""
    second: np.ndarray
    """Own TSC of the first stamped record after the first (when ``single`` is False)."""
    last: np.ndarray
    """Own TSC of the window's last stamped record (``first`` when none after the first)."""
    single: np.ndarray
    """No stamped record after the first."""


class _Loose:
    """The records without a TSC of their own (sorted rows; few: a percent or two), and the
    stamped records around them found from those alone (no list of the stamped rows, as
    long as the span, is made)."""

    def __init__(self, stamped: np.ndarray) -> None:
        self.n = len(stamped)
        self.rows = np.flatnonzero(~stamped)
        rows = self.rows
        # each loose row's run of consecutive loose rows: its first and last row
        new_run = np.ones(len(rows), dtype=bool)
        np.not_equal(rows[1:], rows[:-1] + 1, out=new_run[1:])
        opens = np.flatnonzero(new_run)
        closes = np.r_[opens[1:] - 1, len(rows) - 1] if len(rows) else opens
        run = np.cumsum(new_run) - 1
        self.run_first = rows[opens][run]
        self.run_last = rows[closes][run]

    def _find(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where ``rows`` would sit among the loose rows, and which of them are loose."""
        at = np.minimum(np.searchsorted(self.rows, rows), max(len(self.rows) - 1, 0))
        hit = self.rows[at] == rows if len(self.rows) else np.zeros(len(rows), dtype=bool)
        return at, hit

    def next_after(self, rows: np.ndarray) -> np.ndarray:
        """The first stamped row after each of ``rows`` (``n``: none)."""
        out = rows + 1
        at, hit = self._find(out)
        out[hit] = self.run_last[at[hit]] + 1
        return out

    def last_before(self, rows: np.ndarray) -> np.ndarray:
        """The last stamped row before each of ``rows`` (-1: none)."""
        out = rows - 1
        at, hit = self._find(out)
        out[hit] = self.run_first[at[hit]] - 1
        return out

    def last_stamped_before_loose(self, rows: np.ndarray) -> np.ndarray:
        """The last stamped row before each of these loose ``rows`` (-1: none)."""
        return self.run_first[np.searchsorted(self.rows, rows)] - 1


@dataclasses.dataclass
class _Stamps:
    """A span's TSCs: every record takes its own, else the last one before it on its CPU."""

    own: np.ndarray
    """Each record's own TSC (int64; what its words hold where it has none)."""
    stamped: np.ndarray
    """Which records have their own."""
    loose: _Loose | None
    """Rows that have none (None: every row has its own)."""
    seg_start: np.ndarray
    lead: np.ndarray
    """TSC of each window's first record: its own, or its CPU's last before the window."""
    pending: np.ndarray
    """Rows before their CPU's first TSC (sorted; their TSC is fixed once the file is read)."""
    lo: int | None
    """Smallest and largest own TSC of the span's records."""
    hi: int | None

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The TSC of each of these rows (sorted): its own; a row without one takes the last
        stamped record's before it in its window, else its window's first record's."""
        tsc = self.own[rows]
        if self.loose is None:
            return tsc
        loose = np.flatnonzero(~self.stamped[rows])
        if not len(loose):
            return tsc
        row = rows[loose]
        window = np.searchsorted(self.seg_start, row, side="right") - 1
        tsc[loose] = self.lead[window]
        prev = self.loose.last_stamped_before_loose(row)
        inside = prev >= self.seg_start[window]
        tsc[loose[inside]] = self.own[prev[inside]]
        return tsc

    def pending_in(self, rows: np.ndarray) -> np.ndarray:
        """Positions in ``rows`` (sorted) of the pending rows."""
        if not len(self.pending) or not len(rows):
            return np.empty(0, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.pending, rows), len(self.pending) - 1)
        return np.flatnonzero(self.pending[at] == rows)


def _own_tscs(padded: np.ndarray, nodes: np.ndarray, stamped: np.ndarray, loose: _Loose | None,
              clock: Clock) -> tuple[np.ndarray, int | None, int | None]:
    """Every record's own TSC, one gather (what the words after the header hold where the
    record has none), and the smallest and largest among the stamped records (None: none is
    stamped). Beyond 2**63 cycles (a century at 3 GHz) an own TSC is damaged, not late: put
    at the end of time, never negative, at DAMAGED_TSC (every span, and every float made of
    one, stays within int64 downstream); a set top bit in the words of a record without a
    TSC is data, not damage.

    The loose records' words hold any value: for plain reductions over the whole column
    (no mask, no list of the stamped rows) they hold a stamped record's TSC meanwhile, and
    get their words back after.
    """
    own = _tsc_view(padded)[nodes]
    loose_rows = loose.rows if loose is not None else np.empty(0, dtype=np.int64)
    if len(loose_rows) == len(own):  # no record stamped (or none at all)
        return own, None, None
    words = own[loose_rows]
    stand_in = int(np.argmax(stamped))  # the first stamped record
    own[loose_rows] = own[stand_in]
    lo = int(own.min())
    if lo < 0:
        damaged = stamped & (own < 0)
        clock.damaged += int(damaged.sum())
        own[damaged] = DAMAGED_TSC
        own[loose_rows] = own[stand_in]
        lo = int(own.min())
    hi = int(own.max())
    own[loose_rows] = words
    return own, lo, hi


def _leads(own: np.ndarray, stamped: np.ndarray, loose: _Loose | None,
           seg_start: np.ndarray) -> _Leads:
    """Per window: its first record's TSC, and its first and last stamped records' after
    that (``loose`` None: every record is stamped; else found around the loose records).
    ``second`` is only read where ``single`` is False."""
    seg_end = np.r_[seg_start[1:], len(own)][: len(seg_start)]  # no window: none
    first = own[seg_start]
    if loose is None:
        single = seg_start + 1 >= seg_end
        top = len(own) - 1
        second, last = own[np.minimum(seg_start + 1, top)], own[np.clip(seg_end - 1, 0, top)]
    else:
        after = loose.next_after(seg_start)  # the first stamped record after the first
        single = after >= seg_end
        second = own[np.where(single, seg_start, after)]
        last = own[np.where(single, seg_start, loose.last_before(seg_end))]
    return _Leads(first, stamped[seg_start], second, np.where(single, first, last), single)


def _timestamps(padded: np.ndarray, nodes: np.ndarray, stamped: np.ndarray,
                seg_start: np.ndarray, seg_cpu: np.ndarray, clock: Clock, gaps: bool
                ) -> _Stamps:
    """Every record's own TSC, each window's first record's (its own, else carried from its
    CPU's previous window), the rows before their CPU's first TSC (pending), and the smallest
    and largest own TSC; ``gaps``: also note each CPU's longest stretch without records
    (:meth:`Clock.inner_gaps`).

    A record without a TSC takes the last before it on its CPU (:meth:`_Stamps.at`, asked only
    for the rows that go somewhere: no per-record pass for the others).
    """
    n = len(nodes)
    every = bool(stamped.all())
    loose = None if every else _Loose(stamped)
    own, lo, hi = _own_tscs(padded, nodes, stamped, loose, clock)
    lead, unresolved = clock.carry(seg_cpu, _leads(own, stamped, loose, seg_start), gaps)
    if gaps:  # over the anchors: stamped records and windows' first records
        if every:  # every record an anchor, each window's first its own TSC
            clock.inner_gaps(seg_start, seg_cpu, own, unresolved)
        else:
            mask = stamped.copy()
            mask[seg_start] = True
            rows = np.flatnonzero(mask)
            value = own[rows]
            at = np.searchsorted(rows, seg_start)
            value[at] = lead
            clock.inner_gaps(at, seg_cpu, value, unresolved)
    pending = []
    if unresolved and loose is not None:  # (none if every record is stamped)
        starts = seg_start[unresolved]
        stops = loose.next_after(starts)  # the window's first stamped record after its first
        for k, start, stop in zip(unresolved, starts.tolist(), stops.tolist(), strict=True):
            end = int(seg_start[k + 1]) if k + 1 < len(seg_start) else n
            pending.append(np.arange(start, min(stop, end)))
    return _Stamps(own, stamped, loose, seg_start, lead,
                   np.concatenate(pending) if pending else np.empty(0, dtype=np.int64), lo, hi)


def _counts(hdr: np.ndarray, seg_len: np.ndarray, seg_cpu: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records per (CPU, header word) of a batch."""
    codes, uniques = factorize(hdr)
    cpu_ids, seg_local = unique(seg_cpu, return_inverse=True)
    slots = len(cpu_ids)
    key = codes  # int64
    if slots > 1:
        key = codes * slots
        key += np.repeat(seg_local.astype(np.int16), seg_len)  # narrow: a quarter the writes
    per = np.bincount(key, minlength=len(uniques) * slots)
    nz = np.flatnonzero(per)
    return (cpu_ids[nz % slots].astype(np.int16), uniques[nz // slots].astype(np.uint32),
            per[nz])


#: Header bits of a RUNSTATE_CHANGE (any old/new pair), and a SWITCH with N >= 4 extra words
#: (N is bits 28-30: N >= 4 is bit 30 set).
_RUNSTATE_BITS = np.uint32(RUNSTATE_CHANGE_MASK & EVENT_MASK)
_SWITCH_BITS = np.uint32(EVENT_MASK | 4 << EXTRA_SHIFT)
_SWITCH_HEADER = np.uint32(TRC_SCHED_SWITCH | 4 << EXTRA_SHIFT)
_EXTRA_BITS = np.uint32(EXTRA_MASK << EXTRA_SHIFT)
#: Up to this many ids, a record's id is compared with each (beyond: ``np.isin``).
_FEW_IDS = 16


def _runstate_rows(hdr: np.ndarray) -> np.ndarray:
    """Rows of RUNSTATE_CHANGE records with at least one extra word (the unit)."""
    rows = np.flatnonzero((hdr & _RUNSTATE_BITS) == np.uint32(TRC_SCHED_RUNSTATE_CHANGE))
    return rows[(hdr[rows] & _EXTRA_BITS) != 0]


def _kept_rows(hdr: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """Rows of the records of ``ids`` (all: None) and of lost-records records."""
    if ids is None:
        return np.arange(len(hdr))
    event = hdr & np.uint32(EVENT_MASK)
    wanted = sorted({*ids.tolist(), TRC_LOST_RECORDS})
    if len(wanted) > _FEW_IDS:
        return np.flatnonzero(np.isin(event, np.asarray(wanted, dtype=np.uint32)))
    mask = event == np.uint32(wanted[0])
    for e in wanted[1:]:
        mask |= event == np.uint32(e)
    return np.flatnonzero(mask)


def _extract(padded: np.ndarray, base: int, nodes: np.ndarray, hdr: np.ndarray,
             seg_start: np.ndarray, seg_cpu: np.ndarray, clock: Clock, keep: Keep) -> Batch:
    """Columns of the records at ``nodes`` (word positions in ``padded``, file word ``base``;
    ``hdr``: their header words).

    ``padded`` has at least ``MAX_EXTRA`` words beyond the last record (read as zeros there).
    Every record carries its TSC forward (and is counted: ``keep.tallies``); run-state
    changes and switches also go to narrow parts of their own; only the kept records get the
    full columns. Only the rows that go somewhere are given their TSC and CPU; what a record
    is for is told by comparing its header with the few ids wanted.
    """
    stamped = hdr >= CYCLES_FLAG
    stamps = _timestamps(padded, nodes, stamped, seg_start, seg_cpu, clock, keep.tallies)
    seg_len = np.diff(np.r_[seg_start, len(nodes)])
    counts = _counts(hdr, seg_len, seg_cpu) if keep.tallies else None
    cpu = np.repeat(seg_cpu.astype(np.int16), seg_len)  # each row's: its window's

    def part(rows: np.ndarray, words: list[np.ndarray], with_event: bool) -> Part:
        columns = {"tsc": stamps.at(rows), "cpu": cpu[rows]}
        if with_event:
            columns["event"] = hdr[rows] & np.uint32(EVENT_MASK)
        columns.update((f"w{k}", word) for k, word in enumerate(words))
        return Part(columns, stamps.pending_in(rows))

    def words(rows: np.ndarray, wanted: int) -> list[np.ndarray]:
        # N >= wanted: all are the record's own
        return list(_words_at(padded, _first_word(nodes, stamped, rows), wanted))

    runstate_rows = _runstate_rows(hdr)
    unit = words(runstate_rows, 1)[0]  # w0: vcpu in bits 0-15, domid in bits 16-31
    if not keep.idle_runstates:
        busy = np.flatnonzero((unit >> 16) != DOMID_IDLE)
        runstate_rows, unit = runstate_rows[busy], unit[busy]
    runstate = part(runstate_rows, [unit], True)
    switch_rows = np.flatnonzero((hdr & _SWITCH_BITS) == _SWITCH_HEADER)
    switch = part(switch_rows, words(switch_rows, 4), False)
    rows = _kept_rows(hdr, keep.ids)
    kept_hdr = hdr[rows]
    kept = _kept(padded, base, nodes, stamped, rows, kept_hdr, max(keep.words, 4),
                 keep.offsets)  # the lost-records table reads 4 words
    return Batch(kept[0], cpu[rows], kept_hdr, stamps.at(rows), kept[1], kept[2],
                 stamps.pending_in(rows), len(nodes), stamps.lo, stamps.hi, runstate, switch,
                 counts)


def _first_word(nodes: np.ndarray, stamped: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Word position of the first extra word of the records at ``rows`` (after the header,
    and the TSC when stamped), int64, made in place: no temporary as wide as the result."""
    at = nodes.take(rows)
    at += 1
    at += np.left_shift(stamped.take(rows).view(np.uint8), 1)  # the TSC: 2 words
    return at


def _quads(padded: np.ndarray) -> np.ndarray:
    """The 4 words (16 bytes) from each word of ``padded`` on, one element each (a view with a
    stride of one word, as :func:`_tsc_view`): a record's words 0-3 in one gather."""
    return np.ndarray(shape=(max(len(padded) - 3, 0),), dtype="V16", buffer=padded,
                      strides=(4,))


def _words_at(padded: np.ndarray, at: np.ndarray, count: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """``count`` words from each position ``at`` on, as rows of a ``(count, len(at))`` uint32
    array (``out``, or a new one). From 3 words on, words 0-3 come in one 16-byte gather per
    record and are split into rows (a pass over the gathered, in cache), instead of a gather
    per word, each of which reaches every record's memory again. ``padded`` must go on
    ``MAX_EXTRA`` words past the last position's record (the fourth word may lie beyond a
    record of three: read, unused)."""
    if out is None:
        out = np.empty((count, len(at)), dtype=np.uint32)
    k = 0
    if count >= 3:
        # viewed in the buffer's own byte order (little-endian words), whatever the machine's
        quads = _quads(padded)[at].view(padded.dtype).reshape(len(at), 4)
        out[:min(count, 4)] = quads.T[:count]
        k = 4
    if k < count:
        word = at + k
        for row in out[k:]:
            np.take(padded, word, out=row)
            word += 1
    return out


def _kept(padded: np.ndarray, base: int, nodes: np.ndarray, stamped: np.ndarray,
          rows: np.ndarray, hdr: np.ndarray, words: int, offsets: bool
          ) -> tuple[np.ndarray | None, np.ndarray, int]:
    """The kept records' (``rows`` of ``nodes``; ``hdr``: their headers) byte offsets
    (``offsets``, else None), ``words`` extra words (zero beyond each record's own) and how
    many of them any record has.

    Only the words some record has are read (the analyzer's records have 2 or 3 of the 7):
    the others stay the zeros of the allocation, never touched. A word every record has
    needs no zeroing.
    """
    n_extra = (hdr >> np.uint32(EXTRA_SHIFT)) & np.uint32(EXTRA_MASK)
    has = min(int(n_extra.max()), words) if len(rows) else 0
    fewest = int(n_extra.min()) if len(rows) else 0
    extra = np.zeros((words, len(rows)), dtype=np.uint32)
    _words_at(padded, _first_word(nodes, stamped, rows), has, extra[:has])
    for k in range(fewest, has):  # past a record's N words: whatever follows, zeroed
        extra[k] *= n_extra > k
    return ((nodes[rows] + base) * 4 if offsets else None), extra, has


# --- the file, span after span -----------------------------------------------------------------

def _span_errors(path: Path, padded: np.ndarray, base: int, nodes: np.ndarray, hdr: np.ndarray,
                 overrun: np.ndarray, win: Windows, first: int, nwords: int
                 ) -> tuple[InputError | None, int | None]:
    """The first problem of a span (a CPU-change record inside a window, a record running
    past its window) and where a cut file's last whole record ends (None: not cut here)."""
    problems: list[tuple[int, InputError]] = []
    inner = np.flatnonzero(hdr == CPU_CHANGE_HEADER)
    if len(inner):  # Xen never writes CPU-change records: the window size is wrong
        at = int(nodes[inner[0]]) + base
        owner = int(win.start[np.searchsorted(win.start, at, side="right") - 1]) * 4
        problems.append((at * 4, InputError(
            path, f"a CPU-change record lies inside the window of the CPU-change record at "
            f"offset {owner}: that window's size is wrong", offset=at * 4)))
    cut = None
    for w in np.flatnonzero(overrun >= 0).tolist():
        at = int(overrun[w])
        header = int(padded[at])
        length = int(_LENGTH[header >> EXTRA_SHIFT])
        end = int(win.end[first + w])
        if end > nwords and at + base + length > nwords:  # the file was cut in this record
            cut = (at + base) * 4
            continue
        problems.append(((at + base) * 4, InputError(
            path, f"record with header 0x{header:08x} ({length * 4} bytes) runs past the end "
            f"of its window at offset {min(end, nwords) * 4}", offset=(at + base) * 4)))
    if problems:
        return min(problems, key=lambda p: p[0])[1], cut
    return None, cut


@dataclasses.dataclass
class _Located:
    """One span read and walked: its records' starts and headers, and its problems."""

    buffer: np.ndarray
    lo: int
    hi: int
    nodes: np.ndarray
    hdr: np.ndarray
    problem: InputError | None
    cut: int | None
    seg_start: np.ndarray
    has: np.ndarray


def _read_at(path: Path, fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` with the file's bytes from ``offset`` (``pread``: the handle's position is
    left alone, for the thread that owns it)."""
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # no preadv (macOS < 11): a copy
            data = os.pread(fd, len(view) - done, offset + done)
            got = len(data)
            view[done:done + got] = data
        if got <= 0:
            raise InputError(path, "file changed while being read", offset=offset)
        done += got


def _locate(path: Path, fd: int, win: Windows, first: int, stop: int, nwords: int,
            buffer: np.ndarray, marks: np.ndarray | None = None) -> _Located:
    """Read a span of windows into ``buffer`` (or a larger one) and find its records
    (``marks``: :func:`_walk_span`'s)."""
    lo = int(win.start[first])
    hi = min(int(win.end[stop - 1]), nwords)
    need = hi - lo + MAX_EXTRA
    if len(buffer) < need:
        buffer = np.zeros(need, dtype="<u4")
    _read_at(path, fd, buffer[: hi - lo].data.cast("B"), lo * 4)
    buffer[hi - lo: need] = 0  # the slack read past the last record is zeros
    starts = win.start[first:stop] - lo + _CPU_CHANGE_WORDS
    ends = np.minimum(win.end[first:stop], nwords) - lo
    nodes, overrun = _walk_span(buffer, starts, ends, marks)
    hdr = buffer[nodes]  # every record's header word
    problem, cut = _span_errors(path, buffer, lo, nodes, hdr, overrun, win, first, nwords)
    per_window = np.searchsorted(nodes, ends) - np.searchsorted(nodes, starts)
    has = per_window > 0
    seg_start = np.r_[0, np.cumsum(per_window)[:-1]][has]
    return _Located(buffer, lo, hi, nodes, hdr, problem, cut, seg_start, has)


def read_batches(path: Path, handle: io.BufferedReader, win: Windows, size: int,
                 chunk_words: int, clock: Clock, keep: Keep,
                 on_progress: ProgressCallback | None = None,
                 ) -> Iterator[tuple[Batch, int | None, int]]:
    """Batches of records, span after span, with the offset where a cut file's data ends
    (None: not in this span) and the index of the first window after the span.

    While a span's columns are made, a thread reads and walks the next one into the other of
    two buffers (numpy lets go of the GIL in both; the handle's position is not used,
    ``pread`` is). Raises ``InputError`` at the first record running past its window (or a
    CPU-change record inside one), then the windows' own problem once every window before it
    was read.
    """
    nwords = size // 4
    fd = handle.fileno()
    spans = list(_spans(win, chunk_words))
    width = min(chunk_words, nwords) + MAX_EXTRA
    buffers = [np.zeros(width if len(spans) > k else 0, dtype="<u4") for k in range(2)]
    # one span is walked at a time (the next starts once this one's walk is done): one buffer
    # of marks serves them all
    marks = np.zeros(width if len(spans) > 1 else 0, dtype=bool)

    def locate(i: int) -> Background[_Located]:
        first, stop = spans[i]
        return Background(lambda: _locate(path, fd, win, first, stop, nwords, buffers[i % 2],
                                          marks))

    ahead = locate(0) if spans else None
    try:
        for i, (first, stop) in enumerate(spans):
            assert ahead is not None
            span = ahead.result()
            buffers[i % 2] = span.buffer
            ahead = locate(i + 1) if i + 1 < len(spans) else None
            if span.problem is not None:
                raise span.problem
            batch = _extract(span.buffer, span.lo, span.nodes, span.hdr, span.seg_start,
                             win.cpu[first:stop][span.has], clock, keep)
            if on_progress is not None:
                on_progress(min(span.hi * 4, size), size)
            yield batch, span.cut, stop
            del span
    finally:  # never leave a thread reading a file about to be closed
        if ahead is not None:
            ahead.wait()
    if win.problem is not None:
        raise win.problem
