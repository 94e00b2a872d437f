"""What stored runs count for: the rules of ``rule`` applied to a set of rows.

Every number LET reports about runs (a run's own headline energy, the paper statement,
``lett results``, plots, STREP exports, the totals cache) comes from ``rule``, applied either
run by run (``Accumulator.add_run``, which the totals cache uses and which needs only the
standard library) or over a frame (``frame_totals``, ``aggregate``), where ``rule.decide`` is
evaluated once per distinct shape of a run, ``rule.emissions`` on columns, and the job rule
(``rule.Launches``) on the job rows in stored order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen

from let_core.carbon import country_g_per_kwh
from let_core.errors import ConfigurationError
from let_core.results.rule import (
    COUNTED,
    EST_PRIMARY,
    FULL_COVERAGE,
    JOB_KEYS,
    MET_PRIMARY,
    MIN_COVERAGE,
    SHARED_OUT,
    SYSTEM_SCOPE,
    Launches,
    View,
    as_float,
    checkpoint_order,
    decide,
    epoch,
    interval,
    job_rule_applies,
    latest_checkpoints,
    low_coverage,
    recorded_intensity,
    row_emissions,
    run_unit,
    scalar_where,
    share_of,
    shared_by_ranks,
    usable_energy,
)
from let_core.results.rule import emissions as emissions_rule

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["COUNTED", "EST_PRIMARY", "FULL_COVERAGE", "MET_PRIMARY", "MIN_COVERAGE", "Accumulator", "Totals",
           "Breakdown", "aggregate", "attributed_view", "breakdown", "counted_rows", "frame_accumulators",
           "frame_totals", "primary_rows", "row_roles", "run_hours", "run_units", "unshared_runs", "usable_energy"]


# ------------------------------------------------------------------------- totals
def _counts(values: Iterable[str]) -> dict[str, int]:
    result: dict[str, int] = {}
    for value in values:
        if value:
            result[value] = result.get(value, 0) + 1
    return result


def _merge_counts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    result = dict(a)
    for key, count in b.items():
        result[key] = result.get(key, 0) + count
    return result


def _count_map(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and type(v) is int for k, v in value.items()):
        raise TypeError("counts must map text to integers")
    return dict(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"expected a count, got {value!r}")
    return value


@frozen
class Totals:
    """What a set of runs counts for: the paper statement's numbers, and ``lett results``' totals.

    ``energy_kwh`` / ``emissions_kg`` are the counted figures (rule above), ``metered_kwh`` the
    part of them that was metered; ``methodologies``, ``hardware`` and ``backends`` count the
    counted measurements. ``paired_*`` describe the runs measured both ways;
    ``metered_seconds`` / ``covered_seconds`` the metered time and how much of it had
    readings; ``low_coverage_runs`` the runs whose metered figure was set aside.
    """

    energy_kwh: float = 0.0
    emissions_kg: float = 0.0
    runs: int = 0
    metered_kwh: float = 0.0
    metered_runs: int = 0
    estimated_runs: int = 0
    methodologies: Mapping[str, int] = field(factory=dict)
    hardware: Mapping[str, int] = field(factory=dict)
    backends: Mapping[str, int] = field(factory=dict)
    paired_runs: int = 0
    paired_estimate_kwh: float = 0.0
    paired_metered_kwh: float = 0.0
    paired_methodologies: Mapping[str, int] = field(factory=dict)
    paired_backends: Mapping[str, int] = field(factory=dict)
    metered_seconds: float = 0.0
    covered_seconds: float = 0.0
    low_coverage_runs: int = 0
    #: Counted rows whose stored emissions cell disagreed with energy x intensity (replaced).
    replaced_emissions: int = 0
    #: Sum and count of the intensities (g/kWh) of the counted rows: what a run of 0 kWh states.
    intensity_sum: float = 0.0
    intensity_rows: int = 0

    @property
    def empty(self) -> bool:
        return self.runs == 0

    def _repr_html_(self) -> str:
        """How a notebook shows the totals (IPython's rich display)."""
        from let_core.display import html_table, totals_rows

        return html_table(totals_rows(self), caption="LET totals")

    @property
    def estimate_kwh(self) -> float:
        return self.energy_kwh - self.metered_kwh

    @property
    def intensity(self) -> float | None:
        """The carbon intensity (g/kWh) behind the emissions: their ratio to the energy, else
        (no energy) the mean intensity the counted rows were recorded with; None if unknown."""
        if self.energy_kwh > 0:
            return self.emissions_kg * 1000 / self.energy_kwh
        return self.intensity_sum / self.intensity_rows if self.intensity_rows else None

    @property
    def coverage(self) -> float | None:
        """The fraction of the metered time that had readings (None: nothing metered)."""
        return self.covered_seconds / self.metered_seconds if self.metered_seconds > 0 else None

    def merged(self, other: Totals) -> Totals:
        return Totals(**{name: (_merge_counts(getattr(self, name), getattr(other, name))
                                if name in _COUNT_FIELDS else getattr(self, name) + getattr(other, name))
                         for name in _FIELDS})

    def to_json(self) -> dict[str, Any]:
        return {name: (dict(getattr(self, name)) if name in _COUNT_FIELDS else getattr(self, name))
                for name in _FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Totals:
        """Raises TypeError/KeyError on anything that is not exactly what ``to_json`` wrote."""
        values: dict[str, Any] = {}
        for name in _FIELDS:
            value = data[name]
            if name in _COUNT_FIELDS:
                values[name] = _count_map(value)
            elif name in _INT_FIELDS:
                values[name] = _integer(value)
            else:
                values[name] = _number(value)
        return cls(**values)


_FIELDS = tuple(a.name for a in Totals.__attrs_attrs__)  # type: ignore[attr-defined]
_COUNT_FIELDS = frozenset({"methodologies", "hardware", "backends", "paired_methodologies", "paired_backends"})
_INT_FIELDS = frozenset({"runs", "metered_runs", "estimated_runs", "paired_runs", "low_coverage_runs",
                         "replaced_emissions", "intensity_rows"})


def _intensity_of(row: Mapping[str, Any]) -> float:
    def country_of(own: bool) -> float:
        return math.nan if own else country_g_per_kwh(str(row.get("country_iso_code") or ""))

    return float(recorded_intensity(as_float(row.get("carbon_intensity")), country_of, where=scalar_where,
                                    isfinite=math.isfinite))


def _interval(row: Mapping[str, Any]) -> tuple[float, float]:
    return interval(epoch(row.get("start_time")), epoch(row.get("timestamp")), as_float(row.get("duration")))


def job_key(texts: Sequence[str]) -> str:
    """The job rule's key of a row (``rule.JOB_KEYS``' values)."""
    return json.dumps(list(texts))


@define
class Accumulator:
    """Totals being summed run by run (the totals cache's state for one project/user/host),
    with the job rule's memory of the last launch of each job key."""

    sums: dict[str, Any] = field(factory=lambda: Totals().to_json())
    launches: Launches = field(factory=Launches)

    def add_run(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add one run unit's top-level rows (in stored order): rules 1, 2, 4-8."""
        candidates = [row for row in rows if row.get("kind") in ("estimate", "metered")
                      and usable_energy(as_float(row.get("energy_consumed")))]
        keep = latest_checkpoints([as_float(row.get("duration")) for row in candidates],
                                  [str(row.get("backend") or "") for row in candidates])
        usable = [(row, as_float(row.get("energy_consumed"))) for row, kept in zip(candidates, keep) if kept]
        if not usable:
            return
        views = [View(i, str(row.get("kind")), str(row.get("scope") or ""),
                      row.get("kind") == "metered" and low_coverage(as_float(row.get("coverage"))))
                 for i, (row, _) in enumerate(usable)]
        roles = decide(views)
        s = self.sums
        counted_any = metered_counted = estimate_counted = estimate_primary = False
        paired_est = paired_met = 0.0
        paired_rows = []
        for (row, energy), view, role in zip(usable, views, roles):
            if not role:
                continue
            part = energy
            if job_rule_applies(str(row.get("job_id") or ""), view.scope):
                start, end = _interval(row)
                part = self.launches.part(job_key([str(row.get(k) or "") for k in JOB_KEYS]), start, end, energy)
            kg, intensity, replaced = row_emissions(energy, as_float(row.get("emissions")), _intensity_of(row))
            kg = kg * (part / energy) if energy > 0 else kg
            metered = view.kind == "metered" and not view.demoted
            if role & EST_PRIMARY:
                estimate_primary = True
                paired_est += part
                paired_rows.append(row)
            if role & COUNTED:
                counted_any = True
                s["energy_kwh"] += part
                s["emissions_kg"] += kg
                s["replaced_emissions"] += int(replaced)
                if math.isfinite(intensity):
                    s["intensity_sum"] += intensity
                    s["intensity_rows"] += 1
                _bump(s["methodologies"], row.get("methodology"))
                _bump(s["hardware"], row.get("hardware"))
                _bump(s["backends"], row.get("backend"))
                if metered:
                    metered_counted = True
                    s["metered_kwh"] += part
                    paired_met += part
                    duration = as_float(row.get("duration"))
                    duration = duration if math.isfinite(duration) else 0.0
                    coverage = as_float(row.get("coverage"))
                    coverage = coverage if math.isfinite(coverage) else 1.0
                    s["metered_seconds"] += duration
                    s["covered_seconds"] += duration * coverage
                else:
                    estimate_counted = True
        if counted_any:
            s["runs"] += 1
        if metered_counted:
            s["metered_runs"] += 1
        if estimate_counted:
            s["estimated_runs"] += 1
        if any(v.demoted for v in views):
            s["low_coverage_runs"] += 1
        if metered_counted and estimate_primary and not estimate_counted:
            s["paired_runs"] += 1
            s["paired_estimate_kwh"] += paired_est
            s["paired_metered_kwh"] += paired_met
            for row in paired_rows:
                _bump(s["paired_methodologies"], row.get("methodology"))
                _bump(s["paired_backends"], row.get("backend"))

    def totals(self) -> Totals:
        return Totals.from_json(self.sums)

    def to_json(self) -> dict[str, Any]:
        return {"sums": self.sums, "launches": self.launches.seen}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Accumulator:
        sums = Totals.from_json(data["sums"]).to_json()  # validates every field and type
        launches = data["launches"]
        if not isinstance(launches, dict):
            raise TypeError("launches must be a mapping")
        seen = {}
        for key, value in launches.items():
            if not isinstance(value, list) or not all(isinstance(v, list) and len(v) == 3 for v in value):
                raise TypeError("a key's launches are a list of [start, end, largest]")
            seen[str(key)] = [[_time(v[0]), _time(v[1]), _number(v[2])] for v in value]
        return cls(sums, Launches(seen))


def _time(value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return _number(value)


def _bump(counts: dict[str, int], name: Any) -> None:
    if name:
        counts[str(name)] = counts.get(str(name), 0) + 1


def totals_of_runs(runs: Iterable[Sequence[Mapping[str, Any]]]) -> Totals:
    """Totals of runs given as lists of rows (each run's top-level rows)."""
    accumulator = Accumulator()
    for rows in runs:
        accumulator.add_run(rows)
    return accumulator.totals()


# ------------------------------------------------------------------------- frames, vectorised
GROUP_COLUMNS = {"project": "project_name", "user": "user", "host": "hostname", "backend": "backend", "kind": "kind", "job": "job"}

#: What ``frame_totals`` (the paper statement) reads: ``load_results(columns=TOTALS_COLUMNS)``.
TOTALS_COLUMNS: tuple[str, ...] = ("run_id", "task", "kind", "scope", "energy_consumed", "emissions",
                                   "carbon_intensity", "methodology", "hardware", "job_id", "hostname",
                                   "backend", "project_name", "user", "duration", "coverage", "timestamp",
                                   "start_time", "country_iso_code", "task_name")
#: The text columns counting groups by (``_Columns.codes``): the Parquet reader keeps their
#: dictionary codes beside the frame.
CODED_COLUMNS: tuple[str, ...] = ("kind", "task", "scope", "methodology", "hardware", "backend",
                                  "project_name", "user", "hostname", "job_id")
#: What ``aggregate`` (``lett results --by``) reads; ``--by job`` also shows each job's nodes,
#: ranks and wall time.
AGGREGATE_COLUMNS: tuple[str, ...] = TOTALS_COLUMNS + ("rank",)

# A run's rows are encoded as one integer, base (row states + 1), one digit per row; runs
# longer than this go through ``decide`` one by one.
_MAX_SIGNATURE = 1 << 62


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
        self._codes: dict[str, tuple[np.ndarray, list[str]]] = {}
        import numpy as np

        if "run_id" in frame:
            self.runs, self.run_count = row_codes(run_units(frame))
        else:
            self.runs, self.run_count = np.arange(self.size, dtype=np.int64), self.size
        #: Every row a run of its own (one backend per run, no tasks: the usual store). Runs
        #: are then numbered as their rows, and per-run sums are the rows' own values.
        self.one_row_runs = self.run_count == self.size
        if self.one_row_runs:
            self.runs = np.arange(self.size, dtype=np.int64)
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
        elif self._known(name):
            codes, labels = self.codes(name)
            result = np.array([label == "" for label in labels], dtype=bool)[codes]
        else:
            values = self.frame[name]
            result = values.isna().to_numpy(dtype=bool)
            if not (values.dtype.kind in "mM" or hasattr(values.dtype, "tz")):  # datetimes are never ""
                result |= (values == "").to_numpy(dtype=bool, na_value=True)
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
        if text and self._known(name):  # (a missing value is not "", but has the code of "")
            codes, labels = self.codes(name)
            return np.array([label == text for label in labels], dtype=bool)[codes]
        return (self.frame[name] == text).to_numpy(dtype=bool, na_value=False)

    def _known(self, name: str) -> bool:
        """Whether the column's codes are at hand without hashing (read dictionary-encoded)."""
        from let_core.keys import dictionary_codes

        return name in self._codes or dictionary_codes(self.frame[name]) is not None

    def numbers(self, name: str) -> np.ndarray:
        import numpy as np
        import pandas as pd

        if name not in self.frame:
            return np.full(self.size, np.nan)
        return pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    def emissions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rule.emissions`` of every row: kg CO2e, the intensity used, whether the stored
        cell was replaced."""
        import numpy as np

        def country_of(own: np.ndarray) -> np.ndarray:
            if own.all():
                return np.full(self.size, np.nan)
            codes, labels = self.codes("country_iso_code")
            return np.array([country_g_per_kwh(label) for label in labels], dtype=float)[codes]

        with np.errstate(invalid="ignore"):
            intensity = recorded_intensity(self.numbers("carbon_intensity"), country_of, where=np.where,
                                           isfinite=np.isfinite)
        with np.errstate(invalid="ignore", divide="ignore"):
            return emissions_rule(self.energy, self.numbers("emissions"), intensity, where=np.where,
                                  isfinite=np.isfinite)

    def times(self, rows: np.ndarray) -> tuple[list[float], list[float]]:
        """``rule.interval`` of the given rows, in epoch seconds."""
        start = [_seconds(v) for v in self.frame["start_time"].iloc[rows]] if "start_time" in self.frame \
            else [math.nan] * len(rows)
        end = [_seconds(v) for v in self.frame["timestamp"].iloc[rows]] if "timestamp" in self.frame \
            else [math.nan] * len(rows)
        duration = self.numbers("duration")[rows].tolist()
        pairs = [interval(a, b, d) for a, b, d in zip(start, end, duration)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def per_run(self, mask: np.ndarray) -> np.ndarray:
        """How many rows of each run ``mask`` holds for."""
        import numpy as np

        if self.one_row_runs:
            return mask.astype(np.int64)
        return np.bincount(self.runs[mask], minlength=self.run_count)

    def of_runs(self, values: np.ndarray) -> np.ndarray:
        """A per-run array spread over the rows: each row gets its run's value."""
        return values if self.one_row_runs else values[self.runs]

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """The text column as non-negative integer codes (of any integer type: combine them in
        int64) and their labels ("" for missing values), computed once per column; Arrow columns
        are dictionary-encoded without a Python object per row."""
        import numpy as np
        import pandas as pd

        from let_core.keys import dictionary_codes

        cached = self._codes.get(name)
        if cached is not None:
            return cached
        known = dictionary_codes(self.frame[name]) if name in self.frame else None
        if name not in self.frame:
            result: tuple[np.ndarray, list[str]] = (np.zeros(self.size, dtype=np.int64), [""])
        elif known is not None:  # read dictionary-encoded (the Parquet dataset): no hashing
            result = known
        else:
            values = self.frame[name]
            source = getattr(values.array, "_pa_array", None)
            if source is not None:
                import pyarrow as pa
                import pyarrow.compute as pc

                if source.type != pa.string() and source.type != pa.large_string():
                    source = pc.cast(source, pa.string())
                encoded = pc.dictionary_encode(source.fill_null("")).combine_chunks()
                codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
                labels = [str(v) for v in encoded.dictionary.to_pylist()]
            else:
                raw, uniques = pd.factorize(values.astype(object).where(values.notna(), ""))
                codes, labels = np.asarray(raw, dtype=np.int64), [str(v) for v in uniques]
            if not labels:
                labels = [""]
            result = (codes, labels)
        self._codes[name] = result
        return result

    def text(self, name: str, mask: np.ndarray | None = None) -> np.ndarray:
        """The text column as an object array, "" for missing values (rows of ``mask`` only)."""
        import numpy as np

        if name not in self.frame:
            return np.full(self.size if mask is None else int(np.count_nonzero(mask)), "", dtype=object)
        values = self.frame[name] if mask is None else self.frame[name][mask]
        return values.astype(object).where(values.notna(), "").to_numpy(dtype=object)


def run_units(frame: pd.DataFrame) -> pd.Series:
    """``rule.run_unit`` of every row: the run id, with CodeCarbon's task name where there is one."""
    if "task_name" not in frame:
        return frame["run_id"]
    task = frame["task_name"].astype(object).where(frame["task_name"].notna(), "")
    if not (task != "").any():
        return frame["run_id"]
    run = frame["run_id"].astype(object).where(frame["run_id"].notna(), "")
    return run.combine(task, lambda r, t: run_unit(str(r), str(t)) if r else "")


def _seconds(value: Any) -> float:
    """A stored time (a datetime or ISO text) in epoch seconds, NaN when missing."""
    if hasattr(value, "timestamp") and not (value != value):
        return float(value.timestamp())
    return epoch(value) if isinstance(value, str) and value else math.nan


def keep_latest(groups: np.ndarray, duration: np.ndarray) -> np.ndarray:
    """``rule.latest_checkpoints`` over arrays: True for the row of each group that comes last
    in ``rule.checkpoint_order`` (the largest duration, the last stored among equals)."""
    import numpy as np

    size = len(groups)
    keep = np.zeros(size, dtype=bool)
    if not size:
        return keep
    order = np.lexsort((*reversed(checkpoint_order(duration, np.arange(size), where=np.where, isfinite=np.isfinite)),
                        groups))
    ordered = groups[order]
    keep[order[np.r_[ordered[1:] != ordered[:-1], True]]] = True
    return keep


def _latest(columns: _Columns, rows: np.ndarray) -> np.ndarray:
    """``rows`` without older checkpoints: of several rows of one run id and backend, the one
    ``keep_latest`` picks (as ``Accumulator.add_run`` does run by run)."""
    import numpy as np
    import pandas as pd

    if not len(rows) or columns.one_row_runs:
        return rows
    runs = columns.runs[rows]
    if np.bincount(runs).max() < 2:
        return rows
    backend_codes = columns.codes("backend")[0][rows]
    groups = pd.factorize(runs.astype(np.int64) * (int(backend_codes.max()) + 1) + backend_codes)[0]
    return rows[keep_latest(np.asarray(groups, dtype=np.int64), columns.numbers("duration")[rows])]


def _roles(columns: _Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's role (EST_PRIMARY | MET_PRIMARY | COUNTED bits, 0 for none), whether it is a
    metered figure set aside for low coverage, whether it is metered (and not set aside), and
    whether the rule considered it at all (usable, not an older checkpoint)."""
    import numpy as np

    roles = np.zeros(columns.size, dtype=np.int8)
    is_estimate = columns.equals("kind", "estimate")
    is_metered = columns.equals("kind", "metered")
    demoted = is_metered & low_coverage(columns.numbers("coverage"))
    metered = is_metered & ~demoted
    usable = columns.top_level & usable_energy(columns.energy) & (is_estimate | is_metered)
    rows = _latest(columns, np.flatnonzero(usable))
    considered = np.zeros(columns.size, dtype=bool)
    considered[rows] = True
    if not len(rows):
        return roles, demoted, metered, considered
    # Each usable row's state: (kind, set aside, scope), coded as a small integer.
    every = len(rows) == columns.size  # (then rows are all rows, in order: no selection needed)
    scope_codes, scope_labels = columns.codes("scope")
    # 0 an estimate, 1 metered, 2 metered but set aside (usable rows are one of the two kinds)
    state = (~is_estimate).astype(np.int64) + demoted
    combined = state * len(scope_labels) + scope_codes
    if not every:
        combined = combined[rows]
    # A handful of states: numbered through a table as long as the combinations (no hashing).
    present = np.bincount(combined, minlength=3 * len(scope_labels)) > 0
    uniques = np.flatnonzero(present)
    numbering = np.cumsum(present) - 1
    codes = numbering[combined]
    names = [(int(u) // len(scope_labels), scope_labels[int(u) % len(scope_labels)] or SYSTEM_SCOPE)
             for u in uniques]

    def views_of(code_list: Sequence[int]) -> list[View]:
        views = []
        for place, code in enumerate(code_list):
            kind_state, scope = names[code]
            views.append(View(place, "estimate" if kind_state == 0 else "metered", scope, kind_state == 2))
        return views

    # Most runs have one usable row: its role depends on its state alone (a handful of them).
    single = np.array([decide(views_of([code]))[0] for code in range(len(names))], dtype=np.int8)
    if columns.one_row_runs:
        roles[rows] = single[codes]
        return roles, demoted, metered, considered
    run_of = columns.runs[rows]
    alone = np.bincount(run_of, minlength=columns.run_count)[run_of] == 1
    if alone.any():
        roles[rows[alone]] = single[codes[alone]]
        rows, run_of, codes = rows[~alone], run_of[~alone], codes[~alone]
        if not len(rows):
            return roles, demoted, metered, considered
    order = np.argsort(run_of, kind="stable")  # run by run, stored order inside each run
    sorted_rows, sorted_runs, sorted_codes = rows[order], run_of[order], codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_runs[1:] != sorted_runs[:-1]])
    lengths = np.diff(np.r_[starts, len(sorted_rows)])
    position = np.arange(len(sorted_rows)) - np.repeat(starts, lengths)
    base = len(names) + 1
    longest = int(lengths.max())
    if float(base) ** longest >= _MAX_SIGNATURE:
        for start, length in zip(starts, lengths):
            chunk = sorted_rows[start:start + length]
            roles[chunk] = decide(views_of(sorted_codes[start:start + length].tolist()))
        return roles, demoted, metered, considered
    digits = (sorted_codes + 1) * (base ** position.astype(np.int64))
    signatures = np.add.reduceat(digits, starts)
    distinct, which = np.unique(signatures, return_inverse=True)
    table = np.zeros((len(distinct), longest), dtype=np.int8)
    for number, signature in enumerate(distinct.tolist()):
        code_list = []
        while signature:
            signature, digit = divmod(signature, base)
            code_list.append(digit - 1)
        table[number, :len(code_list)] = decide(views_of(code_list))
    roles[sorted_rows] = table[np.repeat(which, lengths), position]
    return roles, demoted, metered, considered


def _shared_job_rows(columns: _Columns, roles: np.ndarray) -> np.ndarray:
    """Rows the job rule applies to: counted, part of a job, and of a scope every rank on a
    host measures alike (not a per-GPU figure)."""
    import numpy as np

    candidates = (roles > 0) & ~columns.empty("job_id")
    if not candidates.any():
        return np.flatnonzero(candidates)
    scope_codes, scope_labels = columns.codes("scope")
    shared_label = np.array([shared_by_ranks(label) for label in scope_labels], dtype=bool)
    return np.flatnonzero(candidates & shared_label[scope_codes])


def _job_parts(columns: _Columns, roles: np.ndarray) -> tuple[np.ndarray, Launches]:
    """Each row's energy after the job rule (``rule.Launches``, fed the job rows in stored
    order as the row path feeds them), and the rule's memory afterwards."""
    import numpy as np

    parts = np.where(roles > 0, columns.energy, 0.0)
    launches = Launches()
    rows = _shared_job_rows(columns, roles)
    if not len(rows):
        return parts, launches
    texts = [columns.text(k)[rows].tolist() for k in JOB_KEYS]
    starts, ends = columns.times(rows)
    energy = columns.energy[rows].tolist()
    for place, row in enumerate(rows.tolist()):
        key = job_key([str(t[place]) for t in texts])
        parts[row] = launches.part(key, starts[place], ends[place], energy[place])
    return parts, launches


def _part_emissions(columns: _Columns, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Columns.emissions`` with each row's kg in proportion to the part of its energy it
    counts for (``_job_parts``), as the row path does."""
    import numpy as np

    kg, used, replaced = columns.emissions()
    energy = columns.energy
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(energy > 0, parts / np.where(energy > 0, energy, 1.0), 1.0)
    return np.where(energy > 0, kg * ratio, kg), used, replaced


def _value_counts(columns: _Columns, name: str, mask: np.ndarray) -> dict[str, int]:
    if name not in columns.frame or not mask.any():
        return {}
    counts = columns.selected(name, mask).value_counts()
    return {str(k): int(v) for k, v in counts.items() if isinstance(k, str) and k}


def _frame_counting(frame: pd.DataFrame) -> tuple[_Columns, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                  Launches]:
    columns = _Columns(frame)
    roles, demoted, metered, considered = _roles(columns)
    parts, launches = _job_parts(columns, roles)
    return columns, roles, parts, demoted & considered, metered, launches


def frame_totals(frame: pd.DataFrame, attributed: bool = False) -> Totals:
    """``Totals`` of a result set, vectorised: the same rule and numbers as the row path.

    ``attributed=True`` counts each machine figure's share instead of the figure, where the run
    has one (``rule`` 9, ``attributed_view``)."""
    if attributed:
        frame = attributed_view(frame)
    result = Totals()
    for accumulator in frame_accumulators(frame, by_group=False).values():
        result = result.merged(accumulator.totals())
    return result


def frame_accumulators(frame: pd.DataFrame, by_group: bool = True) -> dict[tuple[str, str, str], Accumulator]:
    """Per (project, user, host), what ``Accumulator.add_run`` would hold after every run of
    the frame (in its order): the totals cache is rebuilt from this, vectorised."""
    import numpy as np
    import pandas as pd

    counting = _frame_counting(frame)
    columns = counting[0]
    if by_group:
        key_codes = [columns.codes(k) for k in ("project_name", "user", "hostname")]
        combined = np.zeros(columns.size, dtype=np.int64)
        for codes_k, labels_k in key_codes:
            combined = combined * len(labels_k) + codes_k
        group, uniques = pd.factorize(combined)
        labels = []
        for value in uniques.tolist():
            names_g = []
            for _codes_k, labels_k in reversed(key_codes):
                value, code = divmod(value, len(labels_k))
                names_g.append(labels_k[code])
            labels.append(tuple(reversed(names_g)))
    else:
        group, labels = np.zeros(columns.size, dtype=np.int64), [("", "", "")]
    if not labels:
        return {}
    return _accumulate(counting, np.asarray(group, dtype=np.int64), labels,
                       _launches_by_group(counting[5], labels))


@frozen
class Breakdown:
    """What a result set counts for, in total and split by groupings, with each row's share."""

    totals: Totals
    #: grouping name -> label -> that group's totals (each grouping's groups add up to ``totals``)
    groups: Mapping[str, Mapping[str, Totals]]
    #: per row, the kWh and kg CO2e it counts for (0 where it counts for nothing): a run's
    #: headline figure is the sum over its rows
    row_kwh: np.ndarray
    row_kg: np.ndarray


def breakdown(frame: pd.DataFrame, groupings: Mapping[str, str | Sequence[Any]]) -> Breakdown:
    """The counting of ``frame_totals`` done once over the whole frame and split by each
    grouping: a column name of ``frame`` (``"project_name"``, ``"user"``, ``"hostname"``...) or
    one label per row (a month, an institute's group). Missing labels are the group ""."""
    import numpy as np
    import pandas as pd

    counting = _frame_counting(frame)
    columns = counting[0]
    emissions = _part_emissions(columns, counting[2])
    whole = _accumulate(counting, np.zeros(columns.size, dtype=np.int64), [""], [{}], emissions)
    groups: dict[str, dict[str, Totals]] = {}
    for name, labels in groupings.items():
        if isinstance(labels, str):
            codes, names = columns.codes(labels)
            codes = np.asarray(codes, dtype=np.int64)
            if len(set(names)) != len(names):  # "" from a null and from an empty text: one group
                codes, names = _labels(pd.Series(np.asarray(names, dtype=object)[codes]))
        elif len(labels) != len(frame):
            raise ValueError(f"grouping {name!r}: {len(labels)} labels for {len(frame)} rows")
        else:
            codes, names = _labels(pd.Series(np.asarray(labels, dtype=object)))
        if not len(frame):
            groups[name] = {}
            continue
        accumulators = _accumulate(counting, np.asarray(codes, dtype=np.int64), names, [{} for _ in names],
                                   emissions)
        groups[name] = {label: accumulator.totals() for label, accumulator in accumulators.items()}
    counted = (counting[1] & COUNTED) > 0
    kg = emissions[0]
    return Breakdown(totals=whole[""].totals() if whole else Totals(), groups=groups,
                     row_kwh=np.where(counted, counting[2], 0.0), row_kg=np.where(counted, kg, 0.0))


def _accumulate(counting: tuple[_Columns, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Launches],
                group: np.ndarray, labels: Sequence[Any], job_max: Sequence[dict[str, list[float]]],
                emissions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[Any, Accumulator]:
    """What ``Accumulator.add_run`` would hold per group (rows coded by ``group`` into ``labels``);
    ``emissions`` is ``_part_emissions`` of the counting, when already computed."""
    import numpy as np

    columns, roles, parts, demoted, metered, _ = counting
    count = len(labels)
    counted = (roles & COUNTED) > 0
    emissions, used, replaced = emissions if emissions is not None else _part_emissions(columns, parts)
    known = counted & np.isfinite(used)
    counted_metered = counted & metered
    estimate_primary = (roles & EST_PRIMARY) > 0
    has_metered = columns.per_run(counted_metered) > 0
    has_estimate_counted = columns.per_run(counted & ~metered) > 0
    has_estimate_primary = columns.per_run(estimate_primary) > 0
    has_counted = columns.per_run(counted) > 0
    low = columns.per_run(demoted) > 0
    paired_run = has_metered & has_estimate_primary & ~has_estimate_counted
    paired_rows = columns.of_runs(paired_run)
    # A run's group: that of its rows (a run is recorded by one user on one host).
    if columns.one_row_runs:
        run_group = group
    else:
        run_group = np.zeros(columns.run_count, dtype=np.int64)
        run_group[columns.runs] = group

    # One group (the statement): no per-row group to select; bincount still adds in row order,
    # as the row path does (np.sum would add pairwise and differ in the last bits).
    single = count == 1

    def sums(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if mask.all():
            return np.bincount(group, weights=weights, minlength=count)
        selected = weights[mask]
        return np.bincount(group[:len(selected)] if single else group[mask], weights=selected, minlength=count)

    def run_counts(flags: np.ndarray) -> np.ndarray:
        return np.array([np.count_nonzero(flags)]) if single else np.bincount(run_group[flags], minlength=count)

    def counts(name: str, mask: np.ndarray) -> list[dict[str, int]]:
        result: list[dict[str, int]] = [{} for _ in range(count)]
        if name not in columns.frame or not mask.any():
            return result
        codes_n, labels_n = columns.codes(name)
        selected = codes_n if mask.all() else codes_n[mask]
        tally = np.bincount(selected if single else group[mask] * len(labels_n) + selected,
                            minlength=count * len(labels_n))
        for index in np.flatnonzero(tally).tolist():
            g, code = divmod(index, len(labels_n))
            if labels_n[code]:
                result[g][labels_n[code]] = int(tally[index])
        return result

    numbers = {
        "energy_kwh": sums(counted, parts), "emissions_kg": sums(counted, emissions),
        "runs": run_counts(has_counted), "metered_kwh": sums(counted_metered, parts),
        "metered_runs": run_counts(has_metered), "estimated_runs": run_counts(has_estimate_counted),
        "paired_runs": run_counts(paired_run),
        "paired_estimate_kwh": sums(estimate_primary & paired_rows, parts),
        "paired_metered_kwh": sums(counted_metered & paired_rows, parts),
        "low_coverage_runs": run_counts(low),
        "replaced_emissions": sums(counted, replaced.astype(float)).round(),
        "intensity_sum": sums(known, np.where(known, used, 0.0)), "intensity_rows": sums(known, np.ones(columns.size)),
    }
    numbers["metered_seconds"] = numbers["covered_seconds"] = np.zeros(count)
    if counted_metered.any():
        duration = np.nan_to_num(columns.numbers("duration"), nan=0.0, posinf=0.0, neginf=0.0)
        coverage = columns.numbers("coverage")
        coverage = np.where(np.isfinite(coverage), coverage, 1.0)
        numbers["metered_seconds"] = sums(counted_metered, duration)
        numbers["covered_seconds"] = sums(counted_metered, duration * coverage)
    tallies = {"methodologies": counts("methodology", counted), "hardware": counts("hardware", counted),
               "backends": counts("backend", counted),
               "paired_methodologies": counts("methodology", estimate_primary & paired_rows),
               "paired_backends": counts("backend", estimate_primary & paired_rows)}
    result = {}
    for index, label in enumerate(labels):
        data: dict[str, Any] = {name: (int(values[index]) if name in _INT_FIELDS else float(values[index]))
                                for name, values in numbers.items()}
        data.update({name: values[index] for name, values in tallies.items()})
        result[label] = Accumulator(Totals(**data).to_json(), Launches(job_max[index]))
    return result


def _launches_by_group(launches: Launches, labels: Sequence[tuple[str, str, str]]) -> list[dict[str, list[list[float]]]]:
    """The job rule's memory split by (project, user, host): a key's texts are ``JOB_KEYS``."""
    where = {label: index for index, label in enumerate(labels)}
    result: list[dict[str, list[list[float]]]] = [{} for _ in labels]
    for key, launch in launches.seen.items():
        project, user, _, host, _, _ = json.loads(key)
        index = where.get((project, user, host), 0 if len(labels) == 1 else -1)
        if index >= 0:
            result[index][key] = launch
    return result


def row_roles(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a result set: its role in its run (bits of EST_PRIMARY, MET_PRIMARY and
    COUNTED; 0 for none), the code of its run unit (equal for the rows of one run), and its
    energy in kWh as a number (NaN where the cell is not one)."""
    columns = _Columns(frame)
    return _roles(columns)[0], columns.runs, columns.energy


def primary_rows(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """True for the rows that make up their run's energy of ``kind`` (metered figures set
    aside for low coverage are not metered)."""
    return (row_roles(frame)[0] & (EST_PRIMARY if kind == "estimate" else MET_PRIMARY)) > 0


def counted_rows(frame: pd.DataFrame) -> np.ndarray:
    """True for the rows each run counts for (its headline energy)."""
    return (row_roles(frame)[0] & COUNTED) > 0


def _labels(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Group codes and their labels, nulls and "" being one group ""."""
    import numpy as np
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    names = ["" if pd.isna(u) else str(u) for u in uniques]
    merged, labels = pd.factorize(np.array(names, dtype=object))
    return merged[codes], [str(label) for label in labels]


def aggregate(frame: pd.DataFrame, by: str | Sequence[str], attributed: bool = False) -> pd.DataFrame:
    """Runs, kWh, kg CO2e, hours and metered coverage per group (``project``, ``user``, ``host``,
    ``backend``, ``kind`` or ``job``, or a tuple of them: one column each); with ``attributed``,
    of the shares where runs have them (``rule`` 9).

    Per project, host or job the counted figures (the groups add up to ``frame_totals``).
    Per backend alone each backend's own figures: backends that measured the same run overlap, so
    those groups do not add up (``lett results`` labels its total accordingly). In a tuple,
    ``backend`` and ``kind`` are those of the counted figures, so the groups still add up
    (``lett exporter``'s counters by project, host, backend and kind); a run counts once in
    each group holding one of its counted figures.
    """
    import numpy as np
    import pandas as pd

    keys = (by,) if isinstance(by, str) else tuple(by)
    unknown = [k for k in keys if k not in GROUP_COLUMNS]
    if unknown or not keys or len(set(keys)) != len(keys):
        raise ConfigurationError(f"cannot group by {by!r}; use one of {', '.join(GROUP_COLUMNS)}, "
                                 "or several of them once each")
    own_figures = keys == ("backend",)
    if attributed:
        frame = attributed_view(frame)
    columns, roles, parts, _, metered, _ = _frame_counting(frame)
    energy = columns.energy
    if own_figures:
        counted = columns.top_level & usable_energy(energy)
        if attributed:  # a figure whose share stands in for it is not the backend's figure here
            counted &= ~columns.equals("kind", SHARED_OUT)
        values, kg = np.where(counted, energy, 0.0), np.where(counted, columns.emissions()[0], 0.0)
    else:
        counted = (roles & COUNTED) > 0
        values, kg = np.where(counted, parts, 0.0), np.where(counted, _part_emissions(columns, parts)[0], 0.0)
    rows = np.flatnonzero(columns.top_level)
    texts = []
    for name in keys:
        if name == "job":
            job = pd.Series(columns.text("job_id")[rows])
            run_ids = pd.Series(columns.text("run_id")[rows]).astype(str)
            texts.append(job.where(job != "", "run " + run_ids.str[:8]))
        else:
            texts.append(pd.Series(columns.text(GROUP_COLUMNS[name])[rows]))
    # Several keys: one text per row that no key's own text can fake (a unit separator).
    key = texts[0] if len(texts) == 1 else texts[0].str.cat(texts[1:], sep="\x1f")
    groups, names = _labels(key.reset_index(drop=True))
    kwh = np.bincount(groups, weights=values[rows], minlength=len(names))
    kg_sum = np.bincount(groups, weights=kg[rows], minlength=len(names))
    duration = np.nan_to_num(columns.numbers("duration"), nan=0.0)
    coverage = columns.numbers("coverage")
    coverage = np.where(np.isfinite(coverage), coverage, 1.0)
    is_metered = metered if not own_figures else columns.equals("kind", "metered")
    metered_rows = (counted & is_metered)[rows]
    metered_s = np.bincount(groups, weights=np.where(metered_rows, duration[rows], 0.0), minlength=len(names))
    covered_s = np.bincount(groups, weights=np.where(metered_rows, (duration * coverage)[rows], 0.0),
                            minlength=len(names))
    # One code per (group, run): a run's hours are its longest measurement, since the backends
    # of one run overlap in time; a run counts in a group when it has a counted row there.
    pairs, pair_values = pd.factorize(groups.astype(np.int64) * columns.run_count + columns.runs[rows])
    pair_group = pair_values // columns.run_count
    longest = np.full(len(pair_values), -np.inf)
    np.maximum.at(longest, pairs, duration[rows])
    has_counted = np.zeros(len(pair_values), dtype=bool)
    np.logical_or.at(has_counted, pairs, counted[rows])
    runs = np.bincount(pair_group, weights=has_counted, minlength=len(names))
    hours = np.bincount(pair_group, weights=np.where(has_counted, longest, 0.0), minlength=len(names)) / 3600
    with np.errstate(invalid="ignore", divide="ignore"):
        group_coverage = np.where(metered_s > 0, covered_s / np.where(metered_s > 0, metered_s, 1.0), np.nan)
    order = sorted(range(len(names)), key=names.__getitem__)
    parts_of = [names[i].split("\x1f") if len(keys) > 1 else [names[i]] for i in order]
    result = pd.DataFrame({**{name: [p[k] for p in parts_of] for k, name in enumerate(keys)},
                           "runs": runs[order].astype(np.int64), "kwh": kwh[order], "kg": kg_sum[order],
                           "hours": hours[order], "coverage": group_coverage[order]})
    if keys == ("job",):
        for name, values in _job_layout(columns, rows, groups, len(names)).items():
            result[name] = values[order]
    return result[result["runs"] > 0].reset_index(drop=True)


def _job_layout(columns: _Columns, rows: np.ndarray, groups: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Per job: how many nodes (hosts) and ranks ran it, and its wall time: on each node its
    first start to its last end, over every row, counted or not (a rank that measured nothing
    still ran), and the longest of the nodes. Each node's span is read on its own clock, so a
    node whose clock differs from the others' does not stretch the job."""
    import numpy as np
    import pandas as pd

    table = pd.DataFrame({"g": groups, "host": columns.text("hostname")[rows],
                          "rank": columns.text("rank")[rows], "run": columns.runs[rows]})
    start = pd.to_datetime(pd.Series(columns.text("start_time")[rows]), utc=True, errors="coerce", format="ISO8601")
    end = pd.to_datetime(pd.Series(columns.text("timestamp")[rows]), utc=True, errors="coerce", format="ISO8601")
    # Naive UTC: a column of NaT alone (no row has a start) would be naive beside an aware one.
    table["start"], table["end"] = start.dt.tz_localize(None).to_numpy(), end.dt.tz_localize(None).to_numpy()
    # A run without a rank (one process) is a rank of its own.
    table["who"] = np.where(table["rank"] == "", "run:" + table["run"].astype(str), "rank:" + table["rank"])
    grouped = table.groupby("g")
    nodes = grouped["host"].nunique().reindex(range(count), fill_value=0).to_numpy()
    ranks = grouped["who"].nunique().reindex(range(count), fill_value=0).to_numpy()
    by_node = table.groupby(["g", "host"])
    span = (by_node["end"].max() - by_node["start"].min()).dt.total_seconds().groupby(level="g").max()
    wall = span.reindex(range(count)).to_numpy(dtype=float, na_value=np.nan)
    return {"nodes": nodes.astype(np.int64), "ranks": ranks.astype(np.int64), "wall_s": wall}


def run_hours(frame: pd.DataFrame, attributed: bool = False) -> float:
    """Hours of the counted runs, each run's longest measurement."""
    import numpy as np

    if attributed:
        frame = attributed_view(frame)
    columns, roles, _, _, _, _ = _frame_counting(frame)
    counted = (roles & COUNTED) > 0
    if not counted.any():
        return 0.0
    duration = np.nan_to_num(columns.numbers("duration"), nan=0.0)
    longest = np.full(columns.run_count, -np.inf)
    rows = np.flatnonzero(columns.top_level)
    np.maximum.at(longest, columns.runs[rows], duration[rows])
    has = columns.per_run(counted) > 0
    return float(longest[has].sum() / 3600)


# ------------------------------------------------------------------------- the attributed view
#: What a share takes of the machine figure it stands in for (rule 9).
_TAKEN_FROM_MACHINE = ("kind", "scope", "coverage", "backend", "methodology")


def attributed_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Rule 9 over a result set: each machine figure with a usable share of the same run unit
    and task is replaced by that share (which takes its kind, scope, coverage, backend and
    methodology), the figure being set to kind ``SHARED_OUT``. Counting the view counts the
    shares where there are any, the machine figures elsewhere. The frame is not changed; one
    without shares is returned as it is."""
    import numpy as np
    import pandas as pd

    if not {"kind", "backend", "run_id", "energy_consumed"} <= set(frame.columns):
        return frame
    is_share = (frame["kind"] == "attributed").to_numpy(dtype=bool, na_value=False)
    if not is_share.any():
        return frame
    run_ids = frame["run_id"].astype(object).where(frame["run_id"].notna(), "")
    involved = np.flatnonzero(run_ids.isin(set(run_ids[is_share]) - {""}).to_numpy(dtype=bool))
    part = frame.iloc[involved]

    def texts(name: str) -> list[str]:
        if name not in part:
            return [""] * len(part)
        return [str(v) for v in part[name].astype(object).where(part[name].notna(), "").tolist()]

    energy = pd.to_numeric(part["energy_consumed"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    machine: dict[tuple[str, str, str], list[int]] = {}
    shares: dict[tuple[str, str, str], int] = {}
    for place, (run, task_name, task, backend, kind) in enumerate(zip(
            texts("run_id"), texts("task_name"), texts("task"), texts("backend"), texts("kind"))):
        key = (run_unit(run, task_name), task, backend)
        if kind == "attributed":
            of = share_of(backend)
            if of and usable_energy(float(energy[place])):
                shares[(key[0], task, of)] = place  # the last stored share of a figure
        elif kind in ("estimate", "metered"):
            machine.setdefault(key, []).append(place)
    pairs = [(places, share) for key, share in shares.items() if (places := machine.get(key))]
    if not pairs:
        return frame
    view = frame.copy(deep=False)
    share_rows = involved[[share for _, share in pairs]]
    figure_rows = involved[[places[-1] for places, _ in pairs]]
    shared_out = involved[[place for places, _ in pairs for place in places]]
    for name in _TAKEN_FROM_MACHINE:
        if name not in frame:
            continue
        numeric = name == "coverage"
        values = (pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan) if numeric
                  else frame[name].astype(object).to_numpy(copy=True))
        values[share_rows] = values[figure_rows]
        if name == "kind":
            values[shared_out] = SHARED_OUT
        view[name] = values
    return view


def unshared_runs(frame: pd.DataFrame) -> int:
    """How many runs the attributed view counts a whole machine figure for (no usable share:
    attribution off, or no share could be measured)."""
    import numpy as np

    view = attributed_view(frame)
    columns = _Columns(view)
    counted = (_roles(columns)[0] & COUNTED) > 0
    if "kind" in frame:
        counted &= ~(frame["kind"] == "attributed").to_numpy(dtype=bool, na_value=False)
    return int(np.count_nonzero(columns.per_run(counted)))
