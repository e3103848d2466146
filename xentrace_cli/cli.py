"""The ``xenlat`` command: option parsing only; every command calls one library function.

Errors become exit codes here and nowhere else: ``XenlatError`` → its ``exit_code`` with one
line on stderr; warnings → ``xenlat: warning: …`` on stderr (``--strict`` turns a truncated
input into exit 3). Data goes to stdout, progress and colour to stderr.

Each command imports its library inside the command, on purpose: the import of this module
is what ``xenlat --help``, ``--version``, ``packets`` and ``info`` pay for, and they must not
import pandas (or the analysis) at all (``tests/test_packets.py`` checks it). Library modules
import their own package at module top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

# numpy asks the kernel for transparent huge pages on every large array (madvise). Where THP
# defrag is "madvise" (a common distribution default), such a fault can stall in direct
# compaction on a host whose memory is fragmented by its page cache: on the 1 M-packet set
# analyze spent ~10 s of system time there (3.8 s without), trace on 14 M records 2.7-3.8 s
# (0.4 s). Set before anything imports numpy; a value the user set is kept.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from . import __version__
from .errors import (
    ExitCode,
    OptionError,
    TruncatedInput,
    XenlatError,
    XenlatWarning,
    warning_line,
    warning_sink,
    warnings_to,
)
from .model import TABLE_DICTIONARY_COLUMNS, Sources

if TYPE_CHECKING:  # the commands import their libraries when run (start-up time)
    from .fleet.gate import FleetGateResult
    from .outputs.gate import GateResult
    from .pipeline.result import Analysis

F = TypeVar("F", bound=Callable[..., Any])

ProgressCallback = Callable[[int, int], None]

#: An input file: existence, type and permission are checked by the readers (one line, exit 3),
#: not by click (a usage error, exit 2): ``readable=False`` stops click's own access test.
EXISTING_FILE = click.Path(path_type=Path, readable=False)
FREQUENCY = click.FloatRange(min=0, min_open=True)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


#: Width of terminal reports written to a pipe or a file: no line is cut or wrapped (a
#: program or a pager reads them, not an 80-column screen).
UNLIMITED_WIDTH = 10_000


def _stdout_console(width: int | None = None) -> Any:
    """The console for data on stdout: ``width`` when given, else the terminal's, else (a
    pipe, a file) :data:`UNLIMITED_WIDTH`."""
    from rich.console import Console

    if width is None and not sys.stdout.isatty():
        width = UNLIMITED_WIDTH

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich's own handling exits 1, which reads as "gate breached": let the group
            # decide (XenlatGroup.invoke, BrokenPipeError)
            raise BrokenPipeError

    return StdoutConsole(no_color=bool(os.environ.get("NO_COLOR")), highlight=False,
                         width=width)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    # a library's own warning is kept, but on one line
    click.echo(f"xenlat: warning: {warning_line(message, category)}", err=True)


#: One warning line at a time on stderr, whichever thread warns.
_WARNING_LOCK = threading.Lock()


def _echo_warning(warning: Warning) -> None:
    """Where the library's warnings go (:func:`.errors.warnings_to`): one line each."""
    with _WARNING_LOCK:
        _show_warning(warning, type(warning), "", 0)


class XenlatGroup(click.Group):
    """Turns library exceptions into one line and an exit code (the only place that does)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                warnings.simplefilter("always", XenlatWarning)
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:
            # stdout closed early (``| head``): not an error of ours. Point the descriptor at
            # /dev/null so the final flush cannot fail, and keep a verdict already reached.
            with contextlib.suppress(Exception):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(int(ctx.meta.get("xenlat.exit_code", ExitCode.OK)))
        except KeyboardInterrupt:
            click.echo("xenlat: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.meta.get("xenlat.traceback"):
                raise
            message, code = _failure(exc)
            click.echo(message, err=True)
            ctx.exit(int(code))


def _failure(exc: Exception) -> tuple[str, ExitCode]:
    """The one line on stderr and the exit code for an exception reaching the command line."""
    if isinstance(exc, XenlatError):
        return f"xenlat: error: {exc}", exc.exit_code
    if isinstance(exc, TruncatedInput):  # a warning made an error by --strict
        return f"xenlat: error: {exc} (--strict)", ExitCode.BAD_INPUT
    if isinstance(exc, OSError):  # an output path we cannot write (inputs raise InputError)
        where = f"{exc.filename}: " if exc.filename else ""
        return f"xenlat: error: {where}{exc.strerror or exc}", ExitCode.USAGE
    # a bug of ours: one line unless asked for the traceback
    return (f"xenlat: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --traceback and report it)", ExitCode.INTERNAL)


def _check_parquet_destination(fmt: str, output: Path | None) -> None:
    """Parquet is binary: refuse to write it to a terminal."""
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("parquet is binary: give -o FILE or redirect stdout")


def common_options(func: F) -> F:
    """Options every command has: ``--no-progress``, ``--strict``, ``--traceback``."""

    @click.option("--no-progress", is_flag=True, help="Do not draw progress bars on stderr.")
    @click.option("--strict", is_flag=True,
                  help="Treat a truncated input as an error (exit 3) instead of a warning.")
    @click.option("--traceback", is_flag=True,
                  help="Show Python tracebacks (for bug reports).")
    @functools.wraps(func)
    def wrapper(*args: Any, no_progress: bool, strict: bool, traceback: bool,
                **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        ctx.meta["xenlat.no_progress"] = no_progress
        ctx.meta["xenlat.strict"] = strict
        ctx.meta["xenlat.traceback"] = traceback
        with warnings_to(warning_sink(_echo_warning, strict)):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def progress_callback(label: str) -> Iterator[ProgressCallback | None]:
    """A ``(done, total)`` callback drawing a rich progress bar on stderr, or None when off."""
    ctx = click.get_current_context()
    if ctx.meta.get("xenlat.no_progress") or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class SizeColumn(DownloadColumn):
        """Bytes done of the total; nothing for a step whose progress is not measured."""

        def render(self, task: Any) -> Any:
            return "" if task.total is None else super().render(task)

    class TimeColumn(TimeRemainingColumn):
        """Time left; time spent for a step whose progress is not measured."""

        def render(self, task: Any) -> Any:
            return TimeElapsedColumn().render(task) if task.total is None \
                else super().render(task)

    with Progress(TextColumn("{task.description}"), BarColumn(), SizeColumn(), TimeColumn(),
                  console=_stderr_console(), transient=True) as bar:
        yield _Bar(bar, bar.add_task(label, total=None))


class _Bar:
    """The ``(done, total)`` callback of one rich bar; ``phase(name)`` names a step whose
    progress is not measured (a pulsing bar under that name, with the time spent)."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar = bar
        self.task = task

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def phase(self, name: str) -> None:
        self.bar.update(self.task, visible=False)
        self.task = self.bar.add_task(name, total=None)


