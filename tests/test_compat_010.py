"""Code written for LET 0.1.x keeps working: names, signatures and meaning of its modules.

Where LET 0.1.4 itself can run here (its own venv, made by ``python -m bench.let014``, which
.ci/run runs; ``bench/let014.py`` says where), its output is the reference; those checks are
skipped, saying why, where that venv does not exist.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lamarr_energy_tracker
from bench import let014
from lamarr_energy_tracker import print_paper_statement as pps_module
from lamarr_energy_tracker import tracker as tracker_module
from lamarr_energy_tracker.print_paper_statement import (
    emission_comparisons,
    format_summary,
    print_custom_paper_statement,
)
from let_core.errors import LetWarning
from let_core.statement import REFERENCES, comparison
from tests.loopback import free_port

LET014 = let014.python()
needs_014 = pytest.mark.skipif(not LET014.exists(), reason=str(let014.missing()))
DATA = Path(__file__).parent / "data"


def run_014(code: str, **env: str) -> str:
    """Run code under LET 0.1.4 (its own interpreter, a clean cwd) and return its stdout."""
    done = subprocess.run([str(LET014), "-c", code], capture_output=True, text=True, cwd="/",
                          env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], **env},
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


# ------------------------------------------------------------------------------ imports
def test_010_import_names_resolve() -> None:
    import importlib

    names = {
        "lamarr_energy_tracker": ["EnergyTracker", "GroundTruthTracker", "GroundTruthTrackingServer",
                                  "print_custom_paper_statement", "load_results", "delete_results"],
        "lamarr_energy_tracker.print_paper_statement": [
            "emission_comparisons", "format_summary", "load_results", "print_paper_statement",
            "print_custom_paper_statement"],
        "lamarr_energy_tracker.tracker": ["EnergyTracker", "delete_results", "format_summary",
                                          "load_results", "print_paper_statement"],
    }
    for module, attrs in names.items():
        for attr in attrs:
            assert callable(getattr(importlib.import_module(module), attr)), (module, attr)
    assert tracker_module.EnergyTracker is lamarr_energy_tracker.EnergyTracker
    assert tracker_module.format_summary is format_summary
    assert lamarr_energy_tracker.print_custom_paper_statement is print_custom_paper_statement


@needs_014
def test_signatures_match_014() -> None:
    names = {"lamarr_energy_tracker.print_paper_statement": ["emission_comparisons",
                                                             "print_custom_paper_statement",
                                                             "print_paper_statement", "load_results",
                                                             "format_summary"],
             "lamarr_energy_tracker.tracker": ["EnergyTracker.__init__", "EnergyTracker.stop"]}
    code = ("import inspect, json, importlib\nout = {}\n"
            f"for module, attrs in {names!r}.items():\n"
            "    m = importlib.import_module(module)\n"
            "    for attr in attrs:\n"
            "        obj = m\n"
            "        for part in attr.split('.'): obj = getattr(obj, part)\n"
            "        out[module + ':' + attr] = list(inspect.signature(obj).parameters)\n"
            "print(json.dumps(out))")
    theirs = json.loads(run_014(code))
    import importlib

    for key, params in theirs.items():
        module, attr = key.split(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        ours = list(inspect.signature(obj).parameters)
        # ours may take more (keyword) arguments; 0.1.x's come first, in 0.1.x's order
        assert ours[:len(params)] == params, (key, ours, params)


# ------------------------------------------------------------------------------ comparisons
def test_emission_comparisons_none_for_nothing() -> None:
    assert emission_comparisons(0) is None
    assert emission_comparisons(-3) is None
    assert emission_comparisons(math.nan) is None
    assert emission_comparisons(1e12) is None  # nothing within 10x of a trillion grams


def test_emission_comparisons_are_phrases_and_deterministic() -> None:
    first = emission_comparisons(1216)
    assert isinstance(first, list) and len(first) == 1
    assert all(emission_comparisons(1216) == first for _ in range(20))
    # the statement's own comparison comes first
    assert first[0] == comparison(1216)
    several = emission_comparisons(1216, max_results=50)
    assert several is not None and several[0] == first[0] and len(several) == len(set(several)) > 3
    assert emission_comparisons(80) == ["equivalent to 1 imported banana"]
    # a factor below 1 is written as such (0.1.x wrote 1/f: "2.0" for half a pint)
    assert "equivalent to 0.5 pints of beer at a pub" in emission_comparisons(250, max_results=50)  # type: ignore[operator]


@needs_014
@pytest.mark.parametrize("grams", [0, 0.005, 0.05, 1, 12.5, 80, 250, 1216, 40_000, 5e6, 1e9])
def test_emission_comparisons_choose_among_014s_references(grams: float) -> None:
    theirs = json.loads(run_014(
        "import json\nfrom lamarr_energy_tracker.print_paper_statement import emission_comparisons\n"
        f"r = emission_comparisons({grams!r}, max_results=100)\nprint(json.dumps(r))"))
    ours = emission_comparisons(grams, max_results=100)
    assert (theirs is None) == (ours is None)
    if ours is None:
        return
    # 0.1.x's two references that are not in LET's (How Bad Are Bananas?) table
    dropped = {"plastic carrier bags", "a 6-minute electrically powered shower"}
    their_units = {p.split(" ", 3)[-1] for p in theirs} - dropped
    by_name = {r.plural: r.plural for r in REFERENCES} | {r.singular: r.plural for r in REFERENCES}
    our_units = {by_name[p.split(" ", 3)[-1]] for p in ours}
    assert our_units == their_units


# ------------------------------------------------------------------------------ custom statement
def test_custom_statement_keeps_010_units_with_the_space(capsys: pytest.CaptureFixture[str]) -> None:
    text = print_custom_paper_statement(methodology="the CO2 Impact Calculator",
                                        hardware="NVIDIA GTX 1080 GPU", consumed_energy=3.2)
    assert ("on an NVIDIA GTX 1080 GPU is estimated to 3.200 kWh. This corresponds to estimated "
            "carbon emissions of 1.216 kgCO2-equivalents, assuming a carbon intensity of 380 gCO2/kWh") in text
    assert text in capsys.readouterr().out
    small = print_custom_paper_statement("the CO2 Impact Calculator", "Raspberry Pi 5", 5, energy_unit="Wh")
    assert "estimated to 5.000 Wh. This corresponds to estimated carbon emissions of 1.900 gCO2-equivalents" in small
    # the top-level name (the 0.1.x README imports it from there) is the same function
    assert lamarr_energy_tracker.print_custom_paper_statement is print_custom_paper_statement


@needs_014
def test_custom_statement_is_014s_text_with_the_spacing_fix() -> None:
    theirs = run_014("from lamarr_energy_tracker.print_paper_statement import print_custom_paper_statement as p\n"
                     "p('the CO2 Impact Calculator', 'NVIDIA GTX 1080 GPU', 3.2)")
    ours = print_custom_paper_statement("the CO2 Impact Calculator", "NVIDIA GTX 1080 GPU", 3.2)
    head = lambda text: text.strip().split("~\\cite")[0]  # noqa: E731  (citations are fixed: no CodeCarbon here)
    assert head(ours) == head(theirs).replace("kWh.This", "kWh. This")


# ------------------------------------------------------------------------------ format_summary
def _store_with(folder: Path, source: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, folder / "emissions.csv")
    return folder


@needs_014
def test_format_summary_matches_014(tmp_path: Path) -> None:
    # CodeCarbon 2.x rows of one CPU without a GPU, as 0.1.x stored them (experiment_id
    # project___user___host): 0.1.4's format_summary can read those
    import csv

    with open(DATA / "codecarbon" / "cc2_empty_energy.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["energy_consumed"]]
    source = tmp_path / "src.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "experiment_id"])
        writer.writeheader()
        writer.writerows({**row, "experiment_id": "vision___ana___box"} for row in rows)
    store = _store_with(tmp_path / "store", source)
    theirs = json.loads(run_014(
        "import json\nfrom lamarr_energy_tracker.print_paper_statement import format_summary, load_results\n"
        f"print(json.dumps(format_summary(load_results({str(store)!r}))))"))
    from let_core import load_results

    ours = format_summary(load_results(store))
    assert list(ours) == theirs


def test_format_summary_names_every_hardware_instead_of_asserting(tmp_path: Path) -> None:
    import pandas as pd

    from let_core import load_results

    store = _store_with(tmp_path / "s", DATA / "codecarbon" / "cc3.csv")
    methodology, hardware, energy, rate = format_summary(load_results(store))
    assert methodology == "CodeCarbon 3.3.2"
    assert "Intel(R) Xeon(R) Gold 6226R CPU" in hardware and "NVIDIA A100" in hardware
    assert energy == "1.000 kWh" and rate == 380
    # a frame read by hand from a CodeCarbon file works too (LET's columns are derived)
    raw = pd.read_csv(DATA / "codecarbon" / "cc2.csv")
    assert format_summary(raw)[2] == "0.750 kWh"


# ------------------------------------------------------------------------------ the tracker module
def test_tracker_module_example_runs(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.tracker"], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Energy consumed (explicit):" in done.stdout and "kWh over" in done.stdout
    assert list(scratch.iterdir()) == []  # the example cleans up its temporary store


def test_print_paper_statement_is_module_and_function(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """0.1.x code reads the module's names; LET's README calls it. Either import order."""
    code = ("import lamarr_energy_tracker.tracker\n"
            "from lamarr_energy_tracker import print_paper_statement as p\n"
            "assert callable(p) and callable(p.emission_comparisons) and callable(p.format_summary)\n"
            "import lamarr_energy_tracker as l\n"
            "assert l.print_paper_statement is p\n"
            f"print(p({str(_store_with(tmp_path / 's', DATA / 'codecarbon' / 'cc3.csv'))!r}) != '')")
    for first in ("", "from lamarr_energy_tracker import print_paper_statement\n"):
        done = subprocess.run([sys.executable, "-c", first + code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "estimated to 1.000 kWh" in done.stdout and done.stdout.strip().endswith("True")


def test_010_positional_arguments_keep_their_meaning(tmp_path: Path) -> None:
    tracker = tracker_module.EnergyTracker("paper", "FRA", 2, str(tmp_path / "out"), None,
                                           backends=[], reporters=[])
    assert tracker.settings.country_iso_code == "FRA"
    assert tracker.settings.measure_power_secs == 2
    assert Path(tracker.output_dir) == tmp_path / "out"


# ------------------------------------------------------------------------------ headline meaning

@pytest.fixture
def ground_truth(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real ground-truth server on loopback, metering an emulated socket at 1800 W."""
    from let_groundtruth.config import parse_server_config
    from let_groundtruth.emulator import EmulatorFarm
    from let_groundtruth.server import RunningServer

    farm = EmulatorFarm([1800.0], names=["worker"]).start()
    server = RunningServer(parse_server_config(farm.config()), port=free_port(), token="t",
                           poll_interval=0.25).start()
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(server.port))
    monkeypatch.setenv("LET_GT_TOKEN", "t")
    monkeypatch.setenv("LET_GT_HOSTNAME", "worker")
    try:
        yield
    finally:
        server.stop()
        farm.close()


