"""Units that scale (let_core.units): the statement's figures and chart axes."""

from __future__ import annotations

import pytest

from let_core.units import ENERGY_UNITS, MASS_UNITS, axis, format_emissions, format_energy, nice_ticks


@pytest.mark.parametrize(("kwh", "text"), [(3.2, "3.200 kWh"), (0.135, "0.135 kWh"), (5e-6, "5.000 mWh"),
                                           (0.0001, "0.100 Wh"), (0.0, "0.000 kWh"), (float("nan"), "0.000 kWh"),
                                           (2500.0, "2.500 MWh")])
def test_energy_scales(kwh: float, text: str) -> None:
    assert format_energy(kwh) == text


@pytest.mark.parametrize(("grams", "text"), [(1216.0, "1.216 kg"), (45.714, "45.714 g"), (0.0004, "0.400 mg"),
                                             (381_000.0, "0.381 t")])
def test_mass_scales(grams: float, text: str) -> None:
    assert format_emissions(grams) == text


@pytest.mark.parametrize(("low", "high"), [(0, 0.00123), (0.0071, 0.0084), (0, 4321.0), (0, 0), (5, 5),
                                           (0, 1e-9), (-3, 7), (0, 3.4e6), (1e-13, 3e-13)])
def test_ticks_cover_the_range_distinct_and_few(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    assert ticks == sorted(set(ticks)) and 2 <= len(ticks) <= 8


@pytest.mark.parametrize(("high", "unit", "labels"), [
    (0.00123, "Wh", ("0", "0.5", "1", "1.5")),  # 1.23 Wh: never "0.001, 0.001, 0" kWh
    (4321.0, "kg", ("0", "2", "4", "6")),
    (0.9, "kWh", ("0", "0.25", "0.5", "0.75", "1")),
])
def test_axis_labels_one_unit_exact_and_distinct(high: float, unit: str, labels: tuple[str, ...]) -> None:
    units = MASS_UNITS if unit in ("g", "kg") else ENERGY_UNITS
    result = axis(0, high, units)
    assert result.unit == unit and result.labels == labels


def test_quarter_steps_keep_their_digits() -> None:
    # 0.25 must not read "0.2" next to a "0.5": each label is its tick's value.
    result = axis(0, 1.0, MASS_UNITS, count=5)
    for tick, label in zip(result.ticks, result.labels):
        assert float(label) * result.factor == pytest.approx(tick)
    assert len(set(result.labels)) == len(result.labels)
