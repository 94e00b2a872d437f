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
import errno
import fcntl
import functools
import io
import math
import os
import re
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from let_core import appendlog
from let_core.errors import LetError, LetWarning, StoreError
from let_core.records import REQUIRED_COLUMNS, STORE_COLUMNS, is_legacy, legacy_fields

STORE_FILE = "emissions.csv"
_HEADER_PROBE = 1 << 16
#: Temporary files of a rewrite (migration, delete, repair); renamed over the store when
#: complete, so one left behind was a killed rewriter's and is removed under the next lock.
REWRITE_PREFIX, REWRITE_SUFFIX = ".emissions.", ".rewriting"
#: Text cells longer than this (exception messages, params, notes) are cut when written, with
#: TRUNCATED_MARKER saying how long they were: one field must not make the store unreadable.
MAX_FIELD_CHARS = 64 * 1024
TRUNCATED_MARKER = "...[LET: truncated, {length} characters in all]"

# Fields of any length load: the csv module's default limit (128 KiB) made one long exception
# message break every statement. The limit is process-wide; raising it harms nothing.
csv.field_size_limit(sys.maxsize)

Row = Mapping[str, Any]
FILTER_KEYS = ("project_name", "user", "hostname")

# C0 control characters but tab, and DEL: they break terminals and other tools' parsers.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _cell(value: Any, raw: bool = False) -> str:
    """A value as a store cell: one line always; new values (not ``raw``, i.e. not rows
    carried over by a rewrite) also get control characters escaped and length capped."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    text = value if isinstance(value, str) else str(value)
    if not text or (text.isprintable() and len(text) <= MAX_FIELD_CHARS):
        return text  # the common case: nothing to replace, escape or cut
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if raw:
        return text
    if _CONTROL.search(text):
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + TRUNCATED_MARKER.format(length=len(text))
    return text


def _encode(rows: Iterable[Row], columns: Sequence[str], header: bool, raw: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column), raw) for column in columns])
    # Lone surrogates (undecodable bytes of a file name, say) become escapes, not an error.
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


def _parse_line(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (full disk, signal) is not success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[written:]


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
        Waiting is bounded (``LET_LOCK_TIMEOUT``): a stopped holder gives a StoreError naming
        its PID (from the kernel's lock table), not a hang.
        """
        from let_core.config import lock_timeout

        if create:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the LET store folder {self.directory}: {exc}. "
                                 "Set LET_HOME or output_dir= to a writable folder.") from exc
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        if not exclusive and not create:
            flags = os.O_RDONLY
        deadline = time.monotonic() + lock_timeout()
        while True:
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                if create:
                    raise StoreError(f"the LET store {self.path} vanished while opening it; "
                                     "retry") from None
                yield None
                return
            except IsADirectoryError:
                raise StoreError(f"{self.path} is a folder, not the store file; move it aside "
                                 "(LET creates emissions.csv itself)") from None
            except OSError as exc:
                raise StoreError(f"cannot open the LET store {self.path}: {exc}. Check its "
                                 "permissions, or set LET_HOME / output_dir= elsewhere.") from exc
            try:
                if stat.S_ISDIR(os.fstat(fd).st_mode):  # O_RDONLY opens a folder without error
                    raise StoreError(f"{self.path} is a folder, not the store file; move it aside "
                                     "(LET creates emissions.csv itself)")
                self._flock(fd, exclusive, deadline)
                try:
                    current = os.stat(self.path)
                except FileNotFoundError:
                    current = None
                if current is not None and current.st_ino == os.fstat(fd).st_ino:
                    if exclusive:
                        self._clean_orphans()
                    yield fd
                    return
            finally:
                os.close(fd)

    def _flock(self, fd: int, exclusive: bool, deadline: float) -> None:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, mode)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreError(self._lock_message()) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def _lock_holders(self) -> list[int]:
        """PIDs holding a lock on the store file, from the kernel's own table (/proc/locks on
        Linux): the actual holder, not a note it might have failed to write. Empty elsewhere."""
        try:
            info = os.stat(self.path)
            key = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
            with open("/proc/locks", encoding="ascii", errors="replace") as table:
                lines = table.readlines()
        except OSError:
            return []
        holders = []
        for line in lines:
            parts = line.split()
            # "1: FLOCK  ADVISORY  WRITE 4554 fe:00:2197359 0 EOF"; waiters carry a "->".
            if len(parts) >= 6 and parts[1] == "FLOCK" and "->" not in parts and parts[5] == key:
                with contextlib.suppress(ValueError):
                    holders.append(int(parts[4]))
        return sorted(set(holders))

    def _lock_message(self) -> str:
        from let_core.config import lock_timeout

        holders = [pid for pid in self._lock_holders() if pid != os.getpid()]
        if holders:
            who = ", ".join(str(pid) for pid in holders)
            holder = (f" It is held by PID {who}; `ps -o pid,stat,cmd -p {holders[0]}` shows it "
                      "(state T: stopped).")
        else:
            holder = f" `fuser {self.path}` shows who holds it."
        return (f"gave up waiting {lock_timeout():g} s for the lock of the LET store {self.path}."
                f"{holder} Resume (kill -CONT) or end the process holding it, or set "
                "LET_LOCK_TIMEOUT to wait longer.")

    def _clean_orphans(self) -> None:
        """Remove temporary files of rewriters that died: with the exclusive lock held on the
        current file no rewrite is in progress, so any left is an orphan."""
        with contextlib.suppress(OSError):
            for path in self.directory.glob(f"{REWRITE_PREFIX}*{REWRITE_SUFFIX}"):
                with contextlib.suppress(OSError):
                    path.unlink()

    # --------------------------------------------------------------------- writing
    def append(self, rows: Sequence[Row]) -> None:
        """Append rows as whole lines under an exclusive lock; cost independent of store size.

        The rows are written completely or not at all: when the store cannot take them (full
        disk, I/O error, a lock that is never released, a file LET does not understand) the
        file is left as it was and the rows go to the rescue file, which the StoreError names.
        """
        if not rows:
            return
        try:
            self._append(rows)
        except (LetError, OSError) as exc:
            raise StoreError(f"{exc} {self._rescue(rows)}") from exc
        self._fold_backups()

    def _append(self, rows: Sequence[Row]) -> None:
        with self._locked(exclusive=True, create=True) as fd:
            assert fd is not None
            self._append_locked(fd, rows)

    def _append_locked(self, fd: int, rows: Sequence[Row]) -> None:
        header = _read_header(fd)
        if header is None:
            self._write_rows(fd, 0, _encode(rows, _columns_for(rows, STORE_COLUMNS), header=True))
            return
        _check_header(header, self.path)
        wanted = _columns_for(rows, STORE_COLUMNS)
        if not set(wanted) <= set(header):
            self._migrate(fd, header, extra=wanted)
            # The file was replaced: append to the new one, under its own lock (ours is on
            # the old inode, which nobody else can lock any more).
            return self._append(rows)
        before = appendlog.state(fd)
        start = _fix_tail(fd, header, self.path)
        self._write_rows(fd, start, _encode(rows, header, header=False))
        if start == before[2]:  # (a torn tail set aside changed bytes: no chain)
            appendlog.record(before, appendlog.state(fd))

    def _write_rows(self, fd: int, start: int, data: bytes) -> None:
        """Write ``data`` at the end (``start``) and fsync; on failure cut the file back to
        ``start`` so no half line stays, and raise StoreError."""
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
                os.fsync(fd)
            raise StoreError(f"could not write to the LET store {self.path}: {exc}. The store "
                             "was left as it was before this run"
                             + (" (the disk is full: free some space)." if exc.errno == errno.ENOSPC
                                else ".")) from exc

    def _rescue(self, rows: Sequence[Row]) -> str:
        """Keep rows the store could not take in the store's rescue file; the sentence to add
        to the error. ``let doctor --repair`` (or ``let merge``) puts them back."""
        from let_core.config import recovery_file

        target = recovery_file("rescue", self.path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                header = _read_header(fd)
                columns = header or _columns_for(rows, STORE_COLUMNS)
                start = _fix_tail(fd, header, target) if header else 0
                try:
                    _write_all(fd, _encode(rows, columns, header=header is None))
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        except (OSError, StoreError) as exc:
            return (f"The run could not be saved to the rescue file {target} either ({exc}); "
                    "its figures are in what stop() returned.")
        return (f"The run was saved to {target}; run `let doctor --repair` to put it into the "
                "store once the problem is fixed.")

    def _migrate(self, fd: int, header: list[str], extra: Sequence[str] = STORE_COLUMNS) -> None:
        """Rewrite a foreign-header store with the union of columns, keeping every row."""
        columns = list(extra) + [c for c in header if c not in extra]
        renames = _renamed_columns(header)
        columns = list(STORE_COLUMNS) + [c for c in columns if c not in STORE_COLUMNS and c not in renames]
        _require_parsable(fd, header, self.path)  # first: a refusal changes nothing
        _fix_tail(fd, header, self.path)
        rows = ({renames.get(k, k): v for k, v in row.items()} for row in _iter_rows(fd, header, 0))
        self._rewrite(fd, columns, (_effective(row) for row in rows))

    def delete(self, **filters: str | None) -> int:
        """Remove the rows matching every given filter, atomically; returns how many.

        A store with lines LET cannot parse is not rewritten (they would be lost): StoreError
        pointing to ``let doctor``.
        """
        _check_filters(filters)
        with self._locked(exclusive=True, create=False) as fd:
            if fd is None:
                return 0
            header = _read_header(fd)
            if header is None:
                return 0
            _check_header(header, self.path)
            _require_parsable(fd, header, self.path)  # first: a refusal changes nothing
            _fix_tail(fd, header, self.path)
            removed = sum(1 for row in _iter_rows(fd, header, 0) if _matches(_effective(row), filters))
            if removed:
                self._rewrite(fd, header, (row for row in _iter_rows(fd, header, 0)
                                           if not _matches(_effective(row), filters)))
            return removed

    def _rewrite(self, fd: int, columns: list[str], rows: Iterable[Row]) -> None:
        """Replace the store (whose lock is held) with ``rows``: temporary file, fsync,
        ``os.replace``, fsync of the folder. Readers hold the old file open and see the old
        set, or open the new one; a crash leaves the old file and an orphan temporary file,
        removed under the next exclusive lock. The totals cache sees the new file and rebuilds."""
        import tempfile

        try:
            tmp = tempfile.NamedTemporaryFile("wb", dir=self.directory, prefix=REWRITE_PREFIX,
                                              suffix=REWRITE_SUFFIX, delete=False)
        except OSError as exc:
            raise StoreError(f"cannot rewrite the LET store {self.path}: {exc}; nothing was changed") from exc
        try:
            with tmp:
                tmp.write(_encode([], columns, header=True))
                batch: list[Row] = []
                # raw: rows already stored are carried over as they are (no cap, no escapes).
                for row in rows:
                    batch.append(row)
                    if len(batch) >= 10_000:
                        tmp.write(_encode(batch, columns, header=False, raw=True))
                        batch = []
                tmp.write(_encode(batch, columns, header=False, raw=True))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp.name, os.fstat(fd).st_mode & 0o777)
            os.replace(tmp.name, self.path)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
            raise StoreError(f"cannot rewrite the LET store {self.path}: {exc}; nothing was "
                             "changed") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # --------------------------------------------------------------------- CodeCarbon .bak files
    def backups(self) -> list[Path]:
        """CodeCarbon's backups beside the store (``emissions.csv.bak``, then
        ``emissions.csv_0.bak``, ``_1`` ...): CodeCarbon (and LET 0.1.x) move a store whose
        header they do not know there and start a new file."""
        def number(path: Path) -> int:
            if path.name == f"{STORE_FILE}.bak":
                return -1
            digits = path.name[len(STORE_FILE) + 1:-len(".bak")]
            return int(digits) if digits.isdigit() else -2

        with contextlib.suppress(OSError):
            found = [p for p in self.directory.glob(f"{STORE_FILE}*.bak") if number(p) > -2 and p.is_file()]
            return sorted(found, key=number)
        return []

    def _fold_backups(self) -> None:
        """Fold rows of CodeCarbon .bak files back into the store (once per file state)."""
        backups = self.backups()
        if not backups:
            return
        with contextlib.suppress(StoreError, OSError):
            added = self.fold_backups(backups)
            if added:
                warnings.warn(f"{self.path}: put back {added} row(s) from "
                              f"{', '.join(p.name for p in backups)} (files CodeCarbon or LET 0.1.x "
                              "moved aside on a header change); the .bak files are kept",
                              LetWarning, stacklevel=3)

    def fold_backups(self, backups: Sequence[Path] | None = None) -> int:
        """Append the rows of ``backups`` (CodeCarbon .bak files, the rescue file) that the
        store lacks (by run id, backend and task; rows without a run id by their whole
        content); returns how many. Each file is read again only when it changed. Deletes
        nothing."""
        import json

        from let_core.config import cache_file

        backups = self.backups() if backups is None else list(backups)
        seen_file = cache_file("bak-folded", self.path)
        try:
            seen = json.loads(seen_file.read_text())
            assert isinstance(seen, dict)
        except (OSError, ValueError, AssertionError):
            seen = {}
        pending = []
        for path in backups:
            try:
                info = path.stat()
            except OSError:
                continue
            state = [info.st_ino, info.st_size, info.st_mtime_ns]
            if seen.get(str(path)) != state:
                pending.append((path, state))
        if not pending:
            return 0
        # Compare and append under one exclusive lock: two processes folding the same .bak at
        # once must not both add its rows.
        with self._locked(exclusive=True, create=True) as fd:
            assert fd is not None
            header = _read_header(fd)
            present = ({_identity(_effective(row)) for row in _iter_rows(fd, header, 0)}
                       if header is not None else set())
            new: list[dict[str, str]] = []
            for path, _ in pending:
                for row in read_rows_file(path):
                    key = _identity(row)
                    if key not in present:
                        present.add(key)
                        new.append(row)
            if new:
                self._append_locked(fd, new)
        with contextlib.suppress(OSError):
            seen.update({str(path): state for path, state in pending})
            seen_file.parent.mkdir(parents=True, exist_ok=True)
            seen_file.write_text(json.dumps(seen))
        return len(new)

    # --------------------------------------------------------------------- reading
    def rows(self) -> Iterator[dict[str, str]]:
        """Every row, with LET 0.1.x / CodeCarbon rows given LET's columns."""
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