def test_facade_tracker_reports_codecarbon_even_with_ground_truth(ground_truth: None, tmp_path: Path) -> None:
    from let_core import EnergyTracker as LetTracker

    # 0.1.x code: no backend names, a ground-truth server configured in the environment
    old = tracker_module.EnergyTracker(project_name="compare", output_dir=str(tmp_path))
    assert {b.name for b in old.backends} >= {"codecarbon", "tasmota"}
    old.start()
    time.sleep(1.0)
    result = old.stop(print_summary=False)
    measured = result["measurements"]
    assert result["tracking_mode"] == "CodeCarbon"
    assert result["energy_consumed"] == measured["codecarbon"]["energy_consumed"]
    assert result["energy_consumed"] != measured["tasmota"]["energy_consumed"]
    assert measured["tasmota"]["energy_consumed"] * 3.6e6 / measured["tasmota"]["duration"] == \
        pytest.approx(1800, rel=0.1)
    assert old.last_result is not None and old.last_result["energy_consumed"] == result["energy_consumed"]
    # 0.1.x's timestamps: naive local time, start = end - duration
    from datetime import datetime, timedelta

    assert result["timestamp"].tzinfo is None and abs(datetime.now() - result["timestamp"]) < timedelta(minutes=5)
    assert result["start_time"] == result["timestamp"] - timedelta(seconds=result["duration"])
    # LET 1.x's tracker makes the metered value its headline and says so
    new = LetTracker(project_name="compare", output_dir=str(tmp_path), backends=["codecarbon", "tasmota"],
                     reporters=[])
    with new:
        time.sleep(1.0)
    headline = new.last_result
    assert headline is not None
    assert headline["tracking_mode"] == "Tasmota smart socket"
    assert headline["energy_consumed"] == headline["measurements"]["tasmota"]["energy_consumed"]
    assert "metered where any backend metered" in (LetTracker.__doc__ or "")


