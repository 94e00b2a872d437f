"""LetKerasCallback with real Keras 3 on its torch backend, on CPU: a tiny model, two epochs."""

from __future__ import annotations

import importlib.util
import warnings
from types import ModuleType

import pytest

from let_backends.manual import ManualBackend
from let_core import load_results
from let_core.errors import LetWarning
from let_core.tracker import EnergyTracker

# Keras (and torch) load when these tests run, on the one worker that runs them all.
pytestmark = [
    pytest.mark.skipif(not all(importlib.util.find_spec(name) for name in ("keras", "numpy")),
                       reason="keras is not installed: pip install '.[keras]' (in the test extra)"),
]


@pytest.fixture(scope="module")
def kit() -> ModuleType:
    """tests.keras_model: ``fit``, numpy and LetKerasCallback."""
    import tests.keras_model

    return tests.keras_model


def test_one_run_tasks_metrics_and_unchanged_training(kit: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    plain, plain_history = kit.fit([])
    callback = kit.LetKerasCallback(project_name="keras", backends=[ManualBackend(power_watts=20.0)],
                                reporters=["csv", "statement"])
    model, history = kit.fit([callback])
    assert history.history == plain_history.history
    for a, b in zip(model.get_weights(), plain.get_weights()):
        assert kit.np.array_equal(a, b)
    frame = load_results(project_name="keras")
    runs = frame[frame.task == ""]
    assert len(runs) == 1 and runs.run_status.iloc[0] == "ok"
    tasks = frame[frame.task != ""].set_index("task")
    assert sorted(tasks.index) == ["epoch 1", "epoch 2", "validation 1", "validation 2"]
    assert runs["metrics.val_loss"].iloc[0] == pytest.approx(history.history["val_loss"][-1])
    assert runs["metrics.accuracy"].iloc[0] == pytest.approx(history.history["accuracy"][-1])
    assert tasks.loc["validation 1", "metrics.val_loss"] == pytest.approx(history.history["val_loss"][0])
    assert runs["params.backend"].iloc[0] == "torch"
    assert "Using the Machine Learning CO2 Impact Calculator" in capsys.readouterr().out


def test_a_failing_tracker_never_stops_training(kit: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, plain_history = kit.fit([])
    monkeypatch.setattr(EnergyTracker, "log_metrics", lambda self, m: (_ for _ in ()).throw(OSError("disk full")))
    callback = kit.LetKerasCallback(project_name="keras-broken", backends=[ManualBackend(power_watts=20.0)],
                                reporters=["csv"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = kit.fit([callback])
    assert history.history == plain_history.history
    assert any(issubclass(w.category, LetWarning) for w in caught)
    runs = load_results(project_name="keras-broken").query("task == ''")
    assert list(runs.run_status) == ["failed"] and "disk full" in runs.error.iloc[0]
