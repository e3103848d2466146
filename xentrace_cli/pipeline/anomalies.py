"""Robust baselines and outliers per stage, and stalls named by their size.

A stage value is anomalous when it stands far outside that stage's normal range: above
``median + max(K·σ, floor)`` where σ = 1.4826·MAD (the normal-consistent median absolute
deviation) and ``floor`` is an absolute margin, so microsecond jitter of a healthy run is never
"anomalous" however tight its distribution; or above an absolute ``--threshold`` the user gave.
A packet's anomaly is the stage that stands out most (largest excess over its median). Stalls
of a recognizable size are named (a ≈30 ms scheduler slice, a 40 ms or 200 ms delayed ACK,
≈100 ms, a 200 ms RTO).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

#: σ multiplier of the robust threshold.
ROBUST_K = 10.0
#: Absolute margin over the median below which nothing is anomalous (µs).
FLOOR_US = 1000.0
#: A packet inside another's stall counts as sharing it when it waited this much over the median.
SHARED_MARGIN_US = 200.0
#: A stage needs this many measured values before its baseline is trusted.
MIN_SAMPLES = 8
#: MAD → standard deviation of a normal distribution.
MAD_TO_SIGMA = 1.4826

#: Stall sizes people recognize (µs, label, what usually causes them).
NAMED_STALLS: tuple[tuple[float, str, str], ...] = (
    (10_000.0, "≈10 ms", "timer tick"),
    (30_000.0, "≈30 ms", "scheduler slice"),
    (40_000.0, "≈40 ms", "delayed ACK"),
    (100_000.0, "≈100 ms", ""),
    (200_000.0, "≈200 ms", "delayed ACK / RTO"),
    (1_000_000.0, "≈1 s", "initial RTO"),
)
#: Relative distance to a named size within which a stall takes its name.
STALL_TOLERANCE = 0.15


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The normal range of one stage, and the threshold above which a value is anomalous."""

    count: int
    median_us: float
    mad_us: float
    threshold_us: float
    """Values above this are anomalous (inf when the stage has too few values)."""
    rule: str
    """``robust`` (median + K·σ or the floor), ``absolute`` (--threshold), or ``none``."""

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready form for ``Analysis.baselines``."""
        return dataclasses.asdict(self)


def baseline(values: np.ndarray, absolute_us: float | None = None) -> Baseline:
    """The robust baseline of one stage's values (NaN = not measured)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Baseline(0, float("nan"), float("nan"),
                        absolute_us if absolute_us is not None else float("inf"),
                        "absolute" if absolute_us is not None else "none")
    # both medians partition their own arrays in place (``finite`` is a copy already; its
    # order changes neither the deviations' values nor their median): no copy of each
    median = float(np.median(finite, overwrite_input=True))
    mad = float(np.median(np.abs(finite - median), overwrite_input=True))
    if finite.size >= MIN_SAMPLES:
        robust = median + max(ROBUST_K * MAD_TO_SIGMA * mad, FLOOR_US)
        rule = "robust"
    else:
        robust, rule = float("inf"), "none"
    if absolute_us is not None and absolute_us < robust:
        return Baseline(int(finite.size), median, mad, float(absolute_us), "absolute")
    return Baseline(int(finite.size), median, mad, robust, rule)


def detect(stages: Mapping[str, np.ndarray], thresholds: Mapping[str, float] | None = None,
           ) -> tuple[np.ndarray, dict[str, Baseline]]:
    """The anomalous stage of each packet ('' when none) and each stage's baseline.

    ``stages`` maps a stage name to its per-packet values (µs, NaN when not measured), all of
    one length; ``thresholds`` maps a stage (or ``total``) to an absolute limit in µs.
    """
    thresholds = dict(thresholds or {})
    names = list(stages)
    n = len(next(iter(stages.values()))) if stages else 0
    best_excess = np.full(n, -np.inf)
    label = np.full(n, "", dtype=object)
    baselines = {}
    for name in names:
        values = np.asarray(stages[name], dtype=float)
        base = baseline(values, thresholds.get(name))
        baselines[name] = base
        with np.errstate(invalid="ignore"):
            over = np.flatnonzero(np.isfinite(values) & (values > base.threshold_us))
        # compare stages by how far they stand above their own normal value: at the few rows
        # over the threshold only (elsewhere nothing is better than what a row has)
        excess = values[over] - np.nan_to_num(base.median_us)
        wins = excess > best_excess[over]
        label[over[wins]] = name
        best_excess[over[wins]] = excess[wins]
    return label, baselines


def name_stall(us: np.ndarray) -> np.ndarray:
    """The name of each duration's recognizable size (``≈100 ms``), '' when none fits."""
    us = np.asarray(us, dtype=float)
    out = np.full(us.shape, "", dtype=object)
    sizes = np.array([s for s, _, _ in NAMED_STALLS])
    labels = np.array([label for _, label, _ in NAMED_STALLS], dtype=object)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(np.log(us[..., None] / sizes))
    ratio = np.where(np.isfinite(ratio), ratio, np.inf)
    nearest = np.argmin(ratio, axis=-1)
    close = np.take_along_axis(ratio, nearest[..., None], axis=-1)[..., 0]
    fits = close <= np.log1p(STALL_TOLERANCE)
    out[fits] = labels[nearest[fits]]
    return out


def stall_reason(label: str) -> str:
    """What a named stall usually is (``≈30 ms`` → ``scheduler slice``)."""
    for _, name, reason in NAMED_STALLS:
        if name == label:
            return reason
    return ""


def shared_stalls(start_ns: np.ndarray, end_ns: np.ndarray, anomalous: np.ndarray,
                  values_us: np.ndarray, median_us: float, margin_us: float) -> np.ndarray:
    """Packets whose stage interval lies inside an anomalous packet's interval of that stage.

    They waited through the same stall (copied while the guest vCPU was preempted, say) but
    arrived part-way into it, so their own wait may be below the threshold; they count when
    they still waited ``margin_us`` over the median.
    """
    n = start_ns.size
    hit = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(anomalous & (start_ns >= 0) & (end_ns >= 0))
    if rows.size == 0:
        return hit
    # merge the stall intervals, then test each packet's interval against them
    order = np.argsort(start_ns[rows], kind="stable")
    s = start_ns[rows][order]
    e = np.maximum.accumulate(end_ns[rows][order])
    new = np.ones(s.size, dtype=bool)
    new[1:] = s[1:] > e[:-1]
    group = np.cumsum(new) - 1
    g_start = s[new]
    g_end = np.zeros(group.max() + 1, dtype=np.int64)
    np.maximum.at(g_end, group, e)
    k = np.searchsorted(g_start, start_ns, side="right") - 1
    inside = (k >= 0) & (start_ns >= 0)
    k = np.maximum(k, 0)
    inside &= end_ns <= g_end[k]
    with np.errstate(invalid="ignore"):
        inside &= np.isfinite(values_us) & (values_us > median_us + margin_us)
    return inside
