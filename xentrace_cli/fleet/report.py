"""The fleet view of ``xenlat report --dataset``: many sets of a dataset on one HTML page.

What an operator asks of a fleet: which Xen host got slower in which stage, and since when;
which sets are the worst, and what stalled there. The page answers from the per-set summaries
of the dataset (``sets/``: one row per set, small whatever the packet count): each stage's
p50 and p99 per set, over the sets' start times, one line per Xen host (a menu picks the
stage, per direction); the hosts by day; the worst sets with their anomalies by stage and cause.
It wears the single-analysis report's page shell (``assets/report.html``, its styles, its
table-sorting script and its plotly.js bundle; figures as plain JSON): one self-contained
file, nothing fetched, the same bytes for the same dataset.
"""

from __future__ import annotations

import html
import os
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import OptionError
from ..model import DIRECTION_STAGES, split_stat_key, stat_key
from ..outputs.html import (  # the single-analysis report's figure conventions
    _FONT,
    _PLOT_CONFIG,
    _json,
)
from ..units import counted, format_duration
from .dataset import read_summaries, select_sets, stage_table

#: Sets the worst-sets table lists.
WORST_SETS = 50
#: Each host's line in a chart keeps at most this many sets (the latest).
MAX_SETS_PER_HOST = 5000
#: One colour per host, in host order (plotly's qualitative "D3" palette), repeated if needed.
HOST_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
#: What the worst-sets table ranks by: the receive path's total p99.
RANK_KEY = "total"
_DIRECTION_TITLES = {"rx": "Receive path", "tx": "Transmit path"}


def write_fleet_report(dataset: str | os.PathLike[str], path: str | os.PathLike[str], *,
                       hosts: tuple[str, ...] | list[str] = ()) -> Path:
    """Write the fleet view of ``dataset`` (only the sets of ``hosts``, when given) to
    ``path``. Raises ``InputError`` for a path that is not a dataset, ``OptionError`` when
    ``path`` cannot be written."""
    summaries = select_sets(read_summaries(dataset), hosts)
    text = render_fleet_report(summaries, str(dataset))
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    return path


def render_fleet_report(summaries: pd.DataFrame, dataset: str) -> str:
    """The page (a str) for the summary rows of a dataset (``dataset.read_summaries``)."""
    stages = stage_table(summaries)
    hosts = sorted(summaries["xen_host"].unique())
    colors = {host: HOST_COLORS[i % len(HOST_COLORS)] for i, host in enumerate(hosts)}
    body = "\n".join([
        _header(summaries, dataset),
        *(_section(f"stages-{way}", f"{_DIRECTION_TITLES[way]}: stage percentiles per Xen "
                   "host over time", _stage_chart(stages, way, colors))
          for way in DIRECTION_STAGES),
        _section("hosts", "Xen hosts by day", _host_days(summaries, stages)),
        _section("worst", "Worst sets", _worst_sets(summaries, stages)),
        f'<footer>Written by xenlat {html.escape(__version__)} from {len(summaries)} set '
        "summaries. Percentiles are each set's own; times are UTC.</footer>",
    ])
    assets = resources.files("xentrace_cli.outputs") / "assets"
    return Template((assets / "report.html").read_text(encoding="utf-8")).substitute(
        version=html.escape(__version__),
        title=html.escape(f"xenlat fleet: {dataset}"),
        style=(assets / "report.css").read_text(encoding="utf-8"),
        plotlyjs=(assets / "plotly-basic.min.js").read_text(encoding="utf-8"),
        packets=int(summaries["packets"].sum()) if len(summaries) else 0,
        anomalies=int(summaries["anomalous"].sum()) if len(summaries) else 0,
        body=body,
        script=(assets / "report.js").read_text(encoding="utf-8"),
    )


def _section(anchor: str, title: str, content: str) -> str:
    return f'<section id="{anchor}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'


