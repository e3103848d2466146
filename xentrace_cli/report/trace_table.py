"""The terminal tables of ``xenlat trace``: overview, events, blind spots, run states (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from ..units import format_duration
from ..xen_events import RUNSTATES


def _seconds(value: float) -> str:
    """A duration, as every report prints one (the TSC rate behind it may be assumed)."""
    return format_duration(value * 1e6)


def render_trace_summary(summary: dict[str, Any], console: Any) -> None:
    """Print the document of ``trace_summary.summarize_trace`` as a few tables."""
    hz = summary["cpu_hz"]
    console.print(Text(
        f"{summary['file']}: {summary['records']:,} records in {summary['windows']:,} windows "
        f"from {summary['cpus']} CPUs; {_seconds(summary['duration_s'])} at "
        + (f"{hz / 1e9:g} GHz (given)" if summary["cpu_hz_source"] == "given" else
           f"an assumed {hz / 1e9:g} GHz (xenalyze's default; give --cpu-hz for true times)")
        + ("; TRUNCATED" if summary["truncated"] else "")))

    events = Table(title="records per event", title_justify="left")
    events.add_column("event")
    events.add_column("name", overflow="fold")
    events.add_column("records", justify="right")
    for ev, info in sorted(summary["events"].items(), key=lambda kv: -kv[1]["count"]):
        events.add_row(ev, Text(info["name"]), f"{info['count']:,}")
    console.print(events)

    lost = summary["lost"]
    if lost["records"]:
        spots = Table(title=f"lost records: {lost['dropped']:,} dropped, blind for "
                      f"{_seconds(lost['blind_s'])}", title_justify="left")
        for col in ("cpu", "dropped", "from", "to", "blind"):
            spots.add_column(col, justify="right")
        for spot in lost["blind_spots"]:
            spots.add_row(str(spot["cpu"]), f"{spot['dropped']:,}", _seconds(spot["start_s"]),
                          _seconds(spot["end_s"]), _seconds(spot["duration_s"]))
        console.print(spots)
    else:
        console.print(Text("lost records: none"))

    if summary["vcpus"]:
        states = Table(title="vCPU run states (time in each)", title_justify="left")
        states.add_column("vCPU")
        for state in RUNSTATES:
            states.add_column(state, justify="right")
        states.add_column("changes", justify="right")
        for v in summary["vcpus"]:
            name = f"idle(v{v['vcpu']})" if v["idle"] else f"d{v['domid']}v{v['vcpu']}"
            states.add_row(name, *(_seconds(v[f"{s}_s"]) for s in RUNSTATES),
                           f"{v['changes']:,}")
        console.print(states)

    if summary["longest_runnable"]:
        waits = Table(title="longest runnable waits (preempted or queued)",
                      title_justify="left")
        for col in ("vCPU", "at", "waited", "ran on CPU", "CPU held by"):
            waits.add_column(col, justify="right" if col != "CPU held by" else "left",
                             overflow="fold")
        for w in summary["longest_runnable"]:
            held = ", ".join(f"{h['unit']} {_seconds(h['duration_s'])}"
                             for h in w["cpu_held_by"][:4]) or "-"
            waits.add_row(f"d{w['domid']}v{w['vcpu']}", _seconds(w["start_s"]),
                          _seconds(w["duration_s"]), str(w["ran_on_cpu"]), Text(held))
        console.print(waits)
