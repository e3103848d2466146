"""The physics of the simulated host: a small discrete-event model of the Xen receive path.

One guest (one vCPU) runs a request/response client over a few TCP connections to a
memcached-like server behind the physical NIC. Events run in time order through a heap; each
vCPU serves its work in arrival order, blocks when idle and is woken (WAKE, blocked→runnable,
later runnable→running on its pCPU) by the next event. Every run-state change is written as
the hypervisor would trace it, so the trace, the captures, the socket log and the truth all
come from the same timeline.

Times are int64 nanoseconds of TRUE time (= dom0's clock). Faults (preemptions, app stalls,
dom0 starvation, a full ring) are hooks the scenario asks for on given requests.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from array import array
from collections.abc import Callable
from heapq import heappush as _heappush
from typing import Any

import numpy as np

from ..xen_events import (
    DOMID_IDLE,
    GNTTABOP_COPY,
    HVM_CALLBACK_VECTOR,
    HYPERCALL_GRANT_TABLE_OP,
    RUNSTATE_BLOCKED,
    RUNSTATE_RUNNABLE,
    RUNSTATE_RUNNING,
    TRC_HVM_INJ_VIRQ,
    TRC_HW_IRQ_HANDLED,
    TRC_PV_HYPERCALL_V2,
    TRC_SCHED_BLOCK,
    TRC_SCHED_RUNSTATE_CHANGE,
    TRC_SCHED_SWITCH,
    TRC_SCHED_SWITCH_INFNEXT,
    TRC_SCHED_SWITCH_INFPREV,
    TRC_SCHED_WAKE,
)
from .frames import ACK, PSH, SYN, Content
from .writers import strace_quote

US = 1_000
MS = 1_000_000
#: PV_HYPERCALL_V2 first word for grant_table_op: the hypercall number in bits 0-11 and the
#: argument-present bits Xen sets for its three arguments (0x01100000).
HYPERCALL_GNTTAB_W0 = 0x01100000 | HYPERCALL_GRANT_TABLE_OP
#: netback copies at most this many packets per grant-copy hypercall.
NETBACK_BATCH = 64
#: NAPI budget of the dom0 NIC driver per poll.
NAPI_BUDGET = 64
#: Largest GSO/GRO segment payload (IP total length ≤ 65535).
GSO_MAX_PAYLOAD = 65535 - 40
#: Bytes the application asks for per read.
READ_BUFFER = 16384
#: Credit scheduler time slice, ns (SWITCH_INFNEXT's next-slice word).
SLICE_NS = 30 * MS
U32 = 0xFFFFFFFF
#: Width of one record in ``Sim.trace``: cpu, t_ns, event, timestamped, n_words, 4 words.
REC_WIDTH = 9
_PAD = ((0, 0, 0, 0), (0, 0, 0), (0, 0), (0,), ())
_TO_RUNNING = TRC_SCHED_RUNSTATE_CHANGE | RUNSTATE_RUNNABLE << 8 | RUNSTATE_RUNNING << 4
_TO_RUNNABLE = TRC_SCHED_RUNSTATE_CHANGE | RUNSTATE_BLOCKED << 8 | RUNSTATE_RUNNABLE << 4
_TO_BLOCKED = TRC_SCHED_RUNSTATE_CHANGE | RUNSTATE_RUNNING << 8 | RUNSTATE_BLOCKED << 4
#: Normals drawn per block for :meth:`Sim.lat`.
LAT_BLOCK = 1 << 16


def runstate_event(old: int, new: int) -> int:
    """RUNSTATE_CHANGE event id for ``old → new``."""
    return TRC_SCHED_RUNSTATE_CHANGE | (old << 8) | (new << 4)


@dataclasses.dataclass
class Params:
    """Tunables of the healthy host (medians of lognormal delays, ns)."""

    n_conns: int = 4
    mss: int = 1460
    wire_ns_per_byte: float = 0.8           # 10 GbE
    think_median: float = 4 * MS            # application pause between requests
    server_median: float = 45 * US          # request on the wire → first response byte back
    resp_median: float = 2500.0             # response size (bytes), clipped to 100..30000
    resp_sigma: float = 1.1
    coalesce_median: float = 10 * US        # NIC rx-usecs
    sched_median: float = 4 * US            # woken vCPU → running on an idle pCPU
    driver_median: float = 0.9 * US         # dom0 driver per frame (to the phys tap)
    bridge_median: float = 1.6 * US         # bridge → vif tap
    kick_median: float = 1.5 * US           # netback thread wake
    copy_setup_median: float = 2.0 * US
    notify_median: float = 1.0 * US
    netfront_median: float = 3.0 * US
    netfront_per_frame: float = 0.8 * US
    stack_median: float = 4.0 * US          # guest stack: capture → socket queue
    app_wake_median: float = 6.0 * US       # socket data → poll returns
    sigma: float = 0.45                     # jitter of the small delays
    gso: bool = False                       # dom0 GRO/GSO toward the vif (offload scenario)
    guest_gro: bool = False                 # guest frames re-merged with other boundaries


@dataclasses.dataclass
class Request:
    """One exchange, pre-drawn: which connection, what is sent, how much comes back."""

    conn: int
    request: bytes
    resp_len: int
    resp_header: bytes
    req_pos: int = 0           # virtual content position of the request bytes
    resp_pos: int = 0          # virtual content position of the response bytes
    tx_off: int = 0            # stream offset (client → server) of the request
    rx_off: int = 0            # stream offset (server → client) of the response


def draw_conns(params: Params, rnd: random.Random) -> list[Conn]:
    """The client's connections: ephemeral ports, initial sequence numbers, fds 3, 4, …"""
    return [Conn(sport=40000 + rnd.randrange(20000) + c, c_isn=rnd.getrandbits(32),
                 s_isn=rnd.getrandbits(32), fd=3 + c) for c in range(params.n_conns)]


