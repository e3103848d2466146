"""The Wireshark view of the worst exchanges: dissection summary and expert info via pyshark.

An engineer looking at a stalled exchange wants what Wireshark would say about its frames —
"HTTP/1.1 503", "Previous segment(s) not captured", the memcached key — without opening it.
:func:`explain` picks the N worst exchanges of ``Analysis.flows`` (stalled first, then the
longest gap), runs tshark once through pyshark on the lone view's capture, filtered to those
exchanges' frames (request, first and last response segment), and returns per frame the
protocol stack, a one-line summary and the expert infos. Only ``report`` and
``analyze --explain`` call it: the default ``analyze`` imports no pyshark and starts no tshark.
Without tshark (or pyshark) it returns one line saying so.

Text from a capture is attacker-controlled (a URI, a header, a DNS name can hold
``</script>``): :func:`html_section` escapes every string it writes, the terminal prints it
as plain text (no markup).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import format_flow
from ..units import format_duration

#: Exchanges explained by default.
WORST = 5
#: Longest summary or expert message kept (a capture's text can be long).
MAX_TEXT = 200
#: The frames of an exchange explained, with the role each plays.
ROLES = {"request_frame": "request", "response_frame": "response",
         "response_end_frame": "response end"}
#: Wireshark's dissector for a conversation cut by a protocol's rule (told with ``-d`` so
#: that a server on another port than the protocol's own still shows as that protocol).
DISSECTORS = {"http": "http", "dns": "dns", "memcached": "memcache",
              "memcached-binary": "memcache", "redis": "resp", "tls": "tls"}


@dataclasses.dataclass
class FrameView:
    """What Wireshark says of one frame."""

    frame: int
    role: str
    protocols: str
    """The dissected layers, ``eth:ip:tcp:http``."""
    summary: str
    """The top protocol's own line: ``GET /x HTTP/1.1``, ``HTTP/1.1 503 …``, a DNS name …"""
    expert: list[str]
    """``Warning/Sequence: Previous segment(s) not captured …`` …"""


@dataclasses.dataclass
class Explanation:
    """One of the worst exchanges and the Wireshark view of its frames."""

    exchange: dict[str, Any]
    frames: list[FrameView]


@dataclasses.dataclass
class Explained:
    """The explanations, or why there are none (one line)."""

    items: list[Explanation]
    note: str = ""
    capture: str = ""


def worst_exchanges(flows: pd.DataFrame | None, n: int = WORST) -> pd.DataFrame:
    """The ``n`` worst exchanges: stalled or anomalous first, then by their longest gap."""
    if flows is None or len(flows) == 0 or n <= 0:
        return pd.DataFrame()
    gaps = flows[["request_to_response_us", "response_to_next_us"]].astype(float).max(axis=1)
    flagged = (flows["anomaly"].astype(str) != "") | flows.get(
        "stalled", pd.Series(False, index=flows.index)).astype(bool)
    key = gaps.fillna(-1.0) + flagged.to_numpy() * 1e15
    return flows.loc[key.sort_values(ascending=False, kind="stable").index[:n]]


def lone_capture(analysis: Any) -> Path | None:
    """The capture the lone view was computed on (the first of guest, backend, phys)."""
    for name in ("guest", "backend", "phys"):
        path = getattr(analysis.sources, name, None)
        if path is not None:
            return Path(path)
    return None


def explain(analysis: Any, n: int = WORST) -> Explained:
    """The Wireshark view of the ``n`` worst exchanges of ``analysis`` (one tshark run)."""
    worst = worst_exchanges(getattr(analysis, "flows", None), n)
    path = lone_capture(analysis)
    if len(worst) == 0 or path is None:
        return Explained([], "no request/response exchange to explain")
    if shutil.which("tshark") is None:
        return Explained([], "Wireshark view left out: tshark is not installed "
                         "(apt-get install tshark)")
    try:
        import pyshark  # noqa: F401
    except ImportError:
        return Explained([], "Wireshark view left out: pyshark is not installed "
                         "(pip install pyshark)")
    wanted = {int(worst.at[i, c]): role for i in worst.index for c, role in ROLES.items()
              if c in worst.columns and pd.notna(worst.at[i, c])}
    decode_as = {f"{'udp' if int(worst.at[i, 'proto']) == 17 else 'tcp'}.port=="
                 f"{int(worst.at[i, 'dport'])}": DISSECTORS[str(worst.at[i, "rule"])]
                 for i in worst.index if str(worst.at[i, "rule"]) in DISSECTORS}
    try:
        views = dissect(path, sorted(wanted), decode_as)
    except Exception as exc:  # tshark's own failure on this file: say so, keep the report
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        return Explained([], f"Wireshark view left out: tshark failed on {path.name} "
                         f"({type(exc).__name__}: {_clip(first_line)})")
    items = []
    for i in worst.index:
        frames: list[FrameView] = []
        for column, role in ROLES.items():
            if column in worst.columns and pd.notna(worst.at[i, column]):
                number = int(worst.at[i, column])
                if number in views and all(f.frame != number for f in frames):
                    frames.append(dataclasses.replace(views[number], role=role))
        items.append(Explanation(exchange=worst.loc[i].to_dict(), frames=frames))
    return Explained(items, capture=path.name)


