"""The analysis on the simulator's realistic Xen host (``simulate/host``, written apart from
the analyzer): every scenario, both directions, several seeds, scored against the truth file
(``simulate.score``); and a property over random host shapes: no stage below −(its
uncertainty + the timestamps' resolution), checkpoints in path order."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xentrace_cli.model import DIRECTION_STAGES, STAGES, TX_STAGES
from xentrace_cli.pipeline.analyze import analyze_files
from xentrace_cli.pipeline.path_order import ORDER, RESOLUTION_NS
from xentrace_cli.simulate import SCENARIOS
from xentrace_cli.simulate.host.shape import HostShape
from xentrace_cli.simulate.score import anomaly_scores, join_truth, read_truth, stage_errors
from xentrace_cli.sources.manifest import read_manifest

REQUESTS = 240
SEEDS = (1, 2)
#: Share of each stage's truth rows that must be measured, and of those within the stated
#: uncertainty + 2 µs of the truth.
MEASURED_SHARE = 0.98
WITHIN_SHARE = 0.99

_SETS: dict[tuple[str, int], tuple[Path, object]] = {}


def analyzed(simulated_set, name: str, seed: int,
             shape: HostShape | None = None) -> tuple[Path, object]:
    """A realistic-host set of ``name`` and its all-sources analysis (cached per session)."""
    key = (name, seed)
    if shape is None and key in _SETS:
        return _SETS[key]
    directory = simulated_set(name, seed=seed, requests=REQUESTS, host="realistic", shape=shape)
    sources = read_manifest(directory).sources
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyze_files(sources.guest, backend=sources.backend, phys=sources.phys,
                                 xentrace=sources.xentrace, socket_log=sources.socket_log)
    if shape is None:
        _SETS[key] = (directory, analysis)
    return directory, analysis


CASES = [pytest.param(name, seed, id=f"{name}-{seed}") for name in SCENARIOS
         for seed in SEEDS]


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_every_stage_matches_the_truth(simulated_set, name: str,
                                       seed: int) -> None:
    directory, analysis = analyzed(simulated_set, name, seed)
    both = join_truth(analysis.table, read_truth(directory))
    assert len(both) >= 0.95 * len(read_truth(directory))
    errors = stage_errors(both)
    # both directions, every stage of each
    assert {(e.direction, e.stage) for e in errors} == \
        {(way, s) for way, stages in DIRECTION_STAGES.items() for s in stages}
    for e in errors:
        assert e.measured >= MEASURED_SHARE * e.truth, e
        assert e.within >= WITHIN_SHARE, e


@pytest.mark.parametrize(("name", "seed"), CASES)
def test_every_stall_is_found_with_its_cause(simulated_set,
                                             name: str, seed: int) -> None:
    directory, analysis = analyzed(simulated_set, name, seed)
    score = anomaly_scores(join_truth(analysis.table, read_truth(directory)))
    assert score.false == 0, score            # no false anomaly, healthy host included
    assert score.found == score.injected, score
    assert score.causes_right == score.injected, score
    if name not in ("healthy", "clock-skew", "offload"):   # the scenarios with faults
        assert score.injected > 0


def test_the_transmit_stall_is_on_the_transmit_stage(
        simulated_set) -> None:
    directory, analysis = analyzed(simulated_set, "tx-stall", 1)
    table = analysis.table
    tx = table[(table["direction"] == "tx") & (table["anomaly"] != "")]
    assert set(tx["anomaly"]) <= set(TX_STAGES) and len(tx)
    assert set(tx["cause"]) <= {"dom0_runnable", "vcpu_runnable"}
    # the reply that came late because its request waited in dom0 is no far-side anomaly
    assert not (table["anomaly"] == "request_to_response").any()


def _checkpoints_in_order(table: pd.DataFrame) -> None:
    """Consecutive measured checkpoints of each row in path order within its uncertainty."""
    slack = table["uncertainty_us"].to_numpy(float) * 1e3 + RESOLUTION_NS
    for way, order in ORDER.items():
        rows = (table["direction"] == way).to_numpy()
        cols = [f"t_{p}_ns" for p in order if f"t_{p}_ns" in table.columns]
        t = table[cols].to_numpy(dtype="float64", na_value=np.nan)[rows]
        for i in range(len(cols)):
            for j in range(i + 1, len(cols)):
                both = np.isfinite(t[:, i]) & np.isfinite(t[:, j])
                late = t[both, i] - t[both, j]
                assert (late <= 2 * slack[rows][both] + 1).all(), (way, cols[i], cols[j])


def _no_stage_below_its_uncertainty(table: pd.DataFrame) -> None:
    limit = -(table["uncertainty_us"].to_numpy(float) + RESOLUTION_NS / 1e3)
    for stage in {*STAGES, *TX_STAGES}:
        values = table[f"{stage}_us"].to_numpy(float)
        ok = np.isfinite(values)
        assert (values[ok] >= limit[ok] - 1e-9).all(), stage


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(1, 10_000), n_dom0=st.integers(1, 4), extra=st.integers(1, 3),
       scenario=st.sampled_from(["healthy", "dom0-starved", "black-0.1s", "tx-stall"]),
       on_guest=st.booleans())
def test_no_impossible_value_on_any_host_shape(simulated_set,
                                               seed: int, n_dom0: int, extra: int,
                                               scenario: str, on_guest: bool) -> None:
    guests = (5, 6)
    n_pcpus = n_dom0 + len(guests) + extra
    irq = (0, n_dom0) if on_guest else None          # n_dom0 is the captured guest's pCPU
    shape = HostShape(n_pcpus=n_pcpus, n_dom0=n_dom0, guests=guests, irq_pcpus=irq)
    _, analysis = analyzed(simulated_set, scenario, seed, shape)
    table = analysis.table
    assert len(table)
    _no_stage_below_its_uncertainty(table)
    _checkpoints_in_order(table)
