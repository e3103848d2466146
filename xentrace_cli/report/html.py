"""The self-contained HTML report of ``xenlat report`` (plotly charts, inlined, offline).

One file: plotly.js, the styles and a small table-sorting script are inlined, nothing is
fetched. Sections: verdict and sources, notes, stage statistics, the per-packet waterfall,
latency over time per stage with every anomaly marked, stage distributions (histogram and
CDF), clock alignment, and the worst packets with their causes.

Large analyses stay light: the waterfall draws a selection of packets, the time series keeps
per time bucket the min / median / max of each stage (and every anomalous packet), the
distributions are binned. The output is deterministic: same analysis, same bytes.
"""

from __future__ import annotations

import html
import json
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..model import format_flow
from ..units import format_duration
from .waterfall import (
    ANOMALY_COLOR,
    Interval,
    anomalous,
    checkpoints,
    first_times,
    intervals,
    measures,
    numeric,
    packet_labels,
    segments,
    select_packets,
)

#: A time series with more points than this is downsampled per time bucket.
MAX_POINTS_PER_SERIES = 4000
#: Number of time buckets when downsampling (each keeps min, median and max).
TIME_BUCKETS = 1000
#: Histogram bins (log-spaced) per stage.
HISTOGRAM_BINS = 80
#: Points of each CDF curve.
CDF_POINTS = 201
#: Rows of the worst-packets table (anomalous packets come on top of these, up to the cap).
WORST_ROWS = 30
MAX_ANOMALOUS_ROWS = 200
#: Packets the interactive waterfall shows.
WATERFALL_WORST = 30
WATERFALL_NORMAL = 30
WATERFALL_ANOMALOUS = 60
#: The waterfall starts on a log axis when the slowest packet took this many typical ones.
WATERFALL_LOG_RATIO = 20.0
#: Smallest duration on log axes (a stage can measure 0 µs).
LOG_FLOOR_US = 0.1

_PLOT_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_TEMPLATE = "plotly_white"


def write_html_report(analysis: Any, path: str | Path, *, top: int = 30) -> Path:
    """Write the report of ``analysis`` to ``path``; returns the path.

    Raises ``OptionError`` when ``path`` cannot be written (a missing directory, say).
    """
    path = Path(path)
    text = render_html_report(analysis, top=top)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


def render_html_report(analysis: Any, *, top: int = 30) -> str:
    """The report as one HTML document (a str)."""
    from plotly.offline import get_plotlyjs

    from .. import __version__

    table = analysis.table.reset_index(drop=True)
    flagged = anomalous(table)
    assets = resources.files(__package__) / "assets"
    body = "\n".join([
        _header(analysis, table, flagged),
        _section("notes", "Notes", _notes(analysis.notes)),
        _section("stages", "Stage statistics", _stats_table(analysis.stats)),
        _section("waterfall", "Per-packet waterfall", _waterfall(table)),
        _section("timeline", "Latency over time", _timeline(table)),
        _section("distributions", "Stage distributions", _distributions(table)),
        _section("alignment", "Clock alignment", _alignment(analysis.alignment)),
        _section("worst", "Worst packets", _worst_table(table, flagged)),
        _flows(analysis.flows, table),
        f'<footer>Written by xenlat {html.escape(__version__)}. Times are dom0-clock; '
        "durations are rounded to what the clocks support.</footer>",
    ])
    return Template((assets / "report.html").read_text(encoding="utf-8")).substitute(
        version=html.escape(__version__),
        title=html.escape(f"xenlat report: {_source_names(analysis) or 'analysis'}"),
        style=(assets / "report.css").read_text(encoding="utf-8"),
        plotlyjs=get_plotlyjs(),
        packets=len(table), anomalies=int(flagged.sum()),
        body=body,
        script=(assets / "report.js").read_text(encoding="utf-8"),
    )


# ---------------------------------------------------------------------------------------------
# Sections


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'


def _source_names(analysis: Any) -> str:
    return ", ".join(Path(str(getattr(analysis.sources, name))).name
                     for name in analysis.sources.present)


