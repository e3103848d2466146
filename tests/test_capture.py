"""What every capture container shares (``sources/capture.py``): a file cut by another
process while it is read — after the chunk being read, inside it, or to nothing, as tcpdump's
ring files (``-W``) and logrotate's ``copytruncate`` do — ends early with the usual "cut
short" warning and the whole packets before it. (A memory-mapped reader died of a bus error
here, or ended silently: the reader reads into a buffer.)"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from xentrace_cli.sources import capture, packets
from xentrace_cli.sources.containers import open_capture

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"


def _frames_when_cut(path: Path, cut_to: int) -> tuple[list[int], object, list[Warning]]:
    """Frame numbers read when the file is cut to ``cut_to`` bytes after the first batch,
    the damage warning and any warning raised."""
    with open_capture(path) as reader, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = reader.batches()
        first = next(batches)
        with open(path, "r+b") as fh:
            fh.truncate(cut_to)
        frames = [*first.frame, *(f for b in batches for f in b.frame)]
        return frames, reader.damage_warning(), list(caught)


def _big_pcap(path: Path, n: int) -> Path:
    """``n`` copies of one 60-byte UDP frame (Ethernet, IPv4), each a µs apart."""
    frame = bytes.fromhex("020000000001" "020000000002" "0800"
                          "4500002e00004000401100000a0000020a000001"
                          "d43104d2001a0000") + bytes(18)
    record = np.zeros((n, 16 + len(frame)), dtype=np.uint8)
    head = record[:, :16].view("<u4")
    head[:, 0] = 1_700_000_000 + np.arange(n) // 1_000_000
    head[:, 1] = np.arange(n) % 1_000_000
    head[:, 2] = head[:, 3] = len(frame)
    record[:, 16:] = np.frombuffer(frame, dtype=np.uint8)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + record.tobytes())
    return path


@pytest.mark.parametrize("where", ["after the chunk read", "to nothing"])
def test_file_cut_while_read_ends_early_and_says_so(where: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "shrinking.pcap"
    shutil.copyfile(CAPTURES / "ether-le-nsec.pcap", path)
    monkeypatch.setattr(capture, "CHUNK_BYTES", 512)
    whole = packets.read_packets(CAPTURES / "ether-le-nsec.pcap")
    size = path.stat().st_size
    frames, warning, caught = _frames_when_cut(path, size // 2 if where != "to nothing" else 0)
    assert not caught
    assert 0 < len(frames) < len(whole)
    assert frames == list(whole["frame"][:len(frames)])  # the packets before, as they were
    assert warning is not None and "cut short" in str(warning)


def test_cli_on_a_capture_emptied_while_read_warns_and_keeps_what_it_read(
        tmp_path: Path) -> None:
    """The reviewer's case, as a whole process: a 38 MB capture emptied once the first rows
    are written. Either the read had finished (exit 0, every packet), or it ends with the warning,
    exit 0 and the whole packets before the cut — never a crash (a map gave exit 135)."""
    path = _big_pcap(tmp_path / "victim.pcap", 500_000)
    out = tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, "-m", "xentrace_cli", "packets", str(path), "-o",
                             str(out), "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size) and proc.poll() is None \
            and time.monotonic() < deadline:  # cut once it is writing rows
        time.sleep(0.005)
    path.write_bytes(b"")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == "" or ("cut short" in err and len(err.strip().splitlines()) == 1), err


def test_distinct_is_unique() -> None:
    """capture.distinct (one comparison when every value is the first) gives groups.unique's
    distinct values: one value, several, none, at every dtype the readers pass."""
    from xentrace_cli.groups import unique

    rng = np.random.default_rng(3)
    for dtype in (np.int32, np.int64, np.uint32):
        for values in (np.full(1000, 7, dtype=dtype), np.zeros(0, dtype=dtype),
                       rng.integers(0, 4, 1000).astype(dtype), np.array([5, 5, 5, 2], dtype)):
            got = capture.distinct(values)
            assert got.dtype == values.dtype
            np.testing.assert_array_equal(got, unique(values))


def _test_captures() -> list[Path]:
    corpus = HERE / "data" / "corpus" / "captures"
    return sorted([*CAPTURES.glob("*.pcap*"), *corpus.glob("*.pcap*"),
                   *(HERE / "data" / "badinput").glob("*.pcap*")])


@pytest.mark.parametrize("path", _test_captures(), ids=lambda p: p.name)
def test_chunks_grown_for_large_frames_read_the_same(path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of large frames is read in chunks up to CHUNK_GROWTH times larger: every test,
    corpus and bad-input capture gives the same table and warnings (or error) as in chunks
    of one size, with chunks small enough that most files take several."""
    from conftest import read_all

    monkeypatch.setattr(capture, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(capture, "CHUNK_MEAN_BYTES", 64)  # most test frames are larger
    monkeypatch.setattr(capture, "CHUNK_GROWTH", 1)
    plain = read_all(path)
    monkeypatch.setattr(capture, "CHUNK_GROWTH", 4)
    grown = read_all(path)
    if isinstance(plain[0], str):
        assert grown[0] == plain[0]
    else:
        assert grown[0].equals(plain[0])
    assert grown[1] == plain[1]


def test_large_frames_are_read_in_larger_chunks(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first chunk, a file of 1,500-byte frames is read in chunks CHUNK_GROWTH
    times the size (its mean frame is far past CHUNK_MEAN_BYTES); 60-byte frames in chunks
    of CHUNK_BYTES."""
    monkeypatch.setattr(capture, "CHUNK_BYTES", 64 << 10)
    frame = bytes(1500)
    record = struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    big = tmp_path / "big.pcap"
    big.write_bytes(header + record * 2000)
    small = _big_pcap(tmp_path / "small.pcap", 20_000)
    for path, most in ((big, 4 * (64 << 10) // len(record)), (small, (64 << 10) // 76)):
        with open_capture(path) as reader:
            sizes = [len(b) for b in reader.batches()]
        assert sizes[0] == (64 << 10) // (len(record) if path == big else 76)
        assert most <= max(sizes) <= most + 1, (path.name, sizes)  # + the tail's record
