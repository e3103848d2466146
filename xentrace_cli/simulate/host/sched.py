"""Host and vCPU scheduling: who holds each pCPU, and when a vCPU runs after work arrives.

Each pCPU runs at most one vCPU that the network path uses (a dom0 vCPU or a guest's) and,
in its gaps, vCPUs of other domains. A :class:`Vcpu` serves its work in order, blocks when
idle and is woken by the next piece of work. Three things make a real host differ from a
picture where a woken vCPU simply runs (docs/simulator.md gives the sources):

- a dom0 vCPU also does unrelated work (block back-end, toolstack, timers): when network work
  arrives it may already be running (no WAKE at all), or woken for that other work and still
  runnable behind another domain;
- another domain's vCPU may hold the pCPU when a vCPU wakes: it runs when that one blocks
  (credit2 keeps the current vCPU for its rate limit, 1 ms by default), tens to hundreds of µs
  later;
- the scheduler writes its records around every switch (:mod:`.xensched`).

Those states are drawn when network work finds the vCPU blocked, and written as events that
happened before it — never before the vCPU's previous block or the pCPU's previous holder —
so the timeline stays one consistent history. The gaps that remain are filled afterwards with
unrelated work (:mod:`.background`).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

from ...xen_events import RUNSTATE_BLOCKED, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING
from .engine import US, pack

if TYPE_CHECKING:
    from .sim import HostSim

#: From the end of a vCPU's work to its RUNSTATE_CHANGE to blocked (BLOCK record, then
#: csched2_schedule, then the switch: ~4 µs in corpus/xentrace).
BLOCK_LAG = 4_500
#: From the end of the work to the BLOCK record.
BLOCK_AT = 500
#: A woken vCPU never runs sooner than this after its WAKE (the IPI and csched2_schedule).
WAKE_FLOOR = 3 * US
#: Longest a woken vCPU waits behind another domain's: credit2 lets the current vCPU run its
#: rate limit (sched_ratelimit_us, 1 ms by default, less CSCHED2_RATELIMIT_TICKLE_TOLERANCE
#: 50 µs) before the waker with more credit preempts it.
MAX_HOLD = 950 * US
IDLE = -1


class Pcpu:
    """A physical CPU: until when its timeline is taken, and the intervals it was held."""

    __slots__ = ("id", "last_end", "held", "bg")

    def __init__(self, pcpu: int, t_begin: int, bg: tuple[int, int]) -> None:
        self.id = pcpu
        self.last_end = t_begin
        #: (start, end) pairs this pCPU was taken (a vCPU's wake to its block, another
        #: domain's burst drawn by the loop): background work only goes in between
        self.held = array("q")
        self.bg = bg


class Vcpu:
    """A vCPU pinned to one pCPU: serves work in order, blocks when idle."""

    def __init__(self, host: HostSim, domid: int, vcpu: int, pcpu: Pcpu, *,
                 unrelated: bool) -> None:
        self.host, self.domid, self.vcpu, self.pcpu = host, domid, vcpu, pcpu
        self.packed = pack(domid, vcpu)
        self.unrelated = unrelated
        self.state = RUNSTATE_BLOCKED
        self.since = host.t_begin          # block time while blocked
        self.run_start = host.t_begin      # start of the current run
        self.reserved = host.t_begin       # start of the pCPU's hold for this run
        self.busy_until = host.t_begin - 1
        self.kernel_free = host.t_begin
        self.app_free = host.t_begin
        self.windows: list[tuple[int, int]] = []   # preempted intervals

    # ---------------------------------------------------------------- state
    def settle(self, t: int) -> None:
        """Apply the block that happened when the vCPU ran out of work before ``t``."""
        if self.state == RUNSTATE_RUNNING and t > self.busy_until + BLOCK_LAG:
            b = self.busy_until + BLOCK_LAG
            eng, pc = self.host, self.pcpu
            eng.block(pc.id, self.busy_until + BLOCK_AT, self.domid, self.vcpu)
            eng.switch(pc.id, b, self.packed, RUNSTATE_BLOCKED, IDLE, b - self.run_start, 0)
            self.state, self.since = RUNSTATE_BLOCKED, b
            pc.held.extend((self.reserved, b))
            pc.last_end = b

    def running_at(self, t: int) -> bool:
        self.settle(t)
        return self.state == RUNSTATE_RUNNING and self.run_start <= t

    def hold(self, end: int, *, app: bool = False) -> None:
        """The vCPU keeps running until at least ``end`` (kernel or application work)."""
        if end > self.busy_until:
            self.busy_until = end
        if app:
            if end > self.app_free:
                self.app_free = end
        elif end > self.kernel_free:
            self.kernel_free = end

    def acquire(self, t: int, waker: int, *, app: bool = False, not_before: int = 0,
                ref: int | None = None) -> tuple[int, int, int | None]:
        """Work arrives at ``t``, signalled from pCPU ``waker``.

        Returns (the start of the vCPU's current run, when the work starts, the WAKE time
        or None). ``not_before``: the vCPU may not start running before it (the interrupt
        handler that woke it has not returned yet). ``ref``: a past state drawn for a
        blocked vCPU begins before it.
        """
        self.settle(t)
        free = self.app_free if app else self.kernel_free
        for ps, pe in self.windows:
            if ps <= t < pe:
                return self.run_start, max(pe, free), None
        if self.state == RUNSTATE_RUNNING:
            if t < self.run_start:        # woken earlier, still runnable
                return self.run_start, max(self.run_start, free), None
            return self.run_start, (free if free > t else t), None
        return self._wake(t, waker, max(not_before, t), t if ref is None else ref)

    # ---------------------------------------------------------------- waking
    def _wake(self, t: int, waker: int, not_before: int, ref: int) -> tuple[int, int,
                                                                             int | None]:
        host, p = self.host, self.host.p
        room = min(t, ref) - max(self.since, self.pcpu.last_end)
        r = host.rnd.random()
        if self.unrelated and r < p.dom0_running and room > 40 * US:
            self._already_running(t, ref, room)
            return self.run_start, t, None
        if self.unrelated and r < p.dom0_running + p.dom0_runnable and room > 80 * US:
            run = self._woken_behind(t, ref, room, not_before)
            return run, run, None
        host.wake(waker, t, self.domid, self.vcpu, self.pcpu.id)
        floor = WAKE_FLOOR + (US if waker == self.pcpu.id else 0)
        run = max(t + floor + host.lat(p.sched_median), not_before)
        if host.rnd.random() < p.bg_hold and room > 30 * US:
            bs = min(t, ref) - int(host.rnd.uniform(5 * US, min(room - 10 * US, 400 * US)))
            be = max(run, t + min(host.lat(p.bg_wait_median, 0.9), MAX_HOLD))
            self._behind(bs, be, t)
            return be, be, t
        self._switch_in(run, t, t)
        return run, run, t

    def _switch_in(self, run: int, woke: int, reserved: int) -> None:
        """The idle pCPU switches to this vCPU at ``run``."""
        pc = self.pcpu
        self.host.switch(pc.id, run, IDLE, RUNSTATE_RUNNABLE, self.packed, run - pc.last_end,
                         run - woke)
        self._running(run, reserved)

    def _running(self, run: int, reserved: int) -> None:
        self.state, self.run_start, self.reserved = RUNSTATE_RUNNING, run, reserved
        self.busy_until = self.kernel_free = self.app_free = run

    def _behind(self, bs: int, be: int, woke: int, who: tuple[int, int] | None = None) -> None:
        """Another domain's vCPU runs on this pCPU over [bs, be); this vCPU, woken at
        ``woke``, runs when it blocks."""
        host, pc = self.host, self.pcpu
        d, v = who if who is not None else pc.bg
        host.wake(pc.id, bs - host.lat(3 * US), d, v, pc.id)
        host.switch(pc.id, bs, IDLE, RUNSTATE_RUNNABLE, pack(d, v), bs - pc.last_end,
                    WAKE_FLOOR)
        host.block(pc.id, be - BLOCK_LAG + BLOCK_AT, d, v)
        host.switch(pc.id, be, pack(d, v), RUNSTATE_BLOCKED, self.packed, be - bs, be - woke)
        self._running(be, bs)

    def _already_running(self, t: int, ref: int, room: int) -> None:
        """dom0 unrelated work began before ``ref`` and still runs at ``t``."""
        host, p = self.host, self.host.p
        ago = min(host.lat(p.unrelated_ago_median), room - 20 * US)
        run = min(t, ref) - ago
        woke = run - WAKE_FLOOR - host.lat(p.sched_median * 0.5)
        host.background.unrelated_wake(self, woke)
        self._switch_in(run, woke, woke)
        self.busy_until = t + host.lat(p.unrelated_left_median)
        self.kernel_free = self.app_free = t

    def _woken_behind(self, t: int, ref: int, room: int, not_before: int) -> int:
        """Woken for unrelated work before ``ref``, still runnable behind another domain."""
        host, p = self.host, self.host.p
        lo = min(t, ref)
        bs = lo - int(host.rnd.uniform(40 * US, min(room - 20 * US, 500 * US)))
        woke = bs + int(host.rnd.uniform(5 * US, lo - bs - 5 * US))
        host.background.unrelated_wake(self, woke)
        be = max(t + min(host.lat(p.bg_wait_median, 0.9), MAX_HOLD), not_before)
        self._behind(bs, be, woke)
        return be

    # ---------------------------------------------------------------- faults
    def preempt(self, ps: int, pe: int, who: tuple[int, int]) -> None:
        """Another domain's vCPU takes this pCPU during [ps, pe) while this one runs."""
        host, pc = self.host, self.pcpu
        self.settle(ps)
        assert self.state == RUNSTATE_RUNNING, "preempt needs a running vCPU"
        woke = ps - host.lat(3 * US)
        host.wake(pc.id, woke, who[0], who[1], pc.id)
        host.switch(pc.id, ps, self.packed, RUNSTATE_RUNNABLE, pack(*who), ps - self.run_start,
                    ps - woke)
        host.block(pc.id, pe - BLOCK_LAG + BLOCK_AT, who[0], who[1])
        host.switch(pc.id, pe, pack(*who), RUNSTATE_BLOCKED, self.packed, pe - ps, pe - ps)
        d = pe - ps
        self.busy_until = max(self.busy_until + d if self.busy_until >= ps else 0, pe + 2 * US)
        if self.kernel_free > ps:
            self.kernel_free += d
        if self.app_free > ps:
            self.app_free += d
        self.windows.append((ps, pe))
        self.run_start = pe

    def starve(self, t: int, waker: int, hs: int, he: int, who: tuple[int, int],
               not_before: int) -> tuple[int, int, int]:
        """Blocked, woken at ``t`` while ``who`` holds the pCPU over [hs, he) and is not
        preempted: runnable until ``he``."""
        self.settle(t)
        assert self.state == RUNSTATE_BLOCKED, "starve needs a blocked vCPU"
        self.host.wake(waker, t, self.domid, self.vcpu, self.pcpu.id)
        be = max(he, not_before)
        self._behind(hs, be, t, who)
        return be, be, t


