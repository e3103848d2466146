"""The lone-capture view (xentrace_cli.lone): exchanges, gaps, retransmissions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli import lone, match, packets

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
