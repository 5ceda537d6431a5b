/* Switchyard pages' shared pieces: building DOM from values (always as text, never as HTML),
 * times, dialogs, tables. Loaded before the embedded pages' app.js and the console's console.js;
 * no dependencies, no build step. */
(function (global) {
  "use strict";

  function parseJson(text, fallback) {
    try { return JSON.parse(text); } catch (e) { return fallback; }
  }

  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (key) {
        var value = props[key];
        if (value === null || value === undefined || value === false) return;
        if (key === "text") el.textContent = value;
        else if (key === "class") el.className = value;
        else if (key.slice(0, 2) === "on" && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
        else if (key === "value") el.value = value;
        else if (key === "checked" || key === "selected" || key === "disabled" || key === "required") el[key] = !!value;
        else el.setAttribute(key, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { append(el, c); });
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }

  function link(path, text, props) {
    var p = props || {};
    p.href = "#/" + path;
    return h("a", p, text);
  }

  function button(text, onClick, props) {
    var p = props || {};
    p.type = p.type || "button";
    p.onClick = onClick;
    return h("button", p, text);
  }

  function when(iso) {
    if (!iso) return h("span", { class: "muted" }, "—");
    var date = new Date(iso);
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    var text;
    var future = seconds < 0;
    var s = Math.abs(seconds);
    if (s < 45) text = future ? "in a few seconds" : "just now";
    else if (s < 3600) text = plural(Math.round(s / 60), "min");
    else if (s < 86400) text = plural(Math.round(s / 3600), "h");
    else if (s < 30 * 86400) text = plural(Math.round(s / 86400), "day");
    else text = null;
    if (text && s >= 45) text = future ? "in " + text : text + " ago";
    if (!text) text = date.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
    return h("time", { datetime: iso, title: date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" }) }, text);
  }

  function plural(n, unit) {
    return n + " " + (unit === "day" && n !== 1 ? "days" : unit);
  }

  function loading(text) {
    return h("p", { class: "status", role: "status" }, text || "Loading…");
  }

  function empty(text, action) {
    return h("div", { class: "empty" }, h("p", null, text), action || null);
  }

  function alertBox(error) {
    var message = error && error.message ? error.message : String(error);
    return h("div", { class: "alert", role: "alert" }, message);
  }

  function badge(status) {
    return h("span", { class: "badge badge-" + String(status).replace(/[^a-z_]/g, "") }, String(status).replace(/_/g, " "));
  }

  function confirmDialog(title, text, confirmText) {
    return new Promise(function (resolve) {
      var dialog = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" });
      var finish = function (answer) { dialog.close(); dialog.remove(); resolve(answer); };
      dialog.append(
        h("h2", { id: "dialog-title" }, title),
        h("p", { id: "dialog-text" }, text),
        h("div", { class: "actions" },
          button("Cancel", function () { finish(false); }, { class: "secondary" }),
          button(confirmText, function () { finish(true); }, { class: "danger" }))
      );
      dialog.addEventListener("cancel", function (e) { e.preventDefault(); finish(false); });
      document.body.appendChild(dialog);
      dialog.showModal();
      dialog.querySelector(".secondary").focus();
    });
  }

  function secretCallout(title, secret) {
    var input = h("input", { type: "text", readonly: true, value: secret, "aria-label": title, class: "mono" });
    return h("div", { class: "callout", role: "status" },
      h("h2", null, title),
      h("p", null, "Copy it now: it is shown only this once."),
      h("div", { class: "row" }, input,
        button("Copy", function (e) {
          input.select();
          var done = function () { e.target.textContent = "Copied"; };
          if (navigator.clipboard) navigator.clipboard.writeText(secret).then(done, function () { document.execCommand("copy"); done(); });
          else { document.execCommand("copy"); done(); }
        }, { class: "secondary" })));
  }

  function table(headers, rows, caption) {
    return h("div", { class: "table-wrap" }, h("table", null,
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", null, h("tr", null, headers.map(function (t) { return h("th", { scope: "col" }, t); }))),
      h("tbody", null, rows)));
  }

  /* An API error answer: its status, stable code, message and field details. */
  function ApiError(status, body) {
    var error = (body && body.error) || {};
    this.status = status;
    this.code = error.code || "error";
    this.message = error.message || "The request failed (HTTP " + status + ")";
    this.details = error.details || [];
  }

  global.SwitchyardUI = { ApiError: ApiError, parseJson: parseJson, h: h, append: append, link: link, button: button, when: when, loading: loading, empty: empty, alertBox: alertBox, badge: badge, confirmDialog: confirmDialog, secretCallout: secretCallout, table: table };
})(window);
