"""The analysis pipeline against the simulator's truth, and ``xenlat analyze`` from the CLI.

Every scenario is simulated once per session (small ``--requests``); each test analyzes some
subset of its sources and compares with ``truth.csv`` joined on (direction, flow, seq).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.cli import main
from xentrace_cli.errors import XenlatWarning
from xentrace_cli.model import STAGES, TABLE_COLUMNS, TABLE_DICTIONARY_COLUMNS, Sources
from xentrace_cli.pipeline.analyze import AnalyzeOptions, analyze, analyze_files, parse_thresholds
from xentrace_cli.pipeline.result import Analysis
from xentrace_cli.simulate.score import join_truth

REQUESTS = 150
#: pcap timestamps are whole microseconds (truncated): an interval between two of them, or
#: between one and a clock fitted on them, may be off by up to 2 µs beyond the uncertainty
#: the analysis states for the clocks involved. Measured errors at seed 11 stay within it
#: (driver_domain/ring ≤ 2.5 µs against a stated 0.3–1.8 µs, remap ≤ 5.3 µs against 8.8–10
#: µs), while a 30 µs shifted checkpoint or ring and remap swapped break it.
QUANTUM_US = 2.0
#: A stage is right when within its stated uncertainty + QUANTUM_US of the truth …
STAGE_SHARE = 0.99
#: … for this share of the packets it measures (other comparisons: SHARE),
SHARE = 0.95
#: and never off by more than this (µs): a packet matched to the wrong copy batch.
#: A stage measures at least this share of the truth's rows; on the realistic host a trace
#: checkpoint that would break the path's order within the clocks is emptied (path_order).
MEASURED_SHARE = 0.97
WORST_US = 100.0
KEYS = ["direction", "src", "sport", "dst", "dport", "seq"]


@pytest.fixture(scope="session")
def scenario(simulated_set):
    """``scenario(name, seed=11, host=None) -> dir``: each simulated once per session
    (``conftest.simulated_set``)."""
    def make(name: str, seed: int = 11, host: str | None = None) -> Path:
        return simulated_set(name, seed=seed, requests=REQUESTS, host=host)

    return make


_RUNS: dict[tuple[Path, tuple[str, ...]], object] = {}


def files(directory: Path) -> dict[str, Path]:
    """The simulated set's files by source name."""
    found = {p.name: p for p in directory.iterdir()}
    guest = next(p for n, p in found.items() if n.startswith("guest."))
    backend = next(p for n, p in found.items() if n.startswith("vif"))
    return {"guest": guest, "backend": backend, "phys": found["phys.pcap"],
            "xentrace": found["xentrace.bin"], "socket_log": found["app.strace"]}


def run(directory: Path, *names: str, **options: object):
    """The analysis of some of a set's sources (cached: tests only read it)."""
    paths = files(directory)
    use = names or tuple(paths)
    key = (directory, tuple(sorted(use)))
    if options or key not in _RUNS:
        sources = Sources(**{n: paths[n] for n in use})
        result = analyze(sources, AnalyzeOptions(**options))
        if options:
            return result
        _RUNS[key] = result
    return _RUNS[key]


def truth(directory: Path) -> pd.DataFrame:
    real = pd.read_csv(directory / "truth.csv", dtype={"anomaly": str, "cause": str})
    return real.fillna({"anomaly": "", "cause": ""})


def joined(analysis, directory: Path) -> pd.DataFrame:
    """The analysis beside the truth, joined as the accuracy score joins them (a datagram by
    its order in its flow, since it has no sequence number)."""
    both = join_truth(analysis.table, truth(directory))
    both.attrs["baselines"] = analysis.baselines  # the stated uncertainty of each stage
    return both


def check_stage(both: pd.DataFrame, column: str, truth_column: str | None = None) -> None:
    """Within the stage's stated uncertainty (the row's when the stage has no baseline) plus
    QUANTUM_US of the truth for STAGE_SHARE of the packets, never beyond WORST_US."""
    truth_column = truth_column or f"{column}_true"
    ours = pd.to_numeric(both[column], errors="coerce").to_numpy(float)
    real = pd.to_numeric(both[truth_column], errors="coerce").to_numpy(float)
    ok = np.isfinite(real)
    assert ok.sum() > 0, f"no truth for {column}"
    base = both.attrs.get("baselines", {}).get(column.removesuffix("_us"))
    if base is not None and base.get("uncertainty_us") is not None:
        tolerance = np.full(ok.sum(), base["uncertainty_us"] + QUANTUM_US)
    else:
        tolerance = both["uncertainty_us"].to_numpy(float)[ok] + QUANTUM_US
    err = np.abs(ours[ok] - real[ok])
    # a checkpoint the trace could not place within the clocks is left empty, not guessed
    # (path_order): few may be, and none of those measured may be wrong
    measured = np.isfinite(err)
    assert measured.mean() >= MEASURED_SHARE, f"{column}: only {measured.mean():.1%} measured"
    err, tolerance = err[measured], tolerance[measured]
    share = float((err <= tolerance).mean())
    assert share >= STAGE_SHARE, f"{column}: only {share:.1%} within {tolerance.max():.1f} " \
        f"µs (median error {np.median(err):.1f} µs, max {err.max():.1f} µs)"
    assert err.max() <= WORST_US, f"{column}: worst error {err.max():.0f} µs"


def stage_columns(both: pd.DataFrame) -> list[str]:
    return [f"{s}_us" for s in STAGES if f"{s}_us_true" in both.columns
            and both[f"{s}_us_true"].notna().any()]


# --- all sources -------------------------------------------------------------------------------

def check_all_sources(directory: Path) -> tuple[Analysis, pd.DataFrame]:
    """All sources of a set: nearly every true segment in the table, and every receive stage
    within its tolerance of the truth. Returns the analysis and its join with the truth."""
    analysis = run(directory)
    both = joined(analysis, directory)
    assert len(both) >= 0.95 * len(truth(directory))
    rx = both[both["direction"] == "rx"]
    for column in stage_columns(rx):
        check_stage(rx, column)
    return analysis, both


def test_healthy_all_sources_match_the_truth(scenario) -> None:
    analysis, both = check_all_sources(scenario("healthy"))
    check_stage(both, "total_us")  # first → last checkpoint, both directions
    # the transmit direction: write → guest → backend → phys, from the truth's checkpoints
    tx = both[both["direction"] == "tx"]
    assert len(tx) > 50
    for name, (a, b) in {"socket_write": ("write", "guest"),
                         "driver_domain": ("backend", "phys")}.items():
        tx = tx.assign(**{f"{name}_us_true": (tx[f"t_{b}_true"] - tx[f"t_{a}_true"]) * 1e6})
        check_stage(tx, f"{name}_us")
    assert (analysis.table["anomaly"] == "").all(), \
        analysis.table.loc[analysis.table["anomaly"] != "", ["anomaly", "total_us"]]
    assert analysis.alignment["guest->dom0"]["quality"] == "bounded"
    assert analysis.alignment["tsc->dom0"]["quality"] in ("bounded", "one-sided")


