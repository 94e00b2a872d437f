"""Live figures of a running tracker: the one-line status that ``lett run`` and ``lett demo``
keep updated on a terminal, and the reading of the files each running tracker publishes in
the node's runtime directory (``let_core.livedir``) for whoever wants the machine's runs in
progress (``lett exporter``, a follower rank whose leader died).

Both only read (``tracker.live()``); they never stop, flush or restart a backend, so a run
records the same energy with or without them.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from attrs import frozen

from let_core.interfaces import LiveReading
from let_core.livedir import LIVE_SUFFIX, host_prefix, live_dir, process_alive
from let_core.livefile import PublishedRun

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
        import shutil  # (it imports bz2 and lzma: 2 ms that only a status line needs)

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


#: A run whose file was not refreshed for this many intervals (and at least STALE_MIN_S) is no
#: longer reported: its process hangs, or its pid was reused by another program.
STALE_INTERVALS = 10
STALE_MIN_S = 60.0
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
    prefix = host_prefix(hostname)
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


