"""Issue 19's cost bound, like for like: a whole tracked run (``bench_core.LET_RUN``: manual backend,
default reporters, fresh process) and the second tracker of one process, for several source trees
(e.g. a commit before a change and after it), run in interleaved rounds; medians.

Run: .venv/bin/python bench/bench_tracked_ab.py base=/tmp/base after=. [--rounds 15]
(``git archive <commit> | tar -x -C /tmp/base`` gives a tree of a commit). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_core import LET_RUN  # noqa: E402

SECOND_TRACKER = """
import time, lamarr_energy_tracker
from let_backends.manual import ManualBackend
def run():
    tracker = lamarr_energy_tracker.EnergyTracker(project_name="bench", output_dir={out!r},
                                                  backends=[ManualBackend(power_watts=100)])
    tracker.start()
    tracker.stop()
run()
started, cpu = time.perf_counter(), time.process_time()
run()
print(time.perf_counter() - started, time.process_time() - cpu)
"""


def once(tree: str, code: str, inside: bool) -> tuple[float, float]:
    """Wall and CPU seconds (CPU time moves less than wall time on a machine others load)."""
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "LET_HOME": out, "LET_LOAD_PLUGINS": "", "PYTHONPATH": os.path.abspath(tree)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run([sys.executable, "-c", code.format(out=out)], env=env, cwd=out,
                              capture_output=True, text=True, check=True)
        elapsed, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if inside:
        wall, cpu = done.stdout.strip().splitlines()[-1].split()
        return float(wall), float(cpu)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("trees", nargs="+", help="name=path of a source tree")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.trees)
    cases = {"tracked run (whole process)": (LET_RUN, False), "second tracker in one process": (SECOND_TRACKER, True)}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {(t, c): [] for t in trees for c in cases}
    for tree in trees.values():  # warm-up: bytecode written
        for code, inside in cases.values():
            once(tree, code, inside)
    for _ in range(args.rounds):
        for name, tree in trees.items():
            for case, (code, inside) in cases.items():
                times[(name, case)].append(once(tree, code, inside))
    first = next(iter(trees))
    for case in cases:
        for clock, index in (("wall", 0), ("cpu", 1)):
            medians = {name: statistics.median(t[index] for t in times[(name, case)]) * 1000 for name in trees}
            print(f"{case}, {clock}: " + ", ".join(f"{name} {ms:.1f} ms ({ms / medians[first]:.3f}x {first})"
                                                   for name, ms in medians.items()))


if __name__ == "__main__":
    main()
