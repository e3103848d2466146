"""Vectorized decoding of a batch of frames: link layer → IPv4/IPv6 → TCP/UDP/ICMP columns.

No loop runs per packet. Every header field is one numpy gather: the chunk is viewed as
``>u2``/``>u4``/``>u8`` arrays with a stride of one byte, so ``be32[pos]`` reads the 4 bytes at
``pos`` for every packet at once. Header offsets are computed arrays; branches are masks (link
type, ethertype, VLAN tags, IP version, IHL, IPv6 extension headers). A field is read only
where the packet's captured bytes hold it (``pos + size <= packet end``), so a short frame gives
missing fields, never another frame's bytes.

Tunnels (IP-in-IP, IPv6-in-IP, GRE carrying IP, VXLAN on UDP 4789, Teredo on UDP 3544) are
followed once: the
columns describe the innermost IP header, as the architecture asks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .. import linktypes as lt
from .capture import distinct

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58
#: IPv6 extension headers followed to the transport header: hop-by-hop, routing, fragment,
#: authentication, destination options, mobility.
IPV6_EXT_HOPOPT = 0
IPV6_EXT_ROUTING = 43
IPV6_EXT_FRAGMENT = 44
IPV6_EXT_AH = 51
IPV6_EXT_DSTOPTS = 60
IPV6_EXT_MOBILITY = 135
IPV6_EXTENSIONS = (IPV6_EXT_HOPOPT, IPV6_EXT_ROUTING, IPV6_EXT_FRAGMENT, IPV6_EXT_AH,
                   IPV6_EXT_DSTOPTS, IPV6_EXT_MOBILITY)
#: most extension headers followed per packet (a loop over masks, not over packets)
MAX_IPV6_EXTENSIONS = 8
#: most VLAN tags stripped (802.1Q inside 802.1ad inside ...)
MAX_VLAN_TAGS = 3
IPV6_OPT_JUMBO = 0xC2
VXLAN_PORT = 4789
TEREDO_PORT = 3544
#: bytes of transport payload hashed into ``payload_digest``
DIGEST_BYTES = 64


@dataclasses.dataclass
class Decoded:
    """Columns of a decoded batch; ``*_ok`` masks say where the value exists."""

    ip_version: np.ndarray          #: uint8: 4, 6, 0 (src valid where not 0)
    src_v4: np.ndarray              #: uint32 (valid where ip_version == 4)
    dst_v4: np.ndarray
    src_v6: np.ndarray              #: (n, 2) uint64 big-endian halves (where ip_version == 6)
    dst_v6: np.ndarray
    proto: np.ndarray               #: uint8, valid where whole_ip
    whole_ip: np.ndarray            #: the IP header was captured whole (dst, proto valid)
    ip_id: np.ndarray               #: uint32
    ip_id_ok: np.ndarray
    frag_offset: np.ndarray         #: uint16 bytes
    sport: np.ndarray               #: uint16
    dport: np.ndarray
    ports_ok: np.ndarray
    tcp_seq: np.ndarray             #: uint32
    tcp_ack: np.ndarray
    tcp_flags: np.ndarray           #: uint16
    tcp_ok: np.ndarray              #: ack and flags captured
    tcp_seq_ok: np.ndarray
    payload_len: np.ndarray         #: int64
    payload_ok: np.ndarray
    payload_digest: np.ndarray      #: uint64
    digest_ok: np.ndarray
    undecoded_linktypes: dict[int, int]  #: link type -> frames of it not decoded (unsupported)
    # opt-in (``decode(..., payload_head=N, tcp_window=True)``); None when not asked for
    payload_head: np.ndarray | None = None  #: (n, N) uint8: first N payload bytes, 0-padded
    head_len: np.ndarray | None = None      #: int64: bytes of payload_head that were captured
    tcp_window: np.ndarray | None = None    #: uint16: raw advertised window (unscaled)
    tcp_window_ok: np.ndarray | None = None
    tcp_wscale: np.ndarray | None = None    #: int8: SYN's window-scale shift, -1 none/not SYN


class _Views:
    """Unaligned big/little-endian views of one chunk, for gathers at any byte offset, and the
    chunk as overlapping 64-byte records (``w64[pos]``: the 64 bytes from ``pos``, one copy
    per row)."""

    #: bytes that must follow the last packet byte so that a 64-byte read there stays inside
    SLACK = 64

    def __init__(self, buf: np.ndarray, used: int) -> None:
        if len(buf) < used + self.SLACK:  # the readers leave room; a bare buffer gets padded
            pad = np.zeros(used + self.SLACK, dtype=np.uint8)
            pad[:len(buf)] = buf[:used + self.SLACK]
            buf = pad
        size = len(buf) - self.SLACK
        self.u8 = buf
        self.be16 = np.ndarray((size,), dtype=">u2", buffer=buf, strides=(1,))
        self.be32 = np.ndarray((size,), dtype=">u4", buffer=buf, strides=(1,))
        self.be64 = np.ndarray((size,), dtype=">u8", buffer=buf, strides=(1,))
        self.le32 = np.ndarray((size,), dtype="<u4", buffer=buf, strides=(1,))
        self.le64 = np.ndarray((size,), dtype="<u8", buffer=buf, strides=(1,))
        self.w64 = np.ndarray((size,), dtype="V64", buffer=buf, strides=(1,))
        self.w20 = np.ndarray((size,), dtype="V20", buffer=buf, strides=(1,))
        self.w40 = np.ndarray((size,), dtype="V40", buffer=buf, strides=(1,))

    def headers(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The 20 bytes from each ``pos`` (a header without options) in one gather, as
        (n, 20) uint8 and its big-endian (n, 10) 16-bit and (n, 5) 32-bit words: a field is
        a column of them. A position outside the chunk reads its first bytes (the caller
        keeps only the fields a frame's captured bytes hold)."""
        inside = (pos >= 0) & (pos < len(self.w20))
        at = pos if inside.all() else np.where(inside, pos, 0)
        rec = self.w20[at].view(np.uint8).reshape(len(at), 20)
        return rec, rec.view(">u2"), rec.view(">u4")

    def blocks(self, pos: np.ndarray) -> np.ndarray:
        """The 40 bytes from each ``pos`` (an IPv4 header without options and the 20 bytes
        after it) in one gather, as (n, 40) uint8; every ``pos`` inside the chunk."""
        return self.w40[pos].view(np.uint8).reshape(len(pos), 40)