def _header(analysis: Any, table: pd.DataFrame, flagged: pd.Series) -> str:
    sources = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(str(getattr(analysis.sources, name)))}"
        "</li>" for name in analysis.sources.present)
    counts = (table.loc[flagged, "anomaly"].astype(str).value_counts().sort_index()
              if flagged.any() else pd.Series(dtype=int))
    if flagged.any():
        parts = ", ".join(f"{html.escape(stage)} ×{n}" for stage, n in counts.items())
        verdict = (f'<span class="verdict bad">{int(flagged.sum())} anomalous packets: '
                   f"{parts}</span>")
    else:
        verdict = '<span class="verdict ok">no anomalous packet</span>'
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("waterfall", "waterfall"), ("timeline", "over time"),
        ("distributions", "distributions"), ("alignment", "alignment"),
        ("worst", "worst packets")))
    return (f"<header>\n<h1>xenlat report</h1>\n<p class=\"lede\">{len(table)} packets. "
            f"{verdict}</p>\n<nav>{nav}</nav>\n<ul>{sources}</ul>\n</header>")


def _notes(notes: list[str]) -> str:
    if not notes:
        return "<p>No notes.</p>"
    items = "\n".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
    return f'<ul class="notes">\n{items}\n</ul>'


def _stats_table(stats: dict[str, dict[str, Any]]) -> str:
    columns = ("count", "p50", "p90", "p99", "p99.9", "max", "mean", "anomalies")
    head = "".join(f"<th>{c}</th>" for c in columns)
    rows = []
    for stage, entry in stats.items():
        cells = []
        for column in columns:
            value = entry.get(column)
            if column in ("count", "anomalies"):
                text = "–" if value is None else str(int(value))
            else:
                text = format_duration(value)
            hot = ' class="hot"' if column == "anomalies" and value else ""
            cells.append(f'<td{hot} data-v="{_num(value)}">{html.escape(text)}</td>')
        color = Interval(stage, "", "").color
        rows.append(f'<tr><td class="text">{_swatch(color)}{html.escape(stage)}</td>'
                    f"{''.join(cells)}</tr>")
    return (f'<table class="sortable" id="stats-table"><thead><tr><th class="text">stage</th>'
            f"{head}</tr></thead>\n<tbody>\n{chr(10).join(rows)}\n</tbody></table>")


def _alignment(alignment: dict[str, Any]) -> str:
    if not alignment:
        return "<p>No clock alignment was needed (one clock domain).</p>"
    rows = []
    for pair in sorted(alignment):
        entry = alignment[pair] if isinstance(alignment[pair], dict) else {"value":
                                                                          alignment[pair]}
        quality = str(entry.get("quality", "–"))
        known = {"quality", "uncertainty_us", "offset", "drift"}
        extra = {k: v for k, v in entry.items() if k not in known}
        rows.append(
            f'<tr><td class="text">{html.escape(pair)}</td>'
            f'<td class="text quality-{html.escape(quality)}">{html.escape(quality)}</td>'
            f"<td>{html.escape(format_duration(_float(entry.get('uncertainty_us'))))}</td>"
            f"<td>{html.escape(_plain(entry.get('offset')))}</td>"
            f"<td>{html.escape(_plain(entry.get('drift')))}</td>"
            f'<td class="text details">{_details(extra)}</td></tr>')
    return ('<table id="alignment-table"><thead><tr><th class="text">clocks</th>'
            '<th class="text">quality</th><th>uncertainty</th><th>offset</th><th>drift</th>'
            '<th class="text">details</th></tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table>\n"
            '<p class="caption">bounded: packets in both directions bound the offset; '
            "one-sided: only one direction, the offset is a bound; inconsistent: the "
            "constraints contradict each other, stages across these clocks are suspect.</p>")


