"""RAPL energy counters (Intel and AMD CPUs) read from Linux powercap, plus ``lett rapl-access``.

Zones under ``/sys/class/powercap`` (or ``options={"rapl": {"root": ...}}`` / ``LET_RAPL_ROOT``):

- ``package-N`` (top-level zones) is the CPU socket and counts as ``cpu_kwh``. Its ``core`` and
  ``uncore`` sub-zones are inside it and are never added again.
- ``dram`` (top-level or a package's sub-zone) is outside the package and counts as ``ram_kwh``.
- ``psys`` (client Intel chips) is the whole SoC platform and contains the packages; adding it
  would double count, and it is not the whole machine either, so it is only recorded in
  ``extras["psys_kwh"]`` for reference.
- ``intel-rapl-mmio`` repeats the package zone of ``intel-rapl`` through another interface; a
  zone seen through both is read once, from the MSR interface.

``energy_uj`` wraps after ``max_energy_range_uj`` (values 0..max); the background sampler reads
often enough to see every wrap (see ``let_core.sampling``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from attrs import frozen

from let_core import config
from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Measurement
from let_core.sampling import Channel, Interval, Meter, SampledBackend, Sampler, interval_extras, safe_interval

DEFAULT_ROOT = "/sys/class/powercap"
ROOT_ENV = "LET_RAPL_ROOT"
#: A zone drawing more than this is a counter reset, not a wrap. No CPU socket or DRAM bank
#: comes near it; the figure only has to separate a wrap from a reset of a 262 kJ counter.
DEFAULT_MAX_POWER_W = 1000.0
ACCESS_HINT = "RAPL counters are root-only since Linux 5.10; run `lett rapl-access`"
UDEV_RULE_PATH = "/etc/udev/rules.d/99-let-rapl.rules"
UDEV_RULE = ('# LET: let every user read RAPL energy counters (see `lett rapl-access`)\n'
             'ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl:*", '
             'RUN+="/bin/chmod a+r /sys%p/energy_uj"\n'
             'ACTION=="add", SUBSYSTEM=="powercap", KERNEL=="intel-rapl-mmio:*", '
             'RUN+="/bin/chmod a+r /sys%p/energy_uj"\n')


@frozen
class Zone:
    """One powercap zone with an energy counter."""

    path: Path  # the zone's folder
    zone_id: str  # folder name: intel-rapl:0, intel-rapl:0:2, intel-rapl-mmio:0
    name: str  # the zone's own name file: package-0, dram, core, uncore, psys
    max_range: int  # max_energy_range_uj

    @property
    def mmio(self) -> bool:
        return "mmio" in self.zone_id.split(":")[0]

    @property
    def parent_id(self) -> str | None:
        parts = self.zone_id.split(":")
        return ":".join(parts[:2]) if len(parts) > 2 else None

    @property
    def energy_file(self) -> Path:
        return self.path / "energy_uj"


def rapl_root(settings: Settings | None = None) -> Path:
    options = settings.options.get("rapl", {}) if settings is not None else {}
    return Path(options.get("root") or config.rapl_root_env() or DEFAULT_ROOT)


def discover(root: Path) -> list[Zone]:
    """Every zone with an energy counter under ``root``, in name order.

    Raises ``FileNotFoundError`` when ``root`` does not exist.
    """
    zones = []
    for entry in sorted(root.iterdir()):
        if ":" not in entry.name or not (entry / "energy_uj").exists():
            continue  # control-type folders (intel-rapl) have no counter of their own
        name = _read_text(entry / "name") or entry.name
        try:
            max_range = int(_read_text(entry / "max_energy_range_uj"))
        except ValueError:
            continue  # a zone without a usable range cannot be integrated safely
        zones.append(Zone(entry, entry.name, name, max_range))
    return zones


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


@frozen
class Selection:
    """The zones to add up, by logical name (``package-0``, ``package-0/dram``, ``psys``)."""

    cpu: dict[str, Zone]
    ram: dict[str, Zone]
    psys: dict[str, Zone]

    @property
    def all(self) -> dict[str, Zone]:
        return {**self.cpu, **self.ram, **self.psys}


def select(zones: Iterable[Zone]) -> Selection:
    by_id = {z.zone_id: z for z in zones}
    cpu: dict[str, Zone] = {}
    ram: dict[str, Zone] = {}
    psys: dict[str, Zone] = {}
    # MSR zones first, so that an MMIO duplicate of the same package is the one left out.
    for zone in sorted(by_id.values(), key=lambda z: (z.mmio, z.zone_id)):
        parent = by_id.get(zone.parent_id) if zone.parent_id else None
        if zone.name.startswith("package") and parent is None:
            cpu.setdefault(zone.name, zone)
        elif zone.name == "dram":
            key = f"{parent.name}/dram" if parent is not None else f"dram:{zone.zone_id.split(':')[-1]}"
            ram.setdefault(key, zone)
        elif zone.name == "psys" and parent is None:
            psys.setdefault(f"psys:{zone.zone_id.split(':')[-1]}", zone)
    return Selection(cpu, ram, psys)


def cpu_model() -> str:
    """The CPU model as LET 0.1.x named it (no clock), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].split(" @ ")[0].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _check_readable(zones: Iterable[Zone]) -> str:
    """Empty when every counter can be read; else the reason and what to do."""
    for zone in zones:
        try:
            with open(zone.energy_file, "rb") as handle:
                int(handle.read())
        except PermissionError:
            return f"{ACCESS_HINT} (cannot read {zone.energy_file})"
        except (OSError, ValueError) as exc:
            return f"cannot read {zone.energy_file}: {exc}"
    return ""


