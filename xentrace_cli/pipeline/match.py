"""The same bytes across capture points: data segments, flow ids, byte-range matching.

Identity is the flow (addresses, ports, protocol, direction) plus the position in the stream:
TCP sequence byte ranges (the raw sequence number is the same at every capture point, since
nothing on the path rewrites it), IP ID and payload digest for UDP and others. Offloads change
frame boundaries (one 64 KB GSO segment at the backend, 45 MTU frames in the guest, GRO the
other way), so TCP is matched byte range against byte range, never frame against frame:

* every capture's segments are placed on one integer axis, ``flow << 41 | (offset + 2**40)``,
  so all flows are matched in one vectorized pass;
* the other capture's segment boundaries cut that axis into elementary intervals; each interval
  remembers the earliest segment covering it (retransmissions cover an interval twice: the
  first transmission wins, the count says it was retransmitted);
* a segment of the anchor capture is seen at the other point when both its first and its last
  byte are; its time there is the later of the two (the segment was whole only then).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from xentrace_cli.groups import by_group, group_time_order, ranges, search_ascending
from xentrace_cli.sources.packets import PacketColumns

#: Bits of the stream offset on the matching axis (offsets live in ±2**40: a terabyte).
_OFFSET_BITS = 41
_OFFSET_BIAS = 1 << 40
_SEQ_MOD = 1 << 32
_SEQ_HALF = 1 << 31

TCP = 6
#: The TCP SYN flag.
SYN = 0x02

#: Columns a segment table has (beyond the flow columns).
FLOW_COLUMNS = ("src", "sport", "dst", "dport", "proto")


def data_segments(packets: pd.DataFrame | PacketColumns) -> pd.DataFrame:
    """The frames of a packet table that carry transport payload, with plain numpy dtypes.

    Columns: ``frame``, ``ts_ns`` (int64), ``src``, ``dst`` (str), ``sport``, ``dport``,
    ``proto`` (int64, -1 when absent), ``seq`` (raw TCP sequence, int64, -1 for non-TCP),
    ``len`` (payload bytes), ``ip_id``, ``digest`` (int64, -1 when absent), ``flags``.
    Frames without a timestamp or without IP are dropped: they cannot be placed in time.
    The table may be the reader's arrays (:class:`PacketColumns`, what ``analyze`` reads):
    the same frame comes out.
    """
    if isinstance(packets, PacketColumns):
        payload = _values(packets, "payload_len", 0)
        keep = (payload > 0) & packets.valid["ts_ns"] & (packets.values["ip_version"] > 0)
        return _columns_of(packets, np.flatnonzero(keep), payload)
    payload = int_column(packets, "payload_len", 0)
    keep = (payload > 0) & _timed(packets) & (int_column(packets, "ip_version", 0) > 0)
    return _columns(packets, keep, payload)


def syn_segments(packets: pd.DataFrame | PacketColumns) -> pd.DataFrame:
    """The TCP SYN frames of a packet table (their sequence number is the ISN), same columns."""
    if isinstance(packets, PacketColumns):
        keep = (((_values(packets, "tcp_flags", 0) & SYN) != 0)
                & (_values(packets, "proto", -1) == TCP) & packets.valid["ts_ns"])
        return _columns_of(packets, np.flatnonzero(keep), _values(packets, "payload_len", 0))
    flags = int_column(packets, "tcp_flags", 0)
    keep = ((flags & SYN) != 0) & (int_column(packets, "proto", -1) == TCP) & _timed(packets)
    return _columns(packets, keep, int_column(packets, "payload_len", 0))


def _values(packets: PacketColumns, column: str, missing: int,
            rows: np.ndarray | None = None) -> np.ndarray:
    """A column of the reader's arrays as int64 (``missing`` where it has no value), at
    ``rows`` (all rows: None), as :func:`int_column` gives it from a DataFrame (a uint64
    value above 2**63 wraps); an opt-in column (``tcp_window``) too, and ``missing``
    everywhere for one not read."""
    _not_left_out(packets, column)
    if column in packets.values:
        values, valid = packets.values[column], packets.valid.get(column)
    elif column in packets.extra:
        values, valid = packets.extra[column]
    else:
        return np.full(len(packets) if rows is None else len(rows), missing, dtype=np.int64)
    out = (values if rows is None else values[rows]).astype(np.int64)
    if valid is not None:
        out[~(valid if rows is None else valid[rows])] = missing
    return out


def int_values(packets: pd.DataFrame | PacketColumns, column: str, missing: int,
               rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`int_column` of a DataFrame or the reader's arrays, at ``rows`` (None: all)."""
    if isinstance(packets, PacketColumns):
        return _values(packets, column, missing, rows)
    values = int_column(packets, column, missing)
    return values if rows is None else values[rows]


