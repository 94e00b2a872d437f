"""Where things are: the server's host -> socket map, and the client's server address.

Cheap to import (stdlib and attrs only): the ``tasmota`` backend's availability check reads
these before deciding whether any network call is worth making.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from let_core.errors import ConfigurationError

DEFAULT_SERVER_PORT = 8000
REMOTE_CONFIG_NAME = "GT_REMOTE_CONFIG"
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


@frozen
class SocketConfig:
    """One metered computer: its name and how to reach the Tasmota socket it is plugged into."""

    host: str  # the computer's host name, as its clients send it
    address: str  # "ip" or "ip:port" of the socket
    user: str = ""
    password: str = ""
    hardware: str = ""  # optional description for statements ("DGX-1, 8x V100")

    @property
    def base_url(self) -> str:
        return f"http://{self.address}"


def strip_json_comments(text: str) -> str:
    """JSON with ``//`` line comments and trailing commas (the LET README's example) -> JSON.

    Scans character by character so that ``//`` inside strings ("http://...") is kept.
    """
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
        elif ch == "/" and text.startswith("//", i):
            # Keep the newline so json's error line numbers still match the file.
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        else:
            out.append(ch)
        i += 1
    cleaned = "".join(out)
    # A trailing comma before } or ] (left behind when the last entry is a comment).
    return re.sub(r",(\s*[}\]])", r"\1", cleaned)


def _check_address(host: str, address: Any, path: str) -> str:
    if not isinstance(address, str) or not address.strip():
        raise ConfigurationError(f"{path}: host {host!r} needs a socket address like \"192.168.0.20\" "
                                 f"or \"127.0.0.2:8080\", got {address!r}")
    address = address.strip()
    if "://" in address or "/" in address:
        raise ConfigurationError(f"{path}: host {host!r} has address {address!r}; give only "
                                 "\"ip\" or \"ip:port\", without http:// or a path")
    if address.count(":") == 1:
        port = address.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"{path}: host {host!r} has a bad port in {address!r}")
    return address


def parse_server_config(data: Mapping[str, Any], path: str = "<config>") -> dict[str, SocketConfig]:
    """The host map from parsed JSON: ``{"host": "ip[:port]"}`` or ``{"host": {"address", ...}}``."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigurationError(f"{path}: the config must be a JSON object mapping host names to "
                                 "socket addresses, e.g. {\"ws28\": \"192.168.0.20\"}")
    sockets: dict[str, SocketConfig] = {}
    for host, value in data.items():
        if not _HOST_NAME.match(str(host)):
            raise ConfigurationError(f"{path}: {host!r} is not a valid host name (letters, digits, "
                                     "'.', '-', '_')")
        if isinstance(value, str):
            sockets[host] = SocketConfig(host, _check_address(host, value, path))
        elif isinstance(value, Mapping):
            unknown = set(value) - {"address", "user", "password", "hardware"}
            if unknown:
                raise ConfigurationError(f"{path}: host {host!r} has unknown keys {sorted(unknown)}; "
                                         "allowed are address, user, password, hardware")
            sockets[host] = SocketConfig(
                host, _check_address(host, value.get("address"), path),
                user=str(value.get("user") or ("admin" if value.get("password") else "")),
                password=str(value.get("password") or ""),
                hardware=str(value.get("hardware") or ""))
        else:
            raise ConfigurationError(f"{path}: host {host!r} maps to {value!r}; use \"ip[:port]\" or "
                                     "{\"address\": ..., \"user\": ..., \"password\": ...}")
    return sockets


