"""Files that a reader sees whole: the old content or the new, never a part, and the last of
several concurrent writers wins whole (the caches, the live dir, calibrations, reports); and
reading them back without hanging on a FIFO or device put in their place."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a reader sees the old or the new file, never a
    part: a temporary file in the same folder, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``; OSError unless it is a regular file (opened without blocking,
    so a FIFO in its place is an error at once, never a statement that waits forever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return handle.read()
