"""``lett exporter``: one machine's LET figures for Prometheus, pulled, the way Prometheus wants them.

On each scrape a custom collector reads the store (the counted totals, from the one counting
implementation ``lett results --by`` uses) and the live files the running trackers of this
machine publish in its runtime dir (``let_core.livedir``). Nothing is pushed, no process opens a
port of its own, and no run id becomes a label.

| metric                              | type    | labels                        |
|-------------------------------------|---------|-------------------------------|
| ``let_energy_joules_total``         | counter | project, host, backend, kind  |
| ``let_emissions_grams_total``       | counter | project, host, backend, kind  |
| ``let_runs_total``                  | counter | project, host                 |
| ``let_live_power_watts``            | gauge   | project, host, backend, kind  |
| ``let_live_energy_joules``          | gauge   | project, host, backend, kind  |
| ``let_live_runs``                   | gauge   | project, host                 |
| ``let_exporter_up``                 | gauge   | source (store, live)          |
| ``let_exporter_store_errors_total`` | counter | reason (an error's class)     |
| ``let_exporter_store_warnings``     | gauge   |                               |
| ``let_exporter_store_read_seconds`` | gauge   |                               |
| ``let_exporter_live_files_skipped`` | gauge   | reason (dead, stale, unreadable) |

``sum by (project) (let_energy_joules_total)`` is ``lett results --by project``'s energy: the
backend and kind labels are those of the figures each run counts for, never overlapping ones.
A store that cannot be read is never an HTTP 500: the exporter serves the totals of its last
good read (counters must not vanish), ``let_exporter_up{source="store"} 0`` and one more
``let_exporter_store_errors_total`` by reason; the reason itself goes to stderr.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from attrs import frozen
from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from let_core import config
from let_core.live import read_published
from let_core.store import STORE_FILE

JOULES_PER_KWH = 3.6e6
TOTAL_LABELS = ("project", "host", "backend", "kind")
RUN_LABELS = ("project", "host")
TEXTFILE_NAME = "let.prom"


@frozen
class StoreTotals:
    """What one read of the store gave: counted (kWh, kg) per (project, host, backend, kind)
    and counted runs per (project, host)."""

    energy: tuple[tuple[tuple[str, str, str, str], float, float], ...]
    runs: tuple[tuple[tuple[str, str], int], ...]
    warnings: int


def read_totals(output_dir: str | None, dataset: str | None, hostname: str | None = None,
                attributed: bool = False) -> StoreTotals:
    """The store's counted totals through ``aggregate`` (what ``lett results --by`` shows), of
    the runs of ``hostname`` (None: of every host); with ``attributed``, each run's share of
    the machine where it has one (``lett results --by project --attribution``)."""
    from let_core.results import AGGREGATE_COLUMNS, aggregate, load_results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = load_results(output_dir, hostname=hostname, dataset=dataset, columns=AGGREGATE_COLUMNS)
    if frame.empty:
        return StoreTotals((), (), len(caught))
    energy = aggregate(frame, TOTAL_LABELS, attributed=attributed)
    runs = aggregate(frame, RUN_LABELS, attributed=attributed)
    return StoreTotals(
        energy=tuple(((str(r["project"]), str(r["host"]), str(r["backend"]), str(r["kind"])),
                      float(r["kwh"]), float(r["kg"])) for r in energy.to_dict(orient="records")),
        runs=tuple(((str(r["project"]), str(r["host"])), int(r["runs"])) for r in runs.to_dict(orient="records")),
        warnings=len(caught))


def _reason(exc: BaseException) -> str:
    """A low-cardinality label for a failed read: the error's class, in snake case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _signature(output_dir: str | None, dataset: str | None) -> tuple[Any, ...] | None:
    """What changes when the store or a local dataset changes (size, mtime, inode of each
    file): an unchanged store is not read again on the next scrape. None: always read."""
    store = Path(output_dir).expanduser() if output_dir else config.let_home()
    root = Path(dataset or config.default_dataset_root(store)).expanduser()
    if config.is_uri(dataset) or config.is_uri(output_dir):
        return None
    path = store / STORE_FILE
    parts: list[Any] = []
    try:
        info = os.stat(path)
        parts.append((str(path), info.st_size, info.st_mtime_ns, info.st_ino))
    except OSError:
        parts.append((str(path), None))
    if root.is_dir():
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                try:
                    info = os.stat(os.path.join(folder, name))
                except OSError:
                    return None
                parts.append((folder, name, info.st_size, info.st_mtime_ns))
    return tuple(parts)


