"""xenlat: latency analysis of packets crossing a Xen host, from captures and hypervisor traces.

The Python API (each returns pandas DataFrames or plain data):

- :func:`xentrace_cli.sources.packets.read_packets` — a capture as a packet table.
- :func:`xentrace_cli.sources.xentrace.read_xentrace` — a xentrace file as an event table.
- :func:`xentrace_cli.sources.strace.read_socket_log` — an strace or CSV/JSONL read log.
- :func:`xentrace_cli.pipeline.analyze.analyze` — the per-packet stage split of a set of sources.

Imports stay lazy so that ``xenlat --help`` and small commands start fast.
"""

__version__ = "0.1.0"
