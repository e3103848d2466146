"""The cause of a stalled stage, read from the run states of the vCPU that held the packet.

Each stage of each direction has an *owner*: the vCPU whose run state during the stage says
why it took long (DESIGN.md: "Causes on this path come from the run states of the dom0 vCPU
(in ``vmm``, ``ring``) and of the guest vCPU (in ``socket_write``), as on receive"):

* ``dom0`` — the dom0 vCPU the NIC interrupt went to (receive ``vmm``, ``driver_domain``) or
  the one that took the guest's frame (every dom0 stage of transmit): runnable for most of the
  stage → ``dom0_runnable``, naming who had its CPU;
* ``netback`` — the dom0 vCPU that issued the receive copy (receive ``ring``): runnable →
  ``dom0_runnable``; otherwise the guest vCPU decides: running (it ran, yet posted no ring
  slots) → ``ring_full``, runnable → ``vcpu_runnable``, blocked → ``vcpu_blocked``;
* ``guest`` — the guest vCPU (receive ``remap``, ``socket_read``; transmit ``socket_write``):
  whichever state filled most of the stage → ``vcpu_running`` (the delay was inside the
  guest), ``vcpu_runnable`` (preempted, naming by whom), ``vcpu_blocked``.

A stage that overlaps a lost-records blind spot gets ``lost_records``: its cause is unknown.
A merged interval takes the owner of its first stage.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..groups import unique
from ..sources.xentrace import state_durations, who_ran
from .trace_attribute import NA_NS, TraceAttribution

#: A vCPU state must fill this share of a stalled stage to be named its cause.
CAUSE_SHARE = 0.5

#: (direction, stage) → whose run states explain it.
OWNER: dict[tuple[str, str], str] = {
    ("rx", "vmm"): "dom0", ("rx", "driver_domain"): "dom0", ("rx", "ring"): "netback",
    ("rx", "remap"): "guest", ("rx", "socket_read"): "guest",
    ("tx", "socket_write"): "guest", ("tx", "vmm"): "dom0", ("tx", "ring"): "dom0",
    ("tx", "remap"): "dom0", ("tx", "driver_domain"): "dom0",
}
_GUEST_CAUSE = np.array(["vcpu_running", "vcpu_runnable", "vcpu_blocked"], dtype=object)


def owner_of(direction: str, name: str, merged: tuple[str, ...] = ()) -> str | None:
    """Whose run states explain interval ``name`` (a stage, or a merged interval standing
    for the stages ``merged``) of ``direction``."""
    return OWNER.get((direction, merged[0] if merged else name))


def stage_causes(attribution: TraceAttribution, label: np.ndarray,
                 ways: Mapping[str, np.ndarray],
                 spans: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, str | None]]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Cause and detail per row labelled anomalous.

    ``ways``: per direction (``rx``, ``tx``), its rows (a boolean mask); ``spans`` maps
    (direction, interval name) to the interval's start and end checkpoints (dom0 ns per row)
    and its owner (:func:`owner_of`).
    """
    n = label.size
    cause = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    if attribution.fit is None or attribution.trace is None:
        return cause, detail
    named = set(label[label != ""].tolist())  # the labels compared once, not per span
    occupants = _Occupants(attribution.trace.cpu_runs)
    for (way, name), (a, b, owner) in spans.items():
        if name not in named or owner is None:
            continue
        rows = np.flatnonzero((label == name) & ways[way] & (a != NA_NS) & (b != NA_NS))
        if rows.size == 0:
            continue
        s_tsc, e_tsc = attribution.ns_to_tsc(a[rows]), attribution.ns_to_tsc(b[rows])
        blind = _overlaps_lost(attribution.trace.lost, s_tsc, e_tsc)
        cause[rows[blind]] = "lost_records"
        detail[rows[blind]] = "the trace dropped records during this interval"
        keep = ~blind
        _explain(attribution, owner, rows[keep], s_tsc[keep], e_tsc[keep], cause, detail,
                 occupants)
    return cause, detail


