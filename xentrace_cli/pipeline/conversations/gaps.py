"""Delay versus idle: which gaps of a conversation are latency, and which are nobody waiting.

Two gaps per exchange:

* request → response (last request byte → first response byte) is always the far side's
  time: a delay;
* response → next request (last response byte → the client's next request on the same
  conversation) is a delay only where the client normally answers tightly. After a completed
  exchange a client may simply have nothing to send — a browser's keep-alive connection, a
  user's think time, a polling interval: that gap is *idle*, and never an anomaly.

The rule (``README.md``, "Delay versus idle"): each gap is judged against the robust baseline
(median, MAD) of the same gap in the same conversation, or — with fewer than
``anomalies.MIN_SAMPLES`` of them — in the same kind of conversation (same server address,
port and transport). A conversation *answers tightly* when that baseline's median is at most
:data:`TIGHT_US`. Then:

* a response → next gap is a delay anomaly when the conversation answers tightly, the gap
  stands above ``median + max(K·σ, floor)`` (as stage anomalies, ``anomalies.py``; the
  floor is :data:`FLOORS`), and it is shorter than :data:`IDLE_US` (a pause of a second or
  more is a person or a timer);
* gaps over that threshold that recur (:data:`RECURRING_SHARE` of the conversation's gaps or
  more: the pause after every page a user reads, the slower half of alternating SETs and
  GETs) are a mode of their own: one of them stands out only above that mode's own
  threshold;
* a gap during which the client's longest silence (no request on any of its conversations)
  is shorter than :data:`BUSY_SILENCE_SHARE` of it is idle: the client was busy on its other
  connections, not frozen;
* every other response → next gap above that threshold, every gap over :data:`TIGHT_US` in a
  conversation that does not answer tightly (or has no baseline), and every gap of
  :data:`IDLE_US` or more, is idle: reported apart (``idle_us``), kept out of the
  ``response_to_next`` statistics;
* a request → response gap is an anomaly when it stands above the same kind of threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...groups import group_time_order, unique
from .. import anomalies
from .codes import first_seen_codes

#: A conversation whose usual response → next gap is at most this answers tightly (µs).
TIGHT_US = 50_000.0
#: A response → next gap of this or more is a pause (a person, a timer), never a delay (µs).
IDLE_US = 1_000_000.0
#: The two gaps, as the analysis table names them.
GAPS: tuple[str, ...] = ("request_to_response", "response_to_next")
#: Least excess over the usual gap before it stands out (µs): the far side's time as a
#: stage's (``anomalies.FLOOR_US``); the client's own, two timer ticks — an application's
#: work between a response and its next request jitters by milliseconds (scheduling, timers,
#: garbage collection) on any busy host.
FLOORS: dict[str, float] = {"request_to_response": anomalies.FLOOR_US,
                            "response_to_next": 20_000.0}
#: A response → next gap during which the client's longest silence (no request on any of
#: its conversations) is shorter than this share of the gap is idle: the client was busy on
#: its other connections and simply did not use this one (a pool picking connections at
#: random), it was not frozen.
BUSY_SILENCE_SHARE = 0.5
#: Gaps over the threshold that make up this share of their baseline's gaps (three or more)
#: are a mode of their own (another kind of request, think time), not stalls.
RECURRING_SHARE = 0.10


def _robust(values: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """Per group (the index, in ascending order, as a group-by gives it): count, median and
    MAD of the finite values."""
    g, v = groups.to_numpy(), values.to_numpy(float)
    finite = np.isfinite(v)
    g, v = g[finite], v[finite]
    keys, codes = unique(g, return_inverse=True)
    median, count = _medians(codes, v, keys.size)
    mad, _ = _medians(codes, np.abs(v - median[codes]), keys.size)
    return pd.DataFrame({"count": count, "median": median, "mad": mad},
                        index=pd.Index(keys, name="g"))


def _medians(codes: np.ndarray, values: np.ndarray, groups: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per group code, the median of its values (the mean of the middle two for an even
    count, as pandas' group-by median takes it) and the count: one sort by (group, value),
    not a hash group-by per statistic."""
    count = np.bincount(codes, minlength=groups)
    start = np.r_[0, np.cumsum(count)[:-1]]
    ordered = _by_group_then_value(codes, values, count)
    half = count // 2
    upper = ordered[np.minimum(start + half, max(ordered.size - 1, 0))] if ordered.size \
        else np.zeros(groups)
    lower = ordered[np.maximum(start + half - 1, 0)] if ordered.size else np.zeros(groups)
    median = np.where(count % 2 == 1, upper, (lower + upper) / 2)
    return np.where(count > 0, median, np.nan), count.astype(np.int64)