def _tail(fd: int) -> tuple[int, int]:
    """(size, start of the last line): equal when the file ends with a line break."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size, size
    return size, _complete_length(fd, size)


def _is_row(data: bytes, width: int) -> bool:
    fields = _parse_line(data.decode("utf-8", errors="replace"))
    return len(fields) == width


def _data_end(fd: int, width: int) -> int:
    """Where the rows end: the whole file when its last line, even without a final line break
    (many tools write files that way), is a complete row; else before that torn line.
    Readers hold the shared lock, so a live writer's half line is never seen."""
    size, last = _tail(fd)
    if last < size and last >= _header_length(fd) and _is_row(os.pread(fd, size - last, last), width):
        return size
    return last


def _fix_tail(fd: int, header: list[str] | None, path: Path) -> int:
    """Make the file end with a line break before an append; returns where new bytes go.

    A last line without its line break that is a complete row gets the line break. A torn
    line (a writer killed mid-append) is moved to the quarantine file and reported, never
    just dropped.
    """
    size, last = _tail(fd)
    if last == size:
        return size
    try:
        data = os.pread(fd, size - last, last)
        if header is None or last < _header_length(fd) or last == 0 or _is_row(data, len(header)):
            _write_all(fd, b"\n")
            return size + 1
        where = _quarantine(path, [data])
        os.ftruncate(fd, last)
    except OSError as exc:
        raise StoreError(f"could not repair the end of {path}: {exc}") from exc
    warnings.warn(f"{path}: moved a torn last line ({size - last} bytes, left by an interrupted "
                  f"writer) to {where}", LetWarning, stacklevel=4)
    return last


