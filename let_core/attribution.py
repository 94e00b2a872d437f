"""A process tree's share of a machine's figure (``EnergyTracker(attribution="process")``).

On a shared machine CodeCarbon in machine mode, RAPL and a wall socket measure everybody's
work. Beside each such figure the tracker then records the share of the tracked process tree
(the tracking process and all its descendants): its CPU time over the machine's busy CPU time
in the same intervals, and its resident memory over the machine's used memory, both read from
``/proc`` by the sampler every metered backend uses. The share is its own row (kind
``attributed``, backend ``<backend>/process``); the machine figure stays as measured.

Shares of concurrent trackers of disjoint process trees add up to at most the machine's
figure: each tick of busy CPU belongs to one process, each resident page is counted for the
process that maps it (shared pages may be counted twice in RSS; the RAM share is clamped to 1).
GPUs: where NVML reports per-process utilisation (``nvmlDeviceGetProcessUtilization``; the
NVML backend samples it for the tree, ``follow_processes``), the tree's share of each GPU is
its processes' SM utilisation over every process's, and a GPU's figure is split by it (also the
GPU part of a machine figure, such as CodeCarbon's). Elsewhere the process is given each GPU
whole, and the row says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from let_core.records import Measurement
from let_core.results.rule import SHARE_SUFFIX
from let_core.sampling import Channel, Meter, Sampler, Snapshot

PROC = Path("/proc")
#: The seconds of one ``/proc`` CPU tick (USER_HZ).
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
WHOLE_GPU = "whole GPU: NVML reports no per-process utilisation here"
NO_GPU_USE = "no process used the GPU during the run (NVML took no utilisation sample)"


class ProcessTree:
    """Reads the CPU ticks and resident bytes of a process and its descendants, and the machine's.

    A descendant's ticks are counted from when it was first seen (its ticks before the run, if
    it existed then, are not the run's); a child that exits between two reads loses at most
    that one interval, never counts twice (``cutime`` is not read for that reason).
    """

    def __init__(self, root_pid: int, proc: Path = PROC, more_roots: Callable[[], Iterable[int]] | None = None) -> None:
        self.root_pid = root_pid
        self.proc = proc
        #: Other processes whose trees are this one's too, asked on every read: the ranks of a
        #: launch that leave the node's figure, and so its share, to this process (``jobs``).
        self.more_roots = more_roots
        self._last: dict[int, int] = {}
        self._ticks = 0
        self._started = False

    def members(self) -> frozenset[int]:
        """The process ids of the tree as last read (the root alone before the first read)."""
        return frozenset(self._last) | {self.root_pid}

    def check(self) -> str:
        """Why a share cannot be computed here, or "" when ``/proc`` can be read."""
        try:
            self._machine_ticks()
            self._read_pid(self.root_pid)
            self._used_memory()
        except (OSError, ValueError, IndexError) as exc:
            return f"no share: {self.proc} is not readable here ({type(exc).__name__}: {exc})"
        return ""

    def read(self) -> dict[str, float]:
        machine = float(self._machine_ticks())
        pids = self._tree()
        rss = 0
        seen: dict[int, int] = {}
        for pid in pids:
            try:
                ticks, pages = self._read_pid(pid)
            except (OSError, ValueError, IndexError):
                continue  # it exited between the listing and the read
            seen[pid] = ticks
            rss += pages
            if pid in self._last:
                self._ticks += max(0, ticks - self._last[pid])
            elif self._started and pid != self.root_pid:
                self._ticks += ticks  # born during the run: all its ticks are the run's
        if not self._started and self.root_pid in seen:
            self._started = True
        self._last = seen
        return {"process_cpu": float(self._ticks), "machine_cpu": machine,
                "process_ram": float(rss * PAGE_BYTES), "machine_ram": float(self._used_memory())}

    def _machine_ticks(self) -> int:
        with open(self.proc / "stat", "rb") as handle:
            fields = handle.readline().split()
        # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
        # (guest time is already inside user and nice).
        values = [int(v) for v in fields[1:9]]
        return sum(values) - values[3] - values[4]

    def _read_pid(self, pid: int) -> tuple[int, int]:
        base = self.proc / str(pid)
        with open(base / "stat", "rb") as handle:
            text = handle.read()
        fields = text[text.rindex(b")") + 2:].split()
        with open(base / "statm", "rb") as handle:
            resident = int(handle.read().split()[1])
        return int(fields[11]) + int(fields[12]), resident  # utime + stime

    def _used_memory(self) -> int:
        values: dict[bytes, int] = {}
        with open(self.proc / "meminfo", "rb") as handle:
            for line in handle:
                name, _, rest = line.partition(b":")
                if name in (b"MemTotal", b"MemAvailable"):
                    values[name] = int(rest.split()[0]) * 1024
        return values[b"MemTotal"] - values[b"MemAvailable"]

    def _tree(self) -> list[int]:
        queue = [self.root_pid]
        if self.more_roots is not None:
            try:
                queue.extend(self.more_roots())
            except OSError:
                pass  # the ranks' folder went away: this process's own tree still counts
        pids: list[int] = []
        seen: set[int] = set()
        while queue:
            pid = queue.pop()
            if pid in seen:  # a rank that is also a child of this process
                continue
            seen.add(pid)
            pids.append(pid)
            try:
                tasks = os.listdir(self.proc / str(pid) / "task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    children = (self.proc / str(pid) / "task" / tid / "children").read_bytes().split()
                except OSError:
                    continue
                queue.extend(int(child) for child in children)
        return pids


class ProcessShare:
    """Samples a process tree beside a run and turns the machine's figures into its shares."""

    def __init__(self, interval_s: float, root_pid: int | None = None, proc: Path | None = None,
                 more_roots: Callable[[], Iterable[int]] | None = None) -> None:
        self.tree = ProcessTree(os.getpid() if root_pid is None else root_pid, PROC if proc is None else proc,
                                more_roots)
        self.meter = Meter([Channel("process_cpu", "counter", TICK_S), Channel("machine_cpu", "counter", TICK_S),
                            Channel("process_ram", "power", 1.0), Channel("machine_ram", "power", 1.0)],
                           self.tree.read)
        self.sampler = Sampler(self.meter, interval_s, name="let-attribution")
        self.problem = ""
        self._start: Snapshot | None = None

    def follow(self, backends: Iterable[Any]) -> None:
        """Hand the tree to the backends that can split their own figure by process (NVML)."""
        for backend in backends:
            follow: Callable[[Callable[[], Collection[int]]], None] | None = getattr(backend, "follow_processes", None)
            if callable(follow):
                follow(self.tree.members)

    def start(self) -> None:
        self.problem = self.tree.check()
        if self.problem:
            return
        self._start = self.meter.snapshot()
        self.sampler.start()

    def shares(self) -> tuple[dict[str, float], str]:
        """CPU and RAM shares since ``start()`` (0..1), or the reason there are none."""
        if self._start is None:
            return {}, self.problem or "no share: attribution was not started"
        self.sampler.stop()
        interval = self.meter.since(self._start)
        self._start = None
        if interval.errors:
            return {}, "no share: reading /proc failed during the run (" + "; ".join(
                f"{k}: {v}" for k, v in interval.errors.items()) + ")"
        seconds = interval.joules
        shares: dict[str, float] = {}
        if seconds["machine_cpu"] > 0:
            shares["cpu"] = min(1.0, seconds["process_cpu"] / seconds["machine_cpu"])
        else:  # nothing ran at all: the process used none of the machine's CPU time
            shares["cpu"] = 0.0
        if seconds["machine_ram"] > 0:
            shares["ram"] = min(1.0, seconds["process_ram"] / seconds["machine_ram"])
        shares["process_cpu_s"] = seconds["process_cpu"]
        shares["machine_cpu_s"] = seconds["machine_cpu"]
        return shares, ""

    def stop(self, measurements: Iterable[Measurement]) -> list[Measurement]:
        """One ``attributed`` measurement beside each usable figure: machine, CPU or GPU."""
        shares, problem = self.shares()
        usable = [m for m in measurements if m.ok]
        gpus = gpu_shares(usable)
        if gpus:
            shares["gpu"] = _weighted(gpus)
        return [attribute_gpu(m) if m.scope == "gpu" else attribute(m, shares, problem) for m in usable]


