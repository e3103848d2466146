"""The result of an analysis: what reports, the gate and the Python API consume.

Defined apart from the pipeline (``analyze.py``) so that consumers do not import the
alignment and matching machinery, and so that data flows one way.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..model import Sources
from .stats import stage_stats


def text_column(values: Any) -> pd.api.extensions.ExtensionArray:
    """A text column of the table (pandas' ``str``, Arrow's large strings) from Python
    strings: built by Arrow (half the time of ``pd.array(values, dtype="str")``, which checks
    each value in Python first), without a fixed-width copy (``values.astype(str)``)."""
    return pd.array(pa.array(np.asarray(values, dtype=object), type=pa.large_string()),
                    dtype="str")


@dataclasses.dataclass
class Analysis:
    """Per-packet stage split of one set of sources, with the context to judge it."""

    table: pd.DataFrame
    """One row per data segment: the columns of DESIGN.md / issue 4 (``t_<checkpoint>``,
    ``<stage>_us``, ``total_us``, ``anomaly``, ``cause``, ``uncertainty_us``, …)."""
    sources: Sources
    """The inputs the analysis used."""
    alignment: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Per clock pair (e.g. ``guest->dom0``, ``tsc->dom0``): offset, drift, quality
    (``bounded``, ``one-sided``, ``inconsistent``, ``identity``), uncertainty in µs."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """What the reader of the report must know: merged stages, blind spots, estimates."""
    flows: pd.DataFrame | None = None
    """Per-flow view of a lone capture: request → response, response → next action, gaps."""
    baselines: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Per stage: the robust normal range anomalies were judged against."""

    @property
    def stats(self) -> dict[str, dict[str, float | int | None]]:
        """Stage statistics (count, p50 … max, mean, anomalies), µs."""
        return stage_stats(self.table)

    def to_document(self) -> dict[str, Any]:
        """The JSON document of ``analyze --format json``: summary, alignment, packets."""
        return {
            "sources": {name: str(getattr(self.sources, name)) for name in
                        self.sources.present},
            "summary": {"stages": self.stats, "notes": list(self.notes),
                        "baselines": self.baselines,
                        "packets": int(len(self.table)),
                        # the clock of every t_<checkpoint> (dom0's, or the guest capture's)
                        "clock": self.table.attrs.get("clock")},
            "alignment": self.alignment,
            "flows": _records(self.flows) if self.flows is not None else [],
            "packets": _records(self.table),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (missing values as None), for embedding tables in the document."""
    buf = io.StringIO()
    frame.to_json(buf, orient="records", default_handler=str)
    return json.loads(buf.getvalue())
