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
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

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
T = TypeVar("T")
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


def within(deadline: float, work: Callable[[], T]) -> T:
    """``work()`` in a helper thread; the caller waits at most ``deadline`` seconds in all
    (``requests`` applies its timeout per read, so a trickling server could hold us for ever)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["answer"] = work()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, name="let-gt-request", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise TimeoutError(f"no complete answer within {deadline:g} s")
    if "error" in box:
        raise box["error"]
    return box["answer"]  # type: ignore[no-any-return]


def unreachable(location: ServerLocation, exc: BaseException) -> GroundTruthError:
    """The error for a server that gave no answer (refused, timed out, TLS), with what to do."""
    import requests

    detail = "timed out" if isinstance(exc, (TimeoutError, requests.Timeout)) else type(exc).__name__
    tls = isinstance(exc, requests.exceptions.SSLError)
    fix = ("check its certificate: set LET_GT_CA_BUNDLE to the PEM file that signed it" if tls else
           "is it running (`lett gt serve --config FILE`) and reachable from here?")
    return GroundTruthError(f"cannot reach the ground-truth server at {location.url} (from "
                            f"{location.source}): {detail}; {fix}",
                            cause="tls" if tls else ("timeout" if detail == "timed out" else "unreachable"))


def refusal(url: str, request: str, status: int, body: Any, sent_token: bool) -> GroundTruthError | None:
    """The error for an answer >= 400 (None below): a token problem says which, with the fix."""
    if status == 401:
        said = body.get("token") if isinstance(body, dict) else None
        if sent_token and said != "missing":
            return GroundTruthError(f"the ground-truth server at {url} rejected the token in "
                                    "LET_GT_TOKEN (wrong token); set it to the token the server was "
                                    "started with", status, "wrong-token", body)
        return GroundTruthError(f"the ground-truth server at {url} needs a token and none is set: "
                                "set LET_GT_TOKEN to the token it was started with", status,
                                "missing-token", body)
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        return GroundTruthError(f"ground-truth server {url}: {request} -> {status}: {message}",
                                status, "refused", body)
    return None


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
        http = self._session()

        def work() -> tuple[int, bytes]:
            # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE
            with http.request(method, url, timeout=(min(deadline, 5.0), deadline), stream=True,
                              verify=self._verify, **kwargs) as response:
                body = bytearray()
                for chunk in response.iter_content(65536):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise ValueError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
                return response.status_code, bytes(body)

        try:
            return within(deadline, work)
        except TimeoutError:
            self._local.http = None  # the abandoned thread keeps its session; start a fresh one
            raise

    def _call(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        import json

        import requests

        deadline = timeout or self.timeout
        try:
            status, raw = self._request(method, f"{self.url}{path}", deadline, **kwargs)
        except (requests.RequestException, OSError, ValueError) as exc:
            raise unreachable(self.location, exc) from None
        try:
            body = json.loads(raw.decode("utf-8", "replace")) if raw else None
        except ValueError:
            body = {"error": raw[:200].decode("utf-8", "replace")}
        refused = refusal(self.url, f"{method} {path}", status, body, bool(self._secret))
        if refused is not None:
            raise refused
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


def legacy_server_note(url: str, doing: str) -> str:
    return (f"the ground-truth server at {url} is a LET 0.1.x server (no session routes); {doing} its "
            "/<host>/start and /<host>/stop, which RESET the socket's energy counter (other users of that "
            "socket lose their figures). Upgrade the server to LET 1.x to avoid it.")


#: A LET 0.1.x server reset the counter at start and reads it at stop: the socket metered all of it.
LEGACY_QUALITY = {"complete": True, "coverage": 1.0, "interpolated_gaps": 0, "interpolated_seconds": 0.0,
                  "legacy_server": True}


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
        #: A session the server already opened (for LET 0.1.x's ``GET /<host>/start``, see
        #: ``GroundTruthTracker``): ``start()`` takes it over instead of opening one.
        self.opened: dict[str, Any] | None = None

    def start(self) -> dict[str, Any]:
        self._t0 = time.monotonic()  # a wall-clock step must not change a duration
        try:
            started = dict(self.opened) if self.opened is not None else self.client.start(self.host, self.label)
        except GroundTruthError as exc:
            if not is_legacy_server(exc):
                raise
            warnings.warn(legacy_server_note(self.client.url, "using"), LetWarning, stacklevel=3)
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
            result["quality"] = dict(LEGACY_QUALITY)
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

    def detach(self) -> None:
        """Stop watching; the server's session stays (LET 0.1.x's next start closes it and
        reports what it metered)."""
        self._end_heartbeat()

    def cancel(self) -> None:
        self._end_heartbeat()
        if self.session_id is not None and not self.legacy:
            try:
                self.client.cancel(self.session_id)
            except GroundTruthError:
                pass  # already gone (server restart): nothing to drop


_DISABLED = {"energy_consumed": -1, "start_time": None, "timestamp": None, "duration": -1,
             "tracking_mode": TRACKING_MODE}


def _location(server_host: str, server_port: int | str) -> ServerLocation:
    """The server that LET 0.1.x's helpers were given (``https://NAME`` for TLS)."""
    scheme, host = ("https", server_host[8:]) if str(server_host).startswith("https://") else ("http", server_host)
    return ServerLocation(host, int(server_port), "arguments", scheme)


