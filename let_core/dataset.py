"""The Parquet dataset: one small file per run, Hive-partitioned, on any pyarrow filesystem.

Layout: ``ROOT/project=<project>/year=<YYYY>/<run_id>.parquet``, ROOT being
``$LET_HOME/runs``, ``LET_DATASET`` or a URI given as ``output_dir`` (``s3://bucket/let``).
A run is written once, as a new file named by its (unique) run id, so writers never touch each
other's data and an append costs the same however many runs are stored. Locally the file is
written under a dot-name (which readers and DuckDB globs skip) and renamed into place; on
object stores a single PUT is already atomic.

``compact`` merges the small files of each partition into one. It writes the merged file
before it deletes the parts, so a reader (or a crash) in between sees some runs twice; readers
deduplicate by (run_id, backend, task), which makes that harmless. A reader whose file was
merged away under it reads the dataset again. Two compactions of a local dataset serialise on
``ROOT/.compact.lock``; on object stores a part another compaction already took is skipped.
Temporary files older than an hour (a killed writer's or delete's) are removed by the next
compaction.

Everything here imports pyarrow lazily: the tracking path only pays for it when the dataset
reporter is on.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from attrs import frozen

from let_core.config import is_uri
from let_core.errors import ConfigurationError, StoreError
from let_core.results.rule import as_float
from let_core.schema import NUMERIC_COLUMNS, STORE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.fs as pafs

PARTITION_KEYS = ("project", "year")
COMPACTED_PREFIX = "compacted-"
_NUMERIC = frozenset(NUMERIC_COLUMNS)


@frozen
class Location:
    """A dataset root on a filesystem: what ``pyarrow.fs`` needs, and how to show it to people."""

    filesystem: Any  # pyarrow.fs.FileSystem
    path: str
    display: str

    @property
    def local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.filesystem, pafs.LocalFileSystem)


def locate(root: str | os.PathLike[str]) -> Location:
    """Resolve a folder or a pyarrow filesystem URI (``s3://``, ``gs://``, ``file://``, ...).

    S3 URIs accept pyarrow's query options (``?endpoint_override=host:port&scheme=http&region=``);
    credentials come from the usual AWS variables or files. Connection and request timeouts are
    kept short, so an unreachable endpoint fails a run's report in seconds, not minutes.
    """
    import pyarrow.fs as pafs

    text = os.fspath(root)
    if not is_uri(text):
        path = Path(text).expanduser().absolute()
        return Location(pafs.LocalFileSystem(), path.as_posix(), str(path))
    parts = urlsplit(text)
    # Shown in messages: never the credentials or the query string.
    display = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    if parts.scheme == "s3":
        return Location(_s3(parts), f"{parts.hostname}{parts.path}".rstrip("/"), display)
    try:
        filesystem, path = pafs.FileSystem.from_uri(text)
    except _arrow_errors() as exc:
        raise ConfigurationError(f"cannot use {display!r} as a LET dataset location: {exc}. Give a "
                                 "folder or a pyarrow filesystem URI such as s3://bucket/let.") from exc
    return Location(filesystem, path.rstrip("/"), display)


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OSError)


def _s3(parts: Any) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    if not parts.hostname:
        raise ConfigurationError(f"S3 URI {parts.geturl()!r} names no bucket; use s3://bucket/prefix")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    known = {"endpoint_override", "scheme", "region", "connect_timeout", "request_timeout"}
    unknown = set(query) - known
    if unknown:
        raise ConfigurationError(f"unknown S3 option(s) {sorted(unknown)} in the dataset URI; "
                                 f"LET understands {sorted(known)}")
    options: dict[str, Any] = {
        "connect_timeout": float(query.get("connect_timeout", 5)),
        "request_timeout": float(query.get("request_timeout", 30)),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    for key in ("endpoint_override", "scheme", "region"):
        if key in query:
            options[key] = query[key]
    if parts.username:
        options["access_key"] = parts.username
        options["secret_key"] = parts.password or ""
    return pafs.S3FileSystem(**options)


# ----------------------------------------------------------------------------- schema
def schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(c, pa.float64() if c in _NUMERIC else pa.string()) for c in STORE_COLUMNS])


def _numeric(value: Any) -> float | None:
    number = as_float(value)
    return number if math.isfinite(number) else None  # (Arrow's null for a blank cell)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value if isinstance(value, str) else str(value)


def table_from_rows(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Store rows (``Run.rows()`` or the CSV store's) as a table with the dataset's schema."""
    import pyarrow as pa

    columns = {c: [(_numeric if c in _NUMERIC else _text)(row.get(c)) for row in rows]
               for c in STORE_COLUMNS}
    return pa.table(columns, schema=schema())


def partition_of(row: Mapping[str, Any]) -> str:
    """``project=<p>/year=<YYYY>``: the project URL-encoded (it may hold '/'), the UTC start year.

    Years, not months or days: a compacted partition should hold many thousands of runs, since
    every extra file costs a reader more than its rows do (a million runs in 200 monthly files
    read twice as slowly as in 20 yearly ones). Compaction rewrites at most a project's year.
    """
    project = quote(_text(row.get("project_name")) or "default", safe="")
    year = (_text(row.get("start_time")) or _text(row.get("timestamp")))[:4] or "unknown"
    return f"project={project}/year={quote(year, safe='')}"


# ----------------------------------------------------------------------------- writing
def write_run(location: Location, rows: Sequence[Mapping[str, Any]]) -> str:
    """Write one run's rows as a new file; returns its path. Never reads or rewrites old files."""
    if not rows:
        raise ValueError("write_run needs at least one row")
    run_id = _text(rows[0].get("run_id")) or uuid.uuid4().hex
    name = f"{quote(run_id, safe='')}.parquet"
    return _write_table(location, partition_of(rows[0]), name, table_from_rows(rows))


def _write_table(location: Location, partition: str, name: str, table: pa.Table) -> str:
    import pyarrow.parquet as pq

    directory = f"{location.path}/{partition}"
    final = f"{directory}/{name}"
    fs = location.filesystem
    fs.create_dir(directory, recursive=True)
    if not location.local:
        # One PUT: an object appears whole or not at all.
        with fs.open_output_stream(final) as out:
            pq.write_table(table, out, compression="snappy")
        return final
    temporary = _temporary(directory, name)
    try:
        with fs.open_output_stream(temporary) as out:
            pq.write_table(table, out, compression="snappy")
        fs.move(temporary, final)  # rename(2): readers see the old state or the whole file
    except BaseException:
        try:
            fs.delete_file(temporary)
        except OSError:
            pass
        raise
    return final


# ----------------------------------------------------------------------------- reading
#: Text columns that hold few distinct values (names, kinds, versions): read dictionary-encoded
#: and decoded by the scanner's threads, which costs half of Parquet's own string decoding (a
#: million runs' TOTALS_COLUMNS: 0.09 s -> 0.05 s), and leaves their codes for counting.
#: Ids, times and JSON stay plain: their dictionaries would be as large as the columns.
#: Only where large files are read: per file, the dictionaries cost more than they save (5,000
#: one-run files read 30% slower), so a dataset with more than SMALL_FILES_PLAIN files that
#: are not compacted is read the plain way.
DICTIONARY_COLUMNS: tuple[str, ...] = tuple(
    c for c in STORE_COLUMNS if c not in _NUMERIC and c not in {
        "timestamp", "run_id", "experiment_id", "start_time", "parent_run_id", "error",
        "metrics", "params", "extra"})
#: Suffix of the extra scan column that carries a dictionary column's encoded form.
_ENCODED = "\x00encoded"
SMALL_FILES_PLAIN = 200


def _dataset(location: Location, dictionary: bool = False) -> Any:
    """The dataset, its DICTIONARY_COLUMNS read dictionary-encoded when ``dictionary``."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in PARTITION_KEYS]), flavor="hive")
    encoded = set(DICTIONARY_COLUMNS) if dictionary else set()
    read_schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), pa.string()))
                             if f.name in encoded else f for f in schema()])
    file_format = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=encoded))
    return ds.dataset(location.path, filesystem=location.filesystem, format=file_format,
                      schema=read_schema.append(pa.field("project", pa.string())).append(pa.field("year", pa.string())),
                      partitioning=partitioning)


def exists(location: Location) -> bool:
    import pyarrow.fs as pafs

    try:
        info = location.filesystem.get_file_info(location.path)
    except OSError:
        return False
    return info.type == pafs.FileType.Directory


def read_table(location: Location, project_name: str | None = None, user: str | None = None,
               hostname: str | None = None, columns: Iterable[str] | None = None) -> pa.Table:
    """Every stored row matching the filters (partition pruning on the project).

    ``columns`` reads only those columns (in the dataset's order; unknown names are ignored):
    Parquet is columnar, so a statement over a million runs decodes a fifth of the file.
    The filters need not be among them: the scanner evaluates them before projecting.
    """
    names = _names(columns)
    return _scan(location, project_name, user, hostname, names, ()).select(names)


def _names(columns: Iterable[str] | None) -> list[str]:
    return list(STORE_COLUMNS) if columns is None else [c for c in STORE_COLUMNS if c in set(columns)]


def _scan(location: Location, project_name: str | None, user: str | None, hostname: str | None,
          names: Sequence[str], encoded: Iterable[str]) -> pa.Table:
    """``names`` as text and numbers, plus ``<name>`` + _ENCODED, the dictionary-encoded form,
    for each of ``encoded`` (dictionary columns among ``names``) unless a file's types do
    not allow it."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if not exists(location):
        return schema().empty_table().select(names)
    condition = None
    for key, value in (("project_name", project_name), ("user", user), ("hostname", hostname)):
        if value is not None:
            term = ds.field(key) == value
            condition = term if condition is None else condition & term
    if project_name is not None:
        # Partition values are URL-decoded by the reader, so this prunes whole folders.
        condition = condition & (ds.field("project") == project_name)
    dictionary = set(DICTIONARY_COLUMNS)
    projection: dict[str, Any] | None = {
        c: ds.field(c).cast(pa.string()) if c in dictionary else ds.field(c) for c in names}
    projection.update({c + _ENCODED: ds.field(c) for c in encoded if c in dictionary and c in projection})
    # pre_buffer coalesces reads for object stores' latency; on a local disk it only adds
    # work per file (a compacted year of 20 projects is 240 files): 10-20% of a full read.
    options = ds.ParquetFragmentScanOptions(pre_buffer=not location.local)
    for attempt in range(5):
        try:
            plain = _dataset(location)
            if projection is not None and _small_files(plain.files) > SMALL_FILES_PLAIN:
                projection = None
            if projection is not None:
                try:
                    return _dataset(location, dictionary=True).to_table(
                        columns=projection, filter=condition, fragment_scan_options=options)
                except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid):
                    # A file whose text column has another type (an integer rank written by
                    # another tool) does not cast to a dictionary: read every column plainly.
                    projection = None
            return plain.to_table(columns=list(names), filter=condition, fragment_scan_options=options)
        except FileNotFoundError:
            # A compaction merged files away between listing and reading: its merged file is
            # already written, so listing again finds every row.
            if attempt == 4:
                raise StoreError(f"cannot read the LET dataset {location.display}: its files keep "
                                 "changing under the reader; retry") from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"cannot read the LET dataset {location.display}: {exc}. `lett doctor "
                             "--dataset ...` names files that do not open; --repair moves them aside.") from exc
    raise AssertionError("unreachable")


