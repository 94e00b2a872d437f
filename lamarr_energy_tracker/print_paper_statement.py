"""LET 0.1.x's ``lamarr_energy_tracker.print_paper_statement`` module, on top of ``let_core``.

Names as 0.1.x had them: ``load_results``, ``print_paper_statement``,
``print_custom_paper_statement``, ``emission_comparisons``, ``format_summary``. The numbers come
from LET's one statement and counting code, with 0.1.x's defects fixed (comparisons after the
unit conversion and deterministic, every hardware model named, a space after "kWh.").

``python -m lamarr_energy_tracker.print_paper_statement`` takes 0.1.x's flags. Stored runs:
``--output_dir --project_name --user --hostname``. Energy from elsewhere:
``--methodology --hardware --consumed_energy [--carbon_intensity]``.
"""

from __future__ import annotations

import math
import os
import sys
import types
from typing import TYPE_CHECKING, Any

import click

from let_core.errors import ConfigurationError, LetError
from let_core.results import load_results
from let_core.statement import (
    REFERENCES,
    comparison_phrase,
    custom_paper_statement,
    format_energy,
    print_paper_statement,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["emission_comparisons", "format_summary", "load_results", "main",
           "print_custom_paper_statement", "print_paper_statement"]


def emission_comparisons(emissions_g: float, tolerance: tuple[float, float] = (0.2, 10.0),
                         max_results: int = 1) -> list[str] | None:
    """Everyday equivalents of ``emissions_g`` grams CO2e, e.g. ``["equivalent to 2.0 imported
    bananas"]``, or None when no reference lies within ``tolerance`` (0 g has none), as in 0.1.x.

    A reference qualifies when emissions / reference lies within ``tolerance``. 0.1.x picked
    at random among those; here the order is fixed: first the statement's own choice (the
    largest reference not above the emissions, so "N things" with the smallest N >= 1), then
    the rest by how close their factor is to 1. Factors below 1 read as such ("0.5 pints").
    """
    grams = float(emissions_g)
    if not math.isfinite(grams) or grams <= 0:
        return None
    low, high = tolerance
    chosen = [r for r in REFERENCES if low <= grams / r.grams <= high]
    # log distance from a factor of 1, references at or below the emissions first on ties
    chosen.sort(key=lambda r: (r.grams > grams, abs(math.log(grams / r.grams))))
    if not chosen:
        return None
    return [comparison_phrase(grams, r) for r in chosen[:max(1, int(max_results))]]


def print_custom_paper_statement(methodology: str, hardware: str, consumed_energy: float,
                                 energy_unit: str = "kWh", carbon_intensity: float = 380) -> str:
    """Print a statement for energy measured elsewhere, and return it.

    Worded as 0.1.x's and its PyPI page ("... estimated to 3.200 kWh. This corresponds to
    estimated carbon emissions of 1.216 kgCO2-equivalents, ..."), with the space after "kWh."
    that 0.1.x lost.
    """
    text = custom_paper_statement(methodology, hardware, consumed_energy, energy_unit,
                                  carbon_intensity, joined_units=True)
    print("\n" + text + "\n")
    return text


def format_summary(results: pd.DataFrame) -> tuple[str, str, str, int]:
    """0.1.x's ``(methodology, hardware, energy, rate)`` of a result set from ``load_results``:
    e.g. ``("CodeCarbon 3.2.3", "Intel(R) Core(TM) i7-10610U CPU", "0.135 kWh", 380)``.

    Counted as the statement counts (each run once, its headline measurements); where runs
    used several methods or hardware models, all are named instead of 0.1.x's assertion.
    """
    from let_core.display import by_count, join_words
    from let_core.results.counting import frame_totals
    from let_core.statement import methodology_phrase

    if "kind" not in results.columns:
        # a frame read by hand (pd.read_csv of a 0.1.x or CodeCarbon file): LET's columns first
        from let_core.schema import legacy_fields

        results = results.assign(**{
            column: values for column, values in _legacy_columns(results, legacy_fields).items()})
    totals = frame_totals(results)
    if totals.empty:
        raise ConfigurationError("format_summary needs at least one run with a stored energy; "
                                 "the given results have none")
    methodology = methodology_phrase(by_count(totals.methodologies), by_count(totals.backends))
    hardware = join_words(by_count(totals.hardware)) or "unspecified hardware"
    # 0.1.x truncated the rate to whole grams (380.95 -> 380); the epsilon keeps 380.0 at 380
    rate = (math.floor(totals.emissions_kg * 1000 / totals.energy_kwh + 1e-6)
            if totals.energy_kwh > 0 else 0)
    return methodology, hardware, format_energy(totals.energy_kwh), rate


def _legacy_columns(results: pd.DataFrame, legacy_fields: Any) -> dict[str, list[str]]:
    rows = results.astype(object).where(results.notna(), "").to_dict("records")
    derived = [legacy_fields(row) for row in rows]
    names = sorted({name for fields in derived for name in fields})
    return {name: [fields.get(name, row.get(name, "")) for fields, row in zip(derived, rows)]
            for name in names}


@click.command(help="Print a paper statement summarizing energy and carbon emissions of tracked "
                    "experiments, or of custom figures (pass methodology, hardware and energy).")
@click.option("--output_dir", default=None, help="Store folder (default: $LET_HOME or ~/.let).")
@click.option("--project_name", default=None, help="Name of the project.")
@click.option("--user", default=None, help="User name.")
@click.option("--hostname", default=None, help="Host name.")
@click.option("--methodology", default=None, help="How the energy was obtained (e.g. the CO2 Impact Calculator).")
@click.option("--hardware", default=None, help="The experiment hardware (e.g. NVIDIA GTX 1080 GPU).")
@click.option("--consumed_energy", type=float, default=None, help="Consumed energy in kWh.")
@click.option("--carbon_intensity", type=float, default=380, show_default=True, help="gCO2/kWh.")
def main(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
         methodology: str | None, hardware: str | None, consumed_energy: float | None,
         carbon_intensity: float) -> None:
    try:
        if methodology is not None and hardware is not None and consumed_energy is not None:
            print_custom_paper_statement(methodology, hardware, consumed_energy,
                                         carbon_intensity=carbon_intensity)
        else:
            print_paper_statement(output_dir, project_name, user, hostname)
    except LetError as exc:
        raise click.ClickException(str(exc)) from exc


class _CallableModule(types.ModuleType):
    """``lamarr_energy_tracker.print_paper_statement`` is this module in 0.1.x (code reads
    ``.emission_comparisons`` from it), and the function in LET's README
    (``from lamarr_energy_tracker import print_paper_statement; print_paper_statement()``).
    Python binds the name to the module once it is imported, so the module calls the function."""

    def __call__(self, output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                 user: str | None = None, hostname: str | None = None) -> str:
        return print_paper_statement(output_dir, project_name, user, hostname)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
