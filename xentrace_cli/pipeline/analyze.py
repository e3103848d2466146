"""The pipeline of ``xenlat analyze``: sources → aligned, matched, attributed table → Analysis.

:func:`analyze` reads whatever sources are given (any of the guest capture, the backend and
physical-NIC captures in dom0, a xentrace file, the guest application's socket log), aligns
their clocks on dom0's (:mod:`clock`), matches each data segment across the capture points
(:mod:`match`), computes its checkpoints and stages (:mod:`attribute`), the causes of stalls
from the trace, and the anomalies (:mod:`anomalies`). One capture alone still gives the
per-connection view of :mod:`lone`. :func:`analyze_files` is the same for Python callers.

Example::

    from xentrace_cli.pipeline.analyze import analyze_files
    result = analyze_files(guest="guest.pcapng", backend="vif5.0.pcap",
                           xentrace="xentrace.bin", socket_log="app.strace")
    slow = result.table[result.table["anomaly"] != ""]
    print(slow[["seq", "total_us", "anomaly", "cause"]])
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError, OptionError, XenlatWarning, hold_warnings
from ..model import (
    ALL_STAGES,
    CHECKPOINTS,
    STAGES,
    TABLE_CHECKPOINTS,
    TABLE_COLUMNS,
    Sources,
    checkpoint_column,
    checkpoint_ns_column,
    stat_key,
)
from . import anomalies, attribute, causes, lone, match, path_order, trace_attribute
from .attribute import NA_NS
from .result import Analysis

ProgressCallback = Callable[[int, int], None]

#: Names a ``--threshold`` may use besides the stages.
_INTERVAL_NAME = re.compile(r"^[a-z0-9_]+_to_[a-z0-9_]+$")
#: Backend interface names: ``vif<domid>.<n>`` (file name or pcapng ``if_name``).
_VIF = re.compile(r"vif(\d+)\.(\d+)")
#: Slack for reads before / writes after the guest capture of their bytes (strace prints µs).
SOCKET_SLACK_NS = 1_000
#: The capture points, downstream (receive direction) first.
CAPTURES: tuple[str, ...] = ("guest", "backend", "phys")


@dataclasses.dataclass
class AnalyzeOptions:
    """Options of an analysis (the CLI's ``--cpu-hz``, ``--domid`` …)."""

    cpu_hz: float | None = None
    """TSC frequency of the traced host; estimated from the data when None."""
    domid: int | None = None
    """Guest domain id; from the backend interface name ``vifD.N`` when None."""
    nic_irq: int | None = None
    """Xen IRQ of the NIC; the IRQ whose interrupts line up with packet arrivals when None."""
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    """Absolute anomaly thresholds, µs, per stage (or interval, or ``total``)."""


def parse_thresholds(strings: Iterable[str]) -> dict[str, float]:
    """``["socket_read=10ms"]`` → ``{"socket_read": 10000.0}`` (µs). ValueError on bad input."""
    from ..units import parse_duration_us

    out: dict[str, float] = {}
    for text in strings:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{text!r}: write STAGE=DURATION, e.g. socket_read=10ms")
        known = (name in STAGES or name == "total" or name in lone.INTERVALS
                 or _INTERVAL_NAME.match(name))
        if not known:
            raise ValueError(f"{text!r}: unknown stage {name!r} (one of "
                             f"{', '.join((*STAGES, 'total'))}, or a merged interval such as "
                             "backend_to_guest)")
        us = parse_duration_us(value)
        if us <= 0:
            raise ValueError(f"{text!r}: the threshold must be positive")
        out[name] = us
    return out


def analyze_files(guest: str | os.PathLike[str] | None = None, *,
                  backend: str | os.PathLike[str] | None = None,
                  phys: str | os.PathLike[str] | None = None,
                  xentrace: str | os.PathLike[str] | None = None,
                  socket_log: str | os.PathLike[str] | None = None,
                  cpu_hz: float | None = None, domid: int | None = None,
                  nic_irq: int | None = None, display_filter: str | None = None,
                  thresholds: dict[str, float] | None = None,
                  on_progress: ProgressCallback | None = None) -> Analysis:
    """Analyze files given by path; ``result.table`` is the per-packet DataFrame."""
    def p(x: str | os.PathLike[str] | None) -> Path | None:
        return Path(x) if x is not None else None

    sources = Sources(guest=p(guest), backend=p(backend), phys=p(phys), xentrace=p(xentrace),
                      socket_log=p(socket_log))
    if not sources.present:
        raise OptionError("nothing to analyze: give at least one source")
    options = AnalyzeOptions(cpu_hz=cpu_hz, domid=domid, nic_irq=nic_irq,
                             thresholds=dict(thresholds or {}))
    analysis = analyze(sources, options, on_progress=on_progress)
    if display_filter is None:
        return analysis
    from .select import Selection, select  # -Y picks what is reported, after the analysis

    return select(analysis, Selection(display_filter=display_filter))


class _Progress:
    """Turns each reader's progress into one (done, total) over all inputs, by file size."""

    def __init__(self, sources: Sources, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.sizes = {}
        for name in sources.present:
            try:
                self.sizes[name] = os.path.getsize(getattr(sources, name))
            except OSError:
                self.sizes[name] = 0
        self.total = sum(self.sizes.values()) + 1
        self.done: dict[str, int] = {}

    def part(self, name: str) -> ProgressCallback | None:
        if self.callback is None:
            return None

        def update(done: int, total: int) -> None:
            size = self.sizes.get(name, 0)
            self.done[name] = int(size * done / total) if total else size
            self.report()

        return update

    def phase(self, name: str) -> None:
        """Name the step under way (no measure of its progress) to a callback that shows
        names: one with a ``phase(name)`` method, as the command line's bar has."""
        show = getattr(self.callback, "phase", None)
        if show is not None:
            show(name)

    def report(self, final: bool = False) -> None:
        if self.callback is not None:
            self.callback(self.total if final else min(sum(self.done.values()),
                                                       self.total - 1), self.total)


def give_back_memory() -> None:
    """Return the heap memory freed so far to the system (peak RSS, not speed).

    glibc keeps freed memory in its heaps (one per thread that allocated), and Arrow's pool
    keeps its own: after a reader's temporaries are gone, hundreds of MB would stay resident
    while the next step allocates anew. A no-op where ``malloc_trim`` does not exist.
    """
    arrow = sys.modules.get("pyarrow")
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def domid_from_name(path: Path | None, packets: pd.DataFrame | None) -> int | None:
    """Guest domain id from the backend interface name (``vif5.0``: file or pcapng if_name)."""
    names = []
    if packets is not None:
        names += [str(i.get("if_name") or i.get("name") or "")
                  for i in packets.attrs.get("interfaces", []) if isinstance(i, dict)]
    if path is not None:
        names.append(path.name)
    for name in names:
        found = _VIF.search(name)
        if found:
            return int(found.group(1))
    return None


def _read_socket_log_aside(pool: concurrent.futures.Executor, path: Path | None,
                           progress: _Progress) -> concurrent.futures.Future | None:
    """Start reading the socket log in a worker thread, beside the captures (it spends most
    of its time in Arrow's regex and numpy, which let the other threads run). Its warnings are
    held (and an error kept) until :func:`_socket_log_result` takes them, so they come out
    where a serial read would have shown them."""
    if path is None:
        return None
    from ..sources.strace import read_socket_log

    def job() -> tuple[pd.DataFrame | None, list[Warning], Exception | None]:
        with hold_warnings() as held:
            try:
                calls = read_socket_log(path, on_progress=progress.part("socket_log"),
                                        data=False)
            except Exception as exc:  # shown after the warnings it followed
                return None, held, exc
        give_back_memory()
        return calls, held, None

    return pool.submit(job)


def _socket_log_result(job: concurrent.futures.Future | None) -> pd.DataFrame | None:
    """The socket call table of :func:`_read_socket_log_aside`, its warnings shown now."""
    if job is None:
        return None
    calls, held, error = job.result()
    for warning in held:
        warnings.warn(warning, stacklevel=3)
    if error is not None:
        raise error
    return calls


def analyze(sources: Sources, options: AnalyzeOptions,
            on_progress: ProgressCallback | None = None) -> Analysis:
    """Run the whole pipeline on ``sources`` (see the module docstring)."""
    from ..sources.packets import read_packets

    progress = _Progress(sources, on_progress)
    notes: list[str] = []
    alignment: dict[str, Any] = {}
    present = set(sources.present)
    for names in sources.shared_files():  # badinput (issue 10): one warning, nothing else
        warnings.warn(XenlatWarning(
            f"{getattr(sources, names[0])}: the same file is given as {' and '.join(names)}: "
            "the intervals between them would read as zero"), stacklevel=2)

    # the trace is the largest input: read it in a second thread while the captures are read
    # (the readers spend their time in numpy, which lets the other thread run)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    trace_job = None
    if sources.xentrace is not None:
        from ..sources.xentrace import read_xentrace

        def read_trace() -> Any:
            trace = read_xentrace(sources.xentrace, on_progress=progress.part("xentrace"),
                                  events=trace_attribute.TRACE_EVENTS,
                                  columns=trace_attribute.TRACE_COLUMNS)
            give_back_memory()
            return trace

        trace_job = pool.submit(read_trace)
    socket_job = _read_socket_log_aside(pool, sources.socket_log, progress)
    try:
        packets: dict[str, pd.DataFrame] = {}
        lone_name = next((n for n in CAPTURES if getattr(sources, n) is not None), None)
        for name in CAPTURES[::-1]:
            path = getattr(sources, name)
            if path is not None:  # the lone view's capture: payload heads and TCP windows
                packets[name] = read_packets(path, on_progress=progress.part(name),
                                             **(lone.READ_OPTIONS if name == lone_name else {}))
        facts = lone.frame_facts(packets[lone_name]) if lone_name is not None else None
        give_back_memory()
        calls = _socket_log_result(socket_job)
        # --- segments on one axis (while the trace may still be read) -------------------------
        tables: dict[str, pd.DataFrame] = {}
        for name, table in packets.items():
            tables[name] = match.data_segments(table)
            tables[f"{name}:syn"] = match.syn_segments(table)
        trace = trace_job.result() if trace_job is not None else None
    finally:
        for job in (trace_job, socket_job):
            if job is not None:
                job.cancel()
        pool.shutdown(wait=True)

    anchor_name = next((n for n in CAPTURES if n in packets), None)
    if anchor_name is None:
        return _no_capture(sources, calls, trace, notes)
    # of the raw captures only dom0's arrival times are still needed (the trace's interrupts
    # and copies): the rest go (memory)
    n_captures = len(packets)
    domid = options.domid
    named = domid_from_name(sources.backend, packets.get("backend"))
    if domid is None:
        domid = named
    elif named is not None and named != domid:
        warnings.warn(XenlatWarning(
            f"--domid {domid} contradicts the backend capture's interface name (vif{named}.N "
            f"serves domain {named}); using {domid} as given"), stacklevel=2)
    packets = {k: v[[c for c in ("src", "dst", "ts_ns") if c in v.columns]]
               for k, v in packets.items() if k in ("phys", "backend")}
    remote = set()
    if calls is not None and "peer" in calls.columns:
        peers = calls["peer"].dropna().astype(str).unique()
        remote = {p.rsplit(":", 1)[0].strip("[]") for p in peers}
    progress.phase("matching packets across captures")
    local = match.local_addresses(tables[anchor_name], remote)
    placed = match.assign_flows(tables, local)
    del tables  # placed holds copies: let the per-capture tables go (memory)
    syns = pd.concat([placed[k] for k in placed if k.endswith(":syn")], ignore_index=True)
    anchor_all = placed[anchor_name]
    fresh = match.first_transmissions(anchor_all)
    anchor = anchor_all[fresh].reset_index(drop=True)
    if (~fresh).any():
        notes.append(f"{int((~fresh).sum())} retransmitted segments in the {anchor_name} "
                     "capture are left out of the table (each byte counts once, at its first "
                     "transmission).")
    n = len(anchor)
    if n == 0:
        notes.append(f"the {anchor_name} capture holds no TCP or UDP data: nothing to "
                     "split into stages.")
    own: dict[str, np.ndarray] = {anchor_name: anchor["ts_ns"].to_numpy(np.int64)}
    matched_rows: dict[str, np.ndarray] = {anchor_name: np.flatnonzero(fresh)}
    retrans = np.zeros(n, dtype=bool)
    for name in CAPTURES:
        if name == anchor_name or name not in placed:
            continue
        m = match.match_segments(anchor, placed[name])
        own[name] = np.where(m.found, m.ts_ns, NA_NS)
        matched_rows[name] = m.index
        retrans |= m.retransmitted
        missing = int((~m.found).sum())
        if missing:
            notes.append(f"{missing} of {n} segments of the {anchor_name} capture were not "
                         f"found in the {name} capture (their {name} time is left empty).")
    # matched: of the other captures' segments nothing more is needed (memory)
    placed = {anchor_name: anchor_all}

    # --- which side is the guest: data towards it reaches dom0 first, data from it the guest -
    dom0_point = "backend" if "backend" in own else ("phys" if "phys" in own else None)
    if "guest" in own and dom0_point is not None and n:
        flipped = _check_direction(anchor, own["guest"], own[dom0_point], local)
        if flipped is not None and remote:
            # the socket log names the peers: the addresses are right, the timing is not
            warnings.warn(XenlatWarning(
                f"the guest capture and the {dom0_point} capture look swapped: data from "
                f"{', '.join(sorted(remote))} reaches the guest capture before dom0's; check "
                f"which file is the guest's (the positional CAPTURE) and which --{dom0_point}"),
                stacklevel=2)
        elif flipped is not None and len(flipped) != 1:
            warnings.warn(XenlatWarning(
                f"the guest capture and the {dom0_point} capture look swapped: data towards "
                f"{', '.join(sorted(local))} reaches the guest capture before dom0's (or the "
                "guest is another address: give --socket-log to name it); the split is wrong"),
                stacklevel=2)
        elif flipped is not None:
            warnings.warn(XenlatWarning(
                f"taking {', '.join(sorted(flipped))} as the guest, not "
                f"{', '.join(sorted(local))}: data towards it reaches dom0 first. If the guest "
                f"capture and the {dom0_point} capture were swapped instead, the split is wrong"),
                stacklevel=2)
            local = flipped
            for table in (*placed.values(), anchor):
                table["direction"] = match.directions(table, local)
    if "phys" in own and "backend" in own and n \
            and _dom0_captures_swapped((anchor["direction"] == "rx").to_numpy(), own["phys"],
                                       own["backend"]):
        warnings.warn(XenlatWarning(
            "the --phys and --backend captures look swapped: most frames reach the backend "
            "capture before the physical NIC's going to the guest (and after it going out); "
            "they are used the other way round"), stacklevel=2)
        notes.append("--phys and --backend swapped: the timing says each is the other's "
                     "capture point (see the warning).")
        own["phys"], own["backend"] = own["backend"], own["phys"]
        matched_rows["phys"], matched_rows["backend"] = (matched_rows["backend"],
                                                         matched_rows["phys"])
        if "phys" in packets and "backend" in packets:
            packets["phys"], packets["backend"] = packets["backend"], packets["phys"]

    # --- the guest clock on dom0's --------------------------------------------------------------
    direction = anchor["direction"].to_numpy()
    rx = direction == "rx"
    guest_fit = None
    uncertainty = {"dom0": 0.0, "guest": 0.0, "tsc": 0.0}
    if "guest" in own and dom0_point is not None:
        from .clock import fit_offset_drift

        g, d = own["guest"], own[dom0_point]
        both = (g != NA_NS) & (d != NA_NS)
        f, b = both & rx, both & ~rx
        guest_fit = fit_offset_drift(d[f], g[f], g[b], d[b], names=("dom0", "guest"))
        alignment["guest->dom0"] = {**guest_fit.to_dict(), "from": f"{dom0_point} ↔ guest"}
        uncertainty["guest"] = guest_fit.uncertainty_ns / 1e3
        notes.append(f"guest clock: {guest_fit.detail}")
    elif "guest" in own:
        notes.append("no dom0 capture: the guest's clock is not aligned with dom0's (nor "
                     "needed): intervals within the guest are exact, on the guest's clock.")
        alignment["guest->dom0"] = {"quality": "none", "offset_ns": None, "drift_ppm": None,
                                    "uncertainty_us": None,
                                    "detail": "no dom0 capture to align the guest clock with",
                                    "from": ""}

    def to_dom0(t_ns: np.ndarray, clock: str) -> np.ndarray:
        if clock == "guest" and guest_fit is not None:
            ok = t_ns != NA_NS
            out = t_ns.copy()
            out[ok] = guest_fit.to_ref(t_ns[ok])
            return out
        return t_ns

    checkpoints: dict[str, np.ndarray] = {}
    for name in CAPTURES:
        if name in own:
            checkpoints[name] = to_dom0(own[name], "guest" if name == "guest" else "dom0")

    # --- the socket log -----------------------------------------------------------------------
    calls_unc_us = 0.0
    if calls is not None:
        progress.phase("placing the socket log's reads and writes")
        offsets = np.where(anchor["proto"].to_numpy() == match.TCP,
                           match.stream_offset(anchor, syns), match.datagram_offset(anchor))
        mapping, method = attribute.map_streams(calls, anchor, offsets)
        if method == "bytes":
            notes.append("socket log: sockets matched to connections by byte counts (the log "
                         "has no peer addresses).")
        t_sock, _ = attribute.socket_times(calls, anchor, offsets, mapping)
        if calls.attrs.get("time_of_day_only"):
            ref_ns = own.get("guest", own.get(dom0_point or ""))
            shift = _time_of_day_shift(sources.socket_log, t_sock, ref_ns, rx, notes)
            calls = calls.assign(ts_ns=calls["ts_ns"] + shift, entry_ns=calls["entry_ns"] + shift)
            mapping, method = attribute.map_streams(calls, anchor, offsets)
            t_sock, _ = attribute.socket_times(calls, anchor, offsets, mapping)
        if len(mapping) == 0:
            notes.append("socket log: no socket could be matched to a connection of the "
                         "capture; read and write times are left empty.")
        if "guest" in own:
            # the same clock as the guest capture, or not this capture's log at all
            placed_sock = _socket_log_on_guest_clock(t_sock, own["guest"], rx, notes,
                                                     alignment)
            if placed_sock is None:
                present.discard("socket_log")
                t_sock = np.full(n, NA_NS, dtype=np.int64)
            else:
                t_sock, calls_unc_us = placed_sock
        elif dom0_point is not None:
            # no guest capture: the socket log itself is on the guest's clock; reads follow
            # the dom0 capture of their bytes, writes precede it
            from .clock import fit_offset_drift

            d = own[dom0_point]
            both = (t_sock != NA_NS) & (d != NA_NS)
            guest_fit = fit_offset_drift(d[both & rx], t_sock[both & rx], t_sock[both & ~rx],
                                         d[both & ~rx], names=("dom0", "guest"))
            alignment["guest->dom0"] = {**guest_fit.to_dict(),
                                        "from": f"{dom0_point} ↔ socket log"}
            uncertainty["guest"] = guest_fit.uncertainty_ns / 1e3
            notes.append(f"guest clock (from the socket log): {guest_fit.detail}")
            if guest_fit.quality in ("none", "inconsistent"):
                present.discard("socket_log")  # an interval across unaligned clocks is no use
                guest_fit = None
                t_sock = np.full(n, NA_NS, dtype=np.int64)
                notes.append("socket log left out: its reads and writes cannot be placed on "
                             f"dom0's clock ({alignment['guest->dom0']['quality']}); it does "
                             "not seem to belong to these captures.")
        sock_dom0 = to_dom0(t_sock, "guest")
        checkpoints["read"] = np.where(rx, sock_dom0, NA_NS)
        checkpoints["write"] = np.where(~rx, sock_dom0, NA_NS)
        calls = None  # no longer needed: let it go (memory)

    # --- the trace ----------------------------------------------------------------------------
    cause = np.full(n, "", dtype=object)
    cause_detail = np.full(n, "", dtype=object)
    trace_causes = None
    if trace is not None:
        progress.phase("following each packet through the trace")
        result = trace_attribute.attribute_trace(
            trace, checkpoints=checkpoints, rx=rx, frames=dom0_frames(packets, local),
            domid=domid, cpu_hz=options.cpu_hz, nic_irq=options.nic_irq)
        packets = {}
        trace.events = trace.events.iloc[:0]  # the causes need run states, not events
        checkpoints.update(result.checkpoints)
        alignment.update(result.alignment)
        notes.extend(result.notes)
        uncertainty["tsc"] = result.uncertainty_us
        trace_causes = result
        if result.fit is None:  # not on dom0's timeline: measure as if there were no trace
            present.discard("xentrace")
            trace_causes = None
    else:
        notes.append("no xentrace: causes cannot be named (the trace's vCPU run states are "
                     "the evidence).")
    tolerance_ns = {"dom0": 0.0, "guest": uncertainty["guest"] * 1e3,
                    "tsc": uncertainty["tsc"] * 1e3,
                    "socket": (uncertainty["guest"] + calls_unc_us) * 1e3}
    checkpoints, unresolved = path_order.enforce_path_order(
        checkpoints, direction, tolerance_ns, {**attribute.CLOCK_OF, "read": "socket",
                                               "write": "socket"})
    notes.extend(unresolved.notes())

    # --- the table ----------------------------------------------------------------------------
    table = anchor[list(match.FLOW_COLUMNS)].copy()
    table["direction"] = direction
    table["seq"] = anchor["seq"].to_numpy()
    table["len"] = anchor["len"].to_numpy()
    for point in (*CHECKPOINTS, "write"):  # those not measured: NaN, from fixed_schema
        if point in checkpoints:
            table[checkpoint_column(point)] = attribute.to_seconds(checkpoints[point])
    _exact_times(table, anchor, checkpoints,
                 "dom0" if dom0_point is not None else anchor_name)
    shown_intervals = (attribute.intervals(present, "rx")
                       + attribute.intervals(present, "tx"))
    notes.extend(attribute.merge_notes(shown_intervals,
                                       unusable=set(sources.present) - present))
    for iv in shown_intervals:  # a stage's column holds both directions, each on its rows
        values = attribute.durations_us(checkpoints.get(iv.start, np.full(n, NA_NS)),
                                        checkpoints.get(iv.end, np.full(n, NA_NS)))
        column = table[iv.column].to_numpy(float).copy() if iv.column in table.columns \
            else np.full(n, np.nan)
        mine = direction == iv.direction
        column[mine] = values[mine]
        table[iv.column] = column
    for stage in ALL_STAGES:
        if f"{stage}_us" not in table.columns:
            table[f"{stage}_us"] = np.nan
    # total: first → last measured boundary of the path
    path_points = [p for p in ("irq", "dom0_run", "phys", "backend", "copy", "guest", "read",
                               "write") if p in checkpoints]
    if path_points:
        # in int64 ns: epoch ns as float64 would round to 256 ns
        stack = np.vstack([checkpoints[p] for p in path_points])
        have = stack != NA_NS
        last = stack.max(axis=0)  # NA_NS is the smallest int64: never the max of a measured row
        first = np.where(have, stack, np.iinfo(np.int64).max).min(axis=0)
        ok = have.sum(axis=0) >= 2
        total = np.full(n, np.nan)
        total[ok] = (last[ok] - first[ok]) / 1e3
        table["total_us"] = total
    else:
        table["total_us"] = np.nan

    # --- uncertainty, causes, anomalies -------------------------------------------------------
    unc = np.zeros(n)
    clocks_in_row = {}
    for point, t in checkpoints.items():
        clock = attribute.CLOCK_OF.get(point, "dom0")
        clocks_in_row.setdefault(clock, np.zeros(n, dtype=bool))
        clocks_in_row[clock] |= t != NA_NS
    crossing = sum(v.astype(int) for v in clocks_in_row.values()) >= 2 if clocks_in_row \
        else np.zeros(n, dtype=bool)
    for clock, seen in clocks_in_row.items():
        if clock != "dom0":
            unc = np.where(crossing & seen, np.maximum(unc, uncertainty[clock]), unc)
    if calls_unc_us:  # a socket log on a clock of its own, aligned on the guest capture's
        sock = np.zeros(n, dtype=bool)
        for point in ("read", "write"):
            if point in checkpoints:
                sock |= checkpoints[point] != NA_NS
        unc = np.where(sock, np.maximum(unc, calls_unc_us), unc)
    # a bound, to 0.1 µs (rounded up: never tighter than the clocks allow)
    table["uncertainty_us"] = np.ceil(np.round(unc * 10, 6)) / 10
    notes.extend(_guard_intervals(table, shown_intervals, direction))

    progress.phase("finding anomalies and their causes")
    label = np.full(n, "", dtype=object)
    baselines: dict[str, Any] = {}  # keyed as statistics are: "ring", "tx.ring"
    for way in ("rx", "tx"):
        sel = direction == way
        shown = [iv for iv in shown_intervals if iv.direction == way]
        if not sel.any() or not shown:
            continue
        lab, base = anomalies.detect({iv.name: table[iv.column].to_numpy(float)[sel]
                                      for iv in shown}, options.thresholds)
        label[sel] = lab
        for k, b in base.items():
            baselines[stat_key(k, way)] = {
                **b.to_dict(), "direction": way,
                "uncertainty_us": _interval_uncertainty(k, shown, uncertainty)}
    if "total" in options.thresholds:
        over = (table["total_us"].to_numpy(float) > options.thresholds["total"]) & (label == "")
        label[over] = "total"
    label = _shared_stalls(label, shown_intervals, checkpoints, baselines, direction)
    if trace_causes is not None:
        missing = np.full(n, NA_NS, dtype=np.int64)
        spans = {(iv.direction, iv.name): (checkpoints.get(iv.start, missing),
                                           checkpoints.get(iv.end, missing),
                                           causes.owner_of(iv.direction, iv.name, iv.merged))
                 for iv in shown_intervals}
        cause, cause_detail = causes.stage_causes(trace_causes, label, direction, spans)
    stall_value = np.full(n, np.nan)
    for name in set(label.tolist()) - {""}:
        col = f"{name}_us"
        if col not in table.columns:
            continue
        for way in ("rx", "tx"):
            pick = (label == name) & (direction == way)
            base = baselines.get(stat_key(name, way), {}).get("median_us", 0.0)
            stall_value[pick] = table[col].to_numpy(float)[pick] - np.nan_to_num(base)
    table["anomaly"] = _text(label)
    table["stall"] = _text(np.where(label != "", anomalies.name_stall(stall_value), ""))
    table["cause"] = _text(cause)
    table["cause_detail"] = _text(cause_detail)
    table["retransmitted"] = retrans

    # --- the lone view ------------------------------------------------------------------------
    flows = lone.exchanges(placed[anchor_name], fresh, facts)
    capture_clock = "guest" if anchor_name == "guest" else "dom0"
    if capture_clock == "guest" and guest_fit is not None and len(flows):
        for col in ("t_request", "t_request_end", "t_response", "t_response_end", "t_next"):
            v = flows[col].to_numpy(float)
            ok = np.isfinite(v)
            out = np.full(v.shape, np.nan)
            out[ok] = guest_fit.to_ref(np.rint(v[ok] * 1e9).astype(np.int64)) / 1e9
            flows[col] = out
    # always on the table: a second source must not hide what the capture alone shows (a
    # stage anomaly on the same row says more and is kept)
    if len(flows):
        _lone_rows(table, flows, fresh, _inside_exchange(shown_intervals, anchor_name))
    only_one = n_captures == 1 and trace is None
    if only_one and len(flows):
        notes.extend(lone.notes(flows))
    elif len(flows) and (flows["anomaly"] != "").any():
        notes.extend(lone.notes(flows[flows["anomaly"] != ""], limit=3)[-3:])

    progress.report(final=True)
    return Analysis(table=fixed_schema(table), sources=sources, alignment=alignment, notes=notes,
                    flows=flows.drop(columns=["response_last"]) if len(flows) else flows,
                    baselines=baselines)


def _exact_times(table: pd.DataFrame, anchor: pd.DataFrame,
                 checkpoints: dict[str, np.ndarray], clock: str) -> None:
    """Where each row can be found and when, exactly: the anchor capture's frame number of
    the segment's first frame, each checkpoint as int64 epoch ns (``t_<checkpoint>_ns``,
    beside the float seconds, which round to 240 ns) and the clock they are on, in
    ``table.attrs["clock"]``: dom0's when a dom0 capture is given, else the guest capture's."""
    table["frame"] = anchor["frame"].to_numpy(np.int64)
    for point, t_ns in checkpoints.items():
        if point in TABLE_CHECKPOINTS:
            table[checkpoint_ns_column(point)] = pd.arrays.IntegerArray(
                t_ns.astype(np.int64), t_ns == NA_NS)
    table.attrs["clock"] = clock


def dom0_frames(packets: dict[str, pd.DataFrame], local: set[str]
                ) -> trace_attribute.Dom0Frames | None:
    """dom0 capture times of every frame to and from the guest (``local`` addresses)."""
    point = "phys" if "phys" in packets else ("backend" if "backend" in packets else None)
    if point is None:
        return None
    copied = "backend" if "backend" in packets else point

    def times(name: str, column: str) -> np.ndarray:
        frame = packets[name]
        if column not in frame.columns or len(frame) == 0:
            return np.zeros(0, dtype=np.int64)
        ts = frame["ts_ns"]
        keep = frame[column].isin(list(local)).to_numpy() & ts.notna().to_numpy()
        return np.sort(ts[keep].to_numpy(np.int64))

    return trace_attribute.Dom0Frames(arrivals=times(point, "dst"),
                                      to_guest=times(copied, "dst"),
                                      from_guest=times(copied, "src"), point=point)


def fixed_schema(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every column of ``model.TABLE_COLUMNS``, in that order, whatever the
    sources (NaN where not measured, empty text, not retransmitted)."""
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]  # never drop data
    out = table.reindex(columns=[*TABLE_COLUMNS, *extra])
    n = len(out)
    for column in ("anomaly", "stall", "cause", "cause_detail"):
        if column not in table.columns:
            out[column] = _text(np.full(n, "", dtype=object))
    if "retransmitted" not in table.columns:
        out["retransmitted"] = np.zeros(n, dtype=bool)
    for column in ("frame", *(checkpoint_ns_column(c) for c in TABLE_CHECKPOINTS)):
        if column not in table.columns:  # integers, absent: not float NaN
            out[column] = pd.array([pd.NA] * n, dtype="Int64")
    out.attrs = dict(table.attrs)
    return out


def _text(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A text column of the table (pandas' ``str``), made straight from Python strings: the
    same as ``values.astype(str)`` but without a fixed-width copy of every row (10x faster)."""
    return pd.array(np.asarray(values, dtype=object), dtype="str")


def _check_direction(anchor: pd.DataFrame, t_guest: np.ndarray, t_dom0: np.ndarray,
                     local: set[str]) -> set[str] | None:
    """The other addresses, when the timing says the guest is not where ``local`` put it.

    Whatever the clock offset, data towards the guest is seen in dom0 before the guest, and
    data from it the other way round: ``t_guest - t_dom0`` is larger received than sent.
    """
    both = (t_guest != NA_NS) & (t_dom0 != NA_NS)
    rx = (anchor["direction"] == "rx").to_numpy()
    if not (both & rx).any() or not (both & ~rx).any():
        return None
    delay = (t_guest - t_dom0).astype(np.float64)
    if np.median(delay[both & rx]) >= np.median(delay[both & ~rx]):
        return None
    others = set(anchor["src"].astype(str).unique()) | set(anchor["dst"].astype(str).unique())
    return others - local


def _socket_log_on_guest_clock(t_sock: np.ndarray, t_guest: np.ndarray, rx: np.ndarray,
                               notes: list[str], alignment: dict[str, Any]
                               ) -> tuple[np.ndarray, float] | None:
    """The socket log's times checked against the guest capture (reads follow their segments,
    writes precede theirs): as they are, aligned when the log's clock is simply another one
    (a constant offset, with its uncertainty in µs), or None when no line fits (not this
    capture's log)."""
    from .clock import fit_offset_drift

    both = (t_sock != NA_NS) & (t_guest != NA_NS)
    f, b = both & rx, both & ~rx
    early = (f & (t_sock < t_guest - SOCKET_SLACK_NS)) | (b & (t_sock > t_guest + SOCKET_SLACK_NS))
    if not early.any():
        return t_sock, 0.0
    bad = (f"{int((early & rx).sum())} of {int(f.sum())} reads return before the guest "
           f"capture saw their bytes and {int((early & ~rx).sum())} of {int(b.sum())} writes "
           "start after it")
    fit = fit_offset_drift(t_guest[f], t_sock[f], t_sock[b], t_guest[b],
                           names=("guest capture", "socket log"))
    alignment["socket log->guest"] = {**fit.to_dict(), "from": "guest ↔ socket log"}
    if fit.quality == "bounded":
        out = t_sock.copy()
        ok = out != NA_NS
        out[ok] = fit.to_ref(out[ok])
        notes.append(f"socket log: {bad}: it was timed by another clock, "
                     f"{fit.offset_ns / 1e6:+.3f} ms off the guest capture's; aligned on it "
                     f"({fit.detail}).")
        return out, fit.uncertainty_ns / 1e3
    notes.append(f"socket log left out: {bad}, and no clock offset puts them in order "
                 f"({fit.quality}): the log does not belong to this capture.")
    return None


def _dom0_captures_swapped(rx: np.ndarray, t_phys: np.ndarray, t_backend: np.ndarray
                           ) -> bool:
    """True when most frames pass the two dom0 capture points in the wrong order (received:
    physical NIC, then backend; sent: backend, then physical NIC)."""
    both = (t_phys != NA_NS) & (t_backend != NA_NS)
    if both.sum() < anomalies.MIN_SAMPLES:
        return False
    ahead = np.where(rx, t_backend - t_phys, t_phys - t_backend)[both]
    return bool((ahead < 0).mean() > 0.5)


def _shared_stalls(label: np.ndarray, shown: list[attribute.Interval],
                   checkpoints: dict[str, np.ndarray], baselines: dict[str, Any],
                   direction: np.ndarray) -> np.ndarray:
    """Label the packets that waited inside another packet's stall of the same stage."""
    label = label.copy()
    for iv in shown:
        if iv.start not in checkpoints or iv.end not in checkpoints:
            continue
        sel = direction == iv.direction
        flagged = (label == iv.name) & sel
        if not flagged.any():
            continue
        a, b = checkpoints[iv.start], checkpoints[iv.end]
        ok = (a != NA_NS) & (b != NA_NS) & sel
        values = attribute.durations_us(a, b)
        base = baselines.get(stat_key(iv.name, iv.direction), {})
        hit = anomalies.shared_stalls(np.where(ok, a, -1), np.where(ok, b, -1),
                                      flagged & ok, values,
                                      float(np.nan_to_num(base.get("median_us", 0.0))),
                                      anomalies.SHARED_MARGIN_US)
        label[hit & (label == "") & ok] = iv.name
    return label


def _guard_intervals(table: pd.DataFrame, shown: list[attribute.Interval],
                     direction: np.ndarray) -> list[str]:
    """Empty every interval value below −(its row's uncertainty + timestamp resolution): an
    impossible value is never printed. One note per interval that had any."""
    notes = []
    unc = table["uncertainty_us"].to_numpy(float)
    for iv in shown:
        values = table[iv.column].to_numpy(float).copy()
        bad = path_order.guard_intervals(values, unc) & (direction == iv.direction)
        if bad.any():
            values[bad] = np.nan
            table[iv.column] = values
            kind = "received" if iv.direction == "rx" else "sent"
            notes.append(f"{int(bad.sum())} {kind} segments: {iv.name} left empty: its "
                         f"checkpoints ({iv.start} → {iv.end}) are out of order beyond the "
                         "clocks' uncertainty (a capture or alignment problem).")
    return notes


def _interval_uncertainty(name: str, shown: list[attribute.Interval],
                          uncertainty: dict[str, float]) -> float:
    for iv in shown:
        if iv.name == name:
            a = attribute.CLOCK_OF.get(iv.start, "dom0")
            b = attribute.CLOCK_OF.get(iv.end, "dom0")
            if a == b:
                return 0.0
            return max(uncertainty.get(a, 0.0) if a != "dom0" else 0.0,
                       uncertainty.get(b, 0.0) if b != "dom0" else 0.0)
    return 0.0


def _lone_rows(table: pd.DataFrame, flows: pd.DataFrame, fresh: np.ndarray,
               inside: set[tuple[str, str]]) -> None:
    """Put the lone view's intervals on the table's rows (:func:`lone.put_on_table`); a
    request → response that a stage anomaly of its own segments inside it explains (the
    request held on its way out, the response on its way in) stays on that stage."""
    lone.put_on_table(table, flows, fresh,
                      explained=lone.explained_by(table, flows, fresh, inside))


def _inside_exchange(shown: list[attribute.Interval], anchor: str) -> set[tuple[str, str]]:
    """The (direction, interval) pairs that lie between the capture point ``anchor`` seeing a
    request leave and seeing its response arrive: on transmit the intervals after it, on
    receive those before it."""
    out = set()
    for iv in shown:
        order = path_order.ORDER[iv.direction]
        if anchor not in order or iv.start not in order or iv.end not in order:
            continue
        if (iv.direction == "tx" and order.index(iv.start) >= order.index(anchor)) or \
                (iv.direction == "rx" and order.index(iv.end) <= order.index(anchor)):
            out.add((iv.direction, iv.name))
    return out


def _time_of_day_shift(path: Path | None, t_sock: np.ndarray, ref_ns: np.ndarray | None,
                       rx: np.ndarray, notes: list[str]) -> int:
    """The shift (ns) that puts a ``-tt`` log's times of day on the capture's dates."""
    from .clock import anchor_time_of_day

    rerun = "rerun strace with -ttt (epoch times) to place them"
    if ref_ns is None:
        raise InputError(path, "the socket log has times of day only and there is no capture "
                         f"to take the date from: {rerun}")
    both = rx & (t_sock != NA_NS) & (ref_ns != NA_NS)
    placed = anchor_time_of_day(t_sock[both], ref_ns[both])
    if placed is None:
        raise InputError(path, "the socket log has times of day only and its reads do not "
                         "place it on the capture's date unambiguously "
                         f"({int(both.sum())} reads matched): {rerun}")
    notes.append(f"socket log has times of day only: {placed.detail}.")
    return placed.shift_ns


def _no_capture(sources: Sources, calls: pd.DataFrame | None, trace: Any,
                notes: list[str]) -> Analysis:
    """No capture at all: the socket log's calls (and the trace's summary) are all there is."""
    columns = [*match.FLOW_COLUMNS, "direction", "seq", "len", "total_us", "anomaly", "cause",
               "uncertainty_us"]
    notes.append("no packet capture given: nothing to match; give the guest capture (and "
                 "dom0's) to split latencies into stages.")
    if calls is not None and calls.attrs.get("time_of_day_only"):
        raise InputError(sources.socket_log, "the socket log has times of day only and there "
                         "is no capture to take the date from: rerun strace with -ttt (epoch "
                         "times)")
    if calls is not None:
        data = calls[calls["direction"].notna()]
        notes.append(f"socket log: {len(data)} reads and writes on "
                     f"{data['stream'].nunique() if 'stream' in data else data['fd'].nunique()}"
                     " sockets.")
    if trace is not None:
        notes.append(f"xentrace: {trace.records} records on {trace.cpus} CPUs.")
    return Analysis(table=fixed_schema(pd.DataFrame({c: [] for c in columns})),
                    sources=sources, notes=notes)
