"""The packet table: the vendored corpus against tshark's reference output and manifest, filters
(built-in and tshark ``-Y``), the table contract, batching, and ``xenlat packets``."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus_cases import CORPUS, MANIFEST, corpus_cases

from xentrace_cli import linktypes
from xentrace_cli.cli import main
from xentrace_cli.errors import InputError, OptionError, TruncatedInput, XenlatWarning
from xentrace_cli.sources import capture, packets
from xentrace_cli.sources.packets import COLUMNS, iter_packets, read_packets

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"
REF_FIELDS = ["frame", "time", "len", "caplen", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
              "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.len", "udp.srcport",
              "udp.dstport"]


#: Files tshark cannot read and what the reader says instead.
REJECTED = {
    "rusticata__err-eof.bin": "not a pcap or pcapng capture (file starts with 06000000)",
    "libpcap__linktype-reserved-field-not-zero.pcap": "reserved bits of the link-type field",
}
#: Per-file decisions where the table deliberately differs from tshark's reference.
QUIRKS = {
    # tshark reassembles IP fragments: it shows the ports on the LAST fragment (the reassembled
    # datagram) and none on the first; the table has one row per fragment and gives the ports
    # of the first fragment, which holds the header. Ports of fragments are not compared.
    "pcapplusplus__ip4_fragments.pcap": "fragments",
    "filesamples__teardrop.pcap": "fragments",
    # IPv6 payload length 0 (Linux BIG TCP, the kernel removed the jumbo option before the
    # capture): tshark gives up on TCP ("maybe TSO"); the table takes the length from the
    # frame and decodes TCP (checked by hand in test_decode.py).
    "tcpdump__bigtcp-ipv6.pcap": "no-tcp-in-ref",
    # The Simple Packet Block's trailing length matches its padded block length, so the
    # reader accepts it (1 frame, caplen = snaplen 96); tshark 4.0's SPB code looks for the
    # trailer right after the 96 captured bytes and rejects the file.
    "python-pcapng__test007.ntar": "tshark-rejects",
}


def load_ref(name: str) -> dict[int, dict[str, str]]:
    with open(CORPUS / "ref_aggregator_pipe" / f"{name}.csv", newline="") as fh:
        return {int(row[0]): dict(zip(REF_FIELDS, row, strict=True)) for row in csv.reader(fh)}


def last(value: str) -> str:
    return value.split("|")[-1] if value else ""


def cell(value: object) -> str:
    return "" if pd.isna(value) else str(value)


def ref_ns(text: str) -> int | None:
    """tshark's epoch text → ns, None when tshark printed a value no clock gives (see test)."""
    if not text:
        return None
    sec, frac = text.split(".")
    if sec.startswith("-") or len(frac) != 9:
        return None
    return int(sec) * 10**9 + int(frac)


