"""CodeCarbon's estimate (the methodology most papers cite), run quietly, offline and without files.

LET runs ``OfflineEmissionsTracker`` only: no geo-IP lookup, no cloud metadata probes, no
``emissions.csv`` of CodeCarbon's own, no lock file in /tmp, and its logging at LET's level.
CodeCarbon's final ``EmissionsData`` becomes the measurement, every column of it kept.

Importing this module is cheap: CodeCarbon is imported when a backend starts (or ``lett detect``
runs), never at import time.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from let_core.errors import ConfigurationError, LetError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, LiveReading, Settings
from let_core.records import Measurement
from let_core.schema import CODECARBON_COLUMNS, codecarbon_scope, hardware_from_codecarbon

if TYPE_CHECKING:
    import click

NAME = "codecarbon"
SCOPE = "cpu+gpu+ram"

#: Columns LET's core writes itself for every backend; the rest of CodeCarbon's row is kept as extras.
_CORE_COLUMNS = frozenset({
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "country_name", "country_iso_code",
})
EXTRA_COLUMNS: tuple[str, ...] = tuple(c for c in CODECARBON_COLUMNS if c not in _CORE_COLUMNS)

#: CodeCarbon options a user may pass through ``options={"codecarbon": {...}}``. Everything else
#: is either set by LET (country, interval, GPUs, PUE, outputs, logging) or would go online.
USER_OPTIONS = frozenset({
    "tracking_mode", "force_cpu_power", "force_ram_power", "force_mode_cpu_load",
    "rapl_include_dram", "rapl_prefer_psys", "wue", "region", "cloud_provider", "cloud_region",
})


class CodeCarbonError(LetError):
    """CodeCarbon failed; the message says what failed and what to do about it."""


@functools.lru_cache(maxsize=1)
def codecarbon_version() -> str:
    """The installed CodeCarbon's version, read from its metadata (no import)."""
    import importlib.metadata  # 13 ms: paid only when a CodeCarbon run is labelled

    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return ""


def methodology() -> str:
    version = codecarbon_version()
    return f"CodeCarbon {version}" if version else "CodeCarbon"


def _import_codecarbon() -> Any:
    try:
        import codecarbon
        from codecarbon.external.logger import set_logger_level
    except Exception as exc:  # a half-installed package raises anything from its imports
        raise CodeCarbonError(
            f"CodeCarbon is installed but cannot be imported ({type(exc).__name__}: {exc}). "
            f"Reinstall it: pip install --force-reinstall 'codecarbon=={codecarbon_version() or '3.3.2'}', "
            "or leave it out with backends=[...] / LET_BACKENDS.") from exc
    del set_logger_level
    _bypass_missing_scontrol()
    return codecarbon


#: Set when CodeCarbon's Slurm CPU lookup was bypassed; every measurement of the process says so.
slurm_note = ""


def _bypass_missing_scontrol() -> None:
    """CodeCarbon 3.3 asks ``scontrol show job`` for a Slurm job's CPUs and memory whenever
    ``SLURM_JOB_ID`` is set, and raises FileNotFoundError where ``scontrol`` is not on PATH
    (inside a container on a Slurm node): no estimate at all. Without ``scontrol`` it takes the
    machine's CPUs and memory instead, its own fallback when ``scontrol`` fails, and the row says so."""
    global slurm_note
    import shutil

    from codecarbon.core import util
    from codecarbon.external import ram

    job = getattr(util, "SLURM_JOB_ID", None)
    if job and shutil.which("scontrol") is None:
        # Both modules read their global at each call (ram imported the value by name).
        util.SLURM_JOB_ID = None
        ram.SLURM_JOB_ID = None
        slurm_note = (f"Slurm job {job} but no scontrol on PATH: CodeCarbon took the machine's "
                      f"{os.cpu_count()} CPUs and its whole memory, not the job's allocation")


def _quiet(level: str) -> None:
    # CodeCarbon logs while it is constructed ("offline tracker init", "Multiple instances ...
    # allowed"), before its own log_level argument takes effect; its logger is set first.
    from codecarbon.external.logger import set_logger_level

    set_logger_level(level)


