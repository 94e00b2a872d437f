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
                                  "task", "energy_consumed", "emissions", "duration", "run_status", "run_id")
#: Sortable columns of the runs table.
SORT_COLUMNS: tuple[str, ...] = ("start_time", "project_name", "user", "hostname", "backend", "kind",
                                 "energy_consumed", "emissions", "duration", "run_status")
TOTAL_GROUPS: tuple[str, ...] = ("host", "backend", "job")
MAX_PER_PAGE = 500
MAX_SCATTER_POINTS = 5000
MAX_CHOICES = 1000
#: Rows per totals table (host, backend, job); the rest is summed into one line.
MAX_GROUPS = 50


def ui_columns() -> tuple[str, ...]:
    from let_core.results import AGGREGATE_COLUMNS

    return tuple(dict.fromkeys(AGGREGATE_COLUMNS + TABLE_COLUMNS + ("run_status", "user")))


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
        self._orders: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def order(self, column: str) -> np.ndarray:
        """Row positions sorted ascending by ``column``, computed once (missing values first)."""
        import numpy as np

        with self._lock:
            cached = self._orders.get(column)
            if cached is None:
                if column == "start_time":
                    key = self.times
                elif column in self.numbers:
                    key = np.nan_to_num(self.numbers[column], nan=-np.inf)
                else:
                    name = next(n for n, c in FILTER_COLUMNS.items() if c == column)
                    key = self.codes[name]
                cached = self._orders[column] = np.argsort(key, kind="stable")
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
        self._loader = loader
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._prepared: Prepared | None = None
        self._error: str = ""
        self._cache: dict[tuple[Any, ...], Any] = {}

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

        return load_results(self.store.directory, dataset=self.dataset, columns=ui_columns())

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = compute()
        with self._lock:
            if len(self._cache) > 256:  # bounded: a dashboard is browsed, not scanned
                self._cache.clear()
            self._cache[key] = value
        return value

    # ------------------------------------------------------------------------------ pages
    def choices(self) -> dict[str, Any]:
        data = self.prepared()
        return {"store": self.location, "rows": data.size,
                "choices": {name: [v for v in data.labels[name] if v][:MAX_CHOICES] for name in FILTER_COLUMNS}}

    def runs(self, filters: Filters, sort: str = "start_time", descending: bool = True,
             page: int = 1, per_page: int = 50) -> dict[str, Any]:
        import numpy as np

        if sort not in SORT_COLUMNS:
            raise ConfigurationError(f"cannot sort by {sort!r}; use one of {', '.join(SORT_COLUMNS)}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ConfigurationError(f"per_page must be 1..{MAX_PER_PAGE}, got {per_page}")
        if page < 1:
            raise ConfigurationError(f"page must be 1 or more, got {page}")
        data = self.prepared()
        order = data.order(sort)
        mask = data.mask(filters)
        selected = order if mask is None else order[mask[order]]
        total = len(selected)
        pages = max(1, -(-total // per_page))
        start = (page - 1) * per_page
        if descending:
            positions = selected[::-1][start:start + per_page]
        else:
            positions = selected[start:start + per_page]
        columns = [c for c in TABLE_COLUMNS if c in data.frame]
        chunk = data.frame.iloc[np.asarray(positions)][columns]
        rows = [{k: _jsonable(v) for k, v in zip(columns, values)} for values in chunk.itertuples(index=False)]
        return {"total": total, "page": page, "pages": pages, "per_page": per_page, "sort": sort,
                "order": "desc" if descending else "asc", "filter": filters.describe(), "rows": rows}

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
        import pandas as pd

        from let_core.keys import row_codes
        from let_core.results import aggregate, counted_rows
        from let_core.results.counting import primary_rows

        frame = self._subset(filters)
        result: dict[str, Any] = {"filter": filters.describe(), "rows": len(frame)}
        if frame.empty:
            result.update(series={"t": [], "kwh": [], "kg": []}, scatter={"points": [], "runs": 0, "ratio": None},
                          totals={g: [] for g in TOTAL_GROUPS})
            return result
        energy = pd.to_numeric(frame["energy_consumed"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        emissions = pd.to_numeric(frame["emissions"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        counted = counted_rows(frame) & np.isfinite(energy)
        times = pd.to_datetime(frame["start_time"], utc=True, errors="coerce", format="ISO8601")
        day = (times.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")).astype(np.int64)
        valid = counted & ~pd.isna(times).to_numpy()
        days, codes = np.unique(day[valid], return_inverse=True)
        result["series"] = {
            "t": (days * 86400).tolist(),  # UTC day starts, epoch seconds (uPlot's x)
            "kwh": np.bincount(codes, weights=energy[valid], minlength=len(days)).tolist(),
            "kg": np.bincount(codes, weights=np.nan_to_num(emissions[valid]), minlength=len(days)).tolist(),
        }
        runs, run_count = row_codes(frame["run_id"])
        per_kind = {}
        for kind in ("estimate", "metered"):
            mask = primary_rows(frame, kind) & np.isfinite(energy)
            per_kind[kind] = (np.bincount(runs[mask], weights=energy[mask], minlength=run_count),
                              np.bincount(runs[mask], minlength=run_count) > 0)
        both = per_kind["estimate"][1] & per_kind["metered"][1]
        est, met = per_kind["estimate"][0][both], per_kind["metered"][0][both]
        take = np.argsort(-est, kind="stable")[:MAX_SCATTER_POINTS]  # the largest runs, if many
        result["scatter"] = {
            "runs": int(both.sum()),
            "shown": int(len(take)),
            "points": [[float(e), float(m)] for e, m in zip(est[take], met[take])],
            "ratio": float(met.sum() / est.sum()) if both.any() and est.sum() > 0 else None,
        }
        result["totals"] = {group: _largest_groups(aggregate(frame, group), group) for group in TOTAL_GROUPS}
        return result

    def statement(self, filters: Filters) -> dict[str, Any]:
        data = self.prepared()
        return self._cached(("statement", id(data), filters.key()), lambda: self._statement(filters))

    def _statement(self, filters: Filters) -> dict[str, Any]:
        from let_core.results import frame_totals
        from let_core.statement import bibtex, cited_keys, statement_from_totals

        totals = frame_totals(self._subset(filters))
        if totals.empty:
            raise LookupError(f"no stored runs in {self.location} match {filters.describe()}; "
                              "there is nothing to state")
        text = statement_from_totals(totals)
        keys = cited_keys(text)
        return {"filter": filters.describe(), "statement": text, "keys": keys, "bibtex": bibtex(keys)}


def _largest_groups(groups: pd.DataFrame, by: str, limit: int = MAX_GROUPS) -> list[dict[str, Any]]:
    """The ``limit`` groups that used most energy, in name order, and one line for the rest
    (a million runs outside any job are a million "jobs": they never all go to the browser)."""
    if len(groups) > limit:
        largest = groups.nlargest(limit, "kwh", keep="first").sort_values(by, kind="stable")
        rest = groups.drop(largest.index)
        rows = largest.to_dict(orient="records")
        rows.append({by: f"({len(rest):,} more)", "runs": int(rest["runs"].sum()), "kwh": float(rest["kwh"].sum()),
                     "kg": float(rest["kg"].sum()), "hours": float(rest["hours"].sum()), "rest": True})
    else:
        rows = groups.to_dict(orient="records")
    return [{k: _jsonable(v) for k, v in row.items()} for row in rows]


@functools.lru_cache(maxsize=1)
def static_dir() -> Path:
    return Path(__file__).with_name("static")
