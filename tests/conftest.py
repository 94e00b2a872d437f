"""Every test runs hermetically: its own LET_HOME and HOME, no entry-point plugins, no LET_* env."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

_LET_ENV = ("LET_BACKENDS", "LET_REPORTERS", "LET_GT_HOST", "LET_GT_PORT", "LET_GT_TOKEN",
            "LET_GT_HOSTNAME", "LET_GT_ADMIN_TOKEN", "LET_GT_CA_BUNDLE", "LET_GT_TIMEOUT",
            "LET_GT_HEARTBEAT_S", "LET_LOG_LEVEL", "LET_HOSTNAME", "CUDA_VISIBLE_DEVICES",
            "SLURM_JOB_ID", "SLURM_PROCID", "TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK",
            "MLFLOW_TRACKING_URI", "LET_RUNTIME_DIR", "XDG_RUNTIME_DIR", "LET_LIVE_INTERVAL")


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    let_home = tmp_path / "let_home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LET_HOME", str(let_home))
    monkeypatch.setenv("LET_LOAD_PLUGINS", "")
    for name in _LET_ENV:
        monkeypatch.delenv(name, raising=False)
    return let_home


@pytest.fixture
def let_home(hermetic: Path) -> Path:
    return hermetic


def _holds_a_module_resource(item: pytest.Item) -> bool:
    """Whether the test uses a module-scoped fixture that yields: one that starts something (a
    server process, Chromium) and stops it afterwards. Fixtures that only return data are cheap
    to build again on another worker."""
    info = getattr(item, "_fixtureinfo", None)  # pytest keeps each test's fixture definitions only here
    return info is not None and any(defs and defs[-1].scope in ("module", "package")
                                    and inspect.isgeneratorfunction(defs[-1].func)
                                    for defs in info.name2fixturedefs.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "slurm" in getattr(item, "fixturenames", ()):
            # The single-node Slurm has two CPUs: jobs of parallel workers would queue behind each
            # other past the tests' timeouts, so every test that submits to it runs on one worker.
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif item.get_closest_marker("xdist_group") is None and _holds_a_module_resource(item):
            # A module-scoped fixture is set up once per worker that runs one of its tests: the
            # tests sharing a server process or Chromium run on one worker, so it starts once.
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
