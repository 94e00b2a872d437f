// LET dashboard, calibration page: each calibrated host's paired runs, fitted line and band, and
// the estimate-only runs it corrected (from /api/calibration). Drawn with uPlot like the other pages.
"use strict";
(function () {
  window.letPlots = window.letPlots || {};
  window.letData = window.letData || {};
  const root = document.getElementById("calibrations");
  const notes = document.getElementById("calibration-notes");
  const SHOWN = 50;

  // uPlot shares one x array: every series gets a value at its own x, null elsewhere.
  function aligned(groups) {
    const xs = Array.from(new Set(groups.flatMap((g) => g.x))).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    return [xs, ...groups.map((g) => {
      const ys = new Array(xs.length).fill(null);
      g.x.forEach((x, i) => { ys[index.get(x)] = g.y[i]; });
      return ys;
    })];
  }

  function hostSection(view) {
    const section = document.createElement("section");
    section.className = "calibration";
    section.dataset.host = view.host;
    const title = document.createElement("h2");
    title.textContent = view.host;
    const words = document.createElement("p");
    words.className = "description";
    words.textContent = view.description;
    const details = document.createElement("pre");
    details.className = "copyable";
    details.textContent = view.details.slice(1).join("\n");
    const chart = document.createElement("div");
    chart.className = "chart";
    section.append(title, words, chart, details);
    root.appendChild(section);
    const c = view.corrected, l = view.line, p = view.paired;
    const data = aligned([{ x: p.estimate_w, y: p.wall_w }, { x: l.estimate_w, y: l.wall_w },
      { x: l.estimate_w, y: l.low_w }, { x: l.estimate_w, y: l.high_w }, { x: c.estimate_w, y: c.calibrated_w }]);
    const dots = (stroke, size) => ({ stroke, fill: stroke, paths: () => null, points: { show: true, size } });
    const name = "calibration-" + view.host;
    if (window.letPlots[name]) window.letPlots[name].destroy();
    window.letPlots[name] = new uPlot({
      width: Math.max(280, chart.clientWidth - 10), height: 340,
      scales: { x: { time: false } },
      series: [{ label: "estimate (W)" },
        Object.assign({ label: "paired runs: wall (W)" }, dots("#333", 5)),
        { label: "fitted line (W)", stroke: "#1f6feb", width: 2, spanGaps: true, points: { show: false } },
        { label: (view.level * 100).toFixed(0) + "% low", stroke: "#8fb4f5", dash: [4, 3], spanGaps: true, points: { show: false } },
        { label: (view.level * 100).toFixed(0) + "% high", stroke: "#8fb4f5", dash: [4, 3], spanGaps: true, points: { show: false } },
        Object.assign({ label: "corrected runs (W)" }, dots("#d97706", 8))],
      bands: [{ series: [4, 3], fill: "rgba(31,111,235,0.12)" }],
      axes: [{ label: "estimate's mean power (W)" }, { label: "wall mean power (W)" }],
    }, data, chart);
    const table = document.createElement("table");
    table.className = "corrected";
    table.innerHTML = "<thead><tr><th>Run</th><th class=num>estimate</th><th class=num>corrected</th>" +
      "<th class=num>interval</th><th></th></tr></thead>";
    const body = document.createElement("tbody");
    // A table a person reads: the first SHOWN runs, then how many more (all of them are in the chart).
    c.run_id.slice(0, SHOWN).forEach((run, i) => {
      const tr = document.createElement("tr");
      [run.slice(0, 8), c.estimate_w[i].toFixed(1) + " W", c.calibrated_w[i].toFixed(1) + " W",
       c.low_w[i].toFixed(1) + " – " + c.high_w[i].toFixed(1) + " W",
       c.outside_range[i] ? "outside the fitted range: interval widened" : ""].forEach((text, j) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (j && j < 4) td.className = "num";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (c.run_id.length > SHOWN) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 5; td.className = "muted more";
      td.textContent = "… and " + (c.run_id.length - SHOWN).toLocaleString() + " more (`lett results --calibrated` lists every one)";
      tr.appendChild(td); body.appendChild(tr);
    }
    table.appendChild(body);
    const heading = document.createElement("h2");
    heading.textContent = c.run_id.length ? "Estimate-only runs it corrected (" + c.run_id.length.toLocaleString() + ")"
      : "No estimate-only run of this host to correct";
    section.append(heading, table);
  }

  async function draw() {
    document.body.dataset.calibration = "loading";
    const host = new URLSearchParams(location.search).get("host");
    try {
      const response = await fetch("/api/calibration" + (host ? "?host=" + encodeURIComponent(host) : ""));
      const data = await response.json();
      if (!response.ok) throw new Error(data.detail || "HTTP " + response.status);
      window.letData.calibration = data;
      root.innerHTML = "";
      notes.textContent = (data.hosts.length ? "" : "No calibration" + (host ? " of " + host : "") +
        " in " + data.directory + ". ") + data.ignored.join(" ");
      data.hosts.forEach(hostSection);
    } catch (error) {
      notes.textContent = error.message;
    } finally {
      document.body.dataset.calibration = "drawn";
      document.body.dataset.calibrationDrawn = String(Number(document.body.dataset.calibrationDrawn || 0) + 1);
    }
  }
  // The shared filter bar updates the URL; redraw after it has.
  document.getElementById("filters").addEventListener("change", () => setTimeout(draw, 0));
  document.getElementById("clear").addEventListener("click", () => setTimeout(draw, 0));
  draw();
})();
