"""Request and response headers recognized in the first payload bytes of a segment.

A capture holds no message boundaries; the application protocol does, in its headers. Where
recognizing them is cheap (a fixed token at the start of a segment), a conversation's
messages are cut there, so pipelined requests on one connection (HTTP/1.1, memcached, Redis)
become separate exchanges and a request split over segments stays one. Everything is a
vectorized comparison over an (n, N) byte array (``packets.read_packets(payload_head=N)``).

Rules, by the name a conversation reports (:data:`RULES`):

* ``http``: requests start with a method token (``GET ``, ``POST `` …), responses with
  ``HTTP/1.``;
* ``dns``: to or from port 53 (TCP: after the 2-byte length); QR bit 0 = query, 1 = response;
  paired by transaction id, not by order;
* ``memcached``: text protocol commands (``get ``, ``set `` …, meta ``mg ``) and replies
  (``VALUE ``, ``STORED`` …, meta ``HD`` …);
* ``memcached-binary``: magic 0x80 (request) / 0x81 (response), data type 0; paired by the
  opaque field;
* ``redis``: RESP requests are arrays of bulk strings (``*N\\r\\n$``), replies start with one of
  ``+ - : $ *``;
* ``tls``: a TLS record header (content type 20–23, version 3.x); TLS hides requests and
  responses, so a message is a turn of records in one direction;
* ``direction``: no header recognized: a message is a run of segments in one direction.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: The rules a conversation may be cut by, most specific first (ties go to the first).
RULES: tuple[str, ...] = ("dns", "memcached-binary", "http", "redis", "memcached", "tls",
                          "direction")
#: Payload bytes the recognizers need (``read_packets(payload_head=HEAD_BYTES)``).
HEAD_BYTES = 16
DNS_PORT = 53
#: Rules whose requests and responses are paired by a key in the header, not by order.
KEYED: frozenset[str] = frozenset({"dns", "memcached-binary"})

_HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                 b"CONNECT ", b"TRACE ")
_HTTP_RESPONSE = (b"HTTP/1.",)
_MEMCACHED_COMMANDS = (b"get ", b"gets ", b"set ", b"add ", b"replace ", b"append ",
                       b"prepend ", b"cas ", b"delete ", b"incr ", b"decr ", b"touch ",
                       b"gat ", b"gats ", b"stats", b"version", b"flush_all", b"verbosity ",
                       b"mg ", b"ms ", b"md ", b"ma ", b"mn\r\n")
_MEMCACHED_REPLIES = (b"VALUE ", b"END\r\n", b"STORED\r\n", b"NOT_STORED\r\n", b"EXISTS\r\n",
                      b"NOT_FOUND\r\n", b"DELETED\r\n", b"TOUCHED\r\n", b"OK\r\n",
                      b"ERROR", b"CLIENT_ERROR ", b"SERVER_ERROR ", b"STAT ", b"VERSION ",
                      b"HD", b"VA ", b"EN\r\n", b"NF\r\n", b"NS\r\n", b"EX\r\n", b"MN\r\n")
_REDIS_REPLY_FIRST = b"+-:$*"
_TLS_CONTENT_TYPES = (20, 21, 22, 23)
_MEMCACHED_MAGIC_REQUEST, _MEMCACHED_MAGIC_RESPONSE = 0x80, 0x81


@dataclasses.dataclass
class Marks:
    """Per segment and rule: does the segment begin a request, a response (its key)."""

    request: dict[str, np.ndarray]
    """rule -> bool per segment: the payload begins with that rule's request header."""
    response: dict[str, np.ndarray]
    """rule -> bool per segment: … with a response header."""
    key: dict[str, np.ndarray]
    """rule -> int64 per segment: the pairing key (keyed rules only)."""


def _starts_with(head: np.ndarray, length: np.ndarray, tokens: tuple[bytes, ...],
                 at: int = 0) -> np.ndarray:
    """Segments whose payload holds one of ``tokens`` at byte ``at`` (captured whole)."""
    out = np.zeros(head.shape[0], dtype=bool)
    # only rows whose first byte starts some token are compared further (most are not): a
    # table of the 256 byte values says which
    starts = np.zeros(256, dtype=bool)
    starts[np.frombuffer(bytes({t[0] for t in tokens}), dtype=np.uint8)] = True
    rows = (np.flatnonzero(starts[head[:, at]]) if at < head.shape[1]
            else np.zeros(0, dtype=np.intp))
    if len(rows) == 0:
        return out
    sub, sub_len = head[rows], length[rows]
    hit = np.zeros(len(rows), dtype=bool)
    words = _words(sub, at)
    for token in tokens:
        end = at + len(token)
        if end > head.shape[1]:
            continue
        # its first 8 bytes, and only those, equal: one integer comparison; a longer token's
        # other bytes compared on the rows where those are
        want, mask = _word(token[:_WORD])
        match = (words & mask) == want
        if len(token) > _WORD:
            cand = np.flatnonzero(match)
            match[cand] = (sub[cand, at + _WORD:end]
                           == np.frombuffer(token[_WORD:], dtype=np.uint8)).all(axis=1)
        hit |= (sub_len >= end) & match
    out[rows] = hit
    return out


