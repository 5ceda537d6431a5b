/* Switchyard embedded pages. Plain JavaScript, no dependencies, no build step.
 *
 * The access token arrives only by the host's `switchyard:auth` message and lives in this
 * closure: never in a URL, cookie or storage. Every value from the API is written as text
 * (textContent, attributes), never parsed as HTML. */
(function () {
  "use strict";

  var UI = window.SwitchyardUI;
  var ApiError = UI.ApiError, parseJson = UI.parseJson, h = UI.h, append = UI.append, link = UI.link, button = UI.button, when = UI.when, loading = UI.loading, empty = UI.empty, alertBox = UI.alertBox, badge = UI.badge, confirmDialog = UI.confirmDialog, secretCallout = UI.secretCallout, table = UI.table;

  var body = document.body;
  var SESSION_ID = body.getAttribute("data-session-id");
  var ORIGINS = parseJson(body.getAttribute("data-origins"), []);
  var API = "/api/v1";
  var PREFIX = "switchyard:";
  var main = document.getElementById("main");
  var nav = document.getElementById("nav");

  var token = null;
  var hostOrigin = null;
  var me = null; // GET /sessions/current
  var ended = false;
  var expiringTimer = null;
  var fromHost = false;
  var cache = {};
  var flash = null; // a message for the next page shown (after an OAuth popup, say)

  var accent = body.getAttribute("data-accent");
  if (accent && /^#[0-9a-fA-F]{6}$/.test(accent)) {
    document.documentElement.style.setProperty("--accent", accent);
  }

  /* ---------- time ---------- */

  function localInput(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  /* ---------- messages ---------- */

  function postToHost(message) {
    if (window.parent === window) return;
    if (hostOrigin) window.parent.postMessage(message, hostOrigin);
    else ORIGINS.forEach(function (origin) { window.parent.postMessage(message, origin); });
  }

  window.addEventListener("message", function (event) {
    if (event.source !== window.parent || ORIGINS.indexOf(event.origin) < 0) return;
    var data = event.data;
    if (!data || typeof data.type !== "string") return;
    if (data.type === PREFIX + "auth" && typeof data.access_token === "string" && data.access_token) {
      hostOrigin = event.origin;
      receiveToken(data.access_token);
    } else if (data.type === PREFIX + "navigate" && typeof data.path === "string") {
      fromHost = true;
      go(data.path.replace(/^\/+/, ""));
    }
  });

  function receiveToken(value) {
    var first = !token;
    token = value;
    api("GET", "/sessions/current").then(function (current) {
      var wasEnded = ended;
      me = current;
      ended = false;
      scheduleExpiring();
      if (first || wasEnded) {
        renderNav();
        route();
      }
    }, function () { /* a 401 already showed the ended state */ });
  }

  function scheduleExpiring() {
    clearTimeout(expiringTimer);
    var at = new Date(me.expires_at).getTime();
    var delay = Math.max(0, at - Date.now() - 60000);
    expiringTimer = setTimeout(function () {
      postToHost({ type: PREFIX + "token-expiring", session_id: SESSION_ID, expires_at: me.expires_at });
    }, Math.min(delay, 2147483000));
  }

  function sessionEnded() {
    if (ended) return;
    ended = true;
    postToHost({ type: PREFIX + "token-expired", session_id: SESSION_ID });
    clearTimeout(expiringTimer);
    nav.replaceChildren();
    main.replaceChildren(
      h("h1", { tabindex: "-1" }, "Session ended"),
      h("p", { role: "status" }, "This session has ended. Waiting for the page around it to renew it…")
    );
    resized();
  }

  var lastHeight = 0;
  var resizeQueued = false;
  function resized() {
    if (resizeQueued) return;
    resizeQueued = true;
    requestAnimationFrame(function () {
      resizeQueued = false;
      var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
      if (height !== lastHeight) {
        lastHeight = height;
        postToHost({ type: PREFIX + "resize", height: height });
      }
    });
  }
  if (window.ResizeObserver) new ResizeObserver(resized).observe(document.documentElement);

  /* ---------- API ---------- */

  function api(method, path, payload) {
    if (!token) return Promise.reject(new ApiError(401, null));
    var init = {
      method: method,
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      // Same-origin calls then carry this origin in `Origin` (the page itself sends no referrer).
      referrerPolicy: "origin",
    };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = text ? parseJson(text, null) : null;
        if (response.status === 401) {
          sessionEnded();
          throw new ApiError(401, data);
        }
        if (!response.ok) throw new ApiError(response.status, data);
        return data;
      });
    }, function () {
      throw new ApiError(0, { error: { code: "network", message: "The server could not be reached. Check the connection and try again." } });
    });
  }

  function ws(path) {
    return "/workspaces/" + encodeURIComponent(me.workspace_id) + path;
  }

  function catalog() {
    if (!cache.catalog) cache.catalog = api("GET", "/integrations").then(function (r) { return r.data; });
    return cache.catalog.catch(function (e) { cache.catalog = null; throw e; });
  }

  function allPages(path) {
    var items = [];
    function next(cursor) {
      var sep = path.indexOf("?") < 0 ? "?" : "&";
      return api("GET", path + sep + "limit=200" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "")).then(function (page) {
        items = items.concat(page.data);
        return page.next_cursor && items.length < 2000 ? next(page.next_cursor) : items;
      });
    }
    return next(null);
  }

  function connections() { return allPages(ws("/connections")); }
  function eventTypes() { return allPages(ws("/event-types")).catch(function () { return []; }); }

  /* ---------- roles ---------- */

  function canWrite() { return me && (me.role === "editor" || me.role === "admin"); }
  function canManage() { return me && me.role === "admin"; }
  /* A session narrowed to one resource uses the workspace's connections but does not change them. */
  function canChangeConnections() { return canWrite() && !me.resource; }

  /* ---------- shared pieces ---------- */

  function page(title, lead) {
    document.title = title + " · " + (document.title.split(" · ").pop() || "integrations");
    var heading = h("h1", { tabindex: "-1" }, title);
    var parts = [heading];
    if (lead) parts.push(h("p", { class: "lead" }, lead));
    if (flash) { parts.push(h("p", { class: "success", role: "status" }, flash)); flash = null; }
    main.replaceChildren.apply(main, parts);
    return heading;
  }

  /* A form field for a catalog field spec. `value` is the current value (config); secrets start empty. */
  function field(spec, prefix, value, options) {
    var id = prefix + "-" + spec.key;
    var o = options || {};
    var help = spec.description || o.help;
    var described = help ? id + "-help" : null;
    var control;
    var current = value === undefined || value === null ? (spec.default !== undefined ? spec.default : "") : value;
    var required = spec.required && !o.optional;
    if (spec.type === "select") {
      control = h("select", { id: id, name: spec.key, required: required, "aria-describedby": described },
        required ? null : h("option", { value: "" }, "—"),
        (spec.options || []).map(function (opt) { return h("option", { value: opt, selected: String(current) === opt }, opt); }));
    } else if (spec.type === "template" || spec.type === "object" || spec.type === "mapping") {
      var text = typeof current === "string" ? current : current === "" ? "" : JSON.stringify(current, null, 2);
      control = h("textarea", { id: id, name: spec.key, required: required, rows: spec.type === "template" ? 4 : 6, class: spec.type === "template" ? "" : "mono", spellcheck: "false", "aria-describedby": described }, text);
    } else {
      var type = spec.type === "secret" ? "password" : spec.type === "url" ? "url" : spec.type === "integer" ? "number" : "text";
      control = h("input", { id: id, name: spec.key, type: type, required: required, value: spec.type === "secret" ? "" : current, autocomplete: spec.type === "secret" ? "new-password" : "off", "aria-describedby": described, placeholder: o.placeholder || null, min: spec.type === "integer" ? "0" : null });
      if (o.list) control.setAttribute("list", o.list);
    }
    control.setAttribute("data-kind", spec.type);
    return h("div", { class: "field" },
      h("label", { for: id }, spec.label || spec.key, required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
      control,
      help ? h("p", { class: "help", id: described }, help) : null,
      h("p", { class: "field-error", id: id + "-error", hidden: true }));
  }

  /* Reads the fields of a fieldset into an object; JSON kinds are parsed (errors are collected). */
  function readFields(container, specs, errors, prefix) {
    var out = {};
    specs.forEach(function (spec) {
      var control = container.querySelector("[name='" + cssEscape(spec.key) + "']");
      if (!control) return;
      var raw = control.value;
      if (raw === "" || raw === null) return;
      if (spec.type === "object" || spec.type === "mapping") {
        var parsed = parseJson(raw, undefined);
        if (parsed === undefined) errors.push({ field: prefix + "." + spec.key, message: "must be valid JSON" });
        else out[spec.key] = parsed;
      } else if (spec.type === "integer") {
        out[spec.key] = Number(raw);
      } else {
        out[spec.key] = raw;
      }
    });
    return out;
  }

  function cssEscape(s) { return window.CSS && CSS.escape ? CSS.escape(s) : s.replace(/[^a-zA-Z0-9_-]/g, "\\$&"); }

  /* Shows an API error on a form: each detail beside its field, and a summary at the top. */
  function showErrors(form, error, fieldIds) {
    form.querySelectorAll(".field-error").forEach(function (p) { p.hidden = true; p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (c) { c.removeAttribute("aria-invalid"); });
    var summary = form.querySelector(".form-alert");
    if (!error) { summary.replaceChildren(); return; }
    var unplaced = [];
    (error.details || []).forEach(function (d) {
      var id = fieldIds(d.field);
      var control = id && document.getElementById(id);
      var p = id && document.getElementById(id + "-error");
      if (control && p) {
        p.textContent = d.message;
        p.hidden = false;
        control.setAttribute("aria-invalid", "true");
        var by = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
        if (by.indexOf(id + "-error") < 0) by.push(id + "-error");
        control.setAttribute("aria-describedby", by.join(" "));
      } else {
        unplaced.push(d.field + ": " + d.message);
      }
    });
    summary.replaceChildren(h("div", { class: "alert", role: "alert" }, error.message, unplaced.length ? h("ul", null, unplaced.map(function (t) { return h("li", null, t); })) : null));
    var firstInvalid = form.querySelector("[aria-invalid]");
    if (firstInvalid) firstInvalid.focus();
  }

  function busy(buttonEl, promise, text) {
    var label = buttonEl.textContent;
    buttonEl.disabled = true;
    buttonEl.setAttribute("aria-busy", "true");
    if (text) buttonEl.textContent = text;
    return promise.then(function (v) { reset(); return v; }, function (e) { reset(); throw e; });
    function reset() { buttonEl.disabled = false; buttonEl.removeAttribute("aria-busy"); buttonEl.textContent = label; }
  }

  /* ---------- navigation ---------- */

  var SECTIONS = [["dashboard", "Dashboard"], ["connections", "Connections"], ["rules", "Rules"], ["events", "Events"]];

  function renderNav() {
    var list = h("ul", null, SECTIONS.map(function (s) { return h("li", null, link(s[0], s[1], { "data-section": s[0] })); }));
    nav.replaceChildren(list);
    if (me.resource) {
      nav.append(h("p", { class: "scope-note" }, "Showing only ", h("strong", null, me.resource.resource + " " + me.resource.resource_id),
        ": its events and deliveries, and the rules for it."));
    }
    markNav();
  }

  function markNav() {
    var section = currentPath().split(/[/?]/)[0] || "dashboard";
    nav.querySelectorAll("a").forEach(function (a) {
      if (a.getAttribute("data-section") === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
  }

  function currentPath() {
    return decodeURIComponent(location.hash.replace(/^#\/?/, "")) || "dashboard";
  }

  function go(path) {
    var target = "#/" + path;
    if (location.hash === target) route();
    else location.hash = target;
  }

  window.addEventListener("hashchange", function () { route(); });

  function route() {
    if (!me || ended) return;
    var path = currentPath();
    var q = path.indexOf("?");
    var query = new URLSearchParams(q < 0 ? "" : path.slice(q + 1));
    var parts = (q < 0 ? path : path.slice(0, q)).split("/");
    markNav();
    if (!fromHost) postToHost({ type: PREFIX + "navigate", path: path });
    fromHost = false;
    var view;
    switch (parts[0]) {
      case "connections": view = parts[1] === "new" ? newConnection(query) : parts[1] ? connectionPage(parts[1]) : connectionList(); break;
      case "rules": view = parts[1] ? ruleBuilder(parts[1] === "new" ? null : parts[1], query) : ruleList(); break;
      case "events": view = parts[1] ? eventPage(parts[1]) : eventList(query); break;
      default: view = dashboard();
    }
    Promise.resolve(view).catch(function (error) {
      if (error && error.status === 401) return;
      // The page did not load: its "Loading…" gives way to why.
      main.querySelectorAll(".status").forEach(function (s) { s.remove(); });
      main.append(alertBox(error));
    }).then(function () {
      var heading = main.querySelector("h1");
      if (heading && document.activeElement && document.activeElement !== document.body && !main.contains(document.activeElement)) heading.focus();
      else if (heading && document.activeElement === document.body) heading.focus({ preventScroll: true });
      resized();
    });
  }

  /* ---------- Dashboard ---------- */

  function dashboard() {
    page("Dashboard", "Events and deliveries of " + me.workspace_name + ".");
    var status = loading();
    main.append(status);
    // Usage is the whole workspace's: a session narrowed to one resource does not see it.
    var usage = me.resource ? Promise.resolve(null) : api("GET", ws("/usage"));
    return Promise.all([api("GET", ws("/stats")), api("GET", ws("/deliveries?status=dead&limit=5")), connections(), usage]).then(function (r) {
      var stats = r[0], failures = r[1].data, conns = r[2];
      var names = {};
      conns.forEach(function (c) { names[c.id] = c.name; });
      status.remove();
      var count = function (n) { return n >= 100000 ? "100,000+" : n.toLocaleString(); };
      var windowCard = function (label, w) {
        var sampled = w.sampled < w.deliveries_total;
        return h("section", { class: "card", "aria-label": label },
          h("h2", null, label),
          h("dl", { class: "figures" },
            h("div", null, h("dt", null, "Events"), h("dd", null, count(w.events))),
            h("div", null, h("dt", null, "Deliveries"), h("dd", null, count(w.deliveries_total))),
            h("div", null, h("dt", null, sampled ? "Succeeded (latest " + w.sampled.toLocaleString() + ")" : "Succeeded"), h("dd", null, w.deliveries.succeeded.toLocaleString())),
            h("div", null, h("dt", null, sampled ? "Failure rate (latest " + w.sampled.toLocaleString() + ")" : "Failure rate"),
              h("dd", { class: w.failure_rate >= 0.1 ? "bad" : "" }, (w.failure_rate * 100).toFixed(w.failure_rate > 0 && w.failure_rate < 0.01 ? 2 : 1) + "%"))));
      };
      main.append(h("div", { class: "cards" }, windowCard("Last 24 hours", stats.last_24h), windowCard("Last 7 days", stats.last_7d)));
      if (r[3]) main.append(usageCard(r[3]));
      var attention = h("section", { class: "panel", "aria-labelledby": "attention-title" }, h("h2", { id: "attention-title" }, "Connections that need attention"));
      if (!stats.attention.length) attention.append(empty("Every connection is healthy."));
      else attention.append(h("ul", { class: "list" }, stats.attention.map(function (a) {
        var why = a.reason === "needs_reauth" ? "needs to be reconnected"
          : a.reason === "disabled" ? "was disabled after failing for too long: resume it once it is fixed"
          : a.reason === "paused" ? "is paused: its deliveries wait"
          : "is failing: " + (a.deliveries_24h.dead + a.deliveries_24h.retrying) + " of its deliveries in the last day failed";
        return h("li", null, link("connections/" + a.id, a.name), " ", badge(a.reason), h("span", { class: "muted" }, " " + a.type + " " + why));
      })));
      main.append(attention);
      var recent = h("section", { class: "panel", "aria-labelledby": "failures-title" }, h("h2", { id: "failures-title" }, "Recent failures"));
      if (!failures.length) recent.append(empty("No delivery has failed."));
      else recent.append(h("ul", { class: "list" }, failures.map(function (d) {
        return h("li", null, link("events/" + d.event_id, "Delivery to " + (names[d.connection_id] || "a deleted connection")), " ", when(d.updated_at),
          d.last_error ? h("p", { class: "muted small" }, d.last_error) : null);
      })), link("events?status=failed", "All failed events"));
      main.append(recent);
    });
  }

  /* The month against the plan: each limited count with a meter, the deliveries by outcome, and
   * the last 14 days as a table (screen readers read it as one). */
  function usageCard(u) {
    var month = new Date(u.period.start).toLocaleDateString(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
    var figure = function (label, used, limit) {
      var value = used.toLocaleString() + (limit === null || limit === undefined ? "" : " of " + limit.toLocaleString());
      var meter = limit ? h("meter", { min: "0", max: String(limit), value: String(Math.min(used, limit)), high: String(limit * 0.8), optimum: "0",
        "aria-label": label + ": " + value }) : null;
      return h("div", null, h("dt", null, label), h("dd", { class: limit && used >= limit ? "bad" : "" }, value, meter));
    };
    var d = u.deliveries;
    var days = u.daily.slice(-14).reverse().filter(function (day) { return day.events || day.deliveries || day.succeeded || day.dead; });
    return h("section", { class: "panel", "aria-labelledby": "usage-title" },
      h("h2", { id: "usage-title" }, "Usage in " + month),
      h("p", { class: "muted" }, (u.plan ? "Plan: " + u.plan + ". " : "") + "Counts start again ", when(u.events.resets_at), "."),
      h("dl", { class: "figures" },
        figure("Events", u.events.used, u.events.limit),
        figure("Connections", u.connections.used, u.connections.limit),
        figure("Rules", u.rules.used, u.rules.limit),
        h("div", null, h("dt", null, "Deliveries"), h("dd", null, d.created.toLocaleString() + " created, " + d.succeeded.toLocaleString() + " succeeded, " + d.dead.toLocaleString() + " failed"))),
      days.length ? table(["Day", "Events", "Deliveries", "Succeeded", "Failed"], days.map(function (day) {
        return h("tr", null, h("td", null, day.day), h("td", null, day.events.toLocaleString()), h("td", null, day.deliveries.toLocaleString()),
          h("td", null, day.succeeded.toLocaleString()), h("td", null, day.dead.toLocaleString()));
      }), "Usage per day, last 14 days") : empty("Nothing counted in the last 14 days."));
  }

  /* ---------- Connections ---------- */

  function connectionList() {
    page("Connections", "Where this workspace's events are delivered.");
    if (canChangeConnections()) main.append(h("p", null, link("connections/new", "New connection", { class: "button" })));
    var status = loading();
    main.append(status);
    return Promise.all([connections(), catalog()]).then(function (r) {
      var conns = r[0], kinds = {};
      r[1].forEach(function (k) { kinds[k.type] = k.name; });
      status.remove();
      if (!conns.length) {
        main.append(empty("No connections yet. A connection is a destination: a webhook URL, a Slack workspace, a CRM."));
        return;
      }
      main.append(table(["Name", "Type", "Status", "Created"], conns.map(function (c) {
        return h("tr", null, h("td", null, link("connections/" + c.id, c.name)), h("td", null, kinds[c.type] || c.type), h("td", null, badge(c.status)), h("td", null, when(c.created_at)));
      }), "Connections"));
    });
  }

  function newConnection(query) {
    if (!canChangeConnections()) { page("New connection"); main.append(alertBox("This session may not create connections.")); return; }
    var type = query.get("type");
    return catalog().then(function (kinds) {
      var kind = kinds.filter(function (k) { return k.type === type; })[0];
      if (!kind) {
        page("New connection", "Choose where events should go.");
        main.append(h("ul", { class: "types" }, kinds.map(function (k) {
          return h("li", null, link("connections/new?type=" + encodeURIComponent(k.type), [h("strong", null, k.name), h("span", null, k.description)], { class: "type-card" }));
        })));
        return;
      }
      page("New " + kind.name + " connection", kind.description);
      main.append(connectionForm(kind, null));
    });
  }

  function connectionForm(kind, existing) {
    var form = h("form", { novalidate: true, "aria-label": existing ? "Edit connection" : "New connection" });
    var nameSpec = { key: "name", label: "Name", type: "string", required: true, description: "How people here will recognise it, e.g. “Alerts to #ops”." };
    var configSpecs = kind.config_fields || [];
    var authSpecs = kind.auth.type === "api_key" ? kind.auth.fields || [] : [];
    var oauth = kind.auth.type === "oauth";
    form.append(h("div", { class: "form-alert" }));
    form.append(field(nameSpec, "conn", existing ? existing.name : ""));
    if (configSpecs.length) {
      form.append(h("fieldset", null, h("legend", null, "Settings"), configSpecs.map(function (spec) {
        return field(spec, "config", existing ? existing.config[spec.key] : undefined);
      })));
    }
    if (authSpecs.length) {
      form.append(h("fieldset", null, h("legend", null, "Credentials"),
        existing ? h("p", { class: "help" }, "Stored encrypted and never shown. Leave these empty to keep the current ones.") : null,
        authSpecs.map(function (spec) { return field(spec, "credentials", undefined, { optional: !!existing }); })));
    }
    var ids = function (path) {
      if (path === "name") return "conn-name";
      var m = /^(config|credentials)\.([^.[]+)/.exec(path);
      return m ? m[1] + "-" + m[2] : null;
    };
    var submit = h("button", { type: "submit" }, oauth && !existing ? "Connect with " + kind.name : existing ? "Save changes" : "Create connection");
    form.append(h("div", { class: "actions" }, submit, existing ? link("connections/" + existing.id, "Cancel", { class: "button secondary" }) : link("connections/new", "Back", { class: "button secondary" })));
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var errors = [];
      var name = form.querySelector("#conn-name").value.trim();
      var config = readFields(form, configSpecs, errors, "config");
      var credentials = readFields(form, authSpecs, errors, "credentials");
      if (!name) errors.push({ field: "name", message: "is required" });
      if (errors.length) { showErrors(form, { message: "Check the fields marked below.", details: errors }, ids); return; }
      var popup = null;
      var request;
      if (oauth && !existing) {
        // Opened now, inside the click, so that no popup blocker stops it; pointed at the provider below.
        popup = window.open("", "switchyard-oauth", "popup,width=600,height=720");
        request = api("POST", ws("/connections/oauth"), { type: kind.type, name: name, config: config, redirect_to: location.origin + "/embed/oauth/done" });
      } else if (existing) {
        var patch = { name: name, config: config };
        if (Object.keys(credentials).length) patch.credentials = credentials;
        request = api("PATCH", "/connections/" + encodeURIComponent(existing.id), patch);
      } else {
        var create = { type: kind.type, name: name, config: config };
        if (authSpecs.length) create.credentials = credentials;
        request = api("POST", ws("/connections"), create);
      }
      busy(submit, request, "Saving…").then(function (result) {
        showErrors(form, null);
        if (popup) { awaitOAuth(popup, result.authorize_url); return; }
        if (!existing && result.signing_secret) {
          page("Connection created", result.name + " is ready.");
          main.append(secretCallout("Signing secret", result.signing_secret),
            h("p", null, "Your endpoint verifies each request with it (Standard Webhooks signatures)."),
            h("p", null, link("connections/" + result.id, "Open the connection", { class: "button" }), " ", link("connections", "All connections")));
          resized();
          return;
        }
        go("connections/" + result.id);
      }, function (error) {
        if (popup) popup.close();
        showErrors(form, error, ids);
      });
    });
    return form;
  }

  /* Sends the popup to the provider and waits for /embed/oauth/done to report back. */
  function awaitOAuth(popup, url) {
    if (!popup) { main.append(alertBox("The browser blocked the sign-in window. Allow pop-ups for this page and try again.")); return; }
    popup.location.href = url;
    var status = h("p", { class: "status", role: "status" }, "Finish signing in in the window that opened…");
    main.append(status);
    var done = false;
    var finish = function (message) {
      if (done) return;
      done = true;
      window.removeEventListener("message", onMessage);
      clearInterval(poll);
      if (message && message.connection_id) { flash = "Connected. The new connection is in the list."; go("connections"); }
      else if (message && message.error) status.replaceWith(alertBox("The connection was not made: " + message.error));
      else go("connections");
    };
    var onMessage = function (event) {
      if (event.origin !== location.origin || event.source !== popup) return;
      if (event.data && event.data.type === PREFIX + "oauth") finish(event.data);
    };
    window.addEventListener("message", onMessage);
    var poll = setInterval(function () { if (popup.closed) finish(null); }, 500);
  }

  function connectionPage(id) {
    page("Connection");
    var status = loading();
    main.append(status);
    return Promise.all([api("GET", "/connections/" + encodeURIComponent(id)), catalog(), allPages(ws("/rules"))]).then(function (r) {
      var c = r[0], kind = r[1].filter(function (k) { return k.type === c.type; })[0];
      var rules = r[2].filter(function (rule) { return rule.connection_id === c.id; });
      page(c.name, (kind ? kind.name : c.type) + " connection");
      main.append(h("dl", { class: "facts" },
        h("div", null, h("dt", null, "Status"), h("dd", null, badge(c.status))),
        h("div", null, h("dt", null, "Created"), h("dd", null, when(c.created_at))),
        h("div", null, h("dt", null, "In flight at most"), h("dd", null, String(c.max_in_flight))),
        h("div", null, h("dt", null, "Rate limit"), h("dd", null, c.rate_limit_per_minute ? c.rate_limit_per_minute + " a minute" : "none")),
        c.failing_since ? h("div", null, h("dt", null, "Failing since"), h("dd", null, when(c.failing_since))) : null,
        c.circuit && c.circuit.state !== "closed" ? h("div", null, h("dt", null, "Circuit"), h("dd", null, badge(c.circuit.state), " " + (c.circuit.reason || ""))) : null));
      if (c.circuit && c.circuit.state === "open") {
        main.append(h("p", { class: "notice", role: "status" }, "Too many recent attempts failed, so nothing is sent for now; the deliveries wait, spending no attempts. One is tried again ", when(c.circuit.retry_at), "."));
      }
      if (c.status === "paused" || c.status === "disabled") {
        main.append(h("p", { class: "notice", role: "status" }, c.status === "paused"
          ? "Paused " : "Disabled: every attempt failed for too long. Disabled ", when(c.inactive_since),
          ". Its deliveries wait, spending no attempts, until it is resumed; then they go out oldest first, at its pace."));
      }
      var actions = h("div", { class: "actions" });
      if (canChangeConnections()) {
        var inactive = c.status === "paused" || c.status === "disabled";
        actions.append(button(inactive ? "Resume deliveries" : "Pause deliveries", function (e) {
          busy(e.target, api("POST", "/connections/" + encodeURIComponent(c.id) + (inactive ? "/resume" : "/pause"), {})).then(function () {
            var done = inactive ? "Resumed: waiting deliveries go out again." : "Paused: nothing more is sent until you resume it.";
            return connectionPage(id).then(function () {
              var anchor = main.querySelector(".lead") || main.querySelector("h1");
              if (anchor) anchor.after(h("p", { class: "success", role: "status" }, done));
            });
          }, function (err) { actions.after(alertBox(err)); });
        }, { class: "secondary" }));
      }
      if (canChangeConnections() && kind && kind.auth.type === "oauth") {
        actions.append(button("Reconnect", function () {
          var popup = window.open("", "switchyard-oauth", "popup,width=600,height=720");
          api("POST", "/connections/" + encodeURIComponent(c.id) + "/reconnect", { redirect_to: location.origin + "/embed/oauth/done" })
            .then(function (r2) { awaitOAuth(popup, r2.authorize_url); }, function (e) { if (popup) popup.close(); main.append(alertBox(e)); });
        }, { class: "secondary" }));
      }
      if (canManage() && !me.resource && c.type === "webhook") {
        actions.append(button("Rotate signing secret", function (e) {
          confirmDialog("Rotate the signing secret?", "A new secret is made now. The current one keeps working beside it for 24 hours, so your endpoint can switch over.", "Rotate").then(function (yes) {
            if (!yes) return;
            busy(e.target, api("POST", "/connections/" + encodeURIComponent(c.id) + "/rotate-secret", {})).then(function (res) {
              actions.after(secretCallout("New signing secret", res.signing_secret));
              resized();
            }, function (err) { actions.after(alertBox(err)); });
          });
        }, { class: "secondary" }));
      }
      if (canManage() && !me.resource) {
        actions.append(button("Delete connection", function (e) {
          var text = rules.length ? "Its " + rules.length + " rule" + (rules.length === 1 ? "" : "s") + " will be deleted with it. History stays." : "History stays; nothing more is sent to it.";
          confirmDialog("Delete " + c.name + "?", text, "Delete").then(function (yes) {
            if (!yes) return;
            busy(e.target, api("DELETE", "/connections/" + encodeURIComponent(c.id) + "?force=true")).then(function () { go("connections"); }, function (err) { actions.after(alertBox(err)); });
          });
        }, { class: "danger" }));
      }
      if (actions.childNodes.length) main.append(actions);
      // Testing a connection: its credentials, by listing what the destination holds; and a test
      // event through any rule that sends here.
      var sets = kind ? choiceSets(kind) : [];
      if (canWrite() && sets.length) {
        var checked = h("div", { "aria-live": "polite" });
        main.append(h("section", { class: "panel", "aria-labelledby": "conn-check" }, h("h2", { id: "conn-check" }, "Test the connection"),
          h("p", { class: "help" }, "Asks " + kind.name + " for its " + sets[0] + " with this connection's credentials."),
          button("Check connection", function (e) {
            checked.replaceChildren(loading("Asking " + kind.name + "…"));
            busy(e.target, api("GET", "/connections/" + encodeURIComponent(c.id) + "/options/" + encodeURIComponent(sets[0]))).then(function (r) {
              checked.replaceChildren(h("p", { class: "success", role: "status" }, "It works: " + kind.name + " lists " + r.data.length + (r.truncated ? "+" : "") + " " + sets[0] + "."));
            }, function (err) { checked.replaceChildren(alertBox(err)); }).then(resized);
          }, { class: "secondary" }), checked));
      }
      var rulesPanel = h("section", { class: "panel", "aria-labelledby": "conn-rules" }, h("h2", { id: "conn-rules" }, "Rules sending here"));
      rulesPanel.append(rules.length ? h("ul", { class: "list" }, rules.map(function (rule) {
        var outcome = h("div", { "aria-live": "polite" });
        return h("li", null, link("rules/" + rule.id, rule.name), h("span", { class: "muted" }, " " + rule.event), " ",
          canWrite() ? button("Send test event", function (e) {
            outcome.replaceChildren(loading("Sending a test event…"));
            busy(e.target, api("POST", "/rules/" + encodeURIComponent(rule.id) + "/test", {}).then(function (accepted) { return waitForOutcome(accepted.event_id); }))
              .then(function (result) { outcome.replaceChildren(testOutcome(result)); }, function (err) { outcome.replaceChildren(alertBox(err)); }).then(resized);
          }, { class: "link", "aria-label": "Send test event through " + rule.name }) : null, outcome);
      }))
        : empty("No rule sends here yet.", canWrite() ? link("rules/new?connection=" + c.id, "New rule", { class: "button" }) : null));
      main.append(rulesPanel);
      if (canChangeConnections() && kind) {
        main.append(h("section", { class: "panel", "aria-labelledby": "conn-edit" }, h("h2", { id: "conn-edit" }, "Settings"), connectionForm(kind, c)));
      }
      status.remove();
    });
  }

  /* The choice sets a type's fields name (channels, lists, ...), in catalog order. */
  function choiceSets(kind) {
    var out = [];
    kind.actions.forEach(function (a) { a.fields.forEach(function (f) { if (f.choices && out.indexOf(f.choices) < 0) out.push(f.choices); }); });
    return out;
  }

  /* ---------- Rules ---------- */

  function ruleList() {
    page("Rules", "Which events go to which connection, and in what shape.");
    if (canWrite()) main.append(h("p", null, link("rules/new", "New rule", { class: "button" })));
    var status = loading();
    main.append(status);
    return Promise.all([allPages(ws("/rules")), connections()]).then(function (r) {
      var names = {};
      r[1].forEach(function (c) { names[c.id] = c.name; });
      status.remove();
      if (!r[0].length) { main.append(empty("No rules yet. A rule sends matching events to a connection.")); return; }
      main.append(table(["Name", "Event", "Connection", "Action", "Active"], r[0].map(function (rule) {
        return h("tr", null, h("td", null, link("rules/" + rule.id, rule.name)), h("td", null, h("code", null, rule.event)), h("td", null, names[rule.connection_id] || "—"),
          h("td", null, rule.action.replace(/_/g, " ")), h("td", null, rule.active ? "Yes" : "No"));
      }), "Rules"));
    });
  }

  var OPS = [["eq", "equals"], ["ne", "does not equal"], ["in", "is one of"], ["not_in", "is none of"], ["gt", "is greater than"], ["gte", "is at least"],
    ["lt", "is less than"], ["lte", "is at most"], ["contains", "contains"], ["starts_with", "starts with"], ["exists", "is present"], ["not_exists", "is absent"]];

  function conditionValue(op, raw) {
    if (op === "exists" || op === "not_exists") return undefined;
    if (op === "in" || op === "not_in") return raw.split(",").map(function (s) { return scalar(s.trim()); }).filter(function (s) { return s !== ""; });
    if (op === "gt" || op === "gte" || op === "lt" || op === "lte") { var n = Number(raw); return raw.trim() !== "" && !isNaN(n) ? n : raw; }
    return scalar(raw);
  }

  function scalar(raw) {
    if (/^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
    if (raw === "true") return true;
    if (raw === "false") return false;
    return raw;
  }

  function showValue(v) {
    if (Array.isArray(v)) return v.map(String).join(", ");
    return v === undefined || v === null ? "" : String(v);
  }

  function payloadPaths(sample, prefix, out) {
    out = out || ["event", "resource", "resource_id"];
    if (sample && typeof sample === "object" && !Array.isArray(sample)) {
      Object.keys(sample).slice(0, 200).forEach(function (k) {
        var path = (prefix || "payload") + "." + k;
        out.push(path);
        if (out.length < 300) payloadPaths(sample[k], path, out);
      });
    }
    return out;
  }

  function conditionEditor(initial, paths) {
    var mode = initial && initial.any ? "any" : "all";
    var leaves = initial ? (initial.any || initial.all || [initial]) : [];
    var flat = leaves.every(function (l) { return l && l.path; });
    var box = h("fieldset", { class: "conditions" }, h("legend", null, "Only when"));
    if (initial && !flat) {
      // Nested groups made through the API: kept as they are, shown as JSON.
      var raw = h("textarea", { id: "rule-conditions-json", rows: 6, class: "mono", "aria-label": "Conditions (JSON)" }, JSON.stringify(initial, null, 2));
      box.append(h("p", { class: "help" }, "These conditions nest groups, which this page shows as JSON."), raw);
      box.read = function () { return parseJson(raw.value, initial); };
      return box;
    }
    var modeSelect = h("select", { id: "rule-match", "aria-label": "Match" }, h("option", { value: "all", selected: mode === "all" }, "all of these are true"), h("option", { value: "any", selected: mode === "any" }, "any of these is true"));
    var rows = h("ol", { class: "condition-rows" });
    var datalist = h("datalist", { id: "payload-paths" }, paths.map(function (p) { return h("option", { value: p }); }));
    var count = 0;
    function addRow(leaf) {
      count += 1;
      var n = count;
      var path = h("input", { type: "text", id: "cond-path-" + n, list: "payload-paths", value: leaf ? leaf.path : "", placeholder: "payload.plan", class: "mono" });
      var op = h("select", { id: "cond-op-" + n }, OPS.map(function (o) { return h("option", { value: o[0], selected: leaf ? leaf.op === o[0] : o[0] === "eq" }, o[1]); }));
      var value = h("input", { type: "text", id: "cond-value-" + n, value: leaf ? showValue(leaf.value) : "", placeholder: "value" });
      var sync = function () { value.hidden = op.value === "exists" || op.value === "not_exists"; valueLabel.hidden = value.hidden; };
      var valueLabel = h("label", { for: "cond-value-" + n, class: "sr-only" }, "Value " + n);
      op.addEventListener("change", sync);
      var row = h("li", { class: "condition" },
        h("label", { for: "cond-path-" + n, class: "sr-only" }, "Field " + n), path,
        h("label", { for: "cond-op-" + n, class: "sr-only" }, "Comparison " + n), op,
        valueLabel, value,
        button("Remove", function () { row.remove(); resized(); }, { class: "link", "aria-label": "Remove condition " + n }));
      row.read = function () {
        if (!path.value.trim()) return null;
        var leafOut = { path: path.value.trim(), op: op.value };
        var v = conditionValue(op.value, value.value);
        if (v !== undefined) leafOut.value = v;
        return leafOut;
      };
      rows.append(row);
      sync();
      resized();
      return path;
    }
    leaves.forEach(addRow);
    box.append(h("div", { class: "row" }, h("label", { for: "rule-match" }, "Match"), modeSelect), rows, datalist,
      button("Add condition", function () { addRow(null).focus(); }, { class: "secondary" }),
      h("p", { class: "help" }, "Fields are event, resource, resource_id or payload.<field>. Separate several values with commas. Numbers and true/false are compared as such. No conditions: every matching event."));
    box.read = function () {
      var list = Array.prototype.map.call(rows.children, function (r) { return r.read(); }).filter(Boolean);
      if (!list.length) return null;
      var out = {};
      out[modeSelect.value] = list;
      return out;
    };
    return box;
  }

  function ruleBuilder(id, query) {
    page(id ? "Rule" : "New rule");
    var status = loading();
    main.append(status);
    var loads = [connections(), catalog(), eventTypes(), id ? api("GET", "/rules/" + encodeURIComponent(id)) : Promise.resolve(null)];
    return Promise.all(loads).then(function (r) {
      var conns = r[0], kinds = r[1], types = r[2], rule = r[3];
      var editable = canWrite();
      page(rule ? rule.name : "New rule", rule ? null : "Send matching events to one of this workspace's connections.");
      if (!conns.length) {
        main.append(empty("A rule sends events to a connection, and there is none yet.", canChangeConnections() ? link("connections/new", "New connection", { class: "button" }) : null));
        return;
      }
      var kindOf = function (connId) {
        var c = conns.filter(function (x) { return x.id === connId; })[0];
        return c && kinds.filter(function (k) { return k.type === c.type; })[0];
      };
      var form = h("form", { novalidate: true, "aria-label": "Rule" });
      form.append(h("div", { class: "form-alert" }));
      form.append(field({ key: "name", label: "Name", type: "string", required: true }, "rule", rule ? rule.name : ""));
      var typeList = h("datalist", { id: "event-types" }, types.map(function (t) { return h("option", { value: t.name }, t.description || (t.received_count + " received")); }));
      form.append(field({ key: "event", label: "Event", type: "string", required: true, description: "An event name, or a pattern such as user.* or *.created; * matches every event." }, "rule", rule ? rule.event : (query.get("event") || ""), { list: "event-types", placeholder: types[0] ? types[0].name : "user.created" }), typeList);
      var connSelect = h("select", { id: "rule-connection_id", name: "connection_id", required: true },
        conns.map(function (c) { return h("option", { value: c.id, selected: rule ? rule.connection_id === c.id : query.get("connection") === c.id }, c.name + " (" + c.type + ")"); }));
      form.append(h("div", { class: "field" }, h("label", { for: "rule-connection_id" }, "Connection"), connSelect, h("p", { class: "field-error", id: "rule-connection_id-error", hidden: true })));
      var actionSelect = h("select", { id: "rule-action", name: "action" });
      form.append(h("div", { class: "field" }, h("label", { for: "rule-action" }, "Action"), actionSelect, h("p", { class: "field-error", id: "rule-action-error", hidden: true })));
      var settings = h("fieldset", { class: "settings" }, h("legend", null, "Action settings"));
      form.append(settings);
      var sample = samplePayload(types, rule ? rule.event : query.get("event"));
      var conditions = conditionEditor(rule ? rule.conditions : null, payloadPaths(sample));
      form.append(conditions);
      var active = h("input", { type: "checkbox", id: "rule-active", checked: rule ? rule.active : true });
      form.append(h("div", { class: "field check" }, active, h("label", { for: "rule-active" }, "Active")));
      var specsNow = [];
      function fillActions(keep) {
        var kind = kindOf(connSelect.value);
        actionSelect.replaceChildren.apply(actionSelect, (kind ? kind.actions : []).map(function (a) {
          return h("option", { value: a.key, selected: keep === a.key }, a.name);
        }));
        fillSettings(rule && rule.action === actionSelect.value && rule.connection_id === connSelect.value ? rule.action_config : {});
      }
      function fillSettings(values) {
        var kind = kindOf(connSelect.value);
        var action = kind && kind.actions.filter(function (a) { return a.key === actionSelect.value; })[0];
        specsNow = action ? action.fields : [];
        settings.replaceChildren(h("legend", null, "Action settings"));
        if (!specsNow.length) settings.append(h("p", { class: "help" }, "This action needs no settings: the event is sent as it is."));
        var conn = connSelect.value;
        specsNow.forEach(function (spec) {
          var help = spec.type === "template" ? "Write text with {{ payload.field }} placeholders (minijinja). Available: event, payload, resource, resource_id, occurred_at." :
            spec.type === "mapping" ? "JSON: {\"schema_version\": 1, \"fields\": [{\"dest\": \"email\", \"source\": {\"type\": \"path\", \"value\": \"payload.email\"}}]}" : null;
          var wrapper = field(spec, "action_config", values ? values[spec.key] : undefined, { help: spec.description ? null : help });
          settings.append(wrapper);
          if (spec.choices && editable) picker(wrapper, spec, conn, values ? values[spec.key] : undefined);
        });
        schedulePreview();
        resized();
      }
      connSelect.addEventListener("change", function () { fillActions(null); });
      actionSelect.addEventListener("change", function () { fillSettings({}); });
      var ids = function (path) {
        if (path === "name" || path === "event" || path === "connection_id" || path === "action") return "rule-" + path;
        var m = /^action_config\.([^.[]+)/.exec(path);
        return m ? "action_config-" + m[1] : null;
      };
      var save = h("button", { type: "submit" }, rule ? "Save rule" : "Create rule");
      var actions = h("div", { class: "actions" }, editable ? save : null);
      form.append(actions);
      if (!editable) form.querySelectorAll("input, select, textarea, button").forEach(function (c) { c.disabled = true; });

      // Preview and test, beside the form.
      var sampleBox = h("textarea", { id: "sample-payload", rows: 8, class: "mono", spellcheck: "false" }, JSON.stringify(sample, null, 2));
      var previewOut = h("div", { class: "preview-output", "aria-live": "polite" });
      var preview = h("section", { class: "panel", "aria-labelledby": "preview-title" },
        h("h2", { id: "preview-title" }, "Preview"),
        h("div", { class: "field" }, h("label", { for: "sample-payload" }, "Sample payload"), sampleBox,
          h("p", { class: "help" }, "The latest payload of this event, or its declared example. Edit it to try other values.")),
        previewOut);
      var previewTimer = null;
      function schedulePreview() {
        clearTimeout(previewTimer);
        previewTimer = setTimeout(runPreview, 400);
      }
      function currentConfig(errors) {
        return readFields(settings, specsNow, errors, "action_config");
      }
      function runPreview() {
        if (!editable) { previewOut.replaceChildren(h("p", { class: "muted" }, "Previews are for editors.")); return; }
        var errors = [];
        var payload = parseJson(sampleBox.value, undefined);
        if (!payload || typeof payload !== "object" || Array.isArray(payload)) { previewOut.replaceChildren(alertBox("The sample payload must be a JSON object.")); return; }
        var config = currentConfig(errors);
        if (errors.length) { previewOut.replaceChildren(alertBox(errors[0].field + " " + errors[0].message)); return; }
        var event = form.querySelector("#rule-event").value.trim();
        api("POST", ws("/rules/preview"), { connection_id: connSelect.value, action: actionSelect.value, action_config: config, event: event || undefined, payload: payload }).then(function (res) {
          if (!res.fields.length) { previewOut.replaceChildren(h("p", { class: "muted" }, "Nothing to preview: this action sends the event as it is.")); return; }
          previewOut.replaceChildren.apply(previewOut, res.fields.map(function (f) {
            var out = f.error ? h("p", { class: "field-error" }, f.error) : h("pre", { class: "mono" }, typeof f.output === "string" ? f.output : JSON.stringify(f.output, null, 2));
            return h("div", { class: "preview-field" }, h("h3", null, f.label), out);
          }));
          resized();
        }, function (error) {
          if (error.status === 422 && error.details.length) previewOut.replaceChildren(alertBox(error.details.map(function (d) { return d.field + ": " + d.message; }).join("; ")));
          else previewOut.replaceChildren(alertBox(error));
          resized();
        });
      }
      settings.addEventListener("input", schedulePreview);
      sampleBox.addEventListener("input", schedulePreview);

      var testPanel = null;
      if (rule && editable) {
        var outcome = h("div", { class: "test-outcome", "aria-live": "polite" });
        var testButton = button("Send test event", function () {
          var payload = parseJson(sampleBox.value, undefined);
          if (!payload || typeof payload !== "object") { outcome.replaceChildren(alertBox("The sample payload must be a JSON object.")); return; }
          outcome.replaceChildren(loading("Sending a test event…"));
          busy(testButton, api("POST", "/rules/" + encodeURIComponent(rule.id) + "/test", { payload: payload }).then(function (accepted) {
            return waitForOutcome(accepted.event_id);
          })).then(function (result) {
            outcome.replaceChildren(testOutcome(result));
            resized();
          }, function (error) { outcome.replaceChildren(alertBox(error)); resized(); });
        });
        testPanel = h("section", { class: "panel", "aria-labelledby": "test-title" }, h("h2", { id: "test-title" }, "Send test event"),
          h("p", { class: "help" }, "Delivers the sample payload through this rule now (its conditions are skipped) and shows what the destination answered."),
          testButton, outcome);
      }

      if (rule && canManage()) {
        actions.append(button("Delete rule", function (e) {
          confirmDialog("Delete " + rule.name + "?", "Events stop going through it. History stays.", "Delete").then(function (yes) {
            if (!yes) return;
            busy(e.target, api("DELETE", "/rules/" + encodeURIComponent(rule.id))).then(function () { go("rules"); }, function (err) { showErrors(form, err, ids); });
          });
        }, { class: "danger" }));
      }

      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var errors = [];
        var body2 = {
          name: form.querySelector("#rule-name").value.trim(),
          event: form.querySelector("#rule-event").value.trim(),
          connection_id: connSelect.value,
          action: actionSelect.value,
          action_config: currentConfig(errors),
          conditions: conditions.read(),
          active: active.checked,
        };
        if (!body2.name) errors.push({ field: "name", message: "is required" });
        if (!body2.event) errors.push({ field: "event", message: "is required" });
        if (errors.length) { showErrors(form, { message: "Check the fields marked below.", details: errors }, ids); return; }
        if (!rule && body2.conditions === null) delete body2.conditions;
        var request = rule ? api("PATCH", "/rules/" + encodeURIComponent(rule.id), body2) : api("POST", ws("/rules"), body2);
        busy(save, request, "Saving…").then(function (saved) {
          showErrors(form, null);
          if (rule) { rule = saved; form.querySelector(".form-alert").replaceChildren(h("p", { class: "success", role: "status" }, "Saved.")); resized(); }
          else go("rules/" + saved.id);
        }, function (error) { showErrors(form, error, ids); resized(); });
      });

      status.remove();
      main.append(h("div", { class: "split" }, form, h("div", { class: "side" }, preview, testPanel)));
      fillActions(rule ? rule.action : null);
      form.querySelector("#rule-event").addEventListener("change", function (e) {
        var s = samplePayload(types, e.target.value);
        if (s && !sampleBox.dataset.edited) { sampleBox.value = JSON.stringify(s, null, 2); schedulePreview(); }
      });
      sampleBox.addEventListener("input", function () { sampleBox.dataset.edited = "1"; });
    });
  }

  /* Turns a text field into a list of the choices the destination holds (channels, lists, ...),
     keeping "Another id…" for anything the list does not show. On failure the text field stays. */
  var OTHER = "switchyard:other";

  function picker(wrapper, spec, connectionId, current) {
    var input = wrapper.querySelector("[name='" + cssEscape(spec.key) + "']");
    var status = h("p", { class: "help", role: "status" }, "Loading the " + spec.choices + " from the destination…");
    wrapper.append(status);
    var key = connectionId + "/" + spec.choices;
    cache.options = cache.options || {};
    if (!cache.options[key]) {
      cache.options[key] = api("GET", "/connections/" + encodeURIComponent(connectionId) + "/options/" + encodeURIComponent(spec.choices));
      cache.options[key].catch(function () { delete cache.options[key]; });
    }
    cache.options[key].then(function (result) {
      if (!document.body.contains(input)) return;
      if (!result.data.length) { status.textContent = "The destination lists no " + spec.choices + " yet: type an id."; return; }
      var known = result.data.some(function (c) { return c.value === current; });
      var select = h("select", { id: input.id, name: spec.key, required: input.required, "aria-describedby": input.getAttribute("aria-describedby"), "data-kind": "string" },
        h("option", { value: "" }, "Choose…"),
        current && !known ? h("option", { value: current, selected: true }, current + " (current)") : null,
        result.data.map(function (c) { return h("option", { value: c.value, selected: c.value === current }, c.label === c.value ? c.label : c.label + " · " + c.value); }),
        h("option", { value: OTHER }, "Another id…"));
      var other = h("input", { type: "text", id: input.id + "-other", "aria-label": (spec.label || spec.key) + " (another id)", hidden: true, class: "mono" });
      select.addEventListener("change", function () {
        var typing = select.value === OTHER;
        other.hidden = !typing;
        if (typing) { select.removeAttribute("name"); other.setAttribute("name", spec.key); other.focus(); }
        else { other.removeAttribute("name"); select.setAttribute("name", spec.key); }
        select.dispatchEvent(new Event("input", { bubbles: true }));
      });
      input.replaceWith(select, other);
      status.textContent = result.truncated ? "Showing the first " + result.data.length + "; pick “Another id…” for the rest." : "";
      if (!status.textContent) status.remove();
      resized();
    }, function (error) {
      status.textContent = "The " + spec.choices + " could not be loaded (" + error.message + "). Type an id instead.";
      resized();
    });
  }

  function samplePayload(types, eventName) {
    var t = types.filter(function (x) { return x.name === eventName; })[0] || (!eventName ? types[0] : null);
    if (t && t.sample) return t.sample;
    if (t && t.example) return t.example;
    return { email: "ada@example.com", first_name: "Ada", last_name: "Lovelace", plan: "pro" };
  }

  /* Polls a test event until its delivery finishes (or 15 s pass). */
  function waitForOutcome(eventId) {
    var started = Date.now();
    function check() {
      return api("GET", "/events/" + encodeURIComponent(eventId)).then(function (event) {
        var d = (event.deliveries || [])[0];
        var done = d && (d.status === "succeeded" || d.status === "dead" || (d.status === "retrying" && d.attempt_count > 0));
        if (done || Date.now() - started > 15000) {
          if (!d) return { event: event };
          return api("GET", "/deliveries/" + encodeURIComponent(d.id)).then(function (full) { return { event: event, delivery: full }; });
        }
        return new Promise(function (resolve) { setTimeout(resolve, 400); }).then(check);
      });
    }
    return check();
  }

  function testOutcome(result) {
    var d = result.delivery;
    if (!d) return h("p", { role: "status" }, "The event was accepted and waits for delivery. ", link("events/" + result.event.id, "Follow it in Events"));
    var attempt = d.attempts[d.attempts.length - 1];
    return h("div", { class: "outcome outcome-" + d.status },
      h("p", { role: "status" }, h("strong", null, d.status === "succeeded" ? "Delivered" : d.status === "dead" ? "Failed" : "Not delivered yet (" + d.status.replace(/_/g, " ") + ")")),
      attempt ? h("dl", { class: "facts" },
        h("div", null, h("dt", null, "Response"), h("dd", null, attempt.status_code ? "HTTP " + attempt.status_code : "none")),
        h("div", null, h("dt", null, "Time"), h("dd", null, attempt.duration_ms + " ms"))) : null,
      attempt && attempt.error ? h("p", { class: "field-error" }, attempt.error) : null,
      attempt && attempt.response_excerpt ? h("pre", { class: "mono" }, attempt.response_excerpt) : null,
      h("p", null, link("events/" + result.event.id, "See the event and its attempts")));
  }

  /* ---------- Events ---------- */

  var EVENT_STATUSES = ["pending", "processing", "completed", "failed"];

  function eventList(query) {
    page("Events", "What this workspace received, and where each went.");
    var filters = { event: query.get("event") || "", status: query.get("status") || "", since: query.get("since") || "", until: query.get("until") || "" };
    var form = h("form", { class: "filters", role: "search", "aria-label": "Filter events" },
      h("div", { class: "field" }, h("label", { for: "f-event" }, "Event"), h("input", { id: "f-event", type: "text", value: filters.event, list: "event-types", placeholder: "any" })),
      h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), h("select", { id: "f-status" }, h("option", { value: "" }, "any"),
        EVENT_STATUSES.map(function (s) { return h("option", { value: s, selected: filters.status === s }, s); }))),
      h("div", { class: "field" }, h("label", { for: "f-since" }, "From"), h("input", { id: "f-since", type: "datetime-local", value: localInput(filters.since) })),
      h("div", { class: "field" }, h("label", { for: "f-until" }, "To"), h("input", { id: "f-until", type: "datetime-local", value: localInput(filters.until) })),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter"), link("events", "Clear", { class: "button secondary" })));
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var q = new URLSearchParams();
      var v = function (id) { return form.querySelector(id).value.trim(); };
      if (v("#f-event")) q.set("event", v("#f-event"));
      if (v("#f-status")) q.set("status", v("#f-status"));
      if (v("#f-since")) q.set("since", new Date(v("#f-since")).toISOString());
      if (v("#f-until")) q.set("until", new Date(v("#f-until")).toISOString());
      var s = q.toString();
      go("events" + (s ? "?" + s : ""));
    });
    main.append(form);
    eventTypes().then(function (types) { form.append(h("datalist", { id: "event-types" }, types.map(function (t) { return h("option", { value: t.name }); }))); });
    if (canWrite()) {
      var replayOut = h("div", { "aria-live": "polite" });
      main.append(h("div", { class: "actions" }, button("Replay failed deliveries", function (e) {
        var scope = filters.event ? "of " + filters.event + " events" : "of every event";
        var range = filters.since || filters.until ? " in the chosen time range" : "";
        confirmDialog("Replay failed deliveries?", "Every dead delivery " + scope + range + " is sent again, as soon as its connection allows.", "Replay").then(function (yes) {
          if (!yes) return;
          var body2 = { status: "dead" };
          if (filters.event) body2.event = filters.event;
          if (filters.since) body2.since = filters.since;
          if (filters.until) body2.until = filters.until;
          busy(e.target, api("POST", ws("/replay"), body2)).then(function (r) {
            replayOut.replaceChildren(h("p", { class: "success", role: "status" }, r.replayed === 1 ? "1 delivery will be sent again." : r.replayed + " deliveries will be sent again."));
          }, function (err) { replayOut.replaceChildren(alertBox(err)); });
        });
      }, { class: "secondary" })), replayOut);
    }
    var results = h("div", null, loading());
    main.append(results);
    var params = new URLSearchParams();
    Object.keys(filters).forEach(function (k) { if (filters[k]) params.set(k, filters[k]); });
    params.set("limit", "50");
    var rows = h("tbody");
    function load(cursor) {
      var p = new URLSearchParams(params);
      if (cursor) p.set("cursor", cursor);
      return api("GET", ws("/events?" + p.toString())).then(function (pageData) {
        if (!cursor) {
          if (!pageData.data.length) { results.replaceChildren(empty(Object.keys(filters).some(function (k) { return filters[k]; }) ? "No event matches these filters." : "No events yet. Events appear here as the product sends them.")); return; }
          results.replaceChildren(h("div", { class: "table-wrap" }, h("table", null, h("caption", { class: "sr-only" }, "Events"),
            h("thead", null, h("tr", null, ["Event", "Status", "Received", "Resource"].map(function (t) { return h("th", { scope: "col" }, t); }))), rows)));
        }
        pageData.data.forEach(function (ev) {
          rows.append(h("tr", null, h("td", null, link("events/" + ev.id, ev.event), ev.test ? h("span", { class: "badge" }, "test") : null), h("td", null, badge(ev.status)), h("td", null, when(ev.received_at)),
            h("td", null, ev.resource ? ev.resource + (ev.resource_id ? " " + ev.resource_id : "") : h("span", { class: "muted" }, "—"))));
        });
        var more = results.querySelector(".more");
        if (more) more.remove();
        if (pageData.next_cursor) {
          results.append(h("p", { class: "more" }, button("Load older events", function (e) { busy(e.target, load(pageData.next_cursor)).catch(function (err) { results.append(alertBox(err)); }); }, { class: "secondary" })));
        }
        resized();
      });
    }
    return load(null).catch(function (error) { results.replaceChildren(alertBox(error)); });
  }

  function eventPage(id) {
    page("Event");
    var status = loading();
    main.append(status);
    return Promise.all([api("GET", "/events/" + encodeURIComponent(id)), connections(), allPages(ws("/rules"))]).then(function (r) {
      var ev = r[0], conns = {}, rules = {};
      r[1].forEach(function (c) { conns[c.id] = c.name; });
      r[2].forEach(function (x) { rules[x.id] = x.name; });
      page(ev.event, null);
      main.append(h("p", null, link("events", "← All events")));
      main.append(h("dl", { class: "facts" },
        h("div", null, h("dt", null, "Status"), h("dd", null, badge(ev.status))),
        h("div", null, h("dt", null, "Received"), h("dd", null, when(ev.received_at))),
        ev.occurred_at ? h("div", null, h("dt", null, "Occurred"), h("dd", null, when(ev.occurred_at))) : null,
        ev.resource ? h("div", null, h("dt", null, "Resource"), h("dd", null, ev.resource + (ev.resource_id ? " " + ev.resource_id : ""))) : null,
        h("div", null, h("dt", null, "Id"), h("dd", { class: "mono" }, ev.id))));
      if (ev.payload !== undefined) {
        main.append(h("section", { class: "panel", "aria-labelledby": "payload-title" }, h("h2", { id: "payload-title" }, "Payload"), h("pre", { class: "mono", tabindex: "0" }, JSON.stringify(ev.payload, null, 2))));
      } else {
        main.append(h("p", { class: "muted" }, "Payloads are not shown to your role."));
      }
      var list = h("section", { class: "panel", "aria-labelledby": "deliveries-title" }, h("h2", { id: "deliveries-title" }, "Deliveries"));
      main.append(list);
      status.remove();
      var deliveries = ev.deliveries || [];
      if (!deliveries.length) { list.append(empty("No rule matched this event, so nothing was delivered.")); return; }
      return Promise.all(deliveries.map(function (d) { return api("GET", "/deliveries/" + encodeURIComponent(d.id)); })).then(function (full) {
        full.forEach(function (d) { list.append(deliveryBlock(d, conns, rules)); });
        resized();
      });
    });
  }

  function deliveryBlock(d, conns, rules) {
    var block = h("article", { class: "delivery", "aria-label": "Delivery to " + (conns[d.connection_id] || "a deleted connection") });
    var out = h("div", { "aria-live": "polite" });
    var status = badge(d.status);
    var actions = h("span", { class: "delivery-actions" });
    var head = h("div", { class: "delivery-head" },
      h("h3", null, conns[d.connection_id] || "Deleted connection"), status,
      h("span", { class: "muted" }, " by rule " + (rules[d.rule_id] || "(deleted)") + " · " + d.attempt_count + " attempt" + (d.attempt_count === 1 ? "" : "s")),
      d.next_attempt_at ? h("span", { class: "muted" }, " · next ", when(d.next_attempt_at)) : null, actions);
    var to = conns[d.connection_id] || "this connection";
    if (canWrite() && d.status !== "delivering") {
      actions.append(button("Replay", function (e) {
        busy(e.target, api("POST", "/deliveries/" + encodeURIComponent(d.id) + "/replay", {})).then(function () {
          out.replaceChildren(h("p", { class: "success", role: "status" }, "Queued to be sent again. Reload the page to see the new attempt."));
        }, function (err) { out.replaceChildren(alertBox(err)); });
      }, { class: "secondary", "aria-label": "Replay the delivery to " + to }));
    }
    if (canWrite() && (d.status === "pending" || d.status === "retrying" || d.status === "delivering")) {
      var cancel = button("Cancel", function (e) {
        busy(e.target, api("POST", "/deliveries/" + encodeURIComponent(d.id) + "/cancel", {})).then(function (r) {
          if (r.status === "cancelled") {
            status.replaceWith(badge("cancelled"));
            cancel.remove();
            out.replaceChildren(h("p", { class: "success", role: "status" }, "Cancelled: it will not be sent again (a replay still sends it)."));
          } else {
            out.replaceChildren(h("p", { class: "success", role: "status" }, "An attempt is in flight: unless it succeeds, it will not be retried."));
          }
        }, function (err) { out.replaceChildren(alertBox(err)); });
      }, { class: "secondary", "aria-label": "Cancel the delivery to " + to });
      actions.append(cancel);
    }
    block.append(head, out);
    if (d.last_error) block.append(h("p", { class: "field-error" }, d.last_error));
    if (!d.attempts.length) block.append(h("p", { class: "muted" }, "No attempt yet."));
    d.attempts.slice().reverse().forEach(function (a) {
      block.append(h("details", { class: "attempt" },
        h("summary", null, "Attempt " + a.number + " · ", a.status_code ? "HTTP " + a.status_code : a.error ? "no response" : "—", " · " + a.duration_ms + " ms · ", when(a.started_at)),
        a.error ? h("p", { class: "field-error" }, a.error) : null,
        a.request ? [h("h4", null, "Request"), h("pre", { class: "mono", tabindex: "0" }, a.request)] : null,
        a.response_excerpt ? [h("h4", null, "Response"), h("pre", { class: "mono", tabindex: "0" }, a.response_excerpt)] : null));
    });
    return block;
  }

  /* ---------- start ---------- */

  if (window.parent === window) {
    main.replaceChildren(h("h1", null, "Open these pages inside the product"), h("p", null, "These pages are embedded by the product you use. Open them from there."));
    return;
  }
  var initial = body.getAttribute("data-page") || "dashboard";
  if (!location.hash) history.replaceState(null, "", "#/" + initial);
  fromHost = true; // the first page was chosen by the host when it minted the session
  postToHost({ type: PREFIX + "ready", session_id: SESSION_ID });
})();