def has_value(packets: pd.DataFrame | PacketColumns, column: str) -> np.ndarray:
    """Where a column of a DataFrame or of the reader's arrays has a value (an address
    column: an address)."""
    if not isinstance(packets, PacketColumns):
        return packets[column].notna().to_numpy()
    _not_left_out(packets, column)
    if column in ("src", "dst"):
        return getattr(packets, column) >= 0
    if column in packets.extra:
        return packets.extra[column][1]
    valid = packets.valid.get(column)
    return np.ones(len(packets), dtype=bool) if valid is None else valid


def has_column(packets: pd.DataFrame | PacketColumns, column: str) -> bool:
    """Whether a DataFrame or the reader's arrays hold the column (opt-in ones included)."""
    if isinstance(packets, PacketColumns):
        _not_left_out(packets, column)
        return column in packets.values or column in packets.extra or column in ("src", "dst")
    return column in packets.columns


def _not_left_out(packets: PacketColumns, column: str) -> None:
    """Raise ``KeyError`` for a column the reader was told to leave out (``only=``): a step
    that reads it must ask for it, not get a column without values."""
    if column in packets.left_out:
        raise KeyError(f"{column!r} was left out of the packet table (read_packet_columns' "
                       "only=): add it to the columns asked for")


def _columns_of(packets: PacketColumns, rows: np.ndarray, payload: np.ndarray
                ) -> pd.DataFrame:
    """:func:`_columns` of the reader's arrays: each column taken at ``rows`` only."""
    names = pd.Index(packets.addresses, dtype=object)
    proto = _values(packets, "proto", -1, rows)

    def address(codes: np.ndarray) -> pd.Categorical:
        # the addresses used, in their order (remove_unused_categories without its sort)
        taken = codes[rows].astype(np.int64)
        used = np.bincount(taken[taken >= 0], minlength=len(names)) > 0
        recode = np.append(np.cumsum(used) - 1, -1)  # -1 (no address) stays -1
        return pd.Categorical.from_codes(recode[taken], categories=names[used],
                                         validate=False)

    return _segment_frame(
        _values(packets, "frame", 0, rows), _values(packets, "ts_ns", 0, rows),
        address(packets.src), _values(packets, "sport", -1, rows), address(packets.dst),
        _values(packets, "dport", -1, rows), proto,
        np.where(proto == TCP, _values(packets, "tcp_seq", -1, rows), -1), payload[rows],
        _values(packets, "ip_id", -1, rows), _values(packets, "payload_digest", -1, rows),
        _values(packets, "tcp_flags", 0, rows))


def _segment_frame(frame: np.ndarray, ts_ns: np.ndarray, src: pd.Categorical,
                   sport: np.ndarray, dst: pd.Categorical, dport: np.ndarray,
                   proto: np.ndarray, seq: np.ndarray, length: np.ndarray, ip_id: np.ndarray,
                   digest: np.ndarray, flags: np.ndarray) -> pd.DataFrame:
    """The segment table of :func:`data_segments`, from its columns."""
    return pd.DataFrame({"frame": frame, "ts_ns": ts_ns, "src": src, "sport": sport,
                         "dst": dst, "dport": dport, "proto": proto, "seq": seq,
                         "len": length, "ip_id": ip_id, "digest": digest, "flags": flags})


def _timed(packets: pd.DataFrame) -> np.ndarray:
    """Frames with a timestamp (the others cannot be placed in time)."""
    if "ts_ns" not in packets.columns:
        return np.zeros(len(packets), dtype=bool)
    return packets["ts_ns"].notna().to_numpy()


