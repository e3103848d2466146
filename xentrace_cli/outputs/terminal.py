"""The terminal report of ``xenlat analyze``: stage summary, clock alignment, notes, worst packets.

Rendered with rich into the console it is given (the CLI's stdout console honours NO_COLOR).
Durations go through :func:`units.format_duration` with the uncertainty of the clocks the
stage crosses, so nothing is printed more precisely than the alignment supports. Each of the
worst packets gets a bar showing how its time split across the stages (one colour per stage,
the same as the HTML report's; a letter per stage when colour is off).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..background import Background
from ..model import format_flow
from ..pipeline.anomalies import stall_reason
from ..pipeline.conversations.codes import first_seen_codes
from ..pipeline.result import Analysis
from ..units import format_duration
from .numbers import column_format
from .waterfall import (
    ANOMALY_COLOR,
    CAUSE_WORDS,
    DIRECTIONS,
    MERGED_COLOR,
    STAGE_COLORS,
    Interval,
    anomalous,
    direction_rows,
    first_times,
    intervals,
    lone_intervals,
    numeric,
)

#: Width of a packet's stage bar, in characters.
BAR_WIDTH = 40

#: Letters standing for the stages in a bar without colour.
_LETTERS = {"vmm": "v", "driver_domain": "d", "ring": "r", "remap": "m", "socket_read": "s",
            # merged receive intervals and the transmit path
            "backend_to_guest": "b", "phys_to_guest": "b", "guest_to_read": "s",
            "socket_write": "w", "guest_to_backend": "g", "write_to_backend": "g",
            "guest_to_phys": "g", "write_to_phys": "g"}


def render_analysis(analysis: Analysis, console: Console, top: int = 10) -> None:
    """Print the report of one analysis."""
    table = analysis.table
    # once: each direction's rows, the anomalous rows (the header, summary and worst
    # packets each compared every row's text before)
    rows = {way: direction_rows(table, way) for way in ("", *DIRECTIONS)}
    flagged = anomalous(table).to_numpy()
    shown = intervals(table)  # receive stages first, then the transmit path, in path order
    plain = _plain(console)
    # the lone view's intervals (request → response, response → next) summarized too
    lone = lone_intervals(table)
    # the summary's percentiles (numpy's partitions, which let go of the GIL) in a worker
    # thread while this one does the rest, printed where they always were
    width = console.width
    summary = Background(lambda: _summary(analysis, shown, lone, rows, flagged, width)) \
        if (shown or lone) and len(table) else None
    try:
        when = first_times(table)  # once: the header's first packet, the worst packets' times
        _header(analysis, console, when, rows, flagged)
        worst = _worst(analysis, shown, top, plain, width, when, flagged) \
            if shown and len(table) and top > 0 else None
    finally:
        if summary is not None:
            summary.wait()
    if summary is not None:
        console.print(summary.result())
    fitted = {pair: fit for pair, fit in analysis.alignment.items()
              if not (isinstance(fit, dict) and fit.get("quality") == "none")}
    if fitted:  # nothing fitted (one clock only): the notes say why
        console.print(_alignment(fitted))
    if analysis.flows is not None and len(analysis.flows):
        console.print(_flows(analysis.flows, top))
    if analysis.notes:
        console.print(Text("Notes", style="bold"))
        for note in analysis.notes:
            console.print(Text("• " + note))
    if worst is not None:
        console.print(worst)


def _plain(console: Console) -> bool:
    """No colour to tell stages apart (NO_COLOR, a pipe, a dumb terminal): use letters."""
    return bool(console.no_color or console.color_system is None)


def _header(analysis: Analysis, console: Console, when: np.ndarray,
            rows: dict[str, np.ndarray], flagged: np.ndarray) -> None:
    """The first lines: how many segments, how many anomalous, the sources, the first
    packet's time (``when``: each row's, :func:`first_times`; ``rows``: each direction's,
    :func:`direction_rows`; ``flagged``: the anomalous ones, :func:`anomalous`)."""
    table = analysis.table
    # a table without directions counts none of either (direction_rows takes it as received)
    received, sent = (int(rows[way].sum()) if "direction" in table.columns else 0
                      for way in ("rx", "tx"))
    anomalies = int(flagged.sum())
    sources = ", ".join(f"{name} ({getattr(analysis.sources, name).name})"
                        for name in analysis.sources.present)
    line = Text()
    line.append("xenlat analyze", style="bold")
    line.append(f": {len(table)} data segments ({received} received, {sent} sent), ")
    line.append(f"{anomalies} anomalous", style="bold red" if anomalies else "green")
    flows = analysis.flows
    if flows is not None and "stalled" in flows.columns and len(flows):
        # one stall may hold many packets (and show on several connections): count it once
        line.append(f" in {int(flows['stalled'].sum())} stalled exchanges")
    line.append(f"\nsources: {sources or '–'}")
    if np.isfinite(when).any():
        import datetime as dt

        first = dt.datetime.fromtimestamp(float(np.nanmin(when)), dt.UTC)
        clock = table.attrs.get("clock")
        line.append(f"\nfirst packet: {first:%Y-%m-%d %H:%M:%S.%f} UTC"
                    + (f" ({clock} clock)" if clock else "")
                    + "; packet times are seconds after it")
    console.print(line)


def _stage_uncertainty(analysis: Analysis, name: str) -> float | None:
    base = analysis.baselines.get(name)
    if isinstance(base, dict):
        value = base.get("uncertainty_us")
        if value is not None and math.isfinite(float(value)):
            return float(value)
    return None


def _summary(analysis: Analysis, shown: list[Interval], lone: list[Interval],
             rows: dict[str, np.ndarray], flagged: np.ndarray, width: int = 80) -> Table:
    """One section per direction (its stages in path order, then its total), then the
    exchanges of the lone view. Stages are named as budgets name them: ``ring``, ``tx.ring``.
    Each duration column has one unit and one number of decimals (the header names it)."""
    table = analysis.table
    groups = []
    for way in DIRECTIONS:
        mine = [iv for iv in shown if iv.direction == way]
        if mine:
            groups.append([*mine, Interval("total", "first", "last", direction=way)])
    if lone:
        groups.append(lone)
    labels = _label_counts(table, rows, flagged)
    measured = [[m for m in (_measure(analysis, iv, labels[iv.direction], rows[iv.direction])
                             for iv in group) if m]
                for group in groups]
    every = [m for group in measured for m in group]
    worst_unc = max((m["unc"] or 0.0 for m in every), default=0.0)
    # one unit for the four columns too, so that a row reads across (p50 µs, p99 ms would not)
    shared = column_format([m[c] for m in every for c in ("p50", "p90", "p99", "max")],
                           worst_unc)
    formats = dict.fromkeys(("p50", "p90", "p99", "max"), shared)
    grid = Table(title="Where the time went (per data segment)", title_justify="left",
                 box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    with_span = width >= 110  # the checkpoints of each interval, where there is room
    grid.add_column("stage", no_wrap=True)
    if with_span:
        grid.add_column("span", no_wrap=True)
    grid.add_column("n", justify="right", no_wrap=True)
    for column, fmt in formats.items():
        grid.add_column(f"{column} ({fmt.unit})", justify="right", no_wrap=True)
    grid.add_column("±", justify="right", no_wrap=True)
    grid.add_column("anom.", justify="right", no_wrap=True)
    for group in measured:
        if grid.rows and group:
            grid.add_section()
        for m in group:
            iv = m["iv"]
            grid.add_row(Text(iv.key, style=STAGE_COLORS.get(iv.name, iv.color)),
                         *([m["span"]] if with_span else []), str(m["n"]),
                         *(fmt(m[c]) for c, fmt in formats.items()),
                         format_duration(m["unc"]) if m["unc"] else "",
                         Text(str(m["flagged"]), style="bold red") if m["flagged"] else "0")
    return grid


def _label_counts(table: pd.DataFrame, rows: dict[str, np.ndarray], flagged: np.ndarray
                  ) -> dict[str, dict[str, int]]:
    """Per direction (``rows``: each one's, :func:`direction_rows`), how many of its rows
    carry each anomaly label ('' none): the labels of the ``flagged`` rows only coded, then
    counted per direction (not 600,000 strings compared per summary row)."""
    hit = np.flatnonzero(flagged)
    if "anomaly" not in table.columns or hit.size == 0:
        return {way: {"": int(r.sum())} for way, r in rows.items()}
    codes, names = pd.factorize(table["anomaly"].iloc[hit].astype(str))
    out = {}
    for way, r in rows.items():
        mine = r[hit]
        counts = np.bincount(codes[mine], minlength=len(names))
        out[way] = {"": int(r.sum()) - int(mine.sum()),
                    **{str(name): int(k) for name, k in zip(names, counts, strict=True)}}
    return out


def _measure(analysis: Analysis, iv: Interval, labels: dict[str, int], rows: np.ndarray
             ) -> dict[str, Any] | None:
    """One summary row's numbers (``rows``: its direction's, :func:`direction_rows`;
    ``labels``: how many of them carry each anomaly label), or None when the interval has
    no value."""
    table = analysis.table
    if iv.column not in table.columns:
        return None
    values = numeric(table, iv.column).to_numpy()[rows]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    # in place: ``values`` is this function's own copy (its order does not matter after)
    p50, p90, p99 = np.percentile(values, [50, 90, 99], overwrite_input=True)
    span = "per exchange" if not iv.start else f"{iv.start}→{iv.end}"
    return {"iv": iv, "n": int(values.size), "p50": p50, "p90": p90, "p99": p99,
            "max": float(values.max()), "unc": _stage_uncertainty(analysis, iv.key),
            "span": "first→last" if iv.name == "total" else span,
            "flagged": sum(k for name, k in labels.items() if name) if iv.name == "total"
            else labels.get(iv.name, 0)}


def _alignment(alignment: dict[str, Any]) -> Table:
    grid = Table(title="Clock alignment", title_justify="left", box=box.SIMPLE_HEAD,
                 pad_edge=False)
    for column in ("clocks", "quality", "offset / TSC rate", "drift", "uncertainty", "from"):
        grid.add_column(column)
    for pair, fit in alignment.items():
        if not isinstance(fit, dict):
            continue
        quality = str(fit.get("quality", ""))
        style = {"bounded": "green", "identity": "green", "one-sided": "yellow",
                 "inconsistent": "red", "none": "red"}.get(quality, "")
        offset = fit.get("offset_ns")
        drift = fit.get("drift_ppm")
        unc = fit.get("uncertainty_us")
        hz = fit.get("cpu_hz")
        if hz is not None and _finite(hz):  # the TSC: its frequency is what was fitted
            offset_text = f"{float(hz) / 1e9:.6f} GHz"
            if fit.get("cpu_hz_estimated"):
                offset_text += " (est.)"
            drift_text = f"±{fit['hz_uncertainty_ppm']:.1f} ppm" \
                if _finite(fit.get("hz_uncertainty_ppm")) else "–"
        elif quality == "none":  # nothing was fitted: no numbers to show
            offset_text = drift_text = "–"
        else:
            offset_text = format_duration(offset / 1e3) if offset is not None and _finite(
                offset) else "–"
            drift_text = f"{drift:+.2f} ppm" if _finite(drift) else "–"
        grid.add_row(Text(pair), Text(quality, style=style), offset_text, drift_text,
                     format_duration(unc) if _finite(unc) else "–",
                     Text(str(fit.get("from", ""))))  # capture names: never markup
    return grid


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _flows(flows: pd.DataFrame, top: int) -> Table:
    grid = Table(title="Exchanges (server: request → response; client: response → next "
                 "request)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("flow", "n", "server p50", "client p50", "worst gap", "idle", "retx"):
        grid.add_column(column, justify="left" if column == "flow" else "right",
                        no_wrap=column != "flow")
    # each exchange's larger gap, then flows worst first (ties in order of appearance); only
    # the flows shown are taken apart (one connection per request: as many flows as rows)
    gap = np.fmax(numeric(flows, "request_to_response_us").to_numpy(),
                  numeric(flows, "response_to_next_us").to_numpy())
    flows = flows.assign(_gap=np.where(np.isnan(gap), -1.0, gap))
    # flows numbered in order of appearance (a row missing a key is in none, as in a
    # group-by); each one's worst gap
    columns = ["src", "sport", "dst", "dport"]
    keyed = np.flatnonzero(flows[columns].notna().all(axis=1).to_numpy())
    codes = first_seen_codes(*(flows[c] if keyed.size == len(flows) else flows[c].iloc[keyed]
                               for c in columns))
    worst_of_flow = np.full(int(codes.max()) + 1 if codes.size else 0, -np.inf)
    np.maximum.at(worst_of_flow, codes, flows["_gap"].to_numpy()[keyed])
    # the rows of a flow shown taken of the columns read below only (a flow may hold most
    # of the exchanges: every column's rows cost 45 ms a flow)
    flows = flows[[c for c in (*columns, "request_to_response_us", "response_to_next_us",
                               "_gap", "anomaly", "stall", "idle_us", "retransmissions")
                   if c in flows.columns]]
    for flow in np.argsort(-worst_of_flow, kind="stable")[:max(top, 1)]:
        part = flows.iloc[keyed[codes == flow]]
        src, sport, dst, dport = (part[c].iloc[0] for c in columns)
        server = part["request_to_response_us"].to_numpy(float)
        client = part["response_to_next_us"].to_numpy(float)
        worst_row = part.loc[part["_gap"].idxmax()]
        worst = float(worst_row["_gap"]) if worst_row["_gap"] >= 0 else float("nan")
        worst_text = Text(format_duration(worst))
        if str(worst_row["anomaly"] or ""):  # the stall named is the worst exchange's own
            stall = str(worst_row["stall"] or "")
            worst_text = Text(format_duration(worst) + (f" {stall}" if stall else ""),
                              style="bold red")
        # Text, not a str: rich reads a str as markup, and an IPv6 endpoint such as
        # "[fe80::1]:80" looks like a style tag to it and vanished from the table
        grid.add_row(Text(format_flow(src, sport, dst, dport)), str(len(part)),
                     format_duration(_nanmedian(server)), format_duration(_nanmedian(client)),
                     worst_text, _idle_text(part), str(int(part["retransmissions"].sum())))
    return grid


def _idle_text(part: pd.DataFrame) -> str:
    """Idle gaps of a flow (not latency, ``conversations/gaps.py``): how many, how long."""
    idle = part["idle_us"].to_numpy(float) if "idle_us" in part.columns else np.zeros(0)
    idle = idle[np.isfinite(idle)]
    return f"{idle.size} × {format_duration(float(np.median(idle)))}" if idle.size else "–"


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")


def _worst(analysis: Analysis, shown: list[Interval], top: int, plain: bool,
           width: int, when_rows: np.ndarray, flagged: np.ndarray) -> Group:
    """The worst packets: anomalous ones first (worst first), then the largest totals
    (``when_rows``: each row's time, :func:`first_times`; ``flagged``: the anomalous rows,
    :func:`anomalous`)."""
    table = analysis.table
    total = numeric(table, "total_us")
    # anomalous rows first (1e15 higher: their ties are as the one sort of this key had them)
    key = total.fillna(-1.0).to_numpy() + np.where(flagged, 1e15, 0.0)
    # the anomalous rows, then the `top` largest totals of the others; each largest first,
    # equal keys in table order (what a stable sort of the whole column gave, without it)
    anomalous_ranked = table.index[_largest_first(key, np.flatnonzero(flagged))]
    rest = np.flatnonzero(~flagged)
    if rest.size > top:  # only the top ones (and ties at the edge) sorted
        edge = np.partition(key[rest], rest.size - top)[rest.size - top]
        rest = rest[key[rest] >= edge]
    rest_ranked = table.index[_largest_first(key, rest)]
    # one line per stall: packets of one flow that waited through the same stall look alike.
    # Only anomalous rows can repeat an earlier line: their keys alone are built (formatting
    # a flow for every packet of a large table took a sixth of 'analyze')
    stall_key = pd.DataFrame({
        "flow": _directed_flows(table.loc[anomalous_ranked]),
        "anomaly": table.loc[anomalous_ranked, "anomaly"].astype(str)
        if "anomaly" in table.columns else "",
        "ms": (total.loc[anomalous_ranked].fillna(-1.0) / 1000).round(0)},
        index=anomalous_ranked)
    same = stall_key.duplicated().to_numpy()
    alike = stall_key.value_counts()
    rows = anomalous_ranked[~same].append(rest_ranked)[:top]
    when = pd.Series(when_rows, index=table.index)
    t0 = float(np.nanmin(when)) if when.notna().any() else float("nan")
    bar_width = max(10, min(BAR_WIDTH, width - 56))
    lines: list[Text] = [Text(f"Worst {len(rows)} packets", style="bold italic")]
    for row in rows:
        record = table.loc[row]
        head = Text(f"{_where(record, row):<12} {_seconds_after(when[row], t0)}  "
                    f"{_packet_of(record)}")
        body = Text("        total ")
        body.append(format_duration(_float(record.get("total_us")),
                                    _float(record.get("uncertainty_us"))))
        body.append("  ")
        body.append_text(_bar(record, shown, plain, bar_width))
        anomaly = _anomaly_of(record)
        if anomaly.plain:
            body.append("  ")
            body.append_text(anomaly)
            others = int(alike.get(tuple(stall_key.loc[row]), 1)) - 1
            if others > 0:
                body.append(f" (+{others} packets in the same stall)", style="dim")
        lines += [head, body]
        cause = _cause_of(record)
        if cause:
            lines.append(Text("        cause: " + cause, style="italic"))
    legend = Text("split: ", style="dim")
    seen = set()
    for iv in shown:
        glyph = _LETTERS.get(iv.name, "·") if plain else "█"
        if (glyph, iv.color) in seen:
            continue
        seen.add((glyph, iv.color))
        legend.append(glyph, style=iv.color)
        legend.append(f" {iv.name}  ")
    lines.append(legend)
    return Group(*lines)


def _largest_first(key: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` by ``key``, largest first, equal keys in row order."""
    return rows[np.argsort(-key[rows], kind="stable")]


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def _where(record: pd.Series, row: Any) -> str:
    """``frame 812`` (the anchor capture's frame, to find it in Wireshark), else ``#row``."""
    frame = record.get("frame")
    if frame is not None and frame is not pd.NA and _float(frame) == _float(frame):
        return f"frame {int(frame)}"
    return f"#{row}"


