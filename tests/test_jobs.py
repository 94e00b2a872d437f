"""Jobs as launchers define them (Slurm, torchrun, accelerate, MPI), one meter per node, and
CodeCarbon inside Slurm without ``scontrol``; real Slurm and torchrun where they run here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from let_core import jobs, nodemeter

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in jobs.LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    _clean_env(monkeypatch)
    return monkeypatch


def test_no_launcher_is_no_job(no_launcher: pytest.MonkeyPatch) -> None:
    job = jobs.detect()
    assert job.launcher == "" and not job.multi_rank
    assert job.fields() == {}


def test_slurm_step_and_ranks_are_recorded(no_launcher: pytest.MonkeyPatch) -> None:
    for name, value in {"SLURM_JOB_ID": "812", "SLURM_STEP_ID": "2", "SLURM_PROCID": "3",
                        "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "4"}.items():
        no_launcher.setenv(name, value)
    job = jobs.detect()
    assert job.fields() == {"launcher": "slurm", "job_id": "812", "step_id": "2", "rank": "3",
                            "local_rank": "1", "node_id": "1", "world_size": "4"}
    assert job.multi_rank and job.launch_key == "812.2"


def test_slurm_array_task_is_its_own_job_of_one_array(no_launcher: pytest.MonkeyPatch) -> None:
    for name, value in {"SLURM_JOB_ID": "901", "SLURM_ARRAY_JOB_ID": "900",
                        "SLURM_ARRAY_TASK_ID": "1"}.items():
        no_launcher.setenv(name, value)
    fields = jobs.detect().fields()
    assert fields["job_id"] == "901" and fields["array_job_id"] == "900" and fields["array_task_id"] == "1"


def test_torchrun_inside_slurm_takes_torchs_ranks(no_launcher: pytest.MonkeyPatch) -> None:
    for name, value in {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0",
                        "SLURM_NTASKS": "1", "TORCHELASTIC_RUN_ID": "abc", "RANK": "1",
                        "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        no_launcher.setenv(name, value)
    fields = jobs.detect().fields()
    # The allocation is Slurm's; the ranks of this launch are torch's.
    assert fields["launcher"] == "slurm+torchrun" and fields["job_id"] == "5"
    assert fields["rank"] == "1" and fields["world_size"] == "2" and fields["launch_id"] == "abc"


def test_mpi_ranks(no_launcher: pytest.MonkeyPatch) -> None:
    for name, value in {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
                        "OMPI_COMM_WORLD_SIZE": "3"}.items():
        no_launcher.setenv(name, value)
    fields = jobs.detect().fields()
    assert fields["launcher"] == "mpi" and fields["rank"] == "2" and fields["world_size"] == "3"
    assert fields["local_rank"] == "0"


def test_accelerate_is_named(no_launcher: pytest.MonkeyPatch) -> None:
    for name, value in {"ACCELERATE_MIXED_PRECISION": "no", "RANK": "0", "LOCAL_RANK": "0",
                        "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        no_launcher.setenv(name, value)
    assert jobs.detect().fields()["launcher"] == "accelerate"


def test_rank_without_world_size_is_a_note_not_a_crash(no_launcher: pytest.MonkeyPatch) -> None:
    no_launcher.setenv("RANK", "3")
    job = jobs.detect()
    assert job.fields()["rank"] == "3"
    assert "WORLD_SIZE" in job.note and "RANK=3" in job.note
    no_launcher.setenv("WORLD_SIZE", "two")
    assert "WORLD_SIZE='two'" in jobs.detect().note
    no_launcher.setenv("WORLD_SIZE", "2")
    no_launcher.setenv("RANK", "5")
    assert "outside 0..1" in jobs.detect().note


def test_rank_without_world_size_is_recorded_as_one_process_and_said(no_launcher: pytest.MonkeyPatch,
                                                                     let_home: Path, tmp_path: Path) -> None:
    from let_backends.manual import ManualBackend
    from let_core.results import frame_totals, load_results
    from let_core.tracker import EnergyTracker

    no_launcher.setenv("RANK", "1")  # a launcher that set RANK but not WORLD_SIZE
    no_launcher.setenv("LET_RUNTIME_DIR", str(tmp_path / "run"))
    with EnergyTracker(project_name="p", backends=[ManualBackend(power_watts=10)], reporters=[]):
        pass
    row = load_results(let_home).iloc[0]
    assert row["rank"] == "1" and row["world_size"] == ""
    assert "RANK=1 without WORLD_SIZE" in row["job_note"] and "not treated as one of several ranks" in row["job_note"]
    # Not one of several ranks: no election, and this process measured its node itself.
    assert row["node_meter"] == "" and row["error"] == "" and row["energy_consumed"] > 0
    assert not list((tmp_path / "run").glob("node-meter-*.lock"))
    assert frame_totals(load_results(let_home)).energy_kwh == pytest.approx(row["energy_consumed"])


def test_tracker_records_the_job_fields_in_the_store(no_launcher: pytest.MonkeyPatch, let_home: Path) -> None:
    from let_backends.manual import ManualBackend
    from let_core.results import load_results
    from let_core.tracker import EnergyTracker

    for name, value in {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "1", "SLURM_PROCID": "0",
                        "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "1"}.items():
        no_launcher.setenv(name, value)
    with EnergyTracker(project_name="p", backends=[ManualBackend(power_watts=10)], reporters=[]):
        pass
    row = load_results(let_home).iloc[0]
    assert (row["job_id"], row["step_id"], row["rank"], row["launcher"]) == ("77", "1", "0", "slurm")


# ------------------------------------------------------------------ CodeCarbon without scontrol
def test_codecarbon_inside_slurm_without_scontrol_still_estimates(tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH with no scontrol, as inside a container on a Slurm node
    bare.mkdir()
    code = textwrap.dedent("""
        import json, warnings
        from let_core.tracker import EnergyTracker
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with EnergyTracker(project_name="slurm", backends=["codecarbon"], reporters=[]) as t:
                pass
        m = t.last_run.measurements[0]
        print(json.dumps({"energy": m.energy_kwh, "error": m.error, "note": m.extras.get("note", ""),
                          "cpu_count": m.extras.get("cpu_count")}))
    """)
    env = {**os.environ, "PATH": str(bare), "SLURM_JOB_ID": "4242", "LET_HOME": str(tmp_path / "h"),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] == "" and result["energy"] > 0
    assert "scontrol" in result["note"] and "4242" in result["note"]
    assert result["cpu_count"] == os.cpu_count()


def test_slurm_batch_script_is_no_rank(no_launcher: pytest.MonkeyPatch) -> None:
    # What sbatch -n 2 sets in the batch script itself (no SLURM_STEP_ID): not a launch's rank.
    for name, value in {"SLURM_JOB_ID": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "2",
                        "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}.items():
        no_launcher.setenv(name, value)
    job = jobs.detect()
    assert job.fields() == {"launcher": "slurm", "job_id": "3", "node_id": "0"}
    assert not job.multi_rank


# ------------------------------------------------------------------ one meter per node
def _job(rank: int, world: int = 2) -> jobs.Job:
    return jobs.Job(launcher="slurm", job_id="9", step_id="0", rank=str(rank), local_rank=str(rank),
                    world_size=str(world))


def test_one_leader_per_node_and_launch(tmp_path: Path) -> None:
    first = nodemeter.elect_node_leader(_job(0), tmp_path, "node1")
    second = nodemeter.elect_node_leader(_job(1), tmp_path, "node1")
    other_node = nodemeter.elect_node_leader(_job(1), tmp_path, "node2")
    try:
        assert first.leader and not second.leader and other_node.leader
        assert "leader's (rank 0, pid " in second.note and f"pid {os.getpid()}" in second.note
    finally:
        first.release()
        other_node.release()


def test_stale_lock_of_a_killed_leader_is_taken_over(tmp_path: Path) -> None:
    # A leader killed with SIGKILL: the kernel drops its flock, the file with its pid stays.
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from let_core import jobs, nodemeter
        job = jobs.Job(launcher="slurm", job_id="9", step_id="0", rank="0", world_size="2")
        assert nodemeter.elect_node_leader(job, Path({str(tmp_path)!r}), "node1").leader
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    heir = nodemeter.elect_node_leader(_job(1), tmp_path, "node1")
    try:
        assert heir.leader and "took over from rank 0, pid " in heir.note
    finally:
        heir.release()


def test_followers_leave_node_backends_to_the_leader(no_launcher: pytest.MonkeyPatch, let_home: Path,
                                                     tmp_path: Path) -> None:
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker

    for name, value in {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1",
                        "SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_NTASKS": "2"}.items():
        no_launcher.setenv(name, value)
    no_launcher.setenv("LET_RUNTIME_DIR", str(tmp_path / "run"))
    leader = nodemeter.elect_node_leader(jobs.detect(), tmp_path / "run", "vm")
    no_launcher.setenv("LET_HOSTNAME", "vm")
    try:
        gpu = ManualBackend(power_watts=50, scope="gpu", name="gpu", hardware="NVIDIA A100 GPU")
        with EnergyTracker(project_name="p", backends=[ManualBackend(power_watts=100), gpu],
                           reporters=[]) as tracker:
            pass
    finally:
        leader.release()
    by_name = {m.backend: m for m in tracker.last_run.measurements}
    assert by_name["gpu"].ok  # its own device
    assert not by_name["manual"].ok and "leader's" in by_name["manual"].error
    assert "leader's" in tracker.last_run.environment["node_meter"]


# ------------------------------------------------------------------ real Slurm, real torchrun
TRACK = textwrap.dedent("""
    import sys, time
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    with EnergyTracker(project_name="cluster", backends=[ManualBackend(power_watts=360)], reporters=[]):
        time.sleep(float(sys.argv[1]))
