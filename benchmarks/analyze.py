"""Benchmark: ``xenlat analyze`` end to end on a million-packet capture set, beside tcpdump.

Simulates (once; a directory that already holds a set is reused) the ``healthy`` scenario
with 157,000 requests — about a million packets per capture point at snaplen 128, some 14 M
trace records and an 81 MB strace log — on the toy host and on the realistic one
(``--host realistic``). Then, in paired and interleaved rounds (``benchmarks/paired.py``:
medians with min–max, the per-round ratio to the peer, the load average), it times as whole
processes:

- ``xenlat analyze DIR`` (all five sources) to Parquet, and to the terminal report;
- the peer: tcpdump reading the three captures one after the other
  (``tcpdump -nn -tt -S -r FILE`` each, output to /dev/null); the target is ≤ 2× its time;
- the floor: ``cat`` of the five input files.

``--phases`` also runs the analysis once in this process with each step timed (wall start and
end, the CPU time of the thread that ran it), to show where the time goes::

    python benchmarks/analyze.py                     # both hosts, 3 rounds
    python benchmarks/analyze.py --hosts toy --rounds 5 --phases
    python benchmarks/analyze.py --hosts toy --rounds 0 --phases    # the phases alone
    python benchmarks/analyze.py --hosts toy --against /tmp/main-src   # before/after a change

The sets live in ``benchmarks/out/analyze-<host>`` (gitignored) unless ``--dir`` says
otherwise.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from paired import interleaved, table

TCPDUMP = ["tcpdump", "-nn", "-tt", "-S", "-r"]


def simulate(directory: Path, requests: int, scenario: str, host: str) -> None:
    if (directory / "xenlat-set.toml").exists():
        print(f"reusing the simulated set in {directory}", file=sys.stderr)
        return
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xentrace_cli", "simulate", scenario, "-o",
                    str(directory), "--requests", str(requests), "--host", host,
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    print(f"simulated {requests} requests ({host} host) in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)


def captures(directory: Path) -> list[Path]:
    return [next(directory.glob("guest.*")), next(directory.glob("vif*")),
            directory / "phys.pcap"]


def bench(directory: Path, rounds: int, out: Path, against: Path | None = None,
          terminal: bool = True) -> None:
    inputs = [*captures(directory), directory / "xentrace.bin", directory / "app.strace"]
    size = sum(p.stat().st_size for p in inputs)
    print(f"\n== analyze {directory.name}: "
          + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in inputs))
    xenlat = [sys.executable, "-m", "xentrace_cli", "analyze", str(directory), "--no-progress"]
    tcpdumps = "; ".join(" ".join([*TCPDUMP, str(p)]) + " 2>/dev/null" for p in captures(directory))
    commands = {
        "tcpdump -nn -tt -S -r, the three captures": ["sh", "-c", tcpdumps],
        "xenlat analyze DIR --format parquet -o F": [*xenlat, "--format", "parquet", "-o",
                                                     str(out)],
        "xenlat analyze DIR (terminal report)": xenlat,
        "cat of the five inputs": ["cat", *map(str, inputs)],
    }
    if not terminal:
        del commands["xenlat analyze DIR (terminal report)"]
    if against is not None:  # another checkout's sources in the same rounds: before/after
        run_there = (f"import sys; sys.path.insert(0, {str(against)!r}); "
                     "from xentrace_cli.cli import main; sys.argv[0] = 'xenlat'; main()")
        commands[f"the same to parquet, sources of {against}"] = [
            sys.executable, "-c", run_there, *xenlat[3:], "--format", "parquet", "-o",
            str(out.with_suffix(".against.parquet"))]
    # no warm-up round (an analysis takes minutes on a loaded machine): the simulation or
    # the previous host's rounds left the files in the page cache
    if rounds < 1:  # --rounds 0 --phases: the phases only
        return
    runs = interleaved(commands, rounds, warmup=False)
    print(table(runs, "tcpdump -nn -tt -S -r, the three captures", size_bytes=size))


def phases(directory: Path) -> None:
    """One analysis in this process, each step timed by wrapping the library functions."""
    from click.testing import CliRunner

    from xentrace_cli.cli import main
    from xentrace_cli.outputs import terminal
    from xentrace_cli.pipeline import analyze as steps
    from xentrace_cli.pipeline import attribute as attr
    from xentrace_cli.pipeline import lone, match, path_order, select, trace_attribute
    from xentrace_cli.sources import packets, socket_log, xentrace

    t0 = time.perf_counter()
    # (step, thread, start s, end s, thread CPU s, thread system CPU s, thread minor faults)
    log: list[tuple[str, str, float, float, float, float, int]] = []
    # (s since t0, resident MB, the process's CPU s so far), sampled every 0.1 s
    rss: list[tuple[float, float, float]] = []
    done = threading.Event()

    def sample_rss() -> None:
        page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        while not done.wait(0.1):
            with open("/proc/self/statm") as statm:
                mb = int(statm.read().split()[1]) * page_mb
            cpu = os.times()
            rss.append((time.perf_counter() - t0, mb, cpu.user + cpu.system))

    threading.Thread(target=sample_rss, daemon=True).start()

    def wrap(module: Any, name: str) -> None:
        f = getattr(module, name)

        @functools.wraps(f)
        def timed_step(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.thread_time()
            before = resource.getrusage(resource.RUSAGE_THREAD)
            try:
                return f(*args, **kwargs)
            finally:
                after = resource.getrusage(resource.RUSAGE_THREAD)
                log.append((name, threading.current_thread().name, start - t0,
                            time.perf_counter() - t0, time.thread_time() - cpu,
                            after.ru_stime - before.ru_stime,
                            after.ru_minflt - before.ru_minflt))

        setattr(module, name, timed_step)

    for module, names in ((packets, ["read_packets", "read_packet_columns"]),
                          (xentrace, ["read_xentrace"]),
                          (socket_log, ["read_socket_log"]),
                          (match, ["data_segments", "syn_segments", "local_addresses",
                                   "assign_flows", "first_transmissions", "match_segments"]),
                          (attr, ["map_streams", "socket_times"]),
                          (trace_attribute, ["attribute_trace"]),
                          (path_order, ["enforce_path_order"]), (select, ["select"]),
                          (lone, ["frame_facts", "exchanges"]),
                          (steps, ["give_back_memory", "read_sources", "match_captures",
                                   "orient", "align_clocks", "place_socket_log",
                                   "follow_trace", "order_paths", "build_table",
                                   "judge_anomalies", "lone_view", "fixed_schema"]),
                          (terminal, ["render_analysis"])):
        for name in names:
            wrap(module, name)
    cpu0, faults0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
    with open(os.devnull, "w") as sink:
        result = CliRunner().invoke(main, ["analyze", str(directory), "--no-progress", "-o",
                                           sink.name])
    done.set()
    if result.exit_code != 0:
        raise SystemExit(f"analyze failed: {result.stderr[-500:]}")
    print(f"\n== phases of one analysis of {directory.name} in-process: "
          f"{time.perf_counter() - t0:.1f} s wall, {time.process_time() - cpu0:.1f} s CPU (all "
          f"threads), peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MB, load average {os.getloadavg()[0]:.1f}")
    faults = resource.getrusage(resource.RUSAGE_SELF)
    print(f"system CPU {faults.ru_stime - faults0.ru_stime:.1f} s (the kernel: page faults, "
          f"reads), {(faults.ru_minflt - faults0.ru_minflt) / 1e3:.0f} k minor page faults")
    print(f"{'step':22} {'thread':24} {'start s':>8} {'end s':>8} {'wall s':>7} "
          f"{'thread CPU s':>12} {'of it sys':>9} {'faults k':>8} {'cores busy':>10} "
          f"{'peak RSS MB':>11}")
    for name, thread, start, end, cpu, sys_cpu, minflt in sorted(log, key=lambda row: row[2]):
        peak = max((mb for t, mb, _ in rss if start <= t <= end), default=float("nan"))
        print(f"{name:22} {thread[:24]:24} {start:8.1f} {end:8.1f} {end - start:7.1f} "
              f"{cpu:12.1f} {sys_cpu:9.2f} {minflt / 1e3:8.0f} "
              f"{_cores_busy(rss, start, end):10.1f} {peak:11.0f}")
    if rss:
        t_peak, mb_peak, _ = max(rss, key=lambda sample: sample[1])
        print(f"resident memory peaked at {mb_peak:.0f} MB, {t_peak:.1f} s in (sampled every "
              "0.1 s)")
        ends = np.arange(0.5, rss[-1][0] + 0.5, 0.5)
        print("cores busy (the process's CPU s per wall s), each 0.5 s from the start: "
              + " ".join(f"{_cores_busy(rss, end - 0.5, end):.1f}" for end in ends))
    print("(read_packet_columns does its work in a reader thread: its thread CPU is the waiting "
          "caller's)")


def _cores_busy(samples: list[tuple[float, float, float]], start: float, end: float) -> float:
    """The process's CPU seconds per wall second between ``start`` and ``end`` (from the
    samples' running CPU time, interpolated): 2.0 is both cores busy."""
    if len(samples) < 2 or end - start < 0.05:
        return float("nan")
    t = np.array([s[0] for s in samples])
    cpu = np.array([s[2] for s in samples])
    lo, hi = np.interp([start, end], t, cpu)
    return float((hi - lo) / (end - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).parent / "out",
                        help="where the sets are (analyze-<host> inside)")
    parser.add_argument("--requests", type=int, default=157_000)
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--hosts", default="toy,realistic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", action="store_true",
                        help="also time each step of one analysis in this process")
    parser.add_argument("--against", type=Path, help="also time another checkout's sources "
                        "(a directory holding xentrace_cli/) in the same rounds")
    parser.add_argument("--no-terminal", action="store_true",
                        help="leave out the terminal-report run (halves a round)")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"xenlat analyze benchmark: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start; {args.rounds} paired interleaved rounds")
    for host in args.hosts.split(","):
        directory = args.dir / f"analyze-{host}"
        simulate(directory, args.requests, args.scenario, host)
        bench(directory, args.rounds, args.dir / f"analysis-{host}.parquet", args.against,
              not args.no_terminal)
        if args.phases:
            phases(directory)


if __name__ == "__main__":
    main()
