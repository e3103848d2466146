"""``xenlat trace --dump``: every record as one line, in time order, streamed.

A line is the time (seconds since the first timestamped record, at the trace's TSC rate),
the physical CPU, the unit running there when the record was written (``d14v2``; ``-`` when
not known yet), the event name and its decoded fields (``name=value``, after ``xen_events``'
table; words of records without a known layout as ``w0=0x…``)::

       1.816464123 cpu3 d14v2 switch prev=d14v2 next=d32767v3

The records are read span by span (a few MiB of file) and merged across CPUs as they come:
a record is written once every CPU that still has windows to come has been read past its
time, so the first lines appear at once and memory stays bounded (``| less``, ``| grep``,
``| head`` on traces of any size). ``--format json`` writes the same as JSON Lines.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import check_readable
from ..groups import unique
from ..sources.xentrace_records import Clock, Keep, Windows, read_batches, walk_windows
from ..sources.xentrace_scan import _warn_truncated
from ..xen_events import (
    CYCLES_FLAG,
    EVENT_MASK,
    EXTRA_MASK,
    EXTRA_SHIFT,
    HYPERCALL_OP_MASK,
    HYPERCALLS,
    MAX_EXTRA,
    RUNSTATES,
    TRC_SCHED_SWITCH,
    event_info,
    event_name,
    is_runstate_change,
)
from .sched import Table

ProgressCallback = Callable[[int, int], None]
#: Words of file per span the dump reads at once (4 MiB: the first lines come quickly).
DUMP_CHUNK_WORDS = 1 << 20
#: Lines formatted and written at a time.
LINES_PER_WRITE = 1 << 14
_WORDS = tuple(f"w{k}" for k in range(MAX_EXTRA))
#: A record's header and the TSC after it (a TSC only when the header says so).
_FIRST = struct.Struct("<IQ")


def time_ordered(path: str | os.PathLike[str], on_progress: ProgressCallback | None = None,
                 chunk_words: int | None = None) -> Iterator[tuple[Table, Clock]]:
    """The file's records in TSC order, in chunks (``cpu, tsc, header, w0`` … ``w6``),
    streamed: after each span, the records older than every CPU's next window (its first
    record's TSC: a CPU's windows come in time order) go out; the rest wait for the next
    span. Warns ``TruncatedInput`` for a cut file (as :func:`.read_xentrace`)."""
    path = Path(path)
    check_readable(path)
    size = path.stat().st_size
    clock = Clock()
    with open(path, "rb") as handle:
        win = walk_windows(path, handle, size)
        first_tsc = _FirstTsc(handle, win, size)
        windows_of: dict[int, list[int]] = {}
        for k, c in enumerate(win.cpu.tolist()):
            windows_of.setdefault(c, []).append(k)
        held: Table | None = None
        truncated_at = win.truncated_at
        for batch, cut, stop in read_batches(path, handle, win, size,
                                             chunk_words or DUMP_CHUNK_WORDS, clock,
                                             Keep(None, MAX_EXTRA), on_progress):
            truncated_at = cut if cut is not None else truncated_at
            rows: Table = {"cpu": batch.cpu, "tsc": batch.tsc, "header": batch.header,
                           "pending": np.zeros(len(batch.tsc), dtype=bool)}
            rows["pending"][batch.pending] = True
            rows.update({name: batch.extra[k] for k, name in enumerate(_WORDS)})
            held = rows if held is None else {k: np.concatenate([held[k], rows[k]])
                                              for k in held}
            _settle(held, clock, None)
            ready, held = _split(held, _horizon(first_tsc, win, windows_of, stop, clock))
            if len(ready["tsc"]):
                yield ready, clock
    if truncated_at is not None:
        _warn_truncated(path, win.cpu, win.declared_end, size, truncated_at)
    if held is not None and len(held["tsc"]):
        _settle(held, clock, min(clock.first.values(), default=0))
        ready, _ = _split(held, None)
        yield ready, clock


class _FirstTsc:
    """Each window's first record's own TSC (None: it has none), read when first asked."""

    def __init__(self, handle: BinaryIO, win: Windows, size: int) -> None:
        self.fd, self.win, self.nwords = handle.fileno(), win, size // 4
        self.known: dict[int, int | None] = {}

    def __getitem__(self, k: int) -> int | None:
        if k not in self.known:
            at = int(self.win.start[k]) + 3  # after the CPU-change record
            value = None
            if at + 3 <= min(int(self.win.end[k]), self.nwords):
                header, tsc = _FIRST.unpack(os.pread(self.fd, _FIRST.size, at * 4))
                value = tsc if header >= CYCLES_FLAG else None
            self.known[k] = value
        return self.known[k]


def _horizon(first_tsc: _FirstTsc, win: Windows, windows_of: dict[int, list[int]],
             stop: int, clock: Clock) -> int | None:
    """The smallest TSC a record still to be read can have: each CPU's next window begins
    with its first record's TSC (its own, or carried from the CPU's last). None: no window
    is left; a CPU whose next window says nothing yet (no TSC anywhere) holds everything."""
    bound = None
    for windows in windows_of.values():
        at = bisect.bisect_left(windows, stop)
        if at == len(windows):
            continue  # this CPU has no window left
        k = windows[at]
        first = first_tsc[k]
        if first is None:  # it takes the CPU's last TSC
            first = clock.last.get(int(win.cpu[k]))
        if first is None:  # and the CPU has had none yet
            return np.iinfo(np.int64).min
        bound = first if bound is None else min(bound, first)
    return bound


def _settle(rows: Table, clock: Clock, origin: int | None) -> None:
    """Rows before their CPU's first TSC take it once known (at the end: ``origin``)."""
    pending = np.flatnonzero(rows["pending"])
    for i, cpu in zip(pending.tolist(), rows["cpu"][pending].tolist(), strict=True):
        first = clock.first.get(cpu, origin)
        if first is not None:
            rows["tsc"][i] = first
            rows["pending"][i] = False


