"""strace text → the socket call table (one row per completed socket call, guest clock).

Defines :func:`read_socket_log` (the entry point for ``--socket-log``: strace output, or a plain
CSV / JSON Lines log, told apart by content), :func:`decode_strace_string` (strace's C-string
escaping undone) and :data:`COLUMNS`, the table's column order.

Expected input is ``strace -f -ttt -T`` (also ``-tt``, with or without ``-f`` pid prefixes,
``-o`` / ``-ff -o`` files, ``-x`` / ``-xx`` string escaping, ``-s N`` cut strings, ``-y`` /
``-yy`` fd annotations). The file is read in chunks of lines held as one Arrow array over the
chunk's own buffer. The plain lines (most of a long trace: a complete ``read(3, "...", 16384)
= N <dur>`` on a bare fd with short numbers, a ``recvfrom``/``sendto`` with an IPv4 address, a
``recvmmsg``/``sendmmsg`` that moved one message, or a call of no interest such as ``poll``)
are recognized by RE2's DFA and cut at byte positions with numpy (:func:`_plain`; leaders and
-T times laid out as the chunk's first are read at its columns); the other lines with a
complete call are parsed for a whole chunk at once by one RE2 regex with submatches
(:func:`pyarrow.compute.extract_regex`, ten times the DFA's cost); ``<unfinished ...>`` /
``<... resumed>`` pairs are matched per pid with array operations and their joined text goes
through the same regex; what remains (vector I/O, ``connect``/``accept``/``close``,
``clone``/``dup``, odd lines) goes through a small sequential parser.

Rows: one per completed read/write-family call and per ``connect``/``accept``/``accept4``/
``close`` (``direction`` NA; an accept row carries the listening fd in ``fd`` and the new fd in
``ret``). Calls on fds known not to be sockets (``open``/``pipe``/... results, ``-y`` paths)
are dropped; calls on fds never seen opened are kept with ``peer`` NA unless known otherwise.
``frame.attrs``: ``format``, ``time_of_day_only``, ``durations`` (any ``-T`` time seen),
``orphan_resumed`` (resumed lines whose start the trace missed), ``unfinished_at_end``.

Streams: a call's ``stream_offset`` counts the bytes already moved on the same socket in the same
direction, in order of completion. A socket is identified the way the kernel does: per fd table
(threads created with ``CLONE_FILES`` share their parent's; ``fork`` copies it), a ``close``
ends the fd, ``socket``/``accept``/``dup`` start one. The table carries that identity as the
extra column ``stream`` (int64) so a consumer can group by (``stream``, ``direction``).

Times: ``entry_ns`` is strace's line timestamp, ``duration_ns`` the ``-T`` time (0 without
``-T``, except for unfinished/resumed pairs where the resume line's timestamp gives it) and
``ts_ns = entry_ns + duration_ns``. With ``-tt`` the times count from 1970-01-01 (times of day,
a midnight crossing adds a day) and ``frame.attrs["time_of_day_only"]`` is True.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from xentrace_cli.errors import InputError, TruncatedInput, XenlatWarning, warn
from xentrace_cli.sources.capture import sniff

# --------------------------------------------------------------------------------------------
# Constants

#: Calls whose data flows from the socket to the application.
READ_CALLS: frozenset[str] = frozenset(
    {"read", "recv", "recvfrom", "recvmsg", "recvmmsg", "readv", "pread64"})
#: Calls whose data flows from the application to the socket (``sendfile``: from a file,
#: no data shown).
WRITE_CALLS: frozenset[str] = frozenset(
    {"write", "send", "sendto", "sendmsg", "sendmmsg", "writev", "sendfile", "sendfile64"})
#: Calls that move several datagrams at once: one table row per message.
MMSG_CALLS: frozenset[str] = frozenset({"recvmmsg", "sendmmsg"})
#: Socket calls without data; they appear in the table with ``direction`` NA.
CONTROL_CALLS: frozenset[str] = frozenset({"connect", "accept", "accept4", "close"})
#: Calls that only change which socket an fd names (not rows of the table).
FD_CALLS: frozenset[str] = frozenset({
    "socket", "socketpair", "dup", "dup2", "dup3", "clone", "clone3", "fork", "vfork",
    "open", "openat", "openat2", "creat", "pipe", "pipe2", "eventfd", "eventfd2",
})
#: Calls that create an fd known not to be a socket.
NON_SOCKET_CALLS: frozenset[str] = frozenset(
    {"open", "openat", "openat2", "creat", "pipe", "pipe2", "eventfd", "eventfd2"})
#: Every call the reader looks at; other lines are skipped.
INTERESTING_CALLS: frozenset[str] = READ_CALLS | WRITE_CALLS | CONTROL_CALLS | FD_CALLS

#: Categories of the ``syscall`` and ``direction`` columns.
SYSCALL_NAMES: tuple[str, ...] = tuple(sorted(READ_CALLS | WRITE_CALLS | CONTROL_CALLS))
DIRECTIONS: tuple[str, ...] = ("rx", "tx")
_CATEGORIES = {"syscall": SYSCALL_NAMES, "direction": DIRECTIONS}
_SYSCALL_DTYPE = pd.CategoricalDtype(SYSCALL_NAMES)
_DIRECTION_DTYPE = pd.CategoricalDtype(DIRECTIONS)
_SYSCALL_SET = pa.array(SYSCALL_NAMES)
#: Direction code (0 rx, 1 tx, -1 none) of each syscall category code.
_DIRECTION_OF = np.array([0 if c in READ_CALLS else 1 if c in WRITE_CALLS else -1
                          for c in SYSCALL_NAMES], dtype=np.int8)

#: The table's columns, in order (``stream`` is an addition to the ARCHITECTURE.md contract).
COLUMNS: tuple[str, ...] = (
    "ts_ns", "entry_ns", "duration_ns", "pid", "fd", "syscall", "direction", "ret", "errno",
    "bytes", "stream_offset", "stream", "peer", "data", "data_truncated",
)

#: Bytes read per chunk: bounds memory (the chunk's lines live as one Arrow array).
CHUNK_BYTES = 16 << 20
#: Sub-slices of a chunk parsed in parallel by the RE2 regex (pyarrow releases the GIL).
REGEX_THREADS = max(1, min(4, os.cpu_count() or 1))
#: How many malformed lines are named one by one before the rest are only counted.
MALFORMED_NAMED = 1
#: How many malformed lines are remembered (the first is named; the rest are counted).
MALFORMED_KEEP = 16
#: A time of day going back by more than this is a midnight crossing (``-tt``), not disorder.
MIDNIGHT_JUMP_NS = 12 * 3600 * 10**9
NS_PER_DAY = 86400 * 10**9
#: A NUL byte in this many first bytes makes the file binary, not a text log.
BINARY_SNIFF_BYTES = 8 << 10
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
#: Bounds of the numbers of a line. pids and fds are C ints; a call's return value (bytes
#: moved, a new fd or pid) is at most INT32_MAX (Linux caps one read/write at MAX_RW_COUNT,
#: just below 2**31), which also keeps a stream's int64 byte offsets from overflowing; epoch
#: seconds and -T seconds must give int64 nanoseconds (year 2262).
MAX_PID = MAX_FD = MAX_RET = INT32_MAX
MAX_SECONDS = INT64_MAX // 10**9 - 1

# --------------------------------------------------------------------------------------------
# Regular expressions (RE2 for the vectorized path; Python ``re`` below for the rare lines)

#: The line leader: optional pid prefix (``[pid  1234] `` on stderr, ``1234  `` with -o),
#: then the timestamp, split by TS_RE afterwards (a loose leader keeps RE2 fast).
_LEADER = r"^(?:\[pid +(?P<pid_a>\d+)\] |(?P<pid_b>\d+) +)?(?P<ts>\d[\d:.]*) "
#: ``-ttt`` epoch seconds or ``-tt``/``-t`` time of day, with optional fraction.
TS_RE = r"^(?:(?P<epoch>\d+)|(?P<hh>\d\d):(?P<mm>\d\d):(?P<ss>\d\d))(?:\.(?P<frac>\d+))?$"
#: The inside of a -y / -yy fd annotation: ``TCP:[a:1->b:2]`` (``->`` holds a ``>``),
#: ``/dev/pts/0<char 136:0>`` (one nested pair).
_ANN = r"(?:[^<>]|->|<[^<>]*>)*"
#: The fd argument, with its annotation.
_FD = r"(?P<fd>\d+)(?:<(?P<ann>" + _ANN + r")>)?"
#: ``= N``, ``= -1 EAGAIN (...)``, then the -T duration.
_RET = (r"\) += (?:(?P<ret>\d+)|-1 (?P<errno>E[A-Z0-9]+)(?: \(.*\))?)"
        r"(?: <(?P<dur>\d+\.\d+)>)?\r?\n?$")
#: The common call: a complete single-buffer read/write family call. Its tail (arguments after
#: the buffer) holds no string but the quoted addresses of recvfrom/sendto.
_COMMON_CALL = (
    r"(?P<call>read|recv|recvfrom|pread64|write|send|sendto)\(" + _FD
    + r', (?:"(?P<data>(?:[^"\\]|\\.)*)"(?P<trunc>\.\.\.)?|(?P<ptr>0x[0-9a-f]+|NULL))'
    + r'(?P<tail>(?:[^"]|"[^"]*")*)' + _RET
)
#: A call text of the common form (after the leader; a joined unfinished/resumed pair).
COMMON_CALL_RE = "^" + _COMMON_CALL
#: A line's call text after the leader (without the line end).
BODY_RE = _LEADER + r"(?P<body>[^\r\n]*)"
#: ``<... read resumed>"abc", 9) = 3``: the call's name and the text after the marker.
RESUMED_RE = _LEADER + r"<\.\.\. (?P<rname>\w+) resumed> ?(?P<rest>[^\r\n]*)"
#: ``read(5,  <unfinished ...>``: the call's name and its text before the marker.
UNFINISHED_RE = _LEADER + r"(?P<text>(?P<name>\w+)\([^\r\n]*) <unfinished \.\.\.>\r?\n?$"
#: Any line with a leader: the common call's groups, or ``name`` / ``rname`` (the call or the
#: resumed call) for the others. One pass costs about as much as the common form alone.
LINE_RE = (_LEADER + "(?:" + _COMMON_CALL
           + r"|<\.\.\. (?P<rname>\w+) resumed>|(?P<name>\w+)\(|(?P<event>\+\+\+ |--- |"
           r"\?\?\?\(|\[ Process ))?")
#: A socket address in an argument list (connect, accept, recvfrom, msg_name, ...).
SOCKADDR_RE = (
    r"sin_port=htons\((?P<port4>\d+)\), sin_addr=inet_addr\(\"(?P<ip4>[^\"]*)\"\)"
    r"|sin6_port=htons\((?P<port6>\d+)\).*?inet_pton\(AF_INET6, \"(?P<ip6>[^\"]*)\""
)
#: A -y / -yy annotation naming a socket; with -yy ``PROTO:[local->peer]``.
SOCKET_ANN_RE = (
    r"^(?:socket:\[|(?:TCP|UDP|UDPLITE|DCCP|SCTP|RAW|UNIX|NETLINK|PACKET|L2TP|MPTCP)"
    r"(?:v[46])?(?:-[A-Z]+)?:\[)"
)
ANN_PEER_RE = r"^[A-Za-z0-9-]+:\[(?P<local>[^\]]*(?:\][^\]-]*)?)->(?P<peer>.*)\]$"

_PY_INET_PEER = re.compile(r"^(?:\[[0-9A-Fa-f:.%\w]+\]|\d{1,3}(?:\.\d{1,3}){3}):\d+$")
_PY_NO_TIMESTAMP = re.compile(rb"^(?:\[pid +\d+\] |\d+ +)?[a-z_0-9]+\(.*\) += ")
_PY_SOCKADDR = re.compile(SOCKADDR_RE.encode())
_PY_SOCKET_ANN = re.compile(SOCKET_ANN_RE.encode())
_PY_ANN_PEER = re.compile(ANN_PEER_RE.encode())
#: An escape Python's decoder does not know (it would keep it with a DeprecationWarning): a
#: backslash before a character no escape begins with, or an octal escape past \377. Found
#: anywhere, so also after an escaped backslash (``\\Z``): a false alarm, which only costs
#: the careful path (:func:`_unescape`).
ODD_ESCAPE_RE = r"\\(?:[4-7][0-7][0-7]|[^\\'\"abfnrtvx0-7\n])"
_PY_ODD_ESCAPE = re.compile(ODD_ESCAPE_RE.encode(), re.S)
#: Each escape in turn (so an escaped backslash is one); the odd ones in group 1.
_PY_ESCAPE = re.compile(rb"\\(?:([4-7][0-7][0-7]|[^\\'\"abfnrtvx0-7\n])|[\s\S])")
_PY_QSTR = re.compile(rb'"((?:[^"\\]|\\.)*)"(\.\.\.)?')
_PY_IOV = re.compile(rb'iov_base="((?:[^"\\]|\\.)*)"(\.\.\.)?')
#: One message of a recvmmsg/sendmmsg vector: its header, then the bytes it moved.
_PY_MMSG = re.compile(rb"\{msg_hdr=\{(.*?)\}, msg_len=(\d+)\}", re.S)
#: A complete call text (after resumed pairs are joined): name, args, return, -T duration.
_PY_CALL = re.compile(
    rb"^(\w+)\((.*)\) += (-?\d+|\?)(?:<(" + _ANN.encode() + rb")>)?"
    rb"(?: (E[A-Z0-9]+)(?: \(.*\))?| \(.*\))?(?: <(\d+)\.(\d+)>)?\s*$", re.S)
_PY_FD_ARG = re.compile(rb"^(\d+)(?:<(" + _ANN.encode() + rb")>)?(?:, |$)")
_PY_FD_PAIR = re.compile(rb"\[(\d+)(?:<[^>]*>)?, (\d+)(?:<[^>]*>)?\]")
_PY_CLONE_CHILD_FILES = re.compile(rb"\bCLONE_FILES\b")
#: strace -f writing to stderr may print its attach message in the middle of the line of the
#: call that created the process: ``clone(...strace: Process 12 attached`` then, on the next
#: line, `` <unfinished ...>``. Rejoined (the continuation line becomes blank: numbering kept).
_ATTACH = b"strace: Process "
_GLUED_ATTACH = re.compile(rb"(?<=[^\n])strace: Process \d+ attached[^\n]*\n ?<unfinished \.\.\.>")
#: Lines written by strace itself or for -e read=/-k: skipped without complaint.
_SKIP_PREFIXES = (b"strace: ", b" | ", b" > ", b"+++ ", b"--- ", b"[ Process ")


# --------------------------------------------------------------------------------------------
# Public helpers

def decode_strace_string(text: bytes) -> bytes:
    """Undo strace's quoting of a string argument (the text between the quotes).

    strace writes printable ASCII as is, ``\\" \\\\ \\n \\r \\t \\v \\f`` as C escapes and other
    bytes as octal (``\\0``, ``\\177``, always three digits before a digit) or, with ``-x`` /
    ``-xx``, as ``\\xHH``: exactly the escapes Python's bytes literals use. A damaged string's
    escapes that strace never writes are kept as written (:func:`_unescape`).
    """
    if b"\\" not in text:
        return bytes(text)
    return _unescape(text)


def _unescape(text: bytes | memoryview, odd: bool | None = None) -> bytes:
    """C escapes undone. A damaged escape leaves bytes as written, a degraded payload rather
    than a failed file: ``\\x`` without two hex digits (or a trailing backslash) the whole
    string; a backslash before a character no escape begins with (``\\Z``) or an octal escape
    past ``\\377`` just those bytes, silently. (Python's decoder would keep ``\\Z`` too, but
    take ``\\777`` modulo 256, and say both in a DeprecationWarning of its own.) ``odd``:
    whether :data:`ODD_ESCAPE_RE` matches, when the caller already knows."""
    if odd is None:
        odd = _PY_ODD_ESCAPE.search(text) is not None
    try:
        # the odd backslashes doubled: the decoder then gives each back as written
        return codecs.escape_decode(_PY_ESCAPE.sub(_keep_odd, text) if odd else text)[0]
    except ValueError:
        return bytes(text)


def _keep_odd(m: re.Match[bytes]) -> bytes:
    """One escape of :data:`_PY_ESCAPE`: an odd one with its backslash doubled, else as is."""
    return m.group() if m.lastindex is None else b"\\" + m.group()


def _binary_kind(head: bytes) -> str | None:
    """What a binary file's first bytes look like (None: they look like text)."""
    kind = sniff(head)  # the capture reader's own magic-number test
    if kind in ("pcap", "pcapng"):
        return f"looks like a {kind} capture"
    if kind == "gzip":
        return "gzip-compressed"
    if b"\0" in head[:BINARY_SNIFF_BYTES]:
        return f"NUL bytes in the first {BINARY_SNIFF_BYTES >> 10} KiB"
    return None


