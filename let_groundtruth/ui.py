"""The ground-truth server's ``/ui`` page: every socket's live power (a sparkline of the last
minutes), the open sessions, and the gaps, resets and reboots each socket has shown.

Mounted by one line in ``server.create_app``: ``mount_ui(app, service)``. It only reads what
the service already knows (``hosts()``, ``host_status()``, ``sessions()``); a recorder thread
keeps the last ``window_s`` seconds of each host's power, read from the status the polling loop
maintains (it never polls a socket itself). Session ids are never shown: they are capabilities.
The page sits behind the server's token like every other route.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

DEFAULT_WINDOW_S = 600.0
_PAGE = Path(__file__).with_name("ui.html")
_STATUS_KEYS = ("online", "power_w", "hardware", "gaps", "gap_seconds", "resets", "reboots",
                "last_error", "reading_age_s", "sessions", "metered_kwh")


class PowerHistory:
    """The last ``window_s`` seconds of every host's power, sampled every ``interval`` seconds."""

    def __init__(self, service: Any, window_s: float = DEFAULT_WINDOW_S, interval: float = 1.0) -> None:
        self._service = weakref.ref(service)  # the page must not keep a closed service alive
        self.window_s = window_s
        self.interval = interval
        self._points: dict[str, collections.deque[tuple[float, float | None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="let-gt-ui-history", daemon=True)

    def start(self) -> PowerHistory:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> bool:
        """Record every host's current power once; False when the service is gone or closed."""
        service = self._service()
        stopped = getattr(service, "_stop", None)  # GroundTruthService.close() sets it
        if service is None or (isinstance(stopped, threading.Event) and stopped.is_set()):
            return False
        now = time.monotonic()  # points are aged, never dated: a wall-clock step must not bend the line
        for host in service.hosts():
            try:
                power = service.host_status(host).get("power_w")
            except Exception:  # a host that vanished from the config: no point
                continue
            with self._lock:
                points = self._points.setdefault(host, collections.deque())
                points.append((now, None if power is None else float(power)))
                while points and points[0][0] < now - self.window_s:
                    points.popleft()
        return True

    def points(self, host: str) -> list[tuple[float, float | None]]:
        with self._lock:
            return list(self._points.get(host, ()))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.sample():
                    return
            except Exception:  # the page loses a point; the server is not affected
                pass
            self._stop.wait(self.interval)


def page_data(service: Any, history: PowerHistory) -> dict[str, Any]:
    now = time.monotonic()
    hosts = []
    for host in service.hosts():
        status = service.host_status(host)
        entry = {"host": host, **{k: status.get(k) for k in _STATUS_KEYS}}
        entry["history"] = [[round(t - now, 1), w] for t, w in history.points(host)]
        hosts.append(entry)
    sessions = [{k: s.get(k) for k in ("host", "label", "start_time_iso", "legacy")}
                for s in service.sessions()]
    return {"window_s": history.window_s, "hosts": hosts, "sessions": sessions,
            "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC"}


def mount_ui(app: FastAPI, service: Any, window_s: float = DEFAULT_WINDOW_S) -> PowerHistory:
    """Add ``GET /ui`` (the page) and ``GET /ui/data`` (its JSON) to the server's app."""
    from fastapi.responses import FileResponse

    interval = float(getattr(service, "poll_interval", 1.0) or 1.0)
    history = PowerHistory(service, window_s=window_s, interval=max(interval, 0.25)).start()

    @app.get("/ui", include_in_schema=False)
    def ui_page() -> FileResponse:
        return FileResponse(_PAGE, media_type="text/html")

    @app.get("/ui/data", summary="Live power history, open sessions, gaps and resets (the /ui page's data)")
    def ui_data() -> dict[str, Any]:
        return page_data(service, history)

    return history
