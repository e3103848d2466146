"""Writers of the simulated sources: classic pcap, pcapng, xentrace binary, strace text.

Every writer builds its bytes with numpy for a whole batch at once: record headers as rows of a
structured array with explicit byte order, frame bytes scattered after them by computed
positions. The only Python loop is over batches (bounded memory for any number of frames).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..groups import ragged_index
from ..linktypes import ETHERNET
from ..sources.capture import PCAP_MAGIC_USEC
from ..sources.pcapng import BYTE_ORDER_MAGIC, EPB, IDB, SHB
from ..xen_events import CPU_CHANGE_HEADER, CYCLES_FLAG, EXTRA_SHIFT, MAX_EXTRA
from .frames import FrameBatch

PCAP_VERSION = (2, 4)
#: Classic pcap file header (little-endian): magic, version, thiszone, sigfigs, snaplen, network.
PCAP_FILE_HEADER = struct.Struct("<IHHiIII")
#: Classic pcap record header, one field per line.
PCAP_RECORD_DTYPE = np.dtype([
    ("ts_sec", "<u4"),
    ("ts_usec", "<u4"),
    ("incl_len", "<u4"),
    ("orig_len", "<u4"),
])

OPT_ENDOFOPT, OPT_SHB_USERAPPL, OPT_IF_NAME, OPT_IF_TSRESOL = 0, 4, 2, 9
#: Enhanced Packet Block up to its packet data, one field per line.
PCAPNG_EPB_DTYPE = np.dtype([
    ("block_type", "<u4"),
    ("block_len", "<u4"),
    ("interface_id", "<u4"),
    ("ts_high", "<u4"),
    ("ts_low", "<u4"),
    ("cap_len", "<u4"),
    ("orig_len", "<u4"),
])

#: Frames per batch written at once, and bytes (bounds the memory of a batch).
BATCH_FRAMES = 100_000
BATCH_BYTES = 64 << 20
NS_PER_S = 1_000_000_000

FrameChunks = Iterable[tuple[np.ndarray, FrameBatch]]
#: Frames already built, or a builder of frames [lo, hi) called once per batch.
FrameSource = FrameBatch | Callable[[int, int], FrameBatch]


def _batches(ts_ns: np.ndarray, frames: FrameSource) -> FrameChunks:
    """Writer-sized pieces of the frames: slices of a built batch, or built per slice."""
    n = len(ts_ns)
    if callable(frames):
        for lo in range(0, n, BATCH_FRAMES):
            hi = min(n, lo + BATCH_FRAMES)
            yield ts_ns[lo:hi], frames(lo, hi)
        return
    lo = 0
    while lo < n:
        # cut by bytes as well as frames (64 KB GSO frames make big batches)
        hi = int(np.searchsorted(frames.offsets, frames.offsets[lo] + BATCH_BYTES, "right"))
        hi = min(n, max(lo + 1, min(hi - 1, lo + BATCH_FRAMES)))
        a, b = frames.offsets[lo], frames.offsets[hi]
        yield ts_ns[lo:hi], FrameBatch(frames.data[a:b], frames.offsets[lo:hi + 1] - a,
                                       frames.wirelen[lo:hi])
        lo = hi


def _interleave(prefix: np.ndarray, frames: FrameBatch, suffix_len: np.ndarray) -> tuple[
        np.ndarray, np.ndarray]:
    """Lay out ``prefix[i] + frame i + suffix_len[i] zero bytes`` for every i.

    Returns the output bytes and the start of each record in them. The frame bytes go in with
    one boolean-mask fill (no index per byte).
    """
    n, plen = prefix.shape
    caplen = frames.caplen
    rec_len = plen + caplen + suffix_len
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=start[1:])
    out = np.zeros(int(rec_len.sum()), dtype=np.uint8)
    is_data = np.ones(len(out), dtype=bool)
    head = (start[:, None] + np.arange(plen)).ravel()
    is_data[head] = False
    is_data[ragged_index(start + plen + caplen, suffix_len)] = False
    out[head] = prefix.ravel()
    out[is_data] = frames.data
    return out, start


def write_pcap(path: str | os.PathLike[str], ts_ns: np.ndarray, frames: FrameSource, *,
               snaplen: int = 262144, linktype: int = ETHERNET) -> None:
    """Write a classic little-endian microsecond pcap (timestamps truncated to µs)."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    with open(path, "wb") as f:
        f.write(PCAP_FILE_HEADER.pack(PCAP_MAGIC_USEC, *PCAP_VERSION, 0, 0, snaplen, linktype))
        for ts, batch in _batches(ts_ns, frames):
            hdr = np.zeros(len(ts), dtype=PCAP_RECORD_DTYPE)
            hdr["ts_sec"] = ts // NS_PER_S
            hdr["ts_usec"] = (ts % NS_PER_S) // 1000
            hdr["incl_len"] = batch.caplen
            hdr["orig_len"] = batch.wirelen
            prefix = hdr.view(np.uint8).reshape(len(ts), PCAP_RECORD_DTYPE.itemsize)
            out, _ = _interleave(prefix, batch, np.zeros(len(ts), dtype=np.int64))
            f.write(out.tobytes())


