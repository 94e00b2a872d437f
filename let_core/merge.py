"""Collecting results: ``lett merge`` of emissions files, and aggregation of runs into jobs/groups.

``merge`` takes files colleagues sent in (LET 1.x, LET 0.1.x or plain CodeCarbon) and appends
to one store every row it does not hold yet, identified by (run_id, backend, task); rows without
a run id are identified by their whole content. The target store migrates its header itself.

What merged rows count for is decided in ``let_core.results.counting``.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from attrs import frozen

from let_core.csvfile import Padded, check_emissions_header, open_regular, read_header, scan_lines, warn_short_rows
from let_core.errors import ConfigurationError, LetWarning, StoreError
from let_core.results.rule import MAX_ENERGY_KWH, as_float, latest_checkpoints, usable_energy
from let_core.schema import effective, identity, with_stable_ids


@frozen
class FileReport:
    path: str
    rows: int
    added: int
    duplicates: int  # rows the store (or an earlier file) already holds
    checkpoints: int = 0  # earlier cumulative rows of a CodeCarbon run, folded into its last row


@frozen
class MergeReport:
    into: str
    files: tuple[FileReport, ...]

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def checkpoints(self) -> int:
        return sum(f.checkpoints for f in self.files)

    def summary(self) -> str:
        lines = []
        for f in self.files:
            line = f"{f.path}: {f.rows} row(s), {f.added} added, {f.duplicates} already in the store"
            if f.checkpoints:
                line += (f", {f.checkpoints} earlier checkpoint row(s) of the same run(s) not added "
                         "(CodeCarbon's rows of one run are cumulative: its last row holds the run)")
            lines.append(line)
        lines.append(f"merged {self.added} new row(s) from {len(self.files)} file(s) into {self.into}"
                     f" ({self.duplicates} duplicate(s) of stored rows skipped"
                     + (f", {self.checkpoints} checkpoint row(s) folded" if self.checkpoints else "") + ")")
        return "\n".join(lines)


def _resolve(path: str | os.PathLike[str]) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        inside = candidate / "emissions.csv"
        if not inside.is_file():
            raise ConfigurationError(f"{candidate} is a folder without an emissions.csv file; give "
                                     "emissions.csv files or the folders holding them. Nothing was merged.")
        return inside
    return candidate


def _open(path: Path) -> int:
    """The file's descriptor, opened without blocking (a FIFO, a device such as /dev/zero or a
    folder is refused, naming it): a file given to merge is never a hang."""
    try:
        return open_regular(path, os.O_RDONLY, follow_symlinks=True)
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file; give emissions.csv files or their folders") from None
    except StoreError as exc:
        raise ConfigurationError(f"{exc} Nothing was merged.") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file ({exc}). "
                                 "Nothing was merged.") from exc


def check_file(path: Path) -> list[str]:
    """The file's header; raises ConfigurationError naming the file and what it lacks."""
    fd = _open(path)
    try:
        check_emissions_header(fd, path)
        header = read_header(fd)
    except StoreError as exc:
        raise ConfigurationError(f"{exc} Nothing was merged.") from None
    finally:
        os.close(fd)
    if header is None:
        raise ConfigurationError(f"{path} is empty, not an emissions file. Nothing was merged.")
    return header


def _rows(path: Path, header: list[str]) -> list[dict[str, str]]:
    """Every row of the file; read whole before anything is merged, so that a file damaged
    half-way (binary bytes, a stray NUL) merges nothing rather than part of itself. Rows
    short of trailing fields are rows (``csvfile.fit``); a torn last line is not."""
    rows = []
    invalid: list[str] = []
    bad: list[int] = []
    short = 0
    fd = _open(path)
    try:
        for number, fields, valid in scan_lines(fd, header):
            if not valid:
                raise ConfigurationError(f"{path}: line {number} holds bytes that are not UTF-8; is it "
                                         "damaged? Nothing was merged.")
            if len(fields) != len(header):
                if fields:
                    bad.append(number)  # no row: said by the warning below
                continue
            short += isinstance(fields, Padded)
            row = dict(zip(header, fields))
            energy = row.get("energy_consumed", "").strip()
            # An empty cell is a known gap (warned, not counted); a value that is there but
            # is no energy (-5, nan, inf, "3,2") is a broken file, and merging it would
            # store a figure that the statement then silently leaves out.
            if energy and not usable_energy(as_float(energy)):
                invalid.append(f"line {number}: {energy!r}")
            rows.append(with_stable_ids(effective(row)))
    except (OSError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file past its header "
                                 f"({exc}); is it damaged? Nothing was merged.") from exc
    finally:
        os.close(fd)
    if short:
        warn_short_rows(short, str(path), stacklevel=4)
    if bad:
        lines = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
        warnings.warn(f"{path}: {len(bad)} line(s) are no row (line {lines}: a quote never closed, or "
                      "more fields than the header names) and are not merged; fix them in the file and "
                      "merge it again (rows already merged are not merged twice)", LetWarning, stacklevel=3)
    if invalid:
        shown = "; ".join(invalid[:5]) + (f" and {len(invalid) - 5} more" if len(invalid) > 5 else "")
        raise ConfigurationError(
            f"{path}: energy_consumed must be a number of kWh between 0 and {MAX_ENERGY_KWH:g}; "
            f"{shown}. Fix or remove those rows (an unknown energy is an empty cell). Nothing was merged.")
    return rows


def _latest_checkpoints(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One row per ``schema.identity``: CodeCarbon writes cumulative checkpoint rows while a
    run goes on, so the latest (``rule.latest_checkpoints``) is the run, as ``load_results``
    and the statement count it."""
    keep = latest_checkpoints([as_float(row.get("duration")) for row in rows], [identity(row) for row in rows])
    return [row for row, kept in zip(rows, keep) if kept]


def merge(files: Sequence[str | os.PathLike[str]], into: str | os.PathLike[str]) -> MergeReport:
    """Append every row of ``files`` that ``into``'s store lacks; returns what was merged.

    All files are checked before anything is written, so a wrong file merges nothing.
    """
    from let_core.store import Store

    if not files:
        raise ConfigurationError("give at least one emissions.csv to merge")
    paths = [_resolve(f) for f in files]
    headers = [check_file(p) for p in paths]
    contents = [_rows(p, h) for p, h in zip(paths, headers)]
    from let_core.results.csvsource import blank_energy, warn_blank_energy

    for path, rows in zip(paths, contents):
        blank = [row for row in rows if blank_energy(row)]
        if blank:
            warn_blank_energy(path, blank)
    store = Store(into)
    if any(p.resolve() == store.path.resolve() for p in paths if p.exists()):
        raise ConfigurationError(f"{store.path} is the target store itself; merge other files into it")
    seen = {identity(row) for row in store.rows()}
    reports = []
    for path, rows in zip(paths, contents):
        latest = _latest_checkpoints(rows)
        new: list[dict[str, str]] = []
        for row in latest:
            key = identity(row)
            if key in seen:
                continue
            seen.add(key)
            new.append(row)
        store.append(new)
        reports.append(FileReport(str(path), len(rows), len(new), len(latest) - len(new),
                                  len(rows) - len(latest)))
    return MergeReport(str(store.path), tuple(reports))
