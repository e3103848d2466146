"""Tests of trace_summary.py and ``xenlat trace``: counts, blind spots, run-state totals, waits.

Ground truth: hand-built traces (records written word by word, see test_readers_xentrace)
with totals computed by hand in the comments; the real trace's published counts.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from test_readers_xentrace import CORPUS_TRACE, rec, runstate_windows, window, write

from xentrace_cli import xen_events as xe
from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.report.trace_table import render_trace_summary
from xentrace_cli.trace_summary import DEFAULT_CPU_HZ, summarize_trace


@pytest.fixture()
def trace_file(tmp_path: Path) -> Path:
    # d1v0: blocked [50,100), runnable [100,150), running [150,400), runnable [400,450),
    # running [450, 600 = last TSC). CPU 2: d0v0 until 150, d1v0, idle from 400, d1v0 at 450.
    # CPU 0: 40 records lost between TSC 200 and 300.
    before, after = runstate_windows()
    return write(tmp_path,
                 before,
                 window(0,
                        rec(xe.TRC_LOST_RECORDS, 40, 0, 200, 0, tsc=300),
                        rec(xe.TRC_TRACE_WRAP_BUFFER, 0xFFFFFFFF)),
                 after)


def test_counts_and_events(trace_file: Path) -> None:
    summary = summarize_trace(trace_file, cpu_hz=100)
    # 11 records Xen wrote (6 + 2 + 3), the lost-records and wrap records included, CPU
    # changes not.
    assert (summary["records"], summary["windows"], summary["cpus"]) == (11, 3, 2)
    assert summary["cpu_ids"] == [0, 2]
    assert summary["records_per_cpu"] == {"0": 2, "2": 9}
    events = summary["events"]
    assert "0x0001f003" not in events
    assert events["0x0001f002"] == {"name": "wrap_buffer", "count": 1}
    assert events["0x0001f001"] == {"name": "lost_records", "count": 1}
    assert events["0x0002800a"] == {"name": "switch", "count": 3}
    assert events["0x00021101"] == {"name": "runstate_change runnable->running", "count": 2}
    assert events["0x00021211"]["name"] == "runstate_change blocked->runnable"
    assert sum(e["count"] for e in events.values()) == summary["records"]
    assert summary["duration_s"] == pytest.approx((600 - 50) / 100)
    assert summary["truncated"] is False


def test_cpu_hz_default_and_given(trace_file: Path) -> None:
    default = summarize_trace(trace_file)
    assert default["cpu_hz"] == DEFAULT_CPU_HZ == 2.4e9
    assert "default" in default["cpu_hz_source"]
    given = summarize_trace(trace_file, cpu_hz=100)
    assert given["cpu_hz_source"] == "given"
    assert given["duration_s"] == pytest.approx(default["duration_s"] * 2.4e9 / 100)
    with pytest.raises(OptionError, match="--cpu-hz"):
        summarize_trace(trace_file, cpu_hz=0)


def test_blind_spots(trace_file: Path) -> None:
    lost = summarize_trace(trace_file, cpu_hz=100)["lost"]
    assert (lost["records"], lost["dropped"]) == (1, 40)
    spot = lost["blind_spots"][0]
    # first dropped at TSC 200, lost-records record at 300; origin is the first TSC, 50
    assert spot["cpu"] == 0 and (spot["domid"], spot["vcpu"]) == (0, 0)
    assert spot["start_s"] == pytest.approx(1.5) and spot["end_s"] == pytest.approx(2.5)
    assert spot["duration_s"] == pytest.approx(1.0) == lost["blind_s"]


def test_runstate_totals_and_waits(trace_file: Path) -> None:
    summary = summarize_trace(trace_file, cpu_hz=100)
    (vcpu,) = summary["vcpus"]
    assert (vcpu["domid"], vcpu["vcpu"], vcpu["idle"]) == (1, 0, False)
    # blocked 50; runnable 50 + 50; running 250 + 150 (open, to the last TSC 600); at 100 Hz
    assert vcpu["blocked_s"] == pytest.approx(0.5)
    assert vcpu["runnable_s"] == pytest.approx(1.0)
    assert vcpu["running_s"] == pytest.approx(4.0)
    assert vcpu["offline_s"] == 0
    assert vcpu["changes"] == 4
    assert summary["domains"] == [{"domid": 1, "idle": False, "vcpus": 1, "running_s": 4.0,
                                   "runnable_s": 1.0, "blocked_s": 0.5, "offline_s": 0.0}]
    waits = summary["longest_runnable"]
    assert [(w["start_s"], w["duration_s"]) for w in waits] == [(0.5, 0.5), (3.5, 0.5)]
    assert waits[0]["ran_on_cpu"] == 2
    assert waits[0]["cpu_held_by"] == [{"unit": "d0v0", "domid": 0, "vcpu": 0,
                                        "duration_s": 0.5}]
    assert waits[1]["cpu_held_by"][0]["unit"] == "idle(v2)"


def test_progress_reaches_the_file_size(trace_file: Path) -> None:
    calls: list[tuple[int, int]] = []
    summarize_trace(trace_file, on_progress=lambda done, total: calls.append((done, total)))
    size = trace_file.stat().st_size
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_render_table(trace_file: Path) -> None:
    out = io.StringIO()
    render_trace_summary(summarize_trace(trace_file, cpu_hz=100),
                         Console(file=out, width=120, color_system=None))
    text = out.getvalue()
    assert "11 records in 3 windows from 2 CPUs" in text
    assert "given" in text
    assert "lost records: 40 dropped, blind for 1.00 s" in text
    assert "runstate_change runnable->running" in text
    assert "d1v0" in text and "d0v0 500.0 ms" in text


def test_cli_json_and_table(trace_file: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(trace_file), "--format", "json",
                                  "--cpu-hz", "100"])
    assert result.exit_code == 0
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["records"] == 11 and doc["cpu_hz"] == 100
    table = runner.invoke(main, ["trace", str(trace_file)])
    assert table.exit_code == 0
    assert table.stderr == ""
    assert "records per event" in table.stdout and "2.4 GHz" in table.stdout


def test_cli_bad_cpu_hz(trace_file: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(trace_file), "--cpu-hz", "-5"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--cpu-hz': -5.0 is not in the range x>0" in result.stderr


def test_real_trace_json(corpus: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(corpus / CORPUS_TRACE), "--format", "json"])
    assert result.exit_code == 0
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert (doc["records"], doc["windows"], doc["cpus"]) == (180_493, 187, 8)
    assert sum(e["count"] for e in doc["events"].values()) == 180_493
    assert doc["events"]["0x0001f002"]["name"] == "wrap_buffer"
    assert "0x0001f003" not in doc["events"]
    assert doc["lost"]["records"] == 0
    # every runstate change closes one interval: per vCPU the state totals add up to the span
    span = doc["duration_s"]
    for v in doc["vcpus"]:
        total = sum(v[f"{s}_s"] for s in xe.RUNSTATES)
        assert total <= span + 1e-9
    assert {v["domid"] for v in doc["vcpus"]} == {0, 14, xe.DOMID_IDLE}
    doms = {d["domid"]: d for d in doc["domains"]}
    assert (doms[0]["vcpus"], doms[14]["vcpus"], doms[xe.DOMID_IDLE]["vcpus"]) == (8, 4, 8)
    running_14 = sum(v["running_s"] for v in doc["vcpus"] if v["domid"] == 14)
    assert doms[14]["running_s"] == pytest.approx(running_14)
    assert all(w["domid"] != xe.DOMID_IDLE for w in doc["longest_runnable"])
