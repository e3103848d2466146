"""The self-contained HTML report of ``xenlat report`` (plotly.js charts, inlined, offline).

One file: plotly.js (its *basic* partial bundle, 1.2 MB: scatter and bar charts are all the
report draws), the styles and a small table-sorting script are inlined, nothing is fetched.
The charts are plain plotly.js figure documents written here as JSON: no Python plotting
library is imported. Sections: verdict and what the run says at a glance (clocks, first
packet), notes, statistics per direction, the per-packet waterfall of each direction
(received, sent), latency over time with every anomaly marked, distributions, clock
alignment, and the worst packets with their causes.

The report is read at a glance: the waterfall's time axis is linear (a 100 ms stall is the
long bar, a 4 µs stage a sliver), each anomalous stage is labelled where its bar ends, every
duration column has one unit and one number of decimals, and packet times are written one
way: seconds after the first packet (whose UTC time the header gives once).

Large analyses stay light: the waterfall draws a selection of packets, the time series keeps
per time bucket the min / median / max of each stage (and every anomalous packet), the
distributions are binned. The output is deterministic: same analysis, same bytes.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import OptionError
from ..model import format_flow
from ..pipeline.stats import stage_stats
from ..units import format_duration
from . import explain
from .numbers import ColumnFormat, column_format
from .waterfall import (
    ANOMALY_COLOR,
    CAUSE_WORDS,
    DIRECTIONS,
    STAGE_COLORS,
    Interval,
    anomalous,
    checkpoints,
    direction_rows,
    first_times,
    intervals,
    lone_intervals,
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
#: Rows of the worst-packets table by default (anomalous packets come on top, up to the cap).
WORST_ROWS = 30
MAX_ANOMALOUS_ROWS = 200
#: Packets the interactive waterfall of each direction shows.
WATERFALL_WORST = 20
WATERFALL_NORMAL = 20
WATERFALL_ANOMALOUS = 40
#: Smallest duration on log axes (a stage can measure 0 µs).
LOG_FLOOR_US = 0.1

_PLOT_CONFIG = {"displaylogo": False, "responsive": True,
                "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}


def write_html_report(analysis: Any, path: str | Path, *, top: int = WORST_ROWS) -> Path:
    """Write the report of ``analysis`` to ``path``; returns the path. ``top``: slowest
    packets listed (every anomalous one is listed too).

    Raises ``OptionError`` when ``path`` cannot be written (a missing directory, say).
    """
    path = Path(path)
    text = render_html_report(analysis, top=top)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


def render_html_report(analysis: Any, *, top: int = WORST_ROWS) -> str:
    """The report as one HTML document (a str)."""
    table = analysis.table.reset_index(drop=True)
    flagged = anomalous(table)
    assets = resources.files(__package__) / "assets"
    sections = [
        _header(analysis, table, flagged),
        _section("notes", "Notes", _notes(analysis.notes)),
        _section("stages", "Where the time went", _stats_table(analysis, table)),
        _section("waterfall", "Per-packet waterfall", _waterfalls(table, top)),
        _section("timeline", "Latency over time", _timeline(table)),
        _section("distributions", "Distributions", _distributions(table)),
        _section("alignment", "Clock alignment", _alignment(analysis.alignment)),
        _section("worst", "Worst packets", _worst_table(table, flagged, top)),
        _flows(analysis.flows, table),
        # sections of other modules (the Wireshark view of the worst packets, idle gaps)
        # are added here, each a _section(...) string
        explain.idle_section(analysis.flows),
        explain.html_section(analysis),
        f'<footer>Written by xenlat {html.escape(__version__)}. Times are on the '
        f"{html.escape(str(table.attrs.get('clock') or 'capture'))} clock; durations are "
        "rounded to what the clocks support. Charts: plotly.js (MIT).</footer>",
    ]
    return Template((assets / "report.html").read_text(encoding="utf-8")).substitute(
        version=html.escape(__version__),
        title=html.escape(f"xenlat report: {_source_names(analysis) or 'analysis'}"),
        style=(assets / "report.css").read_text(encoding="utf-8"),
        plotlyjs=(assets / "plotly-basic.min.js").read_text(encoding="utf-8"),
        packets=len(table), anomalies=int(flagged.sum()),
        body="\n".join(s for s in sections if s),
        script=(assets / "report.js").read_text(encoding="utf-8"),
    )


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'


def _source_names(analysis: Any) -> str:
    return ", ".join(Path(str(getattr(analysis.sources, name))).name
                     for name in analysis.sources.present)


def _header(analysis: Any, table: pd.DataFrame, flagged: pd.Series) -> str:
    sources = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(str(getattr(analysis.sources, name)))}"
        "</li>" for name in analysis.sources.present)
    if flagged.any():
        counts = (table.loc[flagged].assign(key=_keys(table.loc[flagged]))["key"]
                  .value_counts().sort_index())
        parts = ", ".join(f"{html.escape(key)} ×{n}" for key, n in counts.items())
        verdict = (f'<span class="verdict bad">{int(flagged.sum())} anomalous packets: '
                   f"{parts}</span>")
    else:
        verdict = '<span class="verdict ok">no anomalous packet</span>'
    ways = ", ".join(f"{int(direction_rows(table, w).sum())} {word}"
                     for w, word in DIRECTIONS.items())
    glance = [f"<li>{len(table)} data segments ({ways}). {verdict}</li>"]
    when = first_times(table)
    if np.isfinite(when).any():
        first = dt.datetime.fromtimestamp(float(np.nanmin(when)), dt.UTC)
        clock = table.attrs.get("clock")
        glance.append(f"<li>First packet at <b>{first:%Y-%m-%d %H:%M:%S.%f} UTC</b>"
                      f"{f' ({html.escape(clock)} clock)' if clock else ''}; every time below "
                      "is in seconds after it.</li>")
    for pair, entry in sorted(analysis.alignment.items()):
        if isinstance(entry, dict):
            glance.append(f'<li class="clock">{html.escape(_clock_words(pair, entry))}</li>')
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("waterfall", "waterfall"), ("timeline", "over time"),
        ("distributions", "distributions"), ("alignment", "alignment"),
        ("worst", "worst packets")))
    return (f'<header>\n<h1>xenlat report</h1>\n<ul class="glance">{"".join(glance)}</ul>\n'
            f"<nav>{nav}</nav>\n<details><summary>sources</summary><ul>{sources}</ul>"
            "</details>\n</header>")


def _keys(rows: pd.DataFrame) -> pd.Series:
    """Each anomalous row's anomaly as budgets name it (``socket_read``, ``tx.vmm``)."""
    label = rows["anomaly"].astype(str)
    way = rows["direction"].astype(str) if "direction" in rows.columns else "rx"
    return label.where((way == "rx") | (label.isin(["request_to_response",
                                                      "response_to_next"])),
                       way + "." + label)


