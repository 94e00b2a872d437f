"""Tasmota's HTTP command API (``http://IP/cm?cmnd=...``), as the ground-truth server uses it.

Only reads and calibration commands are sent: nothing here resets a socket's counters.

Requests go through ``http_exchange``: a small HTTP/1.1 GET over a plain socket with one *total*
deadline (connect, send, every byte of the answer) and a size limit. ``requests``' timeouts
apply per read, so a socket that trickles one byte a second held a poller for as long as it
liked; Tasmota's web server speaks plain HTTP with short JSON answers, which is all this needs.
"""

from __future__ import annotations

import json
import re
import socket as _socket
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from attrs import evolve, field, frozen

from let_core.errors import LetError

TASMOTA_TIME = "%Y-%m-%dT%H:%M:%S"
#: ``EnergyRes 5``: Total in 0.00001 kWh (0.01 Wh) steps, the finest the firmware offers.
ENERGY_RESOLUTION = 5
#: Tasmota's answers are a few hundred bytes; anything far larger is not a socket.
MAX_ANSWER_BYTES = 64 * 1024


class SocketError(LetError):
    """A socket did not answer, refused the credentials, or answered something unexpected."""


@frozen
class EnergyReading:
    """One ``Status 8`` answer: the socket's counter and what it measures right now."""

    total_kwh: float  # the socket's own running counter (may drop: reset or reboot)
    power_w: float
    voltage_v: float | None
    current_a: float | None
    total_start_time: str  # when the counter was last reset, socket-local time
    socket_time: str  # StatusSNS.Time, socket-local time
    today_kwh: float | None = None
    yesterday_kwh: float | None = None
    #: ``time.monotonic()`` just before the request was sent and when the first byte of the answer
    #: came back: the socket took the reading in between (None: not known). Not persisted.
    taken: tuple[float, float] | None = field(default=None, eq=False)

    @classmethod
    def from_status(cls, data: Mapping[str, Any]) -> EnergyReading:
        try:
            sns = data["StatusSNS"]
            energy = sns["ENERGY"]
            return cls(total_kwh=float(energy["Total"]), power_w=float(energy.get("Power") or 0.0),
                       voltage_v=_opt_float(energy.get("Voltage")),
                       current_a=_opt_float(energy.get("Current")),
                       total_start_time=str(energy.get("TotalStartTime") or ""),
                       socket_time=str(sns.get("Time") or ""),
                       today_kwh=_opt_float(energy.get("Today")),
                       yesterday_kwh=_opt_float(energy.get("Yesterday")))
        except (KeyError, TypeError, ValueError) as exc:
            raise SocketError(f"the answer has no StatusSNS.ENERGY.Total ({exc!r}); is this a Tasmota "
                              "socket with energy monitoring (e.g. Nous A1T)?") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnergyReading:
        """The inverse of ``as_dict`` (the server's persisted baseline)."""
        return cls(total_kwh=float(data["total_kwh"]), power_w=float(data["power_w"]),
                   voltage_v=_opt_float(data.get("voltage_v")), current_a=_opt_float(data.get("current_a")),
                   total_start_time=str(data.get("total_start_time") or ""),
                   socket_time=str(data.get("socket_time") or ""),
                   today_kwh=_opt_float(data.get("today_kwh")),
                   yesterday_kwh=_opt_float(data.get("yesterday_kwh")))

    def as_dict(self) -> dict[str, Any]:
        return {"total_kwh": self.total_kwh, "power_w": self.power_w, "voltage_v": self.voltage_v,
                "current_a": self.current_a, "total_start_time": self.total_start_time,
                "socket_time": self.socket_time, "today_kwh": self.today_kwh,
                "yesterday_kwh": self.yesterday_kwh}


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list):  # multi-channel devices answer lists; a plug has one channel
        value = value[0] if value else None
    return None if value is None else float(value)


def parse_tasmota_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, TASMOTA_TIME)
    except (TypeError, ValueError):
        return None


class HttpTimeout(OSError):
    """The whole request did not finish within its deadline."""


@frozen
class HttpAnswer:
    status: int
    body: bytes
    #: ``time.monotonic()`` just before the request went out and when the answer's first byte
    #: arrived: the peer answered in between. Connecting and reading the rest are outside it, so
    #: it brackets the moment a socket took its reading more tightly than the whole call does.
    sent: float
    first_byte: float


def http_get(address: str, target: str, deadline_s: float,
             max_bytes: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
    """``GET target`` from ``address`` ("ip[:port]"): (status, body), all within ``deadline_s``
    (``http_exchange`` also says when the answer came)."""
    answer = http_exchange(address, target, deadline_s, max_bytes)
    return answer.status, answer.body


def http_exchange(address: str, target: str, deadline_s: float,
                  max_bytes: int = MAX_ANSWER_BYTES) -> HttpAnswer:
    """``GET target`` from ``address`` ("ip[:port]"), all within ``deadline_s``.

    Raises ``OSError`` (``HttpTimeout`` past the deadline) on any network failure and
    ``ValueError`` for an answer that is not HTTP or is larger than ``max_bytes``.
    """
    end = time.monotonic() + deadline_s
    host, _, port = address.rpartition(":") if address.count(":") == 1 else (address, "", "80")
    if not host:
        host, port = address, "80"

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise HttpTimeout(f"no complete answer within {deadline_s:g} s")
        return remaining

    with _socket.create_connection((host.strip("[]"), int(port)), timeout=left()) as conn:
        conn.settimeout(left())
        sent = time.monotonic()
        first_byte = 0.0
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n"
                     "Accept: application/json\r\n\r\n".encode("ascii"))
        data = bytearray()
        while True:
            conn.settimeout(left())  # the remaining total, not a fresh per-read allowance
            try:
                chunk = conn.recv(8192)
            except TimeoutError:
                raise HttpTimeout(f"no complete answer within {deadline_s:g} s") from None
            if not chunk:
                break
            if not data:
                first_byte = time.monotonic()
            data += chunk
            if len(data) > max_bytes + 8192:
                raise ValueError(f"answer larger than {max_bytes} bytes")
            complete = _complete(bytes(data))
            if complete is not None:
                return HttpAnswer(*complete, sent=sent, first_byte=first_byte)
    complete = _complete(bytes(data), eof=True)
    if complete is None:
        raise ValueError("the connection closed before a complete HTTP answer")
    return HttpAnswer(*complete, sent=sent, first_byte=first_byte)


