"""Long runs in segments: independent slices of requests, simulated in parallel, then joined.

Between two requests every vCPU, the NIC and netback are idle, so a run cut between requests
is as good as one run: each segment starts from that idle state (connections already open,
stream positions where the previous segment left them), runs in its own process, and returns
compact arrays. Joining shifts each segment's times after the previous one's end and re-bases
the row indices that point from one table into another.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import numpy as np

from .frames import Content
from .physics import MS, REC_WIDTH, Conn, FaultPlan, Params, Request, Sim, Table, conns_at

#: Requests per segment (a run no longer than this is one segment: samples stay as they are).
SEGMENT_REQUESTS = 8000
#: Pause between two segments (an application think time).
SEGMENT_GAP_NS = 4 * MS

#: Time columns (shifted) and index columns (re-based: table they point into) per table.
_TIME = {"wire": ("t_nic", "t_phys", "irq", "dom0_run"),
         "units": ("t_backend", "copy", "guest_wake", "guest_run"),
         "rows": ("t_guest", "t_socket", "t_write")}
_INDEX = {"wire": {"unit": "units"}, "units": {"wire_first": "wire", "wire_last": "wire"},
          "rows": {"unit": "units"}}


#: What every segment shares, set before the worker processes fork (so never pickled).
_SHARED: tuple[Any, ...] = ()


def _run_one(args: tuple[Any, ...]) -> dict[str, Any]:
    """Simulate one segment; return its tables as int64 matrices (cheap to send back)."""
    params, reqs, content, plan, t_begin, kw = _SHARED
    seed, conns, lo, hi = args
    sim = Sim(params, reqs, content, plan, t_begin, seed, conns=conns, req_range=(lo, hi),
              connect=lo == 0, **kw)
    sim.run()
    out: dict[str, Any] = {"t_end": sim.t_end, "fault_log": sim.fault_log,
                           "trace": sim.trace_records().copy(),
                           "reads": np.array(sim.reads, dtype=np.int64).reshape(-1, 3),
                           "strace": sim.strace}
    for name in _TIME:
        out[name] = getattr(sim, name).matrix()
    return out


def run_segments(params: Params, reqs: list[Request], content: Content, plan: FaultPlan,
                 t_begin: int, seeds: list[int], conns: list[Conn], **kw: Any) -> Sim:
    """Simulate ``reqs`` in segments (in parallel when there are several); one joined Sim."""
    n = len(reqs)
    bounds = [(lo, min(n, lo + SEGMENT_REQUESTS)) for lo in range(0, max(n, 1),
                                                                   SEGMENT_REQUESTS)]
    jobs = [(seeds[k % len(seeds)] + k, conns_at(conns, reqs, lo) if lo else conns, lo, hi)
            for k, (lo, hi) in enumerate(bounds)]
    if len(jobs) == 1:
        sim = Sim(params, reqs, content, plan, t_begin, jobs[0][0], conns=conns, **kw)
        sim.run()
        return sim
    global _SHARED
    _SHARED = (params, reqs, content, plan, t_begin, kw)
    workers = min(len(jobs), os.cpu_count() or 1)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_run_one, jobs, chunksize=1)
    finally:
        _SHARED = ()
    return _join(parts, params, reqs, content, plan, t_begin, conns, kw)


def _join(parts: list[dict[str, Any]], params: Params, reqs: list[Request], content: Content,
          plan: FaultPlan, t_begin: int, conns: list[Conn], kw: dict[str, Any]) -> Sim:
    sim = Sim(params, reqs, content, FaultPlan(), t_begin, 0, conns=conns, **kw)
    shift = 0
    base = {"wire": 0, "units": 0, "rows": 0}
    mats: dict[str, list[np.ndarray]] = {name: [] for name in _TIME}
    traces, reads = [], []
    for part in parts:
        for name in _TIME:
            table: Table = getattr(sim, name)
            m = part[name].copy()
            for col in _TIME[name]:
                j = table.columns.index(col)
                m[:, j] = np.where(m[:, j] >= 0, m[:, j] + shift, m[:, j])
            for col, target in _INDEX[name].items():
                j = table.columns.index(col)
                m[:, j] = np.where(m[:, j] >= 0, m[:, j] + base[target], m[:, j])
            mats[name].append(m)
        tr = part["trace"].reshape(-1, REC_WIDTH)
        tr[:, 1] += shift
        traces.append(tr)
        rd = part["reads"].copy()
        rd[:, 2] += shift
        reads.append(rd)
        sim.strace += [(e + shift, d, c) for e, d, c in part["strace"]]
        sim.fault_log += [{**f, "start_ns": f["start_ns"] + shift, "end_ns": f["end_ns"] + shift}
                          for f in part["fault_log"]]
        for name in _TIME:
            base[name] += len(part[name])
        sim.t_end = part["t_end"] + shift
        shift = sim.t_end + SEGMENT_GAP_NS - t_begin
    for name in _TIME:
        table = getattr(sim, name)
        table._matrix = np.concatenate(mats[name])
        table.rows = []
    sim.joined_trace = np.concatenate(traces)
    sim.reads = [tuple(r) for r in np.concatenate(reads).tolist()]
    return sim
