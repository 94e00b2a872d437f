"""This process's own appends to a file: what the totals cache needs to trust bytes it counted.

A file's state is (device, inode, size, mtime in ns). Each append LET makes under the store's
exclusive lock records the state before and after it. When the state a cache was saved at
leads, through this process's appends alone, to the file's state now, nothing but those
appends touched the file: the bytes the cache counted are unchanged. Any other change (an
edit in place, a truncation, a restored backup, another process's append) breaks the chain,
and the cache then proves itself by a checksum of everything it covers.
"""

from __future__ import annotations

import os

State = tuple[int, int, int, int]

_after: dict[State, State] = {}


def state(fd: int) -> State:
    stat = os.fstat(fd)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def record(before: State, after: State) -> None:
    if before != after:
        _after[before] = after


def only_own_appends(since: State, now: State) -> bool:
    """Whether ``now`` follows ``since`` through this process's recorded appends alone."""
    current, steps = since, 0
    while current != now and steps <= len(_after):
        following = _after.get(current)
        if following is None:
            return False
        current, steps = following, steps + 1
    return current == now
