"""Exchanges per conversation on real captures, checked against tshark's own timing.

Ground truth: tshark (``http.time``, ``dns.time``, ``tcp.stream``/``udp.stream``, the
memcache dissector's opaque field, frame times) on the shared corpus and on real traffic
recorded on loopback against redis-server and memcached (``tests/data/lone/README.md``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.pipeline import lone, match
from xentrace_cli.sources import packets

LOOPBACK = Path(__file__).resolve().parent / "data" / "lone"
#: Corpus captures holding TCP or UDP request/response exchanges.
CORPUS_EXCHANGES = (
    "zeek__http_bro.org.pcap", "pcapplusplus__four_ipv6_http_streams.pcap",
    "pcapplusplus__raw_ip.pcap", "rusticata__wireshark_samples-test.pcapng",
    "pcapplusplus__many_interfaces-1.pcapng", "pcapplusplus__nanosecs_big_endian.pcap",
    "tcpdump__pptp.pcap", "zeek__smb_dssetup_standalone_workstation.cap",
)
#: µs: how close our gaps must be to tshark's.
TOLERANCE_US = 2.0


def flows_of(path: Path) -> pd.DataFrame:
    """The lone view of one capture, as analyze computes it."""
    table = packets.read_packets(path, **lone.READ_OPTIONS)
    segments = match.data_segments(table)
    placed = match.assign_flows({"c": segments}, match.local_addresses(segments))["c"]
    return lone.exchanges(placed, None, lone.frame_facts(table))


def tshark_fields(tshark: str, path: Path, display_filter: str, *fields: str,
                  options: tuple[str, ...] = ()) -> pd.DataFrame:
    cmd = [tshark, "-n", "-r", str(path), *options, "-Y", display_filter, "-T", "fields",
           *[a for f in fields for a in ("-e", f)]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return pd.DataFrame(rows, columns=list(fields))


def streams(tshark: str, path: Path) -> pd.DataFrame:
    """Per TCP/UDP frame: tshark's stream, source port, payload length and time."""
    ref = tshark_fields(tshark, path, "tcp or udp", "frame.number", "frame.time_epoch",
                        "tcp.stream", "udp.stream", "tcp.srcport", "udp.srcport", "tcp.len",
                        "udp.length")
    return pd.DataFrame({
        "frame": ref["frame.number"].astype(int),
        "t": ref["frame.time_epoch"].astype(float),
        "stream": np.where(ref["tcp.stream"] != "", "tcp" + ref["tcp.stream"],
                           "udp" + ref["udp.stream"]),
        "sport": np.where(ref["tcp.srcport"] != "", ref["tcp.srcport"], ref["udp.srcport"])
        .astype(int),
        "payload": np.where(ref["tcp.len"] != "", ref["tcp.len"], "1").astype(int),
    }).set_index("frame")


def check_against_tshark(tshark: str, path: Path, flows: pd.DataFrame) -> int:
    """Assert the exchanges agree with tshark; returns how many tshark timed itself."""
    frames = streams(tshark, path)
    # no exchange spans two streams
    for column in ("response_frame", "response_end_frame"):
        same = frames.loc[flows["request_frame"], "stream"].to_numpy() \
            == frames.loc[flows[column], "stream"].to_numpy()
        assert same.all(), flows.loc[~same, ["request_frame", column]]
    timed = pd.Series(np.nan, index=flows.index)
    http = tshark_fields(tshark, path, "http.response", "frame.number", "http.time",
                         options=("-o", "http.desegment_body:FALSE"))
    dns = tshark_fields(tshark, path, "dns.flags.response == 1 && dns.time", "frame.number",
                        "dns.time")
    for ref, column in ((http, "http.time"), (dns, "dns.time")):
        ref = ref[ref[column] != ""]
        where = pd.Index(flows["response_frame"]).get_indexer(ref["frame.number"].astype(int))
        # every response tshark timed is an exchange of ours, with the same time
        assert (where >= 0).all(), ref[where < 0]
        timed.iloc[where] = ref[column].astype(float).to_numpy() * 1e6
    ours = flows["request_to_response_us"]
    assert np.allclose(ours[timed.notna()], timed[timed.notna()], atol=TOLERANCE_US, rtol=0)
    # the others: the response is the server's first data of the stream after the request,
    # its gap from the client's last data before it
    for i in np.flatnonzero(timed.isna().to_numpy()):
        row = flows.iloc[i]
        stream = frames[frames["stream"] == frames.at[row["request_frame"], "stream"]]
        data = stream[stream["payload"] > 0]
        server = data[(data["sport"] == row["dport"]) & (data.index > row["request_frame"])]
        assert server.index[0] == row["response_frame"], (path.name, row)
        client = data[(data["sport"] == row["sport"]) & (data.index < server.index[0])]
        gap_us = (server["t"].iloc[0] - client["t"].iloc[-1]) * 1e6
        assert row["request_to_response_us"] == pytest.approx(gap_us, abs=TOLERANCE_US)
    return int(timed.notna().sum())


