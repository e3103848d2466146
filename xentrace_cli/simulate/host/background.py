"""Work that has nothing to do with the network, filling the trace as on a real host.

A real dom0 vCPU wakes for the block back-end after a disk interrupt, for a Linux timer, for
an IPI from another dom0 vCPU (xenstored, the toolstack); other domains' vCPUs run bursts on
every pCPU. ``corpus/xentrace`` shows dom0 vCPUs running ~40 µs (median) per wake-up and
runnable 3–20 µs after a wake on an idle pCPU. Two parts:

- :meth:`Background.unrelated_wake` writes the cause of a dom0 wake the event loop drew in
  the past (:mod:`.sched`): a disk interrupt whose handler wakes the vCPU, a timer on its own
  pCPU, or an IPI from another dom0 vCPU;
- :func:`fill` places bursts of unrelated dom0 work and of other domains in the gaps of every
  pCPU's timeline after the loop, vectorized: each burst wakes, runs and blocks where nothing
  else holds the pCPU, so it changes no network checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...xen_events import RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, TRC_HW_IRQ_HANDLED
from .engine import MS, RAW_WIDTH, SCHED_WIDTH, US, SchedKind, pack
from .sched import BLOCK_AT, BLOCK_LAG, IDLE, WAKE_FLOOR, Vcpu
from .shape import DOM0, background_vcpu

if TYPE_CHECKING:
    from .sim import HostSim

#: The block device's interrupt (another Xen IRQ than the NIC's).
DISK_IRQ = 30
#: Margin kept free around every placed burst.
MARGIN = 8 * US


class Background:
    """Causes of unrelated dom0 wakes, written while the loop runs."""

    def __init__(self, host: HostSim) -> None:
        self.host = host

    def unrelated_wake(self, v: Vcpu, t: int) -> None:
        """The WAKE of dom0 vCPU ``v`` at ``t`` for unrelated work, with its cause."""
        host = self.host
        r = host.rnd.random()
        if r < 0.4:      # disk interrupt: the handler wakes the vCPU bound to its channel
            cpu = host.rnd.randrange(host.shape.n_pcpus)
            entry = t - host.lat(0.6 * US)
            out = t + 1500 + host.lat(0.8 * US)
            host.rec(cpu, out, TRC_HW_IRQ_HANDLED, (DISK_IRQ, out - entry, 0))
        elif r < 0.75:   # a timer on its own pCPU
            cpu = v.pcpu.id
        else:            # an IPI from another dom0 vCPU
            cpu = host.shape.dom0_pcpu(host.rnd.randrange(host.shape.n_dom0))
        host.wake(cpu, t, v.domid, v.vcpu, v.pcpu.id)


def _free_gaps(held: np.ndarray, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
    """The gaps of [t0, t1) not covered by the (start, end) intervals ``held``."""
    if not len(held):
        return np.array([t0]), np.array([t1])
    h = held[np.argsort(held[:, 0], kind="stable")]
    end = np.maximum.accumulate(h[:, 1])
    starts = np.r_[t0, end]
    ends = np.r_[h[:, 0], t1]
    ok = ends - starts > 0
    return starts[ok], ends[ok]


def _bursts(rng: np.random.Generator, t0: int, t1: int, gap_ns: float, run_median: float,
            sigma: float, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """A renewal process of (start, duration) over [t0, t1): exponential gaps."""
    n = int((t1 - t0) / gap_ns * 1.3) + 4
    dur = np.minimum(run_median * np.exp(sigma * rng.standard_normal(n)), cap).astype(np.int64)
    gaps = rng.exponential(gap_ns, n).astype(np.int64)
    start = t0 + np.cumsum(gaps + np.r_[0, dur[:-1]] + 2 * MARGIN)
    keep = start + dur < t1
    return start[keep], dur[keep]


def _fit(gs: np.ndarray, ge: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Mask of the intervals [start, end) that lie inside one gap (with margins)."""
    i = np.searchsorted(gs, start, side="right") - 1
    ok = i >= 0
    ii = np.maximum(i, 0)
    return ok & (start - MARGIN >= gs[ii]) & (end + MARGIN <= ge[ii])


