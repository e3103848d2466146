"""``xenlat trace``: what a Xen performance engineer reaches for xenalyze to see.

Records per event (every id named from ``xen_events``' table) and per class, lost records and
their blind spots; per vCPU and domain the time in each run state and the waits to run split
into wake latency and preemption (count, percentiles); per physical CPU how busy it was, over
the trace and in time buckets, and a warning for a CPU whose records stop early, with the
vCPU states carried across that silence marked as inferred; migrations and running time per
physical CPU; for HVM guests the VM exits by reason with their cycles, the injected interrupts
and the I/O ports. ``docs/trace.md`` says where these differ from xenalyze's and why.

The views are computed on numpy arrays (:mod:`.trace_sched`, :mod:`.trace_hvm`) so that the
command on a small trace finishes before pandas could have been imported; the API hands them
out as pandas tables (:class:`TraceSummary` properties), the command as a document
(:meth:`TraceSummary.to_document`). Times are TSC cycles converted at ``cpu_hz`` (default
2.4 GHz, as xenalyze), relative to the first timestamped record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OptionError
from ..groups import unique
from ..sources.xentrace_scan import TraceScan, scan_xentrace
from ..xen_events import DOMID_IDLE, RUNSTATES, event_class, event_info, event_title
from . import sched
from .hvm import HVM_EVENT_IDS, HVM_WORDS, HvmViews, hvm_views
from .sched import Table

if TYPE_CHECKING:
    import pandas as pd

#: xenalyze's default TSC frequency when none is given (``--cpu-hz``).
DEFAULT_CPU_HZ = 2.4e9
#: How many of the longest runnable waits the summary lists.
LONGEST_WAITS = 10
#: Time buckets of the per-CPU utilisation.
BUCKETS = 10


def unit_name(domid: int, vcpu: int) -> str:
    """``d14v2``, or ``idle(v3)`` for the idle domain's vCPUs."""
    return f"idle(v{vcpu})" if domid == DOMID_IDLE else f"d{domid}v{vcpu}"


def _units(table: Table, at: int = 0) -> Table:
    """``table`` with its ``key`` column replaced by ``domid`` and ``vcpu`` (at ``at``)."""
    items = list(table.items())
    key = table["key"]
    unit = [("domid", (key >> 16).astype(np.int32)), ("vcpu", (key & 0xFFFF).astype(np.int32))]
    rest = [(k, v) for k, v in items if k != "key"]
    return dict(rest[:at] + unit + rest[at:])


@dataclasses.dataclass
class TraceSummary:
    """Every view of one trace. The properties are pandas tables (seconds unless a column
    says ``_us`` or cycles); :meth:`to_document` is the JSON output."""

    scan: TraceScan
    hz: float
    hz_given: bool
    tables: dict[str, Table]
    """The views as numpy columns, by name (the properties' sources)."""
    hvm_mode: str | None
    """``vmx``, ``svm`` or None (no exits in the trace)."""
    warnings: list[str]
    longest_runnable: list[dict[str, Any]]

    def frame(self, name: str) -> pd.DataFrame:
        """One view as a pandas table."""
        import pandas as pd

        return pd.DataFrame(self.tables[name])

    events = property(lambda self: self.frame("events"),
                      doc="Per event id: ``event, name, class, group, since, records, bytes``.")
    events_per_cpu = property(lambda self: self.frame("events_per_cpu"),
                              doc="``cpu, event, records, bytes``.")
    vcpus = property(lambda self: self.frame("vcpus"),
                     doc="Per vCPU: ``<state>_s``, ``changes``, ``inferred_s``, ``runs``, "
                         "``migrations``.")
    domains = property(lambda self: self.frame("domains"), doc="Per domain: sums of vCPUs.")
    waits = property(lambda self: self.frame("waits"),
                     doc="Per vCPU and kind (wake, preempt, other): count, total, "
                         "percentiles (µs).")
    domain_waits = property(lambda self: self.frame("domain_waits"),
                            doc="The same per domain (its vCPUs' waits pooled).")
    vcpu_pcpu = property(lambda self: self.frame("vcpu_pcpu"),
                         doc="Running time per vCPU and physical CPU.")
    pcpus = property(lambda self: self.frame("pcpus"),
                     doc="Per physical CPU: records, first/last record, busy/idle/unknown "
                         "time while observed, silence after its last record, stops_early.")
    utilisation = property(lambda self: self.frame("utilisation"),
                           doc="Busy share per physical CPU and time bucket (NaN: silent).")
    silences = property(lambda self: self.frame("silences"),
                        doc="Leading and trailing stretches without records per CPU.")
    inferred = property(lambda self: self.frame("inferred"),
                        doc="vCPU states carried across an unusual silence.")
    hvm_exits = property(lambda self: self.frame("hvm_exits"),
                         doc="VM exits per vCPU and reason: count, cycles, percentiles.")
    guest_interrupts = property(lambda self: self.frame("guest_interrupts"),
                                doc="Injected virtual interrupts per vCPU and vector.")
    io_ports = property(lambda self: self.frame("io_ports"),
                        doc="Port I/O per vCPU, port and direction with the exits' cycles.")

    def to_document(self) -> dict[str, Any]:
        """The JSON-ready document of ``xenlat trace --format json``."""
        return _document(self)