def _worst_table(table: pd.DataFrame, flagged: pd.Series) -> str:
    if len(table) == 0:
        return "<p>No packet.</p>"
    # how bad a packet is: its total, or (one capture alone) its longest measured interval
    total = numeric(table, "total_us")
    longest = pd.concat([numeric(table, iv.column) for iv in measures(table)]
                        + [pd.Series(np.nan, index=table.index)], axis=1).max(axis=1)
    badness = total.where(total.notna(), longest)
    keep = set(badness.nlargest(WORST_ROWS, keep="first").index)
    keep |= set(badness[flagged].sort_values(ascending=False, kind="stable")
                .index[:MAX_ANOMALOUS_ROWS])
    keep |= set(table.index[flagged][:max(0, MAX_ANOMALOUS_ROWS - flagged.sum())])
    order = badness.loc[sorted(keep)].sort_values(ascending=False, kind="stable",
                                                  na_position="last").index
    rows = table.loc[order]
    t0 = np.nanmin(first_times(table)) if len(table) else np.nan
    when = first_times(rows) - t0
    ivs = [iv for iv in measures(table) if numeric(table, iv.column).notna().any()]
    head = ("<th>#</th><th>time (s)</th><th class=\"text\">flow</th><th>seq</th><th>len</th>"
            + "".join(f"<th>{_swatch(iv.color)}{html.escape(iv.name)}</th>" for iv in ivs)
            + "<th>total</th><th>±</th><th class=\"text\">anomaly</th>"
              "<th class=\"text\">cause</th>")
    lines = []
    stage_values = {iv.name: numeric(rows, iv.column).to_numpy() for iv in ivs}
    totals = numeric(rows, "total_us").to_numpy()
    unc = numeric(rows, "uncertainty_us").to_numpy()
    anomaly = _text(rows, "anomaly")
    cause = _text(rows, "cause")
    flows = _flow_labels(rows)
    seq = numeric(rows, "seq").to_numpy()
    length = numeric(rows, "len").to_numpy()
    for i, index in enumerate(rows.index):
        cells = [f'<td data-v="{index}">{index}</td>',
                 f'<td data-v="{_num(when[i])}">{_seconds(when[i])}</td>',
                 f'<td class="text">{html.escape(flows[i])}</td>',
                 f'<td data-v="{_num(seq[i])}">{html.escape(_text(rows, "seq")[i])}</td>',
                 f'<td data-v="{_num(length[i])}">{html.escape(_text(rows, "len")[i])}</td>']
        for iv in ivs:
            value = stage_values[iv.name][i]
            hot = ' class="hot"' if anomaly[i] == iv.name else ""
            cells.append(f'<td{hot} data-v="{_num(value)}">'
                         f"{html.escape(format_duration(_float(value)))}</td>")
        cells += [f'<td data-v="{_num(totals[i])}">'
                  f"{html.escape(format_duration(_float(totals[i])))}</td>",
                  f'<td data-v="{_num(unc[i])}">{html.escape(format_duration(_float(unc[i])))}'
                  "</td>",
                  f'<td class="text">{html.escape(anomaly[i])}</td>',
                  f'<td class="text">{html.escape(cause[i])}</td>']
        attrs = (f' class="anomaly" data-anomaly="{html.escape(anomaly[i])}"' if anomaly[i]
                 else "")
        lines.append(f'<tr data-row="{index}"{attrs}>{"".join(cells)}</tr>')
    return ('<div class="scroll"><table class="sortable" id="worst-table"><thead><tr>'
            f"{head}</tr></thead>\n<tbody>\n" + "\n".join(lines) + "\n</tbody></table></div>\n"
            f'<p class="caption">{len(rows)} packets: the {min(WORST_ROWS, len(table))} '
            f"slowest by total and every anomalous packet (up to {MAX_ANOMALOUS_ROWS}); "
            "click a column to sort. ± is the clock-alignment uncertainty.</p>")


def _flows(flows: pd.DataFrame | None, table: pd.DataFrame) -> str:
    """The request → response exchanges of one capture alone (``Analysis.flows``)."""
    if flows is None or len(flows) == 0:
        return ""
    flows = flows.reset_index(drop=True)
    gaps = {name: numeric(flows, f"{name}_us") for name in ("request_to_response",
                                                             "response_to_next")}
    worst = pd.concat(gaps.values(), axis=1).max(axis=1)
    flagged = anomalous(flows)
    keep = set(worst.nlargest(WORST_ROWS, keep="first").index)
    keep |= set(flows.index[flagged][:MAX_ANOMALOUS_ROWS])
    rows = flows.loc[sorted(keep)]
    t0 = np.nanmin(first_times(table)) if len(table) else np.nan
    start = numeric(rows, "t_request").to_numpy() - t0
    flow = _flow_labels(rows)
    anomaly = _text(rows, "anomaly")
    stall = _text(rows, "stall")
    lines = []
    for i, index in enumerate(rows.index):
        cells = [f'<td data-v="{_num(start[i])}">{_seconds(start[i])}</td>',
                 f'<td class="text">{html.escape(flow[i])}</td>']
        for column in ("request_bytes", "response_bytes"):
            value = _float(rows.at[index, column]) if column in rows.columns else None
            cells.append(f'<td data-v="{_num(value)}">{"–" if value is None else int(value)}'
                         "</td>")
        for name, values in gaps.items():
            hot = ' class="hot"' if anomaly[i] == name else ""
            cells.append(f'<td{hot} data-v="{_num(values[index])}">'
                         f"{html.escape(format_duration(_float(values[index])))}</td>")
        cells += [f'<td class="text">{html.escape(anomaly[i])}</td>',
                  f'<td class="text">{html.escape(stall[i])}</td>']
        attrs = f' class="anomaly" data-anomaly="{html.escape(anomaly[i])}"' if anomaly[i] else ""
        lines.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    content = ('<div class="scroll"><table class="sortable" id="flows-table"><thead><tr>'
               '<th>request at (s)</th><th class="text">flow</th><th>request bytes</th>'
               "<th>response bytes</th><th>request → response</th><th>response → next</th>"
               '<th class="text">anomaly</th><th class="text">stall</th></tr></thead>\n'
               "<tbody>\n" + "\n".join(lines) + "\n</tbody></table></div>\n"
               f'<p class="caption">{len(rows)} of {len(flows)} exchanges: the slowest and '
               "every anomalous one. request → response is the far side's time; response → "
               "next is the client's own (where a black 0.1 s shows without a socket "
               "log).</p>")
    return _section("exchanges", "Request / response exchanges", content)


