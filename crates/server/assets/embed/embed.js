/*! Switchyard host helper: embeds a workspace's pages in an iframe. No dependencies.
 *
 *   const frame = Switchyard.mount(element, {
 *     launchUrl,                       // from POST /api/v1/sessions (single use)
 *     accessToken,                     // from the same response
 *     onRefresh: async () => token,    // ask your backend for a fresh access token
 *     onNavigate: (path) => {},        // the frame moved to another page (optional)
 *     title: "Integrations",           // the iframe's accessible name (optional)
 *     minHeight: 480,                  // CSS pixels before the first resize (optional)
 *   });
 *   frame.navigate("events?status=dead");
 *   frame.destroy();
 *
 * Messages are accepted only from the frame it made, at the launch URL's origin, and are posted
 * only to that origin.
 */
(function (global) {
  "use strict";

  var PREFIX = "switchyard:";

  function mount(element, options) {
    if (!element || typeof element.appendChild !== "function") {
      throw new TypeError("Switchyard.mount needs an element to put the frame in");
    }
    options = options || {};
    if (!options.launchUrl) throw new TypeError("Switchyard.mount needs launchUrl");
    if (typeof options.onRefresh !== "function") throw new TypeError("Switchyard.mount needs onRefresh, a function returning a fresh access token");
    var frameOrigin = new URL(options.launchUrl, global.location.href).origin;
    var token = options.accessToken || null;
    var refreshing = null;
    var destroyed = false;

    var iframe = global.document.createElement("iframe");
    iframe.src = options.launchUrl;
    iframe.title = options.title || "Integrations";
    iframe.setAttribute("referrerpolicy", "no-referrer");
    iframe.style.width = "100%";
    iframe.style.border = "0";
    iframe.style.display = "block";
    iframe.style.height = (options.minHeight || 480) + "px";

    function post(message) {
      if (!destroyed && iframe.contentWindow) iframe.contentWindow.postMessage(message, frameOrigin);
    }

    function sendToken() {
      if (token) post({ type: PREFIX + "auth", access_token: token });
    }

    function refresh() {
      if (refreshing) return refreshing;
      refreshing = Promise.resolve()
        .then(function () { return options.onRefresh(); })
        .then(function (fresh) {
          var value = fresh && typeof fresh === "object" ? fresh.access_token : fresh;
          if (typeof value !== "string" || !value) throw new Error("onRefresh returned no access token");
          token = value;
          sendToken();
        })
        .catch(function (error) {
          if (typeof options.onError === "function") options.onError(error);
          else if (global.console) global.console.error("Switchyard: could not refresh the session", error);
        })
        .then(function () { refreshing = null; });
      return refreshing;
    }

    function onMessage(event) {
      if (event.source !== iframe.contentWindow || event.origin !== frameOrigin) return;
      var data = event.data;
      if (!data || typeof data.type !== "string" || data.type.indexOf(PREFIX) !== 0) return;
      switch (data.type.slice(PREFIX.length)) {
        case "ready":
          if (token) sendToken();
          else refresh();
          break;
        case "token-expiring":
        case "token-expired":
          refresh();
          break;
        case "resize":
          if (typeof data.height === "number" && isFinite(data.height) && data.height > 0) {
            iframe.style.height = Math.min(Math.round(data.height), 100000) + "px";
          }
          break;
        case "navigate":
          if (typeof data.path === "string" && typeof options.onNavigate === "function") options.onNavigate(data.path);
          break;
      }
    }

    global.addEventListener("message", onMessage);
    element.appendChild(iframe);

    return {
      iframe: iframe,
      /** Asks the frame to show another page, e.g. "rules/new" or "events?status=dead". */
      navigate: function (path) { post({ type: PREFIX + "navigate", path: String(path) }); },
      /** Hands the frame a token obtained outside onRefresh. */
      setAccessToken: function (value) { token = value; sendToken(); },
      destroy: function () {
        destroyed = true;
        global.removeEventListener("message", onMessage);
        if (iframe.parentNode) iframe.parentNode.removeChild(iframe);
      },
    };
  }

  global.Switchyard = { mount: mount, version: "1" };
})(window);
