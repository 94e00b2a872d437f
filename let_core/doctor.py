"""``lett doctor``: what is wrong with a store, line by line, and ``--repair`` for what can be fixed.

Checks the central store (its header, torn or malformed lines, bytes that are not UTF-8, a last
line without its line break), the totals cache, CodeCarbon ``.bak`` files beside it, the rescue
and quarantine files LET keeps for it, orphan temporary files, and the Parquet dataset's files.

``repair`` never loses a row: it copies the store to a backup first, moves lines it cannot
parse to the quarantine file (with their line numbers in the report), keeps rows whose only
fault is their encoding (bad bytes become U+FFFD; the original bytes stay in the backup),
restores a damaged header when every row has LET's own columns, and folds rescued runs and
``.bak`` rows back in (by run id, so nothing is counted twice). Recovery files live in
``$LET_HOME/recovered`` (``config.recovery_file``), never in a user's ``output_dir``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from attrs import define, frozen

from let_core.config import recovery_file
from let_core.csvfile import (
    DATA_ROW,
    data_end,
    header_length,
    header_trouble_kind,
    malformed,
    parse_line,
    quarantine,
    read_header,
    read_rows_file,
    scan_lines,
    tail,
)
from let_core.errors import StoreError
from let_core.schema import STORE_COLUMNS, header_problem, identity
from let_core.store import REWRITE_PREFIX, REWRITE_SUFFIX, Store


@frozen
class Finding:
    """One thing doctor found. ``line`` is the store's line number (1: the header) when it has one."""

    path: Path
    message: str
    line: int | None = None
    #: True: a problem; False: worth knowing, nothing to fix.
    problem: bool = True

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {'' if self.problem else 'note: '}{self.message}"


@define
class Report:
    findings: list[Finding]
    actions: list[str]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.problem]


def diagnose(output_dir: str | os.PathLike[str] | None = None,
             dataset: str | os.PathLike[str] | None = None) -> Report:
    """Every problem of the store in ``output_dir`` (default ``$LET_HOME``), without changing it."""
    store = Store(output_dir)
    findings: list[Finding] = []
    findings += _store_findings(store)
    findings += _sibling_findings(store)
    findings += _dataset_findings(store, dataset)
    findings += _low_power_findings(store)
    return Report(findings, [])


def _low_power_findings(store: Store) -> list[Finding]:
    """Wall-socket runs whose mean power was below what a Tasmota socket reads well."""
    from let_core.results.calibration import LOW_POWER_W, low_power
    from let_core.results.rule import as_float

    if not store.path.is_file():
        return []
    try:
        low = sum(1 for row in store.rows() if row.get("backend") == "tasmota" and row.get("kind") == "metered"
                  and low_power(as_float(row.get("energy_consumed")), as_float(row.get("duration"))))
    except (StoreError, OSError):
        return []  # the store's own findings say why it cannot be read
    if not low:
        return []
    return [Finding(store.path, f"{low} wall-socket (tasmota) row(s) with a mean power below {LOW_POWER_W:.0f} W, "
                                "where Tasmota sockets read poorly: treat those figures as rough", problem=False)]