def sniff_format(path: str | os.PathLike[str]) -> str:
    """``strace``, ``csv`` or ``jsonl`` from the first non-blank line of the file.

    A binary file (a capture given as the socket log, say) is one ``InputError`` here, before
    the text reader would find a cut last line and no socket call in it.
    """
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    binary = _binary_kind(head)
    if binary is not None:
        raise InputError(path, f"binary file ({binary}), not a text socket log", offset=0)
    for raw in head.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(b"{"):
            return "jsonl"
        first = line.split(b",")
        names = {c.strip().strip(b'"').lower() for c in first}
        if len(first) > 1 and names & {b"ts", b"ts_ns"} and b"bytes" in names:
            return "csv"
        return "strace"
    return "strace"


# --------------------------------------------------------------------------------------------
# Table assembly shared with the plain-log reader

def finish_table(rows: pd.DataFrame | Columns, *, fmt: str, time_of_day_only: bool,
                 select: np.ndarray | None = None,
                 extra_attrs: dict[str, object] | None = None,
                 consume: bool = False) -> pd.DataFrame:
    """The socket call table from parsed rows: stream offsets, dtypes, sorted by ``ts_ns``.

    ``rows`` holds ``entry_ns``, ``duration_ns``, ``pid`` and ``fd`` (int64, -1 when unknown),
    ``syscall``, ``direction`` (``rx``/``tx``/None), ``ret``, ``errno``, ``bytes``, ``stream``,
    ``peer``, ``data`` (without it: all None), ``data_truncated``. ``select`` lists the
    positions of the rows to keep in completion order (default: all, in ``rows`` order);
    offsets count in that order. Each column is gathered once, straight into the final order
    (``consume``: and taken out of the dict ``rows`` then, so that it can be freed before the
    table is built).
    """
    n = len(rows["bytes"])
    sel = np.arange(n) if select is None else np.asarray(select, np.int64)

    def column(name: str) -> Any:
        return rows.pop(name) if consume and isinstance(rows, dict) else rows[name]

    def values(name: str, dtype: type | str) -> np.ndarray:
        return np.asarray(column(name), dtype=dtype)

    nbytes = values("bytes", np.int64)[sel]
    dir_codes = pd.Categorical(column("direction"), categories=DIRECTIONS).codes[sel]
    stream = values("stream", np.int64)[sel]
    # stream_offset: bytes before this call on the same (socket, direction), completion order.
    offset = np.zeros(len(sel), np.int64)
    has_dir = dir_codes >= 0
    if has_dir.any():
        # one key per (socket, direction): stream ids are at least -1
        key = (stream[has_dir] + 1) * 2 + dir_codes[has_dir]
        moved = pd.Series(nbytes[has_dir], copy=False)
        offset[has_dir] = (moved.groupby(key, sort=False).cumsum().to_numpy()
                           - nbytes[has_dir])
    entry = values("entry_ns", np.int64)[sel]
    duration = values("duration_ns", np.int64)[sel]
    ts = entry + duration
    final = np.argsort(ts, kind="stable")      # ties keep completion order
    idx = sel[final]

    def nullable(name: str) -> pd.api.extensions.ExtensionArray:
        """Int32 with NA for -1 (pids and fds are C ints)."""
        ints = values(name, np.int64)[idx]
        return pd.arrays.IntegerArray(ints.astype(np.int32), ints < 0)

    syscall = _used_categories(pd.Categorical(column("syscall")), idx)
    frame = pd.DataFrame({
        "ts_ns": ts[final],
        "entry_ns": entry[final],
        "duration_ns": duration[final],
        "pid": nullable("pid"),
        "fd": nullable("fd"),
        "syscall": syscall,
        "direction": pd.Categorical.from_codes(dir_codes[final], categories=DIRECTIONS),
        "ret": pd.arrays.IntegerArray(values("ret", np.int64)[idx], np.zeros(len(idx), bool)),
        # via Arrow: much faster than pandas' object → string conversion
        "errno": pd.array(pa.array(values("errno", object)[idx], pa.string(), from_pandas=True),
                          dtype=pd.StringDtype()),
        "bytes": nbytes[final],
        "stream_offset": offset[final],
        # Stream ids numbered 0, 1, ... in order of first appearance in the table.
        "stream": pd.factorize(stream[final])[0].astype(np.int64),
        "peer": _categorical(column("peer"), idx),
        "data": (values("data", object)[idx] if "data" in rows
                 else np.full(len(idx), None, dtype=object)),
        "data_truncated": values("data_truncated", bool)[idx],
    }, copy=False)
    frame.attrs["format"] = fmt
    frame.attrs["time_of_day_only"] = bool(time_of_day_only)
    if extra_attrs:
        frame.attrs.update(extra_attrs)
    return frame


def _used_categories(values: pd.Categorical, idx: np.ndarray) -> pd.Categorical:
    """``values.take(idx).remove_unused_categories()`` from the codes (no per-value work)."""
    codes = np.asarray(values.codes)[idx]
    used = np.bincount(codes[codes >= 0], minlength=len(values.categories)) > 0
    renumber = np.cumsum(used) - 1
    return pd.Categorical.from_codes(np.where(codes >= 0, renumber[codes], -1),
                                     categories=values.categories[used])


def _categorical(values: np.ndarray | pd.Categorical, idx: np.ndarray) -> pd.Categorical:
    """``values[idx]`` (None/NA for missing) as a Categorical, its categories in order of first
    appearance. From an object array factorized by hash first (``pd.Categorical`` on objects
    would first convert every value to a string array); from a Categorical (distinct
    categories) by its codes alone."""
    if isinstance(values, pd.Categorical):
        codes = np.asarray(values.codes)[idx]
        present = codes >= 0
        firsts, order = pd.factorize(codes[present])
        out = np.full(len(codes), -1, np.int64)
        out[present] = firsts
        return pd.Categorical.from_codes(
            out, categories=pd.Index(np.asarray(values.categories, object)[order], dtype="str"))
    codes, uniques = pd.factorize(np.asarray(values, object)[idx], use_na_sentinel=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype="str"))


class Malformed:
    """Collects malformed lines; warns once, naming the first and counting the rest."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self.lines: list[tuple[int, str]] = []
        self.count = 0

    def add(self, line: int, problem: str) -> None:
        """Record one malformed line (1-based number)."""
        self.count += 1
        if len(self.lines) < MALFORMED_KEEP:
            self.lines.append((line, problem))

    def add_lines(self, lines: np.ndarray, problem: str) -> None:
        """Record malformed lines with one problem (the first few remembered, all counted)."""
        for line in lines[:MALFORMED_KEEP]:
            self.add(int(line), problem)
        self.count += max(0, len(lines) - MALFORMED_KEEP)

    def warn(self, stacklevel: int = 3) -> None:
        """Emit one ``XenlatWarning`` for everything collected."""
        if not self.count:
            return
        self.lines.sort()
        line, problem = self.lines[0]
        message = f"{self.path}: line {line}: {problem}; line skipped"
        if self.count > MALFORMED_NAMED:
            message += f" ({self.count - MALFORMED_NAMED} more malformed lines skipped)"
        warn(XenlatWarning(message), stacklevel=stacklevel)


# --------------------------------------------------------------------------------------------
# strace: vectorized chunk parsing

def _iter_chunks(path: str | os.PathLike[str], on_progress: Callable[[int, int], None] | None,
                 ) -> Iterator[tuple[int, pa.Array, bool]]:
    """Yield (first line number, lines as an Arrow binary array, ends_with_newline) per chunk.

    Each chunk is read into a buffer after the last one's unfinished line; its lines are that
    buffer (no copy of the text). The buffer is the last chunk's again when the caller has let
    go of that chunk's lines (:func:`_chunk_buffer`)."""
    total = os.path.getsize(path)
    done = 0
    line_no = 1
    rest = b""
    buf = bytearray()
    with open(path, "rb") as f:
        while True:
            buf = _chunk_buffer(buf, len(rest) + CHUNK_BYTES)
            buf[:len(rest)] = rest
            got = f.readinto(memoryview(buf)[len(rest):len(rest) + CHUNK_BYTES])
            done += got
            end = len(rest) + got
            if got:
                cut = buf.rfind(b"\n", 0, end) + 1
                # keep a line with a glued attach message together with its continuation
                prev = buf.rfind(b"\n", 0, max(cut - 1, 0)) + 1
                if buf.find(_ATTACH, prev, cut) >= 0 and not buf.startswith(_ATTACH, prev, end):
                    cut = prev
                if cut == 0:
                    rest = bytes(buf[:end])
                    continue
                text, rest = memoryview(buf)[:cut], bytes(buf[cut:end])
            else:
                text, rest = memoryview(buf)[:end], b""
            if buf.find(_ATTACH, 0, len(text)) >= 0:
                text = memoryview(_GLUED_ATTACH.sub(rb" <unfinished ...>\n", text))
            if len(text):
                lines = _lines(text)
                yield line_no, lines, text[-1] == 10
                line_no += len(lines)
                del lines
            del text   # no view of the buffer left here: the next chunk may reuse it
            if on_progress is not None:
                on_progress(min(done, total), total)
            if not got:
                return


#: Room left in a chunk's buffer for the next chunk's longer unfinished line (reuse).
_BUFFER_SPARE = 1 << 20


def _chunk_buffer(last: bytearray, size: int) -> bytearray:
    """A buffer of at least ``size`` bytes: ``last`` when nothing holds a view of it any more
    (its pages stay mapped: the kernel does not fault in and zero 16 MB afresh for every
    chunk), else a new one. A bytearray cannot be resized while exported, which ``pop``
    tells without copying anything."""
    if len(last) >= size:
        try:
            byte = last.pop()
        except BufferError:   # a view of the last chunk is still alive: leave it be
            return bytearray(size + _BUFFER_SPARE)
        last.append(byte)
        return last
    return bytearray(size + _BUFFER_SPARE)


