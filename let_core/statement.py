"""The paper statement: energy, emissions, methodology and hardware of a project's runs, in LaTeX.

Keeps the meaning and numbers of LET 0.1.x's statement and fixes its defects: comparisons now
use the emissions after unit conversion, pick the closest reference deterministically, every
hardware model is named, and only the methods actually used are cited.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from let_core.carbon import checked_number
from let_core.display import by_count, counted, join_words
from let_core.errors import ConfigurationError
from let_core.results.rule import FULL_COVERAGE
from let_core.units import format_emissions as format_emissions
from let_core.units import format_energy as format_energy
from let_core.units import format_share

# --------------------------------------------------------------------------- citations
BIBTEX: dict[str, str] = {
    "lamarr_energy_tracker": """@software{lamarr_energy_tracker,
  author = {Buschjäger, Sebastian and Fischer, Raphael},
  title  = {{Lamarr} {Energy} {Tracker}},
  year   = {2025},
  url    = {https://github.com/lamarr-institute/lamarr-energy-tracker},
}""",
    "ai_energy_validation": """@misc{ai_energy_validation,
  title  = {Ground-Truthing {AI} Energy Consumption: {Validating} {CodeCarbon} Against External Measurements},
  author = {Raphael Fischer},
  year   = {2025},
  doi    = {10.48550/arXiv.2509.22092},
  url    = {https://arxiv.org/abs/2509.22092},
}""",
    "bananas": """@book{bananas,
  author    = {Berners-Lee, Mike},
  title     = {How Bad Are Bananas? The Carbon Footprint of Everything},
  publisher = {Greystone Books},
  year      = {2011},
}""",
}

def _backend_factories() -> dict[str, Any]:
    """Registered backend factories by name: each may declare ``citations`` (BibTeX entries by
    key), ``citation_keys(methodologies)`` and ``statement_phrase`` (how it reads in a sentence)."""
    try:
        from let_core.plugins import registry

        return {name: item.factory for name, item in registry().backends.items()}
    except Exception:  # a broken plugin set must not cost the user their statement
        return {}


def _factory_citations(factory: Any) -> Mapping[str, str]:
    entries = getattr(factory, "citations", None)
    return entries if isinstance(entries, Mapping) else {}


def known_bibtex() -> dict[str, str]:
    """Every BibTeX entry LET can cite: its own and those its backends declare."""
    entries = dict(BIBTEX)
    for factory in _backend_factories().values():
        for key, entry in _factory_citations(factory).items():
            if isinstance(key, str) and isinstance(entry, str):
                entries.setdefault(key, entry)
    return entries


def _backend_factory(name: str) -> Any:
    """One backend's factory, loading only its own module when it is a built-in (every
    plugin only for a name no built-in has); None when no plugin registers it."""
    try:
        from let_core.plugins import get_factory

        return get_factory("backend", name).factory
    except Exception:  # unknown or broken: the statement still prints, without its citation
        return None


def citation_keys(backends: Sequence[str], methodologies: Sequence[str] = ()) -> list[str]:
    """LET's own key, then what each backend (in order) declares for these methodologies."""
    keys = ["lamarr_energy_tracker"]
    for name in backends:
        # Per name, not the whole registry: a tracker's statement at stop must not import
        # every backend module (tasmota, nvml, ...) to cite the one it used.
        factory = _backend_factory(name)
        if factory is None:
            continue
        chooser = getattr(factory, "citation_keys", None)
        cited = (chooser(list(methodologies)) if callable(chooser)
                 else list(_factory_citations(factory)))
        keys.extend(k for k in cited if k not in keys)
    return keys


def bibtex(keys: Sequence[str] | None = None, methodologies: Sequence[str] = ()) -> str:
    """BibTeX entries for the given citation keys (all known keys when None). A backend whose
    factory has ``citation_entries(methodologies)`` gives the entries of the methods used
    ("CodeCarbon 3.3.2" cites v3.3.2, not the version LET was written against)."""
    entries = known_bibtex()
    for factory in _backend_factories().values() if methodologies else ():
        chooser = getattr(factory, "citation_entries", None)
        if callable(chooser):
            entries.update({k: v for k, v in chooser(list(methodologies)).items() if k in entries})
    chosen = list(entries) if keys is None else list(keys)
    unknown = [key for key in chosen if key not in entries]
    if unknown:
        raise ConfigurationError(f"unknown citation key(s) {unknown}; known: {', '.join(entries)}")
    return "\n\n".join(entries[key] for key in chosen) + "\n"


# --------------------------------------------------------------------------- comparisons
@frozen
class Reference:
    grams: float
    singular: str
    plural: str


# Mike Berners-Lee, "How Bad Are Bananas?" (2011); the figures LET 0.1.x used.
REFERENCES: tuple[Reference, ...] = (
    Reference(0.014, "text message", "text messages"),
    Reference(0.3, "spam email", "spam emails"),
    Reference(0.5, "web search", "web searches"),
    Reference(4, "proper email", "proper emails"),
    Reference(10, "locally grown apple", "locally grown apples"),
    Reference(70, "time boiling a quart of water", "times boiling a quart of water"),
    Reference(80, "imported banana", "imported bananas"),
    Reference(100, "hour of watching TV", "hours of watching TV"),
    Reference(400, "weekday newspaper", "weekday newspapers"),
    Reference(450, "roll of recycled toilet paper", "rolls of recycled toilet paper"),
    Reference(500, "pint of beer at a pub", "pints of beer at a pub"),
    Reference(1_000, "paperback book", "paperback books"),
    Reference(1_100, "warm bath (gas-heated)", "warm baths (gas-heated)"),
    Reference(6_000, "pair of cotton jeans", "pairs of cotton jeans"),
    Reference(15_000, "pair of leather shoes", "pairs of leather shoes"),
    Reference(120_000, "train trip from NYC to Niagara Falls and back",
              "train trips from NYC to Niagara Falls and back"),
    Reference(3_400_000, "return economy flight from Los Angeles to Barcelona",
              "return economy flights from Los Angeles to Barcelona"),
    Reference(17_000_000, "new mid-size car", "new mid-size cars"),
)


def comparison(emissions_g: float) -> str | None:
    """The closest reference at or below the emissions, as "equivalent to N things".

    Deterministic: the largest reference not exceeding the emissions, so the count is >= 1
    and as small as possible.
    """
    if not math.isfinite(emissions_g) or emissions_g < REFERENCES[0].grams:
        return None
    reference = max((r for r in REFERENCES if r.grams <= emissions_g), key=lambda r: r.grams)
    return comparison_phrase(emissions_g, reference)


def comparison_phrase(emissions_g: float, reference: Reference) -> str:
    """"equivalent to N things" for the emissions in units of one reference (N may be below 1)."""
    factor = emissions_g / reference.grams
    if 0.95 < factor < 1.05:
        return f"equivalent to 1 {reference.singular}"
    return f"equivalent to {factor:.1f} {reference.plural}"


# --------------------------------------------------------------------------- formatting
# Energies and masses scale as everywhere LET shows them (let_core.units); kept importable
# from here, where the statement's callers have always found them.


def format_intensity(g_per_kwh: float) -> str:
    """The intensity as the figures are rounded: three significant digits, whole grams from
    100 up (380.95 -> "381"), so the printed numbers recompute from each other."""
    if not math.isfinite(g_per_kwh) or g_per_kwh <= 0:
        return "0"
    if g_per_kwh >= 100:
        return str(int(round(g_per_kwh)))
    return f"{g_per_kwh:.3g}"


_POSSESSIVES = frozenset({"my", "our", "your", "his", "her", "their", "its", "the", "a", "an"})
# Words spelled with a vowel but spoken with a consonant sound.
_CONSONANT_SOUND = ("eu", "uni", "use", "usu", "one", "once")


# A host name, as a socket without a hardware label reports it: lower case with a digit, dot,
# hyphen or underscore ("host1", "node-07", "gpu01.cluster"). A name takes no article.
_HOST_NAME = re.compile(r"^(?=.*[0-9._-])[a-z][a-z0-9._-]*$")
_HOSTS_NAMED = 3


def _article(phrase: str) -> str:
    """'a' or 'an' by how the phrase is spoken ('an Intel', 'an NVIDIA', 'a Raspberry Pi'), and
    none before a possessive, a number of devices or a host name ('my workstation', '8x A100',
    'host1')."""
    word = phrase.split(" ", 1)[0]
    if not word or word.lower() in _POSSESSIVES or word[0].isdigit() or _HOST_NAME.match(word):
        return ""
    acronym = len(word) > 1 and (word[:2].isupper() or word[1].isdigit())
    if acronym:
        return "an" if word[0].upper() in "AEFHILMNORSX" else "a"
    if word.lower().startswith(_CONSONANT_SOUND):
        return "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def _with_article(phrase: str) -> str:
    article = _article(phrase)
    return f"{article} {phrase}" if article else phrase


def hardware_phrase(hardware: Sequence[str]) -> str:
    # A CodeCarbon run with a GPU is described as "CPU and GPU" (schema.hardware_from_codecarbon);
    # split into devices so a CPU-only run of the same machine does not name its CPU twice.
    named = list(dict.fromkeys(device.strip() for h in hardware if h
                               for device in h.split(" and ") if device.strip()))
    if not named:
        return "unspecified hardware"
    hosts = sorted(h for h in named if _HOST_NAME.match(h))
    devices = [_with_article(h) for h in named if not _HOST_NAME.match(h)]
    # A paper names what ran, not a lab's machine list: a few sockets' hosts by name, more by count.
    if len(hosts) > _HOSTS_NAMED:
        devices.append(f"{len(hosts)} hosts")
    elif len(hosts) > 1:
        devices.append(f"hosts {join_words(hosts)}")
    else:
        devices.extend(hosts)
    return join_words(devices)


_COUNTERS_SUFFIX = " energy counters"
_VERSIONED = re.compile(r"^(?P<tool>.+) v?(?P<version>\d+(?:\.\d+)+)$")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _versions_once(labels: Sequence[str]) -> list[str]:
    """One phrase per tool: "CodeCarbon 3.3.2" and "CodeCarbon 3.2.3" read "CodeCarbon
    3.2.3-3.3.2" (oldest-newest), at the place of the tool's first label. A range, not "3.2.3
    and 3.3.2", so that a list of methods has one "and" only: "CodeCarbon 3.2.3-3.3.2 and RAPL"."""
    versions: dict[str, list[str]] = {}
    for label in labels:
        match = _VERSIONED.match(label)
        if match:
            versions.setdefault(match["tool"], []).append(match["version"])
    merged: list[str] = []
    for label in labels:
        match = _VERSIONED.match(label)
        if not match:
            merged.append(label)
        elif match["tool"] in versions:
            ordered = sorted(dict.fromkeys(versions.pop(match["tool"])), key=_version_key)
            span = ordered[0] if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}"
            merged.append(f"{match['tool']} {span}")
    return merged