class LetCollector(Collector):
    """Yields LET's metric families on each scrape (prometheus_client's custom collector API).

    ``hostname`` is this machine's (``LET_HOSTNAME``, else the system's): its live runs, and the
    stored runs it exports unless ``all_hosts`` (a store shared by the nodes of a cluster is
    then exported once per node, each its own, and no series is repeated by another instance).

    Never raises: a part that fails is reported by the ``let_exporter_*`` metrics instead.
    """

    def __init__(self, output_dir: str | None = None, dataset: str | None = None,
                 runtime_dir: Path | None = None, hostname: str | None = None, all_hosts: bool = False,
                 log: Callable[[str], None] | None = None, read_wait_s: float | None = 5.0,
                 attributed: bool = False) -> None:
        self.output_dir = output_dir
        self.dataset = dataset
        self.runtime_dir = runtime_dir if runtime_dir is not None else config.runtime_dir()
        self.hostname = hostname or config.hostname()
        self.all_hosts = all_hosts
        self.attributed = attributed
        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._lock = threading.Lock()  # scrapes may overlap (a threaded HTTP server)
        self._last: StoreTotals | None = None
        self._last_signature: tuple[Any, ...] | None = None
        self._errors: dict[str, int] = {}
        self._last_error = ""
        self.read_wait_s = read_wait_s
        self._reading: threading.Thread | None = None
        self._outcome: tuple[tuple[Any, ...] | None, StoreTotals | BaseException, float] | None = None
        self._store_up = False
        self._read_seconds = math.nan

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            store_up = self._refresh_store()
            totals, errors, read_seconds = self._last, dict(self._errors), self._read_seconds
        yield from self._store_families(totals)
        live_up, live = self._live_families()
        yield from live
        up = GaugeMetricFamily("let_exporter_up", "Whether the last scrape read this source (1) or not (0).",
                               labels=["source"])
        up.add_metric(["store"], 1.0 if store_up else 0.0)
        up.add_metric(["live"], 1.0 if live_up else 0.0)
        yield up
        failed = CounterMetricFamily("let_exporter_store_errors", "Scrapes whose read of the store failed, "
                                     "by the error's class (its message is in the exporter's log).",
                                     labels=["reason"])
        for reason, count in sorted(errors.items()):
            failed.add_metric([reason], count)
        yield failed
        yield GaugeMetricFamily("let_exporter_store_warnings", "Warnings the last good read of the store gave "
                                "(damaged lines, a torn tail ...): `lett doctor` shows them.",
                                value=totals.warnings if totals is not None else 0)
        yield GaugeMetricFamily("let_exporter_store_read_seconds", "How long the last read of the store took "
                                "(a scrape waits for at most a few seconds of it, then serves the last totals).",
                                value=read_seconds)

    def _refresh_store(self) -> bool:
        """Read the store again if it changed, waiting at most ``read_wait_s`` for the read (None:
        until it is done): a store too large to read within a scrape's timeout keeps being read
        in the background while the scrape gets the last good totals
        (``let_exporter_store_read_seconds`` says how long reads take)."""
        if self._reading is None:
            try:
                signature = _signature(self.output_dir, self.dataset)
            except Exception:
                signature = None
            if signature is not None and signature == self._last_signature and self._last is not None:
                return self._store_up
            self._reading = threading.Thread(target=self._read, args=(signature,), name="let-exporter-read",
                                             daemon=True)
            self._reading.start()
        self._reading.join(self.read_wait_s)
        if self._reading.is_alive():
            return self._store_up
        self._reading = None
        outcome, self._outcome = self._outcome, None
        if outcome is None:
            return self._store_up
        signature, result, seconds = outcome
        self._read_seconds = seconds
        if isinstance(result, BaseException):  # a damaged store: serve the last good totals, say so
            reason = _reason(result)
            self._errors[reason] = self._errors.get(reason, 0) + 1
            message = f"{type(result).__name__}: {result}"
            if message != self._last_error:
                self._log(f"LET exporter: cannot read the store ({message}); serving the last good "
                          "totals and let_exporter_up{source=\"store\"} 0")
                self._last_error = message
            self._last_signature = None
            self._store_up = False
            return False
        self._last, self._last_signature, self._store_up = result, signature, True
        if self._last_error:
            self._log("LET exporter: the store reads again")
            self._last_error = ""
        return True

    def _read(self, signature: tuple[Any, ...] | None) -> None:
        t0 = time.perf_counter()
        result: StoreTotals | BaseException
        try:
            result = read_totals(self.output_dir, self.dataset, None if self.all_hosts else self.hostname,
                                 self.attributed)
        except Exception as exc:
            result = exc
        self._outcome = (signature, result, time.perf_counter() - t0)

    @staticmethod
    def _store_families(totals: StoreTotals | None) -> Iterable[Metric]:
        joules = CounterMetricFamily("let_energy_joules", "Energy the stored runs count for, in joules "
                                     "(as `lett results --by project`).", labels=list(TOTAL_LABELS))
        grams = CounterMetricFamily("let_emissions_grams", "Emissions the stored runs count for, in grams "
                                    "of CO2-equivalents.", labels=list(TOTAL_LABELS))
        runs = CounterMetricFamily("let_runs", "Stored runs that count.", labels=list(RUN_LABELS))
        if totals is not None:
            for labels, kwh, kg in totals.energy:
                joules.add_metric(list(labels), kwh * JOULES_PER_KWH)
                grams.add_metric(list(labels), kg * 1000.0)
            for run_labels, count in totals.runs:
                runs.add_metric(list(run_labels), count)
        return joules, grams, runs

    def _live_families(self) -> tuple[bool, list[Metric]]:
        power = GaugeMetricFamily("let_live_power_watts", "Current power of the runs being tracked on this "
                                  "machine, per backend.", labels=list(TOTAL_LABELS))
        energy = GaugeMetricFamily("let_live_energy_joules", "Energy so far of the runs being tracked on this "
                                   "machine (drops when a run ends and its figure moves to the store).",
                                   labels=list(TOTAL_LABELS))
        running = GaugeMetricFamily("let_live_runs", "Runs being tracked on this machine now.",
                                    labels=list(RUN_LABELS))
        skipped = GaugeMetricFamily("let_exporter_live_files_skipped", "Live files left out of this scrape: "
                                    "of processes that no longer run, not refreshed for long, or unreadable.",
                                    labels=["reason"])
        families: list[Metric] = [power, energy, running, skipped]
        try:
            scan = read_published(self.runtime_dir, self.hostname)
        except Exception as exc:
            self._log(f"LET exporter: cannot read the live files in {self.runtime_dir}: {type(exc).__name__}: {exc}")
            return False, families
        watts: dict[tuple[str, ...], float] = {}
        joules: dict[tuple[str, ...], float] = {}
        runs: dict[tuple[str, ...], int] = {}
        for run in scan.runs:
            key = (run.project, run.hostname)
            runs[key] = runs.get(key, 0) + 1
            for reading in run.readings:
                if reading.error:
                    continue
                labels = (run.project, run.hostname, reading.backend, reading.kind)
                if reading.power_w is not None:
                    watts[labels] = watts.get(labels, 0.0) + reading.power_w
                if reading.energy_kwh == reading.energy_kwh:  # not NaN
                    joules[labels] = joules.get(labels, 0.0) + reading.energy_kwh * JOULES_PER_KWH
        for key_w, value in sorted(watts.items()):
            power.add_metric(list(key_w), value)
        for key_j, value in sorted(joules.items()):
            energy.add_metric(list(key_j), value)
        for run_key, count in sorted(runs.items()):
            running.add_metric(list(run_key), count)
        for reason, count in (("dead", scan.dead), ("stale", scan.stale), ("unreadable", scan.unreadable)):
            skipped.add_metric([reason], count)
        return True, families


