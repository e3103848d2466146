"""xenlat record: the plan's commands against each tool's documented options, pre-flight
checks, and --run on both sides with stand-in executables on PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import missing

from xentrace_cli.cli import main
from xentrace_cli.sources import record as rec
from xentrace_cli.sources.manifest import read_manifest

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "black-0.1s"

#: xentrace's getopt string (tools/xentrace/xentrace.c, parse_args; Xen 4.x):
#: "t:s:c:e:S:r:T:M:DxX?V" — a colon marks an option that takes a value.
XENTRACE_GETOPT = "t:s:c:e:S:r:T:M:DxX?V"


def _options(tmp_path: Path, **extra) -> rec.RecordOptions:
    return rec.RecordOptions(domid=5, duration_s=0.6, out_dir=tmp_path / "set", **extra)


def test_event_mask_keeps_every_record_the_analysis_reads():
    mask = rec.event_mask()
    # by hand: classes 0x002 (sched) | 0x010 (mem) | 0x020 (pv) | 0x080 (hw), every subclass
    assert mask == 0x00B2F000

    def xen_keeps(event: int) -> bool:  # xen/common/trace.c, __trace_var
        return (mask & event) != 0 and ((mask >> 16) & (event >> 16)) != 0 \
            and (((mask >> 12) & 0xF) & ((event >> 12) & 0xF)) != 0

    for event in (0x00021101, 0x00021211, 0x00028004, 0x0002800A, 0x0002800E, 0x00802008,
                  0x0020100D, 0x0010F003):
        assert xen_keeps(event), hex(event)
    for event in (0x00081002, 0x00082004, 0x0004F001):  # HVM VM exits, HVM handler, dom0op
        assert not xen_keeps(event), hex(event)


def _options_used(argv: tuple[str, ...]) -> list[str]:
    return [a.split("=")[0] for a in argv if a.startswith("-") and a != "--"]


def test_tcpdump_options_are_documented(tmp_path):
    if shutil.which("tcpdump") is None:
        missing("tcpdump not installed (apt-get install tcpdump)")
    usage = subprocess.run(["tcpdump", "--help"], capture_output=True, text=True).stderr \
        + subprocess.run(["tcpdump", "--help"], capture_output=True, text=True).stdout
    documented = set(re.findall(r"--[a-z-]+", usage))
    for group in re.findall(r"\[-([A-Za-z#]+)\]", usage):  # [-AbdDefh...] flags
        documented |= {f"-{c}" for c in group}
    documented |= set(re.findall(r"\[ (-[A-Za-z]) ", usage))  # [ -s snaplen ]
    steps = [s for s in rec.plan(_options(tmp_path)) if s.argv[0] == "tcpdump"]
    assert len(steps) == 3
    for step in steps:
        for option in _options_used(step.argv):
            assert option in documented, (option, usage)


def test_xentrace_options_are_documented(tmp_path):
    step = next(s for s in rec.plan(_options(tmp_path)) if s.argv[0] == "xentrace")
    args = list(step.argv[1:])
    while args and args[0].startswith("-"):
        letter = args.pop(0)[1]
        where = XENTRACE_GETOPT.index(letter)  # ValueError: an undocumented option
        if XENTRACE_GETOPT[where + 1:where + 2] == ":":
            value = args.pop(0)
            assert not value.startswith("-")
    assert args == [str(tmp_path / "set" / "xentrace.bin")]  # the output file, last


def test_strace_accepts_the_plan(tmp_path):
    if shutil.which("strace") is None:
        missing("strace not installed (apt-get install strace)")
    step = next(s for s in rec.plan(_options(tmp_path, pid=1)) if s.argv[0] == "strace")
    argv = list(step.argv)
    argv[argv.index("-o") + 1] = str(tmp_path / "out.strace")
    argv = argv[:argv.index("-p")] + ["--", "true"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0 and "ptrace" in proc.stderr.lower():
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr  # an unknown call or option would exit 1
    assert "invalid" not in proc.stderr


def test_preflight_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tool at all
    options = _options(tmp_path)
    problems = rec.preflight(rec.plan(options), "dom0", options, euid=1000)
    assert "tcpdump is not installed (not on PATH)" in problems
    assert "xentrace is not installed (not on PATH)" in problems
    assert "xl is not installed (not on PATH)" in problems
    assert "capturing needs root (tcpdump, xentrace, strace -p): run as root" in problems
    guest = rec.preflight(rec.plan(options), "guest", options, euid=0)
    assert "no application to strace: give --pid PID or --app 'COMMAND'" in guest
    huge = rec.RecordOptions(domid=5, duration_s=1e9, out_dir=tmp_path / "set")
    assert any("MiB free" in p for p in rec.preflight(rec.plan(huge), "dom0", huge, euid=0))


# The stand-in notes the stop signal first (its trap set before anything else: under load the
# signal of a 0.6 s recording can come while it still parses its arguments, and a bash killed by
# it would have copied nothing), then gives its file when stopped, as the real tools end theirs.
STANDIN = r"""#!/bin/bash
stop=""; trap 'stop=1' INT TERM
echo "$0 $*" >> "$STANDIN_DIR/calls.log"
case "$(basename "$0")" in
  xl) [ "$1" = info ] && printf 'host : xen-a\ncpu_mhz : 2900.000\n'; exit 0 ;;
  ip) case "$4" in
        eth0|eth1|vif5.0) exit 0 ;;
        *) echo "Device \"$4\" does not exist." >&2; exit 1 ;;
      esac ;;
