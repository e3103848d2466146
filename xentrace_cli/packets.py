"""The packet table: one row per frame of a capture, read in batches of bounded size.

:func:`iter_packets` streams a capture (pcap, pcapng, gzip-compressed either) as DataFrames with
the columns of ``docs/ARCHITECTURE.md`` ("The packet table"); :func:`read_packets` concatenates
them. Filters: ``host`` and ``port`` are evaluated here on the decoded columns; a Wireshark
display filter (``-Y``) runs real tshark once over the file and keeps the frames it selects, by
frame number (the reader numbers frames as tshark does).

Frames that cannot be decoded (non-IP, unknown link types, truncated headers) stay in the table
with missing IP fields: counted, never dropped. Each frame's interface is described in
``frame.attrs["interfaces"]`` (list of dicts with ``name``, ``linktype``, ``tsresol``, …).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from . import linktypes
from .errors import InputError, OptionError, XenlatWarning

ProgressCallback = Callable[[int, int], None]

#: column name -> dtype of the packet table, in order (ARCHITECTURE.md)
COLUMNS: dict[str, str] = {
    "frame": "int64",
    "ts_ns": "Int64",
    "caplen": "int64",
    "wirelen": "int64",
    "interface": "int32",
    "linktype": "int32",
    "ip_version": "uint8",
    "src": "category",
    "dst": "category",
    "proto": "UInt8",
    "sport": "UInt16",
    "dport": "UInt16",
    "ip_id": "UInt32",
    "frag_offset": "UInt16",
    "tcp_seq": "UInt32",
    "tcp_ack": "UInt32",
    "tcp_flags": "UInt16",
    "payload_len": "Int64",
    "payload_digest": "UInt64",
}

#: rows per table batch: raw chunks are small (cache-friendly decoding), tables larger (pandas
#: has a fixed cost per DataFrame)
TABLE_ROWS = 1 << 16

#: seconds tshark may take for a display filter before xenlat gives up
TSHARK_TIMEOUT_S = 3600


class _AddressBook:
    """Formats each distinct address once per file (the batches reuse the strings)."""

    def __init__(self) -> None:
        self.v4: dict[int, str] = {}
        self.v6: dict[bytes, str] = {}

    def name_v4(self, values: np.ndarray) -> list[str]:
        out = []
        for value in values.tolist():
            text = self.v4.get(value)
            if text is None:
                text = self.v4[value] = socket.inet_ntoa(value.to_bytes(4, "big"))
            out.append(text)
        return out

    def name_v6(self, values: np.ndarray) -> list[str]:
        out = []
        for raw in values:
            key = bytes(raw)
            text = self.v6.get(key)
            if text is None:
                text = self.v6[key] = _format_v6(key)
            out.append(text)
        return out


def _format_v6(packed: bytes) -> str:
    """IPv6 text as tshark prints it (RFC 5952: lowercase, longest zero run as ``::``)."""
    addr = ipaddress.IPv6Address(packed)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{mapped}"
    return addr.compressed


def _addresses(dec: Any, book: _AddressBook) -> tuple[pd.Categorical, pd.Categorical]:
    """src and dst as Categoricals sharing one category list (np.unique over raw bytes)."""
    n = len(dec.ip_version)
    codes = np.full(2 * n, -1, dtype=np.int32)
    categories: list[str] = []
    v4 = np.concatenate([dec.ip_version == 4, (dec.ip_version == 4) & dec.whole_ip])
    if v4.any():
        keys = np.concatenate([dec.src_v4, dec.dst_v4])[v4]
        uniq, inverse = np.unique(keys, return_inverse=True)
        codes[v4] = inverse
        categories += book.name_v4(uniq)
    v6 = np.concatenate([dec.ip_version == 6, (dec.ip_version == 6) & dec.whole_ip])
    if v6.any():
        pairs = np.concatenate([dec.src_v6, dec.dst_v6])[v6]
        raw = np.ascontiguousarray(pairs.astype(">u8")).view("V16").ravel()
        uniq, inverse = np.unique(raw, return_inverse=True)
        codes[v6] = inverse.ravel() + len(categories)
        categories += book.name_v6(uniq)
    cats = pd.Index(categories, dtype=object)
    src = pd.Categorical.from_codes(codes[:n], categories=cats, validate=False)
    dst = pd.Categorical.from_codes(codes[n:], categories=cats, validate=False)
    return src, dst


def _nullable(values: np.ndarray, ok: np.ndarray, dtype: str) -> pd.api.extensions.ExtensionArray:
    """A pandas nullable integer array from values and a validity mask (no copy of values)."""
    np_dtype = np.dtype(dtype.lower())
    return pd.arrays.IntegerArray(values.astype(np_dtype, copy=False), ~ok)


#: raw-batch columns carried into the table
_RAW_FIELDS = ("frame", "ts_ns", "ts_valid", "caplen", "wirelen", "interface", "linktype")


def _merge(parts: list[tuple[Any, Any]]) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Concatenate the columns of several (raw batch, decoded) pairs."""
    import dataclasses

    if len(parts) == 1:
        return parts[0]  # type: ignore[return-value]
    raw = SimpleNamespace(**{f: np.concatenate([getattr(r, f) for r, _ in parts])
                             for f in _RAW_FIELDS})
    dec = SimpleNamespace(**{f.name: np.concatenate([getattr(d, f.name) for _, d in parts])
                             for f in dataclasses.fields(parts[0][1])
                             if f.name != "undecoded_linktypes"
                             and getattr(parts[0][1], f.name) is not None})
    return raw, dec


