"""The values LET produces: one ``Measurement`` per backend, one ``Run`` per tracked experiment."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Iterable, Literal, Mapping, TypeVar

from attrs import field, frozen

from let_core.jobs import JOB_COLUMNS

Kind = Literal["estimate", "metered", "attributed"]
#: "attributed": a process tree's share of another row's machine figure (``let_core.attribution``);
#: never added to the figures it is a share of.
KINDS: tuple[Kind, ...] = ("estimate", "metered", "attributed")
Status = Literal["ok", "failed"]

#: Scope of a whole machine at the wall; overlaps every other scope.
SYSTEM_SCOPE = "system"


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value or {})


@frozen
class Measurement:
    """What one backend measured over one run (or one task of a run).

    ``scope`` names what the energy covers, as ``+``-joined components (``"cpu+gpu+ram"``,
    ``"gpu"``) or ``"system"`` for the whole machine at the wall. It keeps totals honest when
    several backends measure one run: RAPL (cpu+ram) and NVML (gpu) add up, CodeCarbon and a
    wall socket do not.
    """

    backend: str
    methodology: str
    kind: Kind
    energy_kwh: float
    duration_s: float
    scope: str = SYSTEM_SCOPE
    cpu_kwh: float | None = None
    gpu_kwh: float | None = None
    ram_kwh: float | None = None
    hardware: str = ""
    extras: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    error: str = ""
    #: Metered backends only: the fraction of the run (0-1) for which readings were actually
    #: taken, and the gaps in between that were interpolated. None for estimates, which have
    #: no readings to miss.
    coverage: float | None = None
    gap_count: int = 0
    gap_seconds: float = 0.0

    @classmethod
    def failed(cls, backend: str, error: str, *, methodology: str = "", kind: Kind = "estimate",
               duration_s: float = 0.0, hardware: str = "") -> Measurement:
        """A backend that could not measure: recorded with its error, never counted."""
        return cls(backend=backend, methodology=methodology, kind=kind, energy_kwh=math.nan,
                   duration_s=duration_s, hardware=hardware, error=error)

    @property
    def ok(self) -> bool:
        return not self.error and math.isfinite(self.energy_kwh)

    @property
    def components(self) -> frozenset[str]:
        return frozenset(self.scope.split("+")) if self.scope else frozenset({SYSTEM_SCOPE})


def shared_by_ranks(scope: str) -> bool:
    """Whether every rank of a job on one host measures the same thing at this scope.

    The machine, its CPUs and RAM are shared; GPUs are per device (one rank, one GPU), so
    GPU-only measurements of different ranks add up rather than repeat each other.
    """
    return (scope or SYSTEM_SCOPE) != "gpu"


M = TypeVar("M")


def primary_measurements(measurements: Iterable[M], kind: str) -> list[M]:
    """The measurements of one kind whose energies may be added without double counting.

    Taken in order; one is skipped when its scope overlaps one already taken ("system"
    overlaps everything). So CodeCarbon alone counts once, RAPL plus NVML count together, and
    a second whole-system estimate of the same run is ignored.
    """
    taken: list[M] = []
    covered: set[str] = set()
    for m in measurements:
        if getattr(m, "kind") != kind or not _finite(getattr(m, "energy_kwh")):
            continue
        scope = getattr(m, "scope") or SYSTEM_SCOPE
        parts = set(scope.split("+"))
        if SYSTEM_SCOPE in covered or (covered and SYSTEM_SCOPE in parts) or parts & covered:
            continue
        taken.append(m)
        covered |= parts
    return taken


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


@frozen
class Run:
    """One tracked experiment (or one task of it), with every backend's measurement."""

    run_id: str
    project_name: str
    user: str
    hostname: str
    start_time: datetime
    end_time: datetime
    status: Status
    measurements: tuple[Measurement, ...]
    country_iso_code: str
    country_name: str
    carbon_intensity: float  # gCO2e/kWh used for every emission of this run
    task: str = ""
    parent_run_id: str = ""
    metrics: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    params: Mapping[str, Any] = field(factory=dict, converter=_frozen_mapping)
    environment: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    error: str = ""

    @property
    def duration_s(self) -> float:
        return (self.end_time - self.start_time).total_seconds()

    @property
    def primary(self) -> list[Measurement]:
        """What the run's headline energy is made of (``let_core.results.counting`` decides):
        metered figures, plus estimates of whatever they do not cover."""
        from let_core.results.counting import counted_measurements

        return counted_measurements(self.measurements)

    @property
    def energy_kwh(self) -> float:
        primary = self.primary
        return sum(m.energy_kwh for m in primary) if primary else math.nan

    def emissions_kg(self, energy_kwh: float) -> float:
        return energy_kwh * self.carbon_intensity / 1000.0

    def result(self) -> dict[str, Any]:
        """The dict ``EnergyTracker.stop()`` returns (LET 0.1.x's keys first)."""
        energy = self.energy_kwh
        return {
            "timestamp": self.end_time,
            "start_time": self.start_time,
            "duration": self.duration_s,
            "energy_consumed": energy,
            "emissions": self.emissions_kg(energy),
            "tracking_mode": " + ".join(m.methodology for m in self.primary) or "none",
            "run_id": self.run_id,
            "project_name": self.project_name,
            "status": self.status,
            "carbon_intensity": self.carbon_intensity,
            "measurements": {
                m.backend: {
                    "methodology": m.methodology,
                    "kind": m.kind,
                    "scope": m.scope,
                    "energy_consumed": m.energy_kwh,
                    "emissions": self.emissions_kg(m.energy_kwh),
                    "cpu_energy": m.cpu_kwh,
                    "gpu_energy": m.gpu_kwh,
                    "ram_energy": m.ram_kwh,
                    "duration": m.duration_s,
                    "hardware": m.hardware,
                    "error": m.error,
                    "coverage": m.coverage,
                    "gap_count": m.gap_count,
                    "gap_seconds": m.gap_seconds,
                    **({"extras": dict(m.extras)} if m.extras else {}),
                }
                for m in self.measurements
            },
        }

    def rows(self, let_version: str) -> list[dict[str, Any]]:
        """The run's flat rows for the central store, one per measurement."""
        return [self._row(m, let_version) for m in self.measurements]

    def _row(self, m: Measurement, let_version: str) -> dict[str, Any]:
        extras = dict(m.extras)
        row: dict[str, Any] = {}
        # Backend extras that are store columns (CodeCarbon's whole row) go first so LET's own
        # values below win wherever both name the same column.
        leftovers = {}
        for key, value in extras.items():
            if key in STORE_COLUMN_SET:
                row[key] = value
            else:
                leftovers[key] = value
        emissions = self.emissions_kg(m.energy_kwh)
        duration = m.duration_s
        row.update({
            "timestamp": self.end_time.isoformat(timespec="seconds"),
            "project_name": self.project_name,
            "run_id": self.run_id,
            "experiment_id": f"{self.project_name}___{self.user}___{self.hostname}",
            "duration": duration,
            "emissions": emissions,
            "emissions_rate": emissions / duration if duration > 0 and _finite(emissions) else "",
            "cpu_energy": _blank_none(m.cpu_kwh),
            "gpu_energy": _blank_none(m.gpu_kwh),
            "ram_energy": _blank_none(m.ram_kwh),
            "energy_consumed": m.energy_kwh,
            "country_name": self.country_name,
            "country_iso_code": self.country_iso_code,
            "let_version": let_version,
            "user": self.user,
            "hostname": self.hostname,
            "backend": m.backend,
            "methodology": m.methodology,
            "kind": m.kind,
            "scope": m.scope,
            "hardware": m.hardware,
            "run_status": self.status,
            "error": "; ".join(e for e in (self.error, m.error) if e),
            "start_time": self.start_time.isoformat(timespec="seconds"),
            "carbon_intensity": self.carbon_intensity,
            "task": self.task,
            "parent_run_id": self.parent_run_id,
            **{column: self.environment.get(column, "") for column in JOB_COLUMNS},
            "metrics": _json_or_blank(self.metrics),
            "params": _json_or_blank(self.params),
            "extra": _json_or_blank(leftovers),
            "coverage": _blank_none(m.coverage),
            "gap_count": m.gap_count if m.coverage is not None else "",
            "gap_seconds": m.gap_seconds if m.coverage is not None else "",
        })
        return row


