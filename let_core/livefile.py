"""What one live file holds: a running tracker's figures as it last published them
(``PublishedRun``), in the format version readers check. The files' names and folder are
``let_core.livedir``'s; this module is apart so that a tracker's start, which only schedules
its first publication, does not build the class (an attrs class costs a tracked process about
1% of its instructions)."""

from __future__ import annotations

import math
from typing import Any

from attrs import frozen

from let_core.interfaces import LiveReading

#: What a published file says it is: a reader skips any other version.
LIVE_FORMAT = 1


@frozen
class PublishedRun:
    """One run in progress, as its tracker last published it."""

    pid: int
    hostname: str
    project: str
    user: str
    run_id: str
    started: float  # epoch seconds
    updated: float  # epoch seconds
    interval_s: float
    readings: tuple[LiveReading, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": LIVE_FORMAT, "pid": self.pid, "hostname": self.hostname, "project": self.project,
                "user": self.user, "run_id": self.run_id, "started": self.started, "updated": self.updated,
                "interval_s": self.interval_s,
                "readings": [{"backend": r.backend, "kind": r.kind,
                              "energy_kwh": r.energy_kwh if math.isfinite(r.energy_kwh) else None,
                              "power_w": r.power_w, "error": r.error} for r in self.readings]}

    @classmethod
    def from_json(cls, data: Any) -> PublishedRun:
        """Raises ValueError on anything that is not what ``to_json`` wrote."""
        if not isinstance(data, dict) or data.get("format") != LIVE_FORMAT:
            raise ValueError("not a LET live file of this version")

        def text(value: Any) -> str:
            if not isinstance(value, str):
                raise ValueError(f"expected text, got {value!r}")
            return value

        def number(value: Any, optional: bool = False) -> float | None:
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
            return float(value)

        readings = []
        raw = data.get("readings")
        if not isinstance(raw, list):
            raise ValueError("readings must be a list")
        for item in raw:
            if not isinstance(item, dict):
                raise ValueError("a reading must be an object")
            energy = number(item.get("energy_kwh"), optional=True)
            readings.append(LiveReading(backend=text(item.get("backend")), kind=text(item.get("kind")),
                                        energy_kwh=math.nan if energy is None else energy,
                                        power_w=number(item.get("power_w"), optional=True),
                                        error=text(item.get("error", ""))))
        pid = data.get("pid")
        if type(pid) is not int or pid <= 0:
            raise ValueError(f"pid must be a positive integer, got {pid!r}")
        return cls(pid=pid, hostname=text(data.get("hostname")), project=text(data.get("project")),
                   user=text(data.get("user")), run_id=text(data.get("run_id")),
                   started=number(data.get("started")) or 0.0, updated=number(data.get("updated")) or 0.0,
                   interval_s=number(data.get("interval_s")) or 0.0, readings=tuple(readings))
