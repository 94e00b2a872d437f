"""Jobs as their launchers define them, and which process of a node measures the node.

Slurm (allocation, step, array task, task ids), torchrun / torch.distributed, accelerate and
MPI each describe a process's place in a job through environment variables. ``detect()`` reads
them once into a ``Job``: what the run records (``Job.fields()``, stored columns of the same
names) and what the counting rule needs to tell ranks of one launch (count the node once)
from runs one after another in one allocation (count each).

In a launch of several ranks every rank on a node would otherwise measure the same node
(CodeCarbon in machine mode, RAPL, the wall socket) and the node would pay N samplers.
``elect_node_leader`` picks one process per node and launch: it holds an ``flock`` on a file in
the node's runtime directory keyed by job and step. The kernel releases that lock when the
holder exits, however it dies, so a killed job's lock file is never mistaken for a live
leader; the rank, pid, boot id and run id written into it say who held it.

A leader that dies mid-run (SIGKILL, the OOM killer, a lost node process) records nothing
itself. Its figures so far are in the file every running tracker publishes in the runtime dir
(``let_core.live``), which only a tracker that stops normally removes, before it gives up the
lock. So a free lock beside the leader's published file means the leader died: the next rank of
the launch to stop, or the rank that takes over its lock, records those figures as the dead
leader's run, marked ``leader_died`` (``dead_leader``), and removes the file so that they are
recorded once.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Mapping

from attrs import frozen

from let_core.live import PublishedRun, live_file, process_alive
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



@frozen
class Job:
    """Where this process sits in a job; empty strings where a launcher says nothing."""

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


# ---------------------------------------------------------------------------- one meter per node
@frozen
class Leadership:
    """This process's part in measuring its node for one launch."""

    leader: bool
    #: For the leader: the open lock file, held until ``release()`` (or the process's death).
    fd: int | None = None
    #: What the run records in ``node_meter``.
    note: str = ""
    #: For a leader that took over a lock: who held it before (perhaps a leader that died).
    previous: Holder | None = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock


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


@frozen
class Holder:
    """Who holds (or last held) a launch's node lock, as written into the lock file."""

    rank: str = ""
    pid: int = 0
    boot: str = ""
    run_id: str = ""

    @classmethod
    def parse(cls, text: str) -> Holder:
        fields = dict(part.partition("=")[::2] for part in text.split() if "=" in part)
        pid = _int(fields.get("pid", ""))
        return cls(rank=fields.get("rank", ""), pid=pid if pid is not None and pid > 0 else 0,
                   boot=fields.get("boot", ""), run_id=fields.get("run", ""))

    def text(self) -> str:
        return f"rank={self.rank} pid={self.pid} boot={self.boot} run={self.run_id}\n"

    def describe(self) -> str:
        return f"rank {self.rank or '?'}, pid {self.pid}" + (f", run {self.run_id[:8]}" if self.run_id else "")


def lock_path(job: Job, runtime_dir: Path, hostname: str) -> Path:
    """The node lock of a launch; keyed by host too, so that a runtime dir on a shared file
    system still elects one leader per node."""
    key = f"{hostname}-{job.launch_key}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:160]
    return runtime_dir / f"node-meter-{safe}.lock"


def elect_node_leader(job: Job, runtime_dir: Path, hostname: str, run_id: str = "") -> Leadership:
    """One process per node and launch measures the node: the first to take the launch's lock.

    The others record whose figure the node's is. A leader that dies releases the lock with its
    process; its run's figure so far is what it last published (``live``), recorded by the rank
    that next takes the lock (``dead_leader``).
    """
    runtime_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(job, runtime_dir, hostname)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        return Leadership(False, note=f"node figure is the leader's ({holder.describe() if holder else 'another rank'}); "
                                      "this rank measured only its own devices")
    except OSError as exc:  # a file system without flock: every rank measures, as before
        os.close(fd)
        return Leadership(True, note=f"no node election ({exc}); this rank measured the node itself")
    stale = _holder(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, Holder(job.rank, os.getpid(), boot_id(), run_id).text().encode(), 0)
    note = "node leader: this rank measured the node for the launch"
    if stale:
        note += f" (took over from {stale.describe()}: it no longer holds the lock)"
    return Leadership(True, fd=fd, note=note, previous=stale)


