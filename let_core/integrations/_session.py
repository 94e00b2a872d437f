"""One tracked training, shared by the framework callbacks: tracker calls that can never raise
into the training loop."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from let_core.errors import ConfigurationError, LetWarning
from let_core.tracker import EnergyTracker

T = TypeVar("T")


def check_options(tracker_options: Mapping[str, Any]) -> None:
    """Unknown EnergyTracker options fail when the callback is built, not after an epoch."""
    import inspect

    try:
        inspect.signature(EnergyTracker).bind(**tracker_options)
    except TypeError as exc:
        raise ConfigurationError(f"LET callback: {exc}; it takes EnergyTracker's options") from None


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers among ``metrics`` (frameworks mix in strings, tensors, epochs)."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "numel", lambda: 1)() == 1:
            value = item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        found[f"{prefix}{key}"] = float(value)
    return found


class TrainingSession:
    """A run around a training: tasks opened and closed by name, metrics, and one rule: any
    failure of LET is a warning, remembered, and the run ends as failed; the training goes on."""

    def __init__(self, framework: str, tracker_options: Mapping[str, Any]) -> None:
        # Options, not a factory function: Lightning's ddp_spawn pickles callbacks to the ranks.
        self.framework = framework
        self.tracker_options = dict(tracker_options)
        self.tracker: EnergyTracker | None = None
        self.tasks: dict[str, Any] = {}
        self.errors: list[str] = []
        self.result: dict[str, Any] | None = None

    def guarded(self, action: str, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except Exception as exc:
            message = f"{action}: {type(exc).__name__}: {exc}"
            self.errors.append(message)
            warnings.warn(f"LET {self.framework} callback could not {message}; training goes on, "
                          "and the run will be recorded as failed.", LetWarning, stacklevel=3)
            return None

    @property
    def running(self) -> bool:
        return self.tracker is not None and self.tracker.running

    def start(self, params: Mapping[str, Any] | None = None) -> None:
        def start() -> None:
            self.tracker = EnergyTracker(**self.tracker_options)
            self.tracker.start()
            if params:
                self.tracker.log_params(params)

        self.result = None
        self.tasks.clear()
        self.errors.clear()
        self.guarded("start tracking", start)

    def begin_task(self, name: str) -> None:
        if not self.running or name in self.tasks:
            return

        def begin() -> None:
            assert self.tracker is not None
            context = self.tracker.task(name)
            context.__enter__()
            self.tasks[name] = context

        self.guarded(f"start task {name!r}", begin)

    def end_task(self, name: str) -> None:
        context = self.tasks.pop(name, None)
        if context is not None:
            self.guarded(f"finish task {name!r}", lambda: context.__exit__(None, None, None))

    def log_metrics(self, metrics: Mapping[str, Any], prefix: str = "") -> None:
        numbers = numeric_metrics(metrics, prefix)
        if self.running and numbers:
            assert self.tracker is not None
            self.guarded("log metrics", lambda: self.tracker.log_metrics(numbers))  # type: ignore[union-attr]

    def set_job(self, job_id: str, rank: int) -> None:
        if self.running:
            assert self.tracker is not None
            self.guarded("record the job", lambda: self.tracker.set_job(job_id, rank))  # type: ignore[union-attr]

    def finish(self, error: str = "") -> dict[str, Any] | None:
        """Close open tasks (innermost first) and stop the run: failed if training or LET failed."""
        for name in reversed(list(self.tasks)):
            self.end_task(name)
        tracker = self.tracker
        if tracker is None or not tracker.running:
            return self.result
        problems = ([error] if error else []) + self.errors
        if problems:
            self.result = self.guarded("stop tracking", lambda: tracker._stop(
                status="failed", error="; ".join(problems)[:2000]))
        else:
            self.result = self.guarded("stop tracking", tracker.stop)
        self.guarded("release the backends", tracker.close)
        return self.result


class SessionCallback:
    """What every framework's callback shares: the tracker options, checked when the callback
    is made (not hours later at the first epoch), and the LET session they drive."""

    tracker_options: dict[str, Any]
    session: TrainingSession

    def _open_session(self, framework: str, tracker_options: dict[str, Any]) -> None:
        tracker_options.setdefault("project_name", "default")
        check_options(tracker_options)
        self.tracker_options = tracker_options
        self.session = TrainingSession(framework, tracker_options)

    @property
    def tracker(self) -> EnergyTracker | None:
        return self.session.tracker

    @property
    def result(self) -> dict[str, Any] | None:
        """What the run's ``stop()`` returned, once training ended."""
        return self.session.result
