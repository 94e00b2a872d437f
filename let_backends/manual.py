"""A given energy, or a given power times the measured duration (the ML CO2 Impact Calculator's method)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from let_core.carbon import checked_number
from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, LiveReading, Settings
from let_core.records import Kind, Measurement

#: Power x time is the ML CO2 Impact Calculator's method, and cited as such.
DEFAULT_METHODOLOGY = "the Machine Learning CO2 Impact Calculator"
#: A given energy is just a figure someone knew; nothing to cite for it.
KNOWN_FIGURE_METHODOLOGY = "a known energy figure"
_GPU_WORDS = re.compile(r"\b(gpus?|nvidia|geforce|radeon|tesla|quadro|a100|h100|v100)\b", re.IGNORECASE)


class ManualBackend:
    """Energy you know from elsewhere: ``energy_kwh`` for the whole run, or ``power_watts``
    drawn for as long as the run lasts.

    >>> EnergyTracker(backends=[ManualBackend(power_watts=250, hardware="NVIDIA GTX 1080 GPU")])
    """

    name: str = "manual"
    auto: ClassVar[bool] = False
    description: ClassVar[str] = "a given energy (kWh) or power (W) times the run's duration"
    citations: ClassVar[Mapping[str, str]] = {"ml_co2_impact": """@article{ml_co2_impact,
  title   = {Quantifying the Carbon Emissions of Machine Learning},
  author  = {Lacoste, Alexandre and Luccioni, Alexandra and Schmidt, Victor and Dandres, Thomas},
  journal = {arXiv preprint arXiv:1910.09700},
  year    = {2019},
}"""}

    @classmethod
    def citation_keys(cls, methodologies: Sequence[str]) -> list[str]:
        """The impact calculator's paper, only for figures that used its method."""
        impact = any("co2 impact calculator" in m.lower() for m in methodologies)
        return ["ml_co2_impact"] if impact else []

    def __init__(self, energy_kwh: float | None = None, power_watts: float | None = None,
                 hardware: str = "", methodology: str | None = None,
                 kind: Kind = "estimate", scope: str | None = None, name: str = "manual",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.energy_kwh = None if energy_kwh is None else checked_number(energy_kwh, "energy_kwh")
        self.power_watts = None if power_watts is None else checked_number(power_watts, "power_watts")
        if (self.energy_kwh is None) == (self.power_watts is None):
            raise ConfigurationError("ManualBackend needs exactly one of energy_kwh= or power_watts=")
        if kind not in ("estimate", "metered"):
            raise ConfigurationError(f"kind must be 'estimate' or 'metered', got {kind!r}")
        self.name = name  # several manual figures in one run need names of their own
        self.hardware = hardware
        if methodology is None:
            methodology = DEFAULT_METHODOLOGY if self.power_watts is not None else KNOWN_FIGURE_METHODOLOGY
        self.methodology = methodology
        self.kind: Kind = kind
        # A figure for a GPU covers the GPU, so it adds to a CPU+RAM estimate of the same run
        # instead of competing with it; anything else is taken to cover the whole machine.
        self.scope = scope if scope is not None else ("gpu" if _GPU_WORDS.search(hardware or "") else "system")
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
