"""``EnergyTracker`` and ``@track_energy``: start every backend, run the user's code, record it."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar, overload

from let_core import config
from let_core.errors import BackendUnavailable, ConfigurationError, LetError, LetWarning
from let_core.interfaces import Backend, Reporter, Settings
from let_core.records import MAX_ENERGY_KWH, Measurement, Run

if TYPE_CHECKING:
    from pathlib import Path

    from let_core.attribution import ProcessShare
    from let_core.jobs import Job
    from let_core.live import LiveStatus
    from let_core.livedir import LivePublisher
    from let_core.nodemeter import DeadLeader, Leadership
    from let_core.plugins import PluginKind
    from let_core.recovery import RunHeader

F = TypeVar("F", bound=Callable[..., Any])

AUTO = "auto"


def new_run_id() -> str:
    """A random (version 4) UUID in its usual text form, as ``str(uuid.uuid4())`` gives.

    Built from ``os.urandom`` like ``uuid.uuid4`` itself: importing ``uuid`` also imports
    ``platform`` and ``ctypes`` helpers, a millisecond of every tracked run's start-up.
    """
    value = int.from_bytes(os.urandom(16), "big")
    value = (value & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class EnergyTracker:
    """Measure the energy of a block of code with every usable backend and record it.

    >>> with EnergyTracker(project_name="my-paper") as tracker:
    ...     train()

    The headline of a run (``stop()["energy_consumed"]``, ``"emissions"``, ``"tracking_mode"``)
    is metered where any backend metered the run (a smart socket, RAPL/NVML counters), else the
    estimates; measurements of overlapping scope are never added (``records.primary_measurements``).
    Each backend's own figure is under ``stop()["measurements"][backend]["energy_consumed"]``.
    ``lamarr_energy_tracker.EnergyTracker`` keeps LET 0.1.x's rule instead: CodeCarbon's estimate.
    """

    def __init__(
        self,
        project_name: str = "default",
        output_dir: str | os.PathLike[str] | None = None,
        country_iso_code: str | None = None,
        carbon_intensity: float | None = None,
        backends: Sequence[str | Backend] | str | None = None,
        reporters: Sequence[str | Reporter] | str | None = None,
        measure_power_secs: float = 1,
        cuda_devices: Sequence[int | str] | None = None,
        pue: float | None = None,
        log_level: str | None = None,
        options: Mapping[str, Any] | None = None,
        attribution: str | None = None,
    ) -> None:
        #: "process": beside each machine or CPU figure, also record the share of this process
        #: tree (``let_core.attribution``); ``LET_ATTRIBUTION`` when not given.
        self.attribution = (config.validate_attribution(attribution) if attribution is not None
                            else config.attribution_env() or "none")
        self.settings = Settings.resolve(project_name, output_dir, country_iso_code,
                                         carbon_intensity, measure_power_secs, cuda_devices, pue,
                                         log_level, options)
        _check_option_keys(self.settings.options)
        self.project_name = self.settings.project_name
        self.user = self.settings.user
        self.hostname = self.settings.hostname
        self.output_dir = self.settings.output_dir
        # Backends this tracker built from names hold resources (NVML, a jtop connection) that
        # it releases in close(), or when it is garbage collected; objects passed in stay the caller's.
        self._owned_backends: list[Backend] = []
        self.backends: list[Backend] = self._resolve_backends(backends)
        self._finalizer = weakref.finalize(self, _close_backends, tuple(self._owned_backends))
        self.reporters: list[Reporter] = self._resolve_reporters(reporters)
        self._running = False
        self._started: dict[str, Backend] = {}
        self._start_errors: dict[str, str] = {}
        self._tasks: set[str] = set()
        self._metrics: dict[str, Any] = {}
        self._params: dict[str, Any] = {}
        self._run_id = ""
        self._start_time = _now()
        self._t0 = 0.0
        self._environment: dict[str, str] = {}
        self._leadership: Leadership | None = None
        self._job: Job | None = None
        self._rank_file: Path | None = None
        self._delegated: dict[str, str] = {}
        self._share: ProcessShare | None = None
        self._publisher: LivePublisher | None = None
        self.last_run: Run | None = None
        self._last_result: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------- settings
    @staticmethod
    def _spec_items(spec: Sequence[Any] | str | None, env_var: str) -> list[Any]:
        if spec is None:
            return config.env_list(env_var) or [AUTO]
        if isinstance(spec, str):
            return [s.strip() for s in spec.split(",") if s.strip()]
        return list(spec)

    def _auto_factories(self, kind: PluginKind) -> list[Any]:
        """Registered plugins of a kind that are on by default, or given settings in
        ``options`` (``{"manual": {...}}`` asks for that backend), and available here."""
        from let_core.plugins import auto_factories, get_factory

        chosen = auto_factories(kind)
        names = {r.name for r in chosen}
        chosen += [get_factory(kind, name) for name in self.settings.options
                   if name not in names and _is_plugin(kind, name)]
        factories = []
        for registered in chosen:
            try:
                available = registered.factory.availability(self.settings).available
            except Exception as exc:  # a plugin's broken check must not stop tracking
                warnings.warn(f"LET {kind} {registered.name!r}: availability check failed ({exc}); "
                              "it is left out.", LetWarning, stacklevel=4)
                continue
            if available:
                factories.append(registered.factory)
        return factories

    def _named_factory(self, kind: PluginKind, name: str) -> Any:
        from let_core.plugins import get_factory

        factory = get_factory(kind, name).factory
        availability = factory.availability(self.settings)
        if not availability.available:
            error = BackendUnavailable if kind == "backend" else ConfigurationError
            raise error(f"{kind} {name!r} is not available here: {availability.reason}")
        return factory

    def _resolve_backends(self, spec: Sequence[str | Backend] | str | None) -> list[Backend]:
        items = self._spec_items(spec, "LET_BACKENDS")
        backends: list[Backend] = []
        for item in items:
            if item == AUTO:
                taken = {_name_of(b) for b in backends}
                created = [f.from_settings(self.settings) for f in self._auto_factories("backend")
                           if f.name not in taken]
                backends.extend(created)
                self._owned_backends.extend(created)
                if items == [AUTO] and not backends:
                    warnings.warn("no energy backend is usable here, so nothing is measured; "
                                  "`lett plugins` says why each one is unavailable.",
                                  LetWarning, stacklevel=3)
            elif isinstance(item, str):
                backends.append(self._named_factory("backend", item).from_settings(self.settings))
                self._owned_backends.append(backends[-1])
            elif callable(getattr(item, "start", None)) and callable(getattr(item, "stop", None)):
                backends.append(item)
            else:
                raise ConfigurationError(
                    f"backends entries are backend names (see `lett plugins`) or backend objects "
                    f"with start() and stop(); got {item!r}")
        names = [_name_of(b) for b in backends]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"backend(s) {', '.join(duplicates)} given more than once")
        return backends

    def _resolve_reporters(self, spec: Sequence[str | Reporter] | str | None) -> list[Reporter]:
        ranked: list[tuple[int, int, Reporter]] = []
        for position, item in enumerate(self._spec_items(spec, "LET_REPORTERS")):
            if item == AUTO:
                ranked.extend((f.order, position, f.from_settings(self.settings))
                              for f in self._auto_factories("reporter"))
            elif isinstance(item, str):
                factory = self._named_factory("reporter", item)
                ranked.append((factory.order, position, factory.from_settings(self.settings)))
            elif callable(getattr(item, "report", None)):
                ranked.append((getattr(item, "order", 50), position, item))
            else:
                raise ConfigurationError(
                    f"reporters entries are reporter names (see `lett plugins`) or objects with "
                    f"report(run); got {item!r}")
        ranked.sort(key=lambda entry: (entry[0], entry[1]))
        reporters: list[Reporter] = []
        for _, _, reporter in ranked:  # "auto" plus a name it already covers: keep one
            if _name_of(reporter) not in {_name_of(r) for r in reporters}:
                reporters.append(reporter)
        return reporters

    # ----------------------------------------------------------------------------- running
    @property
    def running(self) -> bool:
        return self._running

    @property
    def run_id(self) -> str:
        return self._run_id

    def __enter__(self) -> EnergyTracker:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.stop()
        else:
            self._stop(status="failed", error=f"{type(exc).__name__}: {exc}")

    def start(self) -> EnergyTracker:
        """Start a new run on every backend. A backend that fails to start is a warning."""
        if self._running:
            raise LetError("this tracker is already running; call stop() before starting it again")
        live_interval = config.live_interval()  # a bad value fails before any backend starts
        self._run_id = new_run_id()
        self._started.clear()
        self._start_errors.clear()
        self._metrics = {}
        self._params = {}
        self._environment = self._join_job()
        if self.attribution == "process":
            from let_core.attribution import ProcessShare

            self._share = ProcessShare(self.settings.measure_power_secs, more_roots=self._launch_ranks())
            self._share.follow(self.backends)
            self._share.start()
        for backend in self.backends:
            name = _name_of(backend)
            if name in self._delegated:
                continue
            try:
                backend.start()
            except Exception as exc:
                self._start_errors[name] = f"failed to start: {type(exc).__name__}: {exc}"
                warnings.warn(f"LET backend {name!r} failed to start ({exc}); the run goes on "
                              "without it.", LetWarning, stacklevel=2)
            else:
                self._started[name] = backend
        # Stamped after the backends started: a backend's own start-up (CodeCarbon probes the
        # hardware for a second) is not part of the experiment.
        self._start_time = _now()
        self._t0 = time.perf_counter()
        self._running = True
        self._publish_live(live_interval)
        return self

    def _publish_live(self, interval: float) -> None:
        """While it runs, the run's live figures are in the node's runtime dir, where `lett
        exporter` (and a follower rank whose leader died) read them: no port per process.
        Beside them, from the first publication on, what a run record needs, so that the run
        is kept if this process dies (``let_core.recovery``); runs of this node that died so
        are recorded now."""
        if interval <= 0:
            return
        from let_core import livedir

        runtime = config.runtime_dir()
        if livedir.holds_headers(runtime):
            from let_core import recovery

            try:
                recovery.recover_dead_runs(runtime, self.settings.hostname)
            except Exception as exc:  # another's store that cannot be written: never this run's problem
                warnings.warn(f"LET could not record a run that died on this node ({type(exc).__name__}: {exc}); "
                              f"its files stay in {runtime}.", LetWarning, stacklevel=3)
        self._publisher = livedir.LivePublisher(self, runtime, interval, write_header=self._write_header).start()

    def _write_header(self, path: Path) -> Path:
        """(From the publisher's thread, before the run's first figures.)"""
        from let_core.recovery import write_header

        return write_header(path, self._run_header())

    def _run_header(self) -> RunHeader:
        from let_core.jobs import boot_id
        from let_core.recovery import RunHeader

        s = self.settings
        return RunHeader(
            pid=os.getpid(), boot=boot_id(), run_id=self._run_id, hostname=s.hostname, project=s.project_name,
            user=s.user, output_dir=str(s.output_dir), start=self._start_time.timestamp(),
            country_iso_code=s.country_iso_code, country_name=s.country_name, carbon_intensity=s.carbon_intensity,
            environment=dict(self._environment),
            backends={name: {"kind": str(getattr(b, "kind", "") or ""), "scope": str(getattr(b, "scope", "") or "system"),
                             "methodology": str(getattr(b, "methodology", "") or ""),
                             "hardware": str(getattr(b, "hardware", "") or "")}
                      for name, b in self._started.items()})

    def stop(self, print_summary: bool | None = None, *, status: str = "ok", error: str = "") -> dict[str, Any]:
        """Stop the run, record it and return its result. Calling it again returns the same result.

        ``print_summary=False`` skips the printed statement for this run (LET 0.1.x's flag).
        ``status="failed"`` with an ``error`` text records a run that did not succeed (``lett run``
        records a command's exit status this way).
        """
        if status not in ("ok", "failed"):
            raise ConfigurationError(f"status must be 'ok' or 'failed', got {status!r}")
        return self._stop(status=status, error=error, print_summary=print_summary)

    def _stop(self, status: str, error: str, print_summary: bool | None = None) -> dict[str, Any]:
        if not self._running:
            if self._last_result is None:
                raise LetError("this tracker was never started; call start() or use it as a context manager")
            return self._last_result
        publisher, self._publisher = self._publisher, None
        if publisher is not None:  # before the backends stop: no reading of a stopping backend
            publisher.stop()
        header = publisher.header if publisher is not None else None
        measurements = self._stop_backends(self._t0)
        self._running = False
        end_time = self._start_time + timedelta(seconds=time.perf_counter() - self._t0)
        run = self._make_run(self._run_id, self._start_time, end_time, status, error, measurements)
        self.last_run = run
        self._record(run)
        if header is not None:  # recorded: nothing to recover if this process dies now
            with contextlib.suppress(OSError):
                header.unlink()
        self._report(run, print_summary=print_summary is not False)
        self._last_result = run.result()
        return self._last_result

    def _join_job(self) -> dict[str, str]:
        """The launcher's job fields; in a launch of several ranks, one process per node runs
        the node-level backends and the others leave them to it (``let_core.nodemeter``)."""
        from let_core import jobs

        job = jobs.detect()
        fields = job.fields()
        self._delegated = {}
        self._job = job
        if job.multi_rank:
            from let_core import nodemeter

            leadership = nodemeter.elect_node_leader(job, config.runtime_dir(), self.settings.hostname, self._run_id)
            self._leadership = leadership
            fields["node_meter"] = leadership.note
            if leadership.leader and leadership.previous is not None:
                # Taken over from a leader that died (an elastic restart of the launch): its
                # figures so far are recorded before this rank measures the node anew.
                dead = nodemeter.dead_leader(job, config.runtime_dir(), self.settings.hostname,
                                             holder=leadership.previous, fd=leadership.fd)
                if dead is not None:
                    self._record_dead_leader(dead)
            if not leadership.leader:
                from let_core.records import shared_by_ranks

                self._delegated = {_name_of(b): leadership.note for b in self.backends
                                   if shared_by_ranks(str(getattr(b, "scope", "system")))}
                if self.attribution == "process":  # (the launch's ranks share one setting)
                    self._rank_file = nodemeter.register_rank(job, config.runtime_dir(), self.settings.hostname)
        return fields

    def _launch_ranks(self) -> Callable[[], list[int]] | None:
        """For a node's leader: the other ranks of its launch here, whose process trees its
        share of the node takes in (the node's figure is the leader's for all of them)."""
        job, leadership = self._job, self._leadership
        if job is None or leadership is None or not leadership.leader:
            return None
        from let_core import nodemeter

        runtime, hostname = config.runtime_dir(), self.settings.hostname
        return lambda: nodemeter.rank_pids(job, runtime, hostname)

    def _record_dead_leader(self, dead: DeadLeader) -> str:
        """Record what a node leader that died had published of its run (``recovery``), once.
        Returns what this rank's rows say of it."""
        from let_core.livedir import header_path
        from let_core.recovery import recover

        try:
            run = recover(header_path(dead.path), self.settings.hostname)
        except Exception as exc:  # this rank's own run is recorded whatever happens here
            warnings.warn(f"LET could not record the figures of the node leader that died "
                          f"({type(exc).__name__}: {exc}).", LetWarning, stacklevel=4)
            run = None
        finally:
            dead.done()
        return f"{dead.note}; recorded as its run {run.run_id[:8]}" if run is not None else dead.note

    def _stop_backends(self, t0: float) -> list[Measurement]:
        measurements: list[Measurement] = []
        died = ""
        if self._delegated and self._leadership is not None and self._job is not None:
            from let_core import nodemeter

            dead = nodemeter.dead_leader(self._job, config.runtime_dir(), self.settings.hostname)
            if dead is not None:
                died = "; " + self._record_dead_leader(dead)
        for backend in self.backends:
            name = _name_of(backend)
            if name in self._delegated:
                # Recorded, not counted: the row says whose figure covers this rank's node.
                measurements.append(Measurement.failed(name, f"not measured by this rank: {self._delegated[name]}{died}",
                                                       duration_s=time.perf_counter() - t0))
                continue
            if name in self._start_errors:
                measurements.append(Measurement.failed(name, self._start_errors[name],
                                                       duration_s=time.perf_counter() - t0))
                continue
            try:
                measurement = backend.stop()
            except Exception as exc:
                message = f"failed to stop: {type(exc).__name__}: {exc}"
                warnings.warn(f"LET backend {name!r} {message}; the run is recorded without it.",
                              LetWarning, stacklevel=3)
                measurement = Measurement.failed(name, message, duration_s=time.perf_counter() - t0)
            measurements.append(validated(measurement, name, time.perf_counter() - t0))
        if self._leadership is not None:
            self._leadership.release()
            self._leadership = None
        if self._rank_file is not None:
            with contextlib.suppress(OSError):
                self._rank_file.unlink()
            self._rank_file = None
        if self._share is not None:
            measurements.extend(self._share.stop(measurements))
            self._share = None
        return measurements

    def _record(self, run: Run) -> None:
        """Append the run to the central store: the system of record, written by the core
        itself before any reporter, whatever reporters are chosen. An unwritable store never
        loses the run: it goes to a rescue file, and the warning says how to add it later."""
        from let_core._version import __version__
        from let_core.errors import StoreError
        from let_core.store import Store

        try:
            Store(self.settings.output_dir).append(run.rows(__version__))
        except StoreError as exc:
            # The store has already kept the run in its rescue file; the message says where
            # and how to put it back (`lett doctor --repair`).
            warnings.warn(str(exc), LetWarning, stacklevel=4)

    def _make_run(self, run_id: str, start: datetime, end: datetime, status: str, error: str,
                  measurements: list[Measurement], task: str = "") -> Run:
        s = self.settings
        return Run(
            run_id=run_id, project_name=s.project_name, user=s.user, hostname=s.hostname,
            start_time=start, end_time=end, status=status,  # type: ignore[arg-type]
            measurements=tuple(measurements), country_iso_code=s.country_iso_code,
            country_name=s.country_name, carbon_intensity=s.carbon_intensity, task=task,
            parent_run_id=self._run_id if task else "", metrics=self._metrics,
            params=self._params, environment=self._environment, error=error,
        )

    def _report(self, run: Run, print_summary: bool = True) -> None:
        from let_core.results.loading import ResultsHandle

        results = ResultsHandle(self.settings.output_dir, self.settings.output_uri)
        for reporter in self.reporters:
            name = _name_of(reporter)
            # print_summary=False (LET 0.1.x's flag) silences reporters that print, whatever their name.
            if not print_summary and getattr(reporter, "prints", False):
                continue
            try:
                if _takes_results(reporter):
                    reporter.report(run, results=results)  # type: ignore[call-arg]
                else:
                    reporter.report(run)
            except Exception as exc:
                # A reporter never costs the user the run: the result is still returned, the
                # run is already in the central store, and the other reporters still run.
                warnings.warn(f"LET reporter {name!r} failed for run {run.run_id}: "
                              f"{type(exc).__name__}: {exc}", LetWarning, stacklevel=4)

    def close(self) -> None:
        """Stop a running run, then release what the backends hold. The tracker is done after this."""
        if self._running:
            self.stop()
        self._finalizer()

    # ----------------------------------------------------------------------------- extras
    @contextlib.contextmanager
    def task(self, name: str) -> Iterator[None]:
        """Record the energy of part of a run (an epoch, an evaluation) as its own linked row.

        Backends that can read their counters cheaply take part (``task_start``/``task_stop``).
        """
        if not self._running:
            raise LetError("tracker.task() needs a running tracker; use it inside `with EnergyTracker(...)`")
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"a task needs a non-empty name, got {name!r}")
        if name in self._tasks:
            raise ConfigurationError(f"task {name!r} is already running in this run")
        capable = {n: b for n, b in self._started.items() if callable(getattr(b, "task_start", None))}
        failed: dict[str, str] = {}
        for backend_name, backend in capable.items():
            try:
                backend.task_start(name)  # type: ignore[attr-defined]
            except Exception as exc:
                failed[backend_name] = f"task failed to start: {type(exc).__name__}: {exc}"
        self._tasks.add(name)
        start, t0 = _now(), time.perf_counter()
        status, error = "ok", ""
        try:
            yield
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._tasks.discard(name)
            measurements = []
            for backend_name, backend in capable.items():
                if backend_name in failed:
                    measurements.append(Measurement.failed(backend_name, failed[backend_name]))
                    continue
                try:
                    measurement = backend.task_stop(name)  # type: ignore[attr-defined]
                except Exception as exc:
                    measurement = Measurement.failed(
                        backend_name, f"task failed to stop: {type(exc).__name__}: {exc}")
                measurements.append(validated(measurement, backend_name, time.perf_counter() - t0))
            end = start + timedelta(seconds=time.perf_counter() - t0)
            if measurements:
                run = self._make_run(new_run_id(), start, end, status, error, measurements, task=name)
                self._record(run)
                self._report(run)

    def _check_open(self, what: str) -> None:
        if not self._running and self.last_run is not None:
            # The run is recorded already; silently keeping the values would lose them.
            raise LetError(f"{what}() after stop(): run {self.last_run.run_id} is already recorded, so "
                           f"these values would be lost. Call {what}() before stop() (inside the "
                           "`with` block), or pass metrics= to @track_energy.")

    def live(self) -> LiveStatus:
        """The run so far, per backend (current power, energy since start), without stopping it.

        Backends without ``live()`` are left out; one whose reading fails appears with its
        error. Reading changes nothing the run records.
        """
        from let_core.live import read_live

        if not self._running:
            raise LetError("tracker.live() needs a running tracker; call start() first")
        return read_live(self._started, time.perf_counter() - self._t0)

    def set_job(self, job_id: str, rank: int | str | None = None) -> None:
        """Record the running run as one rank of a multi-process job, so that `lett results --by
        job` and the statement count the job once. Launchers such as torchrun and SLURM are
        recognised from the environment; this is for the others (Lightning's own DDP spawn)."""
        if not self._running:
            raise LetError("set_job() needs a running tracker; call it after start()")
        if not isinstance(job_id, str) or not job_id.strip():
            raise ConfigurationError(f"job_id must be a non-empty string, got {job_id!r}")
        self._environment = {**self._environment, "job_id": job_id}
        if rank is not None:
            self._environment["rank"] = str(rank)

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Attach quality metrics (accuracy, loss, ...) to the current run (before ``stop()``)."""
        self._check_open("log_metrics")
        for key, value in dict(metrics).items():
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"metric names are non-empty strings, got {key!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigurationError(f"metric {key!r} must be a finite number, got {value!r}")
            self._metrics[key] = float(value)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Attach descriptive parameters (model, dataset, task, environment, n_samples, ...)."""
        self._check_open("log_params")
        for key, value in dict(params).items():
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"parameter names are non-empty strings, got {key!r}")
            self._params[key] = value if isinstance(value, (int, float, str, bool)) else str(value)

    @property
    def results(self) -> Any:
        """Every stored run of this project, user and host (a DataFrame), as in LET 0.1.x."""
        from let_core.results import load_results

        return load_results(self.output_dir, self.project_name, self.user, self.hostname)

    @property
    def last_result(self) -> dict[str, Any] | None:
        return self._last_result




