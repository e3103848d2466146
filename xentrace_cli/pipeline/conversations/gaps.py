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
* every other response → next gap above that threshold, every gap over :data:`TIGHT_US` in a
  conversation that does not answer tightly (or has no baseline), and every gap of
  :data:`IDLE_US` or more, is idle: reported apart (``idle_us``), kept out of the
  ``response_to_next`` statistics;
* a request → response gap is an anomaly when it stands above the same kind of threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import anomalies

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
#: Gaps over the threshold that make up this share of their baseline's gaps (three or more)
#: are a mode of their own (another kind of request, think time), not stalls.
RECURRING_SHARE = 0.10


def _robust(values: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """Per group: count, median and MAD of the finite values."""
    frame = pd.DataFrame({"g": groups.to_numpy(), "v": values.to_numpy(float)})
    frame = frame[np.isfinite(frame["v"])]
    stats = frame.groupby("g")["v"].agg(count="size", median="median")
    dev = (frame["v"] - stats["median"].reindex(frame["g"]).to_numpy()).abs()
    stats["mad"] = dev.groupby(frame["g"].to_numpy()).median()
    return stats


def baselines(flows: pd.DataFrame, gap: str) -> pd.DataFrame:
    """Per exchange: the baseline its ``gap`` is judged by — ``count``, ``median``, ``mad``,
    ``threshold`` (µs), ``scope`` (``conversation``, ``kind`` or ``none``) and ``group`` (an
    id shared by the exchanges judged by the same baseline; -1 for none)."""
    values = flows[f"{gap}_us"]
    conv = pd.Series(flows["conversation"].to_numpy(np.int64), index=flows.index)
    kind = pd.Series(pd.MultiIndex.from_arrays(
        [flows["dst"].astype(str), flows["dport"], flows["proto"]]).factorize()[0],
        index=flows.index)
    out = pd.DataFrame(index=flows.index)
    per_conv = _robust(values, conv).reindex(conv.to_numpy())
    per_kind = _robust(values, kind).reindex(kind.to_numpy())
    own = (per_conv["count"].fillna(0) >= anomalies.MIN_SAMPLES).to_numpy()
    like = (per_kind["count"].fillna(0) >= anomalies.MIN_SAMPLES).to_numpy()
    for column in ("count", "median", "mad"):
        out[column] = np.where(own, per_conv[column].to_numpy(float),
                               np.where(like, per_kind[column].to_numpy(float), np.nan))
    out["scope"] = np.where(own, "conversation", np.where(like, "kind", "none"))
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
            idle = finite & ~delay & (over | (~tight & (values > TIGHT_US))
                                      | (values >= IDLE_US))
            stands_out = delay
        gap_excess = np.where(stands_out, values - np.nan_to_num(base["median"].to_numpy()),
                              -np.inf)
        better = stands_out & (gap_excess > excess)
        label[better] = gap
        excess = np.where(better, gap_excess, excess)
    return label, np.where(np.isfinite(excess), excess, np.nan), idle


def stalls(flows: pd.DataFrame, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group the anomalous gaps of each client into stalls, and find each stall's exchange.

    One stall often shows in several conversations: a client serving four connections in
    turn that freezes for 100 ms leaves a long response → next gap on all four. The gaps of
    one client address that overlap in time form one stall; the exchange where it sits is
    the one whose response began last before the client first acted again — the response
    it had just been given when it went quiet (its own gaps need not stand out: a response
    whose delivery the stall cut in two). Returns per exchange the stall id
    (-1: none) and whether it is the stall's own exchange (``stalled``).
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
                          "row": rows}).sort_values(["client", "start"], kind="stable")
    reach = gaps_.groupby("client")["end"].cummax()
    before = reach.groupby(gaps_["client"]).shift(1)
    new = before.isna() | (gaps_["start"] > before)
    gaps_["stall"] = np.cumsum(new.to_numpy()) - 1
    group[gaps_["row"].to_numpy()] = gaps_["stall"].to_numpy()
    # the client woke at the first end of the stall's gaps: the last response (of any of its
    # exchanges) to begin before that is the one it had been given
    windows = gaps_.groupby("stall").agg(client=("client", "first"), start=("start", "min"),
                                         end=("end", "min")).reset_index()
    responses = pd.DataFrame({"client": client, "t": flows["response_ns"].to_numpy(np.int64),
                              "exchange": np.arange(n)}).sort_values("t", kind="stable")
    found = pd.merge_asof(windows.sort_values("end").rename(columns={"end": "t"}), responses,
                          on="t", by="client", direction="backward")
    hit = found["exchange"].notna().to_numpy()
    roots = found["exchange"].to_numpy()[hit].astype(np.int64)
    inside = flows["response_ns"].to_numpy(np.int64)[roots] >= found["start"].to_numpy()[hit]
    stalled[roots[inside]] = True
    group[roots[inside]] = found["stall"].to_numpy()[hit][inside]
    return group, stalled
