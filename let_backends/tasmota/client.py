"""Clients of the ground-truth server: ``GroundTruthClient`` (plain HTTP calls), ``MeteredSession``
(one session with its fallbacks) and ``GroundTruthTracker`` (LET 0.1.x's start/stop object).

Every call has one *total* deadline (``LET_GT_TIMEOUT``, default 10 s): ``requests`` applies its
timeout per read, so a server trickling bytes held a user's run for as long as it liked. The
request runs in a helper thread and the caller stops waiting at the deadline.
"""

from __future__ import annotations

import threading
import time
import warnings
from datetime import datetime, timezone
from typing import Any

from let_backends.tasmota.config import (
    NOT_CONFIGURED,
    ServerLocation,
    ca_bundle,
    client_hostname,
    client_timeout,
    heartbeat_seconds,
    max_energy_kwh,
    rated_max_w,
    server_location,
    token,
)
from let_core.errors import LetError, LetWarning

TRACKING_MODE = "GroundTruth"
#: A server's answers are small JSON documents; a larger body is not our server.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: A stop the server could not write (503, its state disk) is asked again this often, this far apart.
STOP_TRIES = 3
STOP_RETRY_S = 1.0


class GroundTruthError(LetError, RuntimeError):
    """The ground-truth server could not be reached or refused a request.

    A ``RuntimeError`` too, as LET 0.1.x raised, so old ``except RuntimeError`` code still works.
    ``status`` is the HTTP status (None: no answer at all); ``cause`` one word for messages.
    """

    def __init__(self, message: str, status: int | None = None, cause: str = "error",
                 body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause
        self.body = body


class GroundTruthClient:
    """Thin HTTP client of one ground-truth server."""

    def __init__(self, location: ServerLocation, bearer: str | None = None, timeout: float | None = None) -> None:
        self.location = location
        self.timeout = client_timeout() if timeout is None else timeout
        self._secret = token() if bearer is None else bearer
        self._verify = ca_bundle() if location.scheme == "https" else True
        self._local = threading.local()

    @property
    def url(self) -> str:
        return self.location.url

    def _session(self) -> Any:
        """One ``requests.Session`` per calling thread (they are not thread-safe)."""
        http = getattr(self._local, "http", None)
        if http is None:
            import requests

            http = requests.Session()
            http.verify = self._verify
            if self._secret:
                http.headers["Authorization"] = f"Bearer {self._secret}"
            self._local.http = http
        return http

    def _request(self, method: str, url: str, deadline: float, **kwargs: Any) -> tuple[int, Any]:
        """The request in a helper thread; the caller waits at most ``deadline`` seconds."""
        box: dict[str, Any] = {}
        http = self._session()

        def work() -> None:
            try:
                # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE
                with http.request(method, url, timeout=(min(deadline, 5.0), deadline), stream=True,
                                  verify=self._verify, **kwargs) as response:
                    body = bytearray()
                    for chunk in response.iter_content(65536):
                        body += chunk
                        if len(body) > MAX_ANSWER_BYTES:
                            raise ValueError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
                    box["answer"] = (response.status_code, bytes(body))
            except BaseException as exc:  # handed to the caller
                box["error"] = exc

        worker = threading.Thread(target=work, name="let-gt-request", daemon=True)
        worker.start()
        worker.join(deadline)
        if worker.is_alive():
            self._local.http = None  # the abandoned thread keeps its session; start a fresh one
            raise TimeoutError(f"no complete answer within {deadline:g} s")
        if "error" in box:
            raise box["error"]
        return box["answer"]  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        import json

        import requests

        deadline = timeout or self.timeout
        try:
            status, raw = self._request(method, f"{self.url}{path}", deadline, **kwargs)
        except (requests.RequestException, OSError, ValueError) as exc:
            detail = "timed out" if isinstance(exc, (TimeoutError, requests.Timeout)) else type(exc).__name__
            tls = isinstance(exc, requests.exceptions.SSLError)
            fix = ("check its certificate: set LET_GT_CA_BUNDLE to the PEM file that signed it" if tls else
                   "is it running (`lett gt serve --config FILE`) and reachable from here?")
            raise GroundTruthError(f"cannot reach the ground-truth server at {self.url} (from "
                                   f"{self.location.source}): {detail}; {fix}",
                                   cause="tls" if tls else ("timeout" if detail == "timed out" else "unreachable")) from None
        try:
            body = json.loads(raw.decode("utf-8", "replace")) if raw else None
        except ValueError:
            body = {"error": raw[:200].decode("utf-8", "replace")}
        if status == 401:
            said = body.get("token") if isinstance(body, dict) else None
            if self._secret and said != "missing":
                raise GroundTruthError(f"the ground-truth server at {self.url} rejected the token in "
                                       "LET_GT_TOKEN (wrong token); set it to the token the server was "
                                       "started with", status, "wrong-token", body)
            raise GroundTruthError(f"the ground-truth server at {self.url} needs a token and none is set: "
                                   "set LET_GT_TOKEN to the token it was started with", status,
                                   "missing-token", body)
        if status >= 400:
            message = body.get("error") if isinstance(body, dict) else body
            raise GroundTruthError(f"ground-truth server {self.url}: {method} {path} -> {status}: {message}",
                                   status, "refused", body)
        return body

    def hosts(self, timeout: float | None = None) -> list[str]:
        return list(self._call("GET", "/list", timeout=timeout))

    def statuses(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every host's status (``GET /hosts``)."""
        return list(self._call("GET", "/hosts", timeout=timeout))

    def host(self, host: str, timeout: float | None = None) -> dict[str, Any]:
        return dict(self._call("GET", f"/hosts/{host}", timeout=timeout))

    def power(self, host: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/hosts/{host}/power"))

    def start(self, host: str, label: str = "") -> dict[str, Any]:
        return dict(self._call("POST", f"/hosts/{host}/sessions", json={"label": label[:200]}))

    def peek(self, session_id: str, timeout: float | None = None) -> dict[str, Any]:
        return dict(self._call("GET", f"/sessions/{session_id}", timeout=timeout))

    def stop(self, session_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/sessions/{session_id}/stop"))

    def cancel(self, session_id: str) -> None:
        self._call("DELETE", f"/sessions/{session_id}")

    def legacy(self, host: str, command: str) -> dict[str, Any]:
        """LET 0.1.x's ``/<host>/start`` and ``/<host>/stop``."""
        return dict(self._call("GET", f"/{host}/{command}"))

    def close(self) -> None:
        http = getattr(self._local, "http", None)
        if http is not None:
            http.close()
            self._local.http = None


def is_legacy_server(exc: GroundTruthError) -> bool:
    """A LET 0.1.x server: no session routes. Its http.server answers 501 to a POST and a plain
    (non-JSON) 404 to unknown paths; a 1.x server's 404s are JSON with an "error"."""
    if exc.status == 501:
        return True
    return exc.status == 404 and not (isinstance(exc.body, dict) and "hosts" in exc.body)


def parse_times(result: dict[str, Any]) -> dict[str, Any]:
    """start_time/timestamp as timezone-aware datetimes (from the server's exact ISO fields;
    a LET 0.1.x server sends socket-local times without a zone)."""
    out = dict(result)
    for key in ("start_time", "timestamp"):
        iso = result.get(f"{key}_iso")
        if iso:
            out[key] = datetime.fromisoformat(iso)
        elif isinstance(result.get(key), str):
            try:
                out[key] = datetime.strptime(result[key], "%Y-%m-%dT%H:%M:%S").astimezone()
            except ValueError:
                pass
    return out


class MeteredSession:
    """One session on the server, from start to stop, for one run or task.

    - falls back to LET 0.1.x's ``/<host>/start|stop`` when the server has no session routes
      (warning: those reset the socket's counter);
    - fetches the session's figures every ``heartbeat_s`` in a daemon thread; when the server is
      gone at stop, the last figures seen are the result, with the rest of the run interpolated
      from the last power and marked as a gap (coverage says how much was metered).
    """

    def __init__(self, client: GroundTruthClient, host: str, label: str = "",
                 heartbeat_s: float | None = None) -> None:
        self.client = client
        self.host = host
        self.label = label
        self.heartbeat_s = heartbeat_seconds() if heartbeat_s is None else heartbeat_s
        self.session_id: str | None = None
        self.legacy = False
        self.started: dict[str, Any] = {}
        self.last_seen: dict[str, Any] | None = None
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> dict[str, Any]:
        self._t0 = time.monotonic()  # a wall-clock step must not change a duration
        try:
            started = self.client.start(self.host, self.label)
        except GroundTruthError as exc:
            if not is_legacy_server(exc):
                raise
            warnings.warn(f"the ground-truth server at {self.client.url} is a LET 0.1.x server (no session "
                          "routes); using its /<host>/start and /<host>/stop, which RESET the socket's "
                          "energy counter (other users of that socket lose their figures). Upgrade the "
                          "server to LET 1.x to avoid it.", LetWarning, stacklevel=3)
            self.legacy = True
            started = self.client.legacy(self.host, "start")
            started.setdefault("session_id", "")
        self.started = started
        self.session_id = started.get("session_id") or None
        lease = started.get("lease_s")
        if isinstance(lease, (int, float)) and lease > 0:
            # Renew well within the server's lease (a server may run a short one), or it expires.
            self.heartbeat_s = min(self.heartbeat_s, max(float(lease) / 3.0, 0.05))
        if not self.legacy and self.session_id:
            self._stop.clear()
            self._thread = threading.Thread(target=self._heartbeat, name="let-gt-heartbeat", daemon=True)
            self._thread.start()
        return started

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                assert self.session_id is not None
                seen = self.client.peek(self.session_id, timeout=min(self.client.timeout, 5.0))
                if not self._stop.is_set():
                    self.last_seen = seen
            except GroundTruthError:
                continue  # the server may come back; the last figures seen stay

    def _end_heartbeat(self) -> None:
        # No long join: a peek in flight to a stuck server must not add to stop()'s deadline.
        # The thread is a daemon, ends after its current peek and then writes nothing.
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=0.2)
            self._thread = None

    def stop(self, partial_ok: bool = True) -> dict[str, Any]:
        """The session's result. With ``partial_ok``, a server that is gone (or lost the session)
        gives the last figures seen, extrapolated and marked, instead of an error."""
        self._end_heartbeat()
        if self.legacy:
            result = self.client.legacy(self.host, "stop")
            duration = float(result.get("duration") or 0.0)
            # The counter was reset at start and read now: the socket metered all of it itself.
            result["quality"] = {"complete": True, "coverage": 1.0, "interpolated_gaps": 0,
                                 "interpolated_seconds": 0.0, "legacy_server": True}
            result["duration"] = duration
            return result
        if self.session_id is None:
            raise GroundTruthError("stop() before start(); call start() first")
        for attempt in range(STOP_TRIES):
            try:
                result = self.client.stop(self.session_id)
                break
            except GroundTruthError as exc:
                # 503 + "retry": the server's state disk refused the write and changed nothing.
                if exc.status == 503 and isinstance(exc.body, dict) and exc.body.get("retry") and attempt + 1 < STOP_TRIES:
                    time.sleep(STOP_RETRY_S)
                    continue
                unknown = exc.status == 404 and isinstance(exc.body, dict) and exc.body.get("unknown_session")
                if not partial_ok or not (exc.status is None or exc.status >= 500 or unknown):
                    raise
                return self.partial(str(exc))
        self.check_plausible(result)
        if result.get("expired"):
            # The server ended it at its lease (no renewal reached it): its figures run to then,
            # the rest of this run is a gap, as when the server is lost.
            self.last_seen = result
            return self.partial(str(result.get("note") or "the server expired the session"))
        return result

    def check_plausible(self, result: dict[str, Any]) -> None:
        """Refuse a stop answer no socket can have metered: more energy than the rated power
        (``LET_GT_RATED_MAX_W``, 3680 W) over this session's own duration, or a negative or
        non-finite one. Raises ``GroundTruthError`` (cause "implausible") naming the figures."""
        import math

        elapsed = time.monotonic() - self._t0
        try:
            energy = float(result.get("energy_consumed"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            energy = math.nan
        rated = rated_max_w()
        limit = max_energy_kwh(rated, elapsed)
        if not (math.isfinite(energy) and 0.0 <= energy <= limit):
            raise GroundTruthError(
                f"the ground-truth server at {self.client.url} answered {result.get('energy_consumed')!r} kWh for a "
                f"{elapsed:.1f} s session: no socket rated {rated:g} W meters that (at most {limit:.6f} kWh); "
                "not recorded as metered. Check the server and its sockets (or LET_GT_RATED_MAX_W).",
                None, "implausible", result)

    def partial(self, reason: str) -> dict[str, Any]:
        """What was last seen of this session, with the unseen rest of the run as a gap."""
        seen = self.last_seen or {**self.started, "duration": 0.0, "energy_consumed": 0.0,
                                  "quality": {"coverage": 0.0, "interpolated_gaps": 0,
                                              "interpolated_seconds": 0.0}}
        duration = max(time.monotonic() - self._t0, float(seen.get("duration") or 0.0))
        seen_s = float(seen.get("duration") or 0.0)
        tail = max(duration - seen_s, 0.0)
        power = seen.get("power_w")
        energy = float(seen.get("energy_consumed") or 0.0)
        if isinstance(power, (int, float)):
            energy += float(power) * tail / 3.6e6
        q = dict(seen.get("quality") or {})
        metered_s = float(q.get("coverage") or 0.0) * seen_s
        q.update({"complete": False, "socket_online": None,
                  "coverage": round(metered_s / duration, 6) if duration > 0 else 0.0,
                  "interpolated_gaps": int(q.get("interpolated_gaps") or 0) + (1 if tail > 0 else 0),
                  "interpolated_seconds": round(float(q.get("interpolated_seconds") or 0.0) + tail, 3),
                  "partial": reason})
        now = datetime.now(timezone.utc)
        return {**seen, "duration": duration, "energy_consumed": energy, "quality": q, "running": False,
                "timestamp_iso": now.isoformat(timespec="milliseconds"),
                "timestamp": now.astimezone().strftime("%Y-%m-%dT%H:%M:%S")}

    def cancel(self) -> None:
        self._end_heartbeat()
        if self.session_id is not None and not self.legacy:
            try:
                self.client.cancel(self.session_id)
            except GroundTruthError:
                pass  # already gone (server restart): nothing to drop


_DISABLED = {"energy_consumed": -1, "start_time": None, "timestamp": None, "duration": -1,
             "tracking_mode": TRACKING_MODE}


class GroundTruthTracker:
    """LET 0.1.x's ground-truth tracker: ``start()``/``stop()`` a session for this host.

    The server comes from ``LET_GT_HOST``/``LET_GT_PORT`` or ``$LET_HOME/GT_REMOTE_CONFIG``;
    this host's name from ``LET_GT_HOSTNAME``, else ``socket.gethostname()``. As in 0.1.x,
    ``server_host``/``server_port`` hold what was configured (strings), or None when tracking is
    disabled. With ``crash_if_unavailable=False`` nothing raises: a missing server gives a warning
    and ``energy_consumed == -1`` results, and a server lost at stop gives the last figures seen.
    """

    def __init__(self, crash_if_unavailable: bool = True, verbose: bool = True, label: str = "") -> None:
        self.verbose = verbose
        self.crash_if_unavailable = crash_if_unavailable
        self.label = label
        self.hostname = client_hostname()
        self.client: GroundTruthClient | None = None
        self.server_host: str | None = None
        self.server_port: str | None = None
        self._session: MeteredSession | None = None
        try:
            location = server_location()
            if location is None:
                raise GroundTruthError(f"[GroundTruthTracker] cannot track: {NOT_CONFIGURED}")
            client = GroundTruthClient(location)
            hosts = client.hosts(timeout=5)
            if self.hostname not in hosts:
                raise GroundTruthError(
                    f"[GroundTruthTracker] the server at {location.url} does not meter host "
                    f"{self.hostname!r} (it knows {hosts}); add it to the server's config, or set "
                    "LET_GT_HOSTNAME to this computer's name there")
        except LetError as exc:  # ConfigurationError (bad file) or GroundTruthError
            if crash_if_unavailable:
                raise
            warnings.warn(f"{exc}. Tracking is disabled; start() and stop() return energy_consumed=-1.",
                          LetWarning, stacklevel=2)
            return
        self.client = client
        self.server_host, self.server_port = location.host, str(location.port)
        if verbose:
            print(f"[GroundTruthTracker] Tracking {self.hostname} with smart sockets via {location.url}")

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def start(self) -> dict[str, Any]:
        """Begin a session for this host (a running one is dropped, as 0.1.x restarted)."""
        if self.client is None:
            return dict(_DISABLED)
        if self._session is not None:
            self._session.cancel()
        session = MeteredSession(self.client, self.hostname, self.label)
        try:
            results = parse_times(session.start())
        except GroundTruthError as exc:
            if self.crash_if_unavailable:
                raise
            warnings.warn(f"{exc}; this session is not tracked.", LetWarning, stacklevel=2)
            return dict(_DISABLED)
        self._session = session
        if self.verbose:
            power = results.get("power_w")
            print(f"[GroundTruthTracker] Started session {(session.session_id or 'legacy')[:8]} on "
                  f"{self.hostname}" + (f" at {power:.0f} W" if isinstance(power, (int, float)) else ""))
        return results

    def stop(self) -> dict[str, Any]:
        """End the session: start_time, timestamp, duration (s), energy_consumed (kWh), quality."""
        if self.client is None:
            return dict(_DISABLED)
        if self._session is None:
            if not self.crash_if_unavailable:
                return dict(_DISABLED)
            raise GroundTruthError("[GroundTruthTracker] stop() before start(); call start() first")
        session, self._session = self._session, None
        try:
            results = parse_times(session.stop(partial_ok=not self.crash_if_unavailable))
        except GroundTruthError as exc:
            if self.crash_if_unavailable:
                raise
            warnings.warn(f"{exc}; no result for this session.", LetWarning, stacklevel=2)
            return dict(_DISABLED)
        results["tracking_mode"] = TRACKING_MODE
        q = results.get("quality", {})
        if q.get("partial"):
            warnings.warn(f"[GroundTruthTracker] the server was lost at stop ({q['partial']}); the result is "
                          f"the last figures seen, metered for {q.get('coverage', 0):.0%} of the session.",
                          LetWarning, stacklevel=2)
        if self.verbose:
            note = "" if q.get("complete", True) else (
                f" (metered for {q.get('coverage', 0):.0%} of the session; {q.get('gaps', 0)} gaps, "
                f"{q.get('resets', 0)} resets, {q.get('reboots', 0)} reboots, "
                f"{q.get('estimated_kwh', 0.0) or 0.0:.5f} kWh estimated)")
            print(f"[GroundTruthTracker] Tracking after {results['duration'] / 60:7.2f} minutes standing at "
                  f"{results['energy_consumed']:12.5f} kWh!{note}")
        return results

    # LET 0.1.x's class helpers, kept for old scripts.
    @classmethod
    def all_available(cls, server_host: str, server_port: int | str = 8000) -> list[str] | bool:
        try:
            scheme, host = ("https", server_host[8:]) if str(server_host).startswith("https://") else ("http", server_host)
            return GroundTruthClient(ServerLocation(host, int(server_port), "arguments", scheme)).hosts(timeout=5)
        except (GroundTruthError, ValueError) as exc:
            print(f"[GroundTruthTracker] Could not connect to server: {exc}")
            return False

    @classmethod
    def is_available(cls, server_host: str, server_port: int | str = 8000) -> bool:
        hosts = cls.all_available(server_host, server_port)
        return bool(hosts) and client_hostname() in hosts  # type: ignore[operator]

    @classmethod
    def send_command(cls, server_host: str, cmd: str, server_port: int | str = 8000) -> dict[str, Any]:
        """LET 0.1.x's call: ``GET /<this host>/<cmd>`` (cmd "start" or "stop"), times parsed.

        On a LET 0.1.x server "start" resets the socket's counter; on 1.x it opens a session.
        """
        if not cls.is_available(server_host, server_port):
            raise GroundTruthError(f"[GroundTruthTracker] The host {client_hostname()} is not available for "
                                   "tracking, please check the server's configuration!")
        if cmd not in ("start", "stop"):
            raise GroundTruthError(f"[GroundTruthTracker] unknown command {cmd!r}; use 'start' or 'stop'")
        try:
            client = GroundTruthClient(ServerLocation(server_host, int(server_port), "arguments"))
            return parse_times(client.legacy(client_hostname(), cmd))
        except GroundTruthError as exc:
            raise GroundTruthError(f"Command '{cmd}' failed: {exc}") from None
