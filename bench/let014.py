"""Where LET 0.1.4 lives for the side-by-side checks: one definition for the benches and the tests.

LET 0.1.4 (PyPI ``lamarr-energy-tracker==0.1.4``) runs in a venv of its own, so that its
``lamarr_energy_tracker`` never meets this checkout's. Its source distribution sits beside it:
the original project's own tests come from there (``tests/test_compat_014_suite.py`` runs them
against LET, the code is never copied into this repository).

    python -m bench.let014          # create the venv and fetch the sdist (what .ci/run does)
    python -m bench.let014 --where  # print the interpreter's path

``LET014_PYTHON`` names another interpreter of LET 0.1.4 (the sdist then lives beside its venv).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "0.1.4"
REQUIREMENT = f"lamarr-energy-tracker=={VERSION}"
DEFAULT_PYTHON = Path("/tmp/let014venv/bin/python")
SDIST_NAME = f"lamarr_energy_tracker-{VERSION}"


def python() -> Path:
    """LET 0.1.4's interpreter: ``LET014_PYTHON``, else /tmp/let014venv/bin/python."""
    return Path(os.environ.get("LET014_PYTHON") or DEFAULT_PYTHON)


def venv(interpreter: Path | None = None) -> Path:
    return (interpreter or python()).parent.parent


def sdist_tests(interpreter: Path | None = None) -> Path:
    """The original 0.1.4 tests, unpacked from its sdist beside the venv."""
    return venv(interpreter) / "sdist" / SDIST_NAME / "tests"


def missing(interpreter: Path | None = None) -> str | None:
    """Why the side-by-side checks cannot run here, or None when they can."""
    interpreter = interpreter or python()
    if not interpreter.exists():
        return (f"LET {VERSION} is not installed at {interpreter}: run `python -m bench.let014` "
                "(.ci/run does) or point LET014_PYTHON at its interpreter")
    if not sdist_tests(interpreter).is_dir():
        return (f"LET {VERSION}'s sdist is not unpacked at {sdist_tests(interpreter).parent}: "
                "run `python -m bench.let014`")
    return None


def installer(interpreter: Path) -> list[str]:
    """uv where the calling venv has it (the test command installs it: a tenth of pip's time for
    0.1.4's CodeCarbon 2.x tree), else the new venv's own pip."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        return [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(interpreter)]
    return [str(interpreter), "-m", "pip", "install", "-q"]


def ensure(interpreter: Path | None = None) -> str | None:
    """Create the venv (pinned pip install) and unpack the sdist where missing; None when
    ready, else what failed."""
    interpreter = interpreter or python()
    root = venv(interpreter)
    try:
        if not interpreter.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, text=True)
            subprocess.run([*installer(interpreter), REQUIREMENT], check=True, capture_output=True, text=True)
        tests = sdist_tests(interpreter)
        if not tests.is_dir():
            download = root / "sdist"
            download.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(interpreter), "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                            REQUIREMENT, "-d", str(download)], check=True, capture_output=True, text=True)
            with tarfile.open(download / f"{SDIST_NAME}.tar.gz") as archive:
                archive.extractall(download, filter="data")
    except subprocess.CalledProcessError as exc:
        return f"could not set up LET {VERSION} in {root}: {' '.join(exc.cmd)}: {(exc.stderr or '').strip()[-500:]}"
    except OSError as exc:
        return f"could not set up LET {VERSION} in {root}: {exc}"
    return missing(interpreter)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.let014", description=__doc__.split("\n")[0])
    parser.add_argument("--where", action="store_true", help="print the interpreter's path and exit")
    args = parser.parse_args(argv)
    if args.where:
        print(python())
        return 0
    problem = ensure()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"LET {VERSION}: {python()} (its tests: {sdist_tests()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
