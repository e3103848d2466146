"""Scenario simulator: consistent capture sets with their ground truth.

Two hosts: the ``toy`` host (two dom0 vCPUs in fixed roles, one guest; :mod:`.physics`) and
the ``realistic`` host of :mod:`.host` (several dom0 vCPUs doing unrelated work, the NIC
interrupt moving among pCPUs, netback's rx and tx paths sharing vCPUs, a second guest, UDP,
credit2's records; docs/simulator.md). :data:`DEFAULT_HOST` is the one a scenario runs on
unless told.

``run_scenario(name, out_dir)`` writes, for one simulated guest (domid 5) and its dom0:
``phys.pcap`` and ``vif5.0.pcap`` (dom0 clock), ``guest.pcapng`` and ``app.strace`` (guest
clock), ``xentrace.bin`` (TSC), ``truth.csv``, ``scenario.json`` and the capture-set manifest
``xenlat-set.toml`` (:mod:`xentrace_cli.sources.manifest`). Modules: ``physics`` (the
event model), ``scenarios`` (what each scenario changes), ``frames`` and ``writers`` (bytes),
``captures``, ``trace`` (the hypervisor trace), ``truth``, ``segments`` (long runs in
parallel).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import OptionError
from ..sources.manifest import FILE_KEYS, MANIFEST_NAME, write_manifest
from . import segments
from .captures import GUEST_IP, SERVER_IP, SERVER_PORT, Clock, write_captures
from .frames import Content
from .host.captures import write_captures as host_write_captures
from .host.report import host_conventions
from .host.report import realistic_host as _realistic_host
from .host.shape import HostShape, draw_role_plan
from .host.sim import HostParams, HostSim
from .host.tracebuild import build_records as host_build_records
from .host.tracebuild import concat_parts
from .host.traffic import draw_traffic
from .host.truth import truth_table as host_truth_table
from .host.truth import write_truth as host_write_truth
from .physics import Params, Sim, draw_conns
from .scenarios import SCENARIOS, ScenarioSpec, draw_requests
from .segments import run_segments
from .trace import N_PCPUS, WINDOW_NS, TraceRecords, build_records, write_trace
from .truth import truth_table, write_truth
from .writers import write_strace

__all__ = ["DEFAULT_HOST", "HOSTS", "SCENARIOS", "ScenarioSpec", "run_scenario", "simulate"]

#: The hosts a scenario can run on, and the one it runs on unless told (flip to "realistic"
#: once the analyzer follows each packet's path on it: issue 9).
HOSTS = ("toy", "realistic")
DEFAULT_HOST = "realistic"

#: True time of the simulation start: 2026-01-01 00:00:00 UTC + 1 h.
T0_NS = 1_767_229_200 * 10**9
CPU_HZ = 2.9e9
#: TSC at T0 (≈ 11.8 h of uptime at 2.9 GHz): TSC 0 is not the epoch.
TSC_AT_T0 = 123_456_789_012_345
GUEST_DOMID = 5
NIC_IRQ = 58
APP_PID = 4242
#: The Xen host's name in the manifest of a simulated set.
SIM_HOST = "simulated"
#: Captured bytes per frame (``tcpdump -s 128``): headers and the first payload bytes.
SNAPLEN = 128


@dataclasses.dataclass
class Simulation:
    """Everything one run produced, in memory (for tests and benchmarks)."""

    spec: ScenarioSpec
    sim: Any
    """The event model after its run (tables of frames, units, guest rows; strace calls)."""
    meta: dict[str, Any]
    """What ``scenario.json`` holds (but the file list)."""
    truth: pd.DataFrame
    """The truth table (``truth.csv``); ``attrs["t_ns"]`` keeps the exact checkpoints."""
    records: TraceRecords | None
    """The hypervisor trace, in TSC, sorted per CPU (None when a forked process wrote it)."""
    content: Content
    """Byte content of the simulated streams."""
    guest_clock: Clock
    pending: Any = None
    """(process, pipe) of the forked trace writer, until :meth:`wait_trace`."""
    host: str = "toy"
    """The host simulated: ``toy`` or ``realistic``."""

    def wait_trace(self) -> None:
        """Wait for the forked trace writer; add its blind spots to the faults."""
        if self.pending is None:
            return
        proc, recv = self.pending
        spots = recv.recv()
        proc.join()
        self.pending = None
        if proc.exitcode != 0:
            raise RuntimeError(f"the trace writer failed (exit {proc.exitcode})")
        self.meta["faults"] += [_fault_entry(s) for s in _spot_faults(spots)]


def _spot_faults(spots: list[dict[str, int]]) -> list[dict[str, Any]]:
    return [dict(kind="lost_records", cpu=s["cpu"], start_ns=s["start_ns"], end_ns=s["end_ns"],
                 dropped=s["dropped"]) for s in spots]


def _fault_entry(f: dict[str, Any]) -> dict[str, Any]:
    """A fault as scenario.json lists it: ns and seconds, size in ms."""
    return {**f, "start": f["start_ns"] / 1e9, "end": f["end_ns"] / 1e9,
            "size_ms": (f["end_ns"] - f["start_ns"]) / 1e6}


def _trace_job(send: Any, sim: Any, rnd: random.Random, blind: list[tuple[int, int, int]],
               cpu_hz: float, path: Path, build: Any) -> None:
    """In a forked process: build and write the hypervisor trace; send back the blind spots."""
    records, spots = build(sim, rnd, tsc_at_t0=TSC_AT_T0, cpu_hz=cpu_hz, blind_spots=blind)
    write_trace(path, records, cpu_hz)
    send.send(spots)


def resolve_host(spec: ScenarioSpec, host: str | None) -> str:
    """The host a scenario runs on: ``host`` if given, else the default if the scenario
    supports it, else the scenario's own."""
    if host is None:
        return DEFAULT_HOST if DEFAULT_HOST in spec.hosts else spec.hosts[0]
    if host not in HOSTS:
        raise OptionError(f"unknown host {host!r}; one of: {', '.join(HOSTS)}")
    if host not in spec.hosts:
        raise OptionError(f"scenario {spec.name!r} runs on the {' or '.join(spec.hosts)} "
                          f"host only, not {host!r}")
    return host


