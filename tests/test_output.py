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


def _awkward_frame(n: int) -> pd.DataFrame:
    """Every kind of cell the documents' tables hold, and text that needs escaping."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=n) * 10.0 ** rng.integers(-9, 12, size=n)
    x[::7] = np.nan
    return pd.DataFrame({
        "z_last": np.arange(n), "a_float": x, "flag": rng.random(n) < 0.5,
        "text": pd.Series([['say "hi"\n', "é∑ \\ /", "", None][i % 4] for i in range(n)],
                          dtype=object),
        "cat": pd.Categorical(["rx", "tx"] * (n // 2) + ["rx"] * (n % 2)),
        "maybe": pd.array([None if i % 3 else i for i in range(n)], dtype="Int64"),
    })


@pytest.mark.parametrize("n", [0, 1, 5, 64])
def test_json_document_written_in_chunks_is_dumps_json(monkeypatch, tmp_path: Path,
                                                       n: int) -> None:
    from xentrace_cli.outputs import tables
    from xentrace_cli.pipeline.result import _records

    monkeypatch.setattr(tables, "DOCUMENT_CHUNK_ROWS", 3)  # chunk edges inside the table
    frame = _awkward_frame(n)
    head = {"summary": {"notes": ["x"], "n": n, "nan": float("nan")}, "sources": {"g": "p"},
            "alignment": {"fit": [1.5, None]}}
    for nested in (False, True):
        if nested:  # a cell holding a list: written the slow, exact way
            frame = frame.assign(hops=[[i, "b"] for i in range(n)])
        out = tmp_path / f"doc{nested}.json"
        tables.write_json_document({**head, "packets": frame, "flows": []}, out)
        expected = dumps_json({**head, "packets": _records(frame), "flows": []})
        assert out.read_text() == expected


def test_analysis_json_is_its_document(monkeypatch, tmp_path: Path) -> None:
    # the command's bytes against dumps_json of the whole document (what it wrote before)
    from click.testing import CliRunner

    from xentrace_cli.cli import main
    from xentrace_cli.outputs import tables
    from xentrace_cli.pipeline.analyze import analyze_files

    monkeypatch.setattr(tables, "DOCUMENT_CHUNK_ROWS", 100)  # several chunks

    sample = Path(__file__).parent.parent / "sample_pcaps" / "black-0.1s"
    out = tmp_path / "a.json"
    result = CliRunner().invoke(main, ["analyze", str(sample / "guest.pcapng"), "--socket-log",
                                       str(sample / "app.strace"), "--format", "json", "-o",
                                       str(out)])
    assert result.exit_code == 0, result.stderr
    analysis = analyze_files(sample / "guest.pcapng", socket_log=sample / "app.strace")
    assert len(analysis.table) > 300 and len(analysis.flows) > 0
    assert out.read_text() == dumps_json(analysis.to_document())


def test_json_document_of_nested_and_columnless_tables_is_dumps_json(tmp_path: Path) -> None:
    # lists in an Arrow list column, tuples as categories, a Series in an object cell, and
    # rows without columns: written the exact way, byte for byte dumps_json's
    import pyarrow as pa

    from xentrace_cli.outputs import tables
    from xentrace_cli.pipeline.result import _records

    frames = {
        "arrow_list": pd.DataFrame({"a": pd.array([[1, 2], [3]],
                                                  dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
                                    "b": [1.5, 2.5]}),
        "tuple_categories": pd.DataFrame({"a": pd.Categorical([(1, 2), (3, 4)]), "b": [1, 2]}),
        "series_cell": pd.DataFrame({"a": pd.Series([pd.Series([1, 2]), "x"], dtype=object)}),
        "no_columns": pd.DataFrame(index=range(3)),
    }
    for name, frame in frames.items():
        out = tmp_path / f"{name}.json"
        tables.write_json_document({"packets": frame}, out)
        assert out.read_text() == dumps_json({"packets": _records(frame)}), name