# ---------------------------------------------------------------------------------------------
# Charts


def _figure_html(fig: Any, div_id: str, height: int) -> str:
    import plotly.io as pio

    fig.update_layout(template=_TEMPLATE, height=height, margin={"l": 60, "r": 20, "t": 40,
                                                                 "b": 50})
    return ('<div class="figure">' + pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=_PLOT_CONFIG,
        default_height=f"{height}px", default_width="100%", validate=False) + "</div>")


def _waterfall(table: pd.DataFrame) -> str:
    import plotly.graph_objects as go

    rows = select_packets(table, worst=WATERFALL_WORST, normal=WATERFALL_NORMAL,
                          max_anomalous=WATERFALL_ANOMALOUS)
    bars = segments(table, rows)
    if bars.empty:
        return "<p>No packet has two checkpoints: nothing to draw.</p>"
    labels = np.array(packet_labels(table.loc[rows]), dtype=object)
    marks = checkpoints(table, rows)
    fig = go.Figure()
    for interval in intervals(table):
        part = bars[bars["interval"] == interval.name]
        if part.empty:
            continue
        odd = part["anomalous"].to_numpy()
        fig.add_trace(go.Bar(
            name=interval.label,
            orientation="h", y=labels[part["order"].to_numpy(dtype=int)].tolist(),
            x=_r(part["duration_us"] / 1e3), base=_r(part["start_us"] / 1e3),
            marker={"color": interval.color,
                    "line": {"color": np.where(odd, ANOMALY_COLOR, interval.color).tolist(),
                             "width": np.where(odd, 3, 0).tolist()},
                    "pattern": {"shape": np.where(odd, "/", "").tolist(),
                                "fgcolor": "#ffffff"}},
            customdata=np.column_stack([
                [format_duration(v) for v in part["duration_us"]],
                np.where(odd, "ANOMALY " + part["cause"].astype(str), ""),
            ]).tolist(),
            hovertemplate=(f"<b>{interval.name}</b> %{{customdata[0]}}<br>from %{{base:.3f}} ms"
                           "<br>%{customdata[1]}<extra>%{y}</extra>"),
        ))
    fig.add_trace(go.Scatter(
        name="checkpoints", mode="markers",
        x=_r(marks["at_us"] / 1e3), y=labels[marks["order"].to_numpy(dtype=int)].tolist(),
        marker={"symbol": "line-ns-open", "size": 12, "color": "#222", "line": {"width": 1.5}},
        text=marks["checkpoint"].tolist(),
        customdata=[f"{v:.6f}" for v in marks["epoch_s"]],
        hovertemplate="%{text} at +%{x:.3f} ms<br>epoch %{customdata} s<extra>%{y}</extra>",
    ))
    # a stall next to µs stages: start on a log axis (the first stage then reaches the left
    # edge, as its start, 0, has no logarithm)
    ends = (bars["start_us"] + bars["duration_us"]).groupby(bars["order"]).max()
    typical = float(ends.median())
    log_x = bool(typical > 0 and ends.max() > WATERFALL_LOG_RATIO * typical)
    ordered = labels.tolist()
    fig.update_layout(
        barmode="overlay", bargap=0.25, hovermode="closest",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        xaxis={"title": {"text": "time since the packet's first checkpoint (ms)"},
               "type": "log" if log_x else "linear"},
        yaxis={"categoryorder": "array", "categoryarray": ordered, "autorange": "reversed",
               "tickfont": {"size": 10}},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 1.0, "xanchor": "right",
                      "y": -0.02, "yanchor": "top", "showactive": True,
                      "active": 1 if log_x else 0,
                      "buttons": [
                          {"label": "linear", "method": "relayout",
                           "args": [{"xaxis.type": "linear"}]},
                          {"label": "log", "method": "relayout",
                           "args": [{"xaxis.type": "log"}]}]}],
    )
    height = 140 + 20 * len(rows)
    caption = (f'<p class="caption">{len(rows)} of {len(table)} packets: every anomalous one '
               f"(up to {WATERFALL_ANOMALOUS}), the {WATERFALL_WORST} slowest, and "
               f"{WATERFALL_NORMAL} normal ones spread over the capture. Bars are stages, "
               "ticks are checkpoints; anomalous stages are hatched with a thick outline. "
               "Drag to zoom, double-click to reset. On the log axis (chosen when a packet "
               f"took over {WATERFALL_LOG_RATIO:g}× the typical one) the first stage reaches "
               "the left edge.</p>")
    return _figure_html(fig, "fig-waterfall", height) + caption


