// LearningChain explorer, index page: live updates without a page reload.
// Same origin only, no framework. Every second it asks GET /live (a few dozen
// bytes) and updates #height, #round, #mempool and #peers; only when the tip or
// the newest measured round moved (or the axis checkbox changed) it fetches this
// page again and swaps in every element marked data-live (tables, chart,
// baselines), so the server renders everything in one place.
"use strict";
(function () {
  var POLL_MS = 1000, MAX_BACKOFF_MS = 10000;
  var seen = null, delay = POLL_MS, busy = false, pending = false;
  var axisBox = document.getElementById("fixed-axis");
  var liveEl = document.getElementById("live");
  if (liveEl && liveEl.getAttribute("data-key")) seen = liveEl.getAttribute("data-key");

  function clock(d) {
    return d.toTimeString().slice(0, 8);
  }

  function setNumber(id, value, href) {
    var el = document.getElementById(id);
    if (!el) return;
    var a = el.querySelector("a");
    var target = a || el;
    if (target.textContent !== String(value)) target.textContent = String(value);
    if (a && href) a.setAttribute("href", href);
  }

  function pageUrl() {
    return axisBox && !axisBox.checked ? "/?axis=data" : "/";
  }

  function refresh() {
    if (busy) { pending = true; return Promise.resolve(); }
    busy = true;
    return fetch(pageUrl(), {headers: {Accept: "text/html"}, cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var parts = document.querySelectorAll("[data-live][id]");
        for (var i = 0; i < parts.length; i++) {
          var fresh = doc.getElementById(parts[i].id);
          if (fresh) parts[i].replaceWith(document.importNode(fresh, true));
        }
      })
      .finally(function () {
        busy = false;
        if (pending) { pending = false; refresh(); }
      });
  }

  function tick() {
    if (document.hidden) { setTimeout(tick, POLL_MS); return; }  // a background tab costs the node nothing
    fetch("/live", {headers: {Accept: "application/json"}, cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) {
        setNumber("height", s.height, "/blocks/" + s.height);
        setNumber("round", s.round, "/rounds/" + s.round);
        setNumber("mempool", s.mempool);
        setNumber("peers", s.peers);
        var key = s.tip + "/" + s.measured + "/" + s.round;
        var moved = key !== seen;
        seen = key;
        return moved ? refresh() : null;
      })
      .then(function () {
        delay = POLL_MS;
        if (liveEl) {
          liveEl.textContent = "live: updated " + clock(new Date());
          liveEl.setAttribute("data-updated", String(Date.now()));
          liveEl.classList.remove("stale");
        }
      })
      .catch(function (err) {
        delay = Math.min(MAX_BACKOFF_MS, delay * 2);
        if (liveEl) {
          var since = liveEl.getAttribute("data-updated");
          liveEl.textContent = "node not answering (" + err.message + ")" +
            (since ? "; last update " + clock(new Date(Number(since))) : "") +
            "; retrying in " + Math.round(delay / 1000) + " s";
          liveEl.classList.add("stale");
        }
      })
      .finally(function () { setTimeout(tick, delay); });
  }

  if (axisBox) {
    axisBox.addEventListener("change", function () {
      history.replaceState(null, "", pageUrl());
      refresh();
    });
  }
  tick();
})();
