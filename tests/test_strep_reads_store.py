"""The real ``strep.index_scale.load_database`` reads LET's emissions.csv and ``lett export csv``
output as it reads a CodeCarbon file: one model per (run_id, experiment_id), its energy,
emissions and duration. LET's run status is the ``run_status`` column: a ``status`` column
made STREP take the file for an MLflow run summary and find nothing.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core import EnergyTracker, load_results
from let_core.cli import cli
from let_core.schema import STORE_COLUMNS

strep_index_scale = pytest.importorskip(
    "strep.index_scale", reason="strep is not installed: pip install '.[strep]' (its own extra: strep 0.0.4 "
                                "pins pandas==2.2.3, so the test extra leaves it out)")
DATA = Path(__file__).parent / "data"
ENERGIES = (0.2, 0.5, 0.05)


def _track(folder: Path) -> list[str]:
    run_ids = []
    for index, energy in enumerate(ENERGIES):
        with EnergyTracker("zoo", output_dir=folder,
                           backends=[ManualBackend(energy_kwh=energy, hardware="Xeon 8380")],
                           reporters=["csv"]) as tracker:
            tracker.log_params({"model": f"m{index}", "dataset": "imagenet"})
            tracker.log_metrics({"accuracy": 0.7 + index / 100})
        run_ids.append(tracker.run_id)
    return run_ids


def _energies(database: object) -> dict[str, float]:
    frame = database  # a DataFrame with model, energy_consumed, emissions, duration
    return {str(model).split("_", 1)[0]: float(energy)
            for model, energy in zip(frame["model"], frame["energy_consumed"])}  # type: ignore[index]


def test_strep_reads_the_store_directly(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_ids = _track(store)
    header = (store / "emissions.csv").read_text().splitlines()[0].split(",")
    assert "status" not in header and "run_status" in header
    database, _ = strep_index_scale.load_database(str(store / "emissions.csv"))
    assert len(database) == len(ENERGIES)
    assert _energies(database) == pytest.approx(dict(zip(run_ids, ENERGIES)))
    assert {"duration", "emissions"} <= set(database.columns)
    assert all(model.endswith("_zoo___" + model.split("___", 1)[1]) for model in database["model"])


def test_strep_reads_let_export_csv(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_ids = _track(store)
    exported = tmp_path / "export.csv"
    result = CliRunner().invoke(cli, ["export", "csv", str(exported), "--output-dir", str(store)])
    assert result.exit_code == 0, result.output
    database, _ = strep_index_scale.load_database(str(exported))
    assert _energies(database) == pytest.approx(dict(zip(run_ids, ENERGIES)))
    # nothing lost on the way: the export still says how each run ended
    with open(exported, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["run_status"] for row in rows} == {"ok"}


def test_strep_reads_a_store_holding_merged_codecarbon_files(tmp_path: Path) -> None:
    into = tmp_path / "merged"
    result = CliRunner().invoke(cli, ["merge", str(DATA / "codecarbon" / "cc3.csv"), "--into", str(into)])
    assert result.exit_code == 0, result.output
    database, _ = strep_index_scale.load_database(str(into / "emissions.csv"))
    assert sorted(database["energy_consumed"]) == pytest.approx([0.3, 0.7])


def test_dev_store_status_column_is_renamed(tmp_path: Path) -> None:
    """A store written by LET 1.0's development versions (column ``status``) reads as
    ``run_status``, and the next append renames the column in the file, keeping every value."""
    store = tmp_path / "dev"
    _track(store)
    path = store / "emissions.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace(",run_status,", ",status,")
    path.write_text("\n".join(lines) + "\n")
    frame = load_results(store)
    assert "status" not in frame.columns and set(frame["run_status"]) == {"ok"}
    with EnergyTracker("zoo", output_dir=store, backends=[ManualBackend(energy_kwh=1.0)],
                       reporters=["csv"]) as tracker:
        pass
    header = path.read_text().splitlines()[0].split(",")
    assert header[:len(STORE_COLUMNS)] == list(STORE_COLUMNS) and "status" not in header
    frame = load_results(store)
    assert len(frame) == len(ENERGIES) + 1 and set(frame["run_status"]) == {"ok"}
    assert tracker.run_id in set(frame["run_id"])
    database, _ = strep_index_scale.load_database(str(path))
    assert len(database) == len(ENERGIES) + 1
    shutil.rmtree(store)


def test_strep_reads_every_run_merged_from_codecarbon_files(tmp_path: Path) -> None:
    """CodeCarbon 1.x/2.x files without run_id (or experiment_id): merged rows get stable ids
    (a UUID of what CodeCarbon wrote, and the project___user___hostname form), so STREP's
    CodeCarbon reader sees each run; merging again adds nothing."""
    corpus = sorted((DATA / "codecarbon").glob("cc*.csv"))
    store = tmp_path / "store"
    result = CliRunner().invoke(cli, ["merge", *map(str, corpus), "--into", str(store)])
    assert result.exit_code == 0, result.output
    stored = list(csv.DictReader((store / "emissions.csv").open(newline="")))
    assert stored and all(row["run_id"] and row["experiment_id"] for row in stored)
    database, _ = strep_index_scale.load_database(str(store / "emissions.csv"))
    assert len(database) == len({(row["run_id"], row["experiment_id"]) for row in stored})
    counted = load_results(store, dataset=str(tmp_path / "none"))
    assert database["energy_consumed"].sum() == pytest.approx(counted["energy_consumed"].sum())
    again = CliRunner().invoke(cli, ["merge", *map(str, corpus), "--into", str(store)])
    assert "merged 0 new row(s)" in again.output, again.output