def int_column(frame: pd.DataFrame, column: str, missing: int) -> np.ndarray:
    """A column as int64 (``missing`` where NA, everywhere when the table has no such
    column), as ``pd.to_numeric(c).astype("Int64").fillna(missing)`` gives it (a UInt64
    value above 2**63 wraps), without the two intermediate nullable arrays that takes: the
    reader's integer columns (nullable, or plain numpy) are converted directly."""
    if column not in frame.columns:
        return np.full(len(frame), missing, dtype=np.int64)
    values = frame[column].array
    if isinstance(values, pd.arrays.IntegerArray):
        return values.to_numpy(np.int64, na_value=missing)
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and (dtype.kind == "i" or (dtype.kind == "u"
                                                               and dtype.itemsize < 8)):
        return np.asarray(values).astype(np.int64)
    return pd.to_numeric(frame[column]).astype("Int64").fillna(missing).to_numpy(np.int64)



def _category(frame: pd.DataFrame, column: str) -> pd.Categorical:
    """An address column as a categorical of strings (cheap to compare, group and concat)."""
    if column not in frame.columns:
        return pd.Categorical([""] * len(frame))
    values = frame[column]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Categorical(values).remove_unused_categories()
    return pd.Categorical(values.astype(str))


def _columns(packets: pd.DataFrame, keep: np.ndarray, payload: np.ndarray) -> pd.DataFrame:
    # only the columns used, each taken at the kept rows (not the whole table's rows)
    wanted = [c for c in ("frame", "ts_ns", "src", "sport", "dst", "dport", "proto", "tcp_seq",
                          "ip_id", "payload_digest", "tcp_flags") if c in packets.columns]
    sub = packets[wanted].iloc[np.flatnonzero(keep)]
    proto = int_column(sub, "proto", -1)
    seq = np.where(proto == TCP, int_column(sub, "tcp_seq", -1), -1)
    frame = int_column(sub, "frame", 0) if "frame" in sub.columns else np.arange(1, len(sub) + 1)
    return _segment_frame(
        frame, int_column(sub, "ts_ns", 0), _category(sub, "src"), int_column(sub, "sport", -1),
        _category(sub, "dst"), int_column(sub, "dport", -1), proto, seq, payload[keep],
        int_column(sub, "ip_id", -1), int_column(sub, "payload_digest", -1),
        int_column(sub, "tcp_flags", 0))


def local_addresses(segments: pd.DataFrame, remote: set[str] | None = None) -> set[str]:
    """The address(es) a capture was taken on.

    The address in most frames (as source or destination) — a host talking to many peers.
    When two addresses tie (one peer only), ``remote`` addresses (peers named in a socket log)
    decide, else the address using more distinct ports (the client of several connections).
    An address in every frame the local one is absent from is local too (IPv4 and IPv6).
    """
    if len(segments) == 0:
        return set()
    src, dst, names = _address_codes(segments["src"], segments["dst"])
    ranked, counts = _ranked(np.concatenate([src, dst]), len(names))
    tied = [str(names[k]) for k in ranked[counts[ranked] == counts[ranked[0]]]]
    top = tied[0]
    if len(tied) > 1:
        candidates = [a for a in tied if a not in (remote or set())] or tied
        if len(candidates) > 1:
            ports = pd.concat([
                pd.DataFrame({"addr": segments["src"].astype(str),
                              "port": segments["sport"].to_numpy()}),
                pd.DataFrame({"addr": segments["dst"].astype(str),
                              "port": segments["dport"].to_numpy()})])
            distinct = ports.drop_duplicates().groupby("addr")["port"].size()
            candidates = sorted(candidates, key=lambda a: -int(distinct.get(a, 0)))
        top = str(candidates[0])
    local = {top}
    code = names.get_loc(top)
    rest = (src != code) & (dst != code)
    if rest.any():
        ranked, counts = _ranked(np.concatenate([src[rest], dst[rest]]), len(names))
        if counts[ranked[0]] == int(rest.sum()):
            local.add(str(names[ranked[0]]))
    return local


