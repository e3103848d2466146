"""allocator.reuse_freed_memory: glibc takes both settings, and a trace reads the same."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from test_readers_xentrace import CORPUS_TRACE

from xentrace_cli.trace.summary import dumps, summarize_trace


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_settings_and_the_summary_is_unchanged(corpus: Path) -> None:
    # a process of its own: the settings are the whole process's (glibc refuses an mmap
    # threshold above 32 MiB: mallopt would return 0 and the call False)
    code = ("import json, sys; from xentrace_cli.allocator import reuse_freed_memory; "
            "from xentrace_cli.trace.summary import dumps, summarize_trace; "
            "ok = reuse_freed_memory(); "
            f"sys.stdout.write(json.dumps({{'ok': ok, 'doc': dumps(summarize_trace("
            f"{str(corpus / CORPUS_TRACE)!r}))}}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    out = json.loads(done.stdout)
    assert out["ok"] is True
    assert out["doc"] == dumps(summarize_trace(corpus / CORPUS_TRACE))
