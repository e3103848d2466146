"""Plain socket logs (CSV with a header, or JSON Lines) → the socket call table.

Defines :func:`read_plain_log`, called by :func:`xentrace_cli.sources.socket_log.read_socket_log`
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
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from xentrace_cli.errors import InputError, TruncatedInput, warn
from xentrace_cli.sources.strace import INT32_MAX, INT64_MAX, Malformed, finish_table

#: Columns a plain log may carry; others are ignored.
KNOWN_FIELDS: tuple[str, ...] = ("ts", "ts_ns", "bytes", "fd", "peer", "flow", "direction",
                                 "pid", "syscall", "duration_ns", "ret", "errno")
#: The range each integer field may hold. pids and fds are C ints; one call moves at most
#: INT32_MAX bytes (Linux caps read/write at MAX_RW_COUNT, just below 2**31), which also keeps
#: the int64 running byte offsets of a stream from overflowing; times are int64 nanoseconds.
FIELD_RANGES: dict[str, tuple[int, int]] = {
    "ts_ns": (0, INT64_MAX), "duration_ns": (0, INT64_MAX), "pid": (0, INT32_MAX),
    "fd": (0, INT32_MAX), "bytes": (0, INT32_MAX), "ret": (-INT32_MAX - 1, INT32_MAX),
}
#: Epoch seconds whose nanoseconds still fit in int64 (year 2262).
MAX_EPOCH_S = INT64_MAX // 10**9


def read_plain_log(path: str | os.PathLike[str], kind: str, *,
                   on_progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Read a CSV (``kind="csv"``) or JSON Lines (``"jsonl"``) socket log."""
    with open(path, "rb") as f:
        raw = f.read()
    total = len(raw)
    malformed = Malformed(path)
    body, cut_line = _drop_cut_line(raw, kind)
    if cut_line is not None:
        warn(TruncatedInput(
            f"{path}: line {cut_line}: file ends in the middle of a record (cut); "
            "the partial record was dropped"), stacklevel=3)
    skipped: list[int] = []       # file lines that gave no record (bad or blank)
    body = _blank_non_utf8(body, malformed, keep_first=kind == "csv")
    if not body.strip():
        raise InputError(path, "not a socket log: no whole record", line=1)
    try:
        table = (_parse_csv(body, malformed, skipped) if kind == "csv"
                 else _parse_jsonl(body, malformed, skipped))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:   # beyond a bad row: the file's shape
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"not a readable {kind.upper()} socket log: {problem}") from None
    if on_progress is not None:
        on_progress(total, total)
    # File line of each record: the lines after the header (CSV) that were not skipped.
    first = 2 if kind == "csv" else 1
    candidates = np.arange(first, first + table.num_rows + len(set(skipped)))
    line_of = np.setdiff1d(candidates, np.unique(np.asarray(skipped, np.int64)),
                           assume_unique=True)[:table.num_rows]
    if len(line_of) < table.num_rows:   # a quoted field held a line break: lines drift
        line_of = np.append(line_of, np.arange(table.num_rows - len(line_of)) + candidates[-1])
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


def _blank_non_utf8(body: bytes, malformed: Malformed, *, keep_first: bool) -> bytes:
    """The text with each line that is not UTF-8 blanked (reported; numbering kept): the
    parsers would fail on the whole file. Line by line only when the whole text fails."""
    try:
        body.decode("utf-8")
        return body
    except UnicodeDecodeError:
        pass
    lines = body.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if number == 1 and keep_first:   # the CSV header: names decoded with replacement
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            malformed.add(number, f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column "
                                  f"{exc.start + 1})")
            lines[number - 1] = b""
    return b"\n".join(lines)


