"""Ingest benchmark: ``xenlat packets`` and ``xenlat info`` beside tcpdump, capinfos, tshark, cat.

Builds (once, under ``benchmarks/out/`` or ``--path``) two captures of N packets (default
1,000,000), each in pcap and pcapng: ``mixed`` (Ethernet/IPv4, 80 % TCP and 20 % UDP, random
payloads, half 1514-byte frames and half 60..1514: ~1.2 GB) and ``tcp`` (random-payload TCP
segments only, lengths as in ``mixed``). Then, in paired and interleaved rounds
(``benchmarks/paired.py``: medians with min–max, the per-round ratio to the peer, the load
average), it times as whole processes with output to /dev/null:

- ``xenlat packets FILE`` to CSV and to Parquet, against ``tcpdump -nn -tt -S -r FILE`` (the
  one fixed tcpdump command line) and ``cat FILE`` (the floor: reading the bytes);
- ``xenlat info FILE`` against ``capinfos`` with every field but the hashes;
- on a 10-packet file: ``xenlat packets``, ``info``, ``--help``, ``--version`` against tcpdump,
  capinfos and ``python -c pass`` (the interpreter's own start);
- ``tshark -T fields`` with the fields xenlat writes, on the first ``--tshark-packets`` packets
  (it is ~20x slower), extrapolated linearly and said so.

Run by hand, never in the tests::

    python benchmarks/ingest.py                       # everything, 1,000,000 packets
    python benchmarks/ingest.py --only packets --captures mixed.pcap --rounds 5
    python benchmarks/ingest.py --only packets,info --against /tmp/main-src   # before/after

``--against DIR`` also times another checkout's sources (``DIR/xentrace_cli``, byte-compiled
first) in the same interleaved rounds, so a change is measured beside what it changes.

The first rows of xenlat's CSV are compared with tshark's fields (``--verify``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from paired import interleaved, table, timed

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
CHUNK_PACKETS = 50_000
TSHARK_FIELDS = ["frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "ip.src",
                 "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport", "tcp.seq_raw",
                 "tcp.ack_raw", "tcp.len", "udp.srcport", "udp.dstport", "ip.id"]


def _put(buf: np.ndarray, pos: np.ndarray, values: np.ndarray, nbytes: int,
         little: bool = False) -> None:
    """Write ``nbytes``-byte integers at byte offsets ``pos`` (big-endian unless ``little``)."""
    values = values.astype(np.uint64)
    for k in range(nbytes):
        shift = 8 * k if little else 8 * (nbytes - 1 - k)
        buf[pos + k] = ((values >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


def _frames(rng: np.random.Generator, n: int, first: int, tcp_share: float = 0.8
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n Ethernet/IPv4/TCP-or-UDP frames packed back to back: (bytes, offsets, lengths)."""
    tcp = rng.random(n) < tcp_share
    l4 = np.where(tcp, 20, 8)
    # half full-size frames, half uniform 60..1514: ~1,150 bytes on average (~1.2 GB per 1M)
    wirelen = np.where(rng.random(n) < 0.5, 1514, rng.integers(60, 1515, n))
    wirelen = np.maximum(wirelen, 14 + 20 + l4)
    offs = np.concatenate([[0], np.cumsum(wirelen)[:-1]])
    buf = rng.integers(0, 256, int(wirelen.sum()), dtype=np.uint8)
    _put(buf, offs + 0, np.full(n, 0x02163E000001), 6)
    _put(buf, offs + 6, np.full(n, 0x02163E000002), 6)
    _put(buf, offs + 12, np.full(n, 0x0800), 2)
    ip = offs + 14
    buf[ip] = 0x45
    buf[ip + 1] = 0
    _put(buf, ip + 2, wirelen - 14, 2)
    _put(buf, ip + 4, (np.arange(first, first + n) & 0xFFFF), 2)
    _put(buf, ip + 6, np.full(n, 0x4000), 2)
    buf[ip + 8] = 64
    buf[ip + 9] = np.where(tcp, 6, 17).astype(np.uint8)
    _put(buf, ip + 10, np.zeros(n), 2)
    host = rng.integers(1, 50, n)
    _put(buf, ip + 12, 0x0A000000 + host, 4)
    _put(buf, ip + 16, np.full(n, 0x0A0000FE), 4)
    t = ip + 20
    _put(buf, t, 1024 + rng.integers(0, 2000, n), 2)
    # ports tcpdump does not dissect further (port 53 with random bytes would send it through
    # its DNS printer and make the baseline slower than it is on real traffic)
    _put(buf, t + 2, np.where(tcp, 11211, 5001), 2)
    _put(buf, t + 4, rng.integers(0, 2**32, n), 4)
    tt = t[tcp]
    _put(buf, tt + 8, rng.integers(0, 2**32, len(tt)), 4)
    buf[tt + 12] = 0x50
    buf[tt + 13] = 0x18
    _put(buf, t[~tcp] + 4, (wirelen - 34)[~tcp], 2)
    return buf, offs, wirelen


