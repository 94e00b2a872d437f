"""--country / --carbon-intensity, `lett demo --keep`, `lett cite` on nothing."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from let_core import load_results
from let_core.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_run_takes_country_and_intensity(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "--backend", "codecarbon", "--project", "fr", "--country", "FRA",
                                 "--", "true"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["run", "--backend", "codecarbon", "--project", "ci",
                                 "--carbon-intensity", "123", "--", "true"])
    assert result.exit_code == 0, result.output
    frame = load_results().set_index("project_name")
    assert frame.loc["fr", "country_iso_code"] == "FRA"
    assert frame.loc["ci", "emissions"] / frame.loc["ci", "energy_consumed"] == pytest.approx(0.123, rel=1e-6)


def test_bad_country_is_an_error_not_a_traceback(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["run", "--country", "XX-nowhere", "--", "true"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "XX-nowhere" in result.output
    assert load_results().empty


def test_demo_stays_out_of_the_store_unless_kept(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["demo", "--seconds", "0.3", "--country", "FRA"])
    assert result.exit_code == 0, result.output
    assert "Not stored" in result.output and "--keep" in result.output
    assert load_results().empty
    result = runner.invoke(cli, ["demo", "--seconds", "0.3", "--keep", "--carbon-intensity", "100"])
    assert result.exit_code == 0, result.output
    frame = load_results()
    assert list(frame["project_name"]) == ["let-demo"]
    assert float(frame["emissions"].iloc[0] / frame["energy_consumed"].iloc[0]) == pytest.approx(0.1)


def test_statement_restates_emissions_at_a_country_or_intensity(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["demo", "--seconds", "0.3", "--keep"]).exit_code == 0
    stored = runner.invoke(cli, ["statement"]).output
    at_100 = runner.invoke(cli, ["statement", "--carbon-intensity", "100"]).output
    assert "carbon intensity of 100 gCO2/kWh" in at_100
    energy = re.search(r"(\d[\d.]* [mk]?Wh)", stored).group(1)  # type: ignore[union-attr]
    assert energy in at_100  # only the emissions change
    fra = runner.invoke(cli, ["statement", "--country", "FRA"]).output
    assert re.search(r"carbon intensity of (\d+) gCO2/kWh", fra).group(1) != re.search(  # type: ignore[union-attr]
        r"carbon intensity of (\d+) gCO2/kWh", stored).group(1)  # type: ignore[union-attr]
    custom = runner.invoke(cli, ["statement", "--methodology", "m", "--hardware", "h", "--energy", "2",
                                 "--carbon-intensity", "50"]).output
    assert "assuming a carbon intensity of 50 gCO2/kWh" in custom


def test_cite_on_nothing_is_an_error_naming_the_filter(runner: CliRunner) -> None:
    empty = runner.invoke(cli, ["cite"])
    assert empty.exit_code == 1 and "whole store" in empty.output and "--all" in empty.output
    assert runner.invoke(cli, ["demo", "--seconds", "0.3", "--keep"]).exit_code == 0
    missing = runner.invoke(cli, ["cite", "--project", "no-such-project"])
    assert missing.exit_code == 1 and "--project no-such-project" in missing.output
    found = runner.invoke(cli, ["cite", "--project", "let-demo"])
    assert found.exit_code == 0 and "@" in found.output