def _split(rows: Table, safe: int | None) -> tuple[Table, Table]:
    """The rows before ``safe`` in TSC order (stable), and the rest (all: ``safe`` None)."""
    waiting = rows["pending"]
    tsc = np.where(waiting, np.iinfo(np.int64).max, rows["tsc"])
    order = np.argsort(tsc, kind="stable")
    cut = len(order) if safe is None else int(np.searchsorted(tsc[order], safe, side="left"))
    ready = {k: v[order[:cut]] for k, v in rows.items()}
    rest = {k: v[order[cut:]] for k, v in rows.items()}
    return ready, rest


# --- the lines -----------------------------------------------------------------------------------

class _Occupants:
    """Who runs on each CPU, carried from chunk to chunk (from SWITCH records and run-state
    changes to running)."""

    def __init__(self) -> None:
        self.now: dict[int, int] = {}

    def before(self, rows: Table, event: np.ndarray) -> np.ndarray:
        """The unit key running on each row's CPU just before the row (-1: unknown)."""
        n = len(event)
        change = np.full(n, -1, dtype=np.int64)
        sw = event == TRC_SCHED_SWITCH
        change[sw] = (rows["w2"][sw].astype(np.int64) << 16) | rows["w3"][sw]
        to_run = is_runstate_change(event) & (((event >> 4) & 0xF) == 0)
        change[to_run] = rows["w0"][to_run].astype(np.int64)
        out = np.empty(n, dtype=np.int64)
        cpu = rows["cpu"]
        for c in unique(cpu).tolist():
            mine = np.flatnonzero(cpu == c)
            mark = change[mine] >= 0
            last = np.maximum.accumulate(np.where(mark, np.arange(len(mine)), -1))
            prior = np.r_[-1, last[:-1]]  # the last change strictly before each row
            carried = self.now.get(c, -1)
            out[mine] = np.where(prior >= 0, change[mine][np.maximum(prior, 0)], carried)
            if last[-1] >= 0:
                self.now[c] = int(change[mine][last[-1]])
        return out


_KIND_WORDS = {"d": 1, "i": 1, "x": 1, "u": 1, "L": 1, "h": 1, "q": 2, "Q": 2, "U": 2}
#: How each field kind prints (text, JSON): %-formats and how many values it takes.
_TEXT = {"d": "%d", "i": "%d", "x": "0x%x", "q": "%d", "Q": "0x%x", "u": "d%dv%d",
         "L": "d%dv%d", "U": "d%dv%d", "h": "%s"}
_JSON = {"d": "%d", "i": "%d", "x": "%d", "q": "%d", "Q": "%d", "u": '"d%dv%d"',
         "L": '"d%dv%d"', "U": '"d%dv%d"', "h": '"%s"'}


