"""Ground truth at the wall socket: Tasmota smart sockets behind a LET ground-truth server.

- ``protocol``: Tasmota's HTTP command API (``requests``)
- ``meter`` / ``service`` / ``server``: the ground-truth server (FastAPI + uvicorn, extra ``server``)
- ``client``: ``GroundTruthClient`` and LET 0.1.x's ``GroundTruthTracker``
- ``backend``: the ``tasmota`` backend (kind "metered", scope "system")
- ``emulator``: emulated sockets on loopback for tests and demos
- ``cli``: ``lett gt serve | config | emulate | calibrate | hosts``

Importing this package is cheap: requests, fastapi and uvicorn load when first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from let_backends.tasmota.backend import TasmotaBackend
from let_core.hookspecs import hookimpl

__all__ = ["TasmotaBackend"]


@hookimpl
def let_register_backends(register: Callable[[Any], None]) -> None:
    register(TasmotaBackend)


@hookimpl
def let_register_commands(cli: Any) -> None:
    from let_backends.tasmota.cli import gt

    cli.add_command(gt)
