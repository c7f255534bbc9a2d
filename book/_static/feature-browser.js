// The feature browser (sae_paper.book.feature_browser, feature_pages): click an index column header to sort by
// it, type in the box to filter the rows; each card's contexts arrive as JSON and are drawn as shaded tokens when
// the card comes near the screen, so a page of a hundred cards loads at once. The book's own code, served from
// _static: nothing is fetched. Jupyter Book adds every .js file of book/_static to every page; on pages without
// an index or cards it does nothing.
function fbDrawContexts(box) {
  var data = box.querySelector("script.fb-data");
  if (!data || box.dataset.drawn) { return; }
  box.dataset.drawn = "1";
  JSON.parse(data.textContent).forEach(function (part) {
    var table = document.createElement("table");
    table.className = "fb-ctx";
    table.createCaption().textContent = part.title;
    var head = table.insertRow();
    ["act.", "context"].forEach(function (name) {
      var cell = document.createElement("th");
      cell.textContent = name;
      head.appendChild(cell);
    });
    var top = 0;
    part.rows.forEach(function (row) { row[3].forEach(function (v) { top = Math.max(top, v); }); });
    top = top || 1;
    part.rows.forEach(function (row) {
      var line = table.insertRow();
      line.insertCell().textContent = row[0].toFixed(2);
      var context = line.insertCell();
      row[2].forEach(function (token, i) {
        var span = document.createElement("span");
        span.textContent = token.replace(/\n/g, "\u21b5").replace(/ /g, "\u00a0");
        span.style.backgroundColor = "rgba(255,140,0," + (row[3][i] / top).toFixed(2) + ")";
        span.title = row[3][i].toFixed(2);
        if (i === row[1]) { span.className = "fb-focus"; }
        context.appendChild(span);
      });
    });
    box.appendChild(table);
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var boxes = document.querySelectorAll(".fb-contexts");
  if ("IntersectionObserver" in window) {
    var watcher = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (entry.isIntersecting) { fbDrawContexts(entry.target); watcher.unobserve(entry.target); }
      });
    }, {rootMargin: "800px 0px"});
    boxes.forEach(function (box) { watcher.observe(box); });
  } else {
    boxes.forEach(fbDrawContexts);
  }

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