def methodology_phrase(methodologies: Sequence[str], backends: Sequence[str] = ()) -> str:
    """How the methods read inside "Using ..., the energy ...": the phrase a backend declares
    for its methodology label (``statement_phrases`` on its factory), else the label itself.
    Counter readings share one suffix: "RAPL and NVML energy counters"."""
    phrases: dict[str, str] = {}
    for backend in backends:
        declared = getattr(_backend_factory(backend), "statement_phrases", None)
        if isinstance(declared, Mapping):
            phrases.update({k: v for k, v in declared.items() if isinstance(k, str) and isinstance(v, str)})
    labels = _versions_once(list(dict.fromkeys(phrases.get(m, m) for m in methodologies if m)))
    counters = [m[: -len(_COUNTERS_SUFFIX)] for m in labels if m.endswith(_COUNTERS_SUFFIX)]
    others = [m for m in labels if not m.endswith(_COUNTERS_SUFFIX)]
    if counters:
        others.append(join_words(counters) + _COUNTERS_SUFFIX)
    return join_words(others) if others else "unspecified methods"


def _cite(keys: Sequence[str]) -> str:
    return "~\\cite{" + ",".join(keys) + "}" if keys else ""


_ESTIMATE_NOTE = ("Note that these numbers are underestimations of actual resource consumption and "
                  "do not account for overhead factors or embodied impacts~\\cite{ai_energy_validation}.")
