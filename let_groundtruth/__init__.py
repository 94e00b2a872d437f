"""The LET ground-truth server, a service of its own (extra ``server``): it polls Tasmota smart
sockets and answers metered sessions to the ``tasmota`` backend's client.

- ``protocol``: Tasmota's HTTP command API (the server and 0.1.x's ``send_tasmota_query`` use it)
- ``config``: the server's host -> socket map and its state directory
- ``meter`` / ``service`` / ``state``: counters from readings, sessions with leases, SQLite state
- ``server``: the FastAPI app (``/hosts``, ``/sessions``, LET 0.1.x's routes, ``/metrics``)
- ``ui``: the ``/ui`` page; ``metrics``: the Prometheus exposition
- ``emulator``: emulated sockets on loopback for tests and demos
- ``cli``: ``lett gt serve | config | emulate | calibrate | hosts``

The client (``GroundTruthClient``, 0.1.x's ``GroundTruthTracker``) and the ``tasmota`` backend
live in ``let_backends.tasmota`` and import nothing from here. Importing this package is cheap:
fastapi, uvicorn and prometheus-client load when a server is built.
"""

from __future__ import annotations

from typing import Any

from let_core.hookspecs import hookimpl


@hookimpl
def let_register_commands(cli: Any) -> None:
    from let_groundtruth.cli import gt

    cli.add_command(gt)
