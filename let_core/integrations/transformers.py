"""Hugging Face Transformers: ``Trainer(..., callbacks=[LetTrainerCallback(project_name="paper")])``.

One LET run per ``trainer.train()``, a task per epoch ("epoch 1", ...) and per evaluation
("evaluation 1", ...), the evaluation metrics (``eval_loss``, ...) logged into the run and into
each evaluation's task row, the final training figures (``train_loss``, ...) at the end, and
the statement printed when training ends. It is an ordinary callback: ``report_to`` (TensorBoard,
MLflow, W&B ...) keeps working as configured.

In a multi-process run (``torchrun``, ``accelerate launch``) every process records its own run;
the launcher's environment (TORCHELASTIC_RUN_ID / SLURM_JOB_ID and RANK) makes them one job.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from let_core.integrations._session import SessionCallback


class LetTrainerCallback(SessionCallback, TrainerCallback):  # type: ignore[misc]
    """Track a Trainer's training with LET. Takes ``EnergyTracker``'s options
    (``project_name=``, ``backends=``, ``output_dir=`` ...)."""

    def __init__(self, **tracker_options: Any) -> None:
        self._open_session("transformers", tracker_options)
        self._epoch = 0
        self._evaluation = 0


    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch = self._evaluation = 0
        model = kwargs.get("model")
        params = {"framework": "transformers", "model": type(model).__name__ if model is not None else "",
                  "num_train_epochs": args.num_train_epochs, "learning_rate": args.learning_rate,
                  "train_batch_size": args.per_device_train_batch_size, "seed": args.seed}
        self.session.start(params)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch += 1
        self.session.begin_task(f"epoch {self._epoch}")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end_task(f"epoch {self._epoch}")

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Transformers has no "evaluation begins" event: the first prediction step opens it.
        if self.session.running and f"evaluation {self._evaluation}" not in self.session.tasks:
            self._evaluation += 1
            self.session.begin_task(f"evaluation {self._evaluation}")

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        # Metrics first, so that the evaluation's own task row carries them too.
        self.session.log_metrics(metrics or {})
        self.session.end_task(f"evaluation {self._evaluation}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        final = next((entry for entry in reversed(state.log_history) if "train_loss" in entry), {})
        self.session.log_metrics({k: v for k, v in final.items() if k.startswith("train_")})
        self.session.finish()

