"""Benchmark of the gate and the reports on a million-packet analysis.

Run by hand: ``python benchmarks/report.py [N [REPORT.html]]``. Builds an analysis table of N
received segments (five stages drawn per packet, a 100 ms socket_read stall on one packet in
10 000), then times ``gate.evaluate`` (with a saved baseline), ``render_html_report`` and
``plot_waterfall``, and prints the HTML size, the points the time series kept, and peak memory.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xentrace_cli.model import Sources
from xentrace_cli.outputs import gate
from xentrace_cli.outputs.html import render_html_report
from xentrace_cli.outputs.plot import plot_waterfall
from xentrace_cli.pipeline.result import Analysis


def build(n: int) -> Analysis:
    rng = np.random.default_rng(0)
    stages = {"vmm": rng.uniform(4, 12, n), "driver_domain": rng.uniform(20, 40, n),
              "ring": rng.uniform(5, 20, n), "remap": rng.uniform(20, 60, n),
              "socket_read": rng.uniform(30, 150, n)}
    stalled = np.zeros(n, dtype=bool)
    stalled[::10_000] = True
    stages["socket_read"] += np.where(stalled, 100_000.0, 0.0)
    t = 1.7e9 + np.arange(n) * 600.0 / n
    table = pd.DataFrame({"src": "10.0.0.1", "sport": 11211, "dst": "10.0.0.2", "dport": 40000,
                          "proto": 6, "direction": "rx", "seq": np.arange(n) * 100, "len": 100})
    for name, (start, end) in {"vmm": ("irq", "dom0_run"), "driver_domain": ("dom0_run",
                               "backend"), "ring": ("backend", "copy"), "remap": ("copy",
                               "guest"), "socket_read": ("guest", "read")}.items():
        table[f"t_{start}"] = t
        t = t + stages[name] * 1e-6
        table[f"t_{end}"] = t
        table[f"{name}_us"] = stages[name]
    table["total_us"] = sum(stages.values())
    table["anomaly"] = np.where(stalled, "socket_read", "")
    table["cause"] = np.where(stalled, "vcpu_runnable", "")
    table["uncertainty_us"] = 2.0
    return Analysis(table=table, sources=Sources(guest=Path("guest.pcap")))


def timed(label: str, func):  # noqa: ANN001, ANN201 - a script
    start = time.perf_counter()
    result = func()
    print(f"{label:28} {time.perf_counter() - start:7.2f} s")
    return result


def main(n: int = 1_000_000) -> None:
    analysis = timed(f"build {n} rows", lambda: build(n))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline.json"
        doc = timed("baseline_document", lambda: gate.baseline_document(analysis))
        base.write_text(json.dumps(doc))
        limits = [gate.parse_budget("socket_read.max < 2ms"),
                  *gate.collect_budgets([], None, base, "20%")]
        result = timed("evaluate (25 checks)", lambda: gate.evaluate(analysis, limits))
        print(f"  passed={result.passed} failures={len(result.failures)}")
        text = timed("render_html_report", lambda: render_html_report(analysis))
        html_path = Path(tmp) / "report.html"
        html_path.write_text(text)
        marks = re.search(r'"name":"anomalies","x":\[([^\]]*)\]', text)
        count = len(marks.group(1).split(",")) if marks and marks.group(1) else 0
        print(f"  html {len(text) / 1e6:.1f} MB, anomalies marked {count} "
              f"of {int(analysis.table['anomaly'].ne('').sum())}")
        if len(sys.argv) > 2:
            html_path.replace(sys.argv[2])
        timed("plot_waterfall png", lambda: plot_waterfall(analysis, Path(tmp) / "w.png"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