_METERED_NOTE = "Note that these numbers do not account for embodied impacts of the hardware."
_COMPARISON_SOURCE = ("Comparisons are based on ``How Bad Are Bananas? The Carbon Footprint of "
                      "Everything'' by Mike Berners-Lee, Greystone Books, 2011.")



def _percent(fraction: float) -> str:
    return format_share(fraction)


def statement_from_totals(totals: Any, calibrated: str | None = None, share: str | None = None) -> str:
    """The statement for counted ``Totals`` (``let_core.results.counting``): every number in it
    is one of the totals' fields, formatted by one rule. ``calibrated`` is the sentence on
    calibrated estimates (``let_core.results.calibration.statement_sentence``), if any;
    ``share`` the one saying the figures are shares of the machine (``share_sentence``)."""
    if totals.empty:
        raise ConfigurationError("there are no measured runs to describe; track a run first "
                                 "(`lett demo` runs one) or check the project/user/host filters")
    methodologies = by_count(totals.methodologies)
    backends = by_count(totals.backends)
    measured, estimated = totals.metered_runs > 0, totals.estimated_runs > 0
    energy = format_energy(totals.energy_kwh)
    intensity = totals.intensity if totals.intensity is not None else 0.0
    if totals.replaced_emissions:
        import warnings

        from let_core.errors import LetWarning

        warnings.warn(f"{totals.replaced_emissions} row(s) had a stored emissions figure that disagrees with "
                      "their energy times the carbon intensity they were recorded with (negative, absurd or "
                      "beyond rounding); the statement uses energy x intensity instead. `lett results --json` "
                      "shows the stored cells.", LetWarning, stacklevel=2)
    coverage = totals.coverage
    covered = ""
    if measured and coverage is not None and coverage < FULL_COVERAGE:
        of = "the run" if totals.metered_runs == 1 else "the metered runs' time"
        covered = f" (metered for {_percent(coverage)} of {of}, the rest interpolated)"
    if measured and estimated:
        amount = (f"amounts to {energy}, of which {format_energy(totals.metered_kwh)} measured{covered} "
                  f"and {format_energy(totals.estimate_kwh)} estimated")
    elif measured:
        amount = f"was measured as {energy}{covered}"
    else:
        amount = f"is estimated to {energy}"
    emissions_word = "estimated carbon emissions" if estimated and not measured else "carbon emissions"
    keys = citation_keys(backends, methodologies)
    parts = [f"Using {methodology_phrase(methodologies, backends)}, the energy consumption of running all "
             f"experiments on {hardware_phrase(by_count(totals.hardware))} {amount}. This corresponds to "
             f"{emissions_word} of {format_emissions(totals.emissions_kg * 1000)} of CO2-equivalents, "
             f"assuming a carbon intensity of {format_intensity(intensity)} gCO2/kWh{_cite(keys)}."]
    if totals.low_coverage_runs:
        runs = counted(totals.low_coverage_runs, "run")
        parts.append(f"The metered figures of {runs} covered less than half of the run, so they are "
                     "not presented as measured; the estimate is counted instead.")
    if totals.paired_runs and totals.paired_estimate_kwh > 0:
        paired_methods = by_count(totals.paired_methodologies)
        paired_backends = by_count(totals.paired_backends)
        cite = [k for k in citation_keys(paired_backends, paired_methods) if k not in keys]
        runs = "the same run" if totals.paired_runs == 1 else f"the {counted(totals.paired_runs, 'run')} measured both ways"
        ratio = totals.paired_metered_kwh / totals.paired_estimate_kwh
        parts.append(f"For {runs}, {methodology_phrase(paired_methods, paired_backends)} estimated "
                     f"{format_energy(totals.paired_estimate_kwh)}{_cite(cite)}; the measured "
                     f"{format_energy(totals.paired_metered_kwh)} is {ratio:.2f}x the estimate.")
    if calibrated:
        parts.append(calibrated)
    if share:
        parts.append(share)
    parts.append(_ESTIMATE_NOTE if estimated else _METERED_NOTE)
    text = " ".join(parts)
    compared = comparison(totals.emissions_kg * 1000)
    if compared:
        text += f"\n\nFor comparison, this is {compared}. {_COMPARISON_SOURCE}"
    return text


