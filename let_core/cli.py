"""The ``lett`` command line (``let`` is its alias). Plugins add commands through the ``let_register_commands`` hook."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from let_core._version import __version__
from let_core.errors import LetError

if TYPE_CHECKING:
    from let_core.results.deleting import Deletion

#: The primary console script. ``let`` is kept as an alias for those who call it by path, but
#: in bash and zsh ``let`` is a builtin that wins over ``PATH``, so messages name this one.
COMMAND_NAME = "lett"

_FILTERS = [
    click.option("-o", "--output-dir", "--output_dir", "output_dir", default=None,
                 help="Store folder (default: $LET_HOME or ~/.let)."),
    click.option("-p", "--project", "--project_name", "project_name", default=None, help="Only this project."),
    click.option("-u", "--user", default=None, help="Only this user."),
    click.option("-H", "--hostname", default=None, help="Only this host."),
]


def filter_options(func: Any) -> Any:
    for option in reversed(_FILTERS):
        func = option(func)
    return func


class LetGroup(click.Group):
    """Turns LET's own errors into a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LetError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LetGroup)
@click.version_option(__version__, prog_name=COMMAND_NAME)
def cli() -> None:
    """LET, the Lamarr Energy Tracker: measure the energy of experiments, report it honestly."""


def _country_options(func: Any) -> Any:
    """--country / --carbon-intensity, shared by `lett run`, `lett demo` and `lett statement`."""
    func = click.option("--carbon-intensity", "carbon_intensity", type=float, default=None,
                        help="gCO2/kWh; overrides the country's figure.")(func)
    return click.option("-c", "--country", "country", default=None,
                        help="ISO 3166 code (DEU, FRA, US ...) for the carbon intensity; "
                             "`lett countries` lists them.")(func)


def _tracker_country(country: str | None, carbon_intensity: float | None) -> dict[str, Any]:
    """Only what was given: without --country the tracker's own default (and its environment
    handling) decides, so a CLI run is not pinned to one country here."""
    given: dict[str, Any] = {}
    if country is not None:
        given["country_iso_code"] = country
    if carbon_intensity is not None:
        given["carbon_intensity"] = carbon_intensity
    return given


@cli.command()
@filter_options
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too (default: LET_DATASET or STORE/runs).")
@click.option("--methodology", default=None, help="Custom statement: how the energy was obtained.")
@click.option("--hardware", default=None, help="Custom statement: the hardware used.")
@click.option("--energy", "consumed_energy", type=float, default=None, help="Custom statement: energy in kWh.")
@click.option("--kind", type=click.Choice(["metered", "estimate"]), default=None,
              help="Custom statement: whether the energy was measured or estimated "
                   "(default: by what the methodology names).")
@_country_options
@click.option("--no-calibration", "no_calibration", is_flag=True,
              help="Leave out the wall-socket-calibrated figures of estimate-only runs.")
@click.option("--transfer", is_flag=True,
              help="Hosts with identical CPU and GPU models may borrow a calibration (the statement says so).")
@click.option("--attribution", "attributed", is_flag=True,
              help="State each run's share of the machine (runs tracked with --attribution process) "
                   "instead of the whole machine's figure.")
def statement(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
              dataset: str | None, methodology: str | None, hardware: str | None,
              consumed_energy: float | None, kind: str | None, country: str | None,
              carbon_intensity: float | None, no_calibration: bool, transfer: bool, attributed: bool) -> None:
    """Print the paper statement for the stored runs (or a custom one).

    --country / --carbon-intensity restate the emissions at that grid's intensity. Without them
    stored runs keep the intensity each was recorded with, and a custom statement uses the
    tracker's default (LET_CARBON_INTENSITY, else LET_COUNTRY's grid, else Germany's).
    """
    from let_core.carbon import country_intensity, resolve_intensity, validate_intensity
    from let_core.statement import custom_paper_statement, paper_statement

    intensity = (validate_intensity(carbon_intensity) if carbon_intensity is not None
                 else country_intensity(country).carbon_intensity if country is not None else None)
    custom = (methodology, hardware, consumed_energy)
    if any(v is not None for v in custom):
        if any(v is None for v in custom):
            raise click.UsageError("a custom statement needs --methodology, --hardware and --energy")
        click.echo(custom_paper_statement(methodology, hardware, consumed_energy,  # type: ignore[arg-type]
                                          carbon_intensity=resolve_intensity(country, carbon_intensity)[1],
                                          kind=kind))
        return
    from let_core.errors import ConfigurationError

    try:
        text = paper_statement(output_dir, project_name, user, hostname, dataset=dataset,
                               carbon_intensity=intensity, calibration=not no_calibration,
                               transfer=transfer, attributed=attributed)
    except ConfigurationError:
        _raise_if_no_match(output_dir, dataset, project_name, user, hostname)
        raise  # rows match but none has an energy value: its own message says so
    click.echo(text)


