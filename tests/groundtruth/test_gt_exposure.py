"""Safe defaults on a lab network (issue 20), seen from another machine: a network namespace of the
test's own, joined to this one by a veth pair with a second address (10.x.y.1 here, 10.x.y.2 there).
A default `lett gt serve` (no token) is not reachable from there; with --host 0.0.0.0 it is, and only
with the token it generated and printed; --no-token serves without one and warns."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from let_groundtruth.emulator import EmulatedSocket
from tests.loopback import free_port, wait_until


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class OtherMachine:
    """A network namespace with its own address on a veth link to this one."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.ns = f"letgt{tag}"
        self.here_if, self.there_if = f"lgt{tag}a", f"lgt{tag}b"
        subnet = f"10.{200 + tag % 50}.{tag % 250}"
        self.here, self.there = f"{subnet}.1", f"{subnet}.2"
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.here_if, "type", "veth", "peer", "name", self.there_if)
            _ip("link", "set", self.there_if, "netns", self.ns)
            _ip("addr", "add", f"{self.here}/30", "dev", self.here_if)
            _ip("link", "set", self.here_if, "up")
            _ip("netns", "exec", self.ns, "ip", "addr", "add", f"{self.there}/30", "dev", self.there_if)
            _ip("netns", "exec", self.ns, "ip", "link", "set", self.there_if, "up")
            _ip("netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def get(self, url: str, token: str = "") -> int | str:
        """GET from the other namespace: the HTTP status, or the connection error's name."""
        script = ("import sys, urllib.request, urllib.error\n"
                  "req = urllib.request.Request(sys.argv[1])\n"
                  "if sys.argv[2]: req.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
                  "try:\n    print(urllib.request.urlopen(req, timeout=5).status)\n"
                  "except urllib.error.HTTPError as e:\n    print(e.code)\n"
                  "except OSError as e:\n    print(type(getattr(e, 'reason', e)).__name__)\n")
        out = _ip("netns", "exec", self.ns, sys.executable, "-c", script, url, token)
        text = out.stdout.strip()
        return int(text) if text.isdigit() else text

    def close(self) -> None:
        _ip("link", "del", self.here_if, check=False)
        _ip("netns", "del", self.ns, check=False)


def _why_no_netns() -> str:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = _ip("netns", "add", f"letgtprobe{os.getpid()}", check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()}"
    _ip("netns", "del", f"letgtprobe{os.getpid()}", check=False)
    return ""


@pytest.fixture(scope="module")
def other() -> Iterator[OtherMachine]:
    why = _why_no_netns()
    if why:
        pytest.skip(why)
    machine = OtherMachine()
    try:
        yield machine
    finally:
        machine.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    socket = EmulatedSocket(120.0).start()
    path = tmp_path_factory.mktemp("exposure") / "gt.json"
    path.write_text(json.dumps({"box": socket.address}))
    try:
        yield path
    finally:
        socket.close()


class Serve:
    """`lett gt serve` in a subprocess, its output collected as it comes."""

    def __init__(self, config: Path, state: Path, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LET_GT_")} | {"LET_LOAD_PLUGINS": ""}
        self.proc = subprocess.Popen([sys.executable, "-m", "let_core", "gt", "serve", "--config", str(config),
                                      "--port", str(self.port), "--state-dir", str(state), *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError("server exited: " + "".join(self.lines))
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, what="the ground-truth server")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._reader.join(timeout=5)


def test_default_start_without_a_token_is_loopback_only(other: OtherMachine, config: Path, tmp_path: Path) -> None:
    server = Serve(config, tmp_path / "state")
    try:
        assert other.get(f"http://{other.here}:{server.port}/health") == "ConnectionRefusedError"
        assert requests.get(f"http://127.0.0.1:{server.port}/list", timeout=10).json() == ["box"]
        wait_until(lambda: "loopback only" in server.output, what="the start-up lines")
        assert "--host 0.0.0.0" in server.output  # says how to serve others
    finally:
        server.close()


def test_other_interfaces_get_a_generated_token_that_is_required(other: OtherMachine, config: Path,
                                                                 tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = Serve(config, state, "--host", "0.0.0.0")
    try:
        wait_until(lambda: "lett gt config" in server.output, what="the client's config line")
        line = next(x for x in server.lines if "lett gt config" in x).split()
        token = line[line.index("--token") + 1]
        kept = state / "gt-token"
        assert kept.read_text().strip() == token and stat.S_IMODE(kept.stat().st_mode) == 0o600
        url = f"http://{other.here}:{server.port}"
        assert other.get(url + "/health") == 200  # liveness is open
        assert other.get(url + "/list") == 401
        assert other.get(url + "/list", "wrong-token") == 401
        assert other.get(url + "/list", token) == 200
        assert other.get(url + "/metrics", token) == 200 and other.get(url + "/metrics") == 401
    finally:
        server.close()
    again = Serve(config, state, "--host", "0.0.0.0")  # a restart keeps the token clients were given
    try:
        wait_until(lambda: "lett gt config" in again.output, what="the client's config line")
        assert f"--token {token}" in again.output
    finally:
        again.close()


def test_no_token_on_other_interfaces_needs_the_flag_and_warns(other: OtherMachine, config: Path,
                                                               tmp_path: Path) -> None:
    server = Serve(config, tmp_path / "state", "--host", "0.0.0.0", "--no-token")
    try:
        assert other.get(f"http://{other.here}:{server.port}/list") == 200
        wait_until(lambda: "WARNING" in server.output, what="the warning")
        assert "without a token" in server.output
    finally:
        server.close()
