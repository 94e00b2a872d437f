"""LET 0.1.x code runs unchanged: the original LET 0.1.4 project's own tests, run against LET.

The tests come from 0.1.4's sdist (``bench/let014.py`` fetches it beside the 0.1.4 venv; its
code is never copied into this repository). They are copied into a tmp dir and run by pytest in
a fresh process whose ``lamarr_energy_tracker`` is this checkout's facade. They patch what 0.1.x
code patches (``requests.get``, ``GroundTruthTracker.is_available`` and ``send_command``,
``socket.gethostname``, ``builtins.open``): a facade that goes around one of them talks to a
real address, and its test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench import let014

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(let014.missing() is not None, reason=str(let014.missing()))


def run_suite(tmp_path: Path) -> dict[str, str]:
    """Each 0.1.4 test's outcome ("passed", or the failure's message), by test id."""
    suite = tmp_path / "let014_tests"
    shutil.copytree(let014.sdist_tests(), suite)
    report = tmp_path / "junit.xml"
    home = tmp_path / "home014"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LET_")}
    env.update(PYTHONPATH=str(ROOT), HOME=str(home), LET_HOME=str(tmp_path / "let_home"), LET_LOAD_PLUGINS="",
               TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                           f"--junitxml={report}", str(suite)],
                          cwd=suite, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        outcomes[name] = "passed" if problem is None else f"{problem.tag}: {(problem.get('message') or '')[:300]}"
    return outcomes


def test_every_original_014_test_passes_against_let(tmp_path: Path) -> None:
    outcomes = run_suite(tmp_path)
    # 0.1.4's sdist holds 20 tests in four files; all 20 pass on 0.1.4 itself
    assert len(outcomes) == 20, sorted(outcomes)
    failed = {name: why for name, why in outcomes.items() if why != "passed"}
    assert not failed, failed
    # nothing of the run landed beside the tests but what pytest itself writes
    assert not list((tmp_path / "let014_tests").glob("*.csv"))
