"""Tests of ``xenlat trace`` (trace_summary, trace_sched, trace_hvm, trace_dump, the table).

Ground truth: hand-built traces (records written word by word, see test_readers_xentrace) with
the expected values worked out by hand in the comments; for the real trace an independent
slow walk (test_readers_xentrace.slow_walk) and, where installed, Xen's own xenalyze run on
the same file (a live cross-check: skipped where absent, failing in CI, as conftest's
``missing``).
"""

from __future__ import annotations

import glob
import io
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import missing
from test_readers_xentrace import (
    CORPUS_TRACE,
    rec,
    runstate,
    runstate_windows,
    slow_walk,
    window,
    write,
)

from xentrace_cli import xen_events as xe
from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.outputs.trace_table import render_trace_summary
from xentrace_cli.sources.xentrace import read_xentrace
from xentrace_cli.trace.dump import dump_trace
from xentrace_cli.trace.summary import DEFAULT_CPU_HZ, analyze_trace, summarize_trace

IDLE = xe.DOMID_IDLE


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
    # the wrap record: header and one word, no TSC (8 bytes); the table's family and version
    assert events["0x0001f002"] == {"name": "wrap_buffer", "count": 1, "bytes": 8,
                                    "class": "gen", "group": "gen", "since": "3.2"}
    assert events["0x0001f001"]["name"] == "lost_records"
    assert events["0x0002800a"]["name"] == "switch" and events["0x0002800a"]["count"] == 3
    assert events["0x0002800a"]["bytes"] == 3 * (4 + 8 + 16)
    assert events["0x00021101"] == {"name": "runstate_change runnable->running", "count": 2,
                                    "bytes": 2 * 16, "class": "sched", "group": "sched",
                                    "since": "3.3"}
    assert events["0x00021211"]["name"] == "runstate_change blocked->runnable"
    assert sum(e["count"] for e in events.values()) == summary["records"]
    assert summary["classes"] == {"gen": 2, "sched": 9}
    assert summary["duration_s"] == pytest.approx((600 - 50) / 100)
    assert summary["truncated"] is False and summary["warnings"] == []


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


def test_runstate_totals_waits_and_longest(trace_file: Path) -> None:
    summary = summarize_trace(trace_file, cpu_hz=100)
    (vcpu,) = summary["vcpus"]
    assert (vcpu["domid"], vcpu["vcpu"], vcpu["idle"]) == (1, 0, False)
    # blocked 50; runnable 50 + 50; running 250 + 150 (open, to the last TSC 600); at 100 Hz
    assert vcpu["blocked_s"] == pytest.approx(0.5)
    assert vcpu["runnable_s"] == pytest.approx(1.0)
    assert vcpu["running_s"] == pytest.approx(4.0)
    assert vcpu["offline_s"] == 0 and vcpu["inferred_s"] == 0
    assert vcpu["changes"] == 4
    assert (vcpu["migrations"]) == 0  # both runs on CPU 2
    assert summary["domains"] == [{"domid": 1, "idle": False, "vcpus": 1, "running_s": 4.0,
                                   "runnable_s": 1.0, "blocked_s": 0.5, "offline_s": 0.0,
                                   "inferred_s": 0.0}]
    # [100,150) began from blocked: a wake; [400,450) from running: a preemption; 50 cycles
    # each = 500 ms = 500000 µs
    waits = {w["kind"]: w for w in summary["waits"]}
    assert set(waits) == {"wake", "preempt"}
    for w in waits.values():
        assert (w["domid"], w["vcpu"], w["count"]) == (1, 0, 1)
        assert w["p50_us"] == w["p99_us"] == w["max_us"] == pytest.approx(500_000)
        assert w["total_s"] == pytest.approx(0.5)
    assert [(w["domid"], w["kind"], w["count"]) for w in summary["domain_waits"]] == \
        [(1, "wake", 1), (1, "preempt", 1)]
    longest = summary["longest_runnable"]
    assert [(w["start_s"], w["duration_s"]) for w in longest] == [(0.5, 0.5), (3.5, 0.5)]
    assert longest[0]["ran_on_cpu"] == 2
    assert longest[0]["cpu_held_by"] == [{"unit": "d0v0", "domid": 0, "vcpu": 0,
                                          "duration_s": 0.5}]
    assert longest[1]["cpu_held_by"][0]["unit"] == "idle(v2)"


