"""A fake Linux powercap tree of real files, laid out as /sys/class/powercap is.

Counters hold ``energy_uj`` values in 0..max_energy_range_uj and wrap as the kernel's do.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

#: The real range of most Intel package counters (2^32 units of 61 µJ).
REAL_RANGE_UJ = 262143328850


class FakePowercap:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "intel-rapl").mkdir(exist_ok=True)  # the control type folder, no counter
        self.absolute: dict[str, int] = {}  # energy used since boot, never wraps
        self.ranges: dict[str, int] = {}

    def add_zone(self, zone_id: str, name: str, max_range: int = REAL_RANGE_UJ,
                 start_uj: int = 0) -> Path:
        path = self.root / zone_id
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "max_energy_range_uj").write_text(f"{max_range}\n")
        self.ranges[zone_id] = max_range
        self.absolute[zone_id] = start_uj
        self._write(zone_id)
        (path / "energy_uj").chmod(0o400)  # root-only, as since Linux 5.10
        return path

    def _write(self, zone_id: str) -> None:
        self.set_raw(zone_id, self.absolute[zone_id] % (self.ranges[zone_id] + 1))

    def add(self, zone_id: str, uj: int) -> None:
        self.absolute[zone_id] += uj
        self._write(zone_id)

    def set_raw(self, zone_id: str, value: int) -> None:
        """Write a raw counter value (a reset: the counter jumps, no energy is implied).

        Replaced atomically, keeping the file's mode: a sysfs read never sees half a write.
        """
        path = self.root / zone_id / "energy_uj"
        tmp = path.with_name("energy_uj.tmp")
        tmp.write_text(f"{value}\n")
        if path.exists():
            tmp.chmod(path.stat().st_mode & 0o777)
        os.replace(tmp, path)

    def raw(self, zone_id: str) -> int:
        return int((self.root / zone_id / "energy_uj").read_text())


def server_tree(root: Path, max_range: int = REAL_RANGE_UJ) -> FakePowercap:
    """Two sockets with core sub-zones and DRAM sub-zones, and an MMIO duplicate of package-0."""
    tree = FakePowercap(root)
    for socket in (0, 1):
        tree.add_zone(f"intel-rapl:{socket}", f"package-{socket}", max_range)
        tree.add_zone(f"intel-rapl:{socket}:0", "core", max_range)
        tree.add_zone(f"intel-rapl:{socket}:1", "dram", max_range)
    tree.add_zone("intel-rapl-mmio:0", "package-0", max_range)
    return tree


class Advancer:
    """A thread that advances counters, never more than ``max_steps_ahead`` steps past the
    sampler's last poll, so that a test can be exact on a loaded machine without timing."""

    def __init__(self, step: Callable[[], None], polls: Callable[[], int],
                 max_steps_ahead: int = 3, period_s: float = 0.002) -> None:
        self._step = step
        self._polls = polls
        self._ahead = max_steps_ahead
        self._period = period_s
        self._halt = threading.Event()
        self.steps = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seen, ahead = self._polls(), 0
        while not self._halt.is_set():
            polls = self._polls()
            if polls != seen:
                seen, ahead = polls, 0
            if ahead < self._ahead:
                self._step()
                self.steps += 1
                ahead += 1
            self._halt.wait(self._period)

    def __enter__(self) -> Advancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join()
