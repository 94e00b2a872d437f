"""The ground-truth server's durable state: sessions and each socket's counters, in SQLite (WAL).

A server restart used to lose every running session. Now a session and the meter state its
figures are differences of survive in ``<state-dir>/gt-state.sqlite3``: after a restart the
server resumes polling, and the time it was down is bridged by the socket's own ``Total``
counter when that is still continuous (see ``meter.HostMeter.restore``).

Instants are monotonic; each write also stores the clocks' mark (``clock.Clock.mark``) so a
restart can read them again. A session that expired (its lease ran out) moves, with its result,
to ``expired`` in one transaction, where its opener finds it later.

A write that fails (disk full, directory read-only) raises ``StateUnavailable`` and changes
nothing: every write is one transaction, and the caller changes its memory only after the write
went through. The connection is opened afresh after a failure, so a disk that has room again is
used again without a restart.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from let_core.errors import ConfigurationError

STATE_FILE = "gt-state.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meters (host TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, host TEXT NOT NULL, label TEXT NOT NULL, client TEXT NOT NULL,
    legacy INTEGER NOT NULL, start_time TEXT NOT NULL, created REAL NOT NULL, start TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions(created);
CREATE TABLE IF NOT EXISTS expired (
    session_id TEXT PRIMARY KEY, client TEXT NOT NULL, expired REAL NOT NULL, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
T = TypeVar("T")


class StateUnavailable(Exception):
    """The state directory cannot take a write right now (full, read-only, gone)."""


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
            self._db: sqlite3.Connection | None = self._connect()
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot use the ground-truth state directory {str(self.directory)!r}: "
                                     f"{exc}. Pass a writable --state-dir.") from None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _run(self, work: Callable[[sqlite3.Connection], T], write: bool = True) -> T:
        """``work`` in one transaction under the lock; any failure rolls it back and raises
        ``StateUnavailable`` with what to do."""
        with self._lock:
            try:
                if self._db is None:
                    self._db = self._connect()
                db = self._db
                if not write:
                    return work(db)
                db.execute("BEGIN IMMEDIATE")
                try:
                    out = work(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                return out
            except (sqlite3.Error, OSError) as exc:
                self._reset()
                raise StateUnavailable(f"the server's state directory {str(self.directory)!r} cannot be "
                                       f"written ({exc}); free space there or make it writable, then retry") from None

    def _reset(self) -> None:
        # A connection that failed mid-write may hold a broken journal state: the next
        # operation opens a fresh one (SQLite recovers the WAL then).
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    # ------------------------------------------------------------------------------ reading
    def meters(self) -> dict[str, dict[str, Any]]:
        rows = self._run(lambda db: db.execute("SELECT host, state FROM meters").fetchall(), write=False)
        return {host: json.loads(state) for host, state in rows}

    def mark(self) -> dict[str, Any] | None:
        """The clocks' mark of the last write (None: a state from before marks existed)."""
        row = self._run(lambda db: db.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone(), write=False)
        return json.loads(row[0]) if row else None

    def sessions(self) -> Iterator[dict[str, Any]]:
        rows = self._run(lambda db: db.execute(
            "SELECT session_id, host, label, client, legacy, start_time, created, start "
            "FROM sessions ORDER BY created").fetchall(), write=False)
        for sid, host, label, client, legacy, start_time, created, start in rows:
            yield {"session_id": sid, "host": host, "label": label, "client": client, "legacy": bool(legacy),
                   "start_time": start_time, "created": created, "start": json.loads(start)}

    def expired(self) -> list[tuple[str, str, float, dict[str, Any]]]:
        rows = self._run(lambda db: db.execute(
            "SELECT session_id, client, expired, result FROM expired ORDER BY expired").fetchall(), write=False)
        return [(sid, client, float(when), json.loads(result)) for sid, client, when, result in rows]

    # ------------------------------------------------------------------------------ writing
    @staticmethod
    def _set_mark(db: sqlite3.Connection, mark: dict[str, Any] | None) -> None:
        if mark is not None:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('clock', ?)", (json.dumps(mark),))

    def save_meters(self, states: dict[str, dict[str, Any]], mark: dict[str, Any] | None = None) -> None:
        if not states:
            return

        def work(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO meters(host, state) VALUES (?, ?)",
                           [(h, json.dumps(s)) for h, s in states.items()])
            self._set_mark(db, mark)

        self._run(work)

    def add_session(self, row: dict[str, Any], mark: dict[str, Any] | None = None) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (row["session_id"], row["host"], row["label"], row["client"], int(row["legacy"]),
                        row["start_time"], row["created"], json.dumps(row["start"])))
            self._set_mark(db, mark)

        self._run(work)

    def remove_session(self, session_id: str) -> None:
        self._run(lambda db: db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,)))

    def expire_session(self, session_id: str, client: str, when: float, result: dict[str, Any],
                       mark: dict[str, Any] | None = None) -> None:
        """Move an open session to ``expired`` with its result, in one transaction."""
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            db.execute("INSERT OR REPLACE INTO expired VALUES (?, ?, ?, ?)",
                       (session_id, client, when, json.dumps(result)))
            self._set_mark(db, mark)

        self._run(work)

    def forget_expired(self, session_ids: list[str]) -> None:
        if session_ids:
            self._run(lambda db: db.executemany("DELETE FROM expired WHERE session_id = ?",
                                                [(s,) for s in session_ids]))

    def close(self) -> None:
        with self._lock:
            self._reset()
        os.close(self._lock_fd)
