"""What the HTML report, the terminal report and the matplotlib plot all draw: the intervals
of each direction and the per-packet waterfall.

A row of the analysis table is a received (``rx``) or a transmitted (``tx``) segment; the two
paths share the ``<stage>_us`` columns where the same layer holds the packet, with different
checkpoints (receive ``ring`` is backend → copy, transmit ``ring`` is dom0_run → copy), so
every interval here belongs to one direction and is laid out on that direction's rows only.
Chooses the packets worth showing (every anomalous one up to a cap, the worst by total, and
an evenly spread sample of normal ones) and lays each packet's intervals out on a timeline
that starts at the packet's first checkpoint. Vectorized over packets: loops run over the
handful of intervals, never over rows. The stage colours live here, once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..model import (
    CHECKPOINTS,
    DIRECTION_STAGES,
    LONE_INTERVALS,
    MERGED_INTERVALS,
    STAGES,
    TX_CHECKPOINTS,
    TX_INTERVALS,
    TX_STAGES,
    checkpoint_column,
    stage_column,
    stat_key,
)

#: One colour per layer (colour-blind-safe Okabe–Ito palette): a stage keeps its colour in
#: both directions.
STAGE_COLORS: dict[str, str] = {
    "vmm": "#E69F00",
    "driver_domain": "#56B4E9",
    "ring": "#009E73",
    "remap": "#CC79A7",
    "socket_read": "#0072B2",
    "socket_write": "#F0E442",
    "total": "#555555",
    "request_to_response": "#8C564B",
    "response_to_next": "#BCBD22",
}
#: Merged intervals take these in path order (greys and muted tones, so that the stages stay
#: the loud colours).
OTHER_COLORS: tuple[str, ...] = ("#999999", "#6F4E7C", "#5F9E6E", "#B07AA1", "#7F7F7F",
                                 "#9C755F", "#76B7B2")
MERGED_COLOR = OTHER_COLORS[0]
ANOMALY_COLOR = "#D55E00"

#: The cause of a stalled stage, in words (every report says it the same way).
CAUSE_WORDS: dict[str, str] = {
    "vcpu_runnable": "the guest vCPU was runnable but not running",
    "vcpu_running": "the guest vCPU was running: the delay was inside the guest",
    "vcpu_blocked": "the guest vCPU was blocked (nothing woke it)",
    "dom0_runnable": "dom0's vCPU was runnable but not running (dom0 starved of CPU)",
    "ring_full": "netback waited for free slots on the guest's I/O ring while the guest ran",
    "lost_records": "the trace lost records during the stall: the cause is unknown",
}

#: Packets a waterfall shows by default.
WORST_PACKETS = 15
NORMAL_PACKETS = 15
MAX_ANOMALOUS = 40

#: The directions, in the order reports show them, with their words.
DIRECTIONS: dict[str, str] = {"rx": "received", "tx": "sent"}
#: Each direction's stages: name -> (from, to).
_STAGES_OF: dict[str, dict[str, tuple[str, str]]] = {"rx": STAGES, "tx": TX_STAGES}
#: Each direction's merged intervals, in path order.
_MERGED_OF: dict[str, tuple[str, ...]] = {"rx": MERGED_INTERVALS, "tx": TX_INTERVALS}
#: Each direction's checkpoints, in path order.
_POINTS_OF: dict[str, tuple[str, ...]] = {"rx": CHECKPOINTS, "tx": TX_CHECKPOINTS}
#: Every checkpoint, receive path then the transmit-only ones.
_POINTS: tuple[str, ...] = (*CHECKPOINTS, *[p for p in TX_CHECKPOINTS if p not in CHECKPOINTS])


@dataclasses.dataclass(frozen=True)
class Interval:
    """One drawable interval of the analysis table: a stage, a merged interval of one
    direction, or a lone-capture interval (no checkpoints, no direction)."""

    name: str
    start: str
    """Checkpoint the interval starts at ("" for a lone-capture interval)."""
    end: str
    """Checkpoint the interval ends at."""
    other_color: str = MERGED_COLOR
    """Colour when the interval is not one of ``STAGE_COLORS``."""
    direction: str = "rx"
    """``rx`` or ``tx``: the rows the interval is measured on ("" for a lone interval)."""

    @property
    def column(self) -> str:
        """The ``<name>_us`` column."""
        return stage_column(self.name)

    @property
    def color(self) -> str:
        """Its colour in every figure."""
        return STAGE_COLORS.get(self.name, self.other_color)

    @property
    def merged(self) -> bool:
        """True for an interval that stands for several stages."""
        return bool(self.start) and self.name not in DIRECTION_STAGES.get(self.direction, ())

    @property
    def transmit(self) -> bool:
        """True for an interval of the transmit path."""
        return self.direction == "tx"

    @property
    def key(self) -> str:
        """How statistics and budgets name it: ``ring`` (receive), ``tx.ring`` (transmit)."""
        return stat_key(self.name, self.direction) if self.start else self.name

    @property
    def label(self) -> str:
        """Legend text: ``ring``, ``tx.ring``, ``backend_to_guest (merged)``."""
        return f"{self.key} (merged)" if self.merged else self.key


def direction_rows(table: pd.DataFrame, direction: str) -> np.ndarray:
    """Boolean mask of one direction's rows (a table without ``direction`` is all receive)."""
    if not direction:
        return np.ones(len(table), dtype=bool)
    if "direction" not in table.columns:
        return np.full(len(table), direction == "rx")
    # compared as they are (text or categorical): no string per row, missing is neither
    return (table["direction"] == direction).to_numpy(dtype=bool, na_value=False)


