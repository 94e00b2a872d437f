"""The paper statement: LET 0.1.x's numbers and wording, its defects fixed."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from let_backends.manual import ManualBackend
from let_core import print_custom_paper_statement
from let_core.errors import ConfigurationError
from let_core.results.counting import Totals
from let_core.statement import (
    bibtex,
    cited_keys,
    comparison,
    custom_paper_statement,
    hardware_phrase,
    methodology_phrase,
    paper_statement,
    print_paper_statement,
    statement_from_totals,
)
from let_core.tracker import EnergyTracker

# LET 0.1.x's statement with its defects fixed: the intensity printed is the one used, rounded
# (380.95 -> 381, not truncated to 380), and the emissions show three significant digits.
DESIGN_TEXT = (
    "Using CodeCarbon 3.2.3, the energy consumption of running all experiments on an Intel(R) Core(TM) "
    "i7-10610U CPU is estimated to 0.135 kWh. This corresponds to estimated carbon emissions of 51.428 g "
    "of CO2-equivalents, assuming a carbon intensity of 381 gCO2/kWh~\\cite{lamarr_energy_tracker,codecarbon}. "
    "Note that these numbers are underestimations of actual resource consumption and do not account for "
    "overhead factors or embodied impacts~\\cite{ai_energy_validation}.")


def figures(methodology="CodeCarbon 3.2.3", hardware=("Intel(R) Core(TM) i7-10610U CPU",), kwh=0.135,
            intensity=380.95, backend="codecarbon", kind="estimate", runs=1, **more):
    metered = kind == "metered"
    return Totals(energy_kwh=kwh, emissions_kg=kwh * intensity / 1000, runs=runs,
                  metered_kwh=kwh if metered else 0.0, metered_runs=runs if metered else 0,
                  estimated_runs=0 if metered else runs, methodologies={methodology: runs},
                  hardware={h: 1 for h in hardware}, backends={backend: runs}, **more)


def compose(totals):
    return statement_from_totals(totals)


def test_design_example_is_reproduced_exactly():
    text = compose(figures())
    assert text.startswith(DESIGN_TEXT)
    # 51.4 g lies between apples (10 g) and boiling water (70 g): the closest reference below wins.
    assert "For comparison, this is equivalent to 5.1 locally grown apples." in text


def test_custom_statement_numbers_of_the_design():
    text = custom_paper_statement("the CO2 Impact Calculator", "NVIDIA GTX 1080 GPU", 3.2, carbon_intensity=380)
    assert "on an NVIDIA GTX 1080 GPU is estimated to 3.200 kWh. This corresponds" in text  # space fixed
    assert "1.216 kg of CO2-equivalents" in text
    assert "carbon intensity of 380 gCO2/kWh" in text
    assert "codecarbon" not in text  # only what was used is cited


def test_wh_input_converts_before_comparing():
    # 0.1.x compared 380 * 500 "g" before dividing by 1000: 1000x off.
    text = custom_paper_statement("a power meter", "Raspberry Pi 5", 500, energy_unit="Wh", kind="estimate")
    assert "estimated to 0.500 kWh" in text and "190.000 g" not in text
    assert "0.190 kg" in text
    assert comparison(190.0) in text
    assert comparison(190.0) == "equivalent to 1.9 hours of watching TV"


def test_comparisons_are_deterministic_and_closest():
    assert comparison(0.001) is None
    assert comparison(80) == "equivalent to 1 imported banana"
    assert comparison(160) == "equivalent to 1.6 hours of watching TV"
    assert comparison(3_400_000 * 2) == "equivalent to 2.0 return economy flights from Los Angeles to Barcelona"
    assert len({comparison(51.4) for _ in range(20)}) == 1


def test_every_hardware_is_named_with_its_article():
    assert hardware_phrase(["Intel(R) Xeon(R) Gold 6230", "NVIDIA A100", "Raspberry Pi 5"]) == (
        "an Intel(R) Xeon(R) Gold 6230, an NVIDIA A100 and a Raspberry Pi 5")
    assert hardware_phrase(["AMD EPYC 7742"]) == "an AMD EPYC 7742"


def test_counter_methodologies_read_naturally():
    # Each backend declares how its methodology label reads (statement_phrases on its factory).
    assert methodology_phrase(["RAPL", "NVML"], ["rapl", "nvml"]) == "RAPL and NVML energy counters"
    assert methodology_phrase(["RAPL"]) == "RAPL"  # no backend named: the label as it is
    assert methodology_phrase(["CodeCarbon 3.3.2"]) == "CodeCarbon 3.3.2"


def test_metered_only_says_measured_and_cites_no_codecarbon():
    text = compose(figures("Tasmota smart socket", ("dgx1",), 2.0, backend="tasmota", kind="metered"))
    assert text.startswith("Using Tasmota smart sockets at the wall, the energy consumption of running all "
                           "experiments on dgx1 was measured as 2.000 kWh.") and "estimated" not in text.split("Note")[0]
    assert cited_keys(text) == ["lamarr_energy_tracker", "ai_energy_validation"]
    assert "underestimations" not in text


def test_estimate_and_metered_give_both_and_the_ratio():
    text = compose(figures("Tasmota smart socket", ("ws28",), 1.38, backend="tasmota", kind="metered", runs=3,
                           paired_runs=3, paired_estimate_kwh=1.0, paired_metered_kwh=1.38,
                           paired_methodologies={"CodeCarbon 3.2.3": 3}, paired_backends={"codecarbon": 3}))
    assert "on ws28 was measured as 1.380 kWh" in text
    assert ("For the 3 runs measured both ways, CodeCarbon 3.2.3 estimated 1.000 kWh~\\cite{codecarbon}; "
            "the measured 1.380 kWh is 1.38x the estimate.") in text


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "a lot", "3.2", None, True])
def test_custom_statement_rejects_bad_energy(bad):
    with pytest.raises(ConfigurationError, match="consumed_energy"):
        custom_paper_statement("x", "y", bad)


def test_custom_statement_rejects_bad_unit_and_intensity():
    with pytest.raises(ConfigurationError, match="energy_unit"):
        custom_paper_statement("x", "y", 1, energy_unit="J")
    with pytest.raises(ConfigurationError, match="carbon_intensity"):
        custom_paper_statement("x", "y", 1, carbon_intensity=-5)


def test_print_custom_returns_what_it_prints(capsys):
    text = print_custom_paper_statement("the CO2 Impact Calculator", "NVIDIA GTX 1080 GPU", 3.2)
    assert text in capsys.readouterr().out


def run_with(project: str, kwh: float, hardware: str, methodology: str = "CodeCarbon 3.3.2",
             kind: str = "estimate", name: str = "manual", extra=()):
    backends = [ManualBackend(energy_kwh=kwh, hardware=hardware, methodology=methodology, kind=kind, name=name),
                *extra]
    with EnergyTracker(project_name=project, backends=backends, reporters=["csv"]):
        pass


def test_stored_runs_statement_lists_all_hardware_and_sums(let_home):
    run_with("multi", 0.1, "Intel(R) Xeon(R) Gold 6230 CPU")
    run_with("multi", 0.2, "Intel(R) Xeon(R) Gold 6230 CPU and 1 x NVIDIA A100")
    text = paper_statement(project_name="multi")
    assert "estimated to 0.300 kWh" in text
    assert "Intel(R) Xeon(R) Gold 6230 CPU and 1 x NVIDIA A100" in text
    assert text.count("Xeon(R) Gold 6230") == 1  # one machine, named once, with its GPU
    assert "carbon intensity of 381 gCO2/kWh" in text  # Germany's 380.95, rounded as the figures


def test_stored_estimate_and_metered_runs_give_the_ratio(let_home):
    wall = ManualBackend(energy_kwh=0.276, kind="metered", methodology="Tasmota smart socket",
                         hardware="ws28", name="tasmota")
    run_with("gt", 0.2, "Intel CPU", extra=[wall])
    text = paper_statement(project_name="gt")
    # The wall measurement is what the run counts for; the estimate it replaced is compared.
    assert "on ws28 was measured as 0.276 kWh." in text
    assert "For the same run, CodeCarbon 3.3.2 estimated 0.200 kWh" in text
    assert "the measured 0.276 kWh is 1.38x the estimate." in text


def test_no_runs_is_a_clear_error(let_home):
    with pytest.raises(ConfigurationError, match="no stored runs"):
        paper_statement(project_name="nothing")


def test_print_paper_statement_prints_and_returns(let_home, capsys):
    run_with("p", 0.5, "Intel CPU")
    text = print_paper_statement(project_name="p")
    assert text in capsys.readouterr().out


def test_module_entry_point_with_010_flags(let_home):
    run_with("cli", 0.5, "Intel CPU")
    out = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.print_paper_statement",
                          "--output_dir", str(let_home), "--project_name", "cli"],
                         capture_output=True, text=True, check=True).stdout
    assert "estimated to 0.500 kWh" in out
    custom = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.print_paper_statement",
                             "--methodology", "the CO2 Impact Calculator", "--hardware",
                             "NVIDIA GTX 1080 GPU", "--consumed_energy", "3.2"],
                            capture_output=True, text=True, check=True).stdout
    assert "3.200 kWh" in custom and "1.216 kg" in custom
    bad = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.print_paper_statement",
                          "--methodology", "m", "--hardware", "h", "--consumed_energy", "-1"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "consumed_energy" in bad.stderr and "Traceback" not in bad.stderr


def test_bibtex_has_the_let_readme_entries():
    text = bibtex(["lamarr_energy_tracker", "codecarbon", "ai_energy_validation"])
    for key in ("@software{lamarr_energy_tracker", "@software{codecarbon", "@misc{ai_energy_validation"):
        assert key in text
    with pytest.raises(ConfigurationError):
        bibtex(["nope"])


def test_statement_reporter_prints_run_and_project_statement(let_home, capsys):
    with EnergyTracker(project_name="rep", backends=[ManualBackend(energy_kwh=0.2, hardware="Intel CPU")]):
        pass
    out = capsys.readouterr().out
    assert "Tracker stopped - this experiment consumed 0.200 kWh." in out
    assert "estimated to 0.200 kWh" in out
    with EnergyTracker(project_name="rep", backends=[ManualBackend(energy_kwh=0.2, hardware="Intel CPU")]) as t:
        pass
    assert "estimated to 0.400 kWh" in capsys.readouterr().out
    t.start()
    t.stop(print_summary=False)
    assert capsys.readouterr().out == ""
    assert not math.isnan(t.last_result["energy_consumed"])


def test_each_device_is_named_once_across_runs_with_and_without_a_gpu() -> None:
    from let_core.statement import hardware_phrase

    phrase = hardware_phrase(["Intel(R) Xeon(R) Gold 6226R CPU",
                              "Intel(R) Xeon(R) Gold 6226R CPU and 1 x NVIDIA A100-SXM4-40GB"])
    assert phrase == "an Intel(R) Xeon(R) Gold 6226R CPU and 1 x NVIDIA A100-SXM4-40GB"
    assert phrase.count("Xeon") == 1