def simulate(name: str, *, seed: int = 1, requests: int | None = None,
             cpu_hz: float = CPU_HZ, trace_path: Path | None = None,
             host: str | None = None, shape: HostShape | None = None) -> Simulation:
    """Run scenario ``name`` in memory: the event model, its trace and its truth.

    With ``trace_path`` the trace is also written there — for a long run by a forked process
    while this one computes the truth (``records`` is then None). ``host``: ``toy`` or
    ``realistic`` (default: :func:`resolve_host`); ``shape``: the realistic host's shape
    (default :class:`HostShape`).
    """
    spec = SCENARIOS[name]
    kind = resolve_host(spec, host)
    n = spec.default_requests if requests is None else requests
    if n < 0:
        raise OptionError(f"--requests must be 0 or more, not {n}")
    if kind == "toy":
        rnd = random.Random(f"{name}/{seed}")
        params = dataclasses.replace(Params(), **spec.params)  # type: ignore[arg-type]
        reqs, content = draw_requests(n, params, rnd)
        plan = spec.plan(n, rnd)
        conns = draw_conns(params, rnd)
        sim = run_segments(params, reqs, content, plan, T0_NS, [rnd.getrandbits(63)], conns,
                           guest_domid=GUEST_DOMID, nic_irq=NIC_IRQ)
        guest_pcpu, build = sim.guest.pcpu, build_records
    else:
        rnd = random.Random(f"{name}/{seed}/realistic")
        params = dataclasses.replace(HostParams(), **spec.params)  # type: ignore[arg-type]
        shape = shape or HostShape()
        flows, exchanges, content = draw_traffic(n, params, shape.guests, rnd)
        plan = spec.plan(n, rnd)
        roles = draw_role_plan(shape, rnd, n)
        parts = _parts_options(trace_path, n, cpu_hz)
        sim = run_segments(params, exchanges, content, plan, T0_NS, [rnd.getrandbits(63)],
                           flows, sim_cls=HostSim, guest_domid=GUEST_DOMID, nic_irq=NIC_IRQ,
                           shape=shape, role_plan=roles, trace_parts=parts)
        guest_pcpu, build = sim.guest.pcpu.id, host_build_records
        if sim.parts:     # the segments wrote the trace in parts: join them aside
            assert trace_path is not None and parts is not None
            return _finish_parts(name, spec, seed, n, cpu_hz, sim, content, trace_path,
                                 parts["dir"])
    faults = [dict(f) for f in sim.fault_log]
    blind = [(guest_pcpu, f["start_ns"] - sim.lat(400_000), f["end_ns"] + sim.lat(300_000))
             for f in faults if f["cause"] == "lost_records"]
    records: TraceRecords | None = None
    pending = None
    if trace_path is not None and n > segments.SEGMENT_REQUESTS:
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_trace_job, args=(send, sim, rnd, blind, cpu_hz, trace_path,
                                                    build))
        proc.start()
        pending = (proc, recv)
    else:
        records, spots = build(sim, rnd, tsc_at_t0=TSC_AT_T0, cpu_hz=cpu_hz, blind_spots=blind)
        if trace_path is not None:
            write_trace(trace_path, records, cpu_hz)
        faults += _spot_faults(spots)
    # labels come from the stalls, not the blind spots
    truth = truth_table(sim, faults) if kind == "toy" else host_truth_table(sim, faults)
    meta = _meta(name, spec, seed, n, cpu_hz, sim, faults, kind)
    return Simulation(spec, sim, meta, truth, records, content,
                      Clock(T0_NS, spec.offset_ns, spec.drift_ppm), pending, kind)


