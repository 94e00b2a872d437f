"""Writes the CodeCarbon corpus beside this script: ``python tests/data/codecarbon/make_corpus.py``.

Each file uses a column set CodeCarbon really wrote (headers taken from mlco2/codecarbon:
``codecarbon/output.py`` before 1.0, ``examples/emissions.csv`` of July 2021,
``tests/test_data/emissions_valid_headers.csv`` of 2.1.3, and ``EmissionsData`` of the installed
3.3.2), with small made-up values whose totals are easy to check. ``EXPECTED`` in
tests/test_codecarbon_corpus.py holds what each file must load and count as.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

HERE = Path(__file__).parent

# CodeCarbon before 1.0 (codecarbon/output.py): experiment_id is a uuid, no run_id.
CC0 = ("timestamp,experiment_id,project_name,duration,emissions,energy_consumed,country_name,"
       "country_iso_code,region,on_cloud,cloud_provider,cloud_region")
# CodeCarbon 1.x (examples/emissions.csv, July 2021): neither run_id nor experiment_id.
CC1 = ("timestamp,project_name,duration,emissions,cpu_power,gpu_power,ram_power,cpu_energy,"
       "gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,region,on_cloud,"
       "cloud_provider,cloud_region")
# CodeCarbon 2.1.3 (tests/test_data/emissions_valid_headers.csv): run_id, no experiment_id.
CC2 = ("timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,"
       "ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,"
       "region,cloud_provider,cloud_region,os,python_version,codecarbon_version,cpu_count,"
       "cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,tracking_mode,on_cloud,pue")
# CodeCarbon 3.3.2 (EmissionsData): experiment_id, water, utilisation columns.
CC3 = ("timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,"
       "gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,water_consumed,"
       "country_name,country_iso_code,region,cloud_provider,cloud_region,os,python_version,"
       "codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,"
       "ram_total_size,tracking_mode,cpu_utilization_percent,gpu_utilization_percent,"
       "ram_utilization_percent,ram_used_gb,on_cloud,pue,wue")

INTEL = "Intel(R) Xeon(R) Gold 6226R CPU @ 2.90GHz"


def _row(header: str, **values: object) -> dict[str, object]:
    """A row of the header's columns: the given values, CodeCarbon-like defaults elsewhere."""
    defaults: dict[str, object] = {
        "project_name": "codecarbon", "country_name": "Germany", "country_iso_code": "DEU",
        "region": "", "on_cloud": "N", "cloud_provider": "", "cloud_region": "",
        "cpu_power": 42.5, "gpu_power": 0.0, "ram_power": 10.0, "os": "Linux-6.1-x86_64",
        "python_version": "3.11.7", "cpu_count": 16, "cpu_model": INTEL, "gpu_count": "",
        "gpu_model": "", "longitude": "", "latitude": "", "ram_total_size": 32.0,
        "tracking_mode": "machine", "pue": 1.0, "wue": 0.0, "water_consumed": 0.0,
        "cpu_utilization_percent": 55.0, "gpu_utilization_percent": 0.0,
        "ram_utilization_percent": 20.0, "ram_used_gb": 6.4,
    }
    energy = values.get("energy_consumed")
    if isinstance(energy, float):
        # 380 gCO2/kWh, 80 % CPU / 20 % RAM, as CodeCarbon would have split it
        defaults.update(emissions=round(energy * 0.38, 9), cpu_energy=round(energy * 0.8, 9),
                        ram_energy=round(energy * 0.2, 9), gpu_energy=0.0)
        if isinstance(values.get("duration"), float):
            defaults["emissions_rate"] = round(energy * 0.38 / float(values["duration"]), 12)
    columns = header.split(",")
    merged = {**defaults, **values}
    return {c: merged.get(c, "") for c in columns}


