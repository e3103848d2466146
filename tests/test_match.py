"""Matching the same bytes across capture points (pipeline.match), on hand-made tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import match

SERVER, GUEST = "10.0.0.1", "10.0.0.2"
MSS = 1448


def table(rows: list[tuple]) -> pd.DataFrame:
    """A packet table as packets.py writes it, from (ts_ns, src, dst, seq, len[, proto, id])."""
    out = []
    for i, row in enumerate(rows):
        ts, src, dst, seq, length, *rest = row
        proto = rest[0] if rest else 6
        ip_id = rest[1] if len(rest) > 1 else i
        out.append({"frame": i + 1, "ts_ns": ts, "ip_version": 4, "src": src, "dst": dst,
                    "proto": proto, "sport": 11211 if src == SERVER else 40000,
                    "dport": 40000 if src == SERVER else 11211,
                    "tcp_seq": seq if proto == 6 else None, "tcp_flags": 0x18 if length else 0x10,
                    "payload_len": length, "ip_id": ip_id,
                    "payload_digest": (ip_id * 7919) if length else None})
    frame = pd.DataFrame(out)
    return frame.astype({"ts_ns": "Int64", "proto": "UInt8", "sport": "UInt16",
                         "dport": "UInt16", "tcp_seq": "UInt32", "payload_len": "Int64",
                         "ip_id": "UInt32", "payload_digest": "UInt64"})


def flows(**tables: pd.DataFrame) -> dict[str, pd.DataFrame]:
    segs = {name: match.data_segments(t) for name, t in tables.items()}
    return match.assign_flows(segs, {GUEST})


def test_gso_segment_at_backend_covers_many_guest_frames() -> None:
    # one 10-MSS GSO segment at the backend; the guest sees 10 MTU frames 50 µs later each
    isn = 4_000_000_000  # wraps past 2**32 inside the segment
    backend = table([(1_000, SERVER, GUEST, isn, 10 * MSS)])
    guest = table([(100_000 + 50_000 * k, SERVER, GUEST, (isn + k * MSS) % 2**32, MSS)
                   for k in range(10)])
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.found.all()
    assert (m.ts_ns == 1_000).all()
    assert (m.index == 0).all()
    assert not m.retransmitted.any()
    assert (segs["guest"]["direction"] == "rx").all()


def test_gro_at_guest_takes_the_later_piece() -> None:
    # the backend saw two MTU frames; the guest one merged frame: whole when the second arrived
    backend = table([(1_000, SERVER, GUEST, 5000, MSS), (3_000, SERVER, GUEST, 5000 + MSS, MSS)])
    guest = table([(10_000, SERVER, GUEST, 5000, 2 * MSS)])
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.ts_ns.tolist() == [3_000]
    assert m.index.tolist() == [1]


def test_retransmission_first_transmission_wins_and_is_noted() -> None:
    backend = table([(1_000, SERVER, GUEST, 100, MSS), (9_000, SERVER, GUEST, 100, MSS),
                     (2_000, SERVER, GUEST, 100 + MSS, MSS)])
    guest = table([(5_000, SERVER, GUEST, 100, MSS), (6_000, SERVER, GUEST, 100 + MSS, MSS)])
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.ts_ns.tolist() == [1_000, 2_000]
    assert m.retransmitted.tolist() == [True, False]
    assert match.first_transmissions(segs["backend"]).tolist() == [True, False, True]


def test_missing_from_other_capture_and_direction() -> None:
    backend = table([(1_000, SERVER, GUEST, 100, MSS)])
    guest = table([(5_000, SERVER, GUEST, 100, MSS), (6_000, SERVER, GUEST, 100 + MSS, MSS),
                   (7_000, GUEST, SERVER, 900, 60)])
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.found.tolist() == [True, False, False]
    assert m.ts_ns.tolist() == [1_000, -1, -1]
    assert segs["guest"]["direction"].tolist() == ["rx", "rx", "tx"]


def test_flows_are_kept_apart() -> None:
    # the same sequence numbers on two flows (other ports) must not match each other
    a = table([(1_000, SERVER, GUEST, 100, MSS)])
    b = table([(5_000, SERVER, GUEST, 100, MSS)])
    b["sport"] = pd.array([11212], dtype="UInt16")
    segs = flows(backend=a, guest=b)
    assert not match.match_segments(segs["guest"], segs["backend"]).found.any()


def test_udp_by_ip_id_and_digest() -> None:
    backend = table([(1_000, SERVER, GUEST, 0, 200, 17, 7), (2_000, SERVER, GUEST, 0, 200, 17, 8)])
    guest = table([(9_000, SERVER, GUEST, 0, 200, 17, 8), (9_500, SERVER, GUEST, 0, 200, 17, 9)])
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.ts_ns.tolist() == [2_000, -1]
    assert m.index.tolist() == [1, -1]


def test_stream_offset_from_syn_or_first_byte() -> None:
    guest = table([(5_000, SERVER, GUEST, 1001, 10), (6_000, SERVER, GUEST, 1011, 10)])
    syn = table([(1_000, SERVER, GUEST, 1000, 0)])
    syn["tcp_flags"] = pd.array([0x12], dtype="UInt16")
    segs = match.assign_flows({"guest": match.data_segments(guest),
                               "syn": match.syn_segments(syn)}, {GUEST})
    assert match.stream_offset(segs["guest"], segs["syn"]).tolist() == [0, 10]
    # without the SYN the stream counts from the first byte captured
    assert match.stream_offset(segs["guest"]).tolist() == [0, 10]
    late = match.assign_flows({"guest": match.data_segments(guest.iloc[1:])}, {GUEST})
    assert match.stream_offset(late["guest"]).tolist() == [0]


def test_unwrap_seq_across_wrap_and_flows() -> None:
    seq = np.array([2**32 - 10, 5, 2**32 - 20, 100, 200])
    flow = np.array([0, 0, 0, 1, 1])
    assert match.unwrap_seq(seq, flow).tolist() == [0, 15, -10, 0, 100]


def test_local_addresses() -> None:
    segs = match.data_segments(table([(1, SERVER, GUEST, 1, 1), (2, GUEST, SERVER, 1, 1),
                                      (3, "10.0.0.9", GUEST, 1, 1)]))
    assert match.local_addresses(segs) == {GUEST}


def test_vectorized_on_many_segments() -> None:
    # 200k guest frames against 20k GSO segments: one pass, every frame found
    n = 200_000
    seq = (np.arange(n, dtype=np.int64) * MSS) % 2**32
    guest = pd.DataFrame({"frame": np.arange(1, n + 1), "ts_ns": np.arange(n) * 1000 + 500,
                          "ip_version": 4, "src": SERVER, "dst": GUEST, "proto": 6,
                          "sport": 11211, "dport": 40000, "tcp_seq": seq, "tcp_flags": 0x18,
                          "payload_len": MSS, "ip_id": 0, "payload_digest": 1})
    backend = guest.iloc[::10].copy()
    backend["payload_len"] = 10 * MSS
    segs = flows(backend=backend, guest=guest)
    m = match.match_segments(segs["guest"], segs["backend"])
    assert m.found.all()
    expected = (np.arange(n) // 10) * 10 * 1000 + 500
    np.testing.assert_array_equal(m.ts_ns, expected)


def test_local_address_when_two_addresses_tie() -> None:
    # one peer: both addresses in every frame; the socket log's peer is remote, else the
    # address with more ports (the client of several connections) is local
    rows = [(1, GUEST, SERVER, 1, 1), (2, SERVER, GUEST, 1, 1)]
    t = table(rows)
    second = table(rows)
    second["sport"] = pd.array([40001, 11211], dtype="UInt16")
    second["dport"] = pd.array([11211, 40001], dtype="UInt16")
    segs = match.data_segments(pd.concat([t, second], ignore_index=True))
    assert match.local_addresses(segs) == {GUEST}
    assert match.local_addresses(segs, remote={GUEST}) == {SERVER}


def test_flow_ids_with_many_addresses() -> None:
    # beyond 1024 addresses the packed key would not fit: the groupby path gives the same ids
    n = 1500
    frame = pd.DataFrame({
        "frame": np.arange(1, 2 * n + 1), "ts_ns": np.arange(2 * n), "ip_version": 4,
        "src": [f"10.1.{i // 250}.{i % 250}" for i in range(n)] * 2, "dst": GUEST,
        "proto": 6, "sport": 80, "dport": 40000, "tcp_seq": np.r_[np.zeros(n), np.ones(n) * 5],
        "tcp_flags": 0x18, "payload_len": 5, "ip_id": 0, "payload_digest": 1})
    segs = match.assign_flows({"g": match.data_segments(frame)}, {GUEST})["g"]
    flow = segs["flow"].to_numpy()
    assert len(np.unique(flow)) == n
    np.testing.assert_array_equal(flow[:n], flow[n:])


@pytest.mark.parametrize("name", ["multi-section.pcapng", "ether-le-nsec.pcap",
                                  "ether-snaplen40.pcap", "linktype-113.pcap"])
@pytest.mark.parametrize("small", [False, True])
def test_segments_of_the_reader_arrays_are_those_of_the_table(
        monkeypatch: pytest.MonkeyPatch, name: str, small: bool) -> None:
    # analyze takes the segments from the reader's arrays (PacketColumns): the same frames and
    # address texts as from the DataFrame read_packets gives, and, placed by assign_flows,
    # the same tables to the dtype (small: many batches, whose address lists differ; pandas'
    # union of those gives the categories another index dtype, which placing replaces)
    from xentrace_cli.sources import capture, packets

    path = Path(__file__).resolve().parent / "data" / "captures" / name
    if small:
        monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
        monkeypatch.setattr(packets, "TABLE_ROWS", 3)
    table, columns = packets.read_packets(path), packets.read_packet_columns(path)
    found = {}
    for take in (match.data_segments, match.syn_segments):
        want, got = take(table), take(columns)
        pd.testing.assert_frame_equal(object_categories(got), object_categories(want),
                                      check_exact=True)
        found[take.__name__] = (want, got)
    assert len(found["data_segments"][0]) > 0
    local = match.local_addresses(found["data_segments"][0])
    assert match.local_addresses(found["data_segments"][1]) == local
    placed = [match.assign_flows({"d": d, "s": s}, local)
              for d, s in zip(found["data_segments"], found["syn_segments"], strict=True)]
    for key in ("d", "s"):
        pd.testing.assert_frame_equal(placed[1][key], placed[0][key], check_exact=True)


def object_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its address columns' categories (texts, in their order) as an object
    index: a batch's are object, pandas' union of differing lists (read_packets' concatenation)
    infers str; the texts, their order and the codes must be equal."""
    return frame.assign(**{c: frame[c].cat.set_categories(
        pd.Index(list(frame[c].cat.categories), dtype=object)) for c in ("src", "dst")})


