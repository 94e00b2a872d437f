"""The contracts between LET's core and its plugins: settings in, backends and reporters out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, runtime_checkable

from attrs import field, frozen

if TYPE_CHECKING:
    import pandas as pd

    from let_core.records import Measurement, Run


@frozen
class Settings:
    """Everything a backend or reporter may need to know about the tracker that uses it."""

    project_name: str
    output_dir: Path
    user: str
    hostname: str
    country_iso_code: str
    country_name: str
    carbon_intensity: float  # gCO2e/kWh
    measure_power_secs: float = 1.0
    cuda_devices: tuple[str, ...] | None = None
    pue: float | None = None
    log_level: str = "error"
    options: Mapping[str, Any] = field(factory=dict, converter=lambda v: dict(v or {}))
    #: A pyarrow filesystem URI given as output_dir (``s3://bucket/let``); the central CSV store
    #: then stays local in ``output_dir`` ($LET_HOME) so a run is recorded even when it is offline.
    output_uri: str | None = None


@frozen
class Availability:
    """Whether a plugin can run here, and if not, why not and what to do about it."""

    available: bool
    reason: str = ""

    @classmethod
    def yes(cls, detail: str = "") -> Availability:
        return cls(True, detail)

    @classmethod
    def no(cls, reason: str) -> Availability:
        return cls(False, reason)


@frozen
class LiveReading:
    """What one backend has seen of a run that is still going: for a status line or a dashboard.

    ``power_w`` is the current (most recent) power, None when the backend cannot tell;
    ``energy_kwh`` the energy since the run started. Reading it never changes what the run records.
    """

    backend: str
    kind: str  # "estimate" or "metered"
    energy_kwh: float
    power_w: float | None = None
    error: str = ""


@runtime_checkable
class Backend(Protocol):
    """A running energy measurement. ``start()`` then ``stop()``; may be started again.

    Backends that can read their counters cheaply also implement ``task_start(name)`` and
    ``task_stop(name) -> Measurement`` for ``EnergyTracker.task()``, and ``live() ->
    LiveReading`` for ``EnergyTracker.live()`` (the figures so far, without stopping anything).
    """

    name: str

    def start(self) -> None: ...

    def stop(self) -> Measurement: ...


class BackendFactory(Protocol):
    """What ``let_register_backends`` registers: usually the backend class itself."""

    name: ClassVar[str]
    #: Joins "auto" selection when available.
    auto: ClassVar[bool]
    description: ClassVar[str]

    @classmethod
    def availability(cls, settings: Settings) -> Availability: ...

    @classmethod
    def from_settings(cls, settings: Settings) -> Backend: ...


@runtime_checkable
class Reporter(Protocol):
    """Receives every finished run. May also export a stored result set (``export``)."""

    name: str

    def report(self, run: Run) -> None: ...


class ReporterFactory(Protocol):
    """What ``let_register_reporters`` registers: usually the reporter class itself."""

    name: ClassVar[str]
    auto: ClassVar[bool]
    description: ClassVar[str]
    #: Reporters run in ascending order; the central store (0) first, the statement (100) last.
    order: ClassVar[int]

    @classmethod
    def availability(cls, settings: Settings) -> Availability: ...

    @classmethod
    def from_settings(cls, settings: Settings) -> Reporter: ...


class Exporter(Protocol):
    """A reporter that can also write a whole stored result set somewhere."""

    def export(self, results: pd.DataFrame, destination: str) -> None: ...
