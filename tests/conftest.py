"""Fixtures shared by the test modules: the corpus of real captures, tshark, Chromium, the CLI
runner.

The corpus is vendored (``tests/data/corpus``, its PROVENANCE beside it), so it is always there.
Outside the project, and so skipped where absent: tshark, Debian's Chromium with playwright.
CI (``CI=true``) installs both (``.ci/run``), so there a missing one FAILS the test instead: a
green CI run has run every test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
#: Real captures, tshark's reference output and a real xentrace file (see its PROVENANCE).
CORPUS = DATA / "corpus"
CHROMIUM = "/usr/bin/chromium"
#: CI sets this; then nothing outside the project may be missing.
IN_CI = os.environ.get("CI") == "true"


def missing(what: str) -> NoReturn:
    """Skip for want of ``what`` — or, in CI, fail: CI installs everything the tests need."""
    if IN_CI:
        pytest.fail(f"{what}; CI=true and CI provides it (.ci/run), so this test may not skip",
                    pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The vendored corpus of real captures (tests/data/corpus)."""
    if not (CORPUS / "manifest.csv").exists():
        pytest.fail(f"corpus not found at {CORPUS}: it is part of the repository", pytrace=False)
    return CORPUS


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of the tshark binary (skips where it is not installed; fails in CI)."""
    path = shutil.which("tshark")
    if path is None:
        missing("tshark not installed (apt-get install tshark)")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's Chromium, with playwright importable to drive it (skips where either
    is absent; fails in CI)."""
    if not os.path.exists(CHROMIUM):
        missing(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright not installed (pip install -e '.[test]')")
    return CHROMIUM


@pytest.fixture()
def runner() -> CliRunner:
    """A click runner keeping stdout and stderr apart."""
    return CliRunner()
