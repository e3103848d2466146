"""Ground truth of the realistic host: ``truth.csv``, both directions, by DESIGN's conventions.

One row per data segment in the captured guest's capture (TCP and UDP). Every checkpoint is
the time of the very event that wrote the record or captured the frame it stands for:

- rx: ``irq`` the HW_IRQ_HANDLED of the interrupt whose NAPI poll carried the frame;
  ``dom0_run`` = ``irq`` if the serving vCPU was already running, else its runnable→running
  after it; ``phys``, ``backend`` the captures; ``copy`` the grant copy that carried the data;
  ``guest_wake`` the guest vCPU's WAKE by netback's notification (empty if it was running);
  ``guest_run`` its runnable→running after that (if it was running: the notification);
  ``guest`` the capture; ``read`` the return of the first read covering the last byte.
- tx: ``write`` the entry of the write/send; ``guest`` the capture; ``dom0_run`` the tx
  vCPU's runnable→running after ``guest`` (= ``guest`` if it was running); ``copy`` the tx
  grant copy that took the frame; ``backend``, ``phys`` the captures.

Stage columns hold :data:`model.STAGES` on rx rows and :data:`model.TX_STAGES` on tx rows.
A row is labelled with the stage of its direction that a fault of that direction overlaps
most (≥ 1 ms). ``ip_id`` identifies datagrams (``seq`` is empty on UDP rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...model import CHECKPOINTS, STAGES, TX_STAGES
from ..truth import ANOMALY_MIN_NS, _carrier, _read_cover
from .captures import flow_columns, ip_ids
from .tables import FRAME_COLUMNS
from .traffic import IPPROTO_UDP

TIME_COLUMNS = tuple(f"t_{c}" for c in CHECKPOINTS) + ("t_write",)
STAGE_NAMES = tuple(dict.fromkeys((*STAGES, *TX_STAGES)))
STAGE_COLUMNS = tuple(f"{s}_us" for s in STAGE_NAMES)
COLUMNS = ("src", "sport", "dst", "dport", "proto", "direction", "seq", "len",
           *TIME_COLUMNS, *STAGE_COLUMNS, "total_us", "anomaly", "cause", "ip_id")
DIRECTION_STAGES = {"rx": STAGES, "tx": TX_STAGES}


def _end(seq: np.ndarray, isn: np.ndarray, plen: np.ndarray) -> np.ndarray:
    """Stream offset one past the segment's last byte (UDP flows carry offsets: isn -1)."""
    return ((seq - isn - 1) % (1 << 32)) + plen


def _rx_checkpoints(sim: Any, t: dict[str, np.ndarray], rx: np.ndarray, conn: np.ndarray,
                    r_end: np.ndarray, isn: np.ndarray) -> None:
    wire = {c: sim.wire.column(c) for c in ("dir", "conn", "seq", "plen", "t_phys", "irq",
                                             "dom0_run")}
    units = {c: sim.units.column(c) for c in ("dir", "conn", "seq", "plen", "t_backend", "copy",
                                               "guest_wake", "guest_run")}
    wrx = np.flatnonzero((wire["dir"] == 0) & (wire["plen"] > 0))
    w = _carrier(conn[rx], r_end[rx], wire["conn"][wrx],
                 _end(wire["seq"][wrx], isn[wire["conn"][wrx]], wire["plen"][wrx]), wrx)
    urx = np.flatnonzero((units["dir"] == 0) & (units["plen"] > 0))
    u = _carrier(conn[rx], r_end[rx], units["conn"][urx],
                 _end(units["seq"][urx], isn[units["conn"][urx]], units["plen"][urx]), urx)
    for col, src, idx in (("t_irq", wire["irq"], w), ("t_dom0_run", wire["dom0_run"], w),
                          ("t_phys", wire["t_phys"], w), ("t_backend", units["t_backend"], u),
                          ("t_copy", units["copy"], u), ("t_guest_wake", units["guest_wake"], u),
                          ("t_guest_run", units["guest_run"], u)):
        t[col][rx] = src[idx]
    if len(sim.reads):
        rd = np.asarray(sim.reads, dtype=np.int64).reshape(-1, 3)
        t["t_read"][rx] = _read_cover(conn[rx], r_end[rx], rd)


def _tx_checkpoints(sim: Any, t: dict[str, np.ndarray], tx: np.ndarray,
                    unit: np.ndarray) -> None:
    u = unit[tx]
    t["t_backend"][tx] = sim.units.column("t_backend")[u]
    t["t_copy"][tx] = sim.units.column("copy")[u]
    t["t_dom0_run"][tx] = sim.units.column("dom0_run")[u]
    t["t_phys"][tx] = sim.wire.column("t_phys")[sim.units.column("wire_first")[u]]