# --- the views --------------------------------------------------------------------------------

def _event_tables(scan: TraceScan) -> tuple[Table, Table]:
    counts = scan.counts
    ids, at = unique(counts["event"], return_inverse=True)
    info = [event_info(int(e)) for e in ids]
    per_event = {
        "event": ids.astype(np.uint32),
        "name": np.array([event_title(int(e)) for e in ids], dtype=object),
        "class": np.array([event_class(int(e)) for e in ids], dtype=object),
        "group": np.array([i.group if i else None for i in info], dtype=object),
        "since": np.array([i.since if i else None for i in info], dtype=object),
        "records": np.bincount(at, weights=counts["records"], minlength=len(ids)).astype(
            np.int64),
        "bytes": np.bincount(at, weights=counts["bytes"], minlength=len(ids)).astype(np.int64)}
    return per_event, dict(counts)


def _vcpu_tables(states: Table, moves: Table, hz: float) -> tuple[Table, Table]:
    key = states["key"]
    idle = (key >> 16) == DOMID_IDLE
    at = np.searchsorted(moves["key"], key)
    found = (at < len(moves["key"])) & (moves["key"][np.minimum(at, len(moves["key"]) - 1)]
                                        == key) if len(moves["key"]) else np.zeros(len(key), bool)
    vcpus: Table = {"key": key, "idle": idle}
    for name in RUNSTATES:
        vcpus[f"{name}_s"] = states[name] / hz
    vcpus["changes"] = states["changes"]
    vcpus["inferred_s"] = states["inferred"] / hz
    for col in ("runs", "migrations"):
        values = np.zeros(len(key), dtype=np.int64)
        values[found] = moves[col][at[found]]
        vcpus[col] = values
    domid, dom_at = unique(key >> 16, return_inverse=True)
    domains: Table = {"domid": domid.astype(np.int32), "idle": domid == DOMID_IDLE,
                      "vcpus": np.bincount(dom_at, minlength=len(domid)).astype(np.int64)}
    for name in [f"{s}_s" for s in RUNSTATES] + ["inferred_s"]:
        domains[name] = np.bincount(dom_at, weights=vcpus[name], minlength=len(domid))
    return _units(vcpus), domains


def _wait_tables(wait: Table, hz: float) -> tuple[Table, Table]:
    # one sort for both groupings; not stable: tied waits are equal values, any order of
    # them gives the same percentiles (a stable sort of a million waits costs twice as much)
    by_value = np.argsort(wait["cycles"])
    per_unit = sched.wait_stats(wait, wait["key"], hz, by_value)
    per_dom = sched.wait_stats(wait, wait["key"] >> 16, hz, by_value)
    kinds = np.array(sched.WAIT_KINDS, dtype=object)
    per_unit = _units({"key": per_unit.pop("group"), **per_unit})
    per_unit["kind"] = kinds[per_unit["kind"]]
    per_dom = {"domid": per_dom.pop("group").astype(np.int32), **per_dom}
    per_dom["kind"] = kinds[per_dom["kind"]]
    return per_unit, per_dom


