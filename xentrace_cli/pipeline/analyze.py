"""The pipeline of ``xenlat analyze``: sources → matched, aligned, attributed table → Analysis.

:func:`analyze` reads whatever sources are given (any of the guest capture, the backend and
physical-NIC captures in dom0, a xentrace file, the guest application's socket log) and runs
these steps, each a function below over one typed state (:class:`_Run`):

1. :func:`read_sources` — every source read (the trace and the socket log in worker
   threads), each capture's data segments;
2. :func:`match_captures` — the same segments across capture points (:mod:`.match`);
3. :func:`orient` — which side is the guest, which dom0 capture is which, by the timing;
4. :func:`align_clocks` — the guest capture's clock on dom0's (:mod:`.align`: matched
   segments are what the clocks are fitted on, so alignment follows matching);
5. :func:`place_socket_log` — each row's read or write call, its clock checked (:mod:`.align`);
6. :func:`follow_trace` — the trace's clock and each packet's path through it
   (:mod:`.trace_attribute`);
7. :func:`order_paths` — checkpoints kept in path order (:mod:`.path_order`);
8. :func:`build_table` — stages or merged intervals (:mod:`.attribute`), total, uncertainty;
9. :func:`judge_anomalies` — anomalies (:mod:`.anomalies`) and causes (:mod:`.causes`);
10. :func:`lone_view` — the capture's exchanges (:mod:`.lone`), on the table's rows.

Steps 2–5 need no trace: they run while the trace (the largest source, usually read last)
is still being read (:func:`without_trace`, :func:`read_sources`' ``meanwhile``), so that
only steps 6–10 follow its end; their warnings come out after the trace's, their errors
after its error, as if they ran after it. The lone view's exchanges (step 10) are not among
them: their temporaries (~0.4 GB on a million segments) would add to the trace reader's
peak, which comes as it ends. They need no trace either, so they run in a worker thread
(:func:`exchanges_aside`): started once steps 2–5 are done if the trace is still being read
(this thread would only wait for it; the peak stayed at 1.33-1.35 GB on the realistic set),
else as soon as step 3 has set each segment's direction, beside steps 4–9; their warnings
shown, their error raised, where step 10 comes.

:func:`analyze_files` is the same for Python callers.

Example::

    from xentrace_cli.pipeline.analyze import analyze_files
    result = analyze_files(guest="guest.pcapng", backend="vif5.0.pcap",
                           xentrace="xentrace.bin", socket_log="app.strace")
    slow = result.table[result.table["anomaly"] != ""]
    print(slow[["seq", "total_us", "anomaly", "cause"]])
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..allocator import give_back_memory
from ..background import Background
from ..errors import (
    InputError,
    OptionError,
    XenlatWarning,
    carried,
    deferred_warnings,
    hold_warnings,
    warn,
)
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

# the readers by module (benchmarks/analyze.py --phases times each by wrapping it there)
from ..sources import packets as capture_reader
from ..sources import socket_log
from ..sources import xentrace as trace_reader
from ..sources.xentrace import XenTrace
from ..units import parse_duration_us
from . import align, anomalies, attribute, causes, lone, match, path_order, trace_attribute
from .attribute import NA_NS
from .result import Analysis, text_at, text_of_codes
from .select import Selection, select

ProgressCallback = Callable[[int, int], None]
IntArray = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

#: Names a ``--threshold`` may use besides the stages.
_INTERVAL_NAME = re.compile(r"^[a-z0-9_]+_to_[a-z0-9_]+$")
#: Backend interface names: ``vif<domid>.<n>`` (file name or pcapng ``if_name``).
_VIF = re.compile(r"vif(\d+)\.(\d+)")
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
    # -Y picks what is reported, after the analysis
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
        self.reader: concurrent.futures.Future[Any] | None = None
        """A reader still running (the trace's): steps are not named while it moves the bar."""

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
        if self.reader is not None and not self.reader.done():
            return  # the bar still shows the reading, which is what takes the time
        if show is not None:
            show(name)

    def report(self, final: bool = False) -> None:
        if self.callback is not None:
            self.callback(self.total if final else min(sum(self.done.values()),
                                                       self.total - 1), self.total)


def _no_bool() -> BoolArray:
    return np.zeros(0, dtype=bool)


class _Ways(dict[str, BoolArray]):
    """Per direction (``rx``, ``tx``), the rows of that direction: the anchor's categorical
    ``direction`` column compared once per direction (its codes: under 1 ms on 600,000 rows;
    the same column as Python strings takes 17-40 ms), not once per interval of each step."""

    def __init__(self, direction: pd.Series | np.ndarray) -> None:
        super().__init__()
        self.direction = direction

    def __missing__(self, way: str) -> BoolArray:
        rows = np.asarray(self.direction == way, dtype=bool)
        self[way] = rows
        return rows


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


@dataclasses.dataclass
class _Run:
    """The state :func:`analyze`'s steps hand on, filled in the order they run."""

    sources: Sources
    options: AnalyzeOptions
    progress: _Progress
    present: set[str]
    """The sources still in use (one that cannot be placed on dom0's clock is dropped)."""
    notes: list[str] = dataclasses.field(default_factory=list)
    alignment: dict[str, Any] = dataclasses.field(default_factory=dict)
    # read_sources
    packets: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    """Per capture read, what is kept of its packets: dom0's frame addresses and times (for
    the trace), an empty table for the guest's (:func:`_read_capture`)."""
    segments: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    """Each capture's data segments, and its SYNs under ``NAME:syn``."""
    facts: lone.FrameFacts | None = None
    """The lone view's per-frame facts (payload heads, TCP windows)."""
    calls: pd.DataFrame | None = None
    trace: XenTrace | None = None
    anchor_name: str | None = None
    """The capture whose segments are the table's rows: the guest's, else dom0's."""
    n_captures: int = 0
    # match_captures
    domid: int | None = None
    local: set[str] = dataclasses.field(default_factory=set)
    """The guest's addresses."""
    remote: set[str] = dataclasses.field(default_factory=set)
    """The peers the socket log names."""
    syns: pd.DataFrame | None = None
    anchor_all: pd.DataFrame | None = None
    """Every data segment of the anchor capture, retransmissions included."""
    fresh: BoolArray = dataclasses.field(default_factory=_no_bool)
    """Which of ``anchor_all`` are first transmissions: the table's rows."""
    anchor: pd.DataFrame | None = None
    own: dict[str, IntArray] = dataclasses.field(default_factory=dict)
    """Per capture point, each row's time on that capture's own clock (``NA_NS``: not seen)."""
    retrans: BoolArray = dataclasses.field(default_factory=_no_bool)
    dom0_point: str | None = None
    # align_clocks
    rx: BoolArray = dataclasses.field(default_factory=_no_bool)
    ways: _Ways = dataclasses.field(default_factory=lambda: _Ways(_no_bool()))
    """Per direction, its rows (:class:`_Ways`)."""
    guest_clock: align.GuestClock = align.NO_GUEST_CLOCK
    uncertainty: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"dom0": 0.0, "guest": 0.0, "tsc": 0.0})
    """Per clock, µs: how far its times on dom0's clock may be off."""
    checkpoints: dict[str, IntArray] = dataclasses.field(default_factory=dict)
    """Per checkpoint, each row's time on dom0's clock (``NA_NS``: not measured)."""
    socket_uncertainty_us: float = 0.0
    """A socket log on a clock of its own: its alignment on the guest capture's."""
    trace_ready: trace_attribute.TraceReady | Exception | None = None
    """What the path's steps need of the trace alone, made in the trace reader's worker as
    soon as it is read (:func:`_ready_trace`; its error; None: not made, without a capture,
    where :func:`follow_trace` is not reached)."""
    trace_causes: trace_attribute.TraceAttribution | None = None
    occupants: Callable[[], pd.DataFrame] | None = None
    """The trace's CPU occupants: made, or being made beside the path's steps
    (:func:`follow_trace`)."""
    exchanges: _Exchanges | None = None
    """The lone view's exchanges, started while the trace was still read (:func:`without_trace`)."""
    # build_table
    table: pd.DataFrame | None = None
    intervals: list[attribute.Interval] = dataclasses.field(default_factory=list)
    baselines: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        """The table's rows."""
        return 0 if self.anchor is None else len(self.anchor)


