"""The bytes of the central store: its header, where its complete records end, a torn tail
left by a killed writer, reading records between byte offsets, and the quarantine file for
lines LET cannot parse. ``Store``, the loaders and ``let doctor`` all read and write the file
through these functions, on a file descriptor they opened (and locked) themselves.

Every record LET writes is exactly one line (line breaks inside values are replaced): that is
what lets a reader resume at a byte offset and a writer cut off a half line. Standard library
only.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import functools
import io
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from let_core.errors import LetWarning, StoreError
from let_core.schema import CONTROL_CHARACTERS, REQUIRED_COLUMNS, Row, effective, header_problem

HEADER_PROBE = 1 << 16
#: Text cells longer than this (exception messages, params, notes) are cut when written, with
#: TRUNCATED_MARKER saying how long they were: one field must not make the store unreadable.
MAX_FIELD_CHARS = 64 * 1024
TRUNCATED_MARKER = "...[LET: truncated, {length} characters in all]"

# Fields of any length load: the csv module's default limit (128 KiB) made one long exception
# message break every statement. The limit is process-wide; raising it harms nothing.
csv.field_size_limit(sys.maxsize)




def cell(value: Any, raw: bool = False) -> str:
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
    if CONTROL_CHARACTERS.search(text):
        text = CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + TRUNCATED_MARKER.format(length=len(text))
    return text


def encode(rows: Iterable[Row], columns: Sequence[str], header: bool, raw: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column), raw) for column in columns])
    # Lone surrogates (undecodable bytes of a file name, say) become escapes, not an error.
    return buffer.getvalue().encode("utf-8", errors="backslashreplace")


def parse_line(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (full disk, signal) is not success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[written:]


def read_header(fd: int) -> list[str] | None:
    head = os.pread(fd, HEADER_PROBE, 0)
    if not head:
        return None
    end = head.find(b"\n")
    line = head if end < 0 else head[:end]
    header = parse_line(line.decode("utf-8", errors="replace").lstrip("\ufeff"))
    if not header or not any(header):
        raise StoreError("the LET store has no readable header line; move it aside and start a new one")
    return header


def header_length(fd: int) -> int:
    head = os.pread(fd, HEADER_PROBE, 0)
    end = head.find(b"\n")
    return len(head) if end < 0 else end + 1


def complete_length(fd: int, size: int) -> int:
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


def tail(fd: int) -> tuple[int, int]:
    """(size, start of the last line): equal when the file ends with a line break."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size, size
    return size, complete_length(fd, size)


def is_row(data: bytes, width: int) -> bool:
    fields = parse_line(data.decode("utf-8", errors="replace"))
    return len(fields) == width


def data_end(fd: int, width: int) -> int:
    """Where the rows end: the whole file when its last line, even without a final line break
    (many tools write files that way), is a complete row; else before that torn line.
    Readers hold the shared lock, so a live writer's half line is never seen."""
    size, last = tail(fd)
    if last < size and last >= header_length(fd) and is_row(os.pread(fd, size - last, last), width):
        return size
    return last


def fix_tail(fd: int, header: list[str] | None, path: Path) -> int:
    """Make the file end with a line break before an append; returns where new bytes go.

    A last line without its line break that is a complete row gets the line break. A torn
    line (a writer killed mid-append) is moved to the quarantine file and reported, never
    just dropped.
    """
    size, last = tail(fd)
    if last == size:
        return size
    try:
        data = os.pread(fd, size - last, last)
        if header is None or last < header_length(fd) or last == 0 or is_row(data, len(header)):
            write_all(fd, b"\n")
            return size + 1
        where = quarantine(path, [data])
        os.ftruncate(fd, last)
    except OSError as exc:
        raise StoreError(f"could not repair the end of {path}: {exc}") from exc
    warnings.warn(f"{path}: moved a torn last line ({size - last} bytes, left by an interrupted "
                  f"writer) to {where}", LetWarning, stacklevel=4)
    return last


