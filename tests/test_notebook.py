"""`%load_ext let_core` in a real notebook, executed by nbclient on a real IPython kernel:
`%%track` (live status, the cell's energy, its statement), `%track_start` / `%track_stop`,
and the HTML that runs and totals show."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from let_core.results import counted_totals, load_results

nbformat = pytest.importorskip("nbformat", reason="the notebook extra (nbformat, nbclient, ipykernel) is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra (nbformat, nbclient, ipykernel) is not installed")
pytest.importorskip("ipykernel", reason="the notebook extra (nbformat, nbclient, ipykernel) is not installed")

ROOT = Path(__file__).resolve().parents[1]


class RecordingClient(nbclient.NotebookClient):
    """nbclient as is, also keeping which message types each cell sent (live updates replace
    one output, so the saved notebook alone cannot show that they happened)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.messages: dict[int, list[str]] = defaultdict(list)

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.messages[cell_index].append(msg["msg_type"])
        return super().process_message(msg, cell, cell_index)


def _text(cell: Any) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def _html(cell: Any) -> str:
    return "".join(out.data.get("text/html", "") for out in cell.outputs if "data" in out)


def test_track_magics_in_a_real_notebook(let_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = [
        "%load_ext let_core",
        "%%track nb-cell -b codecarbon\nimport time\nfor _ in range(3):\n    sum(i * i for i in range(300_000))\n"
        "    time.sleep(0.8)",
        "%track_start nb-span -b codecarbon",
        "total = sum(i * i for i in range(500_000))",
        "run = %track_stop\nrun",
        "from let_core.results import counted_totals\ncounted_totals(project_name='nb-cell')",
        "%%track nb-fail -q\nraise ValueError('boom')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # The kernel inherits the environment: this checkout's let_core, the test's LET_HOME.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = RecordingClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                             resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    loaded, tracked, started, _, stopped, totals, failed = notebook.cells

    assert "error" not in [o.output_type for o in loaded.outputs]
    # The live status line: one display, redrawn in place while the cell ran.
    assert client.messages[1].count("update_display_data") >= 2
    cell_text = _text(tracked)
    run = load_results(project_name="nb-cell")
    assert len(run) == 1 and run["run_status"].iloc[0] == "ok"
    from let_core.statement import format_energy

    assert f"LET: {format_energy(run['energy_consumed'].iloc[0])}" in cell_text
    assert "Using CodeCarbon" in cell_text and "the energy consumption of running all experiments" in cell_text
    assert "LET run" in _html(tracked)  # the run, shown through its HTML repr

    assert "tracking project 'nb-span' until %track_stop" in _text(started)
    assert len(load_results(project_name="nb-span")) == 1
    assert "<table class='let'>" in _html(stopped) and "nb-span" in _html(stopped)
    expected = counted_totals(project_name="nb-cell")
    assert f"{expected.runs}</td>" in _html(totals) and format_energy(expected.energy_kwh) in _html(totals)

    assert any(o.output_type == "error" and o.ename == "ValueError" for o in failed.outputs)
    failed_row = load_results(project_name="nb-fail")
    assert failed_row["run_status"].tolist() == ["failed"] and "boom" in failed_row["error"].iloc[0]
    assert "update_display_data" not in client.messages[6]  # -q: no live line