def _field_columns(kind: str, words: list[np.ndarray]) -> list[list[object]]:
    """The values one field's format takes, per row of a group (``words``: its words)."""
    w = words[0]
    if kind in ("d", "x"):
        return [w.tolist()]
    if kind == "i":
        return [w.view(np.int32).tolist()]
    if kind in ("q", "Q"):
        return [(w.astype(np.uint64) | (words[1].astype(np.uint64) << np.uint64(32))).tolist()]
    if kind == "u":
        return [(w >> 16).tolist(), (w & 0xFFFF).tolist()]
    if kind == "L":
        return [(w & 0xFFFF).tolist(), (w >> 16).tolist()]
    if kind == "U":
        return [w.tolist(), words[1].tolist()]
    if kind == "h":
        op = (w & HYPERCALL_OP_MASK).tolist()
        return [[HYPERCALLS.get(v, str(v)) for v in op]]
    raise ValueError(f"unknown field kind {kind!r}")


def _fields(header: int) -> list[tuple[str, str, int]]:
    """``(name, kind, first word)`` of the fields of records with this header: the table's
    layout for their word count, then any words it does not explain (hex, as written)."""
    event = header & EVENT_MASK
    n_extra = (header >> EXTRA_SHIFT) & EXTRA_MASK
    info = event_info(event)
    out = []
    word = 0
    for name, kind in (info.layout(n_extra) if info is not None and info.fields else []):
        if word + _KIND_WORDS[kind] > n_extra:
            break
        out.append((name, kind, word))
        word += _KIND_WORDS[kind]
    return out + [(f"w{k}", "x", k) for k in range(word, n_extra)]


def _template(header: int, fields: list[tuple[str, str, int]], fmt: str) -> str:
    """The %-format of one line of this header: time, CPU, unit, name, fields."""
    event = header & EVENT_MASK
    name = event_name(event)
    states = ""
    if is_runstate_change(event):
        old, new = ((RUNSTATES[s] if s < len(RUNSTATES) else str(s))
                    for s in ((event >> 8) & 0xF, (event >> 4) & 0xF))
        states = f', "old": "{old}", "new": "{new}"' if fmt == "json" else \
            f" old={old} new={new}"
    if fmt == "json":
        body = "".join(f', "{n}": {_JSON[k]}' for n, k, _ in fields)
        return ('{"t_s": %d.%09d, "pcpu": %d, "running": "%s", '
                f'"event": "0x{event:08x}", "name": "{name}"{body}{states}}}\n')
    body = "".join(f" {n}={_TEXT[k]}" for n, k, _ in fields)
    return f"%4d.%09d cpu%d %s {name}{body}{states}\n"


def _lines(rows: Table, occupants: _Occupants, origin: int, hz: float, fmt: str) -> bytes:
    """The text (or JSON Lines) of a chunk of time-ordered rows: one %-format per header
    word, applied to the group's columns."""
    event = rows["header"] & EVENT_MASK
    occupant = occupants.before(rows, event)
    ns = np.round((rows["tsc"] - origin).astype(np.float64) * (1e9 / hz)).astype(np.int64)
    ns = np.maximum(ns, 0)
    keys, key_at = unique(occupant, return_inverse=True)
    unit = np.array(["-" if k < 0 else f"d{k >> 16}v{k & 0xFFFF}" for k in keys.tolist()],
                    dtype=object)[key_at]
    out = np.empty(len(event), dtype=object)
    headers, code = unique(rows["header"], return_inverse=True)
    for g, header in enumerate(headers.tolist()):
        at = np.flatnonzero(code == g)
        fields = _fields(header)
        columns: list[list[object]] = [(ns[at] // 10**9).tolist(), (ns[at] % 10**9).tolist(),
                                       rows["cpu"][at].tolist(), unit[at].tolist()]
        for _, kind, word in fields:
            columns += _field_columns(kind, [rows[f"w{word + k}"][at]
                                             for k in range(_KIND_WORDS[kind])])
        template = _template(header, fields, fmt)
        out[at] = [template % values for values in zip(*columns, strict=True)]
    return "".join(out.tolist()).encode()


def dump_trace(path: str | os.PathLike[str], out: BinaryIO, cpu_hz: float,
               fmt: str = "text", on_progress: ProgressCallback | None = None) -> int:
    """Write every record of a trace to ``out`` as a line, in time order; return how many.

    Times are seconds since the first record (the smallest TSC: lines come in TSC order) at
    ``cpu_hz``."""
    occupants = _Occupants()
    origin: int | None = None
    written = 0
    for rows, _clock in time_ordered(path, on_progress):
        if origin is None:
            origin = int(rows["tsc"][0])
        for lo in range(0, len(rows["tsc"]), LINES_PER_WRITE):  # the first lines come soon
            piece = {k: v[lo:lo + LINES_PER_WRITE] for k, v in rows.items()}
            out.write(_lines(piece, occupants, origin, cpu_hz, fmt))
        written += len(rows["tsc"])
    return written