@pytest.mark.parametrize("name", CORPUS_EXCHANGES)
def test_corpus_exchanges_match_tshark(corpus: Path, tshark: str, name: str) -> None:
    path = corpus / "captures" / name
    flows = flows_of(path)
    assert len(flows) > 0
    check_against_tshark(tshark, path, flows)


def test_corpus_http_and_dns_timed_by_tshark(corpus: Path, tshark: str) -> None:
    """The HTTP and DNS captures: tshark times (nearly) every exchange itself."""
    captures = corpus / "captures"
    zeek = flows_of(captures / "zeek__http_bro.org.pcap")
    assert check_against_tshark(tshark, captures / "zeek__http_bro.org.pcap", zeek) == 28
    assert set(zeek["rule"]) == {"http"}
    samples = flows_of(captures / "rusticata__wireshark_samples-test.pcapng")
    assert check_against_tshark(tshark, captures / "rusticata__wireshark_samples-test.pcapng",
                                samples) == 27
    assert (samples["rule"] == "dns").sum() >= 27


@pytest.mark.parametrize("name", ["redis-keepalive-think.pcap", "redis-rpc-stall.pcap",
                                  "memcached-text.pcap", "memcached-binary.pcap"])
def test_loopback_exchanges_match_tshark(tshark: str, name: str) -> None:
    flows = flows_of(LOOPBACK / name)
    check_against_tshark(tshark, LOOPBACK / name, flows)
    expected = {"redis": 1, "memcached": 1, "memcached-binary": 1}
    assert lone.rules(flows) == {name.split("-")[0] if "binary" not in name
                                 else "memcached-binary": 1}
    assert set(lone.rules(flows)) <= set(expected)


def test_keep_alive_client_with_think_times_is_idle_not_late() -> None:
    """12 × (SET, GET) then 0.6–2.5 s of think time: every think time is idle, none is an
    anomaly, and the tight SET → GET gaps stay the client's delay."""
    flows = flows_of(LOOPBACK / "redis-keepalive-think.pcap")
    assert len(flows) == 24
    assert (flows["anomaly"] == "").all() and not flows["stalled"].any()
    idle = flows["idle_us"].to_numpy()
    assert np.isfinite(idle).sum() == 11  # after each GET but the last
    assert np.nanmin(idle) >= 600_000
    assert np.isfinite(idle[1:-1:2]).all()  # the GETs' responses end each burst
    tight = flows["response_to_next_us"].to_numpy()[0::2]
    assert np.isfinite(tight).all() and tight.max() < 20_000
    assert "idle gaps" in " ".join(lone.notes(flows))


def test_tight_rpc_loop_stall_is_flagged(tshark: str) -> None:
    """SET, then 200 INCRs back to back; after INCR #120's reply the client slept 100 ms."""
    path = LOOPBACK / "redis-rpc-stall.pcap"
    flows = flows_of(path)
    assert len(flows) == 201
    stalled = flows.index[flows["anomaly"] == "response_to_next"].tolist()
    assert stalled == [121]  # exchange 0 is the SET
    row = flows.loc[121]
    assert row["stall"] == "≈100 ms" and row["stalled"]
    assert flows["stalled"].sum() == (flows["anomaly"] != "").sum()
    # tshark's frame times: the reply's last frame → the next request's first
    times = tshark_fields(tshark, path, "tcp.len > 0", "frame.number", "frame.time_epoch")
    t = pd.Series(times["frame.time_epoch"].astype(float).to_numpy(),
                  index=times["frame.number"].astype(int))
    next_request = flows.loc[122, "request_frame"]
    gap_us = (t[next_request] - t[row["response_end_frame"]]) * 1e6
    assert row["response_to_next_us"] == pytest.approx(gap_us, abs=TOLERANCE_US)
    assert 100_000 <= gap_us < 110_000
    # anything else flagged is a server hiccup of a busy machine, far below the stall
    others = flows.drop(index=121)
    assert (others.loc[others["anomaly"] != "", "request_to_response_us"] < 5_000).all()


