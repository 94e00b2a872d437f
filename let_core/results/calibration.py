"""Calibrated truth: a host's estimates corrected by what its wall socket saw.

From the runs of one host measured both ways (an estimate, CodeCarbon by default, and a
whole-machine metered figure, a Tasmota socket by default) we fit

    wall_kWh ~ a * estimate_kWh + P_base * duration            ("scale+base")
    wall_kWh ~ a_cpu*cpu + a_gpu*gpu + a_ram*ram + P_base*dur  ("components+base", only when
                                                                cross-validation prefers it)

The base power is what an estimate never sees (PSU losses, fans, board, idle devices); the
published comparison of CodeCarbon with an external meter (arXiv 2509.22092) found the estimate
20-32% low and the error not a constant factor.

The noise model respects relative error and the meter's resolution: a reading's standard
deviation is ``sqrt((s * wall)^2 + tau^2)``, ``s`` the relative scatter (estimated robustly from
the residuals) and ``tau`` the rounding of the meter (0.01 Wh for Tasmota, 1 Wh for a panel
meter): a 1 Wh reading of a 2 Wh run is half noise and weighs accordingly. The fit is Huber
IRLS, robust to the odd reading that interpolated gaps or a rounding step produce.

Prediction intervals come from held-out (K-fold) residuals, scaled by the noise model and the
parameters' own uncertainty; a run outside the fitted range of power or duration gets an
interval widened by how far outside it lies, and is flagged so.

numpy only (imported by the functions that need it); calibrations are small versioned JSON
files under ``$LET_HOME/calibration``, never in a user's output_dir. Calibrating never changes
a stored row.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import urllib.parse
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import asdict, frozen

from let_core.atomicfile import read_regular, write_atomically
from let_core.display import counted, join_words
from let_core.errors import ConfigurationError, LetWarning
from let_core.results.rule import FULL_COVERAGE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Bumped whenever the file's meaning changes; a file of another version is never applied.
FORMAT = "let-calibration"
FORMAT_VERSION = 1
LEVEL = 0.90
#: Fewer paired runs than this cannot give a cross-validated error worth printing.
MIN_PAIRED_RUNS = 8
#: Runs needed per fitted term before the component model is even tried.
RUNS_PER_TERM = 8
#: The component model must beat the simple one's held-out error by this factor to be chosen.
COMPONENT_GAIN = 0.9
#: A power spread below this (p90/p10 - 1) cannot tell a scale from a base power apart.
MIN_POWER_SPREAD = 0.10
#: A metered figure this many times below the estimate is not this machine's wall.
WRONG_MACHINE_RATIO = 10.0
#: Meter resolution per reading (Wh) by metered backend; unknown meters are taken as a 1 Wh panel.
RESOLUTION_WH = {"tasmota": 0.01}
DEFAULT_RESOLUTION_WH = 1.0
#: Tasmota's power readings are poor below this mean wall power (W).
LOW_POWER_W = 60.0
#: What ``calibrate_frame`` needs to read.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "run_id", "hostname", "backend", "kind", "task", "run_status", "energy_consumed", "duration",
    "cpu_energy", "gpu_energy", "ram_energy", "cpu_model", "gpu_model", "coverage", "methodology",
    "start_time", "timestamp", "scope",
)
COMPONENTS = ("cpu", "gpu", "ram")
_HUBER_K = 1.345


class CalibrationRefused(ConfigurationError):
    """The data cannot support a calibration; the message says why and what to do."""


@frozen
class Calibration:
    """One host's fitted calibration, as stored (``to_json``/``from_json``)."""

    hostname: str
    estimate_backend: str
    metered_backend: str
    estimate_label: str            # "CodeCarbon": how the estimate reads in a sentence
    model: str                     # "scale+base" or "components+base"
    terms: tuple[str, ...]         # "estimate" | "cpu" | "gpu" | "ram", then "duration"
    coefficients: tuple[float, ...]  # per term: a unitless scale, the last kW of base power
    covariance: tuple[tuple[float, ...], ...]
    relative_noise: float
    resolution_kwh: float
    z_low: float                   # held-out normalised residual quantiles of the interval
    z_high: float
    level: float
    runs: int
    first_run: str
    last_run: str
    power_w: tuple[float, float]   # range of the estimate's mean power over the fitted runs
    duration_s: tuple[float, float]
    cv_error: float                # median |held-out error| / wall, of the chosen model
    raw_error: float               # same, for the raw estimate
    ratio_error: float             # same, for a plain ratio (the paired totals' ratio)
    interval_coverage: float       # share of held-out runs inside their own interval
    residuals: tuple[float, ...]   # held-out relative residuals (wall - predicted) / wall
    cpu_model: str
    gpu_model: str
    excluded: Mapping[str, int]
    let_version: str
    fitted_at: str

    # -------------------------------------------------------------- reading
    @property
    def scale(self) -> float:
        return self.coefficients[0] if self.model == "scale+base" else math.nan

    @property
    def base_power_w(self) -> float:
        return self.coefficients[-1] * 1000.0

    def intervals(self) -> dict[str, tuple[float, float]]:
        """Each coefficient's interval at ``level`` (base power in W)."""
        import statistics

        z = statistics.NormalDist().inv_cdf(0.5 + self.level / 2)
        out = {}
        for i, term in enumerate(self.terms):
            se = math.sqrt(max(self.covariance[i][i], 0.0))
            unit = 1000.0 if term == "duration" else 1.0
            out[term] = ((self.coefficients[i] - z * se) * unit, (self.coefficients[i] + z * se) * unit)
        return out

    def describe(self) -> str:
        """The model in words, with what it was fitted on."""
        base = f"plus {self.base_power_w:.0f} W it does not see"
        if self.model == "scale+base":
            seen = f"{self.scale:.2f} x {self.estimate_label}'s estimate"
        else:
            parts = [f"{c:.2f} x its {t.upper()} estimate" for t, c in zip(self.terms[:-1], self.coefficients[:-1])]
            seen = ", ".join(parts)
        runs = counted(self.runs, "run")
        return (f"on {self.hostname} the wall saw {seen} {base}; cross-validated error "
                f"{self.cv_error * 100:.1f}%, from {runs} (raw estimate {self.raw_error * 100:.1f}% off, "
                f"a plain ratio {self.ratio_error * 100:.1f}%)")

    def details(self) -> list[str]:
        lines = [self.describe()]
        intervals = self.intervals()
        for term, (low, high) in intervals.items():
            name = "base power (W)" if term == "duration" else f"scale of {term}"
            lines.append(f"  {name}: {low:.3g} .. {high:.3g} ({self.level:.0%} interval)")
        lines.append(f"  fitted on {self.runs} paired runs, {self.first_run} .. {self.last_run}; "
                     f"estimate power {self.power_w[0]:.0f}-{self.power_w[1]:.0f} W, "
                     f"duration {self.duration_s[0]:.0f}-{self.duration_s[1]:.0f} s")
        lines.append(f"  {self.level:.0%} prediction intervals held {self.interval_coverage:.0%} of held-out runs; "
                     f"meter resolution {self.resolution_kwh * 1000:g} Wh")
        hardware = " and ".join(x for x in (self.cpu_model, self.gpu_model) if x)
        if hardware:
            lines.append(f"  hardware: {hardware}")
        if self.excluded:
            lines.append("  left out: " + ", ".join(f"{n} {why}" for why, n in sorted(self.excluded.items())))
        return lines

    # -------------------------------------------------------------- predicting
    def predict(self, features: np.ndarray, power_w: np.ndarray, duration_s: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Calibrated kWh, low, high and "outside the fitted range" for rows of ``features``
        (one column per term, kWh and hours)."""
        import numpy as np

        beta = np.asarray(self.coefficients)
        cov = np.asarray(self.covariance)
        pred = features @ beta
        spread = _total_sd(features, pred, cov, self.relative_noise, self.resolution_kwh)
        widen = np.ones(len(pred))
        for values, (low, high) in ((power_w, self.power_w), (duration_s, self.duration_s)):
            with np.errstate(divide="ignore", invalid="ignore"):
                widen = np.fmax(widen, np.where(values > high, values / high, 1.0))
                widen = np.fmax(widen, np.where((values < low) & (values > 0), low / values, 1.0))
        outside = widen > 1.0
        low_kwh = np.maximum(pred + self.z_low * spread * widen, 0.0)
        high_kwh = pred + self.z_high * spread * widen
        return pred, low_kwh, high_kwh, outside

    # -------------------------------------------------------------- file
    def to_json(self) -> str:
        body = {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self, recurse=True)}
        return json.dumps(body, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        """Raises ValueError, naming what is wrong, for a damaged file or another format version."""
        body = json.loads(text)
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError("not a LET calibration file")
        if body.get("version") != FORMAT_VERSION:
            raise ValueError(f"written by LET {body.get('let_version', '?')} in calibration format "
                             f"{body.get('version')!r}; this LET reads format {FORMAT_VERSION}")
        fields = {k: v for k, v in body.items() if k not in ("format", "version")}
        for name in ("terms", "coefficients", "power_w", "duration_s", "residuals"):
            fields[name] = tuple(fields[name])
        fields["covariance"] = tuple(tuple(float(x) for x in row) for row in fields["covariance"])
        calibration = cls(**fields)
        p = len(calibration.terms)
        numbers = [*calibration.coefficients, *(x for row in calibration.covariance for x in row),
                   calibration.relative_noise, calibration.z_low, calibration.z_high, *calibration.power_w,
                   *calibration.duration_s]
        if (p < 2 or calibration.terms[-1] != "duration" or len(calibration.coefficients) != p
                or len(calibration.covariance) != p or any(len(r) != p for r in calibration.covariance)
                or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers)):
            raise ValueError("its model is incomplete or not finite")
        return calibration


# ------------------------------------------------------------------ numerics
def _total_sd(features: np.ndarray, pred: np.ndarray, cov: np.ndarray, relative: float,
              resolution_kwh: float) -> np.ndarray:
    """A prediction's standard deviation: the reading's noise and the parameters' uncertainty."""
    import numpy as np

    noise = (relative * np.maximum(pred, 0.0)) ** 2 + _rounding_sd(resolution_kwh) ** 2
    parameters = np.einsum("ij,jk,ik->i", features, cov, features)
    spread: np.ndarray = np.sqrt(noise + np.maximum(parameters, 0.0))
    return spread


def _rounding_sd(resolution_kwh: float) -> float:
    # A run's energy is the difference of two rounded counter readings: each off by up to half
    # a step, uniformly, so the difference has variance 2 * q^2 / 12.
    return resolution_kwh / math.sqrt(6.0)


@frozen
class _Fit:
    beta: Any
    covariance: Any
    relative_noise: float


def _irls(x: np.ndarray, y: np.ndarray, resolution_kwh: float, iterations: int = 200) -> _Fit:
    """Huber IRLS with weights from the noise model ``sqrt((s*wall)^2 + tau^2)``."""
    import numpy as np

    n, p = x.shape
    tau = _rounding_sd(resolution_kwh)
    scale = np.maximum(y, tau)
    beta = np.linalg.lstsq(x / scale[:, None], y / scale, rcond=None)[0]
    relative = 0.05
    for _ in range(iterations):
        pred = np.maximum(x @ beta, tau)
        rel = (y - pred) / pred
        relative = max(1.4826 * float(np.median(np.abs(rel - np.median(rel)))), 1e-6)
        sigma = np.sqrt((relative * pred) ** 2 + tau ** 2)
        u = (y - pred) / sigma
        w = np.minimum(1.0, _HUBER_K / np.maximum(np.abs(u), 1e-12)) / sigma ** 2
        xtw = x.T * w
        new = np.linalg.solve(xtw @ x, xtw @ y)
        if np.allclose(new, beta, rtol=1e-10, atol=1e-15):
            beta = new
            break
        beta = new
    pred = np.maximum(x @ beta, tau)
    sigma = np.sqrt((relative * pred) ** 2 + tau ** 2)
    u = (y - pred) / sigma
    psi = np.clip(u, -_HUBER_K, _HUBER_K)
    inside = max(float(np.mean(np.abs(u) <= _HUBER_K)), 1.0 / n)
    # Huber's asymptotic covariance: E[psi^2] / E[psi']^2 * (X' S^-1 X)^-1, with n/(n-p).
    factor = float(np.mean(psi ** 2)) / inside ** 2 * n / max(n - p, 1)
    covariance = factor * np.linalg.inv((x.T / sigma ** 2) @ x)
    return _Fit(beta, covariance, relative)


def _folds(n: int) -> np.ndarray:
    import numpy as np

    k = min(10, n)
    return np.random.default_rng(20250922).permutation(n) % k


def _cross_validate(x: np.ndarray, y: np.ndarray, resolution_kwh: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out predictions and their normalised residuals ((wall - pred) / sd)."""
    import numpy as np

    folds = _folds(len(y))
    pred = np.empty(len(y))
    z = np.empty(len(y))
    for fold in np.unique(folds):
        test = folds == fold
        fit = _irls(x[~test], y[~test], resolution_kwh)
        pred[test] = x[test] @ fit.beta
        sd = _total_sd(x[test], pred[test], fit.covariance, fit.relative_noise, resolution_kwh)
        z[test] = (y[test] - pred[test]) / sd
    return pred, z


def _conformal(z: np.ndarray, level: float) -> tuple[float, float]:
    """Quantiles of held-out residuals with the finite-sample correction of split conformal."""
    import numpy as np

    ordered = np.sort(z)
    n = len(ordered)
    tail = (1 - level) / 2
    low = max(int(math.floor(tail * (n + 1))) - 1, 0)
    high = min(int(math.ceil((1 - tail) * (n + 1))) - 1, n - 1)
    return float(ordered[low]), float(ordered[high])


def _clearly_better(y: np.ndarray, candidate: np.ndarray, incumbent: np.ndarray) -> bool:
    """Whether ``candidate``'s held-out errors are smaller run by run, beyond chance (a paired
    comparison at two standard errors): a model with more terms must earn them."""
    import numpy as np

    gain = np.abs(y - incumbent) / y - np.abs(y - candidate) / y
    return float(gain.mean()) > 2 * float(gain.std(ddof=1)) / math.sqrt(len(gain))


def _median_error(y: np.ndarray, pred: np.ndarray) -> float:
    import numpy as np

    return float(np.median(np.abs(y - pred) / y))


# ------------------------------------------------------------------ pairing
@frozen
class Paired:
    """The runs of one host measured both ways, and why others were left out."""

    hostname: str
    frame: Any  # pd.DataFrame: run_id, wall, estimate, cpu, gpu, ram, duration_s, start
    excluded: Mapping[str, int]
    estimate_label: str
    cpu_model: str
    gpu_model: str


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd

    if column not in frame:
        return pd.Series("", index=frame.index, dtype=object)
    return frame[column].fillna("").astype(str)


def _number(frame: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd

    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def _label(methodologies: pd.Series, backend: str) -> str:
    values = [v for v in methodologies if v]
    if not values:
        return backend
    top = max(sorted(set(values)), key=values.count)
    return re.sub(r"\s+v?\d[\w.]*$", "", top) or top


def _most_common(values: pd.Series) -> str:
    present = [v for v in values if v and v.lower() not in ("nan", "none")]
    return max(sorted(set(present)), key=present.count) if present else ""


def paired_runs(frame: pd.DataFrame, hostname: str, estimate_backend: str = "codecarbon",
                metered_backend: str = "tasmota") -> Paired:
    """The host's runs with a usable estimate and a fully covered metered figure (failed runs
    and task rows left out), one row per run, and counts of what was left out and why."""
    import numpy as np
    import pandas as pd

    host = frame[_text(frame, "hostname") == hostname]
    ok = (_text(host, "run_status") != "failed") & (_text(host, "task") == "")
    energy = _number(host, "energy_consumed")
    usable = energy.notna() & np.isfinite(energy) & (energy >= 0)
    backend, kind = _text(host, "backend"), _text(host, "kind")
    est_rows = host[(backend == estimate_backend) & (kind == "estimate")]
    met_rows = host[(backend == metered_backend) & (kind == "metered")]
    excluded: dict[str, int] = {}

    def leave(why: str, count: int) -> None:
        if count:
            excluded[why] = excluded.get(why, 0) + count

    both = set(_text(est_rows, "run_id")) & set(_text(met_rows, "run_id")) - {""}
    in_both = _text(host, "run_id").isin(both)
    leave("failed runs", int(_text(host[in_both & (backend == metered_backend)], "run_status").eq("failed").sum()))
    keep = ok & usable & in_both
    est = host[keep & (backend == estimate_backend) & (kind == "estimate")].drop_duplicates("run_id", keep="last")
    met = host[keep & (backend == metered_backend) & (kind == "metered")].drop_duplicates("run_id", keep="last")
    coverage = _number(met, "coverage")
    full = coverage >= FULL_COVERAGE
    leave("metered runs below full coverage or without a recorded coverage", int((~full).sum()))
    met = met[full]
    joined = pd.DataFrame({
        "run_id": _text(est, "run_id").to_numpy(),
        "estimate": _number(est, "energy_consumed").to_numpy(),
        "cpu": _number(est, "cpu_energy").to_numpy(),
        "gpu": _number(est, "gpu_energy").to_numpy(),
        "ram": _number(est, "ram_energy").to_numpy(),
        "duration_s": _number(est, "duration").to_numpy(),
        "start": _text(est, "start_time").to_numpy(),
    }).merge(pd.DataFrame({"run_id": _text(met, "run_id").to_numpy(),
                           "wall": _number(met, "energy_consumed").to_numpy()}), on="run_id")
    timed = (joined["duration_s"] > 0) & (joined["estimate"] > 0) & (joined["wall"] > 0)
    leave("runs without a positive duration or energy", int((~timed).sum()))
    joined = joined[timed].reset_index(drop=True)
    return Paired(hostname, joined, excluded, _label(_text(est, "methodology"), estimate_backend),
                  _most_common(_text(est, "cpu_model")), _most_common(_text(est, "gpu_model")))


# ------------------------------------------------------------------ fitting
def _design(frame: pd.DataFrame, terms: Sequence[str]) -> np.ndarray:
    import numpy as np

    columns = [frame["duration_s"].to_numpy(float) / 3600.0 if t == "duration" else frame[t].to_numpy(float)
               for t in terms]
    return np.column_stack(columns)


def fit(paired: Paired, estimate_backend: str = "codecarbon", metered_backend: str = "tasmota",
        resolution_wh: float | None = None, level: float = LEVEL) -> Calibration:
    """Fit a host's calibration, or raise ``CalibrationRefused`` saying why the data cannot support one."""
    import numpy as np

    from let_core._version import __version__

    host, data = paired.hostname, paired.frame
    if resolution_wh is None:
        resolution_wh = RESOLUTION_WH.get(metered_backend, DEFAULT_RESOLUTION_WH)
    resolution_kwh = resolution_wh / 1000.0
    left = "; left out: " + ", ".join(f"{n} {w}" for w, n in sorted(paired.excluded.items())) if paired.excluded else ""
    n = len(data)
    gaps = sum(count for why, count in paired.excluded.items() if "coverage" in why)
    if n < MIN_PAIRED_RUNS and gaps and n + gaps >= MIN_PAIRED_RUNS:
        raise CalibrationRefused(
            f"cannot calibrate {host}: {gaps} of its runs measured both ways have gaps in their "
            f"{metered_backend} figures (coverage below {FULL_COVERAGE:.0%}, the rest interpolated), "
            f"leaving {n} fully metered; at least {MIN_PAIRED_RUNS} are needed. Interpolated energy is "
            "no truth to calibrate against: check the socket's connection to the server (`lett gt hosts`) "
            "and track more runs.")
    if n < MIN_PAIRED_RUNS:
        raise CalibrationRefused(
            f"cannot calibrate {host}: {n} run(s) measured both ways by {estimate_backend} and "
            f"{metered_backend} with full coverage, at least {MIN_PAIRED_RUNS} are needed{left}. "
            f"Track more runs with both backends (--backend {estimate_backend} --backend {metered_backend}).")
    ratio = data["wall"].to_numpy() / data["estimate"].to_numpy()
    if float(np.median(ratio)) < 1 / WRONG_MACHINE_RATIO:
        raise CalibrationRefused(
            f"cannot calibrate {host}: its {metered_backend} figures are {1 / float(np.median(ratio)):.0f}x "
            f"below the {estimate_backend} estimates in the median; a wall socket sees at least what the "
            "machine's parts draw, so the socket is probably metering another machine. Check which "
            "device the socket powers (`lett gt` / the socket's settings).")
    wrong = ratio < 1 / WRONG_MACHINE_RATIO
    excluded = dict(paired.excluded)
    if wrong.any():
        excluded[f"runs metered over {WRONG_MACHINE_RATIO:.0f}x below their estimate"] = int(wrong.sum())
        data = data[~wrong].reset_index(drop=True)
        n = len(data)
        if n < MIN_PAIRED_RUNS:
            raise CalibrationRefused(f"cannot calibrate {host}: only {n} plausible paired runs remain "
                                     f"(at least {MIN_PAIRED_RUNS} needed)")
    power = data["estimate"].to_numpy() * 3.6e6 / data["duration_s"].to_numpy()
    p10, p90 = np.percentile(power, [10, 90])
    if p90 / p10 - 1 < MIN_POWER_SPREAD:
        raise CalibrationRefused(
            f"cannot calibrate {host}: its {n} paired runs all drew about {np.median(power):.0f} W "
            f"(10th-90th percentile {p10:.0f}-{p90:.0f} W), so a scale and a base power cannot be told "
            "apart. Add paired runs at other loads (idle, CPU-only, full GPU) and fit again.")
    y = data["wall"].to_numpy(float)
    candidates: list[tuple[str, tuple[str, ...]]] = [("scale+base", ("estimate", "duration"))]
    components = [c for c in COMPONENTS if data[c].notna().all() and float(data[c].std()) > 0
                  and float(data[c].max()) > 0]
    if len(components) >= 2 and n >= RUNS_PER_TERM * (len(components) + 1):
        candidates.append(("components+base", (*components, "duration")))
    scored = []
    for name, terms in candidates:
        x = _design(data, terms)
        if np.linalg.matrix_rank(x / np.abs(x).max(axis=0)) < x.shape[1]:
            continue
        pred, z = _cross_validate(x, y, resolution_kwh)
        scored.append((name, terms, x, pred, z, _median_error(y, pred)))
    name, terms, x, pred, z, cv_error = scored[0]
    if len(scored) > 1 and _clearly_better(y, scored[1][3], pred) and scored[1][5] < COMPONENT_GAIN * cv_error:
        name, terms, x, pred, z, cv_error = scored[1]
    result = _irls(x, y, resolution_kwh)
    if result.beta[0] <= 0 if name == "scale+base" else (result.beta[:-1] <= 0).any():
        raise CalibrationRefused(f"cannot calibrate {host}: the fitted scale is not positive "
                                 f"({', '.join(f'{b:.3g}' for b in result.beta[:-1])}); the paired "
                                 "figures do not follow the estimate. Check that both backends measured the same runs.")
    z_low, z_high = _conformal(z, level)
    covered = float(np.mean((z >= z_low) & (z <= z_high)))
    estimate = data["estimate"].to_numpy(float)
    ratio_pred = np.empty(n)
    for fold in np.unique(folds := _folds(n)):
        test = folds == fold
        ratio_pred[test] = estimate[test] * y[~test].sum() / estimate[~test].sum()
    starts = sorted(s for s in data["start"] if s)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return Calibration(
        hostname=host, estimate_backend=estimate_backend, metered_backend=metered_backend,
        estimate_label=paired.estimate_label, model=name, terms=tuple(terms),
        coefficients=tuple(float(b) for b in result.beta),
        covariance=tuple(tuple(float(v) for v in row) for row in result.covariance),
        relative_noise=result.relative_noise, resolution_kwh=resolution_kwh, z_low=z_low, z_high=z_high,
        level=level, runs=n, first_run=starts[0] if starts else "", last_run=starts[-1] if starts else "",
        power_w=(float(power.min()), float(power.max())),
        duration_s=(float(data["duration_s"].min()), float(data["duration_s"].max())),
        cv_error=cv_error, raw_error=_median_error(y, estimate), ratio_error=_median_error(y, ratio_pred),
        interval_coverage=covered, residuals=tuple(float(r) for r in (y - pred) / y),
        cpu_model=paired.cpu_model, gpu_model=paired.gpu_model, excluded=excluded,
        let_version=__version__, fitted_at=now)


