"""Stage statistics against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.stats import stage_stats


def test_stats_by_hand() -> None:
    # socket_read: 1..100 µs and one NaN (not measured); two anomalies in socket_read, one in vmm
    values = np.arange(1, 101, dtype=float)
    table = pd.DataFrame({
        "socket_read_us": np.append(values, np.nan),
        "total_us": np.append(values * 2, 5.0),
        "anomaly": ["socket_read", "socket_read", "vmm"] + [""] * 98,
    })
    stats = stage_stats(table)
    sr = stats["socket_read"]
    assert sr["count"] == 100
    # numpy's default linear interpolation: p50 of 1..100 is 50.5, p90 is 90.1, p99 is 99.01
    assert sr["p50"] == pytest.approx(50.5)
    assert sr["p90"] == pytest.approx(90.1)
    assert sr["p99"] == pytest.approx(99.01)
    assert sr["max"] == 100.0
    assert sr["mean"] == pytest.approx(50.5)
    assert sr["anomalies"] == 2
    assert stats["total"]["count"] == 101
    assert stats["total"]["anomalies"] == 3
    assert "vmm" not in stats  # column absent: no statistics invented


def test_stage_without_measurements() -> None:
    table = pd.DataFrame({"ring_us": [np.nan, np.nan], "anomaly": ["", ""]})
    ring = stage_stats(table)["ring"]
    assert ring["count"] == 0
    assert ring["p99"] is None and ring["max"] is None
    assert ring["anomalies"] == 0
