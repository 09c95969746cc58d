// Pipeline panel: poll the console's /api/pipeline every 2 s and update the table in place.
(function () {
  "use strict";
  function num(v) { return v === null || v === undefined ? "—" : String(Math.round(v)); }
  function setCell(row, field, text, cls) {
    var cell = row.querySelector('[data-field="' + field + '"]');
    if (!cell) return;
    cell.textContent = text;
    if (cls) cell.className = cls;
  }
  function update(state) {
    document.getElementById("pipeline-at").textContent = state.at;
    state.services.forEach(function (s) {
      var row = document.querySelector('#pipeline tr[data-service="' + s.service + '"]');
      if (!row) return;
      var m = s.metrics;
      setCell(row, "status", s.status_text, "status status-" + s.status);
      setCell(row, "lag", m ? num(m.total_lag) : "—");
      setCell(row, "outbox", m ? num(m.outbox_backlog) : "—");
      setCell(row, "dlq", m ? num(m.total_dead_lettered) : "—");
      setCell(row, "failed", m ? num(m.consumed.failed || 0) : "—");
      setCell(row, "provider", m ? num(m.provider_errors) : "—");
    });
  }
  function poll() {
    fetch("/api/pipeline", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login"; return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (state) { if (state) update(state); })
      .catch(function () { document.getElementById("pipeline-at").textContent = "监控台无响应"; })
      .finally(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