#: a header's 20 bytes as :meth:`_Views.headers` gives them: bytes, big-endian 16- and 32-bit
#: words
Header = tuple[np.ndarray, np.ndarray, np.ndarray]


def _header_words(rec: np.ndarray) -> Header:
    """(n, 20) uint8 rows (a slice of :meth:`_Views.blocks`) with their word views."""
    return rec, rec.view(">u2"), rec.view(">u4")


def _any_of(values: np.ndarray, choices: tuple[int, ...]) -> np.ndarray:
    """``values`` equal to one of a few ``choices`` (cheaper than ``np.isin`` for so few)."""
    out = values == choices[0]
    for choice in choices[1:]:
        out |= values == choice
    return out


def _rows(mask: np.ndarray, *arrays: np.ndarray | slice) -> tuple[Any, ...]:
    """``array[mask]`` of each array, or the arrays themselves when the mask holds every row
    (the common case, a batch of one kind of frame: no copies). A slice stands for the rows
    of the whole batch (:attr:`_IpRows.idx` on the first pass)."""
    if mask.all():
        return arrays
    return tuple(np.flatnonzero(mask) if isinstance(a, slice) else a[mask] for a in arrays)


def _at(view: np.ndarray, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``view[pos]`` where ``ok``, 0 elsewhere (positions outside the buffer are never read)."""
    if ok.all():  # the common case: one gather, no masking
        return view[pos]
    idx = np.where(ok, pos, 0)
    out = view[idx]
    out[~ok] = 0
    return out


def decode(buf: np.ndarray, data_off: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray,
           linktype: np.ndarray, *, payload_head: int = 0, tcp_window: bool = False) -> Decoded:
    """Decode every frame of a batch (see :class:`~xentrace_cli.sources.capture.RawBatch`).

    Opt-in extras (the default decoding pays nothing for them): ``payload_head=N`` the first
    N payload bytes of every frame (protocol recognition, :mod:`conversations.protocols`);
    ``tcp_window`` the raw advertised window and the SYN's window-scale option (sequence
    analysis, :mod:`conversations.tcp_analysis`).
    """
    n = len(data_off)
    start = data_off.astype(np.int64, copy=False)  # read only, as linktype
    pend = start + caplen
    v = _Views(buf, int(pend.max()) if n else 0)
    l3, etype, undecoded = _link_layers(v, linktype.astype(np.int32, copy=False), start, pend)
    cols = _Columns(n)
    _decode_ip(v, slice(None), l3, etype, pend, start, wirelen, cols)
    # ---- tunnels: decode the inner IP header over the outer values --------------------------
    inner = cols.tunnel_l3 >= 0
    if inner.any():
        idx = np.flatnonzero(inner)
        _decode_ip(v, idx, cols.tunnel_l3[idx], cols.tunnel_etype[idx], pend[idx],
                   start[idx], wirelen[idx], cols, tunnel_pass=True)
    _digest(v, cols, pend)
    extras = {}
    if payload_head > 0:
        extras["payload_head"], extras["head_len"] = _head(v, cols, pend, payload_head)
    if tcp_window:
        extras.update(_window(v, cols, pend))
    return Decoded(
        ip_version=cols.ip_version, src_v4=cols.src_v4, dst_v4=cols.dst_v4,
        src_v6=cols.src_v6, dst_v6=cols.dst_v6, proto=cols.proto, whole_ip=cols.whole_ip,
        ip_id=cols.ip_id, ip_id_ok=cols.ip_id_ok, frag_offset=cols.frag_offset,
        sport=cols.sport, dport=cols.dport, ports_ok=cols.ports_ok,
        tcp_seq=cols.tcp_seq, tcp_ack=cols.tcp_ack, tcp_flags=cols.tcp_flags,
        tcp_ok=cols.tcp_ok, tcp_seq_ok=cols.tcp_seq_ok, payload_len=cols.payload_len,
        payload_ok=cols.payload_ok,
        payload_digest=cols.digest, digest_ok=cols.digest_ok, undecoded_linktypes=undecoded,
        **extras)


def _link_layers(v: _Views, linktype: np.ndarray, start: np.ndarray, pend: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """The link layer of each frame: the offset of its network header, the protocol that
    announces (ethertype-like; 4/6 from raw link types) and, per link type not decoded, its
    frame count. One branch per link type, each vectorized over its frames."""
    n = len(start)
    l3 = np.full(n, -1, dtype=np.int64)
    etype = np.zeros(n, dtype=np.int64)  # ethertype-like; 4/6 from raw link types below
    undecoded: dict[int, int] = {}
    types = distinct(linktype).tolist()
    for t in types:
        # the frames of this link type (all of them, as a slice: no gathers, the usual case)
        sel: slice | np.ndarray = slice(None) if len(types) == 1 else \
            np.flatnonzero(linktype == t)
        s, end = start[sel], pend[sel]
        ok = np.ones(len(s), dtype=bool)
        if t == lt.ETHERNET:
            ok = s + 14 <= end
            et = _at(v.be16, s + 12, ok).astype(np.int64)
            pos = s + 14
            for _ in range(MAX_VLAN_TAGS):
                tag = ok & _any_of(et, lt.ETHERTYPE_VLAN) & (pos + 4 <= end)
                if not tag.any():
                    break
                et = np.where(tag, _at(v.be16, pos + 2, tag), et)
                pos = np.where(tag, pos + 4, pos)
            etype[sel], l3[sel] = et, pos
        elif t == lt.SLL:
            ok = s + 16 <= end
            etype[sel], l3[sel] = _at(v.be16, s + 14, ok), s + 16
        elif t == lt.SLL2:
            ok = s + 20 <= end
            etype[sel], l3[sel] = _at(v.be16, s, ok), s + 20
        elif t in (lt.RAW, lt.RAW_BSD_12, lt.RAW_BSD_14, lt.IPV4, lt.IPV6):
            ok = s + 1 <= end
            nibble = _at(v.u8, s, ok) >> 4
            if t == lt.IPV4:
                nibble = np.where(ok, 4, 0)
            elif t == lt.IPV6:
                nibble = np.where(ok, 6, 0)
            etype[sel] = np.where(nibble == 4, lt.ETHERTYPE_IPV4,
                                  np.where(nibble == 6, lt.ETHERTYPE_IPV6, 0))
            l3[sel] = s
        elif t in (lt.NULL, lt.LOOP):
            ok = s + 4 <= end
            fam = _at(v.be32, s, ok).astype(np.int64)
            if t == lt.NULL:  # writer's host order: a family never exceeds 16 bits
                fam = np.where(fam > 0xFFFF, _at(v.le32, s, ok), fam)
            etype[sel] = np.where(fam == lt.AF_INET, lt.ETHERTYPE_IPV4,
                                  np.where(_any_of(fam, lt.AF_INET6_BSD), lt.ETHERTYPE_IPV6, 0))
            l3[sel] = s + 4
        elif t == lt.IPNET:
            ok = s + 24 <= end
            fam = _at(v.u8, s + 1, ok)
            etype[sel] = np.where(fam == lt.IPNET_AF_INET, lt.ETHERTYPE_IPV4,
                                  np.where(fam == lt.IPNET_AF_INET6, lt.ETHERTYPE_IPV6, 0))
            l3[sel] = s + 24
        else:
            undecoded[t] = len(s)
            continue
        if not ok.all():
            etype[sel] = np.where(ok, etype[sel], 0)
    return l3, etype, undecoded


class _Columns:
    """Output columns being filled (plain arrays plus validity masks). Those the first pass
    down the header stack writes whole (:func:`_store_ip`, :func:`_transport`) or
    :func:`_digest` replaces start uninitialized (no zeros written for nothing); the others
    are written at some rows only and start as zeros (or -1)."""

    def __init__(self, n: int) -> None:
        self.ip_version = np.empty(n, dtype=np.uint8)
        self.src_v4 = np.zeros(n, dtype=np.uint32)
        self.dst_v4 = np.zeros(n, dtype=np.uint32)
        self.src_v6 = np.zeros((n, 2), dtype=np.uint64)
        self.dst_v6 = np.zeros((n, 2), dtype=np.uint64)
        self.proto = np.zeros(n, dtype=np.uint8)
        self.whole_ip = np.empty(n, dtype=bool)
        self.ip_id = np.empty(n, dtype=np.uint32)
        self.ip_id_ok = np.empty(n, dtype=bool)
        self.frag_offset = np.empty(n, dtype=np.uint16)
        self.sport = np.zeros(n, dtype=np.uint16)
        self.dport = np.zeros(n, dtype=np.uint16)
        self.ports_ok = np.empty(n, dtype=bool)
        self.tcp_seq = np.zeros(n, dtype=np.uint32)
        self.tcp_ack = np.zeros(n, dtype=np.uint32)
        self.tcp_flags = np.zeros(n, dtype=np.uint16)
        self.tcp_ok = np.empty(n, dtype=bool)
        self.tcp_seq_ok = np.empty(n, dtype=bool)
        self.payload_len = np.empty(n, dtype=np.int64)
        self.payload_ok = np.empty(n, dtype=bool)
        self.payload_pos = np.empty(n, dtype=np.int64)
        self.tcp_l4 = np.empty(n, dtype=np.int64)  # TCP header offset, -1 for others
        self.digest = np.zeros(n, dtype=np.uint64)
        self.digest_ok = np.empty(n, dtype=bool)
        #: what :func:`_digest` read, for :func:`_head`: each frame's payload bytes it took
        #: (up to DIGEST_BYTES), the rows it took them of (a slice: every row) and their
        #: first DIGEST_BYTES payload bytes as 8 words, masked to those bytes
        self.digest_avail: np.ndarray | None = None
        self.digest_rows: np.ndarray | slice = slice(None)
        self.digest_words: np.ndarray | None = None
        self.tunnel_l3 = np.full(n, -1, dtype=np.int64)
        self.tunnel_etype = np.zeros(n, dtype=np.int64)


@dataclasses.dataclass
class _IpRows:
    """The frames of one pass down the header stack: where their IP header starts (``l3``),
    where their captured bytes end (``pend``), and which of them hold a whole IPv4/IPv6
    header."""

    #: row of each frame in the batch; ``slice(None)`` on the first pass, where the frames are
    #: the batch's rows in order (the columns are then assigned whole, not scattered)
    idx: np.ndarray | slice
    l3: np.ndarray
    etype: np.ndarray
    pend: np.ndarray
    start: np.ndarray
    wirelen: np.ndarray
    first: np.ndarray    # the IP header's first byte (version and IHL)
    is4: np.ndarray
    is6: np.ndarray

    def has(self, pos: np.ndarray, nbytes: int) -> np.ndarray:
        """Frames whose bytes ``pos .. pos + nbytes`` were captured."""
        return (pos >= 0) & (pos + nbytes <= self.pend)

    def at(self, sub: np.ndarray) -> np.ndarray:
        """The batch rows of the frames ``sub`` (indices or a mask) of these."""
        if isinstance(self.idx, slice):
            return np.flatnonzero(sub) if sub.dtype == bool else sub
        return self.idx[sub]

    def keep(self, keep: np.ndarray) -> _IpRows:
        return _IpRows(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


@dataclasses.dataclass
class _IpFields:
    """What the IP layer tells the transport layer, per frame of an :class:`_IpRows`."""

    proto: np.ndarray
    l4: np.ndarray          # transport header offset, -1 when unknown
    ip_payload: np.ndarray  # bytes after the IP header (and extensions)
    ip_id: np.ndarray
    ip_id_ok: np.ndarray
    frag: np.ndarray
    #: the transport header's 20 bytes, when gathered with the IP header's (every frame's
    #: at ``l3 + 20``: :func:`_every_ipv4`); None: :func:`_transport` gathers them
    transport: Header | None = None

    @classmethod
    def empty(cls, m: int) -> _IpFields:
        return cls(np.zeros(m, dtype=np.int64), np.full(m, -1, dtype=np.int64),
                   np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64),
                   np.zeros(m, dtype=bool), np.zeros(m, dtype=np.int64))


def _decode_ip(v: _Views, idx: np.ndarray | slice, l3: np.ndarray, etype: np.ndarray,
               pend: np.ndarray, start: np.ndarray, wirelen: np.ndarray, c: _Columns,
               tunnel_pass: bool = False) -> None:
    """Decode the IP header at ``l3`` of the frames ``idx`` and what it carries into ``c``:
    one vectorized pass down the header stack (IPv4/IPv6, extension headers, fragments,
    TCP/UDP, then the tunnels to follow on the first pass)."""
    readable = (l3 >= 0) & (l3 + 1 <= pend)
    block = None
    is_v4 = etype == lt.ETHERTYPE_IPV4
    if not tunnel_pass and len(l3) and readable.all() and is_v4.all():
        # the usual batch, IPv4 frames: the IP header and the 20 bytes after it (the
        # transport header, without IP options) in one gather, not three
        block = v.blocks(l3)
        first = block[:, 0].copy()
    else:
        first = _at(v.u8, l3, readable)
    r = _IpRows(idx, l3, etype, pend, start, wirelen, first, is4=np.zeros(0, bool),
                is6=np.zeros(0, bool))
    r.is4 = is_v4 & r.has(l3, 20) & ((first >> 4) == 4)
    r.is6 = (etype == lt.ETHERTYPE_IPV6) & r.has(l3, 40) & ((first >> 4) == 6)
    if tunnel_pass:  # keep the outer values where the inner header is not readable
        r = r.keep(r.is4 | r.is6)
        for arr in (c.ports_ok, c.tcp_ok, c.tcp_seq_ok, c.ip_id_ok, c.payload_ok):
            arr[r.idx] = False
        c.frag_offset[r.idx] = 0
    if len(r.l3) and r.is4.all():  # every field set by _every_ipv4: no defaults made
        f = _every_ipv4(v, r, c, block)
    else:
        f = _IpFields.empty(len(r.l3))
        if r.is4.any():
            _ipv4(v, r, f, c)
        if r.is6.any():
            _ipv6(v, r, f, c)
    ipv = _store_ip(r, f, c)
    if not tunnel_pass:
        _cut_ip_headers(v, r, c)
    whole, is_udp = _transport(v, r, f, ipv, c)
    if tunnel_pass:
        c.tunnel_l3[r.idx] = -1
    else:
        _tunnels(v, r, f, whole, is_udp, c)


def _ipv4(v: _Views, r: _IpRows, f: _IpFields, c: _Columns) -> None:
    """The IPv4 header of the frames ``r.is4``."""
    is4, l3 = r.is4, r.l3
    ihl = (r.first & 0x0F).astype(np.int64) * 4
    tot = _at(v.be16, l3 + 2, is4).astype(np.int64)
    # total length 0: TSO/GSO frame captured before segmentation; the frame gives it
    tot = np.where(is4 & (tot == 0), r.wirelen - (l3 - r.start), tot)
    f.proto = np.where(is4, _at(v.u8, l3 + 9, is4), f.proto)
    f.ip_id = np.where(is4, _at(v.be16, l3 + 4, is4), f.ip_id)
    f.ip_id_ok |= is4
    fragword = _at(v.be16, l3 + 6, is4).astype(np.int64)
    f.frag = np.where(is4, (fragword & 0x1FFF) * 8, f.frag)
    good = is4 & (ihl >= 20)
    f.l4 = np.where(good, l3 + ihl, f.l4)
    f.ip_payload = np.where(good, tot - ihl, f.ip_payload)
    idx4, l3_4 = _rows(is4, r.idx, l3)
    c.src_v4[idx4] = v.be32[l3_4 + 12]
    c.dst_v4[idx4] = v.be32[l3_4 + 16]


def _every_ipv4(v: _Views, r: _IpRows, c: _Columns, block: np.ndarray | None = None
                ) -> _IpFields:
    """:func:`_ipv4` of frames that are all IPv4 (whole headers): the same fields, each one
    gather, not merged with the others' under a mask. ``block``: the 40 bytes from each
    header (:meth:`_Views.blocks`), the transport header's too where no frame has IP
    options."""
    l3 = r.l3
    ihl = (r.first & 0x0F).astype(np.int64) * 4
    # every header whole: no position outside
    head, words16, words32 = v.headers(l3) if block is None else _header_words(block[:, :20])
    f = _IpFields.empty(0)
    tot = words16[:, 1].astype(np.int64)
    zero = tot == 0  # TSO/GSO frame captured before segmentation: the frame gives the length
    if zero.any():
        tot = np.where(zero, r.wirelen - (l3 - r.start), tot)
    f.proto = head[:, 9].astype(np.int64)
    f.ip_id = words16[:, 2].astype(np.int64)
    f.ip_id_ok = np.ones(len(l3), dtype=bool)
    f.frag = (words16[:, 3].astype(np.int64) & 0x1FFF) * 8
    good = ihl >= 20
    if good.all():
        f.l4, f.ip_payload = l3 + ihl, tot - ihl
    else:
        f.l4, f.ip_payload = np.where(good, l3 + ihl, -1), np.where(good, tot - ihl, 0)
    c.src_v4[r.idx] = words32[:, 3]
    c.dst_v4[r.idx] = words32[:, 4]
    if block is not None and (ihl == 20).all():
        f.transport = _header_words(block[:, 20:])
    return f


def _ipv6(v: _Views, r: _IpRows, f: _IpFields, c: _Columns) -> None:
    """The IPv6 header of the frames ``r.is6`` and its extension headers."""
    is6, l3 = r.is6, r.l3
    plen = _at(v.be16, l3 + 4, is6).astype(np.int64)
    nh = _at(v.u8, l3 + 6, is6).astype(np.int64)
    i6 = np.flatnonzero(is6)
    p6 = l3[i6]
    rows = r.at(i6)
    c.src_v6[rows, 0] = v.be64[p6 + 8]
    c.src_v6[rows, 1] = v.be64[p6 + 16]
    c.dst_v6[rows, 0] = v.be64[p6 + 24]
    c.dst_v6[rows, 1] = v.be64[p6 + 32]
    # jumbogram (RFC 2675, BIG TCP): payload length 0 and a hop-by-hop jumbo option
    jumbo = is6 & (plen == 0) & (nh == IPV6_EXT_HOPOPT) & r.has(l3 + 48, 0) \
        & (_at(v.u8, l3 + 42, is6 & r.has(l3 + 43, 0)) == IPV6_OPT_JUMBO)
    plen = np.where(jumbo, _at(v.be32, l3 + 44, jumbo).astype(np.int64), plen)
    # payload length 0 without a jumbo option: a GSO/BIG TCP frame captured before
    # segmentation (Linux strips the hop-by-hop header); the frame gives the length
    plen = np.where(is6 & (plen == 0) & ~jumbo, r.wirelen - (l3 - r.start) - 40, plen)
    nh, pos = _ipv6_extensions(v, r, f, nh)
    # extension headers not all captured: the transport header is unknown
    stuck = is6 & _any_of(nh, IPV6_EXTENSIONS)
    f.proto = np.where(is6, nh, f.proto)
    f.l4 = np.where(is6 & ~stuck, pos, f.l4)
    f.ip_payload = np.where(is6, plen - (pos - (l3 + 40)), f.ip_payload)


def _ipv6_extensions(v: _Views, r: _IpRows, f: _IpFields, nh: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Walk the IPv6 extension headers (at most ``MAX_IPV6_EXTENSIONS``), taking a fragment
    header's offset and id into ``f``: the last next-header value and where it starts."""
    pos = r.l3 + 40
    walking = r.is6.copy()
    for _ in range(MAX_IPV6_EXTENSIONS):
        ext = walking & _any_of(nh, IPV6_EXTENSIONS) & r.has(pos, 8)
        if not ext.any():
            break
        is_frag = ext & (nh == IPV6_EXT_FRAGMENT)
        hdrlen = np.where(nh == IPV6_EXT_AH, (_at(v.u8, pos + 1, ext).astype(np.int64) + 2)
                          * 4, (_at(v.u8, pos + 1, ext).astype(np.int64) + 1) * 8)
        hdrlen = np.where(is_frag, 8, hdrlen)
        if is_frag.any():
            f.frag = np.where(is_frag, _at(v.be16, pos + 2, is_frag).astype(np.int64)
                              & 0xFFF8, f.frag)
            f.ip_id = np.where(is_frag, _at(v.be32, pos + 4, is_frag), f.ip_id)
            f.ip_id_ok |= is_frag
        nh = np.where(ext, _at(v.u8, pos, ext), nh)
        pos = np.where(ext, pos + hdrlen, pos)
        walking = ext
    return nh, pos