def _get_json(location: ServerLocation, path: str) -> Any:
    """LET 0.1.x's call, ``requests.get(...).json()``, as 0.1.x made it: its code and tests patch
    ``requests.get``. With LET's token and CA bundle, and one total deadline."""
    import requests

    secret = token()
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    verify = ca_bundle() if location.scheme == "https" else True
    deadline = client_timeout()
    url = f"{location.url}{path}"
    try:
        response = within(deadline, lambda: requests.get(url, timeout=min(deadline, 5.0), headers=headers,
                                                         verify=verify))
        response.raise_for_status()
        return response.json()
    except requests.HTTPError as exc:
        answer = exc.response
        if answer is None:  # raised by hand, without an answer to read
            raise unreachable(location, exc) from None
        try:
            body = answer.json()
        except ValueError:
            body = {"error": answer.text[:200]}
        refused = refusal(location.url, f"GET {path}", answer.status_code, body, bool(secret))
        raise (refused or GroundTruthError(f"{url}: {exc}")) from None
    except (requests.RequestException, OSError, ValueError) as exc:
        raise unreachable(location, exc) from None


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    """energy_consumed and duration as floats, as 0.1.x's callers test them (a JSON 10 is an int)."""
    for key in ("energy_consumed", "duration"):
        if isinstance(results.get(key), int) and not isinstance(results[key], bool):
            results[key] = float(results[key])
    return results


