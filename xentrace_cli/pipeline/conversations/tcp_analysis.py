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
seen, as Wireshark). *Delayed ACK* (not a Wireshark flag): a pure ACK that advances the ack
:data:`DELAYED_ACK_NS` or more after the data it acknowledges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..match import unwrap_seq
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
#: first: the first event found in a gap, in this order, is the cause.
EVENTS: dict[str, str] = {
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
OTHER_FLAGS = ("fast_retransmission", "out_of_order")


def _int(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column]).astype("Int64").fillna(-1).to_numpy(np.int64)


def analyze_tcp(packets: pd.DataFrame) -> pd.DataFrame:
    """The flagged TCP frames of a packet table read with ``tcp_window=True`` (a frame with
    no flag has no row).

    Columns: ``frame``, ``ts_ns``, ``src``, ``sport``, ``dst``, ``dport`` (the frame's),
    ``conversation_key`` (the same for both directions, :func:`conversation_key`),
    ``seglen``, one bool column per flag (``EVENTS`` and ``OTHER_FLAGS``), ``interval_ns`` (a
    retransmission's time since the previous transmission of its bytes), ``ack_delay_ns`` (a
    delayed ACK's wait).
    """
    need = ("tcp_seq", "tcp_ack", "tcp_flags", "tcp_window", "payload_len", "ts_ns")
    if any(c not in packets.columns for c in need):
        return _empty()
    ok = (_int(packets, "proto") == 6) \
        & packets["tcp_flags"].notna().to_numpy() & packets["ts_ns"].notna().to_numpy() \
        & packets["tcp_window"].notna().to_numpy() & packets["src"].notna().to_numpy() \
        & packets["dst"].notna().to_numpy()
    if not ok.any():
        return _empty()
    sub = packets.loc[ok]
    # endpoints as integers (address code, port): no string per frame
    src, dst = pd.Categorical(sub["src"]), pd.Categorical(sub["dst"])
    names = src.categories.union(dst.categories)
    a_code = names.get_indexer(src.categories)[src.codes].astype(np.int64)
    b_code = names.get_indexer(dst.categories)[dst.codes].astype(np.int64)
    t = pd.DataFrame({
        "frame": _int(sub, "frame"), "ts_ns": _int(sub, "ts_ns"),
        "a": a_code, "sport": _int(sub, "sport"), "b": b_code, "dport": _int(sub, "dport"),
        "seq": _int(sub, "tcp_seq"), "ack": _int(sub, "tcp_ack"),
        "flags": _int(sub, "tcp_flags"), "window": _int(sub, "tcp_window"),
        "wscale": (_int(sub, "tcp_wscale") if "tcp_wscale" in sub.columns
                   else np.full(len(sub), -1)),
        "len": np.maximum(_int(sub, "payload_len"), 0)})
    t["flow"], t["reverse"], t["conv"] = _flow_codes((a_code << 17) | t["sport"].to_numpy(),
                                                     (b_code << 17) | t["dport"].to_numpy())
    by_flow = np.lexsort((t["frame"].to_numpy(), t["flow"].to_numpy()))  # stable
    flagged = _flags(t.take(by_flow).reset_index(drop=True))
    flagged["src"] = np.asarray(names, dtype=object)[flagged.pop("a").to_numpy()]
    flagged["dst"] = np.asarray(names, dtype=object)[flagged.pop("b").to_numpy()]
    flagged["conversation_key"] = conversation_key(flagged["src"].to_numpy(),
                                                   flagged["sport"].to_numpy(),
                                                   flagged["dst"].to_numpy(),
                                                   flagged["dport"].to_numpy())
    return flagged[list(_COLUMNS)].reset_index(drop=True)


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


def _within(t: pd.DataFrame, values: np.ndarray, fill: float) -> np.ndarray:
    """``values`` of the previous frame of the same flow (``fill`` for a flow's first)."""
    prev = np.r_[fill, values[:-1]].astype(float)
    first = np.r_[True, t["flow"].to_numpy()[1:] != t["flow"].to_numpy()[:-1]]
    prev[first] = fill
    return prev


