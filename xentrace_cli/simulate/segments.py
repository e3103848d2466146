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
import tempfile
from typing import Any

import numpy as np

from .frames import Content
from .physics import MS, Conn, FaultPlan, Params, Sim, Table

#: Requests per segment (a run no longer than this is one segment: samples stay as they are).
SEGMENT_REQUESTS = 8000
#: Pause between two segments (an application think time).
SEGMENT_GAP_NS = 4 * MS


#: What every segment shares, set before the worker processes fork (so never pickled).
_SHARED: tuple[Any, ...] = ()
#: Arrays a segment hands back through files (in memory-backed /dev/shm where there is one):
#: one copy each way instead of a pickle through a pipe.
_ARRAYS = ("wire", "units", "rows", "trace", "reads", "strace_ns")


def _run_one(args: tuple[Any, ...]) -> dict[str, Any]:
    """Simulate one segment; save its tables as int64 matrices, return the small rest."""
    params, reqs, content, plan, t_begin, kw, tmp, sim_cls = _SHARED
    k, seed, conns, lo, hi = args
    sim = sim_cls(params, reqs, content, plan, t_begin, seed, conns=conns, req_range=(lo, hi),
                  connect=lo == 0, **kw)
    sim.run()
    trace = sim.segment_trace(k)
    # in (cpu, time) order already, ties in write order: the trace builder's sort of all
    # segments then moves whole runs, and its gathers read memory in order
    key = (trace[:, 0] << 44) | (trace[:, 1] - t_begin)
    arrays = {"trace": trace[np.argsort(key, kind="stable")],
              "reads": np.asarray(sim.reads, dtype=np.int64).reshape(-1, 3),
              "strace_ns": np.asarray(sim.strace_ns, dtype=np.int64).reshape(-1, 2)}
    for name in sim_cls.TABLE_TIME:
        arrays[name] = getattr(sim, name).matrix()
    for name, a in arrays.items():
        np.save(os.path.join(tmp, f"{k}-{name}.npy"), a)
    return {"t_end": sim.t_end, "fault_log": sim.fault_log, "strace_calls": sim.strace_calls,
            "k": k, "extra": sim.segment_extra()}


def _load(tmp: str, part: dict[str, Any]) -> None:
    """Map a segment's saved arrays into ``part`` (read-only, copied once by the join)."""
    for name in _ARRAYS:
        part[name] = np.load(os.path.join(tmp, f"{part['k']}-{name}.npy"), mmap_mode="r")


def run_segments(params: Params, reqs: Any, content: Content, plan: FaultPlan,
                 t_begin: int, seeds: list[int], conns: list[Any], *, sim_cls: Any = Sim,
                 **kw: Any) -> Any:
    """Simulate ``reqs`` in segments (in parallel when there are several); one joined
    ``sim_cls`` (the toy host's :class:`Sim` by default)."""
    n = sim_cls.n_requests(reqs)
    bounds = [(lo, min(n, lo + SEGMENT_REQUESTS)) for lo in range(0, max(n, 1),
                                                                   SEGMENT_REQUESTS)]
    jobs = [(k, seeds[k % len(seeds)] + k, sim_cls.conns_at(conns, reqs, lo) if lo else conns,
             lo, hi) for k, (lo, hi) in enumerate(bounds)]
    if len(jobs) == 1:
        sim = sim_cls(params, reqs, content, plan, t_begin, jobs[0][1], conns=conns, **kw)
        sim.run()
        return sim
    global _SHARED
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="xenlat-segments-", dir=shm) as tmp:
        _SHARED = (params, reqs, content, plan, t_begin, kw, tmp, sim_cls)
        workers = min(len(jobs), os.cpu_count() or 1)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_run_one, jobs, chunksize=1)
        finally:
            _SHARED = ()
        for part in parts:
            _load(tmp, part)
        return _join(parts, params, reqs, content, t_begin, conns, kw, sim_cls)


def _join(parts: list[dict[str, Any]], params: Params, reqs: Any, content: Content,
          t_begin: int, conns: list[Conn], kw: dict[str, Any], sim_cls: Any) -> Any:
    sim = sim_cls(params, reqs, content, FaultPlan(), t_begin, 0, conns=conns, **kw)
    table_time, table_index = sim_cls.TABLE_TIME, sim_cls.TABLE_INDEX
    out = {name: np.empty((sum(len(p[name]) for p in parts), parts[0][name].shape[1]),
                          dtype=np.int64) for name in _ARRAYS}
    shift = 0
    base = {"wire": 0, "units": 0, "rows": 0}
    at = dict.fromkeys(_ARRAYS, 0)
    for part in parts:
        for name in _ARRAYS:
            lo = at[name]
            hi = lo + len(part[name])
            m = out[name][lo:hi]
            m[:] = part[name]
            at[name] = hi
            if name in table_time:
                table: Table = getattr(sim, name)
                for col in table_time[name]:
                    c = m[:, table.columns.index(col)]
                    c[c >= 0] += shift
                for col, target in table_index[name].items():
                    c = m[:, table.columns.index(col)]
                    c[c >= 0] += base[target]
        out["trace"][at["trace"] - len(part["trace"]):at["trace"], 1] += shift
        out["reads"][at["reads"] - len(part["reads"]):at["reads"], 2] += shift
        out["strace_ns"][at["strace_ns"] - len(part["strace_ns"]):at["strace_ns"], 0] += shift
        sim.strace_calls += part["strace_calls"]
        sim.fault_log += [{**f, "start_ns": f["start_ns"] + shift, "end_ns": f["end_ns"] + shift}
                          for f in part["fault_log"]]
        sim.join_extra(part["extra"], shift)
        for name in table_time:
            base[name] += len(part[name])
        sim.t_end = part["t_end"] + shift
        shift = sim.t_end + SEGMENT_GAP_NS - t_begin
    for name in table_time:
        table = getattr(sim, name)
        table._matrix = out[name]
        table.rows = []
    sim.set_trace(out["trace"])
    sim.reads = out["reads"]
    sim.strace_ns = out["strace_ns"]
    return sim