def _small_files(paths: Iterable[str]) -> int:
    """How many of the dataset's files are one run's (not compacted)."""
    return sum(not path.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX) for path in paths)


def read_frame(location: Location, project_name: str | None = None, user: str | None = None,
               hostname: str | None = None, columns: Iterable[str] | None = None,
               coded: Iterable[str] = ()) -> pd.DataFrame:
    """``read_table`` as a frame built without copies (text Arrow-backed, numbers numpy), as the
    CSV store's: ``Table.to_pandas`` would turn every text cell into a Python object.

    The columns of ``coded`` that are dictionary columns keep their codes beside the frame
    (``keys.dictionary_codes``), so counting does not hash their texts again."""
    from let_core.keys import remember_dictionary
    from let_core.results.frames import arrow_frame

    names = _names(columns)
    table = _scan(location, project_name, user, hostname, names, coded)
    frame = arrow_frame(table.select(names))
    for name in table.column_names:
        if name.endswith(_ENCODED):
            remember_dictionary(frame[name[:-len(_ENCODED)]], table[name])
    return frame


# ----------------------------------------------------------------------------- compaction
@frozen
class CompactReport:
    partitions: int
    files_before: int
    files_after: int
    rows: int


def compact(location: Location, min_files: int = 2) -> CompactReport:
    """Merge each partition's files into one file; files that arrive meanwhile are left alone."""

    if not exists(location):
        return CompactReport(0, 0, 0, 0)
    with _compaction_lock(location):
        return _compact(location, min_files)


