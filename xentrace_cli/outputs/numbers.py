"""Numbers in report columns: one unit and one number of decimals per column.

A column that mixes ``4 µs`` and ``99.83 ms`` makes the reader compare units before values;
a column written in one unit, right-aligned with the same decimals, compares at a glance. The
decimals never claim more than the clocks support: the last digit is that of the column's
largest uncertainty (one significant digit), at best 1 µs — or 0.1 µs where every clock is
below 1 µs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class ColumnFormat:
    """How every duration of one column is written."""

    unit: str
    """``µs`` or ``ms``."""
    scale: float
    """µs per unit."""
    digits: int
    """Decimals after the point."""

    def __call__(self, us: float | None) -> str:
        """The value in the column's unit, without the unit (the header names it); ``–`` for
        a missing value."""
        if us is None or not math.isfinite(float(us)):
            return "–"
        return f"{float(us) / self.scale:.{self.digits}f}"

    def with_unit(self, us: float | None) -> str:
        """The value followed by the unit (``107.013 ms``)."""
        text = self(us)
        return text if text == "–" else f"{text} {self.unit}"


def column_format(values_us: Iterable[float | None] | np.ndarray,
                  uncertainty_us: float | None = None) -> ColumnFormat:
    """The format of a column of durations (µs): milliseconds once the largest value reaches
    1 ms, else microseconds; decimals down to the uncertainty's first significant digit."""
    values = np.asarray(list(values_us) if not isinstance(values_us, np.ndarray)
                        else values_us, dtype=float)
    values = values[np.isfinite(values)]
    largest = float(np.abs(values).max()) if values.size else 0.0
    unit, scale = ("ms", 1e3) if largest >= 1e3 else ("µs", 1.0)
    resolution_us = 1.0
    if uncertainty_us is not None and math.isfinite(uncertainty_us) and uncertainty_us > 0:
        resolution_us = max(0.1, 10.0 ** math.floor(math.log10(uncertainty_us)))
    digits = max(0, -math.floor(math.log10(resolution_us / scale) + 1e-9))
    return ColumnFormat(unit=unit, scale=scale, digits=digits)
