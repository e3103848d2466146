"""The lone-capture view (xentrace_cli.pipeline.lone): exchanges, gaps, retransmissions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import lone, match
from xentrace_cli.sources import packets

GUEST, SERVER = "10.0.0.2", "10.0.0.1"
MS = 1_000_000


def conversation(n: int = 40, black: int = 17, retransmit: int | None = None) -> list[tuple]:
    """Guest (client) sends a 30-byte request every exchange; the server answers 200 bytes
    after 200 µs; the guest's next request follows 1 ms after each response — except after
    response ``black``, where it follows 100 ms later. Rows: (ts_ns, src, dst, seq, len)."""
    rows, t = [], 1_700_000_000 * 10**9
    cseq, sseq = 1000, 50_000
    for k in range(n):
        rows.append((t, GUEST, SERVER, cseq, 30))
        cseq += 30
        t += 200_000
        rows.append((t, SERVER, GUEST, sseq, 200))
        if k == retransmit:
            rows.append((t + 300_000, SERVER, GUEST, sseq, 200))
            t += 300_000
        sseq += 200
        t += 100 * MS if k == black else 1 * MS
    return rows


def segments(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame({
        "frame": np.arange(1, len(rows) + 1), "ts_ns": [r[0] for r in rows], "ip_version": 4,
        "src": [r[1] for r in rows], "dst": [r[2] for r in rows], "proto": 6,
        "sport": [40000 if r[1] == GUEST else 11211 for r in rows],
        "dport": [11211 if r[1] == GUEST else 40000 for r in rows],
        "tcp_seq": [r[3] for r in rows], "tcp_flags": 0x18, "payload_len": [r[4] for r in rows],
        "ip_id": 0, "payload_digest": 1})
    return match.assign_flows({"g": match.data_segments(frame)}, {GUEST})["g"]


def test_exchanges_and_the_black_tenth_of_a_second() -> None:
    flows = lone.exchanges(segments(conversation()))
    assert len(flows) == 40
    assert (flows["src"] == GUEST).all() and (flows["dport"] == 11211).all()
    assert np.allclose(flows["request_to_response_us"], 200.0)
    client = flows["response_to_next_us"].to_numpy()
    assert np.isnan(client[-1])  # the last response has no next request
    assert client[17] == pytest.approx(100_000.0)
    assert np.allclose(np.delete(client, [17, 39]), 1000.0)
    assert flows["anomaly"].tolist() == ["response_to_next" if k == 17 else ""
                                         for k in range(40)]
    assert flows.loc[17, "stall"] == "≈100 ms"
    assert (flows["request_bytes"] == 30).all() and (flows["response_bytes"] == 200).all()
    text = " ".join(lone.notes(flows))
    assert "40 exchanges" in text and "≈100 ms" in text and "100.0 ms later" in text


def test_retransmission_counted_in_its_exchange() -> None:
    segs = segments(conversation(black=-1, retransmit=5))
    flows = lone.exchanges(segs)
    assert flows["retransmissions"].tolist() == [1 if k == 5 else 0 for k in range(40)]
    assert flows.loc[5, "response_bytes"] == 200  # the message's bytes: a resend counts once
    assert (flows["anomaly"] == "").all()
    # the caller's first transmissions (analyze has them already) give the same exchanges
    pd.testing.assert_frame_equal(lone.exchanges(segs, match.first_transmissions(segs)), flows)


def test_empty_capture() -> None:
    assert len(lone.exchanges(segments([]))) == 0


def test_lone_view_from_a_scapy_capture(tmp_path: Path) -> None:
    from scapy import all as scapy

    frames = []
    for ts, src, dst, seq, length in conversation(n=12, black=4):
        sport, dport = (40000, 11211) if src == GUEST else (11211, 40000)
        pkt = (scapy.Ether() / scapy.IP(src=src, dst=dst)
               / scapy.TCP(sport=sport, dport=dport, seq=seq, flags="PA") / (b"x" * length))
        pkt.time = ts / 1e9
        frames.append(pkt)
    path = tmp_path / "guest.pcap"
    scapy.wrpcap(str(path), frames)
    table = packets.read_packets(path)
    segs = match.assign_flows({"g": match.data_segments(table)}, {GUEST})["g"]
    flows = lone.exchanges(segs)
    assert len(flows) == 12
    assert flows.loc[4, "anomaly"] == "response_to_next"
    assert flows.loc[4, "response_to_next_us"] == pytest.approx(100_000.0, abs=2)


def _capture(tmp_path: Path, packets_: list[tuple], name: str = "c.pcap") -> pd.DataFrame:
    """(time s, src, sport, dst, dport, proto, seq, payload) rows → the segments of a pcap."""
    from scapy import all as scapy

    frames = []
    for t, src, sport, dst, dport, proto, seq, data in packets_:
        l4 = (scapy.TCP(sport=sport, dport=dport, seq=seq, flags="PA") if proto == "tcp"
              else scapy.UDP(sport=sport, dport=dport))
        pkt = scapy.Ether() / scapy.IP(src=src, dst=dst) / l4 / data
        pkt.time = t
        frames.append(pkt)
    path = tmp_path / name
    scapy.wrpcap(str(path), frames)
    table = packets.read_packets(path, **lone.READ_OPTIONS)
    segs = match.data_segments(table)
    return match.assign_flows({"g": segs}, {GUEST})["g"], lone.frame_facts(table)


def test_pipelined_http_requests_pair_in_order(tmp_path: Path) -> None:
    """Three GETs sent back to back, then three responses (the last in two segments, its
    second starting with bytes that look like a response header — with no request left
    unanswered, it cannot be one): in order, one exchange each."""
    t0 = 1_700_000_000.0
    c = (GUEST, 40000, SERVER, 80, "tcp")
    s = (SERVER, 80, GUEST, 40000, "tcp")
    rows, cseq, sseq = [], 1, 1
    for k, t in enumerate((0.000, 0.001, 0.002)):
        req = b"GET /%d HTTP/1.1\r\n\r\n" % k
        rows.append((t0 + t, *c, cseq, req))
        cseq += len(req)
    for t, data in ((0.010, b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n" + b"x" * 30),
                    (0.020, b"HTTP/1.1 404 Not Found\r\n\r\n"),
                    (0.030, b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"y" * 10),
                    (0.031, b"HTTP/1.1 body bytes that only look like a header" + b"z" * 6)):
        rows.append((t0 + t, *s, sseq, data))
        sseq += len(data)
    segs, facts = _capture(tmp_path, rows)
    flows = lone.exchanges(segs, None, facts)
    assert flows["rule"].tolist() == ["http"] * 3
    assert flows["request_frame"].tolist() == [1, 2, 3]
    assert flows["response_frame"].tolist() == [4, 5, 6]
    # the body segment that looked like a header stays in response 3 (no 4th request)
    assert flows["response_end_frame"].tolist() == [4, 5, 7]
    assert flows["request_to_response_us"].round(3).tolist() == [10_000.0, 19_000.0, 28_000.0]
    assert flows["response_to_next_us"].isna().all()  # pipelined: nobody waited


def test_dns_pairs_by_id_and_never_across_ports(tmp_path: Path) -> None:
    """Two queries on one 5-tuple answered out of order, and a third on another port whose
    answer comes first: each response pairs with its own query (by id, in its conversation)."""
    from scapy import all as scapy

    def query(qid: int, name: str) -> bytes:
        return bytes(scapy.DNS(id=qid, rd=1, qd=scapy.DNSQR(qname=name)))

    def answer(qid: int, name: str) -> bytes:
        return bytes(scapy.DNS(id=qid, qr=1, qd=scapy.DNSQR(qname=name),
                               an=scapy.DNSRR(rrname=name, rdata="10.9.9.9")))

    t0 = 1_700_000_000.0
    a = (GUEST, 5353, SERVER, 53, "udp")
    b = (GUEST, 6000, SERVER, 53, "udp")
    ra = (SERVER, 53, GUEST, 5353, "udp")
    rb = (SERVER, 53, GUEST, 6000, "udp")
    rows = [(t0, *a, 0, query(7, "a.example")), (t0 + 0.001, *a, 0, query(9, "b.example")),
            (t0 + 0.002, *b, 0, query(7, "c.example")), (t0 + 0.003, *rb, 0, answer(7, "c")),
            (t0 + 0.005, *ra, 0, answer(9, "b")), (t0 + 0.008, *ra, 0, answer(7, "a"))]
    segs, facts = _capture(tmp_path, rows)
    flows = lone.exchanges(segs, None, facts).sort_values("request_frame")
    assert flows["rule"].tolist() == ["dns"] * 3
    assert flows["request_frame"].tolist() == [1, 2, 3]
    assert flows["response_frame"].tolist() == [6, 5, 4]
    assert flows["request_to_response_us"].round(3).tolist() == [8_000.0, 4_000.0, 1_000.0]


def test_one_capture_and_all_sources_agree_on_the_stalled_exchanges() -> None:
    """The black-0.1s sample: six injected stalls (scenario.json). One capture alone flags a
    long response → next gap on each of the four connections the client serves in turn, and
    groups them: six stalls, each on the exchange whose response the client had just got —
    the same exchanges whose rows carry the all-sources run's stage anomalies."""
    import json

    from xentrace_cli.pipeline.analyze import analyze_files

    root = Path(__file__).resolve().parent.parent / "sample_pcaps" / "black-0.1s"
    faults = json.loads((root / "scenario.json").read_text())["faults"]
    alone = analyze_files(root / "guest.pcapng").flows
    every = analyze_files(root / "guest.pcapng", backend=root / "vif5.0.pcap",
                          phys=root / "phys.pcap", xentrace=root / "xentrace.bin",
                          socket_log=root / "app.strace").flows
    key = ["conversation", "request_frame"]
    one = set(map(tuple, alone.loc[alone["stalled"], key].to_numpy().tolist()))
    staged = set(map(tuple, every.loc[every["stage_anomaly"] != "", key].to_numpy().tolist()))
    assert len(one) == len(faults) == 6
    assert one == staged
    assert alone["stall_id"].max() + 1 == 6
    # and each is the fault's: its response began within 1 ms of the injected stall (the
    # all-sources run's times are dom0's, the clock of scenario.json)
    starts = np.sort([f["start_ns"] / 1e9 for f in faults])
    began = np.sort(every.loc[every["stalled"], "t_response"].to_numpy())
    assert np.abs(began - starts).max() < 1e-3


