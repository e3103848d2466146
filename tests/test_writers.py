"""Tests of the simulator's byte builders and writers (``simulate.frames``, ``simulate.writers``).

Ground truth: tshark reading what was written, the project's own readers, and a tiny
independent xentrace decoder written here.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xentrace_cli.simulate.frames import ACK, PSH, SYN, Content, build_frames, mac_to_bytes
from xentrace_cli.simulate.writers import (
    strace_quote,
    write_pcap,
    write_pcapng,
    write_strace,
    write_xentrace,
)
from xentrace_cli.sources import packets, socket_log
from xentrace_cli.sources import xentrace as xt

T0 = 1_767_229_200 * 10**9


def _content() -> Content:
    """One literal region ("HELLO\\r\\n") then pattern bytes."""
    return Content(region_start=np.array([0], dtype=np.int64),
                   literal_off=np.array([0], dtype=np.int64),
                   literal_len=np.array([7], dtype=np.int64),
                   literal=np.frombuffer(b"HELLO\r\n", dtype=np.uint8))


def _batch(n: int = 40, snaplen: int = 262144, seed: int = 3):
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.integers(1, 5_000_000, n))
    flags = np.full(n, ACK)
    flags[0] = SYN
    flags[n // 2] = PSH | ACK
    plen = rng.integers(0, 1461, n)
    plen[0] = 0
    fields = dict(
        eth_src=np.tile(mac_to_bytes("00:16:3e:00:00:05"), (n, 1)),
        eth_dst=np.tile(mac_to_bytes("3c:fd:fe:00:00:01"), (n, 1)),
        ip_src=np.where(np.arange(n) % 2 == 0, 0x0A000005, 0x0A000001),
        ip_dst=np.where(np.arange(n) % 2 == 0, 0x0A000001, 0x0A000005),
        ip_id=np.arange(n) + 100, ttl=np.full(n, 64),
        sport=rng.integers(1024, 65535, n), dport=np.full(n, 11211),
        seq=rng.integers(0, 2**32, n), ack=rng.integers(0, 2**32, n), flags=flags,
        window=np.full(n, 65535), payload_len=plen,
        content_pos=rng.integers(0, 10_000, n))
    frames = build_frames(**fields, content=_content(), snaplen=snaplen)
    return ts, fields, frames


TSHARK_FIELDS = ("frame.time_epoch", "frame.len", "frame.cap_len", "ip.src", "ip.dst",
                 "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
                 "ip.id", "ip.checksum.status", "tcp.flags")


def _tshark(tshark: str, path: Path) -> list[list[str]]:
    cmd = [tshark, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-T", "fields",
           "-E", "separator=,"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split(",") for line in out.stdout.splitlines()]


def _ip(v: int) -> str:
    return ".".join(str((v >> s) & 0xFF) for s in (24, 16, 8, 0))


def _check_against_tshark(rows: list[list[str]], ts: np.ndarray, fields: dict,
                          frames, ns: bool) -> None:
    assert len(rows) == len(ts)
    for i, r in enumerate(rows):
        sec, frac = r[0].split(".")
        got_ns = int(sec) * 10**9 + int(frac.ljust(9, "0"))
        want = int(ts[i]) if ns else int(ts[i]) // 1000 * 1000
        assert got_ns == want, i
        assert int(r[1]) == frames.wirelen[i]
        assert int(r[2]) == frames.caplen[i]
        assert r[3] == _ip(int(fields["ip_src"][i])) and r[4] == _ip(int(fields["ip_dst"][i]))
        assert int(r[5]) == fields["sport"][i] and int(r[6]) == fields["dport"][i]
        assert int(r[7]) == fields["seq"][i] and int(r[8]) == fields["ack"][i]
        assert int(r[9]) == fields["payload_len"][i]
        assert int(r[10], 16) == fields["ip_id"][i]
        assert r[11] == "1"   # ip.checksum.status: 1 = good (0 bad, 2 unverified)
        assert int(r[12], 16) == fields["flags"][i]


@pytest.mark.parametrize("snaplen", [262144, 96])
@pytest.mark.parametrize(("write", "name", "ns"), [(write_pcap, "x.pcap", False),
                                                   (write_pcapng, "x.pcapng", True)])
def test_round_trip_through_tshark(tmp_path: Path, tshark: str, write: Callable[..., object],
                                   name: str, ns: bool, snaplen: int) -> None:
    """pcap keeps µs (tshark reads the µs-truncated time), pcapng keeps ns."""
    ts, fields, frames = _batch(snaplen=snaplen)
    path = tmp_path / name
    write(path, ts, frames, snaplen=snaplen)
    _check_against_tshark(_tshark(tshark, path), ts, fields, frames, ns=ns)


@pytest.mark.parametrize("snaplen", [262144, 96])
def test_pcapng_names_its_interface(tmp_path: Path, tshark: str, snaplen: int) -> None:
    ts, _, frames = _batch(snaplen=snaplen)
    path = tmp_path / "x.pcapng"
    write_pcapng(path, ts, frames, snaplen=snaplen)
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.interface_name",
                          "-c", "1"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "eth0"


def test_payload_bytes_come_from_content(tmp_path: Path, tshark: str) -> None:
    """Hand check: a frame whose payload starts at position 0 begins with the literal."""
    ts, fields, _ = _batch(n=3)
    fields["payload_len"] = np.array([0, 20, 10])
    fields["content_pos"] = np.array([0, 0, 5])
    frames = build_frames(**fields, content=_content(), snaplen=262144)
    path = tmp_path / "p.pcap"
    write_pcap(path, ts, frames)
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "tcp.payload"],
                         capture_output=True, text=True, check=True).stdout.split()
    pattern = [97 + (p * 7 + p // 26) % 26 for p in range(7, 20)]
    assert bytes.fromhex(out[0]) == b"HELLO\r\n" + bytes(pattern)
    assert bytes.fromhex(out[1])[:2] == b"\r\n" and len(bytes.fromhex(out[1])) == 10


def test_gso_sized_frames_built_per_batch(tmp_path: Path, tshark: str) -> None:
    """64 KB-class frames, built by a callable source; every payload byte is the content's."""
    ts, fields, _ = _batch(n=4)
    fields["flags"] = np.full(4, ACK)
    fields["payload_len"] = np.array([0, 60000, 1460, 30000])
    fields["content_pos"] = np.array([0, 3, 5000, 1])
    content = _content()

    def build(lo: int, hi: int):
        return build_frames(**{k: v[lo:hi] for k, v in fields.items()}, content=content,
                            snaplen=262144)

    path = tmp_path / "gso.pcap"
    write_pcap(path, ts, build)
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-E", "separator=,",
                          "-e", "frame.len", "-e", "tcp.len", "-e", "tcp.payload"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    for line, plen, pos in zip(out, fields["payload_len"], fields["content_pos"], strict=True):
        flen, tlen, payload = line.split(",")
        assert int(flen) == 54 + plen and int(tlen) == plen
        want = content.bytes_at(np.arange(pos, pos + plen)).tobytes()
        assert bytes.fromhex(payload) == want


