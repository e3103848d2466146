"""What every capture container shares: format sniffing, transparent gzip, chunked reading,
raw batches.

:func:`.containers.open_capture` checks the path, looks at the magic number (:func:`sniff`,
through :class:`GunzipStream` when the file is gzip-compressed, as Wireshark reads
``.pcap.gz``) and returns the reader of that format (:class:`~.pcap.PcapReader` or
:class:`~.pcapng.PcapngReader`, both a :class:`CaptureReader`). Both yield :class:`RawBatch`
objects:
columns of record positions, lengths and timestamps over one chunk of the file, never the whole
file (memory stays bounded by :data:`CHUNK_BYTES`, or :data:`CHUNK_GROWTH` times it for a
file of large frames).

The only sequential work is walking the record (block) lengths: each record's offset depends on
the previous record's length. The readers find most records without a loop per record
(:class:`CandidateChain`: the positions that look like a record start, linked by their
lengths, followed from the walk's own position), and step the rest in a tight loop that reads
4 (pcap) or 8 (pcapng) header bytes per record with a precompiled :class:`struct.Struct`;
everything else is numpy over the whole chunk.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from .. import linktypes
from ..errors import InputError, TruncatedInput
from ..groups import unique

#: Bytes read per chunk (plus the unread tail of the previous chunk). Small enough that the
#: decoder's gathers hit the CPU cache (4 MiB: 2x faster decoding than 16 MiB).
CHUNK_BYTES = 4 << 20
#: ... for frames of up to this many bytes on average (with their record headers); a file of
#: larger ones is read in chunks as many times larger, up to :data:`CHUNK_GROWTH` times: the
#: decoder touches the first ~150 bytes of a frame, so what fits the cache is a number of
#: frames, and a 4 MiB chunk of 1,166-byte frames holds a tenth of the toy captures' 37k
#: (decode of the 1M mixed pcap's frames in batches of 3.6k: 571 ns a frame, of 14.4k: 471)
CHUNK_MEAN_BYTES = 256
CHUNK_GROWTH = 4
#: Largest packet accepted (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD); a longer length field is
#: treated as corruption, never trusted to allocate.
MAX_PACKET_BYTES = 256 << 10
#: Largest non-packet pcapng block accepted (name resolution, statistics, custom blocks).
MAX_BLOCK_BYTES = 8 << 20

GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
#: pcap magic numbers as the first four bytes read little-endian: (resolution name, ns per tick,
#: record header bytes).
PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_MAGIC_MODIFIED = 0xA1B2CD34  # Kuznetzov's patched libpcap
PCAP_MAGICS: dict[int, tuple[str, int, int]] = {
    PCAP_MAGIC_USEC: ("usec", 1000, 16),
    PCAP_MAGIC_NSEC: ("nsec", 1, 16),
    PCAP_MAGIC_MODIFIED: ("usec-modified", 1000, 24),
}


@dataclasses.dataclass(slots=True)
class Interface:
    """One capture interface (pcapng IDB; a classic pcap file has exactly one)."""

    linktype: int
    snaplen: int
    name: str | None = None
    description: str | None = None
    #: seconds added to every timestamp (``if_tsoffset``)
    tsoffset_s: int = 0
    section: int = 0
    #: resolution code (pcapng ``if_tsresol`` byte: bit 7 set = power of two)
    tsresol_code: int = 6

    @property
    def tsresol(self) -> str:
        """Timestamp resolution as written: ``10^-6`` (decimal) or ``2^-20`` (binary)."""
        code = self.tsresol_code
        return f"2^-{code & 0x7F}" if code & 0x80 else f"10^-{code}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "linktype": self.linktype, "linktype_name": linktypes.name(self.linktype),
                "snaplen": self.snaplen, "tsresol": self.tsresol,
                "tsoffset_s": self.tsoffset_s, "section": self.section}


@dataclasses.dataclass
class RawBatch:
    """Records of one chunk as columns. ``buf`` is only valid until the next batch is read."""

    buf: np.ndarray            #: uint8 chunk buffer (bytes past the last packet are stale)
    data_off: np.ndarray       #: int64 offset of each packet's first byte in ``buf``
    caplen: np.ndarray         #: int64 captured length
    wirelen: np.ndarray        #: int64 original length
    ts_ns: np.ndarray          #: int64 epoch nanoseconds (meaningless where not ts_valid)
    ts_valid: np.ndarray       #: bool: the record has a usable timestamp
    interface: np.ndarray      #: int32 global interface index
    linktype: np.ndarray       #: int32 link type of each packet
    frame: np.ndarray          #: int64 1-based frame number as tshark counts
    end_offset: int            #: file offset just past this batch's records

    def __len__(self) -> int:
        return len(self.data_off)


@dataclasses.dataclass
class Damage:
    """Where a capture stops being readable: cut short or corrupt."""

    offset: int
    packet: int            #: number of the frame that could not be read
    problem: str
    kept: int              #: whole frames read before it
    corrupt: bool = False  #: True: a bad length or header, not just an early end


class CaptureReader:
    """Common machinery of the format readers: the file, the chunk buffer, damage reports."""

    format: str = "?"

    def __init__(self, path: Path, fh: io.BufferedIOBase | io.RawIOBase, raw: IO[bytes],
                 gzipped: bool, head: bytes) -> None:
        self.path = path
        self._fh = fh
        self._raw = raw
        self.gzipped = gzipped
        self.file_bytes = os.path.getsize(path)
        self.interfaces: list[Interface] = []
        self.byte_order = "LE"
        self.damage: Damage | None = None
        #: frames (tshark's count) read so far
        self.frames = 0
        #: pcapng: out-of-range timestamps replaced by NA (count)
        self.bad_timestamps = 0
        # Any: numpy's stubs make an ndarray a Buffer (struct, memoryview) from Python 3.12 only
        self._buf: Any = np.empty(CHUNK_BYTES + MAX_BLOCK_BYTES + 64, dtype=np.uint8)
        self._mv = memoryview(self._buf)  # type: ignore[arg-type]  # (see above)
        # bytes [0, _len) of _buf are valid; they start at file offset _base
        self._len = 0
        self._base = 0
        self._eof = False
        #: why the (gzip) stream ended early, if it did
        self.stream_error: str | None = None

    # -- chunk buffer -------------------------------------------------------------------------
    def _refill(self, keep_from: int) -> bool:
        """Drop bytes before ``keep_from``, read the next chunk after the rest. False at EOF."""
        if self._eof:
            return False
        tail = self._len - keep_from
        want = self._chunk_bytes(self._base + keep_from)
        room = CHUNK_GROWTH * CHUNK_BYTES + MAX_BLOCK_BYTES + 64
        if want > CHUNK_BYTES and len(self._buf) < room:  # large frames: a larger buffer
            grown = np.empty(room, dtype=np.uint8)
            grown[:tail] = self._buf[keep_from:self._len]
            self._buf, self._mv = grown, memoryview(grown)  # type: ignore[arg-type]
            self._new_buffer()
        elif tail and keep_from:
            self._buf[:tail] = self._buf[keep_from:self._len]
        self._base += keep_from
        self._len = tail
        while want > 0:
            got = self._fh.readinto(self._mv[self._len:self._len + want])
            if not got:
                self._eof = True
                self.stream_error = getattr(self._fh, "error", None)
                break
            self._len += got
            want -= got
        return self._len > tail or tail > 0

    def _chunk_bytes(self, consumed: int) -> int:
        """Bytes the next chunk reads: :data:`CHUNK_BYTES`, times the frames' mean size so far
        (``consumed`` bytes of the file) over :data:`CHUNK_MEAN_BYTES` when that is more (at
        most :data:`CHUNK_GROWTH` times: the chunk buffer is made that much larger then)."""
        if not self.frames:
            return CHUNK_BYTES
        growth = min(max(consumed / self.frames / CHUNK_MEAN_BYTES, 1.0), CHUNK_GROWTH)
        return int(CHUNK_BYTES * growth)

    def _new_buffer(self) -> None:
        """The chunk buffer was replaced by a larger one (views of the old one are stale)."""

    @property
    def position(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for gzip)."""
        try:
            return min(self._raw.tell(), self.file_bytes)
        except (OSError, ValueError):
            return self.file_bytes

    def close(self) -> None:
        self._fh.close()
        if self._raw is not self._fh:
            self._raw.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self) -> Iterator[RawBatch]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- damage -------------------------------------------------------------------------------
    def _stop(self, offset: int, problem: str, *, corrupt: bool) -> None:
        """Record where reading stopped; corruption before any frame is an error."""
        self.damage = Damage(offset=offset, packet=self.frames + 1, problem=problem,
                             kept=self.frames, corrupt=corrupt)
        if corrupt and self.frames == 0:
            raise InputError(self.path, problem, offset=offset, packet=1)

    def damage_warning(self) -> TruncatedInput | None:
        """The one warning about the damage found (after the last batch), or None."""
        d = self.damage
        if d is None and self.stream_error is not None:
            d = self.damage = Damage(offset=self._base + self._len, packet=self.frames + 1,
                                     problem=self.stream_error, kept=self.frames)
        if d is None:
            return None
        if self.stream_error is not None and self.stream_error not in d.problem:
            d.problem += f" ({self.stream_error})"
        what = "corrupt" if d.corrupt else "cut short"
        return TruncatedInput(
            f"{self.path}: offset {d.offset} (packet {d.packet}): capture {what}: {d.problem}; "
            f"the {d.kept} whole packets before it were kept")


