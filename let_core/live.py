"""Live figures of a running tracker, and the one-line status that ``lett run`` and ``lett demo``
keep updated on a terminal.

The status line only reads (``tracker.live()``); it never stops, flushes or restarts a
backend, so a run records the same energy with or without it.
"""

from __future__ import annotations

import shutil
import sys
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from attrs import frozen

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
