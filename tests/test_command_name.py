"""The primary console script reaches LET when typed in a shell; `let` (a bash builtin) is an alias."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from let_core.cli import COMMAND_NAME

ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash")


def _scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_pyproject_declares_the_command_and_the_alias() -> None:
    scripts = _scripts()
    assert scripts[COMMAND_NAME] == "let_core.cli:main"
    assert scripts["let"] == scripts[COMMAND_NAME]


@pytest.mark.skipif(BASH is None, reason="bash is not installed, so its builtins cannot be listed")
def test_typed_in_bash_the_command_is_a_program_and_let_is_not(tmp_path: Path) -> None:
    # A program of each name on PATH, as a venv's bin folder holds them; bash decides which wins.
    for name in (COMMAND_NAME, "let"):
        script = tmp_path / name
        script.write_text("#!/bin/sh\necho reached\n")
        script.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    builtins = subprocess.run([BASH, "-c", "compgen -b"], capture_output=True, text=True, env=env,
                              check=True).stdout.split()
    assert "let" in builtins  # the reason for the rename, checked on the real shell
    assert COMMAND_NAME not in builtins
    kinds = subprocess.run([BASH, "-c", f"type -t {COMMAND_NAME}; type -t let"], capture_output=True,
                           text=True, env=env, check=True).stdout.split()
    assert kinds == ["file", "builtin"]
    reached = subprocess.run([BASH, "-c", f"{COMMAND_NAME} demo"], capture_output=True, text=True, env=env)
    assert reached.stdout.strip() == "reached"


def test_help_and_version_name_the_command() -> None:
    out = subprocess.run([sys.executable, "-m", "let_core", "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.startswith(f"Usage: {COMMAND_NAME} ")
    version = subprocess.run([sys.executable, "-m", "let_core", "--version"], capture_output=True,
                             text=True, check=True, cwd=ROOT).stdout
    assert version.startswith(f"{COMMAND_NAME}, version")


def test_readme_types_the_command_never_the_builtin() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    # A line of a shell block that runs `let ...` (also after `VAR=x` or `&&`) hits the builtin.
    typed_let = [line for line in lines if re.search(r"(^|&&\s*|;\s*|^(\w+=\S+\s+)+)let\s", line)]
    assert typed_let == []
    assert any(re.search(rf"(^|\s|/){COMMAND_NAME} demo\b", line) for line in lines)
    inline = re.findall(r"`(let [a-z-]+)[^`]*`", readme)
    assert inline == []
    assert len(re.findall(rf"`{COMMAND_NAME} [a-z-]+", readme)) > 20
