// LET dashboard: every figure comes from the server (/api/...), one page or one aggregate at a time.
// Every number a person reads (units, ticks, shares, dates) is the server's text: the rules that
// scale units and place ticks exist once, in Python (let_core.units, let_core.timeaxis).
"use strict";
(function () {
  const page = document.body.dataset.page;
  const form = document.getElementById("filters");
  const FILTERS = ["project", "user", "host", "backend", "status", "since", "until"];
  const state = new URLSearchParams(location.search);
  window.letPlots = {};   // the uPlot instances, for anyone (and the browser tests) to inspect
  window.letData = {};    // the last JSON each view drew
  const BLUE = "#1f6feb", ORANGE = "#d97706", RED = "#c0362c";

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  function showHint(message) {
    const box = document.getElementById("hint");
    box.textContent = message || "";
    box.hidden = !message;
    document.querySelector("main").hidden = !!message;  // an empty store: the hint is the page
  }

  async function api(path, params) {
    const response = await fetch(path + (params ? "?" + params.toString() : ""));
    let body = null;
    try { body = await response.json(); } catch (e) { body = { detail: response.statusText }; }
    if (!response.ok) {
      const error = new Error(body && body.detail ? body.detail : "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function filterParams() {
    const params = new URLSearchParams();
    for (const name of FILTERS) { if (state.get(name)) params.set(name, state.get(name)); }
    return params;
  }

  function syncUrl() {
    const query = state.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
    const filters = filterParams().toString();
    for (const link of document.querySelectorAll("a[data-nav]")) {
      link.href = link.getAttribute("href").split("?")[0] + (filters ? "?" + filters : "");
      link.classList.toggle("active", link.pathname === location.pathname);
    }
  }

  async function loadChoices() {
    const data = await api("/api/choices");
    document.getElementById("store").textContent = data.store + (data.dataset ? " + " + data.dataset : "") +
      " · " + data.rows.toLocaleString() + " rows";
    showHint(data.hint);
    for (const name of ["project", "user", "host", "backend", "status"]) {
      const select = form.elements[name];
      // fillForm ran before the choices came: its "(no runs)" stand-ins go, and it runs again.
      for (const standIn of select.querySelectorAll("option[data-stand-in]")) standIn.remove();
      for (const value of data.choices[name]) {
        const option = document.createElement("option");
        option.value = option.textContent = value;
        select.appendChild(option);
      }
    }
  }

  function fillForm() {
    for (const name of FILTERS) {
      const element = form.elements[name], value = state.get(name) || "";
      // A value from the URL that no run has stays visible, so the page says what it filtered by.
      if (value && element.tagName === "SELECT" && ![...element.options].some((o) => o.value === value)) {
        const option = document.createElement("option");
        option.value = value; option.textContent = value + " (no runs)"; option.dataset.standIn = "1";
        element.appendChild(option);
      }
      element.value = value;
    }
  }

  form.addEventListener("change", (event) => {
    const name = event.target.name;
    if (!name) return;
    if (event.target.value) state.set(name, event.target.value); else state.delete(name);
    state.delete("page");
    syncUrl();
    refresh();
  });
  document.getElementById("clear").addEventListener("click", () => {
    for (const name of FILTERS) state.delete(name);
    state.delete("page");
    fillForm(); syncUrl(); refresh();
  });

  function cell(tr, text, cls, col) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : text;
    if (cls) td.className = cls;
    if (col) td.dataset.col = col;
    tr.appendChild(td);
    return td;
  }

  function failedBadge(td) {
    td.textContent = "";
    const badge = document.createElement("span");
    badge.className = "failed-badge";
    badge.textContent = "✗ failed";
    td.appendChild(badge);
  }

  // ------------------------------------------------------------------ runs
  const shortTime = (v) => (v || "").replace("T", " ").slice(0, 19);
  const COLUMNS = [
    ["start_time", "Start (UTC)", (r) => shortTime(r.start_time)],
    ["project_name", "Project"], ["user", "User"], ["hostname", "Host"], ["backend", "Backend"],
    ["kind", "Kind"], ["task", "Task", (r) => r.is_task ? "↳ " + (r.task || "task") : "", false],
    ["energy_consumed", "Energy", (r) => r.text.energy_consumed, true, "num"],
    ["emissions", "CO2e", (r) => r.text.emissions, true, "num"],
    ["duration", "Duration", (r) => r.text.duration, true, "num"], ["run_status", "Status"],
    ["run_id", "Run", (r) => r.is_task ? "↳ of " + (r.parent_run_id || "").slice(0, 8) : (r.run_id || "").slice(0, 8), false],
  ];

  function runsHeader() {
    const row = document.querySelector("#runs thead tr");
    row.innerHTML = "";
    for (const [key, label, , sortable, cls] of COLUMNS) {
      const th = document.createElement("th");
      th.textContent = label;
      if (cls) th.className = cls;
      if (sortable !== false) {
        th.dataset.sort = key;
        th.addEventListener("click", () => {
          const current = state.get("sort") || "start_time";
          const order = state.get("order") || "desc";
          state.set("sort", key);
          state.set("order", current === key && order === "desc" ? "asc" : "desc");
          state.delete("page");
          syncUrl(); refresh();
        });
      }
      row.appendChild(th);
    }
  }

  async function drawRuns() {
    const params = filterParams();
    for (const name of ["sort", "order", "page", "per_page"]) { if (state.get(name)) params.set(name, state.get(name)); }
    const data = await api("/api/runs", params);
    window.letData.runs = data;
    showHint(data.hint);
    const body = document.querySelector("#runs tbody");
    body.innerHTML = "";
    for (const row of data.rows) {
      const tr = document.createElement("tr");
      tr.className = (row.is_task ? "task " : "") + (row.failed ? "failed" : "");
      tr.dataset.run = row.is_task ? row.parent_run_id : row.run_id;
      for (const [key, , format, , cls] of COLUMNS) {
        const td = cell(tr, format ? format(row) : row[key], cls, key);
        if (key === "run_status" && row.failed) {
          failedBadge(td);
          if (row.error) td.title = row.error;
        }
      }
      body.appendChild(tr);
    }
    for (const th of document.querySelectorAll("#runs th[data-sort]")) {
      th.classList.toggle("sorted", th.dataset.sort === data.sort);
      th.classList.toggle("asc", data.order === "asc");
    }
    document.getElementById("count").textContent = data.count_text;
    document.getElementById("pageinfo").textContent = "page " + data.page + " of " + data.pages;
    document.getElementById("prev").disabled = data.page <= 1;
    document.getElementById("next").disabled = data.page >= data.pages;
  }

  function turnPage(delta) {
    const current = parseInt(state.get("page") || "1", 10);
    state.set("page", String(Math.max(1, current + delta)));
    syncUrl(); refresh();
  }

  // ------------------------------------------------------------------ charts
  function chartWidth(element) { return Math.max(280, element.clientWidth - 10); }

  function replacePlot(name, element, options, data) {
    if (window.letPlots[name]) window.letPlots[name].destroy();
    element.innerHTML = "";
    options.cursor = Object.assign({ drag: { x: false, y: false } }, options.cursor || {});  // the ticks are fixed
    window.letPlots[name] = new uPlot(options, data, element);
  }

  function emptyChart(name, element, words) {
    if (window.letPlots[name]) { window.letPlots[name].destroy(); delete window.letPlots[name]; }
    element.innerHTML = "";
    const p = document.createElement("p");
    p.className = "muted empty-chart";
    p.textContent = words;
    element.appendChild(p);
  }

  // An axis whose ticks and labels the server chose (distinct, in a unit that fits).
  function fixedAxis(spec, extra) {
    return Object.assign({ splits: () => spec.ticks, values: () => spec.labels, size: 80 }, extra || {});
  }

  function textAt(texts) { return (u, v, si, i) => (i == null || texts[i] == null ? "–" : texts[i]); }

  // Energy bars (blue, the failed runs' part red over them) and emissions (orange) per bucket.
  function drawSeries(name, element, series) {
    if (!series.t.length) { emptyChart(name, element, "No counted energy to draw for this filter."); return; }
    const ax = series.axes, bars = uPlot.paths.bars({ size: [0.7, 60] });
    const failedText = series.failed_kwh.map((v, i) => series.failed_runs[i] ? series.failed_runs[i] + " failed run(s)" : "none");
    replacePlot(name, element, {
      width: chartWidth(element), height: 280,
      scales: { x: { time: false, range: () => [ax.x.low, ax.x.high] },
                kwh: { range: () => [ax.kwh.low, ax.kwh.high] }, kg: { range: () => [ax.kg.low / 1000, ax.kg.high / 1000] } },
      series: [{ label: "period", value: textAt(series.t_text) },
               { label: "energy", stroke: BLUE, fill: "rgba(31,111,235,0.55)", paths: bars, points: { show: false },
                 scale: "kwh", value: textAt(series.kwh_text) },
               { label: "of which failed runs", stroke: RED, fill: "rgba(192,54,44,0.85)", paths: bars,
                 points: { show: false }, scale: "kwh", value: textAt(failedText) },
               { label: "emissions (CO2e)", stroke: ORANGE, width: 2, scale: "kg", points: { show: true, size: 6 },
                 value: textAt(series.kg_text) }],
      axes: [fixedAxis(ax.x, { label: ax.x.title, size: 50 }),
             fixedAxis(ax.kwh, { scale: "kwh", label: "energy" }),
             fixedAxis({ ticks: ax.kg.ticks.map((v) => v / 1000), labels: ax.kg.labels },
                       { scale: "kg", side: 1, label: "emissions (CO2e)", grid: { show: false } })],
    }, [series.t, series.kwh, series.failed_kwh.map((v) => v > 0 ? v : null), series.kg]);
  }

  // numeric: the columns that hold figures (right-aligned); default every column but the first.
  function groupTable(id, head, rows, cells, numeric) {
    const table = document.getElementById(id);
    table.innerHTML = "";
    const thead = document.createElement("thead"), tr = document.createElement("tr");
    const align = (i) => ((numeric ? numeric.includes(i) : i > 0) ? "num" : "");
    head.forEach((label, i) => { const th = document.createElement("th"); th.textContent = label; th.className = align(i); tr.appendChild(th); });
    thead.appendChild(tr); table.appendChild(thead);
    const body = document.createElement("tbody");
    for (const row of rows) {
      const line = document.createElement("tr");
      cells(row).forEach((text, i) => cell(line, text, align(i)));
      body.appendChild(line);
    }
    if (!rows.length) {
      const line = document.createElement("tr");
      cell(line, "none", "muted").colSpan = head.length;
      body.appendChild(line);
    }
    table.appendChild(body);
  }

  // ------------------------------------------------------------------ overview
  function card(id, value, note) {
    const box = document.getElementById(id);
    box.querySelector(".value").textContent = value;
    box.querySelector(".note").textContent = note || "";
  }

  async function drawOverview() {
    const data = await api("/api/overview", filterParams());
    window.letData.overview = data;
    showHint(data.hint);
    document.getElementById("overview-words").textContent = "(" + data.words + ")";
    const s = data.shares, f = data.failed;
    card("card-energy", data.runs ? data.energy_text : "–", !data.runs ? "" : !s.metered.runs ? "all estimated"
      : s.metered.share_text + " measured, " + s.estimated.share_text + " estimated");
    card("card-emissions", data.runs ? data.emissions_text : "–", data.intensity ? "at " + Math.round(data.intensity) + " gCO2/kWh on average" : "");
    card("card-runs", data.runs.toLocaleString(), data.rows.toLocaleString() + " stored rows (one per backend and task)");
    card("card-failed", f.runs.toLocaleString(), f.runs ? f.energy_text + " (" + f.share_text + " of the energy)" : "none");
    document.getElementById("card-failed").classList.toggle("bad", f.runs > 0);
    const bar = document.getElementById("shares");
    bar.querySelector(".metered").style.width = ((s.metered.share || 0) * 100) + "%";
    bar.querySelector(".estimated").style.width = ((s.estimated.share || 0) * 100) + "%";
    const words = document.getElementById("share-words");
    words.innerHTML = "";
    const items = [
      ["metered", "Measured (metered): " + (s.metered.runs ? s.metered.kwh_text + " of " + s.metered.runs.toLocaleString() +
        " run(s), " + s.metered.share_text : "none (no run had a wall socket or energy counter)")],
      ["estimated", "Estimated: " + (s.estimated.runs ? s.estimated.kwh_text + " of " + s.estimated.runs.toLocaleString() +
        " run(s), " + s.estimated.share_text : "none")],
      ["calibrated", s.calibrated.runs
        ? "Calibrated: " + s.calibrated.runs.toLocaleString() + " estimate-only run(s) (" + s.calibrated.share_text +
          " of the energy) have a wall-socket calibration; their " + s.calibrated.kwh_text + " estimate corrects to " +
          s.calibrated.calibrated_text + " (" + s.calibrated.interval_text + ")"
        : "Calibrated: none (no estimate-only run on a host with a wall-socket calibration; see Calibration)"],
    ];
    for (const [cls, text] of items) {
      const li = document.createElement("li");
      li.className = cls; li.textContent = text; words.appendChild(li);
    }
    document.getElementById("trend-title").textContent = data.trend.title || "Trend";
    drawSeries("trend", document.getElementById("chart-trend"), data.trend);
    groupTable("top-projects", ["project", "runs", "energy", "CO2e", "share"], data.projects,
               (r) => [r.name, r.runs.toLocaleString(), r.kwh_text, r.kg_text, r.share_text]);
    groupTable("top-hosts", ["host", "runs", "energy", "CO2e", "share"], data.hosts,
               (r) => [r.name, r.runs.toLocaleString(), r.kwh_text, r.kg_text, r.share_text]);
    groupTable("failed-runs", ["start (UTC)", "project", "host", "run", "energy", "error"], f.latest,
               (r) => [shortTime(r.start_time), r.project_name, r.hostname, (r.run_id || "").slice(0, 8), r.energy_text, r.error], [4]);
    for (const tr of document.querySelectorAll("#failed-runs tbody tr")) if (f.latest.length) tr.classList.add("failed");
    const link = document.getElementById("failed-link");
    const params = filterParams(); params.set("status", "failed");
    link.href = "/runs?" + params.toString();
    link.hidden = !f.runs;
  }

  // ------------------------------------------------------------------ project view
  async function drawProject() {
    const data = await api("/api/summary", filterParams());
    window.letData.summary = data;
    showHint(data.hint);
    document.getElementById("energy-title").textContent = data.series.title || "Energy and emissions";
    drawSeries("energy", document.getElementById("chart-energy"), data.series);

    const scatter = document.getElementById("chart-scatter"), sc = data.scatter;
    scatter.hidden = !sc.runs;  // the sentence below says why there is no chart
    if (!sc.runs) {
      emptyChart("scatter", scatter, "");
    } else {
      const order = sc.points.map((p, i) => i).sort((a, b) => sc.points[a][0] - sc.points[b][0]);
      const xs = order.map((i) => sc.points[i][0]);
      const ok = order.map((i) => sc.failed[i] ? null : sc.points[i][1]);
      const bad = order.map((i) => sc.failed[i] ? sc.points[i][1] : null);
      const texts = order.map((i) => sc.text[i]);
      const dots = (stroke, size) => ({ stroke, paths: () => null, points: { show: true, size, fill: stroke } });
      replacePlot("scatter", scatter, {
        width: chartWidth(scatter), height: 320,
        scales: { x: { time: false, range: () => [sc.axis.low, sc.axis.high] }, y: { range: () => [sc.axis.low, sc.axis.high] } },
        series: [{ label: "estimate", value: textAt(texts.map((t) => t.split(",")[0].replace("estimate ", ""))) },
                 Object.assign({ label: "metered", value: textAt(texts) }, dots(BLUE, 7)),
                 Object.assign({ label: "metered, failed run", value: textAt(texts) }, dots(RED, 9)),
                 { label: "y = x", stroke: "#888", dash: [6, 4], width: 1, points: { show: false }, value: () => "" }],
        axes: [fixedAxis(sc.axis, { label: "estimate", size: 50 }), fixedAxis(sc.axis, { label: "metered" })],
      }, [xs, ok, bad, xs.slice()]);
    }
    document.getElementById("ratio").textContent = sc.runs
      ? sc.runs.toLocaleString() + " run(s) measured both ways; metered / estimate = " + sc.ratio.toFixed(2) +
        (sc.shown < sc.runs ? " (the " + sc.shown.toLocaleString() + " largest shown)" : "")
      : "No run of this filter was measured both ways (an estimate and a metered backend).";
    for (const group of ["host", "backend", "job"]) {
      groupTable("totals-" + group, [group, "runs", "energy", "CO2e", "time"], data.totals[group],
                 (r) => [r[group] || "(none)", r.runs.toLocaleString(), r.text.kwh, r.text.kg, r.text.hours]);
    }
  }

  // ------------------------------------------------------------------ statement
  async function drawStatement() {
    const text = document.getElementById("statement-text"), bib = document.getElementById("bibtex");
    const sections = [document.getElementById("statement-section"), document.getElementById("bibtex-section")];
    try {
      const data = await api("/api/statement", filterParams());
      window.letData.statement = data;
      document.getElementById("statement-filter").textContent = "(" + data.words + ")";
      text.textContent = data.statement;
      bib.textContent = data.bibtex;
      sections.forEach((s) => { s.hidden = false; });
    } catch (error) {
      // Nothing to state: the message goes where errors go, never into the statement's box.
      text.textContent = ""; bib.textContent = "";
      sections.forEach((s) => { s.hidden = true; });
      if (error.status === 404 && !document.getElementById("hint").hidden) return;  // the hint says it
      throw error;
    }
  }

  function copy(id, button) {
    const text = document.getElementById(id).textContent;
    const done = () => { button.dataset.copied = "yes"; button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallback(text, done));
    } else fallback(text, done);
  }
  function fallback(text, done) {
    const area = document.createElement("textarea");
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); done(); } finally { area.remove(); }
  }

  // ------------------------------------------------------------------ wiring
  async function refresh() {
    document.body.dataset.loading = "yes";
    try {
      if (page === "overview") await drawOverview();
      else if (page === "runs") await drawRuns();
      else if (page === "project") await drawProject();
      else if (page === "statement") await drawStatement();
      showError("");
    } catch (error) {
      showError(error.message);
    } finally {
      document.body.dataset.loading = "no";
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    }
  }

  async function init() {
    fillForm(); syncUrl();
    if (page === "runs") {
      runsHeader();
      document.getElementById("prev").addEventListener("click", () => turnPage(-1));
      document.getElementById("next").addEventListener("click", () => turnPage(1));
    }
    for (const button of document.querySelectorAll("button.copy")) {
      button.addEventListener("click", () => copy(button.dataset.copy, button));
    }
    try { await loadChoices(); fillForm(); } catch (error) { showError(error.message); }
    await refresh();
  }
  init();
})();