def _unsuppressed(function: Callable[..., Any]) -> Callable[..., Any]:
    """CodeCarbon wraps __init__, start, stop and flush in ``@suppress(Exception)``, which logs
    and swallows every error. ``functools.wraps`` keeps the plain function as ``__wrapped__``;
    calling that gives LET the real exception to explain. Falls back to the wrapped one."""
    return getattr(function, "__wrapped__", function)


def explain(action: str, exc: BaseException) -> str:
    """What failed, in words, and what to do next."""
    version = methodology()
    kind = type(exc).__name__
    if "NVML" in kind or type(exc).__module__.startswith("pynvml"):
        return (f"{version} could not read the NVIDIA GPUs through NVML while {action} "
                f"({kind}: {exc}). Check that `nvidia-smi` works (driver loaded and matching "
                "the installed nvidia-ml-py); to measure without the GPUs, set "
                "CUDA_VISIBLE_DEVICES= (empty) or choose other backends with backends=[...].")
    if isinstance(exc, PermissionError):
        where = f" to {exc.filename}" if exc.filename else ""
        return (f"{version} was denied access{where} while {action} ({exc}). RAPL energy files "
                "under /sys/class/powercap are root-only on recent kernels: "
                "`sudo chmod -R a+r /sys/class/powercap/intel-rapl` lets CodeCarbon read them "
                "until the next reboot, or pass options={'codecarbon': {'force_cpu_power': <watts>}} "
                "to use a fixed CPU power instead.")
    if isinstance(exc, (ImportError, AttributeError)):
        return (f"{version} looks broken ({kind}: {exc}) while {action}. Reinstall it: "
                f"pip install --force-reinstall 'codecarbon=={codecarbon_version() or '3.3.2'}'.")
    return (f"{version} raised {kind}: {exc} while {action}. Rerun with log_level='debug' "
            "(or LET_LOG_LEVEL=debug) to see CodeCarbon's own log.")


# ----------------------------------------------------------------------------- start cost
_probe_lock = threading.Lock()
_probe_done = False


def _warm_hardware_probe() -> threading.Thread | None:
    """Start CodeCarbon's CPU-model probe in the background, once per process.

    Most of CodeCarbon's first start is py-cpuinfo running a child Python that sleeps a second
    to measure the clock. That child only waits, so LET lets it run while this thread imports
    the rest of CodeCarbon (pandas) and loads its CPU power table. CodeCarbon caches the CPU model
    (``detect_cpu_model`` is an ``lru_cache``) and, since 3.3, its whole hardware setup per
    process, so a second tracker in the same process pays neither again.
    """
    global _probe_done
    with _probe_lock:
        if _probe_done:
            return None
        _probe_done = True
    try:
        # Imported here, in the calling thread: two threads importing one package's modules
        # at once can deadlock on CodeCarbon's circular imports.
        import cpuinfo  # noqa: F401
        from codecarbon.core.util import detect_cpu_model
    except Exception:  # another CodeCarbon layout: its own start does the probing
        return None

    def probe() -> None:
        try:
            detect_cpu_model()
        except Exception:  # CodeCarbon's start will meet (and report) the same problem
            pass

    thread = threading.Thread(target=probe, name="let-codecarbon-probe", daemon=True)
    thread.start()
    return thread


def _preload() -> None:
    try:
        import codecarbon.core.resource_tracker  # noqa: F401  (imports pandas, psutil)
        from codecarbon.input import DataSource

        DataSource().get_cpu_power_data()
    except Exception:
        pass


