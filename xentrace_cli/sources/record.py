"""``xenlat record``: the commands that capture what xenlat reads, and running them.

Nobody remembers which interfaces to capture in dom0, which xentrace event mask covers the
checkpoints, or which strace options give usable socket times. :func:`plan` writes them down
for one guest — dom0's side (tcpdump on the physical NIC and on ``vifD.N``, xentrace, the TSC
frequency from ``xl info``) and the guest's side (tcpdump on its interface, strace on the
application) — and :func:`run` executes the side it is on for a duration, into a directory,
then writes the capture-set manifest (``manifest.write_manifest``) that ``xenlat analyze DIR``
reads. :func:`preflight` says precisely what is missing before anything starts.

Choices, each for a reason the analysis needs:
- tcpdump ``--time-stamp-precision=nano`` (ns pcap: µs timestamps blur µs stages), ``-s``
  256 bytes (headers and the payload prefix the matcher digests), ``-B`` 32 MiB (no kernel
  drops at line rate), ``-n`` (no DNS lookups while capturing), ``-Z root`` (the file stays
  writable into a root-owned directory), ``-U`` (each packet flushed: nothing lost on stop).
- xentrace ``-e`` the classes of the records the analysis reads (scheduler, hardware IRQ,
  PV hypercalls, grant-table memory ops: :data:`TRACE_EVENTS`), not HVM's VM exits, which
  would flood the buffers; ``-S`` 1024 pages (4 MiB) per CPU, ``-D`` (no stale records),
  ``-T`` the duration.
- strace ``-f -ttt -T -s 64 -yy`` with ``-e trace=`` the calls the socket-log reader reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .. import xen_events as xe
from ..errors import OptionError
from .manifest import FILE_KEYS, is_set_directory, read_manifest, write_manifest

#: The trace records the analysis reads (``attribute``, ``readers.xentrace``).
TRACE_EVENTS: tuple[int, ...] = (
    xe.TRC_SCHED_RUNSTATE_CHANGE, xe.TRC_SCHED_CONTINUE_RUNNING, xe.TRC_SCHED_WAKE,
    xe.TRC_SCHED_SWITCH, xe.TRC_SCHED_SWITCH_INFPREV, xe.TRC_SCHED_SWITCH_INFNEXT,
    xe.TRC_HW_IRQ_HANDLED, xe.TRC_PV_HYPERCALL_V2, xe.TRC_MEM_PAGE_GRANT_TRANSFER,
)
#: The system calls strace follows: what the socket-log reader reads (x86-64 names).
STRACE_CALLS: tuple[str, ...] = (
    "read", "readv", "pread64", "recvfrom", "recvmsg", "recvmmsg",
    "write", "writev", "sendto", "sendmsg", "sendmmsg", "sendfile",
    "connect", "accept", "accept4", "close", "socket", "socketpair", "dup", "dup2", "dup3",
    "clone", "clone3", "fork", "vfork", "open", "openat", "creat", "pipe", "pipe2",
)
SNAPLEN = 256
BUFFER_KIB = 32768
TRACE_PAGES = 1024
#: Bytes per second a side's files may grow by (for the disk-space check), and the floor.
DISK_RATE = {"dom0": 30 << 20, "guest": 12 << 20}
MIN_FREE = 256 << 20
#: Seconds a capture gets to flush and exit after SIGINT before it is killed.
STOP_GRACE_S = 10.0


def event_mask(events: Sequence[int] = TRACE_EVENTS) -> int:
    """xentrace's ``-e`` mask that lets ``events`` through. Xen keeps a record when the mask
    shares a bit with its class (bits 16–27) and one with its subclass (bits 12–15)."""
    classes = subclasses = 0
    for event in events:
        classes |= (event >> 16) & 0xFFF
        subclasses |= (event >> 12) & 0xF
    return (classes << 16) | (subclasses << 12)


def xen_keeps(mask: int, event: int) -> bool:
    """Whether Xen's trace filter (xen/common/trace.c) keeps ``event`` under ``mask``."""
    return bool(mask & event) and bool((mask >> 16) & (event >> 16) & 0xFFF) \
        and bool((mask >> 12) & (event >> 12) & 0xF)