def test_wait_percentiles_per_group(tmp_path: Path) -> None:
    """Percentiles as numpy's default (linear) over each vCPU's waits, pooled per domain."""
    records, t = [], 0
    for n, wait in enumerate((10, 20, 30, 40, 100)):  # d3v0 woken 5 times
        records += [runstate(2, 1, 3, 0, tsc=t + 10), runstate(1, 0, 3, 0, tsc=t + 10 + wait),
                    runstate(0, 2, 3, 0, tsc=t + 200)]
        records += [runstate(2, 1, 3, 1, tsc=t + 20), runstate(1, 0, 3, 1, tsc=t + 27),
                    runstate(0, 2, 3, 1, tsc=t + 150)] if n < 2 else []
        t += 300
    first = rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=1)  # the trace starts before: d3v0 was blocked
    path = write(tmp_path, window(0, first, *sorted(records, key=lambda r: r[1])))
    summary = analyze_trace(path, cpu_hz=1e6)  # a cycle is a µs
    waits = summary.waits.set_index(["domid", "vcpu", "kind"])
    row = waits.loc[(3, 0, "wake")]
    assert row["count"] == 5
    assert row["p50_us"] == pytest.approx(np.percentile([10, 20, 30, 40, 100], 50))
    assert row["p90_us"] == pytest.approx(np.percentile([10, 20, 30, 40, 100], 90))
    assert row["max_us"] == pytest.approx(100) and row["mean_us"] == pytest.approx(40)
    dom = summary.domain_waits.set_index(["domid", "kind"]).loc[(3, "wake")]
    pooled = [10, 20, 30, 40, 100, 7, 7]
    assert dom["count"] == 7
    assert dom["p99_us"] == pytest.approx(np.percentile(pooled, 99))
    assert dom["total_s"] == pytest.approx(sum(pooled) / 1e6)


def silent_cpu_trace(tmp_path: Path) -> Path:
    """CPU 0 records every 100 cycles from 100 to 1000. CPU 1 runs d1v0 from 100 and writes
    records at 100, 150, 200, 300, then nothing: its longest quiet stretch was 100 cycles
    (200-300), its silence after 300 lasts 700: it stops early."""
    cpu0 = [rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=t) for t in range(100, 1001, 100)]
    cpu1 = [rec(xe.TRC_SCHED_SWITCH, IDLE, 1, 1, 0, tsc=100), runstate(1, 0, 1, 0, tsc=100),
            rec(xe.TRC_SCHED_CONTINUE_RUNNING, 1 << 16, tsc=150),
            rec(xe.TRC_SCHED_CONTINUE_RUNNING, 1 << 16, tsc=200),
            rec(xe.TRC_SCHED_CONTINUE_RUNNING, 1 << 16, tsc=300)]
    return write(tmp_path, window(0, *cpu0[:3]), window(1, *cpu1), window(0, *cpu0[3:]))


def test_silent_cpu_warned_and_its_states_inferred(tmp_path: Path) -> None:
    summary = analyze_trace(silent_cpu_trace(tmp_path), cpu_hz=100)
    doc = summary.to_document()
    # origin 100: the last record of CPU 1 at 300 is 2 s in, the trace ends at 1000 (9 s)
    assert doc["warnings"] == [
        "pCPU 1 has no records after 2.000 s of 9.000 s (no lost records; it was never quiet "
        "longer than 1.000 s before): inferred, not observed, to the end: d1v0 running"]
    pcpus = summary.pcpus.set_index("cpu")
    assert pcpus.loc[1, "stops_early"] and not pcpus.loc[0, "stops_early"]
    assert pcpus.loc[1, "silent_after_s"] == pytest.approx(7.0)
    assert pcpus.loc[1, "busy_pct"] == pytest.approx(100)  # d1v0 ran all of 100..300
    assert pcpus.loc[1, "last_s"] == pytest.approx(2.0)
    (v,) = doc["vcpus"]
    # d1v0 running from 100 to the trace's end (9 s), 7 s of it across CPU 1's silence
    assert v["running_s"] == pytest.approx(9.0) and v["inferred_s"] == pytest.approx(7.0)
    inferred = summary.inferred
    assert inferred[["cpu", "side", "domid", "vcpu", "state"]].values.tolist() == \
        [[1, "trailing", 1, 0, "running"]]
    assert (inferred["from_s"].iloc[0], inferred["to_s"].iloc[0]) == (2.0, 9.0)
    # buckets of 90 cycles from 100: CPU 1 busy in the first three (the third only observed
    # to 300), silent (NaN) after; CPU 0 never had a guest vCPU
    util = summary.utilisation
    one = util[util["cpu"] == 1]["busy_share"].to_numpy()
    assert one[:3].tolist() == [1.0, 1.0, 1.0] and np.isnan(one[3:]).all()
    assert (util[util["cpu"] == 0]["busy_share"] == 0).all()