def _clock_words(pair: str, entry: dict[str, Any]) -> str:
    """``guest->dom0: offset -355 µs, drift -1.45 ppm, ±8 µs (bounded)``."""
    quality = str(entry.get("quality", "?"))
    hz = _float(entry.get("cpu_hz"))
    unc = _float(entry.get("uncertainty_us"))
    plus = f", ±{format_duration(unc)}" if unc is not None else ""
    if hz is not None:
        est = " estimated" if entry.get("cpu_hz_estimated") else ""
        return f"{pair}: TSC {hz / 1e9:.6f} GHz{est}{plus} ({quality})"
    offset, drift = _float(entry.get("offset_ns")), _float(entry.get("drift_ppm"))
    if offset is None:
        return f"{pair}: not aligned ({quality}) — {entry.get('detail', '')}"
    drift_text = f", drift {drift:+.2f} ppm" if drift is not None else ""
    return f"{pair}: offset {format_duration(offset / 1e3)}{drift_text}{plus} ({quality})"


def _notes(notes: list[str]) -> str:
    if not notes:
        return "<p>No notes.</p>"
    items = "\n".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
    return f'<ul class="notes">\n{items}\n</ul>'


def _stat_rows(table: pd.DataFrame) -> list[tuple[Interval, str]]:
    """(interval, span) per statistics row: each direction's intervals and total, then the
    lone-capture intervals — only what the table measures."""
    rows = []
    for way in DIRECTIONS:
        mine = intervals(table, way)
        if mine:
            rows += [(iv, f"{iv.start}→{iv.end}") for iv in mine]
            rows.append((Interval("total", "first", "last", direction=way), "first→last"))
    rows += [(iv, "per exchange") for iv in lone_intervals(table)]
    return rows


