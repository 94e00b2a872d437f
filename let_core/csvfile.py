"""The bytes of the central store: its header, where its complete records end, a torn tail
left by a killed writer, reading records between byte offsets, and the quarantine file for
lines LET cannot parse. ``Store``, the loaders and ``lett doctor`` all read and write the file
through these functions, on a file descriptor they opened (and locked) themselves.

Every record LET writes is exactly one line (line breaks inside values are replaced): that is
what lets a reader resume at a byte offset and a writer cut off a half line. Standard library
only.
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
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from let_core.errors import LetWarning, StoreError
from let_core.schema import CONTROL_CHARACTERS, REQUIRED_COLUMNS, Row, effective, header_problem, missing_columns

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


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str], flags: int, mode: int = 0o644,
                 follow_symlinks: bool = False) -> int:
    """Open a file LET reads or writes as a regular file, or raise StoreError naming the path.

    Anyone who may write a shared store's folder can plant a symlink (to the owner's private
    files) or a FIFO (which blocks every reader in ``open``) where LET expects its files.
    LET creates no symlinks, so the last component is not followed (unless it is a file the
    user named, ``follow_symlinks``), the open never blocks (O_NONBLOCK, cleared again for a
    regular file), and anything but a regular file is refused after ``fstat``.
    """
    extra = os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags | extra, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise StoreError(f"{path} is a symbolic link; LET does not follow links it did not "
                             "create beside its store (anyone who can write a shared store's folder "
                             "could point one at another file). Replace it by the file itself.") from None
        if exc.errno == errno.ENXIO:  # O_WRONLY on a FIFO without a reader
            raise StoreError(f"{path} is a FIFO (named pipe), not a file; move it aside") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is {file_kind(info.st_mode)}, not a file; LET reads and writes "
                             "only regular files. Move it aside (LET creates its files itself).")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: a short write (full disk, signal) is not success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[written:]


def read_header(fd: int) -> list[str] | None:
    """The column names of line 1, without the padding of a column-aligned copy; None for an
    empty file."""
    head = os.pread(fd, HEADER_PROBE, 0)
    if not head:
        return None
    header = list(_header_names(_first_line(head)))
    if not any(header):
        raise StoreError("the LET store has no readable header line; move it aside and start a new one")
    return header


def _first_line(head: bytes) -> bytes:
    end = head.find(b"\n")
    return head if end < 0 else head[:end]


# Every append and every statement reads line 1 two or three times (the header, then whether
# it is one); a store has one header, so each distinct line is parsed and classified once.
@functools.lru_cache(maxsize=32)
def _header_names(line: bytes) -> tuple[str, ...]:
    return tuple(name.strip() for name in parse_line(line.decode("utf-8", errors="replace").lstrip("\ufeff")))


#: What header_trouble finds, besides its message.
UTF16, NOT_UTF8, DATA_ROW = "utf-16", "not-utf-8", "data-row"


def header_trouble(fd: int, path: str | os.PathLike[str]) -> str | None:
    """Why line 1 of a file is no header LET can read, said with the fix; None when it is one
    or the file is empty (``header_trouble_kind`` says which trouble). The encodings and a data
    row in the header's place are told apart here, so that nobody "repairs" such a file into
    one that counts fewer rows."""
    found = header_trouble_kind(fd, path)
    return None if found is None else found[1]


def header_trouble_kind(fd: int, path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(UTF16 | NOT_UTF8 | DATA_ROW, message) for ``header_trouble``."""
    head = os.pread(fd, HEADER_PROBE, 0)
    if not head:
        return None
    kind = _line_trouble(head.startswith((b"\xff\xfe", b"\xfe\xff")), _first_line(head))
    if kind == UTF16:
        return UTF16, (f"{path} is saved as UTF-16 (a Windows tool does that), not as UTF-8 text; nothing "
                       f"was read or changed. Convert it: iconv -f UTF-16 -t UTF-8 '{path}' > emissions-utf8.csv, "
                       "check the result, then move it in place.")
    if kind == NOT_UTF8:
        return NOT_UTF8, (f"{path}: its header line is not UTF-8 text (another encoding, or binary data); "
                          f"nothing was read or changed. If it is text, convert it: iconv -f LATIN1 -t UTF-8 "
                          f"'{path}' > emissions-utf8.csv, check the result, then move it in place.")
    if kind == DATA_ROW:
        return DATA_ROW, (f"{path}: line 1 is a data row, not the header (the header line was deleted); "
                          "nothing was read or changed. Put the header line back above it (`lett doctor "
                          "--repair` does when the rows have LET's own columns).")
    return None


