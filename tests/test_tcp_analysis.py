"""Our TCP sequence analysis against tshark's ``tcp.analysis.*``, and the causes it names.

The capture is written with scapy (a simulated connection with every event Wireshark flags:
duplicate ACKs and a fast retransmission, RTO retransmissions backing off, a zero window, a
window-full stall, an out-of-order segment, a delayed ACK); tshark reads the same file and is
the ground truth for the flags it has.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli import model
from xentrace_cli.pipeline import lone, match
from xentrace_cli.pipeline.conversations import tcp_analysis
from xentrace_cli.sources import packets

CLIENT, SERVER = "10.0.0.5", "10.0.0.1"
CPORT, SPORT = 40000, 80
MS = 1e-3
#: tshark flag → our column
FLAGS = {"retransmission": "retransmission", "fast_retransmission": "fast_retransmission",
         "duplicate_ack": "duplicate_ack", "zero_window": "zero_window",
         "window_full": "window_full", "out_of_order": "out_of_order",
         "lost_segment": "lost_segment"}


def write_capture(path: Path) -> None:
    """A connection (window scale 2 both ways) carrying three HTTP exchanges with trouble."""
    from scapy import all as scapy

    frames = []
    t = [1_700_000_000.0]

    def send(src: str, flags: str, seq: int, ack: int, data: bytes = b"", window: int = 16000,
             options: list | None = None, dt: float = 0.0) -> None:
        t[0] += dt
        sport, dport = (CPORT, SPORT) if src == CLIENT else (SPORT, CPORT)
        dst = SERVER if src == CLIENT else CLIENT
        pkt = (scapy.Ether() / scapy.IP(src=src, dst=dst)
               / scapy.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
                           window=window, options=options or []) / data)
        pkt.time = t[0]
        frames.append(pkt)

    c, s = 1000, 5000
    send(CLIENT, "S", c, 0, options=[("WScale", 2)])
    send(SERVER, "SA", s, c + 1, options=[("WScale", 2)], dt=0.2 * MS)
    send(CLIENT, "A", c + 1, s + 1, dt=0.1 * MS)
    c, s = c + 1, s + 1
    # exchange 1: the response is lost twice in part: dup ACKs, fast retransmission
    req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    send(CLIENT, "PA", c, s, req, dt=1 * MS)
    c += len(req)
    body = [b"HTTP/1.1 200 OK\r\n" + b"a" * 983, b"b" * 1000, b"c" * 1000, b"d" * 1000]
    send(SERVER, "A", s, c, body[0], dt=0.3 * MS)            # seg 0
    # seg 1 lost before the capture point; segs 2, 3 arrive: two duplicate ACKs
    send(SERVER, "A", s + 2000, c, body[2], dt=0.1 * MS)
    send(CLIENT, "A", c, s + 1000, dt=0.05 * MS)
    send(SERVER, "A", s + 3000, c, body[3], dt=0.1 * MS)
    send(CLIENT, "A", c, s + 1000, dt=0.05 * MS)             # dup ACK 1
    send(SERVER, "A", s + 3000, c, body[3], dt=5 * MS)       # a resend of seg 3
    send(CLIENT, "A", c, s + 1000, dt=0.05 * MS)             # dup ACK 2
    send(SERVER, "A", s + 1000, c, body[1], dt=0.1 * MS)     # fast retransmission of seg 1
    s += 4000
    send(CLIENT, "A", c, s, dt=0.05 * MS)
    # exchange 2: the request is lost, resent after 200 ms, then 400 ms (RTO back-off)
    req = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    send(CLIENT, "PA", c, s, req, dt=3 * MS)
    send(CLIENT, "PA", c, s, req, dt=200 * MS)
    send(CLIENT, "PA", c, s, req, dt=400 * MS)
    c += len(req)
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    send(SERVER, "PA", s, c, resp, dt=0.3 * MS)
    s += len(resp)
    # the client's ACK held back 40 ms
    send(CLIENT, "A", c, s, dt=40 * MS)
    # exchange 3: the client's window closes (zero window), then opens; the server fills it
    req = b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    send(CLIENT, "PA", c, s, req, window=250, dt=2 * MS)
    c += len(req)
    send(SERVER, "A", s, c, b"HTTP/1.1 200 OK\r\n" + b"e" * 983, dt=0.3 * MS)  # fills 1000
    s += 1000
    send(CLIENT, "A", c, s, window=0, dt=0.1 * MS)           # zero window
    send(CLIENT, "A", c, s, window=4000, dt=150 * MS)        # window update
    send(SERVER, "PA", s, c, b"f" * 500, dt=0.2 * MS)
    s += 500
    # out of order: seg B overtakes seg A by 0.1 ms
    send(SERVER, "A", s + 500, c, b"h" * 500, dt=0.2 * MS)
    send(SERVER, "A", s, c, b"g" * 500, dt=0.1 * MS)
    s += 1000
    send(CLIENT, "A", c, s, window=4000, dt=0.05 * MS)
    scapy.wrpcap(str(path), frames)


def tshark_flags(tshark: str, path: Path) -> pd.DataFrame:
    fields = [f"tcp.analysis.{f}" for f in FLAGS]
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number",
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    ref = pd.DataFrame(rows, columns=["frame", *FLAGS])
    ref["frame"] = ref["frame"].astype(int)
    for flag in FLAGS:
        ref[flag] = ref[flag] != ""
    return ref.set_index("frame")


def test_flags_match_tshark(tmp_path: Path, tshark: str) -> None:
    path = tmp_path / "trouble.pcap"
    write_capture(path)
    ours = tcp_analysis.analyze_tcp(packets.read_packets(path, tcp_window=True)).set_index(
        "frame")
    ref = tshark_flags(tshark, path)
    for theirs, mine in FLAGS.items():
        got = ours[mine].reindex(ref.index, fill_value=False)
        assert (got == ref[theirs]).all(), (
            theirs, ref.index[ref[theirs]].tolist(), got.index[got].tolist())
        assert ref[theirs].any(), f"the capture has no {theirs}: the comparison proves nothing"


def test_delayed_ack_and_backoff_by_hand(tmp_path: Path) -> None:
    """Not Wireshark flags: by the capture's own construction (see write_capture)."""
    path = tmp_path / "trouble.pcap"
    write_capture(path)
    flags = tcp_analysis.analyze_tcp(packets.read_packets(path, tcp_window=True))
    delayed = flags[flags["delayed_ack"]]
    assert len(delayed) == 1 and delayed["ack_delay_ns"].iloc[0] == 40_000_000
    back = flags[flags["rto_backoff"]]
    assert len(back) == 1 and back["interval_ns"].iloc[0] == 400_000_000
    retx = flags[flags["retransmission"] & (flags["seglen"] == 28)]
    assert retx["interval_ns"].tolist() == [200_000_000, 400_000_000]


