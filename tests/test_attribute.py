"""Stages, merged intervals, socket-log times and copy batches (xentrace_cli.pipeline.attribute)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xentrace_cli import model
from xentrace_cli.pipeline import attribute, match, trace_attribute, trace_path
from xentrace_cli.pipeline.attribute import NA_NS

GUEST, SERVER = "10.0.0.2", "10.0.0.1"


def names(present: set[str], direction: str = "rx") -> list[str]:
    return [iv.name for iv in attribute.intervals(present, direction)]


def test_all_sources_give_the_five_stages() -> None:
    everything = {"xentrace", "phys", "backend", "guest", "socket_log"}
    assert names(everything) == ["vmm", "driver_domain", "ring", "remap", "socket_read"]
    assert names(everything, "tx") == ["socket_write", "vmm", "ring", "remap", "driver_domain"]
    no_trace = attribute.intervals(everything - {"xentrace"}, "tx")
    assert [iv.name for iv in no_trace] == ["socket_write", "guest_to_backend", "driver_domain"]
    assert no_trace[1].merged == ("vmm", "ring", "remap")


def test_the_schema_holds_every_interval_any_sources_give() -> None:
    for way in ("rx", "tx"):
        for name in attribute.possible_intervals(way):
            assert f"{name}_us" in model.TABLE_COLUMNS, (way, name)
    merged = set(model.MERGED_INTERVALS) | set(model.TX_INTERVALS)
    stages = set(model.ALL_STAGES)
    possible = set(attribute.possible_intervals("rx")) | set(attribute.possible_intervals("tx"))
    assert possible == merged | stages


def test_missing_sources_merge_stages_and_say_so() -> None:
    no_trace = attribute.intervals({"phys", "backend", "guest", "socket_log"}, "rx")
    assert [iv.name for iv in no_trace] == ["backend_to_guest", "socket_read"]
    assert no_trace[0].merged == ("ring", "remap")
    note = " ".join(attribute.merge_notes(no_trace))
    assert "ring, remap" in note and "xentrace" in note
    assert names({"guest", "socket_log"}) == ["socket_read"]
    assert names({"guest"}) == []
    # without the backend capture, phys stands in for its boundary
    assert names({"xentrace", "phys", "guest"}) == ["vmm", "dom0_run_to_phys", "phys_to_copy",
                                                    "remap"]


def test_durations_and_seconds() -> None:
    a = np.array([1_000, NA_NS, 5_000])
    b = np.array([3_500, 2_000, NA_NS])
    d = attribute.durations_us(a, b)
    assert d[0] == 2.5 and np.isnan(d[1:]).all()
    s = attribute.to_seconds(np.array([1_700_000_000_123_456_789, NA_NS]))
    assert s[0] == 1_700_000_000.123456789 and np.isnan(s[1])


def test_assign_batches_fifo_with_full_batches() -> None:
    # frames at 0..5; batches at 10 (2 frames), 20 (2), 30 (5): FIFO overflow into later ones
    frames = np.array([0, 1, 2, 3, 4, 25])
    batches = np.array([10, 20, 30])
    j = trace_path.assign_batches(frames, batches, np.array([2, 2, 5]))
    assert j.tolist() == [0, 0, 1, 1, 2, 2]
    # a frame after the last batch has none; the trace starting late skips no slot
    j = trace_path.assign_batches(np.array([5, 15, 35]), np.array([10, 20]), np.array([3, 3]))
    assert j.tolist() == [0, 1, -1]


def segments(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "frame": np.arange(1, len(rows) + 1), "ts_ns": [r[0] for r in rows], "ip_version": 4,
        "src": [r[1] for r in rows], "dst": [r[2] for r in rows], "proto": 6,
        "sport": [r[3] for r in rows], "dport": [r[4] for r in rows],
        "tcp_seq": [r[5] for r in rows], "tcp_flags": 0x18, "payload_len": [r[6] for r in rows],
        "ip_id": 0, "payload_digest": 1})
    return match.assign_flows({"g": match.data_segments(frame)}, {GUEST})["g"]


def calls(rows: list[tuple]) -> pd.DataFrame:
    """Socket-log rows: (ts_ns, stream, direction, bytes, peer)."""
    frame = pd.DataFrame(rows, columns=["ts_ns", "stream", "direction", "bytes", "peer"])
    frame["entry_ns"] = frame["ts_ns"] - 1000
    frame["fd"] = frame["stream"] + 3
    data = frame["direction"].notna()
    frame["stream_offset"] = 0
    frame.loc[data, "stream_offset"] = (frame[data].groupby(["stream", "direction"])["bytes"]
                                        .cumsum() - frame.loc[data, "bytes"])
    return frame


def test_read_covering_the_last_byte_by_peer() -> None:
    # two connections to the same server port; reads of 300 and 200 bytes on stream 0
    segs = segments([(1_000, SERVER, GUEST, 11211, 40001, 100, 200),
                     (2_000, SERVER, GUEST, 11211, 40001, 300, 300),
                     (3_000, SERVER, GUEST, 11211, 40002, 9000, 50),
                     (500, GUEST, SERVER, 40001, 11211, 7, 20)])
    log = calls([(100, 0, None, 0, f"{SERVER}:11211"), (100, 1, None, 0, f"{SERVER}:11211"),
                 (600, 0, "tx", 20, None),
                 (2_500, 0, "rx", 300, None), (2_600, 0, "rx", 200, None),
                 (3_100, 1, "rx", 50, None)])
    offsets = match.stream_offset(segs)
    mapping, how = attribute.map_streams(log, segs, offsets)
    assert how == "peer"
    t, row = attribute.socket_times(log, segs, offsets, mapping)
    # segment 0 ends at byte 200 (first read covers it), segment 1 at 500 (second read)
    assert t[:3].tolist() == [2_500, 2_600, 3_100]
    # the write's entry time for the sent segment
    assert t[3] == 600 - 1000
    assert (row >= 0).all()


def test_streams_by_byte_counts_without_peers() -> None:
    segs = segments([(1_000, SERVER, GUEST, 11211, 40001, 100, 200),
                     (3_000, SERVER, GUEST, 11211, 40002, 9000, 50)])
    log = calls([(3_100, 7, "rx", 50, None), (2_500, 4, "rx", 200, None)])
    offsets = match.stream_offset(segs)
    mapping, how = attribute.map_streams(log, segs, offsets)
    assert how == "bytes"
    t, _ = attribute.socket_times(log, segs, offsets, mapping)
    assert t.tolist() == [2_500, 3_100]


def test_an_interrupt_long_before_the_burst_is_not_its_own() -> None:
    # interrupts handled at 3 µs and 52 µs; frames: a burst at 10–12 µs, a burst of frames
    # 20 µs apart from 100 µs to 1 ms, and a frame at 5 ms whose interrupt was not traced
    handled = np.array([3_000, 52_000], dtype=np.int64)
    frames = np.r_[10_000, 12_000, np.arange(100_000, 1_000_001, 20_000), 5_000_000]
    arrive = np.array([10_000, 12_000, 900_000, 5_000_000, NA_NS], dtype=np.int64)
    irq_row = np.array([0, 0, 1, 1, -1], dtype=np.int64)  # the last interrupt before each
    kept = trace_attribute.bound_interrupts(irq_row, handled, frames, arrive, bound_ns=100_000)
    # 10 µs − 3 µs and 100 µs − 52 µs are within 100 µs; 5 ms − 52 µs is not
    assert kept.tolist() == [0, 0, 1, -1, -1]
    # a tighter bound drops the long burst too (its start is 48 µs after the interrupt)
    assert trace_attribute.bound_interrupts(irq_row, handled, frames, arrive, 40_000).tolist() == \
        [0, 0, -1, -1, -1]