def share_sentence(machine_kwh: float, runs: int, unshared: int) -> str:
    """What the attributed statement adds: whose share the figures are, how it was taken, what
    the whole machine used, and which runs had no share (their machine figure is counted)."""
    text = ("These figures are this process's share of the machine: the tracked process tree's CPU "
            "time over the machine's busy CPU time in the same intervals (its memory by resident "
            "pages, GPUs by NVML's per-process utilisation where the driver reports it, else whole); "
            f"the machine as a whole used {format_energy(machine_kwh)} during these runs.")
    if unshared:
        which = "1 run" if unshared == 1 and runs == 1 else f"{unshared:,} of the {counted(runs, 'run')}"
        text += (f" For {which} no share was measured (attribution off, or unreadable process "
                 "figures), so the whole machine figure is counted there.")
    return text


# --------------------------------------------------------------------------- public API
def paper_statement(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                    user: str | None = None, hostname: str | None = None, *,
                    dataset: str | os.PathLike[str] | None = None,
                    carbon_intensity: float | None = None, calibration: bool = True,
                    transfer: bool = False, attributed: bool = False) -> str:
    """The statement for every stored run matching the filters, from every source
    ``load_results`` reads (the CSV store, the Parquet dataset, an ``s3://`` URI, ``LET_DATASET``).

    ``carbon_intensity`` (gCO2/kWh) restates the emissions at that intensity instead of the
    one each run was recorded with. With ``calibration`` (the default), estimate-only runs of
    hosts with a wall-socket calibration also get the corrected figure and its interval;
    ``transfer`` lets hosts of identical CPU and GPU models borrow a calibration.
    ``attributed=True`` states each run's share of the machine (``EnergyTracker(attribution=
    "process")``) where it has one, and says so; calibrations, being of whole machines, are left out.
    """
    from let_core.results.loading import counted_totals, where

    share = None
    if attributed:
        from let_core.results.counting import TOTALS_COLUMNS, frame_totals, unshared_runs
        from let_core.results.loading import load_results

        # With "error": a share that could not be measured says why, and is no blank row to warn of.
        frame = load_results(output_dir, project_name, user, hostname, dataset=dataset,
                             columns=(*TOTALS_COLUMNS, "error"))
        totals = frame_totals(frame, attributed=True)
        if not totals.empty:
            share = share_sentence(frame_totals(frame).energy_kwh, totals.runs, unshared_runs(frame))
    else:
        totals = counted_totals(output_dir, project_name, user, hostname, dataset=dataset)
    if totals.empty:
        from let_core.schema import filter_dict, matches
        from let_core.store import Store

        filters = {k: v for k, v in filter_dict(project_name, user, hostname).items() if v is not None}
        stored = sum(1 for row in Store(output_dir).rows() if matches(row, filters))
        if stored:
            raise ConfigurationError(
                f"none of the {stored} stored row(s) in {Store(output_dir).path}"
                + (f" matching {filters}" if filters else "")
                + " has an energy value (empty energy_consumed cells, or backends that failed); "
                "see `lett results` and fill in or delete those rows")
        raise ConfigurationError(f"no stored runs in {where(output_dir, dataset)}"
                                 + (f" match {filters}" if filters else "")
                                 + "; track a run first or check the filters (`lett results`)")
    if carbon_intensity is not None:
        totals = at_intensity(totals, carbon_intensity)
    if share:
        return statement_from_totals(totals, share=share)
    return statement_from_totals(totals, _calibrated_sentence(output_dir, project_name, user, hostname,
                                                              dataset, calibration, transfer))


