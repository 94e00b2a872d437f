"""What the dashboard shows, computed on the server: one page of runs, a project's series and
totals, the statement of a filter. The browser never receives the whole result set.

The store is read once per change of the store (its files' size and mtime) with only the
columns the dashboard uses (``load_results(columns=...)``). Every text column used for filtering
is turned into integer codes once, and every sort order is computed once over the whole set;
a filter change is then a boolean mask and one pass over a cached order, with no sort.
Summaries and statements go through the read-side's one counting module (``aggregate``,
``counted_rows``, ``primary_rows``, ``frame_totals``) and are cached per filter.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import frozen

from let_core.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Filter name in the URL -> store column.
FILTER_COLUMNS: dict[str, str] = {"project": "project_name", "user": "user", "host": "hostname",
                                  "backend": "backend", "status": "run_status", "kind": "kind"}
TABLE_COLUMNS: tuple[str, ...] = ("start_time", "project_name", "user", "hostname", "backend", "kind",
                                  "task", "energy_consumed", "emissions", "duration", "run_status", "run_id",
                                  "parent_run_id", "error")
#: Sortable columns of the runs table.
SORT_COLUMNS: tuple[str, ...] = ("start_time", "project_name", "user", "hostname", "backend", "kind",
                                 "energy_consumed", "emissions", "duration", "run_status")
TOTAL_GROUPS: tuple[str, ...] = ("host", "backend", "job")
MAX_PER_PAGE = 500
MAX_SCATTER_POINTS = 5000
MAX_CHOICES = 1000
#: Rows per totals table (host, backend, job); the rest is summed into one line.
MAX_GROUPS = 50
#: Rows of the overview's top projects and hosts, and of its latest failed runs.
TOP = 10


def ui_columns(calibrated: bool = False) -> tuple[str, ...]:
    """The columns the dashboard reads; with ``calibrated`` also what a calibration needs (read
    only when one exists: the models' texts cost memory at a million runs)."""
    from let_core.results import AGGREGATE_COLUMNS

    extra: tuple[str, ...] = ()
    if calibrated:
        from let_core.results.calibration import CALIBRATION_COLUMNS

        extra = CALIBRATION_COLUMNS
    return tuple(dict.fromkeys(AGGREGATE_COLUMNS + TABLE_COLUMNS + ("run_status", "user") + extra))


@frozen
class Filters:
    """A dashboard filter, checked: unknown values are simply not matched, bad ones are errors."""

    project: str | None = None
    user: str | None = None
    host: str | None = None
    backend: str | None = None
    status: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str | None]) -> Filters:
        values: dict[str, Any] = {}
        for name in FILTER_COLUMNS:
            value = query.get(name)
            if value is None or value == "":
                continue
            if len(value) > 500 or any(ord(ch) < 32 for ch in value):
                raise ConfigurationError(f"filter {name}={value[:40]!r}... is not a plausible {name} name")
            values[name] = value
        for name in ("since", "until"):
            value = query.get(name)
            if value:
                values[name] = parse_time(name, value)
                if name == "until" and len(value.strip()) == 10:  # a date: until the end of that day
                    values[name] += timedelta(days=1, microseconds=-1)
        if values.get("since") and values.get("until") and values["since"] > values["until"]:
            raise ConfigurationError(f"since ({query.get('since')}) is after until ({query.get('until')})")
        return cls(**values)

    def key(self) -> tuple[Any, ...]:
        return (self.project, self.user, self.host, self.backend, self.status, self.kind,
                self.since, self.until)

    def describe(self) -> str:
        parts = [f"{name}={getattr(self, name)}" for name in FILTER_COLUMNS if getattr(self, name)]
        parts += [f"{name}={getattr(self, name).isoformat()}" for name in ("since", "until") if getattr(self, name)]
        return ", ".join(parts) or "no filter"

    def words(self) -> str:
        """The filter as a person says it: "all stored runs", "project nlp, host gpu-1, from 1 Mar 2026"."""
        names = {"project": "project", "user": "user", "host": "host", "backend": "backend", "status": "status",
                 "kind": "kind"}
        parts = [f"{names[name]} {getattr(self, name)}" for name in FILTER_COLUMNS if getattr(self, name)]
        if self.since:
            parts.append(f"from {self.since:%Y-%m-%d %H:%M}".removesuffix(" 00:00"))
        if self.until:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M}".removesuffix(" 23:59"))
        return ", ".join(parts) if parts else "all stored runs"