def make_capture(path: Path, packets: int, pcapng: bool, seed: int = 1,
                 tcp_share: float = 0.8) -> None:
    """Write a benchmark capture (pcap µs, or pcapng with one Ethernet interface)."""
    rng = np.random.default_rng(seed)
    t0_ns = 1_700_000_000 * 10**9
    with open(path, "wb") as fh:
        if pcapng:
            fh.write(np.array([0x0A0D0D0A, 28, 0x1A2B3C4D], "<u4").tobytes()
                     + np.array([1, 0], "<u2").tobytes() + np.array([-1], "<i8").tobytes()
                     + np.array([28], "<u4").tobytes())
            # IDB: linktype 1, snaplen 0, if_tsresol = 9, if_name "bench0"
            opts = (np.array([9, 1], "<u2").tobytes() + b"\x09\0\0\0"
                    + np.array([2, 6], "<u2").tobytes() + b"bench0\0\0"
                    + b"\0\0\0\0")
            blen = 16 + len(opts) + 4
            fh.write(np.array([1, blen], "<u4").tobytes() + np.array([1, 0], "<u2").tobytes()
                     + np.array([0], "<u4").tobytes() + opts + np.array([blen], "<u4").tobytes())
        else:
            fh.write(np.array([0xA1B2C3D4], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
                     + np.array([0, 0, 262144, 1], "<u4").tobytes())
        done = 0
        while done < packets:
            n = min(CHUNK_PACKETS, packets - done)
            data, offs, wirelen = _frames(rng, n, done, tcp_share)
            ts_ns = t0_ns + (np.arange(done, done + n, dtype=np.int64) * 20_000
                             + rng.integers(0, 10_000, n))
            hdr = 28 if pcapng else 16
            pad = ((wirelen + 3) & ~3) - wirelen if pcapng else np.zeros(n, dtype=np.int64)
            rec = hdr + wirelen + pad + (4 if pcapng else 0)
            out_offs = np.concatenate([[0], np.cumsum(rec)[:-1]])
            out = np.zeros(int(rec.sum()), dtype=np.uint8)
            if pcapng:
                _put(out, out_offs, np.full(n, 6), 4, little=True)
                _put(out, out_offs + 4, rec, 4, little=True)
                _put(out, out_offs + 8, np.zeros(n), 4, little=True)
                _put(out, out_offs + 12, ts_ns >> 32, 4, little=True)
                _put(out, out_offs + 16, ts_ns & 0xFFFFFFFF, 4, little=True)
                _put(out, out_offs + 20, wirelen, 4, little=True)
                _put(out, out_offs + 24, wirelen, 4, little=True)
                _put(out, out_offs + rec - 4, rec, 4, little=True)
            else:
                _put(out, out_offs, ts_ns // 10**9, 4, little=True)
                _put(out, out_offs + 4, (ts_ns % 10**9) // 1000, 4, little=True)
                _put(out, out_offs + 8, wirelen, 4, little=True)
                _put(out, out_offs + 12, wirelen, 4, little=True)
            # copy each frame's bytes after its header: one gather over all bytes of the chunk
            dst = np.repeat(out_offs + hdr - offs, wirelen) + np.arange(len(data))
            out[dst] = data
            fh.write(out.tobytes())
            done += n


SCAPY_SNIPPET = """
import sys
from scapy.all import PcapReader, IP, TCP, UDP
n = 0
rows = []
for pkt in PcapReader(sys.argv[1]):
    ip = pkt.getlayer(IP)
    t4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    rows.append((pkt.time, len(pkt), ip.src if ip else None, ip.dst if ip else None,
                 t4.sport if t4 else None, t4.dport if t4 else None))
    n += 1
    if n >= int(sys.argv[2]):
        break
"""


def verify(cap: Path, csv_out: Path, rows: int) -> int:
    """Compare the first ``rows`` rows of xenlat's CSV with tshark's fields: mismatching cells."""
    import csv

    cmd = ["tshark", "-n", "-r", str(cap), "-c", str(rows), "--disable-protocol", "thrift",
           "-T", "fields", "-E", "separator=,"]
    for field in ("frame.number", "frame.time_epoch", "frame.len", "ip.src", "ip.dst",
                  "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport", "tcp.seq_raw",
                  "tcp.ack_raw", "tcp.len", "ip.id"):
        cmd += ["-e", field]
    ref = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    bad = 0
    with open(csv_out, newline="") as fh:
        ours = csv.DictReader(fh)
        for line, row in zip(ref, ours, strict=False):
            (number, epoch, wirelen, src, dst, tsport, usport, tdport, udport, seq, ack, tlen,
             ip_id) = line.split(",")
            want = [number, epoch.replace(".", ""), wirelen, src, dst, tsport or usport,
                    tdport or udport, seq, ack, str(int(ip_id, 16))]
            got = [row[k] for k in ("frame", "ts_ns", "wirelen", "src", "dst", "sport", "dport",
                                    "tcp_seq", "tcp_ack", "ip_id")]
            bad += sum(w != g for w, g in zip(want, got, strict=True))
            bad += bool(tlen) and tlen != row["payload_len"]
    return bad


#: the captures built: name -> (format, share of TCP among the frames)
CAPTURES = {"mixed.pcap": ("pcap", 0.8), "mixed.pcapng": ("pcapng", 0.8),
            "tcp.pcap": ("pcap", 1.0), "tcp.pcapng": ("pcapng", 1.0)}
#: capinfos with every field of its default report but the hashes (-H), which xenlat does not
#: compute
CAPINFOS = ["capinfos", "-t", "-E", "-I", "-F", "-k", "-c", "-s", "-d", "-l", "-u", "-a", "-e",
            "-o", "-y", "-i", "-z", "-x"]
TCPDUMP = ["tcpdump", "-nn", "-tt", "-S", "-r"]


def build(out_dir: Path, name: str, packets: int, rebuild: bool) -> Path:
    """The capture ``name`` of ``packets`` packets, built in a child process if missing."""
    fmt, share = CAPTURES[name]
    cap = out_dir / f"ingest-{packets}-{name}"
    if rebuild or not cap.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--build", str(cap), str(packets), fmt,
                        str(share)], check=True)
        print(f"built {cap} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return cap


def against_command(against: Path | None) -> list[str] | None:
    """A command line that runs xenlat from another checkout's sources (None: none given)."""
    if against is None:
        return None
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(against / "xentrace_cli")],
                   check=True)
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(against)!r}); "
            "from xentrace_cli.cli import main; sys.argv[0] = 'xenlat'; main()"]


