"""``lett plot``: energy per run over time, and estimates against metered values (matplotlib, Agg)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from let_core.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd


#: What ``plot_energy`` reads: ``load_results(columns=PLOT_COLUMNS)``.
PLOT_COLUMNS: tuple[str, ...] = ("run_id", "project_name", "task", "kind", "scope", "energy_consumed",
                                 "start_time", "timestamp", "backend", "duration", "coverage")


def plot_energy(frame: pd.DataFrame, output: str) -> str:
    """Write the figure to ``output``; returns a one-line description of what was drawn."""
    import os

    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ConfigurationError(f"cannot write {output}: the folder {folder} does not exist; "
                                 "create it first or give another --output")
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError("`lett plot` needs matplotlib: pip install 'lamarr-energy-tracker[plot]'") from None
    matplotlib.use("Agg")  # files only: no display needed on a cluster node
    import matplotlib.pyplot as plt
    import pandas as pd

    from let_core.results.counting import EST_PRIMARY, MET_PRIMARY, row_roles

    # ISO 8601 is what LET and CodeCarbon write; "mixed" would parse each cell in Python.
    def times(column: str) -> pd.Series:
        return pd.to_datetime(frame[column], errors="coerce", utc=True, format="ISO8601")

    # A run's start, else (a row without one) its end; naive UTC: datetime64, not a million
    # Timestamp objects.
    start = times("start_time").fillna(times("timestamp")).dt.tz_localize(None).to_numpy()
    per_kind: dict[str, pd.DataFrame] = {}
    roles, run_codes, energy = row_roles(frame)
    for kind, bit in (("estimate", EST_PRIMARY), ("metered", MET_PRIMARY)):
        mask = (roles & bit) > 0
        if mask.any():
            per_run = pd.DataFrame({"run": run_codes[mask], "start": start[mask], "kwh": energy[mask],
                                    "project": frame["project_name"].to_numpy()[mask]})
            per_kind[kind] = per_run.groupby("run").agg(start=("start", "min"), kwh=("kwh", "sum"),
                                                        project=("project", "first"))
    if not per_kind:
        raise ConfigurationError("no run with a usable energy value to plot")
    paired = None
    if len(per_kind) == 2:
        paired = per_kind["estimate"].join(per_kind["metered"], lsuffix="_estimate", rsuffix="_metered",
                                           how="inner")
        paired = paired if not paired.empty else None
    figure, axes = plt.subplots(1, 2 if paired is not None else 1, figsize=(11 if paired is not None else 7, 4),
                                squeeze=False)
    timeline = axes[0][0]
    projects = sorted({str(p) for runs in per_kind.values() for p in runs["project"].unique()})
    many = len(projects) > 10  # past that a legend entry per project says nothing
    for kind, runs in per_kind.items():
        # One line per project: a line from one project's run to another's would read as a trend.
        for project, of_project in (runs.groupby("project", sort=True) if not many else [("", runs)]):
            of_project = of_project.sort_values("start")
            label = f"{project}, {kind} ({len(of_project)} runs)" if not many else f"{kind} ({len(of_project)} runs)"
            # Markers only where they can be told apart; a million of them take minutes to draw.
            timeline.plot(of_project["start"], of_project["kwh"] * 1000,
                          marker="o" if len(of_project) <= 2000 else None,
                          linestyle="-" if len(per_kind) == 1 or kind == "estimate" else "--",
                          label=label)
    timeline.set_title("Energy per run")
    timeline.set_xlabel("run start (UTC)")
    timeline.set_ylabel("energy (Wh)")
    timeline.legend()
    figure.autofmt_xdate()
    runs_drawn = len(set().union(*(set(r.index) for r in per_kind.values())))
    described = (f"{runs_drawn} run{'s' if runs_drawn != 1 else ''} of {len(projects)} "
                 f"project{'s' if len(projects) != 1 else ''}")
    if paired is not None:
        compare = axes[0][1]
        compare.scatter(paired["kwh_estimate"] * 1000, paired["kwh_metered"] * 1000)
        top = float(max(paired["kwh_estimate"].max(), paired["kwh_metered"].max()) * 1000) * 1.05 or 1.0
        compare.plot([0, top], [0, top], linestyle="--", color="grey", label="metered = estimate")
        ratio = paired["kwh_metered"].sum() / paired["kwh_estimate"].sum() if paired["kwh_estimate"].sum() else float("nan")
        compare.set_title(f"Estimate vs metered ({len(paired)} runs, {ratio:.2f}x)")
        compare.set_xlabel("estimated energy (Wh)")
        compare.set_ylabel("metered energy (Wh)")
        compare.legend()
        described += f" and {len(paired)} estimate/metered pairs (metered = {ratio:.2f}x estimate)"
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=120)
    except (OSError, ValueError) as exc:  # ValueError: an image format matplotlib does not write
        raise ConfigurationError(f"cannot write {output}: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        plt.close(figure)
    return f"wrote {output}: {described}"


def plot_calibration(views: list[dict[str, Any]], output: str) -> str:
    """One panel per calibrated host (``calibration.view_data``): paired runs, the fitted line
    and its band, and the estimate-only runs it corrected with their intervals."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigurationError("`lett plot` needs matplotlib: pip install 'lamarr-energy-tracker[plot]'") from None
    if not views:
        raise ConfigurationError("no calibration to draw; `lett calibration fit` makes one from runs measured both ways")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(views), figsize=(7 * len(views), 5), squeeze=False)
    for axis, view in zip(axes[0], views):
        line = view["line"]
        axis.fill_between(line["estimate_w"], line["low_w"], line["high_w"], color="#1f6feb", alpha=0.15,
                          label=f"{view['level']:.0%} interval ({view['band_duration_s'] / 60:.0f} min run)")
        axis.plot(line["estimate_w"], line["wall_w"], color="#1f6feb", label="fitted calibration")
        axis.plot(line["estimate_w"], line["estimate_w"], color="grey", linestyle="--", label="wall = estimate")
        axis.scatter(view["paired"]["estimate_w"], view["paired"]["wall_w"], s=12, color="#333",
                     label=f"paired runs ({len(view['paired']['wall_w'])})")
        corrected = view["corrected"]
        if corrected["calibrated_w"]:
            lows = [c - lo for c, lo in zip(corrected["calibrated_w"], corrected["low_w"])]
            highs = [hi - c for c, hi in zip(corrected["calibrated_w"], corrected["high_w"])]
            axis.errorbar(corrected["estimate_w"], corrected["calibrated_w"], yerr=[lows, highs], fmt="o",
                          color="#d97706", markersize=4, capsize=2,
                          label=f"corrected estimate-only runs ({len(corrected['calibrated_w'])})")
        axis.set_title(f"{view['host']}: held-out error {view['cv_error'] * 100:.1f}%, "
                       f"{view['interval_coverage']:.0%} inside the interval", fontsize=10)
        axis.set_xlabel("estimate's mean power (W)")
        axis.set_ylabel("wall mean power (W)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return f"wrote {output}: calibration of {', '.join(v['host'] for v in views)}"
