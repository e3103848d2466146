"""The static per-packet waterfall of ``analyze --plot FILE.png|FILE.svg`` (matplotlib, Agg).

One panel per direction (received, then sent), one horizontal row per packet (the anomalous
and worst ones, plus a sample of normal ones), its intervals as bars on a timeline starting
at the packet's first checkpoint, coloured by stage; anomalous intervals hatched and
outlined, with a label naming stage, duration, cause. One capture alone has no stages: the
panel then shows each exchange as request → response followed by response → next request.
matplotlib is imported only here, when a plot is asked for. The files are reproducible: no
date in the SVG, fixed SVG ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..units import format_duration
from .waterfall import (
    ANOMALY_COLOR,
    DIRECTIONS,
    Interval,
    checkpoints,
    direction_rows,
    intervals,
    lone_intervals,
    numeric,
    packet_labels,
    segments,
    select_packets,
)

#: File suffixes plot_waterfall writes.
PLOT_SUFFIXES = (".png", ".svg")


def plot_waterfall(analysis: Any, path: str | Path, *, worst: int = 15,
                   normal: int = 15) -> Path:
    """Draw the waterfall of ``analysis`` to ``path`` (PNG or SVG by suffix); returns the path.

    Raises ``OptionError`` for another suffix or a path that cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise OptionError(f"{path}: the plot is written as PNG or SVG: name the file "
                          f"*.png or *.svg (not {suffix or 'no suffix'!s})")
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    table = analysis.table.reset_index(drop=True)
    panels = _panels(table, worst, normal)
    rc: Any = {"svg.hashsalt": "xenlat", "svg.fonttype": "none", "font.size": 8}
    with matplotlib.rc_context(rc):
        heights = [max(len(rows), 4) for _, _, rows, _, _ in panels] or [4]
        fig = Figure(figsize=(11, 1.2 + 0.24 * sum(heights) + 0.5 * len(heights)),
                     layout="constrained")
        axes = fig.subplots(len(heights), 1, squeeze=False,
                            gridspec_kw={"height_ratios": heights})[:, 0]
        if not panels:
            axes[0].text(0.5, 0.5, "no packet with a measured stage", ha="center",
                         va="center", transform=axes[0].transAxes)
            axes[0].set_axis_off()
        shown = 0
        for ax, (title, sub, rows, bars, marks) in zip(axes, panels, strict=False):
            labels = packet_labels(sub.loc[rows])
            _draw(ax, bars, marks, labels, len(rows), _panel_intervals(sub, title))
            ax.set_title(f"{title}: {len(rows)} of {len(sub)} shown", loc="left", fontsize=9)
            shown += len(rows)
        fig.suptitle(_title(analysis, shown, sum(len(p[1]) for p in panels)), fontsize=10)
        metadata = {"Date": None} if suffix == ".svg" else None
        try:
            fig.savefig(path, format=suffix[1:], dpi=110, metadata=metadata)
        except OSError as exc:
            raise OptionError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    return path


def _panels(table: Any, worst: int, normal: int) -> list[tuple[str, Any, Any, Any, Any]]:
    """(title, rows of the direction, rows drawn, bars, checkpoint marks) per panel."""
    panels = []
    for way, word in DIRECTIONS.items():
        sub = table[direction_rows(table, way)]
        if not intervals(sub, way):
            continue
        rows = select_packets(sub, worst=worst, normal=normal)
        bars = segments(sub, rows)
        if not bars.empty:
            panels.append((f"{word} ({way})", sub, rows, bars, checkpoints(sub, rows)))
    if not panels and lone_intervals(table):
        sub = table[numeric(table, "request_to_response_us").notna()
                    | numeric(table, "response_to_next_us").notna()]
        rows = select_packets(sub, worst=worst, normal=normal)
        panels.append(("exchanges (one capture: request → response → next request)", sub,
                       rows, _lone_bars(sub, rows), None))
    return panels