@functools.lru_cache(maxsize=32)
def _line_trouble(byte_order_mark: bool, first: bytes) -> str | None:
    if byte_order_mark or _utf16_text(first):
        return UTF16
    try:
        text = first.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    except UnicodeDecodeError:
        return NOT_UTF8
    names = [name.strip() for name in parse_line(text)]
    if not all(column in names for column in REQUIRED_COLUMNS) and any(
            name not in ("", "nan") and _is_number(name) for name in names):
        return DATA_ROW
    return None


def _utf16_text(line: bytes) -> bool:
    """Whether a line without a byte order mark is UTF-16 text (every other byte NUL), rather
    than a line blanked with NULs."""
    if b"\x00" not in line:
        return False
    for encoding in ("utf-16-le", "utf-16-be"):
        with contextlib.suppress(UnicodeDecodeError):
            text = line[: len(line) // 2 * 2].decode(encoding)
            if "," in text and text.replace("\x00", "").strip(",\r").isprintable() and "\x00" not in text:
                return True
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    fd = open_regular(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        write_all(fd, b"".join(line.rstrip(b"\r\n") + b"\n" for line in lines))
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def check_emissions_header(fd: int, path: Path) -> None:
    """Refuse to read a file that is no emissions file: another encoding, a data row where the
    header belongs, or a CSV without the columns every CodeCarbon and LET file has. (``let
    doctor`` opens such files itself.)"""
    trouble = header_trouble(fd, path)
    if trouble is not None:
        raise StoreError(trouble)
    header = read_header(fd)
    if header is None:
        return
    missing = missing_columns(header)
    if missing:
        raise StoreError(f"{path} is not an emissions file (LET or CodeCarbon): it lacks the "
                         f"column(s) {', '.join(missing)}. Nothing was read or written; move it aside, "
                         "or set LET_HOME / output_dir= to the folder of your emissions.csv.")


@functools.lru_cache(maxsize=64)
def _cached_header_problem(header: tuple[str, ...]) -> str | None:
    return header_problem(header)


def check_header(fd: int, header: Sequence[str], path: Path) -> None:
    """Refuse to write to a file whose header LET does not understand (``header_trouble``,
    ``schema.header_problem``)."""
    trouble = header_trouble(fd, path)
    if trouble is not None:
        raise StoreError(trouble)
    problem = _cached_header_problem(tuple(header))
    if problem is not None:
        raise StoreError(f"the header of {path} is damaged or not an emissions file's ({problem}); "
                         "LET does not write to a file it does not understand. Run `lett doctor` to "
                         "see every problem, `lett doctor --repair` to fix what can be fixed.")


def scan_lines(fd: int, header: list[str], end: int | None = None) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, fields, valid UTF-8) of every record after the header, up to ``end``
    (default: where the rows end). Line 1 is the header. A row short of trailing fields comes
    padded with blanks (``fit``); a record that is no row keeps its own fields (an
    ``Unparsable`` for a line whose quote is never closed), so its length differs from the
    header's."""
    stop = data_end(fd, len(header)) if end is None else end
    # surrogateescape keeps bytes that are not UTF-8 visible, so they can be reported.
    for first, fields in records(fd, header_length(fd), stop, errors="surrogateescape", width=len(header)):
        fitted = fit(fields, header)
        yield first, fields if fitted is None else fitted, not any(_SURROGATE.search(f) for f in fields)


class Unparsable(list):  # type: ignore[type-arg]  # list[str]: subclassing the generic needs 3.9+ runtime
    """The fields of a line whose quote is never closed on it: not a row, however many."""


class Padded(list):  # type: ignore[type-arg]  # list[str], as Unparsable
    """A row that lacked trailing fields, padded with blanks to the header's width (``fit``)."""


def warn_damaged_header(path: Path, header: Sequence[str], stacklevel: int = 3) -> None:
    """The one warning, on every read path, for a header LET reads but cannot trust
    (``schema.header_problem``: a blank or duplicated name, control characters)."""
    damaged = _cached_header_problem(tuple(header))
    if damaged is not None:
        warnings.warn(f"{path}: the header is damaged ({damaged}); rows may be skipped or "
                      "misread. Run `lett doctor`.", LetWarning, stacklevel=stacklevel + 1)


def warn_short_rows(count: int, where: str = "the LET store", stacklevel: int = 3) -> None:
    """The one warning for rows short of trailing fields, given once per read of ``where``."""
    warnings.warn(f"{count} row(s) of {where} lack trailing fields (written under an older, "
                  "shorter header); read with those fields blank", LetWarning, stacklevel=stacklevel + 1)


def records(fd: int, start: int, stop: int, errors: str, width: int) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each CSV record between two byte offsets of the store;
    numbering starts after line 1, the header, whose ``width`` (number of names) is given.

    LET writes every record on one line. A record that spans lines is another tool's quoted
    line break, or a stray quote (a hand edit) that swallowed the lines after it; the latter
    yields a record that does not fit the header, one whose last line opens a quote of its
    own, or one that holds a whole row of the header's width on a line of its own (two stray
    quotes whose merged record happens to fit the header), and is re-read line by line, so
    the damage costs those lines only (each an ``Unparsable``), never the rows after them.
    """
    with os.fdopen(os.dup(fd), "rb") as handle:
        handle.seek(start)
        text = io.TextIOWrapper(io.BufferedReader(_Limited(handle, stop - start)), encoding="utf-8",
                                errors=errors, newline="")
        span: list[str] = []

        def lines() -> Iterator[str]:
            for line in text:
                span.append(line)
                yield line

        line = 2
        for fields in csv.reader(lines()):
            consumed, span[:] = list(span), []
            if (len(consumed) == 1 and len(fields) != width and '"' in consumed[0]
                    and _quote_left_open(consumed[0])):
                # A quote opened and never closed on the last line runs to the end of the file
                # without spanning lines: its "fields" are the rest of the line, not a row
                # (though fewer than the header's, they would read as a row short of fields).
                yield line, Unparsable(fields)
                line += 1
                continue
            if len(consumed) > 1 and (len(fields) != width or _opens_a_quote(consumed[-1])
                                      or _swallows_a_row(consumed, width)):
                alone = [_parse_alone(physical) for physical in consumed]
                if any(isinstance(part, Unparsable) for part in alone):
                    for offset, part in enumerate(alone):
                        yield line + offset, part
                    line += len(consumed)
                    continue
            yield line, fields
            line += len(consumed)


def _opens_a_quote(line: str) -> bool:
    """Whether the last line of a record spanning lines opens a new quoted field (a quote right
    after a delimiter, left open) instead of closing the one before: then the record is two
    stray quotes that swallowed whole lines between them, even where its fields fit the header.
    A quoted line break of another tool closes its quote on the last line."""
    first = line.find('"')
    return first > 0 and line[first - 1] == "," and _quote_left_open(line)


def _swallows_a_row(consumed: Sequence[str], width: int) -> bool:
    """Whether a line after the first of a record spanning lines is, read alone, a complete row
    of the header's width: the text of another tool's quoted line break rarely is, the rows a
    stray quote ran over always are. A wrong guess costs a warning about the first line, never
    silently the rows in between."""
    alone = (_parse_alone(physical) for physical in consumed[1:])
    return any(len(fields) == width and not isinstance(fields, Unparsable) for fields in alone)


def _quote_left_open(line: str) -> bool:
    try:
        next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _parse_alone(line: str) -> list[str]:
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error:
        return Unparsable(next(csv.reader([line]), []))


@functools.lru_cache(maxsize=64)
def _required_width(header: tuple[str, ...]) -> int:
    """How many leading fields a row needs: through the last column every emissions file has."""
    return 1 + max((header.index(c) for c in REQUIRED_COLUMNS if c in header), default=len(header) - 1)


def fit(fields: list[str], header: Sequence[str]) -> list[str] | None:
    """A record as a row of ``header``: itself when it has the header's width; padded with
    blanks when it lacks only trailing fields (older rows under a newer CodeCarbon header);
    None when it is no row (too many fields, an unclosed quote, too few to hold a figure)."""
    width = len(header)
    if len(fields) == width and not isinstance(fields, Unparsable):
        return fields
    if isinstance(fields, Unparsable) or not fields or len(fields) > width:
        return None
    if len(fields) < _required_width(tuple(header)):
        return None
    return Padded(fields + [""] * (width - len(fields)))


_SURROGATE = re.compile("[\udc80-\udcff]")


def malformed(fields: list[str], width: int) -> str:
    """What is wrong with a record that is no row, in words."""
    if isinstance(fields, Unparsable):
        return "a quote opened on this line is never closed on it"
    if len(fields) < width:
        return f"{len(fields)} fields where the header names {width}, too few to hold its figures"
    return f"{len(fields)} fields where the header names {width}"


def problem_lines(fd: int, header: list[str]) -> list[tuple[int, str]]:
    """(line number, what is wrong) for each record a rewrite could not carry over unchanged."""
    problems = []
    width = len(header)
    for number, fields, valid in scan_lines(fd, header):
        if not fields:
            continue
        if len(fields) != width:
            problems.append((number, malformed(fields, width)))
        elif not valid:
            problems.append((number, "bytes that are not UTF-8"))
    return problems


def require_parsable(fd: int, header: list[str], path: Path) -> None:
    problems = problem_lines(fd, header)
    if problems:
        where = ", ".join(f"line {n} ({what})" for n, what in problems[:3])
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise StoreError(f"{path} has lines LET cannot parse: {where}{more}. LET does not rewrite "
                         "a file it does not understand (those lines would be lost). Run `lett doctor` "
                         "to see them, `lett doctor --repair` to move them to a quarantine file.")


def iter_rows(fd: int, header: list[str], offset: int,
              end: int | None = None) -> Iterator[dict[str, str]]:
    """Rows from a byte offset up to ``end`` (default: where the rows end). Rows short of
    trailing fields are rows (the missing ones blank), said once; records that are no row
    (``fit``) are skipped and reported with their line numbers."""
    stop = data_end(fd, len(header)) if end is None else end
    start = offset or header_length(fd)
    width = len(header)
    bad: list[int] = []
    short = 0
    for first, fields in records(fd, start, stop, errors="replace", width=width):
        fitted = fit(fields, header)
        if fitted is None:
            if fields:
                bad.append(first)
            continue
        short += len(fields) < width
        yield dict(zip(header, fitted))
    where_from = "" if start <= header_length(fd) else f" after byte {start}"
    if short:
        warn_short_rows(short, "the LET store" + where_from)
    if bad:
        where = ("line(s) " + ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
                 if not where_from else f"{len(bad)} line(s){where_from}")
        warnings.warn(f"skipped {len(bad)} malformed line(s) in the LET store ({where}); "
                      "`lett doctor` shows them", LetWarning, stacklevel=3)


def read_rows_file(path: Path, owner: int | None = None) -> list[dict[str, str]]:
    """Rows of another emissions file beside the store (a CodeCarbon .bak, a rescue file), with
    LET's columns derived for old rows; lines it cannot parse are skipped with a warning.

    StoreError unless it is a regular file (not a symlink), owned by ``owner`` when given (the
    store's owner: a co-worker's file is not the owner's runs), with an emissions file's header.
    """
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    try:
        uid = os.fstat(fd).st_uid
        if owner is not None and uid != owner:
            raise StoreError(f"{path} belongs to user id {uid}, not to the store's owner ({owner}); "
                             "LET takes rows only from the owner's files. Merge it on purpose with "
                             "`lett merge` if it holds your runs.")
        fcntl.flock(fd, fcntl.LOCK_SH)
        header = read_header(fd)
        if header is None:
            return []
        problem = header_problem([name.strip() for name in header])
        if problem is not None:
            raise StoreError(f"{path} is not an emissions file (LET or CodeCarbon): {problem}; "
                             "its lines were not taken")
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
