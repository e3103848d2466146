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

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# --- record header bits --------------------------------------------------------------------
EVENT_MASK = 0x0FFFFFFF
EXTRA_SHIFT = 28
EXTRA_MASK = 0x7
CYCLES_FLAG = 0x80000000
MAX_EXTRA = 7

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


# --- the event table ---------------------------------------------------------------------------
#: Scheduler ids in bits 9-11 of ``TRC_SCHED_CLASS`` events (trace.h ``TRC_SCHED_*``).
SCHED_CLASS_IDS: dict[int, str] = {0: "credit", 1: "credit2", 3: "arinc653", 4: "rtds",
                                   5: "null"}
TRC_DOM0_DOMOPS = 0x00041000
TRC_HVM_EMUL = 0x00084000
#: HVM records of a nested guest carry this flag (trace.h ``TRC_HVM_NESTEDFLAG``).
TRC_HVM_NESTEDFLAG = 0x400
#: Addresses of the record are 64 bits (trace.h ``TRC_64_FLAG``; HVM and PV records).
TRC_64_FLAG = 0x100
TRC_HW_PM = 0x00801000
TRC_HW_IRQ = 0x00802000
TRC_SHADOW = 0x0040F000
#: Shadow records keep the guest's paging levels (minus 2) in bits 8-11 of the id.
SHADOW_LEVELS_MASK = 0xF00
#: The correct ids of two PV records (``TRC_PV_HYPERCALL`` and ``TRC_PV_HYPERCALL_SUBCALL``
#: above hold other values: 0x0020100b is PTWR_EMULATION, 0x0020100e is no record; kept
#: unchanged because other modules may import them).
TRC_PV_HYPERCALL_V1 = 0x00201001
TRC_PV_SUBCALL = 0x0020200E


@dataclasses.dataclass(frozen=True)
class EventInfo:
    """One record type Xen writes: its id, name, family, the Xen release it came in, and the
    layout of its extra words."""

    id: int
    name: str
    group: str
    """Family: gen, sched, credit, credit2, rtds, null, arinc653, dom0op, hvm, mem, pv,
    shadow, power, irq, guest."""
    since: str
    """The Xen release whose sources first write this id (``docs/trace.md`` says how these
    were established and how far to trust them)."""
    fields: str
    """The extra words, ``name:kind`` in order; alternatives for older layouts after ``|``
    (the one whose word count matches the record is used). Kinds: ``d`` unsigned, ``i``
    signed 32-bit, ``x`` hex, ``q``/``Q`` a 64-bit value in two words (low first) decimal/hex,
    ``u`` a unit packed ``domid << 16 | vcpu``, ``U`` a unit in two words ``domid, vcpu``,
    ``L`` the lost-records unit (domid in bits 0-15, vcpu in 16-31), ``h`` a hypercall word
    (number in bits 0-11). Empty: no words, or words without a known meaning."""

    def layout(self, n_extra: int) -> list[tuple[str, str]]:
        """The ``(name, kind)`` fields of a record of this id with ``n_extra`` words."""
        options = [[tuple(f.split(":")) for f in alt.split()] for alt in self.fields.split("|")]
        for option in options:
            if sum(_KIND_WORDS[k] for _, k in option) == n_extra:
                return option  # type: ignore[return-value]
        return options[0]  # type: ignore[return-value]


#: Words each field kind takes.
_KIND_WORDS = {"d": 1, "i": 1, "x": 1, "u": 1, "L": 1, "h": 1, "q": 2, "Q": 2, "U": 2}

