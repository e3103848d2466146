"""Opening a capture file: the container's reader chosen by the file's first bytes.

Apart from :mod:`.capture` (what every container shares) so that the formats' readers
(:mod:`.pcap`, :mod:`.pcapng`) build on it and this module on them: no import cycle.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import InputError, check_readable
from .capture import CaptureReader, GunzipStream, sniff
from .pcap import PcapReader
from .pcapng import PcapngReader


def open_capture(path: str | os.PathLike[str]) -> CaptureReader:
    """Open a pcap or pcapng file (optionally gzip-compressed) for reading in batches."""
    path = Path(path)
    check_readable(path)
    try:
        raw: io.BufferedReader = open(path, "rb")  # noqa: SIM115 - owned by the reader
    except OSError as exc:
        raise InputError(path, f"cannot open: {exc.strerror or exc}") from None
    fh: io.BufferedIOBase | io.RawIOBase = raw
    gzipped = False
    head = raw.read(64)
    if sniff(head) == "gzip":
        gzipped = True
        raw.seek(0)
        stream = GunzipStream(raw)
        head = stream.peek(64)
        if not head:
            raw.close()
            raise InputError(path, stream.error or "gzip-compressed file holds no data",
                             offset=0)
        fh = stream
    else:
        raw.seek(0)
    kind = sniff(head)
    try:
        if kind == "pcap":
            return PcapReader(path, fh, raw, gzipped, head)
        if kind == "pcapng":
            return PcapngReader(path, fh, raw, gzipped, head)
    except BaseException:
        fh.close()
        raw.close()
        raise
    fh.close()
    raw.close()
    magic = head[:4].hex() if head else "none"
    what = "gzip-compressed data" if gzipped else "file"
    raise InputError(path, f"not a pcap or pcapng capture ({what} starts with {magic})",
                     offset=0)
