"""The fleet dataset: many capture sets' analyses in one Parquet dataset, readable without xenlat.

One table per run cannot answer "which hosts got slower in the ring this week"; a
Hive-partitioned Parquet dataset can, in DuckDB, pandas, pyarrow or Spark, reading only the
partitions a query names. ``xenlat batch`` writes it, ``check --dataset`` and
``report --dataset`` read it. Layout::

    DATASET/
      packets/xen_host=<host>/date=<YYYY-MM-DD>/<set_id>.parquet   one row per data segment
      sets/xen_host=<host>/date=<YYYY-MM-DD>/<set_id>.parquet      one row: the set's summary

``set_id`` is a hash of the set's content (its manifest and every source file, byte for byte),
so one capture set always lands in the same two files whatever its directory is called, and a
rerun recognises it (:func:`is_done`: the summary is there, written by this xenlat version).
``packets`` rows have the columns and Arrow types of ``analyze --format parquet``
(``model.TABLE_COLUMNS``) plus ``set`` (the set directory's name), ``set_id`` and ``started``
(UTC); ``xen_host`` and ``date`` are the partition directories' values, which every Parquet
reader turns into columns (host names are percent-encoded there). The host is the manifest's
``xen_host`` (``unknown`` without one), the date the UTC date of its ``started`` or, without
one, of the earliest first packet of the set's captures.

Each file is written under a hidden temporary name in its own partition directory, flushed and
renamed (atomic on a POSIX file system): neither a reader nor a crash ever sees half a file. A
temporary left by a crash is skipped by every reader (hidden, no ``.parquet`` suffix) and
removed when that set is written again. The summary is written last: a set is in the dataset
when its summary is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..errors import InputError
from ..model import TABLE_COLUMNS, stat_key
from ..outputs.tables import arrow_table
from ..sources.manifest import FILE_KEYS, CaptureSet
from ..sources.packets import iter_packets

#: The packet rows' table and the per-set summaries' table, each a directory of the dataset.
PACKETS = "packets"
SETS = "sets"
#: The partition keys, in directory order.
PARTITIONS: tuple[str, ...] = ("xen_host", "date")
#: The host partition of a set whose manifest names none.
UNKNOWN_HOST = "unknown"
#: Columns a packet row has besides the analysis table's.
SET_COLUMNS: tuple[str, ...] = ("set", "set_id", "started")
#: Statistics kept per stage key in the summary (``p99.9`` is spelled ``p99_9`` there, as a
#: struct field name).
SUMMARY_STATISTICS: tuple[str, ...] = ("count", "p50", "p90", "p99", "p99.9", "max", "mean",
                                       "anomalies")
#: Alignment pairs the summary keeps, in order (``Analysis.alignment`` keys).
ALIGNMENT_PAIRS: tuple[str, ...] = ("guest->dom0", "tsc->dom0", "socket log->guest")

_HASH_CHUNK = 1 << 20
_SUFFIX = ".parquet"
_TEMPORARY = ".tmp"
_UTC_US = pa.timestamp("us", tz="UTC")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a set's files go: its Xen host and the UTC time its recording started."""

    xen_host: str
    started: dt.datetime
    """UTC."""

    @property
    def date(self) -> str:
        """The partition's date, ``YYYY-MM-DD`` (UTC)."""
        return self.started.astimezone(dt.UTC).date().isoformat()

    def directory(self, root: str | os.PathLike[str], table: str) -> Path:
        """The partition directory of ``table`` (``packets`` or ``sets``) under ``root``."""
        return (Path(root) / table / f"xen_host={quote(self.xen_host, safe='')}"
                / f"date={self.date}")

    def file(self, root: str | os.PathLike[str], table: str, set_id: str) -> Path:
        """The file of one set in ``table``."""
        return self.directory(root, table) / f"{set_id}{_SUFFIX}"


# ---------------------------------------------------------------------------------------------
# A set's identity and place