def _plain_coverage(start: np.ndarray, end: np.ndarray, ts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bounds, and per elementary interval between them the earliest segment covering it
    (ties: the lower row; -1 none) and how many do: a loop."""
    bounds = np.unique(np.concatenate([start, end]))
    best, count = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        covering = [i for i in range(start.size) if start[i] <= lo and end[i] >= hi]
        best.append(min(covering, key=lambda i: (ts[i], i)) if covering else -1)
        count.append(len(covering))
    return bounds, np.array(best, dtype=np.int64), np.array(count, dtype=np.int64)


@pytest.mark.parametrize("seed", range(40))
def test_coverage_is_the_plain_one(seed: int) -> None:
    """_Coverage (the bounds and segments' places by a merge of each flow's ascending starts
    and ends, or searched when they are not ascending) against a loop: flows of contiguous
    segments in time order, some retransmitted (a step back), some scrambled, flows far
    apart (2**16 and more: no radix order)."""
    rng = np.random.default_rng(seed)
    flows, size = int(rng.integers(1, 5)), int(rng.integers(0, 60))
    flow = rng.integers(0, flows, size) * (1 << 17 if seed % 5 == 4 else 1)
    length = rng.integers(1, 40, size)
    start = np.zeros(size, dtype=np.int64)
    for f in np.unique(flow):
        mine = np.flatnonzero(flow == f)
        start[mine] = np.r_[0, np.cumsum(length[mine])[:-1]]
    back = rng.random(size) < (0.0 if seed % 3 == 0 else 0.2)
    start[back] -= rng.integers(0, 60, int(back.sum()))
    if seed % 4 == 3:
        order = rng.permutation(size)
        flow, start, length = flow[order], start[order], length[order]
    start = (flow.astype(np.int64) << match._OFFSET_BITS) + match._OFFSET_BIAS + start
    end = start + length
    ts = rng.integers(0, 5, size).astype(np.int64)  # ties among the earliest
    cover = match._Coverage(start, end, ts)
    bounds, best, count = _plain_coverage(start, end, ts)
    assert np.array_equal(cover.bounds, bounds)
    assert np.array_equal(cover.lo, np.searchsorted(bounds, start))
    assert np.array_equal(cover.hi, np.searchsorted(bounds, end))
    assert np.array_equal(cover.best, best) and np.array_equal(cover.count, count)


@pytest.mark.parametrize("seed", range(20))
def test_ranked_union_is_unique_and_searchsorted(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(-50, 50, int(rng.integers(0, 200)))
    b = rng.integers(-50, 50, int(rng.integers(0, 200)))
    if seed % 2:
        a.sort(), b.sort()
    uniques, at_a, at_b = match.ranked_union(a, b)
    assert np.array_equal(uniques, np.unique(np.concatenate([a, b])))
    assert np.array_equal(at_a, np.searchsorted(uniques, a))
    assert np.array_equal(at_b, np.searchsorted(uniques, b))


@pytest.mark.parametrize("seed", range(30))
def test_unwrap_seq_is_the_loop(seed: int) -> None:
    """unwrap_seq against a loop over each flow's rows: steps forward and back, across the
    2**32 wrap, flows of one row."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    flow = np.sort(rng.integers(0, int(rng.integers(1, 20)), n))
    seq = rng.integers(0, 1 << 32, n) if seed % 3 == 0 else \
        (rng.integers(-2000, 5000, n).cumsum() + (1 << 32) - 10_000) % (1 << 32)
    want = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        if flow[i] == flow[i - 1]:
            step = (int(seq[i]) - int(seq[i - 1]) + (1 << 31)) % (1 << 32) - (1 << 31)
            want[i] = want[i - 1] + step
    assert match.unwrap_seq(seq, flow).tolist() == want.tolist()