def analyze(sources: Sources, options: AnalyzeOptions,
            on_progress: ProgressCallback | None = None) -> Analysis:
    """Run the whole pipeline on ``sources``: each step below fills the state the next reads
    (see the module docstring). Without a warnings sink (:func:`.errors.warnings_to`), the
    warnings go out when it returns (:func:`.errors.deferred_warnings`)."""
    with deferred_warnings():
        return _analyze(sources, options, on_progress)


def _analyze(sources: Sources, options: AnalyzeOptions,
             on_progress: ProgressCallback | None) -> Analysis:
    run = _Run(sources, options, _Progress(sources, on_progress), set(sources.present))
    for names in sources.shared_files():  # badinput (issue 10): one warning, nothing else
        warn(XenlatWarning(
            f"{getattr(sources, names[0])}: the same file is given as {' and '.join(names)}: "
            "the intervals between them would read as zero"), stacklevel=2)
    try:
        read_sources(run, meanwhile=without_trace)
        if run.anchor_name is None:
            return _no_capture(sources, run.calls, run.trace, run.notes)
        aside = run.exchanges = run.exchanges or exchanges_aside(run)
        follow_trace(run)
        order_paths(run)
        build_table(run)
        judge_anomalies(run)
        run.trace = run.trace_causes = None  # nothing after needs the trace: let it go
        give_back_memory()
        flows = lone_view(run, aside)
    finally:
        _settle(run)
    run.progress.report(final=True)
    return Analysis(table=fixed_schema(run.table), sources=sources, alignment=run.alignment,
                    notes=run.notes,
                    flows=flows.drop(columns=["response_last"]) if len(flows) else flows,
                    baselines=run.baselines)


def without_trace(run: _Run) -> None:
    """The steps that need no trace (2–5), run while it is read: :func:`read_sources`'
    ``meanwhile``."""
    if run.anchor_name is None:
        return
    match_captures(run)
    orient(run)
    reader = run.progress.reader
    if reader is None or reader.done():  # the other core is free: the exchanges go there now
        run.exchanges = exchanges_aside(run)
    align_clocks(run)
    place_socket_log(run)
    give_back_memory()  # the steps' temporaries, before the trace reader's own peak
    if run.exchanges is None:  # this thread would only wait for the trace
        run.exchanges = exchanges_aside(run)


def read_sources(run: _Run, meanwhile: Callable[[_Run], None] | None = None) -> None:
    """Read every source: the trace (the largest) and the socket log in worker threads while
    the captures are read (the readers spend their time in numpy and Arrow, which let the
    other threads run), then each capture's data segments; then ``meanwhile`` on this thread
    while the trace may still be read (:func:`_beside_trace`)."""
    sources, progress = run.sources, run.progress
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    trace_job = None
    trace_path = sources.xentrace
    if trace_path is not None:
        def read_trace() -> XenTrace:
            trace = trace_reader.read_xentrace(trace_path, on_progress=progress.part("xentrace"),
                                  events=trace_attribute.TRACE_EVENTS,
                                  columns=trace_attribute.TRACE_COLUMNS,
                                  idle_runstates=False)  # no step asks about the idle vCPUs
            give_back_memory()
            if any(getattr(sources, name) is not None for name in CAPTURES):
                run.trace_ready = _ready_trace(trace, sources)
            return trace

        trace_job = pool.submit(carried(read_trace))
    socket_job = _read_socket_log_aside(pool, sources.socket_log, progress)
    try:
        lone_name = next((n for n in CAPTURES if getattr(sources, n) is not None), None)
        for name in CAPTURES[::-1]:
            path = getattr(sources, name)
            if path is not None:  # the lone view's capture: payload heads and TCP windows
                _read_capture(run, name, path, name == lone_name)
        run.calls = _socket_log_result(socket_job)
        run.anchor_name = next((n for n in CAPTURES if n in run.packets), None)
        run.n_captures = len(run.packets)
        if meanwhile is not None:
            _beside_trace(run, meanwhile, trace_job)
        run.trace = trace_job.result() if trace_job is not None else None
    finally:
        for job in (trace_job, socket_job):
            if job is not None:
                job.cancel()
        pool.shutdown(wait=True)
        run.progress.reader = None


