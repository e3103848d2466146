"""Rows numbered by their distinct combination of columns, in order of first appearance.

What ``pd.MultiIndex.from_arrays(columns).factorize()`` gives, without the Python tuple it
makes per row: the kinds of exchange :mod:`.gaps` judges gaps against, and the connections
:mod:`.tcp_analysis` names, on a million frames or a hundred thousand exchanges.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def first_seen_codes(*columns: Any) -> np.ndarray:
    """Each row's distinct combination of ``columns``, numbered 0, 1, … in order of first
    appearance (a missing value is a value): ``pd.MultiIndex.from_arrays(columns)
    .factorize()[0]``."""
    key: np.ndarray | None = None
    for column in columns:
        codes = pd.factorize(column, use_na_sentinel=False)[0].astype(np.int64)
        if key is not None:  # two columns' codes as one, renumbered: stays below n**2
            codes = pd.factorize(key * (int(codes.max()) + 1 if codes.size else 1) + codes)[0]
        key = codes
    return key if key is not None else np.zeros(0, dtype=np.int64)


def first_rows(codes: np.ndarray) -> np.ndarray:
    """The row where each code of :func:`first_seen_codes` first appears (code order): a
    code is new where it exceeds every code before it."""
    before = np.maximum.accumulate(np.r_[-1, codes[:-1]]) if codes.size else codes
    return np.flatnonzero(codes > before)