#: Groups up to which :func:`_by_group_then_value` sorts each group's values on its own.
SORTED_ONE_BY_ONE = 1024


def _by_group_then_value(codes: np.ndarray, values: np.ndarray, count: np.ndarray
                         ) -> np.ndarray:
    """``values`` ordered by group code, then value (``count``: each group's values, by
    code), as ``np.lexsort((values, codes))`` orders them. With few groups
    (conversations) and no value of negative sign: by group (a stable radix sort of the
    codes), then each group's stretch sorted in place (numpy's quick sort: equal values in
    any order, which is the same array when equal values are the same number; a zero of
    either sign would not be), under a fifth of the stable sort's time on 157,000 gaps."""
    if count.size > SORTED_ONE_BY_ONE or count.size >= 1 << 16 or np.signbit(values).any():
        return values[group_time_order(codes, values)]
    ordered = values[np.argsort(codes.astype(np.uint16), kind="stable")]
    ends = np.cumsum(count)
    for first, size in zip((ends - count).tolist(), count.tolist(), strict=True):
        if size > 1:
            ordered[first:first + size].sort()
    return ordered


def baselines(flows: pd.DataFrame, gap: str) -> pd.DataFrame:
    """Per exchange: the baseline its ``gap`` is judged by — ``count``, ``median``, ``mad``,
    ``threshold`` (µs), ``scope`` (``conversation``, ``kind`` or ``none``) and ``group`` (an
    id shared by the exchanges judged by the same baseline; -1 for none)."""
    values = flows[f"{gap}_us"]
    conv = pd.Series(flows["conversation"].to_numpy(np.int64), index=flows.index)
    kind = pd.Series(first_seen_codes(flows["dst"].astype(str), flows["dport"],
                                       flows["proto"]), index=flows.index)
    out = pd.DataFrame(index=flows.index)
    per_conv = _robust(values, conv).reindex(conv.to_numpy())
    per_kind = _robust(values, kind).reindex(kind.to_numpy())
    own = (per_conv["count"].fillna(0) >= anomalies.MIN_SAMPLES).to_numpy()
    like = (per_kind["count"].fillna(0) >= anomalies.MIN_SAMPLES).to_numpy()
    for column in ("count", "median", "mad"):
        out[column] = np.where(own, per_conv[column].to_numpy(float),
                               np.where(like, per_kind[column].to_numpy(float), np.nan))
    # by codes: a categorical of the three names, not a string per exchange
    out["scope"] = pd.Categorical.from_codes(np.where(own, 0, np.where(like, 1, 2)),
                                             categories=["conversation", "kind", "none"])
    # one id space for both scopes: conversations first, then kinds (-1: none)
    n_conv = int(conv.max()) + 1 if len(conv) else 0
    out["group"] = np.where(own, conv.to_numpy(), np.where(like, n_conv + kind.to_numpy(), -1))
    spread = np.maximum(anomalies.ROBUST_K * anomalies.MAD_TO_SIGMA * out["mad"], FLOORS[gap])
    out["threshold"] = np.where(own | like, out["median"] + spread, np.inf)
    return out


def _second_mode(values: np.ndarray, over: np.ndarray, base: pd.DataFrame, floor: float
                 ) -> np.ndarray:
    """Of the values over their baseline's threshold, those that stand out from the rest of
    them too. Where the values over the threshold are a share of at least
    :data:`RECURRING_SHARE` of their baseline's (and three or more), they are a mode of their
    own — another kind of request, a think time, a polling interval — judged as a baseline
    of their own; else every one of them stands out."""
    out = over.copy()
    if not over.any():
        return out
    group = base["group"].to_numpy()
    second = _robust(pd.Series(values[over]), pd.Series(group[over])).reindex(group)
    count = second["count"].fillna(0).to_numpy()
    recurring = (count >= 3) & (count >= RECURRING_SHARE * base["count"].fillna(0).to_numpy())
    limit = second["median"].to_numpy() + np.maximum(
        anomalies.ROBUST_K * anomalies.MAD_TO_SIGMA * second["mad"].to_numpy(), floor)
    with np.errstate(invalid="ignore"):
        out &= ~recurring | (values > limit)
    return out


