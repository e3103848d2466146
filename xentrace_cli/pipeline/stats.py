"""Statistics of stage durations: what the terminal summary, the gate and the reports compare.

Keys name a stage of a direction the way budgets do (``model.stat_key``): ``ring`` is the
receive direction's ring stage, ``tx.ring`` the transmit direction's. A table without a
``direction`` column is all receive.

Statistics are named as budgets write them: ``count``, ``anomalies`` (numbers of packets),
``mean``, ``max`` and any percentile ``p<q>`` with 0 ≤ q ≤ 100 (``p50``, ``p95``, ``p99.99``),
computed by numpy on demand: the summary shows the :data:`DEFAULT_PERCENTILES`, the gate asks
for the ones its budgets and baselines name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..model import DIRECTION_STAGES, split_stat_key, stage_column, stat_key

#: The percentiles every summary holds.
DEFAULT_PERCENTILES: tuple[str, ...] = ("p50", "p90", "p99", "p99.9")
#: The statistics of a default summary, in the order an entry lists them.
STATISTICS: tuple[str, ...] = ("count", *DEFAULT_PERCENTILES, "max", "mean", "anomalies")
#: Statistics that count packets (unitless); the others are durations in µs.
COUNT_STATISTICS: frozenset[str] = frozenset({"count", "anomalies"})

_PERCENTILE = re.compile(r"p(?P<int>[0-9]{1,3})(?:\.(?P<frac>[0-9]{1,6}))?")

#: The keys summarized by default: each direction's stages and its ``total``.
DEFAULT_KEYS: tuple[str, ...] = tuple(
    stat_key(name, way) for way, stages in DIRECTION_STAGES.items()
    for name in (*stages, "total"))


def parse_statistic(text: str) -> str:
    """A statistic's canonical name (``p99.90`` → ``p99.9``, ``p050`` → ``p50``).

    Raises ValueError saying which names exist.
    """
    if text in ("count", "anomalies", "mean", "max"):
        return text
    match = _PERCENTILE.fullmatch(text)
    if match:
        whole = match.group("int").lstrip("0") or "0"
        frac = (match.group("frac") or "").rstrip("0")
        name = f"p{whole}.{frac}" if frac else f"p{whole}"
        if percentile_q(name) <= 100.0:
            return name
    raise ValueError(f"unknown statistic {text!r}; one of count, anomalies, mean, max or a "
                     "percentile p0 … p100 (p50, p95, p99.9, p99.99)")


def percentile_q(stat: str) -> float:
    """``p99.9`` → 99.9; NaN for a statistic that is not a percentile."""
    match = _PERCENTILE.fullmatch(stat)
    return float(stat[1:]) if match else float("nan")


def is_percentile(stat: str) -> bool:
    """Whether ``stat`` names a percentile (``p95``)."""
    return _PERCENTILE.fullmatch(stat) is not None


def direction_rows(table: pd.DataFrame, direction: str) -> np.ndarray:
    """Boolean mask of the rows of one direction (every row is ``rx`` without the column)."""
    if "direction" not in table.columns:
        return np.full(len(table), direction == "rx")
    return (table["direction"].astype(str) == direction).to_numpy()


def stage_stats(table: pd.DataFrame, names: Iterable[str] = DEFAULT_KEYS,
                percentiles: Iterable[str] = DEFAULT_PERCENTILES,
                ) -> dict[str, dict[str, float | int | None]]:
    """Per stage key: count, percentiles, max, mean (µs) and anomaly count.

    A key is ``[tx.]<name>`` where ``<name>`` is a stage, ``total`` or any interval with a
    ``<name>_us`` column (``backend_to_guest``, ``response_to_next``); its values are that
    column on the rows of the key's direction, and its anomalies those rows labelled with the
    name (``total``: labelled with anything). A key whose column is absent is left out; one
    with no measured packet gets ``count`` 0 and None for the rest. ``percentiles`` are
    canonical names (:func:`parse_statistic`; other statistics among them are ignored); each
    entry lists them in increasing order.
    """
    wanted = sorted({p for p in percentiles if is_percentile(p)}, key=percentile_q)
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
            pct = np.percentile(values, [percentile_q(p) for p in wanted])
            entry.update({p: float(v) for p, v in zip(wanted, pct, strict=True)})
            entry["max"] = float(values.max())
            entry["mean"] = float(values.mean())
        else:
            entry.update({p: None for p in (*wanted, "max", "mean")})
        if anomaly is None:
            entry["anomalies"] = 0
        elif name == "total":
            entry["anomalies"] = int((anomaly[mine] != "").sum())
        else:
            entry["anomalies"] = int((anomaly[mine] == name).sum())
        result[key] = entry
    return result