def _beside_trace(run: _Run, steps: Callable[[_Run], None],
                  trace_job: concurrent.futures.Future[XenTrace] | None) -> None:
    """``steps`` while the trace is read, as if run after it: their warnings held until the
    trace is in (its own were shown as it was read), the trace's error raised before theirs,
    and no step named on the progress bar while the trace's reading still moves it."""
    run.progress.reader = trace_job
    with hold_warnings() as held:
        try:
            steps(run)
        except BaseException:
            if trace_job is not None:
                trace_job.result()  # a bad trace is reported first, as a serial run would
            raise
    if trace_job is not None:
        trace_job.result()
    for warning in held:
        warn(warning, stacklevel=4)


def _read_capture(run: _Run, name: str, path: Path, lone_view: bool) -> None:
    """One capture read, its data segments and SYNs taken (and the lone view's frame facts,
    on ``lone_view``'s capture), then the packet table cut to what is still needed: dom0's
    frame addresses and times (the trace's interrupts and copies), nothing of the guest's.
    Done capture by capture, while the trace may still be read: the full tables never sit
    in memory together, nor beside the trace reader's peak. The table is the reader's
    arrays (no DataFrame per batch, concatenated); only the lone view's analysis of TCP takes
    it as a DataFrame."""
    columns = capture_reader.read_packet_columns(
        path, on_progress=run.progress.part(name),
        only=_CAPTURE_COLUMNS + (("tcp_ack",) if lone_view else ()),
        **(lone.READ_OPTIONS if lone_view else {}))
    if lone_view:
        run.facts = lone.frame_facts(columns)
    run.segments[name] = match.data_segments(columns)
    run.segments[f"{name}:syn"] = match.syn_segments(columns)
    table = columns.to_pandas(only=_DOM0_FRAME_COLUMNS) if name in ("phys", "backend") \
        else pd.DataFrame(index=pd.RangeIndex(0))
    table.attrs = dict(columns.attrs)  # the interface names (domid_from_name)
    run.packets[name] = table
    del columns
    give_back_memory()


#: What :func:`dom0_frames` needs of a dom0 capture's packets.
_DOM0_FRAME_COLUMNS = ("src", "dst", "ts_ns")
#: The packet table's columns :func:`_read_capture` reads (match.data_segments and
#: syn_segments, dom0_frames; the lone view's capture adds tcp_ack for its TCP analysis):
#: caplen, wirelen, interface, linktype and frag_offset are never kept
_CAPTURE_COLUMNS = ("frame", "ts_ns", "ip_version", "src", "dst", "proto", "sport", "dport",
                    "ip_id", "tcp_seq", "tcp_flags", "payload_len", "payload_digest")

_Held = tuple[pd.DataFrame | None, list[Warning], Exception | None]
"""A worker's result, the warnings it held and its error (None: it succeeded)."""
_SocketJob = concurrent.futures.Future[_Held]


def _holding(work: Callable[[], pd.DataFrame | None]) -> _Held:
    """Run ``work`` (in a worker thread) with its warnings held and its error kept, for
    :func:`_shown` to give out where a serial run would have."""
    with hold_warnings() as held:
        try:
            return work(), held, None
        except Exception as exc:  # shown after the warnings it followed
            return None, held, exc


def _shown(outcome: _Held) -> pd.DataFrame | None:
    """A :func:`_holding` outcome: its warnings shown now, then its error raised."""
    value, held, error = outcome
    for warning in held:
        warn(warning, stacklevel=5)
    if error is not None:
        raise error
    return value


def _read_socket_log_aside(pool: concurrent.futures.Executor, path: Path | None,
                           progress: _Progress) -> _SocketJob | None:
    """Start reading the socket log in a worker thread, beside the captures (it spends most
    of its time in Arrow's regex and numpy, which let the other threads run). Its warnings are
    held (and an error kept) until :func:`_socket_log_result` takes them, so they come out
    where a serial read would have shown them."""
    if path is None:
        return None

    def job() -> pd.DataFrame:
        calls = socket_log.read_socket_log(path, on_progress=progress.part("socket_log"),
                                           data=False)
        give_back_memory()
        return calls

    return pool.submit(carried(_holding), job)


def _socket_log_result(job: _SocketJob | None) -> pd.DataFrame | None:
    """The socket call table of :func:`_read_socket_log_aside`, its warnings shown now."""
    return None if job is None else _shown(job.result())


def _guest_domid(run: _Run) -> int | None:
    """The guest's domain id: as given (warning when the backend's name says another), else
    from the backend's interface name ``vifD.N``."""
    named = domid_from_name(run.sources.backend, run.packets.get("backend"))
    domid = run.options.domid
    if domid is None:
        return named
    if named is not None and named != domid:
        warn(XenlatWarning(
            f"--domid {domid} contradicts the backend capture's interface name (vif{named}.N "
            f"serves domain {named}); using {domid} as given"), stacklevel=3)
    return domid


