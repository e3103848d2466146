"""The terminal tables of ``xenlat trace``, from ``TraceSummary.to_document()``.

Warnings first (a CPU that stops early), then: records per event, lost records, physical CPUs
(busy share over time, ``·`` where a CPU is silent), vCPU run states, waits to run (wake and
preemption), time per physical CPU, HVM exits, guest interrupts and I/O ports, the longest
waits. Durations print as every report prints them (``units.format_duration``).

Drawn by :mod:`.text_table` (rich's default table, byte for byte, without rich's cost: the
corpus trace's tables took rich 0.4 s, longer than reading the trace).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import IO, Any

from ..units import format_duration
from ..xen_events import DOMID_IDLE, RUNSTATES
from .text_table import Cell, TextTable

_BARS = " ▁▂▃▄▅▆▇█"


def _seconds(value: float | None) -> str:
    """A duration, as every report prints one (the TSC rate behind it may be assumed)."""
    return "–" if value is None else format_duration(value * 1e6)


def _us(value: float | None) -> str:
    return "–" if value is None else format_duration(value)


def _unit(domid: int, vcpu: int) -> str:
    return f"idle(v{vcpu})" if domid == DOMID_IDLE else f"d{domid}v{vcpu}"


def _table(title: str, columns: Iterable[str], left: int = 1) -> TextTable:
    headers = list(columns)
    return TextTable(title, headers, ["left" if k < left else "right"
                                      for k in range(len(headers))])


def _spark(shares: list[float | None]) -> str:
    """Busy share per bucket as a bar (``·``: no records there, the CPU was silent)."""
    out = []
    for share in shares:
        if share is None or (isinstance(share, float) and math.isnan(share)):
            out.append("·")
        else:  # any busy time shows as at least the lowest bar
            level = math.ceil(share * (len(_BARS) - 1))
            out.append(_BARS[min(level, len(_BARS) - 1)])
    return "".join(out)


def _header(s: dict[str, Any]) -> str:
    hz = s["cpu_hz"]
    return (
        f"{s['file']}: {s['records']:,} records in {s['windows']:,} windows "
        f"from {s['cpus']} CPUs; {_seconds(s['duration_s'])} at "
        + (f"{hz / 1e9:g} GHz (given)" if s["cpu_hz_source"] == "given" else
           f"an assumed {hz / 1e9:g} GHz (xenalyze's default; give --cpu-hz for true times)")
        + ("; TRUNCATED" if s["truncated"] else ""))


def _events(s: dict[str, Any]) -> TextTable:
    table = _table("records per event", ("event", "name", "group", "since", "records"), 4)
    for ev, info in sorted(s["events"].items(), key=lambda kv: -kv[1]["count"]):
        table.add_row(ev, info["name"], info["group"] or "–", info["since"] or "–",
                      f"{info['count']:,}")
    return table


def _lost(s: dict[str, Any]) -> TextTable | str:
    lost = s["lost"]
    if not lost["records"]:
        return "lost records: none"
    spots = _table(f"lost records: {lost['dropped']:,} dropped, blind for "
                   f"{_seconds(lost['blind_s'])}", ("cpu", "dropped", "from", "to", "blind"), 0)
    for spot in lost["blind_spots"]:
        spots.add_row(str(spot["cpu"]), f"{spot['dropped']:,}", _seconds(spot["start_s"]),
                      _seconds(spot["end_s"]), _seconds(spot["duration_s"]))
    return spots


def _pcpus(s: dict[str, Any]) -> TextTable:
    buckets: dict[int, list[float | None]] = {}
    for row in s["utilisation"]:
        buckets.setdefault(row["cpu"], []).append(row["busy_share"])
    table = _table("physical CPUs (busy: a guest vCPU ran; over the time the CPU has records)",
                   ("cpu", "records", "first", "last", "busy", "busy share", "over time",
                    "silent after"), 0)
    for row in s["pcpus"]:
        pct = row["busy_pct"]
        table.add_row(
            str(row["cpu"]), f"{row['records']:,}", _seconds(row["first_s"]),
            _seconds(row["last_s"]), _seconds(row["busy_s"]),
            "–" if pct is None else f"{pct:.1f} %",
            _spark(buckets.get(row["cpu"], [])),
            Cell(_seconds(row["silent_after_s"]) + (" STOPS EARLY" if row["stops_early"]
                                                     else ""), bold=row["stops_early"]))
    return table


def _vcpus(s: dict[str, Any]) -> TextTable:
    table = _table("vCPU run states (time in each; inferred: carried across a silent CPU)",
                   ("vCPU", *RUNSTATES, "inferred", "changes", "migrations"))
    for v in s["vcpus"]:
        table.add_row(_unit(v["domid"], v["vcpu"]), *(_seconds(v[f"{st}_s"]) for st in RUNSTATES),
                      _seconds(v["inferred_s"]) if v["inferred_s"] else "–",
                      f"{v['changes']:,}", f"{v['migrations']:,}" if not v["idle"] else "–")
    return table


def _waits(rows: list[dict[str, Any]], title: str, who: Any) -> TextTable | None:
    rows = [r for r in rows if r["domid"] != DOMID_IDLE and r["kind"] != "other"]
    if not rows:
        return None
    table = _table(title, ("", "wait", "count", "total", "p50", "p90", "p99", "max"), 2)
    for r in rows:
        table.add_row(who(r), r["kind"], f"{r['count']:,}", _seconds(r["total_s"]),
                      _us(r["p50_us"]), _us(r["p90_us"]), _us(r["p99_us"]), _us(r["max_us"]))
    return table


def _placement(s: dict[str, Any]) -> TextTable | None:
    per: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for r in s["vcpu_pcpu"]:
        per.setdefault((r["domid"], r["vcpu"]), []).append((r["running_s"], r["cpu"]))
    if not per:
        return None
    table = _table("running time per physical CPU (most first)", ("vCPU", "CPUs"))
    for (domid, vcpu), places in sorted(per.items()):
        places.sort(reverse=True)
        shown = ", ".join(f"cpu{c} {_seconds(t)}" for t, c in places[:6])
        table.add_row(_unit(domid, vcpu), shown + (f" (+{len(places) - 6})"
                                                   if len(places) > 6 else ""))
    return table


def _hvm(s: dict[str, Any]) -> list[TextTable]:
    hvm = s["hvm"]
    out = []
    if hvm["exits"]:
        table = _table(f"HVM exits ({hvm['mode']}; cycles from exit to the vCPU's next entry "
                       "or wake)", ("vCPU", "reason", "count", "total", "share", "mean cyc",
                                     "p50 cyc", "p99 cyc"), 2)
        for r in sorted(hvm["exits"], key=lambda r: (r["domid"], r["vcpu"], -r["cycles"])):
            table.add_row(_unit(r["domid"], r["vcpu"]), r["name"], f"{r['count']:,}",
                          _seconds(r["total_s"]), f"{r['share_pct']:.2f} %",
                          *("–" if r[k] is None else f"{r[k]:,.0f}"
                            for k in ("mean", "p50", "p99")))
        out.append(table)
    if hvm["guest_interrupts"]:
        table = _table("injected guest interrupts", ("vCPU", "vector", "count"), 1)
        for r in hvm["guest_interrupts"]:
            table.add_row(_unit(r["domid"], r["vcpu"]), str(r["vector"]), f"{r['count']:,}")
        out.append(table)
    if hvm["io_ports"]:
        table = _table("I/O ports (cycles of the exits that did them)",
                       ("vCPU", "port", "dir", "count", "cycles"), 3)
        for r in hvm["io_ports"]:
            table.add_row(_unit(r["domid"], r["vcpu"]), f"0x{r['port']:x}", r["direction"],
                          f"{r['count']:,}", f"{r['cycles']:,}")
        out.append(table)
    return out


def _longest(s: dict[str, Any]) -> TextTable | None:
    if not s["longest_runnable"]:
        return None
    waits = _table("longest runnable waits (preempted or queued)",
                   ("vCPU", "at", "waited", "ran on CPU", "CPU held by"), 0)
    waits.justify[-1] = "left"
    for w in s["longest_runnable"]:
        held = ", ".join(f"{h['unit']} {_seconds(h['duration_s'])}"
                         for h in w["cpu_held_by"][:4]) or "-"
        waits.add_row(f"d{w['domid']}v{w['vcpu']}", _seconds(w["start_s"]),
                      _seconds(w["duration_s"]), str(w["ran_on_cpu"]), held)
    return waits


def render_trace_summary(summary: dict[str, Any], out: IO[str], styled: bool = False) -> None:
    """Print the document of ``trace_summary.summarize_trace`` as a few tables to ``out``
    (``styled``: bold and italic as on a terminal)."""
    parts: list[TextTable | str | None] = [_header(summary),  # the warnings: stderr (cli.py)
                                           _events(summary), _lost(summary), _pcpus(summary)]
    if summary["vcpus"]:
        parts.append(_vcpus(summary))
    parts += [
        _waits(summary["waits"], "waits to run per vCPU (wake: blocked->runnable->running; "
               "preempt: running->runnable->running)", lambda r: _unit(r["domid"], r["vcpu"])),
        _waits(summary["domain_waits"], "waits to run per domain", lambda r: f"d{r['domid']}"),
        _placement(summary), *_hvm(summary), _longest(summary)]
    lines: list[str] = []
    for part in parts:
        if isinstance(part, str):
            lines.append(part)
        elif part is not None:
            lines += part.lines(styled)
    out.write("\n".join(lines) + "\n")
