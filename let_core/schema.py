"""The store's schema: its columns, what makes a CSV an emissions file, when two rows are the
same row, and how results are filtered. Each of these is defined here once and only here;
the store, the loaders, ``lett doctor`` and ``lett merge`` import it. Standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]

#: CodeCarbon's emissions.csv columns (3.3's EmissionsData), in its order, so CodeCarbon and STREP read our store.
CODECARBON_COLUMNS: tuple[str, ...] = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions",
    "emissions_rate", "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy",
    "ram_energy", "energy_consumed", "water_consumed", "country_name", "country_iso_code",
    "region", "cloud_provider", "cloud_region", "os", "python_version", "codecarbon_version",
    "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude", "latitude",
    "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)

#: The columns a launcher's job fills (``let_core.jobs.Job.fields``, plus the node election's note).
JOB_COLUMNS: tuple[str, ...] = ("launcher", "job_id", "step_id", "array_job_id", "array_task_id", "launch_id",
                                "rank", "local_rank", "node_id", "world_size", "job_note", "node_meter")

#: LET's own columns, after CodeCarbon's. A run's status is ``run_status``, not ``status``: STREP
#: (``strep.index_scale.load_database``) takes a CSV with run_id, experiment_id and status for
#: an MLflow run summary and then finds nothing in an emissions file.
LET_COLUMNS: tuple[str, ...] = (
    "let_version", "user", "hostname", "backend", "methodology", "kind", "scope", "hardware",
    "run_status", "error", "start_time", "carbon_intensity", "task", "parent_run_id", "job_id",
    "rank", "metrics", "params", "extra", "coverage", "gap_count", "gap_seconds",
    *(column for column in JOB_COLUMNS if column not in ("job_id", "rank")),
)

STORE_COLUMNS: tuple[str, ...] = CODECARBON_COLUMNS + LET_COLUMNS

#: What makes a CSV an emissions file: the columns every CodeCarbon version wrote (from the
#: pre-1.0 ``experiment_id`` files on), LET 0.1.x and 1.x included. Not ``run_id``: CodeCarbon
#: 1.x files have none, and their rows are still runs.
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", "duration", "emissions", "energy_consumed")
STORE_COLUMN_SET = frozenset(STORE_COLUMNS)

#: Columns read back as floats; every other column is text.
NUMERIC_COLUMNS: tuple[str, ...] = (
    "duration", "emissions", "emissions_rate", "cpu_power", "gpu_power", "ram_power",
    "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "water_consumed", "cpu_count",
    "gpu_count", "longitude", "latitude", "ram_total_size", "cpu_utilization_percent",
    "gpu_utilization_percent", "ram_utilization_percent", "ram_used_gb", "pue", "wue",
    "carbon_intensity", "coverage", "gap_count", "gap_seconds",
)


def hardware_from_codecarbon(cpu_model: str, gpu_model: str) -> str:
    """LET 0.1.x's hardware phrase: the CPU model without its clock, and the GPUs if any."""
    cpu = (cpu_model or "").split(" @ ")[0].strip()
    gpu = (gpu_model or "").strip()
    if gpu.lower() in ("", "nan", "none"):
        return cpu
    return f"{cpu} and {gpu}" if cpu else gpu


def codecarbon_scope(gpu_model: str) -> str:
    """What a CodeCarbon figure covers: the GPUs only when it found any. A machine without a
    GPU is measured as CPU+RAM, so a separate GPU figure of the same run adds to it."""
    return "cpu+gpu+ram" if (gpu_model or "").strip().lower() not in ("", "nan", "none") else "cpu+ram"


def legacy_fields(row: Mapping[str, Any]) -> dict[str, str]:
    """LET's columns for a row written by LET 0.1.x or plain CodeCarbon (empty ``backend``).

    Those files keep CodeCarbon's ``project_name`` ("codecarbon") and encode the real one in
    ``experiment_id`` as ``project___user___hostname``.
    """
    experiment_id = str(row.get("experiment_id") or "")
    parts = experiment_id.split("___")
    fields: dict[str, str] = {
        "backend": "codecarbon",
        "methodology": f"CodeCarbon {row.get('codecarbon_version') or ''}".strip(),
        "kind": "estimate",
        "scope": codecarbon_scope(str(row.get("gpu_model") or "")),
        "hardware": hardware_from_codecarbon(str(row.get("cpu_model") or ""),
                                             str(row.get("gpu_model") or "")),
    }
    if len(parts) == 3:
        fields.update(project_name=parts[0], user=parts[1], hostname=parts[2])
    if not row.get("run_status"):
        fields["run_status"] = "ok"
    return fields


#: Columns LET writes on every row and LET 0.1.x / CodeCarbon never wrote: a row with all of
#: them blank is another tool's, whose method (CodeCarbon) may be derived. A LET row whose
#: ``backend`` cell is blank (a header name blanked by hand) keeps ``let_version`` and is not
#: passed off as a CodeCarbon estimate.
LET_MARKERS: tuple[str, ...] = ("backend", "let_version")


def is_legacy(row: Mapping[str, Any]) -> bool:
    return not any(row.get(column) for column in LET_MARKERS)



#: The filters every reader and ``delete`` take, in the order of a totals key.
FILTER_KEYS: tuple[str, ...] = ("project_name", "user", "hostname")