@dataclasses.dataclass(frozen=True)
class RecordOptions:
    """What to record: the guest, for how long, where."""

    domid: int
    duration_s: float
    out_dir: Path
    nic: str = "eth0"
    """dom0's physical NIC (or the bridge's uplink)."""
    vif: str | None = None
    """The guest's backend interface; ``vif<domid>.0`` when None."""
    guest_iface: str = "eth0"
    pid: int | None = None
    """The application to strace (``-p``); or ``app`` to start it."""
    app: str | None = None
    guest_ip: str | None = None
    """When given, the physical-NIC capture keeps only this guest's traffic."""
    guest_type: str = "pv"
    """``pv`` or ``hvm``: changes the advice, not the commands (HVM guests use the same
    vif when they run PV network drivers, as they should)."""
    guest_name: str | None = None

    @property
    def backend_iface(self) -> str:
        return self.vif or f"vif{self.domid}.0"


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of a plan."""

    side: str
    """``dom0`` or ``guest``."""
    source: str
    """The manifest's name for what it writes (``phys``, ``backend``, ``xentrace``,
    ``guest``, ``socket_log``), or ``""`` for a look-up (``xl info``)."""
    argv: tuple[str, ...]
    output: str | None
    """File written into the set directory."""
    why: str

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


def plan(options: RecordOptions) -> list[Step]:
    """Every command, dom0's side then the guest's, with file names inside ``out_dir``."""
    d = options.out_dir
    seconds = max(1, math.ceil(options.duration_s))
    tcpdump = ("tcpdump", "-n", "-s", str(SNAPLEN), "-B", str(BUFFER_KIB),
               "--time-stamp-precision=nano", "-Z", "root", "-U")
    vif = options.backend_iface
    phys_filter = ("host", options.guest_ip) if options.guest_ip else ()
    steps = [
        Step("dom0", "", ("xl", "info"), None,
             "cpu_mhz is the TSC frequency (--cpu-hz = cpu_mhz × 1e6)"),
        Step("dom0", "phys", (*tcpdump, "-i", options.nic, "-w", str(d / "phys.pcap"),
                              *phys_filter), "phys.pcap",
             "the physical NIC: the phys checkpoint"),
        Step("dom0", "backend", (*tcpdump, "-i", vif, "-w", str(d / f"{vif}.pcap")),
             f"{vif}.pcap", f"the guest's backend {vif}: the backend checkpoint"),
        Step("dom0", "xentrace", ("xentrace", "-D", "-e", f"0x{event_mask():08x}", "-S",
                                  str(TRACE_PAGES), "-T", str(seconds),
                                  str(d / "xentrace.bin")), "xentrace.bin",
             "scheduler, NIC interrupt and grant-copy records: irq, dom0_run, copy and "
             "the causes"),
        Step("guest", "guest", (*tcpdump, "-i", options.guest_iface,
                                "-w", str(d / "guest.pcap")), "guest.pcap",
             "inside the guest: the guest checkpoint"),
    ]
    strace = ("strace", "-f", "-ttt", "-T", "-s", "64", "-yy",
              "-e", "trace=" + ",".join(STRACE_CALLS), "-o", str(d / "app.strace"))
    if options.pid is not None:
        target: tuple[str, ...] = ("-p", str(options.pid))
    elif options.app:
        target = ("--", *shlex.split(options.app))
    else:
        target = ("-p", "PID")
    steps.append(Step("guest", "socket_log", (*strace, *target), "app.strace",
                      "the application's reads and writes: the read and write checkpoints"))
    return steps


def format_plan(options: RecordOptions, steps: list[Step]) -> str:
    """The plan as a shell script a person can read and paste."""
    d = options.out_dir
    lines = [f"# xenlat record: guest domain {options.domid}"
             + (f" ({options.guest_name})" if options.guest_name else "")
             + f", {options.duration_s:g} s, into {d}", ""]
    for side, title in (("dom0", "In dom0 (as root), all at once"),
                        ("guest", "Inside the guest (as root), at the same time")):
        lines += [f"## {title}", f"mkdir -p {shlex.quote(str(d))}"]
        for step in steps:
            if step.side != side:
                continue
            lines.append(f"# {step.why}")
            if step.argv[0] == "xl":
                lines.append("xl info | grep cpu_mhz")
            elif step.argv[0] == "xentrace":
                lines.append(step.shell + " &")
            else:
                lines.append(f"timeout --signal=INT {math.ceil(options.duration_s)} "
                             f"{step.shell} &")
        lines += ["wait", ""]
    if options.guest_type == "hvm":
        lines += ["# HVM guest: its traffic goes through the vif only with PV network drivers",
                  "# (xen-netfront; 'ethtool -i IFACE' in the guest says driver: vif). With",
                  "# an emulated NIC capture the tap instead: --vif vifD.N-emu.", ""]
    files = {s.source: s.output for s in steps if s.output}
    lines += ["## Then, with the guest's files copied into dom0's directory",
              analyze_line(options, files), ""]
    return "\n".join(lines)


def analyze_line(options: RecordOptions, files: Mapping[str, str | None],
                 cpu_hz: float | None = None) -> str:
    """The ``xenlat analyze`` command for the recorded files."""
    d = options.out_dir
    args = ["xenlat", "analyze", str(d / (files.get("guest") or "guest.pcap"))]
    for source, flag in (("backend", "--backend"), ("phys", "--phys"),
                         ("xentrace", "--xentrace"), ("socket_log", "--socket-log")):
        if files.get(source):
            args += [flag, str(d / str(files[source]))]
    args += ["--domid", str(options.domid)]
    if cpu_hz:
        args += ["--cpu-hz", f"{cpu_hz:.0f}"]
    return shlex.join(args) + ("" if cpu_hz else " --cpu-hz CPU_MHZ_TIMES_1E6")


def detect_side(root: Path = Path("/")) -> str | None:
    """``dom0`` on Xen's control domain, ``guest`` inside a Xen guest, else None."""
    caps = root / "proc/xen/capabilities"
    try:
        if "control_d" in caps.read_text():
            return "dom0"
    except OSError:
        pass
    try:
        if (root / "sys/hypervisor/type").read_text().strip() == "xen":
            return "guest"
    except OSError:
        pass
    return "guest" if (root / "proc/xen").exists() else None


