// The feature browser's index tables (sae_paper.feature_browser): click a column header to sort by it,
// type in the box to filter the rows. The book's own code, served from _static: nothing is fetched.
// Jupyter Book adds every .js file of book/_static to every page; on pages without an index it does nothing.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".fb-index").forEach(function (index) {
    var table = index.querySelector("table.fb-table");
    var body = table.tBodies[0];
    var filter = index.querySelector("input.fb-filter");
    filter.addEventListener("input", function () {
      var query = filter.value.trim().toLowerCase();
      Array.prototype.forEach.call(body.rows, function (row) {
        row.hidden = query !== "" && row.textContent.toLowerCase().indexOf(query) < 0;
      });
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.title = "sort by " + header.textContent;
      header.addEventListener("click", function () {
        var numeric = header.dataset.sort === "num";
        var descending = header.dataset.order !== "desc";  // first click: largest first
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { delete h.dataset.order; });
        header.dataset.order = descending ? "desc" : "asc";
        var key = function (row) {
          var cell = row.cells[column];
          if (!numeric) { return cell.textContent.toLowerCase(); }
          var value = parseFloat(cell.dataset.value);
          return isNaN(value) ? -Infinity : value;
        };
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return descending ? -order : order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
});
