// Draws the manager charts from the JSON block the server rendered (no inline script:
// the CSP forbids it). Chart.js is vendored under static/vendor.
"use strict";

(function () {
  const PALETTE = ["#2454c6", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6cab", "#30638e", "#e07a5f"];

  // The series' names, in the reader's language (SCRIPT_TEXTS in i18n.py, rendered by base.html).
  let texts = null;
  function t(key) {
    if (!texts) {
      const block = document.getElementById("console-texts");
      try { texts = block ? JSON.parse(block.textContent) : {}; } catch (_) { texts = {}; }
    }
    return texts[key] === undefined ? key : String(texts[key]);
  }

  function draw(id, config) {
    const canvas = typeof id === "string" ? document.getElementById(id) : id;
    if (!canvas) return;
    // Chart.js sets text with canvas APIs, never innerHTML, so labels from data are safe.
    canvas.chart = new window.Chart(canvas, config);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const block = document.getElementById("chart-data");
    if (!block || !window.Chart) return;
    const data = JSON.parse(block.textContent);
    // Numbers on the axes in the page's language (Chart.js would take the browser's).
    const common = { responsive: true, maintainAspectRatio: true, animation: false, locale: document.documentElement.lang };

    draw("chart-outcomes", {
      type: "line",
      data: {
        labels: data.outcomes.map(function (d) { return d.day; }),
        datasets: [
          { label: t("executed"), data: data.outcomes.map(function (d) { return d.executed; }), borderColor: PALETTE[0], backgroundColor: PALETTE[0], tension: 0.2 },
          { label: t("expired"), data: data.outcomes.map(function (d) { return d.expired; }), borderColor: PALETTE[1], backgroundColor: PALETTE[1], tension: 0.2 },
        ],
      },
      options: Object.assign({}, common, { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }),
    });

    draw("chart-sellers", {
      type: "bar",
      data: {
        labels: data.sellers.map(function (s) { return s.seller; }),
        datasets: [
          { label: t("normalized_average"), data: data.sellers.map(function (s) { return s.normalized_average; }), backgroundColor: PALETTE[3] },
          { label: t("average_total"), data: data.sellers.map(function (s) { return s.average; }), backgroundColor: PALETTE[2] },
        ],
      },
      options: common,
    });

    const types = Object.keys(data.cases);
    const categories = Array.from(new Set(types.flatMap(function (t) { return Object.keys(data.cases[t]); }))).sort();
    draw("chart-cases", {
      type: "bar",
      data: {
        labels: types.map(function (k) { return (data.type_labels || {})[k] || k; }),
        datasets: categories.map(function (c, i) {
          return { label: c, data: types.map(function (t) { return data.cases[t][c] || 0; }), backgroundColor: PALETTE[i % PALETTE.length] };
        }),
      },
      options: Object.assign({}, common, { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }),
    });

    document.querySelectorAll("canvas.chart-score").forEach(function (canvas) {
      const q = data.scores[Number(canvas.dataset.index)];
      if (!q) return;
      draw(canvas, {
        type: "bar",
        data: {
          labels: q.scores.map(function (s) { return s.score + (s.weight === null ? "" : " (" + s.weight + ")"); }),
          datasets: [{ label: t("answers"), data: q.scores.map(function (s) { return s.count; }), backgroundColor: PALETTE[4] }],
        },
        options: Object.assign({}, common, { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }),
      });
    });
    document.body.dataset.chartsReady = "1";
  });
})();
