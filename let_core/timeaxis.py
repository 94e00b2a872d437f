"""Time that reads well: chart time axes that fit the data's span, the bucket a trend is summed
in, and durations in the unit that fits (stdlib only, so the dashboard and the HTML report both
use it; figures in kWh and kg scale with ``let_core.units``).

A day of runs gets hours on its axis, a year gets months: never an axis from 2026 to 2029 with
one point at its left edge. Every axis is in UTC, as the store is, and says so in its title.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime, timezone

from attrs import frozen

MINUTE, HOUR, DAY = 60, 3600, 86400
#: 1970-01-01 was a Thursday: weeks start on Mondays, four days later.
WEEK_OFFSET = 4 * DAY


@frozen
class Bucket:
    """What a trend sums over: its name ("hour", "day", "week", "month") and nominal length."""

    name: str
    seconds: int

    def start(self, epoch_s: float) -> int:
        """The start (epoch seconds, UTC) of the bucket holding ``epoch_s``."""
        if self.name == "month":
            moment = datetime.fromtimestamp(math.floor(epoch_s), tz=timezone.utc)
            return int(datetime(moment.year, moment.month, 1, tzinfo=timezone.utc).timestamp())
        offset = WEEK_OFFSET if self.name == "week" else 0
        return int((math.floor(epoch_s) - offset) // self.seconds * self.seconds + offset)

    def end(self, start: float) -> int:
        """The end of the bucket that starts at ``start`` (the next one's start)."""
        if self.name == "month":
            return self.start(start + 32 * DAY)
        return int(start + self.seconds)

    def describe(self, start: float) -> str:
        """The bucket starting at ``start`` in words: "2 Dec 2026, 10:00-11:00 UTC", "week of 30 Nov 2026"."""
        moment = _utc(start)
        day = f"{moment.day} {calendar.month_abbr[moment.month]} {moment.year}"
        if self.name == "hour":
            return f"{day}, {moment:%H:00}-{_utc(start + HOUR):%H:00} UTC"
        if self.name == "day":
            return day
        if self.name == "week":
            return f"week of {day}"
        return f"{calendar.month_abbr[moment.month]} {moment.year}"

    def label(self) -> str:
        return {"hour": "per hour", "day": "per day", "week": "per week", "month": "per month"}[self.name]


HOURLY, DAILY, WEEKLY, MONTHLY = (Bucket("hour", HOUR), Bucket("day", DAY), Bucket("week", 7 * DAY),
                                  Bucket("month", 30 * DAY))


def bucket_for(span_s: float) -> Bucket:
    """The bucket that gives a trend a few dozen points at most: hours for up to three days,
    days up to four months, weeks up to three years, then months."""
    if span_s <= 3 * DAY:
        return HOURLY
    if span_s <= 120 * DAY:
        return DAILY
    if span_s <= 3 * 365 * DAY:
        return WEEKLY
    return MONTHLY


@frozen
class TimeAxis:
    """The shown range (epoch seconds), its ticks and their labels (distinct), and a title
    naming what the labels leave out (the day or the year, and UTC)."""

    low: float
    high: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    title: str


#: Tick steps below a month, in seconds; months are counted in calendar months.
_STEPS = (MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR,
          12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY)
_MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc)


def time_axis(first: float, last: float, bucket: Bucket | None = None, count: int = 7) -> TimeAxis:
    """The axis for data from ``first`` to ``last`` (epoch seconds): that span plus a margin
    (5% of it, at least half a bucket where points stand for buckets, at least 30 minutes), with
    at most about ``count`` ticks on round times."""
    if not (math.isfinite(first) and math.isfinite(last)):
        first = last = datetime.now(timezone.utc).timestamp()
    first, last = min(first, last), max(first, last)
    bucket_span = (bucket.seconds if bucket else 0)
    margin = max((last - first) * 0.05, bucket_span * 0.6, 30 * MINUTE)
    low, high = first - margin, last + margin + (bucket_span if bucket and bucket.name == "month" else 0) * 0.4
    span = high - low
    step = next((s for s in _STEPS if span / s <= count), None)
    if step is not None:
        offset = WEEK_OFFSET if step % (7 * DAY) == 0 else 0
        tick = math.ceil((low - offset) / step) * step + offset
        ticks: list[float] = []
        while tick <= high:
            ticks.append(float(tick))
            tick += step
    else:
        months = next((m for m in _MONTH_STEPS if span / (m * 30.44 * DAY) <= count), _MONTH_STEPS[-1])
        start = _utc(low)
        year, month = start.year, start.month
        total = year * 12 + month - 1
        total = -(-total // months) * months  # the first month boundary on the step at or after low
        ticks = []
        while True:
            moment = datetime(total // 12, total % 12 + 1, 1, tzinfo=timezone.utc).timestamp()
            if moment > high:
                break
            if moment >= low:
                ticks.append(float(moment))
            total += months
    return TimeAxis(low, high, tuple(ticks), tuple(_labels(ticks, step)), _title(low, high))


def _labels(ticks: list[float], step: int | None) -> list[str]:
    moments = [_utc(t) for t in ticks]
    one_year = len({m.year for m in moments}) <= 1
    if step is not None and step < DAY:
        one_day = len({m.date() for m in moments}) <= 1
        return [f"{m:%H:%M}" if one_day else f"{calendar.month_abbr[m.month]} {m.day} {m:%H:%M}" for m in moments]
    if step is not None:
        return [f"{calendar.month_abbr[m.month]} {m.day}" if one_year else f"{m:%Y-%m-%d}" for m in moments]
    if all(m.month == 1 for m in moments) and len(moments) > 1:
        return [f"{m.year}" for m in moments]
    return [calendar.month_abbr[m.month] if one_year else f"{calendar.month_abbr[m.month]} {m.year}"
            for m in moments]


def _title(low: float, high: float) -> str:
    start, end = _utc(low), _utc(high)
    if start.date() == end.date():
        return f"{start.day} {calendar.month_abbr[start.month]} {start.year} (UTC)"
    if start.year == end.year:
        return f"{start.year} (UTC)"
    return "UTC"


def format_duration(seconds: float) -> str:
    """``42.0 s``, ``12.5 min``, ``3.20 h``, ``1,234 h``: the unit that shows three digits."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "0 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < HOUR:
        return f"{seconds / 60:.1f} min"
    hours = seconds / HOUR
    if hours < 100:
        return f"{hours:.2f} h"
    return f"{hours:,.0f} h"
