"""A cache of the entry points of one group, valid while sys.path is unchanged.

Listing entry points imports importlib.metadata and reads the metadata of every installed
distribution: about 25 ms per process, paid by every tracker that resolves "auto". Installing,
upgrading or removing a distribution creates or deletes a ``*.dist-info`` folder, which changes the
modification time of the folder holding it; so the cached list is valid while the sys.path entries
and their folders' mtimes are the same. Anything unreadable means a fresh scan, never a guess.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable

from let_core.atomicfile import read_regular, write_atomically
from let_core.config import cache_dir

EntryPoints = list[tuple[str, str, str]]


_INSTALL_FOLDERS = ("site-packages", "dist-packages")
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def fingerprint() -> list[list[object]]:
    """Every sys.path entry with what changes when a distribution is added or removed there.

    For an installer's folder (site-packages) that is the folder's mtime. Other entries (the
    script's folder, the working directory, a checkout on PYTHONPATH) see files come and go on
    every run, e.g. a training script writing its outputs: there only the distribution metadata
    folders in them count, with their mtimes, so those writes do not cost a scan each run.
    """
    result: list[list[object]] = []
    for entry in sys.path:
        path = entry or os.getcwd()
        try:
            if os.path.basename(path.rstrip(os.sep)) in _INSTALL_FOLDERS:
                result.append([path, os.stat(path).st_mtime_ns])
            else:
                with os.scandir(path) as found:
                    result.append([path, sorted([e.name, e.stat().st_mtime_ns] for e in found
                                                if e.name.endswith(_METADATA_SUFFIXES))])
        except OSError:  # not a folder (a zip, a missing entry)
            result.append([path, None])
    return result


def cached(group: str, scan: Callable[[], EntryPoints]) -> EntryPoints:
    """The group's entry points from the cache when sys.path is unchanged, else ``scan()`` (stored)."""
    key = {"group": group, "python": sys.executable, "path": fingerprint()}
    # The file holds its whole key and is used only when it matches; a digest of it names it.
    import hashlib

    digest = hashlib.sha256(json.dumps(key).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    path = cache_dir() / f"entry-points-{group}-{digest}.json"
    try:
        stored = json.loads(read_regular(path))
        if stored.get("key") == key and isinstance(stored.get("entry_points"), list):
            return [(str(n), str(v), str(d)) for n, v, d in stored["entry_points"]]
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    found = scan()
    try:
        write_atomic(path, json.dumps({"key": key, "entry_points": found}))
    except OSError:
        pass  # an unwritable cache folder costs a scan next time, nothing else
    return found


def write_atomic(path: Path, body: str) -> None:
    """Write a whole file or nothing: a private temporary file in the same folder, then a rename.

    A reader sees the old file or the new one, and the last of several concurrent writers wins
    whole; a torn or interleaved file cannot appear.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, body.encode("utf-8"))