def test_notes_count_one_of_a_kind_in_the_singular() -> None:
    """One exchange, one retransmitted segment: the notes say "1 exchange", not "1 exchanges"
    (a conversation of two exchanges, the second's response sent twice)."""
    flows = lone.exchanges(segments(conversation(n=2, black=99, retransmit=1)))
    (note,) = [n for n in lone.notes(flows) if "request → response" in n]
    assert ": 2 exchanges," in note and "1 retransmitted segment." in note
    single = lone.exchanges(segments(conversation(n=1, black=99)))
    (note,) = [n for n in lone.notes(single) if "request → response" in n]
    assert ": 1 exchange," in note and "0 retransmitted segments." in note


def test_capture_holes_are_the_exchanges_tshark_finds_lost_segments_in(
        corpus: Path, tshark: str) -> None:
    """A capture that missed frames (zeek's bro.org page: 7,240 bytes of one response never
    captured): the exchange spanning the hole is the request tshark's stream holds last
    before tshark's ``tcp.analysis.lost_segment`` frame, and the report says so."""
    import subprocess

    from xentrace_cli.pipeline.analyze import analyze_files

    path = corpus / "captures" / "zeek__http_bro.org.pcap"

    def fields(display_filter: str) -> list[tuple[int, int]]:
        out = subprocess.run([tshark, "-n", "-r", str(path), "-Y", display_filter, "-T",
                              "fields", "-e", "frame.number", "-e", "tcp.stream"],
                             capture_output=True, text=True, check=True).stdout
        return [(int(a), int(b)) for a, b in (line.split("\t") for line in out.splitlines())]

    lost = fields("tcp.analysis.lost_segment")
    requests = fields("http.request")
    assert lost  # the capture does miss frames
    expected = sorted(max(f for f, s in requests if s == stream and f < frame)
                      for frame, stream in lost)
    analysis = analyze_files(path)
    holes = lone.capture_holes(analysis.flows)
    hit = np.flatnonzero(holes)
    assert sorted(analysis.flows["request_frame"].to_numpy()[hit].tolist()) == expected
    assert int(holes.sum()) == len(lost)
    note = next(n for n in analysis.notes if "lacks bytes" in n)
    assert f"requested at frame {expected[0]}," in note
    with pytest.raises(ValueError, match="as made"):  # a slice keeps attrs: not its own
        lone.capture_holes(analysis.flows.iloc[:3])


