"""The tables the realistic host's event loop fills: wire frames, netback units, guest frames.

Same layout as the toy host's (:class:`..physics.Table`: one list of ints per row, -1 where
not applicable), with the columns the realistic path adds: which pCPU took the interrupt and
which dom0 vCPU served it, the transmit path's dom0 run and copy. ``conn`` is a flow id over
every guest (:class:`.traffic.Flow`).
"""

from __future__ import annotations

from ..physics import Table

FRAME_COLUMNS = ("dir", "conn", "seq", "ack", "flags", "plen", "cpos")
WIRE_COLUMNS = (*FRAME_COLUMNS, "t_nic", "t_phys", "irq", "dom0_run", "unit", "req",
                "irq_cpu", "nic_vcpu")
UNIT_COLUMNS = (*FRAME_COLUMNS, "t_backend", "copy", "copy_cpu", "batch", "guest_wake",
                "guest_run", "req", "wire_first", "wire_last", "dom0_run", "copy_vcpu")
ROW_COLUMNS = (*FRAME_COLUMNS, "t_guest", "unit", "t_socket", "t_write", "req")
F_DIR, F_CONN, F_SEQ, F_ACK, F_FLAGS, F_PLEN, F_CPOS = range(7)
W_NIC, W_PHYS, W_IRQ, W_RUN, W_UNIT, W_REQ, W_IRQCPU, W_VCPU = range(7, 15)
(U_BACKEND, U_COPY, U_COPY_CPU, U_BATCH, U_WAKE, U_RUN, U_REQ, U_WFIRST, U_WLAST, U_DOM0RUN,
 U_COPY_VCPU) = range(7, 18)
R_GUEST, R_UNIT, R_SOCKET, R_WRITE, R_REQ = range(7, 12)
#: Time columns (shifted when segments are joined) and index columns (re-based: the table
#: they point into) of each table.
TIME_COLUMNS = {"wire": ("t_nic", "t_phys", "irq", "dom0_run"),
                "units": ("t_backend", "copy", "guest_wake", "guest_run", "dom0_run"),
                "rows": ("t_guest", "t_socket", "t_write")}
INDEX_COLUMNS = {"wire": {"unit": "units"}, "units": {"wire_first": "wire", "wire_last": "wire"},
                 "rows": {"unit": "units"}}


def new_tables() -> dict[str, Table]:
    return {"wire": Table(*WIRE_COLUMNS), "units": Table(*UNIT_COLUMNS),
            "rows": Table(*ROW_COLUMNS)}
