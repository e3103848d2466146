"""Fixtures shared by the test modules: the shared corpus, tshark, the CLI runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus of real captures (skips where it is absent)."""
    if not (CORPUS / "manifest.csv").exists():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of the tshark binary (skips where it is not installed)."""
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark not installed (apt-get install tshark)")
    return path


@pytest.fixture()
def runner() -> CliRunner:
    """A click runner keeping stdout and stderr apart."""
    return CliRunner()
