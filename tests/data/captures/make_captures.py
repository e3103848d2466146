"""Builds the small test captures in this folder: ``python tests/data/captures/make_captures.py``.

Packets come from scapy (headers with correct lengths and checksums); the containers are written
byte by byte here, so that every format variant is exactly what the tests claim: classic pcap in
both byte orders with µs / ns / Kuznetzov magic, gzip, and pcapng with several sections of
either byte order, several interfaces (decimal and binary ``if_tsresol``, ``if_tsoffset``,
``if_name``), Enhanced / Simple / obsolete Packet Blocks, and blocks a reader must skip.
The output is deterministic (fixed timestamps, no randomness); the tests compare the reader's
table with live tshark on these files.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: first timestamp of every capture: 2023-11-14T22:13:20.123456789Z
T0_NS = 1_700_000_000_123_456_789

Frame = tuple[int, bytes, int]  # (ts_ns, captured bytes, original length)


# ---- packets --------------------------------------------------------------------------------
def ip_packets() -> list[bytes]:
    """Network-layer packets (IPv4 and IPv6) covering what the decoder must handle."""
    from scapy.all import (
        GRE,
        ICMP,
        IP,
        TCP,
        UDP,
        VXLAN,
        Ether,
        ICMPv6EchoRequest,
        IPOption_RR,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        Raw,
        fragment,
        fragment6,
    )

    payload = bytes(range(200))
    out = [
        # IPv4 / TCP data, then a SYN with options (data offset 8)
        IP(src="10.0.0.1", dst="10.0.0.2", id=4242) / TCP(
            sport=40000, dport=11211, seq=1_000_000, ack=2_000_000, flags="PA")
        / Raw(payload[:100]),
        IP(src="10.0.0.2", dst="10.0.0.1", id=7) / TCP(
            sport=11211, dport=40000, seq=4_294_967_000, flags="S",
            options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        # IPv4 with options (IHL 6+) / UDP
        IP(src="192.168.1.10", dst="192.168.1.20", id=99, options=[IPOption_RR()])
        / UDP(sport=5353, dport=53) / Raw(payload[:30]),
        # ICMP echo
        IP(src="10.0.0.1", dst="10.0.0.3", id=1) / ICMP(id=1, seq=2) / Raw(b"ping" * 8),
        # IPv6 / TCP, addresses that compress (RFC 5952)
        IPv6(src="2001:db8:0:0:1:0:0:1", dst="2001:db8::2") / TCP(
            sport=443, dport=50000, seq=123456789, ack=987654321, flags="A")
        / Raw(payload[:64]),
        # IPv6 with hop-by-hop, routing, destination options / UDP
        IPv6(src="fe80::1", dst="ff02::1:3") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt() / UDP(sport=5355, dport=5355) / Raw(payload[:40]),
        # ICMPv6 echo
        IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=5, seq=6)
        / Raw(b"x" * 16),
        # IP-in-IP, GRE, VXLAN, 6in4: the table shows the innermost IP header
        IP(src="198.51.100.1", dst="198.51.100.2") / IP(src="10.1.1.1", dst="10.1.1.2")
        / TCP(sport=1111, dport=2222, seq=5, flags="A") / Raw(b"inner"),
        IP(src="198.51.100.1", dst="198.51.100.2") / GRE() / IP(src="10.2.2.1", dst="10.2.2.2")
        / UDP(sport=3333, dport=4444) / Raw(b"gre-inner"),
        IP(src="198.51.100.1", dst="198.51.100.2") / UDP(sport=50001, dport=4789) / VXLAN(vni=7)
        / Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.3.3.1", dst="10.3.3.2") / TCP(sport=5555, dport=6666, seq=77, flags="PA")
        / Raw(b"vxlan-inner"),
        IP(src="198.51.100.1", dst="198.51.100.2") / IPv6(src="2001:db8:1::1",
                                                           dst="2001:db8:1::2")
        / UDP(sport=7777, dport=8888) / Raw(b"6in4"),
    ]
    packets = [bytes(p) for p in out]
    # IPv4 fragments of one UDP datagram (offsets 0, 1480, 2960)
    big = IP(src="10.0.0.5", dst="10.0.0.6", id=31337) / UDP(sport=6000, dport=7000) / Raw(
        bytes(i % 251 for i in range(3500)))
    packets += [bytes(f) for f in fragment(big, fragsize=1480)]
    # IPv6 fragments (fragment extension header)
    big6 = IPv6(src="2001:db8::5", dst="2001:db8::6") / IPv6ExtHdrFragment(id=0xABCDEF) / UDP(
        sport=6001, dport=7001) / Raw(bytes(i % 241 for i in range(2000)))
    packets += [bytes(f) for f in fragment6(big6, 1280)]
    return packets


def ethernet_frames() -> list[bytes]:
    """Ethernet frames: plain, 802.1Q, QinQ (802.1ad + 802.1Q), ARP (no IP)."""
    from scapy.all import ARP, IP, TCP, Dot1AD, Dot1Q, Ether, Raw

    mac = {"src": "02:16:3e:00:00:01", "dst": "02:16:3e:00:00:02"}
    frames = [bytes(Ether(**mac, type=0x86DD if p[0] >> 4 == 6 else 0x0800)) + p
              for p in ip_packets()]
    inner = IP(src="172.16.0.1", dst="172.16.0.2", id=5) / TCP(sport=80, dport=8080, seq=1,
                                                                flags="A") / Raw(b"vlan")
    frames.append(bytes(Ether(**mac) / Dot1Q(vlan=100) / inner))
    frames.append(bytes(Ether(**mac) / Dot1AD(vlan=200) / Dot1Q(vlan=100) / inner))
    frames.append(bytes(Ether(**mac) / ARP(psrc="10.0.0.1", pdst="10.0.0.2")))
    return frames


def linked(linktype: int) -> list[bytes]:
    """The IP packets wrapped in the link-layer header of ``linktype``."""
    from scapy.all import CookedLinux, CookedLinuxV2

    out = []
    for p in ip_packets():
        v6 = p[0] >> 4 == 6
        if linktype == 113:
            out.append(bytes(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6,
                                         src=b"\x02\x16\x3e\0\0\x01\0\0",
                                         proto=0x86DD if v6 else 0x0800)) + p)
        elif linktype == 276:
            out.append(bytes(CookedLinuxV2(proto=0x86DD if v6 else 0x0800, ifindex=3,
                                           pkttype=0, lladdrtype=1, lladdrlen=6,
                                           src=b"\x02\x16\x3e\0\0\x01\0\0")) + p)
        elif linktype in (101, 12, 14):
            out.append(p)
        elif linktype == 228:
            if not v6:
                out.append(p)
        elif linktype == 229:
            if v6:
                out.append(p)
        elif linktype == 0:  # host byte order (little-endian writer); Darwin's AF_INET6 = 30
            out.append(struct.pack("<I", 30 if v6 else 2) + p)
        elif linktype == 108:  # OpenBSD loop: big-endian; OpenBSD's AF_INET6 = 24
            out.append(struct.pack(">I", 24 if v6 else 2) + p)
        else:
            raise ValueError(linktype)
    return out


def timed(frames: Iterable[bytes], step_ns: int = 1_234_567_891) -> list[Frame]:
    """Frames with timestamps T0, T0+step, … and their own length as original length."""
    return [(T0_NS + i * step_ns, f, len(f)) for i, f in enumerate(frames)]


# ---- classic pcap ---------------------------------------------------------------------------
def pcap_bytes(frames: list[Frame], linktype: int, *, order: str = "<", nsec: bool = False,
               modified: bool = False, snaplen: int = 262144) -> bytes:
    """A classic pcap file (``order`` ``<`` or ``>``; ns magic; Kuznetzov's 24-byte records)."""
    magic = 0xA1B2CD34 if modified else (0xA1B23C4D if nsec else 0xA1B2C3D4)
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts_ns, data, wirelen in frames:
        sec, frac = divmod(ts_ns, 1_000_000_000)
        if not nsec:
            frac //= 1000
        data = data[:snaplen]
        out.append(struct.pack(order + "IIII", sec, frac, len(data), wirelen))
        if modified:
            out.append(struct.pack(order + "IHBx", 3, 0x0800, 0))
        out.append(data)
    return b"".join(out)


# ---- pcapng ---------------------------------------------------------------------------------
def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def block(order: str, btype: int, body: bytes) -> bytes:
    """One pcapng block: type, total length, body (padded), total length."""
    body = _pad(body)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
                 + option(order, 4, b"xenlat tests") + option(order, 0, b""))