def _address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Both address columns as int64 codes into one index of their texts (-1: missing): the
    categorical codes remapped, not a string per row."""
    def categorical(column: pd.Series) -> tuple[pd.Index, np.ndarray]:
        values = pd.Categorical(column.astype(str)) if not isinstance(
            column.dtype, pd.CategoricalDtype) or not all(
            isinstance(c, str) for c in column.cat.categories) else column.array
        return values.categories, np.asarray(values.codes, dtype=np.int64)

    (a_names, a_codes), (b_names, b_codes) = categorical(src), categorical(dst)
    names = a_names.union(b_names)
    a_map = np.append(names.get_indexer(a_names), -1)  # code -1 (missing) stays -1
    b_map = np.append(names.get_indexer(b_names), -1)
    return a_map[a_codes], b_map[b_codes], names


def _ranked(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The codes present (-1: none, left out) from the most rows to the fewest, ties in order
    of first appearance (as ``value_counts`` ranks them), and the rows of every code."""
    codes = codes[codes >= 0]
    counts = np.bincount(codes, minlength=n)
    first = np.full(n, codes.size, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(codes.size))
    present = np.flatnonzero(counts)
    return present[np.lexsort((first[present], -counts[present]))], counts


def assign_flows(tables: dict[str, pd.DataFrame], local: set[str]) -> dict[str, pd.DataFrame]:
    """Give every segment of every capture a common ``flow`` id, ``direction`` and stream axis.

    ``direction`` is ``rx`` for segments towards a local address, ``tx`` otherwise. ``start``
    and ``end`` are positions on the matching axis (TCP only; NA for other protocols): the
    sequence number unwrapped per flow (period 2**32) relative to the flow's earliest segment
    over all captures, so the same byte has the same position at every capture point.
    """
    names = [name for name, table in tables.items() if table is not None]
    if not names:
        return {}
    # one set of address categories for every capture (their tables are concatenated after)
    cats = sorted({str(c) for name in names for col in ("src", "dst")
                   for c in pd.Categorical(tables[name][col]).categories})
    parts = [tables[name].assign(src=pd.Categorical(tables[name]["src"]).set_categories(cats),
                                 dst=pd.Categorical(tables[name]["dst"]).set_categories(cats))
             for name in names]
    # the ids and the axis need a few columns of every capture together, not a concatenated
    # copy of every column (the captures' tables keep theirs, shared by the result)
    flow = _flow_ids(parts, len(cats))

    def joined(column: str) -> np.ndarray:
        return np.concatenate([p[column].to_numpy() for p in parts])

    start = np.full(flow.size, -1, dtype=np.int64)
    tcp = joined("proto") == TCP
    if tcp.any():
        rows = np.flatnonzero(tcp)
        order = group_time_order(flow[rows], joined("ts_ns")[rows])
        sorted_flow = flow[rows][order]
        rel = unwrap_seq(joined("seq")[rows][order], sorted_flow)
        pos = np.empty_like(rel)
        pos[order] = (sorted_flow << _OFFSET_BITS) + rel + _OFFSET_BIAS
        start[rows] = pos
    end = np.where(tcp, start + joined("len"), -1)
    out = {}
    bounds = np.r_[0, np.cumsum([len(p) for p in parts])]
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        rows_of = slice(bounds[i], bounds[i + 1])
        out[name] = part.assign(flow=flow[rows_of], direction=directions(part, local),
                                start=start[rows_of], end=end[rows_of])
    return out


def directions(segments: pd.DataFrame, local: set[str]) -> pd.Categorical:
    """``rx`` for segments towards a ``local`` address, ``tx`` for the others (categorical
    codes: no string per row)."""
    dst = segments["dst"]
    if isinstance(dst.dtype, pd.CategoricalDtype):  # by the codes: the few categories
        # compared, not every row (the last entry: code -1, no address)
        wanted = np.r_[dst.cat.categories.isin(list(local)), False]
        towards = wanted[dst.cat.codes.to_numpy()]
    else:
        towards = dst.isin(list(local)).to_numpy()
    return pd.Categorical.from_codes(np.where(towards, 0, 1).astype(np.int8),
                                     categories=["rx", "tx"])