def _calibrated_sentence(output_dir: str | os.PathLike[str] | None, project_name: str | None, user: str | None,
                         hostname: str | None, dataset: str | os.PathLike[str] | None, calibration: bool,
                         transfer: bool) -> str | None:
    """The metered figures' interval where their sockets were checked, and (with ``calibration``)
    the corrected figure of estimate-only runs on calibrated hosts."""
    from let_core.results.calibration import has_calibrations

    if not has_calibrations():  # the rows are read only when a calibration or socket check exists
        return None
    from let_core.results.loading import load_results

    frame = load_results(output_dir, project_name, user, hostname, dataset=dataset)
    return calibration_sentences(frame, calibration, transfer)


def calibration_sentences(frame: Any, calibration: bool = True, transfer: bool = False) -> str | None:
    """What the statement of ``frame``'s runs (``load_results``' rows, with at least
    ``calibration.CALIBRATION_COLUMNS``) says on calibrations: the metered figures' interval
    where their sockets were checked and (with ``calibration``) the corrected figure of
    estimate-only runs on calibrated hosts; None where there is nothing to say."""
    from let_core.results.calibration import has_calibrations, metered_sentence, statement_sentence

    if not has_calibrations():
        return None
    sentences = [s for s in (metered_sentence(frame),
                             statement_sentence(frame, transfer=transfer) if calibration else None) if s]
    return " ".join(sentences) or None


