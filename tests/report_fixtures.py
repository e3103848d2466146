"""Hand-made analyses for the gate and report tests, with values computed here.

``make_table`` draws each packet's five stage durations (µs) from a seeded generator, lays the
checkpoints out from them, and optionally delays the application's read of some packets by a
stall (the "black 0.1 s"): those packets' ``socket_read_us`` grows by the stall and they are
marked anomalous in ``socket_read`` with cause ``vcpu_runnable``. Without xentrace, ``ring``
and ``remap`` are NaN and a merged ``backend_to_guest_us`` column holds their sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xentrace_cli.model import Sources
from xentrace_cli.pipeline.result import Analysis

START_S = 1_700_000_000.0
SPACING_S = 0.010
#: (low, high) µs of each stage's uniform draw.
STAGE_RANGES_US = {
    "vmm": (4.0, 12.0),
    "driver_domain": (20.0, 40.0),
    "ring": (5.0, 20.0),
    "remap": (20.0, 60.0),
    "socket_read": (30.0, 150.0),
}
STALL_US = 100_000.0


def make_table(n: int = 200, *, stalls: tuple[int, ...] = (), seed: int = 1,
               xentrace: bool = True, scale: dict[str, float] | None = None) -> pd.DataFrame:
    """An analysis table of ``n`` received segments; ``stalls`` are row indices delayed."""
    rng = np.random.default_rng(seed)
    stages = {name: rng.uniform(lo, hi, n) for name, (lo, hi) in STAGE_RANGES_US.items()}
    for name, factor in (scale or {}).items():
        stages[name] = stages[name] * factor
    stalled = np.zeros(n, dtype=bool)
    stalled[list(stalls)] = True
    stages["socket_read"] = stages["socket_read"] + np.where(stalled, STALL_US, 0.0)
    t_irq = START_S + np.arange(n) * SPACING_S
    t_dom0 = t_irq + stages["vmm"] * 1e-6
    t_backend = t_dom0 + stages["driver_domain"] * 1e-6
    t_copy = t_backend + stages["ring"] * 1e-6
    t_guest = t_copy + stages["remap"] * 1e-6
    t_read = t_guest + stages["socket_read"] * 1e-6
    table = pd.DataFrame({
        "src": "10.0.0.1", "sport": 11211, "dst": "10.0.0.2", "dport": 40000, "proto": 6,
        "direction": "rx", "seq": 1000 + np.arange(n) * 100, "len": 100,
        "t_irq": t_irq, "t_dom0_run": t_dom0,
        "t_phys": t_dom0 + stages["driver_domain"] * 0.4e-6,
        "t_backend": t_backend, "t_copy": t_copy,
        "t_guest_wake": t_copy + stages["remap"] * 0.3e-6,
        "t_guest_run": t_copy + stages["remap"] * 0.6e-6,
        "t_guest": t_guest, "t_read": t_read,
    })
    for name, values in stages.items():
        table[f"{name}_us"] = values
    if not xentrace:
        for name in ("t_irq", "t_dom0_run", "t_copy", "t_guest_wake", "t_guest_run"):
            table[name] = np.nan
        table["backend_to_guest_us"] = stages["ring"] + stages["remap"]
        for name in ("vmm", "driver_domain", "ring", "remap"):
            table[f"{name}_us"] = np.nan
        table["total_us"] = (t_read - t_backend) * 1e6
    else:
        table["total_us"] = sum(stages.values())
    table["anomaly"] = np.where(stalled, "socket_read", "")
    table["cause"] = np.where(stalled, "vcpu_runnable", "")
    table["uncertainty_us"] = 2.0
    return table


def make_analysis(n: int = 200, *, stalls: tuple[int, ...] = (), seed: int = 1,
                  xentrace: bool = True, scale: dict[str, float] | None = None) -> Analysis:
    """An Analysis around :func:`make_table`, with sources, alignment and notes."""
    table = make_table(n, stalls=stalls, seed=seed, xentrace=xentrace, scale=scale)
    sources = Sources(guest=Path("captures/guest.pcap"), backend=Path("captures/vif5.0.pcap"),
                      xentrace=Path("captures/xentrace.bin") if xentrace else None,
                      socket_log=Path("captures/app.strace"))
    alignment = {"guest->dom0": {"quality": "bounded", "uncertainty_us": 2.0,
                                 "offset": 0.25, "drift": 1e-6}}
    notes = ["Hand-made analysis for tests."]
    if not xentrace:
        notes.append("Without xentrace, ring and remap are merged into backend_to_guest.")
    return Analysis(table=table, sources=sources, alignment=alignment, notes=notes)


#: Row indices of the stalled packets in the "black 0.1 s" analysis.
BLACK_STALLS = (40, 41, 120, 121, 122)
#: The simulated sets of the gate and report tests: conftest's ``simulated_set(name,
#: **SCENARIO_SET)``, shared by both (``xenlat simulate NAME --seed 3 --requests 200``).
SCENARIO_SET = {"seed": 3, "requests": 200}


def scenario_sources(directory: Path, *, xentrace: bool = True) -> list[str]:
    """The CLI source arguments of a simulated capture set."""
    guest = sorted(directory.glob("guest.pcap*"))[0]
    args = [str(guest), "--socket-log", str(directory / "app.strace"),
            "--phys", str(directory / "phys.pcap")]
    if xentrace:
        args += ["--xentrace", str(directory / "xentrace.bin")]
    backend = sorted(directory.glob("vif*.pcap"))
    if backend:
        args += ["--backend", str(backend[0])]
    return args


def truth_analysis(directory: Path) -> Analysis:
    """The simulator's ground truth (truth.csv, analysis-table columns) as an Analysis."""
    table = pd.read_csv(directory / "truth.csv", keep_default_na=False,
                        na_values={c: [""] for c in ()})
    for column in table.columns:
        if column.startswith("t_") or column.endswith("_us"):
            table[column] = pd.to_numeric(table[column], errors="coerce")
    for column in ("anomaly", "cause"):
        if column in table.columns:
            table[column] = table[column].astype(str).replace("nan", "")
    return Analysis(table=table, sources=Sources(guest=sorted(directory.glob("guest.pcap*"))[0]))
