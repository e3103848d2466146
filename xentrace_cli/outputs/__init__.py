"""Layer 3, outputs: what a finished analysis (or a capture, or a trace summary) looks like
to people and programs.

:mod:`.tables` writes CSV / JSON / Parquet (streamed) and deterministic JSON documents;
:mod:`.terminal` is the rich report, :mod:`.html` the self-contained HTML page (plotly.js
from ``assets/``), :mod:`.plot` the matplotlib waterfall; :mod:`.waterfall` and
:mod:`.numbers` are what they share (direction-aware intervals, one unit and decimals per
column); :mod:`.explain` asks tshark (through pyshark) for Wireshark's view of the worst
exchanges; :mod:`.gate` is the CI verdict (budgets, baselines, JUnit); :mod:`.gate_table` is
a small rich table; :mod:`.trace_table` and :mod:`.info_table` draw their tables with
:mod:`.text_table` (rich's look, without rich: start-up and a few hundred cells);
:mod:`.packet_csv` formats the packet table's CSV with numpy (no pyarrow at start-up);
:mod:`.sink` is where both write (a file or stdout).

May import: the shared modules, :mod:`xentrace_cli.sources` and
:mod:`xentrace_cli.pipeline` (its result, statistics and names); rich, plotly's bundle,
matplotlib and pyshark only inside the module that needs them. Never click.
"""