#: chunks shorter than this are walked by the loop only (the vectorized set-up would not pay)
FAST_WALK_MIN_BYTES = 64 << 10
#: times a vectorized walk may decline a record before the loop takes the rest of the chunk
FAST_WALK_MISSES = 8


class CandidateChain:
    """Runs of records found without a Python loop per record (the readers' fast walks).

    ``cand`` are the positions where a record may start (ascending, in units of
    ``1 << shift`` bytes: words for pcapng, bytes for pcap), ``next`` where the record there
    says its successor starts, ``good`` whether that length is one the chain may trust. A
    run of candidates that link one to the next (``next == the following candidate``) is a
    run of real records, as the reader's loop would find them, once its first record is real:
    the loop's own position. A payload that happens to look like a record start breaks a
    link; the chain then goes on at the candidate the real record points to, skipping the
    impostor. Whatever is not a candidate is left to the loop.
    """

    def __init__(self, cand: np.ndarray, nxt: np.ndarray, good: np.ndarray,
                 shift: int) -> None:
        self.cand = cand
        self.next = nxt
        self.good = good
        self.shift = shift
        linked = good[:-1] & (nxt[:-1] == cand[1:])
        # indices where a run of linked candidates ends (the last candidate always does)
        self.breaks = np.append(np.flatnonzero(~linked), len(cand) - 1)
        self.misses = 0

    def follow(self, off: int) -> tuple[np.ndarray, int]:
        """Byte offsets of the records from ``off`` on, and the offset after the last of
        them (none, and a miss counted, when ``off`` is not a candidate)."""
        cand, n, shift = self.cand, len(self.cand), self.shift
        w = off >> shift
        i = int(np.searchsorted(cand, w)) if not off & ((1 << shift) - 1) else n
        if i >= n or cand[i] != w:
            self.misses += 1
            return NO_OFFSETS, off
        runs = []
        while True:
            b = int(self.breaks[np.searchsorted(self.breaks, i)])
            if not self.good[b]:  # a length the loop must judge
                if b > i:
                    runs.append(cand[i:b])
                stop = int(cand[b]) << shift
                break
            runs.append(cand[i:b + 1])
            after = int(self.next[b])
            j = int(np.searchsorted(cand, after))
            if j < n and cand[j] == after:  # skipped an impostor: go on from the real record
                i = j
                continue
            stop = after << shift
            break
        if not runs:
            self.misses += 1
            return NO_OFFSETS, off
        return np.concatenate(runs) << shift, stop


