"""What ``capinfos`` tells about a capture: format, interfaces, link types, packets, times.

:func:`capture_info` walks the file's records without decoding packets (the same readers as
the packet table, so it is as fast and as bounded in memory) and returns a
:class:`CaptureInfo`. A capture cut short or corrupt is described (``truncated_at``) and also
reported with the usual ``TruncatedInput`` warning.

Memory stays bounded whatever the file holds: packets are counted per batch, packets per
interface in one integer array, and only the first :data:`LISTED_INTERFACES` interfaces are
described one by one (a pcapng file may declare a million empty interfaces; the rest are
summarized as a count).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import linktypes
from ..errors import XenlatWarning, warn
from ..groups import unique
from .containers import open_capture

ProgressCallback = Callable[[int, int], None]

#: Interfaces described one by one; those past it are only counted (with their packets).
LISTED_INTERFACES = 100


def format_epoch_ns(ts_ns: int | None) -> str | None:
    """``1700000000.123456789`` (epoch seconds with 9 decimals, as tshark prints them)."""
    if ts_ns is None:
        return None
    sec, frac = divmod(int(ts_ns), 1_000_000_000)
    return f"{sec}.{frac:09d}"


def format_utc_ns(ts_ns: int | None) -> str | None:
    """``2023-11-14T22:13:20.123456789Z``."""
    if ts_ns is None:
        return None
    sec, frac = divmod(int(ts_ns), 1_000_000_000)
    try:
        when = dt.datetime.fromtimestamp(sec, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


@dataclasses.dataclass
class CaptureInfo:
    """Summary of one capture file."""

    path: str
    #: ``pcap``, ``nsecpcap``, ``modpcap`` (Kuznetzov) or ``pcapng``
    format: str
    gzip: bool
    #: ``LE``, ``BE``, or per section joined with ``/`` (pcapng)
    byte_order: str
    file_bytes: int
    #: pcap: ``2.4``; pcapng: None
    version: str | None
    sections: int
    #: the first LISTED_INTERFACES interfaces, described
    interfaces: list[dict[str, Any]]
    #: link type number -> frames of it
    linktype_packets: dict[int, int]
    #: frames as tshark counts them (pcapng custom blocks included)
    frames: int
    packets: int
    packets_without_timestamp: int
    first_ns: int | None
    last_ns: int | None
    #: frames whose timestamp is earlier than the one before
    out_of_order: int
    data_bytes: int
    wire_bytes: int
    #: pcapng block counts by type (``EPB``, ``IDB``, ``ISB``/``0x5`` …)
    blocks: dict[str, int]
    truncated: bool
    #: where reading stopped: ``{"offset", "packet", "problem", "corrupt"}``
    truncated_at: dict[str, Any] | None
    #: interfaces in the file (``interfaces`` lists the first LISTED_INTERFACES of them)
    interface_count: int = 0
    #: packets on the interfaces not listed
    unlisted_packets: int = 0

    @property
    def duration_ns(self) -> int | None:
        if self.first_ns is None or self.last_ns is None:
            return None
        return self.last_ns - self.first_ns

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (times as integer ns, epoch strings and UTC ISO)."""
        duration = self.duration_ns
        rate = None
        if duration and duration > 0:
            rate = self.packets / (duration / 1e9)
        return {
            "path": self.path,
            "format": self.format,
            "gzip": self.gzip,
            "byte_order": self.byte_order,
            "version": self.version,
            "file_bytes": self.file_bytes,
            "sections": self.sections,
            "interfaces": self.interfaces,
            "interface_count": self.interface_count,
            "interfaces_not_listed": None if self.interface_count <= len(self.interfaces)
            else {"interfaces": self.interface_count - len(self.interfaces),
                  "packets": self.unlisted_packets},
            "linktypes": [{"linktype": t, "name": linktypes.name(t), "packets": n}
                          for t, n in sorted(self.linktype_packets.items())],
            "frames": self.frames,
            "packets": self.packets,
            "packets_without_timestamp": self.packets_without_timestamp,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "first_time": format_epoch_ns(self.first_ns),
            "last_time": format_epoch_ns(self.last_ns),
            "first_utc": format_utc_ns(self.first_ns),
            "last_utc": format_utc_ns(self.last_ns),
            "duration_ns": duration,
            "packets_per_s": rate,
            "out_of_order": self.out_of_order,
            "data_bytes": self.data_bytes,
            "wire_bytes": self.wire_bytes,
            "blocks": self.blocks,
            "truncated": self.truncated,
            "truncated_at": self.truncated_at,
        }


