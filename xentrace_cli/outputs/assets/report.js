/* xenlat HTML report: click a column header of a table.sortable to sort by it. */
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "") { return parseFloat(v); }
    return cell.textContent.trim();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      th.classList.add("sortable");
      th.title = "sort";
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var descending = th.getAttribute("data-order") !== "desc";
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var xn = typeof x === "number" && !isNaN(x), yn = typeof y === "number" && !isNaN(y);
          var c = (xn && yn) ? x - y : (xn ? -1 : (yn ? 1 : String(x).localeCompare(String(y))));
          return descending ? -c : c;
        });
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("data-order"); });
        th.setAttribute("data-order", descending ? "desc" : "asc");
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