esac
out=""; iface=""; last=""
while [ $# -gt 0 ]; do
  case "$1" in -w|-o) out="$2"; shift ;; -i) iface="$2"; shift ;; esac
  last="$1"; shift
done
case "$(basename "$0")" in
  xentrace) out="$last"; src=xentrace.bin ;;
  strace) src=app.strace ;;
  tcpdump) case "$iface" in
        eth0) src=phys.pcap ;; vif5.0) src=vif5.0.pcap ;; *) src=guest.pcapng ;;
      esac ;;
esac
until [ -n "$stop" ]; do sleep 0.05; done
cp "$SAMPLE_DIR/$src" "$out.part" && mv "$out.part" "$out"
"""


@pytest.fixture()
def standins(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("tcpdump", "xentrace", "strace", "xl", "ip"):
        path = bin_dir / tool
        path.write_text(STANDIN)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_DIR", str(tmp_path))
    monkeypatch.setenv("SAMPLE_DIR", str(SAMPLE))
    monkeypatch.setattr(rec.os, "geteuid", lambda: 0)
    return tmp_path


def test_run_both_sides_with_standins_then_analyze_the_set(standins, runner):
    out = standins / "set"
    dom0 = runner.invoke(main, ["record", "--domid", "5", "--duration", "0.6s", "-o", str(out),
                                "--side", "dom0", "--run", "--no-progress"])
    assert dom0.exit_code == 0, dom0.stderr
    assert dom0.stdout.splitlines() == [str(out / "phys.pcap"), str(out / "vif5.0.pcap"),
                                        str(out / "xentrace.bin"),
                                        str(out / "xenlat-set.toml")]
    calls = (standins / "calls.log").read_text().splitlines()
    planned = {s.shell for s in rec.plan(rec.RecordOptions(domid=5, duration_s=0.6,
                                                             out_dir=out))}
    ran = [c.split(" ", 1) for c in calls if not c.split()[0].endswith(("/ip", "/xl"))]
    assert {f"{Path(tool).name} {args}" for tool, args in ran} <= planned
    assert len(ran) == 3
    guest = runner.invoke(main, ["record", "--domid", "5", "--duration", "0.6s", "-o",
                                 str(out), "--side", "guest", "--guest-iface", "eth1",
                                 "--pid", str(os.getpid()), "--run", "--no-progress"])
    assert guest.exit_code == 0, guest.stderr
    found = read_manifest(out)
    assert found.domid == 5 and found.cpu_hz == 2.9e9
    assert sorted(found.sources.present) == ["backend", "guest", "phys", "socket_log",
                                             "xentrace"]
    assert (out / "phys.log").exists()  # each command's output kept beside its file
    result = runner.invoke(main, ["analyze", str(out), "--format", "json", "--no-progress"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    flagged = sum(1 for p in document["packets"] if p["anomaly"])
    truth = (SAMPLE / "truth.csv").read_text().splitlines()
    column = truth[0].split(",").index("anomaly")
    stalled = sum(1 for line in truth[1:] if line.split(",")[column])
    assert flagged == stalled > 0  # the black 0.1 s sample's stalled segments (its truth)
    assert document["alignment"]["tsc->dom0"]["cpu_hz_estimated"] is False  # from xl info


def test_run_refuses_with_the_reasons(standins, runner):
    result = runner.invoke(main, ["record", "--domid", "5", "--duration", "1s", "-o",
                                  str(standins / "set"), "--side", "dom0", "--nic", "eth9",
                                  "--run"])
    assert result.exit_code == 2
    assert "cannot record on the dom0 side: interface eth9 does not exist here" \
        in result.stderr
    assert not (standins / "set" / "xenlat-set.toml").exists()


def test_a_capture_failing_early_stops_the_run(standins, runner):
    bad = standins / "bin" / "xentrace"
    bad.write_text("#!/bin/bash\necho 'xenctrl interface open: Permission denied' >&2\n"
                   "exit 1\n")
    result = runner.invoke(main, ["record", "--domid", "5", "--duration", "5s", "-o",
                                  str(standins / "set"), "--side", "dom0", "--run"])
    assert result.exit_code == 2
    assert re.search(r"xentrace stopped after [0-9.]+ s with status 1: xenctrl interface "
                     "open: Permission denied", result.stderr)


def test_plan_is_printed_without_run(runner):
    result = runner.invoke(main, ["record", "--domid", "7", "--duration", "2m", "-o",
                                  "/var/tmp/s", "--pid", "4242", "--type", "hvm"])
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "timeout --signal=INT 120 tcpdump" in text
    assert "-i vif7.0 -w /var/tmp/s/vif7.0.pcap" in text
    assert "xentrace -D -e 0x00b2f000 -S 1024 -T 120 /var/tmp/s/xentrace.bin" in text
    assert "strace -f -ttt -T -s 64 -yy -e trace=read," in text and "-p 4242" in text
    assert "xl info | grep cpu_mhz" in text
    assert "HVM guest" in text
    assert "xenlat analyze /var/tmp/s/guest.pcap --backend /var/tmp/s/vif7.0.pcap" in text
    assert runner.invoke(main, ["record", "--duration", "1s"]).exit_code == 2
