"""A fake ``pynvml`` (nvidia-ml-py) for machines without an NVIDIA GPU.

It follows the real module's API for the functions LET uses: the same names and parameters,
the same return types (str names and UUIDs, int mW and mJ), the same errors (``NVMLError``
whose constructor maps an ``NVML_ERROR_*`` code to its ``NVMLError_<Name>`` subclass, exactly
as ``pynvml._extractNVMLErrorsAsClasses`` builds them). ``tests/test_nvml_backend.py`` checks
the names and signatures against the real, installed ``pynvml``.

Tests install it with ``monkeypatch.setitem(sys.modules, "pynvml", fake)`` after ``reset(...)``.
"""

from __future__ import annotations

import string
import sys
import threading
import time
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_UNKNOWN = 999

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    _valClassMapping: dict[int, type] = {}

    def __new__(typ, value):  # type: ignore[no-untyped-def]
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return self.value == getattr(other, "value", None)

    __hash__ = Exception.__hash__


def _make_error_classes() -> None:
    module = sys.modules[__name__]
    for err_name in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        value = getattr(module, err_name)

        def gen_new(val: int) -> Any:
            def new(typ, *args):  # type: ignore[no-untyped-def]
                return NVMLError.__new__(typ, val)
            return new

        cls = type(class_name, (NVMLError,), {"__new__": gen_new(value)})
        cls.__module__ = __name__
        setattr(module, class_name, cls)
        NVMLError._valClassMapping[value] = cls


_make_error_classes()


# ------------------------------------------------------------------------------- fake hardware
class c_nvmlProcessUtilizationSample_t:
    """The fields of pynvml's ctypes structure of the same name (one process's utilisation at
    one CPU time stamp, microseconds), as ``nvmlDeviceGetProcessUtilization`` returns them."""

    _fields_ = [("pid", "c_uint"), ("timeStamp", "c_ulonglong"), ("smUtil", "c_uint"),
                ("memUtil", "c_uint"), ("encUtil", "c_uint"), ("decUtil", "c_uint")]

    def __init__(self, pid: int, timeStamp: int, smUtil: int, memUtil: int = 0,
                 encUtil: int = 0, decUtil: int = 0) -> None:
        self.pid, self.timeStamp, self.smUtil = pid, timeStamp, smUtil
        self.memUtil, self.encUtil, self.decUtil = memUtil, encUtil, decUtil


class FakeGpu:
    """One GPU: an energy counter in mJ (Volta+) or only a power reading in mW, and the processes
    using it (pid to SM utilisation in percent), sampled by the driver as the GPU advances."""

    def __init__(self, name: str = "NVIDIA A100-SXM4-40GB", uuid: str = "GPU-00000000-0000-0000-0000-000000000000",
                 power_mw: int = 250_000, energy_mj: int = 0, has_energy_counter: bool = True,
                 process_utilization: bool = True) -> None:
        self.name = name
        self.uuid = uuid
        self.power_mw = power_mw
        self.energy_mj = energy_mj
        self.has_energy_counter = has_energy_counter
        #: Whether the driver reports per-process utilisation (Maxwell and newer, not under every vGPU).
        self.process_utilization = process_utilization
        self.processes: dict[int, int] = {}
        self.samples: list[c_nvmlProcessUtilizationSample_t] = []
        self.lost = False

    def advance(self, seconds: float) -> None:
        """The GPU draws ``power_mw`` for ``seconds``; the driver takes one utilisation sample of
        every process that used it (as NVML, only those with non-zero utilisation)."""
        self.energy_mj += int(round(self.power_mw * seconds))
        stamp = max([int(time.time() * 1e6), *(s.timeStamp + 1 for s in self.samples)])
        self.samples.extend(c_nvmlProcessUtilizationSample_t(pid, stamp, util)
                            for pid, util in self.processes.items() if util > 0)


class _Handle:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu


_lock = threading.Lock()
_gpus: list[FakeGpu] = []
_driver_loaded = True
_refcount = 0


def reset(gpus: list[FakeGpu], driver_loaded: bool = True) -> None:
    """Set the machine this fake pretends to be (test helper, not part of pynvml)."""
    global _gpus, _driver_loaded, _refcount
    with _lock:
        _gpus = list(gpus)
        _driver_loaded = driver_loaded
        _refcount = 0


def _check_init() -> None:
    if _refcount <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def _gpu(handle: Any) -> FakeGpu:
    _check_init()
    if not isinstance(handle, _Handle):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    if handle.gpu.lost:
        raise NVMLError(NVML_ERROR_GPU_IS_LOST)
    return handle.gpu


# ------------------------------------------------------------------------------- the API
def nvmlInit() -> None:
    global _refcount
    if not _driver_loaded:
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    with _lock:
        _refcount += 1
    return None


def nvmlShutdown() -> None:
    global _refcount
    _check_init()
    with _lock:
        _refcount -= 1
    return None


def nvmlSystemGetDriverVersion() -> str:
    _check_init()
    return "550.54.15"


def nvmlDeviceGetCount() -> int:
    _check_init()
    return len(_gpus)


def nvmlDeviceGetHandleByIndex(index: int) -> Any:
    _check_init()
    if not 0 <= int(index) < len(_gpus):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return _Handle(_gpus[int(index)])


def nvmlDeviceGetHandleByUUID(uuid: str) -> Any:
    _check_init()
    text = uuid.decode() if isinstance(uuid, bytes) else uuid
    for gpu in _gpus:
        if gpu.uuid == text:
            return _Handle(gpu)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetName(handle: Any) -> str:
    return _gpu(handle).name


def nvmlDeviceGetUUID(handle: Any) -> str:
    return _gpu(handle).uuid


def nvmlDeviceGetPowerUsage(handle: Any) -> int:
    return int(_gpu(handle).power_mw)


def nvmlDeviceGetTotalEnergyConsumption(handle: Any) -> int:
    gpu = _gpu(handle)
    if not gpu.has_energy_counter:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return int(gpu.energy_mj)


def nvmlDeviceGetProcessUtilization(handle: Any, timeStamp: int) -> list[c_nvmlProcessUtilizationSample_t]:
    """As the real one: per process, its latest sample newer than ``timeStamp``; NotFound when
    there is none, NotSupported where the driver keeps no per-process figures."""
    gpu = _gpu(handle)
    if not gpu.process_utilization:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    latest: dict[int, c_nvmlProcessUtilizationSample_t] = {}
    for sample in gpu.samples:
        if sample.timeStamp > int(timeStamp):
            latest[sample.pid] = sample
    if not latest:
        raise NVMLError(NVML_ERROR_NOT_FOUND)
    return list(latest.values())
