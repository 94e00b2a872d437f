"""`lett report`: a self-contained HTML impact report over one store, several, or a Parquet
dataset, for the institute that collects its researchers' runs.

``build_report`` counts (``model``), ``render_html`` draws (``render``), ``load_groups`` reads
the users/projects-to-groups file (``groups``). Importing this package is cheap.
"""

from __future__ import annotations

from let_core.report.groups import UNASSIGNED, GroupMap, load_groups
from let_core.report.model import Report, build_report, report_of_frame
from let_core.report.render import render_html

__all__ = ["UNASSIGNED", "GroupMap", "Report", "build_report", "load_groups", "render_html", "report_of_frame"]
