"""netback in dom0: the guest-rx kthread and the transmit NAPI poll, each on a dom0 vCPU.

Receive (drivers/net/xen-netback/rx.c): the bridge queues the frame on the guest's rx queue
and kicks its ``vifD.Q-guest-rx`` kthread, which runs on some dom0 vCPU; ``xenvif_rx_action``
takes up to 64 packets (RX_BATCH_SIZE), adds one grant-copy op per page-sized chunk and
flushes every 64 ops (COPY_BATCH_SIZE): one GNTTABOP_copy hypercall, then the responses are
pushed and the guest's rx event channel notified — the guest vCPU's WAKE, written on the
kthread's pCPU, if it was blocked. A guest that posted no rx requests stalls the thread
(``xenvif_rx_ring_slots_available``) until its netfront refills the ring.

Transmit (netback.c, interface.c): with split event channels the guest's tx notification is
``xenvif_tx_interrupt`` on the dom0 vCPU its channel is bound to — woken on the guest's pCPU
if blocked — which schedules NAPI; ``xenvif_tx_action`` copies the first 128 bytes of each
request (XEN_NETBACK_TX_COPY_LEN) with one GNTTABOP_copy and grant-maps the rest
(GNTTABOP_map_grant_ref), hands the frames to dom0's stack (the ``vif`` capture) and
releases the slots: the tx responses are pushed and the guest notified (tx completion).
A dom0 vCPU that runs both a guest's rx thread and its tx poll interleaves their copies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...xen_events import GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, TRC_PV_HYPERCALL_V2
from ..physics import HYPERCALL_GNTTAB_W0
from .engine import US
from .sched import Vcpu
from .tables import (
    F_ACK,
    F_CONN,
    F_FLAGS,
    F_PLEN,
    R_REQ,
    R_UNIT,
    U_BACKEND,
    U_BATCH,
    U_COPY,
    U_COPY_CPU,
    U_COPY_VCPU,
    W_REQ,
    W_UNIT,
)

#: Packets per xenvif_rx_action, grant-copy ops per hypercall.
RX_BATCH_SIZE = 64
COPY_BATCH_SIZE = 64
XEN_PAGE = 4096
#: Bytes of a transmitted frame that netback copies; the rest it grant-maps.
TX_COPY_LEN = 128
#: Ethernet + IPv4 + TCP headers ahead of the payload in a guest's tx slot.
HEADERS = 54


class Netback:
    """The rx kthreads and tx polls of every guest's vif."""

    def __init__(self, host: HostSim) -> None:
        self.host = host
        self.rx_queue: dict[int, list[int]] = {g: [] for g in host.shape.guests}
        self.rx_scheduled = dict.fromkeys(host.shape.guests, False)
        self.tx_pending: dict[int, list[tuple[int, int, int, int]]] = {
            g: [] for g in host.shape.guests}
        self.tx_scheduled = dict.fromkeys(host.shape.guests, False)
        #: pCPU of the vCPU that last queued a frame for each guest (it kicks the thread)
        self.kicker = dict.fromkeys(host.shape.guests, host.shape.dom0_pcpu(0))
        self.batch_no = 0

    # ---------------------------------------------------------------- receive
    def to_netback(self, wires: list[int], t_backend: int, poller: Vcpu) -> None:
        """Frames (one unit: a frame, or a GRO segment) pass the vif tap; queue and kick."""
        host = self.host
        wire, units = host.wire.rows, host.units.rows
        unit = len(units)
        f0 = wire[wires[0]]
        if len(wires) == 1:
            f0[W_UNIT] = unit
            units.append([*f0[:7], t_backend, -1, -1, -1, -1, -1, f0[W_REQ], wires[0],
                          wires[0], -1, -1])
        else:
            plen = flags = 0
            for w in wires:
                f = wire[w]
                plen += f[F_PLEN]
                flags |= f[F_FLAGS]
                f[W_UNIT] = unit
            units.append([0, f0[F_CONN], f0[2], wire[wires[-1]][F_ACK], flags, plen, f0[6],
                          t_backend, -1, -1, -1, -1, -1, f0[W_REQ], wires[0], wires[-1], -1,
                          -1])
        g = host.flows[f0[F_CONN]].guest
        self.rx_queue[g].append(unit)
        self.kicker[g] = poller.pcpu.id
        if not self.rx_scheduled[g]:
            self.rx_scheduled[g] = True
            host.at(t_backend + host.lat(host.p.kick_median), self.rx_kick, g, poller.pcpu.id)

    def rx_kick(self, t: int, g: int, waker: int) -> None:
        """The guest-rx kthread is woken (its dom0 vCPU too, if blocked)."""
        host = self.host
        host.faults.ring_full_at(g, t, self.rx_queue[g])
        v = host.dom0[host.roles.rx_vcpu[g].at(t)]
        _, start, _ = v.acquire(t, waker)
        s = start + host.lat(host.p.copy_setup_median)
        v.hold(s + US)
        host.at(s, self.rx_action, g, v)

    def rx_action(self, s: int, g: int, v: Vcpu) -> None:
        """xenvif_rx_action: up to 64 packets, a grant copy per 64 ops, notify per flush."""
        host = self.host
        rs, re = host.faults.ring_stall.get(g, (0, 0))
        if rs <= s < re:       # no rx requests posted: wait for netfront's refill
            v.hold(s + US)
            host.at(re, self.rx_kick, g, host.guests[g].vcpu.pcpu.id)
            return
        units, queue = host.units.rows, self.rx_queue[g]
        k = 0
        while k < len(queue) and k < RX_BATCH_SIZE and units[queue[k]][U_BACKEND] <= s:
            k += 1
        take = queue[:k]
        del queue[:k]
        if not take:
            self._rx_again(g, s, queue)
            return
        end = s
        for chunk, nops in self._flushes(take):
            end = self._flush(end, g, v, chunk, nops)
        v.hold(end + US)
        if queue and units[queue[0]][U_BACKEND] <= end:
            host.at(end, self.rx_action, g, v)
        else:
            self._rx_again(g, end, queue)

    def _rx_again(self, g: int, t: int, queue: list[int]) -> None:
        if queue:
            self.host.at(max(t, self.host.units.rows[queue[0]][U_BACKEND]), self.rx_kick, g,
                         self.kicker[g])
        else:
            self.rx_scheduled[g] = False

    def _flushes(self, take: list[int]) -> list[tuple[list[int], int]]:
        """Units grouped by the copy hypercall that carries their last op (64 ops each)."""
        units = self.host.units.rows
        out: list[tuple[list[int], int]] = []
        cur: list[int] = []
        ops = 0
        for u in take:
            ops += max(1, -(-units[u][F_PLEN] // XEN_PAGE))
            while ops > COPY_BATCH_SIZE:     # the unit's earlier ops fill this batch
                out.append((cur, COPY_BATCH_SIZE))
                cur, ops = [], ops - COPY_BATCH_SIZE
            cur.append(u)
        out.append((cur, ops))
        return [(c, n) for c, n in out if n]

    def _flush(self, s: int, g: int, v: Vcpu, chunk: list[int], nops: int) -> int:
        """One GNTTABOP_copy at ``s``, then push and notify; returns when it is done."""
        host = self.host
        self.batch_no += 1
        cpu = v.pcpu.id
        host.rec(cpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY, nops))
        units = host.units.rows
        nbytes = 0
        for u in chunk:
            f = units[u]
            nbytes += f[F_PLEN]
            f[U_COPY], f[U_COPY_CPU], f[U_BATCH], f[U_COPY_VCPU] = s, cpu, self.batch_no, v.vcpu
        notify = s + host.lat(0.6 * US) + int(nbytes * 0.25) + host.lat(host.p.notify_median)
        if chunk:
            host.at(notify, host.guests[g].rx_notify, chunk, cpu)
        return notify + host.lat(0.8 * US)

    # ---------------------------------------------------------------- transmit
    def tx_notify(self, kick: int, g: int, row: int, t_guest: int) -> None:
        """The guest's tx event channel fires on the dom0 vCPU it is bound to."""
        host = self.host
        vnum = host.roles.tx_vcpu[g].at(kick)
        v = host.dom0[vnum]
        gcpu = host.guests[g].vcpu.pcpu.id
        stalled = host.faults.tx_dom0_stall_at(g, v, row, t_guest, kick, gcpu)
        if stalled is None:
            if v.running_at(t_guest):
                v.hold(kick + US)
            run, start, _ = v.acquire(kick, gcpu, ref=t_guest)
        else:
            run, start = stalled
        dom0_run = t_guest if run <= t_guest else run
        self.tx_pending[g].append((kick, row, dom0_run, vnum))
        if not self.tx_scheduled[g]:
            self.tx_scheduled[g] = True
            host.at(start + host.lat(1.5 * US), self.tx_poll, g)

    def tx_poll(self, s: int, g: int) -> None:
        """xenvif_poll → xenvif_tx_action: copy the headers, map the rest, hand over."""
        host = self.host
        pending = self.tx_pending[g]
        take = [e for e in pending if e[0] <= s]
        self.tx_pending[g] = [e for e in pending if e[0] > s]
        v = host.dom0[take[0][3]]
        cpu = v.pcpu.id
        rows = host.rows.rows
        host.rec(cpu, s, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0, GNTTABOP_COPY, len(take)))
        big = sum(1 for e in take if rows[e[1]][F_PLEN] + HEADERS > TX_COPY_LEN)
        cur = s + host.lat(1 * US)
        if big:
            host.rec(cpu, cur, TRC_PV_HYPERCALL_V2, (HYPERCALL_GNTTAB_W0,
                                                     GNTTABOP_MAP_GRANT_REF, big))
            cur += host.lat(0.8 * US)
        for _, row, dom0_run, _ in take:
            cur = self._tx_frame(cur, row, s, cpu, dom0_run, v.vcpu)
        v.hold(cur + US)
        host.at(cur + host.lat(host.p.notify_median), host.guests[g].tx_done, cpu)
        if self.tx_pending[g]:
            host.at(max(cur, min(e[0] for e in self.tx_pending[g])), self.tx_poll, g)
        else:
            self.tx_scheduled[g] = False

    def _tx_frame(self, cur: int, row: int, s: int, cpu: int, dom0_run: int,
                  vcpu: int) -> int:
        """One transmitted frame: vif tap, bridge, physical NIC; returns the time after."""
        host = self.host
        units, wire, rows = host.units.rows, host.wire.rows, host.rows.rows
        cur += host.lat(0.6 * US)
        t_backend = cur
        cur += host.lat(host.p.bridge_median)
        f = rows[row]
        unit, wid = len(units), len(wire)
        units.append([*f[:7], t_backend, s, cpu, -1, -1, -1, f[R_REQ], wid, wid, dom0_run,
                      vcpu])
        f[R_UNIT] = unit
        wire.append([*f[:7], -1, cur, -1, -1, unit, f[R_REQ], -1, -1])
        host.servers.sees(cur, f[F_CONN], f[F_FLAGS], f[R_REQ], f[F_PLEN])
        return cur


if TYPE_CHECKING:
    from .sim import HostSim