def judge(flows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per exchange: the anomalous gap ('' none), its excess over the usual (µs), and whether
    its response → next gap is idle."""
    n = len(flows)
    label = np.full(n, "", dtype=object)
    excess = np.full(n, -np.inf)
    idle = np.zeros(n, dtype=bool)
    for gap in GAPS:
        base = baselines(flows, gap)
        values = flows[f"{gap}_us"].to_numpy(float)
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            over = finite & (values > base["threshold"].to_numpy())
        stands_out = _second_mode(values, over, base, FLOORS[gap])
        if gap == "response_to_next":
            tight = (base["median"] <= TIGHT_US).to_numpy()
            delay = stands_out & tight & (values < IDLE_US)
            delay[delay] &= ~_busy_elsewhere(flows, np.flatnonzero(delay))
            idle = finite & ~delay & (over | (~tight & (values > TIGHT_US))
                                      | (values >= IDLE_US))
            stands_out = delay
        gap_excess = np.where(stands_out, values - np.nan_to_num(base["median"].to_numpy()),
                              -np.inf)
        better = stands_out & (gap_excess > excess)
        label[better] = gap
        excess = np.where(better, gap_excess, excess)
    return label, np.where(np.isfinite(excess), excess, np.nan), idle


def _busy_elsewhere(flows: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """Of these exchanges, those whose response → next gap the client filled with requests on
    its other conversations (:data:`BUSY_SILENCE_SHARE`)."""
    busy = np.zeros(rows.size, dtype=bool)
    client = flows["src"].astype(str).to_numpy()
    sent = flows["request_end_ns"].to_numpy(np.int64)
    start = flows["response_end_ns"].to_numpy(np.int64)[rows]
    end = flows["next_ns"].to_numpy(np.int64)[rows]
    for who in np.unique(client[rows]):  # one pass per client address, not per exchange
        mine = client[rows] == who
        times = np.sort(sent[(client == who) & (sent >= 0)])
        longest = longest_silence(times, start[mine], end[mine])
        busy[mine] = longest < BUSY_SILENCE_SHARE * (end[mine] - start[mine])
    return busy


def longest_silence(times: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """For each interval [start, end]: the longest stretch without any of the sorted
    ``times`` in it (ns; the whole interval when none falls inside)."""
    lo = np.searchsorted(times, start, side="right")
    hi = np.searchsorted(times, end, side="left")
    some = hi > lo
    first = np.where(some, times[np.minimum(lo, len(times) - 1)] - start, end - start)
    last = np.where(some, end - times[np.maximum(hi - 1, 0)], 0)
    longest = np.maximum(first, last)
    steps = np.append(np.diff(times), 0)  # steps[i]: times[i] → times[i + 1]
    inner = some & (hi - 1 > lo)
    if inner.any():
        bounds = np.stack([lo[inner], hi[inner] - 1], axis=1).ravel()
        longest[inner] = np.maximum(longest[inner],
                                    np.maximum.reduceat(steps, bounds)[::2])
    return longest


def stalls(flows: pd.DataFrame, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group the anomalous gaps of each client into stalls, and find each stall's exchange.

    One stall often shows in several conversations: a client serving four connections in
    turn that freezes for 100 ms leaves a long response → next gap on all four. The gaps of
    one client address that overlap in time form one stall. Returns per exchange the stall
    id (-1: none) and whether it is the stall's own exchange (``stalled``, see
    :func:`_stall_roots`).
    """
    n = len(flows)
    group = np.full(n, -1, dtype=np.int64)
    stalled = np.zeros(n, dtype=bool)
    server = label == "request_to_response"
    start = np.where(server, flows["request_end_ns"], flows["response_end_ns"]).astype(np.int64)
    end = np.where(server, flows["response_ns"], flows["next_ns"]).astype(np.int64)
    rows = np.flatnonzero((label != "") & (start >= 0) & (end >= start))
    if rows.size == 0:
        return group, stalled
    client = flows["src"].astype(str).to_numpy()
    gaps_ = pd.DataFrame({"client": client[rows], "start": start[rows], "end": end[rows],
                          "row": rows, "server": server[rows]}
                         ).sort_values(["client", "start"], kind="stable")
    reach = gaps_.groupby("client")["end"].cummax()
    before = reach.groupby(gaps_["client"]).shift(1)
    new = before.isna() | (gaps_["start"] > before)
    gaps_["stall"] = np.cumsum(new.to_numpy()) - 1
    group[gaps_["row"].to_numpy()] = gaps_["stall"].to_numpy()
    far_side = gaps_.groupby("stall")["server"].transform("all").to_numpy(bool)
    for roots, ids in (_far_side_roots(gaps_[far_side]),
                       _stall_roots(flows, gaps_[~far_side], client)):
        stalled[roots] = True
        group[roots] = ids
    return group, stalled


def _far_side_roots(gaps_: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Of stalls made of request → response gaps only (the far side's time), the exchange
    that waited longest for its response, and the stall ids."""
    if gaps_.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    longest = gaps_.loc[(gaps_["end"] - gaps_["start"]).groupby(gaps_["stall"]).idxmax()]
    return longest["row"].to_numpy(np.int64), longest["stall"].to_numpy(np.int64)


def _stall_roots(flows: pd.DataFrame, gaps_: pd.DataFrame, client: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each stall's own exchange (rows of ``flows``) and its stall id, for stalls with a
    response → next gap (the client's time).

    Within the stall's span the client froze where it was silent longest: between two of its
    requests (on any conversation) with nothing sent in between. The first response to
    arrive after the request before that silence is the one it froze on — given to it and
    left unanswered; responses that came later arrived during the stall. When the capture
    itself went blind (the guest preempted), that response may be cut in two by the stall:
    its own gaps need not stand out. A silence with no response in it has no exchange.
    """
    windows = gaps_.groupby("stall").agg(client=("client", "first"), t=("start", "min"),
                                         end=("end", "max")).reset_index()
    silences = _silences(client, flows["request_end_ns"].to_numpy(np.int64))
    # the window a silence overlaps: the last to open before the silence ends (one client's
    # windows do not overlap), if the silence began before it closed
    ends = silences.assign(t=silences["t"] + silences["silence"], began=silences["t"])
    inside = pd.merge_asof(ends.sort_values("t"), windows.rename(columns={"t": "opened"})
                           .assign(t=windows["t"]).sort_values("t"), on="t", by="client",
                           direction="backward").dropna(subset=["stall"])
    inside = inside[inside["began"] < inside["end"]]
    if inside.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    inside = inside.assign(overlap=np.minimum(inside["t"], inside["end"])
                           - np.maximum(inside["began"], inside["opened"]))
    longest = inside.loc[inside.groupby("stall")["overlap"].idxmax()]
    longest = longest.assign(t=longest["began"].astype(np.int64))
    responses = pd.DataFrame({"client": client, "t": flows["response_ns"].to_numpy(np.int64),
                              "exchange": np.arange(len(flows))})
    found = pd.merge_asof(longest.sort_values("t"),
                          responses.assign(response=responses["t"]).sort_values("t"), on="t",
                          by="client", direction="forward")
    hit = (found["exchange"].notna()
           & (found["response"] < found["t"] + found["silence"])).to_numpy()
    return (found["exchange"].to_numpy()[hit].astype(np.int64),
            found["stall"].to_numpy()[hit].astype(np.int64))


def _silences(client: np.ndarray, sent_ns: np.ndarray) -> pd.DataFrame:
    """Per client, each interval between two consecutive requests: from ``t`` for
    ``silence`` ns."""
    sends = pd.DataFrame({"client": client, "t": sent_ns})
    sends = sends[sends["t"] >= 0].sort_values(["client", "t"], kind="stable")
    following = sends.groupby("client")["t"].shift(-1)
    sends["silence"] = following - sends["t"]
    return sends.dropna(subset=["silence"]).astype({"silence": np.int64})
