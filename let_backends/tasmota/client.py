"""Clients of the ground-truth server: ``GroundTruthClient`` (plain HTTP calls) and
``GroundTruthTracker`` (LET 0.1.x's start/stop object)."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import Any

from let_backends.tasmota.config import (NOT_CONFIGURED, ServerLocation, client_hostname,
                                         server_location, token)
from let_core.errors import LetError, LetWarning

TRACKING_MODE = "GroundTruth"


class GroundTruthError(LetError, RuntimeError):
    """The ground-truth server could not be reached or refused a request.

    A ``RuntimeError`` too, as LET 0.1.x raised, so old ``except RuntimeError`` code still works.
    """


class GroundTruthClient:
    """Thin HTTP client of one ground-truth server. One instance per thread."""

    def __init__(self, location: ServerLocation, bearer: str | None = None, timeout: float = 15.0) -> None:
        import requests

        self.location = location
        self.timeout = timeout
        self._http = requests.Session()
        secret = token() if bearer is None else bearer
        if secret:
            self._http.headers["Authorization"] = f"Bearer {secret}"

    @property
    def url(self) -> str:
        return self.location.url

    def _call(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> Any:
        import requests

        try:
            response = self._http.request(method, f"{self.url}{path}", timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise GroundTruthError(f"cannot reach the ground-truth server at {self.url} (from "
                                   f"{self.location.source}): {type(exc).__name__}. Is it running "
                                   "(`let gt serve --config FILE`) and reachable from here?") from None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:200]}
        if response.status_code == 401:
            raise GroundTruthError(f"the ground-truth server at {self.url} needs a token: set LET_GT_TOKEN "
                                   "to the token it was started with")
        if response.status_code >= 400:
            message = body.get("error") if isinstance(body, dict) else body
            raise GroundTruthError(f"ground-truth server {self.url}: {method} {path} -> "
                                   f"{response.status_code}: {message}")
        return body

    def hosts(self, timeout: float | None = None) -> list[str]:
        return list(self._call("GET", "/list", timeout=timeout))

    def host(self, host: str, timeout: float | None = None) -> dict[str, Any]:
        return dict(self._call("GET", f"/hosts/{host}", timeout=timeout))

    def power(self, host: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/hosts/{host}/power"))

    def start(self, host: str, label: str = "") -> dict[str, Any]:
        return dict(self._call("POST", f"/hosts/{host}/sessions", json={"label": label[:200]}))

    def peek(self, session_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/sessions/{session_id}"))

    def stop(self, session_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/sessions/{session_id}/stop"))

    def cancel(self, session_id: str) -> None:
        self._call("DELETE", f"/sessions/{session_id}")

    def close(self) -> None:
        self._http.close()


def parse_times(result: dict[str, Any]) -> dict[str, Any]:
    """start_time/timestamp as timezone-aware datetimes (from the server's exact ISO fields)."""
    out = dict(result)
    for key in ("start_time", "timestamp"):
        iso = result.get(f"{key}_iso")
        if iso:
            out[key] = datetime.fromisoformat(iso)
    return out


_DISABLED = {"energy_consumed": -1, "start_time": None, "timestamp": None, "duration": -1,
             "tracking_mode": TRACKING_MODE}


class GroundTruthTracker:
    """LET 0.1.x's ground-truth tracker: ``start()``/``stop()`` a session for this host.

    The server comes from ``LET_GT_HOST``/``LET_GT_PORT`` or ``$LET_HOME/GT_REMOTE_CONFIG``;
    this host's name from ``LET_GT_HOSTNAME``, else ``socket.gethostname()``. With
    ``crash_if_unavailable=False`` a missing server gives a warning and a disabled tracker
    whose results have ``energy_consumed == -1``, as in 0.1.x.
    """

    def __init__(self, crash_if_unavailable: bool = True, verbose: bool = True, label: str = "") -> None:
        self.verbose = verbose
        self.crash_if_unavailable = crash_if_unavailable
        self.label = label
        self.hostname = client_hostname()
        self.client: GroundTruthClient | None = None
        self.server_host: str | None = None
        self.server_port: int | None = None
        self._session: str | None = None
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
        self.server_host, self.server_port = location.host, location.port
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
            try:
                self.client.cancel(self._session)
            except GroundTruthError:
                pass  # already gone (server restart): nothing to drop
        results = parse_times(self.client.start(self.hostname, self.label))
        self._session = results["session_id"]
        if self.verbose:
            power = results.get("power_w")
            print(f"[GroundTruthTracker] Started session {self._session[:8]} on {self.hostname}"
                  + (f" at {power:.0f} W" if isinstance(power, (int, float)) else ""))
        return results

    def stop(self) -> dict[str, Any]:
        """End the session: start_time, timestamp, duration (s), energy_consumed (kWh), quality."""
        if self.client is None:
            return dict(_DISABLED)
        if self._session is None:
            raise GroundTruthError("[GroundTruthTracker] stop() before start(); call start() first")
        session, self._session = self._session, None
        results = parse_times(self.client.stop(session))
        results["tracking_mode"] = TRACKING_MODE
        if self.verbose:
            q = results.get("quality", {})
            note = "" if q.get("complete", True) else (
                f" (data quality: {q.get('gaps', 0)} gaps, {q.get('resets', 0)} resets, "
                f"{q.get('reboots', 0)} reboots, {q.get('estimated_kwh', 0.0):.5f} kWh estimated)")
            print(f"[GroundTruthTracker] Tracking after {results['duration'] / 60:7.2f} minutes standing at "
                  f"{results['energy_consumed']:12.5f} kWh!{note}")
        return results

    # LET 0.1.x's class helpers, kept for old scripts.
    @classmethod
    def all_available(cls, server_host: str, server_port: int = 8000) -> list[str] | bool:
        try:
            return GroundTruthClient(ServerLocation(server_host, int(server_port), "arguments")).hosts(timeout=5)
        except GroundTruthError as exc:
            print(f"[GroundTruthTracker] Could not connect to server: {exc}")
            return False

    @classmethod
    def is_available(cls, server_host: str, server_port: int = 8000) -> bool:
        hosts = cls.all_available(server_host, server_port)
        return bool(hosts) and client_hostname() in hosts  # type: ignore[operator]
