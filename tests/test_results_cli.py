"""`lett results --by`, multi-node jobs counted once, `lett compact`, `lett export parquet`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from let_backends.manual import ManualBackend
from let_core.cli import cli
from let_core.results import aggregate, cached_totals, frame_totals, load_results
from let_core.statement import statement_from_totals
from let_core.tracker import EnergyTracker
from tests.launches import launched_together

if TYPE_CHECKING:
    import pandas as pd


def _run(project: str = "p", energy: float = 1.0, hardware: str = "Xeon", kind: str = "estimate",
         backend: ManualBackend | None = None, extra: list | None = None) -> str:
    backends = [backend or ManualBackend(energy_kwh=energy, hardware=hardware, kind=kind)] + (extra or [])
    with EnergyTracker(project_name=project, backends=backends, reporters=["csv"],
                       carbon_intensity=400) as tracker:
        pass
    return tracker.run_id


def _job(monkeypatch: pytest.MonkeyPatch, job: str, host: str, rank: int, **kwargs) -> str:
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LET_HOSTNAME", host)
    try:
        return _run(**kwargs)
    finally:
        for name in ("SLURM_JOB_ID", "RANK", "LET_HOSTNAME"):
            monkeypatch.delenv(name)


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_results_by_project_and_backend(let_home: Path) -> None:
    _run("a", 0.5)
    _run("a", 1.5)
    _run("b", 2.0)
    runner = CliRunner()
    result = runner.invoke(cli, ["results", "--by", "project"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["project", "runs", "energy", "CO2e", "hours", "metered"]
    assert lines[2].split()[:6] == ["a", "2", "2.000", "kWh", "0.800", "kg"]
    assert lines[3].split()[:6] == ["b", "1", "2.000", "kWh", "0.800", "kg"]
    assert lines[4].split()[:6] == ["total", "3", "4.000", "kWh", "1.600", "kg"]
    assert len({len(line) for line in lines[:2]}) == 1  # aligned columns
    rows = _json_lines(runner.invoke(cli, ["results", "--by", "backend", "--json"]).output)
    hours = load_results()["duration"].sum() / 3600  # one measurement per run: its duration
    assert hours > 0
    assert rows == [{"backend": "manual", "runs": 3, "kwh": pytest.approx(4.0), "kg": pytest.approx(1.6),
                     "hours": pytest.approx(hours, rel=1e-9), "coverage": None}]


def test_estimate_and_metered_of_one_run_are_not_added(let_home: Path) -> None:
    _run(backend=ManualBackend(energy_kwh=1.0, hardware="Xeon"),
         extra=[_Named(ManualBackend(energy_kwh=1.3, kind="metered", methodology="Tasmota smart socket"))])
    frame = load_results()
    assert len(frame) == 2
    by_project = aggregate(frame, "project")
    assert by_project["kwh"].tolist() == [pytest.approx(1.3)]  # the metered value, once
    by_backend = aggregate(frame, "backend")
    assert dict(zip(by_backend["backend"], by_backend["kwh"])) == {"manual": 1.0, "socket": 1.3}


class _Named:
    """A second manual backend under another name (a run can have each backend once)."""

    name = "socket"

    def __init__(self, inner: ManualBackend) -> None:
        self.inner = inner

    def start(self) -> None:
        self.inner.start()

    def stop(self):
        import attrs

        return attrs.evolve(self.inner.stop(), backend=self.name)


def test_multi_node_job_is_one_job_and_ranks_do_not_double_count(let_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Two nodes, two ranks each. Every rank's whole-machine estimate of its node is the same
    # devices measured twice (count once per node); per-GPU measurements differ and add up.
    for host in ("node1", "node2"):
        for rank in (0, 1):
            _job(monkeypatch, "4242", host, rank, energy=1.0 + rank * 0.1, hardware=f"{host} Xeon")
            _job(monkeypatch, "4242", host, rank, project="gpu", energy=0.5, hardware=f"{host} GPU {rank}")
    launched_together(let_home / "emissions.csv", "4242")
    _run("p", 3.0)  # a run outside any job
    frame = load_results()
    by_job = aggregate(frame[frame["project_name"] == "p"], "job")
    jobs = dict(zip(by_job["job"], zip(by_job["runs"], by_job["kwh"])))
    assert jobs["4242"] == (4, pytest.approx(2.2))  # max per node: 1.1 + 1.1, not 4.2
    assert [k for k in jobs if k != "4242"][0].startswith("run ")
    gpu = aggregate(frame[frame["project_name"] == "gpu"], "job")
    assert gpu["kwh"].tolist() == [pytest.approx(2.0)]  # four different GPUs: summed
    statement = statement_from_totals(frame_totals(frame[frame["project_name"] == "p"]))
    assert "5.200 kWh" in statement  # 2.2 for the job + 3.0 for the lone run
    result = CliRunner().invoke(cli, ["results", "--by", "job", "--project", "p"])
    assert "4242" in result.output and "2.200 kWh" in result.output


def test_frame_totals_match_the_store_totals_without_jobs(let_home: Path) -> None:
    _run("p", 0.4)
    _run("p", backend=ManualBackend(energy_kwh=1.0),
         extra=[_Named(ManualBackend(energy_kwh=1.2, kind="metered", methodology="Tasmota smart socket"))])
    ours = statement_from_totals(frame_totals(load_results()))
    store = statement_from_totals(cached_totals())
    assert ours == store


def test_compact_and_export_parquet_commands(let_home: Path, tmp_path: Path) -> None:
    for energy in (0.1, 0.2, 0.3):
        _run("p", energy)
    runner = CliRunner()
    dataset = tmp_path / "exported"
    result = runner.invoke(cli, ["export", "parquet", str(dataset), "--project", "p"])
    assert result.exit_code == 0, result.output
    assert "exported 3 row(s) as parquet" in result.output
    frame = load_results(tmp_path / "nowhere", dataset=str(dataset))
    assert sorted(frame["energy_consumed"]) == pytest.approx([0.1, 0.2, 0.3])
    runner.invoke(cli, ["export", "parquet", str(dataset), "--project", "p"])  # again: a second file
    result = runner.invoke(cli, ["compact", "--dataset", str(dataset)])
    assert result.exit_code == 0 and "2 file(s) -> 1" in result.output
    assert len(load_results(tmp_path / "nowhere", dataset=str(dataset))) == 3
    result = runner.invoke(cli, ["export", "nosuch", str(dataset)])
    assert result.exit_code == 1 and "unknown export format 'nosuch'; formats: csv, parquet, strep" in result.output


# ------------------------------------------------------------------ vectorised paths at scale
def _arrow(values: list) -> pd.Series:
    import pandas as pd
    import pyarrow as pa

    return pd.Series(pd.arrays.ArrowExtensionArray(pa.array(values, pa.string())))


def _same_partition(a, b) -> bool:
    """Two code arrays group the rows the same way."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_text_codes_are_exact_on_the_fast_path_and_on_a_collision(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    import numpy as np
    import pandas as pd

    from let_core import keys

    ids = [str(uuid.UUID(int=i * 7919)) for i in range(500)]
    values = _arrow(ids + ids[:50])  # fixed width: the 64-bit word path
    codes = keys.text_codes(values)
    assert _same_partition(codes, pd.factorize(np.array(ids + ids[:50], dtype=object))[0])
    assert keys.text_codes(values) is codes  # the same Arrow column is coded once
    # Every hash equal: the byte check must notice and take the exact path.
    monkeypatch.setattr(keys, "_MIX", 0)
    monkeypatch.setattr(keys, "_last", None)
    assert _same_partition(keys.text_codes(_arrow(ids + ids[:50])), codes)
    # Mixed widths, empty and missing texts, object columns.
    mixed = ["a", "bb", "", None, "a", "bb"]
    assert keys.text_codes(_arrow(mixed)).tolist() == [0, 1, -1, -1, 0, 1]
    assert keys.text_codes(pd.Series(mixed, dtype=object)).tolist() == [0, 1, -1, -1, 0, 1]
    row_codes, count = keys.row_codes(_arrow(mixed))
    assert count == 4 and len(set(row_codes.tolist())) == 4  # each run without an id is its own run
    monkeypatch.undo()
    # Distinct ids (seen by sorting the hashes) are numbered in order, as factorize would; a
    # width of 7 bytes reads a 4-, a 2- and a 1-byte tail.
    assert keys.text_codes(_arrow(ids)).tolist() == list(range(len(ids)))
    short = [f"{i % 97:07d}" for i in range(300)]
    assert _same_partition(keys.text_codes(_arrow(short)), pd.factorize(np.array(short, dtype=object))[0])


