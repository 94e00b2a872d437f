"""How LET's values look: energies and masses as the statement prints them, and the HTML of
``Run._repr_html_`` and ``Totals._repr_html_``. A leaf (stdlib only, importing nothing of
LET's), so records, counting, calibration and the statement all format through it."""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

# Three decimals as LET 0.1.x ("3.200 kWh"), in the largest unit that still shows the value as
# at least 0.1, so that three significant digits always show; never scientific notation.
_ENERGY_UNITS: tuple[tuple[str, float], ...] = (("GWh", 1e6), ("MWh", 1e3), ("kWh", 1.0),
                                                ("Wh", 1e-3), ("mWh", 1e-6))
_MASS_UNITS: tuple[tuple[str, float], ...] = (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3))


def _scaled(value: float, units: Sequence[tuple[str, float]], zero_unit: str) -> str:
    if not math.isfinite(value) or value == 0:
        return f"{0:.3f} {zero_unit}"
    for unit, factor in units:
        if abs(value) / factor >= 0.1:
            return f"{value / factor:.3f} {unit}"
    unit, factor = units[-1]
    return f"{value / factor:.3f} {unit}"


def format_energy(kwh: float) -> str:
    """``0.135 kWh``, ``0.100 Wh``, ``1.220 mWh``: three decimals, at least three significant digits."""
    return _scaled(kwh, _ENERGY_UNITS, "kWh")


def format_emissions(grams: float) -> str:
    """``1.216 kg``, ``45.714 g``, ``0.381 t``: the same rule as energies."""
    return _scaled(grams, _MASS_UNITS, "g")


def format_intensity(g_per_kwh: float) -> str:
    """The intensity as the figures are rounded: three significant digits, whole grams from
    100 up (380.95 -> "381"), so the printed numbers recompute from each other."""
    if not math.isfinite(g_per_kwh) or g_per_kwh <= 0:
        return "0"
    if g_per_kwh >= 100:
        return str(int(round(g_per_kwh)))
    return f"{g_per_kwh:.3g}"


def html_table(rows: Iterable[tuple[str, str]], caption: str = "") -> str:
    """A two-column table (label, value), every cell escaped."""
    head = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>" if caption else ""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='let'>{head}{body}</table>"


def run_rows(run: Any) -> list[tuple[str, str]]:
    """What a person reads of one run: the counted figure, then each backend's."""
    energy = run.energy_kwh
    rows = [("project", run.project_name), ("run", run.run_id[:8] + (f" task {run.task}" if run.task else "")),
            ("status", run.status + (f": {run.error}" if run.error else "")),
            ("duration", f"{run.duration_s:.1f} s"),
            ("energy", format_energy(energy) if energy == energy else "-"),
            ("emissions", format_emissions(run.emissions_kg(energy) * 1000) if energy == energy else "-"),
            ("carbon intensity", f"{run.carbon_intensity:g} gCO2/kWh ({run.country_iso_code})")]
    for m in run.measurements:
        shown = f"failed: {m.error}" if m.error else f"{format_energy(m.energy_kwh)} ({m.methodology}, {m.kind})"
        rows.append((f"  {m.backend}", shown))
    return rows


def totals_rows(totals: Any) -> list[tuple[str, str]]:
    rows = [("runs", str(totals.runs)), ("energy", format_energy(totals.energy_kwh)),
            ("emissions", format_emissions(totals.emissions_kg * 1000)),
            ("metered", format_energy(totals.metered_kwh) + f" of {totals.metered_runs} run(s)"),
            ("estimated runs", str(totals.estimated_runs))]
    rows += [("methodology", f"{name} ({n})") for name, n in totals.methodologies.items()]
    return rows