def _parts_options(trace_path: Path | None, n: int, cpu_hz: float) -> dict[str, Any] | None:
    """Let a long realistic run's segments write the trace in parts."""
    if trace_path is None or n <= segments.SEGMENT_REQUESTS:
        return None
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    directory = tempfile.mkdtemp(prefix="xenlat-trace-", dir=shm or Path(trace_path).parent)
    return {"dir": directory, "tsc_at_t0": TSC_AT_T0, "cpu_hz": cpu_hz,
            "window_cycles": int(WINDOW_NS * cpu_hz / 1e9)}


def _concat_job(send: Any, parts: list[dict[str, Any]], path: Path, cpu_hz: float,
                directory: str) -> None:
    """In a forked process: join the trace's parts into ``path``, remove them."""
    try:
        concat_parts(parts, path, tsc_at_t0=TSC_AT_T0, cpu_hz=cpu_hz)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    send.send([])


def _finish_parts(name: str, spec: ScenarioSpec, seed: int, n: int, cpu_hz: float, sim: Any,
                  content: Content, trace_path: Path, directory: str) -> Simulation:
    """Truth and scenario.json of a run whose segments wrote the trace in parts; the parts
    are joined by a forked process meanwhile."""
    faults = [dict(f) for f in sim.fault_log]
    faults += _spot_faults([s for part in sim.parts for s in part["spots"]])
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_concat_job, args=(send, sim.parts, trace_path, cpu_hz,
                                                 directory))
    proc.start()
    truth = host_truth_table(sim, faults)
    meta = _meta(name, spec, seed, n, cpu_hz, sim, faults, "realistic")
    return Simulation(spec, sim, meta, truth, None, content,
                      Clock(T0_NS, spec.offset_ns, spec.drift_ppm), (proc, recv), "realistic")


