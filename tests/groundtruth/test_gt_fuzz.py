"""Every route of a real ground-truth server process, fuzzed with Hypothesis: whatever the method,
path parameters, query, headers and body, the answer is a 4xx/2xx JSON document in bounded time,
never a 5xx and never a hang (each request has a 20 s deadline; a hang fails the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from let_groundtruth.emulator import EmulatedSocket
from tests.loopback import free_port, wait_until

TOKEN = "fuzz-token"
ADMIN = "fuzz-admin"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    emu = EmulatedSocket(700.0).start()
    config = tmp / "gt.json"
    config.write_text(json.dumps({"fz": emu.address}))
    port = free_port()
    env = {**os.environ, "LET_LOAD_PLUGINS": "", "LET_GT_TOKEN": TOKEN, "LET_GT_ADMIN_TOKEN": ADMIN,
           "LET_HOME": str(tmp / "let")}
    proc = subprocess.Popen([sys.executable, "-m", "let_core", "gt", "serve", "--config", str(config),
                             "--host", "127.0.0.1", "--port", str(port), "--poll-interval", "0.2",
                             "--max-sessions-per-client", "50"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "server exited")
        try:
            return requests.get(url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, what="the server")
        schema = requests.get(url + "/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
        routes = [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]
        yield url, routes
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        emu.close()


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
params = st.one_of(st.sampled_from(["fz", "0" * 32, "a" * 32, "nohost", "..", "%2e%2e", "fz/stop"]), texts)
bodies = st.one_of(st.none(), st.binary(max_size=300),
                   st.dictionaries(st.sampled_from(["label", "x", ""]),
                                   st.one_of(texts, st.integers(), st.none(), st.lists(st.integers(), max_size=3)),
                                   max_size=3).map(lambda d: json.dumps(d).encode()))
auths = st.sampled_from([f"Bearer {TOKEN}", f"Bearer {ADMIN}", "Bearer wrong", "", "Basic abc", "Bearer"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_route_answers_5xx_or_hangs(server: tuple[str, list[tuple[str, str]]], data: Any) -> None:
    url, routes = server
    method, template = data.draw(st.sampled_from(routes + [("PUT", "/list"), ("PATCH", "/sessions/{session_id}"),
                                                           ("GET", "/{x}/{y}/{z}")]))
    path = template
    while "{" in path:
        name = path[path.index("{"):path.index("}") + 1]
        path = path.replace(name, quote(data.draw(params), safe=""), 1)
    query = data.draw(st.dictionaries(st.sampled_from(["host", "x", "label"]), params, max_size=2))
    body = data.draw(bodies)
    headers = {"Content-Type": data.draw(st.sampled_from(["application/json", "text/plain", ""]))}
    auth = data.draw(auths)
    if auth:
        headers["Authorization"] = auth
    # the timeout is the hang check: a request not answered within it raises
    r = requests.request(method, url + path, params=query, data=body, headers=headers, timeout=20)
    assert r.status_code < 500, (method, path, query, body, r.status_code, r.text[:300])
    if r.status_code >= 400 and r.status_code != 405:
        assert "error" in r.json() or "detail" in r.json(), r.text[:200]
    if r.status_code == 201:  # a session started: stop it, so the client cap is not the only answer
        requests.post(f"{url}/sessions/{r.json()['session_id']}/stop", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=20)