def registry_for(collector: LetCollector) -> CollectorRegistry:
    """A registry holding LET's collector alone (no process or platform metrics of the exporter)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def write_textfile(directory: str | os.PathLike[str], registry: CollectorRegistry) -> Path:
    """The exposition as ``DIR/let.prom`` for node_exporter's textfile collector, replaced
    atomically (prometheus_client writes a temporary file, then renames it)."""
    path = Path(directory).expanduser() / TEXTFILE_NAME
    write_to_textfile(str(path), registry)
    return path


def serve(registry: CollectorRegistry, bind: str, port: int) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``bind:port`` from a background thread; returns the server (its
    ``server_port`` is the port the system chose for 0) and its thread."""
    server, thread = start_http_server(port, addr=bind, registry=registry)
    return server, thread


def run_textfile_loop(directory: str | os.PathLike[str], registry: CollectorRegistry, interval: float,
                      stop: threading.Event) -> None:
    """Rewrite the textfile every ``interval`` seconds until ``stop`` is set. A write that
    fails (a full disk) is said and tried again next time: node_exporter keeps the last file."""
    failed = ""
    while True:
        try:
            write_textfile(directory, registry)
            failed = ""
        except OSError as exc:
            if str(exc) != failed:
                print(f"LET exporter: cannot write the textfile in {directory}: {exc}; trying again in "
                      f"{interval:g} s", file=sys.stderr, flush=True)
            failed = str(exc)
        if stop.wait(interval):
            return
