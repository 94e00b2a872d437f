"""A given energy, or a given power times the measured duration (the ML CO2 Impact Calculator's method)."""

from __future__ import annotations

import time
from typing import Any, Callable, ClassVar

from let_core.carbon import checked_number
from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, LiveReading, Settings
from let_core.records import Kind, Measurement

DEFAULT_METHODOLOGY = "the Machine Learning CO2 Impact Calculator"


class ManualBackend:
    """Energy you know from elsewhere: ``energy_kwh`` for the whole run, or ``power_watts``
    drawn for as long as the run lasts.

    >>> EnergyTracker(backends=[ManualBackend(power_watts=250, hardware="NVIDIA GTX 1080 GPU")])
    """

    name: str = "manual"
    auto: ClassVar[bool] = False
    description: ClassVar[str] = "a given energy (kWh) or power (W) times the run's duration"

    def __init__(self, energy_kwh: float | None = None, power_watts: float | None = None,
                 hardware: str = "", methodology: str = DEFAULT_METHODOLOGY,
                 kind: Kind = "estimate", scope: str = "system", name: str = "manual",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.energy_kwh = None if energy_kwh is None else checked_number(energy_kwh, "energy_kwh")
        self.power_watts = None if power_watts is None else checked_number(power_watts, "power_watts")
        if (self.energy_kwh is None) == (self.power_watts is None):
            raise ConfigurationError("ManualBackend needs exactly one of energy_kwh= or power_watts=")
        if kind not in ("estimate", "metered"):
            raise ConfigurationError(f"kind must be 'estimate' or 'metered', got {kind!r}")
        self.name = name  # several manual figures in one run need names of their own
        self.hardware = hardware
        self.methodology = methodology
        self.kind: Kind = kind
        self.scope = scope
        self._clock = clock
        self._t0: float | None = None
        self._tasks: dict[str, float] = {}

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        options = settings.options.get("manual", {})
        if "energy_kwh" in options or "power_watts" in options:
            return Availability.yes()
        return Availability.no("needs a figure: pass ManualBackend(energy_kwh=...) or "
                               "ManualBackend(power_watts=...) in backends=, or "
                               "options={'manual': {'power_watts': ...}}")

    @classmethod
    def from_settings(cls, settings: Settings) -> ManualBackend:
        return cls(**settings.options.get("manual", {}))

    def start(self) -> None:
        self._t0 = self._clock()

    def _measurement(self, elapsed: float, energy_kwh: float) -> Measurement:
        return Measurement(backend=self.name, methodology=self.methodology, kind=self.kind,
                           energy_kwh=energy_kwh, duration_s=elapsed, scope=self.scope,
                           hardware=self.hardware,
                           extras={"power_watts": self.power_watts} if self.power_watts is not None else {})

    def _energy_for(self, elapsed: float) -> float:
        if self.power_watts is not None:
            return self.power_watts * elapsed / 3.6e6
        assert self.energy_kwh is not None
        return self.energy_kwh

    def stop(self) -> Measurement:
        if self._t0 is None:
            raise RuntimeError("ManualBackend.stop() called before start()")
        elapsed = self._clock() - self._t0
        self._t0 = None
        return self._measurement(elapsed, self._energy_for(elapsed))

    def live(self) -> LiveReading:
        """The figure so far: the given power times the time elapsed (a fixed kWh is only known
        whole, so it shows as 0 until the run ends)."""
        if self._t0 is None:
            raise RuntimeError("ManualBackend.live() called before start()")
        elapsed = self._clock() - self._t0
        energy = self._energy_for(elapsed) if self.power_watts is not None else 0.0
        return LiveReading(backend=self.name, kind=self.kind, energy_kwh=energy, power_w=self.power_watts)

    def task_start(self, name: str) -> None:
        self._tasks[name] = self._clock()

    def task_stop(self, name: str) -> Measurement:
        elapsed = self._clock() - self._tasks.pop(name)
        if self.power_watts is None:
            # A fixed total says nothing about its parts.
            return Measurement.failed(self.name, "a fixed energy_kwh cannot be split into tasks; "
                                      "use power_watts= to measure tasks", methodology=self.methodology)
        return self._measurement(elapsed, self._energy_for(elapsed))


@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(ManualBackend)
