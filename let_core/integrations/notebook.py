"""LET in Jupyter: ``%load_ext let_core`` gives

- ``%%track [PROJECT] [-b BACKEND] [-o DIR] [-c COUNTRY] [--carbon-intensity G] [-q]``: the
  cell's energy, a one-line live status while it runs, the paper statement of the run at the end;
- ``%track_start [same options]`` / ``%track_stop``: one run over several cells.

Runs are stored in the central store like any other. What the returned run looks like in a
notebook is its ``_repr_html_`` (``let_core.display``).
"""

from __future__ import annotations

import argparse
import contextvars
import shlex
import threading
from typing import Any, Callable

from let_core.errors import ConfigurationError
from let_core.live import format_status
from let_core.tracker import EnergyTracker

DEFAULT_PROJECT = "notebook"


def _parser(magic: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"%{magic}", add_help=False, exit_on_error=False)
    parser.add_argument("project", nargs="?", default=None)
    parser.add_argument("-b", "--backend", action="append", dest="backends", default=None)
    parser.add_argument("-o", "--output-dir", dest="output_dir", default=None)
    parser.add_argument("-c", "--country", dest="country_iso_code", default=None)
    parser.add_argument("--carbon-intensity", dest="carbon_intensity", type=float, default=None)
    parser.add_argument("-q", "--quiet", action="store_true")
    return parser


def parse_options(magic: str, line: str) -> tuple[dict[str, Any], bool]:
    """EnergyTracker's options from a magic's line, and whether the live status is off."""
    try:
        parsed, unknown = _parser(magic).parse_known_args(shlex.split(line))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"%{magic}: {exc}; usage: %{magic} [PROJECT] [-b BACKEND] [-o DIR] "
                                 "[-c COUNTRY] [--carbon-intensity G] [-q]") from None
    if unknown:
        raise ConfigurationError(f"%{magic}: unknown argument(s) {' '.join(unknown)}; usage: %{magic} "
                                 "[PROJECT] [-b BACKEND] [-o DIR] [-c COUNTRY] [--carbon-intensity G] [-q]")
    options = {"project_name": parsed.project or DEFAULT_PROJECT, "backends": parsed.backends,
               "output_dir": parsed.output_dir, "country_iso_code": parsed.country_iso_code,
               "carbon_intensity": parsed.carbon_intensity}
    return {k: v for k, v in options.items() if v is not None}, parsed.quiet


class LiveDisplay:
    """One output line, redrawn in place (a display handle) every ``interval`` seconds while
    the tracker runs; it only reads ``tracker.live()``, so the run records the same energy."""

    def __init__(self, tracker: EnergyTracker, interval: float = 1.0, enabled: bool = True) -> None:
        self.tracker = tracker
        self.interval = interval
        self.enabled = enabled
        self.updates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None

    def __enter__(self) -> LiveDisplay:
        if self.enabled:
            from IPython.display import display as untyped_display

            display: Callable[..., Any] = untyped_display  # IPython's display() has no annotations
            self._handle = display({"text/plain": "LET 0:00 | starting"}, raw=True, display_id=True)
            # The kernel sends output to the cell whose context it runs in: the thread gets this one's.
            context = contextvars.copy_context()
            self._thread = threading.Thread(target=context.run, args=(self._loop,), name="let-live",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.tracker.running:
                return
            try:
                self.show(format_status(self.tracker.live(), width=120))
            except Exception:  # the display stops; the cell and its run go on
                return
            self.updates += 1

    def show(self, text: str) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _tracker(options: dict[str, Any]) -> EnergyTracker:
    tracker = EnergyTracker(**options)
    # The magic prints the statement of the cell's run itself; the statement reporter would
    # print the whole project's beside it, two statements for one cell.
    tracker.reporters = [r for r in tracker.reporters if getattr(r, "name", "") != "statement"]
    return tracker


class TrackMagics:
    """The magics' state: one run started by ``%track_start`` at a time."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.open: EnergyTracker | None = None

    def track(self, line: str, cell: str) -> Any:
        options, quiet = parse_options("%track", line)
        tracker = _tracker(options)
        tracker.start()
        failed = ""
        with LiveDisplay(tracker, enabled=not quiet) as live:
            try:
                outcome = self.shell.run_cell(cell, store_history=False)
                error = outcome.error_in_exec or outcome.error_before_exec
                failed = f"{type(error).__name__}: {error}" if error is not None else ""
            except BaseException as exc:  # KeyboardInterrupt included: the run is recorded as failed
                tracker.stop(status="failed", error=f"{type(exc).__name__}: {exc}")
                raise
            result = tracker.stop(status="failed", error=failed) if failed else tracker.stop()
            live.show(self._summary(tracker, result))
        return self._finish(tracker)

    def track_start(self, line: str) -> None:
        if self.open is not None and self.open.running:
            raise ConfigurationError(f"%track_start: project {self.open.project_name!r} is already being "
                                     "tracked; %track_stop ends it first")
        options, _ = parse_options("track_start", line)
        self.open = _tracker(options)
        self.open.start()
        print(f"LET: tracking project {self.open.project_name!r} until %track_stop")

    def track_stop(self, line: str) -> Any:
        if line.strip():
            raise ConfigurationError(f"%track_stop takes no arguments, got {line.strip()!r}")
        tracker, self.open = self.open, None
        if tracker is None or not tracker.running:
            raise ConfigurationError("%track_stop: nothing is being tracked; %track_start [PROJECT] starts a run")
        result = tracker.stop()
        print(self._summary(tracker, result))
        return self._finish(tracker)

    @staticmethod
    def _summary(tracker: EnergyTracker, result: dict[str, Any]) -> str:
        from let_core.units import format_emissions, format_energy

        energy = result["energy_consumed"]
        if energy != energy:
            return f"LET: project {tracker.project_name!r}: no backend gave an energy value (see the run below)"
        return (f"LET: {format_energy(energy)}, {format_emissions(result['emissions'] * 1000)} CO2e in "
                f"{result['duration']:.1f} s ({result['tracking_mode']}), project {tracker.project_name!r}")

    @staticmethod
    def _finish(tracker: EnergyTracker) -> Any:
        """The run's statement (printed: it is what goes into the paper) and the run itself,
        which the notebook shows through its HTML repr."""
        run = tracker.last_run
        text = run_statement(run) if run is not None else ""
        if text:
            print(text)
        return run


def run_statement(run: Any) -> str:
    """The statement of this one run ("" when nothing measured it), counted by the one rule;
    the whole project's is `lett statement -p PROJECT`."""
    from let_core._version import __version__
    from let_core.results.counting import totals_of_runs
    from let_core.statement import statement_from_totals

    totals = totals_of_runs([run.rows(__version__)])
    return "" if totals.empty else statement_from_totals(totals)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext let_core``: register ``%%track``, ``%track_start`` and ``%track_stop``."""
    state = TrackMagics(shell)
    shell.register_magic_function(state.track, magic_kind="cell", magic_name="track")
    shell.register_magic_function(state.track_start, magic_kind="line", magic_name="track_start")
    shell.register_magic_function(state.track_stop, magic_kind="line", magic_name="track_stop")
    shell.user_ns.setdefault("_let_magics", state)

