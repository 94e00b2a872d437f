"""Words in the paper (issue 23): no article before a host name, one phrase per tool's versions,
the cited CodeCarbon version is the one used, one default carbon-intensity rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.carbon import country_intensity
from let_core.cli import cli
from let_core.statement import custom_paper_statement, format_intensity, paper_statement
from let_core.tracker import EnergyTracker


def _run(project: str, **backend: object) -> dict:
    with EnergyTracker(project_name=project, backends=[ManualBackend(**backend)], reporters=["csv"]) as tracker:
        pass
    return tracker.stop()


def test_a_host_name_takes_no_article(let_home: Path) -> None:
    _run("socket", energy_kwh=0.2, kind="metered", hardware="host1", methodology="Tasmota smart socket")
    text = paper_statement(project_name="socket")
    assert "running all experiments on host1 was measured as 0.200 kWh" in text
    _run("cpu", energy_kwh=0.2, hardware="Intel Xeon Gold 6230")
    assert "experiments on an Intel Xeon Gold 6230 is estimated" in paper_statement(project_name="cpu")


def test_many_sockets_hosts_are_counted_not_listed_as_hardware() -> None:
    from let_core.statement import hardware_phrase

    assert hardware_phrase(["node-02", "node-01"]) == "hosts node-01 and node-02"
    lab = ["NVIDIA A100 GPU", *(f"gpu-{n:02d}" for n in range(8)), "cpu-a", "cpu-b"]
    assert hardware_phrase(lab) == "an NVIDIA A100 GPU and 10 hosts"
    assert hardware_phrase(["Intel Xeon", "host1"]) == "an Intel Xeon and host1"


def test_one_phrase_for_the_versions_of_one_tool(let_home: Path) -> None:
    _run("merged", energy_kwh=0.1, methodology="CodeCarbon 3.3.2")
    _run("merged", energy_kwh=0.1, methodology="CodeCarbon 3.2.3")
    text = paper_statement(project_name="merged")
    assert text.startswith("Using CodeCarbon 3.2.3-3.3.2, the energy consumption")
    assert text.count("CodeCarbon") == 1


def test_cite_names_the_codecarbon_version_the_statement_names(let_home: Path) -> None:
    result = _run("cc", energy_kwh=0.1)  # a figure only, so the real CodeCarbon run below is the one cited
    assert result["energy_consumed"] == pytest.approx(0.1)
    with EnergyTracker(project_name="real", backends=["codecarbon"], reporters=["csv"]):
        sum(i * i for i in range(200_000))
    statement = paper_statement(project_name="real")
    version = statement.split("Using CodeCarbon ", 1)[1].split(",", 1)[0]
    cited = CliRunner().invoke(cli, ["cite", "-p", "real"])
    assert cited.exit_code == 0, cited.output
    assert f"title     = {{mlco2/codecarbon: v{version}}}" in cited.output
    assert f"version   = {{v{version}}}" in cited.output
    if version != "3.2.3":  # that release's DOI must not stand for another version
        assert "zenodo.18731928" not in cited.output


def test_the_dashboard_cites_the_versions_its_statement_names(let_home: Path) -> None:
    from fastapi.testclient import TestClient

    from let_core.ui.app import create_app
    from let_core.ui.data import Dashboard
    from tests.ui_store import build_new_user_store

    build_new_user_store(let_home)  # CodeCarbon 3.3.2's rows; LET knows a DOI for 3.2.3 only
    page = TestClient(create_app(Dashboard(let_home)), base_url="http://localhost").get(
        "/api/statement", params={"project": "first-try"}).json()
    assert page["statement"].startswith("Using CodeCarbon 3.3.2,")
    assert "title     = {mlco2/codecarbon: v3.3.2}" in page["bibtex"]
    assert "zenodo.18731928" not in page["bibtex"]  # 3.2.3's DOI stands for no other release
    cited = CliRunner().invoke(cli, ["cite", "-p", "first-try"])
    assert cited.exit_code == 0, cited.output
    assert cited.output.strip() == page["bibtex"].strip()


@pytest.mark.parametrize("env, country", [({}, "DEU"), ({"LET_COUNTRY": "FRA"}, "FRA"),
                                          ({"LET_CARBON_INTENSITY": "123"}, None)])
def test_custom_and_tracked_statements_share_one_default_intensity(
        let_home: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], country: str | None) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = 123.0 if country is None else country_intensity(country).carbon_intensity
    tracked = _run("same", energy_kwh=1.0, hardware="Intel Xeon")
    assert tracked["emissions"] == pytest.approx(expected / 1000)
    phrase = f"assuming a carbon intensity of {format_intensity(expected)} gCO2/kWh"
    assert phrase in paper_statement(project_name="same")
    assert phrase in custom_paper_statement("the CO2 Impact Calculator", "Intel Xeon", 1.0)
    cli_custom = CliRunner().invoke(cli, ["statement", "--methodology", "the CO2 Impact Calculator",
                                          "--hardware", "Intel Xeon", "--energy", "1.0"])
    assert phrase in cli_custom.output


def test_counts_in_the_text_have_thousands_separators() -> None:
    from let_core.display import counted
    from let_core.statement import share_sentence

    assert counted(1, "run") == "1 run" and counted(99847, "run") == "99,847 runs"
    assert "For 12 of the 99,847 runs no share was measured" in share_sentence(1.0, runs=99847, unshared=12)
