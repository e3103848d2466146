"""What the scheduler did, from a trace's run-state timeline: the views xenalyze gives.

- Waits: each runnable interval of a vCPU is a wait to run, told apart by how it began (as
  xenalyze does): from blocked or offline it is a **wake** latency (the vCPU was woken and
  queued), from running a **preemption** (it was descheduled while it still had work).
- Physical CPUs: how busy each was while observed, over the trace and in time buckets, and
  where a CPU went **silent**: a CPU whose records stop while the others go on leaves the
  states recorded on it unobserved to the end; that time is *inferred* (carried from its last
  record), reported as such.
- Migrations: a vCPU's running intervals on another physical CPU than its previous one, and
  its running time per physical CPU.

Tables here are dicts of equal-length numpy columns (``Table``), times in TSC cycles, so a
small trace is summarized without importing pandas; :mod:`.trace_summary` converts. Units are
keyed ``domid << 16 | vcpu``. Loops run over CPUs or silences, never over intervals.
"""

from __future__ import annotations

import numpy as np

from ..groups import group_quantiles, sorted_codes, unique
from ..sources.xentrace_scan import TraceScan, occupancy, runstate_intervals
from ..xen_events import DOMID_IDLE, RUNSTATES

Table = dict[str, np.ndarray]

RUNNING, RUNNABLE, BLOCKED, OFFLINE = range(4)
#: Wait kinds, by the state the runnable interval began from.
WAIT_KINDS: tuple[str, ...] = ("wake", "preempt", "other")
#: Silence sides, as coded in :func:`silences`.
SIDES: tuple[str, ...] = ("leading", "trailing")
#: A CPU is unusually silent when it has no records for longer than this share of the trace
#: and longer than it was ever quiet between two of its records (idle CPUs are quiet).
SILENCE_MIN_SHARE = 0.01
#: The percentiles of waits and exits.
QUANTILES = (0.5, 0.9, 0.99)


def interval_table(scan: TraceScan) -> Table:
    """The run-state intervals with open ends closed at the trace's last TSC (``open`` says
    which), states as int8 (-1: a state number Xen does not define), and ``unit``: each
    interval's index into ``units`` (the distinct keys, ascending; not a column)."""
    iv = runstate_intervals(scan)
    last = scan.last_tsc if scan.last_tsc is not None else 0
    state = np.where(iv["state"] < len(RUNSTATES), iv["state"], np.int8(-1))
    key = iv["key"]
    new = np.ones(len(key), dtype=bool)  # sorted by unit: a unit begins where the key changes
    np.not_equal(key[1:], key[:-1], out=new[1:])
    return {"key": key, "unit": np.cumsum(new) - 1, "units": key[new], "state": state,
            "start": iv["start"],
            "end": np.maximum(np.where(iv["end"] < 0, last, iv["end"]), iv["start"]),
            "open": iv["end"] < 0, "cpu": iv["cpu"].astype(np.int16),
            "lead": iv["from_origin"], "consistent": iv["consistent"]}


# --- silent CPUs ---------------------------------------------------------------------------------

def silences(scan: TraceScan) -> Table:
    """Stretches at the trace's start and end where a physical CPU has no records.

    One row per CPU and side that has one: ``cpu, side`` (index into ``SIDES``), ``start,
    end``, ``longest_gap`` (the longest the CPU was quiet between two of its records) and
    ``unusual``: longer than that and than ``SILENCE_MIN_SHARE`` of the trace (for a trailing
    one: the CPU *stops early* — records lost with no lost-records record, or it went away);
    a CPU whose records all share one time has nothing to compare with and is never unusual.
    """
    rows: list[tuple[int, int, int, int, int]] = []
    first, last = scan.first_tsc, scan.last_tsc
    if first is not None and last is not None:
        for cpu in scan.cpu_ids:
            gap = scan.cpu_longest_gap.get(cpu)
            longest = gap[1] - gap[0] if gap else 0
            edges = ((first, scan.cpu_first_tsc.get(cpu, last)),
                     (scan.cpu_last_tsc.get(cpu, first), last))
            rows += [(cpu, side, lo, hi, longest) for side, (lo, hi) in enumerate(edges)
                     if hi > lo]
    cols = np.array(rows, dtype=np.int64).reshape(-1, 5)
    span = max((last or 0) - (first or 0), 1)
    length = cols[:, 3] - cols[:, 2]
    # a CPU with records at one time only has no quiet stretch to judge by: not unusual
    return {"cpu": cols[:, 0].astype(np.int16), "side": cols[:, 1].astype(np.int8),
            "start": cols[:, 2], "end": cols[:, 3], "longest_gap": cols[:, 4],
            "unusual": (length > cols[:, 4]) & (length > SILENCE_MIN_SHARE * span)
            & (cols[:, 4] > 0)}


