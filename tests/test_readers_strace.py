"""Tests of xentrace_cli.sources.strace (and readers.socklog): strace text and plain logs →
the socket call table. Expected values are worked out by hand from the fixture lines."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xentrace_cli.cli import main
from xentrace_cli.errors import InputError, TruncatedInput, XenlatWarning
from xentrace_cli.simulate.writers import strace_quote, write_strace
from xentrace_cli.sources import strace
from xentrace_cli.sources.socket_log import read_socket_log
from xentrace_cli.sources.strace import COLUMNS, decode_strace_string

DATA = Path(__file__).resolve().parent / "data" / "strace"
S = 10**9  # ns per second
US = 10**3  # ns per microsecond


def read_quiet(path: Path) -> pd.DataFrame:
    """Read, failing the test on any warning (fixtures meant to be clean)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read_socket_log(path)


def write(tmp_path: Path, text: str, name: str = "app.strace") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1"))
    return path


# ---------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(("shown", "raw"), [
    (rb"plain text", b"plain text"),
    (rb"\t\n\v\f\r\"\\", b"\t\n\v\f\r\"\\"),       # C escapes
    (rb"\0\1\177", b"\x00\x01\x7f"),                   # shortest octal
    (rb"\0012", b"\x012"),                              # 3 digits before a digit
    (rb"\3770", b"\xff0"),
    (rb"\x7f\x00ab", b"\x7f\x00ab"),                   # -x
    (rb"\x61\x62\x0d\x0a", b"ab\r\n"),                 # -xx (every byte)
])
def test_decode_strace_string(shown: bytes, raw: bytes) -> None:
    assert decode_strace_string(shown) == raw


def test_damaged_escapes_kept_as_written_silently() -> None:
    """Escapes strace never writes (damaged strings): a backslash before a character no escape
    begins with, or octal past \\377, kept as written, the rest decoded; a ``\\x`` without two
    hex digits keeps its whole string. No warning, not even Python's own DeprecationWarning
    (``read_quiet`` turns every warning into an error). Both the plain-line path (read) and
    the sequential parser (writev)."""
    f = read_quiet(DATA / "damaged_escapes.strace")
    assert list(f["data"]) == [b"a\\Zb", b"\\777\\400x\\8", b"\\Z\\Z\x00A", b"\\Qr",
                               b"\\x4\\Z"]
    assert list(f["syscall"]) == ["read", "read", "read", "writev", "read"]


_SIMPLE_ESCAPES = {ord(k): v for k, v in {"\\": b"\\", "'": b"'", '"': b'"', "a": b"\a",
                                          "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r",
                                          "t": b"\t", "v": b"\v"}.items()}
_HEX = b"0123456789abcdefABCDEF"