def _store_ip(r: _IpRows, f: _IpFields, c: _Columns) -> np.ndarray:
    """The IP layer's columns of the frames; which frames hold a whole IP header."""
    version = np.where(r.is4, 4, np.where(r.is6, 6, 0)).astype(np.uint8)
    ipv = version > 0
    c.ip_version[r.idx] = version  # where 0 on a tunnel pass the rows were dropped
    idx_ip, proto = _rows(ipv, r.idx, f.proto)
    c.proto[idx_ip] = proto
    c.whole_ip[r.idx] = ipv
    c.ip_id[r.idx] = f.ip_id
    c.ip_id_ok[r.idx] = f.ip_id_ok
    c.frag_offset[r.idx] = np.where(ipv, f.frag, 0)
    return ipv


def _cut_ip_headers(v: _Views, r: _IpRows, c: _Columns) -> None:
    """A header cut by the snapshot length still names its source (tshark shows it): IPv4
    needs 16 bytes for it (and gives its id), IPv6 24; the destination and the rest stay
    missing."""
    if (r.is4 | r.is6).all():  # the common case: every IP header whole, none cut
        return
    l3, first = r.l3, r.first
    part4 = (r.etype == lt.ETHERTYPE_IPV4) & ~r.is4 & r.has(l3, 16) & ((first >> 4) == 4)
    part6 = (r.etype == lt.ETHERTYPE_IPV6) & ~r.is6 & r.has(l3, 24) & ((first >> 4) == 6)
    if part4.any():
        rows = r.at(part4)
        c.ip_version[rows] = 4
        c.src_v4[rows] = v.be32[l3[part4] + 12]
        c.ip_id[rows] = v.be16[l3[part4] + 4]
        c.ip_id_ok[rows] = True
    if part6.any():
        rows = r.at(part6)
        c.ip_version[rows] = 6
        c.src_v6[rows, 0] = v.be64[l3[part6] + 8]
        c.src_v6[rows, 1] = v.be64[l3[part6] + 16]


