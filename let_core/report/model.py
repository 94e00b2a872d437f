"""The numbers of an impact report: loaded by ``load_results`` (one store, several, a Parquet
dataset or URI), counted by ``let_core.results.counting`` once (the figures of ``lett results
--by`` and of the paper statement), and split per project, user, host, month and group."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from attrs import frozen

from let_core.report.groups import GroupMap

if TYPE_CHECKING:
    import pandas as pd

    from let_core.results.counting import Totals

#: The breakdowns, in the report's order ("group" only with a groups file).
BREAKDOWNS = ("group", "project", "user", "host", "month")
#: Rows a breakdown table shows, the largest by energy; the rest are summed in one line.
MAX_LINES = 100
#: Projects whose paper statement the report prints (the largest by energy).
MAX_STATEMENTS = 50
#: Runs listed as the biggest and as the latest failures.
MAX_RUNS = 15
NO_DATE = "(no date)"


@frozen
class Line:
    """One group of a breakdown: its counted totals and how many of its runs failed."""

    name: str
    totals: Totals
    failed: int = 0
    rest: int = 0  # > 0: the line sums this many smaller groups


@frozen
class RunLine:
    run_id: str
    project: str
    user: str
    host: str
    start: datetime | None
    duration_s: float
    kwh: float
    kg: float
    kinds: str
    status: str
    error: str


@frozen
class Report:
    sources: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    first: datetime | None
    last: datetime | None
    generated: datetime
    totals: Totals
    stored_runs: int
    failed_runs: int
    statement: str | None
    breakdowns: dict[str, list[Line]]
    statements: list[tuple[str, str]]
    biggest: list[RunLine]
    failures: list[RunLine]
    #: Energy over time for the chart, per ``trend_unit`` ("hour", "day" or "month": by the span)
    trend: list[Line]
    trend_unit: str
    groups_source: str = ""

    @property
    def empty(self) -> bool:
        return self.stored_runs == 0


def _columns(calibrations: bool) -> list[str]:
    from let_core.results.counting import TOTALS_COLUMNS

    wanted = [*TOTALS_COLUMNS, "run_status", "error"]
    if calibrations:
        from let_core.results.calibration import CALIBRATION_COLUMNS

        wanted += CALIBRATION_COLUMNS
    return list(dict.fromkeys(wanted))


def describe_sources(output_dirs: Sequence[str | os.PathLike[str]] | None, dataset: str | None) -> tuple[str, ...]:
    """Where the report read, in words (``loading.where`` for each store)."""
    from let_core.results.loading import where

    dirs: list[str | os.PathLike[str] | None] = list(output_dirs) if output_dirs else [None]
    return tuple(where(d, dataset) for d in dirs)


def build_report(output_dirs: Sequence[str | os.PathLike[str]] | None = None, dataset: str | None = None, *,
                 since: datetime | None = None, until: datetime | None = None,
                 groups: GroupMap | None = None, now: datetime | None = None) -> Report:
    """The report over every run ``load_results`` reads from these stores (none: ``$LET_HOME``)
    and ``dataset``, started in [since, until] (UTC; either open)."""
    from let_core.results import load_results
    from let_core.results.calibration import has_calibrations

    calibrations = has_calibrations()
    frame = load_results(list(output_dirs) if output_dirs else None, dataset=dataset, columns=_columns(calibrations))
    return report_of_frame(frame, describe_sources(output_dirs, dataset), since=since, until=until, groups=groups,
                           now=now, calibrations=calibrations)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd

    if column not in frame:
        return pd.Series([""] * len(frame), dtype=object)
    text: pd.Series = frame[column].astype(object).where(frame[column].notna(), "").astype(str)
    return text


def _in_period(frame: pd.DataFrame, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if since is None and until is None:
        return frame
    start = pd.to_datetime(frame["start_time"], utc=True, errors="coerce") if "start_time" in frame \
        else pd.Series(pd.NaT, index=frame.index)
    mask = start.notna().to_numpy()
    if since is not None:
        mask &= (start >= pd.Timestamp(since)).to_numpy()
    if until is not None:
        mask &= (start <= pd.Timestamp(until)).to_numpy()
    if mask.all():
        return frame
    subset: pd.DataFrame = frame.iloc[np.flatnonzero(mask)]
    subset.index = pd.RangeIndex(len(subset))
    return subset


def report_of_frame(frame: pd.DataFrame, sources: Sequence[str], *, since: datetime | None = None,
                    until: datetime | None = None, groups: GroupMap | None = None, now: datetime | None = None,
                    calibrations: bool = False) -> Report:
    """The report of ``load_results``' rows (at least ``TOTALS_COLUMNS`` and ``run_status``)."""
    import numpy as np
    import pandas as pd

    from let_core.keys import row_codes
    from let_core.results.counting import breakdown

    frame = _in_period(frame, since, until)
    generated = now or datetime.now(timezone.utc)
    start = pd.to_datetime(frame["start_time"], utc=True, errors="coerce") if "start_time" in frame \
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    run_codes, stored_runs = row_codes(frame["run_id"]) if "run_id" in frame else (np.arange(len(frame)), len(frame))
    failed_rows = (_text(frame, "run_status") == "failed").to_numpy()
    failed_runs = int(np.unique(run_codes[failed_rows]).size)
    groupings: dict[str, Any] = {"project": "project_name", "user": "user", "host": "hostname",
                                 "month": _periods(start, "M").to_numpy()}
    span = start.dropna()
    seconds = (span.max() - span.min()).total_seconds() if len(span) else 0.0
    trend_unit = next((name for limit, _, name in TREND_STEPS if seconds <= limit), "month")
    if trend_unit != "month":
        groupings["trend"] = _periods(start, {name: code for _, code, name in TREND_STEPS}[trend_unit]).to_numpy()
    if groups is not None:
        groupings["group"] = groups.labels(_text(frame, "project_name"), _text(frame, "user")).to_numpy()
    counted = breakdown(frame, groupings)
    totals = counted.totals
    breakdowns = {}
    for name in BREAKDOWNS:
        if name not in counted.groups:
            continue
        by = groupings[name]
        failed_labels = (_text(frame[failed_rows], by).to_numpy() if isinstance(by, str) else by[failed_rows])
        failed = _failed_per_label(failed_labels, run_codes[failed_rows])
        lines = [Line(label, value, failed.get(label, 0)) for label, value in counted.groups[name].items()
                 if not value.empty or failed.get(label, 0)]
        breakdowns[name] = _ordered(lines, chronological=name == "month")
    step = {name: code for _, code, name in TREND_STEPS}.get(trend_unit, "M")
    trend = _filled(_ordered([Line(k, v) for k, v in counted.groups.get("trend", {}).items() if not v.empty]
                             if "trend" in counted.groups else breakdowns.get("month", []), chronological=True), step)
    statements = _statements(frame, dict(counted.groups["project"]), calibrations)
    per_run_kwh = np.bincount(run_codes, weights=counted.row_kwh, minlength=stored_runs)
    per_run_kg = np.bincount(run_codes, weights=counted.row_kg, minlength=stored_runs)
    biggest = np.argsort(-per_run_kwh, kind="stable")[:MAX_RUNS]
    biggest = biggest[per_run_kwh[biggest] > 0]
    failed_codes = np.unique(run_codes[failed_rows])
    if len(failed_codes):
        run_start = np.full(stored_runs, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(run_start, run_codes, start.to_numpy(dtype="datetime64[ns]").astype(np.int64))
        failed_codes = failed_codes[np.argsort(-run_start[failed_codes], kind="stable")][:MAX_RUNS]
    first_row = np.full(stored_runs, len(frame), dtype=np.int64)
    np.minimum.at(first_row, run_codes, np.arange(len(frame)))

    def run_lines(codes: np.ndarray) -> list[RunLine]:
        return [_run_line(frame, start, run_codes, int(code), int(first_row[code]), float(per_run_kwh[code]),
                          float(per_run_kg[code])) for code in codes]

    return Report(sources=tuple(sources), since=since, until=until,
                  first=span.min().to_pydatetime() if len(span) else None,
                  last=span.max().to_pydatetime() if len(span) else None, generated=generated, totals=totals,
                  stored_runs=stored_runs, failed_runs=failed_runs,
                  statement=_statement(totals, frame, calibrations) if not totals.empty else None,
                  breakdowns=breakdowns, statements=statements, biggest=run_lines(biggest),
                  failures=run_lines(failed_codes), trend=trend, trend_unit=trend_unit,
                  groups_source=groups.source if groups is not None else "")


def _periods(start: pd.Series, unit: str) -> pd.Series:
    """Each row's period (numpy unit "M", "D" or "h") as text, "2026-03", "2026-03-01" or
    "2026-03-01 14:00" (``NO_DATE`` without a start), formatted once per period: strftime on
    every row costs seconds over a million runs."""
    import numpy as np
    import pandas as pd

    period = start.to_numpy(dtype="datetime64[ns]").astype(f"datetime64[{unit}]")
    codes, uniques = pd.factorize(period.astype(np.int64))
    names = [_period_label(p, unit) for p in np.asarray(uniques).astype(f"datetime64[{unit}]")]
    labels: pd.Series = pd.Series(np.asarray(names, dtype=object)[codes] if len(codes) else np.array([], dtype=object))
    return labels


def _period_label(period: Any, unit: str) -> str:
    import numpy as np

    return NO_DATE if np.isnat(period) else str(period).replace("T", " ") + (":00" if unit == "h" else "")


def _filled(lines: list[Line], unit: str) -> list[Line]:
    """The trend with the periods between the first and the last that had no run, as zeros, so
    the chart's columns stand at even steps of time."""
    import numpy as np

    from let_core.results.counting import Totals

    dated = [line.name for line in lines if line.name != NO_DATE]
    if not dated:
        return lines
    first, last = (np.array([name.replace(" ", "T")], dtype=f"datetime64[{unit}]")[0] for name in (dated[0], dated[-1]))
    known = {line.name: line for line in lines}
    every = np.arange(first, last + 1, dtype=f"datetime64[{unit}]")  # + 1: one step of the unit
    full = [known.get(label) or Line(label, Totals()) for label in (_period_label(p, unit) for p in every)]
    return full + [known[NO_DATE]] if NO_DATE in known else full


#: The trend chart's step by the span of the runs: hours for a day or two, days up to two months.
TREND_STEPS = ((2 * 86400, "h", "hour"), (62 * 86400, "D", "day"))


def _failed_per_label(labels: Any, runs: Any) -> dict[str, int]:
    """Failed runs per label, from the failed rows' labels and run codes."""
    import pandas as pd

    if not len(labels):
        return {}
    pairs = pd.DataFrame({"label": labels, "run": runs}).drop_duplicates()
    return {str(k): int(v) for k, v in pairs.groupby("label")["run"].size().items()}


def _ordered(lines: list[Line], chronological: bool) -> list[Line]:
    if chronological:
        return sorted(lines, key=lambda line: (line.name == NO_DATE, line.name))
    lines = sorted(lines, key=lambda line: (-line.totals.energy_kwh, line.name))
    if len(lines) <= MAX_LINES:
        return lines
    shown, rest = lines[:MAX_LINES - 1], lines[MAX_LINES - 1:]
    merged = rest[0].totals
    for line in rest[1:]:
        merged = merged.merged(line.totals)
    return [*shown, Line(f"({len(rest):,} more)", merged, sum(line.failed for line in rest), rest=len(rest))]


def _statement(totals: Totals, frame: pd.DataFrame, calibrations: bool) -> str:
    from let_core.statement import calibration_sentences, statement_from_totals

    return statement_from_totals(totals, calibration_sentences(frame) if calibrations else None)


def _statements(frame: pd.DataFrame, per_project: dict[str, Totals], calibrations: bool) -> list[tuple[str, str]]:
    """Each project's paper statement, the largest projects first: from the project's totals,
    as `lett statement --project` words it."""
    import numpy as np
    import pandas as pd

    largest = sorted((p for p, t in per_project.items() if not t.empty),
                     key=lambda p: (-per_project[p].energy_kwh, p))[:MAX_STATEMENTS]
    result = []
    project = _text(frame, "project_name") if calibrations and largest else None
    for name in largest:
        subset = frame
        if project is not None:  # the calibration sentences read the project's rows
            subset = frame.iloc[np.flatnonzero((project == name).to_numpy())]
            subset.index = pd.RangeIndex(len(subset))
        result.append((name, _statement(per_project[name], subset, calibrations)))
    return result


def _run_line(frame: pd.DataFrame, start: pd.Series, run_codes: Any, code: int, first: int, kwh: float,
              kg: float) -> RunLine:
    import numpy as np
    import pandas as pd

    rows = np.flatnonzero(run_codes == code)

    def cell(column: str, row: int = first) -> str:
        if column not in frame:
            return ""
        value = frame[column].iloc[row]
        return "" if value is None or (isinstance(value, float) and value != value) else str(value)

    kinds = sorted({cell("kind", int(r)) for r in rows} - {""})
    errors = [cell("error", int(r)) for r in rows]
    duration = pd.to_numeric(frame["duration"].iloc[rows], errors="coerce").max() if "duration" in frame else np.nan
    when = start.iloc[first]
    return RunLine(run_id=cell("run_id"), project=cell("project_name"), user=cell("user"), host=cell("hostname"),
                   start=None if pd.isna(when) else when.to_pydatetime(),
                   duration_s=float(duration) if duration == duration else 0.0, kwh=kwh, kg=kg,
                   kinds=", ".join(kinds), status=cell("run_status") or "ok",
                   error=next((e for e in errors if e), ""))