def decode_by_hand(text: bytes) -> bytes:
    """The escapes undone one by one, by the rules of decode_strace_string's docstring: C
    escapes, octal (1-3 digits), ``\\xHH``; a character no escape begins with or octal past
    \\377 kept as written; ``\\x`` without two hex digits or a trailing backslash: the whole
    string as written."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] != ord("\\"):
            out.append(text[i])
            i += 1
            continue
        if i + 1 == len(text):
            return text
        after = text[i + 1]
        if after in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[after]
            i += 2
        elif after == ord("x"):
            digits = text[i + 2:i + 4]
            if len(digits) < 2 or any(d not in _HEX for d in digits):
                return text
            out.append(int(digits, 16))
            i += 4
        elif ord("0") <= after <= ord("7"):
            end = i + 2
            while end < min(i + 4, len(text)) and ord("0") <= text[end] <= ord("7"):
                end += 1
            value = int(text[i + 1:end], 8)
            out += text[i:end] if value > 0o377 else bytes([value])
            i = end
        else:
            out += text[i:i + 2]
            i += 2
    return bytes(out)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["\\", "\\\\", "x", "4", "7", "0", "1", "3", "8", "a", "f", "G",
                                 "Z", "n", '"', "'", " ", "\xff", "\x00"]),
                max_size=16).map(lambda parts: "".join(parts).encode("latin-1")))
def test_decoding_any_escape_is_silent_and_as_by_hand(text: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_strace_string(text) == decode_by_hand(text)
        # the chunk decoder (RE2 tells the odd escapes for the whole chunk) agrees
        assert list(strace._decode_strings(pa.array([text, b"", text], pa.binary()))) == \
            [decode_by_hand(text), b"", decode_by_hand(text)]


def test_escapes_fixture_data_and_offsets() -> None:
    f = read_quiet(DATA / "escapes.strace")
    assert list(f.columns) == list(COLUMNS)
    assert list(f["data"]) == [b"\t\n\v\f\r\"\\", b"\x00\x01\x012\x7f\x80\xff", b"GET\n",
                               b'a) = 5 <0.1>"', b"cut here", b"pq", b"\x00\xff"]
    assert list(f["data_truncated"]) == [False, False, False, False, True, False, False]
    # bytes come from the return value, not the (cut) string: recv returned 4000.
    assert list(f["bytes"]) == [7, 7, 4, 13, 4000, 2, 2]
    rx_offsets = [0, 7, 7 + 7, 7 + 7 + 4, 7 + 7 + 4 + 13, 7 + 7 + 4 + 13 + 4000]
    assert list(f["stream_offset"][:6]) == rx_offsets
    assert f["stream_offset"][6] == 0                 # first tx call on fd 3
    assert list(f["direction"]) == ["rx"] * 6 + ["tx"]
    assert f["pid"].isna().all()                      # no -f: no pid prefix


# ---------------------------------------------------------------------------- basic -ttt


def test_basic_ttt_rows() -> None:
    f = read_quiet(DATA / "basic_ttt.strace")
    assert f.attrs["format"] == "strace"
    assert f.attrs["time_of_day_only"] is False
    # socket() and epoll_wait() and "+++ exited" give no row.
    assert list(f["syscall"]) == ["connect", "write", "read", "read", "read", "close"]
    base = 1700000000 * S
    assert list(f["entry_ns"]) == [base + 200 * US, base + 300 * US, base + 400 * US,
                                   base + 500 * US, base + 700 * US, base + 800 * US]
    assert list(f["duration_ns"]) == [50 * US, 15 * US, 12 * US, 4 * US, 10 * US, 8 * US]
    assert (f["ts_ns"] == f["entry_ns"] + f["duration_ns"]).all()
    assert list(f["pid"]) == [1234] * 6               # "1234  " prefix of strace -f -o
    assert list(f["fd"]) == [3] * 6
    assert list(f["ret"]) == [-1, 7, 25, -1, 8, 0]
    assert list(f["errno"].fillna("")) == ["EINPROGRESS", "", "", "EAGAIN", "", ""]
    assert list(f["bytes"]) == [0, 7, 25, 0, 8, 0]
    assert list(f["stream_offset"]) == [0, 0, 0, 25, 25, 0]
    assert f["direction"].isna().tolist() == [True, False, False, False, False, True]
    # connect in progress still names the peer of fd 3 for every later call.
    assert set(f["peer"]) == {"10.0.0.1:11211"}
    assert f["data"][2] == b"VALUE k 0 5\r\nhello\r\nEND\r\n"
    assert f["data"][4] == b"\x00\x01\x7fabc\xff0"
    assert f["data"][3] == b""                        # error: strace shows an address
    assert str(f["pid"].dtype) == "Int32" and str(f["fd"].dtype) == "Int32"
    assert str(f["ret"].dtype) == "Int64" and f["ts_ns"].dtype == np.int64
    assert f["syscall"].dtype == "category"


def test_without_data_same_rows_no_bytes() -> None:
    """``data=False`` (the analyzer's read): every column as before but ``data`` all None."""
    for name in ("basic_ttt.strace", "escapes.strace"):
        full = read_quiet(DATA / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", XenlatWarning)
            lean = read_socket_log(DATA / name, data=False)
        assert full["data"].map(len).sum() > 0
        assert lean["data"].isna().all() and len(lean) == len(full)
        pd.testing.assert_frame_equal(lean.drop(columns="data"), full.drop(columns="data"))


# ---------------------------------------------------------------------------- threads


def test_threads_unfinished_resumed_fd_reuse() -> None:
    f = read_quiet(DATA / "threads_f.strace")
    base = 1700000001 * S
    rows = {(int(r.pid), int(r.fd), r.syscall, int(r.entry_ns - base) // US): r
            for r in f.itertuples()}
    # read(4) unfinished at .000200 in pid 100, resumed at .000300 with <0.000100>.
    r = rows[(100, 4, "read", 200)]
    assert (r.duration_ns, r.ts_ns, r.data, r.bytes) == (100 * US, base + 300 * US,
                                                          b"GET / HTTP/1.1\r\n", 16)
    # pid 101's read(5) interleaved: entry .000220 + 130 µs.
    r = rows[(101, 5, "read", 220)]
    assert (r.ts_ns, r.data) == (base + 350 * US, b"PING\n")
    # write unfinished: the data is on the entry line, the return on the resumed one.
    r = rows[(101, 5, "write", 1200)]
    assert (r.ts_ns, r.data, r.ret) == (base + 1300 * US, b"bye", 3)
    # fd 4 first names [2001:db8::2]:40000; rx offsets 0, 16; closed; then reused.
    first = f[(f["fd"] == 4) & (f["peer"] == "[2001:db8::2]:40000") & (f["direction"] == "rx")]
    assert list(first["bytes"]) == [16, 4]
    assert list(first["stream_offset"]) == [0, 16]
    second = f[(f["fd"] == 4) & (f["peer"] == "[2001:db8::3]:40002") & (f["direction"] == "rx")]
    # after close + accept4 the offset restarts; the thread 100 read shares the fd table.
    assert list(second["pid"]) == [101, 100]
    assert list(second["stream_offset"]) == [0, 3]
    assert first["stream"].nunique() == 1 and second["stream"].nunique() == 1
    assert first["stream"].iloc[0] != second["stream"].iloc[0]
    # fd 5 (accepted by thread 101, read by both threads): read 5, recvmsg 4, readv 3.
    fd5_rx = f[(f["fd"] == 5) & (f["direction"] == "rx")]
    assert list(fd5_rx["syscall"]) == ["read", "recvmsg", "readv"]
    assert list(fd5_rx["data"]) == [b"PING\n", b"abcd", b"xyz"]
    assert list(fd5_rx["stream_offset"]) == [0, 5, 5 + 4]
    fd5_tx = f[(f["fd"] == 5) & (f["direction"] == "tx")]
    assert list(fd5_tx["syscall"]) == ["sendmsg", "write"]
    assert list(fd5_tx["stream_offset"]) == [0, 5]
    assert set(fd5_rx["peer"]) == {"[::ffff:10.0.0.9]:40001"}
    w = f[f["syscall"] == "writev"].iloc[0]
    assert (w.data, w.bytes, w.peer) == (b"HTTP/1.1 200 OK\r\nhi", 19, "[2001:db8::2]:40000")
    # accept rows: listening fd, new fd as ret, the peer accepted.
    acc = f[f["syscall"].isin(["accept", "accept4"])]
    assert list(acc["ret"]) == [4, 5, 4]
    assert f["ts_ns"].is_monotonic_increasing


def test_fork_copies_fd_table(tmp_path: Path) -> None:
    """A forked child shares the parent's open sockets but not later closes or accepts."""
    text = (
        "200   1700000003.000000 accept(3, {sa_family=AF_INET, sin_port=htons(1000), "
        "sin_addr=inet_addr(\"10.0.0.5\")}, [16]) = 4 <0.000001>\n"
        "200   1700000003.000010 read(4, \"aaaa\", 100) = 4 <0.000001>\n"
        "200   1700000003.000020 fork()            = 201 <0.000050>\n"
        "201   1700000003.000030 read(4, \"bb\", 100) = 2 <0.000001>\n"
        "200   1700000003.000040 close(4)          = 0 <0.000001>\n"
        "200   1700000003.000050 accept(3, {sa_family=AF_INET, sin_port=htons(2000), "
        "sin_addr=inet_addr(\"10.0.0.6\")}, [16]) = 4 <0.000001>\n"
        "201   1700000003.000060 read(4, \"ccc\", 100) = 3 <0.000001>\n"
        "200   1700000003.000070 read(4, \"d\", 100) = 1 <0.000001>\n"
    )
    f = read_quiet(write(tmp_path, text))
    reads = f[f["syscall"] == "read"]
    assert list(reads["data"]) == [b"aaaa", b"bb", b"ccc", b"d"]
    # The child's fd 4 is still the first connection: 4, then 4 + 2.
    assert list(reads["stream_offset"]) == [0, 4, 4 + 2, 0]
    assert list(reads["peer"]) == ["10.0.0.5:1000"] * 3 + ["10.0.0.6:2000"]


@pytest.mark.parametrize(("flags", "shared"), [
    ("CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|"
     "CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID", True),          # a thread
    ("CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID", False),          # a process (as fork)
])
def test_clone3_fd_table_shared_or_copied(tmp_path: Path, flags: str, shared: bool) -> None:
    """A child closing and reusing fd 4 changes it for its parent only when the fd table is
    shared (CLONE_FILES)."""
    text = (
        "300   1700000034.000000 accept(3, {sa_family=AF_INET, sin_port=htons(1000), "
        "sin_addr=inet_addr(\"10.0.0.5\")}, [16]) = 4 <0.000001>\n"
        "300   1700000034.000010 read(4, \"aaaa\", 100) = 4 <0.000001>\n"
        f"300   1700000034.000020 clone3({{flags={flags}, child_tid=0x7f35a1ffe910, "
        "parent_tid=0x7f35a1ffe910, exit_signal=0, stack=0x7f35a17fe000, stack_size=0x7fff00, "
        "tls=0x7f35a1ffe640} => {parent_tid=[301]}, 88) = 301 <0.000040>\n"
        "301   1700000034.000070 close(4)          = 0 <0.000001>\n"
        "301   1700000034.000080 accept(3, {sa_family=AF_INET, sin_port=htons(2000), "
        "sin_addr=inet_addr(\"10.0.0.6\")}, [16]) = 4 <0.000001>\n"
        "300   1700000034.000090 read(4, \"bb\", 100) = 2 <0.000001>\n"
        "301   1700000034.000100 read(4, \"c\", 100) = 1 <0.000001>\n"
    )
    f = read_quiet(write(tmp_path, text))
    reads = f[f["syscall"] == "read"]
    if shared:   # the parent's fd 4 is the child's new connection
        assert list(reads["peer"]) == ["10.0.0.5:1000", "10.0.0.6:2000", "10.0.0.6:2000"]
        assert list(reads["stream_offset"]) == [0, 0, 2]
    else:        # the parent's fd 4 is still the first connection
        assert list(reads["peer"]) == ["10.0.0.5:1000", "10.0.0.5:1000", "10.0.0.6:2000"]
        assert list(reads["stream_offset"]) == [0, 4, 0]


@pytest.mark.parametrize("chunk_bytes", [strace.CHUNK_BYTES, 64, 200])
def test_fork_on_stderr_with_glued_attach_message(monkeypatch: pytest.MonkeyPatch,
                                                  chunk_bytes: int) -> None:
    """strace -f on stderr: the clone starts unprefixed, strace's attach message is glued
    into its line, it resumes as "[pid 200]"; the child keeps the first connection."""
    monkeypatch.setattr(strace, "CHUNK_BYTES", chunk_bytes)
    f = read_quiet(DATA / "fork_stderr.strace")
    reads = f[f["syscall"] == "read"]
    assert list(reads["data"]) == [b"aaaa", b"bb", b"ccc", b"d"]
    assert list(reads["pid"].fillna(-1)) == [-1, 201, 201, 200]
    # fork copies the fd table: the child's fd 4 stays the first connection (4, then 4 + 2)
    # after the parent closed it and accepted a new one on the same number.
    assert list(reads["stream_offset"]) == [0, 4, 4 + 2, 0]
    assert list(reads["peer"]) == ["10.0.0.5:1000"] * 3 + ["10.0.0.6:2000"]
    assert f.attrs["orphan_resumed"] == 0 and f.attrs["unfinished_at_end"] == 0


# ---------------------------------------------------------------------------- -tt and -yy


def test_time_of_day_yy_hex_and_files() -> None:
    f = read_quiet(DATA / "tod_yy.strace")
    assert f.attrs["time_of_day_only"] is True
    day = 86400 * S
    # 23:59:59.999100 + 100 µs; the midnight crossing adds a day to later lines.
    assert f["ts_ns"].iloc[0] == (86399 * S + 999100 * US) + 100 * US
    assert f["entry_ns"].iloc[1] == day + 100 * US
    # reads of /etc/hosts (fd 4 from openat, with and without annotation) give no row.
    assert 4 not in set(f["fd"])
    assert list(f["syscall"]) == ["recvfrom", "connect", "sendto", "recvfrom", "recvfrom",
                                  "read"]
    assert f["data"].iloc[0] == b"ab\x01"             # -x hex
    assert f["peer"].iloc[0] == "10.0.0.7:5353"        # recvfrom address argument
    assert list(f["peer"].iloc[1:5]) == ["10.0.0.1:80"] * 4   # connect and -yy
    assert f["peer"].iloc[5] == "[2001:db8::2]:51000"  # TCPv6 -yy annotation
    assert list(f["data_truncated"].iloc[2:4]) == [True, True]
    assert list(f["bytes"].iloc[2:5]) == [64, 1200, 0]
    assert list(f["stream_offset"].iloc[2:5]) == [0, 0, 1200]


def test_yy_nested_device_annotations_are_not_sockets(tmp_path: Path) -> None:
    """-yy shows a terminal as ``0</dev/pts/0<char 136:0>>``: parsed, and not a socket."""
    text = (
        "1700000040.000000 openat(AT_FDCWD</root>, \"/dev/tty\", O_RDWR) = "
        "5</dev/pts/0<char 136:0>> <0.000010>\n"
        "1700000040.000010 read(0</dev/pts/0<char 136:0>>, \"q\\n\", 1024) = 2 <0.100000>\n"
        "1700000040.200000 read(5</dev/pts/0<char 136:0>>, \"z\\n\", 1024) = 2 <0.100000>\n"
        "1700000040.400000 read(3<TCP:[10.0.0.2:5555->10.0.0.1:11211]>, \"ok\", 1024) = 2 "
        "<0.000010>\n"
        "1700000040.500000 close(5</dev/pts/0<char 136:0>>) = 0 <0.000010>\n"
    )
    f = read_quiet(write(tmp_path, text))                # no malformed-line warning
    assert list(f["fd"]) == [3]
    assert list(f["peer"]) == ["10.0.0.1:11211"]


def test_ttt_and_tt_give_the_same_times_of_day(tmp_path: Path) -> None:
    ttt = "1700000004.250000 read(3, \"x\", 9) = 1 <0.000007>\n"
    # 1700000004 = 2023-11-14 22:13:24 UTC
    tt = "22:13:24.250000 read(3, \"x\", 9) = 1 <0.000007>\n"
    a = read_quiet(write(tmp_path, ttt, "a.strace"))
    b = read_quiet(write(tmp_path, tt, "b.strace"))
    assert a["ts_ns"][0] == 1700000004 * S + 250000 * US + 7 * US
    assert b["ts_ns"][0] == (22 * 3600 + 13 * 60 + 24) * S + 250000 * US + 7 * US
    assert a["ts_ns"][0] % (86400 * S) == b["ts_ns"][0]
    assert (a.attrs["time_of_day_only"], b.attrs["time_of_day_only"]) == (False, True)


def test_nanosecond_timestamps(tmp_path: Path) -> None:
    text = "1700000005.123456789 read(3, \"x\", 9) = 1 <0.000000123>\n"
    f = read_quiet(write(tmp_path, text))
    assert f["entry_ns"][0] == 1700000005 * S + 123456789
    assert f["duration_ns"][0] == 123


def test_no_T_resumed_pair_takes_duration_from_resume_line(tmp_path: Path) -> None:
    text = ("[pid  7] 1700000006.000000 read(3,  <unfinished ...>\n"
            "[pid  8] 1700000006.000100 write(4, \"q\", 1) = 1\n"
            "[pid  7] 1700000006.000400 <... read resumed>\"r\", 10) = 1\n")
    f = read_quiet(write(tmp_path, text))
    assert list(f["syscall"]) == ["write", "read"]
    assert list(f["duration_ns"]) == [0, 400 * US]
    assert list(f["ts_ns"]) == [1700000006 * S + 100 * US, 1700000006 * S + 400 * US]
    assert list(f["pid"]) == [8, 7]


def test_per_process_file_pid_from_name(tmp_path: Path) -> None:
    text = "1700000007.000000 read(3, \"x\", 9) = 1 <0.000001>\n"
    f = read_quiet(write(tmp_path, text, "trace.4321"))
    assert list(f["pid"]) == [4321]


def test_chunk_boundaries_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_quiet(DATA / "threads_f.strace")
    monkeypatch.setattr(strace, "CHUNK_BYTES", 97)   # cuts lines and unfinished pairs
    small = read_quiet(DATA / "threads_f.strace")
    pd.testing.assert_frame_equal(whole, small)


def test_chunk_buffer_reused_only_once_its_lines_are_let_go(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines held past their chunk keep their text (the next chunk goes to a new buffer);
    lines let go free their buffer for the next chunk."""
    monkeypatch.setattr(strace, "CHUNK_BYTES", 200)
    monkeypatch.setattr(strace, "_BUFFER_SPARE", 100)
    reused: list[bool] = []  # per buffer asked for: was it the last one, taken again?
    real = strace._chunk_buffer

    def spy(last: bytearray, size: int) -> bytearray:
        buf = real(last, size)
        reused.append(buf is last)
        return buf

    monkeypatch.setattr(strace, "_chunk_buffer", spy)
    path = DATA / "threads_f.strace"
    held = [(lines, lines.to_pylist()) for _, lines, _ in strace._iter_chunks(path, None)]
    assert len(held) > 3
    assert not any(reused)  # every chunk's lines still held: never a buffer taken again
    assert all(lines.to_pylist() == seen for lines, seen in held)
    assert b"".join(b for _, seen in held for b in seen) == path.read_bytes()
    reused.clear()
    buffers = set()
    for _, lines, _ in strace._iter_chunks(path, None):
        buffers.add(lines.buffers()[2].address)
        del lines
    assert sum(reused) >= len(reused) // 2  # let go: the buffer is taken again
    assert len(buffers) < len(held)


def test_progress_reaches_total() -> None:
    seen: list[tuple[int, int]] = []
    read_socket_log(DATA / "basic_ttt.strace", on_progress=lambda d, t: seen.append((d, t)))
    size = (DATA / "basic_ttt.strace").stat().st_size
    assert seen and seen[-1] == (size, size)


def test_unix_socket_dup2_and_yy_accept(tmp_path: Path) -> None:
    text = (
        "1700000030.000000 socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC, 0) = 3<UNIX:[9001]> "
        "<0.000005>\n"
        "1700000030.000010 connect(3<UNIX:[9001]>, {sa_family=AF_UNIX, "
        "sun_path=\"/run/app.sock\"}, 110) = 0 <0.000010>\n"
        "1700000030.000020 write(3<UNIX:[9001->9002]>, \"hi\", 2) = 2 <0.000004>\n"
        "1700000030.000030 accept4(4<TCP:[0.0.0.0:80]>, NULL, NULL, SOCK_CLOEXEC) = "
        "6<TCP:[10.0.0.2:80->10.0.0.3:5000]> <0.000005>\n"
        "1700000030.000040 dup2(6<TCP:[10.0.0.2:80->10.0.0.3:5000]>, 9) = "
        "9<TCP:[10.0.0.2:80->10.0.0.3:5000]> <0.000003>\n"
        "1700000030.000050 read(6, \"abc\", 10) = 3 <0.000002>\n"
        "1700000030.000060 read(9, \"de\", 10) = 2 <0.000002>\n"
        "1700000030.000070 close(6)  = 0 <0.000001>\n"
        "1700000030.000080 read(9, \"f\", 10) = 1 <0.000002>\n"
        "1700000030.000090 read(6, \"zz\", 10) = 2 <0.000002>\n"
    )
    f = read_quiet(write(tmp_path, text))
    assert pd.isna(f["peer"][f["fd"] == 3]).all()     # UNIX: inode numbers are no peer
    reads = f[f["syscall"] == "read"]
    assert list(reads["fd"]) == [6, 9, 9, 6]
    # fd 9 is a dup of fd 6: one stream, 3 + 2 bytes before the last read on 9.
    assert list(reads["stream_offset"]) == [0, 3, 3 + 2, 0]
    assert list(reads["peer"].iloc[:3]) == ["10.0.0.3:5000"] * 3
    assert pd.isna(reads["peer"].iloc[3])             # fd 6 used after its close: unknown
    assert reads["stream"].iloc[3] != reads["stream"].iloc[0]


def test_orphans_interrupted_and_unfinished_calls(tmp_path: Path) -> None:
    text = (
        "[pid     5] 1700000031.000000 <... read resumed>\"zz\", 10) = 2 <0.500000>\n"
        "[pid     5] 1700000031.000010 read(3, \"a\", 10) = 1 <0.000001>\n"
        "[pid     6] 1700000031.000020 read(4,  <unfinished ...>\n"
        "[pid     6] 1700000031.000030 <... read resumed> <unfinished ...>) = ?\n"
        "[pid     5] 1700000031.000040 read(3, 0x7f00, 10) = ? ERESTARTSYS (To be restarted "
        "if SA_RESTART is set) <0.000004>\n"
        "[pid     5] 1700000031.000050 read(3,  <unfinished ...>\n"
        "[pid     5] 1700000031.000060 +++ killed by SIGKILL +++\n"
    )
    f = read_quiet(write(tmp_path, text))
    assert list(f["data"]) == [b"a"]
    assert f.attrs["orphan_resumed"] == 1
    assert f.attrs["unfinished_at_end"] == 1


def test_message_addresses_and_cut_iovec(tmp_path: Path) -> None:
    text = (
        "1700000032.000000 recvmsg(3, {msg_name={sa_family=AF_INET, sin_port=htons(53), "
        "sin_addr=inet_addr(\"10.0.0.53\")}, msg_namelen=16, msg_iov=[{iov_base=\"\\x12\\x34\", "
        "iov_len=512}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 2 <0.000003>\n"
        "1700000032.000010 sendto(3, \"q\", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), "
        "sin6_flowinfo=htonl(0), inet_pton(AF_INET6, \"2001:db8::53\", &sin6_addr), "
        "sin6_scope_id=0}, 28) = 1 <0.000002>\n"
        "1700000032.000020 writev(3, [{iov_base=\"abc\"..., iov_len=1000}, ...], 5) = 3000 "
        "<0.000004>\n"
    )
    f = read_quiet(write(tmp_path, text))
    assert list(f["syscall"]) == ["recvmsg", "sendto", "writev"]
    assert list(f["peer"][:2]) == ["10.0.0.53:53", "[2001:db8::53]:53"]
    assert f["data"][0] == b"\x12\x34"
    assert (f["data"][2], bool(f["data_truncated"][2]), f["bytes"][2]) == (b"abc", True, 3000)
    assert list(f["stream_offset"]) == [0, 0, 1]       # tx: 1 byte of sendto before writev


def test_sendfile_counts_tx_bytes(tmp_path: Path) -> None:
    text = ("1700000033.000000 write(5, \"HTTP/1.1 200 OK\\r\\n\\r\\n\", 19) = 19 <0.000003>\n"
            "1700000033.000010 sendfile(5, 6, [0] => [4096], 4096) = 4096 <0.000020>\n"
            "1700000033.000040 sendfile(5, 6, [4096] => [5000], 904) = 904 <0.000010>\n")
    f = read_quiet(write(tmp_path, text))
    assert list(f["direction"]) == ["tx"] * 3
    assert list(f["bytes"]) == [19, 4096, 904]
    assert list(f["stream_offset"]) == [0, 19, 19 + 4096]
    assert list(f["data"]) == [b"HTTP/1.1 200 OK\r\n\r\n", b"", b""]


# ---------------------------------------------------------------------------- bad input


GOOD = "1700000008.000000 read(3, \"abc\", 9) = 3 <0.000001>\n"


def test_one_malformed_line_warns_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "this is not strace\n" + GOOD)
    with pytest.warns(XenlatWarning) as record:
        f = read_socket_log(path)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{path}: line 2: not an strace line")
    assert "more" not in message
    assert list(f["stream_offset"]) == [0, 3]


def test_many_malformed_lines_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "junk\n" * 5 + "1700000008.1 read(3, \"unclosed, 9) = 3\n"
                 + GOOD)
    with pytest.warns(XenlatWarning) as record:
        f = read_socket_log(path)
    assert len(record) == 1
    assert str(record[0].message).startswith(f"{path}: line 2: ")
    assert "(5 more malformed lines skipped)" in str(record[0].message)
    assert len(f) == 2


def test_damaged_line_remainder_is_not_read_as_a_call(tmp_path: Path) -> None:
    """A line cut inside its timestamp by foreign text: its remainder on the next line would
    parse as a read at epoch 8 s; both pieces are reported instead."""
    path = write(tmp_path, "1234  " + GOOD
                 + "1234  17000garbage line\n"
                 + "00008.000200 read(3, \"xyz\", 9) = 3 <0.000001>\n"
                 + "1234  " + GOOD)
    with pytest.warns(XenlatWarning) as record:
        f = read_socket_log(path)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{path}: line 2: ")
    assert "(1 more malformed lines skipped)" in message
    assert list(f["data"]) == [b"abc", b"abc"]
    assert list(f["stream_offset"]) == [0, 3]


def test_cut_last_line_is_truncated_input(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + GOOD + "1700000008.000300 read(3, \"ab")
    with pytest.warns(TruncatedInput, match=r"line 3: file ends in the middle"):
        f = read_socket_log(path)
    assert len(f) == 2


def test_no_socket_call_is_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "1700000009.000000 futex(0x7f, FUTEX_WAKE, 1) = 0 <0.000001>\n"
                 "1700000009.000010 +++ exited with 0 +++\n")
    with pytest.raises(InputError, match=r"line 1: no socket call found") as info:
        read_socket_log(path)
    assert info.value.path == path and info.value.exit_code == 3


PCAP_HEADER_REST = bytes(20)   # version, zone, sigfigs, snaplen, linktype: not looked at


@pytest.mark.parametrize(("head", "looks"), [
    (bytes.fromhex("d4c3b2a1") + PCAP_HEADER_REST, "looks like a pcap capture"),     # µs, LE
    (bytes.fromhex("a1b23c4d") + PCAP_HEADER_REST, "looks like a pcap capture"),     # ns, BE
    (bytes.fromhex("0a0d0d0a") + bytes(24), "looks like a pcapng capture"),
    (b"\x1f\x8b\x08\x00" + b"1700000000.000000 read(3, ", "gzip-compressed"),
    (GOOD.encode() + b"\x00" + GOOD.encode(), "NUL bytes in the first 8 KiB"),
    (bytes(range(256)) * 4, "NUL bytes in the first 8 KiB"),
], ids=["pcap-us-le", "pcap-ns-be", "pcapng", "gzip", "nul-in-text", "all-bytes"])
def test_binary_file_is_one_input_error(tmp_path: Path, head: bytes, looks: str) -> None:
    """No cut-line warning and no "no socket call" error: one error saying what the file is."""
    path = tmp_path / "blob"
    path.write_bytes(head + GOOD.encode() * 50)
    with pytest.raises(InputError) as info, warnings.catch_warnings():
        warnings.simplefilter("error")
        read_socket_log(path)
    assert str(info.value) == f"{path}: offset 0: binary file ({looks}), not a text socket log"
    assert info.value.exit_code == 3


def test_nul_past_the_sniffed_head_is_not_binary(tmp_path: Path) -> None:
    """Only the first 8 KiB are looked at; a later NUL is a malformed line, not a binary file."""
    lines = GOOD * (strace.BINARY_SNIFF_BYTES // len(GOOD) + 1)
    path = write(tmp_path, lines + "1700000009.000000 \x00junk\n" + GOOD)
    bad_line = lines.count("\n") + 1
    with pytest.warns(XenlatWarning, match=rf"line {bad_line}: no system call after the time"):
        f = read_socket_log(path)
    assert len(f) == bad_line


def test_capture_given_as_socket_log_through_the_cli(runner) -> None:
    """``xenlat analyze guest.pcapng --socket-log phys.pcap``: exit 3, one line on stderr."""
    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "healthy"
    phys = sample / "phys.pcap"
    result = runner.invoke(main, ["analyze", str(sample / "guest.pcapng"),
                                  "--socket-log", str(phys)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == (f"xenlat: error: {phys}: offset 0: binary file (looks like a pcap "
                             "capture), not a text socket log\n")


@pytest.mark.parametrize("kind", ["missing", "directory", "empty"])
def test_unusable_paths(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.strace"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(InputError) as info:
        read_socket_log(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- plain logs


def test_mixed_time_styles_warn(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "22:13:24.250000 read(3, \"x\", 9) = 1 <0.000007>\n" + GOOD)
    with pytest.warns(XenlatWarning, match=r"line 2: mixes -tt times of day"):
        f = read_socket_log(path)
    assert len(f) == 2 and f.attrs["time_of_day_only"] is False


def test_strace_without_timestamps_is_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[pid  12] read(3, \"abc\", 9) = 3\n")
    with pytest.raises(InputError, match=r"line 1: strace output without timestamps"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_socket_log(path)


def test_csv_log(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,fd,bytes,direction,peer\n"
                           "1700000010.000001,5,100,rx,10.0.0.1:80\n"
                           "1700000010.000002,5,50,rx,10.0.0.1:80\n"
                           "1700000010.000003,5,7,tx,10.0.0.1:80\n"
                           "1700000010.000004,6,20,rx,10.0.0.2:80\n"
                           "1700000010.123456789,5,30,rx,10.0.0.1:80\n", "reads.csv")
    f = read_quiet(path)
    assert f.attrs["format"] == "csv"
    assert list(f["ts_ns"]) == [1700000010 * S + 1000, 1700000010 * S + 2000,
                                1700000010 * S + 3000, 1700000010 * S + 4000,
                                1700000010 * S + 123456789]
    assert list(f["stream_offset"]) == [0, 100, 0, 0, 100 + 50]
    assert list(f["syscall"]) == ["read", "read", "write", "read", "read"]
    assert list(f["peer"]) == ["10.0.0.1:80"] * 3 + ["10.0.0.2:80", "10.0.0.1:80"]
    assert f["data"].isna().all()


def test_csv_close_restarts_fd_stream(tmp_path: Path) -> None:
    path = write(tmp_path, "ts_ns,fd,bytes,syscall\n"
                           "100,5,10,read\n200,5,0,close\n300,5,4,read\n400,5,6,read\n",
                 "reads.csv")
    f = read_quiet(path)
    assert list(f["stream_offset"]) == [0, 0, 0, 4]
    assert f["direction"].isna().tolist() == [False, True, False, False]


def test_jsonl_log(tmp_path: Path) -> None:
    path = write(tmp_path, '{"ts": 1700000011.000123, "flow": "a", "bytes": 10}\n'
                           '{"ts": 1700000011.000456, "flow": "b", "bytes": 3}\n'
                           '{"ts": 1700000011.000789, "flow": "a", "bytes": 5, '
                           '"direction": "rx", "duration_ns": 2000}\n', "reads.jsonl")
    f = read_quiet(path)
    assert f.attrs["format"] == "jsonl"
    # JSON floats are rounded to the microsecond.
    assert list(f["ts_ns"]) == [1700000011 * S + 123 * US, 1700000011 * S + 456 * US,
                                1700000011 * S + 789 * US]
    assert f["entry_ns"][2] == 1700000011 * S + 787 * US
    assert list(f["stream_offset"]) == [0, 0, 10]


def test_jsonl_bad_and_cut_lines(tmp_path: Path) -> None:
    path = write(tmp_path, '{"ts_ns": 5, "bytes": 1}\n'
                           'oops\n'
                           '{"ts_ns": 6, "bytes": 2}\n'
                           '{"ts_ns": 7, "by', "reads.jsonl")
    with pytest.warns(XenlatWarning) as record:
        f = read_socket_log(path)
    messages = sorted(str(r.message) for r in record)
    assert any(m.startswith(f"{path}: line 2: not a JSON object") for m in messages)
    assert any(isinstance(r.message, TruncatedInput) and "line 4" in str(r.message)
               for r in record)
    assert list(f["ts_ns"]) == [5, 6]
    assert list(f["stream_offset"]) == [0, 1]


def test_csv_bad_rows_are_named_by_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,fd,bytes\n1.5,3,10\n1.6,3\n\n1.7,3,5\nbad,3,1\n", "reads.csv")
    with pytest.warns(XenlatWarning) as record:
        f = read_socket_log(path)
    assert len(record) == 1
    # line 3 has two fields; line 6 (after a blank line 4) has no valid time: counted.
    assert str(record[0].message).startswith(f"{path}: line 3: expected 3 fields, found 2")
    assert "(1 more malformed lines skipped)" in str(record[0].message)
    assert list(f["ts_ns"]) == [1500000000, 1700000000]
    assert list(f["stream_offset"]) == [0, 10]


def test_plain_log_offsets_follow_time_order(tmp_path: Path) -> None:
    """Lines out of time order (merged per-thread logs): offsets count in time order."""
    path = write(tmp_path, '{"ts": "2.000000001", "fd": 4, "bytes": 7}\n'
                           '{"ts": "1.5", "fd": 4, "bytes": 3}\n'
                           '{"ts": 1, "fd": 4, "bytes": 100, "direction": "tx"}\n'
                           '{"ts": "bad", "fd": 4, "bytes": 1}\n', "reads.jsonl")
    with pytest.warns(XenlatWarning, match=r"line 4: ts missing, not a number or out of range"):
        f = read_socket_log(path)
    # Mixed number/string values: the line-by-line path keeps the decimal text exact.
    assert list(f["ts_ns"]) == [1 * S, 1500 * 10**6, 2 * S + 1]
    assert list(f["direction"]) == ["tx", "rx", "rx"]
    assert list(f["stream_offset"]) == [0, 0, 3]


def test_csv_without_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,foo,bytes\nnot-a-time,1,2\n", "reads.csv")
    with pytest.raises(InputError, match="no valid record"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_socket_log(path)


# ---------------------------------------------------------------------------- round trip


def test_round_trip_through_the_simulator_writer(tmp_path: Path) -> None:
    payloads = [b"GET /x HTTP/1.1\r\n\r\n", bytes(range(40)), b"q" * 100,
                b'say "hi" \\ ok\t\x7f\xff']
    calls = ["socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 7",
             'connect(7, {sa_family=AF_INET, sin_port=htons(11211), '
             'sin_addr=inet_addr("10.1.2.3")}, 16) = 0']
    calls += [f"read(7, {strace_quote(p, len(p), 64)}, 4096) = {len(p)}"
              for p in payloads]
    calls.append("read(7, 0x7ffd5c1e2a40, 4096) = -1 EAGAIN (Resource temporarily unavailable)")
    entry_ns = 1700000020 * S + np.arange(len(calls), dtype=np.int64) * 1000 * US
    duration_ns = np.full(len(calls), 25 * US, dtype=np.int64)
    path = tmp_path / "app.strace"
    write_strace(path, 4242, entry_ns, duration_ns, calls)
    f = read_quiet(path)
    reads = f[f["syscall"] == "read"]
    assert list(reads["data"]) == [p[:64] for p in payloads] + [b""]
    assert list(reads["data_truncated"]) == [False, False, True, False, False]
    sizes = [len(p) for p in payloads]
    assert list(reads["bytes"]) == sizes + [0]
    assert list(reads["stream_offset"]) == [0, sizes[0], sizes[0] + sizes[1],
                                            sizes[0] + sizes[1] + sizes[2], sum(sizes)]
    assert list(reads["ts_ns"]) == list(entry_ns[2:] + 25 * US)
    assert set(f["pid"]) == {4242}
    assert set(f["peer"]) == {"10.1.2.3:11211"}
    assert list(f["errno"].fillna("")) == ["", "", "", "", "", "EAGAIN"]


def test_simulator_quote_of_a_byte_before_a_digit(tmp_path: Path) -> None:
    payload = b"\x001\x012"
    path = tmp_path / "app.strace"
    write_strace(path, 1, np.array([S]), np.array([US]),
                 [f"read(3, {strace_quote(payload, 4)}, 9) = 4"])
    assert read_quiet(path)["data"][0] == payload


SIM_SCENARIOS = ["healthy", "black-0.1s", "clock-skew", "offload"]


@pytest.mark.parametrize("scenario", SIM_SCENARIOS)
def test_simulated_reads_cover_the_truth(simulated_set, scenario: str) -> None:
    """Each received segment's t_read (truth.csv) is the return of the first read whose
    stream_offset + bytes covers the segment's last byte, on one fd per connection."""
    directory = simulated_set(scenario, seed=5, requests=40)
    meta = json.loads((directory / "scenario.json").read_text())
    table = read_quiet(directory / "app.strace")
    reads = table[(table["direction"] == "rx") & (table["bytes"] > 0)]
    # the realistic host's guest also asks a DNS-like resolver over UDP (its datagrams'
    # read times are scored against the truth in test_realistic_host); the stream reads are
    # the server's
    peers = {meta["server"]} | ({meta["resolver"]} if "resolver" in meta else set())
    assert set(reads["peer"]) == peers
    reads = reads[reads["peer"] == meta["server"]]
    truth = pd.read_csv(directory / "truth.csv")
    rx = truth[(truth["direction"] == "rx") & truth["t_read"].notna() & (truth["proto"] == 6)]
    assert len(rx)
    # truth times are true-clock epoch seconds; the log is on the guest clock.
    clock = meta["guest_clock"]
    true_ns = np.round(rx["t_read"].to_numpy() * 1e9).astype(np.int64)
    guest_ns = true_ns + clock["offset_ns"] + np.round(
        clock["drift_ppm"] * 1e-6 * (true_ns - meta["t0_ns"])).astype(np.int64)
    rx = rx.assign(read_guest_ns=guest_ns)
    # strace prints microseconds: entry and duration each lose < 1 µs; t_read (a float)
    # another ~0.25 µs.
    tolerance_ns = 2 * US + 300
    fd_of: dict[int, int] = {}
    for port, seg in rx.groupby("dport"):
        seg = seg.sort_values("seq")
        last_byte_end = (seg["seq"] - seg["seq"].min() + seg["len"]).to_numpy()
        for fd, r in reads.groupby("fd", observed=True):
            covered = (r["stream_offset"] + r["bytes"]).to_numpy()
            first = np.searchsorted(covered, last_byte_end)   # first read covering the end
            if (first >= len(r)).any():
                continue
            error = np.abs(r["ts_ns"].to_numpy()[first] - seg["read_guest_ns"].to_numpy())
            if error.max() <= tolerance_ns:
                fd_of[int(port)] = int(fd)
        assert int(port) in fd_of, f"no fd's reads match connection {port}"
    assert len(set(fd_of.values())) == len(fd_of)              # one fd per connection


def test_csv_header_only_is_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,fd,bytes\n", "reads.csv")
    with pytest.raises(InputError, match=r"line 1: not a socket log: no records"):
        read_socket_log(path)


def test_plain_log_progress_reaches_total(tmp_path: Path) -> None:
    path = write(tmp_path, "ts_ns,bytes\n10,1\n20,2\n", "reads.csv")
    seen: list[tuple[int, int]] = []
    f = read_socket_log(path, on_progress=lambda d, t: seen.append((d, t)))
    size = path.stat().st_size
    assert seen[-1] == (size, size)
    assert list(f["stream_offset"]) == [0, 1]        # no fd, flow or peer: one stream


# ---------------------------------------------------------------------------- plain lines
# The plain lines are cut at byte positions (strace._plain); every other line goes through
# LINE_RE. Both must give the same table: the regex alone is the reference.
SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
PLAIN_FILES = sorted([*DATA.glob("*.strace"), *(DATA.parent / "badinput").glob("*.strace"),
                      *SAMPLES.glob("*/app.strace")])


def read_both(path: Path, data: bool = True) -> tuple[object, object]:
    """(table or error, warnings) with the plain lines cut at byte positions, then with every
    line through the regex."""
    def read() -> tuple[object, list[str]]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                got: object = read_socket_log(path, data=data)
            except InputError as exc:
                got = str(exc)
        return got, [str(w.message) for w in seen]

    fast = read()
    with mock.patch.object(strace, "_plain", lambda lines: None):
        slow = read()
    return fast, slow


def assert_same(fast: tuple[object, list[str]], slow: tuple[object, list[str]]) -> None:
    assert fast[1] == slow[1]
    if isinstance(slow[0], pd.DataFrame):
        assert isinstance(fast[0], pd.DataFrame), fast[0]
        pd.testing.assert_frame_equal(fast[0], slow[0], check_exact=True)
        assert fast[0].attrs == slow[0].attrs
    else:
        assert fast[0] == slow[0]


def test_plain_lines_are_found() -> None:
    """basic_ttt.strace: the write and the three reads are plain common calls, epoll_wait a
    plain call of no interest; socket, connect, close and the exit line take the regex."""
    first, lines, _ = next(strace._iter_chunks(DATA / "basic_ttt.strace", None))
    plain = strace._plain(lines)
    assert list(np.flatnonzero(plain.common) + first) == [3, 4, 5, 7]
    assert list(np.flatnonzero(plain.named) + first) == [6]
    assert list(plain.ts[[2, 5]]) == [1700000000_000300_000, 1700000000_000600_000]
    assert list(plain.pid[[2, 5]]) == [1234, 1234]


ADDRESS_LINES = (
    '7  1700000000.000100 sendto(4, "q\\\"1", 3, 0, {sa_family=AF_INET, sin_port=htons(53), '
    'sin_addr=inet_addr("10.0.0.2")}, 16) = 3 <0.000011>\n'
    '7  1700000000.000200 recvfrom(4, 0x7ffd5c1e2a40, 2048, MSG_DONTWAIT, 0x7ffd5c1e29c0, '
    '[128]) = -1 EAGAIN (Resource temporarily unavailable) <0.000002>\n'
    '7  1700000000.000300 recvfrom(4, "ab"..., 2, 0, {sa_family=AF_INET, sin_port=htons(53), '
    'sin_addr=inet_addr("10.0.0.2")}, [128 => 16]) = 2 <0.000001>\n'
    '7  1700000000.000400 sendmmsg(4, [{msg_hdr={msg_name={sa_family=AF_INET, '
    'sin_port=htons(5353), sin_addr=inet_addr("10.0.0.3")}, msg_namelen=16, '
    'msg_iov=[{iov_base="I5\\1\\0", iov_len=4}], msg_iovlen=1, msg_controllen=0, '
    'msg_flags=0}, msg_len=4}], 1, 0) = 1 <0.000005>\n'
    '7  1700000000.000500 recvmmsg(4, [{msg_hdr={msg_name=NULL, msg_namelen=0, '
    'msg_iov=[{iov_base="xyz}"..., iov_len=2048}], msg_iovlen=1, msg_controllen=0, '
    'msg_flags=MSG_TRUNC}, msg_len=250}], 8, MSG_WAITFORONE, NULL) = 1 <0.000002>\n'
)


def test_address_and_mmsg_lines_are_plain(tmp_path: Path) -> None:
    """recvfrom/sendto with an IPv4 address (or pointers and [128]) and one-message mmsg
    calls are cut at byte positions; their rows worked out by hand."""
    path = write(tmp_path, ADDRESS_LINES)
    first, lines, _ = next(strace._iter_chunks(path, None))
    plain = strace._plain(lines)
    assert list(np.flatnonzero(plain.common)) == [0, 1, 2]
    assert list(np.flatnonzero(plain.mmsg)) == [3, 4]
    f = read_quiet(path)
    assert list(f["syscall"]) == ["sendto", "recvfrom", "recvfrom", "sendmmsg", "recvmmsg"]
    assert list(f["bytes"]) == [3, 0, 2, 4, 250]
    assert list(f["ret"]) == [3, -1, 2, 4, 250]
    assert list(f["peer"].astype(object).where(f["peer"].notna(), None)) == [
        "10.0.0.2:53", None, "10.0.0.2:53", "10.0.0.3:5353", None]
    assert list(f["data"]) == [b'q"1', b"", b"ab", b"I5\1\0", b"xyz}"]
    assert list(f["data_truncated"]) == [False, False, True, False, True]
    assert list(f["duration_ns"]) == [11 * US, 2 * US, 1 * US, 5 * US, 2 * US]
    assert_same(*read_both(path))


def test_yy_annotated_lines_are_plain(tmp_path: Path) -> None:
    """-yy annotations on plain lines: the socket's peer from TCP:[local->peer], a file's
    calls dropped, a bare socket:[inode] without peer; rows by hand."""
    path = write(tmp_path, (
        '7  1700000000.000100 read(5<TCP:[10.0.0.1:11211->10.0.0.2:40000]>, "ab", 2048) = 2 '
        '<0.000011>\n'
        '7  1700000000.000200 write(6</dev/null>, "x", 1) = 1 <0.000002>\n'
        '7  1700000000.000300 read(7<socket:[123]>, "abc", 9) = 3 <0.000001>\n'))
    first, lines, _ = next(strace._iter_chunks(path, None))
    assert list(np.flatnonzero(strace._plain(lines).common)) == [0, 1, 2]
    f = read_quiet(path)
    assert list(f["fd"]) == [5, 7]
    assert list(f["bytes"]) == [2, 3]
    assert f["peer"][0] == "10.0.0.2:40000" and pd.isna(f["peer"][1])
    assert_same(*read_both(path))


@pytest.mark.parametrize("data", [True, False])
@pytest.mark.parametrize("path", PLAIN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_plain_lines_read_as_the_regex_reads_them(path: Path, data: bool) -> None:
    assert_same(*read_both(path, data))


_TOKENS = st.sampled_from(["16384", "MSG_DONTWAIT", "MSG_DONTWAIT|MSG_NOSIGNAL", "0", '"x"',
                           "NULL", "{sa_family=AF_INET, sin_port=htons(80), "
                           'sin_addr=inet_addr("1.2.3.4")}', "16", "[16]", "[128 => 16]",
                           "{sa_family=AF_INET, sin_port=htons(65536), "
                           'sin_addr=inet_addr("1.2.3.4")}'])
_TEXT = st.lists(st.sampled_from(['a', 'Z', '0', ' ', ',', '.', '(', ')', '<', '>', '"',
                                  '\\"', '\\\\', '\\n', '\\r', '\\0', '\\377', '\\x41',
                                  '\\', ') = 3', '\t']), max_size=12).map("".join)


_ANNOTATIONS = st.sampled_from([
    "", "", "<socket:[77]>", "<TCP:[1.2.3.4:5->6.7.8.9:10]>", "<TCPv6:[[::1]:80->[::1]:9]>",
    "<UNIX-STREAM:[123->456]>", "</dev/null>", "<a->>", "<a->", "</tmp/a,b>", "<x y>",
    "</dev/pts/0<char 136:0>>", '<"q">'])


@st.composite
def _near_plain_line(draw: st.DrawFn) -> str:
    """A line most often of the plain form (small numbers, annotations, addresses)."""
    small = st.integers(0, 99999).map(str)
    leader = draw(st.sampled_from(["42  ", "[pid  4243] ", "", "4243 "]))
    ts = draw(st.sampled_from(["1700000000.000100", "1700000000.5", "1700000001.123456789"]))
    call = draw(st.sampled_from(["read", "write", "recv", "send", "pread64", "recvfrom",
                                 "sendto"]))
    fd = draw(small) + draw(st.one_of(st.just("<TCP:[1.2.3.4:5->6.7.8.9:10]>"), _ANNOTATIONS))
    arg = draw(st.one_of(_TEXT.map(lambda t: f'"{t}"'), _TEXT.map(lambda t: f'"{t}"...'),
                         st.sampled_from(["0x7ffd1c2a3b40", "NULL"])))
    tail = "".join(", " + t for t in draw(st.lists(_TOKENS, max_size=3)))
    ret = draw(st.one_of(small, st.just("-1 EAGAIN (Resource temporarily unavailable)")))
    dur = draw(st.sampled_from(["", " <0.000011>", " <12.5>", " <0.000000001>"]))
    return f"{leader}{ts} {call}({fd}, {arg}{tail}) = {ret}{dur}\n"


@st.composite
def _line(draw: st.DrawFn) -> str:
    digits = st.integers(0, 10**12).map(str)
    pid = draw(digits)
    spaces = " " * draw(st.integers(1, 8))
    leader = draw(st.sampled_from(["", f"{pid}{spaces}", f"[pid{spaces}{pid}] "]))
    frac = draw(st.text("0123456789", min_size=0, max_size=11))
    ts = draw(st.integers(0, 10**11).map(str)) + (f".{frac}" if frac else "")
    call = draw(st.sampled_from(["read", "write", "recv", "send", "pread64", "recvfrom",
                                 "sendto", "readv", "poll", "futex", "close", "readx",
                                 "x" * 40]))
    fd = draw(digits) + draw(_ANNOTATIONS)
    arg = draw(st.one_of(_TEXT.map(lambda t: f'"{t}"'), _TEXT.map(lambda t: f'"{t}"...'),
                         st.sampled_from(["0x7ffd1c2a3b40", "NULL", "0xZZ"])))
    tail = "".join(", " + t for t in draw(st.lists(_TOKENS, max_size=3)))
    ret = draw(st.one_of(digits, st.sampled_from([
        "-1 EAGAIN (Resource temporarily unavailable)", "-1 EINTR", "-1 E2BIG (x) = 4",
        "?", "-1 ECONNRESET (Connection reset by peer)"])))
    dur = draw(st.one_of(st.just(""), st.tuples(digits, st.text("0123456789", min_size=1,
                                                                 max_size=11))
                         .map(lambda d: f" <{d[0]}.{d[1]}>")))
    end = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return f"{leader}{ts} {call}({fd}, {arg}{tail}) = {ret}{dur}{end}"


@st.composite
def _mmsg_line(draw: st.DrawFn) -> str:
    """A recvmmsg / sendmmsg line near the plain one-message form."""
    digits = st.one_of(st.integers(0, 70000), st.integers(0, 10**12)).map(str)
    port = draw(digits)
    name = draw(st.sampled_from([
        "NULL", f'{{sa_family=AF_INET, sin_port=htons({port}), sin_addr=inet_addr("1.2.3.4")}}',
        "{sa_family=AF_UNIX}"]))
    text = draw(st.lists(st.sampled_from(["a", "}, msg_len=5}", "[12345678901, 3]", "[1, 2]",
                                          '\\"', "\\377", "{", "}"]), max_size=4))
    cut = draw(st.sampled_from(["", "..."]))
    message = (f"{{msg_hdr={{msg_name={name}, msg_namelen=16, msg_iov=[{{iov_base="
               f"\"{''.join(text)}\"{cut}, iov_len=2048}}], msg_iovlen=1, msg_controllen=0, "
               f"msg_flags={draw(st.sampled_from(['0', 'MSG_TRUNC']))}}}, "
               f"msg_len={draw(digits)}}}")
    messages = ", ".join([message] * draw(st.integers(1, 2)))
    call = draw(st.sampled_from(["recvmmsg", "sendmmsg"]))
    fd = draw(st.sampled_from(["7", "7<UDP:[1.2.3.4:5->6.7.8.9:53]>", "12345678901"]))
    ret = draw(st.sampled_from(["1", "2", "0", "-1 EAGAIN (Resource temporarily unavailable)"]))
    dur = draw(st.sampled_from(["", " <0.000002>", " <99999999999.1>"]))
    return f"42  1700000000.000200 {call}({fd}, [{messages}], 8, 0, NULL) = {ret}{dur}\n"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_line(), _mmsg_line(), _near_plain_line()), min_size=1, max_size=6))
def test_generated_lines_read_as_the_regex_reads_them(lines: list[str]) -> None:
    """Lines near the plain forms (numbers past their bounds, annotations, quotes, parentheses
    and '<' inside strings, errno messages, other calls): the same table, warnings, errors."""
    head = "42  1700000000.000100 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3 <0.000020>\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen.strace"
        path.write_bytes((head + "".join(lines)).encode("latin-1"))
        assert_same(*read_both(path, data=True))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 2), st.integers(0, 4),
                          st.integers(0, 99)), min_size=1, max_size=25),
       st.lists(st.tuples(st.integers(1, 45), st.integers(0, 2), st.integers(0, 5)),
                max_size=30))