def _transport(v: _Views, r: _IpRows, f: _IpFields, ipv: np.ndarray, c: _Columns
               ) -> tuple[np.ndarray, np.ndarray]:
    """TCP/UDP fields and the payload's length and place; (whole, is_udp) for the tunnels.

    A field is given when its bytes were captured, as tshark does for a short frame: ports
    need 4 bytes of the transport header, the sequence number 8, ack and flags 14, the TCP
    payload length the data offset (13)."""
    idx, l4, proto = r.idx, f.l4, f.proto
    whole = ipv & (f.frag == 0) & (l4 >= 0)   # first fragments decode too (ports are there)
    room = r.pend - l4  # captured bytes from the transport header on (l4 >= 0 where whole)
    is_tcp = whole & (proto == IPPROTO_TCP)
    is_udp = whole & (proto == IPPROTO_UDP)
    icmp = whole & ((proto == IPPROTO_ICMP) | (proto == IPPROTO_ICMPV6))
    # each field kept where its bytes were captured
    head, words16, words32 = f.transport if f.transport is not None else v.headers(l4)
    ports = (is_tcp | is_udp) & (room >= 4)
    rows, sport, dport = _rows(ports, idx, words16[:, 0], words16[:, 1])
    c.sport[rows] = sport
    c.dport[rows] = dport
    c.ports_ok[idx] = ports
    seq_ok = is_tcp & (room >= 8)
    rows, seq = _rows(seq_ok, idx, words32[:, 1])
    c.tcp_seq[rows] = seq
    c.tcp_seq_ok[idx] = seq_ok
    ack_ok = is_tcp & (room >= 14)
    rows, ack, flags = _rows(ack_ok, idx, words32[:, 2], words16[:, 6])
    c.tcp_ack[rows] = ack
    c.tcp_flags[rows] = flags & 0x01FF
    c.tcp_ok[idx] = ack_ok
    doff_ok = is_tcp & (room >= 13)
    doff = np.where(doff_ok, head[:, 12] >> 4, 0).astype(np.int64) * 4
    hdr = np.where(is_tcp, doff, np.where(is_udp | icmp, 8, 0))
    # a length field smaller than the headers it covers is malformed: no payload length
    has_l4 = ipv & (l4 >= 0) & (~is_tcp | doff_ok) & (f.ip_payload >= hdr)
    c.payload_len[idx] = np.where(has_l4, f.ip_payload - hdr, 0)
    c.payload_ok[idx] = has_l4
    c.payload_pos[idx] = np.where(has_l4, l4 + hdr, 0)
    c.tcp_l4[idx] = np.where(is_tcp, l4, -1)
    return whole, is_udp


