"""What a stored run counts for: each counting rule, once, in the standard library only.

Both readers call these functions: the row-by-row path (``counting.Accumulator``: the totals
cache, the statement at stop) and the frame path (``counting.frame_totals``, ``aggregate``:
``load_results``, the cold statement, ``lett results``, the dashboard, plots, exports). The
frame path applies them to arrays: ``decide`` is evaluated once per distinct shape of a run and
spread; ``emissions`` takes its arithmetic from the caller (``math`` here, numpy there) so the
formula is the same text for a float and for a column; the job rule (``Launches``) is fed the
job rows in stored order by both paths.

The rules, per run:

1. A measurement is usable when its energy is a finite number of kWh in [0, MAX_ENERGY_KWH].
2. Checkpoints: the rows of one run id, backend and task (LET's ``task`` or CodeCarbon's
   ``task_name``) are cumulative; the one of the largest duration counts (the last stored
   among equals), in whatever order they were stored.
3. CodeCarbon tasks: rows of one run id with different ``task_name`` are parts measured one
   after another: each is a run unit of its own, and they add up. LET's own task rows
   (``task``) are parts already inside their run's energy and never add.
4. A metered figure covering less than half of its run (``coverage`` < 0.5) is set aside and
   used as an estimate only when the run has no estimate of its own.
5. Within a kind, figures are taken in stored order, each only when its scope is disjoint
   from those already taken (``"system"`` overlaps everything).
6. A run counts its metered figures, then every estimate whose scope none of them covers.
7. Ranks of one launch (same project, user, job, host, backend and hardware, running at
   overlapping times) measured the same shared devices (any scope but ``gpu``): the launch
   counts once, each rank adding what it exceeds the largest figure of the launch before it.
   Runs of one allocation that do not overlap in time are sequential and each counts.
8. Emissions are energy x the intensity the row was recorded with (``carbon_intensity``, else
   the country's); a stored emissions cell is never trusted over that. A cell that disagrees
   beyond rounding, or is negative or absurd, is replaced and counted.
9. Attributed view (only when asked: ``frame_totals(frame, attributed=True)``, ``lett results
   --attribution``, ``lett statement --attribution``): a machine figure with a usable share of
   the same run unit and task (kind ``attributed``, backend ``<backend>/process``) counts as
   that share: the share takes the figure's kind, scope, coverage, backend and methodology, so
   rules 4-8 apply to it as to the figure, and the figure itself is left out. A figure without
   a usable share (attribution off, ``/proc`` unreadable) counts whole. Otherwise attributed
   rows count for nothing: a share is never added to the figure it is a share of.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

#: No run of one experiment uses a gigawatt-hour: a larger figure is a backend's bug, not energy.
#: New measurements above it are recorded as failed (tracker.validated); stored rows above it
#: (another tool's file) are not counted, so sums stay finite.
MAX_ENERGY_KWH = 1e6

#: Below this fraction of its run metered, a metered figure is not presented as metered.
MIN_COVERAGE = 0.5
#: Below this, the statement says how much of the run was metered and that the rest was interpolated.
FULL_COVERAGE = 0.99

EST_PRIMARY, MET_PRIMARY, COUNTED = 1, 2, 4

#: Two emissions figures of one row agree when within this relative difference (rounding of
#: a written float, of an intensity printed to whole grams).
EMISSIONS_TOLERANCE = 1e-3

#: The columns that name "the same devices measured by several ranks of one launch".
JOB_KEYS = ("project_name", "user", "job_id", "hostname", "backend", "hardware")

#: Scope of a whole machine at the wall; overlaps every other scope.
SYSTEM_SCOPE = "system"

#: Rule 9: a share's backend is the machine figure's backend and this suffix.
SHARE_SUFFIX = "/process"
#: Rule 9: the kind a machine figure takes in the attributed view where its share stands in
#: for it; no rule counts it.
SHARED_OUT = "shared out"


def share_of(backend: str) -> str:
    """Rule 9: the backend whose figure a share (``<backend>/process``) is of; "" for any other."""
    return backend[:-len(SHARE_SUFFIX)] if backend.endswith(SHARE_SUFFIX) and len(backend) > len(SHARE_SUFFIX) else ""


def shared_by_ranks(scope: str) -> bool:
    """Whether every rank of a job on one host measures the same thing at this scope.

    The machine, its CPUs and RAM are shared; GPUs are per device (one rank, one GPU), so
    GPU-only measurements of different ranks add up rather than repeat each other.
    """
    return (scope or SYSTEM_SCOPE) != "gpu"


class Figure(Protocol):
    """What the scope rule reads of a measurement (a ``Measurement``, a ``View``)."""

    @property
    def kind(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def energy_kwh(self) -> float: ...


M = TypeVar("M", bound=Figure)


def primary_measurements(measurements: Iterable[M], kind: str) -> list[M]:
    """The measurements of one kind whose energies may be added without double counting.

    Taken in order; one is skipped when its scope overlaps one already taken ("system"
    overlaps everything). So CodeCarbon alone counts once, RAPL plus NVML count together, and
    a second whole-system estimate of the same run is ignored.
    """
    taken: list[M] = []
    covered: set[str] = set()
    for m in measurements:
        if m.kind != kind or not math.isfinite(as_float(m.energy_kwh)):
            continue
        scope = m.scope or SYSTEM_SCOPE
        parts = set(scope.split("+"))
        if SYSTEM_SCOPE in covered or (covered and SYSTEM_SCOPE in parts) or parts & covered:
            continue
        taken.append(m)
        covered |= parts
    return taken


def as_float(value: Any) -> float:
    """A stored cell as a float; blank or unparsable cells are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# Rules 1 and 4 are written with ``>=``/``<``/``&`` only, so that the same text decides for one
