"""Capture sets for the fleet tests (``xenlat batch``, ``check``/``report --dataset``).

Simulated sets of about 20 requests each (conftest's ``simulated_set``, made once per session
and copied here), their manifests rewritten as an operator's would be (several Xen hosts and
days; one without host or start, placed by its first packet), a copy
with a corrupt guest capture, the single-set ``analyze --format parquet`` output of a set
(the ground truth the dataset's rows must equal), and a task that kills its own Dask worker
once (importable by worker processes: this directory is on their ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from xentrace_cli.cli import main
from xentrace_cli.fleet.batch import SetOutcome, process_set
from xentrace_cli.sources.manifest import read_manifest, write_manifest

#: name → (scenario, seed, xen_host, started)
SETS: dict[str, tuple[str, int, str | None, dt.datetime | None]] = {
    "a1": ("healthy", 1, "xen-a", dt.datetime(2026, 12, 5, 23, 30, tzinfo=dt.UTC)),
    "a2": ("black-0.1s", 2, "xen-a", dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)),
    "b1": ("ring-full", 3, "xen-b", dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)),
    "b2": ("black-0.1s", 4, None, None),
}
REQUESTS = 20
#: The simulator's first packet (``scenario.json``'s t_begin): 2026-01-01 01:00 UTC.
SIMULATED_DATE = "2026-01-01"
#: What the corrupt set's guest capture holds, and what analyzing it says.
GARBAGE = b"not a capture at all"


def make_sets(root: Path, simulated_set: Callable[..., Path]) -> dict[str, Path]:
    """The sets of :data:`SETS` under ``root``, by name: copies of the session's simulated
    sets (``simulated_set``, conftest's factory), their manifests rewritten."""
    out = {}
    for name, (scenario, seed, host, started) in SETS.items():
        directory = root / name
        shutil.copytree(simulated_set(scenario, seed=seed, requests=REQUESTS, host="toy"),
                        directory)
        simulated = read_manifest(directory)
        files = {key: getattr(simulated.sources, key).name
                 for key in simulated.sources.present}
        write_manifest(directory, files, xen_host=host, domid=simulated.domid, started=started)
        out[name] = directory
    return out


def corrupt_copy(source: Path, directory: Path) -> Path:
    """A copy of a set whose guest capture is not a capture."""
    shutil.copytree(source, directory)
    (directory / "guest.pcapng").write_bytes(GARBAGE)
    return directory


def analyze_parquet(directory: Path, out: Path) -> pa.Table:
    """``xenlat analyze --format parquet`` of a set, as a user would run it on its files."""
    capture_set = read_manifest(directory)
    sources = capture_set.sources
    args = ["analyze", str(sources.guest)]
    for key in ("backend", "phys", "xentrace", "socket_log"):
        if getattr(sources, key) is not None:
            args += [f"--{key.replace('_', '-')}", str(getattr(sources, key))]
    if capture_set.domid is not None:
        args += ["--domid", str(capture_set.domid)]
    args += ["--format", "parquet", "-o", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    return pq.read_table(out)


def kill_worker_once(directory: str, dataset: str, strict: bool = False, redo: bool = False,
                     *, marker: str, victim: str) -> SetOutcome:
    """``process_set``, except that the first attempt at the set named ``victim`` kills its own
    worker process (SIGKILL, as the kernel's OOM killer would) right after the set's packets
    file landed and before its summary did. Each attempt at ``victim`` adds a line to
    ``marker``."""
    if Path(directory).name == victim:
        with open(marker, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        if len(Path(marker).read_text(encoding="utf-8").splitlines()) == 1:
            from xentrace_cli.fleet import dataset as ds

            replace = ds._replace

            def replace_then_die(temporary: Path, final: Path) -> None:
                replace(temporary, final)
                if final.parents[2].name == ds.PACKETS:
                    os.kill(os.getpid(), signal.SIGKILL)

            ds._replace = replace_then_die
    return process_set(directory, dataset, strict, redo)
