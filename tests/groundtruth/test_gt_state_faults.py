"""A state directory that is full or read-only (issue 20). Full: a real `lett gt serve` whose state
dir is a tiny tmpfs of its own (a private mount namespace, so nothing on the test machine is
touched), filled to ENOSPC by the test. Read-only: a file system cannot be remounted read-only
under a database open for writing (EBUSY), so the state's SQLite connection is reopened read-only
(``mode=ro``), as after an error remount. Either way start and stop answer 503 with Retry-After,
nothing is half-written, a retried stop answers the metered figure, no ghost session remains."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from let_groundtruth.emulator import EmulatedSocket
from tests.loopback import free_port, wait_until

TOKEN = "faults-token"
ADMIN = "faults-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _private_mounts_work() -> str:
    """"" when this process may mount a tmpfs in a mount namespace of its own, else why not."""
    if os.geteuid() != 0:
        return "needs root (a tmpfs in a private mount namespace)"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs \"$d\" && umount \"$d\"; rmdir \"$d\""],
                           capture_output=True, text=True, timeout=30)
    return "" if probe.returncode == 0 else f"cannot mount a tmpfs in a private namespace here: {probe.stderr.strip()}"


class FaultyStateServer:
    def __init__(self, tmp: Path, socket: EmulatedSocket) -> None:
        self.config = tmp / "gt.json"
        self.config.write_text(json.dumps({"box": socket.address}))
        self.state = tmp / "state"
        self.state.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "LET_LOAD_PLUGINS": "", "LET_GT_TOKEN": TOKEN, "LET_GT_ADMIN_TOKEN": ADMIN}
        serve = [sys.executable, "-m", "let_core", "gt", "serve", "--config", str(self.config), "--host", "127.0.0.1",
                 "--port", str(self.port), "--poll-interval", "0.2", "--socket-timeout", "1",
                 "--state-dir", str(self.state)]
        # 4 MiB: room for the state, and little to fill.
        script = f'mount -t tmpfs -o size=4m tmpfs "{self.state}" && exec "$@"'
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *serve],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stdout.read() if self.proc.stdout else ''}")
            try:
                return requests.get(self.url + "/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, what="the ground-truth server")
        # The state dir as the server sees it (its own mount namespace).
        self.seen = Path(f"/proc/{self.proc.pid}/root") / str(self.state).lstrip("/")

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, self.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def fill(self) -> None:
        """Write zeros into the state's tmpfs until it is full."""
        block = b"\0" * 65536
        with open(self.seen / "filler", "wb", buffering=0) as out:  # unbuffered: close() has nothing left to fail on
            try:
                while True:
                    out.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
            # tmpfs takes the last pages page by page
            try:
                while True:
                    out.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc

    def free(self) -> None:
        (self.seen / "filler").unlink()

    def open_ids(self) -> list[str]:
        listed = self.call("GET", "/sessions", headers={"Authorization": f"Bearer {ADMIN}"})
        assert listed.status_code == 200, listed.text
        return sorted(s["session_id"] for s in listed.json())

    def stored_ids(self) -> list[str]:
        """The open sessions in the SQLite state itself, read inside the server's mount namespace."""
        read = ("import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
                "print(json.dumps(sorted(r[0] for r in db.execute('SELECT session_id FROM sessions'))))")
        out = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", sys.executable, "-c", read,
                              str(self.state / "gt-state.sqlite3")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStateServer]:
    why = _private_mounts_work()
    if why:
        pytest.skip(why)
    socket = EmulatedSocket(1800.0).start()
    server = None
    try:
        server = FaultyStateServer(tmp_path_factory.mktemp("faults"), socket)
        yield server
    finally:
        if server is not None:
            server.close()
        socket.close()


def _refused(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit()
    body = response.json()
    assert body["retry"] is True and "state directory" in body["error"] and "retry" in body["error"]


class Served:
    """What both faults are checked through: HTTP calls, open ids in memory and in the state."""

    def __init__(self, call: Any, open_ids: Any, stored_ids: Any) -> None:
        self.call, self.open_ids, self.stored_ids = call, open_ids, stored_ids


def check_fault(served: Served, inject: Any, heal: Any, watts: float) -> None:
    began = time.monotonic()
    first = served.call("POST", "/hosts/box/sessions", json={"label": "before the fault"})
    assert first.status_code == 201, first.text
    sid = first.json()["session_id"]
    before = served.open_ids()
    time.sleep(1.0)
    inject()
    try:
        _refused(served.call("POST", "/hosts/box/sessions", json={"label": "ghost?"}))
        asked = time.monotonic()
        _refused(served.call("POST", f"/sessions/{sid}/stop"))
        time.sleep(1.0)
        _refused(served.call("POST", f"/sessions/{sid}/stop"))  # still refused: retried, nothing lost
        assert served.open_ids() == before  # no ghost of the refused start; the session still open
        assert served.call("GET", f"/sessions/{sid}").json()["running"] is True
    finally:
        heal()
    retried = time.monotonic()
    result = served.call("POST", f"/sessions/{sid}/stop")
    assert result.status_code == 200, result.text
    figures = result.json()
    # The figure of the first stop asked: it ended then, not when the retry came.
    assert 0.8 < figures["duration"] < asked - began + 0.5 < retried - began - 0.5, (figures, asked - began)
    assert figures["energy_consumed"] * 3.6e6 / figures["duration"] == pytest.approx(watts, rel=0.1)
    assert figures["quality"]["complete"] is True
    assert served.call("POST", f"/sessions/{sid}/stop").status_code == 404  # stopped once
    assert sid not in served.open_ids() and sid not in served.stored_ids()
    assert served.stored_ids() == served.open_ids()  # memory and state agree: no ghost either way
    again = served.call("POST", "/hosts/box/sessions", json={})  # the healed disk takes new sessions
    assert again.status_code == 201
    assert served.call("POST", f"/sessions/{again.json()['session_id']}/stop").status_code == 200


def test_full_state_disk_is_503_then_the_retried_stop_answers_the_metered_figure(faulty: FaultyStateServer) -> None:
    check_fault(Served(faulty.call, faulty.open_ids, faulty.stored_ids), faulty.fill, faulty.free, 1800.0)


def test_read_only_state_is_503_then_the_retried_stop_answers_the_metered_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from let_groundtruth.config import SocketConfig
    from let_groundtruth.server import RunningServer
    from let_groundtruth.state import StateStore

    socket = EmulatedSocket(1500.0).start()
    server = RunningServer({"box": SocketConfig("box", socket.address)}, port=free_port(), poll_interval=0.2,
                           token=TOKEN, admin_token=ADMIN, state_dir=str(tmp_path / "state"))
    store = server.service.store
    assert store is not None
    writable = StateStore._connect

    def read_only(self: StateStore) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)

    def inject() -> None:
        monkeypatch.setattr(StateStore, "_connect", read_only)
        with store._lock:
            store._reset()  # the next write opens the (now read-only) state

    def heal() -> None:
        monkeypatch.setattr(StateStore, "_connect", writable)

    def call(method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, server.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def open_ids() -> list[str]:
        return sorted(s["session_id"] for s in server.service.sessions(with_ids=True))

    def stored_ids() -> list[str]:
        return sorted(row["session_id"] for row in store.sessions())

    server.start()
    try:
        check_fault(Served(call, open_ids, stored_ids), inject, heal, 1500.0)
    finally:
        server.stop()
        socket.close()
