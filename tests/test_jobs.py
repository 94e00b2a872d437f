"""Jobs as launchers define them (Slurm, torchrun, accelerate, MPI), one meter per node, and
CodeCarbon inside Slurm without ``scontrol``; real Slurm and torchrun where they run here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from let_core import jobs

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


def test_tracker_records_the_job_fields_in_the_store(no_launcher: pytest.MonkeyPatch, let_home: Path) -> None:
    from let_backends.manual import ManualBackend
    from let_core.tracker import EnergyTracker
    from let_core.results import load_results

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
