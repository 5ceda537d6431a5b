/* Switchyard operator console. Plain JavaScript, no dependencies, no build step.
 *
 * The sign-in lives in an HttpOnly cookie this script cannot read; every change it sends carries
 * the page's CSRF token (X-CSRF-Token). Values from the API are written as text, never as HTML.
 * Each workspace's own pages are the embedded ones, mounted with /embed.js and a session this
 * console mints for itself. */
(function () {
  "use strict";

  var UI = window.SwitchyardUI;
  var ApiError = UI.ApiError, parseJson = UI.parseJson, h = UI.h, append = UI.append, link = UI.link, button = UI.button, when = UI.when, loading = UI.loading, empty = UI.empty, alertBox = UI.alertBox, badge = UI.badge, confirmDialog = UI.confirmDialog, secretCallout = UI.secretCallout, table = UI.table;

  var body = document.body;
  var CSRF = body.getAttribute("data-csrf");
  var ROLE = body.getAttribute("data-role"); // owner, admin or viewer
  var MEMBER = body.getAttribute("data-member");
  var API = "/api/v1";
  var main = document.getElementById("main");
  var nav = document.getElementById("nav");
  var mounted = null; // the embedded frame on a workspace's page

  function count(n) {
    return n >= 1000000 ? "1,000,000+" : Number(n).toLocaleString("en");
  }

  /* ---------- API ---------- */

  function api(method, path, payload) {
    var init = { method: method, headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" };
    if (method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    return fetch(API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = text ? parseJson(text, null) : null;
        if (response.status === 401) {
          location.href = "/console/sign-in?error=expired";
          throw new ApiError(401, data);
        }
        if (!response.ok) throw new ApiError(response.status, data);
        return data;
      });
    }, function () {
      throw new ApiError(0, { error: { code: "network", message: "The server could not be reached. Check the connection and try again." } });
    });
  }

  function canAdminister() { return ROLE === "owner" || ROLE === "admin"; }
  function isOwner() { return ROLE === "owner"; }

  /* ---------- shared pieces ---------- */

  function page(title, lead) {
    document.title = title + " · Switchyard console";
    var parts = [h("h1", { tabindex: "-1" }, title)];
    if (lead) parts.push(h("p", { class: "lead" }, lead));
    main.replaceChildren.apply(main, parts);
  }

  function section(title, id) {
    return h("section", { "aria-labelledby": id }, h("h2", { id: id }, title));
  }

  /* Runs an action from a button: busy while it runs, its error shown in `where`. */
  function act(buttonEl, where, promise) {
    buttonEl.disabled = true;
    buttonEl.setAttribute("aria-busy", "true");
    return promise.then(function (v) {
      buttonEl.disabled = false; buttonEl.removeAttribute("aria-busy"); return v;
    }, function (error) {
      buttonEl.disabled = false; buttonEl.removeAttribute("aria-busy");
      where.replaceChildren(alertBox(error));
      throw error;
    });
  }

  /* A form with labelled fields; `submit` gets the values and returns a promise. */
  function form(fields, submitText, submit) {
    var alertArea = h("div", { class: "form-alert", "aria-live": "polite" });
    var submitButton = h("button", { type: "submit", class: "primary" }, submitText);
    var el = h("form", { class: "inline-form", novalidate: true }, alertArea, fields, h("div", { class: "actions" }, submitButton));
    el.addEventListener("submit", function (e) {
      e.preventDefault();
      var values = {};
      new FormData(el).forEach(function (v, k) { values[k] = v; });
      act(submitButton, alertArea, submit(values)).catch(function (error) {
        (error.details || []).forEach(function (d) {
          var control = el.querySelector("[name='" + d.field.split(/[.[]/)[0] + "']");
          if (control) control.setAttribute("aria-invalid", "true");
        });
        var first = el.querySelector("[aria-invalid]");
        if (first) first.focus();
      });
    });
    return el;
  }

  function input(id, label, props) {
    var p = props || {};
    p.id = id;
    p.name = p.name || id.replace(/^f-/, "");
    return h("div", { class: "field" }, h("label", { for: id }, label), h("input", p));
  }

  function select(id, label, options, props) {
    var p = props || {};
    p.id = id;
    p.name = p.name || id.replace(/^f-/, "");
    return h("div", { class: "field" }, h("label", { for: id }, label),
      h("select", p, options.map(function (o) { return h("option", { value: o[0] }, o[1]); })));
  }

  /* ---------- navigation ---------- */

  var SECTIONS = [["workspaces", "Workspaces"], ["api-keys", "API keys"], ["members", "Members"], ["audit", "Audit log"], ["installation", "Installation"]];

  function renderNav() {
    nav.replaceChildren(h("ul", null, SECTIONS.map(function (s) { return h("li", null, link(s[0], s[1], { "data-section": s[0] })); })));
  }

  function currentPath() { return decodeURIComponent(location.hash.replace(/^#\/?/, "")) || "workspaces"; }

  function route() {
    if (mounted) { mounted.destroy(); mounted = null; }
    var path = currentPath();
    var parts = path.split("/");
    nav.querySelectorAll("a").forEach(function (a) {
      if (a.getAttribute("data-section") === parts[0]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    var view;
    switch (parts[0]) {
      case "api-keys": view = apiKeys(); break;
      case "members": view = members(); break;
      case "audit": view = auditLog(); break;
      case "installation": view = installation(); break;
      default: view = parts[1] ? workspacePage(parts[1], parts.slice(2).join("/")) : workspaces();
    }
    Promise.resolve(view).catch(function (error) {
      if (error && error.status === 401) return;
      main.append(alertBox(error));
    }).then(function () {
      var heading = main.querySelector("h1");
      if (heading) heading.focus({ preventScroll: true });
    });
  }

  window.addEventListener("hashchange", route);

  /* ---------- Workspaces ---------- */

  function workspaces() {
    page("Workspaces", "Each customer or environment: its keys, connections, rules and history.");
    var list = h("div", null, loading());
    var created = h("div");
    main.append(created);
    if (canAdminister()) {
      main.append(section("New workspace", "new-ws"), form([input("f-name", "Name", { required: true, placeholder: "acme-prod", autocomplete: "off" })], "Create workspace", function (v) {
        return api("POST", "/workspaces", { name: v.name }).then(function (r) {
          created.replaceChildren(secretCallout("Publishable key of " + r.name, r.publishable_key.key));
          return refresh();
        });
      }));
    }
    main.append(section("All workspaces", "all-ws"), list);
    function refresh() {
      return api("GET", "/workspaces?limit=200").then(function (r) {
        if (!r.data.length) return list.replaceChildren(empty("No workspaces yet."));
        list.replaceChildren(table(["Name", "Id", "Created"], r.data.map(function (w) {
          return h("tr", null, h("td", null, link("workspaces/" + w.id, w.name)), h("td", { class: "mono" }, w.id), h("td", null, when(w.created_at)));
        }), "Workspaces"));
      });
    }
    return refresh();
  }

  function workspacePage(id, inner) {
    page("Workspace", null);
    return api("GET", "/workspaces/" + encodeURIComponent(id)).then(function (w) {
      page(w.name, "Workspace " + w.id);
      var frameArea = h("div", { class: "frame-area" });
      var keysArea = h("div", null, loading());
      var sessionsArea = h("div", null, loading());
      var danger = h("div");
      if (canAdminister()) {
        danger.append(section("Delete this workspace", "ws-delete"),
          h("p", null, "Deletes its keys, connections, rules, sessions and all its history. This cannot be undone."),
          button("Delete workspace", function (e) {
            confirmDialog("Delete " + w.name + "?", "Everything in it goes, history included. This cannot be undone.", "Delete workspace").then(function (yes) {
              if (!yes) return;
              act(e.target, danger, api("DELETE", "/workspaces/" + encodeURIComponent(w.id))).then(function () { location.hash = "#/workspaces"; });
            });
          }, { class: "danger" }));
      }
      main.append(
        h("p", null, link("workspaces", "← All workspaces")),
        section("Its pages", "ws-pages"), frameArea,
        section("Publishable keys", "ws-keys"), keysArea,
        section("Sessions", "ws-sessions"), sessionsArea, danger);
      // The sessions are listed once the console's own is minted, so it is among them.
      return Promise.all([publishableKeys(w, keysArea), mountPages(w, frameArea, inner).then(function () { return sessions(w, sessionsArea); })]);
    });
  }

  /* The workspace's embedded pages, with a session minted for this console. */
  function mountPages(w, area, inner) {
    var role = canAdminister() ? "admin" : "viewer";
    area.replaceChildren(loading("Opening the workspace's pages…"));
    return api("POST", "/sessions", {
      workspace_id: w.id, role: role, ttl_seconds: 1800, allowed_origins: [location.origin],
      external_user_id: "console", launch_page: inner || "dashboard",
      scopes: role === "viewer" ? ["events.payload:read"] : [],
    }).then(function (s) {
      area.replaceChildren();
      if (!window.Switchyard) throw new Error("The pages' helper did not load.");
      mounted = window.Switchyard.mount(area, {
        launchUrl: s.launch_url,
        accessToken: s.access_token,
        title: "Pages of " + w.name,
        minHeight: 600,
        onRefresh: function () {
          return api("POST", "/sessions/" + encodeURIComponent(s.session_id) + "/refresh", {}).then(function (r) { return r.access_token; });
        },
      });
    }).catch(function (error) { area.replaceChildren(alertBox(error)); });
  }

  function publishableKeys(w, area) {
    var shown = h("div");
    function refresh() {
      return api("GET", "/workspaces/" + encodeURIComponent(w.id) + "/publishable-keys?limit=200").then(function (r) {
        var rows = r.data.map(function (k) {
          var actions = h("td", { class: "actions-cell" });
          if (canAdminister()) {
            actions.append(
              button("Rotate", function (e) {
                confirmDialog("Rotate this key?", "A new key replaces " + k.hint + "; the old one stops working at once.", "Rotate").then(function (yes) {
                  if (!yes) return;
                  act(e.target, shown, api("POST", "/workspaces/" + encodeURIComponent(w.id) + "/publishable-keys/" + encodeURIComponent(k.id) + "/rotate", {}))
                    .then(function (made) { shown.replaceChildren(secretCallout("New publishable key", made.key)); return refresh(); });
                });
              }, { class: "secondary", "aria-label": "Rotate key " + k.hint }),
              " ",
              button("Delete", function (e) {
                confirmDialog("Delete this key?", "Events sent with " + k.hint + " are refused from now on.", "Delete").then(function (yes) {
                  if (!yes) return;
                  act(e.target, shown, api("DELETE", "/workspaces/" + encodeURIComponent(w.id) + "/publishable-keys/" + encodeURIComponent(k.id))).then(refresh);
                });
              }, { class: "danger", "aria-label": "Delete key " + k.hint }));
          }
          return h("tr", null, h("td", { class: "mono" }, k.hint), h("td", { class: "mono" }, k.id), h("td", null, when(k.created_at)), actions);
        });
        var parts = [shown];
        parts.push(rows.length ? table(["Key", "Id", "Created", "Actions"], rows, "Publishable keys") : empty("No publishable keys: this workspace cannot receive events."));
        if (canAdminister()) {
          parts.push(button("New publishable key", function (e) {
            act(e.target, shown, api("POST", "/workspaces/" + encodeURIComponent(w.id) + "/publishable-keys", {}))
              .then(function (made) { shown.replaceChildren(secretCallout("New publishable key", made.key)); return refresh(); });
          }, { class: "secondary" }));
        }
        area.replaceChildren.apply(area, parts);
      });
    }
    return refresh();
  }

  function sessions(w, area) {
    var note = h("div");
    function refresh() {
      return api("GET", "/workspaces/" + encodeURIComponent(w.id) + "/sessions?limit=200").then(function (r) {
        var rows = r.data.map(function (s) {
          var actions = h("td", { class: "actions-cell" });
          if (canAdminister()) {
            actions.append(button("Revoke", function (e) {
              act(e.target, note, api("DELETE", "/sessions/" + encodeURIComponent(s.id))).then(refresh);
            }, { class: "danger", "aria-label": "Revoke session " + s.id }));
          }
          return h("tr", null, h("td", { class: "mono" }, s.id), h("td", null, badge(s.role)), h("td", null, s.external_user_id || "—"),
            h("td", null, s.allowed_origins.join(", ") || "—"), h("td", null, when(s.expires_at)), actions);
        });
        area.replaceChildren(note, rows.length ? table(["Session", "Role", "User", "Origins", "Expires", "Actions"], rows, "Sessions") : empty("No live sessions."));
      });
    }
    return refresh();
  }

  /* ---------- API keys ---------- */

  function apiKeys() {
    page("API keys", "Management credentials: admin (everything), read-only (every read), or limited to workspaces with a role in each.");
    var shown = h("div");
    var list = h("div", null, loading());
    main.append(shown);
    if (canAdminister()) {
      var grants = input("f-workspaces", "Workspaces and roles (for the workspaces scope)", { placeholder: "ws_…:editor, ws_…:viewer", autocomplete: "off", "aria-describedby": "grants-help" });
      grants.append(h("p", { class: "help", id: "grants-help" }, "Comma-separated workspace ids, each with :viewer, :editor or :admin."));
      main.append(section("New API key", "new-key"), form([
        input("f-key-name", "Name", { name: "name", required: true, placeholder: "billing backend", autocomplete: "off" }),
        select("f-scope", "Scope", [["admin", "Admin: everything"], ["read_only", "Read-only: every read"], ["workspaces", "Workspaces: listed below"]], { name: "scope" }),
        grants,
        input("f-expires", "Expires (optional)", { name: "expires", type: "date" }),
      ], "Create API key", function (v) {
        var payload = { name: v.name, scope: v.scope };
        if (v.scope === "workspaces") {
          payload.workspaces = v.workspaces.split(",").map(function (s) { return s.trim(); }).filter(Boolean).map(function (pair) {
            var p = pair.split(":");
            return { workspace_id: p[0].trim(), role: (p[1] || "viewer").trim() };
          });
        }
        if (v.expires) payload.expires_at = new Date(v.expires + "T00:00:00Z").toISOString();
        return api("POST", "/api-keys", payload).then(function (made) {
          shown.replaceChildren(secretCallout("API key " + made.name, made.key));
          return refresh();
        });
      }));
    }
    main.append(section("All API keys", "all-keys"), list);
    function refresh() {
      return api("GET", "/api-keys?limit=200").then(function (r) {
        var rows = r.data.map(function (k) {
          var scope = k.scope === "workspaces" ? k.workspaces.map(function (g) { return g.workspace_id + " (" + g.role + ")"; }).join(", ") : k.scope.replace("_", "-");
          var actions = h("td", { class: "actions-cell" });
          if (canAdminister()) {
            actions.append(button("Revoke", function (e) {
              confirmDialog("Revoke " + k.name + "?", "Everything using this key stops working at once.", "Revoke").then(function (yes) {
                if (yes) act(e.target, shown, api("DELETE", "/api-keys/" + encodeURIComponent(k.id))).then(refresh);
              });
            }, { class: "danger", "aria-label": "Revoke key " + k.name }));
          }
          return h("tr", null, h("td", null, k.name), h("td", { class: "mono" }, k.hint), h("td", null, scope),
            h("td", null, k.expires_at ? when(k.expires_at) : "never"), h("td", null, when(k.last_used_at)), actions);
        });
        list.replaceChildren(rows.length ? table(["Name", "Key", "Scope", "Expires", "Last used", "Actions"], rows, "API keys") : empty("No API keys."));
      });
    }
    return refresh();
  }

  /* ---------- Members ---------- */

  function members() {
    page("Members", "People who sign in to this console. Their role comes from the sign-in settings each time they sign in.");
    var note = h("div");
    var list = h("div", null, loading());
    var signedIn = h("div", null, loading());
    main.append(note, section("Members", "members-list"), list, section("Signed in now", "signed-in"), signedIn);
    function refresh() {
      var people = api("GET", "/members?limit=200").then(function (r) {
        var rows = r.data.map(function (m) {
          var actions = h("td", { class: "actions-cell" });
          if (isOwner() && m.id !== MEMBER) {
            actions.append(m.removed_at
              ? button("Restore", function (e) { act(e.target, note, api("POST", "/members/" + encodeURIComponent(m.id) + "/restore", {})).then(refresh); }, { class: "secondary", "aria-label": "Restore " + m.email })
              : button("Remove", function (e) {
                confirmDialog("Remove " + m.email + "?", "Their sign-ins end now, and they cannot sign in until restored.", "Remove").then(function (yes) {
                  if (yes) act(e.target, note, api("DELETE", "/members/" + encodeURIComponent(m.id))).then(refresh);
                });
              }, { class: "danger", "aria-label": "Remove " + m.email }));
          }
          return h("tr", null, h("td", null, m.email), h("td", null, m.name || "—"), h("td", null, badge(m.removed_at ? "removed" : m.role)),
            h("td", null, when(m.last_sign_in_at)), actions);
        });
        list.replaceChildren(rows.length ? table(["E-mail", "Name", "Role", "Last sign-in", "Actions"], rows, "Members") : empty("Nobody has signed in through the identity provider yet."));
      });
      var now = api("GET", "/console-sessions?limit=200").then(function (r) {
        var rows = r.data.map(function (s) {
          var actions = h("td", { class: "actions-cell" });
          if (canAdminister()) {
            actions.append(button("End", function (e) { act(e.target, note, api("DELETE", "/console-sessions/" + encodeURIComponent(s.id))).then(refresh); }, { class: "danger", "aria-label": "End the sign-in of " + s.label }));
          }
          return h("tr", null, h("td", null, s.label), h("td", null, badge(s.role)), h("td", { class: "mono" }, s.client_addr || "—"),
            h("td", null, when(s.created_at)), h("td", null, when(s.expires_at)), actions);
        });
        signedIn.replaceChildren(table(["Who", "Role", "Address", "Signed in", "Expires", "Actions"], rows, "Console sign-ins"));
      });
      return Promise.all([people, now]);
    }
    return refresh();
  }

  /* ---------- Audit log ---------- */

  function auditLog() {
    page("Audit log", "Every change, who made it, when and from where; and refused credentials.");
    var results = h("div", null, loading());
    var filters = form([
      input("f-action", "Action", { name: "action", placeholder: "connection.* or api_key.create", autocomplete: "off" }),
      input("f-workspace", "Workspace id", { name: "workspace_id", placeholder: "ws_…", autocomplete: "off" }),
      input("f-actor", "Actor id", { name: "actor", placeholder: "key_… or mem_…", autocomplete: "off" }),
    ], "Filter", function (v) { return load(v, null, true); });
    main.append(filters, results);
    var rows = [];
    function load(v, cursor, fresh) {
      var q = new URLSearchParams();
      Object.keys(v).forEach(function (k) { if (v[k]) q.set(k, v[k]); });
      q.set("limit", "50");
      if (cursor) q.set("cursor", cursor);
      return api("GET", "/audit-log?" + q.toString()).then(function (r) {
        if (fresh) rows = [];
        rows = rows.concat(r.data.map(function (e) {
          var who = e.actor.name || e.actor.id || e.actor.kind;
          return h("tr", null, h("td", null, when(e.at)), h("td", null, h("code", null, e.action)),
            h("td", null, who, h("span", { class: "muted" }, " (" + e.actor.kind.replace("_", " ") + ")")),
            h("td", { class: "mono" }, e.resource_id || "—"), h("td", { class: "mono" }, e.workspace_id || "—"),
            h("td", { class: "mono" }, e.client_addr || "—"),
            h("td", null, h("details", null, h("summary", null, "Details"), h("pre", { class: "mono" }, JSON.stringify(e.summary, null, 2)))));
        }));
        var parts = [rows.length ? table(["When", "Action", "Who", "Resource", "Workspace", "Address", "What"], rows, "Audit log") : empty("No entries match.")];
        if (r.next_cursor) parts.push(button("Older entries", function () { load(v, r.next_cursor, false); }, { class: "secondary" }));
        results.replaceChildren.apply(results, parts);
      });
    }
    return load({}, null, true);
  }

  /* ---------- Installation ---------- */

  function installation() {
    page("Installation", "Its nodes, where the delivery queue stands, and this month's usage.");
    return Promise.all([api("GET", "/installation"), api("GET", "/usage")]).then(function (r) {
      var i = r[0], u = r[1];
      var q = i.queue;
      var tiles = [["Pending", q.pending], ["Retrying", q.retrying], ["In flight", q.delivering], ["Dead", q.dead]].map(function (t) {
        return h("div", { class: "tile" }, h("p", { class: "tile-label" }, t[0]), h("p", { class: "tile-value" }, count(t[1])));
      });
      var oldest = q.oldest_due_at && q.oldest_due_seconds > 0
        ? h("p", null, "The longest-waiting delivery was due ", when(q.oldest_due_at), ".")
        : h("p", null, "No delivery is overdue.");
      var nodes = i.nodes.map(function (n) {
        return h("tr", null, h("td", { class: "mono" }, n.id), h("td", null, n.role), h("td", null, n.hostname || "—"), h("td", null, n.version),
          h("td", null, when(n.started_at)), h("td", null, when(n.heartbeat_at), " ", n.stale ? badge("stale") : badge("live")));
      });
      var ofLimit = function (used, limit) { return count(used) + (limit === null || limit === undefined ? "" : " of " + count(limit)); };
      var usageTiles = [["Events in " + u.period.month, count(u.events)], ["Workspaces", ofLimit(u.workspaces.used, u.workspaces.limit)]].map(function (t) {
        return h("div", { class: "tile" }, h("p", { class: "tile-label" }, t[0]), h("p", { class: "tile-value" }, t[1]));
      });
      var busiest = u.busiest.map(function (w) {
        return h("tr", null, h("td", null, link("workspaces/" + w.workspace_id, w.name)), h("td", null, w.plan || "—"), h("td", { class: "num" }, ofLimit(w.events, w.limit)));
      });
      main.append(section("Delivery queue", "queue"), h("div", { class: "tiles" }, tiles), oldest,
        section("Usage this month", "usage"), h("div", { class: "tiles" }, usageTiles),
        busiest.length ? table(["Busiest workspaces", "Plan", "Events"], busiest, "The month's busiest workspaces") : empty("No events yet this month."),
        section("Nodes", "nodes"), nodes.length ? table(["Node", "Role", "Host", "Version", "Started", "Last heartbeat"], nodes, "Nodes") : empty("No node has reported yet."),
        h("p", { class: "muted" }, "Switchyard " + i.version));
    });
  }

  renderNav();
  route();
})();
