"""Classic pcap reading: byte orders, µs/ns magic, Kuznetzov's variant, gzip, chunk boundaries,
and damaged files (cut short, corrupt lengths, bad headers) through the library and the CLI."""

from __future__ import annotations

import gzip
import struct
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import read_all

from xentrace_cli.cli import main
from xentrace_cli.errors import InputError, TruncatedInput
from xentrace_cli.sources import capture
from xentrace_cli.sources.containers import open_capture
from xentrace_cli.sources.packets import read_packets

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
VARIANTS = ["ether-le-usec.pcap", "ether-be-usec.pcap", "ether-le-nsec.pcap",
            "ether-be-nsec.pcap", "ether-modified.pcap", "ether-le-nsec.pcap.gz"]


def tshark_frames(tshark: str, path: Path) -> list[tuple[int, int, int, int]]:
    """(frame number, epoch ns, frame.len, frame.cap_len) per frame as tshark reads them."""
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=,",
                          "-e", "frame.number", "-e", "frame.time_epoch", "-e", "frame.len",
                          "-e", "frame.cap_len"], capture_output=True, text=True, check=True)
    rows = []
    for line in out.stdout.splitlines():
        number, epoch, wirelen, caplen = line.split(",")
        sec, frac = epoch.split(".")
        rows.append((int(number), int(sec) * 10**9 + int(frac.ljust(9, "0")), int(wirelen),
                     int(caplen)))
    return rows


def pcap_header(order: str = "<", magic: int = 0xA1B2C3D4, linktype: int = 1) -> bytes:
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)


def record(ts_sec: int, frac: int, data: bytes, order: str = "<",
           caplen: int | None = None) -> bytes:
    n = len(data) if caplen is None else caplen
    return struct.pack(order + "IIII", ts_sec, frac, n, len(data)) + data


@pytest.mark.parametrize("name", VARIANTS)
def test_variants_match_tshark(name: str, tshark: str) -> None:
    table = read_packets(CAPTURES / name)
    expected = tshark_frames(tshark, CAPTURES / name)
    assert len(table) == len(expected) == 19
    got = list(zip(table["frame"], table["ts_ns"], table["wirelen"], table["caplen"],
                   strict=True))
    assert got == expected


def test_usec_file_rounds_down_to_the_microsecond() -> None:
    # make_captures: frame k at T0 + k * 1.234567891 s, T0 = 1700000000.123456789;
    # a µs file keeps the microseconds: frame 2 = 1700000001.358024680 -> ...358024000
    table = read_packets(CAPTURES / "ether-be-usec.pcap")
    assert table["ts_ns"][0] == 1_700_000_000_123_456_000
    assert table["ts_ns"][1] == 1_700_000_001_358_024_000
    nsec = read_packets(CAPTURES / "ether-be-nsec.pcap")
    assert nsec["ts_ns"][1] == 1_700_000_001_358_024_680


def test_format_and_byte_order_are_reported() -> None:
    expected = {"ether-le-usec.pcap": ("pcap", "LE", False),
                "ether-be-nsec.pcap": ("nsecpcap", "BE", False),
                "ether-modified.pcap": ("modpcap", "LE", False),
                "ether-le-nsec.pcap.gz": ("nsecpcap", "LE", True)}
    for name, (fmt, order, gz) in expected.items():
        with open_capture(CAPTURES / name) as reader:
            assert (reader.format, reader.byte_order, reader.gzipped) == (fmt, order, gz)


def test_records_straddling_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_packets(CAPTURES / "ether-le-nsec.pcap")
    monkeypatch.setattr(capture, "CHUNK_BYTES", 257)  # most records cross a chunk boundary
    pieces = read_packets(CAPTURES / "ether-le-nsec.pcap")
    assert pieces.equals(whole)
    gz = read_packets(CAPTURES / "ether-le-nsec.pcap.gz")
    assert gz.equals(whole)


def test_batches_never_hold_the_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "CHUNK_BYTES", 1024)
    with open_capture(CAPTURES / "ether-le-nsec.pcap") as reader:
        sizes = [len(b) for b in reader.batches()]
    assert sum(sizes) == 19 and len(sizes) > 5


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    data = (CAPTURES / "ether-le-nsec.pcap").read_bytes()
    path = tmp_path / "two-members.pcap.gz"
    path.write_bytes(gzip.compress(data[:3000]) + gzip.compress(data[3000:]))
    assert read_packets(path).equals(read_packets(CAPTURES / "ether-le-nsec.pcap"))