def _pcapng_option(code: int, value: bytes) -> bytes:
    """One pcapng option, padded to 32 bits."""
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    """A pcapng block around ``body`` (already padded)."""
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def write_pcapng(path: str | os.PathLike[str], ts_ns: np.ndarray, frames: FrameSource, *,
                 if_name: str = "eth0", snaplen: int = 262144,
                 linktype: int = ETHERNET, userappl: str = "xenlat simulate") -> None:
    """Write a pcapng file: one section, one interface (``if_tsresol`` 9 = ns), EPBs."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    shb = _pcapng_block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
                        + _pcapng_option(OPT_SHB_USERAPPL, userappl.encode())
                        + _pcapng_option(OPT_ENDOFOPT, b""))
    idb = _pcapng_block(IDB, struct.pack("<HHI", linktype, 0, snaplen)
                        + _pcapng_option(OPT_IF_NAME, if_name.encode())
                        + _pcapng_option(OPT_IF_TSRESOL, bytes([9]))
                        + _pcapng_option(OPT_ENDOFOPT, b""))
    with open(path, "wb") as f:
        f.write(shb + idb)
        for ts, batch in _batches(ts_ns, frames):
            n = len(ts)
            caplen = batch.caplen
            pad = (-caplen) % 4
            block_len = PCAPNG_EPB_DTYPE.itemsize + caplen + pad + 4
            hdr = np.zeros(n, dtype=PCAPNG_EPB_DTYPE)
            hdr["block_type"] = EPB
            hdr["block_len"] = block_len
            hdr["ts_high"] = ts.astype(np.uint64) >> np.uint64(32)
            hdr["ts_low"] = ts.astype(np.uint64) & np.uint64(0xFFFFFFFF)
            hdr["cap_len"] = caplen
            hdr["orig_len"] = batch.wirelen
            prefix = hdr.view(np.uint8).reshape(n, PCAPNG_EPB_DTYPE.itemsize)
            out, start = _interleave(prefix, batch, pad + 4)
            # trailing copy of the block length: blocks are 32-bit aligned, so view as words
            words = out.view("<u4")
            words[(start + block_len - 4) // 4] = block_len
            f.write(out.tobytes())


def xentrace_record_words(event: np.ndarray, tsc: np.ndarray, has_ts: np.ndarray,
                          n_extra: np.ndarray, extra: np.ndarray) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Records as a (n, 10) uint32 matrix and each record's length in words.

    Row layout::

        | hdr | tsc_lo tsc_hi (if C) | w0 .. w(N-1) |     hdr = event | N << 28 | C << 31
    """
    n = len(event)
    has_ts = np.asarray(has_ts, dtype=bool)
    n_extra = np.asarray(n_extra, dtype=np.int64)
    m = np.zeros((n, 3 + MAX_EXTRA), dtype=np.uint32)
    m[:, 0] = (np.asarray(event, np.uint32) | (n_extra.astype(np.uint32) << EXTRA_SHIFT)
               | np.where(has_ts, np.uint32(CYCLES_FLAG), np.uint32(0)))
    tsc = np.asarray(tsc, dtype=np.uint64)
    m[:, 1] = np.where(has_ts, tsc & np.uint64(0xFFFFFFFF), 0)
    m[:, 2] = np.where(has_ts, tsc >> np.uint64(32), 0)
    # extra words go right after the header when there is no timestamp: shift those rows
    extra = np.asarray(extra, dtype=np.uint32)
    m[has_ts, 3:] = extra[has_ts]
    m[~has_ts, 1:1 + MAX_EXTRA] = extra[~has_ts]
    return m, 1 + 2 * has_ts.astype(np.int64) + n_extra


def _write_contiguous_windows(path: str | os.PathLike[str], cpu: np.ndarray,
                              period: np.ndarray, words: np.ndarray,
                              length: np.ndarray) -> bool:
    """The common case, records grouped by CPU (as the trace builder sorts them): each window
    is one run of records, so its words go out as one slice; False when that does not hold."""
    n = len(cpu)
    if n == 0:
        return False
    key = period * (int(cpu.max()) + 1) + cpu
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    run_key = key[starts]
    if len(np.unique(run_key)) != len(run_key):
        return False
    flat = words[np.arange(words.shape[1])[None, :] < length[:, None]]   # input order
    word_end = np.cumsum(length)
    lo = (word_end - length)[starts]
    hi = np.r_[lo[1:], word_end[-1]]
    head = np.zeros((len(starts), 3), dtype=np.uint32)
    head[:, 0] = CPU_CHANGE_HEADER
    head[:, 1] = cpu[starts]
    head[:, 2] = (hi - lo) * 4
    pieces: list[np.ndarray] = []
    for r in np.argsort(run_key, kind="stable").tolist():
        pieces += (head[r], flat[lo[r]:hi[r]])
    with open(path, "wb") as f:
        f.write(np.concatenate(pieces).astype("<u4", copy=False).tobytes())
    return True