def inferred_states(iv: Table, silent: Table) -> Table:
    """The run states carried across the unusual silences: intervals recorded on a silent CPU
    that overlap its silence, clipped to it (``cpu, side, key, state, start, end``)."""
    parts = []
    for k in np.flatnonzero(silent["unusual"]).tolist():
        lo, hi, cpu = int(silent["start"][k]), int(silent["end"][k]), int(silent["cpu"][k])
        hit = np.flatnonzero((iv["cpu"] == cpu) & (iv["start"] < hi) & (iv["end"] > lo)
                             & (iv["end"] > iv["start"]))
        part = {"cpu": np.full(len(hit), cpu, dtype=np.int16),
                "side": np.full(len(hit), silent["side"][k], dtype=np.int8),
                "key": iv["key"][hit], "state": iv["state"][hit],
                "start": np.maximum(iv["start"][hit], lo), "end": np.minimum(iv["end"][hit], hi)}
        parts.append(part)
    names = ("cpu", "side", "key", "state", "start", "end")
    types = (np.int16, np.int8, np.int64, np.int8, np.int64, np.int64)
    return {n: (np.concatenate([p[n] for p in parts]) if parts else np.empty(0, dtype=t))
            for n, t in zip(names, types, strict=True)}


# --- vCPU states, waits, migrations ---------------------------------------------------------------

def vcpu_states(iv: Table, inferred: Table) -> Table:
    """Per vCPU (``key``): cycles in each state from the trace's first TSC to its last,
    ``changes`` (run-state records), ``inferred`` cycles (carried across a silent CPU)."""
    codes, keys = iv["unit"], iv["units"]
    slots = len(RUNSTATES) + 1  # the states, and one for a state number Xen does not define
    per = np.bincount(codes * slots + (iv["state"].astype(np.int64) % slots),
                      weights=(iv["end"] - iv["start"]).astype(float),
                      minlength=len(keys) * slots).reshape(len(keys), slots)
    out: Table = {"key": keys}
    for code, name in enumerate(RUNSTATES):
        out[name] = per[:, code].astype(np.int64)
    out["changes"] = np.bincount(codes[~iv["lead"]], minlength=len(keys)).astype(np.int64)
    at = np.searchsorted(keys, inferred["key"])
    out["inferred"] = np.bincount(at, weights=(inferred["end"] - inferred["start"]).astype(float),
                                  minlength=len(keys)).astype(np.int64)
    return out


def waits(iv: Table) -> Table:
    """Every closed runnable interval of every vCPU: ``key, kind`` (index into
    ``WAIT_KINDS``: began from blocked or offline = wake, from running = preempt, else other),
    ``start, cycles``, ``row`` (in ``iv``). Intervals whose closing record disagrees (records
    lost) are left out."""
    key, state = iv["key"], iv["state"]
    n = len(key)
    prev = np.full(n, -1, dtype=np.int8)
    if n:
        prev[1:] = np.where(key[1:] == key[:-1], state[:-1], -1)
    pick = np.flatnonzero((state == RUNNABLE) & ~iv["open"] & iv["consistent"])
    before = prev[pick]
    kind = np.full(len(pick), 2, dtype=np.int8)
    kind[(before == BLOCKED) | (before == OFFLINE)] = 0
    kind[before == RUNNING] = 1
    return {"key": key[pick], "kind": kind, "start": iv["start"][pick],
            "cycles": iv["end"][pick] - iv["start"][pick], "row": pick}


