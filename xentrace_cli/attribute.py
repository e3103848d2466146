"""Checkpoints and stages per data segment, and the cause of a stalled stage from run states.

Everything here works on columns of checkpoint times already on dom0's clock: int64 ns with
:data:`NA_NS` for "not measured". It computes

* the intervals between consecutive checkpoints the sources provide (DESIGN.md): a stage when
  both its ends are measured, a merged ``<from>_to_<to>`` interval when a source between them
  is missing — never an invented split (:func:`intervals`);
* ``read`` (receive) and ``write`` (transmit) times from the socket log: the first read whose
  cumulative bytes on the socket cover the segment's last byte (:func:`socket_times`), with
  sockets mapped to flows by peer address or by byte counts (:func:`map_streams`);
* from a xentrace: ``irq``, ``dom0_run``, ``copy``, ``guest_wake``, ``guest_run``
  (:func:`attribute_trace`) and causes (:meth:`TraceAttribution.causes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from . import xen_events as _xe
from .model import CHECKPOINT_SOURCE, STAGES, TX_CHECKPOINTS, TX_STAGES

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
    ok = (t_from != NA_NS) & (t_to != NA_NS)
    out = np.full(t_from.shape, np.nan)
    out[ok] = (t_to[ok] - t_from[ok]) / 1e3
    return out


def to_seconds(t_ns: np.ndarray) -> np.ndarray:
    """Checkpoint column for the table: epoch seconds (NaN when not measured)."""
    out = np.full(t_ns.shape, np.nan)
    ok = t_ns != NA_NS
    out[ok] = t_ns[ok] / 1e9
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
    data = calls[calls["direction"].notna()]
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
    peers = calls[calls["peer"].notna()].groupby(stream_col, observed=True)["peer"].first() \
        if "peer" in calls.columns else pd.Series(dtype=object)
    per_stream["peer"] = peers.reindex(per_stream.index).astype(object)
    per_stream["peer"] = per_stream["peer"].where(per_stream["peer"].notna(), None)
    per_stream = per_stream.reset_index().rename(columns={stream_col: "stream"})

    # connections as the capture shows them: remote endpoint, time span, bytes each way
    from .lone import connection_ids
    conn = connection_ids(segments)
    firsts = segments.assign(_conn=conn).drop_duplicates("flow")
    rx_first = firsts["direction"].to_numpy() == "rx"
    remote_of_flow = pd.Series(
        np.where(rx_first, _peer_key(firsts["src"], firsts["sport"]),
                 _peer_key(firsts["dst"], firsts["dport"])), index=firsts["flow"].to_numpy())
    seg = pd.DataFrame({"conn": conn, "flow": segments["flow"].to_numpy(),
                        "direction": segments["direction"].to_numpy(),
                        "ts": segments["ts_ns"].to_numpy(),
                        "end": offsets + segments["len"].to_numpy()})
    seg["remote"] = remote_of_flow.reindex(seg["flow"].to_numpy()).to_numpy()
    per_conn = seg.groupby("conn").agg(remote=("remote", "first"), t0=("ts", "min"),
                                       t1=("ts", "max"))
    ends = seg.groupby(["conn", "direction"])["end"].max().unstack(fill_value=0)
    per_conn["rx_bytes"] = ends.get("rx", pd.Series(0, index=ends.index)).reindex(
        per_conn.index, fill_value=0)
    per_conn["tx_bytes"] = ends.get("tx", pd.Series(0, index=ends.index)).reindex(
        per_conn.index, fill_value=0)
    per_conn = per_conn.reset_index()

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
    flows = seg.drop_duplicates(["conn", "direction"])[["conn", "flow", "direction"]]
    out = pairs[["stream", "conn"]].merge(flows, on="conn")[["stream", "flow", "direction"]]
    return out.reset_index(drop=True), method


def socket_times(calls: pd.DataFrame, segments: pd.DataFrame, offsets: np.ndarray,
                 mapping: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per segment: the socket-log checkpoint (guest clock ns) and the call's row (-1 none).

    Received segments: return time of the first read whose cumulative bytes on the socket
    cover the segment's last byte. Sent segments: entry time of the write that handed the
    segment's last byte to the kernel.
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
    direction = segments["direction"].to_numpy()
    for way, time_col in (("rx", "ts_ns"), ("tx", "entry_ns")):
        sel = np.flatnonzero(have & (direction == way))
        if sel.size == 0:
            continue
        sub = calls[(calls["direction"] == way).to_numpy()
                    & (calls["bytes"].to_numpy() > 0)]
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
        t[sel[ok]] = sub[time_col].to_numpy(np.int64)[rows[ok]]
        row[sel[ok]] = sub.index.to_numpy()[rows[ok]]
    return t, row


# --- the trace -------------------------------------------------------------------------------

#: A guest vCPU state must fill this share of a stalled stage to be named its cause.
CAUSE_SHARE = 0.5
#: An interrupt delivered a frame's burst only if dom0 handled it at most this many p99
#: irq→frame delays (or the fit's uncertainty, or IRQ_BOUND_MIN_NS) before the burst.
IRQ_BOUND_K = 4.0
IRQ_BOUND_MIN_NS = 100_000
#: A guest reacts to a copy when its vCPU changes run state within this after it (ns) …
NEAR_COPY_NS = 50_000
#: … the chosen guest is questioned when it reacts to fewer than QUIET_SHARE of the copies
#: and another domain to at least REACT_SHARE.
QUIET_SHARE, REACT_SHARE = 0.05, 0.3
#: Candidate NIC IRQs tried when ``--nic-irq`` is not given (the busiest ones).
MAX_IRQ_CANDIDATES = 4
#: Event ids :func:`attribute_trace` reads from the trace's event table (besides the lost,
#: run-state and switch tables): NIC interrupts, wakes, grant-copy hypercalls.
TRACE_EVENTS: tuple[int, ...] = (_xe.TRC_HW_IRQ_HANDLED, _xe.TRC_SCHED_WAKE,
                                  _xe.TRC_PV_HYPERCALL_V2)
#: Columns of the event table :func:`attribute_trace` reads.
TRACE_COLUMNS: tuple[str, ...] = ("cpu", "tsc", "event", "w1", "w2", "domid", "vcpu", "irq",
                                  "hypercall", "gnttab_cmd", "count")


@dataclasses.dataclass
class TraceAttribution:
    """What the trace adds: checkpoints on dom0's clock, the TSC fit, and the run states."""

    checkpoints: dict[str, np.ndarray]
    alignment: dict[str, object]
    notes: list[str]
    uncertainty_us: float
    trace: object = None
    fit: object = None
    domid: int | None = None
    guest_vcpu: int = 0
    dom0_vcpu: np.ndarray | None = None
    """Per row: the dom0 vCPU the NIC interrupt went to (-1 unknown)."""
    netback_vcpu: int | None = None

    def ns_to_tsc(self, t_ns: np.ndarray) -> np.ndarray:
        """dom0 ns → TSC (the inverse of the fit; NA_NS stays a very small TSC)."""
        fit = self.fit
        return (fit.tsc_at_ref + np.rint((t_ns.astype(np.float64) - fit.ref_ns)
                                         * fit.cpu_hz / 1e9)).astype(np.int64)

    def causes(self, label: np.ndarray, checkpoints: dict[str, np.ndarray],
               starts: dict[str, str], ends: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """Cause and detail per anomalous row, from what the relevant vCPU did during the stall.

        ``starts``/``ends`` give each labelled interval's checkpoints.
        """
        n = label.size
        cause = np.full(n, "", dtype=object)
        detail = np.full(n, "", dtype=object)
        if self.fit is None or self.trace is None:
            return cause, detail
        from .readers.xentrace import state_durations, who_ran

        trace = self.trace
        runstates = trace.runstates
        for name in sorted(set(label.tolist()) - {""}):
            if name not in starts:
                continue
            rows = np.flatnonzero(label == name)
            a = checkpoints.get(starts[name])
            b = checkpoints.get(ends[name])
            if a is None or b is None:
                continue
            ok = (a[rows] != NA_NS) & (b[rows] != NA_NS)
            rows = rows[ok]
            if rows.size == 0:
                continue
            s_tsc = self.ns_to_tsc(a[rows])
            e_tsc = self.ns_to_tsc(b[rows])
            blind = _overlaps_lost(trace.lost, s_tsc, e_tsc)
            cause[rows[blind]] = "lost_records"
            detail[rows[blind]] = "the trace dropped records during this interval"
            todo = ~blind
            dom0_stage = name in ("vmm", "driver_domain")  # (irq, dom0_run) is always vmm
            if dom0_stage and self.dom0_vcpu is not None:
                for v in np.unique(self.dom0_vcpu[rows[todo]]):
                    pick = todo & (self.dom0_vcpu[rows] == v)
                    if v < 0 or not pick.any():
                        continue
                    good = _mostly_runnable(runstates, 0, int(v), s_tsc[pick], e_tsc[pick])
                    hit = rows[pick][good]
                    cause[hit] = "dom0_runnable"
                    runs = trace.cpu_runs
                    for r, s, e in zip(hit, s_tsc[pick][good], e_tsc[pick][good], strict=True):
                        detail[r] = f"d0v{v} " + _preempted_by(runs, 0, int(v), int(s), int(e),
                                                              who_ran)
                continue
            if name == "ring" and self.netback_vcpu is not None:
                hit = _mostly_runnable(runstates, 0, self.netback_vcpu, s_tsc[todo],
                                       e_tsc[todo])
                cause[rows[todo][hit]] = "dom0_runnable"
                detail[rows[todo][hit]] = f"netback's dom0 vCPU {self.netback_vcpu} waited " \
                    "runnable"
                todo[np.flatnonzero(todo)[hit]] = False
            if self.domid is None or not todo.any():
                continue
            d = state_durations(runstates, self.domid, self.guest_vcpu, s_tsc[todo],
                                e_tsc[todo])
            span = np.maximum(e_tsc[todo] - s_tsc[todo], 1)
            shares = {state: d[state].to_numpy() / span
                      for state in ("running", "runnable", "blocked")}
            top = np.argmax(np.vstack(list(shares.values())), axis=0)
            top_share = np.max(np.vstack(list(shares.values())), axis=0)
            names = np.array(["vcpu_running", "vcpu_runnable", "vcpu_blocked"], dtype=object)
            picked = names[top]
            if name == "ring":
                picked = np.where(picked == "vcpu_running", "ring_full", picked)
            good = top_share >= CAUSE_SHARE
            target = rows[todo][good]
            cause[target] = picked[good]
            # who had the CPU while the guest vCPU waited runnable
            runs = trace.cpu_runs
            for r, s, e, c in zip(target, s_tsc[todo][good], e_tsc[todo][good], picked[good],
                                  strict=True):
                if c == "vcpu_runnable":
                    detail[r] = _preempted_by(runs, self.domid, self.guest_vcpu, int(s),
                                              int(e), who_ran)
                elif c in ("vcpu_running", "ring_full"):
                    detail[r] = f"d{self.domid}v{self.guest_vcpu} was running"
                elif c == "vcpu_blocked":
                    detail[r] = f"d{self.domid}v{self.guest_vcpu} was blocked"
        return cause, detail


def _mostly_runnable(runstates: pd.DataFrame, domid: int, vcpu: int, s_tsc: np.ndarray,
                     e_tsc: np.ndarray) -> np.ndarray:
    """Rows whose [s, e] the vCPU spent at least :data:`CAUSE_SHARE` of waiting runnable."""
    from .readers.xentrace import state_durations

    d = state_durations(runstates, domid, vcpu, s_tsc, e_tsc)
    return d["runnable"].to_numpy() / np.maximum(e_tsc - s_tsc, 1) >= CAUSE_SHARE


def _overlaps_lost(lost: pd.DataFrame, s_tsc: np.ndarray, e_tsc: np.ndarray) -> np.ndarray:
    """Rows whose [s, e] overlaps a lost-records blind spot."""
    if lost is None or len(lost) == 0:
        return np.zeros(s_tsc.size, dtype=bool)
    first = lost["tsc_first"].to_numpy(dtype=np.int64, na_value=0)
    last = lost["tsc"].to_numpy(np.int64)
    lo = np.minimum(first, last)
    order = np.argsort(lo)
    lo, hi = lo[order], np.maximum.accumulate(np.maximum(first, last)[order])
    k = np.searchsorted(lo, e_tsc, side="right") - 1
    ok = k >= 0
    return ok & (hi[np.maximum(k, 0)] >= s_tsc)


def _preempted_by(runs: pd.DataFrame, domid: int, vcpu: int, s: int, e: int,
                  who_ran: object) -> str:
    """``preempted by d3v0`` — the busiest other occupant of the vCPU's CPU meanwhile."""
    mine = runs[(runs["domid"].to_numpy() == domid) & (runs["vcpu"].to_numpy() == vcpu)]
    if len(mine) == 0:
        return "preempted"
    start = mine["start_tsc"].to_numpy(np.int64)
    k = int(np.clip(np.searchsorted(start, e, side="left"), 0, len(mine) - 1))
    cpu = int(mine["cpu"].to_numpy()[k])
    occupants = who_ran(runs, cpu, s, e)
    others = occupants[(occupants["domid"] != domid) & ~occupants["idle"]]
    if len(others) == 0:
        return f"runnable on CPU {cpu} (no other domain ran there)"
    top = others.groupby(["domid", "vcpu"])["cycles"].sum().sort_values(ascending=False)
    (d, v), cycles = top.index[0], top.iloc[0]
    return f"preempted by d{d}v{v} on CPU {cpu} ({100 * cycles / max(e - s, 1):.0f}% of it)"


_QUALITY_RANK = {"bounded": 0, "one-sided": 1, "inconsistent": 2, "none": 3}


def _fit_rank(fit: object) -> tuple[int, float]:
    return (_QUALITY_RANK.get(fit.quality, 3), -float(fit.matched_fraction))


def bound_interrupts(irq_row: np.ndarray, handled_ns: np.ndarray, frames_ns: np.ndarray,
                     arrive_ns: np.ndarray, bound_ns: int) -> np.ndarray:
    """``irq_row`` with -1 where the interrupt cannot have delivered the frame.

    ``irq_row``: per packet, the last interrupt at or before its arrival (-1 none);
    ``handled_ns``: per interrupt, when dom0 ran to handle it (its ``dom0_run``, else the
    interrupt itself); ``frames_ns``: sorted dom0 arrival times of all frames towards the
    guest. A frame comes shortly after dom0 handled the interrupt that delivered its burst
    (frames closer than ``BURST_GAP_NS``); when the burst starts more than ``bound_ns``
    after that, its own interrupt is missing from the trace and the earlier one is not it.
    """
    from .clock import BURST_GAP_NS

    out = irq_row.copy()
    have = np.flatnonzero((out >= 0) & (arrive_ns != NA_NS))
    if have.size == 0 or frames_ns.size == 0:
        return out
    starts = frames_ns[np.r_[True, np.diff(frames_ns) > BURST_GAP_NS]]
    b = np.searchsorted(starts, arrive_ns[have], side="right") - 1
    burst_start = np.where(b >= 0, starts[np.maximum(b, 0)], arrive_ns[have])
    late = burst_start - handled_ns[out[have]] > bound_ns
    out[have[late]] = -1
    return out


def _frames_to_guest(packets: pd.DataFrame | None, local: set[str]) -> np.ndarray:
    """Capture times of every frame towards the guest (ACKs too: netback copies them all)."""
    if packets is None or len(packets) == 0:
        return np.zeros(0, dtype=np.int64)
    ts = packets["ts_ns"]
    keep = packets["dst"].isin(list(local)).to_numpy() & ts.notna().to_numpy()
    return np.sort(ts[keep].to_numpy(np.int64))


def assign_batches(frame_ns: np.ndarray, batch_ns: np.ndarray, count: np.ndarray
                   ) -> np.ndarray:
    """Batch of each frame (sorted by time): FIFO, each batch copying ``count`` frames.

    A frame goes into the first batch after it arrived unless earlier frames filled that
    batch (the queue is FIFO): slot ``s(k) = k + max_{k'≤k}(before[j0(k')] - k')`` where
    ``j0`` is the first batch after the frame and ``before`` the slots of earlier batches.
    Returns -1 for frames after the last batch.
    """
    if frame_ns.size == 0 or batch_ns.size == 0:
        return np.full(frame_ns.size, -1, dtype=np.int64)
    cum = np.cumsum(np.maximum(count, 1))
    before = np.r_[0, cum[:-1]]
    j0 = np.searchsorted(batch_ns, frame_ns, side="left")
    valid = j0 < batch_ns.size
    first_slot = np.where(valid, before[np.minimum(j0, batch_ns.size - 1)], cum[-1])
    k = np.arange(frame_ns.size)
    slot = k + np.maximum.accumulate(first_slot - k)
    j = np.searchsorted(cum, slot, side="right")
    return np.where(j < batch_ns.size, j, -1)


def attribute_trace(trace: object, *, anchor: pd.DataFrame, placed: dict[str, pd.DataFrame],
                    matched_rows: dict[str, np.ndarray], checkpoints: dict[str, np.ndarray],
                    rx: np.ndarray, domid: int | None, options: object,
                    packets: dict[str, pd.DataFrame] | None = None,
                    local: set[str] | None = None) -> TraceAttribution:
    """The trace's checkpoints for each row: irq, dom0_run, copy, guest_wake, guest_run.

    Puts the TSC on dom0's clock first (:func:`clock.fit_tsc`, from the NIC's interrupts
    against the dom0 capture's arrivals, then refined with the grant copies), finds the NIC's
    IRQ when not given, follows netback's vCPU and its copy batches, and the guest vCPU's run
    states after each copy.
    """
    from .clock import BURST_GAP_NS, fit_tsc
    from .readers.xentrace import state_at
    from .xen_events import (
        GNTTABOP_COPY,
        HYPERCALL_GRANT_TABLE_OP,
        TRC_HW_IRQ_HANDLED,
        TRC_PV_HYPERCALL_V2,
        TRC_SCHED_WAKE,
    )

    packets = packets or {}
    local = local or set()
    n = len(anchor)
    notes: list[str] = []
    result = TraceAttribution({}, {}, notes, float("inf"), trace=trace)
    ev = trace.events
    event = ev["event"].to_numpy()
    tsc = ev["tsc"].to_numpy(np.int64)
    cpu = ev["cpu"].to_numpy()

    # --- the dom0 arrivals the interrupts delivered ------------------------------------------
    dom0_point = "phys" if "phys" in packets else ("backend" if "backend" in packets else None)
    if dom0_point is None:
        notes.append("xentrace without a dom0 capture: the trace cannot be put on a packet "
                     "clock, so its checkpoints are left empty.")
        return result
    arrivals = _frames_to_guest(packets[dom0_point], local)

    is_irq = event == TRC_HW_IRQ_HANDLED
    irq_rows_all = np.flatnonzero(is_irq)
    irq_no = _subset(ev, "irq", is_irq, -1)  # at irq_rows_all
    per_irq = pd.Series(irq_no).value_counts()
    if options.nic_irq is not None:
        candidates = [int(options.nic_irq)]
    else:
        candidates = [int(x) for x in per_irq.index[:MAX_IRQ_CANDIDATES]]
    if not candidates:
        notes.append("xentrace has no HW_IRQ_HANDLED records: the trace cannot be lined up "
                     "with the captures (was it recorded with the irq class?).")
        return result
    # the NIC's interrupts come about once per burst of arrivals: try the closest count first
    bursts = 1 + int((np.diff(arrivals) > BURST_GAP_NS).sum()) if arrivals.size else 0
    candidates.sort(key=lambda irq: abs(np.log(max(per_irq.get(irq, 1), 1) / max(bursts, 1))))
    fits = []
    for irq in candidates:
        sel = irq_rows_all[irq_no == irq]
        fits.append((irq, fit_tsc(tsc[sel], arrivals, cpu_hz=options.cpu_hz)))
        if fits[-1][1].quality in ("bounded", "one-sided") and \
                fits[-1][1].matched_fraction >= 0.8:
            break  # interrupts alone bound the TSC from one side: good enough to choose
    nic_irq, fit = min(fits, key=lambda item: _fit_rank(item[1]))
    irq_sel = irq_rows_all[irq_no == nic_irq]  # the NIC's interrupts
    if fit.quality == "none":
        notes.append(f"xentrace: {fit.detail}")
        result.alignment["tsc->dom0"] = {**_tsc_dict(fit), "from": f"irq {nic_irq}"}
        return result
    if options.nic_irq is None:
        notes.append(f"NIC interrupt: Xen IRQ {nic_irq} (its interrupts line up with the "
                     f"{dom0_point} capture's arrivals; give --nic-irq to override).")

    # --- the guest domain -------------------------------------------------------------------
    wake_rows = np.flatnonzero(event == TRC_SCHED_WAKE)
    wake_dom = ev["domid"].iloc[wake_rows].to_numpy(dtype=np.int64, na_value=-1)
    if domid is None:
        woken = pd.Series(wake_dom[(wake_dom > 0) & (wake_dom < 0x7FF0)]).value_counts()
        if len(woken):
            domid = int(woken.index[0])
            notes.append(f"guest domain: d{domid} (the busiest guest in the trace; give "
                         "--domid to override).")
    result.domid = domid

    # --- grant copies, netback's vCPU and its batches ----------------------------------------
    is_copy = event == TRC_PV_HYPERCALL_V2
    hcall = (_subset(ev, "hypercall", is_copy, -1) == HYPERCALL_GRANT_TABLE_OP) & \
        (_subset(ev, "gnttab_cmd", is_copy, -1) == GNTTABOP_COPY)
    copy_count = _subset(ev, "count", is_copy, 1)[hcall]
    is_copy[np.flatnonzero(is_copy)[~hcall]] = False
    copy_tsc = tsc[is_copy]
    copy_cpu = cpu[is_copy].astype(np.int64)
    issuer = np.full(copy_tsc.size, -1, dtype=np.int64)
    if copy_tsc.size and len(trace.switches):
        from .readers.xentrace import running_on

        who = running_on(trace.cpu_runs, copy_cpu, copy_tsc)
        d0 = who["domid"].to_numpy(dtype=np.int64, na_value=-1) == 0
        issuer = np.where(d0, who["vcpu"].to_numpy(dtype=np.int64, na_value=-1), -1)
    if (issuer < 0).all():
        issuer = -1 - copy_cpu  # unknown vCPU: follow the physical CPU instead
    backend_frames = _frames_to_guest(packets.get("backend"), local)
    frame_ns = backend_frames if backend_frames.size else arrivals
    row_frame_ns = checkpoints.get("backend", checkpoints.get("phys"))
    copy_row_tsc = np.full(n, NA_NS, dtype=np.int64)
    if copy_tsc.size and frame_ns.size and row_frame_ns is not None:
        copy_ns_all = fit.to_ns(copy_tsc)
        best = None
        for v in np.unique(issuer):
            mine = issuer == v
            b_ns, b_cnt = copy_ns_all[mine], copy_count[mine]
            j = assign_batches(frame_ns, b_ns, b_cnt)
            ok = j >= 0
            if ok.sum() < max(1, frame_ns.size // 10):
                continue
            delay = np.median(b_ns[j[ok]] - frame_ns[ok])
            score = (-int(ok.mean() > 0.5), float(delay))
            if best is None or score < best[0]:
                best = (score, v, mine, j)
        if best is not None:
            _, v, mine, j = best
            result.netback_vcpu = int(v) if v >= 0 else None
            # each row's frame: its time at the backend (dom0 clock) locates it in frame_ns
            pos = np.searchsorted(frame_ns, row_frame_ns, side="left")
            have = (row_frame_ns != NA_NS) & rx & (pos < frame_ns.size)
            pos = np.minimum(pos, frame_ns.size - 1)
            have &= frame_ns[pos] == row_frame_ns
            have &= j[pos] >= 0
            copy_row_tsc[have] = copy_tsc[mine][j[pos[have]]]
            where = f"dom0 vCPU {v}" if v >= 0 else f"CPU {-1 - v}"
            notes.append(f"netback's receive copies: {int(mine.sum())} grant-copy batches on "
                         f"{where}, {int(have.sum())} segments placed in their batch.")

    # --- refit the TSC with the copies (they bound it from the other side) ---------------------
    guest_ns = checkpoints.get("guest")
    back_ns = checkpoints.get("backend")
    have_copy = copy_row_tsc != NA_NS
    if have_copy.any() and back_ns is not None:
        after = np.where(have_copy & (back_ns != NA_NS), back_ns, NA_NS)
        before = np.where(have_copy & (guest_ns != NA_NS), guest_ns, NA_NS) \
            if guest_ns is not None else np.full(n, NA_NS)
        sel = have_copy
        # the frequency found above is kept (its error shows as the fit's drift, and the
        # copies bound it from the other side): the costly coarse search is not repeated
        refit = fit_tsc(tsc[irq_sel], arrivals, cpu_hz=fit.cpu_hz,
                        copy_tsc=copy_row_tsc[sel],
                        copy_after_ns=_na_float(after[sel]),
                        copy_before_ns=_na_float(before[sel]))
        if _fit_rank(refit)[0] <= _fit_rank(fit)[0]:
            if fit.cpu_hz_estimated:
                how = f"estimated, ±{fit.hz_uncertainty_ppm:.2g} ppm"
                if fit.cpu_hz_given is not None:
                    how = (f"given {fit.cpu_hz_given / 1e9:.6g} GHz, fitted "
                           f"±{fit.hz_uncertainty_ppm:.2g} ppm")
                detail = refit.detail.replace("(given)", f"({how})").replace(
                    " (at the given frequency)", "")
                refit = dataclasses.replace(refit, cpu_hz_estimated=True,
                                            hz_uncertainty_ppm=fit.hz_uncertainty_ppm,
                                            cpu_hz_given=fit.cpu_hz_given, detail=detail)
            fit = refit
    result.fit = fit
    result.uncertainty_us = float(fit.uncertainty_ns) / 1e3
    result.alignment["tsc->dom0"] = {**_tsc_dict(fit), "from": f"irq {nic_irq} ↔ {dom0_point}"}
    notes.append(f"xentrace clock: {fit.detail}")

    # --- irq and dom0_run ---------------------------------------------------------------------
    out: dict[str, np.ndarray] = {}
    irq_tsc = tsc[irq_sel]
    irq_ns = fit.to_ns(irq_tsc)
    arrive = checkpoints.get("phys", checkpoints.get("backend"))
    irq_row = np.full(n, -1, dtype=np.int64)
    if arrive is not None and irq_ns.size:
        k = np.searchsorted(irq_ns, arrive, side="right") - 1
        ok = (arrive != NA_NS) & rx & (k >= 0) & (arrive <= fit.to_ns([trace.last_tsc])[0])
        irq_row[ok] = k[ok]
    used = np.unique(irq_row[irq_row >= 0])
    dom0_run_tsc = np.full(irq_tsc.size, NA_NS, dtype=np.int64)
    dom0_vcpu = np.full(irq_tsc.size, -1, dtype=np.int64)
    if used.size:
        dom0_run_tsc[used], dom0_vcpu[used] = _dom0_run(
            trace, irq_tsc[used], cpu[irq_sel][used], ev, irq_sel[used],
            wake_rows[wake_dom == 0], tsc)
    # an interrupt long before the frame's burst did not deliver it (its own was not traced)
    bound_ns = max(IRQ_BOUND_K * float(np.nan_to_num(fit.residual_us[1])) * 1e3,
                   fit.uncertainty_ns if np.isfinite(fit.uncertainty_ns) else 0.0,
                   float(IRQ_BOUND_MIN_NS))
    ran_ns = np.where(dom0_run_tsc != NA_NS, 0, irq_ns)
    ran = dom0_run_tsc != NA_NS
    ran_ns[ran] = fit.to_ns(dom0_run_tsc[ran])
    if arrive is not None:
        irq_row = bound_interrupts(irq_row, ran_ns, arrivals, arrive, int(bound_ns))
    have = irq_row >= 0
    irq_cp = np.full(n, NA_NS, dtype=np.int64)
    irq_cp[have] = irq_ns[irq_row[have]]
    out["irq"] = irq_cp
    run = np.full(n, NA_NS, dtype=np.int64)
    run_tsc = np.where(have, dom0_run_tsc[np.maximum(irq_row, 0)], NA_NS)
    ok = run_tsc != NA_NS
    run[ok] = fit.to_ns(run_tsc[ok])
    out["dom0_run"] = run
    result.dom0_vcpu = np.where(have, dom0_vcpu[np.maximum(irq_row, 0)], -1)

    # --- copy, guest_wake, guest_run ----------------------------------------------------------
    copy_cp = np.full(n, NA_NS, dtype=np.int64)
    copy_cp[have_copy] = fit.to_ns(copy_row_tsc[have_copy])
    out["copy"] = copy_cp
    wake = np.full(n, NA_NS, dtype=np.int64)
    grun = np.full(n, NA_NS, dtype=np.int64)
    if domid is not None and have_copy.any():
        runstates = trace.runstates
        mine = runstates[runstates["domid"].to_numpy() == domid]
        quiet = _quiet_domain(runstates, domid, copy_row_tsc[have_copy],
                              int(NEAR_COPY_NS * fit.cpu_hz / 1e9))
        if quiet:
            notes.append(quiet)
        vcpus = np.unique(mine["vcpu"].to_numpy())
        result.guest_vcpu = _event_vcpu(mine, vcpus, copy_row_tsc[have_copy])
        v = result.guest_vcpu
        rows = mine[mine["vcpu"].to_numpy() == v]
        starts = rows["start_tsc"].to_numpy(np.int64)
        # run states by category code (no strings per row)
        running, blocked = (list(rows["state"].cat.categories).index(x)
                            for x in ("running", "blocked"))
        states = rows["state"].cat.codes.to_numpy()
        c = copy_row_tsc[have_copy]
        state = state_at(runstates, domid, v, c).codes
        nxt = np.searchsorted(starts, c, side="right")
        run_starts = starts[states == running]
        nxt_run = np.searchsorted(run_starts, c, side="right")
        t_wake = np.where((state == blocked) & (nxt < starts.size),
                          starts[np.minimum(nxt, starts.size - 1)], NA_NS)
        t_run = np.where(state == running, c,
                         np.where(nxt_run < run_starts.size,
                                  run_starts[np.minimum(nxt_run, run_starts.size - 1)], NA_NS))
        idx = np.flatnonzero(have_copy)
        ok = t_wake != NA_NS
        wake[idx[ok]] = fit.to_ns(t_wake[ok])
        ok = t_run != NA_NS
        grun[idx[ok]] = fit.to_ns(t_run[ok])
    out["guest_wake"] = wake
    out["guest_run"] = grun
    result.checkpoints = out
    return result


def _quiet_domain(runstates: pd.DataFrame, domid: int, copy_tsc: np.ndarray,
                  near_tsc: int) -> str:
    """A note when guest ``domid`` does not react to netback's copies while another domain
    does (a wrong ``--domid``: its run states explain nothing).

    Reacting: a run-state change (a wake, a run) of the domain within ``near_tsc`` cycles
    after a copy, as the event channel notification causes.
    """
    c = np.sort(copy_tsc)
    doms = runstates["domid"].to_numpy(np.int64)
    starts = runstates["start_tsc"].to_numpy(np.int64)
    share = {}
    for d in np.unique(doms[(doms > 0) & (doms < 0x7FF0)]):
        st = np.sort(starts[doms == d])
        k = np.searchsorted(st, c, side="left")
        nxt = st[np.minimum(k, st.size - 1)]
        share[int(d)] = float(((k < st.size) & (nxt - c <= near_tsc)).mean())
    mine = share.get(int(domid), 0.0)
    best = max(share, key=share.get) if share else None
    if best is None or best == domid or mine >= QUIET_SHARE or share[best] < REACT_SHARE:
        return ""
    return (f"guest domain d{domid} reacts to {mine:.0%} of netback's copies (a wake or run "
            f"within {NEAR_COPY_NS // 1000} µs), d{best} to {share[best]:.0%}: is the domain id "
            f"right? The causes below are read from d{domid}'s run states.")


def _subset(events: pd.DataFrame, column: str, mask: np.ndarray, missing: int) -> np.ndarray:
    """A nullable event column at the rows of ``mask`` only (converting all rows is slow)."""
    return events[column].iloc[np.flatnonzero(mask)].to_numpy(dtype=np.int64,
                                                                na_value=missing)


def _na_float(t: np.ndarray) -> np.ndarray:
    out = t.astype(np.float64)
    out[t == NA_NS] = np.nan
    return out


def _tsc_dict(fit: object) -> dict[str, object]:
    d = dict(fit.to_dict()) if hasattr(fit, "to_dict") else {}
    d.setdefault("quality", fit.quality)
    if "uncertainty_us" not in d:
        d["uncertainty_us"] = fit.uncertainty_ns / 1e3 if np.isfinite(fit.uncertainty_ns) \
            else None
    d.setdefault("detail", getattr(fit, "detail", ""))
    return d


def _event_vcpu(runstates: pd.DataFrame, vcpus: np.ndarray, copy_tsc: np.ndarray) -> int:
    """The guest vCPU netback's notifications go to: the one that runs soonest after copies."""
    if vcpus.size <= 1:
        return int(vcpus[0]) if vcpus.size else 0
    best, best_v = None, int(vcpus[0])
    for v in vcpus:
        rows = runstates[(runstates["vcpu"].to_numpy() == v)
                         & (runstates["state"] == "running").to_numpy()]
        starts = np.sort(rows["start_tsc"].to_numpy(np.int64))
        if starts.size == 0:
            continue
        k = np.minimum(np.searchsorted(starts, copy_tsc), starts.size - 1)
        gap = float(np.median(np.abs(starts[k] - copy_tsc)))
        if best is None or gap < best:
            best, best_v = gap, int(v)
    return best_v


def _dom0_run(trace: object, irq_tsc: np.ndarray, irq_cpu: np.ndarray, ev: pd.DataFrame,
              irq_rows: np.ndarray, wakes: np.ndarray, tsc: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """When the dom0 vCPU an interrupt went to ran, and which vCPU that was.

    The forwarding wakes the vCPU inside the handler (a dom0 WAKE on the interrupt's CPU
    between the handler's entry and the HW_IRQ_HANDLED record): then it is the next time that
    vCPU runs. Without a wake the vCPU was running (dom0 on the CPU: the interrupt itself) or
    runnable (the next time a dom0 vCPU runs).
    """
    from .readers.xentrace import running_on

    n = irq_tsc.size
    out = np.full(n, NA_NS, dtype=np.int64)
    vcpu_out = np.full(n, -1, dtype=np.int64)
    w1 = ev["w1"].to_numpy()[irq_rows].astype(np.int64)
    w2 = ev["w2"].to_numpy()[irq_rows].astype(np.int64)
    entry = irq_tsc - ((w2 - w1) & 0xFFFFFFFF)
    wake_vcpu = ev["vcpu"].iloc[wakes].to_numpy(dtype=np.int64, na_value=-1)
    woken = np.full(n, -1, dtype=np.int64)
    if wakes.size:
        w_tsc, w_cpu = tsc[wakes], ev["cpu"].to_numpy()[wakes].astype(np.int64)
        for c in np.unique(irq_cpu):
            pick = np.flatnonzero(irq_cpu == c)
            on = w_cpu == c
            if not on.any():
                continue
            t = w_tsc[on]
            k = np.searchsorted(t, irq_tsc[pick], side="right") - 1
            ok = (k >= 0) & (t[np.maximum(k, 0)] >= entry[pick] - 1)
            woken[pick[ok]] = wake_vcpu[on][k[ok]]
    runstates = trace.runstates
    d0 = runstates[(runstates["domid"].to_numpy() == 0)
                   & (runstates["state"] == "running").to_numpy()]
    run_v = d0["vcpu"].to_numpy(np.int64)
    run_s = d0["start_tsc"].to_numpy(np.int64)
    order = np.argsort(run_s, kind="stable")
    run_v, run_s = run_v[order], run_s[order]
    # woken: that vCPU's next run
    for v in np.unique(woken[woken >= 0]):
        pick = np.flatnonzero(woken == v)
        s = run_s[run_v == v]
        k = np.searchsorted(s, irq_tsc[pick], side="left")
        ok = k < s.size
        out[pick[ok]] = s[np.minimum(k, s.size - 1)][ok]
        vcpu_out[pick] = v
    rest = np.flatnonzero(woken < 0)
    if rest.size:
        occupant = running_on(trace.cpu_runs, irq_cpu[rest], irq_tsc[rest]) \
            if len(trace.switches) else None
        if occupant is not None:
            d = occupant["domid"].to_numpy(dtype=np.int64, na_value=-1)
            running = d == 0
            out[rest[running]] = irq_tsc[rest[running]]
            vcpu_out[rest[running]] = occupant["vcpu"].to_numpy(dtype=np.int64,
                                                                 na_value=-1)[running]
            rest = rest[~running]
        k = np.searchsorted(run_s, irq_tsc[rest], side="left")
        ok = k < run_s.size
        out[rest[ok]] = run_s[np.minimum(k, run_s.size - 1)][ok]
        vcpu_out[rest[ok]] = run_v[np.minimum(k, run_s.size - 1)][ok]
    return out, vcpu_out