def _timeline(table: pd.DataFrame) -> str:
    import plotly.graph_objects as go

    when = first_times(table)
    if len(table) == 0 or not np.isfinite(when).any():
        return "<p>No packet has a time: nothing to draw.</p>"
    t0 = float(np.nanmin(when))
    x_all = when - t0
    fig = go.Figure()
    downsampled = False
    for interval in measures(table):
        y = numeric(table, interval.column).to_numpy()
        ok = np.isfinite(y) & np.isfinite(x_all)
        if not ok.any():
            continue
        x, yv = x_all[ok], y[ok]
        if ok.sum() > MAX_POINTS_PER_SERIES:
            x, yv = _downsample(x, yv)
            downsampled = True
        fig.add_trace(go.Scatter(
            name=interval.name, mode="markers", x=_r(x, 6), y=_r(np.maximum(yv, LOG_FLOOR_US)),
            marker={"color": interval.color, "size": 4, "opacity": 0.7},
            hovertemplate=f"{interval.name} %{{y:.1f}} µs at %{{x:.6f}} s<extra></extra>",
        ))
    flagged = anomalous(table).to_numpy()
    names = _text(table, "anomaly")
    value = np.full(len(table), np.nan)
    for interval in measures(table):
        hit = names == interval.name
        value[hit] = numeric(table, interval.column).to_numpy()[hit]
    # an anomaly without a value of its own stage is still marked, at its total
    missing = flagged & ~np.isfinite(value)
    value[missing] = numeric(table, "total_us").to_numpy()[missing]
    marked = flagged & np.isfinite(value) & np.isfinite(x_all)
    index = np.flatnonzero(marked)
    if not fig.data and not len(index):
        return "<p>No stage was measured: nothing to draw.</p>"
    fig.add_trace(go.Scatter(
        name="anomalies", mode="markers", x=_r(x_all[index], 6),
        y=_r(np.maximum(value[index], LOG_FLOOR_US)),
        marker={"symbol": "x", "size": 11, "color": ANOMALY_COLOR,
                "line": {"width": 1, "color": "#000"}},
        customdata=np.column_stack([names[index], _text(table, "cause")[index],
                                    index.astype(str),
                                    [format_duration(v) for v in value[index]]]).tolist()
        if len(index) else [],
        hovertemplate=("<b>anomaly: %{customdata[0]}</b> %{customdata[3]}<br>"
                       "cause: %{customdata[1]}<br>packet #%{customdata[2]} at %{x:.6f} s"
                       "<extra></extra>"),
    ))
    fig.update_layout(
        hovermode="closest", legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        xaxis={"title": {"text": "time since the first packet (s)"}},
        yaxis={"title": {"text": "duration (µs)"}, "type": "log"},
    )
    note = (f" More than {MAX_POINTS_PER_SERIES} packets: each stage shows the min, median "
            f"and max of {TIME_BUCKETS} time buckets; every anomalous packet is kept."
            if downsampled else "")
    return (_figure_html(fig, "fig-timeline", 460)
            + f'<p class="caption">Each dot is a packet\'s stage duration; crosses are the '
              f"{int(marked.sum())} anomalous packets (at their anomalous stage).{note}</p>")