# ------------------------------------------------------------------ files
def calibration_dir() -> Path:
    from let_core.config import let_home

    return let_home() / "calibration"


def calibration_path(hostname: str) -> Path:
    return calibration_dir() / (urllib.parse.quote(hostname, safe="") + ".json")


def save(calibration: Calibration) -> Path:
    """Write atomically (a reader never sees half a file)."""
    path = calibration_path(calibration.hostname)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, calibration.to_json().encode("utf-8"))
    return path


def load_calibrations(warn: bool = True) -> dict[str, Calibration]:
    """Every valid calibration by host; a damaged file or another version's is skipped with a warning."""
    directory = calibration_dir()
    found: dict[str, Calibration] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json")):
        if path.name.startswith(".tmp-"):
            continue
        try:
            calibration = Calibration.from_json(read_regular(path).decode("utf-8"))
        except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
            if warn:
                warnings.warn(f"calibration file {path} is ignored, never applied: {exc}. Fit it again "
                              "(`lett calibration fit`) or remove it (`lett calibration remove`).",
                              LetWarning, stacklevel=2)
            continue
        found[calibration.hostname] = calibration
    return found


def remove(hostname: str) -> bool:
    path = calibration_path(hostname)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


# ------------------------------------------------------------------ applying
CALIBRATED_COLUMNS = ("calibrated_kwh", "calibrated_low_kwh", "calibrated_high_kwh", "calibrated_by",
                      "calibrated_outside_range")


