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
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from attrs import frozen

from let_core.errors import ConfigurationError
from let_core.records import is_legacy, legacy_fields, primary_measurements

if TYPE_CHECKING:
    import pandas as pd

#: What makes a CSV an emissions file: CodeCarbon's core columns (LET 0.1.x and 1.x have them too).
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "run_id", "duration", "emissions", "energy_consumed")


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
    return ("row",) + tuple(f"{k}={v}" for k, v in sorted(row.items()))


def _resolve(path: str | os.PathLike[str]) -> Path:
    candidate = Path(path).expanduser()
    return candidate / "emissions.csv" if candidate.is_dir() else candidate


def check_file(path: Path) -> list[str]:
    """The file's header; raises ConfigurationError naming the file and what it lacks."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: no such file; give emissions.csv files or their folders") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: cannot be read as an emissions file ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigurationError(
            f"{path} is not an emissions file (LET or CodeCarbon): it lacks the column(s) "
            f"{', '.join(missing)}. Nothing was merged.")
    return header


def _rows(path: Path, header: list[str]) -> Iterable[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for fields in reader:
            if len(fields) != len(header):
                continue  # a truncated last line of a killed writer
            row = dict(zip(header, fields))
            yield {**row, **legacy_fields(row)} if is_legacy(row) else row


def merge(files: Sequence[str | os.PathLike[str]], into: str | os.PathLike[str]) -> MergeReport:
    """Append every row of ``files`` that ``into``'s store lacks; returns what was merged.

    All files are checked before anything is written, so a wrong file merges nothing.
    """
    from let_core.store import Store

    if not files:
        raise ConfigurationError("give at least one emissions.csv to merge")
    paths = [_resolve(f) for f in files]
    headers = [check_file(p) for p in paths]
    store = Store(into)
    if any(p.resolve() == store.path.resolve() for p in paths if p.exists()):
        raise ConfigurationError(f"{store.path} is the target store itself; merge other files into it")
    seen = {_key(row) for row in store.rows()}
    reports = []
    for path, header in zip(paths, headers):
        new: list[dict[str, str]] = []
        total = 0
        for row in _rows(path, header):
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


class _View:
    __slots__ = ("index", "kind", "scope", "energy_kwh")

    def __init__(self, index: Any, kind: str, scope: str, energy: float) -> None:
        self.index, self.kind, self.scope, self.energy_kwh = index, kind, scope or "system", energy


def _run_keys(frame: pd.DataFrame) -> pd.Series:
    import pandas as pd

    run_ids = frame["run_id"].fillna("")
    empty = run_ids == ""
    if not empty.any():
        return run_ids
    # Rows without a run id (hand-made files) are runs of their own.
    return run_ids.astype(object).where(~empty, pd.Series("#" + frame.index.astype(str), index=frame.index))


def primary_rows(frame: pd.DataFrame, kind: str) -> pd.Series:
    """True for the rows of ``kind`` that make up their run's energy of that kind.

    ``records.primary_measurements`` per run: overlapping scopes are not added twice. Runs
    with a single usable measurement (the common case) are handled vectorised.
    """
    import numpy as np
    import pandas as pd

    chosen = pd.Series(False, index=frame.index)
    energy = pd.to_numeric(frame["energy_consumed"], errors="coerce")
    usable = (energy.notna() & np.isfinite(energy) & (frame["task"].fillna("") == "")
              & (frame["kind"].fillna("") == kind))
    keys = _run_keys(frame)[usable]
    if keys.empty:
        return chosen
    repeated = keys.duplicated(keep=False)  # one hashing pass; value_counts + map is 3x slower
    chosen.loc[repeated.index[~repeated]] = True
    multi = keys[repeated]
    if not multi.empty:
        scopes = frame.loc[multi.index, "scope"].astype(object).fillna("")
        for _, indexes in multi.groupby(multi).groups.items():
            views = [_View(i, kind, str(scopes.at[i]), float(energy[i])) for i in indexes]
            chosen.loc[[v.index for v in primary_measurements(views, kind)]] = True
    return chosen


def counted_rows(frame: pd.DataFrame) -> pd.Series:
    """The rows of each run's headline energy: metered where the run has any, else estimates."""
    metered = primary_rows(frame, "metered")
    estimate = primary_rows(frame, "estimate")
    if not metered.any():
        return estimate
    keys = _run_keys(frame)
    has_metered = keys.isin(keys[metered].unique())
    return metered | (estimate & ~has_metered)