def _stats_table(analysis: Any, table: pd.DataFrame) -> str:
    rows = _stat_rows(table)
    stats = stage_stats(table, [iv.key for iv, _ in rows])
    rows = [(iv, span) for iv, span in rows if (stats.get(iv.key) or {}).get("count")]
    if not rows:
        return "<p>No stage was measured: nothing to summarize.</p>"
    columns = ("p50", "p90", "p99", "p99.9", "max", "mean")
    unc = max((_float((analysis.baselines.get(iv.key) or {}).get("uncertainty_us")) or 0.0
               for iv, _ in rows), default=0.0)
    # one unit for every duration column, so that a row reads across
    shared = column_format([stats[iv.key][c] for iv, _ in rows for c in columns], unc)
    formats = dict.fromkeys(columns, shared)
    head = "".join(f"<th>{c} ({formats[c].unit})</th>" for c in columns)
    lines = []
    for iv, span in rows:
        entry = stats[iv.key]
        cells = [f'<td data-v="{entry["count"]}">{entry["count"]}</td>']
        cells += [f'<td data-v="{_num(entry[c])}">{formats[c](entry[c])}</td>' for c in columns]
        own = _float((analysis.baselines.get(iv.key) or {}).get("uncertainty_us"))
        cells.append(f"<td>{html.escape(format_duration(own)) if own else ''}</td>")
        hot = ' class="hot"' if entry["anomalies"] else ""
        cells.append(f'<td{hot} data-v="{entry["anomalies"]}">{entry["anomalies"]}</td>')
        lines.append(f'<tr data-key="{html.escape(iv.key)}"><td class="text">'
                     f"{_swatch(iv.color)}{html.escape(iv.key)}</td>"
                     f'<td class="text span">{html.escape(span)}</td>{"".join(cells)}</tr>')
    return ('<table class="sortable" id="stats-table"><thead><tr><th class="text">stage</th>'
            f'<th class="text">span</th><th>n</th>{head}<th>±</th><th>anomalies</th></tr>'
            f"</thead>\n<tbody>\n{chr(10).join(lines)}\n</tbody></table>\n"
            '<p class="caption">Received segments first (their stages in path order), then '
            "sent ones (<code>tx.</code>, as budgets name them), then what one capture alone "
            "measures per exchange. ± is the clock-alignment uncertainty of the stage.</p>")


def _alignment(alignment: dict[str, Any]) -> str:
    if not alignment:
        return "<p>No clock alignment was needed (one clock domain).</p>"
    rows = []
    for pair in sorted(alignment):
        entry = alignment[pair] if isinstance(alignment[pair], dict) else {}
        quality = str(entry.get("quality", "–"))
        hz = _float(entry.get("cpu_hz"))
        if hz is not None:  # the TSC: its rate is what was fitted, with an offset
            offset = f"TSC {hz / 1e9:.6f} GHz" + (" (est.)" if entry.get("cpu_hz_estimated")
                                                  else "")
            ppm = _float(entry.get("hz_uncertainty_ppm"))
            drift = f"±{ppm:.2f} ppm" if ppm is not None else "–"
        else:
            value = _float(entry.get("offset_ns"))
            offset = format_duration(value / 1e3) if value is not None else "–"
            value = _float(entry.get("drift_ppm"))
            drift = f"{value:+.2f} ppm" if value is not None else "–"
        how = str(entry.get("detail") or "")
        if entry.get("from"):
            how = f"from {entry['from']}: {how}" if how else f"from {entry['from']}"
        rows.append(
            f'<tr><td class="text">{html.escape(pair)}</td>'
            f'<td class="text quality-{html.escape(quality)}">{html.escape(quality)}</td>'
            f'<td class="offset">{html.escape(offset)}</td><td class="drift">'
            f"{html.escape(drift)}</td>"
            f"<td>{html.escape(format_duration(_float(entry.get('uncertainty_us'))))}</td>"
            f'<td class="text details">{html.escape(how)}</td></tr>')
    return ('<table id="alignment-table"><thead><tr><th class="text">clocks</th>'
            '<th class="text">quality</th><th>offset</th><th>drift</th><th>±</th>'
            '<th class="text">how it was found</th></tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody></table>\n"
            '<p class="caption">bounded: packets in both directions bound the offset; '
            "one-sided: only one direction, the offset is a bound; inconsistent: the "
            "constraints contradict each other, stages across these clocks are suspect.</p>")


