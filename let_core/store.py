"""The central store: ``emissions.csv`` in ``$LET_HOME`` (default ``~/.let``) or ``output_dir``.

One row per (run, backend), CodeCarbon's columns followed by LET's. Writers append whole lines
under ``fcntl.flock``, so many processes can record at once and no row is lost; a file with
another header (LET 0.1.x, plain CodeCarbon) is migrated to the union of columns once, under
the same lock, through a temporary file and ``os.replace``. Every record is exactly one line
(line breaks inside values are replaced), which is what lets a reader resume at a byte offset
and a writer cut off the partial line a killed process left behind.

The tracking path (``append``, ``totals``) uses only the standard library; ``load_results``
imports pandas and pyarrow.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from let_core.errors import LetWarning, StoreError
from let_core.records import (NUMERIC_COLUMNS, REQUIRED_COLUMNS, STORE_COLUMNS, as_float,
                              is_legacy, legacy_fields, primary_measurements, shared_by_ranks)

if TYPE_CHECKING:
    import pandas as pd

STORE_FILE = "emissions.csv"
TOTALS_FILE = ".emissions.totals.json"
_TOTALS_VERSION = 2
_HEADER_PROBE = 1 << 16

Row = Mapping[str, Any]
FILTER_KEYS = ("project_name", "user", "hostname")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    text = str(value)
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text


def _encode(rows: Iterable[Row], columns: Sequence[str], header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _parse_line(line: str) -> list[str]:
    return next(csv.reader([line]), [])


class Store:
    """The central store in one folder."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        if directory is None:
            from let_core.tracker import let_home

            directory = let_home()
        self.directory = Path(directory).expanduser()
        self.path = self.directory / STORE_FILE

    # --------------------------------------------------------------------- locking
    @contextlib.contextmanager
    def _locked(self, exclusive: bool, create: bool) -> Iterator[int | None]:
        """The store's file descriptor under flock, or None when there is no store yet.

        A migration or delete replaces the file; a writer that waited for the lock on the old
        inode would append to a file nobody reads, so it re-opens until both inodes match.
        """
        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the LET store folder {self.directory}: {exc}. "
                                 "Set LET_HOME or output_dir= to a writable folder.") from exc
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        if not exclusive and not create:
            flags = os.O_RDONLY
        while True:
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                if create:
                    raise
                yield None
                return
            except OSError as exc:
                raise StoreError(f"cannot open the LET store {self.path}: {exc}. Check its "
                                 "permissions, or set LET_HOME / output_dir= elsewhere.") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None
                if current is not None and current.st_ino == os.fstat(fd).st_ino:
                    _check_store_file(fd, self.path)
                    yield fd
                    return
            finally:
                os.close(fd)

    # --------------------------------------------------------------------- writing
    def append(self, rows: Sequence[Row]) -> None:
        """Append rows as whole lines under an exclusive lock; cost independent of store size."""
        if not rows:
            return
        with self._locked(exclusive=True, create=True) as fd:
            assert fd is not None
            header = _read_header(fd)
            if header is None:
                os.write(fd, _encode(rows, STORE_COLUMNS, header=True))
            else:
                if not set(STORE_COLUMNS) <= set(header):
                    self._migrate(fd, header)
                    return self.append(rows)
                _cut_partial_tail(fd, self.path)
                os.write(fd, _encode(rows, header, header=False))
            os.fsync(fd)

    def _migrate(self, fd: int, header: list[str]) -> None:
        """Rewrite a foreign-header store with the union of columns, keeping every row."""
        renames = _renamed_columns(header)
        columns = list(STORE_COLUMNS) + [c for c in header if c not in STORE_COLUMNS and c not in renames]
        rows = ({renames.get(k, k): v for k, v in row.items()} for row in _iter_rows(fd, header, 0))
        self._rewrite(fd, columns, (_effective(row) for row in rows))

    def delete(self, **filters: str | None) -> int:
        """Remove the rows matching every given filter, atomically; returns how many."""
        _check_filters(filters)
        with self._locked(exclusive=True, create=False) as fd:
            if fd is None:
                return 0
            header = _read_header(fd)
            if header is None:
                return 0
            removed = sum(1 for row in _iter_rows(fd, header, 0) if _matches(_effective(row), filters))
            if removed:
                self._rewrite(fd, header, (row for row in _iter_rows(fd, header, 0)
                                           if not _matches(_effective(row), filters)))
            return removed

    def _rewrite(self, fd: int, columns: list[str], rows: Iterable[Row]) -> None:
        """Replace the store (whose lock is held) with ``rows``: temporary file, fsync,
        ``os.replace``. The statement totals are rebuilt on the way, so the first statement
        after a migration or delete does not rescan the whole store."""
        import tempfile

        groups: dict[str, Totals] = {}
        grouper = _RunGrouper(groups)
        tmp = tempfile.NamedTemporaryFile("wb", dir=self.directory, prefix=".emissions.",
                                          suffix=".rewriting", delete=False)
        try:
            with tmp:
                tmp.write(_encode([], columns, header=True))
                batch: list[Row] = []
                for row in rows:
                    grouper.add(_effective(dict(row)))
                    batch.append(row)
                    if len(batch) >= 10_000:
                        tmp.write(_encode(batch, columns, header=False))
                        batch = []
                tmp.write(_encode(batch, columns, header=False))
                tmp.flush()
                os.fsync(tmp.fileno())
            grouper.finish()
            os.chmod(tmp.name, os.fstat(fd).st_mode & 0o777)
            written = os.stat(tmp.name)
            os.replace(tmp.name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
            raise
        self._save_cache({"version": _TOTALS_VERSION, "inode": written.st_ino, "header": columns,
                          "offset": written.st_size,
                          "groups": {key: value.to_json() for key, value in groups.items()}})

    # --------------------------------------------------------------------- reading
    def rows(self) -> Iterator[dict[str, str]]:
        """Every complete row, with LET 0.1.x / CodeCarbon rows given LET's columns."""
        with self._locked(exclusive=False, create=False) as fd:
            if fd is None:
                return
            header = _read_header(fd)
            if header is None:
                return
            for row in _iter_rows(fd, header, 0):
                yield _effective(row)

    def header(self) -> list[str] | None:
        with self._locked(exclusive=False, create=False) as fd:
            return None if fd is None else _read_header(fd)

    def totals(self, **filters: str | None) -> Totals:
        """Energy and emissions totals for the statement, summed over the matching runs.

        Kept in a cache file beside the store and brought up to date by reading only the
        bytes appended since, so a run's statement costs the same with 10 or 10 million rows.
        """
        _check_filters(filters)
        with self._locked(exclusive=False, create=False) as fd:
            if fd is None:
                return Totals()
            header = _read_header(fd)
            if header is None:
                return Totals()
            cache = self._load_cache(fd, header)
            size = os.fstat(fd).st_size
            if cache["offset"] < size:
                groups = {key: Totals.from_json(value) for key, value in cache["groups"].items()}
                offset = _accumulate(fd, header, cache["offset"], groups, self.path)
                cache = {**cache, "offset": offset,
                         "groups": {key: value.to_json() for key, value in groups.items()}}
                self._save_cache(cache)
        result = Totals()
        for key, value in cache["groups"].items():
            project, user, hostname = key.split("\x1f")
            if _matches({"project_name": project, "user": user, "hostname": hostname}, filters):
                result = result.merged(Totals.from_json(value))
        return result

    def _load_cache(self, fd: int, header: list[str]) -> dict[str, Any]:
        stat = os.fstat(fd)
        fresh = {"version": _TOTALS_VERSION, "inode": stat.st_ino, "header": header,
                 "offset": _header_length(fd), "groups": {}}
        try:
            with open(self.directory / TOTALS_FILE, encoding="utf-8") as handle:
                cache = json.load(handle)
        except (OSError, ValueError):
            return fresh
        if (not isinstance(cache, dict) or cache.get("version") != _TOTALS_VERSION
                or cache.get("inode") != stat.st_ino or cache.get("header") != header
                or not isinstance(cache.get("offset"), int) or cache["offset"] > stat.st_size):
            return fresh
        return cache

    def _save_cache(self, cache: dict[str, Any]) -> None:
        # Best effort: a read-only store still gets its totals, just computed every time.
        # Each process writes its own temporary name; the newest complete cache wins.
        tmp = self.directory / f".totals.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(cache, handle)
            os.replace(tmp, self.directory / TOTALS_FILE)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


# ------------------------------------------------------------------------- file helpers
def _renamed_columns(header: Sequence[str]) -> dict[str, str]:
    """Columns LET 1.0's development stores named otherwise: ``status`` is now ``run_status``
    (STREP reads a CSV with a ``status`` column as an MLflow summary). Only LET's own stores
    (they have ``backend``) are renamed; a foreign ``status`` column stays as it is."""
    if "backend" in header and "status" in header and "run_status" not in header:
        return {"status": "run_status"}
    return {}


def _check_store_file(fd: int, path: Path) -> None:
    """Refuse, before anything is read or written, a store path that is no emissions file:
    a folder, binary data, or a CSV without CodeCarbon's core columns."""
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise StoreError(f"{path} is not a regular file (a folder?); the LET store is a CSV file. "
                         "Move it aside, or set LET_HOME / output_dir= to another folder.")
    head = os.pread(fd, _HEADER_PROBE, 0)
    if not head:
        return
    end = head.find(b"\n")
    try:
        line = (head if end < 0 else head[:end]).decode("utf-8").lstrip("\ufeff")
        header = _parse_line(line.rstrip("\r"))
    except (UnicodeDecodeError, csv.Error):
        raise StoreError(f"{path} is not a text CSV file, so not an emissions file (LET or "
                         "CodeCarbon). Nothing was read or written; move it aside, or set LET_HOME / "
                         "output_dir= to the folder of your emissions.csv.") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise StoreError(f"{path} is not an emissions file (LET or CodeCarbon): it lacks the "
                         f"column(s) {', '.join(missing)}. Nothing was read or written; move it aside, "
                         "or set LET_HOME / output_dir= to the folder of your emissions.csv.")


def _read_header(fd: int) -> list[str] | None:
    head = os.pread(fd, _HEADER_PROBE, 0)
    if not head:
        return None
    end = head.find(b"\n")
    line = head if end < 0 else head[:end]
    header = _parse_line(line.decode("utf-8", errors="replace").lstrip("\ufeff"))
    if not header or not any(header):
        raise StoreError("the LET store has no readable header line; move it aside and start a new one")
    return header


def _header_length(fd: int) -> int:
    head = os.pread(fd, _HEADER_PROBE, 0)
    end = head.find(b"\n")
    return len(head) if end < 0 else end + 1


def _complete_length(fd: int, size: int) -> int:
    """Bytes up to and including the last line break: everything a finished writer wrote."""
    position = size
    while position > 0:
        start = max(0, position - 65536)
        chunk = os.pread(fd, position - start, start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        position = start
    return 0


def _cut_partial_tail(fd: int, path: Path) -> None:
    """Drop a half-written last line (a writer killed mid-append) so the next row starts clean."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        complete = _complete_length(fd, size)
        warnings.warn(f"{path}: dropped an incomplete last line ({size - complete} bytes) left by "
                      "an interrupted writer", LetWarning, stacklevel=4)
        os.ftruncate(fd, complete)


def _iter_rows(fd: int, header: list[str], offset: int,
               end: int | None = None) -> Iterator[dict[str, str]]:
    """Complete rows from a byte offset; lines with the wrong number of fields are skipped."""
    size = os.fstat(fd).st_size if end is None else end
    stop = _complete_length(fd, size)
    start = offset or _header_length(fd)
    width = len(header)
    bad = 0
    with os.fdopen(os.dup(fd), "rb") as handle:
        handle.seek(start)
        remaining = stop - start
        text = io.TextIOWrapper(io.BufferedReader(_Limited(handle, remaining)), encoding="utf-8",
                                errors="replace", newline="")
        for fields in csv.reader(text):
            if len(fields) != width:
                if fields:
                    bad += 1
                continue
            yield dict(zip(header, fields))
    if bad:
        warnings.warn(f"skipped {bad} malformed line(s) in the LET store", LetWarning, stacklevel=3)


class _Limited(io.RawIOBase):
    """A read-only view of the next ``limit`` bytes of a file."""

    def __init__(self, handle: Any, limit: int) -> None:
        self._handle = handle
        self._left = max(0, limit)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        data = self._handle.read(min(len(buffer), self._left))
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _effective(row: dict[str, str]) -> dict[str, str]:
    return {**row, **legacy_fields(row)} if is_legacy(row) else row


def _check_filters(filters: Mapping[str, Any]) -> None:
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise TypeError(f"unknown filter(s) {sorted(unknown)}; filter by {', '.join(FILTER_KEYS)}")
    for key, value in filters.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"filter {key} must be a string, got {value!r}")


def _matches(row: Mapping[str, Any], filters: Mapping[str, str | None]) -> bool:
    return all(value is None or row.get(key) == value for key, value in filters.items())


# ------------------------------------------------------------------------- totals
class KindTotals:
    """Sums over the primary measurements of one kind (estimate or metered)."""

    __slots__ = ("energy_kwh", "emissions_kg", "runs", "methodologies", "hardware")

    def __init__(self) -> None:
        self.energy_kwh = 0.0
        self.emissions_kg = 0.0
        self.runs = 0
        self.methodologies: dict[str, int] = {}
        self.hardware: dict[str, int] = {}

    def add(self, energy: float, emissions: float, methodologies: Iterable[str],
            hardware: Iterable[str]) -> None:
        self.energy_kwh += energy
        self.emissions_kg += emissions
        self.runs += 1
        for name in methodologies:
            if name:
                self.methodologies[name] = self.methodologies.get(name, 0) + 1
        for name in hardware:
            if name:
                self.hardware[name] = self.hardware.get(name, 0) + 1

    def merged(self, other: KindTotals) -> KindTotals:
        result = KindTotals()
        result.energy_kwh = self.energy_kwh + other.energy_kwh
        result.emissions_kg = self.emissions_kg + other.emissions_kg
        result.runs = self.runs + other.runs
        for target, a, b in ((result.methodologies, self.methodologies, other.methodologies),
                             (result.hardware, self.hardware, other.hardware)):
            target.update(a)
            for key, count in b.items():
                target[key] = target.get(key, 0) + count
        return result

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KindTotals:
        result = cls()
        for name in cls.__slots__:
            setattr(result, name, data[name])
        return result


class Totals:
    """What a paper statement needs: per-kind sums, and the runs measured both ways."""

    def __init__(self) -> None:
        self.estimate = KindTotals()
        self.metered = KindTotals()
        self.paired_runs = 0
        self.paired_estimate_kwh = 0.0
        self.paired_metered_kwh = 0.0
        # Ranks of one multi-process job on one host measure the same machine: per
        # (job, host, backend, hardware) only the largest measurement counts (as `let results`).
        self.job_counted: dict[str, float] = {}

    @property
    def empty(self) -> bool:
        return self.estimate.runs == 0 and self.metered.runs == 0

    def _counted(self, view: _RowView) -> float:
        """The part of a measurement not already counted for another rank of its job."""
        job = view.row.get("job_id", "")
        if not job or not shared_by_ranks(view.scope):
            return view.energy_kwh
        key = "\x1f".join((job, view.row.get("hostname", ""), view.row.get("backend", ""),
                            view.row.get("hardware", "")))
        before = self.job_counted.get(key, 0.0)
        self.job_counted[key] = max(before, view.energy_kwh)
        return max(0.0, view.energy_kwh - before)

    def add_run(self, rows: Sequence[Mapping[str, str]]) -> None:
        views = [_RowView(row) for row in rows]
        energies: dict[str, float] = {}
        for kind in ("estimate", "metered"):
            primary = primary_measurements(views, kind)
            if not primary:
                continue
            counted = [(view, self._counted(view)) for view in primary]
            energy = sum(part for _, part in counted)
            emissions = sum(_emissions(view.row, view.energy_kwh) * (part / view.energy_kwh
                                                                      if view.energy_kwh else 0.0)
                            for view, part in counted)
            getattr(self, kind).add(energy, emissions, [v.row.get("methodology", "") for v in primary],
                                    [v.row.get("hardware", "") for v in primary])
            energies[kind] = energy
        if len(energies) == 2:
            self.paired_runs += 1
            self.paired_estimate_kwh += energies["estimate"]
            self.paired_metered_kwh += energies["metered"]

    def merged(self, other: Totals) -> Totals:
        result = Totals()
        result.estimate = self.estimate.merged(other.estimate)
        result.metered = self.metered.merged(other.metered)
        result.paired_runs = self.paired_runs + other.paired_runs
        result.paired_estimate_kwh = self.paired_estimate_kwh + other.paired_estimate_kwh
        result.paired_metered_kwh = self.paired_metered_kwh + other.paired_metered_kwh
        # Groups are (project, user, host): a job's ranks share one group, so no overlap here.
        result.job_counted = {**self.job_counted, **other.job_counted}
        return result

    def to_json(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_json(), "metered": self.metered.to_json(),
                "paired_runs": self.paired_runs, "paired_estimate_kwh": self.paired_estimate_kwh,
                "paired_metered_kwh": self.paired_metered_kwh, "job_counted": self.job_counted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Totals:
        result = cls()
        result.estimate = KindTotals.from_json(data["estimate"])
        result.metered = KindTotals.from_json(data["metered"])
        result.paired_runs = data["paired_runs"]
        result.paired_estimate_kwh = data["paired_estimate_kwh"]
        result.paired_metered_kwh = data["paired_metered_kwh"]
        result.job_counted = data.get("job_counted", {})
        return result


class _RowView:
    __slots__ = ("row", "kind", "scope", "energy_kwh")

    def __init__(self, row: Mapping[str, str]) -> None:
        self.row = row
        self.kind = row.get("kind", "")
        self.scope = row.get("scope", "") or "system"
        self.energy_kwh = as_float(row.get("energy_consumed"))


def _emissions(row: Mapping[str, str], energy: float) -> float:
    stored = as_float(row.get("emissions"))
    if math.isfinite(stored):
        return stored
    intensity = as_float(row.get("carbon_intensity"))
    return energy * intensity / 1000.0 if math.isfinite(intensity) else 0.0


class _RunGrouper:
    """Feeds rows, run by run, into per-(project, user, host) totals.

    A run's rows are contiguous: they are appended in one locked write.
    """

    def __init__(self, groups: dict[str, Totals]) -> None:
        self.groups = groups
        self.rows: list[Mapping[str, str]] = []

    def add(self, row: Mapping[str, str]) -> None:
        if row.get("task"):
            return  # parts of a run are already inside the run's own energy
        if self.rows and (row.get("run_id") != self.rows[0].get("run_id") or not row.get("run_id")):
            self.finish()
        self.rows.append(row)

    def finish(self) -> None:
        if self.rows:
            key = "\x1f".join(self.rows[0].get(k, "") for k in FILTER_KEYS)
            self.groups.setdefault(key, Totals()).add_run(self.rows)
            self.rows = []


def _accumulate(fd: int, header: list[str], offset: int, groups: dict[str, Totals],
                path: Path | None = None) -> int:
    """Add the runs stored after ``offset`` to ``groups``; returns the offset now covered."""
    end = _complete_length(fd, os.fstat(fd).st_size)
    grouper = _RunGrouper(groups)
    blank: list[Mapping[str, str]] = []
    for row in _iter_rows(fd, header, offset, end=end):
        if _blank_energy(row.get("energy_consumed"), row.get("error")):
            blank.append(row)
        grouper.add(_effective(row))
    grouper.finish()
    if blank and path is not None:
        warn_blank_energy(path, blank)
    return end


def _blank_energy(energy: Any, error: Any) -> bool:
    """A row without an energy figure that does not say why (a failed backend's row does)."""
    return not math.isfinite(as_float(energy)) and not (isinstance(error, str) and error.strip())


def warn_blank_energy(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """One warning naming the rows (run id, timestamp) whose energy cell is empty: they count
    as nothing, and a statement over only such rows would otherwise read as "no stored runs"."""
    names = [f"run {row.get('run_id') or '(no run id)'} at {row.get('timestamp') or '?'}"
             for row in rows[:5]]
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    warnings.warn(f"{path}: {len(rows)} row(s) have no energy_consumed value and are not counted: "
                  f"{'; '.join(names)}{more}. Fill in the energy or delete those rows.",
                  LetWarning, stacklevel=4)


# ------------------------------------------------------------------------- public API
def load_results(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                 user: str | None = None, hostname: str | None = None, *,
                 dataset: str | os.PathLike[str] | None = None,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Stored runs as a pandas DataFrame, one row per (run, backend), optionally filtered.

    Reads the central CSV store and the Parquet dataset together (``dataset=``, else
    ``LET_DATASET``, else ``<store>/runs``; an ``output_dir`` URI such as ``s3://bucket/let``
    is the dataset, the CSV store then being ``$LET_HOME``'s), keeping one row per
    (run_id, backend, task), the CSV store's first. Reads LET 1.x, LET 0.1.x and plain
    CodeCarbon files alike: older rows get LET's columns (project, user and host from
    ``experiment_id``; backend ``codecarbon``).

    Logged metrics and params stay in their JSON columns ``metrics`` / ``params`` and are also
    expanded into one column each, named as MLflow does: ``metrics.accuracy``, ``params.model``.
    A filter that matches nothing gives an empty frame. ``columns=`` reads only those columns
    (and the few that filtering and deduplication need): a table over millions of runs then
    costs a fraction of the memory.
    """
    filters = {"project_name": project_name, "user": user, "hostname": hostname}
    _check_filters(filters)
    from let_core.dataset import default_root, is_uri

    if is_uri(output_dir) and not str(output_dir).startswith("file://"):
        dataset, output_dir = dataset or str(output_dir), None
    elif isinstance(output_dir, str) and output_dir.startswith("file://"):
        output_dir = output_dir[len("file://"):]
    store = Store(output_dir)
    if store.directory.is_file():
        raise StoreError(f"{store.directory} is a file; output_dir names the store's folder (the one "
                         f"holding emissions.csv), e.g. {store.directory.parent}")
    import pandas as pd

    frames = []
    if store.path.exists():
        frame = _normalize_legacy(_read_frame(store, columns))
        for key, value in filters.items():
            if value is not None:
                frame = frame[frame[key] == value]
        if columns is not None:
            # BASE_COLUMNS have served (filters, legacy rows): not carried into the merge with
            # the dataset and its deduplication, where every column costs a copy.
            keep = set(columns) | set(_DEDUP_KEYS)
            frame = frame[[c for c in frame.columns if c in keep]]
        frames.append(frame)
    elif store.directory.exists() and not os.access(store.directory, os.R_OK | os.X_OK):
        raise StoreError(f"cannot read the LET store folder {store.directory}: permission denied")
    parquet = _read_dataset(dataset or default_root(store.directory), filters,
                            None if columns is None else set(columns) | set(_DEDUP_KEYS))
    if parquet is not None:
        frames.append(parquet)
    if not frames:
        return pd.DataFrame({column: pd.Series(dtype=_pandas_dtype(column)) for column in STORE_COLUMNS})
    if len(frames) == 1 and parquet is None:
        frame = frames[0]
    else:
        frame = _deduplicate(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])
    # A fresh RangeIndex, not reset_index(): that copies and consolidates every column (1 s at 1M rows).
    frame.index = pd.RangeIndex(len(frame))
    for column in ("metrics", "params"):
        if column in frame:
            frame = _expand_json(frame, column)
    if columns is not None:
        frame = frame[[c for c in frame.columns if c in set(columns)]]
    return frame


def _read_dataset(root: str | os.PathLike[str], filters: Mapping[str, str | None],
                  columns: Iterable[str] | None = None) -> pd.DataFrame | None:
    """The Parquet dataset's matching rows (only ``columns``, when given), or None when there
    is no dataset there. Legacy rows never reach the dataset, so BASE_COLUMNS are not needed:
    the filters are evaluated by the scanner, and only the deduplication keys must be read."""
    from let_core.dataset import exists, locate, read_frame

    location = locate(root)
    if not exists(location):
        return None
    return read_frame(location, **filters, columns=columns)


_DEDUP_KEYS = ("run_id", "backend", "task")


def _deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, backend, task), the first kept; rows without a run id are all kept."""
    from let_core.keys import duplicated as duplicated_rows

    # Only rows whose run id repeats are compared in full: hashing three text columns of a
    # million rows cost more than reading them.
    duplicated = duplicated_rows(frame, _DEDUP_KEYS)
    return frame[~duplicated] if duplicated.any() else frame


def _expand_json(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``metrics`` JSON cells as ``metrics.<name>`` columns; rows without any get NaN."""
    import pandas as pd

    if column not in frame or frame.empty:
        return frame
    cells = frame[column].fillna("")
    present = cells[cells != ""]
    if present.empty:
        return frame
    parsed: dict[Any, dict[str, Any]] = {}
    for index, text in present.items():
        try:
            value = json.loads(text)
        except ValueError:
            continue  # a hand-edited cell: the JSON text stays in the column
        if isinstance(value, dict):
            parsed[index] = value
    if not parsed:
        return frame
    expanded = pd.DataFrame.from_dict(parsed, orient="index").reindex(frame.index)
    expanded.columns = [f"{column}.{name}" for name in expanded.columns]
    return pd.concat([frame, expanded], axis=1)


def _pandas_dtype(column: str) -> str:
    return "float64" if column in NUMERIC_COLUMNS else "object"


#: Columns load_results always reads: filters, legacy normalization and deduplication need them.
BASE_COLUMNS: tuple[str, ...] = ("project_name", "user", "hostname", "run_id", "backend", "task",
                                 "experiment_id", "codecarbon_version", "cpu_model", "gpu_model",
                                 "run_status", "methodology", "kind", "scope", "hardware")


def _read_frame(store: Store, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The CSV store as a frame; only ``columns`` (plus BASE_COLUMNS) when given, which is
    what keeps memory at the data's size for tables over millions of rows."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with store._locked(exclusive=False, create=False) as fd:
        if fd is None:
            return pd.DataFrame(columns=list(STORE_COLUMNS))
        header = _read_header(fd)
        complete = _complete_length(fd, os.fstat(fd).st_size)
        # Only the complete lines: a killed writer's partial last line is not a row.
        with pa.memory_map(str(store.path)) as mapped:
            data = mapped.read_buffer(complete)
    if header is None:
        return pd.DataFrame(columns=list(STORE_COLUMNS))
    skipped: list[int] = []

    def skip(row: Any) -> str:
        skipped.append(row.number)
        return "skip"

    wanted = None if columns is None else set(columns) | set(BASE_COLUMNS)
    included = [c for c in header if wanted is None or c in wanted]

    def read(typed: bool) -> pa.Table:
        types = {c: (pa.float64() if typed and c in NUMERIC_COLUMNS else pa.string()) for c in header}
        return pacsv.read_csv(
            pa.BufferReader(data),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False,
                                                 include_columns=included),
        )

    try:
        frame = _to_frame(read(typed=True))
    except pa.ArrowInvalid:
        # A damaged cell in a number column: read everything as text, keep what parses.
        skipped.clear()
        try:
            frame = _to_frame(read(typed=False))
        except pa.ArrowInvalid as exc:
            raise StoreError(f"{store.path} cannot be read as CSV past its header ({exc}); is it "
                             "damaged? Move it aside, or check it with a text editor.") from exc
        for column in NUMERIC_COLUMNS:
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if skipped:
        warnings.warn(f"{store.path}: skipped {len(skipped)} malformed line(s)", LetWarning, stacklevel=3)
    frame = frame.rename(columns=_renamed_columns(header))
    if "energy_consumed" in frame:
        errors = frame["error"].fillna("").astype(str).str.strip() if "error" in frame else ""
        blank = frame["energy_consumed"].isna() & (errors == "")
        if blank.any():
            shown = [c for c in ("run_id", "timestamp") if c in frame]
            warn_blank_energy(store.path, frame.loc[blank, shown].astype(object).fillna("")
                              .to_dict("records"))
    missing = [c for c in STORE_COLUMNS if c not in frame and (wanted is None or c in wanted)]
    if missing:
        import numpy as np

        filler = {c: (np.full(len(frame), np.nan) if c in NUMERIC_COLUMNS
                      else pd.arrays.ArrowExtensionArray(pa.array([""] * len(frame), pa.string())))
                  for c in missing}
        frame = pd.concat([frame, pd.DataFrame(filler, index=frame.index, copy=False)], axis=1, copy=False)
    return frame


def _to_frame(table: Any) -> pd.DataFrame:
    """Arrow columns as pandas columns without copies: text stays Arrow-backed, numbers numpy.

    ``Table.to_pandas`` converts a million text cells into Python objects and consolidates
    blocks, which costs more than parsing the CSV.
    """
    import pandas as pd
    import pyarrow as pa

    columns: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_string(column.type):
            columns[name] = pd.arrays.ArrowExtensionArray(column)
        else:
            columns[name] = column.to_numpy()
    return pd.DataFrame(columns, copy=False)


def _normalize_legacy(frame: pd.DataFrame) -> pd.DataFrame:
    """LET's columns for LET 0.1.x / CodeCarbon rows, computed once per distinct combination
    of the fields ``legacy_fields`` reads (a handful per file), then spread by group code.

    Works on Arrow arrays (join, dictionary-encode, take), so a million legacy rows cost
    about as much as parsing them.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    legacy = pa.array((frame["backend"].fillna("") == "").to_numpy(dtype=bool))
    if not pc.any(legacy).as_py():
        return frame
    keys = ["experiment_id", "codecarbon_version", "cpu_model", "gpu_model", "run_status"]
    text = {k: _arrow_text(frame[k]) if k in frame else pa.nulls(len(frame), pa.string()).fill_null("")
            for k in keys}
    joined = pc.binary_join_element_wise(*(text[k] for k in keys), "\x1f")
    encoded = pc.dictionary_encode(pc.if_else(legacy, joined, pa.scalar("", pa.string())))
    combos = [dict(zip(keys, value.split("\x1f"))) if value else None
              for value in encoded.dictionary.to_pylist()]
    derived = [legacy_fields(combo) if combo is not None else {} for combo in combos]
    for column in sorted({name for fields in derived for name in fields}):
        current = _arrow_text(frame[column]) if column in frame else pa.array([""] * len(frame), pa.string())
        # None in the dictionary: a field legacy_fields leaves alone for that combination.
        dictionary = pa.array([fields.get(column) for fields in derived], pa.string())
        new = pa.DictionaryArray.from_arrays(encoded.indices, dictionary).dictionary_decode()
        merged = pc.if_else(pc.and_(legacy, pc.is_valid(new)), new, current)
        frame[column] = pd.arrays.ArrowExtensionArray(merged)
    return frame


def _arrow_text(series: pd.Series) -> Any:
    """A text column as an Arrow string array, blanks for missing values."""
    import pyarrow as pa

    array = pa.array(series.array) if hasattr(series.array, "__arrow_array__") else pa.array(
        series.astype(object).where(series.notna(), "").astype(str).tolist(), pa.string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string():
        array = array.cast(pa.string())
    return array.fill_null("")


def delete_results(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None) -> int:
    """Delete only the stored rows matching every given filter (none given: all rows).

    Atomic: the store is rewritten to a temporary file and swapped in under the lock.
    Returns how many rows were deleted.
    """
    return Store(output_dir).delete(project_name=project_name, user=user, hostname=hostname)
