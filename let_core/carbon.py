"""Carbon intensity by country, read from CodeCarbon's packaged energy-mix data.

The JSON file is read directly (CodeCarbon itself is not imported): a tracker needs the
intensity at construction time, and importing CodeCarbon costs about a second.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

from attrs import frozen

from let_core.errors import ConfigurationError, LetError

_MIX_FILE = ("data", "private_infra", "global_energy_mix.json")


@frozen
class CountryIntensity:
    iso_code: str  # ISO 3166-1 alpha-3
    country_name: str
    carbon_intensity: float  # gCO2e/kWh
    year: int | None


@functools.lru_cache(maxsize=1)
def _mix_text() -> tuple[Path, str]:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "CodeCarbon is not installed, so LET has no country energy-mix data; install it "
            "(`pip install codecarbon`) or pass carbon_intensity= in gCO2/kWh.")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MIX_FILE)
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise _broken(path, exc) from exc


def _broken(path: Path, exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        f"CodeCarbon's energy-mix data cannot be read at {path} ({exc}); the installation "
        "looks broken: reinstall it (`pip install --force-reinstall codecarbon`) or pass "
        "carbon_intensity= in gCO2/kWh.")


@functools.lru_cache(maxsize=1)
def _energy_mix() -> dict[str, dict[str, Any]]:
    path, text = _mix_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _broken(path, exc) from exc
    if not isinstance(data, dict):
        raise _broken(path, ValueError("not a JSON object"))
    return data


@functools.lru_cache(maxsize=1)
def _alpha2_to_alpha3() -> dict[str, str]:
    # pycountry is installed with CodeCarbon; it is only needed for two-letter codes.
    import pycountry

    return {c.alpha_2: c.alpha_3 for c in pycountry.countries}


def normalize_country_code(code: str) -> str:
    """An ISO 3166-1 code as alpha-3 upper case; alpha-2 codes are accepted and converted."""
    if not isinstance(code, str) or not code.strip():
        raise ConfigurationError(_unknown_message(code))
    code = code.strip().upper()
    if len(code) == 2:
        try:
            return _alpha2_to_alpha3()[code]
        except KeyError:
            raise ConfigurationError(_unknown_message(code)) from None
    return code


def country_intensity(code: str) -> CountryIntensity:
    """Carbon intensity of a country's electricity. Unknown codes are an error, never a guess."""
    iso = normalize_country_code(code)
    entry = _energy_mix().get(iso)
    if not isinstance(entry, dict) or "carbon_intensity" not in entry:
        raise ConfigurationError(_unknown_message(code))
    year = entry.get("year")
    return CountryIntensity(iso, str(entry.get("country_name", iso)),
                            float(entry["carbon_intensity"]), int(year) if year else None)


@functools.cache
def country_g_per_kwh(code: str) -> float:
    """The carbon intensity of a stored row's country code, NaN when blank, unknown or without
    data: the intensity a row without ``carbon_intensity`` was recorded with (counting's rule 8)."""
    if not code:
        return math.nan
    try:
        return country_intensity(code).carbon_intensity
    except LetError:
        return math.nan


def resolve_intensity(country_iso_code: str | None = None,
                      carbon_intensity: float | None = None) -> tuple[CountryIntensity, float]:
    """The one default rule for every figure LET computes, tracked or custom: the intensity
    given, else ``LET_CARBON_INTENSITY``, else the country's (the code given, else
    ``LET_COUNTRY``, else Germany) from CodeCarbon's data. Returns the country and gCO2/kWh."""
    from let_core import config

    country = country_intensity(country_iso_code or config.country_env() or config.DEFAULT_COUNTRY)
    if carbon_intensity is None:
        from_env = config.carbon_intensity_env()
        if from_env is not None:
            return country, checked_number(from_env, "LET_CARBON_INTENSITY", unit="gCO2/kWh")
    return country, (validate_intensity(carbon_intensity) if carbon_intensity is not None
                     else country.carbon_intensity)


def _suggestion(code: Any) -> str:
    """A hint when the user typed a country's name ("Germany") instead of its code."""
    if not isinstance(code, str) or len(code.strip()) <= 3:
        return ""
    try:
        mix = _energy_mix()
    except ConfigurationError:
        return ""
    needle = code.strip().lower()
    matches = [iso for iso, entry in mix.items()
               if needle in str(entry.get("country_name", "")).lower()]
    if not matches:
        return ""
    names = ", ".join(f"'{iso}' for {mix[iso].get('country_name', iso)}" for iso in sorted(matches)[:5])
    return f" Did you mean {names}?"


def _unknown_message(code: Any) -> str:
    return (f"unknown country code {code!r}:{_suggestion(code)} Use an ISO 3166-1 alpha-3 code such as 'DEU', "
            "'FRA' or 'USA' (alpha-2 such as 'DE' works too; look yours up at "
            "https://www.iso.org/obp/ui/#search or with `lett countries`), or pass "
            "carbon_intensity= in gCO2/kWh.")


def known_countries() -> list[CountryIntensity]:
    return [country_intensity(code) for code in sorted(_energy_mix())
            if "carbon_intensity" in _energy_mix()[code]]


def checked_number(value: Any, what: str, *, minimum: float = 0.0, strict: bool = False,
                   unit: str = "") -> float:
    """A user-given number, finite and at least ``minimum`` (above it when ``strict``).

    The one place LET turns figures from users into floats, so every bad figure (negative,
    NaN, infinite, text, a bool) gets the same clear error naming the setting.
    """
    number = math.nan
    # Numbers only: text such as "3.2" is refused, not coerced (a figure from a file or a
    # form should be parsed where its unit is known), and so is a bool.
    if not isinstance(value, (bool, str, bytes)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    bound_ok = number > minimum if strict else number >= minimum
    if not math.isfinite(number) or not bound_ok:
        relation = ">" if strict else ">="
        suffix = f" {unit}" if unit else ""
        raise ConfigurationError(f"{what} must be a finite number {relation} {minimum:g}{suffix}, got {value!r}")
    return number


def validate_intensity(value: Any) -> float:
    """A carbon intensity given by the user, in gCO2e/kWh."""
    return checked_number(value, "carbon_intensity", unit="gCO2/kWh")
