"""Where LET keeps things and every ``LET_*`` environment variable, read in one place.

Nothing else in ``let_core`` reads ``os.environ`` for LET's own settings: a variable is
documented, validated and given its default here, so the tracker, the store, the results
and the CLI cannot disagree about it.

| variable                | meaning                                                         |
|-------------------------|-----------------------------------------------------------------|
| ``LET_HOME``            | the central store's folder (default ``~/.let``)                 |
| ``LET_CACHE_DIR``       | caches (totals), default ``$LET_HOME/cache``                    |
| ``LET_BACKENDS``        | comma list of backends when ``backends=`` is not given          |
| ``LET_REPORTERS``       | comma list of reporters when ``reporters=`` is not given        |
| ``LET_LOG_LEVEL``       | log level when ``log_level=`` is not given (default ``error``)  |
| ``LET_HOSTNAME``        | the host name recorded (default ``socket.gethostname()``)       |
| ``LET_DATASET``         | the Parquet dataset root (default ``<store>/runs``)             |
| ``LET_COUNTRY``         | ISO country code when ``country_iso_code=`` is not given        |
| ``LET_CARBON_INTENSITY``| gCO2/kWh when ``carbon_intensity=`` is not given                |
| ``LET_LOAD_PLUGINS``    | entry-point plugins to load (unset: all; empty: none)           |
| ``LET_LOCK_TIMEOUT``    | seconds to wait for the store's lock (default 30)               |
| ``LET_ATTRIBUTION``     | ``process``: also record the tracked process tree's share       |
| ``LET_LIVE_INTERVAL``   | seconds between a running tracker's published live figures      |
|                         | (default 5; 0 publishes none, and a killed run keeps nothing)   |
| ``LET_RUNTIME_DIR``     | node-local locks (default ``$XDG_RUNTIME_DIR/let``, else        |
|                         | ``$LET_HOME/run``)                                              |
| ``LET_GT_HOST``,        | the ground-truth server a client uses (``https://NAME`` for     |
| ``LET_GT_PORT``         | TLS), default port 8000                                         |
| ``LET_GT_TOKEN``        | bearer token: the client sends it, ``lett gt serve`` requires it|
| ``LET_GT_ADMIN_TOKEN``  | the server's second token, which may list every session id      |
| ``LET_GT_HOSTNAME``     | this computer's name on the ground-truth server                 |
| ``LET_GT_CA_BUNDLE``    | PEM file the client verifies the server's TLS certificate with  |
| ``LET_GT_TIMEOUT``      | total seconds of one call to the ground-truth server (10)       |
| ``LET_GT_HEARTBEAT_S``  | seconds between a running session's renewals (30)               |
| ``LET_GT_RATED_MAX_W``  | the sockets' rated power the client checks answers with (3680)  |

Launcher variables (Slurm, torchrun, MPI) are not LET's settings; ``let_core.jobs`` reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

from let_core.errors import ConfigurationError

DEFAULT_COUNTRY = "DEU"
DATASET_ENV = "LET_DATASET"


def let_home() -> Path:
    """The central store's folder: ``$LET_HOME``, else ``~/.let``."""
    home = os.environ.get("LET_HOME")
    return Path(home).expanduser() if home else Path.home() / ".let"


def cache_dir() -> Path:
    """Where LET keeps caches: ``$LET_CACHE_DIR``, else ``$LET_HOME/cache``.

    Never a user's ``output_dir``: LET writes nothing there but ``emissions.csv``.
    """
    value = os.environ.get("LET_CACHE_DIR")
    return Path(value).expanduser() if value else let_home() / "cache"


def _absolute(store_path: str | os.PathLike[str]) -> bytes:
    return os.path.abspath(os.path.expanduser(os.fspath(store_path))).encode("utf-8", "surrogateescape")


def _store_key(store_path: str | os.PathLike[str]) -> str:
    import hashlib

    return hashlib.sha256(_absolute(store_path)).hexdigest()[:24]


def cache_file(kind: str, store_path: str | os.PathLike[str], suffix: str = ".json") -> Path:
    """A cache file for one store, keyed by a CRC-32 of the store's absolute path (any path fits).

    Not a cryptographic digest: each cache names inside what it is of (the totals cache its
    store, the folded-backups list each file's path), so two paths of one name cost a rebuild,
    never a wrong number. hashlib loads OpenSSL: 11.4 M of the 371 M instructions of a whole
    tracked process (callgrind), a third of what issue 19's 10% bound allows. Recovery files,
    which are data, keep SHA-256."""
    import zlib

    return cache_dir() / f"{kind}-{zlib.crc32(_absolute(store_path)):08x}{suffix}"


def recovery_dir() -> Path:
    """Where LET keeps what it could not put in a store: ``$LET_HOME/recovered``.

    Data, not a cache (never cleaned by LET), and never a user's ``output_dir``.
    """
    return let_home() / "recovered"


def recovery_file(kind: str, store_path: str | os.PathLike[str], suffix: str = ".csv") -> Path:
    """A recovery file for one store (``rescue``: runs that could not be appended;
    ``quarantine``: lines that could not be parsed; ``backup``), keyed by a SHA-256 of the
    store's absolute path (no two stores ever share one) and named after the store's folder
    so a person can tell them apart."""
    folder = Path(os.path.abspath(os.path.expanduser(os.fspath(store_path)))).parent.name or "root"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in folder)[:40]
    return recovery_dir() / f"{kind}-{safe}-{_store_key(store_path)}{suffix}"