def test_facade_tracker_without_codecarbon_returns_the_chosen_backends_figure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Backends chosen without CodeCarbon: their figure, never NaN (it was NaN with a warning)."""
    import warnings

    from let_backends.manual import ManualBackend

    tracker = tracker_module.EnergyTracker(
        project_name="p", output_dir=str(tmp_path),
        backends=[ManualBackend(energy_kwh=0.5, kind="metered", methodology="Tasmota smart socket")])
    tracker.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LetWarning)  # nothing to warn about: the user chose this
        result = tracker.stop()
    assert result["energy_consumed"] == 0.5 and result["tracking_mode"] == "Tasmota smart socket"
    assert result["emissions"] == pytest.approx(0.5 * result["carbon_intensity"] / 1000)
    assert result["measurements"]["manual"]["energy_consumed"] == 0.5
    assert tracker.last_result is not None and tracker.last_result["energy_consumed"] == 0.5
    # what it prints is what it returns
    assert "Tracker stopped - this experiment consumed 0.500 kWh." in capsys.readouterr().out


def test_facade_tracker_prints_each_figure_when_codecarbon_is_not_the_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CodeCarbon + a manual GPU figure: the facade returns CodeCarbon's (0.1.x's meaning), the
    printed line named only the sum (it printed "80.273 mWh" and returned 6.2 mWh); now it names
    each figure, CodeCarbon's among them, and the sum."""
    from let_backends.manual import ManualBackend
    from let_core.statement import format_energy

    tracker = tracker_module.EnergyTracker(
        project_name="p", output_dir=str(tmp_path),
        backends=["codecarbon", ManualBackend(energy_kwh=7.41e-5, scope="gpu", hardware="NVIDIA A100")])
    tracker.start()
    time.sleep(0.5)
    result = tracker.stop()
    codecarbon = result["measurements"]["codecarbon"]["energy_consumed"]
    assert result["energy_consumed"] == codecarbon and result["tracking_mode"] == "CodeCarbon"
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Tracker stopped"))
    total = format_energy(codecarbon + 7.41e-5)
    assert line == (f"Tracker stopped - this experiment consumed {total} "
                    f"(codecarbon {format_energy(codecarbon)} + manual {format_energy(7.41e-5)}).")