_UNIT = "unit:U"  # [domid, vcpu]
# (id, name, group, since, fields): every record Xen 3.2 to 4.20 writes. Names of ids xenlat
# named before are kept; others after trace.h, with the family as prefix.
_TABLE: tuple[tuple[int, str, str, str, str], ...] = (
    # TRC_GEN: the trace's own records
    (TRC_LOST_RECORDS, "lost_records", "gen", "3.0", "dropped:d unit:L first_tsc:q"),
    (TRC_TRACE_WRAP_BUFFER, "wrap_buffer", "gen", "3.2", ""),
    (TRC_TRACE_CPU_CHANGE, "cpu_change", "gen", "3.2", "cpu:d window_bytes:d"),
    (TRC_TRACE_IRQ, "trace_irq", "gen", "4.1",
     "vector:d count:d total_cycles:d max_cycles:d"),
    # TRC_SCHED: run states (MIN), the common scheduler (VERBOSE)
    (TRC_SCHED_RUNSTATE_CHANGE, "runstate_change", "sched", "3.3", "unit:u"),
    (TRC_SCHED_CONTINUE_RUNNING, "continue_running", "sched", "3.3", "unit:u"),
    (TRC_SCHED_DOM_ADD, "dom_add", "sched", "3.3", "domid:d"),
    (TRC_SCHED_DOM_REM, "dom_rem", "sched", "3.3", "domid:d"),
    (TRC_SCHED_SLEEP, "sleep", "sched", "3.3", _UNIT),
    (TRC_SCHED_WAKE, "wake", "sched", "3.3", _UNIT),
    (TRC_SCHED_YIELD, "yield", "sched", "3.3", _UNIT),
    (TRC_SCHED_BLOCK, "block", "sched", "3.3", _UNIT),
    (TRC_SCHED_SHUTDOWN, "shutdown", "sched", "3.3", f"{_UNIT} reason:d"),
    (TRC_SCHED_CTL, "sched_ctl", "sched", "3.3", ""),
    (TRC_SCHED_ADJDOM, "adjdom", "sched", "3.3", "domid:d"),
    (TRC_SCHED_SWITCH, "switch", "sched", "3.3", "prev:U next:U"),
    (TRC_SCHED_S_TIMER_FN, "s_timer_fn", "sched", "3.3", ""),
    (TRC_SCHED_T_TIMER_FN, "t_timer_fn", "sched", "3.3", ""),
    (TRC_SCHED_DOM_TIMER_FN, "dom_timer_fn", "sched", "3.3", ""),
    (TRC_SCHED_SWITCH_INFPREV, "switch_infprev", "sched", "3.3",
     f"{_UNIT} ran_ns:d | domid:d ran_ns:d"),
    (TRC_SCHED_SWITCH_INFNEXT, "switch_infnext", "sched", "3.3",
     f"{_UNIT} wait_ns:d slice_ns:i | domid:d wait_ns:d slice_ns:i"),
    (TRC_SCHED_SHUTDOWN_CODE, "shutdown_code", "sched", "4.1", f"{_UNIT} reason:d"),
    (TRC_SCHED_SWITCH_INFCONT, "switch_infcont", "sched", "4.10",
     f"{_UNIT} ran_ns:d slice_ns:i"),
    # TRC_SCHED_CLASS, credit (scheduler id 0): xen/common/sched/credit.c
    (0x00022001, "csched_sched_tasklet", "credit", "4.1", ""),
    (0x00022002, "csched_account_start", "credit", "4.1", f"{_UNIT} active:d"),
    (0x00022003, "csched_account_stop", "credit", "4.1", f"{_UNIT} active:d"),
    (0x00022004, "csched_stolen_vcpu", "credit", "4.1", f"from_cpu:d {_UNIT}"),
    (0x00022005, "csched_picked_cpu", "credit", "4.1", f"{_UNIT} cpu:d"),
    (0x00022006, "csched_tickle", "credit", "4.1", "cpu:d"),
    (0x00022007, "csched_boost_start", "credit", "4.7", _UNIT),
    (0x00022008, "csched_boost_end", "credit", "4.7", _UNIT),
    (0x00022009, "csched_schedule", "credit", "4.8", "cpu_tasklet_idle:x"),
    (0x0002200A, "csched_ratelimit", "credit", "4.8", "unit:u runtime_ns:d"),
    (0x0002200B, "csched_steal_check", "credit", "4.9", "peer_cpu:d checked:d"),
    # credit2 (scheduler id 1): xen/common/sched/credit2.c (18 is unused)
    (0x00022201, "csched2_tick", "credit2", "4.0", ""),
    (0x00022202, "csched2_runq_pos", "credit2", "4.0", "unit:u pos:d"),
    (0x00022203, "csched2_credit_burn", "credit2", "4.0",
     "unit:u credit:i budget:i delta:i"),
    (0x00022204, "csched2_credit_add", "credit2", "4.0", ""),
    (0x00022205, "csched2_tickle_check", "credit2", "4.0", "unit:u credit:i score:i"),
    (0x00022206, "csched2_tickle", "credit2", "4.0", "cpu:d"),
    (0x00022207, "csched2_credit_reset", "credit2", "4.0",
     "unit:u credit_start:i credit_end:i multiplier:d | unit:u credit_start:i credit_end:i"),
    (0x00022208, "csched2_sched_tasklet", "credit2", "4.0", ""),
    (0x00022209, "csched2_update_load", "credit2", "4.0", ""),
    (0x0002220A, "csched2_runq_assign", "credit2", "4.1", "unit:u runq:d"),
    (0x0002220B, "csched2_update_vcpu_load", "credit2", "4.1",
     "load:q unit:u shift:d"),
    (0x0002220C, "csched2_update_runq_load", "credit2", "4.1",
     "runq_avgload:q b_avgload:q load_runq_shift:x"),
    (0x0002220D, "csched2_tickle_new", "credit2", "4.7", "unit:u cpu:d credit:i"),
    (0x0002220E, "csched2_runq_max_weight", "credit2", "4.7", "runq_weight:x"),
    (0x0002220F, "csched2_migrate", "credit2", "4.7", "unit:u runqs:x"),
    (0x00022210, "csched2_load_check", "credit2", "4.7", "runqs:x delta:i"),
    (0x00022211, "csched2_load_balance", "credit2", "4.7",
     "local_avgload:q other_avgload:q runqs:x"),
    (0x00022213, "csched2_picked_cpu", "credit2", "4.7", "b_avgload:q unit:u runq_cpu:x"),
    (0x00022214, "csched2_runq_candidate", "credit2", "4.7",
     "unit:u tickled_cpu:i skipped:d credit:i | unit:u tickled_cpu:i credit:i"),
    (0x00022215, "csched2_schedule", "credit2", "4.8", "runq_cpu:x flags:x"),
    (0x00022216, "csched2_ratelimit", "credit2", "4.8", "unit:u runtime_ns:d"),
    (0x00022217, "csched2_runq_cand_check", "credit2", "4.10", "unit:u"),
    # ARINC 653 (scheduler id 3) writes no records of its own: only the common ones above.
    # RTDS (scheduler id 4): xen/common/sched/rt.c
    (0x00022801, "rtds_tickle", "rtds", "4.6", "cpu:d"),
    (0x00022802, "rtds_runq_pick", "rtds", "4.6", "unit:u deadline:q budget:q"),
    (0x00022803, "rtds_budget_burn", "rtds", "4.6", "unit:u budget:q delta:i"),
    (0x00022804, "rtds_budget_replenish", "rtds", "4.6", "unit:u deadline:q budget:q"),
    (0x00022805, "rtds_sched_tasklet", "rtds", "4.6", ""),
    (0x00022806, "rtds_schedule", "rtds", "4.10", "cpu_flags:x"),
    # null (scheduler id 5): xen/common/sched/null.c
    (0x00022A01, "null_picked_cpu", "null", "4.9", "unit:u cpu:d"),
    (0x00022A02, "null_unit_assign", "null", "4.9", "unit:u cpu:d"),
    (0x00022A03, "null_unit_deassign", "null", "4.9", "unit:u cpu:d"),
    (0x00022A04, "null_migrate", "null", "4.9", "unit:u cpus:x"),
    (0x00022A05, "null_schedule", "null", "4.9", "cpu_tasklet:x unit:u"),
    (0x00022A06, "null_sched_tasklet", "null", "4.9", ""),
    # TRC_DOM0OP
    (TRC_DOM0_DOMOPS + 1, "dom0_dom_add", "dom0op", "3.3", "domid:d"),
    (TRC_DOM0_DOMOPS + 2, "dom0_dom_rem", "dom0op", "3.3", "domid:d"),
    # TRC_HVM: VM entry and exit (xen/arch/x86/hvm/{vmx,svm})
    (TRC_HVM_VMENTRY, "hvm_vmentry", "hvm", "3.1", ""),
    (TRC_HVM_VMEXIT, "hvm_vmexit", "hvm", "3.1", "exit_reason:x rip:x"),
    (TRC_HVM_VMEXIT64, "hvm_vmexit64", "hvm", "3.3", "exit_reason:x rip:Q"),
    (0x00081003, "hvm_svm_exit", "hvm", "4.20", "exit_code:x rip:Q"),
    (TRC_HVM_VMENTRY | TRC_HVM_NESTEDFLAG, "hvm_nested_vmentry", "hvm", "4.2", ""),
    (TRC_HVM_VMEXIT | TRC_HVM_NESTEDFLAG, "hvm_nested_vmexit", "hvm", "4.2",
     "exit_reason:x rip:x"),
    (TRC_HVM_VMEXIT64 | TRC_HVM_NESTEDFLAG, "hvm_nested_vmexit64", "hvm", "4.2",
     "exit_reason:x rip:Q"),
    # HVM handlers: what an exit did (no timestamp: the exit's)
    (0x00082001, "hvm_pf_xen", "hvm", "3.1", "va:x error_code:x"),
    (0x00082101, "hvm_pf_xen64", "hvm", "3.3", "va:Q error_code:x"),
    (0x00082002, "hvm_pf_inject", "hvm", "3.1", "error_code:x cr2:x"),
    (0x00082102, "hvm_pf_inject64", "hvm", "3.3", "error_code:x cr2:Q"),
    (0x00082003, "hvm_inj_exc", "hvm", "3.1", "vector:x error_code:x"),
    (TRC_HVM_INJ_VIRQ, "hvm_inj_virq", "hvm", "3.1", "vector:x fake:d"),
    (0x00082005, "hvm_reinj_virq", "hvm", "3.1", "vector:x"),
    (0x00082006, "hvm_io_read", "hvm", "3.1", "port:x size:d"),
    (0x00082007, "hvm_io_write", "hvm", "3.1", "port:x size:d"),
    (0x00082008, "hvm_cr_read", "hvm", "3.1", "cr:d value:x"),
    (0x00082108, "hvm_cr_read64", "hvm", "3.3", "cr:d value:Q"),
    (0x00082009, "hvm_cr_write", "hvm", "3.1", "cr:d value:x"),
    (0x00082109, "hvm_cr_write64", "hvm", "3.3", "cr:d value:Q"),
    (0x0008200A, "hvm_dr_read", "hvm", "3.1", ""),
    (0x0008200B, "hvm_dr_write", "hvm", "3.1", ""),
    (0x0008200C, "hvm_msr_read", "hvm", "3.1", "msr:x value:Q"),
    (0x0008200D, "hvm_msr_write", "hvm", "3.1", "msr:x value:Q"),
    (0x0008200E, "hvm_cpuid", "hvm", "3.1",
     "leaf:x subleaf:x eax:x ebx:x ecx:x edx:x | leaf:x eax:x ebx:x ecx:x edx:x"),
    (0x0008200F, "hvm_intr", "hvm", "3.1", "vector:x"),
    (0x00082010, "hvm_nmi", "hvm", "3.1", ""),
    (0x00082011, "hvm_smi", "hvm", "3.1", ""),
    (0x00082012, "hvm_vmmcall", "hvm", "3.1", "call:h"),
    (0x00082013, "hvm_hlt", "hvm", "3.1", "int_pending:d"),
    (0x00082014, "hvm_invlpg", "hvm", "3.1", "invlpga:d va:x"),
    (0x00082114, "hvm_invlpg64", "hvm", "3.3", "invlpga:d va:Q"),
    (0x00082015, "hvm_mce", "hvm", "3.1", ""),
    (0x00082016, "hvm_ioport_read", "hvm", "3.3", "port:x data:x | port:x"),
    (0x00082216, "hvm_ioport_write", "hvm", "3.3", "port:x data:x | port:x"),
    (0x00082017, "hvm_iomem_read", "hvm", "3.3", "gpa:x data:x"),
    (0x00082117, "hvm_iomem_read64", "hvm", "3.3", "gpa:Q data:x"),
    (0x00082217, "hvm_iomem_write", "hvm", "3.3", "gpa:x data:x"),
    (0x00082317, "hvm_iomem_write64", "hvm", "3.3", "gpa:Q data:x"),
    (0x00082018, "hvm_clts", "hvm", "3.1", ""),
    (0x00082019, "hvm_lmsw", "hvm", "3.1", "value:x"),
    (0x00082119, "hvm_lmsw64", "hvm", "3.3", "value:Q"),
    (0x0008201A, "hvm_rdtsc", "hvm", "4.0", "value:Q"),
    (0x00082020, "hvm_intr_window", "hvm", "4.0", "vector:x source:d intr:i"),
    (0x00082021, "hvm_npf", "hvm", "4.0", "gpa:Q mfn:Q qualification:x p2m_type:d"),
    (0x00082022, "hvm_realmode_emulate", "hvm", "4.1", ""),
    (0x00082023, "hvm_trap", "hvm", "4.2", "vector:x"),
    (0x00082024, "hvm_trap_debug", "hvm", "4.2", "exit_qualification:x"),
    (0x00082025, "hvm_vlapic", "hvm", "4.6", ""),
    (0x00082026, "hvm_xcr_read", "hvm", "4.17", "index:x value:Q"),
    (0x00082027, "hvm_xcr_write", "hvm", "4.17", "index:x value:Q"),
    # HVM emulated devices (xen/arch/x86/hvm/{hpet,i8254,rtc,vlapic,vpic}.c)
    (TRC_HVM_EMUL + 0x01, "hvm_emul_hpet_start_timer", "hvm", "4.5",
     "timer:d irq:d delta:Q period:Q"),
    (TRC_HVM_EMUL + 0x02, "hvm_emul_pit_start_timer", "hvm", "4.5", "delta:Q period:Q"),
    (TRC_HVM_EMUL + 0x03, "hvm_emul_rtc_start_timer", "hvm", "4.5", "delta:Q period:Q"),
    (TRC_HVM_EMUL + 0x04, "hvm_emul_lapic_start_timer", "hvm", "4.5",
     "delta:Q period:Q irq:d"),
    (TRC_HVM_EMUL + 0x05, "hvm_emul_hpet_stop_timer", "hvm", "4.5", "timer:d"),
    (TRC_HVM_EMUL + 0x06, "hvm_emul_pit_stop_timer", "hvm", "4.5", ""),
    (TRC_HVM_EMUL + 0x07, "hvm_emul_rtc_stop_timer", "hvm", "4.5", ""),
    (TRC_HVM_EMUL + 0x08, "hvm_emul_lapic_stop_timer", "hvm", "4.5", ""),
    (TRC_HVM_EMUL + 0x09, "hvm_emul_pit_timer_cb", "hvm", "4.5", ""),
    (TRC_HVM_EMUL + 0x0A, "hvm_emul_lapic_timer_cb", "hvm", "4.5", ""),
    (TRC_HVM_EMUL + 0x0B, "hvm_emul_pic_int_output", "hvm", "4.5",
     "int_output:d is_master:d irq:d"),
    (TRC_HVM_EMUL + 0x0C, "hvm_emul_pic_kick", "hvm", "4.5", "irq:d"),
    (TRC_HVM_EMUL + 0x0D, "hvm_emul_pic_intack", "hvm", "4.5", "is_master:d irq:d"),
    (TRC_HVM_EMUL + 0x0E, "hvm_emul_pic_posedge", "hvm", "4.5", "irq:d"),
    (TRC_HVM_EMUL + 0x0F, "hvm_emul_pic_negedge", "hvm", "4.5", "irq:d"),
    (TRC_HVM_EMUL + 0x10, "hvm_emul_pic_pend_irq_call", "hvm", "4.5",
     "accept_pic_intr:d int_output:d"),
    # vlapic_accept_pic_intr(): is this vCPU the domain's i8259 target, would its LAPIC
    # accept the PIC's interrupt (xen/arch/x86/hvm/vlapic.c)
    (TRC_HVM_EMUL + 0x11, "hvm_emul_lapic_pic_intr", "hvm", "4.5",
     "i8259_target:d accept:d"),
    # TRC_MEM
    (TRC_MEM_PAGE_GRANT_MAP, "page_grant_map", "mem", "3.2", "domid:d"),
    (TRC_MEM_PAGE_GRANT_UNMAP, "page_grant_unmap", "mem", "3.2", "domid:d"),
    (TRC_MEM_PAGE_GRANT_TRANSFER, "page_grant_transfer", "mem", "3.2", "domid:d"),
    (0x0010F004, "mem_set_p2m_entry", "mem", "4.0", ""),
    (0x0010F005, "mem_decrease_reservation", "mem", "4.0", ""),
    (0x0010F010, "mem_pod_populate", "mem", "4.0", ""),
    (0x0010F011, "mem_pod_zero_reclaim", "mem", "4.0", ""),
    (0x0010F012, "mem_pod_superpage_splinter", "mem", "4.1", ""),
    # TRC_PV: PV guests' entries into Xen (64-bit guests: TRC_64_FLAG variants)
    (TRC_PV_HYPERCALL_V1, "pv_hypercall", "pv", "3.3", "eip:x eax:d"),
    (0x00201101, "pv_hypercall64", "pv", "3.3", "rip:Q eax:d"),
    (0x00201003, "pv_trap", "pv", "3.3", "eip:x trap_error:x"),
    (0x00201103, "pv_trap64", "pv", "3.3", "rip:Q trap_error:x"),
    (0x00201004, "pv_page_fault", "pv", "3.3", "eip:x addr:x error_code:x"),
    (0x00201104, "pv_page_fault64", "pv", "3.3", "rip:Q addr:Q error_code:x"),
    (0x00201005, "pv_forced_invalid_op", "pv", "3.3", "eip:x"),
    (0x00201105, "pv_forced_invalid_op64", "pv", "3.3", "rip:Q"),
    (0x00201006, "pv_emulate_privop", "pv", "3.3", "eip:x"),
    (0x00201106, "pv_emulate_privop64", "pv", "3.3", "rip:Q"),
    (0x00201007, "pv_emulate_4gb", "pv", "3.3", "eip:x"),
    (0x00201107, "pv_emulate_4gb64", "pv", "3.3", "rip:Q"),
    (0x00201008, "pv_math_state_restore", "pv", "3.3", ""),
    (0x00201108, "pv_math_state_restore64", "pv", "3.3", ""),
    (0x00201009, "pv_paging_fixup", "pv", "3.3", "eip:x addr:x"),
    (0x00201109, "pv_paging_fixup64", "pv", "3.3", "rip:Q addr:Q"),
    (0x0020100A, "pv_gdt_ldt_mapping_fault", "pv", "3.3", "eip:x offset:x"),
    (0x0020110A, "pv_gdt_ldt_mapping_fault64", "pv", "3.3", "rip:Q offset:Q"),
    (0x0020100B, "pv_ptwr_emulation", "pv", "3.3", "pte:Q addr:x eip:x"),
    (0x0020110B, "pv_ptwr_emulation64", "pv", "3.3", "pte:Q addr:Q rip:Q"),
    (0x0020100C, "pv_ptwr_emulation_pae", "pv", "3.3", "pte:Q addr:x eip:x"),
    (0x0020110C, "pv_ptwr_emulation_pae64", "pv", "3.3", "pte:Q addr:Q rip:Q"),
    (TRC_PV_HYPERCALL_V2, "pv_hypercall_v2", "pv", "4.5", "call:h"),
    (TRC_PV_SUBCALL, "pv_hypercall_subcall", "pv", "4.5", "call:h"),
    # TRC_SHADOW (guest paging levels in bits 8-11 of the id: one entry per minor)
    (TRC_SHADOW + 0x01, "shadow_not_shadow", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x02, "shadow_fast_propagate", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x03, "shadow_fast_mmio", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x04, "shadow_false_fast_path", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x05, "shadow_mmio", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x06, "shadow_fixup", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x07, "shadow_domf_dying", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x08, "shadow_emulate", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x09, "shadow_emulate_unshadow_user", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x0A, "shadow_emulate_unshadow_evtinj", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x0B, "shadow_emulate_unshadow_unhandled", "shadow", "3.3", ""),
    (TRC_SHADOW + 0x0C, "shadow_wrmap_bf", "shadow", "3.4", ""),
    (TRC_SHADOW + 0x0D, "shadow_prealloc_unpin", "shadow", "3.4", ""),
    (TRC_SHADOW + 0x0E, "shadow_resync_full", "shadow", "3.4", ""),
    (TRC_SHADOW + 0x0F, "shadow_resync_only", "shadow", "3.4", ""),
    # TRC_HW: power management and physical interrupts
    (TRC_HW_PM + 0x01, "pm_freq_change", "power", "3.4", "old_mhz:d new_mhz:d"),
    (TRC_HW_PM + 0x02, "pm_idle_entry", "power", "3.4",
     "cstate:d acpi_pm_tick:d expected_us:d predicted_us:d"),
    (TRC_HW_PM + 0x03, "pm_idle_exit", "power", "3.4",
     "cstate:d acpi_pm_tick:d irq0:d irq1:d irq2:d irq3:d"),
    (TRC_HW_IRQ + 0x01, "irq_move_cleanup_delay", "irq", "4.1", "irq:d vector:x cpu:d"),
    (TRC_HW_IRQ + 0x02, "irq_move_cleanup", "irq", "4.1", "irq:d vector:x cpu:d"),
    (TRC_HW_IRQ + 0x03, "irq_bind_vector", "irq", "4.1", "irq:d vector:x cpu_mask:x"),
    (TRC_HW_IRQ + 0x04, "irq_clear_vector", "irq", "4.1", "irq:d vector:x cpu_mask:x"),
    (TRC_HW_IRQ + 0x05, "irq_move_finish", "irq", "4.1", "irq:d vector:x cpu:d"),
    (TRC_HW_IRQ + 0x06, "irq_assign_vector", "irq", "4.1", "irq:d vector:x cpu_mask:x"),
    (TRC_HW_IRQ + 0x07, "irq_unmapped_vector", "irq", "4.1", "vector:x"),
    (TRC_HW_IRQ_HANDLED, "hw_irq_handled", "irq", "4.1",
     "irq:d entry_tsc_lo:x exit_tsc_lo:x"),
    # TRC_GUEST: records a guest wrote with HVMOP_xentrace (any minor)
    (TRC_GUEST, "guest", "guest", "3.3", ""),
)