def dissect(path: Path, frames: list[int], decode_as: dict[str, str] | None = None
            ) -> dict[int, FrameView]:
    """Wireshark's dissection of some frames of a capture (one tshark pass through pyshark,
    its display filter keeping only those frames; ``decode_as`` as tshark's ``-d``).

    pyshark run from the main thread replaces the process's asyncio child watcher (and
    leaves it on its closed loop), which breaks any later asyncio subprocess of the caller
    (playwright's browser, say): it runs in a thread of its own, which it leaves alone.
    """
    import concurrent.futures

    if not frames:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_dissect, path, frames, decode_as).result()


def _dissect(path: Path, frames: list[int], decode_as: dict[str, str] | None
             ) -> dict[int, FrameView]:
    import pyshark

    display = "frame.number in {" + ",".join(str(f) for f in frames) + "}"
    capture = pyshark.FileCapture(str(path), display_filter=display, keep_packets=False,
                                  decode_as=decode_as or None)
    out: dict[int, FrameView] = {}
    try:
        for packet in capture:
            number = int(packet.number)
            layers = [layer.layer_name for layer in packet.layers]
            out[number] = FrameView(number, "", ":".join(layers), _summary(packet),
                                    _expert(packet))
    finally:
        # every frame is read by now: a failure to reap tshark afterwards (pyshark reports
        # an already-reaped child as "crashed", retcode 255) must not discard them, nor be
        # retried by the capture's __del__ later, in someone else's code
        with contextlib.suppress(Exception):
            capture.close()
        getattr(capture, "_running_processes", set()).clear()
    return out


def _field(layer: Any, name: str) -> str:
    value = layer.get_field(name)
    return "" if value is None else str(value)


def _summary(packet: Any) -> str:
    """The top protocol's own line, from its dissected fields."""
    names = [layer.layer_name for layer in packet.layers]
    if "http" in names:
        http = packet.http
        if _field(http, "request_method"):
            line = " ".join(_field(http, f) for f in ("request_method", "request_uri",
                                                      "request_version"))
        else:
            line = " ".join(_field(http, f) for f in ("response_version", "response_code",
                                                      "response_phrase"))
        return _clip("HTTP " + line.strip())
    if "dns" in names:
        dns = packet.dns
        kind = "response" if _field(dns, "flags_response") in ("1", "True") else "query"
        rcode = _field(dns, "flags_rcode")
        return _clip(f"DNS {kind} 0x{int(_field(dns, 'id') or '0', 0):04x} "
                     f"{_field(dns, 'qry_name')}" + (f" rcode {rcode}" if kind == "response"
                                                      else ""))
    if "memcache" in names:
        mc = packet.memcache
        parts = [_field(mc, f) for f in ("command", "opcode", "key", "response", "status")]
        return _clip("memcache " + " ".join(p for p in parts if p))
    if "resp" in names:
        return _clip("RESP " + " ".join(str(v) for v in packet.resp._all_fields.values()
                                        if v and len(str(v)) < 40)[:MAX_TEXT])
    top = packet.layers[-1]
    if top.layer_name == "data":  # no dissector: the bytes themselves, printable
        raw = bytes.fromhex(_field(top, "data").replace(":", ""))[:48]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in raw)
        return _clip(f"data {_field(top, 'len')} bytes: {text}")
    if top.layer_name == "tcp":
        return _clip(f"TCP {_field(top, 'srcport')} → {_field(top, 'dstport')} "
                     f"len {_field(top, 'len')} flags {_field(top, 'flags_str')}".strip())
    return _clip(top.layer_name.upper())


def _expert(packet: Any) -> list[str]:
    """Every expert info of the frame, ``Severity/Group: message``."""
    out = []
    for layer in packet.layers:
        for field in layer._get_all_fields_with_alternates():
            if field.name == "_ws.expert":
                text = str(field.showname or "")
                out.append(_clip(text.removeprefix("Expert Info (").replace("): ", ": ", 1)))
    return out


