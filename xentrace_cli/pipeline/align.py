"""Every clock decision of an analysis, in one place, each returned as facts.

Three clocks meet in an analysis: dom0's (its captures: the reference), the guest's (its
capture and, usually, the socket log) and the hypervisor's TSC (the trace). Alignment needs
the same packet seen on two clocks, so it follows matching (:mod:`.match`): a matched
segment's two capture times are the causality constraints of :func:`.clock.fit_offset_drift`,
and the trace's NIC interrupts and grant copies are lined up with dom0's frames.

Each decision returns a frozen record — the fit, the entry for ``Analysis.alignment`` (its
``report``), the uncertainty in µs every interval across the two clocks carries, and the
notes for the reader — never a sentence for the caller to edit:

- :func:`guest_on_dom0` — the guest capture's clock on dom0's (or why it is not);
- :func:`guest_from_socket_log` — with no guest capture, the socket log's clock on dom0's;
- :func:`socket_log_on_guest` — the socket log against the guest capture: the same clock, an
  offset of its own, or not this capture's log;
- :func:`time_of_day_shift` — the date of a ``strace -tt`` log (times of day only);
- :func:`nic_clock`, :func:`refit_with_copies` — the TSC on dom0's clock, from the NIC's
  interrupts, then bounded from the other side by grant copies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .clock import (
    BURST_GAP_NS,
    ClockFit,
    HzOrigin,
    TscFit,
    anchor_time_of_day,
    fit_offset_drift,
    fit_tsc,
)
from .timelines import TraceRecords

#: "Not measured" in an int64 ns time column.
NA_NS = np.iinfo(np.int64).min
#: Slack for reads before / writes after the guest capture of their bytes (strace prints µs).
SOCKET_SLACK_NS = 1_000
#: Candidate NIC IRQs tried when ``--nic-irq`` is not given (the busiest ones).
MAX_IRQ_CANDIDATES = 4

IntArray = np.ndarray[Any, np.dtype[np.int64]]
BoolArray = np.ndarray[Any, np.dtype[np.bool_]]


@dataclasses.dataclass(frozen=True)
class GuestClock:
    """The guest's clock on dom0's: the fit (None: not aligned, or nothing to align with)."""

    fit: ClockFit | None
    report: dict[str, Any] | None
    """``Analysis.alignment["guest->dom0"]`` (None: no entry)."""
    uncertainty_us: float
    notes: tuple[str, ...]
    usable: bool = True
    """False when the source that gave the guest's clock cannot be placed on dom0's."""

    def to_dom0(self, t_ns: IntArray) -> IntArray:
        """Guest-clock times (``NA_NS`` kept) on dom0's clock; unchanged without a fit."""
        if self.fit is None:
            return t_ns
        out = t_ns.copy()
        ok = t_ns != NA_NS
        out[ok] = self.fit.to_ref(t_ns[ok])
        return out


NO_GUEST_CLOCK = GuestClock(None, None, 0.0, ())


def guest_on_dom0(t_guest: IntArray, t_dom0: IntArray, rx: BoolArray,
                  dom0_point: str | None) -> GuestClock:
    """The guest capture's clock on dom0's, from segments seen by both (received ones reach
    dom0 first, sent ones the guest); without a dom0 capture, the guest's own clock."""
    if dom0_point is None:
        return GuestClock(None, {"quality": "none", "offset_ns": None, "drift_ppm": None,
                                 "uncertainty_us": None,
                                 "detail": "no dom0 capture to align the guest clock with",
                                 "from": ""}, 0.0,
                          ("no dom0 capture: the guest's clock is not aligned with dom0's (nor "
                           "needed): intervals within the guest are exact, on the guest's "
                           "clock.",))
    both = (t_guest != NA_NS) & (t_dom0 != NA_NS)
    f, b = both & rx, both & ~rx
    fit = fit_offset_drift(t_dom0[f], t_guest[f], t_guest[b], t_dom0[b], names=("dom0", "guest"))
    return GuestClock(fit, {**fit.to_dict(), "from": f"{dom0_point} ↔ guest"},
                      fit.uncertainty_ns / 1e3, (f"guest clock: {fit.detail}",))


