"""LetTrainerCallback with a real Transformers Trainer on CPU: a tiny BERT built from a config
(no download), two epochs, evaluation every epoch."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from let_backends.manual import ManualBackend
from let_core import load_results
from let_core.errors import ConfigurationError, LetWarning
from let_core.tracker import EnergyTracker

# torch and Transformers load when these tests run, on the one worker that runs them all.
pytestmark = [
    pytest.mark.skipif(not all(importlib.util.find_spec(name) for name in ("torch", "transformers", "accelerate")),
                       reason="torch, transformers or accelerate is not installed: pip install '.[transformers]' "
                              "(in the test extra)"),
]


@pytest.fixture(scope="module")
def kit() -> ModuleType:
    """tests.transformers_model: ``train``, torch and LetTrainerCallback."""
    import tests.transformers_model

    return tests.transformers_model


def test_one_run_tasks_per_epoch_and_evaluation_metrics_and_unchanged_training(
        kit: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline, baseline_model = kit.train(tmp_path / "plain", [])
    callback = kit.LetTrainerCallback(project_name="hf", backends=[ManualBackend(power_watts=50.0)],
                                  reporters=["csv", "statement"])
    trainer, model = kit.train(tmp_path / "tracked", [callback])

    # Training is untouched: same losses, same weights; report_to is what it was.
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    assert evals == [e["eval_loss"] for e in baseline.state.log_history if "eval_loss" in e]
    assert len(evals) == 2
    for a, b in zip(model.state_dict().values(), baseline_model.state_dict().values()):
        assert kit.torch.equal(a, b)
    assert trainer.args.report_to == baseline.args.report_to

    frame = load_results(project_name="hf")
    runs = frame[frame.task == ""]
    assert len(runs) == 1 and runs.run_status.iloc[0] == "ok"
    run_id = runs.run_id.iloc[0]
    tasks = frame[frame.task != ""]
    assert sorted(tasks.task) == ["epoch 1", "epoch 2", "evaluation 1", "evaluation 2"]
    assert set(tasks.parent_run_id) == {run_id} and set(tasks.run_status) == {"ok"}
    # The run ends with the last evaluation's metrics and the training's own figures.
    assert runs["metrics.eval_loss"].iloc[0] == pytest.approx(evals[-1])
    assert math.isfinite(runs["metrics.train_loss"].iloc[0])
    by_task = tasks.set_index("task")
    assert by_task.loc["evaluation 1", "metrics.eval_loss"] == pytest.approx(evals[0])
    assert by_task.loc["evaluation 2", "metrics.eval_loss"] == pytest.approx(evals[1])
    assert runs["params.framework"].iloc[0] == "transformers"
    # Parts of the run: every task's energy lies within the run's.
    assert by_task.energy_consumed.max() <= runs.energy_consumed.iloc[0]
    assert "Using the Machine Learning CO2 Impact Calculator" in capsys.readouterr().out
    assert callback.result is not None and callback.result["run_id"] == run_id


def test_a_failing_tracker_warns_and_the_run_is_recorded_failed(kit: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline, baseline_model = kit.train(tmp_path / "plain", [])

    def broken_task(self: EnergyTracker, name: str) -> Any:
        raise OSError("counter device vanished")

    monkeypatch.setattr(EnergyTracker, "task", broken_task)
    callback = kit.LetTrainerCallback(project_name="hf-broken", backends=[ManualBackend(power_watts=50.0)],
                                  reporters=["csv"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, model = kit.train(tmp_path / "tracked", [callback])
    assert any(issubclass(w.category, LetWarning) and "training goes on" in str(w.message) for w in caught)
    for a, b in zip(model.state_dict().values(), baseline_model.state_dict().values()):
        assert kit.torch.equal(a, b)
    frame = load_results(project_name="hf-broken")
    assert len(frame) == 1 and frame.run_status.iloc[0] == "failed"
    assert "counter device vanished" in frame.error.iloc[0]


def test_unknown_tracker_options_fail_when_the_callback_is_built(kit: ModuleType) -> None:
    with pytest.raises(ConfigurationError, match="EnergyTracker's options"):
        kit.LetTrainerCallback(projekt_name="typo")
