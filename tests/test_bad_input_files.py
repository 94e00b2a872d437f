"""Files that are not emissions files: refused with a clear error naming the path, nothing written.

Each case goes through ``load_results``, ``lett merge`` and ``lett results``: no traceback, the
path in the message, and neither the bad file nor the merge target changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from let_core import load_results
from let_core.cli import cli
from let_core.errors import LetError
from tests.privileges import as_unprivileged

DATA = Path(__file__).parent / "data"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"


def _make(kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True)
    target = folder / "emissions.csv"
    if kind == "not_emissions":
        target.write_text("name,score\nresnet,0.91\n")
    elif kind == "binary":
        target.write_bytes(bytes(range(256)) * 8 + b"\x00\xff\xfe" * 100)
    elif kind == "directory":
        target.mkdir()
    elif kind == "damaged_body":
        # a real header, then binary bytes: the header check passes, the body does not parse
        header = (DATA / "codecarbon" / "cc3.csv").read_bytes().split(b"\n")[0]
        target.write_bytes(header + b"\n" + b"\x00\x9f\x92\x96" * 200 + b"\n")
    return folder


CASES = ["not_emissions", "binary", "directory"]


@pytest.mark.parametrize("kind", CASES)
def test_load_results_refuses_naming_the_path(kind: str, tmp_path: Path) -> None:
    folder = _make(kind, tmp_path / kind)
    before = _digest(folder / "emissions.csv")
    with pytest.raises(LetError) as info:
        load_results(folder)
    assert str(folder / "emissions.csv") in str(info.value)
    if kind == "not_emissions":
        assert "energy_consumed" in str(info.value) and "timestamp" in str(info.value)
    assert _digest(folder / "emissions.csv") == before


@pytest.mark.parametrize("kind", CASES)
def test_let_merge_refuses_and_writes_nothing(kind: str, tmp_path: Path) -> None:
    folder = _make(kind, tmp_path / kind)
    good = DATA / "codecarbon" / "cc3.csv"
    into = tmp_path / "into"
    result = CliRunner().invoke(cli, ["merge", str(good), str(folder / "emissions.csv"), "--into", str(into)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert str(folder / "emissions.csv") in result.output and "Nothing was merged" in result.output
    if kind == "not_emissions":
        assert "lacks the column(s) timestamp, duration, emissions, energy_consumed" in result.output
    assert not (into / "emissions.csv").exists()  # the good file was not merged either


@pytest.mark.parametrize("kind", CASES)
def test_let_results_refuses_naming_the_path(kind: str, tmp_path: Path) -> None:
    folder = _make(kind, tmp_path / kind)
    before = _digest(folder / "emissions.csv")
    result = CliRunner().invoke(cli, ["results", "--output-dir", str(folder)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert str(folder / "emissions.csv") in result.output
    assert _digest(folder / "emissions.csv") == before


def test_appending_to_a_non_emissions_file_writes_nothing(tmp_path: Path) -> None:
    import re

    from let_backends.manual import ManualBackend
    from let_core import EnergyTracker

    folder = _make("not_emissions", tmp_path / "s")
    before = (folder / "emissions.csv").read_bytes()
    with pytest.warns(Warning, match=re.escape(str(folder / "emissions.csv"))) as caught:
        with EnergyTracker("p", output_dir=folder, backends=[ManualBackend(energy_kwh=1.0)],
                           reporters=["csv"]) as tracker:
            pass
    assert tracker.last_result is not None  # the run is returned, the store untouched
    assert (folder / "emissions.csv").read_bytes() == before
    # and the run is kept aside, ready to merge into a real store
    rescue = re.search(r"saved to (\S+?);", " ".join(str(w.message) for w in caught))
    assert rescue is not None
    merged = CliRunner().invoke(cli, ["merge", rescue.group(1), "--into", str(tmp_path / "good")])
    assert merged.exit_code == 0 and "1 added" in merged.output
    assert list(load_results(tmp_path / "good")["run_id"]) == [tracker.run_id]


def test_damaged_body_is_an_error_naming_the_path(tmp_path: Path) -> None:
    folder = _make("damaged_body", tmp_path / "d")
    merged = CliRunner().invoke(cli, ["merge", str(folder / "emissions.csv"), "--into", str(tmp_path / "m")])
    assert merged.exit_code == 1 and str(folder / "emissions.csv") in merged.output
    assert not (tmp_path / "m" / "emissions.csv").exists()


def test_merge_of_a_folder_without_emissions_csv(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["merge", str(empty), "--into", str(tmp_path / "m")])
    assert result.exit_code == 1 and f"{empty} is a folder without an emissions.csv" in result.output


def test_unreadable_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    """Unreadable for the user running LET (as root, the check runs without root's bypass)."""
    shared = Path(tmp_path / "shared")
    shared.mkdir()
    shutil.copy(DATA / "codecarbon" / "cc3.csv", shared / "emissions.csv")
    os.chmod(shared / "emissions.csv", 0)
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom let_core.cli import cli\n"
        "from let_core import load_results\nfrom let_core.errors import LetError\n"
        f"path = {str(shared / 'emissions.csv')!r}\n"
        "try:\n    load_results(sys.argv[1])\nexcept LetError as exc:\n    print('LOAD', exc)\n"
        "r = CliRunner().invoke(cli, ['merge', path, '--into', sys.argv[2]])\n"
        "print('MERGE', r.exit_code, r.output)\n"
        "r = CliRunner().invoke(cli, ['results', '--output-dir', sys.argv[1]])\n"
        "print('RESULTS', r.exit_code, r.output, type(r.exception).__name__)\n")
    command = [sys.executable, "-c", code, str(shared), str(tmp_path / "into")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "LET_HOME": str(tmp_path / "home")}
    done = subprocess.run(as_unprivileged(command), capture_output=True, text=True, env=env, timeout=120)
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    path = str(shared / "emissions.csv")
    assert f"LOAD cannot open the LET store {path}" in out
    merge = out.split("MERGE", 1)[1].split("RESULTS", 1)[0]
    assert not merge.startswith(" 0") and path in merge and "not readable" in merge
    assert "RESULTS 1" in out and path in out.split("RESULTS", 1)[1] and "SystemExit" in out
    assert not (tmp_path / "into" / "emissions.csv").exists()
