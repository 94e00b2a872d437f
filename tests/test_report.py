"""`lett report`: the HTML impact report, run through the command line's entry point, read back as a person
reads it (headless Chromium: the visible text of its tables), its numbers against `lett results
--by`; several stores against `lett merge` of them; a Parquet dataset (a folder and S3 on a
real S3 API, moto) against the CSV store; the period filter; groups files good and bad.
Screenshots (and the browser's PDF print) go to the test's tmp dir and /work/shots/report/."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.ui_store import DAYS, SPECS, build_store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("LET_TEST_SHOTS", "/work/shots/report"))


def lett(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The command line's own entry point (``let_core.cli.main``), in this process with its
    streams captured: what ``python -m let_core`` runs, without a second of interpreter and
    imports per call. An exception the command does not turn into a message fails the test."""
    from click.testing import CliRunner

    from let_core.cli import main

    with CliRunner().isolation() as (stdout, stderr, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    done = subprocess.CompletedProcess(["lett", *args], code, stdout.getvalue().decode(), stderr.getvalue().decode())
    if check and done.returncode != 0:
        raise AssertionError(f"lett {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def results_by(by: str, *sources: str) -> dict[str, dict[str, str]]:
    """`lett results --by BY` as {name: {runs, energy, CO2e, metered}} (its text table)."""
    return by_table(lett("results", *sources, "--by", by).stdout, by)


def by_table(text: str, by: str) -> dict[str, dict[str, str]]:
    lines = text.splitlines()
    header = lines[0].split()
    table = {}
    for line in lines[2:]:
        if line.startswith("total"):
            continue
        cells = re.split(r"\s{2,}", line.strip())
        row = dict(zip(header, cells))
        table[row[by]] = {"runs": row["runs"], "energy": row["energy"], "emissions": row["CO2e"],
                          "coverage": row["metered"]}
    return table


class Tables(HTMLParser):
    """The report's breakdown tables as {by: {name: {column: text}}}, from the HTML itself."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self.by = self.name = self.col = None
        self.cards: dict[str, str] = {}
        self.card = self.in_value = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(f"{tag} {key}={a[key]}")
        if tag in ("script", "link", "img", "iframe", "object"):
            self.external.append(tag)
        if tag == "table" and a.get("data-by"):
            self.by = a["data-by"]
            self.tables[self.by] = {}
        elif tag == "tr" and self.by and "data-name" in a:
            self.name = a["data-name"]
            self.tables[self.by][self.name] = {}
        elif tag == "td" and self.name is not None and a.get("data-col"):
            self.col = a["data-col"]
        elif tag == "div" and a.get("data-card"):
            self.card = a["data-card"]
        elif tag == "div" and self.card and a.get("class") == "value":
            self.in_value = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.by = self.name = None
        elif tag == "td":
            self.col = None
        elif tag == "div" and self.in_value:
            self.in_value, self.card = None, None

    def handle_data(self, data: str) -> None:
        if self.col is not None and self.by and self.name is not None:
            self.tables[self.by][self.name][self.col] = data
        if self.in_value and self.card:
            self.cards[self.card] = data


def parse(path: Path) -> Tables:
    parser = Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def same_as_results(table: dict[str, dict[str, str]], expected: dict[str, dict[str, str]]) -> None:
    assert set(table) == set(expected)
    for name, cells in expected.items():
        shown = table[name]
        assert (shown["runs"], shown["energy"], shown["emissions"], shown["coverage"]) == (
            cells["runs"], cells["energy"], cells["emissions"], cells["coverage"]), name


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    build_store(root / "store")
    return root


@pytest.fixture(scope="module")
def lab_page(lab: Path) -> Path:
    """`lett report` of the lab store, written once for the tests that only read it."""
    page = lab / "page" / "report.html"
    page.parent.mkdir()
    done = lett("report", "-o", str(lab / "store"), "--html", str(page))
    assert "wrote" in done.stdout and page.exists()
    return page


@pytest.fixture(scope="module")
def lab_results(lab: Path) -> Callable[[str], str]:
    """`lett results --by BY` of the lab store, run once per BY: the store never changes."""
    return functools.cache(lambda by: lett("results", "-o", str(lab / "store"), "--by", by).stdout)


# ------------------------------------------------------------------------------ in Chromium
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    pytest.importorskip("selenium", reason="selenium is in the test extra")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):  # .ci/run installs both
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-gpu", "--no-proxy-server"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: Any, name: str, tmp: Path) -> Path:
    """A full-page screenshot: the window is sized to the document first."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 12000))
    path = tmp / f"{name}.png"
    driver.save_screenshot(str(path))
    with_shots = SHOTS if SHOTS.parent.is_dir() else None
    if with_shots is not None:
        with_shots.mkdir(exist_ok=True)
        shutil.copy(path, with_shots / path.name)
    print(f"screenshot: {path}")
    return path


def test_numbers_a_person_sees_equal_lett_results_by(lab: Path, lab_page: Path, lab_results: Callable[[str], str],
                                                     browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(lab_page.as_uri())
    shoot(browser, "report-lab-small", tmp_path)
    for by in ("project", "user", "host"):
        expected = by_table(lab_results(by), by)
        seen: dict[str, dict[str, str]] = {}
        rows = browser.execute_script(  # one round trip, not one WebDriver call per cell
            "return Array.from(document.querySelectorAll(arguments[0])).map(row => Array.from("
            "row.querySelectorAll('td')).map(td => td.innerText.replace(/\\s+/g, ' ').trim()));",
            f"table[data-by='{by}'] tbody tr")
        for cells in rows:
            # name, runs, energy, CO2e, measured, estimated, measured share, coverage, failed, share
            seen[cells[0]] = {"runs": cells[1], "energy": cells[2], "emissions": cells[3], "coverage": cells[7]}
        same_as_results(seen, expected)
    # The overview's total is the statement's and `lett results`' total line.
    total = lab_results("project").splitlines()[-1].split()
    energy = browser.find_element(By.CSS_SELECTOR, "[data-card='energy'] .value").text
    assert energy == f"{total[2]} {total[3]}"
    statement = lett("statement", "-o", str(lab / "store"), "-p", "vision").stdout.strip()
    shown = browser.find_element(By.CSS_SELECTOR, "[data-project='vision']").text
    assert " ".join(shown.split()) == " ".join(statement.split())
    # Failed runs are marked where a person looks for them.
    failed_rows = browser.find_elements(By.CSS_SELECTOR, "table[data-runs='failures'] tr.failed")
    assert len(failed_rows) == int(browser.find_element(By.CSS_SELECTOR, "[data-card='failed'] .value").text) > 0
    # The month chart's ticks read distinct, in one unit that scales.
    ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#chart-trend text.tick")]
    assert len(ticks) >= 2 and len(set(ticks)) == len(ticks)
    assert browser.find_element(By.ID, "chart-trend").get_attribute("aria-label") == "Energy per day in kWh"


def test_report_prints_to_a_multipage_pdf(lab_page: Path, browser: Any, tmp_path: Path) -> None:
    import base64

    browser.get(lab_page.as_uri())
    pdf = base64.b64decode(browser.print_page())
    assert pdf.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages >= 3  # sections start on new pages (print CSS), tables are not clipped off
    (tmp_path / "report.pdf").write_bytes(pdf)
    if SHOTS.parent.is_dir():
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(tmp_path / "report.pdf", SHOTS / "report-lab-small.pdf")


# ------------------------------------------------------------------------------ from the HTML
def test_one_file_nothing_fetched(lab_page: Path) -> None:
    text = lab_page.read_text(encoding="utf-8")
    parsed = parse(lab_page)
    assert parsed.external == []
    assert "url(" not in text and "@import" not in text and "<svg" in text
    assert [p.name for p in lab_page.parent.iterdir()] == [lab_page.name]  # the temporary file was renamed, not left


def test_breakdowns_add_up_and_months_cover_the_runs(lab_page: Path) -> None:
    tables = parse(lab_page).tables
    assert set(tables) == {"project", "user", "host", "month"}
    assert list(tables["month"]) == ["2026-03"]
    assert tables["month"]["2026-03"]["runs"] == str(DAYS * len(SPECS))
    assert sum(int(r["runs"]) for r in tables["project"].values()) == DAYS * len(SPECS)
    # vision is measured both ways, nlp and speech only estimated
    assert tables["project"]["vision"]["measured-share"] == "100%"
    assert tables["project"]["nlp"]["measured"] == "-" and tables["project"]["vision"]["estimated"] == "-"


def test_period_filter(lab: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    # Runs start on 2026-03-01..06 between 00:00 and 04:00: two days of four runs each.
    lett("report", "-o", str(lab / "store"), "--since", "2026-03-03", "--until", "2026-03-04T23:59:59",
         "--html", str(page))
    parsed = parse(page)
    assert parsed.cards["runs"] == "8"
    assert "2026-03-03" in page.read_text() and "2026-03-04" in page.read_text()
    assert "2026-03-05 " not in page.read_text()
    bad = lett("report", "-o", str(lab / "store"), "--since", "2026-03-05", "--until", "2026-03-01",
               "--html", str(tmp_path / "x.html"), check=False)
    assert bad.returncode == 2 and "before --since" in bad.stderr and not (tmp_path / "x.html").exists()


def test_empty_store_says_how_to_record_a_run(tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    done = lett("report", "-o", str(tmp_path / "nothing"), "--html", str(page))
    assert "no runs recorded" in done.stderr
    text = page.read_text(encoding="utf-8")
    assert "No runs recorded in this period" in text and "lett run --project" in text
    assert str(tmp_path / "nothing") in text


def test_several_stores_count_as_their_merge(lab: Path, tmp_path: Path) -> None:
    from let_core.store import Store

    other = tmp_path / "other"
    rows = list(Store(lab / "store").rows())
    Store(other).append(rows[:10] + [dict(row, run_id=f"other-{i}", user="dave", project_name="speech")
                                     for i, row in enumerate(rows[:6])])  # 10 runs both stores hold
    page = tmp_path / "r.html"
    lett("report", "-o", str(lab / "store"), "-o", str(other), "--html", str(page))
    lett("merge", str(lab / "store" / "emissions.csv"), str(other / "emissions.csv"), "--into", str(tmp_path / "m"))
    tables = parse(page).tables
    for by in ("project", "user"):
        same_as_results(tables[by], results_by(by, "-o", str(tmp_path / "m")))
    assert "dave" in tables["user"]


def _dataset_copy(store: Path, root: Path) -> Path:
    from let_core.dataset import locate, write_frame
    from let_core.results import load_results

    write_frame(locate(root), load_results(store, dataset=str(store / "none")))
    return root


def test_parquet_dataset_alone(lab: Path, lab_results: Callable[[str], str], tmp_path: Path) -> None:
    dataset = _dataset_copy(lab / "store", tmp_path / "runs")
    page = tmp_path / "r.html"
    lett("report", "-o", str(tmp_path / "empty-store"), "--dataset", str(dataset), "--html", str(page))
    tables = parse(page).tables
    for by in ("project", "host"):
        same_as_results(tables[by], by_table(lab_results(by), by))


def test_s3_dataset_on_a_real_s3_api(lab: Path, lab_results: Callable[[str], str], tmp_path: Path) -> None:
    pytest.importorskip("moto", reason="moto[server] is in the test extra")
    import pyarrow.fs as pafs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        fs = pafs.S3FileSystem(access_key="k", secret_key="s", endpoint_override=f"{host}:{port}", scheme="http",
                               region="us-east-1", allow_bucket_creation=True)
        fs.create_dir("institute")
        uri = f"s3://k:s@institute/let?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
        _dataset_copy(lab / "store", uri)  # type: ignore[arg-type]
        page = tmp_path / "r.html"
        lett("report", "-o", str(tmp_path / "empty-store"), "--dataset", uri, "--html", str(page))
    finally:
        server.stop()
    text = page.read_text(encoding="utf-8")
    assert "s3://institute/let" in text and "k:s@" not in text  # no credentials on the page
    same_as_results(parse(page).tables["project"], by_table(lab_results("project"), "project"))


# ------------------------------------------------------------------------------ groups
def test_groups_from_toml_and_csv(lab: Path, tmp_path: Path) -> None:
    toml = tmp_path / "groups.toml"
    toml.write_text('[projects]\nnlp = "Language"\n\n[users]\nalice = "Vision lab"\nbob = "Vision lab"\n')
    csv = tmp_path / "groups.csv"
    csv.write_text("kind,name,group\nproject,nlp,Language\nuser,alice,Vision lab\nuser,bob,Vision lab\n")
    results = []
    for mapping in (toml, csv):
        page = tmp_path / f"{mapping.suffix[1:]}.html"
        lett("report", "-o", str(lab / "store"), "--by", "group", "--groups", str(mapping), "--html", str(page))
        tables = parse(page).tables
        results.append(tables["group"])
        projects = tables["project"]
        # bob's runs are all nlp: the project's group wins over the user's
        assert tables["group"]["Language"]["energy"] == projects["nlp"]["energy"]
        assert tables["group"]["Vision lab"]["energy"] == projects["vision"]["energy"]
        assert tables["group"]["unassigned"]["energy"] == projects["speech"]["energy"]  # carol is in none
    assert results[0] == results[1]


@pytest.mark.parametrize(("name", "content", "message"), [
    ("g.toml", "[projects\nnlp = 1", "not valid TOML"),
    ("g.toml", '[teams]\nnlp = "x"', "unknown table(s) 'teams'"),
    ("g.toml", "[users]\nalice = 3", "needs a group name"),
    ("g.toml", "# nothing yet\n", "maps no user and no project"),
    ("g.csv", "user,group\nalice,x\n", "the first line must be kind,name,group"),
    ("g.csv", "kind,name,group\nteam,alice,x\n", "line 2: kind 'team' is neither"),
    ("g.csv", "kind,name,group\nuser,alice,A\nuser,alice,B\n", "line 3: user 'alice' is in group 'A' already"),
    ("g.csv", "kind,name,group\nuser,alice\n", "line 2: expected 3 cells"),
    ("g.json", "{}", "name it .toml or .csv"),
    ("missing.toml", None, "does not exist"),
])
def test_bad_groups_file_is_a_clear_error_and_writes_nothing(lab: Path, tmp_path: Path, name: str,
                                                            content: str | None, message: str) -> None:
    mapping = tmp_path / name
    if content is not None:
        mapping.write_text(content)
    page = tmp_path / "r.html"
    page.write_text("the previous report")
    done = lett("report", "-o", str(lab / "store"), "--groups", str(mapping), "--html", str(page), check=False)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert page.read_text() == "the previous report"


def test_by_group_needs_a_groups_file_and_html_a_folder(lab: Path, tmp_path: Path) -> None:
    done = lett("report", "-o", str(lab / "store"), "--by", "group", "--html", str(tmp_path / "r.html"), check=False)
    assert done.returncode == 2 and "--groups FILE" in done.stderr
    done = lett("report", "-o", str(lab / "store"), "--html", str(tmp_path / "no" / "r.html"), check=False)
    assert done.returncode == 1 and "does not exist" in done.stderr


def test_model_api_and_biggest_runs(lab: Path) -> None:
    from let_core.report import build_report
    from let_core.results import frame_totals, load_results

    now = datetime(2026, 4, 1, tzinfo=timezone.utc)
    report = build_report([lab / "store"], now=now)
    assert report.totals == frame_totals(load_results(lab / "store"))
    sizes = [run.kwh for run in report.biggest]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    assert all(run.status == "failed" for run in report.failures)
    starts = [run.start for run in report.failures]
    assert starts == sorted(starts, reverse=True)  # the latest first
    later = build_report([lab / "store"], since=now - timedelta(days=1))
    assert later.empty and later.totals.runs == 0


def test_breakdown_groups_add_up_to_the_statements_totals(lab: Path) -> None:
    from let_core.results import frame_totals, load_results
    from let_core.results.counting import aggregate, breakdown

    frame = load_results(lab / "store")
    labels = ["even" if i % 2 else "odd" for i in range(len(frame))]
    result = breakdown(frame, {"project": "project_name", "host": "hostname", "rows": labels})
    assert result.totals == frame_totals(frame)
    for name, groups in result.groups.items():
        assert sum(t.energy_kwh for t in groups.values()) == pytest.approx(result.totals.energy_kwh, rel=1e-12), name
        assert sum(t.runs for t in groups.values()) >= result.totals.runs
    assert float(result.row_kwh.sum()) == pytest.approx(result.totals.energy_kwh, rel=1e-12)
    by_project = aggregate(frame, "project").set_index("project")
    for project, totals in result.groups["project"].items():
        assert totals.runs == by_project.loc[project, "runs"]
        assert totals.energy_kwh == pytest.approx(by_project.loc[project, "kwh"], rel=1e-12)
        assert totals.emissions_kg == pytest.approx(by_project.loc[project, "kg"], rel=1e-12)


def test_project_statements_name_calibrations_as_lett_statement_does(let_home: Path, tmp_path: Path) -> None:
    from let_core.store import Store
    from tests.paired_runs import rows, synthetic_runs

    Store(let_home).append(rows(synthetic_runs(120, seed=11)) + rows(synthetic_runs(5, seed=12, metered=False)))
    lett("calibration", "fit")
    page = tmp_path / "r.html"
    lett("report", "--html", str(page))
    statement = lett("statement", "-p", "paper").stdout.strip()
    assert "calibrat" in statement
    shown = re.search(r"data-project='paper'>(.*?)</div>", page.read_text(encoding="utf-8"), flags=re.S)
    assert shown is not None
    import html

    assert html.unescape(shown.group(1)).strip() == statement


def new_user_store(directory: Path) -> None:
    """A new user's first day: two projects, a few short CPU runs of some mWh, one failed."""
    import uuid

    from let_core._version import __version__
    from let_core.records import Measurement, Run
    from let_core.store import Store

    day = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    runs = []
    for i in range(7):
        project = "thesis" if i % 2 else "course-ml"
        start = day + timedelta(minutes=47 * i)
        energy = 0.0004 * (1 + i)  # 0.4-2.8 Wh
        runs.append(Run(run_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"new-user-{i}")), project_name=project,
                        user="newcomer", hostname="laptop", start_time=start, end_time=start + timedelta(minutes=3),
                        status="failed" if i == 5 else "ok",
                        measurements=(Measurement(backend="codecarbon", methodology="CodeCarbon 3.3.2",
                                                  kind="estimate", energy_kwh=energy, duration_s=180.0,
                                                  scope="cpu+gpu+ram", hardware="Intel(R) Core(TM) i7-1165G7 CPU"),),
                        country_iso_code="DEU", country_name="Germany", carbon_intensity=380.0))
    Store(directory).append([row for run in runs for row in run.rows(__version__)])


def test_new_users_day_reads_in_units_that_scale(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    new_user_store(tmp_path / "store")
    page = tmp_path / "report.html"
    lett("report", "-o", str(tmp_path / "store"), "--html", str(page))
    browser.get(page.as_uri())
    shoot(browser, "report-new-user", tmp_path)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "0.000" not in text  # small figures scale down (Wh, mWh, g, mg), never round to nothing
    assert browser.find_element(By.CSS_SELECTOR, "[data-card='energy'] .value").text.endswith(" Wh")
    ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#chart-trend text.tick")]
    assert len(set(ticks)) == len(ticks) >= 2
    assert browser.find_element(By.ID, "chart-trend").get_attribute("aria-label") == "Energy per hour in Wh"
    projects = [r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "table[data-by='project'] tbody tr")]
    assert sorted(projects) == ["course-ml", "thesis"]
    assert browser.find_element(By.CSS_SELECTOR, "[data-card='failed'] .value").text == "1"