def truth_table(sim: Any, faults: list[dict[str, Any]]) -> pd.DataFrame:
    """The truth rows (rx and tx data segments of the captured guest, capture order)."""
    rows = {c: sim.rows.column(c) for c in (*FRAME_COLUMNS, "t_guest", "unit", "t_write")}
    flows = sim.flows
    udp = np.array([f.proto == IPPROTO_UDP for f in flows])
    isn = np.where(udp, -1, np.array([f.s_isn for f in flows], dtype=np.int64))
    guest = np.array([f.guest for f in flows])
    keep = np.flatnonzero((rows["plen"] > 0) & (guest[rows["conn"]] == sim.captured))
    keep = keep[np.argsort(rows["t_guest"][keep], kind="stable")]
    n = len(keep)
    conn, rx = rows["conn"][keep], rows["dir"][keep] == 0
    t = {c: np.full(n, -1, dtype=np.int64) for c in TIME_COLUMNS}
    t["t_guest"] = rows["t_guest"][keep].copy()
    r_end = _end(rows["seq"][keep], isn[conn], rows["plen"][keep])
    _rx_checkpoints(sim, t, rx, conn, r_end, isn)
    _tx_checkpoints(sim, t, ~rx, rows["unit"][keep])
    t["t_write"][~rx] = rows["t_write"][keep][~rx]
    addr = flow_columns(flows)
    out = pd.DataFrame({
        "src": np.where(rx, addr["server_ip"][conn], addr["guest_ip"][conn]),
        "sport": np.where(rx, addr["server_port"][conn], addr["guest_port"][conn]),
        "dst": np.where(rx, addr["guest_ip"][conn], addr["server_ip"][conn]),
        "dport": np.where(rx, addr["guest_port"][conn], addr["server_port"][conn]),
        "proto": addr["proto"][conn],
        "direction": np.where(rx, "rx", "tx"),
        "seq": np.where(udp[conn], -1, rows["seq"][keep]),
        "len": rows["plen"][keep],
    })
    for col in TIME_COLUMNS:
        out[col] = np.where(t[col] >= 0, t[col] / 1e9, np.nan)
    stage_ns = stage_durations(t, rx)
    for stage in STAGE_NAMES:
        out[f"{stage}_us"] = np.where(stage_ns[stage] >= 0, stage_ns[stage] / 1e3, np.nan)
    out["total_us"] = np.where(rx, t["t_read"] - t["t_irq"], t["t_phys"] - t["t_write"]) / 1e3
    out["anomaly"], out["cause"] = label(t, rx, faults)
    out["ip_id"] = ip_ids(sim)[2][keep]
    out.attrs["t_ns"] = t
    out.attrs["stage_ns"] = stage_ns
    return out


def stage_durations(t: dict[str, np.ndarray], rx: np.ndarray) -> dict[str, np.ndarray]:
    """ns of each stage on each row (the row's direction's definition; -1 where unknown)."""
    out = {s: np.full(len(rx), -1, dtype=np.int64) for s in STAGE_NAMES}
    for direction, sel in (("rx", rx), ("tx", ~rx)):
        for stage, (a, b) in DIRECTION_STAGES[direction].items():
            lo, hi = t[f"t_{a}"], t[f"t_{b}"]
            ok = sel & (lo >= 0) & (hi >= 0)
            out[stage][ok] = (hi - lo)[ok]
    return out


def label(t: dict[str, np.ndarray], rx: np.ndarray, faults: list[dict[str, Any]]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly stage and cause per row: the stage of the row's direction a fault of that
    direction overlaps most (≥ 1 ms)."""
    n = len(rx)
    best = np.zeros(n, dtype=np.int64)
    anomaly = np.full(n, "", dtype=object)
    cause = np.full(n, "", dtype=object)
    for f in faults:
        if "stage" not in f:
            continue
        direction = f.get("direction", "rx")
        sel = rx if direction == "rx" else ~rx
        for stage, (a, b) in DIRECTION_STAGES[direction].items():
            lo, hi = t[f"t_{a}"], t[f"t_{b}"]
            ov = np.minimum(hi, f["end_ns"]) - np.maximum(lo, f["start_ns"])
            hit = sel & (lo >= 0) & (hi >= 0) & (ov >= ANOMALY_MIN_NS) & (ov > best)
            best[hit] = ov[hit]
            anomaly[hit] = stage
            cause[hit] = f["cause"]
    return anomaly, cause


def write_truth(path: Any, table: pd.DataFrame) -> None:
    """truth.csv: times to the ns (9 decimals), durations to the ns (3 decimals of µs)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from ..truth import _fixed

    t, stage_ns = table.attrs["t_ns"], table.attrs["stage_ns"]
    rx = table["direction"].to_numpy() == "rx"
    total = np.where(rx, t["t_read"] - t["t_irq"], t["t_phys"] - t["t_write"])
    ok = np.where(rx, (t["t_read"] >= 0) & (t["t_irq"] >= 0),
                  (t["t_phys"] >= 0) & (t["t_write"] >= 0))
    cols: dict[str, pa.Array] = {}
    for col in COLUMNS:
        if col in TIME_COLUMNS:
            cols[col] = _fixed(t[col], 10**9, 9)
        elif col == "total_us":
            cols[col] = _fixed(np.where(ok, total, -1), 1000, 3)
        elif col in STAGE_COLUMNS:
            cols[col] = _fixed(stage_ns[col[:-3]], 1000, 3)
        elif col == "seq":
            seq = table[col].to_numpy()
            cols[col] = pa.array([str(v) if v >= 0 else "" for v in seq.tolist()])
        elif table[col].dtype == object:
            cols[col] = pa.array(table[col].to_numpy().astype(str))
        else:
            cols[col] = pa.array(table[col].to_numpy())
    with open(path, "wb") as f:
        f.write((",".join(COLUMNS) + "\n").encode())
        pacsv.write_csv(pa.table(cols), f, write_options=pacsv.WriteOptions(
            include_header=False, quoting_style="none"))