def injected(directory: Path) -> pd.DataFrame:
    real = truth(directory)
    return real[real["anomaly"].astype(str) != ""]


def check_recall(analysis, directory: Path, min_recall: float = 0.9) -> None:
    """Every injected anomaly found, in the right stage, with the right cause."""
    both = joined(analysis, directory)
    wanted = both[both["anomaly_true"].astype(str) != ""]
    assert len(wanted), "the scenario injected nothing"
    stage_ok = (wanted["anomaly"] == wanted["anomaly_true"]).mean()
    assert stage_ok >= min_recall, wanted[["seq", "anomaly", "anomaly_true"]].head(20)
    cause_ok = (wanted["cause"] == wanted["cause_true"].astype(str)).mean()
    assert cause_ok >= min_recall, wanted[["seq", "anomaly", "cause", "cause_true",
                                           "cause_detail"]].head(20)
    # and the healthy packets mostly stay quiet
    quiet = both[both["anomaly_true"].astype(str) == ""]
    assert (quiet["anomaly"] != "").mean() <= 0.02


def test_black_tenth_of_a_second_found_with_its_cause(scenario) -> None:
    directory = scenario("black-0.1s")
    analysis = run(directory)
    check_recall(analysis, directory)
    flagged = analysis.table[analysis.table["anomaly"] == "socket_read"]
    assert (flagged["stall"] == "≈100 ms").any()
    assert flagged["cause_detail"].str.contains("preempted by d").any()


#: Known gaps on the realistic host, kept visible (strict: they fail once fixed). ring-full
#: seed 11: 1.2 % of ring values off by up to 7.9 µs against a stated 5.4 µs.
_KNOWN_GAPS = {("ring-full", 11)}


@pytest.mark.parametrize("seed", [11, 5, 7])
@pytest.mark.parametrize("name", ["dom0-starved", "ring-full", "lost-records"])
def test_injected_faults_found(scenario, request, name: str, seed: int) -> None:
    if (name, seed) in _KNOWN_GAPS:
        request.applymarker(pytest.mark.xfail(strict=True, reason="known gap (see _KNOWN_GAPS)"))
    # seed 5 of ring-full once attached an interrupt 4 ms too early to a packet (a false
    # driver_domain stall): every stage is checked against the truth, not only the faults
    directory = scenario(name, seed)
    analysis = run(directory)
    check_recall(analysis, directory)
    rx = joined(analysis, directory).query("direction == 'rx'")
    for column in stage_columns(rx):
        check_stage(rx, column)


def test_clock_skew_aligned(scenario) -> None:
    directory = scenario("clock-skew")
    analysis = run(directory)
    fit = analysis.alignment["guest->dom0"]
    assert fit["quality"] == "bounded"
    # guest_ns = true_ns + offset + drift·(true_ns - t0): at the fit's reference point the
    # correction to dom0's (true) clock is minus that, within the fit's own bound
    spec = json.loads((directory / "scenario.json").read_text())
    clock = spec["guest_clock"]
    ref_true = fit["ref_ns"] - clock["offset_ns"]
    expected = -(clock["offset_ns"] + clock["drift_ppm"] * 1e-6 * (ref_true - spec["t0_ns"]))
    assert abs(fit["offset_ns"] - expected) <= fit["uncertainty_us"] * 1e3 + 1_000
    assert abs(fit["drift_ppm"] + clock["drift_ppm"]) < 20
    both = joined(analysis, directory)
    rx = both[both["direction"] == "rx"]
    for column in stage_columns(rx):
        check_stage(rx, column)
    assert (analysis.table["uncertainty_us"] > 0).any()


def test_given_options_give_the_same_split(scenario) -> None:
    directory = scenario("healthy")
    spec = json.loads((directory / "scenario.json").read_text())
    given = run(directory, cpu_hz=spec["cpu_hz"], nic_irq=spec["nic_irq"], domid=spec["domid"])
    assert given.alignment["tsc->dom0"]["cpu_hz_estimated"] is False
    assert not any("NIC interrupt: Xen IRQ" in note for note in given.notes)
    both = joined(given, directory)
    rx = both[both["direction"] == "rx"]
    for column in stage_columns(rx):
        check_stage(rx, column)
    # a wrong NIC IRQ cannot be lined up with the arrivals: said, and no trace checkpoints
    wrong = run(directory, nic_irq=999)
    assert wrong.table["t_irq"].isna().all() and wrong.table["ring_us"].isna().all()
    assert wrong.table["backend_to_guest_us"].notna().any()  # merged, as without a trace
    assert any("xentrace" in note for note in wrong.notes)


def test_given_cpu_hz_rounded_to_mhz_is_refined(scenario) -> None:
    # xl info gives MHz: 2.901 GHz for a 2.9 GHz TSC (+345 ppm) keeps the trace and its split
    directory = scenario("healthy")
    spec = json.loads((directory / "scenario.json").read_text())
    given = spec["cpu_hz"] + 1e6
    analysis = run(directory, cpu_hz=given)
    tsc = analysis.alignment["tsc->dom0"]
    assert tsc["quality"] in ("bounded", "one-sided")
    assert f"given {given / 1e9:.6g} GHz, fitted" in tsc["detail"], tsc["detail"]
    assert abs(tsc["cpu_hz"] / spec["cpu_hz"] - 1) < 10e-6
    rx = joined(analysis, directory).query("direction == 'rx'")
    for column in stage_columns(rx):
        check_stage(rx, column)
    # 10 % off is no rounding: said, with the estimate, and not blamed on a missing trace
    far = run(directory, cpu_hz=spec["cpu_hz"] * 1.1)
    assert far.table["ring_us"].isna().all()
    said = [re.search(r"given --cpu-hz .* does not fit.* line up at ([\d.]+) GHz", n)
            for n in far.notes]
    estimate = next(float(m.group(1)) for m in said if m)
    assert abs(estimate * 1e9 / spec["cpu_hz"] - 1) < 10e-6
    assert any("xentrace could not be aligned with the captures" in n for n in far.notes)
    assert not any("xentrace is missing" in n for n in far.notes)


def test_wrong_domid_is_questioned(scenario) -> None:
    # the black set's guest is d5 (vif5.0); d9 is another busy domain of the trace
    directory = scenario("black-0.1s")
    with pytest.warns(XenlatWarning, match=r"--domid 9 contradicts .*vif5\.N serves domain 5"):
        wrong = run(directory, domid=9)
    said = [n for n in wrong.notes if n.startswith("guest domain d9 reacts to 0% of netback")]
    assert said and "d5 to" in said[0], wrong.notes
    right = run(directory)
    assert not any("reacts to" in n for n in right.notes)


def test_offload_gso_gro(scenario) -> None:
    check_all_sources(scenario("offload"))


# --- fewer sources ------------------------------------------------------------------------------