def _lines(text: memoryview) -> pa.Array:
    """The lines of ``text`` (each with its newline) as an Arrow binary array over it."""
    nl = np.flatnonzero(np.frombuffer(text, np.uint8) == 10)
    ends = nl + 1
    if not ends.size or ends[-1] != len(text):
        ends = np.append(ends, len(text))
    offsets = np.concatenate(([0], ends)).astype(np.int32)
    return pa.BinaryArray.from_buffers(pa.binary(), len(offsets) - 1,
                                       [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _extract(lines: pa.Array, pattern: str) -> pa.StructArray:
    """``extract_regex`` over ``lines``, in parallel slices for big arrays."""
    n = len(lines)
    if REGEX_THREADS == 1 or n < 20000:
        return pc.extract_regex(lines, pattern)
    step = -(-n // REGEX_THREADS)
    parts = [lines.slice(i, step) for i in range(0, n, step)]
    with concurrent.futures.ThreadPoolExecutor(REGEX_THREADS) as pool:
        results = list(pool.map(lambda a: pc.extract_regex(a, pattern), parts))
    return pa.concat_arrays(results)


def _field(m: pa.StructArray, name: str) -> pa.Array:
    """A group of an ``extract_regex`` result; RE2 gives "" for a group that did not take
    part in the match, made null here so that presence tests are ``is_valid``."""
    arr = m.field(name)
    return pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, arr.type), arr)


def _digits(arr: pa.Array, limit: int = INT64_MAX) -> tuple[np.ndarray, np.ndarray]:
    """A column of decimal digit strings (nulls → 0) as int64, and which are at most
    ``limit`` (the others read as 0): a number of any length never reaches the int64 cast."""
    text = pc.fill_null(pc.cast(arr, pa.string()), "0")
    short = pc.less_equal(pc.utf8_length(text), 18)
    values = pc.cast(pc.if_else(short, text, "0"), pa.int64()).to_numpy(zero_copy_only=False)
    ok = short.to_numpy(zero_copy_only=False) & (values <= limit)
    return np.where(ok, values, 0), ok


def _fraction_ns(arr: pa.Array) -> np.ndarray:
    """Decimal fraction digits (``123456`` of ``.123456``) as nanoseconds; null → 0."""
    text = pc.fill_null(pc.cast(arr, pa.string()), "0")
    text = pc.utf8_slice_codeunits(pc.utf8_rpad(text, width=9, padding="0"), 0, 9)
    return pc.cast(text, pa.int64()).to_numpy(zero_copy_only=False)


def _seconds_ns(arr: pa.Array) -> np.ndarray | None:
    """Decimal seconds (``1700000000.123456``, nulls → 0) as int64 ns; None if any is not one.

    Arrow's decimal cast does the parsing; the 128-bit unscaled value at scale 9 *is* the
    count of nanoseconds, read as the low 64 bits (values stay far below 2**63).
    """
    text = pc.fill_null(pc.cast(arr, pa.string()), "0")
    try:
        dec = pc.cast(text, pa.decimal128(20, 9))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    words = np.frombuffer(dec.buffers()[1], dtype="<i8")
    low = words[2 * dec.offset:2 * (dec.offset + len(dec)):2]
    high = words[2 * dec.offset + 1:2 * (dec.offset + len(dec)):2]
    if (high != 0).any() or (low < 0).any() or (low > MAX_SECONDS * 10**9).any():
        return None           # past int64 nanoseconds: the caller's bounded path says which
    return low.copy()


@dataclasses.dataclass
class _Leaders:
    """The line leaders of one chunk's matched rows."""

    ts: np.ndarray        #: timestamp ns (a time of day not yet unwrapped)
    tod: np.ndarray       #: the timestamp is a time of day (-tt)
    pid: np.ndarray       #: pid, -1 without prefix
    ok: np.ndarray        #: the timestamp is well formed
    big_pid: np.ndarray   #: the pid is past MAX_PID
    big_ts: np.ndarray    #: the epoch seconds are past MAX_SECONDS


def _leader(m: pa.StructArray) -> _Leaders:
    """The leaders of the rows matched by LINE_RE."""
    pid = pc.coalesce(_field(m, "pid_a"), _field(m, "pid_b"))
    pid_valid = pc.is_valid(pid).to_numpy(zero_copy_only=False)
    pid_num, pid_ok = _digits(pid, MAX_PID)
    pid_num = np.where(pid_valid, pid_num, -1)
    n = len(m)
    ts = None
    if not pc.any(pc.match_substring(m.field("ts"), ":")).as_py():
        ts = _seconds_ns(m.field("ts"))          # -ttt: the fast path
    if ts is not None:
        return _Leaders(ts, np.zeros(n, bool), pid_num, pid_ok, ~pid_ok, np.zeros(n, bool))
    t = pc.extract_regex(m.field("ts"), TS_RE)
    ok = pc.is_valid(t).to_numpy(zero_copy_only=False)
    tod = pc.is_valid(_field(t, "hh")).to_numpy(zero_copy_only=False) & ok
    seconds, ts_ok = _digits(_field(t, "epoch"), MAX_SECONDS)
    if tod.any():
        hh, mm, ss = (_digits(_field(t, k))[0] for k in ("hh", "mm", "ss"))
        ok &= ~tod | ((hh < 24) & (mm < 60) & (ss < 61))
        seconds = np.where(tod, hh * 3600 + mm * 60 + ss, seconds)
    ts = seconds * 10**9 + _fraction_ns(_field(t, "frac"))
    big_ts = ok & ~ts_ok
    return _Leaders(ts, tod, pid_num, ok & ts_ok & pid_ok, ~pid_ok, big_ts)


def _per_distinct(values: pa.Array, fn: Callable[[bytes], object]) -> np.ndarray:
    """``fn`` of each value (None for null), computed once per distinct value: annotations
    and address arguments repeat (one per socket or peer), so this stays cheap."""
    encoded = pc.dictionary_encode(values)
    results = np.array([fn(v) for v in encoded.dictionary.to_pylist()] + [None], dtype=object)
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return results[indices]


def _tail_peer(tail: bytes) -> str | None:
    """The peer in the arguments after the buffer (recvfrom / sendto address), or None."""
    m = _PY_SOCKADDR.search(tail)
    return None if m is None else _sockaddr_peer(m)


def _ann_info(ann: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """From fd annotations: kind (0 none, 1 socket, 2 not a socket) and -yy peer (or None)."""
    if not pc.any(pc.is_valid(ann)).as_py():
        return np.zeros(len(ann), np.int8), np.full(len(ann), None, dtype=object)
    kind = _per_distinct(ann, _ann_kind)
    kind[pd.isna(kind)] = 0
    return kind.astype(np.int8), _per_distinct(ann, _ann_peer)


def _ann_peer(ann: bytes | None) -> str | None:
    """The peer of a ``-yy`` socket annotation ``TCP:[local->peer]`` (None if not shown)."""
    if not ann:
        return None
    m = _PY_ANN_PEER.match(ann)
    if m is None:
        return None
    peer = m.group("peer").decode("latin-1")
    if peer.count(":") > 1 and not peer.startswith("["):  # bare IPv6: bracket the address
        host, _, port = peer.rpartition(":")
        peer = f"[{host}]:{port}"
    # Only an address and port is a peer (UNIX sockets show inode numbers and paths).
    return peer if _PY_INET_PEER.match(peer) else None


def _ann_kind(ann: bytes | None) -> int:
    """0 without annotation, 1 for a socket, 2 for anything else (file, pipe, ...)."""
    if ann is None:
        return 0
    return 1 if _PY_SOCKET_ANN.match(ann) else 2


#: Columns of parsed rows, by name: numpy arrays, or Categoricals for ``syscall``/``direction``.
Columns = dict[str, "np.ndarray | pd.Categorical"]


@dataclasses.dataclass
class _Rows:
    """Columns of parsed calls, accumulated over chunks (completion order is ``order``).

    Plain dicts of arrays, not DataFrames: no block consolidation and no string inference
    per chunk, and one concatenation per column at the end.
    """

    parts: list[Columns] = dataclasses.field(default_factory=list)

    def add(self, part: Columns) -> None:
        if len(part["order"]):
            self.parts.append(part)

    def columns(self, skip: tuple[str, ...] = ()) -> Columns:
        """All rows, column by column (but those in ``skip``); the parts are released (they
        would double the memory)."""
        parts, self.parts = self.parts, []
        out: Columns = {}
        for name in _ROW_COLUMNS:
            if name in skip:
                continue
            pieces = [p[name] for p in parts]
            if name in _CATEGORIES:
                codes = []
                for x in pieces:   # the row builders make them Categoricals
                    assert isinstance(x, pd.Categorical), name
                    codes.append(np.asarray(x.codes))
                out[name] = pd.Categorical.from_codes(
                    np.concatenate(codes) if codes else np.zeros(0, np.int8),
                    categories=_CATEGORIES[name])
            else:
                out[name] = (np.concatenate(pieces) if pieces
                             else np.zeros(0, object if name in _OBJECT_COLUMNS else np.int64))
        return out


def _python_rows(rows: list[tuple[Any, ...]]) -> Columns:
    """Rows built one by one (tuples in ``_ROW_COLUMNS`` order) as columns."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(_ROW_COLUMNS)
    out: Columns = {}
    for name, values in zip(_ROW_COLUMNS, cols, strict=True):
        if name in _CATEGORIES:
            out[name] = pd.Categorical(list(values), categories=_CATEGORIES[name])
        elif name in _OBJECT_COLUMNS:
            out[name] = np.array(list(values) + [None], dtype=object)[:-1]
        else:
            out[name] = np.array(values, dtype=bool if name in ("tod", "data_truncated")
                                 else np.int64)
    return out


#: Internal row columns: the table's plus ``order`` (completion line), ``ann_kind``, ``row_peer``.
_ROW_COLUMNS = ("order", "entry_ns", "duration_ns", "tod", "pid", "fd", "syscall", "direction",
                "ret", "errno", "bytes", "row_peer", "ann_kind", "data", "data_truncated")
_OBJECT_COLUMNS = frozenset({"errno", "row_peer", "data"})


def _decode_strings(strings: pa.Array) -> np.ndarray:
    """strace strings (the text between the quotes) → their bytes, as an object array.

    Decoded straight from the Arrow buffer: creating the escaped ``bytes`` first and
    replacing them would leave the heap fragmented (most strace data holds escapes).
    """
    strings = strings.cast(pa.binary())
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[
        strings.offset:strings.offset + len(strings) + 1]
    view = memoryview(strings.buffers()[2] or b"")
    has_escape = pc.match_substring(strings, "\\").to_numpy(zero_copy_only=False)
    odd = pc.match_substring_regex(strings, ODD_ESCAPE_RE).to_numpy(zero_copy_only=False)
    out = np.empty(len(strings), dtype=object)
    out[:] = [_unescape(view[a:b], odd_one) if esc else bytes(view[a:b])
              for a, b, esc, odd_one in zip(offsets[:-1].tolist(), offsets[1:].tolist(),
                                            has_escape.tolist(), odd.tolist(), strict=True)]
    return out


def _common_rows(m: pa.StructArray, order: np.ndarray, ts: np.ndarray, tod: np.ndarray,
                 pid: np.ndarray, malformed: Malformed, resume_ns: np.ndarray | None = None,
                 with_data: bool = True) -> Columns:
    """Rows of the complete single-buffer calls matched by LINE_RE / COMMON_CALL_RE.

    ``order`` is each call's completion line; ``resume_ns`` (joined unfinished/resumed pairs)
    the resume line's time, which gives the duration when ``-T`` did not. A call with a
    number out of range is reported to ``malformed`` and left out.
    """
    call_arr = pc.cast(_field(m, "call"), pa.string())
    errno_arr = _field(m, "errno")
    is_err = pc.is_valid(errno_arr).to_numpy(zero_copy_only=False)
    ret, ret_ok = _digits(_field(m, "ret"), MAX_RET)
    ret = np.where(is_err, -1, ret)
    fd, fd_ok = _digits(_field(m, "fd"), MAX_FD)
    if with_data:
        data = _decode_strings(pc.fill_null(_field(m, "data"), b""))
    else:  # the caller does not want the bytes: no Python object per call
        data = np.full(len(m), None, dtype=object)
    truncated = pc.is_valid(_field(m, "trunc")).to_numpy(zero_copy_only=False)
    dur = _field(m, "dur")
    has_dur = pc.is_valid(dur).to_numpy(zero_copy_only=False)
    fallback = 0 if resume_ns is None else np.maximum(resume_ns - ts, 0)
    dur_ns, dur_ok = _seconds_ns(dur), np.ones(len(m), bool)
    if dur_ns is None:                 # more than 9 decimals (keep the first 9), or too long
        parts = pc.extract_regex(pc.fill_null(dur, b"0.0"), r"(?P<s>\d+)\.(?P<f>\d+)")
        seconds, dur_ok = _digits(parts.field("s"), MAX_SECONDS)
        dur_ns = seconds * 10**9 + _fraction_ns(parts.field("f"))
    duration = np.where(has_dur, dur_ns, fallback)
    ann_kind, ann_peer = _ann_info(_field(m, "ann"))
    row_peer = ann_peer
    # recvfrom / sendto may carry an address in their tail arguments.
    tail = _field(m, "tail")
    addr_rows = pc.match_substring(pc.fill_null(tail, b""), "sin").to_numpy(zero_copy_only=False)
    if addr_rows.any():
        sel = np.flatnonzero(addr_rows)
        peers = _per_distinct(tail.take(pa.array(sel)), _tail_peer)
        found = ~pd.isna(peers)
        row_peer[sel[found]] = peers[found]
    # Categoricals with fixed categories: no Python string per row, and concat keeps them.
    codes = pc.index_in(call_arr, value_set=_SYSCALL_SET).to_numpy(zero_copy_only=False)
    syscall = pd.Categorical.from_codes(codes, categories=SYSCALL_NAMES)
    direction = pd.Categorical.from_codes(_DIRECTION_OF[codes], categories=DIRECTIONS)
    cols: Columns = {
        "order": np.asarray(order, np.int64),
        "entry_ns": ts,
        "duration_ns": duration,
        "tod": tod,
        "pid": pid,
        "fd": fd,
        "syscall": syscall,
        "direction": direction,
        "ret": ret,
        "errno": pc.cast(errno_arr, pa.string()).to_numpy(zero_copy_only=False),
        "bytes": np.maximum(ret, 0),
        "row_peer": row_peer,
        "ann_kind": ann_kind,
        "data": data,
        "data_truncated": truncated,
    }
    return _out_of_range(cols, malformed, [(fd_ok, f"file descriptor past {MAX_FD}"),
                                           (ret_ok, f"return value past {MAX_RET}"),
                                           (dur_ok, "-T duration past int64 nanoseconds")])


def _out_of_range(cols: Columns, malformed: Malformed,
                  checks: list[tuple[np.ndarray, str]]) -> Columns:
    """The rows whose numbers are all in range; each other row is reported (first problem)."""
    ok = np.logical_and.reduce([good for good, _ in checks])
    if ok.all():
        return cols
    left = ~ok
    for good, what in checks:
        hit = left & ~good
        malformed.add_lines(cols["order"][hit], f"number out of range: {what}")
        left &= ~hit
    return {name: values[ok] for name, values in cols.items()}


# --------------------------------------------------------------------------------------------
# strace: the plain lines, cut at byte positions (no regex submatches)
#
# RE2 extracting LINE_RE's groups costs about a microsecond per line; testing a line against a
# pattern without groups (its DFA) costs a tenth of that. Most lines of a long trace have one
# of two plain forms: the common call on a bare fd with short numbers, or another call that
# is of no interest (poll, futex, ...). For these the DFA says the line has the form, and the
# fields are then found where the form puts them (the first "(", the last '"', ...), parsed
# with numpy: the same rows as the regex path gives (tests/test_readers_strace.py compares
# both on every test file). Every other line goes through LINE_RE as before.
#
# numpy's cost is an operation per array, and a gather from the chunk per row: the parts of a
# line are read from few windows (its leader's, the bytes after its "(", its last 32 bytes),
# eight bytes are worked on as one 64-bit word (a number, a search for a mark), and what lines
# write as the first of them (a leader's layout, a -T time's, an errno and its message, an
# address, a call's name) is compared with it as a whole instead of read apart.

#: The plain leader: ``PID  SECONDS.FRACTION `` (``strace -f -ttt -o``), ``[pid N] `` (on
#: stderr) or none; numbers too short to be out of range.
_PLAIN_LEADER = r"^(?:\[pid {1,6}\d{1,9}\] |\d{1,9} {1,6})?\d{1,10}\.\d{1,9} "
#: An IPv4 socket address as strace shows it, its port a 16-bit number.
_PLAIN_SOCKADDR = (r'\{sa_family=AF_INET, sin_port=htons\((?:\d{1,4}|[1-5]\d{4}|6[0-4]\d{3}'
                   r'|65[0-4]\d\d|655[0-2]\d|6553[0-5])\), sin_addr=inet_addr\("[0-9.]{1,15}"\)\}')
#: A string argument (escapes, no line break), with its "..." when cut.
_PLAIN_STRING = r'"(?:[^"\\\n]|\\[^\n])*"(?:\.\.\.)?'
#: Return value (or -1 and an errno with its message in words), -T time, line end.
_PLAIN_END = (r"\) = (?:\d{1,9}|-1 E[A-Z0-9]{1,32}(?: \([A-Za-z ]{0,64}\))?)"
              r"(?: <\d{1,9}\.\d{1,9}>)?\n$")
#: The common call in its plainest form: an fd (:data:`_PLAIN_FD`); a string or a pointer;
#: further arguments
#: that are numbers or flags, for recvfrom / sendto at most one IPv4 address among them and
#: address lengths (``16``, ``[128]``, ``[128 => 16]``); a return value, or -1 and an errno
#: with its message in words; the -T time. Such a line matches LINE_RE's common call with the
#: groups :func:`_plain_common` finds (its only '"' are the string's and the address's, which
#: are the line's last two, and its first ")" after them closes the arguments).
#: The fd, bare or with a -y / -yy annotation without '<', '"', ',', ' ' inside (one ">" in
#: a "->" only): ``5``, ``5<TCP:[10.0.0.1:11211->10.0.0.2:40000]>``, ``7<socket:[123]>``.
_PLAIN_FD = r'\d{1,9}(?:<(?:[^<>"\n, ]|->){1,128}>)?'
PLAIN_CALL_RE = (
    _PLAIN_LEADER + r"(?:(?:read|write|recv|send|pread64)\(" + _PLAIN_FD + ", "
    r"(?:" + _PLAIN_STRING + r"|0x[0-9a-f]{1,16}|NULL)(?:, [0-9A-Za-z_|]{1,64})*"
    r"|(?:recvfrom|sendto)\(" + _PLAIN_FD + ", "
    r"(?:" + _PLAIN_STRING + r"|0x[0-9a-f]{1,16}|NULL)"
    r"(?:, [0-9A-Za-z_|]{1,64})*(?:, " + _PLAIN_SOCKADDR + r")?"
    r"(?:, (?:[0-9A-Za-z_|]{1,64}|\[\d{1,9}(?: => \d{1,9})?\]))*)" + _PLAIN_END)
#: A recvmmsg / sendmmsg call that moved one message (one buffer, an IPv4 address or none):
#: one row, as :meth:`_Slow._messages` gives it. Its only '"' are the address's (first) and
#: the buffer's (last); ``msg_len=`` must not occur in the buffer (:func:`_plain_mmsg_lines`).
PLAIN_MMSG_RE = (
    _PLAIN_LEADER + r"(?:recvmmsg|sendmmsg)\(\d{1,9}, \[\{msg_hdr=\{msg_name=(?:"
    + _PLAIN_SOCKADDR + r"|NULL), msg_namelen=\d{1,9}, msg_iov=\[\{iov_base=" + _PLAIN_STRING
    + r", iov_len=\d{1,9}\}\], msg_iovlen=1, msg_controllen=\d{1,9}, msg_flags=[0-9A-Za-z_|]{1,64}"
    r"\}, msg_len=\d{1,9}\}\], \d{1,9}, [0-9A-Za-z_|]{1,64}(?:, NULL)?\) = 1"
    r"(?: <\d{1,9}\.\d{1,9}>)?\n$")
#: What :func:`_big_number` would read as a pair of fds out of range (``[N, M]`` with ten
#: digits or more): such an mmsg line takes the sequential parser, which reports it.
_LONG_PAIR_RE = r"\[\d{10}|, \d{10}"
#: Any call after a plain leader: of no interest unless its name is one the reader looks at
#: (those lines take the regex path).
PLAIN_NAMED_RE = _PLAIN_LEADER + r"\w{1,32}\("


def _name_word(name: str) -> int:
    """A call name of up to 8 bytes as the word of its bytes (zeros after it)."""
    return int.from_bytes(name.encode().ljust(8, b"\0"), "little")


#: The calls the reader looks at (a plain line naming one takes the regex path): the names of
#: up to 8 bytes as words (sorted), the longer ones as strings; recvmmsg / sendmmsg's words.
_WANTED_WORDS = np.array(sorted(_name_word(c) for c in INTERESTING_CALLS if len(c) <= 8),
                         np.uint64)
_WANTED_LONG = pa.array(sorted(c for c in INTERESTING_CALLS if len(c) > 8), pa.binary())
_MMSG_WORDS = np.array(sorted(_name_word(c) for c in MMSG_CALLS), np.uint64)
#: Syscall category codes of the plain calls, by the call name's length (9: longer) and third
#: byte (-1: not a plain call's name).
_PLAIN_CODES = np.full(10 * 256, -1, np.int16)
for _name in ("read", "recv", "send", "write", "pread64", "recvfrom", "sendto"):
    _PLAIN_CODES[len(_name) * 256 + ord(_name[2])] = SYSCALL_NAMES.index(_name)


def _window(buf: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes from each ``start``, a row each (zeros outside ``buf``): one
    ``width``-byte item per start from an overlapping view, not a gather per byte."""
    if len(buf) >= width and (not len(start) or (start.min() >= 0
                                                 and start.max() <= len(buf) - width)):
        return _items(buf, width)[start].view(np.uint8).reshape(-1, width)
    pad = np.zeros(width, np.uint8)
    if len(buf) < width:
        buf = np.concatenate([buf, pad])
    outside = (start < 0) | (start > len(buf) - width)
    out = _items(buf, width)[np.where(outside, 0, start)].view(np.uint8).reshape(-1, width)
    if outside.any():
        padded = np.concatenate([pad, buf[:width], pad, buf[len(buf) - width:], pad])
        near = np.where(start < 0, start + width, start - (len(buf) - width) + 3 * width)
        out[outside] = _items(padded, width)[np.clip(near[outside], 0, len(padded) - width)] \
            .view(np.uint8).reshape(-1, width)
    return out


def _items(buf: np.ndarray, width: int) -> np.ndarray:
    """``buf`` as overlapping ``width``-byte items, one starting at every byte."""
    return np.ndarray(shape=(len(buf) - width + 1,), dtype=np.dtype((np.void, width)),
                      buffer=buf, strides=(1,))


def _decimal(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The decimal digits ``buf[start:start + length]`` (at most 18) as int64: the window of
    each number's bytes as one matrix, the number in its last columns (the bytes before it
    read as "0"), read a column (a decimal place) at a time."""
    width = max(int(length.max()) if len(length) else 0, 1)
    window = _window(buf, start + length - width, width)
    window[np.arange(width) < (width - length)[:, None]] = ord("0")
    return _columns_number(window, 0, width)


def _seconds(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """``SECONDS.FRACTION`` between ``start`` and ``end`` as ns (at most 9 digits each)."""
    dot = start + np.argmax(_window(buf, start, 10) == ord("."), axis=1)
    return _decimal(buf, start, dot - start) * 10**9 + _digits_ns(buf, dot, end)


def _digits_ns(buf: np.ndarray, dot: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The digits after each ``dot`` up to ``end`` (at most 9) as a fraction in ns."""
    digits = end - dot - 1
    return _decimal(buf, dot + 1, digits) * 10 ** (9 - digits)


def _substrings(buf: np.ndarray, start: np.ndarray, end: np.ndarray) -> pa.Array:
    """``buf[start[i]:end[i]]`` for every i, as an Arrow binary array."""
    length = end - start
    offsets = np.zeros(len(start) + 1, np.int64)
    np.cumsum(length, out=offsets[1:])
    at = np.repeat(start - offsets[:-1], length)
    at += np.arange(len(at))
    return pa.BinaryArray.from_buffers(pa.binary(), len(start), [
        None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(buf[at])])


class _Marks:
    """Where the characters the plain lines are cut at lie in a chunk's bytes: looked for in
    the 8 bytes beside each position (one 64-bit word), then in a window of ``width`` bytes
    beyond them, and in the whole chunk (its positions of that character found once, when
    first needed) for the rows whose window holds none."""

    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf
        self.found: dict[str, np.ndarray] = {}

    def _all(self, char: str) -> np.ndarray:
        """Every position of ``char``, between the sentinels -1 and ``len(buf)``."""
        if char not in self.found:
            own = np.flatnonzero(self.buf == ord(char))
            self.found[char] = np.concatenate(([-1], own, [len(self.buf)]))
        return self.found[char]

    def first(self, char: str, pos: np.ndarray, width: int = 64) -> np.ndarray:
        """The first ``char`` at or after each ``pos`` (``len(buf)``: none)."""
        col = _zero_bytes_below(_bytes_equal(_word_at(self.buf, pos), char)).astype(np.int64)
        out = pos + col
        miss = np.flatnonzero(col == 8)
        if len(miss):
            out[miss] = self._first_beyond(char, pos[miss] + 8, width)
        return out

    def _first_beyond(self, char: str, pos: np.ndarray, width: int) -> np.ndarray:
        col = _first_in_row(_window(self.buf, pos, width) == ord(char))
        out = pos + col
        miss = np.flatnonzero(col == width)
        if len(miss):                                   # (len(buf) for one past the end)
            at = self._all(char)
            out[miss] = at[np.minimum(np.searchsorted(at, pos[miss]), len(at) - 1)]
        return out

    def last(self, char: str, pos: np.ndarray, width: int = 64,
             after: np.ndarray | None = None) -> np.ndarray:
        """The last ``char`` before each ``pos`` (-1: none). ``after``: only one after it is
        wanted (-1 when the window reached back to ``after`` without one)."""
        out = self._last_in_word(char, pos)
        miss = np.flatnonzero(out < pos - 8)
        if len(miss):                                   # the 8 bytes before them
            out[miss] = self._last_in_word(char, pos[miss] - 8)
            miss = miss[out[miss] < pos[miss] - 16]
        if len(miss):
            out[miss] = self._last_before(char, pos[miss] - 16, width,
                                          None if after is None else after[miss])
        return out

    def _last_in_word(self, char: str, pos: np.ndarray) -> np.ndarray:
        """The last ``char`` in the 8 bytes before each ``pos`` (before them: none)."""
        col = _zero_bytes_below(_bytes_equal(_word_at(self.buf, pos - 8), char).byteswap())
        return pos - 1 - col.astype(np.int64)

    def _last_before(self, char: str, pos: np.ndarray, width: int,
                     after: np.ndarray | None) -> np.ndarray:
        col = _last_in_row(_window(self.buf, pos - width, width) == ord(char))
        out = pos - width + col
        missed = col < 0
        if after is not None:  # the window reached back to ``after`` without one: none
            reached = missed & (pos - width <= after)
            out[reached] = -1
            missed &= ~reached
        miss = np.flatnonzero(missed)
        if len(miss):                                   # (-1 for one before the start)
            at = self._all(char)
            out[miss] = at[np.maximum(np.searchsorted(at, pos[miss]) - 1, 0)]
        return out


def _digits_before(buf: np.ndarray, end: np.ndarray, most: int) -> np.ndarray:
    """How many of the (at most ``most``) bytes before each ``end`` are digits, counted back
    from ``end``."""
    window = _window(buf, end - most, most)
    return most - 1 - _last_in_row(~_is_digit(window))


def _first_in_row(hit: np.ndarray) -> np.ndarray:
    """Per row, the first column where ``hit`` is True (the width: none). ``argmax`` gives 0
    for a row without any, told apart by its first column."""
    first = hit.argmax(axis=1)
    return np.where((first == 0) & ~hit[:, 0], hit.shape[1], first)


#: Column weights 1, 2, ... for :func:`_last_in_row` (rows are at most 255 wide).
_RISING = np.arange(1, 256, dtype=np.uint8)


def _last_in_row(hit: np.ndarray) -> np.ndarray:
    """Per row, the last column where ``hit`` is True (-1: none): the heaviest hit with the
    columns weighted 1, 2, ... (``argmax`` of a reversed view is several times slower)."""
    last = (hit.view(np.uint8) * _RISING[:hit.shape[1]]).argmax(axis=1)
    return np.where((last == 0) & ~hit[:, 0], -1, last)


def _number_at(buf: np.ndarray, start: np.ndarray, most: int,
               word: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The decimal number starting at each ``start`` (at most ``most`` digits, up to 18) and
    how many digits it has (0: none, a value of 0). Up to 8 digits read as one 64-bit word
    each (:func:`_word_digits`; ``word``: the 8 bytes at ``start`` when the caller has them),
    longer ones from a window of ``most`` bytes."""
    if word is None:
        word = _word_at(buf, start)
    digits = _zero_bytes_below(_non_digit_bytes(word))
    # the digits moved to the word's top bytes, zeros (leading zeros) below them
    value = _word_digits(word << (np.uint64(64) - (digits << np.uint64(3))))
    digits = digits.astype(np.int64)
    long = np.flatnonzero(digits == 8)
    if len(long):
        more = _first_in_row(~_is_digit(_window(buf, start[long], most)))
        value[long], digits[long] = _decimal(buf, start[long], more), more
    return value, digits


def _number_before(buf: np.ndarray, end: np.ndarray, most: int,
                   word: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The decimal number ending before each ``end`` (at most ``most`` digits, up to 18) and
    how many digits it has (0: none, a value of 0), as :func:`_number_at` reads them
    (``word``: the 8 bytes before ``end``)."""
    if word is None:
        word = _word_at(buf, end - 8)
    digits = _zero_bytes_below(_non_digit_bytes(word).byteswap())
    # the bytes below the digits cleared (leading zeros)
    value = _word_digits(word & (_ALL_BYTES << (np.uint64(64) - (digits << np.uint64(3)))))
    digits = digits.astype(np.int64)
    long = np.flatnonzero(digits == 8)
    if len(long):
        more = _digits_before(buf, end[long], most)
        value[long], digits[long] = _decimal(buf, end[long] - more, more), more
    return value, digits


def _columns_word(window: np.ndarray, start: int) -> np.ndarray:
    """The bytes in the columns ``start:start + 8`` of each row of ``window`` as a word."""
    word: np.ndarray = np.ascontiguousarray(window[:, start:start + 8]).view("<u8")[:, 0]
    return word


# 64-bit words holding eight bytes of text (little-endian: the first byte the lowest), worked
# on as a whole: one numpy operation per word instead of one per byte (SWAR).
_ALL_BYTES = np.uint64(0xFFFFFFFFFFFFFFFF)
_HIGH_BITS = np.uint64(0x8080808080808080)


def _word_at(buf: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The 8 bytes from each ``start`` as a word (zeros outside ``buf``)."""
    if len(buf) >= 8 and (not len(start) or (start.min() >= 0 and start.max() <= len(buf) - 8)):
        inside: np.ndarray = _items(buf, 8)[start].view("<u8")
        return inside
    word: np.ndarray = _window(buf, start, 8).view("<u8")[:, 0]
    return word


def _bytes_equal(word: np.ndarray, char: str) -> np.ndarray:
    """0x80 in each byte of ``word`` that is ``char``, 0 in the others: the bytes of ``word``
    XOR ``char`` are 0 there, and a byte's low seven bits plus 0x7F (or its own high bit) set
    its high bit when it is not 0."""
    other = word ^ np.uint64(ord(char) * 0x0101010101010101)
    non_zero = ((other & np.uint64(0x7F7F7F7F7F7F7F7F)) + np.uint64(0x7F7F7F7F7F7F7F7F)) | other
    equal: np.ndarray = ~non_zero & _HIGH_BITS
    return equal


def _non_digit_bytes(word: np.ndarray) -> np.ndarray:
    """0x80 in each byte of ``word`` that is not an ASCII digit, 0 in the digits. Each byte's
    low seven bits plus 0x50 (0x46) set its high bit when they are at least "0" (past "9"),
    without a carry into the next byte."""
    low = word & np.uint64(0x7F7F7F7F7F7F7F7F)
    from_zero = low + np.uint64(0x5050505050505050)
    past_nine = low + np.uint64(0x4646464646464646)
    non_digit: np.ndarray = (~from_zero | past_nine | word) & _HIGH_BITS
    return non_digit


def _zero_bytes_below(word: np.ndarray) -> np.ndarray:
    """How many of the low bytes of ``word`` are 0 before its first set bit (8: all)."""
    lowest = word & (~word + np.uint64(1))               # the lowest set bit alone
    below: np.ndarray = np.bitwise_count(lowest - np.uint64(1)) >> np.uint8(3)
    return below.astype(np.uint64)


def _word_digits(word: np.ndarray) -> np.ndarray:
    """The number the eight bytes of each word write, the first byte the highest place;
    bytes "0"-"9" or 0 (a leading zero). Pairs, then fours, then the eight digits combined
    (place values multiplied in, the neighbour shifted down)."""
    v = word & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v * np.uint64(10 << 8 | 1)) >> np.uint64(8)
    v = ((v & np.uint64(0x00FF00FF00FF00FF)) * np.uint64(100 << 16 | 1)) >> np.uint64(16)
    v = ((v & np.uint64(0x0000FFFF0000FFFF)) * np.uint64(10000 << 32 | 1)) >> np.uint64(32)
    return v.astype(np.int64)


@dataclasses.dataclass
class _Plain:
    """The plain lines of a chunk: which, their leaders, and the common calls' rows."""

    common: np.ndarray    #: the line is a common call of the plain form
    named: np.ndarray     #: the line is another call of the plain form, of no interest
    mmsg: np.ndarray      #: the line is a recvmmsg / sendmmsg of the plain form
    ts: np.ndarray        #: timestamp ns of each plain line (0 elsewhere)
    pid: np.ndarray       #: pid, -1 without prefix (and elsewhere)
    buf: np.ndarray
    marks: _Marks
    stop: np.ndarray      #: each line's end (after its newline)
    paren: np.ndarray     #: each plain line's "(" (0 elsewhere)
    ts_end: np.ndarray    #: the space after each plain line's time (0 elsewhere)
    lines: pa.Array

    @property
    def any(self) -> np.ndarray:
        return self.common | self.named | self.mmsg


def _plain(lines: pa.Array) -> _Plain | None:
    """The chunk's lines of the plain forms (None when it has none). The common calls are
    told by RE2's DFA (:data:`PLAIN_CALL_RE`); the other lines laid out as the first of them
    (:func:`_plain_leaders`) are calls of the plain form when a word and "(" follow their
    leader (:func:`_named_calls`), the rest are asked :data:`PLAIN_NAMED_RE`."""
    n = len(lines)
    common = _match(lines, PLAIN_CALL_RE)
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset:lines.offset + n + 1]
    starts = offsets[:-1].astype(np.int64)
    buf = np.frombuffer(lines.buffers()[2], np.uint8)
    marks = _Marks(buf)
    named = np.zeros(n, bool)
    paren = np.zeros(n, np.int64)
    lead = None
    rest = np.arange(n)
    if common.any():
        same, lead = _plain_leaders(marks, starts, int(np.argmax(common)), common)
        cand = np.flatnonzero(same & ~common)
        named[cand], paren[cand] = _named_calls(marks, lead.ts_end[cand])
        rest = np.flatnonzero(~common & ~same)
    if len(rest):
        named[rest] = _match(lines if len(rest) == n else lines.take(pa.array(rest)),
                             PLAIN_NAMED_RE)
    if not (common.any() or named.any()):
        return None
    apart = rest[named[rest]]                           # named lines not laid out so
    if lead is None:
        _, lead = _plain_leaders(marks, starts, int(apart[0]), named)
    elif len(apart):
        found = _leaders_one_by_one(marks, starts[apart])
        for f in dataclasses.fields(lead):
            getattr(lead, f.name)[apart] = getattr(found, f.name)
    rows = np.flatnonzero(common | named)
    lead = lead.take(rows)
    ts_end, seconds = lead.ts_end, lead.seconds
    paren = paren[rows]
    unknown = np.flatnonzero(paren == 0)
    paren[unknown] = marks.first("(", ts_end[unknown], 40)
    # the regex path names a time past int64 nanoseconds, and reads the calls it looks at
    # (but for the one-message mmsg calls of the plain form)
    regex = seconds > MAX_SECONDS
    mmsg = np.zeros(n, bool)
    at = np.flatnonzero(named[rows])
    if len(at):
        wanted, maybe_mmsg = _call_names(buf, ts_end[at] + 1, paren[at])
        one_message = _plain_mmsg_lines(lines, rows[at], maybe_mmsg)
        mmsg[rows[at[one_message]]] = True
        regex[at] |= wanted & ~one_message
    named &= ~mmsg
    if regex.any():
        common[rows[regex]] = named[rows[regex]] = mmsg[rows[regex]] = False
        rows, paren, lead = rows[~regex], paren[~regex], lead.take(~regex)
    ts = np.zeros(n, np.int64)
    pid = np.full(n, -1, np.int64)
    ts[rows] = lead.seconds * 10**9 + lead.fraction_ns
    pid[rows] = lead.pid
    full_paren = np.zeros(n, np.int64)
    full_paren[rows] = paren
    full_ts_end = np.zeros(n, np.int64)
    full_ts_end[rows] = lead.ts_end
    return _Plain(common, named, mmsg, ts, pid, buf, marks, offsets[1:].astype(np.int64),
                  full_paren, full_ts_end, lines)


@dataclasses.dataclass
class _PlainLeaders:
    """The leaders of plain lines: where their time ends, and their numbers."""

    ts_end: np.ndarray       #: the space after the time
    seconds: np.ndarray      #: the time's whole seconds
    fraction_ns: np.ndarray  #: the time's fraction, ns
    pid: np.ndarray          #: the pid, -1 without one

    def take(self, rows: np.ndarray) -> _PlainLeaders:
        return _PlainLeaders(**{f.name: getattr(self, f.name)[rows]
                                for f in dataclasses.fields(self)})


def _plain_leaders(marks: _Marks, ls: np.ndarray, ref: int, wanted: np.ndarray
                   ) -> tuple[np.ndarray, _PlainLeaders]:
    """Which of the lines starting at ``ls`` are laid out as line ``ref``, a plain line
    (their digits and other bytes of its leader in the same columns: strace pads pids and
    writes times of one width), and the leaders of those, read at its columns, and of the
    ``wanted`` others (:func:`_leaders_one_by_one`); zeros (pid -1) for the rest."""
    n = len(ls)
    # the reference line's parts, as columns of its window
    *parts, has_pid = _leader_parts(marks, ls[ref:ref + 1])
    ts_start, dot, ts_end, pid_start, pid_end = (int(x[0] - ls[ref]) for x in parts)
    window = _window(marks.buf, ls, -(-(ts_end + 1) // 8) * 8)   # whole words
    same = _same_layout(window[:, :ts_end + 1], window[ref, :ts_end + 1])
    at = np.flatnonzero(same)
    if len(at) < n:
        window = window[at]
    out = _PlainLeaders(ts_end=np.zeros(n, np.int64), seconds=np.zeros(n, np.int64),
                        fraction_ns=np.zeros(n, np.int64), pid=np.full(n, -1, np.int64))
    out.ts_end[at] = ls[at] + ts_end
    out.seconds[at] = _columns_number(window, ts_start, dot)
    out.fraction_ns[at] = _columns_number(window, dot + 1, ts_end) * 10 ** (9 - (ts_end - dot - 1))
    if has_pid[0]:
        out.pid[at] = _columns_number(window, pid_start, pid_end)
    other = np.flatnonzero(wanted & ~same)
    if len(other):
        apart = _leaders_one_by_one(marks, ls[other])
        for f in dataclasses.fields(out):
            getattr(out, f.name)[other] = getattr(apart, f.name)
    return same, out


def _named_calls(marks: _Marks, ts_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of the lines whose leader ends at ``ts_end`` (its space) go on with a call as
    :data:`PLAIN_NAMED_RE` has it (``\\w{1,32}\\(``), and where the first "(" after it lies.
    The calls named as the first (its name of up to 7 bytes and "(", compared as one word)
    are; the others are looked at byte by byte."""
    call = ts_end + 1
    named, paren = _named_apart(marks, call[:1])
    if not len(call) or not named[0] or paren[0] - call[0] > 7:
        return _named_apart(marks, call)
    length = int(paren[0] - call[0])
    word = _word_at(marks.buf, call)
    mask = _ALL_BYTES >> np.uint64(64 - 8 * (length + 1))
    same = (word & mask) == (word[0] & mask)
    named, paren = np.ones(len(call), bool), call + length
    other = np.flatnonzero(~same)
    if len(other):
        named[other], paren[other] = _named_apart(marks, call[other])
    return named, paren


def _named_apart(marks: _Marks, call: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_named_calls` for calls starting at ``call``, each looked at byte by byte."""
    paren = marks.first("(", call, 40)
    length = paren - call
    window = _window(marks.buf, call, 32)
    # [0-9A-Za-z_] (a byte below its range wraps past it; | 0x20 makes a capital small)
    word = (((window - np.uint8(ord("0"))) <= 9)
            | (((window | np.uint8(0x20)) - np.uint8(ord("a"))) <= 25) | (window == ord("_")))
    other = ~word & (np.arange(32) < length[:, None])
    return (length >= 1) & (length <= 32) & ~_any_in_row(other), paren


def _is_digit(window: np.ndarray) -> np.ndarray:
    digit: np.ndarray = (window >= ord("0")) & (window <= ord("9"))
    return digit


def _same_layout(window: np.ndarray, row: np.ndarray, digits: bool = True) -> np.ndarray:
    """Which rows of ``window`` have digits where ``row`` has digits and its other bytes
    where it has them (``digits=False``: which equal ``row``). Byte by byte over the whole
    window (a byte below its bound wraps past it), then the rows' flags read eight at a time:
    ``all(axis=1)`` over short rows costs a call per row."""
    digit = _is_digit(row) & digits
    low = np.where(digit, ord("0"), row).astype(np.uint8)
    span = np.where(digit, 9, 0).astype(np.uint8)
    n, width = window.shape
    bad = np.zeros((n, -(-width // 8) * 8), bool)
    np.greater(window - low, span, out=bad[:, :width])
    return ~_any_in_row(bad)


def _any_in_row(hit: np.ndarray) -> np.ndarray:
    """Per row, whether ``hit`` (C-contiguous, its width a multiple of 8) is True anywhere:
    the rows' flags read eight at a time as one word."""
    words = np.ascontiguousarray(hit).view(np.uint64)
    found = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        found |= words[:, k]
    return np.asarray(found != 0)


def _columns_number(window: np.ndarray, start: int, end: int) -> np.ndarray:
    """The decimal digits in the columns ``start:end`` of each row of ``window`` (at most 18),
    as int64: eight columns at a time read as one word (:func:`_word_digits`), from the last
    (the columns before ``start`` in the first word cleared: leading zeros)."""
    words = None
    if window.shape[1] % 8 == 0 and window.flags.c_contiguous:
        words = window.view("<u8")                      # the rows' words, no copy
    value = np.zeros(len(window), np.int64)
    place = 1
    while end > start:
        first = end - 8
        word = _eight_columns(window, words, first)
        if first < start:
            word = word & (_ALL_BYTES << np.uint64(8 * (start - first)))
        value += _word_digits(word) * place
        place *= 10**8
        end = first
    return value


def _eight_columns(window: np.ndarray, words: np.ndarray | None, first: int) -> np.ndarray:
    """The columns ``first:first + 8`` of each row of ``window`` as a word (zero bytes for the
    columns before 0); ``words``: the window's rows as words, when they are."""
    if words is not None and first >= 0:
        k, shift = divmod(first, 8)
        if not shift:
            return words[:, k]
        low = np.uint64(8 * shift)
        word: np.ndarray = (words[:, k] >> low) | (words[:, k + 1] << (np.uint64(64) - low))
        return word
    piece = window[:, max(first, 0):first + 8]
    if first < 0:                                       # padded with zero bytes
        piece = np.concatenate([np.zeros((len(window), -first), np.uint8), piece], axis=1)
    return np.ascontiguousarray(piece).view("<u8")[:, 0]


def _leader_parts(marks: _Marks, ls: np.ndarray) -> tuple[np.ndarray, ...]:
    """Where the parts of the leaders of the plain lines starting at ``ls`` lie: the time's
    first digit, its dot, the space after it; the pid's first digit and the byte after its
    last (both the line's start without a pid); whether there is a pid."""
    buf = marks.buf
    # the time: its dot is the line's first (a pid has none), its digits around it
    dot = marks.first(".", ls, 40)
    ts_start = dot - _digits_before(buf, dot, 11)
    ts_end = dot + 1 + _first_in_row(_window(buf, dot + 1, 10) == ord(" "))
    # the pid: "[pid  N] " (N just before "] ") or "N  " (N up to the first space)
    has_pid = ts_start > ls
    bracket = has_pid & (buf[ls] == ord("["))
    first_space = ls + _first_in_row(_window(buf, ls, 10) == ord(" "))
    pid_end = np.where(has_pid, np.where(bracket, ts_start - 2, first_space), ls)
    pid_len = np.where(bracket, _digits_before(buf, ts_start - 2, 10), pid_end - ls)
    return ts_start, dot, ts_end, pid_end - pid_len, pid_end, has_pid


def _leaders_one_by_one(marks: _Marks, ls: np.ndarray) -> _PlainLeaders:
    """The leaders of the plain lines starting at ``ls``, each found where it lies."""
    buf = marks.buf
    ts_start, dot, ts_end, pid_start, pid_end, has_pid = _leader_parts(marks, ls)
    return _PlainLeaders(
        ts_end=ts_end, seconds=_decimal(buf, ts_start, dot - ts_start),
        fraction_ns=_digits_ns(buf, dot, ts_end),
        pid=np.where(has_pid, _decimal(buf, pid_start, pid_end - pid_start), -1))


def _call_names(buf: np.ndarray, call: np.ndarray, paren: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Which of the calls named between each ``call`` and its ``paren`` are calls the reader
    looks at (:data:`INTERESTING_CALLS`), and which are recvmmsg / sendmmsg: a name of up to
    8 bytes compared as one word (its bytes, zeros after them: a word names one name), the
    longer ones as strings."""
    length = paren - call
    bits = np.minimum(length, 8).astype(np.uint64) << np.uint64(3)
    word = _word_at(buf, call) & (_ALL_BYTES >> (np.uint64(64) - bits))
    short = length <= 8
    wanted = short & _in_sorted(word, _WANTED_WORDS)
    mmsg = short & _in_sorted(word, _MMSG_WORDS)
    long = np.flatnonzero(~short)
    if len(long):
        wanted[long] = pc.is_in(_substrings(buf, call[long], paren[long]),
                                value_set=_WANTED_LONG).to_numpy(zero_copy_only=False)
    return wanted, mmsg


def _in_sorted(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which ``values`` are in the sorted, non-empty ``table``."""
    found: np.ndarray = table[np.minimum(np.searchsorted(table, values), len(table) - 1)] \
        == values
    return found


def _plain_mmsg_lines(lines: pa.Array, at: np.ndarray, named_mmsg: np.ndarray) -> np.ndarray:
    """Which of the ``lines`` at ``at`` (``named_mmsg``: their calls are named recvmmsg /
    sendmmsg) are recvmmsg / sendmmsg calls of the plain form (:data:`PLAIN_MMSG_RE`, one
    ``msg_len=``, no long fd pair)."""
    out = np.zeros(len(at), bool)
    maybe = np.flatnonzero(named_mmsg)
    if len(maybe):
        cand = lines.take(pa.array(at[maybe]))
        form = pc.match_substring_regex(cand, PLAIN_MMSG_RE).to_numpy(zero_copy_only=False)
        # A line of the form has a "msg_len=": as many in all the lines as lines of the form,
        # and each of those has one (a bytes search, not one per line).
        text = cand.buffers()[2]
        one_len = (text is not None and text.to_pybytes().count(b"msg_len=") == form.sum()) \
            or (pc.count_substring(cand, "msg_len=").to_numpy(zero_copy_only=False) == 1)
        out[maybe] = form & one_len & ~pc.match_substring_regex(cand, _LONG_PAIR_RE).to_numpy(
            zero_copy_only=False)
    return out


def _match(lines: pa.Array, pattern: str) -> np.ndarray:
    """Which lines match ``pattern`` (RE2's DFA: no submatches), in parallel slices."""
    n = len(lines)
    if REGEX_THREADS == 1 or n < 20000:
        return pc.match_substring_regex(lines, pattern).to_numpy(zero_copy_only=False)
    step = -(-n // REGEX_THREADS)
    parts = [lines.slice(i, step) for i in range(0, n, step)]
    with concurrent.futures.ThreadPoolExecutor(REGEX_THREADS) as pool:
        found = list(pool.map(lambda a: pc.match_substring_regex(a, pattern), parts))
    return np.concatenate([f.to_numpy(zero_copy_only=False) for f in found])


def _plain_common(p: _Plain, sel: np.ndarray, order: np.ndarray, with_data: bool
                  ) -> Columns:
    """The rows of the plain common calls ``sel`` (line indices in the chunk): what
    :func:`_common_rows` gives for them (their numbers are all in range). The end of the
    line is read backwards (-T time, return value or errno, the ")" closing the arguments),
    the fd forwards from the "(", the string between them."""
    buf, marks = p.buf, p.marks
    n = len(sel)
    line_end = p.stop[sel] - 1                          # the newline
    paren = p.paren[sel]
    call_start = p.ts_end[sel] + 1
    # the fd (1 to 9 digits), then "<" (an annotation) or ", " and the string's '"'
    head = _window(buf, paren + 1, 16)
    fd, fd_digits = _number_at(buf, paren + 1, 10, _columns_word(head, 0))
    fd_end = paren + 1 + fd_digits
    rows = np.arange(n)
    annotated = head[rows, fd_digits] == ord("<")
    quoted = head[rows, fd_digits + 2] == ord('"')
    comma = fd_end.copy()                               # after the annotation: its only ","
    if annotated.any():
        comma[annotated] = marks.first(",", fd_end[annotated], 140)
        quoted[annotated] = buf[comma[annotated] + 2] == ord('"')
    arg = comma + 2
    ann_kind, row_peer = _plain_annotations(buf, annotated, fd_end, comma)
    duration, ret, close, errno = _plain_end(marks, line_end)
    length = paren - call_start
    may_have_address = (length == 6) | (length == 8)    # sendto, recvfrom
    last_quote = np.full(n, -1, np.int64)
    need = np.flatnonzero(quoted)
    last_quote[need] = marks.last('"', close[need], 24)
    # -1 for a line without '"' after its "(": no string, no address
    need = np.flatnonzero(~quoted & may_have_address)
    last_quote[need] = marks.last('"', close[need], 120, after=paren[need])
    # an address (inet_addr("...")}) holds the line's last two quotes
    has_addr = may_have_address.copy()
    if has_addr.any():
        at = np.flatnonzero(has_addr)
        has_addr[at] = (last_quote[at] > paren[at]) & (buf[last_quote[at] + 1] == ord(")")) \
            & (buf[last_quote[at] + 2] == ord("}"))
    close_quote = last_quote
    if has_addr.any():
        at = np.flatnonzero(has_addr)
        close_quote = last_quote.copy()
        peers, close_quote[at] = _plain_addresses(marks, last_quote[at], quoted[at], arg[at],
                                                  close[at])
        found = ~pd.isna(peers)
        row_peer[at[found]] = peers[found]
    # after the string its "..." (when cut), a ", " or the ")"
    dots = quoted & (buf[close_quote + 1] == ord("."))
    if with_data:
        data = np.full(n, b"", dtype=object)
        if quoted.any():
            data[quoted] = _decode_strings(_substrings(buf, arg[quoted] + 1,
                                                       close_quote[quoted]))
    else:
        data = np.full(n, None, dtype=object)
    codes = _PLAIN_CODES[np.minimum(length, 9) * 256 + buf[call_start + 2]]
    return _plain_rows(p, sel, order, codes, duration=duration, fd=fd, ret=ret, errno=errno,
                       nbytes=np.maximum(ret, 0), peer=row_peer, ann_kind=ann_kind, data=data,
                       dots=dots)


#: Bytes read at the end of each plain line (before its newline) in one window: its -T time
#: and the 8 bytes before it, which most often hold the return value and the space before it.
_TAIL = 32


def _plain_end(marks: _Marks, line_end: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The -T time (ns, 0 without), return value, ")" closing the arguments and errno (or
    None) of the plain lines ending at ``line_end`` (their newline). The -T times laid out as
    the first's (:func:`_plain_duration`) and the 8 bytes before them are read in one window
    of the lines' last bytes; the other lines where their "<" lies."""
    buf = marks.buf
    tail = _window(buf, line_end - _TAIL, _TAIL)
    duration = np.zeros(len(line_end), np.int64)
    before = line_end.copy()                            # where the result ends
    word = _columns_word(tail, _TAIL - 8)               # right for the lines without -T
    timed = tail[:, -1] == ord(">")
    elsewhere = timed.copy()                            # lines whose -T time is read apart
    if timed.any():
        first = int(np.argmax(timed))
        # "<" to ">": at most 21 bytes (9 digits, ".", 9 digits)
        width = 21 - int(_last_in_row(tail[first:first + 1, _TAIL - 21:] == ord("<"))[0])
        start = _TAIL - width
        if width <= 21:                                 # (room left for the result's word)
            window = tail[:, start:]
            same = _same_layout(window, window[first])  # (a line without -T has no ">")
            dot = int(np.argmax(window[first] == ord(".")))
            at = np.flatnonzero(same)
            rows = tail[at] if len(at) < len(tail) else tail     # whole words
            dot += start
            duration[at] = (_columns_number(rows, start + 1, dot) * 10**9
                            + _columns_number(rows, dot + 1, _TAIL - 1)
                            * 10 ** (9 - (_TAIL - 2 - dot)))
            before[at] = line_end[at] - width - 1
            word[at] = _eight_columns(rows, rows.view("<u8"), start - 9)
            elsewhere &= ~same
    if elsewhere.any():
        at = np.flatnonzero(elsewhere)
        duration[at], before[at] = _plain_duration(buf, line_end[at])
        word[at] = _word_at(buf, before[at] - 8)
    return (duration, *_plain_result(marks, before, word))


def _plain_addresses(marks: _Marks, last_quote: np.ndarray, quoted: np.ndarray,
                     arg: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The peers (or None) of the recvfrom / sendto calls whose address ends at each
    ``last_quote`` (its ``")}``), and their string's closing quote (for the ``quoted`` ones).
    The addresses written as the first (the same bytes from its "{"): its peer, their opening
    quote where its lies; the others (the text from their string to ``close``) read apart."""
    buf = marks.buf
    first_open = marks.last('"', last_quote[:1], 16)
    start = int(marks.last("{", first_open, 64)[0])
    width = int(last_quote[0]) + 3 - start              # "{" to "}"
    row = _window(buf, np.array([start]), width)[0]
    same = _same_layout(_window(buf, last_quote + 3 - width, width), row, digits=False)
    open_quote = last_quote - int(last_quote[0] - first_open[0])
    other = np.flatnonzero(~same)
    if len(other):
        open_quote[other] = marks.last('"', last_quote[other], 16)
    close_quote = marks.last('"', open_quote, 80)       # the string's (quoted calls)
    peers = np.full(len(last_quote), None, dtype=object)
    peers[same] = _tail_peer(row.tobytes())
    if len(other):
        dots = quoted[other] & (buf[close_quote[other] + 1] == ord("."))
        tail = np.where(quoted[other], close_quote[other] + 1 + 3 * dots, arg[other])
        peers[other] = _per_distinct(_substrings(buf, tail, close[other]), _tail_peer)
    return peers, close_quote


def _plain_result(marks: _Marks, end: np.ndarray, word: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The result ``) = N`` or ``) = -1 ERRNO`` (with its `` (message)`` or not) ending at
    each ``end`` (``word``: its 8 bytes before ``end``): the return value (-1 for an errno),
    where its ")" lies, the errno (None). Read backwards: ``N`` is the only one whose digits
    follow a space (an errno begins with "E"); an errno runs back to a space, after its
    message's "(" when it has one."""
    buf = marks.buf
    value, digits = _number_before(buf, end, 10, word)
    # the byte before the digits: in the word for fewer than 8 digits
    before = (word >> (np.uint64(56) - (np.minimum(digits, 7).astype(np.uint64) << np.uint64(3)))
              ) & np.uint64(0xFF)
    ok = (digits >= 1) & (digits <= 7) & (before == ord(" "))
    long = np.flatnonzero(digits >= 8)
    if len(long):
        ok[long] = (digits[long] <= 9) & (buf[end[long] - digits[long] - 1] == ord(" "))
    ret = np.where(ok, value, -1)
    close = end - digits - 4                            # ") = " before N
    errno = np.full(len(end), None, dtype=object)
    failed = np.flatnonzero(~ok)
    if len(failed):
        # the failures written as the first (its ") = -1 ERRNO (message)" byte for byte)
        first_close, first_errno = _errnos(marks, end[failed[:1]])
        width = int(end[failed[0]] - first_close[0])
        row = _window(buf, first_close, width)[0]
        same = _same_layout(_window(buf, end[failed] - width, width), row, digits=False)
        close[failed[same]] = end[failed[same]] - width
        errno[failed[same]] = first_errno[0]
        other = failed[~same]
        if len(other):
            close[other], errno[other] = _errnos(marks, end[other])
    return ret, close, errno


def _errnos(marks: _Marks, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ")" and the errno (``str``) of the failed results ``) = -1 ERRNO[ (message)]``
    ending at each ``end``: the errno runs back to a space, after its message's "(" when it
    has one."""
    buf = marks.buf
    stop = end.copy()
    message = buf[stop - 1] == ord(")")
    stop[message] = marks.last("(", stop[message], 72) - 1
    start = marks.last(" ", stop, 40) + 1
    return start - 7, _strings(_substrings(buf, start, stop))   # ") = -1 " before the errno


def _strings(values: pa.Array) -> np.ndarray:
    """Binary values (a few distinct ones, such as errnos) as an object array of ``str``, one
    object per distinct value."""
    encoded = pc.dictionary_encode(values)
    words = pc.cast(encoded.dictionary, pa.string()).to_numpy(zero_copy_only=False)
    return words[encoded.indices.to_numpy(zero_copy_only=False)]


def _plain_rows(p: _Plain, sel: np.ndarray, order: np.ndarray, codes: np.ndarray, *,
                duration: np.ndarray, fd: np.ndarray, ret: np.ndarray, errno: np.ndarray,
                nbytes: np.ndarray, peer: np.ndarray, ann_kind: np.ndarray, data: np.ndarray,
                dots: np.ndarray) -> Columns:
    """The columns of the plain lines ``sel`` whose calls are ``codes`` (into
    :data:`SYSCALL_NAMES`): the leader's (time, pid) and the call's, with what each kind of
    call found in its arguments and result."""
    return {
        "order": np.asarray(order, np.int64),
        "entry_ns": p.ts[sel],
        "duration_ns": duration,
        "tod": np.zeros(len(sel), bool),
        "pid": p.pid[sel],
        "fd": fd,
        "syscall": pd.Categorical.from_codes(codes, dtype=_SYSCALL_DTYPE, validate=False),
        "direction": pd.Categorical.from_codes(_DIRECTION_OF[codes], dtype=_DIRECTION_DTYPE,
                                               validate=False),
        "ret": ret,
        "errno": errno,
        "bytes": nbytes,
        "row_peer": peer,
        "ann_kind": ann_kind,
        "data": data,
        "data_truncated": dots,
    }


def _plain_annotations(buf: np.ndarray, annotated: np.ndarray, fd_end: np.ndarray,
                       comma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kind (0 none, 1 socket, 2 not a socket) and -yy peer (or None) of the fd
    annotations between each ``fd_end`` ("<") and ``comma`` (after ">"), as
    :func:`_ann_info` tells them."""
    n = len(annotated)
    kind, peer = np.zeros(n, np.int8), np.full(n, None, dtype=object)
    if annotated.any():
        at = np.flatnonzero(annotated)
        kind[at], peer[at] = _ann_info(_substrings(buf, fd_end[at] + 1, comma[at] - 1))
    return kind, peer


def _plain_duration(buf: np.ndarray, line_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The -T time ending each plain line (before its newline ``line_end``), ns (0 without),
    and where the text before it ends (its space before "<", else the newline). The times
    written as the first (``<0.000011>``: digits and the dot in the same columns) are read at
    its columns, the others where their "<" lies."""
    duration = np.zeros(len(line_end), np.int64)
    before = line_end.copy()
    timed = np.flatnonzero(buf[line_end - 1] == ord(">"))
    if not len(timed):
        return duration, before
    end = line_end[timed]
    lt = end - 21 + _last_in_row(_window(buf, end[:1] - 21, 21) == ord("<"))
    width = int(end[0] - lt[0])                         # "<" to ">"
    window = _window(buf, end - width, width)
    same = _same_layout(window, window[0])
    dot = int(np.argmax(window[0] == ord(".")))
    if not same.all():
        window = window[same]
    duration[timed[same]] = (_columns_number(window, 1, dot) * 10**9
                             + _columns_number(window, dot + 1, width - 1)
                             * 10 ** (9 - (width - 2 - dot)))
    before[timed[same]] = end[same] - width - 1
    other = np.flatnonzero(~same)
    if len(other):
        end = end[other]
        lt = end - 21 + _last_in_row(_window(buf, end - 21, 21) == ord("<"))
        duration[timed[other]] = _seconds(buf, lt + 1, end - 1)
        before[timed[other]] = lt - 1
    return duration, before


def _plain_mmsg(p: _Plain, sel: np.ndarray, order: np.ndarray, with_data: bool) -> Columns:
    """The rows of the plain recvmmsg / sendmmsg lines ``sel`` (line indices in the chunk):
    what :meth:`_Slow._messages` gives for their one message (bytes: its ``msg_len``, peer:
    its ``msg_name``)."""
    buf, marks = p.buf, p.marks
    n = len(sel)
    line_end = p.stop[sel] - 1
    paren = p.paren[sel]
    fd, fd_digits = _number_at(buf, paren + 1, 10)
    name_at = paren + 1 + fd_digits + 2 + len("[{msg_hdr={msg_name=")
    has_addr = buf[name_at] == ord("{")
    open_quote = marks.first('"', name_at)              # the buffer's, or the address's
    addr_end = np.zeros(n, np.int64)
    if has_addr.any():
        addr_end[has_addr] = marks.first('"', open_quote[has_addr] + 1) + 3   # after '")}'
        open_quote[has_addr] = marks.first('"', addr_end[has_addr])
    duration, _, close, _ = _plain_end(marks, line_end)
    length_at = marks.last("=", close, 64) + 1          # msg_len's: no "=" after it
    nbytes, _ = _number_at(buf, length_at, 10)
    close_quote = marks.last('"', length_at, 160)       # the buffer's, then ~100 bytes
    dots = buf[close_quote + 1] == ord(".")             # "..." or ", iov_len="
    peer = np.full(n, None, dtype=object)
    if has_addr.any():
        peer[has_addr] = _per_distinct(_substrings(buf, name_at[has_addr], addr_end[has_addr]),
                                       _tail_peer)
    data = np.full(n, None, dtype=object)
    if with_data:
        data[:] = _decode_strings(_substrings(buf, open_quote + 1, close_quote))
    codes = np.where(buf[paren - 8] == ord("r"), SYSCALL_NAMES.index("recvmmsg"),
                     SYSCALL_NAMES.index("sendmmsg"))
    return _plain_rows(p, sel, order, codes, duration=duration, fd=fd, ret=nbytes,
                       errno=np.full(n, None, dtype=object), nbytes=nbytes, peer=peer,
                       ann_kind=np.zeros(n, np.int8), data=data, dots=dots)


# --------------------------------------------------------------------------------------------
# strace: the sequential parser of the rare lines, and the fd tables

@dataclasses.dataclass
class _Event:
    """A change to which socket an fd names, at line ``order``."""

    order: int
    pid: int
    kind: str          # open (socket/accept), file, peer, close, dup, clone
    fd: int = -1
    fd2: int = -1      # dup target, clone child pid
    peer: str | None = None
    shares_files: bool = False


class _Slow:
    """The lines other than the common form: unfinished/resumed pairs (paired per pid,
    vectorized), then the common call form vectorized again, the rest one by one."""

    def __init__(self, malformed: Malformed) -> None:
        self.malformed = malformed
        #: Calls still unfinished at the end of the last chunk: pid → (line, ts, tod, name, text).
        self.pending: dict[int, tuple[int, int, bool, bytes, bytes]] = {}
        self.events: list[_Event] = []
        self.rows: list[tuple[Any, ...]] = []
        self.frames: list[Columns] = []
        self.orphans = 0

    def feed(self, lines: pa.Array, line_no: np.ndarray, pid: np.ndarray, ts: np.ndarray,
             tod: np.ndarray) -> None:
        """One chunk's lines of interest (with a leader), in line order."""
        resumed = pc.extract_regex(lines, RESUMED_RE)
        is_res = pc.is_valid(resumed).to_numpy(zero_copy_only=False)
        unfinished = pc.extract_regex(lines, UNFINISHED_RE)
        is_unf = pc.is_valid(unfinished).to_numpy(zero_copy_only=False)
        # "<... read resumed>) = ? <unfinished ...>": interrupted again, never completed.
        is_unf &= ~is_res
        plain = ~is_res & ~is_unf

        # Unfinished entries (with those left from the previous chunk) and resumed exits.
        ev = self._call_ends(unfinished.filter(pa.array(is_unf)), np.flatnonzero(is_unf),
                             resumed.filter(pa.array(is_res)), np.flatnonzero(is_res),
                             line_no, pid, ts, tod)
        exits, entries = self._pair(ev)
        # A pair whose resumed part is itself cut ("= ? <unfinished ...>") never completed.
        joined = pc.binary_join_element_wise(ev.text.take(pa.array(entries)),
                                             ev.text.take(pa.array(exits)), b"")
        done = ~pc.match_substring(joined, "<unfinished ...>").to_numpy(zero_copy_only=False)

        # Complete lines of interest and joined pairs: one batch of call texts.
        p_sel = np.flatnonzero(plain)
        bodies = pc.extract_regex(lines.filter(pa.array(plain)), BODY_RE).field("body")
        texts = pa.concat_arrays([bodies, joined.filter(pa.array(done))])
        exits, entries = exits[done], entries[done]
        self._parse(texts,
                    order=np.concatenate([line_no[p_sel], ev.line[exits]]),
                    entry_line=np.concatenate([line_no[p_sel], ev.line[entries]]),
                    pid=np.concatenate([pid[p_sel], ev.pid[exits]]),
                    entry_ns=np.concatenate([ts[p_sel], ev.ts[entries]]),
                    resume_ns=np.concatenate([np.full(len(p_sel), -1, np.int64),
                                              ev.ts[exits]]),
                    tod=np.concatenate([tod[p_sel], ev.tod[exits]]))

    def _call_ends(self, u: pa.StructArray, u_sel: np.ndarray, r: pa.StructArray,
                   r_sel: np.ndarray, line_no: np.ndarray, pid: np.ndarray, ts: np.ndarray,
                   tod: np.ndarray) -> _CallEnds:
        """The calls still pending from the last chunk, then this chunk's unfinished lines
        (``u``, at ``u_sel``), then its resumed lines (``r``, at ``r_sel``)."""
        carry = sorted(self.pending.items())

        def column(values: list[Any], *parts: np.ndarray, dtype: type = np.int64
                   ) -> np.ndarray:
            return np.concatenate([np.array(values, dtype=dtype)]
                                  + [part.astype(dtype) for part in parts])

        ev_pid = column([c[0] for c in carry], pid[u_sel], pid[r_sel])
        n_u = len(carry) + len(u_sel)
        return _CallEnds(
            pid=ev_pid,
            line=column([c[1][0] for c in carry], line_no[u_sel], line_no[r_sel]),
            ts=column([c[1][1] for c in carry], ts[u_sel], ts[r_sel]),
            tod=column([c[1][2] for c in carry], tod[u_sel], tod[r_sel], dtype=bool),
            is_r=np.arange(len(ev_pid)) >= n_u,
            name=pa.concat_arrays([pa.array([c[1][3] for c in carry], pa.binary()),
                                   u.field("name"), r.field("rname")]),
            text=pa.concat_arrays([pa.array([c[1][4] for c in carry], pa.binary()),
                                   u.field("text"), r.field("rest")]))

    def _pair(self, ev: _CallEnds) -> tuple[np.ndarray, np.ndarray]:
        """(exits, entries): the index in ``ev`` of each resumed line paired, and of its
        unfinished line. The resumed lines left unpaired are counted as orphans; the
        unfinished lines still open wait for the next chunk (``pending``)."""
        # strace keeps at most one call in flight per pid: a resumed line pairs with the
        # event just before it for the same pid, which must be that call's unfinished line.
        order = np.lexsort((ev.line, ev.pid))
        s_pid, s_is_r = ev.pid[order], ev.is_r[order]
        prev_same = np.zeros(len(order), bool)
        prev_same[1:] = (s_pid[1:] == s_pid[:-1]) & ~s_is_r[:-1]
        same_name = np.zeros(len(order), bool)
        if len(order) > 1:
            names = ev.name.take(pa.array(order))
            same_name[1:] = pc.equal(names.slice(1), names.slice(0, len(order) - 1)) \
                .to_numpy(zero_copy_only=False)
        paired = s_is_r & prev_same & same_name
        exits = order[paired]                 # event index of each resumed line
        entries = order[np.flatnonzero(paired) - 1]
        # Still pending: an unfinished line that is its pid's last event.
        last_of_pid = np.ones(len(order), bool)
        last_of_pid[:-1] = s_pid[:-1] != s_pid[1:]
        open_calls = order[~s_is_r & last_of_pid]
        orphans = order[s_is_r & ~paired]
        exits, entries, open_calls, orphans = _pair_unprefixed(ev, exits, entries, open_calls,
                                                               orphans)
        self.orphans += len(orphans)
        self.pending = {}
        for k in open_calls:
            self.pending[int(ev.pid[k])] = (int(ev.line[k]), int(ev.ts[k]), bool(ev.tod[k]),
                                            ev.name[int(k)].as_py(), ev.text[int(k)].as_py())
        return exits, entries

    def _parse(self, texts: pa.Array, *, order: np.ndarray, entry_line: np.ndarray,
               pid: np.ndarray, entry_ns: np.ndarray, resume_ns: np.ndarray,
               tod: np.ndarray) -> None:
        """Call texts: the common form vectorized, the others one by one."""
        if not len(texts):
            return
        m = pc.extract_regex(texts, COMMON_CALL_RE)
        ok = pc.is_valid(m).to_numpy(zero_copy_only=False)
        if ok.any():
            self.frames.append(_common_rows(
                m.filter(pa.array(ok)), order=order[ok], ts=entry_ns[ok], tod=tod[ok],
                pid=pid[ok], malformed=self.malformed, resume_ns=resume_ns[ok]))
        rest = np.flatnonzero(~ok)
        for j, text in zip(rest, texts.take(pa.array(rest)).to_pylist(), strict=True):
            self._call(text, int(order[j]), int(entry_line[j]), int(pid[j]), int(entry_ns[j]),
                       None if resume_ns[j] < 0 else int(resume_ns[j]), bool(tod[j]))

    def _call(self, text: bytes, line: int, entry_line: int, pid: int, entry_ns: int,
              resume_ns: int | None, tod: bool) -> None:
        """One call text: an fd event, a row (a row per message of an mmsg call), or a
        malformed line."""
        m = _PY_CALL.match(text)
        if m is None:
            self.malformed.add(line, f"cannot parse socket call {text[:60]!r}")
            return
        name = m.group(1).decode()
        args = m.group(2)
        ret_text = m.group(3)
        if ret_text == b"?":          # never returned (killed, or restarted later)
            return
        ret = int(ret_text)
        big = _big_number(ret, args, m.group(6))
        if big is not None:
            self.malformed.add(line, f"number out of range: {big}")
            return
        errno = m.group(5).decode() if m.group(5) else None
        duration = _duration(m, entry_ns, resume_ns)
        if self._fd_call(name, args, ret, line, entry_line, pid):
            return
        fdm = _PY_FD_ARG.match(args)
        if fdm is None:
            self.malformed.add(line, f"no file descriptor in {name} call")
            return
        fd = int(fdm.group(1))
        ann = fdm.group(2)
        rest = args[fdm.end():]
        if name in ("dup", "dup2", "dup3"):
            if ret >= 0:
                self.events.append(_Event(line, pid, "dup", fd, ret))
            return
        peer = None
        addr = _PY_SOCKADDR.search(rest)
        if addr is not None:
            peer = _sockaddr_peer(addr)
            if peer is None:
                self.malformed.add(line, f"{name}: address not ASCII text or port past 65535")
                return
        moved = self._data(name, rest, line)
        if moved is None:
            return
        direction, data, truncated = moved
        self._socket_event(name, line, pid, fd, ret, peer, m.group(4), errno)
        kind = _ann_kind(ann)
        row_peer = peer
        if row_peer is None and kind == 1:
            row_peer = _ann_peer(ann)
        if name in MMSG_CALLS and ret > 0:
            self._messages(line, entry_ns, duration, tod, pid, fd, name, direction, ret, rest,
                           row_peer, kind)
            return
        nbytes = ret if (direction is not None and ret > 0) else 0
        self.rows.append((line, entry_ns, duration, tod, pid, fd, name, direction, ret, errno,
                          nbytes, row_peer, kind, data, truncated))

    def _fd_call(self, name: str, args: bytes, ret: int, line: int, entry_line: int,
                 pid: int) -> bool:
        """A call that creates fds or a process (clone, pipe, socket, open, ...): its events;
        False for the other calls."""
        if name in ("clone", "clone3", "fork", "vfork"):
            if ret > 0:
                self.events.append(_Event(entry_line, pid, "clone", fd2=ret, shares_files=bool(
                    _PY_CLONE_CHILD_FILES.search(args))))
            return True
        if name in ("pipe", "pipe2", "socketpair"):
            pair = _PY_FD_PAIR.search(args)
            if ret == 0 and pair is not None:
                kind = "open" if name == "socketpair" else "file"
                for fd in (int(pair.group(1)), int(pair.group(2))):
                    self.events.append(_Event(line, pid, kind, fd))
            return True
        if name in NON_SOCKET_CALLS or name == "socket":
            if ret >= 0:
                self.events.append(_Event(line, pid, "open" if name == "socket" else "file",
                                          ret))
            return True
        return False

    def _data(self, name: str, rest: bytes, line: int
              ) -> tuple[str | None, bytes, bool] | None:
        """(direction, data, cut) of a call (None, b"", False for a call without data);
        None when its string is unterminated (reported)."""
        if name not in READ_CALLS and name not in WRITE_CALLS:
            return None, b"", False
        direction = "rx" if name in READ_CALLS else "tx"
        if name in ("readv", "writev", "recvmsg", "sendmsg"):
            pieces = _PY_IOV.findall(rest)
            data = b"".join(decode_strace_string(p) for p, _ in pieces)
            return direction, data, any(cut for _, cut in pieces) or b"}, ...]" in rest
        q = _PY_QSTR.match(rest)
        if q is None and rest.startswith(b'"'):
            self.malformed.add(line, f"unterminated string in {name} call")
            return None
        if q is not None:
            return direction, decode_strace_string(q.group(1)), q.group(2) is not None
        return direction, b"", False

    def _socket_event(self, name: str, line: int, pid: int, fd: int, ret: int,
                      peer: str | None, ret_ann: bytes | None, errno: str | None) -> None:
        """What close, accept and connect change: the fd ends, a new socket with its peer,
        the socket's peer."""
        if name == "close":
            self.events.append(_Event(line, pid, "close", fd))
        elif name in ("accept", "accept4"):
            if ret >= 0:
                self.events.append(_Event(line, pid, "open", ret,
                                          peer=peer or _ann_peer(ret_ann)))
        elif name == "connect" and peer is not None and errno in (
                None, "EINPROGRESS", "EALREADY", "EINTR"):
            self.events.append(_Event(line, pid, "peer", fd, peer=peer))

    def _messages(self, line: int, entry_ns: int, duration: int, tod: bool, pid: int, fd: int,
                  name: str, direction: str | None, ret: int, rest: bytes,
                  peer: str | None, kind: int) -> None:
        """One row per datagram a recvmmsg/sendmmsg moved (``ret`` of them): its bytes are
        its ``msg_len``, its data its ``iov_base`` strings, its peer its ``msg_name``."""
        for hdr, length in _PY_MMSG.findall(rest)[:ret]:
            pieces = _PY_IOV.findall(hdr)
            data = b"".join(decode_strace_string(p) for p, _ in pieces)
            truncated = any(cut for _, cut in pieces)
            addr = _PY_SOCKADDR.search(hdr)
            nbytes = int(length)
            self.rows.append((line, entry_ns, duration, tod, pid, fd, name, direction, nbytes,
                              None, nbytes, _sockaddr_peer(addr) if addr else peer, kind, data,
                              truncated))


@dataclasses.dataclass
class _CallEnds:
    """The two ends of calls strace split over two lines, one entry each: the calls pending
    from the last chunk, then a chunk's ``<unfinished ...>`` lines, then its ``<... resumed>``
    lines."""

    pid: np.ndarray
    line: np.ndarray     #: the line number
    ts: np.ndarray       #: the line's timestamp, ns
    tod: np.ndarray      #: the timestamp is a time of day
    is_r: np.ndarray     #: a resumed line (else an unfinished one)
    name: pa.Array       #: the call's name
    text: pa.Array       #: the call's text before the unfinished marker / after the resumed one


def _pair_unprefixed(ev: _CallEnds, exits: np.ndarray, entries: np.ndarray,
                     open_calls: np.ndarray, orphans: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """strace -f on stderr prefixes pids only once a second process exists: the call that
    creates it (clone) starts on an unprefixed line and resumes on a "[pid N]" one. Each
    unprefixed call left open is paired with the first later orphan of the same name."""
    for k in open_calls[ev.pid[open_calls] == -1]:
        later = orphans[(ev.line[orphans] > ev.line[k])]
        later = later[[ev.name[int(j)].as_py() == ev.name[int(k)].as_py() for j in later]]
        if len(later):
            j = later[np.argmin(ev.line[later])]
            exits, entries = np.append(exits, j), np.append(entries, k)
            open_calls, orphans = open_calls[open_calls != k], orphans[orphans != j]
    return exits, entries, open_calls, orphans


def _duration(m: re.Match[bytes], entry_ns: int, resume_ns: int | None) -> int:
    """A call's duration, ns: its -T time, else the time to its resumed line, else 0."""
    if m.group(6) is not None:
        return int(m.group(6)) * 10**9 + int(m.group(7).ljust(9, b"0")[:9])
    if resume_ns is not None:
        return max(resume_ns - entry_ns, 0)
    return 0


_PY_LEADING_NUMBER = re.compile(rb"^\d+")


def _big_number(ret: int, args: bytes, seconds: bytes | None) -> str | None:
    """What is out of range in a call the sequential parser reads: its return value, the fds
    it names (first argument, a pipe/socketpair pair) or its -T seconds; None when all are in
    range. (Other arguments, such as a pread64 offset, are not read.)"""
    if not -MAX_RET - 1 <= ret <= MAX_RET:
        return f"return value past {MAX_RET}"
    lead = _PY_LEADING_NUMBER.match(args)
    pair = _PY_FD_PAIR.search(args)
    fds = ([lead.group()] if lead else []) + (list(pair.groups()) if pair else [])
    if any(len(fd) > 10 or int(fd) > MAX_FD for fd in fds):
        return f"file descriptor past {MAX_FD}"
    if seconds is not None and (len(seconds) > 18 or int(seconds) > MAX_SECONDS):
        return "-T duration past int64 nanoseconds"
    return None


def _sockaddr_peer(m: re.Match[bytes]) -> str | None:
    """``ip:port`` (IPv4) or ``[ip]:port`` (IPv6) of a SOCKADDR match; None when the address
    is not ASCII text or the port not a 16-bit number (a damaged line, not an address)."""
    ip, port = (m.group("ip4"), m.group("port4")) if m.group("ip4") is not None else \
        (m.group("ip6"), m.group("port6"))
    if not ip.isascii() or len(port) > 5 or int(port) > 0xFFFF:
        return None
    return f"{ip.decode()}:{int(port)}" if m.group("ip4") is not None else \
        f"[{ip.decode()}]:{int(port)}"


class _FdTables:
    """Per-process fd tables (shared by ``CLONE_FILES`` children, copied by ``fork``) as the
    fd events change them, each (table, fd) → socket id change recorded with its line; the
    socket ids with their peer and whether they are files."""

    def __init__(self) -> None:
        self.table_of: dict[int, int] = {}          # pid → fd table id (unknown pids: table 0)
        self.current: dict[int, dict[int, int]] = {0: {}}
        self.sock_peer: dict[int, str | None] = {}
        self.sock_file: dict[int, bool] = {}
        self.records: list[tuple[int, int, int, int]] = []    # (order, table, fd, socket id)
        self.next_id = 0
        self.initial: dict[int, int] = {}   # fd → id of the socket open before the trace

    def new_socket(self, peer: str | None = None, is_file: bool = False) -> int:
        sid = self.next_id
        self.next_id += 1
        self.sock_peer[sid] = peer
        self.sock_file[sid] = is_file
        return sid

    def lookup(self, table: int, fd: int) -> int:
        """The socket an fd names in a table (one open before the trace if none)."""
        sid = self.current[table].get(fd)
        if sid is None:
            if fd not in self.initial:
                self.initial[fd] = self.new_socket()
            sid = self.initial[fd]
        return sid

    def replay(self, ev: _Event) -> None:
        """One fd event."""
        table = self.table_of.get(ev.pid, 0)
        fds = self.current[table]
        if ev.kind == "clone":
            if ev.shares_files:
                self.table_of[ev.fd2] = table
            else:
                child = len(self.current)
                self.current[child] = dict(fds)
                self.table_of[ev.fd2] = child
                self.records.extend((ev.order, child, fd, sid) for fd, sid in fds.items())
            return
        if ev.kind in ("open", "file"):
            sid = self.new_socket(ev.peer, ev.kind == "file")
        elif ev.kind == "close":
            sid = self.new_socket()        # a later use without open: a socket we did not see
        elif ev.kind == "dup":
            sid = self.lookup(table, ev.fd)
            fds[ev.fd2] = sid
            self.records.append((ev.order, table, ev.fd2, sid))
            return
        else:                              # peer (connect)
            sid = self.lookup(table, ev.fd)
            self.sock_peer[sid] = ev.peer
            if ev.fd not in fds:
                fds[ev.fd] = sid
                self.records.append((ev.order, table, ev.fd, sid))
            return
        fds[ev.fd] = sid
        self.records.append((ev.order, table, ev.fd, sid))

    def socket_ids(self, order: np.ndarray, pids: np.ndarray, fds_of_rows: np.ndarray
                   ) -> np.ndarray:
        """Each row's socket id: the id in force for its (table, fd) just before its line
        (``merge_asof``); an fd never opened in the trace, one socket per fd number."""
        n = len(order)
        tables = np.zeros(n, np.int64)
        if self.table_of:
            tables = pd.Series(pids).map(self.table_of).fillna(0).to_numpy(np.int64)
        sid = np.full(n, -1, np.int64)
        if self.records:
            sid = _last_record_before(np.array(self.records, np.int64), order, tables,
                                      np.asarray(fds_of_rows, np.int64))
        missing = sid < 0
        if missing.any():
            # fds never opened in the trace: one socket per fd number (before any close).
            fds_missing = np.asarray(fds_of_rows)[missing]
            for fd in np.unique(fds_missing):
                if int(fd) not in self.initial:
                    self.initial[int(fd)] = self.new_socket()
            sid[missing] = pd.Series(fds_missing).map(self.initial).to_numpy(np.int64)
        return sid


def _last_record_before(records: np.ndarray, order: np.ndarray, tables: np.ndarray,
                        fds: np.ndarray) -> np.ndarray:
    """For each row (its line ``order``, fd table and fd), the socket id of the last record
    (``order, table, fd, socket id``) of the same table and fd at an earlier line (the last
    listed of those at one line), -1 when there is none: ``merge_asof`` by (table, fd),
    exact matches not allowed, as one ``searchsorted`` over (table and fd, line) keys."""
    r_order, r_table, r_fd, r_sid = records.T
    span = int(max(r_fd.max(), fds.max(initial=0))) + 2
    r_key, key = r_table * span + r_fd + 1, tables * span + fds + 1
    keys = np.unique(r_key)
    rank = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    known = keys[rank] == key
    lines = int(max(r_order.max(), order.max(initial=0))) + 2
    r_at = np.searchsorted(keys, r_key) * lines + r_order
    by_at = np.argsort(r_at, kind="stable")
    at = r_at[by_at]
    base = rank * lines                                 # where the key's records begin
    pos = np.searchsorted(at, base + order, side="left") - 1
    found = known & (pos >= 0) & (at[np.maximum(pos, 0)] >= base)
    return np.where(found, r_sid[by_at][np.maximum(pos, 0)], -1)


def _row_peers(row_peer: np.ndarray, peer_of: np.ndarray, stream: np.ndarray
               ) -> pd.Categorical:
    """Each row's peer: its own (``row_peer``, an object array, None without), else its
    socket's (``peer_of[stream]``), as codes into the distinct peers (no object per row)."""
    own = np.flatnonzero(~pd.isna(row_peer))
    own_codes, own_peers = pd.factorize(row_peer[own])
    socket_codes, socket_peers = pd.factorize(peer_of, use_na_sentinel=True)
    peers = pd.Index(np.concatenate([np.asarray(own_peers, object),
                                     np.asarray(socket_peers, object)]))
    # one code per distinct peer, whichever list gave it
    unique_codes, distinct = pd.factorize(peers)
    code_of = np.append(unique_codes, -1)               # the last: no peer
    codes = code_of[np.where(socket_codes >= 0, len(own_peers) + socket_codes, -1)][stream]
    codes[own] = code_of[own_codes]
    return pd.Categorical.from_codes(codes, categories=pd.Index(distinct, dtype=object))


def _assign_streams(order: np.ndarray, pids: np.ndarray, fds_of_rows: np.ndarray,
                    events: list[_Event]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Socket identity per row, each socket's peer (by id), and whether the row's fd is known
    not to be a socket.

    Replays the fd-changing events in line order over per-process fd tables (shared by
    ``CLONE_FILES`` children, copied by ``fork``), recording each (table, fd) → socket id
    change; each row (completion line ``order``) then takes the id in force just before its
    line (``merge_asof``).
    An fd used with nothing known about it gets an id of its own per table lineage.
    """
    fd_tables = _FdTables()
    for ev in sorted(events, key=lambda e: e.order):
        fd_tables.replay(ev)
    sid = fd_tables.socket_ids(order, pids, fds_of_rows)
    count = fd_tables.next_id
    peer_of = np.array([fd_tables.sock_peer.get(i) for i in range(count)] + [None],
                       dtype=object)
    file_of = np.array([fd_tables.sock_file.get(i, False) for i in range(count)] + [False],
                       dtype=bool)
    return sid, peer_of, file_of[sid]


# --------------------------------------------------------------------------------------------
# strace: the reader

#: The calls the reader looks at, as the regex path names them.
_WANTED_NAMES = pa.array(sorted(INTERESTING_CALLS))


def _read_strace(path: str | os.PathLike[str],
                 on_progress: Callable[[int, int], None] | None,
                 with_data: bool = True) -> pd.DataFrame:
    """The strace reader: chunks of lines → rows; then streams, peers, the finished table."""
    reader = _Reader(path, with_data)
    for first, lines, ends_newline in _iter_chunks(path, on_progress):
        if not ends_newline:
            # strace ends every line with a newline: a last line without one was cut.
            cut_line = first + len(lines) - 1
            lines = lines.slice(0, len(lines) - 1)
            warn(TruncatedInput(
                f"{path}: line {cut_line}: file ends in the middle of a line (cut); "
                "the partial line was dropped"), stacklevel=3)
        if len(lines):
            reader.chunk(_sort_lines(first, lines, reader.malformed))
        del lines   # the chunk's buffer free for the next one
    return reader.table()


@dataclasses.dataclass
class _Chunk:
    """One chunk's lines as the reader sorts them (arrays over the chunk's lines)."""

    first: int               #: the first line's number in the file
    lines: pa.Array
    plain: _Plain | None     #: the plain lines, cut at byte positions (None: there are none)
    has_leader: np.ndarray   #: the line begins with a leader (pid prefix and timestamp) ...
    known: np.ndarray        #: ... followed by a call, a resumed call, a signal or an exit
    idx1: np.ndarray         #: the lines of the common call form, by the regex
    idx2: np.ndarray         #: the regex's other lines with a leader
    m1: pa.StructArray       #: LINE_RE's groups of the ``idx1`` lines
    m2: pa.StructArray       #: LINE_RE's groups of the ``idx2`` lines
    ts: np.ndarray           #: each leader's timestamp, ns (a time of day not yet unwrapped)
    tod: np.ndarray          #: the timestamp is a time of day (-tt)
    pid: np.ndarray          #: the pid prefix, -1 without one
    good: np.ndarray         #: the leader is well formed (the lines the reader takes)
    big: np.ndarray          #: a number of the leader is out of range (already reported)


def _sort_lines(first: int, lines: pa.Array, malformed: Malformed) -> _Chunk:
    """The plain lines are cut at byte positions; one regex pass over the others: the leader,
    then the common complete read/write call or the call's name."""
    n = len(lines)
    plain = _plain(lines)
    rest = np.arange(n) if plain is None else np.flatnonzero(~plain.any)
    m = _extract(lines if plain is None else lines.take(pa.array(rest)), LINE_RE)
    valid = pc.is_valid(m).to_numpy(zero_copy_only=False)
    called = valid & pc.is_valid(_field(m, "call")).to_numpy(zero_copy_only=False)
    has_leader, ok1, ok2 = (np.zeros(n, bool) for _ in range(3))
    has_leader[rest], ok1[rest], ok2[rest] = valid, called, valid & ~called
    # After a leader strace writes a call, a resumed call, a signal or an exit: else junk.
    known = ok1.copy()
    for group in ("rname", "name", "event"):
        known[rest] |= pc.is_valid(_field(m, group)).to_numpy(zero_copy_only=False)
    if plain is not None:
        has_leader |= plain.any
        known |= plain.any
    idx1, idx2 = np.flatnonzero(ok1), np.flatnonzero(ok2)
    m1v, m2v = m.filter(pa.array(called)), m.filter(pa.array(valid & ~called))
    ts, tod, pid, good, big = _leader_times(first, n, plain, m, rest, valid, malformed)
    return _Chunk(first, lines, plain, has_leader, known, idx1, idx2, m1v, m2v,
                  ts, tod, pid, good, big)


def _leader_times(first: int, n: int, plain: _Plain | None, m: pa.StructArray,
                  rest: np.ndarray, valid: np.ndarray, malformed: Malformed
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps, time-of-day flags, pids, well-formedness and out-of-range numbers of the
    ``n`` lines (those with a leader), in line order (for midnight crossings); the numbers out
    of range reported. ``m``: LINE_RE over the lines ``rest`` (``valid``: it matched)."""
    ts = np.zeros(n, np.int64)
    tod = np.zeros(n, bool)
    pid = np.full(n, -1, np.int64)
    good = np.zeros(n, bool)
    sel = rest[valid]
    big = np.zeros(n, bool)
    if plain is not None:
        at = np.flatnonzero(plain.any)
        ts[at], pid[at], good[at] = plain.ts[at], plain.pid[at], True
    if len(sel):
        lead = _leader(m.filter(pa.array(valid)))
        ts[sel], tod[sel], pid[sel], good[sel] = lead.ts, lead.tod, lead.pid, lead.ok
        malformed.add_lines(sel[lead.big_pid] + first,
                            f"number out of range: pid past {MAX_PID}")
        malformed.add_lines(sel[lead.big_ts & ~lead.big_pid] + first,
                            "number out of range: timestamp past int64 nanoseconds")
        big[sel] = lead.big_pid | lead.big_ts
    return ts, tod, pid, good, big


class _Reader:
    """The strace reader's state over a file's chunks: the rows so far, the sequential parser
    of the rare lines, the malformed lines, the file's time style and midnight crossings."""

    def __init__(self, path: str | os.PathLike[str], with_data: bool) -> None:
        self.path = path
        self.with_data = with_data
        self.malformed = Malformed(path)
        self.slow = _Slow(self.malformed)
        self.rows = _Rows()
        self.style_tod: bool | None = None  # the file's time style, from its first timestamp
        self.prev_tod: int | None = None    # last time of day seen (ns), for midnight crossings
        self.prev_epoch: int | None = None  # last epoch time seen (ns), for damaged-line checks
        self.day_ns = 0
        self.untimed = 0   # first line that looks like strace without a timestamp

    def chunk(self, c: _Chunk) -> None:
        """One chunk's lines: their leaders judged, then their rows (in this order, which is
        the order their malformed lines are reported in)."""
        self._judge_leaders(c)
        if not self.style_tod and c.good.any():
            self._stray_epochs(c)
        if self.style_tod and c.good.any():
            self._unwrap_midnights(c)
        self._common_calls(c)
        self._without_leader(c)
        self._other_calls(c)

    def _judge_leaders(self, c: _Chunk) -> None:
        """The file's time style from its first timestamp; a line with a timestamp not
        understood, of the other style, or without a call after it is malformed."""
        first, good = c.first, c.good
        if self.style_tod is None and good.any():
            self.style_tod = bool(c.tod[np.flatnonzero(good)[0]])
        self.malformed.add_lines(np.flatnonzero(c.has_leader & ~good & ~c.big) + first,
                                 "timestamp not understood")
        other_style = good & (c.tod != self.style_tod)
        self.malformed.add_lines(np.flatnonzero(other_style) + first,
                                 "mixes -tt times of day and -ttt epoch times")
        good &= ~other_style
        junk = good & ~c.known
        self.malformed.add_lines(np.flatnonzero(junk) + first,
                                 "no system call after the timestamp")
        good &= c.known

    def _stray_epochs(self, c: _Chunk) -> None:
        """An epoch time more than a day away from both neighbours is damage (a cut line's
        remainder read as a timestamp), not a gap in the trace."""
        sel = np.flatnonzero(c.good)
        t = c.ts[sel]
        before = np.concatenate(([t[0] if self.prev_epoch is None else self.prev_epoch],
                                 t[:-1]))
        after = np.concatenate((t[1:], t[-1:]))
        stray = (np.abs(t - before) > NS_PER_DAY) & (np.abs(after - t) > NS_PER_DAY)
        self.malformed.add_lines(sel[stray] + c.first,
                                 "timestamp out of sequence (damaged line?)")
        c.good[sel[stray]] = False
        if (~stray).any():
            self.prev_epoch = int(t[~stray][-1])

    def _unwrap_midnights(self, c: _Chunk) -> None:
        """Times of day as times since 1970-01-01: a time going back by more than
        MIDNIGHT_JUMP_NS crossed midnight."""
        sel = np.flatnonzero(c.good)
        t = c.ts[sel]
        prev = np.concatenate(([t[0] if self.prev_tod is None else self.prev_tod], t[:-1]))
        wraps = np.cumsum(t < prev - MIDNIGHT_JUMP_NS)
        c.ts[sel] = t + self.day_ns + wraps * NS_PER_DAY
        self.day_ns += int(wraps[-1]) * NS_PER_DAY
        self.prev_tod = int(t[-1])

    def _common_calls(self, c: _Chunk) -> None:
        """The rows of the common call form: the plain lines', then the regex's."""
        good = c.good
        if c.plain is not None and (c.plain.common & good).any():
            sel = np.flatnonzero(c.plain.common & good)
            self.rows.add(_plain_common(c.plain, sel, sel + c.first, self.with_data))
        if c.plain is not None and (c.plain.mmsg & good).any():
            sel = np.flatnonzero(c.plain.mmsg & good)
            self.rows.add(_plain_mmsg(c.plain, sel, sel + c.first, self.with_data))
        keep1 = good[c.idx1]
        if keep1.any():
            sel = c.idx1[keep1]
            self.rows.add(_common_rows(c.m1.filter(pa.array(keep1)), order=sel + c.first,
                                       with_data=self.with_data, malformed=self.malformed,
                                       ts=c.ts[sel], tod=c.tod[sel], pid=c.pid[sel]))

    def _without_leader(self, c: _Chunk) -> None:
        """Lines without a leader: blank, strace's own, or malformed."""
        no_leader = np.flatnonzero(~c.has_leader)
        if not len(no_leader):
            return
        for i, raw in zip(no_leader, c.lines.take(pa.array(no_leader)).to_pylist(),
                          strict=True):
            text = raw.rstrip(b"\r\n")
            if not self.untimed and _PY_NO_TIMESTAMP.match(text):
                self.untimed = c.first + int(i)
            if text.strip() and not text.startswith(_SKIP_PREFIXES):
                self.malformed.add(c.first + int(i), "not an strace line (expected a -tt/-ttt "
                                                     "timestamp and a system call)")

    def _other_calls(self, c: _Chunk) -> None:
        """Other leader lines: calls of interest go to the sequential parser, others are
        skipped."""
        if not len(c.idx2):
            return
        name = pc.coalesce(_field(c.m2, "rname"), _field(c.m2, "name"))
        wanted = pc.fill_null(pc.is_in(pc.cast(name, pa.string()), value_set=_WANTED_NAMES),
                              False).to_numpy(zero_copy_only=False) & c.good[c.idx2]
        sel = c.idx2[wanted]
        if len(sel):
            self.slow.feed(c.lines.take(pa.array(sel)), sel + c.first, c.pid[sel], c.ts[sel],
                           c.tod[sel])

    def table(self) -> pd.DataFrame:
        """The finished table: every row with its stream and peer, the calls on fds known not
        to be sockets dropped; the malformed lines said (or no row: an ``InputError``)."""
        slow = self.slow
        for part in slow.frames:
            self.rows.add(part)
        self.rows.add(_python_rows(slow.rows))
        slow.frames, slow.rows = [], []
        table = self.rows.columns(skip=() if self.with_data else ("data",))
        if not len(table["order"]):
            raise self._nothing_read()
        self.malformed.warn(stacklevel=4)
        self._pid_from_file_name(table)
        keep = _add_streams(table, slow.events)
        for name in ("order", "tod", "row_peer", "ann_kind"):   # not the table's: freed now
            del table[name]
        durations = bool((table["duration_ns"] > 0).any())
        return finish_table(table, fmt="strace", time_of_day_only=bool(self.style_tod),
                            select=keep, consume=True,
                            extra_attrs={"durations": durations, "orphan_resumed": slow.orphans,
                                         "unfinished_at_end": len(slow.pending)})

    def _nothing_read(self) -> InputError:
        """Why the file gave no socket call: no timestamps, its first malformed line, or no
        call of interest."""
        malformed = self.malformed
        first_bad = min((line for line, _ in malformed.lines), default=1)
        if self.untimed:
            return InputError(self.path, "strace output without timestamps: record it with "
                                         "strace -f -ttt -T", line=self.untimed)
        if malformed.lines:
            line, problem = min(malformed.lines)
            return InputError(self.path, f"no socket call could be read: {problem}", line=line)
        return InputError(self.path, "no socket call found (expected strace -f -ttt -T output, "
                                     "or a CSV/JSON Lines log with ts and bytes)", line=first_bad)

    def _pid_from_file_name(self, table: Columns) -> None:
        """pid: from the prefix; -ff -o files (``name.1234``) carry it in the file name
        instead."""
        suffix = Path(self.path).suffix.lstrip(".")
        if (table["pid"] < 0).all() and suffix.isdigit():
            table["pid"] = np.full(len(table["pid"]), int(suffix), np.int64)
            for ev in self.slow.events:
                ev.pid = int(suffix)


def _add_streams(table: Columns, events: list[_Event]) -> np.ndarray:
    """Each row's ``stream`` and ``peer`` (the row's own, else its socket's), from the fd
    events replayed in completion order; returns the rows to keep in completion order: calls
    on fds known not to be sockets (opened files, pipes; -y annotations) are dropped."""
    # Completion order: line order (rows of the sequential parser were appended at the end).
    n = len(table["order"])
    order = table["order"]
    comp = np.argsort(order, kind="stable")
    sid, peer_of, is_file = _assign_streams(order[comp], table["pid"][comp],
                                            table["fd"][comp], events)
    stream = np.empty(n, np.int64)
    stream[comp] = sid
    table["stream"] = stream
    table["peer"] = _row_peers(table["row_peer"], peer_of, stream)
    keep: np.ndarray = comp[~is_file & (table["ann_kind"][comp] != 2)]
    return keep
