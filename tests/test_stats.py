"""Stage statistics against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xentrace_cli.pipeline.stats import parse_statistic, percentile_q, stage_stats


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


def test_any_percentile_by_hand() -> None:
    # 1..100 µs: numpy's linear interpolation puts p<q> at 1 + 99·q/100
    table = pd.DataFrame({"socket_read_us": np.arange(1, 101, dtype=float),
                          "anomaly": [""] * 100})
    entry = stage_stats(table, ["socket_read"], ["p95", "p99.99", "p12.5", "p0", "p100"])
    assert entry["socket_read"]["p95"] == pytest.approx(95.05)
    assert entry["socket_read"]["p99.99"] == pytest.approx(99.9901)
    assert entry["socket_read"]["p12.5"] == pytest.approx(13.375)
    assert (entry["socket_read"]["p0"], entry["socket_read"]["p100"]) == (1.0, 100.0)
    # listed in increasing order, then max, mean and the anomalies; the defaults are not added
    assert list(entry["socket_read"]) == ["count", "p0", "p12.5", "p95", "p99.99", "p100",
                                          "max", "mean", "anomalies"]
    empty = stage_stats(table.iloc[:0], ["socket_read"], ["p95"])["socket_read"]
    assert empty == {"count": 0, "p95": None, "max": None, "mean": None, "anomalies": 0}


@pytest.mark.parametrize(("text", "name"), [
    ("p50", "p50"), ("p050", "p50"), ("p99.90", "p99.9"), ("p99.99", "p99.99"), ("p0", "p0"),
    ("p100", "p100"), ("p100.0", "p100"), ("p0.5", "p0.5"), ("max", "max"), ("mean", "mean"),
    ("count", "count"), ("anomalies", "anomalies"),
])
def test_parse_statistic(text: str, name: str) -> None:
    assert parse_statistic(text) == name


@pytest.mark.parametrize("text", ["p101", "p100.5", "p", "p-1", "p99.", "P99", "median", "min",
                                  "p99.1234567", "p1e2", ""])
def test_parse_statistic_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="unknown statistic"):
        parse_statistic(text)


@settings(max_examples=200, deadline=None)
@given(q=st.decimals(min_value=0, max_value=100, places=4))
def test_any_percentile_name_is_its_numpy_percentile(q) -> None:
    # a percentile written with trailing zeros is the same statistic, computed as numpy does
    text = f"p{q:f}"
    name = parse_statistic(text)
    assert percentile_q(name) == float(q)
    assert parse_statistic(name) == name
    values = np.linspace(0.0, 1.0, 37) ** 2
    entry = stage_stats(pd.DataFrame({"ring_us": values}), ["ring"], [name])["ring"]
    assert entry[name] == pytest.approx(np.percentile(values, float(q)))