def _raise_if_no_match(output_dir: str | None, dataset: str | None, project_name: str | None,
                       user: str | None, hostname: str | None) -> None:
    """A filter that matches nothing gets the names that exist (no filter: the caller's own message)."""
    from let_core.results import load_results

    if all(v is None for v in (project_name, user, hostname)):
        return
    if load_results(output_dir, project_name, user, hostname, dataset=dataset, columns=["run_id"]).empty:
        raise click.ClickException(no_match_message(output_dir, dataset, project_name, user, hostname))


def newest(frame: Any, limit: int) -> Any:
    """The ``limit`` runs that started last, oldest first: sources (the CSV store, each
    dataset partition) come in their own order, so position says nothing about time."""
    keys = [c for c in ("start_time", "timestamp") if c in frame]  # stored to the second: ties
    return frame.sort_values(keys, kind="stable", na_position="first").tail(limit)


def no_match_message(output_dir: str | None, dataset: str | None, project_name: str | None,
                     user: str | None, hostname: str | None) -> str:
    """"no stored runs match", where it looked, and for a filter value that exists nowhere the
    close names that do (a typo in a project name must not read as "no runs yet")."""
    from let_core.errors import close_names
    from let_core.results import load_results
    from let_core.results.loading import where

    message = f"no stored runs match in {where(output_dir, dataset)}"
    given = {"project_name": ("--project", project_name), "user": ("--user", user),
             "hostname": ("--hostname", hostname)}
    given = {column: flag for column, flag in given.items() if flag[1] is not None}
    if not given:
        return message + "; track a run first (`lett demo --keep` stores one)"
    present = load_results(output_dir, dataset=dataset, columns=list(given))
    hints = []
    for column, (flag, value) in given.items():
        names = sorted({str(v) for v in present[column].dropna().unique()}) if column in present else []
        if value in names:
            continue
        hints.append(f"{flag} {value!r} matches none; {close_names(str(value), names)}")
    return message + ("; " + "; ".join(hints) if hints else " with these filters together")


_TABLE_COLUMNS = ("start_time", "project_name", "hostname", "backend", "kind", "energy_consumed",
                  "emissions", "duration", "coverage", "run_status", "run_id")


@cli.command()
@filter_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.option("-n", "--limit", type=int, default=50, show_default=True, help="Newest rows to show (0: all).")
@click.option("--by", type=click.Choice(["project", "user", "host", "backend", "job"]), default=None,
              help="Sum per project, user, host, backend or job (ranks of a multi-node job count as one).")
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too (default: LET_DATASET or STORE/runs).")
@click.option("--calibrated", is_flag=True,
              help="Add each estimate's wall-socket-calibrated kWh and interval (`lett calibration`).")
@click.option("--transfer", is_flag=True,
              help="With --calibrated: hosts with identical CPU and GPU models borrow a calibration.")
@click.option("--attribution", "attributed", is_flag=True,
              help="Count each run's share of the machine (kind attributed) instead of the machine's "
                   "figure where it has one; without --by, leave out the figures a share stands in for.")
def results(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
            as_json: bool, limit: int, by: str | None, dataset: str | None, calibrated: bool,
            transfer: bool, attributed: bool) -> None:
    """Show stored runs as a readable table (or JSON), or their sums --by project|user|host|backend|job."""
    from let_core.results import AGGREGATE_COLUMNS, load_results
    # Only the columns shown or summed: over a million runs that is a third of the memory.
    columns = AGGREGATE_COLUMNS if by is not None else None if as_json else (*_TABLE_COLUMNS, "timestamp")
    frame = load_results(output_dir, project_name, user, hostname, dataset=dataset, columns=columns,
                         calibrated=calibrated and by is None, transfer=transfer)
    if frame.empty and not as_json:
        raise click.ClickException(no_match_message(output_dir, dataset, project_name, user, hostname))
    if by is not None:
        _print_groups(frame, by, as_json, attributed)
        return
    if attributed:
        from let_core.results.counting import attributed_view
        from let_core.results.rule import SHARED_OUT

        frame = frame[(attributed_view(frame)["kind"] != SHARED_OUT).to_numpy(dtype=bool)]
    if limit > 0:
        frame = newest(frame, limit)
    if as_json:
        _echo_json_lines(frame)
        return
    shown = frame[list(_TABLE_COLUMNS)].copy()
    shown["coverage"] = shown["coverage"].map(_coverage)
    # The statement's units, so a small run reads "12.000 mWh" here as there, never "0.000 Wh".
    from let_core.units import format_emissions, format_energy

    shown["energy_consumed"] = shown["energy_consumed"].map(lambda v: _scaled_or_dash(format_energy, v))
    shown["emissions"] = shown["emissions"].map(lambda v: _scaled_or_dash(format_emissions, v * 1000))
    shown["duration"] = shown["duration"].map(lambda v: _fmt(v, "s"))
    shown["run_id"] = shown["run_id"].astype(str).str[:8]
    if calibrated:
        from let_core.results.calibration import calibrated_cells

        shown["calibrated"] = calibrated_cells(frame)
    click.echo(format_table(list(shown.columns), shown.astype(str).values.tolist()))


