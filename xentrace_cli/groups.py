"""Group-by on numpy arrays: codes for values, sums, counts and percentiles per group.

What ``pandas.factorize`` and ``groupby`` give, for the paths that must not import pandas
(``xenlat trace`` on a small file finishes before pandas would have loaded). Values are coded
by a multiplicative hash into a table (exact: a collision is detected and the table grown, or
the values sorted), so coding millions of values with few distinct ones costs a few passes.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

#: Knuth's multiplicative hash constants (2**64 and 2**32 over the golden ratio).
_MULT = np.uint64(0x9E3779B97F4A7C15)
_MULT32 = np.uint32(0x9E3779B1)


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` (int64, one per value) and the distinct ``uniques`` (values' dtype) with
    ``uniques[codes] == values``. Uniques come in no particular order."""
    values = np.asarray(values)
    if not len(values):
        return np.zeros(0, dtype=np.int64), values[:0]
    key: np.ndarray
    mult: Any
    if values.dtype.itemsize <= 4:  # hash in 32 bits: half the memory traffic
        key, mult, width = values.astype(np.uint32, copy=False), _MULT32, 32
    else:
        key, mult, width = values.astype(np.uint64, copy=False), _MULT, 64
    for bits in (16, 20):
        # as indices once (numpy would convert an unsigned index array at every use)
        bucket = ((key * mult) >> key.dtype.type(width - bits)).astype(np.intp)
        table = np.zeros(1 << bits, dtype=key.dtype)
        table[bucket] = key  # the last writer wins: a shared bucket shows as a mismatch
        if np.array_equal(table.take(bucket), key):
            slots = np.flatnonzero(np.bincount(bucket, minlength=1 << bits))
            code_of = np.zeros(1 << bits, dtype=np.int64)
            code_of[slots] = np.arange(len(slots))
            return code_of.take(bucket), table[slots].astype(values.dtype)
    uniques, codes = unique(values, return_inverse=True)  # many distinct values
    return codes, uniques


@overload
def unique(values: np.ndarray, return_inverse: Literal[False] = False) -> np.ndarray: ...
@overload
def unique(values: np.ndarray, return_inverse: Literal[True]
           ) -> tuple[np.ndarray, np.ndarray]: ...
