"""Every test runs hermetically: its own LET_HOME and HOME, no entry-point plugins, no LET_* env."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test modules are compiled by pytest's assertion rewriting, which writes no cached bytecode where
# PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines): each of the six workers then
# compiled every test module anew, 4 of its 7 s of collection. What else a test process imports is
# compiled already (`uv pip install --compile-bytecode`, compileall in .ci/run).
sys.dont_write_bytecode = False

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