# ----------------------------------------------------------------------------- the backend
def _clean(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def _extras(data: Any) -> dict[str, Any]:
    return {column: _clean(getattr(data, column)) for column in EXTRA_COLUMNS if hasattr(data, column)}


#: Zenodo's DOI of each CodeCarbon release LET knows; other versions are cited by their tag.
_ZENODO_DOIS: dict[str, str] = {"3.2.3": "10.5281/zenodo.18731928"}


def codecarbon_bibtex(versions: list[str]) -> str:
    """CodeCarbon's BibTeX entry for the versions used (oldest first): a version's own DOI where
    LET knows it, else its release on GitHub; never another version's DOI."""
    tags = ", ".join(f"v{v}" for v in versions)
    dois = [_ZENODO_DOIS[v] for v in versions if v in _ZENODO_DOIS]
    where = (f"  doi       = {{{dois[0]}}},\n  url       = {{https://doi.org/{dois[0]}}},"
             if len(versions) == 1 and dois
             else f"  url       = {{https://github.com/mlco2/codecarbon/releases/tag/v{versions[-1]}}},")
    return f"""@software{{codecarbon,
  author    = {{Courty, Benoît and
               Schmidt, Victor and
               Kamal, Goyal and
               others}},
  title     = {{mlco2/codecarbon: {tags}}},
  year      = 2025,
  publisher = {{Zenodo}},
  version   = {{{tags}}},
{where}
}}"""


class CodeCarbonBackend:
    """CodeCarbon's ``OfflineEmissionsTracker``: RAPL (or TDP times load) for the CPU, NVML for
    NVIDIA GPUs, a RAM power model; an estimate for the whole machine by default."""

    name: ClassVar[str] = NAME
    auto: ClassVar[bool] = True
    kind: ClassVar[str] = "estimate"
    scope: ClassVar[str] = SCOPE
    description: ClassVar[str] = ("CodeCarbon's estimate: RAPL or TDP x load (CPU), NVML (NVIDIA "
                                  "GPUs), a RAM model; offline, no files")
    #: What the paper statement cites for CodeCarbon's figures (the version LET was written
    #: against; ``citation_entries`` names the versions the cited runs used).
    citations: ClassVar[Mapping[str, str]] = {"codecarbon": codecarbon_bibtex(["3.2.3"])}

    @staticmethod
    def citation_entries(methodologies: list[str]) -> dict[str, str]:
        """The ``codecarbon`` entry for the CodeCarbon versions in these methodology labels
        ("CodeCarbon 3.3.2"), so that `lett cite` names the version the statement says."""
        versions = sorted({m.split(" ", 1)[1] for m in methodologies
                           if m.startswith("CodeCarbon ") and m.split(" ", 1)[1][:1].isdigit()},
                          key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
        return {"codecarbon": codecarbon_bibtex(versions)} if versions else {}


    def __init__(self, country_iso_code: str = "DEU", measure_power_secs: float = 1.0,
                 cuda_devices: tuple[str, ...] | None = None, pue: float | None = None,
                 log_level: str = "error", carbon_intensity: float | None = None,
                 codecarbon_options: Mapping[str, Any] | None = None,
                 country_name: str | None = None) -> None:
        options = dict(codecarbon_options or {})
        unknown = sorted(set(options) - USER_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"options['codecarbon'] has {', '.join(map(repr, unknown))}, which LET does not pass "
                f"to CodeCarbon; allowed: {', '.join(sorted(USER_OPTIONS))}. Country, interval, "
                "GPUs, PUE and log level are EnergyTracker arguments.")
        if options.get("tracking_mode", "machine") not in ("machine", "process"):
            raise ConfigurationError(
                f"options['codecarbon']['tracking_mode'] must be 'machine' or 'process', "
                f"got {options['tracking_mode']!r}")
        for key in ("force_cpu_power", "force_ram_power", "wue"):
            value = options.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ConfigurationError(
                    f"options['codecarbon']['{key}'] must be a number >= 0, got {value!r}")
        if not (isinstance(measure_power_secs, (int, float)) and measure_power_secs > 0):
            raise ConfigurationError(
                f"measure_power_secs must be a positive number of seconds, got {measure_power_secs!r}")
        self.country_iso_code = country_iso_code
        self.country_name = country_name
        self.measure_power_secs = float(measure_power_secs)
        self.cuda_devices = cuda_devices
        self.pue = pue
        self.log_level = log_level
        self.carbon_intensity = carbon_intensity
        self.options = options
        self.methodology = methodology()
        self._tracker: Any = None
        self._capture = _Capture(self)  # hands CodeCarbon's totals to this backend
        #: Where the hardware plan of the last new CodeCarbon tracker came from
        #: (codecarbon_plan.PROCESS, FILE or PROBE).
        self.plan_source = ""
        self._t0 = 0.0
        self._latest: Any = None  # the last total EmissionsData CodeCarbon handed to LET
        self._tasks: dict[str, tuple[float, Any]] = {}

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        if importlib.util.find_spec("codecarbon") is None:
            return Availability.no("CodeCarbon is not installed: pip install codecarbon")
        return Availability.yes(methodology())

    @classmethod
    def from_settings(cls, settings: Settings) -> CodeCarbonBackend:
        return cls(country_iso_code=settings.country_iso_code,
                   measure_power_secs=settings.measure_power_secs,
                   cuda_devices=settings.cuda_devices, pue=settings.pue,
                   log_level=settings.log_level, carbon_intensity=settings.carbon_intensity,
                   codecarbon_options=settings.options.get(NAME),
                   country_name=settings.country_name)

    # -------------------------------------------------------------------------- CodeCarbon
    def _tracker_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "country_iso_code": self.country_iso_code,
            "measure_power_secs": self.measure_power_secs,
            "log_level": self.log_level,
            # Nothing written or sent by CodeCarbon: LET's store keeps the row. Passed
            # explicitly so a ~/.codecarbon.config or CODECARBON_* variable cannot turn them on.
            "output_methods": [],
            "emissions_endpoint": None,
            "output_dir": ".",
            "output_handlers": [self._capture],
            # With any output handler CodeCarbon computes a full emissions record in its sampler
            # thread every api_call_interval samples, for live_out(), which LET does not use:
            # -1 turns that off (the figures at flush/stop are the same).
            "api_call_interval": -1,
            # No /tmp/.codecarbon.lock (unwritable /tmp, a stale lock of a killed process, and
            # its SIGINT/SIGTERM handlers would all get in the way); LET's store is process-safe.
            "allow_multiple_runs": True,
            "project_name": "let",
        }
        if self.cuda_devices is not None:
            kwargs["gpu_ids"] = list(self.cuda_devices)
        if self.pue is not None:
            kwargs["pue"] = self.pue
        if self.carbon_intensity is not None:
            kwargs["force_carbon_intensity_g_co2e_kwh"] = self.carbon_intensity
        kwargs.update(self.options)
        return kwargs

    def _new_tracker(self) -> Any:
        from let_backends import codecarbon_plan

        codecarbon = _import_codecarbon()
        _quiet(self.log_level)
        cls = codecarbon.OfflineEmissionsTracker
        tracker = cls.__new__(cls)
        try:
            # CodeCarbon 3.3 constructs without touching the hardware; the probe (or the
            # cached plan) comes at start(), so the plan can be seeded in between.
            _unsuppressed(cls.__init__)(tracker, **self._tracker_kwargs())
        except Exception as exc:
            raise CodeCarbonError(explain("setting up its tracker", exc)) from exc
        if self.country_name and getattr(tracker, "_country_name", "") is None:
            # CodeCarbon looks the country's name up in its energy-mix data, and that first
            # lookup loads all its data files, two CSVs through pandas (+pyarrow, ~40 MiB, ~0.3 s).
            # LET read the same name from the same file already.
            tracker._country_name = self.country_name
        self.plan_source = codecarbon_plan.seed(tracker)
        if self.plan_source == codecarbon_plan.PROBE:
            probe = _warm_hardware_probe()
            if probe is not None:
                _preload()
                probe.join()
        return tracker

    def _start_tracker(self, tracker: Any) -> None:
        try:
            _unsuppressed(type(tracker).start)(tracker)
        except Exception as exc:
            _silently_stop(tracker)
            raise CodeCarbonError(explain("starting", exc)) from exc
        if getattr(tracker, "_start_time", 0.0) is None:  # a suppressed failure in the fallback path
            raise CodeCarbonError(f"{self.methodology} did not start; rerun with log_level='debug' "
                                  "to see why in CodeCarbon's log.")

    def start(self) -> None:
        from let_backends import codecarbon_plan

        if self._tracker is not None:
            raise CodeCarbonError("the CodeCarbon backend is already running; stop() it first")
        self._latest = None
        self._tasks.clear()
        tracker = _take_idle(self._pool_key(), self)
        if tracker is not None:
            self.plan_source = codecarbon_plan.PROCESS
            self._start_tracker(tracker)
        else:
            tracker = self._new_tracker()
            try:
                self._start_tracker(tracker)
            except CodeCarbonError:
                if self.plan_source != codecarbon_plan.FILE:
                    raise
                # A stored plan that CodeCarbon cannot rebuild hardware from (new drivers, a
                # hand-edited file) is dropped and the hardware probed, never trusted.
                codecarbon_plan.forget(tracker)
                tracker = self._new_tracker()
                self._start_tracker(tracker)
            if self.plan_source == codecarbon_plan.PROBE:
                codecarbon_plan.save(tracker)
        self._tracker = tracker
        self._t0 = time.perf_counter()

    def stop(self) -> Measurement:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            raise CodeCarbonError("the CodeCarbon backend was stopped without being started")
        try:
            _unsuppressed(type(tracker).stop)(tracker)
        except Exception as exc:
            _silently_stop(tracker)
            raise CodeCarbonError(explain("stopping", exc)) from exc
        data = getattr(tracker, "final_emissions_data", None)
        if data is None:
            raise CodeCarbonError(f"{self.methodology} stopped without any data; rerun with "
                                  "log_level='debug' to see why in CodeCarbon's log.")
        _give_idle(self._pool_key(), tracker, self._capture)
        self._capture = _Capture(self)  # the old one now belongs to the idle tracker
        return self._measurement(data)

    def _pool_key(self) -> str:
        """Backends with equal settings can run each other's stopped CodeCarbon trackers."""
        kwargs = {k: v for k, v in self._tracker_kwargs().items() if k != "output_handlers"}
        return repr(sorted(kwargs.items())) + repr(self.country_name)

    def _measurement(self, data: Any) -> Measurement:
        extras = _extras(data)
        if slurm_note:
            extras["note"] = slurm_note
        return Measurement(
            backend=NAME, methodology=self.methodology, kind="estimate",
            energy_kwh=float(data.energy_consumed), duration_s=float(data.duration),
            scope=codecarbon_scope(str(data.gpu_model or "")),
            cpu_kwh=float(data.cpu_energy), gpu_kwh=float(data.gpu_energy),
            ram_kwh=float(data.ram_energy),
            hardware=hardware_from_codecarbon(str(data.cpu_model or ""), str(data.gpu_model or "")),
            extras=extras)

    def live(self) -> LiveReading:
        """CodeCarbon's running totals as its scheduler left them (at most one interval old).

        Only its attributes are read: no ``flush()``, no measurement from this thread, so the
        scheduler's sampling, and what the run records, stay exactly as without a reader.
        """
        tracker = self._tracker
        if tracker is None:
            raise CodeCarbonError("the CodeCarbon backend is not running")
        watts = sum(float(getattr(getattr(tracker, attr, None), "W", 0.0) or 0.0)
                    for attr in ("_cpu_power", "_gpu_power", "_ram_power"))
        total = getattr(tracker, "_total_energy", None)
        return LiveReading(backend=NAME, kind="estimate",
                           energy_kwh=float(getattr(total, "kWh", 0.0) or 0.0), power_w=watts)

    # -------------------------------------------------------------------------- tasks
    # CodeCarbon's own start_task/stop_task pause its scheduler and restart its clock: after a
    # task the run's duration counts from the task's start and the energy since the last
    # sample is lost (3.3.2: a 4 s run with a 1 s task reported 2.5 s and 12 % less energy).
    # LET instead takes two snapshots of the running totals with flush(), which measures up to
    # now and changes nothing; a task is their difference. Tasks may nest and repeat names.
    def _snapshot(self) -> tuple[float, Any]:
        tracker = self._tracker
        if tracker is None:
            raise CodeCarbonError("a CodeCarbon task needs the backend to be running")
        self._latest = None
        try:
            _unsuppressed(type(tracker).flush)(tracker)
        except Exception as exc:
            raise CodeCarbonError(explain("reading its running totals for a task", exc)) from exc
        if self._latest is None:
            raise CodeCarbonError(f"{self.methodology} returned no running totals for the task; "
                                  "rerun with log_level='debug' to see why.")
        return time.perf_counter(), self._latest

    def task_start(self, name: str) -> None:
        self._tasks[name] = self._snapshot()

    def task_stop(self, name: str) -> Measurement:
        t0, before = self._tasks.pop(name)
        t1, after = self._snapshot()
        elapsed = t1 - t0
        parts = {}
        for field in ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "water_consumed"):
            parts[field] = max(0.0, float(getattr(after, field)) - float(getattr(before, field)))
        extras = _extras(after)
        extras["water_consumed"] = parts["water_consumed"]
        for component in ("cpu", "gpu", "ram"):
            # Mean power over the task, from its own energy (CodeCarbon's are run averages).
            extras[f"{component}_power"] = (parts[f"{component}_energy"] * 3.6e6 / elapsed
                                            if elapsed > 0 else 0.0)
        return Measurement(
            backend=NAME, methodology=self.methodology, kind="estimate",
            energy_kwh=parts["energy_consumed"], duration_s=elapsed,
            scope=codecarbon_scope(str(after.gpu_model or "")),
            cpu_kwh=parts["cpu_energy"], gpu_kwh=parts["gpu_energy"], ram_kwh=parts["ram_energy"],
            hardware=hardware_from_codecarbon(str(after.cpu_model or ""), str(after.gpu_model or "")),
            extras=extras)


