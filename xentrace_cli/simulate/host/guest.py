"""A networked guest: its vCPU, its kernel's netfront and stack, and its application.

The application is the toy host's memcached-like client (connect, write a request, poll,
read the response in pieces, think) plus a DNS-like UDP exchange (``sendto`` or
``sendmmsg``, ``poll``, ``recvfrom`` or ``recvmmsg``). Only the captured guest's calls go to
the strace log, in strace's own format (``strace -f -ttt -T -s 64``; the ``msghdr`` layout of
sendmmsg/recvmmsg as strace's tests/mmsg.c prints it).

Receive: netback's notification wakes the vCPU (or finds it running: then the event is
injected, HVM_INJ_VIRQ); netfront hands each frame to the stack (the capture inside the guest)
and the TCP stack acknowledges per batch. Transmit: the stack hands a frame to netfront (the
capture), which notifies dom0's tx channel; netback's tx completion later wakes the vCPU for
netfront's tx clean-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...xen_events import (
    HVM_CALLBACK_VECTOR,
    TRC_HVM_INJ_VIRQ,
    TRC_HVM_VMENTRY,
    TRC_HVM_VMEXIT64,
)
from ..frames import ACK, PSH, SYN
from ..physics import READ_BUFFER
from ..writers import strace_quote
from .engine import U32, US
from .sched import Vcpu
from .tables import F_ACK, F_CONN, F_CPOS, F_FLAGS, F_PLEN, F_SEQ, U_REQ, U_RUN, U_WAKE
from .traffic import IPPROTO_UDP, Exchange, Flow
from .xensched import EXIT_INTR

if TYPE_CHECKING:
    from .sim import HostSim

#: The buffer a UDP read offers.
UDP_BUFFER = 2048


def _sockaddr(flow: Flow) -> str:
    return (f"{{sa_family=AF_INET, sin_port=htons({flow.server_port}), "
            f'sin_addr=inet_addr("{flow.server_ip}")}}')


class Guest:
    """One guest domain with one vCPU and one application."""

    def __init__(self, host: HostSim, domid: int, vcpu: Vcpu, exchanges: list[Exchange],
                 *, logged: bool, req_range: tuple[int, int], connect: bool,
                 think: float) -> None:
        self.host, self.domid, self.vcpu = host, domid, vcpu
        self.exchanges = exchanges
        self.logged = logged
        self.flow_ids = [c for c, f in enumerate(host.flows) if f.guest == domid]
        self.tcp = [c for c in self.flow_ids if host.flows[c].proto != IPPROTO_UDP]
        self.udp = [c for c in self.flow_ids if host.flows[c].proto == IPPROTO_UDP]
        self.state, self.req, self.conn, self.entry = "idle", -1, -1, 0
        self.next_req, self.req_end = req_range
        self.connecting = 0 if connect else len(self.flow_ids)
        self.think = think

    def call(self, entry: int, duration: int, text: str) -> None:
        """One socket call for the strace log (the captured guest only)."""
        if self.logged:
            self.host.strace_ns.extend((entry, duration))
            self.host.strace_calls.append(text)

    def start(self) -> None:
        self.host.at(self.host.t_begin + 200 * US + self.host.lat(50 * US), self.app_timer)

    # ---------------------------------------------------------------- application
    def app_timer(self, t: int) -> None:
        """The application wakes up to do its next thing: connect, or send a request."""
        g = self.vcpu
        _, start, _ = g.acquire(t, g.pcpu.id, app=True)
        if start > t:
            self.host.at(start, self.app_timer)
            return
        if self.connecting < len(self.flow_ids):
            self._open(t, self.flow_ids[self.connecting])
            self.connecting += 1
        elif self.next_req < self.req_end:
            self._send_request(t, self.next_req)
            self.next_req += 1

    def _open(self, t: int, c: int) -> None:
        """A TCP connect (finished by the handshake) or a UDP socket (ready at once)."""
        host, flow, g = self.host, self.host.flows[c], self.vcpu
        dur = host.lat(9 * US)
        if flow.proto == IPPROTO_UDP:
            self.call(t, dur, f"socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP) = {flow.fd}")
            g.hold(t + dur + 2 * US, app=True)
            host.at(t + dur + host.lat(20 * US), self.app_timer)
            return
        self.call(t, dur, f"socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = {flow.fd}")
        entry = t + dur + host.lat(2 * US)
        self.entry, self.conn, self.state = entry, c, "connect"
        t_syn = entry + host.lat(12 * US)
        self.guest_tx(t_syn, c, seq=flow.c_isn, ack=0, flags=SYN, plen=0, cpos=0, req=-1)
        g.hold(t_syn + host.lat(3 * US), app=True)

    def _send_request(self, t: int, r: int) -> None:
        host, g = self.host, self.vcpu
        req = self.exchanges[r]
        flow = host.flows[req.conn]
        if self.logged:
            host.request_sent(r, t)
        entry = t + host.lat(2 * US)
        t_guest = host.faults.socket_write_stall(self, r, entry) or entry + host.lat(7 * US)
        if flow.proto == IPPROTO_UDP:
            self.guest_tx(t_guest, req.conn, seq=req.tx_off, ack=0, flags=0,
                          plen=len(req.request), cpos=req.req_pos, req=r, t_write=entry)
            flow.tx_next = req.tx_off + len(req.request)
            ret = t_guest + host.lat(1.5 * US)
            self.call(entry, ret - entry, self._send_text(flow, req))
        else:
            seq = (flow.c_isn + 1 + req.tx_off) & U32
            ack = (flow.s_isn + 1 + flow.rx_next) & U32
            self.guest_tx(t_guest, req.conn, seq=seq, ack=ack, flags=PSH | ACK,
                          plen=len(req.request), cpos=req.req_pos, req=r, t_write=entry)
            flow.acked = flow.rx_next
            flow.tx_next = req.tx_off + len(req.request)
            ret = t_guest + host.lat(2 * US)
            n = len(req.request)
            self.call(entry, ret - entry,
                      f"write({flow.fd}, {strace_quote(req.request, n)}, {n}) = {n}")
        cur = ret + host.lat(1 * US)
        if host.rnd.random() < 0.3:   # an eager read before the response can be there
            d = host.lat(1.5 * US)
            self.call(cur, d, self._eagain(flow))
            cur += d + host.lat(1 * US)
        self.req, self.conn, self.entry, self.state = r, req.conn, cur, "poll"
        g.hold(cur + host.lat(1 * US), app=True)

    def _send_text(self, flow: Flow, req: Exchange) -> str:
        n = len(req.request)
        data = strace_quote(req.request, n)
        if req.mmsg:
            return (f"sendmmsg({flow.fd}, [{{msg_hdr={{msg_name={_sockaddr(flow)}, "
                    f"msg_namelen=16, msg_iov=[{{iov_base={data}, iov_len={n}}}], "
                    f"msg_iovlen=1, msg_controllen=0, msg_flags=0}}, msg_len={n}}}], 1, 0)"
                    " = 1")
        return f"sendto({flow.fd}, {data}, {n}, 0, {_sockaddr(flow)}, 16) = {n}"

    def _eagain(self, flow: Flow) -> str:
        if flow.proto == IPPROTO_UDP:
            return (f"recvfrom({flow.fd}, 0x7ffd5c1e2a40, {UDP_BUFFER}, MSG_DONTWAIT, "
                    "0x7ffd5c1e29c0, [128]) = -1 EAGAIN (Resource temporarily unavailable)")
        return (f"read({flow.fd}, 0x7ffd5c1e2a40, {READ_BUFFER}) = -1 EAGAIN (Resource "
                "temporarily unavailable)")

    def app_wake(self, t: int) -> None:
        """The application's blocking call returns (poll ready, or connect done)."""
        host, g = self.host, self.vcpu
        _, start, _ = g.acquire(t, g.pcpu.id, app=True)
        if start > t:
            host.at(start, self.app_wake)
            return
        flow = host.flows[self.conn]
        if self.state == "connect_wake":
            self.call(self.entry, t - self.entry,
                      f"connect({flow.fd}, {_sockaddr(flow)}, 16) = 0")
            d = host.lat(2 * US)
            self.call(t + 1 * US, d, f"fcntl({flow.fd}, F_SETFL, O_RDWR|O_NONBLOCK) = 0")
            self.state = "idle"
            end = t + 1 * US + d
            g.hold(end + 2 * US, app=True)
            host.at(end + host.lat(20 * US), self.app_timer)
            return
        self.call(self.entry, t - self.entry,
                  f"poll([{{fd={flow.fd}, events=POLLIN}}], 1, 1000) = 1 "
                  f"([{{fd={flow.fd}, revents=POLLIN}}])")
        self.state = "reading"
        nxt = host.faults.app_stall(self, t) or t + host.lat(1.5 * US)
        g.hold(nxt + 1 * US, app=True)
        host.at(nxt, self.app_read)

    def _available(self, flow: Flow, t: int) -> int:
        """Stream bytes in the socket queue by ``t``."""
        best = flow.consumed
        for ts, end in reversed(flow.delivered):
            if ts <= t and end > best:
                best = end
        return best - flow.consumed

    def app_read(self, t: int) -> None:
        host, g = self.host, self.vcpu
        _, start, _ = g.acquire(t, g.pcpu.id, app=True)
        if start > t:
            host.at(start, self.app_read)
            return
        req = self.exchanges[self.req]
        flow = host.flows[req.conn]
        avail = self._available(flow, t)
        if avail == 0:
            self._read_again(t, flow)
            return
        if flow.proto == IPPROTO_UDP:
            n = min(avail, req.rx_off + req.resp_len - flow.consumed)
            ret = t + host.lat(2 * US) + int(n * 0.05)
            self.call(t, ret - t, self._recv_text(flow, req, n))
        else:
            n = min(avail, READ_BUFFER)
            ret = t + host.lat(1.5 * US) + int(n * 0.08)
            first = req.resp_pos + (flow.consumed - req.rx_off)
            data = host.content.slice(first, min(n, 64))
            self.call(t, ret - t, f"read({flow.fd}, {strace_quote(data, n)}, "
                      f"{READ_BUFFER}) = {n}")
        flow.consumed += n
        if self.logged:
            host.reads.extend((req.conn, flow.consumed, ret))
        if flow.consumed >= req.rx_off + req.resp_len:
            self.state = "idle"
            g.hold(ret + host.lat(2 * US), app=True)
            flow.delivered = [(ts, e) for ts, e in flow.delivered if e > flow.consumed]
            host.at(ret + host.lat(self.think, 0.6), self.app_timer)
        else:
            nxt = ret + host.lat(1 * US)
            g.hold(nxt + 1 * US, app=True)
            host.at(nxt, self.app_read)

    def _recv_text(self, flow: Flow, req: Exchange, n: int) -> str:
        data = strace_quote(self.host.content.slice(req.resp_pos, min(n, 64)), n)
        if req.mmsg:
            return (f"recvmmsg({flow.fd}, [{{msg_hdr={{msg_name={_sockaddr(flow)}, "
                    f"msg_namelen=16, msg_iov=[{{iov_base={data}, iov_len={UDP_BUFFER}}}], "
                    f"msg_iovlen=1, msg_controllen=0, msg_flags=0}}, msg_len={n}}}], 8, "
                    "MSG_WAITFORONE, NULL) = 1")
        return (f"recvfrom({flow.fd}, {data}, {UDP_BUFFER}, 0, {_sockaddr(flow)}, "
                f"[128 => 16]) = {n}")

    def _read_again(self, t: int, flow: Flow) -> None:
        """Nothing there yet: EAGAIN, back to poll."""
        host, g = self.host, self.vcpu
        d = host.lat(1.2 * US)
        self.call(t, d, self._eagain(flow))
        self.entry = t + d + host.lat(1 * US)
        self.state = "poll"
        g.hold(self.entry + 1 * US, app=True)
        later = [ts for ts, end in flow.delivered if end > flow.consumed]
        if later:
            self.state = "waking"
            host.at(max(self.entry, min(later)) + host.lat(host.p.app_wake_median),
                    self.app_wake)

    # ---------------------------------------------------------------- transmit
    def guest_tx(self, t_guest: int, c: int, *, seq: int, ack: int, flags: int, plen: int,
                 cpos: int, req: int, t_write: int = -1) -> None:
        """The stack hands a frame to netfront (the capture); netfront notifies dom0."""
        host = self.host
        rows = host.rows.rows
        rows.append([1, c, seq, ack, flags, plen, cpos, t_guest, -1, -1, t_write, req])
        kick = t_guest + host.lat(host.p.notify_median)
        host.at(kick, host.netback.tx_notify, self.domid, len(rows) - 1, t_guest)

    def tx_done(self, t: int, notifier: int) -> None:
        """netback's tx completion: netfront reclaims its slots."""
        g = self.vcpu
        run, start, woke = g.acquire(t, notifier)
        if woke is None and run <= t:
            self.upcall(t)
        g.hold(start + self.host.lat(2.5 * US))

    def upcall(self, t: int) -> None:
        """The event channel's upcall into the running HVM vCPU: a VM exit for the
        notifying IPI, HVM_INJ_VIRQ of the callback vector, the VM entry."""
        host, cpu = self.host, self.vcpu.pcpu.id
        rip = host.rnd.getrandbits(32)
        host.rec(cpu, t - 300, TRC_HVM_VMEXIT64, (EXIT_INTR, rip, 0xFFFFFFFF))
        host.rec(cpu, t, TRC_HVM_INJ_VIRQ, (HVM_CALLBACK_VECTOR, 0), ts=False)
        host.rec(cpu, t + 400, TRC_HVM_VMENTRY, ())

    # ---------------------------------------------------------------- receive
    def rx_notify(self, t: int, take: list[int], notifier: int) -> None:
        """The rx event channel fires: the vCPU wakes or is running; netfront delivers."""
        host, g, units = self.host, self.vcpu, self.host.units.rows
        run, start, woke = g.acquire(t, notifier)
        if woke is None and run <= t:
            self.upcall(t)
        guest_run = t if run <= t else run
        cur = start + host.lat(host.p.netfront_median)
        delivered: dict[int, int] = {}
        wake = -1 if woke is None else woke
        for u in take:
            uf = units[u]
            uf[U_WAKE], uf[U_RUN] = wake, guest_run
            cur = self._deliver(u, cur, delivered)
        g.hold(cur + host.lat(2 * US))
        cur = self._ack(cur, delivered)
        g.hold(cur + host.lat(2 * US))
        host.faults.guest_preempt_after(self, units[take[-1]][U_REQ], take[-1], delivered)
        if self.state == "poll" and self.conn in delivered:
            self.state = "waking"
            host.at(max(self.entry, delivered[self.conn]) + host.lat(host.p.app_wake_median),
                    self.app_wake)

    def _deliver(self, u: int, cur: int, delivered: dict[int, int]) -> int:
        """netfront → stack for one unit; returns netfront's time after it."""
        host = self.host
        uf = host.units.rows[u]
        c = uf[F_CONN]
        flow = host.flows[c]
        for seq, plen, cpos, flags in self._split(u):
            cur += host.lat(host.p.netfront_per_frame)
            sock = cur + host.lat(host.p.stack_median)
            host.rows.rows.append([0, c, seq, uf[F_ACK], flags, plen, cpos, cur, u, sock, -1,
                                   uf[U_REQ]])
            if flags & SYN:
                flow.delivered.append((sock, -1))
                self._handshake_done(sock, c)
            elif plen:
                if flow.proto == IPPROTO_UDP:
                    end = seq + plen
                else:
                    end = (seq - flow.s_isn - 1) % (1 << 32) + plen
                flow.rx_next = max(flow.rx_next, end)
                flow.delivered.append((sock, end))
                if c not in delivered or sock < delivered[c]:
                    delivered[c] = sock
        return cur

    def _ack(self, cur: int, delivered: dict[int, int]) -> int:
        """One ACK per TCP connection per netfront batch."""
        host = self.host
        for c in delivered:
            flow = host.flows[c]
            if flow.proto != IPPROTO_UDP and flow.rx_next > flow.acked:
                flow.acked = flow.rx_next
                cur += host.lat(2 * US)
                self.guest_tx(cur, c, seq=(flow.c_isn + 1 + flow.tx_next) & U32,
                              ack=(flow.s_isn + 1 + flow.rx_next) & U32, flags=ACK, plen=0,
                              cpos=0, req=-1)
        return cur

    def last_unit_of(self, u: int) -> bool:
        """Whether unit ``u`` carries the last byte of its response."""
        f = self.host.units.rows[u]
        req = self.exchanges[f[U_REQ]]
        flow = self.host.flows[req.conn]
        if flow.proto == IPPROTO_UDP:
            return True
        end = (f[F_SEQ] - flow.s_isn - 1) % (1 << 32) + f[F_PLEN]
        return end >= req.rx_off + req.resp_len

    def _handshake_done(self, t_sock: int, c: int) -> None:
        host, flow = self.host, self.host.flows[c]
        self.guest_tx(t_sock + host.lat(2 * US), c, seq=(flow.c_isn + 1) & U32,
                      ack=(flow.s_isn + 1) & U32, flags=ACK, plen=0, cpos=0, req=-1)
        if self.state == "connect" and self.conn == c:
            self.state = "connect_wake"
            host.at(t_sock + host.lat(host.p.app_wake_median), self.app_wake)

    def _split(self, u: int) -> list[tuple[int, int, int, int]]:
        """Guest frames of a unit: itself, or (guest GRO) chunks with other boundaries."""
        host = self.host
        f = host.units.rows[u]
        seq, plen, cpos, flags = f[F_SEQ], f[F_PLEN], f[F_CPOS], f[F_FLAGS]
        if not host.p.guest_gro or plen <= host.p.mss:
            return [(seq, plen, cpos, flags)]
        out = []
        off = 0
        while off < plen:
            n = host.p.mss * host.rnd.randint(1, 4) + host.rnd.randrange(-700, 700)
            n = max(1, min(n, plen - off))
            last = off + n >= plen
            out.append(((seq + off) & U32, n, cpos + off, flags if last else flags & ~PSH))
            off += n
        return out