def preflight(steps: list[Step], side: str, options: RecordOptions, *,
              euid: int | None = None) -> list[str]:
    """What stops the ``side`` of the plan from running, each said precisely ([] when all
    is well): tools not installed, not root, an interface that does not exist, too little
    disk space, a PID that is not running."""
    mine = [s for s in steps if s.side == side]
    problems = []
    for tool in sorted({s.argv[0] for s in mine}):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is not installed (not on PATH)")
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append("capturing needs root (tcpdump, xentrace, strace -p): run as root")
    for step in mine:
        if step.argv[0] == "tcpdump":
            iface = step.argv[step.argv.index("-i") + 1]
            if not interface_exists(iface):
                problems.append(f"interface {iface} does not exist here (ip link show)")
    if side == "guest" and options.pid is None and not options.app:
        problems.append("no application to strace: give --pid PID or --app 'COMMAND'")
    if side == "guest" and options.pid is not None and not Path(f"/proc/{options.pid}").exists():
        problems.append(f"no process {options.pid} is running")
    needed = max(MIN_FREE, int(DISK_RATE.get(side, 0) * options.duration_s))
    directory = _existing_parent(options.out_dir)
    free = shutil.disk_usage(directory).free
    if free < needed:
        problems.append(f"{directory} has {free >> 20} MiB free; {options.duration_s:g} s of "
                        f"recording needs about {needed >> 20} MiB")
    return problems


def interface_exists(name: str) -> bool:
    """The network interface exists (``ip link show``, else ``/sys/class/net``)."""
    if shutil.which("ip"):
        proc = subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                              check=False)
        return proc.returncode == 0
    return Path("/sys/class/net", name).exists()


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def cpu_hz_from_xl_info(text: str) -> float | None:
    """The TSC frequency from ``xl info`` (``cpu_mhz : 2900.046``), in Hz."""
    found = re.search(r"^cpu_mhz\s*:\s*([0-9.]+)", text, re.MULTILINE)
    return float(found.group(1)) * 1e6 if found else None


@dataclasses.dataclass
class Recorded:
    """What a run wrote."""

    files: dict[str, str]
    """Manifest source name → file name in the directory (those that hold data)."""
    manifest: Path
    cpu_hz: float | None
    warnings: list[str]


