"""Layer 2, the pipeline: from the sources' tables to one :class:`.result.Analysis`.

Data flows one way, in the order :func:`.analyze.analyze` runs it: read the sources, then
*align* the guest capture's clock on dom0's (:mod:`.clock`),
*match* each segment across capture points (:mod:`.match`), place the socket log's calls
(:mod:`.attribute`), follow each packet through the trace (:mod:`.trace_attribute`: the
trace's clock, then the path steps of :mod:`.trace_path` over :mod:`.timelines`), keep every
path in order (:mod:`.path_order`), judge anomalies (:mod:`.anomalies`) and their causes
(:mod:`.causes`); one capture's conversations (:mod:`.conversations`) give the lone view
(:mod:`.lone`). :mod:`.stats` summarizes a finished table, :mod:`.select` picks the rows a
report shows.

May import: the shared modules at the package's top and :mod:`xentrace_cli.sources`; numpy
and pandas. Never the outputs, rich or click (``tests/test_layout.py`` checks it).
"""