def _frame(raw: Any, dec: Any, book: _AddressBook) -> pd.DataFrame:
    """One batch of the packet table."""
    src, dst = _addresses(dec, book)
    ipv = dec.whole_ip
    data = {
        "frame": raw.frame,
        "ts_ns": _nullable(raw.ts_ns, raw.ts_valid, "Int64"),
        "caplen": raw.caplen,
        "wirelen": raw.wirelen,
        "interface": raw.interface,
        "linktype": raw.linktype,
        "ip_version": dec.ip_version,
        "src": src,
        "dst": dst,
        "proto": _nullable(dec.proto, ipv, "UInt8"),
        "sport": _nullable(dec.sport, dec.ports_ok, "UInt16"),
        "dport": _nullable(dec.dport, dec.ports_ok, "UInt16"),
        "ip_id": _nullable(dec.ip_id, dec.ip_id_ok, "UInt32"),
        "frag_offset": _nullable(dec.frag_offset, ipv, "UInt16"),
        "tcp_seq": _nullable(dec.tcp_seq, dec.tcp_seq_ok, "UInt32"),
        "tcp_ack": _nullable(dec.tcp_ack, dec.tcp_ok, "UInt32"),
        "tcp_flags": _nullable(dec.tcp_flags, dec.tcp_ok, "UInt16"),
        "payload_len": _nullable(dec.payload_len, dec.payload_ok, "Int64"),
        "payload_digest": _nullable(dec.payload_digest, dec.digest_ok, "UInt64"),
    }
    if getattr(dec, "payload_head", None) is not None:
        data["payload_head"] = _fixed_bytes(dec.payload_head, dec.head_len > 0)
    if getattr(dec, "tcp_window", None) is not None:
        data["tcp_window"] = _nullable(dec.tcp_window, dec.tcp_window_ok, "UInt16")
        data["tcp_wscale"] = _nullable(dec.tcp_wscale, dec.tcp_wscale >= 0, "Int8")
    return pd.DataFrame(data, copy=False)


def _fixed_bytes(head: np.ndarray, ok: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """An (n, N) uint8 array as a fixed-width binary column (Arrow ``binary(N)``, one buffer,
    no Python object per row); NA where ``ok`` is False."""
    import pyarrow as pa

    n, width = head.shape
    valid = pa.array(ok, type=pa.bool_()).buffers()[1] if not ok.all() else None
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [valid, pa.py_buffer(np.ascontiguousarray(head))],
        null_count=int((~ok).sum()))
    return pd.arrays.ArrowExtensionArray(array)


