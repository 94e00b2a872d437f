"""The server's two clocks: a monotonic one for every duration, freshness and session boundary,
and the wall clock, which only labels (start_time, timestamp).

NTP steps a Raspberry Pi without a real-time clock by minutes, and by days after a power cut:
judged by wall time, a session stepped back 5 minutes read 78% too little energy and a +1 day
step made a 6 s session last 86,406 s. Both clocks are injectable so tests can step the wall.

Persisted instants are monotonic too. ``ClockMark`` records, with each write of the state, the
two clocks and the boot they belong to: after a restart in the same boot the monotonic values
still hold; after a reboot (a new monotonic origin) they are moved by the wall time that passed,
the only measure of a downtime there is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attrs import frozen

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id (Linux), "" where the system does not say."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return ""


@frozen
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def label(self, mono: float) -> datetime:
        """The wall time (UTC, aware) that stands for the monotonic instant ``mono`` now."""
        return datetime.fromtimestamp(self.wall() - (self.monotonic() - mono), timezone.utc)

    def now_label(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), timezone.utc)

    def mark(self) -> dict[str, Any]:
        """What a persisted monotonic instant needs to be read again after a restart."""
        return {"mono": self.monotonic(), "wall": self.wall(), "boot": boot_id()}

    def offset_since(self, mark: Mapping[str, Any] | None) -> float:
        """What to add to monotonic instants persisted under ``mark`` to read them on this clock."""
        if not mark:
            return 0.0
        boot = boot_id()
        if boot and mark.get("boot") == boot:
            return 0.0
        elapsed = max(self.wall() - float(mark["wall"]), 0.0)
        return self.monotonic() - elapsed - float(mark["mono"])


SYSTEM_CLOCK = Clock()
