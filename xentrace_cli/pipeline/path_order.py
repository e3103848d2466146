"""Path order: a packet's checkpoints follow each other along its path, within the clocks.

Every stage is the difference of two checkpoints on one path, so none can be negative beyond
the alignment's uncertainty (DESIGN.md). A pair of checkpoints out of order says one of them
was taken from a record of another packet's path. The checkpoints the analysis *chose* from
the trace (``irq``, ``dom0_run``, ``copy``, ``guest_wake``, ``guest_run``) are then emptied for
that packet, with the ones derived from them; those *measured* by a capture or the socket log
are kept. :func:`enforce_path_order` does that and counts why, for the report;
:func:`guard_intervals` is the last line: an interval still below −(its uncertainty + the
timestamps' resolution) is emptied and counted, never printed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping

import numpy as np

from ..background import Background

NA_NS = np.iinfo(np.int64).min

#: Checkpoints in path order, per direction (DESIGN.md).
ORDER: dict[str, tuple[str, ...]] = {
    "rx": ("irq", "dom0_run", "phys", "backend", "copy", "guest_wake", "guest_run", "guest",
           "read"),
    "tx": ("write", "guest", "dom0_run", "copy", "backend", "phys"),
}
#: Checkpoints chosen from trace records (the others are measured).
CHOSEN: frozenset[str] = frozenset({"irq", "dom0_run", "copy", "guest_wake", "guest_run"})
#: Chosen checkpoints that stand or fall together, per direction: one choice made them.
TOGETHER: dict[str, dict[str, tuple[str, ...]]] = {
    "rx": {"irq": ("dom0_run",), "dom0_run": ("irq",),
           "copy": ("guest_wake", "guest_run")},
    "tx": {"copy": ("dom0_run",)},
}
#: Timestamps of captures and strace logs are whole microseconds (truncated): two of them
#: differ from the true interval by less than this.
RESOLUTION_NS = 1_000


@dataclasses.dataclass
class Unresolved:
    """Why checkpoints were emptied: (direction, emptied, against) → rows."""

    counts: dict[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)

    def add(self, direction: str, emptied: str, against: str, rows: int) -> None:
        if rows:
            key = (direction, emptied, against)
            self.counts[key] = self.counts.get(key, 0) + rows

    def notes(self) -> list[str]:
        """One sentence per reason, for the report."""
        out = []
        for (way, emptied, against), rows in sorted(self.counts.items()):
            kind = "received" if way == "rx" else "sent"
            out.append(f"{rows} {kind} segments: {emptied} left empty (with what rests on it): "
                       f"the trace record chosen for it is out of path order with {against} "
                       "beyond the clocks' uncertainty, so it was not on this packet's path; "
                       "the stages it bounds are not measured for them.")
        return out


def enforce_path_order(checkpoints: dict[str, np.ndarray], ways: Mapping[str, np.ndarray],
                       tolerance_ns: dict[str, float], clock_of: dict[str, str]
                       ) -> tuple[dict[str, np.ndarray], Unresolved]:
    """Checkpoints with every chosen one out of path order emptied (``NA_NS``): the chosen
    ones copies, the measured ones (never emptied) the arrays given.

    ``ways``: per direction (``rx``, ``tx``), its rows (a boolean mask: the direction column
    compared once by the caller, not per call);
    ``tolerance_ns``: per clock (``dom0``, ``guest``, ``tsc``, ``socket``), how far its times
    may be off dom0's (0 for dom0; inf when unbounded: then its pairs are not checked);
    ``clock_of``: the clock of each checkpoint.

    The directions are apart when their rows are (the usual): the second is then checked in
    a worker thread beside the first (numpy lets go of the GIL), each writing its own rows.
    """
    out = {k: v.copy() if k in CHOSEN else v for k, v in checkpoints.items()}
    unresolved = Unresolved()
    jobs = []
    for way, order in ORDER.items():
        present = [p for p in order if p in out]
        pairs = [(a, b, allowed) for i, a in enumerate(present) for b in present[i + 1:]
                 if (a in CHOSEN or b in CHOSEN)
                 and np.isfinite(allowed := _allowed(a, b, tolerance_ns, clock_of))]
        rows = np.flatnonzero(ways[way])
        if pairs and rows.size:
            jobs.append(functools.partial(_one_way, out, way, present, pairs, rows))
    aside = Background(jobs.pop()) if len(jobs) == 2 and not (
        ways["rx"] & ways["tx"]).any() else None
    try:
        found = [reason for job in jobs for reason in job()]
    finally:  # (no worker outlives the call, also when this thread's half raised)
        if aside is not None:
            aside.wait()
    found += aside.result() if aside is not None else []
    for reason in found:
        unresolved.add(*reason)
    return out, unresolved


def _one_way(out: dict[str, np.ndarray], way: str, present: list[str],
             pairs: list[tuple[str, str, float]], rows: np.ndarray
             ) -> list[tuple[str, str, str, int]]:
    """:func:`enforce_path_order` on one direction's ``rows`` of ``out`` (its chosen
    checkpoints emptied there, in place): why, as :meth:`Unresolved.add`'s arguments."""
    found = []
    # the direction's rows of each checkpoint, compared (and emptied) there, then put
    # back: half the rows of every comparison, no mask of the direction in each
    mine = {p: out[p][rows] for p in present}
    # which rows hold each checkpoint: found once, kept up to date as rows are emptied
    held = {p: mine[p] != NA_NS for p in present}
    for a, b, allowed in pairs:
        ta, tb = mine[a], mine[b]
        bad = held[a] & held[b]
        bad &= _later(ta, tb, allowed)
        if bad.any():
            emptied = _empty(mine, way, a if a in CHOSEN else b, bad, held)
            emptied += [] if (a in CHOSEN) != (b in CHOSEN) else _empty(mine, way, b, bad,
                                                                          held)
            found.append((way, "/".join(sorted(set(emptied))), b if a in CHOSEN else a,
                          int(bad.sum())))
    for p in present:
        if p in CHOSEN:  # (the measured ones are never emptied)
            out[p][rows] = mine[p]
    return found


