"""Layer 4, the fleet: many capture sets analyzed into one dataset, and read back.

:mod:`.dataset` is the Parquet dataset (``packets/``, ``sets/``, Hive-partitioned by Xen host
and date); :mod:`.batch` analyzes capture sets on Dask into it; :mod:`.gate` is ``check
--dataset`` (the gate on each set and on all pooled); :mod:`.report` and :mod:`.gate_table`
show a dataset and its gate.

May import: every layer below it (shared, sources, pipeline, outputs); Dask only in
:mod:`.batch`. Never click.
"""
