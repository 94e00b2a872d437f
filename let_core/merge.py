"""Collecting results: ``let merge`` of emissions files, and aggregation of runs into jobs/groups.

``merge`` takes files colleagues sent in (LET 1.x, LET 0.1.x or plain CodeCarbon) and appends
to one store every row it does not hold yet, identified by (run_id, backend, task); rows without
a run id are identified by their whole content. The target store migrates its header itself.

``aggregate`` turns stored rows into per-run energies (never adding two measurements of the
same thing, see ``records.primary_measurements``) and sums them per project, host, backend or
job. Ranks of one multi-node job that measured the same devices (same job, host, backend and
hardware, e.g. each rank's whole-machine CodeCarbon estimate) count once: the largest value.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from attrs import frozen

from let_core.errors import ConfigurationError
from let_core.records import (REQUIRED_COLUMNS, is_legacy, legacy_fields, primary_measurements,
                              shared_by_ranks)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd



@frozen
class FileReport:
    path: str
    rows: int
    added: int
    duplicates: int


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

    def summary(self) -> str:
        lines = [f"{f.path}: {f.rows} row(s), {f.added} added, {f.duplicates} already there"
                 for f in self.files]
        lines.append(f"merged {self.added} new row(s) from {len(self.files)} file(s) into {self.into}"
                     f" ({self.duplicates} duplicate(s) skipped)")
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
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            for fields in reader:
                if len(fields) != len(header):
                    continue  # a truncated last line of a killed writer
                row = dict(zip(header, fields))
                rows.append({**row, **legacy_fields(row)} if is_legacy(row) else row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file past its header "
                                 f"({exc}); is it damaged? Nothing was merged.") from exc
    return rows


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
    from let_core.store import _blank_energy, warn_blank_energy

    for path, rows in zip(paths, contents):
        blank = [row for row in rows if _blank_energy(row.get("energy_consumed"), row.get("error"))]
        if blank:
            warn_blank_energy(path, blank)
    store = Store(into)
    if any(p.resolve() == store.path.resolve() for p in paths if p.exists()):
        raise ConfigurationError(f"{store.path} is the target store itself; merge other files into it")
    seen = {_key(row) for row in store.rows()}
    reports = []
    for path, rows in zip(paths, contents):
        new: list[dict[str, str]] = []
        total = 0
        for row in rows:
            total += 1
            key = _key(row)
            if key in seen:
                continue
            seen.add(key)
            new.append(row)
        store.append(new)
        reports.append(FileReport(str(path), total, len(new), total - len(new)))
    return MergeReport(str(store.path), tuple(reports))


# ----------------------------------------------------------------------------- aggregation
GROUP_COLUMNS = {"project": "project_name", "host": "hostname", "backend": "backend", "job": "job"}

#: What ``frame_totals`` (the paper statement) reads: ``load_results(columns=TOTALS_COLUMNS)``.
TOTALS_COLUMNS: tuple[str, ...] = ("run_id", "task", "kind", "scope", "energy_consumed", "emissions",
                                   "carbon_intensity", "methodology", "hardware", "job_id", "hostname",
                                   "backend")
#: What ``aggregate`` (``let results --by``) reads.
AGGREGATE_COLUMNS: tuple[str, ...] = TOTALS_COLUMNS + ("project_name", "duration")

# A run's rows of one kind are encoded as one integer, base (scopes + 1), one digit per row;
# runs longer than this go through records.primary_measurements one by one.
_MAX_SIGNATURE = 1 << 62


class _View:
    __slots__ = ("index", "kind", "scope", "energy_kwh")

    def __init__(self, index: Any, kind: str, scope: str, energy: float) -> None:
        self.index, self.kind, self.scope, self.energy_kwh = index, kind, scope or "system", energy


class _Columns:
    """The columns of a result set as numpy arrays, each computed once, without copying the frame.

    Frames come from ``load_results`` (Arrow-backed text, numpy numbers) or from users (object
    columns, missing columns); both give the same arrays here.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        from let_core.keys import row_codes

        self.frame = frame
        self.size = len(frame)
        self._empty: dict[str, np.ndarray] = {}
        if "run_id" in frame:
            self.runs, self.run_count = row_codes(frame["run_id"])
        else:
            import numpy as np

            self.runs, self.run_count = np.arange(self.size, dtype=np.int64), self.size
        self.top_level = self.empty("task")  # parts of a run are already inside the run's energy
        self.energy = self.numbers("energy_consumed")

    def empty(self, name: str) -> np.ndarray:
        """True where the text column is missing, null or "" (computed once per column)."""
        import numpy as np

        cached = self._empty.get(name)
        if cached is not None:
            return cached
        if name not in self.frame:
            result = np.ones(self.size, dtype=bool)
        else:
            values = self.frame[name]
            result = (values == "").to_numpy(dtype=bool, na_value=True) | values.isna().to_numpy(dtype=bool)
        self._empty[name] = result
        return result

    def selected(self, name: str, mask: np.ndarray) -> pd.Series:
        """The column's values where ``mask`` holds; no filtered copy when it holds everywhere."""
        values = self.frame[name]
        return values if mask.all() else values[mask]

    def equals(self, name: str, text: str) -> np.ndarray:
        import numpy as np

        if name not in self.frame:
            return np.full(self.size, text == "", dtype=bool)
        return (self.frame[name] == text).to_numpy(dtype=bool, na_value=False)

    def numbers(self, name: str) -> np.ndarray:
        import numpy as np
        import pandas as pd

        if name not in self.frame:
            return np.full(self.size, np.nan)
        return pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    def emissions(self) -> np.ndarray:
        """Stored kg CO2e, else energy x carbon intensity, else 0."""
        import numpy as np

        stored = self.numbers("emissions")
        derived = self.energy * self.numbers("carbon_intensity") / 1000.0
        return np.nan_to_num(np.where(np.isnan(stored), derived, stored), nan=0.0)

    def per_run(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        import numpy as np

        return np.bincount(self.runs[mask], weights=None if weights is None else weights[mask],
                           minlength=self.run_count)


def _primary(columns: _Columns, kind: str) -> np.ndarray:
    """True for the rows of ``kind`` that make up their run's energy of that kind.

    ``records.primary_measurements`` per run, vectorised: a run with one usable row of the kind
    (the common case) takes it; runs with several are grouped by their sequence of scopes, and
    the rule runs once per distinct sequence (a handful), not once per run.
    """
    import numpy as np
    import pandas as pd

    usable = np.flatnonzero(columns.top_level & np.isfinite(columns.energy) & columns.equals("kind", kind))
    chosen = np.zeros(columns.size, dtype=bool)
    if not len(usable):
        return chosen
    runs = columns.runs[usable]
    repeated = np.bincount(runs, minlength=columns.run_count)[runs] > 1
    chosen[usable[~repeated]] = True
    multi = usable[repeated]
    if not len(multi):
        return chosen
    # Group the rows run by run, keeping their stored order inside each run.
    multi = multi[np.argsort(columns.runs[multi], kind="stable")]
    runs = columns.runs[multi]
    starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
    lengths = np.diff(np.r_[starts, len(multi)])
    position = np.arange(len(multi)) - np.repeat(starts, lengths)
    if "scope" in columns.frame:
        scope_values = columns.frame["scope"].iloc[multi].astype(object).fillna("").to_numpy()
    else:
        scope_values = np.full(len(multi), "", dtype=object)
    scope_codes, scope_names = pd.factorize(scope_values)
    base = len(scope_names) + 1
    if float(base) ** int(lengths.max()) >= _MAX_SIGNATURE:
        for start, length in zip(starts, lengths):
            rows = multi[start:start + length]
            views = [_View(r, kind, str(s), float(columns.energy[r]))
                     for r, s in zip(rows, scope_values[start:start + length])]
            chosen[[v.index for v in primary_measurements(views, kind)]] = True
        return chosen
    digits = (scope_codes.astype(np.int64) + 1) * (base ** position.astype(np.int64))
    signatures = np.add.reduceat(digits, starts)
    distinct, which = np.unique(signatures, return_inverse=True)
    longest = int(lengths.max())
    taken = np.zeros((len(distinct), longest), dtype=bool)
    for number, signature in enumerate(distinct.tolist()):
        views = []
        place = 0
        while signature:
            signature, digit = divmod(signature, base)
            views.append(_View(place, kind, str(scope_names[digit - 1]), 1.0))
            place += 1
        for view in primary_measurements(views, kind):
            taken[number, view.index] = True
    chosen[multi] = taken[np.repeat(which, lengths), position]
    return chosen


def primary_rows(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """True for the rows of ``kind`` that make up their run's energy of that kind (numpy mask)."""
    return _primary(_Columns(frame), kind)


def _counted(columns: _Columns) -> np.ndarray:
    metered = _primary(columns, "metered")
    estimate = _primary(columns, "estimate")
    if not metered.any():
        return estimate
    has_metered = columns.per_run(metered) > 0
    return metered | (estimate & ~has_metered[columns.runs])


def counted_rows(frame: pd.DataFrame) -> np.ndarray:
    """The rows of each run's headline energy: metered where the run has any, else estimates."""
    return _counted(_Columns(frame))


def _job_duplicates(columns: _Columns, counted: np.ndarray) -> np.ndarray:
    """Counted rows of a job that repeat another rank's measurement of the same devices."""
    import numpy as np
    import pandas as pd

    duplicate = np.zeros(columns.size, dtype=bool)
    if "scope" in columns.frame:
        scopes = columns.frame["scope"].astype(object).fillna("").to_numpy()
        shared = np.fromiter((shared_by_ranks(str(s)) for s in pd.unique(scopes)), dtype=bool)
        shared = shared[pd.Index(pd.unique(scopes)).get_indexer(scopes)]
    else:
        shared = np.ones(columns.size, dtype=bool)
    candidates = np.flatnonzero(counted & ~columns.empty("job_id") & shared)
    if not len(candidates):
        return duplicate
    keys = [k for k in ("job_id", "hostname", "backend", "hardware") if k in columns.frame]
    sub = columns.frame[keys].iloc[candidates].astype(object).fillna("").reset_index(drop=True)
    energy = pd.Series(columns.energy[candidates])
    best = energy.groupby([sub[k] for k in keys]).transform("idxmax").to_numpy()
    duplicate[candidates] = best != np.arange(len(candidates))
    return duplicate


def _labels(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Group codes and their labels, nulls and "" being one group ""."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    names = ["" if pd.isna(u) else str(u) for u in uniques]
    merged, labels = pd.factorize(np.array(names, dtype=object))
    return merged[codes], [str(label) for label in labels]


def aggregate(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Runs, kWh, kg CO2e and hours per group (``project``, ``host``, ``backend`` or ``job``).

    Vectorised over integer codes: one hashing pass over the run ids, one over the group
    column, then ``bincount``s; no string is built or hashed per (group, run) pair.
    """
    import numpy as np
    import pandas as pd

    if by not in GROUP_COLUMNS:
        raise ConfigurationError(f"cannot group by {by!r}; use one of {', '.join(GROUP_COLUMNS)}")
    columns = _Columns(frame)
    if by == "backend":
        # Each backend's own view: every measurement of that backend counts.
        counted = columns.top_level & ~np.isnan(columns.energy)
    else:
        counted = _counted(columns)
        counted &= ~_job_duplicates(columns, counted)
    rows = np.flatnonzero(columns.top_level)
    if by == "job":
        job = frame["job_id"] if "job_id" in frame else pd.Series("", index=frame.index)
        job = job.iloc[rows].astype(object).fillna("")
        run_ids = frame["run_id"].iloc[rows].astype(object).fillna("").astype(str)
        key = job.where(job != "", "run " + run_ids.str[:8])
    else:
        column = GROUP_COLUMNS[by]
        key = frame[column].iloc[rows] if column in frame else pd.Series("", index=frame.index[rows])
    groups, names = _labels(key.reset_index(drop=True))
    kwh = np.bincount(groups, weights=np.where(counted, columns.energy, 0.0)[rows], minlength=len(names))
    kg = np.bincount(groups, weights=np.where(counted, columns.emissions(), 0.0)[rows], minlength=len(names))
    # One code per (group, run): a run's hours are its longest measurement, since the backends
    # of one run overlap in time.
    pairs, pair_values = pd.factorize(groups.astype(np.int64) * columns.run_count + columns.runs[rows])
    pair_group = pair_values // columns.run_count
    longest = np.full(len(pair_values), -np.inf)
    np.maximum.at(longest, pairs, np.nan_to_num(columns.numbers("duration")[rows], nan=0.0))
    runs = np.bincount(pair_group, minlength=len(names))
    hours = np.bincount(pair_group, weights=longest, minlength=len(names)) / 3600
    order = sorted(range(len(names)), key=names.__getitem__)
    return pd.DataFrame({by: [names[i] for i in order], "runs": runs[order].astype(np.int64),
                         "kwh": kwh[order], "kg": kg[order], "hours": hours[order]})


def frame_totals(frame: pd.DataFrame) -> Any:
    """``store.Totals`` (what the paper statement needs) from a result set, vectorised.

    Same sums as the store's own totals, plus the multi-node rule: ranks of one job that
    measured the same devices count once. Reads only ``TOTALS_COLUMNS``.
    """
    import numpy as np

    from let_core.store import KindTotals, Totals

    columns = _Columns(frame)
    emissions = columns.emissions()
    totals = Totals()
    per_run: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for kind in ("estimate", "metered"):
        mask = _primary(columns, kind)
        mask &= ~_job_duplicates(columns, mask)
        if not mask.any():
            continue
        result = KindTotals()
        result.energy_kwh = float(columns.energy[mask].sum())
        result.emissions_kg = float(emissions[mask].sum())
        present[kind] = columns.per_run(mask) > 0
        result.runs = int(np.count_nonzero(present[kind]))
        for attribute, name in (("methodologies", "methodology"), ("hardware", "hardware")):
            counts = columns.selected(name, mask).value_counts() if name in frame else {}
            setattr(result, attribute, {str(k): int(v) for k, v in counts.items() if isinstance(k, str) and k})
        setattr(totals, kind, result)
        per_run[kind] = columns.per_run(mask, columns.energy)
    if len(per_run) == 2:
        both = present["estimate"] & present["metered"]
        totals.paired_runs = int(np.count_nonzero(both))
        totals.paired_estimate_kwh = float(per_run["estimate"][both].sum())
        totals.paired_metered_kwh = float(per_run["metered"][both].sum())
    return totals
