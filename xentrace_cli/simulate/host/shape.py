"""The shape of the simulated Xen host, and who serves what when.

A host has ``n_pcpus`` physical CPUs. dom0's vCPU ``k`` runs on pCPU ``k`` and each networked
guest's single vCPU on a pCPU of its own after them; every pCPU also runs vCPUs of other
domains (:func:`background_vcpu`). dom0's vCPUs are pinned here, where the real host of
``corpus/xentrace`` lets credit2 move them: see docs/simulator.md.

*Roles* change during a run, as on a real host: the NIC interrupt is taken on one pCPU at a
time, moving among :attr:`HostShape.irq_pcpus`; it is forwarded to one dom0 vCPU, which
irqbalance may change once; each guest's netback receive thread (``vifD.0-guest-rx``) runs on
one dom0 vCPU and may move; its transmit NAPI poll runs on the dom0 vCPU that its transmit
event channel is bound to. A :class:`Schedule` holds each role's values over time.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from typing import Any

#: dom0's domain id.
DOM0 = 0


@dataclasses.dataclass(frozen=True)
class HostShape:
    """How many pCPUs and dom0 vCPUs, which guests, where the NIC interrupt may land."""

    n_pcpus: int = 8
    n_dom0: int = 4
    guests: tuple[int, ...] = (5, 6)
    """Domain ids of the networked guests; the first is the one whose captures are written."""
    irq_pcpus: tuple[int, ...] | None = None
    """pCPUs the NIC interrupt may be taken on (None: two dom0 pCPUs, the captured guest's
    pCPU and a pCPU of no network vCPU)."""

    def __post_init__(self) -> None:
        if self.n_dom0 < 1 or not self.guests:
            raise ValueError("a host needs at least one dom0 vCPU and one guest")
        if self.n_pcpus < self.n_dom0 + len(self.guests):
            raise ValueError(f"{self.n_pcpus} pCPUs cannot hold {self.n_dom0} dom0 vCPUs and "
                             f"{len(self.guests)} guest vCPUs")

    def dom0_pcpu(self, vcpu: int) -> int:
        return vcpu

    def guest_pcpu(self, domid: int) -> int:
        return self.n_dom0 + self.guests.index(domid)

    def nic_pcpus(self) -> tuple[int, ...]:
        """The pCPUs the NIC interrupt may be taken on."""
        if self.irq_pcpus is not None:
            return self.irq_pcpus
        spare = self.n_dom0 + len(self.guests)
        out = {0, self.n_dom0 - 1, self.guest_pcpu(self.guests[0])}
        if spare < self.n_pcpus:
            out.add(spare)
        return tuple(sorted(out))

    def to_dict(self) -> dict[str, Any]:
        return {"pcpus": self.n_pcpus, "dom0_vcpus": self.n_dom0, "guests": list(self.guests),
                "nic_irq_pcpus": list(self.nic_pcpus())}


def background_vcpu(pcpu: int, k: int = 0) -> tuple[int, int]:
    """The ``k``-th vCPU of another domain that time-shares ``pcpu`` (domains 7, 9, 11)."""
    return 7 + 2 * ((pcpu + k) % 3), pcpu // 3 + 4 * k


class Schedule:
    """A value that changes at given times: ``(start_ns, value)`` points, the first at the
    start of the run."""

    def __init__(self, points: list[tuple[int, int]]) -> None:
        self.times = [t for t, _ in points]
        self.values = [v for _, v in points]

    def at(self, t: int) -> int:
        if t >= self.times[-1]:          # the common case: after the last change
            return self.values[-1]
        return self.values[max(0, bisect.bisect_right(self.times, t) - 1)]

    def change(self, t: int, value: int) -> None:
        """The value becomes ``value`` from ``t`` on (``t`` after every earlier change)."""
        if value != self.values[-1]:
            self.times.append(t)
            self.values.append(value)

    def points(self) -> list[tuple[int, int]]:
        return list(zip(self.times, self.values, strict=True))


@dataclasses.dataclass
class Roles:
    """Who serves what, over one simulated segment."""

    nic_pcpu: Schedule
    """pCPU that takes the NIC interrupt."""
    nic_vcpu: Schedule
    """dom0 vCPU the NIC interrupt is forwarded to (its event channel's vCPU)."""
    rx_vcpu: dict[int, Schedule]
    """Per guest: dom0 vCPU its netback receive thread runs on."""
    tx_vcpu: dict[int, Schedule]
    """Per guest: dom0 vCPU its transmit event channel is bound to (the NAPI poll runs there)."""

    def schedule(self, role: str) -> Schedule:
        kind, _, g = role.partition(":")
        return {"nic_pcpu": self.nic_pcpu, "nic_vcpu": self.nic_vcpu}.get(kind) or \
            (self.rx_vcpu if kind == "rx" else self.tx_vcpu)[int(g)]


@dataclasses.dataclass
class RolePlan:
    """Role changes for a whole run, tied to the captured guest's requests (a change happens
    when the application sends that request), so that segments simulated apart agree."""

    initial: dict[str, int]
    changes: list[tuple[int, str, int]]
    """(request index, role, new value), sorted."""

    def values_before(self, first: int) -> dict[str, int]:
        out = dict(self.initial)
        for r, role, value in self.changes:
            if r < first:
                out[role] = value
        return out

    def roles(self, t0: int, first: int) -> Roles:
        """The roles of a segment starting at request ``first`` and time ``t0``."""
        v = self.values_before(first)
        guests = sorted({int(k.split(":")[1]) for k in v if ":" in k})
        return Roles(Schedule([(t0, v["nic_pcpu"])]), Schedule([(t0, v["nic_vcpu"])]),
                     {g: Schedule([(t0, v[f"rx:{g}"])]) for g in guests},
                     {g: Schedule([(t0, v[f"tx:{g}"])]) for g in guests})


def draw_role_plan(shape: HostShape, rnd: random.Random, n: int) -> RolePlan:
    """Where each role starts and when it changes over ``n`` requests.

    The NIC's pCPU moves 3 times (and once more per 20,000 requests); the serving vCPU changes
    once, a third to two thirds in (irqbalance); the captured guest's receive thread starts on
    the vCPU its transmit path uses (so their copies interleave) and moves once half the time;
    the other guests' threads start anywhere.
    """
    k = shape.n_dom0
    pcpus = shape.nic_pcpus()
    initial = {"nic_pcpu": rnd.choice(pcpus), "nic_vcpu": rnd.randrange(k)}
    changes: list[tuple[int, str, int]] = []
    at = sorted(rnd.randrange(max(1, n // 10), max(2, n)) for _ in range(3 + n // 20000))
    cur = initial["nic_pcpu"]
    for r in at:
        cur = rnd.choice([p for p in pcpus if p != cur] or list(pcpus))
        changes.append((r, "nic_pcpu", cur))
    if k > 1:
        changes.append((int(n * rnd.uniform(0.33, 0.66)), "nic_vcpu",
                        rnd.choice([v for v in range(k) if v != initial["nic_vcpu"]])))
    for i, g in enumerate(shape.guests):
        r = rnd.randrange(k)
        initial[f"rx:{g}"] = r
        initial[f"tx:{g}"] = r if i == 0 or rnd.random() < 0.5 else rnd.randrange(k)
        if k > 1 and rnd.random() < 0.5:
            changes.append((int(n * rnd.uniform(0.2, 0.8)), f"rx:{g}",
                            rnd.choice([v for v in range(k) if v != r])))
    changes.sort(key=lambda c: c[0])
    return RolePlan(initial, changes)
