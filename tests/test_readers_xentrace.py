"""Tests of readers/xentrace.py: hand-built traces word by word, bad input, the real trace.

Ground truth: the hand-built records themselves, and for the real trace an independent slow
walk written here (one Python step per record, a different algorithm from the reader's).
"""

from __future__ import annotations

import json
import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli import xen_events as xe
from xentrace_cli.cli import main
from xentrace_cli.errors import InputError, TruncatedInput
from xentrace_cli.simulate.writers import write_xentrace
from xentrace_cli.sources import xentrace as reader
from xentrace_cli.sources import xentrace_records, xentrace_scan
from xentrace_cli.sources.xentrace import (
    cpu_runs,
    read_xentrace,
    running_on,
    state_at,
    state_durations,
    who_ran,
)

CORPUS_TRACE = "xentrace/xentrace-parser-rs__xentrace.bin"


# --- building traces word by word ------------------------------------------------------------

def rec(event: int, *extra: int, tsc: int | None = None) -> list[int]:
    """One record as words: header, [tsc lo, tsc hi], extra words."""
    header = event | (len(extra) << 28) | (0x80000000 if tsc is not None else 0)
    words = [header]  # bits 0-27 event, 28-30 N extra words, 31 C timestamp present
    if tsc is not None:
        words += [tsc & 0xFFFFFFFF, tsc >> 32]  # TSC, low word first
    return words + list(extra)  # N extra words


def window(cpu: int, *records: list[int], size: int | None = None) -> bytes:
    """A CPU-change record and its window of records (``size`` overrides window_size)."""
    body = b"".join(struct.pack(f"<{len(r)}I", *r) for r in records)
    return struct.pack("<IiI",
                       0x2001F003,  # header: CPU change, N=2 extra words, no timestamp
                       cpu,  # int32 physical CPU
                       len(body) if size is None else size,  # uint32 window_size (bytes)
                       ) + body


def write(tmp_path: Path, *parts: bytes, name: str = "trace.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return path


def runstate(old: int, new: int, domid: int, vcpu: int, tsc: int) -> list[int]:
    """RUNSTATE_CHANGE: old/new in the id, w0 = domid << 16 | vcpu."""
    return rec(xe.TRC_SCHED_RUNSTATE_CHANGE | old << 8 | new << 4, domid << 16 | vcpu, tsc=tsc)


# --- an independent slow reader (ground truth) ------------------------------------------------

def slow_walk(path: Path) -> list[tuple[int, int, int, int | None, tuple[int, ...]]]:
    """(offset, cpu, event, own tsc or None, extra words) per Xen record, one step per record."""
    data = path.read_bytes()
    out = []
    off = 0
    while off + 12 <= len(data):
        header, cpu, size = struct.unpack_from("<IiI", data, off)
        assert header == 0x2001F003
        end = off + 12 + size
        off += 12
        while off < min(end, len(data)):
            (header,) = struct.unpack_from("<I", data, off)
            n = (header >> 28) & 7
            c = header >> 31
            length = 4 + 8 * c + 4 * n
            if off + length > len(data):
                break
            tsc = struct.unpack_from("<Q", data, off + 4)[0] if c else None
            extra = struct.unpack_from(f"<{n}I", data, off + 4 + 8 * c)
            out.append((off, cpu, header & 0x0FFFFFFF, tsc, extra))
            off += length
        off = end
    return out


# --- features ----------------------------------------------------------------------------------

def test_annotated_bytes(tmp_path: Path) -> None:
    """One trace spelled out word by word, each field commented (after dpkt's dloff test)."""
    words = [
        0x2001F003,  # CPU change: event 0x1f003, N=2, C=0
        1,           #   cpu 1
        60,          #   window_size: 60 bytes follow (16 + 16 + 28)
        0x90021211,  # RUNSTATE_CHANGE blocked(2)->runnable(1): N=1, C=1
        0x00000064,  #   TSC low  (0x00000005_00000064)
        0x00000005,  #   TSC high
        0x00050003,  #   w0: domid 5 (bits 16-31), vcpu 3 (bits 0-15)
        0x30082004,  # HVM_INJ_VIRQ: N=3, C=0 (takes the TSC above)
        0x000000F3,  #   w0: vector 0xf3
        0x00000000,  #   w1
        0x00000001,  #   w2
        0xC001F001,  # lost records: N=4, C=1
        0x000000C8,  #   TSC low  (0x00000005_000000c8)
        0x00000005,  #   TSC high
        0x00000007,  #   w0: 7 records dropped
        0x00020000,  #   w1: domid 0 (bits 0-15), vcpu 2 (bits 16-31)
        0x00000070,  #   w2: TSC low of the first dropped record
        0x00000005,  #   w3: TSC high
    ]
    path = write(tmp_path, struct.pack(f"<{len(words)}I", *words))
    trace = read_xentrace(path)
    ev = trace.events
    assert (trace.records, trace.windows, trace.cpu_ids) == (3, 1, (1,))
    assert ev["event"].tolist() == [0x00021211, 0x00082004, 0x0001F001]
    assert ev["tsc"].tolist() == [0x5_00000064, 0x5_00000064, 0x5_000000C8]
    assert ev["offset"].tolist() == [12, 28, 44]
    assert ev["n_extra"].tolist() == [1, 3, 4]
    assert (ev["domid"].iloc[0], ev["vcpu"].iloc[0]) == (5, 3)
    assert (ev["old_state"].iloc[0], ev["new_state"].iloc[0]) == (2, 1)
    assert ev["w0"].iloc[1] == 0xF3 and ev["w2"].iloc[1] == 1 and ev["w3"].iloc[1] == 0
    lost = trace.lost.iloc[0]
    assert (lost["dropped"], lost["domid"], lost["vcpu"]) == (7, 0, 2)
    assert (lost["tsc_first"], lost["tsc"]) == (0x5_00000070, 0x5_000000C8)



def test_two_cpus_merge_by_tsc_and_carry_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        window(0,
               rec(xe.TRC_SCHED_WAKE, 1, 0, tsc=100),
               rec(xe.TRC_HVM_VMENTRY),  # no timestamp: takes 100 (same CPU)
               rec(xe.TRC_HVM_VMEXIT64, 7, 8, 9, tsc=300)),
        window(1,
               rec(xe.TRC_SCHED_BLOCK, 2, 1, tsc=200),
               rec(xe.TRC_HVM_INJ_VIRQ, 0xF3, 0)),  # takes 200
        window(0,
               rec(xe.TRC_HVM_VMENTRY),  # carried from CPU 0's previous window: 300
               rec(xe.TRC_SCHED_SLEEP, 1, 0, tsc=150)),  # TSC went back: order is by tsc
    )
    trace = read_xentrace(path)
    ev = trace.events
    assert (trace.records, trace.windows, trace.cpus, trace.truncated) == (7, 3, 2, False)
    assert trace.cpu_ids == (0, 1)
    assert ev["tsc"].tolist() == [100, 100, 150, 200, 200, 300, 300]
    assert ev["cpu"].tolist() == [0, 0, 0, 1, 1, 0, 0]
    assert ev["name"].tolist() == ["wake", "hvm_vmentry", "sleep", "block", "hvm_inj_virq",
                                   "hvm_vmexit64", "hvm_vmentry"]
    assert ev["timestamped"].tolist() == [True, False, True, True, False, True, False]
    assert (trace.first_tsc, trace.last_tsc) == (100, 300)
    exit64 = ev[ev["name"] == "hvm_vmexit64"].iloc[0]
    assert [exit64[f"w{k}"] for k in range(7)] == [7, 8, 9, 0, 0, 0, 0]
    assert exit64["n_extra"] == 3
    # dtypes of the contract
    assert ev["cpu"].dtype == np.int16 and ev["tsc"].dtype == np.int64
    assert ev["event"].dtype == np.uint32 and ev["w6"].dtype == np.uint32
    assert isinstance(ev["name"].dtype, pd.CategoricalDtype)
    assert str(ev["domid"].dtype) == "Int32" and str(ev["old_state"].dtype) == "Int8"
    # offsets point at the records (window header 12 bytes, then records of 20 and 4 bytes)
    assert ev.sort_values("offset")["offset"].tolist()[:3] == [12, 32, 36]


