// Sealbox Desk: confirmations and the sync button's busy state. No inline script (CSP).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (form.id === "sync-form") {
    document.getElementById("sync-button").disabled = true;
    document.getElementById("sync-busy").hidden = false;
  }
});

// Once the Desk has locked (no request for the idle period, which this page's load reset),
// a page still open must not keep showing plaintext: it leaves for the lock page.
(function () {
  var after = Number(document.body.getAttribute("data-idle-ms"));
  if (!after) return;
  window.setTimeout(function () {
    document.querySelector("main").textContent = "";
    window.location.assign("/unlock");
  }, after);
})();