def _header(summaries: pd.DataFrame, dataset: str) -> str:
    if not len(summaries):
        return (f"<header>\n<h1>xenlat fleet</h1>\n<p class=\"lede\">{html.escape(dataset)}: "
                "no set.</p>\n</header>")
    anomalous = int(summaries["anomalous"].sum())
    verdict = (f'<span class="verdict bad">{counted(anomalous, "anomalous packet")} in '
               f"{counted(int((summaries['anomalous'] > 0).sum()), 'set')}</span>" if anomalous
               else '<span class="verdict ok">no anomalous packet</span>')
    first, last = summaries["started"].min(), summaries["started"].max()
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("stages-rx", "receive"), ("stages-tx", "transmit"), ("hosts", "hosts by day"),
        ("worst", "worst sets")))
    return (f"<header>\n<h1>xenlat fleet</h1>\n<p class=\"lede\">{html.escape(dataset)}: "
            f"{counted(len(summaries), 'set')} from "
            f"{counted(summaries['xen_host'].nunique(), 'Xen host')}, "
            f"{_utc(first)} to {_utc(last)}, {int(summaries['packets'].sum())} packets. "
            f"{verdict}</p>\n<nav>{nav}</nav>\n</header>")


def _stage_chart(stages: pd.DataFrame, way: str, colors: dict[str, str]) -> str:
    """p99 (solid) and p50 (dotted) of each stage of one direction per set over time, a line
    per host; a menu picks the stage."""
    keys = [stat_key(name, way) for name in (*DIRECTION_STAGES[way], "total")]
    measured = stages[(stages["count"] > 0) & stages["key"].isin(keys)]
    keys = [k for k in keys if (measured["key"] == k).any()]
    if not keys:
        return "<p>No set measured a stage of this direction.</p>"
    data: list[dict[str, Any]] = []
    groups = []
    for key in keys:
        rows = measured[measured["key"] == key]
        first = len(data)
        for host, color in colors.items():
            mine = rows[rows["xen_host"] == host].sort_values("started").tail(MAX_SETS_PER_HOST)
            if len(mine):
                data += _host_traces(mine, host, color, key, visible=key == keys[0])
        groups.append((key, first, len(data)))
    buttons = [{"label": key, "method": "update",
                "args": [{"visible": [start <= i < end for i in range(len(data))]},
                         {"yaxis.title.text": f"{key} (µs, log)"}]}
               for key, start, end in groups]
    layout = {
        "font": _FONT, "height": 420, "paper_bgcolor": "#fff", "plot_bgcolor": "#fff",
        "margin": {"l": 70, "r": 20, "t": 50, "b": 50},
        "updatemenus": [{"buttons": buttons, "x": 0, "y": 1.15, "xanchor": "left",
                         "direction": "down", "showactive": True}],
        "xaxis": {"title": {"text": "set started (UTC)"}, "type": "date", "gridcolor": "#eee"},
        "yaxis": {"title": {"text": f"{keys[0]} (µs, log)"}, "type": "log",
                  "gridcolor": "#eee"},
    }
    div = f"fleet-{way}"
    args = ", ".join(_json(v) for v in (data, layout, _PLOT_CONFIG))
    return (f'<div class="figure"><div id="{div}" class="plot" style="height:420px"></div>'
            f'</div>\n<script>Plotly.newPlot("{div}", {args});</script>\n'
            '<p class="caption">Each point is one set: its p99 (solid) and p50 (dotted) of the '
            "stage picked in the menu; one colour per Xen host.</p>")


