"""How LET's values look to a person: lists in words (``join_words``, ``by_count``) and, in a
notebook, the HTML of ``Run._repr_html_`` and ``Totals._repr_html_``. Built here once; a leaf
(the standard library and ``units`` only), so records, counting, calibration and the statement
can all use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterable

from let_core.units import format_emissions, format_energy


def join_words(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c": a list as a sentence reads it."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def counted(n: int, noun: str) -> str:
    """"1 run", "99,847 runs": a count in prose, with thousands separators (the plural adds s)."""
    return f"1 {noun}" if n == 1 else f"{n:,} {noun}s"


def by_count(counts: Mapping[str, int]) -> list[str]:
    """The names of a tally, the most frequent first (ties by name), as the statement lists
    methods, backends and hardware."""
    return sorted(counts, key=lambda k: (-counts[k], k))


def html_table(rows: Iterable[tuple[str, str]], caption: str = "") -> str:
    """A two-column table (label, value), every cell escaped."""
    import html  # (html.entities costs a millisecond: only a notebook's display needs it)

    head = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>" if caption else ""
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='let'>{head}{body}</table>"


def run_rows(run: Any) -> list[tuple[str, str]]:
    """What a person reads of one run: the counted figure, then each backend's."""
    energy = run.energy_kwh
    rows = [("project", run.project_name), ("run", run.run_id[:8] + (f" task {run.task}" if run.task else "")),
            ("status", run.status + (f": {run.error}" if run.error else "")),
            ("duration", f"{run.duration_s:.1f} s"),
            ("energy", format_energy(energy) if energy == energy else "-"),
            ("emissions", format_emissions(run.emissions_kg(energy) * 1000) if energy == energy else "-"),
            ("carbon intensity", f"{run.carbon_intensity:g} gCO2/kWh ({run.country_iso_code})")]
    for m in run.measurements:
        shown = f"failed: {m.error}" if m.error else f"{format_energy(m.energy_kwh)} ({m.methodology}, {m.kind})"
        rows.append((f"  {m.backend}", shown))
    return rows


def totals_rows(totals: Any) -> list[tuple[str, str]]:
    rows = [("runs", str(totals.runs)), ("energy", format_energy(totals.energy_kwh)),
            ("emissions", format_emissions(totals.emissions_kg * 1000)),
            ("metered", format_energy(totals.metered_kwh) + f" of {totals.metered_runs} run(s)"),
            ("estimated runs", str(totals.estimated_runs))]
    rows += [("methodology", f"{name} ({n})") for name, n in totals.methodologies.items()]
    return rows