def _store_findings(store: Store) -> list[Finding]:
    path = store.path
    if path.is_dir():
        return [Finding(path, "is a folder, not the store file; move it aside (LET creates "
                              "emissions.csv itself)")]
    if not path.exists():
        return [Finding(path, "no store yet (nothing recorded here)", problem=False)]
    found: list[Finding] = []
    try:
        with store.locked(exclusive=False, create=False) as fd:
            if fd is None:
                return []
            header = read_header(fd)
            if header is None:
                return [Finding(path, "the store is empty", problem=False)]
            trouble = header_trouble_kind(fd, path)
            if trouble is not None:
                kind, message = trouble
                if kind == DATA_ROW and _widths(fd, header) | {len(header)} == {len(STORE_COLUMNS)}:
                    message += "; --repair can: every row has LET's columns"
                # Nothing below line 1 can be read as rows until this is fixed: no row counts.
                return [Finding(path, message, 1)]
            if _read_bom(fd):
                found.append(Finding(path, "starts with a byte order mark (read fine)", 1, problem=False))
            problem, widths = _header_issue(fd, header)
            if problem is not None:
                hint = (" --repair can restore it: every row has LET's columns"
                        if widths == {len(STORE_COLUMNS)} else " restore it by hand (from a copy)")
                found.append(Finding(path, f"header damaged: {problem}; rows have "
                                           f"{_describe(widths)} fields, the header names {len(header)};"
                                           f"{hint}", 1))
            elif not set(STORE_COLUMNS) <= set(header):
                found.append(Finding(path, "header of an older LET or CodeCarbon file; the next append "
                                           "adds LET's columns, keeping every row", 1, problem=False))
            last_line = 1
            for number, fields, valid in scan_lines(fd, header):
                last_line = number
                if not fields:
                    continue
                if len(fields) != len(header):
                    if problem is not None and len(widths) == 1:
                        continue  # the header's fault, reported once above
                    found.append(Finding(path, f"malformed line: {malformed(fields, len(header))}; "
                                               "not counted (--repair moves it to the quarantine file)",
                                         number))
                elif not valid:
                    found.append(Finding(path, "bytes that are not UTF-8 (read as U+FFFD)", number))
            size, last = tail(fd)
            if last < size:
                if data_end(fd, len(header)) == size:
                    found.append(Finding(path, "the last line has no final line break; it is a row, "
                                               "the next append adds the line break", last_line,
                                         problem=False))
                else:
                    found.append(Finding(path, f"torn last line ({size - last} bytes, an interrupted "
                                               "writer): not a row; --repair moves it to the "
                                               "quarantine file", last_line + 1))
            found += _cache_findings(store, fd)
    except StoreError as exc:
        found.append(Finding(path, str(exc)))
    return found


def _read_bom(fd: int) -> bool:
    return os.pread(fd, 3, 0) == b"\xef\xbb\xbf"


def _header_issue(fd: int, header: list[str]) -> tuple[str | None, set[int]]:
    """Why the header is damaged (None: it is not), and the field counts of the rows. A header
    that names fewer or more columns than every single row has lost or gained a name."""
    widths = _widths(fd, header)
    problem = header_problem(header)
    if (problem is None and widths == {len(STORE_COLUMNS)} and len(header) != len(STORE_COLUMNS)
            and not set(STORE_COLUMNS) <= set(header)):
        problem = f"it names {len(header)} columns where every row has LET's {len(STORE_COLUMNS)}"
    return problem, widths


def _widths(fd: int, header: list[str]) -> set[int]:
    return {len(fields) for _, fields, _ in scan_lines(fd, header) if fields}


def _describe(widths: set[int]) -> str:
    return "/".join(str(w) for w in sorted(widths)) or "no"


def _cache_findings(store: Store, fd: int) -> list[Finding]:
    """The totals cache: present but not provably this file's (it is then rebuilt, never trusted)."""
    from let_core.results import cache

    path = cache.cache_path(store)
    if not path.exists():
        return []
    try:
        cache.read_saved(path)
    except (OSError, ValueError):
        return [Finding(path, "totals cache does not parse; it is rebuilt on the next statement "
                              "(--repair removes it)")]
    if not cache.covers_its_bytes(store, fd):
        # Never trusted (the cache proves it belongs to the file or is rebuilt), so a note.
        return [Finding(path, "totals cache does not match this store's current file (deleted "
                              "and recreated, restored, edited, or its last line lacks a line "
                              "break); it is rebuilt, not trusted (--repair removes it)", problem=False)]
    return []