NO_OFFSETS = np.zeros(0, dtype=np.int64)


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, ascending (``groups.unique``): one comparison when every value is
    the first (a batch's one link type or interface, the usual case), not a sort."""
    if len(values) and (values == values[0]).all():
        return values[:1].copy()
    return unique(values)


#: compressed bytes read from disk at a time, and most bytes one inflate step may produce
GZIP_READ_BYTES = 1 << 20
GZIP_INFLATE_BYTES = 4 << 20


class GunzipStream(io.RawIOBase):
    """Streaming gzip decompression that keeps every byte inflated before damage.

    Unlike :class:`gzip.GzipFile`, a stream cut short or corrupt does not raise: reading ends
    there and :attr:`error` says why. Concatenated gzip members are read one after another;
    no step inflates more than ``GZIP_INFLATE_BYTES`` (a zip bomb cannot exhaust memory).
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.error: str | None = None
        self._z = zlib.decompressobj(wbits=31)
        self._pending = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def _fill(self, need: int) -> None:
        while len(self._pending) < need and not self._done:
            if self._z.unconsumed_tail:
                src = self._z.unconsumed_tail
            elif self._z.eof:  # member finished: another may follow
                src = self._z.unused_data or self.raw.read(GZIP_READ_BYTES)
                if not src:
                    self._done = True
                    break
                self._z = zlib.decompressobj(wbits=31)
            else:
                src = self.raw.read(GZIP_READ_BYTES)
                if not src:
                    self.error = "gzip data ends before the end of its stream"
                    self._done = True
                    break
            try:
                self._pending += self._z.decompress(src, GZIP_INFLATE_BYTES)
            except zlib.error as exc:
                self.error = f"corrupt gzip data ({exc})"
                self._done = True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._pending[:n])

    def readinto(self, b: Any) -> int:
        n = len(b)
        self._fill(n)
        k = min(n, len(self._pending))
        b[:k] = self._pending[:k]
        del self._pending[:k]
        return k


def sniff(head: bytes) -> str:
    """Format of a capture from its first bytes: ``pcap``, ``pcapng``, ``gzip`` or ``?``."""
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:4] == PCAPNG_MAGIC:
        return "pcapng"
    if len(head) >= 4:
        le = int.from_bytes(head[:4], "little")
        be = int.from_bytes(head[:4], "big")
        if le in PCAP_MAGICS or be in PCAP_MAGICS:
            return "pcap"
    return "?"