def lock_timeout() -> float:
    """``LET_LOCK_TIMEOUT``: seconds a store operation waits for the lock (default 30)."""
    value = os.environ.get("LET_LOCK_TIMEOUT", "").strip()
    if not value:
        return 30.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigurationError(f"LET_LOCK_TIMEOUT={value!r} is not a number of seconds; "
                                 "set it to e.g. 30, or unset it")
    return seconds


def env_list(name: str) -> list[str] | None:
    """A comma-separated variable as a list; None when unset or blank."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def backends_env() -> list[str] | None:
    return env_list("LET_BACKENDS")


def reporters_env() -> list[str] | None:
    return env_list("LET_REPORTERS")


def log_level_env() -> str | None:
    return os.environ.get("LET_LOG_LEVEL") or None


def hostname() -> str:
    explicit = os.environ.get("LET_HOSTNAME")
    if explicit:
        return explicit
    if hasattr(os, "uname"):
        # The same kernel value as socket.gethostname() (gethostname(2) reads uname's nodename)
        # without importing socket (~2 ms) on every tracked run.
        return os.uname().nodename
    import socket

    return socket.gethostname()


def current_user() -> str:
    import getpass  # imports termios; only the tracker's first run in a process asks

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # containers without a passwd entry for the uid
        return os.environ.get("USER") or f"uid{os.getuid()}"


def rapl_root_env() -> str | None:
    """LET_RAPL_ROOT: another powercap tree (tests, containers that mount it elsewhere)."""
    return os.environ.get("LET_RAPL_ROOT") or None


def dataset_env() -> str | None:
    return os.environ.get(DATASET_ENV) or None


DATASET_DIR = "runs"


def is_uri(value: object) -> bool:
    """Whether a store or dataset location is a URI (``s3://...``, ``file://...``), not a folder."""
    return isinstance(value, str) and "://" in value


def default_dataset_root(store_dir: str | os.PathLike[str]) -> str:
    """The Parquet dataset beside a store: ``LET_DATASET`` if set, else ``<store>/runs``."""
    return dataset_env() or str(Path(store_dir).expanduser() / DATASET_DIR)


def country_env() -> str | None:
    value = os.environ.get("LET_COUNTRY", "").strip()
    return value or None


def carbon_intensity_env() -> float | None:
    """``LET_CARBON_INTENSITY`` in gCO2/kWh as a number; None when unset. Its range is checked
    where intensities are (``carbon.resolve_intensity``), so this module imports nothing of LET's."""
    value = os.environ.get("LET_CARBON_INTENSITY", "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"LET_CARBON_INTENSITY={value!r} is not a number; set it to the "
                                 "grid's carbon intensity in gCO2/kWh, e.g. 380") from None


def load_plugins_env() -> set[str] | None:
    """Entry-point plugin names allowed by ``LET_LOAD_PLUGINS``; None means all."""
    value = os.environ.get("LET_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def cuda_visible_devices() -> list[str] | None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    return [d for d in visible.split(",") if d.strip()]


ATTRIBUTIONS = ("none", "process")


def validate_attribution(value: str | None) -> str:
    """``"process"`` (record the tracked process tree's share of each machine figure) or ``"none"``."""
    text = (value or "none").strip().lower()
    if text not in ATTRIBUTIONS:
        raise ConfigurationError(f"attribution={value!r} is not known; use 'process' (this process "
                                 "tree's share of the machine) or 'none'")
    return text


def attribution_env() -> str | None:
    """``LET_ATTRIBUTION``, validated; None when unset."""
    value = os.environ.get("LET_ATTRIBUTION", "").strip()
    return validate_attribution(value) if value else None


DEFAULT_LIVE_INTERVAL = 5.0


def live_interval() -> float:
    """``LET_LIVE_INTERVAL``: seconds between the live figures a running tracker publishes in the
    runtime dir for ``lett exporter`` (default 5, a tenth of a second at least; 0: publish none)."""
    value = os.environ.get("LET_LIVE_INTERVAL", "").strip()
    if not value:
        return DEFAULT_LIVE_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigurationError(f"LET_LIVE_INTERVAL={value!r} is not a number of seconds; set it to "
                                 "e.g. 5, to 0 to publish no live figures, or unset it")
    return max(seconds, 0.1) if seconds > 0 else 0.0


def runtime_dir() -> Path:
    """Node-local runtime files (the node-meter election's locks): ``LET_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/let``, else ``$LET_HOME/run`` (lock names carry the host name, so a
    ``LET_HOME`` shared by the nodes of a cluster still elects one leader per node)."""
    explicit = os.environ.get("LET_RUNTIME_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    return Path(xdg) / "let" if xdg else let_home() / "run"


# ------------------------------------------------------------------ the ground-truth server's
# Raw values only: ``let_backends.tasmota.config`` validates them where their meaning lives.
def gt_env(name: str) -> str:
    """``LET_GT_<NAME>`` stripped, "" when unset (HOST, PORT, TOKEN, ADMIN_TOKEN, HOSTNAME,
    CA_BUNDLE, TIMEOUT, HEARTBEAT_S, RATED_MAX_W)."""
    if name not in GT_VARIABLES:
        raise ValueError(f"LET_GT_{name} is not one of LET's variables")
    return os.environ.get(f"LET_GT_{name}", "").strip()


GT_VARIABLES = frozenset({"HOST", "PORT", "TOKEN", "ADMIN_TOKEN", "HOSTNAME", "CA_BUNDLE", "TIMEOUT",
                          "HEARTBEAT_S", "RATED_MAX_W"})
