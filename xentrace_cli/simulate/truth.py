"""The ground truth of a simulated run: ``truth.csv``, one row per data segment in the guest.

Checkpoints are true time (dom0-clock epoch seconds). A row covering several wire frames or
netback units (offload) takes each checkpoint from the frame or unit carrying its LAST byte,
the same rule that defines ``read``. A row is anomalous in a stage when an injected fault's
interval overlaps that stage by at least 1 ms (packets that merely shared a stall included).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..model import CHECKPOINTS, STAGES
from .captures import GUEST_IP, SERVER_IP, SERVER_PORT, columns
from .physics import MS, Sim

#: A stage is labelled when a fault overlaps it by at least this much.
ANOMALY_MIN_NS = 1 * MS
#: Receive checkpoints, then the one transmit checkpoint they lack (write → guest → backend →
#: phys: model.TX_CHECKPOINTS).
TIME_COLUMNS = tuple(f"t_{c}" for c in CHECKPOINTS) + ("t_write",)
STAGE_COLUMNS = tuple(f"{s}_us" for s in STAGES)
COLUMNS = ("src", "sport", "dst", "dport", "proto", "direction", "seq", "len",
           *TIME_COLUMNS, *STAGE_COLUMNS, "total_us", "anomaly", "cause")


def _stream_end(seq: np.ndarray, isn: np.ndarray, plen: np.ndarray) -> np.ndarray:
    """Stream offset one past the segment's last byte."""
    return ((seq - isn - 1) % (1 << 32)) + plen


def _carrier(conn: np.ndarray, end: np.ndarray, c_conn: np.ndarray, c_end: np.ndarray,
             c_id: np.ndarray) -> np.ndarray:
    """For each (conn, end), the id of the first carrier of that conn whose end ≥ end."""
    out = np.full(len(end), -1, dtype=np.int64)
    for c in np.unique(conn):
        sel = np.flatnonzero(c_conn == c)
        srt = sel[np.argsort(c_end[sel], kind="stable")]
        mine = np.flatnonzero(conn == c)
        pos = np.searchsorted(c_end[srt], end[mine], side="left")
        ok = pos < len(srt)
        out[mine[ok]] = c_id[srt[pos[ok]]]
    return out


def truth_table(sim: Sim, faults: list[dict[str, Any]]) -> pd.DataFrame:
    """The truth rows (rx and tx data segments, guest capture order)."""
    rows = columns(sim.rows, ("dir", "conn", "seq", "plen", "t_guest", "unit", "t_write"))
    units = columns(sim.units, ("dir", "conn", "seq", "plen", "t_backend", "copy",
                                "guest_wake", "guest_run", "wire_first"))
    wire = columns(sim.wire, ("dir", "conn", "seq", "plen", "t_phys", "irq", "dom0_run"))
    s_isn = np.array([c.s_isn for c in sim.conns], dtype=np.int64)
    sport = np.array([c.sport for c in sim.conns], dtype=np.int64)

    keep = np.flatnonzero(rows["plen"] > 0)
    keep = keep[np.argsort(rows["t_guest"][keep], kind="stable")]
    n = len(keep)
    conn, d = rows["conn"][keep], rows["dir"][keep]
    rx = d == 0
    t: dict[str, np.ndarray] = {c: np.full(n, -1, dtype=np.int64) for c in TIME_COLUMNS}
    t["t_guest"] = rows["t_guest"][keep]
    u = rows["unit"][keep]
    t["t_backend"] = units["t_backend"][u]

    # rx: the wire frame and netback unit carrying each row's last byte
    r_end = _stream_end(rows["seq"][keep], s_isn[conn], rows["plen"][keep])
    wrx = np.flatnonzero((wire["dir"] == 0) & (wire["plen"] > 0))
    w_end = _stream_end(wire["seq"][wrx], s_isn[wire["conn"][wrx]], wire["plen"][wrx])
    w = _carrier(conn[rx], r_end[rx], wire["conn"][wrx], w_end, wrx)
    urx = np.flatnonzero((units["dir"] == 0) & (units["plen"] > 0))
    u_end = _stream_end(units["seq"][urx], s_isn[units["conn"][urx]], units["plen"][urx])
    ur = _carrier(conn[rx], r_end[rx], units["conn"][urx], u_end, urx)
    for col, src, idx in (("t_irq", wire["irq"], w), ("t_dom0_run", wire["dom0_run"], w),
                          ("t_phys", wire["t_phys"], w), ("t_backend", units["t_backend"], ur),
                          ("t_copy", units["copy"], ur),
                          ("t_guest_wake", units["guest_wake"], ur),
                          ("t_guest_run", units["guest_run"], ur)):
        t[col][rx] = src[idx]
    # read: the first read on the connection whose cumulative bytes cover the last byte
    if len(sim.reads):
        rd = np.asarray(sim.reads, dtype=np.int64).reshape(-1, 3)
        t["t_read"][rx] = _read_cover(conn[rx], r_end[rx], rd)
    # tx: write (call entry), guest, backend, phys
    tx = ~rx
    t["t_write"][tx] = rows["t_write"][keep][tx]
    t["t_phys"][tx] = wire["t_phys"][_tx_wire(sim, u[tx])]

    out = pd.DataFrame({
        "src": np.where(rx, SERVER_IP, GUEST_IP),
        "sport": np.where(rx, SERVER_PORT, sport[conn]),
        "dst": np.where(rx, GUEST_IP, SERVER_IP),
        "dport": np.where(rx, sport[conn], SERVER_PORT),
        "proto": 6,
        "direction": np.where(rx, "rx", "tx"),
        "seq": rows["seq"][keep],
        "len": rows["plen"][keep],
    })
    for col in TIME_COLUMNS:
        v = t[col]
        out[col] = np.where(v >= 0, v / 1e9, np.nan)
    for stage, (a, b) in STAGES.items():
        dur = (t[f"t_{b}"] - t[f"t_{a}"]) / 1e3
        out[f"{stage}_us"] = np.where(rx & (t[f"t_{b}"] >= 0) & (t[f"t_{a}"] >= 0), dur, np.nan)
    total = np.where(rx, t["t_read"] - t["t_irq"], t["t_phys"] - t["t_write"]) / 1e3
    out["total_us"] = total
    anomaly, cause = label(t, rx, faults)
    out["anomaly"] = anomaly
    out["cause"] = cause
    # the ns checkpoints, for tests and the writer
    out.attrs["t_ns"] = t
    return out


