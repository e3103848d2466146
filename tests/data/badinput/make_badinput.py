"""Writes the hostile inputs of issue 10 (and of the fuzzing that followed) into this folder.

Each file is the smallest input that showed one failure: a crash (exit 4), a leaked library
warning, a wrong message or a silent acceptance. ``tests/test_bad_input.py`` runs each through
the command line and checks the exit code, the one line on stderr and what was salvaged. Run
``python tests/data/badinput/make_badinput.py`` to rewrite them (byte-identical).
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "captures"))
import make_captures as mk  # noqa: E402

#: The first eight lines of tests/data/strace/basic_ttt.strace: two calls of fd 3 are data
#: (write 7 bytes, read 25 and 8 bytes), and a socket/connect/close around them.
STRACE_BASE = (HERE.parent / "strace" / "basic_ttt.strace").read_bytes().splitlines(True)[:8]
EXIT = b"1234  1700000000.000900 +++ exited with 0 +++\n"

#: strace files: the base, one hostile line 9, the exit line.
STRACE_LINES = {
    "ts_past_64_bits.strace": b"99999999999999999999999 read(3, \"ab\", 64) = 2 <0.000001>\n",
    "ret_past_64_bits.strace":
        b"1234  1700000000.000850 read(3, \"ab\", 64) = 99999999999999999999999 <0.000001>\n",
    "duration_past_64_bits.strace":
        b"1234  1700000000.000850 read(3, \"ab\", 64) = 2 <99999999999999999999999.000001>\n",
    "fd_past_32_bits.strace":
        b"1234  1700000000.000850 read(4294967296, \"ab\", 64) = 2 <0.000001>\n",
    "pid_past_32_bits.strace":
        b"99999999999  1700000000.000850 read(3, \"ab\", 64) = 2 <0.000001>\n",
    "inet_addr_not_utf8.strace":
        b"1234  1700000000.000850 connect(3, {sa_family=AF_INET, sin_port=htons(80), "
        b"sin_addr=inet_addr(\"1.2.\xff.4\")}, 16) = 0 <0.000001>\n",
}
#: A [pid N] line whose return value is past 64 bits, alone: nothing to salvage.
PID_LINE_HUGE_RET = (b"[pid 12] 1700000000.000100 read(3, \"ab\", 64) = "
                     b"99999999999999999999999 <0.000001>\n")

#: CSV / JSON Lines logs: line 2 (CSV) or 1 (JSONL) hostile, the next one good.
PLAIN_LOGS = {
    "fd_past_32_bits.csv": "ts,fd,bytes\n1700000000.1,4294967296,10\n1700000000.2,3,10\n",
    "pid_past_64_bits.csv":
        "ts,pid,fd,bytes\n1700000000.1,99999999999999999999,3,10\n1700000000.2,1,3,10\n",
    "bytes_past_64_bits.csv": "ts,fd,bytes\n1700000000.1,3,99999999999999999999999\n"
                              "1700000000.2,3,10\n",
    "ts_ns_past_64_bits.csv": "ts_ns,fd,bytes\n99999999999999999999999,3,10\n"
                              "1700000000200000000,3,10\n",
    "duration_past_64_bits.csv": "ts,fd,bytes,duration_ns\n"
                                 "1700000000.1,3,10,99999999999999999999999\n"
                                 "1700000000.2,3,10,5\n",
    "bytes_past_64_bits.jsonl": '{"ts": 1700000000.1, "fd": 3, "bytes": 99999999999999999999999}\n'
                                '{"ts": 1700000000.2, "fd": 3, "bytes": 10}\n',
    "fd_past_32_bits.jsonl": '{"ts": 1700000000.1, "fd": 4294967296, "bytes": 10}\n'
                             '{"ts": 1700000000.2, "fd": 3, "bytes": 10}\n',
}


#: Found by the fuzz targets (tests/fuzz_harness.py), shrunk by Hypothesis: each crashed (exit 4).
FUZZ_FOUND: dict[str, bytes] = {
    # pyarrow's CSV reader: "invalid UTF8 data" for the whole file
    "fuzz_csv_not_utf8.csv": b"ts,fd,bytes\n1700000000.1,3,10\n1700000000.2,3,1\xff0\n"
                             b"1700000000.3,3,5\n",
    # the header cut short: nothing left, "Empty CSV file"
    "fuzz_csv_header_cut.csv": b"ts,fd,bytes",
    # a \v line: blank to Python, a row to Arrow, counted twice (line numbers off by one)
    "fuzz_csv_vtab_line.csv": b"ts_ns,flow,bytes\n1700000000000100000,a,10\n"
                              b"1700000000000300000,a,5\n\x0b\n\n",
    # a \b line after an empty one: Arrow numbers rows without the empty lines
    "fuzz_csv_row_after_empty.csv": b"ts,fd,bytes\n1700000000.000100,3,10\n"
                                    b"1700000000.000200,3,20\n\n\x08\n\n",
    # every call on a file (-yy annotation): no row left, then a column of the wrong length
    "fuzz_strace_only_file_calls.strace":
        b"23:59:59.999000 socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 3<UDP:[4242]> <0.000010>\n"
        b"23:59:59.999500 openat(AT_FDCWD</root>, \"/etc/hosts\", O_RDONLY|O_CLOEXEC) = "
        b"4</etc/hosts> <0.000010>\n"
        b"23:59:59.999600 read(4</etc/hosts>, \"127.0.0.1 localhost\\n\", 4096) = 20 "
        b"<0.000005>\n",
}
#: The simulated black-0.1s set's trace (seed 3, 20 requests) cut at this byte: the analysis
#: found no receive copy and indexed an empty array (trace_path.assign_rx_copies).
TRACE_CUT_AT = 15936


def simulated_set(directory: Path) -> Path:
    """The fuzz harness's capture set (black-0.1s, seed 3, 20 requests), written anew."""
    from xentrace_cli.simulate import run_scenario

    run_scenario("black-0.1s", directory, seed=3, requests=20, host="toy")
    return directory


