"""groups.py against numpy's own answers: the start-up-light group-by must agree exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xentrace_cli.groups import factorize, first_row_of, ranges, unique, unique_rows

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
