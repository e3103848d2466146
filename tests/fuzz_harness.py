"""Fuzz targets, one per reader, run through the command line in-process (docs/fuzzing.md).

Each target is a list of seed files and the command that reads them; Hypothesis draws a seed and
a list of mutations (bytes flipped, fields set to boundary values, ranges inserted, deleted,
repeated, the file cut; for text, numbers replaced by huge or odd ones, non-UTF-8 bytes, lines
dropped or repeated), writes the mutated file and runs ``xenlat`` on it with click's standalone
main in this process (``CliRunner``: the same ``XenlatGroup.invoke`` that maps exceptions to exit
codes for the real command). The contract checked on every case: exit 0, 1 or 3 (never 2 or 4),
no traceback, every stderr line one ``xenlat: …`` line, an error naming the file.

``tests/test_fuzz.py`` runs a bounded number of cases per target on every push. The long run:

    python tests/fuzz_harness.py --cases 100000 --batch 4000 --jobs 2 --out fuzz-out

runs batches of cases in worker processes (one Hypothesis run each, so peak RSS is measured per
process) and prints counts per exit code, tracebacks, peak RSS and any failure's minimal input.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
CORPUS = DATA / "corpus"

#: Values a mutated field is set to: the edges of every width a reader parses.
BOUNDARIES = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
              0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 2**63 - 1, 2**63, 2**64 - 1)
#: Texts a number of a text log is replaced by.
ODD_NUMBERS = (b"99999999999999999999999", b"4294967296", b"2147483648", b"9223372036854775808",
               b"18446744073709551616", b"-1", b"-99999999999999999999", b"0", b"1e400",
               b"NaN", b"inf", b"0x10", b"1.5", b"", b"00000000000000000000001",
               b"1" * 400)
#: Bytes a text log is spliced with: non-UTF-8, NUL, quotes, separators, line ends.
ODD_BYTES = (b"\xff", b"\x80", b"\xc3", b"\0", b'"', b",", b"\n", b"\r", b"{", b"}", b"\\",
             b"<", b">", b"=", b" ", b"\xef\xbb\xbf")


# ---- mutations -------------------------------------------------------------------------------
def _at(pos: int, data: bytearray) -> int:
    return pos % (len(data) + 1)


def _binary_op(data: bytearray, op: tuple[Any, ...]) -> None:
    kind, pos, value = op
    at = _at(pos, data)
    if kind == "flip" and at < len(data):
        data[at] ^= 1 << (value % 8)
    elif kind in ("set16", "set32", "set64"):
        width = {"set16": 2, "set32": 4, "set64": 8}[kind]
        order = "little" if value >= 0 else "big"
        word = (abs(value) % (1 << (8 * width))).to_bytes(width, order)
        data[at:at + width] = word
    elif kind == "insert":
        data[at:at] = value
    elif kind == "delete":
        del data[at:at + value]
    elif kind == "repeat":
        piece = data[at:at + value]
        data[at:at] = piece * 3
    elif kind == "truncate":
        del data[at:]


def _text_op(data: bytearray, op: tuple[Any, ...]) -> None:
    kind, pos, value = op
    if kind == "number":
        runs = list(re.finditer(rb"\d+", bytes(data)))
        if runs:
            m = runs[pos % len(runs)]
            data[m.start():m.end()] = value
    elif kind in ("drop_line", "repeat_line"):
        lines = bytes(data).split(b"\n")
        k = pos % len(lines)
        if kind == "drop_line":
            del lines[k]
        else:
            lines[k:k] = [lines[k]] * (value % 2000 + 1)
        data[:] = b"\n".join(lines)
    elif kind == "splice":
        at = _at(pos, data)
        data[at:at] = value
    else:
        _binary_op(data, op)


def _positions() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32)


BINARY_OPS = st.one_of(
    st.tuples(st.just("flip"), _positions(), st.integers(0, 7)),
    st.tuples(st.sampled_from(["set16", "set32", "set64"]), _positions(),
              st.sampled_from(BOUNDARIES) | st.integers(-(2**64), 2**64)),
    st.tuples(st.just("insert"), _positions(), st.binary(max_size=64)),
    st.tuples(st.just("delete"), _positions(), st.integers(1, 256)),
    st.tuples(st.just("repeat"), _positions(), st.integers(1, 512)),
    st.tuples(st.just("truncate"), _positions(), st.none()),
)
TEXT_OPS = st.one_of(
    st.tuples(st.just("number"), _positions(), st.sampled_from(ODD_NUMBERS)),
    st.tuples(st.sampled_from(["drop_line", "repeat_line"]), _positions(),
              st.integers(0, 5000)),
    st.tuples(st.just("splice"), _positions(),
              st.sampled_from(ODD_BYTES) | st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("flip"), _positions(), st.integers(0, 7)),
    st.tuples(st.just("delete"), _positions(), st.integers(1, 64)),
    st.tuples(st.just("truncate"), _positions(), st.none()),
)


def mutate(seed_bytes: bytes, ops: list[tuple[Any, ...]], text: bool) -> bytes:
    data = bytearray(seed_bytes)
    for op in ops:
        (_text_op if text else _binary_op)(data, op)
    return bytes(data)


# ---- targets ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Target:
    """A reader's fuzz target: seed files, the commands that read one, text or binary."""

    name: str
    seeds: Callable[[Path], list[Path]]
    commands: tuple[tuple[str, ...], ...]   #: argv with ``{file}`` for the mutated file
    text: bool