def _flags(t: pd.DataFrame) -> pd.DataFrame:
    """The per-frame flags of frames sorted by flow, then frame number."""
    flow = t["flow"].to_numpy()
    flags = t["flags"].to_numpy()
    syn, fin, rst = (flags & SYN) != 0, (flags & FIN) != 0, (flags & RST) != 0
    control = syn | fin | rst
    ts = t["ts_ns"].to_numpy()
    seglen = t["len"].to_numpy() + syn + fin
    rel = unwrap_seq(t["seq"].to_numpy(), flow)
    nextseq = rel + seglen
    front = pd.Series(nextseq).groupby(flow).cummax().to_numpy()
    front_before = _within(t, front, -np.inf)
    # when the front last moved (Wireshark's nextseqtime)
    moved = nextseq > front_before
    moved_ts = pd.Series(np.where(moved, ts, np.nan)).groupby(flow).ffill().to_numpy()
    moved_before = _within(t, moved_ts, np.nan)
    prev_ack = _within(t, t["ack"].to_numpy(), np.nan)
    prev_window = _within(t, t["window"].to_numpy(), np.nan)
    keepalive = (seglen <= 1) & (rel == front_before - 1) & ~control
    behind = (seglen > 0) & np.isfinite(front_before) & (rel < front_before) & ~keepalive
    dup = (seglen == 0) & (t["window"].to_numpy() != 0) & (t["window"].to_numpy() == prev_window) \
        & (rel == front_before) & (t["ack"].to_numpy() == prev_ack) & ~control
    t["duplicate_ack"] = dup
    t["zero_window"] = (t["window"].to_numpy() == 0) & ~control
    t["seglen"] = seglen
    # the other side's state at each frame: its latest frame before this one
    other = _reverse_state(t, dup)
    since_front = ts - moved_before
    fast = behind & (other["dupacks"] >= 2) & (other["ack"] == t["seq"].to_numpy())
    threshold = _ooo_threshold(t)
    ooo = behind & ~fast & (since_front < threshold) & (nextseq != front_before)
    retrans = behind & ~ooo
    t["fast_retransmission"] = fast
    t["out_of_order"] = ooo
    t["retransmission"] = retrans
    interval, backoff = _intervals(t, rel, retrans)
    t["interval_ns"] = interval
    t["rto_backoff"] = backoff
    scale = other["shift"]
    reach = (t["seq"].to_numpy() + t["len"].to_numpy() - other["ack"]
             - other["window"] * (2.0 ** np.maximum(scale, 0))) % _MOD
    t["window_full"] = (t["len"].to_numpy() > 0) & ~control & (scale >= 0) \
        & np.isfinite(other["ack"]) & (reach == 0)
    delay = _ack_delay(t, prev_ack, control)
    t["ack_delay_ns"] = delay
    t["delayed_ack"] = np.isfinite(delay) & (delay >= DELAYED_ACK_NS)
    keep = ["frame", "ts_ns", "a", "sport", "b", "dport", "seglen", *EVENTS, *OTHER_FLAGS,
            "interval_ns", "ack_delay_ns"]
    any_flag = t[[*EVENTS, *OTHER_FLAGS]].to_numpy().any(axis=1)
    return t.loc[any_flag, keep].sort_values("frame", kind="stable")


def _ooo_threshold(t: pd.DataFrame) -> np.ndarray:
    """Per frame: Wireshark's out-of-order threshold, the connection's first RTT (SYN → the
    handshake's ACK) where the handshake was seen, else 3 ms."""
    flags = t["flags"].to_numpy()
    syn_only = ((flags & SYN) != 0) & ((flags & ACK) == 0)
    key = t["conv"].to_numpy()
    first_syn = pd.Series(np.where(syn_only, t["ts_ns"], np.nan)).groupby(key).min()
    synack = ((flags & SYN) != 0) & ((flags & ACK) != 0)
    after = pd.Series(np.where(synack, t["ts_ns"], np.nan)).groupby(key).min()
    # the ACK of the handshake: the first pure ACK after the SYN/ACK, from the SYN's side
    pure = ((flags & (SYN | FIN | RST)) == 0) & (t["len"].to_numpy() == 0)
    acks = pd.DataFrame({"key": key, "ts": t["ts_ns"].to_numpy(), "pure": pure})
    acks = acks[acks["pure"] & (acks["ts"].to_numpy() > after.reindex(key).to_numpy())]
    third = acks.groupby("key")["ts"].min()
    rtt = (third - first_syn.reindex(third.index)).reindex(key).to_numpy(float)
    return np.where(np.isfinite(rtt) & (rtt > 0), rtt, OUT_OF_ORDER_NS)