def _echo_json_lines(frame: Any) -> None:
    for record in frame.to_dict(orient="records"):
        click.echo(json.dumps({k: _jsonable(v) for k, v in record.items()}))


def _print_groups(frame: Any, by: str, as_json: bool, attributed: bool = False) -> None:
    from let_core.results import aggregate, frame_totals
    from let_core.results.counting import run_hours

    groups = aggregate(frame, by, attributed=attributed)
    if as_json:
        _echo_json_lines(groups)
        return
    from let_core.units import format_emissions, format_energy

    # The statement's units, as the plain table: "5.000 mWh", never "0.000005 kWh".
    rows = [[str(r[by]) or "(none)", str(int(r["runs"])), _scaled_or_dash(format_energy, r["kwh"]),
             _scaled_or_dash(format_emissions, r["kg"] * 1000), f"{r['hours']:.3f}",
             _coverage(r["coverage"])] for r in groups.to_dict(orient="records")]
    header = [by, "runs", "energy", "CO2e", "hours", "metered"]
    if by == "job":
        header += ["nodes", "ranks", "wall"]
        for row, r in zip(rows, groups.to_dict(orient="records")):
            row += [str(int(r["nodes"])), str(int(r["ranks"])), _fmt(r["wall_s"], "s")]
    # The total is what the runs count for (the statement's figure), each run once. Per
    # project, host or job that is the groups' sum; backends that measured the same run
    # overlap, so per backend it is not, and the label says so.
    totals = frame_totals(frame, attributed=attributed)
    label = "total" if by != "backend" else "total (each run once)"
    rows.append([label, str(totals.runs), format_energy(totals.energy_kwh),
                 format_emissions(totals.emissions_kg * 1000), f"{run_hours(frame, attributed):.3f}",
                 _coverage(totals.coverage)]
                + [""] * (len(header) - 6))
    click.echo(format_table(header, rows))
    if by == "backend":
        click.echo("\nBackends that measured the same run overlap: the total counts each run once, "
                   "as the statement does, not the column's sum.")
    if attributed:
        machine = frame_totals(frame)
        click.echo(f"\nThis process's share of the machine, where runs have one; the machine as a whole: "
                   f"{format_energy(machine.energy_kwh)}.")


def _coverage(value: Any) -> str:
    """The metered share of a figure's time: "-" for none (estimates), else a percentage."""
    from let_core.units import format_share

    return format_share(value if isinstance(value, (int, float)) else None)


_DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"])


@cli.command()
@click.option("-o", "--output-dir", "--output_dir", "output_dirs", multiple=True,
              help="Store folder (repeatable: several stores are read as one; default: $LET_HOME or ~/.let).")
@click.option("-d", "--dataset", default=None,
              help="Parquet dataset folder or URI (s3://...) to read too (default: LET_DATASET or STORE/runs).")
@click.option("--since", type=_DATES, default=None, help="Only runs started at or after this (UTC), e.g. 2026-01-01.")
@click.option("--until", type=_DATES, default=None,
              help="Only runs started at or before this (UTC); a date alone is its midnight, e.g. 2026-07-01.")
@click.option("--by", "by", type=click.Choice(["group"]), default=None,
              help="Also break down by the groups of --groups (implied by --groups).")
@click.option("-g", "--groups", "groups_file", type=click.Path(dir_okay=False), default=None,
              help="TOML or CSV file mapping users and projects to groups (format: README, `lett report`).")
