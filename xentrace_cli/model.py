"""The latency model shared by every stage of the pipeline: checkpoints, stages, sources.

Names here are the contract of DESIGN.md: output columns are ``t_<checkpoint>`` and
``<stage>_us``. Keep them in this one place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NewType

DomainId = NewType("DomainId", int)
VcpuId = NewType("VcpuId", int)

#: Receive-direction checkpoints, in path order, with the source each comes from.
CHECKPOINTS: tuple[str, ...] = (
    "irq", "dom0_run", "phys", "backend", "copy", "guest_wake", "guest_run", "guest", "read",
)

CHECKPOINT_SOURCE: dict[str, str] = {
    "irq": "xentrace",
    "dom0_run": "xentrace",
    "phys": "phys",
    "backend": "backend",
    "copy": "xentrace",
    "guest_wake": "xentrace",
    "guest_run": "xentrace",
    "guest": "guest",
    "read": "socket_log",
}

#: The five stages: name -> (from checkpoint, to checkpoint), receive direction.
STAGES: dict[str, tuple[str, str]] = {
    "vmm": ("irq", "dom0_run"),
    "driver_domain": ("dom0_run", "backend"),
    "ring": ("backend", "copy"),
    "remap": ("copy", "guest"),
    "socket_read": ("guest", "read"),
}

#: Transmit-direction checkpoints, in path order (DESIGN.md "transmit direction").
TX_CHECKPOINTS: tuple[str, ...] = ("write", "guest", "dom0_run", "copy", "backend", "phys")

#: The five transmit stages: name -> (from checkpoint, to checkpoint). The same layer keeps
#: the same name as on receive, so one ``<stage>_us`` column serves both directions (the
#: row's ``direction`` says which); ``socket_write`` is transmit-only.
TX_STAGES: dict[str, tuple[str, str]] = {
    "socket_write": ("write", "guest"),
    "vmm": ("guest", "dom0_run"),
    "ring": ("dom0_run", "copy"),
    "remap": ("copy", "backend"),
    "driver_domain": ("backend", "phys"),
}

#: Stage names per direction, in path order.
DIRECTION_STAGES: dict[str, tuple[str, ...]] = {"rx": tuple(STAGES), "tx": tuple(TX_STAGES)}

#: Causes the attributor may name for a stalled stage; the ``tcp_*`` ones explain a gap of
#: one capture's exchanges without Xen, and ``capture_hole`` says the capture missed the
#: bytes before the gap's end, which is then only an upper bound
#: (``conversations/tcp_analysis.py``).
CAUSES: tuple[str, ...] = (
    "vcpu_runnable", "vcpu_running", "vcpu_blocked", "dom0_runnable", "ring_full",
    "lost_records",
    "tcp_rto_backoff", "tcp_retransmission", "tcp_zero_window", "tcp_window_full",
    "tcp_dup_ack", "tcp_delayed_ack", "capture_hole",
)


def format_endpoint(address: object, port: object) -> str:
    """``10.0.0.1:11211``; ``[2001:db8::1]:80`` for IPv6, so the port stays unambiguous."""
    text = "?" if address is None or address != address else str(address)  # NaN != NaN
    port_text = "?" if port is None or port != port else str(port)
    return f"[{text}]:{port_text}" if ":" in text else f"{text}:{port_text}"


def format_flow(src: object, sport: object, dst: object, dport: object,
                arrow: str = " → ") -> str:
    """``10.0.0.5:40000 → 10.0.0.1:11211``: one direction of a connection."""
    return f"{format_endpoint(src, sport)}{arrow}{format_endpoint(dst, dport)}"


def stage_column(stage: str) -> str:
    """Output column of a stage duration, in microseconds."""
    return f"{stage}_us"


def checkpoint_column(checkpoint: str) -> str:
    """Output column of a checkpoint time, epoch seconds (float) on the table's clock."""
    return f"t_{checkpoint}"


def checkpoint_ns_column(checkpoint: str) -> str:
    """Output column of a checkpoint time, epoch nanoseconds (int64) on the table's clock:
    the exact twin of :func:`checkpoint_column` (float seconds round to 240 ns)."""
    return f"t_{checkpoint}_ns"


