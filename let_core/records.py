"""The values LET produces: one ``Measurement`` per backend, one ``Run`` per tracked experiment."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from attrs import field, frozen

from let_core.results.rule import (
    MAX_ENERGY_KWH,
    SYSTEM_SCOPE,
    as_float,
    counted_measurements,
    primary_measurements,
    shared_by_ranks,
)
from let_core.schema import JOB_COLUMNS, STORE_COLUMN_SET

__all__ = ["MAX_ENERGY_KWH", "SYSTEM_SCOPE", "primary_measurements", "shared_by_ranks"]

Kind = Literal["estimate", "metered", "attributed"]
#: "attributed": a process tree's share of another row's machine figure (``let_core.attribution``);
#: never added to the figures it is a share of.
KINDS: tuple[Kind, ...] = ("estimate", "metered", "attributed")
Status = Literal["ok", "failed"]

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
        """What the run's headline energy is made of (``let_core.results.rule`` decides):
        metered figures, plus estimates of whatever they do not cover."""
        return counted_measurements(self.measurements)

    @property
    def energy_kwh(self) -> float:
        primary = self.primary
        return sum(m.energy_kwh for m in primary) if primary else math.nan

    def emissions_kg(self, energy_kwh: float) -> float:
        return energy_kwh * self.carbon_intensity / 1000.0

    def _repr_html_(self) -> str:
        """How a notebook shows the run (IPython's rich display)."""
        from let_core.display import html_table, run_rows

        return html_table(run_rows(self), caption="LET run")

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
            "timestamp": self.end_time.isoformat(timespec="milliseconds"),
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
            "start_time": self.start_time.isoformat(timespec="milliseconds"),
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


def _finite(value: Any) -> bool:
    return math.isfinite(as_float(value))


def _blank_none(value: float | None) -> Any:
    return "" if value is None else value


def _json_or_blank(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, default=str) if value else ""




