"""What one capture alone tells: request → response, response → next action, retransmissions.

Without a second capture point nothing can be split across owners, but a single capture (the
guest's, typically) still shows the conversation: per connection, the data segments form
alternating messages. A *request* is a run of data from the side that spoke first (the
client); the *response* is the run that answers it. Two intervals follow:

* ``request_to_response_us``: last request byte → first response byte (the far side's time),
* ``response_to_next_us``: last response byte → the client's next request (the client's own
  delay — in a guest capture, the guest stack and the application acting on the response).

"The black 0.1 second" shows here as a response that arrived and a ``response_to_next`` of
100 ms. Gaps far outside the connection's normal range are flagged like stage anomalies.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import anomalies
from .match import FLOW_COLUMNS, first_transmissions
from .model import LONE_INTERVALS, format_flow
from .units import format_duration

#: The two intervals of the lone view, named as merged intervals are (``<from>_to_<to>``);
#: defined with the table's columns in :mod:`model`.
INTERVALS: tuple[str, ...] = LONE_INTERVALS


def connection_ids(segments: pd.DataFrame) -> np.ndarray:
    """An id per connection (both directions of a flow share it), from the ``flow`` ids."""
    n = len(segments)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    flow = segments["flow"].to_numpy(np.int64)
    # one row per flow: its endpoints, ordered so that both directions give the same key
    firsts = segments.drop_duplicates("flow")
    a = firsts["src"].astype(str) + "|" + firsts["sport"].astype(str)
    b = firsts["dst"].astype(str) + "|" + firsts["dport"].astype(str)
    swap = (a > b).to_numpy()
    key = pd.DataFrame({"lo": np.where(swap, b, a), "hi": np.where(swap, a, b),
                        "proto": firsts["proto"].to_numpy()})
    conn_of_flow = pd.Series(key.groupby(["lo", "hi", "proto"], sort=True).ngroup().to_numpy(),
                             index=firsts["flow"].to_numpy())
    return conn_of_flow.reindex(flow).to_numpy(np.int64)


def exchanges(segments: pd.DataFrame, fresh: np.ndarray | None = None) -> pd.DataFrame:
    """One row per request/response exchange of each connection in one capture's segments.

    ``segments`` comes from :func:`match.assign_flows`; ``fresh`` is its
    :func:`match.first_transmissions` when the caller has it already. Columns: the request's flow
    (``src, sport, dst, dport, proto``: client → server), ``t_request``, ``t_request_end``,
    ``t_response``, ``t_response_end``, ``t_next`` (epoch seconds of the capture's clock, NaN
    when absent), ``request_bytes``, ``response_bytes``, ``request_to_response_us``,
    ``response_to_next_us``, ``retransmissions``, ``response_last`` (row in ``segments`` of
    the response's last segment), ``anomaly`` (interval name or ''), ``stall``.
    """
    columns = [*FLOW_COLUMNS, "t_request", "t_request_end", "t_response", "t_response_end",
               "t_next", "request_bytes", "response_bytes", "request_to_response_us",
               "response_to_next_us", "retransmissions", "response_last", "anomaly", "stall"]
    if len(segments) == 0:
        return pd.DataFrame({c: [] for c in columns})
    conn = connection_ids(segments)
    if fresh is None:
        fresh = first_transmissions(segments)
    ts = segments["ts_ns"].to_numpy()
    order = np.lexsort((ts, conn))
    conn_s, ts_s = conn[order], ts[order]
    forward = _forward(segments, conn)[order]
    # a message is a run of segments of one connection in one direction
    new = np.ones(order.size, dtype=bool)
    new[1:] = (conn_s[1:] != conn_s[:-1]) | (forward[1:] != forward[:-1])
    run = np.cumsum(new) - 1
    n_runs = int(run[-1]) + 1
    first_row = order[new]
    last_pos = np.r_[np.flatnonzero(new)[1:] - 1, order.size - 1]
    run_conn = conn_s[new]
    run_fwd = forward[new]
    run_t0 = ts_s[new]
    run_t1 = ts_s[last_pos]
    run_bytes = np.bincount(run, weights=segments["len"].to_numpy()[order], minlength=n_runs)
    run_retx = np.bincount(run, weights=(~fresh[order]).astype(float), minlength=n_runs)
    # exchange k: run i is a request (forward), run i+1 its response in the same connection
    i = np.flatnonzero(run_fwd[:-1] & ~run_fwd[1:] & (run_conn[:-1] == run_conn[1:]))
    req = segments.iloc[first_row[i]]
    # the client's next action: its next request on any connection after the response
    client = segments["src"].iloc[first_row].astype(str).to_numpy()
    t_next_ns = _next_request(client, run_fwd, run_t0, client[i], run_t1[i + 1])
    has_next = t_next_ns >= 0
    out = pd.DataFrame({
        **{c: req[c].to_numpy() for c in FLOW_COLUMNS},
        "t_request": run_t0[i] / 1e9,
        "t_request_end": run_t1[i] / 1e9,
        "t_response": run_t0[i + 1] / 1e9,
        "t_response_end": run_t1[i + 1] / 1e9,
        "t_next": np.where(has_next, t_next_ns / 1e9, np.nan),
        "request_bytes": run_bytes[i].astype(np.int64),
        "response_bytes": run_bytes[i + 1].astype(np.int64),
        "request_to_response_us": (run_t0[i + 1] - run_t1[i]) / 1e3,
        "response_to_next_us": np.where(has_next, (t_next_ns - run_t1[i + 1]) / 1e3, np.nan),
        "retransmissions": (run_retx[i] + run_retx[i + 1]).astype(np.int64),
        "response_last": order[last_pos[i + 1]],
    })
    label, base = anomalies.detect({name: out[f"{name}_us"].to_numpy(float)
                                    for name in INTERVALS})
    out["anomaly"] = label.astype(str)
    # a stall is named by how far it stands above the usual gap (the baseline's median)
    excess = np.where(label == "request_to_response",
                      out["request_to_response_us"] - base["request_to_response"].median_us,
                      out["response_to_next_us"] - base["response_to_next"].median_us)
    stall = anomalies.name_stall(excess)
    out["stall"] = np.where(label != "", stall, "").astype(str)
    return out


def _next_request(client: np.ndarray, forward: np.ndarray, t0: np.ndarray,
                  who: np.ndarray, after_ns: np.ndarray) -> np.ndarray:
    """First request run of client ``who[k]`` (any connection) starting after ``after_ns[k]``."""
    requests = pd.DataFrame({"client": client[forward], "t": t0[forward]}).sort_values("t")
    queries = pd.DataFrame({"client": who, "t": after_ns, "k": np.arange(who.size)})
    if len(requests) == 0 or len(queries) == 0:
        return np.full(who.size, -1, dtype=np.int64)
    times = requests["t"].to_numpy(np.int64)
    requests["pos"] = np.arange(len(requests))  # small integers survive the float NaN upcast
    merged = pd.merge_asof(queries.sort_values("t"), requests, on="t", by="client",
                           direction="forward", allow_exact_matches=False)
    out = np.full(who.size, -1, dtype=np.int64)
    found = merged["pos"].notna().to_numpy()
    out[merged["k"].to_numpy()[found]] = times[merged["pos"].to_numpy()[found].astype(np.int64)]
    return out


def _forward(segments: pd.DataFrame, conn: np.ndarray) -> np.ndarray:
    """True for segments from the side that sent the connection's first data (the client)."""
    ts = segments["ts_ns"].to_numpy()
    flow = segments["flow"].to_numpy()
    first = pd.DataFrame({"conn": conn, "ts": ts, "flow": flow}).sort_values(
        ["conn", "ts"], kind="stable").groupby("conn")["flow"].first()
    return flow == first.reindex(conn).to_numpy()


def notes(flows: pd.DataFrame, *, limit: int = 5) -> list[str]:
    """Sentences for the report: per connection, and the gaps that stand out."""
    out: list[str] = []
    if len(flows) == 0:
        return out
    grouped = flows.groupby([*FLOW_COLUMNS], sort=False, observed=True)
    for key, part in list(grouped)[:limit]:
        src, sport, dst, dport, _ = key
        server = np.nanmedian(part["request_to_response_us"]) if len(part) else np.nan
        client = part["response_to_next_us"].to_numpy(float)
        client_med = np.nanmedian(client) if np.isfinite(client).any() else np.nan
        out.append(
            f"{format_flow(src, sport, dst, dport)}: {len(part)} exchanges, request → response "
            f"median {format_duration(server)}, response → next request median "
            f"{format_duration(client_med)}, "
            f"{int(part['retransmissions'].sum())} retransmitted segments.")
    flagged = flows[flows["anomaly"] != ""]
    for _, row in flagged.head(limit).iterrows():
        what = ("the far side took {} to respond" if row["anomaly"] == "request_to_response"
                else "the response arrived and the next request came {} later")
        gap = (row["request_to_response_us"] if row["anomaly"] == "request_to_response"
               else row["response_to_next_us"])
        stall = f" ({row['stall']})" if row["stall"] else ""
        out.append(f"{format_flow(row['src'], row['sport'], row['dst'], row['dport'])} at "
                   f"t={row['t_response']:.6f}: " + what.format(format_duration(gap)) + stall + ".")
    if len(flagged) > limit:
        out.append(f"… and {len(flagged) - limit} more exchanges with gaps that stand out.")
    return out