def guest_from_socket_log(t_sock: IntArray, t_dom0: IntArray, rx: BoolArray,
                          dom0_point: str) -> GuestClock:
    """No guest capture: the socket log is on the guest's clock; reads follow the dom0
    capture of their bytes, writes precede it. Unusable when no line fits."""
    both = (t_sock != NA_NS) & (t_dom0 != NA_NS)
    fit = fit_offset_drift(t_dom0[both & rx], t_sock[both & rx], t_sock[both & ~rx],
                           t_dom0[both & ~rx], names=("dom0", "guest"))
    report = {**fit.to_dict(), "from": f"{dom0_point} ↔ socket log"}
    notes = [f"guest clock (from the socket log): {fit.detail}"]
    if fit.quality not in ("none", "inconsistent"):
        return GuestClock(fit, report, fit.uncertainty_ns / 1e3, tuple(notes))
    notes.append("socket log left out: its reads and writes cannot be placed on dom0's clock "
                 f"({report['quality']}); it does not seem to belong to these captures.")
    # an interval across unaligned clocks is no use
    return GuestClock(None, report, fit.uncertainty_ns / 1e3, tuple(notes), usable=False)


@dataclasses.dataclass(frozen=True)
class SocketClock:
    """The socket log's times on the guest capture's clock (None: not this capture's log)."""

    times: IntArray | None
    uncertainty_us: float
    report: dict[str, Any] | None
    """``Analysis.alignment["socket log->guest"]`` (None: the log needed no alignment)."""
    notes: tuple[str, ...]


def socket_log_on_guest(t_sock: IntArray, t_guest: IntArray, rx: BoolArray) -> SocketClock:
    """The socket log's times checked against the guest capture (reads follow their
    segments, writes precede theirs): as they are, aligned when the log's clock is simply
    another one (a constant offset, with its uncertainty), or left out when no line fits."""
    both = (t_sock != NA_NS) & (t_guest != NA_NS)
    f, b = both & rx, both & ~rx
    early = (f & (t_sock < t_guest - SOCKET_SLACK_NS)) | (b & (t_sock > t_guest + SOCKET_SLACK_NS))
    if not early.any():
        return SocketClock(t_sock, 0.0, None, ())
    bad = (f"{int((early & rx).sum())} of {int(f.sum())} reads return before the guest "
           f"capture saw their bytes and {int((early & ~rx).sum())} of {int(b.sum())} writes "
           "start after it")
    fit = fit_offset_drift(t_guest[f], t_sock[f], t_sock[b], t_guest[b],
                           names=("guest capture", "socket log"))
    report = {**fit.to_dict(), "from": "guest ↔ socket log"}
    if fit.quality != "bounded":
        return SocketClock(None, 0.0, report, (
            f"socket log left out: {bad}, and no clock offset puts them in order "
            f"({fit.quality}): the log does not belong to this capture.",))
    out = t_sock.copy()
    ok = out != NA_NS
    out[ok] = fit.to_ref(out[ok])
    return SocketClock(out, fit.uncertainty_ns / 1e3, report, (
        f"socket log: {bad}: it was timed by another clock, {fit.offset_ns / 1e6:+.3f} ms off "
        f"the guest capture's; aligned on it ({fit.detail}).",))


def time_of_day_shift(path: Path | None, t_sock: IntArray, ref_ns: IntArray | None,
                      rx: BoolArray) -> tuple[int, str]:
    """The shift (ns) that puts a ``-tt`` log's times of day on the capture's dates, and the
    note saying how it was found; InputError when nothing dates it unambiguously."""
    rerun = "rerun strace with -ttt (epoch times) to place them"
    if ref_ns is None:
        raise InputError(path, "the socket log has times of day only and there is no capture "
                         f"to take the date from: {rerun}")
    both = rx & (t_sock != NA_NS) & (ref_ns != NA_NS)
    placed = anchor_time_of_day(t_sock[both], ref_ns[both])
    if placed is None:
        raise InputError(path, "the socket log has times of day only and its reads do not "
                         "place it on the capture's date unambiguously "
                         f"({int(both.sum())} reads matched): {rerun}")
    return placed.shift_ns, f"socket log has times of day only: {placed.detail}."


@dataclasses.dataclass(frozen=True)
class NicClock:
    """The trace's NIC interrupts and the TSC fit they give (``fit`` None: no fit)."""

    number: int | None
    """The NIC's Xen IRQ (None: the trace has no interrupt records)."""
    rows: IntArray
    """Its rows of ``TraceRecords.interrupts``."""
    fit: TscFit | None
    report: dict[str, Any] | None
    """``Analysis.alignment["tsc->dom0"]`` when no fit was found."""
    notes: tuple[str, ...]


_QUALITY_RANK = {"bounded": 0, "one-sided": 1, "inconsistent": 2, "none": 3}