def test_record_before_any_timestamp_takes_its_cpus_first(tmp_path: Path) -> None:
    path = write(tmp_path,
                 window(3, rec(xe.TRC_HVM_VMENTRY), rec(xe.TRC_HVM_VMEXIT, 1, 2, 3)),
                 window(3, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=500)),
                 window(2, rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=400)))
    trace = read_xentrace(path)
    assert trace.events["tsc"].tolist() == [400, 500, 500, 500]
    assert trace.events["cpu"].tolist() == [2, 3, 3, 3]
    # per-CPU order kept for equal TSCs
    assert trace.events["name"].tolist()[1:] == ["hvm_vmentry", "hvm_vmexit", "wake"]


def test_wrap_record_skipped_by_length(tmp_path: Path) -> None:
    garbage = (0xFFFFFFFF, 0x2001F003, 0x7001F001, 0, 0, 0, 0)  # look like headers: must not
    path = write(tmp_path, window(0,
                                  rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=10),
                                  rec(xe.TRC_TRACE_WRAP_BUFFER, *garbage, tsc=11),
                                  rec(xe.TRC_TRACE_WRAP_BUFFER, 0xFFFFFFFF),  # short: no TSC
                                  rec(xe.TRC_SCHED_BLOCK, 0, 0, tsc=12)))
    trace = read_xentrace(path)
    assert trace.events["name"].tolist() == ["wake", "wrap_buffer", "wrap_buffer", "block"]
    assert trace.records == 4


def test_lost_records_in_events_and_lost_table(tmp_path: Path) -> None:
    first = 0x1_0000_0010
    path = write(tmp_path, window(5,
                                  rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=0x1_0000_0000),
                                  rec(xe.TRC_LOST_RECORDS,
                                      1234,  # w0: records dropped
                                      (3 << 16) | 14,  # w1: vcpu 3 (high), domid 14 (low)
                                      first & 0xFFFFFFFF, first >> 32,  # TSC of first dropped
                                      tsc=0x1_0000_0400)))
    trace = read_xentrace(path)
    lost = trace.lost
    assert len(lost) == 1
    row = lost.iloc[0]
    assert (row["cpu"], row["dropped"], row["domid"], row["vcpu"]) == (5, 1234, 14, 3)
    assert (row["tsc_first"], row["tsc"]) == (first, 0x1_0000_0400)
    assert trace.events["name"].tolist() == ["wake", "lost_records"]
    assert trace.records == 2


def test_filtered_read_keeps_lost_records_for_their_table_only(tmp_path: Path) -> None:
    """Lost-records records are read for the lost table whatever ``events`` names, and are
    in the event table only when it names them (a short record, N < 4, is in neither
    table but the event table)."""
    first = 0x1_0000_0010
    path = write(tmp_path, window(2,
                                  rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=0x1_0000_0000),
                                  rec(xe.TRC_LOST_RECORDS, 7, 14, first & 0xFFFFFFFF,
                                      first >> 32, tsc=0x1_0000_0400),
                                  rec(xe.TRC_LOST_RECORDS, 9, tsc=0x1_0000_0500),
                                  rec(xe.TRC_SCHED_SLEEP, 0, 0, tsc=0x1_0000_0600)))
    for events, names in (((xe.TRC_SCHED_WAKE,), ["wake"]),
                          ((xe.TRC_SCHED_WAKE, xe.TRC_LOST_RECORDS),
                           ["wake", "lost_records", "lost_records"]),
                          (None, ["wake", "lost_records", "lost_records", "sleep"])):
        trace = read_xentrace(path, events=events)
        assert trace.events["name"].tolist() == names
        assert trace.lost["dropped"].tolist() == [7]
        assert trace.records == 4


