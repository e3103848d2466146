"""Vectorized decoding: every link type, VLAN tags, IPv4 options and fragments, IPv6 extension
headers, TCP/UDP/ICMP, tunnels, short frames, compared field by field with live tshark; the
payload digest against an independent implementation of its definition."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.errors import XenlatWarning
from xentrace_cli.sources.decode import decode
from xentrace_cli.sources.packets import read_packets

CAPTURES = Path(__file__).resolve().parent / "data" / "captures"

FIELDS = ["frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
          "tcp.flags", "udp.length", "ip.id", "ip.proto", "ip.frag_offset",
          "ipv6.fraghdr.offset", "ipv6.fraghdr.ident", "ipv6.fraghdr.nxt", "icmp.type",
          "icmpv6.type", "ip.flags.mf", "ipv6.fraghdr.more"]
DECODED_FILES = ["ether-le-nsec.pcap", "ether-snaplen40.pcap"] + [
    f"linktype-{t}.pcap" for t in (113, 276, 101, 12, 14, 228, 229, 0, 108)]


def tshark_fields(tshark: str, path: Path) -> list[dict[str, str]]:
    """tshark's fields per frame, repeated values (tunnels) joined with ``|``; reassembly off,
    so that each fragment shows its own headers (the table has one row per fragment)."""
    cmd = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o",
           "ipv6.defragment:FALSE", "-T", "fields", "-E", "separator=;", "-E", "aggregator=|"]
    for field in FIELDS:
        cmd += ["-e", field]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [dict(zip(FIELDS, line.split(";"), strict=True)) for line in out.splitlines()]


def last(value: str) -> str:
    """The innermost of repeated values (tshark lists outer first)."""
    return value.split("|")[-1] if value else ""


def cell(value: object) -> str:
    return "" if pd.isna(value) else str(value)


def expected_row(t: dict[str, str]) -> dict[str, str]:
    """What the table must hold for a frame, derived from tshark's fields.

    Innermost header: the fixtures' only mix of IPv4 and IPv6 in one frame is 6in4, where IPv6
    is inside, so IPv6 fields win when both are present.
    """
    v6 = bool(t["ipv6.src"])
    src = last(t["ipv6.src"]) if v6 else last(t["ip.src"])
    dst = last(t["ipv6.dst"]) if v6 else last(t["ip.dst"])
    tcp = bool(t["tcp.srcport"])
    udp = bool(t["udp.srcport"])
    sport = last(t["tcp.srcport"]) if tcp else last(t["udp.srcport"])
    dport = last(t["tcp.dstport"]) if tcp else last(t["udp.dstport"])
    if v6:
        ip_id = str(int(t["ipv6.fraghdr.ident"], 16)) if t["ipv6.fraghdr.ident"] else ""
        frag = str(int(t["ipv6.fraghdr.offset"]) * 8) if t["ipv6.fraghdr.offset"] else "0"
    else:
        ip_id = str(int(last(t["ip.id"]), 16)) if t["ip.id"] else ""
        frag = str(int(last(t["ip.frag_offset"])) * 8) if t["ip.frag_offset"] else ""
    if not dst:  # no whole IP header (not IP, or cut by the snapshot length)
        frag = ""
    if tcp:
        proto = "6"
    elif udp:
        proto = "17"
    elif t["icmpv6.type"]:
        proto = "58"
    elif v6 and t["ipv6.fraghdr.nxt"]:
        proto = last(t["ipv6.fraghdr.nxt"])
    else:
        proto = last(t["ip.proto"])
    # UDP's own length covers the whole datagram; the table counts this fragment's bytes (by
    # the IP header), so fragments are compared on their other fields only
    fragmented = last(t["ip.flags.mf"]) in ("1", "True") or t["ipv6.fraghdr.more"] != "" \
        or frag not in ("", "0")
    payload = last(t["tcp.len"]) if tcp else (
        str(int(last(t["udp.length"])) - 8) if udp and t["udp.length"] and not fragmented
        else None)
    return {"src": src, "dst": dst, "sport": sport, "dport": dport, "proto": proto if dst
            else "", "ip_id": ip_id, "frag_offset": frag,
            "tcp_seq": last(t["tcp.seq_raw"]) if tcp else "",
            "tcp_ack": last(t["tcp.ack_raw"]) if tcp else "",
            "tcp_flags": str(int(last(t["tcp.flags"]), 16)) if tcp and t["tcp.flags"] else "",
            "payload_len": payload}


@pytest.mark.parametrize("name", DECODED_FILES)
def test_fields_match_tshark(name: str, tshark: str) -> None:
    table = read_packets(CAPTURES / name)
    ref = tshark_fields(tshark, CAPTURES / name)
    assert list(table["frame"]) == [int(t["frame.number"]) for t in ref]
    checked = 0
    for row, t in zip(table.to_dict("records"), ref, strict=True):
        want = expected_row(t)
        got = {k: cell(row[k]) for k in want}
        if want["payload_len"] is None:  # tshark shows no payload length (ICMP, fragments)
            del want["payload_len"], got["payload_len"]
        assert got == want, f"{name} frame {row['frame']}"
        checked += bool(want["src"])
    assert checked >= 5  # the comparison covered decoded frames, not just empty rows


def test_every_link_type_gives_the_same_ip_columns() -> None:
    columns = ["src", "dst", "proto", "sport", "dport", "ip_id", "tcp_seq", "payload_len",
               "payload_digest"]
    base = read_packets(CAPTURES / "linktype-101.pcap")[columns]
    for t in (113, 276, 12, 14, 0, 108):
        other = read_packets(CAPTURES / f"linktype-{t}.pcap")[columns]
        assert other.astype(str).equals(base.astype(str)), t
    ether = read_packets(CAPTURES / "ether-le-nsec.pcap")[columns].head(len(base))
    assert ether.astype(str).equals(base.astype(str))


def test_vlan_and_qinq_tags_are_stripped() -> None:
    table = read_packets(CAPTURES / "ether-le-nsec.pcap")
    tagged = table.tail(3)  # 802.1Q, 802.1ad + 802.1Q, ARP
    assert list(tagged["src"].astype(object)[:2]) == ["172.16.0.1", "172.16.0.1"]
    assert list(tagged["dport"][:2]) == [8080, 8080]
    assert tagged["ip_version"].tolist() == [4, 4, 0]
    assert pd.isna(tagged["src"].iloc[2])  # ARP: kept, without IP fields


def test_short_frame_keeps_what_was_captured() -> None:
    # snaplen 40 = Ethernet 14 + IPv4 20 + 6 bytes of TCP: ports (4 bytes) but no seq (8)
    row = read_packets(CAPTURES / "ether-snaplen40.pcap").iloc[0]
    assert (row["caplen"], row["wirelen"]) == (40, 154)
    assert (row["src"], row["sport"], row["dport"]) == ("10.0.0.1", 40000, 11211)
    assert row["tcp_seq"] is pd.NA and row["payload_len"] is pd.NA


def test_unknown_link_type_is_kept_and_counted() -> None:
    with pytest.warns(XenlatWarning, match=r"3 frames of link type 147 \(user0\) are not "
                      r"decoded"):
        table = read_packets(CAPTURES / "linktype-147.pcap")
    assert len(table) == 3 and (table["ip_version"] == 0).all() and table["src"].isna().all()


def test_ipv6_addresses_print_as_tshark_does() -> None:
    table = read_packets(CAPTURES / "linktype-229.pcap")
    # 2001:db8:0:0:1:0:0:1 -> the first of two equal zero runs is compressed (RFC 5952)
    assert table["src"].iloc[0] == "2001:db8::1:0:0:1"
    assert table["dst"].iloc[1] == "ff02::1:3"


def test_bigtcp_payload_length_from_the_frame(corpus: Path) -> None:
    path = corpus / "captures" / "tcpdump__bigtcp-ipv6.pcap"
    data = path.read_bytes()[24 + 16:]
    # hand parse: Ethernet 14, IPv6 40 with payload length 0 and next header TCP (Linux BIG
    # TCP: the kernel removed the hop-by-hop jumbo header before the capture saw the frame);
    # the frame's length is all there is: 80054 - 14 - 40 - TCP header (data offset, byte 12)
    assert data[12:14] == b"\x86\xdd" and data[14 + 4:14 + 6] == b"\0\0" and data[14 + 6] == 6
    tcp_header = (data[14 + 40 + 12] >> 4) * 4
    row = read_packets(path).iloc[0]
    assert row["payload_len"] == 80054 - 14 - 40 - tcp_header == 79968
    assert row["proto"] == 6 and row["sport"] == struct.unpack(">H", data[54:56])[0]
    assert row["tcp_seq"] == struct.unpack(">I", data[58:62])[0]


# ---- the payload digest -----------------------------------------------------------------------
MULTIPLIERS = [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
               0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
               0x94D049BB133111EB, 0xBF58476D1CE4E5B9]
MASK = (1 << 64) - 1


def reference_digest(payload: bytes) -> int:
    """The documented digest in plain Python: n + sum(word_k * M_k), splitmix64 finalizer."""
    head = payload[:64]
    h = len(head)
    for k in range(0, len(head), 8):
        h = (h + int.from_bytes(head[k:k + 8].ljust(8, b"\0"), "little")
             * MULTIPLIERS[k // 8]) & MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK
    return h ^ (h >> 31)


def _udp_frame(payload: bytes) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw

    return bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
                 / Raw(payload))


@pytest.mark.parametrize("size", [1, 7, 8, 9, 63, 64, 65, 1000])
def test_digest_matches_reference(size: int) -> None:
    payload = bytes((i * 37 + 11) % 256 for i in range(size))
    frames = [_udp_frame(payload), _udp_frame(b"\xff" * size)]
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    dec = decode(buf, offsets, lengths, lengths, np.array([1, 1], dtype=np.int32))
    assert dec.digest_ok.all()
    assert int(dec.payload_digest[0]) == reference_digest(payload)
    assert int(dec.payload_digest[1]) == reference_digest(b"\xff" * size)
    assert dec.payload_digest[0] != dec.payload_digest[1]


@pytest.mark.parametrize("sizes", [range(101), range(1, 64)], ids=["mixed", "all short"])
@pytest.mark.parametrize("rows", [True, False], ids=["row masks", "word masks"])
def test_digest_of_long_and_short_payloads_in_one_batch(
        sizes: range, rows: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # one batch of payloads of 0..100 bytes: those of 64 bytes and more are hashed by plain
    # gathers, the shorter ones word by word under masks, both against the plain definition;
    # and a batch of short payloads only (masked whole, no scatter), each both ways
    from xentrace_cli.sources import decode as decoding

    monkeypatch.setattr(decoding, "MASK_ROWS", rows)
    payloads = [bytes((i * 7 + size) % 256 for i in range(size)) for size in sizes]
    frames = [_udp_frame(p) for p in payloads]
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    dec = decode(buf, offsets, lengths, lengths, np.ones(len(frames), dtype=np.int32))
    assert dec.digest_ok.tolist() == [size > 0 for size in sizes]
    for k, payload in enumerate(payloads):
        if payload:
            assert int(dec.payload_digest[k]) == reference_digest(payload), len(payload)


def test_digest_ignores_bytes_after_the_payload() -> None:
    # the same UDP datagram followed by different Ethernet padding (frame longer than IP says)
    frame = _udp_frame(b"abc")
    frames = [frame + b"\0" * 20, frame + b"\x55" * 20]
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    dec = decode(buf, np.array([0, lengths[0]]), lengths, lengths,
                 np.array([1, 1], dtype=np.int32))
    assert dec.payload_len.tolist() == [3, 3]
    assert dec.payload_digest[0] == dec.payload_digest[1] == reference_digest(b"abc")


def test_ip_length_shorter_than_its_headers_gives_no_payload_length() -> None:
    from scapy.all import IP, TCP, Ether

    good = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2))
    bad = bytearray(good)
    bad[14 + 2:14 + 4] = struct.pack(">H", 30)  # total length 30 < 20 (IP) + 20 (TCP)
    frames = [good, bytes(bad)]
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    lengths = np.array([len(f) for f in frames])
    dec = decode(buf, np.array([0, len(good)]), lengths, lengths,
                 np.array([1, 1], dtype=np.int32))
    assert dec.payload_ok.tolist() == [True, False]
    assert dec.payload_len[0] == 0 and dec.sport.tolist() == [1, 1]  # ports still read


@pytest.mark.parametrize("width", [16, 5, 8, 24, 64, 70])
def test_payload_head_is_the_payload_bytes_zero_padded(width: int) -> None:
    # payloads of 0..40 bytes, the padding after the IP datagram not taken, and frames cut by
    # the snapshot length inside the payload: each head against the bytes sliced by hand
    payloads = [bytes((i * 11 + size) % 251 + 1 for i in range(size)) for size in range(41)]
    frames = [_udp_frame(p) + b"\x55" * 7 for p in payloads]
    caplen = np.array([len(f) - 7 for f in frames])
    cut = np.arange(len(frames)) % 3 == 2  # every third frame keeps 3 payload bytes at most
    caplen[cut] = np.minimum(caplen[cut], 14 + 20 + 8 + 3)
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])[:-1]])
    dec = decode(buf, offsets, caplen, caplen, np.ones(len(frames), dtype=np.int32),
                 payload_head=width)
    assert dec.payload_head is not None and dec.head_len is not None
    assert dec.payload_head.shape == (len(frames), width)
    for k, payload in enumerate(payloads):
        seen = payload[:3] if cut[k] else payload
        want = seen[:width]
        assert dec.head_len[k] == len(want), k
        assert bytes(dec.payload_head[k]) == want + bytes(width - len(want)), k


def _random_ipv4_frames(rng: np.random.Generator, n: int, options: str, short: bool
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n Ethernet/IPv4 frames of random bytes under a plausible IPv4 header (TCP, UDP, ICMP,
    IP-in-IP, GRE or another protocol; fragments; TCP data offsets of 0-15 words; IHLs of
    5 words, with ``options`` "valid" 5-15, "any" 3-15; with ``short`` frames cut anywhere
    after the Ethernet header): (bytes, offsets, captured lengths)."""
    frames, caplen = [], []
    for _ in range(n):
        ihl = int(rng.choice({"none": [5], "valid": [5, 5, 5, 6, 8, 15],
                              "any": [5, 5, 5, 6, 8, 15, 3]}[options]))
        length = int(rng.integers(14 + 4 * ihl, 14 + 4 * ihl + 120))
        frame = bytearray(rng.integers(0, 256, length, dtype=np.uint8).tobytes())
        frame[12:14] = b"\x08\x00"
        frame[14] = 0x40 | ihl
        total = length - 14 if rng.random() < 0.8 else int(rng.integers(0, 200))
        frame[16:18] = struct.pack(">H", total)
        if rng.random() < 0.7:
            frame[20:22] = b"\x00\x00"  # not a fragment
        frame[23] = int(rng.choice([6, 6, 17, 1, 4, 47, 99]))
        frames.append(bytes(frame))
        caplen.append(int(rng.integers(15, length + 1)) if short and rng.random() < 0.3
                      else length)
    lengths = np.array([len(f) for f in frames])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.frombuffer(b"".join(frames), dtype=np.uint8), offsets, np.array(caplen)


