"""The bad-input contract through the command line (issue 10's inputs, tests/data/badinput):
each hostile file gives its exit code, exactly the stderr lines named here, and what could be
salvaged, checked against the same file without the hostile part (or a hand count).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import DATA, ROOT

from xentrace_cli.cli import main
from xentrace_cli.errors import XenlatWarning
from xentrace_cli.sources.socket_log import read_socket_log

BAD = DATA / "badinput"
sys.path.insert(0, str(BAD))
sys.path.insert(0, str(DATA / "captures"))
import make_badinput  # noqa: E402
import make_captures as mk  # noqa: E402


def test_the_files_are_what_the_generator_writes() -> None:
    """The committed inputs are the generator's (so each test's hand figures hold)."""
    for name, line in make_badinput.STRACE_LINES.items():
        assert (BAD / name).read_bytes() == b"".join(make_badinput.STRACE_BASE) + line + \
            make_badinput.EXIT
    for name, data in make_badinput.captures().items():
        assert (BAD / name).read_bytes() == data, name


def _stderr(result: object) -> list[str]:
    return result.stderr.splitlines()  # type: ignore[attr-defined]


# ---- socket logs: a number past its width, a text that does not decode -----------------------
STRACE_CASES = {
    "ts_past_64_bits.strace": "number out of range: timestamp past int64 nanoseconds",
    "ret_past_64_bits.strace": "number out of range: return value past 2147483647",
    "duration_past_64_bits.strace": "number out of range: -T duration past int64 nanoseconds",
    "fd_past_32_bits.strace": "number out of range: file descriptor past 2147483647",
    "pid_past_32_bits.strace": "number out of range: pid past 2147483647",
    "inet_addr_not_utf8.strace": "connect: address not ASCII text or port past 65535",
}


@pytest.mark.parametrize("name", sorted(STRACE_CASES))
def test_strace_line_out_of_range_is_skipped_by_name(runner: CliRunner, name: str,
                                                     tmp_path: Path) -> None:
    path = BAD / name
    result = runner.invoke(main, ["analyze", "--socket-log", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {path}: line 9: {STRACE_CASES[name]}; "
                               "line skipped"]
    # salvaged: every other call, exactly as read from the file without line 9
    clean = tmp_path / "clean.strace"
    clean.write_bytes(b"".join(make_badinput.STRACE_BASE) + make_badinput.EXIT)
    with pytest.warns(XenlatWarning, match="line 9"):
        got = read_socket_log(path)
    pd.testing.assert_frame_equal(got, read_socket_log(clean))
    assert list(got["bytes"][got["direction"] == "rx"]) == [25, 0, 8]   # 0: the EAGAIN read


def test_strace_nothing_salvaged_is_one_error(runner: CliRunner) -> None:
    """A [pid N] line with a return value past 64 bits, alone: exit 3 naming line and problem."""
    path = BAD / "pid_line_ret_past_64_bits.strace"
    result = runner.invoke(main, ["analyze", "--socket-log", str(path)])
    assert result.exit_code == 3
    assert _stderr(result) == [f"xenlat: error: {path}: line 1: no socket call could be read: "
                               "number out of range: return value past 2147483647"]
    assert result.stdout == ""


PLAIN_CASES = {
    "fd_past_32_bits.csv": (2, "fd not an integer or out of range (0 to 2147483647)"),
    "pid_past_64_bits.csv": (2, "pid not an integer or out of range (0 to 2147483647)"),
    "bytes_past_64_bits.csv": (2, "bytes missing, not an integer or out of range "
                                  "(0 to 2147483647)"),
    "ts_ns_past_64_bits.csv": (2, "ts_ns missing, not an integer or out of range "
                                  "(0 to 2^63-1 ns)"),
    "duration_past_64_bits.csv": (2, "duration_ns not an integer or out of range "
                                     "(0 to 9223372036854775807)"),
    "bytes_past_64_bits.jsonl": (1, "bytes missing, not an integer or out of range "
                                    "(0 to 2147483647)"),
    "fd_past_32_bits.jsonl": (1, "fd not an integer or out of range (0 to 2147483647)"),
}


@pytest.mark.parametrize("name", sorted(PLAIN_CASES))
def test_plain_log_field_out_of_range_is_skipped_by_name(runner: CliRunner, name: str) -> None:
    """No numpy RuntimeWarning, no crash: the line is named, the next one kept."""
    path = BAD / name
    line, problem = PLAIN_CASES[name]
    result = runner.invoke(main, ["analyze", "--socket-log", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {path}: line {line}: {problem}; line skipped"]
    with pytest.warns(XenlatWarning):
        got = read_socket_log(path)
    # the one good record: 10 bytes on fd 3 at 1700000000.2 s (duration 5 ns where given)
    assert list(got["bytes"]) == [10]
    assert list(got["ts_ns"]) == [1_700_000_000_200_000_000]
    assert list(got["fd"]) == [3]


# ---- captures --------------------------------------------------------------------------------
def _rows(stdout: str) -> list[list[str]]:
    return [line.split(",") for line in stdout.splitlines()[1:]]


T_EPB = 1_700_000_000 * 10**9     # the EPBs' ticks are 1_700_000_000_000_000 + i µs


@pytest.mark.parametrize(("name", "warning", "times"), [
    ("tsresol_0x7f.pcapng", "offset 28: interface 0 has if_tsresol 10^-127 (0x7f): no 64-bit "
     "timestamp reaches one second at that resolution, its packets are timed within "
     "1970-01-01 00:00:01", [0, 0, 0]),
    ("tsresol_0xff.pcapng", "offset 28: interface 0 has if_tsresol 2^-127 (0xff): no 64-bit "
     "timestamp reaches one second at that resolution, its packets are timed within "
     "1970-01-01 00:00:01", [0, 0, 0]),
    ("version_0.1.pcapng", "offset 12: section 1 says pcapng version 0.1 (known: 1.0, 1.2); "
     "read as 1.0", [T_EPB, T_EPB + 1000, T_EPB + 2000]),
    ("major_1.pcap", "offset 4: pcap version 1.4 (known: 2.x); read as 2.4",
     [(mk.T0_NS + i * 1_234_567_891) // 1000 * 1000 for i in range(3)]),
])
def test_capture_read_with_a_warning(runner: CliRunner, name: str, warning: str,
                                     times: list[int]) -> None:
    """Was exit 4 (OverflowError) for if_tsresol 0x7f/0xff; versions were read silently."""
    path = BAD / name
    result = runner.invoke(main, ["packets", str(path)])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {path}: {warning}"]
    assert [int(r[1]) for r in _rows(result.stdout)] == times


def test_second_section_with_an_unknown_version(runner: CliRunner) -> None:
    path = BAD / "second_section_2.0.pcapng"
    data = path.read_bytes()
    second = data.index(b"\x0a\x0d\x0d\x0a", 4)
    result = runner.invoke(main, ["packets", str(path)])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {path}: offset {second + 12}: section 2 says "
                               "pcapng version 2.0 (known: 1.0, 1.2); read as 1.0"]
    assert [int(r[1]) for r in _rows(result.stdout)] == [T_EPB, T_EPB + 1000, T_EPB + 2000,
                                                          T_EPB + 10**9]


def test_section_header_length_names_the_problem(runner: CliRunner) -> None:
    path = BAD / "shb_length_12.pcapng"
    for command in ("packets", "info"):
        result = runner.invoke(main, [command, str(path)])
        assert result.exit_code == 3
        assert _stderr(result) == [
            f"xenlat: error: {path}: offset 4, packet 1: corrupt section header: block "
            "length 12 (a section header takes 28 to 8388608 bytes)"]
        assert result.stdout == ""


def test_duplicated_frames_are_reported(runner: CliRunner) -> None:
    path = BAD / "duplicated_2000.pcap"
    result = runner.invoke(main, ["packets", str(path)])
    assert result.exit_code == 0
    assert _stderr(result) == [
        f"xenlat: warning: {path}: packet 2: 1999 frames duplicate an earlier frame (same "
        "time, length and headers): a capture taken twice or replayed? each copy is matched "
        "as a packet of its own"]
    assert len(_rows(result.stdout)) == 2000     # all kept


def test_timestamps_going_backwards_are_reported(runner: CliRunner) -> None:
    path = BAD / "backwards.pcap"
    step = 1_234_567_891
    t = [(mk.T0_NS + i * step - (5 * 10**9 if i == 2 else 0)) // 1000 * 1000 for i in range(4)]
    back = t[1] - t[2]           # frame 3 is 5 s earlier than its place: 3.765432 s back
    result = runner.invoke(main, ["packets", str(path)])
    assert result.exit_code == 0
    assert _stderr(result) == [
        f"xenlat: warning: {path}: packet 3: timestamps go backwards 1 time in file order "
        f"(largest step back {back // 10**9}.{back % 10**9:09d} s): merged or re-timed "
        "capture? latencies across those steps are suspect"]
    assert [int(r[1]) for r in _rows(result.stdout)] == t


def test_same_file_for_two_capture_points(runner: CliRunner, tmp_path: Path) -> None:
    guest = Path("sample_pcaps/black-0.1s/guest.pcapng").resolve()
    link = tmp_path / "vif5.0.pcapng"
    link.symlink_to(guest)      # another spelling of the same file counts too
    result = runner.invoke(main, ["analyze", str(guest), "--backend", str(link),
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {link}: the same file is given as backend and "
                               "guest: the intervals between them would read as zero"]


# ---- files that are not regular, readable files ----------------------------------------------
def test_fifo_and_device_are_named(runner: CliRunner, tmp_path: Path) -> None:
    fifo = tmp_path / "capture.pcap"
    os.mkfifo(fifo)
    for command, path, kind in (("info", fifo, "a FIFO (named pipe)"),
                                ("packets", "/dev/zero", "a character device"),
                                ("trace", "/dev/zero", "a character device")):
        result = runner.invoke(main, [command, str(path)])
        assert result.exit_code == 3
        assert _stderr(result) == [f"xenlat: error: {path}: is {kind}, not a regular file: "
                                   "save the data to a file and give that"]
    result = runner.invoke(main, ["analyze", "--socket-log", str(fifo)])
    assert (result.exit_code, len(_stderr(result))) == (3, 1)


def test_gzip_xentrace_is_named(runner: CliRunner) -> None:
    path = BAD / "xentrace.bin.gz"
    result = runner.invoke(main, ["trace", str(path)])
    assert result.exit_code == 3
    assert _stderr(result) == [f"xenlat: error: {path}: offset 0: gzip-compressed xentrace "
                               "file: decompress it first (gunzip -k FILE); xenlat maps traces "
                               "uncompressed"]


def test_unreadable_file_is_exit_3_and_one_line(tmp_path: Path) -> None:
    """Was click's three-line usage error (exit 2). Root reads any file: as root the command
    runs without the capabilities that let it (util-linux's setpriv), in a process of its own."""
    path = tmp_path / "guest.pcap"
    path.write_bytes((BAD / "major_1.pcap").read_bytes())
    path.chmod(0)
    command = [sys.executable, "-m", "xentrace_cli", "info", str(path)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [f"xenlat: error: {path}: permission denied"]
    assert done.stdout == ""


# ---- info on any number of interfaces --------------------------------------------------------
def test_info_memory_is_bounded_by_the_listing(tmp_path: Path) -> None:
    """20,000 empty interfaces: 100 described, the rest counted. Measured before the change:
    46.5 MB peak and 4.8 MB of JSON (2.9 GB for 1 M interfaces); now 14.2 MB (12 MB of it the
    reader's chunk buffer) and 25 kB."""
    from xentrace_cli.outputs.tables import dumps_json
    from xentrace_cli.sources.info import LISTED_INTERFACES, capture_info

    n = 20_000
    path = tmp_path / "many.pcapng"
    frame = mk.ethernet_frames()[0]
    path.write_bytes(mk.shb("<") + mk.idb("<", 1) * n
                     + mk.epb("<", n - 1, 1_700_000_000_000_000, frame))
    tracemalloc.start()
    try:
        d = capture_info(path).to_dict()
        text = dumps_json(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(d["interfaces"]) == LISTED_INTERFACES
    assert d["interface_count"] == n
    assert d["interfaces_not_listed"] == {"interfaces": n - LISTED_INTERFACES, "packets": 1}
    assert len(text) < 50_000
    assert peak < 24 << 20, peak


def test_info_table_lists_the_rest_as_a_count(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "many.pcapng"
    path.write_bytes(mk.shb("<") + mk.idb("<", 1) * 150)
    result = runner.invoke(main, ["info", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "50 more interfaces" in result.stdout
    assert struct.unpack("<I", path.read_bytes()[:4])[0] == 0x0A0D0D0A


# ---- found by the fuzz targets (tests/fuzz_harness.py): each was exit 4 -----------------------
def test_fuzz_found_inputs_are_the_generator_s() -> None:
    for name, data in make_badinput.FUZZ_FOUND.items():
        assert (BAD / name).read_bytes() == data, name


@pytest.mark.parametrize(("name", "code", "stderr", "salvaged"), [
    ("fuzz_csv_not_utf8.csv", 0, ["warning: {path}: line 3: not UTF-8 text (byte 0xff at "
                                  "column 17); line skipped"], [10, 5]),
    ("fuzz_csv_header_cut.csv", 3, [
        "warning: {path}: line 1: file ends in the middle of a record (cut); the partial record "
        "was dropped", "error: {path}: line 1: not a socket log: no whole record"], None),
    ("fuzz_csv_vtab_line.csv", 0, ["warning: {path}: line 4: expected 3 fields, found 1; line "
                                   "skipped"], [10, 5]),
    ("fuzz_csv_row_after_empty.csv", 0, ["warning: {path}: line 5: expected 3 fields, found 1; "
                                         "line skipped"], [10, 20]),
    # a bare CR inside the header, then a byte that is not UTF-8: Arrow split the header into
    # two rows and could not hand the second to our handler ("Exception ignored" traceback)
    ("fuzz_csv_cr_header_not_utf8.csv", 3, [
        "error: {path}: line 1: not a socket log: missing the ts (or ts_ns) and bytes fields"],
     None),
    ("fuzz_strace_only_file_calls.strace", 3, [
        "error: {path}: the socket log has times of day only and there is no capture to take "
        "the date from: rerun strace with -ttt (epoch times)"], []),
])
def test_fuzz_found_socket_logs(runner: CliRunner, name: str, code: int, stderr: list[str],
                                salvaged: list[int] | None) -> None:
    path = BAD / name
    result = runner.invoke(main, ["analyze", "--socket-log", str(path), "--format", "json"])
    assert result.exit_code == code, result.output
    assert _stderr(result) == [f"xenlat: {line.format(path=path)}" for line in stderr]
    if salvaged is not None:        # the byte counts of the records kept, in file order
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XenlatWarning)
            assert list(read_socket_log(path)["bytes"]) == salvaged


def test_fuzz_found_trace_cut_short_in_a_full_analysis(runner: CliRunner,
                                                       tmp_path: Path) -> None:
    """The simulated set with its trace cut at byte 15936: no receive copy is left to place
    packets on (an empty index crashed trace_path); the analysis goes on without them."""
    base = make_badinput.simulated_set(tmp_path / "set")
    cut = BAD / "fuzz_trace_cut.bin"
    assert cut.read_bytes() == (base / "xentrace.bin").read_bytes()[:make_badinput.TRACE_CUT_AT]
    result = runner.invoke(main, [
        "analyze", str(base / "guest.pcapng"), "--backend", str(base / "vif5.0.pcap"),
        "--phys", str(base / "phys.pcap"), "--xentrace", str(cut),
        "--socket-log", str(base / "app.strace"), "--domid", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result)[0] == (
        f"xenlat: warning: {cut}: offset 15936: file ends inside a window of CPU 0 (the file "
        "has 15936 bytes, the window needs 15948); kept the whole records before")
    assert all(line.startswith("xenlat: warning: ") for line in _stderr(result))
    document = json.loads(result.stdout)
    # salvaged: the 102 data segments of the 20 flows, as many as with the whole trace
    assert len(document["flows"]) == 20
    assert len(document["packets"]) == 102


def test_fuzz_found_damaged_escape_keeps_the_text(runner: CliRunner) -> None:
    """``"\\x47\\x"`` (a \\x escape without hex digits, from a damaged line) made the decoder
    raise (exit 4); the string is kept as written, every call is read."""
    path = BAD / "fuzz_strace_bad_x_escape.strace"
    result = runner.invoke(main, ["analyze", "--socket-log", str(path), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == []
    calls = read_socket_log(path)
    assert list(calls["bytes"]) == [7, 7, 4, 13, 4000, 2, 2]
    assert calls["data"][2] == rb"\x47\x"                  # as written
    assert calls["data"][1] == b"\x00\x01\x012\x7f\x80\xff"  # a good one still decoded


def test_fuzz_found_tsc_beyond_2_63_is_damage_said_once(runner: CliRunner) -> None:
    """A record whose TSC has its top bit set (read as a negative int64) made the views
    overflow (exit 4, and numpy's cast warnings once that was fixed). It is said, put at the
    trace's end, and every view works."""
    path = BAD / "fuzz_trace_tsc_past_63_bits.bin"
    for args in (["--format", "json"], [], ["--dump"]):
        result = runner.invoke(main, ["trace", str(path), *args])
        assert result.exit_code == 0, result.output
        lines = _stderr(result)
        assert all(line.startswith("xenlat: warning: ") for line in lines), lines
        assert not any("RuntimeWarning" in line for line in lines)
    summary = runner.invoke(main, ["trace", str(path), "--format", "json"])
    assert f"{path}: 1 records carry a time beyond 2**63 TSC cycles" in summary.stderr


def _realistic_fuzz_set(tmp_path: Path) -> Path:
    """The fuzz harness's capture set on the realistic host (black-0.1s, seed 3, 20 requests)."""
    from xentrace_cli.simulate import run_scenario

    base = tmp_path / "set"
    run_scenario("black-0.1s", base, seed=3, requests=20, host="realistic")
    return base


def test_fuzz_found_a_fit_with_no_rate(runner: CliRunner, tmp_path: Path) -> None:
    """A guest capture cut at packet 14 (mutated) beside the realistic set: the TSC refit with
    grant copies came out with a drift of -100 % (no rate at all: division by zero, exit 4).
    Such a fit is no fit; the interrupts alone align the trace, one-sided, and that is said."""
    base = _realistic_fuzz_set(tmp_path)
    guest = BAD / "fuzz_guest_cut_absurd_drift.pcapng"
    result = runner.invoke(main, [
        "analyze", str(guest), "--backend", str(base / "vif5.0.pcap"), "--phys",
        str(base / "phys.pcap"), "--xentrace", str(base / "xentrace.bin"), "--socket-log",
        str(base / "app.strace"), "--domid", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert _stderr(result) == [f"xenlat: warning: {guest}: offset 1284 (packet 14): capture cut "
                               "short: block cut short (17733 of 40960 bytes); the 13 whole "
                               "packets before it were kept"]
    tsc = json.loads(result.stdout)["alignment"]["tsc->dom0"]
    assert tsc["quality"] == "one-sided" and tsc["cpu_hz"] > 0


def test_fuzz_found_coarse_alignment_on_an_interval_end(runner: CliRunner,
                                                       tmp_path: Path) -> None:
    """A damaged trace (cut, mutated) beside the fuzz harness's realistic set: one scale pair
    voted, the stabbing point was its interval's end, and |s − k| ≤ half missed it by a
    rounding (argmax of an empty sequence, exit 4). The analysis goes on, the cut said."""
    base = _realistic_fuzz_set(tmp_path)
    trace = BAD / "fuzz_trace_stab_at_an_end.bin"
    result = runner.invoke(main, [
        "analyze", str(base / "guest.pcapng"), "--backend", str(base / "vif5.0.pcap"),
        "--phys", str(base / "phys.pcap"), "--xentrace", str(trace), "--socket-log",
        str(base / "app.strace"), "--domid", "5", "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = _stderr(result)
    assert lines and all(line.startswith("xenlat: warning: ") for line in lines), lines
    assert "file ends inside a window" in lines[0]
    assert json.loads(result.stdout)["packets"]


# ---- several inputs warn at once: one order, however the readers' threads run ---------------
def test_socket_log_warnings_follow_the_captures_in_a_fixed_order(runner: CliRunner,
                                                                  tmp_path: Path) -> None:
    """The socket log is read in a thread beside the captures, but its warnings (cut last line,
    a junk line) come after the cut capture's, as a serial read printed them, every run; with
    --strict the capture's truncation is the error, as before."""
    samples = ROOT / "sample_pcaps" / "healthy"
    guest, log = tmp_path / "guest.pcapng", tmp_path / "app.strace"
    guest.write_bytes((samples / "guest.pcapng").read_bytes()[:-10])  # the last block cut
    lines = (samples / "app.strace").read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:5]) + b"this is not strace\n" + b"".join(lines[5:])
                    + b'4242  1767229300.000000 read(3, "ab')
    cut_line = len(lines) + 2
    args = ["analyze", "--guest", str(guest), "--socket-log", str(log), "--format", "json",
            "-o", str(tmp_path / "out.json")]
    for _ in range(3):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        stderr = _stderr(result)
        assert len(stderr) == 3, stderr
        assert stderr[0].startswith(f"xenlat: warning: {guest}: offset ")
        assert "capture cut short" in stderr[0]
        assert stderr[1:] == [
            f"xenlat: warning: {log}: line {cut_line}: file ends in the middle of a line "
            "(cut); the partial line was dropped",
            f"xenlat: warning: {log}: line 6: not an strace line (expected a -tt/-ttt "
            "timestamp and a system call); line skipped"]
    strict = runner.invoke(main, [*args, "--strict"])
    assert strict.exit_code == 3
    assert _stderr(strict) == [stderr[0].replace("warning", "error", 1) + " (--strict)"]
