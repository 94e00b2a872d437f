"""Per-host running energy totals built from polled socket readings.

The socket's ``Total`` is a counter other people (and LET 0.1.x) may reset, and that falls back
to its last flash save when the socket reboots. The server therefore never uses one reading's
``Total`` as an answer: it adds up the increases between consecutive readings. A drop is a
reset or reboot, not negative energy; the energy of that polling interval is then estimated from
the measured power (and counted as estimated, so data quality can say so). A socket that does not
answer opens a gap; when it answers again with a higher counter, the gap's energy is exact.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from attrs import define, field, frozen

from let_backends.tasmota.protocol import EnergyReading, SocketError

#: Counter noise below half the 0.01 Wh resolution is not a drop.
_DROP_TOLERANCE_KWH = 0.000005


@frozen
class Snapshot:
    """Cumulative counters of one host at one moment; sessions are differences of two."""

    mono: float
    energy_kwh: float
    estimated_kwh: float
    resets: int
    reboots: int
    gaps: int
    gap_s: float
    in_gap: bool
    power_w: float | None


@define
class HostMeter:
    host: str
    read: Callable[[], EnergyReading]  # the socket's Status 8, raising SocketError on failure
    #: Seconds since the socket booted (Status 11); asked only when a gap closes, because a
    #: socket that rebooted in a gap may already have counted past its old Total.
    uptime: Callable[[], float | None] | None = None
    clock: Callable[[], float] = time.monotonic
    # cumulative since the server began metering this host
    energy_kwh: float = 0.0
    estimated_kwh: float = 0.0
    resets: int = 0
    reboots: int = 0
    gaps: int = 0
    gap_s_closed: float = 0.0
    polls: int = 0
    failures: int = 0
    last: EnergyReading | None = None
    last_ok: float | None = None
    failing_since: float | None = None
    last_error: str = ""
    last_attempt_start: float = -1.0
    last_attempt_end: float = -1.0
    last_attempt_ok: bool = False
    started: float = 0.0
    _lock: threading.Lock = field(init=False, factory=threading.Lock)  # guards the counters
    _poll_lock: threading.Lock = field(init=False, factory=threading.Lock)  # one socket read at a time

    def __attrs_post_init__(self) -> None:
        self.started = self.clock()

    # ------------------------------------------------------------------------------ polling
    def refresh(self, arrival: float | None = None, wait_s: float = 10.0) -> bool:
        """Make sure a reading attempted after ``arrival`` exists; True if the socket answered.

        Concurrent callers coalesce: one polls, the others reuse its attempt. A caller never waits
        for more than ``wait_s`` plus one attempt (each bounded by the socket timeout).
        """
        arrival = self.clock() if arrival is None else arrival
        if not self._poll_lock.acquire(timeout=wait_s):
            return False
        try:
            if self.last_attempt_start >= arrival:
                return self.last_attempt_ok
            if self.last_attempt_end >= arrival and not self.last_attempt_ok:
                return False  # it was just tried, and failed, while we waited: do not wait again
            return self._poll()
        finally:
            self._poll_lock.release()

    def _poll(self) -> bool:
        t0 = self.clock()
        self.last_attempt_start = t0
        try:
            reading = self.read()
        except SocketError as exc:
            self._failed(t0, str(exc))
            return False
        except Exception as exc:  # a bug or an odd answer must never stop the poller
            self._failed(t0, f"{type(exc).__name__}: {exc}")
            return False
        finally:
            self.last_attempt_end = self.clock()
        # The reading was taken somewhere during the request; its middle is the best guess.
        t = (t0 + self.last_attempt_end) / 2.0
        rebooted = False
        if self.failing_since is not None and self.last_ok is not None and self.uptime is not None:
            try:
                up = self.uptime()
            except Exception:  # no uptime: fall back to the counter-drop rule alone
                up = None
            rebooted = up is not None and up < t - self.last_ok
        self._ingest(reading, t, rebooted)
        self.last_attempt_ok = True
        return True

    def _failed(self, t0: float, error: str) -> None:
        with self._lock:
            self.polls += 1
            self.failures += 1
            self.last_error = error
            self.last_attempt_ok = False
            if self.failing_since is None:
                self.failing_since = self.last_ok if self.last_ok is not None else t0
                self.gaps += 1

    def _ingest(self, reading: EnergyReading, t: float, rebooted: bool = False) -> None:
        with self._lock:
            self.polls += 1
            last, last_ok = self.last, self.last_ok
            if last is not None and last_ok is not None:
                delta = reading.total_kwh - last.total_kwh
                if delta >= -_DROP_TOLERANCE_KWH and not rebooted:
                    self.energy_kwh += max(delta, 0.0)
                else:
                    # Counter went down: reset (new TotalStartTime or back to ~0) or reboot (back to
                    # the last flash save). The interval's energy comes from the power readings.
                    estimate = (last.power_w + reading.power_w) / 2.0 * max(t - last_ok, 0.0) / 3.6e6
                    self.energy_kwh += estimate
                    self.estimated_kwh += estimate
                    if not rebooted and (reading.total_start_time != last.total_start_time
                                         or reading.total_kwh <= estimate + _DROP_TOLERANCE_KWH):
                        self.resets += 1
                    else:
                        self.reboots += 1
            if self.failing_since is not None:
                self.gap_s_closed += max(t - self.failing_since, 0.0)
                self.failing_since = None
            self.last, self.last_ok = reading, t
            self.last_error = ""

    # ------------------------------------------------------------------------------ reading
    def snapshot(self, now: float | None = None) -> Snapshot:
        now = self.clock() if now is None else now
        with self._lock:
            energy, estimated, gap_s = self.energy_kwh, self.estimated_kwh, self.gap_s_closed
            if self.failing_since is not None:
                gap_s += max(now - self.failing_since, 0.0)
                if self.last is not None and self.last_ok is not None:
                    # Provisional: the last power for the silent time. Replaced by the counter's
                    # exact increase if the socket answers again without having lost it.
                    extra = self.last.power_w * max(now - self.last_ok, 0.0) / 3.6e6
                    energy += extra
                    estimated += extra
            return Snapshot(now, energy, estimated, self.resets, self.reboots, self.gaps, gap_s,
                            self.failing_since is not None,
                            self.last.power_w if self.last is not None else None)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        snap = self.snapshot(now)
        with self._lock:
            last = self.last
            return {
                "host": self.host,
                "online": self.last_ok is not None and self.failing_since is None,
                "power_w": last.power_w if last else None,
                "voltage_v": last.voltage_v if last else None,
                "current_a": last.current_a if last else None,
                "reading_age_s": round(now - self.last_ok, 3) if self.last_ok is not None else None,
                "metered_kwh": snap.energy_kwh,
                "metering_since_s": round(now - self.started, 3),
                "socket_total_kwh": last.total_kwh if last else None,
                "socket_time": last.socket_time if last else None,
                "resets": self.resets,
                "reboots": self.reboots,
                "gaps": self.gaps,
                "gap_seconds": round(snap.gap_s, 3),
                "estimated_kwh": snap.estimated_kwh,
                "polls": self.polls,
                "failures": self.failures,
                "last_error": self.last_error,
            }


def quality(start: Snapshot, stop: Snapshot) -> dict[str, Any]:
    """What happened to a host's metering between two snapshots."""
    gaps = stop.gaps - start.gaps + (1 if start.in_gap else 0)
    resets = stop.resets - start.resets
    reboots = stop.reboots - start.reboots
    estimated = max(stop.estimated_kwh - start.estimated_kwh, 0.0)
    return {
        "complete": gaps == 0 and resets == 0 and reboots == 0,
        "gaps": gaps,
        "gap_seconds": round(max(stop.gap_s - start.gap_s, 0.0), 3),
        "resets": resets,
        "reboots": reboots,
        "estimated_kwh": estimated,
        "socket_online": not stop.in_gap,
    }