def match_captures(run: _Run) -> None:
    """The same segments across capture points: flows placed on the guest's addresses, the
    anchor capture's first transmissions as rows, each other capture's time per row."""
    run.domid = _guest_domid(run)
    # of the raw captures only dom0's arrival times are still needed (the trace's interrupts
    # and copies, :func:`_read_capture` kept no more)
    run.packets = {k: v for k, v in run.packets.items() if k in ("phys", "backend")}
    if run.calls is not None and "peer" in run.calls.columns:
        # the distinct peers made text, not every call's (a million calls: 0.3 s)
        peers = run.calls["peer"].dropna().unique().astype(str)
        run.remote = {p.rsplit(":", 1)[0].strip("[]") for p in peers}
    run.progress.phase("matching packets across captures")
    anchor_name = run.anchor_name
    assert anchor_name is not None
    run.local = match.local_addresses(run.segments[anchor_name], run.remote)
    placed = match.assign_flows(run.segments, run.local)
    run.segments = {}  # placed holds what is needed of them: the rest may go (memory)
    give_back_memory()  # before the other captures are matched in worker threads (their own heaps)
    run.syns = pd.concat([placed[k] for k in placed if k.endswith(":syn")], ignore_index=True)
    run.anchor_all = placed[anchor_name]
    run.fresh = match.first_transmissions(run.anchor_all)
    # every segment a first transmission (the usual case): the rows as they are, their
    # columns shared (copy-on-write), not copied
    fresh = run.anchor_all if run.fresh.all() else run.anchor_all[run.fresh]
    run.anchor = anchor = fresh.reset_index(drop=True)
    if (~run.fresh).any():
        run.notes.append(f"{int((~run.fresh).sum())} retransmitted segments in the "
                         f"{anchor_name} capture are left out of the table (each byte counts "
                         "once, at its first transmission).")
    n = run.n
    if n == 0:
        run.notes.append(f"the {anchor_name} capture holds no TCP or UDP data: nothing to "
                         "split into stages.")
    run.own = {anchor_name: anchor["ts_ns"].to_numpy(np.int64)}
    run.retrans = np.zeros(n, dtype=bool)
    others = [name for name in CAPTURES if name != anchor_name and name in placed]
    # each other capture matched on its own: all but the first in worker threads (numpy lets
    # go of the GIL in the searches and sorts: the other core does one while this thread
    # does the other), taken in the same order as one after the other
    matched: dict[str, Background[match.Match]] = {
        name: Background(functools.partial(match.match_segments, anchor, placed[name]))
        for name in others[1:]}
    for name in others:
        m = matched[name].result() if name in matched else match.match_segments(
            anchor, placed[name])
        run.own[name] = np.where(m.found, m.ts_ns, NA_NS)
        run.retrans |= m.retransmitted
        missing = int((~m.found).sum())
        if missing:
            run.notes.append(f"{missing} of {n} segments of the {anchor_name} capture were "
                             f"not found in the {name} capture (their {name} time is left "
                             "empty).")
    run.dom0_point = "backend" if "backend" in run.own else (
        "phys" if "phys" in run.own else None)


def orient(run: _Run) -> None:
    """Which side is the guest (data towards it reaches dom0 first, data from it the guest),
    and which dom0 capture is which: the timing says, and wins over the names given."""
    own, dom0_point, anchor = run.own, run.dom0_point, run.anchor
    assert anchor is not None and run.anchor_all is not None
    if "guest" in own and dom0_point is not None and run.n:
        flipped = _check_direction(anchor, own["guest"], own[dom0_point], run.local)
        if flipped is not None and run.remote:
            # the socket log names the peers: the addresses are right, the timing is not
            warn(XenlatWarning(
                f"the guest capture and the {dom0_point} capture look swapped: data from "
                f"{', '.join(sorted(run.remote))} reaches the guest capture before dom0's; "
                f"check which file is the guest's (the positional CAPTURE) and which "
                f"--{dom0_point}"), stacklevel=3)
        elif flipped is not None and len(flipped) != 1:
            warn(XenlatWarning(
                f"the guest capture and the {dom0_point} capture look swapped: data towards "
                f"{', '.join(sorted(run.local))} reaches the guest capture before dom0's (or "
                "the guest is another address: give --socket-log to name it); the split is "
                "wrong"), stacklevel=3)
        elif flipped is not None:
            warn(XenlatWarning(
                f"taking {', '.join(sorted(flipped))} as the guest, not "
                f"{', '.join(sorted(run.local))}: data towards it reaches dom0 first. If the "
                f"guest capture and the {dom0_point} capture were swapped instead, the split "
                "is wrong"), stacklevel=3)
            run.local = flipped
            for table in (run.anchor_all, anchor):
                table["direction"] = match.directions(table, run.local)
    if "phys" in own and "backend" in own and run.n \
            and _dom0_captures_swapped((anchor["direction"] == "rx").to_numpy(), own["phys"],
                                       own["backend"]):
        warn(XenlatWarning(
            "the --phys and --backend captures look swapped: most frames reach the backend "
            "capture before the physical NIC's going to the guest (and after it going out); "
            "they are used the other way round"), stacklevel=3)
        run.notes.append("--phys and --backend swapped: the timing says each is the other's "
                         "capture point (see the warning).")
        own["phys"], own["backend"] = own["backend"], own["phys"]
        if "phys" in run.packets and "backend" in run.packets:
            run.packets["phys"], run.packets["backend"] = (run.packets["backend"],
                                                           run.packets["phys"])
    run.ways = _Ways(anchor["direction"])
    run.rx = run.ways["rx"]


def align_clocks(run: _Run) -> None:
    """The guest capture's clock on dom0's (:func:`.align.guest_on_dom0`), and every
    capture's checkpoint on dom0's clock."""
    if "guest" in run.own:
        d = run.own[run.dom0_point] if run.dom0_point is not None else run.own["guest"]
        _use_guest_clock(run, align.guest_on_dom0(run.own["guest"], d, run.rx,
                                                  run.dom0_point))
    for name in CAPTURES:
        if name in run.own:
            run.checkpoints[name] = (run.guest_clock.to_dom0(run.own[name]) if name == "guest"
                                     else run.own[name])