def test_quiet_cpu_not_warned(tmp_path: Path) -> None:
    """A trailing silence shorter than the CPU's longest quiet stretch is an idle CPU."""
    cpu0 = [rec(xe.TRC_SCHED_WAKE, 0, 0, tsc=t) for t in range(100, 1001, 100)]
    cpu1 = [rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=100), rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=700),
            rec(xe.TRC_SCHED_WAKE, 0, 1, tsc=800)]  # quiet 600 cycles, then 200 at the end
    summary = analyze_trace(write(tmp_path, window(0, *cpu0), window(1, *cpu1)), cpu_hz=100)
    assert summary.warnings == []
    silent = summary.silences
    assert silent[["cpu", "side", "unusual"]].values.tolist() == [[1, "trailing", False]]
    assert silent["longest_gap_s"].iloc[0] == pytest.approx(6.0)


def test_migrations_and_time_per_cpu(tmp_path: Path) -> None:
    # d2v0 runs on CPU 0 [10,20), on CPU 1 [30,40) and [50,60): one move
    def run(cpu: int, start: int, end: int) -> bytes:
        return window(cpu, runstate(1, 0, 2, 0, tsc=start), runstate(0, 1, 2, 0, tsc=end))

    summary = analyze_trace(write(tmp_path, run(0, 10, 20), run(1, 30, 40), run(1, 50, 60)),
                            cpu_hz=1)
    (v,) = summary.to_document()["vcpus"]
    assert (v["migrations"], v["running_s"]) == (1, 30)
    placed = summary.vcpu_pcpu
    assert placed[["cpu", "runs", "running_s"]].values.tolist() == [[0, 1, 10], [1, 2, 20]]


def hvm_trace(tmp_path: Path) -> Path:
    """d5v0 on CPU 0: an I/O exit 1100-1400 (port 0x1f0 written), a HLT exit at 1500 closed
    when the vCPU is woken at 2000 (on CPU 1), an external interrupt at 2200 followed by
    another at 2300 before any entry (the first never closes), entry at 2350."""
    def exit64(reason: int, tsc: int) -> list[int]:
        return rec(xe.TRC_HVM_VMEXIT64, reason, 0x1000, 0xFFFFFFFF, tsc=tsc)

    cpu0 = [rec(xe.TRC_SCHED_SWITCH, IDLE, 0, 5, 0, tsc=1000), runstate(1, 0, 5, 0, tsc=1000),
            exit64(30, 1100), rec(0x00082216, 0x1F0, 0xAB),  # IOPORT_WRITE, no TSC
            rec(xe.TRC_HVM_INJ_VIRQ, 0xF3, 0), rec(xe.TRC_HVM_VMENTRY, tsc=1400),
            exit64(12, 1500), rec(0x00082013, 0),  # HLT handler
            runstate(0, 2, 5, 0, tsc=1510), rec(xe.TRC_SCHED_SWITCH, 5, 0, IDLE, 0, tsc=1510),
            rec(xe.TRC_SCHED_SWITCH, IDLE, 0, 5, 0, tsc=2100), runstate(1, 0, 5, 0, tsc=2100),
            rec(xe.TRC_HVM_INJ_VIRQ, 0xF3, 0), rec(xe.TRC_HVM_VMENTRY, tsc=2110),
            exit64(1, 2200), exit64(1, 2300), rec(xe.TRC_HVM_VMENTRY, tsc=2350)]
    cpu1 = [runstate(2, 1, 5, 0, tsc=2000)]
    return write(tmp_path, window(0, *cpu0[:10]), window(1, *cpu1), window(0, *cpu0[10:]))


