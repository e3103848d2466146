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
import operator
import random
from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from ..xen_events import (
    DOMID_IDLE,
    GNTTABOP_COPY,
    HVM_CALLBACK_VECTOR,
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
#: PV_HYPERCALL_V2 first word for grant_table_op (20) with its argument-present bits.
HYPERCALL_GNTTAB_W0 = 0x01100014
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
    """Rows as dicts (every column present, -1 = not applicable), appended during the event
    loop; turned into an int64 matrix once at the end."""

    def __init__(self, *columns: str) -> None:
        self.columns = columns
        self.rows: list[dict[str, int]] = []
        self._defaults = dict.fromkeys(columns, -1)
        self._matrix: np.ndarray | None = None

    def add(self, **values: int) -> int:
        self.rows.append({**self._defaults, **values})
        return len(self.rows) - 1

    def __getitem__(self, i: int) -> dict[str, int]:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def matrix(self) -> np.ndarray:
        """All rows as an int64 matrix, one column per name (built once, on first use)."""
        if self._matrix is None:
            get = operator.itemgetter(*self.columns)
            self._matrix = np.array(list(map(get, self.rows)), dtype=np.int64).reshape(
                len(self.rows), len(self.columns))
        return self._matrix

    def column(self, name: str) -> np.ndarray:
        """One column as int64."""
        return self.matrix()[:, self.columns.index(name)]


IDLE = "idle"


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
            self.sim.rec(self.pcpu, b, TRC_SCHED_BLOCK, (self.domid, self.vcpu))
            self.sim.switch(self.pcpu, b, self.ident, RUNSTATE_BLOCKED, None, b - self.since, 0)
            self.state, self.since = RUNSTATE_BLOCKED, b

    def running_at(self, t: int) -> bool:
        self.settle(t)
        return self.state == RUNSTATE_RUNNING

    def acquire(self, t: int, waker_pcpu: int, *, app: bool = False) -> tuple[int, int, int | None]:
        """Work arrives at ``t``: (time the vCPU runs, time the work starts, wake time or None)."""
        self.settle(t)
        for ps, pe in self.windows:
            if ps <= t < pe:
                free = self.app_free if app else self.kernel_free
                return pe, max(pe, free), None
        if self.state == RUNSTATE_RUNNING:
            return t, max(t, self.app_free if app else self.kernel_free), None
        sim = self.sim
        sim.rec(waker_pcpu, t, TRC_SCHED_WAKE, (self.domid, self.vcpu))
        sim.rec(waker_pcpu, t, runstate_event(RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE),
                (self.vcpu | self.domid << 16,))
        run = t + sim.lat(sim.p.sched_median)
        prev: tuple[int, int] | None = None
        prev_state = RUNSTATE_BLOCKED
        if self.occupant is not None and self.occupant[0] <= run:
            _, end, prev, prev_state = self.occupant
            run = max(run, end)
            if prev_state == RUNSTATE_BLOCKED:
                sim.rec(self.pcpu, run, TRC_SCHED_BLOCK, prev)
            ran = run - self.occupant[0]
            self.occupant = None
        else:
            ran = run - self.since
        sim.switch(self.pcpu, run, prev, prev_state, self.ident, ran, run - t)
        self.state, self.since = RUNSTATE_RUNNING, run
        self.busy_until = self.kernel_free = self.app_free = run
        return run, run, t

    def hold(self, end: int, *, app: bool = False) -> None:
        """The vCPU keeps running until at least ``end`` (kernel or application work)."""
        self.busy_until = max(self.busy_until, end)
        if app:
            self.app_free = max(self.app_free, end)
        else:
            self.kernel_free = max(self.kernel_free, end)

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
        self._zi = 0
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
        self.wire = Table("dir", "conn", "seq", "ack", "flags", "plen", "cpos", "t_nic",
                          "t_phys", "irq", "dom0_run", "unit", "req")
        self.units = Table("dir", "conn", "seq", "ack", "flags", "plen", "cpos", "t_backend",
                           "copy", "copy_cpu", "batch", "guest_wake", "guest_run", "req",
                           "wire_first", "wire_last")
        self.rows = Table("dir", "conn", "seq", "ack", "flags", "plen", "cpos", "t_guest",
                          "unit", "t_socket", "t_write", "req")
        self.reads: list[tuple[int, int, int]] = []      # conn, stream end offset, return
        self.strace: list[tuple[int, int, str]] = []      # entry, duration, call text
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

    # ---------------------------------------------------------------- helpers
    def lat(self, median: float, sigma: float | None = None) -> int:
        """A lognormal delay (ns) around ``median``, capped at 20× the median."""
        i = self._zi
        if i >= len(self._z):   # normals drawn in blocks: numpy is fast per block, not per call
            z = self._np_rng.standard_normal(1 << 16)
            self._z = z.tolist()
            self._m = np.minimum(20.0, np.exp(self.p.sigma * z)).tolist()
            i = 0
        self._zi = i + 1
        if sigma is None:
            return max(1, int(median * self._m[i]))
        return max(1, int(median * min(20.0, math.exp(sigma * self._z[i]))))

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, fn, args))

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
        while self.heap:
            t, _, fn, args = heapq.heappop(self.heap)
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
        self.strace.append((t, dur, "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = "
                            f"{conn.fd}"))
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
        self.strace.append((entry, ret - entry, f"write({conn.fd}, "
                            f"{strace_quote(req.request, len(req.request))}, "
                            f"{len(req.request)}) = {len(req.request)}"))
        cur = ret + self.lat(1 * US)
        if self.rnd.random() < 0.3:   # an eager read before the response can be there
            d = self.lat(1.5 * US)
            self.strace.append((cur, d, f"read({conn.fd}, 0x7ffd5c1e2a40, {READ_BUFFER}) = -1 "
                                "EAGAIN (Resource temporarily unavailable)"))
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
            self.strace.append((self.app_entry, t - self.app_entry,
                                f"connect({conn.fd}, {{sa_family=AF_INET, sin_port=htons(11211), "
                                'sin_addr=inet_addr("10.0.0.1")}, 16) = 0'))
            d = self.lat(2 * US)
            self.strace.append((t + 1 * US, d, f"fcntl({conn.fd}, F_SETFL, O_RDWR|O_NONBLOCK)"
                                " = 0"))
            self.app_state = "idle"
            end = t + 1 * US + d
            g.hold(end + 2 * US, app=True)
            self.at(end + self.lat(20 * US), self.app_timer)
            return
        self.strace.append((self.app_entry, t - self.app_entry,
                            f"poll([{{fd={conn.fd}, events=POLLIN}}], 1, 1000) = 1 "
                            f"([{{fd={conn.fd}, revents=POLLIN}}])"))
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
            self.strace.append((t, d, f"read({conn.fd}, 0x7ffd5c1e2a40, {READ_BUFFER}) = -1 "
                                "EAGAIN (Resource temporarily unavailable)"))
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
        self.strace.append((t, ret - t, f"read({conn.fd}, {strace_quote(data, n)}, "
                            f"{READ_BUFFER}) = {n}"))
        conn.consumed += n
        self.reads.append((req.conn, conn.consumed, ret))
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
        row = self.rows.add(dir=1, conn=c, seq=seq, ack=ack, flags=flags, plen=plen, cpos=cpos,
                            t_guest=t_guest, t_write=t_write, req=req)
        kick = t_guest + self.lat(self.p.notify_median)
        self.tx_pending.append((kick, row))
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
        take = [row for kick, row in self.tx_pending if kick <= s]
        self.tx_pending = [(k, r) for k, r in self.tx_pending if k > s]
        self.rec(self.v0.pcpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY,
                                                        len(take)))
        cur = s + self.lat(1 * US)
        rows = self.rows
        for row in take:
            cur += self.lat(0.6 * US)
            t_backend = cur
            cur += self.lat(self.p.bridge_median)
            unit = self.units.add(dir=1, conn=rows[row]["conn"], seq=rows[row]["seq"],
                                  ack=rows[row]["ack"], flags=rows[row]["flags"],
                                  plen=rows[row]["plen"], cpos=rows[row]["cpos"],
                                  t_backend=t_backend, copy=s, copy_cpu=self.v0.pcpu,
                                  req=rows[row]["req"])
            rows[row]["unit"] = unit
            wire = self.wire.add(dir=1, conn=rows[row]["conn"], seq=rows[row]["seq"],
                                 ack=rows[row]["ack"], flags=rows[row]["flags"],
                                 plen=rows[row]["plen"], cpos=rows[row]["cpos"],
                                 t_phys=cur, unit=unit, req=rows[row]["req"])
            self.units[unit]["wire_first"] = self.units[unit]["wire_last"] = wire
            self._server_sees(cur, rows[row]["conn"], rows[row]["flags"], rows[row]["req"],
                              rows[row]["plen"])
        self.v0.hold(cur + self.lat(1 * US))
        if self.tx_pending:
            self.at(max(cur, min(k for k, _ in self.tx_pending)), self.tx_kick)
        else:
            self.tx_scheduled = False

    def _server_sees(self, t_phys: int, c: int, flags: int, r: int, plen: int) -> None:
        """The server answers a SYN with a SYN-ACK and a request with its response."""
        conn = self.conns[c]
        if flags & SYN:
            a = t_phys + self.lat(self.p.server_median * 0.5)
            self._arrive([(a, dict(dir=0, conn=c, seq=conn.s_isn, ack=(conn.c_isn + 1) & U32,
                                   flags=SYN | ACK, plen=0, cpos=0, req=-1))])
        elif plen > 0 and r >= 0:
            req = self.reqs[r]
            a = t_phys + self.lat(self.p.server_median, 0.35)
            ack = (conn.c_isn + 1 + req.tx_off + len(req.request)) & U32
            frames = []
            off = 0
            while off < req.resp_len:
                n = min(self.p.mss, req.resp_len - off)
                last = off + n >= req.resp_len
                frames.append((a, dict(dir=0, conn=c,
                                       seq=(conn.s_isn + 1 + req.rx_off + off) & U32, ack=ack,
                                       flags=ACK | (PSH if last else 0), plen=n,
                                       cpos=req.resp_pos + off, req=r)))
                a += int((n + 78) * self.p.wire_ns_per_byte) + self.rnd.randrange(200)
                off += n
            self._arrive(frames)

    # ---------------------------------------------------------------- receive path
    def _arrive(self, frames: list[tuple[int, dict[str, Any]]]) -> None:
        for a, f in frames:
            wid = self.wire.add(t_nic=a, **f)
            self.nic_pending.append(wid)
        if self.nic_armed:
            self.nic_armed = False
            first = self.wire[self.nic_pending[0]]["t_nic"]
            self.at(first + self.lat(self.p.coalesce_median, 0.3), self.nic_irq_fire)

    def nic_irq_fire(self, t: int) -> None:
        """HW_IRQ_HANDLED (at handler exit = ``irq``), forwarded to dom0 vCPU 0; NAPI poll."""
        p, v0 = self.p, self.v0
        handler = self.lat(1.2 * US)
        # words 1, 2 (TSC low bits at entry, exit) are filled in TSC by the trace builder;
        # here word 1 holds the handler's duration in ns
        self.rec(v0.pcpu, t, TRC_HW_IRQ_HANDLED, (self.nic_irq, handler, 0))
        first_req = self.wire[self.nic_pending[0]]["req"]
        starve = self.faults.dom0_starve.pop(first_req, None) if first_req >= 0 else None
        if starve is not None and not v0.running_at(t):
            os_ = max(v0.since + 5 * US, t - self.lat(400 * US))
            oe = t + starve
            if os_ < t - 1 * US:
                v0.occupy(os_, oe, (7, 0), RUNSTATE_BLOCKED)
                self.fault_log.append(dict(kind="dom0_starve", stage="vmm", stages=["vmm"],
                                           cause="dom0_runnable", start_ns=os_, end_ns=oe,
                                           by_domid=7, by_vcpu=0, request=first_req))
        run, start, _ = v0.acquire(t, v0.pcpu)
        cur = start + self.lat(2 * US)
        wire = self.wire
        taken: list[int] = []
        while self.nic_pending and len(taken) < NAPI_BUDGET:
            w = self.nic_pending[0]
            if wire[w]["t_nic"] > cur:
                break
            self.nic_pending.pop(0)
            cur += self.lat(p.driver_median)
            wire[w]["t_phys"] = cur
            wire[w]["irq"] = t
            wire[w]["dom0_run"] = run
            taken.append(w)
            if not p.gso:
                cur += self.lat(p.bridge_median)
                self._to_netback([w], cur)
        if p.gso and taken:
            # GRO merged the poll's frames per flow; the bridge forwards ≤ 64 KB segments
            cur += self.lat(p.bridge_median)
            group: list[int] = []
            size = 0
            for w in taken:
                if group and (size + wire[w]["plen"] > GSO_MAX_PAYLOAD or wire[w]["plen"] == 0
                              or wire[w]["conn"] != wire[group[0]]["conn"]
                              or wire[group[0]]["plen"] == 0):
                    self._to_netback(group, cur)
                    cur += self.lat(0.5 * US)
                    group, size = [], 0
                group.append(w)
                size += wire[w]["plen"]
            self._to_netback(group, cur)
        v0.hold(cur + self.lat(1 * US))
        if self.nic_pending:
            nxt = max(cur, wire[self.nic_pending[0]]["t_nic"])
            self.at(nxt + self.lat(p.coalesce_median, 0.3), self.nic_irq_fire)
        else:
            self.nic_armed = True

    def _to_netback(self, wires: list[int], t_backend: int) -> None:
        """Frames (one unit: a frame, or a GRO segment) reach the vif tap; queue to netback."""
        wire = self.wire
        w0 = wires[0]
        plen = sum(wire[w]["plen"] for w in wires)
        flags = 0
        for w in wires:
            flags |= wire[w]["flags"]
        unit = self.units.add(dir=0, conn=wire[w0]["conn"], seq=wire[w0]["seq"],
                              ack=wire[wires[-1]]["ack"], flags=flags, plen=plen,
                              cpos=wire[w0]["cpos"], t_backend=t_backend, req=wire[w0]["req"],
                              wire_first=w0, wire_last=wires[-1])
        for w in wires:
            wire[w]["unit"] = unit
        self.rx_queue.append(unit)
        if not self.rx_scheduled:
            self.rx_scheduled = True
            self.at(t_backend, self.rx_kick)

    def rx_kick(self, t: int, waker_pcpu: int = 0) -> None:
        """netback's guest-rx thread is woken (its dom0 vCPU too, if blocked)."""
        req = self.units[self.rx_queue[0]]["req"] if self.rx_queue else -1
        d = self.faults.ring_full.pop(req, None) if req >= 0 else None
        if d is not None:
            # the guest posted no rx requests: it runs something else meanwhile
            g = self.guest
            g.acquire(t, g.pcpu, app=True)
            g.hold(t + d + 30 * US, app=True)
            self.ring_stall = (t, t + d)
            self.fault_log.append(dict(kind="ring_full", stage="ring", stages=["ring"],
                                       cause="ring_full",
                                       start_ns=t, end_ns=t + d, by_domid=self.domid, by_vcpu=0,
                                       request=req))
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
        units = self.units
        take: list[int] = []
        while self.rx_queue and len(take) < NETBACK_BATCH:
            u = self.rx_queue[0]
            if units[u]["t_backend"] > s:
                break
            take.append(self.rx_queue.pop(0))
        if not take:
            self.rx_scheduled = False
            if self.rx_queue:
                self.rx_scheduled = True
                self.at(units[self.rx_queue[0]]["t_backend"], self.rx_kick)
            return
        self.rx_batch_no += 1
        self.rec(self.v1.pcpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY,
                                                        len(take)))
        nbytes = sum(units[u]["plen"] for u in take)
        for u in take:
            units[u]["copy"] = s
            units[u]["copy_cpu"] = self.v1.pcpu
            units[u]["batch"] = self.rx_batch_no
        notify = s + self.lat(0.6 * US) + int(nbytes * 0.25) + self.lat(self.p.notify_median)
        self.at(notify, self.guest_notify, take)
        end = notify + self.lat(0.8 * US)
        self.v1.hold(end + 1 * US)
        if self.rx_queue and units[self.rx_queue[0]]["t_backend"] <= end:
            self.at(end, self.rx_batch)
        elif self.rx_queue:
            self.at(units[self.rx_queue[0]]["t_backend"], self.rx_kick)
        else:
            self.rx_scheduled = False

    def guest_notify(self, t: int, take: list[int]) -> None:
        """The event channel fires: the guest vCPU wakes or is already running; netfront."""
        p, g, units = self.p, self.guest, self.units
        run, start, woke = g.acquire(t, self.v1.pcpu)
        if woke is None and run == t:
            self.rec(g.pcpu, t, TRC_HVM_INJ_VIRQ, (HVM_CALLBACK_VECTOR,), ts=False)
        cur = start + self.lat(p.netfront_median)
        delivered: dict[int, int] = {}
        preempt_at: int | None = None
        for u in take:
            units[u]["guest_wake"] = -1 if woke is None else woke
            units[u]["guest_run"] = run
            c = units[u]["conn"]
            conn = self.conns[c]
            for seq, plen, cpos, flags in self._guest_split(u):
                cur += self.lat(p.netfront_per_frame)
                row = self.rows.add(dir=0, conn=c, seq=seq, ack=units[u]["ack"], flags=flags,
                                    plen=plen, cpos=cpos, t_guest=cur, unit=u,
                                    req=units[u]["req"])
                sock = cur + self.lat(p.stack_median)
                self.rows[row]["t_socket"] = sock
                if flags & SYN:
                    conn.delivered.append((sock, -1))
                    self._handshake_done(sock, c)
                elif plen:
                    end = (seq - conn.s_isn - 1) % (1 << 32) + plen
                    conn.rx_next = max(conn.rx_next, end)
                    conn.delivered.append((sock, end))
                    delivered[c] = min(delivered.get(c, sock), sock)
        g.hold(cur + self.lat(2 * US))
        for c in delivered:     # one ACK per connection per netfront batch
            conn = self.conns[c]
            if conn.rx_next > conn.acked:
                conn.acked = conn.rx_next
                t_ack = cur + self.lat(2 * US)
                self._guest_tx(t_ack, c, seq=(conn.c_isn + 1 + conn.tx_next) & U32,
                               ack=(conn.s_isn + 1 + conn.rx_next) & U32, flags=ACK, plen=0,
                               cpos=0, req=-1)
                cur = t_ack
        g.hold(cur + self.lat(2 * US))
        r = units[take[-1]]["req"]
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
                self.at(max(self.app_entry, delivered[c]) + self.lat(p.app_wake_median),
                        self.app_wake)

    def _last_unit_of(self, u: int) -> bool:
        r = self.units[u]["req"]
        req = self.reqs[r]
        conn = self.conns[req.conn]
        end = (self.units[u]["seq"] - conn.s_isn - 1) % (1 << 32) + self.units[u]["plen"]
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
        units = self.units
        seq, plen, cpos, flags = (units[u]["seq"], units[u]["plen"], units[u]["cpos"],
                                  units[u]["flags"])
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