def _host_traces(rows: pd.DataFrame, host: str, color: str, key: str,
                 visible: bool) -> list[dict[str, Any]]:
    """The p99 and p50 lines of one host's sets for one stage key."""
    when = rows["started"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S").tolist()
    names = rows["set"].astype(str).tolist()
    return [{"type": "scatter", "mode": "lines+markers", "name": f"{host} {stat}",
             "legendgroup": host, "x": when, "y": _rounded(rows[stat]), "text": names,
             "line": {"color": color, "dash": dash}, "marker": {"size": 5},
             "visible": visible,
             "hovertemplate": f"%{{text}}<br>{html.escape(host)} {key} {stat} %{{y:.3f}} µs"
                              "<extra></extra>"}
            for stat, dash in (("p99", "solid"), ("p50", "dot"))]


def _rounded(values: pd.Series) -> list[float | None]:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return [None if not np.isfinite(v) else round(float(v), 3) for v in numbers]


def _host_days(summaries: pd.DataFrame, stages: pd.DataFrame) -> str:
    if not len(summaries):
        return "<p>No set.</p>"
    worst = stages[stages["key"] == RANK_KEY].groupby(["xen_host", "date"])["p99"].max()
    days = summaries.groupby(["xen_host", "date"]).agg(
        sets=("set_id", "size"), packets=("packets", "sum"), anomalous=("anomalous", "sum"))
    rows = []
    for (host, date), row in days.iterrows():
        p99 = worst.get((host, date))
        hot = ' class="hot"' if row["anomalous"] else ""
        rows.append(f'<tr><td class="text">{html.escape(str(host))}</td>'
                    f'<td class="text">{html.escape(str(date))}</td>'
                    f"<td>{int(row['sets'])}</td><td>{int(row['packets'])}</td>"
                    f"<td{hot}>"
                    f"{int(row['anomalous'])}</td>"
                    f'<td data-v="{_num(p99)}">{html.escape(format_duration(_float(p99)))}</td>'
                    "</tr>")
    return ('<table class="sortable" id="host-days"><thead><tr><th class="text">Xen host</th>'
            '<th class="text">date</th><th>sets</th><th>packets</th><th>anomalous</th>'
            f"<th>worst set's {RANK_KEY} p99</th></tr></thead>\n<tbody>\n" + "\n".join(rows)
            + "\n</tbody></table>")


def _worst_sets(summaries: pd.DataFrame, stages: pd.DataFrame) -> str:
    """The sets with the largest receive total p99 (then the most anomalous packets)."""
    if not len(summaries):
        return "<p>No set.</p>"
    columns = [stat_key(name, "rx") for name in (*DIRECTION_STAGES["rx"], "total")]
    columns.append(stat_key("total", "tx"))
    wide = stages[stages["key"].isin(columns)].pivot_table(
        index="set_id", columns="key", values="p99", aggfunc="first")
    table = summaries.set_index("set_id").join(wide.reindex(columns=columns))
    table = table.sort_values([RANK_KEY, "anomalous"], ascending=False, na_position="last",
                              kind="stable").head(WORST_SETS)
    head = "".join(f"<th>{html.escape(c)} p99</th>" for c in columns)
    rows = []
    for set_id, row in table.iterrows():
        cells = "".join(f'<td data-v="{_num(row[c])}">'
                        f"{html.escape(format_duration(_float(row[c])))}</td>" for c in columns)
        marked = ' class="anomaly"' if row["anomalous"] else ""
        rows.append(
            f"<tr{marked}>"
            f'<td class="text" title="{html.escape(str(row["directory"]))}">'
            f"{html.escape(str(row['set']))} <small>{html.escape(str(set_id)[:8])}</small></td>"
            f'<td class="text">{html.escape(str(row["xen_host"]))}</td>'
            f'<td class="text">{html.escape(_utc(row["started"]))}</td>'
            f"<td>{int(row['packets'])}</td><td>{int(row['anomalous'])}</td>{cells}"
            f'<td class="text details">{html.escape(_anomaly_text(row["anomalies"]))}</td></tr>')
    return ('<div class="scroll"><table class="sortable" id="worst-sets"><thead><tr>'
            '<th class="text">set</th><th class="text">Xen host</th><th class="text">started'
            f'</th><th>packets</th><th>anomalous</th>{head}<th class="text">anomalies (stage, '
            "cause)</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
            f'<p class="caption">The {len(table)} sets with the largest receive {RANK_KEY} p99; '
            "click a header to sort.</p>")


def _anomaly_text(anomalies: Any) -> str:
    parts = []
    for entry in anomalies if anomalies is not None else ():
        way, name = split_stat_key(str(entry["stage"]))
        label = f"{stat_key(name, way)} {entry['cause'] or 'cause unknown'}"
        parts.append(f"{label} ×{int(entry['count'])}")
    return ", ".join(parts)


def _utc(value: Any) -> str:
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _num(value: Any) -> str:
    number = _float(value)
    return "" if number is None else f"{number:.3f}"
