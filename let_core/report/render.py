"""The report as one self-contained HTML file: inline CSS and SVG charts drawn here, no script,
no font, no image fetched from anywhere, so it opens offline, mails as one attachment and
prints to PDF from any browser (print CSS: A4, table headers repeated, no row cut in two)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime

from let_core.report.model import BREAKDOWNS, Line, Report, RunLine
from let_core.units import ENERGY_UNITS, axis, format_emissions, format_energy, format_share

TITLES = {"group": "Groups", "project": "Projects", "user": "Users", "host": "Hosts", "month": "Months"}
METERED_COLOUR, ESTIMATED_COLOUR = "#1f6f8b", "#9ccbd9"

_CSS = """
:root { --ink: #1d2733; --muted: #5b6875; --rule: #d5dbe1; --band: #f3f6f8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--ink); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 10px; margin: 18px 0; }
.card { border: 1px solid var(--rule); border-radius: 6px; padding: 10px 12px; background: var(--band); }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 21px; font-weight: 600; white-space: nowrap; }
.card .note { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.rest td { color: var(--muted); font-style: italic; }
tr.failed td.status { color: #a4161a; font-weight: 600; }
.statement { border-left: 4px solid var(--ink); background: var(--band); padding: 10px 14px; margin: 8px 0 16px;
             white-space: pre-wrap; font-family: "DejaVu Serif", Georgia, serif; }
.empty { border: 1px dashed var(--muted); padding: 16px; border-radius: 6px; }
figure { margin: 8px 0 18px; }
figcaption { color: var(--muted); font-size: 12px; }
svg text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: var(--ink); }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; vertical-align: -1px; }
code { font-size: 12px; }
td code { font-size: inherit; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  table { font-size: 10px; }
  th, td { padding: 3px 4px; }
  th.num { white-space: normal; }
  .cards { grid-template-columns: repeat(3, 1fr); }
  h2 { break-before: page; break-after: avoid; }
  h2.first { break-before: auto; }
  h3 { break-after: avoid; }
  thead { display: table-header-group; }
  tr, figure, .card, .statement { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _date(value: datetime | None, with_time: bool = False) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M UTC" if with_time else "%Y-%m-%d")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _part(kwh: float) -> str:
    """A measured or estimated part: "-" where there is none (never "0.000 kWh" beside a figure)."""
    return format_energy(kwh) if kwh > 0 else "-"


def render_html(report: Report, title: str = "Energy and carbon impact report") -> str:
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<meta name='generator' content='LET (lett report)'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<header><h1>{_e(title)}</h1>{_period(report)}</header>"]
    if report.empty:
        parts.append("<section class='empty' id='empty'><p><b>No runs recorded in this period.</b> The report "
                     "read:</p><ul>" + "".join(f"<li><code>{_e(s)}</code></li>" for s in report.sources)
                     + "</ul><p>Track a run first, e.g. <code>lett run --project NAME -- python train.py</code>, "
                     "collect researchers' stores with <code>lett merge</code>, or widen "
                     "<code>--since</code>/<code>--until</code>.</p></section></body></html>")
        return "".join(parts)
    parts.append(_overview(report))
    parts.append(_trend_chart(report.trend, report.trend_unit))
    for name in BREAKDOWNS:
        if name in report.breakdowns:
            parts.append(_breakdown(name, report.breakdowns[name], report.totals.energy_kwh))
    parts.append(_runs("Biggest runs", "biggest", report.biggest,
                       "The runs that count for the most energy in this period."))
    parts.append(_runs("Failed runs", "failures", report.failures,
                       f"{report.failed_runs:,} run(s) ended with status \"failed\"; the latest are listed. "
                       "Their energy was used and counts in every figure above."))
    parts.append(_statements(report))
    parts.append(_method())
    parts.append("</body></html>")
    return "".join(parts)


def _period(report: Report) -> str:
    asked = ("all stored runs" if report.since is None and report.until is None else
             f"runs started from {_date(report.since, True) if report.since else 'the first run'} "
             f"until {_date(report.until, True) if report.until else 'the last run'}")
    span = f"; runs from {_date(report.first)} to {_date(report.last)}" if report.first is not None else ""
    sources = "".join(f"<li><code>{_e(s)}</code></li>" for s in report.sources)
    groups = f"<p class='meta'>Groups from <code>{_e(report.groups_source)}</code>.</p>" if report.groups_source else ""
    return (f"<p class='meta' id='period'>Period: {_e(asked)}{_e(span)}. Generated "
            f"{_date(report.generated, True)} by <code>lett report</code>.</p>"
            f"<p class='meta'>Read from:</p><ul class='meta'>{sources}</ul>{groups}")


def _card(key: str, label: str, value: str, note: str = "") -> str:
    note_html = f"<div class='note'>{_e(note)}</div>" if note else ""
    return (f"<div class='card' data-card='{key}'><div class='label'>{_e(label)}</div>"
            f"<div class='value'>{_e(value)}</div>{note_html}</div>")


def _overview(report: Report) -> str:
    t = report.totals
    unusable = report.stored_runs - t.runs
    cards = [
        _card("energy", "Energy", format_energy(t.energy_kwh)),
        _card("emissions", "Emissions", format_emissions(t.emissions_kg * 1000), "CO2-equivalents"),
        _card("runs", "Runs counted", f"{t.runs:,}",
              f"{unusable:,} more without a usable figure" if unusable else "every stored run has a figure"),
        _card("measured", "Measured", format_share(t.metered_kwh / t.energy_kwh if t.energy_kwh > 0 else None),
              f"{format_energy(t.metered_kwh)} metered, {format_energy(t.estimate_kwh)} estimated"
              if t.metered_kwh > 0 and t.estimate_kwh > 0 else "all metered" if t.metered_kwh > 0
              else "all estimated, none metered"),
        _card("coverage", "Metered coverage", format_share(t.coverage),
              "of the metered time had readings" if t.coverage is not None else "no metered runs"),
        _card("failed", "Failed runs", f"{report.failed_runs:,}"),
    ]
    statement = (f"<h3>Paper statement, all runs</h3><div class='statement' id='statement-all'>"
                 f"{_e(report.statement)}</div>" if report.statement else "")
    return f"<h2 class='first' id='overview'>Overview</h2><div class='cards'>{''.join(cards)}</div>{statement}"


def _breakdown(name: str, lines: Sequence[Line], total_kwh: float) -> str:
    head = (f"<tr><th>{_e(name)}</th><th class='num'>runs</th><th class='num'>energy</th><th class='num'>CO2e</th>"
            "<th class='num'>measured</th><th class='num'>estimated</th><th class='num'>measured share</th>"
            "<th class='num'>coverage</th><th class='num'>failed</th><th class='num'>share of energy</th></tr>")
    rows = []
    for line in lines:
        t = line.totals
        cells = [("runs", f"{t.runs:,}"), ("energy", format_energy(t.energy_kwh)),
                 ("emissions", format_emissions(t.emissions_kg * 1000)), ("measured", _part(t.metered_kwh)),
                 ("estimated", _part(t.estimate_kwh)),
                 ("measured-share", format_share(t.metered_kwh / t.energy_kwh if t.energy_kwh > 0 else None)),
                 ("coverage", format_share(t.coverage)), ("failed", f"{line.failed:,}"),
                 ("share", format_share(t.energy_kwh / total_kwh if total_kwh > 0 else None, nearest=True))]
        label = line.name or "(none)"
        css = " class='rest'" if line.rest else ""
        rows.append(f"<tr data-name='{_e(line.name)}'{css}><td>{_e(label)}</td>"
                    + "".join(f"<td class='num' data-col='{key}'>{_e(value)}</td>" for key, value in cells) + "</tr>")
    chart = _bars_chart(name, lines) if name != "month" and len(lines) > 1 else ""
    note = ("" if name != "group" else "<p class='meta'>A run belongs to its project's group, else to its "
            "user's; runs of neither are \"unassigned\".</p>")
    return (f"<h2 id='by-{name}'>{TITLES[name]}</h2>{note}{chart}<table class='breakdown' data-by='{name}'>"
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


def _legend() -> str:
    return (f"<div class='legend'><span style='background:{METERED_COLOUR}'></span>measured (metered)"
            f"<span style='background:{ESTIMATED_COLOUR}'></span>estimated</div>")


def _trend_chart(lines: Sequence[Line], unit: str) -> str:
    """Energy per hour, day or month as stacked columns, measured below estimated, on one scaled unit."""
    if not any(line.totals.energy_kwh > 0 for line in lines):
        return ""
    width, height, left, bottom, top = 1000, 260, 64, 36, 14
    scale = axis(0.0, max(line.totals.energy_kwh for line in lines), ENERGY_UNITS)
    y_max = scale.ticks[-1]
    plot_w, plot_h = width - left - 10, height - bottom - top
    slot = plot_w / len(lines)
    bar = max(min(slot * 0.7, 60), 1)

    def y(value: float) -> float:
        return top + plot_h * (1 - value / y_max)

    out = [f"<svg id='chart-trend' role='img' viewBox='0 0 {width} {height}' width='100%' "
           f"aria-label='Energy per {unit} in {scale.unit}'>"]
    for tick, label in zip(scale.ticks, scale.labels):
        out.append(f"<line x1='{left}' x2='{width - 10}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#d5dbe1'/>"
                   f"<text class='tick' x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>{_e(label)}</text>")
    out.append(f"<text x='12' y='{top + plot_h / 2:.0f}' transform='rotate(-90 12 {top + plot_h / 2:.0f})' "
               f"text-anchor='middle'>energy ({_e(scale.unit)})</text>")
    every = max(1, -(-len(lines) // (14 if unit == "month" else 8)))  # labels that never overlap
    for index, line in enumerate(lines):
        x = left + slot * index + (slot - bar) / 2
        metered, estimated = line.totals.metered_kwh, line.totals.estimate_kwh
        measured = f" ({format_energy(metered)} measured)" if metered > 0 else ""
        out.append(f"<g><title>{_e(line.name)}: {_e(format_energy(line.totals.energy_kwh))}{_e(measured)}</title>"
                   f"<rect x='{x:.1f}' y='{y(metered):.1f}' width='{bar:.1f}' height='{y(0) - y(metered):.1f}' "
                   f"fill='{METERED_COLOUR}'/><rect x='{x:.1f}' y='{y(metered + estimated):.1f}' width='{bar:.1f}' "
                   f"height='{y(metered) - y(metered + estimated):.1f}' fill='{ESTIMATED_COLOUR}'/></g>")
        if index % every == 0:
            out.append(f"<text x='{x + bar / 2:.1f}' y='{height - bottom + 16}' text-anchor='middle'>"
                       f"{_e(line.name)}</text>")
    out.append("</svg>")
    return (f"<figure><h3>Energy per {unit}</h3>{''.join(out)}{_legend()}<figcaption>Counted energy of the runs "
            f"started each {unit} (UTC), in {_e(scale.unit)}."
            "</figcaption></figure>")


def _bars_chart(name: str, lines: Sequence[Line], limit: int = 12) -> str:
    """The largest groups' energy as horizontal bars, measured then estimated."""
    shown = [line for line in lines if not line.rest and line.totals.energy_kwh > 0][:limit]
    if not shown:
        return ""
    row, left, right, top = 22, 170, 110, 22
    width, height = 1000, top + row * len(shown) + 8
    scale = axis(0.0, max(line.totals.energy_kwh for line in shown), ENERGY_UNITS, count=6)
    x_max, plot_w = scale.ticks[-1], width - left - right

    def x(value: float) -> float:
        return left + plot_w * value / x_max

    out = [f"<svg id='chart-{name}' role='img' viewBox='0 0 {width} {height}' width='100%' "
           f"aria-label='Energy per {name} in {scale.unit}'>"]
    for tick, label in zip(scale.ticks, scale.labels):
        out.append(f"<line x1='{x(tick):.1f}' x2='{x(tick):.1f}' y1='{top - 4}' y2='{height - 4}' stroke='#d5dbe1'/>"
                   f"<text class='tick' x='{x(tick):.1f}' y='{top - 8}' text-anchor='middle'>{_e(label)}</text>")
    out.append(f"<text x='{width - 4}' y='{top - 8}' text-anchor='end'>{_e(scale.unit)}</text>")
    for index, line in enumerate(shown):
        y = top + row * index + 3
        metered, total = line.totals.metered_kwh, line.totals.energy_kwh
        label = line.name if len(line.name) <= 26 else line.name[:25] + "…"
        out.append(f"<g><title>{_e(line.name)}: {_e(format_energy(total))}</title>"
                   f"<text x='{left - 6}' y='{y + 12}' text-anchor='end'>{_e(label or '(none)')}</text>"
                   f"<rect x='{left}' y='{y}' width='{x(metered) - left:.1f}' height='{row - 7}' fill='{METERED_COLOUR}'/>"
                   f"<rect x='{x(metered):.1f}' y='{y}' width='{x(total) - x(metered):.1f}' height='{row - 7}' "
                   f"fill='{ESTIMATED_COLOUR}'/><text x='{x(total) + 6:.1f}' y='{y + 12}'>"
                   f"{_e(format_energy(total))}</text></g>")
    out.append("</svg>")
    more = f" (the {limit} largest)" if len(lines) > limit else ""
    return f"<figure>{''.join(out)}{_legend()}<figcaption>Energy per {_e(name)}{more}.</figcaption></figure>"


def _runs(title: str, key: str, runs: Sequence[RunLine], note: str) -> str:
    if not runs:
        return f"<h2 id='{key}'>{_e(title)}</h2><p class='meta' data-none='{key}'>None in this period.</p>"
    head = ("<tr><th>started</th><th>project</th><th>user</th><th>host</th><th class='num'>duration</th>"
            "<th class='num'>energy</th><th class='num'>CO2e</th><th>kind</th><th>status</th><th>run</th></tr>")
    # Eight characters name a run as `lett results` shows it, unless the listed ids share them.
    short = 8 if len({run.run_id[:8] for run in runs}) == len(runs) else 36
    rows = []
    for run in runs:
        status = run.status + (f": {run.error}" if run.error else "")
        css = " class='failed'" if run.status == "failed" else ""
        rows.append(f"<tr data-run='{_e(run.run_id)}'{css}>"
                    f"<td>{_date(run.start, True)}</td><td>{_e(run.project)}</td><td>{_e(run.user)}</td>"
                    f"<td>{_e(run.host)}</td><td class='num'>{_duration(run.duration_s)}</td>"
                    f"<td class='num' data-col='energy'>{_e(format_energy(run.kwh))}</td>"
                    f"<td class='num'>{_e(format_emissions(run.kg * 1000))}</td><td>{_e(run.kinds)}</td>"
                    f"<td class='status'>{_e(status[:160])}</td><td><code>{_e(run.run_id[:short])}</code></td></tr>")
    return (f"<h2 id='{key}'>{_e(title)}</h2><p class='meta'>{_e(note)}</p><table class='runs' data-runs='{key}'>"
            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")


def _statements(report: Report) -> str:
    if not report.statements:
        return ""
    blocks = "".join(f"<h3>{_e(name)}</h3><div class='statement' data-project='{_e(name)}'>{_e(text)}</div>"
                     for name, text in report.statements)
    return ("<h2 id='statements'>Paper statements per project</h2><p class='meta'>As <code>lett statement "
            "--project NAME</code> prints them for this period, ready for a paper (LaTeX; the BibTeX entries: "
            f"<code>lett cite --project NAME</code>).</p>{blocks}")


def _method() -> str:
    return ("<h2 id='method'>How the figures are counted</h2><p>Every figure comes from the one counting rule "
            "of LET (<code>let_core.results.counting</code>), the same as <code>lett results --by</code> and "
            "<code>lett statement</code>: a run counts once even when several backends measured it, metered "
            "(wall-socket) figures are preferred over estimates where their readings cover the run, ranks of one "
            "multi-node launch count once, CodeCarbon's cumulative checkpoints once. Emissions are each run's "
            "energy times the carbon intensity it was recorded with. <b>Measured</b> is the metered part of the "
            "energy, <b>estimated</b> the rest (e.g. CodeCarbon's model); <b>coverage</b> is the share of the "
            "metered time that had readings. Estimates underestimate actual consumption and no figure includes "
            "overhead factors or embodied impacts.</p>")
