"""The network's share: TCP sequence analysis of one capture, as Wireshark's ``tcp.analysis``.

A gap that the network explains needs no Xen to explain it: a lost segment resent after a
retransmission timeout (doubling each time: RTO back-off), a receiver advertising a zero
window, a sender that filled the receiver's window, duplicate ACKs announcing a loss, an ACK
held back by the receiver (delayed ACK). :func:`analyze_tcp` flags each TCP frame, with the
rules of Wireshark's ``tcp.analysis.*`` (``epan/dissectors/packet-tcp.c``), vectorized per
directed flow in frame order; :func:`explain_gaps` names, for each flagged gap of an exchange,
the first of those events inside it, as a cause of ``model.CAUSES``.

Per directed flow, ``nextseq`` is the highest ``seq + len`` (SYN and FIN count one) seen so
far, ``lastack``/``window`` the previous frame's values. A frame with data is a
*retransmission* when it starts below ``nextseq`` and is not a keep-alive; Wireshark calls it
*out of order* instead when the flow's front advanced less than 3 ms before, and a *fast
retransmission* when the other side had sent two duplicate ACKs for its sequence number.
A *duplicate ACK* carries no data, the same ack, window and ``seq == nextseq`` as its
flow's previous frame. *Zero window*: window 0 outside SYN/FIN/RST. *Window full*: the data
reaches exactly the other side's last ``ack + window << scale`` (only where both SYNs were
seen, as Wireshark). *Lost segment*: a frame starting past ``nextseq`` (not a RST): the capture
missed the bytes between, or they come later (resent, reordered). A *capture hole* (not a
Wireshark flag) is a lost segment whose missing bytes no later frame brings: the capture's own
loss (no cause either way: the network did not hold them back). *Delayed ACK* (not a Wireshark
flag): a pure ACK that advances the ack :data:`DELAYED_ACK_NS` or more after the data it
acknowledges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...groups import group_time_order
from ...sources.packets import PacketColumns
from ..match import has_column, has_value, int_values, unwrap_seq
from .codes import first_rows, first_seen_codes

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
#: Wireshark's out-of-order threshold: a hole filled this soon after the front moved.
OUT_OF_ORDER_NS = 3_000_000
#: A pure ACK this long after the data it acknowledges was held back (Linux: 40 ms minimum).
DELAYED_ACK_NS = 20_000_000
#: A retransmission interval this much longer than the previous one of the same bytes is a
#: back-off (RTO doubling).
BACKOFF_RATIO = 1.5
_MOD = 1 << 32

#: Per-frame flags, and the cause each names when it falls inside a flagged gap — strongest
#: first: the first event found in a gap, in this order, is the cause. A capture hole comes
#: first: the gap is then not measured, only bounded (the network is not its cause).
EVENTS: dict[str, str] = {
    "capture_hole": "capture_hole",
    "rto_backoff": "tcp_rto_backoff",
    "retransmission": "tcp_retransmission",
    "zero_window": "tcp_zero_window",
    "window_full": "tcp_window_full",
    "duplicate_ack": "tcp_dup_ack",
    "delayed_ack": "tcp_delayed_ack",
}
#: The causes, in ``model.CAUSES``.
CAUSES: tuple[str, ...] = tuple(EVENTS.values())
#: Flags that are no cause of a gap (reported for the comparison with Wireshark).
OTHER_FLAGS = ("fast_retransmission", "out_of_order", "lost_segment")


#: The frames analyzed, as columns (one numpy array each, the same length): no DataFrame,
#: whose every column added or row order taken copies and consolidates blocks (most of the
#: cost on a million frames).
Frames = dict[str, np.ndarray]


def analyze_tcp(packets: pd.DataFrame | PacketColumns) -> pd.DataFrame:
    """The flagged TCP frames of a packet table read with ``tcp_window=True`` (a frame with
    no flag has no row); the table may be the reader's arrays (what ``analyze`` reads).

    Columns: ``frame``, ``ts_ns``, ``src``, ``sport``, ``dst``, ``dport`` (the frame's),
    ``conversation_key`` (the same for both directions, :func:`conversation_key`),
    ``seglen``, one bool column per flag (``EVENTS`` and ``OTHER_FLAGS``), ``interval_ns`` (a
    retransmission's time since the previous transmission of its bytes), ``ack_delay_ns`` (a
    delayed ACK's wait).
    """
    return analyzed(tcp_frames(packets))


TcpFrames = tuple[Frames, pd.Index] | None
"""What :func:`analyze_tcp` takes of a packet table (:func:`tcp_frames`): the TCP frames'
columns and the addresses their codes ``a``, ``b`` index; None: no TCP frame to analyze."""


def tcp_frames(packets: pd.DataFrame | PacketColumns) -> TcpFrames:
    """The first half of :func:`analyze_tcp`: the TCP frames' columns taken out of the packet
    table (copies: the table may go once this returns; the rest, :func:`analyzed`, needs no
    more of it)."""
    need = ("tcp_seq", "tcp_ack", "tcp_flags", "tcp_window", "payload_len", "ts_ns")
    if any(not has_column(packets, c) for c in need):
        return None
    ok = int_values(packets, "proto", -1) == 6
    for column in ("tcp_flags", "ts_ns", "tcp_window", "src", "dst"):
        ok &= has_value(packets, column)
    if not ok.any():
        return None
    rows = np.flatnonzero(ok)

    def taken(column: str) -> np.ndarray:
        return int_values(packets, column, -1, rows)

    # endpoints as integers (address code, port): no string per frame
    if isinstance(packets, PacketColumns):  # codes into one list of addresses already
        names = pd.Index(packets.addresses, dtype=object)
        a_code, b_code = (getattr(packets, c)[rows].astype(np.int64) for c in ("src", "dst"))
    else:
        a_code, b_code, names = _address_codes(packets["src"], packets["dst"], rows)
    t: Frames = {
        "frame": taken("frame"), "ts_ns": taken("ts_ns"),
        "a": a_code, "sport": taken("sport"), "b": b_code, "dport": taken("dport"),
        "seq": taken("tcp_seq"), "ack": taken("tcp_ack"),
        "flags": taken("tcp_flags"), "window": taken("tcp_window"),
        "wscale": (taken("tcp_wscale") if has_column(packets, "tcp_wscale")
                   else np.full(rows.size, -1, dtype=np.int64)),
        "len": np.maximum(taken("payload_len"), 0)}
    return t, names


def analyzed(frames: TcpFrames) -> pd.DataFrame:
    """The second half of :func:`analyze_tcp`: the flags of the frames :func:`tcp_frames`
    took (their columns are reordered, then let go, in place: given once)."""
    if frames is None:
        return _empty()
    t, names = frames
    t["flow"], t["reverse"], t["conv"] = _flow_codes((t["a"] << 17) | t["sport"],
                                                     (t["b"] << 17) | t["dport"])
    frame = t["frame"]
    if frame.size < 2 or (frame[1:] > frame[:-1]).all():  # a capture's rows: frame order
        flow = t["flow"]  # ids from 0: as uint16 below 2**16 flows, a radix sort
        by_flow = np.argsort(flow.astype(np.uint16) if flow.max() < 1 << 16 else flow,
                             kind="stable")
    else:
        by_flow = np.lexsort((frame, t["flow"]))
    del frame
    for column, values in t.items():  # one column at a time: no second copy of them all
        t[column] = values[by_flow]
    flagged = _flags(t)
    t.clear()  # the columns may go (the caller still holds the dict)
    out = pd.DataFrame({c: flagged[c] for c in ("frame", "ts_ns")})
    out["src"] = np.asarray(names, dtype=object)[flagged["a"]]
    out["sport"] = flagged["sport"]
    out["dst"] = np.asarray(names, dtype=object)[flagged["b"]]
    out["dport"] = flagged["dport"]
    out["conversation_key"] = conversation_key(out["src"].to_numpy(), out["sport"].to_numpy(),
                                               out["dst"].to_numpy(), out["dport"].to_numpy())
    for column in _COLUMNS[7:]:
        out[column] = flagged[column]
    return out


def _address_codes(src: pd.Series, dst: pd.Series, rows: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """The source and destination addresses at ``rows`` as codes into one list of names:
    the reader's categorical codes mapped onto the union of both columns' categories (no
    address string looked up per frame)."""
    def categorical(column: pd.Series) -> tuple[pd.Index, np.ndarray]:
        if isinstance(column.dtype, pd.CategoricalDtype):
            return column.cat.categories, column.cat.codes.to_numpy()[rows]
        values = pd.Categorical(column.iloc[rows])
        return values.categories, np.asarray(values.codes)

    (a_names, a_codes), (b_names, b_codes) = categorical(src), categorical(dst)
    names = a_names.union(b_names)
    return (names.get_indexer(a_names)[a_codes].astype(np.int64),
            names.get_indexer(b_names)[b_codes].astype(np.int64), names)


def _flow_codes(end_a: np.ndarray, end_b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, from its two endpoints (integers): its directed flow's id, the id of the
    flow the other way (-1: none seen), and its connection's id — each numbered in order of
    first appearance. One integer key per endpoint pair: no tuple per frame."""
    ends, names = pd.factorize(np.concatenate([end_a, end_b]))
    m = np.int64(max(len(names), 1))
    ea, eb = ends[:len(end_a)].astype(np.int64), ends[len(end_a):].astype(np.int64)
    flow, keys = pd.factorize(ea * m + eb)
    reverse = pd.Index(keys).get_indexer((keys % m) * m + keys // m)[flow]
    conv = pd.factorize(np.minimum(ea, eb) * m + np.maximum(ea, eb))[0]
    return flow.astype(np.int64), reverse.astype(np.int64), conv.astype(np.int64)


_COLUMNS = ("frame", "ts_ns", "src", "sport", "dst", "dport", "conversation_key", "seglen",
            *EVENTS, *OTHER_FLAGS, "interval_ns", "ack_delay_ns")


def _empty() -> pd.DataFrame:
    columns = {"frame": "int64", "ts_ns": "int64", "src": object, "sport": "int64",
               "dst": object, "dport": "int64", "conversation_key": object,
               "seglen": "int64", "interval_ns": "float64", "ack_delay_ns": "float64"}
    out = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in columns.items()})
    for flag in (*EVENTS, *OTHER_FLAGS):
        out[flag] = pd.Series([], dtype=bool)
    return out


def _within(first: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
    """``values`` of the previous frame of the same flow; ``fill`` at each flow's first
    frame (where ``first`` is True)."""
    prev = np.r_[fill, values[:-1]].astype(float)
    prev[first] = fill
    return prev


def _group_cummax(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The running maximum of int64 ``values`` within each group of consecutive rows
    (``first`` marks each one's first row): one ``maximum.accumulate`` over the values lifted
    group by group above the last one's (no hash group-by), when the lift fits in int64."""
    if values.size == 0:
        return values.copy()
    lo, hi = int(values.min()), int(values.max())
    group = np.cumsum(first) - 1
    step = hi - lo + 1
    if step * (int(group[-1]) + 1) >= 1 << 62:
        return pd.Series(values).groupby(group).cummax().to_numpy()
    lift = group * np.int64(step) - lo
    return np.maximum.accumulate(values + lift) - lift


def _group_starts(first: np.ndarray) -> np.ndarray:
    """Per row, the row its group starts at (groups are stretches of rows, ``first`` marks
    each one's first row)."""
    return np.maximum.accumulate(np.where(first, np.arange(first.size), 0))


def _flags(t: Frames) -> Frames:
    """The per-frame flags of frames sorted by flow, then frame number: the flagged frames'
    columns (``_COLUMNS`` with address codes ``a``, ``b`` for ``src``, ``dst``), in frame
    order."""
    flow, flags, ts = t["flow"], t["flags"], t["ts_ns"]
    first = np.r_[True, flow[1:] != flow[:-1]]
    syn, fin, rst = (flags & SYN) != 0, (flags & FIN) != 0, (flags & RST) != 0
    control = syn | fin | rst
    seglen = t["len"] + syn + fin
    del syn, fin, rst  # (each temporary let go after its last use: a lower peak)
    rel = unwrap_seq(t["seq"], flow)
    nextseq = rel + seglen
    front = _group_cummax(nextseq, first)
    front_before = _within(first, front, -np.inf)
    del front
    # when the front last moved (Wireshark's nextseqtime): the latest such row of the flow
    moved = nextseq > front_before
    last_moved = np.maximum.accumulate(np.where(moved, np.arange(flow.size), -1))
    moved_ts = np.where(last_moved >= _group_starts(first),
                        ts[np.maximum(last_moved, 0)].astype(float), np.nan)
    moved_before = _within(first, moved_ts, np.nan)
    del moved, last_moved, moved_ts
    prev_ack = _within(first, t["ack"], np.nan)
    prev_window = _within(first, t["window"], np.nan)
    window = t["window"]
    # past the front: bytes before it were never seen, the capture missed them (RST aside)
    out_lost = np.isfinite(front_before) & (rel > front_before) & ((flags & RST) == 0)
    keepalive = (seglen <= 1) & (rel == front_before - 1) & ~control
    behind = (seglen > 0) & np.isfinite(front_before) & (rel < front_before) & ~keepalive
    del keepalive
    out: Frames = {"seglen": seglen, "lost_segment": out_lost,
                   "capture_hole": _unfilled(flow, rel, seglen, front_before, out_lost)}
    del out_lost
    dup = (seglen == 0) & (window != 0) & (window == prev_window) \
        & (rel == front_before) & (t["ack"] == prev_ack) & ~control
    out["duplicate_ack"] = dup
    out["zero_window"] = (window == 0) & ~control
    del prev_window, window
    # the other side's state at each frame: its latest frame before this one
    other = _reverse_state(t, dup, first)
    since_front = ts - moved_before
    fast = behind & (other["dupacks"] >= 2) & (other["ack"] == t["seq"])
    ooo = behind & ~fast & (since_front < _ooo_threshold(t)) & (nextseq != front_before)
    retrans = behind & ~ooo
    del since_front, moved_before, nextseq, front_before, behind
    out["fast_retransmission"] = fast
    out["out_of_order"] = ooo
    out["retransmission"] = retrans
    out["interval_ns"], out["rto_backoff"] = _intervals(t, seglen, rel, retrans)
    scale = other["shift"]
    reach = (t["seq"] + t["len"] - other["ack"]
             - other["window"] * (2.0 ** np.maximum(scale, 0))) % _MOD
    out["window_full"] = (t["len"] > 0) & ~control & (scale >= 0) \
        & np.isfinite(other["ack"]) & (reach == 0)
    del other, scale, reach
    delay = _ack_delay(t, prev_ack, control)
    out["ack_delay_ns"] = delay
    out["delayed_ack"] = np.isfinite(delay) & (delay >= DELAYED_ACK_NS)
    any_flag = np.zeros(flow.size, dtype=bool)
    for flag in (*EVENTS, *OTHER_FLAGS):
        any_flag |= out[flag]
    rows = np.flatnonzero(any_flag)
    rows = rows[np.argsort(t["frame"][rows], kind="stable")]
    return {k: v[rows] for k, v in ({k: t[k] for k in ("frame", "ts_ns", "a", "sport", "b",
                                                       "dport")} | out).items()}


def _unfilled(flow: np.ndarray, rel: np.ndarray, seglen: np.ndarray,
              front_before: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """Of the ``lost`` rows (frames sorted by flow, then frame number, each starting past its
    flow's front), those whose missing bytes ``[front, start)`` no later data frame of the flow
    starts inside: the capture's own holes. A loss on the network resent later, or segments
    reordered, bring the bytes after all (Wireshark flags all three alike: "previous segment
    not captured"). A later frame starting before the hole and reaching into it is not looked
    for (a resent segment starts where the lost one did)."""
    hole = lost.copy()
    rows = np.flatnonzero(lost)
    if rows.size == 0:
        return hole
    base = int(rel.min())
    span = int(rel.max()) - base + 1
    if (int(flow.max()) + 1) * span >= 1 << 62:  # no one-integer key: every loss is a hole
        return hole
    key = flow.astype(np.int64) * span + (rel - base)
    data = np.flatnonzero(seglen > 0)
    order = data[np.argsort(key[data], kind="stable")]  # data rows by flow, then start
    starts = key[order]
    lo = np.searchsorted(starts, flow[rows] * span + (front_before[rows].astype(np.int64)
                                                     - base), side="left")
    hi = np.searchsorted(starts, key[rows], side="left")
    inside = hi > lo  # data frames of the flow starting in the hole: the latest of them
    latest = np.full(rows.size, -1, dtype=np.int64)
    if inside.any():
        bounds = np.column_stack([lo[inside], hi[inside]]).ravel()
        latest[inside] = np.maximum.reduceat(np.r_[order, -1], bounds)[::2]
    hole[rows] = latest < rows
    return hole


def _ooo_threshold(t: Frames) -> np.ndarray:
    """Per frame: Wireshark's out-of-order threshold, the connection's first RTT (SYN → the
    handshake's ACK) where the handshake was seen, else 3 ms."""
    flags, key, ts = t["flags"], t["conv"], t["ts_ns"]
    n_conv = int(key.max()) + 1
    syn_only = ((flags & SYN) != 0) & ((flags & ACK) == 0)
    first_syn = np.full(n_conv, np.nan)
    np.fmin.at(first_syn, key[syn_only], ts[syn_only].astype(float))
    synack = ((flags & SYN) != 0) & ((flags & ACK) != 0)
    after = np.full(n_conv, np.nan)
    np.fmin.at(after, key[synack], ts[synack].astype(float))
    # the ACK of the handshake: the first pure ACK after the SYN/ACK, from the SYN's side
    pure = ((flags & (SYN | FIN | RST)) == 0) & (t["len"] == 0)
    acks = np.flatnonzero(pure)
    acks = acks[ts[acks] > after[key[acks]]]
    third = np.full(n_conv, np.iinfo(np.int64).max)
    np.minimum.at(third, key[acks], ts[acks])
    seen = np.zeros(n_conv, dtype=bool)
    seen[key[acks]] = True
    rtt = np.where(seen, third - first_syn, np.nan)[key]
    return np.where(np.isfinite(rtt) & (rtt > 0), rtt, OUT_OF_ORDER_NS)


def _reverse_state(t: Frames, dup: np.ndarray, first: np.ndarray) -> dict[str, np.ndarray]:
    """For each frame, the reverse flow's last ack, window, duplicate-ACK count (frames before
    this one), and the window-scale shift of that reverse window (-1 unknown)."""
    n = len(dup)
    flow, rev = t["flow"], t["reverse"]
    # the run of duplicate ACKs each frame closes (reset by any other frame of its flow):
    # rows are sorted by flow, so each run is a stretch of rows; the count within it
    dupacks = _running_count(dup, first | ~dup)
    found, source = _latest_reverse(t)
    out = {k: np.full(n, np.nan) for k in ("ack", "window", "dupacks")}
    for k, values in (("ack", t["ack"]), ("window", t["window"]), ("dupacks", dupacks)):
        out[k][found] = values[source]
    out["dupacks"] = np.nan_to_num(out["dupacks"])
    # window scaling applies where both SYNs were seen; 0 where either had no option
    syn = (t["flags"] & SYN) != 0
    n_flows = int(flow.max()) + 1
    seen = np.zeros(n_flows, dtype=bool)
    seen[flow[syn]] = True
    scale = np.full(n_flows, -1, dtype=np.int64)
    np.maximum.at(scale, flow[syn], t["wscale"][syn])
    known = rev >= 0
    both = seen[flow] & known & seen[np.where(known, rev, 0)]
    mine, theirs = scale[flow], np.where(known, scale[np.where(known, rev, 0)], -1)
    out["shift"] = np.where(both, np.where((mine >= 0) & (theirs >= 0), theirs, 0), -1)
    return out


def _latest_reverse(t: Frames) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the latest frame of the flow the other way with a smaller frame number:
    the frames that have one, and its row. Both directions of a connection, in frame order,
    are its two flows: the latest row of the other side (of the same, for a flow that is its
    own reverse) before the frame's own number began."""
    conv, frame, flow, rev = t["conv"], t["frame"], t["flow"], t["reverse"]
    order = _order_by(conv, frame)
    conv, frame, flow, rev = conv[order], frame[order], flow[order], rev[order]
    pos = np.arange(order.size)
    new_conv = np.r_[True, conv[1:] != conv[:-1]]
    conv_start = _group_starts(new_conv)
    side = flow != flow[conv_start]
    last = {s: np.maximum.accumulate(np.where(side == s, pos, -1)) for s in (False, True)}
    before = _group_starts(new_conv | np.r_[True, frame[1:] != frame[:-1]]) - 1
    at = np.maximum(before, 0)
    want = np.where(rev == flow, side, ~side)
    latest = np.where(want, last[True][at], last[False][at])
    found = (rev >= 0) & (before >= 0) & (latest >= conv_start)
    return order[found], order[latest[found]]


def _order_by(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """``np.lexsort((minor, major))`` of int64 arrays: with majors from 0 below 2**16 (flows,
    connections), :func:`groups.group_time_order`'s two stable sorts (the minor's, then the
    major's as a radix sort); else one stable sort of the single key ``(major - its least) *
    span + (minor - its least)`` when that fits in int64 (two merge sorts of int64 took 3-7x
    longer on a capture's frames)."""
    if major.size == 0:
        return np.lexsort((minor, major))
    lo_major, lo_minor = int(major.min()), int(minor.min())
    if lo_major >= 0 and int(major.max()) < 1 << 16:  # few majors (flows): two stable sorts
        return group_time_order(major, minor)
    span = int(minor.max()) - lo_minor + 1
    if span * (int(major.max()) - lo_major + 1) >= 1 << 62:
        return np.lexsort((minor, major))
    return np.argsort((major - lo_major) * np.int64(span) + (minor - lo_minor), kind="stable")


def _running_count(hit: np.ndarray, restart: np.ndarray) -> np.ndarray:
    """Per row, how many ``hit`` rows since the last ``restart`` row (itself included)."""
    counted = np.cumsum(hit, dtype=np.int64)
    begin = np.maximum.accumulate(np.where(restart, np.arange(len(hit)), 0))
    return counted - counted[begin] + hit[begin] if len(hit) else counted


def _previous_in_group(group_order: np.ndarray, same: np.ndarray, values: np.ndarray
                       ) -> np.ndarray:
    """Per row, ``values`` at the previous row of its group (NaN for a group's first):
    ``group_order`` sorts the rows by group, keeping their order inside it; ``same`` says,
    along that order, which rows share the previous one's group."""
    prev = np.full(len(values), np.nan)
    prev[group_order[1:][same[1:]]] = values[group_order[:-1][same[1:]]]
    return prev


def _intervals(t: Frames, seglen: np.ndarray, rel: np.ndarray, retrans: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Time since the previous transmission of a retransmission's first byte, and whether it
    backed off (this interval at least ``BACKOFF_RATIO`` times the previous one)."""
    data = seglen > 0
    flow, first = t["flow"][data], rel[data]
    ts = t["ts_ns"].astype(float)[data]
    # each transmission of a byte after the previous one, per (flow, first byte), in row order
    order = _order_by(flow, first)  # stable: row order within
    same = np.r_[False, (flow[order][1:] == flow[order][:-1])
                 & (first[order][1:] == first[order][:-1])]
    interval = ts - _previous_in_group(order, same, ts)
    before = _previous_in_group(order, same, interval)
    out = np.full(len(seglen), np.nan)
    back = np.zeros(len(seglen), dtype=bool)
    out[np.flatnonzero(data)] = interval
    with np.errstate(invalid="ignore"):
        back[np.flatnonzero(data)] = interval >= BACKOFF_RATIO * before
    return np.where(retrans, out, np.nan), retrans & back


def _ack_delay(t: Frames, prev_ack: np.ndarray, control: np.ndarray) -> np.ndarray:
    """For a pure ACK that advances its ack: time since the data it acknowledges (the other
    side's latest segment ending there, at or before the ACK's frame number)."""
    ack, length = t["ack"], t["len"]
    pure = np.flatnonzero((length == 0) & ~control & (ack >= 0)  # -1: no ACK number read
                          & (ack != prev_ack) & np.isfinite(prev_ack))
    data = np.flatnonzero(length > 0)
    out = np.full(len(ack), np.nan)
    if data.size == 0 or pure.size == 0:
        return out
    # one key per (flow, sequence number the data ends at / the ACK acknowledges): a reverse
    # flow of -1 (none seen) gives a negative key, which no data has
    key = np.concatenate([t["flow"][data] * _MOD + (t["seq"][data] + length[data]) % _MOD,
                          t["reverse"][pure] * _MOD + ack[pure]])
    frame = np.concatenate([t["frame"][data], t["frame"][pure]])
    order = np.lexsort((frame, key))  # stable: a data frame before an ACK of the same number
    key, is_ack = key[order], order >= data.size
    last_data = np.maximum.accumulate(np.where(is_ack, -1, np.arange(order.size)))
    hit = is_ack & (last_data >= _group_starts(np.r_[True, key[1:] != key[:-1]]))
    rows = pure[order[hit] - data.size]
    out[rows] = t["ts_ns"][rows] - t["ts_ns"][data[order[last_data[hit]]]]
    return out


def conversation_key(src: np.ndarray, sport: np.ndarray, dst: np.ndarray, dport: np.ndarray
                     ) -> np.ndarray:
    """The key :func:`analyze_tcp` gives both directions of a connection (made once per
    distinct src, sport, dst, dport, not once per row)."""
    codes = first_seen_codes(src, sport, dst, dport)
    first = first_rows(codes)
    a = (pd.Series(src[first]).astype(str) + "|"
         + pd.Series(sport[first]).astype(np.int64).astype(str))
    b = (pd.Series(dst[first]).astype(str) + "|"
         + pd.Series(dport[first]).astype(np.int64).astype(str))
    return np.where(a < b, a + "~" + b, b + "~" + a)[codes]


def _describe(event: str, hit: pd.DataFrame) -> pd.Series:
    """One line per event found: what the frame shows."""
    frame = "frame " + hit["frame"].astype(str) + ": "
    who = hit["src"].astype(str) + ":" + hit["sport"].astype(str)

    def ms(col: str) -> pd.Series:
        return (hit[col] / 1e6).round(1).astype(str) + " ms"

    text = {
        "capture_hole": frame + "the capture holds none of the bytes " + who + " sent before it "
        + "(a hole no later frame fills): the gap is an upper bound",
        "rto_backoff": frame + "retransmission by " + who + " after " + ms("interval_ns")
        + ", twice or more the previous wait (RTO back-off)",
        "retransmission": frame + "retransmission by " + who + " after "
        + ms("interval_ns").where(hit["interval_ns"].notna(), "a lost segment"),
        "zero_window": frame + who + " advertised a zero window",
        "window_full": frame + who + " filled the receiver's window",
        "duplicate_ack": frame + "duplicate ACK from " + who + " (a segment was lost)",
        "delayed_ack": frame + who + " held its ACK " + ms("ack_delay_ns") + " (delayed ACK)",
    }
    return text[event]


def explain_gaps(events: pd.DataFrame, key: np.ndarray, start_ns: np.ndarray,
                 end_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cause (``EVENTS``' value, '' none) and its detail for each gap ``[start, end]`` of
    the conversation ``key``: the strongest kind of event inside it, its first occurrence."""
    n = len(key)
    cause = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)
    ask = np.flatnonzero((start_ns >= 0) & (end_ns >= start_ns))
    if len(events) == 0 or ask.size == 0:
        return cause, detail
    query = pd.DataFrame({"key": key[ask], "ts_ns": start_ns[ask], "end": end_ns[ask],
                          "row": ask}).sort_values("ts_ns", kind="stable")
    for event, name in EVENTS.items():
        hits = events.loc[events[event], ["conversation_key", "ts_ns", "frame", "src", "sport",
                                          "interval_ns", "ack_delay_ns"]]
        if len(hits) == 0:
            continue
        hits = hits.rename(columns={"conversation_key": "key"}).sort_values("ts_ns")
        found = pd.merge_asof(query, hits.assign(t_event=hits["ts_ns"]), on="ts_ns", by="key",
                              direction="forward")
        found = found[found["t_event"].notna() & (found["t_event"] <= found["end"])]
        found = found[cause[found["row"].to_numpy()] == ""]
        if len(found) == 0:
            continue
        rows = found["row"].to_numpy()
        cause[rows] = name
        detail[rows] = _describe(event, found.astype({"frame": np.int64, "sport": np.int64}))
    return cause, detail
