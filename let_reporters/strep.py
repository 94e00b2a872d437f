"""STREP export: a database that ``strep.index_scale.load_database`` loads and ``scale_and_rate`` rates.

One row per evaluation (a tracked run): ``model``, ``task``, ``dataset``, ``environment`` (from
``tracker.log_params``; environment defaults to the hardware), the quality metrics logged with
``tracker.log_metrics`` and the resources ``energy_consumed`` (kWh), ``duration`` (s) and, when
``n_samples`` is logged, ``power_draw`` (Ws per sample). ``meta_properties.json`` beside
``database.pkl`` names each property, its unit, group (Quality / Resources) and direction.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from let_core.errors import ConfigurationError
from let_core.hookspecs import hookimpl
from let_core.interfaces import Availability, Settings
from let_core.records import Run

if TYPE_CHECKING:
    import pandas as pd

DATABASE_FILE = "database.pkl"
META_FILE = "meta_properties.json"
CONFIG_FIELDS = ("model", "task", "dataset", "environment")
#: Metric names that are better when lower; every other quality metric is maximized.
_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "perplexity", "latency", "wer", "cer")

RESOURCES: dict[str, dict[str, Any]] = {
    "energy_consumed": {"name": "Energy consumption", "unit": "kWh", "group": "Resources", "maximize": False},
    "duration": {"name": "Running time", "unit": "s", "group": "Resources", "maximize": False},
    "power_draw": {"name": "Energy per sample", "unit": "Ws", "group": "Resources", "maximize": False},
}


def _maximize(metric: str) -> bool:
    lowered = metric.lower()
    return not any(word in lowered for word in _LOWER_IS_BETTER)


def strep_database(results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The STREP rows and property meta data for a result set (``load_results``' frame)."""
    import pandas as pd

    from let_core.results.counting import counted_rows

    data = results[results["task"].fillna("") == ""] if "task" in results else results
    if data.empty:
        raise ConfigurationError("no stored runs to export; track a run first (`lett results` lists them)")
    metric_columns = [c for c in data.columns if c.startswith("metrics.") and data[c].notna().any()]
    projects = ", ".join(sorted(set(data["project_name"].astype(str))))
    if not metric_columns:
        raise ConfigurationError(
            f"project {projects} has no quality metrics, and STREP rates quality against resources. "
            "Log at least one per run, e.g. tracker.log_metrics({'accuracy': accuracy}) or "
            "@track_energy(metrics=lambda result: {'accuracy': result.accuracy}).")
    counted = data[counted_rows(data)]
    energy = pd.to_numeric(counted["energy_consumed"], errors="coerce").groupby(counted["run_id"]).sum()
    first = data.groupby("run_id", sort=False).first()
    duration = pd.to_numeric(data["duration"], errors="coerce").groupby(data["run_id"]).max()
    frame = pd.DataFrame(index=first.index)

    def param(name: str, fallback: pd.Series) -> pd.Series:
        column = f"params.{name}"
        if column in first:
            values = first[column].astype(object)
            return values.where(values.notna() & (values.astype(str) != ""), fallback).astype(str)
        return fallback.astype(str)

    frame["model"] = param("model", first["project_name"].astype(str) + "/" + first.index.str[:8])
    frame["task"] = param("task", pd.Series("unknown", index=first.index))
    frame["dataset"] = param("dataset", pd.Series("unknown", index=first.index))
    frame["environment"] = param("environment", first["hardware"].astype(object).fillna("").replace("", "unknown"))
    properties: dict[str, dict[str, Any]] = {}
    for column in metric_columns:
        name = column[len("metrics."):]
        frame[name] = pd.to_numeric(first[column], errors="coerce")
        properties[name] = {"name": name.replace("_", " ").capitalize(), "unit": "number",
                            "group": "Quality", "maximize": _maximize(name)}
    frame["energy_consumed"] = energy.reindex(first.index)
    frame["duration"] = duration.reindex(first.index)
    properties["energy_consumed"] = RESOURCES["energy_consumed"]
    properties["duration"] = RESOURCES["duration"]
    if "params.n_samples" in first:
        samples = pd.to_numeric(first["params.n_samples"], errors="coerce")
        if samples.gt(0).any():
            frame["power_draw"] = frame["energy_consumed"] * 3.6e6 / samples.where(samples > 0)
            properties["power_draw"] = RESOURCES["power_draw"]
    frame = frame[frame["energy_consumed"].notna()]
    frame.index.name = "run_id"
    return frame.reset_index(), properties


def write_strep(results: pd.DataFrame, directory: str | os.PathLike[str]) -> Path:
    """Write ``database.pkl`` and ``meta_properties.json`` into ``directory``; returns the database path."""
    database, properties = strep_database(results)
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATABASE_FILE
    temporary = folder / f".{DATABASE_FILE}.tmp"
    database.to_pickle(temporary)
    os.replace(temporary, path)
    (folder / META_FILE).write_text(json.dumps(properties, indent=2) + "\n", encoding="utf-8")
    return path


class StrepReporter:
    name: ClassVar[str] = "strep"
    auto: ClassVar[bool] = False  # an export; ask for it by name or use `lett export strep`
    order: ClassVar[int] = 60
    description: ClassVar[str] = "STREP database (database.pkl + meta_properties.json) of a project's runs"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def availability(cls, settings: Settings) -> Availability:
        if importlib.util.find_spec("pandas") is None:
            return Availability.no("needs pandas: pip install 'lamarr-energy-tracker[strep]'")
        return Availability.yes()

    @classmethod
    def from_settings(cls, settings: Settings) -> StrepReporter:
        return cls(settings)

    def report(self, run: Run, results: Any = None) -> None:
        """Rewrite the project's STREP database with this run (the core stored it already).

        Written to ``options={"strep": {"directory": ...}}``, else ``$LET_HOME/strep/<project>``:
        never into a user's ``output_dir``, which holds nothing of LET's but ``emissions.csv``.
        """
        if run.task:
            return
        from let_core.config import let_home
        from let_core.results.loading import ResultsHandle

        options = self.settings.options.get("strep", {})
        directory = options.get("directory") or let_home() / "strep" / run.project_name
        results = results or ResultsHandle(self.settings.output_dir, self.settings.output_uri)
        write_strep(results.frame(run.project_name), directory)

    def export(self, results: pd.DataFrame, destination: str) -> None:
        write_strep(results, destination)


@hookimpl
def let_register_reporters(register: Callable[[Any], None]) -> None:
    register(StrepReporter)
