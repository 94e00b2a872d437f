"""NVIDIA Jetson board energy through jetson-stats (``jtop``, extra ``jetson``, imported lazily).

jtop reports the board's input power (``power['tot']['power']``, mW: the ``VDD_IN`` /
``POM_5V_IN`` rail where the board has one) and its rails (``power['rail'][name]['power']``).
The backend samples them every ``measure_power_secs`` and integrates them; the total is the
whole board ("system" scope, at the module's input, not at the wall socket), rails go to extras.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Measurement
from let_core.sampling import Channel, Interval, Meter, SampledBackend, Sampler, interval_extras

TOTAL = "tot"
NOT_INSTALLED = ("jetson-stats is not installed; on an NVIDIA Jetson run "
                 "`pip install 'lamarr-energy-tracker[jetson]'` (it needs the jtop service: "
                 "`sudo pip3 install -U jetson-stats` on the host)")


def _import_jtop() -> Any:
    import jtop  # jetson-stats; lazily, it exists only on Jetson boards

    return jtop


def _connect(jtop_module: Any, interval: float) -> Any:
    """A started jtop client; raises ConfigurationError with jtop's reason when it cannot start."""
    client = jtop_module.jtop(interval=interval)
    try:
        client.start()
    except jtop_module.JtopException as exc:
        raise ConfigurationError(
            f"cannot reach the jtop service: {' '.join(str(exc).split())} (jetson-stats works "
            "only on an NVIDIA Jetson with its jtop service running)") from None
    return client


def board_model(client: Any) -> str:
    hardware = (client.board or {}).get("hardware", {})
    return str(hardware.get("Model") or hardware.get("Module") or "NVIDIA Jetson")


class JetsonBackend(SampledBackend):
    """Board energy of an NVIDIA Jetson from its power monitors, through jtop."""

    name: ClassVar[str] = "jetson"
    auto: ClassVar[bool] = True
    description: ClassVar[str] = "NVIDIA Jetson board power through jetson-stats (jtop)"
    methodology: ClassVar[str] = "jetson-stats"
    #: How its figures read in the statement, and what the statement cites for them.
    statement_phrases: ClassVar[Mapping[str, str]] = {"jetson-stats": "jetson-stats board power readings"}
    citations: ClassVar[Mapping[str, str]] = {"jetson_stats": """@software{jetson_stats,
  author = {Bonghi, Raffaello},
  title  = {jetson-stats},
  url    = {https://github.com/rbonghi/jetson_stats},
}"""}

    def __init__(self, client: Any, jtop_module: Any, sample_secs: float = 1.0) -> None:
        self._client: Any = client
        self._jtop = jtop_module
        power = client.power or {}
        if not power.get(TOTAL):
            raise ConfigurationError("jtop reports no power monitor on this board, so there is "
                                     "nothing to integrate; leave 'jetson' out of backends")
        self.total_rail = str(power[TOTAL].get("name", "") or "sum of rails")
        self.rails = list(power.get("rail", {}))
        self.hardware = board_model(client)
        channels = [Channel(TOTAL, "power", 1e-3)]
        channels += [Channel(f"rail:{name}", "power", 1e-3) for name in self.rails]
        self.meter = Meter(channels, self._read)
        self.sampler = Sampler(self.meter, sample_secs, name="let-jetson-sampler")
        self._init_runs()

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        try:
            jtop_module = _import_jtop()
        except ImportError:
            return Availability.no(NOT_INSTALLED)
        try:
            client = _connect(jtop_module, settings.measure_power_secs)
        except ConfigurationError as exc:
            return Availability.no(str(exc))
        try:
            if not (client.power or {}).get(TOTAL):
                return Availability.no("jtop reports no power monitor on this board")
            return Availability.yes(board_model(client))
        finally:
            client.close()

    @classmethod
    def from_settings(cls, settings: Settings) -> JetsonBackend:
        try:
            jtop_module = _import_jtop()
        except ImportError:
            raise ConfigurationError(NOT_INSTALLED) from None
        options = settings.options.get("jetson", {})
        sample_secs = float(options.get("sample_secs", settings.measure_power_secs))
        if not sample_secs > 0:
            raise ConfigurationError("options['jetson']['sample_secs'] must be > 0 seconds")
        client = _connect(jtop_module, sample_secs)
        try:
            return cls(client, jtop_module, sample_secs)
        except BaseException:
            client.close()
            raise

    def start(self) -> None:
        # Each run holds its own connection, so that a finished tracker leaves no jtop client
        # (and its thread) behind; the first run reuses the one from_settings opened.
        if self._client is None:
            self._client = _connect(self._jtop, self.sampler.interval)
        super().start()

    def stop(self) -> Measurement:
        try:
            return super().stop()
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _read(self) -> dict[str, float | BaseException]:
        # ok(spin=True) does not wait for fresh data; it raises what jtop's reader thread hit.
        client = self._client
        if client is None or not client.ok(spin=True):
            raise self._jtop.JtopException("lost the connection to the jtop service")
        power = client.power
        values: dict[str, float | BaseException] = {TOTAL: float(power[TOTAL]["power"])}
        rails = power.get("rail", {})
        for name in self.rails:
            rail = rails.get(name)
            if rail is None:
                values[f"rail:{name}"] = KeyError(f"rail {name} is gone")
            else:
                values[f"rail:{name}"] = float(rail["power"])
        return values

    def _measurement(self, interval: Interval) -> Measurement:
        joules = interval.joules
        extras: dict[str, Any] = {
            "total_rail": self.total_rail,
            "rails_kwh": {name: joules[f"rail:{name}"] / 3.6e6 for name in self.rails},
            "sample_secs": self.sampler.interval,
        }
        extras.update(interval_extras(interval))
        error = ""
        if TOTAL in interval.errors:
            error = (f"jtop failed mid-run ({interval.errors[TOTAL]}); the energy measured until "
                     "then is counted")
        total = joules[TOTAL] / 3.6e6
        return Measurement(backend=self.name, methodology=self.methodology, kind="metered",
                           energy_kwh=total, duration_s=interval.duration_s, scope="system",
                           hardware=self.hardware, extras=extras, error=error)

    def close(self) -> None:
        """Disconnect from the jtop service now (a later start() connects again)."""
        self.sampler.stop()
        self._disconnect()


@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(JetsonBackend)
