"""``capture_info`` / ``xenlat info``: the corpus manifest (tshark's and capinfos' figures) and
the hand-built captures, the tables (rich's text, drawn without rich) and the JSON document."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from corpus_cases import CORPUS, MANIFEST, corpus_cases
from rich.console import Console

from xentrace_cli.cli import main
from xentrace_cli.errors import InputError, TruncatedInput
from xentrace_cli.outputs.info_table import render_info
from xentrace_cli.sources.info import capture_info

HERE = Path(__file__).resolve().parent
CAPTURES = HERE / "data" / "captures"
READABLE = [e for e in MANIFEST if e["tshark_exit"] == "0"]
#: capinfos' format names → the reader's
FORMATS = {"pcap": "pcap", "nsecpcap": "nsecpcap", "modpcap": "modpcap", "pcapng": "pcapng"}


def epoch_ns(text: str) -> int:
    sec, frac = text.split(".")
    return int(sec) * 10**9 + int(frac)


@pytest.mark.parametrize("entry", corpus_cases(READABLE))
def test_corpus_manifest(entry: dict[str, str], corpus: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = capture_info(corpus / "captures" / entry["file"])
    d = info.to_dict()
    assert d["frames"] == int(entry["packets_tshark"])
    assert d["format"] == FORMATS[entry["format_capinfos"]]
    if entry["byte_order"] in ("LE", "BE"):
        assert d["byte_order"] == entry["byte_order"]
    if entry["byte_order"] == "BE/LE":
        assert set(d["byte_order"].split("/")) == {"BE", "LE"}
    if entry["sections"]:
        assert d["sections"] == int(entry["sections"])
    # first/last: the manifest has tshark's first and last frame; the info gives the earliest
    # and latest, which are those when the file is in order and timestamps are sane
    plain = all(re.fullmatch(r"\d+\.\d{9}", entry[k]) for k in ("first_time_epoch",
                                                                  "last_time_epoch"))
    if plain and d["out_of_order"] == 0 and d["packets_without_timestamp"] == 0 and d["packets"]:
        assert d["first_ns"] == epoch_ns(entry["first_time_epoch"])
        assert d["last_ns"] == epoch_ns(entry["last_time_epoch"])
    assert sum(e["packets"] for e in d["linktypes"]) == d["packets"]
    if entry["category"] == "truncated":
        assert d["truncated"] and d["truncated_at"]["packet"] == d["frames"] + 1
        assert any(w.category is TruncatedInput for w in caught)
    else:
        assert not d["truncated"]


def test_multi_section_by_hand() -> None:
    d = capture_info(CAPTURES / "multi-section.pcapng").to_dict()
    assert (d["format"], d["byte_order"], d["sections"]) == ("pcapng", "LE/BE", 2)
    assert (d["packets"], d["frames"], d["packets_without_timestamp"]) == (14, 15, 1)
    assert d["linktypes"] == [{"linktype": 1, "name": "ether", "packets": 8},
                              {"linktype": 101, "name": "rawip", "packets": 3},
                              {"linktype": 113, "name": "linux-sll", "packets": 3}]
    assert [(i["name"], i["tsresol"], i["tsoffset_s"], i["packets"])
            for i in d["interfaces"]] == [("vif5.0", "10^-9", 0, 5), ("eth0", "2^-20", 0, 3),
                                          ("raw0", "10^-6", 0, 3), ("vif7.1", "10^-9", 100, 3)]
    # first: T0 = 1700000000.123456789 (frame 1, ns interface); last: T0 + 13 s + 250 µs
    # on the 10^-9 interface with its 100 s offset (make_captures.py)
    assert d["first_time"] == "1700000000.123456789"
    assert d["last_time"] == "1700000013.123706789"
    assert d["first_utc"] == "2023-11-14T22:13:20.123456789Z"
    assert d["duration_ns"] == 13_000_250_000
    assert d["blocks"]["custom"] == 1 and d["blocks"]["SPB"] == 1 and d["blocks"]["PB"] == 1


def test_gzip_is_reported() -> None:
    d = capture_info(CAPTURES / "ether-le-nsec.pcap.gz").to_dict()
    assert (d["gzip"], d["format"], d["packets"]) == (True, "nsecpcap", 19)
    plain = capture_info(CAPTURES / "ether-le-nsec.pcap").to_dict()
    assert d["data_bytes"] == plain["data_bytes"] == (CAPTURES / "ether-le-nsec.pcap").stat(
        ).st_size - 24 - 19 * 16


def test_truncated_info(corpus: Path) -> None:
    path = corpus / "captures" / "truncated-be-ns-midpayload.pcap"
    with pytest.warns(TruncatedInput):
        d = capture_info(path).to_dict()
    # the manifest: cut at byte 495, in record 5, which starts at 446
    assert d["truncated_at"] == {"offset": 446, "packet": 5, "corrupt": False,
                                 "problem": "packet data cut short (33 of 66 bytes)"}
    assert d["packets"] == 4


def test_not_a_capture(corpus: Path) -> None:
    with pytest.raises(InputError, match="offset 0: not a pcap or pcapng capture"):
        capture_info(corpus / "captures" / "rusticata__err-eof.bin")


def test_render_info_table() -> None:
    text = render_info(capture_info(CAPTURES / "multi-section.pcapng"))
    assert "LE/BE" in text and "ether (1): 8" in text and "linux-sll (113): 3" in text
    assert re.search(r"frames \(as tshark counts\)\s*│\s*15", text)
    assert "vif7.1" in text and "2^-20" in text and "100 s" in text
    assert re.search(r"truncated\s*│\s*no", text)


def test_cli_info_json_and_table(runner) -> None:
    result = runner.invoke(main, ["info", str(CAPTURES / "ether-be-usec.pcap"), "--format",
                                  "json", "--no-progress"])
    assert result.exit_code == 0 and result.stderr == ""
    d = json.loads(result.stdout)
    assert (d["format"], d["byte_order"], d["version"], d["packets"]) == ("pcap", "BE", "2.4",
                                                                           19)
    assert d["first_time"] == "1700000000.123456000"  # µs file: the ns digits are gone
    table = runner.invoke(main, ["info", str(CAPTURES / "ether-be-usec.pcap"),
                                 "--no-progress"])
    assert table.exit_code == 0 and "ether (1): 19" in table.stdout and table.stderr == ""


def test_cli_info_truncated(runner, corpus: Path) -> None:
    path = corpus / "captures" / "truncated-pcapng-be-pb-midblock.pcap"
    result = runner.invoke(main, ["info", str(path), "--format", "json", "--no-progress"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["truncated_at"]["offset"] == 22908
    assert result.stderr.startswith(f"xenlat: warning: {path}: offset 22908 (packet 100)")
    strict = runner.invoke(main, ["info", str(path), "--strict", "--no-progress"])
    assert strict.exit_code == 3 and strict.stdout == ""


def test_render_info_path_is_not_markup(tmp_path: Path) -> None:
    path = tmp_path / "[bold]guest.pcap"
    path.write_bytes((CAPTURES / "ether-le-usec.pcap").read_bytes())
    text = render_info(capture_info(path))
    assert "[bold]guest.pcap" in text  # shown as written, not taken as a style


def _rich_render_info(info: Any) -> str:
    """The tables as rich drew them before outputs.text_table (the code of that time): the
    text that ``render_info`` must give, to a pipe."""
    from rich.table import Table
    from rich.text import Text

    from xentrace_cli.outputs.info_table import interface_rows, property_rows

    d = info.to_dict()
    out = io.StringIO()
    console = Console(file=out, width=10_000, color_system=None, highlight=False)
    console.print(Text(f"xenlat info: {d['path']}", style="bold"))
    table = Table(show_header=False)
    table.add_column("property", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in property_rows(d):
        table.add_row(Text(name), Text(value))
    console.print(table)
    itf = Table(title="interfaces", title_justify="left")
    for column in ("#", "name", "link type", "snaplen", "tsresol", "tsoffset", "packets"):
        itf.add_column(column, justify="right" if column in ("#", "snaplen", "packets") else
                       "left")
    for row in interface_rows(d):
        itf.add_row(*(Text(c) for c in row))
    console.print(itf)
    return out.getvalue()


@pytest.mark.parametrize("path", sorted([*CAPTURES.glob("*.pcap*"),
                                         *(CORPUS / "captures").glob("*.pcap*")]),
                         ids=lambda p: p.name)
def test_render_info_is_rich_s_text(path: Path) -> None:
    """Every test capture's tables, drawn without rich, are rich's text byte for byte."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            info = capture_info(path)
        except InputError:
            return
    assert render_info(info) == _rich_render_info(info)


def test_render_info_styled_and_control_characters() -> None:
    """Bold names (ANSI) only when styled; an interface name holding a newline and an
    escape stays on its line (U+FFFD for each), the table's lines of one width."""
    info = capture_info(CAPTURES / "multi-section.pcapng")
    assert "\x1b[" not in render_info(info)
    assert "\x1b[1mpackets\x1b[0m" in render_info(info, styled=True)
    info.interfaces[0]["name"] = "網卡\n\x1b[31m"
    text = render_info(info)
    lines = text[text.index("\ninterfaces "):].splitlines()[2:7]
    assert "網卡\ufffd\ufffd[31m" in lines[3]
    cells = [len(line) + sum(c in "網卡" for c in line) for line in lines]
    assert len(set(cells)) == 1, lines
