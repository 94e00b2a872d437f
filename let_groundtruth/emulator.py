"""Emulated Tasmota smart sockets on loopback, for tests, demos and benchmarks.

Each ``EmulatedSocket`` is a real HTTP server (``ThreadingHTTPServer``) answering Tasmota's
``/cm?cmnd=...`` API with firmware-shaped JSON. It integrates a power profile (constant watts or
a function of emulated seconds since start) and keeps two energies apart: the *true* energy the
computer drew, and the socket's *metered* counter (``Total``), which a counter reset, a reboot
(falls back to the last flash save and misses its downtime) or a miscalibration can make differ.

``time_scale`` speeds the emulated clock: at 10, one real second is ten emulated seconds, so a
60 s benchmark session at 150 W takes 6 s. The socket's ``Time`` fields follow the emulated clock.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qs, urlsplit

PowerProfile = Union[float, Callable[[float], float]]  # noqa: UP007 - a runtime alias; X | Y of a Callable needs 3.10 typing
_FMT = "%Y-%m-%dT%H:%M:%S"
#: Largest integration step (emulated seconds) for a power function: Simpson per step.
_STEP_S = 0.02


def integrate_profile(power: PowerProfile, t0: float, t1: float, step: float = _STEP_S) -> float:
    """Energy in kWh drawn by ``power`` between emulated seconds ``t0`` and ``t1``."""
    if t1 <= t0:
        return 0.0
    if not callable(power):
        return float(power) * (t1 - t0) / 3.6e6
    n = max(1, math.ceil((t1 - t0) / step))
    h = (t1 - t0) / n
    joules = 0.0
    for i in range(n):
        a = t0 + i * h
        joules += h / 6.0 * (power(a) + 4.0 * power(a + h / 2.0) + power(a + h))
    return joules / 3.6e6


class EmulatedSocket:
    """One emulated socket. ``with EmulatedSocket(150) as s: s.address`` -> "127.0.0.1:PORT"."""

    def __init__(self, power: PowerProfile = 100.0, host: str = "127.0.0.1", port: int = 0, *,
                 time_scale: float = 1.0, voltage: float = 230.0, power_factor: float = 0.95,
                 start_total_kwh: float = 0.0, user: str = "", password: str = "",
                 save_period_s: float = 300.0, power_gain: float = 1.0, name: str = "") -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.power = power
        self.name = name
        self.time_scale = float(time_scale)
        self.voltage = float(voltage)
        self.power_factor = float(power_factor)
        self.user = user or ("admin" if password else "")
        self.password = password
        self.save_period_s = save_period_s
        self.power_gain = float(power_gain)  # how far the socket's power reading is off (1 = calibrated)
        self.voltage_gain = 1.0
        self.energy_res = 3  # Tasmota's default until `EnergyRes` changes it
        self._lock = threading.RLock()
        self._mono0 = time.monotonic()
        self._wall0 = datetime.now().replace(microsecond=0)
        self._t = 0.0  # emulated seconds integrated so far
        self.true_kwh = 0.0
        self.total_kwh = float(start_total_kwh)  # the metered counter, unrounded
        self._saved_total = self.total_kwh
        self._last_save_t = 0.0
        self._total_start = self._wall0
        self._today_base = self.total_kwh
        self._yesterday = 0.0
        self._day = self._wall0.date()
        self._down_until = 0.0  # monotonic time until which a reboot keeps it silent
        self._hang = threading.Event()  # set: requests get no answer (a timeout for clients)
        self._released = threading.Event()
        #: Raw bodies handed out instead of the next Status 8/10 answers (bad-reading tests).
        self.injected: deque[bytes] = deque()
        #: Seconds between the bytes of every answer: a socket on a bad Wi-Fi link.
        self.trickle_s = 0.0
        #: Seconds to hold each of the next answers after the reading was taken (an answer stuck
        #: in a Wi-Fi queue): the reading is older than its arrival says.
        self.held: deque[float] = deque()
        self.boot_count = 1
        self._boot_t = 0.0  # emulated time of the last boot
        self.requests = 0
        #: (emulated s, true kWh, metered kWh) at every energy read, for accuracy benchmarks.
        self.reads: deque[tuple[float, float, float]] = deque(maxlen=100_000)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------- lifecycle
    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> EmulatedSocket:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"tasmota-emulator-{self.address}", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self.resume()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> EmulatedSocket:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------- physics
    def emulated_seconds(self) -> float:
        return (time.monotonic() - self._mono0) * self.time_scale

    def power_at(self, t: float) -> float:
        return float(self.power(t)) if callable(self.power) else float(self.power)

    def advance(self) -> None:
        """Integrate the profile up to now (called before every answer and by readers)."""
        with self._lock:
            now = self.emulated_seconds()
            if now <= self._t:
                return
            energy = integrate_profile(self.power, self._t, now)
            self.true_kwh += energy
            if time.monotonic() >= self._down_until:  # a rebooting socket meters nothing
                self.total_kwh += energy * self.power_gain
            self._t = now
            if self.save_period_s and now - self._last_save_t >= self.save_period_s:
                self._saved_total, self._last_save_t = self.total_kwh, now
            day = self._clock().date()
            if day != self._day:
                self._yesterday = self.total_kwh - self._today_base
                self._today_base, self._day = self.total_kwh, day

    def _clock(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._t)

    def true_energy_between(self, t0: float, t1: float) -> float:
        """The exact energy (kWh) of the profile between two emulated times (finer integration)."""
        return integrate_profile(self.power, t0, t1, step=_STEP_S / 4)

    # ----------------------------------------------------------------------------- faults
    def reset_counter(self) -> None:
        """What ``EnergyTotal 0`` (or someone's LET 0.1.x) does: Total to 0, new TotalStartTime."""
        with self._lock:
            self.advance()
            self.total_kwh = self._saved_total = self._today_base = 0.0
            self._total_start = self._clock().replace(microsecond=0)

    def reboot(self, downtime_s: float = 1.0) -> None:
        """A power cut or restart: Total falls back to the last flash save; silent for downtime_s
        (real seconds) while the computer keeps drawing power."""
        with self._lock:
            self.advance()
            self.total_kwh = self._saved_total
            self._down_until = time.monotonic() + downtime_s
            self._boot_t = self._t + downtime_s * self.time_scale
            self.boot_count += 1

    def hang(self) -> None:
        """Stop answering: requests wait without a reply until ``resume()`` (clients time out)."""
        self._released.clear()
        self._hang.set()

    def resume(self) -> None:
        self._hang.clear()
        self._released.set()

    def inject(self, *bodies: bytes | str | dict[str, Any]) -> None:
        """The next energy reads answer these bodies verbatim (``{"Total": inf}`` style dicts are
        merged into a real answer, written with ``Infinity``/``NaN`` as Python's json does)."""
        with self._lock:
            for body in bodies:
                if isinstance(body, dict):
                    self.advance()
                    answer = {"StatusSNS": {"Time": self._clock().strftime(_FMT),
                                            "ENERGY": {**self._energy(), **body}}}
                    body = json.dumps(answer)
                self.injected.append(body.encode() if isinstance(body, str) else body)

    @property
    def down(self) -> bool:
        return self._hang.is_set() or time.monotonic() < self._down_until

    # ----------------------------------------------------------------------------- firmware
    def _energy(self) -> dict[str, Any]:
        power = self.power_at(self._t) * self.power_gain
        voltage = self.voltage * self.voltage_gain
        apparent = power / self.power_factor if self.power_factor else power
        res = self.energy_res
        return {
            "TotalStartTime": self._total_start.strftime(_FMT),
            "Total": round(self.total_kwh, res),
            "Yesterday": round(self._yesterday, res),
            "Today": round(self.total_kwh - self._today_base, res),
            "Power": round(power),
            "ApparentPower": round(apparent),
            "ReactivePower": round(math.sqrt(max(apparent ** 2 - power ** 2, 0.0))),
            "Factor": round(self.power_factor, 2),
            "Voltage": round(voltage),
            "Current": round(apparent / voltage, 3) if voltage else 0.0,
        }

    def _sns(self) -> dict[str, Any]:
        self.reads.append((self._t, self.true_kwh, self.total_kwh))
        return {"Time": self._clock().strftime(_FMT), "ENERGY": self._energy()}

    def execute(self, cmnd: str) -> dict[str, Any]:
        """Run one command as the firmware would and return its JSON answer."""
        word, _, arg = cmnd.strip().partition(" ")
        word, arg = word.strip(), arg.strip()
        key = word.lower()
        with self._lock:
            self.advance()
            if key == "status":
                return self._status(arg)
            if key == "energyres":
                if arg:
                    if not arg.isdigit() or not 0 <= int(arg) <= 5:
                        return {"Command": "Error"}
                    self.energy_res = int(arg)
                return {"EnergyRes": self.energy_res}
            if key in ("energytotal", "energytoday", "energyyesterday"):
                if arg:
                    try:
                        wh = float(arg)
                    except ValueError:
                        return {"Command": "Error"}
                    if key == "energytotal":
                        self.total_kwh = self._saved_total = wh / 1000.0
                        self._total_start = self._clock().replace(microsecond=0)
                        self._today_base = min(self._today_base, self.total_kwh)
                    elif key == "energytoday":
                        self._today_base = self.total_kwh - wh / 1000.0
                    else:
                        self._yesterday = wh / 1000.0
                e = self._energy()
                return {word: {k: e[k] for k in ("Total", "Yesterday", "Today")} | {"StartTotalTime": e["TotalStartTime"]}}
            if key == "savedata":
                self._saved_total, self._last_save_t = self.total_kwh, self._t
                return {"SaveData": int(arg) if arg.isdigit() else 1}
            if key in ("voltageset", "powerset", "currentset"):
                return self._calibrate(word, key, arg)
            if key in ("power", "power1"):
                return {"POWER": "ON"}
            return {"Command": "Unknown"}

    def _status(self, arg: str) -> dict[str, Any]:
        if arg in ("8", "10"):
            return {"StatusSNS": self._sns()}
        if arg == "11":
            up = int(max(self._t - self._boot_t, 0.0))
            text = f"{up // 86400}T{up % 86400 // 3600:02d}:{up % 3600 // 60:02d}:{up % 60:02d}"
            return {"StatusSTS": {"Time": self._clock().strftime(_FMT), "Uptime": text, "UptimeSec": up,
                                  "POWER": "ON"}}
        if arg in ("", "0"):
            return {"Status": {"Module": 0, "DeviceName": self.name or "Tasmota", "FriendlyName": [self.name or "Tasmota"],
                               "Power": 1, "Topic": "tasmota_emulated"},
                    "StatusPRM": {"BootCount": self.boot_count}, "StatusSNS": self._sns()}
        return {"Command": "Unknown"}

    def _calibrate(self, word: str, key: str, arg: str) -> dict[str, Any]:
        try:
            value = float(arg)
        except ValueError:
            return {"Command": "Error"}
        true_power = self.power_at(self._t)
        if key == "voltageset" and self.voltage > 0:
            self.voltage_gain = value / self.voltage
        elif key == "powerset" and true_power > 0:
            # The firmware rescales its power reading so that the present load reads `value`.
            self.power_gain = value / true_power
        return {word: value if key != "voltageset" else round(value)}

    def check_auth(self, query: dict[str, list[str]]) -> bool:
        if not self.password:
            return True
        return (query.get("user", [""])[0] == self.user and query.get("password", [""])[0] == self.password)


def _handler_for(socket: EmulatedSocket) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "Tasmota/13.4.0"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            socket.requests += 1
            if socket._hang.is_set():
                socket._released.wait(timeout=120)
                self.close_connection = True
                return
            if time.monotonic() < socket._down_until:
                self.close_connection = True  # rebooting: the connection drops, no answer
                return
            parts = urlsplit(self.path)
            if parts.path != "/cm":
                self._reply(404, {"error": "not found"})
                return
            query = parse_qs(parts.query)
            if not socket.check_auth(query):
                self._reply(401, {"WARNING": "Need user=<username>&password=<password>"})
                return
            cmnd = query.get("cmnd", [""])[0]
            if not cmnd:
                self._reply(200, {"Command": "Unknown"})
                return
            if cmnd.strip().lower() in ("status 8", "status 10") and socket.injected:
                try:
                    raw = socket.injected.popleft()
                except IndexError:
                    raw = None
                if raw is not None:
                    with socket._lock:
                        socket.advance()  # the counter goes on underneath the bad answer
                    self._send(200, raw)
                    return
            answer = socket.execute(cmnd)
            try:
                time.sleep(socket.held.popleft())
            except IndexError:
                pass
            self._reply(200, answer)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body, separators=(",", ":")).encode())

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if socket.trickle_s > 0:
                self.wfile.flush()
                for i in range(len(data)):
                    time.sleep(socket.trickle_s)
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                return
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class EmulatorFarm:
    """Several emulated sockets, e.g. one per host of a ground-truth server's config."""

    def __init__(self, powers: Iterable[PowerProfile], host: str = "127.0.0.1", base_port: int = 0,
                 names: Iterable[str] | None = None, **options: Any) -> None:
        powers = list(powers)
        names = list(names) if names is not None else [f"host{i + 1}" for i in range(len(powers))]
        if len(names) != len(powers):
            raise ValueError("give one name per power profile")
        self.sockets: dict[str, EmulatedSocket] = {}
        try:
            for i, (name, power) in enumerate(zip(names, powers)):
                port = base_port + i if base_port else 0
                self.sockets[name] = EmulatedSocket(power, host=host, port=port, name=name, **options)
        except OSError:
            for s in self.sockets.values():
                s.close()
            raise

    def start(self) -> EmulatorFarm:
        for s in self.sockets.values():
            s.start()
        return self

    def close(self) -> None:
        for s in self.sockets.values():
            s.close()

    def __enter__(self) -> EmulatorFarm:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def config(self) -> dict[str, Any]:
        """The ground-truth server config for these sockets."""
        out: dict[str, Any] = {}
        for name, s in self.sockets.items():
            out[name] = ({"address": s.address, "user": s.user, "password": s.password}
                         if s.password else s.address)
        return out