def test_switch_infprev_infnext_layouts(tmp_path: Path) -> None:
    path = write(tmp_path, window(
        0,
        rec(xe.TRC_SCHED_SWITCH_INFPREV, 5, 900, tsc=1),  # Xen <= 4.7: [domid, ran_ns]
        rec(xe.TRC_SCHED_SWITCH_INFPREV, 5, 2, 901, tsc=2),  # [domid, vcpu, ran_ns]
        rec(xe.TRC_SCHED_SWITCH_INFNEXT, 6, 70, 0xFFFFFFFF, tsc=3),  # [domid, wait, slice]
        rec(xe.TRC_SCHED_SWITCH_INFNEXT, 6, 1, 71, 30000, tsc=4),  # [domid, vcpu, wait, slice]
        rec(xe.TRC_SCHED_SWITCH, 5, 2, 6, 1, tsc=5),  # prev d5v2 -> next d6v1
    ))
    ev = read_xentrace(path).events
    assert ev["domid"].tolist() == [5, 5, 6, 6, 5]
    assert ev["vcpu"].tolist()[1::2] == [2, 1]
    assert ev["vcpu"].isna().tolist() == [True, False, True, False, False]
    assert ev["ran_ns"].tolist()[:2] == [900, 901]
    assert ev["wait_ns"].tolist()[2:4] == [70, 71]
    assert ev["next_domid"].tolist()[4] == 6 and ev["next_vcpu"].tolist()[4] == 1
    assert ev["next_domid"].isna().sum() == 4


def test_decoded_columns(tmp_path: Path) -> None:
    path = write(tmp_path, window(
        1,
        runstate(2, 1, 14, 3, tsc=10),  # blocked -> runnable, d14v3
        rec(xe.TRC_HW_IRQ_HANDLED, 57, 0x1000, 0x2000, tsc=11),  # irq 57
        rec(xe.TRC_PV_HYPERCALL_V2, 0x01100014, 5, 17, tsc=12),  # grant_table_op copy x17
        rec(xe.TRC_PV_HYPERCALL_V2, 0x0010001D, 1, tsc=13),  # sched_op, 1 arg
        rec(xe.TRC_MEM_PAGE_GRANT_MAP, 9, tsc=14),  # granting domain 9
        rec(xe.TRC_SCHED_CONTINUE_RUNNING, (0 << 16) | 2, tsc=15),  # d0v2
    ))
    ev = read_xentrace(path).events
    assert ev["domid"].tolist()[0] == 14 and ev["vcpu"].tolist()[0] == 3
    assert (ev["old_state"].iloc[0], ev["new_state"].iloc[0]) == (2, 1)
    assert ev["old_state"].notna().sum() == 1
    assert ev["irq"].tolist()[1] == 57 and ev["irq"].notna().sum() == 1
    assert ev["hypercall"].tolist()[2:4] == [20, 29]
    assert ev["gnttab_cmd"].tolist()[2] == xe.GNTTABOP_COPY
    assert ev["count"].tolist()[2] == 17
    assert ev["gnttab_cmd"].notna().sum() == 1 and ev["count"].notna().sum() == 1
    assert ev["domid"].tolist()[4] == 9 and pd.isna(ev["vcpu"].iloc[4])
    assert (ev["domid"].iloc[5], ev["vcpu"].iloc[5]) == (0, 2)


def test_unknown_and_guest_events_kept_raw(tmp_path: Path) -> None:
    path = write(tmp_path, window(
        0,
        rec(0x0800F000 | 0x42, 1, 2, 3, 4, 5, 6, 7),  # TRC_GUEST, 7 words, no timestamp
        rec(0x0040F123, 0xDEAD, tsc=5),  # a shadow event xenlat does not know
        rec(0x0FFFFFFF),  # an id of no class at all
    ))
    ev = read_xentrace(path).events
    assert ev["name"].tolist() == ["guest", "shadow:0x0040f123", "unknown:0x0fffffff"]
    assert [ev[f"w{k}"].iloc[0] for k in range(7)] == [1, 2, 3, 4, 5, 6, 7]
    assert ev["w0"].iloc[1] == 0xDEAD
    assert ev["event"].tolist()[0] == 0x0800F042


def test_empty_window_and_many_chunks_match_slow_walk(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    windows = [window(0)]  # an empty window
    tsc = 1000
    for w in range(12):
        records = []
        for _ in range(int(rng.integers(0, 40))):
            n = int(rng.integers(0, 8))
            stamped = bool(rng.integers(0, 2))
            tsc += int(rng.integers(1, 100))
            words = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).tolist()
            records.append(rec(0x00081000 + int(rng.integers(0, 5)), *words,
                               tsc=tsc if stamped else None))
        windows.append(window(w % 3, *records))
    path = write(tmp_path, *windows)
    truth = slow_walk(path)
    for chunk in (reader.CHUNK_WORDS, 7, 16, 101):  # records straddle chunk limits
        monkeypatch.setattr(reader, "CHUNK_WORDS", chunk)
        ev = read_xentrace(path).events.sort_values("offset", kind="stable")
        assert ev["offset"].tolist() == [t[0] for t in truth]
        assert ev["cpu"].tolist() == [t[1] for t in truth]
        assert ev["event"].tolist() == [t[2] for t in truth]
        for k in range(7):
            assert ev[f"w{k}"].tolist() == [t[4][k] if k < len(t[4]) else 0 for t in truth]


def test_windows_without_records_read_as_an_empty_trace(tmp_path: Path) -> None:
    """Two CPU-change records with window_size 0: nothing Xen wrote, no time known."""
    path = write(tmp_path, window(1), window(0))
    for chunk in (reader.CHUNK_WORDS, 3):  # the whole file in one span, or a span per window
        scan = xentrace_scan.scan_xentrace(path, chunk_words=chunk)
        assert (scan.records, scan.windows, scan.cpu_ids) == (0, 2, (0, 1))
        assert scan.first_tsc is None and scan.last_tsc is None
        assert len(scan.kept["tsc"]) == 0 and len(scan.runstate["tsc"]) == 0
    trace = read_xentrace(path)
    assert trace.records == 0 and trace.events.empty and trace.runstates.empty