#: Every stage of either direction, receive first.
ALL_STAGES: tuple[str, ...] = (*STAGES, *(s for s in TX_STAGES if s not in STAGES))
STAGE_COLUMNS: tuple[str, ...] = tuple(stage_column(s) for s in ALL_STAGES)


def stat_key(name: str, direction: str) -> str:
    """How statistics, budgets and baselines name a stage of a direction: ``ring`` for the
    receive direction (the default), ``tx.ring`` for transmit."""
    return name if direction == "rx" else f"{direction}.{name}"


def split_stat_key(key: str) -> tuple[str, str]:
    """``tx.ring`` → (``tx``, ``ring``); ``rx.ring`` and ``ring`` → (``rx``, ``ring``)."""
    head, dot, rest = key.partition(".")
    if dot and head in ("rx", "tx"):
        return head, rest
    return "rx", key


@dataclasses.dataclass(frozen=True)
class Sources:
    """The inputs of one analysis; any may be absent."""

    guest: Path | None = None
    """Capture inside the guest (the positional CAPTURE of ``analyze``)."""
    backend: Path | None = None
    """Capture in dom0 on the guest's backend interface ``vifD.N``."""
    phys: Path | None = None
    """Capture in dom0 on the physical NIC."""
    xentrace: Path | None = None
    """Binary trace written by ``xentrace``."""
    socket_log: Path | None = None
    """strace output of the guest application, or a CSV/JSON Lines read log."""

    @property
    def present(self) -> list[str]:
        """Names of the sources given, in path order."""
        order = ("xentrace", "phys", "backend", "guest", "socket_log")
        return [name for name in order if getattr(self, name) is not None]

    def shared_files(self) -> list[list[str]]:
        """Groups of two or more sources naming the same file (same device and inode, so a
        link or another spelling of the path counts too): one file cannot be two capture
        points. Paths that cannot be looked at are left to the readers."""
        by_file: dict[tuple[int, int], list[str]] = {}
        for name in self.present:
            try:
                st = Path(getattr(self, name)).stat()
            except OSError:
                continue
            by_file.setdefault((st.st_dev, st.st_ino), []).append(name)
        return [names for names in by_file.values() if len(names) > 1]

#: Receive intervals that stand for several stages when a source is missing, in path order.
MERGED_INTERVALS: tuple[str, ...] = (
    "dom0_run_to_phys", "dom0_run_to_copy", "phys_to_copy", "phys_to_guest", "phys_to_read",
    "backend_to_guest", "backend_to_read", "copy_to_read",
)
#: Transmit intervals that stand for several stages when a source is missing, in path order.
TX_INTERVALS: tuple[str, ...] = (
    "write_to_dom0_run", "write_to_backend", "write_to_phys", "guest_to_backend",
    "guest_to_phys", "copy_to_phys",
)
#: What one capture alone measures (``lone.py``).
LONE_INTERVALS: tuple[str, ...] = ("request_to_response", "response_to_next")

#: Every column of the analysis table, in order: the schema never varies with the sources
#: given (a column a run cannot measure is NaN or empty).
#: The checkpoints the analysis table has columns for: receive path, then ``write``.
TABLE_CHECKPOINTS: tuple[str, ...] = (*CHECKPOINTS, "write")

TABLE_COLUMNS: tuple[str, ...] = (
    "src", "sport", "dst", "dport", "proto", "direction", "seq", "len", "frame",
    *(checkpoint_column(c) for c in TABLE_CHECKPOINTS),
    *(checkpoint_ns_column(c) for c in TABLE_CHECKPOINTS),
    *STAGE_COLUMNS,
    *(stage_column(i) for i in (*MERGED_INTERVALS, *TX_INTERVALS, *LONE_INTERVALS)),
    "total_us", "anomaly", "stall", "cause", "cause_detail", "retransmitted", "uncertainty_us",
)
#: The analysis table's columns of few distinct values: the only ones its Parquet output
#: dictionary-encodes (Parquet has none for booleans). Tried on the times and durations too
#: (pyarrow's default), it made the writer take 1.7-2x as long on a million-packet set's table
#: and the file 0.07 % smaller (2.7 % on the toy host's set).
TABLE_DICTIONARY_COLUMNS: tuple[str, ...] = (
    "src", "sport", "dst", "dport", "proto", "direction", "anomaly", "stall", "cause",
    "cause_detail",
)