#: Rows :func:`_measured` looks at first.
_HEAD_ROWS = 4096


def _measured(table: pd.DataFrame, column: str, rows: np.ndarray) -> bool:
    """The column exists and holds a value on some of ``rows`` (a direction's,
    :func:`direction_rows`)."""
    if column not in table.columns:
        return False
    values = numeric(table, column).to_numpy()
    # a measured column usually has a value in its first rows: every row compared only when
    # they have none (the same answer)
    head = slice(0, _HEAD_ROWS)
    if (~np.isnan(values[head]) & rows[head]).any():
        return True
    return bool((~np.isnan(values) & rows).any())



def _split_name(name: str) -> tuple[str, str] | None:
    """``backend_to_guest`` → (``backend``, ``guest``)."""
    for i in range(len(name)):
        if name.startswith("_to_", i) and name[:i] in _POINTS and name[i + 4:] in _POINTS:
            return name[:i], name[i + 4:]
    return None


def intervals(table: pd.DataFrame, direction: str | None = None) -> list[Interval]:
    """The stages and merged intervals the table measures for some packet of ``direction``
    (both, receive first, when None), each direction in path order."""
    if direction is None:
        return [iv for way in DIRECTIONS for iv in intervals(table, way)]
    rows = direction_rows(table, direction)  # once: comparing every row's text costs
    found = [Interval(name, a, b, direction=direction)
             for name, (a, b) in _STAGES_OF[direction].items()
             if _measured(table, stage_column(name), rows)]
    merged = [(name, *split) for name in _MERGED_OF[direction]
              if (split := _split_name(name)) and _measured(table, stage_column(name), rows)]
    found += [Interval(name, a, b, OTHER_COLORS[i % len(OTHER_COLORS)], direction)
              for i, (name, a, b) in enumerate(merged)]
    order = {p: i for i, p in enumerate(_POINTS_OF[direction])}
    return sorted(found, key=lambda iv: (order.get(iv.start, 99), order.get(iv.end, 99),
                                         iv.name))


def lone_intervals(table: pd.DataFrame) -> list[Interval]:
    """The lone-capture intervals measured (``request_to_response``, ``response_to_next``):
    per exchange, on the row of the response, whichever its direction."""
    every = direction_rows(table, "")
    return [Interval(name, "", "", direction="") for name in LONE_INTERVALS
            if _measured(table, stage_column(name), every)]


def measures(table: pd.DataFrame) -> list[Interval]:
    """Everything the table measures per packet: :func:`intervals` of both directions, then
    the lone-capture intervals."""
    return intervals(table) + lone_intervals(table)


def checkpoint_columns(table: pd.DataFrame) -> list[str]:
    """The ``t_<checkpoint>`` columns present, in path order."""
    return [checkpoint_column(p) for p in _POINTS if checkpoint_column(p) in table.columns]


def first_times(table: pd.DataFrame) -> np.ndarray:
    """Per row, the earliest checkpoint time (epoch s; NaN when the row has none)."""
    first = np.full(len(table), np.inf)
    for column in checkpoint_columns(table):  # a running minimum: no (rows, columns) copy
        values = numeric(table, column).to_numpy()
        np.fmin(first, np.where(np.isfinite(values), values, np.inf), out=first)
    first[first == np.inf] = np.nan
    return first


def anomalous(table: pd.DataFrame) -> pd.Series:
    """Boolean per row: the analysis marked the packet anomalous in some stage."""
    if "anomaly" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["anomaly"].fillna("").astype(str).ne("")


