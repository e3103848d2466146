"""``xenlat batch``: many capture sets analyzed as tasks on Dask distributed, into one dataset.

A fleet brings more capture sets a day than one process analyzes; rather than a home-made pool,
each set is one task on a Dask cluster: a local one by default (one single-threaded worker
process per core, each with a memory limit: the analysis is numpy and pandas holding the GIL
between calls, so processes, not threads), or an existing one (``--scheduler tcp://host:8786``).
Dask brings what a home-made pool would get wrong: a worker that dies (out of memory, killed)
has its task run again on another worker, up to ``distributed.scheduler.allowed-failures``
times, and the dashboard shows the cluster at work.

The task (:func:`process_set`) runs on a worker and writes the set's files into the dataset
itself (:mod:`dataset`, atomically), so the data never travels through the scheduler: on a real
cluster the sets and the dataset live on storage every worker mounts at the same path. A set
whose content (and this xenlat version) is already in the dataset is skipped, so a rerun after a
crash or with new sets does only the missing work. A set that fails returns its one-line error;
the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import (
    ExitCode,
    OptionError,
    TruncatedInput,
    XenlatError,
    warning_line,
    warning_sink,
    warnings_to,
)
from ..sources.manifest import MANIFEST_NAME, is_set_directory

#: What ``xenlat batch`` tells a user whose Python lacks Dask.
INSTALL_HINT = "xenlat batch needs Dask distributed: pip install 'xenlat[fleet]'"
#: How long to wait for the first worker of an existing cluster.
WORKER_WAIT_S = 60.0

ANALYZED, SKIPPED, FAILED = "analyzed", "skipped", "failed"


@dataclasses.dataclass(frozen=True)
class SetOutcome:
    """What became of one capture set."""

    directory: str
    status: str
    """``analyzed``, ``skipped`` (already in the dataset) or ``failed``."""
    message: str = ""
    """For a failure: the one line that says why (an input error's names the file)."""
    exit_code: int = 0
    """For a failure: the exit code the same error gives a single command."""
    set_id: str | None = None
    xen_host: str | None = None
    date: str | None = None
    packets: int = 0
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The set directory's name."""
        return Path(self.directory).name

    @property
    def partition(self) -> str:
        """``xen_host=…/date=…`` (empty for a failure before the set was placed)."""
        if self.xen_host is None:
            return ""
        return f"xen_host={self.xen_host}/date={self.date}"


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """The cluster a batch runs on."""

    address: str
    dashboard: str | None
    """The dashboard's URL (None when the cluster serves none: bokeh is not installed)."""
    workers: int
    started: bool
    """True for a local cluster this batch started, False for ``--scheduler``."""
    memory_limit: int | None = None
    """Bytes per worker of a started local cluster (None: no limit)."""


def find_sets(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The capture-set directories named by ``paths``: a set directory itself, or every set
    below a directory that is not one (sorted); each set once, in order, made absolute.

    Raises ``OptionError`` for a path that is neither.
    """
    found: dict[Path, None] = {}
    for given in paths:
        path = Path(given).absolute()
        if is_set_directory(path):
            found[path] = None
            continue
        below = sorted(m.parent for m in path.rglob(MANIFEST_NAME)) if path.is_dir() else []
        if not below:
            what = "a directory without" if path.is_dir() else "not a directory with"
            raise OptionError(f"{given}: {what} a capture set ({MANIFEST_NAME}) in it")
        found.update(dict.fromkeys(below))
    return list(found)


# ---------------------------------------------------------------------------------------------
# The task (runs on a worker)


def process_set(directory: str, dataset: str, strict: bool = False,
                redo: bool = False) -> SetOutcome:
    """Analyze one capture set into the dataset, or skip it when it is there already.

    Never raises for a bad set: its error comes back in the outcome (``strict``: a truncated
    input is an error, as ``--strict`` makes it for one command).
    """
    start = time.perf_counter()
    ours: list[Warning] = []
    # xenlat's warnings go to this set's own sink (sets analyzed in threads side by side keep
    # theirs apart); the libraries' own, rare, through the warnings module's record
    with warnings.catch_warnings(record=True) as caught, \
            warnings_to(warning_sink(ours.append, strict)):
        warnings.simplefilter("always")
        try:
            return _process(Path(directory), Path(dataset), redo, start, ours, caught)
        except XenlatError as exc:
            return SetOutcome(directory, FAILED, str(exc), int(exc.exit_code),
                              seconds=time.perf_counter() - start)
        except TruncatedInput as exc:
            return SetOutcome(directory, FAILED, f"{exc} (--strict)", int(ExitCode.BAD_INPUT),
                              seconds=time.perf_counter() - start)
        except Exception as exc:  # a bug of ours: one line, as the command line gives it
            return SetOutcome(directory, FAILED, f"{directory}: internal error: "
                              f"{type(exc).__name__}: {exc}", int(ExitCode.INTERNAL),
                              seconds=time.perf_counter() - start)


def _process(directory: Path, dataset: Path, redo: bool, start: float, ours: list[Warning],
             caught: list[warnings.WarningMessage]) -> SetOutcome:
    from .. import __version__
    from ..outputs import gate
    from ..pipeline.analyze import AnalyzeOptions, analyze
    from ..sources.manifest import read_manifest
    from .dataset import (
        SetIdentity,
        content_hash,
        is_done,
        packet_rows,
        place,
        summary_row,
        write_set,
    )

    capture_set = read_manifest(directory)
    identity = SetIdentity(name=directory.name, set_id=content_hash(capture_set),
                           directory=str(directory), placement=place(capture_set))
    placed: dict[str, Any] = {"set_id": identity.set_id, "xen_host": identity.placement.xen_host,
              "date": identity.placement.date}
    if not redo and is_done(dataset, identity.set_id, identity.placement, __version__):
        return SetOutcome(str(directory), SKIPPED, **placed,
                          seconds=time.perf_counter() - start)
    options = AnalyzeOptions(cpu_hz=capture_set.cpu_hz, domid=capture_set.domid,
                             nic_irq=capture_set.nic_irq)
    analysis = analyze(capture_set.sources, options)
    said = _warning_lines(ours, caught)
    seconds = time.perf_counter() - start
    summary = summary_row(analysis, identity, version=__version__,
                          stats=gate.measured_stats(analysis), warnings=said, seconds=seconds)
    write_set(dataset, identity, packet_rows(analysis.table, identity), summary)
    return SetOutcome(str(directory), ANALYZED, **placed, packets=len(analysis.table),
                      seconds=time.perf_counter() - start, warnings=said)


def _warning_lines(ours: Sequence[Warning],
                   caught: Sequence[warnings.WarningMessage]) -> tuple[str, ...]:
    """Each warning once, as the command line words it: xenlat's, then the libraries'."""
    lines = [warning_line(w, type(w)) for w in ours]
    lines += (warning_line(w.message, w.category) for w in caught)
    return tuple(dict.fromkeys(lines))


def worker_version() -> str:
    """The xenlat version a worker runs (called on every worker before a batch)."""
    from .. import __version__

    return __version__


# ---------------------------------------------------------------------------------------------
# The batch (runs on the client)


def require_distributed() -> Any:
    """The ``distributed`` module, or ``OptionError`` saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise OptionError(INSTALL_HINT) from None
    return distributed


def parse_memory_limit(text: str) -> int | None:
    """``4GiB`` → bytes; ``auto`` → the machine's memory shared by the workers (None: let the
    cluster decide); ValueError for anything else."""
    if text.strip().lower() == "auto":
        return None
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text))
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"{text!r}: write a size such as 4GiB or 500MB, or auto") from None
    if value <= 0:
        raise ValueError(f"{text!r}: the memory limit must be positive")
    return value


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_batch(sets: Sequence[str | os.PathLike[str]], dataset: str | os.PathLike[str], *,
              scheduler: str | None = None, workers: int | None = None,
              memory_limit: int | None = None, processes: bool = True, strict: bool = False,
              redo: bool = False, task: Callable[..., SetOutcome] | None = None,
              on_start: Callable[[ClusterInfo], None] | None = None,
              on_outcome: Callable[[SetOutcome], None] | None = None) -> list[SetOutcome]:
    """Analyze every set into ``dataset`` on a Dask cluster; the outcomes in ``sets`` order.

    ``scheduler``: the address of a running cluster; else a local one with ``workers``
    single-threaded workers (default: one per core; ``processes=False``: threads of this
    process, for tests) of ``memory_limit`` bytes each (default: the memory shared evenly).
    ``task`` replaces :func:`process_set` (called with the set, the dataset, ``strict`` and
    ``redo``). ``on_start`` hears of the cluster once it runs, ``on_outcome`` of each set as
    it finishes. Raises ``OptionError`` when Dask is missing or the cluster cannot be used.
    """
    distributed = require_distributed()
    root = Path(dataset).absolute()
    root.mkdir(parents=True, exist_ok=True)
    directories = [str(Path(s).absolute()) for s in sets]
    outcomes: dict[int, SetOutcome] = {}
    with _connect(distributed, scheduler, workers, memory_limit, processes) as (client, info):
        _check_workers(client)
        if on_start is not None:
            on_start(info)
        run = uuid.uuid4().hex[:8]
        futures = {client.submit(task or process_set, directory, str(root), strict, redo,
                                 key=f"xenlat-set-{run}-{index}", pure=False): index
                   for index, directory in enumerate(directories)}
        for future in distributed.as_completed(futures):
            index = futures[future]
            outcome = _outcome(distributed, future, directories[index])
            future.release()
            outcomes[index] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    return [outcomes[i] for i in range(len(directories))]


