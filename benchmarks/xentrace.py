"""Benchmark of ``xenlat trace`` beside xenalyze, as whole processes, on the same files.

Run by hand (never in the test suite)::

    python benchmarks/xentrace.py                        # the real trace + a simulated one
    python benchmarks/xentrace.py --trace big.bin --repeat 7
    python benchmarks/xentrace.py --synthetic 5000000    # a generated trace instead
    python benchmarks/xentrace.py --trace big.bin --against /tmp/main-src  # before/after

The files: the real trace of the corpus (180,493 records) and a large trace written by
``xenlat simulate healthy --requests 157000`` (~14 M records, ~300 MB; kept under
``benchmarks/out/`` and reused) without its guest records, which xenalyze cannot read (it
stops at the first: ``FATAL: unexpected number bits(0) in evt.main``), or ``--trace FILE``
ones. Each run is a whole process timed
by ``/usr/bin/time`` (wall seconds, the child's peak RSS and its CPU seconds — the
figure that means most when the machine is shared), paired and interleaved: for
every repetition ``xenlat trace --format json``, ``xenlat trace`` (the tables),
``xenalyze --summary``, ``cat`` (the floor: reading the file) and ``python -c 'import numpy,
click'`` (the start-up floor) in turn, output to /dev/null. Prints the median with min-max,
records/s and peak RSS against the file size, and the load average before and after (the
machine may be shared). Compile the package's bytecode first (``python -m compileall
xentrace_cli``) when ``PYTHONDONTWRITEBYTECODE`` is set: an installed package has it, an
editable checkout without it recompiles every module at every start.

``--synthetic N`` writes a trace of N records instead, vectorized, with a mix like a real
credit2 + HVM trace (run-state changes, switches, wakes, credit2 records, HVM exits without
timestamps, IRQs, grant-copy hypercalls, a few lost-records and wrap records).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from xentrace_cli import xen_events as xe

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REAL = HERE.parent / "tests" / "data" / "corpus" / "xentrace" / "xentrace-parser-rs__xentrace.bin"

# (header event id, n_extra, timestamped, weight) — a credit2 + HVM mix.
MIX = (
    (xe.TRC_SCHED_RUNSTATE_CHANGE | (1 << 8) | (0 << 4), 1, True, 6),  # runnable -> running
    (xe.TRC_SCHED_RUNSTATE_CHANGE | (0 << 8) | (2 << 4), 1, True, 4),  # running -> blocked
    (xe.TRC_SCHED_RUNSTATE_CHANGE | (2 << 8) | (1 << 4), 1, True, 4),  # blocked -> runnable
    (xe.TRC_SCHED_RUNSTATE_CHANGE | (0 << 8) | (1 << 4), 1, True, 2),  # running -> runnable
    (xe.TRC_SCHED_SWITCH, 4, True, 6),
    (xe.TRC_SCHED_SWITCH_INFPREV, 3, True, 6),
    (xe.TRC_SCHED_SWITCH_INFNEXT, 4, True, 6),
    (xe.TRC_SCHED_WAKE, 2, True, 4),
    (xe.TRC_SCHED_CLASS | (1 << 9) | 12, 2, True, 12),  # csched2 update_runq_load
    (xe.TRC_SCHED_CLASS | (1 << 9) | 21, 2, True, 8),  # csched2 schedule
    (xe.TRC_HVM_VMEXIT64, 3, False, 10),
    (xe.TRC_HVM_VMENTRY, 0, False, 10),
    (xe.TRC_HVM_INJ_VIRQ, 2, False, 2),
    (xe.TRC_HW_IRQ_HANDLED, 3, True, 3),
    (xe.TRC_PV_HYPERCALL_V2, 3, True, 3),
    (xe.TRC_GUEST | 7, 7, False, 1),
    (xe.TRC_TRACE_WRAP_BUFFER, 7, True, 0.05),
    (xe.TRC_LOST_RECORDS, 4, True, 0.01),
)


def generate(path: Path, records: int, cpus: int = 8, window_kib: int = 256,
             seed: int = 1) -> int:
    """Write a trace of ``records`` records to ``path``; return its size in bytes."""
    rng = np.random.default_rng(seed)
    ids = np.array([m[0] for m in MIX], dtype=np.uint32)
    nex = np.array([m[1] for m in MIX], dtype=np.uint32)
    stamped = np.array([m[2] for m in MIX], dtype=np.uint32)
    weight = np.array([m[3] for m in MIX], dtype=float)
    per_cpu = np.full(cpus, records // cpus)
    per_cpu[: records % cpus] += 1
    streams = []
    for cpu in range(cpus):
        n = int(per_cpu[cpu])
        kind = rng.choice(len(MIX), size=n, p=weight / weight.sum())
        c = stamped[kind]
        length = 1 + 2 * c + nex[kind]
        start = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)
        words = rng.integers(0, 1 << 32, size=int(length.sum()), dtype=np.uint32)
        words[start] = ids[kind] | (nex[kind] << 28) | (c << 31)
        tsc = 10_000_000_000 + np.cumsum(rng.integers(50, 5000, size=n, dtype=np.int64))
        at = start[c == 1]
        words[at + 1] = (tsc[c == 1] & 0xFFFFFFFF).astype(np.uint32)
        words[at + 2] = (tsc[c == 1] >> 32).astype(np.uint32)
        unit = rng.integers(0, 4, size=n, dtype=np.uint32)  # plausible scheduler words
        dom = rng.integers(0, 3, size=n, dtype=np.uint32)
        first = start + 1 + 2 * c
        sched = np.isin(kind, range(8))
        words[first[sched]] = np.where(kind[sched] < 4, (dom[sched] << 16) | unit[sched],
                                       dom[sched])
        two = sched & (kind >= 4)
        words[first[two] + 1] = unit[two]
        target = window_kib * 1024 // 4  # cut the stream into windows at record boundaries
        ends = np.r_[start, len(words)]
        cuts = np.unique(np.searchsorted(ends, np.arange(target, len(words), target)))
        streams.append((words, np.unique(np.r_[0, ends[cuts], len(words)])))
    pieces = []
    for k in range(max(len(b) - 1 for _, b in streams)):  # xentrace writes CPUs in turn
        for cpu, (words, bounds) in enumerate(streams):
            if k + 1 < len(bounds):
                body = words[bounds[k]: bounds[k + 1]]
                pieces.append(np.array([xe.CPU_CHANGE_HEADER, cpu, 4 * len(body)],
                                       dtype=np.uint32))
                pieces.append(body)
    np.concatenate(pieces).astype("<u4").tofile(path)
    return path.stat().st_size


def replicated(source: Path, copies: int, path: Path) -> Path:
    """The real trace ``copies`` times end to end, each copy's TSCs shifted past the one
    before: a large trace of real records that xenalyze reads too (it stops at the
    simulator's guest records)."""
    from xentrace_cli.sources.xentrace import read_xentrace

    trace = read_xentrace(source, columns=("offset", "timestamped"))
    words = np.fromfile(source, dtype="<u4")
    at = trace.events["offset"].to_numpy()[trace.events["timestamped"].to_numpy()] // 4 + 1
    span = trace.last_tsc - trace.first_tsc + 1
    with open(path, "wb") as out:
        for k in range(copies):
            copy = words.copy()
            tsc = (copy[at].astype(np.uint64) | (copy[at + 1].astype(np.uint64) << 32))
            tsc += np.uint64(k * span)
            copy[at] = (tsc & np.uint64(0xFFFFFFFF)).astype(np.uint32)
            copy[at + 1] = (tsc >> np.uint64(32)).astype(np.uint32)
            copy.tofile(out)
    return path


def without_guest_records(source: Path, path: Path) -> Path:
    """``source`` without its TRC_GUEST records (windows resized): xenalyze stops at the
    first one (FATAL: unexpected number bits in evt.main), so both tools read this file."""
    from xentrace_cli.sources.xentrace import read_xentrace
    from xentrace_cli.sources.xentrace_records import walk_windows

    ev = read_xentrace(source, columns=("offset", "n_extra", "timestamped", "event")).events
    guest = (ev["event"].to_numpy() & xe.TRC_GUEST_MASK) == xe.TRC_GUEST
    start = ev["offset"].to_numpy()[guest] // 4
    length = (1 + ev["n_extra"].to_numpy()[guest].astype(np.int64)
              + 2 * ev["timestamped"].to_numpy()[guest])
    del ev
    words = np.fromfile(source, dtype="<u4")
    edge = np.zeros(len(words) + 1, dtype=np.int64)
    np.add.at(edge, start, 1)
    np.add.at(edge, start + length, -1)
    removed = np.cumsum(edge[:-1]) > 0
    with open(source, "rb") as handle:
        win = walk_windows(source, handle, source.stat().st_size)
    gone = np.r_[0, np.cumsum(removed)]
    words[win.start + 2] -= (4 * (gone[win.end] - gone[win.start])).astype(np.uint32)
    words[~removed].tofile(path)
    return path


def simulated(requests: int) -> Path:
    """The large trace of ``xenlat simulate healthy``, without its guest records (written
    once, then reused)."""
    folder = OUT / f"healthy-{requests}"
    path = folder / "xentrace-noguest.bin"
    if path.exists():
        return path
    if not (folder / "xentrace.bin").exists():
        print(f"writing {folder} (xenlat simulate healthy --requests {requests}) ...",
              flush=True)
        subprocess.run([sys.executable, "-m", "xentrace_cli", "simulate", "healthy",
                        "--requests", str(requests), "-o", str(folder), "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
    return without_guest_records(folder / "xentrace.bin", path)


def run(command: list[str], cwd: Path | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one whole process
    (output and diagnostics to /dev/null; /usr/bin/time's line to a file). Raises when the
    process fails."""
    with open(os.devnull, "wb") as null, tempfile.NamedTemporaryFile("r") as log:
        proc = subprocess.run(["/usr/bin/time", "-o", log.name, "-f", "%e %M %U %S",
                               *command], stdout=null, stderr=null, cwd=cwd)
        if proc.returncode:
            raise RuntimeError(f"{command[0]} exited {proc.returncode}")
        wall, rss, user, system = log.read().strip().splitlines()[-1].split()
    return float(wall), int(rss), float(user) + float(system)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f}-{max(values):.3f})"


def bench(path: Path, repeat: int, xenalyze: str | None, against: Path | None = None) -> None:
    records = json.loads(subprocess.run(
        [sys.executable, "-m", "xentrace_cli", "trace", str(path), "--format", "json",
         "--no-progress"], capture_output=True, text=True, check=True).stdout)["records"]
    size = path.stat().st_size
    xenlat = [shutil.which("xenlat") or sys.executable, *(
        [] if shutil.which("xenlat") else ["-m", "xentrace_cli"])]
    tools = {"xenlat trace --format json": [*xenlat, "trace", str(path), "--format", "json",
                                            "--no-progress"],
             "xenlat trace (tables)": [*xenlat, "trace", str(path), "--no-progress"],
             "cat (floor)": ["cat", str(path)],
             # what any process importing xenlat's two start-up libraries pays
             "python -c 'import numpy, click'": [sys.executable, "-c", "import numpy, click"]}
    cwd: dict[str, Path] = {}
    if against is not None:  # another checkout's sources: python -m from its directory
        for name, argv in (("--format json", ["--format", "json"]), ("(tables)", [])):
            key = f"{against.name}: trace {name}"
            tools[key] = [sys.executable, "-m", "xentrace_cli", "trace", str(path.resolve()),
                          *argv, "--no-progress"]
            cwd[key] = against
    if xenalyze:
        tools["xenalyze --summary"] = [xenalyze, "--summary", str(path)]
    times: dict[str, list[float]] = {name: [] for name in tools}
    cpu: dict[str, list[float]] = {name: [] for name in tools}
    peak: dict[str, int] = dict.fromkeys(tools, 0)
    load = os.getloadavg()
    failed: dict[str, str] = {}
    for _ in range(repeat):  # paired and interleaved
        for name, command in tools.items():
            if name in failed:
                continue
            try:
                wall, rss, used = run(command, cwd.get(name))
            except RuntimeError as exc:  # xenalyze stops at records it does not know
                failed[name] = str(exc)
                continue
            times[name].append(wall)
            cpu[name].append(used)
            peak[name] = max(peak[name], rss)
    print(f"\n{path} ({size / 2**20:.1f} MiB, {records:,} records); load average "
          f"{load[0]:.2f} before, {os.getloadavg()[0]:.2f} after, {os.cpu_count()} CPUs; "
          f"median of {repeat} (min-max)")
    for name in tools:
        if name in failed:
            print(f"  {name:36} failed: {failed[name]}")
            continue
        wall = statistics.median(times[name])
        rate = f"{records / wall / 1e6:6.2f}" if wall > 0 else "  >100"  # /usr/bin/time: 10 ms
        print(f"  {name:36} {_spread(times[name])}  {rate} M records/s  "
              f"CPU {statistics.median(cpu[name]):.2f} s  "
              f"peak RSS {peak[name] / 1024:7.1f} MiB = {peak[name] * 1024 / size:5.2f}x file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, action="append", help="a trace to time "
                        "(repeatable; default: the corpus trace and a simulated one)")
    parser.add_argument("--requests", type=int, default=157_000,
                        help="requests of the simulated trace (157000: ~14 M records)")
    parser.add_argument("--synthetic", type=int, help="time a generated trace of N records")
    parser.add_argument("--replicate", type=int, help="time the real trace written N times "
                        "end to end (80: ~14 M records that xenalyze reads too)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", type=Path, help="also time another checkout's sources "
                        "(its directory: python -m xentrace_cli run there), paired")
    parser.add_argument("--xenalyze", default=os.environ.get("XENALYZE")
                        or shutil.which("xenalyze"), help="xenalyze binary (default: "
                        "$XENALYZE or the one on PATH; Debian's xen-utils-common)")
    args = parser.parse_args()
    if not args.xenalyze:
        print("xenalyze not found: timing xenlat alone (apt-get download xen-utils-common; "
              "dpkg -x it; set XENALYZE)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        if args.trace:
            paths = args.trace
        elif args.synthetic:
            paths = [Path(tmp) / "synthetic.bin"]
            generate(paths[0], args.synthetic)
        elif args.replicate:
            OUT.mkdir(exist_ok=True)
            path = OUT / f"real-x{args.replicate}.bin"
            paths = [path if path.exists() else replicated(REAL, args.replicate, path)]
        else:
            OUT.mkdir(exist_ok=True)
            paths = [REAL, simulated(args.requests)]
        for checkout in (Path(__file__).resolve().parent.parent, args.against):
            if checkout is not None:  # PYTHONDONTWRITEBYTECODE: compiled once, not per run
                subprocess.run([sys.executable, "-m", "compileall", "-q",
                                str(checkout / "xentrace_cli")], check=True)
        for path in paths:
            bench(path, args.repeat, args.xenalyze, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
