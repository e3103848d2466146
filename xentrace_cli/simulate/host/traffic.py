"""The traffic of the realistic host: every guest's flows and pre-drawn exchanges.

The captured guest (the shape's first) runs the memcached-like TCP client of the toy host
over a few connections, plus a DNS-like UDP exchange on a socket of its own (a query datagram
out, one response datagram back, ~25 % of exchanges). A second guest runs its own TCP client
against the same server; its frames share the NIC and netback but its ``vif`` and its inside
are not captured. All exchanges are drawn before the run so that segments simulated in
parallel agree on stream positions.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from typing import TYPE_CHECKING

import numpy as np

from ..frames import Content

if TYPE_CHECKING:  # sim.py imports this module
    from .sim import HostParams
from ..physics import Conn, Request

IPPROTO_TCP, IPPROTO_UDP = 6, 17
SERVER_IP, SERVER_PORT = "10.0.0.1", 11211
RESOLVER_IP, RESOLVER_PORT = "10.0.0.2", 53
#: Guest addresses by domain id (the captured guest is 10.0.0.5, as on the toy host).
GUEST_IPS = {5: "10.0.0.5", 6: "10.0.0.6"}
GUEST_MACS = {5: "00:16:3e:5e:00:05", 6: "00:16:3e:5e:00:06"}
SERVER_MAC = "3c:fd:fe:a5:11:01"
#: Largest UDP response payload (one datagram, no fragmentation).
UDP_MAX = 1400


@dataclasses.dataclass
class Flow(Conn):
    """A TCP connection or a UDP socket of one guest, with its addresses."""

    guest: int = 5
    proto: int = IPPROTO_TCP
    server_ip: str = SERVER_IP
    server_port: int = SERVER_PORT

    @property
    def guest_ip(self) -> str:
        return GUEST_IPS.get(self.guest, f"10.0.0.{self.guest}")


@dataclasses.dataclass
class Exchange(Request):
    """One request/response; ``mmsg``: the application uses sendmmsg/recvmmsg for it."""

    mmsg: bool = False


def draw_flows(params: HostParams, guests: tuple[int, ...], rnd: random.Random) -> list[Flow]:
    """TCP connections (and the UDP socket of the captured guest) of every guest."""
    flows: list[Flow] = []
    for i, g in enumerate(guests):
        n = params.n_conns if i == 0 else 3
        for c in range(n):
            flows.append(Flow(sport=40000 + rnd.randrange(20000) + c,
                              c_isn=rnd.getrandbits(32), s_isn=rnd.getrandbits(32),
                              fd=3 + c, guest=g))
        if i == 0 and params.udp_share > 0:
            flows.append(Flow(sport=33000 + rnd.randrange(20000), c_isn=0, s_isn=0, fd=3 + n,
                              guest=g, proto=IPPROTO_UDP, server_ip=RESOLVER_IP,
                              server_port=RESOLVER_PORT))
    return flows


def _dns_query(txid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0) + labels + b"\0\x01\0\x01"


def _dns_answer_head(query: bytes, size: int, r: int) -> bytes:
    """A response of ``size`` bytes: header, the question, one A record, then an EDNS0 OPT
    record whose Padding option (RFC 7830) fills the rest — the literal part ends where the
    padding bytes begin (they are the content's pattern)."""
    answer = struct.pack(">HHHIH4B", 0xC00C, 1, 1, 300, 4, 10, 0, 1 + r // 250 % 250,
                         1 + r % 250)
    head = query[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 1) + query[12:] + answer
    pad = max(0, size - len(head) - 15)
    opt = struct.pack(">BHHIH", 0, 41, 4096, 0, 4 + pad) + struct.pack(">HH", 12, pad)
    return head + opt


def draw_exchanges(n: int, params: HostParams, flows: list[Flow], guest: int,
                   rnd: random.Random, pos: int, lit: bytearray,
                   regions: list[list[int]]) -> tuple[list[Exchange], int]:
    """``n`` exchanges of ``guest``, laid out in the content from virtual position ``pos``."""
    tcp = [i for i, f in enumerate(flows) if f.guest == guest and f.proto == IPPROTO_TCP]
    udp = [i for i, f in enumerate(flows) if f.guest == guest and f.proto == IPPROTO_UDP]
    off = {i: [0, 0] for i in (*tcp, *udp)}
    out: list[Exchange] = []
    for r in range(n):
        if udp and rnd.random() < params.udp_share:
            c = udp[0]
            text = _dns_query(rnd.getrandbits(16), f"k{r:08d}.svc.example")
            size = int(min(UDP_MAX, max(len(text) + 31, rnd.lognormvariate(np.log(180),
                                                                            0.7))))
            header = _dns_answer_head(text, size, r)
            mmsg = rnd.random() < 0.3
        else:
            c = tcp[r % len(tcp)]
            key = f"k{r:08d}"
            text = (f"get {key} k{rnd.randrange(10**8):08d}\r\n" if rnd.random() < 0.15
                    else f"get {key}\r\n").encode()
            size = int(min(30000, max(100, rnd.lognormvariate(np.log(params.resp_median),
                                                              params.resp_sigma))))
            header = f"VALUE {key} 0 {size}\r\n".encode()
            mmsg = False
        tx, rx = off[c]
        out.append(Exchange(conn=c, request=text, resp_len=size, resp_header=header,
                            req_pos=pos, resp_pos=pos + len(text), tx_off=tx, rx_off=rx,
                            mmsg=mmsg))
        off[c] = [tx + len(text), rx + size]
        regions.append([pos, len(lit), len(text)])
        regions.append([pos + len(text), len(lit) + len(text), len(header)])
        lit += text + header
        pos += len(text) + size
    return out, pos


#: The other guests make one exchange for every PEER_RATIO of the captured guest's (and think
#: that much longer between them), so they share the NIC and netback at a lighter load.
PEER_RATIO = 4


def peer_count(n: int, index: int) -> int:
    """Exchanges of the guest at ``index`` in the shape (0: the captured one) for ``n``."""
    return n if index == 0 else -(-n // PEER_RATIO)


def draw_traffic(n: int, params: HostParams, guests: tuple[int, ...], rnd: random.Random
                 ) -> tuple[list[Flow], dict[int, list[Exchange]], Content]:
    """Flows and exchanges of every guest (``n`` for the captured one), with their content."""
    flows = draw_flows(params, guests, rnd)
    lit = bytearray()
    regions: list[list[int]] = []
    pos = 0
    exchanges = {}
    for i, g in enumerate(guests):
        exchanges[g], pos = draw_exchanges(peer_count(n, i), params, flows, g, rnd, pos, lit,
                                           regions)
    reg = np.array(regions or [[0, 0, 0]], dtype=np.int64)
    content = Content(region_start=reg[:, 0], literal_off=reg[:, 1], literal_len=reg[:, 2],
                      literal=np.frombuffer(bytes(lit) or b"\0", dtype=np.uint8))
    return flows, exchanges, content


def guest_first(exchanges: dict[int, list[Exchange]], g: int, first: int) -> int:
    """The first exchange of guest ``g`` in a segment starting at the captured guest's
    exchange ``first``."""
    n = len(next(iter(exchanges.values())))
    return first if n == 0 else first * len(exchanges[g]) // n


def flows_at(flows: list[Flow], exchanges: dict[int, list[Exchange]], first: int) -> list[Flow]:
    """The flows' stream positions just before the segment starting at exchange ``first`` of
    the captured guest (the matching exchange of every other guest)."""
    out = []
    for c, flow in enumerate(flows):
        mine = exchanges[flow.guest]
        first_g = guest_first(exchanges, flow.guest, first)
        nxt = next((r for r in mine[first_g:] if r.conn == c), None)
        if nxt is not None:
            tx, rx = nxt.tx_off, nxt.rx_off
        else:
            done = [r for r in mine[:first_g] if r.conn == c]
            tx = done[-1].tx_off + len(done[-1].request) if done else 0
            rx = done[-1].rx_off + done[-1].resp_len if done else 0
        out.append(dataclasses.replace(flow, tx_next=tx, rx_next=rx, acked=rx, consumed=rx,
                                       delivered=[]))
    return out