def _flow_ids(parts: list[pd.DataFrame], n_addresses: int) -> np.ndarray:
    """A dense id per (src, sport, dst, dport, proto) over the rows of ``parts`` one after
    the other: packed into one int64 when it fits."""
    if n_addresses <= (1 << 10):  # 10 + 10 + 17 + 17 + 9 = 63 bits
        def joined(column: str) -> np.ndarray:
            return np.concatenate([p[column].to_numpy(np.int64) for p in parts])

        # int64 from the start (the codes' own int8/int16 concatenated, then widened once),
        # each field shifted in and or-ed in place: no new array per field
        key = np.concatenate([p["src"].cat.codes.to_numpy() for p in parts]).astype(np.int64)
        for field, bits in (("dst", 10), ("sport", 17), ("dport", 17), ("proto", 9)):
            key <<= bits
            if field == "dst":
                key |= np.concatenate([p["dst"].cat.codes.to_numpy() for p in parts]).astype(
                    np.int64)
            else:
                part = joined(field)
                part += 1
                key |= part
        codes, _ = pd.factorize(key, sort=True)
        return codes.astype(np.int64)
    keys = pd.concat([p[list(FLOW_COLUMNS)] for p in parts], ignore_index=True)
    return keys.groupby(list(FLOW_COLUMNS), sort=True, observed=True).ngroup().to_numpy(
        np.int64)