def _quarantine(path: Path, lines: Sequence[bytes]) -> Path:
    """Append raw lines LET cannot parse to the store's quarantine file (kept, never cleaned)."""
    from let_core.config import recovery_file

    target = recovery_file("quarantine", path, ".txt")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def _renamed_columns(header: Sequence[str]) -> dict[str, str]:
    """Columns LET 1.0's development stores named otherwise: ``status`` is now ``run_status``
    (STREP reads a CSV with a ``status`` column as an MLflow summary). Only LET's own stores
    (they have ``backend``) are renamed; a foreign ``status`` column stays as it is."""
    if "backend" in header and "status" in header and "run_status" not in header:
        return {"status": "run_status"}
    return {}


def check_emissions_header(fd: int, path: Path) -> None:
    """Refuse to read a file that is no emissions file: binary data, or a CSV without the
    columns every CodeCarbon and LET file has. (``let doctor`` opens such files itself.)"""
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


def header_problem(header: Sequence[str]) -> str | None:
    """Why a header cannot be mapped to LET's columns, or None."""
    if any(not name.strip() for name in header):
        return "it has an empty column name"
    joined = "".join(header)
    damaged = ([name for name in header if _CONTROL.search(name) or "\ufffd" in name]
               if _CONTROL.search(joined) or "\ufffd" in joined else [])
    if damaged:
        return f"column name(s) {damaged[:3]!r} hold control characters or invalid bytes"
    duplicates = (sorted({name for name in header if list(header).count(name) > 1})
                  if len(set(header)) < len(header) else [])
    if duplicates:
        return f"column(s) {duplicates[:3]} appear twice"
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        return f"it lacks the column(s) {missing} every emissions file has"
    return None


