
(function () {
  "use strict";
  var view = document.getElementById("view");
  // What the current view keeps open (event streams, timers): closed when the view changes.
  var open = [];
  // How many events the overview reads for its rate and latest events: the latest ones only,
  // never the whole log.
  var WINDOW = 1000;
  // How many pages of 1000 events a stream's timeline reads at most.
  var MAX_PAGES = 20;

  // An element with properties (`text` for its text) and children (nodes or text).
  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (key) {
      if (key === "text") { node.textContent = props[key]; }
      else if (key === "data") { Object.keys(props.data).forEach(function (d) { node.dataset[d] = props.data[d]; }); }
      else { node[key] = props[key]; }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function line(parent, tag, text) {
    return parent.appendChild(el(tag, { text: text }));
  }
  function link(href, text) { return el("a", { href: href, text: text }); }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function streamHref(stream, rest) { return "#/streams/" + encodeURIComponent(stream) + (rest || ""); }
  function kindOf(stream) { var dash = stream.indexOf("-"); return dash < 0 ? stream : stream.slice(0, dash); }
  function origin(event) {
    var o = (event.metadata && event.metadata.origin) || {};
    if (o.kind === "http") { return (o.user ? o.user + " @ " : "") + o.addr; }
    if (o.kind === "udp") { return "udp " + o.addr; }
    return o.kind || "";
  }
  function brief(value, max) {
    var text = JSON.stringify(value);
    return text.length > max ? text.slice(0, max) + "…" : text;
  }
  function pretty(value) { return el("pre", { text: JSON.stringify(value, null, 2) }); }
  function failure(error) { return el("p", { className: "error", text: String(error && error.message || error) }); }

  // GET `path` as JSON; a refusal becomes an error carrying the body's message, whichever
  // face's shape it has.
  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (answer) {
        return answer.json().catch(function () { return {}; }).then(function (body) {
          if (!answer.ok) {
            var error = new Error(body.error || body.title || body.message || ("HTTP " + answer.status));
            error.status = answer.status;
            throw error;
          }
          return body;
        });
      });
  }
  // An event stream (Server-Sent Events) of `path`, closed when the view changes.
  function follow(path, onEvent) {
    var source = new EventSource(path);
    // Marks the page as following, for those who wait for it (the browser tests).
    source.onopen = function () { document.body.dataset.live = "true"; };
    source.onmessage = function (message) { onEvent(JSON.parse(message.data)); };
    open.push(function () { source.close(); });
    return source;
  }
  function every(ms, work) {
    var timer = setInterval(work, ms);
    open.push(function () { clearInterval(timer); });
  }
  function reset(title) {
    open.forEach(function (close) { close(); });
    open = [];
    delete document.body.dataset.live;
    view.textContent = "";
    document.title = title + " · annals";
    return view;
  }

  // The log's head and the latest events (at most WINDOW of them, from the recent window).
  function latest() {
    return getJSON("/api/events?from=0&limit=1").then(function (first) {
      var from = Math.max(0, first.head - WINDOW);
      return getJSON("/api/events?from=" + from + "&limit=" + WINDOW);
    });
  }

  // ----- Overview: the head, events per second, the latest events live, kinds.
  function overview() {
    var root = reset("Overview");
    line(root, "h1", "Overview");
    var head = el("div", { className: "big", id: "head", text: "…" });
    var rate = el("div", { className: "big", id: "rate", text: "…" });
    root.appendChild(el("div", { className: "cards" }, [
      el("div", { className: "card" }, [el("div", { text: "Log head (position)" }), head]),
      el("div", { className: "card" }, [el("div", { text: "Events per second (last 10 s)" }), rate])
    ]));
    line(root, "h2", "Events per second, last 60 s");
    var chart = root.appendChild(el("div", { id: "rate-chart" }));
    line(root, "h2", "Streams by kind");
    var kinds = root.appendChild(el("div", { className: "cards", id: "kinds" }));
    line(root, "h2", "Faces");
    var faces = root.appendChild(el("div", { className: "cards", id: "faces" }));
    // Each face's entities by status, from its own read model; a face that does not run (or
    // that the caller may not read) is left out.
    getJSON("/executions?size=1000").then(function (page) {
      var byStatus = {};
      page.executions.forEach(function (x) { byStatus[x.status] = (byStatus[x.status] || 0) + 1; });
      faces.appendChild(el("div", { className: "card" }, [link("#/executions", "Executions"),
        el("div", { className: "big", text: String(page.total_results) })].concat(Object.keys(byStatus).sort().map(function (status) {
          return el("div", { text: status + " " + byStatus[status] });
        }))));
    }).catch(function () {});
    getJSON("/v1/results?page=1").then(function (page) {
      faces.appendChild(el("div", { className: "card" }, [link("#/results", "Test results"),
        el("div", { className: "big", text: String(page.results.length) + (page.pagination.total_pages > 1 ? "+" : "") })]));
    }).catch(function () {});
    getJSON("/api/v1/host/").then(function (page) {
      faces.appendChild(el("div", { className: "card" }, [link("#/inventory", "Inventory hosts"),
        el("div", { className: "big", text: String(page.data.length) })]));
    }).catch(function () {});
    // A card of counts by status: the total, then each status.
    function byStatus(id, title, href, total, counts) {
      faces.appendChild(el("div", { className: "card", id: id }, [link(href, title),
        el("div", { className: "big", text: String(total) })].concat(Object.keys(counts).sort().map(function (status) {
          return el("div", { text: status.replace(/_/g, " ") + " " + counts[status] });
        }))));
    }
    getJSON("/engines").then(function (answer) {
      var counts = {}, total = 0;
      answer.engines.forEach(function (engine) {
        Object.keys(engine.scans).forEach(function (status) {
          counts[status] = (counts[status] || 0) + engine.scans[status];
          total += engine.scans[status];
        });
      });
      byStatus("scans", "Scans", "#/kinds/scan", total, counts);
    }).catch(function () {});
    getJSON("/agents").then(function (answer) {
      byStatus("agents", "Agents", "#/kinds/gros_agent", answer.agents, answer.by_status);
    }).catch(function () {});
    line(root, "h2", "Latest events");
    var table = el("tbody", { id: "latest" });
    root.appendChild(el("div", { className: "scroll" }, [el("table", {}, [
      el("thead", {}, [el("tr", {}, ["Position", "Time", "Stream", "Type", "From"].map(function (h) { return el("th", { text: h }); }))]),
      table])]));
    var perSecond = {};
    function count(event) {
      var second = Math.floor(Date.parse(event.recorded_at) / 1000);
      perSecond[second] = (perSecond[second] || 0) + 1;
    }
    function row(event) {
      return el("tr", {}, [
        el("td", { text: String(event.position) }),
        el("td", { text: event.recorded_at }),
        el("td", {}, [link(streamHref(event.stream, "/v/" + event.version), event.stream + " v" + event.version)]),
        el("td", { text: event.type }),
        el("td", { className: "hide-narrow", text: origin(event) })]);
    }
    function draw() {
      var now = Math.floor(Date.now() / 1000), values = [], last10 = 0;
      for (var s = now - 59; s <= now; s++) { values.push(perSecond[s] || 0); }
      values.slice(-10).forEach(function (v) { last10 += v; });
      rate.textContent = (last10 / 10).toFixed(1);
      chart.textContent = "";
      chart.appendChild(bars(values));
    }
    // Every kind's streams, from the server's read model of the whole log.
    getJSON("/api/kinds").then(function (answer) {
      answer.kinds.forEach(function (k) {
        kinds.appendChild(el("div", { className: "card" }, [
          el("div", { className: "big", text: String(k.streams) }),
          link("#/kinds/" + encodeURIComponent(k.kind), k.kind)]));
      });
    }).catch(function (error) { kinds.appendChild(failure(error)); });
    latest().then(function (page) {
      head.textContent = String(page.head);
      page.events.forEach(count);
      page.events.slice(-20).reverse().forEach(function (event) { table.appendChild(row(event)); });
      draw();
      every(1000, draw);
      follow("/api/events?from=" + page.head, function (event) {
        count(event);
        head.textContent = String(event.position);
        table.insertBefore(row(event), table.firstChild);
        while (table.children.length > 50) { table.removeChild(table.lastChild); }
      });
    }).catch(function (error) { root.appendChild(failure(error)); });
  }

  // A bar chart of `values`, newest on the right.
  function bars(values) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart");
    svg.setAttribute("viewBox", "0 0 " + values.length * 10 + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    var max = Math.max.apply(null, values.concat([1]));
    values.forEach(function (v, i) {
      var bar = document.createElementNS(ns, "rect");
      var h = v / max * 100;
      bar.setAttribute("x", i * 10 + 1);
      bar.setAttribute("width", 8);
      bar.setAttribute("y", 100 - h);
      bar.setAttribute("height", h);
      bar.setAttribute("fill", "#3a78c9");
      svg.appendChild(bar);
    });
    return svg;
  }

  // ----- Streams: find by stream id, event id or correlation id; browse by kind.
  var UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  // How many streams one page of a kind's list holds.
  var STREAMS_PAGE = 100;
  function streams(kind) {
    var root = reset(kind ? "Streams: " + kind : "Streams");
    line(root, "h1", kind ? "Streams of kind " + kind : "Streams");
    var input = el("input", { id: "find", placeholder: "stream id, event id or correlation id", size: 40 });
    var found = el("div", { id: "found" });
    var form = el("form", {}, [input, el("button", { type: "submit", text: "Find" })]);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var wanted = input.value.trim();
      if (!wanted) { return; }
      found.textContent = "";
      // A UUID is an event id or a correlation id, which the server finds by the time it
      // carries; anything else is taken as a stream id.
      if (!UUID.test(wanted)) { location.hash = streamHref(wanted); return; }
      getJSON("/api/ids/" + encodeURIComponent(wanted)).then(function (answer) {
        line(found, "p", answer.matched === "event_id" ? "The event with this id:" :
          plural(answer.events.length, "event") + " of this correlation" + (answer.truncated ? " (the first ones)" : "") + ":");
        var list = found.appendChild(el("ul"));
        answer.events.forEach(function (event) {
          list.appendChild(el("li", {}, [link(streamHref(event.stream, "/v/" + event.version),
            event.stream + " v" + event.version + " " + event.type), " " + event.recorded_at]));
        });
      }).catch(function (error) { found.appendChild(failure(error)); });
    });
    root.appendChild(form);
    root.appendChild(found);
    var list = root.appendChild(el("div", { id: "stream-list" }));
    if (!kind) {
      // Every kind, from the server's read model of the whole log.
      getJSON("/api/kinds").then(function (answer) {
        line(list, "h2", "Kinds");
        var ul = list.appendChild(el("ul", { id: "kind-list" }));
        answer.kinds.forEach(function (k) {
          ul.appendChild(el("li", {}, [link("#/kinds/" + encodeURIComponent(k.kind), k.kind),
            " (" + plural(k.streams, "stream") + ", last written " + k.recorded_at + ")"]));
        });
        if (answer.kinds.length === 0) { line(list, "p", "No stream yet."); }
      }).catch(function (error) { list.appendChild(failure(error)); });
      return;
    }
    // The kind's streams, the most recently written first, a page at a time.
    var total = line(list, "p", "");
    var body = el("tbody", { id: "streams" });
    list.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {},
      ["Stream", "Version", "Last event", "At"].map(function (h) { return el("th", { text: h }); }))]), body])]));
    var more = list.appendChild(el("button", { id: "more", text: "Older streams", hidden: true }));
    var before = null;
    function load() {
      more.disabled = true;
      getJSON("/api/kinds/" + encodeURIComponent(kind) + "/streams?limit=" + STREAMS_PAGE +
        (before === null ? "" : "&before=" + before)).then(function (page) {
        total.textContent = plural(page.total, "stream") + ", the most recently written first.";
        page.streams.forEach(function (row) {
          body.appendChild(el("tr", {}, [
            el("td", {}, [link(streamHref(row.stream), row.stream)]),
            el("td", { text: "v" + row.version }),
            el("td", { text: row.type }),
            el("td", { className: "hide-narrow", text: row.recorded_at })]));
        });
        before = page.next;
        more.hidden = before === null;
        more.disabled = false;
        body.dataset.loaded = String(body.children.length);
      }).catch(function (error) { list.appendChild(failure(error)); });
    }
    more.addEventListener("click", load);
    load();
  }

  // What changed from `before` to `after`: one entry per path added, removed or changed.
  function diff(before, after, path, out) {
    if (out.length >= 200) { return out; }
    var objects = before && after && typeof before === "object" && typeof after === "object" &&
      Array.isArray(before) === Array.isArray(after);
    if (objects) {
      var keys = {};
      Object.keys(before).forEach(function (k) { keys[k] = true; });
      Object.keys(after).forEach(function (k) { keys[k] = true; });
      Object.keys(keys).forEach(function (k) {
        var sub = path + (Array.isArray(after) ? "[" + k + "]" : (path ? "." : "") + k);
        if (!(k in before)) { out.push(["added", sub, undefined, after[k]]); }
        else if (!(k in after)) { out.push(["removed", sub, before[k], undefined]); }
        else { diff(before[k], after[k], sub, out); }
      });
    } else if (JSON.stringify(before) !== JSON.stringify(after)) {
      out.push([before === undefined ? "added" : "changed", path || "(state)", before, after]);
    }
    return out;
  }

  // ----- A stream: its timeline, the state at a version or a time with what changed, live.
  function stream(id, at) {
    var root = reset(id);
    line(root, "h1", id);
    var timeForm = el("form", {}, [
      el("label", { text: "State at time (RFC 3339) " }, [el("input", { id: "at-time", placeholder: "2026-01-01T00:00:00Z", value: at.time || "" })]),
      el("button", { type: "submit", text: "Show" })]);
    timeForm.addEventListener("submit", function (e) {
      e.preventDefault();
      location.hash = streamHref(id, "/at/" + encodeURIComponent(document.getElementById("at-time").value.trim()));
    });
    root.appendChild(timeForm);
    var panels = root.appendChild(el("div", { id: "panels" }));
    var body = el("tbody", { id: "timeline" });
    var timeline = el("div", {}, [el("h2", { text: "Timeline" }), el("div", { className: "scroll" }, [el("table", {}, [
      el("thead", {}, [el("tr", {}, ["Version", "Position", "Time", "Type", "From", "Payload"].map(function (h) {
        return el("th", { text: h, className: h === "Position" || h === "From" ? "hide-medium" : "" }); }))]), body])])]);
    var state = el("div", { id: "state" });
    root.appendChild(el("div", { className: "panes" }, [timeline, state]));
    var events = [];
    var selected = at.version;
    var kind = kindOf(id);
    var panel = kindPanel(kind, id, panels);

    function add(event) {
      events.push(event);
      var row = el("tr", { data: { version: String(event.version) }, className: event.version === selected ? "selected" : "" }, [
        el("td", {}, [link(streamHref(id, "/v/" + event.version), String(event.version))]),
        el("td", { className: "hide-medium", text: String(event.position) }),
        el("td", { className: "time", text: event.recorded_at.replace("T", " ") }),
        el("td", { text: event.type }),
        el("td", { className: "hide-medium", text: origin(event) }),
        el("td", {}, [el("pre", { text: brief(event.payload, 300) })])]);
      body.appendChild(row);
      panel.add(event);
    }
    function showState(query, label) {
      state.textContent = "";
      line(state, "h2", "State " + label);
      getJSON("/api/streams/" + encodeURIComponent(id) + "/state?" + query).then(function (now) {
        selected = now.version;
        Array.prototype.forEach.call(body.children, function (row) {
          row.className = row.dataset.version === String(now.version) ? "selected" : "";
        });
        var previous = now.version > 1
          ? getJSON("/api/streams/" + encodeURIComponent(id) + "/state?at_version=" + (now.version - 1))
          : Promise.resolve({ state: undefined });
        return previous.then(function (before) {
          line(state, "p", "Replayed from the first event up to version " + now.version + ".").id = "state-version";
          line(state, "h2", "What changed from version " + (now.version - 1));
          var changes = diff(before.state, now.state, "", []);
          var list = state.appendChild(el("ul", { id: "changes" }));
          if (changes.length === 0) { line(list, "li", "nothing"); }
          changes.forEach(function (c) {
            list.appendChild(el("li", { className: c[0] }, [c[0] + " " + c[1] + ": " +
              (c[0] === "added" ? brief(c[3], 200) : c[0] === "removed" ? brief(c[2], 200) : brief(c[2], 100) + " → " + brief(c[3], 100))]));
          });
          line(state, "h2", "State");
          state.appendChild(pretty(now.state)).id = "state-json";
          var event = events.filter(function (e) { return e.version === now.version; })[0];
          if (event) {
            line(state, "h2", "Event " + now.version + ": " + event.type);
            line(state, "p", "Position " + event.position + ", " + event.recorded_at + ", from " + origin(event) +
              (event.metadata && event.metadata.correlation_id ? ", correlation " + event.metadata.correlation_id : ""));
            state.appendChild(pretty(event.payload)).id = "event-json";
          }
        });
      }).catch(function (error) { state.appendChild(failure(error)); });
    }
    if (at.version) { showState("at_version=" + at.version, "at version " + at.version); }
    else if (at.time) { showState("at_time=" + encodeURIComponent(at.time), "at " + at.time); }
    else { line(state, "p", "Choose a version in the timeline to see the state replayed up to it."); }

    function page(from, left) {
      return getJSON("/api/streams/" + encodeURIComponent(id) + "/events?from=" + from + "&limit=1000").then(function (answer) {
        answer.events.forEach(add);
        var last = events.length ? events[events.length - 1].version : from;
        if (answer.events.length === 1000 && left > 1) { return page(last, left - 1); }
        if (answer.events.length === 1000) { line(timeline, "p", "Only the first " + events.length + " events are shown."); }
        return last;
      });
    }
    page(0, MAX_PAGES).then(function (last) {
      body.dataset.loaded = "true";
      if (events.length === 0) { line(timeline, "p", "No event in this stream yet; new ones appear here."); }
      follow("/api/streams/" + encodeURIComponent(id) + "?from=" + last, add);
    }).catch(function (error) { timeline.appendChild(failure(error)); });
  }

  // What a stream page shows above its timeline for its kind: a scan's findings by severity,
  // an execution's log and outputs, a submission's tests.
  function kindPanel(kind, id, parent) {
    if (kind === "scan") { return scanPanel(parent); }
    if (kind === "execution") { return executionPanel(parent); }
    if (kind === "gros_agent") { return agentPanel(parent); }
    if (kind === "test_run") { return testRunPanel(id.slice("test_run-".length), parent); }
    if (kind === "result") {
      parent.appendChild(el("p", {}, [link("#/results/" + id.slice("result-".length), "The submission's tests")]));
    }
    return { add: function () {} };
  }

  // A test run's uploads: each one's summary as a chart, its raw download, and every test's
  // outcome and duration, filterable, as the server reads them from the upload (subunit v2 or
  // v1, or JSON).
  var OUTCOMES = ["PASS", "FAIL", "FAIL_SETUP", "ERROR", "SKIP"];
  function testRunPanel(run, parent) {
    line(parent, "h2", "Uploads");
    var uploads = parent.appendChild(el("div", { id: "uploads" }));
    return {
      add: function (event) {
        if (event.type !== "TestResultUploaded") { return; }
        var p = event.payload, summary = p.summary || {};
        var box = uploads.appendChild(el("div", { className: "card" }));
        var raw = "/v1/test-runs/" + encodeURIComponent(run) + "/uploads/" + encodeURIComponent(p.upload_id);
        box.appendChild(el("p", {}, [p.format + ", " + (summary.Total || 0) + " tests ", link(raw, "(raw upload)")]));
        var max = Math.max.apply(null, OUTCOMES.map(function (o) { return summary[o] || 0; }).concat([1]));
        var chart = box.appendChild(el("div", { className: "summary" }));
        OUTCOMES.forEach(function (o) {
          chart.appendChild(el("div", {}, [el("span", { text: o + " " + (summary[o] || 0) + " " }),
            el("span", { className: "bar" + (o === "PASS" ? "" : o === "SKIP" ? " sev-info" : " sev-high"),
              style: "width:" + ((summary[o] || 0) / max * 60) + "%" })]));
        });
        getJSON(raw + "/tests").then(function (body) {
          var which = el("select", { className: "outcome" }, [el("option", { value: "", text: "every outcome" })]
            .concat(OUTCOMES.map(function (o) { return el("option", { value: o, text: o }); })));
          box.appendChild(el("form", {}, [el("label", { text: "Outcome " }, [which])]));
          var list = box.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("tbody", { className: "outcomes" })])]))
            .querySelector("tbody");
          body.tests.forEach(function (t) {
            // The stream's own word where the bucket hides it (an expected failure is a pass).
            var status = t.status + (t.outcome === "xfail" || t.outcome === "uxsuccess" || t.outcome === "incomplete" ? " (" + t.outcome + ")" : "");
            list.appendChild(el("tr", { data: { outcome: t.status } }, [el("td", { text: status }), el("td", { text: t.name }),
              el("td", { className: "hide-narrow", text: t.duration_seconds === null ? "" : t.duration_seconds.toFixed(3) + " s" })]));
          });
          which.addEventListener("change", function () {
            Array.prototype.forEach.call(list.children, function (row) {
              row.hidden = which.value !== "" && row.dataset.outcome !== which.value;
            });
          });
        }).catch(function (error) { box.appendChild(failure(error)); });
      }
    };
  }

  // An agent's registration, its last preflight check and its exports, from its events.
  function micros(at) { return typeof at === "number" ? new Date(at / 1000).toISOString() : String(at); }
  function agentPanel(parent) {
    line(parent, "h2", "Agent");
    var facts = parent.appendChild(el("dl", { id: "agent" }));
    var shown = {};
    function fact(name, text) {
      if (!shown[name]) {
        line(facts, "dt", name);
        shown[name] = line(facts, "dd", "");
      }
      shown[name].textContent = text;
    }
    line(parent, "h2", "Exports");
    var exports = parent.appendChild(el("ul", { id: "exports" }));
    return {
      add: function (event) {
        var p = event.payload;
        if (event.type === "AgentRegistered") {
          fact("Registered", micros(p.at) + (p.rekeyed ? " (new key)" : "") + ": " + brief(p.public_key, 60));
        } else if (event.type === "PreflightChecked") {
          fact("Last preflight check", micros(p.at) + ": " + (p.ok ? "passed" : "failed: " + (p.failed || []).join(", ")));
        } else if (event.type === "MeasurementsRecorded") {
          fact("Last measurements", micros(p.at) + ": " + (p.measurements || []).map(function (m) {
            return m.name + (m.ok ? " ok" : " not ok");
          }).join(", "));
        } else if (event.type === "ExportAnnounced") {
          line(exports, "li", micros(p.at) + ": files " + p.files);
        } else if (event.type === "FileUploaded") {
          line(exports, "li", micros(p.at) + ": uploaded " + p.name + " (" + (p.file && p.file.size) + " bytes)");
        }
      }
    };
  }

  var SEVERITIES = ["critical", "high", "medium", "low", "info"];
  function scanPanel(parent) {
    line(parent, "h2", "Findings by severity");
    var chart = parent.appendChild(el("div", { id: "severities" }));
    var report = parent.appendChild(el("p"));
    var list = el("tbody", { id: "findings" });
    parent.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {},
      ["Severity", "Title", "Target"].map(function (h) { return el("th", { text: h }); }))]), list])]));
    var counts = {};
    function draw() {
      chart.textContent = "";
      var max = Math.max.apply(null, SEVERITIES.map(function (s) { return counts[s] || 0; }).concat([1]));
      SEVERITIES.forEach(function (s) {
        var n = counts[s] || 0;
        chart.appendChild(el("div", { data: { severity: s } }, [
          el("span", { text: s + " " + n + " " }),
          el("span", { className: "bar sev-" + s, style: "width:" + (n / max * 60) + "%" })]));
      });
    }
    draw();
    return {
      add: function (event) {
        if (event.type === "ScanRequested") {
          report.textContent = "";
          var p = event.payload;
          report.appendChild(link("/engines/" + encodeURIComponent(p.engine) + "/getreport/" + encodeURIComponent(p.scan_id),
            "Download the report (ZIP; the first download frees the scan id, as upstream engines do)"));
        }
        if (event.type !== "FindingReported") { return; }
        var f = event.payload.finding || {};
        var severity = String(f.severity || "info").toLowerCase();
        counts[severity] = (counts[severity] || 0) + 1;
        var target = f.target || {};
        list.appendChild(el("tr", {}, [el("td", { text: severity }), el("td", { text: f.title || "" }),
          el("td", { text: [target.addr, target.port_id, target.protocol].filter(Boolean).join(" ") })]));
        draw();
      }
    };
  }

  function executionPanel(parent) {
    line(parent, "h2", "Log");
    var levels = el("select", { id: "level" }, ["all", "DEBUG", "INFO", "WARN", "ERROR"].map(function (l) {
      return el("option", { value: l === "all" ? "" : l, text: l === "all" ? "every level" : l + " and above" });
    }));
    parent.appendChild(el("form", {}, [el("label", { text: "Levels " }, [levels])]));
    var order = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 };
    var log = parent.appendChild(el("div", { id: "log", className: "scroll" }));
    var outputs = parent.appendChild(el("div", { id: "outputs" }));
    function filter() {
      var least = levels.value ? order[levels.value] : 0;
      Array.prototype.forEach.call(log.children, function (node) {
        node.hidden = order[node.dataset.level] < least;
      });
    }
    levels.addEventListener("change", filter);
    return {
      add: function (event) {
        if (event.type === "LogLineRecorded") {
          var p = event.payload;
          var node = log.appendChild(el("pre", { className: "level-" + p.level, data: { level: p.level },
            text: p.level + " " + p.content }));
          node.hidden = levels.value ? order[p.level] < order[levels.value] : false;
        } else if (event.type === "OutputsRecorded") {
          outputs.textContent = "";
          line(outputs, "h2", "Outputs");
          outputs.appendChild(pretty(event.payload.outputs));
        }
      }
    };
  }

  // ----- Test results (Refstack): the list, and one submission at `#/results/<id>`.
  function results() {
    var root = reset("Results");
    line(root, "h1", "Test results");
    getJSON("/v1/results?page=1").then(function (page) {
      var body = el("tbody", { id: "results" });
      page.results.forEach(function (r) {
        body.appendChild(el("tr", {}, [el("td", {}, [link("#/results/" + r.id, r.id)]),
          el("td", { text: r.created_at }), el("td", { text: String(r.duration_seconds) })]));
      });
      root.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {},
        ["Result", "Uploaded (UTC)", "Duration (s)"].map(function (h) { return el("th", { text: h }); }))]), body])]));
    }).catch(function (error) { root.appendChild(failure(error)); });
  }

  function result(id) {
    var out = reset("Result " + id);
    line(out, "p", "Reading result " + id + "…");
    fetch("/v1/results/" + id, { headers: { Accept: "application/json" } })
      .then(function (answer) {
        return answer.json().then(function (body) { render(id, answer.ok, body); });
      })
      .catch(function (error) {
        out.textContent = "";
        line(out, "p", "Result " + id + " could not be read: " + error);
      });
    function render(id, ok, body) {
      out.textContent = "";
      if (!ok) {
        line(out, "p", "Result " + id + ": " + (body && body.title ? body.title : "not found"));
        return;
      }
      line(out, "h1", "Result " + body.id);
      var facts = line(out, "dl", "");
      [["Cloud (cpid)", body.cpid], ["Uploaded (UTC)", body.created_at],
       ["Duration (s)", body.duration_seconds],
       ["Signed by", body.meta && body.meta.public_key ? body.meta.public_key : "not signed"]]
        .forEach(function (fact) {
          line(facts, "dt", fact[0]);
          line(facts, "dd", String(fact[1]));
        });
      out.appendChild(el("p", {}, [link(streamHref("result-" + body.id), "Its history")]));
      var tests = body.results || [];
      line(out, "h2", tests.length + " passing tests");
      var filter = out.appendChild(el("input", { id: "test-filter", placeholder: "filter tests" }));
      var list = out.appendChild(el("ul", { id: "tests" }));
      tests.forEach(function (name) { line(list, "li", name); });
      filter.addEventListener("input", function () {
        Array.prototype.forEach.call(list.children, function (item) {
          item.hidden = item.textContent.indexOf(filter.value) < 0;
        });
      });
    }
  }

  // ----- Verify: runs the log's verification and follows it to its end.
  function verify() {
    var root = reset("Verify");
    line(root, "h1", "Verify the log");
    line(root, "p", "Checks every event's hash chain up to the durable head.");
    var button = root.appendChild(el("button", { id: "verify", text: "Verify" }));
    var report = root.appendChild(el("div", { id: "verification" }));
    function show(status) {
      report.textContent = "";
      var progress = status.status === "running"
        ? " " + status.checked + " / " + status.head : "";
      line(report, "p", "Status: " + status.status + progress).id = "verify-status";
      if (status.status === "running") {
        report.appendChild(el("progress", { max: Math.max(1, status.head), value: status.checked }));
      }
      if (status.status === "failed") {
        line(report, "p", "First bad position: " + status.position).id = "verify-position";
        line(report, "p", "Problem: " + status.problem);
      }
      report.appendChild(pretty(status));
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      getJSON("/api/verify").then(function (first) {
        show(first);
        var head = first.head;
        function poll() {
          return getJSON("/api/verify?covering=" + head).then(function (status) {
            show(status);
            if (status.status === "running") {
              return new Promise(function (done) { setTimeout(done, 250); }).then(poll);
            }
          });
        }
        return first.status === "running" ? poll() : null;
      }).catch(function (error) { report.appendChild(failure(error)); })
        .then(function () { button.disabled = false; });
    });
  }

  // ----- Executions (HPCWaaS): the newest, by status, each linking to its stream.
  function executions() {
    var root = reset("Executions");
    line(root, "h1", "Workflow executions");
    getJSON("/executions?size=100").then(function (page) {
      var byStatus = {};
      page.executions.forEach(function (x) { byStatus[x.status] = (byStatus[x.status] || 0) + 1; });
      root.appendChild(el("div", { className: "cards" }, Object.keys(byStatus).sort().map(function (status) {
        return el("div", { className: "card" }, [el("div", { className: "big", text: String(byStatus[status]) }), status]);
      })));
      line(root, "p", page.executions.length + " newest of " + page.total_results + ".");
      var body = el("tbody", { id: "executions" });
      page.executions.forEach(function (x) {
        body.appendChild(el("tr", {}, [el("td", {}, [link(streamHref("execution-" + x.id), x.id)]),
          el("td", { text: x.workflow }), el("td", { text: x.status }),
          el("td", { className: "hide-narrow", text: x.requested_at || "" }), el("td", { className: "hide-narrow", text: x.ended_at || "" })]));
      });
      root.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {},
        ["Execution", "Workflow", "Status", "Requested", "Ended"].map(function (h) { return el("th", { text: h }); }))]), body])]));
    }).catch(function (error) { root.appendChild(failure(error)); });
  }

  // ----- Inventory (Partisci): applications × hosts, with versions and last reports.
  function inventory() {
    var root = reset("Inventory");
    line(root, "h1", "Inventory");
    getJSON("/api/v1/version/").then(function (page) {
      var apps = {}, hosts = {}, cells = {};
      page.data.forEach(function (v) {
        apps[v.app_id] = v.app;
        hosts[v.host] = true;
        var key = v.app_id + "\n" + v.host;
        (cells[key] = cells[key] || []).push(v);
      });
      var hostNames = Object.keys(hosts).sort();
      var body = el("tbody", { id: "inventory" });
      Object.keys(apps).sort().forEach(function (app) {
        body.appendChild(el("tr", {}, [el("th", { text: apps[app] })].concat(hostNames.map(function (host) {
          var here = cells[app + "\n" + host] || [];
          return el("td", { title: here.map(function (v) { return "last report " + new Date(v.last_update * 1000).toISOString(); }).join("; "),
            text: here.map(function (v) { return v.ver + (v.instance ? " (#" + v.instance + ")" : ""); }).join(", ") });
        }))));
      });
      root.appendChild(el("div", { className: "scroll" }, [el("table", {}, [el("thead", {}, [el("tr", {},
        [el("th", { text: "Application \\ host" })].concat(hostNames.map(function (host) {
          return el("th", {}, [link(streamHref("host-" + host), host)]);
        })))]), body])]));
    }).catch(function (error) { root.appendChild(failure(error)); });
  }

  // ----- The router: every view has its own address.
  function show() {
    var hash = window.location.hash;
    var match = /^#\/results\/([0-9A-Za-z-]+)$/.exec(hash);
    if (match) { return result(match[1]); }
    if (hash === "#/results") { return results(); }
    if (hash === "#/verify") { return verify(); }
    if (hash === "#/executions") { return executions(); }
    if (hash === "#/inventory") { return inventory(); }
    if (hash === "#/streams") { return streams(null); }
    match = /^#\/kinds\/([^/]+)$/.exec(hash);
    if (match) { return streams(decodeURIComponent(match[1])); }
    match = /^#\/streams\/([^/]+)(?:\/v\/(\d+)|\/at\/(.+))?$/.exec(hash);
    if (match) {
      return stream(decodeURIComponent(match[1]), {
        version: match[2] ? Number(match[2]) : null,
        time: match[3] ? decodeURIComponent(match[3]) : null
      });
    }
    return overview();
  }
  window.addEventListener("hashchange", show);
  show();
})();