def _badness(table: pd.DataFrame) -> pd.Series:
    """How bad a packet is: its total, or (one capture alone) its longest measured interval."""
    total = numeric(table, "total_us")
    longest = pd.concat([numeric(table, iv.column) for iv in measures(table)]
                        + [pd.Series(np.nan, index=table.index)], axis=1).max(axis=1)
    return total.where(total.notna(), longest)


def _worst_table(table: pd.DataFrame, flagged: pd.Series, top: int) -> str:
    if len(table) == 0:
        return "<p>No packet.</p>"
    badness = _badness(table)
    keep = set(badness.nlargest(top, keep="first").index)
    keep |= set(badness[flagged].sort_values(ascending=False, kind="stable")
                .index[:MAX_ANOMALOUS_ROWS])
    order = badness.loc[sorted(keep)].sort_values(ascending=False, kind="stable",
                                                  na_position="last").index
    rows = table.loc[order]
    when = first_times(table)
    t0 = float(np.nanmin(when)) if np.isfinite(when).any() else np.nan
    at = first_times(rows) - t0
    unc = numeric(rows, "uncertainty_us").to_numpy()
    worst_unc = float(np.nanmax(unc)) if np.isfinite(unc).any() else None
    totals = badness.loc[order].to_numpy()
    fmt = column_format(totals, worst_unc)
    anomaly, cause = _text(rows, "anomaly"), _text(rows, "cause")
    detail, stall = _text(rows, "cause_detail"), _text(rows, "stall")
    direction, flows = _text(rows, "direction"), _flow_labels(rows)
    length = _text(rows, "len")
    frames = _text(rows, "frame")
    # the intervals a row can hold: its direction's, else (one capture) the exchange's
    shown = {way: intervals(table, way) or lone_intervals(table) for way in DIRECTIONS}
    lines = []
    for i, index in enumerate(rows.index):
        record = rows.loc[index]
        anomaly_text = anomaly[i] + (f" {stall[i]}" if anomaly[i] and stall[i] else "")
        cause_text = cause[i] + (f" — {detail[i]}" if detail[i] else "")
        cells = [f'<td data-v="{_num(_float(frames[i]))}">{html.escape(frames[i])}</td>',
                 f'<td data-v="{_num(at[i])}">{_seconds(at[i])}</td>',
                 f'<td class="text">{html.escape(direction[i])}</td>',
                 f'<td class="text flow">{html.escape(flows[i])}</td>',
                 f'<td data-v="{_num(_float(length[i]))}">{html.escape(length[i])}</td>',
                 f'<td class="text">'
                 f'{_split_bar(record, shown.get(direction[i], []), anomaly[i], fmt)}</td>',
                 f'<td data-v="{_num(totals[i])}">{fmt(totals[i])}</td>',
                 f'<td data-v="{_num(unc[i])}">{html.escape(format_duration(_float(unc[i])))}'
                 "</td>",
                 f'<td class="text hot">{html.escape(anomaly_text)}</td>',
                 f'<td class="text cause" title="{html.escape(CAUSE_WORDS.get(cause[i], ""))}">'
                 f"{html.escape(cause_text)}</td>"]
        attrs = (f' class="anomaly" data-anomaly="{html.escape(anomaly[i])}"' if anomaly[i]
                 else "")
        lines.append(f'<tr data-row="{index}"{attrs}>{"".join(cells)}</tr>')
    return ('<table class="sortable" id="worst-table"><thead><tr>'
            '<th>frame</th><th>t (s)</th><th class="text">dir</th>'
            '<th class="text">flow</th><th>len</th><th class="text">split</th>'
            f'<th>total ({fmt.unit})</th><th>±</th><th class="text">anomaly</th>'
            f'<th class="text">cause</th></tr></thead>\n<tbody>\n' + "\n".join(lines)
            + "\n</tbody></table>\n"
            f'<p class="caption">{len(rows)} packets: the {min(top, len(table))} slowest and '
            f"every anomalous one (up to {MAX_ANOMALOUS_ROWS}); click a column to sort. frame "
            "is the packet's number in the guest capture (else dom0's), as Wireshark shows "
            "it; t is seconds after the first packet; split shows how the total divides "
            "into stages (hover for the values), the anomalous stage outlined; ± is the "
            "clock-alignment uncertainty.</p>")


