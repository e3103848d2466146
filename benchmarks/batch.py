"""Benchmark: 16 capture sets analyzed serially vs ``xenlat batch`` on 1 and 2 Dask workers.

Simulates (once; reused when the directory already holds them) 16 sets of four scenarios,
then times, each in a fresh process writing a fresh dataset, and interleaved round by round so
that the machine's load falls on every mode alike:

- ``serial``: one Python process calling ``batch.process_set`` on each set in turn (the same
  work as a batch task, analysis and dataset files, without Dask);
- ``batch-1``, ``batch-2``: ``xenlat batch SETS -o DATASET --workers N`` (a local cluster of N
  single-threaded worker processes; its start and stop are in the time).

Each run's wall time is printed with the 1-minute load average before it (the machine is
shared: other processes lengthen wall times), then the median per mode and the speed-up of
each over ``serial`` (ratio of medians). Every run's dataset must hold the same number of rows.

    python benchmarks/batch.py --requests 2000 --repeat 3

The sets live in ``benchmarks/out/batch`` (gitignored) unless ``--dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCENARIOS = ("healthy", "black-0.1s", "ring-full", "dom0-starved")
SETS = 16

SERIAL = """
import sys
from xentrace_cli.fleet.batch import process_set
for directory in sys.argv[2:]:
    outcome = process_set(directory, sys.argv[1])
    assert outcome.status == "analyzed", outcome.message
"""


def simulate(root: Path, requests: int) -> list[Path]:
    sets = [root / f"set{i:02d}" for i in range(SETS)]
    for i, directory in enumerate(sets):
        if (directory / "xenlat-set.toml").exists():
            continue
        subprocess.run([sys.executable, "-m", "xentrace_cli", "simulate",
                        SCENARIOS[i % len(SCENARIOS)], "-o", str(directory), "--seed",
                        str(i + 1), "--requests", str(requests), "--no-progress"], check=True,
                       stdout=subprocess.DEVNULL)
    return sets


def run(mode: str, sets: list[Path], dataset: Path) -> float:
    shutil.rmtree(dataset, ignore_errors=True)
    if mode == "serial":
        command = [sys.executable, "-c", SERIAL, str(dataset), *map(str, sets)]
    else:
        workers = mode.split("-")[1]
        command = [sys.executable, "-m", "xentrace_cli", "batch", *map(str, sets), "-o",
                   str(dataset), "--workers", workers, "--no-progress"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows(dataset: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(dataset / "packets", partitioning="hive").count_rows()


def task_seconds(dataset: Path) -> float:
    """The sets' own analysis times (the summaries' ``seconds``), added up: what the wall
    time holds besides is the cluster's start, stop and scheduling, or waiting for a CPU."""
    import pyarrow.dataset as pads

    table = pads.dataset(dataset / "sets", partitioning="hive").to_table(columns=["seconds"])
    return float(sum(table.column("seconds").to_pylist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "out" / "batch")
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per simulated set")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="serial,batch-1,batch-2")
    args = parser.parse_args()
    root = args.dir / f"r{args.requests}"
    sets = simulate(root / "sets", args.requests)
    modes = args.modes.split(",")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    tasks: dict[str, list[float]] = {mode: [] for mode in modes}
    counts: set[int] = set()
    print(f"{len(sets)} sets of {args.requests} requests; {os.cpu_count()} cores")
    for round_ in range(args.repeat):
        for mode in modes:
            load = os.getloadavg()[0]
            dataset = root / f"dataset-{mode}"
            wall = run(mode, sets, dataset)
            counts.add(rows(dataset))
            times[mode].append(wall)
            tasks[mode].append(task_seconds(dataset))
            print(f"round {round_ + 1} {mode:8} {wall:7.2f} s   (sets' own analysis "
                  f"{tasks[mode][-1]:6.2f} s)   load average {load:.2f}", flush=True)
    if len(counts) != 1:
        raise SystemExit(f"the datasets differ in rows: {sorted(counts)}")
    serial = statistics.median(times["serial"]) if "serial" in times else None
    print(f"\nevery dataset holds {counts.pop()} packet rows")
    for mode, walls in times.items():
        median = statistics.median(walls)
        speed = f"   speed-up {serial / median:.2f}x" if serial else ""
        print(f"{mode:8} median {median:7.2f} s  (min {min(walls):.2f}; sets' own analysis "
              f"{statistics.median(tasks[mode]):.2f} s){speed}")
    print(f"load average now: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
