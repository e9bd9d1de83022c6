"""``DIR/report.html``: a static page to browse a job's results, made from its store.

The page needs no server and no network: open it from the folder. Its rows are
in ``report.js`` beside it (loaded with a ``<script>`` tag, which browsers allow
for local files). Overlays show as thumbnails, loaded only on the page shown;
the table sorts by any column, filters ok, error or degenerate rows, and pages
through 100 rows at a time, so a job of 100,000 images stays quick to browse.
The state of the view is in the address (``report.html#sort=probability&desc=1
&page=3&show=error``): a view can be bookmarked or shared.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["PAGE_ROWS", "REPORT_FILE", "write_report"]

#: The page's name inside the output folder, and its data's.
REPORT_FILE = "report.html"
_DATA_FILE = "report.js"

#: Rows shown per page.
PAGE_ROWS = 100

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>groupcam explain: report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .3em; }
#summary { margin: 0 0 1em; color: #444; }
#controls { display: flex; gap: 1em; align-items: center; margin: 0 0 .8em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }
td { vertical-align: middle; }
th { background: #f4f4f4; cursor: pointer; user-select: none; white-space: nowrap; }
th.sorted.asc::after { content: " \\25B2"; }
th.sorted.desc::after { content: " \\25BC"; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td { background: #fff1f0; }
tr.degenerate td { background: #fffbe6; }
img.thumb { width: 128px; height: auto; display: block; }
.message { color: #a8071a; max-width: 24em; }
</style>
</head>
<body>
<h1>groupcam explain</h1>
<p id="summary"></p>
<div id="controls">
  <label>Show <select id="show">
    <option value="all">all images</option>
    <option value="ok">explained</option>
    <option value="error">errors</option>
    <option value="degenerate">degenerate maps</option>
  </select></label>
  <button id="previous" type="button">&larr; previous</button>
  <span id="position"></span>
  <button id="next" type="button">next &rarr;</button>
</div>
<table id="rows"><thead><tr id="head"></tr></thead><tbody id="body"></tbody></table>
<script src="report.js"></script>
<script>
(function () {
  "use strict";
  var data = window.GROUPCAM_REPORT;
  var columns = data.columns, rows = data.rows, pageRows = data.page_rows;
  var index = {};
  columns.forEach(function (name, i) { index[name] = i; });
  var numeric = { target: 1, probability: 1, insertion_auc: 1, deletion_auc: 1, seconds: 1 };
  var labels = { overlay: "overlay or error", path: "image", target_name: "class",
                 insertion_auc: "insertion AUC", deletion_auc: "deletion AUC" };
  var shown = ["overlay"].concat(columns.filter(function (c) { return c !== "error"; }));

  function state() {
    var found = { sort: "", desc: false, page: 1, show: "all" };
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var pair = part.split("=");
      if (pair.length !== 2) { return; }
      var key = decodeURIComponent(pair[0]), value = decodeURIComponent(pair[1]);
      if (key === "sort" && index.hasOwnProperty(value)) { found.sort = value; }
      if (key === "desc") { found.desc = value === "1"; }
      if (key === "page") { found.page = Math.max(1, parseInt(value, 10) || 1); }
      if (key === "show") { found.show = value; }
    });
    return found;
  }
  function go(changes) {
    var next = Object.assign(state(), changes);
    location.hash = "sort=" + encodeURIComponent(next.sort) + "&desc=" + (next.desc ? 1 : 0) +
      "&page=" + next.page + "&show=" + encodeURIComponent(next.show);
  }
  function keep(row, show) {
    var status = row[index.status];
    if (show === "ok") { return status === "ok"; }
    if (show === "error") { return status !== "ok"; }
    if (show === "degenerate") {
      return status === "ok" && String(row[index.degenerate]) === "true";
    }
    return true;
  }
  function compare(column, desc) {
    var at = index[column], sign = desc ? -1 : 1;
    return function (a, b) {
      var x = a[at], y = b[at];
      var xm = x === "" || x === null, ym = y === "" || y === null;
      if (xm || ym) { return xm === ym ? 0 : (xm ? 1 : -1); }  // empty cells last
      if (numeric[column]) { return sign * (Number(x) - Number(y)); }
      return sign * String(x).localeCompare(String(y));
    };
  }
  function cell(row, column) {
    var td = document.createElement("td");
    if (column === "overlay") {
      if (row[index.status] === "ok") {
        var img = document.createElement("img");
        img.className = "thumb";
        img.loading = "lazy";
        img.alt = row[index.name];
        img.src = "overlays/" + encodeURIComponent(row[index.name]) + ".png";
        td.appendChild(img);
      } else {
        td.className = "message";
        td.textContent = row[index.error];
      }
      return td;
    }
    var value = row[index[column]];
    if (numeric[column] && value !== "" && value !== null) {
      td.className = "number";
      value = column === "target" ? String(value) : Number(value).toFixed(4);
    }
    td.textContent = value === null ? "" : String(value);
    if (column === "path") { td.title = td.textContent; }
    return td;
  }
  function render() {
    var view = state();
    document.getElementById("show").value = view.show;
    var kept = rows.filter(function (row) { return keep(row, view.show); });
    if (view.sort) { kept.sort(compare(view.sort, view.desc)); }
    var pages = Math.max(1, Math.ceil(kept.length / pageRows));
    var page = Math.min(view.page, pages);
    var head = document.getElementById("head");
    head.textContent = "";
    shown.forEach(function (column) {
      var th = document.createElement("th");
      th.textContent = labels[column] || column;
      th.dataset.column = column;
      if (column === view.sort) { th.className = "sorted " + (view.desc ? "desc" : "asc"); }
      if (column !== "overlay") {
        th.addEventListener("click", function () {
          go({ sort: column, desc: column === view.sort ? !view.desc : false, page: 1 });
        });
      }
      head.appendChild(th);
    });
    var body = document.getElementById("body");
    body.textContent = "";
    kept.slice((page - 1) * pageRows, page * pageRows).forEach(function (row) {
      var tr = document.createElement("tr");
      var status = row[index.status];
      tr.className = status !== "ok" ? "error" :
        (String(row[index.degenerate]) === "true" ? "degenerate" : "ok");
      shown.forEach(function (column) { tr.appendChild(cell(row, column)); });
      body.appendChild(tr);
    });
    document.getElementById("position").textContent =
      "page " + page + " of " + pages + " (" + kept.length + " rows)";
    document.getElementById("previous").disabled = page <= 1;
    document.getElementById("next").disabled = page >= pages;
    document.getElementById("previous").onclick = function () { go({ page: page - 1 }); };
    document.getElementById("next").onclick = function () { go({ page: page + 1 }); };
  }
  var counts = data.summary.counts;
  function count(n, one, many) { return n + " " + (n === 1 ? one : many); }
  document.getElementById("summary").textContent =
    counts.ok + " of " + count(counts.images, "image", "images") + " explained, " +
    count(counts.error, "error", "errors") + ", " +
    count(counts.degenerate, "degenerate map", "degenerate maps") +
    ". Written " + data.summary.written + ".";
  document.getElementById("show").addEventListener("change", function (event) {
    go({ show: event.target.value, page: 1 });
  });
  window.addEventListener("hashchange", render);
  render();
})();
</script>
</body>
</html>
"""


def _atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "True":
        return "true"
    if value == "False":
        return "false"
    if isinstance(value, float) and not math.isfinite(value):  # no NaN or infinity in JSON
        return ""
    return value


def write_report(
    root: Path, rows: list[dict[str, Any]], columns: list[str], summary: dict[str, Any]
) -> Path:
    """Write ``report.html`` and its rows, ``report.js``, into the output folder ``root``.

    Parameters
    ----------
    root
        The output folder (overlays are linked as ``overlays/<name>.png``).
    rows
        The rows of ``results.csv``, in its order.
    columns
        Its columns.
    summary
        What ``summary.json`` holds (the page shows its counts).
    """
    data = {
        "columns": columns,
        "rows": [[_value(row.get(column, "")) for column in columns] for row in rows],
        "summary": {"counts": summary["counts"], "written": summary["written"]},
        "page_rows": PAGE_ROWS,
    }
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    safe = payload.replace("</", "<\\/")  # "</" inside a string could not end the script
    _atomic(root / _DATA_FILE, "window.GROUPCAM_REPORT = " + safe + ";\n")
    page = root / REPORT_FILE
    if not page.exists() or page.read_text(encoding="utf-8") != _PAGE:
        _atomic(page, _PAGE)
    return page