""")


def _slurm_problem() -> str:
    if shutil.which("srun") is None or shutil.which("sinfo") is None:
        return "Slurm is not installed (scripts/slurm_localhost.sh installs and starts it, as root)"
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed ({exc}); run scripts/slurm_localhost.sh as root"
    if state.returncode != 0 or not any(s.strip("*~#") in ("idle", "mixed", "allocated")
                                        for s in state.stdout.split()):
        return (f"no usable Slurm node here (sinfo: {state.stdout.strip() or state.stderr.strip()}); "
                "run scripts/slurm_localhost.sh as root")
    return ""


@pytest.fixture
def slurm(tmp_path: Path, let_home: Path) -> dict[str, str]:
    problem = _slurm_problem()
    if problem:
        pytest.skip(problem)
    script = tmp_path / "track.py"
    script.write_text(TRACK)
    env = {k: v for k, v in os.environ.items() if k not in jobs.LAUNCHER_VARIABLES}
    env.update(PYTHONPATH=str(ROOT), LET_HOME=str(let_home), LET_LOAD_PLUGINS="")
    return {**env, "TRACK": str(script)}


def _by_job(let_home: Path) -> list[dict[str, object]]:
    from let_core.results import aggregate, load_results

    return aggregate(load_results(let_home), "job").to_dict(orient="records")


def test_srun_two_ranks_count_the_node_once(slurm: dict[str, str], let_home: Path) -> None:
    done = subprocess.run(["srun", "-n", "2", "-t", "5", sys.executable, slurm["TRACK"], "2"],
                          env=slurm, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from let_core.results import load_results

    rows = load_results(let_home)
    assert sorted(rows["rank"]) == ["0", "1"] and set(rows["world_size"]) == {"2"}
    assert set(rows["launcher"]) == {"slurm"} and rows["step_id"].nunique() == 1
    measured = rows[rows["error"] == ""]
    assert len(measured) == 1, "one rank measures the node, the other leaves it to its leader"
    (job,) = _by_job(let_home)
    assert (job["runs"], job["nodes"], job["ranks"]) == (1, 1, 2)
    assert job["kwh"] == pytest.approx(measured["energy_consumed"].iloc[0])
    assert job["wall_s"] >= 2


def test_sbatch_three_sequential_steps_count_each(slurm: dict[str, str], let_home: Path, tmp_path: Path) -> None:
    batch = tmp_path / "job.sh"
    batch.write_text("#!/bin/bash\n" + "".join(
        f"srun -n 1 {sys.executable} {slurm['TRACK']} 1\n" for _ in range(3)))
    done = subprocess.run(["sbatch", "--wait", "-n", "1", "-t", "5", "-o", str(tmp_path / "out.txt"), str(batch)],
                          env=slurm, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + (tmp_path / "out.txt").read_text()
    from let_core.results import frame_totals, load_results

    rows = load_results(let_home)
    assert sorted(rows["step_id"]) == ["0", "1", "2"] and rows["job_id"].nunique() == 1
    (job,) = _by_job(let_home)
    assert job["runs"] == 3
    assert job["kwh"] == pytest.approx(rows["energy_consumed"].sum())
    assert frame_totals(rows).energy_kwh == pytest.approx(rows["energy_consumed"].sum())
    from click.testing import CliRunner

    from let_core.cli import cli

    shown = CliRunner().invoke(cli, ["results", "--by", "job", "--output-dir", str(let_home)])
    assert shown.exit_code == 0, shown.output
    assert "nodes" in shown.output and "ranks" in shown.output and "wall" in shown.output


TORCH_TRACK = textwrap.dedent("""
    import torch, torch.distributed as dist
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    with EnergyTracker(project_name="ddp", backends=[ManualBackend(power_watts=360)], reporters=[]):
        dist.init_process_group("gloo")
        value = torch.ones(1) * dist.get_rank()
        dist.all_reduce(value)
        assert value.item() == 1.0
        dist.barrier()
        dist.destroy_process_group()
