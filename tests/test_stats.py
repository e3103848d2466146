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


def test_intervals_by_name() -> None:
    # a merged interval: 10, 20, 30 µs and one not measured; one row labelled with it
    table = pd.DataFrame({"backend_to_guest_us": [10.0, 20.0, 30.0, np.nan],
                          "socket_read_us": [1.0, 2.0, 3.0, 4.0],
                          "anomaly": ["backend_to_guest", "", "socket_read", ""]})
    stats = stage_stats(table, ["backend_to_guest"])
    assert list(stats) == ["backend_to_guest"]
    entry = stats["backend_to_guest"]
    assert entry["count"] == 3 and entry["p50"] == 20.0 and entry["max"] == 30.0
    assert entry["mean"] == pytest.approx(20.0)
    assert entry["anomalies"] == 1


def test_directions_are_apart() -> None:
    # one column per stage serves both directions: rx rows 1, 2, 3 µs; tx rows 100, 200 µs
    table = pd.DataFrame({"ring_us": [1.0, 2.0, 3.0, 100.0, 200.0],
                          "direction": ["rx", "rx", "rx", "tx", "tx"],
                          "anomaly": ["", "", "ring", "ring", ""]})
    stats = stage_stats(table, ["ring", "tx.ring", "rx.ring"])
    assert stats["ring"] == stats["rx.ring"]
    assert stats["ring"]["count"] == 3 and stats["ring"]["max"] == 3.0
    assert stats["ring"]["anomalies"] == 1
    assert stats["tx.ring"]["count"] == 2 and stats["tx.ring"]["p50"] == 150.0
    assert stats["tx.ring"]["anomalies"] == 1