def _parse_csv(body: bytes, malformed: Malformed, skipped: list[int]) -> pa.Table:
    """All columns as strings (validated later); rows with a wrong field count are skipped."""
    end = body.find(b"\n")
    header = body[:end].decode("utf-8", "replace")
    names = [n.strip().strip('"') for n in header.split(",")]
    # the header line is the one line left as it came (_blank_non_utf8): Arrow reads it as
    # rows too where a bare CR splits it, and cannot hand a row that is not UTF-8 to bad_row
    body = header.encode("utf-8") + body[end:]

    # Arrow numbers rows without the empty lines ("" or "\r"), which it skips: back to lines.
    empty = [number for number, line in enumerate(body.split(b"\n")[:-1], start=1)
             if line in (b"", b"\r")] if b"\n\n" in body or b"\n\r\n" in body else []

    def bad_row(row: pacsv.InvalidRow) -> str:
        line = row.number if row.number is not None else 0   # 1-based, header included
        for number in empty:
            if number > line:
                break
            line += 1
        skipped.append(line)
        malformed.add(line, f"expected {row.expected_columns} fields, found "
                            f"{row.actual_columns}")
        return "skip"

    skipped.extend(empty)
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
        except json.JSONDecodeError as exc:
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


def _integers(col: pd.Series, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """An integer column parsed exactly and bounded: int64 values (0 where not valid), and
    which are valid. Decimal text of up to 19 digits is read exactly (a float would round a
    nanosecond time); a whole number written as a float (``3.0``) is accepted below 2**53;
    anything else, or outside ``[lo, hi]``, is present but not valid."""
    present = col.notna().to_numpy()
    if pd.api.types.is_signed_integer_dtype(col.dtype):
        values = col.fillna(0).to_numpy(np.int64)
        ok = present & (values >= lo) & (values <= hi)
        return np.where(ok, values, 0), ok
    text = col.astype("string").str.strip()
    parts = text.str.extract(r"^(-?)(\d{1,19})$")
    digits = parts[1].fillna("").str.zfill(19)
    exact = (parts[1].notna() & (digits <= str(INT64_MAX))).fillna(False).to_numpy(bool)
    magnitude = pd.to_numeric(digits.where(exact, "0")).to_numpy(np.int64)
    values = np.where((parts[0] == "-").fillna(False).to_numpy(bool), -magnitude, magnitude)
    floats = pd.to_numeric(text.where(~exact), errors="coerce").to_numpy(float)
    whole = np.isfinite(floats) & (np.abs(floats) < 2.0**53)
    whole &= np.floor(np.where(whole, floats, 0)) == np.where(whole, floats, 0)
    values = np.where(exact, values, np.where(whole, floats, 0).astype(np.int64))
    ok = (exact | whole) & (values >= lo) & (values <= hi)
    return np.where(ok, values, 0), ok


def _ts_ns_from_seconds(col: pd.Series, exact_text: bool) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds → ns (exact from decimal text; rounded to µs from floats); and validity
    (seconds in [0, MAX_EPOCH_S])."""
    if exact_text:
        text = col.astype("string").str.strip()
        parts = text.str.extract(r"^(\d{1,19})(?:\.(\d*))?$")
        sec, ok = _integers(parts[0], 0, MAX_EPOCH_S)
        frac = parts[1].fillna("").str.ljust(9, "0").str.slice(0, 9)
        frac_ns = pd.to_numeric(frac, errors="coerce").fillna(0).to_numpy(np.int64)
        ns = sec * 10**9 + np.where(ok, frac_ns, 0)
        ok &= ns >= 0
        return np.where(ok, ns, 0), ok
    values = pd.to_numeric(col, errors="coerce").to_numpy(float)
    ok = np.isfinite(values) & (values >= 0) & (values < MAX_EPOCH_S)
    micro = np.round(np.where(ok, values, 0) * 1e6).astype(np.int64)
    return micro * 1000, ok


def _checked(df: pd.DataFrame, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The integer fields parsed and bounded (FIELD_RANGES; absent optional fields -1, except
    ``ret``, which defaults to ``bytes``), and per row the first problem found (None: valid)."""
    n = len(df)
    problem = np.full(n, None, dtype=object)

    def flag(bad: np.ndarray, what: str) -> None:
        problem[bad & pd.isna(problem)] = what

    out: dict[str, np.ndarray] = {}
    if "ts_ns" in df:
        out["ts_ns"], ok = _integers(df["ts_ns"], *FIELD_RANGES["ts_ns"])
        flag(~ok, "ts_ns missing, not an integer or out of range (0 to 2^63-1 ns)")
    else:
        text = kind == "csv" or pd.api.types.is_string_dtype(df["ts"])
        out["ts_ns"], ok = _ts_ns_from_seconds(df["ts"], exact_text=text)
        flag(~ok, f"ts missing, not a number or out of range (0 to {MAX_EPOCH_S} s)")
    for name in ("bytes", "fd", "pid", "duration_ns", "ret"):
        lo, hi = FIELD_RANGES[name]
        if name not in df:
            out[name] = np.full(n, 0 if name == "duration_ns" else -1, np.int64)
            continue
        values, ok = _integers(df[name], lo, hi)
        given = df[name].notna().to_numpy()
        if name == "bytes":
            given = np.ones(n, bool)   # required
        flag(given & ~ok, f"{name} {'missing, ' if name == 'bytes' else ''}not an integer or "
                          f"out of range ({lo} to {hi})")
        out[name] = np.where(given, values, 0 if name == "duration_ns" else -1)
    out["ret"] = np.where(df["ret"].notna().to_numpy() if "ret" in df else False,
                          out["ret"], out["bytes"])
    flag(out["duration_ns"] > out["ts_ns"], "duration_ns longer than the time since 1970")
    return out, problem


def _to_rows(path: str | os.PathLike[str], table: pa.Table, kind: str,
             malformed: Malformed, line_of: np.ndarray) -> pd.DataFrame:
    """Validate the columns, build the rows and their streams, finish the table."""
    df = table.to_pandas()
    names = set(df.columns)
    if not len(df) or not ({"ts", "ts_ns"} & names) or "bytes" not in names:
        missing = "no records" if not len(df) else "missing the ts (or ts_ns) and bytes fields"
        raise InputError(path, f"not a socket log: {missing}", line=1)
    ints, problem = _checked(df, kind)
    direction = (df["direction"].astype("string").str.strip().str.lower().fillna("rx")
                 if "direction" in names else pd.Series("rx", index=df.index, dtype="string"))
    syscall = (df["syscall"].astype("string").str.strip() if "syscall" in names
               else pd.Series(pd.NA, index=df.index, dtype="string"))
    is_close = (syscall == "close").fillna(False).to_numpy()
    bad_direction = ~(direction.isin(["rx", "tx"]).fillna(False).to_numpy() | is_close)
    problem[bad_direction & pd.isna(problem)] = "direction is neither rx nor tx"
    ok = pd.isna(problem)
    for line, what in zip(line_of[~ok][:16], problem[~ok][:16], strict=True):
        malformed.add(int(line), what)
    malformed.count += max(0, int((~ok).sum()) - 16)
    if not ok.any():
        first = int(np.argmin(ok))
        raise InputError(path, f"no valid record: {problem[first]}", line=int(line_of[first]))
    # Completion order is the time order (stable: file order among equal times).
    keep = np.flatnonzero(ok)
    keep = keep[np.argsort(ints["ts_ns"][keep], kind="stable")]
    df = df.take(keep).reset_index(drop=True)
    ints = {name: values[keep] for name, values in ints.items()}
    ts_ns, nbytes = ints["ts_ns"], ints["bytes"]
    direction = direction.take(keep).reset_index(drop=True)
    syscall = syscall.take(keep).reset_index(drop=True)
    is_close = is_close[keep]
    direction = direction.where(~is_close, None)
    syscall = syscall.fillna(direction.map({"rx": "read", "tx": "write"}))
    fd = pd.Series(pd.array(ints["fd"], dtype="Int64")).where(ints["fd"] >= 0, pd.NA)
    duration, ret, pid = ints["duration_ns"], ints["ret"], ints["pid"]
    peer = (df["peer"].astype("string") if "peer" in names
            else pd.Series(pd.NA, index=df.index, dtype="string"))
    flow = df["flow"].astype("string") if "flow" in names else peer
    # Stream key: (pid, fd) with a generation bumped by each close, else flow, else peer.
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
        "fd": ints["fd"],
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
