"""``xenlat batch`` on Dask (fleet.batch) and the dataset it writes (fleet.dataset).

Ground truth: each set's own ``xenlat analyze --format parquet`` output; the simulator's first
packet time and the manifests written here for the partitions; a worker killed for real
(SIGKILL) and a writer process killed in the middle of a file for the crash guarantees.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from conftest import IN_CI
from fleet_fixtures import (
    SIMULATED_DATE,
    analyze_parquet,
    corrupt_copy,
    kill_worker_once,
    make_sets,
)

from xentrace_cli.cli import main
from xentrace_cli.fleet import dataset as ds
from xentrace_cli.fleet.batch import INSTALL_HINT, find_sets, process_set, run_batch
from xentrace_cli.model import TABLE_COLUMNS
from xentrace_cli.sources.packets import read_packets

try:
    import distributed
except ImportError:  # skipped where the fleet extra is missing; CI installs it: fail there
    if IN_CI:
        raise
    pytest.skip("Dask distributed not installed (pip install 'xenlat[fleet]')",
                allow_module_level=True)


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory, simulated_set: Callable[..., Path],
         ) -> dict[str, Path]:
    return make_sets(tmp_path_factory.mktemp("sets"), simulated_set)


@pytest.fixture(scope="module")
def expected(sets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, pa.Table]:
    """Each set's single-set ``analyze --format parquet`` table."""
    out = tmp_path_factory.mktemp("analyze")
    return {name: analyze_parquet(directory, out / f"{name}.parquet")
            for name, directory in sets.items()}