def load_server_config(path: str | os.PathLike[str]) -> dict[str, SocketConfig]:
    """Read the ground-truth server's config file (JSON; ``//`` comments are allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the ground-truth config {str(path)!r}: {exc.strerror}. "
                                 "Pass the JSON file mapping host names to socket IPs.") from None
    try:
        data = json.loads(strip_json_comments(text))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                 f"{exc.msg}") from None
    return parse_server_config(data, str(path))


# ------------------------------------------------------------------------------------ client side
def let_home() -> Path:
    home = os.environ.get("LET_HOME")
    return Path(home).expanduser() if home else Path.home() / ".let"


def default_state_dir() -> Path:
    """Where ``lett gt serve`` keeps its SQLite state unless ``--state-dir`` says otherwise."""
    return let_home() / "gt-server"


def remote_config_file() -> Path:
    """``$LET_HOME/GT_REMOTE_CONFIG``: "host:port" of the ground-truth server (LET 0.1.x's file)."""
    return let_home() / REMOTE_CONFIG_NAME


@frozen
class ServerLocation:
    host: str
    port: int
    source: str  # where it came from, for messages
    scheme: str = "http"  # "https" when the host was given as https://NAME (TLS)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _split_scheme(host: str) -> tuple[str, str]:
    """``https://name`` -> ("https", "name"); a bare name is plain HTTP."""
    for scheme in ("https", "http"):
        prefix = f"{scheme}://"
        if host.lower().startswith(prefix):
            return scheme, host[len(prefix):].rstrip("/")
    return "http", host


def ca_bundle() -> str | bool:
    """What clients verify the server's TLS certificate with: ``LET_GT_CA_BUNDLE`` (a PEM file,
    e.g. the server's self-signed certificate), else the system's trust store."""
    path = os.environ.get("LET_GT_CA_BUNDLE", "").strip()
    if not path:
        return True
    if not Path(path).expanduser().is_file():
        raise ConfigurationError(f"LET_GT_CA_BUNDLE={path!r} is not a file; point it at the PEM "
                                 "certificate (or CA bundle) that signed the server's certificate")
    return str(Path(path).expanduser())


def client_timeout() -> float:
    """``LET_GT_TIMEOUT``: the most seconds one call to the server (start, stop) may take in all."""
    raw = os.environ.get("LET_GT_TIMEOUT", "").strip()
    if not raw:
        return 10.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigurationError(f"LET_GT_TIMEOUT={raw!r} is not a number of seconds (0-3600]")
    return value


NOT_CONFIGURED = ("no ground-truth server is configured: set LET_GT_HOST and LET_GT_PORT, or run "
                  "`lett gt config --host SERVER-IP --port PORT` (or `python -m "
                  "lamarr_energy_tracker.ground_truth_tracking --host SERVER-IP --port PORT`)")


def _port(value: str, source: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigurationError(f"{source}: {value!r} is not a TCP port (1-65535)")
    return port


def server_location() -> ServerLocation | None:
    """The configured server (env vars first, then the file), or None. No network access."""
    host = os.environ.get("LET_GT_HOST", "").strip()
    if host:
        scheme, host = _split_scheme(host)
        return ServerLocation(host, _port(os.environ.get("LET_GT_PORT") or str(DEFAULT_SERVER_PORT),
                                          "LET_GT_PORT"), "LET_GT_HOST/LET_GT_PORT", scheme)
    path = remote_config_file()
    try:
        # open(), as LET 0.1.x read it: its code and tests patch builtins.open for this file
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if not text:
        return None
    scheme, rest = _split_scheme(text)
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise ConfigurationError(f"{path} should hold \"HOST:PORT\", found {text!r}; rewrite it with "
                                 "`lett gt config --host SERVER-IP --port PORT`")
    return ServerLocation(host.strip("[]"), _port(port, str(path)), str(path), scheme)


def write_remote_config(host: str, port: int) -> Path:
    path = remote_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    _port(str(port), "--port")
    if not host or any(c.isspace() for c in host):
        raise ConfigurationError(f"--host must be a server name or IP, got {host!r}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{host}:{port}", encoding="utf-8")
    os.replace(tmp, path)
    return path


def client_hostname(default: str | None = None) -> str:
    """The name this computer has on the server: ``LET_GT_HOSTNAME``, else the host name."""
    return os.environ.get("LET_GT_HOSTNAME") or default or socket.gethostname()


def token() -> str:
    return os.environ.get("LET_GT_TOKEN", "")