#: Bytes compared as one integer by :func:`_starts_with`.
_WORD = 8


def _words(head: np.ndarray, at: int) -> np.ndarray:
    """Each row's bytes ``at`` … ``at + 7`` as one little-endian uint64 (zeros past the
    head)."""
    width = max(0, min(_WORD, head.shape[1] - at))
    padded = np.zeros((head.shape[0], _WORD), dtype=np.uint8)
    padded[:, :width] = head[:, at:at + width]
    return padded.view("<u8")[:, 0]


def _word(token: bytes) -> tuple[np.uint64, np.uint64]:
    """A token of at most 8 bytes as :func:`_words` reads it, and the mask of its bytes."""
    pad = _WORD - len(token)
    return (np.frombuffer(token + bytes(pad), dtype="<u8")[0],
            np.frombuffer(b"\xff" * len(token) + bytes(pad), dtype="<u8")[0])


def recognize(head: np.ndarray, length: np.ndarray, proto: np.ndarray, sport: np.ndarray,
              dport: np.ndarray) -> Marks:
    """The request and response marks of every rule for every segment.

    ``head``: (n, N) uint8, the first payload bytes (N ≥ :data:`HEAD_BYTES` for every rule);
    ``length``: captured bytes of it; ``proto``, ``sport``, ``dport``: the segment's.
    """
    n = head.shape[0]
    none = np.zeros(n, dtype=bool)
    req: dict[str, np.ndarray] = {}
    resp: dict[str, np.ndarray] = {}
    key: dict[str, np.ndarray] = {}
    columns: dict[int, np.ndarray] = {}  # each byte column widened once, when first used

    def byte(i: int) -> np.ndarray:
        if i >= head.shape[1]:
            return np.zeros(n, dtype=np.int64)
        if i not in columns:
            columns[i] = head[:, i].astype(np.int64)
        return columns[i]

    req["http"] = _starts_with(head, length, _HTTP_METHODS)
    resp["http"] = _starts_with(head, length, _HTTP_RESPONSE)

    # DNS: 12-byte header (over TCP after a 2-byte length): id, flags (QR = top bit), qdcount
    tcp = proto == 6
    at = np.where(tcp, 2, 0)
    rows = np.arange(n)
    have = length >= at + 6

    def dns_byte(i: int) -> np.ndarray:
        col = np.minimum(at + i, head.shape[1] - 1)
        return head[rows, col].astype(np.int64)

    flags = dns_byte(2)
    qdcount = (dns_byte(4) << 8) | dns_byte(5)
    plausible = have & (((flags >> 3) & 0xF) <= 5) & (qdcount <= 64)
    req["dns"] = plausible & (dport == DNS_PORT) & ((flags & 0x80) == 0) & (qdcount >= 1)
    resp["dns"] = plausible & (sport == DNS_PORT) & ((flags & 0x80) != 0)
    key["dns"] = (dns_byte(0) << 8) | dns_byte(1)

    # memcached binary: 24-byte header, magic, opcode, key length, extras length, data type 0
    whole = length >= 16
    datatype0 = byte(5) == 0
    req["memcached-binary"] = whole & datatype0 & (byte(0) == _MEMCACHED_MAGIC_REQUEST)
    resp["memcached-binary"] = whole & datatype0 & (byte(0) == _MEMCACHED_MAGIC_RESPONSE)
    key["memcached-binary"] = ((byte(12) << 24) | (byte(13) << 16) | (byte(14) << 8)
                               | byte(15))

    # Redis RESP: a command is an array of bulk strings, "*<count>\r\n$"
    digit = (byte(1) >= ord("0")) & (byte(1) <= ord("9"))
    bulk_next = none.copy()
    for k in range(2, min(head.shape[1] - 2, 6)):  # "*12\r\n$" at most: count < 10000
        bulk_next |= (byte(k) == 13) & (byte(k + 1) == 10) & (byte(k + 2) == ord("$"))
    req["redis"] = (length >= 5) & (byte(0) == ord("*")) & digit & bulk_next
    first = byte(0)
    resp["redis"] = (length >= 3) & np.isin(first, np.frombuffer(_REDIS_REPLY_FIRST, np.uint8))

    req["memcached"] = _starts_with(head, length, _MEMCACHED_COMMANDS)
    resp["memcached"] = _starts_with(head, length, _MEMCACHED_REPLIES)

    record = (length >= 5) & np.isin(first, _TLS_CONTENT_TYPES) & (byte(1) == 3) \
        & (byte(2) <= 4)
    req["tls"] = record
    resp["tls"] = record
    req["direction"] = none
    resp["direction"] = none
    return Marks(request=req, response=resp, key=key)