@dataclasses.dataclass(frozen=True)
class AnalysisInputs:
    """What an analysing command was given: the sources, the analysis options, and the
    selection of what to report (``select.Selection``'s fields)."""

    sources: Sources
    cpu_hz: float | None = None
    domid: int | None = None
    nic_irq: int | None = None
    thresholds: tuple[str, ...] = ()
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)
    capture_set: Path | None = None
    """The set directory the sources came from, if any."""


def source_options(func: F) -> F:
    """The inputs of an analysis, shared by ``analyze``, ``check``, ``baseline`` and
    ``report``: the sources (files, or a capture-set directory whose manifest names them and
    gives ``--domid``/``--cpu-hz``/``--nic-irq`` defaults), the analysis options, and what to
    report (``-Y``, ``--begin/--end``, ``--host``, ``--port``, ``--min-duration``). The command
    gets one ``inputs: AnalysisInputs``."""

    @click.argument("capture", required=False, type=EXISTING_FILE)
    @click.option("--guest", type=EXISTING_FILE, help="Capture inside the guest.")
    @click.option("--backend", type=EXISTING_FILE, help="Capture in dom0 on vifD.N.")
    @click.option("--phys", type=EXISTING_FILE, help="Capture in dom0 on the physical NIC.")
    @click.option("--xentrace", "xentrace_file", type=EXISTING_FILE,
                  help="Binary trace written by xentrace.")
    @click.option("--socket-log", type=EXISTING_FILE,
                  help="strace -f -ttt -T output of the guest application (or a CSV/JSONL log).")
    @click.option("--cpu-hz", type=FREQUENCY, help="TSC frequency of the traced host "
                  "(estimated from the data when not given).")
    @click.option("--domid", type=click.IntRange(0, 0x7FFE), help="Guest domain id "
                  "(default: from the backend interface name vifD.N).")
    @click.option("--nic-irq", type=click.IntRange(min=0), help="Xen IRQ number of the NIC "
                  "(default: found in the trace).")
    @click.option("--threshold", "thresholds", multiple=True, metavar="STAGE=DURATION",
                  help="Absolute anomaly threshold, e.g. socket_read=10ms (repeatable).")
    @click.option("-Y", "--display-filter", help="Report only the segments whose frame this "
                  "Wireshark display filter keeps in the guest capture (else dom0's); the "
                  "analysis itself uses every packet (runs tshark).")
    @click.option("--begin", metavar="TIME", help="Report from this time: +1.5s after the "
                  "first packet, epoch seconds, 2026-01-01T01:00:00Z or 01:00:00 (UTC).")
    @click.option("--end", metavar="TIME", help="Report up to this time (as --begin).")
    @click.option("--host", help="Report only segments from or to this IP address.")
    @click.option("--port", type=click.IntRange(0, 0xFFFF),
                  help="Report only segments from or to this TCP/UDP port.")
    @click.option("--min-duration", metavar="DURATION", help="Report only segments that took "
                  "at least this long in total, e.g. 10ms.")
    @functools.wraps(func)
    def wrapper(*args: Any, capture: Path | None, guest: Path | None, backend: Path | None,
                phys: Path | None, xentrace_file: Path | None, socket_log: Path | None,
                cpu_hz: float | None, domid: int | None, nic_irq: int | None,
                thresholds: tuple[str, ...], display_filter: str | None, begin: str | None,
                end: str | None, host: str | None, port: int | None,
                min_duration: str | None, **kwargs: Any) -> Any:
        given = {"guest": guest, "backend": backend, "phys": phys, "xentrace": xentrace_file,
                 "socket_log": socket_log}
        capture_set = None
        if capture is not None and capture.is_dir():
            from .sources.manifest import read_manifest

            found = read_manifest(capture)  # exit 3 naming the manifest when it is wrong
            capture_set = found.directory
            # options given beside the directory win over its manifest
            given = {k: v if v is not None else getattr(found.sources, k)
                     for k, v in given.items()}
            cpu_hz = cpu_hz if cpu_hz is not None else found.cpu_hz
            domid = domid if domid is not None else found.domid
            nic_irq = nic_irq if nic_irq is not None else found.nic_irq
        elif capture is not None:
            if guest is not None:
                raise click.UsageError("give the guest capture either as CAPTURE or as --guest")
            given["guest"] = capture
        sources = Sources(**given)
        if kwargs.get("dataset") is not None:  # check/report --dataset: no sources
            if sources.present:
                raise click.UsageError("give either sources or --dataset, not both")
        elif not sources.present:
            raise click.UsageError("nothing to analyze: give a capture, a capture-set "
                                   "directory or --guest/--backend/--phys/--xentrace/"
                                   "--socket-log")
        selection = {"display_filter": display_filter, "begin": begin, "end": end,
                     "host": host, "port": port,
                     "min_duration_us": _duration_option(min_duration, "--min-duration")}
        inputs = AnalysisInputs(sources=sources, cpu_hz=cpu_hz, domid=domid, nic_irq=nic_irq,
                                thresholds=thresholds, selection=selection,
                                capture_set=capture_set)
        return func(*args, inputs=inputs, **kwargs)

    return wrapper  # type: ignore[return-value]