def _downsample(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per time bucket: the min, the median and the max (min/max at their own times)."""
    span = float(x.max() - x.min()) or 1.0
    bucket = np.minimum(((x - x.min()) / span * TIME_BUCKETS).astype(np.int64),
                        TIME_BUCKETS - 1)
    frame = pd.DataFrame({"b": bucket, "x": x, "y": y})
    grouped = frame.groupby("b", sort=True)
    lo = frame.loc[grouped["y"].idxmin()]
    hi = frame.loc[grouped["y"].idxmax()]
    mid = grouped.agg(x=("x", "median"), y=("y", "median")).reset_index()
    out = pd.concat([lo, mid, hi], ignore_index=True).sort_values(["x", "y"], kind="stable")
    return out["x"].to_numpy(), out["y"].to_numpy()


def _distributions(table: pd.DataFrame) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("histogram (log bins)", "CDF"),
                        horizontal_spacing=0.08)
    measured = {}
    for interval in measures(table):
        values = numeric(table, interval.column).to_numpy()
        values = np.maximum(values[np.isfinite(values)], LOG_FLOOR_US)
        if values.size:
            measured[interval] = values
    if not measured:
        return "<p>No stage was measured: nothing to draw.</p>"
    # one set of bins for every stage, so that their histograms compare
    lo = min(float(v.min()) for v in measured.values())
    hi = max(float(v.max()) for v in measured.values())
    edges = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 1.01 + 1e-9, HISTOGRAM_BINS + 1)
    for interval, values in measured.items():
        counts, _ = np.histogram(values, bins=edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        group = {"legendgroup": interval.name, "line": {"color": interval.color}}
        fig.add_trace(go.Scatter(
            name=interval.name, x=_r(centres), y=counts.tolist(), mode="lines",
            line_shape="hvh", fill="tozeroy", opacity=0.6,
            hovertemplate=f"{interval.name} ≈%{{x:.1f}} µs: %{{y}} packets<extra></extra>",
            **group), row=1, col=1)
        probs = np.linspace(0.0, 1.0, CDF_POINTS)
        fig.add_trace(go.Scatter(
            name=interval.name, x=_r(np.quantile(values, probs)), y=_r(probs, 4),
            mode="lines", showlegend=False,
            hovertemplate=f"{interval.name} p%{{y:.3f}} = %{{x:.1f}} µs<extra></extra>",
            **group), row=1, col=2)
    fig.update_xaxes(type="log", title_text="duration (µs)")
    fig.update_yaxes(title_text="packets", row=1, col=1)
    fig.update_yaxes(title_text="fraction of packets ≤ duration", row=1, col=2)
    fig.update_layout(legend={"orientation": "h", "y": 1.08, "yanchor": "bottom"})
    return (_figure_html(fig, "fig-distributions", 420)
            + '<p class="caption">Stages are measured per packet; a stage missing here '
              "was not measurable with the sources given (see the notes).</p>")


# ---------------------------------------------------------------------------------------------
# Helpers


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _details(extra: dict[str, Any]) -> str:
    """Other alignment fields as ``key: value`` lines (values as JSON, numbers shortened)."""
    lines = []
    for key in sorted(extra):
        value = extra[key]
        number = _float(value) if not isinstance(value, (bool, str)) else None
        if number is not None:
            text = f"{number:.6g}"
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=str, ensure_ascii=False)
        lines.append(f"<b>{html.escape(str(key))}</b>: {html.escape(text)}")
    return "<br>".join(lines)


def _flow_labels(rows: pd.DataFrame) -> list[str]:
    """Each row's ``src:sport → dst:dport`` (IPv6 in brackets)."""
    columns = [_text(rows, c) for c in ("src", "sport", "dst", "dport")]
    return [format_flow(*parts) for parts in zip(*columns, strict=True)]


def _text(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.full(len(table), "", dtype=object)
    return table[column].astype(object).where(table[column].notna(), "").astype(str) \
        .to_numpy(dtype=object)


def _r(values: Any, digits: int = 3) -> list[float | None]:
    """Rounded plain floats for chart data (1 ns for µs, NaN → None): small, stable JSON."""
    array = np.round(np.asarray(values, dtype=float), digits)
    return [None if not math.isfinite(v) else float(v) for v in array.tolist()]


def _num(value: Any) -> str:
    number = _float(value)
    return "" if number is None else f"{number:.3f}"


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _plain(value: Any) -> str:
    number = _float(value)
    if number is None:
        return "–" if value is None else str(value)
    return f"{number:.6g}"


def _seconds(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.6f}"
