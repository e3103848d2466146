"""Statistics of stage durations: what the terminal summary, the gate and the reports compare.

Keys name a stage of a direction the way budgets do (``model.stat_key``): ``ring`` is the
receive direction's ring stage, ``tx.ring`` the transmit direction's. A table without a
``direction`` column is all receive.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .model import DIRECTION_STAGES, split_stat_key, stage_column, stat_key

#: Statistic names a budget may use, e.g. ``socket_read.p99``.
STATISTICS: tuple[str, ...] = ("count", "p50", "p90", "p99", "p99.9", "max", "mean", "anomalies")

_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}

#: The keys summarized by default: each direction's stages and its ``total``.
DEFAULT_KEYS: tuple[str, ...] = tuple(
    stat_key(name, way) for way, stages in DIRECTION_STAGES.items()
    for name in (*stages, "total"))


def direction_rows(table: pd.DataFrame, direction: str) -> np.ndarray:
    """Boolean mask of the rows of one direction (every row is ``rx`` without the column)."""
    if "direction" not in table.columns:
        return np.full(len(table), direction == "rx")
    return (table["direction"].astype(str) == direction).to_numpy()


def stage_stats(table: pd.DataFrame, names: Iterable[str] = DEFAULT_KEYS,
                ) -> dict[str, dict[str, float | int | None]]:
    """Per stage key: count, percentiles, max, mean (µs) and anomaly count.

    A key is ``[tx.]<name>`` where ``<name>`` is a stage, ``total`` or any interval with a
    ``<name>_us`` column (``backend_to_guest``, ``response_to_next``); its values are that
    column on the rows of the key's direction, and its anomalies those rows labelled with the
    name (``total``: labelled with anything). A key whose column is absent is left out; one
    with no measured packet gets ``count`` 0 and None for the rest.
    """
    result: dict[str, dict[str, float | int | None]] = {}
    anomaly = (table["anomaly"].fillna("").astype(str).to_numpy()
               if "anomaly" in table.columns else None)
    rows = {way: direction_rows(table, way) for way in DIRECTION_STAGES}
    for key in names:
        way, name = split_stat_key(key)
        column = stage_column(name)
        if column not in table.columns:
            continue
        mine = rows[way]
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)[mine]
        values = values[np.isfinite(values)]
        entry: dict[str, float | int | None] = {"count": int(values.size)}
        if values.size:
            pct = np.percentile(values, list(_PERCENTILES.values()))
            entry.update({p: float(v) for p, v in zip(_PERCENTILES, pct, strict=True)})
            entry["max"] = float(values.max())
            entry["mean"] = float(values.mean())
        else:
            entry.update({p: None for p in (*_PERCENTILES, "max", "mean")})
        if anomaly is None:
            entry["anomalies"] = 0
        elif name == "total":
            entry["anomalies"] = int((anomaly[mine] != "").sum())
        else:
            entry["anomalies"] = int((anomaly[mine] == name).sum())
        result[key] = entry
    return result
