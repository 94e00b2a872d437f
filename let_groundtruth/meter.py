"""Per-host running energy totals built from polled socket readings.

The socket's ``Total`` is a counter other people (and LET 0.1.x) may reset, and that falls back
to its last flash save when the socket reboots. The server therefore never uses one reading's
``Total`` as an answer: it adds up the increases between consecutive readings.

Every reading is checked before it counts (``Limits``): finite, non-negative, a counter below
``max_total_kwh`` (beyond it a float cannot resolve the 0.01 Wh steps, so ``1e308`` would make
every later increase 0) and a rise no faster than the socket's rated maximum power over the
elapsed time. What fails the check is never energy:

- a reading that is not finite/negative/absurd is a failed poll (the gap stays open, the last
  good reading stays the baseline, so one bad answer never poisons later sessions);
- a rise faster than the rated power (someone ran ``EnergyTotal 5000000``) and a drop (reset or
  reboot) close the interval as an *interpolated gap*: its energy is estimated from the measured
  power and the new reading becomes the baseline.

A socket that does not answer opens an outage; when it answers again with a plausible increase
(and its uptime says it did not reboot), the outage's energy is the counter's exact increase and
it costs no coverage. Otherwise the outage is an interpolated gap too.

Coverage of a session = 1 - interpolated seconds / duration. The clock is monotonic
(``time.monotonic``, or the service's injected one): a wall-clock step changes no interval.
Persisted instants are moved onto the running clock at restore (``clock.Clock.offset_since``).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen

from let_backends.tasmota.config import DEFAULT_RATED_MAX_W, max_energy_kwh
from let_groundtruth.protocol import EnergyReading, SocketError

#: Counter noise below half the 0.01 Wh resolution is not a drop.
_DROP_TOLERANCE_KWH = 0.000005
#: A session boundary wants a reading whose instant is known to within this many times the
#: bracket the host's link achieves, or ``SHARP_FLOOR_S``; see ``HostMeter.sharp_span_s``.
SHARP_FACTOR = 2.0
SHARP_FLOOR_S = 0.001
_SPAN_HISTORY = 64


@frozen
class Limits:
    """What a plausible reading looks like (the server's ``--rated-max-w``)."""

    rated_max_w: float = DEFAULT_RATED_MAX_W
    #: Beyond 1e9 kWh a double no longer resolves the 1e-5 kWh counter step.
    max_total_kwh: float = 1e9

    def problem(self, reading: EnergyReading) -> str:
        """Why a reading on its own is implausible, or "" when it is fine."""
        for name, value in (("Total", reading.total_kwh), ("Power", reading.power_w)):
            if not math.isfinite(value):
                return f"{name} is {value!r}"
            if value < 0:
                return f"{name} is negative ({value!r})"
        if reading.total_kwh > self.max_total_kwh:
            return f"Total {reading.total_kwh!r} kWh is beyond any real counter"
        if reading.power_w > self.rated_max_w * 1.1:
            return f"Power {reading.power_w!r} W is above the socket's rated {self.rated_max_w:g} W"
        return ""

    def max_rise_kwh(self, dt: float) -> float:
        return max_energy_kwh(self.rated_max_w, dt)


@frozen
class Snapshot:
    """Cumulative counters of one host at one moment; sessions are differences."""

    mono: float  # the meter's monotonic clock (seconds) at this snapshot
    energy_kwh: float
    estimated_kwh: float
    resets: int
    reboots: int
    gaps: int  # outages (socket silent), closed or open
    gap_s: float  # seconds of outages
    in_gap: bool
    power_w: float | None
    #: interpolated intervals: closed ones, plus the open outage (which may still turn out exact)
    interp_n_closed: int = 0
    interp_n: int = 0
    interp_s: float = 0.0
    implausible: int = 0
    #: half the request time of the reading this snapshot stands on: when, within the request,
    #: the socket took it is unknown (a session's boundary is that uncertain in time)
    timing_s: float = 0.0


@define
class HostMeter:
    host: str
    read: Callable[[], EnergyReading]  # the socket's Status 8, raising SocketError on failure
    #: Seconds since the socket booted (Status 11); asked only when a gap closes, because a
    #: socket that rebooted in a gap may already have counted past its old Total.
    uptime: Callable[[], float | None] | None = None
    clock: Callable[[], float] = time.monotonic  # never the wall clock: see the module's docstring
    limits: Limits = Limits()
    # cumulative since the server began metering this host (persisted across restarts)
    energy_kwh: float = 0.0
    estimated_kwh: float = 0.0
    resets: int = 0
    reboots: int = 0
    gaps: int = 0
    gap_s_closed: float = 0.0
    interp_n: int = 0
    interp_s: float = 0.0
    implausible: int = 0
    polls: int = 0
    failures: int = 0
    last: EnergyReading | None = None
    last_ok: float | None = None
    failing_since: float | None = None
    last_error: str = ""
    last_attempt_start: float = -1.0
    last_attempt_end: float = -1.0
    last_attempt_ok: bool = False
    last_read_s: float = 0.0  # how long the bracket of the last good reading's instant was
    started: float = 0.0
    #: restored from the state and not read since: the persisted energy may lag what was shown
    awaiting_first_reading: bool = False
    #: bumped on every change, so the state store writes only what moved
    version: int = 0
    _lock: threading.Lock = field(init=False, factory=threading.Lock)  # guards the counters
    _poll_lock: threading.Lock = field(init=False, factory=threading.Lock)  # one socket read at a time
    #: brackets (s) of the recent good readings, for what "typical" means on this host's link
    _spans: deque[float] = field(init=False, factory=lambda: deque(maxlen=_SPAN_HISTORY))

    def __attrs_post_init__(self) -> None:
        if not self.started:
            self.started = self.clock()

    # ------------------------------------------------------------------------------ polling
    def refresh(self, arrival: float | None = None, wait_s: float = 10.0) -> bool:
        """Make sure a reading attempted after ``arrival`` exists; True if the socket answered.

        Concurrent callers coalesce: one polls, the others reuse its attempt. A caller never waits
        for more than ``wait_s`` plus one attempt (each bounded by the socket's total deadline).
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
        mono0 = time.monotonic()  # the reading's `taken` bracket is on this clock
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
        problem = self.limits.problem(reading)
        if problem:
            with self._lock:
                self.implausible += 1
            self._failed(t0, f"implausible reading ignored: {problem}")
            return False
        # The socket took the reading somewhere between sending the request and the answer's
        # first byte (the whole call when that is not known); the middle is the best guess and
        # half the bracket its uncertainty. Connecting and parsing lie outside the bracket: under
        # load they made a reading look up to tens of ms older or younger than it was.
        lo, hi = t0, self.last_attempt_end
        if reading.taken is not None:
            lo = min(max(t0 + (reading.taken[0] - mono0), t0), hi)
            hi = min(max(t0 + (reading.taken[1] - mono0), lo), hi)
        t = (lo + hi) / 2.0
        rebooted = False
        if self.failing_since is not None and self.last_ok is not None and self.uptime is not None:
            try:
                up = self.uptime()
            except Exception:  # no uptime: fall back to the counter-drop rule alone
                up = None
            rebooted = up is not None and up < t - self.last_ok
        self._ingest(reading, t, rebooted, span_s=hi - lo)
        self.last_attempt_ok = True
        return True

    def _failed(self, t0: float, error: str) -> None:
        with self._lock:
            self.polls += 1
            self.failures += 1
            self.version += 1
            self.last_error = error
            self.last_attempt_ok = False
            if self.failing_since is None:
                self.failing_since = self.last_ok if self.last_ok is not None else self.started
                self.gaps += 1

    def _interpolate(self, last: EnergyReading, reading: EnergyReading, dt: float) -> float:
        """Energy of an interval the counter cannot tell: the mean of the two power readings."""
        estimate = (last.power_w + reading.power_w) / 2.0 * dt / 3.6e6
        self.energy_kwh += estimate
        self.estimated_kwh += estimate
        self.interp_n += 1
        self.interp_s += dt
        return estimate

    def _ingest(self, reading: EnergyReading, t: float, rebooted: bool = False, span_s: float = 0.0) -> None:
        with self._lock:
            self.polls += 1
            self.version += 1
            last, last_ok = self.last, self.last_ok
            note = ""
            if last is not None and last_ok is not None:
                dt = max(t - last_ok, 0.0)
                delta = reading.total_kwh - last.total_kwh
                if rebooted or delta < -_DROP_TOLERANCE_KWH:
                    # Counter went down: reset (new TotalStartTime or back to ~0) or reboot (back to
                    # the last flash save). The interval's energy comes from the power readings.
                    estimate = self._interpolate(last, reading, dt)
                    if not rebooted and (reading.total_start_time != last.total_start_time
                                         or reading.total_kwh <= estimate + _DROP_TOLERANCE_KWH):
                        self.resets += 1
                    else:
                        self.reboots += 1
                elif delta > self.limits.max_rise_kwh(dt):
                    # Faster than the socket can deliver: someone set the counter. Never energy.
                    self._interpolate(last, reading, dt)
                    self.implausible += 1
                    note = (f"counter jumped by {delta:.5f} kWh in {dt:.1f} s (more than "
                                       f"{self.limits.rated_max_w:g} W); interval interpolated")
                else:
                    self.energy_kwh += max(delta, 0.0)
            elif self.failing_since is not None:
                # No reading since the server began metering: that time is not metered at all.
                self.interp_n += 1
                self.interp_s += max(t - self.failing_since, 0.0)
            if self.failing_since is not None:
                self.gap_s_closed += max(t - self.failing_since, 0.0)
                self.failing_since = None
            self.last_error = note
            self.awaiting_first_reading = False
            # under the lock with last_ok, so a snapshot's time and its uncertainty always match
            self.last, self.last_ok, self.last_read_s = reading, t, span_s
            self._spans.append(span_s)

    def sharp_span_s(self) -> float:
        """The widest bracket a session boundary accepts without reading again: twice what this
        host's link achieves (the lower quartile of its recent brackets, so that neither a crowd
        of clients nor a server's slow first readings raise the bar; 1 ms at least). The energy
        between two readings is exact whatever their brackets; a session's *duration* is only as
        exact as its boundary readings' instants, and under load one reading in a hundred had a
        bracket ten times the usual (the answer sat in a queue): with 3 kW on a 3 s session each
        ms is 0.03% of the figure."""
        with self._lock:
            spans = sorted(self._spans)
        achieved = spans[len(spans) // 4] if spans else math.inf
        return max(SHARP_FACTOR * achieved, SHARP_FLOOR_S)

    # ------------------------------------------------------------------------------ reading
    def snapshot(self, now: float | None = None, at_reading: bool = False) -> Snapshot:
        """Counters now. ``at_reading``: stamped with the time of the last good reading when the
        socket is answering, so that a session's duration spans exactly the readings its energy
        comes from (under load the gap between reading and snapshot was up to 0.2 s: 7% of 3 s)."""
        now = self.clock() if now is None else now
        with self._lock:
            if at_reading and self.failing_since is None and self.last_ok is not None:
                now = self.last_ok
            energy, estimated, gap_s = self.energy_kwh, self.estimated_kwh, self.gap_s_closed
            interp_n, interp_s = self.interp_n, self.interp_s
            if self.failing_since is not None:
                open_s = max(now - self.failing_since, 0.0)
                gap_s += open_s
                interp_n += 1
                interp_s += open_s
                if self.last is not None and self.last_ok is not None:
                    # Provisional: the last power for the silent time. Replaced by the counter's
                    # exact increase if the socket answers again without having lost it.
                    extra = self.last.power_w * max(now - self.last_ok, 0.0) / 3.6e6
                    energy += extra
                    estimated += extra
            return Snapshot(now, energy, estimated, self.resets, self.reboots, self.gaps, gap_s,
                            self.failing_since is not None,
                            self.last.power_w if self.last is not None else None,
                            interp_n_closed=self.interp_n, interp_n=interp_n, interp_s=interp_s,
                            implausible=self.implausible,
                            timing_s=self.last_read_s / 2.0 if self.failing_since is None else 0.0)

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
                "interpolated_seconds": round(snap.interp_s, 3),
                "implausible_readings": self.implausible,
                "estimated_kwh": snap.estimated_kwh,
                "polls": self.polls,
                "failures": self.failures,
                "last_error": self.last_error,
            }

    # ------------------------------------------------------------------------------ persistence
    _STATE_FIELDS = ("energy_kwh", "estimated_kwh", "resets", "reboots", "gaps", "gap_s_closed",
                     "interp_n", "interp_s", "implausible", "last_ok", "failing_since", "started")

    def state(self) -> dict[str, Any]:
        """The counters and the baseline reading, consistent with each other (one lock)."""
        with self._lock:
            out: dict[str, Any] = {k: getattr(self, k) for k in self._STATE_FIELDS}
            out["last"] = self.last.as_dict() if self.last is not None else None
            out["version"] = self.version
            out["awaiting_first_reading"] = self.awaiting_first_reading
            return out

    def restore(self, state: dict[str, Any], offset: float = 0.0) -> None:
        """Continue from a persisted state (its instants + ``offset`` on this meter's clock). The
        time the server was down is an open outage from the last good reading: the next reading
        closes it exactly (counter rose plausibly, no reboot) or as an interpolated gap."""
        with self._lock:
            for k in ("energy_kwh", "estimated_kwh", "gap_s_closed", "interp_s"):
                setattr(self, k, float(state.get(k) or 0.0))
            self.started = float(state.get("started") or 0.0) + offset
            for k in ("resets", "reboots", "gaps", "interp_n", "implausible"):
                setattr(self, k, int(state.get(k) or 0))
            last = state.get("last")
            self.last = EnergyReading.from_dict(last) if last else None
            self.last_ok = float(state["last_ok"]) + offset if state.get("last_ok") is not None else None
            since = state.get("failing_since")
            if since is None:
                since = self.last_ok if self.last_ok is not None else self.started
                self.gaps += 1
            else:
                since = float(since) + offset
            self.failing_since = float(since)
            self.awaiting_first_reading = True
            self.last_error = "the server restarted; waiting for the socket's next reading"


def quality(start: Snapshot, stop: Snapshot) -> dict[str, Any]:
    """What happened to a host's metering between two snapshots, with the coverage figures."""
    duration = max(stop.mono - start.mono, 0.0)
    gaps = stop.gaps - start.gaps + (1 if start.in_gap else 0)
    resets = stop.resets - start.resets
    reboots = stop.reboots - start.reboots
    estimated = max(stop.estimated_kwh - start.estimated_kwh, 0.0)
    interp_s = min(max(stop.interp_s - start.interp_s, 0.0), duration)
    interp_n = max(stop.interp_n - start.interp_n_closed, 0)
    if interp_s <= 0.0:
        interp_n = 0
    coverage = 1.0 - interp_s / duration if duration > 0 else (0.0 if stop.in_gap else 1.0)
    return {
        "complete": gaps == 0 and resets == 0 and reboots == 0 and interp_n == 0,
        "coverage": round(min(max(coverage, 0.0), 1.0), 6),
        "interpolated_gaps": interp_n,
        "interpolated_seconds": round(interp_s, 3),
        "gaps": gaps,
        "gap_seconds": round(max(stop.gap_s - start.gap_s, 0.0), 3),
        "resets": resets,
        "reboots": reboots,
        "implausible": stop.implausible - start.implausible,
        "estimated_kwh": estimated,
        "socket_online": not stop.in_gap,
        # the duration is uncertain by this much: each boundary reading was taken somewhere
        # within its request (an energy error up to power x this, for a short session)
        "timing_uncertainty_s": round(start.timing_s + stop.timing_s, 4),
    }
