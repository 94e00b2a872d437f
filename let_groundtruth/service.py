"""The ground-truth server's logic, without HTTP: meters, pollers and sessions.

Kept apart from the FastAPI layer (``server.py``) so that it imports nothing heavy and can be
reasoned about on its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attrs import asdict, frozen

from let_groundtruth.config import SocketConfig
from let_groundtruth.meter import HostMeter, Limits, Snapshot, quality
from let_groundtruth.protocol import TASMOTA_TIME, TasmotaSocket
from let_groundtruth.state import StateStore

#: Open sessions per host and per client address; beyond them new sessions get a 429. Running
#: sessions are never evicted to make room (that made other hosts' runs 404).
MAX_SESSIONS_PER_HOST = 1000
MAX_SESSIONS_PER_CLIENT = 1000
#: Sessions never stopped (a killed client) are dropped after this many days.
DEFAULT_MAX_AGE_DAYS = 30.0
#: Readings a session boundary may take to find one with a sharp instant (``_fresh_snapshot``).
BOUNDARY_READS = 4


class UnknownHost(KeyError):
    pass


class UnknownSession(KeyError):
    pass


class TooManySessions(Exception):
    pass


class SocketNeverAnswered(Exception):
    pass


@frozen
class Session:
    session_id: str
    host: str
    label: str
    start: Snapshot
    start_time: datetime  # UTC, aware
    legacy: bool = False
    client: str = ""


def _times(start: datetime, end: datetime) -> dict[str, Any]:
    # LET 0.1.x clients parse start_time/timestamp with "%Y-%m-%dT%H:%M:%S" (socket-local time,
    # no zone); the *_iso fields carry the exact UTC instant for new clients.
    return {
        "start_time": start.astimezone().strftime(TASMOTA_TIME),
        "timestamp": end.astimezone().strftime(TASMOTA_TIME),
        "start_time_iso": start.isoformat(timespec="milliseconds"),
        "timestamp_iso": end.isoformat(timespec="milliseconds"),
    }


class GroundTruthService:
    """Meters every configured host in the background and answers session requests.

    With a ``state_dir`` the meters' counters and the open sessions are kept in SQLite and a
    restarted server continues them; without one (tests, ``block=False`` demos) they live in memory.
    """

    def __init__(self, sockets: Mapping[str, SocketConfig], poll_interval: float = 1.0,
                 socket_timeout: float = 2.0, retries: int = 1, *, state_dir: str | Path | None = None,
                 limits: Limits | None = None, max_sessions_per_host: int = MAX_SESSIONS_PER_HOST,
                 max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT,
                 max_age_days: float = DEFAULT_MAX_AGE_DAYS) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.configs = dict(sockets)
        self.poll_interval = poll_interval
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.limits = limits or Limits()
        self.max_per_host = max_sessions_per_host
        self.max_per_client = max_sessions_per_client
        self.max_age_s = max_age_days * 86400.0
        self._sockets = {h: TasmotaSocket(c.address, c.user, c.password, timeout=socket_timeout,
                                          retries=retries) for h, c in self.configs.items()}
        self.meters = {h: HostMeter(h, s.read, uptime=s.uptime, limits=self.limits)
                       for h, s in self._sockets.items()}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._per_host: Counter[str] = Counter()
        self._per_client: Counter[str] = Counter()
        self._legacy: dict[str, str] = {}  # host -> session id of LET 0.1.x's /<host>/start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved: dict[str, int] = {}
        self.store = StateStore(state_dir) if state_dir is not None else None
        self.restored_sessions = 0
        if self.store is not None:
            self._restore()

    def _restore(self) -> None:
        assert self.store is not None
        for host, state in self.store.meters().items():
            if host in self.meters:
                self.meters[host].restore(state)
        self.store.expire(time.time() - self.max_age_s)
        for row in self.store.sessions():
            if row["host"] not in self.meters:
                continue  # the host left the config: its sessions cannot be finished
            session = Session(row["session_id"], row["host"], row["label"], Snapshot(**row["start"]),
                              datetime.fromisoformat(row["start_time"]), row["legacy"], row["client"])
            self._add(session, persist=False)
            if session.legacy:
                self._legacy[session.host] = session.session_id
            self.restored_sessions += 1

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> GroundTruthService:
        """One poller thread per host, so a silent socket delays only its own host."""
        if self._threads:
            return self
        self._stop.clear()
        for host, meter in self.meters.items():
            t = threading.Thread(target=self._poll_loop, args=(meter,), name=f"let-gt-poll-{host}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._housekeeping, name="let-gt-housekeeping", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.socket_timeout * (self.retries + 1) + 2)
        self._threads.clear()
        for s in self._sockets.values():
            s.close()
        if self.store is not None:
            self.persist()
            self.store.close()

    def _poll_loop(self, meter: HostMeter) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            meter.refresh()
            self._stop.wait(max(self.poll_interval - (time.monotonic() - began), 0.05))

    def _housekeeping(self) -> None:
        """Persist moved meters every poll interval, expire abandoned sessions every minute."""
        last_expiry = 0.0
        while not self._stop.wait(self.poll_interval):
            try:
                self.persist()
                if time.monotonic() - last_expiry > 60.0:
                    last_expiry = time.monotonic()
                    self.expire()
            except Exception:  # a full disk must not stop the metering; the next round retries
                pass

    def persist(self) -> None:
        if self.store is None:
            return
        moved = {}
        for host, meter in self.meters.items():
            state = meter.state()
            if self._saved.get(host) != state["version"]:
                moved[host] = state
        self.store.save_meters(moved)
        self._saved.update({h: s["version"] for h, s in moved.items()})

    def expire(self, now: float | None = None) -> int:
        """Drop sessions older than the maximum age (a killed client never stops its session)."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        with self._lock:
            old = [s for s in self._sessions.values() if s.start.mono < cutoff]
            for s in old:
                self._drop(s.session_id)
        return len(old)

    @property
    def _wait_s(self) -> float:
        return self.socket_timeout * (self.retries + 1) + 1.0

    # ------------------------------------------------------------------------------ hosts
    def hosts(self) -> list[str]:
        return list(self.configs)

    def meter(self, host: str) -> HostMeter:
        try:
            return self.meters[host]
        except KeyError:
            raise UnknownHost(host) from None

    def host_status(self, host: str) -> dict[str, Any]:
        meter = self.meter(host)
        status = meter.status()
        status["hardware"] = self.configs[host].hardware or host
        with self._lock:
            status["sessions"] = sum(1 for s in self._sessions.values() if s.host == host)
        return status

    def power(self, host: str) -> dict[str, Any]:
        meter = self.meter(host)
        # Live: a reading at most one polling interval old, else read now.
        if meter.last_ok is None or meter.clock() - meter.last_ok > 2 * self.poll_interval:
            meter.refresh(wait_s=self._wait_s)
        st = meter.status()
        return {k: st[k] for k in ("host", "online", "power_w", "voltage_v", "current_a",
                                   "reading_age_s", "socket_time", "last_error")}

    # ------------------------------------------------------------------------------ sessions
    def _fresh_snapshot(self, meter: HostMeter) -> Snapshot:
        """A session boundary: counters at a reading taken after this call began. A reading whose
        instant is much less certain than usual (``HostMeter.sharp_span_s``) is read again, up to
        ``BOUNDARY_READS`` readings within the usual wait, and the sharpest marks the boundary:
        the others still count for the energy, they only do not mark where the session begins
        or ends. What the boundary stands on is reported either way (``timing_uncertainty_s``)."""
        end = time.monotonic() + self._wait_s
        arrival = meter.clock()
        best: Snapshot | None = None
        for _ in range(BOUNDARY_READS):
            meter.refresh(arrival, wait_s=max(end - time.monotonic(), 0.0))
            snap = meter.snapshot(at_reading=True)
            if snap.in_gap:  # no answer: an earlier reading taken after the call began still marks it
                return best or snap
            if best is None or snap.timing_s < best.timing_s:
                best = snap
            if 2.0 * snap.timing_s <= meter.sharp_span_s() or time.monotonic() >= end:
                break
            arrival = meter.clock()
        assert best is not None  # BOUNDARY_READS >= 1
        return best

    def _add(self, session: Session, persist: bool = True) -> None:
        """Register a session (caller holds no lock); raises TooManySessions at a cap."""
        self._sessions[session.session_id] = session
        self._per_host[session.host] += 1
        self._per_client[session.client] += 1
        if persist and self.store is not None:
            self.store.add_session({"session_id": session.session_id, "host": session.host,
                                    "label": session.label, "client": session.client,
                                    "legacy": session.legacy, "created": session.start.mono,
                                    "start_time": session.start_time.isoformat(),
                                    "start": asdict(session.start)})

    def _drop(self, session_id: str) -> Session | None:
        """Forget a session (caller holds ``_lock``)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return None
        self._per_host[session.host] -= 1
        self._per_client[session.client] -= 1
        if self._legacy.get(session.host) == session_id:
            del self._legacy[session.host]
        if self.store is not None:
            self.store.remove_session(session_id)
        return session

    def start_session(self, host: str, label: str = "", legacy: bool = False,
                      client: str = "") -> dict[str, Any]:
        meter = self.meter(host)
        with self._lock:
            self._check_caps(host, client)
        snap = self._fresh_snapshot(meter)
        # 128 random bits: the id is the capability to read, stop or drop the session.
        session = Session(secrets.token_hex(16), host, label, snap, datetime.now(timezone.utc),
                          legacy, client)
        with self._lock:
            self._check_caps(host, client)  # others may have started sessions while we polled
            self._add(session)
        reading = meter.last
        return {
            "session_id": session.session_id,
            "host": host,
            "label": label,
            **_times(session.start_time, session.start_time),
            "duration": 0.0,
            "energy_consumed": 0.0,
            "power_w": snap.power_w,
            "socket_online": not snap.in_gap,
            "last_error": meter.last_error,
            "reading": reading.as_dict() if reading else None,
            "hardware": self.configs[host].hardware or host,
        }

    def _check_caps(self, host: str, client: str) -> None:
        if self._per_host[host] >= self.max_per_host:
            raise TooManySessions(f"host {host!r} already has {self._per_host[host]} open sessions (the "
                                  f"server's --max-sessions-per-host); stop finished ones first")
        if self._per_client[client] >= self.max_per_client:
            raise TooManySessions(f"client {client or '?'} already has {self._per_client[client]} open "
                                  "sessions (the server's --max-sessions-per-client); stop finished ones first")

    def _get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(session_id)
        return session

    def _result(self, session: Session, snap: Snapshot, end_time: datetime) -> dict[str, Any]:
        meter = self.meters[session.host]
        return {
            "session_id": session.session_id,
            "host": session.host,
            "label": session.label,
            **_times(session.start_time, end_time),
            "duration": max(snap.mono - session.start.mono, 0.0),
            "energy_consumed": max(snap.energy_kwh - session.start.energy_kwh, 0.0),
            "tracking_mode": "GroundTruth",
            "methodology": "Tasmota smart socket",
            "hardware": self.configs[session.host].hardware or session.host,
            "power_w": snap.power_w,
            "quality": quality(session.start, snap),
            "last_error": meter.last_error,
        }

    def peek_session(self, session_id: str) -> dict[str, Any]:
        session = self._get(session_id)
        meter = self.meters[session.host]
        return {**self._result(session, meter.snapshot(), datetime.now(timezone.utc)), "running": True}

    def stop_session(self, session_id: str) -> dict[str, Any]:
        session = self._get(session_id)
        snap = self._fresh_snapshot(self.meters[session.host])
        end_time = datetime.now(timezone.utc)
        with self._lock:
            if self._drop(session_id) is None:  # a concurrent stop won
                raise UnknownSession(session_id)
        return {**self._result(session, snap, end_time), "running": False}

    def cancel_session(self, session_id: str) -> None:
        with self._lock:
            if self._drop(session_id) is None:
                raise UnknownSession(session_id)

    def sessions(self, host: str | None = None, with_ids: bool = False) -> list[dict[str, Any]]:
        """Open sessions; their ids (capabilities) only for an administrator."""
        with self._lock:
            items = [s for s in self._sessions.values() if host is None or s.host == host]
        return [{**({"session_id": s.session_id, "client": s.client} if with_ids else {}),
                 "host": s.host, "label": s.label,
                 "start_time_iso": s.start_time.isoformat(timespec="milliseconds"), "legacy": s.legacy}
                for s in items]

    # ------------------------------------------------------------------------------ LET 0.1.x
    def legacy_start(self, host: str, client: str = "") -> dict[str, Any]:
        """``/<host>/start``: 0.1.x reset the counter and answered what it held. Here the host's
        previous legacy session is closed and reported, and a new one begins; nothing is reset."""
        meter = self.meter(host)
        with self._lock:
            previous = self._legacy.get(host)
        before: dict[str, Any] | None = None
        if previous is not None:
            try:
                before = self.stop_session(previous)
            except UnknownSession:
                before = None
        started = self.start_session(host, label="legacy", legacy=True, client=client)
        with self._lock:
            self._legacy[host] = started["session_id"]
        if before is None:
            # What has been metered since the server began watching this host.
            snap = meter.snapshot()
            now = datetime.now(timezone.utc)
            before = {**_times(datetime.fromtimestamp(meter.started, timezone.utc), now),
                      "duration": snap.mono - meter.started, "energy_consumed": snap.energy_kwh}
        return {**started, "energy_consumed": before["energy_consumed"], "duration": before["duration"],
                "start_time": before["start_time"], "timestamp": started["timestamp"],
                "start_time_iso": before["start_time_iso"], "timestamp_iso": started["timestamp_iso"],
                "tracking_mode": "GroundTruth"}

    def legacy_stop(self, host: str) -> dict[str, Any]:
        """``/<host>/stop``: energy since this host's last ``/<host>/start`` (0.1.x's meaning).
        0.1.x's stop did not end the tracking, so neither does this: the session keeps running.
        A socket that never answered is an error, not 0 kWh."""
        meter = self.meter(host)
        with self._lock:
            current = self._legacy.get(host)
            session = self._sessions.get(current) if current else None
        snap = self._fresh_snapshot(meter)
        if meter.last is None:
            raise SocketNeverAnswered(f"the socket of host {host!r} has not answered since the server "
                                      f"started ({meter.last_error or 'no reading yet'}); check that it "
                                      "is powered and reachable from the server")
        now = datetime.now(timezone.utc)
        if session is None:
            return {**_times(datetime.fromtimestamp(meter.started, timezone.utc), now),
                    "duration": snap.mono - meter.started, "energy_consumed": snap.energy_kwh,
                    "host": host, "tracking_mode": "GroundTruth", "power_w": snap.power_w,
                    "quality": quality(Snapshot(meter.started, 0.0, 0.0, 0, 0, 0, 0.0, False, None), snap)}
        return {**self._result(session, snap, now), "running": True}
