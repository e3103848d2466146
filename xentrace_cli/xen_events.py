"""xentrace event ids, their names, run-state names, hypercall and grant-table numbers.

The one table of these constants (``docs/xentrace-format.md``; Xen's public ``trace.h``,
``xen.h`` and ``grant_table.h``). Readers, the summary and the analyzer import from here.

An event id is 28 bits::

    27            16 15   12 11           0
    +---------------+-------+--------------+
    |     class     |  sub  |    minor     |
    +---------------+-------+--------------+

and a record header adds ``N`` (extra words, bits 28-30) and ``C`` (timestamp, bit 31).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# --- record header bits --------------------------------------------------------------------
EVENT_MASK = 0x0FFFFFFF
EXTRA_SHIFT = 28
EXTRA_MASK = 0x7
CYCLES_FLAG = 0x80000000
MAX_EXTRA = 7
MAX_RECORD_WORDS = 1 + 2 + MAX_EXTRA  # header, TSC lo/hi, 7 extra words

# --- meta records (TRC_GEN) ------------------------------------------------------------------
TRC_LOST_RECORDS = 0x0001F001
TRC_TRACE_WRAP_BUFFER = 0x0001F002
TRC_TRACE_CPU_CHANGE = 0x0001F003
#: Written by Xen before a record traced in interrupt context.
TRC_TRACE_IRQ = 0x0001F004
#: Header word of xentrace's CPU-change record: 2 extra words (int32 cpu, uint32 window_size).
CPU_CHANGE_HEADER = TRC_TRACE_CPU_CHANGE | (2 << EXTRA_SHIFT)
#: Highest physical CPU number accepted in a CPU-change record (Xen's NR_CPUS tops out at 4096).
MAX_CPU = 4095

# --- scheduler (TRC_SCHED) -----------------------------------------------------------------
TRC_SCHED_MIN = 0x00021000
TRC_SCHED_CLASS = 0x00022000
TRC_SCHED_VERBOSE = 0x00028000
#: RUNSTATE_CHANGE is ``TRC_SCHED_MIN + 1`` with old state in bits 8-11, new in bits 4-7.
TRC_SCHED_RUNSTATE_CHANGE = 0x00021001
RUNSTATE_CHANGE_MASK = 0xFFFFF00F
TRC_SCHED_CONTINUE_RUNNING = 0x00021002
TRC_SCHED_DOM_ADD = 0x00028001
TRC_SCHED_DOM_REM = 0x00028002
TRC_SCHED_SLEEP = 0x00028003
TRC_SCHED_WAKE = 0x00028004
TRC_SCHED_YIELD = 0x00028005
TRC_SCHED_BLOCK = 0x00028006
TRC_SCHED_SHUTDOWN = 0x00028007
TRC_SCHED_CTL = 0x00028008
TRC_SCHED_ADJDOM = 0x00028009
TRC_SCHED_SWITCH = 0x0002800A
TRC_SCHED_S_TIMER_FN = 0x0002800B
TRC_SCHED_T_TIMER_FN = 0x0002800C
TRC_SCHED_DOM_TIMER_FN = 0x0002800D
TRC_SCHED_SWITCH_INFPREV = 0x0002800E
TRC_SCHED_SWITCH_INFNEXT = 0x0002800F
TRC_SCHED_SHUTDOWN_CODE = 0x00028010
TRC_SCHED_SWITCH_INFCONT = 0x00028011

# --- memory, PV, HVM, hardware ---------------------------------------------------------------
TRC_MEM_PAGE_GRANT_MAP = 0x0010F001
TRC_MEM_PAGE_GRANT_UNMAP = 0x0010F002
TRC_MEM_PAGE_GRANT_TRANSFER = 0x0010F003
TRC_PV_HYPERCALL = 0x0020100B
TRC_PV_HYPERCALL_V2 = 0x0020100D
TRC_PV_HYPERCALL_SUBCALL = 0x0020100E
#: Bits 0-11 of PV_HYPERCALL_V2's first word hold the hypercall number.
HYPERCALL_OP_MASK = 0xFFF
TRC_HVM_ENTRYEXIT = 0x00081000
TRC_HVM_HANDLER = 0x00082000
TRC_HVM_VMENTRY = 0x00081001
TRC_HVM_VMEXIT = 0x00081002
TRC_HVM_VMEXIT64 = 0x00081102
TRC_HVM_INJ_VIRQ = 0x00082004
TRC_HW_IRQ_HANDLED = 0x00802008
#: Guest-inserted records (HVMOP_xentrace): ``TRC_GUEST | e``.
TRC_GUEST = 0x0800F000
TRC_GUEST_MASK = 0x0FFFF000

# --- domains, run states ----------------------------------------------------------------------
DOMID_IDLE = 0x7FFF
#: Linux HVM guests' event-channel callback vector (HVM_INJ_VIRQ w0).
HVM_CALLBACK_VECTOR = 0xF3

RUNSTATE_RUNNING = 0
RUNSTATE_RUNNABLE = 1
RUNSTATE_BLOCKED = 2
RUNSTATE_OFFLINE = 3
#: Run-state names indexed by number (``RUNSTATE_CHANGE`` old/new fields).
RUNSTATES: tuple[str, ...] = ("running", "runnable", "blocked", "offline")

# --- hypercalls (xen.h) and grant-table commands (grant_table.h) ------------------------------
HYPERCALL_GRANT_TABLE_OP = 20
HYPERCALLS: dict[int, str] = {
    0: "set_trap_table", 1: "mmu_update", 2: "set_gdt", 3: "stack_switch",
    4: "set_callbacks", 5: "fpu_taskswitch", 6: "sched_op_compat", 7: "platform_op",
    8: "set_debugreg", 9: "get_debugreg", 10: "update_descriptor", 12: "memory_op",
    13: "multicall", 14: "update_va_mapping", 15: "set_timer_op",
    16: "event_channel_op_compat", 17: "xen_version", 18: "console_io",
    19: "physdev_op_compat", 20: "grant_table_op", 21: "vm_assist",
    22: "update_va_mapping_otherdomain", 23: "iret", 24: "vcpu_op", 25: "set_segment_base",
    26: "mmuext_op", 27: "xsm_op", 28: "nmi_op", 29: "sched_op", 30: "callback_op",
    31: "xenoprof_op", 32: "event_channel_op", 33: "physdev_op", 34: "hvm_op", 35: "sysctl",
    36: "domctl", 37: "kexec_op", 38: "tmem_op", 39: "argo_op", 40: "xenpmu_op", 41: "dm_op",
    42: "hypfs_op",
}
GNTTABOP_MAP_GRANT_REF = 0
GNTTABOP_UNMAP_GRANT_REF = 1
GNTTABOP_TRANSFER = 4
GNTTABOP_COPY = 5
GNTTAB_CMDS: dict[int, str] = {
    0: "map_grant_ref", 1: "unmap_grant_ref", 2: "setup_table", 3: "dump_table",
    4: "transfer", 5: "copy", 6: "query_size", 7: "unmap_and_replace", 8: "set_version",
    9: "get_status_frames", 10: "get_version", 11: "swap_grant_ref", 12: "cache_flush",
}

# --- event names -------------------------------------------------------------------------------
#: Names of the events xenlat knows (RUNSTATE_CHANGE variants and TRC_GUEST are named by
#: :func:`event_name`). Lower-case, after xenalyze's vocabulary.
EVENT_NAMES: dict[int, str] = {
    TRC_LOST_RECORDS: "lost_records",
    TRC_TRACE_WRAP_BUFFER: "wrap_buffer",
    TRC_TRACE_CPU_CHANGE: "cpu_change",
    TRC_TRACE_IRQ: "trace_irq",
    TRC_SCHED_CONTINUE_RUNNING: "continue_running",
    TRC_SCHED_DOM_ADD: "dom_add",
    TRC_SCHED_DOM_REM: "dom_rem",
    TRC_SCHED_SLEEP: "sleep",
    TRC_SCHED_WAKE: "wake",
    TRC_SCHED_YIELD: "yield",
    TRC_SCHED_BLOCK: "block",
    TRC_SCHED_SHUTDOWN: "shutdown",
    TRC_SCHED_CTL: "sched_ctl",
    TRC_SCHED_ADJDOM: "adjdom",
    TRC_SCHED_SWITCH: "switch",
    TRC_SCHED_S_TIMER_FN: "s_timer_fn",
    TRC_SCHED_T_TIMER_FN: "t_timer_fn",
    TRC_SCHED_DOM_TIMER_FN: "dom_timer_fn",
    TRC_SCHED_SWITCH_INFPREV: "switch_infprev",
    TRC_SCHED_SWITCH_INFNEXT: "switch_infnext",
    TRC_SCHED_SHUTDOWN_CODE: "shutdown_code",
    TRC_SCHED_SWITCH_INFCONT: "switch_infcont",
    TRC_MEM_PAGE_GRANT_MAP: "page_grant_map",
    TRC_MEM_PAGE_GRANT_UNMAP: "page_grant_unmap",
    TRC_MEM_PAGE_GRANT_TRANSFER: "page_grant_transfer",
    TRC_PV_HYPERCALL: "pv_hypercall",
    TRC_PV_HYPERCALL_V2: "pv_hypercall_v2",
    TRC_PV_HYPERCALL_SUBCALL: "pv_hypercall_subcall",
    TRC_HVM_VMENTRY: "hvm_vmentry",
    TRC_HVM_VMEXIT: "hvm_vmexit",
    TRC_HVM_VMEXIT64: "hvm_vmexit64",
    0x00082001: "hvm_pf_xen",
    0x00082101: "hvm_pf_xen64",
    0x00082002: "hvm_pf_inject",
    0x00082003: "hvm_inj_exc",
    TRC_HVM_INJ_VIRQ: "hvm_inj_virq",
    0x00082005: "hvm_reinj_virq",
    0x00082006: "hvm_io_read",
    0x00082007: "hvm_io_write",
    0x00082008: "hvm_cr_read",
    0x00082108: "hvm_cr_read64",
    0x00082009: "hvm_cr_write",
    0x00082109: "hvm_cr_write64",
    0x0008200C: "hvm_msr_read",
    0x0008200D: "hvm_msr_write",
    0x0008200E: "hvm_cpuid",
    0x0008200F: "hvm_intr",
    0x00082010: "hvm_nmi",
    0x00082011: "hvm_smi",
    0x00082012: "hvm_vmmcall",
    0x00082013: "hvm_hlt",
    0x00082014: "hvm_invlpg",
    0x00082114: "hvm_invlpg64",
    0x00082015: "hvm_mce",
    0x00082016: "hvm_ioport_read",
    0x00082216: "hvm_ioport_write",
    0x00082017: "hvm_iomem_read",
    0x00082217: "hvm_iomem_write",
    0x0008201A: "hvm_rdtsc",
    0x00082020: "hvm_intr_window",
    0x00082021: "hvm_npf",
    0x00082023: "hvm_trap",
    0x00082024: "hvm_trap_debug",
    0x00082025: "hvm_vlapic",
    0x00801001: "pm_freq_change",
    0x00801002: "pm_idle_entry",
    0x00801003: "pm_idle_exit",
    0x00802001: "irq_move_cleanup_delay",
    0x00802002: "irq_move_cleanup",
    0x00802003: "irq_bind_vector",
    0x00802004: "irq_clear_vector",
    0x00802005: "irq_move_finish",
    0x00802006: "irq_assign_vector",
    0x00802007: "irq_unmapped_vector",
    TRC_HW_IRQ_HANDLED: "hw_irq_handled",
}
#: credit2 scheduler events: ``TRC_SCHED_CLASS | (1 << 9) | n`` (xen/common/sched/credit2.c).
_CSCHED2 = {
    1: "tick", 2: "runq_pos", 3: "credit_burn", 4: "credit_add", 5: "tickle_check",
    6: "tickle", 7: "credit_reset", 8: "sched_tasklet", 9: "update_load", 10: "runq_assign",
    11: "update_vcpu_load", 12: "update_runq_load", 13: "tickle_new", 14: "runq_max_weight",
    15: "migrate", 16: "load_check", 17: "load_balance", 19: "picked_cpu",
    20: "runq_candidate", 21: "schedule", 22: "ratelimit", 23: "runq_cand_check",
}
EVENT_NAMES.update({TRC_SCHED_CLASS | (1 << 9) | n: f"csched2_{name}"
                    for n, name in _CSCHED2.items()})

#: Class names (bits 12-27 of the id with the minor cleared to the class' ``0xf000`` form).
CLASS_NAMES: dict[int, str] = {
    0x0001F000: "gen",
    0x0002F000: "sched",
    0x0004F000: "dom0op",
    0x0008F000: "hvm",
    0x0010F000: "mem",
    0x0020F000: "pv",
    0x0040F000: "shadow",
    0x0080F000: "hw",
    0x0800F000: "guest",
}


def is_runstate_change(event: int | np.ndarray) -> bool | np.ndarray:
    """Whether ``event`` is a RUNSTATE_CHANGE (any old/new pair); elementwise for an array."""
    return (event & RUNSTATE_CHANGE_MASK) == TRC_SCHED_RUNSTATE_CHANGE


def event_name(event: int) -> str:
    """A stable, readable name for any event id; unknown ids get ``<class>:0x<id>``."""
    event &= EVENT_MASK
    name = EVENT_NAMES.get(event)
    if name is not None:
        return name
    if is_runstate_change(event):
        return "runstate_change"
    if (event & TRC_GUEST_MASK) == TRC_GUEST:
        return "guest"
    cls = CLASS_NAMES.get(((event >> 16) << 16) | 0xF000, "unknown")
    return f"{cls}:0x{event:08x}"
