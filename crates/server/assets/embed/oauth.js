/* The last stop of an OAuth popup: tell the frame that opened it (on this origin only) how it went. */
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var message = {
    type: "switchyard:oauth",
    connection_id: params.get("connection_id"),
    error: params.get("error"),
  };
  var outcome = document.getElementById("outcome");
  var heading = document.querySelector("h1");
  if (message.error) {
    heading.textContent = "Not connected";
    outcome.textContent = "The connection was not made (" + message.error + "). Close this window and try again.";
  } else {
    heading.textContent = "Connected";
    outcome.textContent = "The connection is ready. This window closes itself.";
  }
  if (window.opener && !window.opener.closed) {
    window.opener.postMessage(message, window.location.origin);
    window.setTimeout(function () { window.close(); }, 300);
  }
})();