@pytest.mark.parametrize("options", ["none", "valid", "any"])
@pytest.mark.parametrize("short", [False, True])
def test_ipv4_batches_decode_as_with_other_frames_among_them(options: str, short: bool
                                                             ) -> None:
    """A batch of IPv4 frames only gathers each IP header with the 20 bytes after it (the
    transport header where no frame has IP options) in one go: its columns equal those of
    the same frames decoded with an IPv6 frame after them (the general path, a gather per
    header), on random headers and payloads, IP options, fragments, cut frames."""
    from scapy.all import UDP, Ether, IPv6

    rng = np.random.default_rng(11 + 2 * len(options) + short)
    for _ in range(5):
        buf, offsets, caplen = _random_ipv4_frames(rng, 300, options, short)
        v6 = np.frombuffer(bytes(Ether() / IPv6() / UDP(sport=1, dport=2) / b"abc"), np.uint8)
        mixed = np.concatenate([buf, v6])
        n = len(offsets)
        alone = decode(buf, offsets, caplen, caplen, np.ones(n, dtype=np.int32),
                       payload_head=8, tcp_window=True)
        among = decode(mixed, np.append(offsets, len(buf)), np.append(caplen, len(v6)),
                       np.append(caplen, len(v6)), np.ones(n + 1, dtype=np.int32),
                       payload_head=8, tcp_window=True)
        assert among.ip_version[-1] == 6
        for name, value in vars(alone).items():
            if isinstance(value, np.ndarray):
                other = getattr(among, name)
                assert value.dtype == other.dtype, name
                assert np.array_equal(value, other[:n]), name


