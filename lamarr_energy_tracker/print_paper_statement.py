"""``python -m lamarr_energy_tracker.print_paper_statement`` with LET 0.1.x's flags.

Stored runs: ``--output_dir --project_name --user --hostname``. Energy from elsewhere:
``--methodology --hardware --consumed_energy [--carbon_intensity]``.
"""

from __future__ import annotations

import click

from let_core.errors import LetError
from let_core.statement import print_custom_paper_statement, print_paper_statement
from let_core.results import load_results

__all__ = ["load_results", "print_custom_paper_statement", "print_paper_statement", "main"]


@click.command(help="Print a paper statement summarizing energy and carbon emissions of tracked "
                    "experiments, or of custom figures (pass methodology, hardware and energy).")
@click.option("--output_dir", default=None, help="Store folder (default: $LET_HOME or ~/.let).")
@click.option("--project_name", default=None, help="Name of the project.")
@click.option("--user", default=None, help="User name.")
@click.option("--hostname", default=None, help="Host name.")
@click.option("--methodology", default=None, help="How the energy was obtained (e.g. the CO2 Impact Calculator).")
@click.option("--hardware", default=None, help="The experiment hardware (e.g. NVIDIA GTX 1080 GPU).")
@click.option("--consumed_energy", type=float, default=None, help="Consumed energy in kWh.")
@click.option("--carbon_intensity", type=float, default=380, show_default=True, help="gCO2/kWh.")
def main(output_dir: str | None, project_name: str | None, user: str | None, hostname: str | None,
         methodology: str | None, hardware: str | None, consumed_energy: float | None,
         carbon_intensity: float) -> None:
    try:
        if methodology is not None and hardware is not None and consumed_energy is not None:
            print_custom_paper_statement(methodology, hardware, consumed_energy,
                                         carbon_intensity=carbon_intensity)
        else:
            print_paper_statement(output_dir, project_name, user, hostname)
    except LetError as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
