"""Faults injected into the realistic host, on requests of the captured guest.

Each hook is called by the component where the fault bites and returns what changes, or
None; each fault it injects is logged with its stage, cause and the vCPU that caused it:

- ``dom0_starve`` (rx ``vmm``, dom0_runnable): the vCPU serving the NIC interrupt is runnable
  for tens of ms behind another domain's vCPU that credit2 does not preempt;
- ``ring_full`` (rx ``ring``, ring_full): the guest posts no rx requests for a while;
- ``guest_preempt`` (rx ``socket_read``, and ``remap`` for segments copied meanwhile;
  vcpu_runnable, or lost_records inside a blind spot) and ``app_stall`` (``socket_read``,
  vcpu_running): the black 0.1 second;
- ``tx_dom0_stall`` (tx ``vmm``, dom0_runnable): the dom0 vCPU serving netback's transmit
  path is runnable behind another domain while the guest sends;
- ``socket_write`` (tx ``socket_write``, vcpu_runnable): the guest vCPU is preempted between
  the application's write and the frame reaching netfront.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...xen_events import RUNSTATE_BLOCKED
from ..physics import FaultPlan
from .engine import US
from .tables import F_CONN, R_REQ, U_REQ, W_REQ

if TYPE_CHECKING:
    from .guest import Guest
    from .nic import Nic
    from .sched import Vcpu
    from .sim import HostSim


@dataclasses.dataclass
class HostFaultPlan(FaultPlan):
    """The toy host's faults plus the transmit ones (request → stall ns)."""

    tx_dom0_stall: dict[int, int] = dataclasses.field(default_factory=dict)
    socket_write: dict[int, int] = dataclasses.field(default_factory=dict)