def _reverse_state(t: pd.DataFrame, dup: np.ndarray) -> dict[str, np.ndarray]:
    """For each frame, the reverse flow's last ack, window, duplicate-ACK count (frames before
    this one), and the window-scale shift of that reverse window (-1 unknown)."""
    n = len(t)
    flow = t["flow"].to_numpy()
    # the run of duplicate ACKs each frame closes (reset by any other frame of its flow):
    # rows are sorted by flow, so each run is a stretch of rows; the count within it
    dupacks = _running_count(dup, np.r_[True, flow[1:] != flow[:-1]] | ~dup)
    state = pd.DataFrame({"frame": t["frame"].to_numpy(), "flow": flow,
                          "ack": t["ack"].to_numpy(), "window": t["window"].to_numpy(),
                          "dupacks": dupacks}).sort_values("frame")
    query = pd.DataFrame({"frame": t["frame"].to_numpy(), "flow": t["reverse"].to_numpy(),
                          "row": np.arange(n)}).sort_values("frame")
    merged = pd.merge_asof(query, state, on="frame", by="flow", allow_exact_matches=False)
    out = {k: np.full(n, np.nan) for k in ("ack", "window", "dupacks")}
    rows = merged["row"].to_numpy()
    for k in out:
        out[k][rows] = merged[k].to_numpy(float)
    out["dupacks"] = np.nan_to_num(out["dupacks"])
    # window scaling applies where both SYNs were seen; 0 where either had no option
    flags = t["flags"].to_numpy()
    syn = (flags & SYN) != 0
    seen = pd.Series(syn).groupby(flow).any()
    scale = pd.Series(np.where(syn, t["wscale"].to_numpy(), -1)).groupby(flow).max()
    rev = t["reverse"].to_numpy()
    both = seen.reindex(flow).to_numpy(bool) & (rev >= 0) \
        & seen.reindex(rev).fillna(False).to_numpy(bool)
    mine, theirs = scale.reindex(flow).to_numpy(), scale.reindex(rev).fillna(-1).to_numpy()
    out["shift"] = np.where(both, np.where((mine >= 0) & (theirs >= 0), theirs, 0), -1)
    return out


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


def _intervals(t: pd.DataFrame, rel: np.ndarray, retrans: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Time since the previous transmission of a retransmission's first byte, and whether it
    backed off (this interval at least ``BACKOFF_RATIO`` times the previous one)."""
    data = t["seglen"].to_numpy() > 0
    flow, first = t["flow"].to_numpy()[data], rel[data]
    ts = t["ts_ns"].to_numpy(float)[data]
    # each transmission of a byte after the previous one, per (flow, first byte), in row order
    order = np.lexsort((np.arange(len(ts)), first, flow))
    same = np.r_[False, (flow[order][1:] == flow[order][:-1])
                 & (first[order][1:] == first[order][:-1])]
    interval = ts - _previous_in_group(order, same, ts)
    before = _previous_in_group(order, same, interval)
    out = np.full(len(t), np.nan)
    back = np.zeros(len(t), dtype=bool)
    out[np.flatnonzero(data)] = interval
    with np.errstate(invalid="ignore"):
        back[np.flatnonzero(data)] = interval >= BACKOFF_RATIO * before
    return np.where(retrans, out, np.nan), retrans & back


def _ack_delay(t: pd.DataFrame, prev_ack: np.ndarray, control: np.ndarray) -> np.ndarray:
    """For a pure ACK that advances its ack: time since the data it acknowledges (the other
    side's latest segment ending there)."""
    n = len(t)
    ack = t["ack"].to_numpy()
    pure = (t["len"].to_numpy() == 0) & ~control & (ack != prev_ack) & np.isfinite(prev_ack)
    data = t["len"].to_numpy() > 0
    ends = pd.DataFrame({"frame": t["frame"].to_numpy()[data], "flow": t["flow"].to_numpy()[data],
                         "end": (t["seq"].to_numpy() + t["len"].to_numpy())[data] % _MOD,
                         "t_data": t["ts_ns"].to_numpy()[data]}).sort_values("frame")
    query = pd.DataFrame({"frame": t["frame"].to_numpy()[pure],
                          "flow": t["reverse"].to_numpy()[pure], "end": ack[pure],
                          "row": np.flatnonzero(pure)}).sort_values("frame")
    out = np.full(n, np.nan)
    if len(ends) == 0 or len(query) == 0:
        return out
    merged = pd.merge_asof(query, ends, on="frame", by=["flow", "end"])
    ok = merged["t_data"].notna().to_numpy()
    rows = merged["row"].to_numpy()[ok]
    out[rows] = t["ts_ns"].to_numpy()[rows] - merged["t_data"].to_numpy()[ok]
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