def _pcpu_tables(scan: TraceScan, runs: Table, silent: Table, hz: float
                 ) -> tuple[Table, Table]:
    per_cpu, buckets = sched.pcpu_usage(scan, runs, BUCKETS)
    origin, last = scan.first_tsc or 0, scan.last_tsc or 0
    observed = per_cpu["observed"].astype(float)
    early = silent["cpu"][silent["unusual"] & (silent["side"] == 1)]
    pcpus: Table = {
        "cpu": per_cpu["cpu"], "records": per_cpu["records"],
        "first_s": (per_cpu["first"] - origin) / hz, "last_s": (per_cpu["last"] - origin) / hz,
        "busy_s": per_cpu["busy"] / hz, "idle_s": per_cpu["idle"] / hz,
        "unknown_s": per_cpu["unknown"] / hz,
        "busy_pct": np.divide(100 * per_cpu["busy"], observed,
                              out=np.full(len(observed), np.nan), where=observed > 0),
        "silent_after_s": (last - per_cpu["last"]) / hz,
        "stops_early": np.isin(per_cpu["cpu"], early)}
    util: Table = {"cpu": buckets["cpu"], "bucket": buckets["bucket"],
                   "from_s": (buckets["start"] - origin) / hz,
                   "to_s": (buckets["end"] - origin) / hz, "busy_share": buckets["busy_share"]}
    return pcpus, util


def _silence_tables(silent: Table, inferred: Table, origin: int, hz: float
                    ) -> tuple[Table, Table]:
    sides = np.array(sched.SIDES, dtype=object)
    states = np.array([*RUNSTATES, "unknown"], dtype=object)
    out_silent: Table = {"cpu": silent["cpu"], "side": sides[silent["side"]],
                         "from_s": (silent["start"] - origin) / hz,
                         "to_s": (silent["end"] - origin) / hz,
                         "duration_s": (silent["end"] - silent["start"]) / hz,
                         "longest_gap_s": silent["longest_gap"] / hz,
                         "unusual": silent["unusual"]}
    out_inferred = _units({"cpu": inferred["cpu"], "side": sides[inferred["side"]],
                           "key": inferred["key"], "state": states[inferred["state"]],
                           "from_s": (inferred["start"] - origin) / hz,
                           "to_s": (inferred["end"] - origin) / hz,
                           "duration_s": (inferred["end"] - inferred["start"]) / hz}, at=2)
    return out_silent, out_inferred


def _hvm_tables(hvm: HvmViews, hz: float, span_s: float) -> dict[str, Table]:
    exits = dict(hvm.exits)
    exits["total_s"] = exits["cycles"] / hz
    exits["share_pct"] = 100 * exits["total_s"] / max(span_s, 1e-12)
    exits["mean"] = np.divide(exits["cycles"], exits["count"],
                              out=np.full(len(exits["count"]), np.nan),
                              where=exits["count"] > 0)
    io = dict(hvm.io_ports)
    return {"hvm_exits": _units(exits), "guest_interrupts": _units(dict(hvm.interrupts)),
            "io_ports": _units(io)}


def _warnings(scan: TraceScan, silent: Table, inferred: Table, hz: float) -> list[str]:
    """One line per CPU that stops early: when, and what was carried across the silence."""
    out = []
    origin = scan.first_tsc or 0
    lost = len(scan.lost["cpu"])
    for k in np.flatnonzero(silent["unusual"] & (silent["side"] == 1)).tolist():
        cpu = int(silent["cpu"][k])
        mine = np.flatnonzero((inferred["cpu"] == cpu) & (inferred["side"] == 1))
        carried = ", ".join(
            f"{unit_name(int(key >> 16), int(key & 0xFFFF))} "
            f"{RUNSTATES[s] if 0 <= s < len(RUNSTATES) else 'unknown'}"
            for key, s in zip(inferred["key"][mine].tolist(), inferred["state"][mine].tolist(),
                              strict=True)) or "no vCPU state"
        out.append(
            f"pCPU {cpu} has no records after {(int(silent['start'][k]) - origin) / hz:.3f} s "
            f"of {(int(silent['end'][k]) - origin) / hz:.3f} s ("
            + (f"{lost} lost-records records in the trace" if lost else "no lost records")
            + f"; it was never quiet longer than {int(silent['longest_gap'][k]) / hz:.3f} s "
            f"before): inferred, not observed, to the end: {carried}")
    return out