def hardware_key(cpu_model: str, gpu_model: str) -> str:
    return f"{cpu_model.strip()}|{gpu_model.strip()}" if cpu_model.strip() else ""


def calibrate_frame(frame: pd.DataFrame, calibrations: Mapping[str, Calibration] | None = None,
                    transfer: bool = False) -> pd.DataFrame:
    """``frame`` with CALIBRATED_COLUMNS: for each estimate row on a calibrated host (or, with
    ``transfer``, on a host whose CPU and GPU models are those of exactly one calibrated host) the
    corrected kWh and its interval; blank elsewhere. The frame given is not changed."""
    import numpy as np
    import pandas as pd

    if calibrations is None:
        calibrations = load_calibrations()
    n = len(frame)
    values = {c: np.full(n, np.nan) for c in CALIBRATED_COLUMNS[:3]}
    by = np.full(n, "", dtype=object)
    outside = np.zeros(n, dtype=bool)
    if n and calibrations:
        hosts, backends, kinds = _text(frame, "hostname"), _text(frame, "backend"), _text(frame, "kind")
        borrowed: dict[str, Calibration] = {}
        if transfer:
            by_hardware: dict[str, list[Calibration]] = {}
            for c in calibrations.values():
                by_hardware.setdefault(hardware_key(c.cpu_model, c.gpu_model), []).append(c)
            keys = (_text(frame, "cpu_model").map(str.strip) + "|" + _text(frame, "gpu_model").map(str.strip))
            for host in set(hosts) - set(calibrations):
                host_keys = set(keys[hosts == host])
                matches = by_hardware.get(next(iter(host_keys)), []) if len(host_keys) == 1 else []
                if len(matches) == 1 and not next(iter(host_keys)).startswith("|"):
                    borrowed[host] = matches[0]
        for host, calibration in [*calibrations.items(), *borrowed.items()]:
            rows = ((hosts == host) & (backends == calibration.estimate_backend) & (kinds == "estimate")).to_numpy()
            if not rows.any():
                continue
            part = frame[rows]
            duration = _number(part, "duration").to_numpy(float)
            energy = _number(part, "energy_consumed").to_numpy(float)
            columns = {"estimate": energy, "duration": duration / 3600.0,
                       **{c: _number(part, f"{c}_energy").to_numpy(float) for c in COMPONENTS}}
            features = np.column_stack([columns[t] for t in calibration.terms])
            good = np.isfinite(features).all(axis=1) & (duration > 0) & (energy >= 0)
            if not good.any():
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                power = energy * 3.6e6 / duration
            pred, low, high, out = calibration.predict(features[good], power[good], duration[good])
            index = np.flatnonzero(rows)[good]
            values["calibrated_kwh"][index] = pred
            values["calibrated_low_kwh"][index] = low
            values["calibrated_high_kwh"][index] = high
            by[index] = calibration.hostname
            outside[index] = out
    return frame.assign(**values, calibrated_by=pd.Series(by, index=frame.index),
                        calibrated_outside_range=pd.Series(outside, index=frame.index))