def gpu_shares(measurements: Iterable[Measurement]) -> dict[str, tuple[float, float, str]]:
    """Per GPU that a backend split by process (NVML's ``extras["gpus"][label]["processes"]``):
    (the tree's share, the GPU's kWh, "" or what the share rests on)."""
    found: dict[str, tuple[float, float, str]] = {}
    for m in measurements:
        gpus = m.extras.get("gpus")
        if m.scope != "gpu" or not isinstance(gpus, Mapping):
            continue
        for label, info in gpus.items():
            processes = info.get("processes") if isinstance(info, Mapping) else None
            if isinstance(processes, Mapping):
                share, note = _gpu_share(processes)
                found[f"{m.backend}:{label}"] = (share, float(info.get("kwh", 0.0)), note)
    return found


def _gpu_share(processes: Mapping[str, Any]) -> tuple[float, str]:
    if processes.get("problem"):
        return 1.0, f"whole GPU: {processes['problem']}"
    total = float(processes.get("all_util", 0.0))
    if total <= 0:
        return 0.0, NO_GPU_USE
    return min(1.0, float(processes.get("tree_util", 0.0)) / total), ""


def _weighted(gpus: Mapping[str, tuple[float, float, str]]) -> float:
    """The tree's share of all these GPUs' energy (of their mean share when they used none)."""
    kwh = sum(energy for _, energy, _ in gpus.values())
    if kwh <= 0:
        return sum(share for share, _, _ in gpus.values()) / len(gpus)
    return sum(share * energy for share, energy, _ in gpus.values()) / kwh