def idb(order: str, linktype: int, *, snaplen: int = 0, name: str | None = None,
        tsresol: int | None = None, tsoffset_s: int | None = None) -> bytes:
    opts = b""
    if name is not None:
        opts += option(order, 2, name.encode())
    if tsresol is not None:
        opts += option(order, 9, bytes([tsresol]))
    if tsoffset_s is not None:
        opts += option(order, 14, struct.pack(order + "q", tsoffset_s))
    if opts:
        opts += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def ticks(ts_ns: int, tsresol: int, tsoffset_s: int = 0) -> int:
    """Timestamp units of an interface for an epoch-ns time (exact for the values used)."""
    ns = ts_ns - tsoffset_s * 1_000_000_000
    if tsresol & 0x80:
        return (ns << (tsresol & 0x7F)) // 1_000_000_000
    return ns * 10**tsresol // 1_000_000_000


def ticks_ns(units: int, tsresol: int, tsoffset_s: int = 0) -> int:
    """The epoch ns a timestamp of ``units`` stands for (floor to the ns), in Python integers."""
    if tsresol & 0x80:
        ns = (units * 1_000_000_000) >> (tsresol & 0x7F)
    else:
        ns = units * 1_000_000_000 // 10**tsresol
    return ns + tsoffset_s * 1_000_000_000


