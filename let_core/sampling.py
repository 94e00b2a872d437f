"""Counter integration and a light background sampler: the base of every metered backend.

Public API for plugin authors (``from let_core.sampling import SampledBackend, Sampler, ...``):
LET's RAPL, NVML and jetson backends are built on it, and so can a third-party meter.

Hardware energy counters wrap (RAPL's ``energy_uj`` at ``max_energy_range_uj``) or reset (a
driver reload, a hot-plugged device). Reading only at start and stop cannot tell a wrap from a
reset, and misses a second wrap entirely. So every channel is read by one background thread,
often enough that a wrap cannot be missed, and each pair of consecutive readings is judged here,
once, for every backend:

- the counter went up: the difference is energy;
- it went down and a wrap explains it at a plausible rate: the wrapped difference is energy;
- it went down and no wrap explains it: the interval is dropped and counted, never negative.

Power channels (NVML without an energy counter, jtop) are integrated with the trapezoid rule
between consecutive samples.

Totals are cumulative since the channel was created, so a run or a task is a difference of two
snapshots: a task costs one read of the counters at each end, nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

from attrs import define, field, frozen

__all__ = ["Channel", "Interval", "Meter", "SampledBackend", "Sampler", "Snapshot", "interval_extras",
           "safe_interval"]

if TYPE_CHECKING:
    from let_core.interfaces import LiveReading
    from let_core.records import Measurement

ChannelKind = Literal["counter", "power"]

#: A poll reads every channel: a number per channel, or the exception that reading it raised.
Reader = Callable[[], Mapping[str, "float | int | BaseException"]]


@define
class Channel:
    """One counter or power reading, accumulated.

    ``joules_per_unit`` converts the accumulated total to joules: 1e-6 for a counter in µJ,
    1e-3 for a counter in mJ or for a power in mW integrated over seconds.
    """

    name: str
    kind: ChannelKind
    joules_per_unit: float
    #: A counter's largest value; it wraps to 0 after it (values lie in 0..max_range).
    max_range: int | None = None
    #: The largest plausible rate of a counter, in units per second (for telling wraps from resets).
    max_rate: float | None = None
    total: float = 0
    dropped: int = 0
    notes: list[str] = field(factory=list)
    error: str = ""
    last: float | None = None
    last_t: float | None = None

    def feed(self, value: float, now: float) -> None:
        """Account one reading taken at monotonic time ``now`` (seconds)."""
        if self.error:
            return
        if self.last is None or self.last_t is None:
            self.last, self.last_t = value, now
            return
        elapsed = now - self.last_t
        if self.kind == "power":
            # Trapezoid: the power is known only at the samples, linear in between.
            self.total += (self.last + value) / 2.0 * max(elapsed, 0.0)
        else:
            delta = self._counter_delta(self.last, value, elapsed)
            if delta is None:
                self.dropped += 1
                if len(self.notes) < 10:  # enough to diagnose, bounded for week-long runs
                    self.notes.append(f"{self.name}: counter went from {self.last} to {value} "
                                      f"in {elapsed:.3f} s without a plausible wrap; interval dropped")
            else:
                self.total += delta
        self.last, self.last_t = value, now

    def _counter_delta(self, before: float, after: float, elapsed: float) -> float | None:
        if after >= before:
            return after - before
        if self.max_range is None:
            return None  # a counter that never wraps went backwards: a reset
        wrapped = self.max_range - before + after + 1
        if self.max_rate is not None and wrapped > self.max_rate * max(elapsed, 1e-9):
            return None  # more energy than the device can use in that time: a reset, not a wrap
        return wrapped

    def fail(self, error: BaseException | str) -> None:
        """Stop accumulating (a device that disappeared); what was measured so far is kept."""
        if not self.error:
            self.error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    @property
    def joules(self) -> float:
        return self.total * self.joules_per_unit


@frozen
class Snapshot:
    """Cumulative totals of every channel at one moment."""

    t: float
    totals: Mapping[str, float]
    dropped: Mapping[str, int]


@frozen
class Interval:
    """What happened between two snapshots."""

    duration_s: float
    joules: Mapping[str, float]
    dropped: Mapping[str, int]
    notes: tuple[str, ...]
    errors: Mapping[str, str]

    @property
    def total_joules(self) -> float:
        return sum(self.joules.values())


class Meter:
    """A set of channels read together by one reader function; thread-safe."""

    def __init__(self, channels: list[Channel], reader: Reader,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.channels = {c.name: c for c in channels}
        self._reader = reader
        self._clock = clock
        self._lock = threading.Lock()
        self.polls = 0

    def poll(self) -> None:
        """Read every channel once and account the readings."""
        with self._lock:
            self._poll_locked()

    def _poll_locked(self) -> float:
        """Poll; returns the time the readings are accounted at."""
        live = [c for c in self.channels.values() if not c.error]
        if not live:
            return self._clock()
        try:
            values = self._reader()
        except Exception as exc:  # the reader as a whole failed: every live channel fails
            for channel in live:
                channel.fail(exc)
            return self._clock()
        now = self._clock()
        self.polls += 1
        for channel in live:
            value = values.get(channel.name)
            if isinstance(value, BaseException):
                channel.fail(value)
            elif value is None:
                channel.fail("no reading")
            else:
                channel.feed(value, now)
        return now

    def snapshot(self) -> Snapshot:
        """Poll, then return the totals: the boundary of a run or a task."""
        with self._lock:
            now = self._poll_locked()
            return Snapshot(now, {n: c.total for n, c in self.channels.items()},
                            {n: c.dropped for n, c in self.channels.items()})

    def since(self, start: Snapshot) -> Interval:
        """Poll and return the energy since ``start`` (a snapshot of this meter)."""
        end = self.snapshot()
        joules, dropped, errors = {}, {}, {}
        notes: list[str] = []
        for name, channel in self.channels.items():
            joules[name] = (end.totals[name] - start.totals[name]) * channel.joules_per_unit
            count = end.dropped[name] - start.dropped[name]
            if count:
                dropped[name] = count
                notes.extend(channel.notes[-count:])
            if channel.error:
                errors[name] = channel.error
        return Interval(end.t - start.t, joules, dropped, tuple(notes), errors)


class Sampler:
    """A daemon thread that polls a meter every ``interval`` seconds while started.

    It measures its own CPU time (``cpu_s``) so that its cost can be reported, not guessed.
    """

    def __init__(self, meter: Meter, interval: float, name: str = "let-sampler") -> None:
        if not interval > 0:
            raise ValueError(f"sampler interval must be > 0 seconds, got {interval!r}")
        self.meter = meter
        self.interval = float(interval)
        self.name = name
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        cpu0 = time.thread_time()
        try:
            while not self._stop.wait(self.interval):
                self.meter.poll()
        finally:
            self.cpu_s += time.thread_time() - cpu0


def safe_interval(requested: float, max_range: int | None, max_rate: float | None) -> float:
    """The sampling interval: as requested, but short enough that a counter cannot wrap
    twice between two reads even at its largest plausible rate (four reads per wrap)."""
    if max_range is None or not max_rate:
        return requested
    return max(min(requested, max_range / max_rate / 4.0), 0.001)


class SampledBackend:
    """``start``/``stop``/``task_start``/``task_stop`` for a backend built on a ``Meter``.

    Subclasses set ``self.meter`` and ``self.sampler`` and turn an ``Interval`` into a
    ``Measurement`` in ``_measurement``. Tasks cost one counter read at each end.
    """

    name: ClassVar[str]
    meter: Meter
    sampler: Sampler

    def _init_runs(self) -> None:
        self._run_start: Snapshot | None = None
        self._task_starts: dict[str, Snapshot] = {}
        # Per reading thread: the status line, the live-file publisher and the user's own
        # calls each get the power since their own previous call, never since another's.
        self._live_last: dict[int, Snapshot] = {}

    def live(self) -> LiveReading:
        """Energy since the run started and the mean power since this thread's previous
        ``live()`` call (or the start). One more poll of the meter: counters are cumulative, so an extra read
        changes no total; it only adds a sample."""
        from let_core.interfaces import LiveReading

        if self._run_start is None:
            raise RuntimeError(f"{type(self).__name__}.live() called outside a run")
        now = self.meter.snapshot()
        reader = threading.get_ident()
        previous = self._live_last.get(reader, self._run_start)
        self._live_last[reader] = now

        def joules(a: Snapshot, b: Snapshot) -> float:
            return sum((b.totals[n] - a.totals[n]) * c.joules_per_unit for n, c in self.meter.channels.items())

        elapsed = now.t - previous.t
        power = joules(previous, now) / elapsed if elapsed > 0 else None
        return LiveReading(backend=self.name, kind="metered",
                           energy_kwh=joules(self._run_start, now) / 3.6e6, power_w=power)

    def start(self) -> None:
        self._run_start = self.meter.snapshot()
        self._live_last = {}
        self.sampler.start()

    def stop(self) -> Measurement:
        if self._run_start is None:
            raise RuntimeError(f"{type(self).__name__}.stop() called before start()")
        self.sampler.stop()
        interval = self.meter.since(self._run_start)
        self._run_start = None
        self._task_starts.clear()
        return self._measurement(interval)

    def task_start(self, name: str) -> None:
        self._task_starts[name] = self.meter.snapshot()

    def task_stop(self, name: str) -> Measurement:
        return self._measurement(self.meter.since(self._task_starts.pop(name)))

    def _measurement(self, interval: Interval) -> Measurement:
        raise NotImplementedError


def interval_extras(interval: Interval) -> dict[str, object]:
    """What every sampled backend records about dropped intervals and failed channels."""
    extras: dict[str, object] = {}
    if interval.dropped:
        extras["dropped_intervals"] = dict(interval.dropped)
        extras["dropped_notes"] = list(interval.notes)
    if interval.errors:
        extras["failed_channels"] = dict(interval.errors)
    return extras