# Stopped CodeCarbon trackers of this process, by settings, for the next run that wants one: a
# tracker started again, the next call of a decorated function, or a new EnergyTracker with the
# same settings. Each waits with its output handler, which is pointed at the backend that takes it.
_idle_lock = threading.Lock()
_idle: dict[str, list[tuple[Any, _Capture]]] = {}
_MAX_IDLE_PER_KEY = 4


def _give_idle(key: str, tracker: Any, capture: _Capture) -> None:
    with _idle_lock:
        waiting = _idle.setdefault(key, [])
        if len(waiting) < _MAX_IDLE_PER_KEY:
            waiting.append((tracker, capture))


def _take_idle(key: str, backend: CodeCarbonBackend) -> Any:
    """A stopped tracker with these settings, rearmed for a new run and bound to ``backend``."""
    with _idle_lock:
        waiting = _idle.get(key)
        if not waiting:
            return None
        tracker, capture = waiting.pop()
    if not _rearm(tracker):
        return None
    capture._backend = backend
    backend._capture = capture
    return tracker


def _rearm(tracker: Any) -> bool:
    """Make a stopped CodeCarbon tracker ready for a new, independent run; False if it cannot be.

    CodeCarbon's own restart (``start()`` after ``stop()``) keeps adding to the previous run's
    totals and runs no sampler, since ``stop()`` drops its schedulers (3.3.2). A new tracker is
    correct but re-reads the config files and counts the physical CPUs with ``lscpu`` (about
    3 ms). This runs CodeCarbon's own initialisers of run state and schedulers, the ones its
    ``__init__`` runs, and keeps the hardware objects (``start()`` resets their readings), so the
    next run is measured exactly as by a new tracker on the same plan.
    """
    runtime = getattr(tracker, "_initialize_runtime_state", None)
    schedulers = getattr(tracker, "_initialize_scheduler_state", None)
    if not (callable(runtime) and callable(schedulers)) or getattr(tracker, "_start_time", 0) is not None:
        return False
    if not getattr(tracker, "_hardware_initialized", False):
        return False
    hardware = tracker._hardware
    try:
        runtime()
        schedulers()
    except Exception:
        return False
    tracker._hardware = hardware
    tracker._hardware_initialized = True
    tracker.final_emissions_data = None  # a run that fails to stop must not return the last one's
    return True