def _captures(*names: str) -> Callable[[Path], list[Path]]:
    def seeds(_work: Path) -> list[Path]:
        return [p for n in names for p in [DATA / "captures" / n, CORPUS / "captures" / n]
                if p.exists()]
    return seeds


def _strace_seeds(_work: Path) -> list[Path]:
    return sorted((DATA / "strace").glob("*.strace"))


def _plain_log_seeds(work: Path) -> list[Path]:
    logs = {
        "reads.csv": "ts,fd,bytes,direction,pid,duration_ns,ret,syscall,peer\n"
                     "1700000000.000100,3,10,rx,7,1500,10,read,10.0.0.1:80\n"
                     "1700000000.000200,3,20,tx,7,900,20,write,10.0.0.1:80\n"
                     "1700000000.000300,3,0,,7,10,0,close,\n",
        "reads_ns.csv": "ts_ns,flow,bytes\n1700000000000100000,a,10\n1700000000000300000,a,5\n",
        "reads.jsonl": '{"ts": 1700000000.0001, "fd": 3, "bytes": 10, "pid": 7}\n'
                       '{"ts": "1700000000.000200", "fd": 3, "bytes": 20, "direction": "tx"}\n'
                       '{"ts_ns": 1700000000000300000, "peer": "[::1]:80", "bytes": 1}\n',
    }
    out = []
    for name, text in logs.items():
        (work / name).write_text(text)
        out.append(work / name)
    return out


def _trace_seeds(work: Path) -> list[Path]:
    """A simulated trace (the analyze set's) and the first 64 KiB of the real one."""
    real = work / "real-head.bin"
    real.write_bytes((CORPUS / "xentrace" / "xentrace-parser-rs__xentrace.bin")
                     .read_bytes()[:64 << 10])
    return [simulated_set(work) / "xentrace.bin", real]


def simulated_set(work: Path) -> Path:
    """A small simulated capture set (20 exchanges of black-0.1s), made once per work dir."""
    out = work / "set"
    if not (out / "xenlat-set.toml").exists():
        from xentrace_cli.simulate import run_scenario

        run_scenario("black-0.1s", out, seed=3, requests=20)
    return out


def _set_file(role: str) -> Callable[[Path], list[Path]]:
    names = {"guest": "guest.pcapng", "backend": "vif5.0.pcap", "phys": "phys.pcap",
             "xentrace": "xentrace.bin", "socket_log": "app.strace"}
    return lambda work: [simulated_set(work) / names[role]]


PCAP_SEEDS = ("ether-le-usec.pcap", "ether-be-nsec.pcap", "ether-modified.pcap",
              "ether-le-nsec.pcap.gz", "ether-snaplen40.pcap", "linktype-113.pcap",
              "linktype-276.pcap", "linktype-101.pcap", "linktype-0.pcap",
              "tcpdump__icmpv6.pcap", "tcpdump__pptp.pcap", "zeek__nflog-http.pcap",
              "pcapplusplus__nanosecs_big_endian.pcap", "filesamples__teardrop.pcap")
PCAPNG_SEEDS = ("multi-section.pcapng", "hadrielk__be_test202.pcapng",
                "hadrielk__le_test100.pcapng", "hadrielk__le_test010.pcapng",
                "hadrielk__be_test008.pcapng", "scapy__macos.pcapng", "python-pcapng__test006.ntar",
                "tcpdump__empty.pcapng")