def test_without_the_trace_stages_merge_and_no_cause(scenario) -> None:
    directory = scenario("black-0.1s")
    analysis = run(directory, "guest", "backend", "phys", "socket_log")
    table = analysis.table
    assert "backend_to_guest_us" in table.columns
    assert table["ring_us"].isna().all() and table["remap_us"].isna().all()
    assert (table["cause"] == "").all()
    assert any("ring, remap" in note for note in analysis.notes)
    both = joined(analysis, directory)
    rx = both[both["direction"] == "rx"]
    rx = rx.assign(merged_true=rx["ring_us_true"] + rx["remap_us_true"])
    check_stage(rx, "backend_to_guest_us", "merged_true")
    check_stage(rx, "socket_read_us")
    assert (both.loc[both["anomaly_true"] == "socket_read", "anomaly"] == "socket_read").all()


def test_guest_capture_and_socket_log_only(scenario) -> None:
    directory = scenario("black-0.1s")
    analysis = run(directory, "guest", "socket_log")
    both = joined(analysis, directory)
    rx = both[both["direction"] == "rx"]
    # one clock: exact up to the socket log's microsecond resolution
    err = np.abs(rx["socket_read_us"] - rx["socket_read_us_true"])
    assert (err <= 2.0).mean() >= SHARE and err.max() < 50
    assert (analysis.table["uncertainty_us"] == 0).all()
    wanted = rx[rx["anomaly_true"] == "socket_read"]
    assert (wanted["anomaly"] == "socket_read").all()


def to_time_of_day(strace: Path, out: Path, utc_offset_h: float) -> Path:
    """``strace -ttt`` → ``-tt``: each epoch time as the time of day in that UTC offset."""
    def local(match: re.Match) -> str:
        micros = round(float(match.group(2)) * 1e6) + round(utc_offset_h * 3600e6)
        seconds, us = divmod(micros % (86_400 * 10**6), 10**6)
        return f"{match.group(1)}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:" \
            f"{seconds % 60:02d}.{us:06d}"
    text = re.sub(r"^(\d+\s+)(\d{9,}\.\d{6})", local, strace.read_text(), flags=re.M)
    out.write_text(text)
    return out


@pytest.mark.parametrize("utc_offset_h", [-5.0, 5.75])
def test_time_of_day_socket_log_placed_on_the_capture_date(scenario, tmp_path: Path,
                                                          utc_offset_h: float) -> None:
    # the same log written with -tt in another time zone gives the same socket_read
    directory = scenario("black-0.1s")
    paths = files(directory)
    tod = to_time_of_day(paths["socket_log"], tmp_path / "app-tt.strace", utc_offset_h)
    assert re.search(r"^\d+\s+\d\d:\d\d:\d\d\.\d{6} ", tod.read_text(), re.M)
    epoch = run(directory, "guest", "socket_log").table
    analysis = analyze(Sources(guest=paths["guest"], socket_log=tod), AnalyzeOptions())
    ours = analysis.table
    ok = epoch["socket_read_us"].notna()
    assert ok.sum() > 100
    np.testing.assert_allclose(ours["socket_read_us"][ok], epoch["socket_read_us"][ok])
    # 2026-01-01 01:00 UTC is 2025-12-31 20:00 at UTC-5, 2026-01-01 06:45 at UTC+5:45
    sign = "-" if utc_offset_h < 0 else "+"
    zone = f"UTC{sign}{int(abs(utc_offset_h)):02d}:{round(abs(utc_offset_h) % 1 * 60):02d}"
    date = "2025-12-31" if utc_offset_h < 0 else "2026-01-01"
    assert any(f"times of day only: placed on {date} at {zone}" in n for n in analysis.notes), \
        analysis.notes


def test_time_of_day_socket_log_without_a_capture_is_bad_input(scenario, tmp_path: Path,
                                                               runner) -> None:
    tod = to_time_of_day(files(scenario("black-0.1s"))["socket_log"], tmp_path / "a.strace", 1)
    result = runner.invoke(main, ["analyze", "--socket-log", str(tod), "--no-progress"])
    assert result.exit_code == 3, result.output
    assert result.stdout == ""
    assert "-ttt" in result.stderr and "a.strace" in result.stderr


def test_backend_capture_and_socket_log_align_the_guest_clock(scenario) -> None:
    # no guest capture: reads follow the backend capture of their bytes, writes precede it
    directory = scenario("healthy")
    analysis = run(directory, "backend", "socket_log")
    fit = analysis.alignment["guest->dom0"]
    assert fit["quality"] == "bounded" and fit["from"] == "backend ↔ socket log"
    both = joined(analysis, directory)
    rx = both[both["direction"] == "rx"]
    real = rx["ring_us_true"] + rx["remap_us_true"] + rx["socket_read_us_true"]
    err = (rx["backend_to_read_us"] - real).abs()
    assert (err <= fit["uncertainty_us"] + 1).all()  # never beyond the stated bound
    # the bound to 0.1 µs, rounded up
    assert (rx["uncertainty_us"] == math.ceil(fit["uncertainty_us"] * 10) / 10).all()
    decimals = analysis.table["uncertainty_us"] * 10
    assert (decimals == decimals.round()).all()


def test_guest_capture_alone_shows_the_gap(scenario) -> None:
    directory = scenario("black-0.1s")
    analysis = run(directory, "guest")
    flows = analysis.flows
    assert flows is not None and len(flows)
    gaps = flows[flows["anomaly"] == "response_to_next"]
    assert len(gaps) >= 1
    assert (gaps["response_to_next_us"] > 90_000).all()
    assert any("≈100 ms" in note for note in analysis.notes)


def test_a_second_source_keeps_the_lone_view(scenario) -> None:
    # the black 0.1 s the guest capture alone shows stays on the table whatever is added. On
    # the toy host, whose client answers tightly: the realistic host's client thinks for
    # 17 ms typically with a long tail, so one capture alone sees few of its 100 ms stalls
    # (the socket log and the trace see them all: test_black_tenth_of_a_second_found…)
    directory = scenario("black-0.1s", host="toy")
    alone = run(directory, "guest").table
    gaps = alone["anomaly"] == "response_to_next"
    assert gaps.sum() >= 3
    for names in (("guest", "backend"), ("guest", "xentrace"), ("guest", "backend", "phys")):
        table = run(directory, *names).table
        assert table["request_to_response_us"].notna().sum() > 100, names
        np.testing.assert_array_equal(table["response_to_next_us"], alone["response_to_next_us"])
        # flagged on the same rows (a stage anomaly there, naming the stage, counts too)
        assert (table["anomaly"][gaps] != "").all(), names
    # an unrelated backend capture (another run) matches nothing, hides nothing
    other = files(scenario("healthy", host="toy"))["backend"]
    unrelated = analyze(Sources(guest=files(directory)["guest"], backend=other),
                        AnalyzeOptions()).table
    assert (unrelated["anomaly"][gaps] == "response_to_next").all()