def _holder(fd: int) -> Holder | None:
    """Who the lock file says holds it; None for an empty or unreadable file."""
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        return None
    holder = Holder.parse(text)
    return holder if holder.pid else None


# ---------------------------------------------------------------------------- a leader that died
@frozen
class DeadLeader:
    """A dead leader's last published figures, found under its launch's lock: ``done()`` once
    they are recorded (it removes the published file and releases the lock)."""

    holder: Holder
    run: PublishedRun
    path: Path
    fd: int | None

    @property
    def note(self) -> str:
        return (f"leader_died: the node leader ({self.holder.describe()}) died mid-run; its figures up to "
                f"its last published reading are kept, the rest of its run was not measured")

    def done(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self.fd is not None:
            os.close(self.fd)


def dead_leader(job: Job, runtime_dir: Path, hostname: str, holder: Holder | None = None,
                fd: int | None = None) -> DeadLeader | None:
    """The figures of this launch's node leader if it died mid-run, or None (it lives, it
    stopped normally, or they were recorded already).

    Without ``fd`` this takes the launch's lock first (a live leader holds it: None); a leader
    that took over a lock passes its own ``fd`` and the ``holder`` it took over from. The lock
    stays held until ``done()``, so that two ranks never record the same figures.
    """
    own = fd is None
    if own:
        try:
            fd = os.open(lock_path(job, runtime_dir, hostname), os.O_RDWR)
        except OSError:
            return None  # no lock: nobody led this launch here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None  # the leader holds it: alive
        holder = _holder(fd)
    found = _published_by(holder, runtime_dir, hostname)
    if found is None:
        if own and fd is not None:
            os.close(fd)
        return None
    assert holder is not None
    return DeadLeader(holder, found[0], found[1], fd if own else None)


def _published_by(holder: Holder | None, runtime_dir: Path, hostname: str) -> tuple[PublishedRun, Path] | None:
    if holder is None or not holder.pid or not holder.run_id or holder.pid == os.getpid():
        return None
    # The lock is free; a process of that pid on this boot that still runs is the leader
    # stopping normally (its file is about to go), or the pid reused: leave it.
    if holder.boot == boot_id() and process_alive(holder.pid):
        return None
    path = live_file(runtime_dir, hostname, holder.pid, holder.run_id)
    try:
        with open(path, "rb") as handle:
            run = PublishedRun.from_json(json.loads(handle.read(1 << 20)))
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # none published, or already recorded; a damaged file records nothing
    if run.pid != holder.pid or run.run_id != holder.run_id:
        return None
    return run, path


# ---------------------------------------------------------------------------- the launch's share
def ranks_dir(job: Job, runtime_dir: Path, hostname: str) -> Path:
    """Where the ranks that leave the node to its leader put their pids (one empty file each),
    so that the leader's attribution takes their process trees as the launch's."""
    return lock_path(job, runtime_dir, hostname).with_suffix(".ranks")


def register_rank(job: Job, runtime_dir: Path, hostname: str) -> Path | None:
    """This follower's pid file (remove it when the run stops); None where it cannot be written
    (the leader's share then leaves this rank out)."""
    path = ranks_dir(job, runtime_dir, hostname) / str(os.getpid())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        return None
    return path


def rank_pids(job: Job, runtime_dir: Path, hostname: str) -> list[int]:
    """The running followers of this launch on this node (a killed rank's file is left out)."""
    pids = []
    for name in os.listdir(ranks_dir(job, runtime_dir, hostname)):
        pid = _int(name)
        if pid is not None and pid > 0 and pid != os.getpid() and process_alive(pid):
            pids.append(pid)
    return pids