def unique(values: np.ndarray, return_inverse: bool = False
           ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``np.unique`` (sorted distinct values, optionally the inverse codes) without importing
    ``numpy.ma``, which ``np.unique`` does on first use (tens of ms of start-up)."""
    values = np.asarray(values)
    # numpy's default sort, not a stable one: equal values are alike, so the order among them
    # changes neither the distinct values nor the codes (and a stable sort of 32- or 64-bit
    # integers is a merge sort, 7x slower than the vectorized quicksort)
    if not return_inverse:
        ordered = np.sort(values)
        keep = np.ones(len(ordered), dtype=bool)
        np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
        return ordered[keep]
    order = np.argsort(values)
    ordered = values[order]
    new = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    return ordered[new], _inverse(order, new)


def _inverse(order: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Each value's code, from the order that sorts the values and where in that order a new
    distinct value begins."""
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = np.cumsum(new) - 1
    return codes


def unique_rows(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique` with the inverse, over the rows of an (n, 2) array: the distinct rows in
    ascending order and each row's index among them (``np.unique(..., axis=0,
    return_inverse=True)`` without ``numpy.ma``)."""
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    ordered = pairs[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    return ordered[new], _inverse(order, new)


def ragged_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), without a Python loop (int64):
    ``np.repeat`` of each range's start plus a running offset in it."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    first = ends - lengths
    # position within its run, then shift each run to its start
    within = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within


def ranges(lo: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranges ``lo[k], lo[k] + 1, …`` (``count[k]`` values each) laid end to end, without
    a loop: each element's range ``k`` and its value (:func:`ragged_index`)."""
    count = np.asarray(count, dtype=np.int64)
    return np.repeat(np.arange(count.size), count), ragged_index(lo, count)


def group_time_order(group: np.ndarray, time: np.ndarray) -> np.ndarray:
    """``np.lexsort((time, group))`` of an int64 ``group`` and an int64 or float ``time``:
    rows by group, then time, ties in row order. With group ids below 2**16 (a capture's
    flows: a few to thousands), two stable sorts instead: by time first (timsort, which
    merges the runs that time-ordered captures put one after the other), then by group as
    uint16 (a radix sort) — under half the time of lexsort's two merge sorts of int64."""
    if group.size == 0 or int(group.min()) < 0 or int(group.max()) >= 1 << 16:
        return np.lexsort((time, group))
    by_time = np.argsort(time, kind="stable")
    return by_time[np.argsort(group[by_time].astype(np.uint16), kind="stable")]


def by_group(values: np.ndarray, shift: int) -> np.ndarray | None:
    """A stable order of int64 ``values`` by their group ``values >> shift`` (a radix sort of
    the groups as uint16), None when the groups span 2**16 or more, or there is nothing to
    order."""
    if values.size < 2:
        return None
    group = values >> shift
    lo = int(group.min())
    if int(group.max()) - lo >= 1 << 16:
        return None
    group -= lo
    return np.argsort(group.astype(np.uint16), kind="stable")


def search_ascending(a: np.ndarray, v: np.ndarray, side: Literal["left", "right"],
                     shift: int, order: np.ndarray | None = None) -> np.ndarray:
    """``np.searchsorted(a, v, side)`` with the queries ``v`` searched group by group
    (``v >> shift``: few, a flow's bytes each), so mostly in ascending order, and put
    back: queries that interleave a few ascending streams (a capture's segments in time
    order) jump about the array, each search a cache miss per step; in order, each search
    begins where the previous ended. The same result whatever the order (each query's own).
    ``order``: :func:`by_group`'s order of ``v``, or of values in the same groups (the ends
    of segments whose starts it orders), when the caller has it."""
    if order is None:
        order = by_group(v, shift)
    if order is None:
        return np.searchsorted(a, v, side=side)
    out = np.empty(v.size, dtype=np.intp)
    out[order] = np.searchsorted(a, v[order], side=side)
    return out


def first_row_of(codes: np.ndarray, groups: int) -> np.ndarray:
    """Each code's first row (``np.unique(codes, return_index=True)``'s index, by code), -1
    for a code in ``range(groups)`` that no row has: a minimum per code (``np.minimum.at``;
    no sort, and no reliance on which of repeated fancy-index writes wins, which numpy leaves
    unspecified)."""
    codes = np.asarray(codes, dtype=np.int64)
    first = np.full(groups, codes.size, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(codes.size, dtype=np.int64))
    first[first == codes.size] = -1
    return first


def sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`factorize` with the uniques in ascending order (codes follow)."""
    codes, uniques = factorize(values)
    order = np.argsort(uniques)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes], uniques[order]


def sorted_groups(codes: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """A stable order that puts equal codes together (by code), and each group's start in it
    (``starts[g]:starts[g + 1]``)."""
    small = codes.astype(np.int16 if groups < np.iinfo(np.int16).max else np.int64)
    order = np.argsort(small, kind="stable")  # radix sort for 16-bit codes
    starts = np.r_[0, np.cumsum(np.bincount(codes, minlength=groups))]
    return order, starts


def group_quantiles(codes: np.ndarray, values: np.ndarray, groups: int,
                    quantiles: tuple[float, ...], by_value: np.ndarray | None = None
                    ) -> np.ndarray:
    """Per group, the quantiles of its values (numpy's default linear interpolation);
    NaN for an empty group. Shape ``(groups, len(quantiles))``. ``by_value``: the values'
    stable sort order, when the caller has it already (one sort for several groupings)."""
    out = np.full((groups, len(quantiles)), np.nan)
    if not len(values):
        return out
    if by_value is None:
        by_value = np.argsort(values, kind="stable")
    small = codes.astype(np.int16 if groups < np.iinfo(np.int16).max else np.int64)
    order = by_value[np.argsort(small[by_value], kind="stable")]  # by code, then by value
    ordered = values[order].astype(float)
    counts = np.bincount(codes, minlength=groups)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    has = counts > 0
    for k, q in enumerate(quantiles):
        pos = q * (counts[has] - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, counts[has] - 1)
        frac = pos - lo
        a = ordered[starts[has] + lo]
        b = ordered[starts[has] + hi]
        out[has, k] = a + frac * (b - a)
    return out