#: Every record type by id (RUNSTATE_CHANGE under its base id, TRC_GUEST under 0x0800f000).
EVENTS: dict[int, EventInfo] = {row[0]: EventInfo(*row) for row in _TABLE}
#: Names of the events xenlat knows (RUNSTATE_CHANGE variants and TRC_GUEST are named by
#: :func:`event_name`). Lower-case, after xenalyze's vocabulary.
EVENT_NAMES: dict[int, str] = {
    event: info.name for event, info in EVENTS.items()
    if event not in (TRC_SCHED_RUNSTATE_CHANGE, TRC_GUEST)}

#: Class names (bits 16-27 of the id with the minor cleared to the class' ``0xf000`` form).
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

#: VMX basic exit reasons (Intel SDM vol. 3, appendix C), as xenalyze names them.
VMX_EXIT_REASONS: dict[int, str] = {code: name for code, name in enumerate((
    "EXCEPTION_NMI", "EXTERNAL_INTERRUPT", "TRIPLE_FAULT", "INIT", "SIPI", "IO_SMI",
    "OTHER_SMI", "PENDING_INTERRUPT", "PENDING_VIRT_NMI", "TASK_SWITCH", "CPUID", "GETSEC",
    "HLT", "INVD", "INVLPG", "RDPMC", "RDTSC", "RSM", "VMCALL", "VMCLEAR", "VMLAUNCH",
    "VMPTRLD", "VMPTRST", "VMREAD", "VMRESUME", "VMWRITE", "VMOFF", "VMON", "CR_ACCESS",
    "DR_ACCESS", "IO_INSTRUCTION", "MSR_READ", "MSR_WRITE", "INVALID_GUEST_STATE",
    "MSR_LOADING", "", "MWAIT_INSTRUCTION", "MONITOR_TRAP_FLAG", "", "MONITOR_INSTRUCTION",
    "PAUSE_INSTRUCTION", "MACHINE_CHECK", "", "TPR_BELOW_THRESHOLD", "APIC_ACCESS",
    "EOI_INDUCED", "ACCESS_GDTR_OR_IDTR", "ACCESS_LDTR_OR_TR", "EPT_VIOLATION",
    "EPT_MISCONFIG", "INVEPT", "RDTSCP", "VMX_PREEMPTION_TIMER_EXPIRED", "INVVPID", "WBINVD",
    "XSETBV", "APIC_WRITE", "RDRAND", "INVPCID", "VMFUNC", "ENCLS", "RDSEED", "PML_FULL",
    "XSAVES", "XRSTORS", "", "", "UMWAIT", "TPAUSE", "", "", "", "", "", "BUS_LOCK",
    "NOTIFY")) if name}