def wait_stats(wait: Table, group: np.ndarray, hz: float,
               by_value: np.ndarray | None = None) -> Table:
    """Per group (e.g. the unit key, or the domain) and kind: ``count, total_s, mean_us``, the
    ``QUANTILES`` in µs (``p50_us`` …) and ``max_us``; sorted by group then kind.
    ``by_value``: the waits' order by cycles, when already known (stable argsort)."""
    codes, uniques = sorted_codes(group.astype(np.int64) * len(WAIT_KINDS) + wait["kind"])
    us = wait["cycles"] / hz * 1e6
    count = np.bincount(codes, minlength=len(uniques))
    total = np.bincount(codes, weights=us, minlength=len(uniques))
    quant = group_quantiles(codes, us, len(uniques), (*QUANTILES, 1.0), by_value)  # 1: max
    out: Table = {"group": uniques // len(WAIT_KINDS),
                  "kind": (uniques % len(WAIT_KINDS)).astype(np.int8),
                  "count": count.astype(np.int64), "total_s": total / 1e6,
                  "mean_us": np.divide(total, count, out=np.full(len(count), np.nan),
                                       where=count > 0)}
    for k, q in enumerate(QUANTILES):
        out[f"p{round(q * 100)}_us"] = quant[:, k]
    out["max_us"] = quant[:, -1]
    return out


def migrations(iv: Table) -> tuple[Table, Table]:
    """Per vCPU: running intervals and moves to another physical CPU (``key, runs,
    migrations``); and its running cycles per physical CPU (``key, cpu, runs, cycles``). The
    idle vCPUs never move (one per CPU) and are left out."""
    run = np.flatnonzero((iv["state"] == RUNNING) & ((iv["key"] >> 16) != DOMID_IDLE))
    key, cpu = iv["key"][run], iv["cpu"][run].astype(np.int64)
    unit_code = iv["unit"][run]
    cycles = (iv["end"][run] - iv["start"][run]).astype(float)
    moved = np.zeros(len(run), dtype=bool)
    moved[1:] = (key[1:] == key[:-1]) & (cpu[1:] != cpu[:-1])
    runs = np.bincount(unit_code, minlength=len(iv["units"]))
    used = np.flatnonzero(runs)
    per_unit = {"key": iv["units"][used], "runs": runs[used],
                "migrations": np.bincount(unit_code, weights=moved,
                                          minlength=len(iv["units"]))[used].astype(np.int64)}
    pair_code, pair = sorted_codes((key << 16) | cpu)
    per_cpu = {"key": pair >> 16, "cpu": (pair & 0xFFFF).astype(np.int16),
               "runs": np.bincount(pair_code, minlength=len(pair)),
               "cycles": np.bincount(pair_code, weights=cycles,
                                     minlength=len(pair)).astype(np.int64)}
    return per_unit, per_cpu


# --- physical CPUs --------------------------------------------------------------------------------

