"""A shared store stays the owner's: anyone who may write the store's folder can plant files
there. LET folds back only the owner's regular emissions files, follows no symlink it did not
create, and never blocks on a FIFO or device: every command ends with an error naming the path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core import EnergyTracker, load_results
from let_core.cli import cli
from let_core.errors import LetWarning
from let_core.store import STORE_FILE

REPO = Path(__file__).resolve().parent.parent
#: Generous: a command that blocks on a FIFO never ends; one that works ends in seconds.
NO_HANG_S = 120


def _run(folder: Path, energy: float = 0.1) -> None:
    with EnergyTracker(project_name="p", output_dir=folder, reporters=[],
                       backends=[ManualBackend(energy_kwh=energy)]):
        pass


def _emissions_file(path: Path, energy: float) -> None:
    path.write_text("timestamp,project_name,run_id,duration,emissions,energy_consumed\n"
                    f"2025-01-01T00:00:00,secret,planted-{energy},1,0.1,{energy}\n")


def _fold(folder: Path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(folder)
    return [str(w.message) for w in caught if issubclass(w.category, LetWarning)]


def test_a_symlinked_bak_is_not_folded_and_is_said(tmp_path):
    folder = tmp_path / "shared"
    _run(folder)
    private = tmp_path / "owner-key.csv"
    _emissions_file(private, 5.0)  # even an emissions-shaped private file
    private.chmod(0o600)
    (folder / f"{STORE_FILE}.bak").symlink_to(private)
    said = _fold(folder)
    assert any("not folded" in m and "symbolic link" in m for m in said), said
    assert "planted" not in (folder / STORE_FILE).read_text()
    result = CliRunner().invoke(cli, ["doctor", "--output-dir", str(folder)])
    assert result.exit_code == 1 and "symbolic link" in result.output and "no problems" not in result.output


def test_a_bak_that_is_no_emissions_file_is_not_folded(tmp_path):
    folder = tmp_path / "shared"
    _run(folder)
    header = (folder / STORE_FILE).read_text().split("\n", 1)[0]
    (folder / f"{STORE_FILE}.bak").write_text("name,age\nalice,31\nbob,42\n")
    said = _fold(folder)
    assert any("not folded" in m and "not an emissions file" in m for m in said), said
    assert (folder / STORE_FILE).read_text().split("\n", 1)[0] == header
    assert "alice" not in (folder / STORE_FILE).read_text()
    assert len(load_results(folder, dataset=str(tmp_path / "none"))) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root (chown)")
def test_a_co_workers_bak_is_not_folded(tmp_path):
    folder = tmp_path / "shared"
    _run(folder)
    planted = folder / f"{STORE_FILE}.bak"
    _emissions_file(planted, 7.0)
    os.chown(planted, 65534, 65534)
    said = _fold(folder)
    assert any("not folded" in m and "user id 65534" in m for m in said), said
    assert "planted" not in (folder / STORE_FILE).read_text()
    # the doctor says the same (it said "--repair or the next append puts them back"), and
    # --repair refuses it too
    for args in (["doctor"], ["doctor", "--repair"]):
        result = CliRunner().invoke(cli, [*args, "--output-dir", str(folder)])
        assert result.exit_code == 1 and "belongs to user id 65534" in result.output, result.output
        assert "puts them back" not in result.output
    assert "planted" not in (folder / STORE_FILE).read_text()


def test_the_owners_own_bak_is_folded_and_said(tmp_path):
    folder = tmp_path / "shared"
    _run(folder)
    _emissions_file(folder / f"{STORE_FILE}.bak", 0.3)
    said = _fold(folder)
    assert any("put back 1 row(s) (1 from emissions.csv.bak" in m for m in said), said


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "let_core", *args], capture_output=True, text=True,
                          timeout=NO_HANG_S, env=env, stdin=subprocess.DEVNULL)


COMMANDS = {
    "results": ["results"],
    "results --by job": ["results", "--by", "job"],
    "statement": ["statement"],
    "cite": ["cite"],
    "doctor": ["doctor"],
    "doctor --repair": ["doctor", "--repair"],
    "delete": ["delete", "--yes"],
    "export csv": ["export", "csv", "{tmp}/out.csv"],
    "plot": ["plot", "--output", "{tmp}/plot.png"],
    "calibration fit": ["calibration", "fit"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_fifo_store_is_an_error_naming_it_in_every_command(tmp_path, name):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.mkfifo(folder / STORE_FILE)
    args = [arg.format(tmp=tmp_path) for arg in COMMANDS[name]]
    done = _cli(*args, "--output-dir", str(folder))  # subprocess.TimeoutExpired: a hang
    assert done.returncode != 0, done.stdout
    output = done.stdout + done.stderr
    assert f"{folder / STORE_FILE} is a FIFO" in output, output
    assert "Traceback" not in output and "no problems" not in output


def test_a_tracked_command_over_a_fifo_store_ends_and_keeps_its_run(tmp_path):
    """`lett run` (and any tracked run) cannot append to a FIFO: it says so, and the run goes
    to the rescue file that `lett doctor --repair` puts back once the store is a file again."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.mkfifo(folder / STORE_FILE)
    done = _cli("run", "--output-dir", str(folder), "--project", "p", "--", sys.executable, "-c", "pass")
    output = done.stdout + done.stderr
    assert f"{folder / STORE_FILE} is a FIFO" in output and "lett doctor --repair" in output, output
    assert "Traceback" not in output
    (folder / STORE_FILE).unlink()
    repaired = _cli("doctor", "--repair", "--output-dir", str(folder))
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert len(load_results(folder, dataset=str(tmp_path / "none"))) == 1