def select_packets(table: pd.DataFrame, worst: int = WORST_PACKETS,
                   normal: int = NORMAL_PACKETS,
                   max_anomalous: int = MAX_ANOMALOUS) -> pd.Index:
    """Rows worth drawing, in time order: anomalies (worst first, capped), the worst totals,
    and ``normal`` rows spread evenly over the rest. Deterministic."""
    if len(table) == 0:
        return table.index
    total = numeric(table, "total_us")
    flagged = anomalous(table)
    keep = set(total[flagged].sort_values(ascending=False, kind="stable")
               .index[:max_anomalous])
    if flagged.sum() and len(keep) < max_anomalous:
        keep |= set(table.index[flagged][:max_anomalous - len(keep)])
    keep |= set(total.nlargest(worst, keep="first").index)
    rest = table.index[~table.index.isin(list(keep))]
    if len(rest) and normal > 0:
        picks = np.unique(np.linspace(0, len(rest) - 1, min(normal, len(rest))).round()
                          .astype(int))
        keep |= set(rest[picks])
    chosen = table.index[table.index.isin(list(keep))]
    times = pd.Series(first_times(table.loc[chosen]), index=chosen)
    return times.sort_values(kind="stable", na_position="last").index


def packet_labels(rows: pd.DataFrame) -> list[str]:
    """Short, unique y-axis labels: ``frame 812 rx`` (the anchor capture's frame number, as
    Wireshark shows it), or ``#12 rx seq 1300`` for a table without frame numbers."""
    direction = rows["direction"].astype(str) if "direction" in rows.columns else \
        pd.Series("", index=rows.index)
    if "frame" in rows.columns and rows["frame"].notna().all():
        frames = pd.Series(pd.array(rows["frame"], dtype="Int64"), index=rows.index)
        labels = "frame " + frames.astype(str) + " " + direction
        if not labels.duplicated().any():
            return labels.tolist()
    seq = rows["seq"].astype(str) if "seq" in rows.columns else ""
    labels = ("#" + pd.Series(rows.index, index=rows.index).astype(str) + " " + direction
              + " seq " + seq)
    return labels.tolist()


def segments(table: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """Long table of the bars to draw for ``rows``: one row per (packet, interval) measured.

    Columns: ``row`` (table index), ``order`` (position in ``rows``), ``interval`` (its
    name), ``key`` (``ring`` or ``tx.ring``), ``color``,
    ``start_us`` (from the packet's first checkpoint), ``duration_us``, ``anomalous``,
    ``cause``.
    """
    picked = table.loc[rows]
    t0 = first_times(picked)
    anomaly = picked["anomaly"].fillna("").astype(str) if "anomaly" in picked.columns else \
        pd.Series("", index=picked.index)
    cause = picked["cause"].fillna("").astype(str) if "cause" in picked.columns else \
        pd.Series("", index=picked.index)
    parts = []
    for interval in intervals(picked):
        duration = numeric(picked, interval.column).to_numpy()
        start_col = checkpoint_column(interval.start)
        start = (numeric(picked, start_col).to_numpy() - t0) * 1e6 \
            if start_col in picked.columns else np.full(len(picked), np.nan)
        # the column holds the other direction's stage on the other rows: not this interval
        ok = np.isfinite(duration) & np.isfinite(start) & \
            direction_rows(picked, interval.direction)
        parts.append(pd.DataFrame({
            "row": picked.index[ok], "order": np.arange(len(picked))[ok],
            "interval": interval.name, "key": interval.key, "color": interval.color,
            "start_us": start[ok], "duration_us": duration[ok],
            "anomalous": (anomaly.to_numpy() == interval.name)[ok],
            "cause": cause.to_numpy()[ok],
        }))
    if not parts:
        return pd.DataFrame(columns=["row", "order", "interval", "key", "color", "start_us",
                                     "duration_us", "anomalous", "cause"])
    return pd.concat(parts, ignore_index=True).sort_values(["order", "start_us"],
                                                           kind="stable", ignore_index=True)


def checkpoints(table: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """Long table of checkpoint marks for ``rows``: ``row``, ``order``, ``checkpoint``,
    ``at_us`` (from the packet's first checkpoint), ``epoch_s``."""
    picked = table.loc[rows]
    t0 = first_times(picked)
    parts = []
    for column in checkpoint_columns(picked):
        values = numeric(picked, column).to_numpy()
        ok = np.isfinite(values)
        parts.append(pd.DataFrame({
            "row": picked.index[ok], "order": np.arange(len(picked))[ok],
            "checkpoint": column[2:], "at_us": (values - t0)[ok] * 1e6,
            "epoch_s": values[ok],
        }))
    if not parts:
        return pd.DataFrame(columns=["row", "order", "checkpoint", "at_us", "epoch_s"])
    return pd.concat(parts, ignore_index=True)


def numeric(table: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats (NaN where not a number; all NaN when the column is absent)."""
    if column not in table.columns:
        return pd.Series(np.nan, index=table.index, dtype=float)
    if table[column].dtype == np.float64:  # an analysis' own: nothing to coerce, no copy
        return table[column]
    return pd.to_numeric(table[column], errors="coerce").astype(float)