def at_intensity(totals: Any, carbon_intensity: float) -> Any:
    """Counted totals restated at one carbon intensity (gCO2/kWh)."""
    import attrs

    return attrs.evolve(totals, emissions_kg=totals.energy_kwh * carbon_intensity / 1000,
                        intensity_sum=float(carbon_intensity), intensity_rows=1, replaced_emissions=0)


def print_paper_statement(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                          user: str | None = None, hostname: str | None = None) -> str:
    """Print the statement for every stored run matching the filters, and return it."""
    text = paper_statement(output_dir, project_name, user, hostname)
    print("\n" + text + "\n")
    return text


_METERED_WORDS = re.compile(r"meter|measured|smart socket|smart plug|tasmota|rapl|nvml|ipmi|\\bpdu\\b|wall",
                            re.IGNORECASE)


def custom_paper_statement(methodology: str, hardware: str, consumed_energy: float,
                           energy_unit: str = "kWh", carbon_intensity: float | None = None,
                           kind: str | None = None, *, joined_units: bool = False) -> str:
    """A statement for energy obtained elsewhere (the CO2 Impact Calculator, a wattmeter).

    ``kind`` says whether the figure was ``"metered"`` or an ``"estimate"``; by default it
    follows what the methodology names (a meter, a smart socket, RAPL, ... read as metered).
    The wording, the note and the citations follow the kind; the intensity used is printed.
    Without ``carbon_intensity`` the tracker's rule applies (``carbon.resolve_intensity``:
    ``LET_CARBON_INTENSITY``, else ``LET_COUNTRY``'s grid, else Germany's), so a custom figure and
    a tracked one of the same machine are restated alike.
    ``joined_units=True`` writes the emissions as LET 0.1.x's custom statement did and its
    PyPI page shows, "1.216 kgCO2-equivalents", for texts that quote that wording.
    """
    energy = checked_number(consumed_energy, "consumed_energy")
    if carbon_intensity is None:
        from let_core.carbon import resolve_intensity

        carbon_intensity = resolve_intensity()[1]
    intensity = checked_number(carbon_intensity, "carbon_intensity", unit="gCO2/kWh")
    if energy_unit not in ("kWh", "Wh"):
        raise ConfigurationError(f"energy_unit must be 'kWh' or 'Wh', got {energy_unit!r}")
    if not isinstance(methodology, str) or not methodology.strip():
        raise ConfigurationError("methodology must name how the energy was obtained, e.g. 'the CO2 Impact Calculator'")
    if not isinstance(hardware, str) or not hardware.strip():
        raise ConfigurationError("hardware must name the hardware, e.g. 'NVIDIA GTX 1080 GPU'")
    if kind is None:
        kind = "metered" if _METERED_WORDS.search(methodology) else "estimate"
    if kind not in ("metered", "estimate"):
        raise ConfigurationError(f"kind must be 'metered' or 'estimate', got {kind!r}")
    kwh = energy / 1000 if energy_unit == "Wh" else energy
    grams = kwh * intensity
    estimated = kind == "estimate"
    verb = "is estimated to" if estimated else "was measured as"
    emissions_word = "estimated carbon emissions" if estimated else "carbon emissions"
    keys = _custom_citations(methodology)
    emissions = (format_emissions(grams) + "CO2-equivalents" if joined_units
                 else f"{format_emissions(grams)} of CO2-equivalents")
    text = (f"Using {methodology}, the energy consumption of running all experiments on "
            f"{hardware_phrase([hardware])} {verb} {format_energy(kwh)}. "
            f"This corresponds to {emissions_word} of {emissions}, assuming a carbon intensity "
            f"of {format_intensity(intensity)} gCO2/kWh{_cite(keys)}. "
            f"{_ESTIMATE_NOTE if estimated else _METERED_NOTE}")
    compared = comparison(grams)
    if compared:
        text += f"\n\nFor comparison, this is {compared}. {_COMPARISON_SOURCE}"
    return text


