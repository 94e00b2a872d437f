"""Loopback helpers shared by the tests that start real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

#: Generous: the machine may be loaded, and a wait only ends early on success.
WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """The predicate's first truthy value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