ANALYZE = ("analyze", "--format", "json")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("pcap", _captures(*PCAP_SEEDS), (("packets", "{file}"), ("info", "{file}")),
           text=False),
    Target("pcapng", _captures(*PCAPNG_SEEDS), (("packets", "{file}"), ("info", "{file}")),
           text=False),
    Target("xentrace", _trace_seeds, (("trace", "{file}", "--format", "json"),), text=False),
    Target("strace", _strace_seeds, ((*ANALYZE, "--socket-log", "{file}"),), text=True),
    Target("socklog", _plain_log_seeds, ((*ANALYZE, "--socket-log", "{file}"),), text=True),
    Target("analyze", lambda work: [], (), text=False),   # argv: Campaign._set_argv
)}
#: the analyze target mutates one source of the simulated set per case
ANALYZE_ROLES = ("guest", "backend", "phys", "xentrace", "socket_log")


# ---- one case --------------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    exit_code: int
    stderr: str
    traceback: bool


class ContractBroken(AssertionError):
    """A case broke the bad-input contract."""


def run_cli(argv: list[str]) -> Outcome:
    """``xenlat ARGV`` in this process, through click's standalone main (as the command)."""
    from click.testing import CliRunner

    from xentrace_cli.cli import main

    result = CliRunner().invoke(main, argv, env={"NO_COLOR": "1", "COLUMNS": "120"})
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    return Outcome(result.exit_code, result.stderr,
                   escaped or "Traceback (most recent call last)" in result.output)


def check(outcome: Outcome, work: Path) -> None:
    """The contract: exit 0/1/3, no traceback, one ``xenlat:`` line per message, an error
    naming its file (all inputs live under ``work``)."""
    if outcome.traceback or outcome.exit_code not in (0, 1, 3):
        raise ContractBroken(f"exit {outcome.exit_code}, traceback={outcome.traceback}: "
                             f"{outcome.stderr[-2000:]}")
    for line in outcome.stderr.splitlines():
        if not line.startswith("xenlat: "):
            raise ContractBroken(f"stderr line not one xenlat message: {line[:300]!r}")
    if outcome.exit_code == 3:
        last = outcome.stderr.splitlines()[-1] if outcome.stderr else ""
        if not last.startswith("xenlat: error: ") or str(work) not in last:
            raise ContractBroken(f"exit 3 without an error naming the file: {last[:300]!r}")


