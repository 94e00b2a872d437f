"""`lett plot`: a real PNG from matplotlib (Agg), with the estimate-vs-metered panel when both exist."""

from __future__ import annotations

from pathlib import Path

import attrs
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.cli import cli
from let_core.tracker import EnergyTracker


class _Socket:
    name = "socket"

    def __init__(self, kwh: float) -> None:
        self.inner = ManualBackend(energy_kwh=kwh, kind="metered", methodology="Tasmota smart socket")

    def start(self) -> None:
        self.inner.start()

    def stop(self):
        return attrs.evolve(self.inner.stop(), backend=self.name)


def test_plot_writes_png_with_comparison(let_home: Path, tmp_path: Path) -> None:
    for i in range(3):
        with EnergyTracker(project_name="p", reporters=["csv"],
                           backends=[ManualBackend(energy_kwh=0.1 * (i + 1)), _Socket(0.12 * (i + 1))]):
            pass
    out = tmp_path / "energy.png"
    result = CliRunner().invoke(cli, ["plot", "-p", "p", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 estimate/metered pairs (metered = 1.20x estimate)" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[1] > 1000  # two panels side by side


def test_plot_without_runs_is_a_clear_error(let_home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plot", "--project", "none", "--output", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no stored runs match" in result.output
