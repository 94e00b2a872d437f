"""The ``tasmota`` backend: the whole machine's energy at the wall, from the ground-truth server."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from let_backends.tasmota.config import NOT_CONFIGURED, ServerLocation, client_hostname, server_location
from let_core.errors import ConfigurationError, LetError, LetWarning
from let_core.interfaces import Availability, LiveReading, Settings
from let_core.records import Measurement
from let_core.results.calibration import LOW_POWER_W, low_power

METHODOLOGY = "Tasmota smart socket"
# The validation study of CodeCarbon against wall measurements: what ground truth is cited with.
AI_ENERGY_VALIDATION = """@misc{ai_energy_validation,
  title  = {Ground-Truthing {AI} Energy Consumption: {Validating} {CodeCarbon} Against External Measurements},
  author = {Raphael Fischer},
  year   = {2025},
  doi    = {10.48550/arXiv.2509.22092},
  url    = {https://arxiv.org/abs/2509.22092},
}"""
#: The availability check runs whenever a tracker picks "auto" backends: keep it short.
AVAILABILITY_TIMEOUT_S = 1.5


def _hostname(settings: Settings) -> str:
    return client_hostname(settings.hostname)


def _warn_once(message: str) -> None:
    """One line on stderr at start: the server was configured, so its absence is news."""
    warnings.warn(message, LetWarning, stacklevel=2)


class TasmotaBackend:
    """Wall-socket energy of this computer, metered by a smart socket behind a LET ground-truth
    server (``lett gt serve``). Each run (and each task) is one server session.

    Its ``Measurement`` carries ``coverage`` (the fraction of the run the socket's counter actually
    metered), ``gap_count`` and ``gap_seconds`` (the interpolated intervals: socket silent or
    rebooted, counter reset, implausible readings, a server lost before stop)."""

    name: ClassVar[str] = "tasmota"
    #: How its figures read in the statement, and what the statement cites for them.
    statement_phrases: ClassVar[Mapping[str, str]] = {METHODOLOGY: "Tasmota smart sockets at the wall"}
    citations: ClassVar[Mapping[str, str]] = {"ai_energy_validation": AI_ENERGY_VALIDATION}
    auto: ClassVar[bool] = True
    description: ClassVar[str] = "metered energy at the wall socket (Tasmota smart socket via `lett gt serve`)"

    def __init__(self, location: ServerLocation, hostname: str, label: str = "") -> None:
        from let_backends.tasmota.client import GroundTruthClient

        self.location = location
        self.hostname = hostname
        self.label = label
        self.client = GroundTruthClient(location)
        self._session: Any = None
        self._tasks: dict[str, Any] = {}
        self._hardware = hostname

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        """Unconfigured: quietly not available (no network). Configured but unusable: a warning
        naming the server, the cause and the fix, then not available (the run goes on without it;
        ``backends=["tasmota"]`` raises with the same reason)."""
        try:
            location = server_location()  # env and a small file: no network when unconfigured
        except ConfigurationError as exc:
            _warn_once(f"ground truth: the configured server cannot be used: {exc}")
            return Availability.no(str(exc))
        if location is None:
            return Availability.no(NOT_CONFIGURED)
        from let_backends.tasmota.client import GroundTruthClient, GroundTruthError, is_legacy_server

        hostname = _hostname(settings)
        where = f"server {location.url} (from {location.source})"
        try:
            client = GroundTruthClient(location, timeout=AVAILABILITY_TIMEOUT_S)
            try:
                status = client.host(hostname)
            except GroundTruthError as exc:
                if not is_legacy_server(exc):
                    raise
                # A LET 0.1.x server has no /hosts/...: its /list says whether it meters us.
                if hostname not in client.hosts():
                    raise GroundTruthError("unknown host", 404, "refused", {"hosts": []}) from None
                status = {"online": True}
        except (GroundTruthError, ConfigurationError) as exc:
            cause = getattr(exc, "cause", "config")
            if cause == "refused" and getattr(exc, "status", None) == 404:
                reason = (f"{where} does not meter host {hostname!r}; add it to the server's config or set "
                          "LET_GT_HOSTNAME to this computer's name there")
            else:
                reason = str(exc)
            _warn_once(f"ground truth unavailable, the run goes on without wall-socket energy: {reason}")
            return Availability.no(reason)
        if not status.get("online", True):
            _warn_once(f"ground truth: {where} cannot read the socket of {hostname!r} right now "
                       f"({status.get('last_error') or 'no answer'}); the run is metered only while it "
                       "answers, and coverage will say how much. Check the socket's power and Wi-Fi.")
        return Availability.yes(f"host {hostname!r} at {location.url}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TasmotaBackend:
        location = server_location()
        if location is None:
            raise ConfigurationError(f"tasmota backend: {NOT_CONFIGURED}")
        return cls(location, _hostname(settings), label=settings.project_name)

    def _open(self, label: str) -> Any:
        from let_backends.tasmota.client import MeteredSession

        session = MeteredSession(self.client, self.hostname, label)
        started = session.start()
        self._hardware = started.get("hardware") or self._hardware
        return session

    def start(self) -> None:
        self._session = self._open(self.label)

    def _measurement(self, result: dict[str, Any]) -> Measurement:
        q = result.get("quality") or {}
        extras = {
            "gt_session_id": result.get("session_id", ""),
            "gt_server": self.location.url,
            "gt_complete": q.get("complete"),
            "gt_outages": q.get("gaps"),
            "gt_outage_seconds": q.get("gap_seconds"),
            "gt_resets": q.get("resets"),
            "gt_reboots": q.get("reboots"),
            "gt_implausible": q.get("implausible"),
            "gt_estimated_kwh": q.get("estimated_kwh"),
            "gt_power_w": result.get("power_w"),
        }
        if q.get("partial"):
            extras["gt_partial"] = q["partial"]
        if q.get("legacy_server"):
            extras["gt_legacy_server"] = True
        duration = float(result["duration"])
        coverage = q.get("coverage")
        coverage = float(coverage) if isinstance(coverage, (int, float)) else None
        gap_seconds = float(q.get("interpolated_seconds") or 0.0)
        return Measurement(backend=self.name, methodology=METHODOLOGY, kind="metered",
                           energy_kwh=float(result["energy_consumed"]), duration_s=duration,
                           scope="system", hardware=result.get("hardware") or self._hardware,
                           extras=extras, coverage=coverage,
                           gap_count=int(q.get("interpolated_gaps") or 0), gap_seconds=gap_seconds)

    def _finish(self, session: Any) -> Measurement:
        result = session.stop()
        q = result.get("quality") or {}
        if q.get("partial"):
            _warn_once(f"ground truth: {self.location.url} was lost at stop ({q['partial']}); recorded the "
                       f"last figures seen, metered for {float(q.get('coverage') or 0):.0%} of the run.")
        measurement = self._measurement(result)
        if low_power(measurement.energy_kwh, measurement.duration_s):
            _warn_once(f"ground truth: the socket saw a mean {measurement.energy_kwh * 3.6e6 / measurement.duration_s:.0f} W "
                       f"over this run; Tasmota sockets read poorly below {LOW_POWER_W:.0f} W, so treat its "
                       "figure as rough (and leave such runs out of a calibration's judgement)")
        return measurement

    def stop(self) -> Measurement:
        if self._session is None:
            raise LetError("tasmota backend: stop() before start()")
        session, self._session = self._session, None
        return self._finish(session)

    def live(self) -> LiveReading:
        """The server's running session: energy so far and the socket's latest power."""
        session = self._session
        if session is None:
            raise LetError("tasmota backend: live() outside a run")
        # The session's id, whether the session is held as its id or as a session object.
        session_id = session if isinstance(session, str) else getattr(session, "session_id", None)
        if not session_id:
            raise LetError("tasmota backend: this server (LET 0.1.x routes) has no running figures")
        result = self.client.peek(session_id)
        power = result.get("power_w")
        return LiveReading(backend=self.name, kind="metered",
                           energy_kwh=float(result.get("energy_consumed") or 0.0),
                           power_w=None if power is None else float(power))

    def task_start(self, name: str) -> None:
        self._tasks[name] = self._open(f"{self.label}/{name}")

    def task_stop(self, name: str) -> Measurement:
        return self._finish(self._tasks.pop(name))