def test_memcached_binary_pairs_by_opaque(tshark: str) -> None:
    """Each request is answered by the response carrying its opaque (tshark's dissector)."""
    path = LOOPBACK / "memcached-binary.pcap"
    flows = flows_of(path)
    ref = tshark_fields(tshark, path, "memcache", "frame.number", "memcache.opaque",
                        options=("-d", "tcp.port==11299,memcache"))
    opaque = pd.Series(ref["memcache.opaque"].astype(int).to_numpy(),
                       index=ref["frame.number"].astype(int))
    assert len(flows) == 60
    assert (opaque[flows["request_frame"]].to_numpy()
            == opaque[flows["response_frame"]].to_numpy()).all()
    assert sorted(opaque[flows["request_frame"]]) == sorted(
        [1000 + k for k in range(30)] + [5000 + k for k in range(30)])


@pytest.mark.parametrize("name", [*CORPUS_EXCHANGES, "LOOPBACK:redis-rpc-stall.pcap"])
def test_every_stall_sits_on_one_exchange_of_its_own(name: str) -> None:
    """A stall counts once: exactly one stalled exchange per stall id, itself one of the
    stall's exchanges; a stall of the far side's gaps only sits on the exchange that waited
    longest for its response (two such stalls on the zeek capture, 6.4 s apart)."""
    path = LOOPBACK / name.split(":")[1] if name.startswith("LOOPBACK:") else \
        Path(__file__).resolve().parent / "data" / "corpus" / "captures" / name
    flows = flows_of(path)
    stalls = flows[flows["stall_id"] >= 0]
    per_stall = stalls.groupby("stall_id")["stalled"].sum()
    assert (per_stall == 1).all(), per_stall[per_stall != 1]
    for _, members in stalls.groupby("stall_id"):
        gaps = members[members["anomaly"] != ""]
        if (gaps["anomaly"] == "request_to_response").all():
            longest = gaps["request_to_response_us"].idxmax()
            assert members.loc[longest, "stalled"]


def test_protocol_marks_compare_tokens_as_bytes_do() -> None:
    """``protocols._starts_with`` (tokens of up to 8 bytes as one masked integer, longer ones
    byte by byte) against ``bytes.startswith`` per row, by hand: random heads with every
    request and reply token written at a random place, some cut short or not captured."""
    from xentrace_cli.pipeline.conversations import protocols

    rng = np.random.default_rng(7)
    token_sets = (protocols._HTTP_METHODS, protocols._HTTP_RESPONSE,
                  protocols._MEMCACHED_COMMANDS, protocols._MEMCACHED_REPLIES)
    every = [t for tokens in token_sets for t in tokens]
    n = 4000
    head = rng.integers(0, 256, (n, protocols.HEAD_BYTES), dtype=np.uint8)
    for i in range(n):
        token = every[rng.integers(len(every))]
        at = int(rng.integers(0, 3))
        keep = min(len(token), protocols.HEAD_BYTES - at) - int(rng.integers(0, 2))
        head[i, at:at + keep] = np.frombuffer(token[:keep], dtype=np.uint8)
    length = rng.integers(0, protocols.HEAD_BYTES + 1, n)
    for tokens in token_sets:
        for at in (0, 2, 9, protocols.HEAD_BYTES - 1, protocols.HEAD_BYTES):
            expected = [any(bytes(row[:size]).startswith(token, at) for token in tokens)
                        for row, size in zip(head, length, strict=True)]
            got = protocols._starts_with(head, length, tokens, at)
            assert got.tolist() == expected, (tokens[0], at)
            if at == 0:
                assert 0 < got.sum() < n  # both outcomes occur


def test_kinds_numbered_as_pandas_numbers_their_tuples() -> None:
    """``codes.first_seen_codes``: the distinct (dst, dport, proto) in order of first
    appearance, a missing value a value of its own, as ``pd.MultiIndex.factorize`` numbers
    them (the reference), on random columns with missing values."""
    from xentrace_cli.pipeline.conversations import codes

    rng = np.random.default_rng(3)
    n = 5000
    dst = pd.Series(rng.choice(["10.0.0.1", "10.0.0.2", "fe80::1", None], n), dtype="str")
    dport = pd.array(rng.choice([53, 80, 11211], n), dtype="UInt16")
    dport[rng.random(n) < 0.05] = pd.NA
    proto = pd.array(rng.choice([6, 17], n), dtype="UInt8")
    reference = pd.MultiIndex.from_arrays([dst.astype(str), dport, proto]).factorize()[0]
    got = codes.first_seen_codes(dst.astype(str), dport, proto)
    assert got.tolist() == reference.tolist()
    assert got.max() > 10  # many kinds, missing ones among them
    assert codes.first_seen_codes(dst[:0], dport[:0], proto[:0]).size == 0