def _split_bar(record: pd.Series, shown: list[Interval], anomaly: str,
               fmt: ColumnFormat) -> str:
    """The row's intervals (``shown``: its direction's) as one proportional bar."""
    parts = []
    for iv in shown:
        value = _float(record.get(iv.column))
        if value is not None and value > 0:
            parts.append((iv, value))
    total = sum(v for _, v in parts)
    if total <= 0:
        return "–"
    spans = []
    for iv, value in parts:
        outline = " odd" if iv.name == anomaly else ""
        spans.append(f'<span class="seg{outline}" style="flex-grow:{value / total:.4f};'
                     f'background:{iv.color}" title="{html.escape(iv.key)} '
                     f'{fmt.with_unit(value)}"></span>')
    return f'<span class="split">{"".join(spans)}</span>'


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
    when = first_times(table)
    t0 = float(np.nanmin(when)) if np.isfinite(when).any() else np.nan
    start = numeric(rows, "t_request").to_numpy() - t0
    flow = _flow_labels(rows)
    anomaly, stall = _text(rows, "anomaly"), _text(rows, "stall")
    formats = {name: column_format(values.loc[rows.index]) for name, values in gaps.items()}
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
                         f"{formats[name](values[index])}</td>")
        cells += [f'<td class="text">{html.escape(anomaly[i])}</td>',
                  f'<td class="text">{html.escape(stall[i])}</td>']
        attrs = f' class="anomaly" data-anomaly="{html.escape(anomaly[i])}"' if anomaly[i] else ""
        lines.append(f"<tr{attrs}>{''.join(cells)}</tr>")
    r2r, r2n = formats["request_to_response"].unit, formats["response_to_next"].unit
    content = ('<table class="sortable" id="flows-table"><thead><tr>'
               '<th>request at t (s)</th><th class="text">flow</th><th>request bytes</th>'
               f"<th>response bytes</th><th>request → response ({r2r})</th>"
               f"<th>response → next ({r2n})</th>"
               '<th class="text">anomaly</th><th class="text">stall</th></tr></thead>\n'
               "<tbody>\n" + "\n".join(lines) + "\n</tbody></table>\n"
               f'<p class="caption">{len(rows)} of {len(flows)} exchanges: the slowest and '
               "every anomalous one. request → response is the far side's time; response → "
               "next is the client's own (where a black 0.1 s shows without a socket "
               "log).</p>")
    return _section("exchanges", "Request / response exchanges", content)


# Charts: plotly.js figure documents (data, layout), drawn by the inlined bundle


def _figure_html(data: list[dict[str, Any]], layout: dict[str, Any], div_id: str,
                 height: int) -> str:
    layout = {"template": None, "font": _FONT, "height": height, "paper_bgcolor": "#fff",
              "plot_bgcolor": "#fff",
              "margin": {"l": 100, "r": 20, "t": 40, "b": 50}, **layout}
    args = ", ".join(_json(v) for v in (data, layout, _PLOT_CONFIG))
    return (f'<div class="figure"><div id="{div_id}" class="plot" style="height:{height}px">'
            f'</div></div>\n<script>Plotly.newPlot("{div_id}", {args});</script>')