def _tunnels(v: _Views, r: _IpRows, f: _IpFields, whole: np.ndarray, is_udp: np.ndarray,
             c: _Columns) -> None:
    """Where an inner IP header starts (IP-in-IP, GRE, VXLAN, Teredo), for the second pass."""
    l4, proto = f.l4, f.proto
    # the first pass's rows are the batch's (r.idx is a slice): its ports are c.sport/c.dport,
    # where a UDP tunnel's header was captured (VXLAN on its destination port, Teredo on
    # either); none of those, and no IP-in-IP or GRE: no tunnel (c.tunnel_l3 stays -1)
    udp_tunnel = is_udp & ((c.dport == VXLAN_PORT) | (c.sport == TEREDO_PORT)
                           | (c.dport == TEREDO_PORT))
    if not udp_tunnel.any() and not (whole & _any_of(proto, (IPPROTO_IPIP, IPPROTO_IPV6,
                                                             IPPROTO_GRE))).any():
        return
    ipip = whole & ((proto == IPPROTO_IPIP) | (proto == IPPROTO_IPV6))
    inner_l3 = np.where(ipip, l4, -1)
    inner_et = np.where(proto == IPPROTO_IPIP, lt.ETHERTYPE_IPV4, lt.ETHERTYPE_IPV6)
    gre = whole & (proto == IPPROTO_GRE) & r.has(l4, 4)
    if gre.any():
        flags = _at(v.be16, l4, gre).astype(np.int64)
        gre_len = 4 + 4 * (((flags >> 15) & 1) + ((flags >> 13) & 1) + ((flags >> 12) & 1))
        gre_et = _at(v.be16, l4 + 2, gre).astype(np.int64)
        into = gre & ((flags & 0x7) == 0) & _any_of(gre_et, (lt.ETHERTYPE_IPV4,
                                                             lt.ETHERTYPE_IPV6))
        inner_l3 = np.where(into, l4 + gre_len, inner_l3)
        inner_et = np.where(into, gre_et, inner_et)
    udp = np.flatnonzero(udp_tunnel)
    if len(udp):  # on the UDP frames on a tunnel's port only
        _udp_tunnels(v, udp, l4[udp], r.pend[udp], inner_l3, inner_et)
    c.tunnel_l3[r.idx] = inner_l3
    c.tunnel_etype[r.idx] = inner_et


