"""Selecting what a report shows: the rows of an analysis, and the statistics made from them.

The analysis always runs on every packet: the clock fits, the interrupt discovery, the
copy batches and the anomaly baselines need all of them, and a filtered run would lose the
vmm/driver_domain split and the causes. The user's selection — a Wireshark display filter
(``-Y``), a time window (``--begin/--end``), an address (``--host``), a port (``--port``), a
smallest duration (``--min-duration``) — is applied afterwards, to the rows of the table
(and so to the statistics, which are computed from them) and to the lone-capture exchanges.
``analyze``, ``report``, ``check`` and ``baseline`` all go through :func:`select`.

``-Y`` runs tshark once over the *anchor* capture (the guest's; else the backend's; else the
physical NIC's) and keeps the rows whose ``frame`` — that capture's frame number of the
segment's first frame — tshark kept.

Times (``--begin``, ``--end``) are compared with each row's first checkpoint, on the table's
clock (``table.attrs["clock"]``); they are written ``+1.5s`` / ``+500ms`` (after the first
packet of the table), as epoch seconds (``1767229200.25``), as an ISO 8601 date-time
(``2026-01-01T01:00:00.25Z``; UTC unless it says otherwise) or as a time of day
(``01:00:00.25``, UTC, on the date of the first packet). Both ends are inclusive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from ..errors import OptionError
from ..model import (
    LONE_INTERVALS,
    MERGED_INTERVALS,
    STAGE_COLUMNS,
    TABLE_CHECKPOINTS,
    TX_INTERVALS,
    checkpoint_column,
    checkpoint_ns_column,
    stage_column,
)

if TYPE_CHECKING:  # pandas and numpy stay out of the CLI's import path until a command runs
    import numpy as np
    import pandas as pd

    from ..model import Sources
    from .result import Analysis

#: The capture whose frame numbers ``-Y`` selects by, in order of preference.
ANCHOR_CAPTURES: tuple[str, ...] = ("guest", "backend", "phys")
#: Columns that measure a row's duration, when ``total_us`` does not.
DURATION_COLUMNS: tuple[str, ...] = (
    *STAGE_COLUMNS, *(stage_column(i) for i in (*MERGED_INTERVALS, *TX_INTERVALS,
                                                *LONE_INTERVALS)))

_TIME_OF_DAY = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
                  r"(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH = re.compile(r"^\d+(?:\.\d{1,9})?$")


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to report of an analysis; every field None selects everything."""

    display_filter: str | None = None
    """Wireshark display filter, evaluated by tshark on the anchor capture."""
    begin: str | None = None
    """First time kept (see the module docstring for the forms)."""
    end: str | None = None
    """Last time kept."""
    host: str | None = None
    """Keep the segments from or to this IP address."""
    port: int | None = None
    """Keep the segments from or to this TCP/UDP port."""
    min_duration_us: float | None = None
    """Keep the segments that took at least this long (``total_us``; one capture alone: the
    longest interval measured on the row)."""

    @property
    def active(self) -> bool:
        """True when something is filtered."""
        return any(v is not None for v in dataclasses.astuple(self))

    def describe(self) -> str:
        """The selection as the options that made it, e.g. ``--host 10.0.0.1, --port 80``."""
        parts = []
        if self.display_filter is not None:
            parts.append(f"-Y {self.display_filter!r}")
        for name in ("begin", "end", "host", "port"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"--{name} {value}")
        if self.min_duration_us is not None:
            from ..units import format_duration

            parts.append(f"--min-duration {format_duration(self.min_duration_us)}")
        return ", ".join(parts)


def select(analysis: Analysis, selection: Selection) -> Analysis:
    """The analysis restricted to the selected rows (statistics follow, as they are computed
    from the table); the anomaly baselines, the alignment and the causes stay those of the
    whole run. Raises ``OptionError`` for a selection that cannot be evaluated."""
    if not selection.active:
        return analysis
    table = analysis.table
    keep = row_mask(table, selection, analysis.sources)
    kept = table[keep]
    flows = analysis.flows
    if flows is not None and len(flows):
        flows = flows[_flow_mask(flows, kept, selection, table)]
    note = (f"showing {len(kept)} of {len(table)} data segments ({selection.describe()}); "
            "clocks, baselines and causes come from all of them.")
    return dataclasses.replace(analysis, table=kept, flows=flows,
                               notes=[*analysis.notes, note])