def low_power(energy_kwh: float, duration_s: float) -> bool:
    """A wall reading whose mean power was below what a Tasmota socket reads well."""
    return duration_s > 0 and energy_kwh * 3.6e6 / duration_s < LOW_POWER_W


def calibrated_cells(frame: pd.DataFrame) -> list[str]:
    """``lett results --calibrated``'s column: "1.234 kWh (1.1-1.3)", "*" outside the fitted range."""
    from let_core.units import format_energy

    cells = []
    for kwh, low, high, by, outside, host in zip(frame["calibrated_kwh"], frame["calibrated_low_kwh"],
                                                 frame["calibrated_high_kwh"], frame["calibrated_by"],
                                                 frame["calibrated_outside_range"], _text(frame, "hostname")):
        if not math.isfinite(kwh):
            cells.append("-")
            continue
        cell = f"{format_energy(kwh)} ({format_energy(low)} .. {format_energy(high)})"
        cells.append(cell + (" outside fitted range" if outside else "") + (f" by {by}'s calibration" if by != host else ""))
    return cells


def has_calibrations() -> bool:
    """Cheap: whether any calibration file exists (the statement then reads the rows)."""
    return any(directory.is_dir() and any(p.suffix == ".json" and not p.name.startswith(".tmp-")
                                          for p in directory.iterdir())
               for directory in (calibration_dir(), calibration_dir() / "sockets"))