def _sibling_findings(store: Store) -> list[Finding]:
    found: list[Finding] = []
    present: set[tuple[str, ...]] | None = None

    def stored() -> set[tuple[str, ...]]:
        nonlocal present
        if present is None:
            try:
                present = {identity(row) for row in store.rows()}
            except StoreError:
                present = set()
        return present

    # The fold's own test (csvfile.read_rows_file with the store's owner): what it would refuse
    # is reported as refused, not as rows the next append puts back.
    owner = store.owner()
    for backup in store.backups():
        try:
            missing = sum(1 for row in read_rows_file(backup, owner=owner) if identity(row) not in stored())
        except StoreError as exc:
            found.append(Finding(backup, f"CodeCarbon backup does not open: {exc}"))
            continue
        if missing:
            found.append(Finding(backup, f"CodeCarbon moved the store here on a header change; "
                                         f"{missing} of its row(s) are not in the store (--repair "
                                         "or the next append puts them back; the file is kept)"))
    rescue = recovery_file("rescue", store.path)
    if rescue.exists():
        try:
            missing = sum(1 for row in read_rows_file(rescue, owner=owner) if identity(row) not in stored())
        except StoreError as exc:
            missing = 0
            found.append(Finding(rescue, f"rescue file does not open: {exc}"))
        if missing:
            found.append(Finding(rescue, f"{missing} rescued row(s) (runs the store could not take) "
                                         "are not in the store; --repair puts them back"))
    quarantine = recovery_file("quarantine", store.path, ".txt")
    if quarantine.exists():
        with contextlib.suppress(OSError):
            count = sum(1 for _ in quarantine.open("rb"))
            found.append(Finding(quarantine, f"{count} line(s) LET could not parse are kept here; "
                                             "look at them by hand", problem=False))
    with contextlib.suppress(OSError):
        for orphan in sorted(store.directory.glob(f"{REWRITE_PREFIX}*{REWRITE_SUFFIX}")):
            found.append(Finding(orphan, "temporary file of an interrupted rewrite; removed by the "
                                         "next write or --repair (the store itself is complete)"))
        for orphan in sorted(store.directory.glob(".totals.*.tmp")) + sorted(
                store.directory.glob(".emissions.totals.json")):
            found.append(Finding(orphan, "leftover cache file of an older LET; --repair removes it"))
    return found


def _dataset_files(store: Store, dataset: str | os.PathLike[str] | None) -> list[Path]:
    from let_core.config import dataset_env, default_dataset_root, is_uri

    root = dataset or dataset_env() or default_dataset_root(store.directory)
    if is_uri(root) and not str(root).startswith("file://"):
        return []  # remote datasets are checked by reading them (`lett results --dataset`)
    folder = Path(str(root)[len("file://"):] if str(root).startswith("file://") else root)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))


def _dataset_findings(store: Store, dataset: str | os.PathLike[str] | None) -> list[Finding]:
    files = _dataset_files(store, dataset)
    if not files:
        return []
    import pyarrow.parquet as pq

    found = []
    for path in files:
        try:
            pq.read_metadata(path)
        except Exception as exc:  # noqa: BLE001 - any reason a file does not open is the finding
            found.append(Finding(path, f"dataset file does not open ({type(exc).__name__}: {exc}); "
                                       "--repair moves it to the recovery folder"))
    return found


def check(output_dir: str | os.PathLike[str] | None = None,
          dataset: str | os.PathLike[str] | None = None) -> Report:
    """``lett doctor``: diagnose, after folding CodeCarbon ``.bak`` rows back in as the next
    append would (only adds rows the store lacks; deletes nothing)."""
    store = Store(output_dir)
    actions = []
    backups = store.backups() if store.path.is_file() else []
    if backups:
        try:
            added = store.fold_backups(backups)
        except StoreError as exc:
            added = 0
            actions.append(f"could not put back the rows of {', '.join(p.name for p in backups)}: {exc}")
        if added:
            actions.append(f"put back {added} row(s) from {', '.join(p.name for p in backups)} "
                           "(moved aside by CodeCarbon or LET 0.1.x on a header change; kept)")
    report = diagnose(output_dir, dataset)
    report.actions = actions
    return report


# ----------------------------------------------------------------------------- repair
def repair(output_dir: str | os.PathLike[str] | None = None,
           dataset: str | os.PathLike[str] | None = None) -> Report:
    """Fix what can be fixed without losing a row; returns what was done and what is left."""
    store = Store(output_dir)
    actions: list[str] = []
    if store.path.is_file():
        actions += _repair_store(store)
    actions += _repair_siblings(store)
    actions += _repair_dataset(store, dataset)
    report = diagnose(output_dir, dataset)
    report.actions = actions
    return report


