"""``xenlat trace``: what xenalyze shows of a xentrace file, beside the pipeline (not in it).

:mod:`.summary` builds the document (records per event, lost records, run states, waits) from
the views of :mod:`.sched` (waits, physical CPUs and their silences, migrations) and :mod:`.hvm`
(HVM exits); :mod:`.dump` prints every record as a line, merged across CPUs as it streams. All
work on the numpy arrays of :mod:`xentrace_cli.sources.xentrace_scan`, so the command imports
no pandas; pandas tables only for the Python API.

May import: the shared modules and :mod:`xentrace_cli.sources`. Never the pipeline, the
outputs, rich or click.
"""