def test_dictionary_codes_unify_chunks_and_fold_missing_into_blank() -> None:
    import pandas as pd
    import pyarrow as pa

    from let_core import keys

    encoded = pa.chunked_array([pa.array(["b", None, "a"]).dictionary_encode(),
                                pa.array(["", "c", "a"]).dictionary_encode()])
    column = pd.Series(pd.arrays.ArrowExtensionArray(encoded.cast(pa.string())))
    assert keys.dictionary_codes(column) is None
    keys.remember_dictionary(column, encoded)
    codes, labels = keys.dictionary_codes(column)
    assert [labels[c] for c in codes.tolist()] == ["b", "", "a", "", "c", "a"]
    assert len(set(labels)) == len(labels)
    assert keys.dictionary_codes(column.copy()) is not None  # (Arrow data is shared, immutable)
    assert keys.dictionary_codes(column[1:]) is None  # other data: counted from its texts


def test_duplicated_keeps_the_first_of_each_run_backend_task() -> None:
    import pandas as pd

    from let_core.keys import duplicated

    frame = pd.DataFrame({"run_id": _arrow(["r1", "r1", "r2", "", "", "r1", "r1"]),
                          "backend": _arrow(["cc", "rapl", "cc", "cc", "cc", "cc", "rapl"]),
                          "task": _arrow(["", "", "", "", "", "", "t"])})
    assert duplicated(frame, ("run_id", "backend", "task")).tolist() == [False, False, False, False,
                                                                          False, True, False]
    distinct = pd.DataFrame({"run_id": _arrow(["r1", "r2", "r3"]), "backend": _arrow(["cc"] * 3),
                             "task": _arrow([""] * 3)})
    assert not duplicated(distinct, ("run_id", "backend", "task")).any()


