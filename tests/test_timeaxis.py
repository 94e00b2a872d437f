"""Time axes that fit the data's span (let_core.timeaxis): distinct labels on round times, the
data's range plus a margin, the bucket a trend sums over, durations in a unit that reads."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from let_core.timeaxis import DAY, HOUR, MONTHLY, WEEKLY, bucket_for, format_duration, time_axis


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=timezone.utc).timestamp()  # type: ignore[arg-type, misc]


@pytest.mark.parametrize(("first", "last", "bucket", "sample"), [
    (at(2026, 12, 2, 9), at(2026, 12, 2, 17), "hour", "12:00"),
    (at(2026, 12, 2, 9), at(2026, 12, 2, 9), "hour", ":"),  # a single run
    (at(2026, 12, 2, 22), at(2026, 12, 3, 3), "hour", "Dec 3 00:00"),  # over midnight: the date shows
    (at(2026, 3, 1), at(2026, 3, 6), "day", "Mar 3"),
    (at(2026, 1, 1), at(2026, 12, 31), "week", "2026"),
    (at(2025, 6, 1), at(2026, 5, 1), "week", "Jan 2026"),
    (at(2019, 1, 1), at(2026, 5, 1), "month", "2022"),
])
def test_axis_fits_the_span_with_distinct_labels(first: float, last: float, bucket: str, sample: str) -> None:
    axis = time_axis(first, last)
    span = last - first
    margin = max(span * 0.05, 1800)
    assert axis.low == pytest.approx(first - margin) and axis.high == pytest.approx(last + margin)
    assert 2 <= len(axis.ticks) <= 8
    assert all(axis.low <= t <= axis.high for t in axis.ticks)
    assert len(set(axis.labels)) == len(axis.labels)
    assert any(sample in label for label in axis.labels), axis.labels
    assert bucket_for(span).name == bucket


def test_buckets_start_on_round_times() -> None:
    wednesday = at(2026, 12, 2, 13, 45)
    assert WEEKLY.start(wednesday) == at(2026, 11, 30)  # a Monday
    assert MONTHLY.start(wednesday) == at(2026, 12, 1) and MONTHLY.end(at(2026, 12, 1)) == at(2027, 1, 1)
    assert bucket_for(3 * DAY).start(wednesday) == at(2026, 12, 2, 13)
    assert bucket_for(30 * DAY).describe(at(2026, 12, 2)) == "2 Dec 2026"
    assert bucket_for(HOUR).describe(at(2026, 12, 2, 13)) == "2 Dec 2026, 13:00-14:00 UTC"


@pytest.mark.parametrize(("seconds", "text"), [(3.0, "3.0 s"), (600, "10.0 min"), (36000, "10.00 h"),
                                               (1e7, "2,778 h"), (0, "0 s")])
def test_durations_read_in_their_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
