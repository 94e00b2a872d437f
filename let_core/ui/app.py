"""`lett ui`: the local dashboard (FastAPI + uvicorn from the ``server`` extra).

Pages are static HTML + JavaScript (``static/``, uPlot vendored with its licence: no CDN, works
offline); their data comes from the JSON API below, one page of rows or one aggregate at a time.

- ``GET /``, ``/runs``, ``/project``, ``/statement``   the pages (overview; runs; project view; statement)
- ``GET /api/overview``                     totals, shares, trend, top projects and hosts, failed runs
- ``GET /api/choices``                      filter values present in the store
- ``GET /api/runs``                         one sorted page of rows of a filter
- ``GET /api/summary``                      energy/emissions per day, estimate vs metered, totals
- ``GET /api/statement``                    the statement of a filter and its BibTeX
- ``GET /calibration``, ``/api/calibration``  each host's wall-socket calibration (``lett calibration``)

A bad filter is a 400 with a message; an unreadable store is a 503 whose message the pages
show, and the server keeps serving (it retries when the store changes).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
import socket
from typing import Any

from let_core.errors import ConfigurationError
from let_core.ui.data import Dashboard, Filters, StoreUnreadable, static_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def create_app(dashboard: Dashboard) -> Any:
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="LET dashboard", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.exception_handler(ConfigurationError)
    async def bad_request(request: Request, exc: ConfigurationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}"
                             for e in exc.errors())
        return JSONResponse({"detail": f"bad request: {problems}"}, status_code=400)

    @app.exception_handler(StoreUnreadable)
    async def unreadable(request: Request, exc: StoreUnreadable) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "store_error": True}, status_code=503)

    @app.exception_handler(LookupError)
    async def nothing(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse({"detail": str(exc.args[0] if exc.args else exc)}, status_code=404)

    # The pages share their header, navigation and filter bar (page.html); each brings only its
    # <main> content (main-<page>.html). Assembled once, served from memory.
    shell = (static / "page.html").read_text(encoding="utf-8")

    def page(name: str, title: str) -> Any:
        body = (shell.replace("__TITLE__", title).replace("__PAGE__", name)
                .replace("<!--MAIN-->", (static / f"main-{name}.html").read_text(encoding="utf-8").rstrip("\n")))

        def serve() -> HTMLResponse:
            return HTMLResponse(body)
        return serve

    app.get("/", include_in_schema=False)(page("overview", "Overview"))
    app.get("/runs", include_in_schema=False)(page("runs", "Runs"))
    app.get("/project", include_in_schema=False)(page("project", "Project view"))
    app.get("/statement", include_in_schema=False)(page("statement", "Statement"))
    app.get("/calibration", include_in_schema=False)(page("calibration", "Calibration"))

    def filters(project: str | None, user: str | None, host: str | None,
                backend: str | None, status: str | None, kind: str | None,
                since: str | None, until: str | None) -> Filters:
        return Filters.parse({"project": project, "user": user, "host": host, "backend": backend,
                              "status": status, "kind": kind, "since": since, "until": until})

    @app.get("/api/choices", summary="Filter values present in the store")
    def choices() -> dict[str, Any]:
        return dashboard.choices()

    @app.get("/api/runs", summary="One sorted page of stored rows")
    def runs(project: str | None = None, user: str | None = None, host: str | None = None,
             backend: str | None = None, status: str | None = None, kind: str | None = None,
             since: str | None = None, until: str | None = None,
             sort: str = "start_time", order: str = Query("desc", pattern="^(asc|desc)$"),
             page: int = Query(1, ge=1, le=10**9), per_page: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        return dashboard.runs(filters(project, user, host, backend, status, kind, since, until),
                              sort=sort, descending=order == "desc", page=page, per_page=per_page)

    @app.get("/api/summary", summary="Series, estimate vs metered, totals per host/backend/job")
    def summary(project: str | None = None, user: str | None = None, host: str | None = None,
                backend: str | None = None, status: str | None = None, kind: str | None = None,
                since: str | None = None, until: str | None = None) -> dict[str, Any]:
        return dashboard.summary(filters(project, user, host, backend, status, kind, since, until))

    @app.get("/api/overview", summary="Totals, measured/estimated/calibrated shares, trend, top projects and hosts, failed runs")
    def overview(project: str | None = None, user: str | None = None, host: str | None = None,
                 backend: str | None = None, status: str | None = None, kind: str | None = None,
                 since: str | None = None, until: str | None = None) -> dict[str, Any]:
        return dashboard.overview(filters(project, user, host, backend, status, kind, since, until))

    @app.get("/api/statement", summary="The paper statement of a filter, with BibTeX")
    def statement(project: str | None = None, user: str | None = None, host: str | None = None,
                  backend: str | None = None, status: str | None = None, kind: str | None = None,
                  since: str | None = None, until: str | None = None) -> dict[str, Any]:
        return dashboard.statement(filters(project, user, host, backend, status, kind, since, until))

    @app.get("/api/calibration", summary="Each calibrated host's paired runs, fitted line, band and corrected runs")
    def calibration(host: str | None = None) -> dict[str, Any]:
        from let_core.results.calibration import calibration_views

        try:
            return calibration_views(dashboard.store.directory, dashboard.dataset, host)
        except (OSError, ValueError) as exc:
            raise StoreUnreadable(f"cannot read the LET store {dashboard.location}: {exc}") from exc

    return app


def serve(output_dir: str | None = None, dataset: str | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, preload: bool = True, sock: socket.socket | None = None) -> None:
    """Run the dashboard until interrupted. Loads the store first, so the first page is quick.

    ``sock``: a socket already bound (``bind_socket``), so that a busy port was an error before
    anything was loaded or announced."""
    import threading

    import uvicorn

    from let_core.ui.data import Filters

    dashboard = Dashboard(output_dir, dataset)
    if preload:
        try:
            dashboard.prepared().order("start_time")
        except StoreUnreadable:
            pass  # the pages show the error
        else:
            # The unfiltered overview and project view aggregate every run (seconds at a million): computed
            # once in the background while the first pages are served.
            threading.Thread(target=lambda: (dashboard.overview(Filters()), dashboard.summary(Filters())),
                             name="let-ui-warm", daemon=True).start()
    if sock is None:
        uvicorn.run(create_app(dashboard), host=host, port=port, log_level="warning")
        return
    server = uvicorn.Server(uvicorn.Config(create_app(dashboard), log_level="warning"))
    server.run(sockets=[sock])


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port; OSError (errno 98 and the like) when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds its own
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