@click.option("--html", "html_file", required=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (one self-contained file; print it to PDF from a browser).")
@click.option("--title", default="Energy and carbon impact report", show_default=True)
def report(output_dirs: tuple[str, ...], dataset: str | None, since: Any, until: Any, by: str | None,
           groups_file: str | None, html_file: str, title: str) -> None:
    """Write an HTML impact report: energy, emissions, measured vs estimated per project, user,
    host, month (and group), the biggest and failed runs, each project's paper statement."""
    import datetime as dt
    from pathlib import Path

    from let_core.atomicfile import write_atomically
    from let_core.report import build_report, load_groups, render_html
    from let_core.statement import format_emissions, format_energy

    if by == "group" and groups_file is None:
        raise click.UsageError("--by group needs --groups FILE, the file mapping users and projects to groups")
    since, until = ((None if d is None else d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc))
                    for d in (since, until))
    if since is not None and until is not None and until < since:
        raise click.UsageError(f"--until {until:%Y-%m-%d %H:%M} is before --since {since:%Y-%m-%d %H:%M}")
    target = Path(html_file)
    if not target.parent.is_dir():
        raise click.ClickException(f"cannot write {target}: the folder {target.parent} does not exist; "
                                   "create it or name another --html file")
    groups = load_groups(groups_file) if groups_file is not None else None  # a bad file fails before reading
    built = build_report(list(output_dirs) or None, dataset, since=since, until=until, groups=groups)
    text = render_html(built, title=title)
    write_atomically(target, text.encode("utf-8"))  # an interrupted run never leaves half a report
    if built.empty:
        click.echo(f"warning: no runs recorded in {'; '.join(built.sources)} for this period; "
                   f"{target} says so", err=True)
        return
    click.echo(f"wrote {target}: {built.totals.runs:,} run(s), {format_energy(built.totals.energy_kwh)}, "
               f"{format_emissions(built.totals.emissions_kg * 1000)} CO2e")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--into", required=True, type=click.Path(file_okay=False),
              help="Store folder to merge into (created if missing).")
def merge(files: tuple[str, ...], into: str) -> None:
    """Merge emissions.csv files (LET 1.x, LET 0.1.x, CodeCarbon) into one store, without duplicates."""
    from let_core.merge import merge as merge_files

    click.echo(merge_files(list(files), into).summary())


@cli.command()
@click.option("-o", "--output-dir", "--output_dir", "output_dir", default=None,
              help="Store folder whose dataset (STORE/runs) to compact.")
@click.option("-d", "--dataset", default=None, help="Dataset folder or URI (default: LET_DATASET or STORE/runs).")
def compact(output_dir: str | None, dataset: str | None) -> None:
    """Merge the Parquet dataset's small per-run files, one file per partition."""
    from let_core.config import default_dataset_root, is_uri, let_home
    from let_core.dataset import compact as compact_dataset
    from let_core.dataset import locate

    if dataset is None and is_uri(output_dir):
        dataset, output_dir = output_dir, None
    location = locate(dataset or default_dataset_root(output_dir or let_home()))
    report = compact_dataset(location)
    click.echo(f"{location.display}: {report.files_before} file(s) -> {report.files_after} "
               f"({report.partitions} partition(s) merged, {report.rows} row(s) rewritten)")


@cli.command()
@click.argument("format_name", metavar="FORMAT")
@click.argument("destination")
@filter_options
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too.")
def export(format_name: str, destination: str, output_dir: str | None, project_name: str | None,
           user: str | None, hostname: str | None, dataset: str | None) -> None:
    """Export stored runs with a reporter: `lett export strep --project NAME DIR`, `lett export parquet URI`."""
    from let_core.interfaces import Settings
    from let_core.plugins import get_factory, registry
    from let_core.results import load_results

    formats = sorted(name for name, item in registry().reporters.items()
                     if callable(getattr(item.factory, "export", None)))
    if format_name not in formats:
        raise click.ClickException(f"unknown export format {format_name!r}; formats: {', '.join(formats)}")
    factory = get_factory("reporter", format_name).factory
    frame = load_results(output_dir, project_name, user, hostname, dataset=dataset)
    if frame.empty:
        raise click.ClickException(no_match_message(output_dir, dataset, project_name, user, hostname)
                                   + "; nothing exported")
    settings = Settings.resolve(project_name or "default")
    factory.from_settings(settings).export(frame, destination)
    click.echo(f"exported {len(frame)} row(s) as {format_name} to {destination}")


@cli.command()
@filter_options
@click.option("--output", "output", default="energy.png", show_default=True,
              help="Image file to write (its folder must exist).")
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too.")
@click.option("--calibration", "calibration", is_flag=True,
              help="Draw each calibrated host's calibration (paired runs, fitted line and band, corrected runs).")