def _count(counts: dict[int, int], values: np.ndarray) -> None:
    """Add each distinct value's occurrences in ``values`` to ``counts``."""
    distinct, codes = unique(values, return_inverse=True)  # np.unique would import numpy.ma
    for value, count in zip(distinct.tolist(), np.bincount(codes).tolist(), strict=True):
        counts[value] = counts.get(value, 0) + count


def _count_interfaces(counts: np.ndarray, interface: np.ndarray) -> np.ndarray:
    """``counts`` (packets per interface index) with a batch's interfaces added."""
    if not len(interface):
        return counts
    batch = np.bincount(interface, minlength=len(counts))
    batch[:len(counts)] += counts
    return batch


def _listed_interfaces(reader: Any, per_interface: np.ndarray) -> list[dict[str, Any]]:
    """The first LISTED_INTERFACES interfaces, described, with their packets."""
    listed = []
    for i, itf in enumerate(reader.interfaces[:LISTED_INTERFACES]):
        entry = itf.to_dict()
        entry["index"] = i
        entry["packets"] = int(per_interface[i]) if i < len(per_interface) else 0
        listed.append(entry)
    return listed


def capture_info(path: str | os.PathLike[str],
                 on_progress: ProgressCallback | None = None) -> CaptureInfo:
    """Describe a capture (pcap, pcapng, gzip-compressed either) without decoding packets."""
    reader = open_capture(path)
    per_linktype: dict[int, int] = {}
    per_interface = np.zeros(0, dtype=np.int64)
    packets = no_ts = data_bytes = wire_bytes = out_of_order = 0
    first_ns: int | None = None
    last_ns: int | None = None
    prev_ns: int | None = None
    with reader:
        for batch in reader.batches():
            packets += len(batch)
            data_bytes += int(batch.caplen.sum())
            wire_bytes += int(batch.wirelen.sum())
            _count(per_linktype, batch.linktype)
            per_interface = _count_interfaces(per_interface, batch.interface)
            ts = batch.ts_ns[batch.ts_valid]
            no_ts += len(batch) - len(ts)
            if len(ts):
                lo, hi = int(ts.min()), int(ts.max())
                first_ns = lo if first_ns is None else min(first_ns, lo)
                last_ns = hi if last_ns is None else max(last_ns, hi)
                out_of_order += int((np.diff(ts) < 0).sum())
                if prev_ns is not None and ts[0] < prev_ns:
                    out_of_order += 1
                prev_ns = int(ts[-1])
            if on_progress is not None:
                on_progress(reader.position, reader.file_bytes)
        if on_progress is not None:
            on_progress(reader.file_bytes, reader.file_bytes)
        interfaces = _listed_interfaces(reader, per_interface)
        damage = reader.damage
        is_ng = reader.format == "pcapng"
        fields: Any = reader  # the container's own fields: pcapng's sections, pcap's version
        info = CaptureInfo(
            path=str(path), format=reader.format, gzip=reader.gzipped,
            byte_order="/".join(fields.byte_orders) if is_ng and fields.byte_orders
            else reader.byte_order,
            file_bytes=reader.file_bytes,
            version=None if is_ng else f"{fields.version_major}.{fields.version_minor}",
            sections=fields.sections if is_ng else 1, interfaces=interfaces,
            linktype_packets=per_linktype, frames=reader.frames, packets=packets,
            packets_without_timestamp=no_ts, first_ns=first_ns, last_ns=last_ns,
            out_of_order=out_of_order, data_bytes=data_bytes, wire_bytes=wire_bytes,
            blocks=dict(fields.block_counts) if is_ng else {},
            truncated=damage is not None,
            truncated_at=None if damage is None else {
                "offset": damage.offset, "packet": damage.packet, "problem": damage.problem,
                "corrupt": damage.corrupt},
            interface_count=len(reader.interfaces),
            unlisted_packets=int(per_interface[LISTED_INTERFACES:].sum()))
        if reader.bad_timestamps:
            warn(XenlatWarning(
                f"{path}: {reader.bad_timestamps} timestamps beyond the int64 nanosecond range "
                "(year 2262) were left out"), stacklevel=2)
        warning = reader.damage_warning()
    if warning is not None:
        warn(warning, stacklevel=2)
    return info
