"""Ingest benchmark: ``xenlat packets`` against tshark, tcpdump, scapy and cat, as whole processes.

Builds a capture of N packets (default 1,000,000; Ethernet/IPv4, TCP and UDP, random payloads,
half 1514-byte frames and half 60..1514, ~1.2 GB) under ``benchmarks/out/`` (or ``--path``),
in pcap and pcapng, then times each tool reading it, with its peak RSS (``os.wait4`` rusage
of the child), and prints packets/s and the ratios to xenlat. Run by hand, never in the tests::

    python benchmarks/ingest.py                    # 1,000,000 packets
    python benchmarks/ingest.py --packets 200000 --skip-tshark

tshark runs as ``tshark -n -r FILE --disable-protocol thrift -T fields -E separator=, -e ...``
(the same fields xenlat writes; thrift's heuristic dissector alone costs ~4x); scapy reads a
subset (``--scapy-packets``, default 20,000) and its time is extrapolated linearly (said so in
the output).
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


def _frames(rng: np.random.Generator, n: int, first: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """n Ethernet/IPv4/TCP-or-UDP frames packed back to back: (bytes, offsets, lengths)."""
    tcp = rng.random(n) < 0.8
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


def make_capture(path: Path, packets: int, pcapng: bool, seed: int = 1) -> None:
    """Write the benchmark capture (pcap µs, or pcapng with one Ethernet interface)."""
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
            data, offs, wirelen = _frames(rng, n, done)
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


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """Run a command, stdout to /dev/null: (wall s, CPU s = user + system, peak RSS MiB).

    From ``os.wait4``'s rusage of the child. This script stays small (captures are built in a
    child process) so that the forked child does not start out big.
    """
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        print(f"  ! {' '.join(cmd)} failed: {err[-500:]}", file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--path", type=Path, help="directory for the captures (default "
                    "benchmarks/out)")
    ap.add_argument("--scapy-packets", type=int, default=20_000)
    ap.add_argument("--skip-tshark", action="store_true")
    ap.add_argument("--skip-scapy", action="store_true")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--verify", type=int, default=20_000, help="rows of xenlat's CSV compared "
                    "with tshark (0: none)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the fast tools (best kept)")
    ap.add_argument("--build", nargs=3, metavar=("PATH", "PACKETS", "FORMAT"),
                    help=argparse.SUPPRESS)  # internal: build one capture and exit
    args = ap.parse_args()
    if args.build:
        make_capture(Path(args.build[0]), int(args.build[1]), pcapng=args.build[2] == "pcapng")
        return
    out_dir = args.path or OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    xenlat = shutil.which("xenlat") or "xenlat"
    for fmt in ("pcap", "pcapng"):
        cap = out_dir / f"ingest-{args.packets}.{fmt}"
        if args.rebuild or not cap.exists():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, __file__, "--build", str(cap), str(args.packets),
                            fmt], check=True)
            print(f"built {cap} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        size = cap.stat().st_size
        n = args.packets
        print(f"\n{fmt}: {cap.name}: {n:,} packets, {size / 1e6:,.0f} MB")
        results: list[tuple[str, float, float, int]] = []
        csv_out = out_dir / f"ingest-{fmt}.csv"
        fast = {
            "xenlat packets --format csv -o FILE": [xenlat, "packets", str(cap), "--format",
                                                    "csv", "-o", str(csv_out), "--no-progress"],
            "cat": ["cat", str(cap)],
            "tcpdump -nn -tt -r": ["tcpdump", "-nn", "-tt", "-r", str(cap)],
        }
        # interleaved, so that a busy moment of the machine falls on every tool alike
        runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in fast}
        for _ in range(args.repeat):
            for name, cmd in fast.items():
                runs[name].append(timed(cmd))
        for name, measured in runs.items():
            results.append((name, min(r[0] for r in measured), min(r[1] for r in measured),
                            max(r[2] for r in measured)))
        if shutil.which("tshark") and args.verify:
            bad = verify(cap, csv_out, args.verify)
            print(f"xenlat's CSV vs tshark on the first {args.verify:,} packets: {bad} "
                  "mismatching cells")
        if not args.skip_tshark and shutil.which("tshark"):
            cmd = ["tshark", "-n", "-r", str(cap), "--disable-protocol", "thrift", "-T",
                   "fields", "-E", "separator=,"]
            for field in TSHARK_FIELDS:
                cmd += ["-e", field]
            results.append(("tshark -T fields (--disable-protocol thrift)", *timed(cmd)))
        if not args.skip_scapy and fmt == "pcap":
            k = min(args.scapy_packets, n)
            w, cpu, rss = timed([sys.executable, "-c", SCAPY_SNIPPET, str(cap), str(k)])
            results.append((f"scapy PcapReader ({k:,} packets, extrapolated)", w * n / k,
                            cpu * n / k, rss))
        base = results[0][1]
        print(f"(xenlat, cat, tcpdump: best of {args.repeat} interleaved runs; tshark and "
              f"scapy: one run; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"{'tool':48} {'wall s':>7} {'CPU s':>7} {'packets/s':>11} {'peak RSS':>10} "
              f"{'vs xenlat':>9}")
        for name, wall, cpu, rss in results:
            print(f"{name:48} {wall:7.2f} {cpu:7.2f} {n / wall:11,.0f} {rss:6d} MiB "
                  f"{wall / base:8.1f}x")
        print(f"peak RSS of xenlat / capture size: {results[0][3] * 2**20 / size:.2f}")


if __name__ == "__main__":
    main()
