"""LET's cache folder, and in it a cache of the entry points of one group, valid while sys.path is unchanged.

Listing entry points imports importlib.metadata and reads the metadata of every installed
distribution: about 25 ms per process, paid by every tracker that resolves "auto". Installing,
upgrading or removing a distribution creates or deletes a ``*.dist-info`` folder, which changes the
modification time of the folder holding it; so the cached list is valid while the sys.path entries
and their folders' mtimes are the same. Anything unreadable means a fresh scan, never a guess.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

EntryPoints = list[tuple[str, str, str]]


def cache_dir() -> Path:
    """Where LET keeps caches: ``$LET_HOME/cache``, else ``$XDG_CACHE_HOME/let`` (``~/.cache/let``).

    Never a user's ``output_dir``: that folder holds ``emissions.csv`` and nothing else of LET's.
    """
    home = os.environ.get("LET_HOME")
    if home:
        return Path(home).expanduser() / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "let"


def fingerprint() -> list[list[object]]:
    """Every sys.path entry with its folder's mtime (None where it is not a folder)."""
    result: list[list[object]] = []
    for entry in sys.path:
        path = entry or os.getcwd()
        try:
            result.append([path, os.stat(path).st_mtime_ns])
        except OSError:
            result.append([path, None])
    return result


def cached(group: str, scan: Callable[[], EntryPoints]) -> EntryPoints:
    """The group's entry points from the cache when sys.path is unchanged, else ``scan()`` (stored)."""
    key = {"group": group, "python": sys.executable, "path": fingerprint()}
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
    path = cache_dir() / f"entry-points-{group}-{digest}.json"
    try:
        stored = json.loads(path.read_text())
        if stored.get("key") == key and isinstance(stored.get("entry_points"), list):
            return [(str(n), str(v), str(d)) for n, v, d in stored["entry_points"]]
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    found = scan()
    import tempfile  # 3 ms at import; only a cache miss writes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump({"key": key, "entry_points": found}, handle)
            os.replace(tmp, path)  # atomic: concurrent writers each leave a whole file
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        pass  # an unwritable cache folder costs a scan next time, nothing else
    return found