def validated(measurement: Any, name: str, duration_s: float) -> Measurement:
    """A backend's result as the core accepts it, whatever plugin produced it: energies finite,
    non-negative and below ``MAX_ENERGY_KWH``, coverage within 0..1. Anything else is recorded
    as a failed measurement with the reason (a warning says so), never counted."""
    if not isinstance(measurement, Measurement):
        problem = f"returned {type(measurement).__name__}, not a Measurement"
        warnings.warn(f"LET backend {name!r} {problem}; the run is recorded without it.", LetWarning, stacklevel=4)
        return Measurement.failed(name, problem, duration_s=duration_s)
    if measurement.error:
        return measurement
    problems = []
    for field_name in ("energy_kwh", "cpu_kwh", "gpu_kwh", "ram_kwh"):
        value = getattr(measurement, field_name)
        if value is None and field_name != "energy_kwh":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{field_name} is {value!r}, not a number")
        elif not math.isfinite(value) or value < 0:
            problems.append(f"{field_name} is {value!r}; energy must be finite and non-negative")
        elif value > MAX_ENERGY_KWH:
            problems.append(f"{field_name} is {value!r} kWh, above the sanity bound of {MAX_ENERGY_KWH:g} kWh")
    coverage = measurement.coverage
    if coverage is not None and (isinstance(coverage, bool) or not isinstance(coverage, (int, float))
                                 or not 0 <= coverage <= 1):
        problems.append(f"coverage is {coverage!r}, not a fraction between 0 and 1")
    if problems:
        reason = "invalid measurement: " + "; ".join(problems)
        warnings.warn(f"LET backend {name!r} gave an {reason}; it is recorded as failed and not counted.",
                      LetWarning, stacklevel=4)
        return Measurement.failed(measurement.backend or name, reason, methodology=measurement.methodology,
                                  kind=measurement.kind, duration_s=duration_s, hardware=measurement.hardware)
    if coverage is not None and coverage < 1:
        from let_core.results.counting import MIN_COVERAGE

        note = (" Below half of the run, it is not presented as metered; the estimate is counted instead."
                if coverage < MIN_COVERAGE else " The statement says so.")
        warnings.warn(f"LET backend {name!r} metered only {math.floor(coverage * 100)}% of the run "
                      f"({measurement.gap_count} gap(s), {measurement.gap_seconds:.1f} s interpolated).{note}",
                      LetWarning, stacklevel=4)
    return measurement