def head_bytes(column: pd.Series) -> np.ndarray:
    """A ``payload_head`` column back as an (n, N) uint8 array (zeros where NA)."""
    import pyarrow as pa

    array = pa.chunked_array(pa.array(column.array)).combine_chunks() \
        if not isinstance(column.array, pd.arrays.ArrowExtensionArray) \
        else column.array._pa_array.combine_chunks()
    width = array.type.byte_width
    if len(array) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    data = np.frombuffer(array.buffers()[1], dtype=np.uint8,
                         count=(array.offset + len(array)) * width)[array.offset * width:]
    out = data.reshape(len(array), width).copy()
    if array.null_count:
        out[~np.asarray(array.is_valid())] = 0
    return out


def empty_table() -> pd.DataFrame:
    """The packet table with no rows (right columns and dtypes)."""
    frame = pd.DataFrame({name: pd.Series([], dtype=dtype if dtype != "category" else object)
                          for name, dtype in COLUMNS.items()})
    for name in ("src", "dst"):
        frame[name] = frame[name].astype("category")
    return frame


def _host_filter(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host)) if ":" not in host else _format_v6(
            ipaddress.IPv6Address(host).packed)
    except ValueError:
        raise OptionError(f"--host: {host!r} is not an IPv4 or IPv6 address") from None


