"""Jobs as their launchers define them.

Slurm (allocation, step, array task, task ids), torchrun / torch.distributed, accelerate and
MPI each describe a process's place in a job through environment variables. ``detect()`` reads
them once into a ``Job``: what the run records (``Job.fields()``, stored columns of the same
names) and what the counting rule needs to tell ranks of one launch (count the node once)
from runs one after another in one allocation (count each).

Which process of a node then measures the node is ``let_core.nodemeter``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, NamedTuple

from let_core.schema import JOB_COLUMNS

#: Every variable ``detect`` reads (tests clear them; nothing else in LET reads them).
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_ARRAY_JOB_ID",
                   "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS")
TORCH_VARIABLES = ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE", "GROUP_RANK")
ACCELERATE_VARIABLES = ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU", "ACCELERATE_DYNAMO_BACKEND")
MPI_VARIABLES = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE",
                 "OMPI_MCA_ess_base_jobid", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "PMIX_NAMESPACE",
                 "MPI_LOCALRANKID")
OTHER_SCHEDULERS = ("LSB_JOBID", "PBS_JOBID")
LAUNCHER_VARIABLES = SLURM_VARIABLES + TORCH_VARIABLES + ACCELERATE_VARIABLES + MPI_VARIABLES + OTHER_SCHEDULERS
_LAUNCHER_NAMES = frozenset(LAUNCHER_VARIABLES)


class Job(NamedTuple):
    """Where this process sits in a job; empty strings where a launcher says nothing.

    A NamedTuple, not an attrs class as elsewhere: every tracker's start imports this module,
    and building an attrs class of eleven fields costs 5.9 M instructions against 1.6 M
    (callgrind), a sixth of what issue 19's bound allows a tracked process to grow."""

    launcher: str = ""
    job_id: str = ""
    step_id: str = ""
    array_job_id: str = ""
    array_task_id: str = ""
    #: One launch inside an allocation (torchrun's run id, an MPI job's namespace).
    launch_id: str = ""
    rank: str = ""
    local_rank: str = ""
    node_id: str = ""
    world_size: str = ""
    #: What was inconsistent in the launcher's variables (recorded, never raised).
    note: str = ""

    @property
    def multi_rank(self) -> bool:
        """Several processes of one launch: only then is one of them the node's meter."""
        return _int(self.world_size) is not None and (_int(self.world_size) or 0) > 1

    @property
    def launch_key(self) -> str:
        """The launch whose ranks share a node's figure: job, step and launch."""
        return ".".join(part for part in (self.job_id, self.step_id, self.launch_id) if part)

    @property
    def is_local_leader(self) -> bool | None:
        """Whether the launcher made this process local rank 0; None when it does not say."""
        local = _int(self.local_rank)
        return None if local is None else local == 0

    def fields(self) -> dict[str, str]:
        """The run's job columns that are known (``job_note`` for the note)."""
        values = {name: getattr(self, name) for name in JOB_COLUMNS[:10]}
        if self.note:
            values["job_note"] = self.note
        return {name: value for name, value in values.items() if value}


def _int(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first(env: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return "", ""


def detect(env: Mapping[str, str] | None = None) -> Job:
    """The job this process belongs to, from the launchers' variables (``os.environ``)."""
    env = os.environ if env is None else env
    if _LAUNCHER_NAMES.isdisjoint(env):  # most runs: one pass over the names, not ~20 lookups
        return Job()
    launchers = []
    slurm_job = _first(env, "SLURM_JOB_ID", "SLURM_JOBID")[1]
    if slurm_job:
        launchers.append("slurm")
    torch_run = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if any(env.get(name) for name in ACCELERATE_VARIABLES):
        launchers.append("accelerate")
    elif torch_run:
        launchers.append("torchrun")
    mpi_rank_var, mpi_rank = _first(env, "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
    if mpi_rank:
        launchers.append("mpi")
    torch_rank = env.get("RANK", "").strip()
    if torch_rank and not (torch_run or "accelerate" in launchers):
        launchers.append("torch.distributed")

    # The innermost launcher knows the ranks: torch's inside a Slurm step, MPI's under mpirun.
    if torch_rank:
        rank_var, rank = "RANK", torch_rank
        size_var, size = _first(env, "WORLD_SIZE")
        local = _first(env, "LOCAL_RANK")[1]
        node = _first(env, "GROUP_RANK", "SLURM_NODEID")[1]
    elif mpi_rank:
        rank_var, rank = mpi_rank_var, mpi_rank
        size_var, size = _first(env, "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
        local = _first(env, "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")[1]
        node = _first(env, "SLURM_NODEID")[1]
    elif _first(env, "SLURM_STEP_ID", "SLURM_STEPID")[1]:
        rank_var, rank = _first(env, "SLURM_PROCID")
        size_var, size = _first(env, "SLURM_NTASKS") if rank else ("", "")
        local = _first(env, "SLURM_LOCALID")[1]
        node = _first(env, "SLURM_NODEID")[1]
    else:
        # A Slurm batch script (or no launcher): Slurm sets SLURM_PROCID=0 there too, but the
        # script is no rank of a launch; its runs one after another each count.
        rank_var = rank = size_var = size = local = ""
        node = _first(env, "SLURM_NODEID")[1]
    if not size_var:
        size_var = {"RANK": "WORLD_SIZE", "SLURM_PROCID": "SLURM_NTASKS"}.get(rank_var, "OMPI_COMM_WORLD_SIZE")

    launch_id = ""
    job_id = slurm_job or _first(env, *OTHER_SCHEDULERS)[1]
    if torch_run:
        launch_id = torch_run
    elif mpi_rank:
        launch_id = _first(env, "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid")[1]
    if not job_id:
        job_id, launch_id = launch_id, ""

    return Job(launcher="+".join(launchers), job_id=job_id,
               step_id=_first(env, "SLURM_STEP_ID", "SLURM_STEPID")[1] if slurm_job else "",
               array_job_id=env.get("SLURM_ARRAY_JOB_ID", "").strip() if slurm_job else "",
               array_task_id=env.get("SLURM_ARRAY_TASK_ID", "").strip() if slurm_job else "",
               launch_id=launch_id, rank=rank, local_rank=local, node_id=node, world_size=size,
               note=_inconsistency(rank_var, rank, size_var, size))


def _inconsistency(rank_var: str, rank: str, size_var: str, size: str) -> str:
    if not rank:
        return ""
    number = _int(rank)
    if number is None or number < 0:
        return f"{rank_var}={rank!r} is not a rank (a whole number from 0); ranks of this launch may be counted apart"
    if not size:
        return (f"{rank_var}={rank} without {size_var}: the launch's size is unknown, so this run is not "
                "treated as one of several ranks")
    world = _int(size)
    if world is None or world < 1:
        return f"{size_var}={size!r} is not a number of processes; this run is not treated as one of several ranks"
    if number >= world:
        return f"{rank_var}={rank} is outside 0..{world - 1} ({size_var}={size})"
    return ""


def boot_id() -> str:
    """An id that changes at every boot: Linux's boot_id, else the boot time (psutil, which
    CodeCarbon depends on); "" when neither is known."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        try:
            import psutil

            return f"boot-time:{psutil.boot_time():.0f}"
        except Exception:  # no psutil, or it cannot tell: a lock then proves nothing across boots
            return ""
