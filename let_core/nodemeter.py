"""Which process of a node measures the node, in a launch of several ranks.

Every rank on a node would otherwise measure the same node (CodeCarbon in machine mode, RAPL,
the wall socket) and the node would pay N samplers. ``elect_node_leader`` picks one process per
node and launch (``jobs.Job.launch_key``): it holds an ``flock`` on a file in the node's
runtime directory keyed by job and step. The kernel releases that lock when the holder exits,
however it dies, so a killed job's lock file is never mistaken for a live leader; the rank,
pid, boot id and run id written into it say who held it.

A leader that dies mid-run (SIGKILL, the OOM killer, a lost node process) records nothing
itself. Its figures so far are in the file every running tracker publishes in the runtime dir
(``let_core.livedir``), which only a tracker that stops normally removes, before it gives up
the lock. So a free lock beside the leader's published file means the leader died: the next
rank of the launch to stop, or the rank that takes over its lock, records those figures as the
dead leader's run, marked ``leader_died`` (``dead_leader``), and removes the file so that they
are recorded once.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from attrs import frozen

from let_core.jobs import Job, boot_id
from let_core.livedir import live_file, process_alive
from let_core.livefile import PublishedRun


def _pid(text: str) -> int:
    """A process id written as text; 0 for anything that is not a positive integer."""
    try:
        value = int(text)
    except ValueError:
        return 0
    return value if value > 0 else 0


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
        return cls(rank=fields.get("rank", ""), pid=_pid(fields.get("pid", "")),
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
        pid = _pid(name)
        if pid and pid != os.getpid() and process_alive(pid):
            pids.append(pid)
    return pids
