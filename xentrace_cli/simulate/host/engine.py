"""The event loop of the realistic host: a time-ordered heap, delays, and what the loop logs.

Everything the loop writes is compact: hypervisor records that the path itself causes (NIC
interrupts, grant copies, event injections) go to ``raw`` as rows of :data:`RAW_WIDTH`
integers, and scheduler events (a vCPU woken, a pCPU switching, a vCPU blocking) go to
``sched`` as rows of :data:`SCHED_WIDTH` integers. :mod:`.xensched` later expands each
scheduler event into the records Xen's credit2 scheduler writes around it, in one vectorized
pass, so the loop pays one append per scheduler event, not a dozen.

Times are int64 nanoseconds of true time (= dom0's clock).
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from collections.abc import Callable
from heapq import heappush as _heappush
from typing import Any

import numpy as np

US = 1_000
MS = 1_000_000
U32 = 0xFFFFFFFF
#: Raw record row: cpu, true time, event, timestamped, n words, w0..w6.
RAW_WIDTH = 12
_RAW_PAD = tuple((0,) * (7 - n) for n in range(8))
#: Scheduler event row: kind, pcpu, time, then five kind-specific integers (see SchedKind).
SCHED_WIDTH = 8
#: Normal draws per block for :meth:`Engine.lat`.
LAT_BLOCK = 1 << 16


class SchedKind:
    """Kinds of scheduler events (first column of a ``sched`` row).

    - WAKE ``(pcpu = waker's pCPU, t, domid, vcpu, target pCPU, -, -)``: WAKE and
      blocked→runnable at ``t`` exactly, credit2's wake records just after.
    - SWITCH ``(pcpu, t, prev, prev_new_state, next, ran_ns, waited_ns)`` with ``prev`` and
      ``next`` packed as ``domid << 16 | vcpu`` (-1 = the pCPU's idle vCPU): the non-idle
      vCPU's RUNSTATE_CHANGE at ``t`` exactly (next's runnable→running, else prev's change),
      the scheduler's records before it and ``context_saved``'s after it.
    - BLOCK ``(pcpu, t, domid, vcpu, -, -, -)``: the BLOCK record (the vCPU's SCHEDOP_block),
      written before the switch away from it.
    """

    WAKE = 0
    SWITCH = 1
    BLOCK = 2


def pack(domid: int, vcpu: int) -> int:
    """A vCPU as one integer (the layout of RUNSTATE_CHANGE's word)."""
    return domid << 16 | vcpu


class Engine:
    """The heap, the random sources and the logs every component of the host writes to."""

    def __init__(self, t_begin: int, seed: int, sigma: float) -> None:
        self.t_begin = t_begin
        self.now = t_begin
        self.t_end = t_begin
        self.rnd = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        self._sigma = sigma
        self._z: list[float] = []
        self._m: list[float] = []
        self._zi = LAT_BLOCK
        self.heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self.seq = 0
        self.raw = array("q")
        self.sched = array("q")

    def lat(self, median: float, sigma: float | None = None) -> int:
        """A lognormal delay (ns) around ``median``, capped at 20× the median."""
        i = self._zi
        self._zi = i + 1
        if i < LAT_BLOCK:
            if sigma is None:
                v = int(median * self._m[i])
            else:
                v = int(median * min(20.0, math.exp(sigma * self._z[i])))
            return v if v > 1 else 1
        z = self._np_rng.standard_normal(LAT_BLOCK)
        self._z = z.tolist()
        self._m = np.minimum(20.0, np.exp(self._sigma * z)).tolist()
        self._zi = 0
        return self.lat(median, sigma)

    def at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(t, *args)`` at time ``t`` (ties in the order they were scheduled)."""
        self.seq = seq = self.seq + 1
        _heappush(self.heap, (t, seq, fn, args))

    def loop(self) -> None:
        """Run the heap empty."""
        heap, pop = self.heap, heapq.heappop
        while heap:
            t, _, fn, args = pop(heap)
            self.now = t
            fn(t, *args)

    def rec(self, cpu: int, t: int, event: int, words: tuple[int, ...], ts: bool = True) -> None:
        """One hypervisor record the path causes (up to seven words)."""
        self.raw.extend((cpu, t, event, ts, len(words), *words, *_RAW_PAD[len(words)]))

    def wake(self, pcpu: int, t: int, domid: int, vcpu: int, target: int) -> None:
        self.sched.extend((SchedKind.WAKE, pcpu, t, domid, vcpu, target, 0, 0))

    def switch(self, pcpu: int, t: int, prev: int, prev_state: int, nxt: int, ran: int,
               waited: int) -> None:
        self.sched.extend((SchedKind.SWITCH, pcpu, t, prev, prev_state, nxt, ran, waited))

    def block(self, pcpu: int, t: int, domid: int, vcpu: int) -> None:
        self.sched.extend((SchedKind.BLOCK, pcpu, t, domid, vcpu, 0, 0, 0))

    def raw_rows(self) -> np.ndarray:
        return np.frombuffer(self.raw, dtype=np.int64).reshape(-1, RAW_WIDTH)

    def sched_rows(self) -> np.ndarray:
        return np.frombuffer(self.sched, dtype=np.int64).reshape(-1, SCHED_WIDTH)