def _longest_waits(iv: Table, wait: Table, runs: Table, origin: int, hz: float
                   ) -> list[dict[str, Any]]:
    """The longest runnable waits of guest vCPUs, and who held the CPU they then ran on."""
    guest = np.flatnonzero((wait["key"] >> 16) != DOMID_IDLE)
    if len(guest) > LONGEST_WAITS:  # the longest few without sorting them all
        few = np.argpartition(-wait["cycles"][guest], LONGEST_WAITS - 1)[:LONGEST_WAITS]
        guest = np.sort(guest[few])
    top = guest[np.argsort(-wait["cycles"][guest], kind="stable")[:LONGEST_WAITS]]
    out = []
    for i in top.tolist():
        key, start, row = int(wait["key"][i]), int(wait["start"][i]), int(wait["row"][i])
        end = start + int(wait["cycles"][i])
        # the run that ended the wait is the vCPU's next interval (intervals: by unit, time)
        ran = row + 1 < len(iv["key"]) and iv["key"][row + 1] == key \
            and iv["state"][row + 1] == sched.RUNNING
        ran_on = int(iv["cpu"][row + 1]) if ran else -1
        mine = sched.cpu_slice(runs, ran_on)  # sorted by start, back to back
        lo = max(int(np.searchsorted(runs["start"][mine], start, side="right")) - 1, 0)
        hi = int(np.searchsorted(runs["start"][mine], end, side="left"))
        held = np.arange(mine.start + lo, mine.start + hi)
        held = held[(runs["end"][held] > start) & (runs["key"][held] != key)]
        cycles = np.minimum(runs["end"][held], end) - np.maximum(runs["start"][held], start)
        holders, at = unique(runs["key"][held], return_inverse=True)
        total = np.bincount(at, weights=cycles, minlength=len(holders))
        rank = np.argsort(-total, kind="stable")
        out.append({
            "domid": key >> 16, "vcpu": key & 0xFFFF, "start_s": (start - origin) / hz,
            "duration_s": (end - start) / hz, "ran_on_cpu": ran_on,
            "cpu_held_by": [{"unit": unit_name(int(h >> 16), int(h & 0xFFFF)),
                             "domid": int(h >> 16), "vcpu": int(h & 0xFFFF),
                             "duration_s": float(total[j]) / hz}
                            for h, j in zip(holders[rank].tolist(), rank.tolist(),
                                            strict=True)]})
    return out