def _write(name: str, header: str, rows: list[dict[str, object]], *, bom: bool = False,
           final_newline: bool = True, columns: list[str] | None = None, crlf: bool = False) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or header.split(","),
                            lineterminator="\r\n" if crlf else "\n")
    writer.writeheader()
    writer.writerows(rows)
    text = out.getvalue()
    if not final_newline:
        text = text.rstrip("\r\n")
    (HERE / name).write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def main() -> None:
    _write("cc0_experiment_uuid.csv", CC0, [
        _row(CC0, timestamp="2020-03-23T09:26:11", experiment_id="68f53844-f3af-48fb-971a-ffab844a6b6f",
             project_name="project_gamma", duration=34.0, emissions=0.038, energy_consumed=0.1),
        _row(CC0, timestamp="2020-03-24T15:26:11", experiment_id="9288b395-c196-45c3-9c5e-05a8c127f753",
             project_name="project_delta", duration=16.0, emissions=0.076, energy_consumed=0.2),
    ])
    _write("cc1_no_run_id.csv", CC1, [
        _row(CC1, timestamp="2021-07-14T10:59:36", project_name="codecarbon", duration=3565.5,
             energy_consumed=0.035),
        _row(CC1, timestamp="2021-07-15T08:00:00", project_name="codecarbon", duration=1200.0,
             energy_consumed=0.015),
        _row(CC1, timestamp="2021-07-16T08:00:00", project_name="bert", duration=600.0,
             energy_consumed=0.05),
    ])
    _write("cc2.csv", CC2, [
        _row(CC2, timestamp="2022-05-02T10:00:00", run_id="0a578547-1d6b-4e2f-be0c-7ad10f2f7c97",
             duration=161.2, energy_consumed=0.25, codecarbon_version="2.1.3"),
        _row(CC2, timestamp="2022-05-02T11:00:00", run_id="1b578547-1d6b-4e2f-be0c-7ad10f2f7c97",
             duration=300.0, energy_consumed=0.5, codecarbon_version="2.1.3", gpu_count=1,
             gpu_model="1 x NVIDIA GeForce RTX 3090", gpu_power=250.0),
    ])
    run = "c0ffee00-0000-4000-8000-000000000001"
    _write("cc2_checkpoints.csv", CC2, [
        # api_call_interval checkpoints: cumulative rows of one run, the last one is the run
        _row(CC2, timestamp="2022-06-01T10:01:00", run_id=run, duration=60.0, energy_consumed=0.001,
             codecarbon_version="2.2.1"),
        _row(CC2, timestamp="2022-06-01T10:02:00", run_id=run, duration=120.0, energy_consumed=0.002,
             codecarbon_version="2.2.1"),
        _row(CC2, timestamp="2022-06-01T10:03:00", run_id=run, duration=180.0, energy_consumed=0.003,
             codecarbon_version="2.2.1"),
        _row(CC2, timestamp="2022-06-01T10:04:00", run_id=run, duration=240.0, energy_consumed=0.004,
             codecarbon_version="2.2.1"),
        _row(CC2, timestamp="2022-06-01T12:00:00", run_id="c0ffee00-0000-4000-8000-000000000002",
             duration=100.0, energy_consumed=0.01, codecarbon_version="2.2.1"),
    ])
    _write("cc2_empty_energy.csv", CC2, [
        _row(CC2, timestamp="2022-07-01T10:00:00", run_id="e0000000-0000-4000-8000-000000000001",
             duration=50.0, energy_consumed=0.02, codecarbon_version="2.3.4"),
        {**_row(CC2, timestamp="2022-07-01T11:00:00", run_id="e0000000-0000-4000-8000-000000000002",
                duration=70.0, energy_consumed=0.03, codecarbon_version="2.3.4"),
         "energy_consumed": "", "emissions": ""},
        _row(CC2, timestamp="2022-07-01T12:00:00", run_id="e0000000-0000-4000-8000-000000000003",
             duration=90.0, energy_consumed=0.04, codecarbon_version="2.3.4"),
    ])
    _write("cc2_no_final_newline.csv", CC2, [
        _row(CC2, timestamp="2022-08-01T10:00:00", run_id="f0000000-0000-4000-8000-000000000001",
             duration=50.0, energy_consumed=0.06, codecarbon_version="2.3.4"),
        _row(CC2, timestamp="2022-08-01T11:00:00", run_id="f0000000-0000-4000-8000-000000000002",
             duration=70.0, energy_consumed=0.07, codecarbon_version="2.3.4"),
    ], final_newline=False)
    # CodeCarbon on Windows: Python's csv module ends lines with \r\n
    _write("cc2_windows_crlf.csv", CC2, [
        _row(CC2, timestamp="2023-01-10T09:00:00", run_id="a0000000-0000-4000-8000-000000000001",
             duration=400.0, energy_consumed=0.08, codecarbon_version="2.2.3",
             os="Windows-10-10.0.19045-SP0", cpu_model="AMD Ryzen 7 5800X 8-Core Processor"),
        _row(CC2, timestamp="2023-01-10T10:00:00", run_id="a0000000-0000-4000-8000-000000000002",
             duration=100.0, energy_consumed=0.02, codecarbon_version="2.2.3",
             os="Windows-10-10.0.19045-SP0", cpu_model="AMD Ryzen 7 5800X 8-Core Processor"),
    ], crlf=True)
    cc3 = [
        _row(CC3, timestamp="2025-10-01T10:00:00", run_id="30000000-0000-4000-8000-000000000001",
             experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1", duration=1000.0,
             energy_consumed=0.3, codecarbon_version="3.3.2"),
        _row(CC3, timestamp="2025-10-01T11:00:00", run_id="30000000-0000-4000-8000-000000000002",
             experiment_id="vision___alice___gpu-box", duration=2000.0, energy_consumed=0.7,
             codecarbon_version="3.3.2", gpu_count=1, gpu_model="1 x NVIDIA A100-SXM4-40GB",
             gpu_power=300.0, gpu_utilization_percent=87.5),
    ]
    _write("cc3.csv", CC3, cc3)
    _write("cc3_bom.csv", CC3, cc3, bom=True)
    reordered = sorted(CC3.split(","), key=lambda c: (len(c), c))
    _write("cc3_reordered.csv", CC3, cc3, columns=reordered)


if __name__ == "__main__":
    main()
