"""What stored runs count for: the one place that decides it.

Every number LET reports about stored runs (the paper statement, ``let results --by``, plots,
STREP exports, the totals cache) comes from here, row by row (``Totals.add_run``, used by the
incremental cache) or vectorised over a frame (``frame_totals``, ``aggregate``), both applying
``records.primary_measurements`` and the same job rule.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from let_core.errors import ConfigurationError
from let_core.records import as_float, primary_measurements, shared_by_ranks

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# ------------------------------------------------------------------------- totals
class KindTotals:
    """Sums over the primary measurements of one kind (estimate or metered)."""

    __slots__ = ("energy_kwh", "emissions_kg", "runs", "methodologies", "hardware")

    def __init__(self) -> None:
        self.energy_kwh = 0.0
        self.emissions_kg = 0.0
        self.runs = 0
        self.methodologies: dict[str, int] = {}
        self.hardware: dict[str, int] = {}

    def add(self, energy: float, emissions: float, methodologies: Iterable[str],
            hardware: Iterable[str]) -> None:
        self.energy_kwh += energy
        self.emissions_kg += emissions
        self.runs += 1
        for name in methodologies:
            if name:
                self.methodologies[name] = self.methodologies.get(name, 0) + 1
        for name in hardware:
            if name:
                self.hardware[name] = self.hardware.get(name, 0) + 1

    def merged(self, other: KindTotals) -> KindTotals:
        result = KindTotals()
        result.energy_kwh = self.energy_kwh + other.energy_kwh
        result.emissions_kg = self.emissions_kg + other.emissions_kg
        result.runs = self.runs + other.runs
        for target, a, b in ((result.methodologies, self.methodologies, other.methodologies),
                             (result.hardware, self.hardware, other.hardware)):
            target.update(a)
            for key, count in b.items():
                target[key] = target.get(key, 0) + count
        return result

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KindTotals:
        result = cls()
        for name in cls.__slots__:
            setattr(result, name, data[name])
        return result


class Totals:
    """What a paper statement needs: per-kind sums, and the runs measured both ways."""

    def __init__(self) -> None:
        self.estimate = KindTotals()
        self.metered = KindTotals()
        self.paired_runs = 0
        self.paired_estimate_kwh = 0.0
        self.paired_metered_kwh = 0.0
        # Ranks of one multi-process job on one host measure the same machine: per
        # (job, host, backend, hardware) only the largest measurement counts (as `let results`).
        self.job_counted: dict[str, float] = {}

    @property
    def empty(self) -> bool:
        return self.estimate.runs == 0 and self.metered.runs == 0

    def _counted(self, view: _RowView) -> float:
        """The part of a measurement not already counted for another rank of its job."""
        job = view.row.get("job_id", "")
        if not job or not shared_by_ranks(view.scope):
            return view.energy_kwh
        key = "\x1f".join((job, view.row.get("hostname", ""), view.row.get("backend", ""),
                            view.row.get("hardware", "")))
        before = self.job_counted.get(key, 0.0)
        self.job_counted[key] = max(before, view.energy_kwh)
        return max(0.0, view.energy_kwh - before)

    def add_run(self, rows: Sequence[Mapping[str, str]]) -> None:
        views = [_RowView(row) for row in rows]
        energies: dict[str, float] = {}
        for kind in ("estimate", "metered"):
            primary = primary_measurements(views, kind)
            if not primary:
                continue
            counted = [(view, self._counted(view)) for view in primary]
            energy = sum(part for _, part in counted)
            emissions = sum(_emissions(view.row, view.energy_kwh) * (part / view.energy_kwh
                                                                      if view.energy_kwh else 0.0)
                            for view, part in counted)
            getattr(self, kind).add(energy, emissions, [v.row.get("methodology", "") for v in primary],
                                    [v.row.get("hardware", "") for v in primary])
            energies[kind] = energy
        if len(energies) == 2:
            self.paired_runs += 1
            self.paired_estimate_kwh += energies["estimate"]
            self.paired_metered_kwh += energies["metered"]

    def merged(self, other: Totals) -> Totals:
        result = Totals()
        result.estimate = self.estimate.merged(other.estimate)
        result.metered = self.metered.merged(other.metered)
        result.paired_runs = self.paired_runs + other.paired_runs
        result.paired_estimate_kwh = self.paired_estimate_kwh + other.paired_estimate_kwh
        result.paired_metered_kwh = self.paired_metered_kwh + other.paired_metered_kwh
        # Groups are (project, user, host): a job's ranks share one group, so no overlap here.
        result.job_counted = {**self.job_counted, **other.job_counted}
        return result

    def to_json(self) -> dict[str, Any]:
        return {"estimate": self.estimate.to_json(), "metered": self.metered.to_json(),
                "paired_runs": self.paired_runs, "paired_estimate_kwh": self.paired_estimate_kwh,
                "paired_metered_kwh": self.paired_metered_kwh, "job_counted": self.job_counted}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Totals:
        result = cls()
        result.estimate = KindTotals.from_json(data["estimate"])
        result.metered = KindTotals.from_json(data["metered"])
        result.paired_runs = data["paired_runs"]
        result.paired_estimate_kwh = data["paired_estimate_kwh"]
        result.paired_metered_kwh = data["paired_metered_kwh"]
        result.job_counted = data.get("job_counted", {})
        return result


class _RowView:
    __slots__ = ("row", "kind", "scope", "energy_kwh")

    def __init__(self, row: Mapping[str, str]) -> None:
        self.row = row
        self.kind = row.get("kind", "")
        self.scope = row.get("scope", "") or "system"
        self.energy_kwh = as_float(row.get("energy_consumed"))


def _emissions(row: Mapping[str, str], energy: float) -> float:
    stored = as_float(row.get("emissions"))
    if math.isfinite(stored):
        return stored
    intensity = as_float(row.get("carbon_intensity"))
    return energy * intensity / 1000.0 if math.isfinite(intensity) else 0.0


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


def frame_totals(frame: pd.DataFrame) -> Totals:
    """``store.Totals`` (what the paper statement needs) from a result set, vectorised.

    Same sums as the store's own totals, plus the multi-node rule: ranks of one job that
    measured the same devices count once. Reads only ``TOTALS_COLUMNS``.
    """
    import numpy as np

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
