"""The command shell: help texts, usage errors, and how exceptions become exit codes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from xentrace_cli.cli import XenlatGroup, main
from xentrace_cli.errors import ExitCode, InputError, TruncatedInput, warn


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout
    assert f"xenlat {command}" in result.stdout or command == "simulate"


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.stdout


def test_analyze_without_sources_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["analyze"])
    assert result.exit_code == ExitCode.USAGE
    assert "nothing to analyze" in result.stderr
    assert result.stdout == ""


def test_capture_given_twice_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["analyze", "a.pcap", "--guest", "b.pcap"])
    assert result.exit_code == ExitCode.USAGE
    assert "either as CAPTURE or as --guest" in result.stderr


def test_check_without_budgets_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", "guest.pcap"])
    assert result.exit_code == ExitCode.USAGE
    assert "nothing to check" in result.stderr


def test_unknown_command_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["frobnicate"])
    assert result.exit_code == ExitCode.USAGE


# --- exceptions to exit codes, through a throwaway group using the same class -------------

def _group() -> click.Group:
    @click.group(cls=XenlatGroup)
    def cli() -> None:
        pass

    @cli.command()
    def bad() -> None:
        raise InputError("x.pcap", "not a capture file (magic 0xdeadbeef)", offset=0)

    @cli.command()
    def cut() -> None:
        warn(TruncatedInput("x.pcap: offset 495 (packet 5): cut short"))
        click.echo("data")

    @cli.command()
    def bug() -> None:
        raise ZeroDivisionError("division by zero")

    return cli


def test_input_error_is_one_line_exit_3(runner: CliRunner) -> None:
    result = runner.invoke(_group(), ["bad"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == ("xenlat: error: x.pcap: offset 0: not a capture file "
                             "(magic 0xdeadbeef)\n")
    assert result.stdout == ""


def test_truncation_warns_and_keeps_data(runner: CliRunner) -> None:
    result = runner.invoke(_group(), ["cut"])
    assert result.exit_code == ExitCode.OK
    assert result.stdout == "data\n"
    assert result.stderr == "xenlat: warning: x.pcap: offset 495 (packet 5): cut short\n"


def test_internal_error_is_one_line_without_traceback(runner: CliRunner) -> None:
    result = runner.invoke(_group(), ["bug"])
    assert result.exit_code == ExitCode.INTERNAL
    assert "internal error: ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr


def test_strict_turns_truncation_into_exit_3(runner: CliRunner) -> None:
    from xentrace_cli.cli import common_options

    cli = _group()

    @cli.command()
    @common_options
    def cut_strict() -> None:
        warn(TruncatedInput("x.pcap: offset 495 (packet 5): cut short"))
        click.echo("data")

    assert runner.invoke(cli, ["cut-strict"]).exit_code == ExitCode.OK
    result = runner.invoke(cli, ["cut-strict", "--strict"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.stderr == "xenlat: error: x.pcap: offset 495 (packet 5): cut short (--strict)\n"
    assert result.stdout == ""


def test_unwritable_output_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    cli = _group()

    @cli.command()
    def write() -> None:
        (tmp_path / "missing-dir" / "out.json").write_text("{}")

    result = runner.invoke(cli, ["write"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("xenlat: error: ")
    assert "missing-dir/out.json: No such file or directory" in result.stderr


@pytest.mark.parametrize("args", [
    ["analyze", "g.pcap", "--cpu-hz", "0"],
    ["analyze", "g.pcap", "--cpu-hz", "-2.9e9"],
    ["check", "g.pcap", "--cpu-hz", "0", "--budget", "total.max < 1s"],
    ["trace", "t.bin", "--cpu-hz", "0"],
    ["analyze", "g.pcap", "--top", "-1"],
    ["analyze", "g.pcap", "--domid", "-3"],
    ["simulate", "healthy", "-o", "x", "--requests", "0"],
])
def test_out_of_range_numbers_are_usage_errors(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Invalid value" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_list_needs_no_output_dir(runner: CliRunner) -> None:
    from xentrace_cli.simulate import SCENARIOS

    result = runner.invoke(main, ["simulate", "list"])
    assert result.exit_code == ExitCode.OK, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines()]
    assert listed == list(SCENARIOS)
    result = runner.invoke(main, ["simulate", "healthy"])
    assert result.exit_code == ExitCode.USAGE
    assert "give -o DIR" in result.stderr


SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


@pytest.mark.parametrize(("budget", "expected"), [
    (None, ExitCode.OK),                          # analyze: nothing to report but the data
    ("socket_read.p99 < 2ms", ExitCode.GATE_BREACHED),  # check: the verdict survives
])
def test_reader_leaving_early_keeps_the_exit_code(budget: str | None,
                                                  expected: ExitCode) -> None:
    """``xenlat … | head``: stdout closes before xenlat writes; no traceback, honest code."""
    import subprocess
    import sys

    sample = SAMPLES / "black-0.1s"
    args = [str(sample / "guest.pcapng"), "--socket-log", str(sample / "app.strace")]
    command = ["analyze", *args] if budget is None else ["check", *args, "--budget", budget]
    proc = subprocess.Popen([sys.executable, "-m", "xentrace_cli", *command, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the analysis ends
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == expected
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    if budget is None:
        assert stderr == ""
