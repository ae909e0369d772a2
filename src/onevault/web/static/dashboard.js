// The dashboard's script: signs in, asks the stats API for the figures, draws them, and keeps the
// realtime and pipeline figures fresh. Plain JavaScript, no framework, no build step.
//
// The customer id and token live in sessionStorage (this tab only, gone when it closes) and travel
// as the X-Customer-ID and Authorization headers: no cookie, so no other site can ride on them.
(function () {
  "use strict";

  var STORAGE_KEY = "onevault.dashboard.credentials";
  var LIVE_SECONDS = 30;
  var TOP = 10;
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  var HEADLINE = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"];

  var main = document.getElementById("main");
  var root = main.getAttribute("data-root") || "";
  var el = function (id) { return document.getElementById(id); };
  var state = {
    credentials: null,
    range: el("range").value,
    custom: null,          // [from, to] once a custom range is applied
    filters: [],           // {dimension, value, label}
    generation: 0,         // a newer load makes the answers of older ones stale
    liveTimer: null,
    retryTimer: null,
    chart: null,           // the numbers last drawn, to draw them again at another width
    chartWidth: 0
  };

  // ---- credentials -------------------------------------------------------------------------

  function storedCredentials() {
    try {
      var saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
      return saved && saved.customerId && saved.token ? saved : null;
    } catch (e) {
      return null;
    }
  }

  function saveCredentials(credentials) {
    state.credentials = credentials;
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(credentials));
    } catch (e) {
      // Storage refused (private mode quota): the session lasts until the page is left.
    }
  }

  function forgetCredentials() {
    state.credentials = null;
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch (e) { /* nothing stored */ }
  }

  // ---- talking to the service --------------------------------------------------------------

  function HttpError(status, detail, retryAfter) {
    this.status = status;
    this.detail = detail || "";
    this.retryAfter = retryAfter;
  }

  function request(path, body, authenticated) {
    var headers = {};
    if (authenticated) {
      headers["X-Customer-ID"] = state.credentials.customerId;
      headers.Authorization = "Bearer " + state.credentials.token;
    }
    var init = { method: body ? "POST" : "GET", headers: headers, cache: "no-store", credentials: "omit" };
    if (body) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(root + path, init).then(function (response) {
      if (response.ok) return response;
      return response.json().then(function (answer) {
        return answer && answer.detail;
      }, function () {
        return "";
      }).then(function (detail) {
        throw new HttpError(response.status, detail, response.headers.get("Retry-After"));
      });
    }, function () {
      throw new HttpError(0, "");
    });
  }

  function api(path, body) {
    return request(path, body, true).then(function (response) { return response.json(); });
  }

  function query(body) {
    return api("/api/v1/stats/query", body);
  }

  function explain(error) {
    if (!(error instanceof HttpError)) {
      return "Something went wrong while drawing the dashboard: " + (error && error.message || error);
    }
    var detail = error.detail ? " (" + error.detail + ")" : "";
    switch (error.status) {
      case 0: return "The service cannot be reached. Check your connection; the figures are retried every " +
        LIVE_SECONDS + " seconds.";
      case 401: return "The token was refused (401): it is unknown, revoked or expired. Sign in again" + detail + ".";
      case 403: return "This token may not read this customer's figures (403): it must belong to the customer " +
        "and hold the read scope" + detail + ".";
      case 422: return "The service could not answer this question (422)" + detail + ".";
      case 429: return "Too many attempts (429): wait " + (error.retryAfter || "a few") + " seconds and try again.";
      case 503: return "The database is unavailable for now (503); the dashboard retries in " +
        retryDelay(error) + " seconds" + detail + ".";
      case 504: return "Counting these figures took too long and was given up (504). Choose a shorter " +
        "range or remove a filter.";
      default: return "The service answered " + error.status + detail + ".";
    }
  }

  function retryDelay(error) {
    var seconds = parseInt(error.retryAfter, 10);
    return isFinite(seconds) && seconds > 0 ? Math.min(seconds, 300) : 5;
  }

  function isAuthFailure(error) {
    return error instanceof HttpError && (error.status === 401 || error.status === 403);
  }

  // ---- messages ----------------------------------------------------------------------------

  function announce(text) {
    el("status").textContent = text;
  }

  function showError(text) {
    el("error").textContent = text;
    main.setAttribute("data-state", "error");
  }

  function clearError() {
    el("error").textContent = "";
  }

  // ---- formatting --------------------------------------------------------------------------

  var integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  // Compact, and kept on one line (a no-break space): "45s", "23m 05s", "1h 07m".
  function duration(seconds) {
    var s = Math.round(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m\u00a0" + pad(s % 60) + "s";
    return Math.floor(s / 3600) + "h\u00a0" + pad(Math.floor((s % 3600) / 60)) + "m";
  }

  function formatMetric(metric, value) {
    if (value === null || value === undefined) return "–";
    switch (metric) {
      case "bounce_rate": return value.toFixed(1) + " %";
      case "views_per_visit": return value.toFixed(2);
      case "visit_duration": return duration(value);
      default: return integer.format(value);
    }
  }

  // A bucket's start as the API writes it ("2024-05-01", "2024-05-01T13:00:00+02:00", ...).
  function parseBucket(text) {
    var m = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?/.exec(String(text));
    if (!m) return null;
    return { year: +m[1], month: +m[2], day: +m[3], hour: m[4] === undefined ? null : +m[4] };
  }

  function bucketLabel(interval, text, long) {
    var b = parseBucket(text);
    if (!b) return String(text);
    var day = b.day + " " + MONTHS[b.month - 1];
    switch (interval) {
      case "time:hour": return (long ? day + " " + b.year + ", " : "") + pad(b.hour || 0) + ":00";
      case "time:month": return MONTHS[b.month - 1] + " " + b.year;
      case "time:week": return (long ? "Week of " : "") + day + (long ? " " + b.year : "");
      default: return long ? day + " " + b.year : day;
    }
  }

  function dayLabel(text) {
    var b = parseBucket(text);
    return b ? b.day + " " + MONTHS[b.month - 1] + " " + b.year : String(text);
  }

  // ---- the question being asked ------------------------------------------------------------

  function dateRange() {
    return state.range === "custom" && state.custom ? state.custom.slice() : state.range;
  }

  function interval() {
    if (state.range === "today") return "time:hour";
    if (state.range === "12mo") return "time:month";
    if (state.range === "custom" && state.custom) {
      var days = (Date.parse(state.custom[1]) - Date.parse(state.custom[0])) / 86400000 + 1;
      // A day per point up to a year; beyond, months keep the chart readable (and under 1,000 points).
      return days > 366 ? "time:month" : "time:day";
    }
    return "time:day";
  }

  function filters() {
    return state.filters.map(function (f) { return ["is", f.dimension, [f.value]]; });
  }

  // ---- loading -----------------------------------------------------------------------------

  function refresh() {
    writeView();
    var generation = ++state.generation;
    var current = function () { return generation === state.generation && state.credentials !== null; };
    clearTimeout(state.retryTimer);
    main.setAttribute("data-state", "loading");
    main.setAttribute("aria-busy", "true");
    announce("Loading the figures…");
    var question = { date_range: dateRange(), filters: filters() };
    var panels = Array.prototype.slice.call(document.querySelectorAll(".panel"));
    var jobs = [loadTotals(question, current), loadChart(question, current), loadPanels(panels, question, current)];
    return Promise.all(jobs.map(function (job) {
      return job.then(function () { return null; }, function (error) { return error; });
    })).then(function (errors) {
      if (!current()) return;
      main.setAttribute("aria-busy", "false");
      var error = errors.filter(function (e) { return e !== null; })[0];
      if (error) {
        fail(error, refresh);
        return;
      }
      clearError();
      main.setAttribute("data-state", "ready");
      announce("Figures updated for " + el("period").textContent +
        (state.filters.length ? ", filtered by " + state.filters.map(filterText).join(" and ") : "") + ".");
    });
  }

  function fail(error, retry) {
    announce("");
    showError(explain(error));
    if (isAuthFailure(error)) {
      signOut(false);
    } else if (error instanceof HttpError && error.status === 503) {
      state.retryTimer = setTimeout(retry, retryDelay(error) * 1000);
    }
  }

  function loadTotals(question, current) {
    return query({
      date_range: question.date_range,
      metrics: HEADLINE,
      filters: question.filters,
      include: { comparison: "previous_period" }
    }).then(function (answer) {
      if (!current()) return;
      var row = answer.results[0] || { metrics: [], comparison: null };
      var meta = answer.meta || {};
      if (meta.date_range) {
        el("period").textContent = dayLabel(meta.date_range[0]) + " – " + dayLabel(meta.date_range[1]) +
          (meta.time_zone ? " (" + meta.time_zone + ")" : "");
      }
      HEADLINE.forEach(function (metric, i) {
        var card = document.querySelector('.metric[data-metric="' + metric + '"]');
        var value = row.metrics[i];
        var valueEl = card.querySelector(".value");
        valueEl.textContent = formatMetric(metric, value);
        valueEl.setAttribute("data-value", value === null || value === undefined ? "" : String(value));
        showChange(card.querySelector(".change"), metric,
          row.comparison && row.comparison.change ? row.comparison.change[i] : null,
          row.comparison && row.comparison.metrics ? row.comparison.metrics[i] : null);
      });
    });
  }

  // `change` is the percentage change of each figure (the difference in points for the bounce
  // rate), null when the previous figure is 0.
  function showChange(target, metric, change, previous) {
    target.className = "change";
    target.replaceChildren();
    if (previous === null || previous === undefined) return;
    var shown = document.createElement("span");
    shown.setAttribute("aria-hidden", "true");
    var spoken = document.createElement("span");
    spoken.className = "visually-hidden";
    var points = metric === "bounce_rate";
    if (change === null || change === undefined) {
      shown.textContent = "new";
      spoken.textContent = "nothing to compare with in the previous period";
    } else {
      var better = points ? change < 0 : change > 0;
      target.classList.add(change === 0 ? "same" : better ? "better" : "worse");
      shown.textContent = (change > 0 ? "↑ " : change < 0 ? "↓ " : "→ ") + Math.abs(change) + (points ? " pp" : " %");
      spoken.textContent = change === 0 ? "unchanged from the previous period" :
        (change > 0 ? "up " : "down ") + Math.abs(change) + (points ? " percentage points" : " percent") +
        " on the previous period";
    }
    var was = document.createElement("span");
    was.className = "previous";
    was.textContent = " (before: " + formatMetric(metric, previous) + ")";
    target.append(shown, spoken, was);
  }

  function loadChart(question, current) {
    var bucket = interval();
    el("chart").setAttribute("aria-busy", "true");
    return query({
      date_range: question.date_range,
      metrics: ["visitors", "pageviews"],
      dimensions: [bucket],
      filters: question.filters
    }).then(function (answer) {
      if (!current()) return null;
      var rows = answer.results.slice().sort(function (a, b) {
        return a.dimensions[0] < b.dimensions[0] ? -1 : a.dimensions[0] > b.dimensions[0] ? 1 : 0;
      });
      var values = function (i) { return rows.map(function (r) { return r.metrics[i] || 0; }); };
      fillChartTable(bucket, rows);
      state.chart = {
        labels: rows.map(function (r) { return bucketLabel(bucket, r.dimensions[0], false); }),
        series: [{ name: "Visitors", values: values(0) }, { name: "Page views", values: values(1) }],
        title: "Visitors and page views"
      };
      return drawChart(current);
    });
  }

  // The chart is drawn for the width it is shown at, so that its text keeps a readable size on a
  // phone; it is drawn again when that width changes much (a rotated phone, a resized window).
  function chartSize() {
    var width = Math.round(Math.min(1600, Math.max(300, el("chart").clientWidth || 800)));
    return { width: width, height: width < 560 ? 260 : 320 };
  }

  function drawChart(current) {
    var size = chartSize();
    var body = Object.assign({}, state.chart, size);
    return request("/dashboard/chart", body, false).then(function (response) {
      return response.text();
    }).then(function (svg) {
      if (!current()) return;
      // The service's own drawing of numbers: pygal escapes the labels and the service removes
      // any script from it.
      el("chart").innerHTML = svg;
      el("chart").setAttribute("aria-busy", "false");
      state.chartWidth = size.width;
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      if (!state.chart || !state.credentials || Math.abs(chartSize().width - state.chartWidth) < 80) return;
      var generation = state.generation;
      drawChart(function () { return generation === state.generation && state.credentials !== null; })
        .catch(function (error) { showError(explain(error)); });
    }, 250);
  });

  function fillChartTable(bucket, rows) {
    var body = el("chart-table").querySelector("tbody");
    body.replaceChildren.apply(body, rows.map(function (r) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = bucketLabel(bucket, r.dimensions[0], true);
      tr.append(th, cell(integer.format(r.metrics[0] || 0)), cell(integer.format(r.metrics[1] || 0)));
      return tr;
    }));
  }

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // Unfiltered, each panel is read from the rollups on its own, in parallel. Filtered, the visit
  // panels go in one request and the event panels in another: the service counts each in one pass.
  function loadPanels(panels, question, current) {
    var asked = panels.map(function (panel) {
      panel.setAttribute("aria-busy", "true");
      return {
        date_range: question.date_range,
        metrics: ["visitors", panel.getAttribute("data-second")],
        dimensions: [panel.getAttribute("data-dimension")],
        filters: question.filters,
        order_by: [["visitors", "desc"]],
        limit: TOP
      };
    });
    var show = function (panel) {
      return function (answer) { if (current()) showPanel(panel, answer); };
    };
    // Unfiltered, each panel reads the rollups in a request of its own. Filtered, the visit panels
    // are counted together in one request (one pass over the range's sessions), the event panels
    // in another beside it (one pass over its events); each is shown as soon as its answer arrives.
    if (!question.filters.length) {
      return Promise.all(panels.map(function (panel, i) { return query(asked[i]).then(show(panel)); }));
    }
    return Promise.all(["visit:", "event:"].map(function (level) {
      var together = panels.filter(function (panel) {
        return panel.getAttribute("data-dimension").indexOf(level) === 0;
      });
      return api("/api/v1/stats/queries", {
        queries: together.map(function (panel) { return asked[panels.indexOf(panel)]; })
      }).then(function (batch) {
        together.forEach(function (panel, i) { show(panel)(batch.answers[i]); });
      });
    }));
  }

  function showPanel(panel, answer) {
    var rows = answer.results.slice(0, TOP);
    var most = rows.reduce(function (m, r) { return Math.max(m, r.metrics[0] || 0); }, 0);
    var body = panel.querySelector("tbody");
    body.replaceChildren.apply(body, rows.map(function (r, index) {
      return panelRow(panel, r, index, most);
    }));
    panel.querySelector(".empty").hidden = rows.length > 0;
    // A large range read from the facts (a filtered panel) may be counted over a sample of visitors.
    var sampled = panel.querySelector(".sampled");
    var percent = (answer.meta || {}).sample_percent;
    sampled.hidden = percent === undefined || percent === null;
    sampled.textContent = sampled.hidden ? "" : "Estimated from a sample of " + percent + " % of the visitors.";
    panel.setAttribute("aria-busy", "false");
  }

  function displayValue(panel, value) {
    return value === null || value === undefined || value === "" ? panel.getAttribute("data-missing") : String(value);
  }

  function panelRow(panel, result, index, most) {
    var value = result.dimensions[0];
    var label = displayValue(panel, value);
    var tr = document.createElement("tr");
    tr.setAttribute("data-index", String(index));
    tr.setAttribute("data-value", value === null ? "" : String(value));
    var name = document.createElement("td");
    name.className = "name";
    name.style.setProperty("--share", String(most ? (result.metrics[0] || 0) / most : 0));
    var button = document.createElement("button");
    button.type = "button";
    button.className = "row-filter";
    button.textContent = label;
    button.title = label;
    button.setAttribute("aria-label", "Filter: " + panel.getAttribute("data-column") + " is " + label);
    name.append(button);
    tr.append(name, cell(integer.format(result.metrics[0] || 0), "num"),
      cell(formatMetric(panel.getAttribute("data-second"), result.metrics[1]), "num"));
    tr.addEventListener("click", function () {
      addFilter(panel.getAttribute("data-dimension"), value, panel.getAttribute("data-column") + " is " + label);
    });
    return tr;
  }

  // ---- the view in the address: a reload or a shared link shows the same range and filters ----

  function writeView() {
    var params = new URLSearchParams();
    params.set("range", state.range);
    if (state.range === "custom" && state.custom) {
      params.set("from", state.custom[0]);
      params.set("to", state.custom[1]);
    }
    state.filters.forEach(function (f) {
      params.append("filter", JSON.stringify([f.dimension, f.value, f.label]));
    });
    var hash = "#" + params.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  function clearView() {
    history.replaceState(null, "", location.pathname + location.search);
  }

  function showDefaultRange() {
    var range = el("range");
    var chosen = Array.prototype.filter.call(range.options, function (o) { return o.defaultSelected; })[0];
    range.value = chosen ? chosen.value : range.options[0].value;
    state.range = range.value;
    state.custom = null;
    el("custom-range").hidden = true;
  }

  function parseFilter(text, dimensions) {
    var f;
    try { f = JSON.parse(text); } catch (error) { return null; }
    if (!Array.isArray(f) || f.length !== 3 || dimensions.indexOf(f[0]) < 0 ||
        (f[1] !== null && typeof f[1] !== "string") || typeof f[2] !== "string") return null;
    return { dimension: f[0], value: f[1], label: f[2] };
  }

  // The range and filters the address names, if it names a valid range (anything else is ignored).
  function readView() {
    var params = new URLSearchParams(location.hash.slice(1));
    var range = params.get("range");
    var ranges = Array.prototype.map.call(el("range").options, function (o) { return o.value; });
    if (ranges.indexOf(range) < 0) return;
    if (range === "custom") {
      var day = /^\d{4}-\d{2}-\d{2}$/;
      var from = params.get("from") || "";
      var to = params.get("to") || "";
      if (!day.test(from) || !day.test(to) || from > to) return;
      state.custom = [from, to];
      el("date-from").value = from;
      el("date-to").value = to;
    }
    state.range = range;
    el("range").value = range;
    el("custom-range").hidden = range !== "custom";
    var dimensions = Array.prototype.map.call(document.querySelectorAll(".panel"), function (panel) {
      return panel.getAttribute("data-dimension");
    });
    var seen = {};
    state.filters = params.getAll("filter").map(function (text) {
      return parseFilter(text, dimensions);
    }).filter(function (f) {
      if (f === null || seen[f.dimension]) return false;
      seen[f.dimension] = true;
      return true;
    });
  }

  window.addEventListener("hashchange", function () {
    if (state.credentials === null) return;
    readView();
    renderFilters();
    refresh();
  });

  // ---- filters -----------------------------------------------------------------------------

  function filterText(f) {
    return f.label;
  }

  function addFilter(dimension, value, label) {
    // One value per dimension: a second choice on the same table replaces the first.
    state.filters = state.filters.filter(function (f) { return f.dimension !== dimension; });
    state.filters.push({ dimension: dimension, value: value === undefined ? null : value, label: label });
    renderFilters();
    refresh();
    var chips = el("filters").querySelectorAll("button");
    chips[chips.length - 1].focus();
  }

  function removeFilter(index) {
    state.filters.splice(index, 1);
    renderFilters();
    refresh();
    var chips = el("filters").querySelectorAll("button");
    (chips[Math.min(index, chips.length - 1)] || el("range")).focus();
  }

  function renderFilters() {
    var list = el("filters");
    list.replaceChildren.apply(list, state.filters.map(function (f, index) {
      var li = document.createElement("li");
      li.className = "chip";
      var text = document.createElement("span");
      text.textContent = f.label;
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.setAttribute("aria-label", "Remove filter: " + f.label);
      remove.textContent = "×";
      remove.addEventListener("click", function () { removeFilter(index); });
      li.append(text, remove);
      return li;
    }));
    el("no-filters").hidden = state.filters.length > 0;
  }

  // ---- realtime and pipeline ---------------------------------------------------------------

  function loadLive() {
    if (!state.credentials) return Promise.resolve();
    var realtime = api("/api/v1/stats/realtime").then(function (answer) {
      el("realtime").textContent = integer.format(answer.visitors);
      el("realtime-label").textContent = answer.visitors === 1 ? "current visitor" : "current visitors";
    });
    var health = api("/api/v1/track/status").then(function (answer) {
      var s = answer.pipeline_status;
      el("health-pending").textContent = integer.format(s.raw_pending + s.staging_pending);
      el("health-marts").textContent = integer.format(s.marts_pending);
      el("health-quarantined").textContent = integer.format(s.quarantined);
      el("health-errors").textContent = integer.format(s.raw_errors);
      el("health-latency").textContent = s.latency_ms_p95 === null ? "–" : integer.format(s.latency_ms_p95) + " ms";
      el("health").classList.toggle("attention", s.raw_errors > 0 || s.pipeline_healthy === false);
    });
    var source = api("/api/v1/stats/source").then(function (answer) {
      el("health-replica").hidden = !answer.replica;
      if (answer.replica) {
        el("health-lag").textContent = answer.lag_seconds === null ? "unknown" : answer.lag_seconds.toFixed(1) + " s";
      }
    });
    return Promise.all([realtime, health, source].map(function (job) {
      return job.then(function () { return null; }, function (error) { return error; });
    })).then(function (errors) {
      var error = errors.filter(function (e) { return e !== null; })[0];
      if (!error || !state.credentials) return;
      if (isAuthFailure(error)) {
        fail(error, loadLive);
      } else {
        // The main figures keep their own message; a live figure that failed shows a dash.
        el("realtime").textContent = "–";
      }
    });
  }

  function startLive() {
    stopLive();
    loadLive();
    state.liveTimer = setInterval(loadLive, LIVE_SECONDS * 1000);
  }

  function stopLive() {
    clearInterval(state.liveTimer);
    state.liveTimer = null;
  }

  // ---- signing in and out ------------------------------------------------------------------

  function showDashboard() {
    el("login").hidden = true;
    el("dashboard").hidden = false;
    el("session").hidden = false;
    el("signed-in-as").textContent = state.credentials.customerId;
  }

  function clearFigures() {
    document.querySelectorAll(".panel tbody, #chart-table tbody, #filters").forEach(function (node) {
      node.replaceChildren();
    });
    document.querySelectorAll(".metric .value").forEach(function (node) {
      node.textContent = "–";
      node.removeAttribute("data-value");
    });
    document.querySelectorAll(".metric .change").forEach(function (node) { node.textContent = ""; });
    el("chart").replaceChildren();
    state.chart = null;
    el("period").textContent = "";
    el("realtime").textContent = "–";
  }

  function signOut(byUser) {
    state.generation++;
    stopLive();
    clearTimeout(state.retryTimer);
    var customerId = state.credentials ? state.credentials.customerId : "";
    forgetCredentials();
    state.filters = [];
    showDefaultRange();
    clearView();
    clearFigures();
    renderFilters();
    el("dashboard").hidden = true;
    el("session").hidden = true;
    el("login").hidden = false;
    el("token").value = "";
    el("customer-id").value = customerId;
    main.setAttribute("data-state", "signed-out");
    main.setAttribute("aria-busy", "false");
    if (byUser) {
      clearError();
      announce("Signed out. The token was removed from this tab.");
      el("customer-id").focus();
    } else {
      el("token").focus();
    }
  }

  function signIn(credentials) {
    saveCredentials(credentials);
    clearError();
    announce("Checking the token…");
    main.setAttribute("data-state", "loading");
    // One small authenticated request first: a refused token is reported once, on the form.
    return api("/api/v1/stats/realtime").then(function () {
      showDashboard();
      readView();
      renderFilters();
      startLive();
      return refresh();
    }, function (error) {
      forgetCredentials();
      announce("");
      showError(explain(error));
      main.setAttribute("data-state", "signed-out");
    });
  }

  el("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    if (!form.reportValidity()) return;
    signIn({ customerId: el("customer-id").value.trim(), token: el("token").value.trim() });
  });

  el("logout").addEventListener("click", function () { signOut(true); });

  // ---- the date range ----------------------------------------------------------------------

  function isoDay(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate());
  }

  el("range").addEventListener("change", function (event) {
    var chosen = event.target.value;
    var custom = chosen === "custom";
    el("custom-range").hidden = !custom;
    if (custom) {
      if (!el("date-from").value) {
        var today = new Date();
        el("date-to").value = isoDay(today);
        el("date-from").value = isoDay(new Date(today.getFullYear(), today.getMonth(), today.getDate() - 29));
      }
      el("date-from").focus();
      return;
    }
    state.range = chosen;
    refresh();
  });

  el("range-form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (el("range").value !== "custom") return;
    var from = el("date-from").value;
    var to = el("date-to").value;
    if (!from || !to) {
      showError("Choose both the first and the last day of the range.");
      (from ? el("date-to") : el("date-from")).focus();
      return;
    }
    if (from > to) {
      showError("The first day of the range comes after the last one.");
      el("date-from").focus();
      return;
    }
    state.range = "custom";
    state.custom = [from, to];
    refresh();
  });

  // ---- start -------------------------------------------------------------------------------

  var saved = storedCredentials();
  if (saved) {
    state.credentials = saved;
    showDashboard();
    readView();
    renderFilters();
    startLive();
    refresh();
  } else {
    el("customer-id").focus();
  }
})();
