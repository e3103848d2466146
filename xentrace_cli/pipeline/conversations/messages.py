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

import numpy as np
import pandas as pd

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
    firsts = segments.drop_duplicates("flow")
    a = firsts["src"].astype(str) + "|" + firsts["sport"].astype(str)
    b = firsts["dst"].astype(str) + "|" + firsts["dport"].astype(str)
    swap = (a > b).to_numpy()
    key = pd.DataFrame({"lo": np.where(swap, b, a), "hi": np.where(swap, a, b),
                        "proto": firsts["proto"].to_numpy()})
    conv_of_flow = pd.Series(key.groupby(["lo", "hi", "proto"], sort=True).ngroup().to_numpy(),
                             index=firsts["flow"].to_numpy())
    return conv_of_flow.reindex(flow).to_numpy(np.int64)


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
        req = np.bincount(conv, weights=(marks.request[rule] & fresh), minlength=n_conv)
        resp = np.bincount(conv, weights=(marks.response[rule] & fresh), minlength=n_conv)
        score[:, k] = np.where(req > 0, req + resp, 0.0)
    # argmax keeps the first of equal scores: RULES is ordered most specific first
    return np.argmax(score, axis=1)


def _client_flows(conv: np.ndarray, flow: np.ndarray, ts: np.ndarray, n_conv: int,
                  requests: np.ndarray, turn_rule: np.ndarray) -> np.ndarray:
    """Per conversation: the flow id of its client (most request headers; for turn rules,
    or without any, the side that sent the first data)."""
    first = pd.DataFrame({"conv": conv, "ts": ts, "flow": flow}).sort_values(
        ["conv", "ts"], kind="stable").groupby("conv")["flow"].first()
    client = first.reindex(np.arange(n_conv)).to_numpy(np.int64)
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
    client_flow = _client_flows(conv, flow, ts, n_conv, req_mark & fresh, turn)
    is_client = flow == client_flow[conv]

    order = np.lexsort((np.arange(n), ts, conv))
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
    """Messages of each side, requests paired with responses, and each segment's exchange."""
    rows = order[number >= 0]
    seg = pd.DataFrame({
        "row": rows, "conv": c_s[number >= 0], "client": cl_s[number >= 0],
        "msg": number[number >= 0], "ts": ts[rows], "fresh": fresh[rows],
        "len": segments["len"].to_numpy(np.int64)[rows],
        "frame": segments["frame"].to_numpy(np.int64)[rows],
        "start": start[number >= 0], "key": key[rows]})
    timed = seg[seg["fresh"]]
    grouped = timed.groupby(["conv", "client", "msg"], sort=True)
    msgs = grouped.agg(t0=("ts", "min"), t1=("ts", "max"), bytes=("len", "sum"),
                       first_frame=("frame", "first"), last_row=("row", "last"),
                       last_frame=("frame", "last"))
    heads = seg[seg["start"]].set_index(["conv", "client", "msg"])["key"]
    msgs["key"] = heads.reindex(msgs.index).to_numpy()
    retx = (~seg["fresh"]).groupby([seg["conv"], seg["client"], seg["msg"]]).sum()
    msgs["retx"] = retx.reindex(msgs.index).fillna(0).to_numpy(np.int64)
    msgs = msgs.reset_index()
    # the ordinal of each message among its conversation's messages with the same key
    msgs = msgs.sort_values(["conv", "client", "key", "t0"], kind="stable")
    msgs["ordinal"] = msgs.groupby(["conv", "client", "key"]).cumcount()
    reqs = msgs[msgs["client"]]
    resps = msgs[~msgs["client"]]
    pairs = reqs.merge(resps, on=["conv", "key", "ordinal"], suffixes=("_q", "_r"))
    pairs = pairs[pairs["t0_r"] >= pairs["t0_q"]].sort_values(["conv", "t0_q"], kind="stable")
    pairs = pairs.reset_index(drop=True)
    # the request's last byte before its response began (a server may answer early)
    req_segs = timed[timed["client"]].merge(
        pairs[["conv", "msg_q", "t0_r"]].rename(columns={"msg_q": "msg"}), on=["conv", "msg"])
    req_end = req_segs[req_segs["ts"] <= req_segs["t0_r"]].groupby(["conv", "msg"])["ts"].max()
    t_req_end = req_end.reindex(pd.MultiIndex.from_arrays(
        [pairs["conv"], pairs["msg_q"]]), fill_value=-1).to_numpy(np.int64)
    # the client's next request in the same conversation, when it came after the response
    nxt = reqs.sort_values(["conv", "t0"], kind="stable")
    nxt = nxt.assign(next_t0=nxt.groupby("conv")["t0"].shift(-1, fill_value=-1))
    t_next = nxt.set_index(["conv", "msg"])["next_t0"].reindex(pd.MultiIndex.from_arrays(
        [pairs["conv"], pairs["msg_q"]]), fill_value=-1).to_numpy(np.int64)
    t_next = np.where(t_next > pairs["t1_r"].to_numpy(np.int64), t_next, -1)
    exchange_of = _exchange_of_segments(seg, pairs, n)
    return Messages(exchanges=_exchange_table(segments, pairs, t_req_end, t_next, rules),
                    rule=rules, exchange_of_segment=exchange_of)