def _custom_citations(methodology: str) -> list[str]:
    """What a custom statement cites: LET, and a backend's entries when the methodology is
    that backend's (its ``citation_keys`` says so, or the label starts with its name)."""
    keys = ["lamarr_energy_tracker"]
    lowered = methodology.lower()
    for name, factory in _backend_factories().items():
        chooser = getattr(factory, "citation_keys", None)
        if callable(chooser):
            cited = list(chooser([methodology]))
        else:
            labels = [name, *getattr(factory, "statement_phrases", {}).keys()]
            cited = list(_factory_citations(factory)) if any(lowered.startswith(str(label).lower()) for label in labels) else []
        keys.extend(k for k in cited if k not in keys)
    return keys


def print_custom_paper_statement(methodology: str, hardware: str, consumed_energy: float,
                                 energy_unit: str = "kWh", carbon_intensity: float | None = None,
                                 kind: str | None = None) -> str:
    """Print a statement for energy measured elsewhere, and return it (LET 0.1.x's API)."""
    text = custom_paper_statement(methodology, hardware, consumed_energy, energy_unit, carbon_intensity, kind)
    print("\n" + text + "\n")
    return text


def statement_bibtex(totals: Any, text: str) -> str:
    """The BibTeX entries that ``text``, the statement of ``totals``, cites, each tool at the
    versions its counted runs used ("CodeCarbon 3.3.2" cites v3.3.2)."""
    return bibtex(cited_keys(text), methodologies=list(totals.methodologies))


def cited_keys(text: str) -> list[str]:
    """Every key a statement cites, in order of first appearance."""
    import re

    keys: list[str] = []
    for group in re.findall(r"\\cite\{([^}]*)\}", text):
        keys.extend(k for k in group.split(",") if k and k not in keys)
    return keys