def corrected_rows(calibrated: pd.DataFrame) -> pd.DataFrame:
    """The rows a calibration corrects in the figures LET states: the counted estimate rows of
    runs measured by estimate only, where ``calibrate_frame`` (whose frame this is) found a
    calibration. The statement and the dashboard's calibrated share read these."""
    import numpy as np

    from let_core.results.counting import counted_rows

    if calibrated.empty or "calibrated_kwh" not in calibrated:
        return calibrated.iloc[0:0]
    counted = counted_rows(calibrated)
    kinds = _text(calibrated, "kind").to_numpy()
    runs = _text(calibrated, "run_id")
    # A hashed lookup: np.isin on text falls back to comparing every pair (50 s at 100k runs).
    metered = runs.isin(set(runs[counted & (kinds == "metered")])).to_numpy()
    value = calibrated["calibrated_kwh"].to_numpy(float)
    rows = counted & (kinds == "estimate") & np.isfinite(value) & ~metered
    return calibrated[rows]


def statement_sentence(frame: pd.DataFrame, calibrations: Mapping[str, Calibration] | None = None,
                       transfer: bool = False) -> str | None:
    """The statement's sentence on runs measured by estimate only on calibrated hosts: their
    estimate, the corrected figure and its interval, and the calibration named; None where no
    such run exists. ``frame`` is ``load_results``'s (deduplicated) rows."""

    from let_core.units import format_energy

    if calibrations is None:
        calibrations = load_calibrations()
    if frame.empty or not calibrations:
        return None
    part = corrected_rows(calibrate_frame(frame, calibrations, transfer))
    if part.empty:
        return None
    estimate = float(_number(part, "energy_consumed").sum())
    total, low, high = (float(part[c].sum()) for c in CALIBRATED_COLUMNS[:3])
    count = len(set(part["run_id"].astype(str)))
    hosts = sorted(set(_text(part, "hostname")))
    used = sorted(set(part["calibrated_by"].astype(str)))
    models = [calibrations[h] for h in used]
    level = min(c.level for c in models)
    paired = " and ".join(f"{c.runs:,}" for c in models)
    errors = " and ".join(f"{c.cv_error * 100:.1f}%" for c in models)
    whose = "this host" if len(hosts) == 1 and hosts == used else (
        f"host {used[0]}" if len(used) == 1 else "these hosts")
    runs_phrase = "the run" if count == 1 else f"the {counted(count, 'run')}"
    text = (f"For {runs_phrase} on {join_words(hosts)} measured by estimate only, the estimate of "
            f"{format_energy(estimate)} corrected by a wall-socket calibration of {whose} from {paired} paired runs "
            f"(cross-validated error {errors}) is {format_energy(total)} ({level:.0%} interval "
            f"{format_energy(low)} to {format_energy(high)})~\\cite{{ai_energy_validation}}.")
    lent = sorted({(h, b) for h, b in zip(_text(part, "hostname"), part["calibrated_by"].astype(str)) if h != b})
    if lent:
        text += " " + "; ".join(f"{h} has no calibration of its own and borrowed that of {b}, whose CPU and "
                                 "GPU models are identical" for h, b in lent) + "."
    outside = int(part.loc[part["calibrated_outside_range"], "run_id"].astype(str).nunique())
    if outside:
        text += (f" {'1 of these runs lies' if outside == 1 else f'{outside:,} of these runs lie'} outside the "
                 "power or duration range the calibration was fitted on; their intervals are widened.")
    return text