""")


def test_torchrun_two_cpu_processes_are_one_launch(tmp_path: Path, let_home: Path) -> None:
    pytest.importorskip("torch", reason="torch is in the test extra; without it torchrun cannot run")
    script = tmp_path / "ddp.py"
    script.write_text(TORCH_TRACK)
    env = {k: v for k, v in os.environ.items() if k not in jobs.LAUNCHER_VARIABLES}
    env.update(PYTHONPATH=str(ROOT), LET_HOME=str(let_home), LET_LOAD_PLUGINS="", OMP_NUM_THREADS="1")
    import socket

    with socket.socket() as probe:  # a free loopback port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    from let_core.results import load_results

    rows = load_results(let_home)
    assert set(rows["launcher"]) == {"torchrun"} and rows["job_id"].nunique() == 1
    assert sorted(rows["rank"]) == ["0", "1"] and set(rows["world_size"]) == {"2"}
    (job,) = _by_job(let_home)
    assert (job["runs"], job["ranks"]) == (1, 2)


# ------------------------------------------------------------------ ranks and leaders that die
RANK = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    go = Path(sys.argv[1])
    with EnergyTracker(project_name="cluster", backends=[ManualBackend(power_watts=360)], reporters=[]) as t:
        print(t.run_id, flush=True)
        while not go.exists():  # the test says when this rank may finish
            time.sleep(0.05)
""")


