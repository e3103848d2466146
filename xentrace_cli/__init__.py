"""xenlat: latency analysis of packets crossing a Xen host, from captures and hypervisor traces.

The Python API (each returns pandas DataFrames or plain data):

- :func:`xentrace_cli.sources.packets.read_packets` — a capture as a packet table.
- :func:`xentrace_cli.sources.xentrace.read_xentrace` — a xentrace file as an event table.
- :func:`xentrace_cli.sources.socket_log.read_socket_log` — an strace or CSV/JSONL read log.
- :func:`xentrace_cli.pipeline.analyze.analyze` — the per-packet stage split of a set of sources.

The package is the pipeline by layer (each ``__init__`` says what it may import): the shared
modules here (errors, model, units, linktypes, xen_events, groups), then ``sources/`` →
``pipeline/`` → ``outputs/`` → ``fleet/``, with ``trace/`` and ``simulate/`` beside the
pipeline and ``cli.py`` over all (docs/ARCHITECTURE.md). This module imports nothing, so that
``xenlat --help`` and small commands start fast.
"""

__version__ = "0.1.0"
