"""Deleting runs from every source ``load_results`` reads: the CSV store and the Parquet dataset
(a folder, or the run files of an ``s3://`` dataset). ``lett delete`` and ``delete_results``
are this module's ``delete_runs``.

A delete first decides everything and refuses before changing anything when it can: a store
with lines LET cannot parse, a store folder where no file can be made, a dataset file that does
not open, a dataset where the rewritten files cannot be written. Then the dataset changes file
by file (each file in one atomic step, ``dataset.apply_delete``), then the store in one
``os.replace``. An interruption between steps leaves the old state less some matching runs,
never a run counted twice or another run lost; the error then says how many matching runs are
gone from the statement, and the same delete run again finishes the job.

The count is the statement's own (``counted_totals``) before and after: what it prints is what
disappeared from the statement.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from attrs import frozen

from let_core.errors import LetError, StoreError
from let_core.results.loading import counted_totals, dataset_present, sources
from let_core.schema import filter_dict


@frozen
class Deletion:
    """What a delete removed (``dry_run``: would remove).

    ``runs`` left the statement; ``store_rows`` and ``dataset_rows`` / ``dataset_files`` are the
    stored rows and dataset files that held them; ``remaining`` matching runs still count after
    the delete (runs recorded while it ran: delete again)."""

    runs: int
    store_rows: int
    dataset_rows: int
    dataset_files: int
    remaining: int = 0

    @property
    def rows(self) -> int:
        return self.store_rows + self.dataset_rows


def delete_runs(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                user: str | None = None, hostname: str | None = None, *,
                dataset: str | os.PathLike[str] | None = None, dry_run: bool = False) -> Deletion:
    """Delete the runs matching every given filter (none given: all) from the CSV store and the
    Parquet dataset that ``load_results`` reads for these arguments; ``dry_run`` only counts."""
    filters = filter_dict(project_name, user, hostname)
    store, root = sources(output_dir, dataset)

    def counted() -> int:
        return counted_totals(output_dir, **filters, dataset=dataset).runs

    before = counted()
    plan = None
    if dataset_present(root):
        from let_core.dataset import locate, plan_delete

        plan = plan_delete(locate(root), filters)
    # Counts and refuses as the delete would (unparsable lines, no file can be made there).
    store_rows = store.delete(dry_run=True, **filters)
    planned = Deletion(before, store_rows, plan.rows if plan else 0, plan.files if plan else 0)
    if dry_run or not planned.rows:
        return planned
    try:
        if plan is not None and plan.files:
            from let_core.dataset import apply_delete

            apply_delete(plan)
        if store_rows:
            store.delete(dry_run=False, **filters)
    except (LetError, OSError) as exc:
        raise StoreError(f"{exc} {_progress(before, counted)}") from exc
    after = counted()
    return Deletion(before - after, store_rows, planned.dataset_rows, planned.dataset_files, after)


def _progress(before: int, counted: Callable[[], int]) -> str:
    """After a failed delete: how far it got, in the statement's runs, and what to do."""
    try:
        left = counted()
    except (LetError, OSError):
        return ("Whether some matching runs are gone already could not be checked; run the same "
                "delete again once the problem is fixed: it removes what is left.")
    if left >= before:
        return f"The statement still counts all {before} matching run(s); fix the problem and run the delete again."
    return (f"{before - left} of the {before} matching run(s) are gone from the statement, {left} are "
            "still counted; fix the problem and run the same delete again to remove them.")


def delete_results(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                   user: str | None = None, hostname: str | None = None, *,
                   dataset: str | os.PathLike[str] | None = None, dry_run: bool = False) -> int:
    """Delete the runs matching every given filter (none given: all) from every source
    ``load_results`` reads: the CSV store and the Parquet dataset (for an ``s3://`` dataset,
    its run files). Returns how many runs disappear from the statement (a run in both sources
    is one run); ``dry_run`` only counts. See ``delete_runs``."""
    return delete_runs(output_dir, project_name, user, hostname, dataset=dataset, dry_run=dry_run).runs