def dataset_options(func: F) -> F:
    """``--dataset`` and ``--xen-host``: ``check`` and ``report`` over a dataset of many
    sets."""

    @click.option("--dataset", type=click.Path(path_type=Path), help="A dataset written by "
                  "'xenlat batch', instead of sources.")
    @click.option("--xen-host", "xen_hosts", multiple=True, metavar="NAME",
                  help="With --dataset: only the sets of this Xen host (repeatable).")
    @functools.wraps(func)
    def wrapper(*args: Any, dataset: Path | None, xen_hosts: tuple[str, ...],
                **kwargs: Any) -> Any:
        if xen_hosts and dataset is None:
            raise click.UsageError("--xen-host needs --dataset")
        return func(*args, dataset=dataset, xen_hosts=xen_hosts, **kwargs)

    return wrapper  # type: ignore[return-value]


def _duration_option(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    from .units import parse_duration_us

    try:
        return parse_duration_us(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _pooled_budgets(texts: tuple[str, ...], dataset: Path | None) -> list[Any]:
    """``check --budget-all``: limits on all the sets of a dataset together."""
    from .outputs.gate import parse_budget

    if texts and dataset is None:
        raise OptionError("--budget-all needs --dataset")
    try:
        return [parse_budget(text) for text in texts]
    except ValueError as exc:
        raise OptionError(f"--budget-all: {exc}") from None


def _explain_lines(analysis: Any, n: int) -> list[str]:
    """``analyze --explain``: Wireshark's view of the worst exchanges, as plain lines."""
    from .outputs.explain import explain, text_lines

    return text_lines(explain(analysis, n))


def _run_analysis(inputs: AnalysisInputs) -> Analysis:
    """The one set-up every analysing command shares: analyze every packet, then select
    what to report."""
    from .pipeline.analyze import AnalyzeOptions, analyze, parse_thresholds
    from .pipeline.select import Selection, select

    try:
        parsed = parse_thresholds(inputs.thresholds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--threshold") from exc
    options = AnalyzeOptions(cpu_hz=inputs.cpu_hz, domid=inputs.domid, nic_irq=inputs.nic_irq,
                             thresholds=parsed)
    selection = Selection(**inputs.selection)
    if selection.host is not None:
        from .pipeline.select import normalize_host

        normalize_host(selection.host)  # a usage error before the long analysis, not after
    with progress_callback("reading the sources") as on_progress:
        analysis = analyze(inputs.sources, options, on_progress=on_progress)
    return select(analysis, selection)


@click.group(cls=XenlatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="xenlat")
def main() -> None:
    """xenlat: where did the time go between the NIC and the application in a Xen guest?

    Reads packet captures (pcap, pcapng, gzip), xentrace files and strace socket logs,
    aligns their clocks, matches packets across capture points and splits each packet's
    latency into stages: vmm, driver_domain, ring, remap, socket_read.

    Exit codes: 0 ok, 1 a check gate breached, 2 usage error, 3 unreadable or invalid
    input, 4 internal error.
    """


def _size(path: Path) -> int:
    """The file's size; 0 when it cannot be read (the reader says why, on one line)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _reading_bar(file: Path, drawn: bool) -> contextlib.AbstractContextManager[
        ProgressCallback | None]:
    """The progress bar of reading ``file`` (:func:`progress_callback`) when ``drawn``, else
    none: a file read in a blink gets no bar, nor rich's import for it."""
    return progress_callback(f"reading {file.name}") if drawn else contextlib.nullcontext()


def _stdout_styled() -> bool:
    """Bold and italic on stdout: a terminal, and no ``NO_COLOR``."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _small_capture(file: Path) -> bool:
    """True for a capture read in a blink (:data:`.outputs.packet_csv.SMALL_FILE_BYTES`):
    ``packets`` formats its CSV with numpy (cheaper than importing pyarrow, whose writer is
    faster per row), ``info`` and ``packets`` draw no progress bar (rich's import would cost
    more than the reading)."""
    from .outputs.packet_csv import SMALL_FILE_BYTES

    return _size(file) <= SMALL_FILE_BYTES


@main.command()
@click.argument("file", type=EXISTING_FILE)
@click.option("-Y", "--display-filter", help="Wireshark display filter (runs tshark).")
@click.option("--host", help="Keep packets from or to this address.")
@click.option("--port", type=int, help="Keep TCP/UDP packets from or to this port.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "parquet"]), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file "
              "(default: stdout).")
@common_options
def packets(file: Path, display_filter: str | None, host: str | None, port: int | None,
            fmt: str, output: Path | None) -> None:
    """Write the packet table of a capture: one row per frame, as tshark -T fields would.

    \b
    Example:
      xenlat packets guest.pcap -Y 'tcp.port == 11211' --format parquet -o guest.parquet
    """
    _check_parquet_destination(fmt, output)
    if fmt == "csv" and _small_capture(file):  # neither pyarrow, pandas nor rich
        from .outputs.packet_csv import write_packet_csv
        from .sources.packets import iter_packet_columns

        write_packet_csv(iter_packet_columns(file, display_filter=display_filter, host=host,
                                             port=port, prefetch=False), output)
        return
    import itertools

    from .allocator import reuse_freed_memory
    from .sources.packets import DICTIONARY_COLUMNS, iter_packet_tables, iter_packets

    # numpy's temporaries reused, not faulted in afresh for every batch (allocator.py)
    reuse_freed_memory()
    # CSV and Parquet are written from Arrow tables (no pandas); JSON records come from pandas
    batches_of = iter_packet_tables if fmt != "json" else iter_packets
    with progress_callback(f"reading {file.name}") as on_progress:
        batches = batches_of(file, display_filter=display_filter, host=host, port=port,
                             on_progress=on_progress)
        # the first batch asked for before the writer is imported: the reader thread starts
        # now and reads while this one imports (pyarrow's writers: ~0.1 s)
        first = next(batches)  # never none: an empty table comes as one batch
        from .outputs.tables import write_table

        write_table(itertools.chain([first], batches), fmt, output,
                    dictionary=DICTIONARY_COLUMNS)


@main.command()
@click.argument("file", type=EXISTING_FILE)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@common_options
def info(file: Path, fmt: str) -> None:
    """Describe a capture, as capinfos does: format, link types, interfaces, packets, times.

    \b
    Example:
      xenlat info guest.pcapng --format json
    """
    from .sources.info import capture_info

    with _reading_bar(file, not _small_capture(file)) as on_progress:
        result = capture_info(file, on_progress=on_progress)
    if fmt == "json":
        from .outputs.tables import dumps_json

        click.echo(dumps_json(result.to_dict()), nl=False)
    else:
        from .outputs.info_table import render_info

        click.echo(render_info(result, _stdout_styled()), nl=False)


#: Traces from this size on are read under a progress bar (~1 s at ~3 M records per second),
#: with freed memory kept for reuse.
LARGE_TRACE_BYTES = 64 << 20


@main.command()
@click.argument("file", type=EXISTING_FILE)
@click.option("--cpu-hz", type=FREQUENCY, help="TSC frequency for converting cycles to time "
              "(default: 2.4 GHz, as xenalyze).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="json: the summary as one document; with --dump, one "
              "JSON object per record (JSON Lines).")
@click.option("--dump", is_flag=True, help="Print every record instead of the summary: time, "
              "CPU, the unit running there, event name and decoded fields, one line each, in "
              "time order (streamed: use with | less or | grep).")
@common_options
def trace(file: Path, cpu_hz: float | None, fmt: str, dump: bool) -> None:
    """Summarize a xentrace file, as xenalyze --summary would: records per event, lost
    records, vCPU run states and waits (wake, preemption), physical CPUs (and any that stops
    early), migrations, HVM exits.

    \b
    Example:
      xenlat trace xentrace.bin --cpu-hz 2.9e9 --format json
      xenlat trace xentrace.bin --dump | grep 'd14v2'
    """
    if dump:
        from .trace.dump import dump_trace
        from .trace.summary import DEFAULT_CPU_HZ

        # no progress bar: it would draw over a pager reading the lines
        dump_trace(file, sys.stdout.buffer, cpu_hz or DEFAULT_CPU_HZ, fmt=fmt)
        sys.stdout.flush()
        return
    from .trace.summary import analyze_trace, dumps

    # a trace read in well under a second gets no bar (nor rich's import, which would cost
    # more than the reading): a bar from LARGE_TRACE_BYTES on, and freed memory kept for
    # the next pass (allocator.py: a fifth of the CPU time went to page faults)
    large = _size(file) >= LARGE_TRACE_BYTES
    if large:
        from .allocator import reuse_freed_memory

        reuse_freed_memory()
    with _reading_bar(file, large) as on_progress:
        summary = analyze_trace(file, cpu_hz=cpu_hz, on_progress=on_progress).to_document()
    if fmt == "json":
        click.echo(dumps(summary), nl=False)
    else:
        for line in summary["warnings"]:
            click.echo(f"xenlat: warning: {line}", err=True)
        from .outputs.trace_table import render_trace_summary

        # no rich here (its import and its measuring of every cell cost more than the
        # trace's reading): plain text, styled as rich would on a terminal
        render_trace_summary(summary, sys.stdout, styled=_stdout_styled())


@main.command()
@click.argument("scenario")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path),
              help="Directory to write the capture set into (required unless SCENARIO is "
              "'list').")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Random seed: the same seed writes byte-identical files.")
@click.option("--requests", type=click.IntRange(min=1),
              help="Number of request/response exchanges (default: the scenario's).")
@click.option("--host", "host", type=click.Choice(["toy", "realistic"]),
              help="The simulated Xen host: 'toy' (two dom0 vCPUs in fixed roles) or "
              "'realistic' (docs/simulator.md). Default: the scenario's default host.")
@common_options
def simulate(scenario: str, out_dir: Path | None, seed: int, requests: int | None,
             host: str | None) -> None:
    """Write a simulated, consistent capture set with its ground truth (truth.csv).

    SCENARIO is one of the scenarios that 'xenlat simulate list' prints.

    \b
    Example:
      xenlat simulate list
      xenlat simulate black-0.1s -o /tmp/black --seed 7 --requests 500
      xenlat simulate tx-stall -o /tmp/tx --host realistic
    """
    from .simulate import SCENARIOS, run_scenario

    if scenario == "list":
        for name, spec in SCENARIOS.items():
            click.echo(f"{name:16} {spec.description}")
        return
    if out_dir is None:
        raise click.UsageError("give -o DIR: the directory to write the capture set into")
    if scenario not in SCENARIOS:
        raise click.BadParameter(f"unknown scenario {scenario!r}; one of: "
                                 f"{', '.join(SCENARIOS)}", param_hint="SCENARIO")
    written = run_scenario(scenario, out_dir, seed=seed, requests=requests, host=host)
    for path in written:
        click.echo(str(path))


@main.command()
@click.option("--domid", type=click.IntRange(0, 0x7FEF), help="The guest's domain id "
              "(xl list).")
@click.option("--guest-name", help="The guest's name (xl list); its domid is looked up with "
              "'xl domid' when --domid is not given.")
@click.option("--duration", default="30s", show_default=True,
              help="How long to record, e.g. 30s, 2m (a bare number is seconds).")
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path),
              default=Path("xenlat-set"), show_default=True,
              help="Directory to record into (the capture set).")
@click.option("--nic", default="eth0", show_default=True, help="dom0's physical NIC.")
@click.option("--vif", help="The guest's backend interface (default: vif<domid>.0).")
@click.option("--guest-iface", default="eth0", show_default=True,
              help="The network interface inside the guest.")
@click.option("--guest-ip", help="Keep only this address's traffic in the physical-NIC "
              "capture.")
@click.option("--pid", type=click.IntRange(min=1), help="The application to strace.")
@click.option("--app", help="The application to start under strace instead of --pid.")
@click.option("--type", "guest_type", type=click.Choice(["pv", "hvm"]), default="pv",
              show_default=True, help="The guest's virtualization mode.")
@click.option("--side", type=click.Choice(["auto", "dom0", "guest"]), default="auto",
              show_default=True, help="Which side of the plan --run executes (auto: detect "
              "from /proc/xen).")
@click.option("--run", "execute", is_flag=True, help="Run this side's commands for the "
              "duration and write the manifest (default: print the plan).")
@common_options
def record(domid: int | None, guest_name: str | None, duration: str, out_dir: Path,
           nic: str, vif: str | None, guest_iface: str, guest_ip: str | None,
           pid: int | None, app: str | None, guest_type: str, side: str,
           execute: bool) -> None:
    """Print (or, with --run, execute) the commands that record a capture set.

    dom0's side: tcpdump on the physical NIC and on vifD.N, xentrace, the TSC frequency from
    'xl info'; the guest's side: tcpdump on its interface, strace on the application. --run
    runs the side it is on for the duration, into the directory, and writes
    xenlat-set.toml, which 'xenlat analyze DIR' reads. docs/record.md has PV and HVM plans.

    \b
    Example:
      xenlat record --domid 5 --duration 30s -o /var/tmp/set --pid 1234
      xenlat record --domid 5 --duration 30s -o /var/tmp/set --run
    """
    from .sources import record as rec

    seconds = _seconds_option(duration)
    if domid is None and guest_name is not None:
        domid = _domid_of(guest_name)
    if domid is None:
        raise click.UsageError("give --domid (or --guest-name, looked up with 'xl domid')")
    options = rec.RecordOptions(domid=domid, duration_s=seconds, out_dir=out_dir, nic=nic,
                                vif=vif, guest_iface=guest_iface, pid=pid, app=app,
                                guest_ip=guest_ip, guest_type=guest_type,
                                guest_name=guest_name)
    steps = rec.plan(options)
    if not execute:
        click.echo(rec.format_plan(options, steps))
        return
    where = rec.detect_side() if side == "auto" else side
    if where is None:
        raise click.UsageError("this machine is neither Xen's dom0 nor a Xen guest (no "
                               "/proc/xen): give --side dom0 or --side guest")
    problems = rec.preflight(steps, where, options)
    if problems:
        raise click.UsageError(f"cannot record on the {where} side: " + "; ".join(problems))
    with progress_callback(f"recording ({where})") as on_progress:
        done = rec.run(options, where,
                       on_progress=(lambda a, b: on_progress(round(a * 10), round(b * 10)))
                       if on_progress else None)
    for warning in done.warnings:
        click.echo(f"xenlat: warning: {warning}", err=True)
    for name in done.files.values():
        click.echo(str(out_dir / name))
    click.echo(str(done.manifest))
    click.echo(f"# then: {rec.analyze_line(options, done.files, done.cpu_hz)}", err=True)


_SECONDS = {"": 1.0, "ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def _seconds_option(text: str) -> float:
    """``--duration``: ``30s``, ``2m``, ``1h``, ``500ms``; a bare number is seconds."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|min|m|h)?\s*", text)
    value = float(found.group(1)) * _SECONDS[found.group(2) or ""] if found else 0.0
    if not value > 0:
        raise click.BadParameter(f"{text!r}: write a positive duration such as 30s or 2m",
                                 param_hint="--duration")
    return value


def _domid_of(name: str) -> int:
    import subprocess

    try:
        proc = subprocess.run(["xl", "domid", name], capture_output=True, text=True,
                              check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise click.UsageError(f"--guest-name {name}: cannot run 'xl domid' ({exc}); give "
                               "--domid") from None
    if proc.returncode != 0 or not proc.stdout.strip().isdigit():
        raise click.UsageError(f"--guest-name {name}: 'xl domid' knows no such guest; give "
                               "--domid")
    return int(proc.stdout.strip())


@main.command()
@click.argument("sets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "dataset", type=click.Path(path_type=Path), required=True,
              help="The dataset directory (created; the sets already in it are skipped).")
@click.option("--scheduler", metavar="ADDRESS", help="A running Dask scheduler, e.g. "
              "tcp://host:8786 (default: start a local cluster).")
@click.option("--workers", type=click.IntRange(min=1), help="Local cluster: worker processes "
              "(default: one per core).")
@click.option("--memory-limit", default="auto", show_default=True, help="Local cluster: "
              "memory per worker, e.g. 4GiB (auto: the machine's shared by the workers).")
@click.option("--redo", is_flag=True, help="Analyze again the sets already in the dataset.")
@common_options
def batch(sets: tuple[Path, ...], dataset: Path, scheduler: str | None, workers: int | None,
          memory_limit: str, redo: bool) -> None:
    """Analyze many capture sets on Dask into one Parquet dataset, by Xen host and date.

    Each SET is a directory with a xenlat-set.toml manifest, or a directory holding such
    sets. Each set is one task; a set that fails is reported with its error and the others
    go on; a rerun skips the sets already in the dataset. The dataset opens in DuckDB,
    pandas or pyarrow (docs/fleet.md), and in 'check --dataset' and 'report --dataset'.
    Exit codes: 0 every set analyzed or already there, 3 a set could not be read, 4 an
    internal error (or a set's worker kept dying).

    \b
    Example:
      xenlat batch captures/*/ -o fleet/
      xenlat batch captures/ -o fleet/ --scheduler tcp://10.0.0.1:8786
    """
    from .fleet.batch import find_sets, parse_memory_limit, run_batch

    try:
        limit = parse_memory_limit(memory_limit)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--memory-limit") from exc
    if scheduler is not None and (workers is not None or limit is not None):
        raise click.UsageError("--workers and --memory-limit size a local cluster; a "
                               "--scheduler's workers are sized where they are started")
    found = find_sets(sets)
    strict = bool(click.get_current_context().meta.get("xenlat.strict"))
    with _set_progress(len(found)) as (on_start, on_outcome):
        outcomes = run_batch(found, dataset, scheduler=scheduler, workers=workers,
                             memory_limit=limit, strict=strict, redo=redo,
                             on_start=on_start, on_outcome=on_outcome)
    for outcome in outcomes:
        click.echo(f"{outcome.status:9} {outcome.partition or '-':40} "
                   f"{outcome.packets:>9} {outcome.directory}")
    counts = {status: sum(o.status == status for o in outcomes)
              for status in ("analyzed", "skipped", "failed")}
    click.echo(f"xenlat: {len(outcomes)} sets: {counts['analyzed']} analyzed, "
               f"{counts['skipped']} already in the dataset, {counts['failed']} failed "
               f"({dataset})", err=True)
    worst = max((o.exit_code for o in outcomes if o.status == "failed"), default=0)
    if worst:
        raise click.exceptions.Exit(worst)


def _cluster_line(info: Any) -> str:
    """Where the cluster is and where its dashboard is."""
    from dask.utils import format_bytes  # batch ran: Dask is there

    if info.started:
        each = f", {format_bytes(info.memory_limit)} each" if info.memory_limit else ""
        where = f"Dask local cluster {info.address}: {info.workers} workers{each}"
    else:
        where = f"Dask scheduler {info.address}: {info.workers} workers"
    dashboard = f"dashboard {info.dashboard}" if info.dashboard else \
        "no dashboard (pip install bokeh)"
    return f"xenlat: {where}; {dashboard}"


@contextlib.contextmanager
def _set_progress(total: int) -> Iterator[tuple[Callable[[Any], None], Callable[[Any], None]]]:
    """Two callbacks, for the cluster once it runs and for each finished set: the cluster's
    place, each set's failure and warnings on stderr, and a rich bar over the sets there too
    (unless --no-progress or stderr is not a terminal), all through one writer."""
    ctx = click.get_current_context()

    def callbacks(echo: Callable[[str], None], advance: Callable[[], None],
                  ) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
        def on_outcome(outcome: Any) -> None:
            for line in outcome.warnings:
                echo(f"xenlat: warning: {outcome.name}: {line}")
            if outcome.status == "failed":
                echo(f"xenlat: error: {outcome.message}")
            advance()

        return lambda info: echo(_cluster_line(info)), on_outcome

    if ctx.meta.get("xenlat.no_progress") or not sys.stderr.isatty():
        yield callbacks(lambda text: click.echo(text, err=True), lambda: None)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=_stderr_console(),
                  transient=True) as bar:
        task = bar.add_task("capture sets", total=total)
        yield callbacks(lambda text: bar.console.print(text, markup=False, highlight=False,
                                                       soft_wrap=True),
                        lambda: bar.advance(task))


@main.command()
@source_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "parquet"]),
              default="table", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Output file "
              "(default: stdout).")