#: SVM exit codes (AMD APM vol. 2, appendix C) of the exits a guest usually takes.
SVM_EXIT_CODES: dict[int, str] = {
    **{c: f"CR{c}_READ" for c in range(16)}, **{0x10 + c: f"CR{c}_WRITE" for c in range(16)},
    **{0x20 + c: f"DR{c}_READ" for c in range(16)},
    **{0x30 + c: f"DR{c}_WRITE" for c in range(16)},
    **{0x40 + c: f"EXCEPTION_{c}" for c in range(32)},
    **dict(enumerate((
        "INTR", "NMI", "SMI", "INIT", "VINTR", "CR0_SEL_WRITE", "IDTR_READ", "GDTR_READ",
        "LDTR_READ", "TR_READ", "IDTR_WRITE", "GDTR_WRITE", "LDTR_WRITE", "TR_WRITE", "RDTSC",
        "RDPMC", "PUSHF", "POPF", "CPUID", "RSM", "IRET", "SWINT", "INVD", "PAUSE", "HLT",
        "INVLPG", "INVLPGA", "IOIO", "MSR", "TASK_SWITCH", "FERR_FREEZE", "SHUTDOWN", "VMRUN",
        "VMMCALL", "VMLOAD", "VMSAVE", "STGI", "CLGI", "SKINIT", "RDTSCP", "ICEBP", "WBINVD",
        "MONITOR", "MWAIT", "MWAIT_CONDITIONAL", "XSETBV", "RDPRU", "EFER_WRITE_TRAP"),
        start=0x60)),
    0x400: "NPF", 0x401: "AVIC_INCOMPLETE_IPI", 0x402: "AVIC_NOACCEL", 0x403: "VMGEXIT",
}


