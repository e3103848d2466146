"""Vectorized Ethernet / IPv4 / TCP frame building, and the byte content of simulated streams.

A batch of frames is described by columns (addresses, ports, sequence numbers, flags, payload
length, where the payload comes from); :func:`build_frames` turns the batch into the captured
bytes of every frame at once — header fields through one packed big-endian structured dtype,
payload bytes through one gather — with no Python loop per frame.
"""

from __future__ import annotations

import bisect
import dataclasses

import numpy as np

from ..groups import ragged_index
from ..linktypes import ETHERTYPE_IPV4

IPPROTO_TCP = 6
IPPROTO_UDP = 17

#: TCP flag bits (RFC 9293).
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

#: Ethernet II + IPv4 (no options) + TCP with room for one 4-byte option (MSS on SYNs).
#: One field per line, network byte order, no padding: this *is* the wire layout.
HEADER_DTYPE = np.dtype([
    ("eth_dst", "u1", 6),
    ("eth_src", "u1", 6),
    ("eth_type", ">u2"),
    ("ip_vihl", "u1"),        # version 4, IHL 5
    ("ip_tos", "u1"),
    ("ip_len", ">u2"),        # IP total length
    ("ip_id", ">u2"),
    ("ip_frag", ">u2"),       # flags (DF) and fragment offset
    ("ip_ttl", "u1"),
    ("ip_proto", "u1"),
    ("ip_csum", ">u2"),
    ("ip_src", ">u4"),
    ("ip_dst", ">u4"),
    ("tcp_sport", ">u2"),
    ("tcp_dport", ">u2"),
    ("tcp_seq", ">u4"),
    ("tcp_ack", ">u4"),
    ("tcp_off", "u1"),        # data offset in 32-bit words, high nibble
    ("tcp_flags", "u1"),
    ("tcp_win", ">u2"),
    ("tcp_csum", ">u2"),
    ("tcp_urp", ">u2"),
    ("tcp_opt", "u1", 4),     # MSS option on SYNs only
])
ETH_LEN, IP_LEN, TCP_LEN = 14, 20, 20
IP_OFFSET = ETH_LEN
MSS_OPTION_KIND = 2
#: The content pattern repeats every PATTERN_PERIOD bytes (26 · 26).
PATTERN_PERIOD = 676
#: Bytes of frame matrix built at once (bounds memory for 64 KB GSO frames).
MATRIX_BYTES = 64 << 20


