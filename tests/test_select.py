"""The selection step (select.py): -Y, --begin/--end, --host, --port, --min-duration pick the
rows reported after an analysis of every packet; set directories feed the same commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import START_S, make_analysis

from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.model import STAGE_COLUMNS, TABLE_CHECKPOINTS, checkpoint_ns_column
from xentrace_cli.pipeline.analyze import analyze_files
from xentrace_cli.pipeline.select import Selection, parse_time, row_durations_us, select

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
BLACK = SAMPLES / "black-0.1s"
FIRST_NS = 1_767_229_200_000_000_000  # 2026-01-01T01:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("+1.5s", FIRST_NS + 1_500_000_000),
    ("+200ms", FIRST_NS + 200_000_000),
    ("1767229200.25", FIRST_NS + 250_000_000),
    ("1767229200.000000001", FIRST_NS + 1),
    ("2026-01-01T01:00:00.25Z", FIRST_NS + 250_000_000),
    ("2026-01-01 03:00:00.5+02:00", FIRST_NS + 500_000_000),  # 01:00:00.5 UTC
    ("2026-01-01T01:00:02", FIRST_NS + 2_000_000_000),          # UTC when it says nothing
    ("01:00:03.000000007", FIRST_NS + 3_000_000_007),           # on the first packet's date
])
def test_times_in_every_form(text: str, expected: int) -> None:
    assert parse_time(text, FIRST_NS + 123) == expected + (123 if text.startswith("+") else 0)


@pytest.mark.parametrize("text", ["yesterday", "+fast", "25:00:00", "2026-13-01T00:00:00"])
def test_bad_times_are_option_errors(text: str) -> None:
    with pytest.raises(OptionError, match="--end"):
        parse_time(text, FIRST_NS, "--end")


def test_host_port_window_and_duration_pick_rows() -> None:
    analysis = make_analysis(100, stalls=(10, 60))
    table = analysis.table
    table.loc[50:, "src"] = "10.0.0.9"
    table.loc[::2, "dport"] = 40002
    # --host: only the rows from or to 10.0.0.9 (rows 50..99)
    picked = select(analysis, Selection(host="10.0.0.9")).table
    assert list(picked.index) == list(range(50, 100))
    # --port on either end
    assert list(select(analysis, Selection(port=40002)).table.index) == list(range(0, 100, 2))
    # --begin/--end: packets every 10 ms from START_S; rows 20..30 by their first checkpoint
    window = Selection(begin="+200ms", end="+300ms")
    assert list(select(analysis, window).table.index) == list(range(20, 31))
    absolute = Selection(begin=f"{START_S + 0.2:.6f}", end=f"{START_S + 0.3:.6f}")
    assert list(select(analysis, absolute).table.index) == list(range(20, 31))
    # --min-duration: the two stalls of 100 ms and nothing else
    slow = select(analysis, Selection(min_duration_us=50_000))
    assert list(slow.table.index) == [10, 60]
    # the statistics are those of the rows kept; the note says what was selected
    assert slow.stats["socket_read"]["count"] == 2
    assert slow.stats["socket_read"]["anomalies"] == 2
    assert "showing 2 of 100 data segments (--min-duration 50.00 ms)" in slow.notes[-1]
    with pytest.raises(OptionError, match="not an IPv4 or IPv6"):
        select(analysis, Selection(host="xen-a"))


def test_duration_of_a_lone_row_is_its_longest_interval() -> None:
    table = pd.DataFrame({"total_us": [np.nan, 5.0, np.nan],
                          "request_to_response_us": [80.0, np.nan, np.nan],
                          "response_to_next_us": [120.0, 7.0, np.nan]})
    got = row_durations_us(table)
    assert got[0] == 120.0 and got[1] == 5.0 and np.isnan(got[2])


@pytest.fixture(scope="module")
def black_full():
    return analyze_files(guest=BLACK / "guest.pcapng", backend=BLACK / "vif5.0.pcap",
                         phys=BLACK / "phys.pcap", xentrace=BLACK / "xentrace.bin",
                         socket_log=BLACK / "app.strace")


def test_display_filter_selects_what_is_reported_not_what_is_aligned(black_full, tshark):
    """-Y on the full sample set gives, for the packets it keeps, the same stages and causes
    as the run without it (the filter is evaluated by tshark on the guest capture)."""
    import subprocess

    wanted = "tcp.srcport == 11211 && frame.number > 400"
    full = black_full.table
    kept = analyze_files(guest=BLACK / "guest.pcapng", backend=BLACK / "vif5.0.pcap",
                         phys=BLACK / "phys.pcap", xentrace=BLACK / "xentrace.bin",
                         socket_log=BLACK / "app.strace", display_filter=wanted).table
    frames = subprocess.run([tshark, "-n", "-r", str(BLACK / "guest.pcapng"), "-Y", wanted,
                             "-T", "fields", "-e", "frame.number"], capture_output=True,
                            check=True, text=True).stdout.split()
    expected = full[full["frame"].isin([int(f) for f in frames])]
    assert len(kept) == len(expected) > 100
    assert (kept["direction"] == "rx").all()
    assert kept["frame"].tolist() == expected["frame"].tolist()
    columns = [*STAGE_COLUMNS, "total_us"]
    pd.testing.assert_frame_equal(kept[columns], expected[columns])
    for column in ("anomaly", "cause", "cause_detail"):
        assert kept[column].tolist() == expected[column].tolist()
    assert kept["vmm_us"].notna().all() and (kept["cause"] != "").sum() > 0


def test_exact_times_and_their_clock(black_full) -> None:
    table = black_full.table
    assert table.attrs["clock"] == "dom0"
    assert table["frame"].dtype == np.int64
    truth = pd.read_csv(BLACK / "truth.csv")
    assert len(truth) == len(table)
    for point in TABLE_CHECKPOINTS:
        exact = table[checkpoint_ns_column(point)]
        assert str(exact.dtype) == "Int64"
        seconds = table[f"t_{point}"].to_numpy(float)
        have = exact.notna().to_numpy()
        # measured exactly where the float is, and the same instant within its 240 ns rounding
        assert np.array_equal(have, np.isfinite(seconds)), point
        if have.any():
            diff = exact[have].to_numpy(np.int64) / 1e9 - seconds[have]
            assert np.abs(diff).max() < 1e-6, point


def test_guest_alone_is_on_the_guest_clock() -> None:
    one = analyze_files(guest=BLACK / "guest.pcapng")
    assert one.table.attrs["clock"] == "guest"
    assert one.table["t_guest_ns"].notna().all()
    assert one.to_document()["summary"]["clock"] == "guest"


def test_set_directory_feeds_analyze_with_its_manifest(runner, black_full) -> None:
    result = runner.invoke(main, ["analyze", str(BLACK), "--format", "json", "--no-progress"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert sorted(document["sources"]) == ["backend", "guest", "phys", "socket_log",
                                           "xentrace"]
    assert document["summary"]["packets"] == len(black_full.table)
    anomalies = [p["anomaly"] for p in document["packets"]]
    assert anomalies == black_full.table["anomaly"].tolist()


def test_set_directory_options_win_and_bad_manifest_exits_3(runner, tmp_path) -> None:
    (tmp_path / "xenlat-set.toml").write_text("format = 1\n[files]\nguest = 'missing.pcap'\n")
    result = runner.invoke(main, ["analyze", str(tmp_path), "--no-progress"])
    assert result.exit_code == 3
    assert result.stderr == (f"xenlat: error: {tmp_path / 'xenlat-set.toml'}: [files] guest = "
                             "'missing.pcap': no such file\n")
    result = runner.invoke(main, ["analyze", str(BLACK), "--begin", "soon", "--no-progress"])
    assert result.exit_code == 2
    assert "--begin 'soon': not a time" in result.stderr


def test_cli_selection_on_the_sample(runner) -> None:
    result = runner.invoke(main, ["analyze", str(BLACK / "guest.pcapng"), "--socket-log",
                                  str(BLACK / "app.strace"), "--min-duration", "50ms",
                                  "--format", "csv", "--no-progress"])
    assert result.exit_code == 0, result.stderr
    from io import StringIO

    rows = pd.read_csv(StringIO(result.stdout))
    assert len(rows) > 0 and (rows["total_us"] >= 50_000).all()


def test_parquet_keeps_the_exact_times_and_the_clock(runner, tmp_path) -> None:
    out = tmp_path / "black.parquet"
    result = runner.invoke(main, ["analyze", str(BLACK), "--format", "parquet", "-o", str(out),
                                  "--no-progress"])
    assert result.exit_code == 0, result.stderr
    table = pd.read_parquet(out)
    assert table.attrs["clock"] == "dom0"
    assert str(table["t_guest_ns"].dtype) == "Int64" and table["frame"].dtype == np.int64


def test_begin_and_end_keep_the_exchanges_that_start_inside(tmp_path: Path) -> None:
    # a real capture's exchanges (flows read from pandas: read-only arrays under
    # copy-on-write, which --begin used to write into: an internal error, exit 4)
    sample = Path(__file__).parent.parent / "sample_pcaps" / "black-0.1s" / "guest.pcapng"
    analysis = analyze_files(sample)
    t0 = float(analysis.table["t_guest"].min())
    window = Selection(begin="+0.3s", end="+0.8s")
    picked = select(analysis, window)
    t = analysis.flows["t_request"].to_numpy(float)
    # by hand: the exchanges whose request starts in [t0 + 0.3 s, t0 + 0.8 s], ± 1 µs
    inside = (t * 1e9 >= (t0 + 0.3) * 1e9 - 1e3) & (t * 1e9 <= (t0 + 0.8) * 1e9 + 1e3)
    assert 0 < len(picked.flows) < len(analysis.flows)
    assert sorted(picked.flows["request_frame"]) == sorted(
        analysis.flows["request_frame"][inside])
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["analyze", str(sample), "--begin", "+0.3s", "--end",
                                       "+0.8s"])
    assert result.exit_code == 0, result.stderr