def test_module_print_paper_statement_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store = _store_with(tmp_path / "s", DATA / "codecarbon" / "cc3.csv")
    text = pps_module.print_paper_statement(str(store))
    assert "estimated to 1.000 kWh" in text and "kg of CO2-equivalents" in text
    assert text in capsys.readouterr().out
    assert len(pps_module.load_results(str(store))) == 2


@needs_014
def test_load_results_matches_014_on_its_own_store(tmp_path: Path) -> None:
    """The rows, filters and derived project/user/host of a store LET 0.1.4 wrote."""
    store = _store_with(tmp_path / "s", DATA / "let014_emissions.csv")
    theirs = json.loads(run_014(
        "import json\nfrom lamarr_energy_tracker.print_paper_statement import load_results\n"
        f"all = load_results({str(store)!r})\nsome = load_results({str(store)!r}, project_name='vision')\n"
        "cols = ['run_id', 'project_name', 'user', 'hostname', 'energy_consumed']\n"
        "print(json.dumps([all[cols].values.tolist(), some['run_id'].tolist()]))"))
    ours_all = pps_module.load_results(str(store))
    ours_some = pps_module.load_results(str(store), project_name="vision")
    cols = ["run_id", "project_name", "user", "hostname", "energy_consumed"]
    assert ours_all[cols].values.tolist() == theirs[0]
    assert ours_some["run_id"].tolist() == theirs[1]


