"""Real traffic on loopback against redis-server and memcached (Debian), for xenlat's tests.

Usage: ``python3 record.py SCENARIO`` with tcpdump capturing ``-i lo`` (see README.md).
"""

import random
import socket
import struct
import sys
import time


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def resp(*args: object) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        data = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def read_reply(s: socket.socket, buf: bytes = b"") -> bytes:
    """Read one RESP reply (simple string, integer or bulk string); returns what follows."""
    while b"\r\n" not in buf:
        buf += s.recv(65536)
    line, rest = buf.split(b"\r\n", 1)
    if line[:1] == b"$" and int(line[1:]) >= 0:
        n = int(line[1:])
        while len(rest) < n + 2:
            rest += s.recv(65536)
        rest = rest[n + 2:]
    return rest


def redis_think() -> None:
    random.seed(3)
    s = connect(6399)
    for k in range(12):
        s.sendall(resp("SET", f"user:{k}", "x" * random.randint(10, 300)))
        read_reply(s)
        s.sendall(resp("GET", f"user:{k}"))
        read_reply(s)
        time.sleep(random.uniform(0.6, 2.5))  # a person reading the page
    s.close()


def redis_rpc(stall_at: int = 120, n: int = 200) -> None:
    s = connect(6399)
    s.sendall(resp("SET", "counter", "0"))
    read_reply(s)
    for k in range(n):
        s.sendall(resp("INCR", "counter"))
        read_reply(s)
        if k == stall_at:
            time.sleep(0.100)  # the black 0.1 second: the reply is here, the next call late
    s.close()


def memcached_text() -> None:
    s = connect(11299)
    for k in range(30):
        v = b"v" * (20 + k)
        s.sendall(b"set key%d 0 0 %d\r\n%s\r\n" % (k, len(v), v))
        while not s.recv(100).endswith(b"\r\n"):
            pass
        s.sendall(b"get key%d\r\n" % k)
        buf = b""
        while not buf.endswith(b"END\r\n"):
            buf += s.recv(4096)
        time.sleep(0.002)
    s.close()


def _binary(s: socket.socket, opcode: int, key: bytes, extras: bytes, value: bytes,
            opaque: int) -> None:
    body = extras + key + value
    s.sendall(struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body),
                          opaque, 0) + body)
    header = s.recv(24)
    left = struct.unpack(">I", header[8:12])[0]
    while left:
        left -= len(s.recv(left))


def memcached_binary() -> None:
    s = connect(11299)
    for k in range(30):
        key = b"bkey%d" % k
        _binary(s, 0x01, key, struct.pack(">II", 0, 0), b"w" * (10 + k), 1000 + k)  # SET
        _binary(s, 0x00, key, b"", b"", 5000 + k)  # GET
        time.sleep(0.002)
    s.close()


if __name__ == "__main__":
    globals()[sys.argv[1]](*map(int, sys.argv[2:]))
