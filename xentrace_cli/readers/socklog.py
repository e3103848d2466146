"""Plain socket logs (CSV with a header, or JSON Lines) → the socket call table.

Defines :func:`read_plain_log`, called by :func:`xentrace_cli.readers.strace.read_socket_log`
when the file is not strace output. One record per completed call; fields (CSV header names or
JSON keys):

- ``ts_ns`` (int, epoch ns) or ``ts`` (epoch seconds; exact from a CSV's decimal text, rounded
  to the microsecond from a JSON number, which is a binary float): when the call returned.
- ``bytes`` (int): bytes moved by the call (0 for an error).
- optional: ``fd``, ``peer`` (``ip:port`` / ``[ip6]:port``), ``flow`` (any label naming the
  stream when there is no fd), ``direction`` (``rx``/``tx``, default ``rx``), ``pid``,
  ``syscall`` (default ``read``/``write``; ``close`` ends the fd's stream), ``duration_ns``
  (default 0), ``ret`` (default ``bytes``), ``errno``.

Streams are keyed by ``pid`` and ``fd`` (a ``close`` row ends one), else ``flow``, else ``peer``;
offsets count in time order (file order among equal times). ``data`` is None (a plain log
carries no bytes).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from xentrace_cli.errors import InputError, TruncatedInput
from xentrace_cli.readers.strace import Malformed, finish_table

#: Columns a plain log may carry; others are ignored.
KNOWN_FIELDS: tuple[str, ...] = ("ts", "ts_ns", "bytes", "fd", "peer", "flow", "direction",
                                 "pid", "syscall", "duration_ns", "ret", "errno")


def read_plain_log(path: str | os.PathLike[str], kind: str, *,
                   on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Read a CSV (``kind="csv"``) or JSON Lines (``"jsonl"``) socket log."""
    with open(path, "rb") as f:
        raw = f.read()
    total = len(raw)
    malformed = Malformed(path)
    body, cut_line = _drop_cut_line(raw, kind)
    if cut_line is not None:
        warnings.warn(TruncatedInput(
            f"{path}: line {cut_line}: file ends in the middle of a record (cut); "
            "the partial record was dropped"), stacklevel=3)
    skipped: list[int] = []       # file lines that gave no record (bad or blank)
    table = (_parse_csv(body, malformed, skipped) if kind == "csv"
             else _parse_jsonl(body, malformed, skipped))
    if on_progress is not None:
        on_progress(total, total)
    # File line of each record: the lines after the header (CSV) that were not skipped.
    first = 2 if kind == "csv" else 1
    candidates = np.arange(first, first + table.num_rows + len(skipped))
    line_of = np.setdiff1d(candidates, np.asarray(skipped, np.int64), assume_unique=True)
    frame = _to_rows(path, table, kind, malformed, line_of)
    malformed.warn(stacklevel=3)
    return frame


def _drop_cut_line(raw: bytes, kind: str) -> tuple[bytes, int | None]:
    """The text without a cut last line (no newline and not a whole record), and its number."""
    if raw.endswith(b"\n"):
        return raw, None
    start = raw.rfind(b"\n") + 1
    last = raw[start:]
    if kind == "jsonl":
        try:
            whole = isinstance(json.loads(last), dict)
        except ValueError:
            whole = False
    else:
        header = raw[: raw.find(b"\n")] if start else b""
        whole = bool(header) and last.count(b",") == header.count(b",")
    if whole:
        return raw + b"\n", None
    return raw[:start], raw.count(b"\n") + 1


def _parse_csv(body: bytes, malformed: Malformed, skipped: list[int]) -> pa.Table:
    """All columns as strings (validated later); rows with a wrong field count are skipped."""
    header = body[: body.find(b"\n")].decode("utf-8", "replace")
    names = [n.strip().strip('"') for n in header.split(",")]

    def bad_row(row: pacsv.InvalidRow) -> str:
        line = row.number if row.number is not None else 0   # 1-based, header included
        skipped.append(line)
        malformed.add(line, f"expected {row.expected_columns} fields, found "
                            f"{row.actual_columns}")
        return "skip"

    skipped.extend(_blank_lines(body))
    return pacsv.read_csv(
        io.BytesIO(body),
        read_options=pacsv.ReadOptions(use_threads=False, column_names=names, skip_rows=1),
        parse_options=pacsv.ParseOptions(invalid_row_handler=bad_row),
        convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                             strings_can_be_null=True))


def _blank_lines(body: bytes) -> list[int]:
    """1-based numbers of the blank lines (which the parsers skip without a record)."""
    if b"\n\n" not in body and not body.startswith(b"\n") and b"\n \n" not in body:
        return []
    return [number for number, line in enumerate(body.split(b"\n")[:-1], start=1)
            if not line.strip()]


def _parse_jsonl(body: bytes, malformed: Malformed, skipped: list[int]) -> pa.Table:
    """Vectorized with pyarrow; line by line (to name the bad line) when that fails."""
    lines = body.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    blank = _blank_lines(body)
    try:
        table = pajson.read_json(io.BytesIO(body))
        skipped.extend(blank)
        return table
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            skipped.append(number)
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            malformed.add(number, f"not a JSON object ({exc.msg})")
            skipped.append(number)
            continue
        if not isinstance(record, dict):
            malformed.add(number, "not a JSON object")
            skipped.append(number)
            continue
        # As text: one line's number and another's string must not clash in a column.
        records.append({k: None if record[k] is None else str(record[k])
                        for k in KNOWN_FIELDS if k in record})
    if not records:
        return pa.table({})
    present = [k for k in KNOWN_FIELDS if any(k in r for r in records)]
    schema = pa.schema([(k, pa.string()) for k in present])
    return pa.Table.from_pylist(records, schema=schema)


