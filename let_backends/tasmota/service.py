"""The ground-truth server's logic, without HTTP: meters, pollers and sessions.

Kept apart from the FastAPI layer (``server.py``) so that it imports nothing heavy and can be
reasoned about on its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Mapping

from attrs import frozen

from let_backends.tasmota.config import SocketConfig
from let_backends.tasmota.meter import HostMeter, Snapshot, quality
from let_backends.tasmota.protocol import TASMOTA_TIME, TasmotaSocket

#: Sessions never stopped (a killed client) are dropped oldest first beyond this many.
MAX_SESSIONS = 20_000


class UnknownHost(KeyError):
    pass


class UnknownSession(KeyError):
    pass


@frozen
class Session:
    session_id: str
    host: str
    label: str
    start: Snapshot
    start_time: datetime  # UTC, aware
    legacy: bool = False


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
    """Meters every configured host in the background and answers session requests."""

    def __init__(self, sockets: Mapping[str, SocketConfig], poll_interval: float = 1.0,
                 socket_timeout: float = 2.0, retries: int = 1) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.configs = dict(sockets)
        self.poll_interval = poll_interval
        self.socket_timeout = socket_timeout
        self.retries = retries
        self._sockets = {h: TasmotaSocket(c.address, c.user, c.password, timeout=socket_timeout,
                                          retries=retries) for h, c in self.configs.items()}
        self.meters = {h: HostMeter(h, s.read, uptime=s.uptime) for h, s in self._sockets.items()}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._legacy: dict[str, str] = {}  # host -> session id of LET 0.1.x's /<host>/start
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

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
        return self

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.socket_timeout * (self.retries + 1) + 2)
        self._threads.clear()
        for s in self._sockets.values():
            s.close()

    def _poll_loop(self, meter: HostMeter) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            meter.refresh()
            self._stop.wait(max(self.poll_interval - (time.monotonic() - began), 0.05))

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
        if meter.last_ok is None or time.monotonic() - meter.last_ok > 2 * self.poll_interval:
            meter.refresh(wait_s=self._wait_s)
        st = meter.status()
        return {k: st[k] for k in ("host", "online", "power_w", "voltage_v", "current_a",
                                   "reading_age_s", "socket_time", "last_error")}

    # ------------------------------------------------------------------------------ sessions
    def _fresh_snapshot(self, meter: HostMeter) -> Snapshot:
        arrival = time.monotonic()
        meter.refresh(arrival, wait_s=self._wait_s)
        return meter.snapshot()

    def start_session(self, host: str, label: str = "", legacy: bool = False) -> dict[str, Any]:
        meter = self.meter(host)
        snap = self._fresh_snapshot(meter)
        session = Session(uuid.uuid4().hex, host, label, snap, datetime.now(timezone.utc), legacy)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > MAX_SESSIONS:
                old_id, old = self._sessions.popitem(last=False)
                if self._legacy.get(old.host) == old_id:
                    del self._legacy[old.host]
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
            "reading": reading.as_dict() if reading else None,
            "hardware": self.configs[host].hardware or host,
        }

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
            if self._sessions.pop(session_id, None) is None:  # a concurrent stop won
                raise UnknownSession(session_id)
            if self._legacy.get(session.host) == session_id:
                del self._legacy[session.host]
        return {**self._result(session, snap, end_time), "running": False}

    def cancel_session(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                raise UnknownSession(session_id)
            if self._legacy.get(session.host) == session_id:
                del self._legacy[session.host]

    def sessions(self, host: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = [s for s in self._sessions.values() if host is None or s.host == host]
        return [{"session_id": s.session_id, "host": s.host, "label": s.label,
                 "start_time_iso": s.start_time.isoformat(timespec="milliseconds"), "legacy": s.legacy}
                for s in items]

    # ------------------------------------------------------------------------------ LET 0.1.x
    def legacy_start(self, host: str) -> dict[str, Any]:
        """``/<host>/start``: 0.1.x reset the counter and answered what it held. Here the host's
        previous legacy session is closed and reported, and a new one begins; nothing is reset."""
        meter = self.meter(host)
        with self._lock:
            previous = self._legacy.get(host)
        if previous is not None:
            try:
                before = self.stop_session(previous)
            except UnknownSession:
                before = None
        else:
            before = None
        started = self.start_session(host, label="legacy", legacy=True)
        with self._lock:
            self._legacy[host] = started["session_id"]
        if before is None:
            # What has been metered since the server began watching this host.
            snap = meter.snapshot()
            began = datetime.now(timezone.utc).timestamp() - (snap.mono - meter.started)
            before = {**_times(datetime.fromtimestamp(began, timezone.utc), datetime.now(timezone.utc)),
                      "duration": snap.mono - meter.started, "energy_consumed": snap.energy_kwh}
        return {**started, "energy_consumed": before["energy_consumed"], "duration": before["duration"],
                "start_time": before["start_time"], "timestamp": started["timestamp"],
                "start_time_iso": before["start_time_iso"], "timestamp_iso": started["timestamp_iso"],
                "tracking_mode": "GroundTruth"}

    def legacy_stop(self, host: str) -> dict[str, Any]:
        """``/<host>/stop``: energy since this host's last ``/<host>/start`` (0.1.x's meaning).
        0.1.x's stop did not end the tracking, so neither does this: the session keeps running."""
        meter = self.meter(host)
        with self._lock:
            current = self._legacy.get(host)
            session = self._sessions.get(current) if current else None
        snap = self._fresh_snapshot(meter)
        now = datetime.now(timezone.utc)
        if session is None:
            began = now.timestamp() - (snap.mono - meter.started)
            return {**_times(datetime.fromtimestamp(began, timezone.utc), now),
                    "duration": snap.mono - meter.started, "energy_consumed": snap.energy_kwh,
                    "host": host, "tracking_mode": "GroundTruth", "power_w": snap.power_w,
                    "quality": quality(Snapshot(meter.started, 0.0, 0.0, 0, 0, 0, 0.0, False, None), snap)}
        return {**self._result(session, snap, now), "running": True}