@functools.lru_cache(maxsize=64)
def _cached_header_problem(header: tuple[str, ...]) -> str | None:
    return header_problem(header)


def _check_header(header: Sequence[str], path: Path) -> None:
    problem = _cached_header_problem(tuple(header))
    if problem is not None:
        raise StoreError(f"the header of {path} is damaged or not an emissions file's ({problem}); "
                         "LET does not write to a file it does not understand. Run `let doctor` to "
                         "see every problem, `let doctor --repair` to fix what can be fixed.")


def scan_lines(fd: int, header: list[str], end: int | None = None) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, fields, valid UTF-8) of every record after the header, up to ``end``
    (default: where the rows end). Line 1 is the header."""
    stop = _data_end(fd, len(header)) if end is None else end
    # surrogateescape keeps bytes that are not UTF-8 visible, so they can be reported.
    for first, fields in _records(fd, _header_length(fd), stop, errors="surrogateescape"):
        yield first, fields, not any(_SURROGATE.search(field) for field in fields)


def _records(fd: int, start: int, stop: int, errors: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record between two byte offsets of the store;
    numbering starts after line 1, the header."""
    with os.fdopen(os.dup(fd), "rb") as handle:
        handle.seek(start)
        text = io.TextIOWrapper(io.BufferedReader(_Limited(handle, stop - start)), encoding="utf-8",
                                errors=errors, newline="")
        reader = csv.reader(text)
        line = 1
        for fields in reader:
            first, line = line + 1, reader.line_num + 1
            yield first, fields


