"""The realistic host assembled: scheduling, NIC, netback, guests, faults, background.

:class:`HostSim` has the interface the simulator's segments and writers use (tables of wire
frames, netback units and guest frames; the socket log; the fault log; the trace) and owns
one instance of each component. ``run`` drives the event loop; ``finish`` fills the gaps
with unrelated work and expands the scheduler events into Xen's records.
"""

from __future__ import annotations

import dataclasses
import random
from array import array
from typing import Any

import numpy as np

from ..physics import FaultPlan, Params, Table
from .background import Background, fill
from .engine import MS, RAW_WIDTH, US, Engine
from .faults import Faults
from .guest import Guest
from .netback import Netback
from .nic import Nic, Servers
from .sched import Pcpu, Vcpu
from .shape import DOM0, HostShape, RolePlan, Roles, Schedule, background_vcpu, draw_role_plan
from .tables import INDEX_COLUMNS, TIME_COLUMNS, new_tables
from .tracebuild import wrap_records, write_part
from .traffic import PEER_RATIO, Exchange, Flow, flows_at, guest_first
from .xensched import expand


@dataclasses.dataclass
class HostParams(Params):
    """The toy host's tunables plus the realistic host's (ns; shares are probabilities)."""

    udp_share: float = 0.25             # exchanges of the captured guest that are UDP
    dom0_running: float = 0.18          # a blocked dom0 vCPU found running unrelated work
    dom0_runnable: float = 0.06         # ... found woken for it, runnable behind a domain
    bg_hold: float = 0.10               # a woken vCPU finds another domain on its pCPU
    bg_wait_median: float = 70 * US     # how long that one keeps the pCPU
    unrelated_ago_median: float = 25 * US
    unrelated_left_median: float = 30 * US
    unrelated_run_median: float = 40 * US   # corpus/xentrace: dom0 vCPUs run ~40 µs a wake
    dom0_gap: float = 25 * MS           # mean gap between unrelated wakes of a dom0 vCPU
    bg_gap: float = 35 * MS             # mean gap between other domains' bursts on a pCPU
    bg_run_median: float = 120 * US
    sched_median: float = 2.2 * US      # beyond the 3 µs floor after a WAKE


