"""`lett rapl-access` and scripts/rapl_access.sh against a fake powercap tree."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from let_backends import rapl
from tests.fakes.powercap import server_tree

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli() -> click.Group:
    group = click.Group()
    rapl.let_register_commands(cli=group)
    return group


def modes(root: Path) -> list[int]:
    return [stat.S_IMODE(p.stat().st_mode) for p in sorted(root.glob("*:*/energy_uj"))]


def test_without_apply_it_prints_the_commands_and_changes_nothing(cli: click.Group, tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    result = CliRunner().invoke(cli, ["rapl-access", "--root", str(tree.root)])
    assert result.exit_code == 0, result.output
    assert f"sudo chmod a+r {tree.root}/intel-rapl:*/energy_uj" in result.output
    assert "CVE-2020-8694" in result.output and "udev" in result.output
    assert set(modes(tree.root)) == {0o400}


def test_apply_makes_every_counter_readable(cli: click.Group, tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    rule = tmp_path / "rules.d" / "99-let-rapl.rules"
    result = CliRunner().invoke(cli, ["rapl-access", "--apply", "--root", str(tree.root)])
    assert result.exit_code == 0, result.output
    assert "made 7 RAPL counter file(s)" in result.output
    assert set(modes(tree.root)) == {0o444}
    assert not rule.exists()
    result = CliRunner().invoke(cli, ["rapl-access", "--apply", "--persistent", "--root",
                                      str(tree.root), "--udev-rule", str(rule)])
    assert result.exit_code == 0, result.output
    text = rule.read_text()
    assert 'SUBSYSTEM=="powercap"' in text and "chmod a+r /sys%p/energy_uj" in text


def test_apply_without_counters_says_what_to_do(cli: click.Group, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["rapl-access", "--apply", "--root", str(tmp_path)])
    assert result.exit_code != 0 and "modprobe intel_rapl_msr" in result.output
    result = CliRunner().invoke(cli, ["rapl-access", "--persistent", "--root", str(tmp_path)])
    assert result.exit_code != 0 and "--persistent needs --apply" in result.output


def test_the_let_command_line_has_it(tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    result = subprocess.run([sys.executable, "-m", "let_core.cli", "rapl-access", "--apply",
                             "--root", str(tree.root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(modes(tree.root)) == {0o444}


def test_shell_script_is_equivalent(tmp_path: Path) -> None:
    tree = server_tree(tmp_path / "powercap")
    rule = tmp_path / "99-let-rapl.rules"
    script = REPO / "scripts" / "rapl_access.sh"
    result = subprocess.run(["sh", str(script), "--persistent"], capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "LET_RAPL_ROOT": str(tree.root),
                                              "LET_UDEV_RULE": str(rule)})
    assert result.returncode == 0, result.stderr
    assert set(modes(tree.root)) == {0o444}
    assert rule.read_text() == rapl.UDEV_RULE
