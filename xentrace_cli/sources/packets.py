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

import contextlib
import os
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import linktypes
from ..errors import InputError, OptionError, XenlatWarning, carried, warn
from ..groups import sorted_codes, unique_rows
from .containers import open_capture
from .decode import decode

if TYPE_CHECKING:
    import pandas as pd

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

#: the columns of few distinct values, the only ones Parquet dictionary-encodes (``xenlat
#: packets --format parquet``): a dictionary tried on times, sequence numbers, ids or digests
#: was half of the writer's CPU on a million packets, for a larger file
DICTIONARY_COLUMNS = ("caplen", "wirelen", "interface", "linktype", "ip_version", "src", "dst",
                      "proto", "sport", "dport", "frag_offset", "tcp_flags", "payload_len")

#: rows per table batch: raw chunks are small (cache-friendly decoding), tables larger (pandas
#: has a fixed cost per DataFrame)
TABLE_ROWS = 1 << 16

#: seconds tshark may take for a display filter before xenlat gives up
TSHARK_TIMEOUT_S = 3600


#: most distinct IPv4 addresses of a batch ranked by comparisons (:meth:`_AddressBook.v4_codes`)
FEW_ADDRESSES = 8


class _AddressBook:
    """Formats each distinct address once per file (the batches reuse the strings)."""

    def __init__(self) -> None:
        self.v4: dict[int, str] = {}
        self.v6: dict[bytes, str] = {}
        self.ids: dict[str, int] = {}
        #: the distinct IPv4 addresses (uint32, ascending) of the last batch that coded some
        self.last_v4 = np.zeros(0, dtype=np.uint32)

    def stable_ids(self, addresses: list[str]) -> np.ndarray:
        """An integer per address text, the same in every batch of the file (a batch's codes
        index its own list), and -1 last for "no address"."""
        ids = self.ids
        out = [ids.setdefault(text, len(ids)) for text in addresses]
        return np.array([*out, -1], dtype=np.int64)

    def v4_codes(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:func:`~xentrace_cli.groups.sorted_codes` of IPv4 addresses: each key's rank among
        the distinct ones, and those (ascending). A capture's batches hold the same few
        addresses: when the last batch's (up to :data:`FEW_ADDRESSES`) hold every key, a
        comparison per address ranks them (a tenth of the hashing's time)."""
        known = self.last_v4
        if 0 < len(known) <= FEW_ADDRESSES and len(keys):
            rank = np.zeros(len(keys), dtype=np.intp)
            for value in known[1:]:
                rank += keys >= value
            if np.array_equal(known[rank], keys):
                present = np.bincount(rank, minlength=len(known)) > 0
                if present.all():
                    return rank, known
                return (np.cumsum(present) - 1)[rank], known[present]
        inverse, uniq = sorted_codes(keys)
        self.last_v4 = uniq
        return inverse, uniq

    def name_v4(self, values: np.ndarray) -> list[str]:
        out = []
        for value in values.tolist():
            text = self.v4.get(value)
            if text is None:
                text = self.v4[value] = (f"{value >> 24}.{(value >> 16) & 255}."
                                         f"{(value >> 8) & 255}.{value & 255}")
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
    import ipaddress  # here, as subprocess below: ~10 ms of start-up a small IPv4 file skips

    addr = ipaddress.IPv6Address(packed)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        return f"::ffff:{mapped}"
    return addr.compressed


def _addresses(dec: Any, book: _AddressBook) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """src and dst as int32 codes (-1: none) into one list of address texts (the distinct raw
    values in ascending order: each distinct address is formatted once)."""
    n = len(dec.ip_version)
    codes = np.full(2 * n, -1, dtype=np.int32)
    categories: list[str] = []
    is4 = dec.ip_version == 4
    v4 = np.concatenate([is4, is4 & dec.whole_ip])
    if v4.all():  # the usual batch: no gathers, no scatter
        inverse, uniq = book.v4_codes(np.concatenate([dec.src_v4, dec.dst_v4]))
        codes[:] = inverse
        categories += book.name_v4(uniq)
    elif v4.any():
        inverse, uniq = book.v4_codes(np.concatenate([dec.src_v4, dec.dst_v4])[v4])
        codes[v4] = inverse
        categories += book.name_v4(uniq)
    v6 = np.concatenate([dec.ip_version == 6, (dec.ip_version == 6) & dec.whole_ip])
    if v6.any():
        pairs = np.concatenate([dec.src_v6, dec.dst_v6])[v6]
        uniq, inverse = unique_rows(pairs)
        codes[v6] = inverse + len(categories)
        raw = np.ascontiguousarray(uniq.astype(">u8")).view("V16").ravel()
        categories += book.name_v6(raw)
    return codes[:n], codes[n:], categories


#: raw-batch columns carried into the table
_RAW_FIELDS = ("frame", "ts_ns", "ts_valid", "caplen", "wirelen", "interface", "linktype")


def _merge(parts: list[tuple[Any, Any]], table: _Table | None = None
           ) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Concatenate the columns of several (raw batch, decoded) pairs; with ``table``, the
    columns the packet table keeps straight into its arrays (views of them come back)."""
    import dataclasses

    if len(parts) == 1 and table is None:
        return parts[0]  # type: ignore[return-value]
    if table is not None:
        table.reserve(sum(len(r.frame) for r, _ in parts), parts[-1][0].end_offset)
    raw = SimpleNamespace(**{f: _joined([getattr(r, f) for r, _ in parts], False, table, f)
                             for f in _RAW_FIELDS})
    v6 = any((d.ip_version == 6).any() for _, d in parts)
    dec = SimpleNamespace(**{f.name: _joined([getattr(d, f.name) for _, d in parts],
                                             f.name in _V6_FIELDS and not v6, table, f.name)
                             for f in dataclasses.fields(parts[0][1])
                             if f.name != "undecoded_linktypes"
                             and getattr(parts[0][1], f.name) is not None})
    if table is not None:
        table.advance(len(raw.frame))
    return raw, dec


#: the decoded IPv6 address columns: (n, 2) uint64, read only where ``ip_version`` is 6
_V6_FIELDS = ("src_v6", "dst_v6")


def _joined(arrays: list[np.ndarray], unread: bool, table: _Table | None = None,
            name: str = "") -> np.ndarray:
    """The arrays end to end (in ``table``'s array ``name`` when it keeps that column); zeros
    of their shape when ``unread`` (a group without IPv6: its IPv6 address columns are never
    read, so 32 bytes a row are not copied)."""
    if unread:
        return np.zeros((sum(len(a) for a in arrays), *arrays[0].shape[1:]),
                        dtype=arrays[0].dtype)
    if table is not None and name not in _NOT_KEPT:
        if table.keeps(name):
            return table.place(name, arrays)
        if len(arrays) == 1:  # not kept past the group: the batch's own array will do
            return arrays[0]
    return np.concatenate(arrays)


#: the raw and decoded validity masks, by the table's columns they say where a value is
_MASK_COLUMNS = {"ts_valid": ("ts_ns",), "whole_ip": ("proto", "frag_offset"),
                 "ports_ok": ("sport", "dport"), "ip_id_ok": ("ip_id",),
                 "tcp_seq_ok": ("tcp_seq",), "tcp_ok": ("tcp_ack", "tcp_flags"),
                 "payload_ok": ("payload_len",), "digest_ok": ("payload_digest",)}


def _kept(name: str, only: frozenset[str]) -> bool:
    """Whether a raw or decoded column is needed by the table's columns ``only`` (a mask by
    any column it serves; the opt-in columns always: they were asked for)."""
    if name in _MASK_COLUMNS:
        return any(column in only for column in _MASK_COLUMNS[name])
    return name not in COLUMNS or name in only


#: decoded columns the packet table does not keep (the addresses become codes, the head's
#: length a validity mask)
_NOT_KEPT = (*_V6_FIELDS, "src_v4", "dst_v4", "head_len")


class _Table:
    """The whole packet table's arrays, filled group by group (:func:`read_packet_columns`):
    each group's columns are merged straight into them, so that the groups' columns are views
    of consecutive rows and :meth:`PacketColumns.concat` takes them whole, without a second
    copy (nor the page faults of fresh memory for it: a tenth of the read's time).

    The rows are reserved for the file's size at the first group's density (a gzip file's, or
    a denser rest's, grows them: new arrays, and the groups before stay where they were, for
    ``concat`` to copy as it would have); rows never written are memory never touched.
    """

    #: rows reserved beyond the estimate
    SPARE = 1.05

    def __init__(self, only: frozenset[str] | None = None) -> None:
        self.file_bytes = 0  #: the capture's size on disk (set once it is open)
        #: the columns the table keeps (None: all); the others are the groups' own arrays,
        #: read by the checks of each group and dropped with it
        self.only = only
        self.arrays: dict[str, np.ndarray] = {}
        self.rows = 0       #: rows filled
        self.capacity = 0
        self._span = (0, 0)  #: the rows of the group being placed

    def reserve(self, n: int, end_offset: int) -> None:
        """Room for the next ``n`` rows (the group ends at file offset ``end_offset``)."""
        need = self.rows + n
        if need > self.capacity:
            estimate = int(need * self.file_bytes / max(end_offset, 1) * self.SPARE)
            self.capacity = max(estimate, 2 * self.capacity, need) + TABLE_ROWS
            self.arrays = {}  # new arrays: the rows placed so far stay in the old ones
        self._span = (self.rows, need)

    def keeps(self, name: str) -> bool:
        """Whether the column ``name`` (of the raw or decoded columns) is kept: the validity
        masks go with their column (``ts_valid``: ``ts_ns``; ``whole_ip``: ``proto``, ...)."""
        return self.only is None or _kept(name, self.only)

    def place(self, name: str, arrays: list[np.ndarray]) -> np.ndarray:
        """The arrays end to end, in the group's rows of the column ``name``."""
        first = arrays[0]
        out = self.arrays.get(name)
        if out is None:
            out = self.arrays[name] = np.empty((self.capacity, *first.shape[1:]),
                                               dtype=first.dtype)
        lo, hi = self._span
        rows = out[lo:hi]
        if len(arrays) == 1:
            rows[...] = first
        else:
            np.concatenate(arrays, out=rows)
        return rows

    def advance(self, n: int) -> None:
        self.rows += n


def _adjacent(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The one array the ``arrays`` are consecutive rows of (views of one base, each starting
    where the one before ends), as a view; None when they are not."""
    base = arrays[0].base
    if base is None or not all(a.base is base and a.flags.c_contiguous for a in arrays):
        return None
    start = arrays[0].__array_interface__["data"][0]
    at = start
    for a in arrays:
        if a.__array_interface__["data"][0] != at:
            return None
        at += a.nbytes
    origin = base.__array_interface__["data"][0]
    row = arrays[0].strides[0] if arrays[0].ndim else 1
    if not (isinstance(base, np.ndarray) and base.flags.c_contiguous and base.ndim
            and base.strides[0] == row and (start - origin) % row == 0):
        return None
    lo = (start - origin) // row
    return base[lo:lo + sum(len(a) for a in arrays)]


def _concatenated(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays end to end: a view when they are consecutive rows of one array already."""
    whole = _adjacent(arrays) if len(arrays) > 1 else None
    return whole if whole is not None else np.concatenate(arrays)


class PacketColumns:
    """One batch of the packet table as numpy arrays, before any DataFrame or Arrow table.

    ``values`` holds every column of :data:`COLUMNS` but ``src``/``dst`` in its numpy dtype
    (the nullable ones too: their missing cells hold 0), ``valid`` says where each nullable
    column has a value, and ``src``/``dst`` are int32 codes into ``addresses`` (-1: none).
    :meth:`to_pandas` and :meth:`to_arrow` build the two forms the outputs need, so that
    ``xenlat packets`` writes CSV and Parquet without pandas.
    """

    def __init__(self, values: dict[str, np.ndarray], valid: dict[str, np.ndarray],
                 src: np.ndarray, dst: np.ndarray, addresses: list[str],
                 extra: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.values = values
        self.valid = valid
        self.src = src
        self.dst = dst
        self.addresses = addresses
        #: the opt-in columns asked for (``payload_head``, ``tcp_window``, ``tcp_wscale``):
        #: values and where they are valid, after the columns of :data:`COLUMNS`
        self.extra = extra or {}
        #: as a DataFrame's ``attrs`` (:func:`read_packet_columns`: interfaces, path)
        self.attrs: dict[str, Any] = {}
        #: columns of :data:`COLUMNS` that ``read_packet_columns(only=...)`` left out: a step
        #: asking for one is told so (``KeyError``), never given empty values
        self.left_out: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.src)

    @classmethod
    def empty(cls) -> PacketColumns:
        """No rows, every column of its dtype."""
        values = {name: np.zeros(0, dtype=_NUMPY_DTYPE[name]) for name in COLUMNS
                  if name not in ("src", "dst")}
        valid = {name: np.zeros(0, dtype=bool) for name in _NULLABLE}
        none = np.zeros(0, dtype=np.int32)
        return cls(values, valid, none, none, [])

    @classmethod
    def concat(cls, parts: list[PacketColumns]) -> PacketColumns:
        """The batches end to end, their addresses as one list in the order
        ``union_categoricals`` gives (each batch's new ones after the earlier ones')."""
        if len(parts) == 1:
            return parts[0]
        index: dict[str, int] = {}
        src, dst = [], []
        for part in parts:  # a code of -1 (no address) takes the -1 appended last
            recode = np.array([*(index.setdefault(a, len(index)) for a in part.addresses), -1],
                              dtype=np.int32)
            src.append(recode[part.src])
            dst.append(recode[part.dst])
        first = parts[0]
        return cls({k: _concatenated([p.values[k] for p in parts]) for k in first.values},
                   {k: _concatenated([p.valid[k] for p in parts]) for k in first.valid},
                   np.concatenate(src), np.concatenate(dst), list(index),
                   {k: (_concatenated([p.extra[k][0] for p in parts]),
                        _concatenated([p.extra[k][1] for p in parts])) for k in first.extra})

    def select(self, only: frozenset[str]) -> PacketColumns:
        """The columns ``only`` of :data:`COLUMNS` (``src``/``dst`` always, and the opt-in
        columns), the others left out."""
        out = PacketColumns({k: v for k, v in self.values.items() if k in only},
                            {k: v for k, v in self.valid.items() if k in only},
                            self.src, self.dst, self.addresses, self.extra)
        out.attrs = self.attrs
        return out

    def take(self, keep: np.ndarray) -> PacketColumns:
        """The rows where the boolean mask ``keep`` is True."""
        return PacketColumns({k: v[keep] for k, v in self.values.items()},
                             {k: v[keep] for k, v in self.valid.items()},
                             self.src[keep], self.dst[keep], self.addresses,
                             {k: (v[keep], ok[keep]) for k, (v, ok) in self.extra.items()})

    def address_mask(self, text: str) -> np.ndarray:
        """Rows whose source or destination is the address ``text`` (as tshark prints it)."""
        if text not in self.addresses:
            return np.zeros(len(self), dtype=bool)
        code = self.addresses.index(text)
        return (self.src == code) | (self.dst == code)

    def port_mask(self, port: int) -> np.ndarray:
        """Rows whose TCP/UDP source or destination port is ``port``."""
        ok = self.valid["sport"]
        return ok & ((self.values["sport"] == port) | (self.values["dport"] == port))

    def to_pandas(self, only: Iterable[str] | None = None) -> pd.DataFrame:
        """The batch as a DataFrame of the packet table (nullable dtypes, categories); with
        ``only``, those of its columns alone, in that order (no opt-in columns)."""
        import pandas as pd

        cats = pd.Index(self.addresses, dtype=object)
        data: dict[str, Any] = {}
        for name in COLUMNS if only is None else only:
            if name in ("src", "dst"):
                data[name] = pd.Categorical.from_codes(getattr(self, name), categories=cats,
                                                       validate=False)
            elif name in self.valid:  # no copy of the values: the mask says what is missing
                data[name] = pd.arrays.IntegerArray(self.values[name], ~self.valid[name])
            else:
                data[name] = self.values[name]
        for name, (values, ok) in (self.extra if only is None else {}).items():
            if name == "payload_head":
                data[name] = _fixed_bytes(values, ok)
            else:
                data[name] = pd.arrays.IntegerArray(values, ~ok)
        return pd.DataFrame(data, copy=False)

    def to_arrow(self) -> Any:
        """The batch as a pyarrow Table with the schema (and pandas metadata) that
        ``pyarrow.Table.from_pandas(self.to_pandas())`` gives, dictionary indices int32.

        Built from the numpy buffers (``pyarrow.array`` would import pandas to inspect its
        argument): no copy of the values, a validity bitmap per nullable column.
        """
        import pyarrow as pa

        if self.extra:  # opt-in columns: the general conversion (never on `xenlat packets`)
            return _with_int32_indices(pa.Table.from_pandas(self.to_pandas(),
                                                            preserve_index=False))
        text = [a.encode() for a in self.addresses]
        ends = np.cumsum([len(t) for t in text], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, dtype=np.int32), ends.astype(np.int32)])
        dictionary = pa.Array.from_buffers(pa.string(), len(text), [
            None, pa.py_buffer(offsets), pa.py_buffer(b"".join(text))])
        arrays = []
        for name in COLUMNS:
            if name in ("src", "dst"):
                codes = np.ascontiguousarray(getattr(self, name), dtype=np.int32)
                indices = _arrow_array(pa, codes, codes >= 0)
                arrays.append(pa.DictionaryArray.from_arrays(indices, dictionary))
            else:
                arrays.append(_arrow_array(pa, self.values[name], self.valid.get(name)))
        table = pa.Table.from_arrays(arrays, names=list(COLUMNS))
        return table.replace_schema_metadata({"pandas": _pandas_metadata(len(self.addresses))})


def _with_int32_indices(table: Any) -> Any:
    """Dictionary columns with int32 indices (pandas picks int8/int16 by the categories)."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type) and field.type.index_type != pa.int32():
            wide = pa.dictionary(pa.int32(), field.type.value_type, field.type.ordered)
            table = table.set_column(i, field.name, table.column(i).cast(wide))
    return table


def _fixed_bytes(head: np.ndarray, ok: np.ndarray) -> Any:
    """An (n, N) uint8 array as a fixed-width binary column (Arrow ``binary(N)``, one buffer,
    no Python object per row); NA where ``ok`` is False."""
    import pandas as pd
    import pyarrow as pa

    n, width = head.shape
    valid = pa.array(ok, type=pa.bool_()).buffers()[1] if not ok.all() else None
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [valid, pa.py_buffer(np.ascontiguousarray(head))],
        null_count=int((~ok).sum()))
    return pd.arrays.ArrowExtensionArray(array)


def head_bytes(column: pd.Series) -> np.ndarray:
    """A ``payload_head`` column back as an (n, N) uint8 array (zeros where NA)."""
    import pandas as pd
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


def _arrow_array(pa: Any, values: np.ndarray, valid: np.ndarray | None) -> Any:
    """A pyarrow array over a numpy array's buffer, null where ``valid`` is False."""
    values = np.ascontiguousarray(values)
    nulls = 0 if valid is None else len(valid) - int(np.count_nonzero(valid))
    bitmap = None if valid is None or not nulls else pa.py_buffer(
        np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [bitmap, pa.py_buffer(values)], null_count=nulls)


#: numpy dtype of each column's values (nullable columns: the dtype of their values)
_NUMPY_DTYPE = {name: np.dtype(dtype.lower()) for name, dtype in COLUMNS.items()
                if dtype != "category"}
#: the columns with missing values (pandas nullable dtypes)
_NULLABLE = tuple(name for name, dtype in COLUMNS.items() if dtype[0].isupper())


def _pandas_metadata(categories: int) -> bytes:
    """The ``pandas`` schema metadata pyarrow writes for the packet table: read back with
    pandas, the nullable integers and the categories come back as they were."""
    import json

    import pyarrow as pa

    # pandas stores category codes in the smallest signed integer that holds them
    codes = "int8" if categories < 2**7 else "int16" if categories < 2**15 else "int32"
    columns = []
    for name, dtype in COLUMNS.items():
        if dtype == "category":
            entry: dict[str, Any] = {"pandas_type": "categorical", "numpy_type": codes,
                     "metadata": {"num_categories": categories, "ordered": False}}
        else:
            entry = {"pandas_type": dtype.lower(), "numpy_type": dtype, "metadata": None}
        columns.append({"name": name, "field_name": name, **entry})
    document = {"index_columns": [], "column_indexes": [], "columns": columns,
                "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
                "pandas_version": _pandas_version()}
    return json.dumps(document).encode()


def _pandas_version() -> str:
    """The installed pandas' version, from its ``dist-info`` directory name beside it (neither
    importing pandas nor ``importlib.metadata``, which cost more than reading a small file)."""
    import importlib.util

    spec = importlib.util.find_spec("pandas")
    if spec is not None and spec.origin is not None:
        site = Path(spec.origin).parent.parent
        with os.scandir(site) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("pandas-") and name.endswith(".dist-info"):
                    return name[len("pandas-"):-len(".dist-info")]
    from importlib.metadata import version

    return version("pandas")


def _columns(raw: Any, dec: Any, book: _AddressBook) -> PacketColumns:
    """One batch of the packet table from a (merged) raw batch and its decoded columns."""
    src, dst, addresses = _addresses(dec, book)
    ipv = dec.whole_ip
    values = {
        "frame": raw.frame, "ts_ns": raw.ts_ns, "caplen": raw.caplen, "wirelen": raw.wirelen,
        "interface": raw.interface, "linktype": raw.linktype, "ip_version": dec.ip_version,
        "proto": dec.proto, "sport": dec.sport, "dport": dec.dport, "ip_id": dec.ip_id,
        "frag_offset": dec.frag_offset, "tcp_seq": dec.tcp_seq, "tcp_ack": dec.tcp_ack,
        "tcp_flags": dec.tcp_flags, "payload_len": dec.payload_len,
        "payload_digest": dec.payload_digest,
    }
    values = {k: v.astype(_NUMPY_DTYPE[k], copy=False) for k, v in values.items()}
    valid = {
        "ts_ns": raw.ts_valid, "proto": ipv, "sport": dec.ports_ok, "dport": dec.ports_ok,
        "ip_id": dec.ip_id_ok, "frag_offset": ipv, "tcp_seq": dec.tcp_seq_ok,
        "tcp_ack": dec.tcp_ok, "tcp_flags": dec.tcp_ok, "payload_len": dec.payload_ok,
        "payload_digest": dec.digest_ok,
    }
    extra = {}
    if getattr(dec, "payload_head", None) is not None:
        extra["payload_head"] = (dec.payload_head, dec.head_len > 0)
    if getattr(dec, "tcp_window", None) is not None:
        extra["tcp_window"] = (dec.tcp_window.astype(np.uint16, copy=False), dec.tcp_window_ok)
        extra["tcp_wscale"] = (dec.tcp_wscale.astype(np.int8, copy=False), dec.tcp_wscale >= 0)
    return PacketColumns(values, valid, src, dst, addresses, extra)


def empty_table() -> pd.DataFrame:
    """The packet table with no rows (right columns and dtypes)."""
    import pandas as pd

    frame = pd.DataFrame({name: pd.Series([], dtype=dtype if dtype != "category" else object)
                          for name, dtype in COLUMNS.items()})
    for name in ("src", "dst"):
        frame[name] = frame[name].astype("category")
    return frame


def _host_filter(host: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(host)) if ":" not in host else _format_v6(
            ipaddress.IPv6Address(host).packed)
    except ValueError:
        raise OptionError(f"--host: {host!r} is not an IPv4 or IPv6 address") from None


def tshark_frames(path: str | os.PathLike[str], display_filter: str) -> np.ndarray:
    """Frame numbers (sorted int64) tshark selects with a display filter."""
    import shutil
    import subprocess

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
                 tcp_window: bool = False) -> Generator[pd.DataFrame, None, None]:
    """Batches of the packet table of a capture, in file order, as DataFrames.

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
    yield from _iter(path, "pandas", display_filter=display_filter, host=host, port=port,
                     on_progress=on_progress, interfaces_out=interfaces_out,
                     prefetch=prefetch, payload_head=payload_head, tcp_window=tcp_window)


def iter_packet_tables(path: str | os.PathLike[str], **options: Any) -> Iterator[Any]:
    """The batches of :func:`iter_packets` as pyarrow Tables, built without pandas (the
    same values, types and pandas metadata as ``pyarrow.Table.from_pandas`` of a batch)."""
    yield from _iter(path, "arrow", **options)


def iter_packet_columns(path: str | os.PathLike[str], **options: Any) -> Iterator[PacketColumns]:
    """The batches of :func:`iter_packets` as :class:`PacketColumns` (numpy arrays: neither
    pandas nor pyarrow imported), for ``outputs.packet_csv``."""
    yield from _iter(path, "columns", **options)


def _iter(path: str | os.PathLike[str], form: str, *, display_filter: str | None = None,
          host: str | None = None, port: int | None = None,
          on_progress: ProgressCallback | None = None,
          interfaces_out: list[dict[str, Any]] | None = None,
          prefetch: bool = True, payload_head: int = 0,
          tcp_window: bool = False, table: _Table | None = None,
          only: frozenset[str] | None = None) -> Iterator[Any]:
    host_text = _host_filter(host) if host is not None else None
    if port is not None and not 0 <= port <= 0xFFFF:
        raise OptionError(f"--port: {port} is not a TCP/UDP port")
    reader = open_capture(path)
    with reader:
        selected = tshark_frames(path, display_filter) if display_filter else None
        pending: list[Warning] = []
        extras = {"payload_head": int(payload_head), "tcp_window": bool(tcp_window)}
        yield from _tables(reader, selected, host_text, port, on_progress, interfaces_out,
                           pending, form, extras, prefetch, table, only)
    for warning in pending:
        warn(warning, stacklevel=3)


#: Columns that together tell a frame apart from another frame (a frame equal to an earlier
#: one in all of them is a duplicate: same time, length, interface, headers and payload).
DUPLICATE_KEY = ("ts_ns", "caplen", "wirelen", "interface", "src", "dst", "proto", "sport",
                 "dport", "ip_id", "tcp_seq", "tcp_ack", "tcp_flags", "payload_len",
                 "payload_digest")
#: Rows of the previous batch a duplicate is looked for in (besides its own batch).
DUPLICATE_CARRY = 4096
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _row_hashes(columns: PacketColumns, rows: np.ndarray | slice,
                book: _AddressBook, key: tuple[str, ...] = DUPLICATE_KEY) -> np.ndarray:
    """A 64-bit hash of each row's ``key`` values (a missing value hashes apart from every
    value; addresses by their text, the same in every batch): rows equal in them hash equal."""
    ids = book.stable_ids(columns.addresses)
    h = np.zeros(len(columns.src[rows]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in key:
            if name in ("src", "dst"):
                value = ids[getattr(columns, name)[rows]].astype(np.uint64)
            else:
                value = columns.values[name][rows].astype(np.uint64)
                if name in columns.valid:  # missing: a value no column holds
                    value = np.where(columns.valid[name][rows], value,
                                     np.uint64(0xFFFF_FFFF_FFFF_FFF1))
            # splitmix64's finalizer over (hash so far + value): order of the columns counts
            h = (h * _MIX) ^ value
            h ^= h >> np.uint64(31)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(29)
    return h


def _any_repeat(carry: np.ndarray, hashes: np.ndarray) -> bool:
    """Whether a value of ``hashes`` repeats one of them or of ``carry`` (one plain sort)."""
    both = np.sort(np.concatenate([carry, hashes]))
    return bool((both[1:] == both[:-1]).any())


def _shared_times(ts: np.ndarray, ordered: bool, carry_ts: np.ndarray) -> np.ndarray:
    """Where a time of ``ts`` is another row's too, of ``ts`` or of ``carry_ts``: the only
    rows that can duplicate a row (the time is part of :data:`DUPLICATE_KEY`). ``ordered``:
    ``ts`` never decreases (the usual capture), so equal times are neighbours: no sort."""
    order = None if ordered else np.argsort(ts)
    times = ts if order is None else ts[order]
    shared = np.zeros(len(times), dtype=bool)
    same = times[1:] == times[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    if len(carry_ts) and len(times):
        carried = np.sort(carry_ts)
        # the times up to the carried rows' latest (``times`` is sorted: a prefix, in a
        # capture a few rows at most) are the only ones that can equal one of them
        reach = int(np.searchsorted(times, carried[-1], side="right"))
        at = np.minimum(np.searchsorted(carried, times[:reach]), len(carried) - 1)
        shared[:reach] |= carried[at] == times[:reach]
    if order is None:
        return shared
    out = np.empty_like(shared)
    out[order] = shared
    return out


class _Suspicion:
    """Readable but suspicious: timestamps that go backwards in file order, and frames that
    duplicate an earlier one (within a batch and the previous batch's last rows: bounded).

    A duplicate has its twin's time, so only the rows whose time another row of the batch
    or of the carried rows has are hashed (in a capture a few, found by comparing each time
    with the next one): the whole key's hash of every row was most of the check's cost."""

    def __init__(self, book: _AddressBook) -> None:
        self.book = book
        self.backwards = 0
        self.back_ns = 0           #: largest step back
        self.first_back: int | None = None
        self.prev_ns: int | None = None
        self.duplicates = 0
        self.first_dup: int | None = None
        self.carry = np.zeros(0, np.uint64)     #: the last rows' hashes (DUPLICATE_KEY)
        self.carry_ts = np.zeros(0, np.int64)   #: and their times

    def observe(self, columns: PacketColumns) -> None:
        """One batch of the unfiltered packet table, in file order."""
        timed = np.flatnonzero(columns.valid["ts_ns"])
        every = len(timed) == len(columns)  # the common case: a slice, no gathers
        ts = columns.values["ts_ns"] if every else columns.values["ts_ns"][timed]
        ordered = True
        if len(ts):
            prev = self.prev_ns if self.prev_ns is not None else int(ts[0])
            back = np.empty(len(ts), dtype=np.int64)
            back[0] = prev - ts[0]
            np.subtract(ts[:-1], ts[1:], out=back[1:])
            hit = back > 0
            if hit.any():
                self.backwards += int(hit.sum())
                self.back_ns = max(self.back_ns, int(back.max()))
                if self.first_back is None:
                    self.first_back = int(self._frame(columns, timed, every, np.argmax(hit)))
                ordered = not hit[1:].any()
            self.prev_ns = int(ts[-1])
        shared = np.flatnonzero(_shared_times(ts, ordered, self.carry_ts))
        if len(shared):
            rows = shared if every else timed[shared]
            dup = self._repeats(_row_hashes(columns, rows, self.book))
            if dup is not None:
                self.duplicates += int(dup.sum())
                if self.first_dup is None:
                    self.first_dup = int(columns.values["frame"][rows[np.argmax(dup)]])
        last = slice(max(len(ts) - DUPLICATE_CARRY, 0), None)
        self.carry = _row_hashes(columns, last if every else timed[last], self.book)
        self.carry_ts = ts[last].copy()

    @staticmethod
    def _frame(columns: PacketColumns, timed: np.ndarray, every: bool, at: Any) -> int:
        return int(columns.values["frame"][at if every else timed[at]])

    def _repeats(self, hashes: np.ndarray) -> np.ndarray | None:
        """Where a row repeats an earlier row of ``hashes`` (not the first of its value: a
        stable sort keeps the first in front) or one of the previous batch's last rows; None
        when no row does (one plain sort tells: 10x cheaper than the stable argsort that
        finds which)."""
        if not _any_repeat(self.carry, hashes):
            return None
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        dup = np.zeros(len(hashes), dtype=bool)
        dup[order[1:]] = ordered[1:] == ordered[:-1]
        carry = np.sort(self.carry)
        if len(carry):
            at = np.minimum(np.searchsorted(carry, hashes), len(carry) - 1)
            dup |= carry[at] == hashes
        return dup if dup.any() else None

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


class _Decoding:
    """The reading half of the packet table: raw batches decoded, handed over in groups of
    at least :data:`TABLE_ROWS` rows. With ``prefetch`` it runs in a worker thread, one or
    two groups ahead of the table half (:func:`_tables`) in the caller's thread: reading,
    walking and decoding on one core; merging the group, the columns, checks, conversion and
    the writer on the other."""

    def __init__(self, reader: Any, extras: dict[str, Any]) -> None:
        self.reader = reader
        self.extras = extras
        #: link type -> frames of it not decoded (complete once :meth:`groups` ends)
        self.undecoded: dict[int, int] = {}

    def groups(self) -> Iterator[list[tuple[Any, Any]]]:
        """The (raw columns, decoded columns) of each batch, in lists of a whole group (at least
        :data:`TABLE_ROWS` rows: :func:`_merge` makes them one, in the consumer's thread, as
        the reading thread is the busier of the two)."""
        parts: list[tuple[Any, Any]] = []
        rows = 0
        for raw in self.reader.batches():
            dec = decode(raw.buf, raw.data_off, raw.caplen, raw.wirelen, raw.linktype,
                         **self.extras)
            for t, count in dec.undecoded_linktypes.items():
                self.undecoded[t] = self.undecoded.get(t, 0) + count
            # the columns only: the chunk's buffer is refilled by the next read
            parts.append((SimpleNamespace(**{f: getattr(raw, f) for f in _RAW_FIELDS},
                                          end_offset=raw.end_offset), dec))
            rows += len(raw)
            if rows >= TABLE_ROWS:
                yield parts
                parts, rows = [], 0
        if parts:
            yield parts


def _tables(reader: Any, selected: np.ndarray | None, host_text: str | None,
            port: int | None, on_progress: ProgressCallback | None,
            interfaces_out: list[dict[str, Any]] | None,
            pending: list[Warning], form: str,
            extras: dict[str, Any] | None = None, prefetch: bool = False,
            table: _Table | None = None, only: frozenset[str] | None = None
            ) -> Iterator[Any]:
    """Decode and filter the reader's batches into tables of ``form`` (``pandas``,
    ``arrow`` or ``columns``); warnings go to ``pending`` (not emitted). With ``prefetch`` the
    decoding runs in a worker thread (:class:`_Decoding`), this in the caller's. With
    ``table`` (``columns`` unfiltered) the batches' columns are rows of its arrays. With
    ``only`` (``columns``) the batches hold those columns of :data:`COLUMNS` alone (the
    checks still see every column of each group)."""
    if only is not None and form != "columns":
        raise ValueError("only= is for the reader's arrays (form 'columns')")
    convert: Callable[[PacketColumns], Any] = {
        "arrow": PacketColumns.to_arrow, "pandas": PacketColumns.to_pandas,
        "columns": lambda columns: columns}[form]
    book = _AddressBook()
    suspicion = _Suspicion(book)
    decoding = _Decoding(reader, extras or {})
    if table is not None:
        table.file_bytes = reader.file_bytes
    yielded = False
    with _running(decoding.groups(), prefetch) as groups:
        if form == "arrow":  # imported while the worker reads the first chunks (0.1 s)
            import pyarrow  # noqa: F401
        for parts in groups:
            merged_raw, merged_dec = _merge(parts, table)
            columns = _columns(merged_raw, merged_dec, book)
            suspicion.observe(columns)
            keep = None
            if selected is not None:
                keep = np.isin(merged_raw.frame, selected, assume_unique=True)
            # --host / --port: either end of the packet
            for hit in (columns.address_mask(host_text) if host_text is not None else None,
                        columns.port_mask(port) if port is not None else None):
                if hit is not None:
                    keep = hit if keep is None else keep & hit
            if keep is not None:
                columns = columns.take(keep)
            if only is not None:
                columns = columns.select(only)
            if interfaces_out is not None and len(interfaces_out) != len(reader.interfaces):
                interfaces_out[:] = [i.to_dict() for i in reader.interfaces]
            if on_progress is not None:
                on_progress(reader.position, reader.file_bytes)
            if len(columns):
                yielded = True
                yield convert(columns)
    if not yielded:  # the header (and schema) of an empty table still goes out
        empty = PacketColumns.empty()
        yield empty_table() if form == "pandas" else convert(
            empty if only is None else empty.select(only))
    if interfaces_out is not None and len(interfaces_out) != len(reader.interfaces):
        interfaces_out[:] = [i.to_dict() for i in reader.interfaces]
    if on_progress is not None:
        on_progress(reader.file_bytes, reader.file_bytes)
    _finish(reader, decoding.undecoded, suspicion, pending)


@contextlib.contextmanager
def _running(groups: Iterator[Any], prefetch: bool) -> Iterator[Iterable[Any]]:
    """The decoded groups, from a worker thread started now with ``prefetch`` (stopped and
    joined on the way out, however the consumer leaves)."""
    if not prefetch:
        yield groups
        return
    prefetcher = _Prefetcher(groups)
    try:
        yield prefetcher
    finally:
        prefetcher.close()


def _finish(reader: Any, undecoded: dict[int, int], suspicion: _Suspicion,
            pending: list[Warning]) -> None:
    """The warnings of a whole read, in their order: link types not decoded, timestamps out
    of range, damage, then what looked suspicious."""
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


#: groups decoded ahead of the consumer
PREFETCH_BATCHES = 2


class _Prefetcher:
    """``items`` run in a worker thread from the moment this is made, up to
    :data:`PREFETCH_BATCHES` ahead of the consumer; its errors are raised in the consumer's
    thread. :meth:`close` stops and joins the worker (wherever either side is)."""

    def __init__(self, items: Iterator[Any]) -> None:
        import queue  # here: ~5 ms of start-up a small file (no worker) skips
        import threading

        self._full = queue.Full
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=PREFETCH_BATCHES)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=carried(self._work), args=(items,),
                                        name="xenlat-reader", daemon=True)
        self._worker.start()

    def _put(self, kind: str, value: Any) -> bool:
        """Hand one item over; False when the consumer stopped first (never blocks then)."""
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=0.1)
                return True
            except self._full:
                continue
        return False

    def _work(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put("item", item):
                    return
            self._put("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put("error", exc)

    def __iter__(self) -> Iterator[Any]:
        while True:
            kind, value = self._queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return

    def close(self) -> None:
        self._stop.set()
        # the consumer's generator may be finalized by the garbage collector in any thread,
        # the worker's own included: a thread cannot join itself (it stops at its next put)
        import threading

        if threading.current_thread() is not self._worker:
            self._worker.join()


def read_packet_columns(path: str | os.PathLike[str], **options: Any) -> PacketColumns:
    """The whole packet table of a capture as one :class:`PacketColumns` (numpy arrays, no
    DataFrame per batch nor their concatenation: ``analyze`` takes a few columns of it);
    ``attrs`` as :func:`read_packets`' (options: :func:`iter_packets`'). Unfiltered, the
    batches are merged into the table's own arrays (:class:`_Table`): one copy, not two.

    ``only=``: the columns of :data:`COLUMNS` wanted (``src`` and ``dst`` are always there,
    as the opt-in columns asked for); the others are still read for the checks of each batch
    (duplicate frames: the warnings are the same) but never kept: no table memory, no copy.
    A column left out is absent from ``values`` and named in ``left_out``: the steps'
    accessors (``match.int_values``, ``has_value``, ``has_column``) raise ``KeyError`` for it
    rather than read it as a column without values."""
    interfaces: list[dict[str, Any]] = []
    filtered = any(options.get(k) is not None for k in ("display_filter", "host", "port"))
    only: Iterable[str] | None = options.pop("only", None)
    wanted = None if only is None else frozenset(only)
    if wanted is not None and not wanted <= COLUMNS.keys():
        raise ValueError(f"only=: not columns of the packet table: "
                         f"{sorted(wanted - COLUMNS.keys())}")
    batches = _iter(path, "columns", interfaces_out=interfaces,
                    table=None if filtered else _Table(wanted), only=wanted, **options)
    columns = PacketColumns.concat(list(batches))  # never empty
    columns.attrs = {"interfaces": interfaces, "path": str(Path(path))}
    if wanted is not None:
        columns.left_out = frozenset(COLUMNS.keys() - wanted - {"src", "dst"})
    return columns


def read_packets(path: str | os.PathLike[str], **options: Any) -> pd.DataFrame:
    """The whole packet table of a capture (see :func:`iter_packets` for the options).

    ``attrs["interfaces"]`` lists the capture's interfaces (pcapng ``if_name`` such as
    ``vif5.0``, link type, resolution); ``attrs["path"]`` the file.
    """
    import pandas as pd

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