def _repair_store(store: Store) -> list[str]:
    actions: list[str] = []
    with store.locked(exclusive=True, create=False) as fd:  # also removes orphan temporary files
        if fd is None:
            return actions
        header = read_header(fd)
        if header is None:
            return actions
        trouble = header_trouble_kind(fd, store.path)
        first_row: list[dict[str, str]] = []
        if trouble is not None:
            kind, message = trouble
            if kind != DATA_ROW or _widths(fd, header) | {len(header)} != {len(STORE_COLUMNS)}:
                return [f"left {store.path} as it is: {message}"]
            # The header line was deleted: line 1 is the first row, kept, with LET's header above.
            first_row = [dict(zip(STORE_COLUMNS, parse_line(os.pread(fd, header_length(fd), 0)
                                                            .decode("utf-8", "replace").rstrip("\r\n"))))]
        columns = header
        problem, widths = _header_issue(fd, header)
        if first_row:
            problem, widths = "line 1 is a data row (the header line was deleted)", {len(STORE_COLUMNS)}
        if problem is not None:
            if widths != {len(STORE_COLUMNS)}:
                return [f"left {store.path} as it is: its header is damaged ({problem}) and its rows "
                        "do not have LET's columns, so LET cannot tell which column is which"]
            columns = list(STORE_COLUMNS)
        bad: list[tuple[int, bytes]] = []
        recoded = 0
        size, last = tail(fd)
        torn = last < size and data_end(fd, len(header)) < size
        checks = list(scan_lines(fd, header))
        if problem is None and not torn and all(
                not fields or (len(fields) == len(header) and valid) for _, fields, valid in checks):
            return actions
        backup = recovery_file("backup", store.path, f"-{time.strftime('%Y%m%dT%H%M%S')}.csv")
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.path, backup)
        actions.append(f"copied {store.path} to {backup} before changing it")
        raw_lines = _raw_lines(fd, data_end(fd, len(header)))
        keep: list[dict[str, str]] = list(first_row)
        starts = [number for number, _, _ in checks] + [len(raw_lines) + 1]
        for index, (number, fields, valid) in enumerate(checks):
            if not fields:
                continue
            if len(fields) != len(columns):
                # A record may span lines (an unclosed quote): all of them go aside together.
                bad.append((number, b"".join(raw_lines.get(n, b"") for n in range(number, starts[index + 1]))))
                continue
            if not valid:
                recoded += 1
                fields = [f.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for f in fields]
            keep.append(dict(zip(columns, fields)))
        if torn:
            bad.append((len(checks) + 2, os.pread(fd, size - last, last)))
        if bad:
            where = quarantine(store.path, [line for _, line in bad])
            actions.append(f"moved {len(bad)} line(s) LET cannot parse (line "
                           f"{', '.join(str(n) for n, _ in bad[:10])}) to {where}")
        if recoded:
            actions.append(f"kept {recoded} row(s) with bytes that are not UTF-8, those bytes now U+FFFD")
        if first_row:
            actions.append(f"put LET's header line back above line 1 of {store.path}, which is a row")
        elif columns is not header:
            actions.append(f"restored the damaged header of {store.path} to LET's columns")
        store.rewrite(fd, columns, keep)
        actions.append(f"rewrote {store.path} with {len(keep)} row(s)")
    return actions


def _raw_lines(fd: int, end: int) -> dict[int, bytes]:
    """Physical lines by number (1: the header), for copying unparsable lines byte for byte."""
    data = os.pread(fd, end, 0)
    return {number: line for number, line in enumerate(data.splitlines(keepends=True), start=1)}


def _repair_siblings(store: Store) -> list[str]:
    actions: list[str] = []
    rescue = recovery_file("rescue", store.path)
    sources = list(store.backups()) + ([rescue] if rescue.exists() else [])
    if sources:
        added = store.fold_backups(sources)  # the same fold as the next append's, by run id
        if added:
            actions.append(f"put {added} row(s) from {', '.join(str(s) for s in sources)} into "
                           f"{store.path} (those files are kept)")
    from let_core.results import cache

    with contextlib.suppress(OSError):
        path = cache.cache_path(store)
        if path.exists() and any(f.path == path for f in _store_findings(store)):
            path.unlink()
            actions.append(f"removed the stale totals cache {path}")
    with contextlib.suppress(OSError):
        for orphan in list(store.directory.glob(".totals.*.tmp")) + list(
                store.directory.glob(".emissions.totals.json")):
            orphan.unlink()
            actions.append(f"removed {orphan}")
    return actions


def _repair_dataset(store: Store, dataset: str | os.PathLike[str] | None) -> list[str]:
    actions = []
    for finding in _dataset_findings(store, dataset):
        target = recovery_file("dataset", store.path, "") / finding.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(finding.path), target)
        actions.append(f"moved {finding.path}, which does not open, to {target}")
    return actions
