"""The terminal tables of ``xenlat info``: the capture's properties, then its interfaces (rich)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text


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


def render_info(info: Any, console: Any) -> None:
    """Print an :class:`~xentrace_cli.sources.info.CaptureInfo` as a property table and an interface
    table."""
    d = info.to_dict()
    # the path on a line of its own: a table title would wrap it at the table's width
    console.print(Text(f"xenlat info: {d['path']}", style="bold"))
    table = Table(show_header=False)
    table.add_column("property", style="bold")
    table.add_column("value", overflow="fold")
    fmt = d["format"] + (" (gzip-compressed)" if d["gzip"] else "")
    if d["version"]:
        fmt += f", version {d['version']}"
    rows = [
        ("format", fmt),
        ("byte order", d["byte_order"]),
        ("file size", _size(d["file_bytes"])),
    ]
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
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    if d["truncated_at"]:
        t = d["truncated_at"]
        what = "corrupt" if t["corrupt"] else "cut short"
        table.add_row(Text("truncated", style="bold red"),
                      Text(f"{what} at offset {t['offset']} (packet {t['packet']}): "
                           f"{t['problem']}", style="red"))
    else:
        table.add_row(Text("truncated"), Text("no"))
    console.print(table)

    itf = Table(title="interfaces", title_justify="left")
    for column in ("#", "name", "link type", "snaplen", "tsresol", "tsoffset", "packets"):
        itf.add_column(column, justify="right" if column in ("#", "snaplen", "packets") else
                       "left")
    for e in d["interfaces"]:
        itf.add_row(Text(str(e["index"])), Text(e["name"] or "–"),
                    Text(f"{e['linktype_name']} ({e['linktype']})"), Text(str(e["snaplen"])),
                    Text(e["tsresol"]), Text(f"{e['tsoffset_s']} s"),
                    Text(f"{e['packets']:,}"))
    rest = d["interfaces_not_listed"]
    if rest:
        itf.add_row(Text("…"), Text(f"{rest['interfaces']:,} more interfaces"), Text(""),
                    Text(""), Text(""), Text(""), Text(f"{rest['packets']:,}"))
    console.print(itf)