def epb(order: str, iface: int, units: int, data: bytes, wirelen: int | None = None,
        comment: str | None = None) -> bytes:
    body = struct.pack(order + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data),
                       len(data) if wirelen is None else wirelen) + _pad(data)
    if comment:
        body += option(order, 1, comment.encode()) + option(order, 0, b"")
    return block(order, 6, body)


def spb(order: str, data: bytes) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data)) + data)


def pb(order: str, iface: int, units: int, data: bytes) -> bytes:
    return block(order, 2, struct.pack(order + "HHIIII", iface, 0, units >> 32,
                                       units & 0xFFFFFFFF, len(data), len(data)) + _pad(data))


def multi_section_pcapng() -> tuple[bytes, list[dict]]:
    """Two sections (LE then BE), four interfaces, every packet block type, skipped blocks.

    Returns the file and the expected rows (hand-computed): frame, interface, linktype,
    ts_ns (None for a Simple Packet Block), caplen.
    """
    eth = ethernet_frames()
    sll = linked(113)
    raw = linked(101)
    rows: list[dict] = []
    out = [shb("<"),
           idb("<", 1, name="vif5.0", tsresol=9),
           idb("<", 113, name="eth0", tsresol=0x80 | 20, tsoffset_s=0)]
    frame = 0
    for i in range(6):
        ts = T0_NS + i * 1_000_003
        if i % 2 == 0:
            data, iface, tsres = eth[i], 0, 9
        else:
            data, iface, tsres = sll[i], 1, 0x80 | 20
        units = ticks(ts, tsres)
        exact = ticks_ns(units, tsres)  # what the file holds: 2^-20 s ticks round down
        out.append(epb("<", iface, units, data, comment="a comment" if i == 2 else None))
        frame += 1
        rows.append({"frame": frame, "interface": iface, "linktype": 1 if iface == 0 else 113,
                     "ts_ns": exact, "caplen": len(data)})
        if i == 2:
            # name resolution, interface statistics, a custom block (tshark gives it a frame
            # number), an unknown block type: all skipped
            out.append(block("<", 4, struct.pack("<HH", 1, 8) + bytes([10, 0, 0, 1])
                             + b"h1\0\0" + struct.pack("<HH", 0, 0)))
            out.append(block("<", 5, struct.pack("<III", 0, 0, 0)))
            out.append(block("<", 0x00000BAD, struct.pack("<I", 32473) + b"custom data"))
            frame += 1
            out.append(block("<", 0x0000ABCD, b"unknown block body"))
    # a Simple Packet Block (interface 0, no timestamp) and an obsolete Packet Block
    out.append(spb("<", eth[6]))
    frame += 1
    rows.append({"frame": frame, "interface": 0, "linktype": 1, "ts_ns": None,
                 "caplen": len(eth[6])})
    ts = T0_NS + 7_000_000
    out.append(pb("<", 0, ticks(ts, 9), eth[7]))
    frame += 1
    rows.append({"frame": frame, "interface": 0, "linktype": 1, "ts_ns": ts,
                 "caplen": len(eth[7])})
    # second section, big-endian: raw IP at µs (default resolution) and Ethernet at 10^-9
    # with an if_tsoffset of 100 s
    out += [shb(">"), idb(">", 101, name="raw0"), idb(">", 1, name="vif7.1", tsresol=9,
                                                       tsoffset_s=100)]
    for i in range(8, 14):
        ts = T0_NS + i * 1_000_000_000 + 250_000
        if i % 2 == 0:
            data, iface, tsres, off = raw[i], 0, 6, 0
        else:
            data, iface, tsres, off = eth[i], 1, 9, 100
        units = ticks(ts, tsres, off)
        out.append(epb(">", iface, units, data))
        frame += 1
        rows.append({"frame": frame, "interface": 2 + iface,
                     "linktype": 101 if iface == 0 else 1, "ts_ns": ticks_ns(units, tsres, off),
                     "caplen": len(data)})
    return b"".join(out), rows