def test_pcap_and_pcapng_through_project_reader(tmp_path: Path) -> None:
    ts, fields, frames = _batch(snaplen=128)
    write_pcap(tmp_path / "a.pcap", ts, frames, snaplen=128)
    write_pcapng(tmp_path / "a.pcapng", ts, frames, snaplen=128)
    for name, want_ts in (("a.pcap", ts // 1000 * 1000), ("a.pcapng", ts)):
        t = packets.read_packets(tmp_path / name)
        assert len(t) == len(ts)
        assert (t["ts_ns"].to_numpy(dtype=np.int64) == want_ts).all()
        assert (t["tcp_seq"].to_numpy(dtype=np.int64) == fields["seq"]).all()
        assert (t["tcp_ack"].to_numpy(dtype=np.int64) == fields["ack"]).all()
        assert (t["sport"].to_numpy(dtype=np.int64) == fields["sport"]).all()
        assert (t["payload_len"].to_numpy(dtype=np.int64) == fields["payload_len"]).all()
        assert (t["caplen"].to_numpy() == frames.caplen).all()
        assert (t["wirelen"].to_numpy() == frames.wirelen).all()


# ---------------------------------------------------------------- xentrace

def _records():
    """A hand-made trace: 3 CPUs, records with and without timestamps."""
    cpu = np.array([0, 0, 1, 2, 0, 1, 2, 2])
    tsc = np.array([1000, 1100, 1050, 1200, 5_000_000, 5_000_100, 1300, 9_000_000],
                   dtype=np.uint64) + np.uint64(2**40)
    event = np.array([0x00021201, 0x0002800a, 0x00802008, 0x0020100d, 0x00082004, 0x0002800b,
                      0x0800f001, 0x00028004], dtype=np.uint32)
    n_extra = np.array([1, 4, 3, 3, 1, 0, 2, 2])
    has_ts = np.array([True, True, True, True, False, True, False, True])
    extra = np.zeros((8, 7), dtype=np.uint32)
    for i, k in enumerate(n_extra):
        extra[i, :k] = np.arange(1, k + 1) + 10 * i
    return cpu, tsc, event, extra, n_extra, has_ts


def _decode(data: bytes) -> list[tuple[int, int, int | None, tuple[int, ...]]]:
    """Independent decoder: (cpu, event, tsc or None, words) for every non-meta record."""
    out = []
    pos = 0
    while pos < len(data):
        hdr, cpu, size = struct.unpack_from("<IiI", data, pos)
        assert hdr == 0x2001F003
        pos += 12
        end = pos + size
        while pos < end:
            (h,) = struct.unpack_from("<I", data, pos)
            n, c = (h >> 28) & 7, h >> 31
            pos += 4
            tsc = None
            if c:
                lo, hi = struct.unpack_from("<II", data, pos)
                tsc = lo | hi << 32
                pos += 8
            words = struct.unpack_from(f"<{n}I", data, pos)
            pos += 4 * n
            out.append((cpu, h & 0x0FFFFFFF, tsc, words))
        assert pos == end
    return out


def test_xentrace_independent_decoder(tmp_path: Path) -> None:
    cpu, tsc, event, extra, n_extra, has_ts = _records()
    path = tmp_path / "t.bin"
    write_xentrace(path, cpu, tsc, event, extra, n_extra, has_ts, window_cycles=1_000_000)
    got = _decode(path.read_bytes())
    # windows: period 0 holds cpu 0 (2), cpu 1 (1), cpu 2 (2: 0x0020100d, guest); then
    # period 4 cpu 0 (inj_virq), period 5 cpu 1 (timer), period 8 cpu 2 (wake)
    assert [g[0] for g in got] == [0, 0, 1, 2, 2, 0, 1, 2]
    want_order = [0, 1, 2, 3, 6, 4, 5, 7]
    for g, i in zip(got, want_order, strict=True):
        assert g[1] == event[i]
        assert g[2] == (int(tsc[i]) if has_ts[i] else None)
        assert g[3] == tuple(int(x) for x in extra[i, :n_extra[i]])


def test_xentrace_through_project_reader(tmp_path: Path) -> None:
    cpu, tsc, event, extra, n_extra, has_ts = _records()
    path = tmp_path / "t.bin"
    write_xentrace(path, cpu, tsc, event, extra, n_extra, has_ts, window_cycles=1_000_000)
    trace = xt.read_xentrace(path)
    ev = trace.events
    assert len(ev) == 8
    assert sorted(ev["event"].tolist()) == sorted(event.tolist())
    hc = ev[ev["event"] == 0x0020100D].iloc[0]
    assert int(hc["tsc"]) == int(tsc[3]) and int(hc["cpu"]) == 2
    # the record without a timestamp takes its CPU's last one (cpu 0 → tsc[1])
    virq = ev[ev["event"] == 0x00082004].iloc[0]
    assert int(virq["tsc"]) == int(tsc[1])
    irq = ev[ev["event"] == 0x00802008].iloc[0]
    assert int(irq["w0"]) == 21 and int(irq["w2"]) == 23


# ---------------------------------------------------------------- strace

def test_strace_quote_escapes() -> None:
    assert strace_quote(b'a"b\\c\r\n\t\x01', 9) == '"a\\"b\\\\c\\r\\n\\t\\1"'
    # as strace: three octal digits when an octal digit follows, \v and \f by name
    assert strace_quote(b"\x001\x012\x018\x0b\x0c\xff", 9) == \
        '"\\0001\\0012\\18\\v\\f\\377"'
    assert strace_quote(b"x" * 70, 70) == '"' + "x" * 64 + '"...'
    assert strace_quote(b"x" * 64, 64) == '"' + "x" * 64 + '"'


def test_strace_lines_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "app.strace"
    entry = np.array([T0 + 1_234_567_891, T0 + 1_300_000_000])
    dur = np.array([12_000, 5_000])
    calls = ['read(3, "VALUE k1 0 5\\r\\nabc", 16384) = 17',
             "read(3, 0x7ffd5c1e2a40, 16384) = -1 EAGAIN (Resource temporarily unavailable)"]
    write_strace(path, 4242, entry, dur, calls)
    lines = path.read_text().splitlines()
    assert lines[0] == ('4242  1767229201.234567 read(3, "VALUE k1 0 5\\r\\nabc", 16384) = 17 '
                        "<0.000012>")
    t = socket_log.read_socket_log(path)
    assert t["ts_ns"].tolist() == [T0 + 1_234_567_000 + 12_000, T0 + 1_300_000_000 + 5_000]
    assert t["bytes"].tolist() == [17, 0]
    assert t["data"].iloc[0] == b"VALUE k1 0 5\r\nabc"
    assert t["errno"].iloc[1] == "EAGAIN"


def test_strace_binary_payload_round_trip(tmp_path: Path) -> None:
    payloads = [bytes(range(64)), b"\x001\x012\x0189", bytes(range(192, 256))]
    calls = [f"read(3, {strace_quote(p, len(p))}, 4096) = {len(p)}" for p in payloads]
    path = tmp_path / "bin.strace"
    write_strace(path, 7, T0 + np.arange(3) * 10**6, np.full(3, 1000), calls)
    assert list(socket_log.read_socket_log(path)["data"]) == payloads
