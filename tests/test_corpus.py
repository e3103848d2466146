"""The vendored corpus (tests/data/corpus): every file is the one its manifest row and its
PROVENANCE entry describe, so a test's ground truth (tshark's figures) belongs to the bytes read.
"""

from __future__ import annotations

import hashlib
import re

from conftest import CORPUS
from corpus_cases import MANIFEST


def _provenance() -> dict[str, dict[str, str]]:
    """PROVENANCE as {file: {field: value}} (a file line, then indented 'field: value' lines)."""
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in (CORPUS / "PROVENANCE").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith(" "):
            current = entries.setdefault(line.strip(), {})
        elif current is not None and (m := re.match(r"\s+(\w+): (.*)", line)):
            current[m.group(1)] = m.group(2)
    return entries


def test_every_capture_is_in_the_manifest_with_its_sha256() -> None:
    files = sorted(p.name for p in (CORPUS / "captures").iterdir())
    assert files == sorted(row["file"] for row in MANIFEST)
    for row in MANIFEST:
        data = (CORPUS / "captures" / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["file"]
        assert len(data) == int(row["size_bytes"]), row["file"]
        assert (CORPUS / "ref_aggregator_pipe" / f"{row['file']}.csv").exists(), row["file"]


def test_every_file_has_its_provenance_and_license() -> None:
    prov = _provenance()
    wanted = {f"captures/{row['file']}" for row in MANIFEST}
    wanted |= {f"xentrace/{p.name}" for p in (CORPUS / "xentrace").iterdir()}
    assert set(prov) == wanted
    for row in MANIFEST:
        entry = prov[f"captures/{row['file']}"]
        assert (entry["repository"], entry["path"]) == (row["source_repo"], row["source_path"])
        assert entry["commit"] == row["source_commit"]
        assert entry["license"]
    trace = prov["xentrace/xentrace-parser-rs__xentrace.bin"]
    data = (CORPUS / "xentrace" / "xentrace-parser-rs__xentrace.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == trace["sha256"]
    assert all(entry["license"] for entry in prov.values())
