"""Writing tables for programs: CSV, JSON and Parquet, streamed batch by batch.

Every command that emits a per-row table goes through :func:`write_table`, so the formats
behave the same everywhere: CSV with a header and empty cells for missing values, JSON as one
array of objects (``null`` for missing), Parquet with the pandas dtypes kept. A batch is a
pandas DataFrame or a pyarrow Table (the packet table's batches come as Arrow tables, so
``xenlat packets`` never imports pandas); CSV and Parquet write both through Arrow.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .sink import opened_output

if TYPE_CHECKING:
    import pandas as pd

TABLE_FORMATS = ("csv", "json", "parquet")


def _arrow_table(frame: Any) -> Any:
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # pandas stores category codes as int8, int16 or int32 by the number of categories; the
    # batches of one stream must share one schema (Parquet), so dictionary indices are widened
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type) and field.type.index_type != pa.int32():
            wide = pa.dictionary(pa.int32(), field.type.value_type, field.type.ordered)
            table = table.set_column(i, field.name, table.column(i).cast(wide))
    return table


def arrow_table(frame: pd.DataFrame) -> Any:
    """The Arrow table that the Parquet and CSV outputs write for ``frame``."""
    return _arrow_table(frame)


def _is_one_table(frames: Any) -> bool:
    """A DataFrame or an Arrow table (not an iterable of them); looked up without importing
    pandas or pyarrow when the caller did not."""
    for module, kind in (("pandas", "DataFrame"), ("pyarrow", "Table")):
        loaded = sys.modules.get(module)
        if loaded is not None and isinstance(frames, getattr(loaded, kind)):
            return True
    return False


def write_table(frames: pd.DataFrame | Any | Iterable[Any], fmt: str,
                out: str | Path | None = None,
                dictionary: Sequence[str] | None = None) -> int:
    """Write one table (or batches of one table) to ``out`` (a path, or stdout for None/``-``).

    A table is a pandas DataFrame or a pyarrow Table. Returns the number of rows written.
    Parquet needs a file, not a terminal. ``dictionary``: the only columns Parquet
    dictionary-encodes (None: pyarrow's default, every column), for a table that knows which
    of its columns hold few distinct values (a dictionary tried on a column of distinct
    values is CPU spent for nothing).
    """
    if _is_one_table(frames):
        frames = [frames]
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}")
    rows = 0
    with opened_output(out) as sink:
        if fmt == "csv":
            rows = _write_csv(frames, sink)
        elif fmt == "json":
            rows = _write_json(frames, sink)
        else:
            rows = _write_parquet(frames, sink, dictionary)
    return rows


def _write_csv(frames: Iterable[Any], sink: IO[bytes]) -> int:
    import pyarrow.csv as pacsv

    # rows formatted 8,192 at a time, not pyarrow's 1,024: the same bytes, a quarter less CPU
    # (1 M packet rows: 0.57-0.63 s against 0.79-0.81 s)
    options = pacsv.WriteOptions(quoting_style="needed", batch_size=8192)
    return _write_arrow(frames, lambda schema: pacsv.CSVWriter(sink, schema,
                                                               write_options=options))


def _write_json(frames: Iterable[Any], sink: IO[bytes]) -> int:
    rows = 0
    sink.write(b"[")
    for frame in frames:
        if not hasattr(frame, "to_json"):  # an Arrow table
            frame = frame.to_pandas()
        if len(frame) == 0:
            continue
        body = frame.to_json(orient="records", lines=True, date_format="iso",
                             default_handler=str)
        records = body.strip().replace("\n", ",\n")
        sink.write((",\n" if rows else "\n").encode())
        sink.write(records.encode())
        rows += len(frame)
    sink.write(b"\n]\n")
    return rows


def _write_parquet(frames: Iterable[Any], sink: IO[bytes],
                   dictionary: Sequence[str] | None = None) -> int:
    import pyarrow.parquet as pq

    use = True if dictionary is None else list(dictionary)
    return _write_arrow(frames, lambda schema: pq.ParquetWriter(sink, schema,
                                                                use_dictionary=use))


def _write_arrow(frames: Iterable[Any], open_writer: Callable[[Any], Any]) -> int:
    """Batches through one Arrow writer (CSV or Parquet), opened on the first batch's schema."""
    rows = 0
    writer = None
    try:
        for frame in frames:
            table = _arrow_table(frame)
            if writer is None:
                writer = open_writer(table.schema)
            writer.write_table(table)
            rows += len(frame)
    except BaseException:
        # interrupted or failed: not finished, so not closed (a Parquet footer would make the
        # part written look whole); pyarrow's ParquetWriter would otherwise close itself when
        # collected, after the file is gone, and print a traceback ("write to closed file")
        if writer is not None and getattr(writer, "is_open", False):
            writer.is_open = False
        raise
    if writer is not None:
        writer.close()
    return rows


#: Rows of a table inside a JSON document encoded at a time (:func:`write_json_document`).
DOCUMENT_CHUNK_ROWS = 8192


def write_json_document(document: dict[str, Any], out: str | Path | None = None) -> None:
    """``dumps_json(document)``'s bytes, written piece by piece, where a value may be a pandas
    DataFrame standing for its rows as a list of objects (``to_json(orient="records")``).
    Those are encoded :data:`DOCUMENT_CHUNK_ROWS` rows at a time by the C encoder (the
    indented form is its output with the separators that indent): the toy million set's
    707,735 rows in ~1 minute and one chunk's objects, where ``dumps_json`` of the whole list
    took ~10 minutes (its indenting encoder is pure Python) and 12 GB."""
    with opened_output(out) as sink:
        for piece in _document_pieces(document):
            sink.write(piece.encode("ascii"))  # ensure_ascii: the text is ASCII


def _document_pieces(document: dict[str, Any]) -> Iterable[str]:
    if not document:
        yield "{}\n"
        return
    for i, key in enumerate(sorted(document, key=str)):
        yield ("{" if i == 0 else ",") + "\n  " + json.dumps(str(key)) + ": "
        value = document[key]
        if hasattr(value, "to_json") and hasattr(value, "iloc"):  # a DataFrame's rows
            yield from _record_pieces(value)
        else:
            yield json.dumps(_clean(value), indent=2, sort_keys=True,
                             allow_nan=False).replace("\n", "\n  ")
    yield "\n}\n"


def _record_pieces(frame: pd.DataFrame) -> Iterable[str]:
    """A table's rows as ``dumps_json`` writes a list of objects one level down."""
    if len(frame) == 0 or len(frame.columns) == 0:  # (no columns: pandas writes no rows)
        yield json.dumps(_rows(frame), indent=2, sort_keys=True).replace("\n", "\n  ")
        return
    between = ",\n      "  # the fields' separator: each on its line, three levels down
    for start in range(0, len(frame), DOCUMENT_CHUNK_ROWS):
        chunk = frame.iloc[start:start + DOCUMENT_CHUNK_ROWS]
        rows = _rows(chunk)
        if not _flat(chunk):  # the exact form, the slow way
            text = json.dumps(rows, indent=2, sort_keys=True, allow_nan=False)
            body = text[1:-2].replace("\n", "\n  ")  # one level down, without [ and \n]
        else:  # one C call per chunk: the rows' separator made the indented one after
            text = json.dumps(rows, sort_keys=True, allow_nan=False, separators=(between, ": "))
            # "}" + separator + "{" is only ever between two rows: a string holds no raw
            # newline, and a flat row's values no object
            body = "\n    {\n      " + text[2:-2].replace(
                "}" + between + "{", "\n    },\n    {\n      ") + "\n    }"
        yield ("[" if start == 0 else ",") + body
    yield "\n  ]"


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (missing values as None): what pandas' encoder gives, read
    back (only str, int, float, bool and None: ``_clean`` has nothing to do)."""
    import io

    buf = io.StringIO()
    frame.to_json(buf, orient="records", default_handler=str)
    return json.loads(buf.getvalue())


#: What pandas infers of a column whose every cell is one JSON scalar (or missing).
_SCALAR_KINDS = frozenset({"string", "integer", "floating", "boolean", "mixed-integer-float",
                           "decimal", "empty", "datetime64", "datetime", "date",
                           "timedelta64", "timedelta", "bytes"})


def _flat(frame: pd.DataFrame) -> bool:
    """Whether every cell is a scalar (the one-line encoding indents no list or object):
    numpy's numeric, boolean and time columns are; any other, pandas infers from its values
    (a categorical from its categories)."""
    import pandas as pd

    for _, column in frame.items():
        if column.dtype.kind in "biufmM":
            continue
        values = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) \
            else column
        if pd.api.types.infer_dtype(values, skipna=True) not in _SCALAR_KINDS:
            return False
    return True


def dumps_json(document: Any) -> str:
    """Deterministic JSON for documents (summaries, reports): sorted keys, NaN as null."""
    return json.dumps(_clean(document), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _clean(value: Any) -> Any:
    """Make numpy/pandas scalars and NaN JSON-safe."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    pd = sys.modules.get("pandas")
    if pd is not None and (value is pd.NA or value is pd.NaT):
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, Path):
        return str(value)
    return value