def _job_duplicates(frame: pd.DataFrame, counted: pd.Series) -> pd.Series:
    """Counted rows of a job that repeat another rank's measurement of the same devices."""
    import pandas as pd

    jobs = frame["job_id"].fillna("").astype(str)
    candidates = counted & (jobs != "")
    if not candidates.any():
        return pd.Series(False, index=frame.index)
    sub = frame.loc[candidates, ["job_id", "hostname", "backend", "hardware"]].astype(object).fillna("")
    energy = pd.to_numeric(frame.loc[candidates, "energy_consumed"], errors="coerce")
    keys = list(sub.columns)
    best = energy.groupby([sub[k] for k in keys]).transform("idxmax")
    duplicate = pd.Series(False, index=frame.index)
    duplicate.loc[candidates] = best != energy.index
    return duplicate


def aggregate(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Runs, kWh, kg CO2e and hours per group (``project``, ``host``, ``backend`` or ``job``)."""
    import pandas as pd

    if by not in GROUP_COLUMNS:
        raise ConfigurationError(f"cannot group by {by!r}; use one of {', '.join(GROUP_COLUMNS)}")
    columns = ["run_id", "project_name", "hostname", "backend", "kind", "scope", "task",
               "energy_consumed", "emissions", "duration", "job_id", "hardware", "carbon_intensity"]
    data = frame[[c for c in columns if c in frame]].copy()
    for column in columns:
        if column not in data:
            data[column] = ""
    data = data[data["task"].fillna("") == ""]
    if by == "backend":
        # Each backend's own view: every measurement of that backend counts.
        counted = pd.to_numeric(data["energy_consumed"], errors="coerce").notna()
    else:
        counted = counted_rows(data)
        counted &= ~_job_duplicates(data, counted)
    energy = pd.to_numeric(data["energy_consumed"], errors="coerce").where(counted, 0.0)
    emissions = pd.to_numeric(data["emissions"], errors="coerce")
    intensity = pd.to_numeric(data["carbon_intensity"], errors="coerce")
    emissions = emissions.fillna(energy * intensity / 1000.0).where(counted, 0.0).fillna(0.0)
    run_ids = data["run_id"].fillna("").astype(str)
    if by == "job":
        job = data["job_id"].fillna("").astype(str)
        key = job.where(job != "", "run " + run_ids.str[:8])
    else:
        key = data[GROUP_COLUMNS[by]].fillna("").astype(str)
    duration = pd.to_numeric(data["duration"], errors="coerce").fillna(0.0)
    # A run's hours: its longest measurement (backends of one run overlap in time).
    per_run = pd.DataFrame({"key": key, "run": run_ids, "duration": duration})
    run_hours = per_run.groupby(["key", "run"], sort=False)["duration"].max().groupby(level=0).sum() / 3600
    table = pd.DataFrame({"key": key, "run": run_ids, "kwh": energy, "kg": emissions})
    grouped = table.groupby("key", sort=True).agg(runs=("run", "nunique"), kwh=("kwh", "sum"), kg=("kg", "sum"))
    grouped["hours"] = run_hours.reindex(grouped.index).fillna(0.0)
    grouped.index.name = by
    return grouped.reset_index()


def frame_totals(frame: pd.DataFrame) -> Any:
    """``store.Totals`` (what the paper statement needs) from a result set, vectorised.

    Same sums as the store's own totals, plus the multi-node rule: ranks of one job that
    measured the same devices count once.
    """
    import pandas as pd

    from let_core.store import KindTotals, Totals

    data = frame[frame["task"].fillna("") == ""] if "task" in frame else frame
    keys = _run_keys(data)
    totals = Totals()
    per_run: dict[str, pd.Series] = {}
    for kind in ("estimate", "metered"):
        mask = primary_rows(data, kind)
        mask &= ~_job_duplicates(data, mask)
        if not mask.any():
            continue
        energy = pd.to_numeric(data.loc[mask, "energy_consumed"], errors="coerce")
        stored = pd.to_numeric(data.loc[mask, "emissions"], errors="coerce")
        intensity = pd.to_numeric(data.loc[mask, "carbon_intensity"], errors="coerce")
        emissions = stored.fillna(energy * intensity / 1000.0).fillna(0.0)
        result = KindTotals()
        result.energy_kwh = float(energy.sum())
        result.emissions_kg = float(emissions.sum())
        result.runs = int(keys[mask].nunique())
        for attribute, column in (("methodologies", "methodology"), ("hardware", "hardware")):
            counts = data.loc[mask, column].astype(object).fillna("").value_counts()
            setattr(result, attribute, {str(k): int(v) for k, v in counts.items() if k})
        setattr(totals, kind, result)
        per_run[kind] = energy
    if len(per_run) == 2:
        # Only when both kinds exist: a per-run groupby over a million runs is the slow part.
        per_run = {kind: values.groupby(keys[values.index]).sum() for kind, values in per_run.items()}
        both = per_run["estimate"].index.intersection(per_run["metered"].index)
        totals.paired_runs = len(both)
        totals.paired_estimate_kwh = float(per_run["estimate"].loc[both].sum())
        totals.paired_metered_kwh = float(per_run["metered"].loc[both].sum())
    return totals
