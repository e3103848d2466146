"""The named scenarios: what each changes in the healthy host and which faults it injects.

A scenario is data (:class:`ScenarioSpec`): parameter overrides, the guest clock, and a fault
planner choosing a few requests out of hundreds to suffer each fault — rare enough that a
robust baseline still describes the healthy packets.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

import numpy as np

from .frames import Content
from .physics import MS, FaultPlan, Params, Request

Planner = Callable[[int, random.Random], FaultPlan]


@dataclasses.dataclass(frozen=True)
class ScenarioSpec:
    """One named scenario."""

    name: str
    description: str
    plan: Planner
    """Chooses the faulted requests, given the number of requests and a seeded RNG."""
    params: dict[str, object] = dataclasses.field(default_factory=dict)
    """Overrides of :class:`physics.Params`."""
    offset_ns: int = 350_000
    """Guest clock offset from true time at t0."""
    drift_ppm: float = 1.5
    """Guest clock drift."""
    default_requests: int = 500
    hosts: tuple[str, ...] = ("toy", "realistic")
    """The hosts it runs on (``simulate.HOSTS``)."""


def _pick(n: int, k: int, rnd: random.Random) -> list[int]:
    """``k`` distinct requests spread over the middle of the run (not the first 10 %)."""
    lo = max(1, n // 10)
    pool = list(range(lo, max(lo + 1, n - 1)))
    k = min(k, len(pool))
    return sorted(rnd.sample(pool, k))


def _none(n: int, rnd: random.Random) -> FaultPlan:
    return FaultPlan()


def _black(n: int, rnd: random.Random) -> FaultPlan:
    chosen = _pick(n, max(2, min(6, n // 40)), rnd)
    rnd.shuffle(chosen)
    half = len(chosen) // 2
    return FaultPlan(
        guest_preempt={r: int(rnd.uniform(92, 110) * MS) for r in chosen[:half]},
        app_stall={r: int(rnd.uniform(92, 110) * MS) for r in chosen[half:]},
    )


def _dom0_starved(n: int, rnd: random.Random) -> FaultPlan:
    chosen = _pick(n, max(1, min(4, n // 40)), rnd)
    return FaultPlan(dom0_starve={r: int(rnd.uniform(15, 45) * MS) for r in chosen})


def _ring_full(n: int, rnd: random.Random) -> FaultPlan:
    chosen = _pick(n, max(1, min(4, n // 40)), rnd)
    return FaultPlan(ring_full={r: int(rnd.uniform(4, 15) * MS) for r in chosen})


def _lost(n: int, rnd: random.Random) -> FaultPlan:
    chosen = _pick(n, 2, rnd)
    return FaultPlan(guest_preempt={r: int(rnd.uniform(35, 60) * MS) for r in chosen},
                     blind_spot=set(chosen))


def _tx_stall(n: int, rnd: random.Random) -> FaultPlan:
    from .host.faults import HostFaultPlan

    chosen = _pick(n, max(2, min(6, n // 40)), rnd)
    rnd.shuffle(chosen)
    half = len(chosen) // 2
    return HostFaultPlan(
        tx_dom0_stall={r: int(rnd.uniform(8, 30) * MS) for r in chosen[:half]},
        socket_write={r: int(rnd.uniform(8, 30) * MS) for r in chosen[half:]},
    )


SCENARIOS: dict[str, ScenarioSpec] = {s.name: s for s in (
    ScenarioSpec("healthy", "no fault: every stage in its normal range", _none),
    ScenarioSpec("black-0.1s", "reads ~100 ms late: guest vCPU preempted (vcpu_runnable) or "
                 "the application stalled while its vCPU ran (vcpu_running)", _black),
    ScenarioSpec("dom0-starved", "dom0's vCPU runnable, not running, for tens of ms after the "
                 "NIC interrupt (vmm, dom0_runnable)", _dom0_starved),
    ScenarioSpec("ring-full", "the guest posts no rx requests for a while though it runs: "
                 "netback waits for ring slots (ring, ring_full)", _ring_full),
    ScenarioSpec("clock-skew", "guest clock 7.3 ms ahead and drifting 40 ppm; no fault",
                 _none, offset_ns=7_300_000, drift_ppm=40.0),
    ScenarioSpec("offload", "GSO/GRO: the vif capture holds segments up to 64 KB, the guest "
                 "frames merged with other boundaries", _none,
                 params={"gso": True, "guest_gro": True}),
    ScenarioSpec("lost-records", "guest vCPU preempted while xentrace lost records: the "
                 "blind spot covers the stall (lost_records)", _lost),
    ScenarioSpec("tx-stall", "requests held on the transmit path: the dom0 vCPU of netback's "
                 "tx poll runnable behind another domain (tx vmm, dom0_runnable), or the "
                 "guest vCPU preempted between write and netfront (tx socket_write, "
                 "vcpu_runnable); realistic host only", _tx_stall, hosts=("realistic",)),
)}


def draw_requests(n: int, params: Params, rnd: random.Random) -> tuple[list[Request], Content]:
    """Pre-draw the exchanges: connection, request text, response size; lay out the content.

    Content layout (virtual positions): for each request, its bytes, then its response (a
    ``VALUE`` header line followed by pattern bytes).
    """
    reqs: list[Request] = []
    lit = bytearray()
    region_start, lit_off, lit_len = [], [], []
    pos = 0
    tx_off = [0] * params.n_conns
    rx_off = [0] * params.n_conns
    for r in range(n):
        c = r % params.n_conns
        key = f"k{r:08d}"
        if rnd.random() < 0.15:
            text = f"get {key} k{rnd.randrange(10**8):08d}\r\n".encode()
        else:
            text = f"get {key}\r\n".encode()
        size = int(min(30000, max(100, rnd.lognormvariate(np.log(params.resp_median),
                                                          params.resp_sigma))))
        header = f"VALUE {key} 0 {size}\r\n".encode()
        req = Request(conn=c, request=text, resp_len=size, resp_header=header,
                      req_pos=pos, resp_pos=pos + len(text), tx_off=tx_off[c], rx_off=rx_off[c])
        tx_off[c] += len(text)
        rx_off[c] += size
        region_start += [pos, pos + len(text)]
        lit_off += [len(lit), len(lit) + len(text)]
        lit_len += [len(text), len(header)]
        lit += text + header
        pos += len(text) + size
        reqs.append(req)
    content = Content(region_start=np.array(region_start or [0], dtype=np.int64),
                      literal_off=np.array(lit_off or [0], dtype=np.int64),
                      literal_len=np.array(lit_len or [0], dtype=np.int64),
                      literal=np.frombuffer(bytes(lit) or b"\0", dtype=np.uint8))
    return reqs, content
