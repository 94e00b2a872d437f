"""The central store: ``emissions.csv`` in ``$LET_HOME`` (default ``~/.let``) or ``output_dir``.

One row per (run, backend), CodeCarbon's columns followed by LET's. Writers append whole lines
under ``fcntl.flock``, so many processes can record at once and no row is lost; a file with
another header (LET 0.1.x, plain CodeCarbon) is migrated to the union of columns once, under
the same lock, through a temporary file and ``os.replace``. Every record is exactly one line
(line breaks inside values are replaced), which is what lets a reader resume at a byte offset
and a writer cut off the partial line a killed process left behind.

This module is the file and nothing else: reading it into frames and counting what runs
amount to live in ``let_core.results``. Only the standard library is used here.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from let_core.errors import LetWarning, StoreError
from let_core.records import STORE_COLUMNS, is_legacy, legacy_fields

STORE_FILE = "emissions.csv"
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
            from let_core.config import let_home

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
        columns = list(STORE_COLUMNS) + [c for c in header if c not in STORE_COLUMNS]
        self._rewrite(fd, columns, (_effective(row) for row in _iter_rows(fd, header, 0)))

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
        ``os.replace``. The totals cache sees the new file and rebuilds itself."""
        import tempfile

        tmp = tempfile.NamedTemporaryFile("wb", dir=self.directory, prefix=".emissions.",
                                          suffix=".rewriting", delete=False)
        try:
            with tmp:
                tmp.write(_encode([], columns, header=True))
                batch: list[Row] = []
                for row in rows:
                    batch.append(row)
                    if len(batch) >= 10_000:
                        tmp.write(_encode(batch, columns, header=False))
                        batch = []
                tmp.write(_encode(batch, columns, header=False))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp.name, os.fstat(fd).st_mode & 0o777)
            os.replace(tmp.name, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
            raise

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


# ------------------------------------------------------------------------- file helpers
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


def delete_results(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None) -> int:
    """Delete only the stored rows matching every given filter (none given: all rows).

    Atomic: the store is rewritten to a temporary file and swapped in under the lock.
    Returns how many rows were deleted.
    """
    return Store(output_dir).delete(project_name=project_name, user=user, hostname=hostname)


# Reading moved to let_core.results; these names keep old imports working (lazily: no pandas here).
def __getattr__(name: str) -> Any:
    if name == "load_results":
        from let_core.results.loading import load_results

        return load_results
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rescue_rows(rows: Sequence[Row]) -> str:
    """Keep a run whose store is unwritable in a file of its own (the system temporary folder),
    in the store's columns, so ``let merge FILE --into DIR`` adds it later. Returns the path."""
    import tempfile

    handle, path = tempfile.mkstemp(prefix="let-unsaved-run-", suffix=".csv")
    with os.fdopen(handle, "wb") as out:
        out.write(_encode(rows, STORE_COLUMNS, header=True))
    return path
