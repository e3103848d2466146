"""The packet table's CSV formatted with numpy (``outputs/packet_csv.py``) against pyarrow's CSV
writer on the same batches: the same bytes, on every test capture and on hand-made batches at
the edges of each column's range."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from corpus_cases import CORPUS

from xentrace_cli.cli import main
from xentrace_cli.errors import XenlatError
from xentrace_cli.outputs import packet_csv
from xentrace_cli.outputs.packet_csv import format_rows, header, write_packet_csv
from xentrace_cli.outputs.tables import write_table
from xentrace_cli.sources import packets
from xentrace_cli.sources.packets import COLUMNS, PacketColumns

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"
ALL_CAPTURES = sorted([*CAPTURES.glob("*.pcap*"), *(CORPUS / "captures").iterdir()])


def _arrow_csv(batches: list[PacketColumns]) -> bytes:
    """What pyarrow's CSV writer makes of the batches (as ``write_table`` calls it)."""
    sink = pa.BufferOutputStream()
    tables = [b.to_arrow() for b in batches]
    with pacsv.CSVWriter(sink, tables[0].schema,
                         write_options=pacsv.WriteOptions(quoting_style="needed")) as writer:
        for table in tables:
            writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _numpy_csv(batches: list[PacketColumns]) -> bytes:
    return header(COLUMNS) + b"".join(format_rows(b).tobytes() for b in batches)


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=lambda p: p.name)
def test_every_capture_gives_pyarrow_s_bytes(path: Path, tmp_path: Path) -> None:
    """The CSV of every test capture (pcap, pcapng, gzip, damaged, IPv6, tunnels, no IP)
    is the file ``write_table`` writes from the Arrow batches, filtered or not."""
    for options in ({}, {"port": 80}, {"host": "10.0.0.1"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                write_table(packets.iter_packet_tables(path, **options), "csv",
                            tmp_path / "arrow.csv")
            except XenlatError as exc:  # unreadable: the numpy path says the same
                with pytest.raises(type(exc)):
                    write_packet_csv(packets.iter_packet_columns(path, **options),
                                     tmp_path / "numpy.csv")
                return
            rows = write_packet_csv(packets.iter_packet_columns(path, **options),
                                    tmp_path / "numpy.csv")
        ours = (tmp_path / "numpy.csv").read_bytes()
        assert ours == (tmp_path / "arrow.csv").read_bytes(), options
        assert rows == ours.count(b"\n") - 1


def _batch(n: int, rng: np.random.Generator, addresses: list[str]) -> PacketColumns:
    """n rows of random values over each column's whole range, a third of them missing."""
    values = {}
    for name, dtype in packets._NUMPY_DTYPE.items():
        info = np.iinfo(dtype)
        values[name] = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    valid = {name: rng.random(n) < 0.67 for name in packets._NULLABLE}
    codes = rng.integers(-1, len(addresses), (2, n)).astype(np.int32)
    return PacketColumns(values, valid, codes[0], codes[1], addresses)


def test_the_edges_of_every_column(tmp_path: Path) -> None:
    """Each integer type's minimum and maximum (int64's minimum has no positive twin), zero,
    powers of ten and their neighbours, missing values, IPv6 texts and texts that need their
    quotes doubled: pyarrow's bytes."""
    rng = np.random.default_rng(7)
    addresses = ["10.0.0.1", "2001:db8::1", "::ffff:10.1.2.3", "fe80::1:2:3:4:5:6",
                 'a"b', "c,d", ""]
    batches = [_batch(n, rng, addresses) for n in (1, 7, 1000)]
    edges = PacketColumns.empty()
    special = {}
    for name, dtype in packets._NUMPY_DTYPE.items():
        info = np.iinfo(dtype)
        near = [0, 1, 9, 10, 11, 99, 100, 9999, 10_000, 10_001, info.min, info.min + 1,
                info.max - 1, info.max] + [10**k + d for k in range(1, 20) for d in (-1, 0, 1)]
        kept = [v for v in near if info.min <= v <= info.max]
        special[name] = np.array(kept, dtype=object).astype(dtype)
    n = max(len(v) for v in special.values())
    edges = PacketColumns({k: np.resize(v, n) for k, v in special.items()},
                          {k: np.ones(n, dtype=bool) for k in packets._NULLABLE},
                          np.zeros(n, np.int32), np.full(n, -1, np.int32), ["::"])
    batches.append(edges)
    assert _numpy_csv(batches) == _arrow_csv(batches)
    for batch in batches:  # a batch alone: its own widths
        assert _numpy_csv([batch]) == _arrow_csv([batch])


def test_no_rows_and_no_addresses() -> None:
    empty = PacketColumns.empty()
    assert format_rows(empty).size == 0
    assert _numpy_csv([empty]) == _arrow_csv([empty])


def test_small_file_path_imports_neither_pyarrow_nor_pandas(tmp_path: Path) -> None:
    """``xenlat packets`` to CSV on a small capture (file or stdout) needs numpy alone, and
    writes the bytes of the pyarrow path, which larger files take."""
    capture = CAPTURES / "multi-section.pcapng"
    assert capture.stat().st_size <= packet_csv.SMALL_FILE_BYTES
    code = ("import sys\nfrom xentrace_cli.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e\n"
            "print('\\nHEAVY', sorted(m for m in ('pyarrow', 'pandas', 'rich', 'numpy.ma') "
            "if m in sys.modules), file=sys.stderr)")
    for out in (["-o", str(tmp_path / "small.csv")], []):
        proc = subprocess.run([sys.executable, "-c", code, "packets", str(capture), *out],
                              capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.decode().splitlines()[-1] == "HEAVY []"
    stdout = proc.stdout
    assert stdout == (tmp_path / "small.csv").read_bytes()
    write_table(packets.iter_packet_tables(capture), "csv", tmp_path / "arrow.csv")
    assert stdout == (tmp_path / "arrow.csv").read_bytes()


def test_large_file_path_is_pyarrow_s(runner, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    """Past SMALL_FILE_BYTES the command writes through pyarrow: the same file."""
    capture = CAPTURES / "multi-section.pcapng"
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    assert runner.invoke(main, ["packets", str(capture), "-o", str(small)]).exit_code == 0
    monkeypatch.setattr(packet_csv, "SMALL_FILE_BYTES", 0)
    calls: list[int] = []
    original = packet_csv.format_rows
    monkeypatch.setattr(packet_csv, "format_rows", lambda b: calls.append(1) or original(b))
    assert runner.invoke(main, ["packets", str(capture), "-o", str(large)]).exit_code == 0
    assert not calls
    assert large.read_bytes() == small.read_bytes()
