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

The record walk follows the ``caplen`` fields. Most records are found without a loop per
record (:class:`_RecordChain`): the records of a chunk are seconds apart, so the upper half of
their seconds field is the same in (nearly) all of them; the positions holding that 16-bit
value are the candidates, and the chain of candidates each record's length points to is the
walk (1.8 ms for a 4 MiB chunk of 37k records, against 4-9 ms for the loop). What the chain
cannot follow is walked by :func:`walk_records`, a loop over ``caplen`` fields: one item of
a memoryview of the chunk as 32-bit words (a file in the machine's byte order; else one
``Struct.unpack_from`` on a memoryview of the chunk: on the ndarray itself each call costs
half as much again) and one list append per record, 0.11-0.28 µs on the benchmark machine.
The record headers are then gathered for the whole chunk with numpy, one 16-byte gather each.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator

import numpy as np

from ..errors import InputError, XenlatWarning, warn
from .capture import (
    FAST_WALK_MIN_BYTES,
    FAST_WALK_MISSES,
    MAX_PACKET_BYTES,
    PCAP_MAGICS,
    CandidateChain,
    CaptureReader,
    Interface,
    RawBatch,
)

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
                 header_bytes: int, unpack_caplen: object,
                 words: tuple[memoryview, ...] | None = None) -> list[int]:
    """Offsets of the records starting at ``off`` whose header lies before ``end``.

    The last offset may belong to a record whose data runs past ``end`` (the caller checks).
    ``words``: the buffer as native 32-bit words from each of its first four bytes
    (:func:`word_views`), for a file in the machine's byte order: a record's ``caplen`` is
    then an item of one of them (0.12 µs a record against 0.14 for ``unpack_caplen``).
    """
    offs: list[int] = []
    append = offs.append
    lim = end - header_bytes
    if words is not None:
        # the caplen at byte off + 8: word (off >> 2) + 2 of the view starting at byte off & 3
        while off <= lim:
            append(off)
            off += header_bytes + words[off & 3][(off >> 2) + 2]
        return offs
    unpack = unpack_caplen  # local name: the loop body is the hot path
    while off <= lim:
        append(off)
        off += header_bytes + unpack(buf, off + 8)[0]  # type: ignore[operator]
    return offs