def _udp_tunnels(v: _Views, rows: np.ndarray, l4: np.ndarray, pend: np.ndarray,
                 inner_l3: np.ndarray, inner_et: np.ndarray) -> None:
    """VXLAN and Teredo among the UDP frames ``rows`` (transport header at ``l4``, captured
    bytes up to ``pend``): where their inner IP header starts, into ``inner_l3`` and
    ``inner_et`` (Teredo's over VXLAN's where a frame looks like both)."""
    vxlan = (l4 >= 0) & (l4 + 8 + 8 + 14 <= pend)
    vxlan &= _at(v.be16, l4 + 2, vxlan) == VXLAN_PORT
    if vxlan.any():
        eth = l4 + 16
        vx_et = _at(v.be16, eth + 12, vxlan).astype(np.int64)
        into = vxlan & _any_of(vx_et, (lt.ETHERTYPE_IPV4, lt.ETHERTYPE_IPV6))
        inner_l3[rows[into]] = eth[into] + 14
        inner_et[rows[into]] = vx_et[into]
    # Teredo (RFC 4380): IPv6 right after the UDP header on port 3544 (as tshark's heuristic;
    # packets with authentication or origin indicators first are left as UDP)
    teredo = (l4 >= 0) & (l4 + 8 + 40 <= pend)
    teredo &= (_at(v.be16, l4, teredo) == TEREDO_PORT) | (_at(v.be16, l4 + 2, teredo)
                                                           == TEREDO_PORT)
    teredo &= (_at(v.u8, l4 + 8, teredo) >> 4) == 6
    if teredo.any():
        inner_l3[rows[teredo]] = l4[teredo] + 8
        inner_et[rows[teredo]] = lt.ETHERTYPE_IPV6


