"""Timing whole processes fairly on a shared machine: paired, interleaved runs, medians.

Every benchmark in this directory times xenlat beside a peer tool (tcpdump, tshark, capinfos,
``cat`` as the floor) *in the same run*: each round runs every command once, in an order that
rotates from round to round, so that a busy moment of the machine falls on all of them alike.
A figure is the median over the rounds with the minimum and maximum beside it, and the ratio
to the peer is the median of the per-round ratios (each xenlat run against the peer run of its
own round). The machine's 1-minute load average is read before every run and reported beside
the figures: on a loaded machine every wall time is longer, and more so for a single-threaded
tool than for one that uses both cores.

Wall time, CPU time (user + system) and peak RSS come from ``os.wait4`` on the child, so they
are the child's own (not the benchmark script's, which stays small).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence


@dataclasses.dataclass
class Run:
    """One run of one command."""

    wall: float     #: seconds
    cpu: float      #: user + system seconds
    rss_mib: float  #: peak resident set size
    load: float     #: 1-minute load average just before the run


#: /usr/bin/time reports the child's own peak RSS: ``os.wait4`` on a child forked from this
#: script would count this script's pages too (they are the child's until it execs)
TIME = "/usr/bin/time"
TIME_FORMAT = "XENLAT-BENCH %e %U %S %M"


def timed(cmd: Sequence[str]) -> Run:
    """Run a command with stdout to /dev/null; fail loudly if it fails."""
    load = os.getloadavg()[0]
    wrapped = [TIME, "-f", TIME_FORMAT, *cmd] if os.path.exists(TIME) else list(cmd)
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as out:
        proc = subprocess.run(wrapped, stdout=out, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err[-500:]}")
    found = [line.split() for line in err.splitlines() if line.startswith("XENLAT-BENCH ")]
    if not found:  # no /usr/bin/time: this process's children, RSS from the last one
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Run(wall, float("nan"), usage.ru_maxrss / 1024, load)
    _, elapsed, user, system, kib = found[-1]
    del elapsed  # 10 ms resolution: the wall time measured here is finer
    return Run(wall, float(user) + float(system), int(kib) / 1024, load)


def interleaved(commands: dict[str, Sequence[str]], rounds: int,
                warmup: bool = True) -> dict[str, list[Run]]:
    """Run every command once per round, the order rotated each round (a first untimed round
    fills the page cache when ``warmup``)."""
    names = list(commands)
    if warmup:
        for name in names:
            timed(commands[name])
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            runs[name].append(timed(commands[name]))
        print(f"  round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    return runs


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``median (min–max)``."""
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}–{fmt.format(max(values))})")


def ratios(runs: Sequence[Run], peer: Sequence[Run], attr: str = "wall") -> list[float]:
    """Per-round ratios of a command's runs to its peer's runs of the same rounds."""
    return [getattr(a, attr) / getattr(b, attr) for a, b in zip(runs, peer, strict=True)]


def table(runs: dict[str, list[Run]], peer: str, packets: int | None = None,
          size_bytes: int | None = None) -> str:
    """One line per command: wall and CPU medians (min–max), packets/s, peak RSS, the paired
    wall ratio to ``peer`` (median, min–max), and the load average during the runs."""
    head = (f"{'command':52} {'wall s median (min–max)':>24} {'CPU s median':>13} "
            f"{'packets/s':>10} {'peak RSS MiB':>12} {'× ' + peer + ' (paired)':>26}")
    lines = [head]
    for name, measured in runs.items():
        wall = [r.wall for r in measured]
        cpu = [r.cpu for r in measured]
        rss = max(r.rss_mib for r in measured)
        rate = f"{packets / statistics.median(wall):10,.0f}" if packets else f"{'':10}"
        vs = spread(ratios(measured, runs[peer])) if name != peer else "1"
        rss_text = f"{rss:8.0f}"
        if size_bytes:
            rss_text += f" ({rss * 2**20 / size_bytes:.2f}× file)" if rss * 2**20 / size_bytes \
                >= 0.005 else ""
        lines.append(f"{name:52} {spread(wall):>24} {statistics.median(cpu):13.2f} {rate} "
                     f"{rss_text:>12} {vs:>26}")
    loads = [r.load for measured in runs.values() for r in measured]
    lines.append(f"load average during these runs: {spread(loads, '{:.1f}')} on "
                 f"{os.cpu_count()} CPUs; {len(next(iter(runs.values())))} interleaved rounds")
    return "\n".join(lines)