# float (a bool) and for a numpy or pandas column (a mask): NaN fails every comparison.
def usable_energy(value: Any) -> Any:
    """Rule 1: a finite, non-negative energy in kWh no larger than MAX_ENERGY_KWH (NaN fails);
    ``value`` is a float or a column of them."""
    return (value >= 0) & (value <= MAX_ENERGY_KWH)


def low_coverage(coverage: Any) -> Any:
    """Rule 4: a metered figure known to cover less than MIN_COVERAGE of its run (unknown,
    NaN, is not low); ``coverage`` is a float or a column of them."""
    return (coverage > -math.inf) & (coverage < MIN_COVERAGE)


def run_unit(run_id: str, task_name: str) -> str:
    """Rule 3: the key of a run unit; CodeCarbon's tasks of one run are units of their own."""
    return f"{run_id}\x1f{task_name}" if task_name else run_id


def scalar_where(condition: Any, yes: Any, no: Any) -> Any:
    """``numpy.where`` for one value: the arithmetic ``emissions`` and ``checkpoint_order`` take
    for a single row."""
    return yes if condition else no


def checkpoint_order(duration: Any, position: Any, *, where: Callable[..., Any] = scalar_where,
                     isfinite: Callable[[Any], Any] = math.isfinite) -> tuple[Any, Any]:
    """Rule 2's order of the checkpoints of one run, backend and task: the latest is the
    greatest (duration, stored position), an unknown duration counting as -1. For one row
    (a duration, its index) or, with numpy's ``where``/``isfinite``, for columns of them."""
    return where(isfinite(duration), duration, -1.0), position


def latest_checkpoints(durations: Sequence[float], keys: Sequence[Any]) -> list[bool]:
    """Rule 2 over rows in stored order: True for each key's row that is greatest in
    ``checkpoint_order``."""
    best: dict[Any, tuple[Any, Any]] = {}
    for index, (key, duration) in enumerate(zip(keys, durations)):
        order = checkpoint_order(duration, index)
        if key not in best or order > best[key]:
            best[key] = order
    chosen = {position for _, position in best.values()}
    return [index in chosen for index in range(len(keys))]