def content_hash(capture_set: CaptureSet) -> str:
    """The set's identity: SHA-256 (hex, first 32 digits) of its manifest and of every source
    file it lists, each with its role and size, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    files = [("manifest", capture_set.manifest_path)]
    files += [(key, getattr(capture_set.sources, key)) for key in FILE_KEYS
              if getattr(capture_set.sources, key) is not None]
    for role, path in files:
        try:
            with open(path, "rb") as fh:
                digest.update(f"{role}\0{os.fstat(fh.fileno()).st_size}\0".encode())
                while chunk := fh.read(_HASH_CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            raise InputError(path, f"cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()[:32]


def place(capture_set: CaptureSet) -> Placement:
    """The set's host and start: the manifest's, else (start) its captures' first packet.

    Raises ``InputError`` naming the manifest when neither it nor a capture gives a time.
    """
    host = capture_set.xen_host or UNKNOWN_HOST
    started = capture_set.started
    if started is None:
        started = first_packet_time(capture_set)
    if started is None:
        raise InputError(capture_set.manifest_path, "no start time: the manifest has no "
                         "[set] started and no capture of the set holds a timestamped packet")
    return Placement(xen_host=host, started=started.astimezone(dt.UTC))


def first_packet_time(capture_set: CaptureSet) -> dt.datetime | None:
    """The earliest first-packet time of the set's captures (dom0's before the guest's: the
    analysis table is on dom0's clock), reading one batch of each; None without one."""
    for key in ("phys", "backend", "guest"):
        path = getattr(capture_set.sources, key)
        if path is None:
            continue
        batches = iter_packets(path, prefetch=False)
        try:
            first = next(batches, None)
        finally:
            batches.close()
        if first is None or "ts_ns" not in first.columns:
            continue
        ts = pd.to_numeric(first["ts_ns"], errors="coerce").dropna()
        if len(ts):
            return dt.datetime.fromtimestamp(int(ts.min()) / 1e9, dt.UTC)
    return None


# ---------------------------------------------------------------------------------------------
# Schemas


def _analysis_type(column: str) -> pa.DataType:
    """The Arrow type ``analyze --format parquet`` gives a column of ``model.TABLE_COLUMNS``
    (every set's file must have the same, whatever its sources measured)."""
    if column in ("src", "dst"):
        return pa.dictionary(pa.int32(), pa.string())
    if column in ("sport", "dport", "proto", "seq", "len", "frame") or (
            column.startswith("t_") and column.endswith("_ns")):
        return pa.int64()
    if column in ("direction", "anomaly", "stall", "cause", "cause_detail"):
        return pa.large_string()
    if column == "retransmitted":
        return pa.bool_()
    if column.startswith("t_") or column.endswith("_us"):
        return pa.float64()
    raise KeyError(f"dataset.py does not know the Arrow type of the analysis column {column!r}")


def packet_schema() -> pa.Schema:
    """The schema of the ``packets`` files: the analysis table's, then ``set``, ``set_id`` and
    ``started`` (the partition columns live in the directory names)."""
    fields = [pa.field(name, _analysis_type(name)) for name in TABLE_COLUMNS]
    fields += [pa.field("set", pa.string()), pa.field("set_id", pa.string()),
               pa.field("started", _UTC_US)]
    return pa.schema(fields)


_STAGE_STRUCT = pa.struct(
    [pa.field("key", pa.string())]
    + [pa.field(s.replace(".", "_"), pa.int64() if s in ("count", "anomalies") else pa.float64())
       for s in SUMMARY_STATISTICS])
_ALIGNMENT_STRUCT = pa.struct([("pair", pa.string()), ("quality", pa.string()),
                               ("uncertainty_us", pa.float64()), ("detail", pa.string())])
_ANOMALY_STRUCT = pa.struct([("stage", pa.string()), ("cause", pa.string()),
                             ("count", pa.int64())])

#: The schema of the ``sets`` files: one row per set.
SUMMARY_SCHEMA = pa.schema([
    ("set", pa.string()), ("set_id", pa.string()), ("started", _UTC_US),
    ("directory", pa.string()), ("xenlat_version", pa.string()),
    ("sources", pa.list_(pa.string())),
    ("packets", pa.int64()), ("rx_packets", pa.int64()), ("tx_packets", pa.int64()),
    ("anomalous", pa.int64()),
    ("stages", pa.list_(_STAGE_STRUCT)),
    ("alignment", pa.list_(_ALIGNMENT_STRUCT)),
    ("anomalies", pa.list_(_ANOMALY_STRUCT)),
    ("notes", pa.list_(pa.string())), ("warnings", pa.list_(pa.string())),
    ("seconds", pa.float64()),
])


@dataclasses.dataclass(frozen=True)
class SetIdentity:
    """What names a set in the dataset's rows."""

    name: str
    """The set directory's name."""
    set_id: str
    """:func:`content_hash`."""
    directory: str
    """The set directory as the batch was given it (absolute)."""
    placement: Placement


def packet_rows(table: pd.DataFrame, identity: SetIdentity) -> pa.Table:
    """The analysis table as the ``packets`` file holds it (:func:`packet_schema`)."""
    arrow = arrow_table(table.loc[:, list(TABLE_COLUMNS)])
    n = arrow.num_rows
    arrow = arrow.append_column("set", pa.array([identity.name] * n, pa.string()))
    arrow = arrow.append_column("set_id", pa.array([identity.set_id] * n, pa.string()))
    started = pd.Timestamp(identity.placement.started)
    arrow = arrow.append_column("started", pa.array([started] * n, _UTC_US))
    return arrow.cast(packet_schema().with_metadata(arrow.schema.metadata))


