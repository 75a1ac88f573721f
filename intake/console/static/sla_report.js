// Draws the SLA report's charts from the JSON block the server rendered (no inline
// script: the CSP forbids it). Chart.js is vendored under static/vendor; the labels come
// translated from the server.
"use strict";

(function () {
  const PALETTE = ["#2454c6", "#d1495b", "#7ea3f0", "#f0a3ad"];

  document.addEventListener("DOMContentLoaded", function () {
    const block = document.getElementById("sla-chart-data");
    if (!block || !window.Chart) return;
    const data = JSON.parse(block.textContent);
    // Numbers on the axes in the page's language (Chart.js would take the browser's).
    const common = { responsive: true, maintainAspectRatio: true, animation: false, locale: document.documentElement.lang };
    const achieved = document.getElementById("chart-sla-achieved");
    if (achieved) {
      achieved.chart = new window.Chart(achieved, {
        type: "bar",
        data: {
          labels: data.groups,
          datasets: ["first_response", "resolution"].map(function (t, i) {
            return { label: data.labels[t], data: data.achieved[t], backgroundColor: PALETTE[i] };
          }),
        },
        options: Object.assign({}, common, {
          scales: { y: { beginAtZero: true, max: 100, title: { display: true, text: data.labels.percent } } },
        }),
      });
    }
    const minutes = document.getElementById("chart-sla-minutes");
    if (minutes) {
      const series = ["first_response_median", "first_response_p90", "resolution_median", "resolution_p90"];
      minutes.chart = new window.Chart(minutes, {
        type: "bar",
        data: {
          labels: data.groups,
          datasets: series.map(function (s, i) {
            return { label: data.labels[s], data: data.minutes[s], backgroundColor: PALETTE[[0, 2, 1, 3][i]] };
          }),
        },
        options: Object.assign({}, common, {
          scales: { y: { beginAtZero: true, title: { display: true, text: data.labels.minutes } } },
        }),
      });
    }
    // Tests wait on this rather than on time.
    document.body.dataset.chartsReady = "1";
  });
})();