def fragment_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows belonging to a fragmented IPv4 datagram: same (src, dst, ip_id) as a row whose
    fragment offset is not 0."""
    key = table["src"].astype(str) + "|" + table["dst"].astype(str) + "|" + \
        table["ip_id"].astype(str)
    later = set(key[table["frag_offset"].fillna(0) > 0])
    return key.isin(later).to_numpy()


@pytest.mark.parametrize("entry", corpus_cases(MANIFEST))
def test_corpus_against_tshark_reference(entry: dict[str, str], corpus: Path) -> None:
    name = entry["file"]
    path = corpus / "captures" / name
    if name in REJECTED:
        assert entry["tshark_exit"] != "0"
        with pytest.raises(InputError) as err:
            read_packets(path)
        assert REJECTED[name] in str(err.value) and str(path) in str(err.value)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_packets(path)
    messages = [str(w.message) for w in caught]
    ref = load_ref(name)
    if QUIRKS.get(name) == "tshark-rejects":
        assert entry["tshark_exit"] != "0" and not ref
        assert (len(table), int(table["caplen"][0]), int(table["wirelen"][0])) == (1, 96, 1000)
        return
    # frames: every row of the table is a tshark frame with the same number; tshark's extra
    # frames are pcapng custom blocks (no timestamp, not packets)
    assert set(table["frame"]) <= set(ref)
    extra = set(ref) - set(table["frame"])
    assert all(ref[f]["time"] == "" for f in extra)
    assert len(table) + len(extra) == int(entry["packets_tshark"])
    undecoded = set(table["linktype"]) - linktypes.DECODED
    fragments = fragment_rows(table) if QUIRKS.get(name) == "fragments" else None
    for i, row in enumerate(table.to_dict("records")):
        t = ref[row["frame"]]
        assert (row["wirelen"], row["caplen"]) == (int(t["len"]), int(t["caplen"]))
        want_ns = ref_ns(t["time"])
        if want_ns is not None and want_ns >= 2**63:  # see test_corpus_quirk_timestamp_...
            assert pd.isna(row["ts_ns"])
        elif want_ns is not None:
            assert row["ts_ns"] == want_ns, row["frame"]
        elif t["time"] == "":  # Simple Packet Block
            assert pd.isna(row["ts_ns"])
        if row["linktype"] in undecoded:
            assert pd.isna(row["src"]) and row["ip_version"] == 0
            continue
        # innermost header: IPv6 wins when both are present (Teredo in the corpus)
        src = last(t["ipv6.src"]) or last(t["ip.src"])
        dst = last(t["ipv6.dst"]) or last(t["ip.dst"])
        assert (cell(row["src"]), cell(row["dst"])) == (src, dst), row["frame"]
        if fragments is not None and fragments[i]:
            continue
        if QUIRKS.get(name) == "no-tcp-in-ref":
            continue
        tcp = bool(t["tcp.srcport"])
        sport = last(t["tcp.srcport"]) if tcp else last(t["udp.srcport"])
        dport = last(t["tcp.dstport"]) if tcp else last(t["udp.dstport"])
        got_ports = (cell(row["sport"]), cell(row["dport"]))
        if t["ip.src"] and t["ipv6.src"] and got_ports == ("", ""):
            pass  # the reference does not say whether its ports belong to the inner header
        else:
            assert got_ports == (sport, dport), row["frame"]
        if tcp and t["tcp.seq_raw"]:
            assert (cell(row["tcp_seq"]), cell(row["payload_len"])) == (
                last(t["tcp.seq_raw"]), last(t["tcp.len"])), row["frame"]
    # categories and counts of the manifest
    category = entry["category"]
    if category == "truncated":
        assert any(f"{path}: offset " in m and "capture cut short" in m for m in messages)
    if category == "linktype-unsupported" or undecoded:
        assert any("are not decoded" in m for m in messages)
    if not undecoded:
        assert int((table["ip_version"] == 6).sum()) == int(entry["n_ipv6"])


def test_corpus_quirk_nanosecond_field_over_1e9(corpus: Path) -> None:
    # tshark prints the raw fields ("1418145370.1000000000", "-…2147483648"); the table adds the
    # nanosecond field to the seconds as the pcap definition says (hand-read from the file)
    path = corpus / "captures" / "tcpdump__timestamp_invalid_nano.pcap"
    data = path.read_bytes()
    fields, offset = [], 24
    while offset < len(data):
        sec, frac, caplen, _ = struct.unpack_from("<IIII", data, offset)
        fields.append(sec * 10**9 + frac)
        offset += 16 + caplen
    assert fields[1] == 1418145370 * 10**9 + 1_000_000_000
    assert list(read_packets(path)["ts_ns"]) == fields


def test_corpus_quirk_timestamp_past_int64(corpus: Path) -> None:
    # interface 1 writes 0xffffffff_e1dfd279 µs (2^64 µs - 505 s): tshark prints
    # 18446744073204.126329000 s; int64 ns cannot hold it, so the table leaves it empty and says so
    path = corpus / "captures" / "truncated-pcapng-le-epb-midblock.pcap"
    with pytest.warns(XenlatWarning) as caught:
        table = read_packets(path)
    assert "20 timestamps beyond the int64 nanosecond range" in str(caught[0].message)
    assert caught[1].category is TruncatedInput
    assert table.loc[table["interface"] == 1, "ts_ns"].isna().all()
    assert table.loc[table["interface"] == 0, "ts_ns"].notna().all()


# ---- the table contract -----------------------------------------------------------------------
def test_columns_and_dtypes_are_the_contract(tmp_path: Path) -> None:
    table = read_packets(CAPTURES / "ether-le-nsec.pcap")
    assert list(table.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in table.dtypes.items()} == COLUMNS
    header_only = tmp_path / "header-only.pcap"
    header_only.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    empty = read_packets(header_only)
    assert list(empty.columns) == list(COLUMNS) and len(empty) == 0
    assert {c: str(t) for c, t in empty.dtypes.items()} == COLUMNS


def test_batches_concatenate_to_the_same_table(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = read_packets(CAPTURES / "multi-section.pcapng")
    monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
    monkeypatch.setattr(packets, "TABLE_ROWS", 3)
    batches = list(iter_packets(CAPTURES / "multi-section.pcapng"))
    assert len(batches) >= 4
    pieced = read_packets(CAPTURES / "multi-section.pcapng")
    assert pieced.astype(str).equals(whole.astype(str))
    assert str(pieced["src"].dtype) == "category"


def test_interfaces_in_attrs() -> None:
    table = read_packets(CAPTURES / "multi-section.pcapng")
    names = [i["name"] for i in table.attrs["interfaces"]]
    assert names == ["vif5.0", "eth0", "raw0", "vif7.1"]
    # each row's interface indexes that list
    assert set(table["interface"]) == {0, 1, 2, 3}


def test_progress_reaches_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "CHUNK_BYTES", 512)
    calls: list[tuple[int, int]] = []
    read_packets(CAPTURES / "ether-le-nsec.pcap", on_progress=lambda d, t: calls.append((d, t)))
    size = (CAPTURES / "ether-le-nsec.pcap").stat().st_size
    assert calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_abandoned_iteration_stops_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "CHUNK_BYTES", 256)
    monkeypatch.setattr(packets, "TABLE_ROWS", 1)
    batches = iter_packets(CAPTURES / "ether-le-nsec.pcap")
    first = next(batches)
    batches.close()  # the worker thread must end, not block on its queue
    assert len(first) >= 1
    import threading

    assert not [t for t in threading.enumerate() if t.name == "xenlat-reader"]


# ---- filters ------------------------------------------------------------------------------------
def tshark_selected(tshark: str, path: Path, display_filter: str,
                    defragment: bool = False) -> list[int]:
    """Frames tshark selects; without reassembly unless asked (the table has a row per
    fragment)."""
    options = [] if defragment else ["-o", "ip.defragment:FALSE"]
    proc = subprocess.run([tshark, "-n", "-r", str(path), *options, "-Y", display_filter, "-T",
                           "fields", "-e", "frame.number"], capture_output=True, text=True)
    assert proc.returncode == 0 or "appears to have been cut short" in proc.stderr
    out = proc.stdout
    return [int(x) for x in out.split()]


def test_port_filter_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    path = corpus / "captures" / "rusticata__wireshark_samples-test.pcapng"
    got = read_packets(path, port=5353)
    assert len(got) > 10
    assert list(got["frame"]) == tshark_selected(tshark, path, "udp.port == 5353 || "
                                                 "tcp.port == 5353")


def test_host_filter_agrees_with_tshark(corpus: Path, tshark: str) -> None:
    path = corpus / "captures" / "rusticata__wireshark_samples-test.pcapng"
    table = read_packets(path)
    v4 = table.loc[table["ip_version"] == 4, "dst"].astype(str).value_counts()
    host = str(v4.index[v4 > 5][-1])  # an IPv4 host with a few packets
    got = read_packets(path, host=host)
    assert 0 < len(got) < len(table)
    assert list(got["frame"]) == tshark_selected(tshark, path, f"ip.addr == {host}")


def test_ipv6_host_filter_normalizes_the_address() -> None:
    got = read_packets(CAPTURES / "linktype-229.pcap", host="2001:0db8:0000::0002")
    assert len(got) >= 2 and set(got["src"].astype(str)) | set(got["dst"].astype(str)) >= {
        "2001:db8::2"}


def test_display_filter_selects_by_frame_number(corpus: Path, tshark: str) -> None:
    path = corpus / "captures" / "zeek__http_bro.org.pcap"
    syn = read_packets(path, display_filter="tcp.flags.syn == 1 && tcp.flags.ack == 0")
    table = read_packets(path)
    # independent check: the decoded flags (SYN 0x02 without ACK 0x10)
    flags = table["tcp_flags"].fillna(0).astype(int)
    assert list(syn["frame"]) == list(table.loc[(flags & 0x12) == 0x02, "frame"])
    assert len(syn) > 0
    both = read_packets(path, display_filter="tcp", port=80)
    assert len(both) == len(read_packets(path, port=80))


def test_display_filter_in_pcapng_with_custom_blocks(tshark: str) -> None:
    # frame numbers agree with tshark even after the custom block (frame 4); -Y runs tshark
    # with its defaults (reassembly on: the last fragment is the one that shows as UDP)
    got = read_packets(CAPTURES / "multi-section.pcapng", display_filter="udp")
    assert list(got["frame"]) == tshark_selected(tshark, CAPTURES / "multi-section.pcapng",
                                                 "udp", defragment=True)
    assert 4 not in set(got["frame"]) and len(got) >= 5


def test_bad_options() -> None:
    with pytest.raises(OptionError, match="not an IPv4 or IPv6 address"):
        read_packets(CAPTURES / "ether-le-nsec.pcap", host="example.org")
    with pytest.raises(OptionError, match="70000 is not a TCP/UDP port"):
        read_packets(CAPTURES / "ether-le-nsec.pcap", port=70000)


# ---- xenlat packets --------------------------------------------------------------------------
def test_cli_csv(runner) -> None:
    result = runner.invoke(main, ["packets", str(CAPTURES / "ether-le-nsec.pcap"),
                                  "--port", "11211", "--no-progress"])
    assert result.exit_code == 0 and result.stderr == ""
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2
    assert rows[0]["ts_ns"] == "1700000000123456789" and rows[0]["src"] == "10.0.0.1"
    assert rows[0]["tcp_seq"] == "1000000" and rows[0]["payload_len"] == "100"
    assert (rows[1]["tcp_flags"], rows[1]["tcp_ack"]) == ("2", "0")  # SYN: raw ack field 0
    assert list(rows[0]) == list(COLUMNS)


def test_cli_json_and_parquet(runner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["packets", str(CAPTURES / "linktype-229.pcap"), "--format",
                                  "json", "--no-progress"])
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert records[0]["src"] == "2001:db8::1:0:0:1" and records[0]["dport"] == 50000
    out = tmp_path / "t.parquet"
    result = runner.invoke(main, ["packets", str(CAPTURES / "linktype-229.pcap"), "--format",
                                  "parquet", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0 and result.stdout == ""
    back = pd.read_parquet(out)
    assert back.astype(str).equals(read_packets(CAPTURES / "linktype-229.pcap").astype(str))


def test_cli_bad_display_filter_exit_2(runner, tshark: str) -> None:
    result = runner.invoke(main, ["packets", str(CAPTURES / "ether-le-nsec.pcap"), "-Y",
                                  "tcp.port ==", "--no-progress"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("xenlat: error: -Y 'tcp.port ==': ")
    assert result.stderr.count("\n") == 1
    assert "tshark:" in result.stderr  # tshark's own message, on the same line


def test_cli_display_filter_without_tshark(runner, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH where no tshark lives
    result = runner.invoke(main, ["packets", str(CAPTURES / "ether-le-nsec.pcap"), "-Y", "tcp",
                                  "--no-progress"])
    assert result.exit_code == 3
    assert result.stderr == (f"xenlat: error: {CAPTURES / 'ether-le-nsec.pcap'}: -Y needs "
                             "tshark, which is not installed (apt-get install tshark)\n")


def test_cli_unknown_link_type_warns(runner) -> None:
    result = runner.invoke(main, ["packets", str(CAPTURES / "linktype-147.pcap"),
                                  "--no-progress"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr == (f"xenlat: warning: {CAPTURES / 'linktype-147.pcap'}: 3 frames of "
                             "link type 147 (user0) are not decoded (kept without IP fields)\n")


def test_cli_truncated_corpus_file(runner, corpus: Path) -> None:
    path = corpus / "captures" / "truncated-be-ns-midpayload.pcap"
    ok = runner.invoke(main, ["packets", str(path), "--no-progress"])
    assert ok.exit_code == 0 and len(ok.stdout.splitlines()) == 5
    assert ok.stderr == (f"xenlat: warning: {path}: offset 446 (packet 5): capture cut short: "
                         "packet data cut short (33 of 66 bytes); the 4 whole packets before "
                         "it were kept\n")
    strict = runner.invoke(main, ["packets", str(path), "--strict", "--no-progress"])
    assert strict.exit_code == 3 and "offset 446 (packet 5)" in strict.stderr


def test_truncated_warning_is_one(corpus: Path) -> None:
    with pytest.warns(TruncatedInput) as caught:
        read_packets(corpus / "captures" / "truncated-pcapng-be-pb-midblock.pcap")
    assert len([w for w in caught if w.category is TruncatedInput]) == 1


def test_cli_parquet_batches_with_growing_address_sets(runner, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # table batches of 200 rows: the first holds 197 addresses, the second 104; pandas codes
    # them as int16, then int8; the Parquet stream must still have one schema
    from scapy.all import IP, UDP

    frames = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP())] * 4 + [
        bytes(IP(src=f"10.1.{i // 250}.{i % 250 + 1}", dst="10.0.0.2") / UDP())
        for i in range(300)]
    body = b"".join(struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f
                    for i, f in enumerate(frames))
    path = tmp_path / "many.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + body)
    monkeypatch.setattr(packets, "TABLE_ROWS", 200)
    monkeypatch.setattr(capture, "CHUNK_BYTES", 4 * 44)
    out = tmp_path / "many.parquet"
    result = runner.invoke(main, ["packets", str(path), "--format", "parquet", "-o", str(out),
                                  "--no-progress"])
    assert result.exit_code == 0, result.stderr
    back = pd.read_parquet(out)
    assert len(back) == 304 and back["src"].nunique() == 301


def test_cli_display_filter_on_a_damaged_file(runner, corpus: Path, tshark: str) -> None:
    # tshark exits 2 on the cut-short file too: that is not a bad filter
    path = corpus / "captures" / "truncated-be-ns-midpayload.pcap"
    some = runner.invoke(main, ["packets", str(path), "-Y", "tcp.flags.ack == 1",
                                "--no-progress"])
    assert some.exit_code == 0
    assert len(some.stdout.splitlines()) == 1 + len(tshark_selected(tshark, path,
                                                                    "tcp.flags.ack == 1"))
    assert "capture cut short" in some.stderr
    none = runner.invoke(main, ["packets", str(path), "-Y", "udp", "--no-progress"])
    assert none.exit_code == 0
    assert none.stdout.splitlines() == [",".join(f'"{c}"' for c in COLUMNS)]  # header only


def test_cli_unknown_field_in_display_filter(runner, tshark: str) -> None:
    result = runner.invoke(main, ["packets", str(CAPTURES / "ether-le-nsec.pcap"), "-Y",
                                  "foo.bar", "--no-progress"])
    assert result.exit_code == 2
    assert result.stderr == ("xenlat: error: -Y 'foo.bar': tshark: foo.bar is neither a field "
                             "nor a protocol name.\n")


# ---- the Arrow path of `xenlat packets` (no pandas) ----------------------------------------------
ARROW_CASES = ["multi-section.pcapng", "ether-le-nsec.pcap"]


@pytest.mark.parametrize("name", ARROW_CASES)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_arrow_batches_write_the_bytes_of_the_pandas_batches(name: str, fmt: str,
                                                             tmp_path: Path) -> None:
    """CSV and Parquet written from the Arrow batches are byte for byte those written from the
    DataFrames (values, types and the pandas metadata), with and without filters."""
    from xentrace_cli.outputs.tables import write_table

    for options in ({}, {"port": 11211}, {"host": "10.0.0.1"}):
        via_pandas, via_arrow = tmp_path / f"p.{fmt}", tmp_path / f"a.{fmt}"
        write_table(iter_packets(CAPTURES / name, **options), fmt, via_pandas)
        write_table(packets.iter_packet_tables(CAPTURES / name, **options), fmt, via_arrow)
        assert via_arrow.read_bytes() == via_pandas.read_bytes(), options


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_arrow_batches_of_a_capture_without_packets(fmt: str, corpus: Path,
                                                    tmp_path: Path) -> None:
    from xentrace_cli.outputs.tables import write_table

    path = corpus / "captures" / "tcpdump__empty.pcapng"
    write_table(iter_packets(path), fmt, tmp_path / "p")
    write_table(packets.iter_packet_tables(path), fmt, tmp_path / "a")
    if fmt == "csv":  # the header alone
        assert (tmp_path / "a").read_text().strip() == ",".join(f'"{c}"' for c in COLUMNS)
    back = pd.read_parquet(tmp_path / "a") if fmt == "parquet" else None
    assert back is None or (list(back.columns) == list(COLUMNS) and len(back) == 0)


def test_arrow_batches_read_back_with_the_table_dtypes(tmp_path: Path) -> None:
    """The pandas metadata written without pandas restores the nullable dtypes and the
    categories, as read_packets has them."""
    from xentrace_cli.outputs.tables import write_table

    out = tmp_path / "t.parquet"
    write_table(packets.iter_packet_tables(CAPTURES / "multi-section.pcapng"), "parquet", out)
    back = pd.read_parquet(out)
    want = read_packets(CAPTURES / "multi-section.pcapng")
    assert dict(back.dtypes.astype(str)) == dict(want.dtypes.astype(str))
    assert back.astype(str).equals(want.astype(str))


@pytest.mark.parametrize("args", [
    ["packets", "{capture}", "-o", "{tmp}/t.csv"],
    ["packets", "{capture}", "--format", "parquet", "-o", "{tmp}/t.parquet"],
    ["info", "{capture}"],
    ["info", "{capture}", "--format", "json"],
    ["--help"],
    ["--version"],
])
def test_light_commands_do_not_import_pandas(args: list[str], tmp_path: Path) -> None:
    """packets (CSV, Parquet), info, --help and --version start without pandas (≈ 0.3 s of
    imports on the benchmark machine): a command on a small file finishes in a blink."""
    capture_file = CAPTURES / "ether-le-nsec.pcap"
    argv = [a.format(capture=capture_file, tmp=tmp_path) for a in args]
    code = ("import sys\nfrom xentrace_cli.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e\n"
            "print('PANDAS', 'pandas' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "PANDAS False"


def test_parquet_dictionary_only_on_the_columns_of_few_values(runner, tmp_path: Path) -> None:
    """``xenlat packets --format parquet`` dictionary-encodes DICTIONARY_COLUMNS only (the
    other columns plain), and the file reads back as the table written with pyarrow's default
    (every column tried as a dictionary)."""
    import pyarrow.parquet as pq

    from xentrace_cli.outputs.tables import write_table

    capture = CAPTURES / "multi-section.pcapng"
    default, chosen = tmp_path / "default.parquet", tmp_path / "chosen.parquet"
    write_table(packets.iter_packet_tables(capture), "parquet", default)
    result = runner.invoke(main, ["packets", str(capture), "--format", "parquet", "-o",
                                  str(chosen), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(chosen).equals(pq.read_table(default))
    assert pd.read_parquet(chosen).astype(str).equals(pd.read_parquet(default).astype(str))
    meta = pq.ParquetFile(chosen).metadata.row_group(0)
    encoded = {meta.column(i).path_in_schema: "RLE_DICTIONARY" in meta.column(i).encodings
               for i in range(meta.num_columns)}
    assert {name for name, yes in encoded.items() if yes} == set(packets.DICTIONARY_COLUMNS)
    assert set(encoded) == set(COLUMNS)


def _suspicion_batch(first_frame: int, ts: list[int], sport: list[int]) -> packets.PacketColumns:
    """Rows alike but for time, source port and frame number (every value valid)."""
    n = len(ts)
    values = {name: np.zeros(n, dtype=dtype) for name, dtype in packets._NUMPY_DTYPE.items()}
    values["frame"] = np.arange(first_frame, first_frame + n, dtype=np.int64)
    values["ts_ns"] = np.array(ts, dtype=np.int64)
    values["sport"] = np.array(sport, dtype=np.uint16)
    valid = {name: np.ones(n, dtype=bool) for name in packets._NULLABLE}
    codes = np.zeros(n, dtype=np.int32)
    return packets.PacketColumns(values, valid, codes, codes, ["10.0.0.1"])


def test_duplicates_found_among_the_rows_that_share_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """By hand, with 3 rows carried from a batch to the next: a row equal to one of the
    previous batch's last 3 rows or to an earlier row of its batch is a duplicate; one that
    differs only in its port is not, nor one whose twin is further back than the carry. Only
    the rows whose time another row has are hashed (and the last 3, carried): a batch of new
    times hashes its last rows only, and those find the next batch's duplicate."""
    monkeypatch.setattr(packets, "DUPLICATE_CARRY", 3)
    hashed: list[list[int]] = []
    row_hashes = packets._row_hashes

    def spy(columns: packets.PacketColumns, rows: object, book: object,
            key: tuple[str, ...] = packets.DUPLICATE_KEY) -> np.ndarray:
        hashes = row_hashes(columns, rows, book, key)  # type: ignore[arg-type]
        hashed.append(columns.values["frame"][rows].tolist())  # type: ignore[index]
        return hashes

    monkeypatch.setattr(packets, "_row_hashes", spy)
    suspicion = packets._Suspicion(packets._AddressBook())
    suspicion.observe(_suspicion_batch(1, [1, 2, 3, 4, 5], [1] * 5))
    assert suspicion.duplicates == 0
    assert hashed == [[3, 4, 5]]  # the carried rows alone: no time repeats
    hashed.clear()
    # frame 6 repeats frame 5 (carried); 7 differs in its port only; 8 repeats frame 2,
    # beyond the carry; 10 repeats 9 (times out of order: 2 after 5)
    suspicion.observe(_suspicion_batch(6, [5, 5, 2, 6, 6], [1, 2, 1, 7, 7]))
    assert (suspicion.duplicates, suspicion.first_dup) == (2, 6)
    assert hashed[0] == [6, 7, 9, 10]  # frame 8's time 2 is not among the carried 3..5
    hashed.clear()
    suspicion.observe(_suspicion_batch(11, [10, 11, 12], [1, 1, 1]))
    assert hashed == [[11, 12, 13]]
    suspicion.observe(_suspicion_batch(14, [12, 13], [1, 1]))  # 14 repeats 13
    assert (suspicion.duplicates, suspicion.first_dup) == (3, 6)
    # 17 repeats 16 (neighbours), 20 repeats 16 after later times (sorted to find it);
    # 19 differs from 18 in its port only
    suspicion.observe(_suspicion_batch(16, [20, 20, 21, 21, 20], [1, 1, 1, 2, 1]))
    assert (suspicion.duplicates, suspicion.first_dup) == (5, 6)
    assert suspicion.backwards == 2  # 8 (5 -> 2) and 20 (21 -> 20)