@pytest.fixture(scope="module")
def cluster() -> distributed.LocalCluster:
    """Two single-threaded workers in this process: fast to start, the same scheduler."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as local:
        yield local


@pytest.fixture()
def corrupt(sets: dict[str, Path], tmp_path: Path) -> Path:
    return corrupt_copy(sets["a1"], tmp_path / "corrupt")


def _batch(sets: list[Path], dataset: Path, cluster: distributed.LocalCluster, **kwargs):
    return run_batch(sets, dataset, scheduler=cluster.scheduler_address, **kwargs)


def _visible_files(dataset: Path) -> list[Path]:
    return sorted(dataset.rglob("*.parquet"))


# --- the dataset's rows ------------------------------------------------------------------------


def test_rows_equal_the_single_set_analyses(sets, expected, cluster, tmp_path):
    dataset = tmp_path / "fleet"
    outcomes = _batch(list(sets.values()), dataset, cluster)
    assert [o.status for o in outcomes] == ["analyzed"] * len(sets)
    # read as an operator would: the whole dataset, with pyarrow and no xenlat
    table = pads.dataset(dataset / "packets", partitioning="hive").to_table()
    assert table.num_rows == sum(t.num_rows for t in expected.values())
    for name, want in expected.items():
        mine = table.filter(pa.compute.equal(table["set"], name))
        assert mine.select(list(TABLE_COLUMNS)).equals(want), name
        assert mine.num_rows == want.num_rows > 50
    # each set's outcome says where it went
    by_name = {o.name: o for o in outcomes}
    assert by_name["a1"].partition == "xen_host=xen-a/date=2026-12-05"
    assert by_name["b2"].partition == f"xen_host=unknown/date={SIMULATED_DATE}"
    assert by_name["a2"].packets == expected["a2"].num_rows


def test_schema_is_analyze_parquet_plus_set_columns(sets, expected, cluster, tmp_path):
    dataset = tmp_path / "fleet"
    [outcome] = _batch([sets["a2"]], dataset, cluster)
    path = dataset / "packets" / "xen_host=xen-a" / "date=2026-12-06" / \
        f"{outcome.set_id}.parquet"
    schema = pq.read_schema(path)
    want = expected["a2"].schema
    assert schema.names == [*want.names, "set", "set_id", "started"]
    assert [f.type for f in schema][:len(want)] == [f.type for f in want]
    assert schema.field("started").type == pa.timestamp("us", tz="UTC")
    rows = pq.read_table(path).to_pydict()
    assert set(rows["set"]) == {"a2"} and set(rows["set_id"]) == {outcome.set_id}
    assert {t.isoformat() for t in rows["started"]} == {"2026-12-06T08:00:00+00:00"}


def test_every_set_has_the_same_schema_whatever_its_sources(sets, cluster, tmp_path):
    import shutil

    from xentrace_cli.sources.manifest import write_manifest

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(sets["a1"] / "guest.pcapng", lone / "guest.pcapng")
    write_manifest(lone, {"guest": "guest.pcapng"}, xen_host="xen-a")
    dataset = tmp_path / "fleet"
    outcomes = _batch([lone, sets["a1"]], dataset, cluster)
    assert [o.status for o in outcomes] == ["analyzed", "analyzed"]
    schemas = [pq.read_schema(p) for p in (dataset / "packets").rglob("*.parquet")]
    assert len(schemas) == 2 and schemas[0].equals(schemas[1])
    # the lone set (no start in its manifest: the guest capture's first packet) is whole
    table = pads.dataset(dataset / "packets", partitioning="hive").to_table()
    mine = table.filter(pa.compute.equal(table["set"], "lone"))
    want = analyze_parquet(lone, tmp_path / "lone.parquet")
    assert mine.select(list(TABLE_COLUMNS)).equals(want) and want.num_rows > 0


def test_partitions_come_from_the_manifest_else_the_first_packet(sets, cluster, tmp_path):
    dataset = tmp_path / "fleet"
    _batch(list(sets.values()), dataset, cluster)
    partitions = sorted(str(p.relative_to(dataset / "packets"))
                        for p in (dataset / "packets").glob("*/*"))
    assert partitions == ["xen_host=unknown/date=2026-01-01", "xen_host=xen-a/date=2026-12-05",
                          "xen_host=xen-a/date=2026-12-06", "xen_host=xen-b/date=2026-12-06"]
    summaries = ds.read_summaries(dataset)
    assert list(summaries["set"]) == ["b2", "a1", "a2", "b1"]  # host, then start
    b2 = summaries[summaries["set"] == "b2"].iloc[0]
    # b2's manifest has no start: the phys capture's first packet (230 µs after the
    # simulator's t_begin, 2026-01-01 01:00 UTC)
    first_ns = int(read_packets(sets["b2"] / "phys.pcap")["ts_ns"].min())
    assert b2["started"].value // 1000 == first_ns // 1000  # µs, as the column keeps it
    assert b2["started"].isoformat() == "2026-01-01T01:00:00.000230+00:00"


def test_summary_holds_stats_alignment_and_anomalies(sets, expected, cluster, tmp_path):
    from xentrace_cli.pipeline.stats import stage_stats

    dataset = tmp_path / "fleet"
    _batch([sets["a2"]], dataset, cluster)
    [row] = ds.read_summaries(dataset).to_dict("records")
    table = expected["a2"].to_pandas()
    stats = ds.stage_stats_of(row)
    for key, want in stage_stats(table, ["ring", "remap", "socket_read", "tx.ring",
                                         "total"]).items():
        assert stats[key]["count"] == want["count"]
        assert stats[key]["p99"] == pytest.approx(want["p99"])
        assert stats[key]["anomalies"] == want["anomalies"]
    assert row["packets"] == len(table)
    assert row["rx_packets"] + row["tx_packets"] == len(table)
    assert {a["pair"]: a["quality"] for a in row["alignment"]} == \
        {"guest->dom0": "bounded", "tsc->dom0": "bounded"}
    # anomalies by stage and cause, counted by hand from the analysis
    flagged = table[table["anomaly"] != ""]
    want = flagged.groupby(["anomaly", "cause"]).size().to_dict()
    assert {(a["stage"], a["cause"]): a["count"] for a in row["anomalies"]} == want
    assert any(cause == "vcpu_runnable" for (_, cause) in want)  # black-0.1s's stall


# --- failures, reruns, crashes -----------------------------------------------------------------


def test_a_corrupt_set_fails_alone_with_its_message(sets, corrupt, cluster, tmp_path):
    dataset = tmp_path / "fleet"
    outcomes = _batch([sets["a1"], corrupt, sets["b1"]], dataset, cluster)
    assert [o.status for o in outcomes] == ["analyzed", "failed", "analyzed"]
    failed = outcomes[1]
    assert failed.message == (f"{corrupt / 'guest.pcapng'}: offset 0: not a pcap or pcapng "
                              "capture (file starts with 6e6f7420)")
    assert failed.exit_code == 3
    assert set(ds.read_summaries(dataset)["set"]) == {"a1", "b1"}


def test_rerun_skips_what_is_done_and_redoes_a_new_version(sets, cluster, tmp_path,
                                                          monkeypatch):
    dataset = tmp_path / "fleet"
    first = _batch([sets["a1"], sets["b1"]], dataset, cluster)
    before = {p: p.stat().st_mtime_ns for p in _visible_files(dataset)}
    again = _batch([sets["b1"], sets["a1"]], dataset, cluster)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert {o.set_id for o in again} == {o.set_id for o in first}
    assert {p: p.stat().st_mtime_ns for p in _visible_files(dataset)} == before
    # another xenlat version analyzes them again, into the same files (no duplicate rows)
    monkeypatch.setattr("xentrace_cli.__version__", "0.0.0-test")
    redone = _batch([sets["a1"], sets["b1"]], dataset, cluster)
    assert [o.status for o in redone] == ["analyzed", "analyzed"]
    assert sorted(before) == _visible_files(dataset)
    assert set(ds.read_summaries(dataset)["xenlat_version"]) == {"0.0.0-test"}
    assert len(ds.read_packets(dataset, ["set"])) == sum(o.packets for o in first)


def test_a_changed_set_is_a_new_set(sets, cluster, tmp_path):
    import shutil

    dataset = tmp_path / "fleet"
    copy = tmp_path / "a1"
    shutil.copytree(sets["a1"], copy)
    [one] = _batch([copy], dataset, cluster)
    with open(copy / "app.strace", "a", encoding="utf-8") as fh:
        fh.write("\n")  # one byte more: another capture set
    [two] = _batch([copy], dataset, cluster)
    assert two.status == "analyzed" and two.set_id != one.set_id


@pytest.mark.parametrize("crash_at", [1, 2], ids=["in-packets", "in-summary"])
def test_a_crash_leaves_no_half_written_file(sets, expected, cluster, tmp_path, crash_at):
    import duckdb

    dataset = tmp_path / "fleet"
    _batch([sets["a1"]], dataset, cluster)
    # a process writing b1 dies inside its crash_at-th file: rows written, footer not
    script = textwrap.dedent(f"""
        import os
        import pyarrow.parquet as pq
        from xentrace_cli.fleet.batch import process_set
        write, calls = pq.ParquetWriter.write_table, []
        def write_then_die(self, *args, **kwargs):
            write(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == {crash_at}:
                os._exit(9)
        pq.ParquetWriter.write_table = write_then_die
        process_set({str(sets["b1"])!r}, {str(dataset)!r})
    """)
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert died.returncode == 9, died.stderr
    leftovers = [p for p in dataset.rglob(".*.tmp")]
    assert len(leftovers) == 1  # the half-written file, under its hidden name
    # every visible file reads whole; the crashed set has no summary
    for path in _visible_files(dataset):
        pq.read_table(path)
    assert list(ds.read_summaries(dataset)["set"]) == ["a1"]
    packets = f"{dataset}/packets/*/*/*.parquet"
    rows = duckdb.sql(f"select set, count(*) from read_parquet('{packets}', "
                      "hive_partitioning=true) group by set order by set").fetchall()
    want = [("a1", expected["a1"].num_rows)]
    if crash_at == 2:  # the packets file had landed whole before the summary's write died
        want.append(("b1", expected["b1"].num_rows))
    assert rows == want
    # the rerun writes the set once and sweeps the leftover
    outcomes = _batch([sets["a1"], sets["b1"]], dataset, cluster)
    assert [o.status for o in outcomes] == ["skipped", "analyzed"]
    assert not list(dataset.rglob(".*.tmp"))
    counts = ds.read_packets(dataset, ["set"])["set"].value_counts().to_dict()
    assert counts == {"a1": expected["a1"].num_rows, "b1": expected["b1"].num_rows}


def test_a_killed_worker_s_set_is_retried_and_lands_once(sets, expected, tmp_path):
    dataset, marker = tmp_path / "fleet", tmp_path / "attempts"
    task = functools.partial(kill_worker_once, marker=str(marker), victim="a2")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit="2GiB", dashboard_address=":0") as local:
        outcomes = run_batch([sets["a1"], sets["a2"], sets["b1"]], dataset,
                             scheduler=local.scheduler_address, task=task)
    assert [o.status for o in outcomes] == ["analyzed"] * 3
    attempts = marker.read_text(encoding="utf-8").split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # killed once, run again elsewhere
    table = pads.dataset(dataset / "packets", partitioning="hive").to_table()
    mine = table.filter(pa.compute.equal(table["set"], "a2"))
    assert mine.select(list(TABLE_COLUMNS)).equals(expected["a2"])  # once, whole
    assert table.num_rows == sum(expected[n].num_rows for n in ("a1", "a2", "b1"))
    assert not list(dataset.rglob(".*.tmp"))


# --- the command -------------------------------------------------------------------------------


def test_cli_batch_reports_each_set_and_exits_3_for_a_corrupt_one(runner, sets, corrupt,
                                                                 cluster, tmp_path):
    dataset = tmp_path / "fleet"
    args = ["batch", str(sets["a1"]), str(corrupt), "-o", str(dataset), "--scheduler",
            cluster.scheduler_address, "--no-progress"]
    result = runner.invoke(main, args)
    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["analyzed", "xen_host=xen-a/date=2026-12-05",
                                    str(len(pq.read_table(next(dataset.rglob("packets/*/*/*"
                                                                              ".parquet")))))]
    assert lines[1].split()[:2] == ["failed", "-"]
    assert (f"xenlat: error: {corrupt / 'guest.pcapng'}: offset 0: not a pcap or pcapng "
            "capture") in result.stderr
    assert f"Dask scheduler {cluster.scheduler_address}: 2 workers" in result.stderr
    assert "2 sets: 1 analyzed, 0 already in the dataset, 1 failed" in result.stderr
    again = runner.invoke(main, args[:2] + args[3:])
    assert again.exit_code == 0 and again.stdout.split()[0] == "skipped"


def test_cli_batch_starts_a_local_cluster_and_prints_its_dashboard(runner, sets, tmp_path):
    result = runner.invoke(main, ["batch", str(sets["a1"]), "-o", str(tmp_path / "d"),
                                  "--workers", "1", "--memory-limit", "1GiB", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Dask local cluster tcp://127.0.0.1:" in result.stderr
    assert "1 workers, 1.00 GiB each; dashboard http://" in result.stderr
    assert result.stdout.split()[:2] == ["analyzed", "xen_host=xen-a/date=2026-12-05"]


def test_find_sets_takes_sets_and_directories_of_sets(sets, tmp_path):
    root = sets["a1"].parent
    assert find_sets([root]) == sorted(sets.values())
    assert find_sets([sets["b1"], root]) == [sets["b1"], *sorted(
        p for p in sets.values() if p != sets["b1"])]
    with pytest.raises(Exception, match="without a capture set"):
        find_sets([tmp_path])


def test_usage_errors(runner, sets, tmp_path):
    base = ["batch", str(sets["a1"]), "-o", str(tmp_path / "d")]
    result = runner.invoke(main, [*base, "--memory-limit", "lots"])
    assert result.exit_code == 2 and "--memory-limit" in result.stderr
    result = runner.invoke(main, [*base, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"])
    assert result.exit_code == 2 and "size a local cluster" in result.stderr
    result = runner.invoke(main, ["batch", str(tmp_path), "-o", str(tmp_path / "d")])
    assert result.exit_code == 2 and "without a capture set" in result.stderr


def test_without_dask_batch_says_how_to_install_it(runner, sets, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed → ImportError
    result = runner.invoke(main, ["batch", str(sets["a1"]), "-o", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert result.stderr == f"xenlat: error: {INSTALL_HINT}\n"


def test_process_set_never_raises(tmp_path):
    outcome = process_set(str(tmp_path), str(tmp_path / "d"))
    assert outcome.status == "failed" and outcome.exit_code == 3
    assert outcome.message == f"{tmp_path}: not a capture set: no xenlat-set.toml in it"
    assert os.listdir(tmp_path) == []  # nothing written for it