#: odd 64-bit multipliers, one per 8-byte word of the hashed payload, and the finalizer's
#: constants (splitmix64)
_WORD_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                              0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
                              0x94D049BB133111EB, 0xBF58476D1CE4E5B9], dtype=np.uint64)
#: the mask of a word's first k bytes (little-endian: its k lowest), k = 0..8
_BYTE_MASKS = np.array([(1 << 8 * k) - 1 for k in range(9)], dtype=np.uint64)
#: the first byte of each word in the hashed payload
_WORD_STARTS = 8 * np.arange(len(_WORD_MULTIPLIERS))
#: row k: the masks of the hashed words for a payload of k bytes (k = 0..DIGEST_BYTES)
_ROW_MASKS = _BYTE_MASKS[np.clip(np.arange(DIGEST_BYTES + 1)[:, None] - _WORD_STARTS, 0, 8)]
#: :func:`_digest` masks a batch of short payloads only by a row of :data:`_ROW_MASKS` per
#: frame (False: word by word, the tests' reference)
MASK_ROWS = True
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _digest(v: _Views, c: _Columns, pend: np.ndarray) -> None:
    """64-bit hash of the first ≤ DIGEST_BYTES captured payload bytes (and their count).

    The payload is read as 8-byte little-endian words; bytes past the payload are masked to
    zero; the words are combined as ``count + sum(word_k * M_k)`` (mod 2^64) and mixed by
    splitmix64's finalizer. The same bytes give the same value at every capture point.
    Each frame's DIGEST_BYTES bytes are one gather of a 64-byte record (not 8 of a word),
    the sum of products one integer matrix product (numpy's, wrapping as uint64 does).
    """
    avail = np.minimum(np.minimum(c.payload_len, pend - c.payload_pos), DIGEST_BYTES)
    avail = np.where(c.payload_ok, np.maximum(avail, 0), 0)
    ok = avail > 0
    c.digest_ok = ok
    c.digest_avail = avail
    if not ok.any():
        return
    every = bool(ok.all())  # a TCP capture: no gathers, no scatter
    rows = slice(None) if every else np.flatnonzero(ok)
    nbytes = avail[rows]
    words = v.w64[c.payload_pos[rows]].view("<u8").reshape(-1, len(_WORD_MULTIPLIERS))
    short = np.flatnonzero(nbytes < DIGEST_BYTES)
    if len(short) and MASK_ROWS:  # each word masked to the payload's bytes in it
        if len(short) == len(nbytes):  # every payload short (small packets): no scatter
            words &= _ROW_MASKS[nbytes]
        else:
            words[short] &= _ROW_MASKS[nbytes[short]]
    elif len(short):  # each word masked to the payload's bytes in it (none past its end)
        words[short] &= _BYTE_MASKS[np.clip(nbytes[short, None] - _WORD_STARTS, 0, 8)]
    c.digest_rows, c.digest_words = rows, words
    with np.errstate(over="ignore"):
        h = words @ _WORD_MULTIPLIERS
        h += nbytes.astype(np.uint64)
        h = (h ^ (h >> np.uint64(30))) * _MIX1
        h = (h ^ (h >> np.uint64(27))) * _MIX2
        h ^= h >> np.uint64(31)
    if every:
        c.digest = h
    else:
        c.digest[rows] = h