@click.option("--plot", type=click.Path(path_type=Path), help="Also draw the per-packet "
              "waterfall to FILE.png or FILE.svg.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Worst packets to show in the table.")
@click.option("--width", type=click.IntRange(min=40), help="Width of the terminal report in "
              "characters (default: the terminal's; unlimited when stdout is not a terminal).")
@click.option("--explain", "explain_n", type=click.IntRange(min=1), is_flag=False,
              flag_value=5, default=None, metavar="[N]",
              help="Also give Wireshark's view (dissection summary, expert info) of the N "
              "worst request/response exchanges (default 5; runs tshark through pyshark).")
@common_options
def analyze(inputs: AnalysisInputs, fmt: str, output: Path | None, plot: Path | None,
            top: int, width: int | None, explain_n: int | None) -> None:
    """Split each packet's latency into stages and point at the anomalies.

    CAPTURE is the capture inside the guest, or a capture-set directory (its
    xenlat-set.toml, written by 'xenlat record --run' or 'xenlat simulate', names the files);
    more sources sharpen the split. -Y, --begin/--end, --host, --port and --min-duration
    select the packets reported: the analysis always uses them all.

    \b
    Example:
      xenlat analyze guest.pcap --socket-log app.strace
      xenlat analyze sample_pcaps/black-0.1s --host 10.0.0.1 --min-duration 10ms
      xenlat analyze guest.pcap --explain 3
      xenlat analyze guest.pcap --backend vif5.0.pcap --phys eth0.pcap \\
          --xentrace trace.bin --socket-log app.strace --format csv -o packets.csv
    """
    _check_parquet_destination(fmt, output)
    analysis = _run_analysis(inputs)
    explained = _explain_lines(analysis, explain_n) if explain_n else []
    if plot is not None:
        from .outputs.plot import plot_waterfall

        plot_waterfall(analysis, plot)
    if fmt == "table":
        from .outputs.terminal import render_analysis

        if output is not None:
            from rich.console import Console

            with open(output, "w", encoding="utf-8") as fh:
                console = Console(file=fh, no_color=True, width=width or UNLIMITED_WIDTH)
                render_analysis(analysis, console, top=top)
                for line in explained:
                    console.print(line, markup=False, highlight=False)
        else:
            console = _stdout_console(width)
            render_analysis(analysis, console, top=top)
            for line in explained:  # text from the capture: never rich markup
                console.print(line, markup=False, highlight=False)
        return
    for line in explained:  # data formats: the Wireshark view goes beside, on stderr
        click.echo(line, err=True)
    if fmt == "json":
        from .outputs.tables import write_json_document

        write_json_document(analysis.to_document(frames=True), output)
    else:
        from .outputs.tables import write_table

        write_table(analysis.table, fmt, output, dictionary=TABLE_DICTIONARY_COLUMNS)


