"""Collecting results: ``let merge`` of emissions files, and aggregation of runs into jobs/groups.

``merge`` takes files colleagues sent in (LET 1.x, LET 0.1.x or plain CodeCarbon) and appends
to one store every row it does not hold yet, identified by (run_id, backend, task); rows without
a run id are identified by their whole content. The target store migrates its header itself.

What merged rows count for is decided in ``let_core.results.counting``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from attrs import frozen

from let_core.errors import ConfigurationError
from let_core.records import MAX_ENERGY_KWH, as_float
from let_core.schema import REQUIRED_COLUMNS, is_legacy, legacy_fields



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


def _key(row: Mapping[str, Any]) -> tuple[str, ...]:
    run_id = str(row.get("run_id") or "")
    if run_id:
        return ("id", run_id, str(row.get("backend") or ""), str(row.get("task") or ""))
    # No run id (CodeCarbon 1.x): the row is identified by what CodeCarbon wrote for it. Not by
    # every column: a stored row also has LET's columns, and the file's does not.
    return ("row",) + tuple(str(row.get(column) or "") for column in _ROW_IDENTITY)


_ROW_IDENTITY = ("timestamp", "project_name", "experiment_id", "duration", "emissions",
                 "energy_consumed")


def _resolve(path: str | os.PathLike[str]) -> Path:
    candidate = Path(path).expanduser()
    if candidate.is_dir():
        inside = candidate / "emissions.csv"
        if not inside.is_file():
            raise ConfigurationError(f"{candidate} is a folder without an emissions.csv file; give "
                                     "emissions.csv files or the folders holding them. Nothing was merged.")
        return inside
    return candidate


def check_file(path: Path) -> list[str]:
    """The file's header; raises ConfigurationError naming the file and what it lacks."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file; give emissions.csv files or their folders") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not a text (UTF-8) CSV file, so not an emissions file "
                                 "(LET or CodeCarbon). Nothing was merged.") from None
    except (OSError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file ({exc}). "
                                 "Nothing was merged.") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigurationError(
            f"{path} is not an emissions file (LET or CodeCarbon): it lacks the column(s) "
            f"{', '.join(missing)}. Nothing was merged.")
    return header


def _rows(path: Path, header: list[str]) -> list[dict[str, str]]:
    """Every row of the file; read whole before anything is merged, so that a file damaged
    half-way (binary bytes, a stray NUL) merges nothing rather than part of itself."""
    rows = []
    invalid: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for fields in reader:
                if len(fields) != len(header):
                    continue  # a truncated last line of a killed writer
                row = dict(zip(header, fields))
                energy = row.get("energy_consumed", "").strip()
                # An empty cell is a known gap (warned, not counted); a value that is there but
                # is no energy (-5, nan, inf, "3,2") is a broken file, and merging it would
                # store a figure that the statement then silently leaves out.
                if energy and not 0 <= as_float(energy) <= MAX_ENERGY_KWH:
                    invalid.append(f"line {reader.line_num}: {energy!r}")
                rows.append({**row, **legacy_fields(row)} if is_legacy(row) else row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file past its header "
                                 f"({exc}); is it damaged? Nothing was merged.") from exc
    if invalid:
        shown = "; ".join(invalid[:5]) + (f" and {len(invalid) - 5} more" if len(invalid) > 5 else "")
        raise ConfigurationError(
            f"{path}: energy_consumed must be a number of kWh between 0 and {MAX_ENERGY_KWH:g}; "
            f"{shown}. Fix or remove those rows (an unknown energy is an empty cell). Nothing was merged.")
    return rows


def _latest_checkpoints(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One row per (run_id, backend, task): CodeCarbon writes cumulative checkpoint rows while
    a run goes on, so the row of the largest duration (the last among equals) is the run, as
    ``load_results`` and the statement count it."""
    from let_core.results.counting import _known_duration

    best: dict[tuple[str, ...], int] = {}
    for index, row in enumerate(rows):
        key = _key(row)
        if key[0] != "id":
            best[key + (str(index),)] = index
            continue
        previous = best.get(key)
        if previous is None or _known_duration(row) >= _known_duration(rows[previous]):
            best[key] = index
    keep = set(best.values())
    return [row for index, row in enumerate(rows) if index in keep]


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
    from let_core.results.loading import blank_energy, warn_blank_energy

    for path, rows in zip(paths, contents):
        blank = [row for row in rows if blank_energy(row)]
        if blank:
            warn_blank_energy(path, blank)
    store = Store(into)
    if any(p.resolve() == store.path.resolve() for p in paths if p.exists()):
        raise ConfigurationError(f"{store.path} is the target store itself; merge other files into it")
    seen = {_key(row) for row in store.rows()}
    reports = []
    for path, rows in zip(paths, contents):
        latest = _latest_checkpoints(rows)
        new: list[dict[str, str]] = []
        for row in latest:
            key = _key(row)
            if key in seen:
                continue
            seen.add(key)
            new.append(row)
        store.append(new)
        reports.append(FileReport(str(path), len(rows), len(new), len(latest) - len(new),
                                  len(rows) - len(latest)))
    return MergeReport(str(store.path), tuple(reports))
