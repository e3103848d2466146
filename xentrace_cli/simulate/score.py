"""How close an analysis of a simulated set comes to its truth: the scoring tests and the
accuracy benchmark (``benchmarks/accuracy.py``) share.

:func:`join_truth` pairs each row of the analysis table with the truth row of the same data
segment (TCP: flow and sequence number; UDP: flow and order in the flow, datagrams having no
sequence); :func:`stage_errors` and :func:`anomaly_scores` measure the stages and the
anomalies against the truth.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..model import DIRECTION_STAGES

#: Columns that identify a data segment in both tables (besides the UDP order).
KEYS: tuple[str, ...] = ("src", "sport", "dst", "dport", "proto", "direction", "seq")
#: Timestamps are whole µs at two ends: an error this small is no error.
QUANTUM_US = 2.0


def read_truth(directory: str | Path) -> pd.DataFrame:
    """The set's ``truth.csv`` with empty labels as ''."""
    real = pd.read_csv(Path(directory) / "truth.csv", dtype={"anomaly": str, "cause": str})
    return real.fillna({"anomaly": "", "cause": ""})


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("sport", "dport", "seq", "proto"):
        out[col] = pd.to_numeric(out[col]).fillna(-1).astype("int64")
    for col in ("src", "dst", "direction"):
        out[col] = out[col].astype(str)
    # datagrams: their order in the flow stands in for a sequence number
    udp = out["proto"].to_numpy() != 6
    order = out[udp].groupby(["src", "sport", "dst", "dport", "direction"]).cumcount()
    out.loc[udp, "seq"] = order.to_numpy()
    return out


def join_truth(table: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Analysis rows beside their truth rows (truth columns suffixed ``_true``)."""
    ours = _keyed(table.sort_values("t_guest_ns" if "t_guest_ns" in table else "t_guest",
                                    kind="stable"))
    real = _keyed(truth.sort_values("t_guest", kind="stable"))
    return ours.merge(real, on=list(KEYS), suffixes=("", "_true"), how="inner")


@dataclasses.dataclass(frozen=True)
class StageError:
    """One stage of one direction against the truth."""

    direction: str
    stage: str
    truth: int
    """Rows the truth measures."""
    measured: int
    """Of those, rows the analysis measured (the rest it left empty: unresolved)."""
    within: float
    """Share of the measured rows within their stated uncertainty + :data:`QUANTUM_US`."""
    p50_us: float
    p95_us: float
    max_us: float

    @property
    def unresolved(self) -> float:
        """Share of the truth's rows left empty."""
        return 1 - self.measured / self.truth if self.truth else 0.0


def stage_errors(both: pd.DataFrame) -> list[StageError]:
    """Per direction and stage the truth measures: how far the analysis is from it."""
    out = []
    for way, stages in DIRECTION_STAGES.items():
        rows = both[both["direction"] == way]
        for stage in stages:
            col = f"{stage}_us"
            if f"{col}_true" not in rows or not rows[f"{col}_true"].notna().any():
                continue
            real = pd.to_numeric(rows[f"{col}_true"], errors="coerce").to_numpy(float)
            ours = pd.to_numeric(rows[col], errors="coerce").to_numpy(float)
            have = np.isfinite(real)
            measured = have & np.isfinite(ours)
            err = np.abs(ours[measured] - real[measured])
            tol = rows["uncertainty_us"].to_numpy(float)[measured] + QUANTUM_US
            pct = np.percentile(err, [50, 95]) if err.size else (np.nan, np.nan)
            out.append(StageError(way, stage, int(have.sum()), int(measured.sum()),
                                  float((err <= tol).mean()) if err.size else float("nan"),
                                  float(pct[0]), float(pct[1]),
                                  float(err.max()) if err.size else float("nan")))
    return out


@dataclasses.dataclass(frozen=True)
class AnomalyScore:
    """Anomalies found against the injected ones."""

    injected: int
    found: int
    """Injected rows flagged in the right stage."""
    flagged: int
    """Rows the analysis flagged."""
    false: int
    """Flagged rows the truth does not flag."""
    causes_right: int
    """Injected rows with the right cause."""

    @property
    def recall(self) -> float:
        return self.found / self.injected if self.injected else 1.0

    @property
    def precision(self) -> float:
        return 1 - self.false / self.flagged if self.flagged else 1.0


def anomaly_scores(both: pd.DataFrame) -> AnomalyScore:
    """Stage anomalies (not the single-capture intervals) against the truth's labels."""
    ours = both["anomaly"].fillna("").astype(str).to_numpy()
    real = both["anomaly_true"].fillna("").astype(str).to_numpy()
    lone = np.isin(ours, ["request_to_response", "response_to_next"])
    injected = real != ""
    cause = both["cause"].fillna("").astype(str).to_numpy()
    cause_true = both["cause_true"].fillna("").astype(str).to_numpy()
    flagged = (ours != "") & ~lone
    return AnomalyScore(int(injected.sum()), int((injected & (ours == real)).sum()),
                        int(flagged.sum()), int((flagged & ~injected).sum()),
                        int((injected & (cause == cause_true)).sum()))
