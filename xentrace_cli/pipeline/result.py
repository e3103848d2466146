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


def text_of_codes(values: pd.Series) -> pd.api.extensions.ExtensionArray:
    """:func:`text_column` of a categorical column: its categories' text taken by Arrow at
    each row's code (not a Python string per row, then checked: 7 ms instead of 116 ms per
    million rows). A row without a value (code -1) is null, as ``values.to_numpy()``'s NaN
    is in :func:`text_column`."""
    codes = values.cat.codes.to_numpy()
    names = pa.array(np.asarray(values.cat.categories, dtype=object), type=pa.large_string())
    return pd.array(names.take(pa.array(codes, mask=codes < 0)), dtype="str")


def text_at(n: int, rows: np.ndarray, values: Any) -> pd.api.extensions.ExtensionArray:
    """:func:`text_column` of ``n`` rows, empty but at ``rows`` (distinct), which hold
    ``values``: the few flagged rows' text put in place by Arrow (``""`` rows are zero-length
    offsets, no Python string each; 20 ms per 600,000-row column otherwise)."""
    rows = np.asarray(rows, dtype=np.int64)
    values = np.asarray(values, dtype=object)
    if rows.size > 1 and not (rows[1:] > rows[:-1]).all():  # the text laid out in row order
        order = np.argsort(rows, kind="stable")
        rows, values = rows[order], values[order]
    text = pa.array(values, type=pa.large_string())
    if text.null_count:  # None is no text: as text_column has it
        full = np.full(n, "", dtype=object)
        full[rows] = values
        return text_column(full)
    lengths = np.zeros(n, dtype=np.int64)
    if rows.size:
        lengths[rows] = np.diff(np.frombuffer(text.buffers()[1], dtype=np.int64))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = text.buffers()[2] if rows.size else None
    column = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets),
                                              data if data is not None else pa.py_buffer(b""))
    return pd.array(column, dtype="str")


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

    def to_document(self, frames: bool = False) -> dict[str, Any]:
        """The JSON document of ``analyze --format json``: summary, alignment, packets
        (``frames``: the flows and packets as the DataFrames, for
        :func:`.outputs.tables.write_json_document` to write a chunk of rows at a time)."""
        if frames:
            return {**self._document_head(),
                    "flows": self.flows if self.flows is not None else [],
                    "packets": self.table}
        return {**self._document_head(),
                "flows": _records(self.flows) if self.flows is not None else [],
                "packets": _records(self.table)}

    def _document_head(self) -> dict[str, Any]:
        """:meth:`to_document` but its two tables."""
        return {
            "sources": {name: str(getattr(self.sources, name)) for name in
                        self.sources.present},
            "summary": {"stages": self.stats, "notes": list(self.notes),
                        "baselines": self.baselines,
                        "packets": int(len(self.table)),
                        # the clock of every t_<checkpoint> (dom0's, or the guest capture's)
                        "clock": self.table.attrs.get("clock")},
            "alignment": self.alignment,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (missing values as None), for embedding tables in the document."""
    buf = io.StringIO()
    frame.to_json(buf, orient="records", default_handler=str)
    return json.loads(buf.getvalue())
