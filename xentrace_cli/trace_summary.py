"""``xenlat trace``: a summary of a xentrace file in the spirit of xenalyze's.

Records per event, lost records and the blind spots they leave, per-vCPU run-state totals and
the longest runnable waits (with who had the CPU meanwhile). Times are TSC cycles converted at
``cpu_hz`` (default 2.4 GHz, as xenalyze), relative to the first timestamped record.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .errors import OptionError
from .readers.xentrace import XenTrace, read_xentrace, who_ran
from .xen_events import DOMID_IDLE, RUNSTATES, event_name, is_runstate_change

#: xenalyze's default TSC frequency when none is given (``--cpu-hz``).
DEFAULT_CPU_HZ = 2.4e9
#: How many of the longest runnable waits the summary lists.
LONGEST_WAITS = 10


def _unit(domid: int, vcpu: int) -> str:
    return f"idle(v{vcpu})" if domid == DOMID_IDLE else f"d{domid}v{vcpu}"


def _describe(event: int) -> str:
    """Event name, with the transition for run-state changes (``runstate_change blocked->…``)."""
    if is_runstate_change(event):
        old, new = ((RUNSTATES[s] if s < len(RUNSTATES) else str(s))
                    for s in ((event >> 8) & 0xF, (event >> 4) & 0xF))
        return f"runstate_change {old}->{new}"
    return event_name(event)


def _event_counts(trace: XenTrace) -> dict[str, dict[str, Any]]:
    counts = trace.events["event"].value_counts(sort=False)
    return {f"0x{int(ev):08x}": {"name": _describe(int(ev)), "count": int(n)}
            for ev, n in sorted(counts.items())}


def _blind_spots(trace: XenTrace, origin: int, hz: float) -> dict[str, Any]:
    lost = trace.lost
    spots = [{
        "cpu": int(row.cpu),
        "dropped": int(row.dropped),
        "domid": None if pd.isna(row.domid) else int(row.domid),
        "vcpu": None if pd.isna(row.vcpu) else int(row.vcpu),
        "start_s": (int(row.tsc_first) - origin) / hz,
        "end_s": (int(row.tsc) - origin) / hz,
        "duration_s": max(int(row.tsc) - int(row.tsc_first), 0) / hz,
    } for row in lost.itertuples(index=False)]
    return {
        "records": len(lost),
        "dropped": int(lost["dropped"].sum()),
        "blind_s": sum(s["duration_s"] for s in spots),
        "blind_spots": spots,
    }


def _runstate_totals(trace: XenTrace, hz: float) -> list[dict[str, Any]]:
    rs = trace.runstates
    if not len(rs):
        return []
    end = rs["end_tsc"].to_numpy(dtype=np.int64, na_value=trace.last_tsc or 0)
    cycles = np.maximum(end - rs["start_tsc"].to_numpy(np.int64), 0)
    frame = pd.DataFrame({"domid": rs["domid"], "vcpu": rs["vcpu"],
                          "state": rs["state"], "cycles": cycles})
    table = frame.pivot_table(index=["domid", "vcpu"], columns="state", values="cycles",
                              aggfunc="sum", fill_value=0, observed=False)
    changes = rs[~rs["from_trace_start"]].groupby(["domid", "vcpu"]).size()
    out = []
    for (domid, vcpu), row in table.iterrows():
        entry: dict[str, Any] = {"domid": int(domid), "vcpu": int(vcpu),
                                 "idle": int(domid) == DOMID_IDLE}
        for state in RUNSTATES:
            entry[f"{state}_s"] = float(row.get(state, 0)) / hz
        entry["changes"] = int(changes.get((domid, vcpu), 0))
        out.append(entry)
    return out


def _domain_totals(vcpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run-state seconds summed over each domain's vCPUs."""
    out: dict[int, dict[str, Any]] = {}
    for v in vcpus:
        dom = out.setdefault(v["domid"], {"domid": v["domid"], "idle": v["idle"], "vcpus": 0,
                                          **{f"{s}_s": 0.0 for s in RUNSTATES}})
        dom["vcpus"] += 1
        for state in RUNSTATES:
            dom[f"{state}_s"] += v[f"{state}_s"]
    return [out[d] for d in sorted(out)]