# ---- damaged files ----------------------------------------------------------------------------
def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_cut_in_packet_data_keeps_whole_packets(tmp_path: Path) -> None:
    body = [record(1_700_000_000 + i, 0, bytes(60 + i)) for i in range(3)]
    # cut 10 bytes into the third record's data: offsets 24, 24+76, 24+76+77
    data = pcap_header() + b"".join(body)
    third = 24 + 76 + 77
    path = _write(tmp_path, "cut.pcap", data[:third + 16 + 10])
    with pytest.warns(TruncatedInput) as caught:
        table = read_packets(path)
    assert list(table["frame"]) == [1, 2]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert f"cut.pcap: offset {third} (packet 3)" in message
    assert "packet data cut short (10 of 62 bytes)" in message


def test_cut_in_record_header(tmp_path: Path) -> None:
    data = pcap_header() + record(1, 0, bytes(60)) + record(2, 0, bytes(60))[:7]
    with pytest.warns(TruncatedInput, match=r"offset 100 \(packet 2\).*record header cut "
                      r"short \(7 of 16 bytes\)"):
        table = read_packets(_write(tmp_path, "hdr.pcap", data))
    assert len(table) == 1


def test_length_larger_than_the_file_is_a_cut(tmp_path: Path) -> None:
    data = pcap_header() + record(1, 0, bytes(60)) + struct.pack("<IIII", 2, 0, 100_000,
                                                                  100_000) + bytes(50)
    with pytest.warns(TruncatedInput, match=r"packet data cut short \(50 of 100000 bytes\)"):
        assert len(read_packets(_write(tmp_path, "long.pcap", data))) == 1


def test_absurd_length_is_corruption_after_good_packets(tmp_path: Path) -> None:
    data = (pcap_header() + record(1, 0, bytes(60)) + record(2, 0, bytes(60))
            + struct.pack("<IIII", 3, 0, 300_000, 300_000) + bytes(4000))
    with pytest.warns(TruncatedInput, match=r"offset 176 \(packet 3\): capture corrupt: "
                      r"record length 300000 is larger than 262144 bytes"):
        assert len(read_packets(_write(tmp_path, "corrupt.pcap", data))) == 2


def test_absurd_length_in_the_first_record_is_an_error(tmp_path: Path) -> None:
    data = pcap_header() + struct.pack("<IIII", 3, 0, 0x7FFFFFFF, 60) + bytes(60)
    with pytest.raises(InputError, match=r"offset 24, packet 1: record length 2147483647"):
        read_packets(_write(tmp_path, "corrupt.pcap", data))


def test_reserved_linktype_bits_are_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "reserved.pcap", pcap_header(linktype=0x00300001))
    with pytest.raises(InputError, match="reserved bits of the link-type field"):
        read_packets(path)


def test_header_only_capture_is_empty_not_an_error(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_packets(_write(tmp_path, "empty.pcap", pcap_header()))
    assert len(table) == 0 and list(table.columns)[:3] == ["frame", "ts_ns", "caplen"]


# ---- the same through the CLI: exit codes and one line on stderr ------------------------------
def test_cli_truncated_warns_and_exits_0(tmp_path: Path, runner) -> None:
    data = pcap_header() + record(1, 0, bytes(60)) + record(2, 0, bytes(60))[:30]
    path = _write(tmp_path, "cut.pcap", data)
    result = runner.invoke(main, ["packets", str(path), "--no-progress"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith('"frame","ts_ns"')
    assert len(result.stdout.splitlines()) == 2  # header + the one whole packet
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"xenlat: warning: {path}: offset 100 (packet 2): "
                                    "capture cut short")


def test_cli_truncated_strict_exits_3(tmp_path: Path, runner) -> None:
    data = pcap_header() + record(1, 0, bytes(60)) + record(2, 0, bytes(60))[:30]
    path = _write(tmp_path, "cut.pcap", data)
    result = runner.invoke(main, ["packets", str(path), "--strict", "--no-progress"])
    assert result.exit_code == 3
    assert f"xenlat: error: {path}: offset 100 (packet 2)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("content, problem", [
    (b"hello, this is text\n", "not a pcap or pcapng capture (file starts with 68656c6c)"),
    (b"", "empty file"),
    (struct.pack("<I", 0xA1B2C3D4) + bytes(10), "pcap file header cut short (14 of 24 bytes)"),
    (gzip.compress(b"not a capture"), "not a pcap or pcapng capture (gzip-compressed data "
                                      "starts with 6e6f7420)"),
    (pcap_header(linktype=0x00300001), "reserved bits of the link-type field are set"),
])
def test_cli_bad_input_one_line_exit_3(tmp_path: Path, runner, content: bytes,
                                       problem: str) -> None:
    path = _write(tmp_path, "bad.pcap", content)
    result = runner.invoke(main, ["packets", str(path), "--no-progress"])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"xenlat: error: {path}: ")
    assert problem in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_missing_and_directory(tmp_path: Path, runner) -> None:
    missing = runner.invoke(main, ["packets", str(tmp_path / "nope.pcap")])
    assert (missing.exit_code, missing.stdout) == (3, "")
    assert missing.stderr == f"xenlat: error: {tmp_path / 'nope.pcap'}: no such file\n"
    folder = runner.invoke(main, ["info", str(tmp_path)])
    assert (folder.exit_code, folder.stdout) == (3, "")
    assert folder.stderr == f"xenlat: error: {tmp_path}: is a directory, not a file\n"


