"""The terminal tables of ``xenlat info``: the capture's properties, then its interfaces.

Drawn by :mod:`.text_table` (rich's default table byte for byte, without rich): ``xenlat info``
on a small file must finish in a blink, and importing rich's table and console cost more than
reading the file (0.08 s on the benchmark machine). ``tests/test_info.py`` compares the text
with rich's rendering of the same tables.
"""

from __future__ import annotations

import math
from typing import Any

from .text_table import Cell, TextTable

_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} bytes"


def _digits(interfaces: list[dict[str, Any]]) -> int:
    """Decimals the finest interface's timestamps carry (capinfos prints no more)."""
    digits = 0
    for itf in interfaces:
        base, _, exponent = str(itf.get("tsresol") or "10^-6").partition("^-")
        try:
            power = int(exponent)
        except ValueError:
            power = 6
        digits = max(digits, power if base == "10" else math.ceil(power * math.log10(2)))
    return min(digits, 9) if interfaces else 9


def _trim(text: str, digits: int) -> str:
    """``"1767229200.000248000"`` → ``"1767229200.000248"`` for 6 digits."""
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac[:digits]}" if digits and frac else whole


def _duration(ns: int | None, digits: int) -> str:
    if ns is None:
        return "–"
    sec, frac = divmod(ns, 1_000_000_000)
    return _trim(f"{sec}.{frac:09d}", digits) + " s"


def property_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) of every property line of :meth:`CaptureInfo.to_dict`'s ``d``."""
    fmt = d["format"] + (" (gzip-compressed)" if d["gzip"] else "")
    if d["version"]:
        fmt += f", version {d['version']}"
    rows = [("format", fmt), ("byte order", d["byte_order"]),
            ("file size", _size(d["file_bytes"]))]
    if d["format"] == "pcapng":
        rows.append(("sections", str(d["sections"])))
        rows.append(("blocks", ", ".join(f"{k}={v}" for k, v in sorted(d["blocks"].items()))))
    rows.append(("link types", ", ".join(f"{e['name']} ({e['linktype']}): {e['packets']:,}"
                                        for e in d["linktypes"]) or "–"))
    rows.append(("packets", f"{d['packets']:,}"))
    if d["frames"] != d["packets"]:
        rows.append(("frames (as tshark counts)", f"{d['frames']:,}"))
    if d["packets_without_timestamp"]:
        rows.append(("packets without timestamp", f"{d['packets_without_timestamp']:,}"))
    digits = _digits(d["interfaces"])

    def _when(epoch: str | None, utc: str | None) -> str:
        if not epoch:
            return "–"
        return f"{_trim(epoch, digits)} ({_trim(str(utc).rstrip('Z'), digits)}Z)"

    rows += [
        ("first packet", _when(d["first_time"], d["first_utc"])),
        ("last packet", _when(d["last_time"], d["last_utc"])),
        ("duration", _duration(d["duration_ns"], digits)),
        ("data size (captured)", _size(d["data_bytes"])),
        ("wire size", _size(d["wire_bytes"])),
    ]
    if d["packets_per_s"] is not None:
        rows.append(("average rate", f"{d['packets_per_s']:,.1f} packets/s"))
    if d["out_of_order"]:
        rows.append(("out of time order", f"{d['out_of_order']:,} packets"))
    t = d["truncated_at"]
    rows.append(("truncated", "no" if not t else
                 f"{'corrupt' if t['corrupt'] else 'cut short'} at offset {t['offset']} "
                 f"(packet {t['packet']}): {t['problem']}"))
    return rows


def _printable(text: str) -> str:
    """Control characters (an interface name may hold any byte) as U+FFFD: a name stays on
    its one line of the table."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def interface_rows(d: dict[str, Any]) -> list[list[str]]:
    """The interface table's rows (the interfaces past the listed ones as one count)."""
    rows = [[str(e["index"]), _printable(e["name"] or "–"),
             f"{e['linktype_name']} ({e['linktype']})",
             str(e["snaplen"]), e["tsresol"], f"{e['tsoffset_s']} s", f"{e['packets']:,}"]
            for e in d["interfaces"]]
    rest = d["interfaces_not_listed"]
    if rest:
        rows.append(["…", f"{rest['interfaces']:,} more interfaces", "", "", "", "",
                     f"{rest['packets']:,}"])
    return rows


#: the interface table's columns and their justification
INTERFACE_COLUMNS = {"#": "right", "name": "left", "link type": "left", "snaplen": "right",
                     "tsresol": "left", "tsoffset": "left", "packets": "right"}


def render_info(info: Any, styled: bool = False) -> str:
    """An :class:`~xentrace_cli.sources.info.CaptureInfo` as text: the path, a property table
    (names bold on a terminal: ``styled``) and an interface table."""
    d = info.to_dict()
    # the path on a line of its own: a table title would wrap it at the table's width
    head = f"xenlat info: {d['path']}"
    properties = TextTable("", ["property", "value"], ["left", "left"], show_header=False)
    for name, value in property_rows(d):
        properties.add_row(Cell(name, bold=True), value)
    interfaces = TextTable("interfaces", list(INTERFACE_COLUMNS),
                           list(INTERFACE_COLUMNS.values()), [*interface_rows(d)])
    lines = [_BOLD + head + _RESET if styled else head, *properties.lines(styled),
             *interfaces.lines(styled)]
    return "\n".join(lines) + "\n"
