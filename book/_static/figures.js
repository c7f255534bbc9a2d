// Figures a reader can read (sae_paper book): a notebook figure drawn wider than the column it sits in is
// shrunk to fit; such a figure gets the class sp-zoomable and opens at its natural size, in an overlay that
// scrolls, on a click (Escape, or another click, closes it). The book's own code, served from _static.
(function () {
  function overlay(src, alt) {
    var layer = document.createElement("div");
    layer.className = "sp-zoom";
    layer.setAttribute("role", "dialog");
    var image = document.createElement("img");
    image.src = src;
    image.alt = alt || "";
    layer.appendChild(image);
    function close() { layer.remove(); document.removeEventListener("keydown", onKey); }
    function onKey(event) { if (event.key === "Escape") { close(); } }
    layer.addEventListener("click", close);
    document.addEventListener("keydown", onKey);
    document.body.appendChild(layer);
  }
  function mark(image) {
    if (!image.complete || !image.naturalWidth) { return; }
    var shrunk = image.naturalWidth > image.clientWidth + 2;
    image.classList.toggle("sp-zoomable", shrunk);
    image.title = shrunk ? "click to enlarge (" + image.naturalWidth + " px wide)" : "";
  }
  function figures() {
    return document.querySelectorAll("article .cell_output img, article img.fb-hist");
  }
  document.addEventListener("DOMContentLoaded", function () {
    figures().forEach(function (image) {
      image.addEventListener("load", function () { mark(image); });
      image.addEventListener("click", function () {
        if (image.classList.contains("sp-zoomable")) { overlay(image.src, image.alt); }
      });
      mark(image);
    });
  });
  window.addEventListener("resize", function () { figures().forEach(mark); });
})();