def parse_time(name: str, text: str) -> datetime:
    """An ISO date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"{name}={text[:60]!r} is not an ISO date such as 2026-03-01 or "
                                 "2026-03-01T12:00:00+00:00") from None
    if not 1970 <= value.year <= 2200:
        raise ConfigurationError(f"{name}={text[:60]!r} is outside 1970-2200")
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    if isinstance(value, (str, int, bool)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


class Prepared:
    """A loaded result set with its filter codes and (lazily) its sort orders."""

    def __init__(self, frame: pd.DataFrame) -> None:
        import numpy as np
        import pandas as pd

        self.frame = frame
        self.size = len(frame)
        self.codes: dict[str, np.ndarray] = {}
        self.labels: dict[str, list[str]] = {}
        for name, column in FILTER_COLUMNS.items():
            values = frame[column].astype(object).fillna("") if column in frame else pd.Series([""] * self.size)
            codes, uniques = pd.factorize(values, sort=True)
            self.codes[name] = codes
            self.labels[name] = [str(u) for u in uniques]
        start = frame["start_time"] if "start_time" in frame else pd.Series([None] * self.size)
        times = pd.to_datetime(start, utc=True, errors="coerce", format="ISO8601")
        self.times = times.to_numpy(dtype="datetime64[ns]").astype(np.int64)  # NaT is the smallest int
        self.numbers = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                        if c in frame else np.full(self.size, np.nan)
                        for c in ("energy_consumed", "emissions", "duration")}
        # A task's rows belong under their run (LET's tasks are runs of their own whose
        # parent_run_id names the run): one family per run, its task rows after its own.
        own = _text_column(frame, "run_id")
        parent = _text_column(frame, "parent_run_id")
        self.is_task = (parent != "").to_numpy()
        self.families, _ = pd.factorize(parent.where(self.is_task, own), sort=False)
        self.family_count = int(self.families.max()) + 1 if self.size else 0
        self.failed = (_text_column(frame, "run_status") == "failed").to_numpy()
        self._orders: dict[tuple[str, bool], np.ndarray] = {}
        self._lock = threading.Lock()

    def order(self, column: str, descending: bool = False) -> np.ndarray:
        """Row positions sorted by ``column`` run by run, computed once per column and direction:
        a run's place is its own rows' value (missing values lowest), its task rows follow it
        in the order they started."""
        import numpy as np

        with self._lock:
            cached = self._orders.get((column, descending))
            if cached is None:
                if column == "start_time":
                    key = self.times
                elif column in self.numbers:
                    key = np.nan_to_num(self.numbers[column], nan=-np.inf)
                else:
                    name = next(n for n, c in FILTER_COLUMNS.items() if c == column)
                    key = self.codes[name]
                # Ranks, not values: comparable across dtypes and safe to negate.
                _, rank = np.unique(key, return_inverse=True)
                rank = rank.astype(np.int64)
                family = np.full(self.family_count, -1, dtype=np.int64)
                np.maximum.at(family, self.families, rank)  # a family of tasks only: theirs
                heads = ~self.is_task
                if heads.any():
                    own = np.full(self.family_count, -1, dtype=np.int64)
                    np.maximum.at(own, self.families[heads], rank[heads])
                    family = np.where(own >= 0, own, family)
                family_rank = family[self.families]
                primary = -family_rank if descending else family_rank
                cached = np.lexsort((self.times, self.is_task, self.families, primary))
                self._orders[(column, descending)] = cached
            return cached

    def mask(self, filters: Filters) -> np.ndarray | None:
        """Rows matching ``filters`` (None: all rows)."""
        import numpy as np

        mask: np.ndarray | None = None

        def narrow(condition: np.ndarray) -> None:
            nonlocal mask
            mask = condition if mask is None else mask & condition

        for name in FILTER_COLUMNS:
            value = getattr(filters, name)
            if value is None:
                continue
            labels = self.labels[name]
            position = _find(labels, value)
            narrow(self.codes[name] == position if position >= 0 else np.zeros(self.size, dtype=bool))
        if filters.since is not None:
            narrow(self.times >= _ns(filters.since))
        if filters.until is not None:
            narrow((self.times <= _ns(filters.until)) & (self.times != np.iinfo(np.int64).min))
        return mask


def _text_column(frame: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd

    if column not in frame:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    return frame[column].astype(object).where(frame[column].notna(), "").astype(str)


def _find(sorted_labels: list[str], value: str) -> int:
    import bisect

    i = bisect.bisect_left(sorted_labels, value)
    return i if i < len(sorted_labels) and sorted_labels[i] == value else -1


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000) * 1000


class StoreUnreadable(Exception):
    """The store could not be read; the dashboard shows this message and keeps serving."""


class Dashboard:
    """The dashboard's read side over one store (and its Parquet dataset)."""

    def __init__(self, output_dir: str | os.PathLike[str] | None = None,
                 dataset: str | None = None,
                 loader: Callable[..., pd.DataFrame] | None = None) -> None:
        from let_core.store import Store

        self.store = Store(output_dir)
        self.dataset = dataset
        self._output_dir = output_dir
        self._loader = loader
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._prepared: Prepared | None = None
        self._error: str = ""
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._pending: dict[tuple[Any, ...], threading.Lock] = {}

    @property
    def location(self) -> str:
        return str(self.store.path)

    def _current_signature(self) -> tuple[Any, ...]:
        """What changes when runs are added: the CSV store's size and mtime, and the mtime of
        every folder of a local Parquet dataset (a new run's file changes its partition's)."""
        parts: list[Any] = []
        try:
            stat = self.store.path.stat()
            parts.append((stat.st_mtime_ns, stat.st_size))
        except OSError as exc:
            parts.append(type(exc).__name__)
        from let_core.config import dataset_env

        dataset = self.dataset or dataset_env() or str(self.store.directory / "runs")
        if "://" not in dataset:
            for folder, _, _ in os.walk(dataset):
                try:
                    parts.append((folder, os.stat(folder).st_mtime_ns))
                except OSError:
                    continue
        parts.append(self._calibration_signature())  # a new calibration changes the figures
        return tuple(parts)

    def prepared(self) -> Prepared:
        """The loaded result set, reloaded when the store changed; StoreUnreadable if it cannot be read."""
        signature = self._current_signature()
        with self._lock:
            if signature != self._signature:
                self._cache.clear()
                self._prepared, self._error = None, ""
                try:
                    self._prepared = Prepared(self._load())
                except Exception as exc:  # any reader failure is shown on the page, not a crash
                    self._error = f"cannot read the LET store {self.location}: {type(exc).__name__}: {exc}"
                self._signature = signature
            if self._prepared is None:
                raise StoreUnreadable(self._error)
            return self._prepared

    def _load(self) -> pd.DataFrame:
        if self._loader is not None:
            return self._loader()
        from let_core.results import load_results
        from let_core.results.calibration import has_calibrations

        return load_results(self.store.directory, dataset=self.dataset, columns=ui_columns(has_calibrations()))

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        # One computation per key at a time: the page asking for what the warm-up thread is
        # computing waits for that result instead of computing it a second time beside it.
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            pending = self._pending.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            try:
                value = compute()
            except BaseException:
                with self._lock:
                    self._pending.pop(key, None)
                raise
            with self._lock:
                if len(self._cache) > 256:  # bounded: a dashboard is browsed, not scanned
                    self._cache.clear()
                self._cache[key] = value
                self._pending.pop(key, None)
        return value

    # ------------------------------------------------------------------------------ pages
    def first_run_hint(self) -> str:
        """What an empty store's pages say: how to record a first run into this store."""
        from let_core.config import let_home

        prefix = "" if self.store.directory.resolve() == let_home().resolve() else f"LET_HOME={self.store.directory} "
        return (f"No runs are stored in {self.location} yet. Record a first run with "
                f"`{prefix}lett demo --keep` (a three-second CPU workload, stored here), or wrap your code in "
                "`with EnergyTracker(project_name=\"my-paper\"):`. The pages show it as soon as it is stored.")

    def choices(self) -> dict[str, Any]:
        data = self.prepared()
        return {"store": self.location, "dataset": self.dataset, "rows": data.size, "hint": self.first_run_hint() if not data.size else None,
                "choices": {name: [v for v in data.labels[name] if v][:MAX_CHOICES] for name in FILTER_COLUMNS}}

    def runs(self, filters: Filters, sort: str = "start_time", descending: bool = True,
             page: int = 1, per_page: int = 50) -> dict[str, Any]:
        import numpy as np

        from let_core.statement import format_emissions, format_energy
        from let_core.timeaxis import format_duration

        if sort not in SORT_COLUMNS:
            raise ConfigurationError(f"cannot sort by {sort!r}; use one of {', '.join(SORT_COLUMNS)}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ConfigurationError(f"per_page must be 1..{MAX_PER_PAGE}, got {per_page}")
        if page < 1:
            raise ConfigurationError(f"page must be 1 or more, got {page}")
        data = self.prepared()
        order = data.order(sort, descending)
        mask = data.mask(filters)
        selected = order if mask is None else order[mask[order]]
        total = len(selected)
        pages = max(1, -(-total // per_page))
        start = (page - 1) * per_page
        positions = np.asarray(selected[start:start + per_page])
        columns = [c for c in TABLE_COLUMNS if c in data.frame]
        chunk = data.frame.iloc[positions][columns]
        rows = []
        for position, values in zip(positions, chunk.itertuples(index=False)):
            row = {k: _jsonable(v) for k, v in zip(columns, values)}
            energy, emissions, duration = (data.numbers[c][position] for c in ("energy_consumed", "emissions", "duration"))
            row["text"] = {"energy_consumed": format_energy(energy) if math.isfinite(energy) else "–",
                           "emissions": format_emissions(emissions * 1000) if math.isfinite(emissions) else "–",
                           "duration": format_duration(duration) if math.isfinite(duration) else "–"}
            row["is_task"], row["failed"] = bool(data.is_task[position]), bool(data.failed[position])
            rows.append(row)
        families = data.families if mask is None else data.families[mask]
        heads = ~data.is_task if mask is None else ~data.is_task[mask]
        # Distinct runs by counting (linear), not np.unique (a hash of a million ids per request).
        run_count = int(np.count_nonzero(np.bincount(families, minlength=data.family_count))) if total else 0
        tasks = int((~heads).sum())
        failing = families[data.failed if mask is None else data.failed[mask]]
        failed = int(np.count_nonzero(np.bincount(failing, minlength=data.family_count))) if len(failing) else 0
        return {"total": total, "runs": run_count, "tasks": tasks, "failed_runs": failed, "page": page, "pages": pages,
                "per_page": per_page, "sort": sort, "order": "desc" if descending else "asc",
                "filter": filters.describe(), "count_text": _count_text(total, run_count, tasks, failed, filters,
                                                                         start, len(rows)),
                "rows": rows, "hint": self.first_run_hint() if not data.size else None}

    def _subset(self, filters: Filters) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        data = self.prepared()
        mask = data.mask(filters)
        if mask is None or mask.all():
            return data.frame
        subset = data.frame.iloc[np.flatnonzero(mask)]
        subset.index = pd.RangeIndex(len(subset))  # iloc made a new frame: relabel it, no copy
        return subset

    def summary(self, filters: Filters) -> dict[str, Any]:
        data = self.prepared()
        return self._cached(("summary", id(data), filters.key()), lambda: self._summary(filters))

    def _summary(self, filters: Filters) -> dict[str, Any]:
        import numpy as np

        from let_core.keys import row_codes
        from let_core.results import aggregate
        from let_core.results.counting import primary_rows
        from let_core.statement import format_energy
        from let_core.units import ENERGY_UNITS

        frame = self._subset(filters)
        result: dict[str, Any] = {"filter": filters.describe(), "words": filters.words(), "rows": len(frame),
                                  "hint": self.first_run_hint() if not self.prepared().size else None}
        if frame.empty:
            result.update(series=_series(frame), scatter={"points": [], "runs": 0, "ratio": None, "text": [],
                                                          "failed": [], "axis": None},
                          totals={g: [] for g in TOTAL_GROUPS})
            return result
        result["series"] = _series(frame)
        energy = _numbers(frame, "energy_consumed")
        runs, run_count = row_codes(frame["run_id"])
        per_kind = {}
        for kind in ("estimate", "metered"):
            mask = primary_rows(frame, kind) & np.isfinite(energy)
            per_kind[kind] = (np.bincount(runs[mask], weights=energy[mask], minlength=run_count),
                              np.bincount(runs[mask], minlength=run_count) > 0)
        failed_run = np.bincount(runs, weights=(_text_column(frame, "run_status") == "failed").to_numpy(),
                                 minlength=run_count) > 0
        both = per_kind["estimate"][1] & per_kind["metered"][1]
        est, met, bad = per_kind["estimate"][0][both], per_kind["metered"][0][both], failed_run[both]
        take = np.argsort(-est, kind="stable")[:MAX_SCATTER_POINTS]  # the largest runs, if many
        largest = float(max(est.max(initial=0.0), met.max(initial=0.0)))
        result["scatter"] = {
            "runs": int(both.sum()),
            "shown": int(len(take)),
            "points": [[float(e), float(m)] for e, m in zip(est[take], met[take])],
            "failed": [bool(b) for b in bad[take]],
            "text": [f"estimate {format_energy(float(e))}, metered {format_energy(float(m))}"
                     + (" (failed run)" if b else "") for e, m, b in zip(est[take], met[take], bad[take])],
            "axis": _axis_json(0.0, largest, ENERGY_UNITS) if both.any() else None,
            "ratio": float(met.sum() / est.sum()) if both.any() and est.sum() > 0 else None,
        }
        result["totals"] = {group: _largest_groups(aggregate(frame, group), group) for group in TOTAL_GROUPS}
        return result

    def overview(self, filters: Filters) -> dict[str, Any]:
        data = self.prepared()
        return self._cached(("overview", id(data), filters.key()),
                            lambda: self._overview(filters))

    def _overview(self, filters: Filters) -> dict[str, Any]:
        """The landing page: totals, measured/estimated/calibrated shares, the trend, top
        projects and hosts, failed runs. Every figure from the read side's counting."""
        import numpy as np

        from let_core.results import aggregate, frame_totals
        from let_core.results.counting import counted_rows
        from let_core.statement import format_emissions, format_energy

        frame = self._subset(filters)
        totals = frame_totals(frame)
        result: dict[str, Any] = {"filter": filters.describe(), "words": filters.words(), "rows": len(frame),
                                  "runs": totals.runs, "store": self.location,
                                  "hint": self.first_run_hint() if not self.prepared().size else None,
                                  "energy_text": format_energy(totals.energy_kwh),
                                  "emissions_text": format_emissions(totals.emissions_kg * 1000),
                                  "intensity": totals.intensity}

        def share(kwh: float) -> dict[str, Any]:
            fraction = kwh / totals.energy_kwh if totals.energy_kwh > 0 else None
            return {"kwh": kwh, "kwh_text": format_energy(kwh), "share": fraction,
                    "share_text": _percent(fraction)}

        shares = {"metered": {**share(totals.metered_kwh), "runs": totals.metered_runs},
                  "estimated": {**share(totals.estimate_kwh), "runs": totals.estimated_runs}}
        corrected = self._corrected(frame)
        if corrected is not None:
            estimate, calibrated, low, high, runs = corrected
            shares["calibrated"] = {**share(estimate), "runs": runs,
                                    "calibrated_text": format_energy(calibrated),
                                    "interval_text": f"{format_energy(low)} to {format_energy(high)}"}
        else:
            shares["calibrated"] = {**share(0.0), "runs": 0, "calibrated_text": None, "interval_text": None}
        result["shares"] = shares
        counted = counted_rows(frame) if len(frame) else np.zeros(0, dtype=bool)
        result["trend"] = _series(frame, trend=True, counted=counted)
        result["projects"] = _top(aggregate(frame, "project"), "project", totals.energy_kwh) if len(frame) else []
        result["hosts"] = _top(aggregate(frame, "host"), "host", totals.energy_kwh) if len(frame) else []
        failed = (_text_column(frame, "run_status") == "failed").to_numpy()
        failed_counted = frame[failed & counted]
        runs = int(failed_counted["run_id"].nunique()) if len(failed_counted) else 0
        failed_totals = frame_totals(frame[failed]) if failed.any() else None
        latest = failed_counted.sort_values("start_time", ascending=False, kind="stable").head(TOP)
        result["failed"] = {
            "runs": failed_totals.runs if failed_totals else runs,
            "energy_text": format_energy(failed_totals.energy_kwh if failed_totals else 0.0),
            "share_text": _percent(failed_totals.energy_kwh / totals.energy_kwh
                                   if failed_totals and totals.energy_kwh > 0 else None),
            "latest": [{"start_time": _jsonable(row.get("start_time")), "project_name": _jsonable(row.get("project_name")),
                        "hostname": _jsonable(row.get("hostname")), "run_id": _jsonable(row.get("run_id")),
                        "error": _jsonable(row.get("error")) or "",
                        "energy_text": format_energy(float(row.get("energy_consumed") or 0.0))}
                       for row in latest.to_dict(orient="records")],
        }
        return result

    def _calibration_signature(self) -> tuple[Any, ...]:
        from let_core.results.calibration import calibration_dir

        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in calibration_dir().glob("*.json")))
        except OSError:
            return ()

    def _corrected(self, frame: pd.DataFrame) -> tuple[float, float, float, float, int] | None:
        """The estimate, corrected figure and interval of the runs a calibration corrects
        (``calibration.corrected_rows``, as the statement states them); None without calibrations."""
        from let_core.results.calibration import calibrate_frame, corrected_rows, load_calibrations

        calibrations = load_calibrations(warn=False)
        if not calibrations or frame.empty:
            return None
        part = corrected_rows(calibrate_frame(frame, calibrations))
        if part.empty:
            return None
        return (float(_numbers(part, "energy_consumed").sum()), float(part["calibrated_kwh"].sum()),
                float(part["calibrated_low_kwh"].sum()), float(part["calibrated_high_kwh"].sum()),
                int(part["run_id"].nunique()))

    def statement(self, filters: Filters) -> dict[str, Any]:
        data = self.prepared()
        return self._cached(("statement", id(data), filters.key()), lambda: self._statement(filters))

    def _statement(self, filters: Filters) -> dict[str, Any]:
        from let_core.results import frame_totals
        from let_core.statement import cited_keys, statement_bibtex, statement_from_totals

        totals = frame_totals(self._subset(filters))
        if totals.empty:
            raise LookupError(self.nothing_matches(filters) + " There is nothing to state.")
        text = statement_from_totals(totals)
        return {"filter": filters.describe(), "words": filters.words(), "statement": text, "keys": cited_keys(text),
                "bibtex": statement_bibtex(totals, text)}

    def nothing_matches(self, filters: Filters) -> str:
        """No stored run matches: said with the names that exist for each value that matches none."""
        from let_core.errors import close_names

        data = self.prepared()
        if not data.size:
            return self.first_run_hint()
        hints = []
        for name in FILTER_COLUMNS:
            value = getattr(filters, name)
            if value is not None and _find(data.labels[name], value) < 0:
                hints.append(f"No stored run has {name} {value!r}; {close_names(value, [v for v in data.labels[name] if v])}")
        from let_core.results.loading import where

        searched = where(self._output_dir, self.dataset)  # the dataset too: a lab's runs are there
        if hints:
            return f"Nothing in {searched} matches {filters.words()}. " + " ".join(
                hint if hint.endswith(("?", "...")) else hint + "." for hint in hints)
        return f"No stored run in {searched} matches {filters.words()} (each filter matches runs, but not together)."


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if column not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _percent(fraction: float | None) -> str:
    if fraction is None or not math.isfinite(fraction):
        return "–"
    if 0 < fraction < 0.001:
        return "<0.1%"
    if 0.999 < fraction < 1:
        return ">99.9%"
    return f"{fraction * 100:.1f}%" if fraction < 0.1 else f"{fraction * 100:.0f}%"


def _axis_json(low: float, high: float, units: Any) -> dict[str, Any]:
    from let_core.units import axis

    result = axis(low, high, units)
    return {"ticks": list(result.ticks), "labels": [f"{label} {result.unit}" for label in result.labels],
            "unit": result.unit, "factor": result.factor, "low": result.ticks[0], "high": result.ticks[-1]}


def _count_text(rows: int, runs: int, tasks: int, failed: int, filters: Filters, start: int, shown: int) -> str:
    """The runs table's caption, in words: how many runs, why there are more rows, what is shown."""
    if not rows:
        return f"No runs match {filters.words()}." if filters.key() != Filters().key() else "No runs stored yet."
    what = f"{runs:,} run{'s' if runs != 1 else ''}"
    if failed:
        what += f", {failed:,} of them failed"
    what += f" ({filters.words()})."
    extra = rows - runs - tasks
    parts = []
    if extra > 0:
        parts.append("a row per backend that measured a run")
    if tasks:
        parts.append(f"{tasks:,} task row{'s' if tasks != 1 else ''} under their run")
    detail = f" {rows:,} rows: " + "; ".join(parts) + "." if parts else ""
    return f"{what}{detail} Showing rows {start + 1:,}–{start + shown:,}."


def _series(frame: pd.DataFrame, trend: bool = False, counted: np.ndarray | None = None) -> dict[str, Any]:
    """Counted energy and emissions per time bucket that fits the data's span (``timeaxis``),
    the part of failed runs, each value's text, and the axes to draw them on."""
    import numpy as np
    import pandas as pd

    from let_core.results import counted_rows
    from let_core.statement import format_emissions, format_energy
    from let_core.timeaxis import bucket_for, time_axis
    from let_core.units import ENERGY_UNITS, MASS_UNITS

    empty: dict[str, Any] = {"t": [], "t_text": [], "kwh": [], "kg": [], "failed_kwh": [], "failed_runs": [], "kwh_text": [], "kg_text": [],
             "bucket": None, "title": "", "axes": None}
    if frame.empty:
        return empty
    energy = _numbers(frame, "energy_consumed")
    emissions = _numbers(frame, "emissions")
    counted = (counted_rows(frame) if counted is None else counted) & np.isfinite(energy)
    times = pd.to_datetime(frame["start_time"], utc=True, errors="coerce", format="ISO8601")
    seconds = times.to_numpy(dtype="datetime64[ns]").astype(np.int64) // 10**9
    valid = counted & ~pd.isna(times).to_numpy()
    if not valid.any():
        return empty
    first, last = int(seconds[valid].min()), int(seconds[valid].max())
    bucket = bucket_for(last - first)
    # Hours first (vectorised), then each distinct hour to its bucket by the one rule.
    hours, hour_codes = np.unique(seconds[valid] // 3600, return_inverse=True)
    starts = np.array([bucket.start(int(h) * 3600) for h in hours], dtype=np.int64)
    t, bucket_codes = np.unique(starts[hour_codes], return_inverse=True)
    failed = (_text_column(frame, "run_status") == "failed").to_numpy()[valid]
    kwh = np.bincount(bucket_codes, weights=energy[valid], minlength=len(t))
    kg = np.bincount(bucket_codes, weights=np.nan_to_num(emissions[valid]), minlength=len(t))
    failed_kwh = np.bincount(bucket_codes, weights=np.where(failed, energy[valid], 0.0), minlength=len(t))
    run_ids = _text_column(frame, "run_id").to_numpy()[valid]
    failed_runs = [len(set(run_ids[failed & (bucket_codes == i)])) for i in np.flatnonzero(failed_kwh > 0)]
    failed_count = np.zeros(len(t), dtype=np.int64)
    failed_count[np.flatnonzero(failed_kwh > 0)] = failed_runs
    # Each bar stands over its period (x is the period's middle); the axis spans the periods
    # the data fall in, plus a margin.
    ends = np.array([bucket.end(int(v)) for v in t], dtype=np.int64)
    x = time_axis(float(t[0]), float(ends[-1]))
    texts_kwh = [format_energy(float(v)) for v in kwh]
    texts_kg = [format_emissions(float(v) * 1000) for v in kg]
    for i in np.flatnonzero(failed_count):
        texts_kwh[i] += f" (failed runs: {format_energy(float(failed_kwh[i]))})"
    name = "Trend" if trend else "Energy and emissions"
    return {"t": ((t + ends) / 2).tolist(), "start": t.tolist(), "t_text": [bucket.describe(float(v)) for v in t],
            "kwh": kwh.tolist(), "kg": kg.tolist(),
            "failed_kwh": failed_kwh.tolist(),
            "failed_runs": failed_count.tolist(), "kwh_text": texts_kwh, "kg_text": texts_kg,
            "bucket": bucket.name, "title": f"{name} {bucket.label()}",
            "axes": {"x": {"low": x.low, "high": x.high, "ticks": list(x.ticks), "labels": list(x.labels),
                           "title": x.title, "first": int(first), "last": int(last)},
                     "kwh": _axis_json(0.0, float(kwh.max()), ENERGY_UNITS),
                     "kg": _axis_json(0.0, float(kg.max()) * 1000, MASS_UNITS)}}


def _top(groups: pd.DataFrame, by: str, total_kwh: float, limit: int = TOP) -> list[dict[str, Any]]:
    """The ``limit`` groups that used most energy, largest first, each with its text and share."""
    from let_core.statement import format_emissions, format_energy
    from let_core.timeaxis import format_duration

    rows = groups.sort_values("kwh", ascending=False, kind="stable").head(limit).to_dict(orient="records")
    return [{"name": str(row[by]) or "(none)", "runs": int(row["runs"]), "kwh": float(row["kwh"]),
             "kwh_text": format_energy(float(row["kwh"])), "kg_text": format_emissions(float(row["kg"]) * 1000),
             "hours_text": format_duration(float(row["hours"]) * 3600),
             "share_text": _percent(float(row["kwh"]) / total_kwh if total_kwh > 0 else None)} for row in rows]


def _largest_groups(groups: pd.DataFrame, by: str, limit: int = MAX_GROUPS) -> list[dict[str, Any]]:
    """The ``limit`` groups that used most energy, in name order, and one line for the rest
    (a million runs outside any job are a million "jobs": they never all go to the browser);
    each with its figures' text."""
    from let_core.statement import format_emissions, format_energy
    from let_core.timeaxis import format_duration

    if len(groups) > limit:
        largest = groups.nlargest(limit, "kwh", keep="first").sort_values(by, kind="stable")
        rest = groups.drop(largest.index)
        rows = largest.to_dict(orient="records")
        rows.append({by: f"({len(rest):,} more)", "runs": int(rest["runs"].sum()), "kwh": float(rest["kwh"].sum()),
                     "kg": float(rest["kg"].sum()), "hours": float(rest["hours"].sum()), "rest": True})
    else:
        rows = groups.to_dict(orient="records")
    for row in rows:
        row["text"] = {"kwh": format_energy(float(row["kwh"])), "kg": format_emissions(float(row["kg"]) * 1000),
                       "hours": format_duration(float(row["hours"]) * 3600)}
    return [{k: (_jsonable(v) if k != "text" else v) for k, v in row.items()} for row in rows]


@functools.lru_cache(maxsize=1)
def static_dir() -> Path:
    return Path(__file__).with_name("static")
