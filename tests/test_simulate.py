"""Tests of the scenario simulator (``xentrace_cli.simulate``): invariants of every scenario,
agreement of each written source with the truth, determinism, the CLI and the shipped samples.

Ground truth: ``truth.csv`` and ``scenario.json`` checked against tshark, the project's readers
and hand calculations (checkpoint differences, clock formulas) written here.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xentrace_cli.cli import main
from xentrace_cli.errors import OptionError
from xentrace_cli.model import CHECKPOINTS, STAGES
from xentrace_cli.simulate import SCENARIOS, run_scenario, segments
from xentrace_cli.sources import packets, socket_log
from xentrace_cli.sources import xentrace as xt

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
FILES = ["phys.pcap", "vif5.0.pcap", "guest.pcapng", "xentrace.bin", "app.strace",
         "truth.csv", "scenario.json", "xenlat-set.toml"]
REQUESTS = 60
FAULTY = ("black-0.1s", "dom0-starved", "ring-full", "lost-records")
CLEAN = ("healthy", "clock-skew", "offload")
SEGMENTED = "healthy-in-segments"
#: The scenarios of the toy host (the realistic host's are tested in test_simulate_host.py).
TOY = [name for name, spec in SCENARIOS.items() if "toy" in spec.hosts]


@pytest.fixture(scope="module")
def runs(simulated_set: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory,
         ) -> dict[str, Path]:
    """Every scenario, simulated once with a few requests (the session's shared sets), and
    healthy simulated here the long run's way (it tests that way of simulating)."""
    out = {name: simulated_set(name, seed=2, requests=REQUESTS, host="toy") for name in TOY}
    # a long run's way: segments of 25 requests simulated in parallel, then joined
    saved = segments.SEGMENT_REQUESTS
    segments.SEGMENT_REQUESTS = 25
    try:
        d = tmp_path_factory.mktemp(SEGMENTED)
        run_scenario("healthy", d, seed=2, requests=REQUESTS, host="toy")
        out[SEGMENTED] = d
    finally:
        segments.SEGMENT_REQUESTS = saved
    return out


def _ns(series: pd.Series) -> np.ndarray:
    """Decimal text (``SEC.FRACTION``) → exact int64 in units of the fraction (-1 if empty)."""
    out = np.full(len(series), -1, dtype=np.int64)
    for i, v in enumerate(series.tolist()):
        if isinstance(v, str) and v:
            whole, frac = v.split(".")
            out[i] = int(whole) * 10 ** len(frac) + int(frac)
    return out


def _truth(d: Path) -> pd.DataFrame:
    return pd.read_csv(d / "truth.csv", dtype=str, keep_default_na=False)


def _meta(d: Path) -> dict:
    return json.loads((d / "scenario.json").read_text())


def _guest_local(meta: dict, true_ns: np.ndarray) -> np.ndarray:
    g = meta["guest_clock"]
    return true_ns + g["offset_ns"] + np.round((true_ns - meta["t0_ns"]) * g["drift_ppm"]
                                                * 1e-6).astype(np.int64)


def _tsc(meta: dict, true_ns: np.ndarray) -> np.ndarray:
    return meta["tsc_at_t0"] + np.round((true_ns - meta["t0_ns"]) * (meta["cpu_hz"] / 1e9)
                                        ).astype(np.int64)


# ---------------------------------------------------------------- structure

@pytest.mark.parametrize("name", TOY)
def test_files_and_metadata(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    for f in FILES:
        assert (d / f).stat().st_size > 0, f
    meta = _meta(d)
    assert meta["scenario"] == name and meta["seed"] == 2 and meta["domid"] == 5
    assert sorted(meta["files"].values()) == sorted(FILES)
    assert meta["tsc_at_t0"] > 0 and meta["cpu_hz"] == 2.9e9
    assert len(meta["dom0_vcpus"]) == 2


@pytest.mark.parametrize("name", [*TOY, SEGMENTED])
def test_checkpoint_order_and_stage_arithmetic(runs: dict[str, Path], name: str) -> None:
    t = _truth(runs[name])
    rx = t[t["direction"] == "rx"]
    assert len(rx) > REQUESTS            # responses of several segments
    prev = np.full(len(rx), -1, dtype=np.int64)
    for c in CHECKPOINTS:
        v = _ns(rx[f"t_{c}"])
        if c != "guest_wake":
            assert (v > 0).all(), c        # every rx checkpoint but guest_wake always exists
        ok = (v < 0) | (v >= prev)
        assert ok.all(), f"{c} before its predecessor in {(~ok).sum()} rows"
        prev = np.where(v >= 0, v, prev)
    for stage, (a, b) in STAGES.items():
        # hand calculation: the stage is the difference of its checkpoints, in µs (ns exact)
        want = _ns(rx[f"t_{b}"]) - _ns(rx[f"t_{a}"])
        assert (_ns(rx[f"{stage}_us"]) == want).all(), stage
    assert (_ns(rx["total_us"]) == _ns(rx["t_read"]) - _ns(rx["t_irq"])).all()
    tx = t[t["direction"] == "tx"]
    w, g, b, p = (_ns(tx[f"t_{c}"]) for c in ("write", "guest", "backend", "phys"))
    assert len(tx) >= REQUESTS and (w > 0).all() and (w <= g).all() and (g <= b).all() \
        and (b <= p).all()
    assert (tx[[f"{s}_us" for s in STAGES]] == "").all().all()


# ---------------------------------------------------------------- the sources agree

def _packets(path: Path) -> pd.DataFrame:
    return packets.read_packets(path)


@pytest.mark.parametrize("name", ["healthy", "clock-skew", "black-0.1s", SEGMENTED])
def test_capture_times_are_truth_through_each_clock(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    meta, t = _meta(d), _truth(d)
    key = ["sport", "dport", "seq"]
    truth = t.assign(sport=t["sport"].astype(int), dport=t["dport"].astype(int),
                     seq=t["seq"].astype(int))
    for file, col, clock in (("guest.pcapng", "t_guest", "guest"), ("phys.pcap", "t_phys", "us"),
                             ("vif5.0.pcap", "t_backend", "us")):
        p = _packets(d / file)
        p = p[p["payload_len"] > 0]
        p = pd.DataFrame({"sport": p["sport"].astype(int), "dport": p["dport"].astype(int),
                          "seq": p["tcp_seq"].astype(int),
                          "ts": p["ts_ns"].to_numpy(dtype=np.int64)})
        m = truth.merge(p, on=key, how="inner", validate="one_to_one")
        assert len(m) == len(truth), file      # one frame per truth row (no offload)
        true_ns = _ns(m[col])
        want = _guest_local(meta, true_ns) if clock == "guest" else true_ns // 1000 * 1000
        assert (m["ts"].to_numpy() == want).all(), file


def test_guest_clock_offset_and_drift_visible(runs: dict[str, Path]) -> None:
    """clock-skew: guest capture − true time grows from offset by drift; healthy stays small."""
    for name, lo_ms in (("clock-skew", 7.0), ("healthy", 0.0)):
        meta, t = _meta(runs[name]), _truth(runs[name])
        gap = _guest_local(meta, _ns(t["t_guest"])) - _ns(t["t_guest"])
        assert lo_ms * 1e6 <= gap.min() and gap.max() < (lo_ms + 1) * 1e6


@pytest.mark.parametrize("name", ["healthy", "offload", SEGMENTED])
def test_tcp_streams_consistent_for_tshark(runs: dict[str, Path], name: str,
                                           tshark: str) -> None:
    for f in ("phys.pcap", "vif5.0.pcap", "guest.pcapng"):
        out = subprocess.run([tshark, "-r", str(runs[name] / f), "-T", "fields", "-E",
                              "separator=,", "-e", "tcp.stream", "-e", "tcp.analysis.flags"],
                             capture_output=True, text=True, check=True)
        rows = [line.split(",") for line in out.stdout.splitlines()]
        flagged = [i + 1 for i, r in enumerate(rows) if r[1]]
        assert not flagged, f"{name}/{f}: tshark flags frames {flagged[:5]}"
        assert {r[0] for r in rows} == {"0", "1", "2", "3"}   # four connections


@pytest.mark.parametrize("name", [*CLEAN, SEGMENTED])
def test_rx_bytes_contiguous_per_connection(runs: dict[str, Path], name: str) -> None:
    """Hand check of sequence numbering: each connection's rx rows tile its byte stream."""
    t = _truth(runs[name])
    rx = t[t["direction"] == "rx"]
    for _, g in rx.groupby("dport"):
        seq = g["seq"].astype(np.int64).to_numpy()
        ln = g["len"].astype(np.int64).to_numpy()
        assert ((seq[:-1] + ln[:-1]) % 2**32 == seq[1:]).all()


def test_offload_changes_boundaries(runs: dict[str, Path]) -> None:
    d = runs["offload"]
    phys, vif, guest = (_packets(d / f) for f in ("phys.pcap", "vif5.0.pcap", "guest.pcapng"))
    assert phys["payload_len"].max() <= 1460
    assert vif["payload_len"].max() > 1460 and guest["payload_len"].max() > 1460
    starts = {name: set(p.loc[(p["payload_len"] > 0) & (p["sport"] == 11211), "tcp_seq"]
                        .astype(int)) for name, p in (("phys", phys), ("vif", vif),
                                                      ("guest", guest))}
    assert starts["guest"] - starts["vif"], "guest boundaries equal the vif's"
    # same bytes everywhere
    for p in (vif, guest):
        assert p.loc[p["sport"] == 11211, "payload_len"].sum() == \
            phys.loc[phys["sport"] == 11211, "payload_len"].sum()


# ---------------------------------------------------------------- the trace agrees

def _trace(d: Path):
    return xt.read_xentrace(d / "xentrace.bin")


@pytest.mark.parametrize("name", ["healthy", "offload", "dom0-starved", SEGMENTED])
def test_trace_records_at_truth_checkpoints(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    meta, t, trace = _meta(d), _truth(d), _trace(d)
    ev = trace.events
    assert not (~trace.runstates["consistent"]).any()
    rx = t[t["direction"] == "rx"]
    copies = ev[(ev["event"] == 0x0020100D) & (ev["w1"] == 5)]
    rx_cpu = meta["dom0_vcpus"][1]["pcpu"]
    # each rx segment's copy is a grant copy on netback's rx vCPU's pCPU, at that TSC
    rx_copy = copies[copies["cpu"] == rx_cpu]
    assert set(_tsc(meta, _ns(rx["t_copy"]))) <= set(rx_copy["tsc"])
    # the rx copies' counts add up to the rx frames of the vif capture; tx copies exist too
    vif = _packets(d / "vif5.0.pcap")
    assert rx_copy["w2"].sum() == (vif["sport"] == 11211).sum()
    assert copies[copies["cpu"] != rx_cpu]["w2"].sum() == (vif["dport"] == 11211).sum()
    irqs = ev[(ev["event"] == 0x00802008) & (ev["w0"] == meta["nic_irq"])]
    assert set(_tsc(meta, _ns(rx["t_irq"]))) <= set(irqs["tsc"])
    # HW_IRQ_HANDLED's words: TSC low bits at entry, then at exit (= its own timestamp)
    assert (irqs["w2"].to_numpy(np.int64) == irqs["tsc"].to_numpy(np.int64) % 2**32).all()
    spent = (irqs["w2"].to_numpy(np.int64) - irqs["w1"].to_numpy(np.int64)) % 2**32
    assert ((spent > 0) & (spent < 200_000)).all()
    woke = _ns(rx["t_guest_wake"])
    wakes = ev[(ev["event"] == 0x00028004) & (ev["w0"] == 5)]
    assert (woke > 0).any()
    if name != "offload":   # also notifications that found the guest vCPU running
        assert not (woke > 0).all()
    assert set(_tsc(meta, woke[woke > 0])) <= set(wakes["tsc"])
    runs_ = ev[(ev["event"] == 0x00021101) & (ev["w0"] == 5 << 16)]
    assert set(_tsc(meta, _ns(rx["t_guest_run"])[woke > 0])) <= set(runs_["tsc"])


def test_cpu_hz_configurable(tmp_path: Path) -> None:
    """Simulates its own set: the simulator's cpu_hz option is what is tested."""
    run_scenario("healthy", tmp_path, seed=4, requests=12, cpu_hz=2.4e9, host="toy")
    meta, t, trace = _meta(tmp_path), _truth(tmp_path), _trace(tmp_path)
    assert meta["cpu_hz"] == 2.4e9
    rx = t[t["direction"] == "rx"]
    ev = trace.events
    copies = ev[(ev["event"] == 0x0020100D) & (ev["cpu"] == meta["dom0_vcpus"][1]["pcpu"])]
    assert set(_tsc(meta, _ns(rx["t_copy"]))) <= set(copies["tsc"])
    # the default rate would not map the copies onto the trace
    assert not set(_tsc({**meta, "cpu_hz": 2.9e9}, _ns(rx["t_copy"]))) & set(copies["tsc"])


def _state_during(trace, meta: dict, domid: int, vcpu: int, state: str, a: int, b: int) -> int:
    """ns the vCPU spent in ``state`` within true-time [a, b]."""
    rs = trace.runstates
    rs = rs[(rs["domid"] == domid) & (rs["vcpu"] == vcpu) & (rs["state"] == state)]
    ta, tb = _tsc(meta, np.array([a, b]))
    end = rs["end_tsc"].fillna(np.iinfo(np.int64).max).to_numpy(dtype=np.int64)
    ov = np.minimum(end, tb) - np.maximum(rs["start_tsc"].to_numpy(), ta)
    return int(ov[ov > 0].sum() / (meta["cpu_hz"] / 1e9))


@pytest.mark.parametrize("name", FAULTY)
def test_faults_only_where_scenario_says(runs: dict[str, Path], name: str) -> None:
    d = runs[name]
    meta, t = _meta(d), _truth(d)
    faults = [f for f in meta["faults"] if f.get("stage")]
    assert faults
    rx = t[t["direction"] == "rx"]
    bad = rx[rx["anomaly"] != ""]
    assert 0 < len(bad) < 0.15 * len(rx)
    assert (t.loc[t["direction"] == "tx", "anomaly"] == "").all()
    for _, row in bad.iterrows():
        a, b = STAGES[row["anomaly"]]
        lo, hi = _ns(pd.Series([row[f"t_{a}"]]))[0], _ns(pd.Series([row[f"t_{b}"]]))[0]
        hits = [f for f in faults if min(hi, f["end_ns"]) - max(lo, f["start_ns"]) >= 1e6]
        assert hits and row["cause"] in {f["cause"] for f in hits}
        assert row["anomaly"] in {s for f in hits for s in f["stages"]}
    for f in faults:   # every injected fault shows in at least one row, in its main stage
        assert ((bad["cause"] == f["cause"]) & (bad["anomaly"] == f["stage"])).any()
    # rows not labelled stay in the healthy range in every stage
    ok = rx[rx["anomaly"] == ""]
    for stage in STAGES:
        assert _ns(ok[f"{stage}_us"]).max() < 1_000_000, stage


def test_causes_visible_in_trace(runs: dict[str, Path]) -> None:
    """The run state each cause names is what the trace shows during the stalled stage."""
    for name, cause, who, state in (("black-0.1s", "vcpu_runnable", (5, 0), "runnable"),
                                    ("black-0.1s", "vcpu_running", (5, 0), "running"),
                                    ("dom0-starved", "dom0_runnable", (0, 0), "runnable"),
                                    ("ring-full", "ring_full", (5, 0), "running")):
        d = runs[name]
        meta, t, trace = _meta(d), _truth(d), _trace(d)
        rows = t[t["cause"] == cause]
        assert len(rows), (name, cause)
        for _, row in rows.iterrows():
            a, b = STAGES[row["anomaly"]]
            lo, hi = (int(_ns(pd.Series([row[f"t_{c}"]]))[0]) for c in (a, b))
            spent = _state_during(trace, meta, *who, state, lo, hi)
            assert spent >= 0.9 * (hi - lo) - 100_000, (name, cause, spent, hi - lo)
        # the domain scenario.json names ran during the whole fault (or the guest itself did)
        for f in meta["faults"]:
            if f.get("cause") == cause:
                ran = _state_during(trace, meta, f["by_domid"], f["by_vcpu"], "running",
                                    f["start_ns"], f["end_ns"])
                assert ran >= f["end_ns"] - f["start_ns"] - 10_000, f


def test_lost_records_blind_spot_covers_stall(runs: dict[str, Path]) -> None:
    d = runs["lost-records"]
    meta, trace = _meta(d), _trace(d)
    stalls = [f for f in meta["faults"] if f.get("cause") == "lost_records"]
    lost = trace.lost
    assert len(stalls) and len(lost) == len(stalls)
    for f, (_, rec) in zip(stalls, lost.sort_values("tsc").iterrows(), strict=True):
        ta, tb = _tsc(meta, np.array([f["start_ns"], f["end_ns"]]))
        assert rec["tsc_first"] <= ta and rec["tsc"] >= tb and rec["dropped"] > 0
    assert (_truth(d)["cause"] == "lost_records").any()


def test_socket_log_matches_truth(runs: dict[str, Path]) -> None:
    d = runs["healthy"]
    meta, t = _meta(d), _truth(d)
    log = socket_log.read_socket_log(d / "app.strace")
    assert {"connect", "read", "write"} <= set(log["syscall"].astype(str))
    assert (log["errno"] == "EAGAIN").any()
    reads = log[(log["syscall"] == "read") & (log["bytes"] > 0)]
    rx = t[t["direction"] == "rx"]
    # partial reads: more reads than responses
    assert len(reads) > REQUESTS
    want = _guest_local(meta, _ns(rx["t_read"]))
    got = np.sort(reads["ts_ns"].to_numpy(dtype=np.int64))
    pos = np.clip(np.searchsorted(got, want), 1, len(got) - 1)
    near = np.minimum(np.abs(got[pos] - want), np.abs(got[pos - 1] - want))
    assert near.max() <= 2_000      # strace prints µs: entry and duration truncated
    # bytes read add up to the rx bytes per connection
    assert reads["bytes"].sum() == rx["len"].astype(int).sum()


# ---------------------------------------------------------------- determinism, CLI, samples

def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """Simulates its own sets: the simulator's determinism is what is tested."""
    for d, seed in ((tmp_path / "a", 5), (tmp_path / "b", 5), (tmp_path / "c", 6)):
        run_scenario("black-0.1s", d, seed=seed, requests=30, host="toy")
    for f in FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "guest.pcapng").read_bytes() != \
        (tmp_path / "c" / "guest.pcapng").read_bytes()


def test_cli_simulate(runner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["simulate", "healthy", "-o", str(tmp_path), "--requests", "10",
                               "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [str(tmp_path / f) for f in FILES]
    assert res.stderr == ""
    assert _meta(tmp_path)["requests"] == 10


def test_cli_simulate_negative_requests(runner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["simulate", "healthy", "-o", str(tmp_path), "--requests", "-3"])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "'--requests'" in res.stderr and "-3" in res.stderr   # click's range check
    assert not (tmp_path / "truth.csv").exists()
    with pytest.raises(OptionError, match="--requests must be 0 or more, not -3"):
        run_scenario("healthy", tmp_path, requests=-3)   # the library's own check
    assert not (tmp_path / "truth.csv").exists()


def test_cli_simulate_unknown_and_list(runner, tmp_path: Path) -> None:
    res = runner.invoke(main, ["simulate", "nope", "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stdout == ""
    assert "unknown scenario 'nope'" in res.stderr
    res = runner.invoke(main, ["simulate", "list", "-o", str(tmp_path)])
    assert res.exit_code == 0
    assert [line.split()[0] for line in res.stdout.splitlines()] == list(SCENARIOS)


@pytest.mark.parametrize("name", ["healthy", "black-0.1s"])
def test_samples_regenerate_byte_for_byte(tmp_path: Path, name: str) -> None:
    """Simulates its own set: that the shipped samples are the simulator's is tested."""
    sample = SAMPLES / name
    meta = _meta(sample)
    run_scenario(name, tmp_path, seed=meta["seed"], requests=meta["requests"])
    for f in FILES:
        assert (tmp_path / f).read_bytes() == (sample / f).read_bytes(), f