class View:
    """What ``decide`` needs to know of a usable measurement."""

    __slots__ = ("index", "kind", "scope", "demoted", "energy_kwh")

    def __init__(self, index: Any, kind: str, scope: str, demoted: bool = False) -> None:
        self.index, self.kind, self.scope, self.demoted = index, kind, scope or SYSTEM_SCOPE, demoted
        self.energy_kwh = 0.0  # usable by construction: decide() never sees unusable rows


class _AsEstimate:
    __slots__ = ("view", "kind", "scope", "energy_kwh")

    def __init__(self, view: View) -> None:
        self.view, self.kind, self.scope, self.energy_kwh = view, "estimate", view.scope, 0.0


def _overlaps(parts: set[str], covered: set[str]) -> bool:
    return bool(covered) and (SYSTEM_SCOPE in covered or SYSTEM_SCOPE in parts or bool(parts & covered))


def decide(views: Sequence[View]) -> list[int]:
    """Rules 4-6: each usable measurement's role in its run unit, a bit set of EST_PRIMARY,
    MET_PRIMARY and COUNTED; ``views`` in stored order."""
    metered = [v for v in views if v.kind == "metered" and not v.demoted]
    estimates = [v for v in views if v.kind == "estimate"]
    if not estimates:
        estimates = [v for v in views if v.kind == "metered" and v.demoted]
    metered_primary = primary_measurements(metered, "metered")
    estimate_primary = primary_measurements([_AsEstimate(v) for v in estimates], "estimate")
    roles = {id(v): MET_PRIMARY | COUNTED for v in metered_primary}
    covered: set[str] = set()
    for v in metered_primary:
        covered |= set(v.scope.split("+"))
    for wrapped in estimate_primary:
        view = wrapped.view
        role = roles.get(id(view), 0) | EST_PRIMARY
        if not _overlaps(set(view.scope.split("+")), covered):
            role |= COUNTED
        roles[id(view)] = role
    return [roles.get(id(v), 0) for v in views]


def job_rule_applies(job_id: str, scope: str) -> bool:
    """Rule 7 applies to a counted row of a job whose scope every rank on a host shares."""
    return bool(job_id) and shared_by_ranks(scope)


class Launches:
    """Rule 7's memory: per job key, its launches so far (each one's start, end and largest figure).

    Rows are fed in stored order. A row overlapping one of the key's launches in time is a
    rank of it and adds only what it exceeds that launch's largest figure so far; a row that
    overlaps none starts a new launch (a sequential run of the allocation) and counts whole.
    Every launch is kept, not just the last: ranks of one launch are often stored with another
    launch's runs between them. Unknown times (NaN) overlap everything, as before launches were
    told apart.
    """

    __slots__ = ("seen", "_ends")

    def __init__(self, seen: dict[str, list[list[float]]] | None = None) -> None:
        self.seen: dict[str, list[list[float]]] = seen if seen is not None else {}
        #: Per key, when its last launch ended (inf when a time is unknown): runs one after
        #: another in an allocation start after it and skip the look at every launch.
        self._ends = {key: max(map(_end, launches), default=-math.inf) for key, launches in self.seen.items()}

    def part(self, key: str, start: float, end: float, energy: float) -> float:
        launches = self.seen.setdefault(key, [])
        if not (math.isfinite(end) and start >= self._ends.get(key, -math.inf)):  # (unknown times overlap all)
            for launch in reversed(launches):  # ranks come while their launch is the latest
                if _overlap(launch[0], launch[1], start, end):
                    before = launch[2]
                    launch[0] = min(launch[0], start) if math.isfinite(start) else launch[0]
                    launch[1] = max(launch[1], end) if math.isfinite(end) else launch[1]
                    launch[2] = max(before, energy)
                    self._ends[key] = max(self._ends[key], _end(launch))
                    return max(0.0, energy - before)
        launches.append([start, end, energy])
        self._ends[key] = max(self._ends.get(key, -math.inf), _end(launches[-1]))
        return energy


