"""The paper statement: energy, emissions, methodology and hardware of a project's runs, in LaTeX.

Keeps the meaning and numbers of LET 0.1.x's statement and fixes its defects: comparisons now
use the emissions after unit conversion, pick the closest reference deterministically, every
hardware model is named, and only the methods actually used are cited.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

from attrs import frozen

from let_core.carbon import checked_number
from let_core.errors import ConfigurationError

# --------------------------------------------------------------------------- citations
BIBTEX: dict[str, str] = {
    "lamarr_energy_tracker": """@software{lamarr_energy_tracker,
  author = {Buschjäger, Sebastian and Fischer, Raphael},
  title  = {{Lamarr} {Energy} {Tracker}},
  year   = {2025},
  url    = {https://github.com/lamarr-institute/lamarr-energy-tracker},
}""",
    "codecarbon": """@software{codecarbon,
  author    = {Courty, Benoît and
               Schmidt, Victor and
               Kamal, Goyal and
               others},
  title     = {mlco2/codecarbon: v3.2.3},
  year      = 2025,
  publisher = {Zenodo},
  version   = {v3.2.3},
  doi       = {10.5281/zenodo.18731928},
  url       = {https://doi.org/10.5281/zenodo.18731928},
}""",
    "ai_energy_validation": """@misc{ai_energy_validation,
  title  = {Ground-Truthing {AI} Energy Consumption: {Validating} {CodeCarbon} Against External Measurements},
  author = {Raphael Fischer},
  year   = {2025},
  doi    = {10.48550/arXiv.2509.22092},
  url    = {https://arxiv.org/abs/2509.22092},
}""",
    "rapl": """@inproceedings{rapl,
  author    = {David, Howard and Gorbatov, Eugene and Hanebutte, Ulf R. and Khanna, Rahul and Le, Christian},
  title     = {{RAPL}: Memory Power Estimation and Capping},
  booktitle = {Proceedings of the 16th ACM/IEEE International Symposium on Low Power Electronics and Design},
  year      = {2010},
  pages     = {189--194},
  doi       = {10.1145/1840845.1840883},
}""",
    "nvml": """@manual{nvml,
  title        = {{NVIDIA} Management Library ({NVML}) {API} Reference},
  organization = {NVIDIA Corporation},
  url          = {https://docs.nvidia.com/deploy/nvml-api/},
}""",
    "jetson_stats": """@software{jetson_stats,
  author = {Bonghi, Raffaello},
  title  = {jetson-stats},
  url    = {https://github.com/rbonghi/jetson_stats},
}""",
    "ml_co2_impact": """@article{ml_co2_impact,
  title   = {Quantifying the Carbon Emissions of Machine Learning},
  author  = {Lacoste, Alexandre and Luccioni, Alexandra and Schmidt, Victor and Dandres, Thomas},
  journal = {arXiv preprint arXiv:1910.09700},
  year    = {2019},
}""",
    "bananas": """@book{bananas,
  author    = {Berners-Lee, Mike},
  title     = {How Bad Are Bananas? The Carbon Footprint of Everything},
  publisher = {Greystone Books},
  year      = {2011},
}""",
}

# Methodology label prefix -> citation keys of what produced the numbers.
_METHOD_CITATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("codecarbon", ("codecarbon",)),
    ("rapl", ("rapl",)),
    ("nvml", ("nvml",)),
    ("jetson", ("jetson_stats",)),
    ("tasmota", ("ai_energy_validation",)),
    ("the machine learning co2 impact calculator", ("ml_co2_impact",)),
    ("the co2 impact calculator", ("ml_co2_impact",)),
)

#: Methods that read hardware energy counters; the statement says "... energy counters".
_COUNTERS = ("RAPL", "NVML")


def citation_keys(methodologies: Sequence[str]) -> list[str]:
    keys = ["lamarr_energy_tracker"]
    for methodology in methodologies:
        lowered = methodology.lower()
        for prefix, cited in _METHOD_CITATIONS:
            if lowered.startswith(prefix):
                keys.extend(k for k in cited if k not in keys)
    return keys


def bibtex(keys: Sequence[str] | None = None) -> str:
    """BibTeX entries for the given citation keys (all known keys when None)."""
    chosen = list(BIBTEX) if keys is None else list(keys)
    unknown = [key for key in chosen if key not in BIBTEX]
    if unknown:
        raise ConfigurationError(f"unknown citation key(s) {unknown}; known: {', '.join(BIBTEX)}")
    return "\n\n".join(BIBTEX[key] for key in chosen) + "\n"


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
def _small(value: float) -> str:
    # Three decimals as LET 0.1.x, but a short test run reads "0.0123 Wh", not "0.000 Wh".
    return f"{value:.3f}" if value >= 1 or value == 0 else f"{value:.3g}"


def format_energy(kwh: float) -> str:
    """kWh above 0.1 kWh, Wh below (as LET 0.1.x)."""
    return f"{kwh:.3f} kWh" if kwh > 0.1 else f"{_small(kwh * 1000)} Wh"


def format_emissions(grams: float) -> str:
    return f"{grams / 1000:.3f} kg" if grams >= 10 else f"{_small(grams)} g"


def _article(phrase: str) -> str:
    """'a' or 'an' by how the phrase is spoken: 'an Intel', 'an NVIDIA', 'a Raspberry Pi'."""
    word = phrase.split(" ", 1)[0]
    if not word:
        return "a"
    acronym = len(word) > 1 and (word[:2].isupper() or word[1].isdigit())
    if acronym:
        return "an" if word[0].upper() in "AEFHILMNORSX" else "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def hardware_phrase(hardware: Sequence[str]) -> str:
    named = [h for h in hardware if h]
    if not named:
        return "unspecified hardware"
    return _join([f"{_article(h)} {h}" for h in named])


# How a backend's methodology label reads inside "Using ..., the energy ...".
_PHRASES = {
    "Tasmota smart socket": "Tasmota smart sockets at the wall",
    "jetson-stats": "jetson-stats board power readings",
}


def methodology_phrase(methodologies: Sequence[str]) -> str:
    labels = list(dict.fromkeys(_PHRASES.get(m, m) for m in methodologies if m))
    counters = [m for m in labels if m in _COUNTERS]
    others = [m for m in labels if m not in _COUNTERS]
    if counters:
        others.append(_join(counters) + " energy counters")
    return _join(others) if others else "unspecified methods"


def _cite(keys: Sequence[str]) -> str:
    return "~\\cite{" + ",".join(keys) + "}"


@frozen
class KindFigures:
    methodologies: tuple[str, ...]
    hardware: tuple[str, ...]
    energy_kwh: float
    emissions_kg: float
    runs: int


def _sentence(kind: str, figures: KindFigures, intensity: int) -> str:
    estimated = kind == "estimate"
    verb = "is estimated to" if estimated else "was measured as"
    emissions_word = "estimated carbon emissions" if estimated else "carbon emissions"
    keys = citation_keys(figures.methodologies)
    if not estimated:
        keys = [k for k in keys if k != "ai_energy_validation"] + (
            ["ai_energy_validation"] if any(m.lower().startswith("tasmota") for m in figures.methodologies) else [])
    return (f"Using {methodology_phrase(figures.methodologies)}, the energy consumption of running all "
            f"experiments on {hardware_phrase(figures.hardware)} {verb} {format_energy(figures.energy_kwh)}. "
            f"This corresponds to {emissions_word} of {format_emissions(figures.emissions_kg * 1000)} of "
            f"CO2-equivalents, assuming a carbon intensity of {intensity} gCO2/kWh{_cite(keys)}.")


_ESTIMATE_NOTE = ("Note that these numbers are underestimations of actual resource consumption and "
                  "do not account for overhead factors or embodied impacts~\\cite{ai_energy_validation}.")
_METERED_NOTE = ("Note that these numbers do not account for embodied impacts of the hardware.")
_COMPARISON_SOURCE = ("Comparisons are based on ``How Bad Are Bananas? The Carbon Footprint of "
                      "Everything'' by Mike Berners-Lee, Greystone Books, 2011.")


def compose(estimate: KindFigures | None, metered: KindFigures | None, *, paired_runs: int = 0,
            paired_estimate_kwh: float = 0.0, paired_metered_kwh: float = 0.0) -> str:
    """The statement text from per-kind figures. Estimates lead when present; metered values
    of the same runs follow with their ratio to the estimate."""
    if estimate is None and metered is None:
        raise ConfigurationError("there are no measured runs to describe; track a run first "
                                 "(`let demo` runs one) or check the project/user/host filters")
    headline = estimate if estimate is not None else metered
    assert headline is not None
    # Truncated like LET 0.1.x (380.95 -> 380); the epsilon keeps 380.0 from becoming 379.
    intensity = (math.floor(headline.emissions_kg * 1000 / headline.energy_kwh + 1e-6)
                 if headline.energy_kwh > 0 else 0)
    parts = [_sentence("estimate" if estimate is not None else "metered", headline, intensity)]
    if estimate is not None and metered is not None:
        keys = [k for k in citation_keys(metered.methodologies) if k != "lamarr_energy_tracker"]
        cite = _cite(keys) if keys else ""
        method = methodology_phrase(metered.methodologies)
        if paired_runs and paired_estimate_kwh > 0:
            ratio = paired_metered_kwh / paired_estimate_kwh
            runs = "the same run" if paired_runs == 1 else f"the {paired_runs} runs measured both ways"
            parts.append(
                f"Metered with {method}, {runs} consumed {format_energy(paired_metered_kwh)}, "
                f"{ratio:.2f}x the estimate of {format_energy(paired_estimate_kwh)}{cite}.")
        else:
            parts.append(f"Other runs, metered with {method}, consumed "
                         f"{format_energy(metered.energy_kwh)}{cite}.")
    parts.append(_ESTIMATE_NOTE if estimate is not None else _METERED_NOTE)
    text = " ".join(parts)
    compared = comparison(headline.emissions_kg * 1000)
    if compared:
        text += f"\n\nFor comparison, this is {compared}. {_COMPARISON_SOURCE}"
    return text


def _figures(kind_totals: Any) -> KindFigures | None:
    if kind_totals.runs == 0:
        return None
    ordered = lambda counts: tuple(sorted(counts, key=lambda k: (-counts[k], k)))  # noqa: E731
    return KindFigures(ordered(kind_totals.methodologies), ordered(kind_totals.hardware),
                       kind_totals.energy_kwh, kind_totals.emissions_kg, kind_totals.runs)


def statement_from_totals(totals: Any) -> str:
    return compose(_figures(totals.estimate), _figures(totals.metered),
                   paired_runs=totals.paired_runs, paired_estimate_kwh=totals.paired_estimate_kwh,
                   paired_metered_kwh=totals.paired_metered_kwh)


# --------------------------------------------------------------------------- public API
def paper_statement(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                    user: str | None = None, hostname: str | None = None) -> str:
    """The statement for every stored run matching the filters."""
    from let_core.store import Store

    totals = Store(output_dir).totals(project_name=project_name, user=user, hostname=hostname)
    if totals.empty:
        filters = {k: v for k, v in (("project_name", project_name), ("user", user),
                                     ("hostname", hostname)) if v is not None}
        where = Store(output_dir).path
        stored = sum(1 for row in Store(output_dir).rows()
                     if all(row.get(k) == v for k, v in filters.items()))
        if stored:
            raise ConfigurationError(
                f"none of the {stored} stored row(s) in {where}" + (f" matching {filters}" if filters else "")
                + " has an energy value (empty energy_consumed cells, or backends that failed); "
                "see `let results` and fill in or delete those rows")
        raise ConfigurationError(f"no stored runs in {where}" + (f" match {filters}" if filters else "")
                                 + "; track a run first or check the filters (`let results`)")
    return statement_from_totals(totals)


def print_paper_statement(output_dir: str | os.PathLike[str] | None = None, project_name: str | None = None,
                          user: str | None = None, hostname: str | None = None) -> str:
    """Print the statement for every stored run matching the filters, and return it."""
    text = paper_statement(output_dir, project_name, user, hostname)
    print("\n" + text + "\n")
    return text


def custom_paper_statement(methodology: str, hardware: str, consumed_energy: float,
                           energy_unit: str = "kWh", carbon_intensity: float = 380, *,
                           joined_units: bool = False) -> str:
    """A statement for energy measured elsewhere (e.g. the CO2 Impact Calculator).

    ``joined_units=True`` writes the emissions as LET 0.1.x's custom statement did and its
    PyPI page shows, "1.216 kgCO2-equivalents", for texts that quote that wording.
    """
    energy = checked_number(consumed_energy, "consumed_energy")
    intensity = checked_number(carbon_intensity, "carbon_intensity", unit="gCO2/kWh")
    if energy_unit not in ("kWh", "Wh"):
        raise ConfigurationError(f"energy_unit must be 'kWh' or 'Wh', got {energy_unit!r}")
    if not isinstance(methodology, str) or not methodology.strip():
        raise ConfigurationError("methodology must name how the energy was obtained, e.g. 'the CO2 Impact Calculator'")
    if not isinstance(hardware, str) or not hardware.strip():
        raise ConfigurationError("hardware must name the hardware, e.g. 'NVIDIA GTX 1080 GPU'")
    kwh = energy / 1000 if energy_unit == "Wh" else energy
    grams = kwh * intensity
    shown_intensity = int(intensity) if float(intensity).is_integer() else intensity
    keys = citation_keys([methodology])
    emissions = (format_emissions(grams) + "CO2-equivalents" if joined_units
                 else f"{format_emissions(grams)} of CO2-equivalents")
    text = (f"Using {methodology}, the energy consumption of running all experiments on "
            f"{hardware_phrase([hardware])} is estimated to {energy:.3f} {energy_unit}. "
            f"This corresponds to estimated carbon emissions of {emissions}, "
            f"assuming a carbon intensity of {shown_intensity} gCO2/kWh{_cite(keys)}. "
            f"{_ESTIMATE_NOTE}")
    compared = comparison(grams)
    if compared:
        text += f"\n\nFor comparison, this is {compared}. {_COMPARISON_SOURCE}"
    return text


def print_custom_paper_statement(methodology: str, hardware: str, consumed_energy: float,
                                 energy_unit: str = "kWh", carbon_intensity: float = 380) -> str:
    """Print a statement for energy measured elsewhere, and return it (LET 0.1.x's API)."""
    text = custom_paper_statement(methodology, hardware, consumed_energy, energy_unit, carbon_intensity)
    print("\n" + text + "\n")
    return text


def cited_keys(text: str) -> list[str]:
    """Every key a statement cites, in order of first appearance."""
    import re

    keys: list[str] = []
    for group in re.findall(r"\\cite\{([^}]*)\}", text):
        keys.extend(k for k in group.split(",") if k and k not in keys)
    return keys