def test_capture_holes_counted_per_exchange_of_their_conversation() -> None:
    # two conversations; lost frames at 15 (conversation A, exchange from frame 10), 16 and
    # 40 (B: exchanges from 12 and 30), 5 (A, before any exchange: none)
    a, b = ("10.0.0.1", 1000, "10.0.0.2", 80, 6), ("10.0.0.1", 1001, "10.0.0.2", 80, 6)
    flows = pd.DataFrame([(*a, 10), (*b, 12), (*a, 20), (*b, 30)],
                         columns=[*match.FLOW_COLUMNS, "request_frame"])
    key = lone.tcp_analysis.conversation_key
    tcp = pd.DataFrame({"frame": [5, 15, 16, 40], "capture_hole": [True, True, True, True],
                        "conversation_key": key(*(np.array(v, dtype=object) for v in zip(
                            a[:4], a[:4], b[:4], b[:4], strict=True)))})
    facts = lone.FrameFacts(heads=pd.DataFrame(), tcp=tcp)
    # by hand: A's exchange at 10 holds frame 15; B's at 12 holds 16, B's at 30 holds 40
    assert lone._capture_holes(flows, facts).tolist() == [1, 1, 0, 1]
    tcp["capture_hole"] = False
    assert lone._capture_holes(flows, facts).tolist() == [0, 0, 0, 0]