def test_gaps_carry_the_network_cause(tmp_path: Path) -> None:
    """The three exchanges' gaps, explained without Xen (causes of ``model.CAUSES``)."""
    path = tmp_path / "trouble.pcap"
    write_capture(path)
    table = packets.read_packets(path, **lone.READ_OPTIONS)
    segments = match.data_segments(table)
    placed = match.assign_flows({"c": segments}, {CLIENT})["c"]
    facts = lone.frame_facts(table)
    flows = lone.exchanges(placed, None, facts)
    assert len(flows) == 3 and set(flows["rule"]) == {"http"}
    # request → response of exchange 2 spans the whole loss: 600 ms + 0.3 ms
    assert abs(flows.loc[1, "request_to_response_us"] - 600_300.0) < 1.0
    key = tcp_analysis.conversation_key(flows["src"].to_numpy(), flows["sport"].to_numpy(),
                                        flows["dst"].to_numpy(), flows["dport"].to_numpy())
    start = np.rint(flows["t_request_end"].to_numpy() * 1e9).astype(np.int64)
    end = np.rint(flows["t_response"].to_numpy() * 1e9).astype(np.int64)
    cause, detail = tcp_analysis.explain_gaps(facts.tcp, key, start - 1000, end + 1000)
    assert cause[1] == "tcp_rto_backoff"
    assert "400.0 ms" in detail[1]
    # the response of exchange 3 waited on the zero window
    start = np.rint(flows["t_response"].to_numpy() * 1e9).astype(np.int64)
    end = np.rint(flows["t_response_end"].to_numpy() * 1e9).astype(np.int64)
    cause, _ = tcp_analysis.explain_gaps(facts.tcp, key, start, end)
    assert cause[2] == "tcp_zero_window"
    assert cause[0] == "tcp_retransmission"  # exchange 1: the fast retransmission
    assert set(tcp_analysis.CAUSES) <= set(model.CAUSES)


