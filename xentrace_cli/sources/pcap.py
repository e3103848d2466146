"""Classic pcap files → raw batches: both byte orders, µs and ns magic, Kuznetzov's variant.

Layout (https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/)::

    file header (24 bytes)                record header (16 bytes; 24 in "modified" pcap)
    +--------------------------------+    +--------------------------------+
    | magic          u32             |    | ts_sec          u32            |
    | version_major  u16             |    | ts_frac         u32  µs or ns  |
    | version_minor  u16             |    | caplen          u32            |
    | thiszone       i32 (ignored)   |    | wirelen         u32            |
    | sigfigs        u32 (ignored)   |    | [ifindex u32, protocol u16,    |
    | snaplen        u32             |    |  pkt_type u8, pad u8] modified |
    | linktype       u32 (FCS bits)  |    +--------------------------------+
    +--------------------------------+    packet data (caplen bytes)

The record walk is a loop over ``caplen`` fields only: one ``Struct.unpack_from`` (on a
memoryview of the chunk: on the ndarray itself each call costs half as much again) and one list
append per record, 0.17-0.28 µs on the benchmark machine (a memoryview cast at the four
alignments and ``int.from_bytes`` were measured too: no faster). Timestamps and lengths are then
gathered for the whole chunk with numpy.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterator

import numpy as np

from ..errors import InputError, XenlatWarning
from .capture import MAX_PACKET_BYTES, PCAP_MAGICS, CaptureReader, Interface, RawBatch

FILE_HEADER_BYTES = 24

FILE_HEADER = {
    "<": struct.Struct("<IHHiIII"),
    ">": struct.Struct(">IHHiIII"),
}
CAPLEN = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}

#: bits 16-25 of the link-type field are reserved (must be 0); 26-31 describe an FCS.
LINKTYPE_MASK = 0x0000FFFF
LINKTYPE_RESERVED_MASK = 0x03FF0000


def walk_records(buf: np.ndarray | bytearray | memoryview, off: int, end: int,
                 header_bytes: int, unpack_caplen: object) -> list[int]:
    """Offsets of the records starting at ``off`` whose header lies before ``end``.

    The last offset may belong to a record whose data runs past ``end`` (the caller checks).
    """
    offs: list[int] = []
    append = offs.append
    unpack = unpack_caplen  # local name: the loop body is the hot path
    lim = end - header_bytes
    while off <= lim:
        append(off)
        off += header_bytes + unpack(buf, off + 8)[0]  # type: ignore[operator]
    return offs


class PcapReader(CaptureReader):
    """Reader of classic pcap files."""

    format = "pcap"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._refill(0)
        if self._len < FILE_HEADER_BYTES:
            raise InputError(self.path, f"pcap file header cut short ({self._len} of "
                             f"{FILE_HEADER_BYTES} bytes)", offset=0)
        head = bytes(self._buf[:FILE_HEADER_BYTES])
        le = int.from_bytes(head[:4], "little")
        self._order = "<" if le in PCAP_MAGICS else ">"
        self.byte_order = "LE" if self._order == "<" else "BE"
        (magic, self.version_major, self.version_minor, _zone, _sigfigs, snaplen,
         linkfield) = FILE_HEADER[self._order].unpack(head)
        self.resolution, self._ns_per_tick, self._rec_bytes = PCAP_MAGICS[magic]
        if self._rec_bytes == 24:
            self.format = "modpcap"
        elif self._ns_per_tick == 1:
            self.format = "nsecpcap"
        if linkfield & LINKTYPE_RESERVED_MASK:
            raise InputError(self.path, f"corrupt file header: reserved bits of the link-type "
                             f"field are set (0x{linkfield:08x})", offset=20)
        if self.version_major != 2:
            warnings.warn(XenlatWarning(
                f"{self.path}: offset 4: pcap version {self.version_major}."
                f"{self.version_minor} (known: 2.x); read as 2.4"), stacklevel=2)
        self.snaplen = snaplen
        self.linktype = linkfield & LINKTYPE_MASK
        self.interfaces = [Interface(linktype=self.linktype, snaplen=snaplen,
                                     tsresol_code=9 if self._ns_per_tick == 1 else 6)]

    def batches(self) -> Iterator[RawBatch]:
        """Raw batches, one per chunk, in file order."""
        rec = self._rec_bytes
        unpack = CAPLEN[self._order].unpack_from
        u32 = np.dtype(self._order + "u4")
        off = FILE_HEADER_BYTES
        while True:
            end = self._len
            # struct reads a memoryview 1.5x faster than the ndarray (0.28 vs 0.44 µs a record)
            o = np.asarray(walk_records(self._mv, off, end, rec, unpack), dtype=np.int64)
            words = np.ndarray((max(end - 3, 0),), dtype=u32, buffer=self._buf, strides=(1,))
            caplen = words[o + 8].astype(np.int64)
            corrupt = None
            bad = np.flatnonzero(caplen > MAX_PACKET_BYTES)
            if len(bad):
                k = int(bad[0])
                corrupt = (int(o[k]), f"record length {int(caplen[k])} is larger than "
                           f"{MAX_PACKET_BYTES} bytes")
                o, caplen = o[:k], caplen[:k]
            if len(o) and o[-1] + rec + caplen[-1] > end:  # last record runs past the chunk
                o, caplen = o[:-1], caplen[:-1]
            n = len(o)
            stop = int(o[-1] + rec + caplen[-1]) if n else off
            if n:
                ts_ns = (words[o].astype(np.int64) * 1_000_000_000
                         + words[o + 4].astype(np.int64) * self._ns_per_tick)
                batch = RawBatch(
                    buf=self._buf, data_off=o + rec, caplen=caplen,
                    wirelen=words[o + 12].astype(np.int64), ts_ns=ts_ns,
                    ts_valid=np.ones(n, dtype=bool),
                    interface=np.zeros(n, dtype=np.int32),
                    linktype=np.full(n, self.linktype, dtype=np.int32),
                    frame=np.arange(self.frames + 1, self.frames + n + 1, dtype=np.int64),
                    end_offset=self._base + stop)
                self.frames += n
                yield batch
            if corrupt is not None:
                self._stop(self._base + corrupt[0], corrupt[1], corrupt=True)
                return
            if self._eof:
                if stop < end:
                    self._report_cut(stop, end - stop)
                return
            self._refill(stop)
            off = 0

    def _report_cut(self, at: int, left: int) -> None:
        rec = self._rec_bytes
        if left < rec:
            problem = f"record header cut short ({left} of {rec} bytes)"
        else:
            caplen = CAPLEN[self._order].unpack_from(self._buf, at + 8)[0]
            problem = f"packet data cut short ({left - rec} of {caplen} bytes)"
        self._stop(self._base + at, problem, corrupt=False)
