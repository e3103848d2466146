"""The realistic simulated Xen host (``host="realistic"``): the layer that turns a scenario
into one consistent timeline of a busy credit2 host — scheduling, NIC, netback, guests,
faults, background work — from which the captures, the socket log, the hypervisor trace and
the truth are all written.

Modules: :mod:`.engine` (event loop, compact logs), :mod:`.shape` (pCPUs, vCPUs, roles over
time), :mod:`.sched` (who holds each pCPU, when a vCPU runs), :mod:`.nic` (NIC, dom0 driver
and bridge, the servers), :mod:`.netback` (rx kthread, tx NAPI poll), :mod:`.guest` (netfront,
stack, application), :mod:`.faults`, :mod:`.background` (unrelated dom0 work, other domains),
:mod:`.xensched` (credit2's records), :mod:`.traffic` (flows and exchanges), :mod:`.tables`,
:mod:`.sim` (assembly), then the writers' side: :mod:`.captures`, :mod:`.tracebuild`,
:mod:`.truth`, :mod:`.report` (scenario.json). May import numpy and the simulator's shared
modules (:mod:`..frames`, :mod:`..writers`, :mod:`..physics` for shared types), never the
analyzer. docs/simulator.md says which fact comes from where.
"""
