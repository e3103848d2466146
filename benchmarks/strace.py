"""Benchmark of sources.socket_log.read_socket_log on a generated 1,000,000-line strace log.

Run by hand: ``python benchmarks/strace.py [--lines N] [--keep PATH]``. The log mimics
``strace -f -ttt -T`` of a threaded memcached-like server: mostly complete read/write calls
with escaped data, some epoll_wait lines, unfinished/resumed pairs across threads, accepts and
closes (``--yy``: fds annotated as ``strace -yy`` shows them). Prints generation time, file
size, read wall and CPU time and the process's peak RSS.

``--file LOG --rounds N`` times whole processes instead, paired and interleaved
(``paired.py``): ``read_socket_log(LOG, data=False)`` as ``analyze`` reads it, beside ``cat``
(the floor) and, with ``--against DIR``, the same read by another checkout's sources (say
``git archive main | tar -x -C DIR``) in the same rounds: a before/after of a change::

    python benchmarks/strace.py --file benchmarks/out/analyze-toy/app.strace --rounds 5 \
        --against /tmp/main-src
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from paired import interleaved, table

from xentrace_cli.sources.socket_log import read_socket_log

#: One read of the log as ``analyze`` does it, in a process of its own (either layout).
READ = ("import sys\n"
        "sys.path[:0] = sys.argv[2:]\n"
        "try:\n    from xentrace_cli.sources.socket_log import read_socket_log\n"
        "except ImportError:\n"
        "    try:\n        from xentrace_cli.sources.strace import read_socket_log\n"
        "    except ImportError:\n        from xentrace_cli.readers.strace import read_socket_log\n"
        "read_socket_log(sys.argv[1], data=False)")


def generate(path: Path, n_lines: int, annotate: bool = False) -> int:
    """Write an ``n_lines`` strace log; return the number of socket-call rows it should give.

    ``annotate``: fds as ``strace -yy`` shows them (``5<TCP:[local->peer]>``).
    """
    rows = 0
    t_us = 1700000000 * 10**6
    conns = {}                     # fd -> port
    next_port = 40000
    with open(path, "w", encoding="ascii") as f:
        i = 0
        while i < n_lines:
            pid = 1000 + i % 4
            t_us += 7
            sec, us = divmod(t_us, 10**6)
            lead = f"[pid {pid:5d}] {sec}.{us:06d} "
            fd = 5 + i % 8
            k = i % 50
            fd_text = (f"{fd}<TCP:[10.0.0.1:11211->10.0.{fd}.2:{conns[fd]}]>"
                       if annotate and fd in conns else str(fd))
            if fd not in conns or k == 49:
                if fd in conns:
                    f.write(f"{lead}close({fd}) = 0 <0.000004>\n")
                    rows += 1
                    i += 1
                    t_us += 3
                    sec, us = divmod(t_us, 10**6)
                    lead = f"[pid {pid:5d}] {sec}.{us:06d} "
                conns[fd] = next_port
                next_port += 1
                f.write(f"{lead}accept4(3, {{sa_family=AF_INET, sin_port=htons({conns[fd]}), "
                        f"sin_addr=inet_addr(\"10.0.{fd}.2\")}}, [128 => 16], SOCK_CLOEXEC) = "
                        f"{fd} <0.000006>\n")
                rows += 1
            elif k % 10 == 3:
                f.write(f"{lead}epoll_wait(4, [{{events=EPOLLIN, data={{u32={fd}, u64={fd}}}}}],"
                        f" 512, -1) = 1 <0.000050>\n")
            elif k % 10 == 7 and i + 1 < n_lines:
                f.write(f"{lead}read({fd_text},  <unfinished ...>\n")
                t_us += 20
                sec, us = divmod(t_us, 10**6)
                other = 1000 + (i + 1) % 4
                if other == pid:
                    other = 1000 + (i + 2) % 4
                f.write(f"[pid {other:5d}] {sec}.{us:06d} futex(0x7f00, FUTEX_WAKE, 1) = 0 "
                        f"<0.000002>\n")
                t_us += 20
                sec, us = divmod(t_us, 10**6)
                f.write(f"[pid {pid:5d}] {sec}.{us:06d} <... read resumed>\"get key:{i}\\r\\n"
                        f"\", 2048) = {len(f'get key:{i}') + 2} <0.000045>\n")
                rows += 1
                i += 2
            elif k % 2 == 0:
                body = f"get key:{i}\\r\\n"
                f.write(f"{lead}read({fd_text}, \"{body}\", 2048) = {len(f'get key:{i}') + 2} "
                        f"<0.000011>\n")
                rows += 1
            else:
                f.write(f"{lead}write({fd_text}, \"VALUE key:{i} 0 4\\r\\n\\0\\1\\177"
                        f"\\377\\r\\nEND\\r\\n\"..., 300) = 300 <0.000013>\n")
                rows += 1
            i += 1
    return rows


def paired_rounds(log: Path, rounds: int, against: Path | None) -> None:
    """Whole-process reads of ``log`` beside ``cat``, and another checkout's when given."""
    with open(log, "rb") as handle:
        lines = sum(1 for _ in handle)
    commands = {"cat LOG (the floor)": ["cat", str(log)],
                "read_socket_log(LOG, data=False)": [sys.executable, "-c", READ, str(log)]}
    if against is not None:
        commands[f"the same, sources of {against}"] = [
            sys.executable, "-c", READ, str(log), str(against)]
    print(f"{log}: {log.stat().st_size / 1e6:.0f} MB, {lines:,} lines")
    print(table(interleaved(commands, rounds), "cat LOG (the floor)", packets=lines,
                size_bytes=log.stat().st_size).replace("packets/s", "  lines/s"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the log here and keep it")
    parser.add_argument("--yy", action="store_true", help="annotate fds as strace -yy does")
    parser.add_argument("--file", type=Path, help="time whole-process reads of this log")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, help="with --file: also another checkout's "
                        "sources (a directory holding xentrace_cli/), in the same rounds")
    args = parser.parse_args()
    if args.file is not None:
        paired_rounds(args.file, args.rounds, args.against)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.strace"
        t0 = time.perf_counter()
        expected = generate(path, args.lines, annotate=args.yy)
        size = os.path.getsize(path)
        t1 = time.perf_counter()
        cpu1 = time.process_time()
        frame = read_socket_log(path)
        t2 = time.perf_counter()
        cpu = time.process_time() - cpu1
    assert len(frame) == expected, (len(frame), expected)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generated {args.lines:,} lines ({size / 2**20:.1f} MiB{', -yy' if args.yy else ''})"
          f" in {t1 - t0:.2f} s")
    print(f"read_socket_log: {len(frame):,} rows in {t2 - t1:.2f} s "
          f"({args.lines / (t2 - t1) / 1e6:.2f} M lines/s), CPU {cpu:.2f} s (all threads); "
          f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
