"""The ground-truth REST server (FastAPI + uvicorn, the ``server`` extra).

Routes (JSON everywhere; ``/docs`` has the OpenAPI page):

- ``GET /health``                          liveness, never needs the token
- ``GET /list``                            host names (LET 0.1.x)
- ``GET /{host}/start``, ``/{host}/stop``  LET 0.1.x's tracking calls
- ``GET /hosts``, ``GET /hosts/{host}``    status of every / one host
- ``GET /hosts/{host}/power``              live power
- ``POST /hosts/{host}/sessions``          start a session -> ``session_id``
- ``GET /sessions``                        open sessions; their ids only with the admin token
- ``GET /sessions/{id}``                   a running session's energy so far; renews its lease
- ``POST /sessions/{id}/stop``             stop -> energy, duration, data quality, coverage
- ``DELETE /sessions/{id}``                drop a session without a result
- ``GET /metrics``                         Prometheus exposition: each socket's power, energy, gaps

With a token (``LET_GT_TOKEN`` or ``token=``), every route but ``/health`` needs
``Authorization: Bearer TOKEN`` (the docs and the OpenAPI schema too). The admin token
(``LET_GT_ADMIN_TOKEN``) is accepted everywhere and is the only one that sees session ids of
others: an id is the capability to read, stop or drop a session, returned only to its opener.
Request bodies above ``MAX_BODY_BYTES`` get a 413; caps of open sessions per client address (on
one host, and in all) answer 429 instead of evicting running sessions. A session not renewed
within its lease (10 min) expires; its result is kept for the opener (``"expired": true``).
A state directory that cannot be written (full, read-only) answers 503 with ``Retry-After`` and
changes nothing, so the request can be retried.
"""

# No `from __future__ import annotations` here: FastAPI resolves the endpoint annotations at
# run time, and the request model is local to create_app (pydantic is imported lazily).
import hmac
import threading
import time
from collections.abc import Mapping
from typing import Any

from let_core.config import gt_env
from let_groundtruth.config import SocketConfig
from let_groundtruth.meter import Limits
from let_groundtruth.service import (
    DEFAULT_LEASE_S,
    GroundTruthService,
    SocketNeverAnswered,
    TooManySessions,
    UnknownHost,
    UnknownSession,
)
from let_groundtruth.state import StateUnavailable

_OPEN_PATHS = frozenset({"/health"})
#: Seconds a client is told to wait before retrying a request the state directory refused.
RETRY_AFTER_S = 5
#: The largest body a route takes is {"label": <= 200 chars}.
MAX_BODY_BYTES = 16 * 1024


