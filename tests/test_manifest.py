"""The capture-set manifest (xentrace_cli.sources.manifest): round trip and refusals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from xentrace_cli.errors import InputError
from xentrace_cli.simulate import run_scenario
from xentrace_cli.sources.manifest import MANIFEST_NAME, read_manifest, write_manifest


def test_round_trip(tmp_path: Path) -> None:
    (tmp_path / "guest.pcapng").write_bytes(b"x")
    (tmp_path / "vif5.0.pcap").write_bytes(b"x")
    started = dt.datetime(2026, 12, 6, 22, 0, 1, 250_000, tzinfo=dt.UTC)
    write_manifest(tmp_path, {"guest": "guest.pcapng", "backend": "vif5.0.pcap"},
                   xen_host='xen "a"', domid=5, started=started, cpu_hz=2.9e9, nic_irq=58)
    got = read_manifest(tmp_path)
    assert got.sources.guest == tmp_path / "guest.pcapng"
    assert got.sources.backend == tmp_path / "vif5.0.pcap"
    assert got.sources.present == ["backend", "guest"]
    assert (got.xen_host, got.domid, got.started, got.cpu_hz, got.nic_irq) == \
        ('xen "a"', 5, started, 2.9e9, 58)


def test_simulated_sets_carry_one(tmp_path: Path) -> None:
    run_scenario("healthy", tmp_path, seed=3, requests=5)
    got = read_manifest(tmp_path)
    assert got.domid == 5 and got.xen_host == "simulated"
    assert got.sources.present == ["xentrace", "phys", "backend", "guest", "socket_log"]
    assert got.started is not None and got.started.year == 2026


@pytest.mark.parametrize(("text", "problem"), [
    ("format = 2\n[files]\nguest = 'g'\n", "format 2 is not one this xenlat reads"),
    ("format = 1\n[set]\ndomid = 'five'\n[files]\nguest = 'g'\n", "domid = 'five': expected int"),
    ("format = 1\n[set]\ndomid = 99999999999\n[files]\nguest = 'g'\n", "a domain id is"),
    ("format = 1\n[set]\ncpu_hz = nan\n[files]\nguest = 'g'\n", "cpu_hz = nan"),
    ("format = 1\n[files]\nguest = 'missing.pcap'\n", "no such file"),
    ("format = 1\n[files]\ntrace = 'g'\n", "unknown key 'trace'"),
    ("format = 1\n", "lists no source"),
    ("format = 1\n[files\n", "not valid TOML"),
])
def test_bad_manifests_are_input_errors(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "g").write_bytes(b"x")
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        read_manifest(tmp_path)
    assert str(err.value).startswith(str(tmp_path / MANIFEST_NAME))


def test_a_directory_without_one(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a capture set"):
        read_manifest(tmp_path)
