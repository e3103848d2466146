"""Statistics of stage durations: what the terminal summary, the gate and the reports compare."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .model import STAGES, stage_column

#: Statistic names a budget may use, e.g. ``socket_read.p99``.
STATISTICS: tuple[str, ...] = ("count", "p50", "p90", "p99", "p99.9", "max", "mean", "anomalies")

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


def stage_stats(table: pd.DataFrame, names: Iterable[str] = (*STAGES, "total"),
                ) -> dict[str, dict[str, float | int | None]]:
    """Per stage (and ``total``): count, percentiles, max, mean (µs) and anomaly count.

    ``names`` may also hold intervals (``backend_to_guest``, ``response_to_next``): any name
    with a ``<name>_us`` column, whose anomalies are the rows labelled with it. Stages with no
    measured packet get ``count`` 0 and None for the rest.
    """
    result: dict[str, dict[str, float | int | None]] = {}
    anomaly = table["anomaly"] if "anomaly" in table.columns else None
    for stage in names:
        column = stage_column(stage)
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        entry: dict[str, float | int | None] = {"count": int(values.size)}
        if values.size:
            pct = np.percentile(values, list(_PERCENTILES.values()))
            entry.update({name: float(v) for name, v in zip(_PERCENTILES, pct, strict=True)})
            entry["max"] = float(values.max())
            entry["mean"] = float(values.mean())
        else:
            entry.update({name: None for name in (*_PERCENTILES, "max", "mean")})
        if anomaly is not None:
            if stage == "total":
                entry["anomalies"] = int(anomaly.fillna("").astype(str).ne("").sum())
            else:
                entry["anomalies"] = int((anomaly == stage).sum())
        else:
            entry["anomalies"] = 0
        result[stage] = entry
    return result