def _emit(host: HostSim, pcpu: int, who: np.ndarray, woke: np.ndarray, waker: np.ndarray,
          run: np.ndarray, end: np.ndarray, gs: np.ndarray) -> list[np.ndarray]:
    """Scheduler rows of bursts on ``pcpu``: wake, switch in, block, switch out."""
    n = len(run)
    rows = np.zeros((4 * n, SCHED_WIDTH), dtype=np.int64)
    d, v = who >> 16, who & 0xFFFF
    idle_from = gs[np.searchsorted(gs, woke, side="right") - 1]
    w, s, b, o = (rows[k * n:(k + 1) * n] for k in range(4))
    w[:, 0], w[:, 1], w[:, 2], w[:, 3], w[:, 4], w[:, 5] = (SchedKind.WAKE, waker, woke, d, v,
                                                            pcpu)
    s[:, 0], s[:, 1], s[:, 2], s[:, 3], s[:, 4] = SchedKind.SWITCH, pcpu, run, IDLE, \
        RUNSTATE_RUNNABLE
    s[:, 5], s[:, 6], s[:, 7] = who, run - idle_from, run - woke
    b[:, 0], b[:, 1], b[:, 2], b[:, 3], b[:, 4] = (SchedKind.BLOCK, pcpu,
                                                   end - BLOCK_LAG + BLOCK_AT, d, v)
    o[:, 0], o[:, 1], o[:, 2], o[:, 3], o[:, 4] = SchedKind.SWITCH, pcpu, end, who, \
        RUNSTATE_BLOCKED
    o[:, 5], o[:, 6], o[:, 7] = IDLE, end - run, 0
    return [rows]


def fill(host: HostSim, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unrelated bursts in the gaps of every pCPU over the run: (sched rows, raw records)."""
    rng = np.random.default_rng(seed)
    p, shape = host.p, host.shape
    t0, t1 = host.t_begin + 50 * US, host.t_end - 50 * US
    sched: list[np.ndarray] = []
    raw: list[np.ndarray] = []
    for pc in host.pcpus:
        held = np.frombuffer(pc.held, dtype=np.int64).reshape(-1, 2)
        gs, ge = _free_gaps(held, host.t_begin, host.t_end)
        placed = []
        if pc.id < shape.n_dom0:   # dom0's own vCPU: unrelated work
            s, dur = _bursts(rng, t0, t1, p.dom0_gap, p.unrelated_run_median, 1.0, 3 * MS)
            woke = s - WAKE_FLOOR - (p.sched_median * np.exp(0.45 * rng.standard_normal(
                len(s)))).astype(np.int64)
            end = s + dur + BLOCK_LAG
            ok = _fit(gs, ge, woke, end)
            woke, s, end = woke[ok], s[ok], end[ok]
            kind = rng.random(len(s))
            waker = np.where(kind < 0.35, rng.integers(0, shape.n_pcpus, len(s)),
                             np.where(kind < 0.75, pc.id,
                                      rng.integers(0, shape.n_dom0, len(s))))
            disk = kind < 0.35
            raw.append(_disk_irqs(waker[disk], woke[disk], rng))
            who = np.full(len(s), pack(DOM0, pc.id))
            sched += _emit(host, pc.id, who, woke, waker, s, end, gs)
            placed.append(np.c_[woke, end])
        if placed:
            gs, ge = _free_gaps(np.concatenate([held, *placed]), host.t_begin, host.t_end)
        s, dur = _bursts(rng, t0, t1, p.bg_gap, p.bg_run_median, 1.2, 8 * MS)
        woke = s - WAKE_FLOOR - rng.integers(0, 20 * US, len(s))
        end = s + dur + BLOCK_LAG
        ok = _fit(gs, ge, woke, end)
        woke, s, end = woke[ok], s[ok], end[ok]
        k = rng.integers(0, 2, len(s))
        who = np.array([pack(*background_vcpu(pc.id, 0)), pack(*background_vcpu(pc.id, 1))])[k]
        sched += _emit(host, pc.id, who, woke, np.full(len(s), pc.id), s, end, gs)
    rows = np.concatenate(sched) if sched else np.zeros((0, SCHED_WIDTH), dtype=np.int64)
    recs = np.concatenate(raw) if raw else np.zeros((0, RAW_WIDTH), dtype=np.int64)
    return rows, recs


def _disk_irqs(cpu: np.ndarray, woke: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HW_IRQ_HANDLED of the disk's interrupt around each wake it caused (word 1 holds the
    handler's duration in ns until the trace builder turns it into TSC)."""
    n = len(woke)
    m = np.zeros((n, RAW_WIDTH), dtype=np.int64)
    out = woke + 1500 + rng.integers(200, 1500, n)
    entry = woke - rng.integers(200, 900, n)
    m[:, 0], m[:, 1], m[:, 2], m[:, 3], m[:, 4] = cpu, out, TRC_HW_IRQ_HANDLED, 1, 3
    m[:, 5], m[:, 6] = DISK_IRQ, out - entry
    return m
