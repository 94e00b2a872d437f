"""Carbon intensity by country: CodeCarbon's packaged data, read without importing CodeCarbon."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from let_core.carbon import (
    country_intensity,
    known_countries,
    normalize_country_code,
    validate_intensity,
)
from let_core.errors import ConfigurationError
from let_core.tracker import EnergyTracker


def test_germany_and_france_from_codecarbon_data() -> None:
    germany = country_intensity("DEU")
    assert germany.carbon_intensity == pytest.approx(380.95)
    assert germany.country_name == "Germany"
    assert germany.iso_code == "DEU"
    assert germany.year is not None and germany.year >= 2020
    assert country_intensity("FRA").carbon_intensity == pytest.approx(56, abs=1)


@pytest.mark.parametrize("code", ["DE", "de", " deu ", "Deu"])
def test_alpha2_and_case_are_accepted(code: str) -> None:
    assert normalize_country_code(code) == "DEU"
    assert country_intensity(code).carbon_intensity == pytest.approx(380.95)


@pytest.mark.parametrize("code", ["XXX", "XX", "", "Q", "GERMANY"])
def test_unknown_code_is_an_error_that_says_how_to_find_the_right_one(code: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        country_intensity(code)
    message = str(info.value)
    assert "lett countries" in message
    assert "carbon_intensity=" in message


def test_a_country_name_gets_its_code_suggested() -> None:
    with pytest.raises(ConfigurationError, match="'DEU'"):
        country_intensity("Germany")


def test_tracker_rejects_unknown_country_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="XXX"):
        EnergyTracker(country_iso_code="XXX", backends=[], reporters=[])


def test_explicit_intensity_overrides_and_is_validated() -> None:
    tracker = EnergyTracker(country_iso_code="FRA", carbon_intensity=123.0, backends=[], reporters=[])
    assert tracker.settings.carbon_intensity == 123.0
    assert tracker.settings.country_iso_code == "FRA"
    for bad in (-1, "lots", float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="carbon_intensity"):
            validate_intensity(bad)


def test_known_countries_are_sorted_and_complete() -> None:
    countries = known_countries()
    codes = [c.iso_code for c in countries]
    assert codes == sorted(codes)
    assert {"DEU", "FRA", "USA", "CHN"} <= set(codes)
    assert all(c.carbon_intensity >= 0 for c in countries)


def test_carbon_module_does_not_import_codecarbon() -> None:
    code = ("import sys, let_core.carbon as c; c.country_intensity('DE'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('codecarbon', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _cli():  # type: ignore[no-untyped-def]
    from let_core import cli

    cli._load_plugin_commands()
    return cli.cli


def test_let_countries_lists_codes_and_intensities() -> None:
    result = CliRunner().invoke(_cli(), ["countries", "--search", "germ"])
    assert result.exit_code == 0, result.output
    assert "DEU" in result.output and "380.95" in result.output and "Germany" in result.output
    assert "FRA" not in result.output

    result = CliRunner().invoke(_cli(), ["countries", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    france = next(r for r in rows if r["iso_code"] == "FRA")
    assert france["carbon_intensity"] == pytest.approx(56, abs=1)


def test_let_countries_without_match_says_so() -> None:
    result = CliRunner().invoke(_cli(), ["countries", "--search", "atlantis"])
    assert result.exit_code != 0
    assert "no country matches" in result.output


def test_missing_energy_mix_data_is_a_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "codecarbon"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    code = ("import let_core.carbon as c\n"
            "try:\n    c.country_intensity('DEU')\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert out.stdout.startswith("ConfigurationError"), out.stdout + out.stderr
    assert "reinstall" in out.stdout and "carbon_intensity=" in out.stdout