_SURROGATE = re.compile("[\udc80-\udcff]")


def problem_lines(fd: int, header: list[str]) -> list[tuple[int, str]]:
    """(line number, what is wrong) for each record a rewrite could not carry over unchanged."""
    problems = []
    width = len(header)
    for number, fields, valid in scan_lines(fd, header):
        if not fields:
            continue
        if len(fields) != width:
            problems.append((number, f"{len(fields)} fields where the header names {width}"))
        elif not valid:
            problems.append((number, "bytes that are not UTF-8"))
    return problems


def _require_parsable(fd: int, header: list[str], path: Path) -> None:
    problems = problem_lines(fd, header)
    if problems:
        where = ", ".join(f"line {n} ({what})" for n, what in problems[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise StoreError(f"{path} has lines LET cannot parse: {where}{more}. LET does not rewrite "
                         "a file it does not understand (those lines would be lost). Run `let doctor` "
                         "to see them, `let doctor --repair` to move them to a quarantine file.")


def _iter_rows(fd: int, header: list[str], offset: int,
               end: int | None = None) -> Iterator[dict[str, str]]:
    """Rows from a byte offset up to ``end`` (default: where the rows end); lines with the
    wrong number of fields are skipped and reported with their line numbers."""
    stop = _data_end(fd, len(header)) if end is None else end
    start = offset or _header_length(fd)
    width = len(header)
    bad: list[int] = []
    for first, fields in _records(fd, start, stop, errors="replace"):
        if len(fields) != width:
            if fields:
                bad.append(first)
            continue
        yield dict(zip(header, fields))
    if bad:
        where = ("line(s) " + ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
                 if start <= _header_length(fd) else f"{len(bad)} line(s) after byte {start}")
        warnings.warn(f"skipped {len(bad)} malformed line(s) in the LET store ({where}); "
                      "`let doctor` shows them", LetWarning, stacklevel=3)


def _columns_for(rows: Sequence[Row], base: Sequence[str]) -> list[str]:
    """``base`` and any further keys the rows carry (rows from another tool's file)."""
    known = set(base)
    if all(known.issuperset(row) for row in rows):
        return list(base)  # the common case: a run's own rows
    extra: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in known:
                extra[key] = None
    return list(base) + list(extra)


def _identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes a stored row the same row: run id, backend, task; the whole row without a run id."""
    if row.get("run_id"):
        return (str(row.get("run_id")), str(row.get("backend") or ""), str(row.get("task") or ""))
    return tuple(f"{k}={v}" for k, v in sorted(row.items()) if v not in (None, ""))


def read_rows_file(path: Path) -> list[dict[str, str]]:
    """Rows of another emissions-shaped CSV file (a CodeCarbon .bak, a rescue file), with LET's
    columns derived for old rows; lines it cannot parse are skipped with a warning."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        header = _read_header(fd)
        if header is None:
            return []
        return [_effective(row) for row in _iter_rows(fd, header, 0)]
    finally:
        os.close(fd)


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


# Reading moved to let_core.results; these names keep old imports working (lazily: no pandas here).
def __getattr__(name: str) -> Any:
    if name == "load_results":
        from let_core.results.loading import load_results

        return load_results
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