def _busy_before(start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cycles of the sorted, disjoint intervals ``[start, end)`` before each time ``t``."""
    if not len(start):
        return np.zeros(len(t), dtype=np.int64)
    done = np.r_[0, np.cumsum(end - start)]  # cycles of the first i intervals
    i = np.searchsorted(start, t, side="right")  # intervals starting at or before t
    j = np.maximum(i - 1, 0)
    inside = np.clip(t - start[j], 0, end[j] - start[j])  # the part of interval j before t
    return np.where(i > 0, done[j] + inside, 0)


def cpu_runs(scan: TraceScan, iv: Table) -> Table:
    """Who held each physical CPU when: ``cpu, key, start, end, open``, sorted by CPU then
    start. From the SWITCH records when the trace has them (every occupant, the idle vCPUs
    too: :func:`switch_runs`), else from the vCPUs' running intervals."""
    if has_switches(scan):
        return switch_runs(scan)
    run = np.flatnonzero(iv["state"] == RUNNING)
    run = run[np.argsort(iv["start"][run], kind="stable")]
    run = run[np.argsort(iv["cpu"][run], kind="stable")]
    return {"cpu": iv["cpu"][run], "key": iv["key"][run], "start": iv["start"][run],
            "end": iv["end"][run], "open": iv["open"][run]}


def has_switches(scan: TraceScan) -> bool:
    """The trace has SWITCH records (:func:`cpu_runs` needs no run-state intervals then)."""
    return bool(len(scan.switch.get("tsc", ())))


def switch_runs(scan: TraceScan) -> Table:
    """:func:`cpu_runs` from the SWITCH records (the run-state intervals not needed)."""
    last = scan.last_tsc if scan.last_tsc is not None else 0
    sw = scan.switch

    def unit(a: str, b: str) -> np.ndarray:
        return (sw[a].astype(np.int64) << 16) | sw[b].astype(np.int64)

    runs = occupancy(sw["cpu"], sw["tsc"], unit("w0", "w1"), unit("w2", "w3"), scan.first_tsc)
    opened = runs["end"] < 0
    return {"cpu": runs["cpu"], "key": runs["key"], "start": runs["start"],
            "end": np.maximum(np.where(opened, last, runs["end"]), runs["start"]),
            "open": opened}


def cpu_slice(runs: Table, cpu: int) -> slice:
    lo, hi = np.searchsorted(runs["cpu"], [cpu, cpu + 1])
    return slice(int(lo), int(hi))


def pcpu_usage(scan: TraceScan, runs: Table, buckets: int) -> tuple[Table, Table]:
    """How busy each physical CPU was while observed (between its first and last records):
    non-idle vCPUs holding it. Per CPU: ``cpu, records, first, last, busy, idle, unknown,
    observed`` (cycles); per CPU and time bucket: ``cpu, bucket, start, end, busy_share``
    (NaN where the CPU has no records: silent)."""
    first = scan.first_tsc or 0
    last = scan.last_tsc if scan.last_tsc is not None else first
    edges = np.linspace(first, last, buckets + 1).round().astype(np.int64)
    rows, shares = [], []
    for cpu in scan.cpu_ids:
        lo = scan.cpu_first_tsc.get(cpu, last)
        hi = max(scan.cpu_last_tsc.get(cpu, first), lo)
        mine = cpu_slice(runs, cpu)
        start, end = np.clip(runs["start"][mine], lo, hi), np.clip(runs["end"][mine], lo, hi)
        busy = (runs["key"][mine] >> 16) != DOMID_IDLE
        length = end - start
        records = int(scan.counts["records"][scan.counts["cpu"] == cpu].sum())
        rows.append((cpu, records, lo, hi, int(length[busy].sum()), int(length[~busy].sum()),
                     hi - lo))
        b_lo, b_hi = np.clip(edges[:-1], lo, hi), np.clip(edges[1:], lo, hi)
        got = _busy_before(start[busy], end[busy], b_hi) - _busy_before(start[busy], end[busy],
                                                                        b_lo)
        span = (b_hi - b_lo).astype(float)
        share = np.divide(got, span, out=np.full(buckets, np.nan), where=span > 0)
        shares.append(np.clip(share, 0, 1))  # overlapping records (TSC skew): never > 100 %
    cols = np.array(rows, dtype=np.int64).reshape(-1, 7)
    per_cpu: dict[str, np.ndarray] = {
        "cpu": cols[:, 0].astype(np.int16), "records": cols[:, 1], "first": cols[:, 2],
        "last": cols[:, 3], "busy": cols[:, 4], "idle": cols[:, 5], "observed": cols[:, 6]}
    per_cpu["unknown"] = np.maximum(per_cpu["observed"] - per_cpu["busy"] - per_cpu["idle"], 0)
    n = len(scan.cpu_ids)
    per_bucket = {"cpu": np.repeat(per_cpu["cpu"], buckets),
                  "bucket": np.tile(np.arange(buckets), n),
                  "start": np.tile(edges[:-1], n), "end": np.tile(edges[1:], n),
                  "busy_share": np.concatenate(shares) if shares else np.empty(0)}
    return per_cpu, per_bucket


def occupants(runs: Table, cpu: np.ndarray, tsc: np.ndarray) -> np.ndarray:
    """The unit key of who held ``cpu[i]`` at ``tsc[i]`` (-1: none known)."""
    out = np.full(len(tsc), -1, dtype=np.int64)
    for c in unique(cpu).tolist():  # a step per physical CPU, vectorized within it
        mine = cpu_slice(runs, c)
        start, end = runs["start"][mine], runs["end"][mine]
        ask = np.flatnonzero(cpu == c)
        i = np.searchsorted(start, tsc[ask], side="right") - 1
        j = np.maximum(i, 0)
        ok = (i >= 0) & ((tsc[ask] < end[j]) | runs["open"][mine][j]) if len(start) else i >= 0
        if len(start):
            out[ask[ok]] = runs["key"][mine][j[ok]]
    return out
