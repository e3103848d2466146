"""The Wireshark view of the worst exchanges (report/explain.py): pyshark, escaping, fallbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xentrace_cli.cli import main
from xentrace_cli.outputs import explain
from xentrace_cli.outputs.html import render_html_report
from xentrace_cli.pipeline.analyze import analyze_files

CLIENT, SERVER = "10.0.0.5", "10.0.0.1"
EVIL_URI = "/<script>alert(1)</script>"
EVIL_HOST = "</script><script>alert(2)</script>"
EVIL_NAME = "<script>x</script>.example"


def hostile_capture(path: Path) -> None:
    """HTTP exchanges whose request line and headers, and a DNS exchange whose name, carry
    script tags; the third HTTP response comes 100 ms late so it ranks among the worst."""
    from scapy import all as scapy

    frames, t = [], 1_700_000_000.0
    cseq, sseq = 1, 1
    for k in range(10):
        req = (f"GET {EVIL_URI}?{k} HTTP/1.1\r\nHost: {EVIL_HOST}\r\n"
               f"User-Agent: </script>\r\n\r\n").encode()
        resp = (b"HTTP/1.1 503 <script>alert(3)</script>\r\nContent-Length: 0\r\n"
                b"X-Evil: </script><img src=x onerror=alert(4)>\r\n\r\n")
        t += 0.005
        frames.append(scapy.Ether() / scapy.IP(src=CLIENT, dst=SERVER)
                      / scapy.TCP(sport=40000, dport=80, flags="PA", seq=cseq, ack=sseq) / req)
        frames[-1].time = t
        cseq += len(req)
        t += 0.100 if k == 3 else 0.001
        frames.append(scapy.Ether() / scapy.IP(src=SERVER, dst=CLIENT)
                      / scapy.TCP(sport=80, dport=40000, flags="PA", seq=sseq, ack=cseq) / resp)
        frames[-1].time = t
        sseq += len(resp)
    dns_q = scapy.DNS(id=5, rd=1, qd=scapy.DNSQR(qname=EVIL_NAME))
    dns_r = scapy.DNS(id=5, qr=1, qd=scapy.DNSQR(qname=EVIL_NAME),
                      an=scapy.DNSRR(rrname=EVIL_NAME, rdata="10.9.9.9"))
    for src, dst, sport, dport, payload in ((CLIENT, SERVER, 5353, 53, dns_q),
                                            (SERVER, CLIENT, 53, 5353, dns_r)):
        t += 0.002
        frames.append(scapy.Ether() / scapy.IP(src=src, dst=dst)
                      / scapy.UDP(sport=sport, dport=dport) / payload)
        frames[-1].time = t
    scapy.wrpcap(str(path), frames)


def test_capture_text_is_escaped_in_the_html(tmp_path: Path, tshark: str) -> None:
    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    analysis = analyze_files(path)
    explained = explain.explain(analysis, 11)
    summaries = " ".join(v.summary for item in explained.items for v in item.frames)
    assert EVIL_URI in summaries and "503" in summaries  # the text did come through
    assert "<script>x</script>" in summaries  # the DNS name too
    page = render_html_report(analysis)
    section = page[page.index('<section id="wireshark">'):]
    section = section[:section.index("</section>")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    for raw in ("<script>", "</script>", "<img", "alert(3)</"):
        assert raw not in section, raw
    # nowhere in the page does capture text open or close a script element: the page's own
    # scripts are plotly's and the report's, two of each tag
    assert page.count("<script") == page.count("</script>")
    assert "alert(1)</script>" not in page and "alert(2)</script>" not in page
    assert "onerror=alert(4)>" not in page


def test_explain_on_the_terminal_prints_capture_text_plainly(tmp_path: Path, tshark: str,
                                                             runner) -> None:
    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    result = runner.invoke(main, ["analyze", str(path), "--no-progress", "--explain", "2",
                                  "--width", "200"])
    assert result.exit_code == 0, result.stderr
    assert "Wireshark view of the 2 worst exchanges" in result.stdout
    assert "HTTP/1.1 503 <script>alert(3)</script>" in result.stdout  # not eaten as markup
    assert "[response_to_next]" in result.stdout or "[request_to_response]" in result.stdout


def test_without_tshark_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    analysis = analyze_files(path)
    monkeypatch.setattr(explain.shutil, "which", lambda name: None)
    explained = explain.explain(analysis)
    assert explained.items == []
    assert explain.text_lines(explained) == [
        "Wireshark view left out: tshark is not installed (apt-get install tshark)"]
    assert "tshark is not installed" in explain.html_section(analysis)


def test_default_analyze_imports_no_pyshark(tmp_path: Path) -> None:
    """The default path neither imports pyshark nor the explain module (so starts no
    tshark); ``--explain`` does."""
    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    code = ("import sys; from click.testing import CliRunner; from xentrace_cli.cli import main;"
            f"r = CliRunner().invoke(main, ['analyze', {str(path)!r}, '--no-progress']);"
            "assert r.exit_code == 0, r.output;"
            "print(sorted(m for m in sys.modules if 'pyshark' in m or m.endswith('explain')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_worst_exchanges_rank_flagged_first(tmp_path: Path) -> None:
    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    flows = analyze_files(path).flows
    worst = explain.worst_exchanges(flows, 1)
    assert len(worst) == 1
    assert worst.iloc[0]["request_to_response_us"] == pytest.approx(100_000.0, abs=1)
    assert worst.iloc[0]["anomaly"] == "request_to_response"


def test_explain_leaves_asyncio_subprocesses_working(tmp_path: Path, tshark: str) -> None:
    """pyshark in the main thread swaps the child watcher and breaks later asyncio
    subprocesses (playwright's): explain keeps it in a thread of its own."""
    import asyncio

    path = tmp_path / "hostile.pcap"
    hostile_capture(path)
    assert explain.explain(analyze_files(path), 1).items

    async def run_true() -> int:
        proc = await asyncio.create_subprocess_exec("true")
        return await proc.wait()

    assert asyncio.run(run_true()) == 0