def _end(launch: list[float]) -> float:
    """When a launch ended; inf when either of its times is unknown (it overlaps everything)."""
    return launch[1] if math.isfinite(launch[0]) and math.isfinite(launch[1]) else math.inf


def _overlap(start_a: float, end_a: float, start_b: float, end_b: float) -> bool:
    if not all(math.isfinite(t) for t in (start_a, end_a, start_b, end_b)):
        return True
    return start_b < end_a and start_a < end_b


def emissions(energy: Any, stored: Any, intensity: Any, *, where: Callable[..., Any],
              isfinite: Callable[[Any], Any]) -> tuple[Any, Any, Any]:
    """Rule 8 for one row or a column of rows: (kg CO2e, the intensity used in g/kWh, True
    where a stored cell was replaced).

    ``intensity`` is the row's recorded intensity (``carbon_intensity``, else its country's;
    NaN when neither is known). Without one, a stored cell that is finite and non-negative is
    all there is; otherwise the emissions are 0. ``where``/``isfinite`` are the caller's
    arithmetic (``scalar_where``/``math.isfinite`` or numpy's).
    """
    known = isfinite(intensity) & (intensity >= 0)
    computed = energy * where(known, intensity, 0.0) / 1000.0
    stored_ok = isfinite(stored) & (stored >= 0)
    kg = where(known, computed, where(stored_ok, stored, 0.0))
    used = where(known, intensity, where(stored_ok & (energy > 0), stored * 1000.0 / where(energy > 0, energy, 1.0),
                                         float("nan")))
    present = isfinite(stored)  # a blank cell is computed, not replaced
    tolerance = EMISSIONS_TOLERANCE * where(computed > stored, computed, stored) + 1e-12
    disagrees = where(known, (stored - computed > tolerance) | (computed - stored > tolerance), False)
    replaced = present & (disagrees | (stored < 0))
    return kg, used, replaced


def row_emissions(energy: float, stored: float, intensity: float) -> tuple[float, float, bool]:
    """``emissions`` for one row."""
    kg, used, replaced = emissions(energy, stored, intensity, where=scalar_where, isfinite=math.isfinite)
    return float(kg), float(used), bool(replaced)


def recorded_intensity(carbon_intensity: Any, country_of: Callable[[Any], Any], *, where: Callable[..., Any],
                       isfinite: Callable[[Any], Any]) -> Any:
    """The intensity a row was recorded with: its own ``carbon_intensity``, else its
    country's; NaN when neither is known. ``country_of(own)`` gives the country's intensity
    (``carbon.country_g_per_kwh``) where ``own`` is false, so it is looked up only where needed."""
    own = isfinite(carbon_intensity) & (carbon_intensity >= 0)
    return where(own, carbon_intensity, country_of(own))


def epoch(text: Any) -> float:
    """An ISO 8601 time as seconds since 1970 (naive times are UTC); NaN when blank or bad."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return math.nan
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def interval(start: float, end: float, duration: float) -> tuple[float, float]:
    """Rule 7's times of a row: its start (else its end less its duration) and its end."""
    return (start if math.isfinite(start) else end - duration), end


def counted_measurements(measurements: Sequence[Any]) -> list[Any]:
    """The measurements one run counts for (``Run.primary``): rules 1, 4-6."""
    usable = [m for m in measurements if m.kind in ("estimate", "metered") and not getattr(m, "error", "")
              and usable_energy(as_float(m.energy_kwh))]
    views = [View(m, m.kind, m.scope, m.kind == "metered" and low_coverage(as_float(getattr(m, "coverage", None))))
             for m in usable]
    return [view.index for view, role in zip(views, decide(views)) if role & COUNTED]