def _clip(text: str) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _gap_text(exchange: dict[str, Any]) -> str:
    parts = []
    for column, name in (("request_to_response_us", "request → response"),
                         ("response_to_next_us", "response → next"),
                         ("idle_us", "idle")):
        value = exchange.get(column)
        if value is not None and value == value:
            parts.append(f"{name} {format_duration(float(value))}")
    return ", ".join(parts)


def text_lines(explained: Explained) -> list[str]:
    """The explanations as plain lines for the terminal (print them without markup)."""
    if not explained.items:
        return [explained.note] if explained.note else []
    lines = [f"Wireshark view of the {len(explained.items)} worst exchanges "
             f"({explained.capture}):"]
    for item in explained.items:
        e = item.exchange
        flag = f" [{e.get('anomaly')}]" if e.get("anomaly") else ""
        stalled = " stalled" if e.get("stalled") else ""
        lines.append(f"• {format_flow(e['src'], e['sport'], e['dst'], e['dport'])} "
                     f"({e.get('rule', '')}): {_gap_text(e)}{flag}{stalled}")
        for view in item.frames:
            lines.append(f"    frame {view.frame} ({view.role}) {view.protocols}: "
                         f"{view.summary}")
            lines.extend(f"      expert: {x}" for x in view.expert)
    return lines


def html_section(analysis: Any, n: int = WORST) -> str:
    """The report's section (empty without exchanges): every capture string escaped."""
    if getattr(analysis, "flows", None) is None or len(analysis.flows) == 0:
        return ""
    explained = explain(analysis, n)
    esc = html.escape
    if not explained.items:
        body = f"<p>{esc(explained.note)}</p>"
    else:
        rows = []
        for item in explained.items:
            e = item.exchange
            head = (f"{format_flow(e['src'], e['sport'], e['dst'], e['dport'])} "
                    f"({e.get('rule', '')}): {_gap_text(e)}")
            flag = f' <span class="hot">{esc(str(e["anomaly"]))}</span>' if e.get("anomaly") \
                else ""
            frames = "".join(
                f"<tr><td>{view.frame}</td><td>{esc(view.role)}</td>"
                f'<td class="text">{esc(view.protocols)}</td>'
                f'<td class="text">{esc(view.summary)}</td>'
                f'<td class="text">{"<br>".join(esc(x) for x in view.expert)}</td></tr>'
                for view in item.frames)
            rows.append(f"<h3>{esc(head)}{flag}</h3>\n<table><thead><tr><th>frame</th>"
                        "<th>role</th><th class=\"text\">protocols</th><th class=\"text\">"
                        "summary</th><th class=\"text\">expert info</th></tr></thead>"
                        f"<tbody>{frames}</tbody></table>")
        body = (f"<p>Wireshark's dissection of the frames of the {len(explained.items)} worst "
                f"exchanges in {esc(explained.capture)} (tshark through pyshark).</p>\n"
                + "\n".join(rows))
    return (f'<section id="wireshark">\n<h2>Wireshark view of the worst exchanges</h2>\n'
            f"{body}\n</section>")


def idle_section(flows: pd.DataFrame | None) -> str:
    """The idle gaps, apart from the delays: per conversation, how many and how long."""
    if flows is None or len(flows) == 0 or "idle_us" not in flows.columns:
        return ""
    idle = flows[flows["idle_us"].notna()]
    if len(idle) == 0:
        return ""
    esc = html.escape
    rows = []
    for _, part in idle.groupby("conversation", sort=False):
        first = part.iloc[0]
        flow = format_flow(first["src"], first["sport"], first["dst"], first["dport"])
        rows.append(
            f'<tr><td class="text">{esc(flow)}</td>'
            f'<td class="text">{esc(str(first.get("rule", "")))}</td><td>{len(part)}</td>'
            f"<td>{esc(format_duration(float(part['idle_us'].median())))}</td>"
            f"<td>{esc(format_duration(float(part['idle_us'].max())))}</td>"
            f"<td>{esc(format_duration(float(part['idle_us'].sum())))}</td></tr>")
    return ('<section id="idle">\n<h2>Idle gaps (not latency)</h2>\n'
            "<p>A response → next request gap after which the client simply had nothing to "
            "send (keep-alive, think time, polling interval): not counted as latency, never "
            "an anomaly (README, \"Delay versus idle\").</p>\n"
            '<table><thead><tr><th class="text">conversation</th><th class="text">rule</th>'
            "<th>idle gaps</th><th>median</th><th>longest</th><th>total</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>\n</section>")
