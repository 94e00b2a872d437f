"""Run a check as a user for whom file permissions apply, also when the tests run as root."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

# Root reads any file through these two capabilities; without them a mode-0 file is unreadable
# to it too. Dropping them keeps root's uid, so the checkout and its virtualenv (root's own
# files, maybe in a private temp folder) stay readable, which switching to `nobody` does not.
_DROP = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@functools.cache
def _can_drop() -> bool:
    if shutil.which("setpriv") is None:
        return False
    return subprocess.run([*_DROP, "true"], capture_output=True).returncode == 0


def as_unprivileged(command: list[str]) -> list[str]:
    """``command`` as it runs for an ordinary user: unchanged unless we are root; as root, with
    the permission-bypassing capabilities dropped (skips the test where that is impossible)."""
    if os.geteuid() != 0:
        return command
    if not _can_drop():
        pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    return [*_DROP, *command]
