"""What the HTML report and the matplotlib plot both draw: the per-packet waterfall.

Chooses the packets worth showing (every anomalous one up to a cap, the worst by total, and
an evenly spread sample of normal ones) and lays each packet's intervals out on a shared
timeline that starts at the packet's first checkpoint. Vectorized over packets: loops run over
the handful of intervals, never over rows. The stage colours live here, once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..model import (
    CHECKPOINTS,
    LONE_INTERVALS,
    STAGES,
    TX_CHECKPOINTS,
    checkpoint_column,
    stage_column,
)

#: One colour per stage (colour-blind-safe Okabe–Ito palette).
STAGE_COLORS: dict[str, str] = {
    "vmm": "#E69F00",
    "driver_domain": "#56B4E9",
    "ring": "#009E73",
    "remap": "#CC79A7",
    "socket_read": "#0072B2",
    "total": "#555555",
    "request_to_response": "#8C564B",
    "response_to_next": "#BCBD22",
}
#: Merged and transmit intervals take these in path order (greys and muted tones, so that
#: the five stages stay the loud colours).
OTHER_COLORS: tuple[str, ...] = ("#999999", "#6F4E7C", "#5F9E6E", "#B07AA1", "#7F7F7F",
                                 "#9C755F", "#76B7B2")
MERGED_COLOR = OTHER_COLORS[0]
ANOMALY_COLOR = "#D55E00"

#: Packets a waterfall shows by default.
WORST_PACKETS = 15
NORMAL_PACKETS = 15
MAX_ANOMALOUS = 40

#: Every checkpoint, receive path then the transmit-only ones, in path order.
_POINTS: tuple[str, ...] = (*CHECKPOINTS, *[p for p in TX_CHECKPOINTS if p not in CHECKPOINTS])


@dataclasses.dataclass(frozen=True)
class Interval:
    """One drawable interval of the analysis table: a stage, a merged or a transmit interval."""

    name: str
    start: str
    """Checkpoint the interval starts at."""
    end: str
    """Checkpoint the interval ends at."""
    other_color: str = MERGED_COLOR
    """Colour when the interval is not one of ``STAGE_COLORS``."""

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
        """True for an interval that stands for several stages (or a transmit interval)."""
        return self.name not in STAGES

    @property
    def transmit(self) -> bool:
        """True for an interval of the transmit path (write → guest → backend → phys)."""
        if self.start not in TX_CHECKPOINTS or self.end not in TX_CHECKPOINTS:
            return False
        return TX_CHECKPOINTS.index(self.start) < TX_CHECKPOINTS.index(self.end)

    @property
    def label(self) -> str:
        """Legend text: ``socket_read``, ``backend_to_guest (merged)``, ``guest_to_backend
        (tx)``."""
        if self.name in STAGES or not self.start:
            return self.name
        return f"{self.name} ({'tx' if self.transmit else 'merged'})"


def _measured(table: pd.DataFrame, column: str) -> bool:
    """The column exists and holds at least one value (the schema is fixed: most are empty)."""
    return column in table.columns and \
        bool(pd.to_numeric(table[column], errors="coerce").notna().any())


def intervals(table: pd.DataFrame) -> list[Interval]:
    """The stages and merged intervals the table measures for some packet, in path order."""
    found = [Interval(name, a, b) for name, (a, b) in STAGES.items()
             if _measured(table, stage_column(name))]
    others = []
    for column in table.columns:
        if not column.endswith("_us") or "_to_" not in column or not _measured(table, column):
            continue
        name = column[:-3]
        for i in range(len(name)):
            if name.startswith("_to_", i) and name[:i] in _POINTS and name[i + 4:] in _POINTS:
                others.append((name, name[:i], name[i + 4:]))
                break
    order = {p: i for i, p in enumerate(_POINTS)}
    others.sort(key=lambda o: (order[o[1]], order[o[2]], o[0]))
    found += [Interval(name, a, b, OTHER_COLORS[i % len(OTHER_COLORS)])
              for i, (name, a, b) in enumerate(others)]
    return sorted(found, key=lambda iv: (order[iv.start], order[iv.end], iv.name))


def measures(table: pd.DataFrame) -> list[Interval]:
    """Everything the table measures per packet: :func:`intervals`, then the lone-capture
    intervals (``request_to_response``, ``response_to_next``), which have no checkpoints."""
    found = intervals(table)
    found += [Interval(name, "", "") for name in LONE_INTERVALS
              if _measured(table, stage_column(name))]
    return found


def checkpoint_columns(table: pd.DataFrame) -> list[str]:
    """The ``t_<checkpoint>`` columns present, in path order."""
    return [checkpoint_column(p) for p in _POINTS if checkpoint_column(p) in table.columns]


def first_times(table: pd.DataFrame) -> np.ndarray:
    """Per row, the earliest checkpoint time (epoch s; NaN when the row has none)."""
    columns = checkpoint_columns(table)
    if not columns:
        return np.full(len(table), np.nan)
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        out = np.where(np.isfinite(values).any(axis=1),
                       np.nanmin(np.where(np.isfinite(values), values, np.inf), axis=1), np.nan)
    return out


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
    """Short, unique y-axis labels: ``#12 rx seq 1300``."""
    direction = rows["direction"].astype(str) if "direction" in rows.columns else ""
    seq = rows["seq"].astype(str) if "seq" in rows.columns else ""
    labels = ("#" + pd.Series(rows.index, index=rows.index).astype(str) + " " + direction
              + " seq " + seq)
    return labels.tolist()


def segments(table: pd.DataFrame, rows: pd.Index) -> pd.DataFrame:
    """Long table of the bars to draw for ``rows``: one row per (packet, interval) measured.

    Columns: ``row`` (table index), ``order`` (position in ``rows``), ``interval``, ``color``,
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
        ok = np.isfinite(duration) & np.isfinite(start)
        parts.append(pd.DataFrame({
            "row": picked.index[ok], "order": np.arange(len(picked))[ok],
            "interval": interval.name, "color": interval.color,
            "start_us": start[ok], "duration_us": duration[ok],
            "anomalous": (anomaly.to_numpy() == interval.name)[ok],
            "cause": cause.to_numpy()[ok],
        }))
    if not parts:
        return pd.DataFrame(columns=["row", "order", "interval", "color", "start_us",
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
    return pd.to_numeric(table[column], errors="coerce").astype(float)
