"""What scenario.json says about the realistic host: its shape and who served what when.

``schedules`` lets a test check an analyzer's choices: the pCPU that took the NIC interrupt
and the dom0 vCPU it was forwarded to over time, and per guest the dom0 vCPU of its netback
receive thread and of its transmit path; each a list of ``{"start_ns", <value>}`` change
points, the first at the start of the run. The scalar ``nic_irq_vcpu``, ``netback_rx_vcpu``
and ``netback_tx_vcpu`` keys the toy host writes hold the values at the start.
"""

from __future__ import annotations

from typing import Any

from .traffic import GUEST_IPS, RESOLVER_IP, RESOLVER_PORT


def _points(points: list[tuple[int, int]], key: str) -> list[dict[str, int]]:
    return [{"start_ns": int(t), key: int(v)} for t, v in points]


def realistic_host(sim: Any) -> dict[str, Any]:
    """The host part of scenario.json."""
    shape = sim.shape
    sched = sim.schedules()
    rx = {str(g): _points(p, "vcpu") for g, p in sched["netback_rx_vcpu"].items()}
    tx = {str(g): _points(p, "vcpu") for g, p in sched["netback_tx_vcpu"].items()}
    return {
        "host": "realistic",
        "shape": shape.to_dict(),
        "guest_vcpu": {"domid": sim.captured, "vcpu": 0, "pcpu": sim.guest.pcpu.id},
        "guests": [{"domid": g, "vcpu": 0, "pcpu": shape.guest_pcpu(g), "ip": GUEST_IPS[g],
                    "captured": g == sim.captured} for g in shape.guests],
        "second_guest": [g for g in shape.guests if g != sim.captured],
        "dom0_vcpus": [{"vcpu": k, "pcpu": shape.dom0_pcpu(k)} for k in range(shape.n_dom0)],
        "nic_irq": sim.nic_irq,
        "nic_irq_vcpu": sched["nic_vcpu"][0][1],
        "netback_rx_vcpu": sched["netback_rx_vcpu"][sim.captured][0][1],
        "netback_tx_vcpu": sched["netback_tx_vcpu"][sim.captured][0][1],
        "pcpus": shape.n_pcpus,
        "schedules": {
            "nic_irq_pcpu": _points(sched["nic_irq_pcpu"], "pcpu"),
            "nic_vcpu": _points(sched["nic_vcpu"], "vcpu"),
            "netback_rx_vcpu": rx,
            "netback_tx_vcpu": tx,
        },
        "resolver": f"{RESOLVER_IP}:{RESOLVER_PORT}",
    }


def host_conventions() -> dict[str, str]:
    """The realistic host's truth conventions, added to scenario.json's."""
    return {
        "t_irq": "HW_IRQ_HANDLED (handler exit) of the interrupt whose NAPI poll carried the "
                 "frame",
        "t_dom0_run_rx": "t_irq if the serving dom0 vCPU was running, else its "
                         "runnable->running after it",
        "t_dom0_run_tx": "t_guest if the tx dom0 vCPU was running at the notification, else "
                         "its runnable->running after t_guest",
        "t_copy": "the GNTTABOP_copy hypercall record that carried the data (rx: its last "
                  "byte; tx: the frame's header copy)",
        "t_guest_wake": "WAKE of the guest vCPU by netback's rx notification; empty if it "
                        "was running",
        "stages": "rx rows: model.STAGES; tx rows: model.TX_STAGES, in the same columns",
        "udp": "proto 17 rows: seq empty, matched by flow and ip_id",
    }