@pytest.mark.parametrize("width", [1, 8, 16, 21, 64])
def test_payload_head_from_the_digest_words_is_the_gathered_head(
        width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The head taken from the digest's masked words equals the head gathered word by word
    (``HEAD_FROM_DIGEST`` off): random IPv4 frames with options, fragments, other protocols,
    cut anywhere, and a batch where no frame has payload."""
    from xentrace_cli.sources import decode as decoding

    rng = np.random.default_rng(width)
    for short in (False, True):
        buf, offsets, caplen = _random_ipv4_frames(rng, 400, "any", short)
        links = np.ones(len(offsets), dtype=np.int32)
        for cap in (caplen, np.full(len(offsets), 15)):  # 15 bytes: no payload anywhere
            monkeypatch.setattr(decoding, "HEAD_FROM_DIGEST", True)
            taken = decode(buf, offsets, cap, cap, links, payload_head=width)
            monkeypatch.setattr(decoding, "HEAD_FROM_DIGEST", False)
            gathered = decode(buf, offsets, cap, cap, links, payload_head=width)
            assert taken.payload_head is not None and gathered.payload_head is not None
            assert taken.payload_head.shape == gathered.payload_head.shape == (len(cap), width)
            np.testing.assert_array_equal(taken.payload_head, gathered.payload_head)
            np.testing.assert_array_equal(taken.head_len, gathered.head_len)
            assert taken.payload_head.flags.c_contiguous
    # every frame with payload (the digest's words are every row's: taken whole)
    frames = [_udp_frame(bytes(rng.integers(0, 256, size, dtype=np.uint8))) for size in
              range(1, 90)]
    lengths = np.array([len(f) for f in frames])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    buf = np.frombuffer(b"".join(frames), dtype=np.uint8)
    links = np.ones(len(frames), dtype=np.int32)
    heads = []
    for flag in (True, False):
        monkeypatch.setattr(decoding, "HEAD_FROM_DIGEST", flag)
        dec = decode(buf, offsets, lengths, lengths, links, payload_head=width)
        assert dec.digest_ok.all()
        heads.append((dec.payload_head, dec.head_len))
    np.testing.assert_array_equal(heads[0][0], heads[1][0])
    np.testing.assert_array_equal(heads[0][1], heads[1][1])