def view_data(frame: pd.DataFrame, calibration: Calibration, points: int = 60) -> dict[str, Any]:
    """What the calibration view draws (``lett ui``, ``lett plot --calibration``), as mean powers (W):
    the paired runs (estimate against wall), the fitted line and its band for a run of the
    fitted runs' median duration and component shares, and the estimate-only runs it corrected."""
    import numpy as np

    paired = paired_runs(frame, calibration.hostname, calibration.estimate_backend,
                         calibration.metered_backend).frame
    hours = paired["duration_s"].to_numpy(float) / 3600.0
    duration = float(np.median(paired["duration_s"])) if len(paired) else math.sqrt(
        calibration.duration_s[0] * calibration.duration_s[1])
    shares = {c: float(np.nanmedian(paired[c] / paired["estimate"])) if len(paired) else math.nan for c in COMPONENTS}
    corrected = calibrate_frame(frame[_text(frame, "hostname") == calibration.hostname],
                                {calibration.hostname: calibration})
    metered_runs = set(_text(corrected[_text(corrected, "kind") == "metered"], "run_id"))
    alone = corrected[corrected["calibrated_kwh"].notna() & ~_text(corrected, "run_id").isin(metered_runs)
                      & (_text(corrected, "task") == "")]
    alone_hours = _number(alone, "duration").to_numpy(float) / 3600.0
    alone_w = _number(alone, "energy_consumed").to_numpy(float) * 1000.0 / alone_hours
    # The band spans the fitted range and every corrected run, so a widened interval is seen widening.
    low_w = min(calibration.power_w[0], *alone_w) if len(alone_w) else calibration.power_w[0]
    high_w = max(calibration.power_w[1], *alone_w) if len(alone_w) else calibration.power_w[1]
    grid = np.linspace(low_w * 0.9, high_w * 1.1, points)
    hours_grid = np.full(points, duration / 3600.0)
    energy = grid * hours_grid / 1000.0
    columns = {"estimate": energy, "duration": hours_grid, **{c: energy * shares[c] for c in COMPONENTS}}
    line, low, high, _ = calibration.predict(np.column_stack([columns[t] for t in calibration.terms]), grid,
                                             np.full(points, duration))

    def watts(kwh: Any, h: Any) -> list[float]:
        return [round(float(v), 3) for v in np.asarray(kwh, float) * 1000.0 / h]

    return {
        "host": calibration.hostname, "description": calibration.describe(), "details": calibration.details(),
        "model": calibration.model, "level": calibration.level, "cv_error": calibration.cv_error,
        "interval_coverage": calibration.interval_coverage, "runs": calibration.runs,
        "band_duration_s": duration,
        "paired": {"estimate_w": watts(paired["estimate"], hours), "wall_w": watts(paired["wall"], hours)},
        "line": {"estimate_w": [round(float(v), 3) for v in grid], "wall_w": watts(line, hours_grid),
                 "low_w": watts(low, hours_grid), "high_w": watts(high, hours_grid)},
        "corrected": {"estimate_w": watts(_number(alone, "energy_consumed"), alone_hours),
                      "calibrated_w": watts(alone["calibrated_kwh"], alone_hours),
                      "low_w": watts(alone["calibrated_low_kwh"], alone_hours),
                      "high_w": watts(alone["calibrated_high_kwh"], alone_hours),
                      "outside_range": [bool(v) for v in alone["calibrated_outside_range"]],
                      "run_id": [str(v) for v in alone["run_id"]]},
    }