# ---- the files ------------------------------------------------------------------------------
def build(directory: Path = HERE) -> dict[str, Path]:
    """Write every fixture into ``directory``; returns name → path."""
    written: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        path = directory / name
        path.write_bytes(data)
        written[name] = path

    eth = timed(ethernet_frames())
    # a frame cut by the snapshot length inside its TCP header: IP fields stay, ports go
    short = [(T0_NS, ethernet_frames()[0], len(ethernet_frames()[0]))]
    put("ether-le-usec.pcap", pcap_bytes(eth, 1))
    put("ether-be-usec.pcap", pcap_bytes(eth, 1, order=">"))
    put("ether-le-nsec.pcap", pcap_bytes(eth, 1, nsec=True))
    put("ether-be-nsec.pcap", pcap_bytes(eth, 1, order=">", nsec=True))
    put("ether-modified.pcap", pcap_bytes(eth, 1, modified=True))
    put("ether-le-nsec.pcap.gz", gzip.compress(pcap_bytes(eth, 1, nsec=True), mtime=0))
    put("ether-snaplen40.pcap", pcap_bytes(short + eth, 1, nsec=True, snaplen=14 + 20 + 6))
    for lt in (113, 276, 101, 12, 14, 228, 229, 0, 108):
        put(f"linktype-{lt}.pcap", pcap_bytes(timed(linked(lt)), lt, nsec=True))
    put("linktype-147.pcap", pcap_bytes(timed([b"\x01\x02\x03\x04" * 10] * 3), 147))
    data, _rows = multi_section_pcapng()
    put("multi-section.pcapng", data)
    return written


if __name__ == "__main__":
    for name, path in build().items():
        print(f"{path.stat().st_size:8d}  {name}")
