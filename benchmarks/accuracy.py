"""Accuracy of the stage split against the simulator's truth, per scenario, direction, stage.

Simulates every scenario on several seeds, analyzes each set with all its sources, and
scores the analysis against ``truth.csv`` (``xentrace_cli.simulate.score``): per stage the
error's p50 / p95 / max, the share within the stated uncertainty + 2 µs, the share left
unresolved; per scenario the anomalies' recall and precision and the causes named right.

    python benchmarks/accuracy.py --seeds 1 2 3 --requests 400 --write docs/accuracy.md

``--write`` puts the tables into that Markdown file (the one ``docs/accuracy.md`` quotes).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from xentrace_cli.pipeline.analyze import analyze_files
from xentrace_cli.simulate import SCENARIOS, run_scenario
from xentrace_cli.simulate.score import (
    anomaly_scores,
    join_truth,
    read_truth,
    stage_errors,
)
from xentrace_cli.sources.manifest import read_manifest


def score_set(directory: Path) -> tuple[list, object]:
    """Analyze a simulated set with all its sources and score it."""
    sources = read_manifest(directory).sources
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyze_files(sources.guest, backend=sources.backend, phys=sources.phys,
                                 xentrace=sources.xentrace, socket_log=sources.socket_log)
    both = join_truth(analysis.table, read_truth(directory))
    return stage_errors(both), anomaly_scores(both)


def run(scenarios: list[str], seeds: list[int], requests: int, host: str | None = None
        ) -> tuple[dict, dict]:
    """Stage errors pooled over seeds, per (scenario, direction, stage); anomaly scores."""
    stages: dict[tuple[str, str, str], list] = defaultdict(list)
    found: dict[str, list] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for name in scenarios:
            for seed in seeds:
                directory = Path(tmp) / f"{name}-{seed}"
                run_scenario(name, directory, seed=seed, requests=requests, host=host)
                errors, anomalies = score_set(directory)
                for e in errors:
                    stages[(name, e.direction, e.stage)].append(e)
                found[name].append(anomalies)
                print(f"  {name} seed {seed}: {anomalies.found}/{anomalies.injected} found, "
                      f"{anomalies.false} false", flush=True)
    return stages, found


def _pool(errors: list) -> dict[str, float]:
    truth = sum(e.truth for e in errors)
    measured = sum(e.measured for e in errors)
    weight = np.array([e.measured for e in errors], dtype=float)
    w = weight / max(weight.sum(), 1)
    return {
        "rows": truth,
        "unresolved": 1 - measured / truth if truth else 0.0,
        "within": float(np.nansum([e.within * x for e, x in zip(errors, w, strict=True)])),
        "p50": float(np.nanmedian([e.p50_us for e in errors])),
        "p95": float(np.nanmax([e.p95_us for e in errors])),
        "max": float(np.nanmax([e.max_us for e in errors])),
    }


def markdown(stages: dict, found: dict, seeds: list[int], requests: int) -> str:
    lines = [f"Seeds {', '.join(map(str, seeds))}; {requests} requests per set; all sources.",
             "", "| scenario | dir | stage | rows | unresolved | within ±u+2 µs | p50 µs | "
             "p95 µs | max µs |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for (name, way, stage), errors in stages.items():
        p = _pool(errors)
        lines.append(f"| {name} | {way} | {stage} | {p['rows']} | {p['unresolved']:.1%} | "
                     f"{p['within']:.1%} | {p['p50']:.1f} | {p['p95']:.1f} | {p['max']:.1f} |")
    lines += ["", "| scenario | injected | recall | flagged | precision | causes right |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, scores in found.items():
        injected = sum(s.injected for s in scores)
        hit = sum(s.found for s in scores)
        flagged = sum(s.flagged for s in scores)
        false = sum(s.false for s in scores)
        causes = sum(s.causes_right for s in scores)
        recall = f"{hit / injected:.2f}" if injected else "–"
        precision = f"{1 - false / flagged:.2f}" if flagged else "–"
        right = f"{causes}/{injected}" if injected else "–"
        lines.append(f"| {name} | {injected} | {recall} | {flagged} | {precision} | {right} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--host", default=None, help="the simulated host (default: the "
                        "simulator's)")
    parser.add_argument("--write", type=Path, help="Markdown file to put the tables in")
    args = parser.parse_args()
    stages, found = run(args.scenarios, args.seeds, args.requests, args.host)
    text = markdown(stages, found, args.seeds, args.requests)
    print(text)
    if args.write:
        head = args.write.read_text().split("<!-- tables -->")[0] if args.write.exists() \
            else "# Accuracy\n\n"
        args.write.write_text(f"{head}<!-- tables -->\n{text}")


if __name__ == "__main__":
    main()
