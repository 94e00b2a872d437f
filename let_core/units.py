"""Units that scale, for every figure LET shows a person: the paper statement, ``lett results``,
the dashboard and the HTML report (stdlib only, so any module may import it).

Figures read "3.200 kWh", "12.000 mWh", "1.216 kg": three decimals, in the largest unit that
still shows the value as at least 0.1, so three significant digits always show and never in
scientific notation. Chart axes take one unit for all their ticks (``axis``), chosen by the
largest tick, and as many decimals as the ticks need to read distinct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from attrs import frozen

#: (unit, size in the base unit), largest first: energy in kWh, mass in grams.
ENERGY_UNITS: tuple[tuple[str, float], ...] = (("GWh", 1e6), ("MWh", 1e3), ("kWh", 1.0),
                                               ("Wh", 1e-3), ("mWh", 1e-6))
MASS_UNITS: tuple[tuple[str, float], ...] = (("t", 1e6), ("kg", 1e3), ("g", 1.0), ("mg", 1e-3))


def unit_for(value: float, units: Sequence[tuple[str, float]]) -> tuple[str, float]:
    """The largest unit in which ``value`` reads at least 0.1 (the smallest for tinier ones)."""
    for unit, factor in units:
        if abs(value) / factor >= 0.1:
            return unit, factor
    return units[-1]


def scaled(value: float, units: Sequence[tuple[str, float]], zero_unit: str) -> str:
    """``value`` (in the base unit of ``units``) with three decimals in the unit that fits;
    zero and non-finite values read as zero of ``zero_unit``."""
    if not math.isfinite(value) or value == 0:
        return f"{0:.3f} {zero_unit}"
    unit, factor = unit_for(value, units)
    return f"{value / factor:.3f} {unit}"


def format_energy(kwh: float) -> str:
    """``0.135 kWh``, ``0.100 Wh``, ``1.220 mWh``: three decimals, at least three significant digits."""
    return scaled(kwh, ENERGY_UNITS, "kWh")


def format_emissions(grams: float) -> str:
    """``1.216 kg``, ``45.714 g``, ``0.381 t``: the same rule as energies."""
    return scaled(grams, MASS_UNITS, "g")


@frozen
class Axis:
    """Tick positions (in the base unit), their labels (in ``unit``) and the unit's size."""

    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    unit: str
    factor: float


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` ticks on 1-2-5 steps covering [low, high], distinct by construction;
    a zero-width range gets a range around its value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.5 or 1.0
        low, high = (0.0, high + pad) if low >= 0 else (low - pad, high + pad)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [float(f"{first:.12g}")]
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(float(f"{first + len(ticks) * step:.12g}"))
    return ticks


def axis(low: float, high: float, units: Sequence[tuple[str, float]], count: int = 5) -> Axis:
    """Ticks for a figure's axis from ``low`` to ``high`` (base unit of ``units``), all labelled
    in the one unit that fits the largest, each with the decimals it needs (distinct ticks
    therefore read distinct)."""
    ticks = nice_ticks(low, high, count)
    unit, factor = unit_for(max(abs(t) for t in ticks), units)
    labels = [_label(t / factor) for t in ticks]
    return Axis(tuple(ticks), tuple(labels), unit, factor)


def _label(value: float) -> str:
    """The shortest decimal text that is the value (ticks are on 1-2-5 steps: few digits)."""
    for decimals in range(0, 7):
        text = f"{value:.{decimals}f}"
        if abs(float(text) - value) <= abs(value) * 1e-9:
            return "0" if float(text) == 0 else text
    return f"{value:.6f}"


def format_share(fraction: float | None, nearest: bool = False) -> str:
    """A share as a whole percentage, rounded down so a figure with gaps never reads "100%"
    (``nearest``: rounded, for parts of a whole that should add up to it); "-" where there is
    none (no metered time, no energy)."""
    if fraction is None or isinstance(fraction, bool) or not math.isfinite(fraction):
        return "-"
    return f"{round(fraction * 100) if nearest else math.floor(fraction * 100)}%"