def conns_at(conns: list[Conn], reqs: list[Request], first: int) -> list[Conn]:
    """The connections' stream positions just before request ``first`` (all idle then)."""
    out = []
    for c, conn in enumerate(conns):
        nxt = next((r for r in reqs[first:] if r.conn == c), None)
        if nxt is not None:
            tx, rx = nxt.tx_off, nxt.rx_off
        else:
            mine = [r for r in reqs if r.conn == c]
            tx = mine[-1].tx_off + len(mine[-1].request) if mine else 0
            rx = mine[-1].rx_off + mine[-1].resp_len if mine else 0
        out.append(dataclasses.replace(conn, tx_next=tx, rx_next=rx, acked=rx, consumed=rx,
                                       delivered=[]))
    return out


@dataclasses.dataclass
class Conn:
    """A TCP connection's numbering state."""

    sport: int
    c_isn: int
    s_isn: int
    tx_next: int = 0           # stream offsets sent so far
    rx_next: int = 0
    acked: int = 0             # rx stream bytes the guest has acknowledged
    fd: int = 3
    delivered: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    consumed: int = 0


class Table:
    """Rows as lists (one int per column, -1 = not applicable), appended during the event
    loop and indexed by the column constants below; turned into an int64 matrix at the end."""

    def __init__(self, *columns: str) -> None:
        self.columns = columns
        self.rows: list[list[int]] = []
        self._matrix: np.ndarray | None = None

    def matrix(self) -> np.ndarray:
        """All rows as an int64 matrix, one column per name (built once, on first use)."""
        if self._matrix is None:
            self._matrix = np.array(self.rows, dtype=np.int64).reshape(
                len(self.rows), len(self.columns))
        return self._matrix

    def column(self, name: str) -> np.ndarray:
        """One column as int64."""
        return self.matrix()[:, self.columns.index(name)]


#: Columns of the three tables; the first seven (the frame's fields) are common to all.
FRAME_COLUMNS = ("dir", "conn", "seq", "ack", "flags", "plen", "cpos")
WIRE_COLUMNS = (*FRAME_COLUMNS, "t_nic", "t_phys", "irq", "dom0_run", "unit", "req")
UNIT_COLUMNS = (*FRAME_COLUMNS, "t_backend", "copy", "copy_cpu", "batch", "guest_wake",
                "guest_run", "req", "wire_first", "wire_last")
ROW_COLUMNS = (*FRAME_COLUMNS, "t_guest", "unit", "t_socket", "t_write", "req")
F_DIR, F_CONN, F_SEQ, F_ACK, F_FLAGS, F_PLEN, F_CPOS = range(7)
W_NIC, W_PHYS, W_IRQ, W_RUN, W_UNIT, W_REQ = range(7, 13)
U_BACKEND, U_COPY, U_COPY_CPU, U_BATCH, U_WAKE, U_RUN, U_REQ, U_WFIRST, U_WLAST = range(7, 16)
R_GUEST, R_UNIT, R_SOCKET, R_WRITE, R_REQ = range(7, 12)


