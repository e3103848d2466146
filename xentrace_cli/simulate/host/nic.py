"""The physical NIC, dom0's driver and bridge, and the servers beyond the wire.

Frames of every guest arrive at the NIC; it coalesces them (rx-usecs) and raises its
interrupt on the pCPU the interrupt is routed to at that moment (:class:`.shape.Roles`). Xen's
``do_IRQ`` for an IRQ a domain owns (xen/arch/x86/irq.c) reads the TSC, calls
``do_IRQ_guest`` — which sets the event channel pending and, if the dom0 vCPU it is bound to
is blocked, wakes it (WAKE on this pCPU, inside the handler) — and writes HW_IRQ_HANDLED with
the TSC at entry and exit. The dom0 vCPU then runs the driver's NAPI poll (up to 64 frames):
each frame passes the capture on the physical NIC (``phys``), the bridge and the capture on
the guest's ``vif`` (``backend``), and is queued to netback (:mod:`.netback`).

The servers answer each request after a think time (TCP: memcached-like responses in MSS
segments; UDP: one response datagram).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...xen_events import TRC_HW_IRQ_HANDLED
from ..frames import ACK, PSH, SYN
from ..physics import GSO_MAX_PAYLOAD, NAPI_BUDGET
from .engine import U32, US
from .tables import F_CONN, F_PLEN, W_IRQ, W_IRQCPU, W_NIC, W_PHYS, W_RUN, W_VCPU
from .traffic import IPPROTO_UDP

if TYPE_CHECKING:
    from .sched import Vcpu
    from .sim import HostSim


class Nic:
    """The NIC's receive side and dom0's driver and bridge."""

    def __init__(self, host: HostSim) -> None:
        self.host = host
        self.pending: list[int] = []      # wire rows arrived or arriving, not yet polled
        self.armed = True

    def arrive(self, frames: list[list[int]]) -> None:
        """Wire rows (``t_nic`` set) reach the NIC; arm its interrupt if none is pending."""
        wire = self.host.wire.rows
        for f in frames:
            self.pending.append(len(wire))
            wire.append(f)
        if self.armed:
            self.armed = False
            first = wire[self.pending[0]][W_NIC]
            self.host.at(first + self.host.lat(self.host.p.coalesce_median, 0.3), self.fire)

    def fire(self, t: int) -> None:
        """The interrupt: handler entry at ``t``; HW_IRQ_HANDLED at its exit (= ``irq``)."""
        host = self.host
        cpu = host.roles.nic_pcpu.at(t)
        vnum = host.roles.nic_vcpu.at(t)
        v = host.dom0[vnum]
        woken_at = t + host.lat(0.5 * US)
        if v.running_at(t):
            t_irq = woken_at + host.lat(0.8 * US)
            v.hold(t_irq + US)
        else:
            t_irq = woken_at + 1700 + host.lat(0.6 * US)   # the wake's records inside
        starve = host.faults.dom0_starve_at(self, t, v, woken_at, t_irq, cpu)
        if starve is not None:
            run, start, _ = starve
        else:
            run, start, _ = v.acquire(woken_at, cpu, not_before=t_irq + US, ref=t)
        host.rec(cpu, t_irq, TRC_HW_IRQ_HANDLED, (host.nic_irq, t_irq - t, 0))
        dom0_run = t_irq if run <= t_irq else run
        self._poll(max(start, t_irq) + host.lat(2 * US), t_irq, dom0_run, cpu, vnum)

    def _poll(self, cur: int, t_irq: int, dom0_run: int, cpu: int, vnum: int) -> None:
        """NAPI poll on the serving vCPU: the frames that arrived, up to the budget."""
        host, p, lat = self.host, self.host.p, self.host.lat
        v = host.dom0[vnum]
        wire, pending = host.wire.rows, self.pending
        taken: list[int] = []
        k = 0
        while k < len(pending) and k < NAPI_BUDGET:
            f = wire[pending[k]]
            if f[W_NIC] > cur:
                break
            k += 1
            cur += lat(p.driver_median)
            f[W_PHYS], f[W_IRQ], f[W_RUN], f[W_IRQCPU], f[W_VCPU] = cur, t_irq, dom0_run, \
                cpu, vnum
            taken.append(pending[k - 1])
            if not p.gso:
                cur += lat(p.bridge_median)
                host.netback.to_netback([pending[k - 1]], cur, v)
        del pending[:k]
        if p.gso and taken:
            cur = self._gro(taken, cur + lat(p.bridge_median), v)
        v.hold(cur + lat(1 * US))
        if pending:
            nxt = max(cur, wire[pending[0]][W_NIC])
            host.at(nxt + lat(p.coalesce_median, 0.3), self.fire)
        else:
            self.armed = True

    def _gro(self, taken: list[int], cur: int, v: Vcpu) -> int:
        """GRO merged the poll's frames per flow; the bridge forwards ≤ 64 KB segments."""
        host = self.host
        wire = host.wire.rows
        group: list[int] = []
        size = 0
        for w in taken:
            f = wire[w]
            if group and (size + f[F_PLEN] > GSO_MAX_PAYLOAD or f[F_PLEN] == 0
                          or f[F_CONN] != wire[group[0]][F_CONN]
                          or wire[group[0]][F_PLEN] == 0):
                host.netback.to_netback(group, cur, v)
                cur += host.lat(0.5 * US)
                group, size = [], 0
            group.append(w)
            size += f[F_PLEN]
        host.netback.to_netback(group, cur, v)
        return cur


class Servers:
    """The far side: a memcached-like TCP server and a DNS-like UDP resolver."""

    def __init__(self, host: HostSim) -> None:
        self.host = host

    def sees(self, t_phys: int, c: int, flags: int, r: int, plen: int) -> None:
        """The server answers a SYN with a SYN-ACK and a request with its response."""
        host = self.host
        flow = host.flows[c]
        if flow.proto == IPPROTO_UDP:
            if r >= 0:
                self._datagram(t_phys, c, r)
            return
        if flags & SYN:
            a = t_phys + host.lat(host.p.server_median * 0.5)
            host.nic.arrive([[0, c, flow.s_isn, (flow.c_isn + 1) & U32, SYN | ACK, 0, 0, a,
                              -1, -1, -1, -1, -1, -1, -1]])
        elif plen > 0 and r >= 0:
            self._response(t_phys, c, r)

    def _response(self, t_phys: int, c: int, r: int) -> None:
        host, p = self.host, self.host.p
        flow = host.flows[c]
        req = host.exchange(c, r)
        a = t_phys + host.lat(p.server_median, 0.35)
        ack = (flow.c_isn + 1 + req.tx_off + len(req.request)) & U32
        frames = []
        off = 0
        seq0 = flow.s_isn + 1 + req.rx_off
        while off < req.resp_len:
            n = min(p.mss, req.resp_len - off)
            last = off + n >= req.resp_len
            frames.append([0, c, (seq0 + off) & U32, ack, ACK | (PSH if last else 0), n,
                           req.resp_pos + off, a, -1, -1, -1, -1, r, -1, -1])
            a += int((n + 78) * p.wire_ns_per_byte) + host.rnd.randrange(200)
            off += n
        host.nic.arrive(frames)

    def _datagram(self, t_phys: int, c: int, r: int) -> None:
        host = self.host
        req = host.exchange(c, r)
        a = t_phys + host.lat(host.p.server_median * 0.8, 0.35)
        host.nic.arrive([[0, c, req.rx_off, 0, 0, req.resp_len, req.resp_pos, a, -1, -1, -1,
                          -1, r, -1, -1]])