def test_primary_rows_match_primary_measurements_run_by_run() -> None:
    """The grouped-by-scope-sequence selection equals records.primary_measurements on each run."""
    import numpy as np
    import pandas as pd

    from let_core.records import primary_measurements
    from let_core.results.counting import primary_rows

    rng = np.random.default_rng(7)
    scopes = ["", "system", "cpu", "gpu", "ram", "cpu+ram", "cpu+gpu+ram"]
    rows = []
    for run in range(400):
        for _ in range(int(rng.integers(1, 6))):
            rows.append({"run_id": f"run-{run:04d}", "backend": f"b{len(rows)}",
                         "kind": str(rng.choice(["estimate", "metered"])),
                         "scope": str(rng.choice(scopes)), "task": "",
                         "energy_consumed": float(rng.choice([np.nan, 1.0, 2.0, 3.0]))})
    order = rng.permutation(len(rows))  # a run's rows need not be contiguous in a merged frame
    frame = pd.DataFrame([rows[i] for i in order])
    for kind in ("estimate", "metered"):
        chosen = primary_rows(frame, kind)

        class View:
            def __init__(self, index: int) -> None:
                row = frame.iloc[index]
                self.index, self.kind, self.scope = index, row["kind"], row["scope"]
                self.energy_kwh = row["energy_consumed"]

        expected = np.zeros(len(frame), dtype=bool)
        for _, indexes in frame.groupby("run_id", sort=False).indices.items():
            for view in primary_measurements([View(i) for i in sorted(indexes)], kind):
                expected[view.index] = True
        assert chosen.tolist() == expected.tolist()


def test_results_by_and_statement_read_only_their_columns(let_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from let_core import results
    from let_core.results import AGGREGATE_COLUMNS, TOTALS_COLUMNS

    _run("a", 0.5)
    _run("b", backend=ManualBackend(energy_kwh=1.0),
         extra=[_Named(ManualBackend(energy_kwh=1.2, kind="metered", methodology="Tasmota smart socket"))])
    projected = load_results(columns=TOTALS_COLUMNS)
    # (task_name is CodeCarbon's, read where a merged file brought it, not a store column)
    assert set(projected.columns) == set(TOTALS_COLUMNS) - {"task_name"}
    assert statement_from_totals(frame_totals(projected)) == statement_from_totals(frame_totals(load_results()))
    seen: list = []
    original = results.load_results

    def spy(*args, **kwargs):
        seen.append(kwargs.get("columns"))
        return original(*args, **kwargs)

    monkeypatch.setattr(results, "load_results", spy)
    result = CliRunner().invoke(cli, ["results", "--by", "project"])
    assert result.exit_code == 0, result.output
    assert seen == [AGGREGATE_COLUMNS]
    assert [line.split()[:3] for line in result.output.splitlines()[2:4]] == [["a", "1", "0.500"],
                                                                              ["b", "1", "1.200"]]