def word_views(buf: np.ndarray) -> tuple[memoryview, ...]:
    """The bytes of ``buf`` as native unsigned 32-bit words, from byte 0, 1, 2 and 3: view
    ``k``'s item ``j`` is the word at byte ``4 * j + k``, so the word at byte ``q`` is item
    ``q >> 2`` of view ``q & 3``."""
    whole = memoryview(buf).cast("B")  # type: ignore[arg-type]  # (capture.py: numpy stubs)
    return tuple(whole[k:k + (len(whole) - k) // 4 * 4].cast("I") for k in range(4))


#: the record chain walks a chunk whose previous chunk's records averaged no more bytes than
#: this (the first chunk, and chunks of larger records, go to the loop): its search costs
#: ~0.45 ns a byte of the chunk, the loop ~0.15 µs a record; on the toy set's 110-byte
#: records the walk takes 0.11 s a million instead of 0.20, on 1,166-byte ones the loop is
#: twice as fast as the chain
CHAIN_MAX_MEAN_BYTES = 256
#: ... and whose candidates' runs break at most once in this many of its expected records:
#: each break costs two searches, worth many of the loop's steps. Times under 65,536 s (a
#: capture of relative times) make every zero half-word a candidate, payloads that hold the
#: seconds' upper half many: there the chain took 15-40x the loop's time
CHAIN_RECORDS_PER_BREAK = 16


class _RecordChain(CandidateChain):
    """The records of a chunk found by their time: the candidates are the positions whose
    seconds field has the upper 16 bits of the first record's (``off``), each one's next
    record ``off + header + caplen`` (:class:`CandidateChain` follows them from the walk's
    own position; a payload that holds those two bytes is an impostor it skips, a record of
    other seconds one it leaves to the loop)."""

    def __init__(self, buf: np.ndarray, order: str, off: int, end: int,
                 header_bytes: int) -> None:
        lim = end - header_bytes  # a candidate's header lies before end
        field = np.dtype(order + "u2")
        at = 2 if order == "<" else 0  # where the seconds' upper half sits in the header
        upper = int(np.frombuffer(buf, dtype=field, count=1, offset=off + at)[0])
        span = buf[off + at:lim + at + 2]  # the 16-bit values at off + at .. lim + at
        even = np.frombuffer(span, dtype=field, count=len(span) // 2)
        odd = np.frombuffer(span[1:], dtype=field, count=(len(span) - 1) // 2)
        cand = np.concatenate([np.flatnonzero(even == upper) * 2,
                               np.flatnonzero(odd == upper) * 2 + 1])
        cand.sort(kind="stable")  # two ascending runs: merged (timsort), not sorted afresh
        cand += off
        caplen = np.ndarray((end - 3,), dtype=np.dtype(order + "u4"), buffer=buf,
                            strides=(1,))[cand + 8].astype(np.int64)
        super().__init__(cand, cand + header_bytes + caplen, np.ones(len(cand), dtype=bool),
                         shift=0)


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
            warn(XenlatWarning(
                f"{self.path}: offset 4: pcap version {self.version_major}."
                f"{self.version_minor} (known: 2.x); read as 2.4"), stacklevel=2)
        self.snaplen = snaplen
        self.linktype = linkfield & LINKTYPE_MASK
        #: bytes per record in the last chunk walked (:data:`CHAIN_MAX_MEAN_BYTES`)
        self._mean_record_bytes = float("inf")
        self.interfaces = [Interface(linktype=self.linktype, snaplen=snaplen,
                                     tsresol_code=9 if self._ns_per_tick == 1 else 6)]
        #: the chunk buffer (reused for every chunk) as words, for the loop's reads of a
        #: file in this machine's byte order (:func:`walk_records`)
        self._native = (self._order == "<") == (sys.byteorder == "little") \
            and struct.calcsize("I") == 4
        self._words = word_views(self._buf) if self._native else None

    def _new_buffer(self) -> None:
        self._words = word_views(self._buf) if self._native else None

    def batches(self) -> Iterator[RawBatch]:
        """Raw batches, one per chunk, in file order."""
        rec = self._rec_bytes
        u32 = np.dtype(self._order + "u4")
        off = FILE_HEADER_BYTES
        while True:
            end = self._len
            o = self._walk(off, end)
            # the headers' first 16 bytes (seconds, fraction, caplen, wirelen): one gather
            head = np.ndarray((max(end - 15, 0),), dtype="V16", buffer=self._buf,
                              strides=(1,))[o].view(u32).reshape(len(o), 4)
            caplen = head[:, 2].astype(np.int64)
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
            head = head[:n]
            stop = int(o[-1] + rec + caplen[-1]) if n else off
            if n:
                ts_ns = (head[:, 0].astype(np.int64) * 1_000_000_000
                         + head[:, 1].astype(np.int64) * self._ns_per_tick)
                batch = RawBatch(
                    buf=self._buf, data_off=o + rec, caplen=caplen,
                    wirelen=head[:, 3].astype(np.int64), ts_ns=ts_ns,
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

    def _walk(self, off: int, end: int) -> np.ndarray:
        """Offsets of the records from ``off`` whose header lies before ``end``, as
        :func:`walk_records` gives them: the runs :class:`_RecordChain` finds, the rest by
        the loop (all of it once the chain has declined :data:`FAST_WALK_MISSES` records)."""
        rec = self._rec_bytes
        unpack = CAPLEN[self._order].unpack_from
        lim = end - rec
        pieces = []
        small = self._mean_record_bytes <= CHAIN_MAX_MEAN_BYTES
        chain = _RecordChain(self._buf, self._order, off, end, rec) \
            if small and end - off >= max(FAST_WALK_MIN_BYTES, rec) else None
        expected = (end - off) / max(self._mean_record_bytes, 1.0)
        if chain is not None and len(chain.breaks) * CHAIN_RECORDS_PER_BREAK > expected:
            chain = None  # impostors everywhere: the loop is cheaper
        start = off
        while chain is not None and off <= lim:
            run, after = chain.follow(off)
            if len(run):
                pieces.append(run)
                off = after
            elif chain.misses > FAST_WALK_MISSES:
                break
            else:  # a record the chain does not know: the loop's step
                pieces.append(np.array([off], dtype=np.int64))
                off += rec + unpack(self._mv, off + 8)[0]
        if off <= lim:
            # struct reads a memoryview 1.5x faster than the ndarray (0.28 vs 0.44 µs a record)
            pieces.append(np.asarray(walk_records(self._mv, off, end, rec, unpack,
                                                  self._words), dtype=np.int64))
        offsets = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
        if len(offsets) > 1:
            self._mean_record_bytes = (int(offsets[-1]) - start) / (len(offsets) - 1)
        return offsets

    def _report_cut(self, at: int, left: int) -> None:
        rec = self._rec_bytes
        if left < rec:
            problem = f"record header cut short ({left} of {rec} bytes)"
        else:
            caplen = CAPLEN[self._order].unpack_from(self._buf, at + 8)[0]
            problem = f"packet data cut short ({left - rec} of {caplen} bytes)"
        self._stop(self._base + at, problem, corrupt=False)
