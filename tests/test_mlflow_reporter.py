"""The MLflow reporter against a real local MLflow tracking store in a tmp folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from let_backends.manual import ManualBackend
from let_core.tracker import EnergyTracker

# mlflow (2 s of imports) loads when these tests run, on the one worker that runs them all.
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                       reason="mlflow is not installed: pip install '.[mlflow]' (its own extra: "
                              "mlflow pins pyarrow<26, so the test extra leaves it out)"),
]


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # A sqlite store puts artifacts in ./mlruns: keep them in the tmp folder, not the checkout.
    monkeypatch.chdir(tmp_path)
    return uri


def _tracker(**kwargs) -> EnergyTracker:
    return EnergyTracker(project_name="paper", carbon_intensity=400,
                         backends=[ManualBackend(energy_kwh=0.5, hardware="Xeon")], **kwargs)


def test_mlflow_is_off_unless_mlflow_is_in_use(let_home: Path) -> None:
    from let_core.plugins import registry

    tracker = _tracker()
    assert all(r.name != "mlflow" for r in tracker.reporters)
    reason = registry().reporters["mlflow"].factory.availability(tracker.settings).reason
    assert "MLFLOW_TRACKING_URI" in reason and "mlflow.start_run()" in reason


def test_new_mlflow_run_per_let_run(let_home: Path, tracking_uri: str) -> None:
    from mlflow.tracking import MlflowClient

    tracker = _tracker()
    assert "mlflow" in [r.name for r in tracker.reporters]
    with tracker:
        pass
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("paper")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    data = runs[0].data
    assert data.metrics["let.energy_kwh"] == pytest.approx(0.5)
    assert data.metrics["let.emissions_kg"] == pytest.approx(0.2)
    assert data.metrics["let.manual.energy_kwh"] == pytest.approx(0.5)
    assert data.tags["let.methodology"] == "a known energy figure"
    assert data.tags["let.run_id"] == tracker.run_id and data.tags["let.kind"] == "estimate"
    assert runs[0].info.status == "FINISHED"
    statement = client.download_artifacts(runs[0].info.run_id, "let/statement.tex")
    text = Path(statement).read_text()
    assert "is estimated to 0.500 kWh" in text and "\\cite{" in text


def test_logs_into_the_active_mlflow_run(let_home: Path, tracking_uri: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    # Environment, not mlflow.set_*: nothing global outlives the test.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "training")
    with mlflow.start_run() as active:
        tracker = _tracker()  # auto: the active run turns the reporter on
        assert "mlflow" in [r.name for r in tracker.reporters]
        with tracker:
            tracker.log_metrics({"accuracy": 0.9})
    run = mlflow.tracking.MlflowClient(tracking_uri).get_run(active.info.run_id)
    assert run.data.metrics["let.energy_kwh"] == pytest.approx(0.5)
    assert run.data.tags["let.run_id"] == tracker.run_id
    assert mlflow.tracking.MlflowClient(tracking_uri).get_experiment_by_name("paper") is None
