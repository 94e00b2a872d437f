"""LetKerasCallback with real Keras 3 on its torch backend, on CPU: a tiny model, two epochs."""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras", reason="keras is not installed: pip install '.[keras]' (in the test extra)")
np = pytest.importorskip("numpy", reason="numpy is not installed: pip install '.[keras]' (in the test extra)")

from let_backends.manual import ManualBackend  # noqa: E402
from let_core import load_results  # noqa: E402
from let_core.errors import LetWarning  # noqa: E402
from let_core.integrations.keras import LetKerasCallback  # noqa: E402
from let_core.tracker import EnergyTracker  # noqa: E402


def fit(callbacks: list[Any]) -> tuple[Any, Any]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, batch_size=16, validation_data=(x[:32], y[:32]), shuffle=False,
                        verbose=0, callbacks=callbacks)
    return model, history


def test_one_run_tasks_metrics_and_unchanged_training(capsys: pytest.CaptureFixture[str]) -> None:
    plain, plain_history = fit([])
    callback = LetKerasCallback(project_name="keras", backends=[ManualBackend(power_watts=20.0)],
                                reporters=["csv", "statement"])
    model, history = fit([callback])
    assert history.history == plain_history.history
    for a, b in zip(model.get_weights(), plain.get_weights()):
        assert np.array_equal(a, b)
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


def test_a_failing_tracker_never_stops_training(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, plain_history = fit([])
    monkeypatch.setattr(EnergyTracker, "log_metrics", lambda self, m: (_ for _ in ()).throw(OSError("disk full")))
    callback = LetKerasCallback(project_name="keras-broken", backends=[ManualBackend(power_watts=20.0)],
                                reporters=["csv"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, history = fit([callback])
    assert history.history == plain_history.history
    assert any(issubclass(w.category, LetWarning) for w in caught)
    runs = load_results(project_name="keras-broken").query("task == ''")
    assert list(runs.run_status) == ["failed"] and "disk full" in runs.error.iloc[0]