@main.command()
@source_options
@click.option("--budget", "budgets", multiple=True, metavar="'[tx.]STAGE.STAT OP VALUE'",
              help="A limit, e.g. 'socket_read.p99 < 2ms' or 'tx.ring.p99.9 < 50us' "
              "(repeatable).")
@click.option("--budgets-file", type=EXISTING_FILE, help="TOML file of budgets and a "
              "[baseline] (default: budgets.toml in the capture-set directory, else beside "
              "the first source, if there is one).")
@click.option("--no-budgets-file", is_flag=True,
              help="Do not read budgets.toml beside the sources.")
@click.option("--baseline", "baseline_file", type=EXISTING_FILE,
              help="Statistics saved by 'xenlat baseline' to compare with.")
@click.option("--tolerance", help="Allowed regression against the baseline  [default: 20%, "
              "or the budgets file's]")
@click.option("--baseline-stat", "baseline_stats", multiple=True, metavar="STAT",
              help="A statistic compared with the baseline (repeatable; default: p50, p90, "
              "p99, max).")
@click.option("--baseline-stage", "baseline_stages", multiple=True, metavar="[tx.]STAGE",
              help="A stage compared with the baseline (repeatable; default: each "
              "direction's five stages, the merged intervals that stand in for them, total).")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML here.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@dataset_options
