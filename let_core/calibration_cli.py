"""``lett calibration fit|show|remove``: a host's wall-socket calibration of its estimates
(``let_core.results.calibration``), registered through ``let_register_commands``."""

from __future__ import annotations

from typing import Any

from let_core.hookspecs import hookimpl


@hookimpl
def let_register_commands(cli: Any) -> None:
    import click

    from let_core.cli import LetGroup

    @cli.group("calibration", cls=LetGroup)
    def calibration() -> None:
        """Correct a host's estimates by what its wall socket saw (runs measured both ways)."""

    @calibration.command("fit")
    @click.option("--hostname", default=None, help="Host to calibrate (default: every host with paired runs).")
    @click.option("--estimate", "estimate_backend", default="codecarbon", show_default=True,
                  help="The estimate backend to correct.")
    @click.option("--metered", "metered_backend", default="tasmota", show_default=True,
                  help="The whole-machine metered backend that is the truth.")
    @click.option("--resolution-wh", type=float, default=None,
                  help="The meter's resolution per reading in Wh (default: 0.01 for tasmota, else 1).")
    @click.option("--output-dir", "--output_dir", "output_dir", default=None,
                  help="Store to read (default: $LET_HOME). The calibration is kept under $LET_HOME.")
    @click.option("--dataset", default=None, help="Parquet dataset to read too.")
    def fit_command(hostname: str | None, estimate_backend: str, metered_backend: str,
                    resolution_wh: float | None, output_dir: str | None, dataset: str | None) -> None:
        """Fit per host: wall = a x estimate + base power x duration, with cross-validated error."""
        from let_core.results.calibration import CalibrationRefused, fit, paired_runs, save
        from let_core.results.loading import load_results

        frame = load_results(output_dir, hostname=hostname, dataset=dataset)
        if hostname is not None:
            hosts = [hostname]
        else:
            metered = frame[(frame["backend"] == metered_backend) & (frame["kind"] == "metered")]
            hosts = sorted(set(metered["hostname"].dropna().astype(str)) - {""})
        if not hosts:
            raise click.ClickException(f"no host has {metered_backend} figures in the store; track runs "
                                       f"with --backend {estimate_backend} --backend {metered_backend} first")
        refused = []
        for host in hosts:
            try:
                fitted = fit(paired_runs(frame, host, estimate_backend, metered_backend),
                             estimate_backend, metered_backend, resolution_wh)
            except CalibrationRefused as exc:
                refused.append(str(exc))
                click.echo(f"refused: {exc}", err=True)
                continue
            path = save(fitted)
            click.echo("\n".join(fitted.details()))
            click.echo(f"  saved to {path}")
        if len(refused) == len(hosts):
            raise SystemExit(1)

    @calibration.command("show")
    @click.option("--hostname", default=None, help="Only this host.")
    @click.option("--json", "as_json", is_flag=True, help="The stored files' content.")
    def show_command(hostname: str | None, as_json: bool) -> None:
        """The stored calibrations, in words."""
        from let_core.results.calibration import calibration_dir, load_calibrations

        found = load_calibrations()
        if hostname is not None:
            found = {h: c for h, c in found.items() if h == hostname}
        if not found:
            click.echo(f"no calibration{' of ' + hostname if hostname else ''} in {calibration_dir()}; "
                       "`lett calibration fit` makes one from runs measured both ways")
            return
        for calibrated in found.values():
            click.echo(calibrated.to_json().rstrip() if as_json else "\n".join(calibrated.details()))

    @calibration.command("remove")
    @click.argument("hostname")
    def remove_command(hostname: str) -> None:
        """Delete a host's calibration (stored runs are never changed)."""
        from let_core.results.calibration import calibration_path, remove

        if not remove(hostname):
            raise click.ClickException(f"no calibration of {hostname} ({calibration_path(hostname)} does not exist)")
        click.echo(f"removed the calibration of {hostname}")