def attribute_gpu(gpu: Measurement) -> Measurement:
    """The tree's share of a GPU figure: per GPU by NVML's per-process utilisation where the
    backend took it, else the GPU whole, said."""
    backend = gpu.backend + SHARE_SUFFIX
    methodology = f"{gpu.methodology}, this process's share of the machine"
    shares = gpu_shares([gpu])
    extras: dict[str, object] = {"of_backend": gpu.backend, "of_scope": gpu.scope, "of_energy_kwh": gpu.energy_kwh}
    if shares:
        energy = sum(share * kwh for share, kwh, _ in shares.values())
        extras["gpu_shares"] = {label.split(":", 1)[1]: round(share, 6) for label, (share, _, _) in shares.items()}
        notes = sorted({note for _, _, note in shares.values() if note})
        if notes:
            extras["gpu_share"] = "; ".join(notes)
    else:
        energy = gpu.energy_kwh
        extras["gpu_share"] = WHOLE_GPU
    return Measurement(backend=backend, methodology=methodology, kind="attributed", energy_kwh=energy,
                       duration_s=gpu.duration_s, scope="process", gpu_kwh=energy, hardware=gpu.hardware,
                       extras=extras)


def attribute(machine: Measurement, shares: dict[str, float], problem: str = "") -> Measurement:
    """The process tree's share of one machine figure, as its own measurement."""
    backend = machine.backend + SHARE_SUFFIX
    methodology = f"{machine.methodology}, this process's share of the machine"
    if problem or "cpu" not in shares:
        return Measurement.failed(backend, problem or "no share: no CPU share was measured",
                                  methodology=methodology, kind="attributed", duration_s=machine.duration_s,
                                  hardware=machine.hardware)
    cpu_share, ram_share = shares["cpu"], shares.get("ram", shares["cpu"])
    extras: dict[str, object] = {"of_backend": machine.backend, "of_scope": machine.scope,
                                 "of_energy_kwh": machine.energy_kwh, "cpu_share": round(cpu_share, 6),
                                 "ram_share": round(ram_share, 6),
                                 "process_cpu_s": round(shares["process_cpu_s"], 3),
                                 "machine_cpu_s": round(shares["machine_cpu_s"], 3)}
    parts = (machine.cpu_kwh, machine.ram_kwh, machine.gpu_kwh)
    cpu_kwh: float | None
    ram_kwh: float | None
    gpu_kwh: float | None
    if any(p is not None and math.isfinite(p) for p in parts):
        cpu = (machine.cpu_kwh or 0.0) * cpu_share
        ram = (machine.ram_kwh or 0.0) * ram_share
        gpu = machine.gpu_kwh or 0.0
        if gpu and "gpu" in shares:  # split as NVML split the same GPUs' energy for this tree
            gpu *= shares["gpu"]
            extras["gpu_share"] = round(shares["gpu"], 6)
        elif gpu:
            extras["gpu_share"] = WHOLE_GPU
        energy = cpu + ram + gpu
        cpu_kwh, ram_kwh, gpu_kwh = cpu, ram, (gpu if machine.gpu_kwh is not None else None)
    else:
        # A figure without components (a wall socket): the CPU share of the whole, said.
        energy = machine.energy_kwh * cpu_share
        cpu_kwh = ram_kwh = gpu_kwh = None
        extras["split"] = "no per-component figure: the whole machine figure times the CPU share"
    return Measurement(backend=backend, methodology=methodology, kind="attributed", energy_kwh=energy,
                       duration_s=machine.duration_s, scope="process", cpu_kwh=cpu_kwh, gpu_kwh=gpu_kwh,
                       ram_kwh=ram_kwh, hardware=machine.hardware, extras=extras)
