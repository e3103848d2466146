"""Segments → messages → exchanges, inside each conversation and never across.

A *conversation* is a TCP connection or a UDP 5-tuple (both directions). Its *client* is the
side that sends requests (the one whose segments carry request headers; without headers, the
side that sent the first data). A *message* starts at a segment that begins a request or a
response (by the conversation's rule, :mod:`.protocols`) and runs over the following segments
of the same side until that side's next message. The k-th response of a conversation answers
its k-th request (pipelining keeps the order; DNS and memcached binary pair by their key), and
a response never starts before its request: a response header with no request outstanding is
taken as part of the previous response (the bytes of a body that happen to look like one).

Retransmitted segments never start a message: they count in the message current on their side
at their time, and message times come from first transmissions (a request that had to be sent
twice took the whole time to be answered — as ``http.time`` in Wireshark says).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ...groups import first_row_of, ranges
from ..result import text_column, text_of_codes
from .protocols import KEYED, RULES, Marks

#: Rules cut by turns of the conversation (a message is a run of one side's segments).
_TURN_RULES = ("tls", "direction")


@dataclasses.dataclass
class Messages:
    """Exchanges of a set of segments, and how each conversation was cut."""

    exchanges: pd.DataFrame
    """One row per request with its response (see :func:`pair`)."""
    rule: np.ndarray
    """Per conversation id: the rule its messages were cut by (a name of ``RULES``)."""
    exchange_of_segment: np.ndarray
    """Per input segment: the exchange row it belongs to (-1: none)."""


def conversation_ids(segments: pd.DataFrame) -> np.ndarray:
    """An id per conversation (both directions of a flow share it), from the ``flow`` ids."""
    n = len(segments)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    flow = segments["flow"].to_numpy(np.int64)
    top = int(flow.max())
    # dense ids from 0 (assign_flows' numbering): each flow's first row by a minimum per id,
    # its conversation looked up in an array (no hash of every row's flow, twice)
    dense = int(flow.min()) >= 0 and top < 4 * n + 1024
    if dense:
        first = first_row_of(flow, top + 1)
        firsts = segments.iloc[np.sort(first[first >= 0])]
    else:
        firsts = segments.drop_duplicates("flow")
    a = firsts["src"].astype(str) + "|" + firsts["sport"].astype(str)
    b = firsts["dst"].astype(str) + "|" + firsts["dport"].astype(str)
    swap = (a > b).to_numpy()
    key = pd.DataFrame({"lo": np.where(swap, b, a), "hi": np.where(swap, a, b),
                        "proto": firsts["proto"].to_numpy()})
    conv = key.groupby(["lo", "hi", "proto"], sort=True).ngroup().to_numpy(np.int64)
    if dense:
        of_flow = np.full(top + 1, -1, dtype=np.int64)
        of_flow[firsts["flow"].to_numpy(np.int64)] = conv
        return of_flow[flow]
    return pd.Series(conv, index=firsts["flow"].to_numpy()).reindex(flow).to_numpy(np.int64)


def _choose_rules(conv: np.ndarray, n_conv: int, fresh: np.ndarray, marks: Marks
                  ) -> np.ndarray:
    """Per conversation, the index in ``RULES`` of the rule with most headers recognized.

    A rule needs at least one request header (requests are the distinctive half), TLS records
    from both sides; a tie goes to the rule listed first; none: ``direction``.
    """
    score = np.zeros((n_conv, len(RULES)))
    for k, rule in enumerate(RULES):
        if rule == "direction":
            score[:, k] = 0.5  # the fallback: beaten by any recognized header
            continue
        # counted over the marked rows only (few), not weighted over every row
        req = np.bincount(conv[marks.request[rule] & fresh], minlength=n_conv)
        resp = np.bincount(conv[marks.response[rule] & fresh], minlength=n_conv)
        score[:, k] = np.where(req > 0, req + resp, 0)
    # argmax keeps the first of equal scores: RULES is ordered most specific first
    return np.argmax(score, axis=1)


def _client_flows(conv: np.ndarray, flow: np.ndarray, order: np.ndarray, n_conv: int,
                  requests: np.ndarray, turn_rule: np.ndarray) -> np.ndarray:
    """Per conversation: the flow id of its client (most request headers; for turn rules,
    or without any, the side that sent the first data). ``order``: the rows by
    conversation, then time (ties in row order)."""
    c_o = conv[order]
    heads = order[np.r_[True, c_o[1:] != c_o[:-1]]]  # each conversation's first row in time
    client = np.zeros(n_conv, dtype=np.int64)
    client[conv[heads]] = flow[heads]
    counted = pd.DataFrame({"conv": conv[requests], "flow": flow[requests]})
    if len(counted):
        top = counted.value_counts().reset_index().sort_values(
            ["conv", "count", "flow"], ascending=[True, False, True]).drop_duplicates("conv")
        by_marks = np.full(n_conv, -1, dtype=np.int64)
        by_marks[top["conv"].to_numpy()] = top["flow"].to_numpy()
        client = np.where((by_marks >= 0) & ~turn_rule, by_marks, client)
    return client


def _accepted_responses(group: np.ndarray, is_req: np.ndarray, is_resp: np.ndarray
                        ) -> np.ndarray:
    """Response starts that have a request outstanding (rows sorted by group, then time).

    With q requests and r responses started so far in a group, the accepted responses are
    ``r + min(0, cummin(q - r))`` (a counter capped by a non-decreasing limit); a response
    start is kept where that count grows.
    """
    frame = pd.DataFrame({"g": group, "q": is_req.astype(np.int64),
                          "r": is_resp.astype(np.int64)})
    q = frame.groupby("g")["q"].cumsum().to_numpy()
    r = frame.groupby("g")["r"].cumsum().to_numpy()
    low = pd.Series(q - r).groupby(group).cummin().to_numpy()
    accepted = r + np.minimum(0, low)
    before = np.r_[0, accepted[:-1]]
    before[np.r_[True, group[1:] != group[:-1]]] = 0
    return is_resp & (accepted > before)


def split(segments: pd.DataFrame, fresh: np.ndarray, marks: Marks) -> Messages:
    """Cut each conversation of ``segments`` (``match.assign_flows`` rows) into exchanges."""
    n = len(segments)
    conv = conversation_ids(segments)
    n_conv = int(conv.max()) + 1 if n else 0
    ts = segments["ts_ns"].to_numpy(np.int64)
    flow = segments["flow"].to_numpy(np.int64)
    rule_of_conv = _choose_rules(conv, n_conv, fresh, marks)
    rule_idx = rule_of_conv[conv]
    turn = np.isin(rule_of_conv, [RULES.index(r) for r in _TURN_RULES])
    req_mark = np.zeros(n, dtype=bool)
    resp_mark = np.zeros(n, dtype=bool)
    key = np.zeros(n, dtype=np.int64)
    for k, rule in enumerate(RULES):
        mine = rule_idx == k
        req_mark[mine] = marks.request[rule][mine]
        resp_mark[mine] = marks.response[rule][mine]
        if rule in KEYED:
            key[mine] = marks.key[rule][mine]
    order = np.lexsort((ts, conv))  # stable: ties in row order
    client_flow = _client_flows(conv, flow, order, n_conv, req_mark & fresh, turn)
    is_client = flow == client_flow[conv]

    c_s, cl_s = conv[order], is_client[order]
    first_of_conv = np.r_[True, c_s[1:] != c_s[:-1]]
    turned = first_of_conv | np.r_[True, cl_s[1:] != cl_s[:-1]]  # the other side spoke last
    by_turn = turn[c_s]
    tls = rule_of_conv[c_s] == RULES.index("tls")
    opens = np.where(by_turn, turned & (~tls | req_mark[order]), False)
    f_s = fresh[order]
    req_start = f_s & cl_s & np.where(by_turn, opens, req_mark[order])
    resp_start = f_s & ~cl_s & np.where(by_turn, opens, resp_mark[order])

    # a response needs a request outstanding in its group (conversation, key)
    starts = np.flatnonzero(req_start | resp_start)
    k_s = key[order][starts]
    g_order = np.lexsort((starts, k_s, c_s[starts]))
    rows = starts[g_order]
    # (conversation, key) as one int64: keys are 32-bit (DNS id, memcached opaque)
    group = pd.factorize((c_s[rows] << 32) | (key[order][rows] & 0xFFFFFFFF))[0]
    keep = _accepted_responses(group, req_start[rows], resp_start[rows])
    resp_start[rows[resp_start[rows] & ~keep]] = False

    # message number of each segment on its side (-1 before the side's first start)
    side = np.where(cl_s, 0, 1)
    side_key = c_s * 2 + side
    start = req_start | resp_start
    number = pd.Series(start.astype(np.int64)).groupby(side_key).cumsum().to_numpy() - 1
    return _pair(segments, order, conv, c_s, cl_s, number, start, key, fresh, ts,
                 np.asarray(RULES, dtype=object)[rule_of_conv], n)


def _pair(segments: pd.DataFrame, order: np.ndarray, conv: np.ndarray, c_s: np.ndarray,
          cl_s: np.ndarray, number: np.ndarray, start: np.ndarray, key: np.ndarray,
          fresh: np.ndarray, ts: np.ndarray, rules: np.ndarray, n: int) -> Messages:
    """Messages of each side, requests paired with responses, and each segment's exchange.

    On numpy arrays (sorts and searches, no pandas group-by or merge: a million segments
    went through six of those): the segments are grouped into messages (:func:`_messages`),
    the k-th message of each key on one side paired with the k-th on the other
    (:func:`_paired`), and the two times an exchange needs beyond its messages found."""
    m = _messages(segments, order[number >= 0], c_s[number >= 0], cl_s[number >= 0],
                  number[number >= 0], key, fresh, ts)
    # the requests in order of conversation, time, then (ties) key and number, as they come
    reqs = np.flatnonzero(m.client)
    by_time = reqs[np.lexsort((m.msg[reqs], m.key[reqs], m.t0[reqs], m.conv[reqs]))]
    q, r = _paired(m, by_time)
    # the request's last byte before its response began (a server may answer early)
    t_req_end = _last_at_or_before(m.fresh_ts, m.fresh_first[q], m.fresh_end[q], m.t0[r])
    # the client's next request in the same conversation, when it came after the response
    next_t0 = np.full(m.conv.size, -1, dtype=np.int64)
    same = m.conv[by_time[1:]] == m.conv[by_time[:-1]]
    next_t0[by_time[:-1][same]] = m.t0[by_time[1:]][same]
    t_next = np.where(next_t0[q] > m.t1[r], next_t0[q], -1)
    exchange_of_msg = np.full(m.conv.size, -1, dtype=np.int64)
    exchange_of_msg[q] = exchange_of_msg[r] = np.arange(q.size)
    exchange_of = np.full(n, -1, dtype=np.int64)
    exchange_of[m.seg_row] = exchange_of_msg[m.msg_of_seg]
    pairs = {"conv": m.conv[q], "t0_q": m.t0[q], "t0_r": m.t0[r], "t1_r": m.t1[r],
             "bytes_q": m.bytes[q], "bytes_r": m.bytes[r], "retx": m.retx[q] + m.retx[r],
             "first_frame_q": m.first_frame[q], "first_frame_r": m.first_frame[r],
             "last_frame_r": m.last_frame[r], "last_row_q": m.last_row[q],
             "last_row_r": m.last_row[r]}
    return Messages(exchanges=_exchange_table(segments, pairs, t_req_end, t_next, rules),
                    rule=rules, exchange_of_segment=exchange_of)


@dataclasses.dataclass
class _Msgs:
    """Each message (a side's run of segments from one start), ordered by conversation,
    side (server first) and number, with what :func:`_pair` needs of it; times from its
    first transmissions."""

    conv: np.ndarray
    client: np.ndarray
    msg: np.ndarray
    """Its number on its side of the conversation."""
    key: np.ndarray
    """Its start segment's key (DNS id, memcached opaque; 0 unkeyed)."""
    t0: np.ndarray
    t1: np.ndarray
    bytes: np.ndarray
    retx: np.ndarray
    """Its retransmitted segments."""
    first_frame: np.ndarray
    last_frame: np.ndarray
    last_row: np.ndarray
    """Row in ``segments`` of its last first-transmitted segment."""
    fresh_ts: np.ndarray
    """The first transmissions' times, message after message (each message's in time
    order) …"""
    fresh_first: np.ndarray
    """… and each message's first and (exclusive) last position there."""
    fresh_end: np.ndarray
    seg_row: np.ndarray
    """Every segment in a message (retransmissions too): its row in ``segments`` …"""
    msg_of_seg: np.ndarray
    """… and its message."""


def _messages(segments: pd.DataFrame, rows: np.ndarray, conv: np.ndarray, client: np.ndarray,
              number: np.ndarray, key: np.ndarray, fresh: np.ndarray, ts: np.ndarray
              ) -> _Msgs:
    """The messages of the segments ``rows`` (in conversation, then time order; ``number``
    each one's message on its side, ``conv`` and ``client`` its conversation and side).

    A side's messages follow each other in time, so one stable sort by (conversation,
    side) puts each message's segments together, in time order: a message's first segment
    is its start, its first and last first transmissions are its earliest and latest."""
    by_side = np.argsort(conv * 2 + client, kind="stable")  # server (False) first
    rows, conv, client, number = rows[by_side], conv[by_side], client[by_side], number[by_side]
    new = np.ones(rows.size, dtype=bool)
    new[1:] = (conv[1:] != conv[:-1]) | (client[1:] != client[:-1]) \
        | (number[1:] != number[:-1])
    msg_of_seg = np.cumsum(new) - 1
    first_seg = np.flatnonzero(new)
    timed = np.flatnonzero(fresh[rows])
    t_msg = msg_of_seg[timed]
    firsts = np.flatnonzero(np.r_[True, t_msg[1:] != t_msg[:-1]]) if timed.size \
        else np.zeros(0, dtype=np.int64)
    # a message starts with a first transmission: every message has one
    assert firsts.size == first_seg.size, "a message without a first transmission"
    lasts = np.r_[firsts[1:], timed.size] - 1
    fresh_rows = rows[timed]
    seg_len = segments["len"].to_numpy(np.int64)
    frame = segments["frame"].to_numpy(np.int64)
    return _Msgs(
        conv=conv[first_seg], client=client[first_seg], msg=number[first_seg],
        key=key[rows[first_seg]], t0=ts[fresh_rows[firsts]], t1=ts[fresh_rows[lasts]],
        bytes=np.add.reduceat(seg_len[fresh_rows], firsts) if firsts.size
        else np.zeros(0, dtype=np.int64),
        retx=np.bincount(msg_of_seg, weights=~fresh[rows],
                         minlength=first_seg.size).astype(np.int64),
        first_frame=frame[fresh_rows[firsts]], last_frame=frame[fresh_rows[lasts]],
        last_row=fresh_rows[lasts], fresh_ts=ts[fresh_rows], fresh_first=firsts,
        fresh_end=lasts + 1, seg_row=rows, msg_of_seg=msg_of_seg)


def _paired(m: _Msgs, by_time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Requests and their responses (messages, one exchange per position), in the order of
    the requests ``by_time`` (every request, ordered by conversation and time): the k-th
    request of a key in a conversation with its k-th response of that key (k counted in
    time), when the response did not start first."""
    if m.conv.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # each message's ordinal among its side's messages of its key, counted in time
    by_key = np.lexsort((m.t0, m.key, m.client, m.conv))
    c, cl, k = m.conv[by_key], m.client[by_key], m.key[by_key]
    group = np.r_[True, (c[1:] != c[:-1]) | (cl[1:] != cl[:-1]) | (k[1:] != k[:-1])]
    starts = np.flatnonzero(group)
    ordinal = np.empty(m.conv.size, dtype=np.int64)
    ordinal[by_key] = ranges(np.zeros(starts.size), np.diff(np.r_[starts, by_key.size]))[1]
    # a response and the request of the same (conversation, key, ordinal) side by side
    # (False sorts first: the response)
    joined = np.lexsort((m.client, ordinal, m.key, m.conv))
    a, b = joined[:-1], joined[1:]
    both = ~m.client[a] & m.client[b] & (m.conv[a] == m.conv[b]) & (m.key[a] == m.key[b]) \
        & (ordinal[a] == ordinal[b])
    r, q = a[both], b[both]
    kept = m.t0[r] >= m.t0[q]
    r, q = r[kept], q[kept]
    # in request order: the requests' order, not sorted again (its keys are distinct: a
    # request's number is its own in its conversation)
    response = np.full(m.conv.size, -1, dtype=np.int64)
    response[q] = r
    ranked = by_time[response[by_time] >= 0]
    return ranked, response[ranked]


def _last_at_or_before(values: np.ndarray, first: np.ndarray, end: np.ndarray,
                       limit: np.ndarray) -> np.ndarray:
    """Per range ``values[first:end]`` (each sorted): its last value at or before ``limit``
    (-1: none). A binary search of every range at once."""
    lo, hi = first.copy(), end.copy()
    while (lo < hi).any():
        go = lo < hi
        mid = (lo + hi) // 2
        below = go & (values[np.minimum(mid, values.size - 1)] <= limit)
        lo = np.where(below, mid + 1, lo)
        hi = np.where(go & ~below, mid, hi)
    return np.where(lo > first, values[np.maximum(lo - 1, 0)], -1)


def _column_at(column: pd.Series, rows: np.ndarray) -> Any:
    """A segment column at ``rows``: an address (categorical) as text made by Arrow from its
    codes (:func:`text_of_codes`: not a Python string per exchange, then checked)."""
    taken = column.take(rows)
    if isinstance(taken.dtype, pd.CategoricalDtype):
        return text_of_codes(taken)
    return taken.to_numpy()


def _exchange_table(segments: pd.DataFrame, pairs: dict[str, np.ndarray],
                    t_req_end: np.ndarray, t_next: np.ndarray, rules: np.ndarray
                    ) -> pd.DataFrame:
    """The exchanges as the lone view reports them (times in epoch seconds)."""
    # the request's flow (client → server) from its last segment's row; times in int64 ns
    # (epoch ns in float64 would round to 256 ns), seconds for the report
    request_rows = pairs["last_row_q"]
    t_req, t_resp, t_resp_end = pairs["t0_q"], pairs["t0_r"], pairs["t1_r"]

    def seconds(ns: np.ndarray) -> np.ndarray:
        return np.where(ns >= 0, ns / 1e9, np.nan)

    def micros(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
        return np.where((later >= 0) & (earlier >= 0), (later - earlier) / 1e3, np.nan)

    return pd.DataFrame({
        **{c: _column_at(segments[c], request_rows)
           for c in ("src", "sport", "dst", "dport", "proto")},
        "conversation": pairs["conv"],
        "rule": text_column(rules[pairs["conv"]]),
        "t_request": seconds(t_req),
        "t_request_end": seconds(t_req_end),
        "t_response": seconds(t_resp),
        "t_response_end": seconds(t_resp_end),
        "t_next": seconds(t_next),
        "request_bytes": pairs["bytes_q"],
        "response_bytes": pairs["bytes_r"],
        "request_to_response_us": micros(t_resp, t_req_end),
        "response_to_next_us": micros(t_next, t_resp_end),
        "retransmissions": pairs["retx"],
        "request_frame": pairs["first_frame_q"],
        "response_frame": pairs["first_frame_r"],
        "response_end_frame": pairs["last_frame_r"],
        "response_last": pairs["last_row_r"],
        "request_end_ns": t_req_end, "response_ns": t_resp, "response_end_ns": t_resp_end,
        "next_ns": t_next,
    })
