// LET dashboard: every figure comes from the server (/api/...), one page or one aggregate at a time.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const form = document.getElementById("filters");
  const FILTERS = ["project", "user", "host", "backend", "since", "until"];
  const state = new URLSearchParams(location.search);
  window.letPlots = {};   // the uPlot instances, for anyone (and the browser tests) to inspect
  window.letData = {};    // the last JSON each view drew

  const fmtWh = (kwh) => kwh == null ? "–" : (kwh >= 1 ? kwh.toFixed(3) + " kWh" : (kwh * 1000).toFixed(3) + " Wh");
  const fmtG = (kg) => kg == null ? "–" : (kg >= 1 ? kg.toFixed(3) + " kg" : (kg * 1000).toFixed(3) + " g");
  const fmtS = (s) => s == null ? "–" : s.toFixed(1) + " s";

  function showError(message) {
    const box = document.getElementById("error");
    box.textContent = message || "";
    box.hidden = !message;
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
    document.getElementById("store").textContent = data.store + " · " + data.rows.toLocaleString() + " rows";
    for (const name of ["project", "user", "host", "backend"]) {
      const select = form.elements[name];
      for (const value of data.choices[name]) {
        const option = document.createElement("option");
        option.value = option.textContent = value;
        select.appendChild(option);
      }
    }
  }

  function fillForm() {
    for (const name of FILTERS) { form.elements[name].value = state.get(name) || ""; }
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

  // ------------------------------------------------------------------ runs
  const COLUMNS = [
    ["start_time", "Start (UTC)", (v) => (v || "").replace("T", " ").slice(0, 19)],
    ["project_name", "Project"], ["user", "User"], ["hostname", "Host"], ["backend", "Backend"],
    ["kind", "Kind"], ["task", "Task", null, false],
    ["energy_consumed", "Energy", fmtWh, true, "num"], ["emissions", "CO2e", fmtG, true, "num"],
    ["duration", "Duration", fmtS, true, "num"], ["run_status", "Status"],
    ["run_id", "Run", (v) => (v || "").slice(0, 8), false],
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
    const body = document.querySelector("#runs tbody");
    body.innerHTML = "";
    for (const row of data.rows) {
      const tr = document.createElement("tr");
      for (const [key, , format, , cls] of COLUMNS) {
        const td = document.createElement("td");
        td.textContent = format ? format(row[key]) : (row[key] == null ? "" : row[key]);
        td.dataset.col = key;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    for (const th of document.querySelectorAll("#runs th[data-sort]")) {
      th.classList.toggle("sorted", th.dataset.sort === data.sort);
      th.classList.toggle("asc", data.order === "asc");
    }
    document.getElementById("count").textContent =
      data.total.toLocaleString() + " row(s) match " + data.filter;
    document.getElementById("pageinfo").textContent = "page " + data.page + " of " + data.pages;
    document.getElementById("prev").disabled = data.page <= 1;
    document.getElementById("next").disabled = data.page >= data.pages;
  }

  function turnPage(delta) {
    const current = parseInt(state.get("page") || "1", 10);
    state.set("page", String(Math.max(1, current + delta)));
    syncUrl(); refresh();
  }

  // ------------------------------------------------------------------ project view
  function chartWidth(element) { return Math.max(280, element.clientWidth - 10); }

  function replacePlot(name, element, options, data) {
    if (window.letPlots[name]) window.letPlots[name].destroy();
    element.innerHTML = "";
    window.letPlots[name] = new uPlot(options, data, element);
  }

  function totalsTable(id, group, rows) {
    const table = document.getElementById(id);
    table.innerHTML = "<thead><tr><th>" + group + "</th><th class=num>runs</th><th class=num>energy</th>" +
      "<th class=num>CO2e</th><th class=num>hours</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      const cells = [row[group] || "(none)", String(row.runs), fmtWh(row.kwh), fmtG(row.kg), row.hours.toFixed(2)];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (i) td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    }
    table.appendChild(body);
  }

  async function drawProject() {
    const data = await api("/api/summary", filterParams());
    window.letData.summary = data;
    const energy = document.getElementById("chart-energy");
    replacePlot("energy", energy, {
      width: chartWidth(energy), height: 260,
      scales: { x: { time: true } },
      series: [{}, { label: "energy (kWh)", stroke: "#1f6feb", width: 2, scale: "kwh" },
                   { label: "emissions (kg CO2e)", stroke: "#d97706", width: 2, scale: "kg" }],
      axes: [{}, { scale: "kwh", label: "kWh" }, { scale: "kg", side: 1, label: "kg CO2e", grid: { show: false } }],
    }, [data.series.t, data.series.kwh, data.series.kg]);

    const scatter = document.getElementById("chart-scatter");
    const points = data.scatter.points.slice().sort((a, b) => a[0] - b[0]);
    const xs = points.map((p) => p[0] * 1000), ys = points.map((p) => p[1] * 1000);
    replacePlot("scatter", scatter, {
      width: chartWidth(scatter), height: 300,
      scales: { x: { time: false } },
      series: [{ label: "estimate (Wh)" },
               { label: "metered (Wh)", stroke: "#1f6feb", paths: () => null, points: { show: true, size: 7 } },
               { label: "y = x", stroke: "#888", dash: [6, 4], width: 1, points: { show: false } }],
      axes: [{ label: "estimate (Wh)" }, { label: "metered (Wh)" }],
    }, [xs, ys, xs.slice()]);
    document.getElementById("ratio").textContent = data.scatter.runs
      ? data.scatter.runs + " run(s) measured both ways; metered / estimate = " + data.scatter.ratio.toFixed(2) +
        (data.scatter.shown < data.scatter.runs ? " (the " + data.scatter.shown + " largest shown)" : "")
      : "No run of this filter was measured both ways (an estimate and a metered backend).";
    for (const group of ["host", "backend", "job"]) totalsTable("totals-" + group, group, data.totals[group]);
  }

  // ------------------------------------------------------------------ statement
  async function drawStatement() {
    const text = document.getElementById("statement-text"), bib = document.getElementById("bibtex");
    try {
      const data = await api("/api/statement", filterParams());
      window.letData.statement = data;
      document.getElementById("statement-filter").textContent = "(" + data.filter + ")";
      text.textContent = data.statement;
      bib.textContent = data.bibtex;
    } catch (error) {
      if (error.status !== 404) throw error;
      text.textContent = error.message; bib.textContent = "";
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
      if (page === "runs") await drawRuns();
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