def row_mask(table: pd.DataFrame, selection: Selection, sources: Sources | None = None
             ) -> np.ndarray:
    """Boolean per row of the analysis table: the row is selected."""
    import numpy as np

    keep = np.ones(len(table), dtype=bool)
    if selection.display_filter is not None:
        keep &= _display_filter_mask(table, selection.display_filter, sources)
    if selection.begin is not None or selection.end is not None:
        when = row_times_ns(table)
        first = int(when[when != _NO_TIME].min()) if (when != _NO_TIME).any() else None
        if selection.begin is not None:
            keep &= when >= parse_time(selection.begin, first, "--begin")
        if selection.end is not None:
            keep &= (when <= parse_time(selection.end, first, "--end")) & (when != _NO_TIME)
    if selection.host is not None:
        keep &= _endpoint_mask(table, ("src", "dst"), normalize_host(selection.host))
    if selection.port is not None:
        keep &= _endpoint_mask(table, ("sport", "dport"), selection.port)
    if selection.min_duration_us is not None:
        keep &= row_durations_us(table) >= selection.min_duration_us
    return keep


def anchor_capture(sources: Sources | None) -> Any:
    """The path of the capture the table's ``frame`` numbers refer to, or None."""
    if sources is None:
        return None
    return next((getattr(sources, n) for n in ANCHOR_CAPTURES
                 if getattr(sources, n) is not None), None)


def _display_filter_mask(table: pd.DataFrame, display_filter: str,
                         sources: Sources | None) -> np.ndarray:
    from ..sources.packets import tshark_frames

    path = anchor_capture(sources)
    if path is None:
        raise OptionError("-Y needs a packet capture to evaluate the filter on")
    frames = tshark_frames(path, display_filter)
    if "frame" not in table.columns:
        raise OptionError("-Y: the table has no frame numbers to select by")
    return table["frame"].isin(frames).to_numpy(dtype=bool)


def _endpoint_mask(table: pd.DataFrame, columns: tuple[str, str], value: object
                   ) -> np.ndarray:
    import numpy as np

    hit = np.zeros(len(table), dtype=bool)
    for column in columns:
        if column in table.columns:
            values = table[column]
            values = values.astype(str) if isinstance(value, str) else values
            hit |= (values == value).to_numpy(dtype=bool, na_value=False)
    return hit


def normalize_host(host: str) -> str:
    """An address as the tables write it (IPv6 compressed, lower case); OptionError if not
    an IP address."""
    try:
        return str(ipaddress.ip_address(host.strip().strip("[]")))
    except ValueError:
        raise OptionError(f"--host: {host!r} is not an IPv4 or IPv6 address") from None


_NO_TIME = -(1 << 63)


def row_times_ns(table: pd.DataFrame) -> np.ndarray:
    """Per row, its first checkpoint in epoch ns on the table's clock (``_NO_TIME`` when the
    row has none): from the exact ``t_<checkpoint>_ns`` columns, else the float seconds."""
    import numpy as np
    import pandas as pd

    best = np.full(len(table), np.iinfo(np.int64).max, dtype=np.int64)
    for point in TABLE_CHECKPOINTS:
        exact, seconds = checkpoint_ns_column(point), checkpoint_column(point)
        if exact in table.columns and table[exact].notna().any():
            values = pd.array(table[exact], dtype="Int64")
            t = values.to_numpy(dtype=np.int64, na_value=np.iinfo(np.int64).max)
        elif seconds in table.columns:
            s = pd.to_numeric(table[seconds], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(s)
            t = np.full(len(table), np.iinfo(np.int64).max, dtype=np.int64)
            t[ok] = np.rint(s[ok] * 1e9).astype(np.int64)
        else:
            continue
        best = np.minimum(best, t)
    return np.where(best == np.iinfo(np.int64).max, _NO_TIME, best)


def row_durations_us(table: pd.DataFrame) -> np.ndarray:
    """Per row, ``total_us``, or where the row has none the longest interval measured on it
    (one capture alone: request → response, response → next); NaN when nothing is."""
    import numpy as np
    import pandas as pd

    def column(name: str) -> np.ndarray:
        if name not in table.columns:
            return np.full(len(table), np.nan)
        return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)

    total = column("total_us")
    parts = [column(c) for c in DURATION_COLUMNS if c in table.columns]
    if parts:
        stacked = np.vstack(parts)
        have = np.isfinite(stacked).any(axis=0)
        longest = np.full(len(table), np.nan)
        longest[have] = np.nanmax(stacked[:, have], axis=0)
        total = np.where(np.isfinite(total), total, longest)
    return total


