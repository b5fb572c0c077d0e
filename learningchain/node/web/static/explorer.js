// LearningChain explorer, index page: live updates without a page reload.
// Same origin only, no framework. Every second it asks GET /live (a few dozen
// bytes) and updates #height, #round, #mempool and #peers; only when the tip or
// the newest measured round moved (or the axis checkbox changed) it fetches this
// page again and swaps in every element marked data-live (tables, chart,
// baselines), so the server renders everything in one place. Each request
// gives up after TIMEOUT_MS (a node that accepts and then stalls must not hang
// the poll): #live then says so and the poll backs off as on any other error.
"use strict";
(function () {
  var POLL_MS = 1000, MAX_BACKOFF_MS = 10000, TIMEOUT_MS = 5000;
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

  // An AbortController that fires after TIMEOUT_MS: its signal goes to fetch, and
  // done() must be called once the body is read (the timeout covers headers and body).
  function deadline() {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, TIMEOUT_MS);
    return {signal: ctl.signal, done: function () { clearTimeout(timer); }};
  }

  function reason(err) {
    if (err && err.name === "AbortError") return "no answer in " + TIMEOUT_MS / 1000 + " s";
    return err && err.message ? err.message : String(err);
  }

  function showError(err) {
    if (!liveEl) return;
    var since = liveEl.getAttribute("data-updated");
    liveEl.textContent = "node not answering (" + reason(err) + ")" +
      (since ? "; last update " + clock(new Date(Number(since))) : "") +
      "; retrying in " + Math.round(delay / 1000) + " s";
    liveEl.classList.add("stale");
  }

  function pageUrl() {
    return axisBox && !axisBox.checked ? "/?axis=data" : "/";
  }

  function refresh() {
    if (busy) { pending = true; return Promise.resolve(); }
    busy = true;
    var t = deadline();
    return fetch(pageUrl(), {headers: {Accept: "text/html"}, cache: "no-store", signal: t.signal})
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
        t.done();
        busy = false;
        if (pending) { pending = false; refresh().catch(showError); }
      });
  }

  function tick() {
    if (document.hidden) { setTimeout(tick, POLL_MS); return; }  // a background tab costs the node nothing
    var t = deadline();
    fetch("/live", {headers: {Accept: "application/json"}, cache: "no-store", signal: t.signal})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .finally(t.done)
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
        showError(err);
      })
      .finally(function () { setTimeout(tick, delay); });
  }

  if (axisBox) {
    axisBox.addEventListener("change", function () {
      history.replaceState(null, "", pageUrl());
      refresh().catch(showError);
    });
  }
  tick();
})();
