"""Benchmark of the scenario simulator and its writers (run by hand, not in the tests).

    python benchmarks/simulate.py                   # ~1 M packets per capture point
    python benchmarks/simulate.py --requests 20000  # smaller
    python benchmarks/simulate.py --writers-only    # the vectorized writers alone, 1 M frames
    python benchmarks/simulate.py --host realistic  # the realistic host (docs/simulator.md)

Prints wall and CPU seconds per phase and the packets per capture point.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from xentrace_cli.simulate import SNAPLEN, run_scenario
from xentrace_cli.simulate.frames import ACK, Content, build_frames, mac_to_bytes
from xentrace_cli.simulate.writers import write_pcap, write_pcapng

#: About 6.4 guest frames per request in the healthy scenario.
REQUESTS_FOR_1M = 160_000


def _timed(label: str, fn, *args, **kwargs):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    print(f"{label:28s} wall {time.perf_counter() - w:7.2f} s   cpu "
          f"{time.process_time() - c:7.2f} s")
    return out


def bench_writers(n: int, out: Path, snaplen: int) -> None:
    """Frame building and pcap/pcapng writing of ``n`` MTU frames."""
    rng = np.random.default_rng(1)
    content = Content(np.array([0]), np.array([0]), np.array([0]), np.zeros(1, np.uint8))
    fields = dict(
        eth_src=np.tile(mac_to_bytes("00:16:3e:00:00:05"), (n, 1)),
        eth_dst=np.tile(mac_to_bytes("3c:fd:fe:00:00:01"), (n, 1)),
        ip_src=np.full(n, 0x0A000001), ip_dst=np.full(n, 0x0A000005),
        ip_id=np.arange(n) & 0xFFFF, ttl=np.full(n, 64), sport=np.full(n, 11211),
        dport=np.full(n, 40000), seq=(np.arange(n) * 1460) & 0xFFFFFFFF,
        ack=np.full(n, 1), flags=np.full(n, ACK), window=np.full(n, 65535),
        payload_len=np.full(n, 1460), content_pos=np.arange(n) * 1460)
    ts = 1_767_229_200 * 10**9 + np.cumsum(rng.integers(1000, 3000, n))
    frames = _timed(f"build_frames {n} (s {snaplen})", build_frames, **fields, content=content,
                    snaplen=snaplen)
    _timed("write_pcap", write_pcap, out / "b.pcap", ts, frames, snaplen=snaplen)
    _timed("write_pcapng", write_pcapng, out / "b.pcapng", ts, frames, snaplen=snaplen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="healthy")
    ap.add_argument("--requests", type=int, default=REQUESTS_FOR_1M)
    ap.add_argument("--writers-only", action="store_true")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--snaplen", type=int, default=SNAPLEN)
    ap.add_argument("--host", choices=("toy", "realistic"), default=None,
                    help="the simulated host (default: the scenario's default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.writers_only:
            bench_writers(args.frames, out, args.snaplen)
            return
        files = _timed(f"{args.scenario} x{args.requests}", run_scenario, args.scenario, out,
                       requests=args.requests, host=args.host)
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"{'  in worker processes':28s} cpu {child.ru_utime + child.ru_stime:7.2f} s   "
              f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
        from xentrace_cli.sources.packets import read_packets

        for f in files:
            size = f.stat().st_size / 2**20
            extra = ""
            if f.suffix in (".pcap", ".pcapng"):
                extra = f"  {len(read_packets(f)):,} packets"
            print(f"  {f.name:14s} {size:8.1f} MiB{extra}")


if __name__ == "__main__":
    main()
