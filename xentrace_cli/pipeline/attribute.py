"""Checkpoints and stages per data segment: the intervals the sources measure, socket-log times.

Everything here works on columns of checkpoint times already on dom0's clock: int64 ns with
:data:`NA_NS` for "not measured". It computes

* the intervals between consecutive checkpoints the sources provide (DESIGN.md): a stage when
  both its ends are measured, a merged ``<from>_to_<to>`` interval when a source between them
  is missing — never an invented split (:func:`intervals`);
* ``read`` (receive) and ``write`` (transmit) times from the socket log: the first read whose
  cumulative bytes on the socket cover the segment's last byte (:func:`socket_times`), with
  sockets mapped to flows by peer address or by byte counts (:func:`map_streams`).

The trace's checkpoints come from :mod:`trace_attribute`, their causes from :mod:`causes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..groups import first_row_of
from ..model import CHECKPOINT_SOURCE, STAGES, TX_CHECKPOINTS, TX_STAGES
from .lone import connection_ids
from .match import TCP

#: "Not measured" in an int64 ns checkpoint column.
NA_NS = np.iinfo(np.int64).min

#: The checkpoints that bound stages, in path order, per direction. On receive ``phys`` is a
#: boundary only when ``backend`` is missing (it lies inside ``driver_domain``, just before
#: ``backend``, and stands in for it).
BOUNDARIES: dict[str, tuple[str, ...]] = {
    "rx": ("irq", "dom0_run", "backend", "copy", "guest", "read"),
    "tx": TX_CHECKPOINTS,
}
RX_BOUNDARIES: tuple[str, ...] = BOUNDARIES["rx"]
TX_BOUNDARIES: tuple[str, ...] = BOUNDARIES["tx"]

#: Stage names per direction: (from, to) → stage.
STAGE_OF: dict[str, dict[tuple[str, str], str]] = {
    "rx": {ends: stage for stage, ends in STAGES.items()},
    "tx": {ends: stage for stage, ends in TX_STAGES.items()},
}
RX_STAGES: dict[tuple[str, str], str] = STAGE_OF["rx"]

#: Which source each checkpoint needs (``model.CHECKPOINT_SOURCE``, and the transmit ``write``).
NEEDS: dict[str, str] = {**CHECKPOINT_SOURCE, "write": "socket_log"}

#: Clock domain of each checkpoint (before alignment).
CLOCK_OF: dict[str, str] = {
    "irq": "tsc", "dom0_run": "tsc", "copy": "tsc", "guest_wake": "tsc", "guest_run": "tsc",
    "phys": "dom0", "backend": "dom0", "guest": "guest", "read": "guest", "write": "guest",
}


@dataclasses.dataclass(frozen=True)
class Interval:
    """One measured interval: a stage, or a merged interval where a source is missing."""

    name: str
    start: str
    end: str
    direction: str
    merged: tuple[str, ...] = ()
    """For a merged interval: the stages it stands for."""

    @property
    def column(self) -> str:
        """Its ``<name>_us`` column."""
        return f"{self.name}_us"


def _boundaries(present: set[str], direction: str) -> list[str]:
    """The boundary checkpoints the given sources measure, in path order."""
    points = [p for p in BOUNDARIES[direction] if NEEDS[p] in present]
    if direction == "rx" and "backend" not in present and "phys" in present:
        points = [("phys" if p == "backend" else p)
                  for p in BOUNDARIES["rx"] if p == "backend" or NEEDS[p] in present]
    return points


def _stages_between(a: str, b: str, direction: str) -> tuple[str, ...]:
    """The stages a merged interval ``a → b`` stands for (receive ``phys`` counts as
    ``backend``, whose place it takes)."""
    order = BOUNDARIES[direction]
    lo = order.index("backend" if (direction, a) == ("rx", "phys") else a)
    hi = order.index("backend" if (direction, b) == ("rx", "phys") else b)
    return tuple(STAGE_OF[direction][(order[i], order[i + 1])] for i in range(lo, hi))


def intervals(present: set[str], direction: str) -> list[Interval]:
    """The intervals the given sources can measure, for one direction, in path order."""
    points = _boundaries(present, direction)
    out = []
    for a, b in zip(points, points[1:], strict=False):
        stage = STAGE_OF[direction].get((a, b))
        if stage is not None:
            out.append(Interval(stage, a, b, direction))
        else:
            out.append(Interval(f"{a}_to_{b}", a, b, direction,
                                _stages_between(a, b, direction)))
    return out


def possible_intervals(direction: str) -> list[str]:
    """Every interval name some combination of sources yields, in path order of its start."""
    sources = sorted(set(NEEDS.values()))
    names: dict[str, None] = {}
    for mask in range(1 << len(sources)):
        present = {s for i, s in enumerate(sources) if mask >> i & 1}
        for iv in intervals(present, direction):
            names.setdefault(iv.name)
    return list(names)


def merge_notes(items: list[Interval], unusable: Iterable[str] = ()) -> list[str]:
    """One sentence per merged interval: which stages it stands for and why (a source not
    given, or given but ``unusable``: not on the packets' timeline)."""
    notes = []
    unusable = set(unusable)
    for iv in items:
        if iv.merged and len(iv.merged) > 1:
            order = BOUNDARIES[iv.direction]
            inner = order[order.index(_place(iv.start, iv)) + 1:order.index(_place(iv.end, iv))]
            missing = sorted({NEEDS[p] for p in inner})
            why = [f"{m} could not be aligned with the captures" if m in unusable
                   else f"{m} is missing" for m in missing]
            way = "" if iv.direction == "rx" else "transmit "
            notes.append(
                f"{iv.name}: the {way}stages {', '.join(iv.merged)} are measured together "
                f"({iv.start} → {iv.end}) because {' and '.join(why) or 'a source is missing'}"
                "; xenlat does not split them.")
        elif iv.direction == "rx" and iv.start == "phys":
            notes.append(f"{iv.name}: without the backend capture, the interval starts at the "
                         "physical NIC capture (inside driver_domain).")
    return notes


def _place(point: str, iv: Interval) -> str:
    return "backend" if (iv.direction, point) == ("rx", "phys") else point


def durations_us(t_from: np.ndarray, t_to: np.ndarray) -> np.ndarray:
    """``t_to - t_from`` in µs (NaN where either end is not measured)."""
    with np.errstate(over="ignore"):  # the rows not measured wrap, and are emptied
        out = (t_to - t_from) / 1e3
    out[(t_from == NA_NS) | (t_to == NA_NS)] = np.nan
    return out


def to_seconds(t_ns: np.ndarray) -> np.ndarray:
    """Checkpoint column for the table: epoch seconds (NaN when not measured)."""
    out = t_ns / 1e9  # then the rows not measured emptied (no third array for np.where)
    out[t_ns == NA_NS] = np.nan
    return out


# --- socket log ------------------------------------------------------------------------------

def _peer_key(ip: pd.Series, port: pd.Series) -> pd.Series:
    return ip.astype(str).str.strip("[]") + ":" + port.astype(str)


def map_streams(calls: pd.DataFrame, segments: pd.DataFrame, offsets: np.ndarray
                ) -> tuple[pd.DataFrame, str]:
    """Which socket-log stream carries which connection: a frame ``stream, flow, direction``.

    By peer address (connect/accept, or the address strace printed) where the log has it,
    choosing among sockets with the same peer the one whose calls overlap the connection in
    time; otherwise by byte counts (a socket whose total bytes read and written equal a
    connection's). Returns the mapping and how it was made (``peer``, ``bytes`` or ``none``).
    """
    stream_col = "stream" if "stream" in calls.columns else "fd"
    # the columns used, at the rows used (not the whole log's, with its data column)
    data = calls.loc[calls["direction"].notna().to_numpy(),
                     [stream_col, "ts_ns", "direction", "bytes"]]
    empty = pd.DataFrame({"stream": [], "flow": [], "direction": []})
    if len(data) == 0 or len(segments) == 0:
        return empty, "none"
    per_stream = data.groupby(stream_col, observed=True).agg(
        t0=("ts_ns", "min"), t1=("ts_ns", "max"))
    # bytes per stream and direction
    moved = data.groupby([stream_col, "direction"], observed=True)["bytes"].sum().unstack(
        fill_value=0)
    per_stream["rx_bytes"] = moved.get("rx", pd.Series(0, index=moved.index)).reindex(
        per_stream.index, fill_value=0)
    per_stream["tx_bytes"] = moved.get("tx", pd.Series(0, index=moved.index)).reindex(
        per_stream.index, fill_value=0)
    peers = calls.loc[calls["peer"].notna().to_numpy(), [stream_col, "peer"]].groupby(
        stream_col, observed=True)["peer"].first() if "peer" in calls.columns \
        else pd.Series(dtype=object)
    per_stream["peer"] = peers.reindex(per_stream.index).astype(object)
    per_stream["peer"] = per_stream["peer"].where(per_stream["peer"].notna(), None)
    per_stream = per_stream.reset_index().rename(columns={stream_col: "stream"})

    per_conn, flows = _connections(segments, offsets)
    known = per_stream[per_stream["peer"].notna()].copy()
    method = "peer"
    if len(known):
        known["peer"] = known["peer"].astype(str).str.replace(r"^\[(.*)\]:", r"\1:",
                                                               regex=True)
        pairs = known.merge(per_conn, left_on="peer", right_on="remote", suffixes=("", "_c"))
    else:
        method = "bytes"
        pairs = per_stream.merge(per_conn, how="cross", suffixes=("", "_c"))
        pairs = pairs[(pairs["rx_bytes"] - pairs["rx_bytes_c"]).abs()
                      + (pairs["tx_bytes"] - pairs["tx_bytes_c"]).abs() <= 0]
    if len(pairs) == 0:
        return empty, "none"
    # several sockets share a peer (reconnects to one server): the one overlapping in time
    overlap = (np.minimum(pairs["t1"], pairs["t1_c"]) - np.maximum(pairs["t0"], pairs["t0_c"]))
    bytes_off = ((pairs["rx_bytes"] - pairs["rx_bytes_c"]).abs()
                 + (pairs["tx_bytes"] - pairs["tx_bytes_c"]).abs())
    pairs = pairs.assign(_overlap=overlap, _off=bytes_off).sort_values(
        ["conn", "_off", "_overlap"], ascending=[True, True, False], kind="stable")
    pairs = pairs.drop_duplicates("conn").drop_duplicates("stream")
    out = pairs[["stream", "conn"]].merge(flows, on="conn")[["stream", "flow", "direction"]]
    return out.reset_index(drop=True), method


def _connections(segments: pd.DataFrame, offsets: np.ndarray
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The connections as the capture shows them: per connection id (``conn``), its
    ``remote`` endpoint (of its first segment), time span (``t0``, ``t1``) and the bytes
    each way (``rx_bytes``, ``tx_bytes``: the furthest offset reached); and the first
    segment of each connection and direction (``conn``, ``flow``, ``direction``), in row
    order. Reductions over integer ids: no string, nor DataFrame group, per segment."""
    conn = connection_ids(segments)
    n_conn = int(conn.max()) + 1
    first = first_row_of(conn, n_conn)  # each connection's first row, id order (ids: dense)
    head = segments.iloc[first]
    remote = np.where(head["direction"].to_numpy() == "rx",
                      _peer_key(head["src"], head["sport"]),
                      _peer_key(head["dst"], head["dport"]))
    ts = segments["ts_ns"].to_numpy()
    if ts.size and bool((ts[1:] >= ts[:-1]).all()):  # a capture's times, in order (usually):
        t0 = ts[first].astype(np.int64)           # a connection's first and last rows'
        t1 = ts[::-1][first_row_of(conn[::-1], n_conn)].astype(np.int64)
    else:
        t0 = np.full(n_conn, np.iinfo(np.int64).max, dtype=np.int64)
        t1 = np.full(n_conn, np.iinfo(np.int64).min, dtype=np.int64)
        np.minimum.at(t0, conn, ts)
        np.maximum.at(t1, conn, ts)
    end = offsets + segments["len"].to_numpy()
    rx = np.asarray(segments["direction"] == "rx", dtype=bool)
    per_conn = pd.DataFrame({"conn": np.arange(n_conn, dtype=np.int64), "remote": remote,
                             "t0": t0, "t1": t1})
    for name, rows in (("rx_bytes", rx), ("tx_bytes", ~rx)):
        furthest = np.full(n_conn, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(furthest, conn[rows], end[rows])
        furthest[np.bincount(conn[rows], minlength=n_conn) == 0] = 0
        per_conn[name] = furthest
    of_way = first_row_of(conn * 2 + ~rx, 2 * n_conn)  # each connection and direction's first
    rows = np.sort(of_way[of_way >= 0])
    flows = pd.DataFrame({"conn": conn[rows], "flow": segments["flow"].to_numpy()[rows],
                          "direction": segments["direction"].iloc[rows].to_numpy()},
                         index=rows)
    return per_conn, flows


def socket_times(calls: pd.DataFrame, segments: pd.DataFrame, offsets: np.ndarray,
                 mapping: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: the socket-log checkpoint (guest clock ns) and the call's row (-1 none).

    Received segments: return time of the first read whose cumulative bytes on the socket
    cover the segment's last byte. Sent segments: entry time of the write that handed the
    segment's last byte to the kernel. A datagram (not TCP) is read or written whole by one
    call: that call must start exactly at the datagram's offset and carry exactly its bytes
    (:func:`match.datagram_offset`), else the datagram is left without a time — one lost
    between the capture and the socket shifts the rest, and a shifted match would be a wrong
    time, not a missing one.
    """
    n = len(segments)
    t = np.full(n, NA_NS, dtype=np.int64)
    row = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(mapping) == 0:
        return t, row
    stream_col = "stream" if "stream" in calls.columns else "fd"
    flow_to_stream = pd.Series(mapping["stream"].to_numpy(), index=mapping["flow"].to_numpy())
    seg_stream = flow_to_stream.reindex(segments["flow"].to_numpy()).to_numpy()
    have = ~pd.isna(seg_stream) & (offsets >= 0)
    for way, time_col in (("rx", "ts_ns"), ("tx", "entry_ns")):
        # compared as the column is (categorical: its codes), not as a string per row
        sel = np.flatnonzero(have & np.asarray(segments["direction"] == way, dtype=bool))
        if sel.size == 0:
            continue
        sub = calls.loc[(calls["direction"] == way).to_numpy()
                        & (calls["bytes"].to_numpy() > 0),
                        [stream_col, "stream_offset", "bytes", time_col]]
        if len(sub) == 0:
            continue
        sid = sub[stream_col].to_numpy(np.int64)
        cum_end = sub["stream_offset"].to_numpy(np.int64) + sub["bytes"].to_numpy(np.int64)
        key = (sid << 42) + cum_end
        order = np.argsort(key, kind="stable")
        key = key[order]
        want_stream = seg_stream[sel].astype(np.int64)
        last_byte = offsets[sel] + segments["len"].to_numpy()[sel]
        k = np.searchsorted(key, (want_stream << 42) + last_byte, side="left")
        ok = k < key.size
        k = np.minimum(k, key.size - 1)
        ok &= (key[k] >> 42) == want_stream
        rows = order[k]
        datagram = segments["proto"].to_numpy()[sel] != TCP
        exact = (sub["stream_offset"].to_numpy(np.int64)[rows] == offsets[sel]) & \
            (sub["bytes"].to_numpy(np.int64)[rows] == segments["len"].to_numpy()[sel])
        ok &= ~datagram | exact
        t[sel[ok]] = sub[time_col].to_numpy(np.int64)[rows[ok]]
        row[sel[ok]] = sub.index.to_numpy()[rows[ok]]
    return t, row