def test_last_record_before_is_merge_asof(records: list[tuple[int, int, int, int]],
                                          rows: list[tuple[int, int, int]]) -> None:
    """Each row's socket id: the last fd-table record of its (table, fd) at an earlier line,
    the last listed of those at one line; pandas' merge_asof is the reference."""
    rec = np.array(records, np.int64)
    order, tables, fds = (np.array([r[k] for r in rows], np.int64) for k in range(3))
    left = pd.DataFrame({"order": order, "table": tables, "fd": fds, "row": np.arange(len(rows))})
    right = pd.DataFrame(rec, columns=["order", "table", "fd", "sid"])
    merged = pd.merge_asof(left.sort_values("order", kind="stable"),
                           right.sort_values("order", kind="stable"), on="order",
                           by=["table", "fd"], allow_exact_matches=False)
    expected = np.full(len(rows), -1, np.int64)
    expected[merged["row"].to_numpy()] = merged["sid"].fillna(-1).to_numpy(np.int64)
    assert list(strace._last_record_before(rec, order, tables, fds)) == list(expected)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200).map(lambda b: b.replace(b"\n", b"7")),
       st.data())
def test_word_cuts_are_the_byte_by_byte_ones(text: bytes, data: st.DataObject) -> None:
    """The plain lines' 64-bit word helpers against Python on the same bytes: the number of
    digits at / before a position and its value, the first / last mark at / before it, the
    digit columns of a window (text biased to digits, '"' and '(' so that they meet)."""
    text = bytes(b if b % 3 else b"0123456789\"(9"[b % 13] for b in text)
    buf = np.frombuffer(text, np.uint8)
    pos = np.array(data.draw(st.lists(st.integers(0, len(text)), min_size=1, max_size=8)),
                   np.int64)
    value, digits = strace._number_at(buf, pos, 18)
    for p, v, d in zip(pos.tolist(), value.tolist(), digits.tolist(), strict=True):
        run = len(text[p:]) - len(text[p:].lstrip(b"0123456789"))
        assert d == min(run, 18) and v == (int(text[p:p + d]) if d else 0)
    value, digits = strace._number_before(buf, pos, 18)
    for p, v, d in zip(pos.tolist(), value.tolist(), digits.tolist(), strict=True):
        run = p - len(text[:p].rstrip(b"0123456789"))
        assert d == min(run, 18) and v == (int(text[p - d:p]) if d else 0)
    marks = strace._Marks(buf)
    for char in '"(':
        first = marks.first(char, pos, 8)
        last = marks.last(char, pos, 8)
        for p, f, la in zip(pos.tolist(), first.tolist(), last.tolist(), strict=True):
            at = text.find(char.encode(), p)
            assert f == (at if at >= 0 else len(text))
            assert la == text.rfind(char.encode(), 0, p)
    width = data.draw(st.integers(1, 40))
    window = np.frombuffer(bytes(b % 10 + 48 for b in text[:width].ljust(width, b"0")),
                           np.uint8).reshape(1, width)
    start = data.draw(st.integers(0, width - 1))
    end = data.draw(st.integers(start, min(width, start + 18)))
    expected = int(window[0, start:end].tobytes()) if end > start else 0
    assert strace._columns_number(window, start, end)[0] == expected


@pytest.mark.parametrize("line", [
    "1.1 recvfrom(3, NULL, 1, 0, NULL, NULL) = 0",
    "1.1 sendto(3, 0x1, 1, 0, NULL, 0) = 1 <0.1>",
    "1.1 recvfrom(3, 0x1, 1, 0, 0x2, [16]) = -1 EAGAIN (Resource temporarily unavailable)",
])
def test_short_lines_without_a_string_near_the_chunk_start(tmp_path: Path, line: str) -> None:
    """A call without a quoted buffer in a chunk shorter than the backward search's window
    (a tiny log, or a big log's last chunk): the search for the last '"' reached back past the
    '(' and gave a position before the chunk (an IndexError, exit 4, since 2026-12-07's word
    reads); the call is read, as by hand: fd 3, its return value, no warning."""
    path = tmp_path / "tiny.strace"
    path.write_text(line + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calls = read_socket_log(path)
    assert len(calls) == 1
    assert int(calls["fd"].iloc[0]) == 3
    ret = line.split(") = ")[1].split()[0]
    assert int(calls["ret"].iloc[0]) == int(ret)