def analyze_trace(path: str | os.PathLike[str], cpu_hz: float | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> TraceSummary:
    """Read a xentrace file and compute every view of ``xenlat trace``."""
    if cpu_hz is not None and not (cpu_hz > 0 and math.isfinite(cpu_hz)):
        raise OptionError(f"--cpu-hz must be a positive frequency, not {cpu_hz}")
    hz = float(cpu_hz) if cpu_hz is not None else DEFAULT_CPU_HZ
    scan = scan_xentrace(path, on_progress, events=HVM_EVENT_IDS, words=HVM_WORDS,
                         merged=False)
    iv = sched.interval_table(scan)
    scan.runstate = {}  # the intervals hold what the views need of them
    origin = scan.first_tsc or 0
    span_s = ((scan.last_tsc or origin) - origin) / hz
    silent = sched.silences(scan)
    inferred = sched.inferred_states(iv, silent)
    per_unit, per_cpu = sched.migrations(iv)
    tables: dict[str, Table] = {}
    tables["events"], tables["events_per_cpu"] = _event_tables(scan)
    tables["vcpus"], tables["domains"] = _vcpu_tables(sched.vcpu_states(iv, inferred),
                                                      per_unit, hz)
    wait = sched.waits(iv)  # the wait tables and the longest waits
    tables["waits"], tables["domain_waits"] = _wait_tables(wait, hz)
    tables["vcpu_pcpu"] = _units({"key": per_cpu["key"], "cpu": per_cpu["cpu"],
                                  "runs": per_cpu["runs"], "running_s": per_cpu["cycles"] / hz})
    runs = sched.cpu_runs(scan, iv)
    scan.switch = {}
    tables["pcpus"], tables["utilisation"] = _pcpu_tables(scan, runs, silent, hz)
    tables["silences"], tables["inferred"] = _silence_tables(silent, inferred, origin, hz)
    hvm = hvm_views(scan, iv, runs)
    tables.update(_hvm_tables(hvm, hz, span_s))
    return TraceSummary(scan=scan, hz=hz, hz_given=cpu_hz is not None, tables=tables,
                        hvm_mode=hvm.mode, warnings=_warnings(scan, silent, inferred, hz),
                        longest_runnable=_longest_waits(iv, wait, runs, origin, hz))


def summarize_trace(path: str | os.PathLike[str], cpu_hz: float | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Read a xentrace file and summarize it (a JSON-ready document).

    ``records`` counts every record Xen wrote (wrap and lost-records records included, not the
    CPU-change records); ``events`` maps ``"0x%08x"`` ids to ``{"name", "count", …}``.
    """
    return analyze_trace(path, cpu_hz, on_progress).to_document()


# --- the document ---------------------------------------------------------------------------------

def rows(table: Table) -> list[dict[str, Any]]:
    """A table as JSON-ready rows (Python scalars; NaN and infinities as None)."""
    names = list(table)
    columns = [np.asarray(table[n]).tolist() for n in names]
    return [{n: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for n, v in zip(names, values, strict=True)} for values in zip(*columns, strict=True)]


def _blind_spots(scan: TraceScan, origin: int, hz: float) -> dict[str, Any]:
    lost = scan.lost
    start = (lost["tsc_first"] - origin) / hz
    end = (lost["tsc"] - origin) / hz
    spots = rows({"cpu": lost["cpu"], "dropped": lost["dropped"], "domid": lost["domid"],
                  "vcpu": lost["vcpu"], "start_s": start, "end_s": end,
                  "duration_s": np.maximum(lost["tsc"] - lost["tsc_first"], 0) / hz})
    return {"records": len(spots), "dropped": int(lost["dropped"].sum()),
            "blind_s": float(sum(s["duration_s"] for s in spots)), "blind_spots": spots}


def _document(s: TraceSummary) -> dict[str, Any]:
    scan, hz, origin = s.scan, s.hz, s.scan.first_tsc or 0
    span = (scan.last_tsc - scan.first_tsc) if scan.first_tsc is not None \
        and scan.last_tsc is not None else 0
    events = s.tables["events"]
    per_cpu = {int(c): 0 for c in scan.cpu_ids}
    for c, n in zip(scan.counts["cpu"].tolist(), scan.counts["records"].tolist(), strict=True):
        per_cpu[c] += n
    classes: dict[str, int] = {}
    for c, n in zip(events["class"].tolist(), events["records"].tolist(), strict=True):
        classes[c] = classes.get(c, 0) + n
    vcpus = {k: v for k, v in s.tables["vcpus"].items() if k != "runs"}
    return {
        "file": str(scan.path),
        "records": scan.records,
        "windows": scan.windows,
        "cpus": len(scan.cpu_ids),
        "cpu_ids": list(scan.cpu_ids),
        "records_per_cpu": {str(c): n for c, n in per_cpu.items()},
        "truncated": scan.truncated,
        "cpu_hz": hz,
        "cpu_hz_source": "given" if s.hz_given else "default (2.4 GHz, as xenalyze)",
        "first_tsc": scan.first_tsc,
        "last_tsc": scan.last_tsc,
        "duration_s": span / hz,
        "warnings": s.warnings,
        "events": {f"0x{r['event']:08x}": {"name": r["name"], "count": r["records"],
                                            "bytes": r["bytes"], "class": r["class"],
                                            "group": r["group"], "since": r["since"]}
                   for r in rows(events)},
        "classes": dict(sorted(classes.items())),
        "lost": _blind_spots(scan, origin, hz),
        "vcpus": rows(vcpus),
        "domains": rows(s.tables["domains"]),
        "waits": rows(s.tables["waits"]),
        "domain_waits": rows(s.tables["domain_waits"]),
        "vcpu_pcpu": rows(s.tables["vcpu_pcpu"]),
        "pcpus": rows(s.tables["pcpus"]),
        "utilisation": rows(s.tables["utilisation"]),
        "silences": rows(s.tables["silences"]),
        "inferred": rows(s.tables["inferred"]),
        "longest_runnable": s.longest_runnable,
        "hvm": {"mode": s.hvm_mode, "exits": rows(s.tables["hvm_exits"]),
                "guest_interrupts": rows(s.tables["guest_interrupts"]),
                "io_ports": rows(s.tables["io_ports"])},
    }


def dumps(document: dict[str, Any]) -> str:
    """The document as deterministic JSON (sorted keys, as ``output.dumps_json``)."""
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
