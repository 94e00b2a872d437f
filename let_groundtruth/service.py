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
from datetime import datetime
from pathlib import Path
from typing import Any

from attrs import asdict, define, evolve

from let_groundtruth.clock import SYSTEM_CLOCK, Clock
from let_groundtruth.config import SocketConfig
from let_groundtruth.meter import HostMeter, Limits, Snapshot, quality
from let_groundtruth.protocol import TASMOTA_TIME, TasmotaSocket
from let_groundtruth.state import StateStore, StateUnavailable

#: Caps on open sessions, counted per client address (on one host, and on all hosts): one client's
#: abandoned sessions (a killed job array) never refuse another client's start on the same host.
#: Beyond them that client gets a 429; running sessions are never evicted to make room.
MAX_SESSIONS_PER_HOST = 1000
MAX_SESSIONS_PER_CLIENT = 1000
#: A session that is not renewed (``GET /sessions/{id}``; LET's client does it every
#: ``LET_GT_HEARTBEAT_S``, 30 s) for this long expires: its energy so far is kept for its opener
#: and it no longer counts against any cap.
DEFAULT_LEASE_S = 600.0
#: How long an expired session's result waits for its opener (at most the client's cap of them).
EXPIRED_KEEP_S = 7 * 86400.0
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


@define(eq=False)
class Session:
    session_id: str
    host: str
    label: str
    start: Snapshot
    start_time: datetime  # UTC, aware: a label only
    legacy: bool = False
    client: str = ""
    #: the monotonic instant of the last sign of life from its opener (start, GET, stop)
    renewed: float = 0.0


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
    ``clock`` gives every duration and freshness (monotonic) and the labels (wall); tests inject one.
    """

    def __init__(self, sockets: Mapping[str, SocketConfig], poll_interval: float = 1.0,
                 socket_timeout: float = 2.0, retries: int = 1, *, state_dir: str | Path | None = None,
                 limits: Limits | None = None, max_sessions_per_host: int = MAX_SESSIONS_PER_HOST,
                 max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT,
                 lease_s: float = DEFAULT_LEASE_S, clock: Clock = SYSTEM_CLOCK) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        if lease_s <= 0:
            raise ValueError(f"the session lease must be > 0 seconds, got {lease_s!r}")
        self.configs = dict(sockets)
        self.poll_interval = poll_interval
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.limits = limits or Limits()
        self.max_per_host = max_sessions_per_host
        self.max_per_client = max_sessions_per_client
        self.lease_s = float(lease_s)
        self.clock = clock
        self._sockets = {h: TasmotaSocket(c.address, c.user, c.password, timeout=socket_timeout,
                                          retries=retries) for h, c in self.configs.items()}
        self.meters = {h: HostMeter(h, s.read, uptime=s.uptime, clock=clock.monotonic, limits=self.limits)
                       for h, s in self._sockets.items()}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._per_host: Counter[tuple[str, str]] = Counter()  # (client, host) -> open sessions
        self._per_client: Counter[str] = Counter()
        self._legacy: dict[str, str] = {}  # host -> session id of LET 0.1.x's /<host>/start
        #: session id -> (client, monotonic instant it expired, result kept for the opener)
        self._expired: OrderedDict[str, tuple[str, float, dict[str, Any]]] = OrderedDict()
        #: results of stops whose state write failed: a retried stop answers the same figure
        self._stopping: dict[str, dict[str, Any]] = {}
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
        offset = self.clock.offset_since(self.store.mark())
        for host, state in self.store.meters().items():
            if host in self.meters:
                self.meters[host].restore(state, offset)
        now = self.clock.monotonic()
        for row in self.store.sessions():
            if row["host"] not in self.meters:
                continue  # the host left the config: its sessions cannot be finished
            start = Snapshot(**row["start"])
            # A fresh lease: while the server was down its clients could not renew.
            session = Session(row["session_id"], row["host"], row["label"], evolve(start, mono=start.mono + offset),
                              datetime.fromisoformat(row["start_time"]), row["legacy"], row["client"], renewed=now)
            self._remember(session)
            if session.legacy:
                self._legacy[session.host] = session.session_id
            self.restored_sessions += 1
        for sid, client, when, result in self.store.expired():
            self._expired[sid] = (client, when + offset, result)

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
            try:
                self.persist()
            except StateUnavailable:
                pass  # what the last write kept stands; the restart continues from it
            self.store.close()

    def _poll_loop(self, meter: HostMeter) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            meter.refresh()
            self._stop.wait(max(self.poll_interval - (time.monotonic() - began), 0.05))

    def _housekeeping(self) -> None:
        """Persist moved meters and expire sessions whose lease ran out, every poll interval."""
        while not self._stop.wait(self.poll_interval):
            try:
                self.persist()
            except Exception:  # a full disk must not stop the metering; the next round retries
                pass
            try:
                self.expire()
            except Exception:  # likewise: an expiry that cannot be written waits for the next round
                pass

    def persist(self) -> None:
        if self.store is None:
            return
        moved = {}
        for host, meter in self.meters.items():
            state = meter.state()
            if self._saved.get(host) != state["version"]:
                moved[host] = state
        self.store.save_meters(moved, self.clock.mark())
        self._saved.update({h: s["version"] for h, s in moved.items()})

    def expire(self, now: float | None = None) -> int:
        """End the sessions whose opener has not renewed them within the lease: their result so
        far is kept for the opener (``GET`` and ``stop`` answer it, marked ``expired``) and they
        stop counting against the caps. Returns how many expired now."""
        now = self.clock.monotonic() if now is None else now
        with self._lock:
            due = [(s, self._stopping.get(s.session_id)) for s in self._sessions.values()
                   if not s.legacy and now - s.renewed > self.lease_s]
        expired = 0
        for session, pending in due:
            # A stop that failed on the state already fixed the figure; else the figures so far.
            figures = pending or self._result(session, self.meters[session.host].snapshot(), self.clock.now_label())
            result = {**figures, "running": False, "expired": True,
                      "expired_after_s": self.lease_s,
                      "note": f"expired: not renewed for {self.lease_s:g} s (the opener renews with GET "
                              "/sessions/{id}); the figures run to the expiry"}
            with self._lock:
                if self._sessions.get(session.session_id) is not session:
                    continue  # stopped meanwhile
                if self.store is not None:
                    self.store.expire_session(session.session_id, session.client, now, result, self.clock.mark())
                self._forget(session.session_id)
                self._expired[session.session_id] = (session.client, now, result)
                expired += 1
        self._trim_expired(now)
        return expired

    def _trim_expired(self, now: float) -> None:
        """Kept results older than ``EXPIRED_KEEP_S``, and a client's beyond its cap, go."""
        with self._lock:
            per_client: Counter[str] = Counter()
            gone = []
            for sid, (client, when, _result) in reversed(self._expired.items()):  # newest first
                per_client[client] += 1
                if now - when > EXPIRED_KEEP_S or per_client[client] > self.max_per_client:
                    gone.append(sid)
            for sid in gone:
                del self._expired[sid]
        if gone and self.store is not None:
            try:
                self.store.forget_expired(gone)
            except StateUnavailable:
                pass  # they come back after a restart and are trimmed again then

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

    def open_sessions(self) -> Counter[str]:
        """Open sessions per host (counts only: ids are capabilities)."""
        with self._lock:
            return Counter(s.host for s in self._sessions.values())

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

    def _remember(self, session: Session) -> None:
        """Register a session in memory (caller holds ``_lock`` or is restoring)."""
        self._sessions[session.session_id] = session
        self._per_host[(session.client, session.host)] += 1
        self._per_client[session.client] += 1

    def _forget(self, session_id: str) -> Session | None:
        """Remove a session from memory only (caller holds ``_lock``)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return None
        self._per_host[(session.client, session.host)] -= 1
        self._per_client[session.client] -= 1
        if self._legacy.get(session.host) == session_id:
            del self._legacy[session.host]
        self._stopping.pop(session_id, None)
        return session

    def _drop(self, session_id: str) -> Session | None:
        """End a session: the state first, memory only once that is written (caller holds
        ``_lock``); ``StateUnavailable`` leaves both as they were."""
        if session_id not in self._sessions:
            return None
        if self.store is not None:
            self.store.remove_session(session_id)
        return self._forget(session_id)

    def start_session(self, host: str, label: str = "", legacy: bool = False,
                      client: str = "") -> dict[str, Any]:
        meter = self.meter(host)
        with self._lock:
            self._check_caps(host, client)
        snap = self._fresh_snapshot(meter)
        # 128 random bits: the id is the capability to read, stop or drop the session.
        session = Session(secrets.token_hex(16), host, label, snap, self.clock.label(snap.mono),
                          legacy, client, renewed=self.clock.monotonic())
        with self._lock:
            self._check_caps(host, client)  # others may have started sessions while we polled
            if self.store is not None:  # written before it exists in memory: a failed write leaves no ghost
                self.store.add_session({"session_id": session.session_id, "host": session.host,
                                        "label": session.label, "client": session.client,
                                        "legacy": session.legacy, "created": session.start.mono,
                                        "start_time": session.start_time.isoformat(),
                                        "start": asdict(session.start)}, self.clock.mark())
            self._remember(session)
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
            "lease_s": self.lease_s,
        }

    def _check_caps(self, host: str, client: str) -> None:
        who = client or "?"
        if self._per_host[(client, host)] >= self.max_per_host:
            raise TooManySessions(f"client {who} already has {self._per_host[(client, host)]} open sessions on host "
                                  f"{host!r} (the server's --max-sessions-per-host); stop finished ones, or wait: "
                                  f"sessions not renewed expire after {self.lease_s:g} s")
        if self._per_client[client] >= self.max_per_client:
            raise TooManySessions(f"client {who} already has {self._per_client[client]} open sessions (the server's "
                                  "--max-sessions-per-client); stop finished ones, or wait: sessions not renewed "
                                  f"expire after {self.lease_s:g} s")

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

    def _kept(self, session_id: str) -> dict[str, Any]:
        """An expired session's figures, kept for its opener; UnknownSession when there are none."""
        with self._lock:
            kept = self._expired.get(session_id)
        if kept is None:
            raise UnknownSession(session_id)
        return dict(kept[2])

    def peek_session(self, session_id: str) -> dict[str, Any]:
        """A running session's figures so far; asking renews its lease."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None:
                session.renewed = self.clock.monotonic()
        if session is None:
            return self._kept(session_id)
        meter = self.meters[session.host]
        return {**self._result(session, meter.snapshot(), self.clock.now_label()), "running": True}

    def stop_session(self, session_id: str) -> dict[str, Any]:
        with self._lock:
            session = self._sessions.get(session_id)
            pending = self._stopping.get(session_id)
            if session is not None:
                session.renewed = self.clock.monotonic()
        if session is None:
            return self._kept(session_id)  # stays kept: a stop whose answer was lost may be asked again
        if pending is None:
            snap = self._fresh_snapshot(self.meters[session.host])
            pending = {**self._result(session, snap, self.clock.now_label()), "running": False}
        with self._lock:
            if self._sessions.get(session_id) is not session:  # a concurrent stop won
                raise UnknownSession(session_id)
            try:
                self._drop(session_id)
            except StateUnavailable:
                # The session stays open in memory and in the state; the retry answers this figure.
                self._stopping[session_id] = pending
                raise
        return pending

    def cancel_session(self, session_id: str) -> None:
        with self._lock:
            if self._drop(session_id) is None:
                if self._expired.pop(session_id, None) is None:
                    raise UnknownSession(session_id)
                gone = [session_id]
            else:
                return
        if self.store is not None:
            try:
                self.store.forget_expired(gone)
            except StateUnavailable:
                pass  # kept in the state: trimmed after its time

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
            now = self.clock.now_label()
            before = {**_times(self.clock.label(meter.started), now),
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
        now = self.clock.now_label()
        if session is None:
            return {**_times(self.clock.label(meter.started), now),
                    "duration": snap.mono - meter.started, "energy_consumed": snap.energy_kwh,
                    "host": host, "tracking_mode": "GroundTruth", "power_w": snap.power_w,
                    "quality": quality(Snapshot(meter.started, 0.0, 0.0, 0, 0, 0, 0.0, False, None), snap)}
        return {**self._result(session, snap, now), "running": True}