@pytest.mark.parametrize("few", [0, 1000])
def test_both_walks_match_slow_walk_on_many_windows(tmp_path: Path, monkeypatch,
                                                   few: int) -> None:
    """Windows walked a record per step together (few=0), or each alone by pointer
    doubling (few=1000): the same records as the slow walk, with random words that look like
    headers, empty windows, and windows of one CPU interleaved with others."""
    monkeypatch.setattr(xentrace_records, "_FEW_LANES", few)
    rng = np.random.default_rng(5)
    windows, tsc = [], 1000
    for w in range(60):
        records = []
        for _ in range(int(rng.integers(0, 90))):
            n = int(rng.integers(0, 8))
            tsc += int(rng.integers(1, 100))
            words = rng.integers(0, 1 << 32, size=n, dtype=np.uint64).tolist()
            records.append(rec(0x00081000 + int(rng.integers(0, 5)), *words,
                               tsc=tsc if rng.integers(0, 2) else None))
        windows.append(window(w % 7, *records))
    path = write(tmp_path, *windows)
    truth = slow_walk(path)
    for chunk in (reader.CHUNK_WORDS, 64, 1000):
        monkeypatch.setattr(reader, "CHUNK_WORDS", chunk)
        ev = read_xentrace(path).events.sort_values("offset", kind="stable")
        assert ev["offset"].tolist() == [t[0] for t in truth]
        assert ev["event"].tolist() == [t[2] for t in truth]
        assert ev["w6"].tolist() == [t[4][6] if len(t[4]) > 6 else 0 for t in truth]


@pytest.mark.parametrize("few", [0, 1000])
def test_record_past_its_window_found_by_both_walks(tmp_path: Path, monkeypatch,
                                                    few: int) -> None:
    monkeypatch.setattr(xentrace_records, "_FEW_LANES", few)
    good = [window(c, rec(xe.TRC_SCHED_WAKE, 0, c, tsc=c + 1)) for c in range(12)]
    bad = window(3, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1), size=12)  # 20-byte record, 12 bytes
    path = write(tmp_path, *good[:5], bad, *good[5:])
    offset = sum(len(g) for g in good[:5]) + 12
    with pytest.raises(InputError, match=f"offset {offset}: record with header 0xa0028004 "
                       "\\(20 bytes\\) runs past the end of its window"):
        read_xentrace(path)


def test_event_counts_records_bytes_and_quiet_stretches(tmp_path: Path) -> None:
    """Every record counted per CPU and id, kept or not, with its bytes (4 + 8C + 4N); per
    CPU the first and last TSC and the longest stretch between two of its records, also
    across its windows."""
    path = write(tmp_path,
                 window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=100),  # 4 + 8 + 8 = 20 bytes
                        rec(xe.TRC_HVM_VMENTRY),  # 4 bytes, takes 100
                        rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=130)),
                 window(1, rec(xe.TRC_SCHED_BLOCK, 1, 0, tsc=105)),
                 window(0, rec(xe.TRC_HVM_VMENTRY),  # carries 130
                        rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=400),  # CPU 0 quiet 130..400
                        rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=410)),
                 window(1, rec(xe.TRC_SCHED_BLOCK, 1, 0, tsc=160)))  # CPU 1 quiet 105..160
    trace = read_xentrace(path, events=[], tallies=True)
    assert len(trace.events) == 0
    counts = trace.event_counts
    assert counts.values.tolist() == [[0, xe.TRC_SCHED_WAKE, 4, 80],
                                      [0, xe.TRC_HVM_VMENTRY, 2, 8],
                                      [1, xe.TRC_SCHED_BLOCK, 2, 40]]
    assert trace.cpu_first_tsc == {0: 100, 1: 105}
    assert trace.cpu_last_tsc == {0: 410, 1: 160}
    assert trace.cpu_longest_gap == {0: (130, 400), 1: (105, 160)}


@pytest.mark.parametrize("chunk", [reader.CHUNK_WORDS, 4, 9])
def test_truncated_last_window_keeps_whole_records(tmp_path: Path, monkeypatch,
                                                   chunk: int) -> None:
    monkeypatch.setattr(reader, "CHUNK_WORDS", chunk)
    data = (window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1))
            + window(1, rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=2), rec(xe.TRC_SCHED_BLOCK, 0, 1,
                                                                     tsc=3)))
    path = write(tmp_path, data[:-6])  # cut inside the last record (20 bytes long)
    with pytest.warns(TruncatedInput) as caught:
        trace = read_xentrace(path)
    assert trace.truncated
    assert trace.events["name"].tolist() == ["wake", "wake"]
    assert trace.events["cpu"].tolist() == [0, 1]
    cut_record = len(data) - 20
    assert str(caught[0].message).startswith(
        f"{path}: offset {cut_record}: file ends inside a window of CPU 1 (the file has "
        f"{len(data) - 6} bytes, the window needs {len(data)}); kept the whole records before")


def test_cut_inside_a_cpu_change_record(tmp_path: Path) -> None:
    data = window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1)) + window(1)
    path = write(tmp_path, data[:-5])
    with pytest.warns(TruncatedInput, match=f"offset {len(data) - 12}: file ends inside a "
                      "CPU-change record \\(7 bytes after the last whole window\\)"):
        trace = read_xentrace(path)
    assert trace.records == 1 and trace.windows == 1


