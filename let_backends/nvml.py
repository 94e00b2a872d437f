"""NVIDIA GPU energy through NVML (``pynvml`` from the ``nvidia-ml-py`` package, imported lazily).

Per selected GPU (``cuda_devices``, else ``CUDA_VISIBLE_DEVICES``, else every GPU; by NVML index
as ``nvidia-smi`` numbers them, or by UUID): the total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and newer) where the GPU has one, else its
power (``nvmlDeviceGetPowerUsage``, mW) sampled and integrated. A counter that goes backwards (a
driver reload) loses that interval, never the run; a GPU that disappears keeps the energy it had
measured and is named in the measurement's error.

With attribution (``EnergyTracker(attribution="process")``) the tracker hands the backend the
tracked process tree (``follow_processes``); each read then also takes NVML's per-process
utilisation samples (``nvmlDeviceGetProcessUtilization``, SM utilisation per process since the
last sample seen) and adds up the tree's and every process's, per GPU. The measurement carries
those sums (``extras["gpus"][label]["processes"]``); ``let_core.attribution`` turns them into
the tree's share. A GPU whose driver reports no per-process utilisation says why instead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

from attrs import define, frozen

from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Measurement
from let_core.sampling import Channel, Interval, Meter, SampledBackend, Sampler, interval_extras

ENERGY = "energy counter"
POWER = "power samples"


def _import_pynvml() -> Any:
    import pynvml  # nvidia-ml-py; lazily, so that importing LET never loads it

    return pynvml


def _text(value: Any) -> str:
    # nvidia-ml-py returns str on Python 3; older bindings returned bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@frozen
class Gpu:
    label: str  # the channel name: "gpu0", or "gpu:GPU-..." when selected by UUID
    spec: str  # as selected: index or UUID
    handle: Any
    name: str
    uuid: str
    mode: str  # ENERGY or POWER


def _no_driver_reason(exc: BaseException) -> str:
    return (f"NVML cannot start ({exc}): no NVIDIA driver here. Install the driver, or leave "
            "'nvml' out of backends")


class NvmlBackend(SampledBackend):
    """GPU energy from NVML counters (or power samples on GPUs older than Volta)."""

    name: ClassVar[str] = "nvml"
    #: Per device: each rank of a launch measures its own GPUs (``records.shared_by_ranks``).
    scope: ClassVar[str] = "gpu"
    auto: ClassVar[bool] = True
    description: ClassVar[str] = "NVIDIA GPU energy counters through NVML (nvidia-ml-py)"
    methodology: ClassVar[str] = "NVML"
    #: How its figures read in the statement, and what the statement cites for them.
    statement_phrases: ClassVar[Mapping[str, str]] = {"NVML": "NVML energy counters"}
    citations: ClassVar[Mapping[str, str]] = {"nvml": """@manual{nvml,
  title        = {{NVIDIA} Management Library ({NVML}) {API} Reference},
  organization = {NVIDIA Corporation},
  url          = {https://docs.nvidia.com/deploy/nvml-api/},
}"""}

    def __init__(self, pynvml: Any, gpus: list[Gpu], sample_secs: float = 1.0) -> None:
        if not gpus:
            raise ConfigurationError("NvmlBackend needs at least one GPU")
        self._nvml = pynvml
        self.gpus = {g.label: g for g in gpus}
        channels = [Channel(g.label, "counter", 1e-3) if g.mode == ENERGY
                    else Channel(g.label, "power", 1e-3) for g in gpus]
        self.meter = Meter(channels, self._read)
        self.sampler = Sampler(self.meter, sample_secs, name="let-nvml-sampler")
        self.hardware = ", ".join(f"{n} x {name}" if n > 1 else name
                                  for name, n in Counter(g.name for g in gpus).items())
        self._closed = False
        self._members: Callable[[], Collection[int]] | None = None
        self._processes: dict[str, ProcessUtilisation] = {}
        self._init_runs()

    def follow_processes(self, members: Callable[[], Collection[int]]) -> None:
        """Also add up, per GPU, the SM utilisation of the processes ``members()`` names against
        every process's, from the next run on (attribution)."""
        self._members = members

    def start(self) -> None:
        if self._members is not None:
            since = int(time.time() * 1e6)  # NVML stamps samples in CPU time, microseconds
            self._processes = {label: ProcessUtilisation(last_seen=since) for label in self.gpus}
        super().start()

    # ----------------------------------------------------------------------------- factory
    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        try:
            pynvml = _import_pynvml()
        except ImportError:
            return Availability.no("pynvml is not installed: `pip install nvidia-ml-py`")
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            return Availability.no(_no_driver_reason(exc))
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            return Availability.no(f"NVML cannot count GPUs ({exc})")
        finally:
            pynvml.nvmlShutdown()
        if count == 0:
            return Availability.no("the NVIDIA driver is loaded but sees no GPU")
        return Availability.yes(f"{count} GPU(s)")

    @classmethod
    def from_settings(cls, settings: Settings) -> NvmlBackend:
        """Open NVML and resolve the GPUs; a GPU that does not exist fails here, before the run."""
        try:
            pynvml = _import_pynvml()
        except ImportError:
            raise ConfigurationError("the nvml backend needs pynvml: `pip install nvidia-ml-py`") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ConfigurationError(_no_driver_reason(exc)) from None
        try:
            gpus = _resolve_gpus(pynvml, settings.cuda_devices)
        except BaseException:
            pynvml.nvmlShutdown()
            raise
        options = settings.options.get("nvml", {})
        sample_secs = float(options.get("sample_secs", settings.measure_power_secs))
        if not sample_secs > 0:
            raise ConfigurationError("options['nvml']['sample_secs'] must be > 0 seconds")
        return cls(pynvml, gpus, sample_secs=sample_secs)

    # ----------------------------------------------------------------------------- reading
    def _read(self) -> dict[str, float | BaseException]:
        nvml = self._nvml
        values: dict[str, float | BaseException] = {}
        for label, gpu in self.gpus.items():
            try:
                if gpu.mode == ENERGY:
                    values[label] = nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)
                else:
                    values[label] = nvml.nvmlDeviceGetPowerUsage(gpu.handle)
            except nvml.NVMLError as exc:
                values[label] = exc
        if self._members is not None and self._processes:
            self._read_processes(set(self._members()))
        return values

    def _read_processes(self, members: set[int]) -> None:
        nvml = self._nvml
        for label, gpu in self.gpus.items():
            sums = self._processes[label]
            if sums.problem:
                continue
            try:
                samples = nvml.nvmlDeviceGetProcessUtilization(gpu.handle, sums.last_seen)
            except nvml.NVMLError_NotFound:
                continue  # no process used the GPU since the last sample seen
            except nvml.NVMLError as exc:
                if getattr(exc, "value", None) == nvml.NVML_SUCCESS:
                    continue  # pynvml raises "Success" where a driver answers "none" without NotFound
                sums.problem = f"NVML reports no per-process utilisation for GPU {gpu.spec} ({exc})"
                continue
            for sample in samples:
                # Some drivers fill a fixed-size buffer: the unused entries are zero, older than any run.
                if sample.timeStamp <= sums.last_seen:
                    continue
                sums.all_util += sample.smUtil
                if sample.pid in members:
                    sums.tree_util += sample.smUtil
                sums.samples += 1
            sums.last_seen = max([sums.last_seen, *(sample.timeStamp for sample in samples)])

    def _measurement(self, interval: Interval) -> Measurement:
        joules = interval.joules
        gpu_j = sum(joules.values())
        extras: dict[str, Any] = {
            "gpus": {label: {"name": g.name, "uuid": g.uuid, "mode": g.mode,
                             "kwh": joules[label] / 3.6e6}
                     for label, g in self.gpus.items()},
            "sample_secs": self.sampler.interval,
        }
        for label, sums in self._processes.items():
            extras["gpus"][label]["processes"] = sums.as_extras()
        extras.update(interval_extras(interval))
        error = "; ".join(
            f"GPU {self.gpus[label].spec} ({self.gpus[label].name}) failed mid-run: {message}; "
            "the energy it measured until then is counted"
            for label, message in interval.errors.items())
        return Measurement(backend=self.name, methodology=self.methodology, kind="metered",
                           energy_kwh=gpu_j / 3.6e6, duration_s=interval.duration_s, scope="gpu",
                           gpu_kwh=gpu_j / 3.6e6, hardware=self.hardware, extras=extras,
                           error=error)

    def close(self) -> None:
        """Release NVML (the backend cannot be started again afterwards)."""
        if not self._closed:
            self._closed = True
            self.sampler.stop()
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass


@define
class ProcessUtilisation:
    """One GPU's per-process utilisation over a run: the SM utilisation samples (percent) of the
    followed processes and of every process, added up; or why NVML gives none."""

    last_seen: int
    tree_util: float = 0.0
    all_util: float = 0.0
    samples: int = 0
    problem: str = ""

    def as_extras(self) -> dict[str, Any]:
        if self.problem:
            return {"problem": self.problem}
        return {"tree_util": self.tree_util, "all_util": self.all_util, "samples": self.samples}


def _resolve_gpus(pynvml: Any, cuda_devices: tuple[str, ...] | None) -> list[Gpu]:
    count = pynvml.nvmlDeviceGetCount()
    specs = list(cuda_devices) if cuda_devices is not None else [str(i) for i in range(count)]
    if not specs:
        raise ConfigurationError("no GPU selected (cuda_devices / CUDA_VISIBLE_DEVICES is empty); "
                                 "leave 'nvml' out of backends or select a GPU")
    gpus = []
    for spec in specs:
        if spec.isdigit():
            index = int(spec)
            if index >= count:
                raise ConfigurationError(
                    f"GPU index {index} does not exist: NVML sees {count} GPU(s), indices "
                    f"0..{count - 1}. Fix cuda_devices / CUDA_VISIBLE_DEVICES (`nvidia-smi -L` "
                    "lists the GPUs).")
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            label = f"gpu{index}"
        else:
            try:
                handle = pynvml.nvmlDeviceGetHandleByUUID(spec)
            except pynvml.NVMLError as exc:
                raise ConfigurationError(
                    f"no GPU with UUID {spec!r} ({exc}); `nvidia-smi -L` lists the UUIDs") from None
            label = f"gpu:{spec}"
        name = _text(pynvml.nvmlDeviceGetName(handle))
        uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
        gpus.append(Gpu(label, spec, handle, name, uuid, _mode(pynvml, handle, spec, name)))
    return gpus


def _mode(pynvml: Any, handle: Any, spec: str, name: str) -> str:
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return ENERGY
    except pynvml.NVMLError_NotSupported:
        pass  # before Volta: integrate power instead
    try:
        pynvml.nvmlDeviceGetPowerUsage(handle)
        return POWER
    except pynvml.NVMLError as exc:
        raise ConfigurationError(
            f"GPU {spec} ({name}) reports neither an energy counter nor its power ({exc}); "
            "select other GPUs with cuda_devices") from None


@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(NvmlBackend)