def plot(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
         output: str, dataset: str | None, calibration: bool) -> None:
    """Draw energy per run over time (and estimate vs metered when both exist) with matplotlib."""
    from let_core.plot import PLOT_COLUMNS, plot_energy
    from let_core.results import load_results

    if calibration:
        from let_core.plot import plot_calibration
        from let_core.results.calibration import load_calibrations, view_data

        found = load_calibrations()
        stored = load_results(output_dir, project_name, user, hostname, dataset=dataset)
        click.echo(plot_calibration([view_data(stored, c) for h, c in sorted(found.items())
                                     if hostname is None or h == hostname], output))
        return

    frame = load_results(output_dir, project_name, user, hostname, dataset=dataset, columns=PLOT_COLUMNS)
    if frame.empty:
        raise click.ClickException(no_match_message(output_dir, dataset, project_name, user, hostname)
                                   + "; nothing to plot")
    click.echo(plot_energy(frame, output))


def _scaled_or_dash(formatter: Callable[[float], str], value: float) -> str:
    return "-" if value is None or not math.isfinite(value) else formatter(value)


def _fmt(value: float, unit: str) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f} {unit}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """An aligned plain-text table; numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = []
        for cell, width in zip(cells, widths):
            numeric = cell[:1].isdigit() or cell[:1] == "-" and cell[1:2].isdigit()
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


@cli.command()
@filter_options
@click.option("-d", "--dataset", default=None,
              help="Parquet dataset (folder or URI) to delete from too (default: LET_DATASET or STORE/runs).")
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
def delete(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
           dataset: str | None, yes: bool) -> None:
    """Delete the stored runs that match the filters (all runs without filters) from the
    central store and the Parquet dataset (for an s3:// dataset, its run files): every
    source the statement reads. Refuses, changing nothing, where it cannot do it all."""
    from let_core.results.deleting import delete_runs
    from let_core.results.loading import where
    from let_core.schema import filter_dict

    filters = filter_dict(project_name, user, hostname)
    what = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None) or "ALL runs"
    looked = where(output_dir, dataset)
    if not yes:  # (with --yes the delete itself finds what matches: every file is read once)
        planned = delete_runs(output_dir, project_name, user, hostname, dataset=dataset, dry_run=True)
        if not planned.rows:
            click.echo("no stored runs match; nothing deleted")
            return
        click.confirm(f"Delete {_deleted(planned)} ({what}) from {looked}?", abort=True)
    done = delete_runs(output_dir, project_name, user, hostname, dataset=dataset)
    if not done.rows:
        click.echo("no stored runs match; nothing deleted")
        return
    click.echo(f"deleted {_deleted(done)} from {looked}")
    if done.remaining:
        click.echo(f"{done.remaining} matching run(s) still count: recorded while deleting? Run the "
                   "delete again.", err=True)


def _deleted(deletion: Deletion) -> str:
    """``3 run(s)``, and the rows that count for no run when there are only such rows."""
    if deletion.runs:
        return f"{deletion.runs} run(s)"
    return f"0 run(s) ({deletion.rows} stored row(s) that count for no run)"


@cli.command()
@click.option("-o", "--output-dir", "--output_dir", "output_dir", default=None,
              help="Store folder to check (default: LET_HOME).")
@click.option("-d", "--dataset", default=None, help="Dataset folder to check too (default: LET_DATASET or STORE/runs).")
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed without losing a row (the store is backed up first).")
def doctor(output_dir: str | None, dataset: str | None, repair: bool) -> None:
    """Check the store line by line: header, torn or malformed lines, encoding, totals cache,
    CodeCarbon .bak files, rescued runs, temporary files, dataset files. Exit status 1 while
    problems remain."""
    from let_core import doctor as checks

    report = checks.repair(output_dir, dataset) if repair else checks.check(output_dir, dataset)
    for action in report.actions:
        click.echo(f"{'repaired' if repair else 'done'}: {action}")
    for finding in report.findings:
        click.echo(str(finding))
    if report.problems:
        hint = "" if repair else "; `lett doctor --repair` fixes what it can without losing a row"
        raise click.ClickException(f"{len(report.problems)} problem(s){hint}")
    click.echo(f"{_store_path(output_dir)}: no problems found")


def _store_path(output_dir: str | None) -> str:
    from let_core.store import Store

    return str(Store(output_dir).path)


@cli.command()
@filter_options
@click.option("--all", "all_keys", is_flag=True, help="Every BibTeX entry LET knows.")
def cite(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
         all_keys: bool) -> None:
    """Print the BibTeX entries the statement cites."""
    from let_core.errors import ConfigurationError
    from let_core.statement import bibtex, paper_statement, statement_bibtex

    if all_keys:
        click.echo(bibtex())
        return
    try:
        text = paper_statement(output_dir, project_name, user, hostname)
    except ConfigurationError as exc:
        # Guessing the entries of runs that do not exist would cite a method nobody used.
        filters = ", ".join(f"--{k} {v}" for k, v in (("project", project_name), ("user", user),
                                                      ("hostname", hostname)) if v is not None)
        reason = str(exc)
        try:
            _raise_if_no_match(output_dir, None, project_name, user, hostname)
        except click.ClickException as no_match:
            reason = no_match.message  # with the names that do exist
        raise click.ClickException(
            f"nothing to cite for {filters or 'the whole store (no filter)'}: {reason}. "
            "`lett cite --all` prints every entry LET knows.") from None
    from let_core.results import counted_totals

    click.echo(statement_bibtex(counted_totals(output_dir, project_name, user, hostname), text))


@cli.command()
@click.option("--search", "-s", default=None, help="Only countries whose code or name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def countries(search: str | None, as_json: bool) -> None:
    """Country codes and their carbon intensity (CodeCarbon's energy-mix data)."""
    from let_core.carbon import known_countries

    rows = known_countries()
    if search:
        needle = search.strip().lower()
        rows = [c for c in rows if needle in c.iso_code.lower() or needle in c.country_name.lower()]
    if as_json:
        click.echo(json.dumps([{"iso_code": c.iso_code, "country_name": c.country_name,
                                "carbon_intensity": c.carbon_intensity, "year": c.year}
                               for c in rows], indent=2))
        return
    if not rows:
        raise click.ClickException(f"no country matches {search!r}; run `lett countries` for all")
    click.echo(f"{'code':<5} {'gCO2/kWh':>9}  {'year':<4}  country")
    for c in rows:
        click.echo(f"{c.iso_code:<5} {c.carbon_intensity:>9.2f}  {c.year or '':<4}  {c.country_name}")


@cli.command()
@click.option("--verbose", "-v", is_flag=True, help="Also show descriptions.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(verbose: bool, as_json: bool) -> None:
    """List every backend and reporter: source, and whether it can run here (or why not)."""
    from let_core.interfaces import Settings
    from let_core.plugins import registry

    reg = registry()
    settings = Settings.resolve("default")
    entries = []
    for table in (reg.backends, reg.reporters):
        for item in table.values():
            try:
                availability = item.factory.availability(settings)
                available, reason = availability.available, availability.reason
            except Exception as exc:
                available, reason = False, f"availability check failed: {exc}"
            entries.append({"name": item.name, "kind": item.kind, "source": item.source,
                            "plugin": item.plugin, "auto": bool(item.factory.auto),
                            "available": available, "reason": reason,
                            "description": getattr(item.factory, "description", "")})
    problems = [{"plugin": p.plugin, "source": p.source, "problem": p.message} for p in reg.problems]
    if as_json:
        click.echo(json.dumps({"plugins": entries, "problems": problems}, indent=2))
        return
    # One short line per plugin, and the long text (why it is unavailable; with -v what it is)
    # wrapped beneath it, so the list fits an 80-column terminal.
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    headers = ["name", "kind", "source", "auto", "available"]
    lines = format_table(headers, [[e["name"], e["kind"], e["source"], "yes" if e["auto"] else "no",
                                    "yes" if e["available"] else "no"] for e in entries]).splitlines()
    click.echo("\n".join(lines[:2]))
    for line, e in zip(lines[2:], entries):
        click.echo(line)
        notes = ([f"why not: {e['reason']}"] if not e["available"] and e["reason"] else [])
        notes += [e["description"]] if verbose and e["description"] else []
        for note in notes:
            click.echo(textwrap.fill(note, width=width, initial_indent="    ",
                                     subsequent_indent="      "))
    for problem in problems:
        click.echo("\n" + textwrap.fill(f"problem: plugin {problem['plugin']} ({problem['source']}): "
                                        f"{problem['problem']}", width=width, subsequent_indent="  "),
                   err=True)


_QUIET = click.option("--quiet", "-q", is_flag=True,
                      help="No live status line (it is only shown when stderr is a terminal).")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-p", "--project", "project_name", default="default", show_default=True)
@click.option("-b", "--backend", "backends", multiple=True, help="Backend name (repeatable; default: auto).")
@click.option("-o", "--output-dir", default=None)
@click.option("--attribution", type=click.Choice(["none", "process"]), default=None,
              help="process: also record the command's share of the machine's figures "
                   "(CPU time, memory, GPU utilisation where NVML reports it), beside them (default: LET_ATTRIBUTION, else none).")
@_country_options
@_QUIET
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run(project_name: str, backends: tuple[str, ...], output_dir: str | None, attribution: str | None,
        country: str | None, carbon_intensity: float | None, quiet: bool, command: tuple[str, ...]) -> None:
    """Track a command: `lett run --project NAME -- python train.py`."""
    from let_core.live import StatusLine
    from let_core.tracker import EnergyTracker

    tracker = EnergyTracker(project_name=project_name, backends=list(backends) or None,
                            output_dir=output_dir, attribution=attribution,
                            **_tracker_country(country, carbon_intensity))
    tracker.start()
    try:
        with StatusLine(tracker, enabled=False if quiet else None):
            code = subprocess.call(list(command))
    except OSError as exc:
        tracker.stop(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise click.ClickException(f"cannot run {command[0]!r}: {exc}") from exc
    except KeyboardInterrupt:
        tracker.stop(status="failed", error="interrupted")
        raise
    if code == 0:
        tracker.stop()
    else:
        tracker.stop(status="failed", error=f"exit status {code}")
    sys.exit(code)


@cli.command()
@click.option("--seconds", type=float, default=3.0, show_default=True, help="How long the workload runs.")
@click.option("-p", "--project", "project_name", default="let-demo", show_default=True)
@click.option("--keep", is_flag=True, help="Store the demo run in the central store (default: a "
                                           "temporary store, so it never enters your statement).")
@_country_options
@_QUIET
def demo(seconds: float, project_name: str, keep: bool, country: str | None,
         carbon_intensity: float | None, quiet: bool) -> None:
    """Track a small CPU workload with every backend usable here, then print the statement."""
    import tempfile

    from let_core.live import StatusLine
    from let_core.tracker import EnergyTracker

    if country is not None:
        from let_core.carbon import country_intensity

        country_intensity(country)  # an unknown code fails now, not after the workload ran
    with contextlib.ExitStack() as stack:
        output_dir = None if keep else stack.enter_context(tempfile.TemporaryDirectory(prefix="let-demo-"))
        click.echo(f"Tracking a {seconds:g} s CPU workload in project {project_name!r} ...")
        with EnergyTracker(project_name=project_name, output_dir=output_dir,
                           **_tracker_country(country, carbon_intensity)) as tracker:
            with StatusLine(tracker, enabled=False if quiet else None):
                deadline = time.perf_counter() + seconds
                total = 0
                while time.perf_counter() < deadline:
                    total += sum(i * i for i in range(10_000))
        result = tracker.stop()
        for backend, measurement in result["measurements"].items():
            from let_core.units import format_energy

            shown = (f"{format_energy(measurement['energy_consumed'])} ({measurement['methodology']}, "
                     f"{measurement['kind']})" if not measurement["error"] else f"failed: {measurement['error']}")
            click.echo(f"  {backend}: {shown}")
        if keep:
            click.echo(f"Stored in {tracker.output_dir / 'emissions.csv'}; see `lett results` and `lett statement`.")
        else:
            click.echo("Not stored: the demo stays out of `lett results` and `lett statement` "
                       "(`lett demo --keep` stores it).")


@cli.command()
@click.option("-o", "--output-dir", "--output_dir", "output_dir", default=None,
              help="Store folder (default: $LET_HOME or ~/.let).")
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too (default: LET_DATASET or STORE/runs).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; only this machine can connect unless you change it.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--allow-host", "allow_host", multiple=True, metavar="NAME",
              help="Another name it answers to in the Host header (a proxy's, an alias); repeatable. "
                   "By default only localhost, 127.0.0.1, ::1 and the --host address.")
def ui(output_dir: str | None, dataset: str | None, host: str, port: int, allow_host: tuple[str, ...]) -> None:
    """Local web dashboard: runs, a project view, the paper statement (needs the `server` extra)."""
    try:
        import fastapi  # noqa: F401,E401
        import uvicorn  # noqa: F401 - availability check

        from let_core.ui.app import allowed_hosts, bind_socket, serve
    except ImportError as exc:
        raise click.ClickException(f"`lett ui` needs FastAPI and uvicorn ({exc}); install the server "
                                   "extra: pip install 'lamarr-energy-tracker[server]'") from exc
    if host not in ("127.0.0.1", "localhost", "::1"):
        names = ", ".join(sorted(allowed_hosts(host, allow_host)))
        click.echo(f"warning: listening on {host}: other machines can read your results (under "
                   f"{names}{' or any address of this machine' if host in ('0.0.0.0', '::') else ''}; "
                   "add a name with --allow-host NAME)", err=True)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; another "
                                   f"program (an earlier `{COMMAND_NAME} ui`?) may use it: stop it, or "
                                   f"pick another port: {COMMAND_NAME} ui --port {port + 1}") from exc
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    click.echo(f"LET dashboard on http://{'[' + host + ']' if ':' in host else host}:{port}/ "
               "(Ctrl+C stops it)", err=True)
    serve(output_dir, dataset, host=host, port=port, sock=sock, allow_hosts=allow_host)


@cli.command()
@click.option("-o", "--output-dir", "--output_dir", "output_dir", default=None,
              help="Store folder (default: $LET_HOME or ~/.let).")
@click.option("-d", "--dataset", default=None, help="Parquet dataset to read too (default: LET_DATASET or STORE/runs).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Serve /metrics on this port (0: any free one, printed).")
@click.option("--bind", default="127.0.0.1", show_default=True,
              help="Interface to listen on; only this machine can scrape unless you change it.")
@click.option("--textfile", "textfile_dir", type=click.Path(file_okay=False), default=None,
              help="Also write DIR/let.prom for node_exporter's textfile collector.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None,
              help="Rewrite the textfile every this many seconds (default: once, or every 15 s with --port).")
@click.option("--all-hosts", is_flag=True,
              help="Export the stored runs of every host (a merged store), not only this machine's.")
@click.option("--attribution", "attributed", is_flag=True,
              help="Count each run's share of the machine (kind attributed) where it has one, as "
                   "`lett results --attribution` does.")
def exporter(output_dir: str | None, dataset: str | None, port: int | None, bind: str,
             textfile_dir: str | None, interval: float | None, all_hosts: bool, attributed: bool) -> None:
    """Prometheus metrics of this machine: its stored totals and the runs tracked now (needs the `prometheus` extra)."""
    if port is None and textfile_dir is None:
        raise click.UsageError(f"say where the metrics go: {COMMAND_NAME} exporter --port 9877 (Prometheus "
                               "scrapes http://HOST:9877/metrics) or --textfile DIR (node_exporter's textfile collector)")
    try:
        from let_core import exporter as prom
    except ImportError as exc:
        raise click.ClickException(f"`{COMMAND_NAME} exporter` needs prometheus-client ({exc}); install the "
                                   "prometheus extra: pip install 'lamarr-energy-tracker[prometheus]'") from exc
    # A scrape waits a few seconds for a large store's read, then gets the last totals; a
    # textfile alone has no one waiting and is written with the whole read.
    collector = prom.LetCollector(output_dir, dataset, all_hosts=all_hosts, attributed=attributed,
                                  read_wait_s=5.0 if port is not None else None)
    registry = prom.registry_for(collector)
    if textfile_dir is not None:
        try:
            Path(textfile_dir).expanduser().mkdir(parents=True, exist_ok=True)
            path = prom.write_textfile(textfile_dir, registry)
        except OSError as exc:
            raise click.ClickException(f"cannot write the textfile in {textfile_dir}: {exc.strerror or exc}; "
                                       "give a folder you can write (node_exporter's --collector.textfile.directory)") from exc
        click.echo(f"LET metrics written to {path}", err=True)
        if port is None and interval is None:
            return
    if port is not None:
        if bind not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"warning: listening on {bind}: other machines can read your totals", err=True)
        try:
            server, _ = prom.serve(registry, bind, port)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {bind}:{port}: {exc.strerror or exc}; another program "
                                       f"may use it: stop it, or pick another port: {COMMAND_NAME} exporter "
                                       f"--port {port + 1}") from exc
        host = f"[{bind}]" if ":" in bind else bind
        click.echo(f"LET exporter on http://{host}:{server.server_port}/metrics (Ctrl+C stops it)", err=True)
    import signal
    import threading

    stop = threading.Event()
    # SIGTERM (a service manager's stop) ends the exporter between two writes of the textfile,
    # never in the middle of one.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if textfile_dir is not None:
            prom.run_textfile_loop(textfile_dir, registry, interval or 15.0, stop)
        else:
            while not stop.wait(3600):
                pass
    except KeyboardInterrupt:
        return


def _load_plugin_commands() -> None:
    from let_core.plugins import load_plugins, pm

    load_plugins()
    pm.hook.let_register_commands(cli=cli)


def main(argv: list[str] | None = None) -> Any:
    _load_plugin_commands()
    return cli.main(args=argv, prog_name=COMMAND_NAME)


if __name__ == "__main__":
    main()