def test_merge_into_a_fifo_store_and_of_a_link_to_dev_zero_end_with_errors(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.mkfifo(folder / STORE_FILE)
    source = tmp_path / "colleague.csv"
    _emissions_file(source, 0.2)
    done = _cli("merge", str(source), "--into", str(folder))
    assert done.returncode != 0 and "is a FIFO" in done.stdout + done.stderr, done.stdout + done.stderr
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    done = _cli("merge", str(zero), "--into", str(tmp_path / "mine"))
    assert done.returncode != 0, done.stdout
    assert f"{zero} is a character device" in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_store_that_is_a_symlink_is_not_followed(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.csv"
    _emissions_file(elsewhere, 0.4)
    (folder / STORE_FILE).symlink_to(elsewhere)
    done = _cli("results", "--output-dir", str(folder))
    assert done.returncode != 0 and "is a symbolic link" in done.stdout + done.stderr


def test_ui_answers_while_the_store_is_a_fifo_and_recovers(tmp_path):
    from fastapi.testclient import TestClient

    from let_core.ui.app import create_app
    from let_core.ui.data import Dashboard

    folder = tmp_path / "shared"
    _run(folder)
    path = folder / STORE_FILE
    good = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    client = TestClient(create_app(Dashboard(folder)), raise_server_exceptions=False, base_url="http://localhost")
    answers: list[int] = []

    def ask() -> None:
        answers.extend(client.get(p).status_code for p in ("/api/runs", "/api/summary", "/api/statement"))

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(NO_HANG_S)
    assert not asking.is_alive(), "a request hung on the FIFO store"
    assert answers == [503, 503, 503]
    assert "is a FIFO" in client.get("/api/runs").json()["detail"]
    path.unlink()
    path.write_bytes(good)
    assert client.get("/api/runs").json()["total"] == 1


def test_a_running_lett_ui_answers_errors_on_a_fifo_store_and_recovers(tmp_path):
    """The real server: every request ends with a 503 naming the FIFO (none hangs, however many
    ask at once), and once the store is a file again every page answers with its rows."""
    pytest.importorskip("fastapi", reason="`lett ui` needs the server extra")
    import http.client
    import json
    import signal
    from concurrent.futures import ThreadPoolExecutor
    from unittest.mock import ANY

    from tests.loopback import free_port, wait_until

    folder = tmp_path / "shared"
    _run(folder)
    path = folder / STORE_FILE
    good = path.read_bytes()
    port = free_port()
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([sys.executable, "-m", "let_core", "ui", "--output-dir", str(folder), "--port", str(port)],
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)

    def get(page: str) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=NO_HANG_S)  # a hang: TimeoutError
        try:
            conn.request("GET", page)
            answer = conn.getresponse()
            body = answer.read()
            return answer.status, (json.loads(body) if answer.getheader("content-type") == "application/json" else {})
        finally:
            conn.close()

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return get("/api/runs")[0] == 200
        except OSError:
            return False

    pages = ["/api/runs", "/api/summary", "/api/statement", "/api/choices", "/"] * 4
    try:
        wait_until(up, what="lett ui to answer")
        path.unlink()
        os.mkfifo(path)
        with ThreadPoolExecutor(len(pages)) as pool:
            answers = list(pool.map(get, pages))
        assert [status for status, _ in answers] == [503, 503, 503, 503, 200] * 4, answers
        assert all(f"{path} is a FIFO" in body["detail"] for _, body in answers if body), answers[0]
        # no calibration stored: that page needs no store, and answers as before
        assert get("/api/calibration") == (200, {"hosts": [], "ignored": [], "directory": ANY})
        path.unlink()
        path.write_bytes(good)
        with ThreadPoolExecutor(len(pages)) as pool:
            answers = list(pool.map(get, pages))
        assert [status for status, _ in answers] == [200] * len(pages), answers
        assert answers[0][1]["total"] == 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