#: C0 control characters but tab, and DEL: they break terminals and other tools' parsers.
CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def header_problem(header: Sequence[str]) -> str | None:
    """Why a header cannot be mapped to LET's columns, or None."""
    if any(not name.strip() for name in header):
        return "it has an empty column name"
    joined = "".join(header)
    damaged = ([name for name in header if CONTROL_CHARACTERS.search(name) or "\ufffd" in name]
               if CONTROL_CHARACTERS.search(joined) or "\ufffd" in joined else [])
    if damaged:
        return f"column name(s) {damaged[:3]!r} hold control characters or invalid bytes"
    duplicates = (sorted({name for name in header if list(header).count(name) > 1})
                  if len(set(header)) < len(header) else [])
    if duplicates:
        return f"column(s) {duplicates[:3]} appear twice"
    missing = missing_columns(header)
    if missing:
        return f"it lacks the column(s) {missing} every emissions file has"
    return None


def missing_columns(header: Sequence[str]) -> list[str]:
    """The REQUIRED_COLUMNS a header lacks: none for an emissions file (LET's or CodeCarbon's)."""
    return [c for c in REQUIRED_COLUMNS if c not in header]


def renamed_columns(header: Sequence[str]) -> dict[str, str]:
    """Columns LET 1.0's development stores named otherwise: ``status`` is now ``run_status``
    (STREP reads a CSV with a ``status`` column as an MLflow summary). Only LET's own stores
    (they have ``backend``) are renamed; a foreign ``status`` column stays as it is."""
    if "backend" in header and "status" in header and "run_status" not in header:
        return {"status": "run_status"}
    return {}


def effective(row: dict[str, str]) -> dict[str, str]:
    return {**row, **legacy_fields(row)} if is_legacy(row) else row


def columns_for(rows: Sequence[Row], base: Sequence[str]) -> list[str]:
    """``base`` and any further keys the rows carry (rows from another tool's file)."""
    known = set(base)
    if all(known.issuperset(row) for row in rows):
        return list(base)  # the common case: a run's own rows
    extra: dict[str, None] = {}
    for row in rows:
        for key in row:
            if key not in known:
                extra[key] = None
    return list(base) + list(extra)


#: What CodeCarbon wrote for a run, in cells nothing of LET rewrites (``effective`` derives the
#: project from experiment_id; ``with_stable_ids`` fills experiment_id): a run without a run id
#: (CodeCarbon 1.x, some 2.x files) is known by these.
CONTENT_IDENTITY: tuple[str, ...] = ("timestamp", "duration", "emissions", "energy_consumed",
                                     "cpu_energy", "gpu_energy", "ram_energy", "codecarbon_version")


def stable_run_id(row: Mapping[str, Any]) -> str:
    """The run id of a row that has none: a UUID (version 5) of what CodeCarbon wrote for it, so
    the same row merged twice, or read from two copies, gets the same id."""
    import uuid  # here: importing it costs every tracked run a millisecond (see tracker.new_run_id)

    content = "\x1f".join(str(row.get(column) or "") for column in CONTENT_IDENTITY)
    return str(uuid.uuid5(uuid.UUID(STABLE_ID_NAMESPACE), content))


#: The namespace of stable run ids; never change it (ids of merged rows would change).
STABLE_ID_NAMESPACE = "5f0c4a52-8c1e-4d7e-9a57-6c6574000001"


def with_stable_ids(row: dict[str, str]) -> dict[str, str]:
    """``row`` with a run id and an experiment id when it lacks them, as STREP's CodeCarbon
    reader needs both to see a run: ``stable_run_id``, and LET 0.1.x's
    ``project___user___hostname`` form."""
    if row.get("run_id") and row.get("experiment_id"):
        return row
    filled = dict(row)
    if not filled.get("run_id"):
        filled["run_id"] = stable_run_id(row)
    if not filled.get("experiment_id"):
        filled["experiment_id"] = "___".join(str(row.get(c) or "") for c in FILTER_KEYS)
    return filled


def identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes a stored row the same row: run id, backend and task (LET's ``task`` and
    CodeCarbon's ``task_name``: tasks of one run add up, ``results.rule``); a row without a run
    id is known by ``stable_run_id``. Cumulative checkpoint rows of one CodeCarbon run share it."""
    run_id = str(row.get("run_id") or "") or stable_run_id(row)
    return (run_id, str(row.get("backend") or ""), str(row.get("task") or ""), str(row.get("task_name") or ""))


def filter_dict(project_name: str | None = None, user: str | None = None,
                hostname: str | None = None) -> dict[str, str | None]:
    """The filters every reader and ``delete`` take, by ``FILTER_KEYS`` (None: any), checked."""
    filters = dict(zip(FILTER_KEYS, (project_name, user, hostname)))
    check_filters(filters)
    return filters


def check_filters(filters: Mapping[str, Any]) -> None:
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        raise TypeError(f"unknown filter(s) {sorted(unknown)}; filter by {', '.join(FILTER_KEYS)}")
    for key, value in filters.items():
        if value is not None and not isinstance(value, str):
            raise TypeError(f"filter {key} must be a string, got {value!r}")


def matches(row: Mapping[str, Any], filters: Mapping[str, str | None]) -> bool:
    return all(value is None or row.get(key) == value for key, value in filters.items())
