"""The vendored corpus's manifest as test parameters: its rows, and one pytest case per row.

Used by the tests that compare a reader with tshark's and capinfos' figures (test_packets,
test_info). The path is conftest's, so the ``corpus`` fixture and the manifest agree.
"""

from __future__ import annotations

import csv

import pytest
from conftest import CORPUS


def _manifest() -> list[dict[str, str]]:
    path = CORPUS / "manifest.csv"
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


#: The manifest's rows (file, format, tshark's exit and counts …); empty without the corpus.
MANIFEST = _manifest()


def corpus_cases(entries: list[dict[str, str]]) -> list[object]:
    """One case per manifest entry; without the corpus one stand-in case, which the ``corpus``
    fixture skips with its reason (fails in CI) instead of an empty parameter set."""
    if not entries:
        return [pytest.param(None, id="corpus-absent")]
    return [pytest.param(e, id=e["file"]) for e in entries]
