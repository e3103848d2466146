"""Tests of the CI gate (gate.py, report/gate_table.py) and of check/baseline through the CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import (
    BLACK_STALLS,
    SCENARIO_SET,
    STALL_US,
    make_analysis,
    make_table,
    scenario_sources,
    truth_analysis,
)
from rich.console import Console

from xentrace_cli.cli import main
from xentrace_cli.errors import InputError
from xentrace_cli.outputs import gate
from xentrace_cli.outputs.gate_table import render_gate

DATA = Path(__file__).resolve().parent / "data"
HEALTHY_BUDGETS = ("socket_read.p99 < 2ms", "total.max < 50ms", "remap.anomalies == 0")


def _evaluate(analysis, budgets=HEALTHY_BUDGETS):
    return gate.evaluate(analysis, [gate.parse_budget(b) for b in budgets])


# --- budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "stage", "stat", "op", "value", "optional"), [
    ("socket_read.p99 < 2ms", "socket_read", "p99", "<", 2000.0, False),
    ("total.max<=50ms", "total", "max", "<=", 50000.0, False),
    ("remap.anomalies == 0", "remap", "anomalies", "==", 0.0, False),
    ("vmm.p99.9 > 150us", "vmm", "p99.9", ">", 150.0, False),
    ("socket_read.count >= 100", "socket_read", "count", ">=", 100.0, False),
    ("ring.p50 < 0.1 s optional", "ring", "p50", "<", 100000.0, True),
    ("backend_to_guest.p99 < 1ms", "backend_to_guest", "p99", "<", 1000.0, False),
    # the direction: no prefix and rx. are the receive direction, tx. the transmit one
    ("rx.ring.p99 < 50us", "ring", "p99", "<", 50.0, False),
    ("tx.ring.p99 < 50us", "tx.ring", "p99", "<", 50.0, False),
    ("tx.socket_write.max < 2ms", "tx.socket_write", "max", "<", 2000.0, False),
    ("tx.guest_to_backend.p90 < 1ms", "tx.guest_to_backend", "p90", "<", 1000.0, False),
    ("tx.total.p50 < 100us optional", "tx.total", "p50", "<", 100.0, True),
    ("tx.request_to_response.max < 1s", "tx.request_to_response", "max", "<", 1e6, False),
    # any percentile, written canonically
    ("socket_read.p95 < 2ms", "socket_read", "p95", "<", 2000.0, False),
    ("socket_read.p99.99 < 2ms", "socket_read", "p99.99", "<", 2000.0, False),
    ("socket_read.p99.90 < 2ms", "socket_read", "p99.9", "<", 2000.0, False),
    ("socket_read.p0 > 1ns", "socket_read", "p0", ">", 0.001, False),
    ("socket_read.p100 <= 1ms", "socket_read", "p100", "<=", 1000.0, False),
    # the micro sign and the Greek mu
    ("ring.p99 < 2µs", "ring", "p99", "<", 2.0, False),
    ("ring.p99 < 2μs", "ring", "p99", "<", 2.0, False),
])
def test_parse_budget(text, stage, stat, op, value, optional):
    limit = gate.parse_budget(text)
    assert (limit.stage, limit.stat, limit.op, limit.value, limit.optional) == (
        stage, stat, op, value, optional)
    assert limit.direction == ("tx" if text.startswith("tx.") else "rx")
    assert limit.name == f"{stage}.{stat}"


@pytest.mark.parametrize(("text", "complaint"), [
    ("socket_read.p99 << 2ms", "[rx.|tx.]STAGE.STAT OP VALUE UNIT"),
    ("socket.p99 < 2ms", "unknown stage 'socket'"),
    ("socket_read.p101 < 2ms", "unknown statistic 'p101'"),
    ("socket_read.median < 2ms", "unknown statistic 'median'"),
    ("socket_read.p99 < 2 parsecs", "not a duration"),
    ("remap.anomalies == 2ms", "number of packets"),
    ("remap.count > 1.5", "number of packets"),
    ("guest_to_nowhere.p99 < 1ms", "unknown stage"),
    ("dom0_run_to_guest.max < 1ms", "unknown stage 'dom0_run_to_guest'"),
    ("p99 < 2ms", "STAGE.STAT OP VALUE"),
    ("tx.p99 < 2ms", "'tx' names no stage"),
    ("up.ring.p99 < 2ms", "unknown stage 'up.ring'"),
    # a bare number was 2 µs without a word; now it says what is missing
    ("socket_read.p99 < 2", "'2' has no unit: write 2us, 2ms or 2s"),
    ("socket_read.p99 < 0", "'0' has no unit"),
    ("socket_read.p99 < 1e400s", "not a finite duration"),
    # each direction's own stages
    ("tx.socket_read.p99 < 2ms", "socket_read is a receive stage (guest → read)"),
    ("rx.socket_write.p99 < 2ms", "socket_write is a transmit stage (write → guest)"),
    ("socket_write.p99 < 2ms", "write tx.socket_write"),
    ("guest_to_backend.p99 < 1ms", "guest_to_backend is a transmit interval: write "
     "tx.guest_to_backend"),
    ("tx.backend_to_guest.p99 < 1ms", "backend_to_guest is a receive interval"),
])
def test_parse_budget_rejects(text, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        gate.parse_budget(text)


def test_every_key_of_the_model_is_a_budget_key():
    """Budgets, statistics and baselines name stages the same way (model.stat_key)."""
    from xentrace_cli.model import DIRECTION_STAGES, stat_key
    from xentrace_cli.pipeline.stats import DEFAULT_KEYS

    for key in DEFAULT_KEYS:
        assert gate.parse_stat_key(key) == key
        assert gate.parse_budget(f"{key}.p99 < 1ms").stage == key
    for way, stages in DIRECTION_STAGES.items():
        for name in stages:
            assert gate.parse_stat_key(f"{way}.{name}") == stat_key(name, way)
    assert gate.parse_stat_key("rx.total") == "total"
    assert gate.parse_stat_key("tx.total") == "tx.total"


def test_parse_tolerance():
    assert gate.parse_tolerance("20%") == pytest.approx(0.2)
    assert gate.parse_tolerance("2.5 %") == pytest.approx(0.025)
    with pytest.raises(ValueError, match="percentage"):
        gate.parse_tolerance("0.2")


# --- evaluation on hand-made analyses --------------------------------------------------------


def test_healthy_passes_its_budgets():
    analysis = make_analysis()
    result = _evaluate(analysis)
    assert result.passed
    assert [c.verdict for c in result.checks] == ["pass", "pass", "pass"]
    values = analysis.table["socket_read_us"].to_numpy()
    assert result.checks[0].measured == pytest.approx(np.percentile(values, 99))
    assert result.checks[1].measured == pytest.approx(analysis.table["total_us"].max())
    assert result.annotations() == []


def test_black_stall_breaches_socket_read():
    analysis = make_analysis(stalls=BLACK_STALLS)
    result = _evaluate(analysis)
    assert not result.passed
    read, total, remap = result.checks
    values = analysis.table["socket_read_us"].to_numpy()
    assert read.verdict == "fail"
    assert read.measured == pytest.approx(np.percentile(values, 99))
    assert read.measured > STALL_US
    assert total.verdict == "fail"  # 100 ms > 50 ms
    assert remap.verdict == "pass"
    # the worst packets are the stalled ones, worst first, with their cause
    stalled = analysis.table.loc[list(BLACK_STALLS)]
    worst_seq = stalled.sort_values("socket_read_us", ascending=False)["seq"].head(3)
    assert [int(re.search(r"seq (\d+)", w).group(1)) for w in read.worst] == list(worst_seq)
    assert all("(vcpu_runnable)" in w for w in read.worst)
    lines = result.annotations()
    assert len(lines) == 2
    assert lines[0].startswith("::error title=xenlat budget%3A socket_read.p99 < 2ms::")
    assert "socket_read.p99 = 10" in lines[0] and "> 2.00 ms" in lines[0]
    assert "worst packets: 10.0.0.1:11211→10.0.0.2:40000 seq" in lines[0]


def test_unmeasured_stage_fails_unless_optional():
    analysis = make_analysis(xentrace=False)
    result = _evaluate(analysis, ("remap.p99 < 1ms", "vmm.max < 1ms optional",
                                  "backend_to_guest.p99 < 1ms", "remap.count == 0"))
    remap, vmm, merged, count = result.checks
    assert remap.verdict == "not measured" and remap.failed
    assert "no packet has both its copy and guest checkpoints" in remap.message
    assert vmm.verdict == "skipped" and not vmm.failed
    assert merged.verdict == "pass"
    sums = analysis.table["backend_to_guest_us"].to_numpy()
    assert merged.measured == pytest.approx(np.percentile(sums, 99))
    assert count.verdict == "pass" and count.measured == 0
    assert not result.passed
    assert result.summary == "2 of 4 checks passed, 1 failed, 1 skipped"


def test_lower_bound_names_the_fastest_packets():
    analysis = make_analysis()
    result = _evaluate(analysis, ("vmm.p50 > 1ms",))
    assert not result.passed
    fastest = analysis.table.nsmallest(3, "vmm_us")["seq"].tolist()
    assert [int(re.search(r"seq (\d+)", w).group(1)) for w in result.checks[0].worst] == fastest


def make_two_way_analysis(n_tx: int = 150, *, seed: int = 2, tx_xentrace: bool = True,
                          tx_scale: dict[str, float] | None = None):
    """make_analysis's 200 received segments plus ``n_tx`` transmitted ones, whose five
    transmit stages (µs) are drawn here from TX_RANGES_US (a stage scaled by ``tx_scale``).
    Without xentrace, vmm + ring + remap are one guest_to_backend interval."""
    analysis = make_analysis()
    rng = np.random.default_rng(seed)
    tx = pd.DataFrame({"src": "10.0.0.2", "sport": 40000, "dst": "10.0.0.1", "dport": 11211,
                       "proto": 6, "direction": "tx", "seq": 90_000 + np.arange(n_tx) * 10,
                       "len": 10})
    for name, (low, high) in TX_RANGES_US.items():
        tx[f"{name}_us"] = rng.uniform(low, high, n_tx) * (tx_scale or {}).get(name, 1.0)
    tx["total_us"] = tx[[f"{name}_us" for name in TX_RANGES_US]].sum(axis=1)
    if not tx_xentrace:
        tx["guest_to_backend_us"] = tx["vmm_us"] + tx["ring_us"] + tx["remap_us"]
        tx[["vmm_us", "ring_us", "remap_us"]] = np.nan
    tx["anomaly"], tx["cause"], tx["uncertainty_us"] = "", "", 2.0
    table = pd.concat([analysis.table, tx], ignore_index=True)
    return dataclasses.replace(analysis, table=table)


#: (low, high) µs of each transmit stage's uniform draw in make_two_way_analysis.
TX_RANGES_US = {"socket_write": (5.0, 15.0), "vmm": (2.0, 30.0), "ring": (10.0, 40.0),
                "remap": (20.0, 50.0), "driver_domain": (1.0, 5.0)}


def _rows(analysis, direction, column):
    table = analysis.table
    return table.loc[table["direction"] == direction, column].to_numpy(float)


def test_directions_are_gated_apart():
    analysis = make_two_way_analysis()
    result = _evaluate(analysis, ("ring.p99 < 1ms", "tx.ring.p99 < 1ms",
                                  "tx.socket_write.max < 1ms", "tx.ring.p95 > 1ms",
                                  "tx.total.p50 < 1ms", "total.p50 < 1ms"))
    rx_ring, tx_ring, write, lower, tx_total, rx_total = result.checks
    assert rx_ring.measured == pytest.approx(np.percentile(_rows(analysis, "rx", "ring_us"), 99))
    assert tx_ring.measured == pytest.approx(np.percentile(_rows(analysis, "tx", "ring_us"), 99))
    assert tx_ring.measured > 30.0 > rx_ring.measured  # tx ring 10–40 µs, rx ring 5–20 µs
    assert write.measured == pytest.approx(_rows(analysis, "tx", "socket_write_us").max())
    assert tx_total.measured == pytest.approx(np.median(_rows(analysis, "tx", "total_us")))
    assert rx_total.measured == pytest.approx(np.median(_rows(analysis, "rx", "total_us")))
    assert [c.verdict for c in result.checks] == ["pass"] * 3 + ["fail"] + ["pass"] * 2
    # the worst packets of a transmit check are transmitted ones (the fastest: a lower bound)
    tx_rows = analysis.table[analysis.table["direction"] == "tx"]
    fastest = tx_rows.nsmallest(3, "ring_us")["seq"].tolist()
    assert [int(re.search(r"seq (\d+)", w).group(1)) for w in lower.worst] == fastest
    assert all(w.startswith("10.0.0.2:40000→10.0.0.1:11211") for w in lower.worst)
    assert result.annotations()[0].startswith(
        "::error title=xenlat budget%3A tx.ring.p95 > 1ms::tx.ring.p95 = ")


def test_transmit_stage_not_measured_says_why():
    rx_only = _evaluate(make_analysis(), ("tx.ring.p99 < 1ms",)).checks[0]
    assert rx_only.verdict == "not measured"
    assert "the analysis has no transmitted packet" in rx_only.message
    analysis = make_two_way_analysis(tx_xentrace=False)
    vmm, merged = _evaluate(analysis, ("tx.vmm.p99 < 1ms", "tx.guest_to_backend.p99 < 1ms")).checks
    assert vmm.verdict == "not measured"
    assert "no transmitted packet has both its guest and dom0_run checkpoints" in vmm.message
    assert merged.verdict == "pass"
    assert merged.measured == pytest.approx(
        np.percentile(_rows(analysis, "tx", "guest_to_backend_us"), 99))


def test_any_percentile_is_computed_on_demand():
    analysis = make_two_way_analysis()
    result = _evaluate(analysis, ("socket_read.p95 < 2ms", "socket_read.p99.99 < 1s",
                                  "tx.remap.p12.5 > 1us", "vmm.p0 > 1us", "vmm.p100 < 1ms"))
    read = _rows(analysis, "rx", "socket_read_us")
    assert result.checks[0].measured == pytest.approx(np.percentile(read, 95))
    assert result.checks[1].measured == pytest.approx(np.percentile(read, 99.99))
    assert result.checks[2].measured == pytest.approx(
        np.percentile(_rows(analysis, "tx", "remap_us"), 12.5))
    vmm = _rows(analysis, "rx", "vmm_us")
    assert (result.checks[3].measured, result.checks[4].measured) == (vmm.min(), vmm.max())
    assert result.passed


def test_evaluate_a_plain_stats_dict():
    """What check --dataset builds on: limits against statistics, no analysis needed."""
    stats = {"ring": {"count": 3, "p99": 12.0, "max": 14.0, "anomalies": 0},
             "tx.ring": {"count": 0, "p99": None, "anomalies": 0}}
    result = gate.evaluate(stats, [gate.parse_budget(b) for b in (
        "ring.p99 < 10us", "ring.max < 1ms", "tx.ring.p99 < 1ms", "vmm.p99 < 1ms",
        "ring.p95 < 1ms", "tx.ring.count == 0")])
    verdicts = [(c.verdict, c.measured) for c in result.checks]
    assert verdicts == [("fail", 12.0), ("pass", 14.0), ("not measured", None),
                        ("not measured", None), ("not measured", None), ("pass", 0.0)]
    assert result.checks[0].worst == ()
    assert "not among the statistics given" in result.checks[3].message
    assert "hold no p95 for ring" in result.checks[4].message
    assert result.sources == {} and result.packets == 0
    # the statistics an analysis gives the same limits are what evaluate(analysis) compares
    analysis = make_two_way_analysis()
    limits = [gate.parse_budget(b) for b in ("tx.ring.p99.9 < 1ms", "socket_read.p95 < 1ms")]
    from_stats = gate.evaluate(gate.limit_stats(analysis.table, limits), limits)
    direct = gate.evaluate(analysis, limits)
    assert [c.measured for c in from_stats.checks] == [c.measured for c in direct.checks]


# --- budgets file ----------------------------------------------------------------------------


def test_budgets_file_and_relative_baseline(tmp_path):
    (tmp_path / "gate").mkdir()
    base = tmp_path / "gate" / "baseline.json"
    base.write_text(json.dumps(gate.baseline_document(make_analysis())), encoding="utf-8")
    toml = tmp_path / "gate" / "budgets.toml"
    toml.write_text('[budgets]\n"socket_read.p99" = "< 2ms"\n'
                    '"total.max" = ["< 50ms", "> 1us"]\n"ring.p99" = "< 1ms optional"\n'
                    '"tx.ring.p99.99" = "< 80us optional"\n'
                    '[baseline]\nfile = "baseline.json"\ntolerance = "10%"\nfloor = "5us"\n'
                    'stats = ["p50", "p99"]\n', encoding="utf-8")
    limits = gate.collect_budgets([], toml, None, None)
    budgets = [lim for lim in limits if lim.source == "budget"]
    assert [lim.text for lim in budgets] == ["socket_read.p99 < 2ms", "total.max < 50ms",
                                             "total.max > 1us", "ring.p99 < 1ms optional",
                                             "tx.ring.p99.99 < 80us optional"]
    compared = [lim for lim in limits if lim.source == "baseline"]
    assert {lim.stat for lim in compared} == {"p50", "p99"}
    p50 = next(lim for lim in compared if lim.name == "socket_read.p50")
    assert p50.value == pytest.approx(max(p50.baseline_value * 1.1, p50.baseline_value + 5))
    assert p50.baseline_file == str(base)
    # the command line replaces the file's settings one by one: here only the tolerance
    limits = gate.collect_budgets([], toml, None, "50%")
    p50 = next(lim for lim in limits if lim.name == "socket_read.p50")
    assert p50.tolerance == 0.5 and p50.floor_us == 5.0
    assert p50.value == pytest.approx(max(p50.baseline_value * 1.5, p50.baseline_value + 5))


# (content, the one problem, its line): a budgets FILE is an input, so whatever in it cannot be
# used is an input error (exit 3), a budget in it that does not parse included
@pytest.mark.parametrize(("content", "complaint", "line"), [
    ('[budget]\n"socket_read.p99" = "< 2ms"\n', "unknown table(s) budget", 1),
    ('[budgets]\n"socket_read.p99" = 2\n', "write the bound as a string", 2),
    ('[budgets]\n"socket_read.p99" = []\n', "write the bound as a string", 2),
    ('[budgets]\nsocket_read.p99 = "< 2ms"\n', "quote the whole key", 2),
    ('[budgets]\n"socket_read.p99" = "<< 2ms"\n', "STAGE.STAT OP VALUE", 2),
    ('[budgets]\n"total.max" = "< 50ms"\n"socket_read.p99" = "< 2"\n', "has no unit", 3),
    ('[budgets]\n"tx.socket_read.p99" = "< 2ms"\n', "socket_read is a receive stage", 2),
    ('budgets = 3\n', "budgets must be a table", 1),
    ('[baseline]\ntolerance = "20%"\n', "needs file", 1),
    ('[baseline]\nfile = "b.json"\ntolerance = "0.2"\n', "percentage", 3),
    ('[baseline]\nfile = "b.json"\ntolerance = 0.2\n', "tolerance: 0.2 is not a string", 3),
    ('[baseline]\nfile = "b.json"\nfloor = "20"\n', "'20' has no unit", 3),
    ('[baseline]\nfile = "b.json"\nstats = ["anomalies"]\n', "not counts", 3),
    ('[baseline]\nfile = "b.json"\nstats = "p99"\n', "expected a non-empty list", 3),
    ('[baseline]\nfile = "b.json"\nstats = ["p99", "p99.0"]\n', "names one entry twice", 3),
    ('[baseline]\nfile = "b.json"\nstages = ["tx.socket_read"]\n', "receive stage", 3),
    ('[baseline]\nfile = 7\n', "file: 7 is not a string", 2),
    ('[baseline]\nfile = "b.json"\ntolerance = "20%"\nfolder = "x"\n',
     "unknown key 'folder'", 4),
    ('# only a comment\n', "holds neither [budgets] nor [baseline]", None),
    ('a = ' + '[' * 100_000 + '\n', "nested too deeply", None),
])
def test_budgets_file_errors_are_input_errors(tmp_path, content, complaint, line):
    toml = tmp_path / "budgets.toml"
    toml.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        gate.collect_budgets([], toml, None, None)
    assert complaint in str(caught.value)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{toml}: " + (f"line {line}: " if line else ""))


def test_budgets_file_unreadable_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        gate.collect_budgets([], tmp_path / "missing.toml", None, "20%")
    bad = tmp_path / "bad.toml"
    bad.write_text('[budgets]\n"a" = \n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.toml: line 2: not valid TOML"):
        gate.collect_budgets([], bad, None, "20%")
    bad.write_bytes(b'[budgets]\n"socket_read.p99" = "< 2\xffms"\n')
    # the bad byte: 10 bytes of '[budgets]\n', then 24 of '"socket_read.p99" = "< 2'
    with pytest.raises(InputError, match=r"bad.toml: offset 34: not a budgets file \(not UTF-8"):
        gate.collect_budgets([], bad, None, None)


@pytest.mark.parametrize(("kwargs", "complaint"), [
    ({"budget_strings": ["socket_read.p99 < 2"]}, "--budget 'socket_read.p99 < 2': '2' has "
     "no unit"),
    ({"tolerance": "x"}, "--tolerance 'x': write a percentage"),
    ({"tolerance": "1" * 400 + "%"}, "--tolerance"),
    ({"baseline_stats": ["p999"]}, "--baseline-stat 'p999': unknown statistic"),
    ({"baseline_stats": ["count"]}, "--baseline-stat 'count': a baseline compares durations"),
    ({"baseline_stages": ["tx.socket_read"]}, "--baseline-stage 'tx.socket_read': "
     "socket_read is a receive stage"),
])
def test_command_line_errors_are_usage_errors(tmp_path, kwargs, complaint):
    """Text given on the command line that does not parse is a usage error (exit 2)."""
    from xentrace_cli.errors import ExitCode, OptionError

    base = _baseline_file(tmp_path, make_analysis())
    args = {"budget_strings": [], "budgets_file": None, "baseline_file": base,
            "tolerance": None, **kwargs}
    with pytest.raises(OptionError) as caught:
        gate.collect_budgets(**args)
    assert str(caught.value).startswith(complaint)
    assert caught.value.exit_code == ExitCode.USAGE


def test_baseline_options_need_a_baseline():
    from xentrace_cli.errors import OptionError

    for kwargs in ({"tolerance": "20%"}, {"baseline_stats": ["p95"]},
                   {"baseline_stages": ["ring"]}):
        args = {"budget_strings": ["ring.p99 < 1ms"], "budgets_file": None,
                "baseline_file": None, "tolerance": None, **kwargs}
        with pytest.raises(OptionError, match="need a baseline"):
            gate.collect_budgets(**args)


def test_default_budgets_file_in_the_set_or_beside_the_first_source(tmp_path):
    from xentrace_cli.model import Sources

    (tmp_path / "set").mkdir()
    sources = Sources(guest=tmp_path / "set" / "guest.pcap", phys=tmp_path / "phys.pcap")
    assert gate.default_budgets_file(sources) is None
    (tmp_path / "budgets.toml").write_text('[budgets]\n"total.max" = "< 1s"\n')
    assert gate.default_budgets_file(sources) is None  # beside phys: not the first source
    (tmp_path / "set" / "budgets.toml").write_text('[budgets]\n"total.max" = "< 1s"\n')
    assert gate.default_budgets_file(sources) == tmp_path / "set" / "budgets.toml"
    assert gate.default_budgets_file(Sources(phys=tmp_path / "phys.pcap")) == (
        tmp_path / "budgets.toml")
    # a capture set given as a directory: its directory, wherever its files are
    assert gate.default_budgets_file(sources, tmp_path) == tmp_path / "budgets.toml"
    assert gate.default_budgets_file(sources, tmp_path / "set") == (
        tmp_path / "set" / "budgets.toml")
    (tmp_path / "budgets.toml").unlink()
    assert gate.default_budgets_file(sources, tmp_path) is None


# --- baselines -------------------------------------------------------------------------------


def test_baseline_document_is_deterministic_and_has_no_date():
    doc = gate.baseline_document(make_analysis())
    again = gate.baseline_document(make_analysis())
    assert json.dumps(doc, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert doc["kind"] == "xenlat-baseline"
    assert doc["sources"] == {"xentrace": "xentrace.bin", "backend": "vif5.0.pcap",
                              "guest": "guest.pcap", "socket_log": "app.strace"}
    values = make_table()["socket_read_us"].to_numpy()
    assert doc["stages"]["socket_read"]["p99"] == pytest.approx(np.percentile(values, 99),
                                                               abs=1e-3)
    assert not any(key in json.dumps(doc) for key in ("date", "time\"", "created"))


def _baseline_file(tmp_path: Path, analysis) -> Path:
    from xentrace_cli.outputs.tables import dumps_json

    path = tmp_path / "baseline.json"
    path.write_text(dumps_json(gate.baseline_document(analysis)), encoding="utf-8")
    return path


def test_baseline_rerun_passes_and_regression_fails(tmp_path):
    path = _baseline_file(tmp_path, make_analysis())
    limits = gate.collect_budgets([], None, path, "20%")
    # 6 stages (5 + total) x 4 statistics
    assert len(limits) == 24
    assert gate.evaluate(make_analysis(), limits).passed
    # injected regression: the application reads 50 % later
    slow = gate.evaluate(make_analysis(scale={"socket_read": 1.5}), limits)
    failed = {check.limit.name for check in slow.failures}
    assert {"socket_read.p50", "socket_read.p90", "socket_read.p99"} <= failed
    assert all(name.split(".")[0] in ("socket_read", "total") for name in failed)
    message = next(c.message for c in slow.failures if c.limit.name == "socket_read.p50")
    assert "regressed beyond the baseline" in message
    assert "20%" in slow.baseline.describe() and "20 µs" in slow.baseline.describe()


def test_baseline_floor_ignores_tiny_changes(tmp_path):
    path = _baseline_file(tmp_path, make_analysis())
    limits = gate.collect_budgets([], None, path, "20%")
    # vmm is 4–12 µs: +30 % is a few µs, under the 20 µs floor
    result = gate.evaluate(make_analysis(scale={"vmm": 1.3}), limits)
    vmm = [c for c in result.checks if c.limit.stage == "vmm"]
    assert all(c.verdict == "pass" for c in vmm)
    assert any(c.measured > c.limit.baseline_value * 1.2 for c in vmm)


def test_baseline_stage_lost_is_not_measured(tmp_path):
    path = _baseline_file(tmp_path, make_analysis())
    result = gate.evaluate(make_analysis(xentrace=False),
                           gate.collect_budgets([], None, path, "20%"))
    assert {c.limit.stage for c in result.checks if c.verdict == "not measured"} == {
        "vmm", "driver_domain", "ring", "remap"}


def test_bad_baseline_is_input_error(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match=r"b.json: line 1: not a baseline: invalid JSON"):
        gate.collect_budgets([], None, bad, "20%")
    bad.write_text('{"stages": {}}', encoding="utf-8")
    with pytest.raises(InputError, match="not a baseline written by 'xenlat baseline'"):
        gate.collect_budgets([], None, bad, "20%")


def test_baseline_compares_both_directions_not_the_lone_intervals(tmp_path):
    analysis = make_two_way_analysis()
    table = analysis.table
    table["request_to_response_us"] = np.where(table.index % 2 == 0, 50_000.0, np.nan)
    path = _baseline_file(tmp_path, analysis)
    saved = json.loads(path.read_text())["stages"]
    assert saved["request_to_response"]["count"] == 100  # every second of 200 received rows
    assert saved["tx.ring"]["count"] == 150
    limits = gate.collect_budgets([], None, path, None)
    stages = list(dict.fromkeys(lim.stage for lim in limits))
    assert stages == ["vmm", "driver_domain", "ring", "remap", "socket_read", "total",
                      "tx.socket_write", "tx.vmm", "tx.ring", "tx.remap", "tx.driver_domain",
                      "tx.total"]
    assert [lim.stat for lim in limits[:4]] == ["p50", "p90", "p99", "max"]
    # asked by name: exactly those
    named = gate.collect_budgets([], None, path, None,
                                 baseline_stages=["request_to_response", "tx.ring"])
    assert list(dict.fromkeys(lim.stage for lim in named)) == ["request_to_response", "tx.ring"]
    # a transmit regression fails the transmit keys only
    slow = gate.evaluate(make_two_way_analysis(tx_scale={"ring": 3.0}), limits)
    assert {c.limit.stage for c in slow.failures} == {"tx.ring", "tx.total"}
    assert "tx.ring.p50 vs baseline" in {c.limit.text for c in slow.failures}


def test_baseline_merged_interval_stands_in_and_its_loss_fails(tmp_path):
    path = _baseline_file(tmp_path, make_two_way_analysis(tx_xentrace=False))
    limits = gate.collect_budgets([], None, path, None)
    assert "tx.guest_to_backend" in {lim.stage for lim in limits}
    assert "tx.ring" not in {lim.stage for lim in limits}  # count 0 in the baseline
    assert gate.evaluate(make_two_way_analysis(tx_xentrace=False), limits).passed
    # now with xentrace: the interval is split into stages, so it is no longer measured
    result = gate.evaluate(make_two_way_analysis(), limits)
    assert {c.limit.stage for c in result.checks if c.verdict == "not measured"} == {
        "tx.guest_to_backend"}


def test_named_baseline_stage_must_be_in_the_baseline(tmp_path):
    path = _baseline_file(tmp_path, make_analysis())
    with pytest.raises(InputError, match="the baseline has no stage 'request_to_response'"):
        gate.collect_budgets([], None, path, None, baseline_stages=["request_to_response"])
    with pytest.raises(InputError, match=r"stage 'tx.ring' was not measured in this baseline"):
        gate.collect_budgets([], None, path, None, baseline_stages=["tx.ring"])


def test_baseline_of_a_lone_capture_needs_named_stages(tmp_path):
    analysis = make_analysis()
    table = analysis.table
    for column in [c for c in table.columns if c.endswith("_us") and c != "uncertainty_us"]:
        table[column] = np.nan
    table["response_to_next_us"] = np.linspace(100.0, 300.0, len(table))
    path = _baseline_file(tmp_path, analysis)
    with pytest.raises(InputError, match="--baseline-stage request_to_response"):
        gate.collect_budgets([], None, path, None)
    limits = gate.collect_budgets([], None, path, None, baseline_stages=["response_to_next"])
    assert [lim.name for lim in limits] == [f"response_to_next.{s}" for s in
                                            ("p50", "p90", "p99", "max")]


def test_baseline_percentiles_on_demand(tmp_path):
    analysis = make_two_way_analysis()
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(gate.baseline_document(analysis, ["p95", "p99.99"])))
    saved = json.loads(path.read_text())["stages"]
    read = _rows(analysis, "rx", "socket_read_us")
    assert saved["socket_read"]["p95"] == pytest.approx(np.percentile(read, 95), abs=1e-3)
    assert saved["tx.ring"]["p99.99"] == pytest.approx(
        np.percentile(_rows(analysis, "tx", "ring_us"), 99.99), abs=1e-3)
    limits = gate.collect_budgets([], None, path, None, baseline_stats=["p95"])
    assert {lim.stat for lim in limits} == {"p95"}
    assert gate.evaluate(analysis, limits).passed
    plain = _baseline_file(tmp_path, analysis)
    with pytest.raises(InputError, match=re.escape(
            "stage 'vmm' has no p95: save it with 'xenlat baseline … --stat p95'")):
        gate.collect_budgets([], None, plain, None, baseline_stats=["p95"])


def _legacy_document() -> dict:
    """A format-1 baseline as xenlat wrote it before the transmit split: unprefixed keys, the
    transmit intervals among them (statistics of make_analysis, tx intervals by hand)."""
    stats = gate.measured_stats(make_analysis())
    interval = {"count": 4, "p50": 10.0, "p90": 12.0, "p99": 13.0, "p99.9": 13.0, "max": 13.0,
                "mean": 10.5, "anomalies": 0}
    return {"kind": "xenlat-baseline", "format": 1, "xenlat_version": "0.1.0",
            "sources": {"guest": "guest.pcap"}, "packets": 204,
            "stages": {**{k: v for k, v in stats.items() if "." not in k},
                       "guest_to_backend": interval, "write_to_guest": interval,
                       "backend_to_phys": interval}}


def test_old_baselines_keep_working(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_legacy_document()), encoding="utf-8")
    document = gate.load_baseline(path)
    assert {"socket_read", "tx.guest_to_backend", "tx.socket_write", "tx.driver_domain"} <= set(
        document["stages"])
    limits = gate.collect_budgets([], None, path, None)
    stages = list(dict.fromkeys(lim.stage for lim in limits))
    assert stages == ["vmm", "driver_domain", "ring", "remap", "socket_read", "total",
                      "tx.socket_write", "tx.driver_domain", "tx.guest_to_backend"]
    # unprefixed keys are the receive direction: the same analysis passes them
    rx = [lim for lim in limits if lim.direction == "rx"]
    assert gate.evaluate(make_analysis(), rx).passed


def _valid_document() -> dict:
    return json.loads(json.dumps(gate.baseline_document(make_analysis())))


def _set(path: tuple, value):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(path: tuple):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


# (how the valid baseline is spoiled, the problem the one line names): each of these would
# otherwise drop a check, or crash
CORRUPT_BASELINES = [
    (_set(("stages", "socket_read", "p99"), "fast"),
     'stages.socket_read.p99 = "fast": expected a duration in µs'),
    (_set(("stages", "socket_read", "p99"), [1]),
     "stages.socket_read.p99 = [1]: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), float("nan")),
     "stages.socket_read.p99 = NaN: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), float("inf")),
     "stages.socket_read.p99 = Infinity: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), None),
     "stages.socket_read.p99 = null: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), True),
     "stages.socket_read.p99 = true: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), 10**400),
     f"stages.socket_read.p99 = 1{'0' * 36}…: expected a duration in µs"),
    (_set(("stages", "socket_read", "p99"), 2e15), "expected a duration in µs"),
    (_set(("stages", "socket_read", "count"), -1),
     "stages.socket_read.count = -1: expected a number of packets"),
    (_set(("stages", "socket_read", "count"), "200"), "stages.socket_read.count = \"200\""),
    (_set(("stages", "socket_read", "count"), 200.0), "stages.socket_read.count = 200.0"),
    (_drop(("stages", "socket_read", "count")), "stages.socket_read.count = null"),
    (_set(("stages", "socket_read", "anomalies"), -2),
     "stages.socket_read.anomalies = -2: expected a number of packets"),
    (_set(("stages", "tx.ring", "p99"), 12.0),
     "stages.tx.ring.p99 = 12.0: the stage was not measured (count 0), so its statistics are "
     "null"),
    (_set(("stages", "socket_read"), [1, 2]),
     "stages.socket_read = [1, 2]: expected a table of statistics"),
    (_set(("stages", "socket"), {"count": 0}), "stages: unknown stage 'socket'"),
    (_set(("stages", "tx.socket_read"), {"count": 0}),
     "stages: socket_read is a receive stage"),
    (_set(("stages", "rx.ring"), {"count": 0}), "stages: 'rx.ring' repeats stage 'ring'"),
    (_set(("stages", "socket_read", "median"), 3.0),
     "stages.socket_read: unknown statistic 'median'"),
    (_set(("stages", "socket_read", "p99.90"), 3.0),
     "stages.socket_read: write the statistic 'p99.90' as 'p99.9'"),
    (_set(("kind",), "xenlat-budgets"), "not a baseline written by 'xenlat baseline'"),
    (_drop(("kind",)), "not a baseline written by 'xenlat baseline'"),
    (_set(("stages",), []), "not a baseline written by 'xenlat baseline'"),
    (_set(("format",), 2), "baseline format 2 is not one this xenlat reads (1)"),
    (_set(("format",), "1"), 'baseline format "1" is not one this xenlat reads'),
    (_set(("format",), True), "baseline format true is not one this xenlat reads"),
    (_set(("format",), 1.0), "baseline format 1.0 is not one this xenlat reads"),
    (_set(("date",), "2026-12-06"), "unknown key(s) date"),
    (_set(("packets",), -5), "packets = -5: expected a number of packets"),
    (_set(("sources",), ["guest.pcap"]), 'sources = ["guest.pcap"]: expected file names'),
    (_set(("xenlat_version",), 1), "xenlat_version = 1: expected a string"),
]
#: Texts no JSON document of a baseline can be.
CORRUPT_TEXTS = [
    ("[" * 100_000 + "]" * 100_000, "not a baseline: JSON nested too deeply"),
    ('{"kind": "xenlat-baseline", "kind": "x"}', "not a baseline: key 'kind' appears twice"),
    ('{"packets": ' + "1" * 5000 + "}", "not a baseline: Exceeds the limit (4300 digits)"),
]


@pytest.mark.parametrize(("spoil", "complaint"), CORRUPT_BASELINES)
def test_corrupt_baseline_fails_closed(tmp_path, spoil, complaint):
    document = _valid_document()
    spoil(document)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        gate.collect_budgets([], None, path, None)
    assert str(caught.value).startswith(f"{path}: ")
    assert complaint in str(caught.value)


@pytest.mark.parametrize(("text", "complaint"), CORRUPT_TEXTS)
def test_baseline_text_that_is_no_document_fails_closed(tmp_path, text, complaint):
    path = tmp_path / "baseline.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(complaint)):
        gate.load_baseline(path)


def test_baseline_file_too_large(tmp_path):
    path = tmp_path / "baseline.json"
    with open(path, "wb") as fh:
        fh.write(b" " * (16 << 20) + b"{}")
    with pytest.raises(InputError, match="over 16 MiB: too large for a baseline"):
        gate.load_baseline(path)


# --- JUnit, JSON, annotations ----------------------------------------------------------------


def _schema():
    import xmlschema  # a test dependency (pyproject [test])

    return xmlschema.XMLSchema(DATA / "junit-10.xsd")


def test_junit_validates_and_names_the_breach(tmp_path):
    schema = _schema()
    path = _baseline_file(tmp_path, make_analysis())
    limits = [gate.parse_budget(b) for b in (*HEALTHY_BUDGETS, "ring.p99 < 1ms optional")]
    limits += gate.collect_budgets([], None, path, "20%")
    ok = gate.evaluate(make_analysis(), limits).to_junit()
    schema.validate(ok)
    bad = gate.evaluate(make_analysis(stalls=BLACK_STALLS, xentrace=False), limits).to_junit()
    schema.validate(bad)
    import xml.etree.ElementTree as ET

    suite = ET.fromstring(bad)
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == str(len(limits))
    failed = [c for c in cases if c.find("failure") is not None]
    assert suite.get("failures") == str(len(failed))
    assert suite.get("skipped") == "1"
    read = next(c for c in cases if c.get("name") == "socket_read.p99 < 2ms")
    failure = read.find("failure")
    assert failure.get("type") == "budget"
    assert failure.get("message").startswith("socket_read.p99 = 10")
    assert "limit: < 2.00 ms" in failure.text
    assert "worst packet: 10.0.0.1:11211→10.0.0.2:40000 seq" in failure.text
    assert read.get("classname") == "xenlat.budget"
    unmeasured = [c for c in cases if c.find("failure") is not None
                  and c.find("failure").get("type") == "not-measured"]
    assert unmeasured  # remap / vmm lost without xentrace


def test_outputs_are_byte_identical():
    one = _evaluate(make_analysis(stalls=BLACK_STALLS))
    two = _evaluate(make_analysis(stalls=BLACK_STALLS))
    from xentrace_cli.outputs.tables import dumps_json

    assert one.to_junit() == two.to_junit()
    assert dumps_json(one.to_document()) == dumps_json(two.to_document())
    assert one.annotations() == two.annotations()
    doc = one.to_document()
    assert doc["passed"] is False
    assert doc["checks"][0]["verdict"] == "fail"
    assert doc["checks"][0]["unit"] == "us"
    assert doc["checks"][0]["measured"] == round(doc["checks"][0]["measured"], 3)


def test_annotation_escapes_newlines_and_percent():
    from xentrace_cli.outputs.gate.verdict import _escape_data, _escape_property

    assert _escape_data("a%b\nc") == "a%25b%0Ac"
    assert _escape_property("x: y, z") == "x%3A y%2C z"


# --- rich table ------------------------------------------------------------------------------


def test_render_gate_plain_and_coloured():
    result = _evaluate(make_analysis(stalls=BLACK_STALLS))
    buf = io.StringIO()
    render_gate(result, Console(file=buf, width=140, color_system=None))
    text = buf.getvalue()
    assert "\x1b[" not in text
    assert "socket_read.p99 < 2ms" in text and "fail" in text
    assert "FAILED: 1 of 3 checks passed, 2 failed" in text
    assert "worst: 10.0.0.1:11211→10.0.0.2:40000" in text
    buf = io.StringIO()
    render_gate(result, Console(file=buf, width=140, force_terminal=True,
                                color_system="standard"))
    assert "\x1b[" in buf.getvalue()


# --- through the CLI -------------------------------------------------------------------------


@pytest.fixture()
def fake_analysis(monkeypatch):
    """Replace the analysis step of the CLI (not tshark or scapy) by a hand-made analysis."""
    import xentrace_cli.cli as cli

    chosen = {"analysis": make_analysis()}
    monkeypatch.setattr(cli, "_run_analysis", lambda *args, **kwargs: chosen["analysis"])
    return chosen


def test_cli_check_exit_0_and_1(runner, fake_analysis, tmp_path):
    ok = runner.invoke(main, ["check", "guest.pcap", "--budget", "socket_read.p99 < 2ms"])
    assert ok.exit_code == 0, ok.stderr
    assert "PASSED: 1 of 1 checks passed" in ok.stdout
    assert ok.stderr == ""
    fake_analysis["analysis"] = make_analysis(stalls=BLACK_STALLS)
    junit = tmp_path / "gate.xml"
    bad = runner.invoke(main, ["check", "guest.pcap", "--budget", "socket_read.p99 < 2ms",
                               "--junit", str(junit)])
    assert bad.exit_code == 1
    assert bad.stderr.startswith("::error title=xenlat budget%3A socket_read.p99 < 2ms::")
    assert "FAILED" in bad.stdout and "::error" not in bad.stdout
    assert '<failure type="budget" message="socket_read.p99 = 10' in junit.read_text()


def test_cli_check_json(runner, fake_analysis):
    fake_analysis["analysis"] = make_analysis(stalls=BLACK_STALLS)
    result = runner.invoke(main, ["check", "guest.pcap", "--budget", "total.max < 50ms",
                                  "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["passed"] is False and doc["checks"][0]["name"] == "total.max"
    assert result.stderr.count("::error") == 1


def test_cli_baseline_then_check(runner, fake_analysis, tmp_path):
    base = tmp_path / "baseline.json"
    saved = runner.invoke(main, ["baseline", "guest.pcap", "-o", str(base)])
    assert saved.exit_code == 0 and saved.stdout == "" and saved.stderr == ""
    first = base.read_bytes()
    assert runner.invoke(main, ["baseline", "guest.pcap", "-o", str(base)]).exit_code == 0
    assert base.read_bytes() == first
    rerun = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(base)])
    assert rerun.exit_code == 0, rerun.stdout
    assert "smaller changes are not regressions" in " ".join(rerun.stdout.split())
    fake_analysis["analysis"] = make_analysis(scale={"remap": 3.0})
    slow = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(base),
                                "--tolerance", "20%"])
    assert slow.exit_code == 1
    assert "::error title=xenlat baseline%3A remap.p50 vs baseline::remap.p50 = " in slow.stderr
    assert "regressed beyond the baseline" in slow.stderr and "+20%25" in slow.stderr


# (arguments, the one line on stderr): text on the command line that does not parse
@pytest.mark.parametrize(("args", "line"), [
    (["--budget", "socket_read.p99 << 2ms"], "--budget 'socket_read.p99 << 2ms': write "
     "[rx.|tx.]STAGE.STAT OP VALUE UNIT, e.g. 'socket_read.p99 < 2ms' or 'tx.ring.p99 < 50us' "
     "(OP one of < <= > >= ==)"),
    (["--budget", "socket_read.p99 < 2"], "--budget 'socket_read.p99 < 2': '2' has no unit: "
     "write 2us, 2ms or 2s"),
    (["--budget", "tx.socket_read.p99 < 2ms"], "--budget 'tx.socket_read.p99 < 2ms': "
     "socket_read is a receive stage (guest → read): a transmitted packet is written, not "
     "read; its first stage is tx.socket_write"),
    ([], "nothing to check: give --budget, --budgets-file or --baseline"),
    (["--budget", "socket_read.p99 < 2ms", "--baseline", "{base}", "--tolerance", "x"],
     "--tolerance 'x': write a percentage, e.g. 20%"),
    (["--budget", "socket_read.p99 < 2ms", "--tolerance", "30%"],
     "--tolerance, --baseline-stat and --baseline-stage need a baseline: --baseline FILE or "
     "[baseline] in the budgets file"),
    (["--baseline", "{base}", "--baseline-stage", "write_to_phys"],
     "--baseline-stage 'write_to_phys': write_to_phys is a transmit interval: write "
     "tx.write_to_phys"),
    (["--baseline", "{base}", "--baseline-stat", "anomalies"],
     "--baseline-stat 'anomalies': a baseline compares durations (p50, p99.9, max, mean), "
     "not counts"),
    (["--budgets-file", "{base}", "--no-budgets-file"],
     "--budgets-file and --no-budgets-file: give one of them"),
])
def test_cli_check_usage_errors_exit_2(runner, tmp_path, args, line):
    base = _baseline_file(tmp_path, make_analysis())
    args = [a.replace("{base}", str(base)) for a in args]
    result = runner.invoke(main, ["check", "guest.pcap", *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"xenlat: error: {line}\n"


def test_cli_check_unreadable_inputs_exit_3(runner, tmp_path):
    missing = runner.invoke(main, ["check", "guest.pcap", "--budgets-file",
                                   str(tmp_path / "nope.toml")])
    assert missing.exit_code == 3
    assert missing.stdout == ""
    assert missing.stderr == f"xenlat: error: {tmp_path / 'nope.toml'}: no such file\n"
    bad = tmp_path / "b.json"
    bad.write_text("[1, 2", encoding="utf-8")
    broken = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(bad)])
    assert broken.exit_code == 3
    assert broken.stdout == ""
    assert broken.stderr == (f"xenlat: error: {bad}: line 1: not a baseline: invalid JSON "
                             "(Expecting ',' delimiter)\n")
    # a budget that does not parse is a usage error on the command line, an input error in a
    # file: one rule
    toml = tmp_path / "budgets.toml"
    toml.write_text('[budgets]\n"total.max" = "< 50ms"\n"socket_read.p99" = "< 2"\n')
    in_file = runner.invoke(main, ["check", "guest.pcap", "--budgets-file", str(toml)])
    assert in_file.exit_code == 3
    assert in_file.stderr == (f"xenlat: error: {toml}: line 3: [budgets] budget "
                              "'socket_read.p99 < 2': '2' has no unit: write 2us, 2ms or 2s\n")


#: The corrupt baselines of issue 10, each once silently dropping its check (or crashing):
#: (spoil, the problem as the one stderr line names it).
ISSUE_10_BASELINES = [
    (_set(("stages", "socket_read", "p99"), "99.8ms"),
     'stages.socket_read.p99 = "99.8ms": expected a duration in µs (a finite number within '
     "±1e+15)"),
    (_set(("stages", "socket_read", "p99"), [99800.0]),
     "stages.socket_read.p99 = [99800.0]: expected a duration in µs (a finite number within "
     "±1e+15)"),
    (_set(("stages", "socket_read", "p99"), float("nan")),
     "stages.socket_read.p99 = NaN: expected a duration in µs (a finite number within ±1e+15)"),
    (_set(("stages", "socket_read", "p99"), None),
     "stages.socket_read.p99 = null: expected a duration in µs (a finite number within "
     "±1e+15)"),
    (_set(("stages", "socket_read", "p99"), 10**400),
     f"stages.socket_read.p99 = 1{'0' * 36}…: expected a duration in µs (a finite number "
     "within ±1e+15)"),
    (_set(("kind",), "something-else"), "not a baseline written by 'xenlat baseline'"),
    (_set(("format",), 99), "baseline format 99 is not one this xenlat reads (1); rewrite it "
     "with 'xenlat baseline'"),
]


@pytest.mark.parametrize(("spoil", "problem"), ISSUE_10_BASELINES)
def test_cli_corrupt_baseline_exits_3_never_passes(runner, fake_analysis, tmp_path, spoil,
                                                   problem):
    # the run regressed (p99 of socket_read ≈ 100 ms); a corrupt baseline must not hide it
    fake_analysis["analysis"] = make_analysis(stalls=BLACK_STALLS)
    document = _valid_document()
    spoil(document)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr == f"xenlat: error: {path}: {problem}\n"


def test_cli_deeply_nested_baseline_exits_3(runner, fake_analysis, tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text('{"stages": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    result = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(path)])
    assert result.exit_code == 3
    assert result.stderr == f"xenlat: error: {path}: not a baseline: JSON nested too deeply\n"


def test_cli_budgets_toml_beside_the_capture(runner, fake_analysis, tmp_path):
    guest = tmp_path / "guest.pcap"  # the analysis is replaced: the file need not exist
    toml = tmp_path / "budgets.toml"
    toml.write_text('[budgets]\n"socket_read.p99" = "< 2ms"\n"tx.ring.p99" = "< 1ms optional"\n')
    fake_analysis["analysis"] = make_analysis(stalls=BLACK_STALLS)
    found = runner.invoke(main, ["check", str(guest), "--format", "json"])
    assert found.exit_code == 1, found.stderr
    doc = json.loads(found.stdout)
    assert doc["budgets_file"] == str(toml)
    assert [c["text"] for c in doc["checks"]] == ["socket_read.p99 < 2ms",
                                                  "tx.ring.p99 < 1ms optional"]
    table = runner.invoke(main, ["check", str(guest), "--budget", "total.max < 1s"])
    assert f"budgets from {toml}" in " ".join(table.stdout.split())
    assert [c.get("name") for c in _junit_cases(runner, tmp_path, str(guest))] == [
        "total.max < 1s", "socket_read.p99 < 2ms", "tx.ring.p99 < 1ms optional"]
    # --no-budgets-file leaves it: only the command line's budget
    ignored = runner.invoke(main, ["check", str(guest), "--no-budgets-file", "--budget",
                                   "total.max < 1s", "--format", "json"])
    assert ignored.exit_code == 0, ignored.stderr
    assert json.loads(ignored.stdout)["budgets_file"] is None
    # a budgets.toml beside the capture that cannot be used is an input error, not ignored
    toml.write_text('[budgets]\n"socket_read.p99" = "< 2"\n')
    broken = runner.invoke(main, ["check", str(guest)])
    assert broken.exit_code == 3
    assert broken.stderr.startswith(f"xenlat: error: {toml}: line 2: ")


def _junit_cases(runner, tmp_path, guest):
    import xml.etree.ElementTree as ET

    junit = tmp_path / "cases.xml"
    runner.invoke(main, ["check", guest, "--budget", "total.max < 1s", "--junit", str(junit)])
    root = ET.parse(junit).getroot()
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["budgets_file"] == str(tmp_path / "budgets.toml")
    return root.findall("testcase")


def test_cli_baseline_percentiles_and_stages(runner, fake_analysis, tmp_path):
    fake_analysis["analysis"] = make_two_way_analysis()
    base = tmp_path / "baseline.json"
    saved = runner.invoke(main, ["baseline", "guest.pcap", "-o", str(base), "--stat", "p95",
                                 "--stat", "p99.99"])
    assert saved.exit_code == 0, saved.stderr
    assert {"p95", "p99.99"} <= set(json.loads(base.read_text())["stages"]["tx.ring"])
    fake_analysis["analysis"] = make_two_way_analysis(tx_scale={"ring": 3.0})
    result = runner.invoke(main, ["check", "guest.pcap", "--baseline", str(base),
                                  "--baseline-stat", "p95", "--baseline-stage", "tx.ring",
                                  "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [c["name"] for c in doc["checks"]] == ["tx.ring.p95"]
    assert doc["baseline"]["stages"] == ["tx.ring"] and doc["baseline"]["stats"] == ["p95"]
    bad = runner.invoke(main, ["baseline", "guest.pcap", "-o", str(base), "--stat", "p200"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("xenlat: error: --stat: unknown statistic 'p200'")


def test_readme_synopsis_matches_the_usage_lines():
    """Each row of the README's command table starts with the command's real usage."""
    import click

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rows = re.findall(r"^\| `xenlat (\S+)([^`]*)` \|", readme, re.M)
    assert {name for name, _ in rows} >= {"analyze", "check", "baseline", "report"}
    for name, rest in rows:
        command = main.commands[name]
        with click.Context(command, info_name=name) as ctx:
            pieces = [p for p in command.collect_usage_pieces(ctx) if p != "[OPTIONS]"]
        shown = f"{name}{rest}"
        usage = " ".join([name, *pieces])
        # after the arguments come options only (``-o …``, ``[--backend …]``)
        assert shown == usage or shown.startswith((usage + " -", usage + " [-")), (shown, usage)


# --- the real pipeline (simulator + analyzer) ------------------------------------------------


@pytest.fixture(scope="module")
def scenarios(simulated_set):
    """``xenlat simulate healthy`` and ``black-0.1s`` capture sets (the session's, shared)."""
    out = {name: simulated_set(name, **SCENARIO_SET) for name in ("healthy", "black-0.1s")}
    # the same scenario run again: other random draws, same system
    out["healthy again"] = simulated_set("healthy", **{**SCENARIO_SET, "seed": 4})
    return out


def test_scenario_truth_against_budgets(scenarios):
    """The simulator's truth alone: healthy within budget, black 0.1 s breaches socket_read."""
    budgets = ("socket_read.p99 < 2ms", "total.max < 50ms")
    healthy = _evaluate(truth_analysis(scenarios["healthy"]), budgets)
    assert healthy.passed, healthy.summary
    black = _evaluate(truth_analysis(scenarios["black-0.1s"]), budgets)
    assert not black.passed
    assert black.checks[1].verdict == "fail"  # a 100 ms stall is over 50 ms
    assert black.checks[1].measured >= 100_000 * 0.9


#: Whether the scenario checks give the analyzer the hypervisor trace too.
SCENARIO_XENTRACE = True


def _analysis_args(directory: Path) -> list[str]:
    return scenario_sources(directory, xentrace=SCENARIO_XENTRACE)


def test_scenarios_through_the_cli(runner, scenarios, tmp_path):
    schema = _schema()
    budgets = ["--budget", "socket_read.p99 < 2ms", "--budget", "total.max < 50ms"]
    healthy = runner.invoke(main, ["check", *_analysis_args(scenarios["healthy"]), *budgets,
                                   "--no-progress"])
    assert healthy.exit_code == 0, healthy.stdout + healthy.stderr
    junit = tmp_path / "black.xml"
    black = runner.invoke(main, ["check", *_analysis_args(scenarios["black-0.1s"]), *budgets,
                                 "--junit", str(junit), "--no-progress"])
    assert black.exit_code == 1, black.stdout + black.stderr
    assert "::error title=xenlat budget%3A socket_read.p99 < 2ms::" in black.stderr
    schema.validate(str(junit))
    import xml.etree.ElementTree as ET

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    failure = cases["socket_read.p99 < 2ms"].find("failure")
    assert failure is not None and "worst packet: 10.0.0.1:11211→10.0.0.5:" in failure.text
    again = tmp_path / "again.xml"
    runner.invoke(main, ["check", *_analysis_args(scenarios["black-0.1s"]), *budgets,
                         "--junit", str(again), "--no-progress"])
    assert again.read_bytes() == junit.read_bytes()


def test_scenario_baseline_catches_regression_not_rerun(runner, scenarios, tmp_path):
    base = tmp_path / "baseline.json"
    saved = runner.invoke(main, ["baseline", *_analysis_args(scenarios["healthy"]), "-o",
                                 str(base), "--no-progress"])
    assert saved.exit_code == 0, saved.stderr
    # Same captures: the default 20 % holds exactly. Another seed draws other packets: with a
    # few hundred packets the truth's own remap p99 moves by ~20 %, so that rerun is judged at
    # 50 % — still far below the black 0.1 s regression (1000x) — and on its percentiles: on
    # the realistic host one packet's max moves 2.4x between seeds (tx.vmm 402 → 956 µs, the
    # dom0 vCPU preempted by background work), which is no regression (docs/ci-example.md).
    percentiles = ["--baseline-stat", "p50", "--baseline-stat", "p90", "--baseline-stat", "p99"]
    for name, tolerance, stats in (("healthy", "20%", []),
                                   ("healthy again", "50%", percentiles)):
        rerun = runner.invoke(main, ["check", *_analysis_args(scenarios[name]), "--baseline",
                                     str(base), "--tolerance", tolerance, *stats,
                                     "--no-progress"])
        assert rerun.exit_code == 0, rerun.stdout
        assert rerun.stderr == ""
        assert "smaller changes are not regressions" in " ".join(rerun.stdout.split())
    regressed = runner.invoke(main, ["check", *_analysis_args(scenarios["black-0.1s"]),
                                     "--baseline", str(base), "--tolerance", "50%",
                                     "--no-progress"])
    assert regressed.exit_code == 1
    assert "::error title=xenlat baseline%3A socket_read.p99 vs baseline::" in regressed.stderr


def test_scenario_transmit_budgets_through_the_cli(runner, scenarios):
    """Budgets on both directions of a simulated set, measured on each direction's segments."""
    truth = pd.read_csv(scenarios["healthy"] / "truth.csv")
    tx = truth[truth["direction"] == "tx"]
    write_us = np.percentile((tx["t_guest"] - tx["t_write"]) * 1e6, 50)
    result = runner.invoke(main, [
        "check", *_analysis_args(scenarios["healthy"]), "--budget", "tx.socket_write.p50 < 1ms",
        "--budget", "tx.total.max < 10ms", "--budget", "socket_read.p95 < 2ms",
        "--budget", "tx.socket_write.count > 0", "--format", "json", "--no-progress"])
    assert result.exit_code == 0, result.stdout + result.stderr
    write, total, read, count = json.loads(result.stdout)["checks"]
    # the application's write → the guest capture, both on the guest's clock: within 3 µs
    assert write["measured"] == pytest.approx(write_us, abs=3.0)
    assert count["measured"] == len(tx)
    assert total["stage"] == "tx.total" and read["stage"] == "socket_read"


def test_scenario_budgets_toml_in_the_set_directory(runner, scenarios, tmp_path):
    """budgets.toml beside a capture set's files is read, with its [baseline]."""
    directory = scenarios["black-0.1s"]
    for path in directory.iterdir():
        (tmp_path / path.name).symlink_to(path)
    base = tmp_path / "healthy-baseline.json"
    saved = runner.invoke(main, ["baseline", *_analysis_args(scenarios["healthy"]), "-o",
                                 str(base), "--no-progress"])
    assert saved.exit_code == 0, saved.stderr
    (tmp_path / "budgets.toml").write_text(
        '[budgets]\n"tx.socket_write.p99" = "< 5ms"\n'
        '[baseline]\nfile = "healthy-baseline.json"\ntolerance = "50%"\n', encoding="utf-8")
    # the set directory itself (its xenlat-set.toml names the files), as CI would give it
    result = runner.invoke(main, ["check", str(tmp_path), "--format", "json", "--no-progress"])
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    named = runner.invoke(main, ["check", *_analysis_args(tmp_path), "--format", "json",
                                 "--no-progress"])
    assert named.stdout == result.stdout  # the same files named one by one
    assert doc["budgets_file"] == str(tmp_path / "budgets.toml")
    saved_stages = json.loads(base.read_text())["stages"]
    assert doc["baseline"]["stages"] == [k for k in gate.COMPARED_KEYS
                                         if saved_stages.get(k, {}).get("count", 0) > 0]
    assert not any("request_to_response" in c["stage"] or "response_to_next" in c["stage"]
                   for c in doc["checks"])
    failed = {c["name"] for c in doc["checks"] if c["verdict"] != "pass"}
    assert "socket_read.p99" in failed and "tx.socket_write.p99" not in failed


def test_lone_capture_intervals_are_budgetable():
    analysis = make_analysis()
    table = analysis.table
    table["request_to_response_us"] = np.where(table.index % 2 == 0, 50_000.0, np.nan)
    table.loc[10, "request_to_response_us"] = 383_562.0
    table.loc[10, "anomaly"] = "request_to_response"
    result = _evaluate(analysis, ("request_to_response.max < 100ms",
                                  "request_to_response.anomalies == 0",
                                  "response_to_next.p99 < 1s optional"))
    bound, count, optional = result.checks
    assert bound.verdict == "fail" and bound.measured == 383_562.0
    assert "seq 2000" in bound.worst[0]
    assert count.verdict == "fail" and count.measured == 1
    assert optional.verdict == "skipped"
    doc = gate.baseline_document(analysis)
    assert doc["stages"]["request_to_response"]["count"] == 100


def test_real_capture_through_the_pipeline(runner, corpus):
    """A real capture alone: the far side's 383.6 ms response, timed from tshark's output."""
    import csv

    name = "pcapplusplus__four_ipv6_http_streams.pcap"
    with open(corpus / "ref_aggregator_pipe" / f"{name}.csv", newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and r[0].isdigit()]
    # columns: frame, time, len, caplen, ip.src, ip.dst, ipv6.src, ipv6.dst, sport, dport,
    # seq_raw, tcp.len: the request is the client's data to port 80, the response the reply
    request = [float(r[1]) for r in rows if r[8] == "40426" and int(r[11] or 0) > 0]
    response = [float(r[1]) for r in rows if r[9] == "40426" and int(r[11] or 0) > 0]
    expected_us = (min(response) - max(request)) * 1e6
    capture = str(corpus / "captures" / name)
    slow = runner.invoke(main, ["check", capture, "--budget", "request_to_response.max < 100ms",
                                "--budget", "total.max < 50ms optional", "--format", "json",
                                "--no-progress"])
    assert slow.exit_code == 1, slow.stderr
    doc = json.loads(slow.stdout)
    first, total = doc["checks"]
    assert first["verdict"] == "fail"
    assert first["measured"] == pytest.approx(expected_us, abs=1.0)
    assert total["verdict"] == "skipped"
    assert "one capture alone gives no stage" in total["message"]
    assert slow.stderr.startswith("::error title=xenlat budget%3A request_to_response.max")
    ok = runner.invoke(main, ["check", capture, "--budget", "request_to_response.max < 1s",
                              "--no-progress"])
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert ok.stderr == ""


def test_documented_budgets_file_works(tmp_path):
    """The budgets.toml of docs/ci-example.md parses and means what the page says."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "ci-example.md").read_text()
    toml = re.search(r"```toml\n(.*?)```", page, re.S).group(1)
    (tmp_path / "budgets.toml").write_text(toml, encoding="utf-8")
    analysis = make_two_way_analysis()
    _baseline_file(tmp_path, analysis)
    limits = gate.collect_budgets([], tmp_path / "budgets.toml", None, None)
    budgets = [lim.text for lim in limits if lim.source == "budget"]
    assert budgets == ["socket_read.p99 < 2ms", "total.max < 50ms", "remap.anomalies == 0",
                       "vmm.p99.9 < 500us", "vmm.p99.9 > 0us", "ring.p99 < 1ms optional",
                       "tx.ring.p95 < 50us optional", "tx.socket_write.max < 2ms"]
    compared = [lim for lim in limits if lim.source == "baseline"]
    assert len(compared) == 12 * 4 and compared[0].tolerance == pytest.approx(0.2)
    assert compared[0].floor_us == 20.0
    assert gate.evaluate(analysis, limits).passed
    stalled = dataclasses.replace(analysis, table=analysis.table.copy())
    stalled.table.loc[list(BLACK_STALLS), "socket_read_us"] += STALL_US
    assert not gate.evaluate(stalled, limits).passed


def test_documented_stage_table_is_the_model():
    """The page's table of stages per direction lists what the grammar accepts, no more."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "ci-example.md").read_text()
    rows = re.findall(r"^  \| ([a-z][^|]*) \| (.+) \| (.+) \|$", page, re.M)
    assert [row[0] for row in rows] == ["stages", "merged intervals (a source missing)",
                                        "one capture alone", "end to end"]
    named = {"rx": set(), "tx": set()}
    for _, rx, tx in rows:
        named["rx"] |= set(re.findall(r"`([a-z_0-9]+)`", rx))
        named["tx"] |= set(re.findall(r"`([a-z_0-9]+)`", tx.replace("the same", rx)))
    for way, names in gate.DIRECTION_NAMES.items():
        assert named[way] == set(names), way


def test_baseline_comparisons_in_path_order(tmp_path):
    analysis = make_analysis(xentrace=False)
    path = _baseline_file(tmp_path, analysis)
    limits = gate.collect_budgets([], None, path, "20%")
    stages = list(dict.fromkeys(lim.stage for lim in limits))
    assert stages == ["socket_read", "backend_to_guest", "total"]
    assert [lim.stat for lim in limits[:4]] == ["p50", "p90", "p99", "max"]


def test_negative_within_uncertainty_is_a_measurement():
    # the analysis lets a stage lie below 0 by its uncertainty (+1 µs): a tx remap of
    # -1.5 µs ±2 µs is a measurement near 0, not an impossible value; -4 µs is beyond it
    analysis = make_two_way_analysis()
    tx = analysis.table["direction"] == "tx"
    analysis.table.loc[tx, "remap_us"] = np.linspace(-1.5, 3.0, int(tx.sum()))
    near, low = _evaluate(analysis, ("tx.remap.p0 < 10us", "tx.remap.p50 < 10us")).checks
    assert (near.verdict, near.measured) == ("pass", -1.5)
    assert low.verdict == "pass"
    analysis.table.loc[tx, "remap_us"] = np.linspace(-4.0, -3.5, int(tx.sum()))
    beyond = _evaluate(analysis, ("tx.remap.p50 < 10us",)).checks[0]
    assert beyond.verdict == "not measured"
    assert "beyond its uncertainty ±3 µs" in beyond.message  # 2 µs of the rows + 1 µs
    # without a table (a plain statistics mapping) the slack is the 1 µs alone
    stats = {"ring": {"count": 5, "p50": -0.5, "p99": -1.5}}
    checks = gate.evaluate(stats, [gate.parse_budget("ring.p50 < 1ms"),
                                   gate.parse_budget("ring.p99 < 1ms")]).checks
    assert [c.verdict for c in checks] == ["pass", "not measured"]


def test_negative_statistic_is_not_measured_never_a_pass():
    # a negative latency (clocks or captures mixed up) must not pass "< 1ms", even if optional
    analysis = make_analysis()
    analysis.table["socket_read_us"] = -analysis.table["socket_read_us"].abs() - 1.0
    result = _evaluate(analysis, ("socket_read.p50 < 1ms", "socket_read.max < 1ms optional",
                                  "socket_read.count > 10"))
    p50, worst, count = result.checks
    assert p50.verdict == "not measured" and p50.failed and "negative" in p50.message
    assert worst.verdict == "not measured" and worst.failed
    assert count.verdict == "pass"
    assert not result.passed