def fit_rank(fit: TscFit) -> tuple[int, int, float]:
    """Better fits first; among IRQs that do not fit a given frequency, the one that lines up
    at some other frequency (its note then tells the rate to give); then by the share of
    interrupts matched."""
    return (_QUALITY_RANK.get(fit.quality, 3), fit.free_hz is None, -float(fit.matched_fraction))


def nic_clock(records: TraceRecords, arrivals: IntArray, point: str, cpu_hz: float | None,
              nic_irq: int | None) -> NicClock:
    """The NIC's interrupts and the TSC fit they give against dom0's frame ``arrivals``
    (seen at the capture ``point``).

    Without ``nic_irq`` the busiest IRQs are tried, the one whose count is closest to the
    number of frame bursts first, and the best-fitting kept.
    """
    irq = records.interrupts
    per_irq = pd.Series(irq.number).value_counts()
    candidates = ([int(nic_irq)] if nic_irq is not None
                  else [int(x) for x in per_irq.index[:MAX_IRQ_CANDIDATES]])
    none = np.zeros(0, dtype=np.int64)
    if not candidates:
        return NicClock(None, none, None, None, (
            "xentrace has no HW_IRQ_HANDLED records: the trace cannot be lined up with the "
            "captures (was it recorded with the irq class?).",))
    bursts = 1 + int((np.diff(arrivals) > BURST_GAP_NS).sum())
    candidates.sort(key=lambda k: abs(np.log(max(per_irq.get(k, 1), 1) / max(bursts, 1))))
    fits = []
    for number in candidates:
        rows = np.flatnonzero(irq.number == number)
        fits.append((number, rows, fit_tsc(irq.tsc[rows], arrivals, cpu_hz=cpu_hz)))
        if fits[-1][2].quality in ("bounded", "one-sided") and \
                fits[-1][2].matched_fraction >= 0.8:
            break  # interrupts alone bound the TSC from one side: good enough to choose
    number, rows, fit = min(fits, key=lambda item: fit_rank(item[2]))
    if fit.quality == "none":
        return NicClock(number, rows, None, {**tsc_report(fit), "from": f"irq {number}"},
                        (f"xentrace: {fit.detail}",))
    notes = () if nic_irq is not None else (
        f"NIC interrupt: Xen IRQ {number} (its interrupts line up with the {point} capture's "
        "arrivals; give --nic-irq to override).",)
    return NicClock(number, rows, fit, None, notes)


def refit_with_copies(records: TraceRecords, nic_rows: IntArray, arrivals: IntArray,
                      fit: TscFit, copy: IntArray, checkpoints: dict[str, IntArray],
                      rx: BoolArray) -> TscFit:
    """The TSC fit with the copies' bounds (``copy``: per row, its grant copy where it needs
    no choice, -1 elsewhere): a received frame's copy follows its backend capture and
    precedes its guest capture; a sent frame's copy precedes its backend capture. The rate
    the interrupts gave is kept (the copies bound the offset); the better fit is kept."""
    have = copy >= 0
    back = checkpoints.get("backend")
    if not have.any() or back is None:
        return fit
    guest = checkpoints.get("guest", np.full(rx.size, NA_NS))
    after = np.where(have & rx & (back != NA_NS), back, NA_NS)
    before = np.where(have & rx, guest, np.where(have & ~rx, back, NA_NS))
    origin = HzOrigin(fit.hz_uncertainty_ppm, fit.cpu_hz_given) if fit.cpu_hz_estimated \
        else None
    refit = fit_tsc(records.interrupts.tsc[nic_rows], arrivals, cpu_hz=fit.cpu_hz,
                    hz_origin=origin, copy_tsc=records.copies.tsc[copy[have]],
                    copy_after_ns=_na_float(after[have]),
                    copy_before_ns=_na_float(before[have]))
    return refit if fit_rank(refit)[0] <= fit_rank(fit)[0] else fit


def tsc_report(fit: TscFit) -> dict[str, Any]:
    """``Analysis.alignment["tsc->dom0"]`` of a fit (without its ``from``)."""
    d = dict(fit.to_dict())
    d.setdefault("quality", fit.quality)
    if "uncertainty_us" not in d:
        d["uncertainty_us"] = fit.uncertainty_ns / 1e3 if np.isfinite(fit.uncertainty_ns) \
            else None
    return d


def _na_float(t: IntArray) -> np.ndarray[Any, np.dtype[np.float64]]:
    out = t.astype(np.float64)
    out[t == NA_NS] = np.nan
    return out