def _use_guest_clock(run: _Run, clock: align.GuestClock) -> None:
    run.guest_clock = clock
    if clock.report is not None:
        run.alignment["guest->dom0"] = clock.report
    if clock.fit is not None or not clock.usable:
        run.uncertainty["guest"] = clock.uncertainty_us
    run.notes.extend(clock.notes)


def place_socket_log(run: _Run) -> None:
    """Each row's read (received) or write (sent) call, on dom0's clock: sockets matched to
    connections, then the log's clock checked against the guest capture's (or, with no
    guest capture, aligned on dom0's through it)."""
    calls, anchor, rx, n = run.calls, run.anchor, run.rx, run.n
    if calls is None:
        return
    assert anchor is not None
    run.progress.phase("placing the socket log's reads and writes")
    offsets = np.where(anchor["proto"].to_numpy() == match.TCP,
                       match.stream_offset(anchor, run.syns), match.datagram_offset(anchor))
    mapping, method = attribute.map_streams(calls, anchor, offsets)
    if method == "bytes":
        run.notes.append("socket log: sockets matched to connections by byte counts (the log "
                         "has no peer addresses).")
    t_sock, _ = attribute.socket_times(calls, anchor, offsets, mapping)
    if calls.attrs.get("time_of_day_only"):
        ref_ns = run.own.get("guest", run.own.get(run.dom0_point or ""))
        shift, note = align.time_of_day_shift(run.sources.socket_log, t_sock, ref_ns, rx)
        run.notes.append(note)
        calls = calls.assign(ts_ns=calls["ts_ns"] + shift, entry_ns=calls["entry_ns"] + shift)
        mapping, method = attribute.map_streams(calls, anchor, offsets)
        t_sock, _ = attribute.socket_times(calls, anchor, offsets, mapping)
    if len(mapping) == 0:
        run.notes.append("socket log: no socket could be matched to a connection of the "
                         "capture; read and write times are left empty.")
    if "guest" in run.own:  # the same clock as the guest capture, or not this capture's log
        placed = align.socket_log_on_guest(t_sock, run.own["guest"], rx)
        if placed.report is not None:
            run.alignment["socket log->guest"] = placed.report
        run.notes.extend(placed.notes)
        if placed.times is None:
            run.present.discard("socket_log")
            t_sock = np.full(n, NA_NS, dtype=np.int64)
        else:
            t_sock, run.socket_uncertainty_us = placed.times, placed.uncertainty_us
    elif run.dom0_point is not None:
        clock = align.guest_from_socket_log(t_sock, run.own[run.dom0_point], rx,
                                            run.dom0_point)
        _use_guest_clock(run, clock)
        if not clock.usable:
            run.present.discard("socket_log")
            t_sock = np.full(n, NA_NS, dtype=np.int64)
    sock_dom0 = run.guest_clock.to_dom0(t_sock)
    run.checkpoints["read"] = np.where(rx, sock_dom0, NA_NS)
    run.checkpoints["write"] = np.where(~rx, sock_dom0, NA_NS)
    run.calls = None  # no longer needed: let it go (memory)


def follow_trace(run: _Run) -> None:
    """The trace's checkpoints of each row (:func:`.trace_attribute.attribute_trace`: its
    clock on dom0's, then each packet's path), and whose run states explain its stages."""
    trace = run.trace
    ready, run.trace_ready = run.trace_ready, None
    if trace is None:
        run.notes.append("no xentrace: causes cannot be named (the trace's vCPU run states are "
                         "the evidence).")
        return
    if isinstance(ready, Exception):
        raise ready
    # made as the trace was read, whenever a capture is given (read_sources); its event and
    # switch tables are gone
    assert ready is not None
    run.progress.phase("following each packet through the trace")
    frames = dom0_frames(run.packets, run.local)
    run.packets = {}
    # the records are for putting the trace on dom0's packet clock: none without a dom0 capture
    wanted = frames is not None and frames.arrivals.size > 0
    records, timelines = (ready.records if wanted else None), ready.timelines
    occupants = ready.cpu_runs  # (unread without records: _settle waits for it)
    result = trace_attribute.attribute_trace(
        trace, checkpoints=run.checkpoints, rx=run.rx, frames=frames, domid=run.domid,
        cpu_hz=run.options.cpu_hz, nic_irq=run.options.nic_irq, records=records,
        timelines=timelines)
    run.checkpoints.update(result.checkpoints)
    run.alignment.update(result.alignment)
    run.notes.extend(result.notes)
    run.uncertainty["tsc"] = result.uncertainty_us
    run.trace_causes, run.occupants = result, occupants
    if result.fit is None:  # not on dom0's timeline: measure as if there were no trace
        run.present.discard("xentrace")
        run.trace_causes = None  # (the occupants' thread is waited for by _settle)


def _ready_trace(trace: XenTrace, sources: Sources) -> trace_attribute.TraceReady | Exception:
    """:func:`.trace_attribute.ready_trace` in the trace reader's worker thread, right after
    the read, while the main thread still reads the captures and matches them: the records
    (with a dom0 capture to line them up with), the CPU occupants and the run-state
    timelines come off the main thread's path, and the event and switch tables go then.
    Only with a capture (without one the trace's own summary reads them). Its error is
    kept, for :func:`follow_trace` to raise where a serial run would have (the tables it
    let go are not read again)."""
    try:
        ready = trace_attribute.ready_trace(
            trace, records=sources.backend is not None or sources.phys is not None)
    except Exception as error:  # raised by follow_trace, in its place
        return error
    give_back_memory()
    return ready