def _allowed(a: str, b: str, tolerance_ns: dict[str, float], clock_of: dict[str, str]
             ) -> float:
    """How far ``a`` may come after ``b`` by the clocks alone."""
    ca, cb = clock_of.get(a, "dom0"), clock_of.get(b, "dom0")
    if ca == cb:
        return float(RESOLUTION_NS)
    return tolerance_ns.get(ca, 0.0) + tolerance_ns.get(cb, 0.0) + RESOLUTION_NS


def _later(ta: np.ndarray, tb: np.ndarray, allowed: float) -> np.ndarray:
    """``ta - tb > allowed`` (int64 ns): against ``floor(allowed)`` in integers (for an
    integer, the same test) while that is exact, no float copy of the differences. Where
    either is not measured the difference is meaningless (wrapped): the caller masks it."""
    with np.errstate(over="ignore"):
        diff = ta - tb
    if abs(allowed) < 2.0 ** 52:
        return diff > np.int64(math.floor(allowed))
    return diff > allowed


def _empty(out: dict[str, np.ndarray], way: str, point: str, rows: np.ndarray,
           held: dict[str, np.ndarray] | None = None) -> list[str]:
    """Empty ``point`` (and the checkpoints that stand with it) on ``rows`` (and mark them
    not ``held``)."""
    names = [point, *TOGETHER[way].get(point, ())]
    for name in names:
        if name in out:
            out[name][rows] = NA_NS
            if held is not None and name in held:
                held[name][rows] = False
    return [point]


def guard_intervals(values: np.ndarray, uncertainty_us: np.ndarray | None = None,
                    limit: np.ndarray | None = None) -> np.ndarray:
    """Mask of interval values below −(uncertainty + resolution): impossible, to be emptied.
    ``limit``: that bound (:func:`guard_limit` of the uncertainty), when the caller guards
    several intervals of the same rows."""
    if limit is None:
        limit = guard_limit(uncertainty_us)
    return np.isfinite(values) & (values < limit)


def guard_limit(uncertainty_us: np.ndarray | None) -> np.ndarray:
    """−(uncertainty + resolution), µs: the least an interval may be (:func:`guard_intervals`)."""
    return -(np.nan_to_num(np.asarray(uncertainty_us, dtype=float), nan=0.0)
             + RESOLUTION_NS / 1e3)
