"""What every capture container shares (``sources/capture.py``): an uncompressed file read as
memory-mapped windows gives what reading it into one reused buffer gives (the gzip path, and
the readers' path before the maps), on every test, bad-input and corpus capture; its batches
stay valid while later windows are read; a file cut while it is read ends early, with the usual
warning."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus_cases import CORPUS

from xentrace_cli.errors import XenlatError
from xentrace_cli.sources import capture, packets
from xentrace_cli.sources.containers import open_capture
from xentrace_cli.sources.decode import decode

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"
MAPPABLE = sorted(p for p in [*CAPTURES.glob("*.pcap*"), *(HERE / "data" / "badinput").glob(
    "*.pcap*"), *(CORPUS / "captures").glob("*.pcap*")] if not p.name.endswith(".gz"))


def _read(path: Path) -> tuple[object, list[str]]:
    """The packet table (or the error) and the warnings' texts."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table: object = packets.read_packets(path)
        except XenlatError as exc:
            table = f"{type(exc).__name__}: {exc}"
    return table, [str(w.message) for w in caught]


def _is_mapped(path: Path) -> bool | None:
    """Whether the reader maps the file (None: the file is refused at opening)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open_capture(path) as reader:
                return reader.mapped
        except XenlatError:
            return None


@pytest.mark.parametrize("chunk", [capture.CHUNK_BYTES, 4099])
@pytest.mark.parametrize("path", MAPPABLE, ids=lambda p: p.name)
def test_mapped_windows_read_as_the_buffer_does(path: Path, chunk: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Same rows, same errors, same warnings (damage offsets included); 4,099-byte windows
    start off the page boundaries the maps are aligned to."""
    monkeypatch.setattr(capture, "CHUNK_BYTES", chunk)
    assert _is_mapped(path) in (True, None)
    mapped, mapped_warnings = _read(path)
    monkeypatch.setattr(capture, "MAP_FILES", False)
    assert _is_mapped(path) in (False, None)
    read, read_warnings = _read(path)
    if isinstance(read, str):
        assert mapped == read
    else:
        assert mapped.equals(read)  # type: ignore[attr-defined]
    assert mapped_warnings == read_warnings


def test_mapped_batches_stay_valid_after_later_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches kept while the reader goes on decode as batches decoded at once (with one
    reused buffer the early ones would hold the last chunk's bytes)."""
    path = CAPTURES / "multi-section.pcapng"
    monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
    with open_capture(path) as reader:
        kept = list(reader.batches())
    assert len(kept) > 3
    monkeypatch.setattr(capture, "MAP_FILES", False)
    with open_capture(path) as reader:
        at_once = [decode(b.buf, b.data_off, b.caplen, b.wirelen, b.linktype).payload_digest
                   for b in reader.batches()]
    later = [decode(b.buf, b.data_off, b.caplen, b.wirelen, b.linktype).payload_digest
             for b in kept]
    assert len(later) == len(at_once)
    for a, b in zip(later, at_once, strict=True):
        np.testing.assert_array_equal(a, b)


def test_file_cut_while_read_ends_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The size is looked at before each window is mapped: a file cut meanwhile ends there
    (cut short, whole packets kept), never a map past its end."""
    path = tmp_path / "shrinking.pcap"
    shutil.copyfile(CAPTURES / "ether-le-nsec.pcap", path)
    monkeypatch.setattr(capture, "CHUNK_BYTES", 512)
    whole = packets.read_packets(CAPTURES / "ether-le-nsec.pcap")
    cut_at = path.stat().st_size // 2
    with open_capture(path) as reader, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = reader.batches()
        first = next(batches)
        assert first.end_offset < cut_at
        with open(path, "r+b") as fh:
            fh.truncate(cut_at)
        frames = [*first.frame, *(f for b in batches for f in b.frame)]
        warning = reader.damage_warning()
    assert not caught
    assert 0 < len(frames) < len(whole)
    assert frames == list(whole["frame"][:len(frames)])
    assert warning is not None and "cut short" in str(warning)