def _settle(run: _Run) -> None:
    """Wait for the worker threads the steps started that no step took: the CPU occupants
    when no cause is named (no fit, no frame to the guest), the exchanges when a step
    raised. None may outlive the analysis: the libraries they call enter the process-wide
    ``warnings.catch_warnings`` (pandas' dtype checks do), and one that leaves it after a
    later caller entered it puts back the filters and ``showwarning`` of before, losing
    that caller's warnings. Their results, and errors, are not wanted any more."""
    occupants, exchanges = run.occupants, run.exchanges
    run.occupants = run.exchanges = None
    if occupants is not None:
        with contextlib.suppress(Exception):
            occupants()
    if exchanges is not None:
        exchanges.wait()


def _take_occupants(run: _Run) -> None:
    """The trace's CPU occupants from :func:`follow_trace`, where the causes read them."""
    if run.occupants is not None and run.trace_causes is not None \
            and run.trace_causes.trace is not None:
        run.trace_causes.trace.cpu_runs = run.occupants()
    run.occupants = None


def order_paths(run: _Run) -> None:
    """Checkpoints along each path keep their order within the clocks' uncertainty
    (:func:`.path_order.enforce_path_order`)."""
    unc = run.uncertainty
    tolerance_ns = {"dom0": 0.0, "guest": unc["guest"] * 1e3, "tsc": unc["tsc"] * 1e3,
                    "socket": (unc["guest"] + run.socket_uncertainty_us) * 1e3}
    run.checkpoints, unresolved = path_order.enforce_path_order(
        run.checkpoints, run.ways, tolerance_ns,
        {**attribute.CLOCK_OF, "read": "socket", "write": "socket"})
    run.notes.extend(unresolved.notes())


def build_table(run: _Run) -> None:
    """The table: each row's flow, checkpoints, stages (or the merged intervals standing in
    for them), total and uncertainty."""
    anchor, checkpoints = run.anchor, run.checkpoints
    assert anchor is not None and run.anchor_name is not None
    run.progress.phase("building the table: stages, totals, uncertainty")
    flow = anchor[list(match.FLOW_COLUMNS)].copy()
    # every other column gathered first and put beside the flow's at once: no DataFrame
    # insertion per column (each copied its array again: half of this step's time)
    direction = anchor["direction"]  # categorical (the usual): text from its codes, not an
    table: dict[str, Any] = {  # array of a Python string per row (70 ms on 700,000 rows)
        "direction": text_of_codes(direction) if isinstance(
            direction.dtype, pd.CategoricalDtype) else direction.to_numpy(copy=True),
        "seq": anchor["seq"].to_numpy(copy=True), "len": anchor["len"].to_numpy(copy=True)}

    def times() -> tuple[dict[str, Any], np.ndarray]:
        """The checkpoints' columns (seconds, then exact ns) and the total: in a worker
        thread beside the intervals (numpy lets go of the GIL), put on the table in the
        same order."""
        out: dict[str, Any] = {}
        for point in (*CHECKPOINTS, "write"):  # those not measured: NaN, from fixed_schema
            if point in checkpoints:
                out[checkpoint_column(point)] = attribute.to_seconds(checkpoints[point])
        out.update(_exact_times(anchor, checkpoints))
        return out, _total_us(checkpoints, run.n)

    aside = Background(times)
    try:
        _intervals_of(run, table, aside)
    finally:
        aside.wait()
    # the arrays are this step's own (copies, or made here): taken as they are
    run.table = pd.concat([flow, pd.DataFrame(table, index=flow.index, copy=False)], axis=1)
    run.table.attrs = {**flow.attrs,
                       "clock": "dom0" if run.dom0_point is not None else run.anchor_name}


def _intervals_of(run: _Run, table: dict[str, Any],
                  times: Background[tuple[dict[str, Any], np.ndarray]]) -> None:
    """:func:`build_table`'s intervals and uncertainty put in ``table`` (its first columns
    already), after ``times`` (the checkpoints' columns, and the total: made beside)."""
    checkpoints, n = run.checkpoints, run.n
    run.intervals = attribute.intervals(run.present, "rx") + attribute.intervals(run.present,
                                                                                  "tx")
    run.notes.extend(attribute.merge_notes(run.intervals,
                                           unusable=set(run.sources.present) - run.present))
    columns: dict[str, np.ndarray] = {}  # put on the table once, in the order first made
    missing = np.full(n, NA_NS, dtype=np.int64)
    rows: dict[str, np.ndarray] = {}
    taken: dict[tuple[str, str], np.ndarray] = {}

    def at(way: str, point: str) -> np.ndarray:
        """A checkpoint at a direction's rows, taken once (most bound two intervals)."""
        if way not in rows:
            rows[way] = np.flatnonzero(run.ways[way])
        if (way, point) not in taken:
            taken[way, point] = checkpoints.get(point, missing)[rows[way]]
        return taken[way, point]

    for iv in run.intervals:  # a stage's column holds both directions, each on its rows
        column = columns.setdefault(iv.column, np.full(n, np.nan))
        values = attribute.durations_us(at(iv.direction, iv.start), at(iv.direction, iv.end))
        column[rows[iv.direction]] = values
    taken.clear()  # the gathered checkpoints may go
    uncertainty = _row_uncertainty(run)
    guard_notes = _guard_intervals(columns, uncertainty, run.intervals, run.ways)
    checkpoint_times, total = times.result()
    table.update(checkpoint_times)
    for name, column in columns.items():
        table[name] = column
    for stage in ALL_STAGES:
        if f"{stage}_us" not in table:
            table[f"{stage}_us"] = np.full(n, np.nan)
    table["total_us"] = total
    table["uncertainty_us"] = uncertainty
    run.notes.extend(guard_notes)