def test_conversation_key_is_made_per_connection_as_per_row() -> None:
    """``tcp_analysis.conversation_key`` (made once per distinct endpoint pair) gives each
    row what the per-row formula gives (the reference here): ``ip|port~ip|port``, the
    smaller endpoint text first, the same for both directions; and ``codes.first_rows``
    finds where each code first appears, by hand."""
    from xentrace_cli.pipeline.conversations import codes, tcp_analysis

    rng = np.random.default_rng(11)
    n = 3000
    src = rng.choice(np.array(["10.0.0.1", "10.0.0.5", "fe80::2"], dtype=object), n)
    dst = rng.choice(np.array(["10.0.0.1", "10.0.0.5", "10.0.0.10"], dtype=object), n)
    sport, dport = rng.choice([53, 80, 40000, 5], n), rng.choice([53, 80, 40001], n)
    a = pd.Series(src).astype(str) + "|" + pd.Series(sport).astype(str)
    b = pd.Series(dst).astype(str) + "|" + pd.Series(dport).astype(str)
    expected = np.where(a < b, a + "~" + b, b + "~" + a)
    got = tcp_analysis.conversation_key(src, sport, dst, dport)
    assert got.tolist() == expected.tolist()
    assert tcp_analysis.conversation_key(dst, dport, src, sport).tolist() == got.tolist()
    assert codes.first_rows(np.array([0, 0, 1, 0, 2, 1, 3])).tolist() == [0, 2, 4, 6]
    assert codes.first_rows(np.zeros(0, dtype=np.int64)).size == 0


@pytest.mark.parametrize("seed", range(60))
def test_group_medians_order_is_lexsorts(seed: int) -> None:
    # gaps' per-group medians take the values ordered by group, then value, by
    # groups.group_time_order (a stable sort of the values, then a radix sort of the codes):
    # the same values as np.lexsort's order, with repeats, negative values, zeros of both
    # signs and more groups than 2**16
    from xentrace_cli.groups import group_time_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 500))
    groups = int(rng.choice([1, 3, 50, 70_000]))
    codes = rng.integers(0, groups, n)
    values = np.round(rng.normal(0, 5, n), int(rng.integers(0, 3)))
    if seed % 4 == 0:
        values[rng.random(n) < 0.1] = -0.0
    want = values[np.lexsort((values, codes))]
    got = values[group_time_order(codes, values)]
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("seed", range(30))
def test_conversation_ids_of_dense_flow_ids_are_the_hashed_ones(seed: int) -> None:
    # assign_flows numbers flows densely from 0: each flow's first row found by a minimum per
    # id and its conversation looked up in an array; ids far apart (not dense) take the hash
    # path, which must give the same conversations
    from xentrace_cli.pipeline.conversations import messages

    rng = np.random.default_rng(seed)
    hosts = [f"10.0.0.{i}" for i in range(int(rng.integers(1, 5)))]
    n_flows = int(rng.integers(1, 12))
    ends = [(str(rng.choice(hosts)), int(rng.integers(1, 4)), str(rng.choice(hosts)),
             int(rng.integers(1, 4)), int(rng.choice([6, 17]))) for _ in range(n_flows)]
    flow = rng.integers(0, n_flows, int(rng.integers(1, 200)))
    rows = [ends[f] for f in flow]
    segments = pd.DataFrame(rows, columns=["src", "sport", "dst", "dport", "proto"])
    # a flow is its 5-tuple: the same tuple drawn twice is one flow
    segments["flow"] = pd.factorize(pd.Series(rows))[0]
    dense = messages.conversation_ids(segments)
    far = messages.conversation_ids(segments.assign(flow=segments["flow"] * 10**9 + 7))
    assert dense.tolist() == far.tolist()
    # both directions of a connection share an id; different connections do not
    key = [(min((s, sp), (d, dp)), max((s, sp), (d, dp)), p) for s, sp, d, dp, p in rows]
    assert pd.factorize(pd.Series(key))[0].tolist() == pd.factorize(dense)[0].tolist()


@pytest.mark.parametrize("seed", range(60))
def test_by_group_then_value_is_lexsorts(seed: int) -> None:
    # gaps' medians take each group's stretch sorted on its own (few groups, no value of
    # negative sign), else the stable sorts: the same array as np.lexsort's order, with
    # repeats, zeros, negative values and zeros of both signs (the stable path), and more
    # groups than SORTED_ONE_BY_ONE or 2**16
    from xentrace_cli.pipeline.conversations import gaps

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 500))
    groups = int(rng.choice([1, 3, 50, 2_000, 70_000]))
    codes = rng.integers(0, groups, n)
    values = np.abs(np.round(rng.normal(0, 5, n), int(rng.integers(0, 3))))
    if seed % 4 == 0:
        values[rng.random(n) < 0.1] = -0.0
    elif seed % 4 == 1:
        values -= 3.0
    count = np.bincount(codes, minlength=groups)
    want = values[np.lexsort((values, codes))]
    got = gaps._by_group_then_value(codes, values, count)
    assert got.tobytes() == want.tobytes()
