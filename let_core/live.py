"""Live figures of a running tracker: the one-line status that ``lett run`` and ``lett demo``
keep updated on a terminal, and the file each running tracker publishes in the node's runtime
directory (``live/``) for whoever wants the machine's runs in progress (``lett exporter``, a
follower rank whose leader died).

Both only read (``tracker.live()``); they never stop, flush or restart a backend, so a run
records the same energy with or without them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from attrs import frozen

from let_core.errors import LetWarning
from let_core.interfaces import LiveReading

if TYPE_CHECKING:
    from let_core.tracker import EnergyTracker


@frozen
class LiveStatus:
    """What ``EnergyTracker.live()`` returns: seconds since the run started and one reading per
    backend that can give one."""

    elapsed_s: float
    readings: tuple[LiveReading, ...]

    def of(self, backend: str) -> LiveReading:
        for reading in self.readings:
            if reading.backend == backend:
                return reading
        raise KeyError(f"no live reading of backend {backend!r}; have "
                       f"{', '.join(r.backend for r in self.readings) or 'none'}")


def read_live(started: Mapping[str, Any], elapsed_s: float) -> LiveStatus:
    readings = []
    for name, backend in started.items():
        live = getattr(backend, "live", None)
        if not callable(live):
            continue
        try:
            reading = live()
        except Exception as exc:  # a status line must never cost the run
            reading = LiveReading(backend=name, kind=str(getattr(backend, "kind", "")),
                                  energy_kwh=float("nan"), error=f"{type(exc).__name__}: {exc}")
        readings.append(reading)
    return LiveStatus(elapsed_s=elapsed_s, readings=tuple(readings))


def _energy(kwh: float) -> str:
    if kwh != kwh:  # NaN
        return "?"
    return f"{kwh * 1000:.3f} Wh" if kwh < 1 else f"{kwh:.3f} kWh"


def _reading(r: LiveReading) -> str:
    if r.error:
        return f"{r.backend} failed"
    power = f"{r.power_w:.1f} W" if r.power_w is not None else "? W"
    return f"{r.backend} {power} {_energy(r.energy_kwh)}"


def format_status(status: LiveStatus, width: int = 80) -> str:
    """``LET 12s | metered: rapl 31.2 W 0.104 Wh | estimate: codecarbon 45.0 W 0.150 Wh``,
    cut to ``width`` so that ``\\r`` can redraw it on one terminal line."""
    minutes, seconds = divmod(int(status.elapsed_s), 60)
    hours, minutes = divmod(minutes, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    parts = [f"LET {clock}"]
    for kind in ("metered", "estimate"):
        shown = [_reading(r) for r in status.readings if r.kind == kind]
        if shown:
            parts.append(f"{kind}: " + ", ".join(shown))
    others = [_reading(r) for r in status.readings if r.kind not in ("metered", "estimate")]
    parts.extend(others)
    if len(parts) == 1:
        parts.append("no live readings")
    line = " | ".join(parts)
    return line if len(line) <= width else line[: max(width - 1, 1)] + "…"


class StatusLine:
    """Redraws ``format_status(tracker.live())`` on ``stream`` every ``interval`` seconds.

    ``enabled=None`` decides from the stream: on only for a terminal (a log file or a pipe gets
    no carriage returns). Use as a context manager around the tracked work.
    """

    def __init__(self, tracker: EnergyTracker, stream: TextIO | None = None, interval: float = 1.0,
                 enabled: bool | None = None) -> None:
        self.tracker = tracker
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(callable(isatty) and isatty())
        self.enabled = enabled
        self.updates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._width = 0

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="let-status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._width:  # leave the terminal as it was: clear the status line
            self._write("\r" + " " * self._width + "\r")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal must not stop the run
            self._stop.set()

    def draw(self) -> None:
        if not self.tracker.running:
            return
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)
        line = format_status(self.tracker.live(), width)
        # Pad over the previous line's tail rather than relying on an escape code (\x1b[K).
        self._write("\r" + line.ljust(self._width))
        self._width = max(self._width, len(line))
        self.updates += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.draw()
            except Exception as exc:  # the run goes on; only the display stops
                warnings.warn(f"LET status line stopped: {type(exc).__name__}: {exc}", stacklevel=1)
                return


# ----------------------------------------------------------------------------- published runs
#: What a published file says it is: a reader skips any other version.
LIVE_FORMAT = 1
LIVE_DIR = "live"
LIVE_SUFFIX = ".json"


def live_dir(runtime_dir: Path) -> Path:
    """Where the running trackers of a node publish their figures: ``<runtime dir>/live``."""
    return runtime_dir / LIVE_DIR


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


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


def live_file(runtime_dir: Path, hostname: str, pid: int, run_id: str) -> Path:
    """A run's published file; the host name first, so that a runtime dir on a shared file
    system keeps the nodes apart."""
    return live_dir(runtime_dir) / f"{_safe(hostname)}-{pid}-{_safe(run_id)[:8]}{LIVE_SUFFIX}"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a reader sees the old or the new file, never a
    part: a temporary file in the same folder, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: A run whose file was not refreshed for this many intervals (and at least STALE_MIN_S) is no
#: longer reported: its process hangs, or its pid was reused by another program.
STALE_INTERVALS = 10
STALE_MIN_S = 60.0
# A run that ends within its first second never writes a live file: the exporter, scraping every
# few seconds, would hardly see it, and a short tracked run (or the second tracker of a process)
# would pay a file write, a rename and an unlink at stop for nothing (issue 19's bound).
FIRST_PUBLISH_S = 1.0


@frozen
class LiveScan:
    """What ``read_published`` found: the runs in progress, and the files it set aside."""

    runs: tuple[PublishedRun, ...]
    #: Files of processes that no longer run: a killed tracker's last figure (a follower rank
    #: whose node leader died takes the leader's from here).
    dead_runs: tuple[PublishedRun, ...] = ()
    stale: int = 0  # not refreshed for too long
    unreadable: int = 0  # damaged, of another version, or not readable

    @property
    def dead(self) -> int:
        return len(self.dead_runs)


def read_published(runtime_dir: Path, hostname: str, now: float | None = None) -> LiveScan:
    """The runs in progress on this host, from their published files. A missing directory is
    no run (an OSError if it cannot be listed); a damaged file, a dead process's file or a stale
    one is counted and skipped, never removed (a follower rank may still want a dead leader's
    last figure)."""
    folder = live_dir(runtime_dir)
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return LiveScan(runs=())
    now = time.time() if now is None else now
    prefix = f"{_safe(hostname)}-"
    runs, dead, stale, unreadable = [], [], 0, 0
    for name in names:
        if not (name.startswith(prefix) and name.endswith(LIVE_SUFFIX)):
            continue  # another node's (a shared runtime dir), or a writer's temporary file
        try:
            with open(folder / name, "rb") as handle:
                run = PublishedRun.from_json(json.loads(handle.read(1 << 20)))
        except (OSError, ValueError, UnicodeDecodeError):
            unreadable += 1
            continue
        if run.hostname != hostname:
            continue
        if not process_alive(run.pid):
            dead.append(run)
        elif now - run.updated > max(STALE_MIN_S, STALE_INTERVALS * run.interval_s):
            stale += 1
        else:
            runs.append(run)
    return LiveScan(runs=tuple(runs), dead_runs=tuple(dead), stale=stale, unreadable=unreadable)


class LivePublisher:
    """Publishes a running tracker's ``live()`` figures to its file every ``interval`` seconds,
    the first after FIRST_PUBLISH_S, and removes the file when the run stops.

    One daemon thread per process serves every publisher (see ``_Schedule``): a tracker's start
    costs no thread start, and many trackers in one process cost one thread. A failure to write
    (a full or read-only runtime dir) is one warning and the end of publishing, never of the run.
    """

    def __init__(self, tracker: EnergyTracker, runtime_dir: Path, interval: float) -> None:
        self.tracker = tracker
        self.interval = interval
        self.path = live_file(runtime_dir, tracker.hostname, os.getpid(), tracker.run_id)
        self._started = time.time()
        self._lock = threading.Lock()
        self._stopped = False
        self._failed = False
        self._written = False

    def start(self) -> LivePublisher:
        _SCHEDULE.add(self, time.monotonic() + min(self.interval, FIRST_PUBLISH_S))
        return self

    def publish(self) -> bool:
        """Write the file once; False when this publisher is done (stopped or failed)."""
        with self._lock:
            if self._failed or self._stopped or not self.tracker.running:
                return False
            status = self.tracker.live()
            run = PublishedRun(pid=os.getpid(), hostname=self.tracker.hostname, project=self.tracker.project_name,
                               user=self.tracker.user, run_id=self.tracker.run_id, started=self._started,
                               updated=time.time(), interval_s=self.interval, readings=status.readings)
            try:
                if not self._written:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(self.path, json.dumps(run.to_json()).encode("utf-8"))
            except OSError as exc:
                self._fail(exc)
                return False
            self._written = True
            return True

    def _fail(self, exc: OSError) -> None:
        self._failed = True
        warnings.warn(f"LET cannot publish this run's live figures to {self.path.parent} ({exc}); "
                      "`lett exporter` will not see it while it runs. The run itself is recorded as usual.",
                      LetWarning, stacklevel=2)

    def stop(self) -> None:
        """Stop publishing and remove the file: the run is in the store from now on."""
        _SCHEDULE.discard(self)
        with self._lock:  # waits for a write in progress; none starts after this
            self._stopped = True
            if self._written:
                with contextlib.suppress(OSError):
                    self.path.unlink()


class _Schedule:
    """The process's one publishing thread and the publishers it serves, each with its next time."""

    def __init__(self) -> None:
        self._due: dict[LivePublisher, float] = {}
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, publisher: LivePublisher, when: float) -> None:
        with self._wake:
            self._due[publisher] = when
            # is_alive: a forked child inherits the object but not the thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="let-live-publisher", daemon=True)
                self._thread.start()
            self._wake.notify()

    def discard(self, publisher: LivePublisher) -> None:
        with self._wake:
            self._due.pop(publisher, None)

    def _loop(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                ready = [p for p, when in self._due.items() if when <= now]
                if not ready:
                    self._wake.wait(min(self._due.values(), default=now + 60.0) - now)
                    continue
            for publisher in ready:  # outside the schedule's lock: a stop never waits on a write
                try:
                    going = publisher.publish()
                except Exception as exc:  # the run goes on; only its publishing stops
                    warnings.warn(f"LET live publishing stopped: {type(exc).__name__}: {exc}", LetWarning,
                                  stacklevel=1)
                    going = False
                with self._wake:
                    if not going:
                        self._due.pop(publisher, None)
                    elif publisher in self._due:
                        self._due[publisher] = time.monotonic() + publisher.interval


_SCHEDULE = _Schedule()
