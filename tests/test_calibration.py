"""Wall-socket calibration of estimates: the fit on synthetic paired runs of known truth, its
intervals, its refusals, the stored file, and where it is applied (load_results, `lett results`,
the statement)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from paired_runs import rows, synthetic_runs, true_wall

from let_core.cli import main
from let_core.errors import LetWarning
from let_core.results import load_results
from let_core.results.calibration import CalibrationRefused, calibration_path, fit, load_calibrations, paired_runs, save
from let_core.store import Store


def frame_of(runs) -> pd.DataFrame:
    return pd.DataFrame(rows(runs))


def fitted(n: int = 160, seed: int = 0, **kwargs):
    return fit(paired_runs(frame_of(synthetic_runs(n, seed=seed, **kwargs)), "ws28"))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# ------------------------------------------------------------------ the fit
def test_fit_recovers_scale_and_base_power_within_its_own_interval():
    inside = {"estimate": 0, "duration": 0}
    seeds = range(40)
    for seed in seeds:
        a, base = 1.1 + 0.01 * seed, 20.0 + seed
        calibration = fitted(120, seed, a=a, base_w=base)
        assert calibration.model == "scale+base"
        assert abs(calibration.scale - a) < 0.05 and abs(calibration.base_power_w - base) < 8
        intervals = calibration.intervals()
        inside["estimate"] += intervals["estimate"][0] <= a <= intervals["estimate"][1]
        inside["duration"] += intervals["duration"][0] <= base <= intervals["duration"][1]
    # 90% intervals: about 36 of 40 seeds; a binomial spread of a few either way.
    for term, count in inside.items():
        assert 31 <= count <= 40, (term, count)


def test_prediction_intervals_hold_the_truth_for_85_to_95_percent_of_held_out_runs():
    held, total = 0, 0
    for seed in range(12):
        calibration = fitted(200, seed)
        new = frame_of(synthetic_runs(200, seed=1000 + seed, metered=True))
        truth = new[new["backend"] == "tasmota"]["energy_consumed"].astype(float).to_numpy()
        corrected = load_like(new, calibration)
        estimate_rows = corrected[corrected["backend"] == "codecarbon"]
        low, high = estimate_rows["calibrated_low_kwh"].to_numpy(), estimate_rows["calibrated_high_kwh"].to_numpy()
        held += int(np.sum((truth >= low) & (truth <= high)))
        total += len(truth)
    assert 0.85 <= held / total <= 0.95, held / total


def load_like(frame: pd.DataFrame, calibration) -> pd.DataFrame:
    from let_core.results.calibration import calibrate_frame

    return calibrate_frame(frame, {calibration.hostname: calibration})


def test_fit_is_robust_to_outlying_readings():
    runs = synthetic_runs(160, seed=3, a=1.25, base_w=50)
    frame = frame_of(runs)
    metered = frame.index[frame["backend"] == "tasmota"][::20]  # every 20th reading 3x off
    frame.loc[metered, "energy_consumed"] = frame.loc[metered, "energy_consumed"].astype(float) * 3
    calibration = fit(paired_runs(frame, "ws28"))
    assert abs(calibration.scale - 1.25) < 0.04 and abs(calibration.base_power_w - 50) < 8


def test_relative_error_weights_keep_small_runs_from_dominating_with_a_coarse_meter():
    # A 1 Wh panel meter: short, low-power runs are mostly rounding; the fit still holds.
    runs = synthetic_runs(200, seed=4, power_w=(60, 400), duration_s=(60, 7200))
    frame = frame_of(runs)
    walls = frame["backend"] == "tasmota"
    frame.loc[walls, "energy_consumed"] = (frame.loc[walls, "energy_consumed"].astype(float) * 1000).round() / 1000
    calibration = fit(paired_runs(frame, "ws28"), resolution_wh=1.0)
    assert calibration.resolution_kwh == 0.001
    assert abs(calibration.scale - 1.21) < 0.05 and abs(calibration.base_power_w - 41) < 10


def test_component_terms_only_when_cross_validation_prefers_them():
    simple = fitted(240, 5)
    assert simple.model == "scale+base"
    # Truth per component: the GPU's estimate is far lower than what it draws, the CPU's not.
    runs = synthetic_runs(240, seed=6, a=1.0, base_w=30, noise=0.01)
    frame = frame_of(runs)
    est = frame[frame["backend"] == "codecarbon"].set_index("run_id")
    truth = (1.05 * est["cpu_energy"].astype(float) + 1.6 * est["gpu_energy"].astype(float)
             + 1.0 * est["ram_energy"].astype(float) + 0.030 * est["duration"].astype(float) / 3600)
    walls = frame["backend"] == "tasmota"
    frame.loc[walls, "energy_consumed"] = truth.loc[frame.loc[walls, "run_id"]].to_numpy() * (
        1 + 0.01 * np.random.default_rng(6).standard_normal(int(walls.sum())))
    components = fit(paired_runs(frame, "ws28"))
    assert components.model == "components+base"
    assert components.terms == ("cpu", "gpu", "ram", "duration")
    assert abs(components.coefficients[1] - 1.6) < 0.1
    assert "x its GPU estimate" in components.describe()


def test_a_run_outside_the_fitted_range_gets_a_wider_interval_and_is_flagged():
    calibration = fitted(160, 7, power_w=(100, 200))
    inside = frame_of(synthetic_runs(1, seed=8, power_w=(150, 150.001), duration_s=(3600, 3600.1), metered=False))
    outside = frame_of(synthetic_runs(1, seed=8, power_w=(600, 600.001), duration_s=(3600, 3600.1), metered=False))
    a, b = load_like(inside, calibration).iloc[0], load_like(outside, calibration).iloc[0]
    assert not a["calibrated_outside_range"] and b["calibrated_outside_range"]
    width = lambda r: (r["calibrated_high_kwh"] - r["calibrated_low_kwh"]) / r["calibrated_kwh"]  # noqa: E731
    assert width(b) > 2 * width(a)


# ------------------------------------------------------------------ refusals
def test_one_paired_run_is_refused():
    with pytest.raises(CalibrationRefused, match=r"1 run\(s\) measured both ways.*at least 8"):
        fitted(1, 0)


def test_runs_all_at_one_power_and_length_are_refused():
    with pytest.raises(CalibrationRefused, match="all drew about 200 W.*cannot be told apart"):
        fitted(30, 0, power_w=(200, 200.001), duration_s=(1800, 1800.001))


def test_metered_figures_below_half_coverage_are_refused():
    with pytest.raises(CalibrationRefused, match="40 of its runs measured both ways have gaps.*leaving 0 fully"):
        fitted(40, 0, coverage=0.4)


def test_socket_metering_another_machine_is_refused():
    with pytest.raises(CalibrationRefused, match="below the codecarbon estimates.*metering another machine"):
        fitted(40, 0, metered_scale=0.05)


def test_failed_runs_and_tasks_are_left_out():
    runs = synthetic_runs(40, seed=9) + synthetic_runs(10, seed=10, status="failed")
    calibration = fit(paired_runs(frame_of(runs), "ws28"))
    assert calibration.runs == 40


# ------------------------------------------------------------------ CLI, file, application
@pytest.fixture
def calibrated_store(let_home: Path) -> Path:
    Store(let_home).append(rows(synthetic_runs(120, seed=11)) + rows(synthetic_runs(5, seed=12, metered=False))
                           + rows(synthetic_runs(5, seed=13, metered=False, host="ws29"))
                           + rows(synthetic_runs(5, seed=14, metered=False, host="other", cpu_model="AMD EPYC")))
    return let_home


def test_cli_fit_show_remove_and_stored_rows_untouched(calibrated_store, tmp_path, capsys):
    store = calibrated_store / "emissions.csv"
    before = store.read_bytes()
    code, out, _ = run_cli(capsys, "calibration", "fit")
    assert code == 0
    assert "on ws28 the wall saw 1.2" in out and "x CodeCarbon's estimate plus 4" in out
    assert "W it does not see; cross-validated error" in out and "from 120 runs" in out
    assert store.read_bytes() == before
    path = calibration_path("ws28")
    assert path.parent == calibrated_store / "calibration"
    body = json.loads(path.read_text())
    assert body["version"] == 1 and body["runs"] == 120 and len(body["residuals"]) == 120
    assert body["power_w"][0] < body["power_w"][1] and body["first_run"] < body["last_run"]
    # An output_dir store is read, but nothing is written into it but emissions.csv.
    other = tmp_path / "elsewhere"
    Store(other).append(rows(synthetic_runs(40, seed=15, host="remote")))
    code, out, _ = run_cli(capsys, "calibration", "fit", "--output-dir", str(other))
    assert code == 0 and sorted(p.name for p in other.iterdir()) == ["emissions.csv"]
    assert calibration_path("remote").exists()
    code, out, _ = run_cli(capsys, "calibration", "show", "--hostname", "ws28")
    assert code == 0 and "on ws28 the wall saw" in out and "remote" not in out
    code, out, _ = run_cli(capsys, "calibration", "remove", "ws28")
    assert code == 0 and not path.exists()
    code, out, err = run_cli(capsys, "calibration", "remove", "ws28")
    assert code == 1 and "no calibration of ws28" in err


def test_cli_refusal_says_why(let_home, capsys):
    Store(let_home).append(rows(synthetic_runs(1, seed=0)))
    code, _, err = run_cli(capsys, "calibration", "fit", "--hostname", "ws28")
    assert code == 1 and "refused: cannot calibrate ws28" in err
    assert not calibration_path("ws28").exists()


def test_load_results_calibrated_columns_only_for_estimates_of_calibrated_hosts(calibrated_store):
    save(fit(paired_runs(load_results(), "ws28")))
    frame = load_results(calibrated=True)
    estimates = (frame["backend"] == "codecarbon") & (frame["hostname"] == "ws28")
    assert frame.loc[estimates, "calibrated_kwh"].notna().all()
    assert (frame.loc[estimates, "calibrated_kwh"] > frame.loc[estimates, "energy_consumed"]).all()
    assert frame.loc[~estimates, "calibrated_kwh"].isna().all()
    assert "calibrated_kwh" not in load_results().columns
    borrowed = load_results(calibrated=True, transfer=True)
    ws29 = borrowed["hostname"] == "ws29"
    assert borrowed.loc[ws29, "calibrated_kwh"].notna().all() and (borrowed.loc[ws29, "calibrated_by"] == "ws28").all()
    assert borrowed.loc[borrowed["hostname"] == "other", "calibrated_kwh"].isna().all()  # other hardware


def test_corrected_figure_is_close_to_the_truth_of_estimate_only_runs(calibrated_store):
    save(fit(paired_runs(load_results(), "ws28")))
    frame = load_results(hostname="ws28", calibrated=True)
    alone = frame[frame["run_id"].isin(set(frame["run_id"]) - set(frame.loc[frame["backend"] == "tasmota", "run_id"]))]
    truth = true_wall(alone["energy_consumed"], alone["duration"], 1.21, 41.0)
    assert np.allclose(alone["calibrated_kwh"], truth, rtol=0.05)


def test_results_calibrated_column(calibrated_store, capsys):
    save(fit(paired_runs(load_results(), "ws28")))
    code, out, _ = run_cli(capsys, "results", "--calibrated", "--hostname", "ws29", "--transfer")
    assert code == 0 and "calibrated" in out.splitlines()[0] and "by ws28's calibration" in out


def test_damaged_or_other_version_calibration_is_ignored_with_a_warning(calibrated_store):
    calibration = fit(paired_runs(load_results(), "ws28"))
    path = save(calibration)
    body = json.loads(path.read_text())
    for damage in ('{"format": "let-calibration", "version": 1, "hostname": "ws28"',
                   json.dumps({**body, "version": 99, "let_version": "9.0"}),
                   json.dumps({**body, "coefficients": [1.2, float("nan")]}).replace("NaN", "NaN")):
        path.write_text(damage)
        with pytest.warns(LetWarning, match=r"calibration file .*ws28.json is ignored, never applied"):
            frame = load_results(calibrated=True)
        assert frame["calibrated_kwh"].isna().all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_calibrations() == {}


def test_statement_names_the_calibration_and_never_calls_it_measured(calibrated_store, capsys):
    code, plain, _ = run_cli(capsys, "statement", "--hostname", "ws28")
    save(fit(paired_runs(load_results(), "ws28")))
    code, out, _ = run_cli(capsys, "statement", "--hostname", "ws28")
    assert code == 0
    sentence = next(s for s in out.split(". ") if "calibration" in s)
    assert "For the 5 runs on ws28 measured by estimate only" in sentence
    assert "corrected by a wall-socket calibration of this host from 120 paired runs" in sentence
    assert "90% interval" in sentence and "\\cite{ai_energy_validation}" in sentence
    assert "measured by estimate only" in sentence and " measured " not in sentence.replace("measured by estimate", "")
    code, off, _ = run_cli(capsys, "statement", "--hostname", "ws28", "--no-calibration")
    assert off == plain and "calibration" not in off
    # A host never calibrated stays as it was, unless --transfer lends identical hardware's.
    code, ws29, _ = run_cli(capsys, "statement", "--hostname", "ws29")
    assert "calibration" not in ws29
    code, lent, _ = run_cli(capsys, "statement", "--hostname", "ws29", "--transfer")
    assert "calibration of host ws28" in lent and "ws29 has no calibration of its own and borrowed that of ws28" in lent
    code, other, _ = run_cli(capsys, "statement", "--hostname", "other", "--transfer")
    assert "calibration" not in other


# ------------------------------------------------------------------ low wall power
def test_a_run_below_60_w_at_the_wall_is_flagged_at_stop_and_by_doctor(let_home, monkeypatch):
    import time

    from let_core.doctor import diagnose
    from let_core.tracker import EnergyTracker
    from let_groundtruth.config import parse_server_config
    from let_groundtruth.emulator import EmulatorFarm
    from let_groundtruth.server import RunningServer
    from tests.loopback import free_port

    farm = EmulatorFarm([40.0, 300.0], names=["laptop", "box"]).start()
    server = RunningServer(parse_server_config(farm.config()), port=free_port(), token="t",
                           poll_interval=0.25).start()
    try:
        monkeypatch.setenv("LET_GT_HOST", "127.0.0.1")
        monkeypatch.setenv("LET_GT_PORT", str(server.port))
        monkeypatch.setenv("LET_GT_TOKEN", "t")
        for host, flagged in (("box", False), ("laptop", True)):
            monkeypatch.setenv("LET_GT_HOSTNAME", host)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                with EnergyTracker(project_name="low", backends=["tasmota"], reporters=[]):
                    time.sleep(1.5)
            messages = [str(w.message) for w in seen if issubclass(w.category, LetWarning)]
            assert any("read poorly below 60 W" in m for m in messages) == flagged, messages
    finally:
        server.stop()
        farm.close()
    notes = [str(f) for f in diagnose(let_home).findings if "below 60 W" in str(f)]
    assert len(notes) == 1 and "1 wall-socket (tasmota) row(s)" in notes[0]


# ------------------------------------------------------------------ seen
def test_view_data_and_plot_of_a_calibration(calibrated_store, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is the plot extra")
    from let_core.results.calibration import view_data

    calibration = fit(paired_runs(load_results(), "ws28"))
    save(calibration)
    view = view_data(load_results(), calibration)
    assert len(view["paired"]["wall_w"]) == 120 and len(view["corrected"]["calibrated_w"]) == 5
    line = view["line"]
    assert all(lo <= mid <= hi for lo, mid, hi in zip(line["low_w"], line["wall_w"], line["high_w"]))
    # The fitted line in power: wall = a * estimate + P_base.
    assert line["wall_w"][0] == pytest.approx(calibration.scale * line["estimate_w"][0] + calibration.base_power_w,
                                              rel=1e-3)
    output = tmp_path / "calibration.png"
    code, out, _ = run_cli(capsys, "plot", "--calibration", "--output", str(output))
    assert code == 0 and "calibration of ws28" in out
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and output.stat().st_size > 20_000


# ------------------------------------------------------------------ metered figures' intervals
def test_metered_interval_only_where_the_socket_was_checked(let_home, capsys):
    from click.testing import CliRunner

    from let_core.results.calibration import socket_check_path
    from let_groundtruth.cli import gt as gt_cli
    from let_groundtruth.emulator import EmulatorFarm

    Store(let_home).append(rows(synthetic_runs(10, seed=31)))
    code, unchecked, _ = run_cli(capsys, "statement")
    assert code == 0 and "checked against a known load" not in unchecked and "interval" not in unchecked
    farm = EmulatorFarm([100.0], names=["ws28"]).start()
    try:
        result = CliRunner().invoke(gt_cli, ["calibrate", "ws28", "--volts", "230", "--watts", "100",
                                             "--address", farm.sockets["ws28"].address])
    finally:
        farm.close()
    assert result.exit_code == 0, result.output
    assert "verdict: OK" in result.output and socket_check_path("ws28").exists()
    code, checked, _ = run_cli(capsys, "statement")
    frame = load_results()
    metered = frame.loc[frame["backend"] == "tasmota", "energy_consumed"].astype(float)
    total = metered.sum()
    spread = total * 0.5 / 100 + 10 * 1e-5  # the check read 100 W to half a watt; 10 runs' 0.01 Wh counters
    from let_core.statement import format_energy

    assert (f"The socket of ws28 was checked against a known load (`lett gt calibrate`): the measured "
            f"{format_energy(total)} lies within {format_energy(total - spread)} to {format_energy(total + spread)}"
            ) in checked
    socket_check_path("ws28").write_text("{broken")
    with pytest.warns(LetWarning, match="socket check .* is ignored"):
        from let_core.statement import paper_statement

        damaged = paper_statement()
    assert "checked against a known load" not in damaged
