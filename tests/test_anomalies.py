"""Robust baselines, outliers and named stalls (pipeline.anomalies) on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from xentrace_cli.pipeline import anomalies


def test_healthy_jitter_is_never_anomalous() -> None:
    # a very tight stage (σ ≈ 2 µs) with a 300 µs outlier: under the 1 ms floor, not anomalous
    rng = np.random.default_rng(1)
    ring = rng.normal(40, 2, 5000)
    ring[17] = 340
    label, base = anomalies.detect({"ring": ring})
    assert (label == "").all()
    assert base["ring"].threshold_us == base["ring"].median_us + anomalies.FLOOR_US


def test_stall_found_in_its_stage() -> None:
    rng = np.random.default_rng(2)
    ring = rng.exponential(30, 1000)
    socket_read = rng.exponential(20, 1000)
    socket_read[500] += 100_000
    ring[700] += 30_000
    label, base = anomalies.detect({"ring": ring, "socket_read": socket_read})
    assert label[500] == "socket_read"
    assert label[700] == "ring"
    assert (label != "").sum() == 2
    assert base["socket_read"].rule == "robust"


def test_the_stage_standing_out_most_wins() -> None:
    ring = np.r_[np.full(100, 50.0), 5_000.0]
    remap = np.r_[np.full(100, 50.0), 40_000.0]
    label, _ = anomalies.detect({"ring": ring, "remap": remap})
    assert label[-1] == "remap"


def test_absolute_threshold_lowers_the_bar() -> None:
    values = np.r_[np.full(100, 100.0), 600.0]
    assert (anomalies.detect({"socket_read": values})[0] == "").all()
    label, base = anomalies.detect({"socket_read": values}, {"socket_read": 500.0})
    assert label[-1] == "socket_read" and (label[:-1] == "").all()
    assert base["socket_read"].rule == "absolute"


def test_nan_values_and_small_samples() -> None:
    values = np.array([np.nan, 10.0, 1e6])  # three values: too few for a baseline
    label, base = anomalies.detect({"ring": values})
    assert (label == "").all()
    assert base["ring"].count == 2 and base["ring"].rule == "none"


def test_named_stalls() -> None:
    names = anomalies.name_stall(np.array([29_000, 41_000, 103_000, 195_000, 70_000, 5,
                                           np.nan]))
    assert names.tolist() == ["≈30 ms", "≈40 ms", "≈100 ms", "≈200 ms", "", "", ""]
    assert anomalies.stall_reason("≈30 ms") == "scheduler slice"


def test_shared_stall_takes_the_packets_that_waited_inside_it() -> None:
    # packet 0 waited 30 ms; packets 1, 2 were queued inside that window, packet 3 after it
    start = np.array([0, 10_000_000, 20_000_000, 40_000_000])
    end = np.array([30_000_000, 30_000_000, 30_010_000, 40_050_000])
    values = (end - start) / 1e3
    anomalous = np.array([True, False, False, False])
    hit = anomalies.shared_stalls(start, end, anomalous, values, median_us=50.0, margin_us=200.0)
    assert hit.tolist() == [True, True, False, False]


def _plain_detect(stages: dict[str, np.ndarray], thresholds: dict[str, float]
                  ) -> tuple[np.ndarray, dict[str, anomalies.Baseline]]:
    """detect as first written: every row's excess and comparison, over all rows."""
    n = len(next(iter(stages.values())))
    best = np.full(n, -np.inf)
    label = np.full(n, "", dtype=object)
    bases = {}
    for name, values in stages.items():
        base = anomalies.baseline(values, thresholds.get(name))
        bases[name] = base
        with np.errstate(invalid="ignore"):
            over = np.isfinite(values) & (values > base.threshold_us)
        excess = np.where(over, values - np.nan_to_num(base.median_us), 0.0)
        better = over & (excess > best)
        label[better] = name
        best = np.where(better, excess, best)
    return label, bases


@pytest.mark.parametrize("seed", range(40))
def test_detect_at_the_rows_over_is_the_plain_one(seed: int) -> None:
    # detect compares the excess at the rows over their threshold only: the same labels
    # (ties: the first stage keeps the row) and baselines as every row compared
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    stages = {}
    for name in ("ring", "copy", "vmm", "socket_read")[:int(rng.integers(1, 5))]:
        values = np.round(rng.exponential(100, n) * rng.choice([1, 1, 50], n), -1)
        values[rng.random(n) < 0.2] = np.nan
        values[rng.random(n) < 0.02] = np.inf
        stages[name] = values
    thresholds = {"copy": 500.0} if seed % 3 == 0 else {}
    got, got_bases = anomalies.detect(stages, thresholds)
    want, want_bases = _plain_detect(stages, thresholds)
    assert got.tolist() == want.tolist()
    assert {k: b.to_dict() for k, b in got_bases.items()}.__repr__() \
        == {k: b.to_dict() for k, b in want_bases.items()}.__repr__()