def _json(value: Any) -> str:
    """JSON safe inside a <script> element (no ``</`` can close it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False) \
        .replace("</", "<\\/").replace("<!--", "<\\!--")


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "gridcolor": "#e6e6e6", "zeroline": False,
            "linecolor": "#999", **extra}


def _waterfalls(table: pd.DataFrame, top: int) -> str:
    parts = [_waterfall(table, way) for way in DIRECTIONS if intervals(table, way)]
    if not parts:
        if lone_intervals(table):
            return ("<p>One capture gives each packet one checkpoint: the split into stages "
                    "needs a second source (dom0's captures, xentrace, the socket log). What "
                    "this capture measures per exchange — request → response, response → "
                    "next request — is in the statistics, over time and in the exchanges "
                    "below.</p>")
        return "<p>No packet has two checkpoints: nothing to draw.</p>"
    return "\n".join(parts)


def _waterfall(table: pd.DataFrame, way: str) -> str:
    mine = table[direction_rows(table, way)]
    rows = select_packets(mine, worst=WATERFALL_WORST, normal=WATERFALL_NORMAL,
                          max_anomalous=WATERFALL_ANOMALOUS)
    bars = segments(mine, rows)
    if bars.empty:
        return ""
    labels = np.array(packet_labels(mine.loc[rows]), dtype=object)
    marks = checkpoints(mine, rows)
    data: list[dict[str, Any]] = []
    for interval in intervals(mine, way):
        part = bars[bars["interval"] == interval.name]
        if part.empty:
            continue
        odd = part["anomalous"].to_numpy()
        data.append({
            "type": "bar", "orientation": "h", "name": interval.label,
            "y": labels[part["order"].to_numpy(dtype=int)].tolist(),
            "x": _r(part["duration_us"] / 1e3, 6), "base": _r(part["start_us"] / 1e3, 6),
            "marker": {"color": interval.color,
                       "line": {"color": np.where(odd, ANOMALY_COLOR, interval.color).tolist(),
                                "width": np.where(odd, 3, 0).tolist()},
                       "pattern": {"shape": np.where(odd, "/", "").tolist(),
                                   "fgcolor": "#ffffff", "solidity": 0.25}},
            "customdata": [format_duration(v) for v in part["duration_us"]],
            "hovertemplate": (f"<b>{interval.key}</b> %{{customdata}}<br>from +%{{base:.3f}} "
                              "ms<extra>%{y}</extra>"),
        })
    data.append({
        "type": "scatter", "name": "checkpoints", "mode": "markers",
        "x": _r(marks["at_us"] / 1e3, 6), "y": labels[marks["order"].to_numpy(dtype=int)].tolist(),
        "marker": {"symbol": "line-ns-open", "size": 12, "color": "#222", "line": {"width": 1.5}},
        "text": marks["checkpoint"].tolist(),
        "hovertemplate": "%{text} at +%{x:.3f} ms<extra>%{y}</extra>",
    })
    odd = bars[bars["anomalous"].astype(bool)]
    if len(odd):  # each stall named where its bar ends: obvious without hovering
        ends = (odd["start_us"] + odd["duration_us"]) / 1e3
        data.append({
            "type": "scatter", "name": "anomalies", "mode": "text", "showlegend": False,
            "x": _r(ends, 6), "y": labels[odd["order"].to_numpy(dtype=int)].tolist(),
            "text": [f"  ⚠ {key} {format_duration(v)}" + (f" ({c})" if c else "")
                     for key, v, c in zip(odd["key"], odd["duration_us"], odd["cause"],
                                          strict=True)],
            "textposition": "middle right",
            "textfont": {"color": ANOMALY_COLOR, "size": 11}, "hoverinfo": "skip",
        })
    ends = (bars["start_us"] + bars["duration_us"]).groupby(bars["order"]).max() / 1e3
    layout = {
        "barmode": "overlay", "bargap": 0.25, "hovermode": "closest",
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom"},
        "xaxis": _axis("time since the packet's first checkpoint (ms)", type="linear",
                       range=[0, float(ends.max()) * (1.45 if len(odd) else 1.05)]),
        "yaxis": {"categoryorder": "array", "categoryarray": labels.tolist(),
                  "autorange": "reversed", "tickfont": {"size": 10}},
        "updatemenus": [{"type": "buttons", "direction": "left", "x": 1.0, "xanchor": "right",
                         "y": -0.02, "yanchor": "top", "showactive": True, "active": 0,
                         "buttons": [
                             {"label": "linear", "method": "relayout",
                              "args": [{"xaxis.type": "linear", "xaxis.autorange": True}]},
                             {"label": "log", "method": "relayout",
                              "args": [{"xaxis.type": "log", "xaxis.autorange": True}]}]}],
    }
    word = DIRECTIONS[way]
    caption = (f'<p class="caption">{len(rows)} of {len(mine)} {word} segments: every '
               f"anomalous one (up to {WATERFALL_ANOMALOUS}), the {WATERFALL_WORST} slowest "
               f"and {WATERFALL_NORMAL} normal ones spread over the capture. Bars are stages "
               "on a linear time axis (a stall is the long bar); ticks are checkpoints; an "
               "anomalous stage is hatched, outlined and named where it ends. The log button "
               "spreads the µs stages; drag to zoom, double-click to reset.</p>")
    height = 150 + 18 * len(rows)
    title = f"<h3>{word.capitalize()} ({way})</h3>"
    return title + _figure_html(data, layout, f"fig-waterfall-{way}", height) + caption


def _series(table: pd.DataFrame) -> list[tuple[Interval, np.ndarray]]:
    """Per measured interval key: its values on its own rows (NaN on the others)."""
    out = []
    for interval in measures(table):
        values = numeric(table, interval.column).to_numpy().copy()
        values[~direction_rows(table, interval.direction)] = np.nan
        if np.isfinite(values).any():
            out.append((interval, values))
    return out


def _timeline(table: pd.DataFrame) -> str:
    when = first_times(table)
    if len(table) == 0 or not np.isfinite(when).any():
        return "<p>No packet has a time: nothing to draw.</p>"
    x_all = when - float(np.nanmin(when))
    data: list[dict[str, Any]] = []
    downsampled = False
    for interval, y in _series(table):
        ok = np.isfinite(y) & np.isfinite(x_all)
        x, yv = x_all[ok], y[ok]
        if ok.sum() > MAX_POINTS_PER_SERIES:
            x, yv = _downsample(x, yv)
            downsampled = True
        data.append({
            "type": "scatter", "name": interval.key, "mode": "markers",
            "x": _r(x, 6), "y": _r(np.maximum(yv, LOG_FLOOR_US)),
            "marker": {"color": interval.color, "size": 4, "opacity": 0.7,
                       "symbol": "triangle-up" if interval.transmit else "circle"},
            "hovertemplate": f"{interval.key} %{{y:.1f}} µs at t=%{{x:.6f}} s<extra></extra>",
        })
    flagged = anomalous(table).to_numpy()
    names = _text(table, "anomaly")
    value = np.full(len(table), np.nan)
    for interval, y in _series(table):
        hit = names == interval.name
        value[hit & np.isfinite(y)] = y[hit & np.isfinite(y)]
    missing = flagged & ~np.isfinite(value)  # an anomaly without its own value: at its total
    value[missing] = numeric(table, "total_us").to_numpy()[missing]
    index = np.flatnonzero(flagged & np.isfinite(value) & np.isfinite(x_all))
    if not data and not len(index):
        return "<p>No stage was measured: nothing to draw.</p>"
    keys = _keys(table.iloc[index]).to_numpy(str) if len(index) else np.array([], dtype=str)
    data.append({
        "type": "scatter", "name": "anomalies", "mode": "markers", "x": _r(x_all[index], 6),
        "y": _r(np.maximum(value[index], LOG_FLOOR_US)),
        "marker": {"symbol": "x", "size": 11, "color": ANOMALY_COLOR,
                   "line": {"width": 1, "color": "#000"}},
        "customdata": [[k, c, str(i), format_duration(v)] for k, c, i, v in
                       zip(keys, _text(table, "cause")[index], index, value[index],
                           strict=True)],
        "hovertemplate": ("<b>anomaly: %{customdata[0]}</b> %{customdata[3]}<br>cause: "
                          "%{customdata[1]}<br>t=%{x:.6f} s<extra></extra>"),
    })
    layout = {"hovermode": "closest", "legend": {"orientation": "h", "y": 1.02,
                                                 "yanchor": "bottom"},
              "xaxis": _axis("t: seconds after the first packet"),
              "yaxis": _axis("duration (µs)", type="log")}
    note = (f" More than {MAX_POINTS_PER_SERIES} packets: each stage shows the min, median "
            f"and max of {TIME_BUCKETS} time buckets; every anomalous packet is kept."
            if downsampled else "")
    return (_figure_html(data, layout, "fig-timeline", 460)
            + f'<p class="caption">Each dot is a packet\'s stage duration (triangles: sent '
              f"segments); crosses are the {len(index)} anomalous packets at their anomalous "
              f"stage.{note}</p>")


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
    measured = {}
    for interval, values in _series(table):
        values = np.maximum(values[np.isfinite(values)], LOG_FLOOR_US)
        if values.size:
            measured[interval] = values
    if not measured:
        return "<p>No stage was measured: nothing to draw.</p>"
    # one set of bins for every stage, so that their histograms compare
    lo = min(float(v.min()) for v in measured.values())
    hi = max(float(v.max()) for v in measured.values())
    edges = np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 1.01 + 1e-9, HISTOGRAM_BINS + 1)
    centres = np.sqrt(edges[:-1] * edges[1:])
    probs = np.linspace(0.0, 1.0, CDF_POINTS)
    data: list[dict[str, Any]] = []
    for interval, values in measured.items():
        counts, _ = np.histogram(values, bins=edges)
        dash = "dot" if interval.transmit else "solid"
        line = {"color": interval.color, "dash": dash}
        data.append({"type": "scatter", "name": interval.key, "legendgroup": interval.key,
                     "x": _r(centres), "y": counts.tolist(), "mode": "lines",
                     "line": {**line, "shape": "hvh"}, "fill": "tozeroy", "opacity": 0.6,
                     "hovertemplate": f"{interval.key} ≈%{{x:.1f}} µs: %{{y}} packets"
                                      "<extra></extra>"})
        data.append({"type": "scatter", "name": interval.key, "legendgroup": interval.key,
                     "x": _r(np.quantile(values, probs)), "y": _r(probs, 4), "mode": "lines",
                     "showlegend": False, "xaxis": "x2", "yaxis": "y2", "line": line,
                     "hovertemplate": f"{interval.key} p%{{y:.3f}} = %{{x:.1f}} µs"
                                      "<extra></extra>"})
    layout = {
        "legend": {"orientation": "h", "y": 1.08, "yanchor": "bottom"},
        "xaxis": _axis("duration (µs)", type="log", domain=[0, 0.46]),
        "yaxis": _axis("packets"),
        "xaxis2": _axis("duration (µs)", type="log", domain=[0.54, 1], anchor="y2"),
        "yaxis2": _axis("fraction of packets ≤ duration", anchor="x2", range=[0, 1]),
        "annotations": [
            {"text": "histogram (log bins)", "x": 0.23, "y": 1.0, "xref": "paper",
             "yref": "paper", "showarrow": False, "yanchor": "bottom"},
            {"text": "CDF", "x": 0.77, "y": 1.0, "xref": "paper", "yref": "paper",
             "showarrow": False, "yanchor": "bottom"}],
    }
    return (_figure_html(data, layout, "fig-distributions", 420)
            + '<p class="caption">Each stage on its own rows (dotted: sent segments); a stage '
              "missing here was not measurable with the sources given (see the notes).</p>")


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


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
    """Rounded plain floats for chart data (NaN → None): small, stable JSON."""
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


def _seconds(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.6f}"


__all__ = ["STAGE_COLORS", "render_html_report", "write_html_report"]
