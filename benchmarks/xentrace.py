"""Benchmark of the xentrace reader and ``xenlat trace`` on a generated multi-million-record trace.

Run by hand (never in the test suite)::

    python benchmarks/xentrace.py --records 5000000 --cpus 8

The trace is generated here, vectorized: per physical CPU a stream of records drawn from a mix
like a real credit2 + HVM trace (run-state changes, switches, wakes, credit2 events, HVM exits
without timestamps, IRQs, grant-copy hypercalls, a few lost-records and wrap records), cut into
windows of about ``--window-kib`` at record boundaries, windows of the CPUs interleaved as
xentrace writes them. Reports records/s and the peak memory (tracemalloc and ru_maxrss).
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from xentrace_cli import xen_events as xe

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


def generate(path: Path, records: int, cpus: int, window_kib: int, seed: int = 1) -> int:
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
        # Plausible scheduler words: small domain and vCPU ids.
        unit = rng.integers(0, 4, size=n, dtype=np.uint32)
        dom = rng.integers(0, 3, size=n, dtype=np.uint32)
        first = start + 1 + 2 * c
        sched = np.isin(kind, range(8))
        words[first[sched]] = np.where(kind[sched] < 4, (dom[sched] << 16) | unit[sched],
                                       dom[sched])
        two = sched & (kind >= 4)
        words[first[two] + 1] = unit[two]
        # Cut the stream into windows at record boundaries.
        target = window_kib * 1024 // 4
        ends = np.r_[start, len(words)]
        cuts = np.unique(np.searchsorted(ends, np.arange(target, len(words), target)))
        bounds = np.r_[0, ends[cuts], len(words)]
        bounds = np.unique(bounds)
        streams.append((words, bounds))
    pieces = []
    most = max(len(b) - 1 for _, b in streams)
    for k in range(most):  # xentrace writes CPUs 0..N-1 in turn
        for cpu, (words, bounds) in enumerate(streams):
            if k + 1 < len(bounds):
                body = words[bounds[k]: bounds[k + 1]]
                pieces.append(np.array([xe.CPU_CHANGE_HEADER, cpu, 4 * len(body)],
                                       dtype=np.uint32))
                pieces.append(body)
    data = np.concatenate(pieces)
    data.astype("<u4").tofile(path)
    return path.stat().st_size


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(func, repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``repeat`` calls (the machine may be shared: report both)."""
    best_wall = best_cpu = float("inf")
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = func()
        best_wall = min(best_wall, time.perf_counter() - wall0)
        best_cpu = min(best_cpu, time.process_time() - cpu0)
    return best_wall, best_cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--cpus", type=int, default=8)
    parser.add_argument("--window-kib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the trace here and keep it")
    args = parser.parse_args()

    from rich.console import Console

    from xentrace_cli.readers.xentrace import read_xentrace
    from xentrace_cli.report.trace_table import render_trace_summary
    from xentrace_cli.trace_summary import summarize_trace

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.xentrace"
        t0 = time.perf_counter()
        size = generate(path, args.records, args.cpus, args.window_kib)
        print(f"generated {args.records:,} records, {args.cpus} CPUs, windows of "
              f"~{args.window_kib} KiB: {size / 2**20:.1f} MiB in "
              f"{time.perf_counter() - t0:.1f} s ({path})")
        load = os.getloadavg()[0]
        wall, cpu, trace = _timed(lambda: read_xentrace(path), args.repeat)
        assert trace.records == args.records, (trace.records, args.records)
        print(f"read_xentrace (best of {args.repeat}): wall {wall:.2f} s = "
              f"{trace.records / wall / 1e6:.2f} M records/s ({size / wall / 2**20:.0f} MiB/s); "
              f"CPU {cpu:.2f} s = {trace.records / cpu / 1e6:.2f} M records/s; "
              f"{trace.windows} windows; events table "
              f"{trace.events.memory_usage(deep=True).sum() / 2**20:.0f} MiB")
        del trace
        from xentrace_cli.trace_attribute import TRACE_COLUMNS, TRACE_EVENTS

        wall, cpu, trace = _timed(lambda: read_xentrace(path, events=TRACE_EVENTS,
                                                        columns=TRACE_COLUMNS), args.repeat)
        print(f"read_xentrace as xenlat analyze reads it (3 event ids, {len(TRACE_COLUMNS)} "
              f"columns; best of {args.repeat}): wall {wall:.2f} s, CPU {cpu:.2f} s; "
              f"{len(trace.events):,} rows kept, events table "
              f"{trace.events.memory_usage(deep=True).sum() / 2**20:.0f} MiB")
        del trace

        def trace_command() -> dict:
            summary = summarize_trace(path)
            render_trace_summary(summary, Console(file=io.StringIO(), width=120))
            return summary

        wall, cpu, summary = _timed(trace_command, args.repeat)
        print(f"xenlat trace (summarize + render, best of {args.repeat}): wall {wall:.2f} s = "
              f"{summary['records'] / wall / 1e6:.2f} M records/s; CPU {cpu:.2f} s")
        del summary
        gc.collect()
        tracemalloc.start()
        read_xentrace(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"peak traced memory of one read_xentrace: {peak / 2**20:.0f} MiB; peak RSS of the "
              f"process: {_peak_rss_mib():.0f} MiB; load average at start {load:.2f} on "
              f"{os.cpu_count()} CPUs")
        if args.keep is None and path.exists():
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