def _blank_none(value: float | None) -> Any:
    return "" if value is None else value


def _json_or_blank(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=str) if value else ""


#: CodeCarbon's emissions.csv columns (3.3's EmissionsData), in its order, so CodeCarbon and STREP read our store.
CODECARBON_COLUMNS: tuple[str, ...] = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy",
    "ram_energy", "energy_consumed", "water_consumed", "country_name", "country_iso_code",
    "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)

#: LET's own columns, after CodeCarbon's. A run's status is ``run_status``, not ``status``: STREP
#: (``strep.index_scale.load_database``) takes a CSV with run_id, experiment_id and status for
#: an MLflow run summary and then finds nothing in an emissions file.
LET_COLUMNS: tuple[str, ...] = (
    "let_version", "user", "hostname", "backend", "methodology", "kind", "scope", "hardware",
    "run_status", "error", "start_time", "carbon_intensity", "task", "parent_run_id", "job_id",
    "rank", "metrics", "params", "extra", "coverage", "gap_count", "gap_seconds",
    *(column for column in JOB_COLUMNS if column not in ("job_id", "rank")),
)

STORE_COLUMNS: tuple[str, ...] = CODECARBON_COLUMNS + LET_COLUMNS

#: What makes a CSV an emissions file: the columns every CodeCarbon version wrote (from the
#: pre-1.0 ``experiment_id`` files on), LET 0.1.x and 1.x included. Not ``run_id``: CodeCarbon
#: 1.x files have none, and their rows are still runs.
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "duration", "emissions", "energy_consumed")
STORE_COLUMN_SET = frozenset(STORE_COLUMNS)