def _scan(settings: Settings) -> tuple[Selection | None, str]:
    root = rapl_root(settings)
    try:
        zones = discover(root)
    except FileNotFoundError:
        return None, (f"no powercap folder {root}: this is not Linux with Intel/AMD RAPL, the "
                      "intel_rapl_msr module is not loaded (`sudo modprobe intel_rapl_msr`), or "
                      "/sys is not mounted into this container")
    except PermissionError:
        return None, f"{ACCESS_HINT} (cannot list {root})"
    selection = select(zones)
    if not selection.cpu:
        return None, (f"no RAPL package zone under {root}; this CPU or kernel does not expose "
                      "RAPL (a VM usually does not)")
    problem = _check_readable(selection.all.values())
    return (None, problem) if problem else (selection, "")


class RaplBackend(SampledBackend):
    """CPU package and DRAM energy from RAPL counters: metered, no start-up cost."""

    name: ClassVar[str] = "rapl"
    auto: ClassVar[bool] = True
    description: ClassVar[str] = "CPU package and DRAM energy from Linux powercap RAPL counters"
    methodology: ClassVar[str] = "RAPL"
    #: How its figures read in the statement, and what the statement cites for them.
    statement_phrases: ClassVar[Mapping[str, str]] = {"RAPL": "RAPL energy counters"}
    citations: ClassVar[Mapping[str, str]] = {"rapl": """@inproceedings{rapl,
  author    = {David, Howard and Gorbatov, Eugene and Hanebutte, Ulf R. and Khanna, Rahul and Le, Christian},
  title     = {{RAPL}: Memory Power Estimation and Capping},
  booktitle = {Proceedings of the 16th ACM/IEEE International Symposium on Low Power Electronics and Design},
  year      = {2010},
  pages     = {189--194},
  doi       = {10.1145/1840845.1840883},
}"""}

    def __init__(self, selection: Selection, sample_secs: float = 1.0,
                 max_power_w: float = DEFAULT_MAX_POWER_W, hardware: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.selection = selection
        self.hardware = hardware if hardware is not None else cpu_model()
        zones = selection.all
        self._files = {key: str(zone.energy_file) for key, zone in zones.items()}
        max_rate = max_power_w * 1e6  # µJ per second
        channels = [Channel(key, "counter", 1e-6, max_range=zone.max_range, max_rate=max_rate)
                    for key, zone in zones.items()]
        meter_args = {"clock": clock} if clock is not None else {}
        self.meter = Meter(channels, self._read, **meter_args)
        interval = min(safe_interval(sample_secs, z.max_range, max_rate) for z in zones.values())
        self.sampler = Sampler(self.meter, interval, name="let-rapl-sampler")
        self._init_runs()

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        selection, reason = _scan(settings)
        if selection is None:
            return Availability.no(reason)
        return Availability.yes(", ".join(selection.all))

    @classmethod
    def from_settings(cls, settings: Settings) -> RaplBackend:
        selection, reason = _scan(settings)
        if selection is None:
            raise ConfigurationError(f"RAPL cannot be used here: {reason}")
        options = settings.options.get("rapl", {})
        sample_secs = float(options.get("sample_secs", settings.measure_power_secs))
        max_power_w = float(options.get("max_power_w", DEFAULT_MAX_POWER_W))
        if not sample_secs > 0 or not max_power_w > 0:
            raise ConfigurationError("options['rapl']['sample_secs'] and ['max_power_w'] must be > 0")
        return cls(selection, sample_secs=sample_secs, max_power_w=max_power_w)

    def _read(self) -> dict[str, float | BaseException]:
        values: dict[str, float | BaseException] = {}
        for key, path in self._files.items():
            try:
                with open(path, "rb") as handle:
                    values[key] = int(handle.read())
            except (OSError, ValueError) as exc:
                values[key] = exc
        return values

    def _measurement(self, interval: Interval) -> Measurement:
        j = interval.joules
        cpu_j = sum(j[k] for k in self.selection.cpu)
        ram_j = sum(j[k] for k in self.selection.ram)
        extras: dict[str, Any] = {"zones_kwh": {k: v / 3.6e6 for k, v in j.items()},
                                  "sample_secs": self.sampler.interval}
        if self.selection.psys:
            extras["psys_kwh"] = sum(j[k] for k in self.selection.psys) / 3.6e6
        extras.update(interval_extras(interval))
        has_ram = bool(self.selection.ram)
        error = ""
        if interval.errors:
            error = "; ".join(f"zone {k} failed mid-run ({e}); its energy up to then is counted"
                              for k, e in interval.errors.items())
        return Measurement(
            backend=self.name, methodology=self.methodology, kind="metered",
            energy_kwh=(cpu_j + ram_j) / 3.6e6, duration_s=interval.duration_s,
            scope="cpu+ram" if has_ram else "cpu", cpu_kwh=cpu_j / 3.6e6,
            ram_kwh=ram_j / 3.6e6 if has_ram else None,
            hardware=self.hardware, extras=extras, error=error)


# ------------------------------------------------------------------------------- rapl-access
def counter_files(root: Path) -> list[Path]:
    """Every RAPL ``energy_uj`` file under ``root`` (all zones, nested ones too)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*rapl*:*/energy_uj"))


def access_commands(root: Path) -> list[str]:
    return [
        f"sudo chmod a+r {root}/intel-rapl:*/energy_uj {root}/intel-rapl-mmio:*/energy_uj",
        "# to keep it after reboots: sudo lett rapl-access --apply --persistent",
    ]


def apply_access(root: Path) -> list[Path]:
    """Make every counter under ``root`` world-readable now; returns the files changed."""
    changed = []
    for path in counter_files(root):
        mode = path.stat().st_mode
        os.chmod(path, mode | 0o444)
        changed.append(path)
    return changed


def write_udev_rule(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(UDEV_RULE)
    os.replace(tmp, path)


def _register_rapl_access(cli: Any) -> None:
    import click

    @cli.command("rapl-access")
    @click.option("--apply", "do_apply", is_flag=True,
                  help="Make the counters readable now (as root).")
    @click.option("--persistent", is_flag=True,
                  help="With --apply: also install a udev rule so that access survives reboots.")
    @click.option("--root", "root_opt", default=None,
                  help=f"powercap folder (default: ${ROOT_ENV} or {DEFAULT_ROOT}).")
    @click.option("--udev-rule", "rule_path", default=UDEV_RULE_PATH, show_default=True,
                  help="Where --persistent writes the udev rule.")
    def rapl_access(do_apply: bool, persistent: bool, root_opt: str | None, rule_path: str) -> None:
        """Let every user read RAPL energy counters (root-only since Linux 5.10).

        Security: readable counters let local users observe power use, which leaks secrets
        through power side channels (CVE-2020-8694, PLATYPUS); grant it on machines you trust.
        """
        root = Path(root_opt or config.rapl_root_env() or DEFAULT_ROOT)
        if not do_apply:
            if persistent:
                raise click.UsageError("--persistent needs --apply")
            click.echo("RAPL counters are root-only since Linux 5.10 (CVE-2020-8694, PLATYPUS).")
            click.echo("To let every user read them until the next reboot, run:")
            for line in access_commands(root):
                click.echo(f"  {line}")
            click.echo(f"A udev rule ({rule_path}) makes it permanent:")
            for line in UDEV_RULE.splitlines():
                click.echo(f"  {line}")
            return
        files = counter_files(root)
        if not files:
            raise click.ClickException(f"no RAPL counters under {root}; nothing to change "
                                       "(is intel_rapl_msr loaded? `sudo modprobe intel_rapl_msr`)")
        try:
            changed = apply_access(root)
        except PermissionError as exc:
            raise click.ClickException(f"{exc}; run it as root: sudo lett rapl-access --apply") from None
        click.echo(f"made {len(changed)} RAPL counter file(s) under {root} readable by every user")
        if persistent:
            try:
                write_udev_rule(Path(rule_path))
            except PermissionError as exc:
                raise click.ClickException(f"{exc}; run it as root: sudo lett rapl-access --apply "
                                           "--persistent") from None
            click.echo(f"wrote udev rule {rule_path}; it applies at every boot")


@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(RaplBackend)


@hookimpl
def let_register_commands(cli: Any) -> None:
    _register_rapl_access(cli)
