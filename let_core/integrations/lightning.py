"""PyTorch Lightning: ``Trainer(callbacks=[LetLightningCallback(project_name="paper")])``.

One LET run per ``trainer.fit()``, a task per training epoch ("epoch 1", ...) and per
validation ("validation 1", ...; the sanity check is not one), the logged validation metrics
(``val_loss``, ...) in the run and in each validation's task row, the statement at the end.

In DDP every rank records its own run (each measures its own process and devices), and all
ranks of one ``fit()`` share a job id that rank 0 draws and broadcasts, so `lett results --by
job` and the statement count the job once, as they do for torchrun or SLURM jobs.
"""

from __future__ import annotations

import uuid
from typing import Any

try:  # the `lightning` package, else the older standalone `pytorch_lightning`
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    from pytorch_lightning import Callback  # type: ignore[no-redef]

from let_core.integrations._session import SessionCallback


class LetLightningCallback(SessionCallback, Callback):  # type: ignore[misc]
    """Track a Lightning ``fit()`` with LET. Takes ``EnergyTracker``'s options."""

    def __init__(self, **tracker_options: Any) -> None:
        super().__init__()
        self._open_session("lightning", tracker_options)
        self._validation = 0
        self.job_id = ""


    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._validation = 0
        self.session.start({"framework": "lightning", "model": type(pl_module).__name__,
                            "max_epochs": trainer.max_epochs, "world_size": trainer.world_size})
        if trainer.world_size > 1:
            # Every rank calls broadcast (a collective); rank 0's id wins.
            self.job_id = str(trainer.strategy.broadcast(f"lightning-{uuid.uuid4()}", src=0))
            self.session.set_job(self.job_id, trainer.global_rank)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.session.begin_task(f"epoch {trainer.current_epoch + 1}")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_task(f"epoch {trainer.current_epoch + 1}")

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._validation += 1
            self.session.begin_task(f"validation {self._validation}")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self.session.log_metrics(trainer.callback_metrics)
        self.session.end_task(f"validation {self._validation}")

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.log_metrics(trainer.callback_metrics)
        self.session.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.finish(error=f"{type(exception).__name__}: {exception}")
