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

It answers only to its own names in ``Host:`` (``allowed_hosts``): a page of another site whose
name resolves to 127.0.0.1 (DNS rebinding) gets a 421, not the results. The API's description is
``/api/openapi.json``; there is no Swagger page, whose scripts come from a CDN (the dashboard
works offline).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at run time.
import functools
import ipaddress
import socket
from collections.abc import Collection, Iterable
from typing import Any

from let_core.errors import ConfigurationError
from let_core.ui.data import Dashboard, Filters, StoreUnreadable, static_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: The names of this machine that every dashboard answers to.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARDS = ("", "0.0.0.0", "::")


def allowed_hosts(bound: str = DEFAULT_HOST, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names the dashboard answers to: this machine's local names, the address it is bound
    to (for a wildcard bind: the machine's names, and ``is_local_address`` per request), and
    ``extra`` (``--allow-host``; ``*`` allows any name)."""
    names = {*LOCAL_NAMES, *(_bare(name) for name in extra)}
    address = _bare(bound)
    if address not in _WILDCARDS:
        names.add(address)
        return frozenset(names)
    # The machine's names; its addresses are checked per request (is_local_address).
    names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


@functools.lru_cache(maxsize=256)
def is_local_address(name: str) -> bool:
    """An IP address of this machine (binding to it succeeds). A wildcard-bound dashboard is
    reached under these; they are no rebinding risk (a rebinding page needs a name of its own)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    with socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def _bare(name: str) -> str:
    return name.strip().strip("[]").lower()


def host_name(header: str) -> str:
    """The name in a ``Host:`` header, without port or IPv6 brackets (``[::1]:8765`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def create_app(dashboard: Dashboard, hosts: Collection[str] = LOCAL_NAMES, local_addresses: bool = False) -> Any:
    """The dashboard's app, answering to the names in ``hosts`` (``allowed_hosts``) only, and
    with ``local_addresses`` (a wildcard bind) to every address of this machine too."""
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    # Swagger UI and ReDoc load their scripts from a CDN: off. The OpenAPI JSON stays.
    app = FastAPI(title="LET dashboard", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    static = static_dir()
    app.mount("/static", StaticFiles(directory=static), name="static")
    names = frozenset(_bare(name) for name in hosts)
    shown = ", ".join(sorted(names))

    @app.middleware("http")
    async def own_names_only(request: Request, call_next: Any) -> Any:
        # Starlette's TrustedHostMiddleware does this check but answers a bare "Invalid host
        # header"; this one says which names work and how to add one.
        header = request.headers.get("host")
        name = host_name(header or "")
        if (header is not None and "*" not in names and name not in names
                and not (local_addresses and is_local_address(name))):
            return JSONResponse({"detail": f"this LET dashboard answers to {shown}, not to Host "
                                           f"{header[:100]!r}: open it under one of those names, or start it "
                                           "with `lett ui --allow-host NAME`"}, status_code=421)
        return await call_next(request)

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
        from let_core.results.loading import load_results

        try:
            return calibration_views(lambda: load_results(dashboard.store.directory, dataset=dashboard.dataset), host)
        except (OSError, ValueError) as exc:
            raise StoreUnreadable(f"cannot read the LET store {dashboard.location}: {exc}") from exc

    return app


def serve(output_dir: str | None = None, dataset: str | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, preload: bool = True, sock: socket.socket | None = None,
          allow_hosts: Iterable[str] = ()) -> None:
    """Run the dashboard until interrupted. Loads the store first, so the first page is quick.

    ``sock``: a socket already bound (``bind_socket``), so that a busy port was an error before
    anything was loaded or announced. ``allow_hosts``: more names it answers to in ``Host:``."""
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
    app = create_app(dashboard, allowed_hosts(host, allow_hosts), local_addresses=_bare(host) in _WILDCARDS)
    if sock is None:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
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