def _meta(name: str, spec: ScenarioSpec, seed: int, n: int, cpu_hz: float, sim: Any,
          faults: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """What scenario.json says (but the file list)."""
    meta: dict[str, Any] = {
        "scenario": name,
        "description": spec.description,
        "seed": seed,
        "requests": n,
        "domid": GUEST_DOMID,
    }
    meta.update(_toy_host(sim) if kind == "toy" else _realistic_host(sim))
    meta.update({
        "cpu_hz": cpu_hz,
        "t0_ns": T0_NS,
        "tsc_at_t0": TSC_AT_T0,
        "tsc_formula": "tsc = tsc_at_t0 + round((t_ns - t0_ns) * cpu_hz / 1e9)",
        "guest_clock": {"offset_ns": spec.offset_ns, "drift_ppm": spec.drift_ppm,
                        "formula": "guest_ns = true_ns + offset_ns + drift_ppm*1e-6*(true_ns "
                                   "- t0_ns)"},
        "server": f"{SERVER_IP}:{SERVER_PORT}",
        "guest_ip": GUEST_IP,
        "snaplen": SNAPLEN,
        "conventions": {
            "t_write": "entry of the application's write call",
            "t_read": "return of the first read covering the segment's last byte",
            "guest_run_when_running": "the event-channel notification, a few µs after copy",
            "merged_rows": "checkpoints of the frame/unit carrying the row's last byte",
        },
        "faults": [_fault_entry(f) for f in faults],
        "span": {"start_ns": sim.t_begin, "end_ns": sim.t_end},
    })
    if kind != "toy":
        meta["conventions"].update(host_conventions())
    return meta


def _toy_host(sim: Sim) -> dict[str, Any]:
    return {
        "guest_vcpu": {"domid": GUEST_DOMID, "vcpu": 0, "pcpu": sim.guest.pcpu},
        "dom0_vcpus": [{"vcpu": v.vcpu, "pcpu": v.pcpu} for v in (sim.v0, sim.v1)],
        "nic_irq": NIC_IRQ,
        "nic_irq_vcpu": sim.v0.vcpu,
        "netback_rx_vcpu": sim.v1.vcpu,
        "netback_tx_vcpu": sim.v0.vcpu,
        "pcpus": N_PCPUS,
    }


def run_scenario(name: str, out_dir: str | os.PathLike[str], *, seed: int = 1,
                 requests: int | None = None, cpu_hz: float = CPU_HZ,
                 host: str | None = None, shape: HostShape | None = None) -> list[Path]:
    """Simulate scenario ``name`` and write its files into ``out_dir``; return their paths
    (``host``, ``shape``: as for :func:`simulate`)."""
    if requests is not None and requests < 0:
        raise OptionError(f"--requests must be 0 or more, not {requests}")
    resolve_host(SCENARIOS[name], host)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = simulate(name, seed=seed, requests=requests, cpu_hz=cpu_hz,
                   trace_path=out / "xentrace.bin", host=host, shape=shape)
    try:
        return _write_rest(run, out)
    finally:
        if run.pending is not None:   # an error on the way: do not leave the writer behind
            run.pending[0].join()


def _write_rest(run: Simulation, out: Path) -> list[Path]:
    """Captures, socket log, truth, then (the trace written) scenario.json."""
    sim, meta, guest_clock = run.sim, run.meta, run.guest_clock
    vif = f"vif{GUEST_DOMID}.0.pcap"
    writer = write_captures if run.host == "toy" else host_write_captures
    files = writer(sim, out, content=run.content, guest_clock=guest_clock, snaplen=SNAPLEN,
                   vif_name=vif)
    files["xentrace"] = "xentrace.bin"
    calls = np.asarray(sim.strace_ns, dtype=np.int64).reshape(-1, 2)
    entry = calls[:, 0]
    ret = entry + calls[:, 1]
    g_entry = guest_clock.local(entry)
    write_strace(out / "app.strace", APP_PID, g_entry, guest_clock.local(ret) - g_entry,
                 sim.strace_calls)
    files["socket_log"] = "app.strace"
    if run.host == "toy":
        write_truth(out / "truth.csv", run.truth)
    else:
        host_write_truth(out / "truth.csv", run.truth)
    files["truth"] = "truth.csv"
    run.wait_trace()
    write_manifest(out, {k: v for k, v in files.items() if k in FILE_KEYS},
                   xen_host=SIM_HOST, domid=GUEST_DOMID,
                   started=dt.datetime.fromtimestamp(sim.t_begin // 10**9, dt.UTC))
    files["manifest"] = MANIFEST_NAME
    files["scenario"] = "scenario.json"
    meta["files"] = files
    with open(out / "scenario.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=False)
        f.write("\n")
    order = ("phys", "backend", "guest", "xentrace", "socket_log", "truth", "scenario")
    return [out / files[k] for k in (*order, "manifest")]