class Campaign:
    """Runs one target's cases in a work directory, counting exit codes."""

    def __init__(self, target: Target, work: Path) -> None:
        self.target = target
        self.work = work
        self.seeds = target.seeds(work) if target.name != "analyze" else []
        if target.name == "analyze":
            simulated_set(work)
        self.counts: collections.Counter[int] = collections.Counter()
        self.tracebacks = 0
        self.cases = 0
        self.failing: tuple[str, bytes] | None = None

    def strategy(self) -> st.SearchStrategy[tuple[Any, ...]]:
        ops = TEXT_OPS if self.target.text else BINARY_OPS
        if self.target.name == "analyze":
            return st.sampled_from(ANALYZE_ROLES).flatmap(lambda role: st.tuples(
                st.just(role), st.lists(TEXT_OPS if role == "socket_log" else BINARY_OPS,
                                        min_size=1, max_size=6), st.just(0)))
        return st.tuples(st.sampled_from(range(len(self.seeds))),
                         st.lists(ops, min_size=1, max_size=6), st.integers(0, 2**16))

    def run_case(self, case: tuple[Any, ...]) -> None:
        which, ops, pick = case
        if self.target.name == "analyze":
            seed_path, text = _set_file(which)(self.work)[0], which == "socket_log"
        else:
            seed_path, text = self.seeds[which], self.target.text
        data = mutate(seed_path.read_bytes(), ops, text)
        folder = self.work / "case"
        folder.mkdir(exist_ok=True)
        file = folder / seed_path.name
        file.write_bytes(data)
        if self.target.name == "analyze":
            argv = self._set_argv(which, file)
        else:
            argv = [a.replace("{file}", str(file))
                    for a in self.target.commands[pick % len(self.target.commands)]]
        outcome = run_cli(argv)
        self.cases += 1
        self.counts[outcome.exit_code] += 1
        self.tracebacks += outcome.traceback
        try:
            check(outcome, self.work)
        except ContractBroken:
            self.failing = (" ".join(argv), data)
            raise

    def _set_argv(self, role: str, mutated: Path) -> list[str]:
        base = simulated_set(self.work)
        files = {"guest": base / "guest.pcapng", "backend": base / "vif5.0.pcap",
                 "phys": base / "phys.pcap", "xentrace": base / "xentrace.bin",
                 "socket_log": base / "app.strace"}
        files[role] = mutated
        return ["analyze", "--format", "json", str(files["guest"]),
                "--backend", str(files["backend"]), "--phys", str(files["phys"]),
                "--xentrace", str(files["xentrace"]), "--socket-log", str(files["socket_log"]),
                "--domid", "5"]

    def run(self, cases: int, rng_seed: int | None = None, derandomize: bool = False) -> None:
        """``cases`` Hypothesis examples (stops at the first broken contract, shrunk)."""
        @settings(max_examples=cases, deadline=None, database=None, derandomize=derandomize,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(self.strategy())
        def fuzz(case: tuple[Any, ...]) -> None:
            self.run_case(case)

        if rng_seed is not None and not derandomize:
            fuzz = seed(rng_seed)(fuzz)
        fuzz()


# ---- the long run: batches in worker processes -----------------------------------------------
#: Share of the cases each target gets in the long run (the analyze pipeline costs most).
SHARES = {"pcap": 0.26, "pcapng": 0.26, "xentrace": 0.14, "strace": 0.16, "socklog": 0.165,
          "analyze": 0.015}


def worker(target: str, cases: int, rng_seed: int, out: Path) -> dict[str, Any]:
    """One batch in this process: counts, peak RSS, and the failure's minimal input."""
    import warnings

    warnings.simplefilter("ignore")          # the CLI shows its own; Python's are noise here
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"xenlat-fuzz-{target}-") as tmp:
        campaign = Campaign(TARGETS[target], Path(tmp))
        start = time.perf_counter()
        failure = None
        try:
            campaign.run(cases, rng_seed=rng_seed)
        except Exception as exc:  # noqa: BLE001 - reported with its minimal input
            failure = f"{type(exc).__name__}: {str(exc)[:1500]}"
            if campaign.failing is not None:
                argv, data = campaign.failing
                name = out / f"crash-{target}-{rng_seed}.bin"
                name.write_bytes(data)
                failure += f" | argv: {argv} | minimal input: {name}"
    return {"target": target, "seed": rng_seed, "cases": campaign.cases,
            "exit_codes": {str(k): v for k, v in sorted(campaign.counts.items())},
            "tracebacks": campaign.tracebacks, "failure": failure,
            "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _batches(total: int, batch: int) -> list[tuple[str, int]]:
    out = []
    for name, share in SHARES.items():
        left = round(total * share)
        while left > 0:
            out.append((name, min(batch, left)))
            left -= batch
    return out


def long_run(total: int, batch: int, jobs: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    plan = _batches(total, batch)

    def launch(i: int, target: str, cases: int) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--worker", target, "--cases", str(cases),
               "--seed", str(1000 + i), "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            return {"target": target, "seed": 1000 + i, "cases": 0, "exit_codes": {},
                    "tracebacks": 0, "peak_rss_mb": 0, "seconds": 0,
                    "failure": f"worker died (exit {done.returncode}): {done.stderr[-1500:]}"}

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(launch, i, t, n) for i, (t, n) in enumerate(plan)]
        results = []
        for f in concurrent.futures.as_completed(futures):
            r = f.result()
            results.append(r)
            print(json.dumps(r), flush=True)
    summary = summarize(results)
    (out / "summary.json").write_text(json.dumps({"summary": summary, "batches": results},
                                                 indent=1))
    return summary


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        per[r["target"]].update(r["exit_codes"])
    total: collections.Counter[str] = collections.Counter()
    for c in per.values():
        total.update(c)
    return {"cases": sum(r["cases"] for r in results),
            "exit_codes": dict(sorted(total.items())),
            "per_target": {t: dict(sorted(c.items())) for t, c in sorted(per.items())},
            "tracebacks": sum(r["tracebacks"] for r in results),
            "failures": [r["failure"] for r in results if r["failure"]],
            "peak_rss_mb_max": max((r["peak_rss_mb"] for r in results), default=0),
            "worker_seconds": round(sum(r["seconds"] for r in results), 1)}


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"))
    parser.add_argument("--worker", choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.cases, args.seed, args.out)))
        return
    summary = long_run(args.cases, args.batch, args.jobs, args.out)
    print(json.dumps(summary, indent=1))
    sys.exit(1 if summary["failures"] or summary["tracebacks"] else 0)


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS.parent))
    os.environ.setdefault("NO_COLOR", "1")
    _main()
