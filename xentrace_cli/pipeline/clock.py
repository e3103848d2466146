"""Clock alignment: offset and drift between clock domains, and xentrace TSC to dom0 time.

Three clock domains meet in an analysis (DESIGN.md, "Clock domains and alignment"): dom0's clock
(the reference timeline of the dom0 captures), the guest's clock (guest capture, socket log) and
the per-CPU cycle counter of the xentrace records. This module defines

- :class:`ClockFit` and :func:`fit_offset_drift`: the linear map other clock → reference clock
  from causality alone. Each packet seen on both clocks says "received no earlier than sent";
  packets in both directions fence the line from both sides. The feasible lines form a convex
  polygon (Duda; Poirier & Dagenais; Trace Compass' convex-hull synchronization); the estimate
  is the line through the middle of the feasible band at both ends of the data, and its
  uncertainty is a true bound: the half-width of that band at the worse end.
- :class:`TscFit` and :func:`fit_tsc`: TSC cycles → dom0 nanoseconds, from the NIC interrupts
  (each precedes the dom0 capture of the frames it delivered) and optionally the grant copies
  (each follows the backend capture of its data and precedes the guest capture). The CPU
  frequency is estimated when not given, by lining up the long idle gaps of both sequences.

Only numpy: the data are reduced to their convex hulls (a vectorized quickhull), and the small
linear programme over the hull vertices is solved exactly along its piecewise-linear envelope.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from xentrace_cli.groups import ranges, unique
from xentrace_cli.units import format_duration

# --- constants -------------------------------------------------------------------------------

#: |drift| assumed possible between two computer clocks when the data cannot tell (NTP's limit
#: on frequency correction). Used to fix the drift at 0 and still give an honest bound.
MAX_PLAUSIBLE_DRIFT_PPM = 500.0
#: Slopes searched at all: beyond 1 % the "clock" is something else.
HARD_DRIFT_LIMIT_PPM = 10_000.0
#: A one-sided fit estimates drift only over at least this span of data.
MIN_ONE_SIDED_DRIFT_SPAN_NS = 1_000_000_000

#: Frames closer than this to the previous frame belong to the same interrupt's burst.
BURST_GAP_NS = 30_000
#: An interrupt is matched to a burst when the burst starts within ± this of its predicted time.
IRQ_MATCH_WINDOW_NS = 100_000
#: How many of the longest idle gaps of each sequence are tried when lining them up.
N_BIG_GAPS = 40
#: Stray interrupts allowed inside one idle period when lining the gaps up.
MAX_SKIP = 3
#: An idle gap matching more interrupt gaps than this (a periodic interrupt) is not used.
MAX_GAP_CANDIDATES = 20_000
#: Slack (ns) allowed between the length of an idle gap seen in the trace and in the capture.
GAP_JITTER_NS = 100_000
#: Plausible TSC frequencies when none is given.
MIN_CPU_HZ, MAX_CPU_HZ = 0.5e9, 10e9
#: How much wider than a gap pair's lengths allow its window of scales is taken when finding
#: the pairs whose windows meet (:func:`_pair_scales`): a relative margin far above rounding.
WINDOW_SLACK = 1e-9
#: Candidate pairs tested at once by :func:`_pair_scales` (bounds its memory).
PAIR_BLOCK = 2_000_000
#: Fewest unambiguous interrupt/burst pairs to bound the offset with (else all pairs are used).
MIN_CLEAN_PAIRS = 20
#: Below this fraction of bursts matched, the alignment is declared failed.
MIN_MATCHED_FRACTION = 0.25
#: A given CPU frequency is questioned when the delays drift by more than this over the trace.
FREQ_CHECK_NS = 10_000
#: A given CPU frequency is refined within ± this (ppm): ``xl info`` gives whole MHz.
REFINE_PPM = 1000.0
#: Fraction of the lowest irq→frame delays dropped as mismatches before the causal bound.
IRQ_LOW_TRIM = 0.002
#: An interrupt → burst delay more than this many (median − 10th percentile) spreads below
#: the 10th percentile is a mismatched pair, not a fast delivery.
LOW_DELAY_SPREADS = 3.0

QUALITIES = ("bounded", "one-sided", "inconsistent", "identity", "none")

IntArray = npt.NDArray[np.int64]


# --- convex hulls ----------------------------------------------------------------------------

def _upper_hull(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (``u`` ascending) of the upper convex hull of the points ``(u, v)``.

    A quickhull done a level at a time over all segments at once: each round keeps the points
    above their segment's chord and adds, per segment, the one farthest above. Points are
    pre-sorted by ``u`` so that the segments' candidates come in contiguous groups.
    """
    if u.size == 0:
        return u[:0], v[:0]
    order = np.argsort(u, kind="stable")
    u, v = u[order], v[order]
    u_lo, u_hi = u[0], u[-1]
    v_lo = v[u == u_lo].max()
    if u_lo == u_hi:
        return np.array([u_lo]), np.array([v_lo])
    v_hi = v[u == u_hi].max()
    hull_u, hull_v = np.array([u_lo, u_hi]), np.array([v_lo, v_hi])
    inside = (u > u_lo) & (u < u_hi)
    cu, cv = u[inside], v[inside]
    while cu.size:
        seg = np.searchsorted(hull_u, cu, side="right") - 1
        slope = (hull_v[seg + 1] - hull_v[seg]) / (hull_u[seg + 1] - hull_u[seg])
        height = cv - (hull_v[seg] + slope * (cu - hull_u[seg]))
        above = height > 0
        if not above.any():
            break
        cu, cv, seg, height = cu[above], cv[above], seg[above], height[above]
        # per segment (contiguous groups, cu sorted) the farthest point becomes a vertex
        starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
        group_max = np.maximum.reduceat(height, starts)
        counts = np.diff(np.r_[starts, seg.size])
        is_max = np.flatnonzero(height == np.repeat(group_max, counts))
        _, first = np.unique(seg[is_max], return_index=True)
        new = is_max[first]
        hull_u = np.concatenate([hull_u, cu[new]])
        hull_v = np.concatenate([hull_v, cv[new]])
        order = np.argsort(hull_u, kind="stable")
        hull_u, hull_v = hull_u[order], hull_v[order]
        keep = np.ones(cu.size, bool)
        keep[new] = False
        cu, cv = cu[keep], cv[keep]
    return hull_u, hull_v


def _finite(x: float) -> float | None:
    """``x``, or None where JSON has no number for it (infinity, NaN)."""
    return float(x) if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class _Envelope:
    """One side of the feasible region: the line ``c + b·u`` must stay above (``side`` +1) or
    below (-1) every point; ``at(b)`` is the tightest intercept ``c`` for slope ``b``."""

    u: np.ndarray
    v: np.ndarray
    slopes: np.ndarray
    side: int

    @classmethod
    def build(cls, u: np.ndarray, v: np.ndarray, side: int) -> _Envelope:
        hu, hv = _upper_hull(u, v * side)
        hv = hv * side
        slopes = np.diff(hv) / np.diff(hu) if hu.size > 1 else np.empty(0)
        return cls(hu, hv, slopes, side)

    def at(self, b: npt.ArrayLike) -> Any:
        """max (side +1) or min (side -1) over the points of ``v - b·u``."""
        b = np.asarray(b, float)
        if self.side > 0:     # upper hull: edge slopes decrease left to right
            k = np.searchsorted(-self.slopes, -b, side="left")
        else:                 # lower hull: edge slopes increase
            k = np.searchsorted(self.slopes, b, side="left")
        return self.v[k] - b * self.u[k]

    def supporting_slope(self, u0: float) -> float:
        """Slope of the hull edge above (or below) ``u0``: the line tightest around ``u0``."""
        if self.slopes.size == 0:
            return 0.0
        k = int(np.clip(np.searchsorted(self.u, u0) - 1, 0, self.slopes.size - 1))
        return float(self.slopes[k])


