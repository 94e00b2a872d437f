"""LetLightningCallback with real PyTorch Lightning on CPU: two epochs, validation each epoch,
and a two-process DDP run recorded as one job."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from let_backends.manual import ManualBackend
from let_core import load_results
from let_core.errors import LetWarning
from let_core.results.counting import aggregate
from let_core.tracker import EnergyTracker

# torch and Lightning load when these tests run, on the one worker that runs them all: every xdist
# worker collects every module, and importing Lightning costs seconds of CPU.
pytestmark = [
    pytest.mark.skipif(not all(importlib.util.find_spec(name) for name in ("torch", "lightning")),
                       reason="torch or lightning is not installed: pip install '.[lightning]' (in the test extra)"),
]


@pytest.fixture(scope="module")
def kit() -> ModuleType:
    """tests.lightning_model: the tiny model, ``fit``, torch and LetLightningCallback."""
    import tests.lightning_model

    return tests.lightning_model


def test_one_run_tasks_per_epoch_and_validation_metrics_and_unchanged_training(
        kit: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    plain, plain_trainer = kit.fit([])
    callback = kit.LetLightningCallback(project_name="pl", backends=[ManualBackend(power_watts=20.0)],
                                    reporters=["csv", "statement"])
    model, trainer = kit.fit([callback])
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert kit.torch.equal(a, b)
    val_loss = float(trainer.callback_metrics["val_loss"])
    assert val_loss == float(plain_trainer.callback_metrics["val_loss"])

    frame = load_results(project_name="pl")
    runs = frame[frame.task == ""]
    assert len(runs) == 1 and runs.run_status.iloc[0] == "ok"
    tasks = frame[frame.task != ""].set_index("task")
    assert sorted(tasks.index) == ["epoch 1", "epoch 2", "validation 1", "validation 2"]  # no sanity check
    assert set(tasks.parent_run_id) == {runs.run_id.iloc[0]}
    assert runs["metrics.val_loss"].iloc[0] == pytest.approx(val_loss)
    assert tasks.loc["validation 2", "metrics.val_loss"] == pytest.approx(val_loss)
    assert tasks.loc["validation 1", "metrics.val_loss"] != tasks.loc["validation 2", "metrics.val_loss"]
    assert runs["params.framework"].iloc[0] == "lightning"
    assert "Using the Machine Learning CO2 Impact Calculator" in capsys.readouterr().out


def test_a_failing_tracker_never_stops_training(kit: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _ = kit.fit([])

    def broken(self: EnergyTracker, metrics: Any) -> None:
        raise OSError("store disk full")

    monkeypatch.setattr(EnergyTracker, "log_metrics", broken)
    callback = kit.LetLightningCallback(project_name="pl-broken", backends=[ManualBackend(power_watts=20.0)],
                                    reporters=["csv"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, _ = kit.fit([callback])
    assert any(issubclass(w.category, LetWarning) for w in caught)
    for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
        assert kit.torch.equal(a, b)
    runs = load_results(project_name="pl-broken").query("task == ''")
    assert list(runs.run_status) == ["failed"] and "store disk full" in runs.error.iloc[0]


def test_an_exception_in_training_is_recorded_as_a_failed_run(kit: ModuleType) -> None:
    class Boom(Exception):
        pass

    class Stop(kit.LetLightningCallback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            super().on_train_epoch_end(trainer, pl_module)
            raise Boom("diverged")

    with pytest.raises(Boom):
        kit.fit([Stop(project_name="pl-boom", backends=[ManualBackend(power_watts=20.0)], reporters=["csv"])])
    runs = load_results(project_name="pl-boom").query("task == ''")
    assert list(runs.run_status) == ["failed"] and "Boom: diverged" in runs.error.iloc[0]


def test_ddp_ranks_are_recorded_as_one_job(kit: ModuleType, tmp_path: Path) -> None:
    callback = kit.LetLightningCallback(project_name="pl-ddp", backends=[ManualBackend(power_watts=20.0)],
                                    reporters=["csv"])
    # Forked ranks: two real processes in one DDP group, as with ddp_spawn, without each
    # importing torch and Lightning anew (17 s instead of 9 s here).
    kit.fit([callback], devices=2, strategy="ddp_fork")
    frame = load_results(project_name="pl-ddp")
    runs = frame[frame.task == ""]
    assert len(runs) == 2 and set(runs.run_status) == {"ok"}
    assert runs.job_id.nunique() == 1 and runs.job_id.iloc[0].startswith("lightning-")
    assert sorted(runs["rank"]) == ["0", "1"]
    jobs = aggregate(frame, "job")
    assert list(jobs.job) == [runs.job_id.iloc[0]]
    # The ranks share one machine-wide figure here: the job counts it once.
    assert jobs.kwh.iloc[0] == pytest.approx(runs.energy_consumed.max())