def _panel_intervals(sub: Any, title: str) -> list[Interval]:
    if title.startswith("exchanges"):
        return lone_intervals(sub)
    return intervals(sub, "tx" if "(tx)" in title else "rx")


def _lone_bars(sub: Any, rows: Any) -> Any:
    """Bars of one capture alone: request → response from 0, response → next after it."""
    import pandas as pd

    picked = sub.loc[rows]
    first = numeric(picked, "request_to_response_us").fillna(0.0).to_numpy()
    anomaly = picked["anomaly"].fillna("").astype(str).to_numpy() \
        if "anomaly" in picked.columns else np.full(len(picked), "")
    parts = []
    for iv, start in zip(lone_intervals(sub), (np.zeros(len(picked)), first), strict=False):
        duration = numeric(picked, iv.column).to_numpy()
        ok = np.isfinite(duration)
        parts.append(pd.DataFrame({
            "row": picked.index[ok], "order": np.arange(len(picked))[ok],
            "interval": iv.name, "key": iv.key, "color": iv.color, "start_us": start[ok],
            "duration_us": duration[ok], "anomalous": (anomaly == iv.name)[ok],
            "cause": ""}))
    return pd.concat(parts, ignore_index=True)


def _draw(ax: Any, bars: Any, marks: Any, labels: list[str], n: int,
          shown: list[Interval]) -> None:
    scale_ms = 1e-3
    for interval in shown:
        part = bars[bars["interval"] == interval.name]
        if part.empty:
            continue
        color = interval.color
        label = interval.label
        normal = part[~part["anomalous"]]
        ax.barh(normal["order"], normal["duration_us"] * scale_ms,
                left=normal["start_us"] * scale_ms, color=color, height=0.62, label=label)
        odd = part[part["anomalous"]]
        if odd.empty:
            continue
        container = ax.barh(odd["order"], odd["duration_us"] * scale_ms,
                            left=odd["start_us"] * scale_ms, color=color, height=0.62,
                            edgecolor=ANOMALY_COLOR, linewidth=1.6, hatch="///",
                            label=None if not normal.empty else label)
        for patch, (_, seg) in zip(container.patches, odd.iterrows(), strict=True):
            patch.set_gid(f"anomaly-{interval.key}-{int(seg['row'])}")
            end = (seg["start_us"] + seg["duration_us"]) * scale_ms
            text = f" ⚠ {interval.key} {format_duration(seg['duration_us'])}"
            if seg["cause"]:
                text += f" ({seg['cause']})"
            ax.text(end, seg["order"], text, va="center", ha="left", color=ANOMALY_COLOR,
                    fontsize=7, gid=f"anomaly-label-{interval.key}-{int(seg['row'])}")
    if marks is not None and len(marks):
        ax.scatter(marks["at_us"] * scale_ms, marks["order"], marker="|", s=40,
                   color="black", linewidths=0.8, zorder=3, label="checkpoint")
    ends = (bars["start_us"] + bars["duration_us"]).to_numpy() * scale_ms
    per_packet = np.zeros(n)
    np.maximum.at(per_packet, bars["order"].to_numpy(dtype=int), ends)
    # linear: a stall is the long bar and the µs stages slivers (a log axis would make the
    # first, smallest stage look the biggest)
    ax.set_xlabel("time since the packet's first checkpoint (ms)")
    ax.set_xlim(left=0, right=per_packet.max() * 1.35)
    ax.set_yticks(range(n), labels)
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=7, ncols=2, framealpha=0.9)


def _title(analysis: Any, shown: int, total: int) -> str:
    flagged = 0
    if "anomaly" in analysis.table.columns:
        flagged = int(analysis.table["anomaly"].fillna("").astype(str).ne("").sum())
    return (f"xenlat waterfall: {shown} of {total} packets shown "
            f"({flagged} anomalous; hatched = anomalous stage)")