def test_timestamps_are_int64_not_float() -> None:
    table = read_packets(CAPTURES / "ether-le-nsec.pcap")
    assert str(table["ts_ns"].dtype) == "Int64"
    # 1.234567891 s steps survive exactly (a float64 of epoch seconds would not keep them)
    steps = np.diff(table["ts_ns"].to_numpy(dtype=np.int64))
    assert set(steps.tolist()) == {1_234_567_891}


def _pcap_files() -> list[Path]:
    corpus = CAPTURES.parent / "corpus" / "captures"
    return sorted([*CAPTURES.glob("*.pcap*"), *corpus.glob("*.pcap*"),
                   *(CAPTURES.parent / "badinput").glob("*.pcap*")])


#: chunk sizes of the walk comparison; files past WALK_SMALL_MAX_BYTES only at the largest
WALK_CHUNKS = [97, 1000, 1 << 20]
WALK_SMALL_MAX_BYTES = 64 << 10


@pytest.mark.parametrize("path", [p for p in _pcap_files()
                                  if p.read_bytes()[:4] != b"\x0a\x0d\x0d\x0a"],
                         ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", WALK_CHUNKS)
def test_vectorized_walk_equals_the_loop(path: Path, chunk: int,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every classic pcap file of the tests (damaged ones too) reads the same, table and
    warnings, walked by the loop alone and by the record chain on every chunk (the first
    too, whatever its records' sizes)."""
    from xentrace_cli.sources import pcap

    if chunk < max(WALK_CHUNKS) and path.stat().st_size > WALK_SMALL_MAX_BYTES:
        pytest.skip("large file: at the largest chunk size only")
    monkeypatch.setattr(capture, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(pcap, "FAST_WALK_MIN_BYTES", 1 << 62)
    loop = read_all(path)
    monkeypatch.setattr(pcap, "FAST_WALK_MIN_BYTES", 0)
    monkeypatch.setattr(pcap, "CHAIN_MAX_MEAN_BYTES", float("inf"))  # whatever the records
    fast = read_all(path)
    if isinstance(loop[0], str):
        assert fast[0] == loop[0]
    else:
        assert fast[0].equals(loop[0])
    assert fast[1] == loop[1]


@pytest.mark.parametrize("order", ["<", ">"])
def test_vectorized_walk_skips_impostors_and_other_seconds(
        tmp_path: Path, tshark: str, order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Payloads that hold the records' upper seconds bytes followed by plausible lengths
    (some pointing at each other, some at the next real record) are skipped, and records
    whose seconds cross a 65536-second boundary mid-chunk (no longer candidates) are walked
    by the loop: every frame as tshark reads it, and the chain found most of them."""
    from xentrace_cli.sources import pcap

    base = 0x6955FFF0  # the upper half of the seconds changes after 16 s
    upper = struct.pack(order + "I", base)[:2] if order == ">" else \
        struct.pack(order + "I", base)[2:]
    # a fake header: seconds (with that upper half), fraction, caplen 24, wirelen 24
    fake = (struct.pack(order + "I", base) + struct.pack(order + "III", 0, 24, 24)
            + bytes(8) + upper * 8)
    frames = [bytes(range(14)) + fake * (1 + i % 3) + bytes(i % 5) for i in range(60)]
    data = pcap_header(order) + b"".join(
        record(base + i // 2, i, f, order) for i, f in enumerate(frames))
    path = tmp_path / "impostors.pcap"
    path.write_bytes(data)
    monkeypatch.setattr(pcap, "FAST_WALK_MIN_BYTES", 0)
    monkeypatch.setattr(pcap, "CHAIN_MAX_MEAN_BYTES", float("inf"))
    monkeypatch.setattr(pcap, "CHAIN_RECORDS_PER_BREAK", 0)  # the chain however many breaks
    buf = np.frombuffer(data + bytes(64), dtype=np.uint8)
    chain = pcap._RecordChain(buf, order, 24, len(data), 16)
    assert len(chain.cand) > 32 + 32  # the impostors are candidates, as are 32 real records
    walked = []
    loop = pcap.walk_records

    def spy(*args: object) -> list[int]:
        offsets = loop(*args)  # type: ignore[arg-type]
        walked.append(len(offsets))
        return offsets

    monkeypatch.setattr(pcap, "walk_records", spy)
    table = read_packets(path)
    assert sum(walked) <= 60 - 32  # the loop walked the records of the other seconds only
    assert list(table["caplen"]) == [len(f) for f in frames]
    ref = tshark_frames(tshark, path)
    assert [(int(f), int(t), int(w), int(c)) for f, t, w, c in
            zip(table["frame"], table["ts_ns"], table["wirelen"], table["caplen"],
                strict=True)] == ref


def test_chain_left_to_the_loop_where_impostors_abound(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Times under 65,536 s (a capture of relative times) and zero payloads: the seconds'
    upper half is 0, as is every zero half-word of the headers and payloads, so the chain's
    runs would break at nearly every record (it took 15-40x the loop's time). Past the first
    chunk such a chunk goes to the loop, with the same frames; without the guard the chain
    would have been followed there."""
    from xentrace_cli.sources import capture, pcap

    frames = [bytes(60 + i % 7) for i in range(70_000)]  # ~5.5 MB: two 4 MiB chunks
    data = pcap_header() + b"".join(record(5 + i // 1000, i % 1000, f)
                                    for i, f in enumerate(frames))
    path = tmp_path / "relative.pcap"
    path.write_bytes(data)
    followed: list[int] = []
    follow = capture.CandidateChain.follow

    def spy(self: capture.CandidateChain, off: int) -> tuple[np.ndarray, int]:
        followed.append(off)
        return follow(self, off)

    monkeypatch.setattr(capture.CandidateChain, "follow", spy)
    table = read_packets(path)
    assert list(table["caplen"]) == [len(f) for f in frames]
    assert followed == []
    monkeypatch.setattr(pcap, "CHAIN_RECORDS_PER_BREAK", 0)
    table = read_packets(path)
    assert followed  # the guard is what kept the chain away
    assert list(table["caplen"]) == [len(f) for f in frames]


@pytest.mark.parametrize("seed", range(6))
def test_word_walk_is_the_struct_walk(seed: int) -> None:
    """The loop's reads through the chunk as words (a file in the machine's byte order) give
    the offsets of the plain ``struct`` loop: random records at every alignment, from every
    start, up to ends that cut a header or a record."""
    import sys

    from xentrace_cli.sources import pcap

    rng = np.random.default_rng(seed)
    order = "<" if sys.byteorder == "little" else ">"
    lengths = rng.integers(0, 300, 400)
    body = b"".join(struct.pack(order + "IIII", 1_700_000_000, 0, int(n), int(n))
                    + rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
                    for n in lengths)
    buf = np.zeros(len(body) + 64, dtype=np.uint8)
    buf[:len(body)] = np.frombuffer(body, dtype=np.uint8)
    words = pcap.word_views(buf)
    unpack = pcap.CAPLEN[order].unpack_from
    starts = np.concatenate([[0], np.cumsum(lengths + 16)[:-1]])
    for off in [0, *rng.choice(starts, 5)]:
        for end in [len(body), *rng.integers(int(off), len(body), 5)]:
            plain = pcap.walk_records(memoryview(buf), int(off), int(end), 16, unpack)
            assert pcap.walk_records(memoryview(buf), int(off), int(end), 16, unpack,
                                     words) == plain
            assert plain[0] == off and set(plain) <= set(starts.tolist())
