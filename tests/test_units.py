"""Durations parsed from budgets/thresholds and printed with honest precision."""

from __future__ import annotations

import pytest

from xentrace_cli.units import format_duration, parse_duration_us


@pytest.mark.parametrize(("text", "expected_us"), [
    ("2ms", 2000.0),
    ("150us", 150.0),
    ("150µs", 150.0),
    ("0.1s", 100_000.0),
    ("500ns", 0.5),
    ("42", 42.0),
    (" 1.5 ms ", 1500.0),
    ("1e3us", 1000.0),
])
def test_parse_duration(text: str, expected_us: float) -> None:
    assert parse_duration_us(text) == pytest.approx(expected_us)


@pytest.mark.parametrize("text", ["", "ms", "2 hours", "-3ms", "1.2.3ms"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_us(text)


def test_format_without_uncertainty_picks_unit() -> None:
    assert format_duration(42.4) == "42 µs"
    assert format_duration(1234.5) == "1.23 ms"
    assert format_duration(103_456.0) == "103.5 ms"
    assert format_duration(2_500_000.0) == "2.50 s"
    assert format_duration(None) == "–"
    assert format_duration(float("nan")) == "–"


def test_format_never_more_precise_than_uncertainty() -> None:
    # ±40 µs: the last digit shown is tens of µs, i.e. 0.01 ms
    assert format_duration(1234.5, 40) == "1.23 ms ±40 µs"
    # ±400 µs: one decimal of ms
    assert format_duration(1234.5, 400) == "1.2 ms ±400 µs"
    # ±3 ms on a 100 ms stall: whole milliseconds
    assert format_duration(103_456.0, 3000) == "103 ms ±3 ms"
    # ±2 µs on a µs-scale value
    assert format_duration(57.3, 2) == "57 µs ±2 µs"
