"""Reading a fleet dataset: ``check --dataset`` (fleet_gate), ``report --dataset``
(report/fleet) and the queries docs/fleet.md shows, run with DuckDB and with pandas without
xenlat.

Ground truth: each set analyzed on its own (``analyze``), gated on its own (``gate.evaluate``),
and numpy percentiles over the concatenated single-set tables.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA, IN_CI, ROOT
from fleet_fixtures import SETS, analyze_parquet, make_sets

from xentrace_cli.cli import main
from xentrace_cli.fleet.gate import check_dataset
from xentrace_cli.fleet.report import render_fleet_report, write_fleet_report
from xentrace_cli.outputs import gate
from xentrace_cli.outputs.tables import dumps_json
from xentrace_cli.pipeline.analyze import AnalyzeOptions, analyze
from xentrace_cli.sources.manifest import read_manifest

try:
    import distributed
except ImportError:  # skipped where the fleet extra is missing; CI installs it: fail there
    if IN_CI:
        raise
    pytest.skip("Dask distributed not installed (pip install 'xenlat[fleet]')",
                allow_module_level=True)

DOC = ROOT / "docs" / "fleet.md"
BUDGETS = ("remap.p99 < 5ms", "vmm.max < 20ms")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, simulated_set: Callable[..., Path]) -> dict:
    """Four sets, their single-set analyses and tables, and the dataset ``batch`` made."""
    from xentrace_cli.fleet.batch import run_batch

    root = tmp_path_factory.mktemp("fleet")
    sets = make_sets(root / "sets", simulated_set)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:
        outcomes = run_batch(list(sets.values()), root / "fleet",
                             scheduler=cluster.scheduler_address)
    assert {o.status for o in outcomes} == {"analyzed"}
    analyses = {}
    for name, directory in sets.items():
        capture_set = read_manifest(directory)
        analyses[name] = analyze(capture_set.sources, AnalyzeOptions(domid=capture_set.domid))
    tables = {name: analyze_parquet(directory, root / f"{name}.parquet").to_pandas()
              for name, directory in sets.items()}
    hosts = {name: spec[2] or "unknown" for name, spec in SETS.items()}
    return {"root": root, "dataset": root / "fleet", "sets": sets, "analyses": analyses,
            "tables": tables, "hosts": hosts, "outcomes": {o.name: o for o in outcomes}}


# --- check --dataset ---------------------------------------------------------------------------


def test_each_set_is_judged_as_check_judges_it_alone(fleet):
    limits = [gate.parse_budget(text) for text in BUDGETS]
    result = check_dataset(fleet["dataset"], limits)
    assert sorted(v.summary["set"] for v in result.sets) == sorted(SETS)
    for verdict in result.sets:
        alone = gate.evaluate(fleet["analyses"][verdict.summary["set"]], limits)
        assert [(c.verdict, c.measured) for c in verdict.result.checks] == \
            [(c.verdict, pytest.approx(c.measured)) for c in alone.checks]
    # the black-0.1s sets stall in remap (vcpu_runnable): they fail, the others pass
    failed = sorted(v.summary["set"] for v in result.failed_sets)
    assert failed == sorted(n for n, spec in SETS.items() if spec[0] == "black-0.1s")
    assert not result.passed and result.pooled is None


def test_budget_all_pools_every_packet(fleet):
    pooled = [gate.parse_budget("vmm.p99 < 1ms"), gate.parse_budget("socket_read.p99 < 1ms")]
    result = check_dataset(fleet["dataset"], [], pooled)
    everything = pd.concat(fleet["tables"].values(), ignore_index=True)
    rx = everything[everything["direction"] == "rx"]
    for check, column in zip(result.pooled.checks, ("vmm_us", "socket_read_us"), strict=True):
        values = rx[column].dropna().to_numpy()
        assert check.measured == pytest.approx(np.percentile(values, 99))
    verdicts = [c.verdict for c in result.pooled.checks]
    assert verdicts == ["pass", "fail"]  # black-0.1s reads ~100 ms late
    assert result.pooled.packets == len(everything)


def test_host_selection(fleet):
    limits = [gate.parse_budget(BUDGETS[0])]
    result = check_dataset(fleet["dataset"], limits, hosts=["xen-a"])
    assert sorted(v.summary["set"] for v in result.sets) == ["a1", "a2"]


def test_junit_has_one_case_per_set_and_budget(fleet, tmp_path):
    import xmlschema

    junit = tmp_path / "gate.xml"
    result = main_result(["check", "--dataset", str(fleet["dataset"]), *budget_args(),
                          "--budget-all", "vmm.p99 < 1ms", "--junit", str(junit)])
    assert result.exit_code == 1
    text = junit.read_text(encoding="utf-8")
    xmlschema.XMLSchema(DATA / "junit-10.xsd").validate(text)
    root = ET.fromstring(text)
    suites = root.findall("testsuite")
    assert len(suites) == len(SETS) + 1
    cases = [(s.get("name"), c.get("classname"), c.get("name"))
             for s in suites for c in s.findall("testcase")]
    assert len(cases) == len(SETS) * len(BUDGETS) + 1
    for name in SETS:
        mine = [c for c in cases if c[1] == f"xenlat.set.{name}.budget"]
        assert [c[2] for c in mine] == list(BUDGETS)
        assert mine[0][0].startswith(f"set {name} ({fleet['hosts'][name]} ")
    assert cases[-1] == ("all sets", "xenlat.all.budget", "vmm.p99 < 1ms")
    failures = [c for s in suites for c in s.findall("testcase") if c.find("failure") is not None]
    assert root.get("failures") == str(len(failures)) == "2"  # the two black-0.1s remap p99s
    assert root.get("tests") == str(len(cases))
    # annotations name the set
    assert result.stderr.count("::error ") == 2
    assert "::set a2 (xen-a 2026-12-06, " in result.stderr


def test_a_baseline_judges_each_set(fleet, tmp_path):
    """A baseline saved from a healthy set: the black-0.1s sets regress, as ``check`` says of
    each alone."""
    saved = tmp_path / "baseline.json"
    result = main_result(["baseline", str(fleet["sets"]["a1"]), "-o", str(saved)])
    assert result.exit_code == 0, result.stderr
    limits = gate.collect_budgets([], None, saved, None)
    fleet_result = check_dataset(fleet["dataset"], limits)
    for verdict in fleet_result.sets:
        name = verdict.summary["set"]
        alone = gate.evaluate(fleet["analyses"][name], limits)
        assert [c.verdict for c in verdict.result.checks] == [c.verdict for c in alone.checks]
        assert verdict.result.baseline is not None
    regressed = {v.summary["set"] for v in fleet_result.failed_sets}
    assert {n for n, spec in SETS.items() if spec[0] == "black-0.1s"} <= regressed
    assert "a1" not in regressed


def test_check_dataset_outputs_are_deterministic(fleet):
    args = ["check", "--dataset", str(fleet["dataset"]), *budget_args(), "--format", "json"]
    one, two = main_result(args), main_result(args)
    assert one.exit_code == two.exit_code == 1
    assert one.stdout == two.stdout
    document = __import__("json").loads(one.stdout)
    assert document["passed"] is False
    assert document["summary"] == "2 of 4 sets passed, 2 failed"
    assert [s["set"] for s in document["sets"]] == ["b2", "a1", "a2", "b1"]


def test_check_dataset_usage_errors(fleet, tmp_path):
    result = main_result(["check", "--dataset", str(tmp_path), "--budget", BUDGETS[0]])
    assert result.exit_code == 3
    assert result.stderr == (f"xenlat: error: {tmp_path}: not a xenlat dataset: no sets/ "
                             "directory in it ('xenlat batch SETS… -o DATASET' writes one)\n")
    guest = fleet["sets"]["a1"] / "guest.pcapng"
    result = main_result(["check", str(guest), "--dataset", str(fleet["dataset"]), "--budget",
                          BUDGETS[0]])
    assert result.exit_code == 2 and "either sources or --dataset" in result.stderr
    result = main_result(["check", str(guest), "--budget-all", BUDGETS[0]])
    assert result.exit_code == 2 and "--budget-all needs --dataset" in result.stderr


# --- report --dataset --------------------------------------------------------------------------


def test_fleet_report_draws_hosts_over_time_and_the_worst_sets(fleet, tmp_path):
    path = write_fleet_report(fleet["dataset"], tmp_path / "fleet.html")
    text = path.read_text(encoding="utf-8")
    assert text == write_fleet_report(fleet["dataset"], tmp_path / "again.html").read_text(
        encoding="utf-8")  # same dataset, same bytes
    for section in ("stages-rx", "stages-tx", "hosts", "worst"):
        assert f'<section id="{section}">' in text
    assert not re.search(r"<script[^>]+src=", text)
    # one p99 line per host in the receive chart's first stage (vmm): the sets' own p99s
    data = figure_data(text, "fleet-rx")
    vmm = {t["name"]: t for t in data if t["visible"] is True}
    assert sorted(vmm) == sorted(f"{h} {s}" for h in set(fleet["hosts"].values())
                                 for s in ("p50", "p99"))
    a = vmm["xen-a p99"]
    assert a["text"] == ["a1", "a2"]  # by start time
    for name, y in zip(a["text"], a["y"], strict=True):
        assert y == pytest.approx(fleet["analyses"][name].stats["vmm"]["p99"], abs=1e-3)
    # worst sets: by receive total p99, largest first
    worst = re.findall(r'<tr[^>]*><td class="text" title="[^"]*">(\w+) <small>',
                       text.split('id="worst-sets"')[1])
    p99 = {n: fleet["analyses"][n].stats["total"]["p99"] for n in SETS}
    assert worst == sorted(SETS, key=lambda n: -p99[n])
    assert "remap vcpu_runnable ×" in text


def test_report_dataset_command(fleet, tmp_path):
    out = tmp_path / "fleet.html"
    result = main_result(["report", "--dataset", str(fleet["dataset"]), "-o", str(out),
                          "--xen-host", "xen-b"])
    assert result.exit_code == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    assert "1 set from 1 Xen host, 2026-12-06 10:00 UTC to 2026-12-06 10:00 UTC" in text
    assert "b1 <small>" in text and "a1 <small>" not in text


def test_an_empty_selection_still_renders(fleet):
    from xentrace_cli.fleet.dataset import read_summaries

    empty = read_summaries(fleet["dataset"]).iloc[0:0]
    text = render_fleet_report(empty, "nothing")
    assert "nothing: no set." in text


# --- the queries of docs/fleet.md --------------------------------------------------------------


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_doc_duckdb_queries(fleet):
    import duckdb

    statements = [s.strip() for block in doc_blocks("sql") for s in block.split(";")
                  if s.strip()]
    assert len(statements) == 4
    con = duckdb.connect()
    results = {}
    for statement in statements:
        title = statement.splitlines()[0].removeprefix("-- ")
        sql = statement.replace("'fleet/", f"'{fleet['root']}/fleet/")
        results[title] = con.sql(sql).df()
    # p99 ring per host per day == numpy's percentile over the single-set tables of that day
    got = results["p99 ring per host per day"]
    rows = []
    for name, table in fleet["tables"].items():
        outcome = fleet["outcomes"][name]
        rx = table[table["direction"] == "rx"]
        rows.append(pd.DataFrame({"xen_host": outcome.xen_host, "date": outcome.date,
                                  "ring_us": rx["ring_us"].dropna()}))
    want = pd.concat(rows).groupby(["xen_host", "date"])["ring_us"]
    assert [(h, str(pd.Timestamp(d).date())) for h, d in zip(got["xen_host"], got["date"],
                                                              strict=True)] == list(want.groups)
    assert list(got["packets"]) == list(want.size())
    assert np.allclose(got["ring_p99_us"], [np.percentile(v, 99) for _, v in want])
    # sets with vcpu_runnable stalls, from the packets and from the summaries
    stalled = {n: int((t["cause"] == "vcpu_runnable").sum()) for n, t in fleet["tables"].items()}
    stalled = {n: c for n, c in stalled.items() if c}
    assert sorted(stalled) == sorted(n for n, s in SETS.items() if s[0] == "black-0.1s")
    got = results["sets with vcpu_runnable stalls"]
    assert dict(zip(got["set"], got["stalled_packets"], strict=True)) == stalled
    got = results["sets with vcpu_runnable stalls, from the summaries"]
    assert got.groupby("set")["count"].sum().to_dict() == stalled
    got = results["each set's transmit ring p99"]
    assert len(got) == 0 or set(got["set"]) <= set(SETS)


def test_doc_pandas_snippet_runs_without_xenlat(fleet):
    [snippet] = doc_blocks("python")
    check = ("assert sys.modules['xentrace_cli'] is None  # never imported\n"
             "print(sorted(ring_p99.index), sorted(stalled['set']))\n")
    script = "import sys\nsys.modules['xentrace_cli'] = None\n" + snippet + check
    done = subprocess.run([sys.executable, "-c", script], cwd=fleet["root"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stalled = sorted(n for n, s in SETS.items() if s[0] == "black-0.1s")
    assert done.stdout == f"{['a1', 'a2']} {stalled}\n"


# --- helpers -----------------------------------------------------------------------------------


def budget_args() -> list[str]:
    return [arg for text in BUDGETS for arg in ("--budget", text)]


def main_result(args: list[str]):
    from click.testing import CliRunner

    return CliRunner().invoke(main, [*args, "--no-progress"])


def figure_data(page: str, div_id: str) -> list[dict]:
    import json

    start = page.index(f'Plotly.newPlot("{div_id}",')
    rest = page[start:].split(",", 1)[1].lstrip()
    data, _ = json.JSONDecoder().raw_decode(rest)
    return data


def test_dumps_json_of_the_result_is_plain(fleet):
    result = check_dataset(fleet["dataset"], [gate.parse_budget(BUDGETS[0])])
    text = dumps_json(result.to_document())
    assert '"set_id"' in text and Path(str(fleet["dataset"])).name in text
