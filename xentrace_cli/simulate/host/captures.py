"""The realistic host's captures: the physical NIC and the captured guest's vif in dom0, and
eth0 inside that guest.

The physical NIC's capture holds every guest's frames (the second guest's too: they share the
NIC); the vif and guest captures only the captured guest's. TCP and UDP frames are built in
one vectorized pass each and interleaved in capture order. IP ids follow each sender's count
per flow and direction, so the same datagram carries the same id in every capture.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..captures import TTL, WINDOW, Clock
from ..frames import (
    Content,
    FrameBatch,
    build_frames,
    build_udp_frames,
    ip_to_int,
    mac_to_bytes,
    merge_frames,
)
from ..writers import write_pcap, write_pcapng
from .tables import FRAME_COLUMNS
from .traffic import GUEST_MACS, IPPROTO_UDP, SERVER_MAC, Flow


def flow_columns(flows: list[Flow]) -> dict[str, np.ndarray]:
    """Per flow id: protocol, addresses, ports, MAC addresses."""
    return {
        "proto": np.array([f.proto for f in flows], dtype=np.int64),
        "guest": np.array([f.guest for f in flows], dtype=np.int64),
        "guest_ip": np.array([f.guest_ip for f in flows], dtype=object),
        "server_ip": np.array([f.server_ip for f in flows], dtype=object),
        "guest_port": np.array([f.sport for f in flows], dtype=np.int64),
        "server_port": np.array([f.server_port for f in flows], dtype=np.int64),
        "guest_ip_int": np.array([ip_to_int(f.guest_ip) for f in flows], dtype=np.int64),
        "server_ip_int": np.array([ip_to_int(f.server_ip) for f in flows], dtype=np.int64),
        "guest_mac": np.array([mac_to_bytes(GUEST_MACS.get(f.guest, "00:16:3e:00:00:00"))
                               for f in flows], dtype=np.uint8).reshape(-1, 6),
    }


def _ranks(key: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each row's rank among the rows of its key, counted in ``order``."""
    n = len(order)
    out = np.zeros(len(key), dtype=np.int64)
    k = key[order]
    srt = np.argsort(k, kind="stable")
    ks = k[srt]
    start = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1] if n else np.zeros(0, np.int64)
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    out[order[srt]] = (rank + ks * 7919) & 0xFFFF
    return out


def ip_ids(sim: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IPv4 ids of the wire frames, netback units and guest frames (cached on ``sim``)."""
    cached = getattr(sim, "_ip_ids", None)
    if cached is not None:
        return cached
    conn, d = sim.wire.column("conn"), sim.wire.column("dir")
    order = np.argsort(sim.wire.column("t_phys"), kind="stable")
    wire_ids = _ranks(conn * 2 + d, order)
    unit_ids = wire_ids[sim.units.column("wire_first")]
    row_ids = unit_ids[sim.rows.column("unit")]
    sim._ip_ids = (wire_ids, unit_ids, row_ids)
    return sim._ip_ids


def frames_of(fc: dict[str, np.ndarray], t: dict[str, np.ndarray], order: np.ndarray,
              ids: np.ndarray, content: Content, snaplen: int) -> FrameBatch:
    """Frames of a table's rows in ``order``: TCP and UDP built apart, then interleaved."""
    conn = t["conn"][order]
    rx = t["dir"][order] == 0
    udp = fc["proto"][conn] == IPPROTO_UDP
    smac = mac_to_bytes(SERVER_MAC)
    gmac = fc["guest_mac"][conn]
    sip, gip = fc["server_ip_int"][conn], fc["guest_ip_int"][conn]
    sport, gport = fc["server_port"][conn], fc["guest_port"][conn]
    cols = dict(eth_src=np.where(rx[:, None], smac, gmac), eth_dst=np.where(rx[:, None], gmac,
                                                                            smac),
                ip_src=np.where(rx, sip, gip), ip_dst=np.where(rx, gip, sip),
                ip_id=ids[order], ttl=np.full(len(order), TTL),
                sport=np.where(rx, sport, gport), dport=np.where(rx, gport, sport),
                payload_len=t["plen"][order], content_pos=t["cpos"][order])

    def part(sel: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[sel] for k, v in cols.items()}

    tcp_sel = np.flatnonzero(~udp)
    tcp = build_frames(**part(tcp_sel), seq=t["seq"][order][tcp_sel],
                       ack=t["ack"][order][tcp_sel], flags=t["flags"][order][tcp_sel],
                       window=np.full(len(tcp_sel), WINDOW), content=content, snaplen=snaplen)
    if not udp.any():
        return tcp
    dgrams = build_udp_frames(**part(np.flatnonzero(udp)), content=content, snaplen=snaplen)
    return merge_frames(tcp, dgrams, udp)


def write_captures(sim: Any, out_dir: str | os.PathLike[str], *, content: Content,
                   guest_clock: Clock, snaplen: int, vif_name: str) -> dict[str, str]:
    """Write phys.pcap, vif<D>.0.pcap and guest.pcapng; return {capture: file name}."""
    fc = flow_columns(sim.flows)
    wire = {c: sim.wire.column(c) for c in (*FRAME_COLUMNS, "t_phys")}
    units = {c: sim.units.column(c) for c in (*FRAME_COLUMNS, "t_backend")}
    rows = {c: sim.rows.column(c) for c in (*FRAME_COLUMNS, "t_guest")}
    wire_ids, unit_ids, row_ids = ip_ids(sim)
    mine_u = np.flatnonzero(fc["guest"][units["conn"]] == sim.captured)
    mine_r = np.flatnonzero(fc["guest"][rows["conn"]] == sim.captured)
    written = {}
    for key, name, t, ids, tcol, sel, clock in (
            ("phys", "phys.pcap", wire, wire_ids, "t_phys", np.arange(len(wire["dir"])), None),
            ("backend", vif_name, units, unit_ids, "t_backend", mine_u, None),
            ("guest", "guest.pcapng", rows, row_ids, "t_guest", mine_r, guest_clock)):
        order = sel[np.argsort(t[tcol][sel], kind="stable")]
        ts = t[tcol][order] if clock is None else clock.local(t[tcol][order])

        def build(lo: int, hi: int, t: dict = t, ids: np.ndarray = ids,
                  order: np.ndarray = order) -> FrameBatch:
            return frames_of(fc, t, order[lo:hi], ids, content, snaplen)

        path = os.path.join(out_dir, name)
        if clock is None:
            write_pcap(path, ts, build, snaplen=snaplen)
        else:
            write_pcapng(path, ts, build, snaplen=snaplen)
        written[key] = name
    return written