#: Columns read back as floats; every other column is text.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "duration", "emissions", "emissions_rate", "cpu_power", "gpu_power", "ram_power",
    "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "water_consumed", "cpu_count",
    "gpu_count", "longitude", "latitude", "ram_total_size", "cpu_utilization_percent",
    "gpu_utilization_percent", "ram_utilization_percent", "ram_used_gb", "pue", "wue",
    "carbon_intensity", "coverage", "gap_count", "gap_seconds",
)


def hardware_from_codecarbon(cpu_model: str, gpu_model: str) -> str:
    """LET 0.1.x's hardware phrase: the CPU model without its clock, and the GPUs if any."""
    cpu = (cpu_model or "").split(" @ ")[0].strip()
    gpu = (gpu_model or "").strip()
    if gpu.lower() in ("", "nan", "none"):
        return cpu
    return f"{cpu} and {gpu}" if cpu else gpu


def codecarbon_scope(gpu_model: str) -> str:
    """What a CodeCarbon figure covers: the GPUs only when it found any. A machine without a
    GPU is measured as CPU+RAM, so a separate GPU figure of the same run adds to it."""
    return "cpu+gpu+ram" if (gpu_model or "").strip().lower() not in ("", "nan", "none") else "cpu+ram"


def legacy_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """LET's columns for a row written by LET 0.1.x or plain CodeCarbon (empty ``backend``).

    Those files keep CodeCarbon's ``project_name`` ("codecarbon") and encode the real one in
    ``experiment_id`` as ``project___user___hostname``.
    """
    experiment_id = str(row.get("experiment_id") or "")
    parts = experiment_id.split("___")
    fields: dict[str, str] = {
        "backend": "codecarbon",
        "methodology": f"CodeCarbon {row.get('codecarbon_version') or ''}".strip(),
        "kind": "estimate",
        "scope": codecarbon_scope(str(row.get("gpu_model") or "")),
        "hardware": hardware_from_codecarbon(str(row.get("cpu_model") or ""),
                                             str(row.get("gpu_model") or "")),
    }
    if len(parts) == 3:
        fields.update(project_name=parts[0], user=parts[1], hostname=parts[2])
    if not row.get("run_status"):
        fields["run_status"] = "ok"
    return fields


def is_legacy(row: Mapping[str, Any]) -> bool:
    return not row.get("backend")


#: No run of one experiment uses a gigawatt-hour: a larger figure is a backend's bug, not energy.
#: New measurements above it are recorded as failed (tracker.validated); stored rows above it
#: (another tool's file) are not counted, so sums stay finite.
MAX_ENERGY_KWH = 1e6


def as_float(value: Any) -> float:
    """A stored cell as a float; blank or unparsable cells are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
