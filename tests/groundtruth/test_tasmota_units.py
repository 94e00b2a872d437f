"""Config parsing, the metering arithmetic and the emulator's firmware answers (no server)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from let_backends.tasmota.config import server_location
from let_core.errors import ConfigurationError
from let_groundtruth.config import SocketConfig, load_server_config, strip_json_comments
from let_groundtruth.emulator import EmulatedSocket, integrate_profile
from let_groundtruth.meter import HostMeter, quality
from let_groundtruth.protocol import EnergyReading, SocketError, TasmotaSocket
from let_groundtruth.service import GroundTruthService

README_EXAMPLE = """{
  "host1": "127.0.0.1",
  "host2": "127.0.0.2",
  "host3": "127.0.0.3",
  // ...
}
"""


def test_readme_config_with_comment_and_trailing_comma(tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text(README_EXAMPLE)
    sockets = load_server_config(path)
    assert list(sockets) == ["host1", "host2", "host3"]
    assert sockets["host2"].address == "127.0.0.2"


def test_config_object_form_ports_and_urls_in_strings(tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text('{"dgx": {"address": "127.0.0.2:8080", "password": "pw", // the big one\n'
                    '"hardware": "DGX-1 // 8x V100"}}')
    dgx = load_server_config(path)["dgx"]
    assert (dgx.address, dgx.user, dgx.password, dgx.hardware) == ("127.0.0.2:8080", "admin", "pw",
                                                                   "DGX-1 // 8x V100")
    assert strip_json_comments('{"u": "http://x"} // c') .strip() == '{"u": "http://x"}'


@pytest.mark.parametrize("text, fragment", [
    ('{\n"a": "1.2.3.4"\n"b": "1.2.3.5"}', "line 3"),
    ('{"a": "http://1.2.3.4"}', "without http://"),
    ('{"a": "1.2.3.4:99999"}', "bad port"),
    ('{"a": {"address": "1.2.3.4", "pasword": "x"}}', "unknown keys"),
    ('[]', "JSON object"),
    ('{"bad host!": "1.2.3.4"}', "not a valid host name"),
])
def test_config_errors_say_what_and_where(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "gt.json"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=fragment):
        load_server_config(path)


def test_server_location_env_then_file(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_location() is None
    let_home.mkdir(parents=True, exist_ok=True)
    (let_home / "GT_REMOTE_CONFIG").write_text("10.1.2.3:8123")
    loc = server_location()
    assert loc is not None and (loc.host, loc.port) == ("10.1.2.3", 8123)
    monkeypatch.setenv("LET_GT_HOST", "127.0.0.9")
    monkeypatch.setenv("LET_GT_PORT", "9000")
    loc = server_location()
    assert loc is not None and loc.url == "http://127.0.0.9:9000"
    monkeypatch.setenv("LET_GT_PORT", "nope")
    with pytest.raises(ConfigurationError, match="LET_GT_PORT"):
        server_location()


class ScriptedSocket:
    """Readings a test hands out one by one (the meter's input), None meaning 'no answer'."""

    def __init__(self) -> None:
        self.next: EnergyReading | None = None
        self.now = 0.0

    def read(self) -> EnergyReading:
        if self.next is None:
            raise SocketError("no answer")
        return self.next

    def clock(self) -> float:
        return self.now


def reading(total: float, power: float = 3600.0, start: str = "2025-01-01T00:00:00") -> EnergyReading:
    return EnergyReading(total, power, 230.0, 1.0, start, "2025-01-02T00:00:00")


def meter_with(script: ScriptedSocket) -> HostMeter:
    return HostMeter("h", script.read, clock=script.clock)


def step(meter: HostMeter, script: ScriptedSocket, t: float, r: EnergyReading | None) -> None:
    script.now, script.next = t, r
    meter.refresh(arrival=t)


def test_meter_adds_increases_and_survives_reset_and_reboot() -> None:
    s = ScriptedSocket()
    m = meter_with(s)
    step(m, s, 0.0, reading(10.0))
    start = m.snapshot()
    step(m, s, 1.0, reading(10.001))  # 3600 W for 1 s = 0.001 kWh
    step(m, s, 2.0, reading(0.0004, start="2025-01-02T00:00:01"))  # EnergyTotal 0 by someone
    step(m, s, 3.0, reading(0.0014, start="2025-01-02T00:00:01"))
    step(m, s, 4.0, reading(0.0024, start="2025-01-02T00:00:01"))
    step(m, s, 5.0, reading(0.0015, start="2025-01-02T00:00:01"))  # reboot: back to the last save
    step(m, s, 6.0, reading(0.0025, start="2025-01-02T00:00:01"))
    stop = m.snapshot()
    # exact increases 0.001 x 4, plus 0.001 estimated for each of the two drops
    assert stop.energy_kwh - start.energy_kwh == pytest.approx(0.006, rel=1e-9)
    q = quality(start, stop)
    assert (q["resets"], q["reboots"], q["gaps"], q["complete"]) == (1, 1, 0, False)
    assert q["estimated_kwh"] == pytest.approx(0.002)
    # the two drop intervals (1 s each) are interpolated: 2 of 6 s not metered
    assert (q["interpolated_gaps"], q["interpolated_seconds"]) == (2, 2.0)
    assert q["coverage"] == pytest.approx(4 / 6)


def test_meter_gap_bridged_exactly_and_open_gap_estimated() -> None:
    s = ScriptedSocket()
    m = meter_with(s)
    step(m, s, 0.0, reading(1.0))
    start = m.snapshot()
    step(m, s, 1.0, None)
    step(m, s, 2.0, None)
    mid = m.snapshot(now=2.0)  # open gap: provisional estimate from the last power
    assert mid.in_gap and mid.energy_kwh - start.energy_kwh == pytest.approx(0.002)
    step(m, s, 3.0, reading(1.0025))  # the counter kept counting: the gap's energy is exact
    stop = m.snapshot()
    q = quality(start, stop)
    assert stop.energy_kwh - start.energy_kwh == pytest.approx(0.0025)
    assert (q["gaps"], q["gap_seconds"], q["estimated_kwh"], q["socket_online"]) == (1, 3.0, 0.0, True)


def test_meter_concurrent_callers_reuse_one_attempt() -> None:
    s = ScriptedSocket()
    calls = []
    m = HostMeter("h", lambda: calls.append(1) or reading(1.0), clock=s.clock)
    s.now = 5.0
    assert m.refresh(arrival=5.0)
    assert m.refresh(arrival=4.0)  # an attempt started after this caller arrived: reused
    assert len(calls) == 1


def test_reading_instant_bracketed_by_the_exchange_not_the_whole_call() -> None:
    with EmulatedSocket(3000.0) as emu:
        meter = HostMeter("h", TasmotaSocket(emu.address, timeout=10.0).read)
        for _ in range(5):
            assert meter.refresh()
            taken = meter.last.taken
            emulated_t = emu.reads[-1][0]  # when the emulator took this reading, on its clock
            assert taken is not None and taken[0] <= emu._mono0 + emulated_t <= taken[1]
        # A socket trickling its body: the call is long, but the reading was taken before the
        # first byte, so its instant is still known to within the exchange, not half the call.
        emu.trickle_s = 0.002
        began = time.monotonic()
        assert meter.refresh()
        call_s = time.monotonic() - began
    assert meter.last_read_s < call_s / 4  # the bracket, not the trickled call
    assert meter.snapshot().timing_s == pytest.approx(meter.last_read_s / 2)


def test_session_boundary_reads_again_when_an_answer_was_held() -> None:
    """An answer held 0.3 s after its reading (a Wi-Fi queue) must not mark a session's boundary:
    its midpoint is 0.15 s off, 30% of this half-second session at constant power."""
    with EmulatedSocket(3000.0) as emu:
        svc = GroundTruthService({"h": SocketConfig("h", emu.address)}, socket_timeout=5.0)
        try:  # not started: no poller thread takes the held answers instead
            meter = svc.meter("h")
            for _ in range(10):
                assert meter.refresh()
            polls = meter.polls
            emu.held.append(0.3)
            started = svc.start_session("h")
            time.sleep(0.5)
            emu.held.append(0.3)
            result = svc.stop_session(started["session_id"])
        finally:
            svc.close()
    assert meter.polls - polls >= 4  # each boundary: the held reading (energy), then a sharp one
    assert result["quality"]["timing_uncertainty_s"] < 0.05
    truth = 3000.0 * result["duration"] / 3.6e6
    # 0.01 Wh counter steps are 2.4% of this session's 0.42 Wh
    assert result["energy_consumed"] == pytest.approx(truth, rel=0.05)


def test_session_boundary_takes_the_sharpest_when_every_answer_was_held() -> None:
    with EmulatedSocket(3000.0) as emu:
        svc = GroundTruthService({"h": SocketConfig("h", emu.address)}, socket_timeout=5.0)
        try:
            meter = svc.meter("h")
            for _ in range(10):
                assert meter.refresh()
            polls = meter.polls
            emu.held.extend([0.2, 0.02, 0.3, 0.25])  # all four boundary reads wide, the 2nd least
            started = svc.start_session("h")
            result = svc.stop_session(started["session_id"])
        finally:
            svc.close()
    assert meter.polls - polls >= 5  # BOUNDARY_READS for the start, then the stop
    # the 0.02 s one: its half-bracket is ~0.01 s, any other's at least 0.1 s
    assert result["quality"]["timing_uncertainty_s"] < 0.08


def test_integrate_profile_matches_closed_form() -> None:
    import math

    profile = lambda t: 100.0 + 50.0 * math.sin(t / 3.0)  # noqa: E731
    exact_j = 100.0 * 60 + 150.0 * (1 - math.cos(20.0))
    assert integrate_profile(profile, 0.0, 60.0) * 3.6e6 == pytest.approx(exact_j, rel=1e-9)
    assert integrate_profile(150.0, 0.0, 60.0) == pytest.approx(0.0025)


def test_emulator_answers_like_firmware() -> None:
    with EmulatedSocket(150.0, time_scale=50.0, start_total_kwh=2.0, password="pw") as emu:
        url = f"{emu.url}/cm"
        denied = requests.get(url, params={"cmnd": "Status 8"}, timeout=10)
        assert denied.status_code == 401 and "WARNING" in denied.json()
        ask = lambda c: requests.get(url, params={"user": "admin", "password": "pw", "cmnd": c},  # noqa: E731
                                     timeout=10).json()
        assert ask("EnergyRes 5") == {"EnergyRes": 5}
        sns = ask("Status 8")["StatusSNS"]
        energy = sns["ENERGY"]
        assert set(energy) >= {"TotalStartTime", "Total", "Yesterday", "Today", "Power", "Voltage", "Current"}
        assert energy["Power"] == 150 and energy["Total"] >= 2.0 and "Time" in sns
        assert ask("Status 10")["StatusSNS"]["ENERGY"]["Power"] == 150
        assert ask("Frobnicate") == {"Command": "Unknown"}
        assert ask("PowerSet 165") == {"PowerSet": 165.0}  # calibrate: this load now reads 165 W
        assert ask("Status 8")["StatusSNS"]["ENERGY"]["Power"] == 165
        assert ask("EnergyTotal 0")["EnergyTotal"]["Total"] == 0.0


def test_protocol_client_errors_are_clear() -> None:
    with EmulatedSocket(100.0, password="pw") as emu:
        with pytest.raises(SocketError, match="credentials"):
            TasmotaSocket(emu.address).read()
        good = TasmotaSocket(emu.address, password="pw").read()
        assert good.power_w == 100.0
        emu.hang()
        with pytest.raises(SocketError, match="did not answer"):
            TasmotaSocket(emu.address, password="pw", timeout=0.3, retries=1).read()
        emu.resume()
    with pytest.raises(SocketError, match="did not answer"):
        TasmotaSocket(emu.address, timeout=0.5, retries=0).read()  # closed: connection refused


def test_importing_the_plugin_stays_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys, let_backends.tasmota, lamarr_energy_tracker.ground_truth_tracking; "
            "print(json.dumps(sorted(m for m in ('requests', 'fastapi', 'uvicorn', 'pandas') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == []


def test_meter_reboot_in_gap_detected_by_uptime_even_when_counter_recovered() -> None:
    s = ScriptedSocket()
    uptime = {"value": 1000.0}
    m = HostMeter("h", s.read, uptime=lambda: uptime["value"], clock=s.clock)
    step(m, s, 0.0, reading(5.0))
    start = m.snapshot()
    step(m, s, 1.0, None)  # rebooting: silent
    uptime["value"] = 2.0  # booted 2 s ago, back at its last save and counting again
    step(m, s, 10.0, reading(5.0001))  # above the old Total: the counter alone cannot tell
    q = quality(start, m.snapshot())
    assert (q["reboots"], q["gaps"]) == (1, 1)
    assert m.snapshot().energy_kwh - start.energy_kwh == pytest.approx(0.010)  # 3600 W x 10 s


def test_meter_implausible_readings_are_gaps_and_never_poison() -> None:
    s = ScriptedSocket()
    m = meter_with(s)
    step(m, s, 0.0, reading(1.0))
    start = m.snapshot()
    step(m, s, 1.0, reading(1.001))
    step(m, s, 2.0, reading(float("inf")))  # refused: a failed poll, the baseline stays 1.001
    step(m, s, 3.0, reading(1e308))  # refused: beyond any real counter
    step(m, s, 4.0, reading(1.004))  # back: the silent 3 s are exact from the counter
    step(m, s, 5.0, reading(5000.0))  # EnergyTotal 5000000 (Wh): faster than 3680 W, interpolated
    step(m, s, 6.0, reading(5000.001))
    stop = m.snapshot()
    q = quality(start, stop)
    assert stop.energy_kwh - start.energy_kwh == pytest.approx(0.001 + 0.003 + 0.001 + 0.001)
    assert (q["implausible"], q["interpolated_gaps"], q["interpolated_seconds"]) == (3, 1, 1.0)
    assert q["coverage"] == pytest.approx(5 / 6) and q["complete"] is False
    later = m.snapshot()
    step(m, s, 7.0, reading(5000.002))
    q2 = quality(later, m.snapshot())
    assert q2["coverage"] == 1.0 and q2["complete"] is True


def test_meter_rated_max_is_configurable() -> None:
    from let_groundtruth.meter import Limits

    s = ScriptedSocket()
    m = HostMeter("h", s.read, clock=s.clock, limits=Limits(rated_max_w=500.0))
    step(m, s, 0.0, reading(1.0, power=400.0))
    start = m.snapshot()
    step(m, s, 10.0, reading(1.01, power=400.0))  # 3600 W average: too fast for a 500 W socket
    assert quality(start, m.snapshot())["implausible"] == 1


def test_meter_restore_bridges_downtime_exactly_or_as_gap() -> None:
    s = ScriptedSocket()
    m = meter_with(s)
    step(m, s, 0.0, reading(2.0))
    start = m.snapshot()
    state = m.state()
    again = meter_with(s)  # a restarted server
    again.restore(state)
    step(again, s, 10.0, reading(2.01))  # the counter went on: 3600 W x 10 s, exact
    q = quality(start, again.snapshot())
    assert again.snapshot().energy_kwh - start.energy_kwh == pytest.approx(0.01)
    assert q["coverage"] == 1.0 and q["interpolated_gaps"] == 0 and q["gaps"] == 1
    reset = meter_with(s)
    reset.restore(state)
    step(reset, s, 10.0, reading(0.002, start="2025-01-03T00:00:00"))  # reset while no one watched
    q = quality(start, reset.snapshot())
    assert (q["resets"], q["interpolated_gaps"], q["interpolated_seconds"], q["coverage"]) == (1, 1, 10.0, 0.0)


def test_state_dir_is_one_servers(tmp_path: Path) -> None:
    from let_core.errors import ConfigurationError
    from let_groundtruth.state import StateStore

    first = StateStore(tmp_path / "st")
    with pytest.raises(ConfigurationError, match="already uses the state directory"):
        StateStore(tmp_path / "st")
    first.close()
    StateStore(tmp_path / "st").close()  # free again once the first is gone