def test_command_turns_off_numpys_huge_page_advice() -> None:
    """The command sets NUMPY_MADVISE_HUGEPAGE=0 before numpy is imported (direct compaction
    stalls on fragmented hosts cost analyze ~10 s of system time), keeping a user's value."""
    probe = ("import xentrace_cli.cli, numpy._core.multiarray as m; "
             "print(m._get_madvise_hugepage())")
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    plain = subprocess.run([sys.executable, "-c", "import numpy._core.multiarray as m; "
                            "print(m._get_madvise_hugepage())"], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    kept = subprocess.run([sys.executable, "-c", probe],
                          env={**env, "NUMPY_MADVISE_HUGEPAGE": "1"}, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert ours == "False"
    assert kept == "True" and plain == ("True" if sys.platform == "linux" else plain)


@pytest.mark.parametrize("name", ["multi-section.pcapng", "ether-le-nsec.pcap"])
@pytest.mark.parametrize("small", [False, True])
def test_packet_columns_are_the_packet_table(monkeypatch: pytest.MonkeyPatch, name: str,
                                             small: bool) -> None:
    # read_packet_columns (analyze's read: the batches' arrays end to end, the addresses as
    # one list) holds the table read_packets builds, category order, extras and attrs too;
    # small: many batches, whose address lists differ
    from xentrace_cli.sources.packets import read_packet_columns

    if small:
        monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
        monkeypatch.setattr(packets, "TABLE_ROWS", 3)
    options = {"payload_head": 16, "tcp_window": True}
    table = read_packets(CAPTURES / name, **options)
    columns = read_packet_columns(CAPTURES / name, **options)
    if small:
        assert len(list(iter_packets(CAPTURES / name))) >= 4
    built = columns.to_pandas()
    # the categories' own dtype aside: a batch's are object, and pandas infers str for the
    # union of differing lists (read_packets' concatenation); the texts and order are equal
    pd.testing.assert_frame_equal(object_categories(built.drop(columns="payload_head")),
                                  object_categories(table.drop(columns="payload_head")),
                                  check_exact=True)
    assert packets.head_bytes(built["payload_head"]).tolist() \
        == packets.head_bytes(table["payload_head"]).tolist()
    assert columns.attrs == table.attrs
    some = columns.to_pandas(only=("src", "dst", "ts_ns"))
    pd.testing.assert_frame_equal(object_categories(some),
                                  object_categories(table[["src", "dst", "ts_ns"]]),
                                  check_exact=True)


def object_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its address columns' categories (texts, in their order) as an object
    index: a batch's are object, pandas' union of differing lists (read_packets' concatenation)
    infers str; the texts, their order and the codes must be equal."""
    return frame.assign(**{c: frame[c].cat.set_categories(
        pd.Index(list(frame[c].cat.categories), dtype=object)) for c in ("src", "dst")})


def test_ipv4_codes_by_comparison_equal_the_hashed_ones() -> None:
    """_AddressBook.v4_codes ranks a batch's addresses by comparisons with the last batch's
    few: the codes and distinct addresses sorted_codes gives, whether the batch holds all of
    those, some of them, or one more (hashed again), and past FEW_ADDRESSES (hashed)."""
    from xentrace_cli.groups import sorted_codes

    rng = np.random.default_rng(5)
    book = packets._AddressBook()
    pool = np.array([0x0A000005, 0x0A000001, 0xC0A80101, 0x0A000002], dtype=np.uint32)
    batches = [pool[rng.integers(0, 4, 500)],        # all four: hashed (nothing known)
               pool[rng.integers(0, 4, 500)],        # all four again: compared
               pool[[0, 2, 0, 2, 2]],                # two of them: compared, a subset
               np.append(pool[rng.integers(0, 4, 50)], np.uint32(7)),  # a new one: hashed
               np.arange(100, dtype=np.uint32)[::-1],  # many: hashed
               pool[rng.integers(0, 4, 30)]]         # more known than FEW_ADDRESSES: hashed
    for keys in batches:
        codes, uniq = book.v4_codes(keys)
        want_codes, want_uniq = sorted_codes(keys)
        assert codes.tolist() == want_codes.tolist()
        assert uniq.tolist() == want_uniq.tolist() and uniq.dtype == want_uniq.dtype
    assert book.last_v4.tolist() == sorted(set(batches[-1].tolist()))


def _same_columns(a: packets.PacketColumns, b: packets.PacketColumns) -> None:
    """Every array of two PacketColumns equal (values, dtypes, validity, codes, addresses)."""
    assert a.addresses == b.addresses and len(a) == len(b)
    for name in a.values:
        assert a.values[name].dtype == b.values[name].dtype, name
        assert np.array_equal(a.values[name], b.values[name]), name
    assert a.valid.keys() == b.valid.keys()
    assert all(np.array_equal(a.valid[k], b.valid[k]) for k in a.valid)
    assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)
    assert a.extra.keys() == b.extra.keys()
    for name, (values, ok) in a.extra.items():
        assert np.array_equal(values, b.extra[name][0]) and np.array_equal(ok, b.extra[name][1])


@pytest.mark.parametrize("name", ["multi-section.pcapng", "ether-le-nsec.pcap",
                                  "ether-le-nsec.pcap.gz"])
def test_packet_columns_merged_into_the_tables_arrays(monkeypatch: pytest.MonkeyPatch,
                                                      name: str) -> None:
    """read_packet_columns merges the batches straight into the table's arrays: the same
    columns as the batches of iter_packet_columns end to end (concatenated), in many small
    batches; the values are rows of one array when the first batch's density held (a plain
    file), and copied where the arrays had to grow (a gzip file: its size on disk is the
    compressed one, the estimate falls short)."""
    monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
    monkeypatch.setattr(packets, "TABLE_ROWS", 3)
    options = {"payload_head": 16, "tcp_window": True}
    batches = list(packets.iter_packet_columns(CAPTURES / name, **options))
    assert len(batches) >= 3
    whole = packets.read_packet_columns(CAPTURES / name, **options)
    _same_columns(whole, packets.PacketColumns.concat(batches))
    one_array = whole.values["ts_ns"].base is not None
    assert one_array == (not name.endswith(".gz"))


def test_concat_takes_adjacent_rows_as_a_view() -> None:
    """PacketColumns.concat: batches whose arrays are consecutive rows of one array give a
    view of it; any other batches (rows apart, other arrays, reordered) are copied."""
    base = np.arange(20, dtype=np.int64)
    pairs = np.arange(40, dtype=np.uint8).reshape(20, 2).copy()  # owns its rows, as _Table's
    assert np.shares_memory(packets._concatenated([base[0:5], base[5:12], base[12:20]]), base)
    assert np.shares_memory(packets._concatenated([pairs[0:3], pairs[3:9]]), pairs)
    for parts in ([base[0:5], base[6:12]], [base[5:12], base[0:5]],
                  [base[0:5], base[5:12].copy()], [base[::2][:3], base[::2][3:6]]):
        joined = packets._concatenated(parts)
        assert not np.shares_memory(joined, base)
        assert joined.tolist() == np.concatenate(parts).tolist()


#: the columns analyze keeps of a dom0 capture (caplen, wirelen, interface, linktype,
#: frag_offset and tcp_ack left out)
_ANALYZE_ONLY = ("frame", "ts_ns", "ip_version", "src", "dst", "proto", "sport", "dport",
                 "ip_id", "tcp_seq", "tcp_flags", "payload_len", "payload_digest")


@pytest.mark.parametrize("path", [CAPTURES / "multi-section.pcapng",
                                  CAPTURES / "ether-le-nsec.pcap",
                                  CAPTURES / "ether-le-nsec.pcap.gz",
                                  HERE / "data" / "badinput" / "duplicated_2000.pcap",
                                  HERE / "data" / "badinput" / "backwards.pcap"])
@pytest.mark.parametrize("small", [False, True])
def test_packet_columns_only_some(monkeypatch: pytest.MonkeyPatch, path: Path,
                                  small: bool) -> None:
    """read_packet_columns(only=...) holds those columns as the whole read does (the others
    absent), with the same warnings (the duplicate check still sees every column), in one
    batch or many small ones; the opt-in columns stay."""
    if small:
        monkeypatch.setattr(capture, "CHUNK_BYTES", 300)
        monkeypatch.setattr(packets, "TABLE_ROWS", 3)
    options = {"payload_head": 16, "tcp_window": True}
    with warnings.catch_warnings(record=True) as every_warning:
        warnings.simplefilter("always")
        whole = packets.read_packet_columns(path, **options)
    with warnings.catch_warnings(record=True) as some_warning:
        warnings.simplefilter("always")
        some = packets.read_packet_columns(path, only=_ANALYZE_ONLY, **options)
    assert [str(w.message) for w in some_warning] == [str(w.message) for w in every_warning]
    if path.parent.name == "badinput":  # duplicates, or times that go backwards
        assert every_warning
    assert set(some.values) == set(_ANALYZE_ONLY) - {"src", "dst"}
    assert set(some.valid) == set(_ANALYZE_ONLY) & set(whole.valid)
    picked = packets.PacketColumns(
        {k: whole.values[k] for k in some.values}, {k: whole.valid[k] for k in some.valid},
        whole.src, whole.dst, whole.addresses, whole.extra)
    _same_columns(some, picked)
    assert some.attrs == whole.attrs
    pd.testing.assert_frame_equal(some.to_pandas(only=("src", "dst", "ts_ns")),
                                  whole.to_pandas(only=("src", "dst", "ts_ns")))
    with pytest.raises(ValueError, match="wirelength"):
        packets.read_packet_columns(path, only=("frame", "wirelength"))


def test_a_column_left_out_is_refused_not_read_empty() -> None:
    """The steps' accessors raise for a column only= left out (a step reading it would
    otherwise get 'no value' on every row: every frame not TCP, say), and still read the
    kept ones and the opt-in ones."""
    from xentrace_cli.pipeline import match

    path = CAPTURES / "ether-le-nsec.pcap"
    some = packets.read_packet_columns(path, only=_ANALYZE_ONLY, tcp_window=True)
    whole = packets.read_packet_columns(path, tcp_window=True)
    assert some.left_out == COLUMNS.keys() - set(_ANALYZE_ONLY)
    assert not whole.left_out
    for column in ("tcp_ack", "frag_offset", "caplen"):
        for step, args in ((match.int_values, (column, -1)), (match.has_value, (column,)),
                           (match.has_column, (column,))):
            with pytest.raises(KeyError, match="left out"):
                step(some, *args)
        assert match.has_column(whole, column)
    np.testing.assert_array_equal(match.int_values(some, "tcp_flags", -1),
                                  match.int_values(whole, "tcp_flags", -1))
    assert match.has_column(some, "tcp_window") and match.has_column(some, "src")