def is_runstate_change(event: int | np.ndarray) -> bool | np.ndarray:
    """Whether ``event`` is a RUNSTATE_CHANGE (any old/new pair); elementwise for an array."""
    return (event & RUNSTATE_CHANGE_MASK) == TRC_SCHED_RUNSTATE_CHANGE


def event_class(event: int) -> str:
    """The class of an event id (``gen``, ``sched``, ``hvm`` …; ``unknown`` for none)."""
    return CLASS_NAMES.get((((event & EVENT_MASK) >> 16) << 16) | 0xF000, "unknown")


def event_info(event: int) -> EventInfo | None:
    """The table's entry for an id (run-state changes, guest and shadow records by their
    family's entry), or None for an id Xen does not write."""
    event &= EVENT_MASK
    info = EVENTS.get(event)
    if info is not None:
        return info
    if is_runstate_change(event):
        return EVENTS[TRC_SCHED_RUNSTATE_CHANGE]
    if (event & TRC_GUEST_MASK) == TRC_GUEST:
        return EVENTS[TRC_GUEST]
    if (event & TRC_GUEST_MASK) == TRC_SHADOW:
        return EVENTS.get(event & ~SHADOW_LEVELS_MASK)
    return None


def event_name(event: int) -> str:
    """A stable, readable name for any event id; unknown ids get ``<class>:0x<id>``."""
    event &= EVENT_MASK
    name = EVENT_NAMES.get(event)
    if name is not None:
        return name
    info = event_info(event)
    if info is not None:
        return info.name
    return f"{event_class(event)}:0x{event:08x}"


def event_title(event: int) -> str:
    """The name with what makes the id itself distinct: a run-state change's transition
    (``runstate_change blocked->runnable``), a scheduler-class record's scheduler when the
    table does not know it (``credit2:0x00022212``)."""
    event &= EVENT_MASK
    if is_runstate_change(event):
        old, new = ((RUNSTATES[s] if s < len(RUNSTATES) else str(s))
                    for s in ((event >> 8) & 0xF, (event >> 4) & 0xF))
        return f"runstate_change {old}->{new}"
    if event_info(event) is None and (event & 0x0FFFF000) == TRC_SCHED_CLASS:
        return f"{SCHED_CLASS_IDS.get((event >> 9) & 7, 'sched')}:0x{event:08x}"
    return event_name(event)