def bench_packets(cap: Path, packets: int, out_dir: Path, rounds: int,
                  against: list[str] | None = None) -> None:
    xenlat = shutil.which("xenlat") or "xenlat"
    size = cap.stat().st_size
    print(f"\n== packets: {cap.name}: {packets:,} packets, {size / 1e6:,.0f} MB")
    commands = {
        "tcpdump -nn -tt -S -r FILE": [*TCPDUMP, str(cap)],
        "xenlat packets FILE (csv)": [xenlat, "packets", str(cap), "--no-progress"],
        "xenlat packets FILE --format parquet -o F": [
            xenlat, "packets", str(cap), "--format", "parquet", "-o",
            str(out_dir / "ingest.parquet"), "--no-progress"],
        "cat FILE": ["cat", str(cap)],
    }
    if against is not None:
        commands["the same (csv), other sources"] = [*against, "packets", str(cap),
                                                     "--no-progress"]
        commands["the same (parquet), other sources"] = [
            *against, "packets", str(cap), "--format", "parquet", "-o",
            str(out_dir / "ingest.against.parquet"), "--no-progress"]
    runs = interleaved(commands, rounds)
    print(table(runs, "tcpdump -nn -tt -S -r FILE", packets, size))


def bench_info(cap: Path, packets: int, rounds: int, against: list[str] | None = None
               ) -> None:
    xenlat = shutil.which("xenlat") or "xenlat"
    print(f"\n== info: {cap.name}: {packets:,} packets")
    commands = {"capinfos (all but hashes) FILE": [*CAPINFOS, str(cap)],
                "xenlat info FILE": [xenlat, "info", str(cap), "--no-progress"],
                "cat FILE": ["cat", str(cap)]}
    if against is not None:
        commands["the same, other sources"] = [*against, "info", str(cap), "--no-progress"]
    runs = interleaved(commands, rounds)
    print(table(runs, "capinfos (all but hashes) FILE", packets, cap.stat().st_size))


