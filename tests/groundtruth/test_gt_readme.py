"""The README's hardware-free recipe (emulated sockets, `lett gt serve`, `lett demo`) runs as written,
including its last line, which stops what it started: no process of it is left afterwards.

It listens on the README's port 8000, so it runs in a network namespace of its own where it can
(nothing else on this machine can hold that port there); else on this machine if 8000 is free."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def recipe() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("**Try it without hardware**")
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, "the README's ground-truth recipe has no bash block"
    return match.group(1)


def _group_members(pgid: int) -> list[str]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(stat.parent.name)
    return members


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# Off a namespace it needs the machine's port 8000 (no other test uses it).
def test_the_readme_recipe_runs_as_written_and_stops_what_it_started(tmp_path: Path) -> None:
    script = recipe()
    assert "kill" in script.splitlines()[-1]  # the recipe ends by stopping its servers
    namespace = f"letgtreadme{os.getpid()}"
    prefix: list[str] = []
    if os.geteuid() == 0 and shutil.which("ip") and subprocess.run(["ip", "netns", "add", namespace],
                                                                      capture_output=True).returncode == 0:
        subprocess.run(["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True)
        prefix = ["ip", "netns", "exec", namespace]
    elif not _port_free(8000):
        pytest.skip("no network namespace can be made here and port 8000 is in use")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LET_GT_")}
    env.update({"LET_HOME": str(tmp_path / "let"), "HOME": str(tmp_path), "LET_LOAD_PLUGINS": "",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)})
    proc = subprocess.Popen([*prefix, "bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=300)
        left = _group_members(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        if prefix:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    assert proc.returncode == 0, out
    assert "host1" in out and "host2" in out  # lett gt hosts
    assert re.search(r"tasmota: .*metered", out), out  # the demo run was metered at the (emulated) wall
    assert left == [], f"the recipe left processes running: {left}\n{out}"