# --- the linear programme over the two envelopes ---------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Region:
    """Feasible (slope, intercept) lines within a slope window, or the least-violating one."""

    feasible: bool
    b_lo: float           # feasible slope range (or the best slope, twice, when infeasible)
    b_hi: float
    vertices: np.ndarray  # (k, 2): slope, intercept of the polygon's corners
    gap: float            # max over slopes of U - L (< 0: the hulls overlap by -gap)
    best_b: float


def _solve(lower: _Envelope, upper: _Envelope, w_lo: float, w_hi: float) -> _Region:
    """The lines ``c + b·u`` with ``lower.at(b) <= c <= upper.at(b)``, ``w_lo <= b <= w_hi``.

    ``U(b) - L(b)`` is concave and piecewise linear with corners at the hulls' edge slopes,
    so evaluating it there finds its maximum and the ends of the feasible slope interval
    exactly.
    """
    knots = np.concatenate([lower.slopes, upper.slopes, [w_lo, w_hi, 0.0]])
    knots = np.unique(knots[(knots >= w_lo) & (knots <= w_hi)])
    gap = upper.at(knots) - lower.at(knots)
    i_best = int(np.argmax(gap))
    ties = np.flatnonzero(gap >= gap[i_best] - 1e-9 * max(1.0, abs(gap[i_best])))
    i_best = int(ties[np.argmin(np.abs(knots[ties]))])   # among equals, the drift nearest 0
    best_b = float(knots[i_best])
    if gap[i_best] < 0:
        c = 0.5 * (lower.at(best_b) + upper.at(best_b))
        return _Region(False, best_b, best_b, np.array([[best_b, c]]), float(gap[i_best]),
                       best_b)
    ok = np.flatnonzero(gap >= 0)
    i0, i1 = int(ok[0]), int(ok[-1])

    def zero(i_out: int, i_in: int) -> float:
        g_out, g_in = gap[i_out], gap[i_in]
        return float(knots[i_in] + (knots[i_out] - knots[i_in]) * g_in / (g_in - g_out))

    b_lo = float(knots[i0]) if i0 == 0 else zero(i0 - 1, i0)
    b_hi = float(knots[i1]) if i1 == knots.size - 1 else zero(i1 + 1, i1)
    corners = np.unique(np.r_[b_lo, knots[i0:i1 + 1], b_hi])
    vertices = np.concatenate([
        np.column_stack([corners, lower.at(corners)]),
        np.column_stack([corners, upper.at(corners)]),
    ])
    return _Region(True, b_lo, b_hi, vertices, float(gap[i_best]), best_b)


def _worst_deviation(vertices: np.ndarray, b: float, c: float, u_ends: tuple[float, float]
                     ) -> float:
    """Largest |feasible line - estimate| over the data span (at its ends, by convexity)."""
    dev = 0.0
    for u in u_ends:
        dev = max(dev, float(np.max(np.abs(vertices[:, 1] + vertices[:, 0] * u - (c + b * u)))))
    return dev


