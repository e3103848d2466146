"""The static per-packet waterfall of ``analyze --plot FILE.png|FILE.svg`` (matplotlib, Agg).

One horizontal row per packet (the anomalous and worst ones, plus a sample of normal ones),
its intervals as bars on a timeline starting at the packet's first checkpoint, coloured by
stage; anomalous intervals hatched and outlined, with a label naming stage, duration, cause.
The files are reproducible: no date in the SVG, fixed SVG ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OptionError
from ..units import format_duration
from .waterfall import (
    ANOMALY_COLOR,
    checkpoints,
    intervals,
    packet_labels,
    segments,
    select_packets,
)

#: File suffixes plot_waterfall writes.
PLOT_SUFFIXES = (".png", ".svg")
#: Linear axis unless the longest packet is this many times the typical one.
SYMLOG_RATIO = 20.0


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
    rows = select_packets(table, worst=worst, normal=normal)
    bars = segments(table, rows)
    marks = checkpoints(table, rows)
    labels = packet_labels(table.loc[rows])
    n = len(rows)

    rc = {"svg.hashsalt": "xenlat", "svg.fonttype": "none", "font.size": 8}
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(11, 1.6 + 0.24 * max(n, 4)), layout="constrained")
        ax = fig.add_subplot()
        if n == 0 or bars.empty:
            ax.text(0.5, 0.5, "no packet with a measured stage", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        else:
            _draw(ax, table, bars, marks, labels, n)
        fig.suptitle(_title(analysis, n, len(table)), fontsize=10)
        metadata = {"Date": None} if suffix == ".svg" else None
        try:
            fig.savefig(path, format=suffix[1:], dpi=110, metadata=metadata)
        except OSError as exc:
            raise OptionError(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    return path


def _draw(ax: Any, table: Any, bars: Any, marks: Any, labels: list[str], n: int) -> None:
    scale_ms = 1e-3
    for interval in intervals(table):
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
            patch.set_gid(f"anomaly-{interval.name}-{int(seg['row'])}")
            end = (seg["start_us"] + seg["duration_us"]) * scale_ms
            text = f" ⚠ {interval.name} {format_duration(seg['duration_us'])}"
            if seg["cause"]:
                text += f" ({seg['cause']})"
            ax.text(end, seg["order"], text, va="center", ha="left", color=ANOMALY_COLOR,
                    fontsize=7, gid=f"anomaly-label-{interval.name}-{int(seg['row'])}")
    ax.scatter(marks["at_us"] * scale_ms, marks["order"], marker="|", s=40, color="black",
               linewidths=0.8, zorder=3, label="checkpoint")
    ends = (bars["start_us"] + bars["duration_us"]).to_numpy() * scale_ms
    per_packet = np.zeros(n)
    np.maximum.at(per_packet, bars["order"].to_numpy(dtype=int), ends)
    typical = float(np.median(per_packet[per_packet > 0])) if (per_packet > 0).any() else 0.0
    if typical > 0 and per_packet.max() > SYMLOG_RATIO * typical:
        ax.set_xscale("symlog", linthresh=typical * 2, linscale=1.0)
        ax.set_xlabel("time since the packet's first checkpoint (ms, symlog scale: linear "
                      f"to {typical * 2:.3g} ms, logarithmic beyond)")
    else:
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
