"""A fake ``jtop`` module (jetson-stats) for machines that are not NVIDIA Jetsons.

It follows the real client's API as LET uses it: ``jtop(interval=1.0)`` is a thread that
``start()``s by connecting to the jtop service (raising ``JtopException`` with jtop's own
message when the service is not active), works as a context manager, ``ok(spin=False)`` waits
for fresh data (``spin=True`` does not) and re-raises what its reader thread hit, ``close()``
stops it; ``power`` is ``{'rail': {name: {...}}, 'tot': {...}}`` with ``power``/``avg`` in mW
and ``tot['name']`` the input rail; ``board`` is ``{'platform', 'hardware', 'libraries'}``.

Tests install it with ``monkeypatch.setitem(sys.modules, "jtop", fake)`` after ``reset(...)``.
"""

from __future__ import annotations

import threading
from typing import Any

TIMEOUT_GAIN = 3


class JtopException(Exception):
    """Same name and role as ``jtop.core.exceptions.JtopException``."""


class FakeService:
    """The board behind the jtop service: rails with a power (mW) that tests may change."""

    def __init__(self, active: bool = True, model: str = "NVIDIA Jetson AGX Orin Developer Kit",
                 rails: dict[str, int] | None = None, total_rail: str | None = "VDD_IN") -> None:
        self.active = active
        self.model = model
        self.rails = dict(rails if rails is not None else
                          {"VDD_IN": 12_000, "VDD_CPU_CV": 3_000, "VDD_GPU_SOC": 5_000})
        self.total_rail = total_rail
        self.broken = False  # the service dies: the client's reader thread fails

    def power(self) -> dict[str, Any]:
        rails = {name: {"online": True, "type": "INA3221", "status": "ok", "volt": 5000,
                        "curr": mw // 5, "power": mw, "avg": mw, "warn": 32760, "crit": 32760}
                 for name, mw in self.rails.items()}
        if self.total_rail and self.total_rail in rails:
            total = dict(rails.pop(self.total_rail), name=self.total_rail)
        elif rails:
            total = {"power": sum(r["power"] for r in rails.values()),
                     "avg": sum(r["avg"] for r in rails.values())}
        else:
            return {}
        return {"rail": rails, "tot": total}


_service = FakeService()


def reset(service: FakeService) -> None:
    """Set the board this fake pretends to be (test helper, not part of jtop)."""
    global _service
    _service = service


class jtop(threading.Thread):  # noqa: N801 - the real class is lowercase
    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self._interval = float(interval)
        self._trigger = threading.Event()
        self._error: BaseException | None = None
        self._running = False
        self._stats: dict[str, Any] = {}
        self._board: dict[str, Any] = {"platform": {"Machine": "aarch64", "System": "Linux"},
                                       "libraries": {"CUDA": "12.2.140"}}
        self._server_interval = self._interval

    def start(self) -> None:
        if not _service.active:
            raise JtopException("The jtop.service is not active. Please run:\n"
                                "sudo systemctl restart jtop.service")
        self._board["hardware"] = {"Model": _service.model, "Module": "NVIDIA Jetson AGX Orin (64GB ram)",
                                   "SoC": "tegra234", "L4T": "36.3.0", "Jetpack": "6.0"}
        self._get_data()
        self._running = True
        self.daemon = True
        super().start()

    def _get_data(self) -> None:
        if _service.broken:
            raise JtopException("Lost connection with jtop server")
        self._stats = {"power": _service.power()}
        self._trigger.set()

    def run(self) -> None:
        try:
            while self._running:
                self._get_data()
                threading.Event().wait(self._interval)
        except Exception as exc:
            self._error = exc

    @property
    def power(self) -> dict[str, Any]:
        return self._stats["power"]

    @property
    def board(self) -> dict[str, Any]:
        return self._board

    @property
    def interval(self) -> float:
        return self._server_interval

    def ok(self, spin: bool = False) -> bool:
        if not spin and not self._trigger.is_set():
            if not self._trigger.wait(self._interval * TIMEOUT_GAIN):
                self._running = False
        if self._error is not None:
            raise self._error
        if self._running:
            self._trigger.clear()
        return self._running

    def close(self) -> None:
        self._running = False

    def __enter__(self) -> jtop:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
        return exc_tb is None
