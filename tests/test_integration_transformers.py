"""LetTrainerCallback with a real Transformers Trainer on CPU: a tiny BERT built from a config
(no download), two epochs, evaluation every epoch."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: pip install '.[transformers]' (in the test extra)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed: pip install '.[transformers]' (in the test extra)")
pytest.importorskip("accelerate", reason="accelerate is not installed: pip install '.[transformers]' (in the test extra)")

from let_backends.manual import ManualBackend  # noqa: E402
from let_core import load_results  # noqa: E402
from let_core.errors import ConfigurationError, LetWarning  # noqa: E402
from let_core.integrations.transformers import LetTrainerCallback  # noqa: E402
from let_core.tracker import EnergyTracker  # noqa: E402


class Pairs(torch.utils.data.Dataset):  # type: ignore[misc]
    """Label 1 when token 7 occurs: learnable, fixed by a seed."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 8), generator=generator)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.labels[i]}


def train(tmp_path: Path, callbacks: list[Any]) -> tuple[Any, Any]:
    transformers.set_seed(0)
    config = transformers.BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
        report_to="none", use_cpu=True, seed=0, data_seed=0, disable_tqdm=True, learning_rate=1e-3)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Pairs(32, 1), eval_dataset=Pairs(16, 2),
                                   callbacks=callbacks)
    trainer.train()
    return trainer, model


def test_one_run_tasks_per_epoch_and_evaluation_metrics_and_unchanged_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline, baseline_model = train(tmp_path / "plain", [])
    callback = LetTrainerCallback(project_name="hf", backends=[ManualBackend(power_watts=50.0)],
                                  reporters=["csv", "statement"])
    trainer, model = train(tmp_path / "tracked", [callback])

    # Training is untouched: same losses, same weights; report_to is what it was.
    evals = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    assert evals == [e["eval_loss"] for e in baseline.state.log_history if "eval_loss" in e]
    assert len(evals) == 2
    for a, b in zip(model.state_dict().values(), baseline_model.state_dict().values()):
        assert torch.equal(a, b)
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


def test_a_failing_tracker_warns_and_the_run_is_recorded_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline, baseline_model = train(tmp_path / "plain", [])

    def broken_task(self: EnergyTracker, name: str) -> Any:
        raise OSError("counter device vanished")

    monkeypatch.setattr(EnergyTracker, "task", broken_task)
    callback = LetTrainerCallback(project_name="hf-broken", backends=[ManualBackend(power_watts=50.0)],
                                  reporters=["csv"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, model = train(tmp_path / "tracked", [callback])
    assert any(issubclass(w.category, LetWarning) and "training goes on" in str(w.message) for w in caught)
    for a, b in zip(model.state_dict().values(), baseline_model.state_dict().values()):
        assert torch.equal(a, b)
    frame = load_results(project_name="hf-broken")
    assert len(frame) == 1 and frame.run_status.iloc[0] == "failed"
    assert "counter device vanished" in frame.error.iloc[0]


def test_unknown_tracker_options_fail_when_the_callback_is_built() -> None:
    with pytest.raises(ConfigurationError, match="EnergyTracker's options"):
        LetTrainerCallback(projekt_name="typo")