def _total_us(checkpoints: dict[str, IntArray], n: int) -> np.ndarray:
    """Each row's first → last measured boundary of its path (NaN: fewer than two)."""
    path_points = [p for p in ("irq", "dom0_run", "phys", "backend", "copy", "guest", "read",
                               "write") if p in checkpoints]
    total = np.full(n, np.nan)
    if not path_points:
        return total
    # in int64 ns (epoch ns as float64 would round to 256 ns), one checkpoint at a time (no
    # stack of them all and its masked copy)
    last = np.full(n, NA_NS, dtype=np.int64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    measured = np.zeros(n, dtype=np.int8)
    for p in path_points:
        t = checkpoints[p]
        np.maximum(last, t, out=last)  # NA_NS is the smallest int64: never a measured max
        have = t != NA_NS
        np.minimum(first, np.where(have, t, first), out=first)
        measured += have
    ok = measured >= 2
    total[ok] = (last[ok] - first[ok]) / 1e3
    return total


def _row_uncertainty(run: _Run) -> np.ndarray:
    """Each row's uncertainty, µs: the largest of the clocks its checkpoints cross (and of
    a socket log's own alignment), rounded up to 0.1 µs (never tighter than the clocks)."""
    n, checkpoints = run.n, run.checkpoints
    unc = np.zeros(n)
    clocks_in_row: dict[str, BoolArray] = {}
    for point, t in checkpoints.items():
        clock = attribute.CLOCK_OF.get(point, "dom0")
        clocks_in_row.setdefault(clock, np.zeros(n, dtype=bool))
        clocks_in_row[clock] |= t != NA_NS
    crossing = sum(v.astype(int) for v in clocks_in_row.values()) >= 2 if clocks_in_row \
        else np.zeros(n, dtype=bool)
    for clock, seen in clocks_in_row.items():
        if clock != "dom0":
            unc = np.where(crossing & seen, np.maximum(unc, run.uncertainty[clock]), unc)
    if run.socket_uncertainty_us:  # a socket log on a clock of its own
        sock = np.zeros(n, dtype=bool)
        for point in ("read", "write"):
            if point in checkpoints:
                sock |= checkpoints[point] != NA_NS
        unc = np.where(sock, np.maximum(unc, run.socket_uncertainty_us), unc)
    return np.ceil(np.round(unc * 10, 6)) / 10


def judge_anomalies(run: _Run) -> None:
    """Each direction's stages against their robust normal range (:mod:`.anomalies`), the
    packets that waited in another's stall, and the cause of each from the trace."""
    run.progress.phase("finding anomalies and their causes")
    table, n = run.table, run.n
    assert table is not None
    label = np.full(n, "", dtype=object)
    judged = []
    for way in ("rx", "tx"):
        sel = run.ways[way]
        shown = [iv for iv in run.intervals if iv.direction == way]
        if sel.any() and shown:
            judged.append((way, sel, shown, {iv.name: table[iv.column].to_numpy(float)[sel]
                                             for iv in shown}))
    # the directions are judged apart: the second in a worker thread beside the first (their
    # medians partition in numpy, which lets go of the GIL), taken in the same order
    aside = Background(functools.partial(anomalies.detect, judged[1][3],
                                         run.options.thresholds)) if len(judged) == 2 else None
    for i, (way, sel, shown, stages) in enumerate(judged):
        lab, base = aside.result() if aside is not None and i == 1 else anomalies.detect(
            stages, run.options.thresholds)
        label[sel] = lab
        for k, b in base.items():  # keyed as statistics are: "ring", "tx.ring"
            run.baselines[stat_key(k, way)] = {
                **b.to_dict(), "direction": way,
                "uncertainty_us": _interval_uncertainty(k, shown, run.uncertainty)}
    if "total" in run.options.thresholds:
        over = (table["total_us"].to_numpy(float) > run.options.thresholds["total"]) \
            & (label == "")
        label[over] = "total"
    label = _shared_stalls(label, run.intervals, run.checkpoints, run.baselines, run.ways)
    cause = np.full(n, "", dtype=object)
    cause_detail = np.full(n, "", dtype=object)
    if run.trace_causes is not None:
        _take_occupants(run)
        missing = np.full(n, NA_NS, dtype=np.int64)
        spans = {(iv.direction, iv.name): (run.checkpoints.get(iv.start, missing),
                                           run.checkpoints.get(iv.end, missing),
                                           causes.owner_of(iv.direction, iv.name, iv.merged))
                 for iv in run.intervals}
        cause, cause_detail = causes.stage_causes(run.trace_causes, label, run.ways, spans)
    # the text on the flagged rows only (the causes name no other row)
    flagged = np.flatnonzero(label != "")
    table["anomaly"] = text_at(n, flagged, label[flagged])
    table["stall"] = text_at(n, flagged, anomalies.name_stall(
        _stall_sizes(table, label, run.ways, run.baselines, flagged)))
    table["cause"] = text_at(n, flagged, cause[flagged])
    table["cause_detail"] = text_at(n, flagged, cause_detail[flagged])
    table["retransmitted"] = run.retrans


def _stall_sizes(table: pd.DataFrame, label: np.ndarray, ways: _Ways,
                 baselines: dict[str, Any], flagged: np.ndarray) -> np.ndarray:
    """Each anomalous row's stall (``flagged``: those rows, in order): its stage's value
    above that stage's median. Only the flagged rows are compared (not every row)."""
    stall_value = np.full(flagged.size, np.nan)
    mine = label[flagged]
    for name in set(mine.tolist()) - {""}:
        col = f"{name}_us"
        if col not in table.columns:
            continue
        values = table[col].to_numpy(float)[flagged]
        for way in ("rx", "tx"):
            pick = (mine == name) & ways[way][flagged]
            base = baselines.get(stat_key(name, way), {}).get("median_us", 0.0)
            stall_value[pick] = values[pick] - np.nan_to_num(base)
    return stall_value


_Exchanges = Background[_Held]


def exchanges_aside(run: _Run) -> _Exchanges:
    """The anchor capture's exchanges (:func:`.lone.exchanges`: they need no trace, nor any
    step after :func:`orient`) started in a worker thread, beside the trace's read or steps
    6-9 on the other core; :func:`lone_view` takes them. Their warnings are held for it to
    show, where a serial run would have; an error is raised there too."""
    segments, fresh, facts = run.anchor_all, run.fresh, run.facts
    run.anchor_all = run.facts = None  # only the exchanges need them (memory)

    return Background(lambda: _holding(lambda: lone.exchanges(segments, fresh, facts)))


def lone_view(run: _Run, aside: _Exchanges) -> pd.DataFrame:
    """The anchor capture's exchanges (:func:`.lone.exchanges`, computed ``aside`` beside the
    steps before), on the table's clock, their intervals put on the table's rows, and their
    notes."""
    assert run.table is not None and run.anchor_name is not None
    run.progress.phase(f"cutting the {run.anchor_name} capture's conversations into exchanges")
    flows = _shown(aside.result())
    assert flows is not None  # (_shown raised the exchanges' error)
    fit = run.guest_clock.fit
    if run.anchor_name == "guest" and fit is not None and len(flows):
        for col in ("t_request", "t_request_end", "t_response", "t_response_end", "t_next"):
            v = flows[col].to_numpy(float)
            ok = np.isfinite(v)
            out = np.full(v.shape, np.nan)
            out[ok] = fit.to_ref(np.rint(v[ok] * 1e9).astype(np.int64)) / 1e9
            flows[col] = out
    # always on the table: a second source must not hide what the capture alone shows (a
    # stage anomaly on the same row says more and is kept)
    if len(flows):
        _lone_rows(run.table, flows, run.fresh, _inside_exchange(run.intervals,
                                                                 run.anchor_name))
    holes = lone.holes_note(flows, run.anchor_name)
    if holes is not None:
        run.notes.append(holes)
    if run.n_captures == 1 and run.sources.xentrace is None and len(flows):
        run.notes.extend(lone.notes(flows))
    elif len(flows) and (flows["anomaly"] != "").any():
        run.notes.extend(lone.notes(flows[flows["anomaly"] != ""], limit=3)[-3:])
    return flows


def _exact_times(anchor: pd.DataFrame, checkpoints: dict[str, np.ndarray]
                 ) -> dict[str, Any]:
    """Where each row can be found and when, exactly: the anchor capture's frame number of
    the segment's first frame, each checkpoint as int64 epoch ns (``t_<checkpoint>_ns``,
    beside the float seconds, which round to 240 ns); the clock they are on goes in
    ``table.attrs["clock"]``: dom0's when a dom0 capture is given, else the guest capture's."""
    out: dict[str, Any] = {"frame": anchor["frame"].to_numpy(np.int64, copy=True)}
    for point, t_ns in checkpoints.items():
        if point in TABLE_CHECKPOINTS:
            out[checkpoint_ns_column(point)] = pd.arrays.IntegerArray(
                t_ns.astype(np.int64), t_ns == NA_NS)
    return out


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
        keep = _is_in(frame[column], local) & ts.notna().to_numpy()
        t = ts.to_numpy(np.int64, na_value=0)[keep]
        return t if (t[1:] >= t[:-1]).all() else np.sort(t)  # a capture's, usually

    return trace_attribute.Dom0Frames(arrivals=times(point, "dst"),
                                      to_guest=times(copied, "dst"),
                                      from_guest=times(copied, "src"), point=point)


def _is_in(column: pd.Series, values: set[str]) -> BoolArray:
    """``column.isin(values)`` as a numpy mask; on a categorical column, by its codes (the
    few categories compared, not every row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        # per code, whether its category is wanted (the last entry: code -1, no value)
        wanted = np.r_[column.cat.categories.isin(list(values)), False]
        return wanted[column.cat.codes.to_numpy()]
    return np.asarray(column.isin(list(values)).to_numpy(), dtype=bool)


def fixed_schema(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every column of ``model.TABLE_COLUMNS``, in that order, whatever the
    sources (NaN where not measured, empty text, not retransmitted)."""
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]  # never drop data
    out = table.reindex(columns=[*TABLE_COLUMNS, *extra])
    n = len(out)
    for column in ("anomaly", "stall", "cause", "cause_detail"):
        if column not in table.columns:
            out[column] = text_at(n, np.zeros(0, dtype=np.int64), [])
    if "retransmitted" not in table.columns:
        out["retransmitted"] = np.zeros(n, dtype=bool)
    for column in ("frame", *(checkpoint_ns_column(c) for c in TABLE_CHECKPOINTS)):
        if column not in table.columns:  # integers, absent: not float NaN
            out[column] = pd.array([pd.NA] * n, dtype="Int64")
    out.attrs = dict(table.attrs)
    return out


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
                   ways: _Ways) -> np.ndarray:
    """Label the packets that waited inside another packet's stall of the same stage."""
    label = label.copy()
    # an interval none of whose name's rows are flagged is passed over without comparing
    # every row (a name added on the way is on the other direction's rows)
    named = set(label[label != ""].tolist())  # the few labelled rows' names, not every row
    for iv in shown:
        if iv.start not in checkpoints or iv.end not in checkpoints or iv.name not in named:
            continue
        sel = ways[iv.direction]
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


def _guard_intervals(columns: dict[str, np.ndarray], unc: np.ndarray,
                     shown: list[attribute.Interval], ways: _Ways) -> list[str]:
    """Empty every interval value below −(its row's uncertainty ``unc`` + timestamp
    resolution) in the table's ``columns`` (in place): an impossible value is never printed.
    One note per interval that had any."""
    notes = []
    limit = path_order.guard_limit(unc)  # once for every interval
    for iv in shown:
        values = columns[iv.column]
        bad = path_order.guard_intervals(values, limit=limit) & ways[iv.direction]
        if bad.any():
            values[bad] = np.nan
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


def _no_capture(sources: Sources, calls: pd.DataFrame | None, trace: XenTrace | None,
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