def tshark_frames(path: str | os.PathLike[str], display_filter: str) -> np.ndarray:
    """Frame numbers (sorted int64) tshark selects with a display filter."""
    exe = shutil.which("tshark")
    if exe is None:
        raise InputError(path, "-Y needs tshark, which is not installed "
                         "(apt-get install tshark)")
    cmd = [exe, "-n", "-r", os.fspath(path), "-Y", display_filter, "-T", "fields",
           "-e", "frame.number"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=TSHARK_TIMEOUT_S, check=False,
                              env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired:
        raise InputError(path, f"tshark did not finish within {TSHARK_TIMEOUT_S} s") from None
    lines = [line.strip() for line in proc.stderr.decode("utf-8", "replace").splitlines()
             if line.strip() and "Running as user" not in line]
    # tshark exits 2 both for a filter it rejects and for a damaged file; a damaged file is
    # named in the message, and the reader reports the damage itself
    if proc.returncode != 0 and not any(f'The file "{os.fspath(path)}"' in line
                                        for line in lines):
        problem = lines[0] if lines else f"tshark exited with status {proc.returncode}"
        raise OptionError(f"-Y {display_filter!r}: {problem}")
    text = proc.stdout.split()
    return np.array(text, dtype=np.int64) if text else np.zeros(0, dtype=np.int64)


def iter_packets(path: str | os.PathLike[str], *, display_filter: str | None = None,
                 host: str | None = None, port: int | None = None,
                 on_progress: ProgressCallback | None = None,
                 interfaces_out: list[dict[str, Any]] | None = None,
                 prefetch: bool = True, payload_head: int = 0,
                 tcp_window: bool = False) -> Iterator[pd.DataFrame]:
    """Batches of the packet table of a capture, in file order.

    Opt-in columns, absent unless asked for (the default table pays nothing for them):
    ``payload_head=N`` adds ``payload_head``, the first N captured payload bytes of each frame
    as a fixed-width binary column (zero-padded; NA without payload); ``tcp_window`` adds
    ``tcp_window`` (raw advertised window, UInt16) and ``tcp_wscale`` (the window-scale shift
    a SYN announced, Int8, NA elsewhere).

    ``interfaces_out``, when given, is filled with the capture's interfaces (as dicts) once they
    are known. Warnings: ``TruncatedInput`` for a cut-short or corrupt capture (whole packets
    kept), ``XenlatWarning`` for link types that are not decoded (with their frame counts).
    With ``prefetch`` the file is read and decoded one batch ahead in a worker thread, so that
    reading overlaps with whatever the caller does with the previous batch (writing CSV);
    warnings and errors are still raised here, in the caller's thread.
    """
    from .readers.capture import open_capture

    host_text = _host_filter(host) if host is not None else None
    if port is not None and not 0 <= port <= 0xFFFF:
        raise OptionError(f"--port: {port} is not a TCP/UDP port")
    reader = open_capture(path)
    with reader:
        selected = tshark_frames(path, display_filter) if display_filter else None
        pending: list[Warning] = []
        extras = {"payload_head": int(payload_head), "tcp_window": bool(tcp_window)}
        tables = _tables(reader, selected, host_text, port, on_progress, interfaces_out,
                         pending, extras)
        yield from (_prefetched(tables) if prefetch else tables)
    for warning in pending:
        warnings.warn(warning, stacklevel=2)


#: Columns that together tell a frame apart from another frame (a frame equal to an earlier
#: one in all of them is a duplicate: same time, length, interface, headers and payload).
DUPLICATE_KEY = ("ts_ns", "caplen", "wirelen", "interface", "src", "dst", "proto", "sport",
                 "dport", "ip_id", "tcp_seq", "tcp_ack", "tcp_flags", "payload_len",
                 "payload_digest")
#: Rows of the previous batch a duplicate is looked for in (besides its own batch).
DUPLICATE_CARRY = 4096


class _Suspicion:
    """Readable but suspicious: timestamps that go backwards in file order, and frames that
    duplicate an earlier one (within a batch and the previous batch's last rows: bounded)."""

    def __init__(self) -> None:
        self.backwards = 0
        self.back_ns = 0           #: largest step back
        self.first_back: int | None = None
        self.prev_ns: int | None = None
        self.duplicates = 0
        self.first_dup: int | None = None
        self.carry = np.zeros(0, np.uint64)

    def observe(self, table: pd.DataFrame) -> None:
        """One batch of the unfiltered packet table, in file order."""
        timed = table["ts_ns"].notna().to_numpy()
        ts = table["ts_ns"].to_numpy(np.int64, na_value=0)[timed]
        if len(ts):
            prev = np.concatenate(([ts[0] if self.prev_ns is None else self.prev_ns], ts[:-1]))
            back = prev - ts
            hit = back > 0
            if hit.any():
                self.backwards += int(hit.sum())
                self.back_ns = max(self.back_ns, int(back.max()))
                if self.first_back is None:
                    self.first_back = int(table["frame"].to_numpy()[timed][np.argmax(hit)])
            self.prev_ns = int(ts[-1])
        keyed = table.loc[timed, list(DUPLICATE_KEY)]
        hashes = pd.util.hash_pandas_object(keyed, index=False).to_numpy(np.uint64)
        dup = pd.Series(hashes).duplicated().to_numpy() | np.isin(hashes, self.carry)
        if dup.any():
            self.duplicates += int(dup.sum())
            if self.first_dup is None:
                self.first_dup = int(table["frame"].to_numpy()[timed][np.argmax(dup)])
        self.carry = hashes[-DUPLICATE_CARRY:]

    def warnings(self, path: str | os.PathLike[str]) -> list[Warning]:
        out: list[Warning] = []
        if self.backwards:
            sec, ns = divmod(self.back_ns, 10**9)
            out.append(XenlatWarning(
                f"{path}: packet {self.first_back}: timestamps go backwards {self.backwards} "
                f"time{'s' if self.backwards > 1 else ''} in file order (largest step back "
                f"{sec}.{ns:09d} s): merged or re-timed capture? latencies across those steps "
                "are suspect"))
        if self.duplicates:
            out.append(XenlatWarning(
                f"{path}: packet {self.first_dup}: {self.duplicates} "
                f"{'frames duplicate' if self.duplicates > 1 else 'frame duplicates'} an "
                "earlier frame (same time, length and headers): a capture taken twice or "
                "replayed? each copy is matched as a packet of its own"))
        return out


def _tables(reader: Any, selected: np.ndarray | None, host_text: str | None,
            port: int | None, on_progress: ProgressCallback | None,
            interfaces_out: list[dict[str, Any]] | None,
            pending: list[Warning], extras: dict[str, Any] | None = None
            ) -> Iterator[pd.DataFrame]:
    """Decode and filter the reader's batches; warnings go to ``pending`` (not emitted)."""
    from .decode import decode

    book = _AddressBook()
    suspicion = _Suspicion()
    undecoded: dict[int, int] = {}
    parts: list[tuple[Any, Any]] = []
    rows = 0
    yielded = False
    batches = reader.batches()
    while True:
        raw = next(batches, None)
        if raw is not None:
            dec = decode(raw.buf, raw.data_off, raw.caplen, raw.wirelen, raw.linktype,
                         **(extras or {}))
            for t, count in dec.undecoded_linktypes.items():
                undecoded[t] = undecoded.get(t, 0) + count
            parts.append((raw, dec))
            rows += len(raw)
            if rows < TABLE_ROWS:
                continue
        if not parts:
            break
        merged_raw, merged_dec = _merge(parts)
        parts, rows = [], 0
        table = _frame(merged_raw, merged_dec, book)
        suspicion.observe(table)
        keep = None
        if selected is not None:
            keep = np.isin(merged_raw.frame, selected, assume_unique=True)
        for a, b, value in (("src", "dst", host_text), ("sport", "dport", port)):
            if value is not None:  # --host / --port: either end of the packet
                hit = ((table[a] == value) | (table[b] == value)).to_numpy(
                    dtype=bool, na_value=False)
                keep = hit if keep is None else keep & hit
        if keep is not None:
            table = table[keep].reset_index(drop=True)
        if interfaces_out is not None and len(interfaces_out) != len(reader.interfaces):
            interfaces_out[:] = [i.to_dict() for i in reader.interfaces]
        if on_progress is not None:
            on_progress(reader.position, reader.file_bytes)
        if len(table):
            yielded = True
            yield table
        if raw is None:
            break
    if not yielded:  # the header (and schema) of an empty table still goes out
        yield empty_table()
    if interfaces_out is not None and len(interfaces_out) != len(reader.interfaces):
        interfaces_out[:] = [i.to_dict() for i in reader.interfaces]
    if on_progress is not None:
        on_progress(reader.file_bytes, reader.file_bytes)
    path = reader.path
    for t, count in sorted(undecoded.items()):
        pending.append(XenlatWarning(
            f"{path}: {count} frames of link type {t} ({linktypes.name(t)}) are not "
            "decoded (kept without IP fields)"))
    if reader.bad_timestamps:
        pending.append(XenlatWarning(
            f"{path}: {reader.bad_timestamps} timestamps beyond the int64 nanosecond range "
            "(year 2262) were left empty"))
    damage = reader.damage_warning()
    if damage is not None:
        pending.append(damage)
    pending.extend(suspicion.warnings(path))


#: batches decoded ahead of the consumer
PREFETCH_BATCHES = 2


def _prefetched(items: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Run ``items`` in a worker thread, one or two batches ahead; re-raise its errors here."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(("error", exc))

    worker = threading.Thread(target=work, name="xenlat-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        stop.set()
        worker.join()


def read_packets(path: str | os.PathLike[str], **options: Any) -> pd.DataFrame:
    """The whole packet table of a capture (see :func:`iter_packets` for the options).

    ``attrs["interfaces"]`` lists the capture's interfaces (pcapng ``if_name`` such as
    ``vif5.0``, link type, resolution); ``attrs["path"]`` the file.
    """
    interfaces: list[dict[str, Any]] = []
    parts = list(iter_packets(path, interfaces_out=interfaces, **options))  # never empty
    if len(parts) == 1:
        table = parts[0]
    else:
        from pandas.api.types import union_categoricals

        src = union_categoricals([p["src"] for p in parts])
        dst = union_categoricals([p["dst"] for p in parts])
        table = pd.concat([p.drop(columns=["src", "dst"]) for p in parts], ignore_index=True)
        table.insert(list(COLUMNS).index("src"), "src", src)
        table.insert(list(COLUMNS).index("dst"), "dst", dst)
    table.attrs["interfaces"] = interfaces
    table.attrs["path"] = str(Path(path))
    return table