class Vcpu:
    """A vCPU pinned to one pCPU: serves work in order, blocks when idle, traces its states."""

    def __init__(self, sim: Sim, domid: int, vcpu: int, pcpu: int) -> None:
        self.sim, self.domid, self.vcpu, self.pcpu = sim, domid, vcpu, pcpu
        self.state = RUNSTATE_BLOCKED
        self.since = sim.t_begin
        self.busy_until = sim.t_begin - 1
        self.kernel_free = sim.t_begin
        self.app_free = sim.t_begin
        self.windows: list[tuple[int, int]] = []     # preempted intervals
        self.occupant: tuple[int, int, tuple[int, int], int] | None = None

    @property
    def ident(self) -> tuple[int, int]:
        return (self.domid, self.vcpu)

    def settle(self, t: int) -> None:
        """Apply the block that happened when the vCPU ran out of work before ``t``."""
        if self.state == RUNSTATE_RUNNING and t > self.busy_until:
            b = self.busy_until
            pc, d, v = self.pcpu, self.domid, self.vcpu
            # BLOCK, then the switch to idle (as Sim.rec and Sim.switch write them)
            self.sim.trace.extend((
                pc, b, TRC_SCHED_BLOCK, 1, 2, d, v, 0, 0,
                pc, b, TRC_SCHED_SWITCH_INFPREV, 1, 3, d, v, min(U32, max(0, b - self.since)), 0,
                pc, b, TRC_SCHED_SWITCH_INFNEXT, 1, 4, DOMID_IDLE, pc, 0, U32,
                pc, b, _TO_BLOCKED, 1, 1, v | d << 16, 0, 0, 0,
                pc, b, TRC_SCHED_SWITCH, 1, 4, d, v, DOMID_IDLE, pc))
            self.state, self.since = RUNSTATE_BLOCKED, b

    def running_at(self, t: int) -> bool:
        self.settle(t)
        return self.state == RUNSTATE_RUNNING

    def acquire(self, t: int, waker_pcpu: int, *, app: bool = False) -> tuple[int, int, int | None]:
        """Work arrives at ``t``: (time the vCPU runs, time the work starts, wake time or None)."""
        if self.state == RUNSTATE_RUNNING and t > self.busy_until:
            self.settle(t)
        if self.windows:
            for ps, pe in self.windows:
                if ps <= t < pe:
                    free = self.app_free if app else self.kernel_free
                    return pe, max(pe, free), None
        if self.state == RUNSTATE_RUNNING:
            free = self.app_free if app else self.kernel_free
            return t, (free if free > t else t), None
        sim = self.sim
        run = t + sim.lat(sim.p.sched_median)
        pc, d, v = self.pcpu, self.domid, self.vcpu
        if self.occupant is None or self.occupant[0] > run:
            # WAKE and blocked→runnable by the waker, then the switch from idle
            sim.trace.extend((
                waker_pcpu, t, TRC_SCHED_WAKE, 1, 2, d, v, 0, 0,
                waker_pcpu, t, _TO_RUNNABLE, 1, 1, v | d << 16, 0, 0, 0,
                pc, run, TRC_SCHED_SWITCH_INFPREV, 1, 3, DOMID_IDLE, pc,
                min(U32, max(0, run - self.since)), 0,
                pc, run, TRC_SCHED_SWITCH_INFNEXT, 1, 4, d, v, min(U32, max(0, run - t)),
                SLICE_NS,
                pc, run, _TO_RUNNING, 1, 1, v | d << 16, 0, 0, 0,
                pc, run, TRC_SCHED_SWITCH, 1, 4, DOMID_IDLE, pc, d, v))
        else:
            sim.rec(waker_pcpu, t, TRC_SCHED_WAKE, (d, v))
            sim.rec(waker_pcpu, t, _TO_RUNNABLE, (v | d << 16,))
            _, end, prev, prev_state = self.occupant
            run = max(run, end)
            if prev_state == RUNSTATE_BLOCKED:
                sim.rec(pc, run, TRC_SCHED_BLOCK, prev)
            ran = run - self.occupant[0]
            self.occupant = None
            sim.switch(pc, run, prev, prev_state, self.ident, ran, run - t)
        self.state, self.since = RUNSTATE_RUNNING, run
        self.busy_until = self.kernel_free = self.app_free = run
        return run, run, t

    def hold(self, end: int, *, app: bool = False) -> None:
        """The vCPU keeps running until at least ``end`` (kernel or application work)."""
        if end > self.busy_until:
            self.busy_until = end
        if app:
            if end > self.app_free:
                self.app_free = end
        elif end > self.kernel_free:
            self.kernel_free = end

    def preempt(self, ps: int, pe: int, who: tuple[int, int], who_after: int) -> None:
        """Another domain's vCPU takes this pCPU during [ps, pe) while this one is running."""
        sim = self.sim
        self.settle(ps)
        assert self.state == RUNSTATE_RUNNING, "preempt needs a running vCPU"
        woke = ps - sim.lat(3 * US)
        sim.rec(self.pcpu, woke, TRC_SCHED_WAKE, who)
        sim.rec(self.pcpu, woke, runstate_event(RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE),
                (who[1] | who[0] << 16,))
        sim.switch(self.pcpu, ps, self.ident, RUNSTATE_RUNNABLE, who, ps - self.since, ps - woke)
        if who_after == RUNSTATE_BLOCKED:
            sim.rec(self.pcpu, pe, TRC_SCHED_BLOCK, who)
        sim.switch(self.pcpu, pe, who, who_after, self.ident, pe - ps, pe - ps)
        d = pe - ps
        self.busy_until = max(self.busy_until + d if self.busy_until >= ps else 0, pe + 2 * US)
        if self.kernel_free > ps:
            self.kernel_free += d
        if self.app_free > ps:
            self.app_free += d
        self.windows.append((ps, pe))
        self.since = pe

    def occupy(self, os_: int, oe: int, who: tuple[int, int], who_after: int) -> None:
        """Another domain's vCPU runs on this (blocked) vCPU's pCPU during [os_, oe)."""
        sim = self.sim
        self.settle(os_)
        assert self.state == RUNSTATE_BLOCKED, "occupy needs a blocked vCPU"
        woke = os_ - 2 * US
        sim.rec(self.pcpu, woke, TRC_SCHED_WAKE, who)
        sim.rec(self.pcpu, woke, runstate_event(RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE),
                (who[1] | who[0] << 16,))
        sim.switch(self.pcpu, os_, None, RUNSTATE_BLOCKED, who, os_ - self.since, 2 * US)
        self.occupant = (os_, oe, who, who_after)


@dataclasses.dataclass
class FaultPlan:
    """Which requests suffer which fault (filled by the scenario)."""

    guest_preempt: dict[int, int] = dataclasses.field(default_factory=dict)   # req → ns
    app_stall: dict[int, int] = dataclasses.field(default_factory=dict)
    dom0_starve: dict[int, int] = dataclasses.field(default_factory=dict)
    ring_full: dict[int, int] = dataclasses.field(default_factory=dict)
    blind_spot: set[int] = dataclasses.field(default_factory=set)   # preempt reqs gone blind


