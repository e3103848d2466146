"""Layer 1, sources: the bytes of each input turned into columns, and nothing more.

Every reader here owns one format and knows nothing of the others' meaning: capture containers
(:mod:`.pcap`, :mod:`.pcapng`, opened through :mod:`.capture`) yield raw records, :mod:`.decode`
turns a batch of them into link/IP/TCP/UDP columns, :mod:`.packets` is the packet table (and
:mod:`.info` what ``capinfos`` says of a capture); :mod:`.xentrace` (with its record walk
:mod:`.xentrace_records` and file scan :mod:`.xentrace_scan`) is the hypervisor trace as event,
run-state and lost-record tables; :mod:`.strace` and :mod:`.socklog` are the application's
socket calls; :mod:`.manifest` reads and writes a capture set's ``xenlat-set.toml``, and
:mod:`.record` prints or runs the commands that record one.

May import: the shared modules at the package's top (``errors``, ``model``, ``units``,
``linktypes``, ``xen_events``, ``groups``), numpy, pyarrow and pandas. Never the pipeline,
the outputs, rich or click (``tests/test_layout.py`` checks the package imports).
"""