def run(options: RecordOptions, side: str, *,
        on_progress: Callable[[float, float], None] | None = None,
        sleep: Callable[[float], None] = time.sleep) -> Recorded:
    """Run ``side`` of the plan for the duration into ``options.out_dir`` (its ``.log`` files
    keep each command's output), then write the manifest. Raises ``OptionError`` when a
    command cannot start or fails early."""
    steps = [s for s in plan(options) if s.side == side]
    out = options.out_dir
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    cpu_hz = _cpu_hz(out) if side == "dom0" else None
    running = []
    try:
        for step in steps:
            if step.output is None:
                continue
            log = open(out / f"{step.source}.log", "wb")  # noqa: SIM115 - closed below
            try:
                proc = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError as exc:
                log.close()
                raise OptionError(f"cannot start {step.argv[0]}: {exc.strerror or exc}") \
                    from None
            running.append((step, proc, log))
        _wait(running, options.duration_s, on_progress, sleep, out)
    finally:
        _stop(running)
    warnings, files = [], {}
    for step, _, _ in running:
        path = out / str(step.output)
        if path.is_file() and path.stat().st_size > 0:
            files[step.source] = str(step.output)
        else:
            warnings.append(f"{step.argv[0]} wrote nothing to {path} (see "
                            f"{out / (step.source + '.log')})")
    manifest = _write_manifest(options, files, started, cpu_hz)
    return Recorded(files=files, manifest=manifest, cpu_hz=cpu_hz, warnings=warnings)


def _cpu_hz(out: Path) -> float | None:
    try:
        proc = subprocess.run(["xl", "info"], capture_output=True, text=True, check=False,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    (out / "xl-info.txt").write_text(proc.stdout, encoding="utf-8")
    return cpu_hz_from_xl_info(proc.stdout) if proc.returncode == 0 else None


def _wait(running: list, duration_s: float, on_progress: Callable[[float, float], None] | None,
          sleep: Callable[[float], None], out: Path) -> None:
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration_s:
        for step, proc, _ in running:
            code = proc.poll()
            if code is not None and code != 0:
                raise OptionError(f"{step.argv[0]} stopped after {elapsed:.1f} s with status "
                                  f"{code}: {_last_line(out / (step.source + '.log'))}")
        if on_progress is not None:
            on_progress(elapsed, duration_s)
        sleep(min(0.2, max(0.0, duration_s - elapsed)))
    if on_progress is not None:
        on_progress(duration_s, duration_s)


def _stop(running: list) -> None:
    """SIGINT (each tool flushes and closes its file), then SIGKILL after a grace period."""
    for _, proc, _ in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for _, proc, log in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1].strip() if lines else "(no output)"


def _write_manifest(options: RecordOptions, files: dict[str, str], started: dt.datetime,
                    cpu_hz: float | None) -> Path:
    """The set's manifest: this run's files, and those an earlier run into the same
    directory recorded (the other side's, copied in) when they are still there."""
    merged = dict(files)
    meta: dict[str, object] = {}
    if is_set_directory(options.out_dir):
        try:
            earlier = read_manifest(options.out_dir)
        except Exception:  # noqa: BLE001 - a broken old manifest is replaced, not fatal
            earlier = None
        if earlier is not None:
            for key in FILE_KEYS:
                path = getattr(earlier.sources, key)
                if path is not None and key not in merged:
                    merged[key] = os.path.relpath(path, options.out_dir)
            meta = {"cpu_hz": earlier.cpu_hz, "nic_irq": earlier.nic_irq,
                    "xen_host": earlier.xen_host}
    return write_manifest(
        options.out_dir, merged, domid=options.domid, guest_name=options.guest_name,
        started=started, cpu_hz=cpu_hz or meta.get("cpu_hz"),  # type: ignore[arg-type]
        nic_irq=meta.get("nic_irq"),  # type: ignore[arg-type]
        xen_host=socket.gethostname() if cpu_hz or "backend" in files
        else meta.get("xen_host"))  # type: ignore[arg-type]


__all__ = ["RecordOptions", "Recorded", "Step", "analyze_line",
           "detect_side", "event_mask", "format_plan", "plan", "preflight", "run"]
