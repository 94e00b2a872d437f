"""Callbacks that track training with LET: one run per training, one task per epoch and per
evaluation, evaluation metrics logged into the run, the statement at the end.

- ``let_core.integrations.transformers.LetTrainerCallback`` (extra ``transformers``)
- ``let_core.integrations.lightning.LetLightningCallback`` (extra ``lightning``)
- ``let_core.integrations.keras.LetKerasCallback`` (extra ``keras``, Keras 3, any backend)

Each module imports its framework; this package imports nothing heavy. A tracker that fails
never stops the training: a warning, and the run is recorded as failed.
"""