def unwrap_seq(seq: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sequence numbers (sorted by flow, then time) unwrapped per flow, 0 at the flow's first.

    Consecutive differences are taken modulo 2**32 into [-2**31, 2**31): a stream longer than
    4 GB keeps counting, and a retransmission of bytes before the wrap stays before it.
    """
    seq = seq.astype(np.int64)
    if seq.size == 0:
        return seq
    # in place after the first difference (a million rows: each new array is page faults)
    diff = np.diff(seq, prepend=seq[:1])
    # modulo a power of two as a mask: what % gives (also for negative numbers), a third
    # of its time
    diff += _SEQ_HALF
    diff &= _SEQ_MOD - 1
    diff -= _SEQ_HALF
    first = np.ones(seq.size, dtype=bool)
    np.not_equal(flow[1:], flow[:-1], out=first[1:])
    diff[first] = 0
    total = np.cumsum(diff, out=diff)
    # subtract the running total at each flow's first row (repeated over the flow's rows:
    # no running maximum of row numbers)
    starts = np.flatnonzero(first)
    total -= np.repeat(total[starts], np.diff(starts, append=seq.size))
    return total


def stream_offset(segments: pd.DataFrame, syns: pd.DataFrame | None = None) -> np.ndarray:
    """Offset in the byte stream (0 = first byte after the SYN) of each TCP segment's first byte.

    ``syns`` (SYN frames placed by :func:`assign_flows` together with the segments) give the
    ISN: the first data byte is ISN + 1. Flows without a captured SYN count from the lowest
    byte seen in ``segments``. -1 for non-TCP segments.
    """
    tcp = segments["proto"].to_numpy() == TCP
    start = segments["start"].to_numpy()
    flow = segments["flow"].to_numpy()
    offset = np.full(len(segments), -1, dtype=np.int64)
    if not tcp.any():
        return offset
    base = pd.Series(start[tcp]).groupby(flow[tcp]).min()
    if syns is not None and len(syns):
        syn_tcp = syns[syns["proto"].to_numpy() == TCP]
        isn = (syn_tcp.groupby("flow")["start"].min() + 1).reindex(base.index)
        base = isn.where(isn.notna(), base).astype(np.int64)
    offset[tcp] = start[tcp] - base.reindex(flow[tcp]).to_numpy(np.int64)
    return offset


def datagram_offset(segments: pd.DataFrame) -> np.ndarray:
    """Bytes of the same flow's earlier datagrams (in capture order) before each non-TCP
    segment: a datagram socket's reads count them the same way, one datagram per read, so
    the socket log's cumulative bytes meet each datagram at exactly this offset while none
    is lost between the capture and the socket. -1 for TCP segments."""
    out = np.full(len(segments), -1, dtype=np.int64)
    rows = np.flatnonzero(segments["proto"].to_numpy() != TCP)
    if rows.size == 0:
        return out
    flow = segments["flow"].to_numpy()[rows]
    order = rows[np.lexsort((segments["ts_ns"].to_numpy()[rows], flow))]
    length = segments["len"].to_numpy(np.int64)[order]
    flow_sorted = segments["flow"].to_numpy()[order]
    total = np.cumsum(length) - length
    first = np.r_[True, flow_sorted[1:] != flow_sorted[:-1]]
    base = np.maximum.accumulate(np.where(first, np.arange(order.size), 0))
    out[order] = total - total[base]
    return out


@dataclasses.dataclass
class Match:
    """Where each anchor segment was seen at another capture point."""

    ts_ns: np.ndarray
    """Time at the other point (its own clock) when the whole segment had been seen; -1 none."""
    index: np.ndarray
    """Row of the other capture's segment table that carried the segment's last byte; -1."""
    retransmitted: np.ndarray
    """The other point saw (part of) these bytes more than once."""

    @property
    def found(self) -> np.ndarray:
        """Anchor segments seen at the other point."""
        return self.index >= 0


def match_segments(anchor: pd.DataFrame, other: pd.DataFrame) -> Match:
    """Match each anchor segment to the other capture: TCP by byte range, others by identity.

    Both tables come from :func:`assign_flows` (same flow ids and axis).
    """
    n = len(anchor)
    ts = np.full(n, -1, dtype=np.int64)
    index = np.full(n, -1, dtype=np.int64)
    retrans = np.zeros(n, dtype=bool)
    if n == 0 or len(other) == 0:
        return Match(ts, index, retrans)
    a_tcp = anchor["proto"].to_numpy() == TCP
    o_tcp = other["proto"].to_numpy() == TCP
    if a_tcp.any() and o_tcp.any():
        rows = np.flatnonzero(o_tcp)
        cover = _Coverage(_at(other["start"], rows), _at(other["end"], rows),
                          _at(other["ts_ns"], rows))
        a_rows = np.flatnonzero(a_tcp)
        a_start = _at(anchor["start"], a_rows)
        by_flow = by_group(a_start, _OFFSET_BITS)  # the same for the last bytes' flows
        first_seg, first_n = cover.lookup(a_start, by_flow)
        last_seg, last_n = cover.lookup(anchor["end"].to_numpy()[a_rows] - 1, by_flow)
        ok = (first_seg >= 0) & (last_seg >= 0)
        t_first = np.where(first_seg >= 0, cover.ts[np.maximum(first_seg, 0)], -1)
        t_last = np.where(last_seg >= 0, cover.ts[np.maximum(last_seg, 0)], -1)
        later = np.where(t_first > t_last, first_seg, last_seg)
        sel = a_rows[ok]
        ts[sel] = np.maximum(t_first, t_last)[ok]
        index[sel] = rows[later[ok]]
        retrans[sel] = ((first_n > 1) | (last_n > 1))[ok]
    if (~a_tcp).any() and (~o_tcp).any():
        keys = ["flow", "ip_id", "digest", "len"]
        left = anchor.loc[~a_tcp, keys].assign(_a=np.flatnonzero(~a_tcp))
        right = other.loc[~o_tcp, [*keys, "ts_ns"]].assign(_o=np.flatnonzero(~o_tcp))
        right = right.sort_values("ts_ns", kind="stable")
        dup = right.duplicated(keys, keep=False)
        counts = right[keys].assign(_n=1).groupby(keys)["_n"].transform("size")
        right = right.assign(_retrans=dup & (counts > 1)).drop_duplicates(keys, keep="first")
        merged = left.merge(right, on=keys, how="inner")
        sel = merged["_a"].to_numpy()
        ts[sel] = merged["ts_ns"].to_numpy()
        index[sel] = merged["_o"].to_numpy()
        retrans[sel] = merged["_retrans"].to_numpy()
    return Match(ts, index, retrans)


def _at(column: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The column's values at ``rows`` (ascending, distinct): the column's own array, not a
    copy, when they are all its rows (all TCP, usually; read only)."""
    values = column.to_numpy()
    return values if rows.size == values.size else values[rows]


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (much faster than the hash path for large int64 arrays),
    sorting ``values`` in place (the caller's own array: no sorted copy beside it)."""
    values.sort()
    if values.size == 0:
        return values
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _ascending(values: np.ndarray) -> bool:
    return values.size < 2 or bool((values[1:] >= values[:-1]).all())


def ranked_union(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted distinct values of two ascending int64 arrays and each value's index among
    them (what ``np.searchsorted(uniques, a, "left")`` gives, ``a`` being among them): one
    merge of the two runs (a stable sort, which finds them), no binary search per value.
    Any input gives the same, the ascending ones only fast."""
    both = np.concatenate([a, b])
    perm = np.argsort(both, kind="stable")
    merged = both[perm]
    head = np.empty(merged.size, dtype=bool)
    head[:1] = True
    np.not_equal(merged[1:], merged[:-1], out=head[1:])
    rank = np.cumsum(head, dtype=np.intp)
    rank -= 1
    at = np.empty(both.size, dtype=np.intp)
    at[perm] = rank
    return merged[head], at[:a.size], at[a.size:]


class _Coverage:
    """For each byte position: the earliest segment covering it, and how many do."""

    def __init__(self, start: np.ndarray, end: np.ndarray, ts: np.ndarray) -> None:
        self.ts = ts
        # positions are a flow's byte stream (flow << _OFFSET_BITS): a flow's segments in
        # time order are, usually, its bytes in order, so by flow (a radix sort of the flow
        # ids) the starts and the ends are two ascending runs whose merge is the bounds and
        # every segment's place in them
        order = by_group(start, _OFFSET_BITS)
        by_flow = (start[order], end[order]) if order is not None else (start, end)
        if _ascending(by_flow[0]) and _ascending(by_flow[1]):
            self.bounds, lo_by_flow, hi_by_flow = ranked_union(*by_flow)
            if order is None:
                lo, hi = lo_by_flow, hi_by_flow
            else:
                lo, hi = np.empty_like(lo_by_flow), np.empty_like(hi_by_flow)
                lo[order], hi[order] = lo_by_flow, hi_by_flow
            del lo_by_flow, hi_by_flow
        else:  # searched flow by flow
            self.bounds = _sorted_unique(np.concatenate([start, end]))
            lo = search_ascending(self.bounds, start, "left", _OFFSET_BITS)
            hi = search_ascending(self.bounds, end, "left", _OFFSET_BITS)
        del by_flow, order
        self.lo, self.hi = lo, hi
        span = np.maximum(hi - lo, 0)
        total = int(span.sum())
        # each (segment, covered elementary interval) pair: the segment and the interval;
        # segments one after the other (the usual) cover one interval each
        seg_of, elem = (np.arange(lo.size), lo) if total == span.size and (span == 1).all() \
            else ranges(lo, span)
        n_elem = max(self.bounds.size - 1, 0)
        self.count = np.bincount(elem, minlength=n_elem)
        self.best = np.full(n_elem, -1, dtype=np.int64)
        if total:
            # an interval covered once has its one segment; only the others need a sort
            shared = self.count[elem] > 1
            alone = ~shared
            self.best[elem[alone]] = seg_of[alone]
            if shared.any():
                elem, seg_of = elem[shared], seg_of[shared]
                order = np.lexsort((ts[seg_of], elem))
                elem_sorted = elem[order]
                head = np.ones(elem_sorted.size, dtype=bool)
                head[1:] = elem_sorted[1:] != elem_sorted[:-1]
                self.best[elem_sorted[head]] = seg_of[order][head]

    def lookup(self, pos: np.ndarray, order: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Earliest covering segment (-1 when none) and the number covering, per position
        (``order``: :func:`.groups.by_group`'s of the positions, when the caller has it)."""
        return self.at(search_ascending(self.bounds, pos, "right", _OFFSET_BITS, order) - 1)

    def at(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`lookup` of the positions from ``bounds[k]`` up to the next bound."""
        valid = (k >= 0) & (k < self.best.size)
        k = np.where(valid, k, 0)
        if self.best.size == 0:
            return np.full(k.size, -1, dtype=np.int64), np.zeros(k.size, dtype=np.int64)
        seg = np.where(valid, self.best[k], -1)
        count = np.where(valid, self.count[k], 0)
        return seg, count


def first_transmissions(segments: pd.DataFrame) -> np.ndarray:
    """Mask of segments carrying a byte this capture had not seen before (not retransmissions).

    A TCP segment is a retransmission when an earlier segment of the same capture already
    covered both its first and its last byte.
    """
    keep = np.ones(len(segments), dtype=bool)
    rows = np.flatnonzero(segments["proto"].to_numpy() == TCP)
    if rows.size == 0:
        return keep
    cover = _Coverage(_at(segments["start"], rows), _at(segments["end"], rows),
                      _at(segments["ts_ns"], rows))
    # the segments' own first and last bytes: the bounds at their start and before their end
    # (what lookup(start) and lookup(end - 1) find, without searching again)
    first, _ = cover.at(cover.lo)
    last, _ = cover.at(cover.hi - 1)
    own = np.arange(rows.size)
    keep[rows[(first != own) & (last != own)]] = False
    return keep
