"""The ground-truth server's durable state: sessions and each socket's counters, in SQLite (WAL).

A server restart used to lose every running session. Now a session and the meter state its
figures are differences of survive in ``<state-dir>/gt-state.sqlite3``: after a restart the
server resumes polling, and the time it was down is bridged by the socket's own ``Total``
counter when that is still continuous (see ``meter.HostMeter.restore``).

One connection shared by the server's threads under a lock: writes are a few small rows per
poll, far below what SQLite does in WAL mode with ``synchronous=NORMAL`` (a crash may lose the
last poll, which the counter difference then covers exactly).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from let_core.errors import ConfigurationError

STATE_FILE = "gt-state.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (host TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, host TEXT NOT NULL, label TEXT NOT NULL, client TEXT NOT NULL,
    legacy INTEGER NOT NULL, start_time TEXT NOT NULL, created REAL NOT NULL, start TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions(created);
"""


class StateStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # One server per state directory: two would each count the same sockets' energy
            # into one table. The lock goes with the process, also when it is killed.
            self._lock_fd = os.open(self.directory / "gt-state.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                raise ConfigurationError(f"another ground-truth server already uses the state directory "
                                         f"{str(self.directory)!r}; stop it or pass another --state-dir") from None
            self.path = self.directory / STATE_FILE
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot use the ground-truth state directory {str(self.directory)!r}: "
                                     f"{exc}. Pass a writable --state-dir.") from None
        self._lock = threading.Lock()

    def meters(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT host, state FROM meters").fetchall()
        return {host: json.loads(state) for host, state in rows}

    def save_meters(self, states: dict[str, dict[str, Any]]) -> None:
        if not states:
            return
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO meters(host, state) VALUES (?, ?)",
                                 [(h, json.dumps(s)) for h, s in states.items()])
            self._db.execute("COMMIT")

    def add_session(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (row["session_id"], row["host"], row["label"], row["client"], int(row["legacy"]),
                              row["start_time"], row["created"], json.dumps(row["start"])))

    def remove_session(self, session_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    def sessions(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT session_id, host, label, client, legacy, start_time, created, start "
                                    "FROM sessions ORDER BY created").fetchall()
        for sid, host, label, client, legacy, start_time, created, start in rows:
            yield {"session_id": sid, "host": host, "label": label, "client": client, "legacy": bool(legacy),
                   "start_time": start_time, "created": created, "start": json.loads(start)}

    def expire(self, before: float) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM sessions WHERE created < ?", (before,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
        os.close(self._lock_fd)