def _numbers(col: pd.Series) -> pd.Series:
    """Numeric values of a column (NaN where not a number)."""
    return pd.to_numeric(col, errors="coerce")


def _ts_ns_from_seconds(col: pd.Series, exact_text: bool) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds → ns (exact from decimal text; rounded to µs from floats); and validity."""
    if exact_text:
        text = col.astype("string").str.strip()
        parts = text.str.extract(r"^(\d+)(?:\.(\d*))?$")
        ok = parts[0].notna().to_numpy().copy()
        sec = pd.to_numeric(parts[0], errors="coerce").fillna(0).to_numpy(np.int64)
        frac = parts[1].fillna("").str.ljust(9, "0").str.slice(0, 9)
        frac_ns = pd.to_numeric(frac, errors="coerce").fillna(0).to_numpy(np.int64)
        return sec * 10**9 + frac_ns, ok
    values = _numbers(col).to_numpy(float)
    ok = np.isfinite(values) & (values >= 0)
    micro = np.round(np.where(ok, values, 0) * 1e6).astype(np.int64)
    return micro * 1000, ok


def _to_rows(path: str | os.PathLike[str], table: pa.Table, kind: str,
             malformed: Malformed, line_of: np.ndarray) -> pd.DataFrame:
    """Validate the columns, build the rows and their streams, finish the table."""
    df = table.to_pandas()
    names = set(df.columns)
    if not len(df) or not ({"ts", "ts_ns"} & names) or "bytes" not in names:
        missing = "no records" if not len(df) else "missing the ts (or ts_ns) and bytes fields"
        raise InputError(path, f"not a socket log: {missing}", line=1)
    if "ts_ns" in names:
        ts = _numbers(df["ts_ns"])
        ok = ts.notna().to_numpy().copy()
        ts_ns = ts.fillna(0).to_numpy(np.int64)
    else:
        text = kind == "csv" or pd.api.types.is_string_dtype(df["ts"])
        ts_ns, ok = _ts_ns_from_seconds(df["ts"], exact_text=text)
    nbytes = _numbers(df["bytes"])
    ok &= nbytes.notna().to_numpy() & (nbytes.fillna(0).to_numpy() >= 0)
    direction = (df["direction"].astype("string").str.strip().str.lower().fillna("rx")
                 if "direction" in names else pd.Series("rx", index=df.index, dtype="string"))
    syscall = (df["syscall"].astype("string").str.strip() if "syscall" in names
               else pd.Series(pd.NA, index=df.index, dtype="string"))
    is_close = (syscall == "close").fillna(False).to_numpy()
    ok &= direction.isin(["rx", "tx"]).fillna(False).to_numpy() | is_close
    for line in line_of[~ok][:16]:
        malformed.add(int(line), "ts, bytes or direction missing or not valid")
    malformed.count += max(0, int((~ok).sum()) - 16)
    if not ok.any():
        raise InputError(path, "no valid record (ts, bytes, direction)", line=int(line_of[0]))
    # Completion order is the time order (stable: file order among equal times).
    keep = np.flatnonzero(ok)
    keep = keep[np.argsort(ts_ns[keep], kind="stable")]
    df = df.take(keep).reset_index(drop=True)
    ts_ns, nbytes, direction, syscall = (ts_ns[keep], nbytes.to_numpy(np.int64)[keep],
                                         direction.take(keep).reset_index(drop=True),
                                         syscall.take(keep).reset_index(drop=True))
    is_close = is_close[keep]
    direction = direction.where(~is_close, None)
    syscall = syscall.fillna(direction.map({"rx": "read", "tx": "write"}))

    def optional_int(name: str) -> pd.Series:
        if name not in names:
            return pd.Series(pd.NA, index=df.index, dtype="Int64")
        return pd.array(_numbers(df[name]).round(), dtype="Int64")

    fd = pd.Series(optional_int("fd"))
    duration = optional_int("duration_ns").fillna(0).to_numpy(np.int64)
    ret = pd.Series(optional_int("ret"))
    ret = ret.fillna(pd.Series(nbytes)).to_numpy(np.int64)
    peer = (df["peer"].astype("string") if "peer" in names
            else pd.Series(pd.NA, index=df.index, dtype="string"))
    flow = df["flow"].astype("string") if "flow" in names else peer
    # Stream key: (pid, fd) with a generation bumped by each close, else flow, else peer.
    pid = pd.Series(optional_int("pid")).fillna(-1).to_numpy(np.int64)
    fd_key = pd.Series(pid).astype(str) + "/" + fd.astype("string").fillna("")
    generation = pd.Series(is_close.astype(np.int64)).groupby(fd_key.to_numpy()).cumsum()
    generation = generation - is_close  # the close row itself belongs to the stream it ends
    key = np.where(fd.notna(), "fd" + fd_key + "#" + generation.astype(str),
                   "flow" + flow.fillna(""))
    stream = pd.factorize(pd.Series(key))[0].astype(np.int64)
    rows = pd.DataFrame({
        "entry_ns": ts_ns - duration,
        "duration_ns": duration,
        "pid": pid,
        "fd": fd.fillna(-1).to_numpy(np.int64),
        "syscall": syscall.astype(object),
        "direction": direction.astype(object),
        "ret": ret,
        "errno": (df["errno"].astype("string") if "errno" in names
                  else pd.Series(pd.NA, index=df.index, dtype="string")),
        "bytes": nbytes,
        "stream": stream,
        "peer": peer.astype(object).where(peer.notna(), None),
        "data": np.full(len(df), None, dtype=object),
        "data_truncated": np.zeros(len(df), bool),
    })
    return finish_table(rows, fmt=kind, time_of_day_only=False)