def calibration_views(load: Callable[[], pd.DataFrame], hostname: str | None = None) -> dict[str, Any]:
    """``view_data`` of every stored calibration (or one host's), and the files that were ignored.
    ``load`` gives the rows (``load_results``'s); it is called only when a calibration exists."""
    with warnings.catch_warnings(record=True) as ignored:
        warnings.simplefilter("always", LetWarning)
        found = load_calibrations()
    found = {h: c for h, c in found.items() if hostname is None or h == hostname}
    if not found:
        return {"hosts": [], "ignored": [str(w.message) for w in ignored], "directory": str(calibration_dir())}
    frame = load()
    return {"hosts": [view_data(frame, c) for _, c in sorted(found.items())],
            "ignored": [str(w.message) for w in ignored], "directory": str(calibration_dir())}


# ------------------------------------------------------------------ metered figures' own uncertainty
SOCKET_CHECK_FORMAT = "let-socket-check"
#: Tasmota reports power in whole watts: a check reads its load to half a watt.
CHECK_READING_W = 0.5


def socket_check_path(host: str) -> Path:
    return calibration_dir() / "sockets" / (urllib.parse.quote(host, safe="") + ".json")


def save_socket_check(host: str, expected_w: float, measured_w: float) -> Path:
    """Keep the verdict of ``lett gt calibrate --watts`` for a socket: its relative error at a known load."""
    from let_core._version import __version__

    path = socket_check_path(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": SOCKET_CHECK_FORMAT, "version": FORMAT_VERSION, "host": host, "expected_w": expected_w,
            "measured_w": measured_w, "let_version": __version__,
            "checked_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_atomically(path, json.dumps(body).encode("utf-8"))
    return path


def socket_error(host: str) -> float | None:
    """A socket's relative error bound from its stored check (offset found plus the check's own
    reading resolution); None where no valid check exists (then no interval is printed)."""
    try:
        body = json.loads(read_regular(socket_check_path(host)))
        if body.get("format") != SOCKET_CHECK_FORMAT or body.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {body.get('format')!r} version {body.get('version')!r}")
        expected, measured = float(body["expected_w"]), float(body["measured_w"])
        if not (expected > 0 and math.isfinite(measured)):
            raise ValueError("no positive expected power")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        warnings.warn(f"socket check {socket_check_path(host)} is ignored: {exc}; run `lett gt calibrate` again",
                      LetWarning, stacklevel=2)
        return None
    return abs(measured - expected) / expected + CHECK_READING_W / expected


def metered_sentence(frame: pd.DataFrame) -> str | None:
    """The statement's interval for counted wall-socket figures, only where every one of them has
    a socket check (``lett gt calibrate --watts``): the check's error, plus each run's counter
    resolution; the interpolated share is said, not guessed into the interval."""
    import numpy as np

    from let_core.results.counting import counted_rows
    from let_core.units import format_energy

    if frame.empty:
        return None
    counted = counted_rows(frame) & (_text(frame, "kind") == "metered").to_numpy() & (
        _text(frame, "backend") == "tasmota").to_numpy()
    if not counted.any():
        return None
    part = frame[counted]
    sockets = [s or h for s, h in zip(_text(part, "hardware"), _text(part, "hostname"))]
    errors = {s: socket_error(s) for s in set(sockets)}
    if any(e is None for e in errors.values()):
        return None  # an interval is printed only where it is known
    energy = _number(part, "energy_consumed").to_numpy(float)
    resolution = RESOLUTION_WH["tasmota"] / 1000.0
    spread = float(sum(e * errors[s] for e, s in zip(energy, sockets))) + resolution * len(energy)
    total = float(energy.sum())
    duration = _number(part, "duration").to_numpy(float)
    gaps = _number(part, "gap_seconds").fillna(0).to_numpy(float)
    share = float(np.nansum(gaps) / np.nansum(duration)) if np.nansum(duration) > 0 else 0.0
    names = sorted(set(sockets))
    text = (f"The socket{'s' if len(names) > 1 else ''} of {join_words(names)} "
            f"{'were' if len(names) > 1 else 'was'} checked against a known load (`lett gt calibrate`): the measured "
            f"{format_energy(total)} lies within {format_energy(max(total - spread, 0.0))} to "
            f"{format_energy(total + spread)} by that check and the counter's {RESOLUTION_WH['tasmota']:g} Wh resolution")
    if share > 0:
        text += f"; {share * 100:.1f}% of the metered time was interpolated and is not part of that interval"
    return text + "."
