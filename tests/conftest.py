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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


@pytest.fixture(scope="session")
def simulated_set(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``simulated_set(scenario, seed=1, requests=None, host=None, shape=None) -> directory``:
    the capture set ``xenlat simulate`` writes (captures, trace, strace, truth.csv,
    scenario.json, manifest), made once per session for each (scenario, seed, requests, host,
    shape) and shared by every test asking for it: read it, never write into it (copy what
    you need to change into ``tmp_path``). ``host=None`` is the simulator's default host."""
    from xentrace_cli.simulate import run_scenario

    made: dict[tuple[Any, ...], Path] = {}

    def make(scenario: str, *, seed: int = 1, requests: int | None = None,
             host: str | None = None, shape: Any = None) -> Path:
        key = (scenario, seed, requests, host, repr(shape))
        if key not in made:
            out = tmp_path_factory.mktemp(f"{scenario}-{seed}-{requests}-{host or 'default'}")
            run_scenario(scenario, out, seed=seed, requests=requests, host=host, shape=shape)
            made[key] = out
        return made[key]

    return make


@pytest.fixture()
def runner() -> CliRunner:
    """A click runner keeping stdout and stderr apart."""
    return CliRunner()


def read_all(path: Path) -> tuple[object, list[str]]:
    """A capture's whole table as text (or its one-line error) and the warnings it gave: what
    the readers' walk comparisons (loop against vectorized walk) compare."""
    from xentrace_cli.errors import InputError
    from xentrace_cli.sources.packets import read_packets

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table: object = read_packets(path).astype(str)
        except InputError as exc:
            table = str(exc)
    return table, [str(w.message) for w in caught]