class _Occupants:
    """The CPU occupants (``XenTrace.cpu_runs``) taken apart once per vCPU and per CPU asked
    about: :func:`preempted_by` runs once per anomalous row, and scanning every run for each
    made the causes' cost grow as anomalous rows times runs."""

    def __init__(self, runs: pd.DataFrame | None) -> None:
        self.runs = runs
        self._of_vcpu: dict[tuple[int, int], pd.DataFrame] = {}
        self._of_cpu: dict[int, pd.DataFrame] = {}

    def of_vcpu(self, domid: int, vcpu: int) -> pd.DataFrame:
        """The runs of vCPU ``vcpu`` of domain ``domid``, in the runs' order."""
        if (domid, vcpu) not in self._of_vcpu:
            runs = self.runs
            assert runs is not None
            self._of_vcpu[(domid, vcpu)] = runs[(runs["domid"].to_numpy() == domid)
                                                & (runs["vcpu"].to_numpy() == vcpu)]
        return self._of_vcpu[(domid, vcpu)]

    def of_cpu(self, cpu: int) -> pd.DataFrame:
        """The runs on physical CPU ``cpu``, in the runs' order."""
        if cpu not in self._of_cpu:
            runs = self.runs
            assert runs is not None
            self._of_cpu[cpu] = runs[runs["cpu"].to_numpy() == cpu]
        return self._of_cpu[cpu]


def _explain(attribution: TraceAttribution, owner: str, rows: np.ndarray, s_tsc: np.ndarray,
             e_tsc: np.ndarray, cause: np.ndarray, detail: np.ndarray,
             occupants: _Occupants) -> None:
    """Name the cause of rows whose interval [s, e] the owner's run states explain."""
    if owner in ("dom0", "netback"):
        vcpus = attribution.dom0_vcpu if owner == "dom0" else attribution.copy_vcpu
        done = _dom0_runnable(attribution, vcpus, rows, s_tsc, e_tsc, cause, detail,
                              occupants)
        if owner == "dom0":
            return
        rows, s_tsc, e_tsc = rows[~done], s_tsc[~done], e_tsc[~done]
    _guest_state(attribution, rows, s_tsc, e_tsc, cause, detail, occupants,
                 ring=owner == "netback")


def _dom0_runnable(attribution: TraceAttribution, vcpus: np.ndarray | None, rows: np.ndarray,
                   s_tsc: np.ndarray, e_tsc: np.ndarray, cause: np.ndarray,
                   detail: np.ndarray, occupants: _Occupants) -> np.ndarray:
    """Rows whose dom0 vCPU waited runnable for most of the interval: ``dom0_runnable``."""
    done = np.zeros(rows.size, dtype=bool)
    if vcpus is None:
        return done
    trace = attribution.trace
    assert trace is not None  # stage_causes checked it
    for v in unique(vcpus[rows]):
        pick = np.flatnonzero(vcpus[rows] == v)
        if v < 0:
            continue
        d = state_durations(trace.runstates, 0, int(v), s_tsc[pick], e_tsc[pick])
        span = np.maximum(e_tsc[pick] - s_tsc[pick], 1)
        good = d["runnable"].to_numpy() / span >= CAUSE_SHARE
        for k in pick[good]:
            cause[rows[k]] = "dom0_runnable"
            detail[rows[k]] = f"d0v{v} " + preempted_by(trace.cpu_runs, 0, int(v),
                                                         int(s_tsc[k]), int(e_tsc[k]),
                                                         occupants)
        done[pick[good]] = True
    return done