def test_module_cli_custom_statement_in_010_wording() -> None:
    done = subprocess.run([sys.executable, "-m", "lamarr_energy_tracker.print_paper_statement",
                           "--methodology", "the CO2 Impact Calculator", "--hardware", "NVIDIA GTX 1080 GPU",
                           "--consumed_energy", "3.2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "estimated to 3.200 kWh. This corresponds to estimated carbon emissions of 1.216 kgCO2-equivalents" \
        in done.stdout


def test_printed_line_names_a_figure_that_is_not_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A metered figure beside an estimate: the headline is the metered one, and the estimate
    (the facade's answer where it is CodeCarbon's) is on the line too, marked as not counted."""
    from let_backends.manual import ManualBackend

    tracker = tracker_module.EnergyTracker(
        project_name="p", output_dir=str(tmp_path),
        backends=[ManualBackend(energy_kwh=0.002, kind="metered", name="socket"),
                  ManualBackend(energy_kwh=0.0008, name="guess")])
    tracker.start()
    result = tracker.stop()
    assert result["energy_consumed"] == 0.002  # no CodeCarbon: the run's headline
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Tracker stopped"))
    assert line == ("Tracker stopped - this experiment consumed 2.000 Wh "
                    "(socket 2.000 Wh metered; not counted: guess 0.800 Wh estimated).")


# ------------------------------------------------------------------------------ what 0.1.x code patches
@pytest.fixture
def trap(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A real HTTP server where the configured ground-truth server would be: every request that
    goes around a patch lands here (0.1.x's tests patched, and LET's surface talked to the address)."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
    monkeypatch.setenv("LET_GT_PORT", str(server.server_address[1]))
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_patched_requests_get_sees_every_call_of_the_010_surface(trap: list[str]) -> None:
    from datetime import datetime
    from unittest.mock import Mock, patch

    import lamarr_energy_tracker.ground_truth_tracking as gtt

    answers = {"/list": ["host1"],
               "/host1/start": {"start_time": "2024-01-01T00:00:00", "timestamp": "2024-01-01T01:00:00",
                                "duration": 3600, "energy_consumed": 10},
               "/host1/stop": {"start_time": "2024-01-01T01:00:00", "timestamp": "2024-01-01T01:10:00",
                               "duration": 600, "energy_consumed": 0.25},
               "/cm?cmnd=Status%208": {"StatusSNS": {"ENERGY": {"Total": 1.5, "TotalStartTime": "2024-01-01T00:00:00"},
                                                     "Time": "2024-01-01T01:00:00"}}}

    def fake_get(url: str, **kwargs: object) -> Mock:
        path = "/" + url.split("/", 3)[3]
        response = Mock()
        response.json.return_value = answers[path]
        return response

    with patch("requests.get", side_effect=fake_get) as get, patch("socket.gethostname", return_value="host1"):
        with pytest.warns(LetWarning, match="LET 0.1.x server"):  # the answer has no session: 0.1.x's
            tracker = gtt.GroundTruthTracker(verbose=False)
            started = tracker.start()
        stopped = tracker.stop()
        command = gtt.GroundTruthTracker.send_command("127.0.0.1", "stop", 1)
        with pytest.warns(DeprecationWarning):
            socket_read = gtt.send_tasmota_query("127.0.0.1:1", "Status%208")
    assert trap == []  # nothing went around the patch
    assert started["energy_consumed"] == 10.0 and isinstance(started["start_time"], datetime)
    assert stopped["energy_consumed"] == 0.25 and stopped["tracking_mode"] == "GroundTruth"
    assert isinstance(stopped["duration"], float) and command["duration"] == 600.0
    assert socket_read is not None and socket_read["duration"] == 3600
    paths = ["/" + call.args[0].split("/", 3)[3] for call in get.call_args_list]
    assert paths.count("/host1/start") == 1 and paths.count("/host1/stop") == 2 and "/list" in paths


def test_a_patched_is_available_decides_alone(trap: list[str]) -> None:
    from unittest.mock import patch

    from lamarr_energy_tracker.ground_truth_tracking import GroundTruthTracker

    with patch.object(GroundTruthTracker, "is_available", return_value=True), \
            patch.object(GroundTruthTracker, "send_command", return_value={"energy_consumed": 1.0, "duration": 2.0}) as cmd:
        tracker = GroundTruthTracker(verbose=False)
        assert tracker.server_port == str(int(os.environ["LET_GT_PORT"]))
        tracker.stop()
    cmd.assert_called_once_with("127.0.0.1", "stop", os.environ["LET_GT_PORT"])
    with patch.object(GroundTruthTracker, "is_available", side_effect=RuntimeError("down")):
        with pytest.warns(LetWarning, match="down"):
            disabled = GroundTruthTracker(crash_if_unavailable=False, verbose=False)
    assert disabled.server_host is None and disabled.start()["energy_consumed"] == -1
    assert trap == []


def test_a_restart_reports_the_period_before_as_010_did(ground_truth: None) -> None:
    """0.1.x's start() after a start(): the answer says what the host used since the last one."""
    from lamarr_energy_tracker.ground_truth_tracking import GroundTruthTracker

    tracker = GroundTruthTracker(verbose=False)
    first = tracker.start()
    time.sleep(1.5)
    again = tracker.start()
    assert again["session_id"] != first["session_id"]
    assert again["energy_consumed"] * 3.6e6 / again["duration"] == pytest.approx(1800, rel=0.2)
    time.sleep(1.0)
    result = tracker.stop()
    assert result["session_id"] == again["session_id"] and result["energy_consumed"] > 0
