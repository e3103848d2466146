"""The three captures of a simulated run: physical NIC and vif in dom0, eth0 in the guest.

Each capture is a table of the simulation (wire frames, netback units, guest frames) put in
capture order and turned into frames in one vectorized pass.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from .frames import Content, FrameBatch, build_frames, ip_to_int, mac_to_bytes
from .physics import Sim, Table
from .writers import write_pcap, write_pcapng

SERVER_IP, GUEST_IP = "10.0.0.1", "10.0.0.5"
SERVER_PORT = 11211
SERVER_MAC, GUEST_MAC = "3c:fd:fe:a5:11:01", "00:16:3e:5e:00:05"
WINDOW = 65535
TTL = 64


@dataclasses.dataclass
class Clock:
    """A capture's clock against true time: ``local = true + offset + drift·(true − t0)``."""

    t0_ns: int
    offset_ns: int = 0
    drift_ppm: float = 0.0

    def local(self, true_ns: np.ndarray) -> np.ndarray:
        true_ns = np.asarray(true_ns, dtype=np.int64)
        return true_ns + self.offset_ns + np.round(
            (true_ns - self.t0_ns) * (self.drift_ppm * 1e-6)).astype(np.int64)


def columns(table: Table, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Selected columns of a simulation table as int64 arrays (-1 where absent)."""
    return {name: table.column(name) for name in names}


def ip_ids(table: dict[str, np.ndarray], order: np.ndarray, key: np.ndarray) -> np.ndarray:
    """IPv4 ids: each (connection, direction) sender counts its frames in ``order``."""
    n = len(order)
    ids = np.zeros(len(key), dtype=np.int64)
    k = key[order]
    srt = np.argsort(k, kind="stable")
    ks = k[srt]
    start = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    ids[order[srt]] = (rank + ks * 7919) & 0xFFFF
    return ids


def frames_of(sim: Sim, t: dict[str, np.ndarray], order: np.ndarray, ip_id: np.ndarray,
              content: Content, snaplen: int) -> FrameBatch:
    """Frames of a table's rows in ``order``."""
    d = t["dir"][order]
    rx = d == 0
    conn_sport = np.array([c.sport for c in sim.conns], dtype=np.int64)
    sport_guest = conn_sport[t["conn"][order]]
    server_ip, guest_ip = ip_to_int(SERVER_IP), ip_to_int(GUEST_IP)
    smac, gmac = mac_to_bytes(SERVER_MAC), mac_to_bytes(GUEST_MAC)
    n = len(order)
    return build_frames(
        eth_src=np.where(rx[:, None], smac, gmac), eth_dst=np.where(rx[:, None], gmac, smac),
        ip_src=np.where(rx, server_ip, guest_ip), ip_dst=np.where(rx, guest_ip, server_ip),
        ip_id=ip_id[order], ttl=np.full(n, TTL),
        sport=np.where(rx, SERVER_PORT, sport_guest), dport=np.where(rx, sport_guest,
                                                                     SERVER_PORT),
        seq=t["seq"][order], ack=t["ack"][order], flags=t["flags"][order],
        window=np.full(n, WINDOW), payload_len=t["plen"][order],
        content_pos=t["cpos"][order], content=content, snaplen=snaplen)


FIELDS = ("dir", "conn", "seq", "ack", "flags", "plen", "cpos")


def write_captures(sim: Sim, out_dir: str | os.PathLike[str], *, content: Content,
                   guest_clock: Clock, snaplen: int, vif_name: str) -> dict[str, str]:
    """Write phys.pcap, vif<D>.0.pcap and guest.pcapng; return {capture: file name}."""
    wire = columns(sim.wire, (*FIELDS, "t_phys", "unit"))
    units = columns(sim.units, (*FIELDS, "t_backend", "wire_first"))
    rows = columns(sim.rows, (*FIELDS, "t_guest", "unit"))
    # IP ids follow the wire: rx by the server in arrival order, tx by the guest in send order
    wire_order = np.argsort(wire["t_phys"], kind="stable")
    wire_ids = ip_ids(wire, wire_order, wire["conn"] * 2 + wire["dir"])
    unit_ids = wire_ids[units["wire_first"]]
    row_ids = unit_ids[rows["unit"]]
    written = {}
    for key, name, t, ids, tcol, clock in (
            ("phys", "phys.pcap", wire, wire_ids, "t_phys", None),
            ("backend", vif_name, units, unit_ids, "t_backend", None),
            ("guest", "guest.pcapng", rows, row_ids, "t_guest", guest_clock)):
        order = np.argsort(t[tcol], kind="stable")
        ts = t[tcol][order] if clock is None else clock.local(t[tcol][order])

        def build(lo: int, hi: int, t: dict = t, ids: np.ndarray = ids,
                  order: np.ndarray = order) -> FrameBatch:
            return frames_of(sim, t, order[lo:hi], ids, content, snaplen)

        path = os.path.join(out_dir, name)
        if clock is None:
            write_pcap(path, ts, build, snaplen=snaplen)
        else:
            write_pcapng(path, ts, build, snaplen=snaplen)
        written[key] = name
    return written