def _longest_waits(trace: XenTrace, origin: int, hz: float) -> list[dict[str, Any]]:
    rs = trace.runstates
    if not len(rs):
        return []
    end = rs["end_tsc"].to_numpy(dtype=np.int64, na_value=-1)
    start = rs["start_tsc"].to_numpy(np.int64)
    closed = end >= 0
    # The idle vCPUs are "runnable" whenever they do not run: not a wait.
    guest = rs["domid"].to_numpy() != DOMID_IDLE
    runnable = (rs["state"] == "runnable").to_numpy() & closed & guest
    idx = np.flatnonzero(runnable)
    if not len(idx):
        return []
    top = idx[np.argsort(-(end[idx] - start[idx]), kind="stable")[:LONGEST_WAITS]]
    runs = trace.cpu_runs
    cpu = rs["cpu"].to_numpy()
    out = []
    for i in top.tolist():
        # The record that closed the wait (the vCPU's next interval) tells where it then ran.
        ran_on = int(cpu[i + 1])
        occupants = who_ran(runs, ran_on, int(start[i]), int(end[i]))
        by_unit = occupants.groupby(["domid", "vcpu"])["cycles"].sum().sort_values(
            ascending=False)
        out.append({
            "domid": int(rs["domid"].iat[i]),
            "vcpu": int(rs["vcpu"].iat[i]),
            "start_s": (int(start[i]) - origin) / hz,
            "duration_s": (int(end[i]) - int(start[i])) / hz,
            "ran_on_cpu": ran_on,
            "cpu_held_by": [{"unit": _unit(int(d), int(v)), "domid": int(d), "vcpu": int(v),
                             "duration_s": int(c) / hz}
                            for (d, v), c in by_unit.items()],
        })
    return out


def summarize_trace(path: str | os.PathLike[str], cpu_hz: float | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Read a xentrace file and summarize it (a JSON-ready document).

    ``records`` counts every record Xen wrote (wrap and lost-records records included, not the
    CPU-change records); ``events`` maps ``"0x%08x"`` ids to ``{"name", "count"}``.
    """
    if cpu_hz is not None and not (cpu_hz > 0 and np.isfinite(cpu_hz)):
        raise OptionError(f"--cpu-hz must be a positive frequency, not {cpu_hz}")
    hz = float(cpu_hz) if cpu_hz is not None else DEFAULT_CPU_HZ
    trace = read_xentrace(path, on_progress=on_progress)
    origin = trace.first_tsc or 0
    span = (trace.last_tsc - trace.first_tsc) if trace.first_tsc is not None else 0
    per_cpu = trace.events["cpu"].value_counts(sort=False)
    vcpus = _runstate_totals(trace, hz)
    return {
        "file": str(path),
        "records": trace.records,
        "windows": trace.windows,
        "cpus": trace.cpus,
        "cpu_ids": list(trace.cpu_ids),
        "records_per_cpu": {str(int(c)): int(per_cpu.get(c, 0)) for c in trace.cpu_ids},
        "truncated": trace.truncated,
        "cpu_hz": hz,
        "cpu_hz_source": "given" if cpu_hz is not None else "default (2.4 GHz, as xenalyze)",
        "first_tsc": trace.first_tsc,
        "last_tsc": trace.last_tsc,
        "duration_s": span / hz,
        "events": _event_counts(trace),
        "lost": _blind_spots(trace, origin, hz),
        "vcpus": vcpus,
        "domains": _domain_totals(vcpus),
        "longest_runnable": _longest_waits(trace, origin, hz),
    }