def three_frames() -> list[bytes]:
    return mk.ethernet_frames()[:3]


def pcapng(*, version: tuple[int, int] = (1, 0), tsresol: int | None = None,
           second_version: tuple[int, int] | None = None) -> bytes:
    """One section (given version), one Ethernet interface, three EPBs 1 µs apart; optionally
    a second section (given version) with one more EPB."""
    o = "<"

    def shb(ver: tuple[int, int]) -> bytes:
        return mk.block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, *ver, -1))

    out = shb(version) + mk.idb(o, 1, tsresol=tsresol)
    for i, frame in enumerate(three_frames()):
        out += mk.epb(o, 0, 1_700_000_000_000_000 + i, frame)
    if second_version is not None:
        out += shb(second_version) + mk.idb(o, 1)
        out += mk.epb(o, 0, 1_700_000_001_000_000, three_frames()[0])
    return out


def captures() -> dict[str, bytes]:
    frames = three_frames()
    out = {
        "tsresol_0x7f.pcapng": pcapng(tsresol=0x7F),
        "tsresol_0xff.pcapng": pcapng(tsresol=0xFF),
        "version_0.1.pcapng": pcapng(version=(0, 1)),
        "second_section_2.0.pcapng": pcapng(second_version=(2, 0)),
    }
    bad_shb = bytearray(pcapng())
    struct.pack_into("<I", bad_shb, 4, 12)           # section header length 12 (< 28)
    out["shb_length_12.pcapng"] = bytes(bad_shb)
    major1 = bytearray(mk.pcap_bytes(mk.timed(frames), 1))
    struct.pack_into("<H", major1, 4, 1)             # version 1.4
    out["major_1.pcap"] = bytes(major1)
    out["duplicated_2000.pcap"] = mk.pcap_bytes([(mk.T0_NS, frames[0], len(frames[0]))] * 2000,
                                                1)
    backwards = mk.timed(frames + frames[:1])
    backwards[2] = (backwards[2][0] - 5 * 10**9, *backwards[2][1:])   # frame 3: 5 s earlier
    out["backwards.pcap"] = mk.pcap_bytes(backwards, 1)
    return out


def build() -> None:
    for name, line in STRACE_LINES.items():
        (HERE / name).write_bytes(b"".join(STRACE_BASE) + line + EXIT)
    (HERE / "pid_line_ret_past_64_bits.strace").write_bytes(PID_LINE_HUGE_RET)
    for name, text in PLAIN_LOGS.items():
        (HERE / name).write_text(text)
    for name, data in captures().items():
        (HERE / name).write_bytes(data)
    for name, data in FUZZ_FOUND.items():
        (HERE / name).write_bytes(data)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cut = (simulated_set(Path(tmp)) / "xentrace.bin").read_bytes()[:TRACE_CUT_AT]
    (HERE / "fuzz_trace_cut.bin").write_bytes(cut)
    trace = (HERE.parent / "corpus" / "xentrace" / "xentrace-parser-rs__xentrace.bin")
    (HERE / "xentrace.bin.gz").write_bytes(gzip.compress(trace.read_bytes()[:4096], mtime=0))


if __name__ == "__main__":
    build()
