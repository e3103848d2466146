"""Benchmark: ``xenlat analyze`` end to end on a large simulated capture set (run by hand).

Simulates (once; reused when the directory already holds a set) a healthy host with enough
requests for about a million packets per capture point, a trace of several million records and
the strace log, then runs the whole command in a fresh process and reports wall time and peak
memory (the child's own ``ru_maxrss``, reported by ``/usr/bin/time``: the process's
``RUSAGE_CHILDREN`` would also hold the simulator's peak). Target: under 10 s and 2 GB on
a 2-core machine.

    python benchmarks/analyze.py --repeat 3

(156,000 requests of the black-0.1s scenario are about 1.0 M packets per capture point and
15 M trace records.)

The set lives in ``benchmarks/out/analyze`` (gitignored) unless ``--dir`` says otherwise. The
machine's load average is printed with each run: other processes make wall times longer.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def simulate(directory: Path, requests: int, scenario: str) -> None:
    if (directory / "truth.csv").exists():
        print(f"reusing the simulated set in {directory}")
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xentrace_cli", "simulate", scenario, "-o",
                    str(directory), "--requests", str(requests), "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    print(f"simulated {requests} requests in {time.perf_counter() - t0:.1f} s")


def sizes(directory: Path) -> None:
    for path in sorted(directory.iterdir()):
        print(f"  {path.name:16} {path.stat().st_size / 1e6:9.1f} MB")


def count_packets(path: Path) -> int:
    from xentrace_cli.packets import read_packets

    return len(read_packets(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "out" / "analyze")
    parser.add_argument("--requests", type=int, default=156_000)
    parser.add_argument("--scenario", default="black-0.1s")
    parser.add_argument("--format", default="parquet", choices=["table", "json", "csv",
                                                                   "parquet"])
    parser.add_argument("--count", action="store_true", help="also count packets per capture")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the whole command")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    simulate(args.dir, args.requests, args.scenario)
    sizes(args.dir)
    guest = next(args.dir.glob("guest.*"))
    backend = next(args.dir.glob("vif*"))
    if args.count:
        for path in (guest, backend, args.dir / "phys.pcap"):
            print(f"  {path.name}: {count_packets(path)} packets")
    out = args.dir / f"analysis.{args.format}"
    command = [sys.executable, "-m", "xentrace_cli", "analyze", str(guest),
               "--backend", str(backend), "--phys", str(args.dir / "phys.pcap"),
               "--xentrace", str(args.dir / "xentrace.bin"),
               "--socket-log", str(args.dir / "app.strace"), "--no-progress",
               "--format", args.format, "-o", str(out)]
    for _ in range(args.repeat):
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        # /usr/bin/time prints this one child's peak RSS (KiB) as the last line on stderr
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *command], capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        *messages, peak_kib = proc.stderr.rstrip("\n").split("\n")
        peak_mb = int(peak_kib) / 1024
        if proc.returncode != 0:
            print("\n".join(messages), file=sys.stderr)
            raise SystemExit(f"analyze failed with exit {proc.returncode}")
        if any(line.strip() for line in messages):
            print("\n".join(messages).strip())
        print(f"analyze end to end: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {peak_mb:.0f} MB "
              f"(target < 10 s, < 2048 MB; load average before {load:.2f}) -> {out}")

if __name__ == "__main__":
    main()
