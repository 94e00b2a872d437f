"""Runs whose process died before it stopped its tracker keep what they had published.

A tracked process killed by SIGKILL, the OOM killer or a job's time limit (Slurm sends SIGTERM,
which Python does not catch by default) never reaches ``stop()``: nothing is stored. While it
ran, though, its tracker published its figures so far in the node's runtime dir
(``let_core.livedir``), and before the first of them it wrote what a run record needs that those
figures lack: project, store, start, job fields, each backend's kind, scope, methodology and
hardware (``RunHeader``, a ``.header`` file next to the published ``.json``). A tracker that
stops removes both. So a header whose process is gone is a run that died: the next tracker to
start on the node (or the follower rank of a node leader that died, ``let_core.nodemeter``) records
it, from its last published reading, as a failed run whose ``error`` says so, and removes the
files so that it is recorded once (an ``flock`` on the header keeps two recorders apart).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from attrs import field, frozen

from let_core.atomicfile import write_atomically
from let_core.jobs import boot_id
from let_core.livedir import HEADER_SUFFIX, LIVE_SUFFIX, live_dir, process_alive
from let_core.livefile import PublishedRun
from let_core.records import Measurement, Run

HEADER_FORMAT = 1
#: The mark of a recorded run of a process that died (``error`` starts with it).
PROCESS_DIED = "process_died"
#: The mark of a node leader's run recorded by another rank of its launch.
LEADER_DIED = "leader_died"


@frozen
class RunHeader:
    """What a run record needs beyond the published figures, written once when a run starts."""

    pid: int
    boot: str
    run_id: str
    hostname: str
    project: str
    user: str
    output_dir: str
    start: float  # epoch seconds
    country_iso_code: str
    country_name: str
    carbon_intensity: float
    environment: Mapping[str, str] = field(factory=dict)
    #: Per backend name: kind, scope, methodology, hardware.
    backends: Mapping[str, Mapping[str, str]] = field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": HEADER_FORMAT, "pid": self.pid, "boot": self.boot, "run_id": self.run_id,
                "hostname": self.hostname, "project": self.project, "user": self.user,
                "output_dir": self.output_dir, "start": self.start, "country_iso_code": self.country_iso_code,
                "country_name": self.country_name, "carbon_intensity": self.carbon_intensity,
                "environment": dict(self.environment), "backends": {k: dict(v) for k, v in self.backends.items()}}

    @classmethod
    def from_json(cls, data: Any) -> RunHeader:
        """Raises ValueError on anything that is not what ``to_json`` wrote."""
        if not isinstance(data, dict) or data.get("format") != HEADER_FORMAT:
            raise ValueError("not a LET run header of this version")
        texts = ("boot", "run_id", "hostname", "project", "user", "output_dir", "country_iso_code", "country_name")
        if not all(isinstance(data.get(k), str) for k in texts):
            raise ValueError("a header's names must be text")
        pid, start, intensity = data.get("pid"), data.get("start"), data.get("carbon_intensity")
        if type(pid) is not int or pid <= 0:
            raise ValueError(f"pid must be a positive integer, got {pid!r}")
        for value in (start, intensity):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
        environment, backends = data.get("environment"), data.get("backends")
        if not isinstance(environment, dict) or not all(isinstance(v, str) for v in environment.values()):
            raise ValueError("environment must map names to text")
        if not isinstance(backends, dict) or not all(
                isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in backends.values()):
            raise ValueError("backends must map names to their kind, scope, methodology and hardware")
        return cls(pid=pid, start=float(start), carbon_intensity=float(intensity),  # type: ignore[arg-type]
                   environment=dict(environment), backends={str(k): dict(v) for k, v in backends.items()},
                   **{k: data[k] for k in texts})

    def note(self, published: PublishedRun) -> str:
        """What the recorded run's ``error`` says: who died, and up to when it was measured."""
        at = datetime.fromtimestamp(published.updated, timezone.utc).isoformat(timespec="seconds")
        kept = (f"its figures up to its last published reading ({at}) are kept, the rest of its run "
                "was not measured")
        if self.environment.get("node_meter", "").startswith("node leader"):
            rank = self.environment.get("rank", "") or "?"
            return f"{LEADER_DIED}: the node leader (rank {rank}, pid {self.pid}) died mid-run; {kept}"
        return (f"{PROCESS_DIED}: the tracked process (pid {self.pid}) ended without stopping its tracker "
                f"(killed: a time limit, the OOM killer, SIGKILL); {kept}")

    def run(self, published: PublishedRun) -> Run:
        """The run as far as it was measured, failed, with the note in its error."""
        note = self.note(published)
        duration = max(0.0, published.updated - self.start)
        stamp = datetime.fromtimestamp(published.updated, timezone.utc).isoformat(timespec="seconds")
        measurements = []
        for reading in published.readings:
            about = self.backends.get(reading.backend, {})
            if reading.error or not math.isfinite(reading.energy_kwh) or reading.kind not in ("estimate", "metered"):
                continue
            measurements.append(Measurement(
                backend=reading.backend, methodology=about.get("methodology", ""), kind=reading.kind,  # type: ignore[arg-type]
                energy_kwh=reading.energy_kwh, duration_s=duration, scope=about.get("scope", "") or "system",
                hardware=about.get("hardware", ""), extras={"recovered": True, "published_at": stamp}))
        start = datetime.fromtimestamp(self.start, timezone.utc)
        environment = dict(self.environment)
        if environment.get("node_meter", "").startswith("node leader"):
            environment["node_meter"] = note
        return Run(run_id=self.run_id, project_name=self.project, user=self.user, hostname=self.hostname,
                   start_time=start, end_time=start + timedelta(seconds=duration), status="failed",
                   measurements=tuple(measurements), country_iso_code=self.country_iso_code,
                   country_name=self.country_name, carbon_intensity=self.carbon_intensity,
                   environment=environment, error=note)


