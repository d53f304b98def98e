// Draw every chart whose data a page carries in a <script type="application/json"> block
// (no inline script: the Content-Security-Policy allows scripts from the console only).
function drawCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    if (canvas.dataset.drawn) return;
    var source = root.querySelector('script[data-chart-for="' + canvas.id + '"]');
    if (!source) return;
    var data = JSON.parse(source.textContent);
    canvas.dataset.drawn = "1";
    new Chart(canvas, {
      type: canvas.dataset.chart,
      data: {
        labels: data.labels,
        datasets: (data.datasets || [{ label: data.label, values: data.values }]).map(
          function (set) { return { label: set.label, data: set.values }; }),
      },
      options: { animation: false, plugins: { legend: { display: !!data.datasets } } },
    });
  });
}
document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
document.addEventListener("htmx:afterSettle", function (event) { drawCharts(event.target); });