def test_a_whole_file_reads_without_warning(tmp_path: Path) -> None:
    path = write(tmp_path, window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_xentrace(path).records == 1


# --- bad input ---------------------------------------------------------------------------------

BAD_INPUTS = {
    "not_xentrace": (b"\xd4\xc3\xb2\xa1" + bytes(40), 0,
                     "not a xentrace file: no CPU-change record at offset 0 (header 0xa1b2c3d4, "
                     "expected 0x2001f003); it might be Xen <= 3.1 fixed-size records"),
    "too_short": (b"\x03\xf0\x01\x20\x00", 0, "shorter than a CPU-change record"),
    "window_larger_than_file": (struct.pack("<IiI", 0x2001F003, 0, 1 << 30), 8,
                                "window size 1073741824 bytes is larger than the file"),
    "cpu_out_of_range": (window(5000, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1)), 4,
                         "CPU 5000, out of range"),
    "cpu_negative": (window(-1), 4, "CPU -1, out of range"),
    "record_runs_past_window": (window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1), size=12)
                                + window(1), 12, "runs past the end of its window at offset 24"),
    "last_record_runs_past_window": (window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1), size=8)
                                     + bytes(12), 12, "runs past the end of its window"),
    "window_swallows_next_window": (window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1), size=44)
                                    + window(1, rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=2)), 32,
                                    "a CPU-change record lies inside the window of the "
                                    "CPU-change record at offset 0"),
    "window_size_past_the_end_swallows": (window(0, size=40) + window(1, rec(xe.TRC_SCHED_WAKE,
                                                                              0, 1, tsc=2)),
                                          12, "a CPU-change record lies inside the window"),
    "window_size_not_multiple_of_4": (window(0, size=3) + bytes(3), 8, "not a multiple of 4"),
    "garbage_after_window": (window(0) + b"\x01\x02\x03\x04" * 4, 12,
                             "expected a CPU-change record"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_library(tmp_path: Path, case: str) -> None:
    data, offset, message = BAD_INPUTS[case]
    path = write(tmp_path, data)
    with pytest.raises(InputError, match=re.escape(message)) as info:
        read_xentrace(path)
    assert info.value.offset == offset
    assert str(info.value).startswith(f"{path}: offset {offset}: ")


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_cli(tmp_path: Path, runner, case: str) -> None:
    data, offset, message = BAD_INPUTS[case]
    path = write(tmp_path, data)
    result = runner.invoke(main, ["trace", str(path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"xenlat: error: {path}: offset {offset}: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name, message", [
    ("missing.bin", "no such file"), (".", "is a directory"), ("empty.bin", "empty file"),
])
def test_unusable_paths_cli(tmp_path: Path, runner, name: str, message: str) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    path = tmp_path / name
    result = runner.invoke(main, ["trace", str(path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith(f"xenlat: error: {path}")
    assert message in result.stderr


def test_truncated_cli_warns_and_strict_fails(tmp_path: Path, runner) -> None:
    data = window(0, rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1), rec(xe.TRC_SCHED_BLOCK, 0, 0, tsc=2))
    path = write(tmp_path, data[:-4])
    result = runner.invoke(main, ["trace", str(path), "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["records"] == 1
    assert json.loads(result.stdout)["truncated"] is True
    assert result.stderr.startswith(f"xenlat: warning: {path}: offset 32: file ends inside")
    strict = runner.invoke(main, ["trace", str(path), "--strict"])
    assert strict.exit_code == 3
    assert strict.stdout == ""
    assert strict.stderr.startswith(f"xenlat: error: {path}: offset 32: file ends inside")
    assert strict.stderr.rstrip().endswith("(--strict)")


def test_damaged_files_never_crash(tmp_path: Path, monkeypatch) -> None:
    """Random byte changes and cuts: a trace, a warning or an InputError, nothing else."""
    good = b"".join(window(c % 3, *[rec(0x00081000 + k % 5, *range(k % 8),
                                       tsc=100 * c + k if k % 3 else None)
                                   for k in range(12)]) for c in range(9))
    rng = np.random.default_rng(7)
    path = tmp_path / "damaged.bin"
    outcomes = {"read": 0, "error": 0}
    for _ in range(80):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(1, len(data)))]
        path.write_bytes(bytes(data))
        monkeypatch.setattr(reader, "CHUNK_WORDS", int(rng.choice([5, 37, 1 << 20])))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TruncatedInput)
                trace = read_xentrace(path)
            assert trace.records <= len(data) // 4
            outcomes["read"] += 1
        except InputError as exc:
            assert str(exc).startswith(f"{path}: offset ")
            outcomes["error"] += 1
    assert outcomes["read"] > 0 and outcomes["error"] > 0


# --- run states, switches ----------------------------------------------------------------------

def runstate_windows() -> tuple[bytes, bytes]:
    """CPU 2's two windows: d1v0 blocked until 100, runnable 100-150, running 150-400,
    runnable 400-450, running from 450 (blocks at 600). CPU 2 ran d0v0 then d1v0 (switch at
    150), idle (400), d1v0 again (450). Also test_trace_summary's trace, around a lost window."""
    return (window(2,
                   rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=50),
                   runstate(2, 1, 1, 0, tsc=100),
                   rec(xe.TRC_SCHED_SWITCH, 0, 0, 1, 0, tsc=150),
                   runstate(1, 0, 1, 0, tsc=150),
                   rec(xe.TRC_SCHED_SWITCH, 1, 0, xe.DOMID_IDLE, 2, tsc=400),
                   runstate(0, 1, 1, 0, tsc=400)),
            window(2,
                   rec(xe.TRC_SCHED_SWITCH, xe.DOMID_IDLE, 2, 1, 0, tsc=450),
                   runstate(1, 0, 1, 0, tsc=450),
                   rec(xe.TRC_SCHED_BLOCK, 0, 0, tsc=600)))


def _runstate_trace(tmp_path: Path) -> Path:
    return write(tmp_path, *runstate_windows())


def test_runstate_intervals(tmp_path: Path) -> None:
    trace = read_xentrace(_runstate_trace(tmp_path))
    rs = trace.runstates
    assert rs["state"].tolist() == ["blocked", "runnable", "running", "runnable", "running"]
    assert rs["start_tsc"].tolist() == [50, 100, 150, 400, 450]
    assert rs["end_tsc"].tolist()[:4] == [100, 150, 400, 450]
    assert pd.isna(rs["end_tsc"].iloc[4])
    assert rs["from_trace_start"].tolist() == [True, False, False, False, False]
    assert rs["consistent"].all()
    assert (rs["domid"] == 1).all() and (rs["vcpu"] == 0).all()


def test_state_at_and_durations(tmp_path: Path) -> None:
    rs = read_xentrace(_runstate_trace(tmp_path)).runstates
    states = state_at(rs, 1, 0, [10, 50, 99, 100, 149, 150, 420, 599, 600, 601])
    assert [None if pd.isna(x) else x for x in states] == [
        None, "blocked", "blocked", "runnable", "runnable", "running", "runnable", "running",
        None, None]  # last_tsc is 600: after it nothing is known
    assert state_at(rs, 9, 9, [100]).isna().all()
    d = state_durations(rs, 1, 0, [0, 120, 390], [130, 460, 700])
    # [0,130): unknown 50, blocked 50, runnable 30
    assert d.iloc[0].to_dict() == {"running": 0, "runnable": 30, "blocked": 50, "offline": 0,
                                   "unknown": 50}
    # [120,460): runnable 30 + 50, running 250 + 10
    assert d.iloc[1].to_dict() == {"running": 260, "runnable": 80, "blocked": 0, "offline": 0,
                                   "unknown": 0}
    # [390,700): running 10, runnable 50, running 150 (to 600), unknown 100
    assert d.iloc[2].to_dict() == {"running": 160, "runnable": 50, "blocked": 0, "offline": 0,
                                   "unknown": 100}


def test_switches_and_who_ran(tmp_path: Path) -> None:
    trace = read_xentrace(_runstate_trace(tmp_path))
    sw = trace.switches
    assert sw["tsc"].tolist() == [150, 400, 450]
    assert sw["next_domid"].tolist() == [1, xe.DOMID_IDLE, 1]
    runs = trace.cpu_runs
    assert runs["domid"].tolist() == [0, 1, xe.DOMID_IDLE, 1]
    assert runs["start_tsc"].tolist() == [50, 150, 400, 450]
    # d1v0 was runnable 100-150: who had CPU 2? d0v0.
    held = who_ran(runs, 2, 100, 150)
    assert held[["domid", "vcpu", "cycles"]].values.tolist() == [[0, 0, 50]]
    held = who_ran(runs, 2, 300, 500)
    assert held["domid"].tolist() == [1, xe.DOMID_IDLE, 1]
    assert held["cycles"].tolist() == [100, 50, 50]
    assert held["idle"].tolist() == [False, True, False]
    on = running_on(runs, [2, 2, 2, 7], [10, 200, 420, 200])
    assert on["domid"].tolist()[1:3] == [1, xe.DOMID_IDLE]
    assert on["domid"].isna().tolist() == [True, False, False, True]
    assert cpu_runs(trace.switches.iloc[:0]).empty


# --- the real trace ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real(corpus: Path):
    path = corpus / CORPUS_TRACE
    return path, read_xentrace(path), slow_walk(path)


def test_real_trace_counts(real) -> None:
    _, trace, truth = real
    assert (trace.records, trace.windows, trace.cpus) == (180_493, 187, 8)
    assert trace.cpu_ids == tuple(range(8))
    assert not trace.truncated
    assert len(truth) == 180_493
    want = pd.Series([t[2] for t in truth]).value_counts().sort_index()
    got = trace.events["event"].value_counts().sort_index()
    assert got.to_dict() == want.to_dict()
    assert got[xe.TRC_TRACE_WRAP_BUFFER] > 0


def test_real_trace_records_match_slow_walk(real) -> None:
    _, trace, truth = real
    ev = trace.events.sort_values("offset", kind="stable")
    assert ev["offset"].tolist() == [t[0] for t in truth]
    assert ev["cpu"].tolist() == [t[1] for t in truth]
    own = ev["timestamped"].to_numpy()
    assert own.tolist() == [t[3] is not None for t in truth]
    assert ev["tsc"].to_numpy()[own].tolist() == [t[3] for t in truth if t[3] is not None]
    assert ev["w3"].tolist() == [t[4][3] if len(t[4]) > 3 else 0 for t in truth]
    # merged timeline: sorted by tsc; each CPU's records in file order
    assert trace.events["tsc"].is_monotonic_increasing
    for _, group in trace.events.groupby("cpu"):
        assert group["offset"].is_monotonic_increasing


def test_real_trace_runstates_contiguous(real) -> None:
    _, trace, _ = real
    rs = trace.runstates
    assert len(rs) > 20_000
    for _, g in rs.groupby(["domid", "vcpu"]):
        start = g["start_tsc"].to_numpy()
        end = g["end_tsc"].to_numpy(dtype=np.int64, na_value=-1)
        assert (np.diff(start) >= 0).all()
        assert (end[:-1] == start[1:]).all()  # contiguous, no overlap
        assert end[-1] == -1  # the last one is open
    assert rs["consistent"].all()  # no lost records in this trace: every change agrees
    changes = trace.events["old_state"].notna().sum()
    assert (~rs["from_trace_start"]).sum() == changes



def test_real_trace_filtered_read_keeps_wanted_ids_and_whole_tables(real) -> None:
    """``events=``: the event table holds just those ids (rows equal to the full read's), the
    lost / run-state / switch tables and the counts are those of the full read."""
    path, full, _ = real
    wanted = [xe.TRC_SCHED_WAKE, xe.TRC_HW_IRQ_HANDLED, xe.TRC_PV_HYPERCALL_V2]
    part = read_xentrace(path, events=wanted)
    ev = full.events
    expect = ev[ev["event"].isin(wanted)].reset_index(drop=True)
    assert 0 < len(part.events) < len(ev) / 2
    assert set(part.events["event"].unique()) <= set(wanted)
    pd.testing.assert_frame_equal(part.events.drop(columns="name"), expect.drop(columns="name"))
    assert part.events["name"].astype(str).tolist() == expect["name"].astype(str).tolist()
    for table in ("lost", "runstates", "switches"):
        pd.testing.assert_frame_equal(getattr(part, table), getattr(full, table))
    assert part.runstates.attrs == full.runstates.attrs
    assert (part.records, part.windows, part.cpu_ids, part.first_tsc, part.last_tsc) == \
        (full.records, full.windows, full.cpu_ids, full.first_tsc, full.last_tsc)


def test_real_trace_without_idle_runstates_and_selected_columns(real) -> None:
    """``idle_runstates=False``: the run states are the full read's but the idle domain's
    (10,087 of its 25,176 intervals, in the same order); ``columns=``: those columns,
    equal to the full read's (the decoded ones included), every other table whole."""
    path, full, _ = real
    columns = ("cpu", "tsc", "event", "w1", "domid", "vcpu", "irq", "gnttab_cmd", "count")
    part = read_xentrace(path, columns=columns, idle_runstates=False)
    rs = full.runstates
    idle = rs["domid"].to_numpy() == xe.DOMID_IDLE
    assert (idle.sum(), len(rs)) == (10_087, 25_176)
    pd.testing.assert_frame_equal(part.runstates, rs[~idle].reset_index(drop=True))
    assert part.runstates.attrs == rs.attrs
    assert list(part.events.columns) == list(columns)
    pd.testing.assert_frame_equal(part.events, full.events[list(columns)])
    for table in ("lost", "switches", "cpu_runs"):
        pd.testing.assert_frame_equal(getattr(part, table), getattr(full, table))


@pytest.mark.parametrize("chunk", [reader.CHUNK_WORDS, 5000])
def test_real_trace_analyzer_read_equals_full_read_restricted(real, monkeypatch,
                                                              chunk: int) -> None:
    """The analyzer's read (its events and columns, no idle run states, no tallies: only
    the kept records' TSCs looked up) equals the full read restricted to the same events and
    columns, table by table, in one span or in many (the corpus trace has records without a
    TSC, so the anchors are not every record)."""
    from xentrace_cli.pipeline.trace_attribute import TRACE_COLUMNS, TRACE_EVENTS

    path, full, _ = real
    assert not full.events["timestamped"].all()
    monkeypatch.setattr(reader, "CHUNK_WORDS", chunk)
    part = read_xentrace(path, events=TRACE_EVENTS, columns=TRACE_COLUMNS,
                         idle_runstates=False)
    ev = full.events
    expect = ev[ev["event"].isin(TRACE_EVENTS)][list(TRACE_COLUMNS)].reset_index(drop=True)
    assert len(expect) > 1000
    pd.testing.assert_frame_equal(part.events, expect)
    rs = full.runstates
    pd.testing.assert_frame_equal(part.runstates,
                                  rs[rs["domid"] != xe.DOMID_IDLE].reset_index(drop=True))
    assert part.runstates.attrs == rs.attrs
    for table in ("lost", "switches", "cpu_runs"):
        pd.testing.assert_frame_equal(getattr(part, table), getattr(full, table))
    assert (part.records, part.windows, part.cpu_ids, part.first_tsc, part.last_tsc,
            part.truncated, part.cpu_first_tsc, part.cpu_last_tsc) == \
        (full.records, full.windows, full.cpu_ids, full.first_tsc, full.last_tsc,
         full.truncated, full.cpu_first_tsc, full.cpu_last_tsc)
    assert part.event_counts.empty and part.cpu_longest_gap == {}  # not asked for


def test_filtered_read_fills_pending_and_carried_tsc(tmp_path: Path, monkeypatch) -> None:
    """Records left out still carry their TSC to the kept ones, across windows and chunks."""
    monkeypatch.setattr(reader, "CHUNK_WORDS", 8)
    path = write(tmp_path,
                 window(3, rec(xe.TRC_HVM_VMENTRY), rec(xe.TRC_SCHED_WAKE, 0, 1)),  # pending
                 window(3, rec(xe.TRC_HVM_VMEXIT, 1, 2, 3, tsc=500),  # dropped, has the TSC
                        rec(xe.TRC_HVM_VMENTRY)),
                 window(3, rec(xe.TRC_SCHED_WAKE, 4, 0)),  # carried from the window before
                 window(2, runstate(1, 0, 4, 0, tsc=400), rec(xe.TRC_SCHED_WAKE, 4, 1)))
    part = read_xentrace(path, events=[xe.TRC_SCHED_WAKE])
    assert part.events["tsc"].tolist() == [400, 500, 500]  # 500: CPU 3's first TSC
    assert part.events["cpu"].tolist() == [2, 3, 3]
    assert part.events["domid"].tolist() == [4, 0, 4]
    assert part.records == 7 and (part.first_tsc, part.last_tsc) == (400, 500)
    # the change is at the trace's first TSC: no interval before it
    assert part.runstates["state"].astype(str).tolist() == ["running"]
    assert part.runstates["start_tsc"].tolist() == [400]
    narrow = read_xentrace(path, events=[xe.TRC_SCHED_WAKE], columns=("tsc", "domid"))
    assert list(narrow.events.columns) == ["tsc", "domid"]
    assert narrow.events["domid"].tolist() == [4, 0, 4]


def test_carry_without_stretches_matches_the_step_per_window_carry() -> None:
    """Clock.carry vectorized per CPU (no tallies: analyze's read) gives the loop's first
    TSCs, unresolved windows, and CPUs' first and last TSCs, span after span, on windows
    whose first record has or lacks a TSC, with or without a stamped record after it."""
    rng = np.random.default_rng(3)
    for _ in range(400):
        n, cpus = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        loop, vector = xentrace_records.Clock(), xentrace_records.Clock()
        for c in range(cpus):
            if rng.random() < 0.3:  # a CPU seen in an earlier span
                loop.last[c] = vector.last[c] = int(rng.integers(0, 100))
                loop.first[c] = vector.first[c] = 1
        for _span in range(3):
            first, second, last = (rng.integers(0, 1000, n) for _ in range(3))
            stamped = rng.random(n) < rng.choice([0.2, 0.8, 1.0])
            single = rng.random(n) < 0.4
            leads = xentrace_records._Leads(first, stamped, second,
                                            np.where(single, first, last), single)
            cpu = rng.integers(0, cpus, n).astype(np.int16)
            want_value, want_unresolved = loop.carry(cpu, leads, gaps=True)
            value, unresolved = vector.carry(cpu, leads, gaps=False)
            assert value.tolist() == want_value.tolist() and unresolved == want_unresolved
            assert (vector.first, vector.last) == (loop.first, loop.last)
            assert all(type(v) is int for v in [*vector.first.values(), *vector.last.values()])


# --- round trip through the simulator's writer -------------------------------------------------

def test_round_trip_simulator_writer(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 3000
    cpu = rng.integers(0, 4, n)
    has_ts = rng.random(n) < 0.7
    has_ts[np.unique(cpu, return_index=True)[1]] = True  # each CPU starts with a TSC
    n_extra = rng.integers(0, 8, n)
    event = rng.choice([xe.TRC_SCHED_WAKE, xe.TRC_HVM_VMEXIT64, xe.TRC_HW_IRQ_HANDLED,
                        xe.TRC_GUEST | 3, 0x00022209], n).astype(np.uint32)
    extra = rng.integers(0, 1 << 32, (n, 7), dtype=np.uint64).astype(np.uint32)
    extra[np.arange(7)[None, :] >= n_extra[:, None]] = 0
    own = np.cumsum(rng.integers(1, 1000, n)) + 10**12
    # In per-CPU order, a record without a TSC carries its CPU's last one (the writer's rule).
    tsc = own.copy()
    for c in range(4):
        rows = np.flatnonzero(cpu == c)
        last = np.maximum.accumulate(np.where(has_ts[rows], np.arange(len(rows)), 0))
        tsc[rows] = own[rows][last]
    path = tmp_path / "sim.bin"
    write_xentrace(path, cpu, tsc, event, extra, n_extra, has_ts, window_cycles=50_000)
    trace = read_xentrace(path)
    assert trace.records == n and not trace.truncated
    assert trace.windows > 4 and trace.cpu_ids == (0, 1, 2, 3)
    ev = trace.events
    for c in range(4):
        got = ev[ev["cpu"] == c].sort_values("offset")
        rows = np.flatnonzero(cpu == c)
        assert got["event"].tolist() == event[rows].tolist()
        assert got["tsc"].tolist() == tsc[rows].tolist()
        assert got["timestamped"].tolist() == has_ts[rows].tolist()
        assert got["n_extra"].tolist() == n_extra[rows].tolist()
        for k in range(7):
            assert got[f"w{k}"].tolist() == extra[rows, k].tolist()


def test_round_trip_simulated_scenario(simulated_set) -> None:
    directory = simulated_set("lost-records", seed=3, requests=30)
    scenario = json.loads((directory / "scenario.json").read_text())
    trace = read_xentrace(directory / "xentrace.bin")
    assert trace.records > 0 and not trace.truncated
    assert trace.records == len(slow_walk(directory / "xentrace.bin"))
    # The blind spots the simulator injected (its truth), at its TSC formula.
    t0, tsc0, hz = scenario["t0_ns"], scenario["tsc_at_t0"], scenario["cpu_hz"]

    def tsc(ns: int) -> int:
        return tsc0 + round((ns - t0) * hz / 1e9)

    want = [[f["cpu"], f["dropped"], tsc(f["start_ns"]), tsc(f["end_ns"])]
            for f in scenario["faults"] if f["kind"] == "lost_records"]
    assert want
    got = trace.lost[["cpu", "dropped", "tsc_first", "tsc"]].values.tolist()
    assert got == want
    rs = trace.runstates
    for _, g in rs.groupby(["domid", "vcpu"]):
        end = g["end_tsc"].to_numpy(dtype=np.int64, na_value=-1)
        assert (end[:-1] == g["start_tsc"].to_numpy()[1:]).all()


def test_window_opening_without_tsc_and_high_extra_word_is_not_damage(tmp_path: Path) -> None:
    """A window whose first record has no TSC and one extra word (a virtual IRQ's vector),
    followed by a stamped record: the two words after its header are its vector and the next
    header, whose top bit (TSC present) is set. They are not a TSC beyond 2**63: no warning
    (the simulator's toy host raised it 7 times in 40,000 requests), the record takes its
    CPU's last TSC."""
    path = write(tmp_path,
                 window(0, rec(xe.TRC_SCHED_WAKE, 1, 0, tsc=100)),
                 window(0, rec(xe.TRC_HVM_INJ_VIRQ, 0xF3),
                        rec(xe.TRC_SCHED_SLEEP, 1, 0, tsc=250)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the false "damaged" warning was raised here
        trace = read_xentrace(path)
    assert trace.events["tsc"].tolist() == [100, 100, 250]
    assert trace.events["name"].tolist() == ["wake", "hvm_inj_virq", "sleep"]


@pytest.mark.parametrize("seed", range(40))
def test_small_key_groups_are_the_stable_sorts(seed: int) -> None:
    """_key_groups' table path (keys of 16 bits or less, run-state units of ids below 256)
    against the plain stable argsort and np.unique: the same order, keys and counts; keys
    that do not fit (negative, wide ids, many values) take the hashed path, checked alike."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 4000))
    kind = seed % 8
    if kind == 0:  # CPUs
        key = rng.integers(0, 8, n).astype(np.int16)
    elif kind == 1:  # run-state units of small ids, few of them
        units = (rng.integers(0, 256, 6).astype(np.uint32) << 16) \
            | rng.integers(0, 256, 6).astype(np.uint32)
        key = units[rng.integers(0, 6, n)]
    elif kind == 2:  # over 127 units: sorted as uint16
        units = (rng.integers(0, 256, 300).astype(np.uint32) << 16) \
            | rng.integers(0, 256, 300).astype(np.uint32)
        key = units[rng.integers(0, 300, n)]
    elif kind == 3:  # 32-bit keys below 2**16
        key = rng.integers(0, 70000, n).astype(np.uint32) % (1 << 16)
    elif kind == 4:  # negative: hashed
        key = rng.integers(-3, 300, n).astype(np.int16)
    elif kind == 5:  # the idle domain (0x7fff): hashed
        key = (rng.choice(np.array([0, 5, 0x7FFF], np.uint32), n) << 16) \
            | rng.integers(0, 4, n).astype(np.uint32)
    elif kind == 6:  # int32 units, vCPU ids past 255: hashed
        key = ((rng.integers(0, 4, n) << 16) | rng.integers(0, 300, n)).astype(np.int32)
    else:  # a single key, or uint8 keys
        key = np.full(n, int(rng.integers(0, 256)), np.uint8)
    order, keys, counts = xentrace_scan._key_groups(key)
    distinct, how_many = np.unique(key, return_counts=True)
    assert np.array_equal(order, np.argsort(key, kind="stable"))
    assert np.array_equal(keys, distinct) and keys.dtype == key.dtype
    assert np.array_equal(counts, how_many)
