"""Table writers: the same table round-trips through CSV, JSON and Parquet, batch by batch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.outputs.tables import dumps_json, write_table


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "frame": np.array([1, 2, 3], dtype="int64"),
        "src": pd.Categorical(["10.0.0.1", None, "fe80::1"]),
        "sport": pd.array([11211, None, 53], dtype="UInt16"),
        "socket_read_us": [12.5, float("nan"), 100_123.0],
    })


def _batches() -> list[pd.DataFrame]:
    table = _table()
    return [table.iloc[:2], table.iloc[2:]]


def test_csv_streams_batches_with_one_header(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    assert write_table(_batches(), "csv", out) == 3
    lines = out.read_text().splitlines()
    assert lines[0] == '"frame","src","sport","socket_read_us"'
    assert len(lines) == 4
    back = pd.read_csv(out)
    assert back["frame"].tolist() == [1, 2, 3]
    assert math.isnan(back["sport"][1]) and back["sport"][2] == 53
    assert back["src"].isna().tolist() == [False, True, False]


def test_json_is_one_array_with_nulls(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    assert write_table(_batches(), "json", out) == 3
    rows = json.loads(out.read_text())
    assert [r["frame"] for r in rows] == [1, 2, 3]
    assert rows[1]["sport"] is None and rows[1]["src"] is None
    assert rows[2]["src"] == "fe80::1"


def test_json_empty_table_is_empty_array(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    assert write_table([], "json", out) == 0
    assert json.loads(out.read_text()) == []


def test_parquet_keeps_dtypes(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert write_table(_batches(), "parquet", out) == 3
    back = pd.read_parquet(out)
    assert str(back["sport"].dtype) == "UInt16"
    assert back["sport"].isna().tolist() == [False, True, False]
    assert back["socket_read_us"][2] == pytest.approx(100_123.0)


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown table format"):
        write_table(_table(), "xml", tmp_path / "t.xml")


def test_dumps_json_is_deterministic_and_nan_safe() -> None:
    doc = {"b": np.float64("nan"), "a": [np.int64(3), Path("x/y")], "c": pd.NA}
    text = dumps_json(doc)
    assert text == dumps_json(dict(reversed(list(doc.items()))))
    assert json.loads(text) == {"a": [3, "x/y"], "b": None, "c": None}


def test_parquet_interrupted_leaves_no_traceback_and_no_whole_looking_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between two batches: the KeyboardInterrupt goes up (the CLI says "interrupted"),
    pyarrow's writer does not print "Exception ignored ... write to closed file" when it is
    collected, and the part written is not a readable Parquet file (no footer: fails closed)."""
    import gc
    import sys

    import pyarrow.parquet as pq

    def batches():
        yield pd.DataFrame({"a": [1, 2, 3]})
        raise KeyboardInterrupt

    unraisable: list[object] = []  # what Python prints as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    out = tmp_path / "part.parquet"
    with pytest.raises(KeyboardInterrupt):
        write_table(batches(), "parquet", out)
    gc.collect()
    assert unraisable == []
    with pytest.raises(Exception, match="magic bytes"):
        pq.read_table(out)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_dash_path_is_stdout(fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """``-o -`` reaches the writers as ``Path("-")`` (click): stdout, as for the small-file
    CSV — not a file named ``-`` (large captures' ``packets -o -`` wrote one)."""
    monkeypatch.chdir(tmp_path)
    assert write_table(pd.DataFrame({"a": [1, 2]}), fmt, Path("-")) == 2
    assert not (tmp_path / "-").exists()
    assert b"2" in capsysbinary.readouterr().out