def test_hvm_exits_interrupts_and_ports(tmp_path: Path) -> None:
    summary = analyze_trace(hvm_trace(tmp_path), cpu_hz=1e9)
    doc = summary.to_document()
    assert doc["hvm"]["mode"] == "vmx"
    exits = {r["name"]: r for r in doc["hvm"]["exits"]}
    assert (exits["IO_INSTRUCTION"]["count"], exits["IO_INSTRUCTION"]["cycles"]) == (1, 300)
    assert (exits["HLT"]["count"], exits["HLT"]["cycles"]) == (1, 500)  # 1500 -> woken 2000
    ext = exits["EXTERNAL_INTERRUPT"]
    assert (ext["count"], ext["cycles"], ext["unclosed"]) == (1, 50, 1)
    assert all((r["domid"], r["vcpu"]) == (5, 0) for r in doc["hvm"]["exits"])
    assert doc["hvm"]["io_ports"] == [{"domid": 5, "vcpu": 0, "port": 0x1F0,
                                       "direction": "write", "count": 1, "cycles": 300}]
    assert doc["hvm"]["guest_interrupts"] == [{"domid": 5, "vcpu": 0, "vector": 0xF3,
                                               "count": 2}]


def test_progress_reaches_the_file_size(trace_file: Path) -> None:
    calls: list[tuple[int, int]] = []
    summarize_trace(trace_file, on_progress=lambda done, total: calls.append((done, total)))
    size = trace_file.stat().st_size
    assert calls and calls[-1] == (size, size)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_render_table(trace_file: Path, tmp_path: Path) -> None:
    out = io.StringIO()
    render_trace_summary(summarize_trace(trace_file, cpu_hz=100), out)
    text = out.getvalue()
    assert "11 records in 3 windows from 2 CPUs" in text
    assert "given" in text
    assert "lost records: 40 dropped, blind for 1.00 s" in text
    assert "runstate_change runnable->running" in text
    assert "d1v0" in text and "d0v0 500.0 ms" in text
    assert re.search(r"│ d1v0 +│ wake +│ +1 │ +500\.0 ms │", text)
    out = io.StringIO()
    render_trace_summary(summarize_trace(silent_cpu_trace(tmp_path), cpu_hz=100), out)
    assert "STOPS EARLY" in out.getvalue() and "███·······" in out.getvalue()


# --- the dump ---------------------------------------------------------------------------------

def test_dump_lines_by_hand(trace_file: Path) -> None:
    out = io.BytesIO()
    assert dump_trace(trace_file, out, cpu_hz=100) == 11
    lines = out.getvalue().decode().splitlines()
    # origin 50 (the first record); 100 Hz: a cycle is 10 ms. CPU 2 ran d0v0 until its switch
    # at 150 (the switch line still shows who ran before it)
    assert lines[:6] == [
        "   0.000000000 cpu2 - wake unit=d0v0",
        "   0.500000000 cpu2 - runstate_change unit=d1v0 old=blocked new=runnable",
        "   1.000000000 cpu2 - switch prev=d0v0 next=d1v0",
        "   1.000000000 cpu2 d1v0 runstate_change unit=d1v0 old=runnable new=running",
        "   2.500000000 cpu0 - lost_records dropped=40 unit=d0v0 first_tsc=200",
        "   2.500000000 cpu0 - wrap_buffer w0=0xffffffff"]
    assert lines[-1] == "   5.500000000 cpu2 d1v0 block unit=d0v0"
    out = io.BytesIO()
    dump_trace(trace_file, out, cpu_hz=100, fmt="json")
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert rows[2] == {"t_s": 1.0, "pcpu": 2, "running": "-", "event": "0x0002800a",
                       "name": "switch", "prev": "d0v0", "next": "d1v0"}
    assert rows[3]["old"] == "runnable" and rows[3]["new"] == "running"


