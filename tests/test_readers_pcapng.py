"""pcapng reading: sections of both byte orders, several interfaces with their own resolution and
offset, Enhanced / Simple / obsolete Packet Blocks, skipped blocks, and damaged files."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, read_all

from xentrace_cli.errors import InputError, TruncatedInput
from xentrace_cli.sources import capture
from xentrace_cli.sources.containers import open_capture
from xentrace_cli.sources.packets import read_packets
from xentrace_cli.sources.pcapng import ticks_to_ns

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"
sys.path.insert(0, str(CAPTURES))
import make_captures as mk  # noqa: E402  (the fixture builder: hand-computed expectations)

MULTI = CAPTURES / "multi-section.pcapng"


def tshark_rows(tshark: str, path: Path) -> dict[int, dict[str, str]]:
    fields = ["frame.number", "frame.time_epoch", "frame.len", "frame.cap_len",
              "frame.interface_id", "frame.interface_name"]
    cmd = [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=;"]
    for field in fields:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        values = dict(zip(fields, line.split(";"), strict=True))
        rows[int(values["frame.number"])] = values
    return rows


def epoch_ns(text: str) -> int | None:
    if not text:
        return None
    sec, frac = text.split(".")
    return int(sec) * 10**9 + int(frac.ljust(9, "0"))


def test_multi_section_matches_hand_computed_rows() -> None:
    _data, expected = mk.multi_section_pcapng()
    table = read_packets(MULTI)
    got = [{"frame": int(r.frame), "interface": int(r.interface), "linktype": int(r.linktype),
            "ts_ns": None if r.ts_ns is None or r.ts_ns is __import__("pandas").NA
            else int(r.ts_ns), "caplen": int(r.caplen)} for r in table.itertuples()]
    assert got == expected


def test_multi_section_matches_tshark(tshark: str) -> None:
    table = read_packets(MULTI)
    ref = tshark_rows(tshark, MULTI)
    # tshark numbers the custom block (frame 4) as a frame; the reader skips its row but keeps
    # the numbering, so the other frame numbers agree
    assert set(ref) - set(table["frame"]) == {4}
    assert ref[4]["frame.time_epoch"] == ""
    for r in table.itertuples():
        t = ref[r.frame]
        ts = None if r.ts_ns is __import__("pandas").NA else int(r.ts_ns)
        assert ts == epoch_ns(t["frame.time_epoch"]), r.frame
        assert (r.wirelen, r.caplen) == (int(t["frame.len"]), int(t["frame.cap_len"]))
        # tshark 4.0 prints the section-local interface number (and the first section's
        # name) for later sections; the table numbers interfaces across the file
        section_base = 0 if r.interface < 2 else 2
        assert r.interface - section_base == int(t["frame.interface_id"])
        if section_base == 0:
            assert table.attrs["interfaces"][r.interface]["name"] == \
                t["frame.interface_name"]


def test_interfaces_are_exposed() -> None:
    table = read_packets(MULTI)
    itfs = table.attrs["interfaces"]
    assert [(i["name"], i["linktype"], i["tsresol"], i["tsoffset_s"], i["section"])
            for i in itfs] == [("vif5.0", 1, "10^-9", 0, 0), ("eth0", 113, "2^-20", 0, 0),
                               ("raw0", 101, "10^-6", 0, 1), ("vif7.1", 1, "10^-9", 100, 1)]


def test_byte_orders_and_blocks() -> None:
    with open_capture(MULTI) as reader:
        n = sum(len(b) for b in reader.batches())
        assert n == 14
        assert reader.byte_orders == ["LE", "BE"]
        assert reader.block_counts == {"SHB": 2, "IDB": 4, "EPB": 12, "SPB": 1, "PB": 1,
                                       "custom": 1, "0x4": 1, "0x5": 1, "0xabcd": 1}
        assert reader.frames == 15  # the custom block counts as a frame (as in tshark)


def test_blocks_straddling_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_packets(MULTI)
    monkeypatch.setattr(capture, "CHUNK_BYTES", 97)
    assert read_packets(MULTI).equals(whole)


@pytest.mark.parametrize("code, ticks, tsoffset, expected_ns", [
    (6, 1_700_000_000_123_456, 0, 1_700_000_000_123_456_000),       # µs (default)
    (9, 1_700_000_000_123_456_789, 0, 1_700_000_000_123_456_789),   # ns
    (3, 1_700_000_000_123, 10, 1_700_000_010_123_000_000),          # ms, +10 s offset
    (12, 17_000_000_001_234_567_891, 0, 17_000_000_001_234_567),     # ps, floor to ns
    (0x80 | 20, (5 << 20) | (1 << 19), 0, 5_500_000_000),           # 2^-20 s: 5.5 s
    (0x80 | 40, (3 << 40) | (1 << 38), 0, 3_250_000_000),           # 2^-40 s: 3.25 s
    (6, 0xFFFFFFFFE1DFD279, 0, -1),                                 # past int64 ns: invalid
])
def test_ticks_to_ns(code: int, ticks: int, tsoffset: int, expected_ns: int) -> None:
    import numpy as np

    ns, ok = ticks_to_ns(np.array([ticks], dtype=np.uint64), code, tsoffset)
    if expected_ns == -1:
        assert not ok[0]
    else:
        assert ok[0] and int(ns[0]) == expected_ns


def _pcapng(*blocks: bytes) -> bytes:
    return mk.shb("<") + mk.idb("<", 1, tsresol=9) + b"".join(blocks)


def test_cut_mid_block_keeps_whole_packets(tmp_path: Path) -> None:
    frames = mk.ethernet_frames()[:3]
    blocks = [mk.epb("<", 0, mk.T0_NS + i, f) for i, f in enumerate(frames)]
    data = _pcapng(*blocks)
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-20])
    start_of_third = len(data) - len(blocks[2])
    with pytest.warns(TruncatedInput, match=rf"offset {start_of_third} \(packet 3\): capture "
                      rf"cut short: block cut short \({len(blocks[2]) - 20} of "
                      rf"{len(blocks[2])} bytes\)"):
        table = read_packets(path)
    assert list(table["frame"]) == [1, 2]


def test_trailing_length_mismatch_is_corruption(tmp_path: Path) -> None:
    frames = mk.ethernet_frames()[:3]
    blocks = [mk.epb("<", 0, mk.T0_NS + i, f) for i, f in enumerate(frames)]
    bad = bytearray(blocks[1])
    bad[-4:] = struct.pack("<I", 12345)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(_pcapng(blocks[0], bytes(bad), blocks[2]))
    with pytest.warns(TruncatedInput, match=r"\(packet 2\): capture corrupt: block trailing "
                      r"length 12345"):
        assert len(read_packets(path)) == 1


def test_unknown_interface_in_first_packet_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "iface.pcapng"
    path.write_bytes(_pcapng(mk.epb("<", 3, mk.T0_NS, mk.ethernet_frames()[0])))
    with pytest.raises(InputError, match=r"packet 1: packet names interface 3 of 1"):
        read_packets(path)


def test_bad_byte_order_magic(tmp_path: Path) -> None:
    data = bytearray(_pcapng())
    data[8:12] = b"\x01\x02\x03\x04"
    path = tmp_path / "magic.pcapng"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"offset 8: corrupt section header: byte-order magic"):
        read_packets(path)


def test_snaplen_limits_simple_packet_block(tmp_path: Path) -> None:
    frame = mk.ethernet_frames()[0]
    path = tmp_path / "spb.pcapng"
    path.write_bytes(mk.shb("<") + mk.idb("<", 1, snaplen=40) + mk.spb("<", frame))
    table = read_packets(path)
    # SPB: captured length = min(original length, snaplen, room in the block)
    assert (int(table["caplen"][0]), int(table["wirelen"][0])) == (40, len(frame))
    assert table["ts_ns"].isna().all()


def test_bad_second_section_keeps_the_first(tmp_path: Path) -> None:
    first = _pcapng(mk.epb("<", 0, mk.T0_NS, mk.ethernet_frames()[0]))
    second = bytearray(mk.shb(">"))
    second[8:12] = b"\x01\x02\x03\x04"
    path = tmp_path / "second.pcapng"
    path.write_bytes(first + bytes(second))
    with pytest.warns(TruncatedInput, match=rf"offset {len(first) + 8} \(packet 2\): capture "
                      r"corrupt: corrupt section header: byte-order magic 0x04030201"):
        assert len(read_packets(path)) == 1


# ---- the vectorized EPB walk must find exactly what the block-by-block loop finds ------------
CORPUS_CAPTURES = CORPUS / "captures"
#: Chunk sizes tried: a block straddles nearly every boundary at 97, some at 1000, few at 1 MiB.
WALK_CHUNKS = [97, 1000, 1 << 20]
#: Above this size a file is compared whole only at the largest chunk size; at the small ones
#: its packet blocks past this many bytes are dropped (every other block kept), see ``_thin``.
WALK_WHOLE_MAX_BYTES = 64 << 10
PACKET_BLOCKS = {2, 3, 6}     # obsolete packet, simple packet, enhanced packet


def _pcapng_files() -> list[object]:
    files: list[object] = [MULTI]
    files += sorted(p for p in CORPUS_CAPTURES.iterdir()
                    if p.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a")
    return files


def _thin(data: bytes, keep_bytes: int) -> bytes:
    """The capture without its packet blocks that start past ``keep_bytes``: every section
    header, interface, name-resolution and statistics block stays, so the thinned file has
    the same kinds of blocks as the whole one. A block the walk cannot follow ends the walk and
    the rest is kept as it is."""
    out, off, order = [], 0, "<"
    while off + 12 <= len(data):
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        kind, length = struct.unpack_from(order + "II", data, off)
        if length < 12 or off + length > len(data):
            break
        if kind not in PACKET_BLOCKS or off < keep_bytes:
            out.append(data[off:off + length])
        off += length
    return b"".join(out) + data[off:]


@pytest.mark.parametrize("path", _pcapng_files(), ids=lambda p: p.name)
@pytest.mark.parametrize("chunk", WALK_CHUNKS)
def test_vectorized_walk_equals_the_loop(path: Path, chunk: int, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pcapng file is compared whole at the largest chunk size; a big one is thinned at
    the small sizes (its first 64 KiB of packets still cross hundreds of chunk boundaries),
    which keeps the suite fast: the 1.1 MB corpus file at 97-byte chunks took 5 s."""
    from xentrace_cli.sources import pcapng

    if chunk < max(WALK_CHUNKS) and path.stat().st_size > WALK_WHOLE_MAX_BYTES:
        thinned = tmp_path / path.name
        thinned.write_bytes(_thin(path.read_bytes(), WALK_WHOLE_MAX_BYTES))
        assert thinned.stat().st_size < path.stat().st_size
        path = thinned
    monkeypatch.setattr(capture, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(pcapng, "FAST_WALK_MIN_BYTES", 1 << 62)
    loop = read_all(path)
    monkeypatch.setattr(pcapng, "FAST_WALK_MIN_BYTES", 0)
    fast = read_all(path)
    if isinstance(loop[0], str):
        assert fast[0] == loop[0]
    else:
        assert fast[0].equals(loop[0])
    assert fast[1] == loop[1]


def test_vectorized_walk_skips_impostors(tmp_path: Path, tshark: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from xentrace_cli.sources import pcapng

    # payloads holding aligned words equal to 6 (the EPB type) followed by plausible lengths,
    # some pointing at each other, some at the next real block
    fake = struct.pack("<II", 6, 40) + bytes(32) + struct.pack("<II", 6, 64) + bytes(8)
    frames = [mk.ethernet_frames()[0][:44] + fake * (1 + i % 3) for i in range(40)]
    blocks = [mk.epb("<", 0, mk.T0_NS + i * 1000, f) for i, f in enumerate(frames)]
    path = tmp_path / "impostors.pcapng"
    path.write_bytes(_pcapng(*blocks))
    monkeypatch.setattr(pcapng, "FAST_WALK_MIN_BYTES", 0)
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    chain = pcapng._EpbChain(data, "<", 0, len(data))
    assert len(chain.cand) > 40 + 40  # the impostors are aligned candidates
    table = read_packets(path)
    assert list(table["caplen"]) == [len(f) for f in frames]
    assert list(table["ts_ns"]) == [mk.T0_NS + i * 1000 for i in range(40)]
    ref = tshark_rows(tshark, path)
    assert len(ref) == 40


@pytest.mark.parametrize("code", range(10))
def test_scaled_ticks_are_the_seconds_and_fraction(code: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A decimal count of 10^-code s without an offset scaled by one multiplication gives
    the times and validity of the whole seconds and fraction added (TICKS_SCALED off): at
    the int64 bound (the last valid count, the first invalid one), around it, at 0 and the
    uint64 maximum, and random counts of every size."""
    from xentrace_cli.sources import pcapng

    per_s = 10**code
    bound = (np.iinfo(np.int64).max // 1_000_000_000) * per_s
    rng = np.random.default_rng(code)
    ticks = np.concatenate([
        np.array([0, 1, per_s - 1, per_s, bound - 1, bound, bound + 1, 2**63 - 1, 2**63,
                  2**64 - 1], dtype=np.uint64),
        rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True),
        rng.integers(0, bound + 1000, 500, dtype=np.uint64),
        (rng.integers(0, 2**63, 200, dtype=np.uint64) >> rng.integers(0, 63, 200).astype(
            np.uint64))])
    for valid_only in (False, True):
        t = ticks[ticks < bound] if valid_only else ticks  # every one valid: a view back
        monkeypatch.setattr(pcapng, "TICKS_SCALED", True)
        scaled = pcapng.ticks_to_ns(t, code, 0)
        monkeypatch.setattr(pcapng, "TICKS_SCALED", False)
        parts = pcapng.ticks_to_ns(t, code, 0)
        np.testing.assert_array_equal(scaled[1], parts[1])
        np.testing.assert_array_equal(scaled[0], parts[0])
        assert scaled[0].dtype == parts[0].dtype == np.int64
        assert scaled[1].all() == valid_only
