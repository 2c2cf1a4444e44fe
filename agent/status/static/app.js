/* edge-agent status page. Every string from the device or from ServiceNow is put in the page
   with textContent (never innerHTML), and links only if they are http(s). */
(function () {
  "use strict";

  var METRICS = [
    { key: "temperature", title: "Temperature", unit: "\u00b0C", color: "#c0392b" },
    { key: "humidity", title: "Humidity", unit: "%RH", color: "#1f6fb2" },
    { key: "pressure", title: "Pressure", unit: "hPa", color: "#5b4a9e" }
  ];
  var BAND = "rgba(217, 130, 43, 0.22)";
  var LIMIT = "#d9822b";
  var EPISODE = { upper: "rgba(179, 38, 30, 0.16)", lower: "rgba(31, 111, 178, 0.16)" };
  var MARKER = "#7a1f17";
  var MAX_POINTS = 20000;
  var RANGES = [900, 3600, 21600];  // the range buttons, in seconds ("all" besides)
  // One way to write a time on the whole page, the viewer's locale and zone: lists, charts, titles.
  var TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
  var TICK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  var TICK_SECONDS = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  var DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

  var data = { ts: [], temperature: [], humidity: [], pressure: [] };
  var doc = null;          // the latest state document
  var receivedAt = 0;      // performance.now() when doc arrived
  var range = 3600;        // seconds shown, or null for everything loaded
  var chosen = false;      // the viewer picked a range (until then it fits the first data)
  var loaded = 3600;       // seconds of history fetched, or null for all the device keeps
  var zoomed = false;
  var applying = false;
  var selecting = false;   // the user dragged across a chart: the next x scale change is a zoom
  var charts = {};         // metric -> {plot, box, value, links}
  var source = null;
  var redrawQueued = false;
  // What the charts drew, in canvas pixels: for people debugging, and for the browser tests.
  var drawn = { ticks: [] };
  window.edgeStatus = { charts: charts, drawn: drawn, data: data, state: function () { return doc; } };

  // -- small DOM helpers: text only ------------------------------------------------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function safeUrl(url) {
    if (typeof url !== "string") return null;
    try {
      var parsed = new URL(url);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) { return null; }
  }
  function link(text, url, className) {
    var href = safeUrl(url);
    var node = el(href ? "a" : "span", className, text);
    if (href) { node.href = href; node.target = "_blank"; node.rel = "noopener noreferrer"; }
    return node;
  }
  function serverNow() {
    if (!doc) return Date.now() / 1000;
    if (doc.run) return doc.run.ended_at;  // nothing moves after the run: ages stop at its end
    return doc.generated_at + (performance.now() - receivedAt) / 1000;
  }
  function clock(ts) {
    if (ts === null || ts === undefined) return "\u2013";
    return TIME.format(new Date(ts * 1000));
  }
  function zoneName() {
    var parts = TIME.formatToParts(new Date());
    for (var i = 0; i < parts.length; i++) if (parts[i].type === "timeZoneName") return parts[i].value;
    return "";
  }
  // The time axis in the same locale and zone: a day where ticks are days apart, else the time.
  function ticks(u, splits, axisIdx, space, incr) {
    var labels = splits.map(function (ts) {
      var date = new Date(ts * 1000);
      return (incr >= 86400 ? DAY : incr < 60 ? TICK_SECONDS : TICK).format(date);
    });
    drawn.ticks = splits.map(function (ts, i) { return { ts: ts, label: labels[i] }; });
    return labels;
  }
  function age(ts) {
    if (ts === null || ts === undefined) return "never";
    return duration(Math.max(0, serverNow() - ts)) + (doc && doc.run ? " before the run ended" : " ago");
  }
  function duration(s) {
    if (s < 60) return Math.round(s) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  function num(v, digits) { return v === null || v === undefined ? "\u2013" : Number(v).toFixed(digits); }

  // -- charts ---------------------------------------------------------------------------
  function limitsOf(metric) { return (doc && doc.sensor && doc.sensor.limits && doc.sensor.limits[metric]) || {}; }

  function yRange(metric) {
    return function (u, min, max) {
      var lim = limitsOf(metric), h = lim.hysteresis || 0;
      var lo = min, hi = max;
      ["upper", "lower"].forEach(function (side) {
        if (lim[side] !== null && lim[side] !== undefined) {
          lo = lo === null ? lim[side] - h : Math.min(lo, lim[side] - h);
          hi = hi === null ? lim[side] + h : Math.max(hi, lim[side] + h);
        }
      });
      if (lo === null || hi === null) return [0, 1];
      var pad = Math.max((hi - lo) * 0.08, 0.5);
      return [lo - pad, hi + pad];
    };
  }

  function drawBackground(metric) {
    return function (u) {
      var ctx = u.ctx, box = u.bbox, record = { bands: [], limits: [], episodes: [] };
      drawn[metric] = record;
      ctx.save();
      ctx.beginPath();
      ctx.rect(box.left, box.top, box.width, box.height);
      ctx.clip();
      var lim = limitsOf(metric), h = lim.hysteresis || 0;
      ["upper", "lower"].forEach(function (side) {
        var value = lim[side];
        if (value === null || value === undefined) return;
        var top = u.valToPos(value + h, "y", true), bottom = u.valToPos(value - h, "y", true);
        ctx.fillStyle = BAND;
        ctx.fillRect(box.left, top, box.width, Math.max(1, bottom - top));
        record.bands.push({ side: side, x: box.left, y: top, width: box.width, height: bottom - top });
        var y = u.valToPos(value, "y", true);
        ctx.strokeStyle = LIMIT;
        ctx.lineWidth = 1.5 * uPlot.pxRatio;
        ctx.setLineDash([6 * uPlot.pxRatio, 4 * uPlot.pxRatio]);
        ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
        ctx.setLineDash([]);
        record.limits.push({ side: side, y: y });
      });
      var last = data.ts.length ? data.ts[data.ts.length - 1] : null;
      episodesOf(metric).forEach(function (ep) {
        var end = ep.recovered_at || last;
        if (end === null || ep.started_at === null) return;
        var x0 = u.valToPos(ep.started_at, "x", true), x1 = u.valToPos(end, "x", true);
        var left = Math.max(box.left, x0), right = Math.min(box.left + box.width, x1);
        if (right <= left) return;
        ctx.fillStyle = EPISODE[ep.bound] || EPISODE.upper;
        ctx.fillRect(left, box.top, Math.max(1, right - left), box.height);
        record.episodes.push({ id: ep.id, x: left, y: box.top, width: right - left, height: box.height });
      });
      ctx.restore();
    };
  }

  function episodesOf(metric) {
    return ((doc && doc.episodes) || []).filter(function (ep) { return ep.metric === metric; });
  }

  function drawMarkers(metric) {
    return function (u) {
      var chart = charts[metric];
      if (!chart) return;
      var ctx = u.ctx, box = u.bbox, record = drawn[metric] || (drawn[metric] = {});
      record.markers = [];
      clear(chart.links);
      episodesOf(metric).forEach(function (ep) {
        if (!ep.incident || !ep.incident.number) return;
        var at = ep.breach_at || ep.started_at;
        var x = u.valToPos(at, "x", true);
        if (x < box.left || x > box.left + box.width) return;
        ctx.save();
        ctx.strokeStyle = MARKER;
        ctx.lineWidth = 1.5 * uPlot.pxRatio;
        ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
        ctx.restore();
        var marker = link(ep.incident.number, ep.incident.url, "incident-marker");
        marker.title = ep.incident.number + " \u2013 " + (ep.title || ep.metric) + " (" + ep.id + ")";
        marker.style.left = (u.over.offsetLeft + x / uPlot.pxRatio) + "px";
        marker.style.top = (u.over.offsetTop + 2) + "px";
        chart.links.appendChild(marker);
        record.markers.push({ number: ep.incident.number, x: x, episode: ep.id });
      });
    };
  }

  function chartWidth(box) { return Math.max(260, box.clientWidth); }
  function chartHeight() { return window.innerWidth < 600 ? 150 : 190; }

  function makeCharts() {
    var holder = document.getElementById("charts");
    METRICS.forEach(function (m) {
      var box = el("div", "chart");
      box.id = "chart-" + m.key;
      var title = el("h3");
      title.appendChild(el("span", null, m.title + " (" + m.unit + ")"));
      var value = el("span", "value", "\u2013");
      title.appendChild(value);
      box.appendChild(title);
      var area = el("div");
      box.appendChild(area);
      var links = el("div");
      box.appendChild(links);
      holder.appendChild(box);
      var opts = {
        width: chartWidth(box),
        height: chartHeight(),
        legend: { show: false },
        cursor: { sync: { key: "edge-agent" }, drag: { x: true, y: false } },
        scales: { x: { time: true }, y: { range: yRange(m.key) } },
        axes: [{ values: ticks }, { size: 62 }],  // one width for all three: time axes line up
        series: [{}, { label: m.title, stroke: m.color, width: 1.5, spanGaps: false, points: { show: false } }],
        hooks: {
          drawClear: [drawBackground(m.key)],
          draw: [drawMarkers(m.key)],
          setSelect: [function (u) { if (u.select.width > 0) selecting = true; }],
          setScale: [function (u, key) { if (key === "x") followZoom(u); }]
        }
      };
      var plot = new uPlot(opts, [data.ts, data[m.key]], area);
      plot.over.addEventListener("dblclick", function () { zoomed = false; applyRange(); });
      charts[m.key] = { plot: plot, box: box, value: value, links: links, area: area };
    });
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (k) {
        charts[k].plot.setSize({ width: chartWidth(charts[k].box), height: chartHeight() });
      });
    });
  }

  function followZoom(u) {
    if (applying || !selecting) return;
    selecting = false;
    zoomed = true;
    markRange();
    document.getElementById("reset-zoom").hidden = false;
    var min = u.scales.x.min, max = u.scales.x.max;
    applying = true;
    Object.keys(charts).forEach(function (k) {
      if (charts[k].plot !== u) charts[k].plot.setScale("x", { min: min, max: max });
    });
    applying = false;
  }

  // The range the active button names, whatever the data covers: "1 h" shows an hour.
  function xRange() {
    if (!data.ts.length) return null;
    var first = data.ts[0], last = data.ts[data.ts.length - 1];
    var min = range === null ? first : last - range;
    if (min >= last) min = last - 60;
    return { min: min, max: last };
  }

  // Until the viewer picks one, the range is the shortest button that holds the data.
  function fitRange() {
    if (chosen || !data.ts.length) return;
    var span = data.ts[data.ts.length - 1] - data.ts[0];
    range = null;
    for (var i = 0; i < RANGES.length; i++) if (span <= RANGES[i]) { range = RANGES[i]; break; }
    if (range === null && loaded !== null) range = RANGES[RANGES.length - 1];
    markRange();
  }

  function markRange() {
    Array.prototype.forEach.call(document.querySelectorAll(".ranges button[data-range]"), function (b) {
      var value = b.getAttribute("data-range");
      var active = !zoomed && (value === "all" ? range === null : Number(value) === range);
      b.className = active ? "active" : "";
      b.setAttribute("aria-pressed", active ? "true" : "false");
    });
  }

  function applyRange() {
    fitRange();
    document.getElementById("reset-zoom").hidden = !zoomed;
    markRange();
    applying = true;
    Object.keys(charts).forEach(function (k) {
      var plot = charts[k].plot;
      plot.setData([data.ts, data[k]], false);
      var r = zoomed ? { min: plot.scales.x.min, max: plot.scales.x.max } : xRange();
      if (r) plot.setScale("x", r);
      else plot.redraw();
    });
    applying = false;
    showValues();
  }

  function queueRedraw() {
    if (redrawQueued) return;
    redrawQueued = true;
    window.requestAnimationFrame(function () { redrawQueued = false; applyRange(); });
  }

  function showValues() {
    METRICS.forEach(function (m) {
      var column = data[m.key], value = null;
      for (var i = column.length - 1; i >= 0 && i >= column.length - 5; i--) {
        if (column[i] !== null) { value = column[i]; break; }
      }
      charts[m.key].value.textContent = value === null ? "no value" : num(value, m.key === "pressure" ? 1 : 2) + " " + m.unit;
    });
  }

  // -- data ------------------------------------------------------------------------------
  function setReadings(columns) {
    ["ts", "temperature", "humidity", "pressure"].forEach(function (k) { data[k].length = 0; });
    appendReadings(columns);
  }

  function appendReadings(columns) {
    if (!columns || !columns.ts) return;
    var last = data.ts.length ? data.ts[data.ts.length - 1] : -Infinity;
    for (var i = 0; i < columns.ts.length; i++) {
      if (columns.ts[i] <= last) continue;  // already have it (a reconnect resends)
      data.ts.push(columns.ts[i]);
      data.temperature.push(columns.temperature[i]);
      data.humidity.push(columns.humidity[i]);
      data.pressure.push(columns.pressure[i]);
      last = columns.ts[i];
    }
    var extra = data.ts.length - MAX_POINTS;
    if (extra > 0) ["ts", "temperature", "humidity", "pressure"].forEach(function (k) { data[k].splice(0, extra); });
  }

  function load() {
    loaded = range === null ? null : Math.max(range, 3600);
    var query = loaded === null ? "all" : String(loaded);
    return fetch("/api/state?readings=" + query, { cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (state) {
        setReadings(state.readings);
        render(state);
        connect();
      })
      .catch(function (e) { setLive("cannot load the state: " + e.message, true); setTimeout(load, 3000); });
  }

  function connect() {
    if (source) source.close();
    var since = data.ts.length ? data.ts[data.ts.length - 1] : "";
    source = new EventSource("/events?since=" + since);
    source.addEventListener("readings", function (e) {
      appendReadings(JSON.parse(e.data));
      queueRedraw();
    });
    source.addEventListener("state", function (e) { render(JSON.parse(e.data)); });
    source.onopen = function () { if (doc && doc.run) showEnded(doc.run); else setLive("live", false); };
    source.onerror = function () { setLive("reconnecting\u2026", true); };
  }

  function showEnded(run) { setLive("run ended (exit " + run.exit_code + "): not live", true); }

  function setLive(text, bad) {
    var live = document.getElementById("live");
    live.textContent = text;
    live.className = bad ? "warn" : "muted";
  }

  // -- the lists ------------------------------------------------------------------------------
  function render(state) {
    doc = state;
    receivedAt = performance.now();
    document.getElementById("device").textContent = state.device || "(no device yet)";
    document.title = "edge-agent " + (state.device || "") + (state.health.ok ? "" : " \u2013 unhealthy");
    var badge = document.getElementById("health");
    badge.textContent = state.health.ok ? "healthy" : "unhealthy";
    badge.className = "badge " + (state.health.ok ? "badge-ok" : "badge-bad");
    var reasons = document.getElementById("reasons");
    clear(reasons);
    state.health.reasons.forEach(function (r) { reasons.appendChild(el("li", null, r)); });
    if (state.run) showEnded(state.run);
    renderEpisodes(state.open_episodes || []);
    renderIncidents(state.incidents || []);
    renderDelivery(state.delivery || {}, state.mqtt);
    renderSensor(state.sensor || {}, state);
    renderSite(state.site);
    queueRedraw();
  }

  function table(id, head, rows, empty) {
    var node = document.getElementById(id);
    clear(node);
    if (!rows.length) {
      var tr = el("tr");
      tr.appendChild(el("td", "muted", empty));
      node.appendChild(tr);
      return;
    }
    var thead = el("tr", "head");
    head.forEach(function (h) { thead.appendChild(el("th", null, h)); });
    node.appendChild(thead);
    rows.forEach(function (cells) {
      var tr = el("tr");
      cells.forEach(function (c, i) {
        var td = el("td", c.cls || null);
        if (head[i]) td.setAttribute("data-label", head[i]);  // a phone shows rows as cards
        if (c.node) td.appendChild(c.node); else td.textContent = c.text === undefined ? "" : String(c.text);
        tr.appendChild(td);
      });
      node.appendChild(tr);
    });
  }

  function unitOf(metric) {
    for (var i = 0; i < METRICS.length; i++) if (METRICS[i].key === metric) return METRICS[i].unit;
    return "";
  }

  function renderEpisodes(episodes) {
    table("open-episodes", ["metric", "since", "peak", "limit", "incident", "episode"], episodes.map(function (ep) {
      return [
        { text: ep.metric + " " + (ep.bound === "lower" ? "below" : "above") },
        { text: clock(ep.started_at) + " (" + age(ep.started_at) + ")", cls: "num" },
        { text: num(ep.peak, 2) + " " + (ep.unit || unitOf(ep.metric)), cls: "num" },
        { text: num(ep.limit, 2), cls: "num" },
        { node: ep.incident ? link(ep.incident.number, ep.incident.url) : el("span", "muted", "not yet") },
        { text: ep.id, cls: "text" }
      ];
    }), "none: all readings within limits");
  }

  function renderIncidents(incidents) {
    table("incidents", ["when", "incident", "action", "metric"], incidents.map(function (i) {
      return [
        { text: clock(i.at), cls: "num" },
        { node: i.number ? link(i.number, i.url) : el("span", "muted", "?") },
        { text: i.action },
        { text: i.metric || "" }
      ];
    }), "none delivered yet");
  }

  function dl(id, pairs) {
    var node = document.getElementById(id);
    clear(node);
    pairs.forEach(function (p) {
      node.appendChild(el("dt", null, p[0]));
      var dd = el("dd", p[2] || null);
      if (p[1] && p[1].nodeType) dd.appendChild(p[1]); else dd.textContent = p[1] === undefined || p[1] === null ? "\u2013" : String(p[1]);
      node.appendChild(dd);
    });
  }

  // The same words as the console, the logs and the metric help: "unreachable" for an outage,
  // and a lookup's 404 is "nothing found", an answer (the Table API's "no match").
  function codeName(code) {
    if (code === "unreachable") return "unreachable (not sent)";
    if (code === "no_answer") return "unreachable (sent, no answer)";
    return code;
  }
  function callName(key) {
    var parts = key.split(" ");
    if (parts[0] === "GET" && parts[1] === "404") return "GET 404 (nothing found)";
    return parts[0] + " " + codeName(parts.slice(1).join(" "));
  }

  function renderDelivery(delivery, mqtt) {
    var outbox = delivery.outbox || {};
    var snow = delivery.servicenow || {};
    var creds = delivery.credentials;
    var counters = delivery.counters || {};
    var pairs = [];
    if (!outbox.available) {
      pairs.push(["outbox", outbox.error || "not readable", "bad"]);
    } else {
      pairs.push(["pending", outbox.pending + (outbox.pending ? " (oldest " + duration(outbox.oldest_pending_age_seconds || 0) + ", " + outbox.most_attempts + " tries)" : ""), outbox.pending ? "warn" : "ok"]);
      pairs.push(["dead letters", outbox.dead_letters + (outbox.dead_letters ? " (oldest " + duration(outbox.oldest_dead_age_seconds || 0) + "; see edge-agent outbox)" : ""), outbox.dead_letters ? "bad" : "ok"]);
    }
    pairs.push(["last success", snow.last_success_at ? clock(snow.last_success_at) + " (" + age(snow.last_success_at) + ")" : "none yet"]);
    var lastError = snow.last_error;
    pairs.push(["last error", lastError ? lastError.method + " \u2192 " + codeName(lastError.code) + (lastError.cause ? ": " + lastError.cause : "") + " at " + clock(lastError.at) : "none", lastError ? "warn" : null]);
    var head = (outbox.pending_actions || [])[0];
    if (head && head.last_error) pairs.push(["error text", head.last_error, "warn"]);
    var calls = Object.keys(snow.requests || {}).sort().map(function (k) { return callName(k) + " \u00d7" + snow.requests[k]; });
    pairs.push(["ServiceNow calls", calls.length ? calls.join(", ") : "none"]);
    var latency = snow.latency || {};
    if (latency.count) pairs.push(["mean latency", num(1000 * latency.sum / latency.count, 1) + " ms over " + latency.count]);
    if (creds) {
      pairs.push(["credentials", (creds.cached ? "cached (" + creds.kind + " auth)" : "not cached") + ", fetched " + creds.fetches + "\u00d7 from " + creds.secret_id + (counters.auth_failures ? "; refused " + counters.auth_failures + "\u00d7" : ""), counters.auth_failures ? "bad" : null]);
    } else {
      pairs.push(["credentials", "no report from the anomaly function yet", "muted"]);
    }
    if (snow.url) pairs.push(["ServiceNow", link(snow.url, snow.url)]);
    if (snow.sink) pairs.push(["sink", snow.sink === "event" ? "Event Management events: " + (counters.events_sent || 0) + " sent, " + (counters.events_cleared || 0) + " cleared" : "incidents"]);
    if (snow.ci_missing) pairs.push(["CI", "not found in cmdb_ci: " + snow.ci_missing + " (incidents open without a CI)", "warn"]);
    var budget = snow.rate_limit;
    if (budget && budget.limit) pairs.push(["rate limit", budget.remaining + " of " + budget.limit + " requests left until " + clock(budget.reset) + (budget.rule ? " (" + budget.rule + ")" : ""), budget.remaining < budget.limit / 5 ? "warn" : null]);
    if (mqtt) {
      var c = mqtt.counters || {}, g = mqtt.gauges || {};
      pairs.push(["MQTT", (g.connected ? "connected" : "disconnected") + "; " + (c.published || 0) + " published, " + (c.spooled || 0) + " spooled, " + (c.dropped || 0) + " lost, " + (g.pending || 0) + " waiting", g.connected ? null : "warn"]);
    }
    dl("delivery", pairs);
    var rows = (outbox.pending_actions || []).map(function (a) {
      return [{ text: "pending" }, { text: a.kind }, { text: clock(a.created_at), cls: "num" }, { text: a.attempts, cls: "num" }, { text: a.last_error || "", cls: "text" }];
    }).concat((outbox.dead_letter_actions || []).map(function (a) {
      return [{ text: "dead" }, { text: a.kind }, { text: clock(a.dead_at), cls: "num" }, { text: a.status === null ? "" : a.status, cls: "num" }, { text: a.reason || "", cls: "text" }];
    }));
    table("outbox-actions", ["", "action", "since", "tries / code", "error"], rows, "outbox empty");
  }

  // A site gateway: its devices by state, open groups with members, each device's last reading.
  function renderSite(site) {
    var section = document.getElementById("site-section");
    section.hidden = !site;
    if (!site) return;
    var n = site.devices_by_state || {};
    dl("site", [
      ["site", site.name],
      ["normal", n.normal || 0, "ok"],
      ["in breach", n["in breach"] || 0, n["in breach"] ? "bad" : "ok"],
      ["silent", n.silent || 0, n.silent ? "bad" : "ok"]
    ]);
    table("site-groups", ["open group", "incident opened", "devices"], (site.groups || []).map(function (g) {
      return [{ text: g.kind }, { text: g.opened ? "yes" : "waiting" }, { text: g.members.length + ": " + g.members.join(", "), cls: "text" }];
    }), "no open group");
    table("site-devices", ["device", "state", "last reading", "°C", "%RH", "hPa"], (site.devices || []).map(function (d) {
      var r = d.reading || {};
      return [{ text: d.device }, { text: d.state, cls: d.state === "normal" ? "ok" : "bad" },
        { text: d.last_reading_at ? clock(d.last_reading_at) + " (" + age(d.last_reading_at) + ")" : "none", cls: "num" },
        { text: r.temperature === null || r.temperature === undefined ? "–" : num(r.temperature, 1), cls: "num" },
        { text: r.humidity === null || r.humidity === undefined ? "–" : num(r.humidity, 1), cls: "num" },
        { text: r.pressure === null || r.pressure === undefined ? "–" : num(r.pressure, 1), cls: "num" }];
    }), "no device known yet");
  }

  function renderSensor(sensor, state) {
    var counters = sensor.counters || {};
    var invalid = sensor.invalid_readings || {};
    var stale = sensor.last_reading_age_seconds !== null && sensor.last_reading_age_seconds > sensor.stale_after_seconds;
    var reported = sensor.reported_at !== null && sensor.reported_at !== undefined;
    function count(key) { return reported ? counters[key] || 0 : "\u2013"; }
    var pairs = [
      ["last reading", sensor.last_reading_at ? clock(sensor.last_reading_at) + " (" + age(sensor.last_reading_at) + ")" : "none yet", stale || !sensor.last_reading_at ? "bad" : "ok"],
      ["period", sensor.period ? sensor.period + " s" : "\u2013"],
      ["readings", count("readings")],
      ["invalid", METRICS.map(function (m) { return m.key + " " + (invalid[m.key] || 0); }).join(", ")],
      ["sensor errors", count("sensor_errors"), counters.sensor_errors ? "warn" : null],
      ["publish errors", count("publish_errors"), counters.publish_errors ? "warn" : null]
    ];
    Object.keys(state.functions || {}).forEach(function (name) {
      var f = state.functions[name];
      pairs.push([name + " function", "reported " + age(f.reported_at) + (f.state === "running" ? "" : " (" + f.state + ")") + (f.restarts ? ", " + f.restarts + " restarts" : ""), f.state === "running" ? null : "bad"]);
    });
    (state.locks || []).forEach(function (lock) {
      var holders = (lock.holders || []).map(function (h) { return "pid " + h.pid + (h.alive ? "" : " (gone)"); });
      pairs.push(["lock " + lock.path.split("/").pop(), holders.length ? holders.join(", ") : "free"]);
    });
    dl("sensor", pairs);
  }

  function setRange(button) {
    var value = button.getAttribute("data-range");
    range = value === "all" ? null : Number(value);
    chosen = true;
    zoomed = false;
    markRange();
    if (loaded !== null && (range === null || range > loaded)) load();  // fetch more history
    else applyRange();
  }

  function start() {
    makeCharts();
    document.getElementById("zone").textContent = "Times in your zone, " + zoneName() + ".";
    Array.prototype.forEach.call(document.querySelectorAll(".ranges button[data-range]"), function (b) {
      b.addEventListener("click", function () { setRange(b); });
    });
    document.getElementById("reset-zoom").addEventListener("click", function () { zoomed = false; applyRange(); });
    setInterval(function () { if (doc) { renderDelivery(doc.delivery || {}, doc.mqtt); renderSensor(doc.sensor || {}, doc); } }, 1000);
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