def quarantine(path: Path, lines: Sequence[bytes]) -> Path:
    """Append raw lines LET cannot parse to the store's quarantine file (kept, never cleaned)."""
    from let_core.config import recovery_file

    target = recovery_file("quarantine", path, ".txt")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        write_all(fd, b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def check_emissions_header(fd: int, path: Path) -> None:
    """Refuse to read a file that is no emissions file: binary data, or a CSV without the
    columns every CodeCarbon and LET file has. (``let doctor`` opens such files itself.)"""
    head = os.pread(fd, HEADER_PROBE, 0)
    if not head:
        return
    end = head.find(b"\n")
    try:
        line = (head if end < 0 else head[:end]).decode("utf-8").lstrip("\ufeff")
        header = parse_line(line.rstrip("\r"))
    except (UnicodeDecodeError, csv.Error):
        raise StoreError(f"{path} is not a text CSV file, so not an emissions file (LET or "
                         "CodeCarbon). Nothing was read or written; move it aside, or set LET_HOME / "
                         "output_dir= to the folder of your emissions.csv.") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise StoreError(f"{path} is not an emissions file (LET or CodeCarbon): it lacks the "
                         f"column(s) {', '.join(missing)}. Nothing was read or written; move it aside, "
                         "or set LET_HOME / output_dir= to the folder of your emissions.csv.")


@functools.lru_cache(maxsize=64)
def _cached_header_problem(header: tuple[str, ...]) -> str | None:
    return header_problem(header)


def check_header(header: Sequence[str], path: Path) -> None:
    problem = _cached_header_problem(tuple(header))
    if problem is not None:
        raise StoreError(f"the header of {path} is damaged or not an emissions file's ({problem}); "
                         "LET does not write to a file it does not understand. Run `let doctor` to "
                         "see every problem, `let doctor --repair` to fix what can be fixed.")


def scan_lines(fd: int, header: list[str], end: int | None = None) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, fields, valid UTF-8) of every record after the header, up to ``end``
    (default: where the rows end). Line 1 is the header."""
    stop = data_end(fd, len(header)) if end is None else end
    # surrogateescape keeps bytes that are not UTF-8 visible, so they can be reported.
    for first, fields in records(fd, header_length(fd), stop, errors="surrogateescape"):
        yield first, fields, not any(_SURROGATE.search(field) for field in fields)


def records(fd: int, start: int, stop: int, errors: str) -> Iterator[tuple[int, list[str]]]:
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


def require_parsable(fd: int, header: list[str], path: Path) -> None:
    problems = problem_lines(fd, header)
    if problems:
        where = ", ".join(f"line {n} ({what})" for n, what in problems[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise StoreError(f"{path} has lines LET cannot parse: {where}{more}. LET does not rewrite "
                         "a file it does not understand (those lines would be lost). Run `let doctor` "
                         "to see them, `let doctor --repair` to move them to a quarantine file.")


def iter_rows(fd: int, header: list[str], offset: int,
               end: int | None = None) -> Iterator[dict[str, str]]:
    """Rows from a byte offset up to ``end`` (default: where the rows end); lines with the
    wrong number of fields are skipped and reported with their line numbers."""
    stop = data_end(fd, len(header)) if end is None else end
    start = offset or header_length(fd)
    width = len(header)
    bad: list[int] = []
    for first, fields in records(fd, start, stop, errors="replace"):
        if len(fields) != width:
            if fields:
                bad.append(first)
            continue
        yield dict(zip(header, fields))
    if bad:
        where = ("line(s) " + ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
                 if start <= header_length(fd) else f"{len(bad)} line(s) after byte {start}")
        warnings.warn(f"skipped {len(bad)} malformed line(s) in the LET store ({where}); "
                      "`let doctor` shows them", LetWarning, stacklevel=3)


def read_rows_file(path: Path) -> list[dict[str, str]]:
    """Rows of another emissions-shaped CSV file (a CodeCarbon .bak, a rescue file), with LET's
    columns derived for old rows; lines it cannot parse are skipped with a warning."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        header = read_header(fd)
        if header is None:
            return []
        return [effective(row) for row in iter_rows(fd, header, 0)]
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