def _complete(data: bytes, eof: bool = False) -> tuple[int, bytes] | None:
    """(status, body) once ``data`` holds a whole answer, else None."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if match is None:
        raise ValueError(f"not an HTTP answer: {lines[0][:60]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    status = int(match.group(1))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out, rest = bytearray(), body
        while True:
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep:
                return None
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                return status, bytes(out)
            if len(rest) < size + 2:
                return None
            out += rest[:size]
            rest = rest[size + 2:]
    if "content-length" in headers:
        length = int(headers["content-length"])
        if length > MAX_ANSWER_BYTES:
            raise ValueError(f"answer of {length} bytes announced")
        return (status, body[:length]) if len(body) >= length else None
    return (status, body) if eof else None


class TasmotaSocket:
    """One socket. ``timeout`` is the total deadline of one request (connect to last byte)."""

    def __init__(self, address: str, user: str = "", password: str = "", timeout: float = 2.0,
                 retries: int = 1) -> None:
        self.address = address
        self.user = user
        self.password = password
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self._resolution_set = False
        #: (sent, first byte) of the last answered command, ``time.monotonic()``
        self.last_exchange: tuple[float, float] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"

    def command(self, cmnd: str) -> dict[str, Any]:
        """Send one command and return its JSON answer; bounded retries on network errors."""
        params = {"cmnd": cmnd}
        if self.password:
            params = {"user": self.user or "admin", "password": self.password, **params}
        target = "/cm?" + urlencode(params)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                answer = http_exchange(self.address, target, self.timeout)
            except (OSError, ValueError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(0.05 * (attempt + 1))
                continue
            status, body = answer.status, answer.body
            self.last_exchange = (answer.sent, answer.first_byte)
            if status == 401:
                raise SocketError(f"socket {self.address} refused the credentials (401); set \"user\" "
                                  "and \"password\" for this host in the config (Tasmota's WebPassword)")
            if status != 200:
                raise SocketError(f"socket {self.address} answered HTTP {status} to {cmnd!r}")
            try:
                data = json.loads(body.decode("utf-8", "replace"))
            except ValueError:
                raise SocketError(f"socket {self.address} answered {cmnd!r} with non-JSON "
                                  f"{body[:80]!r}") from None
            if not isinstance(data, dict):
                raise SocketError(f"socket {self.address} answered {cmnd!r} with {data!r}")
            if data.get("Command") == "Unknown":
                raise SocketError(f"socket {self.address} does not know the command {cmnd!r}")
            if "WARNING" in data and len(data) == 1:
                raise SocketError(f"socket {self.address}: {data['WARNING']}")
            return data
        raise SocketError(f"socket {self.address} did not answer {cmnd!r} after {self.retries + 1} "
                          f"tries ({type(last).__name__}); is it powered and on the network?")

    def read(self) -> EnergyReading:
        """``Status 8`` (sensor status). Sets the finest energy resolution once per connection."""
        if not self._resolution_set:
            # EnergyRes only changes how many decimals Total is reported with; counters are kept.
            self.command(f"EnergyRes {ENERGY_RESOLUTION}")
            self._resolution_set = True
        data = self.command("Status 8")
        if "StatusSNS" not in data:  # some firmware builds answer sensors only on Status 10
            data = self.command("Status 10")
        return evolve(EnergyReading.from_status(data), taken=self.last_exchange)

    def uptime(self) -> float | None:
        """Seconds since the socket booted (``Status 11``), or None if it does not say."""
        sts = self.command("Status 11").get("StatusSTS") or {}
        if "UptimeSec" in sts:
            return float(sts["UptimeSec"])
        match = re.fullmatch(r"(\d+)T(\d+):(\d+):(\d+)", str(sts.get("Uptime", "")))
        if match is None:
            return None
        d, h, m, sec = (int(g) for g in match.groups())
        return float(((d * 24 + h) * 60 + m) * 60 + sec)

    def calibrate(self, volts: float | None = None, watts: float | None = None,
                  amps: float | None = None) -> dict[str, Any]:
        """The LET README's calibration: ``SaveData 1``, ``VoltageSet``, ``PowerSet``, ``Status 8``.

        Run it with a known constant load (a light bulb) plugged into the socket.
        """
        answers: dict[str, Any] = {"SaveData 1": self.command("SaveData 1")}
        if volts is not None:
            answers[f"VoltageSet {volts:g}"] = self.command(f"VoltageSet {volts:g}")
        if watts is not None:
            answers[f"PowerSet {watts:g}"] = self.command(f"PowerSet {watts:g}")
        if amps is not None:
            answers[f"CurrentSet {amps * 1000:g}"] = self.command(f"CurrentSet {amps * 1000:g}")
        answers["Status 8"] = self.command("Status 8")
        return answers

    def close(self) -> None:
        """Nothing to release: every request has its own connection."""