def pattern_bytes(pos: np.ndarray) -> np.ndarray:
    """The filler pattern at virtual positions: letters shifted per position, so a 64-byte
    digest of any segment differs from its neighbours' (period :data:`PATTERN_PERIOD`)."""
    pos = np.asarray(pos, dtype=np.int64)
    return (97 + (pos * 7 + pos // 26) % 26).astype(np.uint8)


def ip_to_int(addr: str) -> int:
    """Dotted IPv4 address → 32-bit integer."""
    a, b, c, d = (int(x) for x in addr.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def mac_to_bytes(mac: str) -> np.ndarray:
    """``aa:bb:cc:dd:ee:ff`` → 6 uint8."""
    return np.array([int(x, 16) for x in mac.split(":")], dtype=np.uint8)


@dataclasses.dataclass
class Content:
    """Byte content of every simulated stream, addressable by a virtual position.

    The streams are laid end to end in one virtual space. Each region starts with literal bytes
    (a request, or a response's header line) and continues with a printable pattern, so the
    content of gigabytes of responses is computed on demand and never stored.
    """

    region_start: np.ndarray
    """Virtual position where each region starts (sorted, int64)."""
    literal_off: np.ndarray
    """Offset of the region's literal bytes in ``literal`` (int64)."""
    literal_len: np.ndarray
    """Number of literal bytes at the start of the region (int64)."""
    literal: np.ndarray
    """All literal bytes (uint8)."""
    _starts: list[int] | None = dataclasses.field(default=None, repr=False)
    _pattern: bytes = dataclasses.field(default=b"", repr=False)

    def bytes_at(self, pos: np.ndarray) -> np.ndarray:
        """The content byte at each virtual position (uint8)."""
        pos = np.asarray(pos, dtype=np.int64)
        region = np.searchsorted(self.region_start, pos, side="right") - 1
        off = pos - self.region_start[region]
        is_literal = off < self.literal_len[region]
        out = pattern_bytes(pos)
        lit_idx = self.literal_off[region[is_literal]] + off[is_literal]
        out[is_literal] = self.literal[lit_idx]
        return out

    def matrix(self, start: np.ndarray, width: int) -> np.ndarray:
        """Rows of ``width`` content bytes from each start (n, width), one gather per row."""
        start = np.asarray(start, dtype=np.int64)
        ext = pattern_bytes(np.arange(PATTERN_PERIOD + width))
        rows = np.lib.stride_tricks.sliding_window_view(ext, width)[start % PATTERN_PERIOD]
        # literal bytes: only rows starting inside a region's literal part
        region = np.searchsorted(self.region_start, start, side="right") - 1
        lit_left = self.region_start[region] + self.literal_len[region] - start
        hit = np.flatnonzero(lit_left > 0)
        if len(hit):
            # every byte before lit_left is literal: read it straight from the literal bytes
            n_lit = np.minimum(lit_left[hit], width)
            lit_at = self.literal_off[region[hit]] + (start[hit] - self.region_start[region[hit]])
            r_idx = np.repeat(hit, n_lit)
            c_idx = ragged_index(np.zeros(len(hit), dtype=np.int64), n_lit)
            rows[r_idx, c_idx] = self.literal[ragged_index(lit_at, n_lit)]
        return rows

    def slice(self, start: int, n: int) -> bytes:
        """``n`` content bytes from virtual position ``start`` (pure Python: called per read)."""
        if self._starts is None:
            self._starts = self.region_start.tolist()
            self._pattern = pattern_bytes(np.arange(2 * PATTERN_PERIOD + 4096)).tobytes()
        r = bisect.bisect_right(self._starts, start) - 1
        if n > PATTERN_PERIOD + 4096:
            return self.bytes_at(np.arange(start, start + n, dtype=np.int64)).tobytes()
        off = start - self._starts[r]
        lit = int(self.literal_len[r]) - off
        if lit > 0:      # the literal bytes, then the pattern (a region ends in pattern)
            at = int(self.literal_off[r]) + off
            head = self.literal[at:at + min(lit, n)].tobytes()
            if len(head) == n:
                return head
            k = (start + len(head)) % PATTERN_PERIOD
            return head + self._pattern[k:k + n - len(head)]
        k = start % PATTERN_PERIOD
        return self._pattern[k:k + n]


@dataclasses.dataclass
class FrameBatch:
    """Captured bytes of a batch of frames, laid end to end."""

    data: np.ndarray
    """All captured bytes (uint8)."""
    offsets: np.ndarray
    """Start of each frame in ``data`` (int64, length n + 1)."""
    wirelen: np.ndarray
    """Original length of each frame on the wire (int64)."""

    @property
    def caplen(self) -> np.ndarray:
        """Captured length of each frame."""
        return np.diff(self.offsets)


def _ones_complement_sum(words: np.ndarray) -> np.ndarray:
    """Fold per-row sums of 16-bit words into the one's complement checksum (RFC 1071)."""
    total = words.astype(np.uint64).sum(axis=1)
    while True:  # at most three folds for any realistic row width
        carry = total >> np.uint64(16)
        if not carry.any():
            break
        total = (total & np.uint64(0xFFFF)) + carry
    return (~total.astype(np.uint16)).astype(np.uint16)


def build_frames(*, eth_src: np.ndarray, eth_dst: np.ndarray, ip_src: np.ndarray,
                 ip_dst: np.ndarray, ip_id: np.ndarray, ttl: np.ndarray, sport: np.ndarray,
                 dport: np.ndarray, seq: np.ndarray, ack: np.ndarray, flags: np.ndarray,
                 window: np.ndarray, payload_len: np.ndarray, content_pos: np.ndarray,
                 content: Content, snaplen: int) -> FrameBatch:
    """Build the captured bytes of n TCP/IPv4/Ethernet frames.

    ``eth_src``/``eth_dst`` are (n, 6) uint8; SYN frames carry an MSS option. The IPv4 header
    checksum is correct; the TCP checksum holds the pseudo-header sum only, as captures taken
    before checksum offload completes show it.
    """
    n = len(seq)
    payload_len = np.asarray(payload_len, dtype=np.int64)
    flags = np.asarray(flags, dtype=np.uint8)
    has_opt = (flags & SYN) != 0
    tcp_len = TCP_LEN + 4 * has_opt.astype(np.int64)
    hdr_len = ETH_LEN + IP_LEN + tcp_len
    ip_total = IP_LEN + tcp_len + payload_len

    h = np.zeros(n, dtype=HEADER_DTYPE)
    h["eth_dst"] = eth_dst
    h["eth_src"] = eth_src
    h["eth_type"] = ETHERTYPE_IPV4
    h["ip_vihl"] = 0x45
    h["ip_len"] = ip_total
    h["ip_id"] = ip_id
    h["ip_frag"] = 0x4000  # DF
    h["ip_ttl"] = ttl
    h["ip_proto"] = IPPROTO_TCP
    h["ip_src"] = ip_src
    h["ip_dst"] = ip_dst
    h["tcp_sport"] = sport
    h["tcp_dport"] = dport
    h["tcp_seq"] = seq
    h["tcp_ack"] = ack
    h["tcp_off"] = (tcp_len // 4) << 4
    h["tcp_flags"] = flags
    h["tcp_win"] = window
    h["tcp_opt"][has_opt] = np.array([MSS_OPTION_KIND, 4, 0x05, 0xB4], dtype=np.uint8)  # 1460
    raw = h.view(np.uint8).reshape(n, HEADER_DTYPE.itemsize)

    ip_words = raw[:, IP_OFFSET:IP_OFFSET + IP_LEN].copy().view(">u2")
    h["ip_csum"] = _ones_complement_sum(ip_words)
    # TCP pseudo-header partial sum (src, dst, proto, TCP length), not inverted
    pseudo = (np.asarray(ip_src, np.uint64) >> np.uint64(16)) + (np.asarray(ip_src, np.uint64)
              & np.uint64(0xFFFF)) + (np.asarray(ip_dst, np.uint64) >> np.uint64(16)) + (
        np.asarray(ip_dst, np.uint64) & np.uint64(0xFFFF)) + np.uint64(IPPROTO_TCP) + (
        (tcp_len + payload_len).astype(np.uint64))
    pseudo = (pseudo & np.uint64(0xFFFF)) + (pseudo >> np.uint64(16))
    pseudo = (pseudo & np.uint64(0xFFFF)) + (pseudo >> np.uint64(16))
    h["tcp_csum"] = pseudo.astype(np.uint16)
    raw = h.view(np.uint8).reshape(n, HEADER_DTYPE.itemsize)

    wirelen = hdr_len + payload_len
    caplen = np.minimum(wirelen, snaplen)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(caplen, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    width = int(caplen.max()) if n else 0
    step = max(1, MATRIX_BYTES // max(width, 1))
    base = ETH_LEN + IP_LEN + TCP_LEN
    for lo in range(0, n, step):   # frames as rows of a matrix, cut to each caplen
        hi = min(n, lo + step)
        cl = caplen[lo:hi]
        w = int(cl.max())
        m = np.zeros((hi - lo, max(w, base)), dtype=np.uint8)
        if w > base:
            m[:, base:] = content.matrix(np.asarray(content_pos[lo:hi]), w - base)
        m[:, :base] = raw[lo:hi, :base]
        opt = np.flatnonzero(has_opt[lo:hi])   # SYNs carry no payload: option bytes win
        k = min(4, m.shape[1] - base)
        m[opt, base:base + k] = raw[lo + opt, base:base + k]
        m = m[:, :w]
        data[offsets[lo]:offsets[hi]] = m[np.arange(w)[None, :] < cl[:, None]]
    return FrameBatch(data=data, offsets=offsets, wirelen=wirelen)


#: Ethernet II + IPv4 (no options) + UDP, one field per line, network byte order.
UDP_HEADER_DTYPE = np.dtype([
    ("eth_dst", "u1", 6),
    ("eth_src", "u1", 6),
    ("eth_type", ">u2"),
    ("ip_vihl", "u1"),
    ("ip_tos", "u1"),
    ("ip_len", ">u2"),
    ("ip_id", ">u2"),
    ("ip_frag", ">u2"),
    ("ip_ttl", "u1"),
    ("ip_proto", "u1"),
    ("ip_csum", ">u2"),
    ("ip_src", ">u4"),
    ("ip_dst", ">u4"),
    ("udp_sport", ">u2"),
    ("udp_dport", ">u2"),
    ("udp_len", ">u2"),
    ("udp_csum", ">u2"),
])
UDP_LEN = 8


def build_udp_frames(*, eth_src: np.ndarray, eth_dst: np.ndarray, ip_src: np.ndarray,
                     ip_dst: np.ndarray, ip_id: np.ndarray, ttl: np.ndarray, sport: np.ndarray,
                     dport: np.ndarray, payload_len: np.ndarray, content_pos: np.ndarray,
                     content: Content, snaplen: int) -> FrameBatch:
    """Build the captured bytes of n UDP/IPv4/Ethernet datagrams (DF set; the UDP checksum
    holds the pseudo-header sum only, as before checksum offload completes)."""
    n = len(payload_len)
    payload_len = np.asarray(payload_len, dtype=np.int64)
    h = np.zeros(n, dtype=UDP_HEADER_DTYPE)
    h["eth_dst"], h["eth_src"], h["eth_type"] = eth_dst, eth_src, ETHERTYPE_IPV4
    h["ip_vihl"], h["ip_len"], h["ip_id"], h["ip_frag"] = 0x45, IP_LEN + UDP_LEN + payload_len, \
        ip_id, 0x4000
    h["ip_ttl"], h["ip_proto"], h["ip_src"], h["ip_dst"] = ttl, IPPROTO_UDP, ip_src, ip_dst
    h["udp_sport"], h["udp_dport"], h["udp_len"] = sport, dport, UDP_LEN + payload_len
    raw = h.view(np.uint8).reshape(n, UDP_HEADER_DTYPE.itemsize)
    h["ip_csum"] = _ones_complement_sum(raw[:, IP_OFFSET:IP_OFFSET + IP_LEN].copy().view(">u2"))
    src, dst = np.asarray(ip_src, np.uint64), np.asarray(ip_dst, np.uint64)
    m16 = np.uint64(0xFFFF)
    pseudo = ((src >> np.uint64(16)) + (src & m16) + (dst >> np.uint64(16)) + (dst & m16)
              + np.uint64(IPPROTO_UDP) + (UDP_LEN + payload_len).astype(np.uint64))
    pseudo = (pseudo & m16) + (pseudo >> np.uint64(16))
    h["udp_csum"] = ((pseudo & m16) + (pseudo >> np.uint64(16))).astype(np.uint16)
    raw = h.view(np.uint8).reshape(n, UDP_HEADER_DTYPE.itemsize)
    base = UDP_HEADER_DTYPE.itemsize
    wirelen = base + payload_len
    caplen = np.minimum(wirelen, snaplen)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(caplen, out=offsets[1:])
    width = int(caplen.max()) if n else 0
    m = np.zeros((n, max(width, base)), dtype=np.uint8)
    if width > base:
        m[:, base:] = content.matrix(np.asarray(content_pos), width - base)
    m[:, :base] = raw
    data = m[:, :width][np.arange(width)[None, :] < caplen[:, None]]
    return FrameBatch(data=data, offsets=offsets, wirelen=wirelen)


def merge_frames(first: FrameBatch, second: FrameBatch, is_second: np.ndarray) -> FrameBatch:
    """Interleave two batches: row i comes from ``second`` where ``is_second[i]``, else from
    ``first``, each in its own order."""
    n = len(is_second)
    src_a, src_b = np.flatnonzero(~is_second), np.flatnonzero(is_second)
    caplen = np.empty(n, dtype=np.int64)
    caplen[src_a], caplen[src_b] = first.caplen, second.caplen
    wirelen = np.empty(n, dtype=np.int64)
    wirelen[src_a], wirelen[src_b] = first.wirelen, second.wirelen
    start = np.empty(n, dtype=np.int64)
    start[src_a] = first.offsets[:-1]
    start[src_b] = second.offsets[:-1] + len(first.data)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(caplen, out=offsets[1:])
    data = np.concatenate([first.data, second.data])[ragged_index(start, caplen)]
    return FrameBatch(data=data, offsets=offsets, wirelen=wirelen)
