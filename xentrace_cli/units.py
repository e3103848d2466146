"""Durations as people write them (``2ms``, ``150us``, ``0.1s``) and as reports print them.

A printed duration never shows more precision than its uncertainty supports.
"""

from __future__ import annotations

import math
import re

_UNIT_US = {"ns": 1e-3, "us": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|µs|ms|s)?\s*$")


def parse_duration_us(text: str) -> float:
    """``"2ms"`` → 2000.0 (µs). A bare number is microseconds. Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 150us, 2ms, 0.1s)")
    value, unit = match.groups()
    return float(value) * _UNIT_US[unit or "us"]


def format_duration(us: float | None, uncertainty_us: float | None = None) -> str:
    """A duration in the unit that suits it, rounded to what its uncertainty allows.

    ``format_duration(1234.5)`` → ``"1.23 ms"``; ``format_duration(1234.5, 40)`` →
    ``"1.23 ms ±40 µs"``; ``format_duration(1234.5, 400)`` → ``"1.2 ms ±0.4 ms"``.
    """
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return "–"
    magnitude = abs(us)
    if magnitude >= 1e6:
        unit, scale = "s", 1e6
    elif magnitude >= 1e3:
        unit, scale = "ms", 1e3
    else:
        unit, scale = "µs", 1.0
    if uncertainty_us is None or not math.isfinite(uncertainty_us) or uncertainty_us <= 0:
        digits = 0 if unit == "µs" else (2 if magnitude / scale < 100 else 1)
        return f"{us / scale:.{digits}f} {unit}"
    # one significant digit of uncertainty sets the last digit shown
    exponent = math.floor(math.log10(uncertainty_us / scale))
    digits = max(0, -exponent)
    unc_unit, unc_scale = ("µs", 1.0) if uncertainty_us < 1e3 else ("ms", 1e3)
    unc_digits = max(0, -math.floor(math.log10(uncertainty_us / unc_scale)))
    return (f"{us / scale:.{digits}f} {unit} "
            f"±{uncertainty_us / unc_scale:.{unc_digits}f} {unc_unit}")


def counted(n: int, noun: str) -> str:
    """``counted(1, "exchange")`` → ``1 exchange``, ``counted(3, "exchange")`` → ``3 exchanges``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