def _guest_state(attribution: TraceAttribution, rows: np.ndarray, s_tsc: np.ndarray,
                 e_tsc: np.ndarray, cause: np.ndarray, detail: np.ndarray,
                 occupants: _Occupants, ring: bool) -> None:
    """Rows whose guest vCPU spent most of the interval in one state: that state's cause."""
    domid = attribution.domid
    if domid is None or rows.size == 0:
        return
    vcpus = attribution.guest_vcpu
    per_row = vcpus[rows] if vcpus is not None else np.zeros(rows.size, dtype=np.int64)
    per_row = np.where(per_row < 0, _default_vcpu(attribution), per_row)
    trace = attribution.trace
    assert trace is not None  # stage_causes checked it
    for v in unique(per_row):
        pick = np.flatnonzero(per_row == v)
        d = state_durations(trace.runstates, domid, int(v), s_tsc[pick], e_tsc[pick])
        span = np.maximum(e_tsc[pick] - s_tsc[pick], 1)
        shares = np.vstack([d[s].to_numpy() / span for s in ("running", "runnable", "blocked")])
        top, top_share = np.argmax(shares, axis=0), np.max(shares, axis=0)
        picked = _GUEST_CAUSE[top]
        if ring:  # netback waited for ring slots while the guest ran: it posted none
            picked = np.where(picked == "vcpu_running", "ring_full", picked)
        for j in np.flatnonzero(top_share >= CAUSE_SHARE):
            k, c, who = pick[j], picked[j], f"d{domid}v{v}"
            cause[rows[k]] = c
            if c == "vcpu_runnable":
                detail[rows[k]] = preempted_by(trace.cpu_runs, domid, int(v), int(s_tsc[k]),
                                               int(e_tsc[k]), occupants)
            else:
                detail[rows[k]] = f"{who} was {'blocked' if c == 'vcpu_blocked' else 'running'}"


def _default_vcpu(attribution: TraceAttribution) -> int:
    """The guest vCPU to read when a row names none: the one most rows name, else 0."""
    v = attribution.guest_vcpu
    known = v[v >= 0] if v is not None else np.zeros(0, dtype=np.int64)
    return int(np.bincount(known).argmax()) if known.size else 0


def _overlaps_lost(lost: pd.DataFrame | None, s_tsc: np.ndarray, e_tsc: np.ndarray
                   ) -> np.ndarray:
    """Rows whose [s, e] overlaps a lost-records blind spot."""
    if lost is None or len(lost) == 0:
        return np.zeros(s_tsc.size, dtype=bool)
    first = lost["tsc_first"].to_numpy(dtype=np.int64, na_value=0)
    last = lost["tsc"].to_numpy(np.int64)
    lo = np.minimum(first, last)
    order = np.argsort(lo)
    lo, hi = lo[order], np.maximum.accumulate(np.maximum(first, last)[order])
    k = np.searchsorted(lo, e_tsc, side="right") - 1
    ok = k >= 0
    return ok & (hi[np.maximum(k, 0)] >= s_tsc)


def preempted_by(runs: pd.DataFrame, domid: int, vcpu: int, s: int, e: int,
                 occupants: _Occupants | None = None) -> str:
    """``preempted by d3v0 on CPU 2 (97% of it)`` — the busiest other occupant of the vCPU's
    CPU during [s, e]. ``occupants``: ``runs`` taken apart already (:class:`_Occupants`)."""
    occupants = occupants if occupants is not None else _Occupants(runs)
    mine = occupants.of_vcpu(domid, vcpu)
    if len(mine) == 0:
        return "preempted"
    start = mine["start_tsc"].to_numpy(np.int64)
    k = int(np.clip(np.searchsorted(start, e, side="left"), 0, len(mine) - 1))
    cpu = int(mine["cpu"].to_numpy()[k])
    ran = who_ran(occupants.of_cpu(cpu), cpu, s, e)
    others = ran[(ran["domid"] != domid) & ~ran["idle"]]
    if len(others) == 0:
        return f"runnable on CPU {cpu} (no other domain ran there)"
    top = others.groupby(["domid", "vcpu"])["cycles"].sum().sort_values(ascending=False)
    (d, v), cycles = top.index[0], top.iloc[0]
    return f"preempted by d{d}v{v} on CPU {cpu} ({100 * cycles / max(e - s, 1):.0f}% of it)"