# --- ClockFit --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClockFit:
    """The map other clock → reference clock: ``t_ref = t + offset + drift·(t - ref_ns)``."""

    offset_ns: float
    """Reference minus other clock at ``ref_ns``."""
    drift_ppm: float
    """How much faster the reference clock runs, in parts per million of the other's."""
    ref_ns: int
    """Point of the other clock the offset is given at (the middle of the data)."""
    quality: str
    """``bounded`` | ``one-sided`` | ``inconsistent`` | ``identity`` | ``none``."""
    uncertainty_ns: float
    """Largest distance, over the span of the data, from the estimate to any line the data
    allow: the half-width of the feasible band at its wider end (the estimate runs through the
    band's middle at both ends). inf when one-sided, inconsistent or none."""
    n_forward: int
    """Pairs sent on the reference clock, received on the other."""
    n_backward: int
    """Pairs sent on the other clock, received on the reference."""
    overlap_ns: float = 0.0
    """For ``inconsistent``: how far the two directions' constraints cross (0 otherwise)."""
    drift_range_ppm: tuple[float, float] | None = None
    """Drifts the data allow (``None`` when not bounded by them)."""
    drift_fixed: bool = False
    """True when the drift was not estimated (span too short, one pair, or fixed by caller)."""
    span_ns: int = 0
    """Span of the data on the other clock."""
    detail: str = ""
    """One sentence for the report: what the fit rests on and how far to trust it."""

    @classmethod
    def identity(cls, detail: str = "same clock: no alignment needed") -> ClockFit:
        """Both sides read the same clock."""
        return cls(0.0, 0.0, 0, "identity", 0.0, 0, 0, detail=detail)

    @classmethod
    def none(cls, detail: str, n_forward: int = 0, n_backward: int = 0) -> ClockFit:
        """No information: the identity map, with infinite uncertainty."""
        return cls(0.0, 0.0, 0, "none", math.inf, n_forward, n_backward, drift_fixed=True,
                   detail=detail)

    def _correction(self, t_other_ns: np.ndarray) -> np.ndarray:
        rel = (t_other_ns - np.int64(self.ref_ns)).astype(np.float64)
        return np.rint(self.offset_ns + self.drift_ppm * 1e-6 * rel).astype(np.int64)

    def to_ref(self, t_ns: npt.ArrayLike) -> IntArray:
        """Other clock → reference clock, int64 ns."""
        t = np.asarray(t_ns, dtype=np.int64)
        return t + self._correction(t)

    def from_ref(self, t_ns: npt.ArrayLike) -> IntArray:
        """Reference clock → other clock, int64 ns (the inverse of :meth:`to_ref`)."""
        t = np.asarray(t_ns, dtype=np.int64)
        d = self.drift_ppm * 1e-6
        rel = (t - np.int64(self.ref_ns)).astype(np.float64)
        return np.int64(self.ref_ns) + np.rint((rel - self.offset_ns) / (1.0 + d)).astype(
            np.int64)

    @property
    def uncertainty_us(self) -> float:
        return self.uncertainty_ns / 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (infinities become ``None``)."""
        return {
            "quality": self.quality,
            "offset_ns": _finite(self.offset_ns),
            "drift_ppm": _finite(self.drift_ppm),
            "ref_ns": int(self.ref_ns),
            "uncertainty_us": _finite(self.uncertainty_us),
            "overlap_us": _finite(self.overlap_ns / 1e3),
            "drift_range_ppm": (None if self.drift_range_ppm is None
                                else [_finite(x) for x in self.drift_range_ppm]),
            "drift_fixed": self.drift_fixed,
            "span_s": self.span_ns / 1e9,
            "n_forward": self.n_forward,
            "n_backward": self.n_backward,
            "detail": self.detail,
        }


def _as_ns_pairs(a: npt.ArrayLike | None, b: npt.ArrayLike | None) -> tuple[IntArray, IntArray]:
    """Two equally long time columns as int64 ns, pairs with a missing value dropped."""
    if a is None or b is None:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    cols = []
    for x in (a, b):
        arr = np.asarray(x)
        if arr.dtype == object or arr.dtype.kind == "f":
            import pandas as pd  # nullable and float columns: NA/NaN marks "not seen"
            ser = pd.Series(arr)
            cols.append((ser.notna().to_numpy(), ser))
        else:
            cols.append((np.ones(arr.shape, bool), arr.astype(np.int64, copy=False)))
    if cols[0][0].shape != cols[1][0].shape:
        raise ValueError(f"paired time columns differ in length: {cols[0][0].shape} "
                         f"and {cols[1][0].shape}")
    valid = cols[0][0] & cols[1][0]
    out = []
    for _, col in cols:
        if hasattr(col, "iloc"):
            vals = col[valid]
            out.append(np.rint(vals.to_numpy(dtype=np.float64)).astype(np.int64)
                       if vals.dtype.kind == "f" else vals.to_numpy(dtype=np.int64))
        else:
            out.append(col if valid.all() else col[valid])
    return out[0], out[1]


def _fmt_us(ns: float) -> str:
    """A duration given in ns, as the report writes it."""
    return f"{ns:.0f} ns" if abs(ns) < 1e3 else format_duration(ns / 1e3)


def fit_offset_drift(send_ref_ns: npt.ArrayLike | None, recv_other_ns: npt.ArrayLike | None,
                     send_other_ns: npt.ArrayLike | None, recv_ref_ns: npt.ArrayLike | None,
                     *, min_delay_ns: int = 0, fix_drift_ppm: float | None = None,
                     names: tuple[str, str] = ("reference", "other")) -> ClockFit:
    """Offset and drift of the other clock against the reference, from causality.

    Forward pairs were sent at ``send_ref_ns`` (reference clock) and received at
    ``recv_other_ns`` (other clock); backward pairs the other way. Every packet took at least
    ``min_delay_ns``. ``fix_drift_ppm`` fixes the drift instead of estimating it. ``names``
    (reference, other) are used in the ``detail`` sentence.
    """
    fs, fr = _as_ns_pairs(send_ref_ns, recv_other_ns)
    bs, br = _as_ns_pairs(send_other_ns, recv_ref_ns)
    nf, nb = int(fs.size), int(bs.size)
    ref_name, other_name = names
    if nf + nb == 0:
        return ClockFit.none(f"no packet seen on both the {ref_name} and the {other_name} "
                             "clock: clocks not aligned")
    other_t = np.concatenate([fr, bs])
    t_lo, t_hi = int(other_t.min()), int(other_t.max())
    ref = t_lo + (t_hi - t_lo) // 2
    span = t_hi - t_lo
    u_ends = (float(t_lo - ref), float(t_hi - ref))
    # work relative to a rough integer offset so that float64 keeps sub-ns precision
    base = int(fs[0] - fr[0]) if nf else int(br[0] - bs[0])
    # forward: t_recv + f(u) >= t_send + min_delay, i.e. f(u) >= v at u = t_recv - ref
    f_u = (fr - ref).astype(float)
    f_v = ((fs - fr) - base).astype(float) + min_delay_ns
    # backward: t_send + f(u) + min_delay <= t_recv, i.e. f(u) <= v at u = t_send - ref
    b_u = (bs - ref).astype(float)
    b_v = ((br - bs) - base).astype(float) - min_delay_ns
    lower = _Envelope.build(f_u, f_v, +1) if nf else None
    upper = _Envelope.build(b_u, b_v, -1) if nb else None
    common: dict[str, Any] = dict(ref_ns=ref, n_forward=nf, n_backward=nb, span_ns=span)
    plaus = MAX_PLAUSIBLE_DRIFT_PPM * 1e-6
    hard = HARD_DRIFT_LIMIT_PPM * 1e-6

    if lower is None or upper is None:
        only = lower if lower is not None else upper
        assert only is not None  # nf + nb > 0
        return _one_sided(only, nf, nb, base, span, u_ends, fix_drift_ppm, min_delay_ns, names,
                          common)

    if fix_drift_ppm is not None:
        b_fix = fix_drift_ppm * 1e-6
        region = _solve(lower, upper, b_fix, b_fix)
        window_note = f"drift fixed at {fix_drift_ppm:g} ppm by the caller"
    else:
        region = _solve(lower, upper, -hard, hard)
        window_note = ""
    if not region.feasible:
        if fix_drift_ppm is None:
            region = _solve(lower, upper, -plaus, plaus)
        b, c = region.best_b, float(region.vertices[0, 1])
        overlap = -region.gap
        detail = (f"inconsistent: no {'line' if fix_drift_ppm is None else 'offset'} puts all "
                  f"{nf} {ref_name}→{other_name} and {nb} {other_name}→{ref_name} packets after "
                  f"their sending; the constraints cross by {_fmt_us(overlap)} (a mismatched "
                  "packet or a clock step?); the least-violating fit is shown, not trusted")
        drift_ppm = fix_drift_ppm if fix_drift_ppm is not None else b * 1e6
        return ClockFit(base + c, drift_ppm, quality="inconsistent", uncertainty_ns=math.inf,
                        overlap_ns=overlap, drift_fixed=fix_drift_ppm is not None,
                        detail=detail, **common)

    b, c, unc, drift_range, note = _bounded_line(lower, upper, region, fix_drift_ppm,
                                                 window_note, span, u_ends, other_name)
    detail = (f"{nf} {ref_name}→{other_name} and {nb} {other_name}→{ref_name} packets over "
              f"{_fmt_us(span)} bound the offset to ±{_fmt_us(unc)}; {note}")
    drift_ppm = fix_drift_ppm if fix_drift_ppm is not None else b * 1e6
    return ClockFit(base + c, drift_ppm, quality="bounded", uncertainty_ns=unc,
                    drift_range_ppm=drift_range, drift_fixed=drift_range is None,
                    detail=detail, **common)


def _bounded_line(lower: _Envelope, upper: _Envelope, region: _Region,
                  fix_drift_ppm: float | None, window_note: str, span: int,
                  u_ends: tuple[float, float], other_name: str
                  ) -> tuple[float, float, float, tuple[float, float] | None, str]:
    """The line of a feasible fit: drift ``b``, offset ``c``, the uncertainty, the drift
    range the data allow (None when the drift is fixed) and the sentence saying which.

    With the drift fixed, the middle of the band at that drift; when the data cannot tell
    the drift, the plausible drift nearest 0; else the line through the middle of the band
    at both ends of the data."""
    plaus = MAX_PLAUSIBLE_DRIFT_PPM * 1e-6
    hard = HARD_DRIFT_LIMIT_PPM * 1e-6
    b_lo, b_hi = region.b_lo, region.b_hi
    determined = (fix_drift_ppm is None and span > 0 and b_hi - b_lo <= plaus
                  and b_lo > -hard and b_hi < hard)
    if fix_drift_ppm is not None:
        b = fix_drift_ppm * 1e-6
        c = 0.5 * float(lower.at(b) + upper.at(b))
        unc = _worst_deviation(region.vertices, b, c, u_ends)
        drift_range = None
        note = window_note
    elif not determined:
        w_lo, w_hi = max(b_lo, -plaus), min(b_hi, plaus)
        if w_lo > w_hi:
            w_lo, w_hi = b_lo, b_hi
        region = _solve(lower, upper, w_lo, w_hi)
        b = min(max(0.0, w_lo), w_hi)
        c = 0.5 * float(lower.at(b) + upper.at(b))
        unc = _worst_deviation(region.vertices, b, c, u_ends)
        drift_range = None
        why = "one instant" if span == 0 else _fmt_us(span)
        note = (f"{why} of data cannot tell the drift: fixed at {b * 1e6:g} ppm, bound assumes "
                f"|drift| ≤ {MAX_PLAUSIBLE_DRIFT_PPM:g} ppm")
    else:
        # the line through the middle of the feasible band at both ends of the data: it
        # minimizes the worst error over the span; fall back to the mean of the extreme-slope
        # lines (Duda's bisector) should that line leave the polygon
        verts = region.vertices
        lo_vals = verts[:, 1] + verts[:, 0] * u_ends[0]
        hi_vals = verts[:, 1] + verts[:, 0] * u_ends[1]
        e_lo = 0.5 * (lo_vals.min() + lo_vals.max())
        e_hi = 0.5 * (hi_vals.min() + hi_vals.max())
        b = (e_hi - e_lo) / (u_ends[1] - u_ends[0])
        c = e_lo - b * u_ends[0]
        tol = 1e-6 * max(1.0, float(np.abs(verts[:, 1]).max()))
        if not (lower.at(b) - tol <= c <= upper.at(b) + tol):
            c_lo, c_hi = float(lower.at(b_lo)), float(lower.at(b_hi))
            b, c = 0.5 * (b_lo + b_hi), 0.5 * (c_lo + c_hi)
        unc = _worst_deviation(verts, b, c, u_ends)
        drift_range = (b_lo * 1e6, b_hi * 1e6)
        note = (f"drift {b * 1e6:+.2f} ppm: {_runs(other_name, b)} (data allow "
                f"{b_lo * 1e6:+.2f} to {b_hi * 1e6:+.2f})")
    return b, c, unc, drift_range, note


def _runs(other_name: str, b: float) -> str:
    """``the guest clock runs 40.00 ppm fast`` for a drift ``b`` (reference minus other)."""
    return f"the {other_name} clock runs {abs(b) * 1e6:.2f} ppm {'fast' if b < 0 else 'slow'}"


def _one_sided(env: _Envelope, nf: int, nb: int, base: int, span: int,
               u_ends: tuple[float, float], fix_drift_ppm: float | None, min_delay_ns: int,
               names: tuple[str, str], common: dict[str, Any]) -> ClockFit:
    """One direction only: the tightest line on the constrained side (Moon, Skelly & Towsley:
    the hull edge over the middle of the data), i.e. the fastest packets took ``min_delay``."""
    ref_name, other_name = names
    u_mid = 0.5 * (u_ends[0] + u_ends[1])
    if fix_drift_ppm is not None:
        b, fixed, note = fix_drift_ppm * 1e-6, True, f"drift fixed at {fix_drift_ppm:g} ppm"
    else:
        b = env.supporting_slope(u_mid)
        fixed = (span < MIN_ONE_SIDED_DRIFT_SPAN_NS or env.slopes.size == 0
                 or abs(b) > MAX_PLAUSIBLE_DRIFT_PPM * 1e-6)
        if fixed:
            b, note = 0.0, "drift not estimated (fixed at 0)"
        else:
            note = f"drift {b * 1e6:+.2f} ppm from the fastest packets: {_runs(other_name, b)}"
    c = float(env.at(b))
    if env.side > 0:
        seen = f"only {ref_name}→{other_name} packets ({nf})"
        way = "early"
    else:
        seen = f"only {other_name}→{ref_name} packets ({nb})"
        way = "late"
    detail = (f"one-sided: {seen} bound the offset from one side only; the estimate assumes the "
              f"fastest of them took {_fmt_us(min_delay_ns)}, so {other_name} times put on the "
              f"{ref_name} clock may be {way} by however much longer it really took; {note}")
    return ClockFit(base + c, b * 1e6, quality="one-sided", uncertainty_ns=math.inf,
                    drift_fixed=fixed, detail=detail, **common)


# --- TSC → dom0 time -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TscFit:
    """The map xentrace TSC cycles → dom0 ns: ``ns = ref_ns + (tsc - tsc_at_ref)·1e9/cpu_hz``."""

    cpu_hz: float
    """Cycles per second of the trace's TSC (given, or estimated)."""
    cpu_hz_estimated: bool
    """True when ``cpu_hz`` was estimated from the data rather than given."""
    tsc_at_ref: int
    """A TSC value inside the trace (its middle)."""
    ref_ns: int
    """dom0 time (epoch ns) at ``tsc_at_ref``."""
    quality: str
    """``bounded`` | ``one-sided`` | ``inconsistent`` | ``none`` (as for :class:`ClockFit`)."""
    uncertainty_ns: float
    """Bound on the error of :meth:`to_ns` over the trace; inf when only one side is bounded."""
    residual_us: tuple[float, float]
    """p50 and p99 of the matched interrupt → first-frame delays after the fit, in µs."""
    matched_fraction: float
    """Fraction of frame bursts inside the trace that have an interrupt within the window."""
    hz_uncertainty_ppm: float = 0.0
    """Uncertainty of an estimated ``cpu_hz`` (0 when given)."""
    n_irq: int = 0
    n_bursts: int = 0
    n_matched: int = 0
    clock: ClockFit | None = None
    """The causal fit underneath (trace cycles scaled to ns → dom0 clock)."""
    detail: str = ""
    """One sentence for the report: what the fit rests on and how well it fits."""
    cpu_hz_given: float | None = None
    """The frequency the user gave, when the fit refined it (``cpu_hz`` is then fitted)."""
    hz_mismatch: bool = False
    """True when the interrupts line up at a frequency measurably off the given one."""
    free_hz: float | None = None
    """When the given frequency does not fit: the one the interrupts line up at without it
    (None when none does)."""

    @classmethod
    def none(cls, detail: str, cpu_hz: float | None = None, n_irq: int = 0,
             n_bursts: int = 0) -> TscFit:
        """The trace could not be put on dom0's timeline."""
        return cls(float(cpu_hz or math.nan), False, 0, 0, "none", math.inf,
                   (math.nan, math.nan), 0.0, math.inf, n_irq, n_bursts, 0, None, detail)

    def to_ns(self, tsc: npt.ArrayLike) -> IntArray:
        """TSC cycles → dom0-clock epoch ns (int64)."""
        t = np.asarray(tsc, dtype=np.int64)
        if self.quality == "none":
            raise ValueError("no TSC mapping: " + self.detail)
        rel = (t - np.int64(self.tsc_at_ref)).astype(np.float64)
        return np.int64(self.ref_ns) + np.rint(rel * (1e9 / self.cpu_hz)).astype(np.int64)

    @property
    def uncertainty_us(self) -> float:
        return self.uncertainty_ns / 1e3

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (infinities and NaN become ``None``)."""
        return {
            "quality": self.quality,
            "cpu_hz": _finite(self.cpu_hz),
            "cpu_hz_estimated": self.cpu_hz_estimated,
            "hz_uncertainty_ppm": _finite(self.hz_uncertainty_ppm),
            "tsc_at_ref": int(self.tsc_at_ref),
            "ref_ns": int(self.ref_ns),
            "uncertainty_us": _finite(self.uncertainty_us),
            "residual_us": {"p50": _finite(self.residual_us[0]),
                            "p99": _finite(self.residual_us[1])},
            "matched_fraction": float(self.matched_fraction),
            "n_irq": self.n_irq,
            "n_bursts": self.n_bursts,
            "n_matched": self.n_matched,
            "clock": None if self.clock is None else self.clock.to_dict(),
            "detail": self.detail,
        }


def _densest(values: np.ndarray, width: float) -> tuple[int, int]:
    """Start and count of the largest run of sorted ``values`` within ``width``."""
    counts = np.searchsorted(values, values + width, side="right") - np.arange(values.size)
    best = int(np.argmax(counts))
    return best, int(counts[best])


def _big_gaps(t: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` longest gaps of sorted times: (length, time of the event ending the gap)."""
    gaps = np.diff(t)
    idx = np.argpartition(-gaps, m - 1)[:m] if gaps.size > m else np.arange(gaps.size)
    return gaps[idx], t[idx + 1]