def _takes_results(reporter: Any) -> bool:
    """Whether ``reporter.report`` accepts the read handle (``report(run, results=...)``)."""
    code = getattr(getattr(reporter.report, "__func__", reporter.report), "__code__", None)
    return code is not None and "results" in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]


def _close_backends(backends: tuple[Backend, ...]) -> None:
    for backend in backends:
        close = getattr(backend, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # releasing must never raise into the user's program
                warnings.warn(f"LET backend {_name_of(backend)!r} failed to close: {exc}", LetWarning, stacklevel=2)


def _is_plugin(kind: PluginKind, name: str) -> bool:
    from let_core.errors import PluginError
    from let_core.plugins import get_factory

    try:
        get_factory(kind, name)
    except PluginError:
        return False
    return True


def _check_option_keys(options: Mapping[str, Any]) -> None:
    """Every ``options`` key names a backend or reporter: a typo ("manaul") would otherwise
    leave the settings unused and the run measured by something else, silently."""
    unknown = [key for key in options
               if not (isinstance(key, str) and (_is_plugin("backend", key) or _is_plugin("reporter", key)))]
    if unknown:
        import difflib

        from let_core.plugins import registry

        known = sorted({*registry().backends, *registry().reporters})
        hints = [f"did you mean {close[0]!r} for {key!r}?" for key in unknown
                 if (close := difflib.get_close_matches(str(key), known, n=1))]
        raise ConfigurationError(
            f"options key(s) {', '.join(map(repr, unknown))} name no backend or reporter; "
            f"known backends: {', '.join(sorted(registry().backends))}; reporters: "
            f"{', '.join(sorted(registry().reporters))}" + (f"; {' '.join(hints)}" if hints else ""))


def _name_of(plugin: Any) -> str:
    return str(getattr(plugin, "name", type(plugin).__name__))


@overload
def track_energy(func: F, /) -> F: ...


@overload
def track_energy(func: None = None, /, *, metrics: Callable[[Any], Mapping[str, Any]] | None = None,
                 **tracker_options: Any) -> Callable[[F], F]: ...


def track_energy(func: Callable[..., Any] | None = None, /, *,
                 metrics: Callable[[Any], Mapping[str, Any]] | None = None,
                 **tracker_options: Any) -> Any:
    """Track every call of a function (plain or ``async``) as a run.

    ``@track_energy`` or ``@track_energy(project_name=..., backends=..., reporters=...,
    output_dir=..., metrics=lambda result: {"accuracy": result.acc})``. The options are
    checked when decorating, so a typo fails at import time, not after the experiment.
    """
    import inspect  # 4 ms at import time; only decorators need it

    try:
        inspect.signature(EnergyTracker).bind(**tracker_options)
    except TypeError as exc:
        raise ConfigurationError(f"track_energy: {exc}; it takes EnergyTracker's options and metrics=") from None

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        pool = _TrackerPool(tracker_options)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracker = pool.acquire()
                try:
                    with tracker:
                        result = await fn(*args, **kwargs)
                        if metrics is not None:
                            tracker.log_metrics(metrics(result))
                finally:
                    pool.release(tracker)
                return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracker = pool.acquire()
            try:
                with tracker:
                    result = fn(*args, **kwargs)
                    if metrics is not None:
                        tracker.log_metrics(metrics(result))
            finally:
                pool.release(tracker)
            return result

        return wrapper

    return decorate(func) if func is not None else decorate


class _TrackerPool:
    """The trackers of one decorated function, reused across its calls.

    A stopped tracker starts again as a new run, and its backends keep what is costly to set up
    (CodeCarbon's tracker, an NVML handle). Calls that overlap (threads, recursion, tasks) each
    take their own tracker; at most ``keep`` idle ones are kept, the rest are closed.
    """

    def __init__(self, options: Mapping[str, Any], keep: int = 4) -> None:
        self._options = dict(options)
        self._idle: list[EnergyTracker] = []
        self._keep = keep
        self._lock = threading.Lock()

    def acquire(self) -> EnergyTracker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return EnergyTracker(**self._options)

    def release(self, tracker: EnergyTracker) -> None:
        if tracker.running:  # a failure between start and stop: never hand out a running tracker
            tracker.close()
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(tracker)
                return
        tracker.close()