class _BodyLimit:
    """Pure ASGI middleware: refuse bodies above ``limit`` bytes, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _json(send, 413, {"error": f"request body above {self.limit} bytes"})
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _json(send, 413, {"error": f"request body above {self.limit} bytes"})


class _TooLarge(Exception):
    pass


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(service: GroundTruthService, token: str | None = None, admin_token: str | None = None) -> Any:
    """The FastAPI application in front of ``service`` (which the caller starts and closes).

    Other modules add pages with ``app.include_router(...)`` (the ``/ui`` page does): routes
    added later sit behind the same token check and body limit.
    """
    from fastapi import Body, FastAPI, Path, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    secret = token if token is not None else gt_env("TOKEN")
    admin = admin_token if admin_token is not None else gt_env("ADMIN_TOKEN")
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        # Routes are plain functions run in worker threads, so a stop that waits for a socket
        # reading never blocks the event loop; 40 threads (anyio's default) queue a crowd of clients.
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = 256
        yield

    app = FastAPI(title="LET ground-truth server",
                  description="Wall-socket energy of computers metered by Tasmota smart sockets.",
                  version="1", lifespan=lifespan)
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)

    def matches(given: str, expected: str) -> bool:
        # Constant time, so the answer's timing says nothing about how much of a guess was right.
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())

    def bearer(request: Request) -> str:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return given.strip() if scheme.lower() == "bearer" else ""

    def is_admin(request: Request) -> bool:
        return matches(bearer(request), admin)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else ""

    class SessionRequest(BaseModel):
        label: str = Field("", max_length=200, description="free text, e.g. the project name")

    def error(status: int, message: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"error": message, **extra}, status_code=status)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Any:
        if secret and request.url.path not in _OPEN_PATHS:
            given = bearer(request)
            if not given:
                return JSONResponse({"error": "this server needs a token and none was sent; set LET_GT_TOKEN "
                                              "to the server's token", "token": "missing"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            if not (matches(given, secret) or matches(given, admin)):
                return JSONResponse({"error": "the token sent is not this server's; check LET_GT_TOKEN "
                                              "against the token the server was started with",
                                     "token": "wrong"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs"
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return error(422, "malformed request; see /docs for the expected shape", details=details)

    @app.exception_handler(UnknownHost)
    async def unknown_host(request: Request, exc: UnknownHost) -> JSONResponse:
        return error(404, f"unknown host {exc.args[0]!r}; known hosts are {service.hosts()}. Add it to "
                          "the server's config or set LET_GT_HOSTNAME on the client.",
                     hosts=service.hosts())

    @app.exception_handler(UnknownSession)
    async def unknown_session(request: Request, exc: UnknownSession) -> JSONResponse:
        return error(404, f"no running session {exc.args[0]!r}: it was stopped already, its kept result "
                          "was collected or dropped, or the server restarted without its state directory "
                          "since it began",
                     unknown_session=True)

    @app.exception_handler(TooManySessions)
    async def too_many(request: Request, exc: TooManySessions) -> JSONResponse:
        return error(429, str(exc))

    @app.exception_handler(StateUnavailable)
    async def state_unavailable(request: Request, exc: StateUnavailable) -> JSONResponse:
        # Nothing was changed: a retry after the fault (disk freed, made writable) succeeds.
        return JSONResponse({"error": f"{exc}. Nothing was changed; retry this request.", "retry": True},
                            status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(SocketNeverAnswered)
    async def never_answered(request: Request, exc: SocketNeverAnswered) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:  # the last safety net
        return error(500, f"internal error {type(exc).__name__}: {exc}; please report it")

    host_path = Path(..., min_length=1, max_length=253)
    session_path = Path(..., pattern=r"^[0-9a-f]{32}$", description="a session_id from start")

    @app.get("/health", summary="Liveness")
    def health() -> dict[str, Any]:
        return {"status": "ok", "hosts": len(service.hosts())}

    @app.get("/list", summary="Host names (LET 0.1.x)")
    def list_hosts() -> list[str]:
        return service.hosts()

    @app.get("/hosts", summary="Status of every host")
    def hosts() -> list[dict[str, Any]]:
        return [service.host_status(h) for h in service.hosts()]

    @app.get("/hosts/{host}", summary="Status of one host")
    def host(host: str = host_path) -> dict[str, Any]:
        return service.host_status(host)

    @app.get("/hosts/{host}/power", summary="Live power of one host")
    def power(host: str = host_path) -> dict[str, Any]:
        return service.power(host)

    @app.post("/hosts/{host}/sessions", status_code=201, summary="Start a session")
    def start(request: Request, host: str = host_path,
              body: SessionRequest | None = Body(None)) -> dict[str, Any]:
        return service.start_session(host, body.label if body else "", client=client_of(request))

    @app.get("/sessions", summary="Open sessions (ids only for the admin token)")
    def sessions(request: Request, host: str | None = None) -> list[dict[str, Any]]:
        if host is not None:
            service.meter(host)
        return service.sessions(host, with_ids=is_admin(request))

    @app.get("/sessions/{session_id}", summary="A running session's energy so far")
    def peek(session_id: str = session_path) -> dict[str, Any]:
        return service.peek_session(session_id)

    @app.post("/sessions/{session_id}/stop", summary="Stop a session: energy and data quality")
    def stop(session_id: str = session_path) -> dict[str, Any]:
        return service.stop_session(session_id)

    @app.delete("/sessions/{session_id}", summary="Drop a session without a result")
    def cancel(session_id: str = session_path) -> dict[str, Any]:
        service.cancel_session(session_id)
        return {"session_id": session_id, "cancelled": True}

    @app.get("/metrics", summary="Prometheus exposition: every socket's power, energy, gaps", include_in_schema=True)
    def metrics() -> Response:
        from let_groundtruth.metrics import exposition

        try:
            body, content_type = exposition(service)
        except ImportError:
            return error(501, "/metrics needs prometheus-client: pip install 'lamarr-energy-tracker[prometheus]'")
        return Response(body, media_type=content_type)

    # LET 0.1.x's routes last, so that /hosts/... and /sessions/... are matched first.
    @app.get("/{host}/start", summary="Start tracking a host (LET 0.1.x)")
    def legacy_start(request: Request, host: str = host_path) -> dict[str, Any]:
        return service.legacy_start(host, client=client_of(request))

    @app.get("/{host}/stop", summary="Energy since the host's last start (LET 0.1.x)")
    def legacy_stop(host: str = host_path) -> dict[str, Any]:
        return service.legacy_stop(host)

    from let_groundtruth.ui import mount_ui  # GET /ui: live power, open sessions, gaps

    mount_ui(app, service)
    return app


class RunningServer:
    """A server running in a background thread (tests, ``block=False``)."""

    def __init__(self, sockets: Mapping[str, SocketConfig], host: str = "127.0.0.1", port: int = 8000,
                 token: str | None = None, poll_interval: float = 1.0, socket_timeout: float = 2.0,
                 log_level: str = "warning", *, admin_token: str | None = None,
                 state_dir: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 rated_max_w: float | None = None, max_sessions_per_host: int | None = None,
                 max_sessions_per_client: int | None = None, lease_s: float | None = None,
                 clock: Any = None) -> None:
        import uvicorn

        from let_groundtruth import service as svc

        if bool(tls_cert) != bool(tls_key):
            raise ValueError("TLS needs both --tls-cert and --tls-key (PEM files)")
        self.service = GroundTruthService(
            sockets, poll_interval=poll_interval, socket_timeout=socket_timeout, state_dir=state_dir,
            limits=Limits(rated_max_w=rated_max_w) if rated_max_w else None,
            max_sessions_per_host=max_sessions_per_host or svc.MAX_SESSIONS_PER_HOST,
            max_sessions_per_client=max_sessions_per_client or svc.MAX_SESSIONS_PER_CLIENT,
            lease_s=lease_s or DEFAULT_LEASE_S, **({"clock": clock} if clock is not None else {}))
        self.app = create_app(self.service, token, admin_token)
        # h11's limit on a request's headers keeps a header flood bounded too.
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level,
                                access_log=False, timeout_graceful_shutdown=3,
                                ssl_certfile=tls_cert, ssl_keyfile=tls_key, h11_max_incomplete_event_size=16384)
        self._server = uvicorn.Server(config)
        self.host, self.port = host, port
        self.scheme = "https" if tls_cert else "http"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def serve(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self.service.start()
        try:
            self._server.run()
        finally:
            self.service.close()

    def start(self, timeout: float = 30.0) -> "RunningServer":
        self.service.start()
        self._thread = threading.Thread(target=self._server.run, name="let-gt-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.service.close()
                raise RuntimeError(f"the ground-truth server did not start on {self.host}:{self.port}; "
                                   "is the port already in use?")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.service.close()

    def __enter__(self) -> "RunningServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
