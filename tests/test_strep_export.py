"""STREP export read by the real strep package (load_database, scale_and_rate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.cli import cli
from let_core.errors import ConfigurationError
from let_core.results import load_results
from let_core.tracker import EnergyTracker, track_energy
from let_reporters.strep import write_strep


def _evaluate(model: str, energy: float, accuracy: float, loss: float, dataset: str = "imagenet") -> None:
    with EnergyTracker(project_name="zoo", backends=[ManualBackend(energy_kwh=energy, hardware="Xeon 8380")],
                       reporters=["csv"]) as tracker:
        tracker.log_params({"model": model, "task": "infer", "dataset": dataset, "n_samples": 1000})
        tracker.log_metrics({"accuracy": accuracy, "loss": loss})


def test_strep_loads_and_rates_our_export(let_home: Path, tmp_path: Path) -> None:
    from strep.index_scale import load_database, scale_and_rate

    for model, energy, accuracy, loss in (("resnet", 0.2, 0.76, 1.1), ("vit", 0.5, 0.81, 0.9),
                                          ("mobilenet", 0.05, 0.70, 1.3), ("convnext", 0.4, 0.83, 0.8)):
        _evaluate(model, energy, accuracy, loss)
    result = CliRunner().invoke(cli, ["export", "strep", "--project", "zoo", str(tmp_path / "strep")])
    assert result.exit_code == 0, result.output
    meta_file = json.loads((tmp_path / "strep" / "meta_properties.json").read_text())
    assert meta_file["accuracy"]["group"] == "Quality" and meta_file["accuracy"]["maximize"] is True
    assert meta_file["loss"]["maximize"] is False
    assert meta_file["power_draw"] == {"name": "Energy per sample", "unit": "Ws", "group": "Resources",
                                       "maximize": False}
    database, meta = load_database(str(tmp_path / "strep" / "database.pkl"))
    assert sorted(database["model"]) == ["convnext", "mobilenet", "resnet", "vit"]
    assert set(database["environment"]) == {"Xeon 8380"} and set(database["task"]) == {"infer"}
    row = database.set_index("model").loc["vit"]
    assert row["power_draw"] == pytest.approx(0.5 * 3.6e6 / 1000)  # Ws per sample
    rated, meta, defaults, *_ = scale_and_rate(database, meta)
    by_model = rated.set_index("model")
    # The most frugal model gets the best energy index; the most accurate the best accuracy index.
    assert by_model["energy_consumed_index"].idxmax() == "mobilenet"
    assert by_model["accuracy_index"].idxmax() == "convnext"
    assert {"compound_index", "Quality_index", "Resources_index"} <= set(rated.columns)


def test_decorator_metrics_reach_strep(let_home: Path, tmp_path: Path) -> None:
    @track_energy(project_name="deco", backends=[ManualBackend(energy_kwh=0.1)], reporters=["csv"],
                  metrics=lambda result: {"f1": result})
    def evaluate() -> float:
        return 0.66

    evaluate()
    path = write_strep(load_results(project_name="deco"), tmp_path / "s")
    import pandas as pd

    database = pd.read_pickle(path)
    assert database["f1"].tolist() == [0.66]
    assert database["model"].iloc[0].startswith("deco/")  # no model param: project/run id


def test_project_without_quality_metrics_says_what_to_log(let_home: Path, tmp_path: Path) -> None:
    with EnergyTracker(project_name="bare", backends=[ManualBackend(energy_kwh=0.1)], reporters=["csv"]):
        pass
    with pytest.raises(ConfigurationError, match=r"project bare has no quality metrics.*tracker\.log_metrics"):
        write_strep(load_results(project_name="bare"), tmp_path / "s")
    result = CliRunner().invoke(cli, ["export", "strep", "--project", "bare", str(tmp_path / "s")])
    assert result.exit_code == 1 and "log_metrics({'accuracy'" in result.output


def test_strep_reporter_writes_the_projects_database_after_each_run(let_home: Path, tmp_path: Path) -> None:
    from strep.index_scale import load_database

    out = tmp_path / "out"
    for model, energy in (("a", 0.1), ("b", 0.3)):
        with EnergyTracker(project_name="live", output_dir=str(out), reporters=["strep"],
                           backends=[ManualBackend(energy_kwh=energy, hardware="Xeon")]) as tracker:
            tracker.log_params({"model": model, "task": "infer", "dataset": "d", "n_samples": 10})
            tracker.log_metrics({"accuracy": 0.5 + energy})
    database, _ = load_database(str(let_home / "strep" / "live" / "database.pkl"))
    assert sorted(database["model"]) == ["a", "b"]  # the second run's report saw both runs
    assert database.set_index("model").loc["b", "accuracy"] == pytest.approx(0.8)
    assert sorted(p.name for p in out.iterdir()) == ["emissions.csv"]  # nothing else in output_dir
