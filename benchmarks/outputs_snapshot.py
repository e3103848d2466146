"""A snapshot of xenlat's user-visible outputs on the shipped samples, to prove a refactoring
changed none of them.

Runs, as a user would (one ``python -m xentrace_cli`` process per command, no colour, no
progress, a fixed width), on ``sample_pcaps/healthy``, ``sample_pcaps/black-0.1s`` and the
healthy set's guest capture alone: ``analyze`` to CSV, JSON, Parquet and the terminal report,
``report`` (the HTML page), ``check`` with ``--junit`` (its table, JSON and the JUnit file)
and the ``trace`` views (summary table, JSON, ``--dump``). Each output's SHA-256 is stored in a
JSON file; ``--compare`` runs them again and lists every output whose hash differs.

Parquet is compared as the Arrow table it holds (schema, values, and the pandas metadata with
the writer's ``pandas_version`` and pyarrow ``creator.version`` taken out), not as bytes, so
that a library upgrade alone does not show as a change. One line is masked on stderr: asyncio's
``Unknown child process pid N, will report returncode 255``, which ``report`` prints now and
then when pyshark's tshark is reaped twice (a race: seen on main and after, 1 run in 5 or so).
Nothing else: the outputs embed no wall-clock time, and the HTML footer's xenlat version is
part of what is compared.

    python benchmarks/outputs_snapshot.py -o before.json          # on main
    python benchmarks/outputs_snapshot.py --compare before.json   # after a change
    python benchmarks/outputs_snapshot.py --compare before.json --keep out/  # keep the files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path("sample_pcaps")  # relative to ROOT (the cwd of every run): outputs name it
BUDGETS = ["--budget", "socket_read.p99 < 2ms", "--budget", "total.max < 50ms",
           "--budget", "tx.ring.p99 < 50us"]
REAP_RACE = re.compile(rb"^Unknown child process pid \d+, will report returncode 255\n", re.M)


def _inputs() -> dict[str, str]:
    """The analysis inputs by name: two capture sets and one capture alone."""
    return {
        "healthy": str(SAMPLES / "healthy"),
        "black": str(SAMPLES / "black-0.1s"),
        "single": str(SAMPLES / "healthy" / "guest.pcapng"),
    }


def _commands() -> dict[str, tuple[list[str], str | None]]:
    """Each output's name → (xenlat arguments, the output file's name or None for stdout)."""
    cmds: dict[str, tuple[list[str], str | None]] = {}
    for name, src in _inputs().items():
        for fmt in ("csv", "json", "parquet"):
            cmds[f"{name}.analyze.{fmt}"] = (
                ["analyze", src, "--format", fmt, "-o", "{out}"], f"{name}.{fmt}")
        cmds[f"{name}.analyze.table"] = (["analyze", src, "--width", "160"], None)
        cmds[f"{name}.report.html"] = (["report", src, "-o", "{out}"], f"{name}.html")
        cmds[f"{name}.check.table"] = (["check", src, *BUDGETS], None)
        cmds[f"{name}.check.json"] = (["check", src, *BUDGETS, "--format", "json"], None)
        cmds[f"{name}.check.junit"] = (
            ["check", src, *BUDGETS, "--junit", "{out}"], f"{name}.junit.xml")
    for name in ("healthy", "black"):
        trace = str(SAMPLES / ("healthy" if name == "healthy" else "black-0.1s") / "xentrace.bin")
        cmds[f"{name}.trace.table"] = (["trace", trace], None)
        cmds[f"{name}.trace.json"] = (["trace", trace, "--format", "json"], None)
        cmds[f"{name}.trace.dump"] = (["trace", trace, "--dump"], None)
    return cmds


def _zero_under_nulls(column: Any) -> Any:
    """The column with zeros in its numeric null slots: Parquet stores no value there, and
    what the reader leaves in them depends on the page's encoding (plain pages: whatever the
    decode buffer held; dictionary pages: zeros), not on the table."""
    import numpy as np
    import pyarrow as pa

    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        return column
    chunks = []
    for chunk in column.chunks:
        if chunk.null_count == 0 or chunk.offset != 0:
            chunks.append(chunk)
            continue
        values = np.frombuffer(chunk.buffers()[1], dtype=chunk.type.to_pandas_dtype(),
                               count=len(chunk))
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        clean = np.where(valid, values, 0).astype(values.dtype)
        chunks.append(pa.Array.from_buffers(chunk.type, len(chunk),
                                            [chunk.buffers()[0], pa.py_buffer(clean)],
                                            null_count=chunk.null_count))
    return pa.chunked_array(chunks, type=column.type)


def _parquet_digest(path: Path) -> str:
    """The Arrow table's hash, the library versions in its metadata left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    if b"pandas" in meta:
        pandas_meta = json.loads(meta[b"pandas"])
        pandas_meta.pop("pandas_version", None)
        pandas_meta.get("creator", {}).pop("version", None)
        meta[b"pandas"] = json.dumps(pandas_meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    table = pa.table([_zero_under_nulls(table[name]) for name in table.column_names],
                     schema=table.schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def run_all(keep: Path | None = None) -> dict[str, dict[str, object]]:
    """Run every command; → name → {exit code, stdout/file hash, stderr hash}."""
    env = dict(os.environ, NO_COLOR="1", COLUMNS="160", TERM="dumb")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outdir = keep or Path(tmp)
        outdir.mkdir(parents=True, exist_ok=True)
        for name, (args, out_name) in _commands().items():
            out = outdir / (out_name or f"{name}.stdout")
            argv = [a.replace("{out}", str(out)) for a in args]
            proc = subprocess.run([sys.executable, "-m", "xentrace_cli", *argv, "--no-progress"],
                                  capture_output=True, cwd=ROOT, env=env)
            if out_name is None:
                out.write_bytes(proc.stdout)
            (outdir / f"{name}.stderr").write_bytes(proc.stderr)
            digest = (_parquet_digest(out) if out.suffix == ".parquet" and out.exists()
                      else hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else "")
            results[name] = {"exit": proc.returncode, "output": digest,
                             "stderr": hashlib.sha256(REAP_RACE.sub(b"", proc.stderr)).hexdigest()}
            print(f"{name:28} exit {proc.returncode}  {digest[:16]}", file=sys.stderr)
    return results


def compare(before: dict[str, dict[str, object]], after: dict[str, dict[str, object]]) -> list[str]:
    """The lines naming every output (or exit code, or stderr) that differs."""
    diffs = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            diffs.append(f"{name}: only {'after' if old is None else 'before'}")
            continue
        diffs += [f"{name}: {key} differs" for key in ("exit", "output", "stderr")
                  if old[key] != new[key]]
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="write the snapshot here")
    parser.add_argument("--compare", type=Path, help="compare with this earlier snapshot")
    parser.add_argument("--keep", type=Path, help="keep the outputs in this directory")
    opts = parser.parse_args()
    results = run_all(opts.keep)
    if opts.output:
        opts.output.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if opts.compare:
        diffs = compare(json.loads(opts.compare.read_text()), results)
        print("\n".join(diffs) if diffs else
              f"all {len(results)} outputs identical (exit code, output, stderr)")
        return 1 if diffs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