@click.option("--budget-all", "budgets_all", multiple=True, metavar="'STAGE.STAT < DURATION'",
              help="With --dataset: a limit on the packets of all the sets together.")
@common_options
def check(inputs: AnalysisInputs, budgets: tuple[str, ...], budgets_file: Path | None,
          no_budgets_file: bool, baseline_file: Path | None, tolerance: str | None,
          baseline_stats: tuple[str, ...], baseline_stages: tuple[str, ...],
          junit: Path | None, fmt: str, dataset: Path | None, xen_hosts: tuple[str, ...],
          budgets_all: tuple[str, ...]) -> None:
    """Gate: exit 1 when a stage statistic breaks its budget or regresses from a baseline.

    With --dataset, every set of a dataset written by 'xenlat batch' is judged by the
    budgets, and all its sets' packets together by --budget-all.

    \b
    A budget: [rx.|tx.]STAGE.STAT OP VALUE UNIT, e.g. 'tx.ring.p99 < 50us'
    (no prefix: receive). Its grammar, budgets.toml and baselines:
    docs/ci-example.md

    Without --budgets-file, budgets.toml is read when it exists in the capture-set
    directory given as CAPTURE, else in the directory of the first source (the guest
    capture).

    Exit 0 every check passed, 1 a check failed, 2 text on the command line that does
    not parse, 3 an input (a budgets or baseline file included) unreadable or holding
    a value of the wrong kind.

    \b
    Example:
      xenlat check guest.pcap --socket-log app.strace \\
          --budget 'socket_read.p99 < 2ms' --budget 'total.max < 50ms' --junit gate.xml
      xenlat check --dataset fleet/ --budget 'ring.p99 < 2ms' \\
          --budget-all 'ring.p99 < 1ms' --junit fleet-gate.xml
    """
    from .outputs import gate

    if no_budgets_file and budgets_file is not None:
        raise OptionError("--budgets-file and --no-budgets-file: give one of them")
    if budgets_file is None and not no_budgets_file and dataset is None:
        budgets_file = gate.default_budgets_file(inputs.sources, inputs.capture_set)
    limits = gate.collect_budgets(budgets, budgets_file, baseline_file, tolerance,
                                  baseline_stats=baseline_stats,
                                  baseline_stages=baseline_stages)
    pooled = _pooled_budgets(budgets_all, dataset)
    if not limits and not pooled:
        raise OptionError("nothing to check: give --budget, --budgets-file or --baseline")
    result: GateResult | FleetGateResult
    if dataset is not None:
        from .fleet.gate import check_dataset

        result = check_dataset(dataset, limits, pooled, hosts=xen_hosts)
    else:
        analysis = _run_analysis(inputs)
        result = gate.evaluate(analysis, limits,
                               budgets_file=None if budgets_file is None else str(budgets_file))
    verdict = ExitCode.OK if result.passed else ExitCode.GATE_BREACHED
    ctx = click.get_current_context()
    ctx.meta["xenlat.exit_code"] = verdict  # holds even if the reader of stdout leaves early
    if junit is not None:
        junit.write_text(result.to_junit(), encoding="utf-8")
    for line in result.annotations():
        click.echo(line, err=True)
    if fmt == "json":
        from .outputs.tables import dumps_json

        click.echo(dumps_json(result.to_document()), nl=False)
    elif dataset is not None:
        from .fleet.gate_table import render_fleet_gate

        render_fleet_gate(result, _stdout_console())
    else:
        from .outputs.gate_table import render_gate

        render_gate(result, _stdout_console())
    if verdict != ExitCode.OK:
        raise click.exceptions.Exit(int(verdict))