def _seconds_after(t: float, t0: float) -> str:
    """A packet's time the one way every report writes it: seconds after the first packet."""
    return f"+{t - t0:.6f} s" if math.isfinite(t) and math.isfinite(t0) else "–"


def _directed_flows(rows: pd.DataFrame) -> list[str]:
    """Each row's ``rx src:sport→dst:dport``, as :func:`_packet_of` begins (without a
    row-wise ``apply``: this runs over every packet of the table)."""
    def column(name: str, missing: Any) -> Any:
        return rows[name] if name in rows.columns else [missing] * len(rows)

    endpoints = (column(name, None) for name in ("src", "sport", "dst", "dport"))
    return [f"{direction} {format_flow(src, sport, dst, dport, '→')}"
            for direction, src, sport, dst, dport
            in zip(column("direction", ""), *endpoints, strict=True)]


def _packet_of(record: pd.Series) -> str:
    flow = format_flow(record.get("src"), record.get("sport"), record.get("dst"),
                       record.get("dport"), "→")
    return f"{record.get('direction', '')} {flow} seq {record.get('seq', '')} " \
           f"len {record.get('len', '')}"


def _bar(record: pd.Series, shown: list[Interval], plain: bool,
         width: int = BAR_WIDTH) -> Text:
    way = str(record.get("direction") or "rx")
    values = [(iv, _float(record.get(iv.column))) for iv in shown if iv.direction == way]
    values = [(iv, v) for iv, v in values if math.isfinite(v) and v > 0]
    bar = Text()
    total = sum(v for _, v in values)
    if total <= 0:
        return Text("–")
    anomaly = str(record.get("anomaly") or "")
    # largest-remainder rounding: the bar is always BAR_WIDTH characters
    exact = [v / total * width for _, v in values]
    widths = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - widths[i],
                    reverse=True)[:width - sum(widths)]:
        widths[i] += 1
    for (iv, _), width in zip(values, widths, strict=True):
        if width == 0:
            continue
        glyph = _LETTERS.get(iv.name, "·") if plain else "█"
        if iv.name == anomaly:
            glyph = glyph.upper() if plain else "█"
            style = f"bold {ANOMALY_COLOR}"
        else:
            style = STAGE_COLORS.get(iv.name, MERGED_COLOR)
        bar.append(glyph * width, style=style)
    return bar


def _anomaly_of(record: pd.Series) -> Text:
    anomaly = str(record.get("anomaly") or "")
    if not anomaly or anomaly == "nan":
        return Text("")
    stall = str(record.get("stall") or "")
    value = _float(record.get(f"{anomaly}_us"))
    unc = _float(record.get("uncertainty_us"))
    # written as the total is (same rounding), without repeating the ±
    text = f"{anomaly} {format_duration(value, unc).split(' ±')[0]}" \
        if math.isfinite(value) else anomaly
    if stall and stall != "nan":
        # what a stall of that size usually is — only a guess when the trace names no cause
        cause = str(record.get("cause") or "")
        reason = stall_reason(stall) if cause in ("", "nan") else ""
        text += f" ({stall}: {reason}?)" if reason else f" ({stall})"
    return Text(text, style=f"bold {ANOMALY_COLOR}")


def _cause_of(record: pd.Series) -> str:
    cause = str(record.get("cause") or "")
    if not cause or cause == "nan":
        return ""
    words = CAUSE_WORDS.get(cause, cause)
    detail = str(record.get("cause_detail") or "")
    if detail and detail != "nan":
        words += f" — {detail}"
    return words