def _outcome(distributed: Any, future: Any, directory: str) -> SetOutcome:
    """The task's outcome, or the failure Dask reports instead (its worker died too often)."""
    try:
        return future.result()
    except distributed.KilledWorker:
        import dask

        tries = int(dask.config.get("distributed.scheduler.allowed-failures")) + 1
        return SetOutcome(directory, FAILED, f"{directory}: the worker analyzing this set died "
                          f"{tries} times (out of memory? give --memory-limit more, or run "
                          "fewer --workers)", int(ExitCode.INTERNAL))
    except Exception as exc:  # a replaced task that raised, a cancelled future
        return SetOutcome(directory, FAILED, f"{directory}: internal error: "
                          f"{type(exc).__name__}: {exc}", int(ExitCode.INTERNAL))


@contextlib.contextmanager
def _connect(distributed: Any, scheduler: str | None, workers: int | None,
             memory_limit: int | None, processes: bool) -> Iterator[tuple[Any, ClusterInfo]]:
    """A client of the given scheduler, or of a local cluster started (and closed) here."""
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise OptionError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                              f"({exc})") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise OptionError(f"--scheduler {scheduler}: no worker joined in "
                                  f"{WORKER_WAIT_S:.0f} s") from None
            yield client, ClusterInfo(address=scheduler, dashboard=_dashboard(client),
                                      workers=len(client.scheduler_info()["workers"]),
                                      started=False)
        return
    n = workers or default_workers()
    with warnings.catch_warnings():
        # "port 8787 is in use, serving the dashboard on another": the link printed says where
        warnings.filterwarnings("ignore", message=".*already in use.*")
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=processes,
            memory_limit=memory_limit if memory_limit is not None else "auto",
            dashboard_address=":8787", silence_logs=logging.ERROR)
    with cluster, distributed.Client(cluster) as client:
        limits = [w.get("memory_limit") for w in client.scheduler_info()["workers"].values()]
        yield client, ClusterInfo(address=cluster.scheduler_address, dashboard=_dashboard(client),
                                  workers=n, started=True,
                                  memory_limit=int(limits[0]) if limits and limits[0] else None)


def _dashboard(client: Any) -> str | None:
    """The dashboard's link, when the scheduler serves one."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an old or unusual scheduler: say nothing rather than a wrong link
        return None
    return client.dashboard_link if "dashboard" in services else None


def _check_workers(client: Any) -> None:
    """Every worker must run this xenlat: another version would write other rows."""
    from .. import __version__

    try:
        versions = client.run(worker_version)
    except Exception as exc:
        raise OptionError(f"a Dask worker cannot run xenlat ({type(exc).__name__}: {exc}); "
                          "install 'xenlat[fleet]' on every worker") from None
    other = {addr: v for addr, v in versions.items() if v != __version__}
    if other:
        addr, version = sorted(other.items())[0]
        raise OptionError(f"Dask worker {addr} runs xenlat {version}, this is {__version__}: "
                          "install the same version on every worker")