def summary_row(analysis: Any, identity: SetIdentity, *, version: str,
                stats: dict[str, dict[str, Any]], warnings: Sequence[str] = (),
                seconds: float = 0.0) -> pa.Table:
    """The one-row ``sets`` table of an analysis: counts, statistics per stage key
    (``stats``: ``ring``, ``tx.ring``, merged intervals, ``total`` …), alignment quality per
    clock pair, anomalies per stage key and cause, the analysis notes and warnings."""
    table: pd.DataFrame = analysis.table
    direction = table["direction"].astype(str).to_numpy()
    row = {
        "set": identity.name, "set_id": identity.set_id,
        "started": pd.Timestamp(identity.placement.started),
        "directory": identity.directory, "xenlat_version": version,
        "sources": list(analysis.sources.present),
        "packets": len(table), "rx_packets": int((direction == "rx").sum()),
        "tx_packets": int((direction == "tx").sum()),
        "anomalous": int((table["anomaly"].fillna("").astype(str) != "").sum()),
        "stages": [_stage_entry(key, entry) for key, entry in stats.items()],
        "alignment": [_alignment_entry(pair, analysis.alignment[pair])
                      for pair in ALIGNMENT_PAIRS if pair in analysis.alignment],
        "anomalies": anomaly_counts(table),
        "notes": [str(note) for note in analysis.notes],
        "warnings": [str(w) for w in warnings],
        "seconds": float(seconds),
    }
    return pa.Table.from_pylist([row], schema=SUMMARY_SCHEMA)


def _stage_entry(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key}
    for stat in SUMMARY_STATISTICS:
        value = entry.get(stat)
        if value is not None and not np.isfinite(value):
            value = None
        out[stat.replace(".", "_")] = value
    return out


def _alignment_entry(pair: str, fit: dict[str, Any]) -> dict[str, Any]:
    uncertainty = fit.get("uncertainty_us")
    if uncertainty is not None and not np.isfinite(uncertainty):
        uncertainty = None  # unbounded: the quality says one-sided or none
    return {"pair": pair, "quality": str(fit.get("quality") or "none"),
            "uncertainty_us": uncertainty, "detail": str(fit.get("detail") or "")}