@pytest.mark.parametrize("chunk", [16, 1 << 20])
def test_dump_streams_in_the_readers_order(corpus: Path, chunk: int, monkeypatch) -> None:
    """Small spans (the merge across CPUs under test) or one: the same records in the same
    order as read_xentrace's merged timeline, every one once."""
    import xentrace_cli.trace.dump as dump

    monkeypatch.setattr(dump, "DUMP_CHUNK_WORDS", chunk)
    path = corpus / CORPUS_TRACE
    out = io.BytesIO()
    n = dump.dump_trace(path, out, cpu_hz=DEFAULT_CPU_HZ, fmt="json")
    ev = read_xentrace(path, columns=("cpu", "tsc", "event")).events
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert n == len(rows) == len(ev) == 180_493
    assert [r["pcpu"] for r in rows] == ev["cpu"].tolist()
    assert [int(r["event"], 16) for r in rows] == ev["event"].tolist()
    t = np.array([r["t_s"] for r in rows])
    expect = (ev["tsc"].to_numpy() - ev["tsc"].iloc[0]) / DEFAULT_CPU_HZ
    assert np.abs(t - expect).max() < 1e-9


def test_cli_dump(trace_file: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(trace_file), "--dump", "--cpu-hz", "100"])
    assert result.exit_code == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[1:3] == [
        "   0.500000000 cpu2 - runstate_change unit=d1v0 old=blocked new=runnable",
        "   1.000000000 cpu2 - switch prev=d0v0 next=d1v0"]
    jsonl = runner.invoke(main, ["trace", str(trace_file), "--dump", "--format", "json"])
    assert json.loads(jsonl.stdout.splitlines()[1])["new"] == "runnable"


# --- the command ------------------------------------------------------------------------------

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


def test_cli_warns_on_stderr(tmp_path: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(silent_cpu_trace(tmp_path)), "--cpu-hz", "100"])
    assert result.exit_code == 0
    assert result.stderr.startswith("xenlat: warning: pCPU 1 has no records after 2.000 s")
    assert "STOPS EARLY" in result.stdout


