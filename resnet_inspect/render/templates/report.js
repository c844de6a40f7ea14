"use strict";
// resnet-inspect report: zoom and pan the diagram, sort and filter the layer table, and show a
// layer's explanation on a click. No library, no network: everything it reads is in this page.
(function () {
  function setUpDiagram(article, data, show) {
    var box = article.querySelector(".diagram");
    var svg = box && box.querySelector("svg");
    if (!svg) { return; }
    var start = svg.viewBox.baseVal;
    var home = [start.x, start.y, start.width, start.height];
    var view = home.slice();
    function apply() { svg.setAttribute("viewBox", view.join(" ")); }
    function zoom(factor, cx, cy) {
      var w = view[2] * factor, h = view[3] * factor;
      view = [cx - (cx - view[0]) * factor, cy - (cy - view[1]) * factor, w, h];
      apply();
    }
    function centre() { return [view[0] + view[2] / 2, view[1] + view[3] / 2]; }
    function toView(event) {
      var rect = svg.getBoundingClientRect();
      var scale = Math.max(view[2] / rect.width, view[3] / rect.height);
      var c = centre();
      return [c[0] + (event.clientX - rect.left - rect.width / 2) * scale,
              c[1] + (event.clientY - rect.top - rect.height / 2) * scale, scale];
    }
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    box.addEventListener("wheel", function (event) {
      event.preventDefault();
      var p = toView(event);
      zoom(event.deltaY < 0 ? 0.8 : 1.25, p[0], p[1]);
    }, { passive: false });
    article.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var c = centre(), how = button.getAttribute("data-zoom");
        if (how === "reset") { view = home.slice(); apply(); } else { zoom(how === "in" ? 0.8 : 1.25, c[0], c[1]); }
      });
    });
    var drag = null;
    box.addEventListener("mousedown", function (event) {
      drag = { x: event.clientX, y: event.clientY, moved: false, scale: toView(event)[2] };
      box.classList.add("dragging");
    });
    window.addEventListener("mousemove", function (event) {
      if (!drag) { return; }
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) > 2) { drag.moved = true; }
      view[0] -= dx * drag.scale; view[1] -= dy * drag.scale;
      drag.x = event.clientX; drag.y = event.clientY;
      apply();
    });
    window.addEventListener("mouseup", function () {
      box.classList.remove("dragging");
      setTimeout(function () { drag = null; }, 0);
    });
    svg.querySelectorAll("g.node").forEach(function (node) {
      var title = node.querySelector("title");
      var entry = title && data.nodes[title.textContent];
      if (!entry) { return; }
      node.addEventListener("click", function (event) {
        if (drag && drag.moved) { return; }
        event.preventDefault();
        svg.querySelectorAll("g.node.selected").forEach(function (n) { n.classList.remove("selected"); });
        node.classList.add("selected");
        show(entry.record, entry.rows);
      });
    });
  }

  function setUpTable(article, show) {
    var table = article.querySelector("table.layers");
    var body = table.tBodies[0];
    var count = article.querySelector(".count");
    var filter = article.querySelector(".filter");
    var rows = Array.prototype.slice.call(body.rows);
    function counted() {
      var shown = rows.filter(function (r) { return !r.hidden; }).length;
      count.textContent = shown + " of " + rows.length + " rows";
    }
    filter.addEventListener("input", function () {
      var needle = filter.value.toLowerCase();
      rows.forEach(function (r) { r.hidden = needle !== "" && r.textContent.toLowerCase().indexOf(needle) < 0; });
      counted();
    });
    table.querySelectorAll("th").forEach(function (th) {
      th.addEventListener("click", function () {
        var col = Number(th.getAttribute("data-col"));
        var numeric = th.getAttribute("data-numeric");
        var descending = !th.classList.contains("sorted-desc");
        table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-desc", "sorted-asc"); });
        th.classList.add(descending ? "sorted-desc" : "sorted-asc");
        var key = numeric ? function (r) { return Number(r.getAttribute("data-" + numeric)); }
                          : function (r) { return r.cells[col].textContent.trim(); };
        var sorted = rows.slice().sort(function (a, b) {
          var ka = key(a), kb = key(b);
          var order = ka < kb ? -1 : ka > kb ? 1 : 0;
          if (descending) { order = -order; }
          return order || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
        });
        sorted.forEach(function (r) { body.appendChild(r); });
      });
    });
    rows.forEach(function (r) {
      r.addEventListener("click", function () {
        var index = Number(r.getAttribute("data-index"));
        show(index, [index]);
      });
    });
    counted();
  }

  document.querySelectorAll("article.model").forEach(function (article) {
    var data = JSON.parse(article.querySelector("script.report-data").textContent);
    var hint = article.querySelector(".explain-hint");
    var text = article.querySelector(".explain-text");
    function show(record, covered) {
      var wanted = {};
      covered.forEach(function (i) { wanted[i] = true; });
      var first = null;
      article.querySelectorAll("table.layers tbody tr").forEach(function (r) {
        var on = wanted[Number(r.getAttribute("data-index"))] === true;
        r.classList.toggle("highlight", on);
        if (on && !first && !r.hidden) { first = r; }
      });
      text.textContent = data.explain[String(record)] || "";
      hint.hidden = true;
      if (first) { first.scrollIntoView({ block: "nearest" }); }
    }
    setUpDiagram(article, data, show);
    setUpTable(article, show);
  });
})();
