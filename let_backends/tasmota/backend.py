"""The ``tasmota`` backend: the whole machine's energy at the wall, from the ground-truth server."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from let_backends.tasmota.config import NOT_CONFIGURED, ServerLocation, client_hostname, server_location
from let_core.errors import ConfigurationError, LetError
from let_core.interfaces import Availability, LiveReading, Settings
from let_core.records import Measurement

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


class TasmotaBackend:
    """Wall-socket energy of this computer, metered by a smart socket behind a LET ground-truth
    server (``let gt serve``). Each run (and each task) is one server session."""

    name: ClassVar[str] = "tasmota"
    #: How its figures read in the statement, and what the statement cites for them.
    statement_phrases: ClassVar[Mapping[str, str]] = {METHODOLOGY: "Tasmota smart sockets at the wall"}
    citations: ClassVar[Mapping[str, str]] = {"ai_energy_validation": AI_ENERGY_VALIDATION}
    auto: ClassVar[bool] = True
    description: ClassVar[str] = "metered energy at the wall socket (Tasmota smart socket via `let gt serve`)"

    def __init__(self, location: ServerLocation, hostname: str, label: str = "") -> None:
        from let_backends.tasmota.client import GroundTruthClient

        self.location = location
        self.hostname = hostname
        self.label = label
        self.client = GroundTruthClient(location)
        self._session: str | None = None
        self._tasks: dict[str, str] = {}
        self._hardware = hostname

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        try:
            location = server_location()  # env and a small file: no network when unconfigured
        except ConfigurationError as exc:
            return Availability.no(str(exc))
        if location is None:
            return Availability.no(NOT_CONFIGURED)
        from let_backends.tasmota.client import GroundTruthClient, GroundTruthError

        hostname = _hostname(settings)
        try:
            GroundTruthClient(location).host(hostname, timeout=AVAILABILITY_TIMEOUT_S)
        except GroundTruthError as exc:
            return Availability.no(str(exc))
        return Availability.yes(f"host {hostname!r} at {location.url}")

    @classmethod
    def from_settings(cls, settings: Settings) -> TasmotaBackend:
        location = server_location()
        if location is None:
            raise ConfigurationError(f"tasmota backend: {NOT_CONFIGURED}")
        return cls(location, _hostname(settings), label=settings.project_name)

    def start(self) -> None:
        started = self.client.start(self.hostname, self.label)
        self._session = started["session_id"]
        self._hardware = started.get("hardware") or self.hostname

    def _measurement(self, result: dict[str, Any]) -> Measurement:
        q = result.get("quality") or {}
        extras = {
            "gt_session_id": result.get("session_id", ""),
            "gt_server": self.location.url,
            "gt_complete": q.get("complete"),
            "gt_gaps": q.get("gaps"),
            "gt_gap_seconds": q.get("gap_seconds"),
            "gt_resets": q.get("resets"),
            "gt_reboots": q.get("reboots"),
            "gt_estimated_kwh": q.get("estimated_kwh"),
            "gt_power_w": result.get("power_w"),
        }
        return Measurement(backend=self.name, methodology=METHODOLOGY, kind="metered",
                           energy_kwh=float(result["energy_consumed"]), duration_s=float(result["duration"]),
                           scope="system", hardware=result.get("hardware") or self._hardware,
                           extras=extras)

    def stop(self) -> Measurement:
        if self._session is None:
            raise LetError("tasmota backend: stop() before start()")
        session, self._session = self._session, None
        return self._measurement(self.client.stop(session))

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
        self._tasks[name] = self.client.start(self.hostname, f"{self.label}/{name}")["session_id"]

    def task_stop(self, name: str) -> Measurement:
        return self._measurement(self.client.stop(self._tasks.pop(name)))