def parse_time(text: str, first_ns: int | None, option: str = "--begin") -> int:
    """A ``--begin``/``--end`` value as epoch ns (see the module docstring for the forms);
    ``first_ns`` is the table's first time (None for an empty table). OptionError if bad."""
    value = text.strip()
    if value.startswith("+"):
        from ..units import parse_duration_us

        try:
            offset_us = parse_duration_us(value[1:])
        except ValueError:
            raise OptionError(f"{option} {text!r}: write +DURATION such as +1.5s or +200ms "
                              "(after the first packet)") from None
        return (first_ns or 0) + round(offset_us * 1e3)
    if _EPOCH.match(value):
        whole, _, frac = value.partition(".")
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    found = _ISO.match(value)
    if found:
        day, hh, mm, ss, frac, zone = found.groups()
        return _iso_ns(day, int(hh), int(mm), int(ss), frac, zone, text, option)
    found = _TIME_OF_DAY.match(value)
    if found:
        hh, mm, ss, frac = found.groups()
        if first_ns is None:
            return 0
        day = dt.datetime.fromtimestamp(first_ns // 1_000_000_000, dt.UTC).date().isoformat()
        return _iso_ns(day, int(hh), int(mm), int(ss), frac, "Z", text, option)
    raise OptionError(f"{option} {text!r}: not a time; write +1.5s (after the first packet), "
                      "epoch seconds, 2026-01-01T01:00:00.25Z or 01:00:00.25 (UTC)")


def _iso_ns(day: str, hh: int, mm: int, ss: int, frac: str | None, zone: str | None,
            text: str, option: str) -> int:
    try:
        offset = dt.timedelta(0)
        if zone and zone != "Z":
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        moment = dt.datetime.fromisoformat(day).replace(
            hour=hh, minute=mm, second=ss, tzinfo=dt.timezone(offset))
    except ValueError as exc:
        raise OptionError(f"{option} {text!r}: {exc}") from None
    return int(moment.timestamp()) * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


def _flow_mask(flows: pd.DataFrame, kept: pd.DataFrame, selection: Selection,
               table: pd.DataFrame) -> np.ndarray:
    """The exchanges (lone view) of the connections that still have a row, in the window."""
    import numpy as np

    def keys(frame: pd.DataFrame, a: tuple[str, str], b: tuple[str, str]) -> pd.Series:
        return (frame[a[0]].astype(str) + ":" + frame[a[1]].astype(str) + "|"
                + frame[b[0]].astype(str) + ":" + frame[b[1]].astype(str))

    ends = (("src", "sport"), ("dst", "dport"))
    if not all(c in flows.columns for pair in ends for c in pair) or \
            not all(c in kept.columns for pair in ends for c in pair):
        return np.ones(len(flows), dtype=bool)
    live = set(keys(kept, *ends)) | set(keys(kept, ends[1], ends[0]))
    keep = keys(flows, *ends).isin(live).to_numpy(dtype=bool)
    if (selection.begin is not None or selection.end is not None) and "t_request" in flows:
        import pandas as pd

        when = pd.to_numeric(flows["t_request"], errors="coerce").to_numpy(float) * 1e9
        all_times = row_times_ns(table)
        first = int(all_times[all_times != _NO_TIME].min()) \
            if (all_times != _NO_TIME).any() else None
        # (not in place: pandas' arrays are read-only under copy-on-write)
        if selection.begin is not None:
            keep = keep & (when >= parse_time(selection.begin, first, "--begin") - 1e3)
        if selection.end is not None:
            keep = keep & (when <= parse_time(selection.end, first, "--end") + 1e3)
    return keep
