"""The central store: ``emissions.csv`` in ``$LET_HOME`` (default ``~/.let``) or ``output_dir``.

One row per (run, backend), CodeCarbon's columns followed by LET's. Writers append whole lines
under ``fcntl.flock``, so many processes can record at once and no row is lost; a file with
another header (LET 0.1.x, plain CodeCarbon) is migrated to the union of columns once, under
the same lock, through a temporary file and ``os.replace``. Every record is exactly one line
(line breaks inside values are replaced), which is what lets a reader resume at a byte offset
and a writer cut off the partial line a killed process left behind.

This module is the file and its lock: the bytes of it are ``let_core.csvfile``'s, its columns
``let_core.schema``'s, and reading it into frames and counting what runs amount to live in
``let_core.results``. Only the standard library is used here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from let_core import appendlog
from let_core.csvfile import (
    check_header,
    encode,
    fix_tail,
    iter_rows,
    open_regular,
    read_header,
    read_rows_file,
    require_parsable,
    write_all,
)
from let_core.errors import LetError, LetWarning, StoreError
from let_core.schema import (
    STORE_COLUMNS,
    Row,
    check_filters,
    columns_for,
    effective,
    identity,
    matches,
    renamed_columns,
)

STORE_FILE = "emissions.csv"
#: Temporary files of a rewrite (migration, delete, repair); renamed over the store when
#: complete, so one left behind was a killed rewriter's and is removed under the next lock.
REWRITE_PREFIX, REWRITE_SUFFIX = ".emissions.", ".rewriting"


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
    def locked(self, exclusive: bool, create: bool) -> Iterator[int | None]:
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
                fd = open_regular(self.path, flags)
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
        with self.locked(exclusive=True, create=True) as fd:
            assert fd is not None
            self._append_locked(fd, rows)

    def _append_locked(self, fd: int, rows: Sequence[Row]) -> None:
        header = read_header(fd)
        if header is None:
            self._write_rows(fd, 0, encode(rows, columns_for(rows, STORE_COLUMNS), header=True))
            return
        check_header(fd, header, self.path)
        wanted = columns_for(rows, STORE_COLUMNS)
        if not set(wanted) <= set(header):
            self._migrate(fd, header, extra=wanted)
            # The file was replaced: append to the new one, under its own lock (ours is on
            # the old inode, which nobody else can lock any more).
            return self._append(rows)
        before = appendlog.state(fd)
        start = fix_tail(fd, header, self.path)
        self._write_rows(fd, start, encode(rows, header, header=False))
        if start == before[2]:  # (a torn tail set aside changed bytes: no chain)
            appendlog.record(before, appendlog.state(fd))

    def _write_rows(self, fd: int, start: int, data: bytes) -> None:
        """Write ``data`` at the end (``start``) and fsync; on failure cut the file back to
        ``start`` so no half line stays, and raise StoreError."""
        try:
            write_all(fd, data)
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
        to the error. ``lett doctor --repair`` (or ``lett merge``) puts them back."""
        from let_core.config import recovery_file

        target = recovery_file("rescue", self.path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = open_regular(target, os.O_RDWR | os.O_APPEND | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                header = read_header(fd)
                columns = header or columns_for(rows, STORE_COLUMNS)
                start = fix_tail(fd, header, target) if header else 0
                try:
                    write_all(fd, encode(rows, columns, header=header is None))
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        except (OSError, StoreError) as exc:
            return (f"The run could not be saved to the rescue file {target} either ({exc}); "
                    "its figures are in what stop() returned.")
        return (f"The run was saved to {target}; run `lett doctor --repair` to put it into the "
                "store once the problem is fixed.")

    def _migrate(self, fd: int, header: list[str], extra: Sequence[str] = STORE_COLUMNS) -> None:
        """Rewrite a foreign-header store with the union of columns, keeping every row."""
        columns = list(extra) + [c for c in header if c not in extra]
        renames = renamed_columns(header)
        columns = list(STORE_COLUMNS) + [c for c in columns if c not in STORE_COLUMNS and c not in renames]
        require_parsable(fd, header, self.path)  # first: a refusal changes nothing
        fix_tail(fd, header, self.path)
        rows = ({renames.get(k, k): v for k, v in row.items()} for row in iter_rows(fd, header, 0))
        self.rewrite(fd, columns, (effective(row) for row in rows))

    def delete(self, *, dry_run: bool = False, **filters: str | None) -> int:
        """Remove the rows matching every given filter, atomically; returns how many
        (``dry_run``: only count them, refusing as the delete would).

        A store with lines LET cannot parse is not rewritten (they would be lost): StoreError
        pointing to ``lett doctor``.
        """
        check_filters(filters)
        with self.locked(exclusive=True, create=False) as fd:
            if fd is None:
                return 0
            header = read_header(fd)
            if header is None:
                return 0
            check_header(fd, header, self.path)
            require_parsable(fd, header, self.path)  # first: a refusal changes nothing
            fix_tail(fd, header, self.path)
            removed = sum(1 for row in iter_rows(fd, header, 0) if matches(effective(row), filters))
            if removed and dry_run:
                self._check_rewritable()
            elif removed:
                self.rewrite(fd, header, (row for row in iter_rows(fd, header, 0)
                                           if not matches(effective(row), filters)))
            return removed

    def _check_rewritable(self) -> None:
        """Refuse now what ``rewrite`` would refuse later: a folder where no file can be made."""
        import tempfile

        try:
            with tempfile.NamedTemporaryFile("wb", dir=self.directory, prefix=REWRITE_PREFIX,
                                             suffix=REWRITE_SUFFIX):
                pass
        except OSError as exc:
            raise StoreError(f"cannot rewrite the LET store {self.path}: {exc}; nothing was changed. "
                             f"Make {self.directory} writable and run the delete again.") from exc

    def rewrite(self, fd: int, columns: list[str], rows: Iterable[Row]) -> None:
        """Replace the store (whose lock is held) with ``rows``: temporary file, fsync,
        ``os.replace``, fsync of the folder. Readers hold the old file open and see the old
        set, or open the new one; a crash leaves the old file and an orphan temporary file,
        removed under the next exclusive lock. The totals cache sees the new file and rebuilds."""
        import tempfile

        try:
            tmp = tempfile.NamedTemporaryFile("wb", dir=self.directory, prefix=REWRITE_PREFIX,
                                              suffix=REWRITE_SUFFIX, delete=False)
        except OSError as exc:
            raise StoreError(f"cannot rewrite the LET store {self.path}: {exc}; the store was left as it was.") from exc
        try:
            with tmp:
                tmp.write(encode([], columns, header=True))
                batch: list[Row] = []
                # raw: rows already stored are carried over as they are (no cap, no escapes).
                for row in rows:
                    batch.append(row)
                    if len(batch) >= 10_000:
                        tmp.write(encode(batch, columns, header=False, raw=True))
                        batch = []
                tmp.write(encode(batch, columns, header=False, raw=True))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp.name, os.fstat(fd).st_mode & 0o777)
            os.replace(tmp.name, self.path)
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
            raise StoreError(f"cannot rewrite the LET store {self.path}: {exc}; the store was left "
                             "as it was.") from exc
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
    def owner(self) -> int:
        """The user id whose files may give the store rows: the store file's owner (not
        following a link), or this process's user where there is no store yet (it creates it)."""
        try:
            return self.path.lstat().st_uid
        except OSError:
            return os.getuid()

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
            # Symlinks and other non-files are listed too, so that they are reported, not folded.
            found = [p for p in self.directory.glob(f"{STORE_FILE}*.bak")
                     if number(p) > -2 and (p.is_symlink() or not p.is_dir())]
            return sorted(found, key=number)
        return []

    def _fold_backups(self) -> None:
        """Fold rows of CodeCarbon .bak files back into the store (once per file state)."""
        backups = self.backups()
        if not backups:
            return
        with contextlib.suppress(StoreError, OSError):
            self.fold_backups(backups, warn=True)

    def fold_backups(self, backups: Sequence[Path] | None = None, warn: bool = False) -> int:
        """Append the rows of ``backups`` (CodeCarbon .bak files, the rescue file) that the
        store lacks (``schema.identity``); returns how many. Only regular files of the store's
        owner with an emissions header are read (``csvfile.read_rows_file``); ``warn``: say
        which files gave rows and which were refused. Each file is read again only when it
        changed. Deletes nothing."""
        import json

        from let_core.atomicfile import read_regular
        from let_core.config import cache_file

        backups = self.backups() if backups is None else list(backups)
        seen_file = cache_file("bak-folded", self.path)
        try:
            seen = json.loads(read_regular(seen_file))
            assert isinstance(seen, dict)
        except (OSError, ValueError, AssertionError):
            seen = {}
        pending = []
        for path in backups:
            try:
                info = path.lstat()
            except OSError:
                continue
            state = [info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode, info.st_uid]
            if seen.get(str(path)) != state:
                pending.append((path, state))
        if not pending:
            return 0
        folded: list[str] = []
        refused: list[str] = []
        # Compare and append under one exclusive lock: two processes folding the same .bak at
        # once must not both add its rows.
        with self.locked(exclusive=True, create=True) as fd:
            assert fd is not None
            owner = os.fstat(fd).st_uid
            header = read_header(fd)
            present = ({identity(effective(row)) for row in iter_rows(fd, header, 0)}
                       if header is not None else set())
            new: list[dict[str, str]] = []
            for path, _ in pending:
                try:
                    rows = read_rows_file(path, owner=owner)
                except StoreError as exc:
                    refused.append(str(exc))
                    continue
                added = 0
                for row in rows:
                    key = identity(row)
                    if key not in present:
                        present.add(key)
                        new.append(row)
                        added += 1
                if added:
                    folded.append(f"{added} from {path.name}")
            if new:
                self._append_locked(fd, new)
        with contextlib.suppress(OSError):
            seen.update({str(path): state for path, state in pending})
            seen_file.parent.mkdir(parents=True, exist_ok=True)
            seen_file.write_text(json.dumps(seen))
        if warn and folded:
            warnings.warn(f"{self.path}: put back {len(new)} row(s) ({', '.join(folded)}; files "
                          "CodeCarbon or LET 0.1.x moved aside on a header change); the .bak files "
                          "are kept", LetWarning, stacklevel=3)
        if warn:
            for reason in refused:
                warnings.warn(f"not folded into {self.path}: {reason}", LetWarning, stacklevel=3)
        return len(new)

    # --------------------------------------------------------------------- reading
    def rows(self) -> Iterator[dict[str, str]]:
        """Every row, with LET 0.1.x / CodeCarbon rows given LET's columns."""
        with self.locked(exclusive=False, create=False) as fd:
            if fd is None:
                return
            header = read_header(fd)
            if header is None:
                return
            for row in iter_rows(fd, header, 0):
                yield effective(row)

    def header(self) -> list[str] | None:
        with self.locked(exclusive=False, create=False) as fd:
            return None if fd is None else read_header(fd)