class Launch:
    """The ranks of one Slurm step on this node, started as Slurm starts them (its variables),
    so that a test can kill one; every process is killed at the end, however the test ends."""

    def __init__(self, tmp_path: Path, let_home: Path, world: int = 2) -> None:
        self.tmp_path, self.world = tmp_path, world
        self.script = tmp_path / "rank.py"
        self.script.write_text(RANK)
        self.runtime = tmp_path / "run"
        base = {k: v for k, v in os.environ.items() if k not in jobs.LAUNCHER_VARIABLES}
        self.env = {**base, "PYTHONPATH": str(ROOT), "LET_HOME": str(let_home), "LET_LOAD_PLUGINS": "",
                    "LET_RUNTIME_DIR": str(self.runtime), "LET_LIVE_INTERVAL": "0.1", "LET_HOSTNAME": "node1",
                    "SLURM_JOB_ID": "555", "SLURM_STEP_ID": "0", "SLURM_NTASKS": str(world), "SLURM_NODEID": "0"}
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.run_ids: dict[int, str] = {}

    def start(self, rank: int) -> str:
        env = {**self.env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
        proc = subprocess.Popen([sys.executable, str(self.script), str(self.go(rank))], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs[rank] = proc
        assert proc.stdout is not None
        self.run_ids[rank] = proc.stdout.readline().strip()  # its tracker has started
        assert self.run_ids[rank], proc.stderr.read() if proc.stderr else ""
        return self.run_ids[rank]

    def go(self, rank: int) -> Path:
        return self.tmp_path / f"go-{rank}"

    def published(self, rank: int) -> Path:
        from let_core.livedir import live_file

        return live_file(self.runtime, "node1", self.procs[rank].pid, self.run_ids[rank])

    def wait_published_energy(self, rank: int) -> float:
        """Until the rank's published figure is above zero (it publishes every 0.1 s)."""
        import time

        from let_core.livefile import PublishedRun

        while True:
            try:
                run = PublishedRun.from_json(json.loads(self.published(rank).read_text()))
            except (OSError, ValueError):
                run = None
            if run is not None and run.readings and run.readings[0].energy_kwh > 0:
                return run.readings[0].energy_kwh
            assert self.procs[rank].poll() is None, self.procs[rank].communicate()[1][-3000:]
            time.sleep(0.05)

    def finish(self, rank: int) -> None:
        self.go(rank).touch()
        _, stderr = self.procs[rank].communicate(timeout=300)
        assert self.procs[rank].returncode == 0, stderr[-3000:]

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def launch(tmp_path: Path, let_home: Path) -> Iterator[Launch]:
    started = Launch(tmp_path, let_home)
    try:
        yield started
    finally:
        started.kill_all()


def test_leader_that_dies_keeps_its_figure_marked(launch: Launch, let_home: Path) -> None:
    import signal

    from let_core.results import aggregate, frame_totals, load_results

    leader_run = launch.start(0)
    launch.start(1)
    published = launch.wait_published_energy(0)
    launch.procs[0].send_signal(signal.SIGKILL)  # the node's meter dies mid-run
    launch.procs[0].wait()
    assert launch.published(0).exists()  # its last figures, which nobody recorded yet
    launch.finish(1)

    rows = load_results(let_home).set_index("run_id")
    kept = rows.loc[leader_run]
    assert kept["rank"] == "0" and kept["run_status"] == "failed" and kept["backend"] == "manual"
    assert "leader_died" in kept["error"] and "leader_died" in kept["node_meter"]
    assert kept["energy_consumed"] >= published > 0  # up to its last published reading
    follower = rows.loc[launch.run_ids[1]]
    assert "died mid-run" in follower["error"] and f"recorded as its run {leader_run[:8]}" in follower["error"]
    assert frame_totals(rows.reset_index()).energy_kwh == pytest.approx(kept["energy_consumed"])
    (job,) = aggregate(rows.reset_index(), "job").to_dict(orient="records")
    assert (job["runs"], job["ranks"]) == (1, 2)
    # Recorded once: the published file is gone, and no other rank finds it again.
    assert not launch.published(0).exists()
    assert nodemeter.dead_leader(jobs.Job(job_id="555", step_id="0", rank="1", world_size="2"), launch.runtime,
                            "node1") is None


def test_rank_that_dies_leaves_the_node_figure_to_its_leader(launch: Launch, let_home: Path) -> None:
    from let_core.results import aggregate, frame_totals, load_results

    leader_run = launch.start(0)
    launch.start(1)
    launch.procs[1].kill()  # a follower dies: it records nothing, and the node is still measured
    launch.procs[1].wait()
    launch.finish(0)
    rows = load_results(let_home)
    assert list(rows["run_id"]) == [leader_run] and rows["error"].iloc[0] == ""
    assert rows["run_status"].iloc[0] == "ok" and "node leader" in rows["node_meter"].iloc[0]
    assert frame_totals(rows).energy_kwh == pytest.approx(rows["energy_consumed"].iloc[0])
    (job,) = aggregate(rows, "job").to_dict(orient="records")
    assert (job["runs"], job["ranks"]) == (1, 1)


def test_a_leader_taking_over_a_dead_leaders_lock_records_its_figure(launch: Launch, let_home: Path) -> None:
    import signal

    from let_core.results import load_results

    dead_run = launch.start(0)
    launch.wait_published_energy(0)
    launch.procs[0].send_signal(signal.SIGKILL)
    launch.procs[0].wait()
    heir_run = launch.start(1)  # the lock is free: rank 1 leads now, and first records rank 0's figures
    launch.finish(1)
    rows = load_results(let_home).set_index("run_id")
    assert "leader_died" in rows.loc[dead_run, "error"] and rows.loc[dead_run, "energy_consumed"] > 0
    assert rows.loc[heir_run, "error"] == "" and "took over from rank 0" in rows.loc[heir_run, "node_meter"]


def test_a_node_whose_clock_differs_counts_once_and_does_not_stretch_the_job() -> None:
    import pandas as pd

    from let_core.results import aggregate, frame_totals

    def rank(host: str, rank: int, start: str, end: str, kwh: float) -> dict[str, object]:
        return {"run_id": f"{host}-{rank}", "project_name": "p", "user": "u", "hostname": host, "job_id": "77",
                "step_id": "0", "rank": str(rank), "world_size": "4", "backend": "rapl", "kind": "metered",
                "scope": "cpu+ram", "hardware": "Xeon", "energy_consumed": kwh, "duration": 600.0,
                "start_time": start, "timestamp": end, "carbon_intensity": 400.0, "task": ""}

    frame = pd.DataFrame([
        rank("node1", 0, "2026-01-01T10:00:00+00:00", "2026-01-01T10:10:00+00:00", 0.5),
        rank("node1", 1, "2026-01-01T10:00:01+00:00", "2026-01-01T10:10:01+00:00", 0.5),
        # node2's clock runs three hours ahead: its ranks overlap each other, not node1's.
        rank("node2", 2, "2026-01-01T13:00:00+00:00", "2026-01-01T13:10:00+00:00", 0.4),
        rank("node2", 3, "2026-01-01T13:00:02+00:00", "2026-01-01T13:10:02+00:00", 0.4),
    ])
    # Each node's figure once (the ranks of a node measured the same node), the nodes added.
    assert frame_totals(frame).energy_kwh == pytest.approx(0.9)
    (job,) = aggregate(frame, "job").to_dict(orient="records")
    assert (job["nodes"], job["ranks"], job["kwh"]) == (2, 4, pytest.approx(0.9))
    assert job["wall_s"] == pytest.approx(602.0)  # not three hours: each node on its own clock


SRUN_RANK = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from let_backends.manual import ManualBackend
    from let_core import config, jobs, nodemeter
    from let_core.livedir import live_file
    from let_core.livefile import PublishedRun
    from let_core.tracker import EnergyTracker
    shared = Path(sys.argv[1])
    with EnergyTracker(project_name="cluster", backends=[ManualBackend(power_watts=360)], reporters=[]) as t:
        lock = nodemeter.lock_path(jobs.detect(), config.runtime_dir(), t.hostname)
        holder = nodemeter.Holder.parse(lock.read_text())
        if holder.pid == os.getpid():  # the node's leader: dies once it published a figure
            (shared / "leader").write_text(t.run_id)
            while not (shared / "follower").exists():
                time.sleep(0.05)
            mine = live_file(config.runtime_dir(), t.hostname, os.getpid(), t.run_id)
            while True:
                try:
                    if PublishedRun.from_json(json.loads(mine.read_text())).readings[0].energy_kwh > 0:
                        break
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        (shared / "follower").write_text(t.run_id)
        while holder.pid and os.path.exists(f"/proc/{holder.pid}"):
            time.sleep(0.05)
""")


def test_srun_leader_killed_mid_step_keeps_its_figure(slurm: dict[str, str], let_home: Path, tmp_path: Path) -> None:
    from let_core.results import load_results

    script = tmp_path / "rank.py"
    script.write_text(SRUN_RANK)
    env = {**slurm, "LET_LIVE_INTERVAL": "0.1", "LET_RUNTIME_DIR": str(tmp_path / "run")}
    done = subprocess.run(["srun", "-n", "2", "-t", "5", sys.executable, str(script), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # Slurm reports the task that the kernel killed
    leader_run = (tmp_path / "leader").read_text()
    rows = load_results(let_home).set_index("run_id")
    assert set(rows.index) == {leader_run, (tmp_path / "follower").read_text()}, done.stderr[-3000:]
    assert "leader_died" in rows.loc[leader_run, "error"] and rows.loc[leader_run, "energy_consumed"] > 0
    assert rows.loc[leader_run, "job_id"] == rows["job_id"].iloc[0] != ""


ATTRIBUTED_RANK = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    go = Path(sys.argv[1])
    with EnergyTracker(project_name="cluster", backends=[ManualBackend(power_watts=360)], reporters=[],
                       attribution="process", measure_power_secs=0.1) as t:
        print(t.run_id, flush=True)
        cpu0 = time.process_time()
        if os.environ["SLURM_PROCID"] == "1":  # busy: a second of CPU time, however loaded the machine
            while time.process_time() - cpu0 < 1.0:
                pass
            print(json.dumps({"cpu_s": time.process_time() - cpu0}), flush=True)
        while not go.exists():
            time.sleep(0.05)
""")


def test_leaders_share_of_the_node_takes_in_its_launchs_ranks(launch: Launch, let_home: Path) -> None:
    from let_core.results import frame_totals, load_results

    launch.script.write_text(ATTRIBUTED_RANK)
    leader_run = launch.start(0)
    launch.start(1)  # busy: its CPU is part of the launch's share of the node, which rank 0 measures
    ranks = launch.runtime.glob("node-meter-*.ranks")
    assert [p.name for d in ranks for p in d.iterdir()] == [str(launch.procs[1].pid)]
    assert launch.procs[1].stdout is not None
    follower_cpu = json.loads(launch.procs[1].stdout.readline())["cpu_s"]  # it worked while rank 0 slept
    launch.finish(1)
    launch.finish(0)
    rows = load_results(let_home)
    share = rows[(rows["run_id"] == leader_run) & (rows["kind"] == "attributed")].iloc[0]
    extra = json.loads(share["extra"])
    assert share["error"] == "" and follower_cpu >= 1.0
    # The leader slept; its share holds the busy rank's CPU time (less its last sampling interval).
    assert extra["process_cpu_s"] >= follower_cpu - 0.5
    machine = rows[(rows["run_id"] == leader_run) & (rows["kind"] == "estimate")]["energy_consumed"].iloc[0]
    assert 0 < frame_totals(rows, attributed=True).energy_kwh <= machine
    assert not list(launch.runtime.glob("node-meter-*.ranks/*"))  # the follower removed its pid file