class GroundTruthTracker:
    """LET 0.1.x's ground-truth tracker: ``start()``/``stop()`` for this host, as 0.1.x did them.

    The server comes from ``LET_GT_HOST``/``LET_GT_PORT`` or ``$LET_HOME/GT_REMOTE_CONFIG``;
    this host's name from ``LET_GT_HOSTNAME``, else ``socket.gethostname()``. As in 0.1.x,
    ``server_host``/``server_port`` hold what was configured (strings), or None when tracking is
    disabled; availability is asked of ``is_available``, and ``start()``/``stop()`` go through
    ``send_command`` (0.1.x code patches those names). On a LET 1.x server 0.1.x's start opens
    a session that resets nothing; this tracker keeps its figures (heartbeat) and stops exactly
    that session. 0.1.x's start is per host: a second ``start()`` on the same host, from any
    process, closes the first one's session (the server reports it in the answer). For sessions
    of their own per process, use ``EnergyTracker(backends=["tasmota"])``.

    With ``crash_if_unavailable=False`` nothing raises: a missing server gives a warning and
    ``energy_consumed == -1`` results, and a server lost at stop gives the last figures seen.
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
        self._legacy_server = False
        try:
            location = server_location()
            if location is None:
                raise GroundTruthError(f"[GroundTruthTracker] cannot track: {NOT_CONFIGURED}")
            host = location.host if location.scheme == "http" else f"https://{location.host}"
            try:
                known = type(self).is_available(host, str(location.port))
            except Exception as exc:  # 0.1.x: whatever is_available raises means "cannot connect"
                raise GroundTruthError(f"[GroundTruthTracker] could not connect to the server at {location.url} "
                                       f"({type(exc).__name__}: {exc}); is it running and reachable?") from None
            if not known:
                raise self._why_unavailable(location)
        except Exception as exc:  # 0.1.x's contract: crash_if_unavailable=False never raises
            if crash_if_unavailable:
                raise
            warnings.warn(f"{exc}. Tracking is disabled; start() and stop() return energy_consumed=-1.",
                          LetWarning, stacklevel=2)
            return
        self.client = GroundTruthClient(location)
        self.server_host, self.server_port = host, str(location.port)
        if verbose:
            print(f"[GroundTruthTracker] Tracking {self.hostname} with smart sockets via {location.url}")

    def _why_unavailable(self, location: ServerLocation) -> GroundTruthError:
        """Why ``is_available`` said no: the server's own refusal, or the hosts it does meter."""
        try:
            hosts = _get_json(location, "/list")
        except GroundTruthError as exc:
            return exc
        return GroundTruthError(
            f"[GroundTruthTracker] the server at {location.url} does not meter host "
            f"{self.hostname!r} (it knows {hosts}); add it to the server's config, or set "
            "LET_GT_HOSTNAME to this computer's name there")

    @property
    def enabled(self) -> bool:
        return self.server_host is not None

    def start(self) -> dict[str, Any]:
        """(Re)start tracking this host: 0.1.x's ``send_command(host, "start", port)``."""
        if self.server_host is None:
            return dict(_DISABLED)
        if self._session is not None:
            # 0.1.x's restart: the server closes the running session and reports it in its answer
            self._session.detach()
            self._session = None
        try:
            results = type(self).send_command(self.server_host, "start", self.server_port or 8000)
        except Exception as exc:
            if self.crash_if_unavailable:
                raise
            warnings.warn(f"{exc}; this session is not tracked.", LetWarning, stacklevel=2)
            return dict(_DISABLED)
        self._legacy_server = not results.get("session_id")
        if self._legacy_server:
            warnings.warn(legacy_server_note(f"{self.server_host}:{self.server_port}", "this tracker used"),
                          LetWarning, stacklevel=2)
        elif self.client is not None:
            # A LET 1.x server opened a session for it; its answer reports the period before.
            self._session = MeteredSession(self.client, self.hostname, self.label)
            self._session.opened = {**results, "start_time": results.get("timestamp"),
                                    "start_time_iso": results.get("timestamp_iso"), "duration": 0.0, "energy_consumed": 0.0}
            self._session.start()
        if self.verbose:
            print(f"[GroundTruthTracker] Started tracking {self.hostname}"
                  + (f" (session {self._session.session_id[:8]})" if self._session and self._session.session_id else ""))
        return results

    def stop(self) -> dict[str, Any]:
        """End tracking: start_time, timestamp, duration (s), energy_consumed (kWh), quality.

        Without a session of this tracker (a LET 0.1.x server, or no ``start()``), 0.1.x's
        ``send_command(host, "stop", port)``: the energy since the host's last start."""
        if self.server_host is None:
            return dict(_DISABLED)
        session, self._session = self._session, None
        try:
            if session is not None:
                results = _numbers(parse_times(session.stop(partial_ok=not self.crash_if_unavailable)))
            else:
                results = type(self).send_command(self.server_host, "stop", self.server_port or 8000)
                if self._legacy_server:
                    results.setdefault("quality", dict(LEGACY_QUALITY))
        except Exception as exc:
            if self.crash_if_unavailable:
                raise
            warnings.warn(f"{exc}; no result for this session.", LetWarning, stacklevel=2)
            return dict(_DISABLED)
        results["tracking_mode"] = TRACKING_MODE
        q = results.get("quality") or {}
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

    # LET 0.1.x's class helpers: through requests.get, as 0.1.x's code and tests expect.
    @classmethod
    def all_available(cls, server_host: str, server_port: int | str = 8000) -> list[str] | bool:
        """The host names the server meters, or False (printed why) when it cannot be asked."""
        try:
            return list(_get_json(_location(server_host, server_port), "/list"))
        except (GroundTruthError, ValueError, TypeError) as exc:
            print(f"[GroundTruthTracker] Could not connect to server: {exc}")
            return False

    @classmethod
    def is_available(cls, server_host: str, server_port: int | str = 8000) -> bool:
        hosts = cls.all_available(server_host, server_port)
        return bool(hosts) and client_hostname() in hosts  # type: ignore[operator]

    @classmethod
    def send_command(cls, server_host: str, cmd: str, server_port: int | str = 8000) -> dict[str, Any]:
        """LET 0.1.x's call: ``GET /<this host>/<cmd>`` (cmd "start" or "stop"), times parsed.

        On a LET 0.1.x server "start" resets the socket's counter; on 1.x it opens a session
        (closing the host's previous one) and resets nothing.
        """
        if not cls.is_available(server_host, server_port):
            raise GroundTruthError(f"[GroundTruthTracker] The host {client_hostname()} is not available for "
                                   "tracking, please check the server's configuration!")
        if cmd not in ("start", "stop"):
            raise GroundTruthError(f"[GroundTruthTracker] unknown command {cmd!r}; use 'start' or 'stop'")
        try:
            answer = _get_json(_location(server_host, server_port), f"/{client_hostname()}/{cmd}")
            if not isinstance(answer, dict):
                raise GroundTruthError(f"the answer is not a JSON object: {str(answer)[:200]}")
            return _numbers(parse_times(answer))
        except (GroundTruthError, ValueError) as exc:
            raise GroundTruthError(f"Command '{cmd}' failed: {exc}") from None
