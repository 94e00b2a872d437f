"""The ground-truth server's settings: its host -> socket map and where it keeps its state.

What clients need (the server's address, the token, the rate rule) is in
``let_backends.tasmota.config``; the server reads it from there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from let_core.config import let_home
from let_core.errors import ConfigurationError

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
    return str(address)


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


def default_state_dir() -> Path:
    """Where ``lett gt serve`` keeps its SQLite state unless ``--state-dir`` says otherwise."""
    return let_home() / "gt-server"


# ------------------------------------------------------------------------------ who may connect
TOKEN_FILE = "gt-token"
LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@frozen
class Exposure:
    """Where the server listens and which token it requires, and what to tell its operator."""

    host: str
    token: str
    generated: Path | None = None  # the state dir's token file, when the token came from it
    warning: str = ""


def exposure(host: str | None, token: str, no_token: bool, state_dir: Path) -> Exposure:
    """Safe defaults (as Jupyter's): without a token the server listens on loopback only; on any
    other interface it requires a token, generated once and kept (mode 600) in the state dir
    unless one is given; serving other interfaces without one needs ``no_token`` and is warned of."""
    if no_token and token:
        raise ConfigurationError("--no-token and a token (--token / LET_GT_TOKEN) contradict each other; drop one")
    if host is None:
        host = "0.0.0.0" if (token or no_token) else LOOPBACK
    if token or is_loopback(host):
        return Exposure(host, token)
    if no_token:
        return Exposure(host, "", warning=(
            f"WARNING: serving on {host} without a token (--no-token): anyone who can reach this port can "
            "start, read and stop sessions and read every socket's power. Drop --no-token to have a token "
            "generated, or serve on a trusted network only."))
    path = state_dir / TOKEN_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except OSError:
        kept = ""
    if not kept:
        kept = secrets.token_urlsafe(24)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(kept + "\n")
        except OSError as exc:
            raise ConfigurationError(f"cannot keep the server's token in {str(path)!r} ({exc.strerror}); pass "
                                     "--token, or a writable --state-dir") from None
    return Exposure(host, kept, generated=path)


def wait_for_config(path: str | os.PathLike[str], wait_s: float,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, SocketConfig]:
    """``load_server_config``, waiting up to ``wait_s`` seconds for a file that is about to appear
    (``lett gt emulate --write-config F &`` just before ``lett gt serve --config F``) or is still
    being written; the last error is raised after that."""
    deadline = time.monotonic() + max(wait_s, 0.0)
    while True:
        try:
            return load_server_config(path)
        except ConfigurationError:
            if time.monotonic() >= deadline:
                raise
        sleep(0.1)