def _silently_stop(tracker: Any) -> None:
    """Stop CodeCarbon's sampling threads after a failure; its own suppressing stop() is right here."""
    try:
        tracker.stop()
    except Exception:
        pass


class _Capture:
    """A CodeCarbon output handler (its ``BaseOutput`` interface) that hands the totals to LET."""

    def __init__(self, backend: CodeCarbonBackend) -> None:
        self._backend = backend

    def out(self, total: Any, delta: Any) -> None:
        self._backend._latest = total

    def live_out(self, total: Any, delta: Any) -> None:
        pass

    def task_out(self, data: Any, experiment_name: str) -> None:
        pass

    def exit(self) -> None:
        pass


# ----------------------------------------------------------------------------- detection
def detect(cuda_devices: tuple[str, ...] | None = None, log_level: str = "error",
           refresh: bool = False) -> dict[str, Any]:
    """What CodeCarbon would measure here, without starting a measurement.

    ``plan_source`` says whether the hardware plan came from LET's cache file ("file") or from a
    probe ("probe"); ``refresh=True`` drops the stored plan first, so the hardware is probed again
    (and the new plan stored).
    """
    from let_backends import codecarbon_plan

    codecarbon = _import_codecarbon()
    _quiet(log_level)
    from codecarbon.core import cpu as cc_cpu

    kwargs: dict[str, Any] = {"country_iso_code": "DEU", "output_methods": [], "emissions_endpoint": None,
                              "output_dir": ".", "allow_multiple_runs": True, "log_level": log_level}
    if cuda_devices is not None:
        kwargs["gpu_ids"] = list(cuda_devices)
    cls = codecarbon.OfflineEmissionsTracker
    tracker = cls.__new__(cls)
    _unsuppressed(cls.__init__)(tracker, **kwargs)
    if refresh:
        codecarbon_plan.forget(tracker)
    source = codecarbon_plan.seed(tracker)
    info = dict(tracker.get_detected_hardware())
    if source == codecarbon_plan.PROBE:
        codecarbon_plan.save(tracker)
    cpu_mode = ""
    cpu_watts = None
    for device in getattr(tracker, "_hardware", []):
        if type(device).__name__ == "CPU":
            cpu_mode = str(getattr(device, "_mode", ""))
            cpu_watts = getattr(device, "_tdp", None)
    methods = {
        "intel_rapl": "RAPL energy counters (measured)",
        "cpu_load": "TDP estimate: TDP x CPU load",
        "constant": "TDP estimate: a constant share of TDP",
        "intel_power_gadget": "Intel Power Gadget (measured)",
        "apple_powermetrics": "powermetrics (measured)",
        "windows_emi": "Windows Energy Meter Interface (measured)",
    }
    info.update(
        methodology=methodology(),
        plan_source=source,
        plan_file=str(codecarbon_plan.plan_path(key)) if (key := codecarbon_plan.plan_key(tracker)) else "",
        cpu_method=methods.get(cpu_mode, cpu_mode or "unknown"),
        cpu_mode=cpu_mode,
        cpu_tdp_watts=cpu_watts,
        rapl_readable=bool(cc_cpu.is_rapl_available()),
        hardware=hardware_from_codecarbon(str(info.get("cpu_model") or ""), str(info.get("gpu_model") or "")),
    )
    return info