@main.command()
@source_options
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Where to save the statistics (JSON).")
@click.option("--stat", "stats", multiple=True, metavar="pQ",
              help="Also save this percentile, e.g. p95 or p99.99 (repeatable; saved "
              "always: p50, p90, p99, p99.9, max, mean, count, anomalies).")
@common_options
def baseline(inputs: AnalysisInputs, output: Path, stats: tuple[str, ...]) -> None:
    """Save the stage statistics of an analysis, for a later 'check --baseline'.

    Keys and statistics are named as budgets name them (docs/ci-example.md).

    \b
    Example:
      xenlat baseline guest.pcap --socket-log app.strace -o baseline.json --stat p95
    """
    from .outputs.gate import baseline_document
    from .outputs.tables import dumps_json
    from .pipeline.stats import parse_statistic

    try:
        percentiles = [parse_statistic(text) for text in stats]
    except ValueError as exc:
        raise OptionError(f"--stat: {exc}") from None
    analysis = _run_analysis(inputs)
    output.write_text(dumps_json(baseline_document(analysis, percentiles)), encoding="utf-8")


@main.command()
@source_options
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="HTML file to write.")
@click.option("--top", type=click.IntRange(min=1), default=30, show_default=True,
              help="Slowest packets listed in the worst-packets table (every anomalous one "
              "is listed too).")
@dataset_options
@common_options
def report(inputs: AnalysisInputs, output: Path, top: int, dataset: Path | None,
           xen_hosts: tuple[str, ...]) -> None:
    """Write a self-contained HTML report: waterfall, stages over time, worst packets.

    With --dataset, the fleet view of a dataset written by 'xenlat batch': stage
    percentiles per Xen host over time, the worst sets.

    \b
    Example:
      xenlat report guest.pcap --socket-log app.strace -o report.html
      xenlat report sample_pcaps/black-0.1s --begin +1s --end +2s -o window.html
      xenlat report --dataset fleet/ -o fleet.html
    """
    from .outputs.html import write_html_report

    if dataset is not None:
        from .fleet.report import write_fleet_report

        write_fleet_report(dataset, output, hosts=xen_hosts)
        return
    analysis = _run_analysis(inputs)
    write_html_report(analysis, output, top=top)


if __name__ == "__main__":  # pragma: no cover
    main()
