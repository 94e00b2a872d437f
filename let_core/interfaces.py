"""The contracts between LET's core and its plugins: settings in, backends and reporters out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from attrs import field, frozen

if TYPE_CHECKING:
    import pandas as pd

    from let_core.records import Measurement, Run


def _as_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


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
    options: Mapping[str, Any] = field(factory=dict, converter=_as_dict)
    #: A pyarrow filesystem URI given as output_dir (``s3://bucket/let``); the central CSV store
    #: then stays local in ``output_dir`` ($LET_HOME) so a run is recorded even when it is offline.
    output_uri: str | None = None

    @classmethod
    def resolve(cls, project_name: str = "default", output_dir: Any = None,
                country_iso_code: str | None = None, carbon_intensity: float | None = None,
                measure_power_secs: float = 1, cuda_devices: Any = None, pue: float | None = None,
                log_level: str | None = None, options: Mapping[str, Any] | None = None) -> Settings:
        """Validated settings from what a user gave, the environment (``let_core.config``) filling
        the rest: ``LET_HOME``, ``LET_COUNTRY``, ``LET_CARBON_INTENSITY``, ``LET_LOG_LEVEL``,
        ``LET_HOSTNAME``. Every bad value is a ``ConfigurationError`` naming it."""
        from let_core import config
        from let_core.carbon import checked_number, resolve_intensity
        from let_core.errors import ConfigurationError

        if not isinstance(project_name, str) or not project_name.strip():
            raise ConfigurationError(f"project_name must be a non-empty string, got {project_name!r}")
        user, hostname = config.current_user(), config.hostname()
        for what, name, fix in (("project_name", project_name, "choose another project_name"),
                                ("user name", user, "set USER to a plain name"),
                                ("host name", hostname, "set LET_HOSTNAME to a plain name")):
            check_name(what, name, fix)
        interval = checked_number(measure_power_secs, "measure_power_secs", strict=True, unit="seconds")
        if pue is not None:
            pue = checked_number(pue, "pue (power usage effectiveness)", minimum=1.0)
        country, intensity = resolve_intensity(country_iso_code, carbon_intensity)
        level = (log_level or config.log_level_env() or "error").lower()
        if level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigurationError(
                f"log_level must be one of debug, info, warning, error, critical; got {log_level!r}")
        output_uri = None
        if isinstance(output_dir, str) and "://" in output_dir and not output_dir.startswith("file://"):
            output_uri, output_dir = output_dir, None
        elif isinstance(output_dir, str) and output_dir.startswith("file://"):
            output_dir = output_dir[len("file://"):]
        return cls(
            project_name=project_name,
            output_dir=Path(output_dir).expanduser() if output_dir is not None else config.let_home(),
            output_uri=output_uri,
            user=user,
            hostname=hostname,
            country_iso_code=country.iso_code,
            country_name=country.country_name,
            carbon_intensity=intensity,
            measure_power_secs=interval,
            cuda_devices=_validate_cuda_devices(cuda_devices),
            pue=pue,
            log_level=level,
            options=options,
        )


#: Longest project, user or host name LET stores: far above any real one, and a bound on
#: what one run adds to every row of the store.
MAX_NAME_CHARS = 200


def check_name(what: str, name: str, fix: str) -> None:
    """Refuse a name the store would alter or that no filter could find again: ``___`` (the
    separator of experiment_id's project___user___hostname), a control character (a line
    break, ``\\r``, NUL ...), or more than MAX_NAME_CHARS characters."""
    from let_core.errors import ConfigurationError
    from let_core.schema import CONTROL_CHARACTERS

    if "___" in name:
        problem = "contains '___', the separator of experiment_id's project___user___hostname"
    elif CONTROL_CHARACTERS.search(name) or "\t" in name or "\n" in name:
        problem = "contains a control character (line break, carriage return, NUL, tab ...)"
    elif len(name) > MAX_NAME_CHARS:
        problem = f"is {len(name)} characters long, more than the {MAX_NAME_CHARS} LET stores"
    else:
        return
    shown = name if len(name) <= 80 else name[:80] + "..."
    raise ConfigurationError(f"{what} {shown!r} {problem}; {fix}. LET stores it in every row and "
                             "filters results by it exactly, so it must be stored unchanged.")


def _validate_cuda_devices(devices: Any) -> tuple[str, ...] | None:
    from let_core import config
    from let_core.errors import ConfigurationError

    if devices is None:
        devices = config.cuda_visible_devices()
        if devices is None:
            return None
    if isinstance(devices, (str, int)):
        devices = [devices]
    result = []
    for device in devices:
        text = str(device).strip()
        if not (text.isdigit() or text.startswith(("GPU-", "MIG-"))):
            raise ConfigurationError(
                f"cuda_devices entry {device!r} is neither a GPU index (0, 1, ...) nor a GPU "
                "UUID ('GPU-...' or 'MIG-...'); `nvidia-smi -L` lists both.")
        result.append(text)
    return tuple(result)


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