class Sim:
    """The event loop and everything it records."""

    #: Time columns (shifted when segments are joined) and index columns (re-based: the table
    #: they point into) of each table.
    TABLE_TIME = {"wire": ("t_nic", "t_phys", "irq", "dom0_run"),
                  "units": ("t_backend", "copy", "guest_wake", "guest_run"),
                  "rows": ("t_guest", "t_socket", "t_write")}
    TABLE_INDEX = {"wire": {"unit": "units"},
                   "units": {"wire_first": "wire", "wire_last": "wire"},
                   "rows": {"unit": "units"}}

    def __init__(self, params: Params, requests: list[Request], content: Content,
                 faults: FaultPlan, t_begin: int, seed: int, *, conns: list[Conn],
                 req_range: tuple[int, int] | None = None, connect: bool = True,
                 guest_domid: int = 5, nic_irq: int = 58) -> None:
        self.p = params
        self.content = content
        self.reqs = requests
        self.faults = faults
        self.t_begin = t_begin
        self.rnd = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._z: list[float] = []
        self._m: list[float] = []
        self._zi = LAT_BLOCK
        self.heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.seq = 0
        self.now = t_begin
        # trace records, REC_WIDTH int64 each: cpu, true time, event, timestamped, n, w0..w3
        self.trace = array("q")
        #: records of segments simulated elsewhere, joined (n, REC_WIDTH), before ``trace``
        self.joined_trace = np.zeros((0, REC_WIDTH), dtype=np.int64)
        self.domid = guest_domid
        self.nic_irq = nic_irq
        self.v0 = Vcpu(self, 0, 0, 0)
        self.v1 = Vcpu(self, 0, 1, 1)
        self.guest = Vcpu(self, guest_domid, 0, 2)
        self.conns = [dataclasses.replace(c, delivered=[]) for c in conns]
        # tables: wire frames (phys), units (vif), guest rows
        self.wire = Table(*WIRE_COLUMNS)
        self.units = Table(*UNIT_COLUMNS)
        self.rows = Table(*ROW_COLUMNS)
        #: reads: conn, stream end offset, return time (flat int64 triples; an (n, 3) matrix
        #: once segments are joined)
        self.reads: Any = array("q")  # array('q') while simulating, an ndarray after
        #: socket calls: entry and duration (flat int64 pairs), and each call's text
        self.strace_ns: Any = array("q")  # as reads
        self.strace_calls: list[str] = []
        self.fault_log: list[dict[str, Any]] = []
        # NIC and netback state
        self.nic_pending: list[int] = []       # wire ids arrived or arriving, not yet polled
        self.nic_armed = True
        self.rx_queue: list[int] = []          # units waiting for netback's rx thread
        self.rx_scheduled = False
        self.rx_batch_no = 0
        self.tx_pending: list[tuple[int, int]] = []   # (kick time, guest row id)
        self.tx_scheduled = False
        # application state
        self.app_state = "idle"
        self.app_req = -1
        self.app_conn = -1
        self.app_entry = 0
        lo, hi = req_range if req_range is not None else (0, len(requests))
        self.connecting = 0 if connect else len(self.conns)
        self.next_req, self.req_end = lo, hi
        self.t_end = t_begin

    # ---------------------------------------------------------------- segments
    n_requests = staticmethod(len)

    @staticmethod
    def conns_at(conns: list[Conn], reqs: list[Request], first: int) -> list[Conn]:
        return conns_at(conns, reqs, first)

    def segment_extra(self) -> dict[str, Any]:
        """What a segment hands back besides its arrays (nothing on this host)."""
        return {}

    def join_extra(self, extra: dict[str, Any], shift: int) -> None:
        """Add a joined segment's :meth:`segment_extra`, its times shifted by ``shift``."""

    def set_trace(self, trace: np.ndarray) -> None:
        """The joined segments' trace records."""
        self.joined_trace = trace

    def segment_trace(self, k: int) -> np.ndarray:
        """A segment's trace records for the join (all of them, on this host)."""
        return self.trace_records()

    # ---------------------------------------------------------------- helpers
    def lat(self, median: float, sigma: float | None = None) -> int:
        """A lognormal delay (ns) around ``median``, capped at 20× the median."""
        i = self._zi
        self._zi = i + 1
        if i < LAT_BLOCK:
            if sigma is None:
                v = int(median * self._m[i])
            else:
                v = int(median * min(20.0, math.exp(sigma * self._z[i])))
            return v if v > 1 else 1
        # normals drawn in blocks: numpy is fast per block, not per call
        z = self._np_rng.standard_normal(LAT_BLOCK)
        self._z = z.tolist()
        self._m = np.minimum(20.0, np.exp(self.p.sigma * z)).tolist()
        self._zi = 0
        return self.lat(median, sigma)

    def _call(self, entry: int, duration: int, text: str) -> None:
        """One socket call for the strace log (true time)."""
        self.strace_ns.extend((entry, duration))
        self.strace_calls.append(text)

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self.seq = seq = self.seq + 1
        _heappush(self.heap, (t, seq, fn, args))

    def trace_records(self) -> np.ndarray:
        """All records so far, (n, REC_WIDTH) int64 (not yet in time order)."""
        mine = np.frombuffer(self.trace, dtype=np.int64).reshape(-1, REC_WIDTH)
        if not len(self.joined_trace):
            return mine
        return np.concatenate([self.joined_trace, mine])

    def rec(self, cpu: int, t: int, event: int, words: tuple[int, ...], ts: bool = True) -> None:
        self.trace.extend((cpu, t, event, ts, len(words), *words, *_PAD[len(words)]))

    def switch(self, pcpu: int, t: int, prev: tuple[int, int] | None, prev_state: int,
               nxt: tuple[int, int] | None, ran_ns: int, waited_ns: int) -> None:
        """The records of one context switch on ``pcpu``, in Xen's order (None = idle):
        SWITCH_INFPREV, SWITCH_INFNEXT, RUNSTATE_CHANGE of prev and next, SWITCH."""
        pv = prev if prev is not None else (DOMID_IDLE, pcpu)
        nx = nxt if nxt is not None else (DOMID_IDLE, pcpu)
        recs = [pcpu, t, TRC_SCHED_SWITCH_INFPREV, 1, 3, pv[0], pv[1],
                min(U32, max(0, ran_ns)), 0,
                pcpu, t, TRC_SCHED_SWITCH_INFNEXT, 1, 4, nx[0], nx[1],
                min(U32, max(0, waited_ns)) if nxt else 0, SLICE_NS if nxt else U32]
        if prev is not None:
            recs += (pcpu, t, TRC_SCHED_RUNSTATE_CHANGE | RUNSTATE_RUNNING << 8 | prev_state << 4,
                     1, 1, prev[1] | prev[0] << 16, 0, 0, 0)
        if nxt is not None:
            recs += (pcpu, t, _TO_RUNNING, 1, 1, nxt[1] | nxt[0] << 16, 0, 0, 0)
        recs += (pcpu, t, TRC_SCHED_SWITCH, 1, 4, pv[0], pv[1], nx[0], nx[1])
        self.trace.extend(recs)

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        self.at(self.t_begin + 200 * US, self.app_timer)
        heap, pop = self.heap, heapq.heappop
        t = self.now
        while heap:
            t, _, fn, args = pop(heap)
            self.now = t
            fn(t, *args)
        self.t_end = self.now + 200 * US
        for v in (self.v0, self.v1, self.guest):
            v.settle(self.t_end)

    # ---------------------------------------------------------------- application
    def app_timer(self, t: int) -> None:
        """The application wakes up to do its next thing: connect, or send a request."""
        g = self.guest
        _, start, _ = g.acquire(t, g.pcpu, app=True)
        if start > t:
            self.at(start, self.app_timer)
            return
        if self.connecting < len(self.conns):
            self._connect(t, self.connecting)
            self.connecting += 1
        elif self.next_req < self.req_end:
            self._send_request(t, self.next_req)
            self.next_req += 1

    def _connect(self, t: int, c: int) -> None:
        conn, g = self.conns[c], self.guest
        dur = self.lat(9 * US)
        self._call(t, dur, "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = "
                   f"{conn.fd}")
        entry = t + dur + self.lat(2 * US)
        self.app_entry, self.app_conn, self.app_state = entry, c, "connect"
        t_syn = entry + self.lat(12 * US)
        self._guest_tx(t_syn, c, seq=conn.c_isn, ack=0, flags=SYN, plen=0, cpos=0, req=-1)
        g.hold(t_syn + self.lat(3 * US), app=True)

    def _send_request(self, t: int, r: int) -> None:
        req, g = self.reqs[r], self.guest
        conn = self.conns[req.conn]
        entry = t + self.lat(2 * US)
        t_guest = entry + self.lat(7 * US)
        seq = (conn.c_isn + 1 + req.tx_off) & U32
        ack = (conn.s_isn + 1 + conn.rx_next) & U32
        self._guest_tx(t_guest, req.conn, seq=seq, ack=ack, flags=PSH | ACK,
                       plen=len(req.request), cpos=req.req_pos, req=r, t_write=entry)
        conn.acked = conn.rx_next
        conn.tx_next = req.tx_off + len(req.request)
        ret = t_guest + self.lat(2 * US)
        self._call(entry, ret - entry, f"write({conn.fd}, "
                   f"{strace_quote(req.request, len(req.request))}, "
                   f"{len(req.request)}) = {len(req.request)}")
        cur = ret + self.lat(1 * US)
        if self.rnd.random() < 0.3:   # an eager read before the response can be there
            d = self.lat(1.5 * US)
            self._call(cur, d, f"read({conn.fd}, 0x7ffd5c1e2a40, {READ_BUFFER}) = -1 "
                       "EAGAIN (Resource temporarily unavailable)")
            cur += d + self.lat(1 * US)
        self.app_req, self.app_conn, self.app_entry, self.app_state = r, req.conn, cur, "poll"
        g.hold(cur + self.lat(1 * US), app=True)

    def app_wake(self, t: int) -> None:
        """The application's blocking call returns (poll ready, or connect done)."""
        g = self.guest
        _, start, _ = g.acquire(t, g.pcpu, app=True)
        if start > t:
            self.at(start, self.app_wake)
            return
        conn = self.conns[self.app_conn]
        if self.app_state == "connect_wake":
            self._call(self.app_entry, t - self.app_entry,
                       f"connect({conn.fd}, {{sa_family=AF_INET, sin_port=htons(11211), "
                       'sin_addr=inet_addr("10.0.0.1")}, 16) = 0')
            d = self.lat(2 * US)
            self._call(t + 1 * US, d, f"fcntl({conn.fd}, F_SETFL, O_RDWR|O_NONBLOCK)"
                       " = 0")
            self.app_state = "idle"
            end = t + 1 * US + d
            g.hold(end + 2 * US, app=True)
            self.at(end + self.lat(20 * US), self.app_timer)
            return
        self._call(self.app_entry, t - self.app_entry,
                   f"poll([{{fd={conn.fd}, events=POLLIN}}], 1, 1000) = 1 "
                   f"([{{fd={conn.fd}, revents=POLLIN}}])")
        self.app_state = "reading"
        nxt = t + self.lat(1.5 * US)
        stall = self.faults.app_stall.get(self.app_req)
        if stall is not None and self.app_req >= 0:
            self.faults.app_stall.pop(self.app_req)
            nxt = t + stall
            self.fault_log.append(dict(kind="app_stall", stage="socket_read",
                                       stages=["socket_read"], cause="vcpu_running",
                                       start_ns=t, end_ns=nxt, by_domid=self.domid, by_vcpu=0,
                                       request=self.app_req))
        g.hold(nxt + 1 * US, app=True)
        self.at(nxt, self.app_read)

    def _available(self, conn: Conn, t: int) -> int:
        """Stream bytes in the socket queue by ``t``."""
        best = conn.consumed
        for ts, end in reversed(conn.delivered):
            if ts <= t and end > best:
                best = end
        return best - conn.consumed

    def app_read(self, t: int) -> None:
        g = self.guest
        _, start, _ = g.acquire(t, g.pcpu, app=True)
        if start > t:
            self.at(start, self.app_read)
            return
        r = self.app_req
        req = self.reqs[r]
        conn = self.conns[req.conn]
        avail = self._available(conn, t)
        if avail == 0:
            d = self.lat(1.2 * US)
            self._call(t, d, f"read({conn.fd}, 0x7ffd5c1e2a40, {READ_BUFFER}) = -1 "
                       "EAGAIN (Resource temporarily unavailable)")
            self.app_entry = t + d + self.lat(1 * US)
            self.app_state = "poll"
            g.hold(self.app_entry + 1 * US, app=True)
            later = [ts for ts, end in conn.delivered if end > conn.consumed]
            if later:
                self.app_state = "waking"
                self.at(max(self.app_entry, min(later)) + self.lat(self.p.app_wake_median),
                        self.app_wake)
            return
        n = min(avail, READ_BUFFER)
        ret = t + self.lat(1.5 * US) + int(n * 0.08)
        first = req.resp_pos + (conn.consumed - req.rx_off)
        data = self.content.slice(first, min(n, 64))
        self._call(t, ret - t, f"read({conn.fd}, {strace_quote(data, n)}, "
                   f"{READ_BUFFER}) = {n}")
        conn.consumed += n
        self.reads.extend((req.conn, conn.consumed, ret))
        if conn.consumed >= req.rx_off + req.resp_len:
            self.app_state = "idle"
            g.hold(ret + self.lat(2 * US), app=True)
            conn.delivered = [(ts, e) for ts, e in conn.delivered if e > conn.consumed]
            self.at(ret + self.lat(self.p.think_median, 0.6), self.app_timer)
        else:
            nxt = ret + self.lat(1 * US)
            g.hold(nxt + 1 * US, app=True)
            self.at(nxt, self.app_read)

    # ---------------------------------------------------------------- transmit path
    def _guest_tx(self, t_guest: int, c: int, *, seq: int, ack: int, flags: int, plen: int,
                  cpos: int, req: int, t_write: int = -1) -> None:
        """The guest stack hands a frame to netfront; netfront notifies dom0's tx vCPU."""
        rows = self.rows.rows
        rows.append([1, c, seq, ack, flags, plen, cpos, t_guest, -1, -1, t_write, req])
        kick = t_guest + self.lat(self.p.notify_median)
        self.tx_pending.append((kick, len(rows) - 1))
        if not self.tx_scheduled:
            self.tx_scheduled = True
            self.at(kick, self.tx_kick)

    def tx_kick(self, t: int) -> None:
        _, start, _ = self.v0.acquire(t, self.guest.pcpu)
        s = start + self.lat(1.5 * US)
        self.v0.hold(s + 1 * US)
        self.at(s, self.tx_batch)

    def tx_batch(self, s: int) -> None:
        """netback's transmit side: one grant copy for the pending frames, then out."""
        pending = self.tx_pending
        take = [row for kick, row in pending if kick <= s]
        self.tx_pending = [(k, r) for k, r in pending if k > s]
        self.rec(self.v0.pcpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY,
                                                        len(take)))
        lat = self.lat
        bridge = self.p.bridge_median
        cur = s + lat(1 * US)
        rows = self.rows.rows
        units = self.units.rows
        wire = self.wire.rows
        cpu = self.v0.pcpu
        for row in take:
            cur += lat(0.6 * US)
            t_backend = cur
            cur += lat(bridge)
            f = rows[row]
            unit = len(units)
            wid = len(wire)
            units.append([*f[:7], t_backend, s, cpu, -1, -1, -1, f[R_REQ], wid, wid])
            f[R_UNIT] = unit
            wire.append([*f[:7], -1, cur, -1, -1, unit, f[R_REQ]])
            self._server_sees(cur, f[F_CONN], f[F_FLAGS], f[R_REQ], f[F_PLEN])
        self.v0.hold(cur + lat(1 * US))
        if self.tx_pending:
            self.at(max(cur, min(k for k, _ in self.tx_pending)), self.tx_kick)
        else:
            self.tx_scheduled = False

    def _server_sees(self, t_phys: int, c: int, flags: int, r: int, plen: int) -> None:
        """The server answers a SYN with a SYN-ACK and a request with its response."""
        conn = self.conns[c]
        if flags & SYN:
            a = t_phys + self.lat(self.p.server_median * 0.5)
            self._arrive([[0, c, conn.s_isn, (conn.c_isn + 1) & U32, SYN | ACK, 0, 0, a,
                           -1, -1, -1, -1, -1]])
        elif plen > 0 and r >= 0:
            req = self.reqs[r]
            p = self.p
            a = t_phys + self.lat(p.server_median, 0.35)
            ack = (conn.c_isn + 1 + req.tx_off + len(req.request)) & U32
            frames = []
            off = 0
            mss, resp_len, per_byte = p.mss, req.resp_len, p.wire_ns_per_byte
            seq0 = conn.s_isn + 1 + req.rx_off
            randrange = self.rnd.randrange
            while off < resp_len:
                n = min(mss, resp_len - off)
                last = off + n >= resp_len
                frames.append([0, c, (seq0 + off) & U32, ack, ACK | (PSH if last else 0), n,
                               req.resp_pos + off, a, -1, -1, -1, -1, r])
                a += int((n + 78) * per_byte) + randrange(200)
                off += n
            self._arrive(frames)

    # ---------------------------------------------------------------- receive path
    def _arrive(self, frames: list[list[int]]) -> None:
        """Wire rows (``t_nic`` set) reach the NIC; arm its interrupt if it is not pending."""
        wire = self.wire.rows
        pending = self.nic_pending
        for f in frames:
            pending.append(len(wire))
            wire.append(f)
        if self.nic_armed:
            self.nic_armed = False
            first = wire[pending[0]][W_NIC]
            self.at(first + self.lat(self.p.coalesce_median, 0.3), self.nic_irq_fire)

    def nic_irq_fire(self, t: int) -> None:
        """HW_IRQ_HANDLED (at handler exit = ``irq``), forwarded to dom0 vCPU 0; NAPI poll."""
        p, v0, lat = self.p, self.v0, self.lat
        handler = lat(1.2 * US)
        # words 1, 2 (TSC low bits at entry, exit) are filled in TSC by the trace builder;
        # here word 1 holds the handler's duration in ns
        self.rec(v0.pcpu, t, TRC_HW_IRQ_HANDLED, (self.nic_irq, handler, 0))
        wire = self.wire.rows
        pending = self.nic_pending
        first_req = wire[pending[0]][W_REQ]
        starve = self.faults.dom0_starve.pop(first_req, None) if first_req >= 0 else None
        if starve is not None and not v0.running_at(t):
            os_ = max(v0.since + 5 * US, t - lat(400 * US))
            oe = t + starve
            if os_ < t - 1 * US:
                v0.occupy(os_, oe, (7, 0), RUNSTATE_BLOCKED)
                self.fault_log.append(dict(kind="dom0_starve", stage="vmm", stages=["vmm"],
                                           cause="dom0_runnable", start_ns=os_, end_ns=oe,
                                           by_domid=7, by_vcpu=0, request=first_req))
        run, start, _ = v0.acquire(t, v0.pcpu)
        cur = start + lat(2 * US)
        taken: list[int] = []
        driver, bridge, gso = p.driver_median, p.bridge_median, p.gso
        k = 0
        while k < len(pending) and k < NAPI_BUDGET:
            w = pending[k]
            f = wire[w]
            if f[W_NIC] > cur:
                break
            k += 1
            cur += lat(driver)
            f[W_PHYS] = cur
            f[W_IRQ] = t
            f[W_RUN] = run
            taken.append(w)
            if not gso:
                cur += lat(bridge)
                self._to_netback([w], cur)
        del pending[:k]
        if gso and taken:
            # GRO merged the poll's frames per flow; the bridge forwards ≤ 64 KB segments
            cur += lat(bridge)
            group: list[int] = []
            size = 0
            for w in taken:
                if group and (size + wire[w][F_PLEN] > GSO_MAX_PAYLOAD or wire[w][F_PLEN] == 0
                              or wire[w][F_CONN] != wire[group[0]][F_CONN]
                              or wire[group[0]][F_PLEN] == 0):
                    self._to_netback(group, cur)
                    cur += lat(0.5 * US)
                    group, size = [], 0
                group.append(w)
                size += wire[w][F_PLEN]
            self._to_netback(group, cur)
        v0.hold(cur + lat(1 * US))
        if pending:
            nxt = max(cur, wire[pending[0]][W_NIC])
            self.at(nxt + lat(p.coalesce_median, 0.3), self.nic_irq_fire)
        else:
            self.nic_armed = True

    def _to_netback(self, wires: list[int], t_backend: int) -> None:
        """Frames (one unit: a frame, or a GRO segment) reach the vif tap; queue to netback."""
        wire = self.wire.rows
        units = self.units.rows
        unit = len(units)
        w0 = wires[0]
        f0 = wire[w0]
        if len(wires) == 1:
            f0[W_UNIT] = unit
            units.append([*f0[:7], t_backend, -1, -1, -1, -1, -1, f0[W_REQ], w0, w0])
        else:
            plen = 0
            flags = 0
            for w in wires:
                f = wire[w]
                plen += f[F_PLEN]
                flags |= f[F_FLAGS]
                f[W_UNIT] = unit
            units.append([0, f0[F_CONN], f0[F_SEQ], wire[wires[-1]][F_ACK], flags, plen,
                          f0[F_CPOS], t_backend, -1, -1, -1, -1, -1, f0[W_REQ], w0, wires[-1]])
        self.rx_queue.append(unit)
        if not self.rx_scheduled:
            self.rx_scheduled = True
            self.at(t_backend, self.rx_kick)

    def rx_kick(self, t: int, waker_pcpu: int = 0) -> None:
        """netback's guest-rx thread is woken (its dom0 vCPU too, if blocked)."""
        ring_full = self.faults.ring_full
        if ring_full:
            req = self.units.rows[self.rx_queue[0]][U_REQ] if self.rx_queue else -1
            d = ring_full.pop(req, None) if req >= 0 else None
            if d is not None:
                # the guest posted no rx requests: it runs something else meanwhile
                g = self.guest
                g.acquire(t, g.pcpu, app=True)
                g.hold(t + d + 30 * US, app=True)
                self.ring_stall = (t, t + d)
                self.fault_log.append(dict(kind="ring_full", stage="ring", stages=["ring"],
                                           cause="ring_full", start_ns=t, end_ns=t + d,
                                           by_domid=self.domid, by_vcpu=0, request=req))
        _, start, _ = self.v1.acquire(t + self.lat(self.p.kick_median), waker_pcpu)
        s = start + self.lat(self.p.copy_setup_median)
        self.v1.hold(s + 1 * US)
        self.at(s, self.rx_batch)

    ring_stall: tuple[int, int] = (0, 0)

    def rx_batch(self, s: int) -> None:
        """One GNTTABOP_copy for up to 64 queued units, then the event-channel notify."""
        rs, re = self.ring_stall
        if rs <= s < re:
            self.v1.hold(s + 1 * US)
            self.at(re, self.rx_kick, self.guest.pcpu)   # netfront refilled the ring
            return
        units = self.units.rows
        queue = self.rx_queue
        k = 0
        while k < len(queue) and k < NETBACK_BATCH:
            if units[queue[k]][U_BACKEND] > s:
                break
            k += 1
        take = queue[:k]
        del queue[:k]
        if not take:
            self.rx_scheduled = False
            if queue:
                self.rx_scheduled = True
                self.at(units[queue[0]][U_BACKEND], self.rx_kick)
            return
        self.rx_batch_no += 1
        batch = self.rx_batch_no
        cpu = self.v1.pcpu
        self.rec(cpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY, len(take)))
        nbytes = 0
        for u in take:
            f = units[u]
            nbytes += f[F_PLEN]
            f[U_COPY] = s
            f[U_COPY_CPU] = cpu
            f[U_BATCH] = batch
        notify = s + self.lat(0.6 * US) + int(nbytes * 0.25) + self.lat(self.p.notify_median)
        self.at(notify, self.guest_notify, take)
        end = notify + self.lat(0.8 * US)
        self.v1.hold(end + 1 * US)
        if queue and units[queue[0]][U_BACKEND] <= end:
            self.at(end, self.rx_batch)
        elif queue:
            self.at(units[queue[0]][U_BACKEND], self.rx_kick)
        else:
            self.rx_scheduled = False

    def guest_notify(self, t: int, take: list[int]) -> None:
        """The event channel fires: the guest vCPU wakes or is already running; netfront."""
        p, g, units, lat = self.p, self.guest, self.units.rows, self.lat
        rows = self.rows.rows
        run, start, woke = g.acquire(t, self.v1.pcpu)
        if woke is None and run == t:
            self.rec(g.pcpu, t, TRC_HVM_INJ_VIRQ, (HVM_CALLBACK_VECTOR,), ts=False)
        cur = start + lat(p.netfront_median)
        delivered: dict[int, int] = {}
        preempt_at: int | None = None
        wake = -1 if woke is None else woke
        per_frame, stack = p.netfront_per_frame, p.stack_median
        for u in take:
            uf = units[u]
            uf[U_WAKE] = wake
            uf[U_RUN] = run
            c = uf[F_CONN]
            conn = self.conns[c]
            for seq, plen, cpos, flags in self._guest_split(u):
                cur += lat(per_frame)
                sock = cur + lat(stack)
                rows.append([0, c, seq, uf[F_ACK], flags, plen, cpos, cur, u, sock, -1,
                             uf[U_REQ]])
                if flags & SYN:
                    conn.delivered.append((sock, -1))
                    self._handshake_done(sock, c)
                elif plen:
                    end = (seq - conn.s_isn - 1) % (1 << 32) + plen
                    if end > conn.rx_next:
                        conn.rx_next = end
                    conn.delivered.append((sock, end))
                    if c not in delivered or sock < delivered[c]:
                        delivered[c] = sock
        g.hold(cur + lat(2 * US))
        for c in delivered:     # one ACK per connection per netfront batch
            conn = self.conns[c]
            if conn.rx_next > conn.acked:
                conn.acked = conn.rx_next
                t_ack = cur + lat(2 * US)
                self._guest_tx(t_ack, c, seq=(conn.c_isn + 1 + conn.tx_next) & U32,
                               ack=(conn.s_isn + 1 + conn.rx_next) & U32, flags=ACK, plen=0,
                               cpos=0, req=-1)
                cur = t_ack
        g.hold(cur + lat(2 * US))
        r = units[take[-1]][U_REQ]
        if r in self.faults.guest_preempt:
            # preempted after netfront delivered the response's last batch, or (half the time)
            # an earlier one: the later segments are then copied while the vCPU waits
            last = self._last_unit_of(take[-1])
            if last or self.rnd.random() < 0.5:
                preempt_at = g.busy_until - 200   # after the guest saw these and ACKed
        if preempt_at is not None:
            d = self.faults.guest_preempt.pop(r)
            g.preempt(preempt_at, preempt_at + d, (7, 1), RUNSTATE_BLOCKED)
            cause = "lost_records" if r in self.faults.blind_spot else "vcpu_runnable"
            self.fault_log.append(dict(kind="guest_preempt", stage="socket_read", cause=cause,
                                       stages=["socket_read"] if last else
                                       ["socket_read", "remap"],
                                       start_ns=preempt_at, end_ns=preempt_at + d, by_domid=7,
                                       by_vcpu=1,
                                       request=r))
            for c in delivered:    # the stack finishes its work after the preemption
                conn = self.conns[c]
                conn.delivered = [(ts + d if ts > preempt_at else ts, e)
                                  for ts, e in conn.delivered]
                delivered[c] = min(ts for ts, e in conn.delivered if e > conn.consumed)
        if self.app_state == "poll":
            c = self.app_conn
            if c in delivered:
                self.app_state = "waking"
                self.at(max(self.app_entry, delivered[c]) + lat(p.app_wake_median),
                        self.app_wake)

    def _last_unit_of(self, u: int) -> bool:
        f = self.units.rows[u]
        req = self.reqs[f[U_REQ]]
        conn = self.conns[req.conn]
        end = (f[F_SEQ] - conn.s_isn - 1) % (1 << 32) + f[F_PLEN]
        return end >= req.rx_off + req.resp_len

    def _handshake_done(self, t_sock: int, c: int) -> None:
        conn = self.conns[c]
        self._guest_tx(t_sock + self.lat(2 * US), c, seq=(conn.c_isn + 1) & U32,
                       ack=(conn.s_isn + 1) & U32, flags=ACK, plen=0, cpos=0, req=-1)
        if self.app_state == "connect" and self.app_conn == c:
            self.app_state = "connect_wake"
            self.at(t_sock + self.lat(self.p.app_wake_median), self.app_wake)

    def _guest_split(self, u: int) -> list[tuple[int, int, int, int]]:
        """Guest frames of a unit: itself, or (guest GRO) chunks with other boundaries."""
        f = self.units.rows[u]
        seq, plen, cpos, flags = f[F_SEQ], f[F_PLEN], f[F_CPOS], f[F_FLAGS]
        if not self.p.guest_gro or plen <= self.p.mss:
            return [(seq, plen, cpos, flags)]
        out = []
        off = 0
        while off < plen:
            n = min(plen - off, self.p.mss * self.rnd.randint(1, 4) + self.rnd.randrange(-700,
                                                                                         700))
            n = max(1, n)
            last = off + n >= plen
            out.append(((seq + off) & U32, min(n, plen - off), cpos + off,
                        flags if last else flags & ~PSH))
            off += n
        return out
