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
