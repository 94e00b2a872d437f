"""The node's live dir, where each running tracker publishes its figures (``live/`` in the
runtime dir), and the thread that publishes them.

A tracker's start imports this module and no more: what reads the files (``lett exporter``,
the status line) is ``let_core.live``; what records a run whose process died is
``let_core.recovery``, imported only when a header waits in the live dir; what a file holds is
``let_core.livefile``, imported at the first publication.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from let_core.atomicfile import write_atomically
from let_core.errors import LetWarning

if TYPE_CHECKING:
    from let_core.tracker import EnergyTracker

LIVE_DIR = "live"
LIVE_SUFFIX = ".json"
#: Beside a run's figures, what its record needs if the process dies (``let_core.recovery``).
HEADER_SUFFIX = ".header"


def header_path(published: Path) -> Path:
    """The header beside a run's published figures."""
    return published.with_suffix(HEADER_SUFFIX)


def holds_headers(runtime_dir: Path) -> bool:
    """Whether any run's header is in the node's live dir: only then may a run have died
    unrecorded (one listing, so a tracker's start imports ``recovery`` only when it may need it)."""
    try:
        return any(name.endswith(HEADER_SUFFIX) for name in os.listdir(live_dir(runtime_dir)))
    except OSError:
        return False


def live_dir(runtime_dir: Path) -> Path:
    """Where the running trackers of a node publish their figures: ``<runtime dir>/live``."""
    return runtime_dir / LIVE_DIR


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]




def host_prefix(hostname: str) -> str:
    """The start of every file name of a host's runs in a live dir."""
    return f"{_safe(hostname)}-"


def live_file(runtime_dir: Path, hostname: str, pid: int, run_id: str) -> Path:
    """A run's published file; the host name first, so that a runtime dir on a shared file
    system keeps the nodes apart."""
    return live_dir(runtime_dir) / f"{host_prefix(hostname)}{pid}-{_safe(run_id)[:8]}{LIVE_SUFFIX}"


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A run that ends within its first second never writes a live file: the exporter, scraping every
# few seconds, would hardly see it, and a short tracked run (or the second tracker of a process)
# would pay a file write, a rename and an unlink at stop for nothing (issue 19's bound).
FIRST_PUBLISH_S = 1.0
#: How often the publishing thread looks at an empty schedule, FIRST_PUBLISH_S apart, before
#: it sleeps until a tracker starts.
IDLE_LOOKS = 60


class LivePublisher:
    """Publishes a running tracker's ``live()`` figures to its file every ``interval`` seconds,
    the first after FIRST_PUBLISH_S, and removes the file when the run stops.

    One daemon thread per process serves every publisher (see ``_Schedule``): a tracker's start
    costs no thread start, and many trackers in one process cost one thread. A failure to write
    (a full or read-only runtime dir) is one warning and the end of publishing, never of the run.
    """

    def __init__(self, tracker: EnergyTracker, runtime_dir: Path, interval: float,
                 write_header: Callable[[Path], Path] | None = None) -> None:
        self.tracker = tracker
        self.interval = interval
        self._runtime_dir = runtime_dir
        self._path: Path | None = None
        #: Called with ``header_path(path)`` before the first figures are written: a run that
        #: dies before it published has nothing to recover, so its start writes nothing.
        self._write_header = write_header
        #: The header written, once it is (for the tracker to remove once the run is recorded).
        self.header: Path | None = None
        self._started = time.time()
        self._lock = threading.Lock()
        self._stopped = False
        self._failed = False
        self._written = False

    @property
    def path(self) -> Path:
        """The run's published file (named when first asked: most short runs never publish)."""
        if self._path is None:
            self._path = live_file(self._runtime_dir, self.tracker.hostname, os.getpid(), self.tracker.run_id)
        return self._path

    def start(self) -> LivePublisher:
        _SCHEDULE.add(self, time.monotonic() + min(self.interval, FIRST_PUBLISH_S))
        return self

    def publish(self) -> bool:
        """Write the file once; False when this publisher is done (stopped or failed)."""
        with self._lock:
            if self._failed or self._stopped or not self.tracker.running:
                return False
            from let_core.livefile import PublishedRun  # here, not at a tracker's start (an attrs class)

            status = self.tracker.live()
            run = PublishedRun(pid=os.getpid(), hostname=self.tracker.hostname, project=self.tracker.project_name,
                               user=self.tracker.user, run_id=self.tracker.run_id, started=self._started,
                               updated=time.time(), interval_s=self.interval, readings=status.readings)
            try:
                if not self._written:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    if self._write_header is not None and self.header is None:
                        self.header = self._write_header(header_path(self.path))
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
        #: When the thread next looks at the schedule by itself (it is asleep until then).
        self._wakes_at = math.inf

    def add(self, publisher: LivePublisher, when: float) -> None:
        with self._wake:
            self._due[publisher] = when
            # is_alive: a forked child inherits the object but not the thread.
            if self._thread is None or not self._thread.is_alive():
                self._wakes_at = math.inf
                self._thread = threading.Thread(target=self._loop, name="let-live-publisher", daemon=True)
                self._thread.start()
            elif when < self._wakes_at:  # else the thread finds it when it wakes anyway
                self._wake.notify()

    def discard(self, publisher: LivePublisher) -> None:
        with self._wake:
            self._due.pop(publisher, None)

    def _loop(self) -> None:
        idle = 0
        while True:
            with self._wake:
                now = time.monotonic()
                ready = [p for p, when in self._due.items() if when <= now]
                if not ready:
                    if self._due:
                        self._wakes_at, idle = min(self._due.values()), 0
                    elif idle < IDLE_LOOKS:
                        # Nothing tracked: look again when a publisher added now would first be
                        # due, so that the next tracker's start needs no wake-up call (a context
                        # switch, a tenth of a second tracker's cost).
                        self._wakes_at, idle = now + FIRST_PUBLISH_S, idle + 1
                    else:  # idle for a minute: asleep until a tracker starts
                        self._wakes_at = math.inf
                    self._wake.wait(None if self._wakes_at == math.inf else self._wakes_at - now)
                    continue
                self._wakes_at = math.inf  # busy publishing: an add must not wait for the next wake
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
