"""Ground truth at the wall socket: Tasmota smart sockets behind a LET ground-truth server.

- ``config``: where the server is (address, token, deadlines) and the energy-rate rule
- ``client``: ``GroundTruthClient``, ``MeteredSession`` and LET 0.1.x's ``GroundTruthTracker``
- ``backend``: the ``tasmota`` backend (kind "metered", scope "system")

The server itself (``lett gt serve``) is the package ``let_groundtruth``. Importing this package
is cheap: requests loads when first used.
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
