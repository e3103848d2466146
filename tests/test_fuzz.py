"""The fuzz targets (tests/fuzz_harness.py), a bounded number of cases each, on every push.

Derandomized: every run draws the same cases, so a red run is reproducible; the long run
(docs/fuzzing.md) draws new ones. A broken contract fails with Hypothesis's shrunk example.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_harness import TARGETS, Campaign, Outcome, check  # noqa: E402

#: Cases per target on every push (the analyze pipeline costs ~0.5 s a case, the readers less).
CI_CASES = {"pcap": 40, "pcapng": 40, "xentrace": 40, "strace": 30, "socklog": 30, "analyze": 6}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target(target: str, tmp_path: Path) -> None:
    campaign = Campaign(TARGETS[target], tmp_path)
    campaign.run(CI_CASES[target], derandomize=True)
    assert campaign.cases >= CI_CASES[target]
    assert campaign.tracebacks == 0
    assert set(campaign.counts) <= {0, 1, 3}


@pytest.mark.parametrize(("outcome", "broken"), [
    (Outcome(0, "xenlat: warning: /w/f: line 3: bad\n", False), False),
    (Outcome(3, "xenlat: error: /w/f: offset 0: not a capture\n", False), False),
    (Outcome(4, "xenlat: internal error: IndexError: …\n", False), True),
    (Outcome(3, "xenlat: error: something without the file\n", False), True),
    (Outcome(0, "Traceback (most recent call last):\n", True), True),
    (Outcome(0, "RuntimeWarning: invalid value encountered in cast\n", False), True),
    (Outcome(2, "Usage: xenlat …\n", False), True),
])
def test_the_contract_check_catches_what_it_must(outcome: Outcome, broken: bool) -> None:
    """The harness's check fails exactly the outcomes the contract forbids."""
    if broken:
        with pytest.raises(AssertionError):
            check(outcome, Path("/w"))
    else:
        check(outcome, Path("/w"))