#: :func:`_head` takes the digest's words where they hold the head (False: gathers its own,
#: the tests' reference)
HEAD_FROM_DIGEST = True


def _head(v: _Views, c: _Columns, pend: np.ndarray, width: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``width`` captured payload bytes of every frame (zero-padded) and how many
    of them were captured: one gather of 8-byte words per 8 columns (little-endian, so the
    payload's first byte is the word's lowest), each word masked to the payload's bytes in
    it; no loop over frames, no (frames, width) index array. Up to DIGEST_BYTES, the words
    :func:`_digest` gathered and masked (called first) are those words already: taken, not
    gathered again."""
    if HEAD_FROM_DIGEST and width <= DIGEST_BYTES and c.digest_avail is not None:
        return _head_of_digest(c, width)
    avail = np.minimum(np.minimum(c.payload_len, pend - c.payload_pos), width)
    avail = np.where(c.payload_ok, np.maximum(avail, 0), 0)
    n, words = len(avail), -(-width // 8)
    out = np.empty((n, words), dtype="<u8")
    last = len(v.le64) - 1  # a word wholly past the payload is masked: its index need only
    for k in range(words):  # stay in the view
        inside = np.clip(avail - 8 * k, 0, 8)
        at = np.minimum(c.payload_pos + 8 * k, last)
        np.bitwise_and(v.le64[at], _BYTE_MASKS[inside], out=out[:, k])
    head = out.view(np.uint8).reshape(n, 8 * words)
    if 8 * words != width:
        head = np.ascontiguousarray(head[:, :width])
    return head, avail.astype(np.int64)


def _head_of_digest(c: _Columns, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_head` from the digest's words: the digest took ``min(payload, captured,
    DIGEST_BYTES)`` bytes of each frame, the head takes the first ``width`` of them (the
    words past them are zero, as the head's masks make them)."""
    assert c.digest_avail is not None
    avail = np.minimum(c.digest_avail, width)
    n, words = len(avail), -(-width // 8)
    if c.digest_words is None:  # no frame has payload
        out = np.zeros((n, words), dtype="<u8")
    elif isinstance(c.digest_rows, slice):  # every frame has
        out = np.ascontiguousarray(c.digest_words[:, :words])
    else:
        out = np.zeros((n, words), dtype="<u8")
        out[c.digest_rows] = c.digest_words[:, :words]
    head = out.view(np.uint8).reshape(n, 8 * words)
    if 8 * words != width:
        head = np.ascontiguousarray(head[:, :width])
    return head, avail.astype(np.int64)


#: TCP options scanned for the window scale (a TCP header holds at most 40 bytes of them)
_MAX_TCP_OPTIONS = 40
_TCPOPT_EOL, _TCPOPT_NOP, _TCPOPT_WSCALE = 0, 1, 3


def _window(v: _Views, c: _Columns, pend: np.ndarray) -> dict[str, np.ndarray]:
    """Raw window of every TCP frame, and the window-scale shift its SYN announced."""
    n = c.tcp_l4.size
    l4 = c.tcp_l4
    ok = (l4 >= 0) & (l4 + 16 <= pend)
    window = np.where(ok, _at(v.be16, l4 + 14, ok), 0).astype(np.uint16)
    wscale = np.full(n, -1, dtype=np.int8)
    syn = np.flatnonzero(c.tcp_ok & ((c.tcp_flags & 0x02) != 0) & (l4 >= 0))
    if syn.size:
        end = np.minimum(l4[syn] + (_at(v.u8, l4[syn] + 12, np.ones(syn.size, bool)) >> 4)
                         .astype(np.int64) * 4, pend[syn])
        pos = l4[syn] + 20
        live = pos < end
        for _ in range(_MAX_TCP_OPTIONS):
            live &= pos < end
            if not live.any():
                break
            kind = _at(v.u8, pos, live).astype(np.int64)
            length = _at(v.u8, pos + 1, live & (pos + 1 < end)).astype(np.int64)
            found = live & (kind == _TCPOPT_WSCALE) & (length == 3) & (pos + 2 < end)
            wscale[syn[found]] = np.minimum(_at(v.u8, pos + 2, found), 14)[found]
            live &= (kind != _TCPOPT_EOL) & ~found & ((kind == _TCPOPT_NOP) | (length >= 2))
            pos = np.where(kind == _TCPOPT_NOP, pos + 1, pos + np.maximum(length, 1))
    return {"tcp_window": window, "tcp_window_ok": ok, "tcp_wscale": wscale}
