"""The capture-set manifest: which file of a set directory is which source, and its context.

A *capture set* is one directory holding the inputs of one analysis and a small TOML file,
``xenlat-set.toml``, that says which file is which capture point and what is known about the
run. ``xenlat record --run`` and ``xenlat simulate`` write it; a user may write one by hand;
``analyze``, ``report``, ``check`` and ``batch`` read it when given the directory. Layout
(every key but ``format`` and one file is optional)::

    format = 1

    [set]
    xen_host = "xen-a"                 # the Xen host's name
    domid = 5                          # the guest's domain id
    guest_name = "web-1"               # the guest's name (xl list)
    started = 2026-12-06T22:00:00Z     # when recording started (a TOML date-time, UTC)
    cpu_hz = 2900000000                # TSC frequency (xl info: cpu_mhz), when known
    nic_irq = 58                       # Xen IRQ of the physical NIC, when known

    [files]                            # paths relative to the directory
    guest = "guest.pcapng"
    backend = "vif5.0.pcap"
    phys = "phys.pcap"
    xentrace = "xentrace.bin"
    socket_log = "app.strace"

Only this module reads and writes the file, so the layout lives in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..model import Sources

#: The manifest's file name inside a set directory.
MANIFEST_NAME = "xenlat-set.toml"
#: The layout version this code writes and reads.
MANIFEST_FORMAT = 1
#: The source names a manifest may list, in ``model.Sources`` order.
FILE_KEYS: tuple[str, ...] = ("guest", "backend", "phys", "xentrace", "socket_log")
#: The ``[set]`` keys and the types each accepts.
SET_KEYS: dict[str, tuple[type, ...]] = {
    "xen_host": (str,), "domid": (int,), "guest_name": (str,), "started": (dt.datetime,),
    "cpu_hz": (int, float), "nic_irq": (int,),
}
#: Largest domain id Xen hands out (DOMID_FIRST_RESERVED - 1).
MAX_DOMID = 0x7FEF


@dataclasses.dataclass(frozen=True)
class CaptureSet:
    """One capture set: its directory, its sources and what the manifest says of the run."""

    directory: Path
    sources: Sources
    xen_host: str | None = None
    domid: int | None = None
    guest_name: str | None = None
    started: dt.datetime | None = None
    """UTC."""
    cpu_hz: float | None = None
    nic_irq: int | None = None

    @property
    def manifest_path(self) -> Path:
        """Where the manifest lives."""
        return self.directory / MANIFEST_NAME


def is_set_directory(path: str | os.PathLike[str]) -> bool:
    """True for a directory that holds a manifest."""
    return (Path(path) / MANIFEST_NAME).is_file()


def read_manifest(path: str | os.PathLike[str]) -> CaptureSet:
    """The capture set of a directory (or of its manifest file itself).

    Raises ``InputError`` naming the manifest (and the line, for TOML syntax) when it is
    missing, not TOML, of an unknown format, or holds a key or a value of the wrong kind,
    or names a file that does not exist.
    """
    given = Path(path)
    manifest = given if given.name == MANIFEST_NAME or given.is_file() else given / MANIFEST_NAME
    if not manifest.is_file():
        raise InputError(given, f"not a capture set: no {MANIFEST_NAME} in it")
    try:
        text = manifest.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(manifest, "not a TOML text file (not UTF-8)", offset=exc.start) \
            from None
    except OSError as exc:
        raise InputError(manifest, f"cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\s*\(at line (\d+), column \d+\)$", str(exc))
        problem = str(exc)[:where.start()] if where else str(exc)
        raise InputError(manifest, f"not valid TOML: {problem}",
                         line=int(where.group(1)) if where else None) from None
    return _capture_set(manifest, document)


def _capture_set(manifest: Path, document: dict[str, Any]) -> CaptureSet:
    unknown = set(document) - {"format", "set", "files"}
    if unknown:
        raise InputError(manifest, f"unknown key(s) {', '.join(sorted(unknown))}; expected "
                         "format, [set] and [files]")
    version = document.get("format")
    if version != MANIFEST_FORMAT or isinstance(version, bool):
        raise InputError(manifest, f"format {version!r} is not one this xenlat reads "
                         f"(format = {MANIFEST_FORMAT})")
    meta = _table(manifest, document, "set")
    files = _table(manifest, document, "files")
    for key, value in meta.items():
        kinds = SET_KEYS.get(key)
        if kinds is None:
            raise InputError(manifest, f"[set] unknown key {key!r}; one of "
                             f"{', '.join(SET_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise InputError(manifest, f"[set] {key} = {value!r}: expected "
                             f"{' or '.join(k.__name__ for k in kinds)}")
    _check_numbers(manifest, meta)
    sources = _sources(manifest, files)
    started = meta.get("started")
    if started is not None:
        started = started.replace(tzinfo=dt.UTC) if started.tzinfo is None \
            else started.astimezone(dt.UTC)
    return CaptureSet(directory=manifest.parent, sources=sources,
                      xen_host=meta.get("xen_host"), domid=meta.get("domid"),
                      guest_name=meta.get("guest_name"), started=started,
                      cpu_hz=float(meta["cpu_hz"]) if "cpu_hz" in meta else None,
                      nic_irq=meta.get("nic_irq"))


def _table(manifest: Path, document: dict[str, Any], name: str) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise InputError(manifest, f"{name} must be a table ([{name}])")
    return value


def _check_numbers(manifest: Path, meta: dict[str, Any]) -> None:
    domid = meta.get("domid")
    if domid is not None and not 0 <= domid <= MAX_DOMID:
        raise InputError(manifest, f"[set] domid = {domid}: a domain id is 0..{MAX_DOMID}")
    hz = meta.get("cpu_hz")
    if hz is not None and not (math.isfinite(hz) and 1e6 <= hz <= 1e11):
        raise InputError(manifest, f"[set] cpu_hz = {hz!r}: expected a frequency in Hz "
                         "between 1 MHz and 100 GHz")
    irq = meta.get("nic_irq")
    if irq is not None and not 0 <= irq < 1 << 32:
        raise InputError(manifest, f"[set] nic_irq = {irq}: expected 0..2^32-1")


def _sources(manifest: Path, files: dict[str, Any]) -> Sources:
    paths: dict[str, Path] = {}
    for key, value in files.items():
        if key not in FILE_KEYS:
            raise InputError(manifest, f"[files] unknown key {key!r}; one of "
                             f"{', '.join(FILE_KEYS)}")
        if not isinstance(value, str) or not value:
            raise InputError(manifest, f"[files] {key} = {value!r}: expected a file name")
        path = Path(value)
        if not path.is_absolute():
            path = manifest.parent / path
        if not path.is_file():
            raise InputError(manifest, f"[files] {key} = {value!r}: no such file")
        paths[key] = path
    if not paths:
        raise InputError(manifest, "[files] lists no source")
    return Sources(**paths)


def write_manifest(directory: str | os.PathLike[str], files: dict[str, str], *,
                   xen_host: str | None = None, domid: int | None = None,
                   guest_name: str | None = None, started: dt.datetime | None = None,
                   cpu_hz: float | None = None, nic_irq: int | None = None) -> Path:
    """Write ``xenlat-set.toml`` into ``directory``; ``files`` maps source names to paths
    relative to it. Returns the manifest's path. The text is deterministic for the same
    arguments."""
    bad = set(files) - set(FILE_KEYS)
    if bad:
        raise ValueError(f"unknown source name(s): {', '.join(sorted(bad))}")
    lines = ["# capture set for xenlat (see xentrace_cli/sources/manifest.py for the layout)",
             f"format = {MANIFEST_FORMAT}", "", "[set]"]
    meta: dict[str, Any] = {"xen_host": xen_host, "domid": domid, "guest_name": guest_name,
                            "started": started, "cpu_hz": cpu_hz, "nic_irq": nic_irq}
    for key, value in meta.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    lines += ["", "[files]"]
    lines += [f"{key} = {_toml_value(files[key])}" for key in FILE_KEYS if key in files]
    path = Path(directory) / MANIFEST_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, dt.datetime):
        utc = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S") + (
            f".{utc.microsecond:06d}" if utc.microsecond else "") + "Z"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return f'"{text}"'