def test_the_table_schema_never_varies(scenario, runner) -> None:
    # the same CSV header for one capture, capture + socket log, all sources, and no capture
    directory = scenario("healthy")
    paths = files(directory)
    headers = []
    for names in (("guest",), ("guest", "socket_log"), tuple(paths), ("socket_log",),
                  ("backend", "socket_log")):
        args = [str(paths["guest"])] if "guest" in names else []
        for name in names:
            if name != "guest":
                args += [f"--{name.replace('_', '-')}", str(paths[name])]
        result = runner.invoke(main, ["analyze", *args, "--format", "csv", "--no-progress"])
        assert result.exit_code == 0, (names, result.stderr)
        headers.append(result.stdout.splitlines()[0])
    assert len(set(headers)) == 1, headers
    header = headers[0].replace('"', "").split(",")
    assert header[:8] == ["src", "sport", "dst", "dport", "proto", "direction", "seq", "len"]
    assert header[-1] == "uncertainty_us" and len(header) == len(TABLE_COLUMNS)
    assert "t_write" in header and "response_to_next_us" in header
    # statistics (check, baseline) cover what these sources measure, not every column
    from xentrace_cli.outputs.gate import measured_stats

    stats = measured_stats(run(directory, "guest", "socket_log"))
    assert {"socket_read", "response_to_next", "tx.socket_write"} <= set(stats)
    assert "backend_to_guest" not in stats and "phys_to_read" not in stats


def test_a_socket_log_of_another_run_is_left_out(scenario) -> None:
    directory = scenario("black-0.1s")
    other = files(scenario("healthy"))["socket_log"]
    analysis = analyze(Sources(guest=files(directory)["guest"], socket_log=other),
                       AnalyzeOptions())
    # never a negative read time: the log is dropped, and the report says why
    assert analysis.table["socket_read_us"].isna().all()
    assert any(n.startswith("socket log left out") and "does not belong" in n
               for n in analysis.notes), analysis.notes


def test_a_socket_log_on_another_clock_is_aligned(scenario, tmp_path: Path) -> None:
    # the same log an hour off (another clock): aligned on the guest capture, same intervals
    directory = scenario("black-0.1s")
    paths = files(directory)
    text = re.sub(r"^(\d+\s+)(\d{9,})\.", lambda m: f"{m.group(1)}{int(m.group(2)) + 3600}.",
                  paths["socket_log"].read_text(), flags=re.M)
    (tmp_path / "late.strace").write_text(text)
    analysis = analyze(Sources(guest=paths["guest"], socket_log=tmp_path / "late.strace"),
                       AnalyzeOptions())
    fit = analysis.alignment["socket log->guest"]
    assert fit["quality"] == "bounded" and abs(fit["offset_ns"] + 3600e9) < 1e6
    both = joined(analysis, directory)
    for column, truth_column in (("socket_read_us", "socket_read_us_true"),):
        rx = both[both["direction"] == "rx"]
        err = (rx[column] - rx[truth_column]).abs()
        assert (err <= rx["uncertainty_us"] + 2).mean() >= SHARE, err.describe()
    tx = both[both["direction"] == "tx"]
    real = (tx["t_guest_true"] - tx["t_write_true"]) * 1e6
    assert ((tx["socket_write_us"] - real).abs() <= tx["uncertainty_us"] + 2).all()
    assert any("another clock" in n for n in analysis.notes)


def test_swapped_dom0_captures_are_said_and_used_the_right_way(scenario) -> None:
    directory = scenario("healthy")
    paths = files(directory)
    right = run(directory, "guest", "backend", "phys").table
    with pytest.warns(XenlatWarning, match="--phys and --backend captures look swapped"):
        swapped = analyze(Sources(guest=paths["guest"], phys=paths["backend"],
                                  backend=paths["phys"]), AnalyzeOptions()).table
    tx = right["direction"] == "tx"
    assert (right["driver_domain_us"][tx] >= 0).all()
    np.testing.assert_array_equal(swapped["driver_domain_us"], right["driver_domain_us"])


def test_guest_and_backend_swapped_is_a_warning(scenario) -> None:
    paths = files(scenario("black-0.1s"))
    # the socket log names the server: the timing contradicts the files' roles
    with pytest.warns(XenlatWarning, match="guest capture and the backend capture look swapped"):
        analyze(Sources(guest=paths["backend"], backend=paths["guest"],
                        socket_log=paths["socket_log"]), AnalyzeOptions())
    # without it, the guest talking to two peers (the server and the DNS-like one), the
    # timing cannot say which address is the guest: the swap is said, not silent
    with pytest.warns(XenlatWarning, match="capture look swapped: data towards 10.0.0.5 "):
        analyze(Sources(guest=paths["backend"], backend=paths["guest"]), AnalyzeOptions())
    # with one peer only (the toy host) the guest is redefined by the timing, and that is said
    toy = files(scenario("black-0.1s", host="toy"))
    with pytest.warns(XenlatWarning, match="taking 10.0.0.1 as the guest, not 10.0.0.5"):
        analyze(Sources(guest=toy["backend"], backend=toy["guest"]), AnalyzeOptions())