def write_xentrace(path: str | os.PathLike[str], cpu: np.ndarray, tsc: np.ndarray,
                   event: np.ndarray, extra: np.ndarray, n_extra: np.ndarray,
                   has_ts: np.ndarray, *, window_cycles: int) -> None:
    """Write records as xentrace does: per-CPU windows, CPUs 0..N-1 in turn each period.

    Records must be in per-CPU order already (by ``tsc``, Xen's write order for ties); a
    record without a timestamp carries the ``tsc`` it will inherit, used only for windowing.
    ``extra`` is (n, 7) uint32.
    """
    cpu = np.asarray(cpu, dtype=np.int64)
    tsc = np.asarray(tsc, dtype=np.uint64)
    words, length = xentrace_record_words(event, tsc, has_ts, n_extra, extra)
    t_min = int(tsc.min()) if len(tsc) else 0
    period = ((tsc - np.uint64(t_min)) // np.uint64(window_cycles)).astype(np.int64)
    if _write_contiguous_windows(path, cpu, period, words, length):
        return
    order = np.lexsort((np.arange(len(cpu)), cpu, period))
    words, length, cpu, period = words[order], length[order], cpu[order], period[order]
    # one window per (period, cpu) run: a CPU-change row in front of each
    new = np.ones(len(cpu), dtype=bool)
    new[1:] = (cpu[1:] != cpu[:-1]) | (period[1:] != period[:-1])
    first = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    window_bytes = np.bincount(group, weights=length * 4).astype(np.int64)
    head = np.zeros((len(first), 3 + MAX_EXTRA), dtype=np.uint32)
    head[:, 0] = CPU_CHANGE_HEADER
    head[:, 1] = cpu[first].astype(np.uint32)
    head[:, 2] = window_bytes
    # the CPU-change rows go in front of each window's first record
    all_rows = np.insert(words, first, head, axis=0)
    all_len = np.insert(length, first, 3)
    mask = np.arange(3 + MAX_EXTRA)[None, :] < all_len[:, None]
    with open(path, "wb") as f:
        f.write(all_rows[mask].astype("<u4").tobytes())


def _strace_escape_table() -> dict[int, str]:
    """How strace shows each byte inside a quoted string: C escapes, else shortest octal."""
    table = {b: chr(b) for b in range(32, 127)}
    table.update({b: f"\\{b:o}" for b in (*range(0, 32), *range(127, 256))})
    table.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\f"): "\\f", ord("\n"): "\\n",
                  ord("\r"): "\\r", ord("\t"): "\\t", ord("\v"): "\\v"})
    return table


_STRACE_ESCAPES = _strace_escape_table()
_OCTAL_DIGITS = b"01234567"
#: Bytes strace does NOT print in octal (deleting them leaves the ones it does).
_NOT_OCTAL = bytes(b for b in range(256) if not _STRACE_ESCAPES[b][1:].isdigit())


def strace_quote(data: bytes, total: int, max_len: int = 64) -> str:
    """A buffer as ``strace -s max_len`` prints it (C escapes, ``...`` when cut).

    Like strace, an octal escape takes all three digits when an octal digit follows it, so
    ``b"\\x01" b"1"`` reads back unambiguously as ``\\0011``.
    """
    shown = data[:max_len]
    text = shown.decode("latin-1").translate(_STRACE_ESCAPES)
    if shown.translate(None, _NOT_OCTAL):   # octal escapes: redo those before a digit
        parts = []
        for i, b in enumerate(shown):
            esc = _STRACE_ESCAPES[b]
            if (esc[0] == "\\" and esc[1:].isdigit() and i + 1 < len(shown)
                    and shown[i + 1] in _OCTAL_DIGITS):
                esc = f"\\{b:03o}"
            parts.append(esc)
        text = "".join(parts)
    return '"' + text + '"' + ("..." if total > max_len else "")


def write_strace(path: str | os.PathLike[str], pid: int, entry_ns: np.ndarray,
                 duration_ns: np.ndarray, calls: Sequence[str]) -> None:
    """Write ``strace -f -ttt -T -o FILE`` lines: ``PID  SEC.USEC CALL = RET <DUR>``.

    ``calls`` hold each line's text between the timestamp and the duration; ``entry_ns`` is
    the call's entry on the traced machine's clock.
    """
    entry_us = np.asarray(entry_ns, dtype=np.int64) // 1000
    dur_us = np.asarray(duration_ns, dtype=np.int64) // 1000
    prefix = f"{pid:<5d} "
    lines = [f"{prefix}{e // 1_000_000}.{e % 1_000_000:06d} {c} <{d // 1_000_000}."
             f"{d % 1_000_000:06d}>\n"
             for e, d, c in zip(entry_us.tolist(), dur_us.tolist(), calls, strict=True)]
    with open(path, "w", encoding="ascii") as f:
        f.writelines(lines)