def test_cli_bad_cpu_hz(trace_file: Path, runner) -> None:
    result = runner.invoke(main, ["trace", str(trace_file), "--cpu-hz", "-5"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value for '--cpu-hz': -5.0 is not in the range x>0" in result.stderr


def test_pandas_tables_from_the_api(trace_file: Path) -> None:
    summary = analyze_trace(trace_file, cpu_hz=100)
    for name in ("events", "events_per_cpu", "vcpus", "domains", "waits", "domain_waits",
                 "vcpu_pcpu", "pcpus", "utilisation", "silences", "inferred", "hvm_exits",
                 "guest_interrupts", "io_ports"):
        assert isinstance(getattr(summary, name), pd.DataFrame), name
    assert summary.vcpus[["domid", "vcpu", "running_s"]].values.tolist() == [[1, 0, 4.0]]


def test_event_table() -> None:
    """One table of every record Xen writes; the names xenlat gave before kept."""
    for event, name in {xe.TRC_SCHED_WAKE: "wake", xe.TRC_HVM_VMEXIT64: "hvm_vmexit64",
                        xe.TRC_HW_IRQ_HANDLED: "hw_irq_handled", 0x00022214:
                            "csched2_runq_candidate", xe.TRC_PV_HYPERCALL_V2:
                            "pv_hypercall_v2"}.items():
        assert xe.event_name(event) == name
    # the record both tools left unnamed: vlapic_accept_pic_intr()'s (Xen 4.5, hvm/vlapic.c)
    info = xe.event_info(0x00084011)
    assert (info.name, info.group, info.since) == ("hvm_emul_lapic_pic_intr", "hvm", "4.5")
    assert info.layout(2) == [("i8259_target", "d"), ("accept", "d")]
    groups = {i.group for i in xe.EVENTS.values()}
    assert {"credit", "credit2", "rtds", "null", "hvm", "pv", "mem", "power"} <= groups
    assert len({i.name for i in xe.EVENTS.values()}) == len(xe.EVENTS)
    assert all(re.fullmatch(r"\d\.\d+", i.since) for i in xe.EVENTS.values())
    assert xe.event_name(0x0040F205) == "shadow_mmio"  # paging levels in bits 8-11
    assert xe.event_title(0x00022A07) == "null:0x00022a07"  # a null-scheduler id not known


# --- the real trace, and xenalyze on it --------------------------------------------------------

@pytest.fixture(scope="module")
def real_summary(corpus: Path):
    return analyze_trace(corpus / CORPUS_TRACE)


@pytest.fixture(scope="module")
def xenalyze() -> str:
    """Xen's trace analyzer (Debian's xen-utils-common; .ci/run unpacks it)."""
    found = os.environ.get("XENALYZE") or shutil.which("xenalyze") or next(
        iter(sorted(glob.glob("/usr/lib/xen-*/bin/xenalyze"))), None)
    if not found or not os.access(found, os.X_OK):
        missing("xenalyze not installed (Debian's xen-utils-common; or set XENALYZE)")
    return found


def _xenalyze(xenalyze: str, path: Path) -> tuple[str, str]:
    done = subprocess.run([xenalyze, "--summary", str(path)], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout, done.stderr


def test_real_trace_counts_per_class_equal_a_slow_walk(corpus: Path, real_summary) -> None:
    truth = slow_walk(corpus / CORPUS_TRACE)
    want: dict[str, int] = {}
    for _, _, event, _, _ in truth:
        want[xe.event_class(event)] = want.get(xe.event_class(event), 0) + 1
    doc = real_summary.to_document()
    assert doc["classes"] == want == {"gen": 27, "hvm": 26865, "sched": 153601}
    assert doc["events"]["0x00084011"]["count"] == 7594
    assert doc["events"]["0x00084011"]["name"] == "hvm_emul_lapic_pic_intr"


def test_real_trace_silent_cpu_3(real_summary) -> None:
    """pCPU 3's records stop at 1.816 s of 3.49 s, with no lost records: warned, and what it
    ran then (its idle vCPU) inferred to the end, not counted as observed."""
    (warning,) = real_summary.warnings
    assert warning.startswith("pCPU 3 has no records after 1.816 s of 3.495 s (no lost "
                              "records; it was never quiet longer than 0.704 s before)")
    assert "idle(v3) running" in warning
    pcpus = real_summary.pcpus.set_index("cpu")
    assert pcpus["stops_early"].tolist() == [c == 3 for c in range(8)]
    vcpus = real_summary.vcpus.set_index(["domid", "vcpu"])
    assert vcpus.loc[(IDLE, 3), "inferred_s"] == pytest.approx(3.4945 - 1.8165, abs=1e-3)


def test_real_trace_volume_per_class_equals_xenalyze(xenalyze: str, corpus: Path,
                                                     real_summary) -> None:
    """xenalyze's 'Log volume summary': bytes per CPU and class, against ours."""
    out, _ = _xenalyze(xenalyze, corpus / CORPUS_TRACE)
    theirs: dict[tuple[int, str], int] = {}
    cpu = -1
    for line in out.split("|-- Domain")[0].splitlines():
        if m := re.match(r" - cpu (\d+) -", line):
            cpu = int(m.group(1))
        elif m := re.match(r" (gen|sched|hvm|mem|pv|hw)\s*:\s*(\d+)", line):
            theirs[(cpu, m.group(1))] = int(m.group(2))
    ours = real_summary.events_per_cpu.assign(
        cls=lambda f: [xe.event_class(int(e)) for e in f["event"]])
    ours = ours.groupby(["cpu", "cls"])["bytes"].sum()
    assert len(theirs) == 23  # gen and sched on 8 CPUs, hvm on 7
    assert {(int(c), k): int(v) for (c, k), v in ours.items()} == theirs


def test_real_trace_running_time_within_half_a_percent_of_xenalyze(xenalyze: str,
                                                                    corpus: Path) -> None:
    """Per vCPU, the running time between its first and last run-state change (what
    xenalyze counts), against xenalyze's count x average. vCPUs xenalyze marks LOST when a
    CPU's records end are counted to that end by it, to the next change by us: left out."""
    out, err = _xenalyze(xenalyze, corpus / CORPUS_TRACE)
    lost = {(int(d), int(v)) for d, v in re.findall(r"setting d(\d+)v(\d+) to state LOST", err)}
    theirs: dict[tuple[int, int], int] = {}
    dom = vcpu = None
    for line in out.splitlines():
        if m := re.match(r"\|-- Domain (\d+) --\|", line):
            dom = int(m.group(1))
        elif m := re.match(r"-- v(\d+) --", line):
            vcpu = int(m.group(1))
        elif (m := re.match(r"\s+running:\s+(\d+)\s+\S+\s+(\d+)", line)) and dom is not None:
            theirs[(dom, vcpu)] = int(m.group(1)) * int(m.group(2))
    rs = read_xentrace(corpus / CORPUS_TRACE, events=()).runstates
    closed = rs[(rs["state"] == "running") & ~rs["from_trace_start"] & rs["end_tsc"].notna()]
    ours = (closed["end_tsc"] - closed["start_tsc"]).groupby(
        [closed["domid"], closed["vcpu"]]).sum()
    compared = [k for k in theirs if k not in lost]
    assert len(compared) == 12  # of 20: xenalyze loses 8 as their CPUs' records end
    for key in compared:
        assert ours[key] == pytest.approx(theirs[key], rel=0.005), key


def test_real_trace_hvm_exits_equal_xenalyze(xenalyze: str, corpus: Path,
                                            real_summary) -> None:
    """Exit counts per vCPU and reason, and guest interrupt counts, against xenalyze's (the
    vCPU xenalyze marks LOST at the end may differ by its last exit)."""
    out, err = _xenalyze(xenalyze, corpus / CORPUS_TRACE)
    lost = {(int(d), int(v)) for d, v in re.findall(r"setting d(\d+)v(\d+) to state LOST", err)}
    theirs: dict[tuple[int, int, str], int] = {}
    dom = vcpu = None
    section = ""
    for line in out.splitlines():
        if m := re.match(r"\|-- Domain (\d+) --\|", line):
            dom = int(m.group(1))
        elif m := re.match(r"-- v(\d+) --", line):
            vcpu = int(m.group(1))
        elif line.startswith(("Exit reasons:", "Guest interrupt counts:")):
            section = line
        elif section.startswith("Exit") and (m := re.match(r" ([A-Z_]+)\s+(\d+)\s", line)):
            theirs[(dom, vcpu, m.group(1))] = int(m.group(2))
        elif section.startswith("Guest") and (m := re.match(r"\s+\[\s*(\d+)\] (\d+)$", line)):
            theirs[(dom, vcpu, f"vector {m.group(1)}")] = int(m.group(2))
        elif not line.startswith(" "):
            section = ""
    doc = real_summary.to_document()["hvm"]
    ours = {(r["domid"], r["vcpu"], r["name"]): r["count"] for r in doc["exits"]}
    ours.update({(r["domid"], r["vcpu"], f"vector {r['vector']}"): r["count"]
                 for r in doc["guest_interrupts"]})
    assert len(theirs) == 30
    for key, count in theirs.items():
        if key[:2] not in lost:
            assert ours.get(key) == count, key


def test_trace_command_does_not_import_pandas(corpus: Path) -> None:
    """A small trace is summarized before pandas could have been imported: it is not."""
    code = ("import sys; from xentrace_cli.cli import main; "
            f"main(['trace', {str(corpus / CORPUS_TRACE)!r}, '--format', 'json'], "
            "standalone_mode=False); "
            "sys.stderr.write(' '.join(m for m in ('pandas', 'pyarrow', 'rich') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert json.loads(done.stdout)["records"] == 180_493
    assert done.stderr.strip().endswith("") and "pandas" not in done.stderr
    assert "pyarrow" not in done.stderr


def test_trace_tables_on_a_terminal_import_no_rich(corpus: Path, tmp_path: Path) -> None:
    """The tables are drawn without rich, and a trace read in well under a second draws no
    progress bar: with stderr on a terminal (where a bar would be drawn) neither rich nor
    pandas is imported."""
    seen = tmp_path / "modules"
    code = ("import sys; from xentrace_cli.cli import main; "
            f"main(['trace', {str(corpus / CORPUS_TRACE)!r}], standalone_mode=False); "
            f"open({str(seen)!r}, 'w').write(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('rich', 'pandas', 'pyarrow'))))")
    master, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=terminal, timeout=120, check=True)
    finally:
        os.close(terminal)
        os.close(master)
    assert "records per event" in done.stdout.decode()
    assert seen.read_text() == ""
