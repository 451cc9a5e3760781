// Diffie report: compare views for changed screenshots, zoom to a region, keyboard navigation.
// Inlined in index.html and allowed by its Content-Security-Policy hash; the report reads
// nothing but its own folder. Without this script the side-by-side view still works.
(function () {
  "use strict";
  var MODES = ["side", "swipe", "onion", "blink", "diff"];
  document.documentElement.classList.add("js");
  // served by Diffie (not opened from disk): traces open in its trace viewer
  if (/^https?:$/.test(window.location.protocol)) document.documentElement.classList.add("served");

  function setMode(block, mode) {
    if (MODES.indexOf(mode) < 0) return;
    block.setAttribute("data-mode", mode);
    var buttons = block.querySelectorAll("button[data-mode]");
    for (var i = 0; i < buttons.length; i++) {
      var on = buttons[i].getAttribute("data-mode") === mode;
      buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
    }
    var range = block.querySelector("input.amount");
    if (range) range.hidden = !(mode === "swipe" || mode === "onion");
  }

  function setAmount(block, value) {
    var stage = block.querySelector(".stage");
    if (stage) stage.style.setProperty("--amount", String(value / 100));
  }

  function zoom(block, box) {
    var stage = block.querySelector(".stage");
    if (!stage) return;
    if (stage.classList.contains("zoomed") || !box) {
      stage.classList.remove("zoomed");
      stage.style.removeProperty("--origin");
      return;
    }
    var x = parseFloat(box.getAttribute("data-cx")), y = parseFloat(box.getAttribute("data-cy"));
    stage.style.setProperty("--origin", x + "% " + y + "%");
    stage.classList.add("zoomed");
  }

  var blocks = Array.prototype.slice.call(document.querySelectorAll(".compare"));
  blocks.forEach(function (block) {
    block.addEventListener("click", function (ev) {
      var target = ev.target;
      if (!(target instanceof Element)) return;
      var button = target.closest("button[data-mode]");
      if (button) { setMode(block, button.getAttribute("data-mode")); return; }
      var box = target.closest(".stage .box");
      if (box) { ev.preventDefault(); zoom(block, box); return; }
      if (target.closest(".stage")) zoom(block, null);
    });
    var range = block.querySelector("input.amount");
    if (range) {
      range.addEventListener("input", function () { setAmount(block, Number(range.value)); });
      setAmount(block, Number(range.value));
    }
    setMode(block, block.getAttribute("data-mode") || "side");
  });

  // j / k: next / previous changed screenshot or finding; 1-5: the view of the current one
  var stops = Array.prototype.slice.call(document.querySelectorAll("[data-stop]"));
  var current = -1;
  function go(step) {
    if (!stops.length) return;
    current = Math.max(0, Math.min(stops.length - 1, current + step));
    var el = stops[current];
    el.scrollIntoView({block: "start"});
    if (typeof el.focus === "function") el.focus({preventScroll: true});
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var t = ev.target;
    if (t instanceof Element && t.closest("input, textarea, select")) return;
    if (ev.key === "j") { go(1); ev.preventDefault(); }
    else if (ev.key === "k") { go(-1); ev.preventDefault(); }
    else if (ev.key >= "1" && ev.key <= "5") {
      var el = stops[current] || null;
      var block = el && (el.classList.contains("compare") ? el : el.querySelector(".compare"));
      if (block) setMode(block, MODES[Number(ev.key) - 1]);
    } else if (ev.key === "Escape") {
      blocks.forEach(function (b) { zoom(b, null); });
    }
  });

  // filters: show the findings of one kind, flow or viewport
  var filters = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.findings tbody tr"));
  var shown = document.querySelector("[data-shown]");
  function applyFilters() {
    var visible = 0;
    rows.forEach(function (row) {
      var ok = filters.every(function (f) {
        return !f.value || row.getAttribute("data-" + f.getAttribute("data-filter")) === f.value;
      });
      row.hidden = !ok;
      if (ok) visible++;
    });
    if (shown) shown.textContent = visible === rows.length ? "" : visible + " of " + rows.length + " shown";
  }
  filters.forEach(function (f) { f.addEventListener("change", applyFilters); });

  // approve (served by Diffie): the same approval as the API, the CLI and GitHub's button;
  // it needs a token with the submit scope, asked once and kept for this tab only
  var api = (window.location.pathname.match(/^(.*\/v1\/runs\/[0-9a-zA-Z_-]+\/)/) || [])[1];
  function approve(button) {
    var status = button.parentNode.querySelector("[data-approve-status]");
    var ids = (button.getAttribute("data-approve") || "").split(" ").filter(Boolean);
    var note = window.prompt("Why is this change intended? (shown with the approval)", "");
    if (note === null) return;
    var token = window.sessionStorage.getItem("diffie-token");
    if (token === null) {
      token = window.prompt("A Diffie API token with the submit scope (empty if the API has none)", "");
      if (token === null) return;
    }
    var headers = {"Content-Type": "application/json"};
    if (token) headers.Authorization = "Bearer " + token;
    status.textContent = "approving…";
    fetch(api + "approve", {method: "POST", headers: headers, credentials: "omit",
      body: JSON.stringify({findings: ids, note: note || null, by: "the report"})})
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (body) {
          if (resp.ok) {
            window.sessionStorage.setItem("diffie-token", token);
            status.textContent = "approved " + body.approved.length + " change(s)" +
              (body.whole_run ? "; the run is approved" : "");
            button.disabled = true;
          } else {
            if (resp.status === 401 || resp.status === 403) window.sessionStorage.removeItem("diffie-token");
            status.textContent = "not approved (" + resp.status + "): " +
              String(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "")).slice(0, 200);
          }
        });
      })
      .catch(function (err) { status.textContent = "not approved: " + String(err).slice(0, 200); });
  }
  if (api) {
    document.documentElement.classList.add("can-approve");
    Array.prototype.slice.call(document.querySelectorAll("button[data-approve]")).forEach(function (b) {
      b.addEventListener("click", function () { approve(b); });
    });
  }
})();