@pytest.mark.parametrize("name", ["tcpdump__pptp.pcap", "zeek__http_bro.org.pcap",
                                  "pcapplusplus__raw_ip.pcap",
                                  "pcapplusplus__many_interfaces-1.pcapng"])
def test_flags_match_tshark_on_the_corpus(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / "captures" / name
    ours = tcp_analysis.analyze_tcp(packets.read_packets(path, tcp_window=True)).set_index(
        "frame")
    ref = tshark_flags(tshark, path)
    for theirs, mine in FLAGS.items():
        got = ours[mine].reindex(ref.index, fill_value=False)
        assert (got == ref[theirs]).all(), (theirs, ref.index[ref[theirs]].tolist(),
                                            got.index[got].tolist())


def test_opt_in_reader_columns_match_tshark(corpus: Path, tshark: str) -> None:
    """payload_head and tcp_window/tcp_wscale are tshark's tcp.payload (first 16 bytes),
    tcp.window_size_value and tcp.options.wscale.shift; the default table has none of them."""
    path = corpus / "captures" / "zeek__http_bro.org.pcap"
    table = packets.read_packets(path, payload_head=16, tcp_window=True)
    assert not {"payload_head", "tcp_window", "tcp_wscale"} & set(packets.read_packets(path))
    out = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-e",
                          "tcp.window_size_value", "-e", "tcp.payload", "-e",
                          "tcp.options.wscale.shift"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    heads = packets.head_bytes(table["payload_head"])
    assert len(out) == len(table) == heads.shape[0]
    for i, line in enumerate(out):
        window, payload, shift = line.split("\t")
        assert int(window) == table["tcp_window"].iloc[i]
        expected = bytes.fromhex(payload.replace(":", ""))[:16]
        assert heads[i, :len(expected)].tobytes() == expected
        assert not heads[i, len(expected):].any()
        assert (int(shift) if shift else None) == (
            None if pd.isna(table["tcp_wscale"].iloc[i]) else int(table["tcp_wscale"].iloc[i]))


def test_ack_delay_is_exact(corpus: Path) -> None:
    """A microsecond capture's ACK delays are whole microseconds: the difference of the two
    frames' integer nanoseconds (the delays were differences of epoch times rounded to
    float64 when some ACK found no data: 36,776,960 ns for 36,777,000)."""
    path = corpus / "captures" / "zeek__http_bro.org.pcap"
    table = packets.read_packets(path, tcp_window=True)
    assert (table["ts_ns"].to_numpy(np.int64) % 1000 == 0).all()  # microsecond timestamps
    flags = tcp_analysis.analyze_tcp(table)
    delayed = flags.loc[flags["delayed_ack"]]
    delays = delayed["ack_delay_ns"].to_numpy()
    assert (delays % 1000 == 0).all() and (delays >= tcp_analysis.DELAYED_ACK_NS).all()
    expected = _ack_delays_by_hand(table)
    assert len(expected) > 0  # the capture has delayed ACKs to find
    assert dict(zip(delayed["frame"].tolist(), delays.astype(np.int64).tolist(),
                    strict=True)) == expected


def _ack_delays_by_hand(table: pd.DataFrame) -> dict[int, int]:
    """The delayed ACKs of a packet table, one frame at a time in plain Python: a pure ACK
    (no payload, no SYN/FIN/RST) whose number moved since its flow's previous frame, and the
    time since the latest data of the flow the other way that ends at that number, if 20 ms
    or more."""
    last_ack: dict[tuple, int] = {}
    data_end: dict[tuple, int] = {}
    out = {}
    for row in table[table["proto"] == 6].itertuples():
        flow = (row.src, row.sport, row.dst, row.dport)
        if row.payload_len > 0:
            data_end[flow, (row.tcp_seq + row.payload_len) % 2**32] = row.ts_ns
        pure = row.payload_len == 0 and not row.tcp_flags & 0x07  # FIN, SYN, RST
        if pure and flow in last_ack and row.tcp_ack != last_ack[flow]:
            sent = data_end.get(((row.dst, row.dport, row.src, row.sport), row.tcp_ack))
            if sent is not None and row.ts_ns - sent >= 20_000_000:
                out[row.frame] = row.ts_ns - sent
        last_ack[flow] = row.tcp_ack
    return out


def test_no_ack_number_is_no_delayed_ack() -> None:
    """A pure ACK whose ACK number was not read (a table from elsewhere: flags without the
    number) acknowledges nothing: it is not matched, through a packed key, with the data of
    another flow ending at sequence 2**32 - 1."""
    # flows numbered as they appear: 0 (data ending at 2**32 - 1), 1, and 2 (its reverse 1):
    # frame 4's key with ACK number -1 would be 1 * 2**32 - 1, flow 0's data end
    rows = [  # frame, src, sport, dst, dport, seq, ack, flags, len, ms
        (1, "10.0.0.1", 1000, "10.0.0.2", 80, 2**32 - 11, 1, 0x18, 10, 0),
        (2, "10.0.0.4", 80, "10.0.0.3", 2000, 1, 1, 0x10, 0, 1),
        (3, "10.0.0.3", 2000, "10.0.0.4", 80, 1, 5, 0x10, 0, 2),
        (4, "10.0.0.3", 2000, "10.0.0.4", 80, 1, None, 0x10, 0, 300),
    ]
    table = pd.DataFrame(rows, columns=["frame", "src", "sport", "dst", "dport", "tcp_seq",
                                        "tcp_ack", "tcp_flags", "payload_len", "ms"])
    table["tcp_ack"] = table["tcp_ack"].astype("Int64")
    table["ts_ns"] = table.pop("ms") * 1_000_000
    table["proto"], table["tcp_window"] = 6, 1000
    flags = tcp_analysis.analyze_tcp(table)
    assert not flags["delayed_ack"].any()


def test_facts_of_the_reader_arrays_are_those_of_the_table(tmp_path: Path,
                                                          corpus: Path) -> None:
    # analyze gives frame_facts the reader's arrays (PacketColumns), the tests above the
    # DataFrame: the same heads and flagged frames (the two captures have every flag: the
    # trouble capture the network's, zeek's bro.org page a capture hole)
    path = tmp_path / "trouble.pcap"
    write_capture(path)
    seen: set[str] = set()
    for capture in (path, corpus / "captures" / "zeek__http_bro.org.pcap"):
        table = packets.read_packets(capture, **lone.READ_OPTIONS)
        columns = packets.read_packet_columns(capture, **lone.READ_OPTIONS)
        want, got = lone.frame_facts(table), lone.frame_facts(columns)
        seen |= {flag for flag in tcp_analysis.EVENTS if want.tcp[flag].any()}
        pd.testing.assert_frame_equal(got.tcp, want.tcp, check_exact=True)
        pd.testing.assert_frame_equal(got.heads, want.heads, check_exact=True)
        assert got.heads.attrs["bytes"].tolist() == want.heads.attrs["bytes"].tolist()
        assert len(want.heads) > 0
    assert seen == set(tcp_analysis.EVENTS)


def test_a_failing_tcp_analysis_is_raised_by_frame_facts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the TCP analysis' error comes out of frame_facts, where the capture is read
    path = tmp_path / "trouble.pcap"
    write_capture(path)

    def broken(_: object) -> None:
        raise RuntimeError("flags")

    monkeypatch.setattr(tcp_analysis, "_flags", broken)
    with pytest.raises(RuntimeError, match="flags"):
        lone.frame_facts(packets.read_packet_columns(path, **lone.READ_OPTIONS))


@pytest.mark.parametrize("seed", range(30))
def test_order_by_is_lexsort(seed: int) -> None:
    # _order_by's three ways (two stable sorts below 2**16 majors, one combined key, lexsort
    # past int64) give np.lexsort's order, ties in row order
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    top = [8, 1 << 16, 1 << 20, 1 << 62][seed % 4]
    major = rng.integers(0, top, n) if seed % 3 else rng.integers(0, 5, n) * (top // 5)
    minor = rng.integers(-(1 << 40), 1 << 40, n) if seed % 2 else rng.integers(0, 9, n)
    assert np.array_equal(tcp_analysis._order_by(major, minor), np.lexsort((minor, major)))


@pytest.mark.parametrize("case", ["dropped", "reordered", "resent", "whole"])
def test_capture_holes_are_the_lost_segments_never_filled(tmp_path: Path, tshark: str,
                                                          case: str) -> None:
    """Four segments of a response, the third captured or not: dropped by the capture (a hole
    for good), captured after the fourth (reordered) or resent after it (a network loss): tshark
    flags the fourth as a lost segment in all three; only the first is a capture hole."""
    from scapy import all as scapy

    t, frames = [1_700_000_000.0], []

    def send(src: str, seq: int, ack: int, data: bytes, flags: str = "A") -> None:
        t[0] += 0.001
        sport, dport = (CPORT, SPORT) if src == CLIENT else (SPORT, CPORT)
        pkt = (scapy.Ether() / scapy.IP(src=src, dst=SERVER if src == CLIENT else CLIENT)
               / scapy.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / data)
        pkt.time = t[0]
        frames.append(pkt)

    send(CLIENT, 1000, 5000, b"GET / HTTP/1.1\r\n\r\n", "PA")
    parts = [(5000 + 100 * i, bytes([65 + i]) * 100) for i in range(4)]
    order = {"dropped": [0, 1, 3], "reordered": [0, 1, 3, 2], "resent": [0, 1, 3, 2],
             "whole": [0, 1, 2, 3]}[case]
    for i in order:
        seq, data = parts[i]
        if case == "resent" and i == 2:
            t[0] += 0.2  # the retransmission timeout
        send(SERVER, seq, 1018, data)
    path = tmp_path / f"{case}.pcap"
    scapy.wrpcap(str(path), frames)
    ours = tcp_analysis.analyze_tcp(packets.read_packets(path, tcp_window=True)).set_index(
        "frame")
    ref = tshark_flags(tshark, path)
    fourth = 1 + order.index(3) + 1  # its frame number
    expect_lost = case != "whole"
    assert bool(ref["lost_segment"].get(fourth, False)) == expect_lost  # tshark's reading
    assert bool(ours["lost_segment"].get(fourth, False)) == expect_lost
    assert ours["capture_hole"].sum() == (1 if case == "dropped" else 0)
    assert bool(ours["capture_hole"].get(fourth, False)) == (case == "dropped")


@pytest.mark.parametrize("dropped", [False, True])
def test_a_gap_ending_after_a_capture_hole_is_named_so(tmp_path: Path, dropped: bool) -> None:
    """30 request/response turns, one response 300 ms late: an anomaly either way. When the
    capture also missed that response's first segment (sent at 1 ms), the gap's cause is the
    capture hole (the measured 300 ms is only an upper bound), not left unexplained."""
    from scapy import all as scapy

    frames = []

    def send(src: str, t: float, seq: int, ack: int, data: bytes) -> None:
        sport, dport = (CPORT, 9999) if src == CLIENT else (9999, CPORT)
        pkt = (scapy.Ether() / scapy.IP(src=src, dst=SERVER if src == CLIENT else CLIENT)
               / scapy.TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=ack) / data)
        pkt.time = t
        frames.append(pkt)

    c, s, t0 = 1000, 5000, 1_700_000_000.0
    for i in range(30):
        t = t0 + 1.0 * i
        send(CLIENT, t, c, s, b"Q" * 100)
        c += 100
        late = i == 20
        first_at = t + (0.001 if (late and dropped) or not late else 0.300)
        if not (late and dropped):
            send(SERVER, first_at, s, c, b"R" * 1000)
        send(SERVER, t + (0.300 if late else 0.0011), s + 1000, c, b"S" * 1000)
        s += 2000
    path = tmp_path / "late.pcap"
    scapy.wrpcap(str(path), sorted(frames, key=lambda f: f.time))
    table = packets.read_packets(path, **lone.READ_OPTIONS)
    placed = match.assign_flows({"c": match.data_segments(table)}, {CLIENT})["c"]
    flows = lone.exchanges(placed, None, lone.frame_facts(table))
    assert len(flows) == 30
    late_row = flows.iloc[20]
    assert late_row["anomaly"] == "request_to_response"
    assert abs(late_row["request_to_response_us"] - 300_000) < 1_000
    assert late_row["cause"] == ("capture_hole" if dropped else "")
    assert (flows["cause"].drop(index=20) == "").all()
    if dropped:
        assert "upper bound" in late_row["cause_detail"]
        assert lone.capture_holes(flows).tolist() == [0] * 20 + [1] + [0] * 9