class HostSim(Engine):
    """One segment of the realistic host (or, joined, the whole run)."""

    TABLE_TIME = TIME_COLUMNS
    TABLE_INDEX = INDEX_COLUMNS
    #: Arrays a segment hands back besides its tables, and their time columns.
    ARRAY_TIME = {"trace": (1,), "reads": (2,), "strace_ns": (0,)}

    def __init__(self, params: HostParams, requests: dict[int, list[Exchange]], content: Any,
                 faults: FaultPlan, t_begin: int, seed: int, *, conns: list[Flow],
                 req_range: tuple[int, int] | None = None, connect: bool = True,
                 guest_domid: int = 5, nic_irq: int = 58, shape: HostShape | None = None,
                 role_plan: RolePlan | None = None,
                 trace_parts: dict[str, Any] | None = None) -> None:
        super().__init__(t_begin, seed, params.sigma)
        self.p = params
        self.shape = shape or HostShape()
        self.captured = self.shape.guests[0]
        self.domid, self.nic_irq = guest_domid, nic_irq
        self.content = content
        self.exchanges = requests
        self.flows = [dataclasses.replace(c, delivered=[]) for c in conns]
        tables = new_tables()
        self.wire: Table = tables["wire"]
        self.units: Table = tables["units"]
        self.rows: Table = tables["rows"]
        self.reads: Any = array("q")  # array('q') while simulating, an ndarray after
        self.strace_ns: Any = array("q")  # as reads
        self.strace_calls: list[str] = []
        self.trace = np.zeros((0, RAW_WIDTH), dtype=np.int64)
        n = len(next(iter(requests.values()))) if requests else 0
        lo, hi = req_range if req_range is not None else (0, n)
        self.pcpus = [Pcpu(p, t_begin, background_vcpu(p)) for p in range(self.shape.n_pcpus)]
        self.dom0 = [Vcpu(self, DOM0, k, self.pcpus[self.shape.dom0_pcpu(k)], unrelated=True)
                     for k in range(self.shape.n_dom0)]
        self.role_plan = role_plan or draw_role_plan(self.shape, self.rnd, n)
        self.roles: Roles = self.role_plan.roles(t_begin, lo)
        self._changes = [c for c in self.role_plan.changes if lo <= c[0] < hi]
        self.background = Background(self)
        self.faults = Faults(self, faults)
        self.nic, self.servers, self.netback = Nic(self), Servers(self), Netback(self)
        self.guests = {g: Guest(self, g, Vcpu(self, g, 0, self.pcpus[self.shape.guest_pcpu(g)],
                                               unrelated=False), requests.get(g, []),
                                logged=g == self.captured, connect=connect,
                                req_range=(guest_first(requests, g, lo),
                                           guest_first(requests, g, hi)),
                                think=params.think_median * (1 if g == self.captured
                                                             else PEER_RATIO))
                       for g in self.shape.guests}
        self.seed = seed
        #: where a segment writes its part of the trace (``dir``, ``tsc_at_t0``, ``cpu_hz``,
        #: ``window_cycles``); None: the records stay in memory
        self.trace_parts = trace_parts
        self.parts: list[dict[str, Any]] = []

    @staticmethod
    def n_requests(requests: dict[int, list[Exchange]]) -> int:
        return len(next(iter(requests.values()))) if requests else 0

    @staticmethod
    def conns_at(conns: list[Flow], requests: dict[int, list[Exchange]],
                 first: int) -> list[Flow]:
        return flows_at(conns, requests, first)

    @property
    def fault_log(self) -> list[dict[str, Any]]:
        return self.faults.log

    @fault_log.setter
    def fault_log(self, value: list[dict[str, Any]]) -> None:
        self.faults.log = value

    @property
    def guest(self) -> Vcpu:
        """The captured guest's vCPU."""
        return self.guests[self.captured].vcpu

    @property
    def conns(self) -> list[Flow]:
        return self.flows

    def request_sent(self, r: int, t: int) -> None:
        """The captured guest sends request ``r`` at ``t``: the role changes due then."""
        while self._changes and self._changes[0][0] <= r:
            _, role, value = self._changes.pop(0)
            self.roles.schedule(role).change(t, value)

    def exchange(self, c: int, r: int) -> Exchange:
        return self.exchanges[self.flows[c].guest][r]

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        for g in self.guests.values():
            g.start()
        self.loop()
        self.t_end = self.now + 200 * US
        for v in (*self.dom0, *(g.vcpu for g in self.guests.values())):
            v.settle(self.t_end)
        self.finish()

    def finish(self) -> None:
        """Unrelated work in the gaps, then every scheduler event as Xen's records."""
        rows, raw = fill(self, self.seed ^ 0x5EED)
        sched = np.concatenate([self.sched_rows(), rows])
        wraps = wrap_records(self, random.Random(self.seed ^ 0x3A9))
        self.trace = expand(sched, self.seed ^ 0xC2, self.shape.guests,
                            head=(self.raw_rows(), raw, wraps))

    def trace_records(self) -> np.ndarray:
        return self.trace

    def segment_trace(self, k: int) -> np.ndarray:
        """With ``trace_parts``: write this segment's part of the trace, hand back no
        records (the join then moves no trace through memory)."""
        if self.trace_parts is None:
            return self.trace_records()
        opts = dict(self.trace_parts)
        self.parts = [{**write_part(self, opts.pop("dir"), k, **opts), "k": k}]
        self.trace = np.zeros((0, RAW_WIDTH), dtype=np.int64)
        return self.trace

    def segment_extra(self) -> dict[str, Any]:
        return {"schedules": self.schedules(), "parts": self.parts}

    def join_extra(self, extra: dict[str, Any], shift: int) -> None:
        """Role schedules of the joined segments, one after the other; their trace parts
        with their shifts (blind spots in joined time)."""
        joined = getattr(self, "_joined_schedules", None)
        shifted = _shift_points(extra["schedules"], shift)
        self._joined_schedules = shifted if joined is None else _concat_points(joined, shifted)
        for part in extra["parts"]:
            spots = [{**s, "start_ns": s["start_ns"] + shift, "end_ns": s["end_ns"] + shift}
                     for s in part["spots"]]
            self.parts.append({**part, "shift": shift, "spots": spots})

    def set_trace(self, trace: np.ndarray) -> None:
        self.trace = trace

    def schedules(self) -> dict[str, Any]:
        """Each role's change points (start_ns, value), for scenario.json."""
        joined = getattr(self, "_joined_schedules", None)
        if joined is not None:
            return joined
        r = self.roles
        return {"nic_irq_pcpu": r.nic_pcpu.points(), "nic_vcpu": r.nic_vcpu.points(),
                "netback_rx_vcpu": {g: s.points() for g, s in r.rx_vcpu.items()},
                "netback_tx_vcpu": {g: s.points() for g, s in r.tx_vcpu.items()}}


def _shift_points(value: Any, shift: int) -> Any:
    if isinstance(value, dict):
        return {k: _shift_points(v, shift) for k, v in value.items()}
    return [(t + shift, v) for t, v in value]


def _concat_points(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {k: _concat_points(a[k], b[k]) for k in a}
    out = list(a)
    for point in b:     # a segment's first point repeats the value the last one ended with
        if not out or point[1] != out[-1][1]:
            out.append(point)
    return out


__all__ = ["HostParams", "HostSim", "Schedule"]