class Faults:
    """The hooks, over one segment's copy of the plan."""

    def __init__(self, host: HostSim, plan: FaultPlan) -> None:
        self.host = host
        self.plan = plan
        self.tx_dom0 = getattr(plan, "tx_dom0_stall", {})
        self.sock_write = getattr(plan, "socket_write", {})
        self.ring_stall: dict[int, tuple[int, int]] = {}
        self.log: list[dict[str, Any]] = []

    def _add(self, kind: str, stage: str, stages: list[str], cause: str, start: int, end: int,
             who: tuple[int, int], request: int, direction: str = "rx") -> None:
        self.log.append(dict(kind=kind, direction=direction, stage=stage, stages=stages,
                             cause=cause, start_ns=start, end_ns=end, by_domid=who[0],
                             by_vcpu=who[1], request=request))

    def _captured_req(self, conn: int, req: int) -> int:
        host = self.host
        return req if req >= 0 and host.flows[conn].guest == host.captured else -1

    # ---------------------------------------------------------------- receive
    def dom0_starve_at(self, nic: Nic, t: int, v: Vcpu, woken_at: int, t_irq: int,
                       cpu: int) -> tuple[int, int, int | None] | None:
        if not self.plan.dom0_starve or not nic.pending:
            return None
        f = self.host.wire.rows[nic.pending[0]]
        req = self._captured_req(f[F_CONN], f[W_REQ])
        d = self.plan.dom0_starve.pop(req, None)
        if d is None:
            return None
        who = v.pcpu.bg
        if v.running_at(t):
            ps = max(v.run_start + US, t - 5 * US)
            v.preempt(ps, t + d, who)
            self._add("dom0_starve", "vmm", ["vmm"], "dom0_runnable", ps, t + d, who, req)
            return v.acquire(woken_at, cpu, not_before=t_irq + US, ref=t)
        if v.state != RUNSTATE_BLOCKED:  # woken already, its run still to come: none to starve
            return None
        hs = max(t - self.host.lat(400 * US), v.since + 10 * US, v.pcpu.last_end + 10 * US)
        if hs >= t - US:
            return None
        self._add("dom0_starve", "vmm", ["vmm"], "dom0_runnable", hs, t + d, who, req)
        return v.starve(woken_at, cpu, hs, t + d, who, t_irq + US)

    def ring_full_at(self, g: int, t: int, queue: list[int]) -> None:
        if not self.plan.ring_full or g != self.host.captured or not queue:
            return
        req = self.host.units.rows[queue[0]][U_REQ]
        d = self.plan.ring_full.pop(req, None) if req >= 0 else None
        if d is None:
            return
        guest = self.host.guests[g].vcpu     # busy with other work, posting no requests
        guest.acquire(t, guest.pcpu.id, app=True)
        guest.hold(t + d + 30 * US, app=True)
        self.ring_stall[g] = (t, t + d)
        self._add("ring_full", "ring", ["ring"], "ring_full", t, t + d, (g, 0), req)

    def guest_preempt_after(self, guest: Guest, r: int, u: int,
                            delivered: dict[int, int]) -> None:
        """After netfront delivered a batch of the response's (the last one, or half the
        time an earlier one): the guest vCPU is preempted for ~100 ms."""
        if not guest.logged or r not in self.plan.guest_preempt:
            return
        last = guest.last_unit_of(u)
        if not (last or self.host.rnd.random() < 0.5):
            return
        g = guest.vcpu
        ps = g.busy_until - 200
        d = self.plan.guest_preempt.pop(r)
        who = g.pcpu.bg
        g.preempt(ps, ps + d, who)
        cause = "lost_records" if r in self.plan.blind_spot else "vcpu_runnable"
        self._add("guest_preempt", "socket_read", ["socket_read"] if last else
                  ["socket_read", "remap"], cause, ps, ps + d, who, r)
        for c in delivered:    # the stack finishes its work after the preemption
            flow = self.host.flows[c]
            flow.delivered = [(ts + d if ts > ps else ts, e) for ts, e in flow.delivered]
            delivered[c] = min(ts for ts, e in flow.delivered if e > flow.consumed)

    def app_stall(self, guest: Guest, t: int) -> int | None:
        stall = self.plan.app_stall.pop(guest.req, None) if guest.logged else None
        if stall is None:
            return None
        self._add("app_stall", "socket_read", ["socket_read"], "vcpu_running", t, t + stall,
                  (guest.domid, 0), guest.req)
        return t + stall

    # ---------------------------------------------------------------- transmit
    def tx_dom0_stall_at(self, g: int, v: Vcpu, row: int, t_guest: int, kick: int,
                         gcpu: int) -> tuple[int, int] | None:
        if not self.tx_dom0 or g != self.host.captured:
            return None
        req = self.host.rows.rows[row][R_REQ]
        d = self.tx_dom0.pop(req, None) if req >= 0 else None
        if d is None:
            return None
        who = v.pcpu.bg
        if v.running_at(t_guest - 10 * US):
            ps = max(v.run_start + US, t_guest - 3 * US)
            v.preempt(ps, t_guest + d, who)
            run, start, _ = v.acquire(kick, gcpu, ref=t_guest)
            self._add("tx_dom0_stall", "vmm", ["vmm"], "dom0_runnable", ps, t_guest + d, who,
                      req, "tx")
            return run, start
        hs = max(t_guest - self.host.lat(200 * US), v.since + 10 * US,
                 v.pcpu.last_end + 10 * US)
        if hs >= t_guest - US:
            return None
        v.settle(kick)  # what starve does first: the state at the kick
        if v.state != RUNSTATE_BLOCKED:  # woken already, its run still to come: none to starve
            return None
        run, start, _ = v.starve(kick, gcpu, hs, kick + d, who, 0)
        self._add("tx_dom0_stall", "vmm", ["vmm"], "dom0_runnable", hs, kick + d, who, req,
                  "tx")
        return run, start

    def socket_write_stall(self, guest: Guest, r: int, entry: int) -> int | None:
        """The guest vCPU is preempted right after the write began: returns ``guest``."""
        d = self.sock_write.pop(r, None) if guest.logged else None
        if d is None:
            return None
        g = guest.vcpu
        ps = entry + self.host.lat(2 * US)
        who = g.pcpu.bg
        g.hold(ps + US, app=True)      # the application is in its write
        g.preempt(ps, ps + d, who)
        self._add("guest_preempt", "socket_write", ["socket_write"], "vcpu_runnable", ps,
                  ps + d, who, r, "tx")
        return ps + d + self.host.lat(5 * US)