def _exchange_of_segments(seg: pd.DataFrame, pairs: pd.DataFrame, n: int) -> np.ndarray:
    """Per input segment, the exchange (row of ``pairs``) its message belongs to."""
    out = np.full(n, -1, dtype=np.int64)
    ids = pd.concat([
        pd.DataFrame({"conv": pairs["conv"], "client": True, "msg": pairs["msg_q"],
                      "exchange": np.arange(len(pairs))}),
        pd.DataFrame({"conv": pairs["conv"], "client": False, "msg": pairs["msg_r"],
                      "exchange": np.arange(len(pairs))})])
    placed = seg[["row", "conv", "client", "msg"]].merge(ids, on=["conv", "client", "msg"])
    out[placed["row"].to_numpy()] = placed["exchange"].to_numpy()
    return out


def _exchange_table(segments: pd.DataFrame, pairs: pd.DataFrame, t_req_end: np.ndarray,
                    t_next: np.ndarray, rules: np.ndarray) -> pd.DataFrame:
    """The exchanges as the lone view reports them (times in epoch seconds)."""
    # the request's flow (client → server) from its last segment's row; times in int64 ns
    # (epoch ns in float64 would round to 256 ns), seconds for the report
    request_rows = segments.iloc[pairs["last_row_q"].to_numpy(np.int64)]
    t_req = pairs["t0_q"].to_numpy(np.int64)
    t_resp = pairs["t0_r"].to_numpy(np.int64)
    t_resp_end = pairs["t1_r"].to_numpy(np.int64)

    def seconds(ns: np.ndarray) -> np.ndarray:
        return np.where(ns >= 0, ns / 1e9, np.nan)

    def micros(later: np.ndarray, earlier: np.ndarray) -> np.ndarray:
        return np.where((later >= 0) & (earlier >= 0), (later - earlier) / 1e3, np.nan)

    return pd.DataFrame({
        **{c: request_rows[c].to_numpy() for c in ("src", "sport", "dst", "dport", "proto")},
        "conversation": pairs["conv"].to_numpy(np.int64),
        "rule": rules[pairs["conv"].to_numpy(np.int64)].astype(str),
        "t_request": seconds(t_req),
        "t_request_end": seconds(t_req_end),
        "t_response": seconds(t_resp),
        "t_response_end": seconds(t_resp_end),
        "t_next": seconds(t_next),
        "request_bytes": pairs["bytes_q"].to_numpy(np.int64),
        "response_bytes": pairs["bytes_r"].to_numpy(np.int64),
        "request_to_response_us": micros(t_resp, t_req_end),
        "response_to_next_us": micros(t_next, t_resp_end),
        "retransmissions": (pairs["retx_q"] + pairs["retx_r"]).to_numpy(np.int64),
        "request_frame": pairs["first_frame_q"].to_numpy(np.int64),
        "response_frame": pairs["first_frame_r"].to_numpy(np.int64),
        "response_end_frame": pairs["last_frame_r"].to_numpy(np.int64),
        "response_last": pairs["last_row_r"].to_numpy(np.int64),
        "request_end_ns": t_req_end, "response_ns": t_resp, "response_end_ns": t_resp_end,
        "next_ns": t_next,
    })