def test_a_warning_is_not_lost_while_the_exchanges_thread_ignores_warnings(
        scenario, monkeypatch) -> None:
    # the once-flaky "DID NOT WARN" of the test above: the swap's warning, held while the
    # trace is read and given out on this thread, went through the warnings module while the
    # exchanges' thread sat inside pandas' catch_warnings + simplefilter("ignore"); here that
    # thread sits there for certain until the lone view takes its result
    from xentrace_cli.pipeline import analyze as pipeline
    from xentrace_cli.pipeline import lone

    taken = threading.Event()
    real_exchanges, real_lone_view = lone.exchanges, pipeline.lone_view

    def ignoring_exchanges(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            taken.wait(20)
        return real_exchanges(*args, **kwargs)

    def lone_view(run, aside):
        taken.set()
        return real_lone_view(run, aside)

    monkeypatch.setattr(lone, "exchanges", ignoring_exchanges)
    monkeypatch.setattr(pipeline, "lone_view", lone_view)
    paths = files(scenario("black-0.1s"))
    with pytest.warns(XenlatWarning, match="guest capture and the backend capture look swapped"):
        analyze(Sources(guest=paths["backend"], backend=paths["guest"],
                        socket_log=paths["socket_log"]), AnalyzeOptions())
    assert taken.is_set()


def test_real_capture_exchanges_agree_with_tshark(corpus: Path, tshark: str) -> None:
    # a browser loading a page over HTTP/1.1: one exchange per request, per connection
    import subprocess

    path = corpus / "captures" / "zeek__http_bro.org.pcap"
    out = subprocess.run([tshark, "-r", str(path), "-Y", "http.request", "-T", "fields",
                          "-e", "tcp.srcport"], capture_output=True, text=True, check=True)
    expected = pd.Series(out.stdout.split()).astype(int).value_counts().sort_index()
    flows = analyze_files(guest=path).flows
    got = flows.groupby("sport").size().sort_index()
    assert got.to_dict() == expected.to_dict()
    assert (flows["request_to_response_us"] > 0).all()


# --- the Python API and thresholds ----------------------------------------------------------------

def test_analyze_files_and_thresholds(scenario) -> None:
    paths = files(scenario("healthy"))
    result = analyze_files(guest=paths["guest"], socket_log=paths["socket_log"],
                           thresholds={"socket_read": 1.0})
    flagged = result.table[result.table["anomaly"] == "socket_read"]
    measured = result.table["socket_read_us"].notna()
    assert len(flagged) == int((result.table.loc[measured, "socket_read_us"] > 1.0).sum())


def test_progress_reaches_the_total(scenario) -> None:
    paths = files(scenario("healthy"))
    calls: list[tuple[int, int]] = []
    analyze_files(guest=paths["guest"], xentrace=paths["xentrace"],
                  backend=paths["backend"], on_progress=lambda d, t: calls.append((d, t)))
    assert len(calls) >= 3
    done = [d for d, _ in calls]
    assert calls[-1][0] == calls[-1][1] > 0
    assert all(d <= t for d, t in calls) and max(done[:-1]) < calls[-1][1]


def test_every_step_after_reading_is_named_on_the_progress_bar(scenario) -> None:
    """A callback with ``phase(name)`` (as the command line's bar) hears each step that
    follows the reading, in the order the pipeline runs them, with every source given. The
    steps that need no trace run while it is read: those that start before its reading ends
    are not named (the bar still shows the reading), so only a first few may be missing."""
    paths = files(scenario("healthy"))

    class Bar:
        def __init__(self) -> None:
            self.names: list[str] = []
            self.reads_after_a_phase = 0

        def __call__(self, done: int, total: int) -> None:
            if self.names and done < total:
                self.reads_after_a_phase += 1

        def phase(self, name: str) -> None:
            self.names.append(name)

    bar = Bar()
    analyze_files(**{k: paths[k] for k in ("guest", "backend", "phys", "xentrace",
                                           "socket_log")}, on_progress=bar)
    steps = ["matching packets across captures",
             "placing the socket log's reads and writes",
             "following each packet through the trace",
             "building the table: stages, totals, uncertainty",
             "finding anomalies and their causes",
             "cutting the guest capture's conversations into exchanges"]
    beside_trace = steps.index("following each packet through the trace")
    assert bar.names in [steps[k:] for k in range(beside_trace + 1)], bar.names
    assert bar.reads_after_a_phase == 0  # the reading's bar is done before the first name


def _beside_trace_run(trace_job: concurrent.futures.Future, steps) -> list[str]:
    """Run ``steps`` as :func:`analyze` runs the steps that need no trace, the trace's reading
    finished by a thread after a while; returns what was seen, in order."""
    from xentrace_cli.pipeline import analyze as pipeline

    sources = Sources(guest=Path("guest.pcap"))
    run = pipeline._Run(sources, AnalyzeOptions(), pipeline._Progress(sources, None), set())
    seen: list[str] = []

    def finish_trace() -> None:
        time.sleep(0.2)
        seen.append("trace read")
        if not trace_job.done():
            trace_job.set_result(None)

    reader = threading.Thread(target=finish_trace)
    reader.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pipeline._beside_trace(run, steps, trace_job)
            except Exception as exc:
                seen.append(f"raised {exc}")
            seen.extend(f"warned {w.message}" for w in caught)
    finally:
        reader.join()
    return seen


def test_steps_beside_the_trace_warn_after_it_and_yield_to_its_error() -> None:
    """The steps that run while the trace is read (matching, the socket log) show their
    warnings once the trace is in, and a bad trace's error wins over theirs, as when they ran
    after it."""
    from xentrace_cli.errors import warn

    def warns(run) -> None:
        warn(XenlatWarning("from a step"))

    assert _beside_trace_run(concurrent.futures.Future(), warns) == [
        "trace read", "warned from a step"]

    def fails(run) -> None:
        raise ValueError("the step's error")

    assert _beside_trace_run(concurrent.futures.Future(), fails) == [
        "trace read", "raised the step's error"]
    bad_trace = concurrent.futures.Future()
    bad_trace.set_exception(OSError("the trace's error"))
    for steps in (fails, warns):  # (its reader's thread here ends after: not a real read)
        seen = _beside_trace_run(bad_trace, steps)
        assert [x for x in seen if x != "trace read"] == ["raised the trace's error"]



def test_exchanges_run_beside_the_trace_steps_and_report_after_them(scenario, monkeypatch
                                                                   ) -> None:
    """The lone view's exchanges run in a worker thread while the trace is followed (they
    need no trace): their warnings come out after the trace steps', where a serial run shows
    them, and their error is raised by the analysis, not lost with the thread."""
    from xentrace_cli.errors import warn
    from xentrace_cli.pipeline import analyze as pipeline
    from xentrace_cli.pipeline import lone

    paths = files(scenario("healthy"))
    seen: list[tuple[str, str]] = []
    exchanges, follow_trace = lone.exchanges, pipeline.follow_trace

    def slow_exchanges(*args, **kwargs):
        seen.append(("exchanges", threading.current_thread().name))
        time.sleep(0.3)  # still running when the trace steps warn
        warn(XenlatWarning("from the exchanges"))
        return exchanges(*args, **kwargs)

    def warning_follow_trace(run) -> None:
        seen.append(("follow_trace", threading.current_thread().name))
        warn(XenlatWarning("from the trace steps"))
        follow_trace(run)

    monkeypatch.setattr(lone, "exchanges", slow_exchanges)
    monkeypatch.setattr(pipeline, "follow_trace", warning_follow_trace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = analyze_files(guest=paths["guest"], backend=paths["backend"],
                               xentrace=paths["xentrace"])
    ours = [str(w.message) for w in caught if "from the" in str(w.message)]
    assert ours == ["from the trace steps", "from the exchanges"]
    threads = dict(seen)
    assert threads["exchanges"] != threads["follow_trace"] == threading.main_thread().name
    assert len(result.flows) and (result.table["request_to_response_us"].notna().any())

    def failing(*args, **kwargs):
        warn(XenlatWarning("before the exchanges' error"))
        raise RuntimeError("the exchanges' error")

    monkeypatch.setattr(lone, "exchanges", failing)
    monkeypatch.setattr(pipeline, "follow_trace", follow_trace)
    with warnings.catch_warnings(record=True) as caught, \
            pytest.raises(RuntimeError, match="the exchanges' error"):
        warnings.simplefilter("always")
        analyze_files(guest=paths["guest"], backend=paths["backend"])
    # the warning the failing exchanges gave before their error is shown, not lost
    assert [str(w.message) for w in caught if "before the" in str(w.message)] == [
        "before the exchanges' error"]

def test_exchanges_start_while_the_trace_is_still_read(scenario, monkeypatch) -> None:
    """When steps 2-5 are done before the trace is read, the exchanges start then (the main
    thread would only wait): they begin before the read ends, and the analysis is the same
    as when they run after it, their warning still shown after the trace steps'."""
    from xentrace_cli.errors import warn
    from xentrace_cli.pipeline import analyze as pipeline
    from xentrace_cli.pipeline import lone

    paths = files(scenario("healthy"))
    sources = dict(guest=paths["guest"], backend=paths["backend"], xentrace=paths["xentrace"])
    after = analyze_files(**sources)
    events: list[str] = []
    exchanges, read_xentrace = lone.exchanges, pipeline.trace_reader.read_xentrace
    started = threading.Event()

    def slow_read(*args, **kwargs):
        # the read ends only once the exchanges have started (or after 60 s, when they never
        # start before it: then the order below is wrong and the test fails), not after a
        # fixed sleep that a loaded machine could outlast
        started.wait(timeout=60)
        trace = read_xentrace(*args, **kwargs)
        events.append("trace read")
        return trace

    def noted_exchanges(*args, **kwargs):
        events.append("exchanges")
        started.set()
        warn(XenlatWarning("from the exchanges"))
        return exchanges(*args, **kwargs)

    def warning_follow_trace(run) -> None:
        warn(XenlatWarning("from the trace steps"))
        follow_trace(run)

    follow_trace = pipeline.follow_trace
    monkeypatch.setattr(pipeline.trace_reader, "read_xentrace", slow_read)
    monkeypatch.setattr(lone, "exchanges", noted_exchanges)
    monkeypatch.setattr(pipeline, "follow_trace", warning_follow_trace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = analyze_files(**sources)
    assert events == ["exchanges", "trace read"]
    ours = [str(w.message) for w in caught if "from the" in str(w.message)]
    assert ours == ["from the trace steps", "from the exchanges"]
    pd.testing.assert_frame_equal(early.table, after.table)
    pd.testing.assert_frame_equal(early.flows, after.flows)


def test_build_table_empties_an_impossible_interval_and_says_so() -> None:
    """An interval below −(its row's uncertainty + the 1 µs timestamp resolution) is left
    empty, on its own direction's rows only, with a note; the others are the checkpoints'
    differences (worked out by hand)."""
    from xentrace_cli.pipeline import analyze as pipeline

    sources = Sources(guest=Path("guest.pcap"), backend=Path("vif5.0.pcap"))
    run = pipeline._Run(sources, AnalyzeOptions(), pipeline._Progress(sources, None),
                        {"guest", "backend"})
    direction = np.array(["rx", "rx", "tx", "tx"], dtype=object)
    run.anchor = pd.DataFrame({"src": ["10.0.0.1"] * 4, "sport": [80] * 4,
                               "dst": ["10.0.0.5"] * 4, "dport": [4000] * 4, "proto": [6] * 4,
                               "seq": [1, 2, 3, 4], "len": [100] * 4, "frame": [1, 2, 3, 4],
                               "direction": direction})
    run.anchor_name, run.dom0_point = "guest", "backend"
    run.ways = pipeline._Ways(direction)
    run.uncertainty["guest"] = 2.0  # µs: the guest clock's on dom0's
    ms = 1_000_000
    # rx: backend → guest 50 µs, then -10 µs (beyond 2 + 1 µs: emptied); tx: guest →
    # backend 20 µs, then -2.5 µs (within 2 + 1 µs: kept)
    run.checkpoints = {"backend": np.array([ms, ms, ms + 20_000, ms]),
                       "guest": np.array([ms + 50_000, ms - 10_000, ms, ms + 2_500])}
    pipeline.build_table(run)
    table = run.table
    assert table["backend_to_guest_us"].iloc[0] == 50.0
    assert np.isnan(table["backend_to_guest_us"].to_numpy()[[1, 2, 3]]).all()
    assert table["guest_to_backend_us"].to_numpy()[2:].tolist() == [20.0, -2.5]
    assert np.isnan(table["guest_to_backend_us"].to_numpy()[:2]).all()
    assert table["uncertainty_us"].tolist() == [2.0] * 4
    assert [n for n in run.notes if "left empty" in n] == [
        "1 received segments: backend_to_guest left empty: its checkpoints (backend → guest) "
        "are out of order beyond the clocks' uncertainty (a capture or alignment problem)."]


def test_is_in_is_pandas_isin() -> None:
    """``analyze._is_in`` (by a categorical column's codes) marks the rows ``isin`` marks:
    missing values never, categories never used no matter."""
    from xentrace_cli.pipeline.analyze import _is_in

    values = ["10.0.0.5", None, "10.0.0.1", "10.0.0.5", "10.0.0.9", None]
    for column in (pd.Series(values, dtype="category"),
                   pd.Series(pd.Categorical(values, categories=["10.0.0.7", "10.0.0.5",
                                                                 "10.0.0.1", "10.0.0.9"])),
                   pd.Series(values, dtype=object)):
        for local in ({"10.0.0.5"}, {"10.0.0.1", "10.0.0.7"}, set()):
            got = _is_in(column, local)
            assert got.dtype == bool and got.tolist() == column.isin(list(local)).tolist()
    assert _is_in(pd.Series(values, dtype="category"), {"10.0.0.5"}).tolist() == [
        True, False, False, True, False, False]


def test_parse_thresholds() -> None:
    assert parse_thresholds(["socket_read=10ms", "total=1s"]) == {"socket_read": 10_000.0,
                                                                  "total": 1e6}
    assert parse_thresholds(["backend_to_guest=200us"]) == {"backend_to_guest": 200.0}
    for bad in ("socket_read", "nosuch=1ms", "ring=fast", "ring=0"):
        with pytest.raises(ValueError):
            parse_thresholds([bad])


# --- the command ---------------------------------------------------------------------------------

def cli_args(directory: Path) -> list[str]:
    p = files(directory)
    return [str(p["guest"]), "--backend", str(p["backend"]), "--phys", str(p["phys"]),
            "--xentrace", str(p["xentrace"]), "--socket-log", str(p["socket_log"])]


def test_cli_table(scenario, runner) -> None:
    result = runner.invoke(main, ["analyze", *cli_args(scenario("black-0.1s")), "--top", "3"])
    assert result.exit_code == 0, result.stderr
    assert "Where the time went" in result.stdout and "socket_read" in result.stdout
    assert "Worst 3 packets" in result.stdout
    assert "Traceback" not in result.stderr


CONTRACT = ["src", "sport", "dst", "dport", "proto", "direction", "seq", "len", "t_irq",
            "t_dom0_run", "t_phys", "t_backend", "t_copy", "t_guest_wake", "t_guest_run",
            "t_guest", "t_read", *[f"{s}_us" for s in STAGES], "total_us", "anomaly", "cause",
            "uncertainty_us"]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_cli_formats_parse_back(scenario, runner, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    p = files(scenario("healthy"))
    args = [str(p["guest"]), "--backend", str(p["backend"]), "--socket-log", str(p["socket_log"])]
    result = runner.invoke(main, ["analyze", *args, "--format", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    if fmt == "json":
        doc = json.loads(out.read_text())
        packets = pd.DataFrame(doc["packets"])
        assert doc["summary"]["packets"] == len(packets)
        assert doc["alignment"]["guest->dom0"]["quality"] == "bounded"
        assert doc["summary"]["stages"]["socket_read"]["count"] > 100
    elif fmt == "csv":
        packets = pd.read_csv(out)
    else:
        packets = pd.read_parquet(out)
    assert set(CONTRACT) <= set(packets.columns), set(CONTRACT) - set(packets.columns)
    assert len(packets) > 100


def test_parquet_dictionary_only_on_the_columns_of_few_values(scenario, runner,
                                                              tmp_path: Path) -> None:
    """``analyze --format parquet`` dictionary-encodes TABLE_DICTIONARY_COLUMNS only, and the
    file holds the same table as one written with pyarrow's default (every column tried)."""
    import pyarrow.parquet as pq

    from xentrace_cli.outputs.tables import arrow_table

    chosen, default = tmp_path / "chosen.parquet", tmp_path / "default.parquet"
    directory = scenario("black-0.1s")
    result = runner.invoke(main, ["analyze", *cli_args(directory), "--format", "parquet",
                                  "-o", str(chosen)])
    assert result.exit_code == 0, result.stderr
    p = files(directory)
    table = analyze_files(p["guest"], backend=p["backend"], phys=p["phys"],
                          xentrace=p["xentrace"], socket_log=p["socket_log"]).table
    pq.write_table(arrow_table(table), default)
    assert pq.read_table(chosen).equals(pq.read_table(default))
    meta = pq.ParquetFile(chosen).metadata.row_group(0)
    encoded = {meta.column(i).path_in_schema: "RLE_DICTIONARY" in meta.column(i).encodings
               for i in range(meta.num_columns)}
    assert {name for name, yes in encoded.items() if yes} == set(TABLE_DICTIONARY_COLUMNS)
    assert list(encoded) == list(TABLE_COLUMNS)


def test_cli_json_to_stdout(scenario, runner) -> None:
    p = files(scenario("healthy"))
    result = runner.invoke(main, ["analyze", str(p["guest"]), "--socket-log",
                                  str(p["socket_log"]), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["stages"]["socket_read"]["count"] > 0


def test_cli_truncated_trace_is_a_warning_or_bad_input(scenario, runner, tmp_path: Path
                                                       ) -> None:
    p = files(scenario("healthy"))
    cut = tmp_path / "cut.bin"
    data = p["xentrace"].read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 3])
    args = ["analyze", str(p["guest"]), "--backend", str(p["backend"]), "--xentrace", str(cut)]
    result = runner.invoke(main, [*args, "--format", "csv"])
    # salvageable: the whole records are kept, one warning line names the file and offset
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"xenlat: warning: {cut}: offset ")
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith('"src","sport"')
    strict = runner.invoke(main, [*args, "--strict"])
    assert strict.exit_code == 3
    assert strict.stderr.count("\n") == 1 and "xenlat: error:" in strict.stderr


def test_cli_trace_warning_is_shown_while_another_thread_ignores_warnings(
        scenario, runner, tmp_path: Path, monkeypatch) -> None:
    # the trace reader warns from its worker thread; a library in another thread inside
    # catch_warnings + simplefilter("ignore") at that moment (pandas' dtype checks) must not
    # drop it: the once-flaky empty stderr of the test above, made certain
    from xentrace_cli.sources import xentrace_scan

    p = files(scenario("healthy"))
    cut = tmp_path / "cut.bin"
    cut.write_bytes(p["xentrace"].read_bytes()[:100_003])
    leave = threading.Event()
    threads: list[threading.Thread] = []

    def ignoring(inside: threading.Event) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inside.set()
            leave.wait(60)

    def warn_truncated(*args: object) -> None:  # another thread ignores warnings right now
        inside = threading.Event()
        threads.append(threading.Thread(target=ignoring, args=(inside,)))
        threads[-1].start()
        inside.wait(10)
        real_warn_truncated(*args)

    real_warn_truncated = xentrace_scan._warn_truncated
    monkeypatch.setattr(xentrace_scan, "_warn_truncated", warn_truncated)
    args = ["analyze", str(p["guest"]), "--xentrace", str(cut), "--format", "csv"]
    try:
        result = runner.invoke(main, args)
        strict = runner.invoke(main, [*args, "--strict"])
    finally:
        leave.set()
        for thread in threads:
            thread.join()
    assert len(threads) == 2  # the cut was found, once per run
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"xenlat: warning: {re.escape(str(cut))}: offset \d+: .*\n",
                        result.stderr)
    assert strict.exit_code == 3
    assert strict.stderr.startswith(f"xenlat: error: {cut}: offset ")
    assert strict.stderr.endswith("(--strict)\n")


def test_cli_garbage_input(runner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture at all\n" * 10)
    result = runner.invoke(main, ["analyze", str(junk)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith("xenlat: error: ") and str(junk) in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_garbage_trace(scenario, runner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 8)
    p = files(scenario("healthy"))
    result = runner.invoke(main, ["analyze", str(p["guest"]), "--xentrace", str(junk)])
    assert result.exit_code == 3
    assert result.stderr.startswith("xenlat: error: ") and str(junk) in result.stderr
    assert result.stderr.count("\n") == 1


def test_cli_bad_threshold(runner, tmp_path: Path) -> None:
    junk = tmp_path / "x.pcap"
    junk.write_bytes(b"x")
    result = runner.invoke(main, ["analyze", str(junk), "--threshold", "nosuch=1ms"])
    assert result.exit_code == 2
    assert "nosuch" in result.stderr


# --- the terminal report on a hand-made analysis ----------------------------------------------

def hand_made():
    from xentrace_cli.pipeline.result import Analysis

    table = pd.DataFrame({
        "src": ["10.0.0.1"] * 3, "sport": [11211] * 3, "dst": ["10.0.0.5"] * 3,
        "dport": [40000] * 3, "proto": [6] * 3, "direction": ["rx"] * 3,
        "seq": [100, 1560, 3020], "len": [1460] * 3,
        "t_backend": [1.0, 2.0, 3.0], "t_guest": [1.00002, 2.00002, 3.00002],
        "t_read": [1.00004, 2.10004, 3.00004],
        "backend_to_guest_us": [20.0, 20.0, 20.0], "socket_read_us": [20.0, 100_020.0, 20.0],
        "total_us": [40.0, 100_040.0, 40.0], "anomaly": ["", "socket_read", ""],
        "cause": ["", "vcpu_runnable", ""], "cause_detail": ["", "preempted by d7v1", ""],
        "stall": ["", "≈100 ms", ""], "uncertainty_us": [12.0, 12.0, 12.0]})
    return Analysis(table=table, sources=Sources(guest=Path("g.pcap"), backend=Path("v.pcap")),
                    alignment={"guest->dom0": {"quality": "bounded", "offset_ns": -355_000.0,
                                               "drift_ppm": 1.5, "uncertainty_us": 12.0}},
                    notes=["backend_to_guest: the stages ring, remap are measured together"],
                    baselines={"socket_read": {"uncertainty_us": 0.0},
                               "backend_to_guest": {"uncertainty_us": 12.0}})


def test_terminal_report_without_colour() -> None:
    import io

    from rich.console import Console

    from xentrace_cli.outputs.terminal import render_analysis

    out = io.StringIO()
    console = Console(file=out, width=140, no_color=True, color_system=None)
    render_analysis(hand_made(), console, top=2)
    text = out.getvalue()
    assert "\x1b[" not in text  # NO_COLOR: no escape sequences at all
    assert "3 data segments (3 received, 0 sent), 1 anomalous" in text
    # a duration crossing clocks is never printed finer than its ±12 µs
    row = next(line for line in text.splitlines() if line.lstrip().startswith("backend_to_g"))
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[:3] == ["backend_to_guest", "backend→guest", "3"]  # width 140: span shown
    # one unit per table (ms: another row holds a stall), the last digit that of the ±12 µs
    assert cells[3:8] == ["0.02"] * 4 + ["12 µs"]
    assert "socket_read 100.02 ms (≈100 ms)" in text  # rounded as the total is
    assert "the guest vCPU was runnable but not running — preempted by d7v1" in text
    # the bar of the stalled packet: letters stand for stages without colour, upper = anomaly
    assert "S" * 30 in text
    assert "guest->dom0" in text and "-355 µs" in text and "+1.50 ppm" in text
    assert "measured together" in text


SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


def test_think_time_after_a_timed_read_is_not_an_anomaly() -> None:
    """The healthy sample's client serves four connections in turn: each connection's
    response → next gap is ≈20 ms (three other exchanges in between), its longest ≈64 ms
    (the simulator's think-time tail). Judged per connection, that tail is no anomaly from
    the guest capture alone; with the socket log the gap splits into the read (socket_read,
    short) and the application's own work after it, no stage of the host's path.
    """
    guest = SAMPLES / "healthy" / "guest.pcapng"
    alone = analyze_files(guest=guest).table
    assert (alone["anomaly"] == "").all()
    longest = alone["response_to_next_us"].idxmax()
    gap_us = float(alone.loc[longest, "response_to_next_us"])
    assert gap_us > 50_000
    both = analyze_files(guest=guest, socket_log=SAMPLES / "healthy" / "app.strace").table
    assert (both["anomaly"] == "").all()
    row = both[(both["seq"] == alone.loc[longest, "seq"])]
    assert float(row["response_to_next_us"].iloc[0]) == pytest.approx(gap_us)
    assert float(row["socket_read_us"].iloc[0]) < 1_000  # the read itself was prompt


def test_text_columns_are_pandas_own_str() -> None:
    """``result.text_column`` (built by Arrow) gives what ``pd.array(values, dtype="str")``
    gives: the same dtype, storage type and values, so the outputs do not change."""
    from xentrace_cli.pipeline.result import text_at, text_column

    values = np.full(1000, "", dtype=object)
    values[::7] = "ring"
    values[3::11] = "d0v1 preempted by d7v0 on CPU 2 (97% of it) µs"
    reference = pd.array(values, dtype="str")
    got = text_column(values)
    assert got.dtype == reference.dtype
    assert got._pa_array.type == reference._pa_array.type
    assert pd.Series(got).equals(pd.Series(reference))
    assert text_column(np.array([], dtype=object)).dtype == reference.dtype
    # the same, given the flagged rows only (in any order)
    rows = np.flatnonzero(values != "")
    shuffled = np.random.default_rng(3).permutation(rows.size)
    for order in (np.arange(rows.size), shuffled):
        at = text_at(values.size, rows[order], values[rows[order]])
        assert at.dtype == reference.dtype and at._pa_array.type == reference._pa_array.type
        assert pd.Series(at).equals(pd.Series(reference))
    assert pd.Series(text_at(3, np.array([], dtype=np.int64), [])).tolist() == ["", "", ""]


@pytest.mark.parametrize("name", ["healthy", "black-0.1s"])
def test_trace_is_made_ready_in_its_reader_thread(scenario, monkeypatch, name: str) -> None:
    """The trace's records, timelines and CPU occupants are made in the reader's worker right
    after the read (:func:`_ready_trace`), and the analysis follows the trace with them: its
    checkpoints are there, and so is the occupants' cause (who preempted the guest)."""
    from xentrace_cli.pipeline import analyze as pipeline

    paths = files(scenario(name))
    threads: list[str] = []
    ready_trace = pipeline._ready_trace

    def noted(trace, sources):
        threads.append(threading.current_thread().name)
        return ready_trace(trace, sources)

    monkeypatch.setattr(pipeline, "_ready_trace", noted)
    ready = analyze_files(**paths)
    assert len(threads) == 1 and threads[0] != threading.main_thread().name
    trace_columns = ["t_irq", "t_dom0_run", "t_copy", "t_guest_run"]
    assert ready.table[trace_columns].notna().any().all()
    # the CPU occupants' cause (who preempted the guest: XenTrace.cpu_runs)
    assert name == "healthy" or ready.table["cause_detail"].str.contains("preempted by d").any()


def test_an_error_making_the_trace_ready_is_raised_by_the_analysis(scenario, monkeypatch
                                                                    ) -> None:
    """An error of the trace's records or timelines, made in its reader's worker, is raised
    by the analysis (where following the trace would have raised it), not lost with the
    thread nor papered over by tables it already let go."""
    from xentrace_cli.pipeline import analyze as pipeline

    def broken(trace, records):
        trace.events = trace.events.iloc[:0]  # let go, as the real one does before failing
        raise ValueError("the records' error")

    monkeypatch.setattr(pipeline.trace_attribute, "ready_trace", broken)
    with pytest.raises(ValueError, match="the records' error"):
        analyze_files(**files(scenario("healthy")))



@pytest.mark.parametrize("trace_of", ["black-0.1s", "healthy"])
def test_no_worker_thread_outlives_the_analysis(scenario, monkeypatch: pytest.MonkeyPatch,
                                                trace_of: str) -> None:
    """Every worker the steps start is done when analyze returns, also the CPU occupants'
    when no cause is named (another set's trace, which cannot be put on the captures'
    clock): a thread left running could leave pandas' warnings.catch_warnings after a later
    caller entered it, and lose that caller's warnings. The occupants are made slow here,
    so that a thread not waited for is still running when analyze returns."""
    from xentrace_cli.pipeline import trace_attribute

    made = trace_attribute.cpu_runs

    def slow(*args: object, **kwargs: object) -> pd.DataFrame:
        time.sleep(0.5)
        return made(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(trace_attribute, "cpu_runs", slow)
    own = files(scenario("black-0.1s"))
    other = files(scenario(trace_of, seed=7))
    before = set(threading.enumerate())
    result = analyze_files(own["guest"], backend=own["backend"],
                           xentrace=(own if trace_of == "black-0.1s" else other)["xentrace"])
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
    on_clock = "tsc->dom0" in result.alignment and result.table["t_copy"].notna().any()
    assert on_clock == (trace_of == "black-0.1s")


def test_a_failing_tcp_analysis_is_not_lost(scenario,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The lone view's TCP analysis' error is raised by the analysis even where no exchange
    reads its flags (a healthy set, no anomalous gap: with the analysis in a worker thread,
    the review's reproducer exited 0 with a normal-looking table)."""
    from xentrace_cli.pipeline.conversations import tcp_analysis

    def broken(_: object) -> None:
        raise RuntimeError("flags failed")

    monkeypatch.setattr(tcp_analysis, "_flags", broken)
    with pytest.raises(RuntimeError, match="flags failed"):
        analyze_files(files(scenario("healthy", seed=3))["guest"])