def _read_cover(conn: np.ndarray, end: np.ndarray, reads: np.ndarray) -> np.ndarray:
    """Return time of the first read on ``conn`` whose cumulative end ≥ ``end``."""
    out = np.full(len(end), -1, dtype=np.int64)
    for c in np.unique(conn):
        mine = np.flatnonzero(conn == c)
        rc = reads[reads[:, 0] == c]
        pos = np.searchsorted(rc[:, 1], end[mine], side="left")
        ok = pos < len(rc)
        out[mine[ok]] = rc[pos[ok], 2]
    return out


def _tx_wire(sim: Sim, unit_ids: np.ndarray) -> np.ndarray:
    return sim.units.column("wire_first")[unit_ids]


def label(t: dict[str, np.ndarray], rx: np.ndarray, faults: list[dict[str, Any]]) -> tuple[
        np.ndarray, np.ndarray]:
    """Anomaly stage and cause per row: the stage a fault's interval overlaps most (≥ 1 ms)."""
    n = len(rx)
    best = np.zeros(n, dtype=np.int64)
    anomaly = np.full(n, "", dtype=object)
    cause = np.full(n, "", dtype=object)
    for f in faults:
        if "stage" not in f:
            continue
        for stage, (a, b) in STAGES.items():
            lo, hi = t[f"t_{a}"], t[f"t_{b}"]
            valid = rx & (lo >= 0) & (hi >= 0)
            ov = np.minimum(hi, f["end_ns"]) - np.maximum(lo, f["start_ns"])
            hit = valid & (ov >= ANOMALY_MIN_NS) & (ov > best)
            best[hit] = ov[hit]
            anomaly[hit] = stage
            cause[hit] = f["cause"]
    return anomaly, cause


def _fixed(v: np.ndarray, scale: int, digits: int) -> pa.Array:
    """Non-negative integers ``v`` / ``scale`` as exact decimal text; empty where ``v`` < 0."""
    v = np.asarray(v, dtype=np.int64)
    w = np.maximum(v, 0)
    whole = pc.cast(pa.array(w // scale), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(w % scale), pa.string()), width=digits, padding="0")
    return pc.if_else(pa.array(v >= 0), pc.binary_join_element_wise(whole, frac, "."), "")


def write_truth(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """truth.csv: times to the ns (9 decimals), durations to the ns (3 decimals of µs)."""
    t = table.attrs["t_ns"]
    rx = table["direction"].to_numpy() == "rx"
    cols: dict[str, pa.Array] = {}
    for col in COLUMNS:
        if col in TIME_COLUMNS:
            cols[col] = _fixed(t[col], 10**9, 9)
        elif col == "total_us":
            ns = np.where(rx, t["t_read"] - t["t_irq"], t["t_phys"] - t["t_write"])
            ok = np.where(rx, (t["t_read"] >= 0) & (t["t_irq"] >= 0),
                          (t["t_phys"] >= 0) & (t["t_write"] >= 0))
            cols[col] = _fixed(np.where(ok, ns, -1), 1000, 3)
        elif col in STAGE_COLUMNS:
            a, b = STAGES[col[:-3]]
            ok = rx & (t[f"t_{a}"] >= 0) & (t[f"t_{b}"] >= 0)
            cols[col] = _fixed(np.where(ok, t[f"t_{b}"] - t[f"t_{a}"], -1), 1000, 3)
        elif table[col].dtype == object:
            cols[col] = pa.array(table[col].to_numpy().astype(str))
        else:
            cols[col] = pa.array(table[col].to_numpy())
    with open(path, "wb") as f:
        f.write((",".join(COLUMNS) + "\n").encode())
        pacsv.write_csv(pa.table(cols), f, write_options=pacsv.WriteOptions(
            include_header=False, quoting_style="none"))
