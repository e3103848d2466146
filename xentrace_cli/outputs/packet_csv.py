"""The packet table as CSV, formatted with numpy: the bytes pyarrow's CSV writer gives, without
pyarrow.

Why: ``xenlat packets`` on a small file must start in a blink, and importing pyarrow costs
more than the rest of the command (0.25 s on the benchmark machine); on a large file pyarrow's
CSV writer spent 1.3 s of CPU per million rows, more than reading and decoding them. Here a
batch is laid out as one byte matrix (a row per packet, a fixed-width field per column, each
number's digits written right-aligned four at a time from a table of the 10,000 four-digit
groups), and the bytes to keep (the digits past the leading zeros, the address's characters,
the commas) are picked with one boolean mask: a few vectorized passes per column, no Python
per row.

The output is byte for byte what ``pyarrow.csv.CSVWriter`` with ``quoting_style="needed"``
writes for :meth:`~xentrace_cli.sources.packets.PacketColumns.to_arrow`'s tables (a test
compares both on every test capture): a header of quoted names, integers in decimal, the
addresses quoted, a missing value as an empty field, ``\\n`` after every row.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from .sink import opened_output

#: the ASCII of every four-digit group ``0000``..``9999``, one little-endian uint32 each (its
#: bytes in memory are the digits in reading order)
_GROUPS = (np.arange(10_000)[:, None] // np.array([1000, 100, 10, 1]) % 10 + ord("0")
           ).astype(np.uint8).view("<u4").ravel()
#: 10**1 .. 10**19: a number has 1 + (the powers it reaches) digits
_POWERS = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
#: Captures up to this size are written through this module by ``xenlat packets``: about
#: 50,000 packets at most, 0.1-0.2 s of formatting, less than importing pyarrow (whose writer
#: is faster per row on larger files)
SMALL_FILE_BYTES = 4 << 20
_COMMA, _NEWLINE, _MINUS, _QUOTE = ord(","), ord("\n"), ord("-"), ord('"')


def header(names: Iterable[str]) -> bytes:
    """The header line: every name quoted (as pyarrow writes it), quotes inside doubled."""
    return (",".join(_quoted(name) for name in names) + "\n").encode()


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


class _Layout:
    """One batch as a byte matrix under construction: ``fields`` records, per column, where
    its field starts in a row, how wide it is and how to fill it."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.width = 0
        self.fields: list[tuple[int, int, Any]] = []

    def add(self, width: int, fill: Any) -> None:
        """A field of ``width`` bytes, then a comma (the last comma becomes the newline)."""
        self.fields.append((self.width, width, fill))
        self.width += width + 1


@functools.cache
def _right_aligned(width: int) -> np.ndarray:
    """Row ``k``: the mask of the last ``k`` of ``width`` bytes, as ``width // 4`` uint32."""
    table = np.arange(width)[None, :] >= (width - np.arange(width + 1))[:, None]
    return np.ascontiguousarray(table.astype(np.uint8)).view("<u4")


def _digits(values: np.ndarray) -> np.ndarray:
    """Decimal digits of each uint64 value (1 for 0)."""
    return np.searchsorted(_POWERS, values, side="right") + 1


def _number_field(values: np.ndarray, valid: np.ndarray | None
                  ) -> tuple[int, Any]:
    """(width, fill) of an integer column: digits right-aligned in a width that is a whole
    number of four-digit groups, a minus sign before the negative ones."""
    negative = None
    if values.dtype.kind == "i" and len(values) and values.min() < 0:
        negative = values < 0
        magnitude = np.where(negative, -(values.astype(np.int64) + 1), values).astype(
            np.uint64) + negative  # -(v+1) first: int64's minimum has no positive twin
    else:
        magnitude = values.astype(np.uint64, copy=False)
    count = _digits(magnitude)
    top = int(count.max()) + (1 if negative is not None else 0) if len(count) else 1
    groups = (top + 3) // 4
    width = 4 * groups

    def fill(matrix: np.ndarray, keep: np.ndarray, start: int) -> None:
        shape, strides = (len(magnitude), groups), (matrix.shape[1], 4)
        digits = np.ndarray(shape, dtype="<u4", buffer=matrix, offset=start, strides=strides)
        rest = magnitude
        for g in range(groups - 1, -1, -1):  # the last group holds the units
            digits[:, g] = _GROUPS[rest % np.uint64(10_000)]
            if g:
                rest = rest // np.uint64(10_000)
        shown = count if valid is None else np.where(valid, count, 0)
        if negative is not None:
            signed = negative if valid is None else negative & valid
            rows = np.flatnonzero(signed)
            matrix[rows, start + width - 1 - count[rows]] = _MINUS
            shown = shown + signed
        mask = np.ndarray(shape, dtype="<u4", buffer=keep, offset=start, strides=strides)
        mask[:] = _right_aligned(width)[shown]

    return width, fill


def _text_field(codes: np.ndarray, texts: list[str]) -> tuple[int, Any]:
    """(width, fill) of a dictionary column: code ``i`` is ``texts[i]`` quoted, -1 missing
    (an empty field); left-aligned in a width of whole uint32 words."""
    encoded = [_quoted(t).encode() for t in texts]
    width = (max((len(e) for e in encoded), default=0) + 3) & ~3
    # a row per text and a last row for "missing": its bytes, and the mask of its length
    table = np.zeros((len(encoded) + 1, width), dtype=np.uint8)
    shown = np.zeros((len(encoded) + 1, width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        table[i, :len(e)] = np.frombuffer(e, dtype=np.uint8)
        shown[i, :len(e)] = 1

    def fill(matrix: np.ndarray, keep: np.ndarray, start: int) -> None:
        if not width:
            return
        index = np.where(codes >= 0, codes, len(encoded))
        shape, strides = (len(codes), width // 4), (matrix.shape[1], 4)
        np.ndarray(shape, dtype="<u4", buffer=matrix, offset=start, strides=strides)[:] = \
            table.view("<u4")[index]
        np.ndarray(shape, dtype="<u4", buffer=keep, offset=start, strides=strides)[:] = \
            shown.view("<u4")[index]

    return width, fill


def format_rows(columns: Any) -> np.ndarray:
    """The CSV rows of a :class:`~xentrace_cli.sources.packets.PacketColumns` batch (no
    header) as a uint8 array."""
    from ..sources.packets import COLUMNS

    n = len(columns)
    layout = _Layout(n)
    for name in COLUMNS:
        if name in ("src", "dst"):
            layout.add(*_text_field(getattr(columns, name), columns.addresses))
        else:
            layout.add(*_number_field(columns.values[name], columns.valid.get(name)))
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    matrix = np.empty((n, layout.width), dtype=np.uint8)
    keep = np.empty((n, layout.width), dtype=np.uint8)
    for start, width, fill in layout.fields:
        fill(matrix, keep, start)
        matrix[:, start + width] = _COMMA
        keep[:, start + width] = True
    matrix[:, -1] = _NEWLINE
    return matrix.ravel()[keep.ravel().view(bool)]


def write_packet_csv(batches: Iterable[Any], out: str | os.PathLike[str] | None = None) -> int:
    """Write the header and every batch's rows to ``out`` (a path; stdout for None or ``-``).
    Returns the rows written."""
    from ..sources.packets import COLUMNS

    rows = 0
    batches = iter(batches)
    first = next(batches, None)  # an option or input error comes before any output
    with opened_output(out) as sink:
        sink.write(header(COLUMNS))
        for batch in itertools.chain([first] if first is not None else [], batches):
            sink.write(format_rows(batch).data)
            rows += len(batch)
    return rows
