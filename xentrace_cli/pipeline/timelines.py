"""The trace's records as the path-following steps read them: sorted arrays, per-vCPU timelines.

:class:`TraceRecords` holds the three kinds of record a packet's path crosses — the NIC's
interrupts (``HW_IRQ_HANDLED``), wakes, and netback's grant copies — as sorted numpy columns.
:class:`Timelines` answers, for any vCPU and many times at once, "what was its run state",
"when did it next run" and "on which physical CPU" from the trace's run-state intervals.
Everything is in TSC cycles; nothing here knows about packets or clocks.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .. import xen_events as xe

#: Run-state codes (Xen's numbers: ``RUNSTATE_CHANGE`` old/new fields).
RUNNING, RUNNABLE, BLOCKED, OFFLINE = (xe.RUNSTATE_RUNNING, xe.RUNSTATE_RUNNABLE,
                                       xe.RUNSTATE_BLOCKED, xe.RUNSTATE_OFFLINE)
UNKNOWN = -1
#: "No such time" in an int64 TSC column.
NO_TSC = np.iinfo(np.int64).min


@dataclasses.dataclass(frozen=True)
class Interrupts:
    """``HW_IRQ_HANDLED`` records, in time order."""

    tsc: np.ndarray
    """Handler exit (when Xen writes the record)."""
    entry_tsc: np.ndarray
    """Handler entry (from the record's low-32-bit entry and exit words)."""
    cpu: np.ndarray
    number: np.ndarray
    """Xen IRQ number."""


@dataclasses.dataclass(frozen=True)
class Wakes:
    """``WAKE`` records, in time order: ``cpu`` is the waker's physical CPU."""

    tsc: np.ndarray
    cpu: np.ndarray
    domid: np.ndarray
    vcpu: np.ndarray


@dataclasses.dataclass(frozen=True)
class Copies:
    """netback's ``GNTTABOP_copy`` hypercalls, in time order."""

    tsc: np.ndarray
    cpu: np.ndarray
    count: np.ndarray
    """Copy operations in the batch (at least one per frame)."""
    issuer: np.ndarray
    """dom0 vCPU that issued it (-1: not dom0, or no switch records to tell)."""


@dataclasses.dataclass(frozen=True)
class TraceRecords:
    """The records a packet's path crosses."""

    interrupts: Interrupts
    wakes: Wakes
    copies: Copies

    @classmethod
    def from_events(cls, events: pd.DataFrame, switches: pd.DataFrame | None,
                    first_tsc: int | None = None) -> TraceRecords:
        """From the event table of ``readers.xentrace.read_xentrace`` (merged in time) and
        its SWITCH records (the copies' issuers: None, or none, leaves them unknown);
        ``first_tsc``: the trace's first TSC (``XenTrace.first_tsc``)."""
        event = events["event"].to_numpy()
        tsc = events["tsc"].to_numpy(np.int64)
        cpu = events["cpu"].to_numpy()  # as the table has it: made int64 at the rows taken
        return cls(_interrupts(events, event, tsc, cpu), _wakes(events, event, tsc, cpu),
                   _copies(events, event, tsc, cpu, switches, first_tsc))


def _column(events: pd.DataFrame, name: str, rows: np.ndarray, missing: int) -> np.ndarray:
    """A (nullable) event column at ``rows`` only: converting every row is slow (taken from
    the column's array: no index is built for the rows)."""
    return events[name].array[rows].to_numpy(dtype=np.int64, na_value=missing)


def _interrupts(events: pd.DataFrame, event: np.ndarray, tsc: np.ndarray,
                cpu: np.ndarray) -> Interrupts:
    rows = np.flatnonzero(event == xe.TRC_HW_IRQ_HANDLED)
    w1 = _column(events, "w1", rows, 0)
    w2 = _column(events, "w2", rows, 0)
    # the words hold the TSC's low 32 bits at entry and exit: their difference, mod 2**32
    entry = tsc[rows] - ((w2 - w1) & 0xFFFFFFFF)
    return Interrupts(tsc[rows], entry, cpu[rows].astype(np.int64),
                      _column(events, "irq", rows, -1))


def _wakes(events: pd.DataFrame, event: np.ndarray, tsc: np.ndarray,
           cpu: np.ndarray) -> Wakes:
    rows = np.flatnonzero(event == xe.TRC_SCHED_WAKE)
    return Wakes(tsc[rows], cpu[rows].astype(np.int64), _column(events, "domid", rows, -1),
                 _column(events, "vcpu", rows, -1))


def _copies(events: pd.DataFrame, event: np.ndarray, tsc: np.ndarray, cpu: np.ndarray,
            switches: pd.DataFrame | None, first_tsc: int | None) -> Copies:
    rows = np.flatnonzero(event == xe.TRC_PV_HYPERCALL_V2)
    copy = ((_column(events, "hypercall", rows, -1) == xe.HYPERCALL_GRANT_TABLE_OP)
            & (_column(events, "gnttab_cmd", rows, -1) == xe.GNTTABOP_COPY))
    rows = rows[copy]
    c_tsc, c_cpu = tsc[rows], cpu[rows].astype(np.int64)
    issuer = np.full(rows.size, -1, dtype=np.int64)
    if rows.size and switches is not None and len(switches):
        issuer = dom0_occupant(switches, first_tsc, c_cpu, c_tsc)
    count = np.maximum(_column(events, "count", rows, 1), 1)
    return Copies(c_tsc, c_cpu, count, issuer)


def dom0_occupant(switches: pd.DataFrame, first_tsc: int | None, cpu: np.ndarray,
                  tsc: np.ndarray) -> np.ndarray:
    """The dom0 vCPU that held physical CPU ``cpu[i]`` at ``tsc[i]`` (-1: another domain, or
    unknown): who ran there as ``sources.xentrace.running_on`` over ``cpu_runs`` tells, read
    from the SWITCH records themselves — the unit the last switch on that CPU at or before
    the time brought in; before a CPU's first switch, the one that switch took off, from
    ``first_tsc`` on (the smallest switch TSC when None). Not building every CPU's run
    intervals (3.5 M on the realistic set, 0.4-0.6 s) for the copies' issuers alone."""
    s_cpu = switches["cpu"].to_numpy()
    s_tsc = switches["tsc"].to_numpy(np.int64)
    origin = first_tsc if first_tsc is not None else int(s_tsc.min())
    out = np.full(tsc.size, -1, dtype=np.int64)
    for c in np.unique(cpu).tolist():  # one step per physical CPU, vectorized within it
        mine = np.flatnonzero(s_cpu == c)
        if mine.size == 0:
            continue
        t = s_tsc[mine]
        if (t[1:] < t[:-1]).any():  # a CPU's switches by TSC, ties in the given order
            order = np.argsort(t, kind="stable")
            mine, t = mine[order], t[order]
        pick = np.flatnonzero(cpu == c)
        k = np.searchsorted(t, tsc[pick], side="right") - 1
        after = k >= 0
        before = ~after & (tsc[pick] >= origin)  # (so origin < t[0])
        row = np.where(after, mine[np.maximum(k, 0)], mine[0])
        domid, vcpu = (np.where(after, switches[f"next_{part}"].to_numpy()[row],
                                switches[f"prev_{part}"].to_numpy()[row]).astype(np.int64)
                       for part in ("domid", "vcpu"))
        unit = (domid << 16) | vcpu  # as cpu_runs keys a unit (and takes it apart)
        dom0 = (after | before) & ((unit >> 16).astype(np.int32) == 0)
        out[pick] = np.where(dom0, (unit & 0xFFFF).astype(np.int32), -1)
    return out


@dataclasses.dataclass(frozen=True)
class VcpuTimeline:
    """One vCPU's run-state intervals, in time order."""

    start: np.ndarray
    end: np.ndarray
    """Exclusive; an interval still open at the end of the trace ends at its last TSC."""
    state: np.ndarray
    cpu: np.ndarray

    def _index(self, tsc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(self.start, tsc, side="right") - 1
        j = np.maximum(i, 0)
        inside = (i >= 0) & (tsc < self.end[j]) if self.start.size else np.zeros(tsc.size, bool)
        return j, inside

    def state_at(self, tsc: np.ndarray) -> np.ndarray:
        """Run-state code at each TSC (``UNKNOWN`` outside the trace's knowledge)."""
        tsc = np.asarray(tsc, dtype=np.int64)
        if self.start.size == 0:
            return np.full(tsc.size, UNKNOWN, dtype=np.int64)
        j, inside = self._index(tsc)
        return np.where(inside, self.state[j], UNKNOWN)

    def cpu_at(self, tsc: np.ndarray) -> np.ndarray:
        """Physical CPU of the interval holding each TSC (-1 unknown)."""
        return self.state_cpu_at(tsc)[1]

    def state_cpu_at(self, tsc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`state_at` and :meth:`cpu_at` of the same TSCs, the intervals found once."""
        tsc = np.asarray(tsc, dtype=np.int64)
        if self.start.size == 0:
            return (np.full(tsc.size, UNKNOWN, dtype=np.int64),
                    np.full(tsc.size, -1, dtype=np.int64))
        j, inside = self._index(tsc)
        return np.where(inside, self.state[j], UNKNOWN), np.where(inside, self.cpu[j], -1)

    @cached_property
    def _run_starts(self) -> np.ndarray:
        return self._runs[0]

    def next_run(self, tsc: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """First time at or after each TSC the vCPU was running: the TSC itself when it was
        running then, else the start of its next running interval (``NO_TSC``: never).
        ``state``: :meth:`state_at` of these TSCs, when the caller has it already."""
        tsc = np.asarray(tsc, dtype=np.int64)
        out = np.full(tsc.size, NO_TSC, dtype=np.int64)
        running = (self.state_at(tsc) if state is None else state) == RUNNING
        out[running] = tsc[running]
        starts = self._run_starts
        if starts.size:
            k = np.searchsorted(starts, tsc, side="left")
            later = ~running & (k < starts.size)
            out[later] = starts[np.minimum(k, starts.size - 1)][later]
        return out

    @cached_property
    def _runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The running intervals' starts and ends, the cycles run by the end of each and by
        its start (:meth:`ran_since`; made once per timeline, not per question)."""
        run = self.state == RUNNING
        s, e = self.start[run], self.end[run]
        length = e - s
        done = np.cumsum(length)
        return s, e, done, done - length

    def ran_since(self, tsc: np.ndarray, amount: int) -> np.ndarray:
        """Per TSC: the latest time ``t`` at or before it such that the vCPU ran ``amount``
        cycles within [t, tsc] (``NO_TSC`` when it did not run that long before)."""
        tsc = np.asarray(tsc, dtype=np.int64)
        s, e, done, done_before = self._runs  # cycles run by the end / start of each interval
        out = np.full(tsc.size, NO_TSC, dtype=np.int64)
        if s.size == 0:
            return out
        k = np.searchsorted(s, tsc, side="right") - 1   # the last run starting by tsc
        j = np.maximum(k, 0)
        ej = e[j]
        ran = np.where(k >= 0, done[j] - (ej - np.minimum(tsc, ej)), 0)
        target = ran - amount                       # cycles run by the time t sought
        ok = (k >= 0) & (target >= 0)
        m = np.searchsorted(done, target, side="left")  # the interval where it is reached
        m = np.minimum(m, s.size - 1)
        out[ok] = (s[m] + (target - done_before[m]))[ok]
        return out


def _vcpu_key(domid: Any, vcpu: Any) -> Any:
    """(domain, vCPU) → one int64, distinct for every pair of 32-bit ids."""
    return (np.asarray(domid).astype(np.int64) << 32) + np.asarray(vcpu).astype(np.int64)


class Timelines:
    """Every vCPU's :class:`VcpuTimeline`, built on first use."""

    def __init__(self, runstates: pd.DataFrame) -> None:
        self.runstates = runstates
        self._cache: dict[tuple[int, int], VcpuTimeline] = {}
        self._built = False
        last = runstates.attrs.get("last_tsc")
        self._open_end = int(last) if last is not None else (
            int(runstates["start_tsc"].max()) + 1 if len(runstates) else 0)

    def __getitem__(self, key: tuple[int, int]) -> VcpuTimeline:
        if key not in self._cache:
            rs = self.runstates
            rows = self._rows(_vcpu_key(*key))
            start = rs["start_tsc"].to_numpy(np.int64)[rows]
            # a copy of its own (made as the open ends are filled in), raised to the starts
            # in place below
            end = rs["end_tsc"].array[rows].to_numpy(dtype=np.int64, na_value=self._open_end,
                                                     copy=True)
            # the codes and CPUs as the table holds them (int8, int16: memory, as every
            # timeline is built as soon as the trace is read); compared, or put in int64 arrays
            state = rs["state"].cat.codes.to_numpy()[rows]
            cpu = rs["cpu"].to_numpy()[rows]
            if (start[1:] < start[:-1]).any():  # the reader's are in time order already
                order = np.argsort(start, kind="stable")
                start, end, state, cpu = start[order], end[order], state[order], cpu[order]
            self._cache[key] = VcpuTimeline(start, np.maximum(end, start, out=end), state, cpu)
        return self._cache[key]

    def build_all(self) -> None:
        """Every vCPU's timeline built now (ahead of the questions, e.g. in a worker thread;
        then threads may ask at once: nothing is built or cached as they do)."""
        if self._built:
            return
        self._built = True
        for key in self._groups[0].tolist():
            line = self[(key >> 32, key & 0xFFFFFFFF)]
            line._run_starts, line._runs  # noqa: B018  (cached properties: made now)

    @cached_property
    def _groups(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """The run states grouped by vCPU once (a vCPU's rows found by one search, not by
        comparing every row's (domain, vCPU) per timeline: 8.7 M rows on a large trace):
        the (domain, vCPU) keys ascending (:func:`_vcpu_key`), the order that groups the
        rows (None: the table's own, as the reader gives it — per vCPU, ascending), and
        each key's first position in that order (one more: the end)."""
        rs = self.runstates
        domid, vcpu = rs["domid"].to_numpy(), rs["vcpu"].to_numpy()
        n = domid.size
        if n == 0:
            return np.zeros(0, dtype=np.int64), None, np.zeros(1, dtype=np.int64)
        # where the (domain, vCPU) changes: the keys made there only (no int64 key per row)
        new = np.ones(n, dtype=bool)
        np.not_equal(domid[1:], domid[:-1], out=new[1:])
        new[1:] |= vcpu[1:] != vcpu[:-1]
        bounds = np.r_[np.flatnonzero(new), n]
        keys = _vcpu_key(domid[bounds[:-1]], vcpu[bounds[:-1]])
        if (keys[1:] > keys[:-1]).all():  # grouped, ascending: each vCPU's rows one slice
            return keys, None, bounds
        every = _vcpu_key(domid, vcpu)  # another order: grouped once (stable)
        order = np.argsort(every, kind="stable")
        every = every[order]
        bounds = np.r_[0, np.flatnonzero(every[1:] != every[:-1]) + 1, n]
        return every[bounds[:-1]], order, bounds

    def _rows(self, key: int) -> slice | np.ndarray:
        """The rows of one (domain, vCPU) key, in table order (empty: none)."""
        keys, order, bounds = self._groups
        g = int(np.searchsorted(keys, key))
        span = slice(int(bounds[g]), int(bounds[g + 1])) \
            if g < keys.size and keys[g] == key else slice(0, 0)
        return span if order is None else order[span]

    @property
    def last_tsc(self) -> int:
        """Where the trace's knowledge of run states ends."""
        return self._open_end

    def vcpus(self, domid: int) -> list[int]:
        """The vCPUs of a domain that have run states."""
        keys = self._groups[0]
        return [int(v) for v in keys[(keys >> 32) == domid] & 0xFFFFFFFF]

    def domains(self) -> list[int]:
        """The domains that have run states, ascending."""
        return sorted({int(d) for d in self._groups[0] >> 32})

    def next_change(self, domid: int, tsc: np.ndarray) -> np.ndarray:
        """Per TSC, the first run-state change of any of the domain's vCPUs at or after it
        (``NO_TSC``: none): each vCPU's sorted starts searched, the earliest kept (no sort
        of the domain's merged starts)."""
        tsc = np.asarray(tsc, dtype=np.int64)
        out = np.full(tsc.size, np.iinfo(np.int64).max, dtype=np.int64)
        starts = self.runstates["start_tsc"].to_numpy(np.int64)
        for v in self.vcpus(domid):
            start = starts[self._rows(int(_vcpu_key(domid, v)))]  # a view: no timeline kept
            if (start[1:] < start[:-1]).any():
                start = np.sort(start)
            k = np.searchsorted(start, tsc, side="left")
            later = k < start.size
            np.minimum(out, np.where(later, start[np.minimum(k, start.size - 1)], out), out=out)
        return np.where(out == np.iinfo(np.int64).max, NO_TSC, out)
