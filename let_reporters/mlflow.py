"""MLflow reporter: energy, emissions, duration, per-component energy and methodology of each run.

On by default only where MLflow is in use: an active MLflow run in this process (then LET logs
into it) or ``MLFLOW_TRACKING_URI`` set (then LET starts an MLflow run per LET run, in the
experiment named like the project). Checking costs nothing: mlflow, which is slow to import,
is only imported to report, or when the user's code has imported it already.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run

STATEMENT_ARTIFACT = "let/statement.tex"
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def _key(*parts: str) -> str:
    return ".".join(_UNSAFE.sub("_", part) for part in parts if part)


def _active_run_id() -> str | None:
    module = sys.modules.get("mlflow")
    if module is None:
        return None
    active = module.active_run()
    return active.info.run_id if active is not None else None


class MlflowReporter:
    name: ClassVar[str] = "mlflow"
    auto: ClassVar[bool] = True
    order: ClassVar[int] = 70  # after the central store: the statement artifact includes this run
    description: ClassVar[str] = "logs energy metrics and the statement to the active (or a new) MLflow run"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        if importlib.util.find_spec("mlflow") is None:
            return Availability.no("needs mlflow: pip install 'lamarr-energy-tracker[mlflow]'")
        if os.environ.get("MLFLOW_TRACKING_URI") or _active_run_id() or settings.options.get("mlflow"):
            return Availability.yes()
        return Availability.no("MLflow is not in use here: start an MLflow run (mlflow.start_run()) "
                               "or set MLFLOW_TRACKING_URI")

    @classmethod
    def from_settings(cls, settings: Settings) -> MlflowReporter:
        return cls(settings)

    def metrics(self, run: Run) -> dict[str, float]:
        prefix = ("let", "task", run.task) if run.task else ("let",)
        energy = run.energy_kwh
        values: dict[str, float] = {
            _key(*prefix, "energy_kwh"): energy,
            _key(*prefix, "emissions_kg"): run.emissions_kg(energy),
            _key(*prefix, "duration_s"): run.duration_s,
            _key(*prefix, "carbon_intensity"): run.carbon_intensity,
        }
        for m in run.measurements:
            values[_key(*prefix, m.backend, "energy_kwh")] = m.energy_kwh
            for component, kwh in (("cpu", m.cpu_kwh), ("gpu", m.gpu_kwh), ("ram", m.ram_kwh)):
                if kwh is not None:
                    values[_key(*prefix, m.backend, f"{component}_kwh")] = kwh
        return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}

    def tags(self, run: Run) -> dict[str, str]:
        prefix = ("let", "task", run.task) if run.task else ("let",)
        tags = {
            _key(*prefix, "run_id"): run.run_id,
            _key(*prefix, "methodology"): " + ".join(m.methodology for m in run.primary) or "none",
            _key(*prefix, "kind"): ",".join(sorted({m.kind for m in run.primary})) or "none",
            _key(*prefix, "status"): run.status,
        }
        for m in run.measurements:
            if m.hardware:
                tags[_key(*prefix, m.backend, "hardware")] = m.hardware
            if m.error:
                tags[_key(*prefix, m.backend, "error")] = m.error[:5000]
        return tags

    def report(self, run: Run, results: Any = None) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        target = _active_run_id()
        started = False
        if target is None:
            experiment = client.get_experiment_by_name(run.project_name)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else client.create_experiment(run.project_name))
            target = client.create_run(experiment_id, run_name=f"let-{run.run_id[:8]}",
                                       tags={"let.project": run.project_name}).info.run_id
            started = True
        from mlflow.entities import Metric, RunTag

        timestamp = int(run.end_time.timestamp() * 1000)
        client.log_batch(target, metrics=[Metric(k, v, timestamp, 0) for k, v in self.metrics(run).items()],
                         tags=[RunTag(k, v) for k, v in self.tags(run).items()])
        if not run.task:
            statement = self._statement(run, results)
            if statement:
                client.log_text(target, statement, STATEMENT_ARTIFACT)
        if started:
            client.set_terminated(target, status="FINISHED" if run.status == "ok" else "FAILED")

    def _statement(self, run: Run, results: Any = None) -> str:
        from let_core.results.loading import ResultsHandle
        from let_core.statement import statement_from_totals

        results = results or ResultsHandle(self.settings.output_dir, self.settings.output_uri)
        totals = results.totals(project_name=run.project_name, user=run.user, hostname=run.hostname)
        return "" if totals.empty else statement_from_totals(totals) + "\n"


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(MlflowReporter)
