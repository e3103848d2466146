"""groups.py against numpy's own answers: the start-up-light group-by must agree exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xentrace_cli.groups import (
    factorize,
    first_row_of,
    group_time_order,
    ranges,
    search_ascending,
    unique,
    unique_rows,
)

_VALUES = arrays(np.uint64, st.integers(0, 300), elements=st.integers(0, 2**64 - 1)
                 | st.integers(0, 5))


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_unique_is_numpys(values: np.ndarray) -> None:
    want, want_inverse = np.unique(values, return_inverse=True)
    got, codes = unique(values, return_inverse=True)
    assert np.array_equal(unique(values), want)
    assert np.array_equal(got, want)
    assert np.array_equal(codes, want_inverse.ravel())


@settings(max_examples=200, deadline=None)
@given(arrays(np.uint64, st.tuples(st.integers(0, 200), st.just(2)),
              elements=st.integers(0, 3) | st.integers(0, 2**64 - 1)))
def test_unique_rows_is_numpys(pairs: np.ndarray) -> None:
    want, want_inverse = np.unique(pairs, axis=0, return_inverse=True)
    got, codes = unique_rows(pairs)
    assert np.array_equal(got.reshape(-1, 2), want.reshape(-1, 2))
    assert np.array_equal(codes, want_inverse.ravel())
    assert np.array_equal(got[codes].reshape(-1, 2), pairs)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_factorize_codes_give_back_the_values(values: np.ndarray) -> None:
    codes, uniques = factorize(values)
    assert np.array_equal(uniques[codes], values)
    assert len(uniques) == len(np.unique(values))


def test_ranges_by_hand() -> None:
    """Ranges 10-12, none, 5-6 laid end to end: their ids and values."""
    which, value = ranges(np.array([10, 99, 5]), np.array([3, 0, 2]))
    assert which.tolist() == [0, 0, 0, 2, 2]
    assert value.tolist() == [10, 11, 12, 5, 6]
    assert [a.size for a in ranges(np.zeros(0), np.zeros(0))] == [0, 0]


@settings(max_examples=200, deadline=None)
@given(codes=st.lists(st.integers(0, 12), max_size=300), spare=st.integers(0, 3))
def test_first_row_of_is_uniques_first_index(codes: list[int], spare: int) -> None:
    """Each code's first row is np.unique's return_index for it; -1 for a code no row has."""
    values = np.asarray(codes, dtype=np.int64)
    groups = (max(codes) + 1 if codes else 0) + spare
    first = first_row_of(values, groups)
    expected = np.full(groups, -1, dtype=np.int64)
    present, index = np.unique(values, return_index=True)
    expected[present] = index
    assert first.tolist() == expected.tolist()


@settings(max_examples=300, deadline=None)
@given(group=arrays(np.int64, st.integers(0, 300),
                    elements=st.integers(0, 5) | st.integers(0, 2**16 + 3)
                    | st.integers(-3, 2**40)),
       runs=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_group_time_order_is_lexsort(group: np.ndarray, runs: int, seed: int) -> None:
    """Rows by group then time, ties in row order: np.lexsort's order, on times in a few
    ascending runs (captures one after the other) with repeats, and groups past 2**16."""
    rng = np.random.default_rng(seed)
    time = np.concatenate([np.sort(rng.integers(0, 50, size))
                           for size in np.diff(np.r_[0, np.sort(rng.integers(
                               0, group.size + 1, runs - 1)), group.size])]).astype(np.int64)
    small = group % 7 if seed % 2 else group
    for groups in (group, small):
        assert np.array_equal(group_time_order(groups, time), np.lexsort((time, groups)))


@settings(max_examples=300, deadline=None)
@given(streams=st.integers(1, 5), size=st.integers(0, 300), far=st.booleans(),
       back=st.floats(0, 0.3), seed=st.integers(0, 2**32 - 1))
def test_search_ascending_is_numpys(streams: int, size: int, far: bool,
                                               back: float, seed: int) -> None:
    """Positions of a few streams (stream << 41 | byte), interleaved in row order, each
    ascending but for some steps back (retransmissions): np.searchsorted's answer on both
    sides, queries in any order; streams 2**17 apart (no radix sort: numpy's own) too."""
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, streams, size) * (1 << 17 if far else 1)
    step = np.where(rng.random(size) < back, -rng.integers(0, 50, size),
                    rng.integers(0, 50, size))
    byte = np.zeros(size, dtype=np.int64)
    for s in np.unique(stream):  # each stream's bytes, cumulative in its rows' order
        byte[stream == s] = np.cumsum(step[stream == s]) + 1000
    values = (stream.astype(np.int64) << 41) + byte
    bounds = np.unique(np.concatenate([values, values + 7]))
    queries = np.concatenate([values - 3, values, values + 3, rng.permutation(values)])
    for side in ("left", "right"):
        assert np.array_equal(search_ascending(bounds, queries, side, 41),
                              np.searchsorted(bounds, queries, side=side))
