"""Keras 3 (any backend): ``model.fit(..., callbacks=[LetKerasCallback(project_name="paper")])``.

One LET run per ``fit()``, a task per epoch ("epoch 1", ...) and per validation pass
("validation 1", ...), the validation metrics (``val_loss``, ...) in the run and in each
validation's task row, the epoch's training metrics (``loss``, ...) in the run, the statement
at the end. Keras has no hook for an exception inside ``fit()``: such a run is left unfinished
(nothing stored), unlike the Lightning callback's.
"""

from __future__ import annotations

from typing import Any

import keras

from let_core.integrations._session import SessionCallback


class LetKerasCallback(SessionCallback, keras.callbacks.Callback):  # type: ignore[misc]
    """Track a Keras ``fit()`` with LET. Takes ``EnergyTracker``'s options."""

    def __init__(self, **tracker_options: Any) -> None:
        super().__init__()
        self._open_session("keras", tracker_options)
        self._epoch = 0
        self._validation = 0
        self._fitting = False


    def on_train_begin(self, logs: Any = None) -> None:
        self._epoch = self._validation = 0
        self._fitting = True
        params = dict(self.params or {})
        self.session.start({"framework": "keras", "backend": keras.backend.backend(),
                            "model": type(self.model).__name__ if self.model is not None else "",
                            "epochs": params.get("epochs", ""), "steps": params.get("steps", "")})

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch + 1
        self.session.begin_task(f"epoch {self._epoch}")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.session.log_metrics(logs or {})
        self.session.end_task(f"epoch {epoch + 1}")

    def on_test_begin(self, logs: Any = None) -> None:
        if self._fitting:  # a validation pass of fit(); evaluate() outside fit is not tracked
            self._validation += 1
            self.session.begin_task(f"validation {self._validation}")

    def on_test_end(self, logs: Any = None) -> None:
        if self._fitting:
            self.session.log_metrics(logs or {}, prefix="val_")
            self.session.end_task(f"validation {self._validation}")

    def on_train_end(self, logs: Any = None) -> None:
        self._fitting = False
        self.session.finish()