# ----------------------------------------------------------------------------- plugin hooks
@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(CodeCarbonBackend)


@hookimpl
def let_register_commands(cli: click.Group) -> None:
    import click

    @cli.command("detect")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option("--refresh", is_flag=True,
                  help="Probe the hardware again instead of using the stored plan (and store the new one).")
    def detect_command(as_json: bool, refresh: bool) -> None:
        """What CodeCarbon would measure on this machine (no run is started)."""
        import json

        if importlib.util.find_spec("codecarbon") is None:
            raise click.ClickException("CodeCarbon is not installed: pip install codecarbon")
        from let_core import config

        visible = config.cuda_visible_devices()
        devices = None if visible is None else tuple(visible)
        try:
            info = detect(devices, log_level=(config.log_level_env() or "error").lower(),
                          refresh=refresh)
        except Exception as exc:
            raise click.ClickException(explain("detecting the hardware", exc)) from exc
        if as_json:
            click.echo(json.dumps(info, indent=2, default=str))
            return
        tdp = info.get("cpu_tdp_watts")
        click.echo(f"Methodology: {info['methodology']}")
        click.echo(f"CPU:         {info.get('cpu_model') or 'unknown'} "
                   f"({info.get('cpu_count')} threads)")
        click.echo(f"CPU method:  {info['cpu_method']}" + (f", {tdp} W" if tdp and info['cpu_mode'] != 'intel_rapl' else ""))
        if not info["rapl_readable"] and info["cpu_mode"] != "intel_rapl":
            click.echo("             (no readable RAPL files under /sys/class/powercap)")
        click.echo(f"GPUs:        {info.get('gpu_model') or 'none'}"
                   + (f" ({info.get('gpu_count')})" if info.get("gpu_count") else ""))
        ram = info.get("ram_total_size")
        click.echo(f"RAM:         {ram:.1f} GB (CodeCarbon's RAM power model)" if ram else "RAM: unknown")
        plan = {"file": f"cached, from {info['plan_file']} (`lett detect --refresh` probes again)",
                "process": "reused from an earlier tracker in this process",
                "probe": "probed now" + (f", stored in {info['plan_file']}" if info["plan_file"] else
                                         " (this CodeCarbon has no plan cache; every process probes)")}
        click.echo(f"Plan:        {plan.get(info['plan_source'], info['plan_source'])}")