def _skip_gaps(x: np.ndarray, m: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Gaps of the interrupts spanning 1 to ``MAX_SKIP`` intervals (an idle period may hold a
    stray interrupt or two): (length, time of the interrupt ending it); the ``m`` longest of
    each span, or all when ``m`` is None."""
    lengths, ends = [], []
    for s in range(1, MAX_SKIP + 1):
        if x.size <= s:
            break
        g = x[s:] - x[:-s]
        idx = (np.argpartition(-g, m - 1)[:m] if m is not None and g.size > m
               else np.arange(g.size))
        lengths.append(g[idx])
        ends.append(x[idx + s])
    return np.concatenate(lengths), np.concatenate(ends)


def _stab(lo: np.ndarray, hi: np.ndarray) -> tuple[float, int]:
    """The point inside most of the intervals ``[lo, hi]``, and how many."""
    ends = np.concatenate([lo, hi])
    step = np.concatenate([np.ones(lo.size, int), -np.ones(hi.size, int)])
    order = np.lexsort((-step, ends))
    depth = np.cumsum(step[order])
    best = int(np.argmax(depth))
    return float(ends[order][best]), int(depth[best])


def _coarse_align(x_cyc: np.ndarray, a_ns: np.ndarray, ns_per_cycle: float | None
                  ) -> tuple[float, float, float, float, int] | None:
    """First guess of ``a ≈ o + k·x`` from the idle periods both sequences share.

    The bursts that end the longest idle gaps of the capture vote: each is paired with the
    interrupts that end a gap of the same length (allowing stray interrupts inside it). With
    the frequency known, the offsets of the pairs vote. Otherwise each pair allows a range of
    scales; the scale most pairs allow selects the likely pairs, and two such pairs far apart
    fix the scale over their baseline. Returns (k, o, relative error of k, anchor time, votes).
    """
    ga, ea = _big_gaps(a_ns, N_BIG_GAPS)
    if ga.size == 0:
        return None
    if ns_per_cycle is not None:
        k = ns_per_cycle
        gx, ex = _skip_gaps(x_cyc, None)
        order = np.argsort(gx)
        gx_ns, ex = gx[order] * k, ex[order]
        lo = np.searchsorted(gx_ns, ga - GAP_JITTER_NS)
        hi = np.searchsorted(gx_ns, ga + GAP_JITTER_NS)
        n_each = hi - lo
        n_each[n_each > MAX_GAP_CANDIDATES] = 0        # a gap that long is everywhere: no clue
        lo = np.where(n_each > 0, lo, hi)
        if n_each.sum() < 2:
            return None
        jj, ii = ranges(lo, n_each)  # each candidate's gap and the index it pairs with
        offsets = ea[jj] - k * ex[ii]
        order = np.argsort(offsets)
        start, count = _densest(offsets[order], GAP_JITTER_NS)
        if count < 2:
            return None
        chosen = order[start:start + count]
        return k, float(np.median(offsets[chosen])), 0.0, float(np.median(ea[jj[chosen]])), count
    gx, ex = _skip_gaps(x_cyc, N_BIG_GAPS)
    ii, jj = (v.ravel() for v in np.meshgrid(np.arange(gx.size), np.arange(ga.size),
                                             indexing="ij"))
    s_lo = (ga[jj] - GAP_JITTER_NS) / gx[ii]
    s_hi = (ga[jj] + GAP_JITTER_NS) / gx[ii]
    ok = (s_hi >= 1e9 / MAX_CPU_HZ) & (s_lo <= 1e9 / MIN_CPU_HZ)
    ii, jj, s_lo, s_hi = ii[ok], jj[ok], s_lo[ok], s_hi[ok]
    if ii.size < 2:
        return None
    px, pa, pgx, pga = ex[ii], ea[jj], gx[ii], ga[jj]
    s, base, p = _pair_scales(px, pa, pgx, pga)
    if s.size == 0:
        return None
    half = 2 * GAP_JITTER_NS / base * s            # each scale is known to ± this
    lo, hi = s - half, s + half
    k_star, votes = _stab(lo, hi)
    # against the very bounds stabbed (k_star is one of them): |s − k_star| ≤ half can miss
    # by a rounding when k_star is an interval's end
    inside = np.flatnonzero((lo <= k_star) & (k_star <= hi))
    if inside.size == 0:
        return None
    pick = inside[np.argmax(base[inside])]        # the longest baseline is the most precise
    k = float(s[pick])
    o = float(pa[p[pick]] - k * px[p[pick]])
    return k, o, float(half[pick] / k), float(pa[p[pick]]), votes


def _pair_scales(px: np.ndarray, pa: np.ndarray, pgx: np.ndarray, pga: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every two gap pairs (``r``, ``q``) in the same order on both sides give a scale over
    their baseline, ``(pa[q] − pa[r]) / (px[q] − px[r])``, which must agree with both pairs'
    gap lengths (``pgx`` cycles, ``pga`` ns; ``pgx`` > 0). Returns those scales, their
    baselines (ns) and ``r``, in the order of a row-major scan of all pairs.

    A pair's gap lengths allow the scales within ``GAP_JITTER_NS`` of ``pga / pgx``: only
    pairs whose windows meet can agree (a few thousand of the 4,692² of a million-packet
    set), so the window bounds are sorted once and only the pairs that meet (the windows
    widened by :data:`WINDOW_SLACK`, far beyond rounding) are tested, with the arithmetic
    of a full scan, in blocks of rows of at most ``PAIR_BLOCK`` candidates (memory).
    """
    lo = (pga - GAP_JITTER_NS) / pgx
    hi = (pga + GAP_JITTER_NS) / pgx
    lo, hi = lo - np.abs(lo) * WINDOW_SLACK, hi + np.abs(hi) * WINDOW_SLACK
    order = np.argsort(lo, kind="stable")
    lo_sorted = lo[order]
    widest = float((hi - lo).max()) if lo.size else 0.0
    # for each pair, the pairs whose window starts within [its start − widest, its end]
    first = np.searchsorted(lo_sorted, lo - widest, side="left")
    count = np.maximum(np.searchsorted(lo_sorted, hi, side="right") - first, 0)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cuts = np.searchsorted(np.cumsum(count), np.arange(PAIR_BLOCK, int(count.sum()),
                                                       PAIR_BLOCK), side="right")
    for rows in np.split(np.arange(lo.size), unique(cuts)):
        which, at = ranges(first[rows], count[rows])
        r, q = rows[which], order[at]
        meet = (lo[q] <= hi[r]) & (lo[r] <= hi[q])
        r, q = r[meet], q[meet]
        scan = np.argsort(r * lo.size + q)  # row-major, as a scan of every pair finds them
        r, q = r[scan], q[scan]
        dx = px[q] - px[r]
        da = pa[q] - pa[r]
        with np.errstate(divide="ignore", invalid="ignore"):
            sc = da / dx
            valid = (dx > 0) & (da > 0)
            valid &= (sc >= 1e9 / MAX_CPU_HZ) & (sc <= 1e9 / MIN_CPU_HZ)
            valid &= np.abs(sc * pgx[r] - pga[r]) < GAP_JITTER_NS
            valid &= np.abs(sc * pgx[q] - pga[q]) < GAP_JITTER_NS
        found.append((sc[valid], da[valid], r[valid]))
    s, base, r = (np.concatenate(v) for v in zip(*found, strict=True))  # one block at least
    return s, base, r


def _nearest(pred: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Index of the element of sorted ``pred`` nearest to each ``a``."""
    pos = np.searchsorted(pred, a)
    left = np.clip(pos - 1, 0, pred.size - 1)
    right = np.clip(pos, 0, pred.size - 1)
    return np.where(np.abs(a - pred[left]) <= np.abs(pred[right] - a), left, right)


def _match(x_cyc: np.ndarray, a_ns: np.ndarray, k: float, o: float, window: float,
           sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bursts (indices in ``sel``) and their interrupts, each within ``window`` of the line;
    an interrupt serves the first burst it matches only."""
    pred = o + k * x_cyc
    j = np.flatnonzero(sel)
    i = _nearest(pred, a_ns[j])
    ok = np.abs(a_ns[j] - pred[i]) <= window
    i, j = i[ok], j[ok]
    _, first = np.unique(i, return_index=True)
    return i[first], j[first]


def _line(x: np.ndarray, y: np.ndarray, k_fixed: float | None) -> tuple[float, float, float]:
    """Least-squares ``y ≈ o + k·x`` (or only ``o``), trimmed of 3-MAD outliers once.
    Returns (k, o, standard error of k)."""
    keep = np.ones(x.size, bool)
    k, o, se = (k_fixed or 0.0), 0.0, 0.0
    for _ in range(2):
        xs, ys = x[keep], y[keep]
        if k_fixed is not None or xs.size < 3 or np.ptp(xs) == 0:
            k = k_fixed if k_fixed is not None else k
            o = float(np.median(ys - k * xs))
        else:
            xm, ym = xs.mean(), ys.mean()
            sxx = float(((xs - xm) ** 2).sum())
            k = float(((xs - xm) * (ys - ym)).sum() / sxx)
            o = float(ym - k * xm)
            resid_sd = float(np.std(ys - (o + k * xs), ddof=2)) if xs.size > 2 else 0.0
            se = resid_sd / math.sqrt(sxx)
        resid = y - (o + k * x)
        centre = np.median(resid[keep])  # (once: the MAD and the cut use the same)
        mad = float(np.median(np.abs(resid[keep] - centre))) or 1.0
        keep = np.abs(resid - centre) <= 3 * 1.4826 * mad + 1.0
        if keep.sum() < 2:
            break
    return k, o, se


def _unambiguous(x_cyc: np.ndarray, a_ns: np.ndarray, k: float, o: float, i: np.ndarray,
                 j: np.ndarray) -> np.ndarray:
    """Matched pairs with no competitor: no other interrupt and no other burst within the
    spread of the delays around them. Only these may bound the offset: a burst whose own
    interrupt was lost, matched to a neighbour's, would claim a delay it never had."""
    pred = o + k * x_cyc
    resid = a_ns[j] - pred[i]
    spread = max(float(np.ptp(np.quantile(resid, [0.01, 0.99]))), 1_000.0)
    prev_irq = np.where(i > 0, pred[np.maximum(i - 1, 0)], -np.inf)
    next_irq = np.where(i + 1 < pred.size, pred[np.minimum(i + 1, pred.size - 1)], np.inf)
    prev_burst = np.where(j > 0, a_ns[np.maximum(j - 1, 0)], -np.inf)
    next_burst = np.where(j + 1 < a_ns.size, a_ns[np.minimum(j + 1, a_ns.size - 1)], np.inf)
    centre = 0.5 * (pred[i] + a_ns[j])
    return ((centre - prev_irq > 2 * spread) & (next_irq - centre > 2 * spread)
            & (centre - prev_burst > 2 * spread) & (next_burst - centre > 2 * spread))


@dataclasses.dataclass(frozen=True)
class HzOrigin:
    """Where a fixed ``cpu_hz`` came from when it is an earlier fit's, not the user's: the
    refit with grant copies keeps the rate the interrupts gave and fits the offset only."""

    uncertainty_ppm: float
    """How well that fit knew the rate."""
    given_hz: float | None = None
    """The rate the user gave, when that fit refined it (else the rate was estimated)."""


def fit_tsc(irq_tsc: npt.ArrayLike, arrivals_ns: npt.ArrayLike, *,
            cpu_hz: float | None = None, hz_origin: HzOrigin | None = None,
            copy_tsc: npt.ArrayLike | None = None,
            copy_after_ns: npt.ArrayLike | None = None,
            copy_before_ns: npt.ArrayLike | None = None,
            min_irq_delay_ns: int = 0, min_copy_delay_ns: int = 0,
            burst_gap_ns: int = BURST_GAP_NS, window_ns: int = IRQ_MATCH_WINDOW_NS) -> TscFit:
    """Put the trace's TSC on dom0's clock (see :func:`_fit_tsc_once` for the arguments).

    A given ``cpu_hz`` is a starting point, not the truth (``xl info`` gives MHz only): when
    the interrupts do not line up at it, or line up measurably better at another rate, the
    rate is fitted (the search of an unknown rate) and kept when within ±``REFINE_PPM`` of
    the given one; when that fails too the fit says the given
    frequency does not fit and what the interrupts suggest without it.
    """
    kwargs: dict[str, Any] = dict(copy_tsc=copy_tsc, copy_after_ns=copy_after_ns,
                  copy_before_ns=copy_before_ns, min_irq_delay_ns=min_irq_delay_ns,
                  min_copy_delay_ns=min_copy_delay_ns, burst_gap_ns=burst_gap_ns,
                  window_ns=window_ns)
    if hz_origin is not None and cpu_hz is not None:
        return _fit_tsc_once(irq_tsc, arrivals_ns, cpu_hz=cpu_hz, hz_origin=hz_origin,
                             **kwargs)
    if cpu_hz is None:
        return _fit_tsc_once(irq_tsc, arrivals_ns, **kwargs)
    given = _fit_tsc_once(irq_tsc, arrivals_ns, cpu_hz=cpu_hz, **kwargs)
    good = ("bounded", "one-sided")
    if given.quality in good and not given.hz_mismatch:
        return given
    if given.n_irq < 2 or given.n_bursts < 2:
        return given
    refined = _fit_tsc_once(irq_tsc, arrivals_ns, hz_hint=cpu_hz, **kwargs)
    near = math.isfinite(refined.cpu_hz) and abs(refined.cpu_hz / cpu_hz - 1) <= REFINE_PPM * 1e-6
    if refined.quality in good and near and refined.matched_fraction >= given.matched_fraction:
        return refined
    if given.quality in good:
        return given  # questioned, but no better rate nearby: keep it, with the question
    free = _fit_tsc_once(irq_tsc, arrivals_ns, **kwargs)
    without = (f"without it the interrupts line up at {free.cpu_hz / 1e9:.6f} GHz "
               f"({free.quality}, {free.matched_fraction:.0%} of bursts matched)"
               if free.quality in good else "without it no frequency lines them up either")
    detail = (f"the given --cpu-hz {cpu_hz / 1e9:.6g} GHz does not fit the interrupts, even "
              f"within ±{REFINE_PPM:g} ppm ({given.detail}); {without}")
    return dataclasses.replace(given, detail=detail,
                               free_hz=free.cpu_hz if free.quality in good else None)


# long function: one TSC fit read top to bottom (coarse rate, matched line, bounding pairs,
# causal fit, rate, detail: each a helper below); its 24 lines of signature and docstring
# say what every argument means
def _fit_tsc_once(irq_tsc: npt.ArrayLike, arrivals_ns: npt.ArrayLike, *,
                  cpu_hz: float | None = None, copy_tsc: npt.ArrayLike | None = None,
                  copy_after_ns: npt.ArrayLike | None = None,
                  copy_before_ns: npt.ArrayLike | None = None,
                  min_irq_delay_ns: int = 0, min_copy_delay_ns: int = 0,
                  burst_gap_ns: int = BURST_GAP_NS, window_ns: int = IRQ_MATCH_WINDOW_NS,
                  hz_hint: float | None = None, hz_origin: HzOrigin | None = None) -> TscFit:
    """Put the trace's TSC on dom0's clock, at the given ``cpu_hz`` or a fitted one.

    ``irq_tsc``: TSCs of the NIC's HW_IRQ_HANDLED records. ``arrivals_ns``: dom0 capture times
    of the received frames (phys or backend capture). Frames closer than ``burst_gap_ns`` form
    one burst, delivered by one interrupt that precedes its first frame (by at least
    ``min_irq_delay_ns``). Optional grant copies, one per packet: ``copy_tsc`` follows
    ``copy_after_ns`` (that packet's backend capture) and precedes ``copy_before_ns`` (its
    guest capture on dom0's clock), each by at least ``min_copy_delay_ns``; NaN/NA where
    unknown. The copies bound the offset from the other side. With ``cpu_hz`` given only the
    offset is fitted; otherwise the frequency too. The CPUs' TSCs are taken to be one clock
    (synchronized, invariant TSC). ``hz_hint``: the frequency the user gave, which this fit
    (``cpu_hz`` None) refines: named in the detail. ``hz_origin``: ``cpu_hz`` is an earlier
    fit's rate, kept fixed (the result says it was estimated, with that fit's uncertainty).
    """
    irq = _sorted_distinct(np.asarray(irq_tsc, dtype=np.int64))
    arr = _sorted(np.asarray(arrivals_ns, dtype=np.int64))
    starts = arr[np.r_[True, np.diff(arr) > burst_gap_ns]] if arr.size else arr
    n_irq, n_bursts = int(irq.size), int(starts.size)
    if n_irq < 2 or n_bursts < 2:
        return TscFit.none(f"too few interrupts ({n_irq}) or frame bursts ({n_bursts}) to "
                           "line the trace up with the capture", cpu_hz, n_irq, n_bursts)
    tsc0, a0 = int(irq[0]), int(starts[0])
    x = (irq - tsc0).astype(np.float64)
    a = (starts - a0).astype(np.float64)
    k_given = None if cpu_hz is None else 1e9 / cpu_hz
    coarse = _coarse_align(x, a, k_given)
    if coarse is None:
        return TscFit.none("no idle gaps shared by the interrupts and the frames: could not "
                           "line the trace up with the capture", cpu_hz, n_irq, n_bursts)
    k, o, k_err, anchor, _ = coarse
    k, o = _grow_match(x, a, k, o, k_err, anchor, window_ns, k_given)
    i, j = _match(x, a, k, o, window_ns, np.ones(a.size, bool))
    pred = o + k * x
    inside = (a >= pred[0] - window_ns) & (a <= pred[-1] + window_ns)
    n_inside = max(int(inside.sum()), 1)
    if i.size < 2:
        return TscFit.none("no interrupt lines up with the frames", cpu_hz, n_irq, n_bursts)
    matched = i.size / n_inside
    if matched < MIN_MATCHED_FRACTION:
        failed = TscFit.none(f"the interrupts do not line up with the frames: only {i.size} of "
                             f"{n_inside} frame bursts have one within {_fmt_us(window_ns)} at "
                             "the best alignment found (wrong IRQ?)", cpu_hz, n_irq, n_bursts)
        return dataclasses.replace(failed, matched_fraction=matched, n_matched=int(i.size))
    k, o, se = _line(x[i], a[j], k_given)
    keep = _bounding_pairs(x, a, k, o, i, j)

    # the causal fit: trace time (cycles scaled to ns) is the "other" clock
    def trace_ns(tsc: np.ndarray) -> np.ndarray:
        # on the matched line already, so that the causal fit's offset stays small (precise)
        rel = (tsc - tsc0).astype(np.float64)
        return np.int64(a0) + np.rint(o + k * rel).astype(np.int64)

    send_ref, recv_other, send_other, recv_ref = _causal_pairs(
        trace_ns, irq[i[keep]], starts[j[keep]] - int(min_irq_delay_ns), copy_tsc,
        copy_after_ns, copy_before_ns, min_copy_delay_ns)
    # The rate: a user's is kept. An estimated one is the matched pairs' least-squares line
    # (the fastest interrupts are no steady reference on a busy host: how long the dom0
    # vCPU took to run varies with the hour), and it stays fixed until grant copies bound
    # the offset from the other side too; then the two-sided hull may turn it.
    free = copy_tsc is not None and (cpu_hz is None or hz_origin is not None)
    clock = fit_offset_drift(send_ref, recv_other, send_other, recv_ref,
                             fix_drift_ppm=None if free else 0.0, names=("dom0", "trace"))
    if clock.quality != "bounded" and free:
        clock = fit_offset_drift(send_ref, recv_other, send_other, recv_ref,
                                 fix_drift_ppm=0.0, names=("dom0", "trace"))
    d = clock.drift_ppm * 1e-6
    ns_per_cycle = k * (1 + d)
    if not (math.isfinite(ns_per_cycle) and ns_per_cycle > 0):  # a damaged or absurd fit
        return TscFit.none(f"the interrupts and the frames give no usable TSC rate (drift "
                           f"{clock.drift_ppm:.3g} ppm)", cpu_hz, n_irq, n_bursts)
    hz = 1e9 / ns_per_cycle
    mid_tsc = tsc0 + int((irq[-1] - irq[0]) // 2)
    mid_other = int(trace_ns(np.array([mid_tsc]))[0])
    ref_ns = int(clock.to_ref(np.array([mid_other]))[0])
    fit_map = TscFit(hz, cpu_hz is None, mid_tsc, ref_ns, clock.quality, clock.uncertainty_ns,
                     (math.nan, math.nan), 0.0)
    delay_us = (starts[j] - fit_map.to_ns(irq[i])) / 1e3
    p50, p99 = (float(v) for v in np.percentile(delay_us, [50, 99]))
    # the least-squares scale's 3σ plus how far the fastest-interrupt line turned from it
    hz_ppm = 0.0 if cpu_hz is not None else 3e6 * se / k + abs(d) * 1e6
    if hz_origin is not None:
        hz_ppm = hz_origin.uncertainty_ppm
        if clock.drift_range_ppm is not None:    # the hull turned the rate: its own bound
            hz_ppm = 0.5 * (clock.drift_range_ppm[1] - clock.drift_range_ppm[0])
    if hz_origin is not None:
        hz_hint = hz_origin.given_hz
    parts, mismatch = _tsc_detail(
        i.size, n_inside, window_ns, matched, (p50, p99), hz, hz_ppm, hz_hint,
        estimated=cpu_hz is None or hz_origin is not None,
        given_check=None if cpu_hz is None or hz_origin is not None or hz_hint is not None
        else (k, _line(x[i], a[j], None), float(np.ptp(x[i]))))
    parts.append(_tsc_bound_sentence(clock, min_irq_delay_ns, hz_origin is None))
    return dataclasses.replace(
        fit_map, cpu_hz_estimated=cpu_hz is None or hz_origin is not None,
        residual_us=(p50, p99), matched_fraction=matched, hz_uncertainty_ppm=hz_ppm,
        n_irq=n_irq, n_bursts=n_bursts, n_matched=int(i.size), clock=clock,
        detail="; ".join(parts), cpu_hz_given=hz_hint, hz_mismatch=mismatch)


def _sorted(values: np.ndarray) -> np.ndarray:
    """``np.sort(values)``, without sorting again what is sorted already (the records and
    frames come in time order: one comparison pass instead of a sort)."""
    if values.size > 1 and not (values[1:] >= values[:-1]).all():
        return np.sort(values)
    return values.copy()


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``unique(values)`` (sorted distinct values) by :func:`_sorted`."""
    ordered = _sorted(values)
    keep = np.ones(ordered.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _causal_pairs(trace_ns: Callable[[np.ndarray], np.ndarray], irq_tsc: np.ndarray,
                  burst_ns: np.ndarray, copy_tsc: npt.ArrayLike | None,
                  copy_after_ns: npt.ArrayLike | None, copy_before_ns: npt.ArrayLike | None,
                  min_copy_delay_ns: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The causality constraints of the TSC fit, as :func:`fit_offset_drift` takes them
    (dom0 is the reference, the trace the other clock): each interrupt precedes its burst
    (``burst_ns``: already less the least delay); a grant copy follows its frame's backend
    capture (a forward pair) and precedes its guest capture (a backward pair)."""
    send_ref = recv_other = None
    b_send, b_recv = trace_ns(irq_tsc), burst_ns
    if copy_tsc is not None:
        if copy_after_ns is not None:       # backend capture → copy: a forward pair
            after, c_tsc = _as_ns_pairs(copy_after_ns, copy_tsc)
            send_ref, recv_other = after + int(min_copy_delay_ns), trace_ns(c_tsc)
        if copy_before_ns is not None:      # copy → guest capture: a backward pair
            c_tsc, before = _as_ns_pairs(copy_tsc, copy_before_ns)
            b_send = np.concatenate([b_send, trace_ns(c_tsc)])
            b_recv = np.concatenate([b_recv, before - int(min_copy_delay_ns)])
    return send_ref, recv_other, b_send, b_recv


def _grow_match(x: np.ndarray, a: np.ndarray, k: float, o: float, k_err: float,
                anchor: float, window_ns: int, k_given: float | None) -> tuple[float, float]:
    """The line (scale ``k``, offset ``o``) refined on a matched region grown from the coarse
    alignment's anchor, doubling while the scale is good enough for it."""
    radius = max(window_ns / max(k_err, 1e-9), 100.0 * window_ns)
    whole = max(anchor - a[0], a[-1] - anchor)
    while True:
        sel = np.abs(a - anchor) <= radius
        i, j = _match(x, a, k, o, window_ns, sel)
        if i.size >= 2:
            k, o, _ = _line(x[i], a[j], k_given)
        if radius >= whole:
            return k, o
        radius = min(whole, 2 * radius) if i.size >= 2 else whole


def _bounding_pairs(x: np.ndarray, a: np.ndarray, k: float, o: float, i: np.ndarray,
                    j: np.ndarray) -> np.ndarray:
    """Which matched (interrupt ``i``, burst ``j``) pairs bound the clock: unambiguous ones,
    without the stray interrupts of the low tail and the bursts matched to a later interrupt
    than their own."""
    keep = _unambiguous(x, a, k, o, i, j)
    if keep.sum() < MIN_CLEAN_PAIRS:
        keep = np.ones(i.size, bool)
    resid = a[j] - (o + k * x[i])
    if keep.sum() >= 1 / IRQ_LOW_TRIM:   # a stray interrupt is a mismatch, not a bound
        keep &= resid >= np.quantile(resid[keep], IRQ_LOW_TRIM)
    if keep.sum() >= MIN_CLEAN_PAIRS:
        # a burst matched to a later interrupt (its own came long before: dom0 starved) shows
        # a delay far below the bulk's, whose lower side is steep: such a pair is no bound
        q_lo, q_mid = np.quantile(resid[keep], [0.1, 0.5])
        keep &= resid >= q_lo - LOW_DELAY_SPREADS * max(q_mid - q_lo, 1_000.0)
    return keep


def _tsc_detail(n_matched: int, n_inside: int, window_ns: int, matched: float,
                residual_us: tuple[float, float], hz: float, hz_ppm: float,
                hz_hint: float | None, *, estimated: bool,
                given_check: tuple[float, tuple[float, float, float], float] | None
                ) -> tuple[list[str], bool]:
    """The sentences of a TSC fit's ``detail`` (but the bound's), and whether the interrupts
    line up measurably off a given frequency. ``given_check``: with a frequency given (and
    no hint), (its scale, the free line ``_line`` fits, the interrupts' TSC span)."""
    p50, p99 = residual_us
    parts = [f"{n_matched} of {n_inside} frame bursts in the trace have an interrupt within "
             f"{_fmt_us(window_ns)} ({matched:.0%}); irq→frame delay p50 {p50:.1f} µs, "
             f"p99 {p99:.1f} µs"]
    mismatch = False
    if hz_hint is not None:
        parts.append(f"TSC given {hz_hint / 1e9:.6g} GHz, fitted {hz / 1e9:.6f} GHz "
                     f"({(hz / hz_hint - 1) * 1e6:+.1f} ppm) ±{hz_ppm:.2g} ppm")
    elif estimated:
        parts.append(f"TSC {hz / 1e9:.6f} GHz ±{hz_ppm:.2g} ppm (estimated)")
    else:
        assert given_check is not None
        k, (free_k, _, free_se), span_cycles = given_check
        parts.append(f"TSC {hz / 1e9:.6f} GHz (given)")
        off_ppm = (k / free_k - 1) * 1e6
        trend_ns = abs(free_k - k) * span_cycles
        if abs(free_k - k) > 5 * free_se and trend_ns > FREQ_CHECK_NS:
            mismatch = True
            parts.append(f"the interrupts line up best at {1 / free_k:.6f} GHz ({off_ppm:+.1f} "
                         "ppm): is the given CPU frequency right?")
    if matched < 0.5:
        parts.append("only a minority of bursts matched: treat the trace times as rough")
    return parts, mismatch


def _tsc_bound_sentence(clock: ClockFit, min_irq_delay_ns: int, user_hz: bool = True) -> str:
    """What bounds the trace's offset, in the words of the trace (interrupts, copies)."""
    if clock.quality == "bounded":
        return (f"interrupts and grant copies bound the offset to ±{_fmt_us(clock.uncertainty_ns)}"
                + (" (at the given frequency)" if clock.drift_fixed and user_hz else ""))
    if clock.quality == "inconsistent":
        return (f"inconsistent: the interrupts and the grant copies contradict each other by "
                f"{_fmt_us(clock.overlap_ns)} (copies placed in the wrong packet?); the "
                "least-violating fit is shown, not trusted")
    return ("one-sided: the interrupts bound the offset from one side only; trace times assume "
            f"the fastest interrupt came {_fmt_us(min_irq_delay_ns)} before its frame, and are "
            "late by however much longer the true minimum was (grant copies would bound the "
            "other side)")


# --- socket logs with times of day only (strace -tt) ---------------------------------------

#: Time zones are whole multiples of a quarter hour: a ``-tt`` log sits on its day by this.
TIME_ZONE_STEP_NS = 15 * 60 * 1_000_000_000
#: UTC offsets that exist (hours).
MIN_UTC_OFFSET_H, MAX_UTC_OFFSET_H = -12, 14
#: Reads stand after their segments by less than this when the placement is trusted.
MAX_ANCHORED_DELAY_NS = TIME_ZONE_STEP_NS // 2
NS_PER_DAY = 86_400 * 1_000_000_000


@dataclasses.dataclass(frozen=True)
class DayAnchor:
    """Where a log of times of day lies: ``epoch = time_of_day + shift_ns``."""

    shift_ns: int
    """A whole multiple of 15 minutes: local midnight of the log's first day, in epoch ns."""
    date: str
    """Local date of the log's first day (``2026-01-01``)."""
    utc_offset: str
    """``UTC+01:00``: the time zone the log's times were written in."""
    median_delay_ns: float
    """Median read − segment delay once placed."""

    @property
    def detail(self) -> str:
        return (f"placed on {self.date} at {self.utc_offset} (reads follow their segments by "
                f"{_fmt_us(self.median_delay_ns)} median)")


def anchor_time_of_day(read_ns: npt.ArrayLike, segment_ns: npt.ArrayLike) -> DayAnchor | None:
    """Place reads timed by day only (``-tt``) on the capture's dates, or None if ambiguous.

    ``read_ns`` counts from 1970-01-01 (the local time of day), ``segment_ns`` is the epoch
    time of the segment each read returned. The true shift is a whole number of days plus a
    time zone, a multiple of 15 minutes: the smallest one that puts no read before its
    segment. It is trusted only when the delays it leaves are well under 15 minutes (else
    another shift would fit as well, or the log is not of this capture).
    """
    r = np.asarray(read_ns, dtype=np.int64)
    s = np.asarray(segment_ns, dtype=np.int64)
    if r.size == 0:
        return None
    need = s - r  # the shift must be at least this for every pair
    step = TIME_ZONE_STEP_NS
    shift = -(-int(need.max()) // step) * step
    delay = r + shift - s
    median = float(np.median(delay))
    if median >= MAX_ANCHORED_DELAY_NS or int(need.max() - need.min()) >= step:
        return None
    # shift = local midnight (UTC) of some day D = D·86400 s − UTC offset
    best = None
    for days in (shift // NS_PER_DAY, shift // NS_PER_DAY + 1):
        offset_ns = days * NS_PER_DAY - shift
        valid = MIN_UTC_OFFSET_H * 3600e9 <= offset_ns <= MAX_UTC_OFFSET_H * 3600e9
        if valid and (best is None or abs(offset_ns) < abs(best[1])):
            best = (days, offset_ns)
    if best is None:
        return None
    days, offset_ns = best
    date = (datetime.date(1970, 1, 1) + datetime.timedelta(days=int(days))).isoformat()
    minutes = int(offset_ns // 60_000_000_000)
    sign = "+" if minutes >= 0 else "-"
    utc = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return DayAnchor(int(shift), date, utc, median)