@contextlib.contextmanager
def _compaction_lock(location: Location) -> Iterator[None]:
    """Serialise compactions of a local dataset (object stores have no locks: see _compact)."""
    if not location.local:
        yield
        return
    import fcntl

    fd = os.open(os.path.join(location.path, ".compact.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _compact(location: Location, min_files: int) -> CompactReport:
    import time

    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs = location.filesystem
    selector = pafs.FileSelector(location.path, recursive=True)
    by_partition: dict[str, list[str]] = {}
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        if (info.base_name.startswith(".") and info.base_name.endswith(".tmp")
                and info.mtime is not None and time.time() - info.mtime.timestamp() > 3600):
            with contextlib.suppress(OSError):
                fs.delete_file(info.path)  # a writer or delete killed an hour ago or more
            continue
        if not info.base_name.endswith(".parquet") or info.base_name.startswith((".", "_")):
            continue
        partition = info.path[len(location.path) + 1:].rsplit("/", 1)[0]
        by_partition.setdefault(partition, []).append(info.path)
    before = sum(len(paths) for paths in by_partition.values())
    after = before
    rows = 0
    merged_partitions = 0
    for partition, paths in sorted(by_partition.items()):
        if len(paths) < min_files:
            continue
        tables = []
        taken = []
        for path in sorted(paths):
            try:
                with fs.open_input_file(path) as handle:
                    tables.append(_conform(pq.read_table(handle)))
                taken.append(path)
            except FileNotFoundError:
                continue  # another compaction (object store) merged it already
            except (OSError, pa.ArrowInvalid) as exc:
                raise StoreError(f"cannot compact {path}: {exc}; nothing was changed in its partition. "
                                 "`lett doctor` names files that do not open, --repair moves them aside.") from exc
        if len(taken) < min_files:
            continue
        table = pa.concat_tables(tables)
        _write_table(location, partition, f"{COMPACTED_PREFIX}{uuid.uuid4().hex}.parquet", table)
        for path in taken:
            with contextlib.suppress(FileNotFoundError):
                fs.delete_file(path)
        after -= len(taken) - 1
        rows += table.num_rows
        merged_partitions += 1
    return CompactReport(merged_partitions, before, after, rows)


def _conform(table: pa.Table) -> pa.Table:
    """A file written by another LET version, cast to this version's columns."""
    import pyarrow as pa

    target = schema()
    arrays = []
    for field in target:
        if field.name in table.column_names:
            arrays.append(table[field.name].cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=target)


def write_frame(location: Location, frame: pd.DataFrame) -> int:
    """Write a result set (``load_results``' frame) into the dataset, one new file per partition."""
    import pandas as pd
    import pyarrow as pa

    if frame.empty:
        return 0
    data = {}
    for column in STORE_COLUMNS:
        if column in frame:
            values = frame[column]
            data[column] = (pd.to_numeric(values, errors="coerce") if column in _NUMERIC
                            else values.astype(object).where(values.notna(), "").astype(str))
        else:
            data[column] = [None] * len(frame) if column in _NUMERIC else [""] * len(frame)
    table = pa.table(data, schema=schema())
    keys = [partition_of({"project_name": p, "start_time": s, "timestamp": t})
            for p, s, t in zip(data["project_name"], data["start_time"], data["timestamp"])]
    import pyarrow.compute as pc

    key_array = pa.array(keys)
    for partition in sorted(set(keys)):
        part = table.filter(pc.equal(key_array, partition))
        _write_table(location, partition, f"{COMPACTED_PREFIX}{uuid.uuid4().hex}.parquet", part)
    return table.num_rows


# ----------------------------------------------------------------------------- deleting
@frozen(eq=False)
class DeletePlan:
    """What deleting rows from the dataset will change, decided before anything is changed:
    the files whose every row matches (``drops``) and, for files where only some rows match,
    the file and the table of its other rows (``rewrites``)."""

    location: Location
    rows: int
    drops: tuple[str, ...]
    rewrites: tuple[tuple[str, Any], ...]  # (path, pyarrow.Table)

    @property
    def files(self) -> int:
        return len(self.drops) + len(self.rewrites)


def plan_delete(location: Location, filters: Mapping[str, str | None]) -> DeletePlan:
    """Read every file of the dataset and decide which rows matching every filter go where.
    Changes nothing; a file that does not open refuses the whole delete (StoreError)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    drops: list[str] = []
    rewrites: list[tuple[str, Any]] = []
    rows = 0
    if not exists(location):
        return DeletePlan(location, 0, (), ())
    fs = location.filesystem
    wanted = {key: value for key, value in filters.items() if value is not None}
    try:
        infos = fs.get_file_info(pafs.FileSelector(location.path, recursive=True))
    except OSError as exc:
        raise StoreError(f"cannot list the LET dataset {location.display}: {exc}; nothing was deleted") from exc
    for info in sorted(infos, key=lambda i: i.path):
        if (info.type != pafs.FileType.File or not info.base_name.endswith(".parquet")
                or info.base_name.startswith((".", "_"))):
            continue
        try:
            with fs.open_input_file(info.path) as handle:
                parquet = pq.ParquetFile(handle)
                total = parquet.metadata.num_rows
                if not set(wanted) <= set(parquet.schema_arrow.names):
                    continue  # a file without a filter's column holds no matching row
                # Only the filter columns: the whole file is read only when some rows stay.
                table = parquet.read(columns=list(wanted))
                mask = pa.array([True] * total, pa.bool_())
                for key, value in wanted.items():
                    mask = pc.and_(mask, pc.fill_null(pc.equal(table[key].cast(pa.string()), value), False))
                matched = pc.sum(mask).as_py() or 0
                # The file's own columns and types, not the conformed ones: another tool's
                # extra columns stay with the rows that stay.
                rest = parquet.read().filter(pc.invert(mask)) if 0 < matched < total else None
        except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise StoreError(f"cannot delete from {info.path}: {exc}; nothing was deleted. `lett doctor "
                             "--dataset ...` names files that do not open, --repair moves them aside.") from exc
        rows += matched
        if rest is not None:
            rewrites.append((info.path, rest))
        elif matched:
            drops.append(info.path)
    return DeletePlan(location, rows, tuple(drops), tuple(rewrites))


def apply_delete(plan: DeletePlan) -> None:
    """Carry out ``plan`` as close to all-or-nothing as a filesystem allows.

    First every rewritten file is written under a hidden temporary name beside its original
    (readers, compaction and DuckDB skip dot-names), and every folder that will change creates
    and deletes a probe file: a failure there (read-only folder, full disk, an object store
    refusing the PUT or the DELETE) removes the temporary files and changes nothing.
    Then each file changes in one atomic step: the temporary file renamed over the original
    (locally rename(2); on S3 one server-side copy over the key), or the file deleted. Between
    any two steps the dataset is the old one less some matching rows: no row counts twice and
    no other row is missing. A failure among these steps raises StoreError saying how many
    files had changed; running the same delete again finishes it (a new plan finds the rest).
    A local dataset holds the compaction lock throughout, so no compaction merges a matching
    row into a new file meanwhile; object stores have no such lock (do not compact an S3
    dataset while deleting from it).
    """
    location = plan.location
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(_compaction_lock(location))
        except OSError as exc:
            raise StoreError(f"cannot lock the LET dataset {location.display} for deleting: {exc}; "
                             "nothing was deleted from it. Make the dataset folder writable and run "
                             "the delete again.") from exc
        _apply(plan, location.filesystem)


def _apply(plan: DeletePlan, fs: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    location = plan.location
    written: list[tuple[str, str]] = []
    temporary = ""
    try:
        for path, table in plan.rewrites:
            directory, name = path.rsplit("/", 1)
            temporary = _temporary(directory, name)
            with fs.open_output_stream(temporary) as out:
                pq.write_table(table, out, compression="snappy")
            written.append((temporary, path))
        # Deleting needs what writing does not prove (a folder's write bit for unlink, an
        # object store's DeleteObject): each folder that will change takes and loses a probe.
        for directory in sorted({path.rsplit("/", 1)[0] for path in (*plan.drops, *(p for p, _ in plan.rewrites))}):
            temporary = _temporary(directory, "let-delete-probe")
            with fs.open_output_stream(temporary):
                pass
            fs.delete_file(temporary)
    except (OSError, pa.ArrowException) as exc:
        _remove_quietly(fs, {temporary, *(t for t, _ in written)} - {""})
        raise StoreError(f"cannot write the rewritten files of the LET dataset {location.display}: "
                         f"{exc}; nothing was deleted from it. Make the dataset writable (or free "
                         "space) and run the delete again.") from exc
    steps = len(written) + len(plan.drops)
    done = 0
    try:
        for temporary, path in written:
            fs.move(temporary, path)
            done += 1
        for path in plan.drops:
            try:
                fs.delete_file(path)
            except FileNotFoundError:
                pass  # gone already (an S3 compaction took it): its rows are not read any more
            done += 1
    except OSError as exc:
        _remove_quietly(fs, [t for t, _ in written[done:]])
        raise StoreError(f"deleting from the LET dataset {location.display} stopped after {done} of "
                         f"{steps} file(s): {exc}. The changed files hold no matching row, the "
                         "others are as they were; no other row was lost.") from exc


def _temporary(directory: str, name: str) -> str:
    """A hidden name beside ``name`` for a file being written (``.name.<random>.tmp``)."""
    return f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"


def _remove_quietly(fs: Any, paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            fs.delete_file(path)
