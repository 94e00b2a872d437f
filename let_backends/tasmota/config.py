"""Where the client's ground-truth server is: its address, token, deadline and this host's name.

Cheap to import (stdlib and attrs only): the ``tasmota`` backend's availability check reads
these before deciding whether any network call is worth making. The server's own settings (its
host -> socket map) live with the server, in ``let_groundtruth.config``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from attrs import frozen

from let_core import config as core_config
from let_core.errors import ConfigurationError

DEFAULT_SERVER_PORT = 8000
REMOTE_CONFIG_NAME = "GT_REMOTE_CONFIG"
#: Beside GT_REMOTE_CONFIG, mode 600: the token ``lett gt config --token`` stored.
REMOTE_TOKEN_NAME = "GT_REMOTE_TOKEN"
#: A 16 A socket at 230 V: the most a Tasmota plug (Nous A1T, Sonoff S31) can deliver.
DEFAULT_RATED_MAX_W = 3680.0
#: Slack of the energy-rate check: request timing jitter and the counter's 0.01 Wh rounding.
RATE_SLACK_S = 1.0
RATE_SLACK_KWH = 0.00002


def max_energy_kwh(rated_max_w: float, seconds: float) -> float:
    """The most energy a socket rated ``rated_max_w`` can deliver in ``seconds``, with slack.

    One rule for both sides: the server refuses a counter that rises faster, the client a stop
    answer that claims more (a 1000 kWh answer for a 1 s session is not a measurement)."""
    return rated_max_w * (max(seconds, 0.0) + RATE_SLACK_S) / 3.6e6 + RATE_SLACK_KWH


def rated_max_w() -> float:
    """``LET_GT_RATED_MAX_W``: the rated power of the sockets (default 3680 W, 16 A at 230 V)."""
    raw = core_config.gt_env("RATED_MAX_W")
    if not raw:
        return DEFAULT_RATED_MAX_W
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise ConfigurationError(f"LET_GT_RATED_MAX_W={raw!r} is not a power in watts (e.g. 3680 for a 16 A socket)")
    return value


def remote_config_file() -> Path:
    """``$LET_HOME/GT_REMOTE_CONFIG``: "host:port" of the ground-truth server (LET 0.1.x's file)."""
    return core_config.let_home() / REMOTE_CONFIG_NAME


def remote_token_file() -> Path:
    return core_config.let_home() / REMOTE_TOKEN_NAME


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
    path = core_config.gt_env("CA_BUNDLE")
    if not path:
        return True
    if not Path(path).expanduser().is_file():
        raise ConfigurationError(f"LET_GT_CA_BUNDLE={path!r} is not a file; point it at the PEM "
                                 "certificate (or CA bundle) that signed the server's certificate")
    return str(Path(path).expanduser())


def client_timeout() -> float:
    """``LET_GT_TIMEOUT``: the most seconds one call to the server (start, stop) may take in all."""
    raw = core_config.gt_env("TIMEOUT")
    if not raw:
        return 10.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigurationError(f"LET_GT_TIMEOUT={raw!r} is not a number of seconds (0-3600]")
    return value


def heartbeat_seconds() -> float:
    """``LET_GT_HEARTBEAT_S``: how often a running session is renewed and its figures kept, so that
    a server that dies mid-run still leaves the energy metered up to then (default 30 s; the
    server's lease, 10 min by default, must be longer)."""
    try:
        return max(float(core_config.gt_env("HEARTBEAT_S") or 30.0), 0.05)
    except ValueError:
        return 30.0


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
    host = core_config.gt_env("HOST")
    if host:
        scheme, host = _split_scheme(host)
        return ServerLocation(host, _port(core_config.gt_env("PORT") or str(DEFAULT_SERVER_PORT), "LET_GT_PORT"),
                              "LET_GT_HOST/LET_GT_PORT", scheme)
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


def _replace(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, mode)  # an older file of another mode is replaced, not reused
    os.replace(tmp, path)


def write_remote_config(host: str, port: int, bearer: str | None = None) -> Path:
    """Store the server's address (and, given, its token: mode 600, beside it)."""
    path = remote_config_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    _port(str(port), "--port")
    if not host or any(c.isspace() for c in host):
        raise ConfigurationError(f"--host must be a server name or IP, got {host!r}")
    if bearer is not None:
        if any(c.isspace() for c in bearer):
            raise ConfigurationError("--token must not contain spaces")
        if bearer:
            _replace(remote_token_file(), bearer, 0o600)
        else:
            remote_token_file().unlink(missing_ok=True)
    _replace(path, f"{host}:{port}")
    return path


def client_hostname(default: str | None = None) -> str:
    """The name this computer has on the server: ``LET_GT_HOSTNAME``, else the host name."""
    return core_config.gt_env("HOSTNAME") or default or socket.gethostname()


def token() -> str:
    """The bearer token clients send: ``LET_GT_TOKEN``, else the one ``lett gt config --token`` stored."""
    explicit = core_config.gt_env("TOKEN")
    if explicit:
        return explicit
    try:
        return remote_token_file().read_text(encoding="utf-8").strip()
    except OSError:
        return ""