def anomaly_counts(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Anomalous rows per stage key (``ring``, ``tx.ring``, ``total`` …) and cause (empty when
    none was found), most frequent first, then by name."""
    labelled = table["anomaly"].fillna("").astype(str) != ""
    if not labelled.any():
        return []
    rows = pd.DataFrame({
        "direction": table.loc[labelled, "direction"].astype(str).to_numpy(),
        "anomaly": table.loc[labelled, "anomaly"].astype(str).to_numpy(),
        "cause": table.loc[labelled, "cause"].fillna("").astype(str).to_numpy()})
    counts = rows.value_counts(sort=False).reset_index(name="count")
    counts["stage"] = [stat_key(a, d) for a, d in zip(counts["anomaly"], counts["direction"],
                                                        strict=True)]
    counts = counts.sort_values(["count", "stage", "cause"], ascending=[False, True, True])
    return [{"stage": s, "cause": c, "count": int(n)}
            for s, c, n in zip(counts["stage"], counts["cause"], counts["count"], strict=True)]


# ---------------------------------------------------------------------------------------------
# Writing, atomically


def is_done(root: str | os.PathLike[str], set_id: str, placement: Placement,
            version: str) -> bool:
    """True when the set's summary and packets are in the dataset, written by ``version``."""
    summary = placement.file(root, SETS, set_id)
    if not (summary.is_file() and placement.file(root, PACKETS, set_id).is_file()):
        return False
    try:
        written = pq.read_table(summary, columns=["xenlat_version"]).column(0).to_pylist()
    except (OSError, pa.ArrowException):
        return False  # unreadable: write it again
    return written == [version]


def write_set(root: str | os.PathLike[str], identity: SetIdentity, packets: pa.Table,
              summary: pa.Table) -> tuple[Path, Path]:
    """Write one set's packets, then its summary, each atomically; returns both paths.

    A file of the same set already there (an older version's, or a crashed attempt's that
    got as far as its packets) is replaced whole.
    """
    placement = identity.placement
    written = []
    for table_name, table in ((PACKETS, packets), (SETS, summary)):
        final = placement.file(root, table_name, identity.set_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_temporaries(final.parent, identity.set_id)
        temporary = final.parent / f".{identity.set_id}.{uuid.uuid4().hex}{_TEMPORARY}"
        try:
            _write_parquet(table, temporary)
            _replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        written.append(final)
    _sync_directory(written[-1].parent)
    return written[0], written[1]


def _write_parquet(table: pa.Table, path: Path) -> None:
    """The whole table to ``path``, flushed to the disk before the rename makes it visible."""
    with open(path, "wb") as fh:
        writer = pq.ParquetWriter(fh, table.schema)
        writer.write_table(table)
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())


def _replace(temporary: Path, final: Path) -> None:
    """Make the written file visible under its final name (one atomic rename)."""
    os.replace(temporary, final)


def _sync_directory(directory: Path) -> None:
    """Persist the renames of a partition directory (where the file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_temporaries(directory: Path, set_id: str) -> None:
    """Temporaries of this set left by a crashed attempt."""
    for stale in directory.glob(f".{set_id}.*{_TEMPORARY}"):
        stale.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Reading


def _check_dataset(root: Path) -> None:
    if not (root / SETS).is_dir():
        raise InputError(root, f"not a xenlat dataset: no {SETS}/ directory in it "
                         "('xenlat batch SETS… -o DATASET' writes one)")


def _partitioning() -> pads.Partitioning:
    return pads.partitioning(pa.schema([("xen_host", pa.string()), ("date", pa.string())]),
                             flavor="hive")


def _open(root: Path, table: str) -> pads.Dataset:
    try:
        return pads.dataset(root / table, format="parquet", partitioning=_partitioning())
    except (OSError, pa.ArrowException) as exc:
        raise InputError(root / table, f"cannot open the dataset: {exc}") from None


def read_summaries(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every set's summary row (:data:`SUMMARY_SCHEMA` plus ``xen_host`` and ``date``), sorted
    by host, start and name. Raises ``InputError`` when ``root`` is not a dataset."""
    root = Path(root)
    _check_dataset(root)
    try:
        table = _open(root, SETS).to_table()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(root / SETS, f"cannot read the set summaries: {exc}") from None
    frame = table.to_pandas()
    frame["xen_host"] = frame["xen_host"].astype(str)
    frame["date"] = frame["date"].astype(str)
    return frame.sort_values(["xen_host", "started", "set", "set_id"], kind="stable") \
        .reset_index(drop=True)


def select_sets(summaries: pd.DataFrame, hosts: Sequence[str] = ()) -> pd.DataFrame:
    """The summary rows of the sets of ``hosts`` (all without)."""
    if not hosts:
        return summaries
    return summaries[summaries["xen_host"].isin(list(hosts))].reset_index(drop=True)


def set_file(root: str | os.PathLike[str], summary: pd.Series | dict[str, Any],
             table: str = PACKETS) -> Path:
    """The file of the set a summary row describes."""
    started = summary["started"]
    placement = Placement(xen_host=str(summary["xen_host"]),
                          started=pd.Timestamp(started).to_pydatetime())
    return placement.file(root, table, str(summary["set_id"]))


def read_set_packets(root: str | os.PathLike[str], summary: pd.Series | dict[str, Any],
                     columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The packet rows of one set (the analysis table's columns, or ``columns``)."""
    path = set_file(root, summary)
    try:
        return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(path, f"cannot read the set's packets: {exc}") from None


def read_packets(root: str | os.PathLike[str], columns: Iterable[str] | None = None,
                 ) -> pd.DataFrame:
    """The packet rows of every set (or only ``columns``), partition columns included."""
    root = Path(root)
    _check_dataset(root)
    try:
        table = _open(root, PACKETS).to_table(columns=list(columns) if columns else None)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(root / PACKETS, f"cannot read the packets: {exc}") from None
    return table.to_pandas()


def stage_stats_of(summary: pd.Series | dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A summary row's ``stages`` as ``stats.stage_stats`` gives them (``p99.9`` keys)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in summary["stages"]:
        out[entry["key"]] = {stat: _plain(entry[stat.replace(".", "_")])
                             for stat in SUMMARY_STATISTICS}
    return out


def stage_table(summaries: pd.DataFrame) -> pd.DataFrame:
    """The summaries' ``stages`` in long form: one row per set and stage key (``set``,
    ``set_id``, ``xen_host``, ``date``, ``started``, ``key``, then the statistics, ``p99.9``
    spelled ``p99_9``)."""
    ids = ["set", "set_id", "xen_host", "date", "started"]
    long = summaries[[*ids, "stages"]].explode("stages", ignore_index=True)
    long = long[long["stages"].notna()].reset_index(drop=True)
    stats = pd.DataFrame(list(long["stages"]), index=long.index,
                         columns=["key", *(s.replace(".", "_") for s in SUMMARY_STATISTICS)])
    return pd.concat([long[ids], stats], axis=1)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