def write_header(path: Path, header: RunHeader) -> Path:
    """Write a run's header at ``path`` (``live.header_path`` of its figures; raises OSError)."""
    write_atomically(path, json.dumps(header.to_json()).encode("utf-8"))
    return path


def recover(path: Path, hostname: str) -> Run | None:
    """Record the run of a header of this host whose process died, once; None if it lives, was
    recorded already, or published nothing (then its leftover files go)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # another process is recording it
        if os.fstat(fd).st_nlink == 0:
            return None  # recorded (and removed) while this one waited
        try:
            header = RunHeader.from_json(json.loads(os.pread(fd, 1 << 20, 0)))
        except (ValueError, UnicodeDecodeError):
            return None  # damaged: left for a person to look at, never guessed at
        if header.hostname != hostname:
            return None  # another node's, in a runtime dir they share: its pids are not this node's
        if header.pid == os.getpid() or (header.boot == boot_id() and process_alive(header.pid)):
            return None
        figures = path.with_suffix(LIVE_SUFFIX)
        try:
            published = PublishedRun.from_json(json.loads(figures.read_bytes()))
        except FileNotFoundError:
            published = None  # it died before it published, or it stopped and its header stayed
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        run = None
        if published is not None and published.run_id == header.run_id:
            run = header.run(published)
            _store(header.output_dir, run)
        for leftover in (figures, path):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
        return run
    finally:
        os.close(fd)


def _store(output_dir: str, run: Run) -> None:
    import warnings

    from let_core._version import __version__
    from let_core.errors import LetWarning, StoreError
    from let_core.store import Store

    try:
        Store(output_dir).append(run.rows(__version__))
    except StoreError as exc:  # the store keeps the rows in its rescue file; the message says where
        warnings.warn(str(exc), LetWarning, stacklevel=3)


def recover_dead_runs(runtime_dir: Path, hostname: str) -> list[Run]:
    """Record every run of this host whose process died (``recover`` each header)."""
    folder = live_dir(runtime_dir)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    recovered = []
    for name in names:
        if name.endswith(HEADER_SUFFIX):
            run = recover(folder / name, hostname)
            if run is not None:
                recovered.append(run)
    return recovered