def compile_package() -> str:
    """Byte-compile xenlat's package where it is imported from, as ``pip install`` does: an
    editable install run with PYTHONDONTWRITEBYTECODE=1 (as on the development machine)
    would otherwise compile every module from source at each start (~0.1 s)."""
    where = subprocess.run([sys.executable, "-c", "import xentrace_cli, os; "
                            "print(os.path.dirname(xentrace_cli.__file__))"],
                           check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", where], check=True)
    return where


def bench_small(out_dir: Path, rounds: int) -> None:
    small = out_dir / "ingest-10.pcap"
    if not small.exists():
        make_capture(small, 10, pcapng=False)
    xenlat = shutil.which("xenlat") or "xenlat"
    print(f"\n(byte-compiled {compile_package()} first, as an install does)")
    print(f"\n== a small file: {small.name}: 10 packets")
    commands = {
        "tcpdump -nn -tt -S -r FILE": [*TCPDUMP, str(small)],
        "xenlat packets FILE (csv)": [xenlat, "packets", str(small), "--no-progress"],
        "xenlat packets FILE --format parquet -o F": [
            xenlat, "packets", str(small), "--format", "parquet", "-o",
            str(out_dir / "small.parquet"), "--no-progress"],
        "xenlat info FILE": [xenlat, "info", str(small), "--no-progress"],
        "xenlat --help": [xenlat, "--help"],
        "xenlat --version": [xenlat, "--version"],
        "capinfos (all but hashes) FILE": [*CAPINFOS, str(small)],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    runs = interleaved(commands, rounds)
    print(table(runs, "tcpdump -nn -tt -S -r FILE"))


def bench_tshark(cap: Path, packets: int, first: int) -> None:
    """tshark -T fields on the first ``first`` packets, extrapolated to the whole file."""
    if not shutil.which("tshark"):
        print("tshark is not installed: skipped")
        return
    k = min(first, packets)
    cmd = ["tshark", "-n", "-r", str(cap), "-c", str(k), "--disable-protocol", "thrift",
           "-T", "fields", "-E", "separator=,"]
    for field in TSHARK_FIELDS:
        cmd += ["-e", field]
    run = timed(cmd)
    scale = packets / k
    print(f"tshark -T fields on {cap.name}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU for the "
          f"first {k:,} packets (load {run.load:.1f}); extrapolated linearly to {packets:,}: "
          f"{run.wall * scale:.0f} s wall, {run.cpu * scale:.0f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--path", type=Path, help="directory for the captures (default "
                    "benchmarks/out)")
    ap.add_argument("--captures", default=",".join(CAPTURES),
                    help="which captures (default: all of %(default)s)")
    ap.add_argument("--only", default="packets,info,small,tshark",
                    help="which benchmarks (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per benchmark")
    ap.add_argument("--tshark-packets", type=int, default=100_000)
    ap.add_argument("--scapy-packets", type=int, default=0, help="also time scapy on this many "
                    "packets of the first capture (0: not)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--against", type=Path, help="also time another checkout's sources (the "
                    "directory holding its xentrace_cli) in the same rounds: before/after")
    ap.add_argument("--verify", type=int, default=20_000, help="rows of xenlat's CSV compared "
                    "with tshark (0: none)")
    ap.add_argument("--build", nargs=4, metavar=("PATH", "PACKETS", "FORMAT", "TCP_SHARE"),
                    help=argparse.SUPPRESS)  # internal: build one capture and exit
    args = ap.parse_args()
    if args.build:
        make_capture(Path(args.build[0]), int(args.build[1]), pcapng=args.build[2] == "pcapng",
                     tcp_share=float(args.build[3]))
        return
    out_dir = args.path or OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    against = against_command(args.against)
    names = [n for n in args.captures.split(",") if n]
    print(f"xenlat ingest benchmark: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start; {args.rounds} paired interleaved rounds")
    if "small" in only:
        bench_small(out_dir, max(args.rounds, 5))
    for name in names:
        cap = build(out_dir, name, args.packets, args.rebuild)
        if "packets" in only:
            bench_packets(cap, args.packets, out_dir, args.rounds, against)
        if "info" in only:
            bench_info(cap, args.packets, args.rounds, against)
        if "tshark" in only:
            bench_tshark(cap, args.packets, args.tshark_packets)
        if args.verify and shutil.which("tshark") and "packets" in only:
            csv_out = out_dir / "ingest-verify.csv"
            subprocess.run([shutil.which("xenlat") or "xenlat", "packets", str(cap), "-o",
                            str(csv_out), "--no-progress"], check=True)
            bad = verify(cap, csv_out, args.verify)
            print(f"xenlat's CSV vs tshark on the first {args.verify:,} packets: {bad} "
                  "mismatching cells")
        if args.scapy_packets and name == names[0]:
            k = min(args.scapy_packets, args.packets)
            run = timed([sys.executable, "-c", SCAPY_SNIPPET, str(cap), str(k)])
            print(f"scapy PcapReader on the first {k:,} packets: {run.wall:.2f} s wall; "
                  f"extrapolated to {args.packets:,}: {run.wall * args.packets / k:.0f} s")


if __name__ == "__main__":
    main()
