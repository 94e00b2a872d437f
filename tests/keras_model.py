"""A tiny Keras 3 model on its torch backend for the callback tests (imported when they run)."""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from let_core.integrations.keras import LetKerasCallback  # noqa: E402

__all__ = ["LetKerasCallback", "fit", "np"]


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
